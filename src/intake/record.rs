//! Recording a fetched group in one transaction, behind the poison-message
//! guard.

use super::imap::*;
use super::*;
use crate::cases::{self, Incoming, Outcome};
use crate::context::Context;
use crate::store::{self, FolderState, StoreError};
use chrono::Utc;

/// When intake first synced `folder` (recorded the first time it is asked).
pub(super) fn first_sync(
    conn: &rusqlite::Connection,
    folder: &str,
    now: chrono::DateTime<Utc>,
) -> Result<chrono::DateTime<Utc>, StoreError> {
    let key = format!("first_sync:{folder}");
    if let Some(t) = store::setting(conn, &key)?
        .as_deref()
        .and_then(crate::clock::parse_ts)
    {
        return Ok(t);
    }
    store::set_setting(conn, &key, &crate::clock::fmt_ts(now))?;
    Ok(now)
}

impl Intake {
    /// Records a group of fetched messages, behind the poison-message
    /// guard: the attempt is committed (crash-safe, without an fsync: see
    /// `Store::hint_transaction`) before any message is touched. A
    /// group that was being recorded when the daemon died is recorded one
    /// message at a time, and a message that was being recorded alone when
    /// it died again (a second death) is stored raw without being parsed,
    /// so no single message can stop intake for good.
    pub(super) async fn record(
        &self,
        fetched: Vec<Fetched>,
        uidvalidity: u32,
        max_uid: u32,
    ) -> Result<(), IntakeError> {
        let folder = self.folder.clone();
        let uids: Vec<u32> = fetched.iter().map(|f| f.uid).collect();
        let prior = self
            .db
            .call(move |s| {
                s.hint_transaction(|tx| {
                    let prior = store::intake_attempts(tx, &folder, uidvalidity, &uids)?;
                    if prior.iter().any(|a| *a > 0) {
                        return Ok(Some(prior));
                    }
                    store::count_intake_attempt(tx, &folder, uidvalidity, &uids, 0)?;
                    Ok(None)
                })
            })
            .await?;
        let Some(prior) = prior else {
            return self
                .record_group(fetched, uidvalidity, max_uid, false)
                .await;
        };
        tracing::warn!(
            count = fetched.len(),
            "the daemon stopped while recording these messages; recording them one at a time"
        );
        let last = fetched.len().saturating_sub(1);
        for (i, (m, prior)) in fetched.into_iter().zip(prior).enumerate() {
            let (folder, uid) = (self.folder.clone(), m.uid);
            self.db
                .call(move |s| {
                    s.hint_transaction(|tx| {
                        store::count_intake_attempt(tx, &folder, uidvalidity, &[uid], prior)
                    })
                })
                .await?;
            let poisoned = prior >= 2;
            if poisoned {
                tracing::error!(
                    uid,
                    "processing this message stopped the daemon twice: storing it raw, unread"
                );
            }
            let upto = if i == last { max_uid } else { uid };
            self.record_group(vec![m], uidvalidity, upto, poisoned)
                .await?;
        }
        Ok(())
    }

    /// Records a group of fetched messages, the folder's new last UID and
    /// the end of their attempts in one transaction.
    pub(super) async fn record_group(
        &self,
        fetched: Vec<Fetched>,
        uidvalidity: u32,
        max_uid: u32,
        poisoned: bool,
    ) -> Result<(), IntakeError> {
        let bytes: usize = fetched.iter().map(|m| m.raw().len()).sum();
        // Parsing, the costly part, happens here on the blocking pool,
        // before the store is taken: the write transaction only decides
        // and writes, and the other loops wait for it less. (A parser
        // crash still counts against the attempt committed above.)
        let read_cfg = self.cfg.clone();
        let (fetched, mut parsed) = tokio::task::spawn_blocking(move || {
            let parsed: Vec<_> = fetched
                .iter()
                .map(|m| cases::read(m.raw(), poisoned, &read_cfg))
                .collect();
            (fetched, parsed)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        if let Some(v) = &self.dkim {
            let auth = &self.cfg.handler_auth;
            for (m, p) in fetched.iter().zip(parsed.iter_mut()) {
                if let Some(domain) = handler_domain(&self.cfg, p) {
                    if auth.accept_dkim {
                        p.dkim = Some(v.check(m.raw(), &domain).await);
                    }
                    if !auth.arc_sealers.is_empty() {
                        p.arc = Some(v.check_arc(m.raw()).await);
                    }
                }
            }
        }
        // Parsing and DKIM lookups took time: ask for the lease again,
        // right before the write.
        self.still_held()?;
        let cfg = self.cfg.clone();
        let templates = self.templates.clone();
        let clock = self.clock.clone();
        let folder = self.folder.clone();
        let expected = max_uid;
        let outcomes = self
            .db
            .call(move |s| -> Result<Vec<(u32, Outcome)>, IntakeError> {
                let now = clock.now();
                let ctx = Context {
                    cfg: &cfg,
                    templates: &templates,
                    now,
                };
                let tx = s.transaction()?;
                // "Old" is measured from the folder's first sync, not from
                // now: reports that waited out an outage are not old.
                let first_sync = first_sync(&tx, &folder, now)?;
                let not_before = (!cfg.intake.backfill.is_zero()).then(|| {
                    chrono::Duration::from_std(cfg.intake.backfill)
                        .ok()
                        .and_then(|b| first_sync.checked_sub_signed(b))
                        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC)
                });
                let mut outcomes = Vec::with_capacity(fetched.len());
                for (m, p) in fetched.iter().zip(&parsed) {
                    let incoming = Incoming {
                        folder: &folder,
                        uidvalidity,
                        uid: m.uid,
                        internal_date: m.internal_date,
                        seen_at: now,
                        not_before,
                        raw: m.raw(),
                        size: m.size,
                        truncated: m.truncated,
                        poisoned,
                        handled_before: m.handled_before,
                    };
                    outcomes.push((m.uid, cases::ingest(&tx, &ctx, &incoming, p)?));
                }
                // The UID FETCH completed OK: a UID of the group it did not
                // return was expunged meanwhile, so moving past it loses nothing.
                let new_last = expected;
                store::clear_intake_attempts(&tx, &folder, uidvalidity, new_last)?;
                store::set_folder_state(
                    &tx,
                    &folder,
                    &FolderState {
                        uidvalidity,
                        last_uid: new_last,
                    },
                    now,
                )?;
                crate::store::commit(tx, "committing received mail")?;
                s.release_memory(bytes);
                Ok(outcomes)
            })
            .await?;
        crate::memory::trim_after(bytes);
        let wake = log_outcomes(&outcomes);
        if wake {
            self.outbox.notify_one();
            self.deadlines.notify_one();
        }
        Ok(())
    }
}

/// The From domain of mail that names a handler (lowercased): the mail
/// whose DKIM signature secintake checks.
fn handler_domain(
    cfg: &crate::config::Config,
    p: &crate::mail::message::ParsedMessage,
) -> Option<String> {
    let from = p.from.as_ref()?;
    cfg.handler(&from.email)?;
    from.email
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
}

/// One log line per recorded message (never its content); returns whether
/// any may have queued mail or changed a case, to wake the other loops.
fn log_outcomes(outcomes: &[(u32, Outcome)]) -> bool {
    let mut wake = false;
    for (uid, o) in outcomes {
        wake |= o.changed_cases();
        match o {
            Outcome::NewCase {
                case_id,
                ack_queued,
            } => {
                tracing::info!(uid, case = %case_id, ack_queued, "new report: case opened")
            }
            Outcome::FollowUp { case_id } => {
                tracing::info!(uid, case = %case_id, "follow-up attached")
            }
            Outcome::Robot { rule, case_id } => {
                tracing::info!(
                    uid,
                    rule,
                    case = case_id.as_deref().unwrap_or("-"),
                    "auto-generated mail stored, not answered"
                )
            }
            Outcome::Duplicate => tracing::info!(uid, "duplicate delivery ignored"),
            Outcome::Recovered { case_id } => tracing::warn!(
                uid,
                case = %case_id,
                "mail handled before a restore of the state file: recorded, nothing sent again"
            ),
            Outcome::HandlerWithoutCase => {
                tracing::info!(uid, "handler mail naming no case: answered")
            }
            Outcome::Old => {
                tracing::info!(uid, "older than intake.backfill: stored, not answered")
            }
        }
    }
    wake
}
