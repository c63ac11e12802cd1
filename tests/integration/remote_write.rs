//! The library's remote-write client against a real Prometheus receiver:
//! a guard's run and its own metrics, read back through the query API.

use std::time::Duration;

use pushguard::{Gateway, JobRun, Outcome, State};

use crate::harness::wait_until;
use crate::prom::Prometheus;

fn value(prom: &Prometheus, promql: &str) -> f64 {
    let mut found = None;
    wait_until(
        &format!("{promql} in Prometheus"),
        Duration::from_secs(10),
        || {
            found = prom.value(promql);
            found.is_some()
        },
    );
    found.unwrap_or_default()
}

#[test]
fn a_guard_writes_its_run_and_its_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start_receiver(dir.path(), &[]);
    let writer = Gateway::builder()
        .remote_write(prom.write_url())
        .tenant("team-a")
        .build()
        .unwrap();
    assert!(writer.is_remote_write());
    let state = State::open(dir.path().join("state.db")).unwrap();
    for round in 1..=2u32 {
        let guard = JobRun::new("etl")
            .label("env", "prod")
            .gateway(writer.clone())
            .state(state.clone())
            .without_tracing()
            .start()
            .unwrap();
        let rows = guard.int_counter("etl_rows_total", "Rows loaded.").unwrap();
        rows.inc_by(100 * u64::from(round));
        let cumulative = guard
            .cumulative_counter("etl_bytes_total", "Bytes loaded, all runs.")
            .unwrap();
        cumulative.inc_by(10.0);
        let latency = guard
            .histogram("etl_batch_seconds", "Batch latency.", vec![0.1, 1.0])
            .unwrap();
        for seconds in [0.05, 0.5, 0.7, 3.0] {
            latency.observe(seconds);
        }
        let report = guard.finish(Outcome::Success).unwrap();
        assert!(report.is_delivered(), "{report:?}");
        assert_eq!(report.url, prom.write_url());
    }
    let sel = r#"{job="etl",env="prod"}"#;
    assert_eq!(value(&prom, &format!("etl_rows_total{sel}")), 200.0);
    assert_eq!(value(&prom, &format!("etl_bytes_total{sel}")), 20.0);
    assert_eq!(
        value(
            &prom,
            r#"job_runs_total{job="etl",env="prod",outcome="success"}"#
        ),
        2.0
    );
    assert_eq!(
        value(&prom, r#"etl_batch_seconds_bucket{job="etl",le="1"}"#),
        3.0
    );
    assert_eq!(value(&prom, &format!("etl_batch_seconds_count{sel}")), 4.0);
    assert_eq!(value(&prom, &format!("etl_batch_seconds_sum{sel}")), 4.25);
}

#[test]
fn a_remote_write_client_deletes_nothing() {
    let writer = Gateway::builder()
        .remote_write("http://127.0.0.1:9/api/v1/write")
        .build()
        .unwrap();
    let key = pushguard::GroupingKey::new("j").unwrap();
    let error = writer.delete(&key).unwrap_err().to_string();
    assert!(error.contains("no group to delete"), "{error}");
}

#[test]
fn requests_carry_the_protocol_headers_and_the_tenant() {
    use crate::harness::{Listener, read_request_from, respond};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let listener = Listener::start(move |mut stream| {
        if let Ok(Some(request)) = read_request_from(&stream) {
            record.lock().unwrap().push(request);
            let _ = respond(&mut stream, 204, "text/plain", "", b"");
        }
    });
    let url = format!("{}/api/v1/push", listener.url);
    let writer = Gateway::builder()
        .remote_write(&url)
        .tenant("team-a")
        .bearer_token("s3cret")
        .build()
        .unwrap();
    let key = pushguard::GroupingKey::new("j").unwrap();
    let mut body = pushguard::Body::new();
    body.gauge("g", "A gauge.", 1.0).unwrap();
    let report = writer.push(&key, pushguard::Method::Post, &body).unwrap();
    assert_eq!((report.url.as_str(), report.status), (url.as_str(), 204));
    let requests = seen.lock().unwrap();
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/api/v1/push")
    );
    for (name, value) in [
        ("content-type", "application/x-protobuf"),
        ("content-encoding", "snappy"),
        ("x-prometheus-remote-write-version", "0.1.0"),
        ("x-scope-orgid", "team-a"),
        ("authorization", "Bearer s3cret"),
    ] {
        assert_eq!(
            request.header(name),
            Some(value),
            "{name}: {:?}",
            request.headers
        );
    }
    assert!(!request.body.is_empty());
}

#[test]
fn a_refresh_waits_for_spooled_runs_and_never_puts_them_out_of_order() {
    use crate::harness::{ProxyMode, SwitchProxy};
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start_receiver(dir.path(), &[]);
    let port: u16 = prom.url.rsplit(':').next().unwrap().parse().unwrap();
    let proxy = SwitchProxy::start(ProxyMode::Forward(port));
    let writer = Gateway::builder()
        .remote_write(format!("{}/api/v1/write", proxy.url))
        .deadline(Duration::from_millis(500))
        .build()
        .unwrap();
    let state = State::open(dir.path().join("state.db")).unwrap();
    let run = |outcome| {
        JobRun::new("nightly")
            .gateway(writer.clone())
            .state(state.clone())
            .without_tracing()
            .start()
            .unwrap()
            .finish(outcome)
            .unwrap()
    };
    assert!(run(Outcome::Success).is_delivered());
    // Written again, stamped a millisecond back from now (a refresh within
    // a millisecond of the run's end is refused as out of order and simply
    // comes again at the next drain).
    wait_until(
        "the delivered run written again",
        Duration::from_secs(5),
        || state.refresh(&writer).unwrap() == 1,
    );

    proxy.set(ProxyMode::Down);
    assert!(!run(Outcome::Failure).is_delivered());
    proxy.set(ProxyMode::Forward(port));
    // The failure waits in the outbox: a refresh stamped now would make it
    // out of order, so the group is left alone.
    assert_eq!(state.refresh(&writer).unwrap(), 0);
    let report = state.flush(&writer).unwrap();
    assert_eq!((report.delivered, report.rejected), (1, 0), "{report:?}");
    assert_eq!(state.refresh(&writer).unwrap(), 1);
    assert!(state.outbox().unwrap().is_empty());
    // The refreshed state is the gateway's view: the failure on top, the
    // last success time still there.
    assert_eq!(value(&prom, r#"job_last_run_failed{job="nightly"}"#), 1.0);
    let success = value(
        &prom,
        r#"job_last_success_timestamp_seconds{job="nightly"}"#,
    );
    let failure = value(
        &prom,
        r#"job_last_failure_timestamp_seconds{job="nightly"}"#,
    );
    assert!(success < failure, "{success} < {failure}");
    let stamped = value(
        &prom,
        r#"timestamp(job_last_success_timestamp_seconds{job="nightly"})"#,
    );
    assert!(
        stamped > failure,
        "the success time was written again after the failure"
    );
}
