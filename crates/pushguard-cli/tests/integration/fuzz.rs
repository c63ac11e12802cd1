//! Property-based fuzzing of the runner's parsers: schedules (cron,
//! nicknames, `@every`, with and without a time zone) and job files.
//!
//! The generators build near-valid input and mutate it (tokens dropped,
//! duplicated or swapped; odd Unicode, huge numbers, CRLF, NUL inserted).
//! `PROPTEST_CASES` sets the number of cases of every property (the default
//! keeps `cargo test` fast); `scripts/fuzz` runs them with a large count.
//! These need no server.

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use pushguard_cli::{ConfigError, JobDefaults, JobSpec, Schedule};

use pushguard_testkit::fuzz::{Mutation, config, mutate};

fn odd_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\0".to_owned()),
        Just("\r".to_owned()),
        Just("\r\n".to_owned()),
        Just("\n".to_owned()),
        Just("\t".to_owned()),
        Just(" ".to_owned()),
        Just("\u{feff}".to_owned()),
        Just("\u{a0}".to_owned()),
        Just("\u{3000}".to_owned()),
        Just("\u{200b}".to_owned()),
        Just("é".to_owned()),
        Just("😀".to_owned()),
        Just("\\".to_owned()),
        Just("\"".to_owned()),
        Just("'".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just("=".to_owned()),
        Just("#".to_owned()),
        Just(".".to_owned()),
        Just("-".to_owned()),
        Just("@".to_owned()),
        Just("99999999999999999999999999".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("4294967296".to_owned()),
        Just("-1".to_owned()),
        Just("0".to_owned()),
        any::<char>().prop_map(String::from),
        "\\PC{1,4}",
    ]
}

/// Any mutation, inserting this crate's odd text.
fn mutation() -> impl Strategy<Value = Mutation> {
    pushguard_testkit::fuzz::mutation(odd_text().boxed())
}

// ---- schedules ----

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (0u32..62).prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => Just("99999999999999999999".to_owned()),
        1 => Just("-1".to_owned()),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "JAN", "feb", "Dec", "MON", "sun", "SAT", "L", "W", "LW", "5L", "15W", "1#2", "6#5", "?",
        "0#1", "SUN#3", "L-3",
    ])
    .prop_map(str::to_owned)
}

/// One cron field: `*`, `*/n`, `a`, `a-b`, `a-b/n`, lists, names.
fn field() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        3 => number(),
        1 => name(),
        2 => (number(), number()).prop_map(|(a, b)| format!("{a}-{b}")),
        1 => (number(), number(), number()).prop_map(|(a, b, c)| format!("{a}-{b}/{c}")),
        1 => number().prop_map(|n| format!("{n}/{n}")),
    ];
    prop_oneof![
        3 => Just("*".to_owned()),
        2 => number().prop_map(|n| format!("*/{n}")),
        4 => atom.clone(),
        2 => prop::collection::vec(atom, 2..4).prop_map(|v| v.join(",")),
    ]
}

fn duration_text() -> impl Strategy<Value = String> {
    let unit = prop::sample::select(vec![
        "ns", "us", "ms", "s", "sec", "m", "min", "h", "hours", "d", "days", "w", "weeks", "M",
        "months", "y", "years", "",
    ]);
    prop_oneof![
        prop::collection::vec((number(), unit), 1..4).prop_map(|parts| parts
            .into_iter()
            .map(|(n, u)| format!("{n}{u}"))
            .collect::<Vec<_>>()
            .join(" ")),
        (
            any::<u64>(),
            prop::sample::select(vec!["s", "m", "h", "d", "y", "ns"])
        )
            .prop_map(|(n, u)| format!("{n}{u}")),
        "[0-9a-zA-Z .]{0,12}",
    ]
}

/// A schedule as tokens (fields and the spaces between them).
fn schedule_tokens() -> impl Strategy<Value = Vec<String>> {
    let spaced = |fields: Vec<String>| {
        let mut tokens = Vec::new();
        for (i, f) in fields.into_iter().enumerate() {
            if i > 0 {
                tokens.push(" ".to_owned());
            }
            tokens.push(f);
        }
        tokens
    };
    prop_oneof![
        4 => prop::collection::vec(field(), 5..=5).prop_map(spaced),
        2 => prop::collection::vec(field(), 6..=6).prop_map(spaced),
        1 => prop::collection::vec(field(), 0..9).prop_map(spaced),
        1 => prop::sample::select(vec![
            "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly",
            "@HOURLY", "@reboot", "@", "@every",
        ])
        .prop_map(|n| vec![n.to_owned()]),
        2 => duration_text().prop_map(|d| vec!["@every".to_owned(), " ".to_owned(), d]),
    ]
}

fn timezone() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => Just(None),
        3 => prop::sample::select(vec![
            "UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
            "America/Sao_Paulo", "Pacific/Apia", "Asia/Kathmandu", "America/St_Johns",
            "Pacific/Chatham", "Africa/Casablanca", "Antarctica/Troll", "europe/berlin", "",
            "Mars/Olympus",
        ])
        .prop_map(|z| Some(z.to_owned())),
        1 => "\\PC{0,12}".prop_map(Some),
    ]
}

/// An instant from 1900 to 2200, or one near the ends of `DateTime`'s range.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    prop_oneof![
        8 => (-2_208_988_800i64..7_258_118_400, 0u32..1_000_000_000)
            .prop_map(|(s, n)| DateTime::from_timestamp(s, n).unwrap()),
        1 => (0i64..100_000_000).prop_map(|s| DateTime::<Utc>::MAX_UTC - TimeDelta::seconds(s)),
        1 => (0i64..100_000_000).prop_map(|s| DateTime::<Utc>::MIN_UTC + TimeDelta::seconds(s)),
    ]
}

fn check_schedule(
    spec: &str,
    zone: Option<&str>,
    anchor: DateTime<Utc>,
    after: DateTime<Utc>,
) -> Result<(), TestCaseError> {
    let Ok(schedule) = Schedule::parse(spec, zone) else {
        return Ok(());
    };
    let schedule = schedule.with_anchor(anchor);
    let mut cursor = after;
    for _ in 0..4 {
        match schedule.next_after(cursor) {
            Some(next) => {
                prop_assert!(
                    next > cursor,
                    "{spec:?} in {zone:?}: next after {cursor} is {next}"
                );
                cursor = next;
            }
            None => break,
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn generated_schedules_fire_in_order(
        tokens in schedule_tokens(),
        zone in timezone(),
        anchor in instant(),
        after in instant(),
    ) {
        check_schedule(&tokens.concat(), zone.as_deref(), anchor, after)?;
    }

    #[test]
    fn mutated_schedules_never_panic(
        mut tokens in schedule_tokens(),
        mutations in prop::collection::vec(mutation(), 1..4),
        zone in timezone(),
        anchor in instant(),
        after in instant(),
    ) {
        mutate(&mut tokens, &mutations);
        check_schedule(&tokens.concat(), zone.as_deref(), anchor, after)?;
    }

    #[test]
    fn arbitrary_schedules_never_panic(spec in any::<String>(), zone in timezone()) {
        check_schedule(&spec, zone.as_deref(), DateTime::UNIX_EPOCH, DateTime::UNIX_EPOCH)?;
    }
}

// ---- job files ----

/// A TOML basic string of `text` (Rust's `{:?}` is close, but TOML spells
/// escapes differently).
fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML value of some type, mostly strings.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>().prop_map(|s| quoted(&s)),
        2 => duration_text().prop_map(|s| quoted(&s)),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => Just("99999999999999999999".to_owned()),
        1 => any::<bool>().prop_map(|b| b.to_string()),
        1 => Just("1.5".to_owned()),
        1 => Just("[]".to_owned()),
        1 => Just("{}".to_owned()),
        1 => Just("1979-05-27T07:32:00Z".to_owned()),
        1 => prop::collection::vec(any::<String>(), 0..3)
            .prop_map(|v| format!("[{}]", v.iter().map(|s| quoted(s)).collect::<Vec<_>>().join(", "))),
    ]
}

/// A job file as tokens: near-valid key = value lines and a few tables.
fn job_tokens() -> impl Strategy<Value = Vec<String>> {
    let valid_line = prop_oneof![
        schedule_tokens().prop_map(|t| ("schedule", quoted(&t.concat()))),
        timezone().prop_map(|z| ("timezone", quoted(z.as_deref().unwrap_or("UTC")))),
        prop::collection::vec("[a-z./]{0,6}", 0..3).prop_map(|v| (
            "command",
            format!(
                "[{}]",
                v.iter().map(|s| quoted(s)).collect::<Vec<_>>().join(", ")
            )
        )),
        prop::sample::select(vec!["noop", "fetch", "notify", "calendar", "teleport", ""])
            .prop_map(|b| ("builtin", quoted(b))),
        prop::sample::select(vec![".", "..", "/", "/nonexistent", ""])
            .prop_map(|w| ("workdir", quoted(w))),
        duration_text().prop_map(|d| ("timeout", quoted(&d))),
        duration_text().prop_map(|d| ("backoff", quoted(&d))),
        duration_text().prop_map(|d| ("jitter", quoted(&d))),
        prop::sample::select(vec!["skip", "queue", "kill", "allow", "Skip", ""])
            .prop_map(|o| ("overlap", quoted(o))),
        prop::sample::select(vec!["none", "once", "all", "every", ""])
            .prop_map(|c| ("catch_up", quoted(c))),
        prop_oneof![
            (0u32..10).prop_map(|n| n.to_string()),
            Just("-1".to_owned()),
            Just("4294967296".to_owned())
        ]
        .prop_map(|r| ("retries", r)),
        any::<bool>().prop_map(|b| ("enabled", b.to_string())),
        any::<bool>().prop_map(|b| ("system_metrics", b.to_string())),
        any::<String>().prop_map(|d| ("description", quoted(&d))),
        ("[a-zA-Z_]{1,8}|job|__x|1a|[^\\n]{0,5}", any::<String>())
            .prop_map(|(k, v)| ("labels", format!("{{ {} = {} }}", quoted(&k), quoted(&v)))),
        ("[A-Z_]{1,8}|A=B|[^\\n]{0,5}", any::<String>())
            .prop_map(|(k, v)| ("env", format!("{{ {} = {} }}", quoted(&k), quoted(&v)))),
        ("[a-z_]{1,8}", toml_value()).prop_map(|(k, v)| ("settings", format!("{{ {k} = {v} }}"))),
    ];
    let any_line = prop_oneof![
        8 => valid_line,
        1 => (prop::sample::select(vec![
            "schedule", "timezone", "command", "builtin", "timeout", "retries", "labels", "env",
            "settings", "comand", "schedul", "x",
        ]), toml_value()),
    ];
    (
        prop::collection::vec(any_line, 0..8),
        prop_oneof![Just("\n"), Just("\r\n")],
    )
        .prop_map(|(lines, end)| {
            let mut tokens = Vec::new();
            for (key, value) in lines {
                tokens.extend([key.to_owned(), " = ".to_owned(), value, end.to_owned()]);
            }
            tokens
        })
}

fn check_job_file(dir: &std::path::Path, text: &str) -> Result<(), TestCaseError> {
    let file = dir.join("fuzzed-job.toml");
    std::fs::write(&file, text).unwrap();
    let Err(errors) = JobSpec::from_file(&file, &JobDefaults::default()) else {
        return Ok(());
    };
    for error in errors.iter() {
        let message = error.to_string();
        let named = match error {
            ConfigError::Syntax { .. } => message.contains("line "),
            ConfigError::NoAction { .. } | ConfigError::BothActions { .. } => {
                message.contains("command") && message.contains("builtin")
            }
            // The key is quoted: it may be empty or odd text.
            ConfigError::UnknownKey { key, .. } => message.contains(&format!("{key:?}")),
            _ => error
                .key()
                .is_some_and(|key| key != "(top level)" && message.contains(key)),
        };
        prop_assert!(named, "{text:?}: the error names no key: {message}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn generated_job_files_name_the_key(tokens in job_tokens()) {
        let dir = tempfile::tempdir().unwrap();
        check_job_file(dir.path(), &tokens.concat())?;
    }

    #[test]
    fn mutated_job_files_name_the_key(
        mut tokens in job_tokens(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        mutate(&mut tokens, &mutations);
        let dir = tempfile::tempdir().unwrap();
        check_job_file(dir.path(), &tokens.concat())?;
    }

    #[test]
    fn arbitrary_job_files_never_panic(text in any::<String>()) {
        let dir = tempfile::tempdir().unwrap();
        check_job_file(dir.path(), &text)?;
    }
}

/// Job files the fuzzer found problems with, kept as plain cases.
#[test]
fn job_file_regressions() {
    let dir = tempfile::tempdir().unwrap();
    for text in [
        "schedule = \"* * * * *\"\n\"\" = \"* * * * *\"\n",
        "schedule = \"* * * * *\"\n\"a`b\" = 1\ncommand = [\"x\"]\n",
        "schedule = \"* * * * *\"\ncommand = [\"x\"]\nlabels = { \"a`b\" = \"1\" }\n",
        "schedule = \"* * * * *\"\ncommand = [\"x\"]\nlabels.\"a.b\" = 1\n",
        "schedule = \"* * * * *\"\ncommand = [\"x\"]\n[env]\n\"`x`\" = 1\n",
    ] {
        check_job_file(dir.path(), text).unwrap();
    }
}
