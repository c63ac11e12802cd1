//! The runner's HTTP endpoint: health, its own metrics and every job's latest
//! run metrics (so Prometheus can scrape the runner without a Pushgateway),
//! a small JSON API, and the status page for people (`page`).
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use pushguard::prometheus::Encoder as _;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{LastRun, Shared};
use crate::config::TriggerAccess;

/// The runner's own metrics.
pub(crate) struct RunnerMetrics {
    registry: pushguard::prometheus::Registry,
    system: pushguard::SystemMetrics,
    http: pushguard::HttpMetrics,
    pub lag: pushguard::prometheus::Histogram,
    pub running: pushguard::prometheus::IntGauge,
    outbox: pushguard::prometheus::IntGauge,
    reloads: pushguard::prometheus::IntCounter,
    last_reload: pushguard::prometheus::Gauge,
}

impl RunnerMetrics {
    /// The registry `/metrics` serves.
    pub(crate) fn registry(&self) -> &pushguard::prometheus::Registry {
        &self.registry
    }

    /// Counts a reload of the job files that was applied, now.
    pub(crate) fn reloaded(&self) {
        self.reloads.inc();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        self.last_reload.set(now.as_secs_f64());
    }

    pub(crate) fn new() -> RunnerMetrics {
        let registry = pushguard::prometheus::Registry::new();
        let lag = pushguard::prometheus::Histogram::with_opts(
            pushguard::prometheus::HistogramOpts::new(
                "pushguard_schedule_lag_seconds",
                "Actual start minus scheduled time of runs.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
        )
        .expect("static histogram options are valid");
        let running =
            pushguard::prometheus::IntGauge::new("pushguard_running_jobs", "Runs in progress.")
                .expect("static gauge options are valid");
        let outbox = pushguard::prometheus::IntGauge::new(
            "pushguard_outbox_depth",
            "Pushes waiting in the outbox (dead letters included).",
        )
        .expect("static gauge options are valid");
        let reloads = pushguard::prometheus::IntCounter::new(
            "pushguard_reloads_total",
            "Reloads of the job files (SIGHUP) applied.",
        )
        .expect("static counter options are valid");
        let last_reload = pushguard::prometheus::Gauge::new(
            "pushguard_last_reload_timestamp_seconds",
            "Unix time the last reload of the job files was applied; 0 before the first.",
        )
        .expect("static gauge options are valid");
        for collector in [
            Box::new(lag.clone()) as Box<dyn pushguard::prometheus::core::Collector>,
            Box::new(running.clone()),
            Box::new(outbox.clone()),
            Box::new(reloads.clone()),
            Box::new(last_reload.clone()),
        ] {
            let _ = registry.register(collector);
        }
        RunnerMetrics {
            system: pushguard::SystemMetrics::new(&registry),
            http: pushguard::HttpMetrics::new(&registry),
            registry,
            lag,
            running,
            outbox,
            reloads,
            last_reload,
        }
    }
}

type App = AxumState<Arc<Shared>>;

pub(crate) fn router(shared: Arc<Shared>, local: SocketAddr) -> Router {
    let layer = shared.metrics.http.layer();
    let router = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route(
            "/api/jobs",
            get(move |state: App, headers: HeaderMap| async move {
                match refused(&state.0, &headers, local) {
                    Some(refusal) => refusal,
                    None => jobs(state).await,
                }
            }),
        )
        .route(
            "/api/runs",
            get(
                move |state: App, query: Query<RunsQuery>, headers: HeaderMap| async move {
                    match refused(&state.0, &headers, local) {
                        Some(refusal) => refusal,
                        None => runs(state, query).await,
                    }
                },
            ),
        )
        .route(
            "/api/jobs/{name}/trigger",
            post(move |state: App, path: Path<String>, headers: HeaderMap| {
                trigger(state, path, headers, local)
            }),
        )
        .merge(super::page::routes(local))
        .with_state(shared);
    router.layer(layer)
}

async fn health() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

fn time(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339()
}

async fn metrics(AxumState(shared): App) -> Response {
    let state = shared.state.clone();
    let depth = tokio::task::spawn_blocking(move || state.outbox().map(|e| e.len()))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    shared.metrics.outbox.set(depth as i64);
    shared.metrics.system.refresh();
    #[allow(unused_mut)]
    let mut families = shared.metrics.registry.gather();
    families.extend(builtin_families(&shared));
    let mut buf = Vec::new();
    let _ = pushguard::prometheus::TextEncoder::new().encode(&families, &mut buf);
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    text.push_str(&job_families(&shared));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The application families of every built-in job (store, fetch, notify,
/// calendar, system), each sample labelled with its job, merged by name.
fn builtin_families(shared: &Shared) -> Vec<pushguard::prometheus::proto::MetricFamily> {
    let mut merged: BTreeMap<String, pushguard::prometheus::proto::MetricFamily> = BTreeMap::new();
    let slots = shared
        .slots
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for (name, app) in shared.builtins.all() {
        let mut labels = vec![("job".to_owned(), name.clone())];
        if let Some(slot) = slots.get(&name) {
            labels.extend(
                slot.job()
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
        }
        for mut family in app.registry.gather() {
            // The runner serves the host's gauges once, unlabelled.
            if family.name().starts_with("system_") {
                continue;
            }
            for metric in family.mut_metric().iter_mut() {
                let mut pairs = metric.take_label();
                for (k, v) in &labels {
                    let mut pair = pushguard::prometheus::proto::LabelPair::default();
                    pair.set_name(k.clone());
                    pair.set_value(v.clone());
                    pairs.push(pair);
                }
                metric.set_label(pairs);
            }
            match merged.get_mut(family.name()) {
                Some(existing) => existing.mut_metric().extend(family.take_metric()),
                None => {
                    merged.insert(family.name().to_owned(), family);
                }
            }
        }
    }
    merged.into_values().collect()
}

/// The contract families of every job's last run in this process, labelled
/// with `job` and the job's labels, written by the library's one encoder.
fn job_families(shared: &Shared) -> String {
    let slots = shared
        .slots
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut rows: Vec<(Vec<(String, String)>, LastRun)> = Vec::new();
    for slot in slots.values() {
        let job = slot.job();
        if let Some(last) = slot.last.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            let mut labels = vec![("job".to_owned(), job.name.clone())];
            labels.extend(job.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            rows.push((labels, last));
        }
    }
    let labels: Vec<Vec<(&str, &str)>> = rows
        .iter()
        .map(|(labels, _)| {
            labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect()
        })
        .collect();
    let runs: Vec<pushguard::catalog::LastRun<'_>> = rows
        .iter()
        .zip(&labels)
        .map(|((_, last), labels)| pushguard::catalog::LastRun {
            labels,
            started: last.started,
            ended: last.ended,
            duration: last.ended.duration_since(last.started).unwrap_or_default(),
            outcome: last.outcome,
            exit_code: last.exit_code,
            expected_interval: None,
        })
        .collect();
    let mut text = String::new();
    pushguard::catalog::write_last_runs(&mut text, &runs);
    text
}

/// One job of `/api/jobs`, serialized straight from the runner's records
/// (fields in name order, as the API has always listed them).
#[derive(Serialize)]
struct JobView<'a> {
    enabled: bool,
    labels: &'a BTreeMap<String, String>,
    last: Option<LastView<'a>>,
    last_fire: Option<serde_json::Value>,
    name: &'a str,
    next_run: Option<String>,
    running: usize,
    schedule: &'a str,
    timezone: &'a str,
}

/// The last run of a job in this process, in `/api/jobs`.
#[derive(Serialize)]
struct LastView<'a> {
    attempts: u32,
    ended: String,
    exit_code: i32,
    outcome: &'static str,
    output_tail: &'a str,
    runner: &'a str,
    started: String,
}

async fn jobs(AxumState(shared): App) -> Response {
    // On a shared schedule: the newest fire of each job, whichever runner
    // held it.
    let mut fires = BTreeMap::new();
    if shared.fleet.is_some() {
        let state = shared.state.clone();
        if let Ok(Ok(list)) = tokio::task::spawn_blocking(move || state.last_fires()).await {
            fires = list
                .into_iter()
                .map(|f| (f.fire.job().to_owned(), f))
                .collect();
        }
    }
    let rows: Vec<_> = shared
        .slots
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .map(|slot| {
            let next = *slot.next.lock().unwrap_or_else(|p| p.into_inner());
            let last = slot.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let running = slot.running.lock().unwrap_or_else(|p| p.into_inner()).len();
            (slot.job(), next, last, running)
        })
        .collect();
    let list: Vec<JobView<'_>> = rows
        .iter()
        .map(|(job, next, last, running)| JobView {
            enabled: job.enabled,
            labels: &job.labels,
            last: last.as_ref().map(|l| LastView {
                attempts: l.attempts,
                ended: time(l.ended),
                exit_code: l.exit_code,
                outcome: l.outcome.as_str(),
                output_tail: &l.tail,
                runner: &shared.runner_id,
                started: time(l.started),
            }),
            last_fire: fires.get(&job.name).map(|f| {
                json!({
                    "scheduled": time(f.fire.scheduled()),
                    "runner": f.fire.runner(),
                    "status": f.status,
                    "outcome": f.outcome,
                    "taken_from": f.taken_from,
                })
            }),
            name: &job.name,
            next_run: next.map(|n| n.to_rfc3339()),
            running: *running,
            schedule: job.schedule.spec(),
            timezone: job.schedule.timezone().name(),
        })
        .collect();
    axum::Json(list).into_response()
}

#[derive(Debug, Deserialize)]
struct RunsQuery {
    job: Option<String>,
    limit: Option<usize>,
}

async fn runs(AxumState(shared): App, Query(query): Query<RunsQuery>) -> Response {
    let state = shared.state.clone();
    let limit = query.limit.unwrap_or(20).min(10_000);
    let job = query.job.clone();
    let result = tokio::task::spawn_blocking(move || state.history(job.as_deref(), limit)).await;
    match result {
        Ok(Ok(runs)) => {
            let list: Vec<serde_json::Value> =
                runs.iter().map(pushguard::RunRecord::to_json).collect();
            axum::Json(list).into_response()
        }
        Ok(Err(error)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the history query failed\n",
        )
            .into_response(),
    }
}

/// The one access rule of the API (`/api/jobs`, `/api/runs` and triggers;
/// `/health` and `/metrics` stay open): with a token configured, every
/// request must carry it; without one, only a loopback listener answers.
/// Job output can hold secrets, so reads are guarded like triggers.
fn refused(shared: &Shared, headers: &HeaderMap, local: SocketAddr) -> Option<Response> {
    match shared.settings.trigger_access_at(local) {
        TriggerAccess::Token(token) => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(bearer);
            (!given.is_some_and(|given| token.matches(given))).then(|| {
                (
                    StatusCode::UNAUTHORIZED,
                    "a valid bearer token is required\n",
                )
                    .into_response()
            })
        }
        TriggerAccess::Refused => Some(
            (
                StatusCode::FORBIDDEN,
                "the API is refused: configure api_token, or listen on a loopback address\n",
            )
                .into_response(),
        ),
        TriggerAccess::Loopback => None,
    }
}

async fn trigger(
    AxumState(shared): App,
    Path(name): Path<String>,
    headers: HeaderMap,
    local: SocketAddr,
) -> Response {
    if let Some(refusal) = refused(&shared, &headers, local) {
        return refusal;
    }
    // A page on another site must not make a visitor's browser start jobs
    // (a plain form post needs no preflight), whatever it can reach.
    if super::page::cross_site(&headers) {
        return (
            StatusCode::FORBIDDEN,
            "refused: a trigger posted from another site\n",
        )
            .into_response();
    }
    let runner = super::Runner { shared };
    if runner.running_and_forbidding(&name) {
        // Firing would only record a skipped run: say so instead of 202.
        return (
            StatusCode::CONFLICT,
            axum::Json(json!({
                "job": name,
                "status": "refused",
                "reason": "the job is still running and its overlap policy is forbid",
            })),
        )
            .into_response();
    }
    match runner.trigger(&name) {
        Some(_) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({ "job": name, "status": "started" })),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, format!("no job named {name:?}\n")).into_response(),
    }
}

/// The credentials of an `Authorization: Bearer …` header; the scheme is
/// case-insensitive (RFC 9110, section 11.1).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim_start())
}
