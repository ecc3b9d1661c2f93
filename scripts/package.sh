#!/usr/bin/env bash
# scripts/package.sh — builds the Debian package target/debian/secintake_*.deb:
# a release build, then the man pages and shell completions made from the
# clap definition (`secintake generate`), the systemd unit with the
# package's binary path, and `cargo deb --no-build` (stripped binary; the
# assets are listed in Cargo.toml, [package.metadata.deb]).
# Needs cargo-deb (`cargo install cargo-deb --locked`; scripts/test.sh
# installs it when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
rm -rf target/package
mkdir -p target/package
target/release/secintake generate man target/package/man
target/release/secintake generate completions target/package/completions
# The shipped unit names /usr/local/bin (a hand install); the package's
# binary is /usr/bin/secintake.
sed 's#/usr/local/bin/secintake#/usr/bin/secintake#g' systemd/secintake.service \
    > target/package/secintake.service
cargo deb --no-build --locked --strip
ls -1 target/debian/secintake_*.deb
