//! Per-run helpers.

use std::time::Duration;

use crate::config::JobSpec;

/// A random delay in `[0, jitter)`.
pub(crate) fn jitter_sample(job: &JobSpec) -> Duration {
    if job.jitter.is_zero() {
        return Duration::ZERO;
    }
    // Spread, not cryptography: the clock's nanoseconds are random enough.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    job.jitter
        .mul_f64(f64::from(nanos % 1_000_000) / 1_000_000.0)
}
