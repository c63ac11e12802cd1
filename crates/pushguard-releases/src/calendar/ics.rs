//! iCalendar (RFC 5545) output: one `VEVENT` per release, text escaped,
//! lines folded at 75 octets without splitting a UTF-8 character, CRLF
//! line ends. Written here rather than with a crate: the subset needed is
//! small and its two traps (escaping, folding) are tested below.

use chrono::{DateTime, Utc};

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Event {
    /// Stable across syncs: see [`uid`].
    pub uid: String,
    /// Start (UTC).
    pub start: DateTime<Utc>,
    /// End (UTC).
    pub end: DateTime<Utc>,
    /// The one-line title.
    pub summary: String,
    /// Free text, may hold newlines.
    pub description: String,
    /// The work's page.
    pub url: Option<String>,
    /// `anime` or `manga`.
    pub category: String,
}

/// The product identifier written into every calendar.
const PRODID: &str = "-//pushguard//release calendar//EN";

/// The stable UID of the release `source_id` of `source`:
/// `release-<source>-<source_id>@pushguard`, each part kept to
/// `[A-Za-z0-9.]` with every other byte written `_XX` (hex) and `-`
/// written `_2D`, so that distinct releases never share a UID and the UID
/// is safe as a URL path segment.
pub(super) fn uid(source: &str, source_id: &str) -> String {
    format!("release-{}-{}@pushguard", safe(source), safe(source_id))
}

fn safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("_{b:02X}"));
        }
    }
    out
}

/// Whether `uid` can be used as is in a resource name (`<uid>.ics`).
pub(super) fn is_path_safe(uid: &str) -> bool {
    !uid.is_empty()
        && uid != "."
        && uid != ".."
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'@'))
}

/// A whole `VCALENDAR` holding `events`, stamped `now`.
pub(super) fn calendar(name: Option<&str>, events: &[Event], now: DateTime<Utc>) -> String {
    let mut out = String::new();
    line(&mut out, "BEGIN:VCALENDAR");
    line(&mut out, "VERSION:2.0");
    line(&mut out, &format!("PRODID:{PRODID}"));
    line(&mut out, "CALSCALE:GREGORIAN");
    if let Some(name) = name {
        line(&mut out, &format!("X-WR-CALNAME:{}", escape(name)));
    }
    for event in events {
        vevent(&mut out, event, now);
    }
    line(&mut out, "END:VCALENDAR");
    out
}

fn vevent(out: &mut String, event: &Event, now: DateTime<Utc>) {
    line(out, "BEGIN:VEVENT");
    line(out, &format!("UID:{}", escape(&event.uid)));
    line(out, &format!("DTSTAMP:{}", stamp(now)));
    line(out, &format!("DTSTART:{}", stamp(event.start)));
    line(out, &format!("DTEND:{}", stamp(event.end)));
    line(out, &format!("SUMMARY:{}", escape(&event.summary)));
    if !event.description.is_empty() {
        line(out, &format!("DESCRIPTION:{}", escape(&event.description)));
    }
    if let Some(url) = &event.url {
        // URL is a URI value, not TEXT: not escaped.
        line(out, &format!("URL:{}", url.replace(['\r', '\n'], "")));
    }
    line(out, &format!("CATEGORIES:{}", escape(&event.category)));
    line(out, "TRANSP:TRANSPARENT");
    line(out, "END:VEVENT");
}

/// A UTC date-time, `20261201T150000Z`.
fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Escapes a TEXT value: `\` `;` `,` and newlines (RFC 5545 §3.3.11).
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("\\n");
            }
            '\n' => out.push_str("\\n"),
            // Other control characters are not allowed in TEXT.
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends `content` as one content line, folded (RFC 5545 §3.1): at most
/// 75 octets a line, continuation lines starting with one space, never
/// inside a UTF-8 character.
fn line(out: &mut String, content: &str) {
    let mut width = 0;
    for c in content.chars() {
        let len = c.len_utf8();
        if width + len > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += len;
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            uid: uid("anilist", "airing-12"),
            start: DateTime::from_timestamp(1_796_137_200, 0).unwrap(),
            end: DateTime::from_timestamp(1_796_139_000, 0).unwrap(),
            summary: "Frieren, Part 2; \\ (葬送のフリーレン) — episode 12".into(),
            description: "episode 12 on Crunchyroll\nhttps://anilist.co/anime/154587".into(),
            url: Some("https://anilist.co/anime/154587".into()),
            category: "anime".into(),
        }
    }

    #[test]
    fn uids_are_stable_distinct_and_path_safe() {
        assert_eq!(
            uid("anilist", "airing-12"),
            "release-anilist-airing_2D12@pushguard"
        );
        assert_eq!(uid("anilist", "airing-12"), uid("anilist", "airing-12"));
        assert_ne!(uid("a-b", "c"), uid("a", "b-c"));
        assert_ne!(uid("x", "a/b"), uid("x", "a_b"));
        let odd = uid("フィード", "../../etc/passwd?x=1#y");
        assert!(is_path_safe(&odd), "{odd}");
        assert!(!odd.contains('/'));
        assert!(!is_path_safe("a/b"));
        assert!(!is_path_safe(".."));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a,b;c\\d\ne\r\nf\u{7}"), "a\\,b\\;c\\\\d\\ne\\nf");
    }

    #[test]
    fn lines_fold_at_75_octets_on_character_boundaries() {
        let mut out = String::new();
        let long = format!("SUMMARY:{}", "葬送のフリーレン".repeat(10));
        line(&mut out, &long);
        for l in out.split("\r\n").filter(|l| !l.is_empty()) {
            assert!(l.len() <= 75, "{} octets: {l}", l.len());
        }
        // Unfolding gives the line back.
        assert_eq!(out.trim_end_matches("\r\n").replace("\r\n ", ""), long);
    }

    #[test]
    fn calendar_shape() {
        let now = DateTime::from_timestamp(1_796_000_000, 0).unwrap();
        let text = calendar(Some("Releases"), &[event()], now);
        assert!(text.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"));
        assert!(text.ends_with("END:VCALENDAR\r\n"));
        assert!(!text.replace("\r\n", "").contains('\n'));
        assert!(text.contains("\r\nUID:release-anilist-airing_2D12@pushguard\r\n"));
        assert!(text.contains("\r\nDTSTART:20261201T150000Z\r\n"));
        assert!(text.contains("\r\nDTEND:20261201T153000Z\r\n"));
        assert!(text.contains("SUMMARY:Frieren\\, Part 2\\; \\\\ (葬送のフリーレン) — episode 12"));
        assert!(text.contains("DESCRIPTION:episode 12 on Crunchyroll\\nhttps://anilist.co/"));
    }

    /// Reverses [`escape`] (for the property below).
    fn unescape(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some(other) => out.push(other),
                    None => out.push('\\'),
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn folding_keeps_every_line_within_75_octets_and_unfolds_back(text in "\\PC{0,300}") {
            let mut out = String::new();
            line(&mut out, &text);
            let body = out.strip_suffix("\r\n").expect("a content line ends in CRLF");
            for physical in body.split("\r\n") {
                proptest::prop_assert!(physical.len() <= 75, "{} octets: {physical:?}", physical.len());
            }
            proptest::prop_assert_eq!(body.replace("\r\n ", ""), text);
        }

        #[test]
        fn escaped_text_has_no_bare_separators_and_reads_back(text in "[a-z;,\\\\\n\\PC]{0,80}") {
            let escaped = escape(&text);
            proptest::prop_assert!(!escaped.contains('\n'));
            let expected: String = text.chars().filter(|c| *c == '\n' || !c.is_control()).collect();
            proptest::prop_assert_eq!(unescape(&escaped), expected);
        }

        #[test]
        fn uids_are_path_safe_and_distinct(a in "\\PC{0,20}", b in "\\PC{0,20}", c in "\\PC{0,20}", d in "\\PC{0,20}") {
            let first = uid(&a, &b);
            proptest::prop_assert!(is_path_safe(&first), "{first}");
            if (a.as_str(), b.as_str()) != (c.as_str(), d.as_str()) {
                proptest::prop_assert_ne!(first, uid(&c, &d));
            }
        }
    }
}
