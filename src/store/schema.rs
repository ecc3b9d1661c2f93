//! The migrations, keyed on `PRAGMA user_version`: applied in one
//! transaction each, never edited once shipped.

/// Schema migrations, in order. Index + 1 is the `user_version` after it.
/// Never edit a shipped entry: append a new one.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // 8: OpenPGP (issue 10). An encrypted report makes an encrypted case:
    // what it says reaches nobody in cleartext. Its real subject, from the
    // encrypted part's protected headers, is kept apart from `subject`
    // (the outer one, "..." for most clients), which cleartext mail may
    // show. `reporter_key` is the fingerprint of the reporter's key.
    r#"
    ALTER TABLE cases ADD COLUMN encrypted INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE cases ADD COLUMN protected_subject TEXT;
    ALTER TABLE cases ADD COLUMN reporter_key TEXT;
    "#,
    // 9: the outbox claims a mail (a committed write) before it sends it
    // (issue 12): a state file that cannot record stops the sending. A
    // message whose raw bytes retention or an erasure dropped is `purged`.
    r#"
    ALTER TABLE outbox ADD COLUMN claimed_at TEXT;
    ALTER TABLE messages ADD COLUMN purged INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE storage_probe (
        id  INTEGER PRIMARY KEY CHECK (id = 1),
        at  TEXT NOT NULL
    ) STRICT;
    "#,
];
