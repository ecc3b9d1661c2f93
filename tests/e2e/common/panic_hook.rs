//! The one panic hook of the test process.
//!
//! Why: every test runs in one process (tests/e2e/main.rs), and the panic
//! hook is process-wide. Two tests that each `take_hook` and `set_hook`
//! at the same time can lose one of the two hooks (each takes the default
//! and sets its own over it), so a test that watches panics could miss
//! them. Here the hook is set once, and tests add handlers to it.

use std::panic::PanicHookInfo;
use std::sync::{Mutex, Once};

/// A panic handler: sees every panic of every thread first, also panics
/// that a `catch_unwind` catches later. Returns `true` when it has dealt
/// with the panic, so the default hook (which prints it) is skipped. Use
/// thread-locals to tell a test's own panics from other tests'.
pub type Handler = fn(&PanicHookInfo<'_>) -> bool;

static HANDLERS: Mutex<Vec<Handler>> = Mutex::new(Vec::new());

/// Adds `handler` to the process' panic hook (installing the hook the
/// first time). Call it once per handler, e.g. under a `std::sync::Once`:
/// a handler added twice runs twice.
pub fn add(handler: Handler) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Copied out, so a handler's own panic cannot deadlock the list.
            let handlers = HANDLERS.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if !handlers.iter().any(|h| h(info)) {
                previous(info);
            }
        }));
    });
    HANDLERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(handler);
}
