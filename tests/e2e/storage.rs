//! Storage faults (issue 12): the state file on a small tmpfs that fills
//! up while reports stream in, with the daemon killed and restarted as
//! the shipped unit's Restart=on-failure would. Nothing may be sent that
//! could not be recorded (so nothing twice), nothing lost, `status` says
//! so while it lasts, and everything goes once space is freed.

use crate::common;

use common::daemon::{cli, eventually};
use common::world::{World, T};
use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs of `size` mounted on a fresh directory; unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .expect("run mount")
            .success();
        assert!(ok, "mounting a tmpfs (the tests run as root)");
        Tmpfs {
            path: dir.path().to_path_buf(),
            _dir: dir,
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Fills the file system under `dir` with one file; returns it.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 64 << 10];
    while f.write_all(&block).is_ok() {}
    let _ = f.flush();
    path
}

/// The distinct acknowledgement Message-IDs `reporter` got, and how many
/// copies in all.
fn acks(w: &World, reporter: &str) -> (HashSet<String>, usize) {
    let ids = w.message_ids(reporter);
    (ids.iter().cloned().collect(), ids.len())
}

/// Waits until every one of `reporters` has an acknowledgement, asserts
/// that took under 15 s from `fixed` (the bound), then gives
/// anything still in flight 2 s to land, for the caller's count.
fn wait_drained(w: &World, reporters: &[String], fixed: Instant) {
    w.wait_acked_cases(reporters.len());
    for r in reporters {
        eventually(
            T,
            &format!("{r}'s acknowledgement"),
            Some(&w.daemon),
            || (acks(w, r).1 >= 1).then_some(()),
        );
    }
    let drained = fixed.elapsed();
    assert!(drained < Duration::from_secs(15), "drained in {drained:?}");
    std::thread::sleep(Duration::from_secs(2));
}

fn status_code(w: &World) -> (i32, String) {
    let (code, out, _) = cli(&w.config, &["status", "--json"]);
    (code, out)
}

#[test]
fn a_full_disk_pauses_the_daemon_without_repeats_and_everything_goes_after() {
    let fs = Tmpfs::mount("6m");
    let sink = common::AlertSink::new();
    let state = fs.path.join("state.db");
    let mut w = World::start_ready(|c| {
        c.storage_path = state.clone();
        c.extra = sink.config();
    });
    let before: Vec<String> = (0..5).map(|i| format!("before{i}@example.net")).collect();
    for r in &before {
        w.report(r, "Before the disk fills");
    }
    w.wait_acked_cases(before.len());

    let filler = fill(&fs.path);
    let during: Vec<String> = (0..20).map(|i| format!("during{i}@example.net")).collect();
    for r in &during {
        w.report(r, "While the disk is full");
    }
    let alert = eventually(T, "the storage alert", Some(&w.daemon), || {
        sink.text().filter(|t| t.contains("state file"))
    });
    assert!(alert.contains("stopped taking writes"), "{alert}");
    let (code, st) = status_code(&w);
    assert_eq!(code, 3, "{st}");
    // Nothing was recorded, so nothing was acknowledged.
    for r in &during {
        assert_eq!(acks(&w, r).1, 0, "{r} acknowledged on a full disk");
    }
    assert!(
        w.log().contains("the state file takes no writes"),
        "{}",
        w.log()
    );

    // A restart loop during the fault, as Restart=on-failure would run it.
    for _ in 0..3 {
        w.daemon.kill9();
        w.restart();
        std::thread::sleep(Duration::from_secs(2));
        for r in &during {
            assert_eq!(acks(&w, r).1, 0, "{r} acknowledged on a full disk");
        }
    }
    assert!(w.daemon.alive(), "the daemon exited:\n{}", w.log());

    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    let all: Vec<String> = before.iter().chain(&during).cloned().collect();
    wait_drained(&w, &all, freed);
    for r in &all {
        let (ids, copies) = acks(&w, r);
        assert_eq!(ids.len(), 1, "{r} got {ids:?}");
        // A kill between the server's accept and the record may re-send
        // the very same mail; the claim keeps the full disk from adding any.
        assert!(copies <= 2, "{r} got {copies} copies");
    }
    let (code, st) = status_code(&w);
    assert_eq!(code, 0, "{st}");
    let recovered = sink.text().unwrap_or_default();
    assert!(recovered.contains("recovery notice"), "{recovered}");
}

#[test]
fn status_names_a_state_file_that_takes_no_writes() {
    let fs = Tmpfs::mount("6m");
    let state = fs.path.join("state.db");
    let w = World::start_ready(|c| c.storage_path = state.clone());
    w.report("r@example.net", "One");
    w.wait_acked_cases(1);
    let filler = fill(&fs.path);
    let (code, out) = status_code(&w);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("KiB free"), "{out}");
    std::fs::remove_file(filler).unwrap();
    let (code, out) = status_code(&w);
    assert_eq!(code, 0, "{out}");
}

/// A daemon whose state file is on a tmpfs of `size`, with 12 reports
/// (from `<prefix>N@example.net`) recorded and their acknowledgements
/// waiting: the relay is down (started again by the caller).
fn acks_waiting_on_a_tmpfs(size: &str, prefix: &str) -> (Tmpfs, World, Vec<String>) {
    let fs = Tmpfs::mount(size);
    let state = fs.path.join("state.db");
    let w = World::start_ready(|c| c.storage_path = state.clone());
    w.stack.stop_smtp();
    let reporters: Vec<String> = (0..12)
        .map(|i| format!("{prefix}{i}@example.net"))
        .collect();
    for r in &reporters {
        w.stack.save("security@example.org", "INBOX", &report(r));
    }
    w.wait_cases(reporters.len());
    (fs, w, reporters)
}

/// Acknowledgements already queued when the disk fills (the SMTP server
/// was down meanwhile): the outbox sends none it could not record first.
#[test]
fn queued_mail_is_not_sent_twice_when_the_disk_fills_under_a_restart_loop() {
    let (fs, mut w, reporters) = acks_waiting_on_a_tmpfs("6m", "queued");
    let filler = fill(&fs.path);
    w.stack.start_smtp();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(2));
        w.daemon.kill9();
        w.restart();
    }
    std::fs::remove_file(&filler).unwrap();
    w.wait_acked_cases(reporters.len());
    std::thread::sleep(Duration::from_secs(2));
    for r in &reporters {
        let (ids, copies) = acks(&w, r);
        assert_eq!(ids.len(), 1, "{r} got {ids:?}");
        assert!(copies <= 2, "{r} got {copies} copies");
    }
    let total: usize = reporters.iter().map(|r| acks(&w, r).1).sum();
    // At most one group of 8 re-sent per kill (the record after a send
    // that a SIGKILL cut off), never more for the full disk.
    assert!(total - reporters.len() <= 3 * 8, "{total} copies");
}

fn remount(fs: &Tmpfs, how: &str) {
    let ok = Command::new("mount")
        .args(["-o", &format!("remount,{how}")])
        .arg(&fs.path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "remount {how}");
}

/// Acknowledgements wait (the relay is down), the daemon dies, and the
/// state file's file system is read-only when the unit starts it again
/// (the issue: the outbox sent 8, could not record them, exited, and
/// under Restart=on-failure sent the same 8 again every 5 s). Each start
/// refuses before READY and sends nothing, `status` says why (exit 3);
/// once the file system takes writes, everything goes, each mail once.
/// (Linux refuses to remount a file system read-only while a file on it
/// is open for writing, so the running daemon's side of the same fault
/// is the full disk's: `a_full_disk_pauses_the_daemon…`.)
#[test]
fn a_read_only_state_file_under_a_restart_loop_sends_nothing_twice() {
    let (fs, mut w, reporters) = acks_waiting_on_a_tmpfs("8m", "ro");
    w.daemon.kill9();
    remount(&fs, "ro");
    w.stack.start_smtp();
    // The unit's restart loop: each start refuses before READY.
    for _ in 0..3 {
        w.restart();
        let exit = w.daemon.wait_exit(T);
        let log = w.log();
        assert!(
            exit.is_some_and(|s| !s.success()),
            "started on a read-only state file ({exit:?}):\n{log}"
        );
        assert!(!log.contains("secintake running"), "READY first:\n{log}");
        let (code, st) = status_code(&w);
        assert_eq!(code, 3, "{st}");
        std::thread::sleep(Duration::from_secs(1));
        for r in &reporters {
            assert_eq!(acks(&w, r).1, 0, "{r} acknowledged from a read-only file");
        }
    }
    remount(&fs, "rw");
    let writable = Instant::now();
    w.restart();
    wait_drained(&w, &reporters, writable);
    for r in &reporters {
        assert_eq!(acks(&w, r).1, 1, "{r}");
    }
    let (code, st) = status_code(&w);
    assert_eq!(code, 0, "{st}");
}

fn report(from: &str) -> Vec<u8> {
    common::mail(
        "report",
        from,
        &["security@example.org"],
        &[],
        "Queued while the relay is down",
        &[],
        "Steps to reproduce: ...",
    )
    .0
}

/// At start, before READY: a damaged state file, an empty one and one on
/// a read-only file system are refused, each with its reason.
#[test]
fn a_damaged_empty_or_read_only_state_file_is_refused_at_start() {
    use common::daemon::Daemon;
    let fs = Tmpfs::mount("8m");
    let state = fs.path.join("state.db");
    let mut w = World::start_ready(|c| c.storage_path = state.clone());
    for i in 0..20 {
        w.report(&format!("r{i}@example.net"), "Fills a few pages");
    }
    w.wait_acked_cases(20);
    w.daemon.terminate(T);
    let _ = std::fs::remove_file(fs.path.join("state.db.lock"));
    let good = std::fs::read(&state).unwrap();

    let refused = |w: &World, what: &str| {
        let mut d = Daemon::start(&w.config, w.dir.path());
        let status = d.wait_exit(T);
        let log = d.log_text();
        assert!(
            status.is_some_and(|s| !s.success()),
            "{what}: not refused ({status:?}):\n{log}"
        );
        assert!(
            !log.contains("secintake running"),
            "{what}: READY first:\n{log}"
        );
        log
    };
    // Damaged: the second half of the file overwritten.
    let mut bad = good.clone();
    let half = bad.len() / 2;
    for b in &mut bad[half..] {
        *b = 0x5a;
    }
    std::fs::write(&state, &bad).unwrap();
    let log = refused(&w, "damaged");
    assert!(
        log.contains("damaged") || log.contains("malformed") || log.contains("not a database"),
        "{log}"
    );
    // Empty.
    std::fs::write(&state, b"").unwrap();
    let log = refused(&w, "empty");
    assert!(log.contains("is empty"), "{log}");
    // Intact again, on a read-only file system.
    std::fs::write(&state, &good).unwrap();
    let ok = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&fs.path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "remount read-only");
    let log = refused(&w, "read-only");
    let lower = log.to_ascii_lowercase();
    assert!(
        lower.contains("takes no writes") || lower.contains("read-only"),
        "{log}"
    );
    assert_eq!(
        log.matches("Read-only file system").count(),
        1,
        "said twice: {log}"
    );
    let _ = Command::new("mount")
        .args(["-o", "remount,rw"])
        .arg(&fs.path)
        .status();
    w.restart();
    w.daemon.wait_running(T);
}

/// Schema upgrades (issue 12): only `run` and `migrate` change the
/// schema, after a copy; the CLI refuses an older file instead of
/// migrating it under an older daemon; a newer file is refused, naming
/// the copy to go back to.
#[test]
fn only_run_and_migrate_change_the_schema_and_a_downgrade_is_refused() {
    let mut w = World::start_ready(|_| {});
    w.report("r@example.net", "Before the upgrade");
    w.wait_acked_cases(1);
    w.daemon.terminate(T);
    let db = w.db();
    let sql = |q: &str| {
        let out = Command::new("sqlite3").arg(&db).arg(q).output().unwrap();
        assert!(out.status.success(), "{q}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let current: i64 = sql("PRAGMA user_version").parse().unwrap();
    assert_eq!(
        current, 9,
        "this test undoes migration 9; update it with the next one"
    );
    // The file as the release before wrote it.
    let make_older = || {
        sql(
            "ALTER TABLE outbox DROP COLUMN claimed_at; ALTER TABLE messages DROP COLUMN purged; \
             DROP TABLE storage_probe; PRAGMA user_version = 8;",
        );
    };
    make_older();

    // The newer CLI beside the older file: refused, not migrated.
    let (code, _, err) = cli(&w.config, &["status"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("schema version 8, older than this secintake (9)")
            && err.contains("secintake migrate"),
        "{err}"
    );
    assert_eq!(sql("PRAGMA user_version"), "8");

    // `migrate` refuses while a daemon holds the file.
    w.restart();
    w.daemon.wait_running(T);
    let (code, _, err) = cli(&w.config, &["migrate"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("is running") && err.contains("stop it"),
        "{err}"
    );
    w.daemon.terminate(T);

    // The daemon above migrated at its start, after a copy; so does
    // `migrate`, with the daemon stopped.
    make_older();
    let copies = |w: &World| -> Vec<PathBuf> {
        std::fs::read_dir(w.dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().contains("state.db.before-v9."))
            .collect()
    };
    let before = copies(&w).len();
    assert!(before >= 1, "the daemon migrated without a copy");
    let (code, out, err) = cli(&w.config, &["migrate"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("from schema version 8 to 9"), "{out}");
    let after = copies(&w);
    assert_eq!(after.len(), before + 1);
    for c in &after {
        let mode = std::fs::metadata(c).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", c.display());
    }
    let (code, out, _) = cli(&w.config, &["status"]);
    assert_eq!(code, 0, "{out}");

    // A file from a newer secintake: refused, naming the copy.
    sql("PRAGMA user_version = 99");
    let (code, _, err) = cli(&w.config, &["run"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("newer than this secintake") && err.contains("state.db.before-v9."),
        "{err}"
    );
}

/// Restore without repeats (issue 12): a state file restored from a
/// backup 100 reports old does not answer those 100 again. The server
/// remembers what secintake handled (the $SecintakeDone keyword, set with
/// `imap.after`), so the restored daemon records them as recovered: all
/// present, none acknowledged twice.
#[test]
fn restoring_an_older_backup_answers_nothing_twice() {
    let mut w = World::start_ready(|_| {});
    let early: Vec<String> = (0..20).map(|i| format!("early{i}@example.net")).collect();
    for r in &early {
        w.report(r, "Before the backup");
    }
    w.wait_acked_cases(early.len());
    let backup = w.dir.path().join("backup.db");
    let (code, _, err) = cli(&w.config, &["backup", &backup.to_string_lossy()]);
    assert_eq!(code, 0, "{err}");
    let late: Vec<String> = (0..100)
        .map(|i| format!("late{i:03}@example.net"))
        .collect();
    for r in &late {
        w.report(r, "After the backup");
    }
    w.wait_acked_cases(early.len() + late.len());
    w.wait_outbox_empty();
    let flags = w.stack.doveadm(
        &[
            "fetch",
            "-u",
            "security@example.org",
            "flags",
            "mailbox",
            "INBOX",
        ],
        None,
    );
    assert!(flags.contains("$SecintakeDone"), "{flags}");

    // The restore, as README says: the daemon stopped, the copy in place.
    w.daemon.terminate(T);
    let db = w.db();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::copy(&backup, &db).unwrap();
    assert_eq!(w.cases().len(), early.len());
    w.restart();
    w.daemon.wait_running(T);
    let all = early.len() + late.len();
    common::daemon::eventually(T, "every report present again", Some(&w.daemon), || {
        (w.cases().len() == all).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    w.wait_outbox_empty();
    for r in early.iter().chain(&late) {
        let (ids, copies) = acks(&w, r);
        assert_eq!((ids.len(), copies), (1, 1), "{r}: {ids:?}");
    }
    let recovered = w
        .cases()
        .iter()
        .filter(|c| {
            w.show(c["id"].as_str().unwrap())["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["what"] == "message recovered")
        })
        .count();
    assert_eq!(recovered, late.len());
}

/// One instance per mailbox (issue 12): a second daemon with its own
/// state file on the same mailbox, started while 200 reports arrive,
/// refuses to act, naming the holder; every reporter gets exactly one
/// acknowledgement. When the first stops cleanly it gives the lease up,
/// and the second, still waiting, takes over and answers new mail only.
#[test]
fn a_second_instance_on_the_same_mailbox_refuses_and_takes_over_after_the_first_stops() {
    use common::daemon::Daemon;
    let w = World::start_ready(|_| {});
    w.report("first@example.net", "Before the second instance");
    w.wait_acked_cases(1);

    // The second instance: the same mailbox, its own state file; a long
    // lease, so that only the first's clean stop lets it take over.
    let env = [("SECINTAKE_TEST_LEASE_EXPIRY_MS", "60000")];
    let other = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&w.config).unwrap();
    let state = w.db().display().to_string();
    let moved = text.replace(&state, &other.path().join("other.db").display().to_string());
    assert_ne!(moved, text);
    let other_config = other.path().join("other.toml");
    std::fs::write(&other_config, moved).unwrap();
    let reporters: Vec<String> = (0..200).map(|i| format!("r{i:03}@example.net")).collect();
    // --adopt: its state file is new on a mailbox secintake handled.
    let mut second =
        Daemon::start_with_args(&other_config, other.path(), &["run", "--adopt"], &env);
    for (i, r) in reporters.iter().enumerate() {
        w.report(r, "While two instances run");
        if i == 20 {
            common::daemon::eventually(T, "the second instance's refusal", Some(&second), || {
                second
                    .log_text()
                    .contains("another secintake instance")
                    .then_some(())
            });
        }
    }
    w.wait_acked_cases(1 + reporters.len());
    w.wait_outbox_empty();
    std::thread::sleep(Duration::from_secs(1));
    for r in &reporters {
        let (ids, copies) = acks(&w, r);
        assert_eq!((ids.len(), copies), (1, 1), "{r}");
    }
    let log = second.log_text();
    assert!(
        log.contains("holds it") && !log.contains("new report"),
        "{log}"
    );
    // `status` shows it on both: the second is a standby (exit 3, naming
    // the holder), the first holds the mailbox.
    let (code, out, _) = cli(&other_config, &["status"]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("mailbox lease  STANDBY since") && out.contains("holds the mailbox: "),
        "{out}"
    );
    let (code, out, _) = cli(&w.config, &["status"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("mailbox lease  held (last heartbeat"), "{out}");

    // The first stops cleanly and gives the lease up; the second takes
    // over (its empty state: marked mail is recovered, not answered).
    let mut w = w;
    w.daemon.terminate(T);
    w.report("after@example.net", "After the takeover");
    common::daemon::eventually(T, "the new report answered", Some(&second), || {
        (acks(&w, "after@example.net").1 == 1).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(acks(&w, "first@example.net").1, 1);
    assert!(second
        .log_text()
        .contains("this instance holds the mailbox"));
    let (code, out, _) = cli(&other_config, &["status"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("mailbox lease  held"), "{out}");
    second.terminate(T);
}

/// The lease's heartbeats go over one kept IMAP session: a login per
/// beat (every 30 s) was 2,880 logins a day in the provider's log. The
/// harness beats every 0.67 s (SECINTAKE_TEST_LEASE_EXPIRY_MS=2000), so
/// 8 s are 12 beats: a login each would show.
#[test]
fn the_lease_beats_over_one_kept_session() {
    let w = World::start_ready(|_| {});
    let logins = || {
        let log = std::fs::read_to_string(w.stack.dir.join("log/dovecot.log")).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("Login: user=<security@example.org>"))
            .count()
    };
    eventually(T, "the lease held", Some(&w.daemon), || {
        let (_, out, _) = cli(&w.config, &["status"]);
        out.contains("mailbox lease  held").then_some(())
    });
    let before = logins();
    assert!(
        before >= 1,
        "no login lines in Dovecot's log: the count would prove nothing"
    );
    std::thread::sleep(Duration::from_secs(8));
    let during = logins() - before;
    assert!(during <= 1, "{during} logins in 8 s of heartbeats");
    let (_, out, _) = cli(&w.config, &["status"]);
    assert!(out.contains("mailbox lease  held"), "{out}");
}

/// A new state file on a mailbox secintake handled before is a lost
/// state, not a first start (issue 12): the daemon refuses, saying what
/// to do; `run --adopt` records that mail without answering it.
#[test]
fn a_new_state_file_on_a_handled_mailbox_needs_adopt() {
    use common::daemon::Daemon;
    let mut w = World::start_ready(|_| {});
    for i in 0..5 {
        w.report(&format!("old{i}@example.net"), "Handled by the lost state");
    }
    w.wait_acked_cases(5);
    w.wait_outbox_empty();
    w.daemon.terminate(T);
    // The state is lost: gone, with its lock file (a new host).
    let db = w.db();
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let mut d = Daemon::start(&w.config, w.dir.path());
    let status = d.wait_exit(T);
    assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    let log = d.log_text();
    assert!(
        log.contains("5 message(s)") && log.contains("secintake run --adopt"),
        "{log}"
    );
    let mut d = Daemon::start_with_args(&w.config, w.dir.path(), &["run", "--adopt"], &[]);
    d.wait_running(T);
    common::daemon::eventually(T, "the handled mail recorded", Some(&d), || {
        (w.cases().len() == 5).then_some(())
    });
    w.report("new@example.net", "After the adoption");
    common::daemon::eventually(T, "the new report answered", Some(&d), || {
        (acks(&w, "new@example.net").1 == 1).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    for i in 0..5 {
        assert_eq!(
            acks(&w, &format!("old{i}@example.net")).1,
            1,
            "old{i} answered twice"
        );
    }
    d.terminate(T);
}
