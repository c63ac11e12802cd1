//! `pushguard prune` against a real Pushgateway: old and new groups (by the
//! gateway's own `push_time_seconds`), `--dry-run`, `--match`, and a group
//! with a push waiting in the outbox left alone.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::harness::{ProxyMode, Pushgateway, SwitchProxy, pushguard, wait_until};

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn push(dir: &Path, gateway: &str, job: &str, host: Option<&str>) -> Output {
    let mut cmd = pushguard(dir);
    cmd.args([
        "push",
        "--gateway",
        gateway,
        "--job",
        job,
        "--push-deadline",
        "300ms",
    ])
    .args(["--metric", "rows=1"]);
    if let Some(host) = host {
        cmd.args(["--label", &format!("host={host}")]);
    }
    cmd.output().expect("run pushguard push")
}

fn prune(dir: &Path, gateway: &str, args: &[&str]) -> Output {
    let mut cmd: Command = pushguard(dir);
    cmd.args(["prune", "--gateway", gateway]).args(args);
    cmd.output().expect("run pushguard prune")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The groups as `job/host` (host `-` when absent), sorted.
fn held(gw: &Pushgateway) -> Vec<String> {
    let mut groups: Vec<String> = gw
        .groups()
        .iter()
        .map(|g| {
            let labels = g.labels();
            let get = |name: &str| {
                labels
                    .iter()
                    .find(|(k, _)| k == name)
                    .map_or("-".to_owned(), |(_, v)| v.clone())
            };
            format!("{}/{}", get("job"), get("host"))
        })
        .collect();
    groups.sort();
    groups
}

#[test]
fn prune_deletes_old_matching_groups_and_keeps_spooled_ones() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start();
    let proxy = SwitchProxy::start(ProxyMode::Forward(gw.port));
    let url = proxy.url.clone();
    let old = [
        ("nightly", Some("gone-1")),
        ("nightly", Some("gone-3")),
        ("nightly", Some("db-2")),
        ("other", None),
    ];
    for (job, host) in old {
        let out = push(dir.path(), &url, job, host);
        assert!(out.status.success(), "{}", text(&out));
    }
    let pushed = unix_now();
    // The old groups must be older than the limit by the gateway's clock
    // (the same machine's): wait for that condition, not a fixed time.
    wait_until(
        "the first pushes to be 2 s old",
        Duration::from_secs(10),
        || unix_now() > pushed + 2.2,
    );
    // gone-3 gets a newer push that waits in the outbox: the gateway is
    // unreachable for it.
    proxy.set(ProxyMode::Down);
    let out = push(dir.path(), &url, "nightly", Some("gone-3"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    proxy.set(ProxyMode::Forward(gw.port));
    let out = push(dir.path(), &url, "nightly", Some("fresh"));
    assert!(out.status.success(), "{}", text(&out));
    let all = vec![
        "nightly/db-2",
        "nightly/fresh",
        "nightly/gone-1",
        "nightly/gone-3",
        "other/-",
    ];
    assert_eq!(held(&gw), all);

    let out = prune(dir.path(), &url, &["--older-than", "2s", "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    let report = text(&out);
    for line in [
        r#"would delete {job="nightly",host="db-2"}"#,
        r#"would delete {job="nightly",host="gone-1"}"#,
        r#"would delete {job="other"}"#,
        r#"kept {job="nightly",host="gone-3"}"#,
    ] {
        assert!(report.contains(line), "{line}: {report}");
    }
    assert!(!report.contains("fresh"), "{report}");
    assert_eq!(held(&gw), all, "--dry-run deletes nothing");

    let out = prune(
        dir.path(),
        &url,
        &[
            "--older-than",
            "2s",
            "--match",
            "job=nightly",
            "--match",
            "host=~gone-.*",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let report = text(&out);
    assert!(
        report.contains(r#"deleted {job="nightly",host="gone-1"}"#),
        "{report}"
    );
    assert!(report.contains("waits in the outbox"), "{report}");
    assert_eq!(
        held(&gw),
        vec!["nightly/db-2", "nightly/fresh", "nightly/gone-3", "other/-"]
    );

    let out = prune(
        dir.path(),
        &url,
        &["--older-than", "2s", "--match", "host="],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        held(&gw),
        vec!["nightly/db-2", "nightly/fresh", "nightly/gone-3"]
    );
}

#[test]
fn prune_mistakes_are_usage_errors_naming_the_value() {
    let dir = tempfile::tempdir().unwrap();
    for (args, named) in [
        (vec!["--older-than", "soon"], "\"soon\""),
        (vec!["--older-than", "1d", "--match", "host"], "\"host\""),
        (
            vec!["--older-than", "1d", "--match", "host=~(unclosed"],
            "\"(unclosed\"",
        ),
    ] {
        let out = prune(dir.path(), "http://127.0.0.1:9", &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(named), "{args:?}: {}", text(&out));
    }
    // The state file must be readable: without it, spooled groups are unknown.
    let out = prune(dir.path(), "http://127.0.0.1:9", &["--older-than", "1d"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no state file"), "{}", text(&out));
    let out = push(dir.path(), "http://127.0.0.1:9", "j", None);
    assert_eq!(out.status.code(), Some(1), "spooled: {}", text(&out));
    let out = prune(dir.path(), "http://127.0.0.1:9", &["--older-than", "1d"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("127.0.0.1:9"), "{}", text(&out));
}

#[test]
fn the_runner_prunes_on_a_schedule_with_builtin_prune() {
    use crate::runner::{RunnerProcess, workspace, write_job};
    let gw = Pushgateway::start();
    let dir = workspace();
    for host in ["gone-1", "gone-2", "db-2"] {
        let out = push(dir.path(), &gw.url, "nightly", Some(host));
        assert!(out.status.success(), "{}", text(&out));
    }
    let pushed = unix_now();
    wait_until(
        "the first pushes to be 2 s old",
        Duration::from_secs(10),
        || unix_now() > pushed + 2.2,
    );
    let out = push(dir.path(), &gw.url, "nightly", Some("gone-fresh"));
    assert!(out.status.success(), "{}", text(&out));
    write_job(
        dir.path(),
        "prune-old",
        "builtin = \"prune\"\nschedule = \"* * * * * *\"\n\
         [settings]\nolder_than = \"2s\"\nmatch = [\"host=~gone-.*\", \"job=nightly\"]\n",
    );
    let runner = RunnerProcess::start(dir.path(), &gw.url);
    runner.wait_until("the old groups pruned", Duration::from_secs(20), || {
        !held(&gw)
            .iter()
            .any(|g| g == "nightly/gone-1" || g == "nightly/gone-2")
    });
    // Not matching, or pushed since: kept (the fresh one may age past the
    // limit meanwhile and go too, as it should).
    assert!(
        held(&gw).contains(&"nightly/db-2".to_owned()),
        "{:?}",
        held(&gw)
    );
    let runs = runner.runs("prune-old", 50);
    let output: String = runs
        .iter()
        .filter_map(|r| r["output"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        output.contains("deleted") && output.contains("gone-1"),
        "{output}"
    );
    assert!(runs.iter().all(|r| r["outcome"] == "success"), "{runs:#?}");
}
