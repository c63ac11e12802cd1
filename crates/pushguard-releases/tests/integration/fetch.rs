//! The fetch built-in against local sources.
//!
//! Each test starts its own [`Sources`] server (AniList stand-in and feeds),
//! a fresh store in a temp dir and its own metric registry, calls
//! `pushguard_releases::fetch` directly, and checks what the store holds and what the
//! registry reports.

use std::path::Path;
use std::time::{Duration, Instant};

use pushguard_releases::{BuiltinError, FetchMetrics, FetchSettings, WorkKind, fetch};

use crate::harness::{Hang, StoreBench};
use crate::sources::{ATOM, GRAPHQL, RSS, Reply, Sources};

/// One test's store, metrics and settings directory.
struct Bench {
    base: StoreBench,
    metrics: FetchMetrics,
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
        let metrics = FetchMetrics::new(&base.registry);
        Bench { base, metrics }
    }

    fn settings(&self, text: &str) -> FetchSettings {
        settings_in(self.dir.path(), text).expect("valid settings")
    }

    async fn run(
        &self,
        settings: &FetchSettings,
    ) -> Result<pushguard_releases::FetchReport, BuiltinError> {
        fetch(settings, &self.store, &self.metrics).await
    }

    fn fetches(&self, source: &str, status: &str) -> f64 {
        self.sample("api_fetch_total", &[("source", source), ("status", status)])
            .unwrap_or(0.0)
    }
}

fn settings_in(dir: &Path, text: &str) -> Result<FetchSettings, BuiltinError> {
    let table: toml::Table = toml::from_str(text).expect("test TOML parses");
    FetchSettings::from_table(&table, dir)
}

/// Settings with the AniList stand-in and both feeds.
fn all_sources(sources: &Sources) -> String {
    format!(
        r#"
        timeout = "5s"
        [[sources]]
        name = "anilist"
        type = "anilist"
        endpoint = "{graphql}"
        days_ahead = 10
        media = ["anime", "manga"]
        [[sources]]
        name = "kodansha"
        type = "feed"
        url = "{rss}"
        kind = "manga"
        platform = "Kodansha"
        [[sources]]
        name = "shoten"
        type = "feed"
        url = "{atom}"
        kind = "manga"
        "#,
        graphql = sources.url(GRAPHQL),
        rss = sources.url("/kodansha.rss"),
        atom = sources.url("/shoten.atom"),
    )
}

fn partial(result: Result<pushguard_releases::FetchReport, BuiltinError>) -> (Vec<String>, usize) {
    match result {
        Err(BuiltinError::Partial { failed, total }) => (failed, total),
        other => panic!("expected a partial failure, got {other:?}"),
    }
}

#[tokio::test]
async fn fetch_stores_every_source_and_refetching_adds_nothing() {
    let sources = Sources::start();
    sources.rss("/kodansha.rss", RSS);
    sources.atom("/shoten.atom", ATOM);
    let bench = Bench::new();
    let settings = bench.settings(&all_sources(&sources));

    let report = bench.run(&settings).await.expect("every source succeeds");
    // AniList: 5 episodes of 3 anime (3 pages of 2), 3 manga of which 2
    // have a date (2 pages); RSS: 3 volumes of 2 works; Atom: 3 of 3.
    let counts: Vec<(&str, usize, usize, usize, usize, u32)> = report
        .sources
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.works,
                s.new_works,
                s.releases,
                s.new_releases,
                s.requests,
            )
        })
        .collect();
    assert_eq!(
        counts,
        [
            ("anilist", 6, 6, 7, 7, 5),
            ("kodansha", 2, 2, 3, 3, 1),
            ("shoten", 3, 3, 3, 3, 1),
        ]
    );
    assert_eq!(report.new_releases(), 13);
    let line = report.to_string();
    assert!(!line.contains('\n'), "{line}");
    assert!(
        line.starts_with("3 sources: 11 works (11 new), 13 releases (13 new)"),
        "{line}"
    );

    // Every GraphQL request had AniList's shape.
    let graphql: Vec<_> = sources
        .requests()
        .into_iter()
        .filter(|r| r.path == GRAPHQL)
        .collect();
    assert_eq!(graphql.len(), 5);
    for r in &graphql {
        assert_eq!(r.method, "POST");
        assert!(
            r.content_type
                .as_deref()
                .unwrap_or("")
                .starts_with("application/json"),
            "{r:?}"
        );
        let body = r.json();
        assert!(body["query"].as_str().is_some_and(|q| q.contains("Page(")));
        assert!(body["variables"]["page"].as_u64().is_some(), "{body}");
    }

    let anime = bench.store.count_works(WorkKind::Anime).unwrap();
    let manga = bench.store.count_works(WorkKind::Manga).unwrap();
    let releases = bench.store.count_releases().unwrap();
    assert_eq!((anime, manga, releases), (3, 8, 13));

    // Native titles intact, volumes and episodes parsed, platform kept.
    let all = bench.store.releases(None).unwrap();
    let find = |source_id: &str| {
        all.iter()
            .find(|r| r.source_id == source_id)
            .unwrap_or_else(|| panic!("release {source_id} is stored"))
    };
    let ep = find("airing-9004");
    assert_eq!(
        (ep.title.as_str(), ep.native_title.as_deref(), ep.episode),
        ("Sousou no Frieren", Some("葬送のフリーレン"), Some(28))
    );
    let vol = find("kodansha-9781646516018");
    assert_eq!(
        (vol.title.as_str(), vol.volume, vol.platform.as_deref()),
        ("Blue Lock", Some(26), Some("Kodansha"))
    );
    assert_eq!(vol.release_time.to_rfc3339(), "2024-07-09T04:00:00+00:00");
    let jp = find("tag:example.jp,2024:comic/4098532222");
    assert_eq!(
        (jp.title.as_str(), jp.native_title.as_deref(), jp.volume),
        ("葬送のフリーレン", Some("葬送のフリーレン"), Some(13))
    );
    assert_eq!(
        jp.url.as_deref(),
        Some("https://example.jp/comics/frieren-13")
    );
    let one_piece = find("manga-30013-vol-108");
    assert_eq!(one_piece.volume, Some(108));

    // The gauges follow the store.
    assert_eq!(bench.sample("anime_works_total", &[]), Some(3.0));
    assert_eq!(bench.sample("manga_works_total", &[]), Some(8.0));
    assert_eq!(bench.sample("releases_pending", &[]), Some(13.0));

    // Again: same rows, nothing new.
    let again = bench.run(&settings).await.expect("second run succeeds");
    assert_eq!(again.new_releases(), 0);
    assert!(again.sources.iter().all(|s| s.new_works == 0), "{again:?}");
    assert_eq!(again.releases(), 13);
    assert_eq!(bench.store.count_works(WorkKind::Anime).unwrap(), 3);
    assert_eq!(bench.store.count_works(WorkKind::Manga).unwrap(), 8);
    assert_eq!(bench.store.count_releases().unwrap(), 13);
    assert_eq!(bench.fetches("anilist", "success"), 2.0);
    assert_eq!(bench.fetches("shoten", "success"), 2.0);
    assert_eq!(
        bench.sample("api_fetch_duration_seconds", &[("source", "kodansha")]),
        Some(2.0)
    );

    // A notified release stays notified, and the gauge follows.
    bench.store.mark_notified(vol.id).unwrap();
    bench.run(&settings).await.expect("third run succeeds");
    assert_eq!(bench.sample("releases_pending", &[]), Some(12.0));
}

#[tokio::test]
async fn one_failing_source_does_not_stop_the_others() {
    let sources = Sources::start();
    sources.route("/bad.rss", Reply::Status(500, "upstream exploded"));
    sources.atom("/shoten.atom", ATOM);
    let bench = Bench::new();
    let settings = bench.settings(&format!(
        r#"
        [[sources]]
        name = "bad"
        type = "feed"
        url = "{bad}"
        kind = "manga"
        [[sources]]
        name = "shoten"
        type = "feed"
        url = "{atom}"
        kind = "manga"
        "#,
        bad = sources.url("/bad.rss"),
        atom = sources.url("/shoten.atom"),
    ));

    let (failed, total) = partial(bench.run(&settings).await);
    assert_eq!(total, 2);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].starts_with("source bad: HTTP 500"), "{failed:?}");
    assert!(failed[0].contains("upstream exploded"), "{failed:?}");
    // Retried once, then given up.
    assert_eq!(sources.count("/bad.rss"), 2);
    assert_eq!(bench.store.count_releases().unwrap(), 3);
    assert_eq!(bench.fetches("bad", "failure"), 1.0);
    assert_eq!(bench.fetches("bad", "success"), 0.0);
    assert_eq!(bench.fetches("shoten", "success"), 1.0);
    assert_eq!(bench.sample("manga_works_total", &[]), Some(3.0));
    assert_eq!(bench.sample("releases_pending", &[]), Some(3.0));
}

#[tokio::test]
async fn a_5xx_is_retried_once() {
    let sources = Sources::start();
    sources.queue("/kodansha.rss", Reply::Status(503, "busy"));
    sources.rss("/kodansha.rss", RSS);
    let bench = Bench::new();
    let settings = bench.settings(&format!(
        "[[sources]]\nname = \"kodansha\"\ntype = \"feed\"\nurl = \"{}\"\nkind = \"manga\"\n",
        sources.url("/kodansha.rss")
    ));
    let report = bench.run(&settings).await.expect("the retry succeeds");
    assert_eq!(report.sources[0].requests, 2);
    assert_eq!(report.new_releases(), 3);
    assert_eq!(bench.fetches("kodansha", "success"), 1.0);
}

#[tokio::test]
async fn rate_limit_with_retry_after_waits_then_succeeds() {
    let sources = Sources::start();
    sources.queue(GRAPHQL, Reply::TooMany(1));
    let bench = Bench::new();
    let settings = bench.settings(&format!(
        "timeout = \"3s\"\n[[sources]]\nname = \"anilist\"\ntype = \"anilist\"\nendpoint = \"{}\"\nmedia = [\"anime\"]\n",
        sources.url(GRAPHQL)
    ));
    let started = Instant::now();
    let report = bench.run(&settings).await.expect("the retry succeeds");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After: 1 was not waited for ({:?})",
        started.elapsed()
    );
    // The 429, then the three pages.
    assert_eq!(sources.count(GRAPHQL), 4);
    assert_eq!(report.sources[0].requests, 4);
    assert_eq!(report.new_releases(), 5);
    assert_eq!(bench.fetches("anilist", "success"), 1.0);
    assert_eq!(bench.fetches("anilist", "rate_limited"), 0.0);
}

#[tokio::test]
async fn rate_limit_longer_than_the_timeout_counts_as_rate_limited() {
    let sources = Sources::start();
    sources.queue(GRAPHQL, Reply::TooMany(120));
    sources.atom("/shoten.atom", ATOM);
    let bench = Bench::new();
    let settings = bench.settings(&format!(
        r#"
        timeout = "2s"
        [[sources]]
        name = "anilist"
        type = "anilist"
        endpoint = "{graphql}"
        [[sources]]
        name = "shoten"
        type = "feed"
        url = "{atom}"
        kind = "manga"
        "#,
        graphql = sources.url(GRAPHQL),
        atom = sources.url("/shoten.atom"),
    ));
    let started = Instant::now();
    let (failed, _) = partial(bench.run(&settings).await);
    assert!(started.elapsed() < Duration::from_secs(2), "it waited");
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0].starts_with("source anilist: rate limited: HTTP 429"),
        "{failed:?}"
    );
    assert!(failed[0].contains("Retry-After 2m"), "{failed:?}");
    assert_eq!(sources.count(GRAPHQL), 1);
    assert_eq!(bench.fetches("anilist", "rate_limited"), 1.0);
    assert_eq!(bench.fetches("anilist", "failure"), 0.0);
    assert_eq!(bench.fetches("shoten", "success"), 1.0);
}

#[tokio::test]
async fn graphql_errors_fail_the_source_with_their_message() {
    let sources = Sources::start();
    sources.queue(GRAPHQL, Reply::GraphqlError("Invalid token"));
    let bench = Bench::new();
    let settings = bench.settings(&format!(
        "[[sources]]\nname = \"anilist\"\ntype = \"anilist\"\nendpoint = \"{}\"\n",
        sources.url(GRAPHQL)
    ));
    let (failed, total) = partial(bench.run(&settings).await);
    assert_eq!(total, 1);
    assert!(
        failed[0].starts_with("source anilist: GraphQL error"),
        "{failed:?}"
    );
    assert!(failed[0].contains("Invalid token"), "{failed:?}");
    assert_eq!(bench.fetches("anilist", "failure"), 1.0);
    assert_eq!(bench.store.count_releases().unwrap(), 0);
}

#[tokio::test]
async fn the_request_budget_stops_further_requests() {
    let sources = Sources::start();
    sources.rss("/kodansha.rss", RSS);
    let bench = Bench::new();
    let settings = bench.settings(&format!(
        r#"
        request_budget = 2
        [[sources]]
        name = "anilist"
        type = "anilist"
        endpoint = "{graphql}"
        media = ["anime"]
        [[sources]]
        name = "kodansha"
        type = "feed"
        url = "{rss}"
        kind = "manga"
        "#,
        graphql = sources.url(GRAPHQL),
        rss = sources.url("/kodansha.rss"),
    ));
    let (failed, total) = partial(bench.run(&settings).await);
    assert_eq!(total, 2);
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed[0].starts_with("source anilist: request budget of 2"),
        "{failed:?}"
    );
    assert!(
        failed[1].starts_with("source kodansha: request budget of 2"),
        "{failed:?}"
    );
    // Two pages were read and kept; the feed was never asked.
    assert_eq!(sources.count(GRAPHQL), 2);
    assert_eq!(sources.count("/kodansha.rss"), 0);
    assert_eq!(bench.store.count_releases().unwrap(), 4);
    assert_eq!(bench.fetches("anilist", "failure"), 1.0);
    assert_eq!(bench.fetches("kodansha", "failure"), 1.0);
}

#[tokio::test]
async fn a_hanging_source_hits_the_timeout() {
    let hang = Hang::start();
    let sources = Sources::start();
    sources.atom("/shoten.atom", ATOM);
    let bench = Bench::new();
    let settings = bench.settings(&format!(
        r#"
        timeout = "300ms"
        [[sources]]
        name = "stuck"
        type = "feed"
        url = "{hang}/releases.rss"
        kind = "manga"
        [[sources]]
        name = "shoten"
        type = "feed"
        url = "{atom}"
        kind = "manga"
        "#,
        hang = hang.url,
        atom = sources.url("/shoten.atom"),
    ));
    let started = Instant::now();
    let (failed, _) = partial(bench.run(&settings).await);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0].starts_with("source stuck: no answer from"),
        "{failed:?}"
    );
    assert!(failed[0].contains("within the 300ms timeout"), "{failed:?}");
    assert_eq!(bench.fetches("stuck", "failure"), 1.0);
    assert_eq!(bench.store.count_releases().unwrap(), 3);

    // A source that reads the request and never answers times out the same way.
    sources.route("/stall.rss", Reply::Hang);
    let settings = bench.settings(&format!(
        "timeout = \"300ms\"\n[[sources]]\nname = \"stall\"\ntype = \"feed\"\nurl = \"{}\"\nkind = \"anime\"\n",
        sources.url("/stall.rss")
    ));
    let (failed, _) = partial(bench.run(&settings).await);
    assert!(failed[0].contains("300ms timeout"), "{failed:?}");
}

#[tokio::test]
async fn malformed_feed_xml_names_the_source() {
    let sources = Sources::start();
    sources.rss(
        "/broken.rss",
        "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><item><title>Blue Lock, Vol. 3</titl></channel>",
    );
    sources.route(
        "/notafeed",
        Reply::Body("text/html", "<html><body>maintenance</body></html>".into()),
    );
    let bench = Bench::new();
    let settings = bench.settings(&format!(
        r#"
        [[sources]]
        name = "broken"
        type = "feed"
        url = "{broken}"
        kind = "manga"
        [[sources]]
        name = "html"
        type = "feed"
        url = "{html}"
        kind = "manga"
        "#,
        broken = sources.url("/broken.rss"),
        html = sources.url("/notafeed"),
    ));
    let (failed, _) = partial(bench.run(&settings).await);
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed[0].starts_with("source broken: cannot parse the feed at http://"),
        "{failed:?}"
    );
    assert!(
        failed[1].starts_with("source html: cannot parse the feed"),
        "{failed:?}"
    );
    assert_eq!(bench.fetches("broken", "failure"), 1.0);
    assert_eq!(bench.sample("releases_pending", &[]), Some(0.0));
}

#[test]
fn settings_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let feed = "[[sources]]\nname = \"f\"\ntype = \"feed\"\nurl = \"https://example.com/a.rss\"\nkind = \"manga\"\n";
    let cases: &[(String, &str, &str)] = &[
        (format!("colour = \"blue\"\n{feed}"), "colour", "unknown key `colour`"),
        (format!("timeout = \"soon\"\n{feed}"), "timeout", "invalid duration \"soon\""),
        (format!("timeout = \"0s\"\n{feed}"), "timeout", "longer than zero"),
        (format!("timeout = 10\n{feed}"), "timeout", "invalid type"),
        (format!("request_budget = 0\n{feed}"), "request_budget", "at least 1"),
        (
            "[[sources]]\nname = \"f\"\ntype = \"feed\"\nkind = \"manga\"\n".into(),
            "sources[0].url",
            "missing key `url`",
        ),
        (
            format!("{feed}[[sources]]\nname = \"g\"\ntype = \"feed\"\nurl = \"ftp://x/y\"\nkind = \"manga\"\n"),
            "sources[1].url",
            "unsupported scheme \"ftp\"",
        ),
        (
            format!("{feed}[[sources]]\nname = \"g\"\ntype = \"rss\"\n"),
            "sources[1].type",
            "unknown source type \"rss\"",
        ),
        ("[[sources]]\nname = \"g\"\n".into(), "sources[0].type", "missing"),
        (
            "[[sources]]\nname = \"f\"\ntype = \"feed\"\nurl = \"https://e.com/\"\nkind = \"novel\"\n".into(),
            "sources[0].kind",
            "unknown kind \"novel\"",
        ),
        (
            "[[sources]]\nname = \"a\"\ntype = \"anilist\"\nmedia = [\"anime\", \"novel\"]\n".into(),
            "sources[0].media",
            "unknown kind \"novel\"",
        ),
        (
            "[[sources]]\nname = \"a\"\ntype = \"anilist\"\ndays_ahead = \"week\"\n".into(),
            "sources[0].days_ahead",
            "invalid type",
        ),
        (
            "[[sources]]\nname = \"a\"\ntype = \"anilist\"\nurl = \"https://x\"\n".into(),
            "sources[0].url",
            "unknown key `url`",
        ),
        (format!("{feed}{feed}"), "sources[1].name", "names two sources"),
    ];
    for (text, key, reason) in cases {
        match settings_in(dir.path(), text) {
            Err(BuiltinError::Settings { key: k, reason: r }) => {
                assert_eq!(&k, key, "settings {text:?} gave {r:?}");
                assert!(r.contains(reason), "settings {text:?}: {key}: {r:?}");
            }
            other => panic!("settings {text:?} gave {other:?}"),
        }
    }
}

#[test]
fn settings_defaults_and_the_store_path() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_in(
        dir.path(),
        "store = \"data/releases.db\"\n[[sources]]\nname = \"anilist\"\ntype = \"anilist\"\n",
    )
    .unwrap();
    assert_eq!(settings.store, Some(dir.path().join("data/releases.db")));
    assert_eq!(settings.timeout, Duration::from_secs(10));
    assert_eq!(settings.request_budget, 50);
    assert_eq!(settings.source_names(), ["anilist"]);
    let empty = settings_in(dir.path(), "").unwrap();
    assert_eq!(empty.store, None);
    assert!(empty.source_names().is_empty());
}

#[tokio::test]
async fn max_pages_caps_pagination_without_failing() {
    let sources = Sources::start();
    let bench = Bench::new();
    let settings = bench.settings(&format!(
        "[[sources]]\nname = \"anilist\"\ntype = \"anilist\"\nendpoint = \"{}\"\nmedia = [\"anime\"]\nmax_pages = 2\n",
        sources.url(GRAPHQL)
    ));
    let report = bench
        .run(&settings)
        .await
        .expect("a page cap is not a failure");
    assert_eq!(sources.count(GRAPHQL), 2);
    assert_eq!(report.sources[0].releases, 4);
    let pages: Vec<u64> = sources
        .requests()
        .iter()
        .filter_map(|r| r.json()["variables"]["page"].as_u64())
        .collect();
    assert_eq!(pages, [1, 2]);
    assert_eq!(bench.fetches("anilist", "success"), 1.0);
}
