//! `pushguard exec`: supervise one command and push its run.
//!
//! The child runs in its own process group so a timeout can stop everything
//! it started; SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to
//! pushguard are forwarded to that group. The exit code is the child's own,
//! whatever happens to the push. Spawning, waiting, the timeout and the exit
//! codes are the library's [`supervisor`] (the same as the runner's command
//! jobs), run on a current-thread runtime; only the signal forwarding lives
//! here.

use pushguard_cli::errln;
use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use pushguard::{JobRun, Method, Outcome, PushError, Retention, SystemMetrics, Tracing};
use pushguard_cli::supervisor::{self, Ending, Input, Output, Spec};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;
use tokio::sync::watch;

use super::args::{Chain, GatewayArgs, GroupArgs, StateArgs, parse_duration, usage};

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

pub(crate) fn run(args: ExecArgs) -> anyhow::Result<ExitCode> {
    // Everything that can be wrong with the command line is checked before
    // the command starts; after that nothing changes its exit code.
    let key = args.group.key()?;
    let (program, _) = args
        .command
        .split_first()
        .ok_or_else(|| usage("no command given after --"))?;
    let program = program.to_string_lossy().into_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the runtime: {e}"))?;
    if args.replace && args.gateway.is_remote_write() {
        return Err(usage(
            "--replace replaces a Pushgateway group; a remote-write receiver has no groups \
             (drop --replace or use --sink pushgateway)",
        ));
    }
    let gateway = args.gateway.gateway()?;
    let mut job = JobRun::for_key(&key).gateway(gateway);
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
    // Why the state file could not be used, for a push that fails too.
    let state_problem = Arc::new(Mutex::new(None::<String>));
    job = if args.no_state {
        job.without_state()
    } else {
        // Opened on a thread of its own while the command runs: the command
        // does not wait for the file. A state file another process holds
        // locked is waited for at most the push deadline; then the run is
        // pushed directly, without the totals (unknown here: they never go
        // backwards), and the one warning comes with the push's report.
        let state_args = args.state.clone();
        let wait = args.gateway.push_deadline;
        let retention = Retention {
            keep_runs: args.history_keep.max(1),
            max_age: Some(args.history_max_age).filter(|age| !age.is_zero()),
        };
        let problem = Arc::clone(&state_problem);
        job.state_opener(move || {
            let opened = state_args.open_within(wait);
            match &opened {
                Ok(state) => state.set_retention(retention),
                Err(error) => {
                    *problem.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
                }
            }
            opened
        })
    };
    job = match Tracing::global() {
        Ok(Some(tracing)) => job.tracing(tracing),
        Ok(None) => job.without_tracing(),
        Err(error) => {
            errln!("pushguard: warning: {error}; running without tracing");
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

    // The command joins the run's trace through TRACEPARENT (and TRACESTATE,
    // BAGGAGE); without tracing, whatever it inherited passes through.
    let mut spec = Spec::new(&args.command);
    spec.env = guard
        .child_env()
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    spec.stdin = Input::Inherit;
    spec.output = Output::Inherit;
    spec.terminal = true;
    spec.timeout = args.timeout;
    spec.grace = args.kill_after;
    let ending = runtime.block_on(async {
        let child = match supervisor::spawn(&spec) {
            Ok(child) => child,
            Err(not_started) => return Ending::from(not_started),
        };
        let pgid = child.pgid();
        let forwarder = std::thread::spawn(move || forward(signals, pgid));
        // Nothing stops the command from outside: the sender is gone.
        let (_, never) = watch::channel(false);
        let ending = child.wait(never).await;
        signal_handle.close();
        let _ = forwarder.join();
        ending
    });
    let code = ending.exit_code();
    let outcome = match ending {
        Ending::Exited { code: 0, .. } => Outcome::Success,
        Ending::Exited { signal, .. } => {
            if let Some(signal) = signal {
                guard.set_signal(signal);
            }
            Outcome::Failure
        }
        Ending::TimedOut => {
            errln!(
                "pushguard: {program:?} timed out after {}",
                humantime::format_duration(args.timeout.unwrap_or_default())
            );
            Outcome::Timeout
        }
        Ending::NotStarted { reason, .. } | Ending::Lost { reason } => {
            errln!("pushguard: {reason}");
            guard.set_error(reason);
            Outcome::Failure
        }
        Ending::Stopped => Outcome::Failure,
        Ending::Skipped { .. } => Outcome::Skipped,
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
                errln!("pushguard: warning: {problem}; pushed without the state file");
            }
        }
        Err(error @ PushError::Spooled { .. }) => errln!(
            "pushguard: warning: metrics of job {:?} {} (exit code unchanged)",
            key.job(),
            Chain(&error)
        ),
        Err(error) => errln!(
            "pushguard: warning: metrics of job {:?} not pushed: {}{} (exit code unchanged)",
            key.job(),
            Chain(&error),
            state_problem
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .map(|problem| format!("; the state file could not be used: {problem}"))
                .unwrap_or_default()
        ),
    }
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

fn forward(mut signals: Signals, pgid: Pid) {
    for number in signals.forever() {
        if let Ok(signal) = Signal::try_from(number) {
            let _ = killpg(pgid, signal);
        }
    }
}
