//! The release-delivery service: a small axum app that serves the store and
//! runs the real fetch, notify and calendar jobs on demand, every request
//! counted by the HTTP metrics middleware and every query by the store's.
//!
//! ```text
//! cargo run --example monitoring_integration -- [--listen 127.0.0.1:8080] [--jobs jobs/] [--store releases.db]
//! ```
//!
//! Endpoints: `/`, `/health`, `/metrics`, `/api/works`,
//! `/api/releases/pending`, `POST /api/fetch/simulate`,
//! `POST /api/notify/simulate`, `POST /api/calendar/simulate` (run the job
//! once with the `[settings]` of the `builtin = "fetch" | "notify" |
//! "calendar"` job file in `--jobs`), and `POST /api/load/simulate?seconds=N`
//! (CPU on every core and a burst of store queries, so the system and
//! database alerts can be seen firing).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use pushguard::prometheus::{Encoder as _, Registry, TextEncoder};
use pushguard::{HttpMetrics, SystemMetrics};
use pushguard_releases::{
    CalendarMetrics, CalendarSettings, DbMetrics, FetchMetrics, FetchSettings, NotifyMetrics,
    NotifySettings, Release, Store, WorkKind,
};
use serde_json::{Value, json};

struct App {
    registry: Registry,
    store: Store,
    jobs: PathBuf,
    fetch: FetchMetrics,
    notify: NotifyMetrics,
    calendar: CalendarMetrics,
    system: SystemMetrics,
}

type Shared = State<Arc<App>>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen: SocketAddr = "127.0.0.1:8080".parse()?;
    let mut jobs = PathBuf::from("jobs");
    let mut store_path = PathBuf::from("releases.db");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--listen" => listen = value()?.parse()?,
            "--jobs" => jobs = PathBuf::from(value()?),
            "--store" => store_path = PathBuf::from(value()?),
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }

    let registry = Registry::new();
    let http = HttpMetrics::new(&registry);
    let store = Store::open(&store_path, DbMetrics::new(&registry))?;
    let app = Arc::new(App {
        fetch: FetchMetrics::new(&registry),
        notify: NotifyMetrics::new(&registry),
        calendar: CalendarMetrics::new(&registry),
        system: SystemMetrics::new(&registry),
        registry,
        store,
        jobs,
    });
    let router = Router::new()
        .route("/", get(index))
        .route("/health", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/api/works", get(works))
        .route("/api/releases/pending", get(pending))
        .route("/api/fetch/simulate", post(simulate_fetch))
        .route("/api/notify/simulate", post(simulate_notify))
        .route("/api/calendar/simulate", post(simulate_calendar))
        .route("/api/load/simulate", post(simulate_load))
        .layer(http.layer())
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router).await?;
    Ok(())
}

async fn index() -> Json<Value> {
    Json(json!({
        "service": "release delivery",
        "endpoints": [
            "GET /health", "GET /metrics", "GET /api/works", "GET /api/releases/pending",
            "POST /api/fetch/simulate", "POST /api/notify/simulate",
            "POST /api/calendar/simulate", "POST /api/load/simulate?seconds=N",
        ],
    }))
}

async fn metrics(State(app): Shared) -> Response {
    app.system.refresh();
    let mut text = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&app.registry.gather(), &mut text) {
        return failure(error.to_string());
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn failure(message: String) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({ "error": message })),
    )
        .into_response()
}

fn kind(kind: WorkKind) -> &'static str {
    kind.as_str()
}

async fn works(State(app): Shared) -> Response {
    match app.store.works(500) {
        Ok(works) => Json(
            works
                .iter()
                .map(|w| {
                    json!({
                        "id": w.id, "kind": kind(w.kind), "title": w.title,
                        "native_title": w.native_title, "source": w.source,
                        "source_id": w.source_id, "url": w.url, "updated": w.updated.to_rfc3339(),
                    })
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(error) => failure(error.to_string()),
    }
}

fn release_json(r: &Release) -> Value {
    json!({
        "id": r.id, "kind": kind(r.kind), "title": r.title, "native_title": r.native_title,
        "episode": r.episode, "volume": r.volume, "platform": r.platform,
        "release_time": r.release_time.to_rfc3339(), "source": r.source, "url": r.url,
    })
}

async fn pending(State(app): Shared) -> Response {
    match app.store.pending_releases(500) {
        Ok(releases) => Json(releases.iter().map(release_json).collect::<Vec<_>>()).into_response(),
        Err(error) => failure(error.to_string()),
    }
}

/// The `[settings]` table and directory of the first job file in `dir`
/// (in name order) that runs `builtin`.
fn settings_of(dir: &Path, builtin: &str) -> Result<(toml::Table, PathBuf), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    for file in files {
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let mut job: toml::Table = text
            .parse()
            .map_err(|e| format!("{}: {e}", file.display()))?;
        if job.get("builtin").and_then(toml::Value::as_str) != Some(builtin) {
            continue;
        }
        let settings = match job.remove("settings") {
            Some(toml::Value::Table(table)) => table,
            None => toml::Table::new(),
            Some(_) => return Err(format!("{}: settings: must be a table", file.display())),
        };
        let base = file.parent().map(Path::to_owned).unwrap_or_default();
        return Ok((settings, base));
    }
    Err(format!(
        "no job file in {} has builtin = \"{builtin}\"",
        dir.display()
    ))
}

/// One run's answer: 200 with the report, or 502 with the error (a source
/// or channel failed).
fn ran(result: Result<String, String>) -> Response {
    match result {
        Ok(report) => Json(json!({ "outcome": "success", "report": report })).into_response(),
        Err(error) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({ "outcome": "failure", "error": error })),
        )
            .into_response(),
    }
}

async fn simulate_fetch(State(app): Shared) -> Response {
    let result = async {
        let (table, base) = settings_of(&app.jobs, "fetch")?;
        let settings = FetchSettings::from_table(&table, &base).map_err(|e| e.to_string())?;
        pushguard_releases::fetch(&settings, &app.store, &app.fetch)
            .await
            .map(|r| r.to_string())
            .map_err(|e| e.to_string())
    };
    ran(result.await)
}

async fn simulate_notify(State(app): Shared) -> Response {
    let result = async {
        let (table, base) = settings_of(&app.jobs, "notify")?;
        let settings = NotifySettings::from_table(&table, &base).map_err(|e| e.to_string())?;
        pushguard_releases::notify(&settings, &app.store, &app.notify)
            .await
            .map(|r| r.to_string())
            .map_err(|e| e.to_string())
    };
    ran(result.await)
}

async fn simulate_calendar(State(app): Shared) -> Response {
    let result = async {
        let (table, base) = settings_of(&app.jobs, "calendar")?;
        let settings = CalendarSettings::from_table(&table, &base).map_err(|e| e.to_string())?;
        pushguard_releases::sync_calendar(&settings, &app.store, &app.calendar)
            .await
            .map(|r| r.to_string())
            .map_err(|e| e.to_string())
    };
    ran(result.await)
}

#[derive(serde::Deserialize)]
struct Load {
    seconds: Option<u64>,
}

/// Busy-loops every core and queries the store for `seconds` (default 5, at
/// most 60), then reports how much work was done.
async fn simulate_load(State(app): Shared, Query(load): Query<Load>) -> Response {
    let seconds = load.seconds.unwrap_or(5).min(60);
    let until = Instant::now() + Duration::from_secs(seconds);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut spinners = Vec::new();
    for _ in 0..cores {
        spinners.push(tokio::task::spawn_blocking(move || {
            let mut spins: u64 = 0;
            while Instant::now() < until {
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
            spins
        }));
    }
    let store = app.store.clone();
    let queries = tokio::task::spawn_blocking(move || {
        let mut queries = 0u64;
        while Instant::now() < until {
            let _ = store.count_works(WorkKind::Anime);
            let _ = store.pending_releases(100);
            queries += 2;
        }
        queries
    });
    let mut spins = 0u64;
    for spinner in spinners {
        spins += spinner.await.unwrap_or(0);
    }
    let queries = queries.await.unwrap_or(0);
    Json(json!({ "seconds": seconds, "cores": cores, "spins": spins, "db_queries": queries }))
        .into_response()
}
