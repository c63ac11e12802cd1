//! The calendar built-in: .ics files and a real CalDAV server.
//!
//! The file is read back with vobject (the iCalendar parser radicale
//! uses), the CalDAV collection from a real radicale: its storage folder
//! and `GET` of each event.

use chrono::{DateTime, Utc};
use pushguard_releases::{
    BuiltinError, CalendarMetrics, CalendarReport, CalendarSettings, NewRelease, NewWork, WorkKind,
    sync_calendar,
};
use serde_json::Value;

use crate::harness::{StoreBench, free_port};
use crate::receivers::{Radicale, parse_with_vobject};

const COLLECTION: &str = "/user/releases/";

struct Bench {
    base: StoreBench,
    metrics: CalendarMetrics,
    work: i64,
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
        let metrics = CalendarMetrics::new(&base.registry);
        let work = base
            .store
            .upsert_work(&NewWork {
                source: "anilist".into(),
                source_id: "154587".into(),
                kind: WorkKind::Anime,
                // Commas, semicolons and a backslash must be escaped; the
                // long Japanese title forces folding inside UTF-8 text.
                title: "Frieren: Beyond Journey's End, Part 2; \\o/".into(),
                native_title: Some("葬送のフリーレン 第2クール 魔法使いの旅路の果てに".into()),
                url: Some("https://anilist.co/anime/154587".into()),
            })
            .expect("upsert work");
        Bench {
            base,
            metrics,
            work,
        }
    }

    fn settings(&self, text: &str) -> CalendarSettings {
        let table: toml::Table = toml::from_str(text).expect("settings TOML");
        CalendarSettings::from_table(&table, self.dir.path()).expect("valid settings")
    }

    /// Adds (or moves) episode `ep` at `time`; returns its id.
    fn release(&self, ep: u32, time: DateTime<Utc>) -> i64 {
        self.store
            .upsert_release(
                self.work,
                &NewRelease {
                    source: "anilist".into(),
                    source_id: format!("airing-{ep}"),
                    episode: Some(ep),
                    volume: None,
                    platform: Some("Crunchyroll".into()),
                    release_time: time,
                },
            )
            .expect("upsert release")
            .0
    }

    async fn run(&self, settings: &CalendarSettings) -> Result<CalendarReport, BuiltinError> {
        sync_calendar(settings, &self.store, &self.metrics).await
    }

    /// A counter as the registry reports it (0 when absent).
    fn counter(&self, family: &str, labels: &[(&str, &str)]) -> u64 {
        self.sample(family, labels).unwrap_or(0.0) as u64
    }

    fn created(&self) -> u64 {
        self.counter("calendar_events_created_total", &[])
    }

    fn syncs(&self, status: &str) -> u64 {
        self.counter("calendar_sync_total", &[("status", status)])
    }

    fn uids(&self) -> Vec<Option<String>> {
        self.store
            .releases(None)
            .expect("releases")
            .into_iter()
            .map(|r| r.calendar_uid)
            .collect()
    }
}

/// 2026-12-01 15:00 UTC plus `hours` hours.
fn at(hours: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_796_137_200 + hours * 3600, 0).expect("time")
}

#[tokio::test]
async fn the_ics_file_holds_the_window_with_stable_uids() {
    let bench = Bench::new();
    bench.release(0, Utc::now() - chrono::Duration::days(40));
    bench.release(1, Utc::now() - chrono::Duration::days(2));
    bench.release(2, at(0));
    bench.release(3, at(24));
    let path = bench.dir.path().join("out/releases.ics");
    let settings = bench.settings("ics_path = \"out/releases.ics\"\nevent_duration = \"45m\"");

    let report = bench.run(&settings).await.expect("sync");
    assert_eq!(report.to_string(), "3 events, file written");
    let text = std::fs::read_to_string(&path).expect("read the .ics");
    assert!(text.starts_with("BEGIN:VCALENDAR\r\n"), "{text}");
    assert!(text.ends_with("END:VCALENDAR\r\n"));
    for line in text.split("\r\n") {
        assert!(!line.contains('\n'), "bare LF in {line:?}");
        assert!(line.len() <= 75, "{} octets: {line:?}", line.len());
    }
    assert!(text.contains("\r\n "), "no line was folded: {text}");
    assert_eq!(text.matches("BEGIN:VEVENT").count(), 3);
    // Escaped on the wire…
    assert!(
        text.replace("\r\n ", "")
            .contains("SUMMARY:Frieren: Beyond Journey's End\\, Part 2\\; \\\\o/ (葬送のフリーレン 第2クール 魔法使いの旅路の果てに) — episode 2\r\n"),
        "{text}"
    );
    // …and read back intact by a real parser.
    let events = parse_with_vobject(&text);
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[1]["summary"],
        "Frieren: Beyond Journey's End, Part 2; \\o/ (葬送のフリーレン 第2クール 魔法使いの旅路の果てに) — episode 2"
    );
    assert_eq!(events[1]["uid"], "release-anilist-airing_2D2@pushguard");
    assert_eq!(events[1]["dtstart"], "2026-12-01T15:00:00+00:00");
    assert_eq!(events[1]["dtend"], "2026-12-01T15:45:00+00:00");
    assert_eq!(events[1]["url"], "https://anilist.co/anime/154587");
    let description = events[1]["description"].as_str().unwrap_or_default();
    assert!(
        description.contains("\nhttps://anilist.co/anime/154587"),
        "{description}"
    );

    // The UIDs are stored, except for the release outside the window.
    let uids = bench.uids();
    assert_eq!(uids[0], None);
    assert_eq!(
        uids[1].as_deref(),
        Some("release-anilist-airing_2D1@pushguard")
    );
    assert_eq!(bench.created(), 3);
    assert_eq!(bench.syncs("success"), 1);

    // A re-sync after a time change rewrites the same events.
    bench.release(2, at(2));
    bench.run(&settings).await.expect("second sync");
    let again = parse_with_vobject(&std::fs::read_to_string(&path).expect("read the .ics"));
    let uid_list =
        |events: &[Value]| -> Vec<Value> { events.iter().map(|e| e["uid"].clone()).collect() };
    assert_eq!(uid_list(&again), uid_list(&events));
    assert_eq!(again[1]["dtstart"], "2026-12-01T17:00:00+00:00");
    assert_eq!(bench.created(), 3);
    assert_eq!(bench.syncs("success"), 2);
    // No temp file is left beside it.
    let names: Vec<String> = std::fs::read_dir(path.parent().expect("dir"))
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["releases.ics"]);
}

#[tokio::test]
async fn caldav_sync_creates_then_updates_without_duplicates() {
    let radicale = Radicale::start();
    let bench = Bench::new();
    bench.release(1, at(0));
    bench.release(2, at(24));
    bench.release(3, at(48));
    // The collection does not exist yet: the job creates it. Credentials
    // in the URL log in as `user` (radicale then makes the principal
    // collection `/user/`, as it does for any user who logs in).
    let url = radicale
        .url("/user/releases")
        .replace("http://", "http://user:secret@");
    let settings = bench.settings(&format!("caldav_url = \"{url}\"\nlanguage = \"ja\""));

    let report = bench.run(&settings).await.expect("first sync");
    assert_eq!((report.created, report.updated), (3, 0), "{report}");
    let items = radicale.items(COLLECTION);
    assert_eq!(items.len(), 3, "{items:?}");
    assert_eq!(bench.created(), 3);
    assert_eq!(bench.syncs("success"), 1);
    let uid = "release-anilist-airing_2D1@pushguard";
    let event = radicale
        .get(&format!("{COLLECTION}{uid}.ics"))
        .expect("GET the event");
    let event = event.replace("\r\n ", "");
    assert!(event.contains("DTSTART:20261201T150000Z"), "{event}");
    assert!(
        event.contains("SUMMARY:葬送のフリーレン 第2クール 魔法使いの旅路の果てに 第1話"),
        "{event}"
    );
    let uids = bench.uids();
    assert_eq!(uids[0].as_deref(), Some(uid));

    // The first episode moves by two hours: a re-sync updates in place.
    bench.release(1, at(2));
    let report = bench.run(&settings).await.expect("second sync");
    assert_eq!((report.created, report.updated), (0, 3), "{report}");
    assert_eq!(radicale.items(COLLECTION).len(), 3);
    let event = radicale
        .get(&format!("{COLLECTION}{uid}.ics"))
        .expect("GET the event");
    assert!(event.contains("DTSTART:20261201T170000Z"), "{event}");
    assert!(!event.contains("DTSTART:20261201T150000Z"), "{event}");
    assert_eq!(bench.created(), 3);
    assert_eq!(bench.syncs("success"), 2);
    assert_eq!(bench.syncs("failure"), 0);

    // A new release is created, the others updated.
    bench.release(4, at(72));
    let report = bench.run(&settings).await.expect("third sync");
    assert_eq!((report.created, report.updated), (1, 3), "{report}");
    assert_eq!(radicale.items(COLLECTION).len(), 4);
    assert_eq!(bench.created(), 4);

    // A fresh store (no UID recorded) finds the events already there: the
    // conditional PUT is refused (412) and the events are replaced, not
    // duplicated, and not counted as created.
    let fresh = Bench::new();
    for (ep, hours) in [(1, 2), (2, 24), (3, 48), (4, 72)] {
        fresh.release(ep, at(hours));
    }
    let settings = fresh.settings(&format!("caldav_url = \"{url}\""));
    let report = fresh.run(&settings).await.expect("sync from a fresh store");
    assert_eq!((report.created, report.updated), (0, 4), "{report}");
    assert_eq!(radicale.items(COLLECTION).len(), 4);
    assert_eq!(fresh.created(), 0);
    assert!(fresh.uids().iter().all(Option::is_some));
}

#[tokio::test]
async fn an_unreachable_caldav_server_fails_the_sync_and_is_named() {
    let bench = Bench::new();
    bench.release(1, at(0));
    bench.release(2, at(1));
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/user/releases/");
    let with_password = url.replace("http://", "http://user:hunter2@");
    let settings = bench.settings(&format!(
        "caldav_url = \"{with_password}\"\nics_path = \"releases.ics\"\ntimeout = \"2s\""
    ));
    let (failed, total) = match bench.run(&settings).await {
        Err(BuiltinError::Partial { failed, total }) => (failed, total),
        other => panic!("expected a partial failure, got {other:?}"),
    };
    assert_eq!(total, 3, "{failed:?}");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].contains(&url), "{failed:?}");
    assert!(failed[0].contains("cannot connect"), "{failed:?}");
    assert!(!failed[0].contains("hunter2"), "{failed:?}");
    assert!(failed[0].contains("2 events not written"), "{failed:?}");
    assert_eq!(bench.syncs("failure"), 1);
    assert_eq!(bench.syncs("success"), 0);
    assert_eq!(bench.created(), 0);
    // The file target still went through; no UID is recorded for events
    // the server does not have.
    assert!(bench.dir.path().join("releases.ics").exists());
    assert_eq!(bench.uids(), [None, None]);
}

#[test]
fn settings_errors_name_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (text, key) in [
        ("days_back = 7", "ics_path"),
        (
            "ics_path = \"a.ics\"\nevent_duration = \"half an hour\"",
            "event_duration",
        ),
        ("caldav_url = \"mailto:me@example.org\"", "caldav_url"),
        (
            "caldav_url = \"http://x/c/\"\npassword_env = \"P\"",
            "username_env",
        ),
        ("ics_path = \"a.ics\"\nics = \"b.ics\"", "ics"),
        ("ics_path = \"a.ics\"\ndays_back = \"many\"", "days_back"),
    ] {
        let table: toml::Table = toml::from_str(text).expect("TOML");
        match CalendarSettings::from_table(&table, dir.path()) {
            Err(BuiltinError::Settings { key: got, .. }) => assert_eq!(got, key, "{text}"),
            other => panic!("expected a settings error for {text:?}, got {other:?}"),
        }
    }
}
