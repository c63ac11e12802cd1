//! `pushguard run`, `trigger` and `check` driven as a user drives them: job
//! files in a fresh directory, a real Pushgateway, the runner's own HTTP
//! endpoint on a free loopback port, and signals. Every check reads back what
//! the gateway, the endpoint or the state file hold; conditions are polled
//! with deadlines, never waited for with fixed sleeps.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::harness::{Pushgateway, free_port, get, pushguard, wait_until};
use crate::prom;

/// Deadline for conditions that need a few scheduled runs.
const LIMIT: Duration = Duration::from_secs(15);

/// Environment a runner test must not inherit.
const RUNNER_ENV: [&str; 8] = [
    "PUSHGUARD_RUNNER_ID",
    "PUSHGUARD_CONFIG",
    "PUSHGUARD_JOBS",
    "PUSHGUARD_LISTEN",
    "PUSHGUARD_API_TOKEN",
    "PUSHGUARD_API_TOKEN_FILE",
    "PUSHGUARD_STATE",
    "PUSHGATEWAY_URL",
];

// ---------------------------------------------------------------------------
// Helpers

/// A fresh temp dir with an empty `jobs/`.
pub(crate) fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::create_dir(dir.path().join("jobs")).expect("jobs dir");
    dir
}

pub(crate) fn jobs_dir(dir: &Path) -> PathBuf {
    dir.join("jobs")
}

pub(crate) fn state_path(dir: &Path) -> PathBuf {
    dir.join("pushguard-state.sqlite")
}

/// Writes `jobs/NAME.toml` and returns its path.
pub(crate) fn write_job(dir: &Path, name: &str, toml: &str) -> PathBuf {
    let path = jobs_dir(dir).join(format!("{name}.toml"));
    fs::write(&path, toml).expect("write job file");
    path
}

/// `pushguard` with the clean harness environment minus the runner variables.
fn command(dir: &Path) -> Command {
    let mut cmd = pushguard(dir);
    for var in RUNNER_ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// `pushguard trigger NAME --jobs DIR` against `gateway`, with the test's
/// state file; waits (with a deadline) for it to end.
fn trigger_cli(dir: &Path, gateway: &str, name: &str) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = command(dir)
        .args(["trigger", name, "--jobs"])
        .arg(jobs_dir(dir))
        .env("PUSHGATEWAY_URL", gateway)
        .env("PUSHGUARD_STATE", state_path(dir))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pushguard trigger");
    wait_until("pushguard trigger to exit", LIMIT, || {
        child.try_wait().expect("try_wait").is_some()
    });
    let elapsed = started.elapsed();
    (child.wait_with_output().expect("trigger output"), elapsed)
}

/// `pushguard history --json --state PATH`: the recorded runs, newest first.
fn history(dir: &Path) -> Vec<Value> {
    let out = command(dir)
        .args(["history", "--json", "--limit", "1000", "--state"])
        .arg(state_path(dir))
        .output()
        .expect("run pushguard history");
    assert!(out.status.success(), "history failed: {out:?}");
    serde_json::from_slice::<Value>(&out.stdout)
        .expect("history JSON")
        .as_array()
        .expect("history array")
        .clone()
}

/// The value of `family{labels}` in the gateway group of `job`; 0 when the
/// group or the sample is not there (yet).
fn gw_value(gw: &Pushgateway, job: &str, family: &str, labels: &[(&str, &str)]) -> f64 {
    gw.group(job, &[])
        .and_then(|g| g.value(family, labels))
        .unwrap_or(0.0)
}

fn runs_total(gw: &Pushgateway, job: &str, outcome: &str) -> f64 {
    gw_value(gw, job, "job_runs_total", &[("outcome", outcome)])
}

fn missed_total(gw: &Pushgateway, job: &str, reason: &str) -> f64 {
    gw_value(gw, job, "job_missed_runs_total", &[("reason", reason)])
}

/// `POST url` with an optional bearer token; the response status.
fn post(url: &str, token: Option<&str>) -> u16 {
    let mut request = ureq::post(url)
        .config()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build();
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    request.send_empty().expect("POST").status().as_u16()
}

/// `GET url` with an optional bearer token: status and body.
fn get_with(url: &str, token: Option<&str>) -> (u16, String) {
    let mut request = ureq::get(url)
        .config()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build();
    if let Some(token) = token {
        request = request.header("Authorization", format!("bearer {token}"));
    }
    let mut answer = request.call().expect("GET");
    let status = answer.status().as_u16();
    (
        status,
        answer.body_mut().read_to_string().unwrap_or_default(),
    )
}

pub(crate) fn get_json(url: &str) -> Value {
    let text = get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {text}"))
}

/// A `pushguard run` process on a free loopback port, its stdout and stderr
/// in files of the test's dir; SIGKILLed on drop if still running.
pub(crate) struct RunnerProcess {
    child: Child,
    pub(crate) url: String,
    stderr: PathBuf,
    stdout: PathBuf,
}

impl RunnerProcess {
    /// Starts `pushguard run` for `dir/jobs` against `gateway` and waits for
    /// `/health`.
    pub(crate) fn start(dir: &Path, gateway: &str) -> Self {
        Self::start_with(dir, gateway, &[])
    }

    pub(crate) fn start_with(dir: &Path, gateway: &str, env: &[(&str, &str)]) -> Self {
        Self::start_on(dir, gateway, state_path(dir).as_os_str(), env)
    }

    /// Starts `pushguard run` with `--state STATE` (a file or a URL).
    pub(crate) fn start_on(
        dir: &Path,
        gateway: &str,
        state: &std::ffi::OsStr,
        env: &[(&str, &str)],
    ) -> Self {
        let stdout = dir.join("runner.stdout");
        let stderr = dir.join("runner.stderr");
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = command(dir);
            cmd.arg("run")
                .arg("--jobs")
                .arg(jobs_dir(dir))
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--gateway")
                .arg(gateway)
                .arg("--state")
                .arg(state)
                .stdout(fs::File::create(&stdout).expect("stdout file"))
                .stderr(fs::File::create(&stderr).expect("stderr file"));
            for (key, value) in env {
                cmd.env(key, value);
            }
            let child = cmd.spawn().expect("spawn pushguard run");
            let mut runner = RunnerProcess {
                child,
                url: format!("http://127.0.0.1:{port}"),
                stderr: stderr.clone(),
                stdout: stdout.clone(),
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut pause = Duration::from_millis(2);
            loop {
                if get(&format!("{}/health", runner.url)).is_ok() {
                    return runner;
                }
                if runner.child.try_wait().expect("try_wait").is_some() {
                    // Lost the port race (or failed): try another port.
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the runner did not answer /health: {}",
                    runner.stderr()
                );
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
        }
        panic!(
            "pushguard run did not start: {}",
            fs::read_to_string(&stderr).unwrap_or_default()
        );
    }

    /// SIGKILL: the runner dies at once, its commands are left running.
    #[cfg(feature = "postgres")]
    pub(crate) fn kill9(&mut self) {
        self.signal(Signal::SIGKILL);
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits (with a deadline) for the runner to exit.
    #[cfg(feature = "postgres")]
    pub(crate) fn stop(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait_exit(Duration::from_secs(60))
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal the runner");
    }

    pub(crate) fn stderr(&self) -> String {
        format!(
            "--- runner stdout\n{}\n--- runner stderr\n{}",
            fs::read_to_string(&self.stdout).unwrap_or_default(),
            fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// Waits (with a deadline) for the runner to exit.
    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let mut status = None;
        wait_until("the runner to exit", limit, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        status.expect("an exit status")
    }

    /// Polls `ready` until it holds; on the deadline panics with the
    /// runner's output.
    pub(crate) fn wait_until(&self, what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !ready() {
            assert!(
                Instant::now() < deadline,
                "{what} not ready within {limit:?}\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET /api/jobs`.
    pub(crate) fn jobs(&self) -> Vec<Value> {
        get_json(&format!("{}/api/jobs", self.url))
            .as_array()
            .expect("/api/jobs is an array")
            .clone()
    }

    pub(crate) fn job(&self, name: &str) -> Option<Value> {
        self.jobs().into_iter().find(|j| j["name"] == name)
    }

    /// `GET /api/runs?job=NAME&limit=N`.
    pub(crate) fn runs(&self, job: &str, limit: usize) -> Vec<Value> {
        get_json(&format!("{}/api/runs?job={job}&limit={limit}", self.url))
            .as_array()
            .expect("/api/runs is an array")
            .clone()
    }

    pub(crate) fn metrics(&self) -> String {
        get(&format!("{}/metrics", self.url)).expect("GET /metrics")
    }

    pub(crate) fn trigger(&self, job: &str, token: Option<&str>) -> u16 {
        post(&format!("{}/api/jobs/{job}/trigger", self.url), token)
    }
}

impl Drop for RunnerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A schedule that does not fire during a test.
const NEVER: &str = "0 0 1 1 *";

// ---------------------------------------------------------------------------
// pushguard check

#[test]
fn check_lists_every_problem_with_file_and_key_and_passes_good_files() {
    let dir = workspace();
    let d = dir.path();
    // (file stem, contents, words the problem line must name)
    let broken: [(&str, &str, &[&str]); 5] = [
        (
            "badcron",
            "schedule = \"61 * * * *\"\ncommand = [\"true\"]\n",
            &["schedule", "61 * * * *"],
        ),
        (
            "unknownkey",
            "schedule = \"@every 1s\"\ncommand = [\"true\"]\ncolour = \"blue\"\n",
            &["colour"],
        ),
        (
            "badduration",
            "schedule = \"@every 1s\"\ncommand = [\"true\"]\ntimeout = \"5 parsecs\"\n",
            &["timeout", "5 parsecs"],
        ),
        (
            "badzone",
            "schedule = \"@every 1s\"\ntimezone = \"Mars/Olympus_Mons\"\ncommand = [\"true\"]\n",
            &["timezone", "Mars/Olympus_Mons"],
        ),
        ("nocommand", "schedule = \"@every 1s\"\n", &["command"]),
    ];
    for (name, toml, _) in &broken {
        write_job(d, name, toml);
    }
    let out = command(d)
        .args(["check", "--jobs"])
        .arg(jobs_dir(d))
        .output()
        .expect("run pushguard check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    for (name, _, words) in &broken {
        let file = format!("{name}.toml");
        let line = stderr
            .lines()
            .find(|l| l.contains(&file))
            .unwrap_or_else(|| panic!("no problem reported for {file}:\n{stderr}"));
        for word in *words {
            assert!(
                line.contains(word),
                "{file}: {word:?} not named in {line:?}"
            );
        }
    }
    // Without side effects: no state file was created.
    assert!(!state_path(d).exists(), "check created the state file");
    assert!(!d.join("xdg-state").exists(), "check created a state dir");

    // Good files only: exit 0, every job listed.
    for (name, _, _) in &broken {
        fs::remove_file(jobs_dir(d).join(format!("{name}.toml"))).unwrap();
    }
    write_job(
        d,
        "tick",
        "schedule = \"@every 1s\"\ncommand = [\"true\"]\ntimeout = \"5s\"\n",
    );
    write_job(
        d,
        "nightly",
        "schedule = \"30 2 * * *\"\ntimezone = \"Europe/Berlin\"\nbuiltin = \"noop\"\n",
    );
    let out = command(d)
        .args(["check", "--jobs"])
        .arg(jobs_dir(d))
        .output()
        .expect("run pushguard check");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("tick") && stdout.contains("nightly"),
        "{stdout}"
    );
}

// ---------------------------------------------------------------------------
// Scheduling, pushing, endpoints

#[test]
fn every_second_job_runs_repeatedly_and_is_visible_on_all_endpoints() {
    let gw = Pushgateway::start();
    let dir = workspace();
    let d = dir.path();
    write_job(
        d,
        "tick",
        "schedule = \"@every 1s\"\ncommand = [\"sh\", \"-c\", \"echo tock\"]\n",
    );
    let runner = RunnerProcess::start(d, &gw.url);

    runner.wait_until("two successful runs on the gateway", LIMIT, || {
        runs_total(&gw, "tick", "success") >= 2.0
    });
    // The staleness alert's yardstick: the schedule's interval.
    assert_eq!(
        gw_value(&gw, "tick", "job_expected_interval_seconds", &[]),
        1.0
    );

    let metrics = runner.metrics();
    assert!(
        metrics.contains("job_last_exit_code{job=\"tick\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pushguard_schedule_lag_seconds_count"),
        "{metrics}"
    );
    let lag_count: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("pushguard_schedule_lag_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .expect("lag count sample");
    assert!(lag_count >= 2.0, "{metrics}");

    let job = runner.job("tick").expect("tick in /api/jobs");
    assert_eq!(job["schedule"], "@every 1s", "{job}");
    let next = job["next_run"].as_str().expect("next_run is set");
    assert!(
        chrono::DateTime::parse_from_rfc3339(next).is_ok(),
        "next_run {next:?}"
    );

    // A run is recorded as "spooled" and marked delivered right after its
    // push, so the newest one may be caught in between: poll.
    let mut runs = Vec::new();
    runner.wait_until("the newest run delivered in /api/runs", LIMIT, || {
        runs = runner.runs("tick", 1);
        runs.len() == 1 && runs[0]["push_status"] == "delivered"
    });
    assert_eq!(runs[0]["job"], "tick", "{runs:?}");
    assert_eq!(runs[0]["outcome"], "success", "{runs:?}");
    // The command's last output lines are kept with the run.
    assert_eq!(runs[0]["output"], "tock", "{runs:?}");
}

#[test]
fn overlap_forbid_skips_and_counts_missed_runs() {
    let gw = Pushgateway::start();
    let dir = workspace();
    let d = dir.path();
    write_job(
        d,
        "slow",
        "schedule = \"@every 1s\"\ncommand = [\"sleep\", \"3\"]\noverlap = \"forbid\"\n",
    );
    let runner = RunnerProcess::start(d, &gw.url);
    runner.wait_until("a skipped run and an overlap miss", LIMIT, || {
        runs_total(&gw, "slow", "skipped") >= 1.0 && missed_total(&gw, "slow", "overlap") >= 1.0
    });
    // Forbid never starts a second one alongside.
    assert!(
        runner.job("slow").expect("slow")["running"]
            .as_u64()
            .unwrap_or(0)
            <= 1
    );
}

#[test]
fn overlap_replace_stops_the_running_one() {
    let gw = Pushgateway::start();
    let dir = workspace();
    let d = dir.path();
    // Never ends by itself within the test: a failure can only come from
    // being replaced.
    write_job(
        d,
        "hog",
        "schedule = \"@every 1s\"\ncommand = [\"sleep\", \"30\"]\noverlap = \"replace\"\n",
    );
    let runner = RunnerProcess::start(d, &gw.url);
    runner.wait_until("a replaced run in the history", LIMIT, || {
        runner
            .runs("hog", 10)
            .iter()
            .any(|r| r["outcome"] == "failure" && r["exit_code"] == 143)
    });
    runner.wait_until("the replaced run on the gateway", LIMIT, || {
        runs_total(&gw, "hog", "failure") >= 1.0
    });
    assert_eq!(runs_total(&gw, "hog", "skipped"), 0.0);
}

#[test]
fn timeout_kills_the_run_and_reports_exit_code_124() {
    let gw = Pushgateway::start();
    let dir = workspace();
    let d = dir.path();
    write_job(
        d,
        "stuck",
        "schedule = \"@every 1s\"\ncommand = [\"sleep\", \"30\"]\ntimeout = \"300ms\"\n",
    );
    let runner = RunnerProcess::start(d, &gw.url);
    runner.wait_until("a timed-out run on the gateway", LIMIT, || {
        runs_total(&gw, "stuck", "timeout") >= 1.0
    });
    assert_eq!(
        gw_value(&gw, "stuck", "job_last_exit_code", &[]),
        124.0,
        "{}",
        runner.stderr()
    );
    let mut run = Value::Null;
    runner.wait_until("the timed-out run in /api/runs", LIMIT, || {
        let runs = runner.runs("stuck", 5);
        match runs.into_iter().find(|r| r["outcome"] == "timeout") {
            Some(found) => {
                run = found;
                true
            }
            None => false,
        }
    });
    assert_eq!(run["exit_code"], 124, "{run}");
    let duration = run["duration_seconds"].as_f64().expect("duration");
    assert!(duration < 5.0, "the run was not cut short: {run}");
}

/// The peak resident memory (`VmHWM`) of `pid`, in bytes.
fn peak_rss(pid: Pid) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

#[test]
fn a_huge_output_line_is_kept_bounded_in_memory_history_and_api() {
    // The budget of the kept output (see pushguard_cli::supervisor).
    const TAIL_BYTES: usize = 64 * 1024;
    const LINE: usize = 50_000_000;
    let gw = Pushgateway::start();
    let dir = workspace();
    let d = dir.path();
    let script = format!("echo first; head -c {LINE} /dev/zero | tr '\\0' a; echo; echo last");
    write_job(
        d,
        "loud",
        &format!("schedule = \"{NEVER}\"\ncommand = [\"sh\", \"-c\", {script:?}]\n"),
    );
    let runner = RunnerProcess::start(d, &gw.url);
    let before = peak_rss(runner.pid());
    assert_eq!(runner.trigger("loud", None), 202);
    let mut runs = Vec::new();
    runner.wait_until("the loud run in /api/runs", LIMIT, || {
        runs = runner.runs("loud", 1);
        runs.len() == 1
    });
    assert_eq!(runs[0]["outcome"], "success", "{runs:?}");
    let output = runs[0]["output"].as_str().expect("output").to_owned();
    assert!(output.len() <= TAIL_BYTES, "{} bytes kept", output.len());
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.len(), 3, "{}", &output[..output.len().min(300)]);
    assert_eq!((lines[0], lines[2]), ("first", "last"));
    assert!(lines[1].starts_with("aaaa"), "{}", &lines[1][..100]);
    assert!(
        lines[1].contains("… [cut "),
        "no cut marker: {}",
        &lines[1][4000..]
    );

    let mut tail = None;
    runner.wait_until("the loud run's tail in /api/jobs", LIMIT, || {
        let job = runner.job("loud").expect("loud in /api/jobs");
        tail = job["last"]["output_tail"].as_str().map(str::to_owned);
        tail.is_some()
    });
    assert_eq!(tail.as_deref(), Some(output.as_str()));
    let history = history(d);
    assert_eq!(history[0]["output"].as_str(), Some(output.as_str()));
    // Reading the line never held it whole: the runner's peak memory grew
    // by far less than its size.
    let grown = peak_rss(runner.pid()).saturating_sub(before);
    assert!(
        grown < (LINE / 5) as u64,
        "the runner's peak grew by {grown} bytes for a {LINE}-byte line"
    );
}

#[test]
fn retries_with_backoff_count_one_run() {
    let gw = Pushgateway::start();
    let dir = workspace();
    let d = dir.path();
    let toml = format!(
        "schedule = \"{NEVER}\"\ncommand = [\"sh\", \"-c\", \"echo x >> attempts.txt; exit 1\"]\n\
         retries = 2\nbackoff = \"100ms\"\nworkdir = {:?}\n",
        d.display().to_string()
    );
    write_job(d, "flaky", &toml);
    let (out, elapsed) = trigger_cli(d, &gw.url, "flaky");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let attempts = fs::read_to_string(d.join("attempts.txt")).expect("attempts.txt");
    assert_eq!(attempts.lines().count(), 3, "{attempts:?}");
    // Backoff 100 ms, then 200 ms.
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert_eq!(runs_total(&gw, "flaky", "failure"), 1.0, "{out:?}");
    assert_eq!(gw_value(&gw, "flaky", "job_last_exit_code", &[]), 1.0);
    let runs = history(d);
    assert_eq!(runs.len(), 1, "{runs:?}");
}

#[test]
fn trigger_endpoint_on_loopback_without_token() {
    let gw = Pushgateway::start();
    let dir = workspace();
    let d = dir.path();
    write_job(
        d,
        "manual",
        &format!("schedule = \"{NEVER}\"\ncommand = [\"true\"]\n"),
    );
    let runner = RunnerProcess::start(d, &gw.url);
    assert_eq!(runner.trigger("nosuchjob", None), 404);
    assert_eq!(runner.trigger("manual", None), 202, "{}", runner.stderr());
    runner.wait_until("the triggered run on the gateway", LIMIT, || {
        runs_total(&gw, "manual", "success") >= 1.0
    });
}

#[test]
fn promtool_accepts_the_runners_metrics_with_help_for_every_family() {
    let gw = Pushgateway::start();
    let dir = workspace();
    let d = dir.path();
    write_job(
        d,
        "good",
        &format!(
            "schedule = \"{NEVER}\"\ncommand = [\"true\"]\nlabels = {{ team = \"ops \\\"night\\\"\" }}\n"
        ),
    );
    write_job(
        d,
        "bad",
        &format!("schedule = \"{NEVER}\"\ncommand = [\"sh\", \"-c\", \"exit 3\"]\n"),
    );
    let runner = RunnerProcess::start(d, &gw.url);
    assert_eq!(runner.trigger("good", None), 202, "{}", runner.stderr());
    assert_eq!(runner.trigger("bad", None), 202, "{}", runner.stderr());
    let mut metrics = String::new();
    runner.wait_until("both runs on /metrics", LIMIT, || {
        metrics = runner.metrics();
        metrics.contains("job_last_exit_code{job=\"bad\"} 3")
            && metrics.contains("job_last_exit_code{job=\"good\",team=\"ops \\\"night\\\"\"} 0")
    });
    for family in [
        "job_last_start_timestamp_seconds",
        "job_last_completion_timestamp_seconds",
        "job_last_success_timestamp_seconds",
        "job_last_failure_timestamp_seconds",
        "job_duration_seconds",
        "job_last_exit_code",
        "job_last_run_failed",
    ] {
        let def = pushguard::catalog::metric(family).expect("a catalogue family");
        assert!(
            metrics.contains(&format!(
                "# HELP {family} {}\n# TYPE {family} gauge\n",
                def.help
            )),
            "{family} lacks the catalogue's HELP and TYPE:\n{metrics}"
        );
    }
    assert!(
        metrics.contains(
            "job_last_success_timestamp_seconds{job=\"good\",team=\"ops \\\"night\\\"\"} "
        ),
        "{metrics}"
    );
    assert!(
        !metrics.contains("job_last_success_timestamp_seconds{job=\"bad\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("job_last_run_failed{job=\"bad\"} 1\n"),
        "{metrics}"
    );
    prom::check_metrics("the runner's /metrics", &metrics, &[]);
}

#[test]
fn trigger_endpoint_requires_the_token_when_configured() {
    let gw = Pushgateway::start();
    let dir = workspace();
    let d = dir.path();
    write_job(
        d,
        "manual",
        &format!("schedule = \"{NEVER}\"\ncommand = [\"true\"]\n"),
    );
    let token = "s3cret-token";
    let runner = RunnerProcess::start_with(d, &gw.url, &[("PUSHGUARD_API_TOKEN", token)]);
    assert_eq!(runner.trigger("manual", None), 401);
    assert_eq!(runner.trigger("manual", Some("wrong")), 401);
    assert_eq!(runner.trigger("nosuchjob", Some("wrong")), 401);
    // A post another site makes a browser send is refused, token or not.
    let url = format!("{}/api/jobs/manual/trigger", runner.url);
    for (name, value) in [
        ("Origin", "http://evil.example"),
        ("Sec-Fetch-Site", "cross-site"),
    ] {
        let status = ureq::post(&url)
            .config()
            .http_status_as_error(false)
            .build()
            .header("Authorization", format!("Bearer {token}"))
            .header(name, value)
            .send_empty()
            .expect("POST")
            .status()
            .as_u16();
        assert_eq!(status, 403, "{name}: {value}");
    }
    // Reads need the token too (job output can hold secrets); /health and
    // /metrics stay open. The scheme is case-insensitive.
    for path in ["/api/jobs", "/api/runs?job=manual"] {
        let url = format!("{}{path}", runner.url);
        assert_eq!(get_with(&url, None).0, 401, "{path}");
        assert_eq!(get_with(&url, Some("wrong")).0, 401, "{path}");
        assert_eq!(get_with(&url, Some(token)).0, 200, "{path}");
    }
    for path in ["/health", "/metrics"] {
        assert_eq!(
            get_with(&format!("{}{path}", runner.url), None).0,
            200,
            "{path}"
        );
    }
    // Nothing ran for the refused triggers.
    let (_, runs) = get_with(&format!("{}/api/runs?job=manual", runner.url), Some(token));
    assert_eq!(runs.trim(), "[]");
    assert!(gw.group("manual", &[]).is_none());
    assert_eq!(runner.trigger("manual", Some(token)), 202);
    runner.wait_until("the triggered run on the gateway", LIMIT, || {
        runs_total(&gw, "manual", "success") >= 1.0
    });
    assert_eq!(runner.trigger("nosuchjob", Some(token)), 404);
}

#[test]
fn triggering_a_running_forbid_job_answers_409_with_the_reason() {
    let gw = Pushgateway::start();
    let dir = workspace();
    let d = dir.path();
    write_job(
        d,
        "long",
        &format!("schedule = \"{NEVER}\"\noverlap = \"forbid\"\ncommand = [\"sleep\", \"30\"]\n"),
    );
    let runner = RunnerProcess::start(d, &gw.url);
    assert_eq!(runner.trigger("long", None), 202);
    runner.wait_until("the run to be going", LIMIT, || {
        runner.job("long").expect("long")["running"] == 1
    });
    let url = format!("{}/api/jobs/long/trigger", runner.url);
    let answer = ureq::post(&url)
        .config()
        .http_status_as_error(false)
        .build()
        .send_empty()
        .expect("POST");
    assert_eq!(answer.status().as_u16(), 409);
    let body = answer.into_body().read_to_string().expect("body");
    assert!(body.contains("forbid"), "{body}");
    assert_eq!(runner.job("long").expect("long")["running"], 1);
}

// ---------------------------------------------------------------------------
// Signals

#[test]
fn sigterm_waits_for_the_running_job_then_pushes_and_records_it() {
    let gw = Pushgateway::start();
    let dir = workspace();
    let d = dir.path();
    write_job(
        d,
        "finish",
        &format!("schedule = \"{NEVER}\"\ncommand = [\"sh\", \"-c\", \"sleep 1; exit 0\"]\n"),
    );
    let mut runner = RunnerProcess::start(d, &gw.url);
    assert_eq!(runner.trigger("finish", None), 202);
    runner.wait_until("the run to be going", LIMIT, || {
        runner.job("finish").expect("finish")["running"] == 1
    });
    assert!(gw.group("finish", &[]).is_none(), "ended too early");
    runner.signal(Signal::SIGTERM);
    let status = runner.wait_exit(LIMIT);
    assert_eq!(status.code(), Some(0), "{}", runner.stderr());

    assert_eq!(
        runs_total(&gw, "finish", "success"),
        1.0,
        "{}",
        runner.stderr()
    );
    let runs = history(d);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["job"], "finish");
    assert_eq!(runs[0]["outcome"], "success", "{runs:?}");
    assert_eq!(runs[0]["exit_code"], 0, "{runs:?}");
    assert_eq!(runs[0]["push_status"], "delivered", "{runs:?}");
}

/// Reads the pid a job wrote to `path`, once the file is complete.
fn written_pid(path: &Path) -> Option<i32> {
    let text = fs::read_to_string(path).ok()?;
    text.strip_suffix('\n')?.parse().ok()
}

#[test]
fn sigterm_to_trigger_stops_the_job_group_then_records_and_pushes_the_run() {
    use nix::sys::signal::killpg;
    let gw = Pushgateway::start();
    let dir = workspace();
    let d = dir.path();
    // The shell leads the job's process group; the marker `sleep` is its
    // child in the same group.
    let toml = format!(
        "schedule = \"{NEVER}\"\n\
         command = [\"sh\", \"-c\", \"echo $$ > group.pid; sleep 30 & echo $! > marker.pid; wait\"]\n\
         workdir = {:?}\n",
        d.display().to_string()
    );
    write_job(d, "long", &toml);
    let mut trigger = command(d)
        .args(["trigger", "long", "--jobs"])
        .arg(jobs_dir(d))
        .env("PUSHGATEWAY_URL", &gw.url)
        .env("PUSHGUARD_STATE", state_path(d))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pushguard trigger");
    let (mut group, mut marker) = (None, None);
    wait_until("the job and its marker child", LIMIT, || {
        group = written_pid(&d.join("group.pid"));
        marker = written_pid(&d.join("marker.pid"));
        group.is_some() && marker.is_some()
    });
    let (group, marker) = (
        Pid::from_raw(group.unwrap()),
        Pid::from_raw(marker.unwrap()),
    );
    struct KillGroup(Pid);
    impl Drop for KillGroup {
        fn drop(&mut self) {
            let _ = killpg(self.0, Signal::SIGKILL);
        }
    }
    let _cleanup = KillGroup(group);
    assert!(killpg(group, None).is_ok(), "the job's group is not there");

    let signalled = Instant::now();
    kill(Pid::from_raw(trigger.id() as i32), Signal::SIGTERM).expect("signal pushguard");
    wait_until("pushguard trigger to exit", LIMIT, || {
        trigger.try_wait().expect("try_wait").is_some()
    });
    let elapsed = signalled.elapsed();
    let out = trigger.wait_with_output().expect("trigger output");
    assert_eq!(out.status.code(), Some(143), "{out:?}");
    // Well within the 10 s grace: the job ended on SIGTERM.
    assert!(
        elapsed < Duration::from_secs(5),
        "took {elapsed:?}: {out:?}"
    );
    wait_until("the job's process group to be gone", LIMIT, || {
        killpg(group, None).is_err()
    });
    assert!(
        !processes()
            .iter()
            .any(|(pid, _, state, _)| *pid == marker.as_raw() && *state != 'Z'),
        "the marker child survived"
    );

    let runs = history(d);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["job"], "long");
    assert_eq!(runs[0]["outcome"], "failure", "{runs:?}");
    assert_eq!(runs[0]["exit_code"], 143, "{runs:?}");
    assert_eq!(runs[0]["push_status"], "delivered", "{runs:?}");
    assert_eq!(runs_total(&gw, "long", "failure"), 1.0, "{out:?}");
    assert_eq!(gw_value(&gw, "long", "job_last_exit_code", &[]), 143.0);

    let help = command(d)
        .args(["trigger", "--help"])
        .output()
        .expect("pushguard trigger --help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("SIGTERM") && help.contains("143") && help.contains("130"),
        "`trigger --help` does not document the exit on a signal:\n{help}"
    );
}

#[test]
fn sighup_reload_keeps_a_broken_job_and_adds_new_ones() {
    let gw = Pushgateway::start();
    let dir = workspace();
    let d = dir.path();
    let a = write_job(
        d,
        "alpha",
        "schedule = \"@every 1s\"\ncommand = [\"true\"]\n",
    );
    let runner = RunnerProcess::start(d, &gw.url);
    runner.wait_until("alpha runs", LIMIT, || {
        runs_total(&gw, "alpha", "success") >= 1.0
    });

    fs::write(&a, "schedule = \"@every 1s\"\ncommand = [\"true\"\n").unwrap();
    write_job(
        d,
        "beta",
        &format!("schedule = \"{NEVER}\"\nbuiltin = \"noop\"\n"),
    );
    runner.signal(Signal::SIGHUP);

    runner.wait_until("beta in /api/jobs", LIMIT, || runner.job("beta").is_some());
    assert!(runner.job("alpha").is_some(), "alpha dropped on reload");
    let before = runs_total(&gw, "alpha", "success");
    runner.wait_until("alpha keeps running after the reload", LIMIT, || {
        runs_total(&gw, "alpha", "success") >= before + 2.0
    });
    let log = runner.stderr();
    let named = log
        .lines()
        .any(|l| l.contains("alpha.toml") && l.contains("reload"));
    assert!(named, "the broken file is not named: {log}");
    assert!(runner.job("beta").is_some());
}

/// The value of an unlabelled sample on the runner's `/metrics` (0 when absent).
fn runner_value(runner: &RunnerProcess, name: &str) -> f64 {
    runner
        .metrics()
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Sends SIGHUP and waits until the runner reports the reload applied.
fn reload(runner: &RunnerProcess) {
    let before = runner_value(runner, "pushguard_reloads_total");
    runner.signal(Signal::SIGHUP);
    runner.wait_until("the reload", LIMIT, || {
        runner_value(runner, "pushguard_reloads_total") > before
    });
}

#[test]
fn sighup_reload_keeps_the_timers_of_unchanged_jobs() {
    let gw = Pushgateway::start();
    let dir = workspace();
    let d = dir.path();
    // `@every` counts from the time the file was read: a timer set again
    // would move the next run; an unchanged job must keep it.
    write_job(
        d,
        "steady",
        "schedule = \"@every 1h\"\nbuiltin = \"noop\"\n",
    );
    let moved = write_job(d, "moved", "schedule = \"@every 1h\"\nbuiltin = \"noop\"\n");
    let gone = write_job(
        d,
        "gone",
        &format!("schedule = \"{NEVER}\"\nbuiltin = \"noop\"\n"),
    );
    let runner = RunnerProcess::start(d, &gw.url);
    let next = |name: &str| runner.job(name).map(|j| j["next_run"].clone());
    runner.wait_until("every timer set", LIMIT, || {
        ["steady", "moved", "gone"]
            .iter()
            .all(|name| next(name).is_some_and(|n| n.is_string()))
    });
    let (steady, moved_before) = (next("steady"), next("moved"));
    assert_eq!(runner_value(&runner, "pushguard_reloads_total"), 0.0);
    assert_eq!(
        runner_value(&runner, "pushguard_last_reload_timestamp_seconds"),
        0.0
    );

    fs::write(&moved, "schedule = \"@every 2h\"\nbuiltin = \"noop\"\n").unwrap();
    fs::remove_file(&gone).unwrap();
    write_job(
        d,
        "added",
        &format!("schedule = \"{NEVER}\"\nbuiltin = \"noop\"\n"),
    );
    let sent = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    reload(&runner);

    assert_eq!(next("steady"), steady, "the unchanged job's next run moved");
    assert_ne!(
        next("moved"),
        moved_before,
        "the changed job kept its old timer"
    );
    assert!(next("gone").is_none(), "the removed job is still listed");
    runner.wait_until("the new job's timer", LIMIT, || {
        next("added").is_some_and(|n| n.is_string())
    });
    let at = runner_value(&runner, "pushguard_last_reload_timestamp_seconds");
    assert!(
        at >= sent.floor(),
        "last reload at {at}, SIGHUP sent at {sent}"
    );
    let log = runner.stderr();
    assert!(
        log.contains("reloaded 3 job(s)")
            && log.contains("1 new, 1 changed, 1 unchanged, 1 removed"),
        "the reload is not summed up: {log}"
    );
}

#[test]
fn sighup_reloads_do_not_hold_back_the_runs_of_an_unchanged_job() {
    let gw = Pushgateway::start();
    let dir = workspace();
    let d = dir.path();
    write_job(d, "tick", "schedule = \"@every 1s\"\nbuiltin = \"noop\"\n");
    let runner = RunnerProcess::start(d, &gw.url);
    // Reload after reload, each faster than the schedule: a job whose timer
    // started again at every reload would never come to its first run.
    let deadline = Instant::now() + LIMIT;
    while runs_total(&gw, "tick", "success") < 2.0 {
        assert!(
            Instant::now() < deadline,
            "tick did not run twice across reloads\n{}",
            runner.stderr()
        );
        reload(&runner);
    }
}

#[test]
fn ten_thousand_jobs_load_and_are_listed() {
    let gw = Pushgateway::start();
    let dir = workspace();
    let d = dir.path();
    let body = format!("schedule = \"{NEVER}\"\nbuiltin = \"noop\"\n");
    for i in 0..10_000 {
        write_job(d, &format!("job_{i:05}"), &body);
    }
    let check = command(d)
        .arg("check")
        .arg("--jobs")
        .arg(jobs_dir(d))
        .output()
        .expect("pushguard check");
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "check failed: {stdout}");
    assert!(
        stdout.starts_with("ok: 10000 job(s)") && stdout.lines().count() == 10_001,
        "check does not list every job: {}",
        &stdout[..stdout.len().min(500)]
    );

    let runner = RunnerProcess::start(d, &gw.url);
    runner.wait_until("the runner ready", Duration::from_secs(60), || {
        fs::read_to_string(d.join("runner.stderr"))
            .is_ok_and(|log| log.contains("runner ready: 10000 of 10000 job(s) scheduled"))
    });
    let jobs = runner.jobs();
    assert_eq!(jobs.len(), 10_000);
    assert_eq!(jobs[0]["name"], "job_00000");
    assert_eq!(jobs[9_999]["name"], "job_09999");
    assert!(
        jobs.iter().all(|j| j["next_run"].is_string()),
        "a job without its next run"
    );
}

// ---------------------------------------------------------------------------
// Catch-up after downtime

#[test]
fn catch_up_after_downtime_counts_missed_runs() {
    let gw = Pushgateway::start();
    let dir = workspace();
    let d = dir.path();
    write_job(
        d,
        "once",
        "schedule = \"* * * * * *\"\ncommand = [\"true\"]\ncatch_up = \"once\"\noverlap = \"allow\"\n",
    );
    write_job(
        d,
        "skipper",
        "schedule = \"* * * * * *\"\ncommand = [\"true\"]\ncatch_up = \"skip\"\noverlap = \"allow\"\n",
    );
    for job in ["once", "skipper"] {
        let (out, _) = trigger_cli(d, &gw.url, job);
        assert!(out.status.success(), "{out:?}");
    }
    let t0 = SystemTime::now();
    wait_until("2.2 s of downtime", LIMIT, || {
        SystemTime::now() >= t0 + Duration::from_millis(2200)
    });
    let runner = RunnerProcess::start(d, &gw.url);
    runner.wait_until("downtime misses on the gateway", LIMIT, || {
        missed_total(&gw, "once", "downtime") >= 1.0
            && missed_total(&gw, "skipper", "downtime") >= 1.0
    });
    // "skip" records a skipped run; "once" runs instead.
    runner.wait_until("the skip recorded", LIMIT, || {
        runs_total(&gw, "skipper", "skipped") >= 1.0
    });
    assert_eq!(
        runs_total(&gw, "once", "skipped"),
        0.0,
        "{}",
        runner.stderr()
    );
}

/// Every due time after the last recorded start counts as missed: with the
/// last run started at `s` and the runner started at `t` (just after a full
/// second, so it comes up within that second), the every-second fires in
/// (s, t] are `floor(t) - floor(s)` and all of them were missed.
#[test]
fn catch_up_counts_every_missed_fire() {
    let gw = Pushgateway::start();
    let dir = workspace();
    let d = dir.path();
    write_job(
        d,
        "once",
        "schedule = \"* * * * * *\"\ncommand = [\"true\"]\ncatch_up = \"once\"\noverlap = \"allow\"\n",
    );
    let (out, _) = trigger_cli(d, &gw.url, "once");
    assert!(out.status.success(), "{out:?}");
    let last_start = history(d)[0]["start"].as_f64().expect("start");
    let unix = || {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs_f64()
    };
    wait_until("2.2 s of downtime, then a full second", LIMIT, || {
        let now = unix();
        now >= last_start + 2.2 && now.fract() < 0.2
    });
    let due = (unix().floor() - last_start.floor()).max(2.0);
    let runner = RunnerProcess::start(d, &gw.url);
    runner.wait_until("downtime misses on the gateway", LIMIT, || {
        missed_total(&gw, "once", "downtime") >= 1.0
    });
    let missed = missed_total(&gw, "once", "downtime");
    assert!(
        missed >= due,
        "{missed} of {due} missed fires counted since {last_start}\n{}",
        runner.stderr()
    );
}

/// `(pid, ppid, state, comm)` of every process on the machine.
fn processes() -> Vec<(i32, i32, char, String)> {
    let mut list = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return list;
    };
    for entry in entries.flatten() {
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces, so split at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let pid = stat[..open].trim().parse().unwrap_or(0);
        let comm = stat[open + 1..close].to_owned();
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = rest.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        list.push((pid, ppid, state, comm));
    }
    list
}

/// As PID 1 (here in a new PID namespace, as in a container), the runner
/// reaps the orphans its jobs leave behind instead of piling up zombies.
#[test]
fn as_pid_one_the_runner_reaps_orphaned_processes() {
    let unshare = Path::new("/usr/bin/unshare");
    assert!(
        unshare.exists(),
        "unshare is missing: install the Debian package util-linux"
    );
    let gw = Pushgateway::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(jobs_dir(d)).expect("jobs dir");
    write_job(
        d,
        "orphans",
        "schedule = \"@every 1s\"\ncommand = [\"sh\", \"-c\", \"sleep 0.2 & exit 0\"]\n",
    );
    let port = free_port();
    let mut cmd = Command::new(unshare);
    cmd.args(["--pid", "--fork", "--mount-proc"])
        .arg(crate::harness::pushguard_bin())
        .arg("run")
        .arg("--jobs")
        .arg(jobs_dir(d))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--gateway")
        .arg(&gw.url)
        .arg("--state")
        .arg(state_path(d))
        .current_dir(d)
        .stdin(Stdio::null())
        .stdout(fs::File::create(d.join("runner.stdout")).unwrap())
        .stderr(fs::File::create(d.join("runner.stderr")).unwrap());
    for var in RUNNER_ENV {
        cmd.env_remove(var);
    }
    let mut outer = cmd.spawn().expect("start unshare");
    struct Kill(i32);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = kill(Pid::from_raw(self.0), Signal::SIGKILL);
        }
    }
    let outer_pid = outer.id() as i32;
    let mut runner_pid = 0;
    wait_until("the runner inside the PID namespace", LIMIT, || {
        runner_pid = processes()
            .iter()
            .find(|(_, ppid, _, comm)| *ppid == outer_pid && comm == "pushguard")
            .map_or(0, |p| p.0);
        runner_pid != 0 && get(&format!("http://127.0.0.1:{port}/health")).is_ok()
    });
    let _kill = Kill(runner_pid);
    // Orphaned `sleep`s are re-parented to the runner: seen at least once.
    let mut adopted = false;
    wait_until("three runs and an adopted orphan", LIMIT, || {
        adopted |= processes()
            .iter()
            .any(|(_, ppid, _, comm)| *ppid == runner_pid && comm == "sleep");
        adopted && runs_total(&gw, "orphans", "success") >= 3.0
    });
    // Each orphan lives 0.2 s; a reaped one disappears, an unreaped one stays
    // a zombie for good.
    wait_until("no zombie left under the runner", LIMIT, || {
        !processes()
            .iter()
            .any(|(_, ppid, state, _)| *ppid == runner_pid && *state == 'Z')
    });
    let _ = kill(Pid::from_raw(runner_pid), Signal::SIGTERM);
    let status = outer.wait().expect("wait for unshare");
    assert!(status.success(), "runner exit: {status:?}");
}

#[test]
fn a_hanging_gateway_never_makes_the_schedule_skip_runs() {
    // Every push hangs until the 5 s deadline; a job every second must still
    // start every second, because delivery happens beside the run.
    let hang = crate::harness::Hang::start();
    let dir = workspace();
    let d = dir.path();
    let log = d.join("starts.log");
    write_job(
        d,
        "every_second",
        &format!(
            "schedule = \"@every 1s\"\ncommand = [\"sh\", \"-c\", \"echo x >> '{}'\"]\n",
            log.display()
        ),
    );
    let runner = RunnerProcess::start(d, &hang.url);
    let started = Instant::now();
    runner.wait_until("six runs while every push hangs", LIMIT, || {
        fs::read_to_string(&log).map_or(0, |t| t.lines().count()) >= 6
    });
    // Six starts need about six seconds; with the push inside the run the
    // second would only start after the first push's 5 s deadline.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let stderr = runner.stderr();
    assert!(
        !stderr.contains("overlap = forbid"),
        "a run was skipped: {stderr}"
    );
}

#[test]
fn a_second_runner_on_one_state_file_refuses_to_start() {
    let gw = Pushgateway::start();
    let dir = workspace();
    let d = dir.path();
    write_job(
        d,
        "manual",
        &format!("schedule = \"{NEVER}\"\ncommand = [\"true\"]\n"),
    );
    let first = RunnerProcess::start(d, &gw.url);
    let out = command(d)
        .args(["run", "--jobs"])
        .arg(jobs_dir(d))
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--gateway", &gw.url, "--state"])
        .arg(state_path(d))
        .output()
        .expect("run a second runner");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("already uses the state file"), "{stderr}");
    assert!(stderr.contains(&first.child.id().to_string()), "{stderr}");
    // The first one is unaffected.
    assert_eq!(first.trigger("manual", None), 202);
}
