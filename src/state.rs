//! The local state file: outbox, run history and cumulative counters.
//!
//! One SQLite file in WAL mode, shared safely by every pushguard process on
//! the host (a busy timeout and short immediate transactions; no lock is held
//! across a network call). A push is written to the outbox *before* it is
//! sent and deleted only after the gateway confirmed it, so a gateway that is
//! down, a hung request or a killed process loses nothing.

pub mod fleet;
mod group;
#[cfg(feature = "postgres")]
mod postgres;
mod schema;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OpenFlags, OptionalExtension as _, params};

use crate::migration::Found;
use crate::push::Stored;
#[cfg(any(test, not(feature = "postgres")))]
use crate::redact::mask_url;

/// Environment variable naming the state file.
pub const STATE_ENV: &str = "PUSHGUARD_STATE";

/// Why the state file cannot be used. Every message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// No path was given and neither `XDG_STATE_HOME` nor `HOME` is set.
    #[error(
        "no state file location: set PUSHGUARD_STATE, XDG_STATE_HOME or HOME, or pass --state PATH"
    )]
    NoLocation,

    /// The state file cannot be created (mode 0600) where it is missing.
    #[error("cannot create the state file {}: {source}", path.display())]
    Create {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The directory of the state file cannot be created.
    #[error("cannot create the state directory {}: {source}", path.display())]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The file is not an SQLite database, or is damaged.
    #[error("the state file {} is corrupt or not a database ({source}); move it aside to start a new one", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What SQLite reported.
        #[source]
        source: rusqlite::Error,
    },

    /// The file is an SQLite database of another program.
    #[error("the state file {} belongs to another program (application id {app:#x}); choose another path", path.display())]
    Foreign {
        /// The file.
        path: PathBuf,
        /// Its application id.
        app: i64,
    },

    /// The file was written by a newer pushguard.
    #[error("the state file {} has schema version {found}, newer than this pushguard knows ({known}); upgrade pushguard", path.display())]
    Newer {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },

    /// The state is a PostgreSQL database written by a newer pushguard.
    #[error(
        "the state database {url} has schema version {found}, newer than this pushguard knows ({known}); upgrade pushguard"
    )]
    NewerDatabase {
        /// The database URL, its password masked.
        url: String,
        /// The version in the database.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },

    /// A `postgres://` state, but this build has no PostgreSQL support.
    #[error(
        "the state {url} is a PostgreSQL database, but this pushguard was built without PostgreSQL support (the `postgres` feature)"
    )]
    Unsupported {
        /// The database URL, its password masked.
        url: String,
    },

    /// A run kept for a later write could not be encoded again.
    #[error("a run kept for the state could not be recorded: {0}")]
    Deferred(String),

    /// Another live process runs under this runner name on the shared
    /// schedule.
    #[error(
        "the runner name {runner:?} is in use by another live runner on {url}: give each runner its own name (--runner-id, PUSHGUARD_RUNNER_ID, runner_id), or wait for the other's lease to run out"
    )]
    RunnerInUse {
        /// The runner name.
        runner: String,
        /// The database URL, its password masked.
        url: String,
    },

    /// Runners share a schedule only through a state on PostgreSQL.
    #[error(
        "the state file {} is one runner's alone: runners share a schedule through a postgres:// state",
        path.display()
    )]
    Unshared {
        /// The state file.
        path: PathBuf,
    },

    /// A PostgreSQL failure: the server cannot be reached, refused the
    /// credentials, or a statement failed.
    #[cfg(feature = "postgres")]
    #[error("state database {url}: {source}")]
    Postgres {
        /// The database URL, its password masked.
        url: String,
        /// What the client or the server reported.
        #[source]
        source: ::postgres::Error,
    },

    /// Any other SQLite failure (a read-only file, a full disk, …).
    #[error("state file {}: {source}", path.display())]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// What SQLite reported.
        #[source]
        source: rusqlite::Error,
    },
}

/// How much run history to keep.
///
/// | setting | default |
/// |---|---|
/// | `keep_runs` | 1,000 runs per job |
/// | `max_age` | 90 days |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Runs kept per job; older ones are deleted as new ones are written.
    pub keep_runs: u32,
    /// Runs older than this are deleted; `None` keeps them (up to `keep_runs`).
    /// Runs are written as they end, and a job's runs are checked for their
    /// age once its oldest row (the first written) has passed it.
    pub max_age: Option<Duration>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_runs: 1000,
            max_age: Some(Duration::from_secs(90 * 24 * 3600)),
        }
    }
}

/// A handle on the state file. Cheap to clone; clones share one connection.
///
/// ```no_run
/// let state = pushguard::State::open("/var/lib/pushguard/state.db")?;
/// for entry in state.outbox()? {
///     println!("{} {} attempts={}", entry.method, entry.path, entry.attempts);
/// }
/// # Ok::<(), pushguard::StateError>(())
/// ```
#[derive(Debug, Clone)]
pub struct State {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The file, or the database URL with its password masked.
    path: PathBuf,
    backend: Backend,
    retention: Mutex<Retention>,
    /// Records of runs this handle could not write when they ended (see
    /// [`State::defer`]), oldest first.
    backlog: Backlog,
}

/// A run's record (totals and history row) to write in a later transaction.
pub(crate) type Deferred = Arc<dyn Fn(&Tx<'_>) -> Result<(), StateError> + Send + Sync>;

/// At most this many records wait on a handle; the oldest go first.
const BACKLOG_LIMIT: usize = 10_000;

/// Where the state lives.
enum Backend {
    /// One connection for the handle's threads, their writes grouped into
    /// shared commits (see `state/group.rs`).
    Sqlite(group::Shared),
    #[cfg(feature = "postgres")]
    Postgres(Box<Mutex<postgres::Pg>>),
}

impl Backend {
    /// The SQLite connection. PostgreSQL calls are dispatched before any
    /// SQLite code runs, so reaching here with one is a bug.
    fn sqlite(&self) -> &group::Shared {
        match self {
            Backend::Sqlite(conn) => conn,
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => unreachable!("a PostgreSQL state reached SQLite code"),
        }
    }
}

/// The records waiting on a handle.
#[derive(Default)]
struct Backlog(Mutex<Vec<Deferred>>);

impl std::fmt::Debug for Backlog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Backlog({})", lock(&self.0).len())
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Sqlite(conn) => f.debug_tuple("Sqlite").field(conn).finish(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => f.write_str("Postgres"),
        }
    }
}

/// One spooled push, as `pushguard outbox` shows it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OutboxEntry {
    /// Row id; delivery follows it within a group.
    pub id: i64,
    /// Gateway base URL the push is for, as it was configured. Pushes are
    /// ordered per [`Gateway::identity`](crate::Gateway::identity) of this
    /// URL, not per spelling.
    pub gateway: String,
    /// Group path, `/metrics/job/…`.
    pub path: String,
    /// `POST`, `PUT` or `DELETE`.
    pub method: String,
    /// Size of the encoded body in bytes.
    pub bytes: usize,
    /// Unix time the push was spooled.
    pub created: f64,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Unix time of the first and last attempt.
    pub first_attempt: Option<f64>,
    /// Unix time of the last attempt.
    pub last_attempt: Option<f64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Refused by the gateway (4xx): kept for inspection, never retried.
    pub dead: bool,
}

/// One run in the history.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RunRecord {
    /// Row id.
    pub id: i64,
    /// Job name.
    pub job: String,
    /// Grouping labels besides `job`.
    pub labels: BTreeMap<String, String>,
    /// Unix time the run started.
    pub start: f64,
    /// Unix time the run ended.
    pub end: f64,
    /// Duration in seconds.
    pub duration: f64,
    /// `success`, `failure`, `timeout` or `skipped`.
    pub outcome: String,
    /// Exit code pushed for the run.
    pub exit_code: i32,
    /// OpenTelemetry trace id of the run, when tracing was on.
    pub trace_id: Option<String>,
    /// `delivered`, `spooled` (in the outbox), `rejected` (dead letter) or `none`.
    pub push_status: String,
    /// The last output lines of the run's command, when the runner ran it.
    pub output: Option<String>,
    /// The host that ran it (`HOSTNAME`, else the kernel's host name); `None`
    /// for runs recorded before pushguard kept it.
    pub host: Option<String>,
}

impl RunRecord {
    /// The run as JSON, the shape `pushguard history --json` and the runner's
    /// `/api/runs` print.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "job": self.job,
            "labels": self.labels,
            "start": self.start,
            "end": self.end,
            "duration_seconds": self.duration,
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "trace_id": self.trace_id,
            "push_status": self.push_status,
            "output": self.output,
            "host": self.host,
        })
    }
}

pub(crate) fn unix_now() -> f64 {
    unix(SystemTime::now())
}

pub(crate) fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl State {
    /// Opens (creating when missing) the state file at `path`, creating its
    /// directory and migrating the schema. Waits up to 30 s for another
    /// process's write transaction; see [`State::open_within`] for less.
    ///
    /// `path` may be a `postgres://` or `postgresql://` URL instead: the
    /// state then lives in that PostgreSQL database (its tables are created
    /// or migrated on first use), shared by processes on many hosts with the
    /// same guarantees as the file. This needs the `postgres` feature;
    /// without it the URL is refused with [`StateError::Unsupported`]. The
    /// password comes from the URL, else `PGPASSWORD`, else the password
    /// file (`PGPASSFILE`, else `~/.pgpass`); the user from the URL, else
    /// `PGUSER`, else `USER`. Connections are plain TCP or a Unix socket
    /// (no TLS). Messages name the URL with its password masked.
    pub fn open(path: impl AsRef<Path>) -> Result<State, StateError> {
        Self::open_within(path, BUSY_TIMEOUT)
    }

    /// Like [`State::open`], but waits at most `wait` for a file another
    /// process holds locked; then it fails with
    /// [`StateError::Sqlite`] (the database is locked) instead of holding up
    /// the caller. `pushguard exec` opens the file with the push deadline
    /// here, on a thread of its own while the wrapped command runs, so a
    /// locked state file delays the run's end by no more than that and its
    /// start not at all.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let state = pushguard::State::open_within(dir.path().join("state.db"), std::time::Duration::from_secs(1))?;
    /// assert!(state.outbox()?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// A `postgres://` or `postgresql://` URL opens the state on a
    /// PostgreSQL server instead (with the `postgres` feature; see
    /// [`State::open`]): `wait` bounds the connection and lock waits there.
    pub fn open_within(path: impl AsRef<Path>, wait: Duration) -> Result<State, StateError> {
        if let Some(url) = path.as_ref().to_str().filter(|p| is_postgres_url(p)) {
            return Self::open_postgres(url, wait);
        }
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StateError::Directory {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        crate::migration::create_private(&path).map_err(|source| StateError::Create {
            path: path.clone(),
            source,
        })?;
        let sql = |source| classify(&path, source);
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        conn.busy_timeout(wait).map_err(sql)?;
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF;")
            .map_err(sql)?;
        // Room for every statement of the transaction methods (see `Cached`).
        conn.set_prepared_statement_cache_capacity(64);
        // Migration 3 rewrites stored gateway URLs into identities with the
        // one Rust definition rather than an SQL imitation of it.
        conn.create_scalar_function(
            schema::IDENTITY_FUNCTION,
            1,
            FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
            |ctx| Ok(crate::push::identity_of(&ctx.get::<String>(0)?)),
        )
        .map_err(sql)?;
        // Checked before anything else is changed: a refused file stays as it was.
        match schema::SCHEMA.migrate(&mut conn).map_err(sql)? {
            Found::Ok => {}
            Found::Newer(found) => {
                return Err(StateError::Newer {
                    path,
                    found,
                    known: schema::SCHEMA.version(),
                });
            }
            Found::Foreign(app) => return Err(StateError::Foreign { path, app }),
        }
        wal(&conn, wait).map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        // Short-lived processes share this file: checkpoint in small steps as
        // writers commit, not in every process's close (two fsyncs and two
        // unlinks per `exec`). A killed process loses nothing either way.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .map_err(sql)?;
        conn.execute_batch("PRAGMA wal_autocheckpoint = 100;")
            .map_err(sql)?;
        Ok(State {
            inner: Arc::new(Inner {
                path,
                backend: Backend::Sqlite(group::Shared::new(conn)),
                retention: Mutex::new(Retention::default()),
                backlog: Backlog::default(),
            }),
        })
    }

    #[cfg(feature = "postgres")]
    fn open_postgres(url: &str, wait: Duration) -> Result<State, StateError> {
        let pg = postgres::Pg::open(url, wait)?;
        Ok(State {
            inner: Arc::new(Inner {
                path: PathBuf::from(pg.masked()),
                backend: Backend::Postgres(Box::new(Mutex::new(pg))),
                retention: Mutex::new(Retention::default()),
                backlog: Backlog::default(),
            }),
        })
    }

    #[cfg(not(feature = "postgres"))]
    fn open_postgres(url: &str, _wait: Duration) -> Result<State, StateError> {
        Err(StateError::Unsupported { url: mask_url(url) })
    }

    /// Whether `target` is a `postgres://` or `postgresql://` URL, which
    /// [`State::open`] opens as a PostgreSQL database rather than a file.
    ///
    /// ```
    /// assert!(pushguard::State::is_database_url("postgres://db.example/pushguard"));
    /// assert!(!pushguard::State::is_database_url("/var/lib/pushguard/state.db"));
    /// ```
    pub fn is_database_url(target: impl AsRef<Path>) -> bool {
        target.as_ref().to_str().is_some_and(is_postgres_url)
    }

    /// Opens the default state file; see [`State::default_path`].
    pub fn open_default() -> Result<State, StateError> {
        Self::open(Self::default_path()?)
    }

    /// `$PUSHGUARD_STATE`, else `$XDG_STATE_HOME/pushguard/state.db`, else
    /// `~/.local/state/pushguard/state.db`.
    pub fn default_path() -> Result<PathBuf, StateError> {
        match std::env::var_os(STATE_ENV).filter(|v| !v.is_empty()) {
            Some(path) => Ok(PathBuf::from(path)),
            None => Ok(Self::default_dir()?.join("state.db")),
        }
    }

    /// pushguard's directory for this user's local state, whatever
    /// `$PUSHGUARD_STATE` says: `$XDG_STATE_HOME/pushguard`, else
    /// `~/.local/state/pushguard`.
    pub fn default_dir() -> Result<PathBuf, StateError> {
        let var = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let base = var("XDG_STATE_HOME")
            .filter(|p| p.is_absolute())
            .or_else(|| var("HOME").map(|home| home.join(".local/state")))
            .ok_or(StateError::NoLocation)?;
        Ok(base.join("pushguard"))
    }

    /// The file's path; for a PostgreSQL state its URL, password masked.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Sets how much run history is kept (applied as runs are written).
    pub fn set_retention(&self, retention: Retention) {
        *self
            .inner
            .retention
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = retention;
    }

    /// Compiles the statements a run's end uses (its spool, history row,
    /// totals and delivery) into this handle's statement cache, so that the
    /// first run of a new process does not parse them at its end. A run
    /// whose state is opened with [`JobRun::state_opener`](crate::JobRun::state_opener)
    /// or [`JobRun::state_path`](crate::JobRun::state_path) does this on the
    /// thread that opens it, while the run goes on. A statement that does not
    /// compile is left to the run, which reports its error.
    pub fn prepare_run_statements(&self) {
        #[cfg(feature = "postgres")]
        if let Backend::Postgres(_) = &self.inner.backend {
            return;
        }
        let next_batch = run_sql::next_batch(crate::outbox::BATCH_ENTRIES);
        let statements = group::CONTROL
            .iter()
            .chain(run_sql::ALL.iter())
            .copied()
            .chain([next_batch.as_str()]);
        let _ = self.read(|conn| {
            for sql in statements {
                // A statement the cache does not hold yet is compiled; a
                // failure shows again, with its context, when the run uses it.
                drop(conn.prepare_cached(sql));
            }
            Ok(())
        });
    }

    /// The spooled pushes, oldest first, dead letters included.
    pub fn outbox(&self) -> Result<Vec<OutboxEntry>, StateError> {
        #[cfg(feature = "postgres")]
        if let Backend::Postgres(client) = &self.inner.backend {
            return postgres::outbox(lock(client).client()?, &self.url());
        }
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, gateway, path, method, length(body), created, attempts,
                        first_attempt, last_attempt, last_error, dead
                   FROM outbox ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(OutboxEntry {
                    id: r.get(0)?,
                    gateway: r.get(1)?,
                    path: r.get(2)?,
                    method: r.get(3)?,
                    bytes: r.get::<_, i64>(4)? as usize,
                    created: r.get(5)?,
                    attempts: r.get(6)?,
                    first_attempt: r.get(7)?,
                    last_attempt: r.get(8)?,
                    last_error: r.get(9)?,
                    dead: r.get(10)?,
                })
            })?;
            rows.collect()
        })
    }

    /// The gateways, as configured, that pending (not dead) pushes wait
    /// for: each spelling once, sorted. Reads no entry whole, so it stays
    /// small however long the outbox (`pushguard outbox --flush` flushes
    /// each of them).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let state = pushguard::State::open(dir.path().join("state.db"))?;
    /// assert!(state.pending_gateways()?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pending_gateways(&self) -> Result<Vec<String>, StateError> {
        #[cfg(feature = "postgres")]
        if let Backend::Postgres(client) = &self.inner.backend {
            return postgres::pending_gateways(lock(client).client()?, &self.url());
        }
        self.read(|conn| {
            let mut stmt = conn
                .prepare("SELECT DISTINCT gateway FROM outbox WHERE dead = 0 ORDER BY gateway")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect()
        })
    }

    /// The newest `limit` runs, newest first, of `job` or of every job.
    pub fn history(&self, job: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        #[cfg(feature = "postgres")]
        if let Backend::Postgres(client) = &self.inner.backend {
            return postgres::history(lock(client).client()?, &self.url(), job, limit);
        }
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, job, labels, start, end, duration, outcome, exit_code, trace_id, push_status, output, host
                   FROM runs WHERE ?1 IS NULL OR job = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![job, limit as i64], |r| {
                let labels: String = r.get(2)?;
                Ok(RunRecord {
                    id: r.get(0)?,
                    job: r.get(1)?,
                    labels: serde_json::from_str(&labels).unwrap_or_default(),
                    start: r.get(3)?,
                    end: r.get(4)?,
                    duration: r.get(5)?,
                    outcome: r.get(6)?,
                    exit_code: r.get(7)?,
                    trace_id: r.get(8)?,
                    push_status: r.get(9)?,
                    output: r.get(10)?,
                    host: r.get(11)?,
                })
            })?;
            rows.collect()
        })
    }

    /// The start (Unix time) of the newest recorded run of every job, in
    /// one query: what a runner reads once when it starts, to count the runs
    /// each job missed while it was down.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let state = pushguard::State::open(dir.path().join("state.db"))?;
    /// assert!(state.last_starts()?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn last_starts(&self) -> Result<HashMap<String, f64>, StateError> {
        #[cfg(feature = "postgres")]
        if let Backend::Postgres(client) = &self.inner.backend {
            return postgres::last_starts(lock(client).client()?, &self.url());
        }
        self.read(|conn| {
            // The newest row of each job: one walk of the (job, id) index.
            let mut stmt = conn.prepare(
                "SELECT job, start FROM runs
                  WHERE id IN (SELECT max(id) FROM runs GROUP BY job)",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// Deletes every dead letter; returns how many.
    pub fn drop_dead_letters(&self) -> Result<usize, StateError> {
        #[cfg(feature = "postgres")]
        if let Backend::Postgres(client) = &self.inner.backend {
            return postgres::drop_dead_letters(lock(client).client()?, &self.url());
        }
        self.read(|conn| conn.execute("DELETE FROM outbox WHERE dead = 1", []))
    }

    /// Deletes the outbox entry `id`, pending or dead (a push that can never
    /// be delivered, say); returns whether it was there. Its run's history
    /// row says `dropped`.
    pub fn drop_entry(&self, id: i64) -> Result<bool, StateError> {
        #[cfg(feature = "postgres")]
        if let Backend::Postgres(client) = &self.inner.backend {
            return postgres::drop_entry(lock(client).client()?, &self.url(), id);
        }
        self.read(|conn| {
            conn.execute(
                "UPDATE runs SET push_status = 'dropped' WHERE id = (SELECT run_id FROM outbox WHERE id = ?1)",
                [id],
            )?;
            conn.execute("DELETE FROM outbox WHERE id = ?1", [id])
        })
        .map(|n| n > 0)
    }

    /// The stored total of a cumulative counter sample, if any.
    pub fn counter_total(
        &self,
        grouping_path: &str,
        name: &str,
        labels: &str,
    ) -> Result<Option<f64>, StateError> {
        #[cfg(feature = "postgres")]
        if let Backend::Postgres(client) = &self.inner.backend {
            return postgres::counter_total(
                lock(client).client()?,
                &self.url(),
                grouping_path,
                name,
                labels,
            );
        }
        self.read(|conn| {
            conn.query_row(
                "SELECT value FROM counters WHERE grouping = ?1 AND name = ?2 AND labels = ?3",
                params![grouping_path, name, labels],
                |r| r.get(0),
            )
            .optional()
        })
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StateError> {
        let sql = |source| classify(&self.inner.path, source);
        let conn = self.inner.backend.sqlite().read().map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        f(&conn).map_err(sql)
    }

    /// The PostgreSQL URL, password masked.
    #[cfg(feature = "postgres")]
    fn url(&self) -> String {
        self.inner.path.to_string_lossy().into_owned()
    }

    /// Keeps the record of a run this handle could not write when it ended
    /// (its push went directly): the next write transaction that succeeds
    /// writes it first, so a long-lived process (the runner) catches up its
    /// history and totals once the state is back. Bounded: past
    /// 10,000 waiting records the oldest is dropped.
    pub(crate) fn defer(&self, record: Deferred) {
        let mut backlog = lock(&self.inner.backlog.0);
        if backlog.len() >= BACKLOG_LIMIT {
            backlog.remove(0);
        }
        backlog.push(record);
    }

    /// Runs `f` in one write transaction and commits it: an immediate
    /// (write-locked) one on SQLite; on PostgreSQL one whose statements take
    /// row locks (see `state/postgres.rs`).
    pub(crate) fn write<T, E: From<StateError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.write_within(BUSY_TIMEOUT, f)
    }

    /// [`write`](Self::write), waiting at most `wait` (not SQLite's 30 s busy
    /// timeout) for another process's lock: a run's own writes are bounded
    /// by its push deadline.
    pub(crate) fn write_within<T, E: From<StateError>>(
        &self,
        wait: Duration,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        // Records kept from earlier failures go first, in this transaction:
        // taken out so that no other thread writes them too, and put back
        // if it fails.
        let backlog = std::mem::take(&mut *lock(&self.inner.backlog.0));
        if backlog.is_empty() {
            return self.write_now(wait, f);
        }
        let result = self.write_now(wait, |tx| {
            for record in &backlog {
                record(tx)?;
            }
            f(tx)
        });
        if result.is_err() {
            let mut kept = lock(&self.inner.backlog.0);
            let newer = std::mem::take(&mut *kept);
            *kept = backlog;
            kept.extend(newer);
        }
        result
    }

    fn write_now<T, E: From<StateError>>(
        &self,
        wait: Duration,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let retention = *lock(&self.inner.retention);
        let conn = match &self.inner.backend {
            #[cfg(feature = "postgres")]
            Backend::Postgres(client) => {
                let mut pg = lock(client);
                let client = pg.client().map_err(E::from)?;
                return postgres::write(client, &self.url(), wait, retention, f);
            }
            backend => backend.sqlite(),
        };
        let path = &self.inner.path;
        let sql = |source| E::from(classify(path, source));
        // The busy timeout bounds this write's wait for another process's
        // lock when it opens the transaction; a write that joins a batch
        // already open does not wait for the file.
        conn.write(
            |conn| conn.busy_timeout(wait.min(BUSY_TIMEOUT)),
            sql,
            |conn| {
                f(&SqliteTx {
                    tx: conn,
                    path,
                    retention,
                })
            },
        )
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether `target` names a PostgreSQL database rather than a file.
fn is_postgres_url(target: &str) -> bool {
    ["postgres://", "postgresql://"].iter().any(|scheme| {
        target.len() > scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme)
    })
}

/// The name of this host for run history and lease owners: `HOSTNAME`,
/// else the kernel's host name.
pub(crate) fn host_name() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned())
    })
}

/// How long a process waits for another one's write transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Switches the file to WAL once. Changing the journal mode needs an
/// exclusive lock for which SQLite does not call the busy handler, so
/// concurrent first opens retry here, within the busy timeout.
fn wal(conn: &Connection, wait: Duration) -> rusqlite::Result<()> {
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    if mode.eq_ignore_ascii_case("wal") {
        return Ok(());
    }
    let deadline = std::time::Instant::now() + wait;
    let mut pause = Duration::from_millis(1);
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
            Ok(_) => return Ok(()),
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

fn classify(path: &Path, source: rusqlite::Error) -> StateError {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    match source.sqlite_error_code() {
        Some(NotADatabase | DatabaseCorrupt) => StateError::Corrupt {
            path: path.to_path_buf(),
            source,
        },
        _ => StateError::Sqlite {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// Whether the process named in a lease owner (`PID-…`) still runs. Only
/// known on Linux; elsewhere a lease is trusted until it expires.
fn owner_alive(owner: &str) -> bool {
    // Owners name their host (`PID-…@HOST`): another host's processes
    // cannot be seen from here, so their leases are trusted until they expire.
    if let Some((_, host)) = owner.rsplit_once('@')
        && host != host_name()
    {
        return true;
    }
    let Some(pid) = owner.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
        return true;
    };
    if pid == std::process::id() {
        return crate::outbox::is_active(owner);
    }
    let proc_dir = Path::new("/proc");
    !proc_dir.join("self").exists() || proc_dir.join(pid.to_string()).exists()
}

/// A push to write to the outbox.
pub(crate) struct NewEntry<'a> {
    /// The gateway URL as configured, shown by `pushguard outbox`.
    pub gateway: &'a str,
    /// [`Gateway::identity`](crate::Gateway::identity): the queue it joins.
    pub gateway_id: &'a str,
    pub path: &'a str,
    pub method: Stored,
    pub body: &'a str,
    pub content_type: &'a str,
    pub run_id: Option<i64>,
}

/// A run to write to the history.
pub(crate) struct NewRun<'a> {
    pub job: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub start: f64,
    pub end: f64,
    pub duration: f64,
    pub outcome: &'a str,
    pub exit_code: i32,
    pub trace_id: Option<String>,
    pub output: Option<String>,
    pub push_status: &'a str,
}

/// An outbox entry taken for delivery.
pub(crate) struct Pending {
    pub id: i64,
    pub method: Stored,
    pub body: String,
    pub run_id: Option<i64>,
}

impl rusqlite::types::ToSql for Stored {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl rusqlite::types::FromSql for Stored {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        Stored::parse(text).ok_or_else(|| {
            rusqlite::types::FromSqlError::Other(format!("unknown stored method {text:?}").into())
        })
    }
}

/// An open write transaction, on either backend: what `outbox.rs` and
/// `guard.rs` write through.
pub(crate) type Tx<'a> = dyn TxOps + 'a;

/// The operations of a write transaction. Each backend implements them with
/// the same semantics: [`SqliteTx`] inside an immediate transaction (one
/// writer at a time), `postgres::PgTx` with row locks and upserts, so that
/// totals, lease takeover and per-group order hold across processes and
/// hosts. No implementation holds a lock beyond its transaction.
pub(crate) trait TxOps {
    /// Adds `delta` to a cumulative counter sample and returns the new total.
    fn bump(&self, grouping: &str, name: &str, labels: &str, delta: f64)
    -> Result<f64, StateError>;
    /// Writes a run (with this host's name) and applies the retention to its job.
    fn insert_run(&self, run: &NewRun<'_>) -> Result<i64, StateError>;
    /// Sets the push status of a run.
    fn set_run_status(&self, run_id: Option<i64>, status: &str) -> Result<(), StateError>;
    /// Appends a push to the outbox, after every push of its group
    /// committed before.
    fn spool(&self, entry: &NewEntry<'_>) -> Result<i64, StateError>;
    /// Takes the delivery lease of a group unless another live owner has it.
    /// A lease whose owner process is gone (killed) is taken over at once.
    fn try_lease(
        &self,
        gateway: &str,
        path: &str,
        owner: &str,
        hold: Duration,
    ) -> Result<bool, StateError>;
    /// Extends a lease this owner holds; false when it was lost.
    fn renew_lease(
        &self,
        gateway: &str,
        path: &str,
        owner: &str,
        hold: Duration,
    ) -> Result<bool, StateError>;
    /// Gives a lease back.
    fn release(&self, gateway: &str, path: &str, owner: &str) -> Result<(), StateError>;
    /// The oldest live entries of a group, oldest first, as one batch to
    /// deliver: at most `limit` of them, whose bodies add up to at most
    /// `bytes` — but always the oldest one, however large. Only the
    /// entries taken are read, so a batch holds at most that much.
    fn next_batch(
        &self,
        gateway: &str,
        path: &str,
        limit: usize,
        bytes: usize,
    ) -> Result<Vec<Pending>, StateError>;
    /// Deletes delivered entries and marks their runs delivered.
    fn delivered(&self, entries: &[Pending]) -> Result<(), StateError>;
    /// Records a failed attempt; `dead` makes it a dead letter.
    fn failed(&self, entry: &Pending, error: &str, dead: bool) -> Result<(), StateError>;
    /// Whether an entry is still waiting (`Some(false)`), a dead letter
    /// (`Some(true)` with its error) or gone (`None`, delivered).
    fn entry_state(&self, id: i64) -> Result<Option<(bool, Option<String>, Stored)>, StateError>;
    /// Marks the group's delivery in doubt until `settle_at` (Unix time).
    fn mark_in_doubt(&self, gateway: &str, path: &str, settle_at: f64) -> Result<(), StateError>;
    /// Remembers a delivered push as its group's newest, when the group is
    /// in doubt.
    fn remember_if_in_doubt(
        &self,
        gateway: &str,
        path: &str,
        entry: &Pending,
    ) -> Result<(), StateError>;
    /// The group's newest delivered push to send again, when its doubt has
    /// settled.
    fn settled(
        &self,
        gateway: &str,
        path: &str,
        now: f64,
    ) -> Result<Option<(Stored, String)>, StateError>;
    /// Ends the group's doubt.
    fn clear_in_doubt(&self, gateway: &str, path: &str) -> Result<(), StateError>;
    /// The newest delivery error among the group's pending entries.
    fn group_last_error(&self, gateway: &str, path: &str) -> Result<Option<String>, StateError>;
    /// Groups of the gateway identity `gateway` with live entries or a
    /// delivery in doubt, for a flush: the first `limit` of them in path
    /// order after the path `after` (`""`: from the first), so that a flush
    /// goes through any number of groups a page at a time.
    fn pending_groups(
        &self,
        gateway: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, StateError>;
    /// Closes a claimed fire with the run recorded for it (see
    /// [`fleet`]). A state file shares no schedule: nothing to close.
    fn end_fire(
        &self,
        fire: &fleet::Fire,
        outcome: &str,
        run_id: Option<i64>,
    ) -> Result<(), StateError> {
        let _ = (fire, outcome, run_id);
        Ok(())
    }
}

/// An open SQLite write transaction with the file's path for error messages.
pub(crate) struct SqliteTx<'a> {
    tx: &'a Connection,
    path: &'a Path,
    retention: Retention,
}

impl SqliteTx<'_> {
    fn sql(&self, source: rusqlite::Error) -> StateError {
        classify(self.path, source)
    }
}

/// Statements of the transaction methods, prepared once per connection and
/// kept in its statement cache: a runner writes the same few statements for
/// every run, and parsing them again each time was a tenth of its work.
/// The statements of a run's spool and delivery, which
/// [`State::prepare_run_statements`] compiles ahead of the run's end.
mod run_sql {
    pub(super) const BUMP: &str =
        "INSERT INTO counters (grouping, name, labels, value) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (grouping, name, labels) DO UPDATE SET value = value + excluded.value
         RETURNING value";
    pub(super) const INSERT_RUN: &str = "INSERT INTO runs (job, labels, start, end, duration, outcome, exit_code, push_status, trace_id, output, host)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";
    pub(super) const KEEP_RUNS: &str = "DELETE FROM runs WHERE job = ?1 AND id <= (
             SELECT id FROM runs WHERE job = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)";
    pub(super) const OLDEST_END: &str = "SELECT end FROM runs WHERE job = ?1 ORDER BY id LIMIT 1";
    pub(super) const MAX_AGE: &str = "DELETE FROM runs WHERE job = ?1 AND end < ?2";
    pub(super) const RUN_STATUS: &str = "UPDATE runs SET push_status = ?2 WHERE id = ?1";
    pub(super) const SPOOL: &str = "INSERT INTO outbox (gateway, path, method, body, content_type, run_id, created, gateway_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
    pub(super) const LEASE_HOLDER: &str =
        "SELECT owner FROM leases WHERE gateway = ?1 AND path = ?2 AND until >= ?3";
    pub(super) const TAKE_LEASE: &str =
        "INSERT INTO leases (gateway, path, owner, until) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (gateway, path) DO UPDATE SET owner = excluded.owner, until = excluded.until
         WHERE leases.until < ?5 OR leases.owner = excluded.owner";
    pub(super) const RENEW_LEASE: &str =
        "UPDATE leases SET until = ?4 WHERE gateway = ?1 AND path = ?2 AND owner = ?3";
    pub(super) const RELEASE_LEASE: &str =
        "DELETE FROM leases WHERE gateway = ?1 AND path = ?2 AND owner = ?3";
    pub(super) const DELIVERED: &str = "DELETE FROM outbox WHERE id = ?1";
    pub(super) const REMEMBER: &str =
        "UPDATE in_doubt SET method = ?3, body = ?4 WHERE gateway_id = ?1 AND path = ?2";
    pub(super) const SETTLED: &str =
        "SELECT method, body FROM in_doubt WHERE gateway_id = ?1 AND path = ?2 AND settle_at <= ?3";

    /// The oldest live entries of a group, at most `limit`, with the bodies
    /// of those within `?3` bytes. The limit is written into the text: SQLite
    /// compiles a bound LIMIT again each time it is bound (its planner reads
    /// the value), so each limit in use is a statement of its own.
    pub(super) fn next_batch(limit: usize) -> String {
        format!(
            "WITH head AS (
                 SELECT id, length(body) AS size FROM outbox
                  WHERE gateway_id = ?1 AND path = ?2 AND dead = 0 ORDER BY id LIMIT {limit}),
             kept AS (
                 SELECT id FROM (
                     SELECT id, size, sum(size) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING) AS upto
                       FROM head)
                  WHERE upto <= ?3 OR upto = size)
             SELECT id, method, body, run_id FROM outbox
              WHERE id IN (SELECT id FROM kept) ORDER BY id"
        )
    }

    /// Everything a run's end runs, in the order it does.
    pub(super) const ALL: [&str; 14] = [
        BUMP,
        INSERT_RUN,
        KEEP_RUNS,
        OLDEST_END,
        MAX_AGE,
        SPOOL,
        LEASE_HOLDER,
        TAKE_LEASE,
        RENEW_LEASE,
        DELIVERED,
        RUN_STATUS,
        REMEMBER,
        SETTLED,
        RELEASE_LEASE,
    ];
}

trait Cached {
    fn run(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize>;
    fn one<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn run(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn one<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, row)
    }
}

impl TxOps for SqliteTx<'_> {
    /// Adds `delta` to a cumulative counter sample and returns the new total.
    fn bump(
        &self,
        grouping: &str,
        name: &str,
        labels: &str,
        delta: f64,
    ) -> Result<f64, StateError> {
        self.tx
            .one(run_sql::BUMP, params![grouping, name, labels, delta], |r| {
                r.get(0)
            })
            .map_err(|e| self.sql(e))
    }

    /// Writes a run and applies the retention to its job.
    fn insert_run(&self, run: &NewRun<'_>) -> Result<i64, StateError> {
        let labels = serde_json::to_string(run.labels).unwrap_or_else(|_| "{}".into());
        self.tx
            .run(
                run_sql::INSERT_RUN,
                params![
                    run.job,
                    labels,
                    run.start,
                    run.end,
                    run.duration,
                    run.outcome,
                    run.exit_code,
                    run.push_status,
                    run.trace_id,
                    run.output,
                    host_name()
                ],
            )
            .map_err(|e| self.sql(e))?;
        let id = self.tx.last_insert_rowid();
        self.tx
            .run(
                run_sql::KEEP_RUNS,
                params![run.job, i64::from(self.retention.keep_runs)],
            )
            .map_err(|e| self.sql(e))?;
        if let Some(age) = self.retention.max_age {
            // Runs are written as they end, so the job's oldest row (an
            // index lookup) is the one that ages out first: the rows are
            // scanned for their end only once it has.
            let cutoff = unix_now() - age.as_secs_f64();
            let oldest: Option<f64> = self
                .tx
                .one(run_sql::OLDEST_END, params![run.job], |r| r.get(0))
                .optional()
                .map_err(|e| self.sql(e))?;
            if oldest.is_some_and(|end| end < cutoff) {
                self.tx
                    .run(run_sql::MAX_AGE, params![run.job, cutoff])
                    .map_err(|e| self.sql(e))?;
            }
        }
        Ok(id)
    }

    /// Sets the push status of a run.
    fn set_run_status(&self, run_id: Option<i64>, status: &str) -> Result<(), StateError> {
        if let Some(id) = run_id {
            self.tx
                .run(run_sql::RUN_STATUS, params![id, status])
                .map_err(|e| self.sql(e))?;
        }
        Ok(())
    }

    /// Appends a push to the outbox.
    fn spool(&self, entry: &NewEntry<'_>) -> Result<i64, StateError> {
        self.tx
            .run(
                run_sql::SPOOL,
                params![
                    entry.gateway,
                    entry.path,
                    entry.method,
                    entry.body.as_bytes(),
                    entry.content_type,
                    entry.run_id,
                    unix_now(),
                    entry.gateway_id
                ],
            )
            .map_err(|e| self.sql(e))?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Takes the delivery lease of a group unless another live owner has it.
    /// A lease whose owner process is gone (killed) is taken over at once.
    fn try_lease(
        &self,
        gateway: &str,
        path: &str,
        owner: &str,
        hold: Duration,
    ) -> Result<bool, StateError> {
        let now = unix_now();
        let holder: Option<String> = self
            .tx
            .one(run_sql::LEASE_HOLDER, params![gateway, path, now], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.sql(e))?;
        if let Some(holder) = holder.filter(|h| h != owner && !owner_alive(h)) {
            self.release(gateway, path, &holder)?;
        }
        let changed = self
            .tx
            .run(
                run_sql::TAKE_LEASE,
                params![gateway, path, owner, now + hold.as_secs_f64(), now],
            )
            .map_err(|e| self.sql(e))?;
        Ok(changed == 1)
    }

    /// Extends a lease this owner holds; false when it was lost.
    fn renew_lease(
        &self,
        gateway: &str,
        path: &str,
        owner: &str,
        hold: Duration,
    ) -> Result<bool, StateError> {
        let changed = self
            .tx
            .run(
                run_sql::RENEW_LEASE,
                params![gateway, path, owner, unix_now() + hold.as_secs_f64()],
            )
            .map_err(|e| self.sql(e))?;
        Ok(changed == 1)
    }

    /// Gives a lease back.
    fn release(&self, gateway: &str, path: &str, owner: &str) -> Result<(), StateError> {
        self.tx
            .run(run_sql::RELEASE_LEASE, params![gateway, path, owner])
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// The oldest live entries of a group, bounded in number and bytes.
    fn next_batch(
        &self,
        gateway: &str,
        path: &str,
        limit: usize,
        bytes: usize,
    ) -> Result<Vec<Pending>, StateError> {
        // The sizes first (`length` of a blob reads no content), then the
        // bodies of the entries that fit: the entry before which the running
        // size stays within `bytes`, and the oldest whatever its size.
        let mut stmt = self
            .tx
            .prepare_cached(&run_sql::next_batch(limit))
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(
                params![gateway, path, i64::try_from(bytes).unwrap_or(i64::MAX)],
                |r| {
                    Ok(Pending {
                        id: r.get(0)?,
                        method: r.get(1)?,
                        body: String::from_utf8_lossy(&r.get::<_, Vec<u8>>(2)?).into_owned(),
                        run_id: r.get(3)?,
                    })
                },
            )
            .map_err(|e| self.sql(e))?;
        rows.collect::<rusqlite::Result<Vec<Pending>>>()
            .map_err(|e| self.sql(e))
    }

    /// Deletes delivered entries and marks their runs delivered.
    fn delivered(&self, entries: &[Pending]) -> Result<(), StateError> {
        let mut delete = self
            .tx
            .prepare_cached(run_sql::DELIVERED)
            .map_err(|e| self.sql(e))?;
        for entry in entries {
            delete.execute(params![entry.id]).map_err(|e| self.sql(e))?;
            self.set_run_status(entry.run_id, "delivered")?;
        }
        Ok(())
    }

    /// Records a failed attempt; `dead` makes it a dead letter.
    fn failed(&self, entry: &Pending, error: &str, dead: bool) -> Result<(), StateError> {
        let now = unix_now();
        self.tx
            .run(
                "UPDATE outbox SET attempts = attempts + 1, first_attempt = coalesce(first_attempt, ?2),
                        last_attempt = ?2, last_error = ?3, dead = ?4 WHERE id = ?1",
                params![entry.id, now, error, dead],
            )
            .map_err(|e| self.sql(e))?;
        if dead {
            self.set_run_status(entry.run_id, "rejected")?;
        }
        Ok(())
    }

    /// Whether an entry is still waiting (`Some(false)`), a dead letter
    /// (`Some(true)` with its error) or gone (`None`, delivered).
    fn entry_state(&self, id: i64) -> Result<Option<(bool, Option<String>, Stored)>, StateError> {
        self.tx
            .one(
                "SELECT dead, last_error, method FROM outbox WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Marks the group's delivery in doubt until `settle_at` (Unix time): an
    /// attempt was sent and never answered, so the gateway may still apply it
    /// late, after a newer push.
    fn mark_in_doubt(&self, gateway: &str, path: &str, settle_at: f64) -> Result<(), StateError> {
        self.tx
            .run(
                "INSERT INTO in_doubt (gateway_id, path, settle_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (gateway_id, path) DO UPDATE SET settle_at = max(settle_at, excluded.settle_at)",
                params![gateway, path, settle_at],
            )
            .map(drop)
            .map_err(|e| self.sql(e))
    }

    /// Remembers a delivered push as its group's newest, when the group is
    /// in doubt (otherwise nothing needs sending again).
    fn remember_if_in_doubt(
        &self,
        gateway: &str,
        path: &str,
        entry: &Pending,
    ) -> Result<(), StateError> {
        self.tx
            .run(
                run_sql::REMEMBER,
                params![gateway, path, entry.method, entry.body],
            )
            .map(drop)
            .map_err(|e| self.sql(e))
    }

    /// The group's newest delivered push to send again, when its doubt has
    /// settled (`settle_at` passed); `None` when there is nothing due.
    fn settled(
        &self,
        gateway: &str,
        path: &str,
        now: f64,
    ) -> Result<Option<(Stored, String)>, StateError> {
        let row: Option<(Option<Stored>, Option<String>)> = self
            .tx
            .one(run_sql::SETTLED, params![gateway, path, now], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(|e| self.sql(e))?;
        match row {
            Some((Some(method), Some(body))) => Ok(Some((method, body))),
            // In doubt, but nothing was delivered since: the pending entry
            // itself is sent again (and remembered) on its next delivery.
            Some(_) => Ok(None),
            None => Ok(None),
        }
    }

    /// Ends the group's doubt: its newest push was sent again after the
    /// in-doubt attempt could no longer land.
    fn clear_in_doubt(&self, gateway: &str, path: &str) -> Result<(), StateError> {
        self.tx
            .run(
                "DELETE FROM in_doubt WHERE gateway_id = ?1 AND path = ?2",
                params![gateway, path],
            )
            .map(drop)
            .map_err(|e| self.sql(e))
    }

    /// The newest delivery error among the group's pending entries.
    fn group_last_error(&self, gateway: &str, path: &str) -> Result<Option<String>, StateError> {
        self.tx
            .one(
                "SELECT last_error FROM outbox WHERE gateway_id = ?1 AND path = ?2 AND dead = 0
                 AND last_error IS NOT NULL ORDER BY last_attempt DESC LIMIT 1",
                params![gateway, path],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// A page of the groups with live entries or a delivery in doubt.
    fn pending_groups(
        &self,
        gateway: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, StateError> {
        // Each side limited first: the outbox side walks the group index in
        // path order and stops after `limit` groups.
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT path FROM (
                     SELECT path FROM outbox WHERE gateway_id = ?1 AND dead = 0 AND path > ?2
                      GROUP BY path ORDER BY path LIMIT ?3)
                 UNION
                 SELECT path FROM (
                     SELECT path FROM in_doubt WHERE gateway_id = ?1 AND path > ?2
                      ORDER BY path LIMIT ?3)
                 ORDER BY path LIMIT ?3",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(
                params![gateway, after, i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))?;
        rows.collect::<rusqlite::Result<Vec<String>>>()
            .map_err(|e| self.sql(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_migrates_and_refuses_newer_or_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/state.db");
        let state = State::open(&path).unwrap();
        assert!(state.outbox().unwrap().is_empty());
        drop(state);
        State::open(&path).unwrap(); // reopening keeps the schema

        let newer = dir.path().join("newer.db");
        let conn = Connection::open(&newer).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA application_id = {}; PRAGMA user_version = 99;",
            schema::APPLICATION_ID
        ))
        .unwrap();
        drop(conn);
        let err = State::open(&newer).unwrap_err();
        assert!(matches!(err, StateError::Newer { found: 99, .. }), "{err}");
        assert!(err.to_string().contains("newer.db"), "{err}");

        let foreign = dir.path().join("foreign.db");
        Connection::open(&foreign)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let err = State::open(&foreign).unwrap_err();
        assert!(matches!(err, StateError::Foreign { .. }), "{err}");

        let corrupt = dir.path().join("corrupt.db");
        std::fs::write(&corrupt, vec![0x42; 8192]).unwrap();
        let err = State::open(&corrupt).unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("corrupt.db"), "{err}");
    }

    #[test]
    fn urls_are_masked_and_recognized() {
        assert_eq!(
            mask_url("postgres://me:s3cret@db.example:5432/pg?sslmode=disable&password=x"),
            "postgres://me:***@db.example:5432/pg?sslmode=disable&password=***"
        );
        assert_eq!(mask_url("postgresql://me@db/pg"), "postgresql://me@db/pg");
        assert_eq!(mask_url("postgres://db"), "postgres://db");
        assert!(is_postgres_url("PostgreSQL://db/x"));
        assert!(!is_postgres_url("/var/lib/postgres://x"));
        assert!(!is_postgres_url("postgres://"));
    }

    #[cfg(not(feature = "postgres"))]
    #[test]
    fn a_postgres_url_needs_the_feature() {
        let err = State::open("postgres://me:s3cret@127.0.0.1:1/pg").unwrap_err();
        assert!(matches!(err, StateError::Unsupported { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("postgres://me:***@127.0.0.1:1/pg"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn counters_leases_and_retention() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path().join("s.db")).unwrap();
        state.set_retention(Retention {
            keep_runs: 3,
            max_age: None,
        });
        let labels = BTreeMap::new();
        state
            .write::<_, StateError>(|tx| {
                assert_eq!(tx.bump("/metrics/job/j", "c", "", 1.0)?, 1.0);
                assert_eq!(tx.bump("/metrics/job/j", "c", "", 2.5)?, 3.5);
                assert!(tx.try_lease("g", "p", "me", Duration::from_secs(10))?);
                assert!(!tx.try_lease("g", "p", "other", Duration::from_secs(10))?);
                assert!(tx.try_lease("g", "p", "me", Duration::from_secs(10))?);
                tx.release("g", "p", "me")?;
                assert!(tx.try_lease("g", "p", "other", Duration::from_secs(10))?);
                // A lease of a process that no longer exists is taken over.
                assert!(tx.try_lease("g", "q", "999999999-1-0", Duration::from_secs(10))?);
                assert!(tx.try_lease("g", "q", "me", Duration::from_secs(10))?);
                // Another host's process cannot be seen from here: its lease
                // holds until it expires, whatever its pid.
                let elsewhere = "999999999-1-0@another-host.invalid";
                assert!(tx.try_lease("g", "r", elsewhere, Duration::from_secs(10))?);
                assert!(!tx.try_lease("g", "r", "me", Duration::from_secs(10))?);
                let here = format!("999999999-1-0@{}", host_name());
                assert!(tx.try_lease("g", "s", &here, Duration::from_secs(10))?);
                assert!(tx.try_lease("g", "s", "me", Duration::from_secs(10))?);
                for i in 0..5 {
                    tx.insert_run(&NewRun {
                        job: "j",
                        labels: &labels,
                        start: f64::from(i),
                        end: f64::from(i),
                        duration: 0.0,
                        outcome: "success",
                        exit_code: 0,
                        trace_id: None,
                        output: None,
                        push_status: "none",
                    })?;
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(
            state.counter_total("/metrics/job/j", "c", "").unwrap(),
            Some(3.5)
        );
        let runs = state.history(Some("j"), 10).unwrap();
        assert_eq!(
            runs.iter().map(|r| r.start).collect::<Vec<_>>(),
            [4.0, 3.0, 2.0]
        );
    }

    #[test]
    fn migration_3_keys_stored_pushes_and_leases_by_gateway_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.db");
        // A version 2 file with pushes and leases under several spellings
        // of one gateway, and one of another gateway.
        let mut conn = Connection::open(&path).unwrap();
        let v2 = crate::migration::Schema {
            application_id: schema::APPLICATION_ID,
            migrations: &schema::MIGRATIONS[..2],
        };
        assert!(matches!(v2.migrate(&mut conn).unwrap(), Found::Ok));
        for (gateway, path) in [
            ("http://127.0.0.1:9091", "/metrics/job/a"),
            ("http://localhost:09091/", "/metrics/job/a"),
            ("HTTP://127.1:9091", "/metrics/job/a"),
            ("https://push.example.net", "/metrics/job/a"),
        ] {
            conn.execute(
                "INSERT INTO outbox (gateway, path, method, body, content_type, created)
                 VALUES (?1, ?2, 'POST', x'', 'text/plain', 0)",
                params![gateway, path],
            )
            .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO leases VALUES ('http://127.0.0.1:9091', '/metrics/job/a', 'one', 1);
             INSERT INTO leases VALUES ('http://localhost:9091', '/metrics/job/a', 'two', 2);",
        )
        .unwrap();
        drop(conn);

        let state = State::open(&path).unwrap();
        let entries = state.outbox().unwrap();
        assert_eq!(
            entries
                .iter()
                .map(|e| e.gateway.as_str())
                .collect::<Vec<_>>(),
            [
                "http://127.0.0.1:9091",
                "http://localhost:09091/",
                "HTTP://127.1:9091",
                "https://push.example.net"
            ],
            "the configured URLs are kept for display"
        );
        let loopback = "http://127.0.0.1:9091";
        let first = state
            .write::<_, StateError>(|tx| {
                Ok(tx
                    .next_batch(loopback, "/metrics/job/a", 1, 0)?
                    .first()
                    .map(|p| p.id))
            })
            .unwrap();
        let conn = Connection::open(&path).unwrap();
        let leases: Vec<(String, String)> = conn
            .prepare("SELECT gateway, owner FROM leases")
            .and_then(|mut stmt| {
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .unwrap();
        let groups: Vec<i64> = conn
            .prepare("SELECT id FROM outbox WHERE gateway_id = ?1 ORDER BY id")
            .and_then(|mut stmt| stmt.query_map([loopback], |r| r.get(0))?.collect())
            .unwrap();
        assert_eq!(first, Some(entries[0].id));
        assert_eq!(groups, [entries[0].id, entries[1].id, entries[2].id]);
        assert_eq!(leases.len(), 1, "{leases:?}");
        assert_eq!(leases[0].0, loopback);
        assert_eq!(
            state
                .write(|tx| tx.pending_groups("https://push.example.net:443", "", 10))
                .unwrap(),
            ["/metrics/job/a"]
        );
    }
}
