//! A run whose push cannot be delivered now is kept in the outbox and is an
//! `Ok` report, not the job's failure; a push the gateway refuses is still an
//! error. Real Pushgateway behind a [`SwitchProxy`].

use std::time::Duration;

use pushguard::{
    Body, Gateway, GroupingKey, JobRun, Method, Outcome, PushError, PushReport, State,
};

use crate::harness::{Group, ProxyMode, Pushgateway, SwitchProxy};

/// One attempt and a short deadline: a gateway that is down costs little.
fn quick(url: &str) -> Gateway {
    Gateway::builder()
        .url(url)
        .retries(0)
        .deadline(Duration::from_secs(2))
        .build()
        .unwrap()
}

fn totals(group: &Group) -> [f64; 4] {
    ["success", "failure", "timeout", "skipped"].map(|outcome| {
        group
            .value("job_runs_total", &[("outcome", outcome)])
            .unwrap_or_else(|| panic!("job_runs_total{{outcome={outcome:?}}} missing"))
    })
}

/// Asserts `report` says the push is kept in the outbox because the gateway
/// could not be reached, and returns its entry id.
fn assert_spooled(report: &PushReport, state: &State) -> i64 {
    let reason = report
        .spooled
        .as_deref()
        .unwrap_or_else(|| panic!("not spooled: {report:?}"));
    assert!(reason.contains("cannot reach the pushgateway"), "{reason}");
    assert!(!report.is_delivered());
    let id = report.outbox_entry.expect("the outbox entry");
    let entries = state.outbox().unwrap();
    assert!(
        entries.iter().any(|e| e.id == id && !e.dead),
        "{id} not pending in {entries:?}"
    );
    match report.clone().into_delivered() {
        Err(PushError::Spooled {
            id: got,
            reason: why,
        }) => {
            assert_eq!((got, why.as_str()), (id, reason));
        }
        other => panic!("into_delivered must say spooled: {other:?}"),
    }
    id
}

#[test]
fn a_run_while_the_gateway_is_down_is_ok_and_the_next_run_delivers_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path().join("state.db")).unwrap();
    let gw = Pushgateway::start();
    let proxy = SwitchProxy::start(ProxyMode::Down);
    let job = "spooled_ok";
    let run = || {
        JobRun::new(job)
            .state(state.clone())
            .gateway(quick(&proxy.url))
    };

    // The README's first example: `finish(..)?` must not fail the job.
    let mut guard = run().start().unwrap();
    guard.set_exit_code(3);
    let report = guard.finish(Outcome::Failure).expect("spooled is Ok");
    assert_spooled(&report, &state);

    // The closure form and the async form say the same.
    let finished = run().run(|_| Ok::<_, String>(()));
    assert_spooled(&finished.push.expect("spooled is Ok"), &state);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = runtime
        .block_on(run().start().unwrap().finish_async(Outcome::Success))
        .expect("spooled is Ok");
    assert_spooled(&report, &state);
    assert_eq!(state.outbox().unwrap().len(), 3);
    assert!(gw.group(job, &[]).is_none());
    let history = state.history(Some(job), 10).unwrap();
    assert!(
        history.iter().all(|r| r.push_status == "spooled"),
        "{history:?}"
    );

    // The gateway is back: the next run delivers the three, oldest first, then itself.
    proxy.set(ProxyMode::Forward(gw.port));
    let mut guard = run().start().unwrap();
    guard.set_exit_code(0);
    let report = guard.finish(Outcome::Success).unwrap();
    assert!(report.is_delivered(), "{report:?}");
    assert_eq!((report.spooled, report.replayed), (None, 3));
    assert!(state.outbox().unwrap().is_empty());
    let group = gw.group(job, &[]).expect("delivered");
    assert_eq!(totals(&group), [3.0, 1.0, 0.0, 0.0]);
    assert_eq!(group.value("job_last_exit_code", &[]), Some(0.0));
    let history = state.history(Some(job), 10).unwrap();
    assert!(
        history.iter().all(|r| r.push_status == "delivered"),
        "{history:?}"
    );

    // `State::push` keeps the same contract.
    proxy.set(ProxyMode::Down);
    let key = GroupingKey::new("spooled_state_push").unwrap();
    let mut body = Body::new();
    body.gauge("backup_size_bytes", "Size.", 42.0).unwrap();
    let gateway = quick(&proxy.url);
    let report = state.push(&gateway, &key, Method::Post, &body).unwrap();
    assert_spooled(&report, &state);
    proxy.set(ProxyMode::Forward(gw.port));
    let flushed = state.flush(&gateway).unwrap();
    assert_eq!((flushed.delivered, flushed.deferred), (1, 0), "{flushed:?}");
    let group = gw.group("spooled_state_push", &[]).expect("flushed");
    assert_eq!(group.value("backup_size_bytes", &[]), Some(42.0));
}

#[test]
fn a_push_the_gateway_refuses_is_still_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path().join("state.db")).unwrap();
    let gw = Pushgateway::start();
    let gateway = quick(&gw.url);
    // `refused_x` is a gauge in one group, so the gateway refuses it as a
    // counter in another (400).
    let mut gauge = Body::new();
    gauge.gauge("refused_x", "x.", 1.0).unwrap();
    gateway
        .push(
            &GroupingKey::new("refused_other").unwrap(),
            Method::Post,
            &gauge,
        )
        .unwrap();

    let guard = JobRun::new("refused")
        .state(state.clone())
        .gateway(gateway)
        .start()
        .unwrap();
    guard.counter("refused_x", "x.").unwrap().inc();
    let error = guard.finish(Outcome::Success).unwrap_err();
    match &error {
        PushError::Rejected { status, body, .. } => {
            assert_eq!(*status, 400);
            assert!(body.contains("inconsistent"), "{body}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    let entries = state.outbox().unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].dead, "a refused push is a dead letter");
}

/// A push the gateway applies late, after a newer one was delivered, stays on
/// top only until the in-doubt window has passed: then the group's newest
/// push is sent again and wins.
#[test]
fn a_push_that_lands_late_is_overwritten_by_the_newest_once_its_window_passed() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path().join("state.db")).unwrap();
    let gw = Pushgateway::start();
    let proxy = SwitchProxy::start(ProxyMode::Hold(gw.port));
    let gateway = Gateway::builder()
        .url(&proxy.url)
        .retries(0)
        .deadline(Duration::from_millis(500))
        .in_doubt_window(Duration::from_secs(1))
        .build()
        .unwrap();
    let key = GroupingKey::new("late").unwrap();
    let body = |value: f64| {
        let mut body = Body::new();
        body.gauge("late_value", "The run's value.", value).unwrap();
        body
    };
    let shown = || {
        gw.group("late", &[])
            .and_then(|g| g.value("late_value", &[]))
    };

    // The first push is sent and never answered: in doubt, kept.
    let report = state
        .push(&gateway, &key, Method::Post, &body(1.0))
        .unwrap();
    assert!(report.spooled.is_some(), "{report:?}");
    // The gateway is back: the next push delivers the kept one, then itself.
    proxy.set(ProxyMode::Forward(gw.port));
    let report = state
        .push(&gateway, &key, Method::Post, &body(2.0))
        .unwrap();
    assert!(report.is_delivered(), "{report:?}");
    assert_eq!(shown(), Some(2.0));
    // Now the first attempt lands, late: the old value is on top.
    proxy.release_held();
    crate::harness::wait_until("the late push to land", Duration::from_secs(10), || {
        proxy.forwarded_late() == 1
    });
    assert_eq!(shown(), Some(1.0));
    // A flush before the window passed changes nothing; after it, the newest
    // push is sent again and wins. Each flush is a real poll of the state.
    let sent_before = proxy.requests();
    crate::harness::wait_until(
        "the newest push to be sent again",
        Duration::from_secs(10),
        || {
            state.flush(&gateway).unwrap();
            shown() == Some(2.0)
        },
    );
    assert_eq!(proxy.requests(), sent_before + 1, "sent again exactly once");
    // Settled: a later flush sends nothing more.
    state.flush(&gateway).unwrap();
    assert_eq!(proxy.requests(), sent_before + 1);
}
