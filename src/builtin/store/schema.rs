//! Versioned schema of the release store.
//!
//! `application_id` marks the file as pushguard's release store (so the state
//! file, or another program's database, is refused rather than written into);
//! `user_version` is the schema version. Migrations run in order inside one
//! immediate transaction, so concurrent first opens agree; a file from a newer
//! pushguard is refused rather than guessed at.

use rusqlite::{Connection, TransactionBehavior};

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

/// The schema version this build writes.
pub(super) const VERSION: i64 = MIGRATIONS.len() as i64;

/// What the file held before [`migrate`] ran.
pub(super) enum Found {
    /// A release store of this version or older (now migrated), or an empty file.
    Ok,
    /// A release store of a newer version; left untouched.
    Newer(i64),
    /// Another program's database (its application id); left untouched.
    Foreign(i64),
}

/// Checks the file and applies the missing migrations.
pub(super) fn migrate(conn: &mut Connection) -> rusqlite::Result<Found> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let app: i64 = tx.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if app != APPLICATION_ID {
        let tables: i64 = tx.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        if app != 0 || tables != 0 || version != 0 {
            return Ok(Found::Foreign(app));
        }
        tx.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}"))?;
    }
    if version > VERSION {
        return Ok(Found::Newer(version));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", index + 1))?;
    }
    tx.commit()?;
    Ok(Found::Ok)
}
