//! Flags shared by the subcommands and their conversion into library settings.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use pushguard::{Gateway, GatewayBuilder, GroupingKey, PushError, State};

/// An error in the command line or configuration: exit code 2.
#[derive(Debug)]
pub(crate) struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Wraps `error` as a usage error when it is one (bad names, bad settings).
pub(crate) fn classify(error: PushError) -> anyhow::Error {
    match error {
        PushError::InvalidMetricName { .. }
        | PushError::InvalidLabelName { .. }
        | PushError::InvalidJobName { .. }
        | PushError::InvalidBody { .. }
        | PushError::Config { .. }
        | PushError::State(_) => anyhow::Error::new(UsageError(format!("{:#}", Chain(&error)))),
        other => anyhow::Error::new(other),
    }
}

/// Displays an error with its sources, `a: b: c`.
pub(crate) struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(message.into()))
}

#[derive(Debug, Args)]
pub(crate) struct GroupArgs {
    /// Job name: the `job` label of the group on the gateway.
    #[arg(long, value_name = "NAME")]
    pub job: String,

    /// Extra grouping label, repeatable (`--label env=prod --label host=db1`).
    /// Values may be any UTF-8 text, including empty and `/`.
    #[arg(long = "label", value_name = "K=V", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
}

impl GroupArgs {
    pub(crate) fn key(&self) -> anyhow::Result<GroupingKey> {
        let mut key =
            GroupingKey::new(self.job.clone()).map_err(|e| usage(format!("--job: {e}")))?;
        for (i, (name, value)) in self.labels.iter().enumerate() {
            if self.labels[..i].iter().any(|(seen, _)| seen == name) {
                return Err(usage(format!(
                    "--label: {name:?} is given twice; give each label once"
                )));
            }
            key = key
                .label(name.clone(), value.clone())
                .map_err(|e| usage(format!("--label: {e}")))?;
        }
        Ok(key)
    }
}

fn parse_label(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((name, value)) => {
            pushguard::validate_label_name(name).map_err(|e| e.to_string())?;
            Ok((name.to_owned(), value.to_owned()))
        }
        None => Err(format!("expected NAME=VALUE, got {arg:?}")),
    }
}

pub(crate) fn parse_duration(arg: &str) -> Result<Duration, String> {
    humantime::parse_duration(arg)
        .map_err(|e| format!("invalid duration {arg:?} ({e}); use e.g. 30s, 10m, 1h30m, 500ms"))
}

/// Where a run's metrics go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Sink {
    /// A Prometheus Pushgateway (--gateway).
    Pushgateway,
    /// A Prometheus remote-write receiver (--remote-write-url): Prometheus,
    /// Mimir, Cortex, Thanos Receive, VictoriaMetrics.
    RemoteWrite,
}

#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    /// Pushgateway base URL.
    #[arg(long, env = "PUSHGATEWAY_URL", value_name = "URL", default_value = pushguard::Gateway::DEFAULT_URL)]
    pub gateway: String,

    /// Where the metrics go: the Pushgateway, or a Prometheus remote-write
    /// receiver (samples stamped with the run's end, job and labels on every
    /// series).
    #[arg(
        long,
        value_enum,
        env = "PUSHGUARD_SINK",
        value_name = "SINK",
        default_value = "pushgateway"
    )]
    pub sink: Sink,

    /// Remote-write URL, such as http://prometheus:9090/api/v1/write or
    /// Mimir's …/api/v1/push (with --sink remote-write).
    #[arg(long, env = "PUSHGUARD_REMOTE_WRITE_URL", value_name = "URL")]
    pub remote_write_url: Option<String>,

    /// Tenant for a multi-tenant store: the X-Scope-OrgID header of every
    /// remote-write request.
    #[arg(long, env = "PUSHGUARD_REMOTE_WRITE_TENANT", value_name = "ID")]
    pub remote_write_tenant: Option<String>,

    /// Give up pushing after this long, retries included.
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_duration)]
    pub push_deadline: Duration,

    /// Retries after a failed attempt (connection errors, timeouts, 5xx only;
    /// not after a TLS certificate failure).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub push_retries: u32,

    /// Extra HTTP header for the gateway, repeatable (`--header 'X-Org: media'`).
    #[arg(long = "header", value_name = "NAME:VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,

    /// PEM file with CA certificates to trust for an https gateway.
    #[arg(long, env = "PUSHGATEWAY_CA_FILE", value_name = "PATH")]
    pub ca_file: Option<PathBuf>,

    /// PEM file with a client certificate and its private key (mutual TLS).
    #[arg(long, env = "PUSHGATEWAY_CERT_FILE", value_name = "PATH")]
    pub cert_file: Option<PathBuf>,

    /// PEM file with the private key, when it is not in --cert-file.
    #[arg(
        long,
        env = "PUSHGATEWAY_KEY_FILE",
        value_name = "PATH",
        requires = "cert_file"
    )]
    pub key_file: Option<PathBuf>,
}

fn parse_header(arg: &str) -> Result<(String, String), String> {
    match arg.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!("expected NAME:VALUE, got {arg:?}")),
    }
}

impl GatewayArgs {
    /// Builds the client; credentials come from the environment
    /// (`PUSHGATEWAY_USERNAME`/`PASSWORD` or `PUSHGATEWAY_BEARER_TOKEN`, or
    /// their `_FILE` variants).
    pub(crate) fn gateway(&self) -> anyhow::Result<Gateway> {
        match self.sink {
            Sink::Pushgateway => self.gateway_at(&self.gateway),
            Sink::RemoteWrite => {
                let url = self.remote_write_url.as_deref().ok_or_else(|| {
                    usage(
                        "--sink remote-write needs --remote-write-url URL \
                         (or PUSHGUARD_REMOTE_WRITE_URL)",
                    )
                })?;
                self.client(url, true)
            }
        }
    }

    /// Whether runs go to a remote-write receiver.
    pub(crate) fn is_remote_write(&self) -> bool {
        self.sink == Sink::RemoteWrite
    }

    /// The client with these settings for another gateway URL (an outbox
    /// entry's; a stored remote-write request goes out as one whatever the
    /// sink).
    pub(crate) fn gateway_at(&self, url: &str) -> anyhow::Result<Gateway> {
        self.client(url, false)
    }

    fn client(&self, url: &str, remote_write: bool) -> anyhow::Result<Gateway> {
        let mut builder = GatewayBuilder::from_env().map_err(classify)?;
        builder = if remote_write {
            builder.remote_write(url)
        } else {
            builder.url(url)
        };
        if let Some(tenant) = &self.remote_write_tenant {
            builder = builder.tenant(tenant.clone());
        }
        let mut builder = builder
            .deadline(self.push_deadline)
            .attempt_timeout(self.push_deadline.min(Duration::from_secs(2)))
            .retries(self.push_retries);
        for (name, value) in &self.headers {
            builder = builder.header(name.clone(), value.clone());
        }
        if let Some(path) = &self.ca_file {
            let pem = read(path, "--ca-file")?;
            builder = builder.ca_certificate_pem(pem);
        }
        if let Some(path) = &self.cert_file {
            let mut pem = read(path, "--cert-file")?;
            if let Some(key) = &self.key_file {
                pem.push(b'\n');
                pem.extend(read(key, "--key-file")?);
            }
            builder = builder.client_identity_pem(pem);
        }
        builder.build().map_err(classify)
    }
}

fn read(path: &PathBuf, flag: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path)
        .with_context(|| format!("{flag}: cannot read {}", path.display()))
        .map_err(|e| usage(format!("{e:#}")))
}

#[derive(Debug, Clone, Args)]
pub(crate) struct StateArgs {
    /// State file: outbox of undelivered pushes, run history, cumulative
    /// counters; or a postgres:// URL to share the state between hosts (a
    /// build with the `postgres` feature; password from the URL, PGPASSWORD
    /// or PGPASSFILE) [default: $XDG_STATE_HOME/pushguard/state.db, else
    /// ~/.local/state/pushguard/state.db]
    #[arg(long = "state", env = "PUSHGUARD_STATE", value_name = "PATH")]
    pub path: Option<PathBuf>,
}

impl StateArgs {
    pub(crate) fn open(&self) -> Result<State, pushguard::StateError> {
        match &self.path {
            Some(path) => State::open(path),
            None => State::open_default(),
        }
    }

    /// Opens the state waiting at most `wait` for a file another process
    /// holds locked.
    pub(crate) fn open_within(&self, wait: Duration) -> Result<State, pushguard::StateError> {
        match &self.path {
            Some(path) => State::open_within(path, wait),
            None => State::open_within(State::default_path()?, wait),
        }
    }

    /// Opens an existing state file for `history` and `outbox`, which never
    /// create one: a missing file named by `--state`/`PUSHGUARD_STATE` is a
    /// usage error (a mistyped path), a missing default file is `None`
    /// (nothing has run yet). A broken file is a usage error.
    pub(crate) fn open_existing(&self) -> anyhow::Result<Option<State>> {
        let path = match &self.path {
            Some(path) => path.clone(),
            None => State::default_path().map_err(|e| usage(e.to_string()))?,
        };
        // A database URL names no file; its tables are created on first use.
        if !State::is_database_url(&path) && !path.exists() {
            return match &self.path {
                Some(_) => Err(usage(format!(
                    "no state file at {} (check --state or PUSHGUARD_STATE; history and outbox never create one)",
                    path.display()
                ))),
                None => Ok(None),
            };
        }
        State::open(&path)
            .map(Some)
            .map_err(|e| usage(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::parse_duration;

    /// The cases: `PROPTEST_CASES` when set, else 512 (`scripts/fuzz` sets it).
    fn config() -> ProptestConfig {
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(512);
        ProptestConfig::with_cases(cases)
    }

    /// Durations as people write them, with huge numbers, odd units and
    /// odd characters spliced in.
    fn duration_text() -> impl Strategy<Value = String> {
        let number = prop_oneof![
            (0u64..100_000).prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            Just("99999999999999999999999".to_owned()),
            Just("-1".to_owned()),
            Just("1.5".to_owned()),
        ];
        let unit = prop::sample::select(vec![
            "ns", "us", "µs", "ms", "s", "sec", "m", "min", "h", "d", "days", "w", "M", "y",
            "years", "", " ", "x",
        ]);
        let odd = prop::sample::select(vec![
            "", " ", "\t", "\0", "\r\n", "\u{a0}", "\u{3000}", "é", "😀", "+", "-",
        ]);
        prop::collection::vec((number, unit, odd), 1..5).prop_map(|parts| {
            parts
                .into_iter()
                .map(|(n, u, o)| format!("{n}{u}{o}"))
                .collect::<String>()
        })
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn durations_never_panic(text in duration_text(), other in any::<String>()) {
            if let Err(message) = parse_duration(&text) {
                prop_assert!(message.contains(&format!("{text:?}")), "{message}");
            }
            let _ = parse_duration(&other);
        }
    }
}
