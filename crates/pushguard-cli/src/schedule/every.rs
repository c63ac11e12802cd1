//! `@every DURATION`: fixed intervals from an anchor, on the real clock, so
//! time zones and DST changes do not move them.

use chrono::{DateTime, TimeDelta, Utc};

/// The shortest interval: the cron seconds field's resolution.
const MIN_INTERVAL: TimeDelta = TimeDelta::seconds(1);

/// Nanoseconds in a second.
const NANOS: i128 = 1_000_000_000;

/// Fires at `anchor + k * interval` for every `k >= 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Every {
    pub(super) interval: TimeDelta,
    pub(super) anchor: DateTime<Utc>,
}

impl Every {
    /// The first fire time strictly after `after`; `None` past the end of
    /// `DateTime`'s range.
    pub(super) fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let interval = nanos(self.interval);
        let since_anchor = nanos(after.signed_duration_since(self.anchor));
        let steps = if since_anchor < 0 {
            1
        } else {
            since_anchor / interval + 1
        };
        self.anchor
            .checked_add_signed(delta(steps.checked_mul(interval)?)?)
    }
}

/// Parses the duration of `@every` with humantime (`10m`, `1h30m`, `1s`).
/// The error is the reason only; the caller adds the spec.
pub(super) fn parse(duration: &str) -> Result<TimeDelta, String> {
    if duration.is_empty() {
        return Err(
            "@every needs a duration, such as @every 10m, @every 1h30m or @every 1s".into(),
        );
    }
    let parsed = humantime::parse_duration(duration).map_err(|error| {
        format!("the duration \"{duration}\" is invalid ({error}); write it as 10m, 1h30m or 1s")
    })?;
    let interval = TimeDelta::from_std(parsed)
        .map_err(|_| format!("the duration \"{duration}\" is too long; use at most a few years"))?;
    if interval < MIN_INTERVAL {
        return Err(format!(
            "the duration \"{duration}\" is shorter than 1s; use 1s or more"
        ));
    }
    Ok(interval)
}

/// An interval in words, for "Every …": `hour`, `10 minutes`,
/// `1 day 2 hours`; whole seconds (an `@every` interval is at least 1 s).
pub(super) fn in_words(interval: std::time::Duration) -> String {
    let secs = interval.as_secs();
    let units = [
        (secs / 86_400, "day"),
        (secs / 3_600 % 24, "hour"),
        (secs / 60 % 60, "minute"),
        (secs % 60, "second"),
    ];
    let parts: Vec<(u64, &str)> = units.into_iter().filter(|(n, _)| *n > 0).collect();
    match parts[..] {
        [] => "second".to_owned(),
        [(1, unit)] => unit.to_owned(),
        _ => parts
            .iter()
            .map(|(n, unit)| format!("{n} {unit}{}", if *n == 1 { "" } else { "s" }))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// A `TimeDelta` in nanoseconds, without overflow.
fn nanos(delta: TimeDelta) -> i128 {
    i128::from(delta.num_seconds()) * NANOS + i128::from(delta.subsec_nanos())
}

/// Nanoseconds as a `TimeDelta`, or `None` outside its range.
fn delta(nanos: i128) -> Option<TimeDelta> {
    let seconds = i64::try_from(nanos.div_euclid(NANOS)).ok()?;
    let subsec = u32::try_from(nanos.rem_euclid(NANOS)).ok()?;
    TimeDelta::new(seconds, subsec)
}
