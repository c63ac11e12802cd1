//! The words and numbers of the status page: relative times ("in 4 min"),
//! durations, times in a job's zone, the job a grouping path belongs to, and
//! the geometry of the duration chart. Pure functions, so the page's wording
//! is tested without a runner.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// `delta` seconds from now in words: `in 4 min`, `3 h 5 min ago`, `now`.
/// Whole units, rounded towards zero, so "in 4 min" may be 4 min 59 s away.
pub(crate) fn relative(delta: i64) -> String {
    let span = delta.unsigned_abs();
    if span == 0 {
        return "now".to_owned();
    }
    let words = span_in_words(span);
    if delta > 0 {
        format!("in {words}")
    } else {
        format!("{words} ago")
    }
}

/// A span of whole seconds in short words: `12 s`, `4 min`, `3 h 5 min`,
/// `2 days`, `1 day 3 h`.
fn span_in_words(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3_600 => format!("{} min", secs / 60),
        3_600..86_400 => {
            let (hours, minutes) = (secs / 3_600, secs / 60 % 60);
            if minutes == 0 {
                format!("{hours} h")
            } else {
                format!("{hours} h {minutes} min")
            }
        }
        _ => {
            let (days, hours) = (secs / 86_400, secs / 3_600 % 24);
            let days = if days == 1 {
                "1 day".to_owned()
            } else {
                format!("{days} days")
            };
            if hours == 0 {
                days
            } else {
                format!("{days} {hours} h")
            }
        }
    }
}

/// Seconds between `now` and `at` (positive in the future), whole seconds
/// rounded towards zero.
pub(crate) fn seconds_until(at: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (at - now).num_seconds()
}

/// A run's duration: `340 ms`, `2.3 s`, `12 s`, `4 min 5 s`, `1 h 2 min`.
pub(crate) fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "–".to_owned();
    }
    if secs < 1.0 {
        return format!("{} ms", (secs * 1000.0).round() as u64);
    }
    if secs < 10.0 {
        return format!("{:.1} s", (secs * 10.0).floor() / 10.0);
    }
    let whole = secs as u64;
    match whole {
        0..60 => format!("{whole} s"),
        60..3_600 => format!("{} min {} s", whole / 60, whole % 60),
        _ => format!("{} h {} min", whole / 3_600, whole / 60 % 60),
    }
}

/// `at` on the wall clock of `tz`, with the zone's abbreviation:
/// `2026-11-30 23:04:00 JST`.
pub(crate) fn in_zone(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// A Unix time from the state file as a `DateTime`; `None` when out of
/// range.
pub(crate) fn from_unix(secs: f64) -> Option<DateTime<Utc>> {
    if !secs.is_finite() {
        return None;
    }
    let whole = secs.floor();
    let nanos = ((secs - whole) * 1e9) as u32;
    DateTime::<Utc>::from_timestamp(whole as i64, nanos.min(999_999_999))
}

/// The job of a grouping path (`/metrics/job/backup/env/prod`, or
/// `/metrics/job@base64/…` for a name that needed encoding); `None` for a
/// path that is not a group.
pub(crate) fn job_of_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/metrics/")?;
    let mut segments = rest.split('/');
    match (segments.next()?, segments.next()?) {
        ("job", name) => Some(name.to_owned()),
        ("job@base64", "=") => Some(String::new()),
        ("job@base64", encoded) => base64::engine::general_purpose::URL_SAFE
            .decode(encoded)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded))
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok()),
        _ => None,
    }
}

/// One bar of the duration chart, in the SVG's user units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bar {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// Width and height of the duration chart.
pub(crate) const CHART_WIDTH: f64 = 180.0;
pub(crate) const CHART_HEIGHT: f64 = 32.0;
/// Runs the chart shows.
pub(crate) const CHART_RUNS: usize = 30;

/// Bars for `durations` (oldest first, at most [`CHART_RUNS`]): one slot per
/// run from the left, heights relative to the longest, at least 2 units so a
/// run of no time is still seen.
pub(crate) fn bars(durations: &[f64]) -> Vec<Bar> {
    let slot = CHART_WIDTH / CHART_RUNS as f64;
    let longest = durations
        .iter()
        .copied()
        .filter(|d| d.is_finite())
        .fold(0.0_f64, f64::max);
    durations
        .iter()
        .take(CHART_RUNS)
        .enumerate()
        .map(|(i, d)| {
            let share = if longest > 0.0 && d.is_finite() {
                (d / longest).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let height = (share * CHART_HEIGHT).max(2.0);
            Bar {
                x: i as f64 * slot + 0.5,
                y: CHART_HEIGHT - height,
                width: slot - 1.0,
                height,
            }
        })
        .collect()
}

/// The link to a trace in the configured trace UI: `template` with
/// `{trace_id}` replaced; `None` for an id that is not plain hex, which no
/// tracer writes and which must not reach a URL.
pub(crate) fn trace_link(template: &str, trace_id: &str) -> Option<String> {
    let hex = !trace_id.is_empty() && trace_id.bytes().all(|b| b.is_ascii_hexdigit());
    hex.then(|| template.replace("{trace_id}", trace_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_as_people_say_them() {
        assert_eq!(relative(0), "now");
        assert_eq!(relative(12), "in 12 s");
        assert_eq!(relative(-12), "12 s ago");
        assert_eq!(relative(4 * 60), "in 4 min");
        assert_eq!(relative(4 * 60 + 59), "in 4 min");
        assert_eq!(relative(-(3 * 3_600 + 5 * 60)), "3 h 5 min ago");
        assert_eq!(relative(2 * 3_600), "in 2 h");
        assert_eq!(relative(86_400 + 3 * 3_600), "in 1 day 3 h");
        assert_eq!(relative(-3 * 86_400), "3 days ago");
        assert_eq!(relative(i64::MIN), relative(i64::MIN));
    }

    #[test]
    fn durations_keep_what_matters_at_each_scale() {
        assert_eq!(duration(0.0), "0 ms");
        assert_eq!(duration(0.3404), "340 ms");
        assert_eq!(duration(2.35), "2.3 s");
        assert_eq!(duration(12.9), "12 s");
        assert_eq!(duration(245.0), "4 min 5 s");
        assert_eq!(duration(3_725.0), "1 h 2 min");
        assert_eq!(duration(f64::NAN), "–");
        assert_eq!(duration(-1.0), "–");
    }

    #[test]
    fn times_are_shown_on_the_jobs_wall_clock() {
        let at: DateTime<Utc> = "2026-11-30T14:04:00Z".parse().unwrap();
        assert_eq!(in_zone(at, Tz::Asia__Tokyo), "2026-11-30 23:04:00 JST");
        assert_eq!(in_zone(at, Tz::UTC), "2026-11-30 14:04:00 UTC");
        assert_eq!(seconds_until(at, at - chrono::TimeDelta::seconds(245)), 245);
        assert_eq!(from_unix(1.5).unwrap().timestamp_millis(), 1_500);
        assert_eq!(from_unix(f64::INFINITY), None);
    }

    #[test]
    fn the_job_of_a_grouping_path() {
        assert_eq!(
            job_of_path("/metrics/job/backup").as_deref(),
            Some("backup")
        );
        assert_eq!(
            job_of_path("/metrics/job/backup/env/prod").as_deref(),
            Some("backup")
        );
        // "a/b" encoded as the grouping key encoding does.
        assert_eq!(
            job_of_path("/metrics/job@base64/YS9i").as_deref(),
            Some("a/b")
        );
        assert_eq!(job_of_path("/metrics/job@base64/=").as_deref(), Some(""));
        assert_eq!(job_of_path("/elsewhere"), None);
    }

    #[test]
    fn bars_fill_from_the_left_relative_to_the_longest_run() {
        let bars = bars(&[1.0, 4.0, 0.0, 2.0]);
        assert_eq!(bars.len(), 4);
        assert_eq!(bars[1].height, CHART_HEIGHT);
        assert_eq!(bars[0].height, CHART_HEIGHT / 4.0);
        assert_eq!(bars[2].height, 2.0, "a run of no time is still seen");
        assert!(bars.windows(2).all(|w| w[0].x < w[1].x));
        assert!(bars.iter().all(|b| b.y + b.height <= CHART_HEIGHT));
        assert!(super::bars(&[0.0; 40]).len() == CHART_RUNS);
    }

    #[test]
    fn trace_links_take_hex_ids_only() {
        let template = "http://jaeger:16686/trace/{trace_id}";
        assert_eq!(
            trace_link(template, "4bf92f3577b34da6a3ce929d0e0e4736").as_deref(),
            Some("http://jaeger:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_link(template, "\"><script>"), None);
        assert_eq!(trace_link(template, ""), None);
    }
}
