//! The `calendar` built-in job: publishes the stored releases as calendar
//! events, to an iCalendar file, a CalDAV collection, or both.
//!
//! Every release becomes one `VEVENT` whose UID is derived from the
//! release's (source, source id), so a re-sync rewrites the same event
//! (CalDAV: `PUT` over the same `<collection>/<uid>.ics`) instead of adding
//! another. The file is rewritten whole and atomically (temp file, rename).

mod caldav;
mod ics;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use pushguard::http_client::HttpClientBuilder;
use reqwest::Url;

use self::caldav::{CalDav, PutError, Written};
use self::ics::Event;
use super::error::BuiltinError;
use super::metrics::CalendarMetrics;
use super::notify::message::{self, Language};
use super::settings::chain;
use super::store::{Release, Store};

/// The `[settings]` of a `builtin = "calendar"` job file.
///
/// | key | default | meaning |
/// |---|---|---|
/// | `store` | `releases.db` beside the state file | the release store, relative to the job file |
/// | `ics_path` | none | an iCalendar file to (re)write, relative to the job file |
/// | `caldav_url` | none | a CalDAV calendar collection, e.g. `http://127.0.0.1:5232/user/releases/` |
/// | `username_env`, `password_env` | none | environment variables holding CalDAV basic-auth credentials |
/// | `days_back` | 30 | releases older than this many days are left out |
/// | `event_duration` | `30m` | how long each event lasts |
/// | `language` | `en` | `en` or `ja`: event summaries (titles are never translated) |
/// | `timeout` | `10s` | per CalDAV request |
///
/// At least one of `ics_path` and `caldav_url` is required. A collection
/// that does not exist yet is created with `MKCALENDAR`. Events of releases
/// that drop out of the `days_back` window are left where they are.
///
/// ```
/// let table: toml::Table = toml::from_str(r#"
///     ics_path = "releases.ics"
///     event_duration = "1h"
/// "#).unwrap();
/// let settings = pushguard_releases::CalendarSettings::from_table(&table, "jobs".as_ref())?;
/// assert_eq!(settings.ics_path.as_deref(), Some(std::path::Path::new("jobs/releases.ics")));
/// assert_eq!(settings.event_duration, std::time::Duration::from_secs(3600));
/// # Ok::<(), pushguard_releases::BuiltinError>(())
/// ```
#[derive(Debug, Clone)]
pub struct CalendarSettings {
    /// The store file when the job names one, resolved against the job
    /// file's directory (the runner opens it).
    pub store: Option<PathBuf>,
    /// The iCalendar file, resolved against the job file's directory.
    pub ics_path: Option<PathBuf>,
    /// The CalDAV collection (always ending in `/`).
    pub caldav_url: Option<Url>,
    /// Releases older than this many days are left out.
    pub days_back: u32,
    /// How long each event lasts.
    pub event_duration: Duration,
    /// Per CalDAV request.
    pub timeout: Duration,
    username_env: Option<String>,
    password_env: Option<String>,
    language: Language,
}

impl CalendarSettings {
    /// Validates a job file's `[settings]` table; relative paths are
    /// resolved against `base` (the job file's directory).
    pub fn from_table(table: &toml::Table, base: &Path) -> Result<CalendarSettings, BuiltinError> {
        parse_settings(table, base)
    }
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CalendarReport {
    /// Events in the window (releases since `days_back`).
    pub events: usize,
    /// Whether the iCalendar file was written.
    pub file_written: bool,
    /// Events the CalDAV server created.
    pub created: usize,
    /// Events the CalDAV server updated.
    pub updated: usize,
}

impl std::fmt::Display for CalendarReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} event{}",
            self.events,
            if self.events == 1 { "" } else { "s" }
        )?;
        if self.file_written {
            f.write_str(", file written")?;
        }
        if self.created + self.updated > 0 {
            write!(
                f,
                ", CalDAV: {} created, {} updated",
                self.created, self.updated
            )?;
        }
        Ok(())
    }
}

const DEFAULT_DAYS_BACK: u32 = 30;
const DEFAULT_DURATION: Duration = Duration::from_secs(30 * 60);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `[settings]` table as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    store: Option<PathBuf>,
    ics_path: Option<PathBuf>,
    caldav_url: Option<String>,
    username_env: Option<String>,
    password_env: Option<String>,
    days_back: Option<u32>,
    event_duration: Option<String>,
    language: Option<String>,
    timeout: Option<String>,
}

fn parse_settings(table: &toml::Table, base: &Path) -> Result<CalendarSettings, BuiltinError> {
    use super::notify::{deserialize, invalid};
    let raw: RawSettings = deserialize(table, "")?;
    let duration = |key: &str, text: Option<&str>, default: Duration| match text {
        None => Ok(default),
        Some(text) => match humantime::parse_duration(text) {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => Err(invalid(key, "must be longer than zero")),
            Err(e) => Err(invalid(
                key,
                format!("invalid duration {text:?}: {e}; write it like \"30m\" or \"1h\""),
            )),
        },
    };
    let event_duration = duration(
        "event_duration",
        raw.event_duration.as_deref(),
        DEFAULT_DURATION,
    )?;
    if chrono::Duration::from_std(event_duration).is_err() {
        return Err(invalid("event_duration", "is too long"));
    }
    let timeout = duration("timeout", raw.timeout.as_deref(), DEFAULT_TIMEOUT)?;
    let caldav_url = match raw.caldav_url.as_deref() {
        None => None,
        Some(text) => {
            let mut url = Url::parse(text)
                .map_err(|e| invalid("caldav_url", format!("invalid URL {text:?}: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(invalid(
                    "caldav_url",
                    format!(
                        "unsupported scheme {:?} in {text:?}: use http or https",
                        url.scheme()
                    ),
                ));
            }
            if url.query().is_some() || url.fragment().is_some() {
                return Err(invalid(
                    "caldav_url",
                    format!("{text:?} has a query or fragment: give the collection's URL"),
                ));
            }
            if !url.path().ends_with('/') {
                let path = format!("{}/", url.path());
                url.set_path(&path);
            }
            Some(url)
        }
    };
    if raw.ics_path.is_none() && caldav_url.is_none() {
        return Err(invalid(
            "ics_path",
            "missing: set ics_path, caldav_url or both",
        ));
    }
    match (&raw.username_env, &raw.password_env) {
        (Some(_), None) => {
            return Err(invalid(
                "password_env",
                "missing: username_env needs password_env as well",
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                "username_env",
                "missing: password_env needs username_env as well",
            ));
        }
        _ => {}
    }
    if raw.username_env.is_some() && caldav_url.is_none() {
        return Err(invalid(
            "username_env",
            "credentials are only used with caldav_url",
        ));
    }
    let language = match raw.language.as_deref() {
        None => Language::En,
        Some(text) => Language::parse(text).ok_or_else(|| {
            invalid(
                "language",
                format!("unknown language {text:?}: expected \"en\" or \"ja\""),
            )
        })?,
    };
    Ok(CalendarSettings {
        store: raw.store.map(|p| base.join(p)),
        ics_path: raw.ics_path.map(|p| base.join(p)),
        caldav_url,
        days_back: raw.days_back.unwrap_or(DEFAULT_DAYS_BACK),
        event_duration,
        timeout,
        username_env: raw.username_env,
        password_env: raw.password_env,
        language,
    })
}

/// The event of `release`; its UID is the stored one when that is usable
/// in a resource name, else the one derived from (source, source id).
fn event_of(release: &Release, settings: &CalendarSettings) -> Event {
    let uid = release
        .calendar_uid
        .clone()
        .filter(|u| ics::is_path_safe(u))
        .unwrap_or_else(|| ics::uid(&release.source, &release.source_id));
    let text = message::render(release, settings.language);
    let mut description = text.headline.clone();
    if let Some(url) = &text.url {
        description.push('\n');
        description.push_str(url);
    }
    let duration = chrono::Duration::from_std(settings.event_duration).unwrap_or_default();
    Event {
        uid,
        start: release.release_time,
        end: release.release_time + duration,
        summary: text.summary,
        description,
        url: text.url,
        category: release.kind.as_str().to_owned(),
    }
}

/// Writes `contents` to `path` through a temp file in the same directory
/// and a rename, so that readers see the old file or the new one.
fn write_atomically(path: &Path, contents: &str) -> Result<(), String> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the directory {}: {e}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "calendar.ics".to_owned());
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        e.to_string()
    })
}

/// Runs the job once.
///
/// `calendar_sync_total{status}` is counted once per run: `success` when
/// every target took every event, else `failure`.
/// `calendar_events_created_total` counts events new to the calendar. With
/// CalDAV: an event without a stored UID is first written with
/// `If-None-Match: *`, and counted when the server took it as a creation
/// (a `412` means it was there already: it is then replaced, not counted);
/// an event with a stored UID is replaced with a plain `PUT` and not
/// counted. (Status codes alone cannot tell: radicale answers `201
/// Created` to every `PUT`.) Without CalDAV: events without a stored UID
/// before the run. A failed target or event ends the run with
/// [`BuiltinError::Partial`] naming it, out of one write per event (CalDAV)
/// plus one for the file.
pub async fn sync_calendar(
    settings: &CalendarSettings,
    store: &Store,
    metrics: &CalendarMetrics,
) -> Result<CalendarReport, BuiltinError> {
    let result = sync(settings, store, metrics).await;
    let status = if result.is_ok() { "success" } else { "failure" };
    metrics.syncs.with_label_values(&[status]).inc();
    result
}

async fn sync(
    settings: &CalendarSettings,
    store: &Store,
    metrics: &CalendarMetrics,
) -> Result<CalendarReport, BuiltinError> {
    let mut caldav = match &settings.caldav_url {
        Some(url) => Some(connect(settings, url)?),
        None => None,
    };
    let now = Utc::now();
    let since = now - chrono::Duration::days(i64::from(settings.days_back));
    let releases = store.releases(Some(since))?;
    let events: Vec<Event> = releases.iter().map(|r| event_of(r, settings)).collect();
    let mut report = CalendarReport {
        events: events.len(),
        ..CalendarReport::default()
    };
    let mut failed = Vec::new();
    let mut total = 0;

    if let Some(path) = &settings.ics_path {
        total += 1;
        let text = ics::calendar(Some("Releases"), &events, now);
        match write_atomically(path, &text) {
            Ok(()) => report.file_written = true,
            Err(reason) => failed.push(format!("ics {}: {reason}", path.display())),
        }
    }

    // Per release: whether it now has its event everywhere, and whether it was new.
    let mut stored = vec![report.file_written || settings.ics_path.is_none(); events.len()];
    let mut created = vec![false; events.len()];
    if let Some(dav) = &mut caldav {
        total += events.len();
        for (i, event) in events.iter().enumerate() {
            let body = ics::calendar(None, std::slice::from_ref(event), now);
            let new = releases[i].calendar_uid.is_none();
            match dav.put(&format!("{}.ics", event.uid), &body, new).await {
                Ok(Written::Created) => {
                    created[i] = true;
                    report.created += 1;
                }
                Ok(Written::Updated) => report.updated += 1,
                Err(PutError::Event(reason)) => {
                    stored[i] = false;
                    failed.push(format!("caldav event {}: {reason}", event.uid));
                }
                Err(PutError::Target(reason)) => {
                    let left = events.len() - i;
                    stored[i..].iter_mut().for_each(|s| *s = false);
                    failed.push(format!(
                        "caldav {}: {reason}; {left} event{} not written",
                        caldav::shown(dav.collection()),
                        if left == 1 { "" } else { "s" }
                    ));
                    break;
                }
            }
        }
    } else {
        for (i, release) in releases.iter().enumerate() {
            created[i] = stored[i] && release.calendar_uid.is_none();
        }
    }

    for (i, (release, event)) in releases.iter().zip(&events).enumerate() {
        if created[i] {
            metrics.events_created.inc();
        }
        if stored[i] && release.calendar_uid.as_deref() != Some(event.uid.as_str()) {
            store.set_calendar_uid(release.id, &event.uid)?;
        }
    }

    if failed.is_empty() {
        Ok(report)
    } else {
        Err(BuiltinError::Partial { failed, total })
    }
}

/// The CalDAV client, with the credentials read from the environment.
fn connect(settings: &CalendarSettings, url: &Url) -> Result<CalDav, BuiltinError> {
    use super::notify::invalid;
    let auth = match (&settings.username_env, &settings.password_env) {
        (Some(user), Some(password)) => {
            let read = |key: &str, var: &str| match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(v),
                _ => Err(invalid(
                    key,
                    format!("environment variable {var} is not set or empty"),
                )),
            };
            Some((read("username_env", user)?, read("password_env", password)?))
        }
        _ => None,
    };
    // The system roots are loaded only for an https server.
    let client = HttpClientBuilder::new()
        .target(url.as_str())
        .connect_timeout(settings.timeout)
        .build()
        .map_err(|e| invalid("caldav_url", chain(&e)))?;
    Ok(CalDav::new(client, url.clone(), auth, settings.timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CalendarSettings, BuiltinError> {
        let table: toml::Table = toml::from_str(text).unwrap();
        CalendarSettings::from_table(&table, Path::new("/jobs"))
    }

    fn key_of(text: &str) -> String {
        match parse(text) {
            Err(BuiltinError::Settings { key, .. }) => key,
            other => panic!("expected a settings error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_and_paths() {
        let s = parse("ics_path = \"out/r.ics\"\ncaldav_url = \"http://127.0.0.1:5232/u/cal\"")
            .unwrap();
        assert_eq!(s.ics_path.as_deref(), Some(Path::new("/jobs/out/r.ics")));
        assert_eq!(
            s.caldav_url.unwrap().as_str(),
            "http://127.0.0.1:5232/u/cal/"
        );
        assert_eq!(s.days_back, 30);
        assert_eq!(s.event_duration, Duration::from_secs(1800));
        assert_eq!(s.timeout, Duration::from_secs(10));
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(key_of("days_back = 3"), "ics_path");
        assert_eq!(
            key_of("ics_path = \"a\"\nevent_duration = \"long\""),
            "event_duration"
        );
        assert_eq!(key_of("ics_path = \"a\"\ntimeout = \"0s\""), "timeout");
        assert_eq!(key_of("caldav_url = \"ftp://x/\""), "caldav_url");
        assert_eq!(key_of("caldav_url = \"not a url\""), "caldav_url");
        assert_eq!(key_of("ics_path = \"a\"\ncolour = 1"), "colour");
        assert_eq!(key_of("ics_path = \"a\"\ndays_back = -1"), "days_back");
        assert_eq!(
            key_of("caldav_url = \"http://x/\"\nusername_env = \"U\""),
            "password_env"
        );
        assert_eq!(key_of("ics_path = \"a\"\nlanguage = \"de\""), "language");
    }

    #[test]
    fn report_line() {
        let r = CalendarReport {
            events: 3,
            file_written: true,
            created: 1,
            updated: 2,
        };
        assert_eq!(
            r.to_string(),
            "3 events, file written, CalDAV: 1 created, 2 updated"
        );
    }
}
