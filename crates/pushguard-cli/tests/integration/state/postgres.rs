//! The state on a real PostgreSQL server (`--state postgres://…`), shared
//! by processes that stand for several hosts (each its own working
//! directory and `HOSTNAME`): the same guarantees as the SQLite file.

use std::path::Path;
use std::process::Command;

use pushguard_testkit::postgres::Postgres;
use serde_json::Value;

use super::*;

/// A `pushguard` command in `dir` on "host" `host`, its state in `url`.
fn on_host(dir: &Path, url: &str, host: &str) -> Command {
    let mut cmd = pushguard(dir);
    cmd.env("PUSHGUARD_STATE", url).env("HOSTNAME", host);
    cmd
}

fn exec_on(dir: &Path, url: &str, host: &str, gateway: &str, job: &str, code: i32) -> Command {
    let mut cmd = on_host(dir, url, host);
    cmd.args([
        "exec",
        "--gateway",
        gateway,
        "--job",
        job,
        "--push-retries",
        "1",
        "--push-deadline",
        "30s",
        "--",
        "sh",
        "-c",
        &format!("exit {code}"),
    ]);
    cmd
}

fn listed(dir: &Path, url: &str, args: &[&str]) -> (Done, Vec<Value>) {
    let done = run(on_host(dir, url, "reader").args(args));
    let list = json_list(&done);
    (done, list)
}

fn pg_history(dir: &Path, url: &str) -> Vec<Value> {
    let (done, runs) = listed(dir, url, &["history", "--json", "--limit", "1000"]);
    done.expect_code(0);
    runs
}

fn pg_outbox(dir: &Path, url: &str) -> Vec<Value> {
    let (done, entries) = listed(dir, url, &["outbox", "--json"]);
    done.expect_code(0);
    entries
}

#[test]
fn three_hosts_with_fifty_concurrent_runs_each_keep_exact_totals() {
    let pg = Postgres::start();
    let gw = Pushgateway::start();
    let url = pg.database_url("s3cret");
    let job = "shared";
    let hosts = ["host-a", "host-b", "host-c"];
    let dirs: Vec<tempfile::TempDir> = hosts.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    // The schema exists, as after the first run anywhere.
    assert!(pg_outbox(dirs[0].path(), &url).is_empty());

    let mut running = Vec::new();
    for i in 0..50 {
        for (host, dir) in hosts.iter().zip(&dirs) {
            let mut cmd = exec_on(dir.path(), &url, host, &gw.url, job, 0);
            running.push((i, Running::spawn(&mut cmd)));
        }
    }
    for (_, run) in running {
        let done = run.wait();
        done.expect_code(0);
        done.quiet();
    }

    let group = group(&gw, job);
    assert_eq!(totals(&group), (150.0, 0.0, 0.0, 0.0));
    let runs = pg_history(dirs[1].path(), &url);
    assert_eq!(runs.len(), 150);
    all_pushed(&runs, "delivered");
    for host in hosts {
        let ran = runs.iter().filter(|r| r["host"] == host).count();
        assert_eq!(ran, 50, "runs of {host}");
    }
    assert!(pg_outbox(dirs[2].path(), &url).is_empty());
    let newest = &runs[0];
    same_time(
        "last completion",
        value(&group, "job_last_completion_timestamp_seconds"),
        number(newest, "end"),
    );
}

#[test]
fn results_spooled_while_the_gateway_is_down_are_delivered_in_order_by_another_host() {
    let pg = Postgres::start();
    let gw = Pushgateway::start();
    let proxy = SwitchProxy::start(ProxyMode::Down);
    let url = pg.database_url("s3cret");
    let job = "offline";
    let (runner, flusher) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    for code in 0..30 {
        let done = run(&mut exec_on(
            runner.path(),
            &url,
            "host-a",
            &proxy.url,
            job,
            code,
        ));
        done.expect_code(code);
    }
    let spooled = pg_outbox(flusher.path(), &url);
    assert_eq!(spooled.len(), 30, "{spooled:#?}");
    all_pushed(&pg_history(flusher.path(), &url), "spooled");

    proxy.set(ProxyMode::Forward(gw.port));
    let (done, left) = listed(flusher.path(), &url, &["outbox", "--flush", "--json"]);
    assert_eq!(done.status.code(), Some(0), "{done}");
    assert!(left.is_empty(), "{done}");
    assert!(done.stderr.contains("delivered 30"), "{done}");

    let group = group(&gw, job);
    // One success (exit 0), 29 failures; the last run's exit code wins.
    assert_eq!(totals(&group), (1.0, 29.0, 0.0, 0.0));
    assert_eq!(value(&group, "job_last_exit_code"), 29.0);
    let runs = pg_history(runner.path(), &url);
    assert_eq!(runs.len(), 30);
    all_pushed(&runs, "delivered");
    assert!(runs.iter().all(|r| r["host"] == "host-a"), "{runs:#?}");
}

#[test]
fn a_schema_of_a_newer_pushguard_is_refused_naming_the_masked_url() {
    let pg = Postgres::start();
    let url = pg.database_url("s3cret");
    let dir = tempfile::tempdir().unwrap();
    assert!(pg_history(dir.path(), &url).is_empty());
    let database = url.rsplit('/').next().unwrap();
    pg.psql(database, "UPDATE pushguard_schema SET version = 99");

    let done = run(on_host(dir.path(), &url, "h").args(["history", "--json"]));
    assert_ne!(done.status.code(), Some(0), "{done}");
    let masked = url.replace(":s3cret@", ":***@");
    assert!(done.stderr.contains(&masked), "{done}");
    assert!(done.stderr.contains("schema version 99"), "{done}");
    assert!(!format!("{done}").contains("s3cret"), "{done}");
    assert_eq!(
        pg.psql(database, "SELECT version FROM pushguard_schema"),
        "99"
    );
}

#[test]
fn a_wrong_server_is_reported_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let port = harness::free_port();
    let url = format!("postgres://me:s3cret@127.0.0.1:{port}/nothing");
    let done = run(on_host(dir.path(), &url, "h").args(["history", "--json"]));
    assert_ne!(done.status.code(), Some(0), "{done}");
    assert!(
        done.stderr
            .contains(&format!("postgres://me:***@127.0.0.1:{port}/nothing")),
        "{done}"
    );
    assert!(!format!("{done}").contains("s3cret"), "{done}");
}

#[test]
fn a_delivery_killed_in_flight_is_taken_over_and_delivered_once() {
    let pg = Postgres::start();
    let gw = Pushgateway::start();
    let proxy = SwitchProxy::start(ProxyMode::Hang);
    let url = pg.database_url("s3cret");
    let job = "killed";
    let (dir, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    let mut running = Running::spawn(on_host(dir.path(), &url, "host-a").args([
        "exec",
        "--gateway",
        &proxy.url,
        "--job",
        job,
        "--push-deadline",
        "60s",
        "--",
        "true",
    ]));
    harness::wait_until("the push to reach the proxy", EXIT_LIMIT, || {
        proxy.requests() >= 1
    });
    assert_eq!(pg_outbox(other.path(), &url).len(), 1);
    running.child.kill().expect("SIGKILL pushguard");
    let _ = running.wait();

    // Same host: the dead process's lease is taken over at once, not when
    // it expires (60 s + 5 s from now).
    proxy.set(ProxyMode::Forward(gw.port));
    let flush = run(on_host(other.path(), &url, "host-a").args(["outbox", "--flush", "--json"]));
    assert_eq!(flush.status.code(), Some(0), "{flush}");
    assert!(flush.stderr.contains("delivered 1"), "{flush}");
    assert!(pg_outbox(other.path(), &url).is_empty());
    assert_eq!(totals(&group(&gw, job)), (1.0, 0.0, 0.0, 0.0));
    all_pushed(&pg_history(other.path(), &url), "delivered");
}

#[test]
fn the_password_comes_from_the_url_pgpassword_or_pgpassfile_and_is_never_printed() {
    let pg = Postgres::start_with_password("c0rrect");
    let database = pg.create_database();
    let dir = tempfile::tempdir().unwrap();
    let port = pg.port;
    let without = format!("postgres://postgres@127.0.0.1:{port}/{database}");
    let history = |cmd: &mut Command| {
        let done = run(cmd.args(["history", "--json"]));
        assert!(!format!("{done}").contains("c0rrect"), "{done}");
        assert!(!format!("{done}").contains("wr0ng"), "{done}");
        done
    };
    let pushguard = || {
        let mut cmd = pushguard(dir.path());
        cmd.env_remove("PGPASSWORD").env_remove("PGPASSFILE");
        cmd
    };

    // In the URL.
    let url = format!("postgres://postgres:c0rrect@127.0.0.1:{port}/{database}");
    history(pushguard().env("PUSHGUARD_STATE", &url)).expect_code(0);
    // A wrong one is refused, the URL shown masked.
    let wrong = format!("postgres://postgres:wr0ng@127.0.0.1:{port}/{database}");
    let done = history(pushguard().env("PUSHGUARD_STATE", &wrong));
    assert_ne!(done.status.code(), Some(0), "{done}");
    assert!(
        done.stderr.contains(&format!(
            "postgres://postgres:***@127.0.0.1:{port}/{database}"
        )),
        "{done}"
    );
    // None at all: the server asks for one.
    let done = history(pushguard().env("PUSHGUARD_STATE", &without));
    assert_ne!(done.status.code(), Some(0), "{done}");
    // PGPASSWORD.
    history(
        pushguard()
            .env("PUSHGUARD_STATE", &without)
            .env("PGPASSWORD", "c0rrect"),
    )
    .expect_code(0);
    // PGPASSFILE: the first matching line wins.
    let passfile = dir.path().join("pgpass");
    std::fs::write(
        &passfile,
        format!(
            "# comment\nother.host:*:*:*:wr0ng\n127.0.0.1:{port}:{database}:postgres:c0rrect\n*:*:*:*:wr0ng\n"
        ),
    )
    .unwrap();
    history(
        pushguard()
            .env("PUSHGUARD_STATE", &without)
            .env("PGPASSFILE", &passfile),
    )
    .expect_code(0);
}

#[test]
fn postgresql_down_keeps_the_exit_code_pushes_directly_and_never_lowers_the_totals() {
    let pg = Postgres::start();
    let gw = Pushgateway::start();
    let url = pg.database_url("s3cret");
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let done = run(&mut exec_on(
            dir.path(),
            &url,
            "host-a",
            &gw.url,
            "pg_down",
            0,
        ));
        done.expect_code(0).quiet();
    }
    assert_eq!(totals(&group(&gw, "pg_down")).0, 2.0);
    // The database goes away.
    drop(pg);

    let started = std::time::Instant::now();
    let done = run(&mut exec_on(
        dir.path(),
        &url,
        "host-a",
        &gw.url,
        "pg_down",
        3,
    ));
    done.expect_code(3);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let warning = done.one_warning();
    assert!(
        warning.contains("pushed without the state file"),
        "{warning}"
    );
    assert!(!warning.contains("s3cret"), "{warning}");
    let group = group(&gw, "pg_down");
    assert_eq!(value(&group, "job_last_exit_code"), 3.0);
    assert_eq!(totals(&group).0, 2.0, "job_runs_total went backwards");
}
