//! Runners that stand in for each other: several `pushguard run` processes
//! on one PostgreSQL state share one schedule.
//!
//! Every scheduled fire of a job — the job's name and the time it was due —
//! is claimed by one runner before it starts, with an insert only one can
//! win. A runner keeps its claims alive by heartbeating; the claims of a
//! runner that stopped heartbeating for longer than its lease are taken over
//! by another one, which then runs or skips them per the job's catch-up
//! policy. A run's history row closes its fire in the same transaction, so a
//! recorded run is never taken over and run again. The clock that decides
//! whether a lease has run out is the database server's, so the hosts'
//! clocks need not agree.
//!
//! Only a state on PostgreSQL shares a schedule; a state file is one
//! runner's alone (the runner holds a lock beside it).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[cfg(feature = "postgres")]
use super::lock;
use super::{Backend, State, StateError};

/// Runs the SQL of the shared schedule on a PostgreSQL state; without
/// PostgreSQL support every state is a file, which shares no schedule.
macro_rules! on_database {
    ($state:expr, ($($arg:ident),*), |$client:ident, $url:ident| $body:expr) => {{
        #[cfg(feature = "postgres")]
        {
            $state.on_database(|$client, $url| $body)
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = ($($arg,)*);
            Err($state.unshared())
        }
    }};
}

/// The name of this host as the state records it with runs and runners:
/// `HOSTNAME`, else the kernel's host name.
pub fn host_name() -> &'static str {
    super::host_name()
}

/// One fire of a job: its name and the time it was due, and the runner that
/// holds (or asks for) it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fire {
    job: String,
    scheduled_ms: i64,
    runner: String,
}

impl Fire {
    /// The fire of `job` due at `scheduled`, for `runner`. Fires are told
    /// apart to the millisecond.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// let due = UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
    /// let fire = pushguard::fleet::Fire::new("backup", due, "runner-a");
    /// assert_eq!(fire.scheduled(), due);
    /// assert_eq!(fire.job(), "backup");
    /// ```
    pub fn new(job: impl Into<String>, scheduled: SystemTime, runner: impl Into<String>) -> Fire {
        let ms = match scheduled.duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
        };
        Fire {
            job: job.into(),
            scheduled_ms: ms,
            runner: runner.into(),
        }
    }

    #[cfg(feature = "postgres")]
    pub(crate) fn from_parts(job: String, scheduled_ms: i64, runner: String) -> Fire {
        Fire {
            job,
            scheduled_ms,
            runner,
        }
    }

    /// The job's name.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// When the fire was due.
    pub fn scheduled(&self) -> SystemTime {
        let ms = Duration::from_millis(self.scheduled_ms.unsigned_abs());
        if self.scheduled_ms >= 0 {
            UNIX_EPOCH + ms
        } else {
            UNIX_EPOCH - ms
        }
    }

    /// When the fire was due, in milliseconds since the Unix epoch.
    pub fn scheduled_ms(&self) -> i64 {
        self.scheduled_ms
    }

    /// The runner that holds the fire.
    pub fn runner(&self) -> &str {
        &self.runner
    }
}

/// The answer to [`State::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// This runner holds the fire now: run it, and close it with the run's
    /// record ([`JobGuard::set_fire`](crate::JobGuard::set_fire)).
    Won,
    /// Another runner holds (or held) the fire: leave it.
    Taken {
        /// That runner.
        by: String,
    },
    /// This runner holds the fire, but a run of the job is still going on
    /// and the job forbids overlap: record the fire as skipped.
    Overlap {
        /// The runner whose run is still going on.
        by: String,
    },
}

/// A fire taken over from a runner that stopped heartbeating.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TakenOver {
    /// The fire, held by the runner that took it over now.
    pub fire: Fire,
    /// The runner that held it and stopped heartbeating.
    pub from: String,
}

/// The newest fire of a job, as [`State::last_fires`] lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FireStatus {
    /// The fire and the runner that holds or held it.
    pub fire: Fire,
    /// `running` until its run is recorded, then `done`.
    pub status: String,
    /// The run's outcome once done (`success`, `failure`, `skipped`, …).
    pub outcome: Option<String>,
    /// The runner it was taken over from, if it was.
    pub taken_from: Option<String>,
}

impl State {
    /// Whether runners on this state share one schedule: true on
    /// PostgreSQL, false for a state file.
    pub fn shares_schedule(&self) -> bool {
        match &self.inner.backend {
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => true,
            Backend::Sqlite(_) => false,
        }
    }

    fn unshared(&self) -> StateError {
        StateError::Unshared {
            path: self.inner.path.clone(),
        }
    }

    /// Runs `f` on the PostgreSQL connection (with the masked URL for its
    /// messages); a state file shares no schedule.
    #[cfg(feature = "postgres")]
    fn on_database<T>(
        &self,
        f: impl FnOnce(&mut ::postgres::Client, &str) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        match &self.inner.backend {
            Backend::Postgres(pg) => {
                let mut pg = lock(pg);
                let url = pg.masked().to_owned();
                f(pg.client()?, &url)
            }
            Backend::Sqlite(_) => Err(self.unshared()),
        }
    }

    /// Registers `runner` (or says it is alive again) with a lease of
    /// `lease`, and takes back the fires a former process under the same
    /// name left running: they are returned to be run or skipped.
    pub fn join_schedule(
        &self,
        runner: &str,
        lease: Duration,
    ) -> Result<Vec<TakenOver>, StateError> {
        on_database!(self, (runner, lease), |client, url| {
            super::postgres::fleet::join(client, url, runner, lease)
        })
    }

    /// Refuses the runner name `runner` when another live process holds it
    /// ([`StateError::RunnerInUse`]); a runner checks this before it
    /// starts.
    pub fn check_runner_name(&self, runner: &str) -> Result<(), StateError> {
        on_database!(self, (runner), |client, url| {
            super::postgres::fleet::check_name(client, url, runner)
        })
    }

    /// Says `runner` is alive for another `lease`; with `take_over`, also
    /// takes over the running fires of runners whose lease ran out and
    /// returns them, to be run or skipped per the job's catch-up policy.
    pub fn heartbeat(
        &self,
        runner: &str,
        lease: Duration,
        take_over: bool,
    ) -> Result<Vec<TakenOver>, StateError> {
        on_database!(self, (runner, lease, take_over), |client, url| {
            super::postgres::fleet::heartbeat(client, url, runner, lease, take_over)
        })
    }

    /// Claims `fire` for its runner: only one claim of a fire ever wins.
    /// With `forbid_overlap`, a fire claimed while another fire of the job
    /// runs on a live runner is answered [`Claim::Overlap`].
    pub fn claim(&self, fire: &Fire, forbid_overlap: bool) -> Result<Claim, StateError> {
        on_database!(self, (fire, forbid_overlap), |client, url| {
            super::postgres::fleet::claim(client, url, fire, forbid_overlap)
        })
    }

    /// Closes a fire whose run was not recorded with it (the state could not
    /// be written when the run ended): `outcome` says how it went.
    pub fn end_fire(&self, fire: &Fire, outcome: &str) -> Result<(), StateError> {
        on_database!(self, (fire, outcome), |client, url| {
            super::postgres::fleet::end(client, url, fire, outcome)
        })
    }

    /// Removes `runner` from the schedule at shutdown; fires it still held
    /// would be taken over at once.
    pub fn leave_schedule(&self, runner: &str) -> Result<(), StateError> {
        on_database!(self, (runner), |client, url| {
            super::postgres::fleet::leave(client, url, runner)
        })
    }

    /// The newest fire of every job, by job name.
    pub fn last_fires(&self) -> Result<Vec<FireStatus>, StateError> {
        on_database!(self, (), |client, url| {
            super::postgres::fleet::last(client, url)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_keep_their_time_to_the_millisecond() {
        let due = UNIX_EPOCH + Duration::from_millis(1_700_000_000_789);
        let fire = Fire::new("a", due, "r");
        assert_eq!(fire.scheduled_ms(), 1_700_000_000_789);
        assert_eq!(fire.scheduled(), due);
        let early = UNIX_EPOCH - Duration::from_millis(5);
        assert_eq!(Fire::new("a", early, "r").scheduled(), early);
    }

    #[test]
    fn a_state_file_does_not_share_a_schedule() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = State::open(dir.path().join("state.db")).expect("state");
        assert!(!state.shares_schedule());
        let fire = Fire::new("a", SystemTime::now(), "r");
        let error = state.claim(&fire, false).expect_err("refused");
        assert!(error.to_string().contains("postgres://"), "{error}");
        assert!(
            error
                .to_string()
                .contains(&dir.path().display().to_string()),
            "{error}"
        );
    }
}
