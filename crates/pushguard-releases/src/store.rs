//! The release-delivery store: what the sources published, and what was
//! already delivered where.
//!
//! SQLite via rusqlite, in a file separate from the state file: `works`,
//! `releases`, `deliveries` (release × channel accepted), versioned
//! migrations, upserts keyed on (source, source_id) so that fetching the same
//! data twice never duplicates a row. WAL mode and a busy timeout let the
//! runner's jobs and a CLI share the file. Every query is timed into
//! [`DbMetrics`] (`db_operations_total`, `db_operation_duration_seconds`).

mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension as _, Row, TransactionBehavior, params};

use super::metrics::DbMetrics;
use pushguard::migration::Found;

/// How long a query waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Anime or manga.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkKind {
    /// An animated series or film.
    Anime,
    /// A comic series.
    Manga,
}

impl WorkKind {
    /// `"anime"` or `"manga"`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkKind::Anime => "anime",
            WorkKind::Manga => "manga",
        }
    }
}

/// A work as fetched from a source.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWork {
    /// The source's name as configured (`anilist`, a feed's name).
    pub source: String,
    /// The work's id at that source.
    pub source_id: String,
    /// Anime or manga.
    pub kind: WorkKind,
    /// The title (romaji or English).
    pub title: String,
    /// The native (Japanese) title.
    pub native_title: Option<String>,
    /// The work's page.
    pub url: Option<String>,
}

/// A release (episode or volume) as fetched from a source.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRelease {
    /// The source's name.
    pub source: String,
    /// The release's id at that source (unique per source).
    pub source_id: String,
    /// Episode number (anime).
    pub episode: Option<u32>,
    /// Volume number (manga).
    pub volume: Option<u32>,
    /// Where it appears (a streaming service, a publisher, a store).
    pub platform: Option<String>,
    /// When it is (or was) released.
    pub release_time: DateTime<Utc>,
}

/// What a release's time means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeBasis {
    /// The source's date for the release (an airing time, a publication
    /// date, a series' announced start).
    #[default]
    Scheduled,
    /// When pushguard detected the release: the source gives no date for it
    /// (AniList's manga counts grew between two fetches).
    Detected,
}

impl TimeBasis {
    /// `"scheduled"` or `"detected"`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeBasis::Scheduled => "scheduled",
            TimeBasis::Detected => "detected",
        }
    }
}

impl FromSql for TimeBasis {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value.as_str()? {
            "scheduled" => Ok(TimeBasis::Scheduled),
            "detected" => Ok(TimeBasis::Detected),
            other => Err(FromSqlError::Other(
                format!("unknown time basis {other:?}: expected scheduled or detected").into(),
            )),
        }
    }
}

/// What a release is beyond [`NewRelease`]: what its time means and, for a
/// manga chapter, its number. Kept beside the release (not in
/// [`Release`]) so that a release's readers opt in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReleaseDetail {
    /// What `release_time` means.
    pub time_basis: TimeBasis,
    /// Chapter number (manga), when the release is a new chapter.
    pub chapter: Option<u32>,
}

/// A manga's volume and chapter counts as a source last reported them: the
/// baseline a growth is detected against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MangaCounts {
    /// Volumes.
    pub volumes: Option<u32>,
    /// Chapters.
    pub chapters: Option<u32>,
}

/// A stored work.
#[derive(Debug, Clone, PartialEq)]
pub struct Work {
    /// Row id.
    pub id: i64,
    /// Anime or manga.
    pub kind: WorkKind,
    /// The title.
    pub title: String,
    /// The native title.
    pub native_title: Option<String>,
    /// The source's name.
    pub source: String,
    /// The id at the source.
    pub source_id: String,
    /// The work's page.
    pub url: Option<String>,
    /// When the row last changed.
    pub updated: DateTime<Utc>,
}

/// A stored release with its work's titles.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    /// Row id.
    pub id: i64,
    /// The work's row id.
    pub work_id: i64,
    /// Anime or manga.
    pub kind: WorkKind,
    /// The work's title.
    pub title: String,
    /// The work's native title.
    pub native_title: Option<String>,
    /// The work's page.
    pub url: Option<String>,
    /// Episode number.
    pub episode: Option<u32>,
    /// Volume number.
    pub volume: Option<u32>,
    /// Where it appears.
    pub platform: Option<String>,
    /// When it is released.
    pub release_time: DateTime<Utc>,
    /// The source's name.
    pub source: String,
    /// The id at the source.
    pub source_id: String,
    /// When every channel accepted it; `None` while pending.
    pub notified_at: Option<DateTime<Utc>>,
    /// The calendar event's UID once synced.
    pub calendar_uid: Option<String>,
    /// Chapter number (manga), when the release is a new chapter.
    pub chapter: Option<u32>,
    /// What [`release_time`](Self::release_time) means: the source's date,
    /// or when pushguard detected the release (messages say which).
    pub time_basis: TimeBasis,
}

/// A store that cannot be opened, migrated or queried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file cannot be opened, is not a store, or is newer than this build.
    #[error("release store {}: {reason}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A query failed.
    #[error("release store: {operation} on {table}: {source}")]
    Query {
        /// `select`, `upsert`, `update`, …
        operation: &'static str,
        /// The table.
        table: &'static str,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
}

/// The store: a cheap `Clone` handle over one SQLite connection.
///
/// ```no_run
/// use pushguard_releases::{DbMetrics, NewRelease, NewWork, Store, WorkKind};
///
/// let registry = pushguard::prometheus::Registry::new();
/// let store = Store::open("releases.db".as_ref(), DbMetrics::new(&registry))?;
/// let work = store.upsert_work(&NewWork {
///     source: "anilist".into(),
///     source_id: "21".into(),
///     kind: WorkKind::Anime,
///     title: "One Piece".into(),
///     native_title: Some("ワンピース".into()),
///     url: Some("https://anilist.co/anime/21".into()),
/// })?;
/// let (_id, new) = store.upsert_release(work, &NewRelease {
///     source: "anilist".into(),
///     source_id: "airing-1".into(),
///     episode: Some(1100),
///     volume: None,
///     platform: None,
///     release_time: chrono::Utc::now(),
/// })?;
/// println!("new release: {new}; pending: {}", store.count_pending()?);
/// # Ok::<(), pushguard_releases::StoreError>(())
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    conn: Mutex<Connection>,
    metrics: DbMetrics,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl FromSql for WorkKind {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value.as_str()? {
            "anime" => Ok(WorkKind::Anime),
            "manga" => Ok(WorkKind::Manga),
            other => Err(FromSqlError::Other(
                format!("unknown work kind {other:?}: expected anime or manga").into(),
            )),
        }
    }
}

/// Unix seconds of `t`.
fn secs(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

/// The time stored in column `index` (unix seconds).
fn time_at(row: &Row<'_>, index: usize) -> rusqlite::Result<DateTime<Utc>> {
    let secs: i64 = row.get(index)?;
    DateTime::from_timestamp(secs, 0).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Integer,
            format!("time {secs} is out of range").into(),
        )
    })
}

fn optional_time_at(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    match row.get_ref(index)? {
        ValueRef::Null => Ok(None),
        _ => time_at(row, index).map(Some),
    }
}

/// The columns [`release_from`] reads, in order.
const RELEASE_COLUMNS: &str = "SELECT r.id, r.work, w.kind, w.title, w.native_title, w.url,
        r.episode, r.volume, r.platform, r.release_time, r.source, r.source_id,
        r.notified_at, r.calendar_uid, r.chapter, r.time_basis
   FROM releases r JOIN works w ON w.id = r.work";

fn release_from(row: &Row<'_>) -> rusqlite::Result<Release> {
    Ok(Release {
        id: row.get(0)?,
        work_id: row.get(1)?,
        kind: row.get(2)?,
        title: row.get(3)?,
        native_title: row.get(4)?,
        url: row.get(5)?,
        episode: row.get(6)?,
        volume: row.get(7)?,
        platform: row.get(8)?,
        release_time: time_at(row, 9)?,
        source: row.get(10)?,
        source_id: row.get(11)?,
        notified_at: optional_time_at(row, 12)?,
        calendar_uid: row.get(13)?,
        chapter: row.get(14)?,
        time_basis: row.get(15)?,
    })
}

/// `limit` as an SQLite `LIMIT` (which takes an i64; -1 is "no limit").
fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(-1)
}

/// An update that must touch exactly one row: an unknown id is an error.
fn one_row(changed: usize) -> rusqlite::Result<()> {
    match changed {
        0 => Err(rusqlite::Error::QueryReturnedNoRows),
        _ => Ok(()),
    }
}

impl Store {
    /// Opens (creating and migrating) the store at `path`, creating its
    /// directory when missing.
    ///
    /// A file that is not SQLite, is another program's database, or was
    /// written by a newer pushguard is refused with [`StoreError::Open`] and
    /// left as it was.
    pub fn open(path: &Path, metrics: DbMetrics) -> Result<Store, StoreError> {
        let fail = |reason: String| StoreError::Open {
            path: path.to_owned(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                fail(format!(
                    "cannot create the directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        pushguard::migration::create_private(path)
            .map_err(|e| fail(format!("cannot create the file: {e}")))?;
        let sql = |e: rusqlite::Error| fail(describe(&e));
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        // Checked before anything else is changed: a refused file stays as it was.
        match schema::SCHEMA.migrate(&mut conn).map_err(sql)? {
            Found::Ok => {}
            Found::Newer(found) => {
                return Err(fail(format!(
                    "schema version {found} is newer than this pushguard knows ({}); upgrade pushguard",
                    schema::SCHEMA.version()
                )));
            }
            Found::Foreign(app) => {
                return Err(fail(format!(
                    "not a release store (application id {app:#x}, other tables present); choose another path"
                )));
            }
        }
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(sql)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(fail(format!(
                "cannot switch to WAL mode (journal mode stays {mode:?})"
            )));
        }
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(sql)?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                conn: Mutex::new(conn),
                metrics,
            }),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs a `count(*)` query under [`Store::query`].
    fn count(
        &self,
        table: &'static str,
        sql: &str,
        param: Option<&str>,
    ) -> Result<u64, StoreError> {
        self.query("count", table, |conn| {
            let n: i64 = match param {
                Some(p) => conn.query_row(sql, [p], |r| r.get(0))?,
                None => conn.query_row(sql, [], |r| r.get(0))?,
            };
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    /// Runs one query under the connection lock, timed into the metrics.
    fn query<T>(
        &self,
        operation: &'static str,
        table: &'static str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.inner.conn.lock().unwrap_or_else(|p| p.into_inner());
        let start = Instant::now();
        let result = f(&mut conn);
        self.inner.metrics.observe(
            operation,
            table,
            result.is_ok(),
            start.elapsed().as_secs_f64(),
        );
        result.map_err(|source| StoreError::Query {
            operation,
            table,
            source,
        })
    }

    /// Inserts or updates a work keyed on (source, source_id); returns its row id.
    ///
    /// `updated` moves only when a stored value changed; a native title or
    /// URL the source no longer sends is kept.
    pub fn upsert_work(&self, work: &NewWork) -> Result<i64, StoreError> {
        self.insert_or_update_work(work).map(|(id, _)| id)
    }

    /// [`Store::upsert_work`], also saying whether the work was new.
    pub fn insert_or_update_work(&self, work: &NewWork) -> Result<(i64, bool), StoreError> {
        self.query("upsert", "works", |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let existing: Option<i64> = tx
                .query_row(
                    "SELECT id FROM works WHERE source = ?1 AND source_id = ?2",
                    params![work.source, work.source_id],
                    |r| r.get(0),
                )
                .optional()?;
            let id: i64 = tx.query_row(
                "INSERT INTO works (title, native_title, kind, source, source_id, url, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (source, source_id) DO UPDATE SET
                    title = excluded.title,
                    native_title = coalesce(excluded.native_title, works.native_title),
                    kind = excluded.kind,
                    url = coalesce(excluded.url, works.url),
                    updated = CASE
                        WHEN works.title IS NOT excluded.title
                          OR works.native_title IS NOT coalesce(excluded.native_title, works.native_title)
                          OR works.kind IS NOT excluded.kind
                          OR works.url IS NOT coalesce(excluded.url, works.url)
                        THEN excluded.updated ELSE works.updated END
                 RETURNING id",
                params![
                    work.title,
                    work.native_title,
                    work.kind.as_str(),
                    work.source,
                    work.source_id,
                    work.url,
                    secs(Utc::now()),
                ],
                |r| r.get(0),
            )?;
            tx.commit()?;
            Ok((id, existing.is_none()))
        })
    }

    /// Inserts or updates a release of `work_id` keyed on (source, source_id);
    /// returns its row id and whether it was new.
    ///
    /// An update keeps `notified_at`, the deliveries and the calendar UID: a
    /// release that moved to another time is not announced twice.
    pub fn upsert_release(
        &self,
        work_id: i64,
        release: &NewRelease,
    ) -> Result<(i64, bool), StoreError> {
        self.query("upsert", "releases", |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let existing: Option<i64> = tx
                .query_row(
                    "SELECT id FROM releases WHERE source = ?1 AND source_id = ?2",
                    params![release.source, release.source_id],
                    |r| r.get(0),
                )
                .optional()?;
            let id: i64 = tx.query_row(
                "INSERT INTO releases (work, episode, volume, platform, release_time, source, source_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (source, source_id) DO UPDATE SET
                    work = excluded.work,
                    episode = excluded.episode,
                    volume = excluded.volume,
                    platform = excluded.platform,
                    release_time = excluded.release_time
                 RETURNING id",
                params![
                    work_id,
                    release.episode,
                    release.volume,
                    release.platform,
                    secs(release.release_time),
                    release.source,
                    release.source_id,
                ],
                |r| r.get(0),
            )?;
            tx.commit()?;
            Ok((id, existing.is_none()))
        })
    }

    /// Records what a release is beyond its row (see [`ReleaseDetail`]);
    /// an unknown release is an error.
    pub fn set_release_detail(
        &self,
        release_id: i64,
        detail: ReleaseDetail,
    ) -> Result<(), StoreError> {
        self.query("update", "releases", |conn| {
            conn.execute(
                "UPDATE releases SET time_basis = ?2, chapter = ?3 WHERE id = ?1",
                params![release_id, detail.time_basis.as_str(), detail.chapter],
            )
            .and_then(one_row)
        })
    }

    /// What a release is beyond its row: whether its time is a detection
    /// time, its chapter. An unknown release is an error.
    pub fn release_detail(&self, release_id: i64) -> Result<ReleaseDetail, StoreError> {
        self.query("select", "releases", |conn| {
            conn.query_row(
                "SELECT time_basis, chapter FROM releases WHERE id = ?1",
                [release_id],
                |r| {
                    Ok(ReleaseDetail {
                        time_basis: r.get(0)?,
                        chapter: r.get(1)?,
                    })
                },
            )
        })
    }

    /// The counts last recorded for manga `work_id`; `None` before its first
    /// fetch.
    pub fn manga_counts(&self, work_id: i64) -> Result<Option<MangaCounts>, StoreError> {
        self.query("select", "manga_counts", |conn| {
            conn.query_row(
                "SELECT volumes, chapters FROM manga_counts WHERE work = ?1",
                [work_id],
                |r| {
                    Ok(MangaCounts {
                        volumes: r.get(0)?,
                        chapters: r.get(1)?,
                    })
                },
            )
            .optional()
        })
    }

    /// Records `counts` as manga `work_id`'s baseline.
    pub fn set_manga_counts(&self, work_id: i64, counts: MangaCounts) -> Result<(), StoreError> {
        self.query("upsert", "manga_counts", |conn| {
            conn.execute(
                "INSERT INTO manga_counts (work, volumes, chapters, seen) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (work) DO UPDATE SET
                    volumes = excluded.volumes, chapters = excluded.chapters, seen = excluded.seen",
                params![work_id, counts.volumes, counts.chapters, secs(Utc::now())],
            )
            .map(drop)
        })
    }

    /// Works, newest change first.
    pub fn works(&self, limit: usize) -> Result<Vec<Work>, StoreError> {
        self.query("select", "works", |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, kind, title, native_title, source, source_id, url, updated
                   FROM works ORDER BY updated DESC, id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit_of(limit)], |r| {
                Ok(Work {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    title: r.get(2)?,
                    native_title: r.get(3)?,
                    source: r.get(4)?,
                    source_id: r.get(5)?,
                    url: r.get(6)?,
                    updated: time_at(r, 7)?,
                })
            })?;
            rows.collect()
        })
    }

    /// How many works of `kind` are stored.
    pub fn count_works(&self, kind: WorkKind) -> Result<u64, StoreError> {
        self.count(
            "works",
            "SELECT count(*) FROM works WHERE kind = ?1",
            Some(kind.as_str()),
        )
    }

    /// How many releases are stored, notified or not.
    pub fn count_releases(&self) -> Result<u64, StoreError> {
        self.count("releases", "SELECT count(*) FROM releases", None)
    }

    /// Releases not yet notified, earliest release first.
    pub fn pending_releases(&self, limit: usize) -> Result<Vec<Release>, StoreError> {
        self.query("select", "releases", |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "{RELEASE_COLUMNS} WHERE r.notified_at IS NULL
                 ORDER BY r.release_time, r.id LIMIT ?1"
            ))?;
            let rows = stmt.query_map([limit_of(limit)], release_from)?;
            rows.collect()
        })
    }

    /// How many releases are not yet notified.
    pub fn count_pending(&self) -> Result<u64, StoreError> {
        self.count(
            "releases",
            "SELECT count(*) FROM releases WHERE notified_at IS NULL",
            None,
        )
    }

    /// The channels that already accepted `release_id`, by name.
    pub fn delivered_channels(&self, release_id: i64) -> Result<Vec<String>, StoreError> {
        self.query("select", "deliveries", |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT channel FROM deliveries WHERE release = ?1 ORDER BY channel",
            )?;
            let rows = stmt.query_map([release_id], |r| r.get(0))?;
            rows.collect()
        })
    }

    /// Records that `channel` accepted `release_id` (idempotent: the first
    /// time is kept). An unknown release is an error.
    pub fn record_delivery(&self, release_id: i64, channel: &str) -> Result<(), StoreError> {
        self.query("insert", "deliveries", |conn| {
            conn.execute(
                "INSERT INTO deliveries (release, channel, sent_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (release, channel) DO NOTHING",
                params![release_id, channel, secs(Utc::now())],
            )
            .map(drop)
        })
    }

    /// Marks `release_id` notified (every channel accepted it). Marking it
    /// again keeps the first time; an unknown release is an error.
    pub fn mark_notified(&self, release_id: i64) -> Result<(), StoreError> {
        self.query("update", "releases", |conn| {
            conn.execute(
                "UPDATE releases SET notified_at = coalesce(notified_at, ?2) WHERE id = ?1",
                params![release_id, secs(Utc::now())],
            )
            .and_then(one_row)
        })
    }

    /// Releases with a release time at or after `since` (all when `None`), earliest first.
    pub fn releases(&self, since: Option<DateTime<Utc>>) -> Result<Vec<Release>, StoreError> {
        self.query("select", "releases", |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "{RELEASE_COLUMNS} WHERE ?1 IS NULL OR r.release_time >= ?1
                 ORDER BY r.release_time, r.id"
            ))?;
            let rows = stmt.query_map([since.map(secs)], release_from)?;
            rows.collect()
        })
    }

    /// Records the calendar event UID of `release_id`; an unknown release is an error.
    pub fn set_calendar_uid(&self, release_id: i64, uid: &str) -> Result<(), StoreError> {
        self.query("update", "releases", |conn| {
            conn.execute(
                "UPDATE releases SET calendar_uid = ?2 WHERE id = ?1",
                params![release_id, uid],
            )
            .and_then(one_row)
        })
    }
}

/// An open failure in words: what SQLite said, and what to do about it.
fn describe(e: &rusqlite::Error) -> String {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) | Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
            format!("not an SQLite database or damaged ({e}); move it aside to start a new store")
        }
        Some(rusqlite::ErrorCode::CannotOpen) => format!("cannot open the file ({e})"),
        Some(rusqlite::ErrorCode::ReadOnly) | Some(rusqlite::ErrorCode::PermissionDenied) => {
            format!("the file is not writable ({e})")
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushguard::prometheus::Registry;

    fn open(dir: &tempfile::TempDir) -> (Store, Registry) {
        let registry = Registry::new();
        let store = Store::open(&dir.path().join("releases.db"), DbMetrics::new(&registry))
            .expect("open a new store");
        (store, registry)
    }

    fn work(source_id: &str, kind: WorkKind) -> NewWork {
        NewWork {
            source: "anilist".into(),
            source_id: source_id.into(),
            kind,
            title: format!("Title {source_id}"),
            native_title: Some("葬送のフリーレン".into()),
            url: Some(format!("https://anilist.co/anime/{source_id}")),
        }
    }

    fn release(source_id: &str, at: i64) -> NewRelease {
        NewRelease {
            source: "anilist".into(),
            source_id: source_id.into(),
            episode: Some(3),
            volume: None,
            platform: Some("Crunchyroll".into()),
            release_time: DateTime::from_timestamp(at, 0).expect("valid time"),
        }
    }

    fn counter(registry: &Registry, labels: &[(&str, &str)]) -> u64 {
        registry
            .gather()
            .iter()
            .filter(|f| f.name() == "db_operations_total")
            .flat_map(|f| f.get_metric().iter())
            .filter(|m| {
                labels.iter().all(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                })
            })
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    #[test]
    fn upserts_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(&dir);
        let (a, new) = store
            .insert_or_update_work(&work("1", WorkKind::Anime))
            .unwrap();
        assert!(new);
        let (b, new) = store
            .insert_or_update_work(&work("1", WorkKind::Anime))
            .unwrap();
        assert_eq!((a, new), (b, false));
        assert_eq!(store.upsert_work(&work("1", WorkKind::Anime)).unwrap(), a);
        let (r1, new1) = store
            .upsert_release(a, &release("e1", 1_700_000_000))
            .unwrap();
        let (r2, new2) = store
            .upsert_release(a, &release("e1", 1_700_000_600))
            .unwrap();
        assert_eq!((r1, new1, new2), (r2, true, false));
        assert_eq!(store.count_releases().unwrap(), 1);
        let all = store.releases(None).unwrap();
        assert_eq!(all.len(), 1);
        // The update moved the time; the titles come from the work, intact.
        assert_eq!(all[0].release_time.timestamp(), 1_700_000_600);
        assert_eq!(all[0].native_title.as_deref(), Some("葬送のフリーレン"));
        assert_eq!(all[0].episode, Some(3));
        assert_eq!(all[0].platform.as_deref(), Some("Crunchyroll"));
        // The same id at another source is another work.
        let mut other = work("1", WorkKind::Manga);
        other.source = "kodansha".into();
        assert_ne!(store.upsert_work(&other).unwrap(), a);
    }

    #[test]
    fn a_work_update_changes_the_title_and_keeps_the_native_one() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(&dir);
        let id = store.upsert_work(&work("7", WorkKind::Manga)).unwrap();
        let mut renamed = work("7", WorkKind::Manga);
        renamed.title = "Frieren".into();
        renamed.native_title = None;
        assert_eq!(store.upsert_work(&renamed).unwrap(), id);
        let works = store.works(10).unwrap();
        assert_eq!(works.len(), 1);
        assert_eq!(works[0].title, "Frieren");
        assert_eq!(works[0].native_title.as_deref(), Some("葬送のフリーレン"));
        assert_eq!(works[0].kind, WorkKind::Manga);
    }

    #[test]
    fn pending_deliveries_and_mark_notified() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(&dir);
        let w = store.upsert_work(&work("1", WorkKind::Anime)).unwrap();
        let (late, _) = store.upsert_release(w, &release("late", 2_000)).unwrap();
        let (early, _) = store.upsert_release(w, &release("early", 1_000)).unwrap();
        let pending = store.pending_releases(10).unwrap();
        assert_eq!(
            pending.iter().map(|r| r.id).collect::<Vec<_>>(),
            [early, late]
        );
        assert_eq!(store.pending_releases(1).unwrap().len(), 1);
        assert_eq!(store.count_pending().unwrap(), 2);

        assert!(store.delivered_channels(early).unwrap().is_empty());
        store.record_delivery(early, "slack").unwrap();
        store.record_delivery(early, "slack").unwrap();
        store.record_delivery(early, "discord").unwrap();
        assert_eq!(
            store.delivered_channels(early).unwrap(),
            ["discord", "slack"]
        );
        assert!(store.record_delivery(9999, "slack").is_err());

        store.mark_notified(early).unwrap();
        let first = store.releases(None).unwrap()[0].notified_at;
        assert!(first.is_some());
        store.mark_notified(early).unwrap();
        assert_eq!(store.releases(None).unwrap()[0].notified_at, first);
        assert_eq!(store.count_pending().unwrap(), 1);
        assert_eq!(store.pending_releases(10).unwrap()[0].id, late);
        assert!(matches!(
            store.mark_notified(9999),
            Err(StoreError::Query {
                operation: "update",
                table: "releases",
                ..
            })
        ));
        // Re-fetching a notified release does not make it pending again.
        let (again, new) = store.upsert_release(w, &release("early", 1_500)).unwrap();
        assert_eq!((again, new), (early, false));
        assert_eq!(store.count_pending().unwrap(), 1);
    }

    #[test]
    fn counts_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(&dir);
        for id in ["1", "2", "3"] {
            store.upsert_work(&work(id, WorkKind::Anime)).unwrap();
        }
        store.upsert_work(&work("4", WorkKind::Manga)).unwrap();
        assert_eq!(store.count_works(WorkKind::Anime).unwrap(), 3);
        assert_eq!(store.count_works(WorkKind::Manga).unwrap(), 1);
        assert_eq!(store.works(2).unwrap().len(), 2);
        assert_eq!(store.count_releases().unwrap(), 0);
    }

    #[test]
    fn calendar_uid_and_releases_since() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(&dir);
        let w = store.upsert_work(&work("1", WorkKind::Anime)).unwrap();
        let (old, _) = store.upsert_release(w, &release("old", 1_000)).unwrap();
        let (new, _) = store.upsert_release(w, &release("new", 3_000)).unwrap();
        store.set_calendar_uid(new, "release-2@pushguard").unwrap();
        let since = DateTime::from_timestamp(2_000, 0);
        let later = store.releases(since).unwrap();
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].id, new);
        assert_eq!(
            later[0].calendar_uid.as_deref(),
            Some("release-2@pushguard")
        );
        assert_eq!(store.releases(None).unwrap()[0].id, old);
        assert!(store.set_calendar_uid(12345, "x").is_err());
    }

    #[test]
    fn reopening_keeps_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(&dir);
        store.upsert_work(&work("1", WorkKind::Anime)).unwrap();
        drop(store);
        let (store, _) = open(&dir);
        assert_eq!(store.count_works(WorkKind::Anime).unwrap(), 1);
        let clone = store.clone();
        assert_eq!(clone.path(), dir.path().join("releases.db"));
    }

    #[test]
    fn release_details_and_manga_counts() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(&dir);
        let w = store.upsert_work(&work("1", WorkKind::Manga)).unwrap();
        let (r, _) = store
            .upsert_release(w, &release("manga-1-ch-5", 1_000))
            .unwrap();
        assert_eq!(store.release_detail(r).unwrap(), ReleaseDetail::default());
        let detail = ReleaseDetail {
            time_basis: TimeBasis::Detected,
            chapter: Some(5),
        };
        store.set_release_detail(r, detail).unwrap();
        assert_eq!(store.release_detail(r).unwrap(), detail);
        assert!(store.set_release_detail(999, detail).is_err());
        assert!(store.release_detail(999).is_err());

        assert_eq!(store.manga_counts(w).unwrap(), None);
        let counts = MangaCounts {
            volumes: None,
            chapters: Some(5),
        };
        store.set_manga_counts(w, counts).unwrap();
        assert_eq!(store.manga_counts(w).unwrap(), Some(counts));
        let counts = MangaCounts {
            volumes: Some(2),
            chapters: Some(6),
        };
        store.set_manga_counts(w, counts).unwrap();
        assert_eq!(store.manga_counts(w).unwrap(), Some(counts));
    }

    #[test]
    fn the_upgrade_stops_announcing_series_starts_as_volumes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("releases.db");
        // A version-1 store as the earlier fetch filled it.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA application_id = {};
             {}
             PRAGMA user_version = 1;
             INSERT INTO works (id, title, kind, source, source_id, updated)
               VALUES (1, 'ONE PIECE', 'manga', 'anilist', '30013', 0),
                      (2, 'Frieren', 'anime', 'anilist', '154587', 0),
                      (3, 'Blue Lock', 'manga', 'kodansha', 'bl', 0);
             INSERT INTO releases (work, volume, release_time, source, source_id) VALUES
               (1, 108, 869529600, 'anilist', 'manga-30013-vol-108'),
               (1, NULL, 869529600, 'anilist', 'manga-30013'),
               (1, NULL, 4102444800, 'anilist', 'manga-30014'),
               (2, NULL, 869529600, 'anilist', 'airing-1'),
               (3, 25, 869529600, 'kodansha', 'manga-bl-25');",
            schema::APPLICATION_ID,
            schema::SCHEMA.migrations[0]
        ))
        .unwrap();
        drop(conn);
        let (store, _) = open(&dir);
        let pending: Vec<String> = store
            .pending_releases(10)
            .unwrap()
            .into_iter()
            .map(|r| r.source_id)
            .collect();
        assert_eq!(pending, ["airing-1", "manga-bl-25", "manga-30014"]);
        assert_eq!(store.count_releases().unwrap(), 5);
    }

    #[test]
    fn a_newer_file_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("releases.db");
        {
            let (_store, _) = open(&dir);
        }
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
        drop(conn);
        let err = Store::open(&path, DbMetrics::new(&Registry::new())).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("schema version 99 is newer"), "{text}");
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 99);
    }

    #[test]
    fn a_garbage_file_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("releases.db");
        let garbage = b"this is not a database, it is a text file that is long enough ".repeat(20);
        std::fs::write(&path, &garbage).unwrap();
        let err = Store::open(&path, DbMetrics::new(&Registry::new())).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("not an SQLite database"), "{text}");
        assert_eq!(std::fs::read(&path).unwrap(), garbage);
    }

    #[test]
    fn another_programs_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE notes (body TEXT)")
            .unwrap();
        drop(conn);
        let err = Store::open(&path, DbMetrics::new(&Registry::new())).unwrap_err();
        assert!(err.to_string().contains("not a release store"), "{err}");
    }

    #[test]
    fn the_file_is_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open(&dir);
        let conn = store.inner.conn.lock().unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn every_query_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let (store, registry) = open(&dir);
        let w = store.upsert_work(&work("1", WorkKind::Anime)).unwrap();
        let (r, _) = store.upsert_release(w, &release("e", 1)).unwrap();
        store.count_works(WorkKind::Anime).unwrap();
        store.count_pending().unwrap();
        store.pending_releases(5).unwrap();
        store.record_delivery(r, "email").unwrap();
        store.delivered_channels(r).unwrap();
        store.mark_notified(r).unwrap();
        let _ = store.mark_notified(424242);
        let ok = [("status", "success")];
        assert_eq!(
            counter(&registry, &[("operation", "upsert"), ("table", "works")]),
            1
        );
        assert_eq!(
            counter(&registry, &[("operation", "upsert"), ("table", "releases")]),
            1
        );
        assert_eq!(
            counter(&registry, &[("operation", "count"), ("table", "works")]),
            1
        );
        assert_eq!(
            counter(&registry, &[("operation", "count"), ("table", "releases")]),
            1
        );
        assert_eq!(
            counter(
                &registry,
                &[("operation", "insert"), ("table", "deliveries")]
            ),
            1
        );
        assert_eq!(
            counter(
                &registry,
                &[("operation", "select"), ("table", "deliveries")]
            ),
            1
        );
        assert_eq!(
            counter(
                &registry,
                &[("operation", "update"), ("table", "releases"), ok[0]]
            ),
            1
        );
        assert_eq!(
            counter(
                &registry,
                &[
                    ("operation", "update"),
                    ("table", "releases"),
                    ("status", "failure")
                ]
            ),
            1
        );
        let histograms: u64 = registry
            .gather()
            .iter()
            .filter(|f| f.name() == "db_operation_duration_seconds")
            .flat_map(|f| f.get_metric().iter())
            .map(|m| m.get_histogram().get_sample_count())
            .sum();
        assert_eq!(histograms, 9);
    }
}
