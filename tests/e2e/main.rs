//! The integration tests: one test binary, one module per area.
//!
//! Why one binary: every file directly under `tests/` is a test target of
//! its own, compiled with its own copy of the helpers, linked against the
//! crate and all its dependencies, and run after the one before it. One
//! binary is compiled and linked once, shares one copy of the helpers in
//! [`common`], and runs all its tests from one pool of test threads, so no
//! file's slowest test keeps the others waiting.
//!
//! Test names carry the module: `cargo test --test e2e intake::` runs the
//! intake tests, `cargo test --test e2e -- --ignored fuzz::fuzz_long` the
//! long fuzz run.
//!
//! All tests share one process. So they must not change process-wide
//! state: no `std::env::set_var` (pass environment to child processes
//! with `Command::env`), no `set_current_dir`, no `umask`, and a panic hook
//! only through [`common::panic_hook`].
//!
//! A new area is a new file `tests/e2e/<area>.rs` plus a `mod <area>;`
//! line here; inside it, `use crate::common;` replaces `mod common;`, and
//! a test world of its own becomes [`common::world::World`] with the
//! area's config tweak (see `osv.rs`). Methods an area adds to `World` in
//! its own `impl World` block share one namespace with every other
//! area's: the compiler refuses a name used twice.

// Tests may unwrap and expect: a panic is a failed test (STYLE.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod alert_relay;
mod arc;
mod cli_config;
mod config_errors;
mod corpus;
mod deadlines;
mod dkim;
mod fuzz;
mod hostile;
mod intake;
mod integrity;
mod lease;
mod mailstack;
mod metrics;
mod oauth2;
mod oauth2_stack;
mod osv;
mod outage;
mod pgp;
mod records;
mod resilience;
mod storage;
mod systemd;
mod workflow;
