#!/usr/bin/env bash
# scripts/install-deps.sh — installs the Debian packages the mail test stack
# (tests/mailstack/mailstack.sh) and the quick start need, if any is missing.
# Used by scripts/test.sh and scripts/quickstart.sh; safe to run repeatedly.
# Needs root only when a Debian package is missing.  Also installs the npm
# packages of the tests' OAuth2 server (npm ci; needs node and npm, which it
# checks but does not install).  SECINTAKE_SKIP_APT=1 skips the Debian part,
# SECINTAKE_SKIP_NPM=1 the npm part (the quick start needs no OAuth2 server).
set -euo pipefail

# opendkim + opendkim-tools (opendkim-genkey): the stack's DKIM signer and
# verifier.  libnet-ssleay-perl: lets swaks speak TLS (--tls, --tlsc) to the
# submission ports when checking the stack by hand.  python3-jsonschema:
# tests/e2e/osv.rs validates `cases export --osv` against the vendored OSV
# schema with /usr/bin/python3 and it.  gnupg: the reporters' and handlers'
# OpenPGP tool in tests/e2e/pgp.rs (secintake itself never runs gpg).
# dnsmasq-base: the tests' DNS server for DKIM keys (handler_auth dkim).
# python3-dkim + python3-authres: dkimpy's arcsign, the ARC sealer of
# tests/e2e/arc.rs (it reads the Authentication-Results it seals with authres).
# python3-prometheus-client: its OpenMetrics parser checks what
# `secintake metrics` and the metrics endpoint print (tests/e2e/metrics.rs).
# systemd: systemd-journald, systemd-cat and journalctl, a private journal
# the daemon logs into natively (tests/e2e/systemd.rs; it runs in a mount
# namespace made with unshare and mount, which every Debian has; nothing
# of it runs as a service).
PACKAGES="dovecot-imapd dovecot-lmtpd dovecot-sieve postfix opendkim opendkim-tools swaks libnet-ssleay-perl s-nail openssl sqlite3 ca-certificates procps python3-jsonschema gnupg dnsmasq-base python3-dkim python3-authres python3-prometheus-client systemd"

# The OAuth2 token server of the tests (tests/mailstack/oauth2: Node.js +
# oidc-provider from npm, pinned by its package-lock.json).  Node.js 20+ and
# npm come with the machine (CI has them preinstalled); Debian's own nodejs
# is never installed over them.
install_node_packages() {
    local dir=tests/mailstack/oauth2 major
    command -v node >/dev/null 2>&1 || {
        echo "install-deps: node (Node.js 20 or later) is missing: the tests' OAuth2 server needs it" >&2
        exit 1
    }
    major=$(node -p 'process.versions.node.split(".")[0]')
    [ "$major" -ge 20 ] || {
        echo "install-deps: Node.js $(node --version) is too old: the tests' OAuth2 server needs 20 or later" >&2
        exit 1
    }
    command -v npm >/dev/null 2>&1 || {
        echo "install-deps: npm is missing: it installs the tests' OAuth2 server ($dir)" >&2
        exit 1
    }
    # npm ci writes node_modules/.package-lock.json last: when it is missing
    # or older than the lock file, (re)install exactly what the lock names.
    if [ ! -f "$dir/node_modules/.package-lock.json" ] \
        || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        echo "install-deps: npm ci in $dir"
        npm ci --prefix "$dir" --no-audit --no-fund
    else
        echo "install-deps: npm packages present ($dir)"
    fi
}

install_debian_packages() {
    local missing=() p
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        echo "install-deps: all packages present"
        return 0
    fi
    [ "$(id -u)" = 0 ] || { echo "install-deps: need root to install: ${missing[*]}" >&2; exit 1; }
    # Preseed Postfix so apt asks nothing. Installing starts no system mail
    # service that we use: the tests and the quick start run private instances.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
}

cd "$(dirname "$0")/.."
if [ "${SECINTAKE_SKIP_APT:-0}" != 1 ]; then
    install_debian_packages
fi
if [ "${SECINTAKE_SKIP_NPM:-0}" != 1 ]; then
    install_node_packages
fi
