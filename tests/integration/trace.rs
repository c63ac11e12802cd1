//! One span per run, asserted from what a real OTLP receiver printed.

use opentelemetry::trace::{Span as _, TraceContextExt as _, Tracer as _};
use pushguard::{Gateway, JobRun, Outcome, Tracing};

use crate::harness::Pushgateway;
use crate::otlp::Collector;

#[test]
fn library_child_spans_hang_under_the_run() {
    let (gw, otel) = (Pushgateway::start(), Collector::start());
    let tracing = Tracing::builder()
        .endpoint(format!("{}/v1/traces", otel.endpoint))
        .service_name("library-test")
        .build()
        .unwrap();
    let guard = JobRun::new("library_run")
        .gateway(Gateway::builder().url(&gw.url).build().unwrap())
        .without_state()
        .tracing(tracing.clone())
        .start()
        .unwrap();
    let trace_id = guard.trace_id().expect("traced");
    let mut step = tracing
        .tracer()
        .start_with_context("load_step", &guard.context());
    step.set_attribute(opentelemetry::KeyValue::new("rows", 12_i64));
    step.end();
    guard.finish(Outcome::Success).unwrap();
    let spans = otel.wait_for("library_run");
    let root = spans.iter().find(|s| s.name == "library_run").unwrap();
    let step = spans
        .iter()
        .find(|s| s.name == "load_step")
        .expect("child span exported");
    assert_eq!(root.trace_id, trace_id);
    assert_eq!(step.trace_id, trace_id);
    assert_eq!(step.parent_id, root.id);
    assert_eq!(step.attr("rows"), Some("12"));
    assert!(guard_context_is_empty_without_tracing());
}

fn guard_context_is_empty_without_tracing() -> bool {
    let guard = JobRun::new("untraced")
        .gateway_url("http://127.0.0.1:1")
        .without_state()
        .without_tracing()
        .start()
        .unwrap();
    let empty = !guard.context().span().span_context().is_valid() && guard.child_env().is_empty();
    std::mem::drop(guard.finish(Outcome::Success));
    empty
}

#[cfg(feature = "tracing")]
#[test]
fn tracing_crate_spans_join_the_run() {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    let (gw, otel) = (Pushgateway::start(), Collector::start());
    let tracing = Tracing::builder()
        .endpoint(format!("{}/v1/traces", otel.endpoint))
        .build()
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(tracing.layer());
    let guard = JobRun::new("tracing_run")
        .gateway(Gateway::builder().url(&gw.url).build().unwrap())
        .without_state()
        .tracing(tracing.clone())
        .start()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("tracing_step");
        let _ = span.set_parent(guard.context());
        let _entered = span.enter();
    });
    guard.finish(Outcome::Success).unwrap();
    let spans = otel.wait_for("tracing_run");
    let root = spans.iter().find(|s| s.name == "tracing_run").unwrap();
    let spans = otel.wait_for("tracing_step");
    let step = spans.iter().find(|s| s.name == "tracing_step").unwrap();
    assert_eq!(step.trace_id, root.trace_id);
    assert_eq!(step.parent_id, root.id);
}

/// Set in the child process of the test below.
const CHILD_GATEWAY: &str = "PUSHGUARD_TEST_BAD_OTEL_GATEWAY";

#[test]
fn a_bad_otel_environment_is_a_warning_and_the_run_is_still_pushed() {
    if let Ok(url) = std::env::var(CHILD_GATEWAY) {
        // The child: the tracing environment below is broken on purpose.
        let gateway = Gateway::builder().url(&url).build().expect("gateway");
        let report = JobRun::new("bad_otel")
            .gateway(gateway)
            .without_state()
            .start()
            .expect("a broken OTEL environment does not stop the run")
            .finish(Outcome::Success)
            .expect("the push");
        let warning = report.tracing_warning.expect("a tracing warning");
        assert!(warning.contains("bogus"), "{warning}");
        return;
    }
    // Environment variables are per process: run this test again in a child.
    let gw = Pushgateway::start();
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "trace::a_bad_otel_environment_is_a_warning_and_the_run_is_still_pushed",
            "--test-threads",
            "1",
        ])
        .env(CHILD_GATEWAY, &gw.url)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "bogus")
        .env_remove("OTEL_SDK_DISABLED")
        .output()
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
    let group = gw.group("bad_otel", &[]).expect("the run's group");
    assert_eq!(group.value("job_last_run_failed", &[]), Some(0.0));
}
