//! The one error type of the configuration boundary, and the collection of
//! them that `pushguard check` prints.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in the runner's configuration file, a job file, or the
/// environment.
///
/// Every message starts with the file (or environment variable), names the
/// key in dotted form where there is one, quotes the offending value and says
/// how to fix it:
///
/// ```text
/// jobs/backup.toml: timeout: invalid duration "5parsecs" (use e.g. 30s, 10m, 1h30m)
/// jobs/x.toml: unknown key "comand" (did you mean "command"?)
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file could not be read.
    #[error("{}: cannot read the file: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// The jobs directory could not be listed.
    #[error(
        "{}: cannot read the jobs directory: {source} (create it, or set [runner] jobs_dir or --jobs DIR)",
        file.display()
    )]
    ReadDir {
        /// The directory.
        file: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// The file is not valid TOML.
    #[error("{}: line {line}, column {column}: invalid TOML: {reason}", file.display())]
    Syntax {
        /// The file.
        file: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column (in characters) of the problem.
        column: usize,
        /// What the TOML parser expected.
        reason: String,
    },

    /// A key that the file format does not have (often a typo).
    #[error("{}: unknown key {key:?} ({})", file.display(), unknown_key_hint(suggestion.as_deref()))]
    UnknownKey {
        /// The file.
        file: PathBuf,
        /// The dotted key, e.g. `comand` or `runner.lisen`.
        key: String,
        /// The known key it most resembles, if any.
        suggestion: Option<String>,
    },

    /// A required key is missing.
    #[error("{}: {key}: missing; add e.g. {example}", file.display())]
    MissingKey {
        /// The file.
        file: PathBuf,
        /// The dotted key.
        key: String,
        /// A line that would fix it.
        example: &'static str,
    },

    /// A value has the wrong type or is out of range.
    #[error("{}: {key}: {reason}", file.display())]
    InvalidValue {
        /// The file, or `environment` for a variable.
        file: PathBuf,
        /// The dotted key (or variable name).
        key: String,
        /// What is wrong with the value, quoting it, and how to fix it.
        reason: String,
    },

    /// A duration that `humantime` cannot read.
    #[error("{}: {key}: invalid duration {value:?} (use e.g. 30s, 10m, 1h30m)", file.display())]
    InvalidDuration {
        /// The file.
        file: PathBuf,
        /// The dotted key, e.g. `timeout` or `defaults.backoff`.
        key: String,
        /// The value as written.
        value: String,
    },

    /// A schedule that is neither cron, a nickname nor `@every`.
    #[error("{}: schedule: {error}", file.display())]
    InvalidSchedule {
        /// The file.
        file: PathBuf,
        /// The schedule as written.
        value: String,
        /// Why the schedule parser refused it; its message quotes the value.
        error: crate::schedule::ScheduleError,
    },

    /// A time zone that is not in the IANA database.
    #[error("{}: {key}: unknown time zone {value:?} ({})", file.display(), time_zone_hint(value))]
    UnknownTimeZone {
        /// The file.
        file: PathBuf,
        /// The dotted key, `timezone` or `defaults.timezone`.
        key: String,
        /// The name as written.
        value: String,
    },

    /// A `builtin` that pushguard does not provide.
    #[error("{}: builtin: unknown built-in job {value:?} (use one of: prune, {})", file.display(), pushguard_releases::builtin_names().join(", "))]
    UnknownBuiltin {
        /// The file.
        file: PathBuf,
        /// The name as written.
        value: String,
    },

    /// A job file without anything to run.
    #[error(
        "{}: neither command nor builtin is set (add e.g. command = [\"./backup.sh\"] or builtin = \"noop\")",
        file.display()
    )]
    NoAction {
        /// The file.
        file: PathBuf,
    },

    /// A job file with both a command and a built-in.
    #[error("{}: both command and builtin are set (keep one of them)", file.display())]
    BothActions {
        /// The file.
        file: PathBuf,
    },

    /// A job file whose name (the file stem) cannot be a job name.
    #[error(
        "{}: invalid job name {name:?}: must match [A-Za-z0-9_][A-Za-z0-9_.-]* (rename the file)",
        file.display()
    )]
    InvalidJobName {
        /// The file.
        file: PathBuf,
        /// The file stem.
        name: String,
    },
}

fn unknown_key_hint(suggestion: Option<&str>) -> String {
    match suggestion {
        Some(known) => format!("did you mean {known:?}?"),
        None => "remove it, or see the job file format in the README".to_owned(),
    }
}

/// A name that differs only in case, else examples.
fn time_zone_hint(name: &str) -> String {
    match chrono_tz::TZ_VARIANTS
        .iter()
        .find(|tz| tz.name().eq_ignore_ascii_case(name))
    {
        Some(tz) => format!("did you mean {:?}?", tz.name()),
        None => "use an IANA name such as UTC, Europe/Berlin or Asia/Tokyo".to_owned(),
    }
}

impl ConfigError {
    /// The file the problem is in (the jobs directory for [`ReadDir`](Self::ReadDir),
    /// `environment` for a bad environment variable).
    ///
    /// On reload, the runner keeps the old definition of the job whose file
    /// this is (its stem is the job name).
    pub fn file(&self) -> &Path {
        match self {
            ConfigError::Read { file, .. }
            | ConfigError::ReadDir { file, .. }
            | ConfigError::Syntax { file, .. }
            | ConfigError::UnknownKey { file, .. }
            | ConfigError::MissingKey { file, .. }
            | ConfigError::InvalidValue { file, .. }
            | ConfigError::InvalidDuration { file, .. }
            | ConfigError::InvalidSchedule { file, .. }
            | ConfigError::UnknownTimeZone { file, .. }
            | ConfigError::UnknownBuiltin { file, .. }
            | ConfigError::NoAction { file }
            | ConfigError::BothActions { file }
            | ConfigError::InvalidJobName { file, .. } => file,
        }
    }

    /// The dotted key the problem is at, when it is at one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. }
            | ConfigError::MissingKey { key, .. }
            | ConfigError::InvalidValue { key, .. }
            | ConfigError::InvalidDuration { key, .. }
            | ConfigError::UnknownTimeZone { key, .. } => Some(key),
            ConfigError::InvalidSchedule { .. } => Some("schedule"),
            ConfigError::UnknownBuiltin { .. } => Some("builtin"),
            _ => None,
        }
    }
}

/// Every problem found while loading, in file order; at least one.
///
/// Displays one problem per line, so `pushguard check` can print it as is.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("x.toml"), "schedule = \"@hourly\"\ncomand = [\"true\"]\n")?;
/// let errors = pushguard_cli::ConfigLoader::new().jobs_dir(dir.path()).load().unwrap_err();
/// assert_eq!(errors.len(), 1);
/// assert!(errors.to_string().ends_with("x.toml: unknown key \"comand\" (did you mean \"command\"?)"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// Wraps a list of problems; `None` when the list is empty.
    pub fn new(errors: Vec<ConfigError>) -> Option<Self> {
        if errors.is_empty() {
            None
        } else {
            Some(ConfigErrors(errors))
        }
    }

    /// How many problems there are.
    #[allow(clippy::len_without_is_empty)] // never empty
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The problems, in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// The problems, in file order.
    pub fn into_vec(self) -> Vec<ConfigError> {
        self.0
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
