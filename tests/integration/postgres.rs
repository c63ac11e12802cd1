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
