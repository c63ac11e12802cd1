//! Criterion benches of the push path.
//!
//! - `guard start+finish, no network`: everything a guard's `finish` does
//!   before the HTTP request — the eight contract families, one small user
//!   registry, the grouping check and the group's path — through the public
//!   [`Body`] API.
//! - `guard push over keep-alive`: `JobRun::start` + `finish` against a real
//!   Pushgateway that this bench starts on a free loopback port; every run
//!   shares one [`Gateway`], so pushes reuse one kept-alive connection.
//!   Skipped, with a note, when `/usr/bin/prometheus-pushgateway` is missing.
//! - `encode 16-family registry`: `Body::add_registry` of a registry with
//!   counters, gauges and histograms, some labelled.
//! - `grouping key path`: `GroupingKey::path` with values that travel as
//!   base64 (space, `/`, non-ASCII, empty).
//!
//! - `guard write over keep-alive` (feature `remote-write`): the same run
//!   written to a Prometheus remote-write receiver, when
//!   `PUSHGUARD_BENCH_REMOTE_WRITE_URL` names one (`scripts/bench
//!   remote-write` starts Prometheus and sets it). The runs rotate over 64
//!   groups, so one series never gets two samples in one millisecond
//!   (a receiver refuses a second value at the same timestamp).
//!
//! `scripts/bench` runs the keep-alive bench and compares it with a Python
//! `prometheus_client` loop.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use prometheus::{
    Counter, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, Opts, Registry,
};
use pushguard::catalog::CONTRACT_FAMILIES;
use pushguard::{Body, Gateway, GroupingKey, JobRun, Outcome};

#[path = "support/gateway.rs"]
mod gateway;

use gateway::{Pushgateway, have_pushgateway};

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The registry a job would hand the guard: three small families.
fn small_user_registry() -> Registry {
    let registry = Registry::new();
    let rows = IntCounter::new("etl_rows_total", "Rows loaded by the run.").expect("valid counter");
    let lag = GaugeVec::new(
        Opts::new("etl_lag_seconds", "Lag behind the source."),
        &["source"],
    )
    .expect("valid gauge");
    let batch = Histogram::with_opts(
        HistogramOpts::new("etl_batch_seconds", "Time per batch.")
            .buckets(vec![0.01, 0.1, 1.0, 10.0]),
    )
    .expect("valid histogram");
    registry.register(Box::new(rows.clone())).expect("register");
    registry.register(Box::new(lag.clone())).expect("register");
    registry
        .register(Box::new(batch.clone()))
        .expect("register");
    rows.inc_by(1200);
    lag.with_label_values(&["orders"]).set(3.5);
    lag.with_label_values(&["users"]).set(0.25);
    for v in [0.005, 0.02, 0.3, 2.5] {
        batch.observe(v);
    }
    registry
}

/// The body `JobGuard::finish` pushes for a successful run, built with the
/// public API: the eight contract families (`job_runs_total` with its four
/// outcome samples) and the user's registry, then the grouping check and the
/// group's path. `add_text` parses the counter's four lines, which the guard
/// itself formats directly, so this slightly overstates the guard's cost.
fn run_body(key: &GroupingKey, user: &Registry, run: u64) -> (Body, String) {
    let started = unix_now();
    let mut body = Body::new();
    for name in CONTRACT_FAMILIES {
        if name == "job_runs_total" {
            let mut text = String::with_capacity(256);
            text.push_str("# HELP job_runs_total Runs by outcome (success, failure, timeout, skipped).\n# TYPE job_runs_total counter\n");
            for (outcome, total) in Outcome::ALL.iter().zip([run, 0, 0, 0]) {
                let _ = writeln!(
                    text,
                    "job_runs_total{{outcome=\"{}\"}} {total}",
                    outcome.as_str()
                );
            }
            body.add_text(&text).expect("valid counter text");
        } else {
            body.gauge(name, "A contract family, as the guard pushes it.", started)
                .expect("valid gauge");
        }
    }
    body.add_registry(user).expect("valid user registry");
    body.check_grouping(key)
        .expect("no grouping label in the body");
    let path = key.path();
    (body, path)
}

/// A registry of 16 families: counters, gauges and histograms, some labelled.
fn sixteen_family_registry() -> Registry {
    let r = Registry::new();
    let reg = |c: Box<dyn prometheus::core::Collector>| r.register(c).expect("register");

    let read = IntCounter::new("etl_rows_read_total", "Rows read.").expect("metric");
    let written = IntCounter::new("etl_rows_written_total", "Rows written.").expect("metric");
    let rejected = IntCounterVec::new(
        Opts::new("etl_rows_rejected_total", "Rows rejected."),
        &["reason"],
    )
    .expect("metric");
    let bytes_in = Counter::new("etl_bytes_read_total", "Bytes read.").expect("metric");
    let bytes_out = Counter::new("etl_bytes_written_total", "Bytes written.").expect("metric");
    let requests = IntCounterVec::new(
        Opts::new("etl_http_requests_total", "HTTP requests to the source."),
        &["method", "code"],
    )
    .expect("metric");
    let retries = IntCounter::new("etl_retries_total", "Retried batches.").expect("metric");
    let batches = IntCounterVec::new(
        Opts::new("etl_batches_total", "Batches per table."),
        &["table"],
    )
    .expect("metric");
    let queue = Gauge::new("etl_queue_depth", "Items waiting.").expect("metric");
    let busy = IntGauge::new("etl_workers_busy", "Busy workers.").expect("metric");
    let batch_size = GaugeVec::new(
        Opts::new("etl_last_batch_size", "Rows in the last batch."),
        &["table"],
    )
    .expect("metric");
    let memory = Gauge::new("etl_memory_bytes", "Resident memory.").expect("metric");
    let lag = GaugeVec::new(
        Opts::new("etl_lag_seconds", "Lag behind the source."),
        &["source"],
    )
    .expect("metric");
    let checkpoint =
        Gauge::new("etl_checkpoint_timestamp_seconds", "Last checkpoint.").expect("metric");
    let batch_time = Histogram::with_opts(HistogramOpts::new(
        "etl_batch_duration_seconds",
        "Time per batch.",
    ))
    .expect("metric");
    let request_time = HistogramVec::new(
        HistogramOpts::new("etl_request_duration_seconds", "Time per source request.")
            .buckets(vec![0.005, 0.01, 0.05, 0.1, 0.5, 1.0]),
        &["endpoint"],
    )
    .expect("metric");

    reg(Box::new(read.clone()));
    reg(Box::new(written.clone()));
    reg(Box::new(rejected.clone()));
    reg(Box::new(bytes_in.clone()));
    reg(Box::new(bytes_out.clone()));
    reg(Box::new(requests.clone()));
    reg(Box::new(retries.clone()));
    reg(Box::new(batches.clone()));
    reg(Box::new(queue.clone()));
    reg(Box::new(busy.clone()));
    reg(Box::new(batch_size.clone()));
    reg(Box::new(memory.clone()));
    reg(Box::new(lag.clone()));
    reg(Box::new(checkpoint.clone()));
    reg(Box::new(batch_time.clone()));
    reg(Box::new(request_time.clone()));

    read.inc_by(120_000);
    written.inc_by(119_500);
    for (reason, n) in [("schema", 300), ("duplicate", 150), ("too_large", 50)] {
        rejected.with_label_values(&[reason]).inc_by(n);
    }
    bytes_in.inc_by(8.4e8);
    bytes_out.inc_by(7.9e8);
    for (method, code, n) in [
        ("GET", "200", 940),
        ("GET", "404", 3),
        ("POST", "200", 120),
        ("POST", "503", 2),
    ] {
        requests.with_label_values(&[method, code]).inc_by(n);
    }
    retries.inc_by(5);
    for (table, n) in [("orders", 40), ("users", 12), ("events", 250)] {
        batches.with_label_values(&[table]).inc_by(n);
        batch_size
            .with_label_values(&[table])
            .set(f64::from(n as u32 * 100));
    }
    queue.set(17.0);
    busy.set(4);
    memory.set(2.5e8);
    lag.with_label_values(&["kafka"]).set(1.25);
    lag.with_label_values(&["postgres"]).set(0.004);
    checkpoint.set(1.7e9);
    for i in 0..200 {
        batch_time.observe(f64::from(i) * 0.013);
        let endpoint = if i % 3 == 0 {
            "/v1/orders"
        } else {
            "/v1/users"
        };
        request_time
            .with_label_values(&[endpoint])
            .observe(f64::from(i) * 0.004);
    }
    r
}

fn bench_run_body(c: &mut Criterion) {
    let key = GroupingKey::new("bench").expect("valid job");
    let user = small_user_registry();
    let mut run = 0u64;
    c.bench_function("guard start+finish, no network", |b| {
        b.iter(|| {
            run += 1;
            black_box(run_body(black_box(&key), black_box(&user), run))
        })
    });
}

fn bench_push(c: &mut Criterion) {
    if !have_pushgateway("guard push over keep-alive") {
        return;
    }
    // Started on first use, so a filter that skips this bench starts nothing;
    // killed when criterion drops the closure.
    let mut server: Option<(Pushgateway, Gateway)> = None;
    c.bench_function("guard push over keep-alive", move |b| {
        let (_, gateway) = server.get_or_insert_with(|| {
            let process = Pushgateway::start().unwrap_or_else(|e| panic!("{e}"));
            let gateway = process.client();
            (process, gateway)
        });
        b.iter(|| {
            let guard = JobRun::new("bench")
                .gateway(gateway.clone())
                .without_state()
                .without_tracing()
                .start()
                .unwrap_or_else(|e| panic!("cannot start the run: {e}"));
            let report = guard
                .finish(Outcome::Success)
                .unwrap_or_else(|e| panic!("push failed: {e}"));
            assert_eq!(report.attempts, 1, "a push needed retries: {report:?}");
            black_box(report)
        })
    });
}

#[cfg(feature = "remote-write")]
fn bench_write(c: &mut Criterion) {
    let Ok(url) = std::env::var("PUSHGUARD_BENCH_REMOTE_WRITE_URL") else {
        eprintln!(
            "guard write over keep-alive: skipped, PUSHGUARD_BENCH_REMOTE_WRITE_URL is not set"
        );
        return;
    };
    let writer = Gateway::builder()
        .remote_write(url)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut run = 0u64;
    c.bench_function("guard write over keep-alive", move |b| {
        b.iter(|| {
            run += 1;
            let guard = JobRun::new("bench_rw")
                .label("slot", (run % 64).to_string())
                .gateway(writer.clone())
                .without_state()
                .without_tracing()
                .start()
                .unwrap_or_else(|e| panic!("cannot start the run: {e}"));
            let report = guard
                .finish(Outcome::Success)
                .unwrap_or_else(|e| panic!("write failed: {e}"));
            assert_eq!(report.attempts, 1, "a write needed retries: {report:?}");
            black_box(report)
        })
    });
}

#[cfg(not(feature = "remote-write"))]
fn bench_write(_: &mut Criterion) {}

fn bench_registry(c: &mut Criterion) {
    let registry = sixteen_family_registry();
    assert_eq!(registry.gather().len(), 16);
    c.bench_function("encode 16-family registry", |b| {
        b.iter(|| {
            let mut body = Body::new();
            body.add_registry(black_box(&registry))
                .expect("valid registry");
            black_box(body)
        })
    });
}

fn bench_grouping_path(c: &mut Criterion) {
    let key = GroupingKey::new("nightly etl")
        .and_then(|k| k.label("host", "db-1.example"))
        .and_then(|k| k.label("path", "/var/lib/etl/in"))
        .and_then(|k| k.label("region", "東京"))
        .and_then(|k| k.label("shard", ""))
        .expect("valid grouping key");
    assert!(key.path().contains("@base64/"));
    c.bench_function("grouping key path", |b| b.iter(|| black_box(&key).path()));
}

/// The span the guard opens and ends for a run, with its attributes; ended
/// spans go to the batch processor's queue (the export itself runs on its own
/// thread and is not part of this figure).
fn bench_span(c: &mut Criterion) {
    use pushguard::opentelemetry::KeyValue;
    use pushguard::opentelemetry::trace::{Span as _, Tracer as _};

    let tracing = pushguard::Tracing::builder()
        .endpoint("http://127.0.0.1:9/v1/traces")
        .build()
        .expect("tracer provider");
    let tracer = tracing.tracer();
    c.bench_function("run span start+end", |b| {
        b.iter(|| {
            let mut span = tracer
                .span_builder("bench_job")
                .with_attributes(vec![
                    KeyValue::new("job.name", "bench_job"),
                    KeyValue::new("job.label.team", "media"),
                ])
                .start(tracer);
            span.set_attributes(vec![
                KeyValue::new("job.outcome", "success"),
                KeyValue::new("process.exit.code", 0_i64),
                KeyValue::new("job.push", "delivered"),
            ]);
            span.end();
        })
    });
    let guard = JobRun::new("bench_span")
        .gateway_url("http://127.0.0.1:9")
        .without_state()
        .tracing(tracing.clone())
        .start()
        .expect("guard");
    c.bench_function("guard context + child env", |b| {
        b.iter(|| black_box(guard.child_env()))
    });
    drop(guard.finish(pushguard::Outcome::Success));
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_run_body, bench_push, bench_write, bench_registry, bench_grouping_path, bench_span
}
criterion_main!(benches);
