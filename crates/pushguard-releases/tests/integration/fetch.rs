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
use crate::sources::{ATOM, AniList, GRAPHQL, RSS, RateLimit, Reply, Sources, anilist_fixture};

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
    // AniList: 5 episodes of 3 anime (3 pages of 2), 3 manga (2 pages) of
    // which only the one announced ahead is a release (the others' first
    // fetch is their baseline); RSS: 3 volumes of 2 works; Atom: 3 of 3.
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
            ("anilist", 6, 6, 6, 6, 5),
            ("kodansha", 2, 2, 3, 3, 1),
            ("shoten", 3, 3, 3, 3, 1),
        ]
    );
    assert_eq!(report.new_releases(), 12);
    let line = report.to_string();
    assert!(!line.contains('\n'), "{line}");
    assert!(
        line.starts_with("3 sources: 11 works (11 new), 12 releases (12 new)"),
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
    assert_eq!((anime, manga, releases), (3, 8, 12));

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
    // A series still releasing is not announced at its 1997 start.
    assert!(!all.iter().any(|r| r.source_id.starts_with("manga-30013")));
    let announced = find("manga-189999-start");
    assert!(announced.release_time > chrono::Utc::now(), "{announced:?}");

    // The gauges follow the store.
    assert_eq!(bench.sample("anime_works_total", &[]), Some(3.0));
    assert_eq!(bench.sample("manga_works_total", &[]), Some(8.0));
    assert_eq!(bench.sample("releases_pending", &[]), Some(12.0));

    // Again: same rows, nothing new.
    let again = bench.run(&settings).await.expect("second run succeeds");
    assert_eq!(again.new_releases(), 0);
    assert!(again.sources.iter().all(|s| s.new_works == 0), "{again:?}");
    assert_eq!(again.releases(), 12);
    assert_eq!(bench.store.count_works(WorkKind::Anime).unwrap(), 3);
    assert_eq!(bench.store.count_works(WorkKind::Manga).unwrap(), 8);
    assert_eq!(bench.store.count_releases().unwrap(), 12);
    assert_eq!(bench.fetches("anilist", "success"), 2.0);
    assert_eq!(bench.fetches("shoten", "success"), 2.0);
    assert_eq!(
        bench.sample("api_fetch_duration_seconds", &[("source", "kodansha")]),
        Some(2.0)
    );

    // A notified release stays notified, and the gauge follows.
    bench.store.mark_notified(vol.id).unwrap();
    bench.run(&settings).await.expect("third run succeeds");
    assert_eq!(bench.sample("releases_pending", &[]), Some(11.0));
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
    // The 429 that was waited out still counts.
    assert_eq!(bench.fetches("anilist", "rate_limited"), 1.0);
    assert_eq!(report.sources[0].rate_limited, 1);
}

#[tokio::test]
async fn rate_limit_longer_than_max_wait_counts_as_rate_limited() {
    let sources = Sources::start();
    sources.queue(GRAPHQL, Reply::TooMany(120));
    sources.atom("/shoten.atom", ATOM);
    let bench = Bench::new();
    let settings = bench.settings(&format!(
        r#"
        timeout = "2s"
        max_wait = "30s"
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
    assert!(failed[0].contains("max_wait"), "{failed:?}");
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
        (format!("max_wait = \"a while\"\n{feed}"), "max_wait", "invalid duration"),
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
    assert_eq!(settings.max_wait, Duration::from_secs(120));
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

/// Settings reading only the AniList stand-in for `media`.
fn anilist_only(sources: &Sources, media: &str, extra: &str) -> String {
    format!(
        "{extra}\n[[sources]]\nname = \"anilist\"\ntype = \"anilist\"\nendpoint = \"{}\"\nmedia = [\"{media}\"]\n",
        sources.url(GRAPHQL)
    )
}

/// A manga as AniList sends it.
fn manga(
    id: u64,
    title: &str,
    status: &str,
    volumes: Option<u32>,
    chapters: Option<u32>,
) -> serde_json::Value {
    serde_json::json!({
        "id": id, "type": "MANGA", "siteUrl": format!("https://anilist.co/manga/{id}"),
        "status": status, "volumes": volumes, "chapters": chapters,
        "startDate": { "year": 1997, "month": 7, "day": 22 },
        "title": { "romaji": title, "english": null, "native": null },
    })
}

#[tokio::test]
async fn manga_releases_are_detected_when_counts_grow_never_at_the_series_start() {
    let sources = Sources::start();
    let mut data = AniList {
        manga: vec![
            manga(30013, "ONE PIECE", "RELEASING", Some(108), Some(1100)),
            manga(118586, "Sousou no Frieren", "RELEASING", None, None),
        ],
        page_cap: 50,
        ..AniList::default()
    };
    sources.set_anilist(data.clone());
    let bench = Bench::new();
    let settings = bench.settings(&anilist_only(&sources, "manga", ""));
    let subscribed = chrono::Utc::now() - chrono::Duration::seconds(1);

    // The first fetch is the baseline: works, no release.
    let report = bench.run(&settings).await.expect("first fetch");
    assert_eq!(report.sources[0].works, 2);
    assert_eq!(report.releases(), 0, "{report:?}");
    assert_eq!(bench.store.count_releases().unwrap(), 0);

    // Nothing changed: still nothing.
    bench.run(&settings).await.expect("second fetch");
    assert_eq!(bench.store.count_releases().unwrap(), 0);

    // One Piece got a volume and a chapter; Frieren's counts appear (null
    // before: not a growth, a new baseline).
    data.manga = vec![
        manga(30013, "ONE PIECE", "RELEASING", Some(109), Some(1101)),
        manga(
            118586,
            "Sousou no Frieren",
            "RELEASING",
            Some(13),
            Some(140),
        ),
    ];
    sources.set_anilist(data.clone());
    let report = bench.run(&settings).await.expect("third fetch");
    assert_eq!(report.new_releases(), 2, "{report:?}");
    let all = bench.store.releases(None).unwrap();
    let ids: Vec<&str> = all.iter().map(|r| r.source_id.as_str()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&"manga-30013-vol-109"), "{ids:?}");
    assert!(ids.contains(&"manga-30013-ch-1101"), "{ids:?}");
    for release in &all {
        // Dated when detected, after the subscription's first fetch, and
        // marked as a detection time.
        assert!(release.release_time >= subscribed, "{release:?}");
        assert!(release.release_time <= chrono::Utc::now(), "{release:?}");
        let detail = bench.store.release_detail(release.id).unwrap();
        assert_eq!(detail.time_basis, pushguard_releases::TimeBasis::Detected);
        if release.source_id.ends_with("vol-109") {
            assert_eq!((release.volume, detail.chapter), (Some(109), None));
        } else {
            assert_eq!((release.volume, detail.chapter), (None, Some(1101)));
        }
    }

    // AniList nulls a count again: no release, and the baseline stays, so
    // its return is not announced either.
    data.manga[0] = manga(30013, "ONE PIECE", "RELEASING", None, Some(1101));
    sources.set_anilist(data.clone());
    bench.run(&settings).await.expect("fourth fetch");
    data.manga[0] = manga(30013, "ONE PIECE", "RELEASING", Some(109), Some(1101));
    sources.set_anilist(data);
    let report = bench.run(&settings).await.expect("fifth fetch");
    assert_eq!(report.new_releases(), 0, "{report:?}");
    assert_eq!(bench.store.count_releases().unwrap(), 2);
}

#[tokio::test]
async fn a_series_not_yet_released_is_announced_at_its_future_start_only() {
    let sources = Sources::start();
    let year = chrono::Datelike::year(&chrono::Utc::now());
    let mut ahead = manga(1, "Ahead", "NOT_YET_RELEASED", None, None);
    ahead["startDate"] = serde_json::json!({ "year": year + 1, "month": 12, "day": 24 });
    let mut overdue = manga(2, "Overdue", "NOT_YET_RELEASED", None, None);
    overdue["startDate"] = serde_json::json!({ "year": year - 1, "month": 1, "day": null });
    let mut started = manga(3, "Started", "RELEASING", None, None);
    started["startDate"] = serde_json::json!({ "year": year + 1, "month": 1, "day": 1 });
    sources.set_anilist(AniList {
        manga: vec![ahead, overdue, started],
        page_cap: 50,
        ..AniList::default()
    });
    let bench = Bench::new();
    let settings = bench.settings(&anilist_only(&sources, "manga", ""));
    bench.run(&settings).await.expect("fetch");
    let all = bench.store.releases(None).unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].source_id, "manga-1-start");
    assert_eq!(
        all[0].release_time.to_rfc3339(),
        format!("{}-12-24T00:00:00+00:00", year + 1)
    );
    let detail = bench.store.release_detail(all[0].id).unwrap();
    assert_eq!(detail.time_basis, pushguard_releases::TimeBasis::Scheduled);
}

/// An airing item as AniList sends it.
fn airing(id: u64, episode: u32) -> serde_json::Value {
    serde_json::json!({
        "id": id, "episode": episode, "airingAt": crate::sources::now() + 3600,
        "media": { "id": 154587, "type": "ANIME", "siteUrl": null,
                   "title": { "romaji": "Sousou no Frieren", "english": null, "native": null } },
    })
}

#[tokio::test]
async fn nulls_the_schema_allows_are_read_as_missing() {
    let sources = Sources::start();
    let bench = Bench::new();
    let settings = bench.settings(&anilist_only(&sources, "anime", ""));
    let json = |v: serde_json::Value| Reply::Body("application/json", v.to_string());

    // pageInfo null, one item nulled by a field error, with `errors`: the
    // good item is stored, the null one skipped, the error reported.
    sources.queue(
        GRAPHQL,
        json(serde_json::json!({
            "data": { "Page": { "pageInfo": null, "airingSchedules": [airing(1, 3), null] } },
            "errors": [{ "message": "Media not found.", "status": 404,
                         "locations": [{ "line": 5, "column": 7 }], "path": ["Page", "airingSchedules", 1] }],
        })),
    );
    let report = bench.run(&settings).await.expect("partial data is used");
    let s = &report.sources[0];
    assert_eq!((s.releases, s.skipped, s.requests), (1, 1, 1), "{report:?}");
    assert_eq!(s.errors.len(), 1, "{report:?}");
    assert!(
        s.errors[0].contains("Media not found. (status 404)"),
        "{report:?}"
    );
    assert!(report.to_string().contains("Media not found."), "{report}");
    assert_eq!(bench.fetches("anilist", "success"), 1.0);

    // hasNextPage null, a null list, an item that does not read (an id of
    // the wrong type): not a failure.
    for page in [
        serde_json::json!({ "pageInfo": { "hasNextPage": null }, "airingSchedules": null }),
        serde_json::json!({ "pageInfo": { "hasNextPage": null } }),
        serde_json::json!({ "pageInfo": { "hasNextPage": false },
                            "airingSchedules": [{ "id": "x", "airingAt": 1, "episode": 1 }, airing(2, 4)] }),
    ] {
        sources.queue(
            GRAPHQL,
            json(serde_json::json!({ "data": { "Page": page } })),
        );
        bench.run(&settings).await.expect("nulls are not failures");
    }
    assert_eq!(bench.store.count_releases().unwrap(), 2);

    // `media: null` on the manga query.
    let manga_settings = bench.settings(&anilist_only(&sources, "manga", ""));
    sources.queue(
        GRAPHQL,
        json(serde_json::json!({ "data": { "Page": { "pageInfo": { "hasNextPage": true }, "media": null } } })),
    );
    sources.queue(
        GRAPHQL,
        json(serde_json::json!({ "data": { "Page": { "pageInfo": null, "media": [null] } } })),
    );
    let report = bench
        .run(&manga_settings)
        .await
        .expect("a null list is empty");
    assert_eq!(
        (report.sources[0].requests, report.sources[0].skipped),
        (2, 1)
    );

    // No Page at all: the server's message and status, not a parse error.
    sources.queue(
        GRAPHQL,
        json(serde_json::json!({
            "data": { "Page": null },
            "errors": [{ "message": "Internal Server Error", "status": 500 }],
        })),
    );
    let (failed, _) = partial(bench.run(&settings).await);
    assert!(
        failed[0].starts_with("source anilist: GraphQL error from")
            && failed[0].contains("Internal Server Error (status 500)"),
        "{failed:?}"
    );
    assert!(!failed[0].contains("unexpected"), "{failed:?}");
}

#[tokio::test]
async fn requests_are_paced_by_the_rate_limit_headers() {
    let sources = Sources::start();
    sources.set_anilist(AniList {
        rate_limit: Some(RateLimit {
            limit: 2,
            window_secs: 1,
        }),
        ..anilist_fixture()
    });
    let bench = Bench::new();
    let settings = bench.settings(&anilist_only(&sources, "anime", "timeout = \"5s\""));
    let report = bench.run(&settings).await.expect("paced, not limited");
    // Three pages, no 429: the third waited for the window's reset.
    let log: Vec<_> = sources.requests();
    let statuses: Vec<u16> = log.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 200], "a 429 was answered");
    assert_eq!(report.sources[0].requests, 3);
    assert_eq!(report.new_releases(), 5);
    assert_eq!(bench.fetches("anilist", "rate_limited"), 0.0);
    let unix = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    // The window the first request opened ends at the whole second after
    // it plus one (X-RateLimit-Reset); the third request waited for it.
    let first = unix(log[0].at);
    let third = unix(log[2].at);
    assert!(third >= first.floor() + 2.0, "{first} {third}");
}

#[tokio::test]
async fn a_429_is_waited_out_beyond_the_request_timeout_and_within_the_deadline() {
    let sources = Sources::start();
    let bench = Bench::new();
    // Retry-After 2 s with a 1 s per-request timeout: waited out.
    sources.queue(GRAPHQL, Reply::TooMany(2));
    let settings = bench.settings(&anilist_only(&sources, "anime", "timeout = \"1s\""));
    let started = Instant::now();
    let report = bench.run(&settings).await.expect("the 429 is waited out");
    assert!(
        started.elapsed() >= Duration::from_millis(1950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report.sources[0].rate_limited, 1);
    assert_eq!(bench.fetches("anilist", "rate_limited"), 1.0);
    assert_eq!(bench.fetches("anilist", "success"), 1.0);

    // A job deadline too close for the wait and the request after it: given
    // up at once, counted as rate limited.
    sources.queue(GRAPHQL, Reply::TooMany(1));
    let started = Instant::now();
    let result = pushguard_releases::fetch_until(
        &settings,
        &bench.store,
        &bench.metrics,
        Some(Instant::now() + Duration::from_millis(1500)),
    )
    .await;
    let (failed, _) = partial(result);
    assert!(started.elapsed() < Duration::from_millis(900), "it waited");
    assert!(failed[0].contains("job's time limit"), "{failed:?}");
    assert_eq!(bench.fetches("anilist", "rate_limited"), 2.0);
    assert_eq!(bench.fetches("anilist", "failure"), 0.0);
}
