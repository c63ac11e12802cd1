//! The `fetch` built-in job: reads the configured sources (AniList's GraphQL
//! API, RSS/Atom release feeds) and upserts what they publish into the store.
//!
//! Sources are read one after the other under one request budget; each
//! request has its own timeout. A 5xx answer is retried once. Rate limits
//! are waited out within the run's waiting allowance (`max_wait`, and the
//! job's own time limit when the runner gives one), never within the
//! per-request timeout: a server that says `X-RateLimit-Remaining: 0` is
//! not asked again before its `X-RateLimit-Reset`, and a 429 is retried
//! after its `Retry-After`. Every 429 counts in
//! `api_fetch_total{status="rate_limited"}`. One bad source does not stop
//! the others: what the good ones returned is stored, then the run fails
//! with [`BuiltinError::Partial`] naming the bad ones.

mod anilist;
mod feed;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pushguard::http_client::HttpClientBuilder;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Client, RequestBuilder, StatusCode, Url};

use super::error::BuiltinError;
use super::metrics::FetchMetrics;
use super::settings::{chain, deserialize, invalid};
use super::store::{MangaCounts, NewRelease, NewWork, ReleaseDetail, Store, StoreError, WorkKind};

/// The `[settings]` of a `builtin = "fetch"` job file.
///
/// | key | default | meaning |
/// |---|---|---|
/// | `store` | `releases.db` beside the state file | the release store, relative to the job file |
/// | `timeout` | `10s` | per HTTP request |
/// | `request_budget` | 50 | HTTP requests per run over all sources |
/// | `max_wait` | `2m` | the most one run waits for rate limits, over all sources (also bounded by the job's `timeout`) |
/// | `[[sources]]` | none | `type = "anilist"` or `type = "feed"`, see below |
///
/// An `anilist` source takes `name`, `endpoint` (default
/// `https://graphql.anilist.co`), `days_ahead` (7: the airing schedule
/// window), `media` (`["anime", "manga"]`) and `max_pages` (10 per media; reaching
/// it is not an error, the request budget running out is).
/// A `feed` source takes `name`, `url`, `kind` (`anime` or `manga`: what its
/// entries are) and an optional `platform`.
///
/// ```
/// let table: toml::Table = toml::from_str(r#"
///     timeout = "5s"
///     [[sources]]
///     name = "kodansha"
///     type = "feed"
///     url = "https://example.com/releases.rss"
///     kind = "manga"
/// "#).unwrap();
/// let settings = pushguard_releases::FetchSettings::from_table(&table, "jobs".as_ref())?;
/// assert_eq!(settings.timeout, std::time::Duration::from_secs(5));
/// assert_eq!(settings.source_names(), ["kodansha"]);
/// # Ok::<(), pushguard_releases::BuiltinError>(())
/// ```
#[derive(Debug, Clone)]
pub struct FetchSettings {
    /// The store file when the job names one, resolved against the job
    /// file's directory (the runner opens it).
    pub store: Option<PathBuf>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Most HTTP requests one run makes, over all sources.
    pub request_budget: u32,
    /// The most one run waits for rate limits (`Retry-After`,
    /// `X-RateLimit-Reset`), over all sources.
    pub max_wait: Duration,
    sources: Vec<Source>,
}

impl Default for FetchSettings {
    /// No sources, a 10 s timeout and a budget of 50 requests.
    fn default() -> Self {
        FetchSettings {
            store: None,
            timeout: DEFAULT_TIMEOUT,
            request_budget: DEFAULT_BUDGET,
            max_wait: DEFAULT_MAX_WAIT,
            sources: Vec::new(),
        }
    }
}

/// One configured source.
#[derive(Debug, Clone)]
enum Source {
    Anilist(anilist::Anilist),
    Feed(feed::Feed),
}

impl Source {
    fn name(&self) -> &str {
        match self {
            Source::Anilist(s) => &s.name,
            Source::Feed(s) => &s.name,
        }
    }

    fn url(&self) -> &str {
        match self {
            Source::Anilist(s) => s.endpoint.as_str(),
            Source::Feed(s) => s.url.as_str(),
        }
    }
}

impl FetchSettings {
    /// Validates a job file's `[settings]` table; relative paths are
    /// resolved against `base` (the job file's directory).
    pub fn from_table(table: &toml::Table, base: &Path) -> Result<FetchSettings, BuiltinError> {
        parse_settings(table, base)
    }

    /// The configured sources' names, in order.
    pub fn source_names(&self) -> Vec<&str> {
        self.sources.iter().map(Source::name).collect()
    }
}

/// What one run did with one source.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SourceReport {
    /// The source's name.
    pub name: String,
    /// Works seen.
    pub works: usize,
    /// Works seen for the first time.
    pub new_works: usize,
    /// Releases seen.
    pub releases: usize,
    /// Releases seen for the first time.
    pub new_releases: usize,
    /// Entries left out (no title or no date).
    pub skipped: usize,
    /// HTTP requests made, retries included.
    pub requests: u32,
    /// 429 answers received (each waited out or, the last one, given up on).
    pub rate_limited: u32,
    /// Errors the source reported beside data that was used (GraphQL
    /// `errors` with a partial `data`), with their message and status.
    pub errors: Vec<String>,
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FetchReport {
    /// One entry per source that was read successfully, in configuration order.
    pub sources: Vec<SourceReport>,
}

impl FetchReport {
    /// Releases seen for the first time, over all sources.
    pub fn new_releases(&self) -> usize {
        self.sources.iter().map(|s| s.new_releases).sum()
    }

    /// Releases seen, over all sources.
    pub fn releases(&self) -> usize {
        self.sources.iter().map(|s| s.releases).sum()
    }
}

impl std::fmt::Display for FetchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.sources.is_empty() {
            return f.write_str("no sources");
        }
        let works: usize = self.sources.iter().map(|s| s.works).sum();
        let new_works: usize = self.sources.iter().map(|s| s.new_works).sum();
        write!(
            f,
            "{} source{}: {works} works ({new_works} new), {} releases ({} new)",
            self.sources.len(),
            if self.sources.len() == 1 { "" } else { "s" },
            self.releases(),
            self.new_releases(),
        )?;
        for (i, s) in self.sources.iter().enumerate() {
            let sep = if i == 0 { " — " } else { ", " };
            write!(
                f,
                "{sep}{}: {} releases ({} new)",
                s.name, s.releases, s.new_releases
            )?;
            if s.skipped > 0 {
                write!(f, ", {} skipped", s.skipped)?;
            }
            if !s.errors.is_empty() {
                write!(f, ", errors: {}", s.errors.join("; "))?;
            }
        }
        Ok(())
    }
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_BUDGET: u32 = 50;
const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(120);

/// The `[settings]` table as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    store: Option<PathBuf>,
    timeout: Option<String>,
    request_budget: Option<u32>,
    max_wait: Option<String>,
    #[serde(default)]
    sources: Vec<toml::Table>,
}

fn parse_settings(table: &toml::Table, base: &Path) -> Result<FetchSettings, BuiltinError> {
    let raw: RawSettings = deserialize(table, "")?;
    let timeout = match raw.timeout {
        None => DEFAULT_TIMEOUT,
        Some(text) => match humantime::parse_duration(&text) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => return Err(invalid("timeout", "must be longer than zero")),
            Err(e) => {
                return Err(invalid(
                    "timeout",
                    format!("invalid duration {text:?}: {e}; write it like \"10s\" or \"1m 30s\""),
                ));
            }
        },
    };
    let max_wait = match raw.max_wait {
        None => DEFAULT_MAX_WAIT,
        Some(text) => humantime::parse_duration(&text).map_err(|e| {
            invalid(
                "max_wait",
                format!(
                    "invalid duration {text:?}: {e}; write it like \"2m\" or \"0s\" (never wait)"
                ),
            )
        })?,
    };
    let request_budget = raw.request_budget.unwrap_or(DEFAULT_BUDGET);
    if request_budget == 0 {
        return Err(invalid("request_budget", "must be at least 1"));
    }
    let mut sources = Vec::with_capacity(raw.sources.len());
    let mut names = HashSet::new();
    for (i, table) in raw.sources.iter().enumerate() {
        let at = format!("sources[{i}]");
        let source = match table.get("type").map(|t| (t, t.as_str())) {
            Some((_, Some("anilist"))) => {
                Source::Anilist(anilist::Anilist::from_table(table, &at)?)
            }
            Some((_, Some("feed"))) => Source::Feed(feed::Feed::from_table(table, &at)?),
            Some((t, _)) => {
                return Err(invalid(
                    &format!("{at}.type"),
                    format!("unknown source type {t}: expected \"anilist\" or \"feed\""),
                ));
            }
            None => {
                return Err(invalid(
                    &format!("{at}.type"),
                    "missing: say type = \"anilist\" or type = \"feed\"",
                ));
            }
        };
        let name = source.name();
        if name.trim().is_empty() {
            return Err(invalid(&format!("{at}.name"), "must not be empty"));
        }
        if !names.insert(name.to_owned()) {
            return Err(invalid(
                &format!("{at}.name"),
                format!("{name:?} names two sources; give each its own name"),
            ));
        }
        sources.push(source);
    }
    Ok(FetchSettings {
        store: raw.store.map(|p| base.join(p)),
        timeout,
        request_budget,
        max_wait,
        sources,
    })
}

/// Parses `text` as an `http` or `https` URL.
fn http_url(key: &str, text: &str) -> Result<Url, BuiltinError> {
    let url = Url::parse(text).map_err(|e| invalid(key, format!("invalid URL {text:?}: {e}")))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(invalid(
            key,
            format!("unsupported scheme {other:?} in {text:?}: use http or https"),
        )),
    }
}

/// Parses `anime` or `manga`.
fn work_kind(key: &str, text: &str) -> Result<WorkKind, BuiltinError> {
    match text {
        "anime" => Ok(WorkKind::Anime),
        "manga" => Ok(WorkKind::Manga),
        other => Err(invalid(
            key,
            format!("unknown kind {other:?}: expected \"anime\" or \"manga\""),
        )),
    }
}

/// Runs the job once, with no deadline but `max_wait`: [`fetch_until`].
pub async fn fetch(
    settings: &FetchSettings,
    store: &Store,
    metrics: &FetchMetrics,
) -> Result<FetchReport, BuiltinError> {
    fetch_until(settings, store, metrics, None).await
}

/// Runs the job once; rate limits are waited out only while the wait and
/// the request after it fit before `deadline` (the job's time limit).
///
/// Every source is read and stored even when another fails; the content
/// gauges are set from the store afterwards. Returns
/// [`BuiltinError::Partial`] naming each source that failed, or
/// [`BuiltinError::Store`] when the store itself fails.
pub async fn fetch_until(
    settings: &FetchSettings,
    store: &Store,
    metrics: &FetchMetrics,
    deadline: Option<Instant>,
) -> Result<FetchReport, BuiltinError> {
    let mut http = Http::new(settings, deadline)?;
    let mut report = FetchReport::default();
    let mut failed = Vec::new();
    for source in &settings.sources {
        let name = source.name();
        let started = Instant::now();
        http.requests = 0;
        http.rate_limited = 0;
        let mut sink = Sink::new(store, name);
        let result = match source {
            Source::Anilist(s) => anilist::fetch(s, &mut http, &mut sink).await,
            Source::Feed(s) => feed::fetch(s, &mut http, &mut sink).await,
        };
        metrics
            .duration
            .with_label_values(&[name])
            .observe(started.elapsed().as_secs_f64());
        // Each 429 counts as rate_limited; a source given up on because of
        // one is not counted again as a failure.
        if http.rate_limited > 0 {
            metrics
                .fetches
                .with_label_values(&[name, "rate_limited"])
                .inc_by(u64::from(http.rate_limited));
        }
        let status = match &result {
            Ok(()) => Some("success"),
            Err(SourceError::RateLimited(_)) if http.rate_limited > 0 => None,
            Err(SourceError::RateLimited(_)) => Some("rate_limited"),
            Err(_) => Some("failure"),
        };
        if let Some(status) = status {
            metrics.fetches.with_label_values(&[name, status]).inc();
        }
        let mut counts = sink.report;
        counts.requests = http.requests;
        counts.rate_limited = http.rate_limited;
        match result {
            Ok(()) => report.sources.push(counts),
            Err(SourceError::Store(e)) => {
                // Best effort: the store just failed, its error is the one to report.
                let _ = set_gauges(store, metrics);
                return Err(e.into());
            }
            Err(SourceError::RateLimited(why)) => {
                failed.push(format!("source {name}: rate limited: {why}"))
            }
            Err(SourceError::Failed(why)) => failed.push(format!("source {name}: {why}")),
        }
    }
    set_gauges(store, metrics)?;
    if failed.is_empty() {
        Ok(report)
    } else {
        Err(BuiltinError::Partial {
            failed,
            total: settings.sources.len(),
        })
    }
}

/// Sets the content gauges from the store's counts.
fn set_gauges(store: &Store, metrics: &FetchMetrics) -> Result<(), StoreError> {
    let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    metrics
        .anime_works
        .set(gauge(store.count_works(WorkKind::Anime)?));
    metrics
        .manga_works
        .set(gauge(store.count_works(WorkKind::Manga)?));
    metrics.releases_pending.set(gauge(store.count_pending()?));
    Ok(())
}

/// Why one source could not be read (fully).
#[derive(Debug)]
enum SourceError {
    /// The source answered 429 (or said no requests remain) and asked to
    /// wait longer than the run may.
    RateLimited(String),
    /// Anything else wrong with the source: HTTP status, timeout, a body that
    /// does not parse, the request budget running out.
    Failed(String),
    /// The store failed: the whole run stops.
    Store(StoreError),
}

impl From<StoreError> for SourceError {
    fn from(e: StoreError) -> Self {
        SourceError::Store(e)
    }
}

/// Collects what a source returned into the store, counting as it goes.
struct Sink<'a> {
    store: &'a Store,
    report: SourceReport,
    works: HashSet<i64>,
}

impl<'a> Sink<'a> {
    fn new(store: &'a Store, name: &str) -> Sink<'a> {
        Sink {
            store,
            report: SourceReport {
                name: name.to_owned(),
                ..SourceReport::default()
            },
            works: HashSet::new(),
        }
    }

    /// Upserts `work` and its `releases`.
    fn record(&mut self, work: &NewWork, releases: &[NewRelease]) -> Result<(), StoreError> {
        let (id, new) = self.store.insert_or_update_work(work)?;
        if self.works.insert(id) {
            self.report.works += 1;
            self.report.new_works += usize::from(new);
        }
        for release in releases {
            let (_, new) = self.store.upsert_release(id, release)?;
            self.report.releases += 1;
            self.report.new_releases += usize::from(new);
        }
        Ok(())
    }

    fn skip(&mut self) {
        self.report.skipped += 1;
    }

    /// Notes an error the source reported beside usable data.
    fn error(&mut self, message: String) {
        self.report.errors.push(message);
    }

    /// Upserts manga `work` and returns its row id and the counts recorded
    /// for it before (`None` on its first fetch).
    fn manga(&mut self, work: &NewWork) -> Result<(i64, Option<MangaCounts>), StoreError> {
        let (id, new) = self.store.insert_or_update_work(work)?;
        if self.works.insert(id) {
            self.report.works += 1;
            self.report.new_works += usize::from(new);
        }
        Ok((id, self.store.manga_counts(id)?))
    }

    /// Upserts releases of manga `work_id` with their details, then records
    /// `counts` as its baseline (after the releases: a store failure in
    /// between loses no detection).
    fn manga_releases(
        &mut self,
        work_id: i64,
        releases: &[(NewRelease, ReleaseDetail)],
        counts: MangaCounts,
    ) -> Result<(), StoreError> {
        for (release, detail) in releases {
            let (id, new) = self.store.upsert_release(work_id, release)?;
            if new {
                self.store.set_release_detail(id, *detail)?;
            }
            self.report.releases += 1;
            self.report.new_releases += usize::from(new);
        }
        self.store.set_manga_counts(work_id, counts)
    }
}

/// The HTTP client of one run: timeout, retries, rate limits and the
/// request budget.
struct Http {
    client: Client,
    timeout: Duration,
    budget: u32,
    used: u32,
    /// Requests of the current source.
    requests: u32,
    /// 429 answers of the current source.
    rate_limited: u32,
    /// Waiting for rate limits still allowed this run.
    wait_left: Duration,
    /// The job's time limit, when the runner gives one.
    deadline: Option<Instant>,
    /// Per origin: no request before this time (`X-RateLimit-Remaining: 0`
    /// until `X-RateLimit-Reset`).
    paced: HashMap<String, Instant>,
}

/// How long to wait before retrying a 5xx answer.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// How often one request is retried after a 429.
const MAX_RATE_LIMITED_RETRIES: u32 = 3;
/// The wait when a server says it is out of requests but not until when
/// (AniList's limit is per minute).
const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(60);

/// What a server said about its rate limit in one answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Limits {
    /// `Retry-After`, in seconds.
    retry_after: Option<Duration>,
    /// `X-RateLimit-Remaining`.
    remaining: Option<u64>,
    /// `X-RateLimit-Reset`, as a wait from now (the header is a Unix time).
    reset: Option<Duration>,
}

impl Limits {
    fn from_headers(headers: &HeaderMap) -> Limits {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Limits {
            retry_after: number(RETRY_AFTER.as_str()).map(Duration::from_secs),
            remaining: number("x-ratelimit-remaining"),
            reset: number("x-ratelimit-reset")
                .map(|at| Duration::from_secs(at).saturating_sub(now)),
        }
    }

    /// How long to wait after a 429: `Retry-After`, else until the reset,
    /// else a minute.
    fn after_429(&self) -> Duration {
        self.retry_after
            .or(self.reset)
            .unwrap_or(DEFAULT_RATE_WINDOW)
    }
}

impl Http {
    fn new(settings: &FetchSettings, deadline: Option<Instant>) -> Result<Http, BuiltinError> {
        // The system roots are loaded only when a source is https.
        let client = HttpClientBuilder::new()
            .targets(settings.sources.iter().map(Source::url))
            .connect_timeout(settings.timeout)
            .follow_redirects(true)
            .build()
            .map_err(|e| BuiltinError::Settings {
                key: "sources".into(),
                reason: chain(&e),
            })?;
        Ok(Http {
            client,
            timeout: settings.timeout,
            budget: settings.request_budget,
            used: 0,
            requests: 0,
            rate_limited: 0,
            wait_left: settings.max_wait,
            deadline,
            paced: HashMap::new(),
        })
    }

    /// Waits `wait` for a rate limit when the run may, else says why not.
    async fn wait(&mut self, wait: Duration) -> Result<(), String> {
        if wait > self.wait_left {
            return Err(format!(
                "waiting {} would exceed max_wait ({} left for this run)",
                humantime::format_duration(round(wait)),
                humantime::format_duration(round(self.wait_left))
            ));
        }
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if wait + self.timeout > left {
                return Err(format!(
                    "waiting {} and the request after it would not end within the job's time limit ({} left)",
                    humantime::format_duration(round(wait)),
                    humantime::format_duration(round(left))
                ));
            }
        }
        self.wait_left -= wait;
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Sends the request `build` makes (again for a retry) and returns the
    /// body of a 2xx answer.
    async fn send(
        &mut self,
        url: &Url,
        build: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Vec<u8>, SourceError> {
        let origin = url.origin().ascii_serialization();
        let mut retried = false;
        let mut waited_429 = 0;
        loop {
            if self.used >= self.budget {
                return Err(SourceError::Failed(format!(
                    "request budget of {} requests per run exhausted before {url}; raise request_budget",
                    self.budget
                )));
            }
            if let Some(until) = self.paced.remove(&origin) {
                let wait = until.saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    self.wait(wait).await.map_err(|why| {
                        SourceError::RateLimited(format!(
                            "{origin} said X-RateLimit-Remaining: 0; {why}"
                        ))
                    })?;
                }
            }
            self.used += 1;
            self.requests += 1;
            let (status, limits, body) = self.attempt(url, &build).await?;
            if limits.remaining == Some(0) {
                // Out of requests: the next one waits for the reset.
                let wait = limits.reset.unwrap_or(DEFAULT_RATE_WINDOW);
                self.paced.insert(origin.clone(), Instant::now() + wait);
            }
            if status.is_success() {
                return Ok(body);
            }
            let what = format!("HTTP {status} from {url}{}", excerpt(&body));
            if status == StatusCode::TOO_MANY_REQUESTS {
                self.rate_limited += 1;
                // The wait replaces any pacing: it is the server's own word.
                self.paced.remove(&origin);
                let wait = limits.after_429();
                let said = match limits.retry_after {
                    Some(after) => format!("Retry-After {}", humantime::format_duration(after)),
                    None => format!(
                        "no Retry-After, waiting {}",
                        humantime::format_duration(round(wait))
                    ),
                };
                if waited_429 >= MAX_RATE_LIMITED_RETRIES {
                    return Err(SourceError::RateLimited(format!(
                        "{what}, again after waiting {waited_429} times"
                    )));
                }
                match self.wait(wait).await {
                    Ok(()) => {
                        waited_429 += 1;
                        continue;
                    }
                    Err(why) => {
                        return Err(SourceError::RateLimited(format!("{what}; {said}: {why}")));
                    }
                }
            }
            if status.is_server_error() && !retried {
                retried = true;
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
            let again = if retried { ", after one retry" } else { "" };
            return Err(SourceError::Failed(format!("{what}{again}")));
        }
    }

    /// One request: its status, rate-limit headers and body.
    async fn attempt(
        &self,
        url: &Url,
        build: &impl Fn(&Client) -> RequestBuilder,
    ) -> Result<(StatusCode, Limits, Vec<u8>), SourceError> {
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                SourceError::Failed(format!(
                    "no answer from {url} within the {} timeout",
                    humantime::format_duration(self.timeout)
                ))
            } else {
                SourceError::Failed(format!("request to {url} failed: {}", chain(&e)))
            }
        };
        let response = build(&self.client)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(failed)?;
        let status = response.status();
        let limits = Limits::from_headers(response.headers());
        let body = response.bytes().await.map_err(failed)?;
        Ok((status, limits, body.to_vec()))
    }
}

/// `d` to the millisecond, for a message.
fn round(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The start of an error answer's body, on one line, for a message: the
/// GraphQL error messages when the body carries some.
fn excerpt(body: &[u8]) -> String {
    if let Some(messages) = anilist::error_messages(body) {
        return format!(": {messages}");
    }
    let text = String::from_utf8_lossy(body);
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        return String::new();
    }
    let mut cut: String = line.chars().take(160).collect();
    if cut.len() < line.len() {
        cut.push('…');
    }
    format!(": {cut}")
}
