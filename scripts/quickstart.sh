#!/usr/bin/env bash
# scripts/quickstart.sh — one command brings secintake up end to end on this
# machine, against a private mail system, and shows it working.
#
#   scripts/quickstart.sh        install packages, start a mail stack, build,
#                                start the daemon, mail it a report, show the
#                                acknowledgement and the case
#   scripts/quickstart.sh stop   stop the daemon and the mail stack
#
# Why: a new contributor (or a reviewer) should see the whole loop — report
# in over SMTP, case recorded, acknowledgement out — without any real mail
# account.  Everything lives in .mailstack/ (git-ignored): the demo config,
# the SQLite state, the daemon's log.  The mail servers' own state goes in
# .mailstack/stack when that path is short and reachable by the mail users,
# otherwise in a short folder under /tmp (recorded in .mailstack/stackdir).
# Needs root (Postfix refuses to run otherwise) on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd -P)
QS=$ROOT/.mailstack
MAILSTACK=$ROOT/tests/mailstack/mailstack.sh
BIN=$ROOT/target/release/secintake
CFG=$QS/secintake.toml
LOG=$QS/secintake.log
PIDFILE=$QS/secintake.pid
MAILBOX=security@example.org
REPORTER=reporter@example.net

say() { echo "==> $*"; }

stack_dir() { cat "$QS/stackdir" 2>/dev/null || true; }

# Every folder on the way must be searchable by dovenull/postfix, and the
# path short enough for unix sockets (mailstack.sh's limit).
usable_for_stack() { # PATH
    local p=$1
    [ "${#p}" -le 40 ] || return 1
    p=$(dirname "$p")
    while [ "$p" != / ]; do
        (( 8#$(stat -c %a "$p") & 1 )) || return 1
        p=$(dirname "$p")
    done
}

stop_all() {
    local pid i dir
    pid=$(cat "$PIDFILE" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        say "stopping secintake (pid $pid)"
        kill "$pid"
        for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$PIDFILE"
    dir=$(stack_dir)
    if [ -n "$dir" ] && [ -d "$dir" ]; then
        say "stopping the mail stack in $dir"
        "$MAILSTACK" stop "$dir"
        rm -rf "$dir"
    fi
    rm -f "$QS/stackdir"
}

if [ "${1:-}" = stop ]; then
    stop_all
    exit 0
fi
[ $# -eq 0 ] || { echo "usage: $0 [stop]" >&2; exit 2; }

# Start from a clean slate (re-running the quick start restarts everything).
stop_all
mkdir -p "$QS"
rm -f "$QS"/secintake.db* "$LOG"

say "system packages"
# The tests' OAuth2 server (npm) is not part of the quick start.
SECINTAKE_SKIP_NPM=1 bash scripts/install-deps.sh

say "mail stack"
if usable_for_stack "$QS/stack"; then
    dir=$QS/stack
    chmod 0755 "$QS"
    rm -rf "$dir"
else
    dir=$(mktemp -d /tmp/ms-XXXXXX)
fi
echo "$dir" > "$QS/stackdir"
"$MAILSTACK" start "$dir"
# shellcheck disable=SC1091
. "$dir/env"

say "cargo build --release"
cargo build --release

say "demo config $CFG"
cat > "$CFG" <<EOF
# Demo configuration written by scripts/quickstart.sh for the private mail
# stack in $dir. See config/secintake.example.toml for every key.
[mailbox]
address = "$MAILBOX"
project = "Example"
policy_url = "https://example.org/security"

[imap]
host = "127.0.0.1"
port = $MS_IMAP_PORT
tls = "starttls"
ca_file = "$MS_CA_FILE"
username = "$MAILBOX"
password = "$MS_PASSWORD"
folder = "INBOX"
idle = true
poll_interval = "60s"
after = "seen"

[smtp]
host = "127.0.0.1"
port = $MS_SUBMISSION_PORT
tls = "starttls"
ca_file = "$MS_CA_FILE"
username = "$MAILBOX"
password = "$MS_PASSWORD"

[storage]
path = "$QS/secintake.db"

[sla]
acknowledge = "48h"
respond = "72h"

[[handlers]]
name = "Alice"
email = "alice@example.org"

[limits]
acks_per_sender_per_day = 5
max_message_size = "50MiB"
alert_after = "15m"
EOF
chmod 0600 "$CFG"

say "starting secintake (log: $LOG)"
setsid "$BIN" --config "$CFG" run </dev/null >>"$LOG" 2>&1 &
echo $! > "$PIDFILE"
sleep 1
if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "secintake exited at once; its log:" >&2
    tail -n 30 "$LOG" >&2
    exit 1
fi

say "mailing a sample report from $REPORTER to $MAILBOX"
swaks --silent 2 --server "127.0.0.1:$MS_SMTP_PORT" \
    --from "$REPORTER" --to "$MAILBOX" \
    --header "Subject: Heap overflow in the config parser" \
    --body "Hello,

parsing a config file with a 70000-character key overflows a stack buffer
in parse_key() (src/parser.c:412). A proof of concept is below; it crashes
release 2.4.1 on x86_64.

    printf 'k%.0s' \$(seq 70000) > poc.conf && example --config poc.conf

Please credit \"R. Porter\" in the advisory.

-- 
R. Porter"

say "waiting up to 30 s for the acknowledgement in $REPORTER's INBOX"
count() {
    doveadm -c "$MS_DOVECOT_CONF" -f flow mailbox status -u "$REPORTER" messages INBOX 2>/dev/null \
        | sed -n 's/.*messages=\([0-9]*\).*/\1/p'
}
deadline=$((SECONDS + 30))
until [ "$(count)" -gt 0 ] 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "no acknowledgement after 30 s; the daemon's log:" >&2
        tail -n 40 "$LOG" >&2
        exit 1
    fi
    sleep 0.5
done

say "secintake cases list"
"$BIN" --config "$CFG" cases list

say "the acknowledgement's headers"
doveadm -c "$MS_DOVECOT_CONF" fetch -u "$REPORTER" hdr mailbox INBOX all | sed 's/^hdr:$//'

cat <<EOF

secintake is running (pid $(cat "$PIDFILE"), log $LOG).
Try:  $BIN --config $CFG cases list
      swaks --server 127.0.0.1:$MS_SMTP_PORT --from someone@example.net --to $MAILBOX
Mail clients: IMAP 127.0.0.1:$MS_IMAP_PORT (STARTTLS) or :$MS_IMAPS_PORT (TLS),
submission :$MS_SUBMISSION_PORT, any user@example.org / @example.net,
password "$MS_PASSWORD", CA $MS_CA_FILE.
Stop: scripts/quickstart.sh stop
EOF
