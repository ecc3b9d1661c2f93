#!/usr/bin/env bash
# scripts/test.sh — THE test command: installs what the tests need, then runs
# formatting, lint and the whole test suite.
#
# Why: the integration tests run against a real Dovecot + Postfix started by
# tests/mailstack/mailstack.sh, so a fresh Debian 12 machine first needs those
# packages.  Idempotent: apt is skipped when everything is already installed.
# Run as root (Postfix refuses to run otherwise; CI runs as root).
#
# Environment knobs:
#   SECINTAKE_SKIP_APT=1     never touch apt
#   SECINTAKE_STEPS="fmt clippy test"   which steps to run (default: all three)
#   SECINTAKE_TEST_ARGS="..."           arguments for `cargo test` (default: --all-targets)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES="dovecot-imapd dovecot-lmtpd dovecot-sieve postfix swaks s-nail openssl sqlite3 ca-certificates"
STEPS=${SECINTAKE_STEPS:-fmt clippy test}
TEST_ARGS=${SECINTAKE_TEST_ARGS:---all-targets}

step() { echo; echo "==> $*"; }

install_packages() {
    local missing=() p
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
    done
    [ ${#missing[@]} -gt 0 ] || { echo "all packages present"; return 0; }
    [ "$(id -u)" = 0 ] || { echo "need root to install: ${missing[*]}" >&2; exit 1; }
    # Preseed Postfix so apt asks nothing; installing starts no service here
    # and the tests run private instances anyway.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
}

if [ "${SECINTAKE_SKIP_APT:-0}" != 1 ]; then
    step "system packages"
    install_packages
fi

# rustfmt and clippy are rustup components; try to add them if missing.
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt || true
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy || true

for s in $STEPS; do
    case "$s" in
        fmt) step "cargo fmt --check"; cargo fmt --all -- --check ;;
        clippy) step "cargo clippy"; cargo clippy --all-targets -- -D warnings ;;
        test) step "cargo test $TEST_ARGS"
            # shellcheck disable=SC2086
            cargo test $TEST_ARGS ;;
        *) echo "unknown step $s" >&2; exit 2 ;;
    esac
done
echo; echo "==> all steps passed: $STEPS"
