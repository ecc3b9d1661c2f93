//! `imap.after`: flagging or moving processed messages, after their
//! commit, and repairing what a failure left undone.

use super::imap::*;
use super::*;
use crate::config::After;
use crate::store::{self};
use async_imap::Session;
use futures::TryStreamExt;

impl Intake {
    /// Applies `imap.after` to processed messages that still lack it
    /// (unseen ones for "seen", any left in the folder for "move:").
    pub(super) async fn reconcile_after(
        &self,
        session: &mut Session<Conn>,
        uidvalidity: u32,
        moves: Caps,
    ) -> Result<(), IntakeError> {
        let criteria = match (&self.cfg.imap.after, moves.keywords) {
            (After::Keep, false) => return Ok(()),
            (After::Keep, true) => format!("UNKEYWORD {} ", crate::cases::HANDLED_KEYWORD),
            (After::Seen, false) => "UNSEEN ".to_string(),
            // Also mail recorded before the handled mark existed.
            (After::Seen, true) => {
                format!("OR UNSEEN UNKEYWORD {} ", crate::cases::HANDLED_KEYWORD)
            }
            (After::Move(_), _) => String::new(),
        };
        let folder = self.folder.clone();
        let stored = self
            .db
            .call(move |s| store::folder_state(s.conn(), &folder))
            .await?;
        let Some(st) = stored.filter(|st| st.uidvalidity == uidvalidity && st.last_uid > 0) else {
            return Ok(());
        };
        let query = format!("{criteria}UID 1:{}", st.last_uid);
        let uids = uid_search(session, &query, |u| u <= st.last_uid).await?;
        if uids.is_empty() {
            return Ok(());
        }
        tracing::info!(
            count = uids.len(),
            "applying imap.after to mail recorded before a reconnect"
        );
        for chunk in uids.chunks(1000) {
            self.apply_after(session, chunk, moves).await?;
        }
        Ok(())
    }

    /// Flags or moves processed messages, as `imap.after` says. Runs after
    /// the commit; repeating it is harmless.
    pub(super) async fn apply_after(
        &self,
        session: &mut Session<Conn>,
        uids: &[u32],
        moves: Caps,
    ) -> Result<(), IntakeError> {
        let set = uid_set(uids);
        // The handled mark goes first: a move carries it along.
        let mark = format!(" {}", crate::cases::HANDLED_KEYWORD);
        let mark = if moves.keywords { mark.as_str() } else { "" };
        match &self.cfg.imap.after {
            After::Keep => {
                if !mark.is_empty() {
                    add_flag(session, &set, mark.trim()).await?;
                }
            }
            After::Seen => {
                add_flag(session, &set, &format!("\\Seen{mark}")).await?;
            }
            After::Move(target) => {
                if !mark.is_empty() {
                    add_flag(session, &set, mark.trim()).await?;
                }
                if moves.can_move {
                    session
                        .uid_mv(&set, target)
                        .await
                        .map_err(cmd_err("UID MOVE"))?;
                } else {
                    session
                        .uid_copy(&set, target)
                        .await
                        .map_err(cmd_err("UID COPY"))?;
                    add_flag(session, &set, "\\Deleted").await?;
                    if moves.can_uidplus {
                        let expunged = session
                            .uid_expunge(&set)
                            .await
                            .map_err(cmd_err("UID EXPUNGE"))?;
                        // Read every answer: a failure mid-stream is an
                        // error, not a silently shorter list.
                        expunged
                            .try_collect::<Vec<_>>()
                            .await
                            .map_err(cmd_err("UID EXPUNGE"))?;
                    }
                }
            }
        }
        drain(session);
        Ok(())
    }
}
