//! The `pushguard` binary driven as users drive it: exit codes, stdio and
//! signal passthrough of `exec`, timeouts, `push` and `delete`, flag
//! validation and credentials. Every check reads back what the real
//! Pushgateway stored (or, for request headers, what a recording listener
//! received), never what the test meant to send.

use std::ffi::OsStr;
use std::io::{Read, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::{self, Group, Listener, Pushgateway, pushguard, read_request_from, respond};

/// Upper bound for any single pushguard run, so a hang fails the test
/// instead of blocking the suite.
const EXIT_LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Running the binary

/// `pushguard exec --gateway URL --job JOB`; the caller adds the rest.
fn exec(dir: &Path, gateway: &str, job: &str) -> Command {
    let mut cmd = pushguard(dir);
    cmd.args(["exec", "--gateway", gateway, "--job", job]);
    cmd
}

/// `pushguard push --gateway URL --job JOB`; the caller adds the rest.
fn push(dir: &Path, gateway: &str, job: &str) -> Command {
    let mut cmd = pushguard(dir);
    cmd.args(["push", "--gateway", gateway, "--job", job]);
    cmd
}

/// One output stream of a child, collected by a thread chunk by chunk.
struct Stream {
    chunks: Receiver<Vec<u8>>,
    bytes: Vec<u8>,
    open: bool,
}

impl Stream {
    fn collect(mut reader: impl Read + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        });
        Stream {
            chunks: rx,
            bytes: Vec::new(),
            open: true,
        }
    }

    /// Receives until `done` holds, the stream closes or `deadline` passes;
    /// true when `done` holds.
    fn until(&mut self, deadline: Instant, done: impl Fn(&[u8]) -> bool) -> bool {
        while !done(&self.bytes) {
            if !self.open {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.chunks.recv_timeout(left) {
                Ok(chunk) => self.bytes.extend(chunk),
                Err(RecvTimeoutError::Disconnected) => self.open = false,
                Err(RecvTimeoutError::Timeout) => return false,
            }
        }
        true
    }

    /// Reads to the end; true when the stream closed before `deadline`.
    fn drain(&mut self, deadline: Instant) -> bool {
        self.until(deadline, |_| false);
        !self.open
    }
}

/// A running child with piped stdout and stderr; killed on drop if it is
/// still running, so a failed assertion leaves nothing behind.
struct Running {
    child: Child,
    started: Instant,
    stdout: Stream,
    stderr: Stream,
}

/// How a child ended.
#[derive(Debug)]
struct Finished {
    status: ExitStatus,
    elapsed: Duration,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Running {
    fn spawn(cmd: &mut Command) -> Self {
        Self::start(cmd, None)
    }

    fn spawn_with_stdin(cmd: &mut Command, input: Vec<u8>) -> Self {
        Self::start(cmd, Some(input))
    }

    fn start(cmd: &mut Command, input: Option<Vec<u8>>) -> Self {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if input.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn the command");
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            std::thread::spawn(move || {
                let _ = stdin.write_all(&input);
            });
        }
        let stdout = Stream::collect(child.stdout.take().expect("piped stdout"));
        let stderr = Stream::collect(child.stderr.take().expect("piped stderr"));
        Running {
            child,
            started,
            stdout,
            stderr,
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits in i32"))
    }

    /// Waits until the child printed `needle` on stdout.
    fn wait_for_stdout(&mut self, needle: &str) {
        let deadline = Instant::now() + EXIT_LIMIT;
        let found = self
            .stdout
            .until(deadline, |bytes| contains(bytes, needle.as_bytes()));
        assert!(
            found,
            "stdout never showed {needle:?}; stdout: {:?}, stderr: {:?}",
            String::from_utf8_lossy(&self.stdout.bytes),
            String::from_utf8_lossy(&self.stderr.bytes)
        );
    }

    /// Waits for the exit, then for both streams to close (a stream left
    /// open means something the command started still holds it).
    fn wait(mut self) -> Finished {
        let mut status = None;
        harness::wait_until("the command to exit", EXIT_LIMIT, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        let elapsed = self.started.elapsed();
        let status = status.expect("an exit status");
        let deadline = Instant::now() + Duration::from_secs(10);
        let closed = self.stdout.drain(deadline) && self.stderr.drain(deadline);
        assert!(
            closed,
            "stdout or stderr still open after the exit: a process the command started survived"
        );
        Finished {
            status,
            elapsed,
            stdout: std::mem::take(&mut self.stdout.bytes),
            stderr: std::mem::take(&mut self.stderr.bytes),
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

impl Finished {
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Asserts the exit code, showing everything the process printed if not.
    fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.status.code(), Some(code), "{self}");
        self
    }
}

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status {:?} after {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.elapsed,
            self.stdout_text(),
            self.stderr_text()
        )
    }
}

fn run(cmd: &mut Command) -> Finished {
    Running::spawn(cmd).wait()
}

/// `line` split on single spaces: arguments as typed, for those without spaces.
fn words(line: &str) -> Vec<&str> {
    line.split(' ').collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------
// Reading the gateway back

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// The group `{job, labels}`; fails listing what the gateway holds instead.
fn group(gw: &Pushgateway, job: &str, labels: &[(&str, &str)]) -> Group {
    gw.group(job, labels).unwrap_or_else(|| {
        let held: Vec<_> = gw.groups().iter().map(Group::labels).collect();
        panic!("the gateway has no group job={job:?} {labels:?}; it holds {held:?}")
    })
}

/// The unlabelled sample of `family`.
fn value(group: &Group, family: &str) -> f64 {
    group.value(family, &[]).unwrap_or_else(|| {
        panic!(
            "family {family} missing from group {:?}; it has {:?}",
            group.labels(),
            group.families()
        )
    })
}

/// `job_runs_total{outcome}`.
fn runs(group: &Group, outcome: &str) -> f64 {
    group
        .value("job_runs_total", &[("outcome", outcome)])
        .unwrap_or_else(|| panic!("no job_runs_total{{outcome={outcome:?}}} in {:?}", group.0))
}

/// Asserts that the timestamp family lies between `from` and `to` (Unix
/// seconds, with a little slack for float rounding).
fn assert_time_between(group: &Group, family: &str, from: f64, to: f64) {
    let t = value(group, family);
    assert!(
        from - 0.05 <= t && t <= to + 0.05,
        "{family} = {t}, expected between {from} and {to}"
    );
}

/// True when `/proc/PID` is gone or the process is a zombie (dead, not yet
/// reaped by whoever inherited it).
fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

/// Kills a process on drop: a grandchild that should have been stopped by
/// pushguard but was not must not outlive the failed test.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !process_gone(self.0) {
            let _ = kill(Pid::from_raw(self.0), Signal::SIGKILL);
        }
    }
}

/// Reads the pid a test command wrote to `path`.
fn read_pid(path: &Path) -> i32 {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("the command did not write {}: {e}", path.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("bad pid {text:?} in {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------
// exec: exit codes and the pushed run

#[test]
fn exec_failure_passes_the_exit_code_through_and_pushes_the_failure() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let before = unix_now();
    let done = run(exec(dir.path(), &gw.url, "exit_three").args(["--", "sh", "-c", "exit 3"]));
    let after = unix_now();
    done.expect_code(3);
    assert!(done.stderr.is_empty(), "{done}");

    let g = group(&gw, "exit_three", &[]);
    assert_eq!(value(&g, "job_last_exit_code"), 3.0);
    assert_eq!(value(&g, "job_last_run_failed"), 1.0);
    assert_time_between(&g, "job_last_failure_timestamp_seconds", before, after);
    assert_time_between(&g, "job_last_start_timestamp_seconds", before, after);
    assert_time_between(&g, "job_last_completion_timestamp_seconds", before, after);
    assert!(!g.has("job_last_success_timestamp_seconds"), "{:?}", g.0);
    assert_eq!(runs(&g, "failure"), 1.0);
    assert_eq!(runs(&g, "success"), 0.0);
    assert_eq!(runs(&g, "timeout"), 0.0);
}

#[test]
fn exec_success_pushes_the_contract_families_with_their_types() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let before = unix_now();
    let done = run(exec(dir.path(), &gw.url, "fresh_ok").args([
        "--expected-interval",
        "15m",
        "--",
        "true",
    ]));
    let after = unix_now();
    done.expect_code(0);
    assert!(done.stderr.is_empty(), "{done}");

    // `group` matches the labels exactly: no `instance` or other label was added.
    let g = group(&gw, "fresh_ok", &[]);
    assert_eq!(value(&g, "job_last_exit_code"), 0.0);
    assert_eq!(value(&g, "job_last_run_failed"), 0.0);
    assert_time_between(&g, "job_last_success_timestamp_seconds", before, after);
    assert!(!g.has("job_last_failure_timestamp_seconds"), "{:?}", g.0);
    let start = value(&g, "job_last_start_timestamp_seconds");
    let end = value(&g, "job_last_completion_timestamp_seconds");
    let duration = value(&g, "job_duration_seconds");
    assert!(start <= end, "start {start} after completion {end}");
    assert!(
        (0.0..=after - before + 0.05).contains(&duration),
        "duration {duration}"
    );
    assert_eq!(runs(&g, "success"), 1.0);
    assert_eq!(runs(&g, "failure"), 0.0);
    assert_eq!(runs(&g, "skipped"), 0.0);
    assert_eq!(value(&g, "job_expected_interval_seconds"), 900.0);
    for family in pushguard::catalog::CONTRACT_FAMILIES {
        // Pushed only by failed runs, and only by the runner.
        if family == "job_last_failure_timestamp_seconds" || family == "job_missed_runs_total" {
            continue;
        }
        let want = if family == "job_runs_total" {
            "COUNTER"
        } else {
            "GAUGE"
        };
        assert_eq!(
            g.family_type(family).as_deref(),
            Some(want),
            "type of {family}"
        );
    }
}

#[test]
fn exec_system_metrics_pushes_the_host_gauges() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let done = run(exec(dir.path(), &gw.url, "with_host").args(["--system-metrics", "--", "true"]));
    done.expect_code(0);
    let g = group(&gw, "with_host", &[]);
    let cpu = value(&g, "system_cpu_usage_percent");
    assert!((0.0..=100.0).contains(&cpu), "cpu {cpu}");
    assert!(value(&g, "system_memory_usage_bytes") > 0.0);
    assert_eq!(
        g.family_type("system_disk_usage_percent").as_deref(),
        Some("GAUGE")
    );
}

#[test]
fn exec_labels_become_the_grouping_key() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let done =
        run(exec(dir.path(), &gw.url, "labelled")
            .args(words("--label host=db/1 --label env= -- true")));
    done.expect_code(0);
    let g = group(&gw, "labelled", &[("env", ""), ("host", "db/1")]);
    assert_eq!(value(&g, "job_last_run_failed"), 0.0);
    assert!(
        gw.group("labelled", &[]).is_none(),
        "a group without the labels was pushed too"
    );
}

#[test]
fn exec_post_keeps_the_last_success_and_replace_erases_it() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let job = "post_then_put";

    run(exec(dir.path(), &gw.url, job).args(["--", "true"])).expect_code(0);
    let success = value(&group(&gw, job, &[]), "job_last_success_timestamp_seconds");

    run(exec(dir.path(), &gw.url, job).args(["--", "false"])).expect_code(1);
    let g = group(&gw, job, &[]);
    assert_eq!(
        value(&g, "job_last_success_timestamp_seconds"),
        success,
        "a failed run (POST) changed the last success time"
    );
    assert!(value(&g, "job_last_failure_timestamp_seconds") >= success);
    assert_eq!(value(&g, "job_last_run_failed"), 1.0);
    assert_eq!(value(&g, "job_last_exit_code"), 1.0);

    run(exec(dir.path(), &gw.url, job).args(["--replace", "--", "false"])).expect_code(1);
    let g = group(&gw, job, &[]);
    assert!(
        !g.has("job_last_success_timestamp_seconds"),
        "--replace (PUT) kept the last success time: {:?}",
        g.0
    );
    assert!(g.has("job_last_failure_timestamp_seconds"));
    assert_eq!(value(&g, "job_last_run_failed"), 1.0);
}

#[test]

fn exec_runs_total_is_cumulative_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let job = "cumulative";
    run(exec(dir.path(), &gw.url, job).args(["--", "true"])).expect_code(0);
    run(exec(dir.path(), &gw.url, job).args(["--", "false"])).expect_code(1);
    let g = group(&gw, job, &[]);
    assert_eq!(
        runs(&g, "success"),
        1.0,
        "the second process reset the success count"
    );
    assert_eq!(runs(&g, "failure"), 1.0);
}

#[test]
fn exec_reports_death_by_signal_as_128_plus_the_signal() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let done = run(exec(dir.path(), &gw.url, "killed").args(["--", "sh", "-c", "kill -KILL $$"]));
    done.expect_code(137);
    let g = group(&gw, "killed", &[]);
    assert_eq!(value(&g, "job_last_exit_code"), 137.0);
    assert_eq!(value(&g, "job_last_run_failed"), 1.0);
    assert_eq!(runs(&g, "failure"), 1.0);
}

#[test]
fn exec_reports_a_missing_command_as_127_and_pushes_the_failure() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let done = run(exec(dir.path(), &gw.url, "not_found").args(["--", "./no-such-command-xyz"]));
    done.expect_code(127);
    assert!(done.stderr_text().contains("no-such-command-xyz"), "{done}");
    let g = group(&gw, "not_found", &[]);
    assert_eq!(value(&g, "job_last_exit_code"), 127.0);
    assert_eq!(value(&g, "job_last_run_failed"), 1.0);
    assert!(g.has("job_last_failure_timestamp_seconds"));
    assert_eq!(runs(&g, "failure"), 1.0);
}

#[test]
fn exec_reports_a_command_it_may_not_run_as_126() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let done = run(exec(dir.path(), &gw.url, "no_exec").args(["--", "./not-executable.sh"]));
    done.expect_code(126);
    assert!(done.stderr_text().contains("not-executable.sh"), "{done}");
    let g = group(&gw, "no_exec", &[]);
    assert_eq!(value(&g, "job_last_exit_code"), 126.0);
    assert_eq!(value(&g, "job_last_run_failed"), 1.0);
}

// ---------------------------------------------------------------------------
// exec: stdio, arguments and signals pass through untouched

#[test]
fn exec_passes_stdout_and_stderr_through_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let done = run(exec(dir.path(), &gw.url, "stdio").args([
        "--",
        "sh",
        "-c",
        r"printf 'a\000b\377\r\n'; printf err >&2",
    ]));
    done.expect_code(0);
    assert_eq!(done.stdout, b"a\0b\xff\r\n", "{done}");
    assert_eq!(
        done.stderr, b"err",
        "pushguard added to the command's stderr"
    );
    assert_eq!(value(&group(&gw, "stdio", &[]), "job_last_exit_code"), 0.0);
}

#[test]
fn exec_passes_stdin_through() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    // One MiB of every byte value, more than any pipe buffer holds.
    let input: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let done = Running::spawn_with_stdin(
        exec(dir.path(), &gw.url, "stdin").args(["--", "cat"]),
        input.clone(),
    )
    .wait();
    done.expect_code(0);
    assert!(
        done.stdout == input,
        "stdin did not come out of cat unchanged"
    );
    assert_eq!(value(&group(&gw, "stdin", &[]), "job_last_exit_code"), 0.0);
}

#[test]
fn exec_passes_arguments_through_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let mut cmd = exec(dir.path(), &gw.url, "args");
    cmd.args(["--", "printf", "%s|", "--job", "--help", "--", "", "a b"])
        .arg(OsStr::from_bytes(b"\xffz"));
    let done = run(&mut cmd);
    done.expect_code(0);
    assert_eq!(done.stdout, b"--job|--help|--||a b|\xffz|", "{done}");
    assert_eq!(value(&group(&gw, "args", &[]), "job_last_exit_code"), 0.0);
}

/// The `SigIgn` and `SigBlk` lines of `/proc/self/status` as a command sees them.
fn signal_masks(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.starts_with("SigIgn") || l.starts_with("SigBlk"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn exec_starts_the_command_with_the_signal_state_it_would_have_without_pushguard() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let probe = ["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"];
    let direct = run(Command::new(probe[0]).args(&probe[1..]));
    direct.expect_code(0);
    let wrapped = run(exec(dir.path(), &gw.url, "sigstate").arg("--").args(probe));
    wrapped.expect_code(0);
    assert_eq!(
        signal_masks(&wrapped.stdout),
        signal_masks(&direct.stdout),
        "pushguard left signals ignored or blocked in the command"
    );
    assert_eq!(
        value(&group(&gw, "sigstate", &[]), "job_last_exit_code"),
        0.0
    );
}

/// Sends `signal` to pushguard while the command traps it with `exit CODE`,
/// and checks the command saw it: pushguard exits with CODE and pushes it.
fn assert_forwarded(signal: Signal, trap: &str, code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let job = format!("forward_{}", trap.to_lowercase());
    // The loop ends by itself after ~20 s, so a failing run leaves nothing behind.
    let script = format!(
        "trap 'exit {code}' {trap}; echo ready; \
         n=0; while [ $n -lt 400 ]; do sleep 0.05; n=$((n+1)); done"
    );
    let mut running =
        Running::spawn(exec(dir.path(), &gw.url, &job).args(["--", "sh", "-c", &script]));
    running.wait_for_stdout("ready\n");
    kill(running.pid(), signal).expect("signal pushguard");
    let done = running.wait();
    assert_eq!(
        done.status.code(),
        Some(code),
        "{signal} was not forwarded: {done}"
    );
    let g = group(&gw, &job, &[]);
    assert_eq!(value(&g, "job_last_exit_code"), f64::from(code));
    assert_eq!(value(&g, "job_last_run_failed"), 1.0);
}

#[test]
fn exec_forwards_sigterm_to_the_command() {
    assert_forwarded(Signal::SIGTERM, "TERM", 42);
}

#[test]
fn exec_forwards_sigint_to_the_command() {
    assert_forwarded(Signal::SIGINT, "INT", 43);
}

#[test]
fn exec_forwards_sighup_to_the_command() {
    assert_forwarded(Signal::SIGHUP, "HUP", 44);
}

#[test]
fn exec_forwards_sigusr1_to_the_command() {
    assert_forwarded(Signal::SIGUSR1, "USR1", 45);
}

#[test]
fn exec_reports_a_forwarded_sigterm_that_kills_the_command_as_143() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let mut running = Running::spawn(
        exec(dir.path(), &gw.url, "term_kills")
            .args(words("-- sh -c"))
            .arg("echo ready; exec sleep 30"),
    );
    running.wait_for_stdout("ready\n");
    kill(running.pid(), Signal::SIGTERM).expect("signal pushguard");
    let done = running.wait();
    done.expect_code(143);
    let g = group(&gw, "term_kills", &[]);
    assert_eq!(value(&g, "job_last_exit_code"), 143.0);
    assert_eq!(runs(&g, "failure"), 1.0);
}

#[test]
fn exec_lets_the_command_read_its_terminal() {
    let script = "/usr/bin/script";
    assert!(
        Path::new(script).exists(),
        "{script} is missing: install the Debian package `bsdutils`"
    );
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    // script(1) gives pushguard a controlling terminal, as an interactive
    // shell does. sed reads the terminal at once, so a command that is not
    // yet in the terminal's foreground group when it reads is caught; several
    // runs at once make that race likely. --timeout bounds a stopped run.
    const RUNS: usize = 16;
    let running: Vec<Running> = (0..RUNS)
        .map(|i| {
            let line = format!(
                "{} exec --gateway {} --job tty_{i} --timeout 5s --kill-after 1s \
                 -- sed 's/^/got=/;q'",
                harness::pushguard_bin().display(),
                gw.url
            );
            let mut cmd = Command::new(script);
            cmd.args(["-qec", &line, "/dev/null"])
                .current_dir(dir.path())
                .env("SHELL", "/bin/sh")
                .env_remove("PUSHGATEWAY_URL");
            Running::spawn_with_stdin(&mut cmd, b"hello\n".to_vec())
        })
        .collect();
    let mut stopped = Vec::new();
    for (i, run) in running.into_iter().enumerate() {
        let done = run.wait();
        if done.status.code() != Some(0) || !done.stdout_text().contains("got=hello") {
            stopped.push(format!("run {i}: {done}"));
        }
    }
    assert!(
        stopped.is_empty(),
        "{} of {RUNS} runs could not read the terminal:\n{}",
        stopped.len(),
        stopped.join("\n")
    );
    for i in 0..RUNS {
        let g = group(&gw, &format!("tty_{i}"), &[]);
        assert_eq!(value(&g, "job_last_exit_code"), 0.0);
    }
}

// ---------------------------------------------------------------------------
// exec: timeouts

#[test]
fn exec_timeout_stops_the_command_and_exits_124() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let done = run(exec(dir.path(), &gw.url, "slow")
        .args(words("--timeout 300ms --kill-after 200ms -- sleep 30")));
    done.expect_code(124);
    assert!(done.elapsed >= Duration::from_millis(300), "{done}");
    assert!(done.elapsed < Duration::from_secs(10), "{done}");
    assert!(done.stderr_text().contains("timed out"), "{done}");

    let g = group(&gw, "slow", &[]);
    assert_eq!(runs(&g, "timeout"), 1.0);
    assert_eq!(runs(&g, "failure"), 0.0);
    assert_eq!(runs(&g, "success"), 0.0);
    assert_eq!(value(&g, "job_last_exit_code"), 124.0);
    assert_eq!(value(&g, "job_last_run_failed"), 1.0);
    assert!(g.has("job_last_failure_timestamp_seconds"));
    assert!(!g.has("job_last_success_timestamp_seconds"));
    assert!(value(&g, "job_duration_seconds") >= 0.29);
}

#[test]
fn exec_timeout_not_reached_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let done = run(exec(dir.path(), &gw.url, "fast").args(["--timeout", "20s", "--", "true"]));
    done.expect_code(0);
    assert!(
        done.elapsed < Duration::from_secs(10),
        "waited for the timeout: {done}"
    );
    let g = group(&gw, "fast", &[]);
    assert_eq!(runs(&g, "success"), 1.0);
    assert_eq!(runs(&g, "timeout"), 0.0);
}

#[test]
fn exec_timeout_kills_a_command_that_ignores_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let done = run(exec(dir.path(), &gw.url, "stubborn")
        .args(words("--timeout 1s --kill-after 300ms -- sh -c"))
        .arg("trap '' TERM; echo ready; sleep 30"));
    assert_eq!(
        done.stdout, b"ready\n",
        "the shell did not get to set its trap: {done}"
    );
    done.expect_code(124);
    // Not before the grace period: SIGTERM alone did not end it.
    assert!(done.elapsed >= Duration::from_millis(1300), "{done}");
    assert!(done.elapsed < Duration::from_secs(10), "{done}");
    let g = group(&gw, "stubborn", &[]);
    assert_eq!(runs(&g, "timeout"), 1.0);
    assert_eq!(value(&g, "job_last_exit_code"), 124.0);
}

#[test]
fn exec_timeout_stops_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let done = run(exec(dir.path(), &gw.url, "group")
        .args(words("--timeout 1s --kill-after 10s -- sh -c"))
        .arg("sleep 30 >/dev/null 2>&1 & echo $! > grandchild.pid; echo ready; wait"));
    assert_eq!(done.stdout, b"ready\n", "{done}");
    done.expect_code(124);
    let grandchild = read_pid(&dir.path().join("grandchild.pid"));
    let _cleanup = KillOnDrop(grandchild);
    harness::wait_until(
        "the grandchild to be stopped",
        Duration::from_secs(5),
        || process_gone(grandchild),
    );
    assert_eq!(runs(&group(&gw, "group", &[]), "timeout"), 1.0);
}

#[test]
fn exec_timeout_kills_grandchildren_that_ignore_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let script = "(trap '' TERM; exec sleep 30) >/dev/null 2>&1 & \
                  echo $! > grandchild.pid; echo ready; wait";
    let done = run(exec(dir.path(), &gw.url, "group_stubborn")
        .args(words("--timeout 1s --kill-after 300ms -- sh -c"))
        .arg(script));
    assert_eq!(done.stdout, b"ready\n", "{done}");
    done.expect_code(124);
    let grandchild = read_pid(&dir.path().join("grandchild.pid"));
    let _cleanup = KillOnDrop(grandchild);
    harness::wait_until(
        "the grandchild to be killed after the grace period",
        Duration::from_secs(5),
        || process_gone(grandchild),
    );
    assert_eq!(runs(&group(&gw, "group_stubborn", &[]), "timeout"), 1.0);
}

// ---------------------------------------------------------------------------
// exec: the push fails, the exit code stays

/// The stderr lines of a run, asserting there is exactly one.
fn one_warning(done: &Finished, job: &str) -> String {
    let text = done.stderr_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "expected one warning line: {done}");
    assert!(lines[0].contains("warning"), "{done}");
    assert!(
        lines[0].contains(&format!("{job:?}")),
        "the warning does not name the job: {done}"
    );
    lines[0].to_owned()
}

#[test]
fn exec_keeps_the_exit_code_when_the_gateway_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let port = Pushgateway::start().stop();
    let url = format!("http://127.0.0.1:{port}");
    let done = run(exec(dir.path(), &url, "down_job").args(["--", "sh", "-c", "exit 5"]));
    done.expect_code(5);
    assert!(done.elapsed < Duration::from_secs(5), "{done}");
    let warning = one_warning(&done, "down_job");
    assert!(warning.contains(&port.to_string()), "{done}");

    let done = run(exec(dir.path(), &url, "down_ok").args(["--", "true"]));
    done.expect_code(0);
    one_warning(&done, "down_ok");
}

#[test]
fn exec_keeps_the_exit_code_when_the_gateway_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let hang = harness::Hang::start();
    let done = run(exec(dir.path(), &hang.url, "hung_job")
        .args(words("--push-deadline 1s -- sh -c"))
        .arg("exit 5"));
    done.expect_code(5);
    assert!(
        done.elapsed < Duration::from_secs(4),
        "the 1s push deadline was not kept: {done}"
    );
    one_warning(&done, "hung_job");
}

#[test]
fn exec_keeps_the_exit_code_when_the_gateway_refuses_the_push() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    // Another group holds job_last_exit_code as a counter: the gateway
    // refuses any push of it as a gauge with 400.
    run(push(dir.path(), &gw.url, "squatter").args(["--metric", "job_last_exit_code=1:counter"]))
        .expect_code(0);
    let done = run(exec(dir.path(), &gw.url, "refused").args(["--", "sh", "-c", "exit 7"]));
    done.expect_code(7);
    let warning = one_warning(&done, "refused");
    assert!(warning.contains("400"), "{done}");
    assert!(
        gw.group("refused", &[])
            .is_none_or(|g| !g.has("job_last_exit_code")),
        "the gateway stored a push it should have refused"
    );
}

// ---------------------------------------------------------------------------
// push and delete

#[test]
fn push_sends_metrics_with_their_types() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let done = run(push(dir.path(), &gw.url, "pushed").args(words(
        "--metric a=1 --metric b=2:counter --metric c=-1.5e3:untyped --metric d=+Inf",
    )));
    done.expect_code(0);
    assert!(done.stdout.is_empty() && done.stderr.is_empty(), "{done}");
    let g = group(&gw, "pushed", &[]);
    assert_eq!(value(&g, "a"), 1.0);
    assert_eq!(g.family_type("a").as_deref(), Some("GAUGE"));
    assert_eq!(value(&g, "b"), 2.0);
    assert_eq!(g.family_type("b").as_deref(), Some("COUNTER"));
    assert_eq!(value(&g, "c"), -1500.0);
    assert_eq!(g.family_type("c").as_deref(), Some("UNTYPED"));
    assert_eq!(value(&g, "d"), f64::INFINITY);
    let mut families = g.families();
    families.sort();
    assert_eq!(
        families,
        [
            "a",
            "b",
            "c",
            "d",
            "push_failure_time_seconds",
            "push_time_seconds"
        ],
        "push added families of its own"
    );
}

const EXPOSITION: &str = "\
# HELP backup_seconds Time the backup took.
# TYPE backup_seconds histogram
backup_seconds_bucket{le=\"1\"} 2
backup_seconds_bucket{le=\"+Inf\"} 3
backup_seconds_sum 4.5
backup_seconds_count 3
# TYPE files_total counter
files_total{dir=\"/a\"} 7
files_total{dir=\"/b\"} 9
";

/// Checks that the gateway holds what [`EXPOSITION`] describes.
fn assert_exposition_stored(g: &Group) {
    assert_eq!(
        g.family_type("backup_seconds").as_deref(),
        Some("HISTOGRAM")
    );
    let histogram = &g.0["backup_seconds"]["metrics"][0];
    assert_eq!(histogram["count"], "3", "{histogram}");
    assert_eq!(histogram["sum"], "4.5", "{histogram}");
    assert_eq!(histogram["buckets"]["1"], "2", "{histogram}");
    assert_eq!(g.0["backup_seconds"]["help"], "Time the backup took.");
    assert_eq!(g.family_type("files_total").as_deref(), Some("COUNTER"));
    assert_eq!(g.value("files_total", &[("dir", "/a")]), Some(7.0));
    assert_eq!(g.value("files_total", &[("dir", "/b")]), Some(9.0));
}

#[test]
fn push_sends_exposition_text_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    std::fs::write(dir.path().join("metrics.prom"), EXPOSITION).unwrap();
    run(push(dir.path(), &gw.url, "from_file").args(["--file", "metrics.prom"])).expect_code(0);
    assert_exposition_stored(&group(&gw, "from_file", &[]));
}

#[test]
fn push_reads_exposition_text_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let done = Running::spawn_with_stdin(
        push(dir.path(), &gw.url, "from_stdin").args(["--file", "-", "--metric", "extra=5"]),
        EXPOSITION.as_bytes().to_vec(),
    )
    .wait();
    done.expect_code(0);
    let g = group(&gw, "from_stdin", &[]);
    assert_exposition_stored(&g);
    assert_eq!(value(&g, "extra"), 5.0);
}

#[test]
fn push_labels_come_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let labels = [
        ("path", "/var/lib"),
        ("empty", ""),
        ("city", "東京"),
        ("spaced", "a b"),
        ("dot", "."),
        ("escaped", "%2F=+?#"),
    ];
    let mut cmd = push(dir.path(), &gw.url, "backup/db 1");
    for (name, value) in labels {
        cmd.arg("--label").arg(format!("{name}={value}"));
    }
    run(cmd.args(["--metric", "size_bytes=42"])).expect_code(0);
    let g = group(&gw, "backup/db 1", &labels);
    assert_eq!(value(&g, "size_bytes"), 42.0);
    assert_eq!(gw.groups().len(), 1, "more than one group was created");
}

#[test]
fn push_adds_families_and_replace_drops_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    run(push(dir.path(), &gw.url, "replace").args(["--metric", "a=1"])).expect_code(0);
    run(push(dir.path(), &gw.url, "replace").args(["--metric", "b=2"])).expect_code(0);
    let g = group(&gw, "replace", &[]);
    assert_eq!((value(&g, "a"), value(&g, "b")), (1.0, 2.0));

    run(push(dir.path(), &gw.url, "replace").args(["--replace", "--metric", "c=3"])).expect_code(0);
    let g = group(&gw, "replace", &[]);
    assert_eq!(value(&g, "c"), 3.0);
    assert!(
        !g.has("a") && !g.has("b"),
        "--replace kept other families: {:?}",
        g.families()
    );
}

#[test]
fn push_uses_the_gateway_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let done = run(pushguard(dir.path())
        .env("PUSHGATEWAY_URL", &gw.url)
        .args(["push", "--job", "env_url", "--metric", "a=1"]));
    done.expect_code(0);
    assert_eq!(value(&group(&gw, "env_url", &[]), "a"), 1.0);
}

#[test]
fn delete_removes_only_the_named_group() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    run(push(dir.path(), &gw.url, "doomed").args(["--metric", "a=1"])).expect_code(0);
    run(push(dir.path(), &gw.url, "doomed").args(["--label", "env=prod", "--metric", "a=2"]))
        .expect_code(0);
    assert!(gw.group("doomed", &[("env", "prod")]).is_some());

    let delete = |labels: &[&str]| {
        let mut cmd = pushguard(dir.path());
        cmd.args(["delete", "--gateway", &gw.url, "--job", "doomed"])
            .args(labels);
        run(&mut cmd)
    };
    let done = delete(&["--label", "env=prod"]);
    done.expect_code(0);
    assert!(done.stdout.is_empty() && done.stderr.is_empty(), "{done}");
    assert!(gw.group("doomed", &[("env", "prod")]).is_none());
    assert_eq!(value(&group(&gw, "doomed", &[]), "a"), 1.0);

    delete(&[]).expect_code(0);
    assert!(gw.groups().is_empty(), "groups left: {:?}", gw.groups());
}

#[test]
fn push_fails_with_1_when_the_gateway_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let port = Pushgateway::start().stop();
    let url = format!("http://127.0.0.1:{port}");
    let done = run(push(dir.path(), &url, "nowhere").args(["--metric", "a=1"]));
    done.expect_code(1);
    assert!(done.elapsed < Duration::from_secs(5), "{done}");
    assert!(done.stderr_text().contains(&port.to_string()), "{done}");
}

#[test]
fn push_rejected_by_the_gateway_exits_1_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    run(push(dir.path(), &gw.url, "first").args(["--metric", "shared=1:counter"])).expect_code(0);
    let done = run(push(dir.path(), &gw.url, "second").args(["--metric", "shared=1:gauge"]));
    done.expect_code(1);
    let stderr = done.stderr_text();
    assert!(stderr.contains("400"), "{done}");
    assert!(
        stderr.contains("inconsistent with existing metrics"),
        "the gateway's reason is missing: {done}"
    );
    assert_eq!(
        group(&gw, "first", &[]).family_type("shared").as_deref(),
        Some("COUNTER")
    );
    assert!(gw.group("second", &[]).is_none_or(|g| !g.has("shared")));
}

// ---------------------------------------------------------------------------
// Usage errors: exit 2, name the value, send nothing

#[test]
fn bad_flags_exit_2_naming_the_value_and_send_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("timestamp.prom", "# TYPE a gauge\na 1\nb 2 1700000000000\n");
    write("job_label.prom", "x{job=\"other\"} 1\n");
    write("env_label.prom", "x{env=\"dev\"} 1\n");

    // One command line per case, split on spaces; `--gateway URL` of the
    // real gateway follows the subcommand unless the case names its own.
    let cases = [
        ("push --job j --label 2x=y --metric a=1", "2x"),
        ("push --job j --label job=x --metric a=1", "\"job\""),
        ("push --job j --label __x=1 --metric a=1", "__x"),
        ("push --job j --label novalue --metric a=1", "novalue"),
        ("push --job= --metric a=1", "job"),
        ("push --metric a=1", "--job"),
        ("push --job j --metric 2a=1", "2a"),
        ("push --job j --metric a=abc", "abc"),
        ("push --job j --metric a=1:histogram", "histogram"),
        ("push --job j --metric lonely", "lonely"),
        ("push --job j --metric a=1 --metric a=2", "\"a\""),
        ("push --job j", "nothing to push"),
        ("push --job j --file timestamp.prom", "line 3"),
        ("push --job j --file job_label.prom", "\"job\""),
        (
            "push --job j --label env=prod --file env_label.prom",
            "\"env\"",
        ),
        ("push --job j --file missing.prom", "missing.prom"),
        ("push --gateway not-a-url --job j --metric a=1", "not-a-url"),
        (
            "push --job j --metric a=1 --push-deadline 5parsecs",
            "5parsecs",
        ),
        ("push --job j --metric a=1 --header bad(name:x", "bad(name"),
        ("exec --job j --timeout 5parsecs -- touch ran", "5parsecs"),
        ("exec --gateway not-a-url --job j -- touch ran", "not-a-url"),
        ("exec --job j --label 2x=y -- touch ran", "2x"),
        ("exec --job= -- touch ran", "job"),
        ("exec --timeout 1s -- touch ran", "--job"),
        ("exec --job j", "CMD"),
        ("exec --job j --", "CMD"),
        ("delete --gateway not-a-url --job j", "not-a-url"),
        ("delete", "--job"),
    ];
    let mut wrong = Vec::new();
    for (line, needle) in cases {
        let mut args = words(line);
        if !line.contains("--gateway") {
            args.splice(1..1, ["--gateway", gw.url.as_str()]);
        }
        let done = run(pushguard(dir.path()).args(&args));
        let stderr = done.stderr_text();
        if done.status.code() != Some(2) || !stderr.contains(needle) || !done.stdout.is_empty() {
            wrong.push(format!(
                "{args:?}: want exit 2 and {needle:?} on stderr, got {done}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    assert!(
        !dir.path().join("ran").exists(),
        "exec ran the command despite a usage error"
    );
    let groups: Vec<_> = gw.groups().iter().map(Group::labels).collect();
    assert!(groups.is_empty(), "a usage error still pushed: {groups:?}");
}

#[test]
fn help_of_each_subcommand_lists_its_flags() {
    let dir = tempfile::tempdir().unwrap();
    let gateway_flags = "--gateway --push-deadline --push-retries --header --ca-file --cert-file \
                         --key-file PUSHGATEWAY_URL";
    let subcommands = [
        ("exec", "--job --label --timeout --kill-after --replace 124"),
        ("push", "--job --label --metric --file --replace"),
        ("delete", "--job --label"),
    ];
    for (sub, flags) in subcommands {
        let done = run(pushguard(dir.path()).args([sub, "--help"]));
        done.expect_code(0);
        let text = done.stdout_text();
        for flag in words(flags).into_iter().chain(words(gateway_flags)) {
            assert!(
                text.contains(flag),
                "`{sub} --help` does not mention {flag}:\n{text}"
            );
        }
    }
    let done = run(pushguard(dir.path()).arg("--help"));
    done.expect_code(0);
    for sub in ["exec", "push", "delete"] {
        assert!(done.stdout_text().contains(sub), "{done}");
    }
}

// ---------------------------------------------------------------------------
// Credentials and headers, checked on a recording listener

/// A stand-in gateway that records the head of every request (request line
/// and headers) and answers 200. The Debian pushgateway has no handy auth
/// setting, so this is where request headers are checked.
struct Recorder {
    url: String,
    heads: Arc<Mutex<Vec<Vec<String>>>>,
    _listener: Listener,
}

impl Recorder {
    fn start() -> Self {
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        // The head is recorded before the answer, so it is stored by the
        // time the client has its answer.
        let listener = Listener::start(move |mut stream| {
            if let Ok(Some(request)) = read_request_from(&stream) {
                seen.lock().unwrap().push(request.lines);
                let _ = respond(&mut stream, 200, "text/plain", "", b"");
            }
        });
        Recorder {
            url: listener.url.clone(),
            heads,
            _listener: listener,
        }
    }

    fn heads(&self) -> Vec<Vec<String>> {
        self.heads.lock().unwrap().clone()
    }

    /// The one request received; fails when there were more or none.
    fn only_head(&self) -> Vec<String> {
        let heads = self.heads();
        assert_eq!(heads.len(), 1, "expected one request, got {heads:#?}");
        heads.into_iter().next().unwrap()
    }
}

/// The values of header `name` in a recorded head.
fn header(head: &[String], name: &str) -> Vec<String> {
    head.iter()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

/// Runs `push --metric a=1` against `rec` with `env` set and returns the
/// recorded request head.
fn push_with_env(rec: &Recorder, dir: &Path, env: &[(&str, &str)], extra: &[&str]) -> Vec<String> {
    let mut cmd = push(dir, &rec.url, "auth");
    cmd.envs(env.iter().copied())
        .args(["--metric", "a=1"])
        .args(extra);
    run(&mut cmd).expect_code(0);
    rec.only_head()
}

#[test]
fn push_sends_the_bearer_token_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::start();
    let head = push_with_env(
        &rec,
        dir.path(),
        &[("PUSHGATEWAY_BEARER_TOKEN", "s3cret-token")],
        &[],
    );
    assert_eq!(head[0], "POST /metrics/job/auth HTTP/1.1");
    assert_eq!(header(&head, "authorization"), ["Bearer s3cret-token"]);
}

#[test]
fn push_sends_basic_auth_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::start();
    let head = push_with_env(
        &rec,
        dir.path(),
        &[
            ("PUSHGATEWAY_USERNAME", "alice"),
            ("PUSHGATEWAY_PASSWORD", "p@ss:w0rd"),
        ],
        &["--replace"],
    );
    assert_eq!(head[0], "PUT /metrics/job/auth HTTP/1.1");
    // base64("alice:p@ss:w0rd")
    assert_eq!(
        header(&head, "authorization"),
        ["Basic YWxpY2U6cEBzczp3MHJk"]
    );
}

#[test]
fn push_reads_credentials_from_file_variants() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "file-token\n").unwrap();
    let rec = Recorder::start();
    let head = push_with_env(
        &rec,
        dir.path(),
        &[("PUSHGATEWAY_BEARER_TOKEN_FILE", token.to_str().unwrap())],
        &[],
    );
    assert_eq!(header(&head, "authorization"), ["Bearer file-token"]);

    let user = dir.path().join("user");
    let password = dir.path().join("password");
    std::fs::write(&user, "bob\n").unwrap();
    std::fs::write(&password, "from-file\n").unwrap();
    let rec = Recorder::start();
    let head = push_with_env(
        &rec,
        dir.path(),
        &[
            ("PUSHGATEWAY_USERNAME_FILE", user.to_str().unwrap()),
            ("PUSHGATEWAY_PASSWORD_FILE", password.to_str().unwrap()),
        ],
        &[],
    );
    // base64("bob:from-file")
    assert_eq!(
        header(&head, "authorization"),
        ["Basic Ym9iOmZyb20tZmlsZQ=="]
    );
}

#[test]
fn push_sends_extra_headers() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::start();
    let head = push_with_env(&rec, dir.path(), &[], &["--header", "X-Org: media"]);
    assert_eq!(header(&head, "x-org"), ["media"]);
    assert!(
        header(&head, "authorization").is_empty(),
        "credentials sent although none were configured"
    );
}

#[test]
fn exec_sends_credentials_too() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::start();
    let done = run(exec(dir.path(), &rec.url, "auth_exec")
        .env("PUSHGATEWAY_BEARER_TOKEN", "exec-token")
        .args(["--", "sh", "-c", "exit 3"]));
    done.expect_code(3);
    assert!(done.stderr.is_empty(), "{done}");
    let head = rec.only_head();
    assert_eq!(head[0], "POST /metrics/job/auth_exec HTTP/1.1");
    assert_eq!(header(&head, "authorization"), ["Bearer exec-token"]);
}

#[test]
fn conflicting_or_unreadable_credentials_exit_2_and_send_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::start();
    let missing = dir.path().join("no-such-token");
    let missing = missing.to_str().unwrap();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("PUSHGATEWAY_PASSWORD", "x")], "PUSHGATEWAY_USERNAME"),
        (
            &[
                ("PUSHGATEWAY_USERNAME", "a"),
                ("PUSHGATEWAY_BEARER_TOKEN", "t"),
            ],
            "bearer",
        ),
        (
            &[("PUSHGATEWAY_BEARER_TOKEN_FILE", missing)],
            "no-such-token",
        ),
    ];
    let mut wrong = Vec::new();
    for (env, needle) in cases {
        for sub in ["push", "exec"] {
            let mut cmd = pushguard(dir.path());
            cmd.envs(env.iter().copied())
                .args([sub, "--gateway", &rec.url, "--job", "j"]);
            if sub == "push" {
                cmd.args(["--metric", "a=1"]);
            } else {
                cmd.args(["--", "touch", "ran"]);
            }
            let done = run(&mut cmd);
            if done.status.code() != Some(2) || !done.stderr_text().contains(needle) {
                wrong.push(format!(
                    "{sub} with {env:?}: want exit 2 and {needle:?}, got {done}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    assert!(!dir.path().join("ran").exists(), "exec ran the command");
    assert!(
        rec.heads().is_empty(),
        "requests were sent: {:?}",
        rec.heads()
    );
}

#[test]
fn check_in_the_repository_root_finds_the_shipped_config_and_jobs() {
    // `pushguard check` with no flags in a checkout, as the README runs it.
    let out = std::process::Command::new(harness::pushguard_bin())
        .arg("check")
        .current_dir(crate::prom::repo())
        .env_remove("PUSHGUARD_CONFIG")
        .env_remove("PUSHGUARD_JOBS")
        .env_remove("PUSHGATEWAY_URL")
        .env(
            "PUSHGUARD_STATE",
            tempfile::tempdir().unwrap().path().join("state.sqlite"),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("6 job(s) in jobs"), "{stdout}");
    for job in ["fetch", "notify", "calendar"] {
        assert!(stdout.contains(job), "{job} missing: {stdout}");
    }
}

#[test]
fn credentials_in_the_gateway_url_are_refused_before_anything_runs_or_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    for command in [
        &["push", "--job", "j", "--metric", "x=1"][..],
        &["delete", "--job", "j"][..],
    ] {
        let out = harness::pushguard(dir.path())
            .args(command)
            .args(["--gateway", "http://me:s3cret@127.0.0.1:9"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("PUSHGATEWAY_USERNAME"), "{stderr}");
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }
    let out = harness::pushguard(dir.path())
        .env("PUSHGATEWAY_URL", "http://me:s3cret@127.0.0.1:9")
        .args(["exec", "--job", "j", "--", "touch"])
        .arg(&marker)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
    assert!(
        !marker.exists(),
        "the command ran with a refused configuration"
    );
    // Nothing was stored that could hold the password.
    let state = dir.path().join("pushguard-state.sqlite");
    if state.exists() {
        let bytes = std::fs::read(&state).unwrap();
        assert!(!bytes.windows(6).any(|w| w == b"s3cret"));
    }
}

#[test]
fn a_stdout_that_cannot_be_written_never_makes_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    // Some history and an outbox entry to print.
    let out = harness::pushguard(dir.path())
        .args(["exec", "--gateway", &gw.url, "--job", "full", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    for args in [
        &["history"][..],
        &["history", "--json"][..],
        &["outbox"][..],
        &["outbox", "--json"][..],
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = harness::pushguard(dir.path())
            .args(args)
            .stdout(full)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(101), "{args:?} panicked: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

#[test]
fn history_and_outbox_never_create_a_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("stat/e.db");
    for args in [
        &["history"][..],
        &["outbox"][..],
        &["outbox", "--flush"][..],
    ] {
        let out = harness::pushguard(dir.path())
            .args(args)
            .arg("--state")
            .arg(&typo)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(&typo.display().to_string()), "{stderr}");
        assert!(
            !typo.parent().unwrap().exists(),
            "{args:?} created a directory"
        );
    }
    // The default location: nothing has run yet, nothing is created.
    for args in [&["history"][..], &["outbox"][..]] {
        let out = harness::pushguard(dir.path())
            .env_remove("PUSHGUARD_STATE")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(
            !dir.path().join("xdg-state").exists(),
            "{args:?} created the state dir"
        );
    }
    let out = harness::pushguard(dir.path())
        .args(["history", "--limit", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--limit"));
}

#[test]
fn bad_push_input_is_refused_before_anything_is_sent() {
    let gw = Pushgateway::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics.prom");
    let cases: Vec<(Vec<String>, Option<&str>, &str)> = vec![
        (
            vec![
                "--label".into(),
                "a=1".into(),
                "--label".into(),
                "a=2".into(),
                "--metric".into(),
                "x=1".into(),
            ],
            None,
            "\"a\" is given twice",
        ),
        (
            vec!["--metric".into(), "x=-1:counter".into()],
            None,
            "never negative",
        ),
        (vec!["--metric".into(), "x=1e309".into()], None, "finite"),
        (
            vec!["--file".into(), file.display().to_string()],
            Some("# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n"),
            "appears twice",
        ),
    ];
    for (args, contents, says) in cases {
        if let Some(contents) = contents {
            std::fs::write(&file, contents).unwrap();
        }
        let out = harness::pushguard(dir.path())
            .args(["push", "--gateway", &gw.url, "--job", "bad"])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert!(gw.group("bad", &[]).is_none(), "something was sent");
    // CRLF line endings are accepted and arrive as the same samples.
    std::fs::write(&file, "# TYPE crlf_total counter\r\ncrlf_total 3\r\n").unwrap();
    let out = harness::pushguard(dir.path())
        .args(["push", "--gateway", &gw.url, "--job", "crlf", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let group = gw.group("crlf", &[]).expect("the pushed group");
    assert_eq!(group.value("crlf_total", &[]), Some(3.0));
}

#[test]
fn exec_keeps_the_command_exit_code_when_its_warnings_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    for code in [0, 3] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        // The gateway is a closed port: exec warns that the push was kept.
        let out = harness::pushguard(dir.path())
            .args(["exec", "--job", "full", "--gateway", "http://127.0.0.1:1"])
            .args([
                "--push-retries",
                "0",
                "--",
                "sh",
                "-c",
                &format!("exit {code}"),
            ])
            .stderr(full)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code));
    }
}

#[test]
fn a_group_too_long_for_a_gateway_is_refused_and_an_entry_can_be_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let long = format!("big={}", "v".repeat(20_000));
    for command in [
        &["push", "--job", "j", "--metric", "x=1"][..],
        &["exec", "--job", "j", "--", "true"][..],
    ] {
        let (first, rest) = command.split_first().unwrap();
        let out = harness::pushguard(dir.path())
            .arg(first)
            .args(["--gateway", "http://127.0.0.1:1", "--label", &long])
            .args(rest)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {stderr}");
        assert!(
            stderr.contains("too long") && stderr.contains("\"big\""),
            "{stderr}"
        );
    }
    // A pending entry (the gateway is down) can be dropped by its id.
    let out = harness::pushguard(dir.path())
        .args([
            "exec",
            "--job",
            "j",
            "--gateway",
            "http://127.0.0.1:1",
            "--push-retries",
            "0",
        ])
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let listed = harness::pushguard(dir.path())
        .args(["outbox", "--json"])
        .output()
        .unwrap();
    let entries: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let id = entries[0]["id"].as_i64().expect("an entry id");
    let out = harness::pushguard(dir.path())
        .args(["outbox", "--drop", &id.to_string(), "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = harness::pushguard(dir.path())
        .args(["outbox", "--json"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "[]");
    let history = harness::pushguard(dir.path())
        .args(["history", "--json"])
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(runs[0]["push_status"], "dropped", "{runs}");
    let out = harness::pushguard(dir.path())
        .args(["outbox", "--drop", "999"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
