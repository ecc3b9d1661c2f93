//! The one adapter over `psl` (the public suffix list, compiled in).
//!
//! A crate of its own because psl's lookup is generic and inlined: called
//! from secintake's library it was compiled there, twice (the library and
//! its unit tests), and was 26% of that crate's LLVM IR. Here it is
//! compiled once, beside the other dependencies.

/// Whether `domain` is a public suffix (`org`, `co.uk`, `github.io`): a
/// signature for it vouches for every site under it. Case-insensitive.
pub fn is_public_suffix(domain: &str) -> bool {
    // The list is lowercase and psl compares bytes.
    let domain = domain.to_ascii_lowercase();
    psl::suffix(domain.as_bytes())
        .is_some_and(|s| s.is_known() && s.as_bytes() == domain.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::is_public_suffix;

    #[test]
    fn suffixes_and_sites() {
        for d in ["org", "co.uk", "github.io", "CO.UK"] {
            assert!(is_public_suffix(d), "{d}");
        }
        for d in [
            "example.org",
            "project.github.io",
            "bbc.co.uk",
            "unknowntld",
            "",
        ] {
            assert!(!is_public_suffix(d), "{d}");
        }
    }
}
