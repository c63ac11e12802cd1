//! Built-in jobs inside the runner: each job gets its own metric registry
//! (pushed with its runs, served on `/metrics` with a `job` label) and its
//! own connection to the release store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::Registry;
use tokio::sync::watch;

use super::command::{Ending, Tail};
use crate::builtin::{
    BuiltinError, CalendarMetrics, CalendarSettings, DEFAULT_STORE_FILE, DbMetrics, FetchMetrics,
    FetchSettings, NotifyMetrics, NotifySettings, Store, fetch, notify, sync_calendar,
};
use crate::config::{Builtin, JobSpec};
use crate::system::SystemMetrics;

/// The metric families of one built-in job, by kind.
enum Families {
    Noop,
    Fetch(FetchMetrics),
    Notify(NotifyMetrics),
    Calendar(CalendarMetrics),
}

/// One built-in job's registry, metrics and open store.
pub(crate) struct JobApp {
    builtin: Builtin,
    pub registry: Registry,
    db: DbMetrics,
    families: Families,
    system: SystemMetrics,
    store: Mutex<Option<(PathBuf, Store)>>,
}

impl JobApp {
    fn new(builtin: Builtin) -> JobApp {
        let registry = Registry::new();
        let families = match builtin {
            Builtin::Noop => Families::Noop,
            Builtin::Fetch => Families::Fetch(FetchMetrics::new(&registry)),
            Builtin::Notify => Families::Notify(NotifyMetrics::new(&registry)),
            Builtin::Calendar => Families::Calendar(CalendarMetrics::new(&registry)),
        };
        let db = DbMetrics::new(&registry);
        let system = SystemMetrics::new(&registry);
        JobApp {
            builtin,
            registry,
            db,
            families,
            system,
            store: Mutex::new(None),
        }
    }

    /// The store at `path`, opened once and kept.
    fn store(&self, path: &Path) -> Result<Store, BuiltinError> {
        let mut slot = self.store.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((open, store)) = &*slot
            && open == path
        {
            return Ok(store.clone());
        }
        let store = Store::open(path, self.db.clone())?;
        *slot = Some((path.to_owned(), store.clone()));
        Ok(store)
    }
}

/// Every built-in job's [`JobApp`], by job name.
pub(crate) struct Builtins {
    /// Where stores go when a job does not name one: beside the state file.
    store_dir: PathBuf,
    apps: Mutex<BTreeMap<String, Arc<JobApp>>>,
}

impl Builtins {
    pub(crate) fn new(state_file: &Path) -> Builtins {
        Builtins {
            store_dir: state_file.parent().map(Path::to_owned).unwrap_or_default(),
            apps: Mutex::new(BTreeMap::new()),
        }
    }

    /// The app of `job` (made on first use, remade when its kind changed).
    pub(crate) fn app(&self, job: &str, builtin: Builtin) -> Arc<JobApp> {
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        match apps.get(job) {
            Some(app) if app.builtin == builtin => app.clone(),
            _ => {
                let app = Arc::new(JobApp::new(builtin));
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

    /// The store a job's settings name (already resolved against the job
    /// file), else the default store beside the state file.
    fn store_path(&self, configured: Option<&PathBuf>) -> PathBuf {
        configured
            .cloned()
            .unwrap_or_else(|| self.store_dir.join(DEFAULT_STORE_FILE))
    }

    /// Runs `job` once: stopped by `stop`, bounded by the job's timeout. The
    /// report (or the error) is logged as `[job] …` and kept as the run's output.
    pub(crate) async fn run(
        &self,
        job: &JobSpec,
        builtin: Builtin,
        mut stop: watch::Receiver<bool>,
        tail_lines: usize,
    ) -> (Ending, Tail) {
        let app = self.app(&job.name, builtin);
        let work = self.dispatch(job, &app);
        let limit = job.timeout.unwrap_or(Duration::MAX);
        let tail = Tail::new(tail_lines.max(1));
        let ended = tokio::select! {
            result = tokio::time::timeout(limit, work) => match result {
                Ok(Ok(report)) => {
                    tail.push(report.clone());
                    eprintln!("[{}] {report}", job.name);
                    Ending::Exited { code: 0, signal: None }
                }
                Ok(Err(error)) => {
                    let line = format!("error: {error}");
                    eprintln!("[{}] {line}", job.name);
                    tail.push(line);
                    Ending::Exited { code: 1, signal: None }
                }
                Err(_) => Ending::TimedOut,
            },
            _ = stop.wait_for(|s| *s) => Ending::Stopped,
        };
        app.system.refresh();
        (ended, tail)
    }

    async fn dispatch(&self, job: &JobSpec, app: &JobApp) -> Result<String, BuiltinError> {
        let base = base_dir(job);
        match &app.families {
            Families::Noop => Ok("nothing to do".to_owned()),
            Families::Fetch(metrics) => {
                let settings = FetchSettings::from_table(&job.settings, base)?;
                let store = app.store(&self.store_path(settings.store.as_ref()))?;
                Ok(fetch(&settings, &store, metrics).await?.to_string())
            }
            Families::Notify(metrics) => {
                let settings = NotifySettings::from_table(&job.settings, base)?;
                let store = app.store(&self.store_path(settings.store.as_ref()))?;
                Ok(notify(&settings, &store, metrics).await?.to_string())
            }
            Families::Calendar(metrics) => {
                let settings = CalendarSettings::from_table(&job.settings, base)?;
                let store = app.store(&self.store_path(settings.store.as_ref()))?;
                Ok(sync_calendar(&settings, &store, metrics).await?.to_string())
            }
        }
    }
}

fn base_dir(job: &JobSpec) -> &Path {
    job.file.parent().unwrap_or(Path::new("."))
}
