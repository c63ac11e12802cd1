//! The run in progress, reachable from anywhere inside it.
//!
//! [`JobRun::instrument`] (and `#[pushguard::job]`, which expands to it) runs
//! a function as one guarded run without handing it the guard: the body
//! reaches its run with [`current`], which returns a cheap [`RunHandle`].
//! The run is kept in a tokio task-local: set for the duration of a
//! synchronous call (`sync_scope`, a thread-local underneath, so it works
//! with no runtime at all) or of every poll of an async body (`scope`, so it
//! follows the task from one worker thread to another). Scopes nest: the
//! innermost run is the current one, and a run started inside another is
//! traced as its child.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::PushError;
use crate::guard::{JobGuard, JobRun, Outcome, panic_message};
use crate::push::PushReport;

tokio::task_local! {
    static CURRENT: RunHandle;
}

/// The run in progress on this thread or task: inside a `#[pushguard::job]`
/// function (or [`JobRun::instrument`]) the handle of its run, elsewhere a
/// handle that belongs to no run, whose methods return
/// [`PushError::NotRunning`].
///
/// Inside an async job the handle follows the task across worker threads.
/// Threads and tasks the job starts do not inherit it: clone the handle and
/// move the clone into them.
///
/// ```no_run
/// #[pushguard::job(labels(team = "media"))]
/// fn nightly_etl() -> Result<(), pushguard::PushError> {
///     let rows = pushguard::current().int_counter("etl_rows_total", "Rows loaded.")?;
///     rows.inc_by(1200);
///     Ok(())
/// }
/// ```
pub fn current() -> RunHandle {
    CURRENT.try_with(RunHandle::clone).unwrap_or_default()
}

/// The span context of the current run, for a run started inside it.
#[cfg(feature = "otel")]
pub(crate) fn parent_context() -> Option<opentelemetry::Context> {
    use opentelemetry::trace::TraceContextExt as _;
    CURRENT
        .try_with(|run| run.run.as_ref().map(|run| run.context.clone()))
        .ok()
        .flatten()
        .filter(|context| context.span().span_context().is_valid())
}

/// A handle to a run in progress, from [`current`]: registers metrics pushed
/// with the run, sets its exit code, gives its trace context. Cheap to
/// clone, `Send` and `Sync`; every method fails with
/// [`PushError::NotRunning`] once the run has ended or when the handle
/// belongs to no run.
///
/// | method | like, on [`JobGuard`] |
/// |---|---|
/// | [`counter`](Self::counter), [`int_counter`](Self::int_counter), [`gauge`](Self::gauge), [`histogram`](Self::histogram), [`cumulative_counter`](Self::cumulative_counter) | the same names |
/// | [`registry`](Self::registry) | [`JobGuard::registry`], for any other collector |
/// | [`set_exit_code`](Self::set_exit_code) | [`JobGuard::set_exit_code`] |
/// | [`context`](Self::context), [`trace_id`](Self::trace_id), [`child_env`](Self::child_env) | the same names |
#[derive(Clone, Default)]
pub struct RunHandle {
    run: Option<Arc<Shared>>,
}

struct Shared {
    job: String,
    guard: Mutex<Option<JobGuard>>,
    #[cfg(feature = "otel")]
    context: opentelemetry::Context,
}

impl fmt::Debug for RunHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunHandle")
            .field("job", &self.job())
            .field("running", &self.is_running())
            .finish()
    }
}

impl RunHandle {
    fn begin(run: JobRun) -> RunHandle {
        let job = run.job_name().to_owned();
        let guard = run.begin();
        RunHandle {
            run: Some(Arc::new(Shared {
                job,
                #[cfg(feature = "otel")]
                context: guard.context(),
                guard: Mutex::new(Some(guard)),
            })),
        }
    }

    /// The job's name, when the handle belongs to a run (ended or not).
    pub fn job(&self) -> Option<&str> {
        self.run.as_ref().map(|run| run.job.as_str())
    }

    /// Whether the handle's run is in progress.
    pub fn is_running(&self) -> bool {
        self.run.as_ref().is_some_and(|run| {
            run.guard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some()
        })
    }

    fn with<T>(
        &self,
        work: impl FnOnce(&mut JobGuard) -> Result<T, PushError>,
    ) -> Result<T, PushError> {
        let Some(run) = &self.run else {
            return Err(PushError::NotRunning { job: None });
        };
        let mut guard = run.guard.lock().unwrap_or_else(PoisonError::into_inner);
        match guard.as_mut() {
            Some(guard) => work(guard),
            None => Err(PushError::NotRunning {
                job: Some(run.job.clone()),
            }),
        }
    }

    /// Registers and returns a counter pushed with the run.
    pub fn counter(&self, name: &str, help: &str) -> Result<prometheus::Counter, PushError> {
        self.with(|guard| guard.counter(name, help))
    }

    /// Registers and returns an integer counter pushed with the run.
    pub fn int_counter(&self, name: &str, help: &str) -> Result<prometheus::IntCounter, PushError> {
        self.with(|guard| guard.int_counter(name, help))
    }

    /// Registers and returns a gauge pushed with the run.
    pub fn gauge(&self, name: &str, help: &str) -> Result<prometheus::Gauge, PushError> {
        self.with(|guard| guard.gauge(name, help))
    }

    /// Registers and returns a histogram with `buckets` (upper bounds).
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        buckets: Vec<f64>,
    ) -> Result<prometheus::Histogram, PushError> {
        self.with(|guard| guard.histogram(name, help, buckets))
    }

    /// Registers and returns a counter added to its total of earlier runs;
    /// see [`JobGuard::cumulative_counter`].
    pub fn cumulative_counter(
        &self,
        name: &str,
        help: &str,
    ) -> Result<prometheus::Counter, PushError> {
        self.with(|guard| guard.cumulative_counter(name, help))
    }

    /// The run's own registry (a shared handle): every collector registered
    /// on it — vectors with labels, say — is pushed with the run.
    pub fn registry(&self) -> Result<prometheus::Registry, PushError> {
        self.with(|guard| Ok(guard.registry().clone()))
    }

    /// Records the exit code pushed as `job_last_exit_code` (default: 0 for
    /// success, 1 for an `Err` or a panic).
    pub fn set_exit_code(&self, code: i32) -> Result<(), PushError> {
        self.with(|guard| {
            guard.set_exit_code(code);
            Ok(())
        })
    }

    /// The OpenTelemetry context of the run's span, to start child spans
    /// with (empty when the run is not traced or the handle has no run).
    #[cfg(feature = "otel")]
    pub fn context(&self) -> opentelemetry::Context {
        self.run
            .as_ref()
            .map_or_else(opentelemetry::Context::new, |run| run.context.clone())
    }

    /// The run's trace id (32 hex digits) when it is traced.
    #[cfg(feature = "otel")]
    pub fn trace_id(&self) -> Option<String> {
        use opentelemetry::trace::TraceContextExt as _;
        let context = self.run.as_ref()?.context.span().span_context().clone();
        context.is_valid().then(|| context.trace_id().to_string())
    }

    /// `TRACEPARENT` (and `TRACESTATE`, `BAGGAGE` when set) for a child
    /// process, so that it joins the run's trace; empty when not traced.
    #[cfg(feature = "otel")]
    pub fn child_env(&self) -> Vec<(String, String)> {
        crate::trace::env_for_child(&self.context())
    }

    /// Takes the guard out to end the run; `None` when it already ended.
    fn take(&self) -> Option<JobGuard> {
        self.run.as_ref().and_then(|run| {
            run.guard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
        })
    }

    fn end(&self, failure: Option<String>) {
        if let Some(mut guard) = self.take() {
            let outcome = outcome(&mut guard, failure);
            self.report(guard.finish(outcome));
        }
    }

    #[cfg(feature = "async")]
    async fn end_async(&self, failure: Option<String>) {
        if let Some(mut guard) = self.take() {
            let outcome = outcome(&mut guard, failure);
            // Without a tokio runtime (another executor) the blocking push,
            // which works anywhere, ends the run.
            let result = if tokio::runtime::Handle::try_current().is_ok() {
                guard.finish_async(outcome).await
            } else {
                guard.finish(outcome)
            };
            self.report(result);
        }
    }

    /// The job's return value is the caller's: what became of the push can
    /// only be told on stderr, in the words of `pushguard exec`.
    fn report(&self, result: Result<PushReport, PushError>) {
        let job = self.job().unwrap_or_default();
        match result {
            Ok(report) => {
                if let Some(reason) = &report.spooled {
                    eprintln!(
                        "pushguard: warning: metrics of job {job:?} not delivered yet, kept in \
                         the outbox: {reason}"
                    );
                }
                if let Some(problem) = &report.state_warning {
                    eprintln!("pushguard: warning: job {job:?}: {problem}");
                }
                if let Some(problem) = &report.tracing_warning {
                    eprintln!("pushguard: warning: job {job:?}: {problem}; ran without tracing");
                }
            }
            Err(error) => {
                eprintln!("pushguard: warning: metrics of job {job:?} not pushed: {error}");
            }
        }
    }
}

fn outcome(guard: &mut JobGuard, failure: Option<String>) -> Outcome {
    match failure {
        Some(error) => {
            guard.set_error(error);
            Outcome::Failure
        }
        None => Outcome::Success,
    }
}

/// What a job function returns, and whether that is a success: `()` always
/// is; a `Result` is when `Ok`, and an `Err`'s `Display` text becomes the
/// run span's error. Implement it for a result type of your own.
///
/// ```
/// use pushguard::JobOutput;
/// assert_eq!(().failure(), None);
/// assert_eq!(Err::<(), _>("disk full").failure().as_deref(), Some("disk full"));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a job result: a #[pushguard::job] function returns `()` or `Result<T, E>` with `E: Display`",
    label = "the run's outcome is read from this type",
    note = "return `Result<T, E>` (Ok is a success, Err a failure) or `()`, or implement `pushguard::JobOutput` for `{Self}`"
)]
pub trait JobOutput {
    /// `None` for a success; for a failure, why, recorded as the span's
    /// error.
    fn failure(&self) -> Option<String>;
}

impl JobOutput for () {
    fn failure(&self) -> Option<String> {
        None
    }
}

impl<T, E: fmt::Display> JobOutput for Result<T, E> {
    fn failure(&self) -> Option<String> {
        self.as_ref().err().map(ToString::to_string)
    }
}

impl JobRun {
    /// Runs `work` as one guarded run and returns what it returns, unchanged
    /// — what `#[pushguard::job]` expands to. `Ok` or `()` is a success,
    /// `Err` a failure with its `Display` as the span's error; a panic is
    /// pushed as a failure and then resumed. Inside, [`current`] is the run.
    ///
    /// The result of the push cannot be returned: a push that fails or is
    /// kept in the outbox is reported on stderr (`pushguard: warning: …`).
    /// Use [`run`](Self::run) or [`start`](Self::start) to handle it in code.
    ///
    /// ```no_run
    /// let rows = pushguard::JobRun::new("nightly_etl").label("env", "prod").instrument(|| {
    ///     pushguard::current().int_counter("etl_rows_total", "Rows loaded.")?.inc_by(1200);
    ///     Ok::<_, pushguard::PushError>(1200)
    /// })?;
    /// # Ok::<(), pushguard::PushError>(())
    /// ```
    pub fn instrument<R: JobOutput>(self, work: impl FnOnce() -> R) -> R {
        let run = RunHandle::begin(self);
        match catch_unwind(AssertUnwindSafe(|| CURRENT.sync_scope(run.clone(), work))) {
            Ok(value) => {
                run.end(value.failure());
                value
            }
            Err(panic) => {
                run.end(Some(panic_message(panic.as_ref())));
                resume_unwind(panic)
            }
        }
    }

    /// [`instrument`](Self::instrument) for an async body: awaits `work` as
    /// one guarded run, with [`current`] set in every poll of it, on
    /// whichever thread. Ends the run with the async push when a tokio
    /// runtime is running, else with the blocking one. A future dropped
    /// before it finished is pushed as a failure.
    ///
    /// ```no_run
    /// # async fn load() -> Result<u64, std::io::Error> { Ok(1) }
    /// # async fn job() -> Result<(), std::io::Error> {
    /// pushguard::JobRun::new("nightly_etl")
    ///     .instrument_async(async {
    ///         let rows = load().await?;
    ///         pushguard::current().gauge("etl_rows", "Rows.").map(|g| g.set(rows as f64)).ok();
    ///         Ok(())
    ///     })
    ///     .await
    /// # }
    /// ```
    #[cfg(feature = "async")]
    pub async fn instrument_async<F>(self, work: F) -> F::Output
    where
        F: Future,
        F::Output: JobOutput,
    {
        let run = RunHandle::begin(self);
        let _cancelled = EndWhenDropped(&run);
        let mut work = Box::pin(CURRENT.scope(run.clone(), work));
        let caught = std::future::poll_fn(|cx| {
            match catch_unwind(AssertUnwindSafe(|| work.as_mut().poll(cx))) {
                Ok(std::task::Poll::Ready(value)) => std::task::Poll::Ready(Ok(value)),
                Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
                Err(panic) => std::task::Poll::Ready(Err(panic)),
            }
        })
        .await;
        drop(work);
        match caught {
            Ok(value) => {
                run.end_async(value.failure()).await;
                value
            }
            Err(panic) => {
                run.end_async(Some(panic_message(panic.as_ref()))).await;
                resume_unwind(panic)
            }
        }
    }
}

/// Ends the run of an async job whose future is dropped before it finished
/// (a timeout, a `select!`), even while clones of its handle live on: the
/// guard's own drop pushes the failure, under the gateway's deadline.
#[cfg(feature = "async")]
struct EndWhenDropped<'a>(&'a RunHandle);

#[cfg(feature = "async")]
impl Drop for EndWhenDropped<'_> {
    fn drop(&mut self) {
        if let Some(mut guard) = self.0.take() {
            guard.set_error("the job's future was dropped before it finished");
            drop(guard);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offline(job: &str) -> JobRun {
        let run = JobRun::new(job).gateway_url("http://127.0.0.1:1");
        #[cfg(feature = "state")]
        let run = run.without_state();
        #[cfg(feature = "otel")]
        let run = run.without_tracing();
        run.deadline(std::time::Duration::from_millis(200))
    }

    #[test]
    fn outside_a_run_the_handle_says_where_to_call_it() {
        let handle = current();
        assert!(!handle.is_running());
        assert_eq!(handle.job(), None);
        let error = handle.gauge("g", "G.").unwrap_err().to_string();
        assert!(
            error.contains("outside a #[pushguard::job] function"),
            "{error}"
        );
    }

    #[test]
    fn the_innermost_run_is_current_and_a_kept_handle_says_its_run_ended() {
        type Never = std::convert::Infallible;
        let (outer, inner, kept) = offline("outer")
            .instrument(|| {
                let outer = current().job().map(str::to_owned);
                let (inner, kept) = offline("inner").instrument(|| {
                    Ok::<_, Never>((current().job().map(str::to_owned), current()))
                })?;
                Ok::<_, Never>((outer, inner, kept))
            })
            .unwrap();
        assert_eq!(outer.as_deref(), Some("outer"));
        assert_eq!(inner.as_deref(), Some("inner"));
        assert!(!kept.is_running());
        let error = kept.set_exit_code(3).unwrap_err().to_string();
        assert!(
            error.contains("the run of job \"inner\" has already ended"),
            "{error}"
        );
        assert!(!current().is_running());
    }

    #[test]
    fn results_and_unit_map_to_outcomes() {
        assert_eq!(().failure(), None);
        assert_eq!(Ok::<u8, String>(1).failure(), None);
        assert_eq!(
            Err::<u8, _>("disk full").failure().as_deref(),
            Some("disk full")
        );
    }

    #[test]
    fn handles_and_instrumented_futures_can_cross_threads() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: &T) {}
        send_sync(&current());
        #[cfg(feature = "async")]
        send(&offline("f").instrument_async(async {}));
        send(&0);
    }
}
