//! Fills a state with the runs of many jobs spooled while their gateway is
//! down: the outbox a host is left with after an outage. Each run is a real
//! `JobRun` on the state, whose push finds the gateway down and stays in the
//! outbox, its run recorded as `spooled`. `scripts/bench replay-groups` uses
//! it to time `pushguard outbox --flush` afterwards.
//!
//! ```text
//! cargo run --release --features postgres --example spool -- STATE URL RUNS JOBS [THREADS]
//! ```
//!
//! `STATE` is a state file or a `postgres://` URL, `URL` a gateway address
//! nothing listens on. The `RUNS` runs go to the jobs `replay_0000`… (`JOBS`
//! of them) round-robin, as the runs of many jobs interleave; `THREADS`
//! (default 4) handles on the state spool them side by side, as separate
//! processes would, each job's runs on one of them, in order.

use std::time::{Duration, Instant};

use pushguard::{Gateway, JobRun, Outcome, State};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [state, url, runs, jobs, rest @ ..] = args.as_slice() else {
        return Err("usage: spool STATE URL RUNS JOBS [THREADS]".into());
    };
    let runs: usize = runs.parse().map_err(|e| format!("RUNS {runs:?}: {e}"))?;
    let jobs: usize = jobs.parse().map_err(|e| format!("JOBS {jobs:?}: {e}"))?;
    let threads: usize = match rest.first() {
        Some(n) => n.parse().map_err(|e| format!("THREADS {n:?}: {e}"))?,
        None => 4,
    };
    if jobs == 0 || threads == 0 {
        return Err("JOBS and THREADS must be at least 1".into());
    }
    // Down: one attempt, refused at once.
    let gateway = Gateway::builder()
        .url(url)
        .retries(0)
        .deadline(Duration::from_secs(2))
        .build()?;
    let started = Instant::now();
    std::thread::scope(|scope| -> Result<(), String> {
        let workers: Vec<_> = (0..threads.min(jobs))
            .map(|worker| {
                let gateway = gateway.clone();
                scope.spawn(move || spool(state, &gateway, runs, jobs, worker, threads))
            })
            .collect();
        for worker in workers {
            worker
                .join()
                .map_err(|_| "a spooling thread panicked".to_owned())??;
        }
        Ok(())
    })?;
    let took = started.elapsed().as_secs_f64();
    let entries = State::open(state)?.outbox()?.len();
    if entries != runs {
        return Err(format!("{entries} entries in the outbox after {runs} runs").into());
    }
    eprintln!(
        "spooled {runs} runs of {jobs} jobs in {took:.1} s ({:.0} runs/s)",
        runs as f64 / took
    );
    Ok(())
}

/// Runs round `r` of job `j` for every `r * jobs + j < runs` where
/// `j % threads == worker`, round by round.
fn spool(
    path: &str,
    gateway: &Gateway,
    runs: usize,
    jobs: usize,
    worker: usize,
    threads: usize,
) -> Result<(), String> {
    let state = State::open(path).map_err(|e| e.to_string())?;
    for run in (0..runs).filter(|run| (run % jobs) % threads == worker) {
        let report = JobRun::new(format!("replay_{:04}", run % jobs))
            .gateway(gateway.clone())
            .state(state.clone())
            .without_tracing()
            .start()
            .and_then(|guard| guard.finish(Outcome::Success))
            .map_err(|e| format!("run {run}: {e}"))?;
        if report.spooled.is_none() {
            return Err(format!(
                "run {run} was delivered: is something listening on {}?",
                gateway.url()
            ));
        }
    }
    Ok(())
}
