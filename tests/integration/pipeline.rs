//! The shipped release pipeline under `pushguard run`: built-in jobs against
//! the local sources and channels, their application metrics on the gateway
//! and on the runner's `/metrics`.

use std::time::Duration;

use crate::harness::Pushgateway;
use crate::runner::{RunnerProcess, workspace, write_job};
use crate::sources::{GRAPHQL, RSS, Sources};

const LIMIT: Duration = Duration::from_secs(30);

fn gw_value(gw: &Pushgateway, job: &str, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    gw.group(job, &[("pipeline", "releases")])
        .and_then(|g| g.value(family, labels))
}

#[test]
fn fetch_under_the_runner_pushes_every_application_family() {
    let gw = Pushgateway::start();
    let sources = Sources::start();
    sources.rss("/kodansha.rss", RSS);
    let dir = workspace();
    let d = dir.path();
    write_job(
        d,
        "fetch",
        &format!(
            r#"schedule = "@every 1h"
builtin = "fetch"
timeout = "1m"
labels = {{ pipeline = "releases" }}
[settings]
store = "../releases.db"
timeout = "5s"
[[settings.sources]]
name = "anilist"
type = "anilist"
endpoint = "{graphql}"
media = ["anime", "manga"]
[[settings.sources]]
name = "kodansha"
type = "feed"
url = "{rss}"
kind = "manga"
"#,
            graphql = sources.url(GRAPHQL),
            rss = sources.url("/kodansha.rss"),
        ),
    );
    let runner = RunnerProcess::start(d, &gw.url);
    assert_eq!(runner.trigger("fetch", None), 202);
    runner.wait_until("the fetch run on the gateway", LIMIT, || {
        gw_value(&gw, "fetch", "job_runs_total", &[("outcome", "success")]) == Some(1.0)
    });

    // The run's own group carries the job's application families.
    let get = |family: &str, labels: &[(&str, &str)]| {
        gw_value(&gw, "fetch", family, labels)
            .unwrap_or_else(|| panic!("{family}{labels:?} missing from the gateway group"))
    };
    assert_eq!(
        get(
            "api_fetch_total",
            &[("source", "anilist"), ("status", "success")]
        ),
        1.0
    );
    assert_eq!(
        get(
            "api_fetch_total",
            &[("source", "kodansha"), ("status", "success")]
        ),
        1.0
    );
    assert_eq!(get("anime_works_total", &[]), 3.0);
    assert!(get("manga_works_total", &[]) >= 2.0);
    assert!(get("releases_pending", &[]) >= 5.0);
    assert!(
        get(
            "db_operations_total",
            &[
                ("operation", "upsert"),
                ("table", "releases"),
                ("status", "success")
            ]
        ) >= 5.0
    );
    assert!(get("system_memory_usage_bytes", &[]) > 0.0);
    let group = gw
        .group("fetch", &[("pipeline", "releases")])
        .expect("group");
    for family in [
        "api_fetch_duration_seconds",
        "db_operation_duration_seconds",
        "system_cpu_usage_percent",
        "job_expected_interval_seconds",
        "job_last_success_timestamp_seconds",
    ] {
        assert!(
            group.has(family),
            "{family} missing: {:?}",
            group.families()
        );
    }
    assert!(
        d.join("releases.db").is_file(),
        "the store is where the job file says"
    );

    // The runner serves the same families, labelled with the job, plus its
    // own HTTP and host families.
    let metrics = runner.metrics();
    for needle in [
        "api_fetch_total{source=\"anilist\",status=\"success\",job=\"fetch\",pipeline=\"releases\"} 1",
        "anime_works_total{job=\"fetch\",pipeline=\"releases\"} 3",
        "http_requests_total{method=\"POST\",route=\"/api/jobs/{name}/trigger\",status=\"202\"} 1",
        "system_memory_usage_bytes ",
        "# TYPE db_operation_duration_seconds histogram",
    ] {
        assert!(
            metrics.contains(needle),
            "{needle} missing from /metrics:\n{metrics}"
        );
    }
}

#[test]
fn a_failing_source_fails_the_run_and_names_it() {
    let gw = Pushgateway::start();
    let sources = Sources::start();
    let dir = workspace();
    let d = dir.path();
    write_job(
        d,
        "fetch",
        &format!(
            r#"schedule = "@every 1h"
builtin = "fetch"
labels = {{ pipeline = "releases" }}
[settings]
store = "../releases.db"
timeout = "5s"
[[settings.sources]]
name = "anilist"
type = "anilist"
endpoint = "{graphql}"
media = ["anime"]
[[settings.sources]]
name = "gone"
type = "feed"
url = "{missing}"
kind = "manga"
"#,
            graphql = sources.url(GRAPHQL),
            missing = sources.url("/missing.rss"),
        ),
    );
    let runner = RunnerProcess::start(d, &gw.url);
    assert_eq!(runner.trigger("fetch", None), 202);
    runner.wait_until("the failed fetch run on the gateway", LIMIT, || {
        gw_value(&gw, "fetch", "job_runs_total", &[("outcome", "failure")]) == Some(1.0)
    });
    assert_eq!(
        gw_value(
            &gw,
            "fetch",
            "api_fetch_total",
            &[("source", "gone"), ("status", "failure")]
        ),
        Some(1.0)
    );
    assert_eq!(
        gw_value(
            &gw,
            "fetch",
            "api_fetch_total",
            &[("source", "anilist"), ("status", "success")]
        ),
        Some(1.0)
    );
    let runs = runner.runs("fetch", 1);
    let output = runs[0]["output"].as_str().unwrap_or_default().to_owned();
    assert!(output.contains("source gone"), "{runs:?}");
}

#[test]
fn a_command_job_with_system_metrics_pushes_the_host_gauges() {
    let gw = Pushgateway::start();
    let dir = workspace();
    let d = dir.path();
    write_job(
        d,
        "hostly",
        "schedule = \"@every 1h\"\ncommand = [\"true\"]\nsystem_metrics = true\n",
    );
    write_job(
        d,
        "plain",
        "schedule = \"@every 1h\"\ncommand = [\"true\"]\n",
    );
    let runner = RunnerProcess::start(d, &gw.url);
    assert_eq!(runner.trigger("hostly", None), 202);
    assert_eq!(runner.trigger("plain", None), 202);
    runner.wait_until("both runs on the gateway", LIMIT, || {
        ["hostly", "plain"].iter().all(|job| {
            gw.group(job, &[])
                .and_then(|g| g.value("job_runs_total", &[("outcome", "success")]))
                == Some(1.0)
        })
    });
    let hostly = gw.group("hostly", &[]).expect("group");
    assert!(
        hostly
            .value("system_memory_usage_bytes", &[])
            .unwrap_or(0.0)
            > 0.0
    );
    let cpu = hostly
        .value("system_cpu_usage_percent", &[])
        .expect("cpu gauge");
    assert!((0.0..=100.0).contains(&cpu), "cpu {cpu}");
    let plain = gw.group("plain", &[]).expect("group");
    assert!(
        !plain.has("system_memory_usage_bytes"),
        "{:?}",
        plain.families()
    );
}
