#!/usr/bin/env bash
# scripts/test.sh — THE test command: installs what the tests need, then runs
# formatting, lint and the whole test suite.
#
# Why: the integration tests run against a real Dovecot + Postfix started by
# tests/mailstack/mailstack.sh, so a fresh Debian 12 machine first needs those
# packages (scripts/install-deps.sh).  Idempotent: apt is skipped when
# everything is already installed.
# Run as root (Postfix refuses to run otherwise; CI runs as root).
#
# Environment knobs:
#   SECINTAKE_SKIP_APT=1     never touch apt (npm packages are still installed)
#   SECINTAKE_STEPS="fmt clippy test package"   which steps to run (default: all four;
#                            package: builds the .deb, then installs, checks and removes it)
#   SECINTAKE_TEST_ARGS="..."           arguments for `cargo test` (default: --workspace --no-fail-fast --lib --bins --tests; the benchmark runs via scripts/bench.sh)
#   RUST_TEST_THREADS=N      tests run at once (default here: 4, see below)
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${SECINTAKE_STEPS:-fmt clippy test package}
TEST_ARGS=${SECINTAKE_TEST_ARGS:---workspace --no-fail-fast --lib --bins --tests}
# The integration tests are one binary (tests/e2e) and mostly wait for
# mail and timers, so running 4 at once on the 2 cores more than halves
# their time (libtest's default is one per core). More than 4 left the
# cores busy and gave the time-boxed fuzz test a third of its inputs.
export RUST_TEST_THREADS=${RUST_TEST_THREADS:-4}
# A build from clean (CI) gains nothing from incremental compilation and
# pays for its bookkeeping: building this workspace's own crates and tests
# took 18.7 s with it and 14.5 s without (2 cores). Set it to 1 to keep it.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

step() { echo; echo "==> $*"; }

# With SECINTAKE_SKIP_APT=1 install-deps.sh leaves apt alone but still
# installs the OAuth2 test server's npm packages when they are missing.
step "test dependencies"
bash scripts/install-deps.sh

# rustfmt and clippy are rustup components; try to add them if missing.
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt || true
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy || true

for s in $STEPS; do
    case "$s" in
        fmt) step "cargo fmt --check"; cargo fmt --all -- --check ;;
        clippy) step "cargo clippy"; cargo clippy --workspace --all-targets -- -D warnings ;;
        test) step "cargo test $TEST_ARGS"
            # shellcheck disable=SC2086
            cargo test $TEST_ARGS ;;
        package) step "package (.deb)"
            # cargo-deb 3.8 needs Rust 1.85 (the machine has 1.95).
            cargo deb --version >/dev/null 2>&1 || cargo install cargo-deb --locked --version 3.8.0
            bash scripts/package.sh
            bash scripts/package-test.sh ;;
        *) echo "unknown step $s" >&2; exit 2 ;;
    esac
done
echo; echo "==> all steps passed: $STEPS"
