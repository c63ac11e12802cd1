//! The library on a PostgreSQL state (`State::open("postgres://…")`)
//! against a real PostgreSQL server and a real Pushgateway: separate
//! handles (connections) share totals, the history and the outbox.

use std::time::Duration;

use pushguard::{Body, Gateway, GroupingKey, JobRun, Method, Outcome, State};
use pushguard_testkit::postgres::Postgres;

use crate::harness::{ProxyMode, Pushgateway, SwitchProxy};

fn gateway(url: &str) -> Gateway {
    Gateway::builder()
        .url(url)
        .retries(0)
        .deadline(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[test]
fn handles_on_one_database_share_cumulative_totals_and_history() {
    let pg = Postgres::start();
    let gw = Pushgateway::start();
    let url = pg.database_url("s3cret");
    let job = "pg_lib";
    let (first, second) = (State::open(&url).unwrap(), State::open(&url).unwrap());
    assert!(State::is_database_url(&url));
    assert!(
        !first.path().to_string_lossy().contains("s3cret"),
        "{:?}",
        first.path()
    );

    for (state, rows) in [(&first, 250.0), (&second, 100.0)] {
        let guard = JobRun::new(job)
            .state(state.clone())
            .gateway(gateway(&gw.url))
            .start()
            .unwrap();
        guard
            .cumulative_counter("import_rows_total", "Rows imported, all runs.")
            .unwrap()
            .inc_by(rows);
        guard.finish(Outcome::Success).unwrap();
    }
    let group = gw.group(job, &[]).expect("the group was pushed");
    assert_eq!(group.value("import_rows_total", &[]), Some(350.0));
    assert_eq!(
        group.value("job_runs_total", &[("outcome", "success")]),
        Some(2.0)
    );
    assert_eq!(
        second
            .counter_total(&format!("/metrics/job/{job}"), "import_rows_total", "")
            .unwrap(),
        Some(350.0)
    );
    let runs = first.history(Some(job), 10).unwrap();
    assert_eq!(runs.len(), 2);
    assert!(
        runs.iter().all(|r| r.push_status == "delivered"),
        "{runs:?}"
    );
    assert!(runs.iter().all(|r| r.host.is_some()), "{runs:?}");
    assert!(first.outbox().unwrap().is_empty());
}

#[test]
fn pushes_spooled_while_the_gateway_is_down_are_flushed_in_order_by_another_handle() {
    let pg = Postgres::start();
    let gw = Pushgateway::start();
    let proxy = SwitchProxy::start(ProxyMode::Down);
    let url = pg.database_url("s3cret");
    let key = GroupingKey::new("pg_order").unwrap();
    let writer = State::open(&url).unwrap();
    for value in 1..=5 {
        let mut body = Body::new();
        body.gauge("order_value", "A value.", f64::from(value))
            .unwrap();
        let report = writer
            .push(&gateway(&proxy.url), &key, Method::Put, &body)
            .unwrap();
        assert!(report.spooled.is_some(), "{report:?}");
    }
    let entries = writer.outbox().unwrap();
    assert_eq!(entries.len(), 5, "{entries:?}");
    assert!(entries.windows(2).all(|w| w[0].id < w[1].id));
    // Only the oldest is tried: a newer push never overtakes it.
    assert_eq!(entries[0].attempts, 5, "{entries:?}");
    assert!(entries[1..].iter().all(|e| e.attempts == 0), "{entries:?}");
    assert!(entries.iter().all(|e| !e.dead), "{entries:?}");
    // A dropped entry is gone; the rest stay in order.
    assert!(writer.drop_entry(entries[0].id).unwrap());
    assert!(!writer.drop_entry(entries[0].id).unwrap());
    assert_eq!(writer.drop_dead_letters().unwrap(), 0);

    proxy.set(ProxyMode::Forward(gw.port));
    let flusher = State::open(&url).unwrap();
    let report = flusher.flush(&gateway(&proxy.url)).unwrap();
    assert_eq!(report.delivered, 4, "{report:?}");
    assert!(writer.outbox().unwrap().is_empty());
    let group = gw.group("pg_order", &[]).expect("the group was pushed");
    assert_eq!(group.value("order_value", &[]), Some(5.0));
}

#[test]
fn a_database_of_a_newer_pushguard_is_refused_with_the_password_masked() {
    let pg = Postgres::start();
    let url = pg.database_url("s3cret");
    drop(State::open(&url).unwrap());
    let database = url.rsplit('/').next().unwrap();
    pg.psql(database, "UPDATE pushguard_schema SET version = 42");
    let err = State::open(&url).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&url.replace(":s3cret@", ":***@")), "{text}");
    assert!(text.contains("schema version 42"), "{text}");
    assert!(!format!("{err:?}").contains("s3cret"), "{err:?}");
}

#[test]
fn one_claim_of_a_fire_wins_and_a_silent_runners_fires_are_taken_over_once() {
    use pushguard::fleet::{Claim, Fire};
    let pg = Postgres::start();
    let url = pg.database_url("s3cret");
    let lease = Duration::from_secs(60);
    let due = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);

    // Eight runners claim the same fire at once: one wins.
    let answers: Vec<Claim> = std::thread::scope(|scope| {
        let claims: Vec<_> = (0..8)
            .map(|i| {
                let url = &url;
                scope.spawn(move || {
                    let state = State::open(url).expect("open");
                    let runner = format!("runner-{i}");
                    state.join_schedule(&runner, lease).expect("join");
                    state
                        .claim(&Fire::new("nightly", due, runner), false)
                        .expect("claim")
                })
            })
            .collect();
        claims
            .into_iter()
            .map(|c| c.join().expect("claimer"))
            .collect()
    });
    let won = answers.iter().filter(|a| **a == Claim::Won).count();
    assert_eq!(won, 1, "{answers:?}");
    assert_eq!(
        answers
            .iter()
            .filter(|a| matches!(a, Claim::Taken { .. }))
            .count(),
        7,
        "{answers:?}"
    );

    // With overlap forbidden, a later fire while that one runs is an overlap.
    let state = State::open(&url).expect("open");
    state.join_schedule("late", lease).expect("join");
    let later = Fire::new("nightly", due + Duration::from_secs(60), "late");
    assert!(matches!(
        state.claim(&later, true).expect("claim"),
        Claim::Overlap { .. }
    ));

    // A runner whose lease ran out loses its running fires to exactly one
    // of the runners that take over.
    let silent = State::open(&url).expect("open");
    silent
        .join_schedule("silent", Duration::from_millis(1))
        .expect("join");
    let held = Fire::new("hourly", due, "silent");
    assert_eq!(silent.claim(&held, false).expect("claim"), Claim::Won);
    let takers: Vec<usize> = std::thread::scope(|scope| {
        let beats: Vec<_> = ["taker-a", "taker-b", "taker-c"]
            .into_iter()
            .map(|runner| {
                let url = &url;
                scope.spawn(move || {
                    let state = State::open(url).expect("open");
                    state.heartbeat(runner, lease, true).expect("beat").len()
                })
            })
            .collect();
        beats
            .into_iter()
            .map(|b| b.join().expect("taker"))
            .collect()
    });
    assert_eq!(takers.iter().sum::<usize>(), 1, "{takers:?}");
    let fires = state.last_fires().expect("fires");
    let hourly = fires
        .iter()
        .find(|f| f.fire.job() == "hourly")
        .expect("the hourly fire");
    assert_eq!(hourly.taken_from.as_deref(), Some("silent"));
    assert_ne!(hourly.fire.runner(), "silent");
    assert_eq!(hourly.status, "running");

    // A run recorded for a fire closes it in the same transaction.
    let gw = Pushgateway::start();
    let mut guard = JobRun::new("hourly")
        .gateway(gateway(&gw.url))
        .state(state.clone())
        .without_tracing()
        .start()
        .expect("start");
    guard.set_fire(hourly.fire.clone());
    guard.finish(Outcome::Success).expect("finish");
    let fires = state.last_fires().expect("fires");
    let hourly = fires
        .iter()
        .find(|f| f.fire.job() == "hourly")
        .expect("hourly");
    assert_eq!(
        (hourly.status.as_str(), hourly.outcome.as_deref()),
        ("done", Some("success"))
    );
}

#[test]
fn a_long_lived_handle_records_the_runs_of_an_outage_once_the_database_is_back() {
    let mut pg = Postgres::start();
    let gw = Pushgateway::start();
    let url = pg.database_url("s3cret");
    let job = "pg_outage";
    let state = State::open(&url).unwrap();
    let run = |outcome: Outcome, rows: f64| {
        let guard = JobRun::new(job)
            .state(state.clone())
            .gateway(gateway(&gw.url))
            .without_tracing()
            .start()
            .unwrap();
        guard
            .cumulative_counter("import_rows_total", "Rows imported, all runs.")
            .unwrap()
            .inc_by(rows);
        guard.finish(outcome).unwrap()
    };
    assert!(run(Outcome::Success, 10.0).state_warning.is_none());

    // The server goes away: runs push directly, their records wait.
    pg.stop();
    for _ in 0..2 {
        let report = run(Outcome::Failure, 5.0);
        let warning = report.state_warning.expect("pushed without the state");
        assert!(!warning.contains("s3cret"), "{warning}");
    }
    let group = gw.group(job, &[]).expect("the group");
    assert_eq!(group.value("job_last_run_failed", &[]), Some(1.0));
    // The totals stay where they were on the gateway (POST keeps them).
    assert_eq!(
        group.value("job_runs_total", &[("outcome", "failure")]),
        Some(0.0)
    );
    assert_eq!(group.value("import_rows_total", &[]), Some(10.0));

    // Back: the same handle reconnects, and its next run writes the two
    // waiting records first, in its own transaction.
    pg.start_again();
    assert!(run(Outcome::Success, 1.0).state_warning.is_none());
    let group = gw.group(job, &[]).expect("the group");
    assert_eq!(
        group.value("job_runs_total", &[("outcome", "success")]),
        Some(2.0)
    );
    assert_eq!(
        group.value("job_runs_total", &[("outcome", "failure")]),
        Some(2.0)
    );
    assert_eq!(group.value("import_rows_total", &[]), Some(21.0));
    let runs = state.history(Some(job), 10).unwrap();
    let statuses: Vec<(&str, &str)> = runs
        .iter()
        .map(|r| (r.outcome.as_str(), r.push_status.as_str()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("success", "delivered"),
            ("failure", "direct"),
            ("failure", "direct"),
            ("success", "delivered")
        ]
    );
}

/// The batched-delivery scenarios of `outbox.rs`, each on a fresh database
/// of one server.
#[test]
fn batches_keep_every_guarantee_on_postgres() {
    crate::within(Duration::from_secs(180), || {
        let pg = Postgres::start();
        for scenario in [
            crate::outbox::a_failure_mid_batch_keeps_exactly_the_unconfirmed_entries,
            crate::outbox::a_refusal_mid_batch_dead_letters_that_entry_alone,
            crate::outbox::entries_larger_than_a_batch_are_delivered_in_order,
            crate::outbox::many_groups_are_flushed_with_every_entry_delivered,
        ] {
            scenario(&State::open(pg.database_url("s3cret")).unwrap());
        }
    });
}
