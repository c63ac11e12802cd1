//! AniList's GraphQL API as a source: the airing schedule of the coming days
//! (anime episodes) and the manga that are releasing or about to (volumes).
//!
//! Requests are the API's real shape — a JSON `POST` of `{"query", "variables"}`
//! — and pages are followed while `pageInfo.hasNextPage` holds, up to
//! `max_pages` per media and within the run's request budget. A GraphQL
//! `errors` array fails the source with its messages.

use chrono::{DateTime, NaiveDate, Utc};
use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{Http, Sink, SourceError, deserialize, http_url, invalid, work_kind};
use crate::error::BuiltinError;
use crate::store::{NewRelease, NewWork, WorkKind};

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
      id type siteUrl volumes startDate { year month day } title { romaji english native }
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

async fn airing(source: &Anilist, http: &mut Http, sink: &mut Sink<'_>) -> Result<(), SourceError> {
    let from = Utc::now().timestamp();
    let to = from + i64::from(source.days_ahead) * 86_400;
    for page in 1..=source.max_pages {
        let variables = json!({ "page": page, "perPage": PER_PAGE, "from": from, "to": to });
        let data: Page<AiringPage> = query(source, http, AIRING_QUERY, variables).await?;
        for airing in data.page.airing_schedules {
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
        if !data.page.page_info.has_next_page {
            break;
        }
    }
    Ok(())
}

async fn manga(source: &Anilist, http: &mut Http, sink: &mut Sink<'_>) -> Result<(), SourceError> {
    for page in 1..=source.max_pages {
        let variables = json!({ "page": page, "perPage": PER_PAGE });
        let data: Page<MangaPage> = query(source, http, MANGA_QUERY, variables).await?;
        for media in data.page.media {
            let work = media.base.work(&source.name, WorkKind::Manga);
            // AniList has no per-volume dates: the release is the series'
            // start (or its newest volume count, when known) at its start date.
            let releases: Vec<NewRelease> = media
                .start_date
                .as_ref()
                .and_then(FuzzyDate::time)
                .map(|at| NewRelease {
                    source: source.name.clone(),
                    source_id: match media.volumes {
                        Some(v) => format!("manga-{}-vol-{v}", media.base.id),
                        None => format!("manga-{}", media.base.id),
                    },
                    episode: None,
                    volume: media.volumes,
                    platform: None,
                    release_time: at,
                })
                .into_iter()
                .collect();
            sink.record(&work, &releases)?;
        }
        if !data.page.page_info.has_next_page {
            break;
        }
    }
    Ok(())
}

/// POSTs one GraphQL query and returns its `data`.
async fn query<T: DeserializeOwned>(
    source: &Anilist,
    http: &mut Http,
    query: &str,
    variables: Value,
) -> Result<T, SourceError> {
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
    let response: Response<T> = serde_json::from_slice(&bytes)
        .map_err(|e| SourceError::Failed(format!("unexpected GraphQL answer from {url}: {e}")))?;
    if let Some(errors) = response.errors.filter(|e| !e.is_empty()) {
        return Err(SourceError::Failed(format!(
            "GraphQL error from {url}: {}",
            join_messages(&errors)
        )));
    }
    response
        .data
        .ok_or_else(|| SourceError::Failed(format!("GraphQL answer from {url} without data")))
}

/// The messages of a GraphQL error body, when `body` is one.
pub(super) fn error_messages(body: &[u8]) -> Option<String> {
    let response: Response<Value> = serde_json::from_slice(body).ok()?;
    response
        .errors
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

#[derive(Debug, Deserialize)]
struct Response<T> {
    data: Option<T>,
    errors: Option<Vec<GraphqlError>>,
}

#[derive(Debug, Deserialize)]
struct GraphqlError {
    #[serde(default)]
    message: String,
    status: Option<u16>,
}

#[derive(Debug, Deserialize)]
struct Page<T> {
    #[serde(rename = "Page")]
    page: T,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageInfo {
    #[serde(default)]
    has_next_page: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AiringPage {
    page_info: PageInfo,
    #[serde(default)]
    airing_schedules: Vec<Airing>,
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
struct MangaPage {
    page_info: PageInfo,
    #[serde(default)]
    media: Vec<Manga>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manga {
    #[serde(flatten)]
    base: Media,
    volumes: Option<u32>,
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
