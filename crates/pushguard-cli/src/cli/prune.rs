//! `pushguard prune`: delete the gateway groups whose last push is older than
//! a limit — the groups of hosts, pods and jobs that are gone, which a
//! Pushgateway otherwise keeps forever.
//!
//! The decision uses the gateway's own `push_time_seconds` (its JSON API).
//! A group with a push waiting in the state file's outbox is never deleted:
//! its newest result has not even arrived yet. Deletes go straight to the
//! gateway, never through the outbox: a prune delete spooled for later could
//! erase a fresher push made in between.

use pushguard_cli::{errln, outln};
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use pushguard::{Gateway, GroupingKey};
use regex::Regex;

use super::args::{Chain, GatewayArgs, StateArgs, classify, parse_duration, usage};

#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// Delete groups whose last push (push_time_seconds) is older than this
    /// (`7d`, `36h`).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    older_than: Duration,

    /// Only groups whose label matches, repeatable (all must match):
    /// `LABEL=VALUE` exactly, `LABEL=~REGEX` (anchored, as in PromQL). A
    /// label the group does not have matches as the empty value.
    #[arg(long = "match", value_name = "L=V|L=~RE", value_parser = parse_matcher)]
    matchers: Vec<Matcher>,

    /// List what would be deleted, delete nothing.
    #[arg(long)]
    dry_run: bool,

    #[command(flatten)]
    gateway: GatewayArgs,

    #[command(flatten)]
    state: StateArgs,
}

/// One `--match`.
#[derive(Debug, Clone)]
pub(crate) struct Matcher {
    label: String,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    Equal(String),
    Regex(Regex),
}

impl Matcher {
    fn matches(&self, key: &GroupingKey) -> bool {
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

fn parse_matcher(arg: &str) -> Result<Matcher, String> {
    let Some((label, rest)) = arg.split_once('=') else {
        return Err(format!("expected LABEL=VALUE or LABEL=~REGEX, got {arg:?}"));
    };
    pushguard::validate_label_name(label).map_err(|e| format!("{arg:?}: {e}"))?;
    let test = match rest.strip_prefix('~') {
        Some(pattern) => Test::Regex(
            Regex::new(&format!("^(?:{pattern})$"))
                .map_err(|e| format!("invalid regular expression {pattern:?} in {arg:?}: {e}"))?,
        ),
        None => Test::Equal(rest.to_owned()),
    };
    Ok(Matcher {
        label: label.to_owned(),
        test,
    })
}

/// What prune does with one group.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// Old enough and matching: deleted (or, dry, would be).
    Delete,
    /// Old enough and matching, but the outbox holds a push for it.
    Spooled,
}

/// The groups of `gateway` older than `older_than` (at `now`, Unix seconds)
/// that match every matcher, with what to do with each, oldest first.
pub(crate) fn plan(
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

/// The group paths with a live (not dead) outbox entry for `gateway`.
fn spooled_paths(args: &PruneArgs, gateway: &Gateway) -> anyhow::Result<BTreeSet<String>> {
    let Some(state) = args.state.open_existing()? else {
        return Ok(BTreeSet::new());
    };
    let entries = state.outbox().map_err(|e| usage(e.to_string()))?;
    let mut identities: BTreeMap<String, String> = BTreeMap::new();
    let mut paths = BTreeSet::new();
    for entry in entries.into_iter().filter(|e| !e.dead) {
        let identity = match identities.get(&entry.gateway) {
            Some(identity) => identity.clone(),
            None => {
                let identity = args
                    .gateway
                    .gateway_at(&entry.gateway)?
                    .identity()
                    .to_owned();
                identities.insert(entry.gateway.clone(), identity.clone());
                identity
            }
        };
        if identity == gateway.identity() {
            paths.insert(entry.path);
        }
    }
    Ok(paths)
}

fn age(seconds: f64) -> String {
    humantime::format_duration(Duration::from_secs(seconds.max(0.0) as u64)).to_string()
}

pub(crate) fn prune(args: PruneArgs) -> anyhow::Result<ExitCode> {
    if args.gateway.is_remote_write() {
        return Err(usage(
            "prune deletes Pushgateway groups; a remote-write receiver keeps samples, \
             which its own retention ages out (drop --sink remote-write)",
        ));
    }
    let gateway = args.gateway.gateway()?;
    let spooled = spooled_paths(&args, &gateway)?;
    let groups = gateway.groups().map_err(classify)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut failed = false;
    for (key, pushed, verdict) in plan(groups, &args.matchers, args.older_than, now, &spooled) {
        let ago = age(now - pushed);
        match verdict {
            Verdict::Spooled => outln!(
                "kept {}: last push {ago} ago, but a push for it waits in the outbox",
                key.display()
            ),
            Verdict::Delete if args.dry_run => {
                outln!("would delete {}: last push {ago} ago", key.display());
            }
            Verdict::Delete => match gateway.delete(&key) {
                Ok(_) => outln!("deleted {}: last push {ago} ago", key.display()),
                Err(error) => {
                    failed = true;
                    errln!(
                        "pushguard: cannot delete {}: {}",
                        key.display(),
                        Chain(&error)
                    );
                }
            },
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
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

    #[test]
    fn matchers_parse_and_name_bad_input() {
        let m = parse_matcher("host=~db-[0-9]+").unwrap();
        assert!(m.matches(&key("j", &[("host", "db-12")])));
        assert!(!m.matches(&key("j", &[("host", "xdb-12")])), "anchored");
        assert!(!m.matches(&key("j", &[])));
        let absent = parse_matcher("host=").unwrap();
        assert!(absent.matches(&key("j", &[])), "absent is empty");
        assert!(parse_matcher("job=j").unwrap().matches(&key("j", &[])));
        for (bad, named) in [
            ("host", "\"host\""),
            ("2x=1", "\"2x=1\""),
            ("h=~(", "\"(\""),
        ] {
            let error = parse_matcher(bad).unwrap_err();
            assert!(error.contains(named), "{error}");
        }
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
        let matchers = [parse_matcher("job=~a|b").unwrap()];
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
