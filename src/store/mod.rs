//! The SQLite state file: the handle, its errors and query helpers; the
//! schema is in `schema`, the queries in one file per table group.
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

use rusqlite::{Connection, Transaction};
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
    #[error("state file {path} has schema version {found}, newer than this secintake knows ({known}): a newer secintake migrated it; upgrade secintake{}", .backup.as_ref().map(|b| format!(", or restore {} (the copy made before that migration) to go back", b.display())).unwrap_or_default())]
    TooNew {
        path: PathBuf,
        found: i64,
        known: usize,
        /// The newest copy made before a migration, if one is there.
        backup: Option<PathBuf>,
    },
    #[error("state file {path} has schema version {found}, older than this secintake ({known}): only `secintake run` and `secintake migrate` change it (a running older daemon would find its file changed under it); stop the daemon and run `secintake migrate`, or start the new daemon")]
    TooOld {
        path: PathBuf,
        found: i64,
        known: usize,
    },
    #[error("state file {path} is damaged: {problem}")]
    Damaged { path: PathBuf, problem: String },
    #[error("database error while {context}: {source}")]
    Query {
        context: &'static str,
        source: rusqlite::Error,
    },
}

impl StoreError {
    /// SQLITE_FULL: the disk (or its quota) is full. Unlike a read-only
    /// or damaged file this passes by itself once space is freed.
    pub fn is_disk_full(&self) -> bool {
        let source = match self {
            StoreError::Open { source, .. }
            | StoreError::Migrate { source, .. }
            | StoreError::Query { source, .. } => source,
            _ => return false,
        };
        matches!(source, rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::DiskFull)
    }
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

mod cases;
mod deadlines;
mod events;
mod folders;
mod health;
mod messages;
mod metrics;
mod outbox;
mod retention;
mod schema;
#[cfg(test)]
mod tests;

pub use cases::*;
pub use deadlines::*;
pub use events::*;
pub use folders::*;
pub use health::*;
pub use messages::*;
pub use metrics::{counts as metric_counts, Counts as MetricCounts};
pub use outbox::*;
pub use retention::{erase_case, purge_closed, purge_delivered};
use schema::MIGRATIONS;

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

/// Whether opening may change the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    /// Bring it up to date (`run`, `migrate`, tests), copying an existing
    /// file aside first.
    Migrate,
    /// Refuse an older schema ([`StoreError::TooOld`]): the CLI beside a
    /// running daemon must not migrate the file under it.
    AsIs,
    /// Any schema this secintake can read (`backup` copies pages).
    Any,
}

impl Store {
    /// Opens (creating 0600 if needed) and migrates the state file; before
    /// migrating an existing one, copies it to
    /// `<path>.before-v<N>.<unix time>` (0600) and logs the copy's path.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_as(path, Schema::Migrate)
    }

    /// Opens an existing state file without changing its schema (the
    /// CLI): an older one is [`StoreError::TooOld`].
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        Self::open_as(path, Schema::AsIs)
    }

    /// Opens an existing state file of any schema no newer than this
    /// secintake's, changing nothing (`secintake backup`).
    pub fn open_any(path: &Path) -> Result<Store, StoreError> {
        Self::open_as(path, Schema::Any)
    }

    /// The file's schema version.
    pub fn version(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .ctx("reading the schema version")
    }

    fn open_as(path: &Path, schema: Schema) -> Result<Store, StoreError> {
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
            match Self::open_once(path, schema) {
                Err(StoreError::Open { source, .. } | StoreError::Migrate { source, .. })
                    if is_busy(&source) && tries < 100 =>
                {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                // Schema version 0: the daemon created the file a moment
                // ago and is about to migrate it; the CLI waits for that
                // instead of calling the file older than itself.
                Err(StoreError::TooOld { found: 0, .. }) if tries < 100 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    /// Opens a copy (`secintake backup --verify`) read-only and checks it:
    /// SQLite's full integrity check; returns its cases and schema version.
    pub fn verify_copy(path: &Path) -> Result<(i64, i64), StoreError> {
        let err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(err)?;
        let check: String = conn
            .query_row("PRAGMA integrity_check(1)", [], |r| r.get(0))
            .map_err(err)?;
        if check != "ok" {
            return Err(StoreError::Damaged {
                path: path.to_owned(),
                problem: check,
            });
        }
        let cases = conn
            .query_row("SELECT count(*) FROM cases", [], |r| r.get(0))
            .map_err(err)?;
        let version = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err)?;
        Ok((cases, version))
    }

    /// Whether the state file has recorded nothing yet (no folder read, no
    /// message stored).
    pub fn is_fresh(&self) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT NOT EXISTS (SELECT 1 FROM folders) AND NOT EXISTS (SELECT 1 FROM messages)",
                [],
                |r| r.get(0),
            )
            .ctx("reading whether the state file is new")
    }

    /// SQLite's `PRAGMA quick_check`: None when the file is sound, else
    /// the first problem it names. Reads the whole file (about 1 s per
    /// 500 MB).
    pub fn quick_check(&self) -> Result<Option<String>, StoreError> {
        let first: String = self
            .conn
            .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
            .ctx("checking the state file")?;
        Ok((first != "ok").then_some(first))
    }

    fn open_once(path: &Path, schema: Schema) -> Result<Store, StoreError> {
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
        store.migrate(schema)?;
        Ok(store)
    }

    /// Brings the schema up to date. Runs under one IMMEDIATE transaction
    /// and reads `user_version` inside it, so two processes opening a new
    /// file at once (the daemon starting, `secintake status` probing) never
    /// both migrate.
    fn migrate(&mut self, schema: Schema) -> Result<(), StoreError> {
        let (tx, version) = versioned(&mut self.conn, &self.path)?;
        if version as usize > MIGRATIONS.len() {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: version,
                known: MIGRATIONS.len(),
                backup: newest_backup(&self.path),
            });
        }
        if version as usize == MIGRATIONS.len() {
            return Ok(());
        }
        if schema == Schema::Any {
            return Ok(());
        }
        if schema == Schema::AsIs {
            return Err(StoreError::TooOld {
                path: self.path.clone(),
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        if version > 0 {
            // Copied aside first: a migration cannot be undone, and the
            // binary before it cannot read its result.
            drop(tx);
            let copy = self.backup_before_migration(version)?;
            tracing::warn!(copy = %copy.display(), from = version, to = MIGRATIONS.len(),
                "migrating the state file's schema; a copy of it was made first");
            return self.migrate_now();
        }
        drop(tx);
        self.migrate_now()
    }

    /// `<path>.before-v<N>.<unix time>`: a consistent copy (0600) before
    /// migration N+1.
    fn backup_before_migration(&self, version: i64) -> Result<PathBuf, StoreError> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut n = 0;
        let copy = loop {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".before-v{}.{stamp}", version + 1));
            if n > 0 {
                name.push(format!("-{n}"));
            }
            let copy = PathBuf::from(name);
            if !copy.exists() {
                break copy;
            }
            n += 1;
        };
        self.backup_to(&copy)?;
        Ok(copy)
    }

    /// Applies the missing migrations under one IMMEDIATE transaction.
    fn migrate_now(&mut self) -> Result<(), StoreError> {
        let (tx, version) = versioned(&mut self.conn, &self.path)?;
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
        tx.commit().map_err(|source| StoreError::Open {
            path: self.path.clone(),
            source,
        })
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

    /// After work on at least `bytes` of mail (see `memory::trim_after`),
    /// empties SQLite's page cache (up to `cache_size`, 8 MiB): a large
    /// report streamed in and read back for its notification leaves the
    /// cache full of its blob's pages, resident until the next large
    /// message. The cache refills from the OS page cache on demand.
    pub fn release_memory(&self, bytes: usize) {
        if bytes >= crate::memory::TRIM_AFTER_BYTES {
            // Best effort: failing to shrink a cache changes nothing else.
            let _ = self.conn.execute_batch("PRAGMA shrink_memory");
        }
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
impl Store {
    /// A consistent copy of the state file at `dest`, taken with SQLite's
    /// online backup while the daemon runs (copying the `.db` file alone
    /// misses what is still in its WAL: 36 of 252 cases were lost that
    /// way). `dest` is created 0600 and must not exist.
    pub fn backup_to(&self, dest: &Path) -> Result<(), StoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dest)
            .map_err(|source| StoreError::Create {
                path: dest.to_owned(),
                source,
            })?;
        let mut copy = Connection::open(dest).map_err(|source| StoreError::Open {
            path: dest.to_owned(),
            source,
        })?;
        let backup = rusqlite::backup::Backup::new(&self.conn, &mut copy).map_err(|source| {
            StoreError::Open {
                path: dest.to_owned(),
                source,
            }
        })?;
        // 256 pages a step, yielding 10 ms between steps, so the daemon's
        // writes are not held up for the whole copy.
        backup
            .run_to_completion(256, std::time::Duration::from_millis(10), None)
            .map_err(|source| StoreError::Open {
                path: dest.to_owned(),
                source,
            })
    }
}

/// The newest `<path>.before-v*` copy, if any.
fn newest_backup(path: &Path) -> Option<PathBuf> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let prefix = format!("{}.before-v", path.file_name()?.to_string_lossy());
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

/// An IMMEDIATE transaction on `conn` (the state file at `path`) and the
/// schema version read inside it.
fn versioned<'c>(
    conn: &'c mut Connection,
    path: &Path,
) -> Result<(Transaction<'c>, i64), StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(open_err)?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(open_err)?;
    Ok((tx, version))
}

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
