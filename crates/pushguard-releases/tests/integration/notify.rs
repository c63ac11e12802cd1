//! The notify built-in against local channels.
//!
//! Each test has its own store, registry and receivers (a webhook stand-in
//! per service, a real aiosmtpd server), calls `pushguard_releases::notify` directly
//! and checks what the receivers got, what the store says is delivered and
//! what the metrics counted.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pushguard_releases::{
    BuiltinError, NewRelease, NewWork, NotifyMetrics, NotifyReport, NotifySettings, WorkKind,
    notify,
};

use crate::harness::{StoreBench, free_port};
use crate::receivers::{Answer, Smtp, Webhook};

const SLACK_PATH: &str = "/services/T000/B000/XXXXXXXX";
/// As Discord hands webhook URLs out: unversioned.
const DISCORD_PATH: &str = "/api/webhooks/1234/token-abc";
/// Where notify sends them: the pinned API version.
const DISCORD_V10_PATH: &str = "/api/v10/webhooks/1234/token-abc";

/// One test's store, metrics and settings directory.
struct Bench {
    base: StoreBench,
    metrics: NotifyMetrics,
}

impl std::ops::Deref for Bench {
    type Target = StoreBench;

    fn deref(&self) -> &StoreBench {
        &self.base
    }
}

impl Bench {
    fn new() -> Bench {
        let base = StoreBench::new();
        let metrics = NotifyMetrics::new(&base.registry);
        Bench { base, metrics }
    }

    /// Settings from `text`; `{slack}` and `{discord}` are replaced by
    /// `webhook_url_file` keys naming files that hold those URLs.
    fn settings(
        &self,
        text: &str,
        slack: Option<&Webhook>,
        discord: Option<&Webhook>,
    ) -> NotifySettings {
        let mut text = text.to_owned();
        for (name, hook, path) in [
            ("slack", slack, SLACK_PATH),
            ("discord", discord, DISCORD_PATH),
        ] {
            if let Some(hook) = hook {
                let file = self.dir.path().join(format!("{name}.url"));
                std::fs::write(&file, format!("{}\n", hook.url(path))).expect("write the URL file");
                text.push_str(&format!("\n[{name}]\nwebhook_url_file = \"{name}.url\"\n"));
            }
        }
        let table: toml::Table = toml::from_str(&text).expect("settings TOML");
        NotifySettings::from_table(&table, self.dir.path()).expect("valid settings")
    }

    async fn run(&self, settings: &NotifySettings) -> Result<NotifyReport, BuiltinError> {
        notify(settings, &self.store, &self.metrics).await
    }

    /// `notifications_sent_total{channel,status}` as the registry reports it.
    fn sent(&self, channel: &str, status: &str) -> u64 {
        self.sample(
            "notifications_sent_total",
            &[("channel", channel), ("status", status)],
        )
        .unwrap_or(0.0) as u64
    }

    fn pending(&self) -> u64 {
        self.store.count_pending().expect("count pending")
    }

    /// Seeds `n` anime releases of Frieren (episodes 1..=n, an hour apart)
    /// and returns their ids, earliest first.
    fn seed(&self, n: u32) -> Vec<i64> {
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
        (1..=n)
            .map(|ep| {
                self.store
                    .upsert_release(
                        work,
                        &NewRelease {
                            source: "anilist".into(),
                            source_id: format!("airing-{ep}"),
                            episode: Some(ep),
                            volume: None,
                            platform: Some("Crunchyroll".into()),
                            release_time: time(ep),
                        },
                    )
                    .expect("upsert release")
                    .0
            })
            .collect()
    }

    /// Seeds one manga volume and returns its id.
    fn seed_manga(&self) -> i64 {
        let work = self
            .store
            .upsert_work(&NewWork {
                source: "kodansha".into(),
                source_id: "blue-lock".into(),
                kind: WorkKind::Manga,
                title: "Blue Lock".into(),
                native_title: Some("ブルーロック".into()),
                url: None,
            })
            .expect("upsert work");
        self.store
            .upsert_release(
                work,
                &NewRelease {
                    source: "kodansha".into(),
                    source_id: "blue-lock-30".into(),
                    episode: None,
                    volume: Some(30),
                    platform: Some("Kodansha".into()),
                    release_time: time(100),
                },
            )
            .expect("upsert release")
            .0
    }
}

/// 2026-12-01 15:00 UTC plus `hours - 1` hours.
fn time(hours: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(1_796_137_200 + (i64::from(hours) - 1) * 3600, 0).expect("time")
}

fn partial(result: Result<NotifyReport, BuiltinError>) -> (Vec<String>, usize) {
    match result {
        Err(BuiltinError::Partial { failed, total }) => (failed, total),
        other => panic!("expected a partial failure, got {other:?}"),
    }
}

fn slack() -> Webhook {
    Webhook::start(Answer::Status(200, "ok"))
}

fn discord() -> Webhook {
    Webhook::start(Answer::Status(204, ""))
}

#[tokio::test]
async fn slack_and_discord_receive_their_real_payload_shapes() {
    let bench = Bench::new();
    let ids = bench.seed(1);
    let manga = bench.seed_manga();
    let (slack, discord) = (slack(), discord());
    let settings = bench.settings("", Some(&slack), Some(&discord));

    let report = bench.run(&settings).await.expect("notify");
    assert_eq!((report.pending, report.notified), (2, 2), "{report}");
    assert_eq!(
        report.to_string(),
        "2 pending releases, 2 notified — slack: 2 sent, discord: 2 sent"
    );

    let hits = slack.hits();
    assert_eq!(hits.len(), 2);
    for hit in &hits {
        assert_eq!(
            (hit.method.as_str(), hit.path.as_str()),
            ("POST", SLACK_PATH)
        );
        assert!(
            hit.header("content-type")
                .unwrap_or_default()
                .starts_with("application/json")
        );
        let body = hit.json();
        assert!(body["text"].is_string(), "{body}");
        let blocks = body["blocks"].as_array().expect("blocks");
        assert_eq!(blocks[0]["type"], "section");
        assert_eq!(blocks[0]["text"]["type"], "mrkdwn");
    }
    assert_eq!(
        hits[0].json()["text"],
        "New episode: Frieren (葬送のフリーレン) — episode 1 on Crunchyroll, 2026-12-01 15:00 UTC"
    );
    let section = hits[0].json()["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        section.contains("<https://anilist.co/anime/154587|Frieren (葬送のフリーレン)>"),
        "{section}"
    );
    assert!(
        hits[1].json()["text"]
            .as_str()
            .unwrap_or_default()
            .contains("New volume: Blue Lock (ブルーロック) — volume 30 from Kodansha")
    );

    let hits = discord.hits();
    assert_eq!(hits.len(), 2);
    let body = hits[0].json();
    assert_eq!(hits[0].path, DISCORD_V10_PATH);
    assert!(
        body["content"]
            .as_str()
            .is_some_and(|c| c.chars().count() <= 2000),
        "{body}"
    );
    assert!(
        body["content"]
            .as_str()
            .unwrap_or_default()
            .contains("葬送のフリーレン")
    );
    let embeds = body["embeds"].as_array().expect("embeds");
    assert_eq!(embeds.len(), 1);
    assert_eq!(embeds[0]["title"], "Frieren (葬送のフリーレン)");
    assert_eq!(embeds[0]["url"], "https://anilist.co/anime/154587");
    assert_eq!(embeds[0]["timestamp"], "2026-12-01T15:00:00Z");
    assert!(embeds[0]["color"].is_u64());
    assert!(
        DateTime::parse_from_rfc3339(embeds[0]["timestamp"].as_str().unwrap_or_default()).is_ok()
    );
    // No link for a work without a page.
    assert_eq!(hits[1].json()["embeds"][0].get("url"), None);

    assert_eq!(bench.sent("slack", "success"), 2);
    assert_eq!(bench.sent("discord", "success"), 2);
    assert_eq!(bench.sent("discord", "failure"), 0);
    assert_eq!(bench.pending(), 0);
    for id in [ids[0], manga] {
        assert_eq!(
            bench.store.delivered_channels(id).expect("delivered"),
            ["discord", "slack"]
        );
    }

    // Nothing pending: a second run sends nothing.
    let report = bench.run(&settings).await.expect("second run");
    assert_eq!(report.to_string(), "no pending releases");
    assert_eq!((slack.hits().len(), discord.hits().len()), (2, 2));
}

#[tokio::test]
async fn japanese_messages_keep_the_titles_intact() {
    let bench = Bench::new();
    bench.seed(1);
    let (slack, discord) = (slack(), discord());
    let settings = bench.settings("language = \"ja\"", Some(&slack), Some(&discord));
    bench.run(&settings).await.expect("notify");
    assert_eq!(
        slack.hits()[0].json()["text"],
        "新着エピソード: 葬送のフリーレン 第1話（Crunchyroll） — 2026-12-02 00:00 JST"
    );
    let content = discord.hits()[0].json()["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        content.starts_with("新着エピソード: 葬送のフリーレン 第1話"),
        "{content}"
    );
}

#[tokio::test]
async fn email_arrives_with_a_utf8_subject_and_body() {
    let bench = Bench::new();
    bench.seed(2);
    let smtp = Smtp::start();
    let settings = bench.settings(
        &format!(
            r#"
            language = "ja"
            [email]
            host = "127.0.0.1"
            port = {}
            tls = "none"
            from = "Releases <releases@example.org>"
            to = ["me@example.org", "ファン <fan@example.org>"]
            "#,
            smtp.port
        ),
        None,
        None,
    );
    let report = bench.run(&settings).await.expect("notify");
    assert_eq!(report.notified, 2);

    let messages = smtp.messages();
    assert_eq!(messages.len(), 2, "{messages:?}");
    let m = &messages[0];
    assert_eq!(m["subject"], "新着エピソード: 葬送のフリーレン 第1話");
    // On the wire the subject is an RFC 2047 encoded word (ASCII only).
    let raw = m["raw_subject"].as_str().unwrap_or_default();
    assert!(
        raw.is_ascii() && raw.to_ascii_lowercase().contains("=?utf-8?"),
        "{raw}"
    );
    assert_eq!(m["mail_from"], "releases@example.org");
    assert_eq!(
        m["rcpt_tos"],
        serde_json::json!(["me@example.org", "fan@example.org"])
    );
    assert_eq!(m["content_type"], "text/plain");
    assert_eq!(m["charset"], "utf-8");
    let body = m["body"].as_str().unwrap_or_default();
    assert!(
        body.contains(
            "新着エピソード: 葬送のフリーレン 第1話（Crunchyroll） — 2026-12-02 00:00 JST"
        ),
        "{body}"
    );
    assert!(body.contains("https://anilist.co/anime/154587"), "{body}");
    assert_eq!(
        messages[1]["subject"],
        "新着エピソード: 葬送のフリーレン 第2話"
    );
    assert_eq!(bench.sent("email", "success"), 2);
}

#[tokio::test]
async fn a_channel_failing_mid_batch_is_resumed_without_duplicates() {
    let bench = Bench::new();
    let ids = bench.seed(3);
    let (slack, discord) = (slack(), discord());
    let smtp = Smtp::start();
    // Discord accepts the first message, then fails.
    discord.queue([
        Answer::Status(204, ""),
        Answer::Status(500, "internal error"),
    ]);
    discord.set_standing(Answer::Status(500, "internal error"));
    let settings = bench.settings(
        &format!(
            "[email]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"r@example.org\"\nto = [\"me@example.org\"]\n",
            smtp.port
        ),
        Some(&slack),
        Some(&discord),
    );

    let (failed, total) = partial(bench.run(&settings).await);
    assert_eq!(total, 3, "{failed:?}");
    assert_eq!(failed.len(), 1, "{failed:?}");
    let line = &failed[0];
    assert!(
        line.starts_with(&format!("discord: release {}", ids[1])),
        "{line}"
    );
    assert!(line.contains("HTTP 500"), "{line}");
    assert!(
        line.contains("1 later release left for the next run"),
        "{line}"
    );
    // The webhook's secret path is never shown.
    assert!(!line.contains("token-abc"), "{line}");

    // The dead channel was tried once more after its success, then left alone.
    assert_eq!(discord.hits().len(), 2);
    assert_eq!(slack.hits().len(), 3);
    assert_eq!(smtp.messages().len(), 3);
    assert_eq!(bench.sent("discord", "success"), 1);
    assert_eq!(bench.sent("discord", "failure"), 1);
    assert_eq!(bench.sent("slack", "success"), 3);
    assert_eq!(bench.sent("email", "success"), 3);
    // Only the release every channel accepted is marked.
    assert_eq!(bench.pending(), 2);
    let pending: Vec<i64> = bench
        .store
        .pending_releases(10)
        .expect("pending")
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(pending, &ids[1..]);
    assert_eq!(
        bench.store.delivered_channels(ids[1]).expect("delivered"),
        ["email", "slack"]
    );

    // Discord is back: the next run sends it only what it misses.
    discord.set_standing(Answer::Status(204, ""));
    let report = bench.run(&settings).await.expect("second run");
    assert_eq!(
        report.to_string(),
        "2 pending releases, 2 notified — slack: 0 sent, discord: 2 sent, email: 0 sent"
    );
    assert_eq!(slack.hits().len(), 3);
    assert_eq!(smtp.messages().len(), 3);
    let hits = discord.hits();
    assert_eq!(hits.len(), 4);
    let accepted: Vec<String> = [&hits[0], &hits[2], &hits[3]]
        .iter()
        .map(|h| {
            h.json()["embeds"][0]["description"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    for (i, text) in accepted.iter().enumerate() {
        assert!(
            text.starts_with(&format!("episode {} on Crunchyroll", i + 1)),
            "{accepted:?}"
        );
    }
    assert_eq!(bench.pending(), 0);
    assert_eq!(bench.sent("discord", "success"), 3);
    assert_eq!(bench.sent("slack", "success"), 3);
}

#[tokio::test]
async fn a_refusing_smtp_server_keeps_the_release_pending() {
    let bench = Bench::new();
    let ids = bench.seed(2);
    let smtp = Smtp::start();
    smtp.refuse(true);
    let settings = bench.settings(
        &format!(
            "[email]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"r@example.org\"\nto = [\"me@example.org\"]\n",
            smtp.port
        ),
        None,
        None,
    );
    let (failed, total) = partial(bench.run(&settings).await);
    assert_eq!((failed.len(), total), (1, 1));
    assert!(
        failed[0].starts_with(&format!("email: release {}", ids[0])),
        "{failed:?}"
    );
    assert!(
        failed[0].contains(&format!("127.0.0.1:{}", smtp.port)),
        "{failed:?}"
    );
    assert!(failed[0].contains("451"), "{failed:?}");
    assert_eq!(bench.sent("email", "failure"), 1);
    assert_eq!(bench.pending(), 2);

    smtp.refuse(false);
    bench.run(&settings).await.expect("second run");
    assert_eq!(smtp.messages().len(), 2);
    assert_eq!(bench.pending(), 0);
}

#[tokio::test]
async fn rate_limits_are_honoured_once() {
    let bench = Bench::new();
    bench.seed(1);
    let (slack, discord) = (slack(), discord());
    // Discord: the JSON body's fractional `retry_after` wins over the header.
    discord.queue([Answer::TooMany {
        header: Some(30),
        retry_after: Some(0.3),
    }]);
    // Slack: the header.
    slack.queue([Answer::TooMany {
        header: Some(1),
        retry_after: None,
    }]);
    let settings = bench.settings("timeout = \"5s\"", Some(&slack), Some(&discord));
    bench.run(&settings).await.expect("notify after the waits");

    let hits = discord.hits();
    assert_eq!(hits.len(), 2);
    let waited = hits[1].at - hits[0].at;
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert_eq!(hits[0].body, hits[1].body);
    let hits = slack.hits();
    assert_eq!(hits.len(), 2);
    assert!(hits[1].at - hits[0].at >= Duration::from_secs(1));
    assert_eq!(bench.sent("discord", "success"), 1);
    assert_eq!(bench.sent("slack", "success"), 1);
    assert_eq!(bench.pending(), 0);
}

#[tokio::test]
async fn a_rate_limit_longer_than_the_timeout_fails_the_channel() {
    let bench = Bench::new();
    bench.seed(2);
    let discord = discord();
    discord.queue([Answer::TooMany {
        header: None,
        retry_after: Some(60.0),
    }]);
    let settings = bench.settings("timeout = \"1s\"", None, Some(&discord));
    let (failed, _) = partial(bench.run(&settings).await);
    assert!(failed[0].contains("HTTP 429"), "{failed:?}");
    assert!(failed[0].contains("exceeds the 1s timeout"), "{failed:?}");
    // No second attempt, and the second release was not tried.
    assert_eq!(discord.hits().len(), 1);
    assert_eq!(bench.sent("discord", "failure"), 1);
    assert_eq!(bench.pending(), 2);
}

#[tokio::test]
async fn an_unreachable_channel_is_tried_once_and_named() {
    let bench = Bench::new();
    bench.seed(3);
    let slack = slack();
    let port = free_port();
    let closed = format!("http://127.0.0.1:{port}/api/webhooks/1/secret-token");
    let settings = bench.settings(
        &format!("timeout = \"2s\"\n[discord]\nwebhook_url = \"{closed}\""),
        Some(&slack),
        None,
    );
    let (failed, total) = partial(bench.run(&settings).await);
    assert_eq!((failed.len(), total), (1, 2), "{failed:?}");
    assert!(
        failed[0].contains(&format!("cannot connect: http://127.0.0.1:{port}")),
        "{failed:?}"
    );
    assert!(
        failed[0].contains("2 later releases left for the next run"),
        "{failed:?}"
    );
    assert!(!failed[0].contains("secret-token"), "{failed:?}");
    assert_eq!(bench.sent("discord", "failure"), 1);
    assert_eq!(bench.sent("slack", "success"), 3);
    assert_eq!(bench.pending(), 3);
}

fn settings_error(dir: &Path, text: &str) -> (String, String) {
    let table: toml::Table = toml::from_str(text).expect("TOML");
    match NotifySettings::from_table(&table, dir) {
        Err(BuiltinError::Settings { key, reason }) => (key, reason),
        other => panic!("expected a settings error for {text:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn settings_errors_name_the_key() {
    let bench = Bench::new();
    let dir = bench.dir.path();
    for (text, key) in [
        (
            "language = \"fr\"\n[slack]\nwebhook_url_env = \"X\"",
            "language",
        ),
        (
            "batch_limit = 0\n[slack]\nwebhook_url_env = \"X\"",
            "batch_limit",
        ),
        (
            "timeout = \"later\"\n[slack]\nwebhook_url_env = \"X\"",
            "timeout",
        ),
        (
            "[slack]\nwebhook_url_env = \"X\"\nchannel = \"#x\"",
            "slack.channel",
        ),
        ("[discord]", "discord.webhook_url_env"),
        (
            "[email]\nhost = \"h\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]\ntls = \"ssl\"",
            "email.tls",
        ),
        (
            "[email]\nhost = \"h\"\nfrom = \"a@b.c\"\nto = []",
            "email.to",
        ),
        ("store = \"r.db\"", "settings"),
    ] {
        assert_eq!(settings_error(dir, text).0, key, "{text}");
    }
    let (_, reason) = settings_error(dir, "language = \"fr\"\n[slack]\nwebhook_url_env = \"X\"");
    assert!(reason.contains("\"fr\""), "{reason}");

    // Secrets are read when the job runs: with another channel configured,
    // a missing variable is an error naming its key.
    bench.seed(1);
    let table: toml::Table = toml::from_str(
        "[slack]\nwebhook_url_env = \"PUSHGUARD_TEST_SURELY_UNSET_HOOK\"\n[discord]\nwebhook_url = \"http://127.0.0.1:1/api/webhooks/1/x\"",
    )
    .expect("TOML");
    let settings = NotifySettings::from_table(&table, dir).expect("valid until run");
    match bench.run(&settings).await {
        Err(BuiltinError::Settings { key, reason }) => {
            assert_eq!(key, "slack.webhook_url_env");
            assert!(
                reason.contains("PUSHGUARD_TEST_SURELY_UNSET_HOOK"),
                "{reason}"
            );
        }
        other => panic!("expected a settings error, got {other:?}"),
    }
    assert_eq!(bench.pending(), 1);
    let table: toml::Table =
        toml::from_str("[slack]\nwebhook_url = \"ftp://hooks.example/x\"").expect("TOML");
    let settings = NotifySettings::from_table(&table, dir).expect("valid until run");
    assert!(matches!(
        bench.run(&settings).await,
        Err(BuiltinError::Settings { key, .. }) if key == "slack.webhook_url"
    ));
}

#[tokio::test]
async fn a_job_with_no_channel_configured_yet_has_nothing_to_do_and_sends_nothing() {
    // A fresh install: the shipped job file names environment variables
    // that are not set yet. The run is not a failure; nothing is sent and
    // the releases stay pending for when a channel is set.
    let bench = Bench::new();
    bench.seed(1);
    let table: toml::Table = toml::from_str(
        "[slack]\nwebhook_url_env = \"PUSHGUARD_TEST_UNSET_SLACK\"\n[discord]\nwebhook_url_env = \"PUSHGUARD_TEST_UNSET_DISCORD\"",
    )
    .expect("TOML");
    let settings = NotifySettings::from_table(&table, bench.dir.path()).expect("valid");
    let reason = settings.unconfigured().expect("no channel configured");
    assert!(
        reason.contains("PUSHGUARD_TEST_UNSET_SLACK")
            && reason.contains("PUSHGUARD_TEST_UNSET_DISCORD"),
        "{reason}"
    );
    match bench.run(&settings).await {
        Err(BuiltinError::Unconfigured { reason: got }) => assert_eq!(got, reason),
        other => panic!("expected nothing to do, got {other:?}"),
    }
    assert_eq!(bench.pending(), 1);
    // A literal URL is a configured channel.
    let table: toml::Table =
        toml::from_str("[slack]\nwebhook_url = \"http://127.0.0.1:1/services/T/B/x\"")
            .expect("TOML");
    let settings = NotifySettings::from_table(&table, bench.dir.path()).expect("valid");
    assert!(settings.unconfigured().is_none());
}

#[tokio::test]
async fn a_hanging_channel_times_out_and_the_others_go_on() {
    let bench = Bench::new();
    bench.seed(2);
    let hang = crate::harness::Hang::start();
    let discord = discord();
    let settings = bench.settings(
        &format!(
            "timeout = \"1s\"\n[slack]\nwebhook_url = \"{}/services/T/B/secret\"",
            hang.url
        ),
        None,
        Some(&discord),
    );
    let started = std::time::Instant::now();
    let (failed, total) = partial(bench.run(&settings).await);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((failed.len(), total), (1, 2), "{failed:?}");
    assert!(failed[0].starts_with("slack: release"), "{failed:?}");
    assert!(failed[0].contains("timed out"), "{failed:?}");
    assert!(!failed[0].contains("secret"), "{failed:?}");
    assert_eq!(discord.hits().len(), 2);
    assert_eq!(bench.sent("slack", "failure"), 1);
    assert_eq!(bench.pending(), 2);
}

#[tokio::test]
async fn discord_is_sent_to_a_pinned_api_version_and_its_retry_after_read_in_seconds() {
    let bench = Bench::new();
    bench.seed(1);
    let discord = discord();
    // 1.5 s: the unversioned API would say 1500 (milliseconds), read as
    // 1500 s it would exceed the timeout and fail the channel.
    discord.queue([Answer::TooMany {
        header: Some(2),
        retry_after: Some(1.5),
    }]);
    let settings = bench.settings("timeout = \"5s\"", None, Some(&discord));
    bench.run(&settings).await.expect("notify after the wait");
    let hits = discord.hits();
    assert_eq!(hits.len(), 2);
    assert!(
        hits.iter().all(|h| h.path == DISCORD_V10_PATH),
        "{:?}",
        hits[0].path
    );
    let waited = hits[1].at - hits[0].at;
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    assert_eq!(bench.pending(), 0);
}

#[tokio::test]
async fn discord_query_and_old_versions_are_kept_with_their_units() {
    let bench = Bench::new();
    bench.seed(1);
    let discord = discord();
    // The stand-in answers v6 as the unversioned API: milliseconds.
    discord.queue([
        Answer::TooMany {
            header: None,
            retry_after: Some(0.4),
        },
        Answer::Status(204, ""),
    ]);
    let url = discord.url("/api/v6/webhooks/1/t?wait=true&thread_id=42");
    let settings = bench.settings(
        &format!("timeout = \"5s\"\n[discord]\nwebhook_url = \"{url}\""),
        None,
        None,
    );
    bench.run(&settings).await.expect("notify after the wait");
    let hits = discord.hits();
    assert_eq!(hits.len(), 2);
    assert!(hits[1].at - hits[0].at >= Duration::from_millis(400));
    assert!(hits[1].at - hits[0].at < Duration::from_secs(4));

    // An unversioned URL with a query: pinned, the query kept.
    let bench = Bench::new();
    bench.seed(1);
    let discord = self::discord();
    let url = discord.url("/api/webhooks/1/t?wait=true&thread_id=42");
    let settings = bench.settings(&format!("[discord]\nwebhook_url = \"{url}\""), None, None);
    bench.run(&settings).await.expect("notify");
    let hits = discord.hits();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].path, "/api/v10/webhooks/1/t?wait=true&thread_id=42");
}

#[tokio::test]
async fn an_empty_discord_bucket_delays_the_next_post() {
    let bench = Bench::new();
    bench.seed(2);
    let discord = discord();
    discord.queue([Answer::Exhausted {
        status: 204,
        reset_after: 1.2,
    }]);
    let settings = bench.settings("timeout = \"5s\"", None, Some(&discord));
    bench.run(&settings).await.expect("notify");
    let hits = discord.hits();
    assert_eq!(hits.len(), 2);
    let waited = hits[1].at - hits[0].at;
    assert!(
        waited >= Duration::from_millis(1200) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    // Longer than the timeout: the channel fails before posting again.
    let bench = Bench::new();
    bench.seed(2);
    let discord = self::discord();
    discord.queue([Answer::Exhausted {
        status: 204,
        reset_after: 30.0,
    }]);
    let settings = bench.settings("timeout = \"1s\"", None, Some(&discord));
    let (failed, _) = partial(bench.run(&settings).await);
    assert!(failed[0].contains("bucket is empty"), "{failed:?}");
    assert_eq!(discord.hits().len(), 1);
    assert_eq!(bench.pending(), 1);
}

#[tokio::test]
async fn discord_titles_cannot_carry_links_or_formatting() {
    let bench = Bench::new();
    let work = bench
        .store
        .upsert_work(&NewWork {
            source: "anilist".into(),
            source_id: "1".into(),
            kind: WorkKind::Anime,
            title: "[watch](https://evil.example) **now** # <@123> ~~x~~".into(),
            native_title: None,
            url: None,
        })
        .expect("work");
    bench
        .store
        .upsert_release(
            work,
            &NewRelease {
                source: "anilist".into(),
                source_id: "r".into(),
                episode: Some(1),
                volume: None,
                platform: None,
                release_time: time(1),
            },
        )
        .expect("release");
    let discord = discord();
    let settings = bench.settings("", None, Some(&discord));
    bench.run(&settings).await.expect("notify");
    let body = discord.hits()[0].json();
    let escaped = r"\[watch\](https\://evil.example) \*\*now\*\* \# \<@123\> \~\~x\~\~";
    assert_eq!(body["embeds"][0]["title"], escaped);
    let content = body["content"].as_str().unwrap_or_default();
    assert!(content.contains(escaped), "{content}");
}
