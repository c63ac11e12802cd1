//! The `fetch` built-in job (STUB: the API is fixed, the body is being written).

use std::path::Path;

use super::error::BuiltinError;
use super::metrics::FetchMetrics;
use super::store::Store;

/// The `[settings]` of a `builtin = "fetch"` job file.
#[derive(Debug, Clone, Default)]
pub struct FetchSettings {}

impl FetchSettings {
    /// Validates a job file's `[settings]` table; relative paths are
    /// resolved against `base` (the job file's directory).
    pub fn from_table(table: &toml::Table, base: &Path) -> Result<FetchSettings, BuiltinError> {
        let _ = (table, base);
        Ok(FetchSettings {})
    }
}

/// What one run did.
#[derive(Debug, Clone, Default)]
pub struct FetchReport {}

impl std::fmt::Display for FetchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("nothing")
    }
}

/// Runs the job once.
pub async fn fetch(
    settings: &FetchSettings,
    store: &Store,
    metrics: &FetchMetrics,
) -> Result<FetchReport, BuiltinError> {
    let _ = (settings, store, metrics);
    Ok(FetchReport {})
}
