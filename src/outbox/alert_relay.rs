//! `[alert_relay]`: the second SMTP relay that carries alerts when the
//! first one (or the state file the outbox needs) is what fails. It lives
//! here because nothing but the outbox speaks SMTP; `health` decides when
//! it is used, through [`crate::health::AlertRelay`].

use super::smtp::{connect, envelope_of, Relay};
use crate::health::AlertRelay;
use futures::future::BoxFuture;

/// Sends one letter per call over a fresh session: alerts are rare, and a
/// session kept between them would be closed by the server anyway.
#[derive(Debug)]
pub struct SecondRelay {
    relay: Relay,
    /// The envelope sender: the mailbox's address, as on every letter.
    from: String,
}

impl SecondRelay {
    pub fn new(cfg: crate::config::Smtp, from: String) -> SecondRelay {
        SecondRelay {
            relay: Relay {
                section: super::Section::AlertRelay,
                cfg,
                tokens: None,
            },
            from,
        }
    }
}

impl AlertRelay for SecondRelay {
    fn send(&self, raw: Vec<u8>, to: Vec<String>) -> BoxFuture<'static, Result<(), String>> {
        let (relay, from) = (self.relay.clone(), self.from.clone());
        Box::pin(async move {
            let envelope = envelope_of(&from, &to)?;
            let mut conn = connect(&relay).await.map_err(|e| e.to_string())?;
            let sent = tokio::time::timeout(relay.cfg.timeout, conn.send(&envelope, &raw)).await;
            let _ = tokio::time::timeout(relay.cfg.timeout, conn.quit()).await;
            match sent {
                Ok(Ok(_)) => Ok(()),
                // The reply's code only: content filters may quote the mail.
                Ok(Err(e)) => Err(crate::health::loggable(&e.to_string()).to_owned()),
                Err(_) => Err(format!(
                    "no answer within {}",
                    humantime::format_duration(relay.cfg.timeout)
                )),
            }
        })
    }
}
