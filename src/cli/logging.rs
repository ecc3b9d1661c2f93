//! Where log lines go, and the cap on what may be logged at all: the one
//! adapter over tracing-subscriber and tracing-journald.
//!
//! Under systemd stderr is a stream into the journal. When it really is
//! (systemd's check: `JOURNAL_STREAM` names the device and inode of fd 2)
//! events are sent natively instead, one journal entry each with PRIORITY,
//! MESSAGE, TARGET, `SYSLOG_IDENTIFIER=secintake` and the event's fields
//! (`CASE=`, `COMPONENT=`, `ERROR=`), so `journalctl -p err` and
//! `journalctl COMPONENT=imap` work. Otherwise text lines on stderr, each
//! with its syslog priority prefix (`<3>`) while `JOURNAL_STREAM` is set.

use super::LogFormat;
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The one identifier every native entry carries: the binary's name,
/// whatever it was started as (a symlink, a test's path to a build).
const IDENTIFIER: &str = "secintake";

/// Sets up the global subscriber for `format`.
pub(super) fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SECINTAKE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let stream = std::env::var_os("JOURNAL_STREAM");
    let sink = match (format, stream.as_deref()) {
        (LogFormat::Text, Some(value)) => journal(value).unwrap_or_else(|| stderr(format, true)),
        _ => stderr(format, false),
    };
    // The cap filters the sink itself; SECINTAKE_LOG is the global filter
    // (see `within_log_cap` for why they are two).
    tracing_subscriber::registry()
        .with(sink.with_filter(tracing_subscriber::filter::filter_fn(within_log_cap)))
        .with(filter)
        .init();
}

/// What `main` puts before its last line, the error that ends the
/// command: `<3>` while stderr may be the journal. Not a tracing event,
/// even when events go to the journal natively: `SECINTAKE_LOG=off` would
/// drop that, and this line must always be seen. stderr is then the
/// journal's stream, which reads the prefix as PRIORITY=3.
pub(super) fn error_line_prefix() -> &'static str {
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        "<3>"
    } else {
        ""
    }
}

type Sink = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

/// Native journal entries, when `stream` (JOURNAL_STREAM) is stderr and
/// journald's socket answers; `None` sends the caller back to stderr.
fn journal(stream: &OsStr) -> Option<Sink> {
    if !stderr_is(stream) {
        return None;
    }
    // Sends an empty datagram to /run/systemd/journal/socket: an error
    // when no journald listens there (another mount namespace, a
    // container without it).
    let layer = tracing_journald::layer().ok()?;
    // The crate's default puts info at NOTICE and debug at INFO; these
    // are the priorities the `<N>` prefixes say, and what `journalctl -p
    // info` is expected to show.
    let priorities = tracing_journald::PriorityMappings {
        error: tracing_journald::Priority::Error,
        warn: tracing_journald::Priority::Warning,
        info: tracing_journald::Priority::Informational,
        debug: tracing_journald::Priority::Debug,
        trace: tracing_journald::Priority::Debug,
    };
    // No `F_` before field names: `journalctl CASE=SEC-2026-0007`. An
    // event field thus must not be named like a field the layer writes
    // itself (priority, target, syslog_identifier, code_file, code_line;
    // STYLE.md); leading underscores are dropped, so no event can forge a
    // trusted `_PID=`.
    Some(
        layer
            .with_priority_mappings(priorities)
            .with_field_prefix(None)
            .with_syslog_identifier(IDENTIFIER.to_owned())
            .boxed(),
    )
}

/// Whether `stream`, JOURNAL_STREAM's `<device>:<inode>`, is fd 2 now:
/// systemd sets it for the service's own stderr, and a child whose stderr
/// was redirected (to a file, a pipe) inherits the variable all the same.
fn stderr_is(stream: &OsStr) -> bool {
    use std::os::fd::AsFd;
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(meta) => names(stream, &meta),
        Err(_) => false,
    }
}

/// Whether JOURNAL_STREAM's value names the file `meta` describes.
fn names(stream: &OsStr, meta: &std::fs::Metadata) -> bool {
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// Lines on stderr, JSON or text; `prefixed`: stderr may be the
/// journal's stream (issue 12; sd-daemon(3) prefixes), so each text line
/// carries its priority, without colour.
fn stderr(format: LogFormat, prefixed: bool) -> Sink {
    use std::io::IsTerminal;
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(!prefixed && std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => layer.json().boxed(),
        LogFormat::Text if prefixed => layer
            .event_format(JournalPriority(tracing_subscriber::fmt::format()))
            .boxed(),
        LogFormat::Text => layer.boxed(),
    }
}

/// Whether an event may be logged whatever `SECINTAKE_LOG` says: other
/// crates only up to info. Their debug and trace output carries what they
/// see on the wire (async-imap logs `LOGIN "user" "password"` and whole
/// messages at trace), and a per-target directive such as
/// `async_imap::imap_stream=trace` is more specific than any cap added to
/// the filter, so the cap is a separate filter the directive cannot reach.
fn within_log_cap(meta: &tracing::Metadata<'_>) -> bool {
    let ours = meta.target() == "secintake" || meta.target().starts_with("secintake::");
    ours || *meta.level() <= tracing::Level::INFO
}

/// Prefixes each log line with its syslog priority (`<3>` error, `<4>`
/// warning, `<6>` info, `<7>` debug), which journald reads from a
/// service's stderr.
struct JournalPriority<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for JournalPriority<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_name_the_very_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stderr");
        std::fs::write(&path, "").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let value = format!("{}:{}", meta.dev(), meta.ino());
        assert!(names(OsStr::new(&value), &meta));
        let other = format!("{}:{}", meta.dev(), meta.ino() + 1);
        assert!(!names(OsStr::new(&other), &meta));
        let other = format!("{}:{}", meta.dev() + 1, meta.ino());
        assert!(!names(OsStr::new(&other), &meta));
        for bad in ["", "8", ":", "8:", ":12345", "x:y", " 8:12345", "8:12345:1"] {
            assert!(!names(OsStr::new(bad), &meta), "{bad:?}");
        }
    }
}
