//! Errors of the built-in jobs.

use std::path::PathBuf;

use super::store::StoreError;

/// Why a built-in job could not run or did not fully succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuiltinError {
    /// The job's `[settings]` table is invalid.
    #[error("invalid settings: {key}: {reason}")]
    Settings {
        /// The offending key, as written in the job file.
        key: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A file the job reads or writes.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The job has nothing it can do yet: none of its channels is
    /// configured (a fresh install). The runner records such a run as
    /// skipped, not failed.
    #[error("{reason}")]
    Unconfigured {
        /// What is missing and how to set it.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Some sources, channels or events failed; the rest went through.
    #[error("{} of {total} failed: {}", failed.len(), failed.join("; "))]
    Partial {
        /// One line per failed source, channel or event, naming it.
        failed: Vec<String>,
        /// How many were attempted.
        total: usize,
    },
}
