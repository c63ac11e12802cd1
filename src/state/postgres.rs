//! The state on PostgreSQL (`State::open("postgres://…")`): the same
//! outbox, run history and cumulative counters as the SQLite file, shared by
//! processes on many hosts.
//!
//! SQLite serializes writers with an immediate transaction; here each write
//! transaction is an ordinary `READ COMMITTED` one whose statements lock what
//! they touch, so that the guarantees hold without a database-wide lock:
//!
//! - totals: `INSERT … ON CONFLICT DO UPDATE SET value = value + …
//!   RETURNING value`, one atomic read-modify-write per sample;
//! - leases: the live lease row is read `FOR UPDATE`, and taken with an
//!   `INSERT … ON CONFLICT DO UPDATE … WHERE` that re-checks the expiry and
//!   owner on the newest row version, so two processes never both win;
//! - order within a group: a spool first locks its group's row in
//!   `outbox_groups` (an upsert), and only then draws its outbox id, so the
//!   ids of one group are handed out in commit order and the oldest pending
//!   entry is always the one to deliver next.
//!
//! Row locks last until the transaction ends, and no transaction spans a
//! network call. `SET LOCAL lock_timeout` bounds the wait for another
//! process's locks like SQLite's busy timeout.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::time::Duration;

use ::postgres::config::Host;
use ::postgres::types::{FromSql, ToSql, Type};
use ::postgres::{Client, Config, NoTls};

pub(super) mod fleet;

use super::fleet::Fire;
use super::{
    BUSY_TIMEOUT, NewEntry, NewRun, OutboxEntry, Pending, Retention, RunRecord, StateError, Tx,
    TxOps, host_name, owner_alive, unix_now,
};
use crate::push::Stored;
use crate::redact::mask_url;

/// The table holding the schema version.
const VERSION_TABLE: &str = "pushguard_schema";

/// Advisory lock key taken while migrating ("PGRD"), so concurrent first
/// opens agree.
const MIGRATION_LOCK: i64 = 0x5047_5244;

/// Each entry moves the schema from version `index` to `index + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the SQLite file's schema at its version 4, plus the group rows a
    // spool locks to keep a group's ids in commit order.
    r#"CREATE TABLE outbox (
        id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        gateway       TEXT    NOT NULL,
        gateway_id    TEXT    NOT NULL,
        path          TEXT    NOT NULL,
        method        TEXT    NOT NULL,
        body          BYTEA   NOT NULL,
        content_type  TEXT    NOT NULL,
        run_id        BIGINT,
        created       DOUBLE PRECISION NOT NULL,
        attempts      INTEGER NOT NULL DEFAULT 0,
        first_attempt DOUBLE PRECISION,
        last_attempt  DOUBLE PRECISION,
        last_error    TEXT,
        dead          BOOLEAN NOT NULL DEFAULT FALSE
     );
     CREATE INDEX outbox_gateway_group ON outbox (gateway_id, path, dead, id);
     CREATE TABLE outbox_groups (
        gateway_id TEXT NOT NULL,
        path       TEXT NOT NULL,
        PRIMARY KEY (gateway_id, path)
     );
     CREATE TABLE leases (
        gateway TEXT NOT NULL,
        path    TEXT NOT NULL,
        owner   TEXT NOT NULL,
        until   DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (gateway, path)
     );
     CREATE TABLE runs (
        id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        job         TEXT    NOT NULL,
        labels      TEXT    NOT NULL,
        start       DOUBLE PRECISION NOT NULL,
        "end"       DOUBLE PRECISION NOT NULL,
        duration    DOUBLE PRECISION NOT NULL,
        outcome     TEXT    NOT NULL,
        exit_code   INTEGER NOT NULL,
        trace_id    TEXT,
        push_status TEXT    NOT NULL,
        output      TEXT
     );
     CREATE INDEX runs_job ON runs (job, id);
     CREATE TABLE counters (
        "grouping" TEXT NOT NULL,
        name       TEXT NOT NULL,
        labels     TEXT NOT NULL,
        value      DOUBLE PRECISION NOT NULL,
        PRIMARY KEY ("grouping", name, labels)
     );
     CREATE TABLE in_doubt (
        gateway_id TEXT NOT NULL,
        path       TEXT NOT NULL,
        settle_at  DOUBLE PRECISION NOT NULL,
        method     TEXT,
        body       TEXT,
        PRIMARY KEY (gateway_id, path)
     );"#,
    // 2: the host that ran each run.
    "ALTER TABLE runs ADD COLUMN host TEXT;",
    // 3: runners sharing one schedule (see `state/fleet.rs`): their
    // heartbeats, and one row per claimed fire of a job.
    "CREATE TABLE runners (
        id        TEXT PRIMARY KEY,
        host      TEXT NOT NULL,
        started   DOUBLE PRECISION NOT NULL,
        heartbeat DOUBLE PRECISION NOT NULL,
        lease     DOUBLE PRECISION NOT NULL
     );
     CREATE TABLE fires (
        job        TEXT    NOT NULL,
        scheduled  BIGINT  NOT NULL,
        runner     TEXT    NOT NULL,
        claimed    DOUBLE PRECISION NOT NULL,
        status     TEXT    NOT NULL,
        outcome    TEXT,
        run_id     BIGINT,
        taken_from TEXT,
        ended      DOUBLE PRECISION,
        PRIMARY KEY (job, scheduled)
     );
     CREATE INDEX fires_running ON fires (runner) WHERE status = 'running';
     CREATE INDEX fires_claimed ON fires (claimed);",
    // 4: which process holds a runner name, so that a second live process
    // under the same name is refused instead of taking the first one's fires.
    "ALTER TABLE runners ADD COLUMN incarnation TEXT;",
];

fn error(url: &str) -> impl Fn(::postgres::Error) -> StateError + '_ {
    move |source| StateError::Postgres {
        url: url.to_owned(),
        source,
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// How long a reconnect waits for the server.
const RECONNECT_WAIT: Duration = Duration::from_secs(5);

/// A connection that reconnects on the next use once the server closed it,
/// so that a long-lived state (the runner's) outlives a restart of the
/// database. The URL as given is kept only to reconnect; messages use the
/// masked one.
pub(super) struct Pg {
    url: String,
    masked: String,
    wait: Duration,
    client: Option<Client>,
}

impl Pg {
    /// Connects to `url` and migrates the schema (or refuses a newer one).
    pub(super) fn open(url: &str, wait: Duration) -> Result<Pg, StateError> {
        let client = open(url, wait)?;
        Ok(Pg {
            url: url.to_owned(),
            masked: mask_url(url),
            wait,
            client: Some(client),
        })
    }

    /// The open connection, reconnecting (and checking the schema again)
    /// when the last one was closed by the server or the network.
    pub(super) fn client(&mut self) -> Result<&mut Client, StateError> {
        // A reconnect waits less than a first open: the caller is a running
        // process that goes on without the database meanwhile.
        let client = match self.client.take() {
            Some(client) if !client.is_closed() => client,
            _ => open(&self.url, self.wait.min(RECONNECT_WAIT))?,
        };
        Ok(self.client.insert(client))
    }

    /// The URL with its password masked.
    pub(super) fn masked(&self) -> &str {
        &self.masked
    }
}

impl Drop for Pg {
    /// The client closes its connection on a runtime of its own, which
    /// cannot start on a thread that drives a tokio runtime: the last
    /// handle of a state may well be dropped there, so the client is closed
    /// on a thread of its own.
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            std::thread::scope(|scope| {
                scope.spawn(move || drop(client));
            });
        }
    }
}

/// Connects to `url` and migrates the schema (or refuses a newer one).
fn open(url: &str, wait: Duration) -> Result<Client, StateError> {
    let masked = mask_url(url);
    let err = error(&masked);
    let mut config: Config = url.parse().map_err(&err)?;
    if config.get_user().is_none()
        && let Some(user) = env("PGUSER").or_else(|| env("USER"))
    {
        config.user(&user);
    }
    if config.get_password().is_none() {
        if let Some(password) = env("PGPASSWORD") {
            config.password(password);
        } else if let Some(password) = passfile_password(&config) {
            config.password(password);
        }
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(wait.max(Duration::from_secs(1)));
    }
    if config.get_application_name().is_none() {
        config.application_name("pushguard");
    }
    let mut client = config.connect(NoTls).map_err(&err)?;
    migrate(&mut client, &masked)?;
    Ok(client)
}

/// The password for `config` from the password file (`PGPASSFILE`, else
/// `~/.pgpass`): lines `host:port:database:user:password`, `*` matching
/// anything, `\:` and `\\` escaped. Like libpq, the first matching line wins.
fn passfile_password(config: &Config) -> Option<String> {
    let file = env("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".pgpass")))?;
    let text = std::fs::read_to_string(file).ok()?;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(_)) | None => "localhost".to_owned(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user().unwrap_or_default().to_owned();
    let database = config.get_dbname().unwrap_or(&user).to_owned();
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .find_map(|line| {
            let fields = split_passfile_line(line);
            let [h, p, d, u, password] = fields.as_slice() else {
                return None;
            };
            let matches = |field: &str, value: &str| field == "*" || field == value;
            (matches(h, &host) && matches(p, &port) && matches(d, &database) && matches(u, &user))
                .then(|| password.clone())
        })
}

fn split_passfile_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut().expect("never empty").extend(chars.next()),
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().expect("never empty").push(c),
        }
    }
    fields
}

fn version(client: &mut Client) -> Result<Option<i64>, ::postgres::Error> {
    // One round trip (the simple protocol, no statement to prepare): every
    // process asks this when it connects.
    match client.simple_query(&format!("SELECT max(version) FROM {VERSION_TABLE}")) {
        Ok(messages) => Ok(messages.iter().find_map(|message| match message {
            ::postgres::SimpleQueryMessage::Row(row) => row.get(0).and_then(|v| v.parse().ok()),
            _ => None,
        })),
        Err(error) if error.code() == Some(&::postgres::error::SqlState::UNDEFINED_TABLE) => {
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// Applies the missing migrations in one transaction under an advisory lock,
/// or refuses a database of a newer pushguard (left untouched).
fn migrate(client: &mut Client, url: &str) -> Result<(), StateError> {
    let err = error(url);
    let known = MIGRATIONS.len() as i64;
    let newer = |found| StateError::NewerDatabase {
        url: url.to_owned(),
        found,
        known,
    };
    // The common case, a migrated database, takes no lock.
    match version(client).map_err(&err)? {
        Some(found) if found == known => return Ok(()),
        Some(found) if found > known => return Err(newer(found)),
        _ => {}
    }
    let mut tx = client.transaction().map_err(&err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(&err)?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version BIGINT NOT NULL)"
    ))
    .map_err(&err)?;
    let found: i64 = tx
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {VERSION_TABLE}"),
            &[],
        )
        .map_err(&err)?
        .get(0);
    if found > known {
        return Err(newer(found));
    }
    for sql in MIGRATIONS.iter().skip(found.max(0) as usize) {
        tx.batch_execute(sql).map_err(&err)?;
    }
    tx.execute(&format!("DELETE FROM {VERSION_TABLE}"), &[])
        .map_err(&err)?;
    tx.execute(
        &format!("INSERT INTO {VERSION_TABLE} (version) VALUES ($1)"),
        &[&known],
    )
    .map_err(&err)?;
    tx.commit().map_err(&err)
}

/// Runs `f` in one write transaction and commits it; `wait` bounds the wait
/// for other processes' row locks.
pub(super) fn write<T, E: From<StateError>>(
    client: &mut Client,
    url: &str,
    wait: Duration,
    retention: Retention,
    f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
) -> Result<T, E> {
    let err = |source| E::from(error(url)(source));
    // One round trip opens the transaction and bounds its lock waits.
    let millis = wait.min(BUSY_TIMEOUT).as_millis().max(1);
    client
        .batch_execute(&format!("BEGIN; SET LOCAL lock_timeout = {millis}"))
        .map_err(err)?;
    let pg = PgTx {
        tx: RefCell::new(client),
        url,
        retention,
        durable: Cell::new(false),
        open: Cell::new(true),
    };
    let value = f(&pg)?;
    // A transaction that wrote a run, its totals or a push, or gave a
    // lease back, waits for its commit to be on disk, like SQLite's. One
    // that only moved a delivery along (a lease renewed, a delivered push's
    // deletion, an attempt) does not: lost in a crash of the server, it is
    // redone — the newest push of a group is sent again, which changes
    // nothing — and the next durable commit flushes it anyway (the log is
    // written in order).
    let commit = if pg.durable.get() {
        "COMMIT"
    } else {
        "SET LOCAL synchronous_commit = off; COMMIT"
    };
    pg.open.set(false);
    pg.tx.borrow_mut().batch_execute(commit).map_err(err)?;
    Ok(value)
}

pub(super) fn outbox(client: &mut Client, url: &str) -> Result<Vec<OutboxEntry>, StateError> {
    let rows = client
        .query(
            "SELECT id, gateway, path, method, octet_length(body)::BIGINT, created, attempts,
                    first_attempt, last_attempt, last_error, dead
               FROM outbox ORDER BY id",
            &[],
        )
        .map_err(error(url))?;
    Ok(rows
        .iter()
        .map(|r| OutboxEntry {
            id: r.get(0),
            gateway: r.get(1),
            path: r.get(2),
            method: r.get(3),
            bytes: r.get::<_, i64>(4) as usize,
            created: r.get(5),
            attempts: r.get::<_, i32>(6) as u32,
            first_attempt: r.get(7),
            last_attempt: r.get(8),
            last_error: r.get(9),
            dead: r.get(10),
        })
        .collect())
}

pub(super) fn history(
    client: &mut Client,
    url: &str,
    job: Option<&str>,
    limit: usize,
) -> Result<Vec<RunRecord>, StateError> {
    let rows = client
        .query(
            r#"SELECT id, job, labels, start, "end", duration, outcome, exit_code, trace_id,
                      push_status, output, host
                 FROM runs WHERE $1::TEXT IS NULL OR job = $1 ORDER BY id DESC LIMIT $2"#,
            &[&job, &(limit.min(i64::MAX as usize) as i64)],
        )
        .map_err(error(url))?;
    Ok(rows
        .iter()
        .map(|r| RunRecord {
            id: r.get(0),
            job: r.get(1),
            labels: serde_json::from_str(r.get(2)).unwrap_or_default(),
            start: r.get(3),
            end: r.get(4),
            duration: r.get(5),
            outcome: r.get(6),
            exit_code: r.get(7),
            trace_id: r.get(8),
            push_status: r.get(9),
            output: r.get(10),
            host: r.get(11),
        })
        .collect())
}

pub(super) fn last_starts(
    client: &mut Client,
    url: &str,
) -> Result<std::collections::HashMap<String, f64>, StateError> {
    let rows = client
        .query(
            "SELECT DISTINCT ON (job) job, start FROM runs ORDER BY job, id DESC",
            &[],
        )
        .map_err(error(url))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub(super) fn pending_gateways(client: &mut Client, url: &str) -> Result<Vec<String>, StateError> {
    let rows = client
        .query(
            "SELECT DISTINCT gateway FROM outbox WHERE NOT dead ORDER BY gateway",
            &[],
        )
        .map_err(error(url))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub(super) fn drop_dead_letters(client: &mut Client, url: &str) -> Result<usize, StateError> {
    client
        .execute("DELETE FROM outbox WHERE dead", &[])
        .map(|n| n as usize)
        .map_err(error(url))
}

pub(super) fn drop_entry(client: &mut Client, url: &str, id: i64) -> Result<bool, StateError> {
    let err = error(url);
    let mut tx = client.transaction().map_err(&err)?;
    tx.execute(
        "UPDATE runs SET push_status = 'dropped' WHERE id = (SELECT run_id FROM outbox WHERE id = $1)",
        &[&id],
    )
    .map_err(&err)?;
    let deleted = tx
        .execute("DELETE FROM outbox WHERE id = $1", &[&id])
        .map_err(&err)?;
    tx.commit().map_err(&err)?;
    Ok(deleted > 0)
}

pub(super) fn counter_total(
    client: &mut Client,
    url: &str,
    grouping: &str,
    name: &str,
    labels: &str,
) -> Result<Option<f64>, StateError> {
    client
        .query_opt(
            r#"SELECT value FROM counters WHERE "grouping" = $1 AND name = $2 AND labels = $3"#,
            &[&grouping, &name, &labels],
        )
        .map(|row| row.map(|r| r.get(0)))
        .map_err(error(url))
}

impl<'a> FromSql<'a> for Stored {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let text = <&str as FromSql>::from_sql(ty, raw)?;
        Stored::parse(text).ok_or_else(|| format!("unknown stored method {text:?}").into())
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

/// An open PostgreSQL write transaction.
struct PgTx<'a> {
    tx: RefCell<&'a mut Client>,
    url: &'a str,
    retention: Retention,
    /// Whether something was written that must survive a crash once
    /// committed (a run, totals, a push).
    durable: Cell<bool>,
    /// Until committed: dropping it then rolls back.
    open: Cell<bool>,
}

impl Drop for PgTx<'_> {
    fn drop(&mut self) {
        if self.open.get() {
            let _ = self.tx.get_mut().batch_execute("ROLLBACK");
        }
    }
}

/// A statement parameter that knows its PostgreSQL type, so that a
/// statement goes to the server in one round trip (`query_typed`: parse,
/// bind and execute at once) instead of two (prepare, then execute): a
/// one-shot process runs each statement once, so preparing buys nothing.
trait Typed: ToSql + Sync {
    fn pg_type(&self) -> Type;
    fn as_sql(&self) -> &(dyn ToSql + Sync);
}

macro_rules! typed {
    ($($rust:ty => $pg:ident),* $(,)?) => {
        $(impl Typed for $rust {
            fn pg_type(&self) -> Type {
                Type::$pg
            }
            fn as_sql(&self) -> &(dyn ToSql + Sync) {
                self
            }
        })*
    };
}

typed!(
    &str => TEXT,
    String => TEXT,
    &[u8] => BYTEA,
    i64 => INT8,
    i32 => INT4,
    f64 => FLOAT8,
    bool => BOOL,
    Option<i64> => INT8,
    Option<String> => TEXT,
    Option<&str> => TEXT,
    Vec<i64> => INT8_ARRAY,
);

impl PgTx<'_> {
    fn sql(&self, source: ::postgres::Error) -> StateError {
        error(self.url)(source)
    }

    /// The rows of `sql` (a statement with `RETURNING`, or a query).
    fn query(&self, sql: &str, params: &[&dyn Typed]) -> Result<Vec<::postgres::Row>, StateError> {
        let params: Vec<(&(dyn ToSql + Sync), Type)> =
            params.iter().map(|p| (p.as_sql(), p.pg_type())).collect();
        self.tx
            .borrow_mut()
            .query_typed(sql, &params)
            .map_err(|e| self.sql(e))
    }

    fn execute(&self, sql: &str, params: &[&dyn Typed]) -> Result<(), StateError> {
        self.query(sql, params).map(drop)
    }

    fn query_opt(
        &self,
        sql: &str,
        params: &[&dyn Typed],
    ) -> Result<Option<::postgres::Row>, StateError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
}

impl TxOps for PgTx<'_> {
    fn bump(
        &self,
        grouping: &str,
        name: &str,
        labels: &str,
        delta: f64,
    ) -> Result<f64, StateError> {
        self.durable.set(true);
        let row = self.query_opt(
            r#"INSERT INTO counters ("grouping", name, labels, value) VALUES ($1, $2, $3, $4)
               ON CONFLICT ("grouping", name, labels) DO UPDATE SET value = counters.value + excluded.value
               RETURNING value"#,
            &[&grouping, &name, &labels, &delta],
        )?;
        Ok(row.map(|r| r.get(0)).unwrap_or(delta))
    }

    fn insert_run(&self, run: &NewRun<'_>) -> Result<i64, StateError> {
        self.durable.set(true);
        let labels = serde_json::to_string(run.labels).unwrap_or_else(|_| "{}".into());
        let id: i64 = self
            .query_opt(
                r#"INSERT INTO runs (job, labels, start, "end", duration, outcome, exit_code, push_status, trace_id, output, host)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id"#,
                &[
                    &run.job,
                    &labels,
                    &run.start,
                    &run.end,
                    &run.duration,
                    &run.outcome,
                    &run.exit_code,
                    &run.push_status,
                    &run.trace_id,
                    &run.output,
                    &host_name(),
                ],
            )?
            .map(|r| r.get(0))
            .unwrap_or_default();
        self.execute(
            "DELETE FROM runs WHERE job = $1 AND id <= (
                 SELECT id FROM runs WHERE job = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
            &[&run.job, &i64::from(self.retention.keep_runs)],
        )?;
        if let Some(age) = self.retention.max_age {
            self.execute(
                r#"DELETE FROM runs WHERE job = $1 AND "end" < $2"#,
                &[&run.job, &(unix_now() - age.as_secs_f64())],
            )?;
        }
        Ok(id)
    }

    fn set_run_status(&self, run_id: Option<i64>, status: &str) -> Result<(), StateError> {
        if let Some(id) = run_id {
            self.execute(
                "UPDATE runs SET push_status = $2 WHERE id = $1",
                &[&id, &status],
            )?;
        }
        Ok(())
    }

    fn spool(&self, entry: &NewEntry<'_>) -> Result<i64, StateError> {
        self.durable.set(true);
        // The group's row lock first: another spool of the group waits here
        // until this one commits, so its id is drawn after this one's.
        self.execute(
            "INSERT INTO outbox_groups (gateway_id, path) VALUES ($1, $2)
             ON CONFLICT (gateway_id, path) DO UPDATE SET path = excluded.path",
            &[&entry.gateway_id, &entry.path],
        )?;
        Ok(self
            .query_opt(
                "INSERT INTO outbox (gateway, path, method, body, content_type, run_id, created, gateway_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                &[
                    &entry.gateway,
                    &entry.path,
                    &entry.method.as_str(),
                    &entry.body.as_bytes(),
                    &entry.content_type,
                    &entry.run_id,
                    &unix_now(),
                    &entry.gateway_id,
                ],
            )?
            .map(|r| r.get(0))
            .unwrap_or_default())
    }

    fn try_lease(
        &self,
        gateway: &str,
        path: &str,
        owner: &str,
        hold: Duration,
    ) -> Result<bool, StateError> {
        let now = unix_now();
        // Locked: two processes that both find a dead holder take turns.
        let holder: Option<String> = self
            .query_opt(
                "SELECT owner FROM leases WHERE gateway = $1 AND path = $2 AND until >= $3 FOR UPDATE",
                &[&gateway, &path, &now],
            )?
            .map(|r| r.get(0));
        if let Some(holder) = holder.filter(|h| h != owner && !owner_alive(h)) {
            self.release(gateway, path, &holder)?;
        }
        let changed = self.query(
            "INSERT INTO leases (gateway, path, owner, until) VALUES ($1, $2, $3, $4)
             ON CONFLICT (gateway, path) DO UPDATE SET owner = excluded.owner, until = excluded.until
             WHERE leases.until < $5 OR leases.owner = excluded.owner
             RETURNING 1",
            &[&gateway, &path, &owner, &(now + hold.as_secs_f64()), &now],
        )?;
        Ok(changed.len() == 1)
    }

    fn renew_lease(
        &self,
        gateway: &str,
        path: &str,
        owner: &str,
        hold: Duration,
    ) -> Result<bool, StateError> {
        let changed = self.query(
            "UPDATE leases SET until = $4 WHERE gateway = $1 AND path = $2 AND owner = $3 RETURNING 1",
            &[&gateway, &path, &owner, &(unix_now() + hold.as_secs_f64())],
        )?;
        Ok(changed.len() == 1)
    }

    fn release(&self, gateway: &str, path: &str, owner: &str) -> Result<(), StateError> {
        // A lease given back must stay given back: lost in a crash of the
        // server, it would hold the group (this process's next delivery
        // included) until it expires. Its commit also flushes the
        // deliveries committed before it.
        self.durable.set(true);
        self.execute(
            "DELETE FROM leases WHERE gateway = $1 AND path = $2 AND owner = $3",
            &[&gateway, &path, &owner],
        )
        .map(drop)
    }

    fn next_batch(
        &self,
        gateway: &str,
        path: &str,
        limit: usize,
        bytes: usize,
    ) -> Result<Vec<Pending>, StateError> {
        // One round trip. The sizes first (`octet_length` of a stored body
        // reads no content), then the bodies of the entries that fit: those
        // before which the running size stays within `bytes`, and the oldest
        // whatever its size.
        let rows = self.query(
            "WITH head AS (
                 SELECT id, octet_length(body)::BIGINT AS size FROM outbox
                  WHERE gateway_id = $1 AND path = $2 AND NOT dead ORDER BY id LIMIT $3),
             kept AS (
                 SELECT id FROM (
                     SELECT id, size, sum(size) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING) AS upto
                       FROM head) sized
                  WHERE upto <= $4 OR upto = size)
             SELECT id, method, body, run_id FROM outbox
              WHERE id IN (SELECT id FROM kept) ORDER BY id",
            &[
                &gateway,
                &path,
                &i64::try_from(limit).unwrap_or(i64::MAX),
                &i64::try_from(bytes).unwrap_or(i64::MAX),
            ],
        )?;
        rows.iter()
            .map(|row| {
                Ok(Pending {
                    id: row.get(0),
                    method: row.try_get(1).map_err(|e| self.sql(e))?,
                    body: String::from_utf8_lossy(row.get::<_, &[u8]>(2)).into_owned(),
                    run_id: row.get(3),
                })
            })
            .collect()
    }

    fn delivered(&self, entries: &[Pending]) -> Result<(), StateError> {
        // One statement (one round trip) for the whole batch: the entries
        // go, their runs say so.
        let ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
        self.execute(
            "WITH gone AS (DELETE FROM outbox WHERE id = ANY($1) RETURNING run_id)
             UPDATE runs SET push_status = 'delivered' WHERE id IN (SELECT run_id FROM gone)",
            &[&ids],
        )
    }

    fn failed(&self, entry: &Pending, error: &str, dead: bool) -> Result<(), StateError> {
        self.execute(
            "UPDATE outbox SET attempts = attempts + 1, first_attempt = coalesce(first_attempt, $2),
                    last_attempt = $2, last_error = $3, dead = $4 WHERE id = $1",
            &[&entry.id, &unix_now(), &error, &dead],
        )?;
        if dead {
            self.set_run_status(entry.run_id, "rejected")?;
        }
        Ok(())
    }

    fn entry_state(&self, id: i64) -> Result<Option<(bool, Option<String>, Stored)>, StateError> {
        let Some(row) = self.query_opt(
            "SELECT dead, last_error, method FROM outbox WHERE id = $1",
            &[&id],
        )?
        else {
            return Ok(None);
        };
        Ok(Some((
            row.get(0),
            row.get(1),
            row.try_get(2).map_err(|e| self.sql(e))?,
        )))
    }

    fn mark_in_doubt(&self, gateway: &str, path: &str, settle_at: f64) -> Result<(), StateError> {
        self.execute(
            "INSERT INTO in_doubt (gateway_id, path, settle_at) VALUES ($1, $2, $3)
             ON CONFLICT (gateway_id, path) DO UPDATE
             SET settle_at = greatest(in_doubt.settle_at, excluded.settle_at)",
            &[&gateway, &path, &settle_at],
        )
        .map(drop)
    }

    fn remember_if_in_doubt(
        &self,
        gateway: &str,
        path: &str,
        entry: &Pending,
    ) -> Result<(), StateError> {
        self.execute(
            "UPDATE in_doubt SET method = $3, body = $4 WHERE gateway_id = $1 AND path = $2",
            &[&gateway, &path, &entry.method.as_str(), &entry.body],
        )
        .map(drop)
    }

    fn settled(
        &self,
        gateway: &str,
        path: &str,
        now: f64,
    ) -> Result<Option<(Stored, String)>, StateError> {
        let Some(row) = self.query_opt(
            "SELECT method, body FROM in_doubt WHERE gateway_id = $1 AND path = $2 AND settle_at <= $3",
            &[&gateway, &path, &now],
        )?
        else {
            return Ok(None);
        };
        let method: Option<Stored> = row.try_get(0).map_err(|e| self.sql(e))?;
        let body: Option<String> = row.get(1);
        // In doubt, but nothing delivered since: the pending entry itself is
        // sent again (and remembered) on its next delivery.
        Ok(method.zip(body))
    }

    fn clear_in_doubt(&self, gateway: &str, path: &str) -> Result<(), StateError> {
        self.execute(
            "DELETE FROM in_doubt WHERE gateway_id = $1 AND path = $2",
            &[&gateway, &path],
        )
        .map(drop)
    }

    fn group_last_error(&self, gateway: &str, path: &str) -> Result<Option<String>, StateError> {
        Ok(self
            .query_opt(
                "SELECT last_error FROM outbox WHERE gateway_id = $1 AND path = $2 AND NOT dead
                 AND last_error IS NOT NULL ORDER BY last_attempt DESC NULLS LAST LIMIT 1",
                &[&gateway, &path],
            )?
            .map(|r| r.get(0)))
    }

    fn pending_groups(
        &self,
        gateway: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, StateError> {
        // Each side limited first: the outbox side walks the group index in
        // path order and stops after `limit` groups.
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query(
            "SELECT path FROM (
                 SELECT path FROM outbox WHERE gateway_id = $1 AND NOT dead AND path > $2
                  GROUP BY path ORDER BY path LIMIT $3) pending
             UNION
             SELECT path FROM (
                 SELECT path FROM in_doubt WHERE gateway_id = $1 AND path > $2
                  ORDER BY path LIMIT $3) doubtful
             ORDER BY path LIMIT $3",
            &[&gateway, &after, &limit],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn end_fire(&self, fire: &Fire, outcome: &str, run_id: Option<i64>) -> Result<(), StateError> {
        self.durable.set(true);
        fleet::end_in(&mut **self.tx.borrow_mut(), fire, outcome, run_id)
            .map(drop)
            .map_err(|e| self.sql(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passfile_lines_split_with_escapes() {
        assert_eq!(
            split_passfile_line(r"db\:1:5432:*:me:pa\:ss:word"),
            ["db:1", "5432", "*", "me", "pa:ss:word"]
        );
    }
}
