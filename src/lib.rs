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
//! Or in one line, `#[pushguard::job]` on the job's function (feature
//! `macros`, on by default), with [`current()`] for the run inside it.
//!
//! The pieces are usable alone: [`Gateway`] is a Pushgateway client with
//! retries under a deadline, [`GroupingKey`] encodes group addresses, and
//! [`Body`] validates metrics before anything is sent.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod body;
pub mod catalog;
mod current;
mod error;
mod grouping;
mod guard;
pub mod http_client;
#[cfg(feature = "tower")]
mod http_metrics;
#[cfg(feature = "state")]
pub mod migration;
#[cfg(feature = "state")]
mod outbox;
mod push;
mod redact;
#[cfg(feature = "state")]
mod state;
#[cfg(feature = "system")]
mod system;
#[cfg(feature = "otel")]
mod trace;

pub use body::{Body, MetricKind};
pub use current::{JobOutput, RunHandle, current};
pub use error::PushError;
pub use grouping::{GroupingKey, validate_label_name, validate_metric_name};
pub use guard::{Finished, JobGuard, JobRun, Outcome, run};
#[cfg(feature = "tower")]
pub use http_metrics::{HttpMetrics, HttpMetricsLayer, HttpMetricsService};
#[cfg(feature = "otel")]
pub use opentelemetry;
#[cfg(feature = "state")]
pub use outbox::FlushReport;
pub use prometheus;
pub use push::{Gateway, GatewayBuilder, Method, PushReport};
/// Runs a function as one guarded job run, its signature and return value
/// unchanged: `()` and `Ok` are a success, `Err` a failure with its
/// `Display` as the span's error, a panic a failure pushed before the panic
/// goes on. Inside, [`current()`] is the run. Arguments: `name = "…"`
/// (default: the function's name; for `main`, the binary's),
/// `labels(key = "value", …)`, `method = "put"`, `gateway = "http://…"`,
/// `expected_interval = "1h"`; the rest comes from the environment as for
/// [`JobRun::new`]. It expands to [`JobRun::instrument`] (or
/// [`instrument_async`](JobRun::instrument_async) for an `async fn`); the
/// README's "`#[pushguard::job]`" section tells when to use which.
///
/// ```no_run
/// #[pushguard::job(labels(team = "media"), expected_interval = "1d")]
/// fn nightly_etl() -> Result<u64, pushguard::PushError> {
///     let rows = pushguard::current().int_counter("etl_rows_total", "Rows loaded.")?;
///     rows.inc_by(1200);
///     Ok(1200)
/// }
///
/// #[pushguard::job] // above #[tokio::main]: the async body is the run
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() -> Result<(), pushguard::PushError> {
///     nightly_etl()?; // a second run, its span a child of main's
///     Ok(())
/// }
/// ```
#[cfg(feature = "macros")]
pub use pushguard_macros::job;
#[cfg(feature = "state")]
pub use state::fleet;
#[cfg(feature = "state")]
pub use state::{OutboxEntry, Retention, RunRecord, STATE_ENV, State, StateError};
#[cfg(feature = "system")]
pub use system::SystemMetrics;
#[cfg(feature = "otel")]
pub use trace::{Protocol, TraceError, Tracing, TracingBuilder};

#[cfg(test)]
mod tests {
    /// The names `lib.rs` exports at the root, with every feature on.
    fn root_names() -> Vec<String> {
        let source = include_str!("lib.rs");
        let source = &source[..source
            .find("#[cfg(test)]\nmod tests")
            .unwrap_or(source.len())];
        let mut names = Vec::new();
        for item in source.split(';') {
            let item = item.trim();
            let Some(start) = item.find("pub use ").or_else(|| item.find("pub mod ")) else {
                continue;
            };
            let path = &item[start + 8..];
            match (path.find('{'), path.rfind('}')) {
                (Some(open), Some(close)) => names.extend(
                    path[open + 1..close]
                        .split(',')
                        .map(str::trim)
                        .filter(|n| !n.is_empty())
                        .map(str::to_owned),
                ),
                _ => names.push(path.rsplit("::").next().unwrap_or(path).trim().to_owned()),
            }
        }
        names
    }

    #[test]
    fn the_root_exports_at_most_forty_one_names_and_no_domain_types() {
        let names = root_names();
        assert!(names.contains(&"JobRun".to_owned()), "{names:?}");
        // 40 after the workspace split, plus `fleet`: the shared schedule's
        // types stay in their own namespace instead of at the root. The job
        // attribute's four names (`job`, `current`, `RunHandle`, `JobOutput`)
        // took the place of five that have a natural home elsewhere: the
        // contract constants in `catalog`, `Gateway::DEFAULT_URL`, and the
        // trace carrier functions on `Tracing`.
        assert!(names.len() <= 41, "{} names: {names:?}", names.len());
        for domain in [
            "fetch", "notify", "Store", "Release", "Work", "Runner", "Schedule",
        ] {
            assert!(!names.iter().any(|n| n == domain), "{domain} is exported");
        }
    }
}
