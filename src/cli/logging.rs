//! Where log lines go (stderr: text, with syslog priority prefixes under
//! systemd, or JSON), and the cap on what other crates may log at all.

use super::LogFormat;

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

pub(super) fn init(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SECINTAKE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // Under systemd (stderr connected to the journal), each line starts
    // with its syslog priority, so an ERROR is an error in the journal,
    // not info (issue 12; sd-daemon(3) prefixes).
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let fmt = match format {
        LogFormat::Text if journal => fmt
            .with_ansi(false)
            .event_format(JournalPriority(tracing_subscriber::fmt::format()))
            .boxed(),
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(fmt.with_filter(tracing_subscriber::filter::filter_fn(within_log_cap)))
        .with(filter)
        .init();
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
