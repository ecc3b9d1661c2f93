#!/usr/bin/env bash
# mailstack.sh — a real, private mail system on loopback for secintake's tests.
#
# Why: secintake talks IMAP and SMTP to real servers; mocks would hide the
# behaviour that matters (IDLE timing, STARTTLS, SASL, DSN bounces, vacation
# auto-replies, outages).  This script runs a private Dovecot (IMAP, IMAPS,
# LMTP, Pigeonhole sieve) and a private Postfix (inbound SMTP, submission with
# STARTTLS + SASL, implicit-TLS submission) entirely under one state folder,
# on high loopback ports, so several stacks can run at once and nothing
# touches the machine's own mail setup.  Mail for any domain other than the
# test domains is bounced locally (default_transport = error): nothing leaves.
#
# Usage (Postfix needs root):
#   mailstack.sh start DIR [BASEPORT]   create + start everything, wait for ports
#   mailstack.sh stop DIR               stop everything (DIR is kept)
#   mailstack.sh stop-smtp DIR | start-smtp DIR     Postfix only (outage tests)
#   mailstack.sh stop-imap DIR | start-imap DIR     Dovecot only (IMAP + LMTP)
#   mailstack.sh env DIR                print KEY=VALUE lines (also in DIR/env)
#   mailstack.sh vacation DIR USER [SUBJECT]   install a sieve vacation script
#
# DIR must be short (unix socket paths are limited) and it and every parent
# must be searchable by the mail users (dovenull, postfix): e.g. /tmp/ms-XXXX
# with mode 0755.  Ports are BASEPORT + offset:
#   +0 IMAP (STARTTLS offered)  +1 IMAPS  +2 LMTP
#   +3 SMTP inbound (no auth, test domains only)
#   +4 submission (STARTTLS required, SASL)  +5 smtps (implicit TLS, SASL)
# Every user at example.org / example.net exists; every password is "secret".
# Plus-addressing: security+x@example.org lands in security@example.org.

set -euo pipefail

DOMAINS="example.org example.net"
PASSWORD="secret"
PORT_RESERVATIONS=/tmp/mailstack-ports   # one folder per BASEPORT in use
START_TIMEOUT=20

die() { echo "mailstack: $*" >&2; exit 1; }

usage() {
    sed -n '/^# Usage/,/^# Plus-addressing/p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# ---------------------------------------------------------------- ports ----

port_listening() { # PORT -> 0 when something listens on 127.0.0.1:PORT
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Reserve a block of 10 ports atomically (mkdir), skipping reservations whose
# stack folder is gone and blocks where anything already listens.  The range
# stays below Linux's ephemeral ports so client sockets never squat on them.
reserve_baseport() { # DIR [BASEPORT] -> echoes BASEPORT
    local dir=$1 want=${2:-} base tries=0 owner p busy
    mkdir -p "$PORT_RESERVATIONS"
    chmod 1777 "$PORT_RESERVATIONS" 2>/dev/null || true
    while :; do
        tries=$((tries + 1))
        [ "$tries" -le 200 ] || die "no free port block found"
        if [ -n "$want" ]; then base=$want; else base=$((20000 + (RANDOM % 1200) * 10)); fi
        if ! mkdir "$PORT_RESERVATIONS/$base" 2>/dev/null; then
            owner=$(cat "$PORT_RESERVATIONS/$base/dir" 2>/dev/null || true)
            if [ -n "$owner" ] && [ ! -d "$owner" ]; then
                rm -rf "$PORT_RESERVATIONS/$base"   # stale: its stack is gone
                continue
            fi
            [ -z "$want" ] || die "BASEPORT $want is reserved by ${owner:-another stack}"
            continue
        fi
        echo "$dir" > "$PORT_RESERVATIONS/$base/dir"
        busy=
        for p in 0 1 2 3 4 5; do
            if port_listening $((base + p)); then busy=$((base + p)); break; fi
        done
        if [ -n "$busy" ]; then
            rm -rf "$PORT_RESERVATIONS/$base"
            [ -z "$want" ] || die "port $busy is already in use"
            continue
        fi
        echo "$base"
        return
    done
}

release_baseport() { # DIR
    local base
    base=$(sed -n 's/^MS_BASEPORT=//p' "$1/env" 2>/dev/null || true)
    [ -z "$base" ] || rm -rf "${PORT_RESERVATIONS:?}/$base"
}

load_env() { # DIR -> sets MS_* variables
    [ -f "$1/env" ] || die "$1 is not a mail stack (no $1/env)"
    # shellcheck disable=SC1091
    . "$1/env"
}

# ------------------------------------------------------------ generate ----

make_certs() { # DIR
    local t=$1/tls
    mkdir -p "$t"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -days 3650 -subj "/CN=mailstack test CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$t/ca.key" -out "$t/ca.pem" 2>/dev/null
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=localhost" -keyout "$t/server.key" -out "$t/server.csr" 2>/dev/null
    cat > "$t/server.ext" <<EOF
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
EOF
    openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" \
        -CAcreateserial -days 3650 -extfile "$t/server.ext" -out "$t/server.pem" 2>/dev/null
    chmod 0644 "$t/ca.pem" "$t/server.pem"
    chmod 0600 "$t/ca.key" "$t/server.key"
}

write_dovecot_conf() { # DIR BASE
    local d=$1 b=$2 dh=""
    [ -f /usr/share/dovecot/dh.pem ] && dh="ssl_dh = </usr/share/dovecot/dh.pem"
    cat > "$d/dovecot.conf" <<EOF
# Private Dovecot instance of mailstack.sh (generated; do not edit)
instance_name = mailstack-$b
base_dir = $d/run
state_dir = $d/state
log_path = $d/log/dovecot.log
info_log_path = $d/log/dovecot.log
listen = 127.0.0.1
protocols = imap lmtp
ssl = yes
ssl_cert = <$d/tls/server.pem
ssl_key = <$d/tls/server.key
$dh
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
mail_location = maildir:~/Maildir
recipient_delimiter = +
lmtp_save_to_detail_mailbox = no
submission_host = 127.0.0.1:$((b + 3))
postmaster_address = postmaster@example.org
hostname = mail.example.org

passdb {
  driver = static
  args = password=$PASSWORD
}
userdb {
  driver = static
  args = uid=dovenull gid=dovenull home=$d/home/%d/%n allow_all_users=yes
}

service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $((b + 0))
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $((b + 1))
    ssl = yes
  }
}
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
  inet_listener pop3s {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $((b + 2))
  }
}
service auth {
  unix_listener auth-postfix {
    mode = 0660
    user = postfix
    group = postfix
  }
}

namespace inbox {
  inbox = yes
  separator = /
  mailbox Drafts {
    special_use = \\Drafts
    auto = subscribe
  }
  mailbox Junk {
    special_use = \\Junk
    auto = subscribe
  }
  mailbox Sent {
    special_use = \\Sent
    auto = subscribe
  }
  mailbox Trash {
    special_use = \\Trash
    auto = subscribe
  }
}

protocol lmtp {
  mail_plugins = \$mail_plugins sieve
}
plugin {
  sieve = file:~/sieve;active=~/.dovecot.sieve
}
EOF
}

write_postfix_conf() { # DIR BASE
    local d=$1 b=$2 pf=$1/postfix
    mkdir -p "$pf" "$d/spool" "$d/pfdata"
    chown postfix "$d/pfdata"
    cat > "$pf/main.cf" <<EOF
# Private Postfix instance of mailstack.sh (generated; do not edit)
compatibility_level = 3.6
queue_directory = $d/spool
data_directory = $d/pfdata
meta_directory = /etc/postfix
maillog_file = $d/log/postfix.log
maillog_file_prefixes = $d/log
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mail.example.org
mydomain = example.org
myorigin = example.org
mydestination =
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
local_transport = nowhere:local delivery is disabled in mailstack
virtual_alias_domains =
virtual_alias_maps =
virtual_mailbox_domains = $DOMAINS
virtual_transport = lmtp:inet:127.0.0.1:$((b + 2))
default_transport = nowhere:mailstack delivers only to $DOMAINS
relay_transport = nowhere:mailstack delivers only to $DOMAINS
recipient_delimiter = +
biff = no
message_size_limit = 209715200
delay_warning_time = 0
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 5s
smtpd_banner = \$myhostname ESMTP mailstack
smtpd_tls_cert_file = $d/tls/server.pem
smtpd_tls_key_file = $d/tls/server.key
smtpd_tls_security_level = may
smtpd_sasl_type = dovecot
smtpd_sasl_path = $d/run/auth-postfix
smtpd_sasl_auth_enable = no
smtpd_relay_restrictions = permit_sasl_authenticated reject_unauth_destination
smtpd_recipient_restrictions =
EOF
    local sub="-o smtpd_sasl_auth_enable=yes -o smtpd_tls_auth_only=yes"
    sub="$sub -o smtpd_client_restrictions=permit_sasl_authenticated,reject"
    sub="$sub -o smtpd_relay_restrictions=permit_sasl_authenticated,reject"
    cat > "$pf/master.cf" <<EOF
# Private Postfix instance of mailstack.sh (generated; do not edit)
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$((b + 3)) inet n - n - - smtpd
127.0.0.1:$((b + 4)) inet n - n - - smtpd -o syslog_name=postfix/submission -o smtpd_tls_security_level=encrypt $sub
127.0.0.1:$((b + 5)) inet n - n - - smtpd -o syslog_name=postfix/smtps -o smtpd_tls_wrappermode=yes $sub
pickup     unix  n       -       n       60      1       pickup
cleanup    unix  n       -       n       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
tlsmgr     unix  -       -       n       1000?   1       tlsmgr
rewrite    unix  -       -       n       -       -       trivial-rewrite
bounce     unix  -       -       n       -       0       bounce
defer      unix  -       -       n       -       0       bounce
trace      unix  -       -       n       -       0       bounce
verify     unix  -       -       n       -       1       verify
flush      unix  n       -       n       1000?   0       flush
proxymap   unix  -       -       n       -       -       proxymap
proxywrite unix  -       -       n       -       1       proxymap
smtp       unix  -       -       n       -       -       smtp
relay      unix  -       -       n       -       -       smtp
showq      unix  n       -       n       -       -       showq
error      unix  -       -       n       -       -       error
retry      unix  -       -       n       -       -       error
discard    unix  -       -       n       -       -       discard
# "nowhere" bounces every message with a genuine DSN.  (default_transport =
# error:... would make smtpd reject such recipients at RCPT time instead, and
# the error daemon refuses to run under another service name.)
nowhere    unix  -       n       n       -       -       pipe flags=q user=nobody argv=$pf/nowhere
lmtp       unix  -       -       n       -       -       lmtp
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
postlog    unix-dgram n  -       n       -       1       postlogd
EOF
    cat > "$pf/nowhere" <<'EOF'
#!/bin/sh
echo "mailstack: this test mail system delivers nowhere outside its test domains"
exit 69  # EX_UNAVAILABLE: Postfix bounces the message
EOF
    chmod 0755 "$pf/nowhere"
    # A main.cf younger than a few seconds makes `postfix start` wait ~2.5 s.
    touch -d '-1 min' "$pf/main.cf" "$pf/master.cf"
}

write_env() { # DIR BASE
    local d=$1 b=$2
    cat > "$d/env" <<EOF
MS_DIR=$d
MS_BASEPORT=$b
MS_IMAP_PORT=$((b + 0))
MS_IMAPS_PORT=$((b + 1))
MS_LMTP_PORT=$((b + 2))
MS_SMTP_PORT=$((b + 3))
MS_SUBMISSION_PORT=$((b + 4))
MS_SMTPS_PORT=$((b + 5))
MS_CA_FILE=$d/tls/ca.pem
MS_DOVECOT_CONF=$d/dovecot.conf
MS_POSTFIX_DIR=$d/postfix
MS_PASSWORD=$PASSWORD
EOF
}

# ------------------------------------------------------------ run/stop ----

dovecot_pid() { cat "$1/run/master.pid" 2>/dev/null || true; }
postfix_pid() { head -n1 "$1/spool/pid/master.pid" 2>/dev/null | tr -d ' ' || true; }
# A process counts as gone once it is a zombie: both servers daemonize, and
# PID 1 in some sandboxes reaps orphans only about once a second.
alive() { # PID
    local st
    [ -n "$1" ] || return 1
    st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ $st != Z* ]]
}

start_imap() { # DIR
    alive "$(dovecot_pid "$1")" && return 0
    # The servers daemonize but keep the fds they were started with: detach
    # them from ours, or a caller reading our output would wait forever.
    dovecot -c "$1/dovecot.conf" </dev/null >>"$1/log/start.log" 2>&1 || { show_logs "$1"; die "dovecot failed to start"; }
}

stop_imap() { # DIR
    local pid i
    pid=$(dovecot_pid "$1")
    alive "$pid" || return 0
    kill "$pid" 2>/dev/null || true
    for i in $(seq 100); do alive "$pid" || return 0; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
}

start_smtp() { # DIR
    alive "$(postfix_pid "$1")" && return 0
    postfix -c "$1/postfix" start </dev/null >>"$1/log/start.log" 2>&1 \
        || { show_logs "$1"; die "postfix failed to start"; }
}

stop_smtp() { # DIR
    local pid i
    pid=$(postfix_pid "$1")
    alive "$pid" || return 0
    postfix -c "$1/postfix" stop </dev/null >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
    for i in $(seq 100); do alive "$pid" || return 0; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
}

flush_queue() { # DIR: retry deferred mail now (after an IMAP/LMTP outage)
    alive "$(postfix_pid "$1")" && postfix -c "$1/postfix" flush </dev/null >/dev/null 2>&1 || true
}

show_logs() { # DIR
    local f
    for f in "$1"/log/*.log; do
        [ -f "$f" ] || continue
        echo "---- tail of $f" >&2
        tail -n 30 "$f" >&2
    done
}

wait_ports() { # DIR PORT...
    local d=$1 deadline p
    shift
    deadline=$((SECONDS + START_TIMEOUT))
    for p in "$@"; do
        until port_listening "$p"; do
            if [ "$SECONDS" -ge "$deadline" ]; then
                show_logs "$d"
                die "port $p did not open within ${START_TIMEOUT}s"
            fi
            sleep 0.05
        done
    done
}

cmd_start() { # DIR [BASEPORT]
    local d=$1 base
    [ "$(id -u)" = 0 ] || die "start needs root (Postfix refuses to run otherwise)"
    mkdir -p "$d"
    d=$(cd "$d" && pwd -P)
    [ ! -f "$d/env" ] || die "$d already holds a mail stack; stop it and use a fresh folder"
    [ "${#d}" -le 40 ] || die "$d is too long for unix socket paths (keep it under 40 chars)"
    chmod 0755 "$d"
    base=$(reserve_baseport "$d" "${2:-}")
    mkdir -p "$d/log" "$d/home" "$d/run" "$d/state"
    chown dovenull:dovenull "$d/home"
    make_certs "$d"
    write_dovecot_conf "$d" "$base"
    write_postfix_conf "$d" "$base"
    write_env "$d" "$base"
    start_imap "$d"
    start_smtp "$d"
    wait_ports "$d" $((base + 0)) $((base + 1)) $((base + 2)) $((base + 3)) $((base + 4)) $((base + 5))
    echo "mailstack: up in $d (ports $base-$((base + 5)))" >&2
}

cmd_vacation() { # DIR USER [SUBJECT]
    local d=$1 user=$2 subject=${3:-Out of office} lp dom home
    load_env "$d"
    lp=${user%@*}
    dom=${user#*@}
    [ "$dom" != "$user" ] || dom=""
    home="$d/home/$dom/$lp"
    mkdir -p "$home/sieve"
    cat > "$home/sieve/vacation.sieve" <<EOF
require ["vacation"];
vacation :days 1 :subject "$subject" "I am away; this is an automatic reply.";
EOF
    ln -sf sieve/vacation.sieve "$home/.dovecot.sieve"
    chown -R dovenull:dovenull "$d/home/$dom"
}

main() {
    [ $# -ge 2 ] || usage
    local cmd=$1 dir=$2
    shift 2
    case "$cmd" in
        start) cmd_start "$dir" "$@" ;;
        stop)
            [ -d "$dir" ] || exit 0
            stop_smtp "$dir" &
            stop_imap "$dir"
            wait
            release_baseport "$dir"
            ;;
        stop-smtp) load_env "$dir"; stop_smtp "$dir" ;;
        start-smtp) load_env "$dir"; start_smtp "$dir"
            wait_ports "$dir" "$MS_SMTP_PORT" "$MS_SUBMISSION_PORT" "$MS_SMTPS_PORT" ;;
        stop-imap) load_env "$dir"; stop_imap "$dir" ;;
        start-imap) load_env "$dir"; start_imap "$dir"
            wait_ports "$dir" "$MS_IMAP_PORT" "$MS_IMAPS_PORT" "$MS_LMTP_PORT"
            flush_queue "$dir" ;;
        env) load_env "$dir"; grep '^MS_' "$dir/env" ;;
        vacation) [ $# -ge 1 ] || usage; cmd_vacation "$dir" "$@" ;;
        *) usage ;;
    esac
}

main "$@"
