//! The shipped release pipeline under `pushguard run`: built-in jobs against
//! the local sources and channels, their application metrics on the gateway
//! and on the runner's `/metrics`.

use std::time::Duration;

use pushguard::catalog::MetricSource;

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
{}"#,
            sources.job_sources(&["anime", "manga"], &[("kodansha", "/kodansha.rss")]),
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
{}"#,
            sources.job_sources(&["anime"], &[("gone", "/missing.rss")]),
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

/// The shipped `jobs/NAME.toml`, as a user gets it.
fn shipped(name: &str) -> String {
    let path = crate::prom::repo().join(format!("jobs/{name}.toml"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_shipped_pipeline_fetches_notifies_and_puts_releases_on_a_calendar() {
    use crate::receivers::{Answer, Webhook};

    let gw = Pushgateway::start();
    let sources = Sources::start();
    let slack = Webhook::start(Answer::Status(200, "ok"));
    let discord = Webhook::start(Answer::Status(204, ""));
    let dir = workspace();
    let d = dir.path();
    // The shipped files; only AniList's endpoint points at the local stand-in.
    let fetch = shipped("fetch").replace(
        "type = \"anilist\"",
        &format!(
            "type = \"anilist\"\nendpoint = \"{}\"",
            sources.url(GRAPHQL)
        ),
    );
    assert_ne!(
        fetch,
        shipped("fetch"),
        "the shipped fetch job has an AniList source"
    );
    write_job(d, "fetch", &fetch);
    write_job(d, "notify", &shipped("notify"));
    write_job(d, "calendar", &shipped("calendar"));
    let slack_url = slack.url("/services/T000/B000/XXXX");
    let discord_url = discord.url("/api/webhooks/1/token");
    let runner = RunnerProcess::start_with(
        d,
        &gw.url,
        &[
            ("SLACK_WEBHOOK_URL", &slack_url),
            ("DISCORD_WEBHOOK_URL", &discord_url),
        ],
    );
    let succeeded = |job: &str, n: f64| {
        gw_value(&gw, job, "job_runs_total", &[("outcome", "success")]) == Some(n)
    };

    assert_eq!(runner.trigger("fetch", None), 202);
    runner.wait_until("fetch", LIMIT, || succeeded("fetch", 1.0));
    let pending = gw_value(&gw, "fetch", "releases_pending", &[]).expect("releases_pending");
    assert!(pending >= 5.0, "pending {pending}");

    assert_eq!(runner.trigger("notify", None), 202);
    runner.wait_until("notify", LIMIT, || succeeded("notify", 1.0));
    assert_eq!(slack.hits().len() as f64, pending);
    assert_eq!(discord.hits().len() as f64, pending);
    assert!(slack.hits().iter().all(|h| h.json()["text"].is_string()));
    assert!(discord.hits().iter().all(|h| h.json()["embeds"].is_array()));
    for channel in ["slack", "discord"] {
        assert_eq!(
            gw_value(
                &gw,
                "notify",
                "notifications_sent_total",
                &[("channel", channel), ("status", "success")]
            ),
            Some(pending)
        );
    }

    assert_eq!(runner.trigger("calendar", None), 202);
    runner.wait_until("calendar", LIMIT, || succeeded("calendar", 1.0));
    assert_eq!(
        gw_value(
            &gw,
            "calendar",
            "calendar_sync_total",
            &[("status", "success")]
        ),
        Some(1.0)
    );
    let ics = std::fs::read_to_string(d.join("releases.ics")).expect("the .ics beside jobs/");
    let events = ics.matches("BEGIN:VEVENT").count();
    // The five episodes airing this week and the manga announced for two
    // years ahead; the manga still releasing have no release yet (their
    // first fetch is the baseline new volumes are detected against).
    assert_eq!(events, 6, "{ics}");
    assert!(ics.contains("未定の漫画"), "{ics}");
    assert!(ics.contains("葬送のフリーレン"), "{ics}");
    assert_eq!(
        gw_value(&gw, "calendar", "calendar_events_created_total", &[]),
        Some(events as f64)
    );

    // Again: nothing is sent twice, nothing is created twice.
    assert_eq!(runner.trigger("notify", None), 202);
    runner.wait_until("notify again", LIMIT, || succeeded("notify", 2.0));
    assert_eq!(slack.hits().len() as f64, pending);
    assert_eq!(runner.trigger("calendar", None), 202);
    runner.wait_until("calendar again", LIMIT, || succeeded("calendar", 2.0));
    assert_eq!(
        gw_value(&gw, "calendar", "calendar_events_created_total", &[]),
        Some(events as f64)
    );
    let again = std::fs::read_to_string(d.join("releases.ics")).expect("ics");
    assert_eq!(again.matches("BEGIN:VEVENT").count(), events);

    // Every application family is on the runner's /metrics with its labels
    // (the 5xx counter only appears after a 5xx: the example's test has it).
    let metrics = runner.metrics();
    for def in pushguard::catalog::METRICS
        .iter()
        .chain(pushguard_releases::METRICS)
    {
        if matches!(def.source, MetricSource::Run | MetricSource::Runner)
            || def.name == "http_request_errors_total"
        {
            continue;
        }
        let line = metrics
            .lines()
            .find(|l| l.starts_with(def.name) && !l.starts_with('#'))
            .unwrap_or_else(|| panic!("{} missing from /metrics:\n{metrics}", def.name));
        for label in def.labels {
            assert!(
                line.contains(&format!("{label}=\"")),
                "{label} missing: {line}"
            );
        }
    }
}
