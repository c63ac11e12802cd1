//! The shared schedule's SQL (see `state/fleet.rs`): claims decided under a
//! per-job advisory lock held for one short transaction, heartbeats and
//! takeovers timed by the database server's clock, and takeovers fenced by
//! the previous holder's name so that two runners never take the same fire.

use std::time::Duration;

use ::postgres::{Client, GenericClient, Transaction};

use super::error;
use crate::state::StateError;
use crate::state::fleet::{Claim, Fire, FireStatus, TakenOver};
use crate::state::host_name;

/// The server's clock in Unix seconds.
const NOW: &str = "extract(epoch FROM clock_timestamp())::DOUBLE PRECISION";

/// Fires and runners older than this are forgotten.
const FORGET_AFTER_SECS: f64 = 86_400.0;

/// This process's mark on the runner name it holds.
fn incarnation() -> &'static str {
    static MARK: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    MARK.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        format!("{}-{nanos}@{}", std::process::id(), host_name())
    })
}

/// Whether another live process holds the name `runner`.
fn held_by_another(
    client: &mut impl GenericClient,
    runner: &str,
) -> Result<bool, ::postgres::Error> {
    Ok(client
        .query_opt(
            &format!(
                "SELECT 1 FROM runners WHERE id = $1 AND heartbeat + lease > {NOW}
                    AND incarnation IS DISTINCT FROM $2"
            ),
            &[&runner, &incarnation()],
        )?
        .is_some())
}

/// Registers `runner` for this process or says it is alive; false (and
/// nothing written) when another live process holds the name.
fn upsert_runner(
    tx: &mut Transaction<'_>,
    runner: &str,
    lease: Duration,
    restarted: bool,
) -> Result<bool, ::postgres::Error> {
    let started = if restarted {
        "excluded.started"
    } else {
        "runners.started"
    };
    let rows = tx.query(
        &format!(
            "INSERT INTO runners (id, host, started, heartbeat, lease, incarnation)
             VALUES ($1, $2, {NOW}, {NOW}, $3, $4)
             ON CONFLICT (id) DO UPDATE SET host = excluded.host, started = {started},
                 heartbeat = excluded.heartbeat, lease = excluded.lease,
                 incarnation = excluded.incarnation
             WHERE runners.incarnation IS NOT DISTINCT FROM excluded.incarnation
                OR runners.heartbeat + runners.lease <= {NOW}
             RETURNING 1"
        ),
        &[&runner, &host_name(), &lease.as_secs_f64(), &incarnation()],
    )?;
    Ok(!rows.is_empty())
}

fn in_use(url: &str, runner: &str) -> StateError {
    StateError::RunnerInUse {
        runner: runner.to_owned(),
        url: url.to_owned(),
    }
}

/// Refuses a runner name another live process holds.
pub(crate) fn check_name(client: &mut Client, url: &str, runner: &str) -> Result<(), StateError> {
    if held_by_another(client, runner).map_err(error(url))? {
        return Err(in_use(url, runner));
    }
    Ok(())
}

fn taken(rows: Vec<::postgres::Row>, runner: &str) -> Vec<TakenOver> {
    rows.iter()
        .map(|r| TakenOver {
            fire: Fire::from_parts(r.get(0), r.get(1), runner.to_owned()),
            from: r.get(2),
        })
        .collect()
}

pub(crate) fn join(
    client: &mut Client,
    url: &str,
    runner: &str,
    lease: Duration,
) -> Result<Vec<TakenOver>, StateError> {
    let err = error(url);
    let mut tx = client.transaction().map_err(&err)?;
    if !upsert_runner(&mut tx, runner, lease, true).map_err(&err)? {
        return Err(in_use(url, runner));
    }
    // A former process under this name cannot be running them any more.
    let rows = tx
        .query(
            &format!(
                "UPDATE fires SET taken_from = runner, claimed = {NOW}
                  WHERE runner = $1 AND status = 'running'
              RETURNING job, scheduled, runner"
            ),
            &[&runner],
        )
        .map_err(&err)?;
    tx.commit().map_err(&err)?;
    Ok(taken(rows, runner))
}

pub(crate) fn heartbeat(
    client: &mut Client,
    url: &str,
    runner: &str,
    lease: Duration,
    take_over: bool,
) -> Result<Vec<TakenOver>, StateError> {
    let err = error(url);
    let mut tx = client.transaction().map_err(&err)?;
    if !upsert_runner(&mut tx, runner, lease, false).map_err(&err)? {
        return Err(in_use(url, runner));
    }
    let mut taken_over = Vec::new();
    if take_over {
        // Row locks (skipping rows another runner is taking now) and the
        // re-check of the holder on the newest row version make sure one
        // runner alone takes each fire.
        let rows = tx
            .query(
                &format!(
                    "WITH orphan AS (
                         SELECT f.job, f.scheduled, f.runner FROM fires f
                          WHERE f.status = 'running' AND f.runner <> $1
                            AND NOT EXISTS (SELECT 1 FROM runners r
                                             WHERE r.id = f.runner AND r.heartbeat + r.lease > {NOW})
                          FOR UPDATE OF f SKIP LOCKED)
                     UPDATE fires f SET runner = $1, taken_from = o.runner, claimed = {NOW}
                       FROM orphan o
                      WHERE f.job = o.job AND f.scheduled = o.scheduled
                        AND f.runner = o.runner AND f.status = 'running'
                  RETURNING f.job, f.scheduled, o.runner"
                ),
                &[&runner],
            )
            .map_err(&err)?;
        taken_over = taken(rows, runner);
        tx.execute(
            &format!("DELETE FROM fires WHERE status = 'done' AND claimed < {NOW} - $1"),
            &[&FORGET_AFTER_SECS],
        )
        .map_err(&err)?;
        tx.execute(
            &format!("DELETE FROM runners WHERE heartbeat < {NOW} - $1"),
            &[&FORGET_AFTER_SECS],
        )
        .map_err(&err)?;
    }
    tx.commit().map_err(&err)?;
    Ok(taken_over)
}

pub(crate) fn claim(
    client: &mut Client,
    url: &str,
    fire: &Fire,
    forbid_overlap: bool,
) -> Result<Claim, StateError> {
    let err = error(url);
    let mut tx = client.transaction().map_err(&err)?;
    // Claims of one job are decided one at a time, so the overlap check
    // and the insert see the same fires.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('pushguard fire ' || $1, 0))",
        &[&fire.job()],
    )
    .map_err(&err)?;
    if let Some(row) = tx
        .query_opt(
            "SELECT runner FROM fires WHERE job = $1 AND scheduled = $2",
            &[&fire.job(), &fire.scheduled_ms()],
        )
        .map_err(&err)?
    {
        tx.commit().map_err(&err)?;
        return Ok(Claim::Taken { by: row.get(0) });
    }
    let running = if forbid_overlap {
        tx.query_opt(
            &format!(
                "SELECT f.runner FROM fires f JOIN runners r ON r.id = f.runner
                  WHERE f.job = $1 AND f.status = 'running' AND r.heartbeat + r.lease > {NOW}
                  LIMIT 1"
            ),
            &[&fire.job()],
        )
        .map_err(&err)?
        .map(|row| row.get::<_, String>(0))
    } else {
        None
    };
    tx.execute(
        &format!(
            "INSERT INTO fires (job, scheduled, runner, claimed, status)
             VALUES ($1, $2, $3, {NOW}, 'running')"
        ),
        &[&fire.job(), &fire.scheduled_ms(), &fire.runner()],
    )
    .map_err(&err)?;
    tx.commit().map_err(&err)?;
    Ok(match running {
        Some(by) => Claim::Overlap { by },
        None => Claim::Won,
    })
}

/// Closes `fire` if its runner still holds it; inside the transaction that
/// records its run, or alone.
pub(super) fn end_in(
    client: &mut impl GenericClient,
    fire: &Fire,
    outcome: &str,
    run_id: Option<i64>,
) -> Result<u64, ::postgres::Error> {
    client.execute(
        &format!(
            "UPDATE fires SET status = 'done', outcome = $4, run_id = $5, ended = {NOW}
              WHERE job = $1 AND scheduled = $2 AND runner = $3 AND status = 'running'"
        ),
        &[
            &fire.job(),
            &fire.scheduled_ms(),
            &fire.runner(),
            &outcome,
            &run_id,
        ],
    )
}

pub(crate) fn end(
    client: &mut Client,
    url: &str,
    fire: &Fire,
    outcome: &str,
) -> Result<(), StateError> {
    end_in(client, fire, outcome, None).map_err(error(url))?;
    Ok(())
}

pub(crate) fn leave(client: &mut Client, url: &str, runner: &str) -> Result<(), StateError> {
    client
        .execute("DELETE FROM runners WHERE id = $1", &[&runner])
        .map_err(error(url))?;
    Ok(())
}

pub(crate) fn last(client: &mut Client, url: &str) -> Result<Vec<FireStatus>, StateError> {
    let rows = client
        .query(
            "SELECT DISTINCT ON (job) job, scheduled, runner, status, outcome, taken_from
               FROM fires ORDER BY job, scheduled DESC",
            &[],
        )
        .map_err(error(url))?;
    Ok(rows
        .iter()
        .map(|r| FireStatus {
            fire: Fire::from_parts(r.get(0), r.get(1), r.get(2)),
            status: r.get(3),
            outcome: r.get(4),
            taken_from: r.get(5),
        })
        .collect())
}
