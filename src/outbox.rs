//! Delivery through the outbox, in order, by one process at a time per group.
//!
//! Every push is first written to the outbox. Delivering a group means taking
//! its lease (a row in the state file, never a lock held across the network),
//! then sending its entries oldest first until none is left: an older result
//! can never land after a newer one. A process that finds the lease taken
//! leaves its entry to the holder, which keeps going until the group is empty,
//! and waits for it within its own deadline. Entries are deleted only after
//! the gateway confirmed them; a 4xx answer makes an entry a dead letter.
//! A lease of a killed process expires, so its entries are delivered later.
//!
//! A group goes out in batches: one transaction records what the last batch
//! did (the confirmed entries deleted, the refused ones dead letters),
//! renews the lease and reads the next batch — at most 64 entries and
//! 256 KiB of bodies (an older entry larger than that goes alone), so memory
//! stays flat however long the outbox. The batch is then sent in order over
//! the kept-alive connection. A send starts only while one that takes the
//! whole deadline still ends within the lease; what is left waits for the
//! next batch, which renews it. A failure (5xx, 429, the gateway down or
//! hanging) stops the group: the entries confirmed before it are deleted,
//! it and the newer ones stay, in order. A flush reads the groups a page at
//! a time, in path order, and never the whole outbox; it delivers two groups
//! side by side, so that the gateway has the next push while it takes one
//! (each group still by one deliverer, in order).
//!
//! A process killed in the middle of a batch has not yet deleted the
//! entries the gateway confirmed in that batch: whoever delivers the group
//! next sends them again, oldest first, before the newer ones. Nothing is
//! lost, and the group ends as it would have — a push (POST or PUT) of the
//! same bodies in the same order leaves the gateway with the same group —
//! but until the batch has gone out again the gateway may show an older
//! push's values of the group than it did.

use std::time::{Duration, Instant};

use crate::body::Body;
use crate::error::PushError;
use crate::grouping::GroupingKey;
use crate::push::{Gateway, Method, PushReport, Stored};
use crate::state::{NewEntry, Pending, State, StateError, Tx};

/// What [`State::flush`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlushReport {
    /// Entries the gateway confirmed.
    pub delivered: usize,
    /// Entries the gateway refused, now dead letters.
    pub rejected: usize,
    /// Groups left for later: the gateway failed, or another process was
    /// delivering them.
    pub deferred: usize,
    /// The last delivery error, if any.
    pub last_error: Option<String>,
}

/// A unique lease owner name for this process and call, `PID-NANOS-N@HOST`:
/// a lease of a dead process on this host is taken over at once, one of
/// another host (sharing a PostgreSQL state) only when it expires. While the
/// owner lives (the call that delivers) it is listed as active in this
/// process; a lease of this process whose call is over — one a state that
/// failed mid-delivery never saw given back — is stale, and taken over at
/// once like a dead process's.
pub(crate) fn owner() -> Owner {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!(
        "{}-{nanos}-{}@{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        crate::state::host_name()
    );
    active().insert(name.clone());
    Owner(name)
}

/// The owners of this process whose calls are going on.
fn active() -> std::sync::MutexGuard<'static, std::collections::HashSet<String>> {
    static ACTIVE: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<String>>> =
        std::sync::OnceLock::new();
    ACTIVE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Whether `owner`, an owner of this process, belongs to a call still going
/// on.
pub(crate) fn is_active(owner: &str) -> bool {
    active().contains(owner)
}

/// A lease owner of this process, active until dropped.
#[derive(Debug)]
pub(crate) struct Owner(String);

impl std::ops::Deref for Owner {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        active().remove(&self.0);
    }
}

fn hold(gateway: &Gateway) -> Duration {
    gateway.deadline() + Duration::from_secs(5)
}

/// How long after its lease was renewed a drain may still start a send: one
/// that takes the whole deadline then still ends before the lease does.
fn send_window(gateway: &Gateway) -> Duration {
    hold(gateway).saturating_sub(gateway.deadline())
}

/// At most this many entries of a group are sent between two transactions…
pub(crate) const BATCH_ENTRIES: usize = 64;

/// …holding at most this many body bytes together; an entry larger than
/// this goes alone.
const BATCH_BYTES: usize = 256 * 1024;

/// Groups a flush reads from the state at a time.
const GROUP_PAGE: usize = 256;

#[derive(Default)]
struct Drain {
    /// False when a drain that was to take the lease found another owner
    /// holding it: nothing was sent.
    leased: bool,
    delivered: usize,
    rejected: usize,
    own: Option<Result<PushReport, PushError>>,
    stopped: Option<PushError>,
}

/// A group's delivery lease taken in a run's spool transaction, with the
/// group's first batch read in that transaction: the run's delivery starts
/// sending without another one.
pub(crate) struct Claim {
    /// When the transaction began (before the lease's hold was counted).
    at: Instant,
    first: Vec<Pending>,
}

/// Takes the delivery lease of the group at `path` for `owner` and reads its
/// first batch, inside the caller's write transaction that began at `at`;
/// `None` when another live owner holds the group.
pub(crate) fn claim(
    tx: &Tx<'_>,
    gateway: &Gateway,
    path: &str,
    owner: &str,
    at: Instant,
) -> Result<Option<Claim>, StateError> {
    let url = gateway.identity();
    if !tx.try_lease(url, path, owner, hold(gateway))? {
        return Ok(None);
    }
    let first = tx.next_batch(url, path, BATCH_ENTRIES, BATCH_BYTES)?;
    Ok(Some(Claim { at, first }))
}

/// How a drain starts: with the lease its caller holds, with the lease and
/// first batch its caller's transaction claimed, or by taking the lease in
/// the transaction that reads the first batch.
enum Lease {
    Held,
    Claimed(Claim),
    Take,
}

impl Lease {
    /// The lease and first batch a caller's transaction claimed, once: the
    /// lease is then held.
    fn take_claim(&mut self) -> Option<Claim> {
        if !matches!(self, Lease::Claimed(_)) {
            return None;
        }
        match std::mem::replace(self, Lease::Held) {
            Lease::Claimed(claim) => Some(claim),
            _ => None,
        }
    }
}

/// What the sends of a batch did, not yet written: recorded in the
/// transaction that takes the next batch or ends the drain.
#[derive(Default)]
struct Sent {
    /// Entries the gateway confirmed, oldest first.
    delivered: Vec<Pending>,
    /// Entries the gateway refused (4xx), with why: dead letters.
    refused: Vec<(Pending, String)>,
}

impl Sent {
    fn record(&self, tx: &Tx<'_>, url: &str, path: &str) -> Result<(), StateError> {
        if let Some(newest) = self.delivered.last() {
            tx.delivered(&self.delivered)?;
            tx.remember_if_in_doubt(url, path, newest)?;
        }
        for (entry, error) in &self.refused {
            tx.failed(entry, error, true)?;
        }
        Ok(())
    }
}

/// Sends the group's entries in order while this owner holds its lease, a
/// batch at a time: one transaction records what the last batch did,
/// renews the lease and reads the next batch. Returns when the group is
/// empty (lease released), a delivery failed (lease released), `until`
/// passed (lease released) or the lease was lost (or, with
/// [`Lease::Take`], never had).
fn drain(
    gateway: &Gateway,
    state: &State,
    path: &str,
    owner: &str,
    own: Option<i64>,
    until: Option<Instant>,
    mut lease: Lease,
) -> Result<Drain, PushError> {
    let mut drain = Drain {
        leased: true,
        ..Drain::default()
    };
    let mut sent = Sent::default();
    loop {
        // A batch read with the lease in the caller's transaction goes first;
        // after it, one transaction records a batch, renews the lease and
        // reads the next.
        let (batch, renewed) = match lease.take_claim().filter(|c| !c.first.is_empty()) {
            Some(Claim { at, first }) => (first, at),
            None => {
                let out_of_time = until.is_some_and(|t| Instant::now() >= t);
                let done = std::mem::take(&mut sent);
                let renewed = Instant::now();
                match step(gateway, state, path, owner, &lease, &done, out_of_time)? {
                    Next::Stop => return Ok(drain),
                    Next::Lost => {
                        drain.leased = !matches!(lease, Lease::Take);
                        return Ok(drain);
                    }
                    Next::Settle((method, body)) => {
                        settle(gateway, state, path, owner, method, body, until)?;
                        lease = Lease::Held;
                        continue;
                    }
                    Next::Batch(batch) => (batch, renewed),
                }
            }
        };
        lease = Lease::Held;
        let results = send(gateway, path, &batch, renewed, until);
        if let Some((entry, error)) = tally(own, batch, results, &mut sent, &mut drain) {
            stop(gateway, state, path, owner, &sent, &entry, &error)?;
            drain.stopped = Some(error);
            return Ok(drain);
        }
    }
}

/// One transaction of a drain: records what the last batch did (`done`),
/// then renews (or takes) the lease and reads the next batch; or, with the
/// group empty, settles a delivery in doubt or gives the lease back.
fn step(
    gateway: &Gateway,
    state: &State,
    path: &str,
    owner: &str,
    lease: &Lease,
    done: &Sent,
    out_of_time: bool,
) -> Result<Next, StateError> {
    let url = gateway.identity();
    state.write::<_, StateError>(|tx| {
        done.record(tx, url, path)?;
        if out_of_time {
            tx.release(url, path, owner)?;
            return Ok(Next::Stop);
        }
        let held = match lease {
            Lease::Held | Lease::Claimed(_) => tx.renew_lease(url, path, owner, hold(gateway))?,
            Lease::Take => tx.try_lease(url, path, owner, hold(gateway))?,
        };
        if !held {
            return Ok(Next::Lost);
        }
        let batch = tx.next_batch(url, path, BATCH_ENTRIES, BATCH_BYTES)?;
        if !batch.is_empty() {
            return Ok(Next::Batch(batch));
        }
        // Empty. An attempt in doubt whose window has passed: send the
        // newest push again while still holding the lease, so no other
        // process's newer push can go out in between.
        if let Some(push) = tx.settled(url, path, crate::state::unix_now())? {
            return Ok(Next::Settle(push));
        }
        tx.release(url, path, owner)?;
        Ok(Next::Stop)
    })
}

/// Sends a batch read with the lease renewed (or taken) at `renewed`, in
/// one go: a result for each entry, in order. Entries not sent (out of
/// lease time or of `until`) stay for the next batch, which renews the lease.
fn send(
    gateway: &Gateway,
    path: &str,
    batch: &[Pending],
    renewed: Instant,
    until: Option<Instant>,
) -> Vec<Result<PushReport, PushError>> {
    let requests = batch.iter().map(|e| (e.method, e.body.clone())).collect();
    gateway.send_stored_all(path, requests, renewed + send_window(gateway), until)
}

/// Notes what each send of a batch did in `sent` and `drain`. Returns the
/// entry at which the group stopped (a send that may succeed later: down,
/// 5xx, timeout) with its error; the entries after it were not sent.
fn tally(
    own: Option<i64>,
    batch: Vec<Pending>,
    results: Vec<Result<PushReport, PushError>>,
    sent: &mut Sent,
    drain: &mut Drain,
) -> Option<(Pending, PushError)> {
    for (entry, result) in batch.into_iter().zip(results) {
        let is_own = own == Some(entry.id);
        match result {
            Ok(report) => {
                drain.delivered += 1;
                if is_own {
                    drain.own = Some(Ok(report));
                }
                sent.delivered.push(entry);
            }
            Err(error) if !error.is_retryable() => {
                drain.rejected += 1;
                sent.refused.push((entry, error_chain(&error)));
                if is_own {
                    drain.own = Some(Err(error));
                }
            }
            Err(error) => return Some((entry, error)),
        }
    }
    None
}

/// Ends a drain at a send that may succeed later: what the batch delivered
/// goes, the failed entry and the newer ones stay, in order, and the lease
/// is given back.
fn stop(
    gateway: &Gateway,
    state: &State,
    path: &str,
    owner: &str,
    sent: &Sent,
    entry: &Pending,
    error: &PushError,
) -> Result<(), StateError> {
    let url = gateway.identity();
    state.write(|tx| {
        sent.record(tx, url, path)?;
        tx.failed(entry, &error_chain(error), false)?;
        if error.in_doubt() {
            tx.mark_in_doubt(url, path, settle_at(gateway))?;
        }
        tx.release(url, path, owner)
    })
}

/// When the gateway may no longer apply an attempt that goes in doubt now.
fn settle_at(gateway: &Gateway) -> f64 {
    crate::state::unix_now() + gateway.in_doubt_window().as_secs_f64()
}

/// Sends the group's newest delivered push again once an attempt in doubt
/// can no longer land (its window passed), so the newest result is the one
/// the gateway applied last; the group is then no longer in doubt. Called
/// with the group's lease held. Before the window passes nothing happens: a
/// later push, flush or drain does it.
fn settle(
    gateway: &Gateway,
    state: &State,
    path: &str,
    owner: &str,
    method: crate::push::Stored,
    body: String,
    until: Option<Instant>,
) -> Result<(), PushError> {
    let url = gateway.identity();
    let limit = until.map_or(gateway.deadline(), |t| {
        t.saturating_duration_since(Instant::now())
    });
    match gateway.send_stored(path, method, body, limit) {
        Ok(_) => Ok(state.write(|tx| tx.clear_in_doubt(url, path))?),
        // Sent again but in doubt again: wait another window.
        Err(error) if error.in_doubt() => Ok(state.write(|tx| {
            tx.mark_in_doubt(url, path, settle_at(gateway))?;
            tx.release(url, path, owner)
        })?),
        // Not sent (down, refused): the next delivery tries again.
        Err(_) => Ok(state.write(|tx| {
            tx.mark_in_doubt(url, path, 0.0)?;
            tx.release(url, path, owner)
        })?),
    }
}

/// What a drain does next.
enum Next {
    Stop,
    /// The lease is another owner's.
    Lost,
    Batch(Vec<Pending>),
    Settle((crate::push::Stored, String)),
}

/// The report of a push kept in the outbox as entry `own`, because of `reason`.
fn spooled(
    gateway: &Gateway,
    path: &str,
    own: i64,
    reason: String,
    started: Instant,
    replayed: usize,
) -> PushReport {
    PushReport {
        url: format!("{}{path}", gateway.url()),
        status: 0,
        attempts: 0,
        elapsed: started.elapsed(),
        replayed,
        state_warning: None,
        tracing_warning: None,
        spooled: Some(reason),
        outbox_entry: Some(own),
    }
}

/// Delivers the spooled entry `own` of group `path` after the older entries of
/// that group, all within the gateway's deadline. A push the gateway cannot
/// take now stays in the outbox and is an `Ok` report saying why
/// ([`PushReport::spooled`]); a push it refuses (4xx) is an error.
pub(crate) fn deliver(
    gateway: &Gateway,
    state: &State,
    path: &str,
    own: i64,
    owner: &str,
    mut claim: Option<Claim>,
) -> Result<PushReport, PushError> {
    let mut leased = claim.is_some();
    let started = Instant::now();
    let until = started + gateway.deadline();
    let url = gateway.identity();
    let mut replayed = 0;
    let mut pause = Duration::from_millis(1);
    loop {
        if leased {
            let drain = drain(
                gateway,
                state,
                path,
                owner,
                Some(own),
                Some(until),
                claim.take().map_or(Lease::Held, Lease::Claimed),
            )?;
            replayed += drain.delivered;
            match drain.own {
                Some(Ok(mut report)) => {
                    report.replayed = replayed.saturating_sub(1);
                    return Ok(report);
                }
                Some(Err(error)) => return Err(error),
                None => {}
            }
            if let Some(error) = drain.stopped {
                let reason = error_chain(&error);
                return Ok(spooled(gateway, path, own, reason, started, replayed));
            }
            leased = false;
        }
        // Someone else holds the group, or our drain ran out of time or lost
        // the lease: see what became of our entry, or take over the lease.
        let status = state.write::<_, StateError>(|tx| {
            let mut status = tx.entry_state(own)?;
            if matches!(status, Some((false, _, _))) && Instant::now() < until {
                let took = tx.try_lease(url, path, owner, hold(gateway))?;
                return Ok((status, took));
            }
            // Out of time without an attempt of our own: the group's own
            // delivery error says why, when there is one.
            if let Some((false, last_error @ None, _)) = &mut status {
                *last_error = tx.group_last_error(url, path)?;
            }
            Ok((status, false))
        })?;
        match status {
            (None, _) => {
                return Ok(PushReport {
                    url: format!("{}{path}", gateway.url()),
                    status: 0,
                    attempts: 0,
                    elapsed: started.elapsed(),
                    replayed,
                    state_warning: None,
                    tracing_warning: None,
                    spooled: None,
                    outbox_entry: None,
                });
            }
            (Some((true, error, stored)), _) => {
                return Err(PushError::Rejected {
                    method: stored.as_str(),
                    url: format!("{}{path}", gateway.url()),
                    status: 400,
                    body: error.unwrap_or_default(),
                });
            }
            (Some((false, _, _)), true) => leased = true,
            (Some((false, last_error, _)), false) => {
                if Instant::now() >= until {
                    let reason = last_error.unwrap_or_else(|| {
                        "another pushguard process held this group's delivery until the deadline"
                            .into()
                    });
                    return Ok(spooled(gateway, path, own, reason, started, replayed));
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
        }
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Groups a flush delivers side by side: while the gateway takes a push of
/// one group, a push of the next is on its way. Each group still has one
/// deliverer, and its entries go in order.
const FLUSH_LANES: usize = 2;

/// The groups a flush has yet to deliver, read from the state a page at a
/// time in path order: any number of groups in flat memory, and the outbox
/// never read whole.
struct Groups<'a> {
    state: &'a State,
    url: &'a str,
    page: std::collections::VecDeque<String>,
    after: String,
    more: bool,
}

impl<'a> Groups<'a> {
    /// The groups of `url`, the first page read.
    fn read(state: &'a State, url: &'a str) -> Result<Self, PushError> {
        let mut groups = Groups {
            state,
            url,
            page: Default::default(),
            after: String::new(),
            more: true,
        };
        groups.fill()?;
        Ok(groups)
    }

    fn fill(&mut self) -> Result<(), PushError> {
        let page = self
            .state
            .write(|tx| tx.pending_groups(self.url, &self.after, GROUP_PAGE))?;
        self.more = page.len() == GROUP_PAGE;
        if let Some(last) = page.last() {
            self.after.clone_from(last);
        }
        self.page = page.into();
        Ok(())
    }

    fn next(&mut self) -> Result<Option<String>, PushError> {
        if self.page.is_empty() && self.more {
            self.fill()?;
        }
        Ok(self.page.pop_front())
    }
}

impl FlushReport {
    fn add(&mut self, other: FlushReport) {
        self.delivered += other.delivered;
        self.rejected += other.rejected;
        self.deferred += other.deferred;
        if other.last_error.is_some() {
            self.last_error = other.last_error;
        }
    }
}

/// Delivers groups taken from `groups` one after the other until none is
/// left, or another lane failed (`failed`).
fn flush_lane(
    gateway: &Gateway,
    state: &State,
    groups: &std::sync::Mutex<Groups<'_>>,
    failed: &std::sync::atomic::AtomicBool,
) -> Result<FlushReport, PushError> {
    use std::sync::atomic::Ordering;
    let mut report = FlushReport::default();
    let mut lane = || -> Result<(), PushError> {
        while !failed.load(Ordering::Relaxed) {
            let next = groups.lock().unwrap_or_else(|p| p.into_inner()).next()?;
            let Some(path) = next else {
                return Ok(());
            };
            let owner = owner();
            let drain = drain(gateway, state, &path, &owner, None, None, Lease::Take)?;
            if !drain.leased {
                report.deferred += 1;
                continue;
            }
            report.delivered += drain.delivered;
            report.rejected += drain.rejected;
            if let Some(error) = drain.stopped {
                report.deferred += 1;
                report.last_error = Some(error_chain(&error));
            }
        }
        Ok(())
    };
    match lane() {
        Ok(()) => Ok(report),
        Err(error) => {
            failed.store(true, Ordering::Relaxed);
            Err(error)
        }
    }
}

impl State {
    /// Delivers everything spooled for `gateway`, group by group, oldest
    /// first within each group: every push spooled for the same
    /// [`Gateway::identity`], however its URL was spelled. Two groups are
    /// delivered side by side (a group is never sent by two at once). Groups
    /// another process is delivering right now are deferred.
    pub fn flush(&self, gateway: &Gateway) -> Result<FlushReport, PushError> {
        let groups = Groups::read(self, gateway.identity())?;
        let lanes = if groups.page.len() > 1 {
            FLUSH_LANES
        } else {
            1
        };
        let groups = std::sync::Mutex::new(groups);
        let failed = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let others: Vec<_> = (1..lanes)
                .map(|_| scope.spawn(|| flush_lane(gateway, self, &groups, &failed)))
                .collect();
            let mut result = flush_lane(gateway, self, &groups, &failed);
            for lane in others {
                let lane = lane
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                result = match (result, lane) {
                    (Ok(mut report), Ok(more)) => {
                        report.add(more);
                        Ok(report)
                    }
                    (Err(error), _) | (_, Err(error)) => Err(error),
                };
            }
            result
        })
    }
}

impl State {
    /// Writes the newest state of every group `gateway` (a remote-write
    /// client) delivered again, stamped now: a remote-written sample is
    /// visible to instant queries only for the receiver's lookback window
    /// (5 minutes in Prometheus), so a job that runs once a day would vanish
    /// from `time() - job_last_success_timestamp_seconds` between runs. The
    /// state is what a Pushgateway would hold: each metric as the newest run
    /// that carried it (a failed run keeps the last success time). A group
    /// with spooled entries, or one another process is delivering, is
    /// skipped: its newer results go first. Returns the groups written; a
    /// write that fails is not spooled (the next refresh writes newer
    /// state). The runner calls this at every outbox drain.
    #[cfg(feature = "remote-write")]
    pub fn refresh(&self, gateway: &Gateway) -> Result<usize, PushError> {
        if !gateway.is_remote_write() {
            return Ok(0);
        }
        let url = gateway.identity();
        let mut written = 0;
        for path in gateway.latest().paths() {
            let owner = owner();
            let wire = {
                let _gate = gateway.latest().refreshing();
                let free = self.write::<_, StateError>(|tx| {
                    if !tx.try_lease(url, &path, &owner, hold(gateway))? {
                        return Ok(false);
                    }
                    if !tx.next_batch(url, &path, 1, 0)?.is_empty() {
                        tx.release(url, &path, &owner)?;
                        return Ok(false);
                    }
                    Ok(true)
                })?;
                if !free {
                    continue;
                }
                // A millisecond back: a run stamped after the gate opens
                // is strictly newer, never a duplicate timestamp.
                let at = std::time::SystemTime::now() - Duration::from_millis(1);
                gateway.latest().request(&path, at)
            };
            let sent = match wire {
                Some(Ok(wire)) => gateway.send_wire(&path, wire).is_ok(),
                _ => false,
            };
            self.write(|tx| tx.release(url, &path, &owner))?;
            written += usize::from(sent);
        }
        Ok(written)
    }

    /// Pushes `body` through the outbox: the push is written to the state
    /// file, then delivered after any older spooled push of the same group
    /// (on the same [`Gateway::identity`]).
    ///
    /// | result | meaning |
    /// |---|---|
    /// | `Ok(report)`, [`report.spooled`](PushReport::spooled) `None` | delivered |
    /// | `Ok(report)`, `spooled` `Some(reason)` | not delivered now (gateway down, hanging, 5xx, 429): kept in the outbox as entry [`report.outbox_entry`](PushReport::outbox_entry) for a later push or flush |
    /// | `Err(`[`PushError::Rejected`]`)` | the gateway refused it (4xx): a dead letter, never retried |
    /// | `Err(_)`, any other | invalid metrics or grouping, or a state file that cannot be written |
    ///
    /// [`PushReport::into_delivered`] turns a spooled report into
    /// [`PushError::Spooled`] for callers that need the push delivered.
    pub fn push(
        &self,
        gateway: &Gateway,
        key: &GroupingKey,
        method: Method,
        body: &Body,
    ) -> Result<PushReport, PushError> {
        body.check_grouping(key)?;
        let (stored, body) = gateway.stored(key, method, body, std::time::SystemTime::now())?;
        self.send_spooled(gateway, &key.path(), stored, &body)
    }

    /// Deletes the group `key` through the outbox, in order with its pushes.
    /// A remote-write receiver has no groups to delete: an error.
    pub fn delete(&self, gateway: &Gateway, key: &GroupingKey) -> Result<PushReport, PushError> {
        if gateway.is_remote_write() {
            return gateway.delete(key);
        }
        self.send_spooled(gateway, &key.path(), Stored::Delete, "")
    }

    fn send_spooled(
        &self,
        gateway: &Gateway,
        path: &str,
        method: Stored,
        body: &str,
    ) -> Result<PushReport, PushError> {
        let owner = owner();
        let url = gateway.identity();
        let claimed = Instant::now();
        let (entry, claim) = self.write::<_, StateError>(|tx| {
            let entry = tx.spool(&NewEntry {
                gateway: gateway.url(),
                gateway_id: url,
                path,
                method,
                body,
                content_type: method.content_type(),
                run_id: None,
            })?;
            Ok((entry, claim(tx, gateway, path, &owner, claimed)?))
        })?;
        deliver(gateway, self, path, entry, &owner, claim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_unique_and_name_this_process() {
        let (a, b) = (owner(), owner());
        assert_ne!(*a, *b, "two calls must not share a lease");
        assert!(is_active(&a) && is_active(&b));
        let name = a.to_string();
        drop(a);
        assert!(
            !is_active(&name),
            "an owner whose call is over is not active"
        );
        let pid = std::process::id().to_string();
        for owner in [name.as_str(), &b] {
            let (process, host) = owner.rsplit_once('@').expect("the owner names its host");
            assert_eq!(host, crate::state::host_name(), "{owner}");
            let parts: Vec<&str> = process.split('-').collect();
            assert_eq!(parts.len(), 3, "{owner}");
            assert_eq!(parts[0], pid, "the owner names its process: {owner}");
        }
    }

    #[test]
    fn a_lease_outlives_the_push_deadline() {
        let gateway = Gateway::builder()
            .url("http://127.0.0.1:9091")
            .deadline(Duration::from_secs(2))
            .build()
            .unwrap();
        assert_eq!(hold(&gateway), Duration::from_secs(7));
    }

    #[test]
    fn an_error_chain_lists_every_cause() {
        #[derive(Debug)]
        struct Layer(&'static str, Option<Box<Layer>>);
        impl std::fmt::Display for Layer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Layer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|l| l as _)
            }
        }
        let error = Layer(
            "top",
            Some(Box::new(Layer(
                "middle",
                Some(Box::new(Layer("root", None))),
            ))),
        );
        assert_eq!(error_chain(&error), "top: middle: root");
        assert_eq!(error_chain(&Layer("alone", None)), "alone");
    }
}
