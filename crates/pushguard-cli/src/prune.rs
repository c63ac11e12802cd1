//! Pruning gateway groups that outlived their jobs: the groups of hosts,
//! pods and jobs that are gone, which a Pushgateway otherwise keeps forever.
//! One owner for `pushguard prune` and the runner's `builtin = "prune"`.
//!
//! The decision uses the gateway's own `push_time_seconds` (its JSON API).
//! A group with a push waiting in the state's outbox is never deleted: its
//! newest result has not even arrived yet. Deletes go straight to the
//! gateway, never through the outbox: a prune delete spooled for later could
//! erase a fresher push made in between.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pushguard::{Gateway, GroupingKey, PushError, State, StateError};
use regex::Regex;

/// One `--match` (or one entry of a prune job's `match` list):
/// `LABEL=VALUE` exactly, or `LABEL=~REGEX` anchored as in PromQL. A label
/// the group does not have matches as the empty value.
#[derive(Debug, Clone)]
pub struct Matcher {
    label: String,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    Equal(String),
    Regex(Regex),
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Matcher) -> bool {
        self.label == other.label
            && match (&self.test, &other.test) {
                (Test::Equal(a), Test::Equal(b)) => a == b,
                (Test::Regex(a), Test::Regex(b)) => a.as_str() == b.as_str(),
                _ => false,
            }
    }
}

impl std::str::FromStr for Matcher {
    type Err = String;

    /// Parses `LABEL=VALUE` or `LABEL=~REGEX`; the error names the input.
    fn from_str(arg: &str) -> Result<Matcher, String> {
        let Some((label, rest)) = arg.split_once('=') else {
            return Err(format!("expected LABEL=VALUE or LABEL=~REGEX, got {arg:?}"));
        };
        pushguard::validate_label_name(label).map_err(|e| format!("{arg:?}: {e}"))?;
        let test = match rest.strip_prefix('~') {
            Some(pattern) => {
                Test::Regex(Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
                    format!("invalid regular expression {pattern:?} in {arg:?}: {e}")
                })?)
            }
            None => Test::Equal(rest.to_owned()),
        };
        Ok(Matcher {
            label: label.to_owned(),
            test,
        })
    }
}

impl Matcher {
    /// Whether the group `key` matches.
    pub fn matches(&self, key: &GroupingKey) -> bool {
        let value = if self.label == "job" {
            key.job()
        } else {
            key.labels().get(&self.label).map_or("", String::as_str)
        };
        match &self.test {
            Test::Equal(wanted) => value == wanted,
            Test::Regex(regex) => regex.is_match(value),
        }
    }
}

/// What a prune does with one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Old enough and matching: deleted (or, dry, would be).
    Delete,
    /// Old enough and matching, but the outbox holds a push for it.
    Spooled,
}

/// What to prune: the settings of `pushguard prune` and of a prune job.
#[derive(Debug, Clone, PartialEq)]
pub struct Prune {
    /// Groups whose last push is older than this go.
    pub older_than: Duration,
    /// Only groups matching all of these.
    pub matchers: Vec<Matcher>,
    /// List, delete nothing.
    pub dry_run: bool,
}

/// One group a prune decided on.
#[derive(Debug, Clone, PartialEq)]
pub struct Pruned {
    /// The group.
    pub key: GroupingKey,
    /// Its last push (`push_time_seconds`, Unix seconds).
    pub pushed: f64,
    /// What was decided.
    pub verdict: Verdict,
    /// Why its deletion failed, if it did.
    pub error: Option<String>,
}

impl Pruned {
    /// One line saying what happened to the group, its age at `now`.
    pub fn describe(&self, now: f64, dry_run: bool) -> String {
        let ago =
            humantime::format_duration(Duration::from_secs((now - self.pushed).max(0.0) as u64));
        let group = self.key.display();
        match (&self.verdict, &self.error) {
            (Verdict::Spooled, _) => {
                format!("kept {group}: last push {ago} ago, but a push for it waits in the outbox")
            }
            (Verdict::Delete, _) if dry_run => format!("would delete {group}: last push {ago} ago"),
            (Verdict::Delete, None) => format!("deleted {group}: last push {ago} ago"),
            (Verdict::Delete, Some(error)) => format!("cannot delete {group}: {error}"),
        }
    }
}

/// The current time in Unix seconds.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The groups older than `older_than` (at `now`, Unix seconds) that match
/// every matcher, with what to do with each, oldest first.
pub fn plan(
    groups: Vec<(GroupingKey, f64)>,
    matchers: &[Matcher],
    older_than: Duration,
    now: f64,
    spooled: &BTreeSet<String>,
) -> Vec<(GroupingKey, f64, Verdict)> {
    let limit = now - older_than.as_secs_f64();
    let mut plan: Vec<_> = groups
        .into_iter()
        .filter(|(key, pushed)| *pushed < limit && matchers.iter().all(|m| m.matches(key)))
        .map(|(key, pushed)| {
            let verdict = if spooled.contains(&key.path()) {
                Verdict::Spooled
            } else {
                Verdict::Delete
            };
            (key, pushed, verdict)
        })
        .collect();
    plan.sort_by(|a, b| a.1.total_cmp(&b.1));
    plan
}

/// The group paths with a live (not dead) outbox entry for `gateway`:
/// `identity_of` gives the gateway identity of an entry's URL.
pub fn spooled_paths(
    state: &State,
    gateway: &Gateway,
    mut identity_of: impl FnMut(&str) -> Option<String>,
) -> Result<BTreeSet<String>, StateError> {
    let mut paths = BTreeSet::new();
    for entry in state.outbox()?.into_iter().filter(|e| !e.dead) {
        if identity_of(&entry.gateway).as_deref() == Some(gateway.identity()) {
            paths.insert(entry.path);
        }
    }
    Ok(paths)
}

/// Reads the gateway's groups and deletes (unless `dry_run`) the old,
/// matching ones that have nothing spooled; a failed deletion is reported
/// on its group and the others go on.
pub fn prune(
    gateway: &Gateway,
    spooled: &BTreeSet<String>,
    settings: &Prune,
) -> Result<Vec<Pruned>, PushError> {
    let groups = gateway.groups()?;
    let planned = plan(
        groups,
        &settings.matchers,
        settings.older_than,
        now(),
        spooled,
    );
    Ok(planned
        .into_iter()
        .map(|(key, pushed, verdict)| {
            let error = match verdict {
                Verdict::Delete if !settings.dry_run => gateway.delete(&key).err().map(|e| {
                    let mut text = e.to_string();
                    let mut source = std::error::Error::source(&e);
                    while let Some(cause) = source {
                        text.push_str(": ");
                        text.push_str(&cause.to_string());
                        source = cause.source();
                    }
                    text
                }),
                _ => None,
            };
            Pruned {
                key,
                pushed,
                verdict,
                error,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(job: &str, labels: &[(&str, &str)]) -> GroupingKey {
        let mut key = GroupingKey::new(job).unwrap();
        for (name, value) in labels {
            key = key.label(*name, *value).unwrap();
        }
        key
    }

    fn matcher(text: &str) -> Result<Matcher, String> {
        text.parse()
    }

    #[test]
    fn matchers_parse_and_name_bad_input() {
        let m = matcher("host=~db-[0-9]+").unwrap();
        assert!(m.matches(&key("j", &[("host", "db-12")])));
        assert!(!m.matches(&key("j", &[("host", "xdb-12")])), "anchored");
        assert!(!m.matches(&key("j", &[])));
        let absent = matcher("host=").unwrap();
        assert!(absent.matches(&key("j", &[])), "absent is empty");
        assert!(matcher("job=j").unwrap().matches(&key("j", &[])));
        for (bad, named) in [
            ("host", "\"host\""),
            ("2x=1", "\"2x=1\""),
            ("h=~(", "\"(\""),
        ] {
            let error = matcher(bad).unwrap_err();
            assert!(error.contains(named), "{error}");
        }
        assert_eq!(matcher("a=~x+").unwrap(), matcher("a=~x+").unwrap());
        assert_ne!(matcher("a=~x+").unwrap(), matcher("a=x+").unwrap());
    }

    #[test]
    fn the_plan_keeps_new_unmatched_and_spooled_groups() {
        let old = key("a", &[("host", "gone")]);
        let spooled = key("b", &[]);
        let groups = vec![
            (key("new", &[]), 990.0),
            (old.clone(), 100.0),
            (spooled.clone(), 50.0),
            (key("other", &[("host", "x")]), 10.0),
        ];
        let matchers = [matcher("job=~a|b").unwrap()];
        let outbox = BTreeSet::from([spooled.path()]);
        let plan = plan(groups, &matchers, Duration::from_secs(60), 1000.0, &outbox);
        assert_eq!(
            plan,
            vec![
                (spooled, 50.0, Verdict::Spooled),
                (old, 100.0, Verdict::Delete)
            ]
        );
    }
}
