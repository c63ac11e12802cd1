//! The `notify` built-in job (STUB: the API is fixed, the body is being written).

use std::path::Path;

use super::error::BuiltinError;
use super::metrics::NotifyMetrics;
use super::store::Store;

/// The `[settings]` of a `builtin = "notify"` job file.
#[derive(Debug, Clone, Default)]
pub struct NotifySettings {}

impl NotifySettings {
    /// Validates a job file's `[settings]` table; relative paths are
    /// resolved against `base` (the job file's directory).
    pub fn from_table(table: &toml::Table, base: &Path) -> Result<NotifySettings, BuiltinError> {
        let _ = (table, base);
        Ok(NotifySettings {})
    }
}

/// What one run did.
#[derive(Debug, Clone, Default)]
pub struct NotifyReport {}

impl std::fmt::Display for NotifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("nothing")
    }
}

/// Runs the job once.
pub async fn notify(
    settings: &NotifySettings,
    store: &Store,
    metrics: &NotifyMetrics,
) -> Result<NotifyReport, BuiltinError> {
    let _ = (settings, store, metrics);
    Ok(NotifyReport {})
}
