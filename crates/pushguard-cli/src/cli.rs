//! Command-line definitions and dispatch. Only parsing and validation live
//! here; the work is done by the library.

mod args;
mod exec;
mod outbox;
mod prune;
mod push;
mod runner;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub(crate) use args::UsageError;

/// Make batch jobs observable: push every run's outcome, duration and
/// timestamps to a Prometheus Pushgateway.
#[derive(Debug, Parser)]
#[command(name = "pushguard", version, about, long_about = None, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

const AUTH_ENVIRONMENT: &str = "\
Environment:
  PUSHGATEWAY_USERNAME, PUSHGATEWAY_PASSWORD   basic auth for the gateway
  PUSHGATEWAY_BEARER_TOKEN                     bearer token for the gateway
    (each also as ..._FILE: the path of a file that holds it)";

const ENVIRONMENT: &str = "\
Environment:
  PUSHGATEWAY_USERNAME, PUSHGATEWAY_PASSWORD   basic auth for the gateway
  PUSHGATEWAY_BEARER_TOKEN                     bearer token for the gateway
    (each also as ..._FILE: the path of a file that holds it)
  OTEL_EXPORTER_OTLP_ENDPOINT                  trace the run over OTLP (off when unset);
    also OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, _PROTOCOL, _HEADERS, OTEL_SERVICE_NAME,
    OTEL_RESOURCE_ATTRIBUTES, OTEL_SDK_DISABLED
  TRACEPARENT, TRACESTATE, BAGGAGE             an inherited trace context, continued;
    exec passes the run's own context to the command in the same variables";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a command and push the run's metrics when it ends.
    ///
    /// The command runs without a shell, with stdin, stdout and stderr passed
    /// through. pushguard exits with the command's own exit code (128+signal
    /// when it was killed by a signal, 124 on --timeout) whatever happens to
    /// the push; a push problem is one warning line on stderr.
    #[command(after_help = ENVIRONMENT)]
    Exec(exec::ExecArgs),
    /// Push metrics given on the command line, in a file or on stdin.
    ///
    /// Exit codes: 0 pushed, 1 the push failed, 2 usage or configuration error.
    #[command(after_help = AUTH_ENVIRONMENT)]
    Push(push::PushArgs),
    /// Delete a group (all of its metrics) from the gateway.
    ///
    /// Exit codes: 0 deleted, 1 the delete failed, 2 usage or configuration error.
    #[command(after_help = AUTH_ENVIRONMENT)]
    Delete(push::DeleteArgs),
    /// Delete the gateway groups whose last push is older than --older-than.
    ///
    /// The age is the gateway's own push_time_seconds. A group with a push
    /// waiting in the state file's outbox is kept. Exit codes: 0 done, 1 a
    /// delete failed, 2 usage or configuration error.
    #[command(after_help = AUTH_ENVIRONMENT)]
    Prune(prune::PruneArgs),
    /// Show the pushes waiting in the state file's outbox, or deliver them now.
    ///
    /// A push that could not be delivered (gateway down, hanging, answering
    /// 5xx) waits here and goes out, in order, before the next push to its
    /// group; pushes the gateway refused (4xx) stay as dead letters with the
    /// gateway's reason. Exit codes: 0 done, 1 something is left after
    /// --flush, 2 usage or state file error.
    Outbox(outbox::OutboxArgs),
    /// Show the recorded runs, newest first.
    History(outbox::HistoryArgs),
    /// Run the scheduled jobs of the job files until SIGTERM or SIGINT.
    ///
    /// Every run goes through the same guard as `exec`: metrics pushed (or
    /// spooled), history recorded, one span when tracing is on. SIGHUP
    /// re-reads the job files. An HTTP endpoint serves /health, /metrics,
    /// /api/jobs, /api/runs and POST /api/jobs/NAME/trigger.
    Run(runner::RunArgs),
    /// Run one configured job now, once; exit 0 when it succeeded, 1 when not.
    ///
    /// SIGTERM or SIGINT stop the job as a timeout does (SIGTERM to its
    /// process group, SIGKILL 10 s later), record and push the stopped run
    /// (a failure, exit code 143), then exit 143 on SIGTERM or 130 on SIGINT,
    /// as a shell reports a process ended by that signal, whatever the job's
    /// own exit code was.
    Trigger(runner::TriggerArgs),
    /// Check the configuration and every job file without running anything;
    /// exit 2 listing every problem (file, key, reason).
    Check(runner::CheckArgs),
}

pub(crate) fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Exec(args) => exec::run(args),
        Command::Push(args) => push::push(args),
        Command::Delete(args) => push::delete(args),
        Command::Prune(args) => prune::prune(args),
        Command::Outbox(args) => outbox::outbox(args),
        Command::History(args) => outbox::history(args),
        Command::Run(args) => runner::run(args),
        Command::Trigger(args) => runner::trigger(args),
        Command::Check(args) => runner::check(args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
