//! The files as written: serde structs that refuse unknown keys, and the
//! translation of TOML and serde errors into [`ConfigError`]s that name the
//! file and the dotted key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

use super::error::{ConfigError, ConfigErrors};
use super::job::{CatchUp, Overlap};

/// `config/pushguard.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub runner: RawRunner,
    #[serde(default)]
    pub gateway: RawGateway,
    #[serde(default)]
    pub defaults: RawDefaults,
    #[serde(default)]
    pub sink: RawSink,
}

/// `[sink]`: where runs go.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSink {
    pub kind: Option<SinkKind>,
    pub url: Option<String>,
    pub tenant: Option<String>,
}

/// `[sink] kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum SinkKind {
    Pushgateway,
    RemoteWrite,
}

/// `[runner]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRunner {
    pub listen: Option<String>,
    pub jobs_dir: Option<String>,
    pub state: Option<String>,
    pub shutdown_grace: Option<DurationText>,
    pub outbox_drain_interval: Option<DurationText>,
    pub api_token: Option<String>,
    pub api_token_file: Option<String>,
    pub log_tail_lines: Option<usize>,
    pub runner_id: Option<String>,
    pub lease: Option<DurationText>,
    pub trace_url: Option<String>,
}

/// `[gateway]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGateway {
    pub url: Option<String>,
    pub push_deadline: Option<DurationText>,
    pub retries: Option<u32>,
}

/// `[defaults]`: the job keys that may have a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    pub timezone: Option<String>,
    pub timeout: Option<DurationText>,
    pub overlap: Option<Overlap>,
    pub retries: Option<u32>,
    pub backoff: Option<DurationText>,
    pub jitter: Option<DurationText>,
    pub catch_up: Option<CatchUp>,
    pub labels: Option<BTreeMap<String, String>>,
}

/// `jobs/NAME.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJob {
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub command: Option<Vec<String>>,
    pub builtin: Option<String>,
    pub workdir: Option<String>,
    pub env: Option<BTreeMap<String, String>>,
    pub timeout: Option<DurationText>,
    pub overlap: Option<Overlap>,
    pub retries: Option<u32>,
    pub backoff: Option<DurationText>,
    pub jitter: Option<DurationText>,
    pub catch_up: Option<CatchUp>,
    pub labels: Option<BTreeMap<String, String>>,
    pub enabled: Option<bool>,
    pub system_metrics: Option<bool>,
    pub description: Option<String>,
    pub settings: Option<toml::Table>,
    pub sink: Option<RawSink>,
}

/// A duration as written; parsed during validation so the error can name
/// the key. Refuses bare numbers with a hint instead of guessing a unit.
#[derive(Debug, Clone)]
pub(super) struct DurationText(pub String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = DurationText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"30s\", \"10m\" or \"1h30m\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationText, E> {
                Ok(DurationText(v.to_owned()))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

/// Parses `text` (the contents of `file`) into `T`: TOML syntax errors with
/// line and column, then serde errors with the dotted key — every one of
/// them, not only the first: after each, the offending key is taken out and
/// the rest is read again, so `pushguard check` lists all the wrong keys and
/// values of a file at once.
pub(super) fn parse<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, ConfigErrors> {
    let mut table = syntax(file, text)?;
    let mut errors = Vec::new();
    // A bound on how many keys one file can have wrong, for safety.
    for _ in 0..64 {
        match toml::Value::Table(table.clone()).try_into::<T>() {
            Ok(value) => {
                return match ConfigErrors::new(errors) {
                    None => Ok(value),
                    Some(errors) => Err(errors),
                };
            }
            Err(e) => {
                let error = from_serde(file, &e);
                let key = match &error {
                    ConfigError::UnknownKey { key, .. } | ConfigError::InvalidValue { key, .. } => {
                        Some(key.clone())
                    }
                    _ => None,
                };
                errors.push(error);
                // A missing key, or one that cannot be taken out: stop here.
                if !key.is_some_and(|key| remove(&mut table, &key)) {
                    break;
                }
            }
        }
    }
    Err(ConfigErrors::new(errors).unwrap_or_else(|| {
        ConfigErrors::from(ConfigError::InvalidValue {
            file: file.to_owned(),
            key: "(top level)".to_owned(),
            reason: "too many problems to list".to_owned(),
        })
    }))
}

/// Takes the dotted `key` out of `table`; false when it is not there.
fn remove(table: &mut toml::Table, key: &str) -> bool {
    let mut parts = key.split('.').peekable();
    let mut current = table;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            return current.remove(part).is_some();
        }
        match current.get_mut(part) {
            Some(toml::Value::Table(inner)) => current = inner,
            _ => return false,
        }
    }
    false
}

/// The TOML syntax check, with line and column.
fn syntax(file: &Path, text: &str) -> Result<toml::Table, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|span| line_column(text, span.start))
            .unwrap_or((1, 1));
        ConfigError::Syntax {
            file: file.to_owned(),
            line,
            column,
            reason: e.message().trim().to_owned(),
        }
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Turns an error of the TOML value deserializer into a [`ConfigError`].
///
/// The deserializer keeps the key path private but shows it as a last line
/// "in `a.b`"; the unknown field and the expected names are quoted in
/// backticks in the message.
fn from_serde(file: &Path, error: &toml::de::Error) -> ConfigError {
    let message = error.message().trim();
    let rendered = error.to_string();
    let path = rendered
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("in `")?.strip_suffix('`'))
        .unwrap_or("")
        .to_owned();
    let join = |name: &str| {
        if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    let quoted = backticked(message);
    if message.starts_with("unknown field") {
        let name = quoted.first().cloned().unwrap_or_default();
        let suggestion = closest(&name, &quoted[1..]).map(&join);
        return ConfigError::UnknownKey {
            file: file.to_owned(),
            key: join(&name),
            suggestion,
        };
    }
    let reason = if message.starts_with("unknown variant") && !quoted.is_empty() {
        format!(
            "invalid value {:?} (use one of: {})",
            quoted[0],
            quoted[1..].join(", ")
        )
    } else {
        message.to_owned()
    };
    ConfigError::InvalidValue {
        file: file.to_owned(),
        key: if path.is_empty() {
            "(top level)".to_owned()
        } else {
            path
        },
        reason,
    }
}

/// The words quoted in backticks, in order.
fn backticked(message: &str) -> Vec<String> {
    message
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The known name nearest to `name`, if it is close enough to be a typo.
fn closest<'a>(name: &str, known: &'a [String]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_column("a = 1\nbé = x", 11), (2, 5));
        assert_eq!(line_column("", 0), (1, 1));
    }

    #[test]
    fn typos_get_a_suggestion() {
        let known = ["command".to_owned(), "schedule".to_owned()];
        assert_eq!(closest("comand", &known), Some("command"));
        assert_eq!(closest("shedule", &known), Some("schedule"));
        assert_eq!(closest("xyz", &known), None);
    }

    #[test]
    fn nested_unknown_keys_are_dotted() {
        let e = parse::<RawConfig>(Path::new("p.toml"), "[runner]\nlisen = \"x\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "p.toml: unknown key \"runner.lisen\" (did you mean \"runner.listen\"?)"
        );
    }

    #[test]
    fn type_errors_name_the_key() {
        let e = parse::<RawJob>(Path::new("j.toml"), "labels = { shard = 3 }\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "j.toml: labels.shard: invalid type: integer `3`, expected a string"
        );
        let e = parse::<RawJob>(Path::new("j.toml"), "timeout = 30\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "j.toml: timeout: invalid type: integer `30`, expected a duration string such as \"30s\", \"10m\" or \"1h30m\""
        );
        let e = parse::<RawJob>(Path::new("j.toml"), "overlap = \"maybe\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "j.toml: overlap: invalid value \"maybe\" (use one of: allow, forbid, replace)"
        );
    }
}
