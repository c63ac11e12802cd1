//! `pushguard exec`: supervise one command and push its run.
//!
//! The child runs in its own process group so a timeout can stop everything
//! it started; SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to
//! pushguard are forwarded to that group. The exit code is the child's own,
//! whatever happens to the push.

use std::ffi::OsString;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{Command, ExitCode, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;
use std::io::IsTerminal as _;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, killpg, sigprocmask};
use nix::unistd::{Pid, getpgrp, tcgetpgrp, tcsetpgrp};
use pushguard::{JobRun, Method, Outcome, PushError, Retention, SystemMetrics, Tracing};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;

use super::args::{Chain, GatewayArgs, GroupArgs, StateArgs, parse_duration, usage};

/// Exit code of a run stopped by --timeout, as timeout(1) uses.
const TIMEOUT_EXIT: u8 = 124;

#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    #[command(flatten)]
    group: GroupArgs,

    /// Stop the command after this long (`30s`, `10m`, `1h30m`): SIGTERM to its
    /// process group, then SIGKILL after --kill-after; exit code 124.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    timeout: Option<Duration>,

    /// Grace period between SIGTERM and SIGKILL on timeout.
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    kill_after: Duration,

    /// How often the job is meant to run (`15m`, `1h`, `1day`): pushed as
    /// job_expected_interval_seconds so a staleness alert can fire when no
    /// success arrives within twice that.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, env = "PUSHGUARD_EXPECTED_INTERVAL")]
    expected_interval: Option<Duration>,

    /// Also push the host's CPU (over the run), memory and disk usage:
    /// system_cpu_usage_percent, system_memory_usage_bytes,
    /// system_disk_usage_percent{mount}.
    #[arg(long)]
    system_metrics: bool,

    /// Replace the whole group (PUT) instead of only the pushed families (POST).
    /// With PUT a failed run also erases the last success timestamp.
    #[arg(long)]
    replace: bool,

    #[command(flatten)]
    gateway: GatewayArgs,

    #[command(flatten)]
    state: StateArgs,

    /// Push directly, without the state file: an undelivered push is lost and
    /// job_runs_total counts only this run.
    #[arg(long)]
    no_state: bool,

    /// Runs kept per job in the run history.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    history_keep: u32,

    /// Runs older than this are dropped from the run history (`0s` keeps them).
    #[arg(long, value_name = "DUR", default_value = "90days", value_parser = parse_duration)]
    history_max_age: Duration,

    /// The command and its arguments, run without a shell.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

enum End {
    Exited(ExitStatus),
    TimedOut,
}

pub(crate) fn run(args: ExecArgs) -> anyhow::Result<ExitCode> {
    // Everything that can be wrong with the command line is checked before
    // the command starts; after that nothing changes its exit code.
    let key = args.group.key()?;
    let gateway = args.gateway.gateway()?;
    let mut job = JobRun::new(key.job()).gateway(gateway);
    for (name, value) in key.labels() {
        job = job.label(name.clone(), value.clone());
    }
    if args.replace {
        job = job.method(Method::Put);
    }
    let system = if args.system_metrics {
        let registry = pushguard::prometheus::Registry::new();
        let system = SystemMetrics::new(&registry);
        job = job.registry(registry);
        Some(system)
    } else {
        None
    };
    job = if args.no_state {
        job.without_state()
    } else {
        // A state file another process holds locked delays the command by
        // at most the push deadline; then the run is pushed directly.
        match args.state.open_within(args.gateway.push_deadline) {
            Ok(state) => {
                state.set_retention(Retention {
                    keep_runs: args.history_keep.max(1),
                    max_age: Some(args.history_max_age).filter(|age| !age.is_zero()),
                });
                job.state(state)
            }
            Err(error) => {
                // The command runs anyway; its result is pushed directly.
                eprintln!("pushguard: warning: {error}; pushing without the state file");
                job.without_state()
            }
        }
    };
    job = match Tracing::global() {
        Ok(Some(tracing)) => job.tracing(tracing),
        Ok(None) => job.without_tracing(),
        Err(error) => {
            eprintln!("pushguard: warning: {error}; running without tracing");
            job.without_tracing()
        }
    };
    let mut guard = job.start().map_err(|e| usage(e.to_string()))?;
    if let Some(interval) = args.expected_interval {
        guard.set_expected_interval(interval);
    }

    let signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2])
        .map_err(|e| anyhow::anyhow!("cannot install signal handlers: {e}"))?;
    let signal_handle = signals.handle();

    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| usage("no command given after --"))?;
    // The command joins the run's trace through TRACEPARENT (and TRACESTATE,
    // BAGGAGE); without tracing, whatever it inherited passes through.
    let spawned = Command::new(program)
        .args(rest)
        .envs(guard.child_env())
        .process_group(0)
        .spawn();
    let (outcome, code) = match spawned {
        Err(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            eprintln!("pushguard: cannot run {:?}: {e}", program.to_string_lossy());
            guard.set_error(format!("cannot run {:?}: {e}", program.to_string_lossy()));
            (Outcome::Failure, code)
        }
        Ok(mut child) => {
            let pgid = Pid::from_raw(child.id() as i32);
            let terminal = Terminal::hand_to(pgid);
            let forwarder = std::thread::spawn(move || forward(signals, pgid));
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(child.wait());
            });
            let end = wait(&rx, args.timeout, args.kill_after, pgid);
            drop(terminal);
            let end = end?;
            signal_handle.close();
            let _ = forwarder.join();
            match end {
                End::TimedOut => {
                    eprintln!(
                        "pushguard: {:?} timed out after {}",
                        program.to_string_lossy(),
                        humantime::format_duration(args.timeout.unwrap_or_default())
                    );
                    (Outcome::Timeout, i32::from(TIMEOUT_EXIT))
                }
                End::Exited(status) => {
                    if let Some(signal) = status.signal() {
                        guard.set_signal(signal);
                    }
                    let code = exit_code(status);
                    let outcome = if code == 0 {
                        Outcome::Success
                    } else {
                        Outcome::Failure
                    };
                    (outcome, code)
                }
            }
        }
    };

    guard.set_exit_code(code);
    if let Some(system) = &system {
        system.refresh();
    }
    // A spooled push is an `Ok` report; here it is the warning it always was.
    match guard
        .finish(outcome)
        .and_then(pushguard::PushReport::into_delivered)
    {
        Ok(report) => {
            if let Some(problem) = report.state_warning {
                eprintln!("pushguard: warning: {problem}; pushed without the state file");
            }
        }
        Err(error @ PushError::Spooled { .. }) => eprintln!(
            "pushguard: warning: metrics of job {:?} {} (exit code unchanged)",
            key.job(),
            Chain(&error)
        ),
        Err(error) => eprintln!(
            "pushguard: warning: metrics of job {:?} not pushed: {} (exit code unchanged)",
            key.job(),
            Chain(&error)
        ),
    }
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

fn wait(
    rx: &mpsc::Receiver<std::io::Result<ExitStatus>>,
    timeout: Option<Duration>,
    grace: Duration,
    pgid: Pid,
) -> anyhow::Result<End> {
    let received = match timeout {
        None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        Some(limit) => rx.recv_timeout(limit),
    };
    let status = match received {
        Ok(status) => status,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            stop_group(rx, pgid, grace);
            return Ok(End::TimedOut);
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            return Err(anyhow::anyhow!("lost track of the child process"));
        }
    };
    Ok(End::Exited(status.map_err(|e| {
        anyhow::anyhow!("cannot wait for the child process: {e}")
    })?))
}

/// SIGTERM to the whole group, up to `grace` for it to empty (the command
/// and anything it started), then SIGKILL to whatever is left.
fn stop_group(rx: &mpsc::Receiver<std::io::Result<ExitStatus>>, pgid: Pid, grace: Duration) {
    let deadline = Instant::now() + grace;
    let _ = killpg(pgid, Signal::SIGTERM);
    let exited = rx.recv_timeout(grace).is_ok();
    // The command is gone (or the grace is over); give the rest of its group
    // what is left of the grace. `killpg(pgid, None)` only probes.
    while Instant::now() < deadline && killpg(pgid, None).is_ok() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = killpg(pgid, Signal::SIGKILL);
    if !exited {
        let _ = rx.recv();
    }
}

/// While an interactive command runs, its process group owns the terminal, so
/// it can read stdin and receives Ctrl-C directly; the terminal is taken back
/// when the command ends.
struct Terminal {
    ours: Pid,
}

impl Terminal {
    fn hand_to(child: Pid) -> Option<Terminal> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let ours = getpgrp();
        if tcgetpgrp(&stdin).ok()? != ours {
            return None; // we are not in the foreground ourselves
        }
        tcsetpgrp(&stdin, child).ok()?;
        // A command that touched the terminal before the hand-over was
        // stopped by SIGTTIN; let it go on now that the terminal is its own.
        let _ = killpg(child, Signal::SIGCONT);
        Some(Terminal { ours })
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // Taking the terminal back from a background group raises SIGTTOU
        // unless it is blocked.
        let mut ttou = SigSet::empty();
        ttou.add(Signal::SIGTTOU);
        let mut old = SigSet::empty();
        if sigprocmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut old)).is_ok() {
            let _ = tcsetpgrp(std::io::stdin(), self.ours);
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
        }
    }
}

fn forward(mut signals: Signals, pgid: Pid) {
    for number in signals.forever() {
        if let Ok(signal) = Signal::try_from(number) {
            let _ = killpg(pgid, signal);
        }
    }
}

/// The shell convention: the exit code, or 128+signal when killed.
fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    }
}
