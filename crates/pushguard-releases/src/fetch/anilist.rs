//! AniList's GraphQL API as a source: the airing schedule of the coming days
//! (anime episodes) and the manga that are releasing or about to (volumes).
//!
//! Requests are the API's real shape — a JSON `POST` of `{"query", "variables"}`
//! — and pages are followed while `pageInfo.hasNextPage` holds, up to
//! `max_pages` per media and within the run's request budget.
//!
//! Answers are read as the schema types them: a nullable field may be null
//! (`pageInfo`, `hasNextPage`, a list, an item of a list), and null means
//! "not there" — an unknown `hasNextPage` ends the paging, a null list is
//! empty, a null or unreadable item is skipped and counted. GraphQL
//! `errors` beside a usable `Page` are kept in the source's report (message
//! and status) and the data is used; `errors` without a `Page` fail the
//! source with their messages.
//!
//! Manga: AniList has no per-volume dates (`volumes` and `chapters` are
//! counts, `volumes` usually null until the series completes). A series'
//! first fetch records its counts as a baseline, silently; a count that
//! grew since the last fetch is a new volume (or chapter) dated when it
//! was detected, and stored as such ([`crate::TimeBasis::Detected`]). A
//! series not yet released with a start date in the future is a release at
//! that date. Nothing dated before a series' first fetch is ever stored.
//!
//! GraphQL's `Int` is 32-bit: the airing window's end is clamped to
//! 2038-01-19 03:14:07 UTC (`i32::MAX`), so a long `days_ahead` near then
//! asks for less rather than overflowing.

use chrono::{DateTime, NaiveDate, Utc};
use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{Http, Sink, SourceError, deserialize, http_url, invalid, work_kind};
use crate::error::BuiltinError;
use crate::store::{MangaCounts, NewRelease, NewWork, ReleaseDetail, TimeBasis, WorkKind};

const DEFAULT_ENDPOINT: &str = "https://graphql.anilist.co";
const DEFAULT_DAYS_AHEAD: u32 = 7;
const DEFAULT_MAX_PAGES: u32 = 10;
/// AniList's largest page.
const PER_PAGE: u32 = 50;

const AIRING_QUERY: &str = "query ($page: Int, $perPage: Int, $from: Int, $to: Int) {
  Page(page: $page, perPage: $perPage) {
    pageInfo { hasNextPage }
    airingSchedules(airingAt_greater: $from, airingAt_lesser: $to, sort: TIME) {
      id episode airingAt
      media { id type siteUrl title { romaji english native } }
    }
  }
}";

const MANGA_QUERY: &str = "query ($page: Int, $perPage: Int) {
  Page(page: $page, perPage: $perPage) {
    pageInfo { hasNextPage }
    media(type: MANGA, status_in: [RELEASING, NOT_YET_RELEASED], sort: [POPULARITY_DESC, ID]) {
      id type siteUrl status volumes chapters startDate { year month day } title { romaji english native }
    }
  }
}";

/// An `anilist` source's settings.
#[derive(Debug, Clone)]
pub(super) struct Anilist {
    pub(super) name: String,
    pub(super) endpoint: Url,
    days_ahead: u32,
    media: Vec<WorkKind>,
    max_pages: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnilist {
    name: String,
    #[serde(rename = "type")]
    _type: String,
    endpoint: Option<String>,
    days_ahead: Option<u32>,
    media: Option<Vec<String>>,
    max_pages: Option<u32>,
}

impl Anilist {
    pub(super) fn from_table(table: &toml::Table, at: &str) -> Result<Anilist, BuiltinError> {
        let raw: RawAnilist = deserialize(table, at)?;
        let endpoint = http_url(
            &format!("{at}.endpoint"),
            raw.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT),
        )?;
        let days_ahead = raw.days_ahead.unwrap_or(DEFAULT_DAYS_AHEAD);
        if !(1..=365).contains(&days_ahead) {
            return Err(invalid(
                &format!("{at}.days_ahead"),
                format!("{days_ahead} is out of range: use 1 to 365 days"),
            ));
        }
        let max_pages = raw.max_pages.unwrap_or(DEFAULT_MAX_PAGES);
        if max_pages == 0 {
            return Err(invalid(&format!("{at}.max_pages"), "must be at least 1"));
        }
        let mut media = Vec::new();
        let names = raw
            .media
            .unwrap_or_else(|| vec!["anime".into(), "manga".into()]);
        for name in &names {
            let kind = work_kind(&format!("{at}.media"), name)?;
            if !media.contains(&kind) {
                media.push(kind);
            }
        }
        if media.is_empty() {
            return Err(invalid(
                &format!("{at}.media"),
                "is empty: list \"anime\", \"manga\" or both",
            ));
        }
        Ok(Anilist {
            name: raw.name,
            endpoint,
            days_ahead,
            media,
            max_pages,
        })
    }
}

/// Reads every configured media of `source` into `sink`.
pub(super) async fn fetch(
    source: &Anilist,
    http: &mut Http,
    sink: &mut Sink<'_>,
) -> Result<(), SourceError> {
    for kind in &source.media {
        match kind {
            WorkKind::Anime => airing(source, http, sink).await?,
            WorkKind::Manga => manga(source, http, sink).await?,
        }
    }
    Ok(())
}

/// The airing window from `now` (Unix seconds) as GraphQL `Int`s, which
/// are 32-bit: its end is clamped to `i32::MAX`; `None` once `now` itself
/// is past it.
fn window(now: i64, days_ahead: u32) -> Option<(i32, i32)> {
    let from = i32::try_from(now).ok()?;
    let to = now.saturating_add(i64::from(days_ahead) * 86_400);
    Some((from, i32::try_from(to).unwrap_or(i32::MAX)))
}

async fn airing(source: &Anilist, http: &mut Http, sink: &mut Sink<'_>) -> Result<(), SourceError> {
    let Some((from, to)) = window(Utc::now().timestamp(), source.days_ahead) else {
        return Err(SourceError::Failed(
            "the airing window starts after 2038-01-19 03:14:07 UTC, beyond GraphQL's 32-bit Int"
                .into(),
        ));
    };
    for page in 1..=source.max_pages {
        let variables = json!({ "page": page, "perPage": PER_PAGE, "from": from, "to": to });
        let data = query(source, http, sink, AIRING_QUERY, variables).await?;
        for airing in data.items::<Airing>("airingSchedules", sink) {
            let (Some(media), Some(at)) = (airing.media, time(airing.airing_at)) else {
                sink.skip();
                continue;
            };
            let release = NewRelease {
                source: source.name.clone(),
                source_id: format!("airing-{}", airing.id),
                episode: airing.episode,
                volume: None,
                platform: None,
                release_time: at,
            };
            sink.record(&media.work(&source.name, WorkKind::Anime), &[release])?;
        }
        if !data.has_next_page() {
            break;
        }
    }
    Ok(())
}

async fn manga(source: &Anilist, http: &mut Http, sink: &mut Sink<'_>) -> Result<(), SourceError> {
    for page in 1..=source.max_pages {
        let variables = json!({ "page": page, "perPage": PER_PAGE });
        let data = query(source, http, sink, MANGA_QUERY, variables).await?;
        for media in data.items::<Manga>("media", sink) {
            let work = media.base.work(&source.name, WorkKind::Manga);
            let (id, before) = sink.manga(&work)?;
            let (releases, counts) = media.releases(&source.name, before, Utc::now());
            sink.manga_releases(id, &releases, counts)?;
        }
        if !data.has_next_page() {
            break;
        }
    }
    Ok(())
}

impl Manga {
    /// The releases this fetch of the series shows, given the counts
    /// recorded `before` (`None` on its first fetch), and the counts to
    /// record now. A count AniList stops sending (null) keeps its last value.
    fn releases(
        &self,
        source: &str,
        before: Option<MangaCounts>,
        now: DateTime<Utc>,
    ) -> (Vec<(NewRelease, ReleaseDetail)>, MangaCounts) {
        let id = self.base.id;
        let release = |source_id: String, volume, at| NewRelease {
            source: source.to_owned(),
            source_id,
            episode: None,
            volume,
            platform: None,
            release_time: at,
        };
        let mut releases = Vec::new();
        // The announced start of a series not yet out, while it is ahead.
        if self.status.as_deref() == Some("NOT_YET_RELEASED")
            && let Some(at) = self.start_date.as_ref().and_then(FuzzyDate::time)
            && at > now
        {
            releases.push((
                release(format!("manga-{id}-start"), None, at),
                ReleaseDetail::default(),
            ));
        }
        let seen = MangaCounts {
            volumes: self.volumes,
            chapters: self.chapters,
        };
        let Some(before) = before else {
            return (releases, seen);
        };
        let grew = |was: Option<u32>, is: Option<u32>| match (was, is) {
            (Some(was), Some(is)) if is > was => Some(is),
            _ => None,
        };
        let detected = ReleaseDetail {
            time_basis: TimeBasis::Detected,
            chapter: None,
        };
        if let Some(volume) = grew(before.volumes, self.volumes) {
            releases.push((
                release(format!("manga-{id}-vol-{volume}"), Some(volume), now),
                detected,
            ));
        }
        if let Some(chapter) = grew(before.chapters, self.chapters) {
            releases.push((
                release(format!("manga-{id}-ch-{chapter}"), None, now),
                ReleaseDetail {
                    chapter: Some(chapter),
                    ..detected
                },
            ));
        }
        let counts = MangaCounts {
            volumes: self.volumes.or(before.volumes),
            chapters: self.chapters.or(before.chapters),
        };
        (releases, counts)
    }
}

/// The `Page` of one answer.
struct PageData(Value);

impl PageData {
    /// `pageInfo.hasNextPage`; unknown (null) ends the paging.
    fn has_next_page(&self) -> bool {
        self.0
            .get("pageInfo")
            .and_then(|p| p.get("hasNextPage"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// The items of list `field` (a null list is empty); a null item (a
    /// field error nulled it) or one that does not read is skipped.
    fn items<T: DeserializeOwned>(&self, field: &str, sink: &mut Sink<'_>) -> Vec<T> {
        let Some(list) = self.0.get(field).and_then(Value::as_array) else {
            return Vec::new();
        };
        let mut items = Vec::with_capacity(list.len());
        for item in list {
            match item {
                Value::Null => sink.skip(),
                item => match T::deserialize(item) {
                    Ok(item) => items.push(item),
                    Err(_) => sink.skip(),
                },
            }
        }
        items
    }
}

/// POSTs one GraphQL query and returns its `Page`; `errors` beside a
/// `Page` go into the source's report.
async fn query(
    source: &Anilist,
    http: &mut Http,
    sink: &mut Sink<'_>,
    query: &str,
    variables: Value,
) -> Result<PageData, SourceError> {
    let url = &source.endpoint;
    let body = json!({ "query": query, "variables": variables });
    let bytes = http
        .send(url, |client| {
            client
                .post(url.clone())
                .header(CONTENT_TYPE, "application/json")
                .header(ACCEPT, "application/json")
                .json(&body)
        })
        .await?;
    let response: Response = serde_json::from_slice(&bytes)
        .map_err(|e| SourceError::Failed(format!("unexpected GraphQL answer from {url}: {e}")))?;
    let errors = response.errors();
    let page = response
        .data
        .and_then(|mut d| d.get_mut("Page").map(Value::take))
        .filter(Value::is_object);
    match page {
        Some(page) => {
            if !errors.is_empty() {
                sink.error(format!(
                    "GraphQL error from {url}: {}",
                    join_messages(&errors)
                ));
            }
            Ok(PageData(page))
        }
        None if !errors.is_empty() => Err(SourceError::Failed(format!(
            "GraphQL error from {url}: {}",
            join_messages(&errors)
        ))),
        None => Err(SourceError::Failed(format!(
            "GraphQL answer from {url} without data"
        ))),
    }
}

/// The messages of a GraphQL error body, when `body` is one.
pub(super) fn error_messages(body: &[u8]) -> Option<String> {
    let response: Response = serde_json::from_slice(body).ok()?;
    Some(response.errors())
        .filter(|e| !e.is_empty())
        .map(|e| join_messages(&e))
}

fn join_messages(errors: &[GraphqlError]) -> String {
    errors
        .iter()
        .map(|e| match e.status {
            Some(status) => format!("{} (status {status})", e.message),
            None => e.message.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn time(unix: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(unix, 0)
}

/// A GraphQL response: `data` and `errors`, each possibly null.
#[derive(Debug, Deserialize)]
struct Response {
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    errors: Option<Vec<Value>>,
}

impl Response {
    /// The errors that read as errors (a message, maybe a status).
    fn errors(&self) -> Vec<GraphqlError> {
        self.errors
            .iter()
            .flatten()
            .map(|e| GraphqlError {
                message: e
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("(no message)")
                    .to_owned(),
                status: e
                    .get("status")
                    .and_then(Value::as_u64)
                    .and_then(|s| u16::try_from(s).ok()),
            })
            .collect()
    }
}

#[derive(Debug)]
struct GraphqlError {
    message: String,
    status: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Airing {
    id: i64,
    episode: Option<u32>,
    airing_at: i64,
    media: Option<Media>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manga {
    #[serde(flatten)]
    base: Media,
    status: Option<String>,
    volumes: Option<u32>,
    chapters: Option<u32>,
    start_date: Option<FuzzyDate>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Media {
    id: i64,
    #[serde(rename = "type")]
    kind: Option<String>,
    site_url: Option<String>,
    title: Option<Title>,
}

#[derive(Debug, Default, Deserialize)]
struct Title {
    romaji: Option<String>,
    english: Option<String>,
    native: Option<String>,
}

/// A title that is present and not blank, trimmed.
fn pick(title: Option<&String>) -> Option<&str> {
    title.map(|s| s.trim()).filter(|s| !s.is_empty())
}

impl Media {
    /// The work, titled in romaji (else English, else native).
    fn work(&self, source: &str, default: WorkKind) -> NewWork {
        let title = self.title.as_ref();
        let native = title.and_then(|t| pick(t.native.as_ref()));
        let name = title
            .and_then(|t| pick(t.romaji.as_ref()).or_else(|| pick(t.english.as_ref())))
            .or(native)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("AniList {}", self.id));
        let kind = match self.kind.as_deref() {
            Some("ANIME") => WorkKind::Anime,
            Some("MANGA") => WorkKind::Manga,
            _ => default,
        };
        NewWork {
            source: source.to_owned(),
            source_id: self.id.to_string(),
            kind,
            title: name,
            native_title: native.map(str::to_owned),
            url: self.site_url.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct FuzzyDate {
    year: Option<i32>,
    month: Option<u32>,
    day: Option<u32>,
}

impl FuzzyDate {
    /// Midnight UTC of the date; a missing month or day is the first one.
    fn time(&self) -> Option<DateTime<Utc>> {
        let date =
            NaiveDate::from_ymd_opt(self.year?, self.month.unwrap_or(1), self.day.unwrap_or(1))?;
        Some(date.and_hms_opt(0, 0, 0)?.and_utc())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_prefer_romaji_and_keep_the_native_one() {
        let media: Media = serde_json::from_value(json!({
            "id": 154587, "type": "ANIME", "siteUrl": "https://anilist.co/anime/154587",
            "title": { "romaji": "Sousou no Frieren", "english": "Frieren", "native": "葬送のフリーレン" }
        }))
        .unwrap();
        let work = media.work("anilist", WorkKind::Manga);
        assert_eq!(work.title, "Sousou no Frieren");
        assert_eq!(work.native_title.as_deref(), Some("葬送のフリーレン"));
        assert_eq!(work.kind, WorkKind::Anime);
        assert_eq!(work.source_id, "154587");

        let bare: Media = serde_json::from_value(json!({
            "id": 1, "title": { "romaji": null, "english": " ", "native": "ワンピース" }
        }))
        .unwrap();
        let work = bare.work("anilist", WorkKind::Manga);
        assert_eq!(
            (work.title.as_str(), work.kind),
            ("ワンピース", WorkKind::Manga)
        );
    }

    #[test]
    fn fuzzy_dates() {
        let d = |y, m, day| FuzzyDate {
            year: y,
            month: m,
            day,
        };
        assert_eq!(
            d(Some(2024), Some(3), Some(9))
                .time()
                .map(|t| t.to_rfc3339())
                .as_deref(),
            Some("2024-03-09T00:00:00+00:00")
        );
        assert_eq!(
            d(Some(2024), None, None)
                .time()
                .map(|t| t.to_rfc3339())
                .as_deref(),
            Some("2024-01-01T00:00:00+00:00")
        );
        assert!(d(None, Some(3), Some(9)).time().is_none());
        assert!(d(Some(2024), Some(13), None).time().is_none());
    }

    #[test]
    fn the_airing_window_fits_a_32_bit_int() {
        // 2037-07-01: a year ahead crosses 2038-01-19.
        let now = 2_130_000_000;
        assert_eq!(window(now, 365), Some((now as i32, i32::MAX)));
        assert_eq!(
            window(now, 7),
            Some((now as i32, (now + 7 * 86_400) as i32))
        );
        assert_eq!(
            window(i64::from(i32::MAX) - 10, 1),
            Some((i32::MAX - 10, i32::MAX))
        );
        assert_eq!(window(i64::from(i32::MAX) + 1, 1), None);
    }

    fn manga(status: &str, volumes: Option<u32>, chapters: Option<u32>, start: Value) -> Manga {
        serde_json::from_value(json!({
            "id": 7, "type": "MANGA", "status": status, "volumes": volumes,
            "chapters": chapters, "startDate": start, "title": null,
        }))
        .unwrap()
    }

    #[test]
    fn manga_releases_come_from_growth_and_future_starts() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let old = json!({ "year": 1997, "month": 7, "day": 22 });
        let counts = |volumes, chapters| MangaCounts { volumes, chapters };
        // First fetch: a baseline, whatever the counts.
        let (releases, seen) =
            manga("RELEASING", Some(108), Some(1100), old.clone()).releases("anilist", None, now);
        assert!(releases.is_empty());
        assert_eq!(seen, counts(Some(108), Some(1100)));
        // Growth: dated now, detected.
        let (releases, seen) = manga("RELEASING", Some(110), Some(1100), old.clone()).releases(
            "anilist",
            Some(counts(Some(108), Some(1100))),
            now,
        );
        assert_eq!(releases.len(), 1);
        let (release, detail) = &releases[0];
        assert_eq!(release.source_id, "manga-7-vol-110");
        assert_eq!((release.volume, release.release_time), (Some(110), now));
        assert_eq!(detail.time_basis, TimeBasis::Detected);
        assert_eq!(seen, counts(Some(110), Some(1100)));
        // A count gone null keeps the baseline; a smaller one is no release.
        let (releases, seen) = manga("RELEASING", None, Some(1000), old.clone()).releases(
            "anilist",
            Some(counts(Some(110), Some(1100))),
            now,
        );
        assert!(releases.is_empty());
        assert_eq!(seen, counts(Some(110), Some(1000)));
        // A future start of a series not yet released; a past one is nothing.
        let future = json!({ "year": 2030, "month": 1, "day": null });
        let (releases, _) =
            manga("NOT_YET_RELEASED", None, None, future.clone()).releases("anilist", None, now);
        assert_eq!(releases.len(), 1);
        assert_eq!(releases[0].0.source_id, "manga-7-start");
        assert_eq!(releases[0].1.time_basis, TimeBasis::Scheduled);
        let (releases, _) =
            manga("NOT_YET_RELEASED", None, None, old).releases("anilist", None, now);
        assert!(releases.is_empty());
        let (releases, _) = manga("RELEASING", None, None, future).releases("anilist", None, now);
        assert!(releases.is_empty());
    }

    #[test]
    fn graphql_error_bodies() {
        let body = br#"{"errors":[{"message":"Too Many Requests.","status":429}],"data":null}"#;
        assert_eq!(
            error_messages(body).as_deref(),
            Some("Too Many Requests. (status 429)")
        );
        assert!(error_messages(b"<html>oops</html>").is_none());
        assert!(error_messages(br#"{"data":{}}"#).is_none());
    }
}
