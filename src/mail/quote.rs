//! Where a reply's own words are, among the text it quotes: cutting the
//! quote ([`strip_quote`]), telling top, bottom and interleaved answers
//! apart ([`layout`]), and keeping an interleaved answer that quotes only
//! given lines ([`inline_answer`]). Pure: text in, text out.

use std::collections::HashSet;

/// Cuts the quoted part of a reply: everything from the first quoted line
/// (or the "On … wrote:" line introducing it) on.
pub fn strip_quote(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let attribution = |l: &str| {
        let l = l.trim();
        l.ends_with("wrote:") || l.ends_with("écrit :") || l.ends_with("schrieb:")
    };
    let mut end = lines.len();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        // Outlook: a line of underscores, or a "From:" block with "Sent:"
        // or "Date:" right under it; or our own notification's footer.
        let outlook_block = t.starts_with("From:")
            && lines[i + 1..].iter().take(3).any(|n| {
                n.trim_start().starts_with("Sent:") || n.trim_start().starts_with("Date:")
            });
        let marker = t.starts_with('>')
            || t.starts_with("-----Original Message-----")
            || (t.len() >= 10 && t.chars().all(|c| c == '_'))
            || outlook_block
            || t.starts_with("How to act by email:")
            || (t.starts_with("On ") && attribution(t));
        if marker {
            end = i;
            // The attribution ("On Tue, Alice wrote:", s-nail's
            // "\"Name\" <addr> wrote:") may sit above blank lines.
            let mut j = i;
            while j > 0 && lines[j - 1].trim().is_empty() {
                j -= 1;
            }
            if j > 0 && attribution(lines[j - 1]) {
                end = j - 1;
            }
            break;
        }
    }
    let kept = lines[..end].join("\n");
    kept.trim().to_owned()
}

/// How a reply's own text sits around its `>` quote.
#[derive(Debug, PartialEq, Eq)]
pub enum Layout {
    /// No `>` quote, or text above it (top-posting: `strip_quote` applies).
    Top,
    /// Written below the quote: these lines.
    Bottom(String),
    /// Own lines between quoted ones: the quoted lines are someone else's
    /// words (in a handler's reply: the notification's), so this is never relayed.
    Interleaved,
}

/// See [`Layout`]. Attribution lines ("… wrote:") and blank lines count
/// as part of the quote.
pub fn layout(text: &str) -> Layout {
    let quoted = |l: &str| l.trim_start().starts_with('>');
    let lines: Vec<&str> = text.lines().collect();
    let Some(first_q) = lines.iter().position(|l| quoted(l)) else {
        return Layout::Top;
    };
    let own = |l: &&str| !l.trim().is_empty() && !quoted(l) && !l.trim_end().ends_with("wrote:");
    if lines[..first_q].iter().any(own) {
        return Layout::Top;
    }
    let last_q = lines.iter().rposition(|l| quoted(l)).unwrap_or(first_q);
    if lines[first_q..last_q].iter().any(own) {
        return Layout::Interleaved;
    }
    let below = lines[last_q + 1..].join("\n").trim().to_owned();
    if below.is_empty() {
        Layout::Top
    } else {
        Layout::Bottom(below)
    }
}

/// A line without quote markers, whitespace collapsed; `None` when blank.
pub fn collapsed(line: &str) -> Option<String> {
    let t = line.trim_start_matches(|c: char| c == '>' || c == '|' || c.is_whitespace());
    let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
    (!t.is_empty()).then_some(t)
}

/// An answer written between quoted lines, kept whole, when every quoted
/// line is one the reporter wrote (their own words may go back to them as
/// context); attribution lines are dropped. `None` when any quoted line
/// is someone else's (the notification's, a note's).
pub fn inline_answer(rest: &str, reporters: &HashSet<String>) -> Option<String> {
    let mut out = Vec::new();
    for line in rest.lines() {
        let quoted = line.trim_start().starts_with('>');
        if line.trim_end().ends_with("wrote:") {
            continue;
        }
        if quoted && collapsed(line).is_some_and(|c| !reporters.contains(&c)) {
            return None;
        }
        out.push(line);
    }
    Some(out.join("\n").trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_answers_keep_only_the_reporters_quoted_lines() {
        let reporters: HashSet<String> = ["The parser crashes on long input.", "Is 2.3 affected?"]
            .iter()
            .filter_map(|l| collapsed(l))
            .collect();
        let ok = "Reporter wrote:\n> The parser crashes on long input.\nWe can reproduce it.\n\
                  >   Is 2.3 affected?\nYes, 2.3 too.\n";
        assert_eq!(
            inline_answer(ok, &reporters).as_deref(),
            Some("> The parser crashes on long input.\nWe can reproduce it.\n>   Is 2.3 affected?\nYes, 2.3 too.")
        );
        let internal = "> Primary: Alice\nok\n> Is 2.3 affected?\nyes\n";
        assert_eq!(inline_answer(internal, &reporters), None);
    }

    #[test]
    fn reply_layouts() {
        assert_eq!(layout("Top text.\n\n> quote\n"), Layout::Top);
        assert_eq!(layout("no quote at all"), Layout::Top);
        assert_eq!(
            layout("Alice wrote:\n> quote\n> more\n\nMy answer below.\nSecond line.\n"),
            Layout::Bottom("My answer below.\nSecond line.".into())
        );
        assert_eq!(
            layout("> question one\nanswer one\n> question two\nanswer two\n"),
            Layout::Interleaved
        );
        assert_eq!(layout("> only a quote\n"), Layout::Top);
    }

    #[test]
    fn quoted_text_is_not_relayed() {
        let t = "Thanks, confirmed.\nWe will fix it.\n\nOn Tue, Alice wrote:\n> secret report\n> more\n";
        assert_eq!(strip_quote(t), "Thanks, confirmed.\nWe will fix it.");
        assert_eq!(strip_quote("> only quote\n"), "");
        assert_eq!(strip_quote("no quote"), "no quote");
        let snail = "We can reproduce it.\n\n\"Example security\" <security@example.org> wrote:\n\n> report\n";
        assert_eq!(strip_quote(snail), "We can reproduce it.");
        assert_eq!(strip_quote("\"X\" <x@y> wrote:\n\n> q\n"), "");
        let outlook = "Fixed in 2.4.1.\n\n________________________________\nFrom: Example security\nSent: Tuesday\nreport text\n";
        assert_eq!(strip_quote(outlook), "Fixed in 2.4.1.");
        let outlook2 = "Fixed.\n\nFrom: Example security <security@example.org>\nSent: Tuesday\n";
        assert_eq!(strip_quote(outlook2), "Fixed.");
        let html = "Confirmed.\nOn Tue, 25 Nov 2026, Example security wrote:\nA new security report is case X\n";
        assert_eq!(strip_quote(html), "Confirmed.");
        let footer = "Thanks.\nHow to act by email:\n- Reply to this message\n";
        assert_eq!(strip_quote(footer), "Thanks.");
    }
}
