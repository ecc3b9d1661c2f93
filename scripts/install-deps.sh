#!/usr/bin/env bash
# scripts/install-deps.sh — installs the Debian packages the mail test stack
# (tests/mailstack/mailstack.sh) and the quick start need, if any is missing.
# Used by scripts/test.sh and scripts/quickstart.sh; safe to run repeatedly.
# Needs root only when something is missing.
set -euo pipefail

# opendkim + opendkim-tools (opendkim-genkey): the stack's DKIM signer and
# verifier.  libnet-ssleay-perl: lets swaks speak TLS (--tls, --tlsc) to the
# submission ports when checking the stack by hand.  python3-jsonschema:
# tests/e2e/osv.rs validates `cases export --osv` against the vendored OSV
# schema with /usr/bin/python3 and it.  gnupg: the reporters' and handlers'
# OpenPGP tool in tests/e2e/pgp.rs (secintake itself never runs gpg).
# dnsmasq-base: the tests' DNS server for DKIM keys (handler_auth dkim).
PACKAGES="dovecot-imapd dovecot-lmtpd dovecot-sieve postfix opendkim opendkim-tools swaks libnet-ssleay-perl s-nail openssl sqlite3 ca-certificates procps python3-jsonschema gnupg dnsmasq-base"

missing=()
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all packages present"
    exit 0
fi
[ "$(id -u)" = 0 ] || { echo "install-deps: need root to install: ${missing[*]}" >&2; exit 1; }
# Preseed Postfix so apt asks nothing. Installing starts no system mail
# service that we use: the tests and the quick start run private instances.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
