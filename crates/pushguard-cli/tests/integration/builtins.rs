//! The release-delivery built-ins as the runner runs them: job files under
//! `pushguard trigger`, secrets from the environment, results on a real
//! Pushgateway.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pushguard_releases::{DbMetrics, NewRelease, NewWork, Store, WorkKind};

use crate::receivers::{Answer, Smtp, Webhook};

/// A release store in a temp dir, seeded by the test.
struct Bench {
    dir: tempfile::TempDir,
    store: Store,
}

impl Bench {
    fn new() -> Bench {
        let dir = tempfile::tempdir().expect("temp dir");
        let registry = pushguard::prometheus::Registry::new();
        let store = Store::open(&dir.path().join("releases.db"), DbMetrics::new(&registry))
            .expect("open the store");
        Bench { dir, store }
    }

    /// Seeds `n` episodes of one anime, an hour apart, from 2026-12-01 15:00 UTC.
    fn seed(&self, n: u32) {
        let work = self
            .store
            .upsert_work(&NewWork {
                source: "anilist".into(),
                source_id: "154587".into(),
                kind: WorkKind::Anime,
                title: "Frieren".into(),
                native_title: Some("葬送のフリーレン".into()),
                url: Some("https://anilist.co/anime/154587".into()),
            })
            .expect("upsert work");
        for ep in 1..=n {
            let release_time: DateTime<Utc> =
                DateTime::from_timestamp(1_796_137_200 + i64::from(ep) * 3600, 0).expect("time");
            self.store
                .upsert_release(
                    work,
                    &NewRelease {
                        source: "anilist".into(),
                        source_id: format!("airing-{ep}"),
                        episode: Some(ep),
                        volume: None,
                        platform: Some("Crunchyroll".into()),
                        release_time,
                    },
                )
                .expect("upsert release");
        }
    }
}

#[tokio::test]
async fn a_calendar_job_file_runs_under_pushguard_trigger_with_credentials_from_the_environment() {
    let gateway = crate::harness::Pushgateway::start();
    let radicale = crate::receivers::Radicale::start();
    let bench = Bench::new();
    bench.seed(2);
    let jobs = bench.dir.path().join("jobs");
    std::fs::create_dir(&jobs).expect("jobs dir");
    std::fs::write(
        jobs.join("calendar.toml"),
        format!(
            r#"schedule = "@every 1h"
builtin = "calendar"
timeout = "1m"
[settings]
store = "../releases.db"
ics_path = "../public/releases.ics"
caldav_url = "{url}"
username_env = "CALDAV_USERNAME"
password_env = "CALDAV_PASSWORD"
timeout = "5s"
"#,
            url = radicale.url("/fan/releases/")
        ),
    )
    .expect("write the job file");
    let mut child = crate::harness::pushguard(bench.dir.path())
        .args(["trigger", "calendar", "--jobs"])
        .arg(&jobs)
        .env("PUSHGATEWAY_URL", &gateway.url)
        .env("CALDAV_USERNAME", "fan")
        .env("CALDAV_PASSWORD", "secret")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn pushguard trigger");
    crate::harness::wait_until(
        "pushguard trigger to exit",
        std::time::Duration::from_secs(60),
        || child.try_wait().ok().flatten().is_some(),
    );
    let out = child.wait_with_output().expect("trigger output");
    assert!(out.status.success(), "trigger failed: {out:?}");

    // Logged in as `fan`, radicale made the principal; the job made the calendar.
    assert_eq!(radicale.items("/fan/releases/").len(), 2);
    let file = std::fs::read_to_string(bench.dir.path().join("public/releases.ics"))
        .expect("read the .ics");
    assert_eq!(
        crate::receivers::parse_with_vobject(&file).len(),
        2,
        "{file}"
    );
    let group = gateway
        .group("calendar", &[])
        .expect("the run's group on the gateway");
    assert_eq!(
        group.value("calendar_sync_total", &[("status", "success")]),
        Some(1.0)
    );
    assert_eq!(group.value("calendar_events_created_total", &[]), Some(2.0));
}

#[tokio::test]
async fn a_notify_job_file_runs_under_pushguard_trigger_with_secrets_from_the_environment() {
    let gateway = crate::harness::Pushgateway::start();
    let bench = Bench::new();
    bench.seed(1);
    let slack = Webhook::start(Answer::Status(200, "ok"));
    let smtp = Smtp::start_with(Some("releases-bot:s3cret"));
    let jobs = bench.dir.path().join("jobs");
    std::fs::create_dir(&jobs).expect("jobs dir");
    std::fs::write(
        jobs.join("notify.toml"),
        format!(
            r#"schedule = "@every 1h"
builtin = "notify"
timeout = "1m"
[settings]
store = "../releases.db"
timeout = "5s"
[settings.slack]
webhook_url_env = "SLACK_WEBHOOK_URL"
[settings.email]
host = "127.0.0.1"
port = {port}
tls = "none"
from = "Releases <releases@example.org>"
to = ["me@example.org"]
username_env = "SMTP_USERNAME"
password_env = "SMTP_PASSWORD"
"#,
            port = smtp.port
        ),
    )
    .expect("write the job file");
    let mut child = crate::harness::pushguard(bench.dir.path())
        .args(["trigger", "notify", "--jobs"])
        .arg(&jobs)
        .env("PUSHGATEWAY_URL", &gateway.url)
        .env(
            "SLACK_WEBHOOK_URL",
            slack.url("/services/T000/B000/XXXXXXXX"),
        )
        .env("SMTP_USERNAME", "releases-bot")
        .env("SMTP_PASSWORD", "s3cret")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn pushguard trigger");
    crate::harness::wait_until("pushguard trigger to exit", Duration::from_secs(60), || {
        child.try_wait().ok().flatten().is_some()
    });
    let out = child.wait_with_output().expect("trigger output");
    assert!(out.status.success(), "trigger failed: {out:?}");

    assert_eq!(slack.hits().len(), 1);
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["login"], "releases-bot");
    assert_eq!(bench.store.count_pending().expect("count pending"), 0);
    let group = gateway
        .group("notify", &[])
        .expect("the run's group on the gateway");
    assert_eq!(
        group.value("job_runs_total", &[("outcome", "success")]),
        Some(1.0)
    );
    for channel in ["slack", "email"] {
        assert_eq!(
            group.value(
                "notifications_sent_total",
                &[("channel", channel), ("status", "success")]
            ),
            Some(1.0),
            "{channel}"
        );
    }
}

#[test]
fn the_shipped_notify_job_without_channel_urls_is_skipped_not_failed() {
    // A fresh install: jobs/notify.toml as shipped, no webhook URL set.
    let gateway = crate::harness::Pushgateway::start();
    let bench = Bench::new();
    bench.seed(1);
    let jobs = bench.dir.path().join("jobs");
    std::fs::create_dir(&jobs).expect("jobs dir");
    let shipped = std::fs::read_to_string(crate::prom::repo().join("jobs/notify.toml"))
        .expect("the shipped notify.toml");
    std::fs::write(
        jobs.join("notify.toml"),
        shipped.replace("[settings]\n", "[settings]\nstore = \"../releases.db\"\n"),
    )
    .expect("write the job file");
    let check = crate::harness::pushguard(bench.dir.path())
        .args(["check", "--jobs"])
        .arg(&jobs)
        .env_remove("SLACK_WEBHOOK_URL")
        .env_remove("DISCORD_WEBHOOK_URL")
        .output()
        .expect("pushguard check");
    let said = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(0), "{said}");
    assert!(said.contains("no channel is configured yet"), "{said}");
    assert!(said.contains("SLACK_WEBHOOK_URL"), "{said}");

    let out = crate::harness::pushguard(bench.dir.path())
        .args(["trigger", "notify", "--jobs"])
        .arg(&jobs)
        .env("PUSHGATEWAY_URL", &gateway.url)
        .env_remove("SLACK_WEBHOOK_URL")
        .env_remove("DISCORD_WEBHOOK_URL")
        .output()
        .expect("pushguard trigger");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let group = gateway
        .group("notify", &[("pipeline", "releases")])
        .expect("the run's group");
    assert_eq!(
        group.value("job_runs_total", &[("outcome", "skipped")]),
        Some(1.0)
    );
    assert_eq!(
        group.value("job_runs_total", &[("outcome", "failure")]),
        Some(0.0)
    );
    assert_ne!(group.value("job_last_run_failed", &[]), Some(1.0));
    // Nothing was sent: the release waits for a channel.
    assert_eq!(bench.store.count_pending().expect("count pending"), 1);
}
