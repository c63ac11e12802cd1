//! The state file under faults: nothing lost, totals right.
//!
//! Every test drives the real `pushguard` binary (or the library) against a
//! real Pushgateway, usually behind a [`SwitchProxy`] that gives a stable URL
//! whose behaviour the test switches (down, 500, hanging, forwarding), and
//! checks what the gateway holds and what `pushguard outbox --json` and
//! `pushguard history --json` report.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use pushguard::{Gateway, JobRun, Outcome, State};
use serde_json::Value;

use crate::harness::{self, Group, ProxyMode, Pushgateway, SwitchProxy, pushguard};

/// Upper bound for any single pushguard run, so a hang fails the test
/// instead of blocking the suite.
const EXIT_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Running the binary

/// A running `pushguard` with its output collected; killed on drop if it is
/// still running, so a failed assertion leaves nothing behind.
struct Running {
    child: Child,
    started: Instant,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// How a run of `pushguard` ended.
#[derive(Debug)]
struct Done {
    status: ExitStatus,
    elapsed: Duration,
    stdout: String,
    stderr: String,
}

fn collect(mut reader: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = reader.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

impl Running {
    fn spawn(cmd: &mut Command) -> Self {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn pushguard");
        let stdout = Some(collect(child.stdout.take().expect("piped stdout")));
        let stderr = Some(collect(child.stderr.take().expect("piped stderr")));
        Running {
            child,
            started,
            stdout,
            stderr,
        }
    }

    fn wait(mut self) -> Done {
        let mut status = None;
        harness::wait_until("pushguard to exit", EXIT_LIMIT, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        let elapsed = self.started.elapsed();
        let text = |reader: Option<std::thread::JoinHandle<String>>| {
            reader
                .expect("output collected once")
                .join()
                .expect("output reader")
        };
        Done {
            status: status.expect("an exit status"),
            elapsed,
            stdout: text(self.stdout.take()),
            stderr: text(self.stderr.take()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl std::fmt::Display for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status {:?} after {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

impl Done {
    /// Asserts the exit code, showing everything the process printed if not.
    fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.status.code(), Some(code), "{self}");
        self
    }

    /// The stderr lines that are warnings.
    fn warnings(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.contains("warning"))
            .collect()
    }

    /// Asserts exactly one warning line and returns it.
    fn one_warning(&self) -> &str {
        let warnings = self.warnings();
        assert_eq!(warnings.len(), 1, "expected one warning line: {self}");
        warnings[0]
    }

    /// Asserts stderr is empty: no warning, no error.
    fn quiet(&self) -> &Self {
        assert!(self.stderr.trim().is_empty(), "expected no stderr: {self}");
        self
    }
}

fn run(cmd: &mut Command) -> Done {
    Running::spawn(cmd).wait()
}

/// `pushguard exec --gateway URL --job JOB [extra] -- sh -c 'exit CODE'`,
/// with one retry (unless `extra` says otherwise) so a failing gateway costs
/// little time.
fn exec_cmd(dir: &Path, gateway: &str, job: &str, code: i32, extra: &[&str]) -> Command {
    let mut cmd = pushguard(dir);
    cmd.args(["exec", "--gateway", gateway, "--job", job]);
    if !extra.contains(&"--push-retries") {
        cmd.args(["--push-retries", "1"]);
    }
    cmd.args(extra)
        .args(["--", "sh", "-c", &format!("exit {code}")]);
    cmd
}

/// Runs [`exec_cmd`] and asserts pushguard returned the command's own code.
fn exec(dir: &Path, gateway: &str, job: &str, code: i32, extra: &[&str]) -> Done {
    let done = run(&mut exec_cmd(dir, gateway, job, code, extra));
    done.expect_code(code);
    done
}

/// Parses a JSON array printed by `--json`.
fn json_list(done: &Done) -> Vec<Value> {
    let value: Value =
        serde_json::from_str(&done.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {done}"));
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a JSON array: {done}"))
        .clone()
}

/// `pushguard outbox --json`: the spooled entries, oldest first.
fn outbox(dir: &Path) -> Vec<Value> {
    let done = run(pushguard(dir).args(["outbox", "--json"]));
    done.expect_code(0);
    json_list(&done)
}

/// `pushguard outbox --flush --json`; returns how it ended and what was left.
fn flush(dir: &Path) -> (Done, Vec<Value>) {
    let done = run(pushguard(dir).args(["outbox", "--flush", "--json"]));
    let left = json_list(&done);
    (done, left)
}

/// `pushguard history --json`: every recorded run, newest first.
fn history(dir: &Path) -> Vec<Value> {
    let done = run(pushguard(dir).args(["history", "--json", "--limit", "1000"]));
    done.expect_code(0);
    json_list(&done)
}

fn field<'a>(entry: &'a Value, name: &str) -> &'a str {
    entry[name]
        .as_str()
        .unwrap_or_else(|| panic!("no string {name:?} in {entry}"))
}

fn number(entry: &Value, name: &str) -> f64 {
    entry[name]
        .as_f64()
        .unwrap_or_else(|| panic!("no number {name:?} in {entry}"))
}

/// Asserts every history row has push status `status`.
fn all_pushed(runs: &[Value], status: &str) {
    for run in runs {
        assert_eq!(field(run, "push_status"), status, "{runs:#?}");
    }
}

// ---------------------------------------------------------------------------
// Reading the gateway back

/// The group `{job}`; fails listing what the gateway holds instead.
fn group(gw: &Pushgateway, job: &str) -> Group {
    gw.group(job, &[]).unwrap_or_else(|| {
        let held: Vec<_> = gw.groups().iter().map(Group::labels).collect();
        panic!("the gateway has no group job={job:?}; it holds {held:?}")
    })
}

fn value(group: &Group, family: &str) -> f64 {
    group
        .value(family, &[])
        .unwrap_or_else(|| panic!("{family} missing: {:?}", group.families()))
}

/// `job_runs_total` per outcome: (success, failure, timeout, skipped).
fn totals(group: &Group) -> (f64, f64, f64, f64) {
    let runs = |outcome| {
        group
            .value("job_runs_total", &[("outcome", outcome)])
            .unwrap_or_else(|| panic!("job_runs_total{{outcome={outcome:?}}} missing"))
    };
    (
        runs("success"),
        runs("failure"),
        runs("timeout"),
        runs("skipped"),
    )
}

/// Asserts two Unix timestamps are the same instant (they round-trip through
/// the text format and the gateway's float formatting).
fn same_time(what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() < 1e-4,
        "{what}: the gateway has {got}, the history {want}"
    );
}

// ---------------------------------------------------------------------------
// Gateway down, then back

enum Delivery {
    NextRun,
    Flush,
}

/// Three runs (exit 0, 3, 0) while the gateway is down, then a gateway on the
/// same URL; `delivery` decides who delivers the spooled results.
fn down_runs_are_delivered_later(delivery: Delivery, job: &str) {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let proxy = SwitchProxy::start(ProxyMode::Down);

    for code in [0, 3, 0] {
        let done = exec(dir.path(), &proxy.url, job, code, &[]);
        let warning = done.one_warning();
        assert!(
            warning.contains("kept in the outbox") && warning.contains(job),
            "{done}"
        );
    }
    assert!(gw.groups().is_empty(), "nothing can have been delivered");

    let spooled = outbox(dir.path());
    assert_eq!(spooled.len(), 3, "{spooled:#?}");
    let ids: Vec<f64> = spooled.iter().map(|e| number(e, "id")).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "not oldest first: {ids:?}"
    );
    for entry in &spooled {
        assert_eq!(field(entry, "status"), "pending", "{entry}");
        assert_eq!(field(entry, "method"), "POST", "{entry}");
        assert_eq!(field(entry, "gateway"), proxy.url, "{entry}");
        assert_eq!(entry["group"]["job"], job, "{entry}");
        assert!(number(entry, "bytes") > 0.0, "{entry}");
    }
    assert!(number(&spooled[0], "attempts") >= 1.0, "{:#}", spooled[0]);
    assert!(spooled[0]["last_error"].is_string(), "{:#}", spooled[0]);

    let runs = history(dir.path());
    assert_eq!(runs.len(), 3, "{runs:#?}");
    all_pushed(&runs, "spooled");
    let outcomes: Vec<&str> = runs.iter().map(|r| field(r, "outcome")).collect();
    assert_eq!(outcomes, ["success", "failure", "success"]);

    proxy.set(ProxyMode::Forward(gw.port));
    let expected = match delivery {
        Delivery::NextRun => {
            exec(dir.path(), &proxy.url, job, 0, &[]).quiet();
            (3.0, 1.0, 0.0, 0.0)
        }
        Delivery::Flush => {
            let (done, left) = flush(dir.path());
            done.expect_code(0);
            assert!(left.is_empty(), "left after --flush: {done}");
            assert!(done.stderr.contains("delivered 3"), "{done}");
            (2.0, 1.0, 0.0, 0.0)
        }
    };

    let group = group(&gw, job);
    assert_eq!(totals(&group), expected);
    let runs = history(dir.path());
    assert_eq!(runs.len(), expected.0 as usize + expected.1 as usize);
    all_pushed(&runs, "delivered");
    assert!(outbox(dir.path()).is_empty());
    // The newest run was delivered last: its values are the gateway's.
    let newest = &runs[0];
    assert_eq!(value(&group, "job_last_exit_code"), 0.0);
    assert_eq!(value(&group, "job_last_run_failed"), 0.0);
    same_time(
        "last completion",
        value(&group, "job_last_completion_timestamp_seconds"),
        number(newest, "end"),
    );
    same_time(
        "last success",
        value(&group, "job_last_success_timestamp_seconds"),
        number(newest, "end"),
    );
    let failed = runs
        .iter()
        .find(|r| number(r, "exit_code") == 3.0)
        .expect("the failed run in the history");
    same_time(
        "last failure",
        value(&group, "job_last_failure_timestamp_seconds"),
        number(failed, "end"),
    );
}

#[test]
fn runs_while_the_gateway_is_down_are_delivered_by_the_next_run() {
    down_runs_are_delivered_later(Delivery::NextRun, "down_next_run");
}

#[test]
fn runs_while_the_gateway_is_down_are_delivered_by_a_flush() {
    down_runs_are_delivered_later(Delivery::Flush, "down_flush");
}

// ---------------------------------------------------------------------------
// Gateway restarted, failing, hanging

#[test]
fn totals_survive_a_gateway_restart() {
    let dir = tempfile::tempdir().unwrap();
    let job = "restarted";
    let first = Pushgateway::start();
    let proxy = SwitchProxy::start(ProxyMode::Forward(first.port));
    exec(dir.path(), &proxy.url, job, 0, &[]).quiet();
    exec(dir.path(), &proxy.url, job, 3, &[]).quiet();
    assert_eq!(totals(&group(&first, job)), (1.0, 1.0, 0.0, 0.0));

    // Persistence is off: the new gateway starts empty.
    first.stop();
    let second = Pushgateway::start();
    proxy.set(ProxyMode::Forward(second.port));
    assert!(second.groups().is_empty());

    exec(dir.path(), &proxy.url, job, 0, &[]).quiet();
    let group = group(&second, job);
    assert_eq!(
        totals(&group),
        (2.0, 1.0, 0.0, 0.0),
        "the runs before the restart must still count"
    );
    assert_eq!(value(&group, "job_last_exit_code"), 0.0);
    let runs = history(dir.path());
    assert_eq!(runs.len(), 3);
    all_pushed(&runs, "delivered");
    assert!(outbox(dir.path()).is_empty());
}

#[test]
fn a_gateway_answering_500_gets_the_results_in_order_once_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let job = "overloaded";
    let gw = Pushgateway::start();
    let proxy = SwitchProxy::start(ProxyMode::Answer(500, "gateway overloaded"));

    let done = exec(dir.path(), &proxy.url, job, 3, &["--push-retries", "2"]);
    let warning = done.one_warning();
    assert!(
        warning.contains("500") && warning.contains("gateway overloaded"),
        "{done}"
    );
    assert_eq!(proxy.requests(), 3, "one attempt and two retries");
    assert!(gw.group(job, &[]).is_none());
    let spooled = outbox(dir.path());
    assert_eq!(spooled.len(), 1, "{spooled:#?}");
    assert_eq!(field(&spooled[0], "status"), "pending");
    assert_eq!(number(&spooled[0], "attempts"), 1.0);
    let error = field(&spooled[0], "last_error");
    assert!(
        error.contains("500") && error.contains("gateway overloaded"),
        "{error}"
    );

    proxy.set(ProxyMode::Forward(gw.port));
    exec(dir.path(), &proxy.url, job, 0, &[]).quiet();

    let group = group(&gw, job);
    assert_eq!(totals(&group), (1.0, 1.0, 0.0, 0.0));
    assert_eq!(value(&group, "job_last_exit_code"), 0.0);
    assert_eq!(value(&group, "job_last_run_failed"), 0.0);
    let runs = history(dir.path());
    assert_eq!(runs.len(), 2);
    all_pushed(&runs, "delivered");
    // Delivered in order with POST: the success is the last word, and the
    // failure of the spooled run is kept beside it.
    same_time(
        "last success",
        value(&group, "job_last_success_timestamp_seconds"),
        number(&runs[0], "end"),
    );
    same_time(
        "last failure",
        value(&group, "job_last_failure_timestamp_seconds"),
        number(&runs[1], "end"),
    );
    assert!(
        value(&group, "job_last_failure_timestamp_seconds")
            < value(&group, "job_last_success_timestamp_seconds")
    );
    assert!(outbox(dir.path()).is_empty());
}

#[test]
fn a_hanging_gateway_costs_only_the_deadline_and_the_result_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let job = "hung";
    let gw = Pushgateway::start();
    let proxy = SwitchProxy::start(ProxyMode::Hang);

    let done = exec(
        dir.path(),
        &proxy.url,
        job,
        7,
        &["--push-deadline", "500ms"],
    );
    assert!(
        done.elapsed >= Duration::from_millis(400),
        "gave up before the deadline: {done}"
    );
    assert!(
        done.elapsed < Duration::from_secs(10),
        "the deadline was not held: {done}"
    );
    let warning = done.one_warning();
    assert!(warning.contains("did not answer within"), "{done}");
    assert!(proxy.requests() >= 1, "the push never reached the proxy");
    let spooled = outbox(dir.path());
    assert_eq!(spooled.len(), 1, "{spooled:#?}");
    let error = field(&spooled[0], "last_error");
    assert!(error.contains("did not answer within"), "{error}");
    assert!(error.contains(&proxy.url), "{error}");

    proxy.set(ProxyMode::Forward(gw.port));
    let (done, left) = flush(dir.path());
    done.expect_code(0);
    assert!(left.is_empty(), "{done}");
    let group = group(&gw, job);
    assert_eq!(value(&group, "job_last_exit_code"), 7.0);
    assert_eq!(totals(&group), (0.0, 1.0, 0.0, 0.0));
    all_pushed(&history(dir.path()), "delivered");
}

// ---------------------------------------------------------------------------
// A killed process

#[test]
fn a_push_in_flight_when_pushguard_is_killed_is_delivered_later() {
    let dir = tempfile::tempdir().unwrap();
    let job = "killed";
    let gw = Pushgateway::start();
    let proxy = SwitchProxy::start(ProxyMode::Hang);

    let mut running = Running::spawn(pushguard(dir.path()).args([
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
    // The entry is written before the request is sent, so a request at the
    // proxy means the entry is in the file and the push is in flight.
    harness::wait_until("the push to reach the proxy", EXIT_LIMIT, || {
        proxy.requests() >= 1
    });
    let spooled = outbox(dir.path());
    assert_eq!(spooled.len(), 1, "{spooled:#?}");
    assert!(
        running.child.try_wait().expect("try_wait").is_none(),
        "pushguard should still be waiting for the hung gateway"
    );

    running.child.kill().expect("SIGKILL pushguard");
    let done = running.wait();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&done.status),
        Some(9),
        "{done}"
    );

    // The entry survived the kill; the dead process's delivery lease is
    // taken over at once, not after it expires (60 s + 5 s from now).
    let spooled = outbox(dir.path());
    assert_eq!(spooled.len(), 1, "{spooled:#?}");
    assert_eq!(field(&spooled[0], "status"), "pending");
    proxy.set(ProxyMode::Forward(gw.port));
    let (done, left) = flush(dir.path());
    done.expect_code(0);
    assert!(left.is_empty(), "{done}");
    assert!(done.stderr.contains("delivered 1"), "{done}");

    let group = group(&gw, job);
    assert_eq!(totals(&group), (1.0, 0.0, 0.0, 0.0));
    assert_eq!(value(&group, "job_last_exit_code"), 0.0);
    let runs = history(dir.path());
    assert_eq!(runs.len(), 1);
    all_pushed(&runs, "delivered");
}

/// A flush killed while the fourth push of a batch hangs: the three the
/// gateway confirmed were not yet recorded, so they stay in the outbox with
/// the rest, and the next flush sends the whole group again, in order.
/// Nothing is lost, and the gateway ends with the newest push.
#[test]
fn a_flush_killed_in_the_middle_of_a_batch_loses_nothing_and_sends_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let proxy = SwitchProxy::start(ProxyMode::Down);
    let key = pushguard::GroupingKey::new("batch_killed").unwrap();
    {
        let state = State::open(dir.path().join("pushguard-state.sqlite")).unwrap();
        let down = Gateway::builder()
            .url(&proxy.url)
            .retries(0)
            .build()
            .unwrap();
        for value in 1..=10 {
            let mut body = pushguard::Body::new();
            body.gauge("batch_value", "A value.", f64::from(value))
                .unwrap();
            let report = state
                .push(&down, &key, pushguard::Method::Put, &body)
                .unwrap();
            assert!(report.spooled.is_some(), "{report:?}");
        }
    }
    assert_eq!(outbox(dir.path()).len(), 10);

    proxy.set(ProxyMode::Hang);
    proxy.queue(vec![ProxyMode::Forward(gw.port); 3]);
    let mut running =
        Running::spawn(pushguard(dir.path()).args(["outbox", "--flush", "--push-deadline", "60s"]));
    harness::wait_until("the fourth push to reach the proxy", EXIT_LIMIT, || {
        proxy.requests() >= 4
    });
    running.child.kill().expect("SIGKILL pushguard");
    let _ = running.wait();
    let value = |gw: &Pushgateway| {
        gw.group("batch_killed", &[])
            .and_then(|g| g.value("batch_value", &[]))
    };
    assert_eq!(value(&gw), Some(3.0), "the gateway took three");
    let left = outbox(dir.path());
    assert_eq!(
        left.len(),
        10,
        "nothing confirmed in the killed batch was deleted: {left:#?}"
    );
    assert!(
        left.iter().all(|e| field(e, "status") == "pending"),
        "{left:#?}"
    );

    // The dead process's lease is taken over at once (its PID is gone).
    proxy.set(ProxyMode::Forward(gw.port));
    let (done, left) = flush(dir.path());
    done.expect_code(0);
    assert!(left.is_empty(), "{done}");
    assert!(done.stderr.contains("delivered 10"), "{done}");
    assert_eq!(value(&gw), Some(10.0));
    let sent: Vec<f64> = proxy
        .seen()
        .iter()
        .map(|seen| seen.sample("batch_value").expect("a batch_value sample"))
        .collect();
    let mut expected: Vec<f64> = (1..=4).map(f64::from).collect();
    expected.extend((1..=10).map(f64::from));
    assert_eq!(sent, expected, "sent again from the oldest, in order");
}

// ---------------------------------------------------------------------------
// Many processes at once

#[test]
fn fifty_concurrent_runs_share_one_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let job = "crowd";
    let gw = Pushgateway::start();
    // The file exists, as it does after the first run on a host; the race of
    // first opens has its own test below.
    State::open(dir.path().join("pushguard-state.sqlite")).expect("create the state file");
    assert!(outbox(dir.path()).is_empty());
    let running: Vec<(i32, Running)> = (0..50)
        .map(|i| {
            let code = i % 2;
            let mut cmd = exec_cmd(dir.path(), &gw.url, job, code, &["--push-deadline", "20s"]);
            (code, Running::spawn(&mut cmd))
        })
        .collect();
    for (code, running) in running {
        let done = running.wait();
        done.expect_code(code);
        assert!(
            !done.stderr.contains("database is locked"),
            "the state file was locked: {done}"
        );
        done.quiet();
    }

    let group = group(&gw, job);
    assert_eq!(totals(&group), (25.0, 25.0, 0.0, 0.0));
    let runs = history(dir.path());
    assert_eq!(runs.len(), 50);
    all_pushed(&runs, "delivered");
    assert!(outbox(dir.path()).is_empty());
    // The run spooled last was delivered last.
    let newest = &runs[0];
    assert_eq!(
        value(&group, "job_last_exit_code"),
        number(newest, "exit_code")
    );
    same_time(
        "last completion",
        value(&group, "job_last_completion_timestamp_seconds"),
        number(newest, "end"),
    );
}

#[test]
fn concurrent_first_opens_of_a_new_state_file_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..10 {
        let state = dir.path().join(format!("new-{round}.db"));
        let state = state.to_str().expect("UTF-8 temp path");
        let running: Vec<Running> = (0..30)
            .map(|_| {
                // exec creates the file (history and outbox never do); the
                // gateway is a closed port, so each run spools at once.
                Running::spawn(pushguard(dir.path()).args([
                    "exec",
                    "--job",
                    "first",
                    "--gateway",
                    "http://127.0.0.1:1",
                    "--push-retries",
                    "0",
                    "--state",
                    state,
                    "--",
                    "true",
                ]))
            })
            .collect();
        for running in running {
            let done = running.wait();
            done.expect_code(0);
            assert!(
                !done.stderr.contains("pushing without the state file"),
                "a first open failed: {done}"
            );
        }
        let done =
            run(pushguard(dir.path())
                .args(["history", "--json", "--limit", "100", "--state", state]));
        assert_eq!(json_list(done.expect_code(0)).len(), 30);
    }
}

// ---------------------------------------------------------------------------
// Dead letters

#[test]
fn a_refused_push_becomes_a_dead_letter_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let push = |job: &str, metric: &str| {
        run(pushguard(dir.path()).args([
            "push",
            "--gateway",
            &gw.url,
            "--job",
            job,
            "--metric",
            metric,
        ]))
    };
    // `x` is a gauge in one group, so the gateway refuses it as a counter in
    // another, saying so.
    let reason_text = "inconsistent with existing metrics";
    push("conflict_other", "x=1").expect_code(0).quiet();
    let done = push("conflict", "x=2:counter");
    done.expect_code(1);
    assert!(done.stderr.contains(reason_text), "{done}");

    let letters = outbox(dir.path());
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_eq!(field(&letters[0], "status"), "dead");
    assert_eq!(letters[0]["group"]["job"], "conflict");
    assert_eq!(number(&letters[0], "attempts"), 1.0);
    let reason = field(&letters[0], "last_error");
    assert!(
        reason.contains("400") && reason.contains(reason_text),
        "{reason}"
    );

    // The dead letter does not block the group, and is not retried.
    push("conflict", "y=5").expect_code(0).quiet();
    assert_eq!(value(&group(&gw, "conflict"), "y"), 5.0);
    assert!(!group(&gw, "conflict").has("x"));
    let (done, left) = flush(dir.path());
    done.expect_code(0);
    assert_eq!(left.len(), 1, "{done}");
    assert_eq!(field(&left[0], "status"), "dead");
    assert_eq!(
        number(&left[0], "attempts"),
        1.0,
        "a dead letter was retried"
    );

    let done = run(pushguard(dir.path()).args(["outbox", "--drop-dead"]));
    done.expect_code(0);
    assert!(
        done.stdout.contains(reason_text),
        "shown before dropping: {done}"
    );
    assert!(outbox(dir.path()).is_empty());
}

// ---------------------------------------------------------------------------
// Broken state files

/// `history` and `outbox` refuse `state` with exit 2 and an error naming
/// `named` and saying `says`; `exec` still runs the command, keeps its exit
/// code, warns once (naming `named`) and pushes the run directly.
fn broken_state_still_pushes(
    dir: &Path,
    gw: &Pushgateway,
    state: &Path,
    (named, says): (&Path, &str),
    job: &str,
) {
    let named = named.display().to_string();
    let state_arg = state.to_str().expect("UTF-8 temp path");

    for command in ["history", "outbox"] {
        let done = run(pushguard(dir).args([command, "--state", state_arg]));
        done.expect_code(2);
        // A missing file is never created by these two: that is what they say.
        let says = if state.exists() {
            says
        } else {
            "no state file at"
        };
        assert!(
            done.stderr.contains(&named) && done.stderr.contains(says),
            "the error must name {named} and say {says:?}: {done}"
        );
    }

    let done = exec(dir, &gw.url, job, 4, &["--state", state_arg]);
    let warning = done.one_warning();
    assert!(
        warning.contains(&named) && warning.contains(says),
        "the warning must name {named} and say {says:?}: {done}"
    );
    let group = group(gw, job);
    assert_eq!(value(&group, "job_last_exit_code"), 4.0);
    // The totals are unknown without the file: left out, never restarted
    // from zero (this group had none before, so it has none now).
    assert!(!group.has("job_runs_total"), "{:?}", group.families());
    assert!(warning.contains("job_runs_total left out"), "{warning}");
}

/// pushguard's SQLite `application_id`: "PGRD" as a big-endian integer.
const APPLICATION_ID: i64 = 0x5047_5244;

/// Creates an SQLite file at `path` with `sql` run on it.
fn sqlite_file(path: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(sql).unwrap();
}

/// `(application_id, user_version, tables, journal_mode)` of an SQLite file.
fn sqlite_identity(path: &Path) -> (i64, i64, i64, String) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let get = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    (
        get("PRAGMA application_id"),
        get("PRAGMA user_version"),
        get("SELECT count(*) FROM sqlite_master"),
        mode,
    )
}

#[test]
fn a_corrupt_state_file_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let path = dir.path().join("corrupt.db");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 13) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();

    let problem = (path.as_path(), "is corrupt or not a database");
    broken_state_still_pushes(dir.path(), &gw, &path, problem, "corrupt_state");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        garbage,
        "the corrupt file was changed"
    );
}

#[test]
fn a_state_file_of_a_newer_version_is_reported_and_not_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let path = dir.path().join("newer.db");
    sqlite_file(
        &path,
        &format!("PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 99;"),
    );

    let problem = (path.as_path(), "has schema version 99, newer than");
    broken_state_still_pushes(dir.path(), &gw, &path, problem, "newer_state");
    let (app, version, tables, _) = sqlite_identity(&path);
    assert_eq!(
        (app, version, tables),
        (APPLICATION_ID, 99, 0),
        "the newer file was changed"
    );
}

#[test]
fn a_database_of_another_program_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let path = dir.path().join("other.db");
    sqlite_file(&path, "CREATE TABLE t (x); INSERT INTO t VALUES (1);");

    let problem = (path.as_path(), "belongs to another program");
    broken_state_still_pushes(dir.path(), &gw, &path, problem, "foreign_state");
    let (app, version, tables, _) = sqlite_identity(&path);
    assert_eq!(
        (app, version, tables),
        (0, 0, 1),
        "the other file was changed"
    );
}

#[test]
fn a_refused_database_keeps_its_journal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.db");
    sqlite_file(&other, "CREATE TABLE t (x); INSERT INTO t VALUES (1);");
    let newer = dir.path().join("newer.db");
    sqlite_file(
        &newer,
        &format!("PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 99;"),
    );
    for path in [&other, &newer] {
        assert_eq!(sqlite_identity(path).3, "delete");
        let state = path.to_str().expect("UTF-8 temp path");
        run(pushguard(dir.path()).args(["history", "--state", state])).expect_code(2);
        assert_eq!(
            sqlite_identity(path).3,
            "delete",
            "a file pushguard refused was switched to WAL: {}",
            path.display()
        );
    }
}

#[test]
fn an_unwritable_state_directory_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let path = file.join("sub/state.db");

    let problem = (file.as_path(), "cannot create the state directory");
    broken_state_still_pushes(dir.path(), &gw, &path, problem, "unwritable_state");
}

// ---------------------------------------------------------------------------
// The library

#[test]
fn library_runs_with_separate_handles_keep_cumulative_totals() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let path = dir.path().join("lib-state.db");
    let gateway = Gateway::builder().url(&gw.url).build().unwrap();
    let job = "lib_cumulative";
    // Two handles on one file, as two processes would have.
    let first = State::open(&path).unwrap();
    let second = State::open(&path).unwrap();

    let guard = JobRun::new(job)
        .state(first.clone())
        .gateway(gateway.clone())
        .start()
        .unwrap();
    guard
        .cumulative_counter("import_rows_total", "Rows imported, all runs.")
        .unwrap()
        .inc_by(250.0);
    guard.finish(Outcome::Success).unwrap();
    let group_now = group(&gw, job);
    assert_eq!(value(&group_now, "import_rows_total"), 250.0);
    assert_eq!(totals(&group_now), (1.0, 0.0, 0.0, 0.0));

    let mut guard = JobRun::new(job)
        .state(second.clone())
        .gateway(gateway.clone())
        .start()
        .unwrap();
    guard
        .cumulative_counter("import_rows_total", "Rows imported, all runs.")
        .unwrap()
        .inc_by(100.0);
    guard.set_exit_code(2);
    guard.finish(Outcome::Failure).unwrap();
    let group_now = group(&gw, job);
    assert_eq!(value(&group_now, "import_rows_total"), 350.0);
    assert_eq!(
        group_now.family_type("import_rows_total").as_deref(),
        Some("COUNTER")
    );
    assert_eq!(totals(&group_now), (1.0, 1.0, 0.0, 0.0));

    // A third run opening the file by path (its own connection again).
    JobRun::new(job)
        .state_path(&path)
        .gateway(gateway)
        .start()
        .unwrap()
        .finish(Outcome::Success)
        .unwrap();
    let group_now = group(&gw, job);
    assert_eq!(totals(&group_now), (2.0, 1.0, 0.0, 0.0));
    assert_eq!(value(&group_now, "job_last_exit_code"), 0.0);
    // The third run pushed no `import_rows_total`; POST keeps the total of
    // the runs before it.
    assert_eq!(value(&group_now, "import_rows_total"), 350.0);

    // Each handle sees what the other wrote.
    let seen = first.history(Some(job), 10).unwrap();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter().all(|r| r.push_status == "delivered"),
        "{seen:?}"
    );
    assert_eq!(
        second
            .counter_total(&format!("/metrics/job/{job}"), "import_rows_total", "")
            .unwrap(),
        Some(350.0)
    );
    assert!(first.outbox().unwrap().is_empty());
}

#[test]
fn a_state_file_locked_by_another_process_holds_the_run_s_end_at_most_the_deadline() {
    let gw = Pushgateway::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pushguard-state.sqlite");
    // A first run creates the file; then an outside writer holds it.
    exec(dir.path(), &gw.url, "locked", 0, &[]).quiet();
    let outside = rusqlite::Connection::open(&state).unwrap();
    outside.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let started = Instant::now();
    let marker = dir.path().join("ran");
    let done = run(pushguard(dir.path())
        .args([
            "exec",
            "--gateway",
            &gw.url,
            "--job",
            "locked",
            "--push-deadline",
            "1s",
        ])
        .args(["--", "touch"])
        .arg(&marker));
    let took = started.elapsed();
    done.expect_code(0);
    assert!(marker.exists(), "the command did not run");
    // The deadline twice at most (the open, on its own thread while the
    // command runs, then the run's write) plus process start-up;
    // SQLite's own busy timeout would be 30 s.
    assert!(took < Duration::from_secs(6), "took {took:?}");
    let warning = done.one_warning();
    assert!(
        warning.contains("database is locked") && warning.contains("pushed without the state file"),
        "{warning}"
    );
    // The result was pushed directly: the gateway shows the second run.
    assert_eq!(value(&group(&gw, "locked"), "job_last_exit_code"), 0.0);
    drop(outside);

    // Once the file is free again, runs are counted in it as before.
    exec(dir.path(), &gw.url, "locked", 0, &[]).quiet();
    let runs = history(dir.path());
    assert_eq!(runs.len(), 2, "{runs:?}");
}

#[test]
fn a_command_starts_while_its_state_file_is_locked_and_its_run_is_kept_once_the_lock_is_gone() {
    let gw = Pushgateway::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pushguard-state.sqlite");
    exec(dir.path(), &gw.url, "waits", 0, &[]).quiet();
    // An outside connection holding the file in exclusive locking mode keeps
    // every other connection out, readers included: opening the file waits.
    let outside = rusqlite::Connection::open(&state).unwrap();
    outside
        .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE")
        .unwrap();

    // The command tells the test it started, then waits for the test's word
    // (a FIFO it reads from).
    let started = dir.path().join("started");
    let go = dir.path().join("go");
    assert!(
        Command::new("mkfifo").arg(&go).status().unwrap().success(),
        "mkfifo"
    );
    let running = Running::spawn(
        pushguard(dir.path())
            .args(["exec", "--gateway", &gw.url, "--job", "waits"])
            .args(["--push-deadline", "60s", "--"])
            .args(["sh", "-c", r#"touch "$1" && cat "$2" >/dev/null"#, "sh"])
            .arg(&started)
            .arg(&go),
    );
    // Started while the file is still locked, without waiting out the 60 s
    // the state may take to open.
    harness::wait_until("the command's start", Duration::from_secs(30), || {
        started.exists()
    });
    drop(outside);
    std::fs::write(&go, b"go\n").unwrap();
    let done = running.wait();
    // The state opened once the lock was gone, within the deadline: the run
    // is in the history and counted, nothing was pushed around the file.
    done.expect_code(0).quiet();
    let runs = history(dir.path());
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(value(&group(&gw, "waits"), "job_runs_total"), 2.0);
    assert!(outbox(dir.path()).is_empty());
}

#[test]
fn runs_older_than_the_max_age_leave_the_history_when_the_job_runs_again() {
    let gw = Pushgateway::start();
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        exec(dir.path(), &gw.url, "aged", 0, &[]).quiet();
    }
    exec(dir.path(), &gw.url, "young", 0, &[]).quiet();
    // The first two runs of `aged` ended 100 days ago; `young`'s run too.
    let conn = rusqlite::Connection::open(dir.path().join("pushguard-state.sqlite")).unwrap();
    let days_100 = 100.0 * 86_400.0;
    conn.execute(
        "UPDATE runs SET start = start - ?1, end = end - ?1
          WHERE id IN (SELECT id FROM runs WHERE job = 'aged' ORDER BY id LIMIT 2)
             OR job = 'young'",
        [days_100],
    )
    .unwrap();
    drop(conn);
    let jobs = |dir: &Path| -> Vec<String> {
        history(dir)
            .iter()
            .map(|run| field(run, "job").to_owned())
            .collect()
    };

    // Within a 200-day limit nothing goes.
    exec(
        dir.path(),
        &gw.url,
        "aged",
        0,
        &["--history-max-age", "200days"],
    )
    .quiet();
    let seen = jobs(dir.path());
    assert_eq!(seen.iter().filter(|j| *j == "aged").count(), 4, "{seen:?}");

    // With the default 90 days the two old runs go as the job runs again;
    // another job's old run waits for that job's next run.
    exec(dir.path(), &gw.url, "aged", 0, &[]).quiet();
    let seen = jobs(dir.path());
    assert_eq!(seen.iter().filter(|j| *j == "aged").count(), 3, "{seen:?}");
    assert_eq!(seen.iter().filter(|j| *j == "young").count(), 1, "{seen:?}");
    exec(dir.path(), &gw.url, "young", 0, &[]).quiet();
    let seen = jobs(dir.path());
    assert_eq!(seen.iter().filter(|j| *j == "young").count(), 1, "{seen:?}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let ages: Vec<f64> = history(dir.path())
        .iter()
        .map(|run| now - number(run, "end"))
        .collect();
    assert!(ages.iter().all(|age| *age < days_100 / 2.0), "{ages:?}");
}

#[test]
fn state_and_store_files_are_created_for_their_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let gw = Pushgateway::start();
    let dir = tempfile::tempdir().unwrap();
    exec(dir.path(), &gw.url, "private", 0, &[]).quiet();
    let state = dir.path().join("pushguard-state.sqlite");
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", state.display());
    for companion in ["-wal", "-shm"] {
        let path = dir
            .path()
            .join(format!("pushguard-state.sqlite{companion}"));
        if let Ok(meta) = std::fs::metadata(&path) {
            assert_eq!(meta.permissions().mode() & 0o077, 0, "{}", path.display());
        }
    }
    let registry = pushguard::prometheus::Registry::new();
    let store = dir.path().join("releases.db");
    pushguard_releases::Store::open(&store, pushguard_releases::DbMetrics::new(&registry)).unwrap();
    let mode = std::fs::metadata(&store).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", store.display());
}

// ---------------------------------------------------------------------------
// One queue per gateway, however its URL is spelled

#[test]
fn spellings_of_one_gateway_share_one_queue_so_the_newest_run_wins() {
    let dir = tempfile::tempdir().unwrap();
    let job = "spellings";
    let gw = Pushgateway::start();
    let proxy = SwitchProxy::start(ProxyMode::Answer(500, "gateway overloaded"));
    let port = proxy
        .url
        .rsplit(':')
        .next()
        .expect("http://127.0.0.1:PORT")
        .to_owned();

    // Two failed runs, refused with 500 and spooled, under two spellings.
    for (url, code) in [
        (format!("http://127.0.0.1:{port}"), 3),
        (format!("HTTP://127.1:0{port}/"), 4),
    ] {
        let done = exec(dir.path(), &url, job, code, &[]);
        assert!(done.one_warning().contains("kept in the outbox"), "{done}");
    }
    let spooled = outbox(dir.path());
    assert_eq!(spooled.len(), 2, "{spooled:#?}");

    // The gateway recovers; a successful run under a third spelling goes
    // after the two older pushes of its group, not before them.
    proxy.set(ProxyMode::Forward(gw.port));
    exec(dir.path(), &format!("http://localhost:{port}"), job, 0, &[]).quiet();
    let (done, left) = flush(dir.path());
    done.expect_code(0);
    assert!(left.is_empty(), "left after --flush: {done}");

    let group = group(&gw, job);
    assert_eq!(value(&group, "job_last_exit_code"), 0.0, "the newest run");
    assert_eq!(value(&group, "job_last_run_failed"), 0.0);
    assert_eq!(totals(&group), (1.0, 2.0, 0.0, 0.0));
    let runs = history(dir.path());
    assert_eq!(runs.len(), 3, "{runs:#?}");
    all_pushed(&runs, "delivered");
    same_time(
        "last completion",
        value(&group, "job_last_completion_timestamp_seconds"),
        number(&runs[0], "end"),
    );
}

// ---------------------------------------------------------------------------
// Counters never go backwards

#[test]
fn a_run_whose_state_file_is_locked_leaves_the_totals_on_the_gateway_alone() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let path = dir.path().join("lib-state.db");
    let job = "lib_locked_totals";
    let state = State::open(&path).unwrap();
    let run = || {
        JobRun::new(job).state(state.clone()).gateway(
            Gateway::builder()
                .url(&gw.url)
                .deadline(Duration::from_millis(700))
                .build()
                .unwrap(),
        )
    };

    // Three runs counted in the state file.
    for _ in 0..3 {
        let mut guard = run().start().unwrap();
        guard.add_missed_runs("overlap", 1).unwrap();
        guard
            .cumulative_counter("locked_rows_total", "Rows, all runs.")
            .unwrap()
            .inc_by(10.0);
        let report = guard.finish(Outcome::Success).unwrap();
        assert!(report.is_delivered() && report.state_warning.is_none());
    }
    let before = group(&gw, job);
    assert_eq!(totals(&before), (3.0, 0.0, 0.0, 0.0));

    // Another process holds the file: the run cannot count itself there.
    let outside = rusqlite::Connection::open(&path).unwrap();
    outside.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let mut guard = run().start().unwrap();
    guard.set_exit_code(5);
    guard.add_missed_runs("overlap", 1).unwrap();
    guard
        .cumulative_counter("locked_rows_total", "Rows, all runs.")
        .unwrap()
        .inc_by(10.0);
    let report = guard.finish(Outcome::Failure).unwrap();
    drop(outside);
    let warning = report.state_warning.expect("a state warning");
    for said in [
        path.to_str().unwrap(),
        "locked",
        "job_runs_total",
        "job_missed_runs_total",
        "locked_rows_total",
        "left out",
    ] {
        assert!(warning.contains(said), "{said:?} missing: {warning}");
    }

    // The run itself is on the gateway; no counter went backwards.
    let after = group(&gw, job);
    assert_eq!(value(&after, "job_last_exit_code"), 5.0);
    assert_eq!(value(&after, "job_last_run_failed"), 1.0);
    assert_eq!(totals(&after), totals(&before));
    assert_eq!(
        after.value("job_missed_runs_total", &[("reason", "overlap")]),
        Some(3.0)
    );
    assert_eq!(value(&after, "locked_rows_total"), 30.0);

    // A file that cannot even be opened (here: not a database) says the same.
    let corrupt = dir.path().join("corrupt.db");
    std::fs::write(&corrupt, vec![0x42; 8192]).unwrap();
    let problem = State::open(&corrupt).unwrap_err();
    let report = JobRun::new(job)
        .state_unusable(problem)
        .gateway(Gateway::builder().url(&gw.url).build().unwrap())
        .start()
        .unwrap()
        .finish(Outcome::Success)
        .unwrap();
    let warning = report.state_warning.expect("a state warning");
    assert!(
        warning.contains("corrupt.db") && warning.contains("job_runs_total"),
        "{warning}"
    );
    let after = group(&gw, job);
    assert_eq!(value(&after, "job_last_exit_code"), 0.0);
    assert_eq!(totals(&after), totals(&before));

    // With the file free again the totals go on from the file, and the
    // handle that could not record the locked run writes it first: its
    // failure, missed run and rows count now.
    run().start().unwrap().finish(Outcome::Success).unwrap();
    let last = group(&gw, job);
    assert_eq!(totals(&last), (4.0, 1.0, 0.0, 0.0));
    let grouping = format!("/metrics/job/{job}");
    let total = |name: &str, labels: &str| state.counter_total(&grouping, name, labels).unwrap();
    assert_eq!(
        total("job_missed_runs_total", "reason=\"overlap\""),
        Some(4.0)
    );
    assert_eq!(total("locked_rows_total", ""), Some(40.0));
    let statuses: Vec<String> = state
        .history(Some(job), 10)
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r.outcome, r.push_status))
        .collect();
    assert_eq!(
        statuses[..2],
        ["success delivered".to_owned(), "failure direct".to_owned()]
    );
}

/// A small tmpfs mounted for one test, unmounted on drop.
struct SmallDisk {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a small tmpfs for the full-disk test (needs root, as scripts/test runs in CI): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { path, _dir: dir }
    }

    /// Fills the disk until a write fails with ENOSPC.
    fn fill(&self) {
        use std::io::Write as _;
        let mut file = std::fs::File::create(self.path.join("filler")).unwrap();
        let block = vec![0u8; 4096];
        loop {
            match file.write_all(&block) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        let _ = file.sync_all();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

#[test]
fn a_full_disk_keeps_the_exit_code_and_never_lowers_the_totals() {
    let gw = Pushgateway::start();
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount("1m");
    let state = disk.path.join("state.db");
    let state_arg = state.to_str().expect("UTF-8 temp path");
    for _ in 0..2 {
        exec(dir.path(), &gw.url, "full_disk", 0, &["--state", state_arg]).quiet();
    }
    assert_eq!(totals(&group(&gw, "full_disk")).0, 2.0);
    disk.fill();

    let done = exec(dir.path(), &gw.url, "full_disk", 3, &["--state", state_arg]);
    let warning = done.one_warning();
    assert!(
        warning.contains("pushed without the state file"),
        "{warning}"
    );
    let group = group(&gw, "full_disk");
    // The run's result arrived; the counters kept their values.
    assert_eq!(value(&group, "job_last_exit_code"), 3.0);
    assert_eq!(totals(&group).0, 2.0, "job_runs_total went backwards");
}

#[cfg(feature = "postgres")]
mod fleet;
#[cfg(feature = "postgres")]
mod postgres;
