//! `pushguard outbox` and `pushguard history`: inspect the state file and
//! deliver what it holds.

use pushguard_cli::{errln, outln};
use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use clap::Args;
use pushguard::{GroupingKey, OutboxEntry, RunRecord};
use serde_json::json;

use super::args::{GatewayArgs, StateArgs, classify, usage};

#[derive(Debug, Args)]
pub(crate) struct OutboxArgs {
    /// Deliver every spooled push now, oldest first per group, each to the
    /// gateway it was meant for (with the credentials and TLS settings given
    /// here). Exit code 1 when something is still left.
    #[arg(long)]
    flush: bool,

    /// Delete the dead letters (pushes the gateway refused) after showing them.
    #[arg(long)]
    drop_dead: bool,

    /// Delete the entry with this ID, pending or dead (a push that can never
    /// be delivered); repeatable. The run's history then says `dropped`.
    #[arg(long = "drop", value_name = "ID")]
    drop: Vec<i64>,

    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    state: StateArgs,

    #[command(flatten)]
    gateway: GatewayArgs,
}

#[derive(Debug, Args)]
pub(crate) struct HistoryArgs {
    /// Only runs of this job.
    #[arg(value_name = "NAME")]
    job: Option<String>,

    /// How many runs to show, newest first (at least 1).
    #[arg(long, value_name = "N", default_value_t = 20,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    limit: usize,

    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    state: StateArgs,
}

fn time(unix: f64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs_f64(unix.max(0.0));
    humantime::format_rfc3339_seconds(at).to_string()
}

fn group(path: &str) -> String {
    GroupingKey::from_path(path).map_or_else(|| path.to_owned(), |key| key.display())
}

pub(crate) fn outbox(args: OutboxArgs) -> anyhow::Result<ExitCode> {
    let Some(state) = args.state.open_existing()? else {
        if args.json {
            outln!("[]");
        } else {
            outln!("outbox is empty (no state file yet)");
        }
        return Ok(ExitCode::SUCCESS);
    };
    let mut code = ExitCode::SUCCESS;
    if args.flush {
        // The gateways alone, not every entry: a long outbox replays in
        // flat memory.
        let gateways = state.pending_gateways().map_err(|e| usage(e.to_string()))?;
        // Spellings of one gateway share one queue: flush it once.
        let mut flushed = BTreeSet::new();
        for url in gateways {
            let gateway = args.gateway.gateway_at(&url)?;
            if !flushed.insert(gateway.identity().to_owned()) {
                continue;
            }
            let report = state.flush(&gateway).map_err(classify)?;
            errln!(
                "pushguard: {url}: delivered {}, refused {}, left for later {}{}",
                report.delivered,
                report.rejected,
                report.deferred,
                report
                    .last_error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            );
            if report.deferred > 0 {
                code = ExitCode::from(1);
            }
        }
    }
    let entries = state.outbox().map_err(|e| usage(e.to_string()))?;
    if args.json {
        let list: Vec<_> = entries.iter().map(entry_json).collect();
        outln!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        print_entries(&entries);
    }
    for id in &args.drop {
        match state.drop_entry(*id).map_err(|e| usage(e.to_string()))? {
            true => errln!("pushguard: dropped entry {id}"),
            false => return Err(usage(format!("--drop {id}: no such outbox entry"))),
        }
    }
    if args.drop_dead {
        let dropped = state
            .drop_dead_letters()
            .map_err(|e| usage(e.to_string()))?;
        errln!("pushguard: dropped {dropped} dead letter(s)");
    }
    Ok(code)
}

fn entry_json(e: &OutboxEntry) -> serde_json::Value {
    json!({
        "id": e.id,
        "status": if e.dead { "dead" } else { "pending" },
        "gateway": e.gateway,
        "path": e.path,
        "group": GroupingKey::from_path(&e.path).map(|k| {
            let mut labels = k.labels().clone();
            labels.insert("job".into(), k.job().to_owned());
            labels
        }),
        "method": e.method,
        "bytes": e.bytes,
        "created": e.created,
        "attempts": e.attempts,
        "first_attempt": e.first_attempt,
        "last_attempt": e.last_attempt,
        "last_error": e.last_error,
    })
}

fn print_entries(entries: &[OutboxEntry]) {
    if entries.is_empty() {
        outln!("outbox is empty");
        return;
    }
    outln!(
        "{:>6}  {:<7}  {:<6}  {:<20}  {:>8}  GATEWAY GROUP / LAST ERROR",
        "ID",
        "STATUS",
        "METHOD",
        "SPOOLED",
        "ATTEMPTS"
    );
    for e in entries {
        outln!(
            "{:>6}  {:<7}  {:<6}  {:<20}  {:>8}  {} {}",
            e.id,
            if e.dead { "dead" } else { "pending" },
            e.method,
            time(e.created),
            e.attempts,
            e.gateway,
            group(&e.path)
        );
        if let Some(error) = &e.last_error {
            outln!("{:>6}  {error}", "");
        }
    }
}

pub(crate) fn history(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let Some(state) = args.state.open_existing()? else {
        if args.json {
            outln!("[]");
        } else {
            outln!("no runs recorded (no state file yet)");
        }
        return Ok(ExitCode::SUCCESS);
    };
    let runs = state
        .history(args.job.as_deref(), args.limit)
        .map_err(|e| usage(e.to_string()))?;
    if args.json {
        let list: Vec<_> = runs.iter().map(RunRecord::to_json).collect();
        outln!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        match &args.job {
            Some(job) => outln!("no runs of {job:?} recorded in {}", state.path().display()),
            None => outln!("no runs recorded in {}", state.path().display()),
        }
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:>6}  {:<20}  {:>10}  {:<8}  {:>4}  {:<9}  {:<32}  JOB",
        "ID",
        "STARTED",
        "DURATION",
        "OUTCOME",
        "EXIT",
        "PUSH",
        "TRACE"
    );
    for run in &runs {
        let mut key = run.job.clone();
        if !run.labels.is_empty() {
            let labels: Vec<String> = run
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            key = format!("{key} {{{}}}", labels.join(","));
        }
        outln!(
            "{:>6}  {:<20}  {:>9.3}s  {:<8}  {:>4}  {:<9}  {:<32}  {key}",
            run.id,
            time(run.start),
            run.duration,
            run.outcome,
            run.exit_code,
            run.push_status,
            run.trace_id.as_deref().unwrap_or("-"),
        );
    }
    Ok(ExitCode::SUCCESS)
}
