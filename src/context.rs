//! What the daemon knows while deciding ([`Context`]) and the error of
//! anything that records a case's effects ([`CaseError`]).

use crate::config::Config;
use crate::model::mailbox_key;
use crate::store::StoreError;
use crate::templates::{TemplateError, Templates};
use chrono::{DateTime, Utc};

#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("no stored message with id {0}")]
    NoSuchMessage(i64),
    #[error("message {id} is a {kind}, not auto-generated or held mail; nothing to promote")]
    NotPromotable { id: i64, kind: String },
}

/// What the daemon knows while deciding.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub cfg: &'a Config,
    pub templates: &'a Templates,
    pub now: DateTime<Utc>,
}

impl Context<'_> {
    pub fn own_addresses(&self) -> Vec<String> {
        let mut v = vec![self.cfg.mailbox.address.clone()];
        v.extend(self.cfg.mailbox.comment_address.clone());
        v
    }

    /// What `addr` is when it is one of the project's own addresses (the
    /// mailbox, the comment address, the announce list, a handler, an
    /// escalation address), compared case- and plus-tag-insensitively.
    /// Mail for a reporter is never sent to such an address.
    pub fn project_address(&self, addr: &str) -> Option<&'static str> {
        let key = mailbox_key(addr);
        let is = |a: &str| mailbox_key(a) == key;
        let m = &self.cfg.mailbox;
        if is(&m.address) {
            Some("the security mailbox itself")
        } else if m.comment_address.as_deref().is_some_and(is) {
            Some("the comment address")
        } else if self.cfg.announce.list.as_deref().is_some_and(is) {
            Some("the announce list")
        } else if self.cfg.handlers.iter().any(|h| is(&h.email)) {
            Some("a handler's address")
        } else if self.cfg.sla.escalate_to.iter().any(|a| is(a)) {
            Some("an escalation address")
        } else {
            None
        }
    }
}
