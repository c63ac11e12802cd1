//! The application metric families of the built-in jobs, as `prometheus`
//! collectors registered into a registry the caller chooses (a run's, the
//! runner's, or a service's own).

use pushguard::prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use pushguard::catalog::MetricDef;
use pushguard::catalog::MetricSource::{Calendar, Database, Fetch, Notify};
use pushguard::catalog::MetricType::{Counter, Gauge, Histogram};

/// The families of the release-delivery jobs and their store: with the
/// library's host gauges and HTTP metrics, the sixteen families of the
/// application's report.
///
/// ```
/// let names: Vec<&str> = pushguard_releases::METRICS.iter().map(|m| m.name).collect();
/// assert!(names.contains(&"api_fetch_total"));
/// ```
#[rustfmt::skip]
pub const METRICS: &[MetricDef] = &[
    MetricDef::new("db_operations_total", Counter, &["operation", "table", "status"], "Store operations by operation, table and status (success, failure).", Database),
    MetricDef::new("db_operation_duration_seconds", Histogram, &["operation", "table"], "Store operation latency.", Database),
    MetricDef::new("api_fetch_total", Counter, &["source", "status"], "Source fetches by status (success, failure, rate_limited).", Fetch),
    MetricDef::new("api_fetch_duration_seconds", Histogram, &["source"], "Source fetch latency.", Fetch),
    MetricDef::new("anime_works_total", Gauge, &[], "Anime works in the store.", Fetch),
    MetricDef::new("manga_works_total", Gauge, &[], "Manga works in the store.", Fetch),
    MetricDef::new("releases_pending", Gauge, &[], "Releases not yet notified.", Fetch),
    MetricDef::new("notifications_sent_total", Counter, &["channel", "status"], "Notifications by channel (slack, discord, email) and status (success, failure).", Notify),
    MetricDef::new("calendar_sync_total", Counter, &["status"], "Calendar syncs by status (success, failure).", Calendar),
    MetricDef::new("calendar_events_created_total", Counter, &[], "Calendar events created (updates not counted).", Calendar),
];

/// The definition of `name`, if the release-delivery jobs emit it.
///
/// ```
/// let def = pushguard_releases::metric("releases_pending").unwrap();
/// assert_eq!(def.kind, pushguard::catalog::MetricType::Gauge);
/// ```
pub fn metric(name: &str) -> Option<&'static MetricDef> {
    METRICS.iter().find(|m| m.name == name)
}

fn def(name: &str) -> &'static MetricDef {
    metric(name).unwrap_or_else(|| panic!("{name} is missing from the metric catalogue"))
}

fn counter_vec(registry: &Registry, name: &str) -> IntCounterVec {
    let d = def(name);
    let c = IntCounterVec::new(Opts::new(d.name, d.help), d.labels)
        .expect("catalogue names and labels are valid");
    // Registering twice (two jobs sharing a registry) keeps the first.
    let _ = registry.register(Box::new(c.clone()));
    c
}

fn histogram_vec(registry: &Registry, name: &str, buckets: &[f64]) -> HistogramVec {
    let d = def(name);
    let h = HistogramVec::new(
        HistogramOpts::new(d.name, d.help).buckets(buckets.to_vec()),
        d.labels,
    )
    .expect("catalogue names and labels are valid");
    let _ = registry.register(Box::new(h.clone()));
    h
}

fn gauge(registry: &Registry, name: &str) -> IntGauge {
    let d = def(name);
    let g = IntGauge::new(d.name, d.help).expect("catalogue names are valid");
    let _ = registry.register(Box::new(g.clone()));
    g
}

/// Buckets for store operations: 50 µs to 1 s.
const DB_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
/// Buckets for remote calls: 5 ms to 30 s.
const REMOTE_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// `db_operations_total{operation,table,status}` and
/// `db_operation_duration_seconds{operation,table}`.
#[derive(Clone)]
pub struct DbMetrics {
    /// Operations by operation, table and status (`success`, `failure`).
    pub operations: IntCounterVec,
    /// Operation latency.
    pub duration: HistogramVec,
}

impl DbMetrics {
    /// Registers the families in `registry`.
    pub fn new(registry: &Registry) -> DbMetrics {
        DbMetrics {
            operations: counter_vec(registry, "db_operations_total"),
            duration: histogram_vec(registry, "db_operation_duration_seconds", DB_BUCKETS),
        }
    }

    /// Records one operation that took `seconds`.
    pub fn observe(&self, operation: &str, table: &str, ok: bool, seconds: f64) {
        let status = if ok { "success" } else { "failure" };
        self.operations
            .with_label_values(&[operation, table, status])
            .inc();
        self.duration
            .with_label_values(&[operation, table])
            .observe(seconds);
    }
}

/// `api_fetch_total{source,status}`, `api_fetch_duration_seconds{source}` and
/// the content gauges `anime_works_total`, `manga_works_total`, `releases_pending`.
#[derive(Clone)]
pub struct FetchMetrics {
    /// Fetches by source and status (`success`, `failure`, `rate_limited`).
    pub fetches: IntCounterVec,
    /// Fetch latency by source.
    pub duration: HistogramVec,
    /// Anime works in the store.
    pub anime_works: IntGauge,
    /// Manga works in the store.
    pub manga_works: IntGauge,
    /// Releases not yet notified.
    pub releases_pending: IntGauge,
}

impl FetchMetrics {
    /// Registers the families in `registry`.
    pub fn new(registry: &Registry) -> FetchMetrics {
        FetchMetrics {
            fetches: counter_vec(registry, "api_fetch_total"),
            duration: histogram_vec(registry, "api_fetch_duration_seconds", REMOTE_BUCKETS),
            anime_works: gauge(registry, "anime_works_total"),
            manga_works: gauge(registry, "manga_works_total"),
            releases_pending: gauge(registry, "releases_pending"),
        }
    }
}

/// `notifications_sent_total{channel,status}`.
#[derive(Clone)]
pub struct NotifyMetrics {
    /// Notifications by channel (`slack`, `discord`, `email`) and status (`success`, `failure`).
    pub sent: IntCounterVec,
}

impl NotifyMetrics {
    /// Registers the family in `registry`.
    pub fn new(registry: &Registry) -> NotifyMetrics {
        NotifyMetrics {
            sent: counter_vec(registry, "notifications_sent_total"),
        }
    }
}

/// `calendar_sync_total{status}` and `calendar_events_created_total`.
#[derive(Clone)]
pub struct CalendarMetrics {
    /// Syncs by status (`success`, `failure`).
    pub syncs: IntCounterVec,
    /// Events created (an update of an existing event is not counted).
    pub events_created: IntCounter,
}

impl CalendarMetrics {
    /// Registers the families in `registry`.
    pub fn new(registry: &Registry) -> CalendarMetrics {
        let d = def("calendar_events_created_total");
        let events_created = IntCounter::new(d.name, d.help).expect("catalogue names are valid");
        let _ = registry.register(Box::new(events_created.clone()));
        CalendarMetrics {
            syncs: counter_vec(registry, "calendar_sync_total"),
            events_created,
        }
    }
}

#[cfg(test)]
mod catalogue_tests {
    use pushguard::catalog::MetricSource;

    use super::METRICS;

    #[test]
    fn names_are_unique_valid_and_apart_from_the_library() {
        let mut seen = std::collections::HashSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "{} listed twice", m.name);
            assert!(
                pushguard::catalog::metric(m.name).is_none(),
                "{} is also the library's",
                m.name
            );
            pushguard::validate_metric_name(m.name).unwrap();
            for label in m.labels {
                pushguard::validate_label_name(label).unwrap();
            }
        }
    }

    #[test]
    fn the_readme_lists_every_family() {
        let readme = include_str!("../../../README.md");
        for m in METRICS {
            let row = format!("| `{}` |", m.name);
            assert!(
                readme.contains(&row),
                "README.md has no table row for {}",
                m.name
            );
        }
    }

    #[test]
    fn the_application_has_sixteen_families() {
        let generic = pushguard::catalog::METRICS
            .iter()
            .filter(|m| !matches!(m.source, MetricSource::Run | MetricSource::Runner))
            .count();
        assert_eq!(generic + METRICS.len(), 16);
    }
}
