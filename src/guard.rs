//! The scoped metric guard of one job run.
//!
//! [`JobRun`] configures a run; [`JobRun::start`] returns a [`JobGuard`] that
//! records the start time, hands out a registry for the run's own metrics,
//! and at the end pushes the contract metrics (see the README) together with
//! the user's families in one request. `finish` is the main path; dropping an
//! unfinished guard records a failure and pushes under the gateway's bounded
//! deadline, never panicking and never blocking past it.

mod contract;

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::time::{Duration, Instant, SystemTime};

use crate::body::Body;
use crate::error::PushError;
use crate::grouping::GroupingKey;
use crate::push::{Gateway, GatewayBuilder, Method, PushReport};
#[cfg(feature = "state")]
use crate::state::State;
#[cfg(feature = "otel")]
use crate::trace::Tracing;
#[cfg(feature = "otel")]
use opentelemetry::KeyValue;

pub use contract::{CONTRACT_FAMILIES, MISSED_REASONS};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The run did its work.
    Success,
    /// The run failed (error, non-zero exit, panic, kill).
    Failure,
    /// The run was stopped because it ran past its time limit.
    Timeout,
    /// The run was not started (for example because another was running).
    Skipped,
}

impl Outcome {
    /// Every outcome, in the order `job_runs_total` lists them.
    pub const ALL: [Outcome; 4] = [
        Outcome::Success,
        Outcome::Failure,
        Outcome::Timeout,
        Outcome::Skipped,
    ];

    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Timeout => "timeout",
            Outcome::Skipped => "skipped",
        }
    }

    /// The exit code recorded when none was set: 0 for success, else 1.
    pub fn default_exit_code(self) -> i32 {
        match self {
            Outcome::Success => 0,
            _ => 1,
        }
    }
}

/// Configuration of a job run; [`start`](Self::start) begins it.
///
/// | setting | default |
/// |---|---|
/// | gateway | from the environment ([`GatewayBuilder::from_env`]), else `http://127.0.0.1:9091` |
/// | [`method`](Self::method) | [`Method::Post`] (push-add) |
/// | [`label`](Self::label) | none: the grouping key is `{job="<name>"}` |
/// | [`registry`](Self::registry) | none besides the guard's own |
/// | [`state`](Self::state) | the state file at [`State::default_path`] (`PUSHGUARD_STATE`, else the XDG state dir) |
///
/// ```no_run
/// let guard = pushguard::JobRun::new("nightly_etl").label("env", "prod").start()?;
/// let rows = guard.int_counter("etl_rows_total", "Rows loaded.")?;
/// rows.inc_by(1200);
/// guard.finish(pushguard::Outcome::Success)?;
/// # Ok::<(), pushguard::PushError>(())
/// ```
#[derive(Debug)]
#[must_use = "a JobRun does nothing until `start()` or `run()`"]
pub struct JobRun {
    job: String,
    labels: Vec<(String, String)>,
    gateway: Option<Gateway>,
    builder: Option<Result<GatewayBuilder, PushError>>,
    method: Method,
    registries: Vec<prometheus::Registry>,
    expected_interval: Option<Duration>,
    #[cfg(feature = "state")]
    state: StateChoice,
    #[cfg(feature = "otel")]
    tracing: Option<Option<Tracing>>,
}

#[cfg(feature = "state")]
#[derive(Debug)]
enum StateChoice {
    Default,
    Off,
    /// A state file was wanted but could not be opened; why.
    Unusable(String),
    Path(std::path::PathBuf),
    Handle(State),
    Opener(Opener),
}

/// How a run opens its state: called on a thread of its own when the run
/// starts (see [`JobRun::state_opener`]).
#[cfg(feature = "state")]
struct Opener(Box<dyn FnOnce() -> Result<State, crate::StateError> + Send>);

#[cfg(feature = "state")]
impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Opener(..)")
    }
}

#[cfg(feature = "state")]
impl Opener {
    /// Starts opening on its own thread. The statements a run's spool and
    /// delivery use are compiled there too, so the run's end finds them
    /// ready.
    fn spawn(self) -> Opening {
        let open = move || {
            let state = (self.0)()?;
            state.prepare_run_statements();
            Ok(state)
        };
        match std::thread::Builder::new()
            .name("pushguard-state".into())
            .spawn(open)
        {
            Ok(handle) => Opening::Thread(handle),
            Err(error) => {
                Opening::Failed(format!("cannot start a thread to open the state: {error}"))
            }
        }
    }
}

/// A state being opened while the run goes on.
#[cfg(feature = "state")]
#[derive(Debug)]
enum Opening {
    Thread(std::thread::JoinHandle<Result<State, crate::StateError>>),
    Failed(String),
}

#[cfg(feature = "state")]
impl Opening {
    /// Waits for the open: the state, or why it cannot be used.
    fn wait(self) -> Result<State, String> {
        match self {
            Opening::Thread(handle) => match handle.join() {
                Ok(result) => result.map_err(|problem| problem.to_string()),
                Err(_) => Err("opening the state file panicked".to_owned()),
            },
            Opening::Failed(problem) => Err(problem),
        }
    }
}

impl JobRun {
    /// A run of the job `job`.
    pub fn new(job: impl Into<String>) -> Self {
        JobRun {
            job: job.into(),
            labels: Vec::new(),
            gateway: None,
            builder: None,
            method: Method::Post,
            registries: Vec::new(),
            expected_interval: None,
            #[cfg(feature = "state")]
            state: StateChoice::Default,
            #[cfg(feature = "otel")]
            tracing: None,
        }
    }

    /// A run of the group `key`: its job name and labels, already validated
    /// (the command line and the runner build the key once and start every
    /// run from it).
    ///
    /// ```
    /// let key = pushguard::GroupingKey::new("backup")?.label("host", "db1")?;
    /// let run = pushguard::JobRun::for_key(&key);
    /// # drop(run);
    /// # Ok::<(), pushguard::PushError>(())
    /// ```
    pub fn for_key(key: &GroupingKey) -> Self {
        let mut run = JobRun::new(key.job());
        run.labels = key
            .labels()
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        run
    }

    /// Traces the run with `tracing` (default: [`Tracing::global`], from the
    /// `OTEL_*` environment; off when no endpoint is set).
    #[cfg(feature = "otel")]
    pub fn tracing(mut self, tracing: Tracing) -> Self {
        self.tracing = Some(Some(tracing));
        self
    }

    /// Does not trace the run, whatever the environment says.
    #[cfg(feature = "otel")]
    pub fn without_tracing(mut self) -> Self {
        self.tracing = Some(None);
        self
    }

    /// Uses an open state file (outbox, history, cumulative counters).
    #[cfg(feature = "state")]
    pub fn state(mut self, state: State) -> Self {
        self.state = StateChoice::Handle(state);
        self
    }

    /// Uses the state file at `path`, opened when the run starts, on a
    /// thread of its own: the work does not wait for the file (a file
    /// another process holds locked, a slow disk); the run's end does. When it
    /// cannot be opened the run still goes on and is pushed directly, without
    /// the totals, like [`state_unusable`](Self::state_unusable), and
    /// [`PushReport::state_warning`](crate::PushReport::state_warning) says
    /// why.
    #[cfg(feature = "state")]
    pub fn state_path(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.state = StateChoice::Path(path.into());
        self
    }

    /// Uses the state that `open` returns, called on a thread of its own when
    /// the run starts, so the work does not wait for it; the run's end waits
    /// for `open` to return. An error is handled like a state file that
    /// cannot be opened ([`state_path`](Self::state_path)): the run is pushed
    /// directly, without the totals, and
    /// [`PushReport::state_warning`](crate::PushReport::state_warning) says
    /// why. `pushguard exec` opens its state this way, with the push deadline
    /// as the longest wait for a locked file.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let guard = pushguard::JobRun::new("nightly_etl")
    ///     .state_opener(|| pushguard::State::open_within("/var/lib/etl/state.db", Duration::from_secs(2)))
    ///     .start()?;
    /// guard.finish(pushguard::Outcome::Success)?;
    /// # Ok::<(), pushguard::PushError>(())
    /// ```
    #[cfg(feature = "state")]
    pub fn state_opener(
        mut self,
        open: impl FnOnce() -> Result<State, crate::StateError> + Send + 'static,
    ) -> Self {
        self.state = StateChoice::Opener(Opener(Box::new(open)));
        self
    }

    /// Pushes directly, without a state file: an undelivered push is lost and
    /// `job_runs_total` counts only this process's runs. For a state file
    /// that was wanted but failed, use [`state_unusable`](Self::state_unusable).
    #[cfg(feature = "state")]
    pub fn without_state(mut self) -> Self {
        self.state = StateChoice::Off;
        self
    }

    /// Pushes directly because the state file that should be used could
    /// not be opened (`problem`, say the [`StateError`](crate::StateError)
    /// of [`State::open`]): unlike [`without_state`](Self::without_state),
    /// the cumulative totals are then unknown, not this process's, so
    /// `job_runs_total`, `job_missed_runs_total` and the
    /// [cumulative counters](JobGuard::cumulative_counter) are left out of
    /// the push (POST keeps the gateway's values; they never go backwards)
    /// and [`PushReport::state_warning`] says so. What the default state
    /// file does when it cannot be opened.
    #[cfg(feature = "state")]
    pub fn state_unusable(mut self, problem: impl std::fmt::Display) -> Self {
        self.state = StateChoice::Unusable(problem.to_string());
        self
    }

    /// Adds a grouping label (part of the group's address on the gateway).
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((name.into(), value.into()));
        self
    }

    /// Uses an existing client (shares its connections).
    pub fn gateway(mut self, gateway: Gateway) -> Self {
        self.gateway = Some(gateway);
        self
    }

    /// Pushes to `url` (other settings from the environment).
    pub fn gateway_url(self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.with_builder(|b| b.url(url))
    }

    /// Overall deadline of the final push.
    pub fn deadline(self, deadline: Duration) -> Self {
        self.with_builder(|b| b.deadline(deadline))
    }

    /// HTTP basic auth for the gateway.
    pub fn basic_auth(self, username: impl Into<String>, password: impl Into<String>) -> Self {
        let (u, p) = (username.into(), password.into());
        self.with_builder(|b| b.basic_auth(u, p))
    }

    /// Bearer token for the gateway.
    pub fn bearer_token(self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.with_builder(|b| b.bearer_token(token))
    }

    /// [`Method::Put`] replaces the whole group; the default POST keeps
    /// families this push does not carry (such as the last success time).
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// Also pushes every family of `registry`, as it is.
    pub fn registry(mut self, registry: prometheus::Registry) -> Self {
        self.registries.push(registry);
        self
    }

    /// Declares how often the job is meant to run, pushed as
    /// `job_expected_interval_seconds`; see
    /// [`JobGuard::set_expected_interval`].
    pub fn expected_interval(mut self, interval: Duration) -> Self {
        self.expected_interval = Some(interval);
        self
    }

    /// The job name this run was configured with.
    pub(crate) fn job_name(&self) -> &str {
        &self.job
    }

    /// Starts the run whatever its configuration: a configuration error is
    /// kept in the guard and returned by `finish`, the work goes on.
    pub(crate) fn begin(self) -> JobGuard {
        let interval = self.expected_interval;
        let mut guard = JobGuard::new(self.target());
        guard.expected_interval = interval;
        guard
    }

    fn with_builder(mut self, f: impl FnOnce(GatewayBuilder) -> GatewayBuilder) -> Self {
        let builder = self.builder.take().unwrap_or_else(GatewayBuilder::from_env);
        self.builder = Some(builder.map(f));
        self
    }

    fn target(self) -> Result<Target, PushError> {
        let mut key = GroupingKey::new(self.job)?;
        for (name, value) in self.labels {
            key = key.label(name, value)?;
        }
        let gateway = match (self.gateway, self.builder) {
            (Some(gateway), _) => gateway,
            (None, Some(builder)) => builder?.build()?,
            (None, None) => GatewayBuilder::from_env()?.build()?,
        };
        #[cfg(feature = "state")]
        let mut state_warning = None;
        // The default file is a convenience and, like a file named by path,
        // one policy with `exec` and the runner: a state file that cannot be
        // used is monitoring's problem, not the job's. The run is pushed
        // directly without the totals, and the report says why. Either is
        // opened while the run goes on.
        #[cfg(feature = "state")]
        let (state, opener) = match self.state {
            StateChoice::Default => (None, Some(Opener(Box::new(State::open_default)))),
            StateChoice::Off => (None, None),
            StateChoice::Unusable(problem) => {
                state_warning = Some(problem);
                (None, None)
            }
            StateChoice::Path(path) => (None, Some(Opener(Box::new(move || State::open(path))))),
            StateChoice::Opener(opener) => (None, Some(opener)),
            StateChoice::Handle(state) => (Some(state), None),
        };
        #[cfg(feature = "state")]
        let opening = opener.map(Opener::spawn);
        // One policy with `exec` and the runner: a broken OTEL_* environment
        // is monitoring's problem, not the job's. The run goes on without a
        // span and the report says why.
        #[cfg(feature = "otel")]
        let (tracing, tracing_warning) = match self.tracing {
            Some(choice) => (choice, None),
            None => match Tracing::global() {
                Ok(tracing) => (tracing, None),
                Err(problem) => (None, Some(problem.to_string())),
            },
        };
        Ok(Target {
            key,
            gateway,
            method: self.method,
            registries: self.registries,
            #[cfg(feature = "state")]
            state,
            #[cfg(feature = "state")]
            state_warning,
            #[cfg(feature = "state")]
            opening,
            #[cfg(feature = "otel")]
            tracing,
            #[cfg(feature = "otel")]
            tracing_warning,
        })
    }

    /// Checks the configuration and starts the run.
    pub fn start(self) -> Result<JobGuard, PushError> {
        let interval = self.expected_interval;
        let mut guard = JobGuard::new(Ok(self.target()?));
        guard.expected_interval = interval;
        Ok(guard)
    }

    /// Runs `work` inside a guard: `Ok` is a success, `Err` a failure, a panic
    /// a failure that is pushed and then resumed. A configuration error does
    /// not stop the work: it is returned in [`Finished::push`].
    pub fn run<T, E, F>(self, work: F) -> Finished<T, E>
    where
        E: std::fmt::Display,
        F: FnOnce(&mut JobGuard) -> Result<T, E>,
    {
        let mut guard = self.begin();
        match catch_unwind(AssertUnwindSafe(|| work(&mut guard))) {
            Ok(result) => {
                let outcome = match &result {
                    Ok(_) => Outcome::Success,
                    Err(error) => {
                        guard.set_error(error.to_string());
                        Outcome::Failure
                    }
                };
                let push = guard.finish(outcome);
                Finished { result, push }
            }
            Err(panic) => {
                guard.set_error(panic_message(panic.as_ref()));
                let _ = guard.finish(Outcome::Failure);
                resume_unwind(panic)
            }
        }
    }
}

/// Runs `work` as the job `job` with the settings from the environment; see
/// [`JobRun::run`].
///
/// ```no_run
/// let finished = pushguard::run("cleanup", |job| {
///     job.gauge("cleanup_files_removed", "Files removed.")?.set(42.0);
///     Ok::<_, Box<dyn std::error::Error>>(())
/// });
/// if let Err(e) = finished.push { eprintln!("warning: {e}"); }
/// ```
pub fn run<T, E, F>(job: &str, work: F) -> Finished<T, E>
where
    E: std::fmt::Display,
    F: FnOnce(&mut JobGuard) -> Result<T, E>,
{
    JobRun::new(job).run(work)
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown payload".to_owned());
    format!("panic: {text}")
}

/// The result of [`run`]: the work's own result and the push's.
#[derive(Debug)]
#[must_use = "the work's result is inside"]
pub struct Finished<T, E> {
    /// What the work returned.
    pub result: Result<T, E>,
    /// What became of the run's metrics, as [`JobGuard::finish`] returns it:
    /// `Ok` when delivered or kept in the outbox for later
    /// ([`PushReport::spooled`]), `Err` for what must be fixed.
    pub push: Result<PushReport, PushError>,
}

#[derive(Debug)]
struct Target {
    key: GroupingKey,
    gateway: Gateway,
    method: Method,
    registries: Vec<prometheus::Registry>,
    #[cfg(feature = "state")]
    state: Option<State>,
    /// Why the default state file is not used, for the report.
    #[cfg(feature = "state")]
    state_warning: Option<String>,
    /// The state being opened while the run goes on; it becomes `state` or
    /// `state_warning` when the run ends.
    #[cfg(feature = "state")]
    opening: Option<Opening>,
    #[cfg(feature = "otel")]
    tracing: Option<Tracing>,
    /// Why the OTLP environment could not be used, for the report.
    #[cfg(feature = "otel")]
    tracing_warning: Option<String>,
}

#[cfg(feature = "state")]
impl Target {
    /// The target with its state opened, or why it could not be: waits for
    /// a state still being opened.
    fn opened(mut self) -> Self {
        if let Some(opening) = self.opening.take() {
            match opening.wait() {
                Ok(state) => self.state = Some(state),
                Err(problem) => self.state_warning = Some(problem),
            }
        }
        self
    }
}

/// A running job. Push its metrics with [`finish`](Self::finish); dropping it
/// unfinished pushes a failure.
#[derive(Debug)]
#[must_use = "dropping the guard at once ends the run as a failure; call `finish`"]
pub struct JobGuard {
    target: Result<Target, Option<PushError>>,
    registry: prometheus::Registry,
    started_at: SystemTime,
    started: Instant,
    exit_code: Option<i32>,
    finished: bool,
    cumulative: std::sync::Mutex<Vec<(String, String, prometheus::Counter)>>,
    error: Option<String>,
    signal: Option<i32>,
    attempt: Option<u32>,
    scheduled: Option<SystemTime>,
    expected_interval: Option<Duration>,
    output: Option<String>,
    missed: Vec<(&'static str, u64)>,
    #[cfg(feature = "state")]
    fire: Option<crate::fleet::Fire>,
    #[cfg(feature = "otel")]
    span: Option<crate::trace::RunSpan>,
}

impl JobGuard {
    fn new(target: Result<Target, PushError>) -> Self {
        let started_at = SystemTime::now();
        #[cfg(feature = "otel")]
        let span = match &target {
            Ok(Target {
                tracing: Some(tracing),
                key,
                ..
            }) => {
                let mut attributes = vec![KeyValue::new("job.name", key.job().to_owned())];
                for (name, value) in key.labels() {
                    attributes.push(KeyValue::new(format!("job.label.{name}"), value.clone()));
                }
                // A run started inside another is its child; else the
                // process's inherited context (TRACEPARENT) is the parent.
                let parent =
                    crate::current::parent_context().unwrap_or_else(crate::trace::context_from_env);
                Some(crate::trace::RunSpan::start(
                    tracing,
                    key.job(),
                    started_at,
                    attributes,
                    &parent,
                ))
            }
            _ => None,
        };
        JobGuard {
            target: target.map_err(Some),
            registry: prometheus::Registry::new(),
            started_at,
            started: Instant::now(),
            exit_code: None,
            finished: false,
            cumulative: std::sync::Mutex::new(Vec::new()),
            error: None,
            signal: None,
            attempt: None,
            scheduled: None,
            expected_interval: None,
            output: None,
            missed: Vec::new(),
            #[cfg(feature = "state")]
            fire: None,
            #[cfg(feature = "otel")]
            span,
        }
    }

    /// Records why the run failed; it becomes the span's error status.
    pub fn set_error(&mut self, message: impl Into<String>) {
        self.error = Some(message.into());
    }

    /// Records the signal that killed the run's process (span attribute
    /// `job.signal`).
    pub fn set_signal(&mut self, signal: i32) {
        self.signal = Some(signal);
    }

    /// Records the attempt number of a retried run (span attribute `job.attempt`).
    pub fn set_attempt(&mut self, attempt: u32) {
        self.attempt = Some(attempt);
    }

    /// Adds scheduled runs that did not happen to the cumulative
    /// `job_missed_runs_total{reason}` pushed with this run; `reason` is
    /// `"overlap"`, `"downtime"` or `"runner_lost"` (see
    /// [`MISSED_REASONS`](crate::catalog::MISSED_REASONS)).
    pub fn add_missed_runs(&mut self, reason: &str, count: u64) -> Result<(), PushError> {
        match contract::MISSED_REASONS.iter().find(|r| **r == reason) {
            Some(reason) => {
                self.missed.push((reason, count));
                Ok(())
            }
            None => Err(PushError::body(format!(
                "unknown missed-run reason {reason:?}: use \"overlap\" or \"downtime\""
            ))),
        }
    }

    /// Keeps `output` (say, the last lines a command printed) with the run in
    /// the state file's history.
    pub fn set_output(&mut self, output: impl Into<String>) {
        self.output = Some(output.into());
    }

    /// Declares how often the job is meant to run: pushed as
    /// `job_expected_interval_seconds`, which staleness alerts compare the
    /// last success against (the runner sets it from the schedule).
    pub fn set_expected_interval(&mut self, interval: Duration) {
        self.expected_interval = Some(interval);
    }

    /// Ties the run to a fire claimed on a shared schedule
    /// ([`State::claim`](crate::State::claim)): the transaction that records
    /// the run closes the fire, so a recorded run is never taken over and
    /// run again by another runner.
    #[cfg(feature = "state")]
    pub fn set_fire(&mut self, fire: crate::fleet::Fire) {
        self.fire = Some(fire);
    }

    /// Records when the run was scheduled to start (span attributes
    /// `job.scheduled_start` and `job.schedule_lag_seconds`).
    pub fn set_scheduled_start(&mut self, at: SystemTime) {
        self.scheduled = Some(at);
    }

    /// The OpenTelemetry context of the run's span (empty when tracing is
    /// off). Attach it, or pass it as parent, to make child spans:
    ///
    /// ```no_run
    /// use opentelemetry::trace::{Tracer as _, TraceContextExt as _};
    /// let guard = pushguard::JobRun::new("etl").start()?;
    /// let tracer = opentelemetry::global::tracer("etl");
    /// let step = tracer.start_with_context("load", &guard.context());
    /// drop(step); // ends the child span
    /// guard.finish(pushguard::Outcome::Success)?;
    /// # Ok::<(), pushguard::PushError>(())
    /// ```
    #[cfg(feature = "otel")]
    pub fn context(&self) -> opentelemetry::Context {
        self.span
            .as_ref()
            .map_or_else(opentelemetry::Context::new, |span| span.context().clone())
    }

    /// The run's trace id (32 hex digits) when it is traced.
    #[cfg(feature = "otel")]
    pub fn trace_id(&self) -> Option<String> {
        self.span.as_ref().map(crate::trace::RunSpan::trace_id)
    }

    /// `TRACEPARENT` (and `TRACESTATE`, `BAGGAGE` when set) for a child
    /// process, so that it joins the run's trace. Empty when not traced.
    #[cfg(feature = "otel")]
    pub fn child_env(&self) -> Vec<(String, String)> {
        match &self.span {
            Some(span) => crate::trace::env_for_child(span.context()),
            None => Vec::new(),
        }
    }

    /// The run's own registry: everything registered here is pushed with it.
    pub fn registry(&self) -> &prometheus::Registry {
        &self.registry
    }

    /// The grouping key, when the configuration was valid.
    pub fn grouping_key(&self) -> Option<&GroupingKey> {
        self.target.as_ref().ok().map(|t| &t.key)
    }

    /// When the run started.
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }

    /// Records the exit code pushed as `job_last_exit_code` (default: 0 for
    /// success, 1 otherwise).
    pub fn set_exit_code(&mut self, code: i32) {
        self.exit_code = Some(code);
    }

    /// Registers and returns a counter pushed with the run.
    pub fn counter(&self, name: &str, help: &str) -> Result<prometheus::Counter, PushError> {
        self.register(prometheus::Counter::new(name, help))
    }

    /// Registers and returns an integer counter pushed with the run.
    pub fn int_counter(&self, name: &str, help: &str) -> Result<prometheus::IntCounter, PushError> {
        self.register(prometheus::IntCounter::new(name, help))
    }

    /// Registers and returns a gauge pushed with the run.
    pub fn gauge(&self, name: &str, help: &str) -> Result<prometheus::Gauge, PushError> {
        self.register(prometheus::Gauge::new(name, help))
    }

    /// Registers and returns a histogram with `buckets` (upper bounds).
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        buckets: Vec<f64>,
    ) -> Result<prometheus::Histogram, PushError> {
        self.register(prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new(name, help).buckets(buckets),
        ))
    }

    /// Registers and returns a counter whose value is *added* to its total
    /// of earlier runs of this group; the total is pushed. The total lives in
    /// the state file (with [`without_state`](JobRun::without_state), in this
    /// process's memory).
    ///
    /// ```no_run
    /// let guard = pushguard::JobRun::new("import").start()?;
    /// guard.cumulative_counter("import_rows_total", "Rows imported, all runs.")?.inc_by(250.0);
    /// guard.finish(pushguard::Outcome::Success)?; // pushes 250 + the previous total
    /// # Ok::<(), pushguard::PushError>(())
    /// ```
    pub fn cumulative_counter(
        &self,
        name: &str,
        help: &str,
    ) -> Result<prometheus::Counter, PushError> {
        crate::grouping::validate_metric_name(name)?;
        let mut cumulative = self.cumulative.lock().unwrap_or_else(|p| p.into_inner());
        let taken = CONTRACT_FAMILIES.contains(&name)
            || cumulative.iter().any(|(n, _, _)| n == name)
            || self.registry.gather().iter().any(|f| f.name() == name);
        if taken {
            return Err(PushError::body(format!(
                "family {name:?} is already registered on this run"
            )));
        }
        let counter =
            prometheus::Counter::new(name, help).map_err(|e| PushError::body(e.to_string()))?;
        cumulative.push((name.to_owned(), help.to_owned(), counter.clone()));
        Ok(counter)
    }

    fn register<M>(&self, metric: prometheus::Result<M>) -> Result<M, PushError>
    where
        M: prometheus::core::Collector + Clone + 'static,
    {
        let metric = metric.map_err(|e| PushError::body(e.to_string()))?;
        if let Some(desc) = metric.desc().first() {
            crate::grouping::validate_metric_name(&desc.fq_name)?;
            if CONTRACT_FAMILIES.contains(&desc.fq_name.as_str()) {
                return Err(PushError::body(format!(
                    "family {:?} is one of pushguard's own and is set by the guard",
                    desc.fq_name
                )));
            }
        }
        self.registry
            .register(Box::new(metric.clone()))
            .map_err(|e| PushError::body(e.to_string()))?;
        Ok(metric)
    }

    /// Ends the run with `outcome` and pushes its metrics.
    ///
    /// `Ok` means the run's result is taken care of; `Err` means something
    /// you must fix, or a result that is lost. Monitoring being down is not
    /// the job's failure: `guard.finish(outcome)?` fails a job only for the
    /// second kind.
    ///
    /// | result | meaning | what to do |
    /// |---|---|---|
    /// | `Ok(report)`, [`report.spooled`](PushReport::spooled) `None` | delivered (with any older spooled pushes of the group first, [`report.replayed`](PushReport::replayed)) | nothing |
    /// | `Ok(report)`, `report.spooled` `Some(reason)` | the gateway is down, hanging past the deadline or answering 5xx/429: the push is kept in the state file's outbox (entry [`report.outbox_entry`](PushReport::outbox_entry)) and the next run, [`State::flush`], `pushguard outbox --flush` or the runner delivers it, in order | nothing (log `reason`); [`PushReport::into_delivered`] makes it an error if you need delivery now |
    /// | `Ok(report)`, [`report.state_warning`](PushReport::state_warning) `Some(_)` | the state file could not be used; the push went directly, without the cumulative totals it holds (`job_runs_total`, `job_missed_runs_total`, [cumulative counters](Self::cumulative_counter)), so POST keeps the gateway's previous values; the [`State`] handle keeps the run's record and writes it (history row `direct`, totals) with its next write that succeeds | fix the state file |
    /// | `Err(`[`PushError::Rejected`]`)` | the gateway refused the push (4xx, such as a family with another type in another group); with a state file it is kept as a dead letter, never retried | fix the metrics |
    /// | `Err(InvalidMetricName \| InvalidLabelName \| InvalidJobName \| InvalidBody \| Config)` | invalid metrics, grouping labels or configuration; nothing was sent | fix the code or configuration |
    /// | `Err(State(_))` | not returned by a run's end: a state file that cannot be opened ([`JobRun::state_path`], [`JobRun::state_opener`], the default one) or written makes a direct push with `report.state_warning` set, as above | |
    /// | `Err(Transport \| Timeout)` or a 5xx `Rejected` | no state file ([`JobRun::without_state`], or one that failed): the gateway could not be reached and nothing kept the push | the result is lost; use a state file |
    pub fn finish(mut self, outcome: Outcome) -> Result<PushReport, PushError> {
        self.push_end(outcome)
    }

    /// Ends the run with `outcome` and pushes its metrics from a tokio
    /// runtime without blocking it (the state file work runs on the blocking
    /// pool). Its result means what [`finish`](Self::finish)'s table says.
    #[cfg(feature = "async")]
    pub async fn finish_async(mut self, outcome: Outcome) -> Result<PushReport, PushError> {
        #[cfg(feature = "otel")]
        let blocking = self.span.is_some();
        #[cfg(not(feature = "otel"))]
        let blocking = false;
        #[cfg(feature = "state")]
        let blocking = blocking
            || matches!(&self.target,
                Ok(target) if target.state.is_some() || target.state_warning.is_some()
                    || target.opening.is_some());
        if blocking {
            self.finished = true;
            let handle = tokio::task::spawn_blocking(move || {
                let mut guard = self;
                guard.push_end(outcome)
            });
            return handle
                .await
                .map_err(|e| PushError::config(format!("the push task failed: {e}")))?;
        }
        self.finished = true;
        let (target, end) = self.take(outcome)?;
        let body = self.encode(&target, &end, &contract::Totals::Memory)?;
        target
            .gateway
            .push_async(&target.key, target.method, &body)
            .await
    }

    fn push_end(&mut self, outcome: Outcome) -> Result<PushReport, PushError> {
        self.finished = true;
        // A remote-write refresh must not go out between this run's end
        // stamp and its request reaching the outbox.
        #[cfg(feature = "remote-write")]
        let writer = self.target.as_ref().ok().map(|t| t.gateway.clone());
        #[cfg(feature = "remote-write")]
        let _ending = writer.as_ref().and_then(Gateway::run_ending);
        let (target, end) = self.take(outcome)?;
        let result = self.deliver(&target, &end);
        #[cfg(feature = "otel")]
        let result = result.map(|mut report| {
            report.tracing_warning.clone_from(&target.tracing_warning);
            report
        });
        #[cfg(feature = "otel")]
        if let Some(span) = self.span.take() {
            self.end_span(span, &end, &result);
        }
        result
    }

    #[cfg(feature = "otel")]
    fn end_span(
        &self,
        span: crate::trace::RunSpan,
        end: &contract::RunEnd,
        result: &Result<PushReport, PushError>,
    ) {
        let mut attributes = vec![
            KeyValue::new("job.outcome", end.outcome.as_str()),
            KeyValue::new("process.exit.code", i64::from(end.exit_code)),
            KeyValue::new("job.duration_seconds", end.duration.as_secs_f64()),
            KeyValue::new(
                "job.push",
                match result {
                    Ok(report) if report.spooled.is_some() => "spooled",
                    Ok(_) => "delivered",
                    Err(PushError::Rejected { .. }) => "rejected",
                    Err(_) => "failed",
                },
            ),
        ];
        if let Some(signal) = self.signal {
            attributes.push(KeyValue::new("job.signal", i64::from(signal)));
        }
        if let Some(attempt) = self.attempt {
            attributes.push(KeyValue::new("job.attempt", i64::from(attempt)));
        }
        if let Some(scheduled) = self.scheduled {
            let at = contract::unix(scheduled);
            attributes.push(KeyValue::new("job.scheduled_start", at));
            attributes.push(KeyValue::new(
                "job.schedule_lag_seconds",
                contract::unix(end.started_at) - at,
            ));
        }
        let error = match end.outcome {
            Outcome::Success => None,
            outcome => Some(
                self.error
                    .clone()
                    .unwrap_or_else(|| match (outcome, self.signal) {
                        (Outcome::Timeout, _) => "the run timed out".to_owned(),
                        (_, Some(signal)) => format!("killed by signal {signal}"),
                        _ => format!("the run failed with exit code {}", end.exit_code),
                    }),
            ),
        };
        span.end(attributes, error, end.ended_at);
    }

    fn deliver(&self, target: &Target, end: &contract::RunEnd) -> Result<PushReport, PushError> {
        #[cfg(feature = "state")]
        if let Some(state) = &target.state {
            match self.spool(state, target, end) {
                Err(PushError::State(problem)) => {
                    // The state file failed: push directly rather than not at
                    // all, without the totals it holds. The handle keeps the
                    // run's record and writes it with its next write that
                    // succeeds (a long-lived process's next run, flush…).
                    state.defer(self.deferred_record(target, end));
                    return self.push_without_totals(target, end, &problem);
                }
                other => return other,
            }
        }
        #[cfg(feature = "state")]
        if let Some(problem) = &target.state_warning {
            return self.push_without_totals(target, end, problem);
        }
        let body = self.encode(target, end, &contract::Totals::Memory)?;
        target
            .gateway
            .push_at(&target.key, target.method, &body, end.ended_at)
    }

    /// Pushes the run directly when the state file that holds its cumulative
    /// totals cannot be used: the totals are unknown, so the cumulative
    /// families are left out (POST keeps the gateway's previous values)
    /// rather than restarted from zero, and the report's warning says so.
    #[cfg(feature = "state")]
    fn push_without_totals(
        &self,
        target: &Target,
        end: &contract::RunEnd,
        problem: &dyn std::fmt::Display,
    ) -> Result<PushReport, PushError> {
        let body = self.encode(target, end, &contract::Totals::Unknown)?;
        let mut report = target
            .gateway
            .push_at(&target.key, target.method, &body, end.ended_at)?;
        let mut left_out = vec!["job_runs_total".to_owned()];
        if !self.missed.is_empty() {
            left_out.push("job_missed_runs_total".to_owned());
        }
        let cumulative = self.cumulative.lock().unwrap_or_else(|p| p.into_inner());
        left_out.extend(cumulative.iter().map(|(name, _, _)| name.clone()));
        report.state_warning = Some(format!(
            "{problem}; {} left out of this push: the totals are kept in the state file, \
             and the gateway keeps the previous values rather than restarting them from zero",
            left_out.join(", ")
        ));
        Ok(report)
    }

    /// Writes the run, its counters and its push to the state file in one
    /// transaction, then delivers the group's outbox in order.
    #[cfg(feature = "state")]
    fn spool(
        &self,
        state: &State,
        target: &Target,
        end: &contract::RunEnd,
    ) -> Result<PushReport, PushError> {
        let owner = crate::outbox::owner();
        let path = target.key.path();
        // The outbox queues per gateway identity, not per URL spelling.
        let url = target.gateway.identity();
        let claimed = std::time::Instant::now();
        // Bounded by the push deadline, not SQLite's busy timeout: a file
        // another process holds locked makes this a direct push instead.
        let (entry, claim) =
            state.write_within::<_, PushError>(target.gateway.deadline(), |tx| {
                let body = self.encode(target, end, &contract::Totals::State(tx))?;
                // The text for a gateway, the request for a remote-write
                // receiver (stamped with the run's end).
                let (stored, body) =
                    target
                        .gateway
                        .stored(&target.key, target.method, &body, end.ended_at)?;
                let run_id = insert_run(
                    tx,
                    &target.key,
                    end,
                    self.trace_id_text(),
                    self.output.clone(),
                    "spooled",
                    self.fire.as_ref(),
                )?;
                let entry = tx.spool(&crate::state::NewEntry {
                    gateway: target.gateway.url(),
                    gateway_id: url,
                    path: &path,
                    method: stored,
                    body: &body,
                    content_type: stored.content_type(),
                    run_id: Some(run_id),
                })?;
                // The group's delivery, claimed in the same transaction.
                let claim = crate::outbox::claim(tx, &target.gateway, &path, &owner, claimed)?;
                Ok((entry, claim))
            })?;
        crate::outbox::deliver(&target.gateway, state, &path, entry, &owner, claim)
    }

    /// The run's record for a state that could not take it now: its
    /// totals and its history row (push status `direct`), written later by
    /// [`State::defer`](crate::State) in one transaction.
    #[cfg(feature = "state")]
    fn deferred_record(&self, target: &Target, end: &contract::RunEnd) -> crate::state::Deferred {
        let key = target.key.clone();
        let end = end.clone();
        let missed = self.missed.clone();
        let cumulative = self.cumulative_values();
        let trace_id = self.trace_id_text();
        let output = self.output.clone();
        let fire = self.fire.clone();
        std::sync::Arc::new(move |tx: &crate::state::Tx<'_>| {
            let totals = contract::Totals::State(tx);
            encode_counted(&mut Body::new(), &key, &end, &missed, &cumulative, &totals).map_err(
                |error| match error {
                    PushError::State(error) => error,
                    other => crate::state::StateError::Deferred(other.to_string()),
                },
            )?;
            insert_run(
                tx,
                &key,
                &end,
                trace_id.clone(),
                output.clone(),
                "direct",
                fire.as_ref(),
            )
            .map(drop)
        })
    }

    #[cfg(all(feature = "state", feature = "otel"))]
    fn trace_id_text(&self) -> Option<String> {
        self.trace_id()
    }

    #[cfg(all(feature = "state", not(feature = "otel")))]
    fn trace_id_text(&self) -> Option<String> {
        None
    }

    /// Takes the target out of the guard and stamps the run's end; then
    /// waits for a state still being opened.
    fn take(&mut self, outcome: Outcome) -> Result<(Target, contract::RunEnd), PushError> {
        let target = match std::mem::replace(&mut self.target, Err(None)) {
            Ok(target) => target,
            Err(error) => {
                return Err(
                    error.unwrap_or_else(|| PushError::config("the run was already finished"))
                );
            }
        };
        let end = contract::RunEnd {
            started_at: self.started_at,
            ended_at: SystemTime::now(),
            duration: self.started.elapsed(),
            outcome,
            exit_code: self
                .exit_code
                .unwrap_or_else(|| outcome.default_exit_code()),
            expected_interval: self.expected_interval,
        };
        #[cfg(feature = "state")]
        let target = target.opened();
        Ok((target, end))
    }

    /// The cumulative counters' names, help and this run's values.
    fn cumulative_values(&self) -> Vec<(String, String, f64)> {
        let cumulative = self.cumulative.lock().unwrap_or_else(|p| p.into_inner());
        cumulative
            .iter()
            .map(|(name, help, counter)| (name.clone(), help.clone(), counter.get()))
            .collect()
    }

    /// Encodes the run's end: the contract families, then the user's.
    fn encode(
        &self,
        target: &Target,
        end: &contract::RunEnd,
        totals: &contract::Totals<'_>,
    ) -> Result<Body, PushError> {
        let mut body = Body::new();
        encode_counted(
            &mut body,
            &target.key,
            end,
            &self.missed,
            &self.cumulative_values(),
            totals,
        )?;
        body.add_registry(&self.registry)?;
        for registry in &target.registries {
            body.add_registry(registry)?;
        }
        body.check_grouping(&target.key)?;
        Ok(body)
    }
}

/// Encodes the contract families, the missed runs and the cumulative
/// counters of a run, adding to the totals they count.
fn encode_counted(
    body: &mut Body,
    key: &GroupingKey,
    end: &contract::RunEnd,
    missed: &[(&'static str, u64)],
    cumulative: &[(String, String, f64)],
    totals: &contract::Totals<'_>,
) -> Result<(), PushError> {
    contract::encode(body, key, end, totals)?;
    if !missed.is_empty() {
        contract::encode_missed(body, key, missed, totals)?;
    }
    let grouping = key.path();
    for (name, help, value) in cumulative {
        if let Some(total) = totals.bump(&grouping, name, "", *value)? {
            body.sample(name, help, crate::body::MetricKind::Counter, total)?;
        }
    }
    Ok(())
}

/// Writes a run's history row (closing its fire on a shared schedule).
#[cfg(feature = "state")]
fn insert_run(
    tx: &crate::state::Tx<'_>,
    key: &GroupingKey,
    end: &contract::RunEnd,
    trace_id: Option<String>,
    output: Option<String>,
    push_status: &str,
    fire: Option<&crate::fleet::Fire>,
) -> Result<i64, crate::state::StateError> {
    let run_id = tx.insert_run(&crate::state::NewRun {
        job: key.job(),
        labels: key.labels(),
        start: contract::unix(end.started_at),
        end: contract::unix(end.ended_at),
        duration: end.duration.as_secs_f64(),
        outcome: end.outcome.as_str(),
        exit_code: end.exit_code,
        trace_id,
        output,
        push_status,
    })?;
    if let Some(fire) = fire {
        tx.end_fire(fire, end.outcome.as_str(), Some(run_id))?;
    }
    Ok(run_id)
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        if !self.finished {
            // A panic while unwinding and a forgotten finish are both failures;
            // the push is bounded by the gateway's deadline and errors are
            // dropped: there is no caller left to tell.
            if std::thread::panicking() && self.error.is_none() {
                self.error = Some("panic while the run was in progress".to_owned());
            }
            let _ = self.push_end(Outcome::Failure);
        }
    }
}
