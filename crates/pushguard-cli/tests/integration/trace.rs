//! One span per run, asserted from what a real OTLP receiver printed.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::harness::{Hang, Pushgateway, pushguard};
use crate::otlp::Collector;

fn exec(dir: &std::path::Path, gw: &Pushgateway, endpoint: &str, job: &str) -> Command {
    let mut cmd = pushguard(dir);
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("TRACEPARENT")
        .env_remove("TRACESTATE")
        .env_remove("BAGGAGE")
        .args(["exec", "--gateway", &gw.url, "--job", job]);
    cmd
}

fn history(dir: &std::path::Path) -> serde_json::Value {
    let out = pushguard(dir).args(["history", "--json"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout {}\nstderr {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_successful_exec_is_one_root_span_with_its_attributes() {
    let (dir, gw, otel) = (
        tempfile::tempdir().unwrap(),
        Pushgateway::start(),
        Collector::start(),
    );
    let out = exec(dir.path(), &gw, &otel.endpoint, "traced_ok")
        .args(["--label", "team=media", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let span = otel.span("traced_ok");
    assert_eq!(
        span.parent_id, "",
        "a run without TRACEPARENT is a root span"
    );
    assert_eq!(span.status_code, "STATUS_CODE_OK");
    assert_eq!(span.attr("job.name"), Some("traced_ok"));
    assert_eq!(span.attr("job.label.team"), Some("media"));
    assert_eq!(span.attr("job.outcome"), Some("success"));
    assert_eq!(span.attr("process.exit.code"), Some("0"));
    assert_eq!(span.attr("job.push"), Some("delivered"));
    assert_eq!(span.trace_id.len(), 32);
    // The run history carries the same trace id, so the run can be found.
    let runs = history(dir.path());
    assert_eq!(runs[0]["trace_id"].as_str(), Some(span.trace_id.as_str()));
}

#[test]
fn a_failed_exec_has_error_status_and_its_exit_code() {
    let (dir, gw, otel) = (
        tempfile::tempdir().unwrap(),
        Pushgateway::start(),
        Collector::start(),
    );
    let out = exec(dir.path(), &gw, &otel.endpoint, "traced_fail")
        .args(["--", "sh", "-c", "exit 3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let span = otel.span("traced_fail");
    assert_eq!(span.status_code, "STATUS_CODE_ERROR");
    assert!(span.status_message.contains("exit code 3"), "{span:?}");
    assert_eq!(span.attr("job.outcome"), Some("failure"));
    assert_eq!(span.attr("process.exit.code"), Some("3"));

    let out = exec(dir.path(), &gw, &otel.endpoint, "traced_killed")
        .args(["--", "sh", "-c", "kill -KILL $$"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(137), "{}", text(&out));
    let span = otel.span("traced_killed");
    assert_eq!(span.attr("job.signal"), Some("9"));
    assert_eq!(span.attr("process.exit.code"), Some("137"));

    let out = exec(dir.path(), &gw, &otel.endpoint, "traced_timeout")
        .args([
            "--timeout",
            "200ms",
            "--kill-after",
            "100ms",
            "--",
            "sleep",
            "30",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(124), "{}", text(&out));
    let span = otel.span("traced_timeout");
    assert_eq!(span.attr("job.outcome"), Some("timeout"));
    assert!(span.status_message.contains("timed out"), "{span:?}");
}

#[test]
fn nested_execs_share_one_trace() {
    let (dir, gw, otel) = (
        tempfile::tempdir().unwrap(),
        Pushgateway::start(),
        Collector::start(),
    );
    let inner_state = dir.path().join("inner.db");
    let out = exec(dir.path(), &gw, &otel.endpoint, "outer")
        .arg("--")
        .arg(crate::harness::pushguard_bin())
        .args(["exec", "--gateway", &gw.url, "--job", "inner", "--state"])
        .arg(&inner_state)
        .args(["--", "sh", "-c", "echo \"$TRACEPARENT\""])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    otel.wait_for("outer");
    let spans = otel.wait_for("inner");
    let outer = spans.iter().find(|s| s.name == "outer").unwrap();
    let inner = spans.iter().find(|s| s.name == "inner").unwrap();
    assert_eq!(inner.trace_id, outer.trace_id, "one trace");
    assert_eq!(
        inner.parent_id, outer.id,
        "the inner run is a child of the outer run"
    );
    // The innermost command got the inner run's context.
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        printed.trim(),
        format!("00-{}-{}-01", inner.trace_id, inner.id),
        "TRACEPARENT of the command"
    );
}

#[test]
fn an_inherited_traceparent_is_continued_with_tracestate_and_baggage() {
    let (dir, gw, otel) = (
        tempfile::tempdir().unwrap(),
        Pushgateway::start(),
        Collector::start(),
    );
    let parent_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_span = "00f067aa0ba902b7";
    let out = exec(dir.path(), &gw, &otel.endpoint, "continued")
        .env("TRACEPARENT", format!("00-{parent_trace}-{parent_span}-01"))
        .env("TRACESTATE", "vendor=abc")
        .env("BAGGAGE", "tenant=media")
        .args([
            "--",
            "sh",
            "-c",
            "echo \"$TRACEPARENT|$TRACESTATE|$BAGGAGE\"",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let span = otel.span("continued");
    assert_eq!(span.trace_id, parent_trace);
    assert_eq!(span.parent_id, parent_span);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        printed.trim(),
        format!("00-{parent_trace}-{}-01|vendor=abc|tenant=media", span.id)
    );
}

#[test]
fn a_down_or_hanging_collector_costs_a_bounded_delay_and_changes_nothing() {
    let (dir, gw) = (tempfile::tempdir().unwrap(), Pushgateway::start());
    let down = format!("http://127.0.0.1:{}", crate::harness::free_port());
    let started = Instant::now();
    let out = exec(dir.path(), &gw, &down, "collector_down")
        .args(["--", "sh", "-c", "exit 4"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let group = gw
        .group("collector_down", &[])
        .expect("metrics still pushed");
    assert_eq!(group.value("job_last_exit_code", &[]), Some(4.0));

    let hang = Hang::start();
    let started = Instant::now();
    let out = exec(dir.path(), &gw, &hang.url, "collector_hangs")
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The export timeout is 2 s; allow slack for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(gw.group("collector_hangs", &[]).is_some());
}

#[test]
fn tracing_is_off_without_an_endpoint_or_when_disabled() {
    let (dir, gw, otel) = (
        tempfile::tempdir().unwrap(),
        Pushgateway::start(),
        Collector::start(),
    );
    let out = exec(dir.path(), &gw, &otel.endpoint, "disabled_run")
        .env("OTEL_SDK_DISABLED", "true")
        .args(["--", "sh", "-c", "echo \"[$TRACEPARENT]\""])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    let out = pushguard(dir.path())
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .args([
            "exec",
            "--gateway",
            &gw.url,
            "--job",
            "no_endpoint",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // A later traced run arrives; the two untraced ones never do.
    exec(dir.path(), &gw, &otel.endpoint, "marker_run")
        .args(["--", "true"])
        .output()
        .unwrap();
    let spans = otel.wait_for("marker_run");
    assert!(
        spans
            .iter()
            .all(|s| s.name != "disabled_run" && s.name != "no_endpoint")
    );
    let runs = history(dir.path());
    let untraced: Vec<_> = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["job"] != "marker_run")
        .collect();
    assert_eq!(untraced.len(), 2);
    assert!(untraced.iter().all(|r| r["trace_id"].is_null()));
}
