//! `pushguard run`, `pushguard trigger` and `pushguard check`.

use pushguard_cli::{errln, out};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use nix::sys::signal::Signal;
use pushguard::{Outcome, State, Tracing};

use pushguard_cli::{
    ConfigErrors, ConfigLoader, JobAction, JobSpec, Runner, RunnerConfig, RunnerLock,
};

use super::args::{Chain, usage};

#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    /// Runner configuration file [default: config/pushguard.toml when it exists]
    #[arg(long, env = "PUSHGUARD_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,

    /// Directory of the job files (`NAME.toml`) [default: from the configuration, else jobs/]
    #[arg(long, value_name = "DIR")]
    jobs: Option<PathBuf>,
}

impl ConfigArgs {
    fn loader(&self) -> ConfigLoader {
        let mut loader = ConfigLoader::new();
        if let Some(path) = &self.config {
            loader = loader.config_path(path);
        }
        if let Some(dir) = &self.jobs {
            loader = loader.jobs_dir(dir);
        }
        loader
    }
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    config: ConfigArgs,

    /// Address of the HTTP endpoint (/health, /metrics, /api/…) [default: 127.0.0.1:9465]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// Pushgateway base URL [default: from the configuration, else http://127.0.0.1:9091]
    #[arg(long, value_name = "URL")]
    gateway: Option<String>,

    /// State file, or a postgres:// URL that runners on any number of hosts
    /// share: each scheduled run then runs once across them [default: from
    /// the configuration, else the XDG state dir]
    #[arg(long, value_name = "PATH|URL")]
    state: Option<PathBuf>,

    /// This runner's name on a shared (postgres://) schedule [env:
    /// PUSHGUARD_RUNNER_ID; default: HOST:PID]
    #[arg(long, value_name = "NAME")]
    runner_id: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct TriggerArgs {
    /// The job to run.
    #[arg(value_name = "NAME")]
    name: String,

    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    config: ConfigArgs,
}

fn report(errors: &ConfigErrors) -> anyhow::Error {
    for error in errors.iter() {
        errln!("pushguard: {error}");
    }
    usage(format!("{} problem(s) in the configuration", errors.len()))
}

pub(crate) fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let (config, jobs) = args.config.loader().load().map_err(|e| report(&e))?;
    let enabled = jobs.iter().filter(|j| j.enabled).count();
    // One write for the whole list, however many jobs there are.
    let mut list = format!(
        "ok: {} job(s) in {} ({enabled} enabled)\n",
        jobs.len(),
        config.jobs_dir.display()
    );
    for job in &jobs {
        let _ = writeln!(
            list,
            "  {:<24} {:<20} {}",
            job.name,
            job.schedule.spec(),
            job.schedule.timezone().name()
        );
    }
    out!("{list}");
    warn_idle(&jobs);
    Ok(ExitCode::SUCCESS)
}

/// Says once which enabled built-in jobs have nothing they can do yet (a
/// fresh install's notify job without channel URLs): their runs are
/// recorded as skipped, not failed.
fn warn_idle(jobs: &[JobSpec]) {
    for job in jobs.iter().filter(|j| j.enabled) {
        if let JobAction::Builtin(builtin) = &job.action
            && let Some(reason) = builtin.warning()
        {
            errln!("pushguard: warning: {}: {reason}", job.file.display());
        }
    }
}

struct Setup {
    config: RunnerConfig,
    runner: Runner,
}

fn setup(loader: ConfigLoader) -> anyhow::Result<Setup> {
    let config = loader.load_config().map_err(|e| report(&e))?;
    let (jobs, problems) = config.load_jobs();
    for problem in &problems {
        errln!("pushguard: warning: {problem}; that job is not scheduled");
    }
    let gateway = config
        .gateway
        .builder()
        .and_then(|b| b.turn_wait(pushguard_cli::PUSH_TURN_WAIT).build())
        .map_err(|e| usage(Chain(&e).to_string()))?;
    let state = match &config.state {
        Some(path) => State::open(path),
        None => State::open_default(),
    }
    .map_err(|e| usage(e.to_string()))?;
    let tracing = match Tracing::global() {
        Ok(tracing) => tracing,
        Err(error) => {
            errln!("pushguard: warning: {error}; running without tracing");
            None
        }
    };
    warn_idle(&jobs);
    let runner = Runner::new(config.clone(), gateway, state, tracing, jobs);
    Ok(Setup { config, runner })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the runtime: {e}"))
}

pub(crate) fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut loader = args.config.loader();
    if let Some(listen) = args.listen {
        loader = loader.listen(listen);
    }
    if let Some(url) = &args.gateway {
        loader = loader.gateway_url(url.clone());
    }
    if let Some(state) = &args.state {
        loader = loader.state(state.clone());
    }
    if let Some(id) = &args.runner_id {
        loader = loader.runner_id(id.clone());
    }
    let Setup { config, runner } = setup(loader.clone())?;
    // Held until the runner has shut down. Runners on a shared (database)
    // state claim each fire instead.
    let _lock = match runner.shares_schedule() {
        true => {
            runner.check_runner_name().map_err(usage)?;
            None
        }
        false => Some(RunnerLock::acquire(runner.state_path()).map_err(usage)?),
    };
    runtime()?.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| usage(format!("cannot listen on {}: {e}", config.listen)))?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let serving = {
            let runner = runner.clone();
            tokio::spawn(async move { runner.serve(listener).await })
        };
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => reload(&runner, &loader).await,
            }
        }
        errln!(
            "pushguard: shutting down: waiting up to {} for running jobs",
            humantime::format_duration(config.shutdown_grace)
        );
        runner.shutdown().await;
        let _ = serving.await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// SIGHUP: re-read the job files, off the runtime's threads, which keep
/// serving meanwhile; a broken file keeps its job's old definition, an
/// unchanged job its timer.
async fn reload(runner: &Runner, loader: &ConfigLoader) {
    let began = std::time::Instant::now();
    let applied = {
        let (runner, loader) = (runner.clone(), loader.clone());
        tokio::task::spawn_blocking(move || reload_files(&runner, &loader))
    };
    let Ok(Some(reload)) = applied.await else {
        return;
    };
    errln!(
        "pushguard: reloaded {} job(s) in {} ms: {} new, {} changed, {} unchanged, {} removed",
        reload.added + reload.changed + reload.unchanged,
        began.elapsed().as_millis(),
        reload.added,
        reload.changed,
        reload.unchanged,
        reload.removed
    );
}

/// Reads the configuration and hands the runner one job file after the
/// other; `None` when the configuration or the jobs directory cannot be
/// read (the running configuration stays). Says what is wrong.
fn reload_files(runner: &Runner, loader: &ConfigLoader) -> Option<pushguard_cli::Reload> {
    let keep = |error: &dyn std::fmt::Display| {
        errln!("pushguard: reload: {error}; keeping the running configuration");
    };
    let config = match loader.load_config() {
        Ok(config) => config,
        Err(errors) => {
            errors.iter().for_each(|error| keep(error));
            return None;
        }
    };
    let files = match config.job_files() {
        Ok((files, problems)) => {
            for problem in &problems {
                errln!("pushguard: reload: {problem}");
            }
            files
        }
        Err(error) => {
            keep(&error);
            return None;
        }
    };
    let jobs = files
        .iter()
        .filter_map(|file| match JobSpec::from_file(file, &config.defaults) {
            Ok(job) => Some(job),
            Err(problems) => {
                for problem in problems.iter() {
                    errln!("pushguard: reload: {problem}; keeping the old definition");
                }
                let name = file.file_stem()?.to_string_lossy();
                runner.job(&name).map(|old| (*old).clone())
            }
        });
    Some(runner.reload(jobs))
}

pub(crate) fn trigger(args: TriggerArgs) -> anyhow::Result<ExitCode> {
    let Setup { runner, .. } = setup(args.config.loader())?;
    let name = args.name;
    if !runner.job_names().contains(&name) {
        return Err(usage(format!(
            "no job named {name:?}; configured: {}",
            runner.job_names().join(", ")
        )));
    }
    let (outcome, signal) = runtime()?.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        // Installed before the command starts: from now on SIGTERM and
        // SIGINT stop the run instead of ending pushguard under it.
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let Some(mut handle) = runner.trigger(&name) else {
            return Ok::<_, anyhow::Error>((None, None));
        };
        let received = tokio::select! {
            _ = &mut handle => None,
            _ = term.recv() => Some(Signal::SIGTERM),
            _ = int.recv() => Some(Signal::SIGINT),
        };
        if let Some(signal) = received {
            errln!("pushguard: {name}: {signal} received: stopping the run");
            runner.stop_runs().await;
            let _ = handle.await;
        }
        // The run's push goes on beside the run: wait for it before exiting.
        runner.wait_for_pushes().await;
        Ok((runner.last_run(&name), received))
    })?;
    if let Some(signal) = signal {
        if let Some((outcome, job_code)) = outcome {
            errln!(
                "pushguard: {name}: {} (exit code {job_code})",
                outcome.as_str()
            );
        }
        // The shell's code for a process ended by that signal.
        return Ok(ExitCode::from(128 + signal as u8));
    }
    match outcome {
        Some((Outcome::Success, _)) => Ok(ExitCode::SUCCESS),
        // Nothing could be done yet (said above): not a failure.
        Some((Outcome::Skipped, _)) => {
            errln!("pushguard: {name}: skipped");
            Ok(ExitCode::SUCCESS)
        }
        Some((outcome, code)) => {
            errln!("pushguard: {name}: {} (exit code {code})", outcome.as_str());
            Ok(ExitCode::from(1))
        }
        None => Ok(ExitCode::from(1)),
    }
}
