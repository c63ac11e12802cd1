//! The runner's configuration: `config/pushguard.toml` (runner settings,
//! gateway, defaults for every job) and one `jobs/NAME.toml` per job.
//!
//! Files are read into raw serde structs that refuse unknown keys, then
//! validated into typed settings; every problem becomes a [`ConfigError`]
//! naming the file, the dotted key and the value, and loading keeps going so
//! `pushguard check` can list all of them. Precedence, highest first: the
//! command line ([`ConfigLoader`] setters), the environment, the file, the
//! defaults.

mod error;
mod job;
mod raw;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

pub use error::{ConfigError, ConfigErrors};
pub use job::{CatchUp, JobAction, JobDefaults, JobSink, JobSpec, Overlap, job_files, load_jobs};

use job::Check;
use raw::{RawConfig, RawDefaults, RawGateway, RawRunner, RawSink, SinkKind};

/// The configuration file read when none is named and it exists (relative
/// to the working directory).
pub const DEFAULT_CONFIG_PATH: &str = "config/pushguard.toml";

/// The address of the runner's HTTP endpoint when none is configured: loopback
/// only, so `POST /api/jobs/NAME/trigger` works without a token.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9465);

/// The runner's settings, validated, with every default applied.
///
/// | `[runner]` key | default |
/// |---|---|
/// | `listen` | `127.0.0.1:9465` (loopback only) |
/// | `jobs_dir` | `jobs`, relative to the configuration file's directory |
/// | `state` | none: the state file's own default ([`State::default_path`](pushguard::State::default_path)) |
/// | `shutdown_grace` | 30 s |
/// | `outbox_drain_interval` | 60 s |
/// | `api_token` / `api_token_file` | none: trigger only on a loopback listener |
/// | `log_tail_lines` | 50 |
/// | `runner_id` | `HOST:PID`: names this runner on a shared schedule |
/// | `lease` | 15 s: how long a runner on a shared schedule may go without a heartbeat before another one takes over its runs |
/// | `trace_url` | none: trace ids on the status page are plain text |
///
/// `[gateway]`: see [`GatewaySettings`]; `[defaults]`: see [`JobDefaults`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RunnerConfig {
    /// The configuration file that was read, if any.
    pub file: Option<PathBuf>,
    /// Address of the HTTP endpoint.
    pub listen: SocketAddr,
    /// Directory of the job files.
    pub jobs_dir: PathBuf,
    /// State file; `None`: the default location.
    pub state: Option<PathBuf>,
    /// How long running jobs get to finish on shutdown before they are killed.
    pub shutdown_grace: Duration,
    /// How often the outbox is drained.
    pub outbox_drain_interval: Duration,
    /// Token that `POST /api/jobs/NAME/trigger` requires; see [`trigger_access`](Self::trigger_access).
    pub api_token: Option<ApiToken>,
    /// How many of a command's last output lines are kept with its run;
    /// whatever this is, a line keeps at most
    /// [`LINE_BYTES`](crate::supervisor::LINE_BYTES) and the run at most
    /// [`TAIL_BYTES`](crate::supervisor::TAIL_BYTES).
    pub log_tail_lines: usize,
    /// This runner's name on a shared schedule (a `postgres://` state);
    /// `None`: `HOST:PID`.
    pub runner_id: Option<String>,
    /// How long a runner on a shared schedule may go without a heartbeat
    /// before another one takes over the fires it holds. It heartbeats
    /// every third of it.
    pub lease: Duration,
    /// Link of a trace in a trace UI, with `{trace_id}` where the id goes
    /// (`http://jaeger:16686/trace/{trace_id}`): the status page links each
    /// run's trace id to it. `None`: ids are shown as text.
    pub trace_url: Option<String>,
    /// Where and how runs are pushed.
    pub gateway: GatewaySettings,
    /// Job settings for job files that do not set them.
    pub defaults: JobDefaults,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            file: None,
            listen: DEFAULT_LISTEN,
            jobs_dir: PathBuf::from("jobs"),
            state: None,
            shutdown_grace: Duration::from_secs(30),
            outbox_drain_interval: Duration::from_secs(60),
            api_token: None,
            log_tail_lines: 50,
            runner_id: None,
            lease: Duration::from_secs(15),
            trace_url: None,
            gateway: GatewaySettings::default(),
            defaults: JobDefaults::default(),
        }
    }
}

impl RunnerConfig {
    /// Loads the job files of [`jobs_dir`](Self::jobs_dir) with these
    /// defaults: the valid jobs, and the problems of the others.
    pub fn load_jobs(&self) -> (Vec<JobSpec>, Vec<ConfigError>) {
        load_jobs(&self.jobs_dir, &self.defaults)
    }

    /// The job files of [`jobs_dir`](Self::jobs_dir), for reading one at a
    /// time with [`JobSpec::from_file`]; see [`job_files`].
    pub fn job_files(&self) -> Result<(Vec<PathBuf>, Vec<ConfigError>), ConfigError> {
        job_files(&self.jobs_dir)
    }

    /// Who may use `POST /api/jobs/NAME/trigger`.
    ///
    /// ```
    /// use pushguard_cli::{RunnerConfig, TriggerAccess};
    ///
    /// let mut config = RunnerConfig::default();
    /// assert_eq!(config.trigger_access(), TriggerAccess::Loopback);
    /// config.listen = "0.0.0.0:9465".parse()?;
    /// assert_eq!(config.trigger_access(), TriggerAccess::Refused);
    /// # Ok::<(), std::net::AddrParseError>(())
    /// ```
    pub fn trigger_access(&self) -> TriggerAccess<'_> {
        self.trigger_access_at(self.listen)
    }

    /// Who may trigger on a listener actually bound to `local` (which may
    /// differ from [`listen`](Self::listen) when the runner is given its
    /// socket).
    pub fn trigger_access_at(&self, local: SocketAddr) -> TriggerAccess<'_> {
        match &self.api_token {
            Some(token) => TriggerAccess::Token(token),
            None if local.ip().is_loopback() => TriggerAccess::Loopback,
            None => TriggerAccess::Refused,
        }
    }
}

/// Who may trigger a job over HTTP, from [`RunnerConfig::trigger_access`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerAccess<'a> {
    /// Requests must carry `Authorization: Bearer <token>`; check it with
    /// [`ApiToken::matches`].
    Token(&'a ApiToken),
    /// No token is configured, but the listener is loopback-only: allowed.
    Loopback,
    /// No token is configured and the listener is reachable from other
    /// hosts: every trigger request is refused.
    Refused,
}

/// The API token; its `Debug` output does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        ApiToken(token.into())
    }

    /// Compares a presented token in time independent of where they differ.
    ///
    /// ```
    /// let token = pushguard_cli::ApiToken::new("s3cret");
    /// assert!(token.matches("s3cret"));
    /// assert!(!token.matches("s3cre"));
    /// ```
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
        diff == 0 && a.len() == b.len()
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(\"***\")")
    }
}

/// `[gateway]`: where runs are pushed.
///
/// | key | default |
/// |---|---|
/// | `url` | `http://127.0.0.1:9091` (env `PUSHGATEWAY_URL`) |
/// | `push_deadline` | 5 s for one push, retries included |
/// | `retries` | 3 |
///
/// Credentials and TLS come from the environment, as for every subcommand.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GatewaySettings {
    /// Pushgateway base URL.
    pub url: String,
    /// Deadline of one push, retries included.
    pub push_deadline: Duration,
    /// Retries after a failed attempt.
    pub retries: u32,
    /// `[sink] kind = "remote-write"`: the remote-write URL runs go to
    /// instead of the Pushgateway.
    pub remote_write: Option<String>,
    /// `[sink] tenant`: the `X-Scope-OrgID` of remote-write requests.
    pub tenant: Option<String>,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            url: pushguard::Gateway::DEFAULT_URL.to_owned(),
            push_deadline: Duration::from_secs(5),
            retries: 3,
            remote_write: None,
            tenant: None,
        }
    }
}

impl GatewaySettings {
    /// A [`GatewayBuilder`](pushguard::GatewayBuilder) with these settings and
    /// the credentials of the environment
    /// ([`GatewayBuilder::from_env`](pushguard::GatewayBuilder::from_env)).
    pub fn builder(&self) -> Result<pushguard::GatewayBuilder, pushguard::PushError> {
        let mut builder = pushguard::GatewayBuilder::from_env()?
            .url(self.url.clone())
            .deadline(self.push_deadline)
            .attempt_timeout(self.push_deadline.min(Duration::from_secs(2)))
            .retries(self.retries);
        if let Some(url) = &self.remote_write {
            builder = builder.remote_write(url.clone());
        }
        if let Some(tenant) = &self.tenant {
            builder = builder.tenant(tenant.clone());
        }
        Ok(builder)
    }
}

/// Loads the runner's configuration; the setters are the command line and
/// win over the environment, the file and the defaults.
///
/// Environment variables the loader reads, between the command line and the file:
///
/// | variable | setting |
/// |---|---|
/// | `PUSHGUARD_CONFIG` | the configuration file |
/// | `PUSHGUARD_JOBS` | `[runner] jobs_dir` |
/// | `PUSHGUARD_LISTEN` | `[runner] listen` |
/// | `PUSHGUARD_STATE` | `[runner] state` |
/// | `PUSHGUARD_API_TOKEN`, `PUSHGUARD_API_TOKEN_FILE` | `[runner] api_token`, `api_token_file` |
/// | `PUSHGATEWAY_URL` | `[gateway] url` |
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let file = dir.path().join("pushguard.toml");
/// std::fs::write(&file, "[runner]\nlisten = \"127.0.0.1:9000\"\n[defaults]\nretries = 2\n")?;
/// let config = pushguard_cli::ConfigLoader::new()
///     .config_path(&file)
///     .listen("127.0.0.1:9100".parse()?)
///     .environment([("PUSHGATEWAY_URL", "http://gw:9091")])
///     .load_config()?;
/// assert_eq!(config.listen.port(), 9100);
/// assert_eq!(config.gateway.url, "http://gw:9091");
/// assert_eq!(config.defaults.retries, 2);
/// assert_eq!(config.jobs_dir, dir.path().join("jobs"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "a loader does nothing until `load()` or `load_config()` is called"]
pub struct ConfigLoader {
    config_path: Option<PathBuf>,
    jobs_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    gateway_url: Option<String>,
    state: Option<PathBuf>,
    runner_id: Option<String>,
    environment: Option<BTreeMap<String, String>>,
}

/// The pseudo-file that errors in environment variables are reported in.
const ENVIRONMENT_FILE: &str = "environment";

impl ConfigLoader {
    /// A loader that reads the process environment and no command line.
    pub fn new() -> Self {
        Self::default()
    }

    /// The configuration file (`--config`). Without it: `PUSHGUARD_CONFIG`,
    /// else [`DEFAULT_CONFIG_PATH`] if that file exists, else no file (all
    /// defaults). A named file that does not exist is an error.
    pub fn config_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_path = Some(path.into());
        self
    }

    /// The jobs directory (`--jobs`), relative to the working directory.
    pub fn jobs_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.jobs_dir = Some(dir.into());
        self
    }

    /// The HTTP listen address (`--listen`).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// The Pushgateway URL (`--gateway`).
    pub fn gateway_url(mut self, url: impl Into<String>) -> Self {
        self.gateway_url = Some(url.into());
        self
    }

    /// The state file (`--state`), relative to the working directory.
    pub fn state(mut self, path: impl Into<PathBuf>) -> Self {
        self.state = Some(path.into());
        self
    }

    /// This runner's name on a shared schedule (`--runner-id`).
    pub fn runner_id(mut self, id: impl Into<String>) -> Self {
        self.runner_id = Some(id.into());
        self
    }

    /// Reads these variables instead of the process environment.
    pub fn environment<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let vars = vars.into_iter().map(|(k, v)| (k.into(), v.into()));
        self.environment = Some(vars.collect());
        self
    }

    /// Loads the configuration and every job file; fails with every problem
    /// found in any of them. For `pushguard check` and `trigger`.
    pub fn load(&self) -> Result<(RunnerConfig, Vec<JobSpec>), ConfigErrors> {
        let (config, mut errors) = self.resolve();
        let (jobs, job_errors) = config.load_jobs();
        errors.extend(job_errors);
        match ConfigErrors::new(errors) {
            Some(errors) => Err(errors),
            None => Ok((config, jobs)),
        }
    }

    /// Loads the configuration alone; the runner then loads the jobs with
    /// [`RunnerConfig::load_jobs`] and keeps the valid ones.
    pub fn load_config(&self) -> Result<RunnerConfig, ConfigErrors> {
        let (config, errors) = self.resolve();
        match ConfigErrors::new(errors) {
            Some(errors) => Err(errors),
            None => Ok(config),
        }
    }

    fn var(&self, name: &str) -> Option<String> {
        let value = match &self.environment {
            Some(vars) => vars.get(name).cloned(),
            None => std::env::var(name).ok(),
        };
        value.filter(|v| !v.is_empty())
    }

    /// The configuration with defaults in place of every broken value, and
    /// the problems; the jobs can still be checked against it.
    fn resolve(&self) -> (RunnerConfig, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let file = self
            .config_path
            .clone()
            .or_else(|| self.var("PUSHGUARD_CONFIG").map(PathBuf::from))
            .or_else(|| {
                let default = PathBuf::from(DEFAULT_CONFIG_PATH);
                default.is_file().then_some(default)
            });
        let raw = match &file {
            None => RawConfig::default(),
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => raw::parse(path, &text).unwrap_or_else(|e| {
                    errors.extend(e.into_vec());
                    RawConfig::default()
                }),
                Err(source) => {
                    let file = path.clone();
                    errors.push(ConfigError::Read { file, source });
                    RawConfig::default()
                }
            },
        };
        let base = match &file {
            Some(path) => path.parent().unwrap_or(Path::new("")).to_owned(),
            None => PathBuf::new(),
        };
        let file_name = file.clone().unwrap_or_else(|| PathBuf::from("(defaults)"));
        let mut check = Check::new(&file_name);
        let mut config = runner(&mut check, &base, raw.runner);
        config.gateway = gateway(&mut check, raw.gateway);
        sink(&mut check, raw.sink, &mut config.gateway);
        config.defaults = defaults(&mut check, raw.defaults);
        config.file = file.clone();
        errors.append(&mut check.errors);
        self.apply_environment(&mut config, &mut errors);
        if let Some(dir) = &self.jobs_dir {
            config.jobs_dir = resolve_path(Path::new(""), dir);
        }
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(url) = &self.gateway_url {
            config.gateway.url = url.clone();
        }
        if let Some(state) = &self.state {
            config.state = Some(state.clone());
        }
        if let Some(id) = &self.runner_id {
            let mut check = Check::new(Path::new("--runner-id"));
            config.runner_id =
                runner_id(&mut check, "--runner-id", id.clone()).or(config.runner_id.take());
            errors.append(&mut check.errors);
        }
        (config, errors)
    }

    fn apply_environment(&self, config: &mut RunnerConfig, errors: &mut Vec<ConfigError>) {
        let env_file = Path::new(ENVIRONMENT_FILE);
        let mut check = Check::new(env_file);
        if let Some(dir) = self.var("PUSHGUARD_JOBS") {
            config.jobs_dir = resolve_path(Path::new(""), Path::new(&dir));
        }
        if let Some(listen) = self.var("PUSHGUARD_LISTEN")
            && let Some(addr) = socket_addr(&mut check, "PUSHGUARD_LISTEN", &listen)
        {
            config.listen = addr;
        }
        if let Some(id) = self.var("PUSHGUARD_RUNNER_ID") {
            config.runner_id =
                runner_id(&mut check, "PUSHGUARD_RUNNER_ID", id).or(config.runner_id.take());
        }
        if let Some(state) = self.var(pushguard::STATE_ENV) {
            config.state = Some(PathBuf::from(state));
        }
        if let Some(url) = self.var("PUSHGATEWAY_URL")
            && gateway_url(&mut check, "PUSHGATEWAY_URL", &url)
        {
            config.gateway.url = url;
        }
        if let Some(url) = self.var("PUSHGUARD_TRACE_URL")
            && trace_url(&mut check, "PUSHGUARD_TRACE_URL", &url)
        {
            config.trace_url = Some(url);
        }
        let token = self.var("PUSHGUARD_API_TOKEN");
        let token_file = self.var("PUSHGUARD_API_TOKEN_FILE").map(PathBuf::from);
        if token.is_some() || token_file.is_some() {
            let names = ("PUSHGUARD_API_TOKEN", "PUSHGUARD_API_TOKEN_FILE");
            config.api_token = api_token(&mut check, names, token, token_file.as_deref());
        }
        errors.append(&mut check.errors);
    }
}

fn runner(check: &mut Check<'_>, base: &Path, raw: RawRunner) -> RunnerConfig {
    let mut config = RunnerConfig {
        jobs_dir: resolve_path(base, Path::new("jobs")),
        ..RunnerConfig::default()
    };
    if let Some(listen) = &raw.listen
        && let Some(addr) = socket_addr(check, "runner.listen", listen)
    {
        config.listen = addr;
    }
    if let Some(dir) = &raw.jobs_dir {
        config.jobs_dir = resolve_path(base, Path::new(dir));
    }
    // A database URL is not a path relative to the file.
    config.state = raw.state.map(|s| {
        if pushguard::State::is_database_url(&s) {
            PathBuf::from(s)
        } else {
            resolve_path(base, Path::new(&s))
        }
    });
    if let Some(text) = &raw.shutdown_grace {
        config.shutdown_grace = check
            .duration("runner.shutdown_grace", text)
            .unwrap_or(config.shutdown_grace);
    }
    if let Some(text) = &raw.outbox_drain_interval {
        config.outbox_drain_interval = check
            .positive_duration("runner.outbox_drain_interval", text)
            .unwrap_or(config.outbox_drain_interval);
    }
    if raw.api_token.is_some() || raw.api_token_file.is_some() {
        let names = ("runner.api_token", "runner.api_token_file");
        let file = raw
            .api_token_file
            .map(|f| resolve_path(base, Path::new(&f)));
        config.api_token = api_token(check, names, raw.api_token, file.as_deref());
    }
    if let Some(lines) = raw.log_tail_lines {
        config.log_tail_lines = lines;
    }
    if let Some(id) = raw.runner_id {
        config.runner_id = runner_id(check, "runner.runner_id", id);
    }
    if let Some(text) = &raw.lease
        && let Some(lease) = check.positive_duration("runner.lease", text)
    {
        // Heartbeats go every third of it: a lease of milliseconds would
        // keep the database busy with them.
        if lease < Duration::from_secs(1) {
            check.invalid(
                "runner.lease",
                format!(
                    "{:?} is too short: use at least 1s (the default is 15s)",
                    text.0
                ),
            );
        } else {
            config.lease = lease;
        }
    }
    if let Some(url) = raw.trace_url
        && trace_url(check, "runner.trace_url", &url)
    {
        config.trace_url = Some(url);
    }
    config
}

/// A runner name: printable, without spaces, at most 200 bytes.
fn runner_id(check: &mut Check<'_>, key: &str, id: String) -> Option<String> {
    if id.is_empty() || id.len() > 200 || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        check.invalid(
            key,
            format!(
                "{id:?} is not a runner name: use 1 to 200 bytes without spaces or control characters, for example \"runner-a\""
            ),
        );
        return None;
    }
    Some(id)
}

/// Checks a trace UI link: an http(s) URL with a `{trace_id}` placeholder.
fn trace_url(check: &mut Check<'_>, key: &str, url: &str) -> bool {
    let web = url.starts_with("http://") || url.starts_with("https://");
    if !web || !url.contains("{trace_id}") {
        check.invalid(
            key,
            format!(
                "\"{url}\" is not a trace link: write an http(s) URL with {{trace_id}} \
                 where the id goes, such as \"http://jaeger:16686/trace/{{trace_id}}\""
            ),
        );
        return false;
    }
    true
}

fn gateway(check: &mut Check<'_>, raw: RawGateway) -> GatewaySettings {
    let mut settings = GatewaySettings::default();
    if let Some(url) = raw.url
        && gateway_url(check, "gateway.url", &url)
    {
        settings.url = url;
    }
    if let Some(text) = &raw.push_deadline {
        settings.push_deadline = check
            .positive_duration("gateway.push_deadline", text)
            .unwrap_or(settings.push_deadline);
    }
    if let Some(retries) = raw.retries {
        settings.retries = retries;
    }
    settings
}

/// `[sink]`: the Pushgateway (default) or a remote-write receiver.
fn sink(check: &mut Check<'_>, raw: RawSink, settings: &mut GatewaySettings) {
    match (raw.kind, raw.url) {
        (Some(SinkKind::RemoteWrite), Some(url)) => {
            if gateway_url(check, "sink.url", &url) {
                settings.remote_write = Some(url);
            }
        }
        (Some(SinkKind::RemoteWrite), None) => check.invalid(
            "sink.url",
            "kind = \"remote-write\" needs url, the receiver's write URL \
             (such as http://prometheus:9090/api/v1/write)"
                .to_owned(),
        ),
        (None | Some(SinkKind::Pushgateway), Some(_)) => check.invalid(
            "sink.url",
            "url is the remote-write URL: set kind = \"remote-write\" too \
             (the Pushgateway's URL is gateway.url)"
                .to_owned(),
        ),
        (None | Some(SinkKind::Pushgateway), None) => {}
    }
    if let Some(tenant) = raw.tenant {
        if tenant.trim().is_empty() || tenant.chars().any(char::is_control) {
            check.invalid(
                "sink.tenant",
                format!(
                    "invalid tenant {tenant:?}: it must be plain text for the X-Scope-OrgID header"
                ),
            );
        } else {
            settings.tenant = Some(tenant);
        }
    }
}

fn defaults(check: &mut Check<'_>, raw: RawDefaults) -> JobDefaults {
    let mut defaults = JobDefaults::default();
    if let Some(text) = &raw.timezone {
        defaults.timezone = check.timezone("defaults.timezone", text);
    }
    if let Some(text) = &raw.timeout {
        defaults.timeout = check.positive_duration("defaults.timeout", text);
    }
    defaults.overlap = raw.overlap.unwrap_or(defaults.overlap);
    defaults.retries = raw.retries.unwrap_or(defaults.retries);
    defaults.backoff =
        check.duration_or("defaults.backoff", raw.backoff.as_ref(), defaults.backoff);
    defaults.jitter = check.duration_or("defaults.jitter", raw.jitter.as_ref(), defaults.jitter);
    defaults.catch_up = raw.catch_up.unwrap_or(defaults.catch_up);
    defaults.labels = check.labels("defaults.labels", raw.labels.unwrap_or_default());
    defaults
}

fn socket_addr(check: &mut Check<'_>, key: &str, text: &str) -> Option<SocketAddr> {
    match text.trim().parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            let reason = format!(
                "invalid address {text:?} (use IP:PORT, e.g. 127.0.0.1:9465 or [::1]:9465)"
            );
            check.invalid(key, reason);
            None
        }
    }
}

/// The library's own check of a gateway URL (one owner), reported at `key`.
fn gateway_url(check: &mut Check<'_>, key: &str, url: &str) -> bool {
    match pushguard::GatewayBuilder::check_url(url) {
        Ok(()) => true,
        Err(error) => {
            // The library's message already says what to write instead.
            let reason = error.to_string();
            let reason = reason
                .strip_prefix("invalid configuration: ")
                .unwrap_or(&reason);
            check.invalid(key, reason.to_owned());
            false
        }
    }
}

/// The token from exactly one of a value and a file holding it.
fn api_token(
    check: &mut Check<'_>,
    (value_key, file_key): (&str, &str),
    value: Option<String>,
    file: Option<&Path>,
) -> Option<ApiToken> {
    let (key, token) = match (value, file) {
        (Some(_), Some(_)) => {
            let reason = format!("set either {value_key} or {file_key}, not both");
            check.invalid(file_key, reason);
            return None;
        }
        (Some(token), None) => (value_key, token),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(text) => (file_key, text),
            Err(e) => {
                let reason = format!("cannot read {:?}: {e}", path.display().to_string());
                check.invalid(file_key, reason);
                return None;
            }
        },
        (None, None) => return None,
    };
    let token = token.trim();
    if token.is_empty() {
        check.invalid(key, "the token is empty");
        return None;
    }
    Some(ApiToken::new(token))
}

/// `path` relative to `base` unless absolute, with `.` and `a/..` removed
/// lexically (so `config/../jobs` is shown as `jobs`).
pub(crate) fn resolve_path(base: &Path, path: &Path) -> PathBuf {
    let joined = base.join(path);
    let mut out = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::fs;

    const NO_ENV: [(&str, &str); 0] = [];

    /// The workspace root, where `config/` and `jobs/` are.
    fn manifest() -> PathBuf {
        let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        crate_dir
            .ancestors()
            .nth(2)
            .map_or_else(|| crate_dir.to_owned(), Path::to_owned)
    }

    /// A directory with one file per `(name, contents)`.
    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    /// The messages of loading one job file with this text.
    fn job_errors(text: &str) -> Vec<String> {
        let dir = dir_with(&[("x.toml", text)]);
        let file = dir.path().join("x.toml");
        let prefix = format!("{}: ", file.display());
        match JobSpec::from_file(&file, &JobDefaults::default()) {
            Ok(job) => panic!("{text:?} was accepted: {job:?}"),
            Err(errors) => errors
                .iter()
                .map(|e| {
                    assert_eq!(e.file(), file);
                    let message = e.to_string();
                    message
                        .strip_prefix(&prefix)
                        .unwrap_or_else(|| panic!("{message:?} does not start with the file"))
                        .to_owned()
                })
                .collect(),
        }
    }

    fn job(text: &str) -> JobSpec {
        job_with(text, &JobDefaults::default())
    }

    fn job_with(text: &str, defaults: &JobDefaults) -> JobSpec {
        let dir = dir_with(&[("job.toml", text)]);
        JobSpec::from_file(&dir.path().join("job.toml"), defaults).unwrap()
    }

    #[test]
    fn shipped_configuration_and_jobs_load_without_errors() {
        let root = manifest();
        let (config, jobs) = ConfigLoader::new()
            .config_path(root.join(DEFAULT_CONFIG_PATH))
            .environment(NO_ENV)
            .load()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.jobs_dir, root.join("jobs"));
        assert_eq!(config.listen, DEFAULT_LISTEN);
        assert!(config.listen.ip().is_loopback());
        assert_eq!(config.trigger_access(), TriggerAccess::Loopback);
        let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "calendar",
                "cleanup",
                "example-builtin",
                "fetch",
                "heartbeat",
                "notify"
            ]
        );
        for job in &jobs {
            assert!(job.enabled, "{}", job.name);
            match &job.action {
                JobAction::Command(argv) => assert!(!argv.is_empty()),
                // The release pipeline's job files are named after their built-in.
                JobAction::Builtin(builtin) if job.name != "example-builtin" => {
                    assert_eq!(builtin.kind().name(), job.name)
                }
                JobAction::Builtin(builtin) => assert_eq!(builtin.kind().name(), "noop"),
                JobAction::Prune(prune) => assert!(!prune.older_than.is_zero()),
            }
        }
        let cleanup = &jobs[1];
        assert_eq!(cleanup.retries, 2);
        assert_eq!(cleanup.timeout, Some(Duration::from_secs(120)));
        assert_eq!(cleanup.schedule.timezone(), chrono_tz::Europe::Berlin);
        assert_eq!(cleanup.labels["team"], "ops");
    }

    #[test]
    fn prune_jobs_read_their_settings_and_name_every_mistake() {
        let ok = job(
            "builtin = \"prune\"\nschedule = \"@hourly\"\n[settings]\nolder_than = \"7d\"\nmatch = [\"instance=~pod-.*\"]\ndry_run = true\n",
        );
        let JobAction::Prune(prune) = &ok.action else {
            panic!("{:?}", ok.action)
        };
        assert_eq!(prune.older_than, Duration::from_secs(7 * 86_400));
        assert_eq!(prune.matchers, vec!["instance=~pod-.*".parse().unwrap()]);
        assert!(prune.dry_run);

        let errors = job_errors("builtin = \"prune\"\nschedule = \"@hourly\"\n");
        assert_eq!(
            errors,
            ["settings.older_than: missing; add e.g. older_than = \"7d\""]
        );
        let errors = job_errors(
            "builtin = \"prune\"\nschedule = \"@hourly\"\n[settings]\nolder_than = \"soon\"\nmatch = [\"2x=1\", 3]\ndry_run = \"yes\"\nkeep = 1\n",
        );
        let text = errors.join("\n");
        assert_eq!(errors.len(), 5, "{text}");
        for said in [
            "settings.older_than: invalid duration \"soon\"",
            "settings.match: \"2x=1\"",
            "settings.match: 3 is not a string",
            "settings.dry_run: \"yes\" is not true or false",
            "settings.keep: not a setting of the prune job",
        ] {
            assert!(text.contains(said), "{said:?} missing: {text}");
        }
        let errors = job_errors("builtin = \"purne\"\nschedule = \"@hourly\"\n");
        assert!(errors[0].contains("prune,"), "{errors:?}");
    }

    #[test]
    fn the_shared_schedule_settings_are_checked_and_keep_a_database_url() {
        let dir = dir_with(&[(
            "pushguard.toml",
            "[runner]\nrunner_id = \"runner a\"\nlease = \"0s\"\n",
        )]);
        let errors = ConfigLoader::new()
            .config_path(dir.path().join("pushguard.toml"))
            .environment(NO_ENV)
            .load_config()
            .unwrap_err();
        let text = errors.to_string();
        assert_eq!(errors.len(), 2, "{text}");
        assert!(
            text.contains("runner.runner_id") && text.contains("\"runner a\""),
            "{text}"
        );
        assert!(text.contains("runner.lease"), "{text}");
        let dir = dir_with(&[("pushguard.toml", "[runner]\nlease = \"10ms\"\n")]);
        let errors = ConfigLoader::new()
            .config_path(dir.path().join("pushguard.toml"))
            .environment(NO_ENV)
            .load_config()
            .unwrap_err();
        assert!(
            errors
                .to_string()
                .contains("runner.lease: \"10ms\" is too short"),
            "{errors}"
        );

        let dir = dir_with(&[(
            "pushguard.toml",
            "[runner]\nstate = \"postgres://me@db.example/pg\"\nlease = \"6s\"\n",
        )]);
        let config = ConfigLoader::new()
            .config_path(dir.path().join("pushguard.toml"))
            .environment([("PUSHGUARD_RUNNER_ID", "runner-b")])
            .load_config()
            .unwrap();
        assert_eq!(
            config.state.as_deref(),
            Some(Path::new("postgres://me@db.example/pg"))
        );
        assert_eq!(config.lease, Duration::from_secs(6));
        assert_eq!(config.runner_id.as_deref(), Some("runner-b"));
        let config = ConfigLoader::new()
            .environment(NO_ENV)
            .runner_id("runner-c")
            .load_config()
            .unwrap();
        assert_eq!(config.runner_id.as_deref(), Some("runner-c"));
        assert_eq!(config.lease, Duration::from_secs(15));
    }

    #[test]
    fn credentials_in_the_gateway_url_are_refused_and_never_shown() {
        let dir = dir_with(&[(
            "pushguard.toml",
            "[gateway]\nurl = \"http://me:s3cret@127.0.0.1:9091\"\n",
        )]);
        let errors = ConfigLoader::new()
            .config_path(dir.path().join("pushguard.toml"))
            .environment(NO_ENV)
            .load_config()
            .unwrap_err();
        let text = errors.to_string();
        assert!(text.contains("gateway.url"), "{text}");
        assert!(text.contains("PUSHGATEWAY_PASSWORD"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn every_type_error_of_a_file_is_listed_not_only_the_first() {
        let errors = job_errors(
            "schedule = \"@hourly\"\ncommand = [\"true\"]\nretries = \"many\"\noverlap = 3\ncomand = 1\n",
        );
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors.iter().any(|e| e.starts_with("retries:")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.starts_with("overlap:")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("\"comand\"")),
            "{errors:?}"
        );
        let dir = dir_with(&[(
            "pushguard.toml",
            "[runner]\nshutdown_grace = 5\nlog_tail_lines = \"ten\"\n",
        )]);
        let errors = ConfigLoader::new()
            .config_path(dir.path().join("pushguard.toml"))
            .environment(NO_ENV)
            .load_config()
            .unwrap_err();
        let text = errors.to_string();
        assert_eq!(errors.len(), 2, "{text}");
        assert!(
            text.contains("runner.shutdown_grace") && text.contains("runner.log_tail_lines"),
            "{text}"
        );
    }

    #[test]
    fn bad_duration_names_key_and_value() {
        let errors =
            job_errors("schedule = \"@hourly\"\ncommand = [\"true\"]\ntimeout = \"5parsecs\"\n");
        assert_eq!(
            errors,
            ["timeout: invalid duration \"5parsecs\" (use e.g. 30s, 10m, 1h30m)"]
        );
        let errors = job_errors("schedule = \"@hourly\"\ncommand = [\"true\"]\ntimeout = \"0s\"\n");
        assert_eq!(
            errors,
            ["timeout: \"0s\" is no time at all; use e.g. 30s, 10m, 1h30m"]
        );
    }

    #[test]
    fn bad_cron_names_key_and_value() {
        let errors = job_errors("schedule = \"61 * * * *\"\ncommand = [\"true\"]\n");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("schedule: invalid schedule \"61 * * * *\": "),
            "{errors:?}"
        );
        assert!(errors[0].contains("minute field \"61\""), "{errors:?}");
        let errors = job_errors("schedule = \"@every soon\"\ncommand = [\"true\"]\n");
        assert!(
            errors[0].starts_with("schedule: invalid schedule \"@every soon\": "),
            "{errors:?}"
        );
    }

    #[test]
    fn unknown_time_zone_names_key_and_value() {
        let errors =
            job_errors("schedule = \"@hourly\"\ntimezone = \"Mars/Base\"\ncommand = [\"true\"]\n");
        assert_eq!(
            errors,
            [
                "timezone: unknown time zone \"Mars/Base\" (use an IANA name such as UTC, Europe/Berlin or Asia/Tokyo)"
            ]
        );
        let errors =
            job_errors("schedule = \"@hourly\"\ntimezone = \"asia/tokyo\"\ncommand = [\"true\"]\n");
        assert_eq!(
            errors,
            ["timezone: unknown time zone \"asia/tokyo\" (did you mean \"Asia/Tokyo\"?)"]
        );
    }

    #[test]
    fn unknown_key_is_named_with_a_suggestion() {
        let errors = job_errors("schedule = \"@hourly\"\ncomand = [\"true\"]\n");
        assert_eq!(
            errors,
            ["unknown key \"comand\" (did you mean \"command\"?)"]
        );
        let errors = job_errors("schedule = \"@hourly\"\ncommand = [\"true\"]\nfrobnicate = 1\n");
        assert_eq!(
            errors,
            ["unknown key \"frobnicate\" (remove it, or see the job file format in the README)"]
        );
    }

    #[test]
    fn missing_command_and_builtin() {
        let errors = job_errors("schedule = \"@hourly\"\n");
        assert_eq!(
            errors,
            [
                "neither command nor builtin is set (add e.g. command = [\"./backup.sh\"] or builtin = \"noop\")"
            ]
        );
        let errors =
            job_errors("schedule = \"@hourly\"\ncommand = [\"true\"]\nbuiltin = \"noop\"\n");
        assert_eq!(
            errors,
            ["both command and builtin are set (keep one of them)"]
        );
        let errors = job_errors("schedule = \"@hourly\"\ncommand = []\n");
        assert_eq!(
            errors,
            [
                "command: must not be empty; give the program and its arguments, e.g. [\"./backup.sh\", \"--full\"]"
            ]
        );
        let errors = job_errors("schedule = \"@hourly\"\nbuiltin = \"teleport\"\n");
        assert_eq!(
            errors,
            [
                "builtin: unknown built-in job \"teleport\" (use one of: prune, noop, fetch, notify, calendar)"
            ]
        );
    }

    #[test]
    fn missing_schedule() {
        let errors = job_errors("command = [\"true\"]\n");
        assert_eq!(
            errors,
            ["schedule: missing; add e.g. schedule = \"*/5 * * * *\""]
        );
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let errors = job_errors("schedule = \"@hourly\"\ncommand = [\"true\"]\nretries = \n");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("line 3, column 11: invalid TOML: "),
            "{errors:?}"
        );
        let errors =
            job_errors("schedule = \"@hourly\"\nschedule = \"@daily\"\ncommand = [\"true\"]\n");
        assert!(
            errors[0].starts_with("line 2, column 1: invalid TOML: duplicate key"),
            "{errors:?}"
        );
    }

    #[test]
    fn labels_are_validated_by_name() {
        let errors = job_errors(
            "schedule = \"@hourly\"\ncommand = [\"true\"]\nlabels = { 2x = \"a\", job = \"b\", ok = \"c\" }\n",
        );
        assert_eq!(
            errors,
            [
                "labels.2x: invalid label name \"2x\": must match [a-zA-Z_][a-zA-Z0-9_]*",
                "labels.job: the job label is the job name (the file name); remove it",
            ]
        );
        let errors =
            job_errors("schedule = \"@hourly\"\ncommand = [\"true\"]\nlabels = { n = 3 }\n");
        assert_eq!(
            errors,
            ["labels.n: invalid type: integer `3`, expected a string"]
        );
    }

    #[test]
    fn every_problem_of_a_file_is_reported() {
        let errors = job_errors(
            "schedule = \"@hourly\"\ntimezone = \"Mars/Base\"\ntimeout = \"soon\"\nbackoff = \"later\"\n",
        );
        let keys: Vec<&str> = errors
            .iter()
            .map(|e| e.split(':').next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "timezone",
                "neither command nor builtin is set (add e.g. command = [\"./backup.sh\"] or builtin = \"noop\")",
                "timeout",
                "backoff"
            ]
        );
    }

    #[test]
    fn other_job_keys_are_checked() {
        let errors =
            job_errors("schedule = \"@hourly\"\ncommand = [\"true\"]\nworkdir = \"nowhere\"\n");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("workdir: directory \""), "{errors:?}");
        assert!(errors[0].contains("nowhere\" does not exist"), "{errors:?}");
        let errors =
            job_errors("schedule = \"@hourly\"\ncommand = [\"true\"]\n[settings]\nx = 1\n");
        assert_eq!(
            errors,
            [
                "settings: only built-in jobs take settings; remove [settings] or use builtin = \"…\""
            ]
        );
        let errors =
            job_errors("schedule = \"@hourly\"\ncommand = [\"true\"]\nenv = { \"A=B\" = \"x\" }\n");
        assert_eq!(
            errors,
            ["env.A=B: variable names must be non-empty, without '=' or NUL"]
        );
        let errors = job_errors("schedule = \"@hourly\"\ncommand = [\"true\"]\nretries = -1\n");
        assert_eq!(
            errors,
            ["retries: invalid value: integer `-1`, expected u32"]
        );
        let errors =
            job_errors("schedule = \"@hourly\"\ncommand = [\"true\"]\ncatch_up = \"all\"\n");
        assert_eq!(
            errors,
            ["catch_up: invalid value \"all\" (use one of: skip, once)"]
        );
    }

    #[test]
    fn file_stem_must_be_a_job_name() {
        let dir = dir_with(&[(
            "my job.toml",
            "schedule = \"@hourly\"\ncommand = [\"true\"]\n",
        )]);
        let (jobs, errors) = load_jobs(dir.path(), &JobDefaults::default());
        assert!(jobs.is_empty());
        assert!(
            errors[0].to_string().ends_with(
                "my job.toml: invalid job name \"my job\": must match [A-Za-z0-9_][A-Za-z0-9_.-]* (rename the file)"
            ),
            "{}",
            errors[0]
        );
        assert!(job::is_valid_job_name("nightly_etl.v2-b"));
        assert!(!job::is_valid_job_name("-x"));
        assert!(!job::is_valid_job_name(""));
    }

    #[test]
    fn a_directory_with_broken_files_keeps_the_good_jobs() {
        let good = "schedule = \"@every 1s\"\ncommand = [\"true\"]\n";
        let dir = dir_with(&[
            ("a-good.toml", good),
            (
                "b-bad-cron.toml",
                "schedule = \"61 * * * *\"\ncommand = [\"true\"]\n",
            ),
            (
                "c-good.toml",
                "schedule = \"@hourly\"\nbuiltin = \"noop\"\n",
            ),
            (
                "d-typo.toml",
                "schedule = \"@hourly\"\ncomand = [\"true\"]\n",
            ),
            ("e-syntax.toml", "schedule = \"@hourly\n"),
            ("notes.txt", "not a job"),
            (".hidden.toml", "garbage ="),
        ]);
        fs::create_dir(dir.path().join("sub.toml")).unwrap();
        let (jobs, errors) = load_jobs(dir.path(), &JobDefaults::default());
        let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["a-good", "c-good"]);
        let files: Vec<&Path> = errors.iter().map(|e| e.file()).collect();
        assert_eq!(
            files,
            [
                dir.path().join("b-bad-cron.toml"),
                dir.path().join("d-typo.toml"),
                dir.path().join("e-syntax.toml"),
            ]
        );
        let all = ConfigLoader::new()
            .config_path(dir.path().join("none.toml"))
            .jobs_dir(dir.path())
            .environment(NO_ENV)
            .load()
            .unwrap_err();
        // The missing configuration file, then the three job files.
        assert_eq!(all.len(), 4);
        assert_eq!(all.to_string().lines().count(), 4);
    }

    #[test]
    fn missing_jobs_directory_is_one_error() {
        let (jobs, errors) = load_jobs(Path::new("/nonexistent/jobs"), &JobDefaults::default());
        assert!(jobs.is_empty());
        assert!(
            errors[0]
                .to_string()
                .starts_with("/nonexistent/jobs: cannot read the jobs directory: ")
        );
    }

    #[test]
    fn job_defaults_apply_and_jobs_override_them() {
        let job_a = job("schedule = \"@hourly\"\ncommand = [\"true\"]\n");
        assert_eq!(job_a.overlap, Overlap::Forbid);
        assert_eq!(job_a.catch_up, CatchUp::Skip);
        assert_eq!(job_a.retries, 0);
        assert_eq!(job_a.backoff, Duration::from_secs(30));
        assert_eq!(job_a.jitter, Duration::ZERO);
        assert_eq!(job_a.timeout, None);
        assert!(job_a.enabled);
        assert_eq!(job_a.schedule.timezone(), chrono_tz::UTC);

        let dir = dir_with(&[(
            "pushguard.toml",
            "[defaults]\ntimezone = \"Asia/Tokyo\"\ntimeout = \"1h\"\noverlap = \"allow\"\nretries = 2\nbackoff = \"5s\"\njitter = \"1s\"\ncatch_up = \"once\"\nlabels = { team = \"media\", env = \"prod\" }\n",
        )]);
        let config = ConfigLoader::new()
            .config_path(dir.path().join("pushguard.toml"))
            .environment(NO_ENV)
            .load_config()
            .unwrap();
        let defaults = &config.defaults;
        let job_b = job_with("schedule = \"@hourly\"\ncommand = [\"true\"]\n", defaults);
        assert_eq!(job_b.schedule.timezone(), chrono_tz::Asia::Tokyo);
        assert_eq!(job_b.timeout, Some(Duration::from_secs(3600)));
        assert_eq!(job_b.overlap, Overlap::Allow);
        assert_eq!(job_b.retries, 2);
        assert_eq!(job_b.backoff, Duration::from_secs(5));
        assert_eq!(job_b.jitter, Duration::from_secs(1));
        assert_eq!(job_b.catch_up, CatchUp::Once);
        let job_c = job_with(
            "schedule = \"@hourly\"\ntimezone = \"UTC\"\ncommand = [\"true\"]\noverlap = \"replace\"\nretries = 0\nlabels = { team = \"ops\" }\nenabled = false\n",
            defaults,
        );
        assert_eq!(job_c.schedule.timezone(), chrono_tz::UTC);
        assert_eq!(job_c.overlap, Overlap::Replace);
        assert_eq!(job_c.retries, 0);
        assert!(!job_c.enabled);
        let labels: Vec<(&str, &str)> = job_c
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(labels, [("env", "prod"), ("team", "ops")]);
    }

    #[test]
    fn job_keys_become_typed_settings() {
        let dir = dir_with(&[]);
        fs::create_dir(dir.path().join("work")).unwrap();
        let text = "description = \"d\"\nschedule = \"@hourly\"\nbuiltin = \"fetch\"\nworkdir = \"work\"\nenv = { A = \"1\" }\nbackoff = \"10s\"\n[settings]\ntimeout = \"5s\"\nrequest_budget = 3\n";
        fs::write(dir.path().join("fetch.toml"), text).unwrap();
        let file = dir.path().join("fetch.toml");
        let job = JobSpec::from_file(&file, &JobDefaults::default()).unwrap();
        assert_eq!(job.name, "fetch");
        assert_eq!(job.file, file);
        assert!(matches!(&job.action, JobAction::Builtin(b) if b.kind().name() == "fetch"));
        assert_eq!(job.workdir, Some(dir.path().join("work")));
        assert_eq!(job.env["A"], "1");
        assert_eq!(job.description.as_deref(), Some("d"));
        assert_eq!(job.settings["request_budget"].as_integer(), Some(3));
        assert_eq!(job.schedule.spec(), "@hourly");
        assert_eq!(job.retry_delay(1), Duration::from_secs(10));
        assert_eq!(job.retry_delay(3), Duration::from_secs(40));
        assert_eq!(job.retry_delay(200), Duration::from_secs(3600));
        assert_eq!(
            job,
            JobSpec::from_file(&file, &JobDefaults::default()).unwrap()
        );
    }

    #[test]
    fn broken_builtin_settings_are_refused_with_their_key() {
        let dir = dir_with(&[]);
        let text = "schedule = \"@hourly\"\nbuiltin = \"fetch\"\n[settings]\ntimeout = \"soon\"\n";
        fs::write(dir.path().join("fetch.toml"), text).unwrap();
        let file = dir.path().join("fetch.toml");
        let errors = JobSpec::from_file(&file, &JobDefaults::default()).unwrap_err();
        let text = errors.to_string();
        assert!(text.contains("settings.timeout"), "{text}");
        assert!(text.contains("fetch.toml"), "{text}");
    }

    #[test]
    fn runner_settings_have_documented_defaults() {
        let dir = dir_with(&[("pushguard.toml", "")]);
        let config = ConfigLoader::new()
            .config_path(dir.path().join("pushguard.toml"))
            .environment(NO_ENV)
            .load_config()
            .unwrap();
        let expected = RunnerConfig {
            file: Some(dir.path().join("pushguard.toml")),
            jobs_dir: dir.path().join("jobs"),
            ..RunnerConfig::default()
        };
        assert_eq!(config, expected);
        assert_eq!(config.listen.to_string(), "127.0.0.1:9465");
        assert_eq!(config.shutdown_grace, Duration::from_secs(30));
        assert_eq!(config.outbox_drain_interval, Duration::from_secs(60));
        assert_eq!(config.log_tail_lines, 50);
        assert_eq!(config.gateway.url, pushguard::Gateway::DEFAULT_URL);
        assert_eq!(config.gateway.push_deadline, Duration::from_secs(5));
        assert_eq!(config.gateway.retries, 3);
        assert_eq!(config.state, None);
        assert_eq!(config.api_token, None);
    }

    #[test]
    fn trace_url_needs_a_web_address_with_the_id_placeholder() {
        let load = |toml: &str, env: &[(&str, &str)]| {
            let dir = dir_with(&[("pushguard.toml", toml)]);
            ConfigLoader::new()
                .config_path(dir.path().join("pushguard.toml"))
                .environment(env.iter().copied())
                .load_config()
        };
        let good = "[runner]\ntrace_url = \"http://jaeger:16686/trace/{trace_id}\"\n";
        let config = load(good, &[]).unwrap();
        assert_eq!(
            config.trace_url.as_deref(),
            Some("http://jaeger:16686/trace/{trace_id}")
        );
        let config = load(good, &[("PUSHGUARD_TRACE_URL", "https://ui/t/{trace_id}")]).unwrap();
        assert_eq!(config.trace_url.as_deref(), Some("https://ui/t/{trace_id}"));
        for bad in [
            "javascript:alert(1)//{trace_id}",
            "http://jaeger:16686/trace/",
        ] {
            let error = load(&format!("[runner]\ntrace_url = \"{bad}\"\n"), &[]).unwrap_err();
            let text = error.to_string();
            assert!(
                text.contains("runner.trace_url") && text.contains("{trace_id}"),
                "{text}"
            );
        }
    }

    #[test]
    fn command_line_beats_environment_beats_file() {
        let dir = dir_with(&[(
            "pushguard.toml",
            "[runner]\nlisten = \"127.0.0.1:1001\"\njobs_dir = \"../elsewhere\"\nstate = \"state.db\"\n[gateway]\nurl = \"http://file:9091\"\n",
        )]);
        let file = dir.path().join("pushguard.toml");
        let from_file = ConfigLoader::new()
            .config_path(&file)
            .environment(NO_ENV)
            .load_config()
            .unwrap();
        assert_eq!(from_file.listen.port(), 1001);
        assert_eq!(from_file.gateway.url, "http://file:9091");
        assert_eq!(from_file.state, Some(dir.path().join("state.db")));
        let parent = dir.path().parent().unwrap();
        assert_eq!(from_file.jobs_dir, parent.join("elsewhere"));

        let env = [
            ("PUSHGUARD_LISTEN", "127.0.0.1:1002"),
            ("PUSHGATEWAY_URL", "http://env:9091"),
            ("PUSHGUARD_STATE", "/env/state.db"),
            ("PUSHGUARD_JOBS", "env-jobs"),
        ];
        let from_env = ConfigLoader::new()
            .config_path(&file)
            .environment(env)
            .load_config()
            .unwrap();
        assert_eq!(from_env.listen.port(), 1002);
        assert_eq!(from_env.gateway.url, "http://env:9091");
        assert_eq!(from_env.state, Some(PathBuf::from("/env/state.db")));
        assert_eq!(from_env.jobs_dir, Path::new("env-jobs"));

        let from_cli = ConfigLoader::new()
            .config_path(&file)
            .environment(env)
            .listen("127.0.0.1:1003".parse().unwrap())
            .gateway_url("http://cli:9091")
            .state("/cli/state.db")
            .jobs_dir("cli-jobs")
            .load_config()
            .unwrap();
        assert_eq!(from_cli.listen.port(), 1003);
        assert_eq!(from_cli.gateway.url, "http://cli:9091");
        assert_eq!(from_cli.state, Some(PathBuf::from("/cli/state.db")));
        assert_eq!(from_cli.jobs_dir, Path::new("cli-jobs"));

        // The configuration file itself can come from the environment.
        let via_env = ConfigLoader::new()
            .environment([("PUSHGUARD_CONFIG", file.to_str().unwrap())])
            .load_config()
            .unwrap();
        assert_eq!(via_env.file.as_deref(), Some(file.as_path()));
    }

    #[test]
    fn configuration_errors_name_the_dotted_key() {
        let dir = dir_with(&[(
            "pushguard.toml",
            "[runner]\nlisten = \"localhost:9465\"\nshutdown_grace = \"a while\"\n[gateway]\nurl = \"gateway:9091\"\n[defaults]\ntimezone = \"Mars/Base\"\nlabels = { 2x = \"a\" }\n",
        )]);
        let file = dir.path().join("pushguard.toml");
        let errors = ConfigLoader::new()
            .config_path(&file)
            .environment([("PUSHGUARD_LISTEN", "nowhere")])
            .load_config()
            .unwrap_err();
        let keys: Vec<Option<&str>> = errors.iter().map(ConfigError::key).collect();
        assert_eq!(
            keys,
            [
                Some("runner.listen"),
                Some("runner.shutdown_grace"),
                Some("gateway.url"),
                Some("defaults.timezone"),
                Some("defaults.labels.2x"),
                Some("PUSHGUARD_LISTEN"),
            ]
        );
        let text = errors.to_string();
        let f = file.display();
        assert!(text.contains(&format!("{f}: runner.listen: invalid address \"localhost:9465\" (use IP:PORT, e.g. 127.0.0.1:9465 or [::1]:9465)")), "{text}");
        assert!(
            text.contains(&format!(
                "{f}: gateway.url: invalid gateway URL \"gateway:9091\": use http://HOST:PORT or https://HOST:PORT"
            )),
            "{text}"
        );
        assert!(text.ends_with("environment: PUSHGUARD_LISTEN: invalid address \"nowhere\" (use IP:PORT, e.g. 127.0.0.1:9465 or [::1]:9465)"), "{text}");

        let errors = ConfigLoader::new()
            .config_path(dir.path().join("missing.toml"))
            .environment(NO_ENV)
            .load_config()
            .unwrap_err();
        assert!(
            errors
                .to_string()
                .contains("missing.toml: cannot read the file: "),
            "{errors}"
        );

        fs::write(&file, "[runer]\nlisten = \"127.0.0.1:1\"\n").unwrap();
        let errors = ConfigLoader::new()
            .config_path(&file)
            .environment(NO_ENV)
            .load_config()
            .unwrap_err();
        assert_eq!(
            errors.to_string(),
            format!("{f}: unknown key \"runer\" (did you mean \"runner\"?)")
        );
    }

    #[test]
    fn trigger_needs_a_token_or_a_loopback_listener() {
        let dir = dir_with(&[("token", "s3cret\n")]);
        let file = dir.path().join("pushguard.toml");
        let load = |text: &str| {
            fs::write(&file, text).unwrap();
            ConfigLoader::new()
                .config_path(&file)
                .environment(NO_ENV)
                .load_config()
        };
        let open = load("[runner]\nlisten = \"0.0.0.0:9465\"\n").unwrap();
        assert_eq!(open.trigger_access(), TriggerAccess::Refused);
        let ipv6 = load("[runner]\nlisten = \"[::1]:9465\"\n").unwrap();
        assert_eq!(ipv6.trigger_access(), TriggerAccess::Loopback);
        let with_file =
            load("[runner]\nlisten = \"0.0.0.0:9465\"\napi_token_file = \"token\"\n").unwrap();
        match with_file.trigger_access() {
            TriggerAccess::Token(token) => {
                assert!(token.matches("s3cret"));
                assert!(!token.matches("s3cret\n"));
                assert_eq!(format!("{token:?}"), "ApiToken(\"***\")");
            }
            other => panic!("{other:?}"),
        }
        let inline = load("[runner]\napi_token = \"t\"\n").unwrap();
        assert_eq!(inline.api_token, Some(ApiToken::new("t")));
        let both = load("[runner]\napi_token = \"t\"\napi_token_file = \"token\"\n").unwrap_err();
        assert_eq!(
            both.iter().next().unwrap().key(),
            Some("runner.api_token_file")
        );
        let empty = load("[runner]\napi_token = \" \"\n").unwrap_err();
        assert!(
            empty
                .to_string()
                .ends_with("runner.api_token: the token is empty"),
            "{empty}"
        );
        let missing = load("[runner]\napi_token_file = \"nope\"\n").unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("runner.api_token_file: cannot read \""),
            "{missing}"
        );
        fs::write(&file, "").unwrap();
        let env = ConfigLoader::new()
            .config_path(&file)
            .environment([("PUSHGUARD_API_TOKEN", "from-env")])
            .load_config()
            .unwrap();
        assert_eq!(env.api_token, Some(ApiToken::new("from-env")));
    }

    #[test]
    fn paths_are_normalized_lexically() {
        assert_eq!(
            resolve_path(Path::new("config"), Path::new("../jobs")),
            Path::new("jobs")
        );
        assert_eq!(
            resolve_path(Path::new(""), Path::new("jobs")),
            Path::new("jobs")
        );
        assert_eq!(
            resolve_path(Path::new("a"), Path::new("/abs/./x")),
            Path::new("/abs/x")
        );
        assert_eq!(
            resolve_path(Path::new(""), Path::new("../x")),
            Path::new("../x")
        );
        assert_eq!(
            resolve_path(Path::new("a"), Path::new("..")),
            Path::new(".")
        );
        assert_eq!(
            resolve_path(Path::new("/"), Path::new("..")),
            Path::new("/")
        );
    }
}
