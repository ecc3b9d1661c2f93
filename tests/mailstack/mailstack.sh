#!/usr/bin/env bash
# mailstack.sh — a real, private mail system on loopback for secintake's tests.
#
# Why: secintake talks IMAP and SMTP to real servers; mocks would hide the
# behaviour that matters (IDLE timing, STARTTLS, SASL, DSN bounces, vacation
# auto-replies, outages, DKIM results).  This script runs a private Dovecot
# (IMAP, IMAPS, LMTP, Pigeonhole sieve), a private Postfix (inbound SMTP,
# submission with STARTTLS + SASL, implicit-TLS submission) and private
# OpenDKIM milters (DKIM signing of submitted mail; verification, with an
# Authentication-Results header naming authserv-id mail.example.org, of
# inbound and of submitted mail; details below) entirely under one state
# folder, on high loopback ports, so several stacks can run at once and
# nothing touches the machine's own mail setup.  Mail for any domain other
# than the test domains is bounced locally (default_transport = nowhere, a
# pipe that fails): nothing leaves.
#
# Usage (Postfix needs root):
#   mailstack.sh start DIR [BASEPORT]   create + start everything, wait for ports
#   mailstack.sh stop DIR               stop everything (DIR is kept)
#   mailstack.sh stop-smtp DIR | start-smtp DIR     Postfix only (outage tests;
#                      OpenDKIM keeps running; start-smtp restarts it if not)
#   mailstack.sh stop-imap DIR | start-imap DIR     Dovecot only (IMAP + LMTP)
#   mailstack.sh defer-submission DIR | accept-submission DIR
#                      submission answers every sender with 451 (a relay that
#                      is up but refuses for now) | accepts again; each
#                      returns once a new session answers so
#   mailstack.sh env DIR                print KEY=VALUE lines (also in DIR/env)
#   mailstack.sh vacation DIR USER [SUBJECT]   install a sieve vacation script
#
# DIR must be short (unix socket paths are limited) and it and every parent
# must be searchable by the mail users (dovenull, postfix, opendkim): e.g.
# /tmp/ms-XXXX with mode 0755.  Ports are BASEPORT + offset:
#   +0 IMAP (STARTTLS offered)  +1 IMAPS  +2 LMTP
#   +3 SMTP inbound (no auth, test domains only)
#   +4 submission (STARTTLS required, SASL)  +5 smtps (implicit TLS, SASL)
#   +6 internal re-injection smtpd (submitted mail after signing; loopback
#      only, no auth; not for tests)
# OpenDKIM listens on unix sockets: DIR/dkim/sign.sock, DIR/dkim/verify.sock.
# Every user at example.org / example.net exists; every password is "secret".
#
# OAuth2 (optional): with MAILSTACK_OAUTH2_URL set at `start` to a token
# introspection endpoint (RFC 7662) with the introspecting client's
# credentials in it, e.g.
#   http://dovecot:dovecot-secret@127.0.0.1:PORT/token/introspection
# Dovecot (IMAP, and Postfix submission through Dovecot SASL) also offers
# SASL XOAUTH2 and OAUTHBEARER and checks each bearer token by POSTing it
# there (passdb oauth2): the token must be active, carry the scope
# MAILSTACK_OAUTH2_SCOPE (default "mail") and its "username" must be the
# login.  Passwords keep working for PLAIN/LOGIN as without OAuth2; no
# auth cache, so a revoked token fails at once.  The test server for it is
# tests/mailstack/oauth2/server.mjs (started by the Rust harness,
# tests/e2e/common/oauth2.rs).  Without the variable nothing changes.
# Plus-addressing: security+x@example.org lands in security@example.org.
#
# DKIM: two private OpenDKIM milters (config, keys, unix sockets, pid files
# all in DIR/dkim; /etc/opendkim.conf and system services are never used):
#   - Mail SUBMITTED (+4, +5; SASL) with a From: at example.org / example.net
#     is DKIM-signed by the "sign" instance: d=example.org / d=example.net,
#     s=mailstack, relaxed/relaxed, rsa-sha256, 1024-bit keys made per stack
#     by opendkim-genkey at `start`.  Those smtpd services pass
#     milter_macro_daemon_name=ORIGINATING (OpenDKIM's `MTA` setting).  Other
#     From domains go out unsigned.
#   - Submitted mail is then re-injected (content_filter "reinject" -> the
#     internal smtpd on +6) and VERIFIED there like inbound mail.  So mail a
#     handler submits is delivered with a genuine
#     "Authentication-Results: mail.example.org; dkim=pass header.d=example.org".
#   - Mail on the INBOUND port (+3) is only verified ("verify" instance,
#     Mode v; loopback is not in InternalHosts), never signed, whatever its
#     From: says.
#   - Every message through +3 or +6 gets an Authentication-Results header
#     with authserv-id mail.example.org (AuthservID); unsigned mail gets
#     dkim=none (AlwaysAddARHeader).  Debian's OpenDKIM always appends
#     "dkim-atps=neutral" (compiled-in ATPS).  Authentication-Results headers
#     already in the message are KEPT, even forged ones naming
#     mail.example.org (KeepAuthResults: by default OpenDKIM deletes those
#     that carry a dkim result): distrusting them is the daemon's job, and
#     the tests must be able to prove that it does.
#   - No DNS: the verifier reads public keys from DIR/dkim/public-keys
#     (TestPublicKeys), one "mailstack._domainkey.<domain> <TXT record>" line
#     per test domain.  A signature by any other domain cannot be checked
#     (no key): dkim=permerror.
#   - Postfix's milter_default_action is tempfail: while OpenDKIM is down
#     the smtpd ports answer 451 instead of passing mail unauthenticated.
#   - Bounces (DSNs) and other mail Postfix makes itself pass no milter.
#
# Header order of DELIVERED mail (Postfix 3.7, Dovecot 2.3, OpenDKIM 2.11,
# checked by hand and by tests/e2e/mailstack.rs; top down, i.e. newest first).
# OpenDKIM's header lands ABOVE the Received line of the smtpd pass that ran
# it (Postfix hides its own Received header from milters).
#   inbound (+3), unsigned or not:
#     Return-Path: <reporter@example.net>
#     Delivered-To: security@example.org
#     Received: from mail.example.org ([127.0.0.1])
#             by mail.example.org with LMTP id ... (envelope-from <...>) for <...>; DATE
#     Authentication-Results: mail.example.org; dkim=none; dkim-atps=neutral
#     Received: from client.test (localhost [127.0.0.1])
#             by mail.example.org (Postfix) with ESMTP id QID for <...>; DATE
#     ...the header as sent (any Authentication-Results it had, kept)...
#   submitted (+4/+5) with From: alice@example.org:
#     Return-Path: <alice@example.org>
#     Delivered-To: security@example.org
#     Received: from mail.example.org ([127.0.0.1])
#             by mail.example.org with LMTP id ... (envelope-from <...>) for <...>; DATE
#     Authentication-Results: mail.example.org;
#             dkim=pass (1024-bit key) header.d=example.org header.i=@example.org
#             header.a=rsa-sha256 header.s=mailstack header.b=XXXXXXXX;
#             dkim-atps=neutral
#     Received: from mail.example.org (localhost [127.0.0.1])          (pass 2: +6)
#             by mail.example.org (Postfix) with ESMTP id QID2 for <...>; DATE
#     DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org;
#             s=mailstack; t=...; bh=...; h=Date:To:From:Subject:From; b=...
#     Received: from client.test (localhost [127.0.0.1])               (pass 1: +4/+5)
#             by mail.example.org (Postfix) with ESMTPSA id QID1 for <...>; DATE
#     ...the header as sent...
#   (Submitted with another From: domain: the same minus DKIM-Signature, and
#   dkim=none.)  Every Received line names mail.example.org in its "by".

set -euo pipefail

DOMAINS="example.org example.net"
AUTHSERV_ID="mail.example.org"           # = Postfix myhostname, Dovecot hostname
DKIM_SELECTOR="mailstack"
DKIM_USER="opendkim"                     # made by Debian's opendkim package
PASSWORD="secret"
PORT_RESERVATIONS=/tmp/mailstack-ports   # one folder per BASEPORT in use
START_TIMEOUT=20
OAUTH2_URL=${MAILSTACK_OAUTH2_URL:-}         # see "OAuth2" above
OAUTH2_SCOPE=${MAILSTACK_OAUTH2_SCOPE:-mail}

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
        for p in 0 1 2 3 4 5 6; do
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

# Without OAuth2: one static passdb, every password is $PASSWORD.  With it
# (OAUTH2_URL): the static passdb answers only PLAIN/LOGIN (and lookups
# without SASL, "none"); XOAUTH2/OAUTHBEARER go to passdb oauth2, which
# introspects the token at OAUTH2_URL.  Each passdb skips the others'
# mechanisms, so a token is never compared with the password and a
# password never sent to the token server.
dovecot_passdbs() { # DIR
    if [ -z "$OAUTH2_URL" ]; then
        cat <<EOF
passdb {
  driver = static
  args = password=$PASSWORD
}
EOF
        return
    fi
    cat <<EOF
passdb {
  driver = static
  mechanisms = none plain login
  args = password=$PASSWORD
}
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $1/dovecot-oauth2.conf.ext
}
EOF
}

# With OAuth2, no auth penalty: after a failed login Dovecot's anvil
# delays the NEXT attempt from the same IP by 2, 4, 8, up to 15 s.  A
# client that refreshes its token after a refusal (expired or revoked) would
# have its fresh, short-lived test token expire while it waits.  The 2 s
# delay of every failure reply (auth_failure_delay) stays.
dovecot_oauth2_services() {
    [ -n "$OAUTH2_URL" ] || return 0
    cat <<EOF
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
EOF
}

write_dovecot_oauth2_conf() { # DIR
    local d=$1
    [ -n "$OAUTH2_URL" ] || return 0
    cat > "$d/dovecot-oauth2.conf.ext" <<EOF
# passdb oauth2 of mailstack.sh (generated; do not edit).  Every bearer
# token is checked by RFC 7662 introspection (POST token=...), with HTTP
# basic auth from the URL's user:password.
introspection_mode = post
introspection_url = $OAUTH2_URL
# No tokeninfo_url: introspection is the only check.
force_introspection = yes
active_attribute = active
active_value = true
username_attribute = username
scope = $OAUTH2_SCOPE
timeout_msecs = 5000
EOF
    # The auth process (running as the caller) reads it; the URL holds the
    # introspection client's secret.
    chmod 0600 "$d/dovecot-oauth2.conf.ext"
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
auth_mechanisms = plain login${OAUTH2_URL:+ xoauth2 oauthbearer}
${OAUTH2_URL:+auth_verbose = yes}
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
mail_location = maildir:~/Maildir
recipient_delimiter = +
lmtp_save_to_detail_mailbox = no
submission_host = 127.0.0.1:$((b + 3))
postmaster_address = postmaster@example.org
hostname = mail.example.org

$(dovecot_passdbs "$d")
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
$(dovecot_oauth2_services)
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
# The submission services' sender restrictions: empty, or "defer" while
# defer-submission holds (every sender answered 451, at RCPT TO as Postfix
# delays rejections; the connection and login still succeed, as a relay
# with a full queue or a rate limit does).
submission_sender_restrictions =
defer_code = 451
# OpenDKIM: the submission services sign (their -o smtpd_milters), every
# other smtpd (inbound, re-injection) verifies.
smtpd_milters = unix:$d/dkim/verify.sock
non_smtpd_milters =
milter_default_action = tempfail
EOF
    local sub="-o smtpd_sasl_auth_enable=yes -o smtpd_tls_auth_only=yes"
    sub="$sub -o smtpd_client_restrictions=permit_sasl_authenticated,reject"
    sub="$sub -o smtpd_relay_restrictions=permit_sasl_authenticated,reject"
    sub="$sub -o smtpd_sender_restrictions=\$submission_sender_restrictions"
    # Sign (OpenDKIM's MTA setting), then re-inject for the verifying pass.
    sub="$sub -o smtpd_milters=unix:$d/dkim/sign.sock -o milter_macro_daemon_name=ORIGINATING"
    sub="$sub -o content_filter=reinject:[127.0.0.1]:$((b + 6))"
    # Re-injection listener: loopback only; relays anything so that mail to
    # unknown domains still reaches "nowhere" and bounces with a real DSN.
    local rei="-o syslog_name=postfix/reinject"
    rei="$rei -o smtpd_client_restrictions=permit_mynetworks,reject"
    rei="$rei -o smtpd_relay_restrictions=permit_mynetworks,reject"
    cat > "$pf/master.cf" <<EOF
# Private Postfix instance of mailstack.sh (generated; do not edit)
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$((b + 3)) inet n - n - - smtpd
127.0.0.1:$((b + 4)) inet n - n - - smtpd -o syslog_name=postfix/submission -o smtpd_tls_security_level=encrypt $sub
127.0.0.1:$((b + 5)) inet n - n - - smtpd -o syslog_name=postfix/smtps -o smtpd_tls_wrappermode=yes $sub
127.0.0.1:$((b + 6)) inet n - n - - smtpd $rei
# The content filter's client.  Postfix's "loops back to myself" check only
# applies to port 25, so talking to our own smtpd on +6 is fine.
reinject   unix  -       -       n       -       -       smtp -o syslog_name=postfix/reinject
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

# One RSA key per test domain (opendkim-genkey, in the background while the
# servers start), the KeyTable and SigningTable that sign with them, and the
# file of public keys that the verifier reads instead of DNS (TestPublicKeys).
# 1024 bits, the RFC 8301 minimum: a 2048-bit key takes 0.1-0.4 s of CPU to
# make, and every test starts a stack.
make_dkim_keys() { # DIR
    local k=$1/dkim dom pids=() pid
    mkdir -p "$k/keys"
    for dom in $DOMAINS; do
        mkdir -p "$k/keys/$dom"
        opendkim-genkey -b 1024 -h sha256 -D "$k/keys/$dom" -d "$dom" -s "$DKIM_SELECTOR" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || return 1; done
    : > "$k/key-table"
    : > "$k/signing-table"
    echo "# <selector>._domainkey.<domain> <TXT record> (OpenDKIM TestPublicKeys)" > "$k/public-keys"
    for dom in $DOMAINS; do
        echo "$dom $dom:$DKIM_SELECTOR:$k/keys/$dom/$DKIM_SELECTOR.private" >> "$k/key-table"
        echo "$dom $dom" >> "$k/signing-table"
        # The .txt file is a zone-file record split into quoted strings.
        printf '%s._domainkey.%s %s\n' "$DKIM_SELECTOR" "$dom" \
            "$(grep -o '"[^"]*"' "$k/keys/$dom/$DKIM_SELECTOR.txt" | tr -d '"\n')" >> "$k/public-keys"
    done
    # The signer reads its keys after dropping root.
    chown "$DKIM_USER" "$k"/keys/*/*.private
    chmod 0600 "$k"/keys/*/*.private
}

# Two OpenDKIM instances: "sign" (Mode s) behind the submission services and
# "verify" (Mode v) behind the inbound and re-injection smtpd.  One instance
# in Mode sv would also verify (and stamp a second Authentication-Results on)
# submitted mail it cannot sign, e.g. one with a From: at another domain.
DKIM_ROLES="sign verify"

write_opendkim_conf() { # DIR BASE
    local d=$1 b=$2 k=$1/dkim role
    # InternalHosts defaults to 127.0.0.1: everything sent on the inbound
    # port would count as "ours", which makes a signer sign it and a
    # verifier skip it.  Name a host that never connects instead.
    cat > "$k/internal-hosts" <<EOF
# Nothing is "internal": only submitted mail (daemon name ORIGINATING, SMTP
# AUTH) is signed.  192.0.2.1 is TEST-NET-1 and never connects here.
192.0.2.1
EOF
    for role in $DKIM_ROLES; do
        cat > "$k/$role.conf" <<EOF
# Private OpenDKIM instance ($role) of mailstack.sh (generated; do not edit)
Socket              local:$k/$role.sock
PidFile             $k/$role.pid
UserID              $DKIM_USER
UMask               0111
Background          yes
Syslog              yes
SyslogName          opendkim-mailstack-$b-$role
InternalHosts       file:$k/internal-hosts
# Never refuse or delay mail over a DKIM problem: unsignable mail goes out
# unsigned, and verification results go into Authentication-Results.
On-Default          accept
EOF
    done
    cat >> "$k/sign.conf" <<EOF
Mode                s
# The submission services set milter_macro_daemon_name=ORIGINATING.
MTA                 ORIGINATING
KeyTable            file:$k/key-table
SigningTable        file:$k/signing-table
Canonicalization    relaxed/relaxed
SignatureAlgorithm  rsa-sha256
OversignHeaders     From
# The keys live under /tmp, which is world-writable: OpenDKIM would call them
# unsafe and refuse to sign.
RequireSafeKeys     no
EOF
    cat >> "$k/verify.conf" <<EOF
Mode                v
# Public keys come from a file, never from DNS.
TestPublicKeys      $k/public-keys
AuthservID          $AUTHSERV_ID
AlwaysAddARHeader   yes
# Keep Authentication-Results headers already in the message, even forged
# ones naming $AUTHSERV_ID: the daemon must be the one to distrust them.
KeepAuthResults     yes
EOF
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
MS_REINJECT_PORT=$((b + 6))
MS_CA_FILE=$d/tls/ca.pem
MS_DOVECOT_CONF=$d/dovecot.conf
MS_POSTFIX_DIR=$d/postfix
MS_PASSWORD=$PASSWORD
MS_AUTHSERV_ID=$AUTHSERV_ID
MS_DKIM_SELECTOR=$DKIM_SELECTOR
MS_DKIM_PUBLIC_KEYS=$d/dkim/public-keys
MS_OAUTH2_URL=$OAUTH2_URL
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

dkim_pid() { cat "$1/dkim/$2.pid" 2>/dev/null || true; } # DIR ROLE

start_dkim() { # DIR: returns at once; wait_dkim waits for the sockets
    local role
    for role in $DKIM_ROLES; do
        alive "$(dkim_pid "$1" "$role")" && continue
        rm -f "$1/dkim/$role.sock"
        opendkim -x "$1/dkim/$role.conf" </dev/null >>"$1/log/start.log" 2>&1 \
            || { show_logs "$1"; die "opendkim ($role) failed to start"; }
    done
}

wait_dkim() { # DIR
    local deadline=$((SECONDS + START_TIMEOUT)) pid role
    for role in $DKIM_ROLES; do
        until [ -S "$1/dkim/$role.sock" ]; do
            pid=$(dkim_pid "$1" "$role")
            if [ "$SECONDS" -ge "$deadline" ] || { [ -n "$pid" ] && ! alive "$pid"; }; then
                [ -S "$1/dkim/$role.sock" ] && break
                show_logs "$1"
                die "opendkim ($role) did not open $1/dkim/$role.sock"
            fi
            sleep 0.02
        done
    done
}

# OpenDKIM (libmilter) notices SIGTERM only when its listener's 5-second poll
# times out, so a polite stop takes ~5 s.  It keeps no state worth a clean
# shutdown: kill it outright.
stop_dkim() { # DIR
    local role pid pids=() i
    for role in $DKIM_ROLES; do
        pid=$(dkim_pid "$1" "$role")
        alive "$pid" || continue
        kill -9 "$pid" 2>/dev/null || true
        pids+=("$pid")
    done
    for pid in "${pids[@]}"; do
        for i in $(seq 100); do alive "$pid" || break; sleep 0.02; done
    done
    for role in $DKIM_ROLES; do rm -f "$1/dkim/$role.sock" "$1/dkim/$role.pid"; done
}

start_imap() { # DIR
    alive "$(dovecot_pid "$1")" && return 0
    # A master killed under load can linger as a zombie until it is reaped:
    # Dovecot's own check (kill -0) takes that for a running master and
    # refuses to start ("already running"), so drop the stale pid file.
    rm -f "$1/run/master.pid"
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

set_submission_senders() { # DIR RESTRICTIONS: takes effect for new sessions
    local i out want
    postconf -c "$1/postfix" -e "submission_sender_restrictions = $2"
    postfix -c "$1/postfix" reload </dev/null >/dev/null 2>&1 || die "postfix reload failed"
    # The reload is asynchronous (smtpd processes finish their session
    # first): probe a new session until it answers as set. With the default
    # smtpd_delay_reject the sender restriction answers at RCPT TO.
    if [ -n "$2" ]; then want=" 451 "; else want=" 250 2.1.5 "; fi
    for i in $(seq 100); do
        out=$(swaks --server 127.0.0.1 --port "$MS_SUBMISSION_PORT" --tls \
            --auth PLAIN --auth-user probe@example.org --auth-password "$MS_PASSWORD" \
            --from probe@example.org --to probe@example.org --quit-after RCPT 2>&1 || true)
        case "$out" in *"$want"*) return 0 ;; esac
        sleep 0.1
    done
    echo "$out" >&2
    die "submission did not start answering '${want# }' after the reload"
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
    local d=$1 base keys
    [ "$(id -u)" = 0 ] || die "start needs root (Postfix refuses to run otherwise)"
    mkdir -p "$d"
    d=$(cd "$d" && pwd -P)
    [ ! -f "$d/env" ] || die "$d already holds a mail stack; stop it and use a fresh folder"
    [ "${#d}" -le 40 ] || die "$d is too long for unix socket paths (keep it under 40 chars)"
    chmod 0755 "$d"
    base=$(reserve_baseport "$d" "${2:-}")
    mkdir -p "$d/log" "$d/home" "$d/run" "$d/state"
    chown dovenull:dovenull "$d/home"
    # OpenDKIM makes its sockets here after dropping root.
    mkdir -p "$d/dkim"
    chown "$DKIM_USER:$DKIM_USER" "$d/dkim"
    make_dkim_keys "$d" >"$d/log/genkey.log" 2>&1 &
    keys=$!
    make_certs "$d"
    write_dovecot_conf "$d" "$base"
    write_dovecot_oauth2_conf "$d"
    write_postfix_conf "$d" "$base"
    write_opendkim_conf "$d" "$base"
    write_env "$d" "$base"
    start_imap "$d"
    # Postfix needs the milters only once mail arrives, and nothing can
    # arrive before this script returns: start it while the keys are made.
    start_smtp "$d"
    wait "$keys" || { cat "$d/log/genkey.log" >&2; die "opendkim-genkey failed"; }
    start_dkim "$d"
    wait_dkim "$d"
    wait_ports "$d" $((base + 0)) $((base + 1)) $((base + 2)) $((base + 3)) $((base + 4)) $((base + 5)) $((base + 6))
    echo "mailstack: up in $d (ports $base-$((base + 6)))" >&2
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
            stop_dkim "$dir" &
            stop_imap "$dir"
            wait
            release_baseport "$dir"
            ;;
        stop-smtp) load_env "$dir"; stop_smtp "$dir" ;;
        start-smtp) load_env "$dir"; start_dkim "$dir"; start_smtp "$dir"; wait_dkim "$dir"
            wait_ports "$dir" "$MS_SMTP_PORT" "$MS_SUBMISSION_PORT" "$MS_SMTPS_PORT" "$MS_REINJECT_PORT" ;;
        stop-imap) load_env "$dir"; stop_imap "$dir" ;;
        start-imap) load_env "$dir"; start_imap "$dir"
            wait_ports "$dir" "$MS_IMAP_PORT" "$MS_IMAPS_PORT" "$MS_LMTP_PORT"
            flush_queue "$dir" ;;
        defer-submission) load_env "$dir"; set_submission_senders "$dir" defer ;;
        accept-submission) load_env "$dir"; set_submission_senders "$dir" "" ;;
        env) load_env "$dir"; grep '^MS_' "$dir/env" ;;
        vacation) [ $# -ge 1 ] || usage; cmd_vacation "$dir" "$@" ;;
        *) usage ;;
    esac
}

main "$@"
