//! An RSS or Atom feed as a source: each entry is one release (a volume of a
//! manga, an episode of an anime), parsed with feed-rs.
//!
//! Feeds have no work ids, so the work is derived from the entry title
//! ("Title, Vol. 12", "Title Volume 12", "タイトル 12巻" → "Title", 12) and
//! keyed on its normalised form. The entry id is the release's id, its
//! published (else updated) time the release time, its link the work's page.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use reqwest::Url;
use reqwest::header::ACCEPT;
use serde::Deserialize;

use super::{Http, Sink, SourceError, deserialize, http_url, work_kind};
use crate::error::BuiltinError;
use crate::store::{NewRelease, NewWork, WorkKind};

/// A `feed` source's settings.
#[derive(Debug, Clone)]
pub(super) struct Feed {
    pub(super) name: String,
    pub(super) url: Url,
    kind: WorkKind,
    platform: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeed {
    name: String,
    #[serde(rename = "type")]
    _type: String,
    url: String,
    kind: String,
    platform: Option<String>,
}

impl Feed {
    pub(super) fn from_table(table: &toml::Table, at: &str) -> Result<Feed, BuiltinError> {
        let raw: RawFeed = deserialize(table, at)?;
        Ok(Feed {
            name: raw.name,
            url: http_url(&format!("{at}.url"), &raw.url)?,
            kind: work_kind(&format!("{at}.kind"), &raw.kind)?,
            platform: raw.platform.filter(|p| !p.trim().is_empty()),
        })
    }
}

/// One entry, understood.
struct Entry {
    id: String,
    number: Option<u32>,
    time: DateTime<Utc>,
    link: Option<String>,
}

/// Reads the feed into `sink`.
pub(super) async fn fetch(
    source: &Feed,
    http: &mut Http,
    sink: &mut Sink<'_>,
) -> Result<(), SourceError> {
    let url = &source.url;
    let body = http
        .send(url, |client| {
            client.get(url.clone()).header(
                ACCEPT,
                "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1",
            )
        })
        .await?;
    let feed = feed_rs::parser::Builder::new()
        // Resolves relative links, and keeps generated entry ids stable.
        .base_uri(Some(url.as_str()))
        .build()
        .parse(body.as_slice())
        .map_err(|e| SourceError::Failed(format!("cannot parse the feed at {url}: {e}")))?;

    // Entries grouped by work, so a work's page is its newest entry's link.
    let mut works: BTreeMap<String, (String, Vec<Entry>)> = BTreeMap::new();
    for entry in feed.entries {
        let title = entry.title.as_ref().map(|t| t.content.trim()).unwrap_or("");
        let time = entry.published.or(entry.updated);
        let (Some(time), false) = (time, title.is_empty()) else {
            sink.skip();
            continue;
        };
        let (work, number) = split_title(title);
        let link = entry.links.first().map(|l| l.href.clone());
        works
            .entry(work_key(&work))
            .or_insert_with(|| (work, Vec::new()))
            .1
            .push(Entry {
                id: entry.id,
                number,
                time,
                link,
            });
    }
    for (key, (title, entries)) in works {
        let newest = entries.iter().max_by_key(|e| e.time);
        let work = NewWork {
            source: source.name.clone(),
            source_id: key,
            kind: source.kind,
            native_title: is_japanese(&title).then(|| title.clone()),
            title,
            url: newest.and_then(|e| e.link.clone()),
        };
        let releases: Vec<NewRelease> = entries
            .into_iter()
            .map(|e| NewRelease {
                source: source.name.clone(),
                source_id: e.id,
                episode: e.number.filter(|_| source.kind == WorkKind::Anime),
                volume: e.number.filter(|_| source.kind == WorkKind::Manga),
                platform: source.platform.clone(),
                release_time: e.time,
            })
            .collect();
        sink.record(&work, &releases)?;
    }
    Ok(())
}

/// The key of a work title: lowercase, single spaces.
fn work_key(title: &str) -> String {
    title
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Whether `text` has kana or CJK ideographs.
fn is_japanese(text: &str) -> bool {
    text.chars().any(|c| {
        matches!(c,
            '\u{3040}'..='\u{30ff}'     // hiragana, katakana
            | '\u{3400}'..='\u{4dbf}'   // CJK extension A
            | '\u{4e00}'..='\u{9fff}'   // CJK unified ideographs
            | '\u{ff66}'..='\u{ff9f}') // half-width katakana
    })
}

/// Splits an entry title into the work's title and the volume or episode
/// number: "Title, Vol. 12", "Title Volume 12", "Title Episode 3",
/// "タイトル 12巻", "タイトル 第3話", "Title (12)". A title without a number
/// is the work's title as it is.
pub(super) fn split_title(raw: &str) -> (String, Option<u32>) {
    // Full-width digits, spaces and brackets as their ASCII forms.
    let text: String = raw
        .trim()
        .chars()
        .map(|c| match c {
            '０'..='９' => char::from(b'0' + (c as u32 - '０' as u32) as u8),
            '\u{3000}' => ' ',
            '（' => '(',
            '）' => ')',
            other => other,
        })
        .collect();
    let found = latin_marker(&text)
        .or_else(|| japanese_marker(&text))
        .or_else(|| parenthesised(&text));
    if let Some((end, number)) = found {
        let title = trim_title(&text[..end]);
        if !title.is_empty() {
            return (title.to_owned(), Some(number));
        }
    }
    (text, None)
}

/// Leading digits of `text`, parsed, and how many bytes they take.
fn digits(text: &str) -> Option<(u32, usize)> {
    let len = text.bytes().take_while(u8::is_ascii_digit).count();
    Some((text[..len].parse().ok()?, len))
}

/// The last "vol." / "volume" / "episode" / "ep." / "#" marker followed by a
/// number, as (where the title ends, the number).
fn latin_marker(text: &str) -> Option<(usize, u32)> {
    const MARKERS: &[&str] = &["volume", "vol.", "vol", "episode", "ep.", "ep", "#"];
    let lower = text.to_ascii_lowercase();
    let mut best = None;
    for (at, _) in lower.char_indices() {
        let boundary = lower[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric());
        if !boundary {
            continue;
        }
        for marker in MARKERS {
            let Some(rest) = lower[at..].strip_prefix(marker) else {
                continue;
            };
            let rest = rest.trim_start();
            if let Some((number, _)) = digits(rest) {
                best = Some((at, number));
                break;
            }
        }
    }
    best
}

/// The last number followed by 巻 (volume) or 話 (episode), as (where the
/// title ends, the number); a 第 before the number is not part of the title.
fn japanese_marker(text: &str) -> Option<(usize, u32)> {
    let mut best = None;
    for (at, c) in text.char_indices() {
        if c != '巻' && c != '話' {
            continue;
        }
        let before = text[..at].trim_end();
        let start = before.len() - before.bytes().rev().take_while(u8::is_ascii_digit).count();
        if start == before.len() {
            continue;
        }
        let Ok(number) = before[start..].parse() else {
            continue;
        };
        let title = before[..start].trim_end();
        let end = title.strip_suffix('第').unwrap_or(title).len();
        best = Some((end, number));
    }
    best
}

/// A trailing "(12)", as (where the title ends, the number).
fn parenthesised(text: &str) -> Option<(usize, u32)> {
    let inner = text.strip_suffix(')')?;
    let open = inner.rfind('(')?;
    let (number, len) = digits(inner[open + 1..].trim())?;
    (len == inner[open + 1..].trim().len()).then_some((open, number))
}

/// A title without the separators that stood before its number.
fn trim_title(title: &str) -> &str {
    title.trim_end_matches(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                ',' | ':' | ';' | '-' | '–' | '—' | '(' | '[' | '、' | '・'
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_and_episode_titles() {
        let cases: &[(&str, &str, Option<u32>)] = &[
            ("Chainsaw Man, Vol. 12", "Chainsaw Man", Some(12)),
            (
                "Frieren: Beyond Journey's End Volume 13",
                "Frieren: Beyond Journey's End",
                Some(13),
            ),
            ("Blue Period vol 15 (Manga)", "Blue Period", Some(15)),
            (
                "The Apothecary Diaries 09 (Light Novel)",
                "The Apothecary Diaries 09 (Light Novel)",
                None,
            ),
            ("Dandadan - Episode 7", "Dandadan", Some(7)),
            ("Oshi no Ko #3", "Oshi no Ko", Some(3)),
            ("呪術廻戦 26巻", "呪術廻戦", Some(26)),
            ("ONE PIECE 第108巻", "ONE PIECE", Some(108)),
            ("葬送のフリーレン　１３巻", "葬送のフリーレン", Some(13)),
            ("薬屋のひとりごと 第5話", "薬屋のひとりごと", Some(5)),
            ("チェンソーマン（17）", "チェンソーマン", Some(17)),
            ("Mob Psycho 100", "Mob Psycho 100", None),
            ("Volume 3", "Volume 3", None),
            ("Evolution Vol. 2", "Evolution", Some(2)),
            ("Involve 4", "Involve 4", None),
        ];
        for (raw, title, number) in cases {
            assert_eq!(
                split_title(raw),
                (title.to_string(), *number),
                "title {raw:?}"
            );
        }
    }

    #[test]
    fn keys_and_scripts() {
        assert_eq!(work_key("  Chainsaw   Man "), "chainsaw man");
        assert!(is_japanese("呪術廻戦"));
        assert!(is_japanese("ONE PIECE ワンピース"));
        assert!(!is_japanese("Chainsaw Man"));
    }

    proptest::proptest! {
        #[test]
        fn any_title_splits_without_panicking(raw in "\\PC{0,60}") {
            let (title, _) = split_title(&raw);
            proptest::prop_assert!(title.len() <= raw.len() * 3);
        }

        #[test]
        fn a_volume_marker_gives_the_title_and_its_number(
            title in "[A-Z][a-z]{2,9}( [A-Z][a-z]{2,9}){0,3}",
            marker in proptest::sample::select(vec![", Vol. ", " Volume ", " vol ", " - Episode ", " #"]),
            number in 1u32..100_000,
        ) {
            let raw = format!("{title}{marker}{number}");
            proptest::prop_assert_eq!(split_title(&raw), (title.clone(), Some(number)), "{}", raw);
            let japanese = format!("{title} 第{number}巻");
            proptest::prop_assert_eq!(split_title(&japanese), (title, Some(number)), "{}", japanese);
        }
    }
}
