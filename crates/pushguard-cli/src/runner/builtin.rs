//! Built-in jobs inside the runner: each job gets its own metric registry
//! (pushed with its runs, served on `/metrics` with a `job` label) and its
//! own state between runs (the release store it opened). The built-ins
//! themselves are reached only through `pushguard_releases::Prepared`.

use crate::errln;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pushguard::SystemMetrics;
use pushguard::prometheus::Registry;
use pushguard_releases::{Env, JobState, Kind, Prepared};
use tokio::sync::watch;

use crate::config::JobSpec;
use crate::supervisor::{Ending, Tail};

/// One built-in job's registry, host gauges and state between runs.
pub(crate) struct JobApp {
    pub registry: Registry,
    state: JobState,
    /// Refreshed at the end of each run, before its push.
    pub system: SystemMetrics,
}

impl JobApp {
    fn new(kind: Kind) -> JobApp {
        let registry = Registry::new();
        let state = kind.job(&registry);
        let system = SystemMetrics::new(&registry);
        JobApp {
            registry,
            state,
            system,
        }
    }
}

/// Every built-in job's [`JobApp`], by job name.
pub(crate) struct Builtins {
    env: Env,
    apps: Mutex<BTreeMap<String, Arc<JobApp>>>,
}

impl Builtins {
    pub(crate) fn new(store_dir: &Path) -> Builtins {
        Builtins {
            env: Env {
                store_dir: store_dir.to_owned(),
                deadline: None,
            },
            apps: Mutex::new(BTreeMap::new()),
        }
    }

    /// The app of `job` (made on first use, remade when its kind changed).
    pub(crate) fn app(&self, job: &str, kind: Kind) -> Arc<JobApp> {
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        match apps.get(job) {
            Some(app) if app.state.kind() == kind => app.clone(),
            _ => {
                let app = Arc::new(JobApp::new(kind));
                apps.insert(job.to_owned(), app.clone());
                app
            }
        }
    }

    /// Every app with its job name, for `/metrics`.
    pub(crate) fn all(&self) -> Vec<(String, Arc<JobApp>)> {
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        apps.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Runs `job` once: stopped by `stop`, bounded by the job's timeout. The
    /// report (or the error) is logged as `[job] …` and kept as the run's output.
    pub(crate) async fn run(
        &self,
        job: &JobSpec,
        prepared: &Prepared,
        mut stop: watch::Receiver<bool>,
        tail_lines: usize,
    ) -> (Ending, Tail) {
        let app = self.app(&job.name, prepared.kind());
        let limit = job.timeout.unwrap_or(Duration::MAX);
        let env = Env {
            deadline: job
                .timeout
                .and_then(|t| std::time::Instant::now().checked_add(t)),
            ..self.env.clone()
        };
        let work = prepared.run(&app.state, &env);
        let tail = Tail::new(tail_lines.max(1));
        let ended = tokio::select! {
            result = tokio::time::timeout(limit, work) => match result {
                Ok(Ok(report)) => {
                    tail.push(report.clone());
                    errln!("[{}] {report}", job.name);
                    Ending::Exited { code: 0, signal: None }
                }
                // Said once at start (and by `check`), not at every run.
                Ok(Err(pushguard_releases::BuiltinError::Unconfigured { reason })) => {
                    tail.push(format!("skipped: {reason}"));
                    Ending::Skipped { reason }
                }
                Ok(Err(error)) => {
                    let line = format!("error: {error}");
                    errln!("[{}] {line}", job.name);
                    tail.push(line);
                    Ending::Exited { code: 1, signal: None }
                }
                Err(_) => Ending::TimedOut,
            },
            _ = stop.wait_for(|s| *s) => Ending::Stopped,
        };
        (ended, tail)
    }
}
