//! The metric catalogue: every family the library and the runner emit, in
//! one list, with the type other crates list their own families with.
//!
//! Alerts and dashboards in `config/` are checked against this list by the
//! test suite, so renaming a metric here (or forgetting to add one) breaks the
//! build of the monitoring stack, not a production alert.

/// The Prometheus type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricType {
    /// A monotonically increasing total.
    Counter,
    /// A value that can go up and down.
    Gauge,
    /// Buckets, a sum and a count.
    Histogram,
}

/// Where a family comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricSource {
    /// Pushed by every run (library guard, `exec`, runner); grouping key labels added.
    Run,
    /// Served by the runner's own `/metrics`.
    Runner,
    /// The release-delivery store (SQLite).
    Database,
    /// The `fetch` built-in job.
    Fetch,
    /// The `notify` built-in job.
    Notify,
    /// The `calendar` built-in job.
    Calendar,
    /// Host gauges from `sysinfo`.
    System,
    /// The HTTP metrics middleware.
    Http,
}

/// One metric family: its name, type, labels and meaning.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    /// The family name as Prometheus sees it (histograms add `_bucket`, `_sum`, `_count`).
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricType,
    /// Its own labels (the grouping key's `job` and user labels come on top).
    pub labels: &'static [&'static str],
    /// Its help text.
    pub help: &'static str,
    /// Who emits it.
    pub source: MetricSource,
}

/// A catalogue entry; other crates of the workspace list their own families
/// with it.
///
/// ```
/// use pushguard::catalog::{MetricDef, MetricSource, MetricType};
///
/// const ROWS: MetricDef = MetricDef::new("etl_rows_total", MetricType::Counter, &[], "Rows loaded.", MetricSource::Run);
/// assert_eq!(ROWS.name, "etl_rows_total");
/// ```
impl MetricDef {
    /// A family named `name` of type `kind` with its own `labels`, `help` text and `source`.
    pub const fn new(
        name: &'static str,
        kind: MetricType,
        labels: &'static [&'static str],
        help: &'static str,
        source: MetricSource,
    ) -> MetricDef {
        MetricDef {
            name,
            kind,
            labels,
            help,
            source,
        }
    }
}

const fn def(
    name: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
    help: &'static str,
    source: MetricSource,
) -> MetricDef {
    MetricDef {
        name,
        kind,
        labels,
        help,
        source,
    }
}

use MetricSource::{Http, Run, Runner, System};
use MetricType::{Counter, Gauge, Histogram};

/// Every family the library and the runner emit: the run contract, the
/// runner's own, host gauges and HTTP metrics. The release-delivery jobs list
/// theirs in their own crate.
///
/// ```
/// let names: Vec<&str> = pushguard::catalog::METRICS.iter().map(|m| m.name).collect();
/// assert!(names.contains(&"job_last_success_timestamp_seconds"));
/// assert!(names.contains(&"system_cpu_usage_percent"));
/// ```
#[rustfmt::skip]
pub const METRICS: &[MetricDef] = &[
    // The run contract (see `CONTRACT_FAMILIES`).
    def("job_last_start_timestamp_seconds", Gauge, &[], "Unix time the last run started.", Run),
    def("job_last_completion_timestamp_seconds", Gauge, &[], "Unix time the last run ended, whatever its outcome.", Run),
    def("job_last_success_timestamp_seconds", Gauge, &[], "Unix time the last successful run ended.", Run),
    def("job_last_failure_timestamp_seconds", Gauge, &[], "Unix time the last failed run ended.", Run),
    def("job_duration_seconds", Gauge, &[], "Duration of the last run.", Run),
    def("job_last_exit_code", Gauge, &[], "Exit code of the last run.", Run),
    def("job_last_run_failed", Gauge, &[], "1 when the last run did not succeed.", Run),
    def("job_runs_total", Counter, &["outcome"], "Runs by outcome (success, failure, timeout, skipped).", Run),
    def("job_missed_runs_total", Counter, &["reason"], "Scheduled runs that did not happen, by reason.", Run),
    def("job_expected_interval_seconds", Gauge, &[], "Seconds between two scheduled runs; staleness alerts compare against it.", Run),
    // The runner.
    def("pushguard_schedule_lag_seconds", Histogram, &[], "Actual start minus scheduled time of runs.", Runner),
    def("pushguard_running_jobs", Gauge, &[], "Runs in progress.", Runner),
    def("pushguard_outbox_depth", Gauge, &[], "Pushes waiting in the outbox (dead letters included).", Runner),
    // Generic application families: HTTP middleware and host gauges.
    def("http_requests_total", Counter, &["method", "route", "status"], "HTTP requests by method, route and status code.", Http),
    def("http_request_duration_seconds", Histogram, &["method", "route"], "HTTP request latency.", Http),
    def("http_request_errors_total", Counter, &["method", "route"], "HTTP requests answered with a 5xx status.", Http),
    def("system_cpu_usage_percent", Gauge, &[], "CPU usage of the host, all cores, in percent.", System),
    def("system_memory_usage_bytes", Gauge, &[], "Memory in use on the host.", System),
    def("system_disk_usage_percent", Gauge, &["mount"], "Disk usage per mount point, in percent.", System),
];

/// The definition of `name`, if pushguard emits it.
///
/// ```
/// let def = pushguard::catalog::metric("job_duration_seconds").unwrap();
/// assert_eq!(def.kind, pushguard::catalog::MetricType::Gauge);
/// assert!(pushguard::catalog::metric("nope").is_none());
/// ```
pub fn metric(name: &str) -> Option<&'static MetricDef> {
    METRICS.iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::CONTRACT_FAMILIES;

    #[test]
    fn names_are_unique_and_valid() {
        let mut seen = std::collections::HashSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "{} listed twice", m.name);
            crate::grouping::validate_metric_name(m.name).unwrap();
            for label in m.labels {
                crate::grouping::validate_label_name(label).unwrap();
            }
        }
    }

    #[test]
    fn contract_families_are_listed_as_run_metrics() {
        for name in CONTRACT_FAMILIES {
            assert_eq!(
                metric(name).map(|m| m.source),
                Some(MetricSource::Run),
                "{name}"
            );
        }
    }

    #[test]
    fn the_readme_lists_every_family() {
        let readme = include_str!("../README.md");
        for m in METRICS {
            let row = format!("| `{}` |", m.name);
            assert!(
                readme.contains(&row),
                "README.md has no table row for {}",
                m.name
            );
        }
    }
}
