//! The job guard against a real Pushgateway: the metric contract, outcomes,
//! the closure form, drop and panic paths.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pushguard::{Gateway, JobRun, Method, Outcome, PushError};

use crate::harness::{Group, Hang, Pushgateway};
use crate::prom;

fn gateway(url: &str) -> Gateway {
    Gateway::builder().url(url).build().expect("gateway")
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn runs(group: &Group, outcome: &str) -> f64 {
    group
        .value("job_runs_total", &[("outcome", outcome)])
        .unwrap_or_else(|| panic!("job_runs_total{{outcome={outcome:?}}} missing"))
}

#[test]
fn a_successful_run_pushes_the_whole_contract() {
    let gw = Pushgateway::start();
    let before = now();
    let mut guard = JobRun::new("contract_success")
        .without_state()
        .gateway(gateway(&gw.url))
        .label("env", "test")
        .start()
        .unwrap();
    let rows = guard.int_counter("etl_rows_total", "Rows.").unwrap();
    rows.inc_by(1200);
    guard
        .gauge("etl_batch_size", "Batch size.")
        .unwrap()
        .set(64.0);
    guard
        .histogram("etl_step_seconds", "Step time.", vec![0.5, 1.0])
        .unwrap()
        .observe(0.2);
    guard.set_exit_code(0);
    let report = guard.finish(Outcome::Success).unwrap();
    let after = now();
    assert_eq!(report.attempts, 1);

    let group = gw
        .group("contract_success", &[("env", "test")])
        .expect("group");
    let start = group
        .value("job_last_start_timestamp_seconds", &[])
        .unwrap();
    let end = group
        .value("job_last_completion_timestamp_seconds", &[])
        .unwrap();
    let success = group
        .value("job_last_success_timestamp_seconds", &[])
        .unwrap();
    assert!(
        before <= start && start <= end && end <= after,
        "{before} {start} {end} {after}"
    );
    assert_eq!(success, end);
    assert!(!group.has("job_last_failure_timestamp_seconds"));
    let duration = group.value("job_duration_seconds", &[]).unwrap();
    assert!(duration >= 0.0 && duration <= after - before + 0.001);
    assert_eq!(group.value("job_last_exit_code", &[]), Some(0.0));
    assert_eq!(group.value("job_last_run_failed", &[]), Some(0.0));
    assert_eq!(runs(&group, "success"), 1.0);
    for outcome in ["failure", "timeout", "skipped"] {
        assert_eq!(runs(&group, outcome), 0.0, "{outcome}");
    }
    assert_eq!(
        group.family_type("job_runs_total").as_deref(),
        Some("COUNTER")
    );
    assert_eq!(
        group.family_type("job_duration_seconds").as_deref(),
        Some("GAUGE")
    );
    assert_eq!(group.value("etl_rows_total", &[]), Some(1200.0));
    assert_eq!(group.value("etl_batch_size", &[]), Some(64.0));
    assert_eq!(
        group.family_type("etl_step_seconds").as_deref(),
        Some("HISTOGRAM")
    );
    // No instance label unless the user sets one.
    assert!(
        !gw.metrics_text().contains("instance=\"contract"),
        "unexpected instance label"
    );
}

#[test]
fn a_failure_keeps_the_last_success_and_counts_cumulatively() {
    let gw = Pushgateway::start();
    let gw_client = gateway(&gw.url);
    let run = || {
        JobRun::new("contract_post")
            .without_state()
            .gateway(gw_client.clone())
    };
    run().start().unwrap().finish(Outcome::Success).unwrap();
    let first = gw.group("contract_post", &[]).unwrap();
    let success = first
        .value("job_last_success_timestamp_seconds", &[])
        .unwrap();

    let mut guard = run().start().unwrap();
    guard.set_exit_code(3);
    guard.finish(Outcome::Failure).unwrap();
    run().start().unwrap().finish(Outcome::Timeout).unwrap();

    let group = gw.group("contract_post", &[]).unwrap();
    assert_eq!(
        group.value("job_last_success_timestamp_seconds", &[]),
        Some(success)
    );
    let failure = group
        .value("job_last_failure_timestamp_seconds", &[])
        .unwrap();
    assert!(failure >= success);
    assert_eq!(group.value("job_last_run_failed", &[]), Some(1.0));
    assert_eq!(
        group.value("job_last_exit_code", &[]),
        Some(1.0),
        "timeout without a code records 1"
    );
    assert_eq!(runs(&group, "success"), 1.0);
    assert_eq!(runs(&group, "failure"), 1.0);
    assert_eq!(runs(&group, "timeout"), 1.0);

    // PUT replaces the group: the success timestamp is gone.
    run()
        .method(Method::Put)
        .start()
        .unwrap()
        .finish(Outcome::Failure)
        .unwrap();
    let group = gw.group("contract_post", &[]).unwrap();
    assert!(!group.has("job_last_success_timestamp_seconds"));
    assert_eq!(runs(&group, "failure"), 2.0);
}

#[test]
fn the_closure_form_maps_ok_err_and_panic() {
    let gw = Pushgateway::start();
    let client = gateway(&gw.url);

    let finished = JobRun::new("closure_ok")
        .without_state()
        .gateway(client.clone())
        .run(|job| {
            job.int_counter("items_total", "Items.")?.inc_by(5);
            Ok::<_, PushError>(17)
        });
    assert_eq!(finished.result.unwrap(), 17);
    finished.push.unwrap();
    let group = gw.group("closure_ok", &[]).unwrap();
    assert!(group.has("job_last_success_timestamp_seconds"));
    assert_eq!(group.value("items_total", &[]), Some(5.0));

    let finished = JobRun::new("closure_err")
        .without_state()
        .gateway(client.clone())
        .run(|_| Err::<(), _>("disk full"));
    assert_eq!(finished.result.unwrap_err(), "disk full");
    finished.push.unwrap();
    let group = gw.group("closure_err", &[]).unwrap();
    assert_eq!(group.value("job_last_run_failed", &[]), Some(1.0));
    assert_eq!(runs(&group, "failure"), 1.0);

    let panicked = std::panic::catch_unwind(|| {
        let _ = JobRun::new("closure_panic")
            .without_state()
            .gateway(client.clone())
            .run(|_| -> Result<(), String> { panic!("boom") });
    });
    let payload = panicked.expect_err("the panic must be resumed");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
    let group = gw
        .group("closure_panic", &[])
        .expect("a panicking run is pushed");
    assert_eq!(group.value("job_last_run_failed", &[]), Some(1.0));
    assert!(group.has("job_last_failure_timestamp_seconds"));
}

#[test]
fn dropping_an_unfinished_guard_pushes_a_failure() {
    let gw = Pushgateway::start();
    let client = gateway(&gw.url);
    {
        let _guard = JobRun::new("dropped")
            .without_state()
            .gateway(client.clone())
            .start()
            .unwrap();
    }
    let group = gw.group("dropped", &[]).expect("drop pushes");
    assert_eq!(runs(&group, "failure"), 1.0);

    let result = std::panic::catch_unwind(|| {
        let _guard = JobRun::new("unwound")
            .without_state()
            .gateway(client.clone())
            .start()
            .unwrap();
        panic!("while the guard is alive");
    });
    assert!(result.is_err());
    let group = gw.group("unwound", &[]).expect("unwinding pushes");
    assert_eq!(group.value("job_last_run_failed", &[]), Some(1.0));
}

#[test]
fn drop_and_finish_are_bounded_when_the_gateway_hangs() {
    let hang = Hang::start();
    let client = Gateway::builder()
        .url(&hang.url)
        .deadline(Duration::from_millis(500))
        .attempt_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = JobRun::new("hang_finish")
        .without_state()
        .gateway(client.clone())
        .start()
        .unwrap()
        .finish(Outcome::Success)
        .unwrap_err();
    assert!(matches!(err, PushError::Timeout { .. }), "{err:?}");
    {
        let _guard = JobRun::new("hang_drop")
            .without_state()
            .gateway(client)
            .start()
            .unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_guard_finishes_inside_a_current_thread_runtime() {
    let gw = Pushgateway::start();
    let client = gateway(&gw.url);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let guard = JobRun::new("in_tokio")
            .without_state()
            .gateway(client.clone())
            .start()
            .unwrap();
        guard.finish(Outcome::Success).unwrap();
        let _dropped = JobRun::new("in_tokio_drop")
            .without_state()
            .gateway(client)
            .start()
            .unwrap();
    });
    assert!(gw.group("in_tokio", &[]).is_some());
    assert!(gw.group("in_tokio_drop", &[]).is_some());
}

#[test]
fn bad_configuration_is_reported_and_the_work_still_runs() {
    let err = JobRun::new("ok")
        .without_state()
        .label("2x", "y")
        .start()
        .unwrap_err();
    assert!(err.to_string().contains("\"2x\""), "{err}");
    let err = JobRun::new("").without_state().start().unwrap_err();
    assert!(matches!(err, PushError::InvalidJobName { .. }));
    let err = JobRun::new("ok")
        .without_state()
        .gateway_url("not a url")
        .start()
        .unwrap_err();
    assert!(err.to_string().contains("\"not a url\""), "{err}");

    let mut ran = false;
    let finished = JobRun::new("ok")
        .without_state()
        .label("job", "x")
        .run(|_| {
            ran = true;
            Ok::<_, String>(())
        });
    assert!(ran, "the work runs even when the push cannot");
    assert!(finished.result.is_ok());
    assert!(finished.push.unwrap_err().to_string().contains("\"job\""));

    let guard = JobRun::new("names")
        .without_state()
        .gateway_url("http://127.0.0.1:1")
        .start()
        .unwrap();
    let err = guard.gauge("job_last_exit_code", "mine").unwrap_err();
    assert!(err.to_string().contains("job_last_exit_code"), "{err}");
    assert!(guard.counter("bad-name", "x").is_err());
    // Nothing listens on port 1: the drop's push fails fast and is dropped.
    drop(guard);
}

#[test]
fn an_existing_registry_is_pushed_as_is() {
    let gw = Pushgateway::start();
    let registry = prometheus::Registry::new();
    let requests = prometheus::IntCounterVec::new(
        prometheus::Opts::new("app_requests_total", "Requests."),
        &["code"],
    )
    .unwrap();
    registry.register(Box::new(requests.clone())).unwrap();
    requests.with_label_values(&["200"]).inc_by(9);
    requests.with_label_values(&["500"]).inc();
    JobRun::new("with_registry")
        .without_state()
        .gateway(gateway(&gw.url))
        .registry(registry)
        .start()
        .unwrap()
        .finish(Outcome::Success)
        .unwrap();
    let group = gw.group("with_registry", &[]).unwrap();
    assert_eq!(
        group.value("app_requests_total", &[("code", "200")]),
        Some(9.0)
    );
    assert_eq!(
        group.value("app_requests_total", &[("code", "500")]),
        Some(1.0)
    );
    assert!(group.has("job_last_success_timestamp_seconds"));
}

/// The group's families as the gateway re-exposes them: `# HELP`, `# TYPE`
/// and samples of every family named `job_*` (the gateway's own families and
/// its Go runtime's are not ours to lint).
fn contract_exposition(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let name = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
            .unwrap_or(line);
        if name.starts_with("job_") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn promtool_accepts_the_pushed_contract_as_the_gateway_exposes_it() {
    let gw = Pushgateway::start();
    let run = |job: &str| {
        JobRun::new(job)
            .without_state()
            .gateway(gateway(&gw.url))
            .label("env", "test")
    };
    let mut guard = run("promtool_success").start().unwrap();
    guard.set_expected_interval(Duration::from_secs(600));
    guard.add_missed_runs("overlap", 2).unwrap();
    guard.finish(Outcome::Success).unwrap();
    let mut guard = run("promtool_failure").start().unwrap();
    guard.set_exit_code(3);
    guard.finish(Outcome::Failure).unwrap();

    let text = contract_exposition(&gw.metrics_text());
    for family in pushguard::catalog::CONTRACT_FAMILIES {
        let help = pushguard::catalog::metric(family).unwrap().help;
        assert!(
            text.contains(&format!("# HELP {family} {help}\n")),
            "{family} has no HELP line from the catalogue:\n{text}"
        );
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family}:\n{text}"
        );
    }
    prom::check_metrics("the pushed contract families", &text, &[]);
}

/// Asserts a run was pushed directly, without the totals the state file
/// holds, and that its report says why, naming `names`.
fn pushed_without_totals(gw: &Pushgateway, job: &str, report: &pushguard::PushReport, names: &str) {
    let warning = report
        .state_warning
        .as_deref()
        .expect("the report says why");
    assert!(warning.contains(names), "{warning}");
    let group = gw.group(job, &[]).expect("the run's group");
    assert_eq!(group.value("job_last_run_failed", &[]), Some(0.0));
    assert!(
        !group.has("job_runs_total"),
        "totals are unknown without the file"
    );
}

/// Asserts the state file at `path` holds the job's one run, delivered, and
/// the gateway its total.
fn recorded_once(gw: &Pushgateway, path: &std::path::Path, job: &str) {
    let state = pushguard::State::open(path).unwrap();
    let runs = state.history(Some(job), 10).unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].push_status, "delivered");
    let group = gw.group(job, &[]).expect("the run's group");
    assert_eq!(group.value("job_runs_total", &[]), Some(1.0));
}

#[test]
fn a_state_file_that_cannot_be_opened_never_stops_the_run() {
    // One policy with exec and the runner: the run goes on, is pushed
    // directly without the totals, and the report says why.
    let gw = Pushgateway::start();
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain-file");
    std::fs::write(&plain, b"not a directory").unwrap();
    let report = JobRun::new("no_state_file")
        .gateway(gateway(&gw.url))
        .state_path(plain.join("state.db"))
        .without_tracing()
        .start()
        .expect("an unusable state file does not stop the start")
        .finish(Outcome::Success)
        .expect("pushed directly");
    pushed_without_totals(&gw, "no_state_file", &report, "plain-file");
}

#[test]
fn a_state_opener_runs_beside_the_work_and_its_failure_is_a_warning() {
    let gw = Pushgateway::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");

    // The opener waits for the work to say it started: the run's start does
    // not wait for the state.
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let opener_path = path.clone();
    let guard = JobRun::new("opened_beside")
        .gateway(gateway(&gw.url))
        .state_opener(move || {
            started_rx
                .recv_timeout(Duration::from_secs(30))
                .expect("the run started before its state was open");
            pushguard::State::open(&opener_path)
        })
        .without_tracing()
        .start()
        .unwrap();
    started_tx.send(()).unwrap();
    let report = guard.finish(Outcome::Success).unwrap();
    assert!(report.state_warning.is_none(), "{report:?}");
    recorded_once(&gw, &path, "opened_beside");

    // An opener that fails: the run is pushed directly, without the totals,
    // and the report names the problem.
    let plain = dir.path().join("plain-file");
    std::fs::write(&plain, b"not a directory").unwrap();
    let report = JobRun::new("opener_failed")
        .gateway(gateway(&gw.url))
        .state_opener(move || pushguard::State::open(plain.join("state.db")))
        .without_tracing()
        .start()
        .unwrap()
        .finish(Outcome::Success)
        .expect("pushed directly");
    pushed_without_totals(&gw, "opener_failed", &report, "plain-file");
}

#[test]
fn a_run_with_a_state_path_starts_while_the_file_is_locked() {
    let gw = Pushgateway::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(pushguard::State::open(&path).unwrap());
    // Another connection holds the file in exclusive locking mode: opening
    // it waits (up to SQLite's 30 s busy timeout).
    let outside = rusqlite::Connection::open(&path).unwrap();
    outside
        .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE")
        .unwrap();
    // The run starts while the file is locked; the work goes on.
    let guard = JobRun::new("locked_path")
        .gateway(gateway(&gw.url))
        .state_path(&path)
        .without_tracing()
        .start()
        .unwrap();
    drop(outside);
    // The open went through once the lock was gone: the run is in the file.
    let report = guard.finish(Outcome::Success).unwrap();
    assert!(report.state_warning.is_none(), "{report:?}");
    recorded_once(&gw, &path, "locked_path");
}
