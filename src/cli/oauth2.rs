//! `secintake oauth2 authorize`: the first refresh token, got once with a
//! person at a browser and saved beside the state file, where the daemon
//! reads it at its next login (no restart).

use std::os::unix::fs::MetadataExt;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use secintake_oauth2::authorize::{browser_flow, device_flow};
use secintake_oauth2::{save_refresh_token, Grant};

use crate::config::{Config, Provider};

pub(super) fn authorize(cfg: &Config, browser: bool, port: u16) -> anyhow::Result<ExitCode> {
    let o = cfg.oauth2.as_ref().ok_or_else(|| {
        anyhow!("no [oauth2] section: set oauth2.provider and oauth2.client_id first")
    })?;
    if o.grant == Grant::ClientCredentials {
        bail!(
            "oauth2.grant is \"client_credentials\": the client's secret is the credential, \
             there is nothing to authorize"
        );
    }
    let settings = o.settings(&cfg.storage);
    refuse_wrong_user(&cfg.storage.path)?;
    let got = match (browser, &o.device_url, &o.auth_url) {
        (false, Some(device), _) => device_flow(&settings, device, |uri, code| {
            eprintln!("On any device, open {uri}\nand enter the code {code}\nas the mailbox's user. Waiting (15 minutes at most)...");
        }),
        (_, _, Some(auth)) => {
            let listener = std::net::TcpListener::bind(("127.0.0.1", port))
                .with_context(|| format!("listening on 127.0.0.1:{port} for the redirect"))?;
            let port = listener.local_addr()?.port();
            // Google returns a refresh token only when asked for offline
            // access, and again only with a fresh consent.
            let extra: &[(&str, &str)] = match o.provider {
                Provider::Google => &[("access_type", "offline"), ("prompt", "consent")],
                _ => &[],
            };
            browser_flow(&settings, auth, listener, extra, |url| {
                eprintln!(
                    "Open this page in a browser on this host and sign in as the mailbox's user:\n\n{url}\n\n\
                     On a remote host, first forward the port: ssh -L {port}:127.0.0.1:{port} <host>\n\
                     (or run again with --port N). Waiting (15 minutes at most)..."
                );
            })
        }
        (true, _, None) => bail!("no oauth2.auth_url for the browser flow"),
        (false, None, None) => bail!("neither oauth2.device_url nor oauth2.auth_url is set"),
    }
    .map_err(|e| anyhow!("{e}"))?;
    save_refresh_token(&settings.token_file, &got.refresh_token).with_context(|| {
        format!(
            "saving the refresh token to {}",
            settings.token_file.display()
        )
    })?;
    println!(
        "refresh token saved to {} (0600); the daemon uses it at its next login",
        settings.token_file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A token file the daemon cannot read is no use: when root runs this for
/// a state file another user owns, say whom to run it as.
fn refuse_wrong_user(state: &std::path::Path) -> anyhow::Result<()> {
    let me = rustix::process::getuid().as_raw();
    let owner = std::fs::metadata(state).map(|m| m.uid());
    if let Ok(owner) = owner {
        if owner != me {
            bail!(
                "{} belongs to uid {owner}, and the token file must be readable by the daemon: \
                 run this as that user (e.g. sudo -u '#{owner}' secintake oauth2 authorize)",
                state.display()
            );
        }
    }
    Ok(())
}
