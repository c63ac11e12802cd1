//! The words of a release announcement, in English or Japanese, shared by
//! every channel and by the calendar's event summaries.
//!
//! The titles are never translated or shortened here: a native (Japanese)
//! title appears as stored in both languages. Channels apply their own
//! length limits and markup escaping on top.

use crate::store::TimeBasis;
use chrono::{DateTime, FixedOffset, Utc};

use crate::store::{Release, WorkKind};

/// The language of the message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Language {
    /// English; times in UTC.
    #[default]
    En,
    /// Japanese; times in JST (UTC+9).
    Ja,
}

impl Language {
    /// Parses `en` or `ja`.
    pub(crate) fn parse(text: &str) -> Option<Language> {
        match text {
            "en" => Some(Language::En),
            "ja" => Some(Language::Ja),
            _ => None,
        }
    }

    /// `"en"` or `"ja"`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Ja => "ja",
        }
    }
}

/// One release in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text {
    /// `New episode` / `新着エピソード`.
    pub kind: String,
    /// The work's title as shown: en `Frieren (葬送のフリーレン)`, ja the
    /// native title (or the title when there is none).
    pub title: String,
    /// The title and number: `Frieren (葬送のフリーレン) — episode 12`,
    /// `葬送のフリーレン 第12話`. A calendar event's summary.
    pub summary: String,
    /// `episode 12 on Crunchyroll` / `第12話（Crunchyroll）`; may be empty.
    pub detail: String,
    /// The release time, `2026-12-01 15:00 UTC` / `2026-12-02 00:00 JST`.
    pub when: String,
    /// Everything on one line: `New episode: Frieren (葬送のフリーレン) —
    /// episode 12 on Crunchyroll, 2026-12-01 15:00 UTC`.
    pub headline: String,
    /// An e-mail subject: `New episode: Frieren (葬送のフリーレン) — episode 12`.
    pub subject: String,
    /// The work's page, when it is an http(s) URL.
    pub url: Option<String>,
}

/// Renders `release` in `language`.
pub(crate) fn render(release: &Release, language: Language) -> Text {
    let native = release
        .native_title
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let url = release
        .url
        .as_deref()
        .map(str::trim)
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .map(str::to_owned);
    match language {
        Language::En => english(release, native, url),
        Language::Ja => japanese(release, native, url),
    }
}

fn english(release: &Release, native: Option<&str>, url: Option<String>) -> Text {
    let title = match native {
        Some(n) if n != release.title => format!("{} ({n})", release.title),
        _ => release.title.clone(),
    };
    let (kind, number, preposition) = match release.kind {
        WorkKind::Anime => (
            "New episode",
            release.episode.map(|n| format!("episode {n}")),
            "on",
        ),
        WorkKind::Manga => match (release.volume, release.chapter) {
            (Some(n), _) => ("New volume", Some(format!("volume {n}")), "from"),
            (None, Some(n)) => ("New chapter", Some(format!("chapter {n}")), "from"),
            // An announced series start (no volume or chapter yet).
            (None, None) => ("Series starts", None, "from"),
        },
    };
    let platform = release
        .platform
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty());
    let detail = match (&number, platform) {
        (Some(n), Some(p)) => format!("{n} {preposition} {p}"),
        (Some(n), None) => n.clone(),
        (None, Some(p)) => format!("{preposition} {p}"),
        (None, None) => String::new(),
    };
    let summary = match &number {
        Some(n) => format!("{title} — {n}"),
        None => title.clone(),
    };
    let when = match release.time_basis {
        // The source gave no date: say when it was found, not a release date.
        TimeBasis::Detected => format!(
            "detected {} UTC",
            release.release_time.format("%Y-%m-%d %H:%M")
        ),
        TimeBasis::Scheduled => format!("{} UTC", release.release_time.format("%Y-%m-%d %H:%M")),
    };
    let on = platform
        .map(|p| format!(" {preposition} {p}"))
        .unwrap_or_default();
    Text {
        kind: kind.to_owned(),
        headline: format!("{kind}: {summary}{on}, {when}"),
        subject: format!("{kind}: {summary}"),
        title,
        summary,
        detail,
        when,
        url,
    }
}

/// Japan Standard Time, UTC+9 (no daylight saving).
fn jst(time: DateTime<Utc>) -> String {
    match FixedOffset::east_opt(9 * 3600) {
        Some(offset) => format!(
            "{} JST",
            time.with_timezone(&offset).format("%Y-%m-%d %H:%M")
        ),
        None => format!("{} UTC", time.format("%Y-%m-%d %H:%M")),
    }
}

fn japanese(release: &Release, native: Option<&str>, url: Option<String>) -> Text {
    let title = native.unwrap_or(&release.title).to_owned();
    let (kind, number) = match release.kind {
        WorkKind::Anime => (
            "新着エピソード",
            release.episode.map(|n| format!("第{n}話")),
        ),
        WorkKind::Manga => match (release.volume, release.chapter) {
            (Some(n), _) => ("新刊", Some(format!("第{n}巻"))),
            (None, Some(n)) => ("新着話", Some(format!("第{n}話"))),
            (None, None) => ("連載開始", None),
        },
    };
    let platform = release
        .platform
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| format!("（{p}）"))
        .unwrap_or_default();
    let summary = match &number {
        Some(n) => format!("{title} {n}"),
        None => title.clone(),
    };
    let detail = format!("{}{platform}", number.unwrap_or_default());
    let when = match release.time_basis {
        TimeBasis::Detected => format!("{} 検出", jst(release.release_time)),
        TimeBasis::Scheduled => jst(release.release_time),
    };
    Text {
        kind: kind.to_owned(),
        headline: format!("{kind}: {summary}{platform} — {when}"),
        subject: format!("{kind}: {summary}"),
        title,
        summary,
        detail,
        when,
        url,
    }
}

/// `text` cut to at most `max` characters, with `…` at the end when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn frieren() -> Release {
        Release {
            id: 12,
            work_id: 1,
            kind: WorkKind::Anime,
            title: "Frieren".into(),
            native_title: Some("葬送のフリーレン".into()),
            url: Some("https://anilist.co/anime/154587".into()),
            episode: Some(12),
            volume: None,
            platform: Some("Crunchyroll".into()),
            release_time: DateTime::from_timestamp(1_796_137_200, 0).unwrap(),
            source: "anilist".into(),
            source_id: "airing-12".into(),
            notified_at: None,
            calendar_uid: None,
            chapter: None,
            time_basis: crate::store::TimeBasis::Scheduled,
        }
    }

    #[test]
    fn english_keeps_the_japanese_title() {
        let text = render(&frieren(), Language::En);
        assert_eq!(
            text.headline,
            "New episode: Frieren (葬送のフリーレン) — episode 12 on Crunchyroll, 2026-12-01 15:00 UTC"
        );
        assert_eq!(
            text.subject,
            "New episode: Frieren (葬送のフリーレン) — episode 12"
        );
        assert_eq!(text.detail, "episode 12 on Crunchyroll");
        assert_eq!(text.url.as_deref(), Some("https://anilist.co/anime/154587"));
    }

    #[test]
    fn japanese_uses_the_native_title_and_jst() {
        let text = render(&frieren(), Language::Ja);
        assert_eq!(
            text.headline,
            "新着エピソード: 葬送のフリーレン 第12話（Crunchyroll） — 2026-12-02 00:00 JST"
        );
        assert_eq!(text.summary, "葬送のフリーレン 第12話");
    }

    #[test]
    fn manga_without_number_or_platform() {
        let mut r = frieren();
        r.kind = WorkKind::Manga;
        r.episode = None;
        r.platform = None;
        r.native_title = None;
        r.url = Some("javascript:alert(1)".into());
        let text = render(&r, Language::En);
        // No volume and no chapter: an announced series start.
        assert_eq!(
            text.headline,
            "Series starts: Frieren, 2026-12-01 15:00 UTC"
        );
        assert_eq!(text.detail, "");
        assert_eq!(text.url, None);
        r.volume = Some(3);
        assert_eq!(render(&r, Language::Ja).summary, "Frieren 第3巻");
    }

    #[test]
    fn detected_manga_releases_say_when_they_were_detected_not_a_release_date() {
        let mut r = frieren();
        r.kind = WorkKind::Manga;
        r.episode = None;
        r.platform = None;
        r.native_title = None;
        r.time_basis = TimeBasis::Detected;
        r.volume = Some(109);
        let text = render(&r, Language::En);
        assert_eq!(
            text.headline,
            "New volume: Frieren — volume 109, detected 2026-12-01 15:00 UTC"
        );
        r.volume = None;
        r.chapter = Some(1101);
        let text = render(&r, Language::En);
        assert_eq!(
            text.headline,
            "New chapter: Frieren — chapter 1101, detected 2026-12-01 15:00 UTC"
        );
        let text = render(&r, Language::Ja);
        assert_eq!(
            text.headline,
            "新着話: Frieren 第1101話 — 2026-12-02 00:00 JST 検出"
        );
    }

    #[test]
    fn truncate_counts_characters() {
        assert_eq!(truncate("葬送のフリーレン", 20), "葬送のフリーレン");
        assert_eq!(truncate("葬送のフリーレン", 4), "葬送の…");
    }
}
