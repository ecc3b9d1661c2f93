//! The vocabulary every layer speaks (pure, no I/O): case ids, the
//! disclosure [`State`] machine, deadline [`Kind`]s and the address key
//! the project's limits compare by. Nothing here imports another module of
//! the crate.

/// `SEC-2026-0007`.
/// A closed set of names stored as text: the enum, its `ALL` list,
/// `as_str`/`parse`, and the `Display`, `Serialize`, `ToSql` and `FromSql`
/// that read and write the same text, so no caller compares strings. An
/// unknown name read from the database is an error naming `$what`.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$( $name::$variant, )+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $( $text => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(
                v: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                let s = v.as_str()?;
                $name::parse(s).ok_or_else(|| {
                    rusqlite::types::FromSqlError::Other(
                        format!(concat!("unknown ", $what, " {:?}"), s).into(),
                    )
                })
            }
        }
    };
}

pub fn format_case_id(year: i32, seq: u32) -> String {
    format!("SEC-{year}-{seq:04}")
}

/// Case ids that appear as `[SEC-yyyy-nnnn]` tags in a subject.
pub fn subject_tags(subject: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = subject;
    while let Some(i) = rest.find("[SEC-") {
        rest = &rest[i + 1..];
        let Some(end) = rest.find(']') else { break };
        let tag = &rest[..end];
        let mut parts = tag.split('-');
        let ok = parts.next() == Some("SEC")
            && parts
                .next()
                .is_some_and(|y| y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit()))
            && parts
                .next()
                .is_some_and(|n| n.len() >= 4 && n.bytes().all(|b| b.is_ascii_digit()))
            && parts.next().is_none();
        if ok {
            out.push(tag.to_owned());
        }
    }
    out
}

named_enum! {
    /// Where a case is in the disclosure process. Stored as its name
    /// (`cases.state`), the same text the CLI and the commands show.
    State, "case state" {
        New = "new",
        Acknowledged = "acknowledged",
        Triage = "triage",
        Confirmed = "confirmed",
        Rejected = "rejected",
        Duplicate = "duplicate",
        Fixing = "fixing",
        FixReady = "fix-ready",
        Announced = "announced",
        Closed = "closed",
    }
}

impl State {
    /// The states reachable in one move.
    pub fn next(self) -> &'static [State] {
        use State::*;
        match self {
            New => &[Acknowledged, Triage, Rejected, Duplicate],
            Acknowledged => &[Triage, Rejected, Duplicate],
            Triage => &[Confirmed, Rejected, Duplicate],
            Confirmed => &[Fixing, Rejected, Duplicate],
            Fixing => &[FixReady],
            FixReady => &[Announced, Fixing],
            Announced => &[Closed],
            Rejected | Duplicate => &[Closed, Triage],
            Closed => &[Triage],
        }
    }

    pub fn can_move_to(self, to: State) -> bool {
        self.next().contains(&to)
    }

    /// Whether the case is still in progress: rejected, duplicate,
    /// announced and closed cases need no more work (no reminders, not in
    /// the digest).
    pub fn is_open(self) -> bool {
        !matches!(
            self,
            State::Closed | State::Rejected | State::Duplicate | State::Announced
        )
    }
}

named_enum! {
    /// Which way a stored message went: received by the mailbox, or sent
    /// by secintake (`messages.direction`).
    Direction, "message direction" {
        In = "in",
        Out = "out",
    }
}

/// Most stored messages are received ones.
impl Default for Direction {
    fn default() -> Direction {
        Direction::In
    }
}

named_enum! {
    /// What a stored message is. Received mail is a `Report` (it opened a
    /// case), a `FollowUp` (the reporter again, or anyone in the thread),
    /// `Handler` mail, a `Robot` (never answered) or `Old` (from before
    /// the mailbox was adopted). Sent mail is named by its purpose, which
    /// is also its outbox `purpose`: the mark that the leak guard, the
    /// threading rules and the outbox's order read.
    MessageKind, "message kind" {
        Report = "report",
        FollowUp = "follow-up",
        Handler = "handler",
        Robot = "robot",
        Old = "old",
        Ack = "ack",
        Relay = "relay",
        Update = "update",
        Announce = "announce",
        Notification = "notification",
        Forward = "forward",
        Note = "note",
        TeamCopy = "team-copy",
        CommandReply = "command-reply",
        Reminder = "reminder",
        Alert = "alert",
        Digest = "digest",
    }
}

impl MessageKind {
    /// Sent mail that only handlers ever see: notifications, notes,
    /// confirmations, reminders, alerts, digests. Its text must never
    /// reach a reporter or a list.
    pub fn is_internal(self) -> bool {
        use MessageKind::*;
        matches!(
            self,
            Notification | Note | TeamCopy | CommandReply | Reminder | Alert | Digest
        )
    }

    /// Internal mail that may carry what a case's mail says (the report,
    /// a follow-up, a handler's words): for an encrypted case it goes to
    /// handlers encrypted, or as the facts only (see `outgoing::Rendition`).
    pub fn is_confidential(self) -> bool {
        use MessageKind::*;
        matches!(
            self,
            Notification | Forward | Note | TeamCopy | CommandReply
        )
    }

    /// Mail from the reporter's side of a case: the report or a follow-up.
    pub fn is_reporters(self) -> bool {
        matches!(self, MessageKind::Report | MessageKind::FollowUp)
    }
}

/// Names of a list of states, for error messages.
pub fn names(states: &[State]) -> String {
    if states.is_empty() {
        return "none".into();
    }
    states
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

named_enum! {
    /// What a deadline is for (`deadlines.kind`).
    Kind, "deadline kind" {
        /// The acknowledgement reaches the SMTP server.
        Acknowledge = "acknowledge",
        /// A handler's substantive answer to the reporter.
        Respond = "respond",
        /// Fixes are ready (set by a handler).
        Fix = "fix",
        /// The agreed public disclosure date (set by a handler).
        Embargo = "embargo",
        /// The queued acknowledgement is still unsent after
        /// `sla.ack_alert_after`: one alert, no repetition.
        AckQueued = "ack-queued",
    }
}

impl Kind {
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Acknowledge => "acknowledgement",
            Kind::Respond => "response to the reporter",
            Kind::Fix => "fix",
            Kind::Embargo => "public disclosure (embargo end)",
            Kind::AckQueued => "acknowledgement delivery",
        }
    }
}

/// The key two spellings of one mailbox share: lowercased, with a
/// `+tag` after the local part removed (`Bob+x@Example.org` and
/// `bob@example.org` both give `bob@example.org`). For limits and for
/// recognising the project's own addresses, never for sending.
pub fn mailbox_key(email: &str) -> String {
    let email = email.trim().to_lowercase();
    match email.rsplit_once('@') {
        Some((local, domain)) => {
            let local = local.split_once('+').map_or(local, |(base, _)| base);
            format!("{local}@{domain}")
        }
        None => email,
    }
}

/// How the last error of a failing component begins when the server
/// refused the login: a revoked password or token, not an outage (health
/// records it; the alert's text depends on it).
pub const CREDENTIAL_REJECTED: &str = "credential rejected";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_keys_fold_case_and_plus_tags() {
        assert_eq!(mailbox_key("Bob+x@Example.ORG"), "bob@example.org");
        assert_eq!(mailbox_key(" bob@example.org"), "bob@example.org");
        assert_eq!(mailbox_key("a+b+c@x"), "a@x");
        assert_eq!(mailbox_key("no-at"), "no-at");
    }
}
