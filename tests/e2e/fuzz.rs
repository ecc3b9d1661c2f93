//! A fuzz harness on stable Rust, as an ordinary integration test.
//!
//! Every input goes through the pure part of the intake, the way the daemon
//! runs it on each message: `message::parse` → `classify::robot_rule` /
//! `reply_address` → handler authentication (`auth::sender`, and
//! `auth::own_verdicts` / `authenticated` / `dmarc_pass` with several
//! trusted authserv-ids) → `commands::parse` of the text body →
//! `workflow::strip_quote` of the rest, plus the small pure helpers around
//! them (`model::subject_tags`, `cases::embedded_message_ids`,
//! `model::mailbox_key`, `compose::reply_subject` / `printable`,
//! `workflow::to_comment_address`) and the acknowledgement
//! (`compose::build`, then parsed again: nothing a sender writes may change
//! its headers). A panic anywhere (also one `message::parse` catches
//! itself), a broken invariant (see `check_*`), an input slower than the
//! per-input limit, or a hang fails the test; the input is written to
//! `target/fuzz-crashes/` with a `.txt` report (seed, iteration, origin,
//! panic message, top frames).
//!
//! Inputs, in order: every file of `tests/fixtures/fuzz-regressions/`, every
//! message of `tests/fixtures/corpus/` and a set of hand-made hostile
//! messages, each once unmutated; then mutants of them (a deterministic
//! xorshift mutator: `FUZZ_SEED` replays a run) until the time is up.
//! Mutants whose pipeline outcome differs from all earlier ones (a cheap
//! output "signature", there is no coverage feedback on stable) join the
//! pool and get mutated further. The same `FUZZ_SEED` gives the same
//! inputs in the same order as long as the seeds and `src/` are unchanged;
//! a failure at iteration N reproduces when the run gets that far.
//!
//! The fuzzing runs in its own thread with a fixed stack, watched by the
//! test thread: a stack overflow aborts the process, but the seed was
//! printed first (and is in the thread's name, which the abort message
//! shows, and in `target/fuzz-crashes/last-run.txt`).
//!
//! - `cargo test --test e2e fuzz::` runs `fuzz_short` (15 s in all).
//! - `FUZZ_SECONDS=600 cargo test --release --test e2e -- --ignored fuzz::fuzz_long --nocapture`
//!
//! Environment: `FUZZ_SEED` (decimal or 0x-hex; default: from the clock,
//! printed), `FUZZ_SECONDS` (fuzz_long, default 600), `FUZZ_SHORT_SECONDS`
//! (fuzz_short, default 15), `FUZZ_SAVE_EACH=1` (write every input to
//! `target/fuzz-crashes/current.eml` before running it, for crashes that
//! abort the process such as a stack overflow), `FUZZ_STACK_MIB` (stack of
//! the fuzzing thread, default 8; the daemon parses on tokio's blocking
//! pool, 2 MiB), `FUZZ_INPUT_LIMIT_MS` (default 2000), `FUZZ_REPLAY=<file
//! or dir>` (run just those inputs, unmutated), `FUZZ_ALLOW_CAUGHT=1`
//! (panics that `message::parse` catches itself are counted, not failed),
//! `FUZZ_FAIL_KNOWN=1` (fail on the known debug-only panics too),
//! `FUZZ_HANG_MS` (the watchdog: an input still running after this long
//! fails the test at once; default 5 × the per-input limit, at least 10 s),
//! `FUZZ_CRASH_DIR` (default `target/fuzz-crashes`).

use crate::common;
use crate::common::rng::Rng;
use crate::corpus::corpus_dir;
use std::backtrace::Backtrace;
use std::cell::{Cell, RefCell};
use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use secintake::cases;
use secintake::commands::{self, Command};
use secintake::config::{Config, HandlerAuth};
use secintake::context::Context;
use secintake::mail::auth::{self, Sender};
use secintake::mail::classify;
use secintake::mail::compose::{self, Draft};
use secintake::mail::message::{self, ParsedMessage};
use secintake::model;
use secintake::templates::Templates;
use secintake::workflow;
use sha2::{Digest, Sha256};

/// Mutants are cut to this size.
const MAX_MUTANT_LEN: usize = 1 << 20;
/// Bigger seeds are mutated through a window of at most this size.
const MAX_WINDOW: usize = 256 * 1024;
/// Most derived inputs kept for further mutation.
const MAX_POOL: usize = 2048;
/// The acknowledgement attaches the raw report; only small inputs get it
/// here, to keep the execution rate up.
const MAX_ATTACH: usize = 64 * 1024;

const OUR_ADDRESS: &str = "security@example.org";
const COMMENT_ADDRESS: &str = "security+comment@example.org";
const HANDLERS: &[&str] = &["alice@example.org", "bob@example.org"];
const AUTHSERV_ID: &str = "mx.example.org";
const CASE_ID: &str = "SEC-2026-0001";

// ------------------------------------------------------------ entry points

#[test]
fn fuzz_short() {
    let seconds = env_u64("FUZZ_SHORT_SECONDS").unwrap_or(15);
    run("fuzz_short", Duration::from_secs(seconds));
}

#[test]
#[ignore = "long run: FUZZ_SECONDS=600 cargo test --release --test e2e -- --ignored fuzz::fuzz_long --nocapture"]
fn fuzz_long() {
    let seconds = env_u64("FUZZ_SECONDS").unwrap_or(600);
    run("fuzz_long", Duration::from_secs(seconds));
}

// ----------------------------------------------------------------- options

#[derive(Clone, Debug)]
struct Options {
    mode: &'static str,
    seed: u64,
    /// Wall time from the start of the test after which no new mutant starts.
    budget: Duration,
    input_limit: Duration,
    hang_limit: Duration,
    stack: usize,
    save_each: bool,
    allow_caught: bool,
    fail_known: bool,
    replay: Option<PathBuf>,
    crash_dir: PathBuf,
}

impl Options {
    fn from_env(mode: &'static str, budget: Duration) -> Options {
        let seed = match std::env::var("FUZZ_SEED") {
            Ok(s) if !s.trim().is_empty() => {
                parse_u64(s.trim()).unwrap_or_else(|| panic!("FUZZ_SEED={s:?} is not a number"))
            }
            _ => {
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                // Decimal digits that fit in a JS number, easy to copy.
                (nanos ^ (u64::from(std::process::id()) << 40)) % 1_000_000_000_000_000
            }
        };
        let input_limit = Duration::from_millis(env_u64("FUZZ_INPUT_LIMIT_MS").unwrap_or(2000));
        let crash_dir = std::env::var_os("FUZZ_CRASH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| manifest_dir().join("target/fuzz-crashes"));
        Options {
            mode,
            seed,
            budget,
            input_limit,
            hang_limit: env_u64("FUZZ_HANG_MS")
                .map(Duration::from_millis)
                .unwrap_or((input_limit * 5).max(Duration::from_secs(10))),
            stack: env_u64("FUZZ_STACK_MIB").unwrap_or(8) as usize * 1024 * 1024,
            save_each: env_flag("FUZZ_SAVE_EACH"),
            allow_caught: env_flag("FUZZ_ALLOW_CAUGHT"),
            fail_known: env_flag("FUZZ_FAIL_KNOWN"),
            replay: std::env::var_os("FUZZ_REPLAY")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            crash_dir,
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(parse_u64(v.trim()).unwrap_or_else(|| panic!("{name}={v:?} is not a number")))
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Written straight to the process' stderr, past the test harness' output
/// capture: visible even when the process aborts (a stack overflow).
fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
    let _ = err.flush();
}

// ------------------------------------------------------------------ driver

/// What the fuzzing thread is running now, for the watchdog.
#[derive(Default)]
struct Current {
    running: Option<(u64, Instant, Arc<Vec<u8>>, String)>,
}

struct Stats {
    execs: u64,
    seed_execs: u64,
    elapsed: Duration,
    mutate_elapsed: Duration,
    signatures: usize,
    pool: usize,
    caught_panics: u64,
    known_debug_panics: u64,
    slowest: (Duration, String),
}

fn run(mode: &'static str, budget: Duration) {
    install_panic_hook();
    let start = Instant::now();
    let opts = Options::from_env(mode, budget);
    std::fs::create_dir_all(&opts.crash_dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", opts.crash_dir.display()));
    let banner = format!(
        "{mode}: FUZZ_SEED={} (budget {}s, stack {} MiB, per-input limit {} ms{}){}",
        opts.seed,
        opts.budget.as_secs(),
        opts.stack >> 20,
        opts.input_limit.as_millis(),
        if opts.save_each {
            ", saving each input to current.eml"
        } else {
            ""
        },
        if cfg!(debug_assertions) {
            ", debug build"
        } else {
            ", release build"
        }
    );
    say(&banner);
    let _ = std::fs::write(opts.crash_dir.join("last-run.txt"), format!("{banner}\n"));

    let current = Arc::new(Mutex::new(Current::default()));
    let worker = {
        let opts = opts.clone();
        let current = current.clone();
        std::thread::Builder::new()
            // The name is in the "has overflowed its stack" abort message.
            .name(format!("{mode} FUZZ_SEED={}", opts.seed))
            .stack_size(opts.stack)
            .spawn(move || fuzz_loop(&opts, start, &current))
            .expect("spawn the fuzzing thread")
    };

    // Watchdog: an input that never finishes is a failure too.
    while !worker.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
        let stuck = {
            let cur = current.lock().unwrap_or_else(|e| e.into_inner());
            cur.running.as_ref().and_then(|(iter, t, input, origin)| {
                (t.elapsed() > opts.hang_limit).then(|| (*iter, input.clone(), origin.clone()))
            })
        };
        if let Some((iter, input, origin)) = stuck {
            let path = save_input(&opts, "hang", iter, &input);
            let report = format!(
                "{mode}: HANG: input {iter} still running after {:?}\n  FUZZ_SEED={}\n  origin: {origin}\n  input: {} ({} bytes)",
                opts.hang_limit,
                opts.seed,
                path.display(),
                input.len()
            );
            let _ = std::fs::write(path.with_extension("txt"), &report);
            say(&report);
            panic!("{report}");
        }
    }
    match worker.join() {
        Ok(Ok(stats)) => {
            let rate = stats.execs as f64 / stats.elapsed.as_secs_f64().max(1e-9);
            let summary = format!(
                "{mode}: FUZZ_SEED={} done: {} execs in {:.1}s = {:.0} execs/s \
                 ({} unmutated inputs; {} mutants in {:.1}s = {:.0}/s); \
                 {} distinct outcomes, pool {}, caught panics {}, known debug-only panics {}, \
                 slowest {:.0} ms ({})",
                opts.seed,
                stats.execs,
                stats.elapsed.as_secs_f64(),
                rate,
                stats.seed_execs,
                stats.execs - stats.seed_execs,
                stats.mutate_elapsed.as_secs_f64(),
                (stats.execs - stats.seed_execs) as f64
                    / stats.mutate_elapsed.as_secs_f64().max(1e-9),
                stats.signatures,
                stats.pool,
                stats.caught_panics,
                stats.known_debug_panics,
                stats.slowest.0.as_secs_f64() * 1000.0,
                stats.slowest.1,
            );
            say(&summary);
        }
        Ok(Err(report)) => {
            say(&report);
            panic!("{report}");
        }
        Err(_) => panic!(
            "{mode}: FUZZ_SEED={}: the fuzzing thread panicked outside the per-input guard",
            opts.seed
        ),
    }
}

/// One input to run, and where it came from (for the report).
struct Job {
    data: Arc<Vec<u8>>,
    origin: String,
}

fn fuzz_loop(opts: &Options, start: Instant, current: &Mutex<Current>) -> Result<Stats, String> {
    let pipeline = Pipeline::new();
    let mut stats = Stats {
        execs: 0,
        seed_execs: 0,
        elapsed: Duration::ZERO,
        mutate_elapsed: Duration::ZERO,
        signatures: 0,
        pool: 0,
        caught_panics: 0,
        known_debug_panics: 0,
        slowest: (Duration::ZERO, String::new()),
    };
    let mut signatures: HashSet<u64> = HashSet::new();
    let mut ctx = ExecCtx {
        opts,
        pipeline: &pipeline,
        current,
        iter: 0,
    };

    // Phase 1: every seed, unmutated.
    let seeds: Vec<Seed> = match &opts.replay {
        Some(path) => read_dir_seeds(path, "replay"),
        None => {
            let mut all = read_dir_seeds(&regressions_dir(), "fuzz-regressions");
            all.extend(read_dir_seeds(&corpus_dir(), "corpus"));
            all.extend(hostile_seeds());
            all
        }
    };
    assert!(!seeds.is_empty(), "no seeds found");
    for seed in &seeds {
        let job = Job {
            data: seed.data.clone(),
            origin: format!("seed {}", seed.name),
        };
        let sig = ctx.exec(&job, &mut stats)?;
        signatures.insert(sig);
        stats.seed_execs += 1;
    }
    if opts.replay.is_some() {
        stats.elapsed = start.elapsed();
        stats.signatures = signatures.len();
        return Ok(stats);
    }

    // Phase 2: mutants until the budget is spent.
    let mutate_start = Instant::now();
    let mut rng = Rng::new(opts.seed);
    let mut pool: Vec<Seed> = Vec::new();
    let mut last_progress = Instant::now();
    let deadline = start + opts.budget;
    // Checking the clock every input is cheap next to parsing a message.
    while Instant::now() < deadline {
        let mut m = Mutator {
            rng: &mut rng,
            seeds: &seeds,
            ops: Vec::new(),
        };
        let (mut data, base) = m.pick_base(&pool);
        m.mutate(&mut data);
        let ops = m.ops.join(",");
        let job = Job {
            data: Arc::new(data),
            origin: format!("mutant of {base} via [{ops}]"),
        };
        let sig = ctx.exec(&job, &mut stats)?;
        if signatures.insert(sig) && job.data.len() <= MAX_MUTANT_LEN {
            let entry = Seed {
                // The lineage, cut: it would grow with every generation.
                name: format!("pool#{} ({})", ctx.iter, short_origin(&job.origin)),
                data: job.data.clone(),
            };
            if pool.len() < MAX_POOL {
                pool.push(entry);
            } else {
                let i = rng.below(pool.len());
                pool[i] = entry;
            }
        }
        if opts.mode == "fuzz_long" && last_progress.elapsed() > Duration::from_secs(10) {
            last_progress = Instant::now();
            let secs = mutate_start.elapsed().as_secs_f64();
            say(&format!(
                "{}: {:.0}s {} execs ({:.0}/s), {} outcomes, pool {}",
                opts.mode,
                start.elapsed().as_secs_f64(),
                stats.execs,
                (stats.execs - stats.seed_execs) as f64 / secs.max(1e-9),
                signatures.len(),
                pool.len()
            ));
        }
    }
    stats.mutate_elapsed = mutate_start.elapsed();
    stats.elapsed = start.elapsed();
    stats.signatures = signatures.len();
    stats.pool = pool.len();
    Ok(stats)
}

struct ExecCtx<'a> {
    opts: &'a Options,
    pipeline: &'a Pipeline,
    current: &'a Mutex<Current>,
    iter: u64,
}

impl ExecCtx<'_> {
    /// Runs one input through the pipeline; `Err` is the failure report.
    fn exec(&mut self, job: &Job, stats: &mut Stats) -> Result<u64, String> {
        self.iter += 1;
        let iter = self.iter;
        if self.opts.save_each {
            let _ = std::fs::write(self.opts.crash_dir.join("current.eml"), &*job.data);
        }
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .running = Some((iter, Instant::now(), job.data.clone(), job.origin.clone()));
        let (result, elapsed, mut panics) = self.run_guarded(&job.data);
        stats.execs += 1;
        if result.is_ok()
            && !self.opts.fail_known
            && !panics.is_empty()
            && panics.iter().all(PanicRecord::is_known)
        {
            stats.known_debug_panics += 1;
            panics.clear();
        }
        let mut elapsed = elapsed;
        if elapsed > self.opts.input_limit && result.is_ok() {
            // Once more, so a busy machine does not fail the test.
            let (_, again, _) = self.run_guarded(&job.data);
            elapsed = elapsed.min(again);
        }
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .running = None;
        if elapsed > stats.slowest.0 {
            stats.slowest = (elapsed, short_origin(&job.origin));
        }
        let failure = match (&result, panics.is_empty()) {
            (Err(()), _) => Some(("crash", "a panic escaped the pipeline")),
            (Ok(_), false) if !self.opts.allow_caught => Some((
                "caught-panic",
                "a panic inside the pipeline was caught by the crate itself \
                 (message::parse's catch_unwind: the message is stored unparsed)",
            )),
            (Ok(_), false) => {
                stats.caught_panics += 1;
                let path = save_input(self.opts, "caught-panic", iter, &job.data);
                let _ = std::fs::write(
                    path.with_extension("txt"),
                    panic_report(&panics, self.opts, iter, &job.origin, &path),
                );
                None
            }
            (Ok(_), true) if elapsed > self.opts.input_limit => Some(("slow", "")),
            _ => None,
        };
        let Some((kind, what)) = failure else {
            return Ok(result.unwrap_or_default());
        };
        let path = save_input(self.opts, kind, iter, &job.data);
        let report = if kind == "slow" {
            format!(
                "{}: SLOW INPUT: {:?} (twice) > limit {:?}\n  FUZZ_SEED={} iteration {iter}\n  origin: {}\n  input: {} ({} bytes)",
                self.opts.mode,
                elapsed,
                self.opts.input_limit,
                self.opts.seed,
                job.origin,
                path.display(),
                job.data.len()
            )
        } else {
            format!(
                "{}: {} ({what})\n{}",
                self.opts.mode,
                kind.to_uppercase(),
                panic_report(&panics, self.opts, iter, &job.origin, &path)
            )
        };
        let _ = std::fs::write(path.with_extension("txt"), &report);
        Err(report)
    }

    fn run_guarded(&self, data: &[u8]) -> (Result<u64, ()>, Duration, Vec<PanicRecord>) {
        PANICS.with(|p| p.borrow_mut().clear());
        IN_FUZZ.with(|f| f.set(true));
        let t = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| self.pipeline.run(data))).map_err(|_| ());
        let elapsed = t.elapsed();
        IN_FUZZ.with(|f| f.set(false));
        let panics = PANICS.with(|p| std::mem::take(&mut *p.borrow_mut()));
        (result, elapsed, panics)
    }
}

fn short_origin(origin: &str) -> String {
    let mut s: String = origin.chars().take(160).collect();
    if s.len() < origin.len() {
        s.push('…');
    }
    s
}

fn save_input(opts: &Options, kind: &str, iter: u64, data: &[u8]) -> PathBuf {
    let hash = hex::encode(&Sha256::digest(data)[..6]);
    let path = opts
        .crash_dir
        .join(format!("{kind}-seed{}-iter{iter}-{hash}.eml", opts.seed));
    if let Err(e) = std::fs::write(&path, data) {
        say(&format!("cannot write {}: {e}", path.display()));
    }
    path
}

// ------------------------------------------------------------ panic records

struct PanicRecord {
    message: String,
    location: String,
    thread: String,
    backtrace: Backtrace,
}

/// `debug_assert!`s in dependencies that fuzzing reaches: release builds
/// run on past them, and `message::parse` catches them in debug builds (the
/// message is then stored unparsed, in debug builds only). Counted, not
/// failed: (file the panic is in, its message).
const KNOWN_DEBUG_ONLY: &[(&str, &str)] = &[(
    // mail-parser 0.11.9, parsers/message.rs:485, closing a part whose
    // multipart parent is gone; reached e.g. by `Content-Type:
    // message/rfc822` inside a header block that also declares a multipart.
    "src/parsers/message.rs",
    "Invalid part ID, could not find multipart.",
)];

impl PanicRecord {
    fn is_known(&self) -> bool {
        KNOWN_DEBUG_ONLY.iter().any(|(file, msg)| {
            self.location.contains("mail-parser-")
                && self.location.contains(file)
                && self.message == *msg
        })
    }
}

thread_local! {
    static IN_FUZZ: Cell<bool> = const { Cell::new(false) };
    static PANICS: RefCell<Vec<PanicRecord>> = const { RefCell::new(Vec::new()) };
}

/// Records panics of the fuzzing thread (also those the crate catches
/// itself) instead of printing them; other threads keep the default hook.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| common::panic_hook::add(record_fuzz_panic));
}

/// The fuzzing thread's panic handler (see [`install_panic_hook`]).
fn record_fuzz_panic(info: &std::panic::PanicHookInfo<'_>) -> bool {
    if !IN_FUZZ.with(Cell::get) {
        return false;
    }
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string panic payload>".to_owned());
    let record = PanicRecord {
        message,
        location: info.location().map(|l| l.to_string()).unwrap_or_default(),
        thread: std::thread::current().name().unwrap_or("?").to_owned(),
        backtrace: Backtrace::force_capture(),
    };
    PANICS.with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            p.push(record);
        }
    });
    true
}

fn panic_report(
    panics: &[PanicRecord],
    opts: &Options,
    iter: u64,
    origin: &str,
    path: &Path,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "  FUZZ_SEED={} iteration {iter}", opts.seed);
    let _ = writeln!(out, "  origin: {origin}");
    let _ = writeln!(out, "  input saved: {}", path.display());
    for (i, p) in panics.iter().enumerate() {
        let _ = writeln!(
            out,
            "  panic {}/{} in thread '{}' at {}:\n    {}",
            i + 1,
            panics.len(),
            p.thread,
            p.location,
            p.message.replace('\n', "\n    ")
        );
        let _ = writeln!(out, "  top frames:");
        for line in top_frames(&p.backtrace, 16) {
            let _ = writeln!(out, "    {line}");
        }
    }
    out
}

/// The backtrace's frames below the panic machinery, names tidied.
fn top_frames(bt: &Backtrace, max: usize) -> Vec<String> {
    // The full style: the short one loses every frame in release builds.
    let text = format!("{bt:#}");
    let machinery = [
        "backtrace",
        "panic_hook",
        "record_fuzz_panic",
        "boxed::Box<dyn",
        "panicking",
        "rust_begin_unwind",
        "panic_fmt",
        "unwrap_failed",
        "expect_failed",
        "assert_failed",
        "slice_error_fail",
        "slice_index",
        "slice_start_index",
        "slice_end_index",
        "index_out_of_bounds",
        "panic_bounds_check",
        "str_index_overflow",
    ];
    let mut frames: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        match t.split_once(':') {
            Some((n, rest)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                let rest = rest.trim();
                // "0x55d0c0ffee - name::h0123456789abcdef" -> "name"
                let name = match rest.split_once(" - ") {
                    Some((addr, name)) if addr.starts_with("0x") => name,
                    _ => rest,
                };
                let name = match name.rsplit_once("::h") {
                    Some((head, hash))
                        if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
                    {
                        head
                    }
                    _ => name,
                };
                frames.push((format!("{n}: {name}"), Vec::new()));
            }
            _ => {
                if let Some(last) = frames.last_mut() {
                    last.1.push(format!("   {t}"));
                }
            }
        }
    }
    let skip = frames
        .iter()
        .take_while(|(f, _)| machinery.iter().any(|m| f.contains(m)))
        .count();
    let skip = if skip == frames.len() { 0 } else { skip };
    frames
        .into_iter()
        .skip(skip)
        .take(max)
        .flat_map(|(f, at)| std::iter::once(f).chain(at))
        .collect()
}

// ---------------------------------------------------------------- pipeline

struct Pipeline {
    /// Handler mail must be authenticated by mx.example.org.
    strict: Config,
    /// `trust_unauthenticated = true`.
    trusting: Config,
    /// No trusted authserv-id: nothing authenticates.
    no_auth: Config,
    templates: Templates,
    own: Vec<String>,
}

impl Pipeline {
    fn new() -> Pipeline {
        let dir = tempfile::tempdir().expect("tempdir");
        let load = |name: &str, handler_auth: &str| {
            let path = dir.path().join(format!("{name}.toml"));
            std::fs::write(&path, config_toml(dir.path(), handler_auth)).expect("write config");
            Config::load_with_env(&path, Default::default())
                .unwrap_or_else(|e| panic!("fuzz config {name} does not load: {e}"))
        };
        let strict = load(
            "strict",
            &format!("trusted_authserv_id = \"{AUTHSERV_ID}\"\n"),
        );
        let trusting = load(
            "trusting",
            &format!("trusted_authserv_id = \"{AUTHSERV_ID}\"\ntrust_unauthenticated = true\n"),
        );
        let no_auth = load("no-auth", "");
        let own = vec![
            strict.mailbox.address.clone(),
            COMMENT_ADDRESS.to_owned(),
            "Security@Example.ORG ".to_owned(),
        ];
        Pipeline {
            strict,
            trusting,
            no_auth,
            templates: Templates::builtin(),
            own,
        }
    }

    /// The whole pure pipeline on one input. Returns a hash of the outcome;
    /// panics (an assertion included) are the findings.
    fn run(&self, raw: &[u8]) -> u64 {
        let mut sig = DefaultHasher::new();

        // 1. Parse.
        let p = message::parse(raw);
        check_parsed(raw, &p);
        (p.parsed_ok, p.from.is_some(), p.reply_to.is_some()).hash(&mut sig);
        (p.content_type.as_deref(), p.report_type.is_some()).hash(&mut sig);
        (p.encrypted, p.text_body.is_some(), p.subject.is_some()).hash(&mut sig);
        (
            p.return_path.as_deref().map(str::is_empty),
            p.date.is_some(),
        )
            .hash(&mut sig);
        (
            bucket(p.to.len() + p.cc.len()),
            bucket(p.references.len() + p.in_reply_to.len()),
            bucket(p.authentication_results.len()),
            bucket(p.trace.len()),
        )
            .hash(&mut sig);

        // 2. Robot rules, reply address.
        let rule = classify::robot_rule(&p, &self.own);
        rule.map(|r| r.as_str()).hash(&mut sig);
        let no_own = classify::robot_rule(&p, &[]);
        if rule.is_none() {
            assert_eq!(no_own, None, "a rule matched only without own addresses");
        }
        let reply = classify::reply_address(&p);
        check_reply_address(&p, reply.as_deref());
        reply.is_some().hash(&mut sig);

        // 3. Handler authentication.
        for (i, cfg) in [&self.strict, &self.trusting, &self.no_auth]
            .into_iter()
            .enumerate()
        {
            let verdict = auth::sender(cfg, &p);
            check_sender(cfg, &p, &verdict, i == 0);
            std::mem::discriminant(&verdict).hash(&mut sig);
        }
        self.check_auth_variants(&p, &mut sig);

        // 4. Commands at the top of the text body, as handler_mail reads it.
        let body = p.text_body.clone().unwrap_or_default();
        let parsed = commands::parse(&body);
        check_commands(&body, &parsed);
        for (_, c) in &parsed.commands {
            match c {
                Ok(cmd) => std::mem::discriminant(cmd).hash(&mut sig),
                Err(_) => 0xEEu8.hash(&mut sig),
            }
        }

        // 5. Quote stripping of what would be relayed.
        let text = workflow::strip_quote(&parsed.rest);
        check_stripped(&parsed.rest, &text);
        let whole = workflow::strip_quote(&body);
        check_stripped(&body, &whole);
        (text.is_empty(), whole.len() == body.trim().len()).hash(&mut sig);

        // 6. The helpers around them.
        let subject = p.subject.as_deref().unwrap_or("");
        for tag in model::subject_tags(subject) {
            assert!(is_case_id(&tag), "subject_tags gave {tag:?}");
        }
        let embedded = cases::embedded_message_ids(raw);
        assert!(
            embedded
                .iter()
                .all(|id| !id.is_empty() && !id.chars().any(char::is_whitespace)),
            "embedded_message_ids: {embedded:?}"
        );
        bucket(embedded.len()).hash(&mut sig);
        let ctx = Context {
            cfg: &self.strict,
            templates: &self.templates,
            now: fixed_now(),
        };
        workflow::to_comment_address(&ctx, &p).hash(&mut sig);
        let reply_subject = compose::reply_subject(p.subject.as_deref(), CASE_ID);
        assert!(
            !reply_subject
                .chars()
                .any(|c| c.is_control() || compose::invisible(c)),
            "control or invisible character in reply subject {reply_subject:?}"
        );
        let shown = compose::printable(subject);
        assert!(
            !shown
                .chars()
                .any(|c| c.is_control() || compose::invisible(c)),
            "printable() left {shown:?}"
        );
        for a in p.from.iter().chain(&p.sender).chain(&p.reply_to) {
            let key = model::mailbox_key(&a.email);
            assert_eq!(
                model::mailbox_key(&key),
                key,
                "mailbox_key is not idempotent on {:?}",
                a.email
            );
        }
        assert!(
            reply_subject.contains(&format!("[{CASE_ID}]")),
            "no case tag in {reply_subject:?}"
        );

        // 7. The acknowledgement, and what a mail reader makes of it.
        if let Some(reply) = &reply {
            let ok = self.check_acknowledgement(raw, &p, reply, &reply_subject, &text);
            ok.hash(&mut sig);
        }
        sig.finish()
    }

    /// `auth::own_verdicts`, `auth::authenticated` and `auth::dmarc_pass`
    /// with the message's own authserv-ids trusted too, so real-world
    /// Authentication-Results reach the result parsing; `authenticated` also
    /// gets every raw value, trusted or not.
    fn check_auth_variants(&self, p: &ParsedMessage, sig: &mut DefaultHasher) {
        let mut ids: Vec<String> = vec![AUTHSERV_ID.to_owned()];
        for h in p.authentication_results.iter().take(3) {
            if let Some(id) = h.split([';', ' ', '\t', '(']).next() {
                let id = id.to_ascii_lowercase();
                if !id.is_empty() && !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        let mut froms: Vec<&str> = vec!["alice@example.org", "a@b", "no-at-sign", "@", ""];
        if let Some(f) = &p.from {
            froms.push(&f.email);
        }
        let every: Vec<&str> = p
            .authentication_results
            .iter()
            .map(String::as_str)
            .collect();
        for (i, id) in ids.iter().enumerate() {
            let ha = HandlerAuth {
                trusted_authserv_id: Some(id.clone()),
                border_hosts: if i == 0 {
                    vec!["lmtp.example.org".to_owned()]
                } else {
                    Vec::new()
                },
                ..HandlerAuth::default()
            };
            let own = auth::own_verdicts(&ha, &p.trace);
            if let Ok(own) = &own {
                for v in own {
                    assert!(
                        v.to_ascii_lowercase().contains(id.as_str()),
                        "own verdict {v:?} does not name {id:?}"
                    );
                }
            }
            own.is_ok().hash(sig);
            auth::dmarc_pass(&ha, p).hash(sig);
            for from in &froms {
                let own: Vec<&str> = own.iter().flatten().map(String::as_str).collect();
                let lists: [&[&str]; 2] = [&own, &every];
                for list in lists {
                    let how = auth::authenticated(&ha, from, list);
                    if let Some(how) = &how {
                        assert!(
                            how.contains(id.as_str()),
                            "verdict {how:?} does not name the trusted host {id:?}"
                        );
                        assert!(
                            from.contains('@'),
                            "{from:?} without a domain authenticated: {how:?}"
                        );
                    }
                    how.is_some().hash(sig);
                }
            }
        }
        // The Microsoft 365 form reads at most one field, the topmost,
        // and never believes auth=.
        let ms = HandlerAuth {
            microsoft365: true,
            ..HandlerAuth::default()
        };
        let own = auth::own_verdicts(&ms, &p.trace).unwrap_or_default();
        assert!(
            own.len() <= 1,
            "more than one Microsoft 365 verdict: {own:?}"
        );
        for from in &froms {
            if let Some(how) = auth::authenticated(&ms, from, &own) {
                assert!(
                    how.contains("microsoft365") && !how.starts_with("auth="),
                    "Microsoft 365 verdict {how:?}"
                );
            }
        }
        let none = HandlerAuth::default();
        assert_eq!(
            auth::authenticated(&none, "alice@example.org", &every),
            None,
            "authenticated without a trusted authserv-id"
        );
        assert!(
            !auth::dmarc_pass(&none, p),
            "dmarc_pass without a trusted authserv-id"
        );
    }

    fn check_acknowledgement(
        &self,
        raw: &[u8],
        p: &ParsedMessage,
        reply: &str,
        subject: &str,
        text: &str,
    ) -> bool {
        let mut references = p.references.clone();
        references.extend(p.message_id.clone());
        let body: String = text.chars().take(2000).collect();
        let draft = Draft {
            from_name: Some("Example security"),
            from: OUR_ADDRESS,
            to: vec![reply.to_owned()],
            subject: subject.to_owned(),
            body: format!("We received your report.\n\n{body}\n"),
            message_id: format!("ack.{CASE_ID}.0000000000000001@example.org"),
            in_reply_to: p.message_id.clone(),
            references,
            auto_submitted: "auto-replied",
            date: fixed_now(),
            attach: (raw.len() <= MAX_ATTACH).then_some(raw),
            files: &[],
        };
        let Ok(out) = compose::build(draft) else {
            return false;
        };
        // Nothing the sender wrote may add or change a header of our mail.
        let panics_before = PANICS.with(|p| p.borrow().len());
        let back = message::parse(&out.raw);
        if PANICS.with(|p| p.borrow().len()) > panics_before {
            // Reported as a panic on its own (or a known debug-only one).
            return false;
        }
        assert!(back.parsed_ok, "our acknowledgement does not parse");
        assert_eq!(
            back.from.as_ref().map(|a| a.email.as_str()),
            Some(OUR_ADDRESS),
            "acknowledgement From"
        );
        assert_eq!(back.to.len(), 1, "acknowledgement To: {:?}", back.to);
        assert!(back.cc.is_empty(), "acknowledgement Cc: {:?}", back.cc);
        assert_eq!(
            back.auto_submitted.as_deref(),
            Some("auto-replied"),
            "acknowledgement Auto-Submitted"
        );
        assert_eq!(
            back.message_id.as_deref(),
            Some(out.message_id.as_str()),
            "acknowledgement Message-ID"
        );
        assert_eq!(back.list_id, None, "acknowledgement grew a List-Id");
        true
    }
}

fn fixed_now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_780_000_000, 0).expect("fixed time")
}

fn config_toml(dir: &Path, handler_auth: &str) -> String {
    let mut t = format!(
        "[mailbox]\naddress = \"{OUR_ADDRESS}\"\nproject = \"Example\"\n\
         policy_url = \"https://example.org/security\"\ncomment_address = \"{COMMENT_ADDRESS}\"\n\n\
         [imap]\nhost = \"imap.example.org\"\nusername = \"{OUR_ADDRESS}\"\npassword = \"x\"\n\n\
         [smtp]\nhost = \"smtp.example.org\"\n\n\
         [storage]\npath = \"{}\"\n\n",
        dir.join("state.db").display()
    );
    for (i, h) in HANDLERS.iter().enumerate() {
        let _ = write!(
            t,
            "[[handlers]]\nname = \"Handler {i}\"\nemail = \"{h}\"\n\n"
        );
    }
    let _ = write!(t, "[handler_auth]\n{handler_auth}");
    t
}

/// log2 buckets, so counts distinguish outcomes without exploding them.
fn bucket(n: usize) -> u32 {
    usize::BITS - n.leading_zeros()
}

fn is_case_id(tag: &str) -> bool {
    let mut p = tag.split('-');
    p.next() == Some("SEC")
        && p.next()
            .is_some_and(|y| y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit()))
        && p.next()
            .is_some_and(|n| n.len() >= 4 && n.bytes().all(|b| b.is_ascii_digit()))
        && p.next().is_none()
}

// -------------------------------------------------------------- invariants

/// What `message`'s docs promise about every parse.
fn check_parsed(raw: &[u8], p: &ParsedMessage) {
    assert_eq!(
        p.content_hash,
        hex::encode(Sha256::digest(raw)),
        "content_hash is not SHA-256 of the raw bytes"
    );
    if !p.parsed_ok {
        assert!(
            p.from.is_none() && p.subject.is_none() && p.text_body.is_none() && p.to.is_empty(),
            "unparsed message with fields"
        );
    }
    if let Some(t) = &p.text_body {
        assert!(
            t.len() <= message::MAX_TEXT_BODY_BYTES,
            "text_body {} bytes > MAX_TEXT_BODY_BYTES",
            t.len()
        );
    }
    if let Some(s) = &p.subject {
        assert!(
            s.len() <= message::MAX_HEADER_VALUE_BYTES,
            "subject {} bytes > MAX_HEADER_VALUE_BYTES",
            s.len()
        );
        assert!(!s.trim().is_empty(), "empty subject is Some");
    }
    // Raw header values are cut at the cap before lossy decoding, which may
    // turn each invalid byte into a 3-byte U+FFFD.
    let raw_cap = 3 * message::MAX_HEADER_VALUE_BYTES;
    for (what, v) in [
        ("from_raw", &p.from_raw),
        ("auto_submitted", &p.auto_submitted),
        ("precedence", &p.precedence),
        ("list_id", &p.list_id),
        ("list_unsubscribe", &p.list_unsubscribe),
        ("message_id", &p.message_id),
        ("return_path", &p.return_path),
    ] {
        if let Some(v) = v {
            assert!(v.len() <= raw_cap, "{what}: {} bytes", v.len());
        }
    }
    for (what, n) in [
        ("to", p.to.len()),
        ("cc", p.cc.len()),
        ("in_reply_to", p.in_reply_to.len()),
        ("references", p.references.len()),
        ("delivered_to", p.delivered_to.len()),
        ("x_original_to", p.x_original_to.len()),
        ("authentication_results", p.authentication_results.len()),
    ] {
        assert!(
            n <= message::MAX_REPEATED_VALUES,
            "{what}: {n} values > MAX_REPEATED_VALUES"
        );
    }
    for a in
        p.to.iter()
            .chain(&p.cc)
            .chain(&p.from)
            .chain(&p.sender)
            .chain(&p.reply_to)
    {
        assert!(!a.email.is_empty(), "an Address with an empty email");
    }
    let ids = p
        .message_id
        .iter()
        .chain(&p.in_reply_to)
        .chain(&p.references);
    for id in ids {
        assert!(
            !id.is_empty() && !id.chars().any(|c| c.is_whitespace() || c.is_control()),
            "message id {id:?}"
        );
    }
}

fn check_reply_address(p: &ParsedMessage, reply: Option<&str>) {
    let Some(r) = reply else { return };
    assert_eq!(r.matches('@').count(), 1, "reply address {r:?}");
    assert!(
        !r.chars().any(|c| c.is_whitespace()
            || c.is_control()
            || compose::invisible(c)
            || "<>()[],;:\\\"".contains(c)),
        "reply address {r:?}"
    );
    let known = [&p.reply_to, &p.from]
        .into_iter()
        .flatten()
        .any(|a| a.email.to_lowercase() == r);
    assert!(known, "reply address {r:?} is neither Reply-To nor From");
}

fn check_sender(cfg: &Config, p: &ParsedMessage, verdict: &Sender, strict: bool) {
    let from = p.from.as_ref().map(|a| a.email.as_str());
    match verdict {
        Sender::Other => {}
        Sender::Handler { email, .. } | Sender::ForgedHandler { email, .. } => {
            assert_eq!(Some(email.as_str()), from, "verdict names another address");
            assert!(
                cfg.handlers.iter().any(|h| &h.email == email),
                "{email} is not a handler"
            );
        }
    }
    if strict {
        if let Sender::Handler { email, how } = verdict {
            assert!(
                how.contains(AUTHSERV_ID),
                "handler {email} accepted without {AUTHSERV_ID}: {how}"
            );
        }
    }
    if let Sender::Handler { email, how } = verdict {
        if !cfg.handler_auth.trust_unauthenticated {
            assert!(
                auth::own_verdicts(&cfg.handler_auth, &p.trace).is_ok(),
                "handler {email} accepted ({how}) despite forged verdicts"
            );
        }
    }
    if cfg.handler_auth.trusted_authserv_id.is_none() && !cfg.handler_auth.trust_unauthenticated {
        assert!(
            !matches!(verdict, Sender::Handler { .. }),
            "handler authenticated without a trusted authserv-id"
        );
    }
}

fn check_commands(body: &str, parsed: &commands::Parsed) {
    for (line, c) in &parsed.commands {
        assert!(
            line.starts_with('/') && !line.contains('\n'),
            "command line {line:?}"
        );
        assert!(
            body.contains(line.as_str()),
            "command {line:?} is not in the body"
        );
        let arg = match c {
            Ok(Command::Assign(a))
            | Ok(Command::Severity(a))
            | Ok(Command::Affected(a))
            | Ok(Command::FixedIn(a))
            | Ok(Command::Cve(a))
            | Ok(Command::Audit(a))
            | Ok(Command::Duplicate(a))
            | Ok(Command::Reject(a)) => Some(a),
            Ok(Command::Deadline { due, .. }) | Ok(Command::Embargo(due)) => {
                use chrono::Datelike;
                assert!(
                    (1970..=9999).contains(&due.year()),
                    "{line:?}: date {due} out of range"
                );
                None
            }
            _ => None,
        };
        if let Some(a) = arg {
            assert!(
                !a.chars().any(char::is_control) && a.chars().count() <= 500 && !a.is_empty(),
                "{line:?}: argument {a:?}"
            );
        }
        // Only checked for holding a tag: `/duplicate [SEC-2026-0001] (same
        // as Bob's)` parses as a duplicate of "SEC-2026-0001] (SAME AS
        // BOB'S)" (`apply` then finds no such case), so no stricter
        // property holds here.
        if let Ok(Command::Duplicate(id)) = c {
            assert!(
                !model::subject_tags(&format!("[{id}]")).is_empty(),
                "{line:?}: duplicate of {id:?}"
            );
        }
    }
    assert!(
        !parsed.rest.starts_with(['\n', '\r']),
        "rest starts with a line break"
    );
    assert!(
        parsed.rest.len() <= body.len() + 1,
        "rest longer than the body"
    );
}

fn check_stripped(input: &str, out: &str) {
    assert!(out.len() <= input.len(), "strip_quote made the text longer");
    assert_eq!(out, out.trim(), "strip_quote output not trimmed");
    for line in out.lines() {
        assert!(
            !line.trim_start().starts_with('>'),
            "strip_quote kept a quoted line {line:?}"
        );
    }
}

// ------------------------------------------------------------------- seeds

struct Seed {
    name: String,
    data: Arc<Vec<u8>>,
}

fn regressions_dir() -> PathBuf {
    manifest_dir().join("tests/fixtures/fuzz-regressions")
}

/// Every file under `dir` (recursively, sorted) but documentation; `dir`
/// may also be a single file.
fn read_dir_seeds(dir: &Path, label: &str) -> Vec<Seed> {
    let mut files = Vec::new();
    collect_files(dir, &mut files);
    files.sort();
    files
        .into_iter()
        .filter(|f| {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with('.')
                && !name.ends_with(".md")
                && !name.ends_with(".tsv")
                && !name.ends_with(".txt")
                && name != "NOTICE"
        })
        .map(|f| {
            let data = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let rel = f.strip_prefix(dir).unwrap_or(&f).display().to_string();
            Seed {
                name: if rel.is_empty() {
                    format!("{label}:{}", f.display())
                } else {
                    format!("{label}/{rel}")
                },
                data: Arc::new(data),
            }
        })
        .collect()
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_file() {
        out.push(path.to_path_buf());
        return;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(&p, out);
        } else if p.is_file() {
            out.push(p);
        }
    }
}

fn hostile(name: &str, data: impl Into<Vec<u8>>) -> Seed {
    Seed {
        name: format!("hostile/{name}"),
        data: Arc::new(data.into()),
    }
}

const HANDLER_HEAD: &str = "From: Alice <alice@example.org>\r\n\
To: security@example.org\r\n\
Subject: Re: [SEC-2026-0001] heap overflow\r\n\
Message-ID: <h1@example.org>\r\n\
In-Reply-To: <case.SEC-2026-0001@example.org>\r\n\
Authentication-Results: mx.example.org; dkim=pass header.d=example.org; spf=pass smtp.mailfrom=alice@example.org\r\n";

/// Hand-made messages aimed at the limits of each stage.
fn hostile_seeds() -> Vec<Seed> {
    let mut v = Vec::new();
    let head = "From: Mallory <mallory@example.net>\r\nTo: security@example.org\r\nSubject: report\r\nMessage-ID: <m1@example.net>\r\n";

    // Deep MIME nesting.
    let mut s = String::from(head);
    for i in 0..200 {
        let _ = write!(
            s,
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        );
    }
    s.push_str("Content-Type: text/plain\r\n\r\nthe report, 200 levels down\r\n");
    for i in (0..200).rev() {
        let _ = write!(s, "--b{i}--\r\n");
    }
    v.push(hostile("deep-multipart-200", s));

    let mut s = String::from(head);
    for i in 0..200 {
        let _ = write!(
            s,
            "Content-Type: message/rfc822\r\n\r\nFrom: level{i}@example.net\r\nSubject: level {i}\r\n"
        );
    }
    s.push_str("\r\nbottom\r\n");
    v.push(hostile("deep-rfc822-200", s));

    // The scale of issue 7 (1.28 MB, 40,000 levels: freeing the tree
    // overflowed a 2 MiB stack), and a multipart tower like it.
    let mut s = String::from(head);
    s.push_str(&"Content-Type: message/rfc822\r\n\r\n".repeat(40_000));
    s.push_str("From: bottom@example.net\r\n\r\nbottom\r\n");
    v.push(hostile("deep-rfc822-40000", s));
    let mut s = String::from(head);
    for i in 0..20_000 {
        let _ = write!(
            s,
            "Content-Type: multipart/mixed; boundary=\"{i}\"\r\n\r\n--{i}\r\n"
        );
    }
    s.push_str("\r\nbottom\r\n");
    v.push(hostile("deep-multipart-20000-unclosed", s));

    let mut s = String::from(head);
    for i in 0..200 {
        if i % 2 == 0 {
            let _ = write!(
                s,
                "Content-Type: multipart/mixed; boundary=\"m{i}\"\r\n\r\n--m{i}\r\n"
            );
        } else {
            let _ = write!(
                s,
                "Content-Type: message/rfc822\r\n\r\nFrom: l{i}@example.net\r\n"
            );
        }
    }
    s.push_str("Content-Type: text/html\r\n\r\n<p>x</p>\r\n");
    v.push(hostile("deep-alternating-200-unclosed", s));

    let mut s = String::from(head);
    for _ in 0..2000 {
        s.push_str("Content-Type: multipart/mixed; boundary=\"same\"\r\n\r\n--same\r\n");
    }
    s.push_str("\r\nx\r\n--same--\r\n");
    v.push(hostile("deep-multipart-same-boundary-2000", s));

    // Huge header lines.
    let mut s = String::from(
        "From: a@example.net\r\nTo: security@example.org\r\nMessage-ID: <big@x>\r\nSubject: ",
    );
    s.push_str(&"A".repeat(1 << 20));
    s.push_str("\r\n\r\nbody\r\n");
    v.push(hostile("huge-subject-1MiB", s));

    let mut s = String::from("From: a@example.net\r\nTo: ");
    for i in 0..20_000 {
        let _ = write!(s, "r{i} <r{i}@example.org>,\r\n ");
    }
    s.push_str("last@example.org\r\nSubject: many\r\n\r\nbody\r\n");
    v.push(hostile("folded-to-20000", s));

    let mut s = String::from("From: a@example.net\r\nX-Long: ");
    s.push_str(&"=?utf-8?B?w6k=?= ".repeat(30_000));
    s.push_str("\r\nSubject: ");
    s.push_str(&"=?utf-8?Q?=C3=A9?=".repeat(20_000));
    s.push_str("\r\n\r\nbody\r\n");
    v.push(hostile("huge-encoded-words", s));

    let mut s = String::from(head);
    for i in 0..20_000 {
        let _ = writeln!(s, "X-H{i}: v{i}\r");
    }
    s.push_str("\r\nbody\r\n");
    v.push(hostile("many-headers-20000", s));

    // Many parts.
    let mut s = String::from(head);
    s.push_str("Content-Type: multipart/mixed; boundary=\"p\"\r\n\r\n");
    for i in 0..5000 {
        if i % 3 == 0 {
            let _ = write!(s, "--p\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA{i}\r\n");
        } else {
            let _ = write!(s, "--p\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n");
        }
    }
    s.push_str("--p--\r\n");
    v.push(hostile("many-parts-5000", s));

    let mut s = String::from(head);
    s.push_str("Content-Type: multipart/mixed; boundary=\"q\"\r\n\r\n");
    s.push_str(&"--q\r\n\r\n".repeat(100_000));
    v.push(hostile("many-empty-parts-100000", s));

    // NUL bytes, invalid UTF-8.
    v.push(hostile(
        "nul-bytes",
        b"From: a\0b@example.net\r\nTo: security@example.org\0\r\nSub\0ject: nul\r\n\0\r\nSubject: x\0y\r\n\r\nbody\0with\0nuls\r\n/take\0\r\n"
            .to_vec(),
    ));
    v.push(hostile(
        "invalid-utf8",
        b"From: \xff\xfe <a\xc0\xaf@example.net>\r\nTo: security@example.org\r\nSubject: \xed\xa0\x80 \xf4\x90\x80\x80 \xc3\r\nReply-To: \xe2\x82\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xff\xff\xfe\xfe body \xc3\x28\r\n"
            .to_vec(),
    ));
    v.push(hostile(
        "only-invalid-bytes",
        (0u8..=255).rev().cycle().take(4096).collect::<Vec<u8>>(),
    ));

    // Odd encodings.
    let odd = "From: =?utf-7?B?K0FHRUFZUS0=?= <a@example.net>\r\n\
To: =?x-unknown?Q?who?= <security@example.org>\r\n\
Subject: =?utf-16?B?2D3eAA==?= =?iso-2022-jp?B?GyRCJEgbKEI?= =?utf-8?B?####?= =?utf-8?Q?=ZZ=?=\r\n\
 =?=?utf-8?B?YQ==?=?= =?utf-8*en?Q?x?= =?utf-32?B?AAAAQQ==?= =?gb18030?B?gTCBMA==?=\r\n\
Content-Type: multipart/mixed; boundary*0=\"a\"; boundary*1=\"b\"\r\n\
\r\n\
--ab\r\n\
Content-Type: text/plain; charset*=utf-8''%E2%82; name*0*=utf-8''%E2%82; name*1*=%AC\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
soft break at the end=\r\n=\r\n=E2=82=AC =ZZ =\r\
--ab\r\n\
Content-Type: text/plain; charset=utf-7\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
K0FHRUFZUS0=====!!!!@@@@\r\n\
--ab\r\n\
Content-Type: text/plain; charset=ucs-2\r\n\
Content-Transfer-Encoding: x-uuencode\r\n\
\r\n\
begin 644 x\r\n#86)C\r\n`\r\nend\r\n\
--ab\r\n\
Content-Type: text/plain; charset=iso-2022-jp\r\n\
\r\n\
\x1b$B\x1b(B\x1b$)C\x0e\x0f garbage\r\n\
--ab\r\n\
Content-Type: text/plain; charset=\"\"\r\n\
Content-Transfer-Encoding: binary\r\n\
\r\n\
x\r\n\
--ab--\r\n";
    v.push(hostile("odd-encodings", odd));

    let mut s = String::from(head);
    s.push_str(
        "Content-Type: text/plain; charset=utf-16le\r\nContent-Transfer-Encoding: base64\r\n\r\n",
    );
    s.push_str(&"//7/AP8=".repeat(5000));
    s.push_str("\r\n");
    v.push(hostile("utf16-base64-odd-length", s));

    // Authentication-Results.
    let mut s =
        String::from("From: alice@example.org\r\nTo: security@example.org\r\nSubject: a-r\r\n");
    s.push_str("Authentication-Results: mx.example.org; ");
    s.push_str(&"(".repeat(50_000));
    s.push_str(" dkim=pass header.d=example.org ");
    s.push_str(&")".repeat(49_999));
    s.push_str("\r\nAuthentication-Results: mx.example.org");
    s.push_str(&";".repeat(30_000));
    s.push_str(" dkim=pass header.d=example.org\r\nAuthentication-Results: mx.example.org; dkim=pass header.d=");
    s.push_str(&"a.".repeat(20_000));
    s.push_str("example.org\r\nAuthentication-Results: mx.example.org; spf=pass smtp.mailfrom=\"");
    s.push_str(&"\\\"".repeat(10_000));
    s.push_str("\r\n");
    for i in 0..500 {
        let _ = write!(
            s,
            "Authentication-Results: mx{i}.example.org; dkim=pass header.d=example.org\r\n"
        );
    }
    s.push_str(
        "Authentication-Results: mx.example.org; dkim=pass header.d=example.org\r\n\r\n/take\r\n",
    );
    v.push(hostile("long-authentication-results", s));

    // Handler mail with commands.
    let mut s = String::from(HANDLER_HEAD);
    s.push_str("\r\n");
    for line in COMMAND_LINES {
        s.push_str(line);
        s.push_str("\r\n");
    }
    s.push_str("/assign ");
    s.push_str(&"é".repeat(3000));
    s.push_str("\r\n/audit ");
    s.push_str(&"\u{7}\u{1b}[31m".repeat(500));
    s.push_str(
        "\r\n\r\nThanks, reproduced.\r\n\r\nOn Tue, 1 Jul 2026, Mallory wrote:\r\n> secret\r\n",
    );
    v.push(hostile("handler-commands", s));

    let mut s = String::from(HANDLER_HEAD);
    s.push_str("Content-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>/take</p><p>/state triage</p><div>/announce</div>");
    s.push_str(&"<div>".repeat(20_000));
    s.push_str("<!-- unclosed &#99999999999; &#x110000; &#0; &amp");
    v.push(hostile("handler-html-commands-deep-tags", s));

    let mut s = String::from(HANDLER_HEAD);
    s.push_str("\r\n");
    s.push_str(&"/take\r\n".repeat(100_000));
    v.push(hostile("handler-100000-commands", s));

    let mut s = String::from(HANDLER_HEAD);
    s.push_str("\r\nFixed.\r\n");
    s.push_str(&"From: x\r\n".repeat(30_000));
    s.push_str(&"\r\n".repeat(30_000));
    s.push_str("\"A\" <a@b> wrote:\r\n");
    s.push_str(&"_".repeat(100_000));
    s.push_str("\r\n> quoted\r\n");
    v.push(hostile("quote-stripping-stress", s));

    let mut s = String::from(HANDLER_HEAD);
    s.push_str("\r\n\r\n\r\n   \r\n/announce dry-run\r\n\r\nADVISORY\r\n");
    s.push_str(&"On Mon wrote:\r\n".repeat(1000));
    s.push_str("-----Original Message-----\r\nFrom: y\r\nSent: z\r\n");
    v.push(hostile("announce-with-quotes", s));

    // Before the header block.
    let mut s = String::from("\u{feff}");
    s.push_str(&"   \r\n".repeat(100));
    s.push_str(head);
    s.push_str("\r\nbody\r\n");
    v.push(hostile("preamble-100-blank-lines", s));
    let mut s = String::from("HELO x\r\n");
    s.push_str(&"RCPT TO:<a@b>\r\n".repeat(1000));
    s.push_str("DATA\r\n");
    s.push_str(head);
    s.push_str("\r\nbody\r\n");
    v.push(hostile("bsmtp-long-envelope", s));
    v.push(hostile("helo-no-newline", "EHLO x"));
    v.push(hostile(
        "mbox-from-lines",
        "From a@b  Fri Dec  7 11:07:41 2001\nFrom b@c  Fri Dec  7 11:07:41 2001\nFrom : c@d\nSubject: s\n\nx\n",
    ));

    // Line endings and tiny inputs.
    v.push(hostile(
        "cr-only",
        "From: a@example.net\rTo: security@example.org\rSubject: cr\rContent-Type: multipart/mixed; boundary=x\r\r--x\rContent-Type: text/plain\r\rbody\r--x--\r",
    ));
    for (i, tiny) in [
        "",
        "\n",
        "\r\n",
        ":",
        "From:",
        "From: <>\r\n",
        "\r\n\r\n",
        "--",
        "=?",
        "From: a@b\r\n\r\n",
    ]
    .into_iter()
    .enumerate()
    {
        v.push(hostile(&format!("tiny-{i}"), tiny));
    }

    // PGP markers, embedded Message-IDs, dates, addresses, subjects.
    let mut s = String::from(head);
    s.push_str(
        "Content-Type: multipart/encrypted; boundary=e\r\n\r\n--e--\r\n-----BEGIN PGP MESSAGE-----",
    );
    v.push(hostile("pgp-empty-encrypted", s));
    let mut s = String::from("From: MAILER-DAEMON@mx.example\r\nSubject: Undeliverable: x\r\n\r\n");
    for i in 0..5000 {
        let _ = write!(
            s,
            "> > Message-ID: <ack.{i}@example.org>\r\nMessage-Iä: x\r\nMessage-ID:"
        );
        s.push_str("é\r\n");
    }
    v.push(hostile("embedded-message-ids", s));
    v.push(hostile(
        "weird-dates-and-paths",
        "From: a@b.c\r\nDate: Tue, 31 Feb 99999 25:61:61 +9999\r\nReturn-Path: <<<>>> (((((\r\n\
Reply-To: \"a@b\"@c.d, <@route:x@y.z>\r\nSender: ((((\r\nIn-Reply-To: a@b c@d (((<x@y>\r\n\
References: <a@b> <> <<>> <a b@c> <\r\nSubject: [SEC-2026-0001][SEC-9999-99999][SEC-][SEC-2026-0001\r\n\r\nx\r\n",
    ));
    let mut s = String::from("From: a@b.c\r\nSubject: ");
    s.push_str(&"[SEC-".repeat(100_000));
    s.push_str("\r\n\r\nx\r\n");
    v.push(hostile("subject-many-tag-starts", s));
    let mut s = String::from(head);
    s.push_str("Content-Type: text/plain");
    for i in 0..10_000 {
        let _ = write!(s, "; p{i}=\"v{i}\"");
    }
    s.push_str("\r\n\r\nbody\r\n");
    v.push(hostile("content-type-10000-params", s));
    let mut s = String::from(head);
    let b = "B".repeat(70_000);
    let _ = write!(
        s,
        "Content-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\n--{b}\r\n\r\nx\r\n--{b}--\r\n"
    );
    v.push(hostile("boundary-70000", s));
    for ct in [
        "message/partial; id=\"x\"; number=1; total=2",
        "message/external-body; access-type=local-file; name=/etc/passwd",
        "text/rfc822-headers",
        "message/delivery-status",
        "application/ms-tnef",
        "application/pkcs7-mime",
    ] {
        v.push(hostile(
            &format!(
                "ct-{}",
                ct.split(';').next().unwrap_or(ct).replace('/', "-")
            ),
            format!("{head}Content-Type: {ct}\r\n\r\nMessage-ID: <inner@x>\r\n\r\nx\r\n"),
        ));
    }
    v
}

// ------------------------------------------------------------------ mutator

const DICT: &[&[u8]] = &[
    b"From: ",
    b"To: ",
    b"Cc: ",
    b"Subject: ",
    b"Sender: ",
    b"Reply-To: ",
    b"Message-ID: ",
    b"In-Reply-To: ",
    b"References: ",
    b"Return-Path: <>",
    b"Return-Path: <MAILER-DAEMON@x>",
    b"Auto-Submitted: auto-replied",
    b"Auto-Submitted: no",
    b"Precedence: bulk",
    b"List-Id: <x.y>",
    b"List-Unsubscribe: <mailto:u@x>",
    b"X-Autoreply: yes",
    b"Delivered-To: ",
    b"X-Original-To: security+comment@example.org",
    b"Authentication-Results: mx.example.org; dkim=pass header.d=example.org",
    b"Authentication-Results: ",
    b"Content-Type: ",
    b"Content-Transfer-Encoding: base64",
    b"Content-Transfer-Encoding: quoted-printable",
    b"Content-Disposition: attachment; filename*=utf-8''%E2",
    b"multipart/mixed",
    b"multipart/alternative",
    b"multipart/report; report-type=delivery-status",
    b"multipart/encrypted",
    b"message/rfc822",
    b"text/html",
    b"text/plain; charset=utf-8",
    b"boundary=",
    b"charset=",
    b"=?utf-8?B?",
    b"=?utf-8?Q?",
    b"=?iso-2022-jp?B?GyRC",
    b"?=",
    b"--",
    b"\r\n\r\n",
    b"\n\n",
    b"\r\n ",
    b"\r\n\t",
    b"\t",
    b"<",
    b">",
    b"<>",
    b"\"",
    b"\\",
    b"(",
    b")",
    b";",
    b",",
    b":",
    b"@",
    b"=",
    b"=\r\n",
    b"=3D",
    b"=FF",
    b"&#x10FFFF;",
    b"&#99999999999;",
    b"<html>",
    b"<br>",
    b"<!--",
    b"-->",
    b"<script>",
    b"[SEC-2026-0001]",
    b"-----BEGIN PGP MESSAGE-----",
    b"/take",
    b"/state triage",
    b"/announce",
    b"/deadline fix 2026-12-01",
    b"/embargo 9999-12-31T23:59:59-23:59",
    b"On Tue, Alice wrote:",
    b"> ",
    b"From: x\nSent: y",
    b"________________",
    b"-----Original Message-----",
    b"How to act by email:",
    b"dkim=pass",
    b"spf=pass",
    b"auth=pass",
    b"header.d=",
    b"header.i=@",
    b"smtp.mailfrom=",
    b"smtp.auth=",
    b"mx.example.org",
    b"alice@example.org",
    b"security@example.org",
    b"MAILER-DAEMON",
    b"noreply",
    b"\0",
    b"\xef\xbb\xbf",
    b"\xc3\xa9",
    b"\xff\xfe",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe2\x80\xae",
    b"\xe2\x80\x8b",
    b"+tag",
];

const INTERESTING_BYTES: &[u8] = b"\0\xff\n\r:=?\"<>(;/- \t\x80\xc3@\\";

const COMMAND_LINES: &[&str] = &[
    "/take",
    "/take now",
    "/state triage",
    "/state",
    "/state Confirmed",
    "/state fix-ready",
    "/state \u{0}new",
    "/assign bob@example.org",
    "/assign",
    "/severity HIGH",
    "/severity urgent",
    "/affected >= 2.0, < 2.4.3",
    "/fixed-in 2.4.3",
    "/cve cve-2026-12345",
    "/cve CVE-2026-1",
    "/cve ß-2026-1234",
    "/audit checked foo.c",
    "/duplicate [SEC-2026-0001]",
    "/duplicate [[SEC-2026-0001]]",
    "/duplicate 42",
    "/reject not a bug",
    "/responded",
    "/close",
    "/announce",
    "/announce dry-run",
    "/announce DRY-RUN please",
    "/deadline fix 2026-12-01",
    "/deadline fix 2026-12-01 25:61",
    "/deadline fix 2026-02-30",
    "/deadline fix +275760-09-13T00:00:00Z",
    "/deadline release 2026-12-01",
    "/deadline",
    "/deadline fix",
    "/embargo 2026-12-01T10:00:00+14:00",
    "/embargo 9999-12-31T23:59:59-23:59",
    "/embargo 1969-12-31T23:59:59Z",
    "/embargo 0000-01-01",
    "/embargo 2026-12-01 10:00",
    "/",
    "//",
    "/TAKE",
    "/take\u{200b}",
    "/état ouvert",
    "/severity \u{0}high",
    "\u{3000}/take",
];

struct Mutator<'a> {
    rng: &'a mut Rng,
    seeds: &'a [Seed],
    ops: Vec<&'static str>,
}

impl Mutator<'_> {
    /// A base to mutate: a seed (smaller ones preferred) or a pool entry;
    /// big ones through a window, mostly their start (the header block).
    fn pick_base(&mut self, pool: &[Seed]) -> (Vec<u8>, String) {
        let from_pool = !pool.is_empty() && self.rng.chance(35);
        let base = if from_pool {
            &pool[self.rng.below(pool.len())]
        } else {
            let a = &self.seeds[self.rng.below(self.seeds.len())];
            let b = &self.seeds[self.rng.below(self.seeds.len())];
            if a.data.len() <= b.data.len() || self.rng.chance(10) {
                a
            } else {
                b
            }
        };
        let data = &base.data;
        if data.len() <= MAX_WINDOW {
            return (data.to_vec(), base.name.clone());
        }
        let len = MAX_WINDOW / 4 + self.rng.below(MAX_WINDOW * 3 / 4);
        let start = if self.rng.chance(75) {
            0
        } else {
            self.rng.below(data.len() - len)
        };
        (
            data[start..start + len].to_vec(),
            format!("{}[{start}..{}]", base.name, start + len),
        )
    }

    fn mutate(&mut self, data: &mut Vec<u8>) {
        let rounds = self.rng.skewed(8);
        for _ in 0..rounds {
            self.mutate_once(data);
            if data.len() > MAX_MUTANT_LEN {
                data.truncate(MAX_MUTANT_LEN);
            }
        }
    }

    fn mutate_once(&mut self, data: &mut Vec<u8>) {
        let op = self.rng.below(22);
        let name = match op {
            0 => {
                for _ in 0..self.rng.skewed(8) {
                    if !data.is_empty() {
                        let i = self.rng.below(data.len());
                        data[i] ^= 1 << self.rng.below(8);
                    }
                }
                "flip"
            }
            1 => {
                if !data.is_empty() {
                    let i = self.rng.below(data.len());
                    data[i] = INTERESTING_BYTES[self.rng.below(INTERESTING_BYTES.len())];
                }
                "byte"
            }
            2 => {
                let n = self.rng.skewed(16);
                let bytes: Vec<u8> = (0..n).map(|_| self.rng.next_u64() as u8).collect();
                let at = self.rng.below(data.len() + 1);
                data.splice(at..at, bytes);
                "insert-bytes"
            }
            3 | 4 => {
                let tok = DICT[self.rng.below(DICT.len())];
                let at = if self.rng.chance(50) {
                    self.line_start(data)
                } else {
                    self.rng.below(data.len() + 1)
                };
                data.splice(at..at, tok.iter().copied());
                "insert-token"
            }
            5 => {
                if !data.is_empty() {
                    let at = self.rng.below(data.len());
                    let len = self.rng.skewed((data.len() - at).min(4096));
                    data.drain(at..at + len);
                }
                "delete"
            }
            6 => {
                if !data.is_empty() {
                    let at = self.rng.below(data.len());
                    let len = self.rng.skewed((data.len() - at).min(8192));
                    let chunk = data[at..at + len].to_vec();
                    let to = self.rng.below(data.len() + 1);
                    data.splice(to..to, chunk);
                }
                "dup-range"
            }
            7 => {
                if !data.is_empty() {
                    let at = self.rng.below(data.len());
                    let len = self.rng.skewed((data.len() - at).min(64));
                    let times = self.rng.skewed(4000);
                    let chunk = data[at..at + len].repeat(times);
                    data.splice(at..at, chunk);
                }
                "repeat-range"
            }
            8 => {
                let other = &self.seeds[self.rng.below(self.seeds.len())].data;
                let cut = self.rng.below(data.len() + 1);
                let from = self.rng.below(other.len() + 1);
                let take = (other.len() - from).min(MAX_WINDOW / 4);
                data.truncate(cut);
                data.extend_from_slice(&other[from..from + take]);
                "splice"
            }
            9 => {
                let other = &self.seeds[self.rng.below(self.seeds.len())].data;
                if !other.is_empty() {
                    let from = self.rng.below(other.len());
                    let len = self.rng.skewed((other.len() - from).min(16384));
                    let at = self.line_start(data);
                    data.splice(at..at, other[from..from + len].iter().copied());
                }
                "insert-chunk"
            }
            10 => {
                let end = header_end(data);
                if end > 0 {
                    let at = self.rng.below(end);
                    let start = data[..at]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |i| i + 1);
                    let stop = data[at..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(data.len(), |i| at + i + 1);
                    let line = data[start..stop].to_vec();
                    let times = self
                        .rng
                        .skewed(2000)
                        .min(MAX_MUTANT_LEN / line.len().max(1));
                    data.splice(start..start, line.repeat(times));
                }
                "repeat-header"
            }
            11 => {
                let boundary = find_boundary(data).unwrap_or_else(|| b"fz".to_vec());
                let mut line = b"\r\n--".to_vec();
                line.extend_from_slice(&boundary);
                if self.rng.chance(30) {
                    line.extend_from_slice(b"--");
                }
                line.extend_from_slice(b"\r\n");
                if self.rng.chance(50) {
                    line.extend_from_slice(b"Content-Type: text/plain\r\n\r\n");
                }
                let at = self.line_start(data);
                data.splice(at..at, line);
                "mime-boundary"
            }
            12 => {
                let at = self.line_start(data);
                data.splice(
                    at..at,
                    b"Content-Type: message/rfc822\r\n\r\n".iter().copied(),
                );
                "rfc822"
            }
            13 => {
                let n = self.rng.below(1000);
                let at = self.line_start(data);
                let text =
                    format!("Content-Type: multipart/mixed; boundary=\"fz{n}\"\r\n\r\n--fz{n}\r\n");
                data.splice(at..at, text.into_bytes());
                "multipart"
            }
            14 => {
                let at = self.rng.below(data.len() + 1);
                data.truncate(at);
                "truncate"
            }
            15 => {
                let mode = self.rng.below(3);
                let mut out = Vec::with_capacity(data.len() + data.len() / 16);
                let mut prev = 0u8;
                for &b in data.iter() {
                    match (mode, b) {
                        (0, b'\n') if prev != b'\r' => out.extend_from_slice(b"\r\n"),
                        (1, b'\r') => {}
                        (2, b'\n') => out.push(b'\r'),
                        _ => out.push(b),
                    }
                    prev = b;
                }
                *data = out;
                "line-endings"
            }
            16 => {
                let mut block = String::new();
                for _ in 0..self.rng.skewed(6) {
                    block.push_str(self.rng.pick(COMMAND_LINES));
                    block.push_str(if self.rng.chance(80) { "\r\n" } else { "\n" });
                }
                let at = header_end(data);
                let at = if at == 0 { data.len() } else { at };
                data.splice(at..at, block.into_bytes());
                "commands"
            }
            17 => {
                let name = self.rng.pick(&[
                    "Subject",
                    "From",
                    "Reply-To",
                    "Authentication-Results",
                    "References",
                    "In-Reply-To",
                    "Message-ID",
                    "To",
                    "Content-Type",
                    "Return-Path",
                    "X-Auto-Response-Suppress",
                    "Received",
                ]);
                let tok = DICT[self.rng.below(DICT.len())];
                let times = self.rng.skewed(20_000);
                let mut line = format!("{name}: ").into_bytes();
                line.extend_from_slice(&tok.repeat(times));
                line.extend_from_slice(b"\r\n");
                let at = if self.rng.chance(50) {
                    0
                } else {
                    self.line_start(data)
                };
                data.splice(at..at, line);
                "long-header"
            }
            18 => {
                let charset = self.rng.pick(&[
                    "utf-8",
                    "iso-8859-1",
                    "utf-7",
                    "utf-16",
                    "utf-16le",
                    "utf-32",
                    "iso-2022-jp",
                    "shift_jis",
                    "gb18030",
                    "big5",
                    "koi8-r",
                    "windows-1252",
                    "x-unknown",
                    "",
                    "utf-8*en",
                ]);
                let enc = if self.rng.chance(50) { "B" } else { "Q" };
                let payload: Vec<u8> = (0..self.rng.skewed(40))
                    .map(|_| {
                        let c = self.rng.next_u64() as u8;
                        if self.rng.chance(80) {
                            b"ABCDabcd0123+/=_?"[usize::from(c) % 17]
                        } else {
                            c
                        }
                    })
                    .collect();
                let mut word = format!("=?{charset}?{enc}?").into_bytes();
                word.extend_from_slice(&payload);
                word.extend_from_slice(b"?=");
                let end = header_end(data).max(1).min(data.len());
                let at = self.rng.below(end + 1);
                data.splice(at..at, word);
                "encoded-word"
            }
            19 => {
                let mut head = b"From: Alice <alice@example.org>\r\n".to_vec();
                let ar: &str = self.rng.pick(&[
                    "mx.example.org; dkim=pass header.d=example.org",
                    "mx.example.org; spf=pass smtp.mailfrom=alice@example.org",
                    "mx.example.org; auth=pass smtp.auth=alice@example.org",
                    "MX.example.org (c); dkim=pass (good) header.i=@example.org",
                    "evil.example; dkim=pass header.d=example.org",
                    "mx.example.org; dkim=fail header.d=example.org",
                ]);
                head.extend_from_slice(format!("Authentication-Results: {ar}\r\n").as_bytes());
                data.splice(0..0, head);
                "handler"
            }
            20 => {
                let n = self.rng.below(1000);
                let mut out = format!(
                    "From: w@example.net\r\nContent-Type: multipart/mixed; boundary=\"w{n}\"\r\n\r\n--w{n}\r\nContent-Type: message/rfc822\r\n\r\n"
                )
                .into_bytes();
                out.extend_from_slice(data);
                out.extend_from_slice(format!("\r\n--w{n}--\r\n").as_bytes());
                *data = out;
                "wrap-rfc822"
            }
            _ => {
                // Swap two ranges' order: moves fields across the header/body
                // border.
                if data.len() > 2 {
                    let a = self.rng.below(data.len() - 1);
                    let b = a + 1 + self.rng.below(data.len() - a - 1);
                    data[a..=b].rotate_left(1 + self.rng.below(b - a));
                }
                "rotate"
            }
        };
        self.ops.push(name);
    }

    /// A position at the start of a line (or 0).
    fn line_start(&mut self, data: &[u8]) -> usize {
        if data.is_empty() {
            return 0;
        }
        let at = self.rng.below(data.len());
        data[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(0, |i| at + i + 1)
    }
}

/// Where the body starts (after the first empty line), 0 when not found.
fn header_end(data: &[u8]) -> usize {
    let scan = &data[..data.len().min(MAX_WINDOW)];
    let crlf = scan
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = scan.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(0),
    }
}

/// The first `boundary=` value in `data`.
fn find_boundary(data: &[u8]) -> Option<Vec<u8>> {
    let scan = &data[..data.len().min(MAX_WINDOW)];
    let key = b"boundary=";
    let at = scan
        .windows(key.len())
        .position(|w| w.eq_ignore_ascii_case(key))?
        + key.len();
    let rest = &scan[at..];
    let value: Vec<u8> = if rest.first() == Some(&b'"') {
        rest[1..]
            .iter()
            .take_while(|&&b| b != b'"')
            .copied()
            .collect()
    } else {
        rest.iter()
            .take_while(|&&b| !b" \t\r\n;".contains(&b))
            .copied()
            .collect()
    };
    (!value.is_empty() && value.len() < 200).then_some(value)
}
