//! Whether a message was stored before: the key it is stored under, by
//! Message-ID and content, so that a second delivery is a duplicate and a
//! reused Message-ID is not.

use crate::mail::message::ParsedMessage;
use crate::store::{self, StoreError};
use rusqlite::Connection;

/// The key to store `p` under, or `None` when it is a second delivery of
/// a stored message. A Message-ID alone does not make a duplicate: anyone
/// can send a message first under the Message-ID a victim's report will
/// carry. A known Message-ID with other content (trace fields aside) is a
/// new message, stored under a key that adds its content; `reused` says so.
pub(super) fn dedup_key(
    conn: &Connection,
    p: &ParsedMessage,
) -> Result<Option<DedupKey>, StoreError> {
    let Some(mid) = &p.message_id else {
        let key = format!("sha256:{}", p.content_hash);
        return Ok((!store::message_seen(conn, &key)?).then_some(DedupKey { key, reused: false }));
    };
    let key = format!("mid:{mid}");
    match store::content_key_of(conn, &key)? {
        None => Ok(Some(DedupKey { key, reused: false })),
        // Stored before content keys existed: the old rule, a duplicate.
        Some(None) => Ok(None),
        Some(Some(k)) if k == p.content_key => Ok(None),
        Some(Some(_)) => {
            let key = format!("mid:{mid}#{}", p.content_key);
            Ok((!store::message_seen(conn, &key)?).then_some(DedupKey { key, reused: true }))
        }
    }
}

pub(super) struct DedupKey {
    pub(super) key: String,
    /// Another, different message was stored under the same Message-ID.
    pub(super) reused: bool,
}
