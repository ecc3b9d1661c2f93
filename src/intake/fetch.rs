//! Fetching: sizes for a window of UIDs, then bodies in groups bounded by
//! count and bytes (oversized messages by a partial FETCH).

use super::imap::*;
use super::*;
use async_imap::Session;
use chrono::Utc;
use futures::StreamExt;

/// Largest sum of message sizes fetched in one round trip; keeps memory
/// bounded whatever the mailbox holds (two groups are in flight at most).
pub(super) const BATCH_BYTES: u64 = 8 << 20;
/// How much of a message over `limits.max_message_size` is fetched and
/// stored: its first bytes, header included, by a partial FETCH. Fetching
/// `BODY[HEADER]` instead was unbounded: a 56 MB message that was nearly
/// all header was stored whole and sent on to handlers.
pub(super) const OVERSIZED_PREFIX: u32 = 256 * 1024;
/// UIDs whose sizes are asked for before their bodies: the pipeline of
/// body fetches runs without a pause within a window (~40 bytes each).
pub(super) const SIZE_WINDOW: usize = 10_000;
/// The first group of a window is fetched with nothing to overlap it: keep
/// it small so recording starts early.
pub(super) const FIRST_GROUP: usize = 50;

impl Intake {
    /// Sizes and arrival times of `uids`, and which of them the server
    /// marks handled by secintake ([`crate::cases::HANDLED_KEYWORD`]).
    pub(super) async fn fetch_sizes(
        &self,
        session: &mut Session<Conn>,
        uids: &[u32],
    ) -> Result<(Sizes, std::collections::HashSet<u32>), IntakeError> {
        let mut out = std::collections::HashMap::new();
        let mut handled = std::collections::HashSet::new();
        // At most 1,000 UIDs per command: a set of scattered UIDs must stay
        // well under servers' command-line limits (Dovecot: 64 KiB).
        for chunk in uids.chunks(1000) {
            let set = uid_set(chunk);
            let mut stream = session
                .uid_fetch(&set, "(UID RFC822.SIZE INTERNALDATE FLAGS)")
                .await
                .map_err(cmd_err("UID FETCH"))?;
            while let Some(item) = stream.next().await {
                let f = item.map_err(cmd_err("UID FETCH"))?;
                if let Some(uid) = f.uid {
                    let done = f.flags().any(|fl| {
                        matches!(fl, async_imap::types::Flag::Custom(k)
                            if k.eq_ignore_ascii_case(crate::cases::HANDLED_KEYWORD))
                    });
                    if done {
                        handled.insert(uid);
                    }
                    out.insert(
                        uid,
                        (
                            f.size.unwrap_or(0) as u64,
                            f.internal_date().map(|d| d.with_timezone(&Utc)),
                        ),
                    );
                }
            }
        }
        drain(session);
        Ok((out, handled))
    }

    pub(super) async fn fetch_bodies(
        &self,
        session: &mut Session<Conn>,
        uids: &[u32],
        sizes: &Sizes,
        handled: &std::collections::HashSet<u32>,
    ) -> Result<Vec<Fetched>, IntakeError> {
        let max = self.cfg.limits.max_message_size;
        let (big, normal): (Vec<u32>, Vec<u32>) = uids
            .iter()
            .partition(|u| sizes.get(u).is_some_and(|(s, _)| *s > max));
        let mut out = Vec::with_capacity(uids.len());
        let prefix = format!("(UID BODY.PEEK[]<0.{OVERSIZED_PREFIX}>)");
        for (set, query, truncated) in [
            (normal, "(UID BODY.PEEK[])", false),
            (big, prefix.as_str(), true),
        ] {
            if set.is_empty() {
                continue;
            }
            let set_s = uid_set(&set);
            {
                let mut stream = session
                    .uid_fetch(&set_s, query)
                    .await
                    .map_err(cmd_err("UID FETCH"))?;
                while let Some(item) = stream.next().await {
                    let f = item.map_err(cmd_err("UID FETCH"))?;
                    let Some(uid) = f.uid else { continue };
                    if !set.contains(&uid) {
                        continue;
                    }
                    let Some(len) = f.body().map(<[u8]>::len) else {
                        continue;
                    };
                    let (size, internal_date) =
                        sizes.get(&uid).copied().unwrap_or((len as u64, None));
                    out.push(Fetched {
                        handled_before: handled.contains(&uid),
                        uid,
                        size,
                        internal_date,
                        response: f,
                        truncated,
                    });
                }
            }
            drain(session);
        }
        out.sort_by_key(|f| f.uid);
        Ok(out)
    }
}

/// Splits `uids` into groups whose summed size stays under [`BATCH_BYTES`]
/// (a single large message forms its own group). Oversized messages count
/// as header-only.
/// Each UID's size and INTERNALDATE.
pub(super) type Sizes = std::collections::HashMap<u32, (u64, Option<chrono::DateTime<Utc>>)>;

pub(super) fn size_groups(
    uids: &[u32],
    sizes: &Sizes,
    max_message: u64,
    max_count: usize,
) -> Vec<Vec<u32>> {
    let mut groups = Vec::new();
    let mut cur = Vec::new();
    let mut cur_bytes = 0u64;
    for &uid in uids {
        let size = sizes.get(&uid).map(|(s, _)| *s).unwrap_or(0);
        let size = if size > max_message { 64 << 10 } else { size };
        if !cur.is_empty() && (cur_bytes + size > BATCH_BYTES || cur.len() >= max_count) {
            groups.push(std::mem::take(&mut cur));
            cur_bytes = 0;
        }
        cur.push(uid);
        cur_bytes += size;
    }
    if !cur.is_empty() {
        groups.push(cur);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn size_groups_bound_memory() {
        let mut sizes = std::collections::HashMap::new();
        for u in 1..=10u32 {
            sizes.insert(u, (3 << 20, None));
        }
        sizes.insert(11, (100 << 20, None)); // oversized: header only
        let uids: Vec<u32> = (1..=11).collect();
        let g = size_groups(&uids, &sizes, 50 << 20, 100);
        assert!(g.iter().all(|g| g.len() <= 3));
        assert_eq!(g.concat(), uids);
        let small: Vec<u32> = (1..=250).collect();
        let g = size_groups(&small, &std::collections::HashMap::new(), 50 << 20, 100);
        assert_eq!(
            g.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![100, 100, 50]
        );
    }
}
