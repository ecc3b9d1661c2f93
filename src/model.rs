//! The vocabulary every layer speaks (pure, no I/O): case ids, the
//! disclosure [`State`] machine, deadline [`Kind`]s and the address key
//! the project's limits compare by. Nothing here imports another module of
//! the crate.

/// `SEC-2026-0007`.
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

/// Where a case is in the disclosure process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    New,
    Acknowledged,
    Triage,
    Confirmed,
    Rejected,
    Duplicate,
    Fixing,
    FixReady,
    Announced,
    Closed,
}

impl State {
    pub const ALL: [State; 10] = [
        State::New,
        State::Acknowledged,
        State::Triage,
        State::Confirmed,
        State::Rejected,
        State::Duplicate,
        State::Fixing,
        State::FixReady,
        State::Announced,
        State::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::New => "new",
            State::Acknowledged => "acknowledged",
            State::Triage => "triage",
            State::Confirmed => "confirmed",
            State::Rejected => "rejected",
            State::Duplicate => "duplicate",
            State::Fixing => "fixing",
            State::FixReady => "fix-ready",
            State::Announced => "announced",
            State::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

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

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for State {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Stored as its name (`cases.state`), the same text the CLI and the
/// commands show.
impl rusqlite::types::ToSql for State {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl rusqlite::types::FromSql for State {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let s = v.as_str()?;
        State::parse(s).ok_or_else(|| {
            rusqlite::types::FromSqlError::Other(format!("unknown case state {s:?}").into())
        })
    }
}

/// Which way a stored message went: received by the mailbox, or sent by
/// secintake. Stored as `in` / `out` (`messages.direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Direction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl rusqlite::types::ToSql for Direction {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl rusqlite::types::FromSql for Direction {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        match v.as_str()? {
            "in" => Ok(Direction::In),
            "out" => Ok(Direction::Out),
            s => Err(rusqlite::types::FromSqlError::Other(
                format!("unknown message direction {s:?}").into(),
            )),
        }
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

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The acknowledgement reaches the SMTP server.
    Acknowledge,
    /// A handler's substantive answer to the reporter.
    Respond,
    /// Fixes are ready (set by a handler).
    Fix,
    /// The agreed public disclosure date (set by a handler).
    Embargo,
    /// The queued acknowledgement is still unsent after
    /// `sla.ack_alert_after`: one alert, no repetition.
    AckQueued,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Acknowledge => "acknowledge",
            Kind::Respond => "respond",
            Kind::Fix => "fix",
            Kind::Embargo => "embargo",
            Kind::AckQueued => "ack-queued",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "acknowledge" => Kind::Acknowledge,
            "respond" => Kind::Respond,
            "fix" => Kind::Fix,
            "embargo" => Kind::Embargo,
            "ack-queued" => Kind::AckQueued,
            _ => return None,
        })
    }

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
