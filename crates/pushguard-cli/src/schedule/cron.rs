//! Cron expressions as job files write them: nicknames, five fields or six
//! with seconds, Vixie cron's day-of-month/day-of-week rule, and whether a
//! schedule is *fixed-time* or *wildcard* for the DST rules.
//!
//! Croner does the field parsing and the wall-clock search; this module
//! decides what croner is asked, and turns its terse errors into messages
//! that name the field.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock, Mutex};

use chrono::NaiveDate;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed cron expression.
///
/// It keeps the checked pattern as text and takes its compiled form from
/// [`COMPILED`] when fire times are wanted: a compiled pattern takes about
/// 5 KB, most of it a byte for every year croner can match, which a runner
/// of thousands of jobs would otherwise hold once per job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CronSpec {
    /// The pattern croner is given: always six fields (seconds first), with
    /// croner's `+` when both day fields must match.
    pattern: Box<str>,
    /// Vixie cron's "fixed-time" job: neither the second, the minute nor the
    /// hour field starts with `*`. A fixed-time job whose time is skipped by
    /// spring-forward runs right after the gap, and runs once when fall-back
    /// repeats its time. Other ("wildcard") jobs follow the real clock: a
    /// skipped time is not run, a repeated one runs each time it happens.
    pub(super) fixed: bool,
}

/// Name and accepted values of each of the six fields, seconds first.
const FIELDS: [(&str, &str); 6] = [
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31 (or L, W)"),
    ("month", "1-12 or JAN-DEC"),
    (
        "day-of-week",
        "0-7 or SUN-SAT, 0 and 7 being Sunday (or L, #)",
    ),
];

/// Parses a cron expression or nickname. The error is the reason only; the
/// caller adds the spec.
pub(super) fn parse(spec: &str) -> Result<CronSpec, String> {
    let expanded = expand_nickname(spec)?;
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    let six: [&str; 6] = match fields[..] {
        [minute, hour, dom, month, dow] => ["0", minute, hour, dom, month, dow],
        [second, minute, hour, dom, month, dow] => [second, minute, hour, dom, month, dow],
        _ => {
            return Err(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with \
                 seconds first, found {}",
                fields.len()
            ));
        }
    };
    let fixed = !six[..3].iter().any(|field| field.starts_with('*'));

    let mut pattern = six[..5].join(" ");
    pattern.push(' ');
    if both_days_decide(six[3], six[5]) {
        // Croner's `+` prefix makes the two day fields AND instead of OR.
        pattern.push('+');
    }
    pattern.push_str(six[5]);

    let spec = CronSpec {
        pattern: pattern.into(),
        fixed,
    };
    // A pattern compiled before was checked then.
    if lock_compiled().contains_key(&spec.pattern) {
        return Ok(spec);
    }
    let cron = parser()
        .parse(&spec.pattern)
        .map_err(|error| diagnose(&six, &error))?;
    // A date no month has (`0 0 30 2 *`) is accepted by cron and never runs;
    // a job file saying so is a mistake worth reporting.
    let start = NaiveDate::from_ymd_opt(2000, 1, 1).and_then(|day| day.and_hms_opt(0, 0, 0));
    if start.is_some_and(|start| cron.find_next_occurrence(&start, false).is_err()) {
        return Err(
            "it never fires: no month has the day it asks for (such as 30 in \
                    February); use a day that exists"
                .to_owned(),
        );
    }
    remember(&spec.pattern, Arc::new(cron));
    Ok(spec)
}

/// How many compiled patterns [`COMPILED`] keeps (about 5 KB each).
const COMPILED_LIMIT: usize = 1024;

/// Compiled patterns by pattern text, shared by every schedule that says
/// the same: jobs repeat their schedules, and compiling one takes
/// microseconds (croner sets a bit for each of its 5,000 years). At most
/// [`COMPILED_LIMIT`] of them; when full it starts over.
static COMPILED: LazyLock<Mutex<HashMap<Box<str>, Arc<croner::Cron>>>> =
    LazyLock::new(Mutex::default);

fn lock_compiled() -> std::sync::MutexGuard<'static, HashMap<Box<str>, Arc<croner::Cron>>> {
    COMPILED.lock().unwrap_or_else(|p| p.into_inner())
}

fn remember(pattern: &str, cron: Arc<croner::Cron>) {
    let mut compiled = lock_compiled();
    if compiled.len() >= COMPILED_LIMIT {
        compiled.clear();
    }
    compiled.insert(pattern.into(), cron);
}

impl CronSpec {
    /// The compiled pattern. `None` would mean croner refused a pattern it
    /// accepted when the schedule was parsed, which it does not do.
    pub(super) fn cron(&self) -> Option<Arc<croner::Cron>> {
        if let Some(cron) = lock_compiled().get(&self.pattern) {
            return Some(cron.clone());
        }
        let cron = Arc::new(parser().parse(&self.pattern).ok()?);
        remember(&self.pattern, cron.clone());
        Some(cron)
    }
}

/// Replaces a nickname by its five fields; other specs pass through.
fn expand_nickname(spec: &str) -> Result<&str, String> {
    let mut words = spec.split_whitespace();
    let Some(first) = words.next() else {
        return Err(
            "the schedule is empty; write five cron fields such as \"*/30 * * * *\", \
                    a nickname such as @hourly, or @every 10m"
                .to_owned(),
        );
    };
    let Some(name) = first.strip_prefix('@') else {
        return Ok(spec);
    };
    let fields = match name.to_ascii_lowercase().as_str() {
        "yearly" | "annually" => "0 0 1 1 *",
        "monthly" => "0 0 1 * *",
        "weekly" => "0 0 * * 0",
        "daily" | "midnight" => "0 0 * * *",
        "hourly" => "0 * * * *",
        _ => {
            return Err(format!(
                "unknown nickname \"{first}\"; use @yearly, @annually, @monthly, @weekly, \
                 @daily, @midnight, @hourly or @every DURATION"
            ));
        }
    };
    let rest: Vec<&str> = words.collect();
    if !rest.is_empty() {
        return Err(format!(
            "{first} stands alone; remove \"{}\" or write the fields instead of the nickname",
            rest.join(" ")
        ));
    }
    Ok(fields)
}

/// Vixie cron ORs the day-of-month and day-of-week fields when both are
/// restricted, that is when neither *starts* with `*`. When one of them is
/// exactly `*` the other alone decides, which croner already does; when one
/// starts with `*` but is not `*` (`*/2`), Vixie requires both to match.
fn both_days_decide(dom: &str, dow: &str) -> bool {
    let star = |field: &str| field.starts_with('*') || field.starts_with('?');
    let any = |field: &str| field == "*" || field == "?";
    !dow.starts_with('+') && (star(dom) || star(dow)) && !any(dom) && !any(dow)
}

/// Six fields, five of them optional; no year field.
fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Required)
        .year(Year::Disallowed)
        .build()
}

/// Finds the field croner rejected, by parsing each field alone, and says
/// what it accepts.
fn diagnose(six: &[&str; 6], error: &CronError) -> String {
    for (index, (name, values)) in FIELDS.iter().enumerate() {
        let mut probe = ["0", "*", "*", "*", "*", "*"];
        probe[index] = six[index];
        if let Err(error) = parser().parse(&probe.join(" ")) {
            let mut reason = format!("the {name} field \"{}\" is invalid", six[index]);
            if let Some(detail) = detail(&error) {
                let _ = write!(reason, " ({detail})");
            }
            let _ = write!(
                reason,
                ": use {values}, a list (1,5), a range (1-5), a step (*/15) or *"
            );
            return reason;
        }
    }
    detail(error).unwrap_or_else(|| "croner rejected it".to_owned())
}

/// Croner's message, in this crate's style.
fn detail(error: &CronError) -> Option<String> {
    let text = match error {
        CronError::IllegalCharacters(_) => return Some("illegal character".to_owned()),
        CronError::ComponentError(text) | CronError::InvalidPattern(text) => text.clone(),
        other => other.to_string(),
    };
    let text = text.trim().trim_end_matches('.');
    let mut chars = text.chars();
    let first = chars.next()?;
    Some(first.to_lowercase().chain(chars).collect())
}
