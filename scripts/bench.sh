#!/usr/bin/env bash
# scripts/bench.sh — THE benchmark command: installs what the bench needs,
# then runs `cargo bench --bench intake` (benches/intake.rs).
#
# Why: the bench drives the release daemon against the real private
# Dovecot + Postfix of tests/mailstack/mailstack.sh, so like scripts/test.sh
# it first makes sure those packages are present (scripts/install-deps.sh).
# Run as root (Postfix refuses to run otherwise). Takes a few minutes and
# prints acknowledgement latency, backlog throughput and memory figures with
# PASS/FAIL per target.
#
# Environment knobs:
#   SECINTAKE_SKIP_APT=1   never touch apt
#   BENCH_KEEP=1           keep each phase's daemon log and state file
#   MAILSTACK_KEEP=1       keep the mail stacks (see tests/e2e/common/mod.rs)
# Extra arguments go to the bench binary (after --bench).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${SECINTAKE_SKIP_APT:-0}" != 1 ]; then
    echo "==> system packages"
    bash scripts/install-deps.sh
fi

echo "==> cargo bench --bench intake"
exec cargo bench --bench intake -- "$@"
