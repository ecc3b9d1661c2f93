//! `secintake security-txt` and `secintake pgp export-key`: what a team
//! that publishes a key puts on its web site.

use crate::config::Config;
use chrono::{DateTime, Utc};

/// The team key, or an error saying how to configure one.
fn team(cfg: &Config) -> anyhow::Result<&crate::openpgp::SecretKey> {
    cfg.pgp
        .as_ref()
        .map(|p| &p.team)
        .ok_or_else(|| anyhow::anyhow!("no team key: set [pgp] secret_key_file"))
}

/// Prints the team's public key, armored.
pub(super) fn export_key(cfg: &Config) -> anyhow::Result<std::process::ExitCode> {
    let key = team(cfg)?.public();
    print!("{}", key.armored()?);
    Ok(std::process::ExitCode::SUCCESS)
}

/// The RFC 9116 fields, in the order the RFC lists them.
pub(super) fn security_txt_text(
    cfg: &Config,
    now: DateTime<Utc>,
    expires_in: std::time::Duration,
    encryption: Option<&str>,
    languages: &str,
) -> anyhow::Result<String> {
    let mut out = format!("Contact: mailto:{}\n", cfg.mailbox.address);
    let expires = chrono::Duration::from_std(expires_in)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .ok_or_else(|| anyhow::anyhow!("--expires is too far in the future"))?;
    out.push_str(&format!(
        "Expires: {}\n",
        expires.format("%Y-%m-%dT%H:%M:%S%.3fZ")
    ));
    match (encryption, &cfg.pgp) {
        (Some(url), _) => out.push_str(&format!("Encryption: {url}\n")),
        // RFC 9116 2.5.4 allows an OpenPGP fingerprint URI.
        (None, Some(p)) => out.push_str(&format!(
            "Encryption: openpgp4fpr:{}\n",
            p.team.fingerprint().to_ascii_lowercase()
        )),
        (None, None) => {}
    }
    if !cfg.mailbox.policy_url.is_empty() {
        out.push_str(&format!("Policy: {}\n", cfg.mailbox.policy_url));
    }
    let langs: Vec<&str> = languages
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tag_ok = |l: &&str| l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if let Some(bad) = langs.iter().find(|l| !tag_ok(l)) {
        anyhow::bail!("--languages: {bad:?} is not a language tag (e.g. en, de, pt-BR)");
    }
    if !langs.is_empty() {
        out.push_str(&format!("Preferred-Languages: {}\n", langs.join(", ")));
    }
    Ok(out)
}

/// Prints security.txt, clear-signed with the team key when `sign`.
pub(super) fn security_txt(
    cfg: &Config,
    sign: bool,
    expires_in: std::time::Duration,
    encryption: Option<&str>,
    languages: &str,
) -> anyhow::Result<std::process::ExitCode> {
    let text = security_txt_text(cfg, Utc::now(), expires_in, encryption, languages)?;
    if sign {
        print!("{}", crate::openpgp::clearsign(&text, team(cfg)?)?);
    } else {
        print!("{text}");
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_txt_has_the_required_fields() {
        let cfg = Config::example();
        let now = "2026-12-01T00:00:00Z".parse().unwrap();
        let year = std::time::Duration::from_secs(365 * 86400);
        let t = security_txt_text(&cfg, now, year, None, "en, de").unwrap();
        assert!(
            t.starts_with("Contact: mailto:security@example.org\n"),
            "{t}"
        );
        assert!(t.contains("Expires: 2027-12-01T00:00:00.000Z\n"), "{t}");
        assert!(t.contains("Preferred-Languages: en, de\n"), "{t}");
        assert!(security_txt_text(&cfg, now, year, None, "e n").is_err());
    }
}
