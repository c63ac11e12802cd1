//! Group commit for a SQLite state handle that many threads write through
//! (the runner ends a burst of runs at once).
//!
//! A writer takes the connection, opens a write transaction unless one is
//! open, and does its work inside a savepoint. If another thread is already
//! waiting for the connection, it leaves the transaction open for that thread
//! to add its own work and waits; the last writer of a burst, the one that
//! finds nobody waiting, commits for all. Every writer returns only once the
//! transaction that holds its work is committed (or with the error that
//! stopped it): nothing is reported written before it is. A writer whose own
//! work fails rolls back its savepoint only, so the others' work stands. A
//! reader that takes the connection commits an open batch first, so that it
//! never sees work that is not committed yet.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use rusqlite::Connection;

/// At most this many writers' work in one transaction: a long burst still
/// commits in steps, and the file's write lock is never held for long.
const MAX_MEMBERS: usize = 128;

/// The transaction control statements of every write, run from the
/// connection's statement cache rather than parsed each time.
const BEGIN: &str = "BEGIN IMMEDIATE";
const SAVEPOINT: &str = "SAVEPOINT member";
const RELEASE: &str = "RELEASE member";
const COMMIT: &str = "COMMIT";
pub(super) const CONTROL: [&str; 4] = [BEGIN, SAVEPOINT, RELEASE, COMMIT];

fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// A SQLite connection shared by the threads of one handle.
pub(super) struct Shared {
    open: Mutex<Open>,
    /// Threads waiting to take the connection.
    queued: AtomicUsize,
    settled: Mutex<Settled>,
    settled_changed: Condvar,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

struct Open {
    conn: Connection,
    /// The batch a writer left open: its number and how many writers' work
    /// it holds.
    batch: Option<(u64, usize)>,
    next: u64,
}

/// Which batches are over, and how those that failed failed.
#[derive(Default)]
struct Settled {
    /// Every batch numbered below this is over.
    below: u64,
    /// The last failed batches and their errors, for their writers to read.
    failed: Vec<(u64, rusqlite::ffi::Error, Option<String>)>,
}

/// The connection, taken by a reader: no batch is open while it is held.
pub(super) struct Reading<'a>(MutexGuard<'a, Open>);

impl std::ops::Deref for Reading<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.0.conn
    }
}

impl Shared {
    pub(super) fn new(conn: Connection) -> Shared {
        Shared {
            open: Mutex::new(Open {
                conn,
                batch: None,
                next: 0,
            }),
            queued: AtomicUsize::new(0),
            settled: Mutex::new(Settled::default()),
            settled_changed: Condvar::new(),
        }
    }

    fn take(&self) -> MutexGuard<'_, Open> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        self.queued.fetch_sub(1, Ordering::SeqCst);
        open
    }

    /// The connection for reading, with any open batch committed first.
    pub(super) fn read(&self) -> rusqlite::Result<Reading<'_>> {
        let mut open = self.take();
        match self.commit(&mut open) {
            Some(error) => Err(error),
            None => Ok(Reading(open)),
        }
    }

    /// Runs `work` inside a write transaction, shared with the writers of
    /// the same burst, and returns once that transaction is committed.
    /// `prepare` runs on the connection first (the busy timeout of this
    /// write); `sql` turns a SQLite error into the caller's.
    pub(super) fn write<T, E>(
        &self,
        prepare: impl FnOnce(&Connection) -> rusqlite::Result<()>,
        sql: impl Fn(rusqlite::Error) -> E,
        work: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut open = self.take();
        if let Err(error) = prepare(&open.conn) {
            // Whoever left a batch open for this thread is waiting for it.
            let _ = self.commit(&mut open);
            return Err(sql(error));
        }
        let batch = match open.batch {
            Some((batch, _)) => batch,
            None => {
                control(&open.conn, BEGIN).map_err(&sql)?;
                let batch = open.next;
                open.next += 1;
                open.batch = Some((batch, 0));
                batch
            }
        };
        if let Err(error) = control(&open.conn, SAVEPOINT) {
            let _ = self.commit(&mut open);
            return Err(sql(error));
        }
        let done = catch_unwind(AssertUnwindSafe(|| work(&open.conn)));
        let kept = match &done {
            Ok(Ok(_)) => control(&open.conn, RELEASE),
            _ => open
                .conn
                .execute_batch("ROLLBACK TO member; RELEASE member"),
        };
        if let Err(error) = kept {
            // The transaction is in an unknown state: none of it is kept.
            let _ = open.conn.execute_batch("ROLLBACK");
            open.batch = None;
            self.settle(batch, Some(&error));
            return Err(sql(error));
        }
        let member = matches!(done, Ok(Ok(_)));
        if member && let Some((_, members)) = &mut open.batch {
            *members += 1;
        }
        let members = open.batch.map_or(0, |(_, members)| members);
        let others_coming = self.queued.load(Ordering::SeqCst) > 0 && members < MAX_MEMBERS;
        let failed = if others_coming {
            None
        } else {
            self.commit(&mut open)
        };
        drop(open);
        let value = match done {
            Ok(Ok(value)) => value,
            Ok(Err(error)) => return Err(error),
            Err(panic) => resume_unwind(panic),
        };
        if let Some(error) = failed {
            return Err(sql(error));
        }
        if others_coming {
            self.wait(batch).map_err(&sql)?;
        }
        Ok(value)
    }

    /// Commits the open batch, if any; its error, if the commit failed.
    fn commit(&self, open: &mut Open) -> Option<rusqlite::Error> {
        let (batch, _) = open.batch.take()?;
        let result = control(&open.conn, COMMIT);
        if result.is_err() {
            let _ = open.conn.execute_batch("ROLLBACK");
        }
        self.settle(batch, result.as_ref().err());
        result.err()
    }

    fn settle(&self, batch: u64, error: Option<&rusqlite::Error>) {
        let mut settled = self.settled.lock().unwrap_or_else(|p| p.into_inner());
        settled.below = batch + 1;
        if let Some(error) = error {
            let (code, message) = shared_error(error);
            if settled.failed.len() >= 64 {
                settled.failed.remove(0);
            }
            settled.failed.push((batch, code, message));
        }
        self.settled_changed.notify_all();
    }

    /// Waits for `batch` to be over: its commit's error if it failed.
    fn wait(&self, batch: u64) -> rusqlite::Result<()> {
        let settled = self.settled.lock().unwrap_or_else(|p| p.into_inner());
        let settled = self
            .settled_changed
            .wait_while(settled, |s| s.below <= batch)
            .unwrap_or_else(|p| p.into_inner());
        match settled.failed.iter().find(|(b, _, _)| *b == batch) {
            Some((_, code, message)) => Err(rusqlite::Error::SqliteFailure(*code, message.clone())),
            None => Ok(()),
        }
    }
}

/// A copy of a commit's error for each writer of its batch.
fn shared_error(error: &rusqlite::Error) -> (rusqlite::ffi::Error, Option<String>) {
    match error {
        rusqlite::Error::SqliteFailure(code, message) => (*code, message.clone()),
        other => (
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A shared connection to a new file with one table `t`, the file's
    /// path, and the directory that holds it (removed when dropped).
    fn shared() -> (tempfile::TempDir, std::path::PathBuf, Arc<Shared>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v INTEGER NOT NULL)")
            .unwrap();
        (dir, path, Arc::new(Shared::new(conn)))
    }

    fn count(path: &std::path::Path) -> i64 {
        // Another connection sees only what is committed.
        Connection::open(path)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn every_writer_returns_with_its_work_committed() {
        let (_dir, path, shared) = shared();
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let shared = shared.clone();
                let path = path.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let v = t * 1000 + i;
                        shared
                            .write(
                                |_| Ok(()),
                                |e| e,
                                |conn| conn.execute("INSERT INTO t (v) VALUES (?1)", [v]),
                            )
                            .unwrap();
                        // Committed when write returns: another connection sees it.
                        let seen: i64 = Connection::open(&path)
                            .unwrap()
                            .query_row("SELECT count(*) FROM t WHERE v = ?1", [v], |r| r.get(0))
                            .unwrap();
                        assert_eq!(seen, 1, "row {v} not committed when its write returned");
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(count(&path), 16 * 50);
    }

    #[test]
    fn a_failing_writer_loses_only_its_own_work() {
        let (_dir, path, shared) = shared();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let mut kept = 0;
                    for i in 0..40 {
                        let fail = (t + i) % 3 == 0;
                        let result = shared.write(
                            |_| Ok(()),
                            |e| e.to_string(),
                            |conn| {
                                conn.execute("INSERT INTO t (v) VALUES (?1)", [i])
                                    .map_err(|e| e.to_string())?;
                                if fail {
                                    // A constraint error after a first insert.
                                    conn.execute("INSERT INTO t (v) VALUES (NULL)", [])
                                        .map_err(|e| e.to_string())?;
                                }
                                Ok(())
                            },
                        );
                        assert_eq!(result.is_err(), fail, "{result:?}");
                        kept += usize::from(!fail);
                    }
                    kept
                })
            })
            .collect();
        let kept: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(count(&path), i64::try_from(kept).unwrap());
    }

    #[test]
    fn a_panicking_writer_loses_its_work_and_the_others_go_on() {
        let (_dir, path, shared) = shared();
        let panicked = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let _ = shared.write(
                |_| Ok(()),
                |e| e,
                |conn| -> rusqlite::Result<()> {
                    conn.execute("INSERT INTO t (v) VALUES (1)", [])?;
                    panic!("the work panicked");
                },
            );
        }));
        assert!(panicked.is_err());
        shared
            .write(
                |_| Ok(()),
                |e| e,
                |conn| conn.execute("INSERT INTO t (v) VALUES (2)", []),
            )
            .unwrap();
        assert_eq!(count(&path), 1);
        let reading = shared.read().unwrap();
        let v: i64 = reading
            .query_row("SELECT v FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 2);
    }

    #[test]
    fn a_failed_commit_fails_every_writer_of_its_batch() {
        let (_dir, path, shared) = shared();
        // A deferred foreign key fails at COMMIT, not at the insert.
        shared
            .read()
            .unwrap()
            .execute_batch(
                "PRAGMA foreign_keys = ON;
                 CREATE TABLE p (id INTEGER PRIMARY KEY);
                 CREATE TABLE c (p INTEGER REFERENCES p (id) DEFERRABLE INITIALLY DEFERRED);",
            )
            .unwrap();
        let result = shared.write(
            |_| Ok(()),
            |e| e,
            |conn| {
                conn.execute("INSERT INTO t (v) VALUES (1)", [])?;
                conn.execute("INSERT INTO c (p) VALUES (42)", [])
            },
        );
        assert!(result.is_err(), "the commit should have failed");
        assert_eq!(count(&path), 0, "nothing of a failed commit is kept");
        shared
            .write(
                |_| Ok(()),
                |e| e,
                |conn| conn.execute("INSERT INTO t (v) VALUES (2)", []),
            )
            .unwrap();
        assert_eq!(count(&path), 1);
    }
}
