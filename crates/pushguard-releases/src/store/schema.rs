//! Versioned schema of the release store: its own application id (so the
//! state file, or another program's database, is refused rather than written
//! into) and its migrations, applied by `crate::migration`.

use pushguard::migration::Schema;

/// "PGRL" as a big-endian integer.
pub(super) const APPLICATION_ID: i64 = 0x5047_524C;

/// Each entry moves the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: works, their releases, and which channel accepted which release.
    "CREATE TABLE works (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        title        TEXT    NOT NULL,
        native_title TEXT,
        kind         TEXT    NOT NULL CHECK (kind IN ('anime', 'manga')),
        source       TEXT    NOT NULL,
        source_id    TEXT    NOT NULL,
        url          TEXT,
        updated      INTEGER NOT NULL,
        UNIQUE (source, source_id)
     );
     CREATE INDEX works_kind ON works (kind);
     CREATE TABLE releases (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        work         INTEGER NOT NULL REFERENCES works (id) ON DELETE CASCADE,
        episode      INTEGER,
        volume       INTEGER,
        platform     TEXT,
        release_time INTEGER NOT NULL,
        source       TEXT    NOT NULL,
        source_id    TEXT    NOT NULL,
        notified_at  INTEGER,
        calendar_uid TEXT,
        UNIQUE (source, source_id)
     );
     CREATE INDEX releases_time ON releases (release_time, id);
     CREATE INDEX releases_work ON releases (work);
     CREATE TABLE deliveries (
        release INTEGER NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
        channel TEXT    NOT NULL,
        sent_at INTEGER NOT NULL,
        PRIMARY KEY (release, channel)
     ) WITHOUT ROWID;",
    // 2: manga counts as last seen (the baseline new volumes and chapters
    // are detected against), what a release's time means and its chapter;
    // AniList manga releases dated at their series' start by earlier
    // versions (years ago, never a new volume) are not announced any more.
    "CREATE TABLE manga_counts (
        work     INTEGER PRIMARY KEY REFERENCES works (id) ON DELETE CASCADE,
        volumes  INTEGER,
        chapters INTEGER,
        seen     INTEGER NOT NULL
     );
     ALTER TABLE releases ADD COLUMN time_basis TEXT NOT NULL DEFAULT 'scheduled'
        CHECK (time_basis IN ('scheduled', 'detected'));
     ALTER TABLE releases ADD COLUMN chapter INTEGER;
     UPDATE releases SET notified_at = CAST(strftime('%s', 'now') AS INTEGER)
      WHERE notified_at IS NULL
        AND release_time < CAST(strftime('%s', 'now') AS INTEGER)
        AND (source_id GLOB 'manga-[0-9]*' AND source_id NOT GLOB 'manga-*[^0-9]*'
             OR source_id GLOB 'manga-[0-9]*-vol-[0-9]*')
        AND work IN (SELECT id FROM works WHERE kind = 'manga');",
];

/// The release store's schema.
pub(super) const SCHEMA: Schema = Schema {
    application_id: APPLICATION_ID,
    migrations: MIGRATIONS,
};
