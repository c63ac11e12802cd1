//! `#[pushguard::job]` against a real Pushgateway and OTLP receiver.
//!
//! A job configured by the attribute takes its gateway, state file and
//! tracing from the environment, as deployed jobs do; environment variables
//! belong to the process, so each test runs its job in a child process (this
//! test binary again, the test alone) with its own environment, then reads
//! what the gateway and the receiver got.

use std::process::{Command, Output};

use pushguard::{Body, Gateway, GroupingKey, Method, PushError};

use crate::harness::Pushgateway;
use crate::otlp::Collector;

/// Set in the child: the job runs there, the assertions in the parent.
const CHILD: &str = "PUSHGUARD_TEST_JOB_CHILD";

fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// Runs the test `name` (in this module) in a child process with `env`
/// besides a gateway and a state file of its own.
fn rerun(name: &str, gw: &Pushgateway, env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command
        .args(["--exact", &format!("job::{name}"), "--nocapture"])
        .args(["--test-threads", "1"])
        .env(CHILD, "1")
        .env("PUSHGATEWAY_URL", &gw.url)
        .env("PUSHGUARD_STATE", dir.path().join("state.db"))
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_SDK_DISABLED");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run the child test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the child test failed:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn tracing_env(otel: &Collector) -> [(&'static str, &str); 2] {
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otel.endpoint.as_str()),
        ("OTEL_SERVICE_NAME", "macro-test"),
    ]
}

#[pushguard::job(
    name = "macro_sync",
    labels(team = "media", env = "prod"),
    expected_interval = "1h 30m"
)]
fn sync_job(rows: u64) -> Result<u64, PushError> {
    let run = pushguard::current();
    run.int_counter("etl_rows_total", "Rows loaded.")?
        .inc_by(rows);
    run.histogram("etl_batch_seconds", "Batch time.", vec![0.5, 1.0])?
        .observe(0.25);
    run.cumulative_counter("etl_rows_all_runs_total", "Rows, all runs.")?
        .inc_by(rows as f64);
    let by_table = prometheus::IntCounterVec::new(
        prometheus::Opts::new("etl_table_rows_total", "Rows by table."),
        &["table"],
    )
    .expect("valid family");
    run.registry()?
        .register(Box::new(by_table.clone()))
        .expect("registered once");
    by_table.with_label_values(&["users"]).inc_by(rows);
    // A thread the job starts has no current run; a clone of the handle
    // moved into it is the run.
    let handle = run.clone();
    std::thread::spawn(move || {
        assert!(!pushguard::current().is_running());
        handle
            .gauge("etl_worker_ran", "Set from a worker thread.")?
            .set(1.0);
        Ok::<_, PushError>(())
    })
    .join()
    .expect("worker thread")?;
    run.set_exit_code(0)?;
    if rows == 0 {
        return Ok(0); // an early return is the job's return value too
    }
    Ok(rows * 2)
}

#[test]
fn a_sync_job_pushes_success_labels_metrics_and_expected_interval() {
    if in_child() {
        assert_eq!(sync_job(21).unwrap(), 42);
        assert!(!pushguard::current().is_running());
        return;
    }
    let gw = Pushgateway::start();
    let output = rerun(
        "a_sync_job_pushes_success_labels_metrics_and_expected_interval",
        &gw,
        &[],
    );
    assert!(
        !stderr(&output).contains("pushguard: warning"),
        "{}",
        stderr(&output)
    );
    let group = gw
        .group("macro_sync", &[("team", "media"), ("env", "prod")])
        .expect("the job's group");
    assert_eq!(group.value("job_last_run_failed", &[]), Some(0.0));
    assert_eq!(group.value("job_last_exit_code", &[]), Some(0.0));
    assert_eq!(
        group.value("job_runs_total", &[("outcome", "success")]),
        Some(1.0)
    );
    assert_eq!(
        group.value("job_expected_interval_seconds", &[]),
        Some(5400.0)
    );
    assert_eq!(group.value("etl_rows_total", &[]), Some(21.0));
    assert_eq!(group.value("etl_rows_all_runs_total", &[]), Some(21.0));
    assert_eq!(
        group.value("etl_table_rows_total", &[("table", "users")]),
        Some(21.0)
    );
    assert_eq!(group.value("etl_worker_ran", &[]), Some(1.0));
    assert_eq!(
        group.family_type("etl_batch_seconds").as_deref(),
        Some("HISTOGRAM")
    );
}

#[derive(Debug)]
struct LoadError(String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "source unreachable: {}", self.0)
    }
}

#[pushguard::job(name = "macro_err")]
fn failing_job() -> Result<(), LoadError> {
    pushguard::current()
        .set_exit_code(3)
        .map_err(|e| LoadError(e.to_string()))?;
    Err(LoadError("feeds.example".to_owned()))
}

#[test]
fn an_err_is_a_failure_with_its_display_as_the_span_error_and_returned_unchanged() {
    if in_child() {
        let error = failing_job().unwrap_err();
        assert_eq!(error.0, "feeds.example");
        return;
    }
    let (gw, otel) = (Pushgateway::start(), Collector::start());
    rerun(
        "an_err_is_a_failure_with_its_display_as_the_span_error_and_returned_unchanged",
        &gw,
        &tracing_env(&otel),
    );
    let group = gw.group("macro_err", &[]).expect("the job's group");
    assert_eq!(group.value("job_last_run_failed", &[]), Some(1.0));
    assert_eq!(group.value("job_last_exit_code", &[]), Some(3.0));
    assert_eq!(
        group.value("job_runs_total", &[("outcome", "failure")]),
        Some(1.0)
    );
    assert!(!group.has("job_last_success_timestamp_seconds"));
    let spans = otel.wait_for("macro_err");
    let span = spans.iter().find(|s| s.name == "macro_err").unwrap();
    assert_eq!(span.status_code, "STATUS_CODE_ERROR");
    assert_eq!(span.status_message, "source unreachable: feeds.example");
}

#[pushguard::job(name = "macro_panic")]
fn panicking_job() {
    pushguard::current()
        .gauge("macro_progress", "Progress.")
        .expect("gauge")
        .set(0.5);
    panic!("boom at row 7");
}

#[test]
fn a_panic_is_pushed_as_a_failure_then_continues_with_its_payload() {
    if in_child() {
        let payload = std::panic::catch_unwind(panicking_job).unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom at row 7"));
        return;
    }
    let (gw, otel) = (Pushgateway::start(), Collector::start());
    let output = rerun(
        "a_panic_is_pushed_as_a_failure_then_continues_with_its_payload",
        &gw,
        &tracing_env(&otel),
    );
    assert!(
        stderr(&output).contains("boom at row 7"),
        "{}",
        stderr(&output)
    );
    let group = gw.group("macro_panic", &[]).expect("the job's group");
    assert_eq!(group.value("job_last_run_failed", &[]), Some(1.0));
    assert_eq!(group.value("job_last_exit_code", &[]), Some(1.0));
    assert_eq!(group.value("macro_progress", &[]), Some(0.5));
    let spans = otel.wait_for("macro_panic");
    let span = spans.iter().find(|s| s.name == "macro_panic").unwrap();
    assert_eq!(span.status_code, "STATUS_CODE_ERROR");
    assert_eq!(span.status_message, "panic: boom at row 7");
}

#[pushguard::job(name = "macro_outer")]
fn outer_job() -> Result<(), PushError> {
    pushguard::current()
        .counter("outer_steps_total", "Steps.")?
        .inc();
    inner_job()?;
    // The outer run is current again after the inner one ended.
    assert_eq!(pushguard::current().job(), Some("macro_outer"));
    Ok(())
}

#[pushguard::job(name = "macro_inner", labels(step = "load"))]
fn inner_job() -> Result<(), PushError> {
    use opentelemetry::trace::{Span as _, Tracer as _};
    assert_eq!(pushguard::current().job(), Some("macro_inner"));
    pushguard::current()
        .counter("inner_rows_total", "Rows.")?
        .inc_by(5.0);
    // A span of the job's own, under the run's context.
    opentelemetry::global::tracer("macro-test")
        .start_with_context("macro_step", &pushguard::current().context())
        .end();
    // A run started with the builder inside a job is its child too.
    pushguard::JobRun::new("macro_plain")
        .start()?
        .finish(pushguard::Outcome::Success)?;
    Ok(())
}

#[test]
fn a_job_calling_a_job_makes_two_runs_and_a_child_span() {
    if in_child() {
        outer_job().unwrap();
        return;
    }
    let (gw, otel) = (Pushgateway::start(), Collector::start());
    rerun(
        "a_job_calling_a_job_makes_two_runs_and_a_child_span",
        &gw,
        &tracing_env(&otel),
    );
    let outer = gw.group("macro_outer", &[]).expect("the outer run");
    let inner = gw
        .group("macro_inner", &[("step", "load")])
        .expect("the inner run");
    assert_eq!(outer.value("outer_steps_total", &[]), Some(1.0));
    assert!(!outer.has("inner_rows_total"));
    assert_eq!(inner.value("inner_rows_total", &[]), Some(5.0));
    assert_eq!(inner.value("job_last_run_failed", &[]), Some(0.0));
    assert!(gw.group("macro_plain", &[]).is_some());
    for name in ["macro_step", "macro_plain", "macro_inner"] {
        otel.wait_for(name);
    }
    let spans = otel.wait_for("macro_outer");
    let span = |name: &str| spans.iter().find(|s| s.name == name).unwrap();
    let (outer, inner) = (span("macro_outer"), span("macro_inner"));
    assert_eq!(inner.trace_id, outer.trace_id);
    assert_eq!(inner.parent_id, outer.id);
    assert_ne!(inner.id, outer.id);
    for child in ["macro_step", "macro_plain"] {
        assert_eq!(span(child).trace_id, outer.trace_id, "{child}");
        assert_eq!(span(child).parent_id, inner.id, "{child}");
    }
}

#[pushguard::job(name = "macro_async")]
async fn async_job(label: &'static str) -> Result<usize, PushError> {
    let mut hops = 0;
    for _ in 0..4 {
        // A spawned task's completion wakes this task, possibly on another
        // worker thread: the run must follow it.
        tokio::spawn(async {}).await.expect("task");
        tokio::task::yield_now().await;
        hops += 1;
    }
    let run = pushguard::current();
    assert_eq!(run.job(), Some("macro_async"));
    run.gauge(label, "Which runtime ran the job.")?.set(1.0);
    let trace = run.trace_id();
    assert_eq!(trace.is_some(), !run.child_env().is_empty());
    Ok(hops)
}

#[test]
fn an_async_job_on_a_current_thread_runtime() {
    if in_child() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert_eq!(runtime.block_on(async_job("current_thread")).unwrap(), 4);
        return;
    }
    let gw = Pushgateway::start();
    rerun("an_async_job_on_a_current_thread_runtime", &gw, &[]);
    let group = gw.group("macro_async", &[]).expect("the job's group");
    assert_eq!(group.value("current_thread", &[]), Some(1.0));
    assert_eq!(group.value("job_last_run_failed", &[]), Some(0.0));
}

#[test]
fn an_async_job_spawned_on_a_multi_thread_runtime() {
    if in_child() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap();
        // Spawned, so the instrumented future must be Send.
        let task = runtime.spawn(async_job("multi_thread"));
        assert_eq!(runtime.block_on(task).unwrap().unwrap(), 4);
        return;
    }
    let (gw, otel) = (Pushgateway::start(), Collector::start());
    rerun(
        "an_async_job_spawned_on_a_multi_thread_runtime",
        &gw,
        &tracing_env(&otel),
    );
    let group = gw.group("macro_async", &[]).expect("the job's group");
    assert_eq!(group.value("multi_thread", &[]), Some(1.0));
    assert_eq!(group.value("job_last_run_failed", &[]), Some(0.0));
    let spans = otel.wait_for("macro_async");
    let span = spans.iter().find(|s| s.name == "macro_async").unwrap();
    assert_eq!(span.status_code, "STATUS_CODE_OK");
}

#[test]
fn stacked_with_tokio_main_in_either_order() {
    // Above #[tokio::main], the job is the async body: one async run.
    #[pushguard::job(name = "macro_job_above_tokio")]
    #[tokio::main(flavor = "current_thread")]
    async fn job_above() -> Result<(), PushError> {
        tokio::task::yield_now().await;
        pushguard::current().gauge("above", "Order.")?.set(1.0);
        Ok(())
    }
    // Below it, the job wraps the whole runtime as one synchronous run:
    // current() works in the main future, which runs on this thread.
    #[tokio::main]
    #[pushguard::job(name = "macro_job_below_tokio")]
    async fn job_below() -> Result<(), PushError> {
        tokio::task::yield_now().await;
        pushguard::current().gauge("below", "Order.")?.set(1.0);
        Ok(())
    }
    if in_child() {
        job_above().unwrap();
        job_below().unwrap();
        return;
    }
    let gw = Pushgateway::start();
    rerun("stacked_with_tokio_main_in_either_order", &gw, &[]);
    for (job, gauge) in [
        ("macro_job_above_tokio", "above"),
        ("macro_job_below_tokio", "below"),
    ] {
        let group = gw.group(job, &[]).expect("the job's group");
        assert_eq!(group.value(gauge, &[]), Some(1.0), "{job}");
        assert_eq!(group.value("job_last_run_failed", &[]), Some(0.0), "{job}");
    }
}

#[test]
fn a_dropped_async_job_is_a_failure() {
    #[pushguard::job(name = "macro_cancelled")]
    async fn never_done() {
        // A clone kept past the job does not keep its run open.
        KEPT.with(|kept| *kept.borrow_mut() = Some(pushguard::current()));
        std::future::pending::<()>().await;
    }
    thread_local! {
        static KEPT: std::cell::RefCell<Option<pushguard::RunHandle>> = const { std::cell::RefCell::new(None) };
    }
    if in_child() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            tokio::select! {
                biased;
                () = never_done() => unreachable!("pending never finishes"),
                () = std::future::ready(()) => {}
            }
        });
        let kept = KEPT
            .with(|kept| kept.borrow_mut().take())
            .expect("the handle");
        assert!(!kept.is_running());
        return;
    }
    let (gw, otel) = (Pushgateway::start(), Collector::start());
    rerun("a_dropped_async_job_is_a_failure", &gw, &tracing_env(&otel));
    let group = gw.group("macro_cancelled", &[]).expect("the job's group");
    assert_eq!(group.value("job_last_run_failed", &[]), Some(1.0));
    let spans = otel.wait_for("macro_cancelled");
    let span = spans.iter().find(|s| s.name == "macro_cancelled").unwrap();
    assert_eq!(
        span.status_message,
        "the job's future was dropped before it finished"
    );
}

struct Loader {
    rows: u64,
}

impl Loader {
    #[pushguard::job(name = "macro_method_ref")]
    fn peek(&self) -> Result<u64, PushError> {
        Ok(self.rows)
    }

    #[pushguard::job(name = "macro_method_owned")]
    fn into_rows(self) -> Result<u64, PushError> {
        Ok(self.rows)
    }

    #[pushguard::job(name = "macro_method")]
    fn load(&mut self) -> Result<u64, PushError> {
        self.rows += 1;
        pushguard::current()
            .gauge("loader_rows", "Rows.")?
            .set(self.rows as f64);
        Ok(self.rows)
    }
}

#[test]
fn methods_with_any_self_and_main_named_after_the_binary() {
    // A function named `main` names its job after the binary (here this
    // test binary, `integration`): every binary's main is called main.
    #[pushguard::job]
    fn main() {
        pushguard::current()
            .gauge("main_ran", "Ran.")
            .expect("gauge")
            .set(1.0);
    }
    if in_child() {
        let mut loader = Loader { rows: 41 };
        assert_eq!(loader.load().unwrap(), 42);
        assert_eq!(loader.rows, 42);
        assert_eq!(loader.peek().unwrap(), 42);
        assert_eq!(loader.into_rows().unwrap(), 42);
        main();
        return;
    }
    let gw = Pushgateway::start();
    rerun(
        "methods_with_any_self_and_main_named_after_the_binary",
        &gw,
        &[],
    );
    let group = gw.group("macro_method", &[]).expect("the method's group");
    assert_eq!(group.value("loader_rows", &[]), Some(42.0));
    for job in ["macro_method_ref", "macro_method_owned"] {
        let group = gw.group(job, &[]).expect("the method's group");
        assert_eq!(group.value("job_last_run_failed", &[]), Some(0.0), "{job}");
    }
    let group = gw.group("integration", &[]).expect("main's group");
    assert_eq!(group.value("main_ran", &[]), Some(1.0));
}

#[pushguard::job(name = "macro_put", method = "put")]
fn put_job() {}

#[pushguard::job(name = "macro_post")]
fn post_job() {}

#[test]
fn method_put_replaces_the_group_and_the_default_post_keeps_it() {
    if in_child() {
        put_job();
        post_job();
        return;
    }
    let gw = Pushgateway::start();
    let client = Gateway::builder().url(&gw.url).build().unwrap();
    let mut body = Body::new();
    body.gauge("left_over", "From an earlier push.", 1.0)
        .unwrap();
    for job in ["macro_put", "macro_post"] {
        client
            .push(&GroupingKey::new(job).unwrap(), Method::Post, &body)
            .unwrap();
    }
    rerun(
        "method_put_replaces_the_group_and_the_default_post_keeps_it",
        &gw,
        &[],
    );
    let put = gw.group("macro_put", &[]).expect("the put group");
    assert!(!put.has("left_over"), "{:?}", put.families());
    assert!(put.has("job_last_success_timestamp_seconds"));
    let post = gw.group("macro_post", &[]).expect("the post group");
    assert!(post.has("left_over"), "{:?}", post.families());
}

#[pushguard::job(name = "macro_elsewhere", gateway = "http://127.0.0.1:1")]
fn elsewhere_job() {}

#[test]
fn the_gateway_argument_overrides_the_environment_and_problems_go_to_stderr() {
    if in_child() {
        elsewhere_job();
        return;
    }
    let gw = Pushgateway::start();
    let output = rerun(
        "the_gateway_argument_overrides_the_environment_and_problems_go_to_stderr",
        &gw,
        &[],
    );
    // The push went to the address in the attribute, not PUSHGATEWAY_URL:
    // refused there, it waits in the state file's outbox.
    assert!(gw.group("macro_elsewhere", &[]).is_none());
    let stderr = stderr(&output);
    assert!(
        stderr.contains("pushguard: warning: metrics of job \"macro_elsewhere\" not delivered yet, kept in the outbox"),
        "{stderr}"
    );
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
}
