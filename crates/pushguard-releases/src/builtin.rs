//! The one plug-in point between built-in jobs and the runner.
//!
//! A built-in is a type implementing [`Builtin`]: its name in job files, its
//! `[settings]` parsed once when the job file loads, the metric families it
//! registers into the job's registry, and a run that ends in a typed report.
//! The runner sees built-ins only through [`find`] and the erased
//! [`Prepared`] settings it returns; adding a built-in means writing its type
//! and listing it in [`BUILTINS`].

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use pushguard::prometheus::Registry;

use crate::{
    BuiltinError, CalendarMetrics, CalendarSettings, DbMetrics, FetchMetrics, FetchSettings,
    NotifyMetrics, NotifySettings, Store, fetch_until, notify, sync_calendar,
};

/// The store file the built-ins use when a job does not set `store`:
/// `releases.db` beside the state file.
pub const DEFAULT_STORE_FILE: &str = "releases.db";

/// Where a run finds what the runner gives every built-in.
#[derive(Debug, Clone)]
pub struct Env {
    /// Where a job's store goes when its settings name none: beside the
    /// runner's state file.
    pub store_dir: PathBuf,
    /// When the run's job times out (its `timeout`), for a built-in that
    /// waits (fetch waits out rate limits only before it).
    pub deadline: Option<std::time::Instant>,
}

/// The boxed future of an erased run.
pub type RunFuture<'a> = Pin<Box<dyn Future<Output = Result<String, BuiltinError>> + Send + 'a>>;

/// A built-in job the runner schedules with `builtin = "NAME"`.
pub trait Builtin: Send + Sync + 'static {
    /// The name job files use.
    const NAME: &'static str;
    /// The job's `[settings]`, validated.
    type Settings: fmt::Debug + Send + Sync + 'static;
    /// What one job keeps between its runs: its metric families (registered
    /// into the job's registry) and open resources such as the store.
    type Job: Send + Sync + 'static;
    /// What a run reports when it went through; logged and kept as its output.
    type Report: fmt::Display + Send;

    /// Parses `[settings]` (`base` is the job file's directory, for relative
    /// paths) with an error naming the offending key.
    fn settings(table: &toml::Table, base: &Path) -> Result<Self::Settings, BuiltinError>;

    /// Registers the job's metric families into `registry`.
    fn job(registry: &Registry) -> Self::Job;

    /// Why the job, as configured, has nothing it can do (say, no channel
    /// set yet): shown once by `pushguard check` and at the runner's start.
    fn warning(_settings: &Self::Settings) -> Option<String> {
        None
    }

    /// Runs the job once.
    fn run<'a>(
        job: &'a Self::Job,
        settings: &'a Self::Settings,
        env: &'a Env,
    ) -> impl Future<Output = Result<Self::Report, BuiltinError>> + Send + 'a;
}

/// A built-in with its types erased, as the runner holds it.
trait Erased: Send + Sync {
    fn name(&self) -> &'static str;
    fn settings(
        &self,
        table: &toml::Table,
        base: &Path,
    ) -> Result<Arc<dyn Any + Send + Sync>, BuiltinError>;
    fn job(&self, registry: &Registry) -> Arc<dyn Any + Send + Sync>;
    fn warning(&self, settings: &(dyn Any + Send + Sync)) -> Option<String>;
    fn run<'a>(
        &self,
        job: &'a (dyn Any + Send + Sync),
        settings: &'a (dyn Any + Send + Sync),
        env: &'a Env,
    ) -> RunFuture<'a>;
}

struct Plug<B>(std::marker::PhantomData<fn() -> B>);

impl<B: Builtin> Erased for Plug<B> {
    fn name(&self) -> &'static str {
        B::NAME
    }

    fn settings(
        &self,
        table: &toml::Table,
        base: &Path,
    ) -> Result<Arc<dyn Any + Send + Sync>, BuiltinError> {
        Ok(Arc::new(B::settings(table, base)?))
    }

    fn job(&self, registry: &Registry) -> Arc<dyn Any + Send + Sync> {
        Arc::new(B::job(registry))
    }

    fn warning(&self, settings: &(dyn Any + Send + Sync)) -> Option<String> {
        settings.downcast_ref::<B::Settings>().and_then(B::warning)
    }

    fn run<'a>(
        &self,
        job: &'a (dyn Any + Send + Sync),
        settings: &'a (dyn Any + Send + Sync),
        env: &'a Env,
    ) -> RunFuture<'a> {
        let (Some(job), Some(settings)) = (
            job.downcast_ref::<B::Job>(),
            settings.downcast_ref::<B::Settings>(),
        ) else {
            let name = B::NAME;
            return Box::pin(async move {
                Err(BuiltinError::Settings {
                    key: "builtin".to_owned(),
                    reason: format!("the job state does not belong to the built-in {name:?}"),
                })
            });
        };
        Box::pin(async move {
            B::run(job, settings, env)
                .await
                .map(|report| report.to_string())
        })
    }
}

/// Every built-in, in the order `pushguard check` names them.
static BUILTINS: &[&dyn Erased] = &[
    &Plug::<Noop>(std::marker::PhantomData),
    &Plug::<FetchJob>(std::marker::PhantomData),
    &Plug::<NotifyJob>(std::marker::PhantomData),
    &Plug::<CalendarJob>(std::marker::PhantomData),
];

/// Every name accepted by `builtin = "…"`.
///
/// ```
/// assert_eq!(pushguard_releases::builtin_names(), ["noop", "fetch", "notify", "calendar"]);
/// ```
pub fn builtin_names() -> Vec<&'static str> {
    BUILTINS.iter().map(|b| b.name()).collect()
}

/// The built-in called `name`, if there is one.
///
/// ```
/// assert!(pushguard_releases::find("fetch").is_some());
/// assert!(pushguard_releases::find("teleport").is_none());
/// ```
pub fn find(name: &str) -> Option<Kind> {
    BUILTINS.iter().find(|b| b.name() == name).map(|b| Kind(*b))
}

/// One built-in, found by name; cheap to copy.
#[derive(Clone, Copy)]
pub struct Kind(&'static dyn Erased);

impl Kind {
    /// The name job files use.
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// Parses a job's `[settings]` once, when its file loads.
    pub fn prepare(self, table: &toml::Table, base: &Path) -> Result<Prepared, BuiltinError> {
        Ok(Prepared {
            kind: self,
            settings: self.0.settings(table, base)?,
        })
    }

    /// A job of this kind with its families registered into `registry`.
    pub fn job(self, registry: &Registry) -> JobState {
        JobState {
            kind: self,
            state: self.0.job(registry),
        }
    }
}

impl PartialEq for Kind {
    fn eq(&self, other: &Kind) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Kind {}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A built-in with its settings parsed; what a loaded job file holds.
#[derive(Clone)]
pub struct Prepared {
    kind: Kind,
    settings: Arc<dyn Any + Send + Sync>,
}

impl Prepared {
    /// Which built-in.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Why the job, as configured, has nothing it can do yet; `None` when it
    /// is ready.
    pub fn warning(&self) -> Option<String> {
        self.kind.0.warning(&*self.settings)
    }

    /// Runs the job once with these settings.
    ///
    /// A `job` of another kind is refused with an error, never run.
    pub fn run<'a>(&'a self, job: &'a JobState, env: &'a Env) -> RunFuture<'a> {
        if job.kind != self.kind {
            let (want, got) = (self.kind.name(), job.kind.name());
            return Box::pin(async move {
                Err(BuiltinError::Settings {
                    key: "builtin".to_owned(),
                    reason: format!("job state of {got:?} given to {want:?}"),
                })
            });
        }
        self.kind.0.run(&*job.state, &*self.settings, env)
    }
}

/// Two loaded jobs are the same built-in when their kinds are; their raw
/// settings tables are compared by the job file that holds them.
impl PartialEq for Prepared {
    fn eq(&self, other: &Prepared) -> bool {
        self.kind == other.kind
    }
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// One job's state between runs (its metric families, its open store).
pub struct JobState {
    kind: Kind,
    state: Arc<dyn Any + Send + Sync>,
}

impl JobState {
    /// Which built-in this state belongs to.
    pub fn kind(&self) -> Kind {
        self.kind
    }
}

impl fmt::Debug for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobState")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// `builtin = "noop"`: does nothing and succeeds; for trying the runner out
/// and for tests.
pub struct Noop;

impl Builtin for Noop {
    const NAME: &'static str = "noop";
    type Settings = ();
    type Job = ();
    type Report = &'static str;

    fn settings(_: &toml::Table, _: &Path) -> Result<(), BuiltinError> {
        Ok(())
    }

    fn job(_: &Registry) {}

    async fn run(_: &(), _: &(), _: &Env) -> Result<&'static str, BuiltinError> {
        Ok("nothing to do")
    }
}

/// What the release jobs keep: their families and the store they opened.
pub struct StoreJob<M> {
    metrics: M,
    db: DbMetrics,
    store: Mutex<Option<(PathBuf, Store)>>,
}

impl<M> StoreJob<M> {
    fn new(registry: &Registry, metrics: M) -> StoreJob<M> {
        StoreJob {
            metrics,
            db: DbMetrics::new(registry),
            store: Mutex::new(None),
        }
    }

    /// The store the settings name (already resolved against the job file),
    /// else the default store in `env`; opened once and kept.
    fn store(&self, configured: Option<&PathBuf>, env: &Env) -> Result<Store, BuiltinError> {
        let path = configured
            .cloned()
            .unwrap_or_else(|| env.store_dir.join(DEFAULT_STORE_FILE));
        let mut slot = self.store.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((open, store)) = &*slot
            && *open == path
        {
            return Ok(store.clone());
        }
        let store = Store::open(&path, self.db.clone())?;
        *slot = Some((path, store.clone()));
        Ok(store)
    }
}

/// `builtin = "fetch"`: AniList and RSS/Atom sources into the store.
pub struct FetchJob;

impl Builtin for FetchJob {
    const NAME: &'static str = "fetch";
    type Settings = FetchSettings;
    type Job = StoreJob<FetchMetrics>;
    type Report = crate::FetchReport;

    fn settings(table: &toml::Table, base: &Path) -> Result<FetchSettings, BuiltinError> {
        FetchSettings::from_table(table, base)
    }

    fn job(registry: &Registry) -> Self::Job {
        StoreJob::new(registry, FetchMetrics::new(registry))
    }

    async fn run(
        job: &Self::Job,
        settings: &FetchSettings,
        env: &Env,
    ) -> Result<Self::Report, BuiltinError> {
        let store = job.store(settings.store.as_ref(), env)?;
        fetch_until(settings, &store, &job.metrics, env.deadline).await
    }
}

/// `builtin = "notify"`: pending releases to Slack, Discord and email.
pub struct NotifyJob;

impl Builtin for NotifyJob {
    const NAME: &'static str = "notify";
    type Settings = NotifySettings;
    type Job = StoreJob<NotifyMetrics>;
    type Report = crate::NotifyReport;

    fn settings(table: &toml::Table, base: &Path) -> Result<NotifySettings, BuiltinError> {
        NotifySettings::from_table(table, base)
    }

    fn job(registry: &Registry) -> Self::Job {
        StoreJob::new(registry, NotifyMetrics::new(registry))
    }

    fn warning(settings: &NotifySettings) -> Option<String> {
        settings.unconfigured()
    }

    async fn run(
        job: &Self::Job,
        settings: &NotifySettings,
        env: &Env,
    ) -> Result<Self::Report, BuiltinError> {
        let store = job.store(settings.store.as_ref(), env)?;
        notify(settings, &store, &job.metrics).await
    }
}

/// `builtin = "calendar"`: releases into an iCalendar file and CalDAV.
pub struct CalendarJob;

impl Builtin for CalendarJob {
    const NAME: &'static str = "calendar";
    type Settings = CalendarSettings;
    type Job = StoreJob<CalendarMetrics>;
    type Report = crate::CalendarReport;

    fn settings(table: &toml::Table, base: &Path) -> Result<CalendarSettings, BuiltinError> {
        CalendarSettings::from_table(table, base)
    }

    fn job(registry: &Registry) -> Self::Job {
        StoreJob::new(registry, CalendarMetrics::new(registry))
    }

    async fn run(
        job: &Self::Job,
        settings: &CalendarSettings,
        env: &Env,
    ) -> Result<Self::Report, BuiltinError> {
        let store = job.store(settings.store.as_ref(), env)?;
        sync_calendar(settings, &store, &job.metrics).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let names = builtin_names();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
    }

    #[tokio::test]
    async fn a_prepared_noop_runs_and_refuses_foreign_state() {
        let registry = Registry::new();
        let env = Env {
            store_dir: std::env::temp_dir(),
            deadline: None,
        };
        let noop = find("noop").unwrap();
        let prepared = noop.prepare(&toml::Table::new(), Path::new(".")).unwrap();
        let job = noop.job(&registry);
        assert_eq!(prepared.run(&job, &env).await.unwrap(), "nothing to do");
        let foreign = find("fetch").unwrap().job(&registry);
        let error = prepared.run(&foreign, &env).await.unwrap_err();
        assert!(error.to_string().contains("\"fetch\""), "{error}");
    }

    #[test]
    fn settings_errors_name_their_key() {
        let table: toml::Table = "timeout = \"soon\"".parse().unwrap();
        let error = find("fetch")
            .unwrap()
            .prepare(&table, Path::new("."))
            .unwrap_err();
        assert!(error.to_string().contains("timeout"), "{error}");
    }
}
