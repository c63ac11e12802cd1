//! Job files: `jobs/NAME.toml` validated into a [`JobSpec`], and the loading
//! of a whole directory that keeps going past broken files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use serde::Deserialize;

use super::error::{ConfigError, ConfigErrors};
use super::raw::{self, DurationText, RawJob};
use super::resolve_path;
use crate::schedule::Schedule;

/// The longest wait between retries, unless `backoff` itself is longer.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);

/// What happens when a run is due while the previous run of the job is
/// still going (`overlap = "…"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// Start the new run alongside the old one.
    Allow,
    /// Skip the new run and record a `skipped` outcome (the default).
    #[default]
    Forbid,
    /// Stop the old run, then start the new one.
    Replace,
}

/// What to do about runs missed while the runner was down (`catch_up = "…"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Forget them; count them as missed (the default).
    #[default]
    Skip,
    /// Run once right away if at least one run was missed.
    Once,
}

/// What a job runs.
#[derive(Debug, Clone, PartialEq)]
pub enum JobAction {
    /// A program and its arguments, run without a shell.
    Command(Vec<String>),
    /// A built-in job with its `[settings]` parsed (the raw table stays in
    /// [`JobSpec::settings`]).
    Builtin(pushguard_releases::Prepared),
    /// `builtin = "prune"`: deletes the gateway groups its `[settings]`
    /// name (`older_than`, `match`, `dry_run`) as `pushguard prune` does.
    Prune(crate::prune::Prune),
}

/// Job settings that `[defaults]` in `config/pushguard.toml` gives to every
/// job file that does not set them.
///
/// | key | default |
/// |---|---|
/// | `timezone` | none: the schedule's own default (UTC) |
/// | `timeout` | none: no time limit |
/// | `overlap` | `forbid` |
/// | `retries` | 0 |
/// | `backoff` | 30 s, doubled after each retry (up to an hour) |
/// | `jitter` | 0 s |
/// | `catch_up` | `skip` |
/// | `labels` | none; a job's labels are added to these |
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobDefaults {
    /// Time zone of schedules.
    pub timezone: Option<Tz>,
    /// Time limit of a run.
    pub timeout: Option<Duration>,
    /// Overlap policy.
    pub overlap: Overlap,
    /// Retries after a failed attempt.
    pub retries: u32,
    /// Delay before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// Random delay up to this long before each scheduled run.
    pub jitter: Duration,
    /// Runs missed while the runner was down.
    pub catch_up: CatchUp,
    /// Grouping-key labels of every job.
    pub labels: BTreeMap<String, String>,
}

impl Default for JobDefaults {
    fn default() -> Self {
        JobDefaults {
            timezone: None,
            timeout: None,
            overlap: Overlap::Forbid,
            retries: 0,
            backoff: Duration::from_secs(30),
            jitter: Duration::ZERO,
            catch_up: CatchUp::Skip,
            labels: BTreeMap::new(),
        }
    }
}

/// One validated job file, with the defaults applied.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let file = dir.path().join("backup.toml");
/// std::fs::write(&file, r#"
///     schedule = "*/30 * * * *"
///     command = ["true"]
///     retries = 2
/// "#)?;
/// let job = pushguard_cli::JobSpec::from_file(&file, &pushguard_cli::JobDefaults::default())?;
/// assert_eq!(job.name, "backup");
/// assert_eq!(job.action, pushguard_cli::JobAction::Command(vec!["true".into()]));
/// assert_eq!(job.retry_delay(2), std::time::Duration::from_secs(60));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobSpec {
    /// The job name: the file stem, the `job` label of its pushes.
    pub name: String,
    /// The file it was read from.
    pub file: PathBuf,
    /// When it runs, in its time zone (`schedule.timezone()`).
    pub schedule: Schedule,
    /// What it runs.
    pub action: JobAction,
    /// Working directory of a command (relative paths in the file are
    /// relative to the job file's directory); `None`: the runner's own.
    pub workdir: Option<PathBuf>,
    /// Extra environment variables of a command.
    pub env: BTreeMap<String, String>,
    /// Time limit of one attempt; `None`: no limit.
    pub timeout: Option<Duration>,
    /// What happens when a run is due while one is still going.
    pub overlap: Overlap,
    /// Retries after a failed attempt.
    pub retries: u32,
    /// Delay before the first retry; see [`retry_delay`](Self::retry_delay).
    pub backoff: Duration,
    /// Random delay up to this long before each scheduled run.
    pub jitter: Duration,
    /// Runs missed while the runner was down.
    pub catch_up: CatchUp,
    /// Grouping-key labels besides `job` (the defaults' labels, then the job's).
    pub labels: BTreeMap<String, String>,
    /// The job's group, `{job="<name>"}` and [`labels`](Self::labels),
    /// validated once when the file loads; every run starts from it.
    pub key: pushguard::GroupingKey,
    /// False: loaded and checked, but never scheduled.
    pub enabled: bool,
    /// Push the host's `system_*` gauges with every run (built-in jobs
    /// always do).
    pub system_metrics: bool,
    /// Free text for people and `/api/jobs`.
    pub description: Option<String>,
    /// The `[settings]` table, passed as is to a built-in job.
    pub settings: toml::Table,
    /// The job's own `[sink]`: where its runs go instead of the runner's
    /// sink; `None`: the runner's.
    pub sink: Option<JobSink>,
}

/// A job file's `[sink]` (`kind`, `url`, `tenant`, as in the runner's
/// configuration): its runs go to this remote-write receiver, or to the
/// runner's Pushgateway with `kind = "pushgateway"`; the credentials, TLS
/// options and push deadline stay the runner's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSink {
    /// The remote-write URL; `None`: the runner's Pushgateway.
    pub remote_write: Option<String>,
    /// The `X-Scope-OrgID` of its remote-write requests.
    pub tenant: Option<String>,
}

impl JobSink {
    /// The runner's gateway settings with this sink in place of the
    /// runner's own.
    pub fn apply(&self, runner: &super::GatewaySettings) -> super::GatewaySettings {
        let mut settings = runner.clone();
        settings.remote_write.clone_from(&self.remote_write);
        settings.tenant.clone_from(&self.tenant);
        settings
    }
}

/// Two specs are equal when their files say the same: the anchor of an
/// `@every` schedule (the time it was parsed) is not compared.
impl PartialEq for JobSpec {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.file == other.file
            && self.schedule.spec() == other.schedule.spec()
            && self.schedule.timezone() == other.schedule.timezone()
            && self.action == other.action
            && self.workdir == other.workdir
            && self.env == other.env
            && self.timeout == other.timeout
            && self.overlap == other.overlap
            && self.retries == other.retries
            && self.backoff == other.backoff
            && self.jitter == other.jitter
            && self.catch_up == other.catch_up
            && self.labels == other.labels
            && self.enabled == other.enabled
            && self.system_metrics == other.system_metrics
            && self.description == other.description
            && self.settings == other.settings
            && self.sink == other.sink
    }
}

impl JobSpec {
    /// Reads and validates one job file; every problem found in it is
    /// reported, not only the first.
    pub fn from_file(file: &Path, defaults: &JobDefaults) -> Result<JobSpec, ConfigErrors> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        let raw: RawJob = raw::parse(file, &text)?;
        let mut check = Check::new(file);
        let name = job_name(&mut check, file);
        let spec = validate(&mut check, file, name, raw, defaults);
        match (spec, ConfigErrors::new(check.errors)) {
            (Some(spec), None) => Ok(spec),
            (_, Some(errors)) => Err(errors),
            (None, None) => unreachable!("a job file is only refused with a reason"),
        }
    }

    /// How long to wait before retry number `retry` (1 for the first):
    /// `backoff`, doubled for each further retry, at most an hour (or
    /// `backoff` itself when that is longer).
    pub fn retry_delay(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        let cap = self.backoff.max(MAX_RETRY_DELAY);
        self.backoff.saturating_mul(factor).min(cap)
    }
}

/// Reads every `*.toml` file of `dir` (in name order; hidden files and
/// directories are skipped) and returns the jobs that are valid and every
/// problem of the others. A broken file does not stop the others.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("a.toml"), "schedule = \"@hourly\"\ncommand = [\"true\"]\n")?;
/// std::fs::write(dir.path().join("b.toml"), "schedule = \"@hourly\"\n")?;
/// let (jobs, errors) = pushguard_cli::load_jobs(dir.path(), &pushguard_cli::JobDefaults::default());
/// assert_eq!(jobs.len(), 1);
/// assert!(errors[0].to_string().ends_with("b.toml: neither command nor builtin is set (add e.g. command = [\"./backup.sh\"] or builtin = \"noop\")"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load_jobs(dir: &Path, defaults: &JobDefaults) -> (Vec<JobSpec>, Vec<ConfigError>) {
    let (files, mut errors) = match job_files(dir) {
        Ok(listed) => listed,
        Err(error) => return (Vec::new(), vec![error]),
    };
    let mut jobs = Vec::with_capacity(files.len());
    for file in files {
        match JobSpec::from_file(&file, defaults) {
            Ok(job) => jobs.push(job),
            Err(problems) => errors.extend(problems),
        }
    }
    (jobs, errors)
}

/// The job files of `dir`: every `*.toml` file in name order (hidden files
/// and directories skipped), and the entries that could not be read; an
/// error when the directory itself cannot be read. Each file is read with
/// [`JobSpec::from_file`].
///
/// ```
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("b.toml"), "")?;
/// std::fs::write(dir.path().join("a.toml"), "")?;
/// std::fs::write(dir.path().join("notes.txt"), "")?;
/// let (files, _) = pushguard_cli::job_files(dir.path())?;
/// assert_eq!(files, [dir.path().join("a.toml"), dir.path().join("b.toml")]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn job_files(dir: &Path) -> Result<(Vec<PathBuf>, Vec<ConfigError>), ConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ConfigError::ReadDir {
        file: dir.to_owned(),
        source,
    })?;
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(source) => {
                errors.push(ConfigError::ReadDir {
                    file: dir.to_owned(),
                    source,
                });
                continue;
            }
        };
        let file_name = entry.file_name();
        let hidden = file_name.to_string_lossy().starts_with('.');
        let path = dir.join(&file_name);
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !hidden && !is_dir && path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    // One directory: their names alone decide the order.
    files.sort_unstable_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok((files, errors))
}

/// Checks a job name: `[A-Za-z0-9_][A-Za-z0-9_.-]*`, at most 128 bytes.
pub(super) fn is_valid_job_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    first_ok
        && name.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn job_name(check: &mut Check<'_>, file: &Path) -> String {
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !is_valid_job_name(&name) {
        check.errors.push(ConfigError::InvalidJobName {
            file: file.to_owned(),
            name: name.clone(),
        });
    }
    name
}

fn validate(
    check: &mut Check<'_>,
    file: &Path,
    name: String,
    raw: RawJob,
    defaults: &JobDefaults,
) -> Option<JobSpec> {
    let timezone = match &raw.timezone {
        Some(text) => check.timezone("timezone", text),
        None => defaults.timezone,
    };
    let schedule = match &raw.schedule {
        Some(spec) => match Schedule::parse(spec, timezone.map(Tz::name)) {
            Ok(schedule) => Some(schedule),
            Err(error) => {
                check.errors.push(ConfigError::InvalidSchedule {
                    file: file.to_owned(),
                    value: spec.clone(),
                    error,
                });
                None
            }
        },
        None => {
            check.errors.push(ConfigError::MissingKey {
                file: file.to_owned(),
                key: "schedule".to_owned(),
                example: "schedule = \"*/5 * * * *\"",
            });
            None
        }
    };
    let dir = file.parent().unwrap_or(Path::new(""));
    let action = action(check, &raw, dir);
    if raw.settings.is_some() && matches!(action, Some(JobAction::Command(_))) {
        check.invalid(
            "settings",
            "only built-in jobs take settings; remove [settings] or use builtin = \"…\"",
        );
    }
    let workdir = raw
        .workdir
        .as_deref()
        .map(|w| resolve_path(dir, Path::new(w)));
    if let Some(workdir) = &workdir
        && !workdir.is_dir()
    {
        let reason = format!(
            "directory {:?} does not exist (paths are relative to the job file's directory)",
            workdir.display().to_string()
        );
        check.invalid("workdir", reason);
    }
    let env = raw.env.unwrap_or_default();
    for (key, value) in &env {
        if key.is_empty() || key.contains(['=', '\0']) {
            let reason = "variable names must be non-empty, without '=' or NUL";
            check.invalid(&format!("env.{key}"), reason);
        } else if value.contains('\0') {
            check.invalid(&format!("env.{key}"), "the value contains a NUL byte");
        }
    }
    let timeout = match &raw.timeout {
        Some(text) => check.positive_duration("timeout", text),
        None => defaults.timeout,
    };
    let backoff = check.duration_or("backoff", raw.backoff.as_ref(), defaults.backoff);
    let jitter = check.duration_or("jitter", raw.jitter.as_ref(), defaults.jitter);
    let sink = raw.sink.map(|raw| {
        let mut settings = super::GatewaySettings::default();
        super::sink(check, raw, &mut settings);
        JobSink {
            remote_write: settings.remote_write,
            tenant: settings.tenant,
        }
    });
    let mut labels = defaults.labels.clone();
    labels.extend(check.labels("labels", raw.labels.unwrap_or_default()));
    // The name and labels were checked one by one; the whole key (its
    // length, say) is checked here, once.
    let key = labels.iter().fold(
        pushguard::GroupingKey::new(name.clone()),
        |key, (label, value)| key.and_then(|key| key.label(label.clone(), value.clone())),
    );
    let key = match key {
        Ok(key) => Some(key),
        Err(error) => {
            check.invalid("labels", error.to_string());
            None
        }
    };
    Some(JobSpec {
        key: key?,
        name,
        file: file.to_owned(),
        schedule: schedule?,
        action: action?,
        workdir,
        env,
        timeout,
        overlap: raw.overlap.unwrap_or(defaults.overlap),
        retries: raw.retries.unwrap_or(defaults.retries),
        backoff,
        jitter,
        catch_up: raw.catch_up.unwrap_or(defaults.catch_up),
        labels,
        enabled: raw.enabled.unwrap_or(true),
        system_metrics: raw.system_metrics.unwrap_or(false),
        description: raw.description,
        settings: raw.settings.unwrap_or_default(),
        sink,
    })
}

/// `[settings]` of `builtin = "prune"`: `older_than` (required), `match`
/// (a list of `LABEL=VALUE` / `LABEL=~REGEX`) and `dry_run`.
fn prune_settings(check: &mut Check<'_>, raw: &RawJob) -> Option<JobAction> {
    let empty = toml::Table::new();
    let settings = raw.settings.as_ref().unwrap_or(&empty);
    let mut ok = true;
    for key in settings.keys() {
        if !["older_than", "match", "dry_run"].contains(&key.as_str()) {
            check.invalid(
                &format!("settings.{key}"),
                "not a setting of the prune job (older_than, match, dry_run)",
            );
            ok = false;
        }
    }
    let older_than = match settings.get("older_than") {
        Some(toml::Value::String(text)) => {
            let parsed =
                check.positive_duration("settings.older_than", &DurationText(text.clone()));
            ok &= parsed.is_some();
            parsed
        }
        Some(other) => {
            check.invalid(
                "settings.older_than",
                format!("{other} is not a duration; use e.g. older_than = \"7d\""),
            );
            ok = false;
            None
        }
        None => {
            check.errors.push(ConfigError::MissingKey {
                file: check.file.to_owned(),
                key: "settings.older_than".to_owned(),
                example: "older_than = \"7d\"",
            });
            ok = false;
            None
        }
    };
    let mut matchers = Vec::new();
    match settings.get("match") {
        None => {}
        Some(toml::Value::Array(items)) => {
            for item in items {
                match item.as_str().map(str::parse::<crate::prune::Matcher>) {
                    Some(Ok(matcher)) => matchers.push(matcher),
                    Some(Err(reason)) => {
                        check.invalid("settings.match", reason);
                        ok = false;
                    }
                    None => {
                        check.invalid(
                            "settings.match",
                            format!("{item} is not a string like \"instance=~old-.*\""),
                        );
                        ok = false;
                    }
                }
            }
        }
        Some(other) => {
            check.invalid(
                "settings.match",
                format!("{other} is not a list; use e.g. match = [\"instance=~old-.*\"]"),
            );
            ok = false;
        }
    }
    let dry_run = match settings.get("dry_run") {
        None => false,
        Some(toml::Value::Boolean(dry)) => *dry,
        Some(other) => {
            check.invalid("settings.dry_run", format!("{other} is not true or false"));
            ok = false;
            false
        }
    };
    let older_than = older_than.filter(|_| ok)?;
    Some(JobAction::Prune(crate::prune::Prune {
        older_than,
        matchers,
        dry_run,
    }))
}

fn action(check: &mut Check<'_>, raw: &RawJob, dir: &Path) -> Option<JobAction> {
    let file = check.file.to_owned();
    match (&raw.command, &raw.builtin) {
        (Some(_), Some(_)) => {
            check.errors.push(ConfigError::BothActions { file });
            None
        }
        (None, None) => {
            check.errors.push(ConfigError::NoAction { file });
            None
        }
        (None, Some(name)) if name == "prune" => prune_settings(check, raw),
        (None, Some(name)) => match pushguard_releases::find(name) {
            Some(kind) => {
                // Settings are parsed once, here; every problem names its key.
                let empty = toml::Table::new();
                let settings = raw.settings.as_ref().unwrap_or(&empty);
                match kind.prepare(settings, dir) {
                    Ok(prepared) => Some(JobAction::Builtin(prepared)),
                    Err(pushguard_releases::BuiltinError::Settings { key, reason }) => {
                        check.invalid(&format!("settings.{key}"), reason);
                        None
                    }
                    Err(other) => {
                        check.invalid("settings", other.to_string());
                        None
                    }
                }
            }
            None => {
                let value = name.clone();
                check
                    .errors
                    .push(ConfigError::UnknownBuiltin { file, value });
                None
            }
        },
        (Some(argv), None) => {
            let reason = match argv.first() {
                None => {
                    "must not be empty; give the program and its arguments, e.g. [\"./backup.sh\", \"--full\"]"
                }
                Some(program) if program.is_empty() => {
                    "the program (first element) must not be empty"
                }
                Some(_) if argv.iter().any(|a| a.contains('\0')) => {
                    "an argument contains a NUL byte"
                }
                Some(_) => return Some(JobAction::Command(argv.clone())),
            };
            check.invalid("command", reason);
            None
        }
    }
}

/// Collects the problems of one file while validating it.
pub(super) struct Check<'a> {
    pub file: &'a Path,
    pub errors: Vec<ConfigError>,
}

impl<'a> Check<'a> {
    pub fn new(file: &'a Path) -> Self {
        Check {
            file,
            errors: Vec::new(),
        }
    }

    pub fn invalid(&mut self, key: &str, reason: impl Into<String>) {
        self.errors.push(ConfigError::InvalidValue {
            file: self.file.to_owned(),
            key: key.to_owned(),
            reason: reason.into(),
        });
    }

    pub fn duration(&mut self, key: &str, text: &DurationText) -> Option<Duration> {
        match humantime::parse_duration(text.0.trim()) {
            Ok(duration) => Some(duration),
            Err(_) => {
                self.errors.push(ConfigError::InvalidDuration {
                    file: self.file.to_owned(),
                    key: key.to_owned(),
                    value: text.0.clone(),
                });
                None
            }
        }
    }

    pub fn duration_or(
        &mut self,
        key: &str,
        text: Option<&DurationText>,
        default: Duration,
    ) -> Duration {
        text.and_then(|t| self.duration(key, t)).unwrap_or(default)
    }

    /// A duration that must be longer than zero.
    pub fn positive_duration(&mut self, key: &str, text: &DurationText) -> Option<Duration> {
        let duration = self.duration(key, text)?;
        if duration.is_zero() {
            let reason = format!("{:?} is no time at all; use e.g. 30s, 10m, 1h30m", text.0);
            self.invalid(key, reason);
            return None;
        }
        Some(duration)
    }

    pub fn timezone(&mut self, key: &str, text: &str) -> Option<Tz> {
        match text.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                self.errors.push(ConfigError::UnknownTimeZone {
                    file: self.file.to_owned(),
                    key: key.to_owned(),
                    value: text.to_owned(),
                });
                None
            }
        }
    }

    /// Keeps the labels with valid names; `job` is the job name and cannot
    /// be set.
    pub fn labels(
        &mut self,
        key: &str,
        labels: BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut valid = BTreeMap::new();
        for (name, value) in labels {
            let dotted = format!("{key}.{name}");
            if name == "job" {
                self.invalid(
                    &dotted,
                    "the job label is the job name (the file name); remove it",
                );
            } else if let Err(e) = pushguard::validate_label_name(&name) {
                self.invalid(&dotted, e.to_string());
            } else {
                valid.insert(name, value);
            }
        }
        valid
    }
}
