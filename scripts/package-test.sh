#!/usr/bin/env bash
# scripts/package-test.sh — checks the .deb scripts/package.sh built:
# its contents (dpkg-deb --contents), then installs it on this machine
# (dpkg -i; needs root), runs `secintake --version` and `check-config
# --offline` on the shipped example configuration, and removes it again.
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$(ls -1t target/debian/secintake_*.deb | head -n1)
echo "==> $deb"
contents=$(dpkg-deb --contents "$deb")
for want in ./usr/bin/secintake ./etc/secintake/secintake.toml \
    ./lib/systemd/system/secintake.service ./usr/share/man/man1/secintake.1.gz \
    ./usr/share/man/man1/secintake-run.1.gz \
    ./usr/share/bash-completion/completions/secintake \
    ./usr/share/zsh/vendor-completions/_secintake \
    ./usr/share/fish/vendor_completions.d/secintake.fish \
    ./usr/share/secintake/templates/acknowledgement.txt ./usr/share/doc/secintake/README.md; do
    grep -q " $want\$" <<<"$contents" || { echo "package-test: $want missing from $deb" >&2; exit 1; }
done
# (No `| grep -q` on a producer: with pipefail its early exit fails it.)
control=$(dpkg-deb --ctrl-tarfile "$deb" | tar -t)
grep -q "conffiles" <<<"$control" || { echo "package-test: no conffiles" >&2; exit 1; }
info=$(dpkg-deb --info "$deb")
grep -q "Depends:" <<<"$info" || { echo "package-test: no Depends" >&2; exit 1; }
# The binary is stripped: a few MB, not the 85 MB with debug info.
size=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/secintake | wc -c)
[ "$size" -lt $((40 << 20)) ] || { echo "package-test: the binary is $size bytes: not stripped?" >&2; exit 1; }
if dpkg -s secintake >/dev/null 2>&1; then
    echo "package-test: secintake is already installed; not touching it" >&2
    exit 1
fi
dpkg -i "$deb"
trap 'dpkg -P secintake >/dev/null 2>&1 || true' EXIT
/usr/bin/secintake --version
grep -q "/usr/bin/secintake" /lib/systemd/system/secintake.service
secret=$(mktemp)
echo "not-a-real-password" > "$secret"
SECINTAKE_IMAP__PASSWORD_FILE=$secret SECINTAKE_SMTP__PASSWORD_FILE=$secret \
    /usr/bin/secintake --config /etc/secintake/secintake.toml check-config --offline
rm -f "$secret"
man -w secintake >/dev/null 2>&1 || [ -f /usr/share/man/man1/secintake.1 ] || [ -f /usr/share/man/man1/secintake.1.gz ]
dpkg -r secintake
trap - EXIT
[ ! -e /usr/bin/secintake ] || { echo "package-test: /usr/bin/secintake left after dpkg -r" >&2; exit 1; }
# The conffile stays after a removal, as Debian's policy wants; purge it.
[ -e /etc/secintake/secintake.toml ] || { echo "package-test: the conffile went with dpkg -r" >&2; exit 1; }
dpkg -P secintake >/dev/null
echo "==> package ok: $deb"
