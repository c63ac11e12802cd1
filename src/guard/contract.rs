//! The metrics every run pushes — the names alerts and dashboards rely on.
//!
//! `job_runs_total` is cumulative per grouping key, in the state file (or,
//! without one, for the life of the process); every push carries all four
//! outcomes, because a POST replaces a whole family and a missing outcome
//! would read as a reset. When the state file holding the totals cannot be
//! used, the family is left out instead: it never goes backwards.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use super::Outcome;
use crate::body::Body;
use crate::catalog;
use crate::error::PushError;
use crate::grouping::GroupingKey;

/// The family names the guard sets itself; user metrics may not reuse them.
pub const CONTRACT_FAMILIES: [&str; 10] = [
    "job_last_start_timestamp_seconds",
    "job_last_completion_timestamp_seconds",
    "job_last_success_timestamp_seconds",
    "job_last_failure_timestamp_seconds",
    "job_duration_seconds",
    "job_last_exit_code",
    "job_last_run_failed",
    "job_runs_total",
    "job_missed_runs_total",
    "job_expected_interval_seconds",
];

/// Why scheduled runs did not happen (`job_missed_runs_total{reason}`).
pub const MISSED_REASONS: [&str; 3] = ["overlap", "downtime", "runner_lost"];

/// Adds `missed` (reason, count) to the cumulative `job_missed_runs_total`
/// and encodes every reason's total.
pub(super) fn encode_missed(
    body: &mut Body,
    key: &GroupingKey,
    missed: &[(&'static str, u64)],
    totals: &Totals<'_>,
) -> Result<(), PushError> {
    if !totals.known() {
        return Ok(());
    }
    let grouping = key.path();
    let mut samples: Vec<([(&str, &str); 1], f64)> = Vec::with_capacity(2);
    for reason in MISSED_REASONS {
        let delta: u64 = missed
            .iter()
            .filter(|(r, _)| *r == reason)
            .map(|(_, n)| n)
            .sum();
        let labels = format!("reason=\"{reason}\"");
        if let Some(total) =
            totals.bump(&grouping, "job_missed_runs_total", &labels, delta as f64)?
        {
            samples.push(([("reason", reason)], total));
        }
    }
    let samples: Vec<(&[(&str, &str)], f64)> = samples.iter().map(|(l, v)| (&l[..], *v)).collect();
    let mut text = String::with_capacity(256);
    catalog::write_family(&mut text, "job_missed_runs_total", &samples);
    body.add_text(&text)
}

#[derive(Debug, Clone)]
pub(super) struct RunEnd {
    pub started_at: SystemTime,
    pub ended_at: SystemTime,
    pub duration: Duration,
    pub outcome: Outcome,
    pub exit_code: i32,
    pub expected_interval: Option<Duration>,
}

#[cfg(any(feature = "state", feature = "otel"))]
pub(super) fn unix(t: SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Where cumulative totals live: the state file, this process's memory, or
/// nowhere this run can reach.
pub(super) enum Totals<'a> {
    /// Counted in this process (no state file was asked for).
    Memory,
    /// The state file that holds the totals cannot be used: they are
    /// unknown, so the cumulative families are left out of the push rather
    /// than restarted from zero (POST keeps the gateway's previous values; a
    /// counter never goes backwards).
    #[cfg(feature = "state")]
    Unknown,
    #[cfg(feature = "state")]
    State(&'a crate::state::Tx<'a>),
    #[cfg(not(feature = "state"))]
    #[allow(dead_code)]
    Never(std::marker::PhantomData<&'a ()>),
}

type Sample = (String, String, String);

fn memory() -> &'static Mutex<HashMap<Sample, f64>> {
    static TOTALS: OnceLock<Mutex<HashMap<Sample, f64>>> = OnceLock::new();
    TOTALS.get_or_init(Default::default)
}

impl Totals<'_> {
    /// Whether the totals are known; when not, cumulative families are not pushed.
    pub(super) fn known(&self) -> bool {
        #[cfg(feature = "state")]
        if matches!(self, Totals::Unknown) {
            return false;
        }
        true
    }

    /// Adds `delta` to the sample (`grouping`, `name`, `labels`) and returns
    /// the total; `None` when the totals are [unknown](Totals::Unknown).
    pub(super) fn bump(
        &self,
        grouping: &str,
        name: &str,
        labels: &str,
        delta: f64,
    ) -> Result<Option<f64>, PushError> {
        match self {
            #[cfg(feature = "state")]
            Totals::State(tx) => Ok(Some(tx.bump(grouping, name, labels, delta)?)),
            #[cfg(feature = "state")]
            Totals::Unknown => Ok(None),
            _ => {
                let mut map = memory()
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let total = map
                    .entry((grouping.to_owned(), name.to_owned(), labels.to_owned()))
                    .or_default();
                *total += delta;
                Ok(Some(*total))
            }
        }
    }
}

/// Encodes the run's gauges with the one encoder of the run contract,
/// [`catalog::write_last_runs`] (a skipped run never started: it only counts),
/// and counts the run in the cumulative `job_runs_total`, every outcome's
/// total encoded (the family is left out when the totals are
/// [unknown](Totals::Unknown)); `# HELP` and `# TYPE` come from
/// [`catalog::METRICS`].
pub(super) fn encode(
    body: &mut Body,
    key: &GroupingKey,
    end: &RunEnd,
    totals: &Totals<'_>,
) -> Result<(), PushError> {
    let mut text = String::with_capacity(1024);
    catalog::write_last_runs(
        &mut text,
        &[catalog::LastRun {
            labels: &[],
            started: end.started_at,
            ended: end.ended_at,
            duration: end.duration,
            outcome: end.outcome,
            exit_code: end.exit_code,
            expected_interval: end.expected_interval,
        }],
    );
    if totals.known() {
        let grouping = key.path();
        let mut samples: Vec<([(&str, &str); 1], f64)> = Vec::with_capacity(4);
        for outcome in Outcome::ALL {
            let delta = if outcome == end.outcome { 1.0 } else { 0.0 };
            let labels = format!("outcome=\"{}\"", outcome.as_str());
            if let Some(total) = totals.bump(&grouping, "job_runs_total", &labels, delta)? {
                samples.push(([("outcome", outcome.as_str())], total));
            }
        }
        let samples: Vec<(&[(&str, &str)], f64)> =
            samples.iter().map(|(l, v)| (&l[..], *v)).collect();
        catalog::write_family(&mut text, "job_runs_total", &samples);
    }
    body.add_text(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_and_failure_bodies() {
        let key = GroupingKey::new("contract_unit").unwrap();
        let start = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut end = RunEnd {
            started_at: start,
            ended_at: start + Duration::from_millis(1500),
            duration: Duration::from_millis(1500),
            outcome: Outcome::Success,
            exit_code: 0,
            expected_interval: Some(Duration::from_secs(600)),
        };
        let mut body = Body::new();
        encode(&mut body, &key, &end, &Totals::Memory).unwrap();
        let text = body.as_str();
        assert!(
            text.contains("job_last_success_timestamp_seconds 1700000001.5\n"),
            "{text}"
        );
        assert!(
            text.contains("job_expected_interval_seconds 600\n"),
            "{text}"
        );
        assert!(!text.contains("job_last_failure_timestamp_seconds"));
        assert!(text.contains("job_duration_seconds 1.5\n"));
        assert!(text.contains("job_runs_total{outcome=\"success\"} 1\n"));
        assert!(text.contains("job_runs_total{outcome=\"skipped\"} 0\n"));
        assert!(text.contains(
            "# HELP job_runs_total Runs by outcome (success, failure, timeout, skipped).\n\
             # TYPE job_runs_total counter\n"
        ));
        assert!(text.contains(
            "# HELP job_last_exit_code Exit code of the last run.\n\
             # TYPE job_last_exit_code gauge\njob_last_exit_code 0\n"
        ));

        end.outcome = Outcome::Timeout;
        end.exit_code = 124;
        let mut body = Body::new();
        encode(&mut body, &key, &end, &Totals::Memory).unwrap();
        let text = body.as_str();
        assert!(text.contains("job_last_failure_timestamp_seconds 1700000001.5\n"));
        assert!(!text.contains("job_last_success_timestamp_seconds"));
        assert!(text.contains("job_last_run_failed 1\n"));
        assert!(text.contains("job_last_exit_code 124\n"));
        assert!(text.contains("job_runs_total{outcome=\"success\"} 1\n"));
        assert!(text.contains("job_runs_total{outcome=\"timeout\"} 1\n"));

        // Unknown totals: the run's gauges, no counters at all.
        #[cfg(feature = "state")]
        {
            let mut body = Body::new();
            encode(&mut body, &key, &end, &Totals::Unknown).unwrap();
            encode_missed(&mut body, &key, &[("overlap", 2)], &Totals::Unknown).unwrap();
            let text = body.as_str();
            assert!(text.contains("job_last_exit_code 124\n"), "{text}");
            assert!(!text.contains("job_runs_total"), "{text}");
            assert!(!text.contains("job_missed_runs_total"), "{text}");
        }
    }
}
