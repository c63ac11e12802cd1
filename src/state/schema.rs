//! Versioned schema of the state file: its application id and migrations,
//! applied (or the file refused) by `crate::migration`.

use crate::migration::Schema;

/// "PGRD" as a big-endian integer.
pub(super) const APPLICATION_ID: i64 = 0x5047_5244;

/// Each entry moves the schema from version `index` to `index + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // 3: pushes are ordered and leased per gateway identity (see
    // `Gateway::identity`), not per spelling of its URL; `gateway` keeps the
    // URL as configured, and lease rows now hold identities.
    "ALTER TABLE outbox ADD COLUMN gateway_id TEXT NOT NULL DEFAULT '';
     UPDATE outbox SET gateway_id = pushguard_gateway_identity(gateway);
     DROP INDEX outbox_group;
     CREATE INDEX outbox_gateway_group ON outbox (gateway_id, path, dead, id);
     UPDATE OR REPLACE leases SET gateway = pushguard_gateway_identity(gateway);",
    // 4: groups with an attempt in doubt (sent, never answered: the gateway
    // may still apply it late) and the newest push delivered since, to send
    // again once the late one can no longer land.
    "CREATE TABLE in_doubt (
        gateway_id TEXT NOT NULL,
        path TEXT NOT NULL,
        settle_at REAL NOT NULL,
        method TEXT,
        body TEXT,
        PRIMARY KEY (gateway_id, path)
     );",
    // 5: the host that ran each run (several hosts can share one state).
    "ALTER TABLE runs ADD COLUMN host TEXT;",
];

/// The SQL function migration 3 calls: [`crate::push::identity_of`],
/// registered on every connection before the schema is migrated.
pub(super) const IDENTITY_FUNCTION: &str = "pushguard_gateway_identity";

/// The state file's schema.
pub(super) const SCHEMA: Schema = Schema {
    application_id: APPLICATION_ID,
    migrations: MIGRATIONS,
};
