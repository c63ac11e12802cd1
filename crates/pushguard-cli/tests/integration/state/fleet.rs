//! Runners that share one schedule through a real PostgreSQL state: each
//! is a `pushguard run` process with its own working directory, host name
//! and runner name. Every command writes the fire it was started for
//! (`PUSHGUARD_SCHEDULED_AT`) to one log, so the checks count what really
//! ran, by scheduled time, next to what the database and the gateway hold.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use chrono::{DateTime, Utc};
use pushguard_testkit::postgres::Postgres;

use super::*;
use crate::runner::{RunnerProcess, workspace, write_job};

/// Lease of the runners under test: a killed one is stood in for after this.
const LEASE: &str = "3s";

/// A runner named `id` (also its host name) on the shared state `url`.
fn runner(dir: &Path, gateway: &str, url: &str, id: &str) -> RunnerProcess {
    let config = dir.join("pushguard.toml");
    fs::write(&config, format!("[runner]\nlease = \"{LEASE}\"\n")).expect("write the config");
    let config = config.to_string_lossy().into_owned();
    RunnerProcess::start_on(
        dir,
        gateway,
        url.as_ref(),
        &[
            ("HOSTNAME", id),
            ("PUSHGUARD_RUNNER_ID", id),
            ("PUSHGUARD_CONFIG", &config),
        ],
    )
}

/// A job file whose command logs `DUE RUNNER` to `log` at its start (and,
/// with `end`, `end DUE` when it ends), then works for `work` seconds.
fn logging_job(log: &Path, extra: &str, work: &str, end: bool) -> String {
    let log = log.display();
    let tail = if end {
        format!("; echo \\\"end $PUSHGUARD_SCHEDULED_AT $(date +%s.%N)\\\" >> {log}")
    } else {
        String::new()
    };
    format!(
        "schedule = \"* * * * * *\"\n{extra}command = [\"sh\", \"-c\", \"echo \\\"$PUSHGUARD_SCHEDULED_AT $PUSHGUARD_RUNNER_ID $(date +%s.%N)\\\" >> {log}; sleep {work}{tail}\"]\n"
    )
}

/// One started run from the log.
#[derive(Debug, Clone)]
struct Started {
    due: DateTime<Utc>,
    runner: String,
    at: f64,
}

fn started(log: &Path) -> Vec<Started> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| !line.starts_with("end "))
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let due = fields.next()?.parse().ok()?;
            let runner = fields.next()?.to_owned();
            let at = fields.next()?.parse().ok()?;
            Some(Started { due, runner, at })
        })
        .collect()
}

/// `end DUE AT` lines: when each run's command ended, by due time.
fn ended(log: &Path) -> BTreeMap<DateTime<Utc>, f64> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut fields = line.strip_prefix("end ")?.split(' ');
            Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
        })
        .collect()
}

fn newest_due(log: &Path) -> Option<DateTime<Utc>> {
    started(log).iter().map(|s| s.due).max()
}

/// Waits until a run due at or after `due` has started.
fn wait_for_due(first: &RunnerProcess, log: &Path, due: DateTime<Utc>, limit: Duration) {
    first.wait_until(&format!("a run due at {due}"), limit, || {
        newest_due(log).is_some_and(|newest| newest >= due)
    });
}

#[test]
fn three_runners_run_every_fire_once_and_stand_in_for_a_killed_one() {
    let pg = Postgres::start();
    let gw = Pushgateway::start();
    let url = pg.database_url("s3cret");
    let db = url.rsplit('/').next().expect("a database name").to_owned();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("fires.log");
    let job = logging_job(&log, "overlap = \"allow\"\n", "2", false);
    let mut dirs = Vec::new();
    let mut runners = Vec::new();
    for id in ["runner-a", "runner-b", "runner-c"] {
        let dir = workspace();
        write_job(dir.path(), "tick", &job);
        runners.push(runner(dir.path(), &gw.url, &url, id));
        dirs.push(dir);
    }

    // Three runners for a while.
    let begin = Utc::now();
    wait_for_due(
        &runners[1],
        &log,
        begin + chrono::Duration::seconds(25),
        Duration::from_secs(45),
    );

    // Kill runner-a right after it started a run: that fire is claimed, its
    // command runs on, its record never comes.
    let seen = started(&log).len();
    runners[0].wait_until("runner-a to start a run", Duration::from_secs(30), || {
        started(&log)[seen.min(started(&log).len())..]
            .iter()
            .any(|s| s.runner == "runner-a")
    });
    runners[0].kill9();
    let killed = Utc::now();

    // The others go on, and take over runner-a's claim after its lease.
    wait_for_due(
        &runners[1],
        &log,
        killed + chrono::Duration::seconds(15),
        Duration::from_secs(40),
    );
    runners[1].wait_until(
        "runner_lost counted on the gateway",
        Duration::from_secs(30),
        || {
            gw.group("tick", &[])
                .and_then(|g| g.value("job_missed_runs_total", &[("reason", "runner_lost")]))
                .is_some_and(|v| v >= 1.0)
        },
    );
    let cut = newest_due(&log).expect("runs were logged");
    // Every view shows which runner ran what.
    let metrics = format!("{}{}", runners[1].metrics(), runners[2].metrics());
    assert!(
        metrics.contains(r#"pushguard_runner_info{runner="runner-b",schedule="shared"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"pushguard_runner_fires_total{claim="won",job="tick"}"#),
        "{metrics}"
    );
    let taken_over: f64 = metrics
        .lines()
        .filter_map(|line| {
            line.strip_prefix(r#"pushguard_runner_fires_total{claim="taken_over",job="tick"} "#)
        })
        .filter_map(|value| value.trim().parse::<f64>().ok())
        .sum();
    assert!(taken_over >= 1.0, "{metrics}");
    let tick = runners[2].job("tick").expect("tick in /api/jobs");
    let last_runner = tick["last_fire"]["runner"].as_str().unwrap_or_default();
    assert!(["runner-b", "runner-c"].contains(&last_runner), "{tick:#}");
    for runner in runners.iter_mut().skip(1) {
        assert!(runner.stop().success(), "{}", runner.stderr());
    }

    // Each fire ran at most once, by scheduled time.
    let runs = started(&log);
    let mut by_due: BTreeMap<DateTime<Utc>, Vec<String>> = BTreeMap::new();
    for run in &runs {
        by_due.entry(run.due).or_default().push(run.runner.clone());
    }
    for (due, ran_on) in &by_due {
        assert_eq!(ran_on.len(), 1, "the fire due at {due} ran on {ran_on:?}");
    }
    let hosts: std::collections::BTreeSet<&str> = runs.iter().map(|r| r.runner.as_str()).collect();
    assert_eq!(hosts.len(), 3, "every runner ran fires: {hosts:?}");

    // None was lost: every second from the first fire to the cut either ran
    // or is a fire taken over from runner-a and counted as missed.
    let taken: Vec<DateTime<Utc>> = pg
        .psql(
            &db,
            "SELECT scheduled FROM fires WHERE taken_from = 'runner-a' \
             AND status = 'done' AND outcome = 'skipped' AND runner <> 'runner-a' ORDER BY 1",
        )
        .lines()
        .filter_map(|ms| ms.parse::<i64>().ok())
        .filter_map(DateTime::<Utc>::from_timestamp_millis)
        .collect();
    assert!(!taken.is_empty(), "runner-a's last claim was taken over");
    assert!(
        taken.len() as f64 >= taken_over,
        "{taken:?} against {taken_over}"
    );
    let first = *by_due.keys().next().expect("a first fire");
    let mut due = first;
    let mut gaps = Vec::new();
    while due <= cut {
        if !by_due.contains_key(&due) && !taken.contains(&due) {
            gaps.push(due);
        }
        due += chrono::Duration::seconds(1);
    }
    assert!(
        gaps.is_empty(),
        "fires lost: {gaps:?}; taken over: {taken:?}"
    );
    let still_running = pg.psql(
        &db,
        "SELECT count(*) FROM fires WHERE status = 'running' AND runner = 'runner-a'",
    );
    assert_eq!(still_running, "0", "a claim of the dead runner was left");

    // The gateway's totals are exact: one per recorded run, whichever runner.
    let recorded: f64 = pg
        .psql(&db, "SELECT count(*) FROM runs WHERE job = 'tick'")
        .parse()
        .expect("a count");
    let group = gw.group("tick", &[]).expect("the tick group");
    let total: f64 = ["success", "failure", "timeout", "skipped"]
        .iter()
        .map(|o| {
            group
                .value("job_runs_total", &[("outcome", o)])
                .unwrap_or(0.0)
        })
        .sum();
    assert_eq!(total, recorded, "job_runs_total against the history");
    assert_eq!(
        group.value("job_missed_runs_total", &[("reason", "runner_lost")]),
        Some(taken.len() as f64)
    );
}

#[test]
fn overlap_forbid_holds_across_runners() {
    let pg = Postgres::start();
    let gw = Pushgateway::start();
    let url = pg.database_url("s3cret");
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("fires.log");
    let job = logging_job(&log, "overlap = \"forbid\"\n", "2.5", true);
    let mut dirs = Vec::new();
    let mut runners = Vec::new();
    for id in ["runner-a", "runner-b"] {
        let dir = workspace();
        write_job(dir.path(), "slow", &job);
        runners.push(runner(dir.path(), &gw.url, &url, id));
        dirs.push(dir);
    }
    runners[0].wait_until("four runs ended", Duration::from_secs(60), || {
        ended(&log).len() >= 4
    });
    runners[0].wait_until(
        "overlap counted on the gateway",
        Duration::from_secs(30),
        || {
            gw.group("slow", &[])
                .and_then(|g| g.value("job_missed_runs_total", &[("reason", "overlap")]))
                .is_some_and(|v| v >= 2.0)
        },
    );
    for runner in &mut runners {
        assert!(runner.stop().success(), "{}", runner.stderr());
    }
    let ends = ended(&log);
    let mut spans: Vec<(f64, f64, String)> = started(&log)
        .into_iter()
        .filter_map(|s| ends.get(&s.due).map(|end| (s.at, *end, s.runner)))
        .collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let runners_used: std::collections::BTreeSet<&str> =
        spans.iter().map(|s| s.2.as_str()).collect();
    assert!(spans.len() >= 4, "{spans:?}");
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "a run started while another one ran: {pair:?} (runners {runners_used:?})"
        );
    }
}

#[test]
fn the_runner_keeps_its_schedule_while_postgresql_is_down_and_claims_again_after() {
    let mut pg = Postgres::start();
    let gw = Pushgateway::start();
    let url = pg.database_url("s3cret");
    let db = url.rsplit('/').next().expect("a database name").to_owned();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("fires.log");
    let dir = workspace();
    write_job(dir.path(), "steady", &logging_job(&log, "", "0", false));
    let mut runner = runner(dir.path(), &gw.url, &url, "runner-a");
    runner.wait_until("three runs", Duration::from_secs(20), || {
        started(&log).len() >= 3
    });

    pg.stop();
    let down = started(&log).len();
    let pushes_before = gw
        .group("steady", &[])
        .and_then(|g| g.value("job_last_success_timestamp_seconds", &[]))
        .unwrap_or(0.0);
    runner.wait_until(
        "three runs with the database down",
        Duration::from_secs(30),
        || started(&log).len() >= down + 3,
    );
    // Three of them ended and were pushed without the state.
    runner.wait_until(
        "three pushes without the state",
        Duration::from_secs(30),
        || {
            runner
                .stderr()
                .matches("metrics pushed without the state file")
                .count()
                >= 3
        },
    );
    // Pushed all the same, directly.
    runner.wait_until(
        "a push with the database down",
        Duration::from_secs(10),
        || {
            gw.group("steady", &[])
                .and_then(|g| g.value("job_last_success_timestamp_seconds", &[]))
                .is_some_and(|t| t > pushes_before)
        },
    );
    pg.start_again();
    let back = Utc::now();
    runner.wait_until(
        "claims again once the database is back",
        Duration::from_secs(30),
        || {
            pg.psql(
                &db,
                &format!(
                    "SELECT count(*) FROM fires WHERE status = 'done' AND scheduled > {}",
                    back.timestamp_millis()
                ),
            ) != "0"
        },
    );
    // The runs of the outage were pushed (directly) all the same.
    let group = gw.group("steady", &[]).expect("the steady group");
    assert!(
        group
            .value("job_last_success_timestamp_seconds", &[])
            .is_some()
    );
    // Fires claimed when the database went away are closed, not left held.
    runner.wait_until(
        "the fires of unrecorded runs closed",
        Duration::from_secs(30),
        || {
            pg.psql(
                &db,
                &format!(
                    "SELECT count(*) FROM fires WHERE status = 'running' AND scheduled < {}",
                    back.timestamp_millis() - 2000
                ),
            ) == "0"
        },
    );
    assert!(runner.stop().success(), "{}", runner.stderr());
    let err = runner.stderr();
    assert!(err.contains("answers again"), "{err}");
    // The runs of the outage were recorded once the database was back, and
    // the totals the last push carried count every run.
    let direct: usize = pg
        .psql(
            &db,
            "SELECT count(*) FROM runs WHERE job = 'steady' AND push_status = 'direct'",
        )
        .parse()
        .expect("a count");
    assert!(direct >= 3, "{direct} runs of the outage recorded");
    let recorded: f64 = pg
        .psql(&db, "SELECT count(*) FROM runs WHERE job = 'steady'")
        .parse()
        .expect("a count");
    let group = gw.group("steady", &[]).expect("the steady group");
    assert_eq!(
        group.value("job_runs_total", &[("outcome", "success")]),
        Some(recorded),
        "job_runs_total against the history"
    );
    assert!(!err.contains("s3cret"), "{err}");
    // Each fire ran once all along.
    let mut seen = std::collections::BTreeSet::new();
    for run in started(&log) {
        assert!(seen.insert(run.due), "{} ran twice", run.due);
    }
}

#[test]
fn a_second_runner_on_one_state_file_refuses_to_start_and_says_why() {
    let gw = Pushgateway::start();
    let dir = workspace();
    write_job(
        dir.path(),
        "quiet",
        "schedule = \"0 0 1 1 *\"\ncommand = [\"true\"]\n",
    );
    let _first = RunnerProcess::start(dir.path(), &gw.url);
    let out = pushguard(dir.path())
        .env_remove("PUSHGUARD_STATE")
        .args(["run", "--listen", "127.0.0.1:0", "--jobs"])
        .arg(dir.path().join("jobs"))
        .arg("--state")
        .arg(crate::runner::state_path(dir.path()))
        .output()
        .expect("run a second runner");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("postgres://"), "{err}");
}

#[test]
fn a_second_live_runner_under_the_same_name_is_refused() {
    let pg = Postgres::start();
    let gw = Pushgateway::start();
    let url = pg.database_url("s3cret");
    let db = url.rsplit('/').next().expect("a database name").to_owned();
    let first_dir = workspace();
    write_job(
        first_dir.path(),
        "quiet",
        "schedule = \"0 0 1 1 *\"\ncommand = [\"true\"]\n",
    );
    let first = runner(first_dir.path(), &gw.url, &url, "same-name");
    first.wait_until("the first runner joined", Duration::from_secs(20), || {
        pg.psql(&db, "SELECT count(*) FROM runners WHERE id = 'same-name'") == "1"
    });
    let second = workspace();
    let out = pushguard(second.path())
        .env("PUSHGUARD_RUNNER_ID", "same-name")
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--gateway",
            &gw.url,
            "--jobs",
        ])
        .arg(first_dir.path().join("jobs"))
        .args(["--state", &url])
        .output()
        .expect("run a second runner");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("\"same-name\" is in use"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}
