//! The SASL initial responses that carry an access token.

/// SASL XOAUTH2 (Google's and Microsoft's): `user=U^Aauth=Bearer T^A^A`.
pub fn xoauth2(user: &str, token: &str) -> String {
    format!("user={user}\x01auth=Bearer {token}\x01\x01")
}

/// SASL OAUTHBEARER (RFC 7628 3.1): a GS2 header naming the user, then
/// host, port and the bearer token.
pub fn oauthbearer(user: &str, host: &str, port: u16, token: &str) -> String {
    format!(
        "n,a={},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01",
        saslname(user)
    )
}

/// RFC 5801's saslname: `,` and `=` escaped.
fn saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_responses() {
        assert_eq!(
            xoauth2("sec@example.org", "tok"),
            "user=sec@example.org\x01auth=Bearer tok\x01\x01"
        );
        assert_eq!(
            oauthbearer("a,b=c@example.org", "imap.example.org", 993, "tok"),
            "n,a=a=2Cb=3Dc@example.org,\x01host=imap.example.org\x01port=993\x01auth=Bearer tok\x01\x01"
        );
    }
}
