//! Unit tests of the state file's queries.

use super::messages::BLOB_STREAM_BYTES;
use super::*;
use chrono::Utc;
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
        enqueue(
            c,
            msg(i as i64),
            None,
            crate::model::MessageKind::Ack,
            "s@x",
            &to,
            at,
        )
        .unwrap();
    }
    enqueue(
        c,
        msg(9),
        None,
        crate::model::MessageKind::Notification,
        "s@x",
        &to,
        t0,
    )
    .unwrap();
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
            direction: crate::model::Direction::In,
            dedup_key: format!("k{n}"),
            kind: crate::model::MessageKind::Report,
            size: len as u64,
            at: crate::clock::parse_ts("2026-03-01T12:00:00Z").unwrap(),
            raw: &raw,
            folder: None,
            uidvalidity: None,
            uid: None,
            message_id: None,
            case_id: None,
            robot_rule: None,
            from_addr: None,
            to_addrs: None,
            subject: None,
            in_reply_to: None,
            refs: None,
            parsed_ok: true,
            encrypted: false,
            truncated: false,
            content_key: None,
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
