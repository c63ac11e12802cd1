//! `pushguard prune`: parses its flags and calls [`pushguard_cli::prune`],
//! which owns the decision (see there).

use pushguard_cli::prune::{Matcher, Prune};
use pushguard_cli::{errln, outln};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::args::{GatewayArgs, StateArgs, classify, parse_duration, usage};

#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// Delete groups whose last push (push_time_seconds) is older than this
    /// (`7d`, `36h`).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    older_than: Duration,

    /// Only groups whose label matches, repeatable (all must match):
    /// `LABEL=VALUE` exactly, `LABEL=~REGEX` (anchored, as in PromQL). A
    /// label the group does not have matches as the empty value.
    #[arg(long = "match", value_name = "L=V|L=~RE", value_parser = parse_matcher)]
    matchers: Vec<Matcher>,

    /// List what would be deleted, delete nothing.
    #[arg(long)]
    dry_run: bool,

    #[command(flatten)]
    gateway: GatewayArgs,

    #[command(flatten)]
    state: StateArgs,
}

fn parse_matcher(arg: &str) -> Result<Matcher, String> {
    arg.parse()
}

pub(crate) fn prune(args: PruneArgs) -> anyhow::Result<ExitCode> {
    if args.gateway.is_remote_write() {
        return Err(usage(
            "prune deletes Pushgateway groups; a remote-write receiver keeps samples, \
             which its own retention ages out (drop --sink remote-write)",
        ));
    }
    let gateway = args.gateway.gateway()?;
    let spooled = match args.state.open_existing()? {
        Some(state) => pushguard_cli::prune::spooled_paths(&state, &gateway, |url| {
            args.gateway
                .gateway_at(url)
                .ok()
                .map(|g| g.identity().to_owned())
        })
        .map_err(|e| usage(e.to_string()))?,
        None => Default::default(),
    };
    let settings = Prune {
        older_than: args.older_than,
        matchers: args.matchers,
        dry_run: args.dry_run,
    };
    let pruned = pushguard_cli::prune::prune(&gateway, &spooled, &settings).map_err(classify)?;
    let now = pushguard_cli::prune::now();
    let mut failed = false;
    for group in &pruned {
        let line = group.describe(now, settings.dry_run);
        if group.error.is_some() {
            failed = true;
            errln!("pushguard: {line}");
        } else {
            outln!("{line}");
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
