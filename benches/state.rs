//! Criterion benches of the state file: the outbox's spool and replay paths,
//! and what the state file adds to a guard's `finish`.
//!
//! - `state/spool push, gateway down`: `State::push` of a small body while
//!   the gateway is down (a loopback port nothing listens on, `retries(0)`):
//!   each push is written to the outbox, tries the group's oldest entry,
//!   gets "connection refused" and stays spooled (`PushReport::spooled`).
//!   Every sample starts from a fresh state file. Throughput is pushes/s.
//! - `state/direct push, gateway down`: `Gateway::push` of the same body to
//!   the same dead URL without a state file: the refused connection alone.
//!   The difference between the two is what the state file costs per push.
//! - `state/replay 10000 pushes, one group`: `State::flush` delivering
//!   10,000 spooled entries of one group (strictly in order, a batch of
//!   entries per state transaction) to a real Pushgateway. Every iteration
//!   starts from a copy of the same spooled file; the copy and `State::open`
//!   are not timed. Throughput is replayed pushes/s (target: at least
//!   1,000).
//! - `state/replay 10000 pushes, 100 groups`: the same with the pushes
//!   spooled round-robin to 100 groups (runs of many jobs interleave): the
//!   flush goes group by group, each in order.
//! - `guard finish/with state`, `guard finish/without state`: `JobRun` start
//!   and `finish` to a real Pushgateway over one kept-alive connection, with
//!   an open state file (outbox, history, counters) and with `without_state`.
//! - `guard finish/with state, opened per run`: the same with
//!   `JobRun::state_path`, so every run opens the file and closes it again
//!   (as `pushguard exec` does, and a `JobRun` left at its default state).
//!
//! Each spooled file is made by one timed pass of 10,000 `State::push` calls
//! into a fresh file while the gateway is down (the port is the one the
//! gateway is started on afterwards); the one-group pass is printed as
//! `spool 10000 pushes (one pass)`.
//!
//! The benches that need a gateway are skipped, with a note, when
//! `/usr/bin/prometheus-pushgateway` is missing. `scripts/bench` reads the
//! spool and replay figures from `target/criterion/state/`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use pushguard::{Body, Gateway, GroupingKey, JobRun, Method, Outcome, PushError, State};
use tempfile::TempDir;

#[path = "support/gateway.rs"]
mod gateway;

use gateway::{Pushgateway, free_addr, have_pushgateway};

/// Entries in the spooled file that the replay bench delivers.
const REPLAY_PUSHES: u64 = 10_000;

/// The small body every spooled push carries: one gauge.
fn small_body(value: f64) -> Body {
    let mut body = Body::new();
    body.gauge(
        "bench_spool_value",
        "A value pushed through the outbox.",
        value,
    )
    .expect("valid gauge");
    body
}

/// A client for a gateway that is down: one attempt, no retries.
fn down_gateway(addr: SocketAddr) -> Gateway {
    Gateway::builder()
        .url(format!("http://{addr}"))
        .retries(0)
        .build()
        .unwrap_or_else(|e| panic!("cannot build the gateway client: {e}"))
}

/// Pushes `n` small bodies through `state` to a gateway that is down,
/// round-robin over `keys`; every one must end up spooled.
fn spool(state: &State, gateway: &Gateway, keys: &[GroupingKey], n: u64) {
    for (i, key) in (0..n).zip(keys.iter().cycle()) {
        match state.push(gateway, key, Method::Post, &small_body(i as f64)) {
            Ok(report) if report.spooled.is_some() => {}
            other => panic!(
                "push {i} to {} was not spooled (is something listening there?): {other:?}",
                gateway.url()
            ),
        }
    }
}

fn bench_spool(c: &mut Criterion) {
    let key = GroupingKey::new("bench_spool").expect("valid job");
    let gateway = down_gateway(free_addr());
    let mut group = c.benchmark_group("state");
    group.throughput(Throughput::Elements(1));
    group.bench_function("spool push, gateway down", |b| {
        b.iter_custom(|iters| {
            let dir = TempDir::new().expect("temp dir");
            let state = State::open(dir.path().join("state.db")).expect("open the state file");
            let started = Instant::now();
            spool(&state, &gateway, std::slice::from_ref(&key), iters);
            started.elapsed()
        })
    });
    let body = small_body(1.0);
    group.bench_function("direct push, gateway down", |b| {
        b.iter(
            || match gateway.push(&key, Method::Post, black_box(&body)) {
                Err(PushError::Transport { .. }) => {}
                other => panic!("expected a refused connection: {other:?}"),
            },
        )
    });
    group.finish();
}

/// A file holding [`REPLAY_PUSHES`] spooled entries of one or more groups
/// for the gateway that now runs on the port they were spooled for.
struct Spooled {
    gateway: Pushgateway,
    client: Gateway,
    _dir: TempDir,
    template: PathBuf,
}

impl Spooled {
    /// Spools into a fresh file while the port is dead (timed and printed),
    /// then starts the gateway on that port. A few tries in case another
    /// process takes the port in between.
    fn make(groups: usize) -> Self {
        let keys: Vec<GroupingKey> = match groups {
            1 => vec![GroupingKey::new("bench_replay").expect("valid job")],
            n => (0..n)
                .map(|g| GroupingKey::new(format!("bench_replay_{g:03}")).expect("valid job"))
                .collect(),
        };
        let mut last = String::new();
        for _ in 0..3 {
            let dir = TempDir::new().expect("temp dir");
            let template = dir.path().join("spooled.db");
            let addr = free_addr();
            let state = State::open(&template).expect("open the state file");
            let started = Instant::now();
            spool(&state, &down_gateway(addr), &keys, REPLAY_PUSHES);
            let took = started.elapsed();
            let entries = state.outbox().expect("read the outbox").len() as u64;
            assert_eq!(entries, REPLAY_PUSHES, "entries in the spooled file");
            drop(state); // the last connection checkpoints the WAL into the file
            if groups == 1 {
                println!(
                    "spool {REPLAY_PUSHES} pushes (one pass): {:.2} s, {:.0} pushes/s, {:.1} µs per push \
                     (gateway down, one group, fresh file)",
                    took.as_secs_f64(),
                    REPLAY_PUSHES as f64 / took.as_secs_f64(),
                    took.as_secs_f64() * 1e6 / REPLAY_PUSHES as f64,
                );
            }
            match Pushgateway::start_on(addr) {
                Ok(gateway) => {
                    let client = gateway.client();
                    return Spooled {
                        gateway,
                        client,
                        _dir: dir,
                        template,
                    };
                }
                Err(e) => last = e,
            }
        }
        panic!("{last}")
    }

    /// A fresh copy of the spooled file, opened.
    fn copy(&self, dir: &Path) -> State {
        let path = dir.join("state.db");
        for suffix in ["", "-wal"] {
            let from = PathBuf::from(format!("{}{suffix}", self.template.display()));
            if from.exists() {
                let to = format!("{}{suffix}", path.display());
                std::fs::copy(&from, &to).expect("copy the spooled file");
            }
        }
        State::open(&path).expect("open the copy")
    }

    /// One timed flush of a fresh copy; checks that everything was delivered.
    fn replay(&self) -> Duration {
        let dir = TempDir::new().expect("temp dir");
        let state = self.copy(dir.path());
        let started = Instant::now();
        let report = state.flush(&self.client).expect("flush");
        let took = started.elapsed();
        assert_eq!(
            (report.delivered as u64, report.deferred, report.rejected),
            (REPLAY_PUSHES, 0, 0),
            "flush to {} did not deliver every entry: {report:?}",
            self.gateway.url()
        );
        took
    }
}

fn bench_replay(c: &mut Criterion) {
    for (groups, what) in [(1, "one group"), (100, "100 groups")] {
        replay_groups(c, groups, &format!("replay {REPLAY_PUSHES} pushes, {what}"));
    }
}

fn replay_groups(c: &mut Criterion, groups: usize, name: &str) {
    if !have_pushgateway(name) {
        return;
    }
    let mut spooled: Option<Spooled> = None;
    let mut group = c.benchmark_group("state");
    // One iteration is 10,000 pushes (seconds): the fewest samples criterion
    // allows, one iteration each. Where a pass takes over 2 s criterion says
    // it cannot complete 10 samples in 20 s and takes the time it needs; a
    // longer target would only add passes where a pass is quicker.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(REPLAY_PUSHES));
    group.bench_function(name, |b| {
        let spooled = spooled.get_or_insert_with(|| Spooled::make(groups));
        b.iter_custom(|iters| (0..iters).map(|_| spooled.replay()).sum())
    });
    group.finish();
}

fn bench_guard_finish(c: &mut Criterion) {
    if !have_pushgateway("guard finish") {
        return;
    }
    // Started on first use, so a filter that skips these benches starts
    // nothing; killed when this function returns.
    let mut server: Option<(Pushgateway, Gateway, State, TempDir)> = None;
    let mut fixture = || {
        let (_, gateway, state, dir) = server.get_or_insert_with(|| {
            let process = Pushgateway::start().unwrap_or_else(|e| panic!("{e}"));
            let gateway = process.client();
            let dir = TempDir::new().expect("temp dir");
            let state = State::open(dir.path().join("state.db")).expect("open the state file");
            (process, gateway, state, dir)
        });
        (
            gateway.clone(),
            state.clone(),
            dir.path().join("per-run.db"),
        )
    };
    let finish = |job: JobRun| {
        let report = job
            .start()
            .unwrap_or_else(|e| panic!("cannot start the run: {e}"))
            .finish(Outcome::Success)
            .unwrap_or_else(|e| panic!("push failed: {e}"));
        assert_eq!(report.attempts, 1, "a push needed retries: {report:?}");
        assert!(report.state_warning.is_none(), "{report:?}");
        black_box(report)
    };
    let mut group = c.benchmark_group("guard finish");
    // Flat: a run that opens the file takes milliseconds, and linear
    // sampling would need 210 of them at least.
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("with state", |b| {
        let (gateway, state, _) = fixture();
        b.iter(|| {
            finish(
                JobRun::new("bench_state")
                    .gateway(gateway.clone())
                    .state(state.clone()),
            )
        })
    });
    group.bench_function("with state, opened per run", |b| {
        let (gateway, _, path) = fixture();
        b.iter(|| {
            finish(
                JobRun::new("bench_state_open")
                    .gateway(gateway.clone())
                    .state_path(&path),
            )
        })
    });
    group.bench_function("without state", |b| {
        let (gateway, _, _) = fixture();
        b.iter(|| {
            finish(
                JobRun::new("bench_nostate")
                    .gateway(gateway.clone())
                    .without_state(),
            )
        })
    });
    group.finish();
}

/// Short runs: each replay bench takes 11 passes of 10,000 pushes, and the
/// whole file should stay under about two and a half minutes.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_spool, bench_replay, bench_guard_finish
}
criterion_main!(benches);
