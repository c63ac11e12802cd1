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
];

/// The release store's schema.
pub(super) const SCHEMA: Schema = Schema {
    application_id: APPLICATION_ID,
    migrations: MIGRATIONS,
};
