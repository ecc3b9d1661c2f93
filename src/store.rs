//! The SQLite state file: schema, migrations and every query.
//!
//! Why one file and one writer: every incoming message is recorded together
//! with all of its effects (the case it opens or joins, the events, the
//! outgoing mail it causes, and the folder's new last UID) in ONE
//! transaction. Either all of that is on disk or none of it is, so a crash
//! at any moment neither loses a report nor doubles one.
//!
//! The file is created 0600 (reports are unfixed vulnerabilities), runs in
//! WAL mode with `synchronous=FULL` (NORMAL may roll back the last commits on
//! power loss, which here would mean acknowledging twice), and migrations are
//! keyed on `PRAGMA user_version`, applied in one transaction, never edited
//! once shipped.

use crate::clock::fmt_ts;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use std::path::{Path, PathBuf};

/// Errors from the state file. Each names the file or the operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create state file {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open state file {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("state file {path}: migration to schema version {version} failed: {source}")]
    Migrate {
        path: PathBuf,
        version: usize,
        source: rusqlite::Error,
    },
    #[error("state file {path} has schema version {found}, newer than this secintake knows ({known}); upgrade secintake")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: usize,
    },
    #[error("database error while {context}: {source}")]
    Query {
        context: &'static str,
        source: rusqlite::Error,
    },
}

/// Adds `.ctx("what we were doing")` to rusqlite results.
pub trait Ctx<T> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T> Ctx<T> for Result<T, rusqlite::Error> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Query { context, source })
    }
}

/// Schema migrations, in order. Index + 1 is the `user_version` after it.
/// Never edit a shipped entry: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the core intake.
    r#"
    CREATE TABLE folders (
        name          TEXT PRIMARY KEY,
        uidvalidity   INTEGER NOT NULL,
        last_uid      INTEGER NOT NULL,
        last_sync_at  TEXT
    ) STRICT;

    CREATE TABLE case_seq (
        year  INTEGER PRIMARY KEY,
        last  INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE cases (
        id               TEXT PRIMARY KEY,
        state            TEXT NOT NULL,
        reporter         TEXT,
        subject          TEXT,
        received_at      TEXT NOT NULL,
        ack_due_at       TEXT NOT NULL,
        respond_due_at   TEXT NOT NULL,
        acknowledged_at  TEXT,
        responded_at     TEXT,
        unparsed         INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE INDEX cases_state ON cases(state);

    -- Every message in and out, byte for byte.
    CREATE TABLE messages (
        id           INTEGER PRIMARY KEY,
        direction    TEXT NOT NULL CHECK (direction IN ('in', 'out')),
        dedup_key    TEXT NOT NULL UNIQUE,
        folder       TEXT,
        uidvalidity  INTEGER,
        uid          INTEGER,
        message_id   TEXT,
        case_id      TEXT REFERENCES cases(id),
        kind         TEXT NOT NULL,
        robot_rule   TEXT,
        from_addr    TEXT,
        to_addrs     TEXT,
        subject      TEXT,
        in_reply_to  TEXT,
        refs         TEXT,
        parsed_ok    INTEGER NOT NULL DEFAULT 1,
        encrypted    INTEGER NOT NULL DEFAULT 0,
        size         INTEGER NOT NULL,
        truncated    INTEGER NOT NULL DEFAULT 0,
        at           TEXT NOT NULL,
        raw          BLOB NOT NULL,
        UNIQUE (folder, uidvalidity, uid)
    ) STRICT;
    CREATE INDEX messages_message_id ON messages(message_id);
    CREATE INDEX messages_case ON messages(case_id);
    CREATE INDEX messages_kind ON messages(kind);

    CREATE TABLE events (
        id                 INTEGER PRIMARY KEY,
        case_id            TEXT NOT NULL REFERENCES cases(id),
        at                 TEXT NOT NULL,
        actor              TEXT NOT NULL,
        what               TEXT NOT NULL,
        detail             TEXT,
        source_message_id  TEXT
    ) STRICT;
    CREATE INDEX events_case ON events(case_id);

    -- The durable outbox: a row is the promise to deliver one stored
    -- outgoing message. Status follows Stalwart's queue shape.
    CREATE TABLE outbox (
        id               INTEGER PRIMARY KEY,
        message          INTEGER NOT NULL REFERENCES messages(id),
        case_id          TEXT REFERENCES cases(id),
        purpose          TEXT NOT NULL,
        envelope_from    TEXT NOT NULL,
        recipients       TEXT NOT NULL,
        status           TEXT NOT NULL CHECK (status IN ('scheduled', 'sent', 'failed')),
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  TEXT NOT NULL,
        last_error       TEXT,
        created_at       TEXT NOT NULL,
        sent_at          TEXT
    ) STRICT;
    CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
    CREATE INDEX outbox_acks ON outbox(purpose, recipients, created_at);

    -- Health of the two connections, for alerts and `secintake status`.
    CREATE TABLE health (
        component        TEXT PRIMARY KEY,
        last_ok_at       TEXT,
        failing_since    TEXT,
        last_error       TEXT,
        alerted          INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    "#,
    // 2: deadlines and the reminders they caused (exactly once each).
    r#"
    CREATE TABLE deadlines (
        id        INTEGER PRIMARY KEY,
        case_id   TEXT NOT NULL REFERENCES cases(id),
        kind      TEXT NOT NULL,
        due_at    TEXT NOT NULL,
        met_at    TEXT,
        met_how   TEXT,
        -- The next reminder stage to fire and when; NULL once met.
        stage     INTEGER NOT NULL DEFAULT 0,
        next_at   TEXT,
        UNIQUE (case_id, kind)
    ) STRICT;
    CREATE INDEX deadlines_next ON deadlines(next_at) WHERE next_at IS NOT NULL;

    CREATE TABLE reminders (
        id        INTEGER PRIMARY KEY,
        deadline  INTEGER NOT NULL REFERENCES deadlines(id),
        stage     INTEGER NOT NULL,
        kind      TEXT NOT NULL,
        fire_at   TEXT NOT NULL,
        sent_at   TEXT NOT NULL,
        late      INTEGER NOT NULL,
        message   INTEGER REFERENCES messages(id),
        UNIQUE (deadline, stage)
    ) STRICT;

    CREATE TABLE digests (
        day      TEXT PRIMARY KEY,
        sent_at  TEXT NOT NULL
    ) STRICT;
    "#,
    // 3: the disclosure process driven by handlers.
    r#"
    ALTER TABLE cases ADD COLUMN primary_handler TEXT;
    ALTER TABLE cases ADD COLUMN severity TEXT;
    ALTER TABLE cases ADD COLUMN affected TEXT;
    ALTER TABLE cases ADD COLUMN fixed_in TEXT;
    ALTER TABLE cases ADD COLUMN cve TEXT;
    ALTER TABLE cases ADD COLUMN duplicate_of TEXT;
    ALTER TABLE cases ADD COLUMN forged_alerted INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE settings (
        key    TEXT PRIMARY KEY,
        value  TEXT NOT NULL
    ) STRICT;
    "#,
    // 4: the outbox is read in delivery order straight from an index, so a
    // backlog of thousands of queued mails is not sorted (and its raw bytes
    // read) on every round.
    r#"
    CREATE INDEX outbox_order ON outbox(status, (purpose <> 'ack'), next_attempt_at, id);
    "#,
    // 5: handler notifications are built after the commit that opened the
    // case; this row is the durable promise to build one.
    r#"
    CREATE TABLE pending_notifications (
        case_id  TEXT PRIMARY KEY REFERENCES cases(id),
        message  INTEGER NOT NULL REFERENCES messages(id)
    ) STRICT;
    "#,
    // 6: the Message-ID rooting a case's handler thread is random, so a
    // stranger cannot thread mail into a case by guessing it from the id.
    r#"
    ALTER TABLE cases ADD COLUMN thread_root TEXT;
    "#,
    // 7: hostile mail (issue 7). `content_key` tells a second message that
    // reuses a known Message-ID from a redelivery of the first.
    // `intake_attempts` is the poison-message guard: a row is committed
    // before a UID is processed and removed in the transaction that records
    // it, so a UID whose processing killed the daemon is known on restart.
    r#"
    ALTER TABLE messages ADD COLUMN content_key TEXT;
    -- Backscatter limits: acknowledgements are counted per mailbox key
    -- (case and +tag folded) and per hour; those over a limit are held.
    ALTER TABLE outbox ADD COLUMN recipient_key TEXT;
    CREATE INDEX outbox_ack_keys ON outbox(purpose, recipient_key, created_at);
    DROP INDEX outbox_acks;
    -- Acknowledgements queued per minute, for the hourly limit: summing
    -- 60 rows stays cheap where counting outbox rows grew with the
    -- backlog (once per new case).
    CREATE TABLE ack_minutes (
        minute  INTEGER PRIMARY KEY,
        n       INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE held_acks (
        case_id        TEXT PRIMARY KEY REFERENCES cases(id),
        message        INTEGER NOT NULL REFERENCES messages(id),
        recipient      TEXT NOT NULL,
        recipient_key  TEXT NOT NULL,
        reason         TEXT NOT NULL,
        held_at        TEXT NOT NULL
    ) STRICT;
    CREATE INDEX held_acks_key ON held_acks(recipient_key, held_at);
    -- The raw bytes of messages of 256 KiB and more (messages.raw is then
    -- empty). A zeroblob is written in place only as a row's last column;
    -- in messages it no longer is, and SQLite built the whole blob in
    -- memory twice for a large report.
    -- Facts a handler records for the advisory (/credit, /summary).
    CREATE TABLE case_facts (
        case_id  TEXT NOT NULL REFERENCES cases(id),
        key      TEXT NOT NULL,
        value    TEXT NOT NULL,
        PRIMARY KEY (case_id, key)
    ) STRICT;
    -- Cases whose reporter gets no updates (/quiet).
    CREATE TABLE quiet_cases (
        case_id  TEXT PRIMARY KEY REFERENCES cases(id)
    ) STRICT;
    CREATE TABLE message_raw (
        id   INTEGER PRIMARY KEY REFERENCES messages(id),
        raw  BLOB NOT NULL
    ) STRICT;
    -- One row per attempted group, as a UID range: a row per UID cost the
    -- backlog a fifth of its speed (two statements more per message).
    CREATE TABLE intake_attempts (
        folder       TEXT NOT NULL,
        uidvalidity  INTEGER NOT NULL,
        first_uid    INTEGER NOT NULL,
        last_uid     INTEGER NOT NULL,
        attempts     INTEGER NOT NULL,
        PRIMARY KEY (folder, uidvalidity, first_uid, last_uid)
    ) STRICT;
    "#,
];

/// An open state file.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating 0600 if needed) and migrates the state file.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        create_private(path)?;
        for suffix in ["-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            create_private(Path::new(&p))?;
        }
        // Another process (the CLI, or the daemon starting) may hold the
        // file for a moment: switching to WAL and migrating need it alone,
        // and SQLite answers BUSY there without waiting. Retry for a while.
        let mut tries = 0;
        loop {
            match Self::open_once(path) {
                Err(StoreError::Open { source, .. } | StoreError::Migrate { source, .. })
                    if is_busy(&source) && tries < 100 =>
                {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    fn open_once(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(open_err)?;
        conn.set_prepared_statement_cache_capacity(128);
        // 8 MiB of page cache (SQLite's default is 2 MiB): a backlog touches
        // the message, case and outbox indexes for every report. Allocated
        // only as used, so an idle daemon stays small.
        conn.pragma_update(None, "cache_size", -8000)
            .map_err(open_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )
        .map_err(open_err)?;
        let mut store = Store {
            conn,
            path: path.to_owned(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Brings the schema up to date. Runs under one IMMEDIATE transaction
    /// and reads `user_version` inside it, so two processes opening a new
    /// file at once (the daemon starting, `secintake status` probing) never
    /// both migrate.
    fn migrate(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(open_err)?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err)?;
        if version as usize > MIGRATIONS.len() {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let v = i + 1;
            let err = |source| StoreError::Migrate {
                path: self.path.clone(),
                version: v,
                source,
            };
            tx.execute_batch(sql).map_err(err)?;
            tx.pragma_update(None, "user_version", v as i64)
                .map_err(err)?;
        }
        tx.commit().map_err(open_err)
    }

    /// Starts a write transaction. `IMMEDIATE`, so a concurrent CLI writer
    /// waits at the start instead of failing at commit.
    pub fn transaction(&mut self) -> Result<Transaction<'_>, StoreError> {
        self.conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .ctx("starting a transaction")
    }

    /// Runs `f` in a write transaction committed with `synchronous =
    /// NORMAL`: in WAL mode such a commit survives a crash of this process
    /// (it is in the WAL file) but may be lost on power failure, and it
    /// costs no fsync. Only for records that are hints, like the poison
    /// guard's attempt counts: one fsync more per fetched group cost the
    /// backlog a tenth of its speed. The next FULL commit makes them
    /// durable too.
    pub fn hint_transaction<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .ctx("switching to synchronous=NORMAL")?;
        let result = (|| {
            let tx = self.transaction()?;
            let out = f(&tx)?;
            commit(tx, "recording a hint")?;
            Ok(out)
        })();
        let restored = self
            .conn
            .pragma_update(None, "synchronous", "FULL")
            .ctx("switching back to synchronous=FULL");
        let out = result?;
        restored?;
        Ok(out)
    }

    /// Read access.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }
}

/// Commits `tx`, naming what it recorded if that fails.
pub fn commit(tx: Transaction<'_>, context: &'static str) -> Result<(), StoreError> {
    tx.commit().ctx(context)
}

/// Runs a statement through the prepared-statement cache: intake runs the
/// same few statements for every message, and re-parsing them took a fifth
/// of its CPU (measured with perf by the benchmark).
pub fn exec<P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// `query_row` through the prepared-statement cache.
pub fn row<T, P, F>(conn: &Connection, sql: &str, params: P, f: F) -> rusqlite::Result<T>
where
    P: rusqlite::Params,
    F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
{
    conn.prepare_cached(sql)?.query_row(params, f)
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Creates `path` with mode 0600 if it does not exist yet, so SQLite never
/// creates it with the process umask.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StoreError::Create {
            path: path.to_owned(),
            source,
        }),
    }
}

// ---------------------------------------------------------------------------
// Folders

/// What we know about an IMAP folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderState {
    pub uidvalidity: u32,
    pub last_uid: u32,
}

pub fn folder_state(conn: &Connection, name: &str) -> Result<Option<FolderState>, StoreError> {
    row(
        conn,
        "SELECT uidvalidity, last_uid FROM folders WHERE name = ?1",
        [name],
        |r| {
            Ok(FolderState {
                uidvalidity: r.get(0)?,
                last_uid: r.get(1)?,
            })
        },
    )
    .optional()
    .ctx("reading folder state")
}

/// Records the folder's UIDVALIDITY and last processed UID. The last UID only
/// grows within one UIDVALIDITY.
pub fn set_folder_state(
    conn: &Connection,
    name: &str,
    st: &FolderState,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO folders (name, uidvalidity, last_uid, last_sync_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(name) DO UPDATE SET
           last_uid = CASE WHEN uidvalidity = excluded.uidvalidity
                           THEN max(last_uid, excluded.last_uid) ELSE excluded.last_uid END,
           uidvalidity = excluded.uidvalidity,
           last_sync_at = excluded.last_sync_at",
        params![name, st.uidvalidity, st.last_uid, fmt_ts(now)],
    )
    .ctx("saving folder state")?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Messages

/// A message to record.
#[derive(Debug, Clone, Default)]
pub struct NewMessage<'a> {
    pub direction: &'static str,
    pub dedup_key: String,
    pub folder: Option<&'a str>,
    pub uidvalidity: Option<u32>,
    pub uid: Option<u32>,
    pub message_id: Option<String>,
    pub case_id: Option<String>,
    pub kind: &'static str,
    pub robot_rule: Option<&'static str>,
    pub from_addr: Option<String>,
    pub to_addrs: Option<String>,
    pub subject: Option<String>,
    pub in_reply_to: Option<String>,
    pub refs: Option<String>,
    pub parsed_ok: bool,
    pub encrypted: bool,
    pub size: u64,
    pub truncated: bool,
    pub at: DateTime<Utc>,
    pub raw: &'a [u8],
    /// [`crate::message::ParsedMessage::content_key`]; `None` for mail we send.
    pub content_key: Option<String>,
}

pub fn message_seen(conn: &Connection, dedup_key: &str) -> Result<bool, StoreError> {
    row(
        conn,
        "SELECT 1 FROM messages WHERE dedup_key = ?1",
        [dedup_key],
        |_| Ok(()),
    )
    .optional()
    .ctx("checking for a duplicate message")
    .map(|o| o.is_some())
}

/// The content key recorded with the message stored under `dedup_key`:
/// `None` when there is no such message, `Some(None)` when it was stored
/// before content keys existed.
pub fn content_key_of(
    conn: &Connection,
    dedup_key: &str,
) -> Result<Option<Option<String>>, StoreError> {
    row(
        conn,
        "SELECT content_key FROM messages WHERE dedup_key = ?1",
        [dedup_key],
        |r| r.get(0),
    )
    .optional()
    .ctx("reading a stored message's content key")
}

/// Poison guard, before processing: the attempts already counted for each
/// of `uids` (0 for none), in the order given: the most of any attempted
/// range that holds the UID.
pub fn intake_attempts(
    conn: &Connection,
    folder: &str,
    uidvalidity: u32,
    uids: &[u32],
) -> Result<Vec<u32>, StoreError> {
    let (Some(lo), Some(hi)) = (uids.iter().min(), uids.iter().max()) else {
        return Ok(Vec::new());
    };
    let mut st = conn
        .prepare_cached(
            "SELECT first_uid, last_uid, attempts FROM intake_attempts
             WHERE folder = ?1 AND uidvalidity = ?2 AND first_uid <= ?4 AND last_uid >= ?3",
        )
        .ctx("reading intake attempts")?;
    let ranges = st
        .query_map(params![folder, uidvalidity, lo, hi], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, u32>(2)?,
            ))
        })
        .ctx("reading intake attempts")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("reading intake attempts")?;
    Ok(uids
        .iter()
        .map(|uid| {
            ranges
                .iter()
                .filter(|(first, last, _)| first <= uid && uid <= last)
                .map(|(_, _, attempts)| *attempts)
                .max()
                .unwrap_or(0)
        })
        .collect())
}

/// Poison guard: counts one more attempt at processing `uids`, as one
/// range row; `prior` is what the UIDs already had (see
/// [`intake_attempts`]), so a message tried alone after its group failed
/// counts as a second attempt. The caller commits before touching them.
pub fn count_intake_attempt(
    conn: &Connection,
    folder: &str,
    uidvalidity: u32,
    uids: &[u32],
    prior: u32,
) -> Result<(), StoreError> {
    let (Some(lo), Some(hi)) = (uids.iter().min(), uids.iter().max()) else {
        return Ok(());
    };
    exec(
        conn,
        "INSERT INTO intake_attempts (folder, uidvalidity, first_uid, last_uid, attempts)
         VALUES (?1, ?2, ?3, ?4, ?5 + 1)
         ON CONFLICT (folder, uidvalidity, first_uid, last_uid)
         DO UPDATE SET attempts = max(attempts, ?5) + 1",
        params![folder, uidvalidity, lo, hi, prior],
    )
    .ctx("counting an intake attempt")?;
    Ok(())
}

/// Poison guard: the UIDs up to `max_uid` are recorded; forget their
/// attempts (in the transaction that records them).
pub fn clear_intake_attempts(
    conn: &Connection,
    folder: &str,
    uidvalidity: u32,
    max_uid: u32,
) -> Result<(), StoreError> {
    exec(
        conn,
        "DELETE FROM intake_attempts WHERE folder = ?1 AND (uidvalidity <> ?2 OR last_uid <= ?3)",
        params![folder, uidvalidity, max_uid],
    )
    .ctx("clearing intake attempts")?;
    Ok(())
}

/// Messages at least this large are kept in `message_raw` and written into
/// a zeroblob through SQLite's incremental blob I/O: a bound blob parameter
/// is copied whole first (SQLITE_TRANSIENT), one more copy of a large
/// report at the peak. Smaller ones stay in `messages.raw`: one insert
/// each keeps the backlog fast.
const BLOB_STREAM_BYTES: usize = 256 * 1024;

/// The raw bytes of message `m` (an alias of `messages`), wherever they are.
const RAW_OF_M: &str = "coalesce((SELECT raw FROM message_raw WHERE id = m.id), m.raw)";

pub fn insert_message(conn: &Connection, m: &NewMessage<'_>) -> Result<i64, StoreError> {
    use rusqlite::blob::ZeroBlob;
    let stream = m.raw.len() >= BLOB_STREAM_BYTES;
    let raw: &[u8] = if stream { &[] } else { m.raw };
    exec(conn,
        "INSERT INTO messages (direction, dedup_key, folder, uidvalidity, uid, message_id, case_id,
             kind, robot_rule, from_addr, to_addrs, subject, in_reply_to, refs, parsed_ok,
             encrypted, size, truncated, at, raw, content_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
        params![
            m.direction,
            m.dedup_key,
            m.folder,
            m.uidvalidity,
            m.uid,
            m.message_id,
            m.case_id,
            m.kind,
            m.robot_rule,
            m.from_addr,
            m.to_addrs,
            m.subject,
            m.in_reply_to,
            m.refs,
            m.parsed_ok,
            m.encrypted,
            m.size as i64,
            m.truncated,
            fmt_ts(m.at),
            raw,
            m.content_key,
        ],
    )
    .ctx("storing a message")?;
    let id = conn.last_insert_rowid();
    if stream {
        use std::io::Write;
        let len = i32::try_from(m.raw.len()).map_err(|_| StoreError::Query {
            context: "storing a message over 2 GiB",
            source: rusqlite::Error::ToSqlConversionFailure("message too large".into()),
        })?;
        exec(
            conn,
            "INSERT INTO message_raw (id, raw) VALUES (?1, ?2)",
            params![id, ZeroBlob(len)],
        )
        .ctx("storing a message")?;
        let mut blob = conn
            .blob_open(
                rusqlite::DatabaseName::Main,
                "message_raw",
                "raw",
                id,
                false,
            )
            .ctx("storing a message")?;
        blob.write_all(m.raw).map_err(|e| StoreError::Query {
            context: "storing a message",
            source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
        })?;
    }
    Ok(id)
}

/// The case a Message-ID belongs to, if any message we stored (in or out)
/// carries it.
pub fn case_of_message_id(conn: &Connection, mid: &str) -> Result<Option<String>, StoreError> {
    row(
        conn,
        "SELECT case_id FROM messages WHERE message_id = ?1 AND case_id IS NOT NULL
         ORDER BY id LIMIT 1",
        [mid],
        |r| r.get(0),
    )
    .optional()
    .ctx("looking up a Message-ID")
}

/// The kind of the message we stored with Message-ID `mid`, if any.
pub fn kind_of_message_id(conn: &Connection, mid: &str) -> Result<Option<String>, StoreError> {
    row(
        conn,
        "SELECT kind FROM messages WHERE message_id = ?1 ORDER BY id LIMIT 1",
        [mid],
        |r| r.get(0),
    )
    .optional()
    .ctx("looking up a Message-ID")
}

/// Whether `addr` takes part in the case: its reporter, or the sender of
/// its report (when the reporter asked for answers at a Reply-To).
/// Handlers are checked by the caller; nobody else joins a case.
pub fn takes_part(conn: &Connection, case_id: &str, addr: &str) -> Result<bool, StoreError> {
    let n: i64 = conn
        .query_row(
            "SELECT (SELECT count(*) FROM cases WHERE id = ?1 AND reporter = ?2)
                  + (SELECT count(*) FROM messages
                     WHERE case_id = ?1 AND kind = 'report' AND from_addr = ?2)",
            params![case_id, addr],
            |r| r.get(0),
        )
        .ctx("checking who takes part in a case")?;
    Ok(n > 0)
}

pub fn set_message_case(conn: &Connection, msg: i64, case_id: &str) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE messages SET case_id = ?2 WHERE id = ?1",
        params![msg, case_id],
    )
    .ctx("attaching a message to a case")?;
    Ok(())
}

/// A stored message, without its raw bytes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MessageRow {
    pub id: i64,
    pub direction: String,
    pub kind: String,
    pub robot_rule: Option<String>,
    pub message_id: Option<String>,
    pub case_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub subject: Option<String>,
    pub at: String,
    pub size: i64,
    pub parsed_ok: bool,
    pub encrypted: bool,
    pub truncated: bool,
}

const MESSAGE_COLS: &str = "id, direction, kind, robot_rule, message_id, case_id, from_addr,
    to_addrs, subject, at, size, parsed_ok, encrypted, truncated";

fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        id: r.get(0)?,
        direction: r.get(1)?,
        kind: r.get(2)?,
        robot_rule: r.get(3)?,
        message_id: r.get(4)?,
        case_id: r.get(5)?,
        from: r.get(6)?,
        to: r.get(7)?,
        subject: r.get(8)?,
        at: r.get(9)?,
        size: r.get(10)?,
        parsed_ok: r.get(11)?,
        encrypted: r.get(12)?,
        truncated: r.get(13)?,
    })
}

pub fn messages_of_case(conn: &Connection, case_id: &str) -> Result<Vec<MessageRow>, StoreError> {
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLS} FROM messages WHERE case_id = ?1 ORDER BY at, id"
        ))
        .ctx("listing a case's messages")?;
    let rows = st
        .query_map([case_id], message_row)
        .ctx("listing a case's messages")?;
    rows.collect::<Result<_, _>>()
        .ctx("listing a case's messages")
}

pub fn robot_messages(conn: &Connection) -> Result<Vec<MessageRow>, StoreError> {
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLS} FROM messages WHERE kind = 'robot' ORDER BY id"
        ))
        .ctx("listing auto-generated mail")?;
    let rows = st
        .query_map([], message_row)
        .ctx("listing auto-generated mail")?;
    rows.collect::<Result<_, _>>()
        .ctx("listing auto-generated mail")
}

/// Incoming mail that belongs to no case: robots that did not thread and
/// messages older than the backfill window.
pub fn unattached_messages(conn: &Connection) -> Result<Vec<MessageRow>, StoreError> {
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLS} FROM messages WHERE direction = 'in' AND case_id IS NULL ORDER BY id"
        ))
        .ctx("listing mail without a case")?;
    let rows = st
        .query_map([], message_row)
        .ctx("listing mail without a case")?;
    rows.collect::<Result<_, _>>()
        .ctx("listing mail without a case")
}

pub fn message(conn: &Connection, id: i64) -> Result<Option<(MessageRow, Vec<u8>)>, StoreError> {
    row(
        conn,
        &format!("SELECT {MESSAGE_COLS}, {RAW_OF_M} FROM messages m WHERE id = ?1"),
        [id],
        |r| Ok((message_row(r)?, r.get(14)?)),
    )
    .optional()
    .ctx("reading a message")
}

/// A stored message and at most the first `max` bytes of its raw bytes,
/// read through incremental blob I/O, with the full length: building a
/// handler mail for a 27 MiB report read it whole twice (SQLite's value
/// and its copy).
pub fn message_prefix(
    conn: &Connection,
    id: i64,
    max: usize,
) -> Result<Option<(MessageRow, Vec<u8>, usize)>, StoreError> {
    use std::io::Read;
    let Some(row) = row(
        conn,
        &format!("SELECT {MESSAGE_COLS} FROM messages m WHERE id = ?1"),
        [id],
        message_row,
    )
    .optional()
    .ctx("reading a message")?
    else {
        return Ok(None);
    };
    let table = if exists(conn, "SELECT 1 FROM message_raw WHERE id = ?1", [id])? {
        "message_raw"
    } else {
        "messages"
    };
    let mut blob = conn
        .blob_open(rusqlite::DatabaseName::Main, table, "raw", id, true)
        .ctx("reading a message")?;
    let len = blob.len();
    let mut raw = Vec::with_capacity(len.min(max));
    (&mut blob)
        .take(max as u64)
        .read_to_end(&mut raw)
        .map_err(|e| StoreError::Query {
            context: "reading a message",
            source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
        })?;
    Ok(Some((row, raw, len)))
}

/// Whether `sql` (a `SELECT 1 …`) finds a row.
fn exists<P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
) -> Result<bool, StoreError> {
    row(conn, sql, params, |_| Ok(()))
        .optional()
        .map(|o| o.is_some())
        .ctx("looking up a row")
}

/// A fact recorded for the advisory: `credit`, `summary`.
pub fn fact(conn: &Connection, case_id: &str, key: &str) -> Result<Option<String>, StoreError> {
    row(
        conn,
        "SELECT value FROM case_facts WHERE case_id = ?1 AND key = ?2",
        [case_id, key],
        |r| r.get(0),
    )
    .optional()
    .ctx("reading a case fact")
}

pub fn set_fact(
    conn: &Connection,
    case_id: &str,
    key: &str,
    value: &str,
) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO case_facts (case_id, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (case_id, key) DO UPDATE SET value = excluded.value",
        [case_id, key, value],
    )
    .ctx("recording a case fact")?;
    Ok(())
}

/// Whether the case's reporter gets no updates (`/quiet`).
pub fn is_quiet(conn: &Connection, case_id: &str) -> Result<bool, StoreError> {
    exists(
        conn,
        "SELECT 1 FROM quiet_cases WHERE case_id = ?1",
        [case_id],
    )
}

pub fn set_quiet(conn: &Connection, case_id: &str, quiet: bool) -> Result<(), StoreError> {
    let sql = if quiet {
        "INSERT INTO quiet_cases (case_id) VALUES (?1) ON CONFLICT DO NOTHING"
    } else {
        "DELETE FROM quiet_cases WHERE case_id = ?1"
    };
    exec(conn, sql, [case_id]).ctx("setting /quiet")?;
    Ok(())
}

pub fn set_message_kind(conn: &Connection, id: i64, kind: &str) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE messages SET kind = ?2 WHERE id = ?1",
        params![id, kind],
    )
    .ctx("updating a message")?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Cases

/// Allocates the next case number of `year`.
pub fn next_case_seq(conn: &Connection, year: i32) -> Result<u32, StoreError> {
    row(
        conn,
        "INSERT INTO case_seq (year, last) VALUES (?1, 1)
         ON CONFLICT(year) DO UPDATE SET last = last + 1 RETURNING last",
        [year],
        |r| r.get(0),
    )
    .ctx("allocating a case number")
}

/// A case as listed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseRow {
    pub id: String,
    pub state: crate::model::State,
    pub reporter: Option<String>,
    pub subject: Option<String>,
    pub received_at: String,
    pub ack_due_at: String,
    pub respond_due_at: String,
    pub acknowledged_at: Option<String>,
    pub responded_at: Option<String>,
    pub unparsed: bool,
    pub primary_handler: Option<String>,
    pub severity: Option<String>,
    pub affected: Option<String>,
    pub fixed_in: Option<String>,
    pub cve: Option<String>,
    pub duplicate_of: Option<String>,
    /// Message-ID (without brackets) of the handlers' notification, the
    /// root of the case's thread. Internal; not part of the JSON shape.
    #[serde(skip)]
    pub thread_root: Option<String>,
}

const CASE_COLS: &str = "id, state, reporter, subject, received_at, ack_due_at, respond_due_at,
    acknowledged_at, responded_at, unparsed, primary_handler, severity, affected, fixed_in, cve,
    duplicate_of, thread_root";

fn case_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CaseRow> {
    Ok(CaseRow {
        id: r.get(0)?,
        state: r.get(1)?,
        reporter: r.get(2)?,
        subject: r.get(3)?,
        received_at: r.get(4)?,
        ack_due_at: r.get(5)?,
        respond_due_at: r.get(6)?,
        acknowledged_at: r.get(7)?,
        responded_at: r.get(8)?,
        unparsed: r.get(9)?,
        primary_handler: r.get(10)?,
        severity: r.get(11)?,
        affected: r.get(12)?,
        fixed_in: r.get(13)?,
        cve: r.get(14)?,
        duplicate_of: r.get(15)?,
        thread_root: r.get(16)?,
    })
}

pub fn insert_case(conn: &Connection, c: &CaseRow) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO cases (id, state, reporter, subject, received_at, ack_due_at, respond_due_at,
             acknowledged_at, responded_at, unparsed, primary_handler, thread_root)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            c.id,
            c.state,
            c.reporter,
            c.subject,
            c.received_at,
            c.ack_due_at,
            c.respond_due_at,
            c.acknowledged_at,
            c.responded_at,
            c.unparsed,
            c.primary_handler,
            c.thread_root
        ],
    )
    .ctx("opening a case")?;
    Ok(())
}

pub fn case(conn: &Connection, id: &str) -> Result<Option<CaseRow>, StoreError> {
    row(
        conn,
        &format!("SELECT {CASE_COLS} FROM cases WHERE id = ?1"),
        [id],
        case_row,
    )
    .optional()
    .ctx("reading a case")
}

pub fn cases(
    conn: &Connection,
    state: Option<crate::model::State>,
) -> Result<Vec<CaseRow>, StoreError> {
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT {CASE_COLS} FROM cases WHERE ?1 IS NULL OR state = ?1 ORDER BY received_at, id"
        ))
        .ctx("listing cases")?;
    let rows = st.query_map([state], case_row).ctx("listing cases")?;
    rows.collect::<Result<_, _>>().ctx("listing cases")
}

/// A case attribute a handler may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseField {
    State,
    PrimaryHandler,
    Severity,
    Affected,
    FixedIn,
    Cve,
    DuplicateOf,
}

impl CaseField {
    fn column(self) -> &'static str {
        match self {
            CaseField::State => "state",
            CaseField::PrimaryHandler => "primary_handler",
            CaseField::Severity => "severity",
            CaseField::Affected => "affected",
            CaseField::FixedIn => "fixed_in",
            CaseField::Cve => "cve",
            CaseField::DuplicateOf => "duplicate_of",
        }
    }
}

pub fn set_case_field(
    conn: &Connection,
    id: &str,
    field: CaseField,
    value: &str,
) -> Result<(), StoreError> {
    exec(
        conn,
        &format!("UPDATE cases SET {} = ?2 WHERE id = ?1", field.column()),
        params![id, value],
    )
    .ctx("updating a case")?;
    Ok(())
}

/// Sets the forged-mail alert flag; returns true the first time.
pub fn first_forged_alert(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    let n = conn
        .execute(
            "UPDATE cases SET forged_alerted = 1 WHERE id = ?1 AND forged_alerted = 0",
            [id],
        )
        .ctx("recording a forged-mail alert")?;
    Ok(n > 0)
}

/// Promises a handler notification for a new case (built later by
/// `workflow::build_pending_notifications`).
pub fn add_pending_notification(
    conn: &Connection,
    case_id: &str,
    message: i64,
) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO pending_notifications (case_id, message) VALUES (?1, ?2)
         ON CONFLICT(case_id) DO NOTHING",
        params![case_id, message],
    )
    .ctx("promising a notification")?;
    Ok(())
}

/// Up to `limit` promised notifications: (case id, report message id).
pub fn pending_notifications(
    conn: &Connection,
    limit: u32,
) -> Result<Vec<(String, i64)>, StoreError> {
    let mut st = conn
        .prepare_cached(
            "SELECT case_id, message FROM pending_notifications ORDER BY rowid LIMIT ?1",
        )
        .ctx("reading promised notifications")?;
    let rows = st
        .query_map([limit], |r| Ok((r.get(0)?, r.get(1)?)))
        .ctx("reading promised notifications")?;
    rows.collect::<Result<_, _>>()
        .ctx("reading promised notifications")
}

pub fn done_pending_notification(conn: &Connection, case_id: &str) -> Result<(), StoreError> {
    exec(
        conn,
        "DELETE FROM pending_notifications WHERE case_id = ?1",
        [case_id],
    )
    .ctx("keeping a promised notification")?;
    Ok(())
}

/// Reads a setting (small persistent counters such as the round-robin position).
pub fn setting(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    row(
        conn,
        "SELECT value FROM settings WHERE key = ?1",
        [key],
        |r| r.get(0),
    )
    .optional()
    .ctx("reading a setting")
}

pub fn set_setting(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO settings (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )
    .ctx("saving a setting")?;
    Ok(())
}

/// Records when the case was first acknowledged; returns whether it
/// changed. The state move is `workflow::acknowledged`'s.
pub fn mark_acknowledged(
    conn: &Connection,
    id: &str,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = conn
        .execute(
            "UPDATE cases SET acknowledged_at = ?2 WHERE id = ?1 AND acknowledged_at IS NULL",
            params![id, fmt_ts(at)],
        )
        .ctx("marking a case acknowledged")?;
    Ok(n > 0)
}

/// Records the first response to the reporter; returns whether it changed.
pub fn mark_responded(conn: &Connection, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
    let n = conn
        .execute(
            "UPDATE cases SET responded_at = ?2 WHERE id = ?1 AND responded_at IS NULL",
            params![id, fmt_ts(at)],
        )
        .ctx("recording a response")?;
    Ok(n > 0)
}

// ---------------------------------------------------------------------------
// Events

/// One line of a case's audit trail.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventRow {
    pub at: String,
    pub actor: String,
    pub what: String,
    pub detail: Option<String>,
    pub source_message_id: Option<String>,
}

pub fn add_event(
    conn: &Connection,
    case_id: &str,
    at: DateTime<Utc>,
    actor: &str,
    what: &str,
    detail: Option<&str>,
    source_message_id: Option<&str>,
) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO events (case_id, at, actor, what, detail, source_message_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![case_id, fmt_ts(at), actor, what, detail, source_message_id],
    )
    .ctx("recording an event")?;
    Ok(())
}

pub fn events_of_case(conn: &Connection, case_id: &str) -> Result<Vec<EventRow>, StoreError> {
    let mut st = conn
        .prepare_cached(
            "SELECT at, actor, what, detail, source_message_id FROM events
             WHERE case_id = ?1 ORDER BY at, id",
        )
        .ctx("listing events")?;
    let rows = st
        .query_map([case_id], |r| {
            Ok(EventRow {
                at: r.get(0)?,
                actor: r.get(1)?,
                what: r.get(2)?,
                detail: r.get(3)?,
                source_message_id: r.get(4)?,
            })
        })
        .ctx("listing events")?;
    rows.collect::<Result<_, _>>().ctx("listing events")
}

// ---------------------------------------------------------------------------
// Outbox

/// A row of the outbox that is due.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub id: i64,
    pub message: i64,
    pub case_id: Option<String>,
    pub purpose: String,
    pub envelope_from: String,
    pub recipients: Vec<String>,
    pub attempts: u32,
    pub raw: Vec<u8>,
}

#[allow(clippy::too_many_arguments)]
pub fn enqueue(
    conn: &Connection,
    message: i64,
    case_id: Option<&str>,
    purpose: &str,
    envelope_from: &str,
    recipients: &[String],
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let rcpts = recipients.join(",");
    let key = match recipients {
        [one] => Some(crate::model::mailbox_key(one)),
        _ => None,
    };
    exec(
        conn,
        "INSERT INTO outbox (message, case_id, purpose, envelope_from, recipients, status,
             next_attempt_at, created_at, recipient_key)
         VALUES (?1, ?2, ?3, ?4, ?5, 'scheduled', ?6, ?6, ?7)",
        params![
            message,
            case_id,
            purpose,
            envelope_from,
            rcpts,
            fmt_ts(now),
            key
        ],
    )
    .ctx("queueing outgoing mail")?;
    let id = conn.last_insert_rowid();
    if purpose == "ack" {
        let minute = now.timestamp().div_euclid(60);
        let n: i64 = row(
            conn,
            "INSERT INTO ack_minutes (minute, n) VALUES (?1, 1)
             ON CONFLICT (minute) DO UPDATE SET n = n + 1 RETURNING n",
            [minute],
            |r| r.get(0),
        )
        .ctx("counting an acknowledgement")?;
        // A new minute: forget the ones no hour looks at any more.
        if n == 1 {
            exec(
                conn,
                "DELETE FROM ack_minutes WHERE minute < ?1",
                [minute - 120],
            )
            .ctx("counting an acknowledgement")?;
        }
    }
    Ok(id)
}

/// Acknowledgements queued or held for the mailbox `key` (see
/// [`crate::model::mailbox_key`]) since `since`, for the per-sender limit.
pub fn acks_to_since(
    conn: &Connection,
    key: &str,
    since: DateTime<Utc>,
) -> Result<u32, StoreError> {
    row(
        conn,
        "SELECT (SELECT count(*) FROM outbox
                 WHERE purpose = 'ack' AND recipient_key = ?1 AND created_at >= ?2)
              + (SELECT count(*) FROM held_acks WHERE recipient_key = ?1 AND held_at >= ?2)",
        params![key, fmt_ts(since)],
        |r| r.get(0),
    )
    .ctx("counting acknowledgements")
}

/// Acknowledgements queued for anyone in the 60 minutes up to `now` (by
/// whole minutes), for the hourly limit.
pub fn acks_last_hour(conn: &Connection, now: DateTime<Utc>) -> Result<u32, StoreError> {
    let minute = now.timestamp().div_euclid(60);
    row(
        conn,
        "SELECT coalesce(sum(n), 0) FROM ack_minutes WHERE minute > ?1 AND minute <= ?2",
        [minute - 60, minute],
        |r| r.get(0),
    )
    .ctx("counting acknowledgements")
}

/// An acknowledgement held back by a limit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HeldAck {
    pub case_id: String,
    /// The stored outgoing message.
    pub message: i64,
    pub recipient: String,
    pub reason: String,
    pub held_at: String,
}

pub fn hold_ack(conn: &Connection, h: &HeldAck, key: &str) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO held_acks (case_id, message, recipient, recipient_key, reason, held_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![h.case_id, h.message, h.recipient, key, h.reason, h.held_at],
    )
    .ctx("holding an acknowledgement")?;
    Ok(())
}

/// Held acknowledgements, oldest first; only `case_id`'s when given.
pub fn held_acks(conn: &Connection, case_id: Option<&str>) -> Result<Vec<HeldAck>, StoreError> {
    let mut st = conn
        .prepare_cached(
            "SELECT case_id, message, recipient, reason, held_at FROM held_acks
             WHERE ?1 IS NULL OR case_id = ?1 ORDER BY held_at, case_id",
        )
        .ctx("listing held acknowledgements")?;
    let rows = st
        .query_map([case_id], |r| {
            Ok(HeldAck {
                case_id: r.get(0)?,
                message: r.get(1)?,
                recipient: r.get(2)?,
                reason: r.get(3)?,
                held_at: r.get(4)?,
            })
        })
        .ctx("listing held acknowledgements")?;
    rows.collect::<Result<_, _>>()
        .ctx("listing held acknowledgements")
}

pub fn unhold_ack(conn: &Connection, case_id: &str) -> Result<(), StoreError> {
    exec(conn, "DELETE FROM held_acks WHERE case_id = ?1", [case_id])
        .ctx("releasing a held acknowledgement")?;
    Ok(())
}

/// Due outbox rows: acknowledgements first (the promise to reporters is
/// the one with a clock), then oldest first.
/// Due outbox rows, at most `limit` of them and, past the first, at most
/// `max_bytes` of raw mail: a notification attaches the whole report, so
/// 64 rows could otherwise hold gigabytes.
pub fn due_outbox(
    conn: &Connection,
    now: DateTime<Utc>,
    limit: u32,
    max_bytes: usize,
) -> Result<Vec<OutboxItem>, StoreError> {
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT o.id, o.message, o.case_id, o.purpose, o.envelope_from, o.recipients,
                    o.attempts, {RAW_OF_M}
             FROM outbox o INDEXED BY outbox_order JOIN messages m ON m.id = o.message
             WHERE o.status = 'scheduled' AND o.next_attempt_at <= ?1
             ORDER BY o.status, (o.purpose <> 'ack'), o.next_attempt_at, o.id LIMIT ?2"
        ))
        .ctx("reading the outbox")?;
    let rows = st
        .query_map(params![fmt_ts(now), limit], |r| {
            let rcpts: String = r.get(5)?;
            Ok(OutboxItem {
                id: r.get(0)?,
                message: r.get(1)?,
                case_id: r.get(2)?,
                purpose: r.get(3)?,
                envelope_from: r.get(4)?,
                recipients: rcpts.split(',').map(str::to_owned).collect(),
                attempts: r.get(6)?,
                raw: r.get(7)?,
            })
        })
        .ctx("reading the outbox")?;
    let mut out: Vec<OutboxItem> = Vec::new();
    let mut bytes = 0;
    for item in rows {
        let item = item.ctx("reading the outbox")?;
        bytes += item.raw.len();
        out.push(item);
        if bytes >= max_bytes {
            break;
        }
    }
    Ok(out)
}

/// When the next scheduled outbox row falls due, if any.
pub fn next_outbox_due(conn: &Connection) -> Result<Option<String>, StoreError> {
    row(
        conn,
        "SELECT min(next_attempt_at) FROM outbox WHERE status = 'scheduled'",
        [],
        |r| r.get(0),
    )
    .ctx("reading the outbox")
}

pub fn outbox_sent(conn: &Connection, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
    exec(conn,
        "UPDATE outbox SET status = 'sent', sent_at = ?2, attempts = attempts + 1, last_error = NULL
         WHERE id = ?1",
        params![id, fmt_ts(at)],
    )
    .ctx("recording a delivery")?;
    Ok(())
}

pub fn outbox_retry(
    conn: &Connection,
    id: i64,
    next: DateTime<Utc>,
    error: &str,
) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3
         WHERE id = ?1",
        params![id, fmt_ts(next), error],
    )
    .ctx("scheduling a retry")?;
    Ok(())
}

pub fn outbox_failed(conn: &Connection, id: i64, error: &str) -> Result<(), StoreError> {
    exec(conn,
        "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ?2 WHERE id = ?1",
        params![id, error],
    )
    .ctx("recording a failed delivery")?;
    Ok(())
}

/// Outbox backlog: number of unsent rows and the creation time of the oldest.
pub fn outbox_backlog(conn: &Connection) -> Result<(u64, Option<String>), StoreError> {
    row(
        conn,
        "SELECT count(*), min(created_at) FROM outbox WHERE status = 'scheduled'",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
    )
    .ctx("reading the outbox backlog")
}

pub fn outbox_failed_count(conn: &Connection) -> Result<u64, StoreError> {
    row(
        conn,
        "SELECT count(*) FROM outbox WHERE status = 'failed'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n as u64),
    )
    .ctx("reading the outbox")
}

// ---------------------------------------------------------------------------
// Health

/// The health record of one component ("imap" or "smtp").
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Health {
    pub component: String,
    pub last_ok_at: Option<String>,
    pub failing_since: Option<String>,
    pub last_error: Option<String>,
    pub alerted: bool,
}

pub fn health(conn: &Connection, component: &str) -> Result<Health, StoreError> {
    Ok(conn
        .query_row(
            "SELECT component, last_ok_at, failing_since, last_error, alerted FROM health
             WHERE component = ?1",
            [component],
            |r| {
                Ok(Health {
                    component: r.get(0)?,
                    last_ok_at: r.get(1)?,
                    failing_since: r.get(2)?,
                    last_error: r.get(3)?,
                    alerted: r.get(4)?,
                })
            },
        )
        .optional()
        .ctx("reading health")?
        .unwrap_or(Health {
            component: component.to_owned(),
            ..Health::default()
        }))
}

pub fn put_health(conn: &Connection, h: &Health) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO health (component, last_ok_at, failing_since, last_error, alerted)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(component) DO UPDATE SET last_ok_at = excluded.last_ok_at,
             failing_since = excluded.failing_since, last_error = excluded.last_error,
             alerted = excluded.alerted",
        params![
            h.component,
            h.last_ok_at,
            h.failing_since,
            h.last_error,
            h.alerted
        ],
    )
    .ctx("saving health")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_hourly_ack_count_is_a_sliding_window_of_minutes() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let c = s.conn();
        let t0 = crate::clock::parse_ts("2026-03-01T12:00:30Z").unwrap();
        let msg = |n: i64| {
            c.execute(
                "INSERT INTO messages (direction, dedup_key, kind, size, at, raw)
                 VALUES ('out', ?1, 'ack', 1, '2026-03-01T12:00:00Z', x'00')",
                [format!("k{n}")],
            )
            .unwrap();
            c.last_insert_rowid()
        };
        let to = vec!["a@example.net".to_string()];
        for (i, minutes) in [0i64, 10, 59, 59].iter().enumerate() {
            let at = t0 + chrono::Duration::minutes(*minutes);
            enqueue(c, msg(i as i64), None, "ack", "s@x", &to, at).unwrap();
        }
        enqueue(c, msg(9), None, "notification", "s@x", &to, t0).unwrap();
        let at = |m: i64| t0 + chrono::Duration::minutes(m);
        assert_eq!(acks_last_hour(c, at(59)).unwrap(), 4);
        assert_eq!(acks_last_hour(c, at(60)).unwrap(), 3);
        assert_eq!(acks_last_hour(c, at(70)).unwrap(), 2);
        assert_eq!(acks_last_hour(c, at(200)).unwrap(), 0);
        // The per-sender count folds case and +tags.
        let since = t0 - chrono::Duration::days(1);
        assert_eq!(acks_to_since(c, "a@example.net", since).unwrap(), 4);
    }

    #[test]
    fn large_messages_are_streamed_into_the_blob_intact() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        for (n, len) in [
            (1, 10),
            (2, BLOB_STREAM_BYTES),
            (3, 3 * BLOB_STREAM_BYTES + 7),
        ] {
            let raw: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let m = NewMessage {
                direction: "in",
                dedup_key: format!("k{n}"),
                kind: "report",
                size: len as u64,
                at: crate::clock::parse_ts("2026-03-01T12:00:00Z").unwrap(),
                raw: &raw,
                ..NewMessage::default()
            };
            let id = insert_message(s.conn(), &m).unwrap();
            assert_eq!(
                message(s.conn(), id).unwrap().unwrap().1,
                raw,
                "{len} bytes"
            );
            let (_, head, total) = message_prefix(s.conn(), id, 1000).unwrap().unwrap();
            assert_eq!(total, len);
            assert_eq!(head, raw[..len.min(1000)]);
            let (_, whole, _) = message_prefix(s.conn(), id, len).unwrap().unwrap();
            assert_eq!(whole, raw);
        }
    }

    #[test]
    fn a_hint_transaction_commits_and_restores_full_sync() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.db")).unwrap();
        s.hint_transaction(|tx| count_intake_attempt(tx, "INBOX", 1, &[7, 8], 0))
            .unwrap();
        let err = s.hint_transaction(|tx| -> Result<(), StoreError> {
            count_intake_attempt(tx, "INBOX", 1, &[7], 1)?;
            Err(StoreError::Query {
                context: "test",
                source: rusqlite::Error::InvalidQuery,
            })
        });
        assert!(err.is_err());
        let sync: i64 = s
            .conn()
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous is FULL again");
        // The failed one rolled back; the first one is there.
        assert_eq!(
            intake_attempts(s.conn(), "INBOX", 1, &[7, 8, 9]).unwrap(),
            vec![1, 1, 0]
        );
        // Tried alone after its group failed: a second attempt.
        count_intake_attempt(s.conn(), "INBOX", 1, &[8], 1).unwrap();
        assert_eq!(
            intake_attempts(s.conn(), "INBOX", 1, &[7, 8]).unwrap(),
            vec![1, 2]
        );
        // Recorded up to 7: the single row of 8 and the group row stay
        // until 8 is recorded too.
        clear_intake_attempts(s.conn(), "INBOX", 1, 7).unwrap();
        assert_eq!(
            intake_attempts(s.conn(), "INBOX", 1, &[8]).unwrap(),
            vec![2]
        );
        clear_intake_attempts(s.conn(), "INBOX", 1, 8).unwrap();
        assert_eq!(
            intake_attempts(s.conn(), "INBOX", 1, &[7, 8]).unwrap(),
            vec![0, 0]
        );
    }

    #[test]
    fn creates_private_file_and_migrates_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let s = Store::open(&path).unwrap();
            let v: i64 = s
                .conn()
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
            assert_eq!(v as usize, MIGRATIONS.len());
        }
        // Second open runs no migration and keeps the data.
        let s = Store::open(&path).unwrap();
        assert_eq!(next_case_seq(s.conn(), 2026).unwrap(), 1);
        for f in ["s.db", "s.db-wal", "s.db-shm"] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f} must be 0600");
        }
    }

    #[test]
    fn concurrent_first_opens_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || Store::open(&p).map(|_| ()))
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
    }

    #[test]
    fn refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let s = Store::open(&path).unwrap();
            s.conn().pragma_update(None, "user_version", 99).unwrap();
        }
        let err = Store::open(&path).unwrap_err().to_string();
        assert!(err.contains("schema version 99"), "{err}");
    }

    #[test]
    fn case_numbers_are_per_year() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        assert_eq!(next_case_seq(s.conn(), 2026).unwrap(), 1);
        assert_eq!(next_case_seq(s.conn(), 2026).unwrap(), 2);
        assert_eq!(next_case_seq(s.conn(), 2027).unwrap(), 1);
    }

    #[test]
    fn folder_last_uid_never_goes_back_within_uidvalidity() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let now = Utc::now();
        let st = |v, u| FolderState {
            uidvalidity: v,
            last_uid: u,
        };
        set_folder_state(s.conn(), "INBOX", &st(7, 10), now).unwrap();
        set_folder_state(s.conn(), "INBOX", &st(7, 4), now).unwrap();
        assert_eq!(folder_state(s.conn(), "INBOX").unwrap(), Some(st(7, 10)));
        set_folder_state(s.conn(), "INBOX", &st(8, 2), now).unwrap();
        assert_eq!(folder_state(s.conn(), "INBOX").unwrap(), Some(st(8, 2)));
    }
}

// ---------------------------------------------------------------------------
// The shared handle

/// The daemon's one writer, shared by its loops. Every call runs on the
/// blocking pool so SQLite's fsyncs never stall the async reactor.
#[derive(Clone, Debug)]
pub struct Db {
    inner: std::sync::Arc<std::sync::Mutex<Store>>,
}

impl Db {
    pub fn new(store: Store) -> Db {
        Db {
            inner: std::sync::Arc::new(std::sync::Mutex::new(store)),
        }
    }

    /// Runs `f` with exclusive access to the store on the blocking pool.
    pub async fn call<R, F>(&self, f: F) -> R
    where
        F: FnOnce(&mut Store) -> R + Send + 'static,
        R: Send + 'static,
    {
        let inner = self.inner.clone();
        match tokio::task::spawn_blocking(move || {
            let mut guard = inner.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}
