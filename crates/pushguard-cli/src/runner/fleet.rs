//! This runner's place on a shared schedule (a `postgres://` state): its
//! name, its heartbeat, the claim it makes on each fire before running it,
//! and the fires it takes over from runners that stopped heartbeating.
//!
//! While the database cannot be reached the runner keeps its schedule and
//! runs every fire itself, unclaimed (runners sharing the schedule may then
//! each run it): a result is never given up for want of a claim. Runs that
//! could not be recorded meanwhile have their fires closed at the first
//! heartbeat that reaches the database again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use pushguard::fleet::{Claim, Fire, TakenOver};
use pushguard::prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use pushguard::{Outcome, State};

use crate::errln;

/// The runner's membership in a shared schedule.
pub(crate) struct Fleet {
    pub id: String,
    pub lease: Duration,
    /// Since when heartbeats have been reaching the database; `None` while
    /// they do not (or before the first one).
    up_since: Mutex<Option<Instant>>,
    /// Fires whose runs ended without their record (closed once the
    /// database answers again).
    unrecorded: Mutex<Vec<(Fire, Outcome)>>,
    /// `pushguard_runner_fires_total{job, claim}`.
    fires: IntCounterVec,
}

/// How a fire was decided, as `pushguard_runner_fires_total{claim}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// This runner claimed it and runs it.
    Won,
    /// Another runner has it.
    Taken,
    /// Claimed, but the job forbids overlap and a run is going on.
    Overlap,
    /// The database could not be reached: run here, unclaimed.
    Unclaimed,
    /// Taken over from a runner that stopped heartbeating.
    TakenOver,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Decision::Won => "won",
            Decision::Taken => "taken",
            Decision::Overlap => "overlap",
            Decision::Unclaimed => "unclaimed",
            Decision::TakenOver => "taken_over",
        }
    }
}

/// `HOST:PID`, the default runner name.
pub(crate) fn default_id() -> String {
    format!("{}:{}", pushguard::fleet::host_name(), std::process::id())
}

impl Fleet {
    pub(crate) fn new(id: String, lease: Duration, registry: &Registry) -> Fleet {
        let fires = IntCounterVec::new(
            Opts::new(
                "pushguard_runner_fires_total",
                "Scheduled fires seen by this runner on a shared schedule, by job and by how the claim went (won, taken, overlap, unclaimed, taken_over).",
            ),
            &["job", "claim"],
        )
        .expect("static counter options are valid");
        let _ = registry.register(Box::new(fires.clone()));
        Fleet {
            id,
            lease,
            up_since: Mutex::new(None),
            unrecorded: Mutex::new(Vec::new()),
            fires,
        }
    }

    /// Whether the last heartbeat reached the database: only then are
    /// fires claimed.
    pub(crate) fn is_up(&self) -> bool {
        lock(&self.up_since).is_some()
    }

    pub(crate) fn count(&self, job: &str, decision: Decision) {
        self.fires
            .with_label_values(&[job, decision.as_str()])
            .inc();
    }

    /// Claims the fire of `job` due at `due` (blocking: call it off the
    /// scheduler's threads). `None`: the database could not be reached,
    /// run unclaimed.
    pub(crate) fn claim(
        &self,
        state: &State,
        job: &str,
        due: std::time::SystemTime,
        forbid_overlap: bool,
    ) -> (Decision, Option<Fire>) {
        let fire = Fire::new(job, due, self.id.clone());
        let decision = match state.claim(&fire, forbid_overlap) {
            Ok(Claim::Won) => Decision::Won,
            Ok(Claim::Overlap { by }) => {
                errln!(
                    "[{job}] still running on runner {by}: this run is skipped (overlap = forbid)"
                );
                Decision::Overlap
            }
            Ok(Claim::Taken { .. }) => Decision::Taken,
            Ok(_) => Decision::Taken,
            Err(error) => {
                self.down(&error);
                Decision::Unclaimed
            }
        };
        self.count(job, decision);
        match decision {
            Decision::Won | Decision::Overlap => (decision, Some(fire)),
            _ => (decision, None),
        }
    }

    /// Remembers a fire whose run could not be recorded.
    pub(crate) fn unrecorded(&self, fire: Fire, outcome: Outcome) {
        lock(&self.unrecorded).push((fire, outcome));
    }

    fn down(&self, error: &dyn std::fmt::Display) {
        if lock(&self.up_since).take().is_some() {
            errln!(
                "pushguard: warning: the shared schedule cannot be reached ({error}); \
                 running every fire here, unclaimed, until it answers again"
            );
        }
    }

    /// Registers this runner (blocking). Returns the fires a former process
    /// under the same name left running.
    pub(crate) fn join(&self, state: &State) -> Result<Vec<TakenOver>, pushguard::StateError> {
        let taken = state.join_schedule(&self.id, self.lease)?;
        *lock(&self.up_since) = Some(Instant::now());
        Ok(taken)
    }

    /// One heartbeat (blocking): says this runner is alive, closes the fires
    /// of unrecorded runs, and — once the database has answered for a whole
    /// lease, so that every live runner had the time to heartbeat again
    /// after an outage — takes over the fires of runners whose lease ran
    /// out.
    pub(crate) fn beat(&self, state: &State) -> Vec<TakenOver> {
        let take_over = lock(&self.up_since).is_some_and(|since| since.elapsed() >= self.lease);
        match state.heartbeat(&self.id, self.lease, take_over) {
            Ok(taken) => {
                {
                    let mut up = lock(&self.up_since);
                    if up.is_none() {
                        errln!("pushguard: the shared schedule answers again: claiming fires");
                        *up = Some(Instant::now());
                    }
                }
                let pending = std::mem::take(&mut *lock(&self.unrecorded));
                for (fire, outcome) in pending {
                    if let Err(error) = state.end_fire(&fire, outcome.as_str()) {
                        lock(&self.unrecorded).push((fire, outcome));
                        self.down(&error);
                        break;
                    }
                }
                for taken in &taken {
                    self.count(taken.fire.job(), Decision::TakenOver);
                }
                taken
            }
            Err(error) => {
                self.down(&error);
                Vec::new()
            }
        }
    }

    /// Runners on this schedule as `/metrics` shows them.
    pub(crate) fn info(registry: &Registry, id: &str, shared: bool) {
        let info = IntGaugeVec::new(
            Opts::new(
                "pushguard_runner_info",
                "This runner's name and whether it shares its schedule (1).",
            ),
            &["runner", "schedule"],
        )
        .expect("static gauge options are valid");
        info.with_label_values(&[id, if shared { "shared" } else { "local" }])
            .set(1);
        let _ = registry.register(Box::new(info));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
