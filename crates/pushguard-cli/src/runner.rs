//! The cron-style runner: schedules the jobs of `jobs/*.toml`, applies their
//! policies and runs every run through the same guard as the library and
//! `pushguard exec`.
//!
//! Each job has its own timer task that sleeps until the job's next fire time
//! (computed in the job's time zone, DST included) — no polling, so an idle
//! runner costs nothing and a run starts within milliseconds of its time.
mod builtin;
mod fleet;
mod http;
mod job;
mod lock;
mod page;

pub use lock::RunnerLock;

use crate::errln;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{CatchUp, JobAction, JobSpec, Overlap, RunnerConfig};
use crate::supervisor::{self, Ending, Output, Spec, Tail};
use pushguard::Gateway;
use pushguard::State;
use pushguard::Tracing;
use pushguard::{JobRun, Outcome};

/// Grace between SIGTERM and SIGKILL when a run is stopped (shutdown,
/// `replace` overlap, timeout).
const KILL_GRACE: Duration = Duration::from_secs(10);

/// How long a run's push waits for a turn among its gateway client's
/// requests in flight. A run whose push gets none is left in the outbox and
/// delivered first by the next push to its group or the drain: a gateway
/// slower than the runs fills the outbox on disk, not the runner's threads.
pub const PUSH_TURN_WAIT: Duration = Duration::from_millis(250);

/// What the runner knows of one job's last run.
#[derive(Debug, Clone)]
pub(crate) struct LastRun {
    pub started: SystemTime,
    pub ended: SystemTime,
    pub outcome: Outcome,
    pub exit_code: i32,
    pub attempts: u32,
    pub tail: String,
}

pub(crate) struct Slot {
    job: RwLock<Arc<JobSpec>>,
    /// Where its runs go: the runner's sink, or the job's own `[sink]`.
    gateway: RwLock<Gateway>,
    pub running: Mutex<Vec<Running>>,
    pub last: Mutex<Option<LastRun>>,
    pub next: Mutex<Option<DateTime<Utc>>>,
    timer: Mutex<Option<JoinHandle<()>>>,
}

impl Slot {
    pub(crate) fn job(&self) -> Arc<JobSpec> {
        self.job.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn gateway(&self) -> Gateway {
        self.gateway
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn stop_timer(&self) {
        if let Some(timer) = self.timer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            timer.abort();
        }
    }
}

pub(crate) struct Running {
    id: u64,
    stop: watch::Sender<bool>,
    done: watch::Receiver<bool>,
}

/// What a [`Runner::reload`] changed, job by job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reload {
    /// Jobs new in the files: scheduled from now on.
    pub added: usize,
    /// Jobs whose files changed: rescheduled with the new definition.
    pub changed: usize,
    /// Jobs whose files did not change: their timers go on untouched.
    pub unchanged: usize,
    /// Jobs whose files are gone: no longer scheduled.
    pub removed: usize,
}

/// Shared by the timers, the HTTP handlers and the signal handling.
pub(crate) struct Shared {
    pub settings: RunnerConfig,
    pub gateway: Gateway,
    pub state: State,
    pub tracing: Option<Tracing>,
    pub slots: RwLock<BTreeMap<String, Arc<Slot>>>,
    pub metrics: http::RunnerMetrics,
    pub builtins: builtin::Builtins,
    /// This runner's name (on a shared schedule and in `/api/jobs`).
    pub runner_id: String,
    /// Its place on a shared schedule, for a database state.
    pub fleet: Option<fleet::Fleet>,
    shutdown: watch::Sender<bool>,
    next_id: AtomicU64,
    /// Pushes of ended runs still going on beside the schedule.
    pushes: Mutex<Vec<JoinHandle<()>>>,
}

/// The scheduler of `pushguard run`; see the module docs. Cheap to clone.
#[derive(Clone)]
pub struct Runner {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("listen", &self.shared.settings.listen)
            .finish_non_exhaustive()
    }
}

impl Runner {
    /// A runner for `jobs`, pushing through `gateway` and `state`.
    pub fn new(
        settings: RunnerConfig,
        gateway: Gateway,
        state: State,
        tracing: Option<Tracing>,
        jobs: Vec<JobSpec>,
    ) -> Runner {
        let (shutdown, _) = watch::channel(false);
        let builtins = builtin::Builtins::new(&store_dir(&state));
        let metrics = http::RunnerMetrics::new();
        let runner_id = settings.runner_id.clone().unwrap_or_else(fleet::default_id);
        let shares = state.shares_schedule();
        fleet::Fleet::info(metrics.registry(), &runner_id, shares);
        let fleet = shares
            .then(|| fleet::Fleet::new(runner_id.clone(), settings.lease, metrics.registry()));
        let runner = Runner {
            shared: Arc::new(Shared {
                settings,
                gateway,
                state,
                tracing,
                slots: RwLock::new(BTreeMap::new()),
                metrics,
                builtins,
                runner_id,
                fleet,
                shutdown,
                next_id: AtomicU64::new(1),
                pushes: Mutex::new(Vec::new()),
            }),
        };
        for job in jobs {
            runner.insert(job);
        }
        runner
    }

    /// On a shared schedule an `@every` schedule counts from the Unix
    /// epoch rather than from each runner's start, so that every runner
    /// computes the same fire times.
    fn placed(&self, mut job: JobSpec) -> JobSpec {
        if self.shared.fleet.is_some() {
            job.schedule = job.schedule.with_anchor(DateTime::<Utc>::UNIX_EPOCH);
        }
        job
    }

    /// The gateway of `job`'s runs: the runner's, or one for the job's own
    /// `[sink]` with the runner's credentials and deadlines (the runner's,
    /// with a warning, if that cannot be built).
    fn gateway_for(&self, job: &JobSpec) -> Gateway {
        let Some(sink) = &job.sink else {
            return self.shared.gateway.clone();
        };
        match sink
            .apply(&self.shared.settings.gateway)
            .builder()
            .and_then(|b| b.turn_wait(PUSH_TURN_WAIT).build())
        {
            Ok(gateway) => gateway,
            Err(error) => {
                errln!(
                    "[{}] warning: its [sink] cannot be used ({error}); its runs go to the runner's sink",
                    job.name
                );
                self.shared.gateway.clone()
            }
        }
    }

    fn insert(&self, job: JobSpec) -> Arc<Slot> {
        let job = self.placed(job);
        let name = job.name.clone();
        let slot = Arc::new(Slot {
            gateway: RwLock::new(self.gateway_for(&job)),
            job: RwLock::new(Arc::new(job)),
            running: Mutex::new(Vec::new()),
            last: Mutex::new(None),
            next: Mutex::new(None),
            timer: Mutex::new(None),
        });
        self.shared
            .slots
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, slot.clone());
        slot
    }

    /// Names of the configured jobs.
    pub fn job_names(&self) -> Vec<String> {
        self.shared
            .slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// The definition of `name`, if configured.
    pub fn job(&self, name: &str) -> Option<Arc<JobSpec>> {
        self.slot(name).map(|slot| slot.job())
    }

    /// Outcome and exit code of the last run of `name` in this process.
    pub fn last_run(&self, name: &str) -> Option<(Outcome, i32)> {
        let slot = self.slot(name)?;
        let last = slot.last.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref().map(|l| (l.outcome, l.exit_code))
    }

    /// Serves the HTTP endpoint on `listener`, delivers the outbox, catches up
    /// missed runs, starts every timer and the periodic outbox drain, and
    /// returns when [`shutdown`](Self::shutdown) has finished.
    pub async fn serve(&self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let local = listener.local_addr()?;
        let mut stopped = self.shared.shutdown.subscribe();
        let app = http::router(self.shared.clone(), local);
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await
        });
        errln!(
            "pushguard: runner listening on http://{local} with {} job(s)",
            self.job_names().len()
        );

        // On a shared schedule: join it (taking back what a former process
        // under this name left running) and heartbeat from now on.
        let heartbeat = self.join_schedule().await;
        // Deliver what earlier runs left in the outbox before anything new.
        self.drain_outbox().await;
        // Every job's newest run in one query, not one per job.
        let last_starts = self.last_starts().await;
        let slots = self.slots();
        let mut scheduled = 0;
        for slot in &slots {
            let job = slot.job();
            if job.enabled {
                self.catch_up(slot, last_starts.get(&job.name).copied())
                    .await;
                self.start_timer(slot.clone());
                scheduled += 1;
            }
        }
        errln!(
            "pushguard: runner ready: {scheduled} of {} job(s) scheduled",
            slots.len()
        );
        if std::process::id() == 1 {
            self.start_reaper();
        }
        let drain = {
            let this = self.clone();
            self.every(self.shared.settings.outbox_drain_interval, move || {
                let this = this.clone();
                async move { this.drain_outbox().await }
            })
        };
        let mut stopped = self.shared.shutdown.subscribe();
        let _ = stopped.wait_for(|stop| *stop).await;
        drain.abort();
        if let Some(heartbeat) = heartbeat {
            heartbeat.abort();
        }
        let _ = server.await;
        Ok(())
    }

    /// On a shared schedule, refuses to go on when another live runner
    /// uses this runner's name (blocking: call it before serving). Says why.
    pub fn check_runner_name(&self) -> Result<(), String> {
        if self.shared.fleet.is_none() {
            return Ok(());
        }
        match self.shared.state.check_runner_name(&self.shared.runner_id) {
            Err(error @ pushguard::StateError::RunnerInUse { .. }) => Err(error.to_string()),
            // Unreachable now: the runner starts and claims once it answers.
            _ => Ok(()),
        }
    }

    /// Whether this runner shares its schedule with others (a database
    /// state): it then claims every fire before running it.
    pub fn shares_schedule(&self) -> bool {
        self.shared.fleet.is_some()
    }

    /// Joins the shared schedule and starts the heartbeat; `None` for a
    /// state file.
    async fn join_schedule(&self) -> Option<JoinHandle<()>> {
        let fleet = self.shared.fleet.as_ref()?;
        let this = self.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let fleet = this
                .shared
                .fleet
                .as_ref()
                .map(|f| f.join(&this.shared.state));
            (this, fleet)
        })
        .await;
        if let Ok((this, Some(result))) = joined {
            match result {
                Ok(taken) => {
                    errln!(
                        "pushguard: runner {} shares its schedule through {}",
                        fleet.id,
                        this.state_path().display()
                    );
                    this.take_over(taken);
                }
                Err(error) => errln!(
                    "pushguard: warning: cannot join the shared schedule ({error}); \
                     running every fire here, unclaimed, until it answers"
                ),
            }
        }
        let this = self.clone();
        Some(self.every(fleet.lease / 3, move || {
            let this = this.clone();
            async move {
                let beat = this.clone();
                let taken = tokio::task::spawn_blocking(move || {
                    beat.shared
                        .fleet
                        .as_ref()
                        .map(|f| f.beat(&beat.shared.state))
                        .unwrap_or_default()
                })
                .await
                .unwrap_or_default();
                this.take_over(taken);
            }
        }))
    }

    /// Runs `task` every `period` until shutdown.
    fn every<F, Fut>(&self, period: Duration, mut task: F) -> JoinHandle<()>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let mut stopped = self.shared.shutdown.subscribe();
        tokio::spawn(async move {
            loop {
                let stopping = tokio::select! {
                    () = tokio::time::sleep(period) => false,
                    _ = stopped.wait_for(|stop| *stop) => true,
                };
                if stopping {
                    break;
                }
                task().await;
            }
        })
    }

    /// Fires taken over from a runner that stopped heartbeating: run now
    /// with `catch_up = "once"`, else counted as
    /// `job_missed_runs_total{reason="runner_lost"}`.
    fn take_over(&self, taken: Vec<pushguard::fleet::TakenOver>) {
        for taken in taken {
            let fire = taken.fire;
            let due = DateTime::<Utc>::from(fire.scheduled());
            let Some(slot) = self.slot(fire.job()) else {
                // The job is gone from this runner's files: close its fire.
                let state = self.shared.state.clone();
                drop(tokio::task::spawn_blocking(move || {
                    state.end_fire(&fire, Outcome::Skipped.as_str())
                }));
                continue;
            };
            let job = slot.job();
            match job.catch_up {
                CatchUp::Once => {
                    errln!(
                        "[{}] the run due at {} was taken over from runner {}, which stopped heartbeating: running it now",
                        job.name,
                        due.to_rfc3339(),
                        taken.from
                    );
                    drop(self.fire_claimed(slot, Some(due), Some(fire)));
                }
                _ => {
                    errln!(
                        "[{}] the run due at {} was taken over from runner {}, which stopped heartbeating: counted as missed (runner_lost)",
                        job.name,
                        due.to_rfc3339(),
                        taken.from
                    );
                    drop(self.record_skip(slot, "runner_lost", 1, Some(fire)));
                }
            }
        }
    }

    /// As PID 1, reaps orphaned processes on every SIGCHLD (and once a
    /// second, in case a signal came while a command of ours was the first
    /// zombie in line).
    fn start_reaper(&self) {
        let mut stopped = self.shared.shutdown.subscribe();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut child) = signal(SignalKind::child()) else {
                return;
            };
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                let stopping = tokio::select! {
                    _ = child.recv() => false,
                    _ = tick.tick() => false,
                    _ = stopped.wait_for(|stop| *stop) => true,
                };
                if stopping {
                    break;
                }
                supervisor::reap_orphans();
            }
        });
    }

    /// Stops every running run now (SIGTERM to its process group, SIGKILL
    /// after the grace period) and waits until each is pushed and recorded,
    /// as `pushguard trigger` does when it is interrupted. Scheduling goes on.
    pub async fn stop_runs(&self) {
        let mut waits = Vec::new();
        for slot in self.slots() {
            for running in slot
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
            {
                waits.push((running.stop.clone(), running.done.clone()));
            }
        }
        for (stop, _) in &waits {
            let _ = stop.send(true);
        }
        for (_, mut done) in waits {
            let _ = done.wait_for(|d| *d).await;
        }
    }

    /// Stops scheduling, gives running jobs the grace period, stops the rest
    /// (their process groups), waits until every ended run is pushed and
    /// recorded, flushes spans, and ends [`serve`](Self::serve).
    pub async fn shutdown(&self) {
        for slot in self.slots() {
            slot.stop_timer();
        }
        let deadline = tokio::time::Instant::now() + self.shared.settings.shutdown_grace;
        let mut waits = Vec::new();
        for slot in self.slots() {
            for running in slot
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
            {
                waits.push((running.stop.clone(), running.done.clone()));
            }
        }
        for (_, done) in &mut waits {
            let _ = tokio::time::timeout_at(deadline, done.wait_for(|d| *d)).await;
        }
        for (stop, mut done) in waits {
            let _ = stop.send(true);
            let _ = done.wait_for(|d| *d).await;
        }
        self.wait_for_pushes().await;
        if self.shared.fleet.is_some() {
            let state = self.shared.state.clone();
            let id = self.shared.runner_id.clone();
            let _ = tokio::task::spawn_blocking(move || state.leave_schedule(&id)).await;
        }
        if let Some(tracing) = &self.shared.tracing {
            let tracing = tracing.clone();
            let _ = tokio::task::spawn_blocking(move || tracing.shutdown()).await;
        }
        let _ = self.shared.shutdown.send(true);
    }

    /// Takes new job definitions: new jobs start, removed jobs stop being
    /// scheduled (a running run finishes), changed jobs are rescheduled and
    /// use the new definition from their next run on. An unchanged job keeps
    /// its timer, so a reload never delays or drops its next run.
    ///
    /// `jobs` is taken one at a time: a job read from a file that has not
    /// changed is dropped at once, so that a reload of thousands of files
    /// holds only the new definitions.
    pub fn reload(&self, jobs: impl IntoIterator<Item = JobSpec>) -> Reload {
        let jobs = jobs.into_iter();
        let mut reload = Reload::default();
        let mut seen = HashSet::with_capacity(jobs.size_hint().0);
        for job in jobs {
            let job = self.placed(job);
            seen.insert(job.name.clone());
            let enabled = job.enabled;
            let slot = match self.slot(&job.name) {
                Some(slot) if *slot.job() == job => {
                    reload.unchanged += 1;
                    continue;
                }
                Some(slot) => {
                    *slot.gateway.write().unwrap_or_else(|p| p.into_inner()) =
                        self.gateway_for(&job);
                    *slot.job.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(job);
                    reload.changed += 1;
                    slot
                }
                None => {
                    reload.added += 1;
                    self.insert(job)
                }
            };
            if enabled {
                self.start_timer(slot);
            } else {
                slot.stop_timer();
            }
        }
        let removed: Vec<Arc<Slot>> = {
            let mut slots = self.shared.slots.write().unwrap_or_else(|p| p.into_inner());
            let gone: Vec<String> = slots
                .keys()
                .filter(|name| !seen.contains(*name))
                .cloned()
                .collect();
            gone.iter().filter_map(|name| slots.remove(name)).collect()
        };
        for slot in &removed {
            slot.stop_timer();
        }
        reload.removed = removed.len();
        self.shared.metrics.reloaded();
        reload
    }

    /// Starts one run of `name` now (overlap policy applies), as
    /// `pushguard trigger` and the HTTP trigger do; `None` when there is no
    /// such job.
    pub fn trigger(&self, name: &str) -> Option<JoinHandle<()>> {
        let slot = self.slot(name)?;
        Some(self.fire(slot, None))
    }

    /// The state file this runner records into.
    pub fn state_path(&self) -> &std::path::Path {
        self.shared.state.path()
    }

    fn track_push(&self, push: JoinHandle<()>) {
        let mut pushes = self.shared.pushes.lock().unwrap_or_else(|p| p.into_inner());
        pushes.retain(|p| !p.is_finished());
        pushes.push(push);
    }

    /// Waits for the pushes of ended runs still going on (each is bounded by
    /// the push deadline): on shutdown and before `pushguard trigger` exits.
    pub async fn wait_for_pushes(&self) {
        loop {
            let pending: Vec<JoinHandle<()>> =
                std::mem::take(&mut *self.shared.pushes.lock().unwrap_or_else(|p| p.into_inner()));
            if pending.is_empty() {
                return;
            }
            for push in pending {
                let _ = push.await;
            }
        }
    }

    /// Whether `name` is running now with `overlap = "forbid"`, so a trigger
    /// would be skipped.
    pub fn running_and_forbidding(&self, name: &str) -> bool {
        self.slot(name).is_some_and(|slot| {
            slot.job().overlap == Overlap::Forbid
                && !slot
                    .running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_empty()
        })
    }

    fn slots(&self) -> Vec<Arc<Slot>> {
        self.shared
            .slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn slot(&self, name: &str) -> Option<Arc<Slot>> {
        self.shared
            .slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    async fn drain_outbox(&self) {
        let state = self.shared.state.clone();
        // The runner's sink and every job's own, once each.
        let mut gateways = vec![self.shared.gateway.clone()];
        for slot in self.slots() {
            let gateway = slot.gateway();
            if !gateways.iter().any(|g| g.identity() == gateway.identity()) {
                gateways.push(gateway);
            }
        }
        // With the remote-write sink, each job's newest state is written
        // again too, so it stays within the receiver's lookback window.
        let results = tokio::task::spawn_blocking(move || {
            gateways
                .iter()
                .map(|gateway| {
                    let flushed = state.flush(gateway);
                    let _ = state.refresh(gateway);
                    flushed
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for report in results.iter().flatten() {
            if report.delivered + report.rejected + report.deferred > 0 {
                errln!(
                    "pushguard: outbox: delivered {}, refused {}, left for later {}",
                    report.delivered,
                    report.rejected,
                    report.deferred
                );
            }
        }
    }

    /// The start of every job's newest recorded run (none when the state
    /// cannot say, with a warning: catch-up then counts nothing).
    async fn last_starts(&self) -> HashMap<String, f64> {
        let state = self.shared.state.clone();
        match tokio::task::spawn_blocking(move || state.last_starts()).await {
            Ok(Ok(starts)) => starts,
            Ok(Err(error)) => {
                errln!(
                    "pushguard: warning: cannot read the last runs ({error}); runs missed while the runner was down are not counted"
                );
                HashMap::new()
            }
            Err(_) => HashMap::new(),
        }
    }

    /// Runs missed while the runner was down (since the job's last recorded
    /// start, `last`) count as `job_missed_runs_total{reason="downtime"}`;
    /// with `catch_up = "once"` one run starts now.
    async fn catch_up(&self, slot: &Arc<Slot>, last: Option<f64>) {
        let job = slot.job();
        let Some(last) = last else { return };
        let secs = last.floor();
        let nanos = ((last - secs) * 1e9) as u32;
        let Some(since) = DateTime::<Utc>::from_timestamp(secs as i64, nanos) else {
            return;
        };
        let missed = job.schedule.fires_between(since, Utc::now(), 100_000);
        if missed.is_empty() {
            return;
        }
        let count = missed.len() as u64;
        errln!(
            "[{}] {count} run(s) missed while the runner was down",
            job.name
        );
        // On a shared schedule one runner alone counts (and runs) them:
        // the one that claims the newest missed fire.
        let mut fire = None;
        if let (Some(fleet), Some(last)) = (&self.shared.fleet, missed.last())
            && fleet.is_up()
        {
            let this = self.clone();
            let (name, due, forbid) = (job.name.clone(), (*last).into(), false);
            let claimed = tokio::task::spawn_blocking(move || {
                this.shared
                    .fleet
                    .as_ref()
                    .map(|f| f.claim(&this.shared.state, &name, due, forbid))
            })
            .await;
            match claimed {
                Ok(Some((fleet::Decision::Won, claimed))) => fire = claimed,
                Ok(Some((fleet::Decision::Unclaimed, _))) => {}
                _ => return,
            }
        }
        match job.catch_up {
            CatchUp::Once => {
                // Detached: the run goes on by itself.
                drop(self.spawn_run(
                    slot.clone(),
                    missed.last().copied(),
                    Some(("downtime", count)),
                    fire,
                ));
            }
            _ => {
                drop(self.record_skip(slot.clone(), "downtime", count, fire));
            }
        }
    }

    fn start_timer(&self, slot: Arc<Slot>) {
        let this = self.clone();
        let timer_slot = slot.clone();
        // The first fire time is known before the timer task runs, so that
        // a runner that says it is ready lists every job's next run.
        let mut next = slot.job().schedule.next_after(Utc::now());
        *slot.next.lock().unwrap_or_else(|p| p.into_inner()) = next;
        let task = tokio::spawn(async move {
            while let Some(at) = next {
                let job = timer_slot.job();
                let wait =
                    (at - Utc::now()).to_std().unwrap_or_default() + job::jitter_sample(&job);
                tokio::time::sleep(wait).await;
                this.fire(timer_slot.clone(), Some(at));
                next = timer_slot.job().schedule.next_after(Utc::now());
                *timer_slot.next.lock().unwrap_or_else(|p| p.into_inner()) = next;
            }
        });
        if let Some(old) = slot
            .timer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(task)
        {
            old.abort();
        }
    }

    /// Starts a fire: on a shared schedule it is claimed first, and only
    /// the runner that wins it runs it (or records it skipped).
    fn fire(&self, slot: Arc<Slot>, scheduled: Option<DateTime<Utc>>) -> JoinHandle<()> {
        match &self.shared.fleet {
            Some(fleet) if fleet.is_up() => {
                let this = self.clone();
                tokio::spawn(async move {
                    let job = slot.job();
                    let due: SystemTime = scheduled.map_or_else(SystemTime::now, Into::into);
                    let forbid = job.overlap == Overlap::Forbid;
                    let claimer = this.clone();
                    let claimed = tokio::task::spawn_blocking(move || {
                        claimer
                            .shared
                            .fleet
                            .as_ref()
                            .map(|f| f.claim(&claimer.shared.state, &job.name, due, forbid))
                    })
                    .await;
                    let run = match claimed {
                        Ok(Some((fleet::Decision::Won, fire))) => {
                            this.fire_claimed(slot, scheduled, fire)
                        }
                        Ok(Some((fleet::Decision::Overlap, fire))) => {
                            this.record_skip(slot, "overlap", 1, fire)
                        }
                        Ok(Some((fleet::Decision::Unclaimed, _))) => {
                            this.fire_claimed(slot, scheduled, None)
                        }
                        _ => return,
                    };
                    let _ = run.await;
                })
            }
            _ => self.fire_claimed(slot, scheduled, None),
        }
    }

    /// Applies the overlap policy and starts a run of a fire this runner
    /// holds (`fire`, on a shared schedule).
    fn fire_claimed(
        &self,
        slot: Arc<Slot>,
        scheduled: Option<DateTime<Utc>>,
        fire: Option<pushguard::fleet::Fire>,
    ) -> JoinHandle<()> {
        let job = slot.job();
        let busy: Vec<(watch::Sender<bool>, watch::Receiver<bool>)> = slot
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|r| (r.stop.clone(), r.done.clone()))
            .collect();
        if !busy.is_empty() {
            match job.overlap {
                Overlap::Forbid => {
                    errln!(
                        "[{}] still running: this run is skipped (overlap = forbid)",
                        job.name
                    );
                    return self.record_skip(slot, "overlap", 1, fire);
                }
                Overlap::Replace => {
                    errln!(
                        "[{}] still running: stopping it (overlap = replace)",
                        job.name
                    );
                    let this = self.clone();
                    return tokio::spawn(async move {
                        for (stop, mut done) in busy {
                            let _ = stop.send(true);
                            let _ = done.wait_for(|d| *d).await;
                        }
                        let _ = this.spawn_run(slot, scheduled, None, fire).await;
                    });
                }
                _ => {}
            }
        }
        self.spawn_run(slot, scheduled, None, fire)
    }

    fn job_run(&self, job: &JobSpec) -> JobRun {
        let gateway = self
            .slot(&job.name)
            .map_or_else(|| self.gateway_for(job), |slot| slot.gateway());
        let mut run = JobRun::for_key(&job.key)
            .gateway(gateway)
            .state(self.shared.state.clone());
        if let JobAction::Builtin(builtin) = &job.action {
            // The job's application metrics go with every push of its runs.
            let app = self.shared.builtins.app(&job.name, builtin.kind());
            run = run.registry(app.registry.clone());
        }
        match &self.shared.tracing {
            Some(tracing) => run.tracing(tracing.clone()),
            None => run.without_tracing(),
        }
    }

    /// Records runs that did not happen: a `skipped` outcome and
    /// `job_missed_runs_total{reason}`.
    fn record_skip(
        &self,
        slot: Arc<Slot>,
        reason: &'static str,
        count: u64,
        fire: Option<pushguard::fleet::Fire>,
    ) -> JoinHandle<()> {
        let job = slot.job();
        let run = self.job_run(&job);
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let Ok(mut guard) = run.start() else { return };
            let _ = guard.add_missed_runs(reason, count);
            if let Some(fire) = &fire {
                guard.set_fire(fire.clone());
            }
            let result = guard.finish(Outcome::Skipped);
            this.ended(&job.name, &result, fire, Outcome::Skipped);
        })
    }

    /// After a run's push: says what went wrong with it, and keeps the
    /// fire of a run the state could not record, to close it later.
    fn ended(
        &self,
        job: &str,
        result: &Result<pushguard::PushReport, pushguard::PushError>,
        fire: Option<pushguard::fleet::Fire>,
        outcome: Outcome,
    ) {
        if let Some(warning) = push_warning(result) {
            errln!("[{job}] warning: {warning}");
        }
        // A run the state could not write closes its fire when its record is
        // written from the handle's backlog, but that waits for the next
        // write; the fleet closes it at the first heartbeat that answers, so
        // that the fire does not stand as running (an overlap) meanwhile.
        let recorded = matches!(result, Ok(report) if report.state_warning.is_none());
        if let (Some(fleet), Some(fire), false) = (&self.shared.fleet, fire, recorded) {
            fleet.unrecorded(fire, outcome);
        }
    }

    fn spawn_run(
        &self,
        slot: Arc<Slot>,
        scheduled: Option<DateTime<Utc>>,
        missed: Option<(&'static str, u64)>,
        fire: Option<pushguard::fleet::Fire>,
    ) -> JoinHandle<()> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (stop, stop_rx) = watch::channel(false);
        let (done_tx, done) = watch::channel(false);
        slot.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Running { id, stop, done });
        let this = self.clone();
        tokio::spawn(async move {
            this.shared.metrics.running.inc();
            this.execute(&slot, scheduled, missed, fire, stop_rx).await;
            this.shared.metrics.running.dec();
            slot.running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|r| r.id != id);
            let _ = done_tx.send(true);
        })
    }

    /// What a command learns of its run: the runner's name and, for a
    /// scheduled run, when it was due (the same instant on every runner, so
    /// a command can tell fires apart).
    fn run_env(
        &self,
        scheduled: Option<DateTime<Utc>>,
    ) -> impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)> + use<> {
        let mut env = vec![(
            "PUSHGUARD_RUNNER_ID".into(),
            self.shared.runner_id.clone().into(),
        )];
        if let Some(at) = scheduled {
            env.push((
                "PUSHGUARD_SCHEDULED_AT".into(),
                at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                    .into(),
            ));
        }
        env.into_iter()
    }

    /// `builtin = "prune"`: deletes the old groups of the runner's gateway
    /// as `pushguard prune` does, never one with a push in the outbox; each
    /// group decided on is a line of the run's output, and a deletion that
    /// failed fails the run.
    async fn prune(&self, settings: crate::prune::Prune) -> (Ending, Tail) {
        let tail = Tail::new(self.shared.settings.log_tail_lines);
        if self.shared.gateway.is_remote_write() {
            let reason =
                "prune deletes Pushgateway groups; this runner writes to a remote-write receiver"
                    .to_owned();
            tail.push(reason.clone());
            return (Ending::Skipped { reason }, tail);
        }
        let gateway = self.shared.gateway.clone();
        let state = self.shared.state.clone();
        let result = tokio::task::spawn_blocking(move || {
            let spooled = crate::prune::spooled_paths(&state, &gateway, |url| {
                Gateway::builder()
                    .url(url)
                    .build()
                    .ok()
                    .map(|g| g.identity().to_owned())
            })
            .map_err(|e| e.to_string())?;
            crate::prune::prune(&gateway, &spooled, &settings)
                .map(|pruned| (pruned, settings.dry_run))
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(format!("the prune task failed: {e}")));
        match result {
            Ok((pruned, dry_run)) => {
                let now = crate::prune::now();
                let mut code = 0;
                for group in &pruned {
                    if group.error.is_some() {
                        code = 1;
                    }
                    tail.push(group.describe(now, dry_run));
                }
                if pruned.is_empty() {
                    tail.push("nothing to prune");
                }
                (Ending::Exited { code, signal: None }, tail)
            }
            Err(reason) => {
                tail.push(format!("cannot prune: {reason}"));
                (
                    Ending::Exited {
                        code: 1,
                        signal: None,
                    },
                    tail,
                )
            }
        }
    }

    /// One run: attempts with backoff under one guard, then one push.
    async fn execute(
        &self,
        slot: &Arc<Slot>,
        scheduled: Option<DateTime<Utc>>,
        missed: Option<(&'static str, u64)>,
        fire: Option<pushguard::fleet::Fire>,
        stop: watch::Receiver<bool>,
    ) {
        let job = slot.job();
        let mut run = self.job_run(&job);
        // The host's gauges over the run, for command jobs that ask (the
        // built-ins carry them in their own registry).
        let system = match (&job.action, job.system_metrics) {
            (JobAction::Command(_), true) => {
                let registry = pushguard::prometheus::Registry::new();
                let system = pushguard::SystemMetrics::new(&registry);
                run = run.registry(registry);
                Some(HostGauges::Run(Box::new(system)))
            }
            (JobAction::Builtin(builtin), _) => Some(HostGauges::Builtin(
                self.shared.builtins.app(&job.name, builtin.kind()),
            )),
            _ => None,
        };
        let started = SystemTime::now();
        // Starting a guard does no I/O here (the state and the tracing are
        // the runner's handles): it runs on this task, so that a burst of
        // runs due at one instant starts without a thread hand-off each.
        let mut guard = match run.start() {
            Ok(guard) => guard,
            Err(error) => {
                errln!("[{}] cannot start the run: {error}", job.name);
                return;
            }
        };
        if let Some(at) = scheduled {
            let at: SystemTime = at.into();
            guard.set_scheduled_start(at);
            let lag = started.duration_since(at).unwrap_or_default();
            self.shared.metrics.lag.observe(lag.as_secs_f64());
        }
        if let Some((reason, count)) = missed {
            let _ = guard.add_missed_runs(reason, count);
        }
        if let Some(fire) = &fire {
            guard.set_fire(fire.clone());
        }
        if let Some(interval) = job.schedule.longest_gap(Utc::now()) {
            guard.set_expected_interval(interval);
        }
        let mut attempt = 0;
        let (ending, tail) = loop {
            attempt += 1;
            guard.set_attempt(attempt);
            let (ending, tail) = match &job.action {
                JobAction::Command(argv) => {
                    let tail = Tail::new(self.shared.settings.log_tail_lines);
                    let mut spec = Spec::new(argv);
                    spec.env = job
                        .env
                        .iter()
                        .map(|(k, v)| (k.into(), v.into()))
                        .chain(
                            guard
                                .child_env()
                                .into_iter()
                                .map(|(k, v)| (k.into(), v.into())),
                        )
                        .chain(self.run_env(scheduled))
                        .collect();
                    spec.workdir = job.workdir.clone();
                    spec.output = Output::Capture {
                        label: job.name.clone(),
                        tail: tail.clone(),
                    };
                    spec.timeout = job.timeout;
                    spec.grace = KILL_GRACE;
                    let ending = supervisor::run(&spec, stop.clone()).await;
                    if let Ending::NotStarted { reason, .. } = &ending {
                        errln!("[{}] {reason}", job.name);
                        tail.push(reason.clone());
                    }
                    (ending, tail)
                }
                JobAction::Prune(settings) => self.prune(settings.clone()).await,
                JobAction::Builtin(builtin) => {
                    self.shared
                        .builtins
                        .run(
                            &job,
                            builtin,
                            stop.clone(),
                            self.shared.settings.log_tail_lines,
                        )
                        .await
                }
            };
            let failed = match &ending {
                Ending::Exited { code, .. } => *code != 0,
                Ending::TimedOut | Ending::NotStarted { .. } | Ending::Lost { .. } => true,
                Ending::Stopped | Ending::Skipped { .. } => false,
            };
            if !failed || attempt > job.retries || *stop.borrow() {
                break (ending, tail);
            }
            let delay = job.retry_delay(attempt);
            errln!(
                "[{}] attempt {attempt} failed (exit code {}); retrying in {}",
                job.name,
                ending.exit_code(),
                humantime::format_duration(delay)
            );
            let mut stop_wait = stop.clone();
            let stopped = tokio::select! {
                () = tokio::time::sleep(delay) => false,
                _ = stop_wait.wait_for(|s| *s) => true,
            };
            if stopped {
                break (ending, tail);
            }
        };
        let (outcome, error) = match &ending {
            Ending::Exited { code: 0, .. } => (Outcome::Success, None),
            Ending::Exited { code, signal } => {
                if let Some(signal) = signal {
                    guard.set_signal(*signal);
                }
                (Outcome::Failure, Some(format!("exit code {code}")))
            }
            Ending::TimedOut => (Outcome::Timeout, Some("the run timed out".to_owned())),
            // Not a failure of the pipeline: nothing could be done yet.
            Ending::Skipped { reason } => (Outcome::Skipped, Some(reason.clone())),
            Ending::Stopped => (Outcome::Failure, Some("stopped by the runner".to_owned())),
            Ending::NotStarted { reason, .. } | Ending::Lost { reason } => {
                (Outcome::Failure, Some(reason.clone()))
            }
        };
        let exit_code = ending.exit_code();
        guard.set_exit_code(exit_code);
        let output = tail.text();
        if !output.is_empty() {
            guard.set_output(output.clone());
        }
        if let Some(error) = error {
            guard.set_error(if output.is_empty() {
                error
            } else {
                format!("{error}; last output: {output}")
            });
        }
        // The run is over when its work is over: it is recorded here and its
        // slot freed when this returns, while the push (state file first,
        // then the gateway, bounded by the push deadline) goes on beside the
        // schedule. A hanging gateway never makes the next run overlap.
        *slot.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(LastRun {
            started,
            ended: SystemTime::now(),
            outcome,
            exit_code,
            attempts: attempt,
            tail: output,
        });
        let name = job.name.clone();
        let this = self.clone();
        let push = tokio::task::spawn_blocking(move || {
            // The host's gauges at the run's end: read from /proc and the
            // mounts, off the runtime's workers.
            match &system {
                Some(HostGauges::Run(system)) => system.refresh(),
                Some(HostGauges::Builtin(app)) => app.system.refresh(),
                None => {}
            }
            let result = guard.finish(outcome);
            this.ended(&name, &result, fire, outcome);
        });
        self.track_push(push);
    }
}

/// The host's gauges pushed with a run: its own for a command job that asks
/// for them, the built-in job's app's otherwise.
enum HostGauges {
    Run(Box<pushguard::SystemMetrics>),
    Builtin(Arc<builtin::JobApp>),
}

/// Where built-in jobs keep their stores: beside the state file, or for a
/// database state in the default state file's directory (their stores are
/// this host's own).
fn store_dir(state: &State) -> std::path::PathBuf {
    if !state.shares_schedule() {
        return state
            .path()
            .parent()
            .map(std::path::Path::to_owned)
            .unwrap_or_default();
    }
    State::default_dir().unwrap_or_else(|_| std::env::temp_dir().join("pushguard"))
}

/// One line for a push that was not delivered now (kept in the outbox for
/// later), went without the state file, or failed; `None` when delivered.
fn push_warning(result: &Result<pushguard::PushReport, pushguard::PushError>) -> Option<String> {
    match result {
        Ok(report) if report.spooled.is_some() => report
            .clone()
            .into_delivered()
            .err()
            .map(|spooled| format!("metrics {spooled}")),
        Ok(report) => report
            .state_warning
            .as_ref()
            .map(|problem| format!("{problem}; metrics pushed without the state file")),
        Err(error) => Some(format!("metrics not pushed: {error}")),
    }
}
