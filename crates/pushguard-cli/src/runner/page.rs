//! The status page: the runner's jobs, their runs and the outbox as HTML for
//! people, beside the JSON API for programs.
//!
//! `GET /` lists every job (failing and overdue first), `GET /jobs/NAME`
//! shows one job's history and kept output, and `POST /jobs/NAME/trigger` is
//! the trigger button. Pages are rendered on the server (maud, escaped by
//! construction) and need nothing but the runner: the style sheet and the
//! small script come from the runner itself, and without the script every
//! page still reads, refreshes (a `<noscript>` meta refresh) and triggers.
//!
//! Access is the API's: with an `api_token`, every page needs it — as
//! `Authorization: Bearer`, or as the password of the browser's own sign-in
//! prompt (HTTP Basic, any user name), which the browser keeps in memory,
//! never in a cookie; without a token only a loopback listener answers.
//! The trigger form also takes the token in a field; the script keeps it in
//! `sessionStorage` only when the user ticks "remember in this tab".
mod format;
mod view;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, Path, Query, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use super::Shared;
use crate::config::{JobSpec, Overlap, TriggerAccess};

/// How often a page reloads itself.
const REFRESH: Duration = Duration::from_secs(15);
/// Runs a job's page lists unless `?limit=` says otherwise.
const HISTORY: usize = 100;

/// The page's routes; `local` is the listener's address, for the access rule.
pub(super) fn routes(local: SocketAddr) -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/",
            get(move |state: App, headers: HeaderMap| overview(state, headers, local)),
        )
        .route(
            "/jobs/{name}",
            get(
                move |state: App,
                      path: Path<String>,
                      query: Query<JobQuery>,
                      headers: HeaderMap| {
                    job_page(state, path, query, headers, local)
                },
            ),
        )
        .route(
            "/jobs/{name}/trigger",
            post(
                move |state: App,
                      path: Path<String>,
                      headers: HeaderMap,
                      form: Form<TriggerForm>| {
                    trigger(state, path, headers, form, local)
                },
            ),
        )
        .route("/assets/page.css", get(css))
        .route("/assets/page.js", get(script))
}

type App = AxumState<Arc<Shared>>;

// ---------------------------------------------------------------------------
// What the page shows

/// A job's state at a glance, in the order the page lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Status {
    /// Its last run that did something failed or timed out.
    Failing,
    /// It has not run when it should have: its last real run is older than
    /// twice its schedule's longest gap, or its next fire is well past.
    Overdue,
    /// A run is going on now.
    Running,
    /// Its last real run succeeded.
    Ok,
    /// Only skipped runs are recorded.
    Skipped,
    /// No run recorded yet.
    NotRun,
    /// `enabled = false`: never scheduled.
    Disabled,
}

impl Status {
    /// The word the page shows.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Status::Failing => "failing",
            Status::Overdue => "overdue",
            Status::Running => "running",
            Status::Ok => "ok",
            Status::Skipped => "skipped",
            Status::NotRun => "not run yet",
            Status::Disabled => "disabled",
        }
    }

    /// Its CSS class.
    pub(crate) fn class(self) -> &'static str {
        match self {
            Status::Failing => "s-failing",
            Status::Overdue => "s-overdue",
            Status::Running => "s-running",
            Status::Ok => "s-ok",
            Status::Skipped => "s-skipped",
            Status::NotRun => "s-none",
            Status::Disabled => "s-disabled",
        }
    }
}

/// One run as the page shows it: from the history, or the run this process
/// just ended whose record is still being written (`id: None`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Run {
    pub id: Option<i64>,
    pub start: DateTime<Utc>,
    pub duration: f64,
    pub outcome: String,
    pub exit_code: i32,
    pub trace_id: Option<String>,
    pub push_status: String,
    pub output: Option<String>,
    pub host: Option<String>,
}

impl Run {
    fn from_record(record: pushguard::RunRecord) -> Option<Run> {
        Some(Run {
            id: Some(record.id),
            start: format::from_unix(record.start)?,
            duration: record.duration,
            outcome: record.outcome,
            exit_code: record.exit_code,
            trace_id: record.trace_id,
            push_status: record.push_status,
            output: record.output,
            host: record.host,
        })
    }
}

/// One job and what is known of it.
#[derive(Debug, Clone)]
pub(crate) struct JobRow {
    pub name: String,
    pub description: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub schedule: String,
    pub schedule_words: String,
    pub timezone: Tz,
    pub overlap: &'static str,
    pub next: Option<DateTime<Utc>>,
    pub running: usize,
    /// Newest first.
    pub runs: Vec<Run>,
    pub status: Status,
    /// On a shared schedule: the runner that holds or held its newest fire.
    pub fired_by: Option<String>,
}

/// One outbox entry: a push waiting for delivery, or a dead letter.
#[derive(Debug, Clone)]
pub(crate) struct Letter {
    pub job: Option<String>,
    pub path: String,
    pub method: String,
    pub bytes: usize,
    pub created: Option<DateTime<Utc>>,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub dead: bool,
}

/// Who may use the page, from the API's rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Loopback listener without a token.
    Open,
    /// The API token is required.
    Token,
}

/// The overview at `/`.
#[derive(Debug)]
pub(crate) struct Overview {
    pub now: DateTime<Utc>,
    /// This runner's id, and whether it shares its schedule with others.
    pub runner: String,
    pub shared_schedule: bool,
    pub jobs: Vec<JobRow>,
    pub outbox: Result<Vec<Letter>, String>,
    pub gate: Gate,
    pub refresh: Duration,
}

/// A job's own page.
#[derive(Debug)]
pub(crate) struct JobPage {
    pub now: DateTime<Utc>,
    pub job: JobRow,
    /// The run whose output is shown.
    pub shown: Option<Run>,
    pub history_error: Option<String>,
    pub trace_url: Option<String>,
    pub gate: Gate,
    pub refresh: Duration,
}

/// The answer to the trigger button.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Triggered {
    Started,
    /// `overlap = "forbid"` and a run is going on: nothing started.
    Skipped,
    NoSuchJob,
    Refused(String),
}

/// A job's state from its runs (newest first); see [`Status`].
pub(crate) fn status(
    job: &JobSpec,
    runs: &[Run],
    running: usize,
    next: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Status {
    if !job.enabled {
        return Status::Disabled;
    }
    let real = runs.iter().find(|run| run.outcome != "skipped");
    if real.is_some_and(|run| run.outcome == "failure" || run.outcome == "timeout") {
        return Status::Failing;
    }
    if running == 0 {
        // The timer sets the next fire before it sleeps; one far in the past
        // means the timer is not keeping up.
        let grace = chrono::TimeDelta::from_std(job.jitter + Duration::from_secs(60))
            .unwrap_or(chrono::TimeDelta::MAX);
        let late_timer = next.is_some_and(|next| now - next > grace);
        let expected = job
            .schedule
            .longest_gap(now)
            .and_then(|gap| chrono::TimeDelta::from_std(gap * 2).ok());
        let stale = match (real, expected) {
            (Some(run), Some(expected)) => now - run.start > expected,
            _ => false,
        };
        if late_timer || stale {
            return Status::Overdue;
        }
    }
    match (running, real, runs.is_empty()) {
        (1.., _, _) => Status::Running,
        (0, Some(_), _) => Status::Ok,
        (0, None, false) => Status::Skipped,
        (0, None, true) => Status::NotRun,
    }
}

fn overlap_word(overlap: Overlap) -> &'static str {
    match overlap {
        Overlap::Allow => "allow",
        Overlap::Forbid => "forbid",
        Overlap::Replace => "replace",
    }
}

/// Gathers one job's row: its spec and live slot, and `limit` runs of the
/// history (read by the caller, off the async threads).
fn job_row(slot: &super::Slot, history: Vec<pushguard::RunRecord>, now: DateTime<Utc>) -> JobRow {
    let job = slot.job();
    let next = *slot.next.lock().unwrap_or_else(|p| p.into_inner());
    let running = slot.running.lock().unwrap_or_else(|p| p.into_inner()).len();
    let mut runs: Vec<Run> = history.into_iter().filter_map(Run::from_record).collect();
    // The run this process ended last may not be in the history yet (its
    // record is written when its push is done).
    let live = slot.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(last) = live {
        let start = DateTime::<Utc>::from(last.started);
        let recorded = runs.first().is_some_and(|run| {
            (run.start - start).num_milliseconds().abs() < 1_000 || run.start > start
        });
        if !recorded {
            runs.insert(
                0,
                Run {
                    id: None,
                    start,
                    duration: last
                        .ended
                        .duration_since(last.started)
                        .unwrap_or_default()
                        .as_secs_f64(),
                    outcome: last.outcome.as_str().to_owned(),
                    exit_code: last.exit_code,
                    trace_id: None,
                    push_status: "pending".to_owned(),
                    output: (!last.tail.is_empty()).then_some(last.tail),
                    host: None,
                },
            );
        }
    }
    JobRow {
        status: status(&job, &runs, running, next, now),
        name: job.name.clone(),
        description: job.description.clone(),
        labels: job.labels.clone(),
        schedule: job.schedule.spec().to_owned(),
        schedule_words: job.schedule.describe(),
        timezone: job.schedule.timezone(),
        overlap: overlap_word(job.overlap),
        next: if job.enabled { next } else { None },
        running,
        runs,
        fired_by: None,
    }
}

fn letter(entry: pushguard::OutboxEntry) -> Letter {
    Letter {
        job: format::job_of_path(&entry.path),
        created: format::from_unix(entry.created),
        path: entry.path,
        method: entry.method,
        bytes: entry.bytes,
        attempts: entry.attempts,
        last_error: entry.last_error,
        dead: entry.dead,
    }
}

// ---------------------------------------------------------------------------
// Access

/// Why a page request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// A token is configured and the request did not carry it.
    NoToken,
    /// No token is configured and the listener is not loopback.
    Closed,
}

impl Refusal {
    /// The answer to a page read: the browser's sign-in prompt for a token.
    fn page(self) -> Response {
        match self {
            Refusal::NoToken => {
                let mut answer = html(
                    StatusCode::UNAUTHORIZED,
                    view::message(
                        "Sign in",
                        "This runner needs its API token: sign in with any user name and the \
                         token as the password, or send it as a bearer token.",
                        None,
                    ),
                );
                answer.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"pushguard runner\", charset=\"UTF-8\""),
                );
                answer
            }
            Refusal::Closed => html(
                StatusCode::FORBIDDEN,
                view::message(
                    "Not available here",
                    "The status page is refused on this address: configure api_token, or \
                     listen on a loopback address.",
                    None,
                ),
            ),
        }
    }
}

/// The API's access rule for a page request, with the token from `field`
/// (the trigger form) or the `Authorization` header.
fn admit(
    shared: &Shared,
    headers: &HeaderMap,
    local: SocketAddr,
    field: Option<&str>,
) -> Result<Gate, Refusal> {
    match shared.settings.trigger_access_at(local) {
        TriggerAccess::Loopback => Ok(Gate::Open),
        TriggerAccess::Token(token) => {
            let given = field
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .or_else(|| credential(headers));
            if given.is_some_and(|given| token.matches(&given)) {
                Ok(Gate::Token)
            } else {
                Err(Refusal::NoToken)
            }
        }
        TriggerAccess::Refused => Err(Refusal::Closed),
    }
}

/// The token of an `Authorization` header: a bearer token, or the password
/// of HTTP Basic (the browser's sign-in prompt).
fn credential(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim_start();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_owned());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_owned())
}

/// A form post from another site (a page that makes the visitor's browser
/// post here, with credentials the browser holds) is refused: the browser
/// says where a request comes from in `Sec-Fetch-Site` and `Origin`.
pub(super) fn cross_site(headers: &HeaderMap) -> bool {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = value("sec-fetch-site")
        && site != "same-origin"
        && site != "none"
    {
        return true;
    }
    match (value("origin"), value("host")) {
        (Some(origin), Some(host)) => {
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            origin_host != host
        }
        (Some(_), None) => true,
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// Handlers

fn html(status: StatusCode, markup: maud::Markup) -> Response {
    let mut answer = (status, markup.into_string()).into_response();
    let headers = answer.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    // Job output can hold secrets: no caches, no referrer to a trace UI.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    answer
}

async fn overview(AxumState(shared): App, headers: HeaderMap, local: SocketAddr) -> Response {
    let gate = match admit(&shared, &headers, local, None) {
        Ok(gate) => gate,
        Err(refusal) => return refusal.page(),
    };
    let read = shared.clone();
    let gathered = tokio::task::spawn_blocking(move || gather(&read)).await;
    match gathered {
        Ok(page) => html(StatusCode::OK, view::overview(&Overview { gate, ..page })),
        Err(_) => html(
            StatusCode::INTERNAL_SERVER_ERROR,
            view::message("Error", "the status could not be read", Some("/")),
        ),
    }
}

/// Reads every job's last runs and the outbox (blocking: the state store).
fn gather(shared: &Shared) -> Overview {
    let now = Utc::now();
    let slots: Vec<Arc<super::Slot>> = shared
        .slots
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect();
    let mut jobs: Vec<JobRow> = slots
        .iter()
        .map(|slot| {
            let name = slot.job().name.clone();
            let history = shared
                .state
                .history(Some(&name), format::CHART_RUNS)
                .unwrap_or_default();
            job_row(slot, history, now)
        })
        .collect();
    jobs.sort_by(|a, b| a.status.cmp(&b.status).then_with(|| a.name.cmp(&b.name)));
    let shared_schedule = shared.fleet.is_some();
    if shared_schedule && let Ok(fires) = shared.state.last_fires() {
        for job in &mut jobs {
            job.fired_by = fires
                .iter()
                .find(|f| f.fire.job() == job.name)
                .map(|f| f.fire.runner().to_owned());
        }
    }
    let outbox = shared
        .state
        .outbox()
        .map(|entries| entries.into_iter().map(letter).collect())
        .map_err(|error| error.to_string());
    Overview {
        now,
        runner: shared.runner_id.clone(),
        shared_schedule,
        jobs,
        outbox,
        gate: Gate::Open,
        refresh: REFRESH,
    }
}

#[derive(Debug, Deserialize)]
struct JobQuery {
    /// The run whose output to show; default: the newest with output.
    run: Option<i64>,
    limit: Option<usize>,
}

async fn job_page(
    AxumState(shared): App,
    Path(name): Path<String>,
    Query(query): Query<JobQuery>,
    headers: HeaderMap,
    local: SocketAddr,
) -> Response {
    let gate = match admit(&shared, &headers, local, None) {
        Ok(gate) => gate,
        Err(refusal) => return refusal.page(),
    };
    let Some(slot) = super::Runner {
        shared: shared.clone(),
    }
    .slot(&name) else {
        return html(
            StatusCode::NOT_FOUND,
            view::message(
                "No such job",
                &format!("There is no job named “{name}”."),
                Some("/"),
            ),
        );
    };
    let limit = query.limit.unwrap_or(HISTORY).clamp(1, 10_000);
    let read = shared.clone();
    let gathered = tokio::task::spawn_blocking(move || {
        let history = read.state.history(Some(&name), limit);
        let (history, error) = match history {
            Ok(runs) => (runs, None),
            Err(error) => (Vec::new(), Some(error.to_string())),
        };
        (job_row(&slot, history, Utc::now()), error)
    })
    .await;
    let Ok((job, history_error)) = gathered else {
        return html(
            StatusCode::INTERNAL_SERVER_ERROR,
            view::message("Error", "the history could not be read", Some("/")),
        );
    };
    let shown = match query.run {
        Some(id) => job.runs.iter().find(|run| run.id == Some(id)).cloned(),
        None => job.runs.iter().find(|run| run.output.is_some()).cloned(),
    };
    let page = JobPage {
        now: Utc::now(),
        shown,
        history_error,
        trace_url: shared.settings.trace_url.clone(),
        gate,
        refresh: REFRESH,
        job,
    };
    html(StatusCode::OK, view::job_page(&page))
}

#[derive(Debug, Deserialize)]
struct TriggerForm {
    #[serde(default)]
    token: String,
}

async fn trigger(
    AxumState(shared): App,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<TriggerForm>,
    local: SocketAddr,
) -> Response {
    if cross_site(&headers) {
        let refused = Triggered::Refused(
            "the request came from another site; use the button on this runner's page".to_owned(),
        );
        return html(StatusCode::FORBIDDEN, view::triggered(&name, &refused));
    }
    if let Err(refusal) = admit(&shared, &headers, local, Some(&form.token)) {
        // No sign-in prompt here: the form's field is the way to give it.
        let (status, reason) = match refusal {
            Refusal::NoToken => (
                StatusCode::UNAUTHORIZED,
                "the API token is missing or wrong",
            ),
            Refusal::Closed => (
                StatusCode::FORBIDDEN,
                "triggers are refused on this address: configure api_token, or listen on a \
                 loopback address",
            ),
        };
        return html(
            status,
            view::triggered(&name, &Triggered::Refused(reason.to_owned())),
        );
    }
    let runner = super::Runner { shared };
    let answer = if runner.running_and_forbidding(&name) {
        Triggered::Skipped
    } else if runner.trigger(&name).is_some() {
        Triggered::Started
    } else {
        Triggered::NoSuchJob
    };
    let status = match answer {
        Triggered::Started => StatusCode::ACCEPTED,
        Triggered::Skipped => StatusCode::CONFLICT,
        Triggered::NoSuchJob => StatusCode::NOT_FOUND,
        Triggered::Refused(_) => StatusCode::FORBIDDEN,
    };
    html(status, view::triggered(&name, &answer))
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", include_str!("page/page.css"))
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("page/page.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JobDefaults;

    fn spec(toml: &str) -> JobSpec {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("job.toml");
        std::fs::write(&file, toml).unwrap();
        JobSpec::from_file(&file, &JobDefaults::default()).unwrap()
    }

    fn run(outcome: &str, start: DateTime<Utc>, output: Option<&str>) -> Run {
        Run {
            id: Some(start.timestamp()),
            start,
            duration: 1.5,
            outcome: outcome.to_owned(),
            exit_code: i32::from(outcome != "success"),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".to_owned()),
            push_status: "delivered".to_owned(),
            output: output.map(str::to_owned),
            host: Some("host".to_owned()),
        }
    }

    const HOSTILE: &str = "<script>alert(\"x\")</script> it's \u{202E}gnp.exe";

    fn hostile_row(now: DateTime<Utc>) -> JobRow {
        let output = format!("{HOSTILE}\nمرحبا بالعالم\n</pre><img src=x onerror=alert(1)>");
        JobRow {
            name: HOSTILE.to_owned(),
            description: Some(HOSTILE.to_owned()),
            labels: BTreeMap::from([
                ("team".to_owned(), HOSTILE.to_owned()),
                ("quote".to_owned(), "\"'&".to_owned()),
            ]),
            schedule: "*/5 * * * *".to_owned(),
            schedule_words: "Every 5 minutes.".to_owned(),
            timezone: Tz::Asia__Tokyo,
            overlap: "forbid",
            next: Some(now + chrono::TimeDelta::seconds(245)),
            running: 0,
            runs: vec![run(
                "failure",
                now - chrono::TimeDelta::seconds(60),
                Some(&output),
            )],
            status: Status::Failing,
            fired_by: Some(HOSTILE.to_owned()),
        }
    }

    #[test]
    fn failing_and_overdue_jobs_sort_first() {
        let mut statuses = [
            Status::Ok,
            Status::NotRun,
            Status::Overdue,
            Status::Disabled,
            Status::Running,
            Status::Failing,
            Status::Skipped,
        ];
        statuses.sort();
        assert_eq!(
            &statuses[..3],
            [Status::Failing, Status::Overdue, Status::Running]
        );
    }

    #[test]
    fn status_reads_the_runs_and_the_schedule() {
        let hourly = spec("schedule = \"0 * * * *\"\ncommand = [\"true\"]\n");
        let now: DateTime<Utc> = "2026-11-30T14:10:00Z".parse().unwrap();
        let ago = |minutes| now - chrono::TimeDelta::minutes(minutes);
        let next = Some(now + chrono::TimeDelta::minutes(50));
        assert_eq!(status(&hourly, &[], 0, next, now), Status::NotRun);
        assert_eq!(
            status(&hourly, &[run("success", ago(10), None)], 0, next, now),
            Status::Ok
        );
        assert_eq!(
            status(&hourly, &[run("success", ago(10), None)], 1, next, now),
            Status::Running
        );
        // A skipped run does not hide the failure before it.
        let runs = [run("skipped", ago(5), None), run("timeout", ago(10), None)];
        assert_eq!(status(&hourly, &runs, 0, next, now), Status::Failing);
        // Last real run older than twice the hourly gap.
        let runs = [
            run("skipped", ago(5), None),
            run("success", ago(5 * 60), None),
        ];
        assert_eq!(status(&hourly, &runs, 0, next, now), Status::Overdue);
        // A timer whose fire time is long past.
        let late = Some(ago(10));
        assert_eq!(
            status(&hourly, &[run("success", ago(70), None)], 0, late, now),
            Status::Overdue
        );
        assert_eq!(
            status(&hourly, &[run("skipped", ago(5), None)], 0, next, now),
            Status::Skipped
        );
        let off = spec("schedule = \"0 * * * *\"\ncommand = [\"true\"]\nenabled = false\n");
        assert_eq!(
            status(&off, &[run("failure", ago(5), None)], 0, None, now),
            Status::Disabled
        );
    }

    /// Only the page's own script element, and no hostile text unescaped.
    fn assert_escaped(html: &str) {
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img src=x"), "{html}");
        assert_eq!(
            html.matches("<script").count(),
            html.matches("<script src=\"/assets/page.js\" defer>")
                .count(),
            "{html}"
        );
        assert!(
            html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"),
            "{html}"
        );
        assert!(
            html.contains("<bdi>&lt;script&gt;"),
            "names and labels are isolated: {html}"
        );
    }

    #[test]
    fn hostile_names_labels_and_output_are_escaped() {
        let now = Utc::now();
        let overview = Overview {
            now,
            runner: HOSTILE.to_owned(),
            shared_schedule: true,
            jobs: vec![hostile_row(now)],
            outbox: Ok(vec![Letter {
                job: Some(HOSTILE.to_owned()),
                path: "/metrics/job/x".to_owned(),
                method: "POST".to_owned(),
                bytes: 10,
                created: Some(now),
                attempts: 1,
                last_error: Some(HOSTILE.to_owned()),
                dead: true,
            }]),
            gate: Gate::Token,
            refresh: REFRESH,
        };
        let html = view::overview(&overview).into_string();
        assert_escaped(&html);
        assert!(
            html.contains("\"'&amp;") || html.contains("&quot;'&amp;"),
            "{html}"
        );
        assert!(html.contains("in 4 min"), "{html}");
        assert!(html.contains("<svg class=\"chart\""), "{html}");
        assert!(
            html.contains("type=\"password\""),
            "the token field: {html}"
        );
        assert!(html.contains("dead letter"), "{html}");

        let page = JobPage {
            now,
            shown: hostile_row(now).runs.first().cloned(),
            job: hostile_row(now),
            history_error: None,
            trace_url: Some("http://jaeger:16686/trace/{trace_id}".to_owned()),
            gate: Gate::Open,
            refresh: REFRESH,
        };
        let html = view::job_page(&page).into_string();
        assert_escaped(&html);
        assert!(html.contains("<bdi>مرحبا بالعالم</bdi>"), "{html}");
        assert!(html.contains("&lt;/pre&gt;&lt;img src=x"), "{html}");
        assert!(
            html.contains("href=\"http://jaeger:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736\""),
            "{html}"
        );
        assert!(
            !html.contains("type=\"password\""),
            "no token field on loopback: {html}"
        );

        let html = view::triggered(HOSTILE, &Triggered::Skipped).into_string();
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("still running"), "{html}");
    }

    #[test]
    fn the_token_comes_from_bearer_or_the_basic_password() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert_eq!(credential(&headers).as_deref(), Some("s3cret"));
        // "anyone:s3:cret"
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YW55b25lOnMzOmNyZXQ="),
        );
        assert_eq!(credential(&headers).as_deref(), Some("s3:cret"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Digest x"));
        assert_eq!(credential(&headers), None);
    }

    #[test]
    fn form_posts_from_other_sites_are_refused() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_static(value));
            }
            map
        };
        assert!(
            !cross_site(&headers(&[])),
            "curl and scripts send neither header"
        );
        assert!(!cross_site(&headers(&[
            ("sec-fetch-site", "same-origin"),
            ("origin", "http://127.0.0.1:9465"),
            ("host", "127.0.0.1:9465"),
        ])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_site(&headers(&[
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:9465"),
        ])));
    }
}
