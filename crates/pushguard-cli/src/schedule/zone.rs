//! From wall-clock matches to instants, with the DST rules of job files.
//!
//! Croner walks a time-zone-less wall clock (`NaiveDateTime`), so it never
//! sees a DST change. Each wall-clock match is then placed in the job's time
//! zone, where it happens once, twice (fall-back) or never (spring-forward),
//! and Vixie cron's rules pick the fire times:
//!
//! | wall-clock time | fixed-time job | wildcard job |
//! |-----------------|----------------|--------------|
//! | happens once | fires | fires |
//! | repeated by fall-back | fires at the first occurrence only | fires at both |
//! | skipped by spring-forward | fires once, at the end of the gap | does not fire |
//!
//! Croner 4 has the same rules built in, but it calls a job fixed-time only
//! when its second, minute and hour are single values, so `0,30 2 * * *` or
//! `0 1-3 * * *` would miss the spring-forward day and fire twice at
//! fall-back. Vixie cron (and this module) call a job fixed-time when none of
//! those fields starts with `*`.

use chrono::{
    DateTime, FixedOffset, LocalResult, NaiveDateTime, Offset as _, TimeDelta, TimeZone as _, Utc,
};
use chrono_tz::Tz;
use croner::Cron;

/// The most wall-clock matches one search looks at. A search ends after one
/// or two in practice; each further one steps over a DST change.
const MAX_CANDIDATES: usize = 1_000;

/// How far from a skipped time the search for the two sides of the gap
/// goes, in quarter hours: two days, wider than any gap in the tz database.
const MAX_GAP_QUARTERS: i32 = 4 * 48;

/// How a wall-clock time exists in a time zone.
enum Wall {
    /// It happens once.
    Single(DateTime<Utc>),
    /// It happens twice, because the clock went back: the earlier and the
    /// later instant.
    Repeated(DateTime<Utc>, DateTime<Utc>),
    /// It never happens, because the clock went forward at `transition`;
    /// `resume` is the wall-clock time right after the gap.
    Skipped {
        transition: DateTime<Utc>,
        resume: NaiveDateTime,
    },
}

/// The first fire time of `cron` in `tz` strictly after `after`; `fixed` is
/// [`CronSpec::fixed`](super::cron::CronSpec::fixed). `None` when croner
/// finds no further match (past the year 5000).
pub(super) fn next_fire(
    cron: &Cron,
    fixed: bool,
    tz: Tz,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let wall_after = local(tz, after);
    // The walk below starts at `after`'s wall-clock time, which misses one
    // case: `after` is in the first pass of a repeated hour, and a wildcard
    // job matches earlier in the second pass.
    let mut best = if fixed {
        None
    } else {
        second_pass(cron, tz, after, wall_after)
    };

    let mut cursor = wall_after;
    for _ in 0..MAX_CANDIDATES {
        let wall = cron.find_next_occurrence(&cursor, false).ok()?;
        // `earliest` is a lower bound of this and every later match's fire
        // times, so once it reaches the best fire found, the search is over.
        let (earliest, fires, next_cursor) = match resolve(tz, wall)? {
            Wall::Single(instant) => (instant, [Some(instant), None], wall),
            Wall::Repeated(earlier, later) if earlier > after => {
                (earlier, [Some(earlier), (!fixed).then_some(later)], wall)
            }
            Wall::Repeated(earlier, later) => {
                // `after` is in the second pass; the rest of the second pass
                // offers nothing earlier than `later`, so skip past it.
                let end = fold_end(tz, earlier, later)?;
                (
                    earlier,
                    [None, (!fixed).then_some(later)],
                    end.checked_sub_signed(TimeDelta::seconds(1))?,
                )
            }
            Wall::Skipped { transition, resume } => (
                transition,
                [fixed.then_some(transition), None],
                resume.checked_sub_signed(TimeDelta::seconds(1))?,
            ),
        };
        if best.is_some_and(|best| earliest >= best) {
            return best;
        }
        for fire in fires.into_iter().flatten().filter(|fire| *fire > after) {
            best = Some(best.map_or(fire, |best| best.min(fire)));
        }
        if best == Some(earliest) {
            return best;
        }
        cursor = next_cursor;
    }
    best
}

/// When `after` is in the first pass of a repeated range, the first match in
/// the second pass (which a wildcard job fires at).
fn second_pass(
    cron: &Cron,
    tz: Tz,
    after: DateTime<Utc>,
    wall_after: NaiveDateTime,
) -> Option<DateTime<Utc>> {
    let LocalResult::Ambiguous(_, later) = tz.from_local_datetime(&wall_after) else {
        return None;
    };
    let later = later.with_timezone(&Utc);
    if after >= later {
        return None;
    }
    let transition = transition_between(tz, after, later)?;
    let start = local(tz, transition).checked_sub_signed(TimeDelta::seconds(1))?;
    let wall = cron.find_next_occurrence(&start, false).ok()?;
    match tz.from_local_datetime(&wall) {
        LocalResult::Ambiguous(_, later) => Some(later.with_timezone(&Utc)),
        _ => None,
    }
}

/// Places a wall-clock time in `tz`. `None` only if a gap's edges cannot be
/// found, which no zone of the tz database does.
fn resolve(tz: Tz, wall: NaiveDateTime) -> Option<Wall> {
    Some(match tz.from_local_datetime(&wall) {
        LocalResult::Single(instant) => Wall::Single(instant.with_timezone(&Utc)),
        LocalResult::Ambiguous(earlier, later) => {
            Wall::Repeated(earlier.with_timezone(&Utc), later.with_timezone(&Utc))
        }
        LocalResult::None => {
            let transition = gap_transition(tz, wall)?;
            Wall::Skipped {
                transition,
                resume: local(tz, transition),
            }
        }
    })
}

/// The instant a gap containing `wall` ends: the clock jumps at it.
fn gap_transition(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    let existing = |quarters: i32| {
        (1..=MAX_GAP_QUARTERS).find_map(|step| {
            let probe =
                wall.checked_add_signed(TimeDelta::minutes(15 * i64::from(step * quarters)))?;
            tz.from_local_datetime(&probe).earliest()
        })
    };
    let before = existing(-1)?.with_timezone(&Utc);
    let after = existing(1)?.with_timezone(&Utc);
    transition_between(tz, before, after)
}

/// The wall-clock time at which the second pass of a repeated range ends,
/// given the two instants of one of its times.
fn fold_end(tz: Tz, earlier: DateTime<Utc>, later: DateTime<Utc>) -> Option<NaiveDateTime> {
    let transition = transition_between(tz, earlier, later)?;
    local(tz, transition).checked_add_signed(later - earlier)
}

/// The first instant in `(from, to]` whose UTC offset differs from `from`'s,
/// by bisection on whole seconds (tz database changes fall on whole
/// seconds). Expects one change in between.
fn transition_between(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let offset = |seconds: i64| -> Option<FixedOffset> {
        let instant = DateTime::from_timestamp(seconds, 0)?;
        Some(tz.offset_from_utc_datetime(&instant.naive_utc()).fix())
    };
    let (mut low, mut high) = (from.timestamp(), to.timestamp());
    let before = offset(low)?;
    if offset(high)? == before {
        return None;
    }
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if offset(middle)? == before {
            low = middle;
        } else {
            high = middle;
        }
    }
    DateTime::from_timestamp(high, 0)
}

/// The wall-clock time of an instant in `tz`.
fn local(tz: Tz, instant: DateTime<Utc>) -> NaiveDateTime {
    instant.with_timezone(&tz).naive_local()
}
