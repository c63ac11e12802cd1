//! Versioned schema of the state file.
//!
//! `application_id` marks the file as pushguard's; `user_version` is the
//! schema version. Migrations run in order inside one immediate transaction,
//! so concurrent first opens agree; a file from a newer pushguard is refused
//! rather than guessed at.

use rusqlite::{Connection, TransactionBehavior};

/// "PGRD" as a big-endian integer.
pub(super) const APPLICATION_ID: i64 = 0x5047_5244;

/// Each entry moves the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: outbox, leases, run history, cumulative counters.
    "CREATE TABLE outbox (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        gateway       TEXT    NOT NULL,
        path          TEXT    NOT NULL,
        method        TEXT    NOT NULL,
        body          BLOB    NOT NULL,
        content_type  TEXT    NOT NULL,
        run_id        INTEGER,
        created       REAL    NOT NULL,
        attempts      INTEGER NOT NULL DEFAULT 0,
        first_attempt REAL,
        last_attempt  REAL,
        last_error    TEXT,
        dead          INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX outbox_group ON outbox (gateway, path, dead, id);
     CREATE TABLE leases (
        gateway TEXT    NOT NULL,
        path    TEXT    NOT NULL,
        owner   TEXT    NOT NULL,
        until   REAL    NOT NULL,
        PRIMARY KEY (gateway, path)
     );
     CREATE TABLE runs (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        job         TEXT    NOT NULL,
        labels      TEXT    NOT NULL,
        start       REAL    NOT NULL,
        end         REAL    NOT NULL,
        duration    REAL    NOT NULL,
        outcome     TEXT    NOT NULL,
        exit_code   INTEGER NOT NULL,
        trace_id    TEXT,
        push_status TEXT    NOT NULL
     );
     CREATE INDEX runs_job ON runs (job, id);
     CREATE TABLE counters (
        grouping TEXT NOT NULL,
        name     TEXT NOT NULL,
        labels   TEXT NOT NULL,
        value    REAL NOT NULL,
        PRIMARY KEY (grouping, name, labels)
     );",
    // 2: the last output lines of a runner command, kept with its run.
    "ALTER TABLE runs ADD COLUMN output TEXT;",
];

/// The schema version this build writes.
pub(super) const VERSION: i64 = MIGRATIONS.len() as i64;

/// What the file held before [`migrate`] ran.
pub(super) enum Found {
    Ok,
    Newer(i64),
    Foreign(i64),
}

pub(super) fn migrate(conn: &mut Connection) -> rusqlite::Result<Found> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let app: i64 = tx.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if app != APPLICATION_ID {
        let tables: i64 = tx.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        if app != 0 || tables != 0 {
            return Ok(Found::Foreign(app));
        }
        tx.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}"))?;
    }
    if version > VERSION {
        return Ok(Found::Newer(version));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", index + 1))?;
    }
    tx.commit()?;
    Ok(Found::Ok)
}
