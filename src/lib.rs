//! pushguard makes batch jobs observable.
//!
//! A run of a job is wrapped in a scoped guard; when the run ends — success,
//! error, panic — the guard pushes the run's timestamps, duration, exit code
//! and outcome counters, with any metrics the job registered, to a Prometheus
//! Pushgateway.
//!
//! ```no_run
//! use pushguard::{JobRun, Outcome};
//!
//! let guard = JobRun::new("nightly_etl").gateway_url("http://127.0.0.1:9091").start()?;
//! let rows = guard.int_counter("etl_rows_total", "Rows loaded by the run.")?;
//! rows.inc_by(1200);
//! let report = guard.finish(Outcome::Success)?;
//! println!("pushed to {} in {:?}", report.url, report.elapsed);
//! # Ok::<(), pushguard::PushError>(())
//! ```
//!
//! The pieces are usable alone: [`Gateway`] is a Pushgateway client with
//! retries under a deadline, [`GroupingKey`] encodes group addresses, and
//! [`Body`] validates metrics before anything is sent.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod body;
#[cfg(feature = "builtin")]
mod builtin;
mod catalog;
#[cfg(feature = "runner")]
mod config;
mod error;
mod grouping;
mod guard;
#[cfg(feature = "builtin")]
mod http_metrics;
#[cfg(feature = "state")]
mod migration;
#[cfg(feature = "state")]
mod outbox;
mod push;
#[cfg(feature = "runner")]
mod runner;
#[cfg(feature = "runner")]
mod schedule;
#[cfg(feature = "state")]
mod state;
#[cfg(feature = "builtin")]
mod system;
#[cfg(feature = "otel")]
mod trace;

pub use body::{Body, MetricKind};
#[cfg(feature = "builtin")]
pub use builtin::{
    BuiltinError, CalendarMetrics, CalendarReport, CalendarSettings, ChannelReport,
    DEFAULT_STORE_FILE, DbMetrics, FetchMetrics, FetchReport, FetchSettings, NewRelease, NewWork,
    NotifyMetrics, NotifyReport, NotifySettings, Release, SourceReport, Store, StoreError, Work,
    WorkKind, fetch, notify, sync_calendar,
};
pub use catalog::{METRICS, MetricDef, MetricSource, MetricType, metric};
#[cfg(feature = "runner")]
pub use config::{
    ApiToken, Builtin, CatchUp, ConfigError, ConfigErrors, ConfigLoader, DEFAULT_CONFIG_PATH,
    DEFAULT_LISTEN, ENVIRONMENT, GatewaySettings, JobAction, JobDefaults, JobSpec, Overlap,
    RunnerConfig, TriggerAccess, load_jobs,
};
pub use error::PushError;
pub use grouping::{GroupingKey, validate_label_name, validate_metric_name};
pub use guard::{CONTRACT_FAMILIES, Finished, JobGuard, JobRun, MISSED_REASONS, Outcome, run};
#[cfg(feature = "builtin")]
pub use http_metrics::{HttpMetrics, HttpMetricsLayer, HttpMetricsService};
#[cfg(feature = "otel")]
pub use opentelemetry;
#[cfg(feature = "state")]
pub use outbox::FlushReport;
pub use prometheus;
pub use push::builder::DEFAULT_GATEWAY_URL;
pub use push::{Gateway, GatewayBuilder, Method, PushReport};
#[cfg(feature = "runner")]
pub use runner::{Runner, RunnerSettings};
#[cfg(feature = "runner")]
pub use schedule::{Schedule, ScheduleError};
#[cfg(feature = "state")]
pub use state::{OutboxEntry, Retention, RunRecord, STATE_ENV, State, StateError};
#[cfg(feature = "builtin")]
pub use system::SystemMetrics;
#[cfg(feature = "otel")]
pub use trace::{Protocol, TraceError, Tracing, TracingBuilder, context_from_env, env_for_child};
