//! `pushguard push` and `pushguard delete`.

use pushguard_cli::errln;
use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use pushguard::{Body, Method, MetricKind, PushError, PushReport, State};

use super::args::{GatewayArgs, GroupArgs, StateArgs, classify, usage};

#[derive(Debug, Args)]
pub(crate) struct PushArgs {
    #[command(flatten)]
    group: GroupArgs,

    /// A metric to push, repeatable: `--metric backup_size_bytes=1.2e9`,
    /// `--metric files_total=42:counter`. TYPE is gauge (default), counter or untyped.
    #[arg(long = "metric", value_name = "NAME=VALUE[:TYPE]")]
    metrics: Vec<String>,

    /// Exposition text to push, from a file or `-` for stdin (the format a
    /// `/metrics` endpoint serves; no timestamps, no job or grouping labels).
    #[arg(long, value_name = "PATH|-")]
    file: Option<PathBuf>,

    /// Replace the whole group (PUT) instead of only the pushed families (POST).
    #[arg(long)]
    replace: bool,

    #[command(flatten)]
    gateway: GatewayArgs,

    #[command(flatten)]
    state: StateArgs,

    /// Send directly, without the state file's outbox (wins over --state).
    #[arg(long)]
    no_state: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    #[command(flatten)]
    group: GroupArgs,

    #[command(flatten)]
    gateway: GatewayArgs,

    #[command(flatten)]
    state: StateArgs,

    /// Send directly, without the state file's outbox (wins over --state).
    #[arg(long)]
    no_state: bool,
}

/// The state to send through, or `None` (with a warning when it is broken).
fn state(args: &StateArgs, off: bool) -> Option<State> {
    if off {
        return None;
    }
    match args.open() {
        Ok(state) => Some(state),
        Err(error) => {
            errln!("pushguard: warning: {error}; sending without the state file");
            None
        }
    }
}

/// Exit 0 only when the gateway has the push: a push kept in the outbox for
/// later is exit 1 (as documented), with the reason.
fn report(result: Result<PushReport, PushError>) -> anyhow::Result<ExitCode> {
    let report = result
        .and_then(PushReport::into_delivered)
        .map_err(classify)?;
    if let Some(problem) = report.state_warning {
        errln!("pushguard: warning: {problem}; sent without the state file");
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_metric(body: &mut Body, arg: &str) -> anyhow::Result<()> {
    let (name, rest) = arg
        .split_once('=')
        .ok_or_else(|| usage(format!("--metric: expected NAME=VALUE[:TYPE], got {arg:?}")))?;
    let (value, kind) = match rest.rsplit_once(':') {
        Some((value, kind)) => (
            value,
            kind.parse::<MetricKind>()
                .map_err(|e| usage(format!("--metric {arg:?}: {e}")))?,
        ),
        None => (rest, MetricKind::Gauge),
    };
    let value: f64 = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| {
                usage(format!(
                    "--metric {arg:?}: invalid value {value:?}: expected a finite number (or +Inf, -Inf, NaN)"
                ))
            })?,
    };
    body.sample(name, "", kind, value)
        .map_err(|e| usage(format!("--metric {arg:?}: {e}")))
}

pub(crate) fn push(args: PushArgs) -> anyhow::Result<ExitCode> {
    let key = args.group.key()?;
    let mut body = Body::new();
    for metric in &args.metrics {
        parse_metric(&mut body, metric)?;
    }
    if let Some(path) = &args.file {
        let text = if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read metrics from stdin")?;
            text
        } else {
            std::fs::read_to_string(path)
                .with_context(|| format!("--file: cannot read {}", path.display()))
                .map_err(|e| usage(format!("{e:#}")))?
        };
        let source = path.display().to_string();
        body.add_text(&text)
            .map_err(|e| usage(format!("--file {source}: {e}")))?;
    }
    if body.is_empty() {
        return Err(usage(
            "nothing to push: give --metric NAME=VALUE or --file PATH|-",
        ));
    }
    body.check_grouping(&key).map_err(classify)?;
    if args.replace && args.gateway.is_remote_write() {
        return Err(usage(
            "--replace replaces a Pushgateway group; a remote-write receiver has no groups \
             (drop --replace or use --sink pushgateway)",
        ));
    }
    let gateway = args.gateway.gateway()?;
    let method = if args.replace {
        Method::Put
    } else {
        Method::Post
    };
    report(match state(&args.state, args.no_state) {
        Some(state) => state.push(&gateway, &key, method, &body),
        None => gateway.push(&key, method, &body),
    })
}

pub(crate) fn delete(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let key = args.group.key()?;
    let gateway = args.gateway.gateway()?;
    report(match state(&args.state, args.no_state) {
        Some(state) => state.delete(&gateway, &key),
        None => gateway.delete(&key),
    })
}
