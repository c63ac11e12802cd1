//! When a job fires: the `schedule` and `timezone` keys of a job file.
//!
//! A [`Schedule`] turns "after this instant" into "next fire time", both in
//! UTC, so the runner can sleep until then without polling. Croner parses
//! the cron fields and walks the wall clock; [`zone`] places its matches in
//! the job's time zone with Vixie cron's DST rules, which croner 4 applies
//! to fewer patterns than Vixie cron does.

mod cron;
mod every;
mod zone;

use std::fmt;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use cron::CronSpec;
use every::Every;

/// A parsed `schedule` with its time zone, which answers "when does the job
/// fire next?" in UTC. It accepts:
///
/// | syntax | example | meaning |
/// |--------|---------|---------|
/// | 5 fields (Vixie cron) | `*/30 * * * *` | minute hour day-of-month month day-of-week |
/// | 6 fields | `*/5 * * * * *` | a seconds field first |
/// | nickname | `@hourly` | `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`, `@hourly` |
/// | interval | `@every 1h30m` | every interval from an anchor (a humantime duration, 1s or more) |
///
/// Cron fields follow Vixie cron and cronie: names (`MON`, `JAN`), lists,
/// ranges and steps; when day-of-month and day-of-week are both restricted,
/// a day matching *either* fires (`0 0 13 * 5`: the 13th and every Friday);
/// a field that starts with `*` (`*/2`) does not count as restricted, so then
/// both must match. Croner's extensions (`L`, `W`, `#`, `+`) also work.
///
/// Cron schedules run on the wall clock of the time zone (UTC by default),
/// with Vixie cron's DST rules. A *fixed-time* job — none of the second,
/// minute and hour fields starts with `*`, like `30 2 * * *` or
/// `0,30 2 * * *` — fires right after a spring-forward gap that skipped its
/// time (once), and once, at the first occurrence, when fall-back repeats its
/// time. A *wildcard* job (`0 * * * *`, `*/30 * * * *`, `*/15 2 * * *`)
/// follows the real clock: a skipped time does not fire, a repeated one fires
/// at both occurrences, so an hourly job fires every real hour. `@every`
/// ignores the time zone: its fire times are `anchor + k × interval`.
///
/// ```
/// use chrono::{DateTime, Utc};
/// use pushguard_cli::Schedule;
///
/// let schedule = Schedule::parse("30 2 * * *", Some("Europe/Berlin"))?;
/// let after: DateTime<Utc> = "2026-03-28T12:00:00Z".parse()?;
/// // 02:30 does not exist on 29 March 2026 in Berlin: the job runs at the
/// // end of the gap, 03:00 CEST.
/// let next = schedule.next_after(after).unwrap();
/// assert_eq!(next, "2026-03-29T01:00:00Z".parse::<DateTime<Utc>>()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    spec: String,
    tz: Tz,
    kind: Kind,
}

/// The two families of schedules.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Cron(CronSpec),
    Every(Every),
}

/// Why a `schedule` or `timezone` is not valid. Messages name the value and
/// say what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The schedule is not a cron expression or nickname this crate accepts,
    /// or it never fires.
    #[error("invalid schedule \"{spec}\": {reason}")]
    InvalidCron {
        /// The schedule as written.
        spec: String,
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// The time zone is not an IANA name known to chrono-tz.
    #[error(
        "unknown time zone \"{name}\": use an IANA name such as \"Europe/Berlin\" or \"UTC\"{}",
        suggestion(.name)
    )]
    InvalidTimezone {
        /// The name as written.
        name: String,
    },

    /// `@every` with a missing, unreadable, too short or too long duration.
    #[error("invalid schedule \"{spec}\": {reason}")]
    InvalidEvery {
        /// The schedule as written.
        spec: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

/// ` (did you mean "Asia/Tokyo"?)` for a name that differs only in case.
fn suggestion(name: &str) -> String {
    chrono_tz::TZ_VARIANTS
        .iter()
        .find(|tz| tz.name().eq_ignore_ascii_case(name))
        .map(|tz| format!(" (did you mean \"{}\"?)", tz.name()))
        .unwrap_or_default()
}

impl Schedule {
    /// Parses a `schedule` (see the [`Schedule`] type docs for the syntax) in
    /// the IANA time zone `timezone` (UTC when `None`).
    ///
    /// An `@every` schedule is anchored at the current time; see
    /// [`with_anchor`](Schedule::with_anchor). Surrounding whitespace is
    /// ignored, and nicknames may be in any case.
    ///
    /// ```
    /// use pushguard_cli::{Schedule, ScheduleError};
    ///
    /// assert!(Schedule::parse("@every 10m", None).is_ok());
    /// let error = Schedule::parse("61 * * * *", None).unwrap_err();
    /// assert!(matches!(error, ScheduleError::InvalidCron { .. }));
    /// assert!(error.to_string().contains("minute field \"61\""));
    /// ```
    pub fn parse(spec: &str, timezone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let tz = match timezone {
            None => Tz::UTC,
            Some(name) => name.parse().map_err(|_| ScheduleError::InvalidTimezone {
                name: name.to_owned(),
            })?,
        };
        let spec = spec.trim();
        let kind = match every_duration(spec) {
            Some(duration) => Kind::Every(Every {
                interval: every::parse(duration).map_err(|reason| ScheduleError::InvalidEvery {
                    spec: spec.to_owned(),
                    reason,
                })?,
                anchor: Utc::now(),
            }),
            None => Kind::Cron(
                cron::parse(spec).map_err(|reason| ScheduleError::InvalidCron {
                    spec: spec.to_owned(),
                    reason,
                })?,
            ),
        };
        Ok(Schedule {
            spec: spec.to_owned(),
            tz,
            kind,
        })
    }

    /// Anchors an `@every` schedule: its fire times become
    /// `anchor + k × interval` for `k ≥ 1`. Cron schedules are unchanged.
    ///
    /// ```
    /// use chrono::{DateTime, Utc};
    /// use pushguard_cli::Schedule;
    ///
    /// let anchor: DateTime<Utc> = "2026-01-01T00:00:00Z".parse()?;
    /// let schedule = Schedule::parse("@every 10m", None)?.with_anchor(anchor);
    /// let next = schedule.next_after("2026-01-01T00:25:00Z".parse()?);
    /// assert_eq!(next, Some("2026-01-01T00:30:00Z".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_anchor(mut self, anchor: DateTime<Utc>) -> Schedule {
        if let Kind::Every(every) = &mut self.kind {
            every.anchor = anchor;
        }
        self
    }

    /// The first fire time strictly after `after`, or `None` if there is
    /// none (past the year 5000, or past the end of `DateTime`'s range).
    ///
    /// Sub-second parts of `after` are kept: a cron schedule's next fire
    /// after 10:00:00.5 is at 10:00:01 or later.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.walker()(after)
    }

    /// [`next_after`](Self::next_after) for a walk over several fires: a
    /// cron pattern is compiled once for the whole walk.
    fn walker(&self) -> impl Fn(DateTime<Utc>) -> Option<DateTime<Utc>> + '_ {
        let cron = match &self.kind {
            Kind::Cron(spec) => spec.cron(),
            Kind::Every(_) => None,
        };
        move |after| match (&self.kind, &cron) {
            (Kind::Cron(spec), Some(cron)) => zone::next_fire(cron, spec.fixed, self.tz, after),
            (Kind::Cron(_), None) => None,
            (Kind::Every(every), _) => every.next_after(after),
        }
    }

    /// The fire times in `(from, to]`, oldest first, at most `limit` of them
    /// (the oldest `limit`): the runs missed while the runner was down.
    ///
    /// ```
    /// use pushguard_cli::Schedule;
    ///
    /// let hourly = Schedule::parse("@hourly", None)?;
    /// let missed = hourly.fires_between("2026-01-01T00:00:00Z".parse()?, "2026-01-01T03:00:00Z".parse()?, 100);
    /// assert_eq!(missed.len(), 3); // 01:00, 02:00, 03:00
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fires_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let next_after = self.walker();
        let mut fires = Vec::new();
        let mut cursor = from;
        while fires.len() < limit {
            match next_after(cursor) {
                Some(next) if next <= to => {
                    fires.push(next);
                    cursor = next;
                }
                _ => break,
            }
        }
        fires
    }

    /// The longest gap between the next eight fires after `from`: how long a
    /// healthy job may go without a run (a weekday job's weekend included).
    ///
    /// ```
    /// use pushguard_cli::Schedule;
    ///
    /// let weekdays = Schedule::parse("0 9 * * 1-5", None)?;
    /// let gap = weekdays.longest_gap("2026-01-05T00:00:00Z".parse()?).unwrap();
    /// assert_eq!(gap.as_secs(), 3 * 86_400); // Friday 09:00 to Monday 09:00
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn longest_gap(&self, from: DateTime<Utc>) -> Option<std::time::Duration> {
        let next_after = self.walker();
        let mut previous = next_after(from)?;
        let mut longest = None;
        for _ in 0..8 {
            let Some(next) = next_after(previous) else {
                break;
            };
            let gap = (next - previous).to_std().ok();
            longest = longest.max(gap);
            previous = next;
        }
        longest
    }

    /// The schedule in English words, as the status page shows it beside
    /// the spec: croner's description of a cron expression, `Every 10
    /// minutes.` for `@every 10m`. The time zone is not part of it.
    ///
    /// ```
    /// use pushguard_cli::Schedule;
    ///
    /// assert_eq!(Schedule::parse("@every 90m", None)?.describe(), "Every 1 hour 30 minutes.");
    /// assert_eq!(Schedule::parse("*/5 * * * *", None)?.describe(), "Every 5 minutes.");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Cron(spec) => {
                let words = spec.cron().map(|cron| cron.describe()).unwrap_or_default();
                // Croner says "At every 5 minutes."
                match words.strip_prefix("At every ") {
                    Some(rest) => format!("Every {rest}"),
                    None => words,
                }
            }
            Kind::Every(every) => {
                let interval = every.interval.to_std().unwrap_or_default();
                format!("Every {}.", every::in_words(interval))
            }
        }
    }

    /// The schedule as written, without surrounding whitespace.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The time zone cron fields are read in (UTC unless one was given).
    pub fn timezone(&self) -> Tz {
        self.tz
    }
}

impl fmt::Display for Schedule {
    /// The spec, with the time zone when it is not UTC: `30 2 * * * (Europe/Berlin)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)?;
        if self.tz != Tz::UTC {
            write!(f, " ({})", self.tz.name())?;
        }
        Ok(())
    }
}

/// The duration of an `@every` spec (possibly empty), or `None` for other
/// specs.
fn every_duration(spec: &str) -> Option<&str> {
    let head = spec.get(..6)?;
    let rest = &spec[6..];
    (head.eq_ignore_ascii_case("@every")
        && (rest.is_empty() || rest.starts_with(char::is_whitespace)))
    .then(|| rest.trim())
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike as _, NaiveDateTime, Offset as _, TimeDelta, TimeZone as _, Weekday};
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn schedules_in_words() {
        let words = |spec: &str| Schedule::parse(spec, None).unwrap().describe();
        assert_eq!(words("@every 10m"), "Every 10 minutes.");
        assert_eq!(words("@every 1h"), "Every hour.");
        assert_eq!(words("@every 1d2h"), "Every 1 day 2 hours.");
        assert_eq!(words("* * * * *"), "Every minute.");
        assert_eq!(words("*/5 * * * * *"), "Every 5 seconds.");
        assert_eq!(words("*/15 2 * * *"), "Every 15 minutes, of hour 2.");
        assert_eq!(words("@hourly"), "At minute 0 past every hour.");
        assert_eq!(words("30 2 * * *"), "At 02:30.");
        assert_eq!(
            words("0 9 * * 1-5"),
            "At 09:00, on Monday, Tuesday, Wednesday, Thursday, and Friday."
        );
        // Vixie cron's rule: either day field may match.
        assert_eq!(words("0 0 13 * 5"), "At 00:00, on day 13 or Friday.");
        assert_eq!(words("@yearly"), "At 00:00, on day 1, in January.");
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|error| panic!("bad test instant {text}: {error}"))
            .with_timezone(&Utc)
    }

    fn schedule(spec: &str, timezone: Option<&str>) -> Schedule {
        Schedule::parse(spec, timezone).unwrap_or_else(|error| panic!("{error}"))
    }

    /// The fires in `(from, to]` as RFC 3339 UTC strings, for readable asserts.
    fn fires(spec: &str, timezone: Option<&str>, from: &str, to: &str) -> Vec<String> {
        schedule(spec, timezone)
            .fires_between(utc(from), utc(to), 10_000)
            .iter()
            .map(|fire| fire.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .collect()
    }

    fn error(spec: &str, timezone: Option<&str>) -> ScheduleError {
        match Schedule::parse(spec, timezone) {
            Ok(parsed) => panic!("{spec:?} parsed as {parsed:?}"),
            Err(error) => error,
        }
    }

    // --- Syntax ---------------------------------------------------------

    #[test]
    fn five_fields_every_thirty_minutes() {
        assert_eq!(
            fires(
                "*/30 * * * *",
                None,
                "2026-01-01T10:07:00Z",
                "2026-01-01T11:30:00Z"
            ),
            [
                "2026-01-01T10:30:00Z",
                "2026-01-01T11:00:00Z",
                "2026-01-01T11:30:00Z"
            ]
        );
    }

    #[test]
    fn names_lists_and_ranges() {
        // 09:15 and 17:15 on weekdays; 2026-01-02 is a Friday.
        assert_eq!(
            fires(
                "15 9,17 * JAN mon-fri",
                None,
                "2026-01-02T10:00:00Z",
                "2026-01-06T10:00:00Z"
            ),
            [
                "2026-01-02T17:15:00Z",
                "2026-01-05T09:15:00Z",
                "2026-01-05T17:15:00Z",
                "2026-01-06T09:15:00Z"
            ]
        );
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // April 2026: Fridays are the 3rd, 10th, 17th and 24th; the 13th is a Monday.
        assert_eq!(
            fires(
                "0 0 13 * 5",
                None,
                "2026-04-01T00:00:00Z",
                "2026-05-01T00:00:00Z"
            ),
            [
                "2026-04-03T00:00:00Z",
                "2026-04-10T00:00:00Z",
                "2026-04-13T00:00:00Z",
                "2026-04-17T00:00:00Z",
                "2026-04-24T00:00:00Z",
                "2026-05-01T00:00:00Z"
            ]
        );
    }

    #[test]
    fn a_star_day_field_leaves_the_other_to_decide() {
        let from = utc("2026-01-01T00:00:00Z");
        let to = utc("2026-12-31T23:59:59Z");
        let thirteenths = schedule("0 0 13 * *", None).fires_between(from, to, 1000);
        assert_eq!(thirteenths.len(), 12);
        assert!(thirteenths.iter().all(|fire| fire.day() == 13));

        let fridays = schedule("0 0 * * FRI", None).fires_between(from, to, 1000);
        assert_eq!(fridays.len(), 52);
        assert!(fridays.iter().all(|fire| fire.weekday() == Weekday::Fri));

        // `?` is a star too.
        assert_eq!(
            schedule("0 0 ? * FRI", None).fires_between(from, to, 1000),
            fridays
        );
    }

    #[test]
    fn a_day_field_starting_with_a_star_makes_both_decide() {
        // Vixie cron and cronie: `*/10` is not "restricted", so day-of-month
        // AND day-of-week must match: days 1, 11, 21, 31 that are Fridays.
        let from = utc("2026-01-01T00:00:00Z");
        let fires =
            schedule("0 0 */10 * 5", None).fires_between(from, utc("2028-01-01T00:00:00Z"), 1000);
        assert!(!fires.is_empty());
        for fire in &fires {
            assert_eq!(fire.weekday(), Weekday::Fri, "{fire}");
            assert!([1, 11, 21, 31].contains(&fire.day()), "{fire}");
        }
        let mut day = from;
        let mut expected = Vec::new();
        while day < utc("2028-01-01T00:00:00Z") {
            if day.weekday() == Weekday::Fri && [1, 11, 21, 31].contains(&day.day()) {
                expected.push(day);
            }
            day += TimeDelta::days(1);
        }
        assert_eq!(fires, expected);
    }

    #[test]
    fn six_fields_have_seconds_first() {
        assert_eq!(
            fires(
                "*/5 * * * * *",
                None,
                "2026-01-01T10:00:02Z",
                "2026-01-01T10:00:15Z"
            ),
            [
                "2026-01-01T10:00:05Z",
                "2026-01-01T10:00:10Z",
                "2026-01-01T10:00:15Z"
            ]
        );
        assert_eq!(
            fires(
                "30 0 12 * * *",
                None,
                "2026-01-01T00:00:00Z",
                "2026-01-02T12:00:30Z"
            ),
            ["2026-01-01T12:00:30Z", "2026-01-02T12:00:30Z"]
        );
    }

    #[test]
    fn nicknames() {
        // 2026-01-01 is a Thursday.
        let from = utc("2026-01-01T10:20:00Z");
        let next = |spec: &str| {
            schedule(spec, None)
                .next_after(from)
                .map(|fire| fire.to_rfc3339())
        };
        let expect = |text: &str| Some(utc(text).to_rfc3339());
        assert_eq!(next("@yearly"), expect("2027-01-01T00:00:00Z"));
        assert_eq!(next("@annually"), expect("2027-01-01T00:00:00Z"));
        assert_eq!(next("@monthly"), expect("2026-02-01T00:00:00Z"));
        assert_eq!(next("@weekly"), expect("2026-01-04T00:00:00Z"));
        assert_eq!(next("@daily"), expect("2026-01-02T00:00:00Z"));
        assert_eq!(next("@midnight"), expect("2026-01-02T00:00:00Z"));
        assert_eq!(next("@hourly"), expect("2026-01-01T11:00:00Z"));
        assert_eq!(next("  @HOURLY "), expect("2026-01-01T11:00:00Z"));
        assert_eq!(schedule("  @HOURLY ", None).spec(), "@HOURLY");
    }

    #[test]
    fn every_counts_from_the_anchor() {
        let anchor = utc("2026-01-01T00:00:00Z");
        let every_second = schedule("@every 1s", None).with_anchor(anchor);
        assert_eq!(
            every_second.fires_between(anchor, utc("2026-01-01T00:00:03Z"), 100),
            [
                utc("2026-01-01T00:00:01Z"),
                utc("2026-01-01T00:00:02Z"),
                utc("2026-01-01T00:00:03Z")
            ]
        );
        // Strictly after, sub-seconds included.
        assert_eq!(
            every_second.next_after(utc("2026-01-01T00:00:01Z")),
            Some(utc("2026-01-01T00:00:02Z"))
        );
        assert_eq!(
            every_second.next_after(utc("2026-01-01T00:00:01.5Z")),
            Some(utc("2026-01-01T00:00:02Z"))
        );

        let ten_minutes =
            schedule("@every 10m", Some("Europe/Berlin")).with_anchor(utc("2026-01-01T00:03:00Z"));
        assert_eq!(
            ten_minutes.next_after(utc("2026-01-01T05:00:00Z")),
            Some(utc("2026-01-01T05:03:00Z"))
        );
        // Before the anchor, the first fire is one interval after it.
        assert_eq!(
            ten_minutes.next_after(utc("2025-06-01T00:00:00Z")),
            Some(utc("2026-01-01T00:13:00Z"))
        );

        let long = schedule("@every 1h30m", None).with_anchor(anchor);
        assert_eq!(
            long.fires_between(anchor, utc("2026-01-01T04:30:00Z"), 100),
            [
                utc("2026-01-01T01:30:00Z"),
                utc("2026-01-01T03:00:00Z"),
                utc("2026-01-01T04:30:00Z")
            ]
        );
        assert_eq!(schedule("@EVERY  2h 15m", None).spec(), "@EVERY  2h 15m");
    }

    #[test]
    fn every_ignores_daylight_saving_time() {
        let anchor = utc("2026-03-29T00:00:00Z");
        let hourly = schedule("@every 1h", Some("Europe/Berlin")).with_anchor(anchor);
        let fires = hourly.fires_between(anchor, utc("2026-03-29T04:00:00Z"), 100);
        assert_eq!(fires.len(), 4);
        assert!(
            fires
                .windows(2)
                .all(|pair| pair[1] - pair[0] == TimeDelta::hours(1))
        );
    }

    #[test]
    fn every_defaults_its_anchor_to_the_parse_time() {
        let before = Utc::now();
        let next = schedule("@every 1h", None)
            .next_after(before)
            .expect("a next fire");
        let after = Utc::now();
        assert!(next > before + TimeDelta::minutes(59) && next <= after + TimeDelta::hours(1));
    }

    #[test]
    fn with_anchor_leaves_cron_schedules_alone() {
        let daily = schedule("@daily", None);
        assert_eq!(
            daily.clone().with_anchor(utc("2001-01-01T00:00:00Z")),
            daily
        );
    }

    #[test]
    fn time_zones() {
        let tokyo = schedule("0 9 * * *", Some("Asia/Tokyo"));
        assert_eq!(tokyo.timezone(), chrono_tz::Asia::Tokyo);
        assert_eq!(
            tokyo.next_after(utc("2026-01-01T00:00:00Z")),
            Some(utc("2026-01-02T00:00:00Z"))
        );
        assert_eq!(tokyo.to_string(), "0 9 * * * (Asia/Tokyo)");
        assert_eq!(schedule("0 9 * * *", None).timezone(), Tz::UTC);
        assert_eq!(schedule("0 9 * * *", None).to_string(), "0 9 * * *");
    }

    #[test]
    fn fires_between_is_half_open_and_bounded() {
        let hourly = schedule("@hourly", None);
        let (from, to) = (utc("2026-01-01T00:00:00Z"), utc("2026-01-01T05:00:00Z"));
        let all = hourly.fires_between(from, to, 100);
        assert_eq!(all.first(), Some(&utc("2026-01-01T01:00:00Z")));
        assert_eq!(all.last(), Some(&to));
        assert_eq!(all.len(), 5);
        assert_eq!(hourly.fires_between(from, to, 2), all[..2]);
        assert!(hourly.fires_between(from, to, 0).is_empty());
        assert!(hourly.fires_between(to, from, 100).is_empty());
    }

    // --- Errors ---------------------------------------------------------

    #[test]
    fn invalid_cron_names_the_field_and_value() {
        let message = error("61 * * * *", None).to_string();
        assert!(
            message.starts_with("invalid schedule \"61 * * * *\": the minute field \"61\""),
            "{message}"
        );
        assert!(message.contains("0-59"), "{message}");

        let message = error("0 25 * * *", None).to_string();
        assert!(message.contains("the hour field \"25\""), "{message}");
        let message = error("0 0 * * MOO", None).to_string();
        assert!(
            message.contains("the day-of-week field \"MOO\""),
            "{message}"
        );
        let message = error("0 0 0 * 13 *", None).to_string();
        assert!(message.contains("the month field \"13\""), "{message}");
        let message = error("*/0 * * * * *", None).to_string();
        assert!(
            message.contains("the second field \"*/0\" is invalid (step cannot be zero)"),
            "{message}"
        );

        for (spec, expected) in [
            ("* * * *", "found 4"),
            ("* * * * * * *", "found 7"),
            ("", "the schedule is empty"),
            ("   ", "the schedule is empty"),
            ("@reboot", "unknown nickname \"@reboot\""),
            ("@daily 5", "@daily stands alone; remove \"5\""),
            ("0 0 30 2 *", "never fires"),
        ] {
            let error = error(spec, None);
            assert!(
                matches!(error, ScheduleError::InvalidCron { .. }),
                "{spec:?}: {error:?}"
            );
            let message = error.to_string();
            assert!(message.contains(expected), "{spec:?}: {message}");
            assert!(
                message.starts_with(&format!("invalid schedule \"{}\"", spec.trim())),
                "{message}"
            );
        }
    }

    #[test]
    fn invalid_timezone_names_the_zone() {
        let message = error("@daily", Some("Mars/Olympus")).to_string();
        assert_eq!(
            message,
            "unknown time zone \"Mars/Olympus\": use an IANA name such as \"Europe/Berlin\" or \"UTC\""
        );
        let message = error("@daily", Some("asia/tokyo")).to_string();
        assert!(
            message.ends_with("(did you mean \"Asia/Tokyo\"?)"),
            "{message}"
        );
        assert!(
            matches!(error("@daily", Some("")), ScheduleError::InvalidTimezone { name } if name.is_empty())
        );
    }

    #[test]
    fn invalid_every_names_the_duration() {
        for (spec, expected) in [
            ("@every", "@every needs a duration"),
            ("@every   ", "@every needs a duration"),
            (
                "@every 10",
                "the duration \"10\" is invalid (time unit needed",
            ),
            ("@every soon", "the duration \"soon\" is invalid"),
            ("@every 0s", "the duration \"0s\" is shorter than 1s"),
            ("@every 500ms", "the duration \"500ms\" is shorter than 1s"),
            (
                "@every 10000000000y",
                "the duration \"10000000000y\" is too long",
            ),
        ] {
            let error = error(spec, None);
            assert!(
                matches!(error, ScheduleError::InvalidEvery { .. }),
                "{spec:?}: {error:?}"
            );
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("invalid schedule \"{}\": ", spec.trim())),
                "{message}"
            );
            assert!(message.contains(expected), "{spec:?}: {message}");
        }
        // Not @every: a nickname error.
        assert!(matches!(
            error("@everyday", None),
            ScheduleError::InvalidCron { .. }
        ));
    }

    // --- DST ------------------------------------------------------------

    #[test]
    fn skipped_time_fires_once_right_after_the_gap() {
        // Berlin 2026-03-29: 02:00 CET -> 03:00 CEST at 01:00 UTC.
        assert_eq!(
            fires(
                "30 2 * * *",
                Some("Europe/Berlin"),
                "2026-03-28T00:00:00Z",
                "2026-03-31T00:00:00Z"
            ),
            [
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:30:00Z"
            ]
        );
        // New York 2026-03-08: 02:00 EST -> 03:00 EDT at 07:00 UTC.
        assert_eq!(
            fires(
                "30 2 * * *",
                Some("America/New_York"),
                "2026-03-07T00:00:00Z",
                "2026-03-10T00:00:00Z"
            ),
            [
                "2026-03-07T07:30:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-09T06:30:00Z"
            ]
        );
    }

    #[test]
    fn repeated_time_fires_once_at_the_first_occurrence() {
        // Berlin 2026-10-25: 03:00 CEST -> 02:00 CET at 01:00 UTC; 02:30
        // happens at 00:30 and 01:30 UTC.
        assert_eq!(
            fires(
                "30 2 * * *",
                Some("Europe/Berlin"),
                "2026-10-24T00:00:00Z",
                "2026-10-27T00:00:00Z"
            ),
            [
                "2026-10-24T00:30:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-26T01:30:00Z"
            ]
        );
        // New York 2026-11-01: 02:00 EDT -> 01:00 EST at 06:00 UTC; 02:30
        // happens once (07:30 UTC), 01:30 twice (05:30 and 06:30 UTC).
        assert_eq!(
            fires(
                "30 2 * * *",
                Some("America/New_York"),
                "2026-10-31T00:00:00Z",
                "2026-11-03T00:00:00Z"
            ),
            [
                "2026-10-31T06:30:00Z",
                "2026-11-01T07:30:00Z",
                "2026-11-02T07:30:00Z"
            ]
        );
        assert_eq!(
            fires(
                "30 1 * * *",
                Some("America/New_York"),
                "2026-10-31T00:00:00Z",
                "2026-11-03T00:00:00Z"
            ),
            [
                "2026-10-31T05:30:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-02T06:30:00Z"
            ]
        );
    }

    #[test]
    fn repeated_time_fires_once_from_anywhere_in_the_repeated_hour() {
        let job = schedule("30 2 * * *", Some("Europe/Berlin"));
        let next_day = utc("2026-10-26T01:30:00Z");
        // From the first pass, before and after the match, and from the second pass.
        assert_eq!(
            job.next_after(utc("2026-10-25T00:10:00Z")),
            Some(utc("2026-10-25T00:30:00Z"))
        );
        for after in [
            "2026-10-25T00:30:00Z",
            "2026-10-25T00:45:00Z",
            "2026-10-25T01:10:00Z",
            "2026-10-25T01:30:00Z",
        ] {
            assert_eq!(job.next_after(utc(after)), Some(next_day), "after {after}");
        }
    }

    #[test]
    fn list_of_fixed_times_follows_the_fixed_time_rules() {
        // Croner alone would skip the spring-forward day and fire four times
        // at fall-back for this one.
        assert_eq!(
            fires(
                "0,30 2 * * *",
                Some("Europe/Berlin"),
                "2026-03-29T00:00:00Z",
                "2026-03-29T23:00:00Z"
            ),
            ["2026-03-29T01:00:00Z"]
        );
        assert_eq!(
            fires(
                "0,30 2 * * *",
                Some("Europe/Berlin"),
                "2026-10-24T23:00:00Z",
                "2026-10-26T00:00:00Z"
            ),
            ["2026-10-25T00:00:00Z", "2026-10-25T00:30:00Z"]
        );
        assert_eq!(
            fires(
                "0 1-3 * * *",
                Some("America/New_York"),
                "2026-03-08T00:00:00Z",
                "2026-03-09T00:00:00Z"
            ),
            ["2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z"]
        );
    }

    #[test]
    fn hourly_job_fires_every_real_hour_across_fall_back() {
        assert_eq!(
            fires(
                "0 * * * *",
                Some("Europe/Berlin"),
                "2026-10-24T21:30:00Z",
                "2026-10-25T03:30:00Z"
            ),
            [
                "2026-10-24T22:00:00Z", // 00:00 CEST
                "2026-10-24T23:00:00Z", // 01:00 CEST
                "2026-10-25T00:00:00Z", // 02:00 CEST
                "2026-10-25T01:00:00Z", // 02:00 CET
                "2026-10-25T02:00:00Z", // 03:00 CET
                "2026-10-25T03:00:00Z"
            ]
        );
        assert_eq!(
            fires(
                "@hourly",
                Some("America/New_York"),
                "2026-11-01T03:30:00Z",
                "2026-11-01T08:30:00Z"
            ),
            [
                "2026-11-01T04:00:00Z", // 00:00 EDT
                "2026-11-01T05:00:00Z", // 01:00 EDT
                "2026-11-01T06:00:00Z", // 01:00 EST
                "2026-11-01T07:00:00Z", // 02:00 EST
                "2026-11-01T08:00:00Z"
            ]
        );
    }

    #[test]
    fn hourly_job_resumes_from_inside_the_repeated_hour() {
        let job = schedule("0 * * * *", Some("Europe/Berlin"));
        // 02:15 CEST (first pass): next is 02:00 CET, in the second pass.
        assert_eq!(
            job.next_after(utc("2026-10-25T00:15:00Z")),
            Some(utc("2026-10-25T01:00:00Z"))
        );
        // 02:15 CET (second pass): next is 03:00 CET.
        assert_eq!(
            job.next_after(utc("2026-10-25T01:15:00Z")),
            Some(utc("2026-10-25T02:00:00Z"))
        );
        // On the dot of the first 02:00.
        assert_eq!(
            job.next_after(utc("2026-10-25T00:00:00Z")),
            Some(utc("2026-10-25T01:00:00Z"))
        );
    }

    #[test]
    fn half_hourly_job_across_spring_forward() {
        // Berlin: 01:30 CET, then 03:00 CEST — 30 real minutes apart.
        assert_eq!(
            fires(
                "*/30 * * * *",
                Some("Europe/Berlin"),
                "2026-03-28T23:45:00Z",
                "2026-03-29T02:00:00Z"
            ),
            [
                "2026-03-29T00:00:00Z", // 01:00 CET
                "2026-03-29T00:30:00Z", // 01:30 CET
                "2026-03-29T01:00:00Z", // 03:00 CEST
                "2026-03-29T01:30:00Z",
                "2026-03-29T02:00:00Z"
            ]
        );
        assert_eq!(
            fires(
                "*/30 * * * *",
                Some("America/New_York"),
                "2026-03-08T06:00:00Z",
                "2026-03-08T08:00:00Z"
            ),
            [
                "2026-03-08T06:30:00Z", // 01:30 EST
                "2026-03-08T07:00:00Z", // 03:00 EDT
                "2026-03-08T07:30:00Z",
                "2026-03-08T08:00:00Z"
            ]
        );
    }

    #[test]
    fn wildcard_job_in_the_gap_does_not_fire() {
        // Vixie cron: a wildcard job follows the clock, and 02:xx never
        // happens on the spring-forward day.
        assert_eq!(
            fires(
                "*/15 2 * * *",
                Some("Europe/Berlin"),
                "2026-03-28T12:00:00Z",
                "2026-03-30T12:00:00Z"
            ),
            [
                "2026-03-30T00:00:00Z",
                "2026-03-30T00:15:00Z",
                "2026-03-30T00:30:00Z",
                "2026-03-30T00:45:00Z"
            ]
        );
    }

    #[test]
    fn seconds_job_keeps_a_steady_beat_across_both_changes() {
        for (zone, from) in [
            ("Europe/Berlin", "2026-03-29T00:00:00Z"),
            ("Europe/Berlin", "2026-10-24T23:30:00Z"),
            ("America/New_York", "2026-03-08T06:00:00Z"),
            ("America/New_York", "2026-11-01T05:00:00Z"),
        ] {
            let from = utc(from);
            let fires = schedule("*/20 * * * * *", Some(zone)).fires_between(
                from,
                from + TimeDelta::hours(2),
                10_000,
            );
            assert_eq!(fires.len(), 360, "{zone} from {from}");
            assert!(
                fires
                    .windows(2)
                    .all(|pair| pair[1] - pair[0] == TimeDelta::seconds(20)),
                "{zone}"
            );
        }
    }

    #[test]
    fn half_hour_dst_of_lord_howe() {
        // Lord Howe 2026-10-04: 02:00 -> 02:30 (+10:30 -> +11) at 15:30 UTC
        // on the 3rd; 2026-04-05: 02:00 -> 01:30 at 15:00 UTC on the 4th.
        assert_eq!(
            fires(
                "15 2 * * *",
                Some("Australia/Lord_Howe"),
                "2026-10-03T00:00:00Z",
                "2026-10-04T12:00:00Z"
            ),
            ["2026-10-03T15:30:00Z"]
        );
        assert_eq!(
            fires(
                "45 1 * * *",
                Some("Australia/Lord_Howe"),
                "2026-04-04T00:00:00Z",
                "2026-04-05T12:00:00Z"
            ),
            ["2026-04-04T14:45:00Z"]
        );
        assert_eq!(
            fires(
                "*/30 * * * *",
                Some("Australia/Lord_Howe"),
                "2026-04-04T14:00:00Z",
                "2026-04-04T16:00:00Z"
            ),
            [
                "2026-04-04T14:30:00Z", // 01:30 +11
                "2026-04-04T15:00:00Z", // 01:30 +10:30
                "2026-04-04T15:30:00Z", // 02:00
                "2026-04-04T16:00:00Z"
            ]
        );
    }

    // --- Against a brute-force oracle ----------------------------------

    /// Every minute in `(from, to]` that fires under the contract, found by
    /// walking instants (not wall-clock times) minute by minute.
    fn oracle(
        minute: &str,
        hour: &str,
        tz: Tz,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        let matcher: croner::Cron = format!("{minute} {hour} * * *")
            .parse()
            .expect("oracle pattern");
        let matches = |wall: NaiveDateTime| matcher.is_time_matching(&wall).expect("matching");
        let fixed = !minute.starts_with('*') && !hour.starts_with('*');
        let wall = |instant: DateTime<Utc>| instant.with_timezone(&tz).naive_local();
        let mut fires = Vec::new();
        let mut instant = from + TimeDelta::minutes(1);
        while instant <= to {
            let now = wall(instant);
            let before = wall(instant - TimeDelta::minutes(1));
            // A wall-clock match fires; a fixed-time job only at its first occurrence.
            let first = tz
                .from_local_datetime(&now)
                .earliest()
                .map(|first| first.with_timezone(&Utc));
            let direct = matches(now) && (!fixed || first == Some(instant));
            // A fixed-time job whose time the clock just jumped over fires now.
            let mut skipped = before + TimeDelta::minutes(1);
            let mut jumped = false;
            while skipped < now {
                jumped |= matches(skipped);
                skipped += TimeDelta::minutes(1);
            }
            if direct || (fixed && jumped) {
                fires.push(instant);
            }
            instant += TimeDelta::minutes(1);
        }
        fires
    }

    /// Zones with both kinds of change in 2026, with days on which they happen.
    const CHANGES: [(&str, &str); 8] = [
        ("Europe/Berlin", "2026-03-29"),
        ("Europe/Berlin", "2026-10-25"),
        ("America/New_York", "2026-03-08"),
        ("America/New_York", "2026-11-01"),
        ("Australia/Lord_Howe", "2026-04-05"),
        ("Australia/Lord_Howe", "2026-10-04"),
        ("Pacific/Chatham", "2026-04-05"),
        ("Pacific/Chatham", "2026-09-27"),
    ];

    #[test]
    fn oracle_days_contain_a_change() {
        for (zone, day) in CHANGES {
            let tz: Tz = zone.parse().expect("zone");
            let start = utc(&format!("{day}T00:00:00Z")) - TimeDelta::days(1);
            let offset = |instant: DateTime<Utc>| instant.with_timezone(&tz).offset().fix();
            assert_ne!(
                offset(start),
                offset(start + TimeDelta::days(2)),
                "{zone} {day}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn fires_match_the_oracle_across_dst_changes(
            minute in prop::sample::select(vec!["0", "30", "45", "*/15", "*", "0,30", "10-12", "*/20"]),
            hour in prop::sample::select(vec!["*", "0", "1", "2", "3", "1-3", "*/2", "0,2", "2,14"]),
            change in prop::sample::select(CHANGES.to_vec()),
        ) {
            let (zone, day) = change;
            let tz: Tz = zone.parse().expect("zone");
            let from = utc(&format!("{day}T00:00:00Z")) - TimeDelta::days(1);
            let to = from + TimeDelta::days(3);
            let spec = format!("{minute} {hour} * * *");
            let actual = schedule(&spec, Some(zone)).fires_between(from, to, 100_000);
            prop_assert_eq!(actual, oracle(minute, hour, tz, from, to), "{} in {}", spec, zone);
        }

        #[test]
        fn next_after_agrees_with_croner_where_croner_classifies_like_vixie(
            minute in prop::sample::select(vec!["0", "30", "*", "*/15"]),
            hour in prop::sample::select(vec!["1", "2", "3", "*", "*/2"]),
            change in prop::sample::select(CHANGES.to_vec()),
            offset in 0i64..3 * 86_400,
        ) {
            // Croner's own DST search on `DateTime<Tz>` uses these same rules
            // when a fixed-time job has single values, so it is a peer to
            // check against for them.
            let (zone, day) = change;
            let tz: Tz = zone.parse().expect("zone");
            let after = utc(&format!("{day}T00:00:00Z")) - TimeDelta::days(1) + TimeDelta::seconds(offset);
            let spec = format!("{minute} {hour} * * *");
            let peer: croner::Cron = spec.parse().expect("croner parses it");
            let expected = peer
                .find_next_occurrence(&after.with_timezone(&tz), false)
                .expect("croner finds one")
                .with_timezone(&Utc);
            prop_assert_eq!(schedule(&spec, Some(zone)).next_after(after), Some(expected), "{} in {} after {}", spec, zone, after);
        }

        #[test]
        fn next_after_is_strictly_increasing_and_matches_the_fields(
            second in prop::sample::select(vec!["0", "*/10", "30"]),
            minute in prop::sample::select(vec!["0", "*/7", "5-10", "*"]),
            hour in prop::sample::select(vec!["*", "2", "*/3", "1,2,3"]),
            dom in prop::sample::select(vec!["*", "1", "13", "*/2", "L"]),
            dow in prop::sample::select(vec!["*", "0", "1-5", "FRI"]),
            zone in prop::sample::select(vec!["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]),
            start in 1_735_689_600i64..1_830_297_600, // 2025..2028
            nanos in 0u32..1_000_000_000,
        ) {
            let spec = format!("{second} {minute} {hour} {dom} * {dow}");
            let job = schedule(&spec, Some(zone));
            let tz = job.timezone();
            let fixed = ![second, minute, hour].iter().any(|field| field.starts_with('*'));
            let matcher = &match &job.kind {
                Kind::Cron(spec) => (*spec.cron().expect("a checked pattern compiles")).clone(),
                Kind::Every(_) => unreachable!("a cron spec"),
            };
            let mut after = DateTime::from_timestamp(start, nanos).expect("instant");
            for _ in 0..20 {
                let next = job.next_after(after).expect("a next fire");
                prop_assert!(next > after, "{} after {}: {}", spec, after, next);
                let wall = next.with_timezone(&tz).naive_local();
                let jumped = tz.from_local_datetime(&(wall - TimeDelta::seconds(1))).earliest().is_none();
                prop_assert!(
                    matcher.is_time_matching(&wall).expect("matching") || (fixed && jumped),
                    "{} in {}: {} ({}) matches no field and ends no gap", spec, zone, next, wall
                );
                // Nothing is skipped: from just before it, the next fire is the same.
                let probe = (next - TimeDelta::seconds(1)).max(after);
                prop_assert_eq!(job.next_after(probe), Some(next), "{} in {} after {}", spec, zone, probe);
                after = next;
            }
        }
    }
}
