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

pub use crate::guard::{CONTRACT_FAMILIES, MISSED_REASONS};

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
    def("pushguard_reloads_total", Counter, &[], "Reloads of the job files (SIGHUP) applied.", Runner),
    def("pushguard_last_reload_timestamp_seconds", Gauge, &[], "Unix time the last reload of the job files was applied; 0 before the first.", Runner),
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

/// One job's last run, as the run contract's gauges report it; see
/// [`write_last_runs`].
#[derive(Debug, Clone, Copy)]
pub struct LastRun<'a> {
    /// Labels of every sample of this run, in order: the runner's `job` and
    /// the job's labels. Empty in a push, where the grouping key adds them.
    pub labels: &'a [(&'a str, &'a str)],
    /// When the run started.
    pub started: std::time::SystemTime,
    /// When the run ended.
    pub ended: std::time::SystemTime,
    /// How long the run took.
    pub duration: std::time::Duration,
    /// How it ended; a skipped run never started and reports no last-run gauge.
    pub outcome: crate::Outcome,
    /// Its exit code (128+signal when killed).
    pub exit_code: i32,
    /// The time between two scheduled runs, if the job has a schedule.
    pub expected_interval: Option<std::time::Duration>,
}

/// Writes the run contract's gauges of the last runs of one or more jobs in
/// the text exposition format: each family once, with its `# HELP` and
/// `# TYPE` lines from [`METRICS`], followed by one sample per run that has
/// a value for it (a successful run has no failure timestamp, a skipped run
/// has no timestamps at all, a run without schedule has no expected
/// interval). Families without any sample are left out. The counters
/// (`job_runs_total`, `job_missed_runs_total`) are cumulative and not part
/// of a last run.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use pushguard::catalog::{LastRun, write_last_runs};
///
/// let started = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// let run = LastRun {
///     labels: &[("job", "backup")],
///     started,
///     ended: started + Duration::from_secs(2),
///     duration: Duration::from_secs(2),
///     outcome: pushguard::Outcome::Success,
///     exit_code: 0,
///     expected_interval: None,
/// };
/// let mut text = String::new();
/// write_last_runs(&mut text, &[run]);
/// assert!(text.starts_with(concat!(
///     "# HELP job_last_start_timestamp_seconds Unix time the last run started.\n",
///     "# TYPE job_last_start_timestamp_seconds gauge\n",
///     "job_last_start_timestamp_seconds{job=\"backup\"} 1700000000\n",
/// )));
/// assert!(text.contains("job_last_success_timestamp_seconds{job=\"backup\"} 1700000002\n"));
/// assert!(!text.contains("job_last_failure_timestamp_seconds"));
/// ```
pub fn write_last_runs(out: &mut String, runs: &[LastRun<'_>]) {
    use crate::Outcome;
    type Value = fn(&LastRun<'_>) -> Option<f64>;
    fn ran(run: &LastRun<'_>) -> bool {
        run.outcome != Outcome::Skipped
    }
    fn unix(t: std::time::SystemTime) -> f64 {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    }
    let families: [(&str, Value); 8] = [
        ("job_last_start_timestamp_seconds", |r| {
            ran(r).then(|| unix(r.started))
        }),
        ("job_last_completion_timestamp_seconds", |r| {
            ran(r).then(|| unix(r.ended))
        }),
        ("job_last_success_timestamp_seconds", |r| {
            (r.outcome == Outcome::Success).then(|| unix(r.ended))
        }),
        ("job_last_failure_timestamp_seconds", |r| {
            (ran(r) && r.outcome != Outcome::Success).then(|| unix(r.ended))
        }),
        ("job_duration_seconds", |r| {
            ran(r).then_some(r.duration.as_secs_f64())
        }),
        ("job_last_exit_code", |r| {
            ran(r).then(|| f64::from(r.exit_code))
        }),
        ("job_last_run_failed", |r| {
            ran(r).then_some(if r.outcome == Outcome::Success {
                0.0
            } else {
                1.0
            })
        }),
        ("job_expected_interval_seconds", |r| {
            r.expected_interval.map(|i| i.as_secs_f64())
        }),
    ];
    let mut samples: Vec<(&[(&str, &str)], f64)> = Vec::with_capacity(runs.len());
    for (name, value) in families {
        samples.clear();
        samples.extend(
            runs.iter()
                .filter_map(|run| value(run).map(|v| (run.labels, v))),
        );
        write_family(out, name, &samples);
    }
}

/// Writes the family `name` of the catalogue — `# HELP` and `# TYPE` from
/// [`METRICS`], then `samples` — unless `samples` is empty.
///
/// # Panics
///
/// When `name` is not in the catalogue: a programming error caught by tests.
pub(crate) fn write_family(out: &mut String, name: &str, samples: &[(&[(&str, &str)], f64)]) {
    use std::fmt::Write as _;
    if samples.is_empty() {
        return;
    }
    let def = metric(name).unwrap_or_else(|| panic!("{name} is not in the catalogue"));
    let kind = match def.kind {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
    };
    let _ = writeln!(out, "# HELP {name} {}", crate::body::escape_help(def.help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        out.push_str(name);
        for (i, (label, label_value)) in labels.iter().enumerate() {
            let _ = write!(
                out,
                "{}{label}=\"{}\"",
                if i == 0 { '{' } else { ',' },
                crate::body::escape_label_value(label_value)
            );
        }
        if !labels.is_empty() {
            out.push('}');
        }
        out.push(' ');
        crate::body::push_value(out, *value);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn last_runs_share_one_help_and_type_per_family() {
        use std::time::{Duration, UNIX_EPOCH};
        let started = UNIX_EPOCH + Duration::from_secs(100);
        let run = |labels, outcome, expected_interval| LastRun {
            labels,
            started,
            ended: started + Duration::from_millis(500),
            duration: Duration::from_millis(500),
            outcome,
            exit_code: 0,
            expected_interval,
        };
        let mut text = String::new();
        write_last_runs(
            &mut text,
            &[
                run(&[("job", "a \"b\"")], crate::Outcome::Success, None),
                run(
                    &[("job", "c"), ("team", "x")],
                    crate::Outcome::Timeout,
                    None,
                ),
                run(
                    &[("job", "d")],
                    crate::Outcome::Skipped,
                    Some(Duration::from_secs(60)),
                ),
            ],
        );
        assert_eq!(
            text.matches("# HELP job_last_start_timestamp_seconds ")
                .count(),
            1,
            "{text}"
        );
        assert!(
            text.contains(
                "# HELP job_last_exit_code Exit code of the last run.\n\
             # TYPE job_last_exit_code gauge\n\
             job_last_exit_code{job=\"a \\\"b\\\"\"} 0\n\
             job_last_exit_code{job=\"c\",team=\"x\"} 0\n\
             # HELP job_last_run_failed"
            ),
            "{text}"
        );
        assert!(text.contains("job_last_failure_timestamp_seconds{job=\"c\",team=\"x\"} 100.5\n"));
        // A skipped run never started: only its schedule's interval.
        assert!(!text.contains("job=\"d\"} 100"), "{text}");
        assert!(text.ends_with(
            "# TYPE job_expected_interval_seconds gauge\njob_expected_interval_seconds{job=\"d\"} 60\n"
        ), "{text}");
        for line in text.lines().filter(|l| l.starts_with("# ")) {
            let name = line.split(' ').nth(2).unwrap();
            assert_eq!(
                metric(name).map(|m| m.source),
                Some(MetricSource::Run),
                "{line}"
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
