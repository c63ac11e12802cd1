//! The remote-write sink against Debian's real Prometheus started with
//! `--web.enable-remote-write-receiver`: every run read back through the
//! query API, the outbox when the receiver is down, and a refused write.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{ProxyMode, SwitchProxy, pushguard, wait_until};
use crate::prom::Prometheus;

/// `pushguard exec --sink remote-write --remote-write-url URL --job JOB`.
fn exec(dir: &Path, url: &str, job: &str) -> Command {
    let mut cmd = pushguard(dir);
    cmd.args(["exec", "--sink", "remote-write", "--remote-write-url", url])
        .args(["--job", job]);
    cmd
}

fn output(cmd: &mut Command) -> Output {
    cmd.output().expect("run pushguard")
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The receiver's port, for a proxy that forwards to it.
fn port(prom: &Prometheus) -> u16 {
    prom.url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port in the receiver's URL")
}

/// The one series `promql` selects, once Prometheus returns it.
fn series(prom: &Prometheus, promql: &str) -> Value {
    let mut found = Vec::new();
    wait_until(
        &format!("{promql} in Prometheus"),
        Duration::from_secs(10),
        || {
            found = prom.query(promql);
            !found.is_empty()
        },
    );
    assert_eq!(found.len(), 1, "{promql}: {found:?}");
    found.remove(0)
}

/// The value of the one series `promql` selects.
fn value(prom: &Prometheus, promql: &str) -> f64 {
    series(prom, promql)["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{promql}: no value"))
}

/// The label set of a query result, without `__name__`.
fn labels(series: &Value) -> Vec<(String, String)> {
    let mut labels: Vec<_> = series["metric"]
        .as_object()
        .expect("a metric object")
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    labels.sort();
    labels
}

/// The values of the samples `selector` holds over the last ten minutes,
/// oldest first.
fn history(prom: &Prometheus, selector: &str) -> Vec<f64> {
    let found = prom.query(&format!("{selector}[10m]"));
    assert_eq!(found.len(), 1, "{selector}: {found:?}");
    found[0]["values"]
        .as_array()
        .expect("a range of samples")
        .iter()
        .map(|pair| {
            pair[1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN)
        })
        .collect()
}

fn outbox_json(dir: &Path, state: &Path) -> Vec<Value> {
    let out = output(
        pushguard(dir)
            .args(["outbox", "--json", "--state"])
            .arg(state),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("outbox JSON")
}

#[test]
fn exec_runs_reach_prometheus_with_every_contract_family() {
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start_receiver(dir.path(), &[]);
    let url = prom.write_url();
    let run = |extra: &[&str], command: &[&str]| {
        let mut cmd = exec(dir.path(), &url, "backup");
        cmd.args(["--label", "host=db/1", "--expected-interval", "30m"])
            .args(extra)
            .arg("--")
            .args(command);
        output(&mut cmd)
    };
    // Three processes: the totals come from the state file.
    let ok = run(&[], &["true"]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    assert!(ok.stderr.is_empty(), "{}", stderr(&ok));
    let failed = run(&[], &["sh", "-c", "exit 3"]);
    assert_eq!(code(&failed), 3, "{}", stderr(&failed));
    let slow = run(
        &["--timeout", "200ms", "--kill-after", "1s"],
        &["sleep", "30"],
    );
    assert_eq!(code(&slow), 124, "{}", stderr(&slow));

    let group = r#"job="backup",host="db/1""#;
    let expected = vec![
        ("host".to_owned(), "db/1".to_owned()),
        ("job".to_owned(), "backup".to_owned()),
    ];
    for family in [
        "job_last_start_timestamp_seconds",
        "job_last_completion_timestamp_seconds",
        "job_last_success_timestamp_seconds",
        "job_last_failure_timestamp_seconds",
        "job_duration_seconds",
        "job_last_exit_code",
        "job_last_run_failed",
        "job_expected_interval_seconds",
    ] {
        let found = series(&prom, &format!("{family}{{{group}}}"));
        assert_eq!(
            labels(&found),
            expected,
            "{family}: no instance, no other label"
        );
    }
    assert_eq!(
        value(&prom, &format!("job_last_exit_code{{{group}}}")),
        124.0
    );
    assert_eq!(
        value(&prom, &format!("job_last_run_failed{{{group}}}")),
        1.0
    );
    assert_eq!(
        value(&prom, &format!("job_expected_interval_seconds{{{group}}}")),
        1800.0
    );
    // The success was pushed by the first run only, and still answers.
    let success = value(
        &prom,
        &format!("job_last_success_timestamp_seconds{{{group}}}"),
    );
    let failure = value(
        &prom,
        &format!("job_last_failure_timestamp_seconds{{{group}}}"),
    );
    assert!(success < failure, "{success} < {failure}");
    for (outcome, total) in [
        ("success", 1.0),
        ("failure", 1.0),
        ("timeout", 1.0),
        ("skipped", 0.0),
    ] {
        let selector = format!(r#"job_runs_total{{{group},outcome="{outcome}"}}"#);
        assert_eq!(value(&prom, &selector), total, "{selector}");
        // Cumulative across the three processes: every run wrote every total.
        let samples = history(&prom, &selector);
        assert_eq!(samples.len(), 3, "{selector}: {samples:?}");
        assert!(
            samples.windows(2).all(|w| w[0] <= w[1]),
            "{selector}: {samples:?}"
        );
    }
    // Samples carry the run's end: completion time and sample time agree.
    let completion = value(
        &prom,
        &format!("job_last_completion_timestamp_seconds{{{group}}}"),
    );
    let stamped = value(
        &prom,
        &format!("timestamp(job_last_completion_timestamp_seconds{{{group}}})"),
    );
    assert!(
        (stamped - completion).abs() < 0.002,
        "{stamped} vs {completion}"
    );
}

#[test]
fn user_metrics_and_histograms_arrive_intact() {
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start_receiver(dir.path(), &[]);
    let text = "# HELP load_seconds Time to load.\n# TYPE load_seconds histogram\n\
                load_seconds_bucket{le=\"0.5\"} 1\nload_seconds_bucket{le=\"1\"} 3\n\
                load_seconds_bucket{le=\"+Inf\"} 4\nload_seconds_sum 3.25\nload_seconds_count 4\n\
                # TYPE rows_total counter\nrows_total{table=\"a \\\"quoted\\\" \\\\ name\"} 1200\n";
    let file = dir.path().join("metrics.prom");
    std::fs::write(&file, text).unwrap();
    let out = output(
        pushguard(dir.path())
            .args([
                "push",
                "--sink",
                "remote-write",
                "--remote-write-url",
                &prom.write_url(),
            ])
            .args(["--job", "etl", "--label", "env=prod", "--file"])
            .arg(&file),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for (le, count) in [("0.5", 1.0), ("1", 3.0), ("+Inf", 4.0)] {
        let selector = format!(r#"load_seconds_bucket{{job="etl",env="prod",le="{le}"}}"#);
        assert_eq!(value(&prom, &selector), count, "{selector}");
    }
    assert_eq!(
        value(&prom, r#"load_seconds_sum{job="etl",env="prod"}"#),
        3.25
    );
    assert_eq!(
        value(&prom, r#"load_seconds_count{job="etl",env="prod"}"#),
        4.0
    );
    assert_eq!(
        value(
            &prom,
            r#"histogram_quantile(0.5, load_seconds_bucket{job="etl"})"#
        ),
        0.75
    );
    let rows = series(&prom, r#"rows_total{job="etl"}"#);
    assert_eq!(rows["metric"]["table"], r#"a "quoted" \ name"#);
    assert_eq!(rows["value"][1], "1200");
}

#[test]
fn runs_spooled_while_the_receiver_is_down_arrive_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start_receiver(dir.path(), &[]);
    let proxy = SwitchProxy::start(ProxyMode::Down);
    let url = format!("{}/api/v1/write", proxy.url);
    let codes = [0, 3, 0, 5, 0];
    for code_wanted in &codes[..4] {
        let out = output(
            exec(dir.path(), &url, "nightly")
                .args(["--push-deadline", "300ms", "--", "sh", "-c"])
                .arg(format!("exit {code_wanted}")),
        );
        assert_eq!(code(&out), *code_wanted, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("kept in the outbox"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(
        outbox_json(dir.path(), &dir.path().join("pushguard-state.sqlite")).len(),
        4
    );
    proxy.set(ProxyMode::Forward(port(&prom)));
    // The next run delivers the four spooled ones first, oldest first: a
    // newer sample before an older one would be refused as out of order.
    let out = output(exec(dir.path(), &url, "nightly").args(["--", "true"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    assert!(outbox_json(dir.path(), &dir.path().join("pushguard-state.sqlite")).is_empty());
    let exits = history(&prom, r#"job_last_exit_code{job="nightly"}"#);
    let wanted: Vec<f64> = codes.iter().map(|&c| f64::from(c)).collect();
    assert_eq!(exits, wanted, "every run, in order");
    assert_eq!(
        value(&prom, r#"job_runs_total{job="nightly",outcome="success"}"#),
        3.0
    );
    assert_eq!(
        value(&prom, r#"job_runs_total{job="nightly",outcome="failure"}"#),
        2.0
    );
}

#[test]
fn a_refused_write_is_a_dead_letter_and_later_runs_go_through() {
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start_receiver(dir.path(), &[]);
    let proxy = SwitchProxy::start(ProxyMode::Down);
    let late_url = format!("{}/api/v1/write", proxy.url);
    let late = dir.path().join("late.sqlite");
    let other = dir.path().join("other.sqlite");
    // One host's run waits in its outbox while another host's newer run of
    // the same job arrives: the older one is then out of order.
    let out = output(
        exec(dir.path(), &late_url, "shared")
            .arg("--state")
            .arg(&late)
            .args(["--push-deadline", "300ms", "--", "true"]),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = output(
        exec(dir.path(), &prom.write_url(), "shared")
            .arg("--state")
            .arg(&other)
            .args(["--", "true"]),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));

    proxy.set(ProxyMode::Forward(port(&prom)));
    let out = output(
        pushguard(dir.path())
            .args(["outbox", "--flush", "--state"])
            .arg(&late),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("refused 1"), "{}", stderr(&out));
    let entries = outbox_json(dir.path(), &late);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry["status"], "dead", "{entry}");
    assert_eq!(entry["method"], "WRITE", "{entry}");
    let reason = entry["last_error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("remote-write receiver refused")
            && reason.contains("400")
            && reason.contains("out of order sample"),
        "the receiver's reason: {reason}"
    );

    // The dead letter does not hold the group up.
    let out = output(
        exec(dir.path(), &late_url, "shared")
            .arg("--state")
            .arg(&late)
            .args(["--", "sh", "-c", "exit 7"]),
    );
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    assert_eq!(value(&prom, r#"job_last_exit_code{job="shared"}"#), 7.0);
    assert_eq!(
        outbox_json(dir.path(), &late).len(),
        1,
        "only the dead letter"
    );
}

#[test]
fn the_runner_writes_its_runs_with_a_sink_table() {
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start_receiver(dir.path(), &[]);
    let config = dir.path().join("pushguard.toml");
    std::fs::write(
        &config,
        format!(
            "[runner]\nlisten = \"127.0.0.1:0\"\njobs_dir = \"jobs\"\n\
             [sink]\nkind = \"remote-write\"\nurl = \"{}\"\ntenant = \"team-a\"\n",
            prom.write_url()
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("jobs")).unwrap();
    std::fs::write(
        dir.path().join("jobs/tick.toml"),
        "schedule = \"@every 1h\"\ncommand = [\"true\"]\nlabels = { team = \"ops\" }\n",
    )
    .unwrap();
    let out = output(
        pushguard(dir.path())
            .args(["trigger", "tick", "--config"])
            .arg(&config),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        value(
            &prom,
            r#"job_runs_total{job="tick",team="ops",outcome="success"}"#
        ),
        1.0
    );
    assert!(series(&prom, r#"job_expected_interval_seconds{job="tick"}"#)["value"][1] == "3600");
}

#[test]
fn sink_mistakes_are_usage_errors_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let out = output(pushguard(dir.path()).args([
        "exec",
        "--sink",
        "remote-write",
        "--job",
        "j",
        "--",
        "true",
    ]));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--remote-write-url"),
        "{}",
        stderr(&out)
    );

    let url = "http://127.0.0.1:9/api/v1/write";
    let out = output(exec(dir.path(), url, "j").args(["--replace", "--", "true"]));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--replace"), "{}", stderr(&out));

    let out = output(
        pushguard(dir.path())
            .args([
                "delete",
                "--sink",
                "remote-write",
                "--remote-write-url",
                url,
            ])
            .args(["--job", "j"]),
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no group to delete"),
        "{}",
        stderr(&out)
    );

    let out = output(
        pushguard(dir.path())
            .args(["exec", "--sink", "remote-write", "--remote-write-url"])
            .args(["ftp://x/write", "--job", "j", "--", "true"]),
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("\"ftp://x/write\""),
        "{}",
        stderr(&out)
    );

    let config = dir.path().join("pushguard.toml");
    std::fs::write(&config, "[sink]\nkind = \"remote-write\"\n").unwrap();
    let out = output(
        pushguard(dir.path())
            .args(["check", "--config"])
            .arg(&config),
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("sink.url"), "{}", stderr(&out));
    std::fs::write(&config, "[sink]\nkind = \"remote-writer\"\n").unwrap();
    let out = output(
        pushguard(dir.path())
            .args(["check", "--config"])
            .arg(&config),
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("remote-writer"), "{}", stderr(&out));
}

#[test]
fn the_runner_keeps_a_job_visible_longer_than_the_lookback_between_runs() {
    use crate::runner::{RunnerProcess, workspace, write_job};
    let dir = workspace();
    // Runs every 6 s; a sample is visible for 2 s: without the refresh the
    // job would vanish from instant queries between two runs.
    let prom = Prometheus::start_receiver(dir.path(), &["--query.lookback-delta=2s"]);
    let config = dir.path().join("pushguard.toml");
    std::fs::write(
        &config,
        format!(
            "[runner]\noutbox_drain_interval = \"500ms\"\n\
             [sink]\nkind = \"remote-write\"\nurl = \"{}\"\n",
            prom.write_url()
        ),
    )
    .unwrap();
    write_job(
        dir.path(),
        "tick",
        "schedule = \"*/6 * * * * *\"\ncommand = [\"true\"]\n",
    );
    let config_env = config.to_string_lossy().into_owned();
    let _runner = RunnerProcess::start_with(
        dir.path(),
        "http://127.0.0.1:9",
        &[("PUSHGUARD_CONFIG", config_env.as_str())],
    );
    let completion = r#"job_last_completion_timestamp_seconds{job="tick"}"#;
    let first = value(&prom, completion);
    let mut refreshed = std::collections::BTreeSet::new();
    let mut gaps = 0;
    // Until the next run: the job must answer every instant query.
    wait_until("the next run of tick", Duration::from_secs(20), || {
        let found = prom.query(&format!("timestamp({completion})"));
        let Some(stamp) = found.first().and_then(|s| s["value"][1].as_str()) else {
            gaps += 1;
            return false;
        };
        refreshed.insert(stamp.to_owned());
        prom.value(completion).is_some_and(|v| v != first)
    });
    assert_eq!(
        gaps, 0,
        "the job vanished from instant queries between runs"
    );
    assert!(
        refreshed.len() >= 3,
        "the run was written again between runs: {refreshed:?}"
    );
    assert_eq!(
        value(
            &prom,
            r#"last_over_time(job_runs_total{job="tick",outcome="success"}[1m])"#
        ),
        2.0
    );
}

#[test]
fn a_job_file_sink_sends_that_jobs_runs_to_its_receiver_and_the_others_to_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start_receiver(dir.path(), &[]);
    let gw = crate::harness::Pushgateway::start();
    let config = dir.path().join("pushguard.toml");
    std::fs::write(
        &config,
        format!(
            "[runner]\nlisten = \"127.0.0.1:0\"\njobs_dir = \"jobs\"\n[gateway]\nurl = \"{}\"\n",
            gw.url
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("jobs")).unwrap();
    std::fs::write(
        dir.path().join("jobs/written.toml"),
        format!(
            "schedule = \"@every 1h\"\ncommand = [\"true\"]\n\
             [sink]\nkind = \"remote-write\"\nurl = \"{}\"\ntenant = \"team-b\"\n",
            prom.write_url()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("jobs/pushed.toml"),
        "schedule = \"@every 1h\"\ncommand = [\"true\"]\n",
    )
    .unwrap();
    for job in ["written", "pushed"] {
        let out = output(
            pushguard(dir.path())
                .args(["trigger", job, "--config"])
                .arg(&config),
        );
        assert_eq!(code(&out), 0, "{job}: {}", stderr(&out));
    }
    assert_eq!(
        value(&prom, r#"job_runs_total{job="written",outcome="success"}"#),
        1.0
    );
    assert!(
        gw.group("written", &[]).is_none(),
        "the job's sink is not the gateway"
    );
    let pushed = gw
        .group("pushed", &[])
        .expect("the other job went to the gateway");
    assert_eq!(
        pushed.value("job_runs_total", &[("outcome", "success")]),
        Some(1.0)
    );
    assert!(prom.query(r#"job_runs_total{job="pushed"}"#).is_empty());

    // A sink table with a mistake names the key, like the runner's.
    std::fs::write(
        dir.path().join("jobs/broken.toml"),
        "schedule = \"@every 1h\"\ncommand = [\"true\"]\n[sink]\nkind = \"remote-write\"\n",
    )
    .unwrap();
    let out = output(
        pushguard(dir.path())
            .args(["check", "--config"])
            .arg(&config),
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("broken.toml: sink.url"),
        "{}",
        stderr(&out)
    );
}
