//! mail-parser's MIME tree kept within bounds: the part count that decides,
//! before parsing, whether a message is read for its header only
//! ([`MAX_MIME_PARTS`](super::parsed::MAX_MIME_PARTS)), and freeing a tree without
//! recursing once per nesting level (issue 7).

use mail_parser::{Message, PartType};

/// Frees a parsed tree without recursing per level. mail-parser's own drop
/// recurses once per nested `message/rfc822` level (about four frames
/// each), which overflowed a 2 MiB thread stack at ~35,000 levels; this
/// detaches every nested message into a list first, so each one drops
/// with no children left.
pub(super) fn free_flat(msg: Message<'_>) {
    let mut pending = vec![msg];
    while let Some(mut m) = pending.pop() {
        for part in &mut m.parts {
            if let PartType::Message(inner) = std::mem::take(&mut part.body) {
                pending.push(inner);
            }
        }
    }
}

/// Whether `raw` holds more than `max` Content-Type fields at the start of
/// a line (the field name compared with whitespace removed, the way
/// mail-parser reads it). One pass, no allocation.
pub(super) fn mime_parts_exceed(raw: &[u8], max: usize) -> bool {
    const NAME: &[u8] = b"content-type";
    let mut count = 0usize;
    for line in raw.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().take(64).position(|&b| b == b':') else {
            continue;
        };
        let mut name = line[..colon].iter().filter(|b| !b.is_ascii_whitespace());
        let matches = NAME
            .iter()
            .all(|want| name.next().is_some_and(|b| b.eq_ignore_ascii_case(want)))
            && name.next().is_none();
        if matches {
            count += 1;
            if count > max {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::message::{parse, MAX_MIME_PARTS};
    use mail_parser::MessageParser;

    /// A report wrapped in `levels` nested `message/rfc822` parts, the shape
    /// that crashed the daemon at 40,000 levels (issue 7).
    fn nested(levels: usize) -> Vec<u8> {
        let mut s = String::new();
        for i in 0..levels {
            s.push_str(&format!(
                "From: a{i}@example.net\r\nSubject: level {i}\r\n\
                 Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n\
                 --b{i}\r\nContent-Type: message/rfc822\r\n\r\n"
            ));
        }
        s.push_str("From: inner@example.net\r\nSubject: inner\r\n\r\nbody\r\n");
        for i in (0..levels).rev() {
            s.push_str(&format!("\r\n--b{i}--\r\n"));
        }
        s.into_bytes()
    }

    #[test]
    fn forty_thousand_nested_messages_read_as_header_only() {
        let raw = nested(40_000);
        // Runs on the test harness's 2 MiB thread stack, like the blocking
        // pool's threads in the daemon.
        let m = parse(&raw);
        assert!(m.parsed_ok);
        assert!(m.too_complex);
        assert_eq!(m.subject.as_deref(), Some("level 0"));
        assert_eq!(m.text_body, None);
        let small = parse(&nested(2));
        assert!(!small.too_complex);
        assert!(small.text_body.is_some_and(|t| t.contains("body")));
    }

    #[test]
    fn a_deep_tree_is_freed_without_recursion() {
        // Past the part cap on purpose: mail-parser's own drop of this tree
        // overflows a 2 MiB stack; free_flat must not.
        let raw = nested(40_000);
        let done = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let msg = MessageParser::default().parse(&raw[..]).expect("parses");
                free_flat(msg);
            })
            .expect("spawn")
            .join();
        assert!(done.is_ok());
    }

    #[test]
    fn part_count_reads_names_as_the_parser_does() {
        let many = "Content-Type: text/plain\n".repeat(MAX_MIME_PARTS + 1);
        assert!(mime_parts_exceed(many.as_bytes(), MAX_MIME_PARTS));
        let odd = "Content - Type : text/plain\n".repeat(MAX_MIME_PARTS + 1);
        assert!(mime_parts_exceed(odd.as_bytes(), MAX_MIME_PARTS));
        let few = "Content-Type: text/plain\n".repeat(MAX_MIME_PARTS);
        assert!(!mime_parts_exceed(few.as_bytes(), MAX_MIME_PARTS));
        assert!(!mime_parts_exceed(
            b"X-Content-Type: a\nContent-Typed: b\n",
            0
        ));
    }
}
