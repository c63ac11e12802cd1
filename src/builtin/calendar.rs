//! The `calendar` built-in job (STUB: the API is fixed, the body is being written).

use std::path::Path;

use super::error::BuiltinError;
use super::metrics::CalendarMetrics;
use super::store::Store;

/// The `[settings]` of a `builtin = "calendar"` job file.
#[derive(Debug, Clone, Default)]
pub struct CalendarSettings {}

impl CalendarSettings {
    /// Validates a job file's `[settings]` table; relative paths are
    /// resolved against `base` (the job file's directory).
    pub fn from_table(table: &toml::Table, base: &Path) -> Result<CalendarSettings, BuiltinError> {
        let _ = (table, base);
        Ok(CalendarSettings {})
    }
}

/// What one run did.
#[derive(Debug, Clone, Default)]
pub struct CalendarReport {}

impl std::fmt::Display for CalendarReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("nothing")
    }
}

/// Runs the job once.
pub async fn sync_calendar(
    settings: &CalendarSettings,
    store: &Store,
    metrics: &CalendarMetrics,
) -> Result<CalendarReport, BuiltinError> {
    let _ = (settings, store, metrics);
    Ok(CalendarReport {})
}
