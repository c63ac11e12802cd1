//! The release-delivery store (STUB: the API is fixed, the body is being written).
//!
//! SQLite via rusqlite, separate from the state file: `works`, `releases`,
//! `deliveries` (release × channel accepted), versioned migrations, upserts
//! keyed on (source, source_id). Every query is timed into [`DbMetrics`].

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::metrics::DbMetrics;

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
#[derive(Clone)]
pub struct Store {
    _metrics: DbMetrics,
}

#[allow(unused_variables, missing_docs)]
impl Store {
    /// Opens (creating and migrating) the store at `path`.
    pub fn open(path: &Path, metrics: DbMetrics) -> Result<Store, StoreError> {
        Err(StoreError::Open {
            path: path.to_owned(),
            reason: "not built yet".into(),
        })
    }
    /// Inserts or updates a work keyed on (source, source_id); returns its row id.
    pub fn upsert_work(&self, work: &NewWork) -> Result<i64, StoreError> {
        unimplemented!()
    }
    /// Inserts or updates a release of `work_id` keyed on (source, source_id);
    /// returns its row id and whether it was new.
    pub fn upsert_release(
        &self,
        work_id: i64,
        release: &NewRelease,
    ) -> Result<(i64, bool), StoreError> {
        unimplemented!()
    }
    /// Works, newest change first.
    pub fn works(&self, limit: usize) -> Result<Vec<Work>, StoreError> {
        unimplemented!()
    }
    /// How many works of `kind` are stored.
    pub fn count_works(&self, kind: WorkKind) -> Result<u64, StoreError> {
        unimplemented!()
    }
    /// Releases not yet notified, earliest release first.
    pub fn pending_releases(&self, limit: usize) -> Result<Vec<Release>, StoreError> {
        unimplemented!()
    }
    /// How many releases are not yet notified.
    pub fn count_pending(&self) -> Result<u64, StoreError> {
        unimplemented!()
    }
    /// The channels that already accepted `release_id`.
    pub fn delivered_channels(&self, release_id: i64) -> Result<Vec<String>, StoreError> {
        unimplemented!()
    }
    /// Records that `channel` accepted `release_id` (idempotent).
    pub fn record_delivery(&self, release_id: i64, channel: &str) -> Result<(), StoreError> {
        unimplemented!()
    }
    /// Marks `release_id` notified (every channel accepted it).
    pub fn mark_notified(&self, release_id: i64) -> Result<(), StoreError> {
        unimplemented!()
    }
    /// Releases with a release time at or after `since` (all when `None`), earliest first.
    pub fn releases(&self, since: Option<DateTime<Utc>>) -> Result<Vec<Release>, StoreError> {
        unimplemented!()
    }
    /// Records the calendar event UID of `release_id`.
    pub fn set_calendar_uid(&self, release_id: i64, uid: &str) -> Result<(), StoreError> {
        unimplemented!()
    }
}
