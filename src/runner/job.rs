//! Built-in job dispatch and per-run helpers.

use std::time::Duration;

#[cfg(not(feature = "builtin"))]
use tokio::sync::watch;

#[cfg(not(feature = "builtin"))]
use super::command::{Ending, Tail};
#[cfg(not(feature = "builtin"))]
use crate::config::Builtin;
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

/// Runs a built-in job in a build without the `builtin` feature: `noop`
/// succeeds at once, the release-delivery built-ins fail their run.
#[cfg(not(feature = "builtin"))]
pub(crate) async fn run_builtin(
    job: &JobSpec,
    builtin: Builtin,
    _stop: watch::Receiver<bool>,
) -> (Ending, Tail) {
    match builtin {
        Builtin::Noop => (
            Ending::Exited {
                code: 0,
                signal: None,
            },
            Tail::default(),
        ),
        other => {
            let reason = format!(
                "the built-in job {:?} is not available in this build",
                other.as_str()
            );
            eprintln!("[{}] {reason}", job.name);
            (Ending::NotStarted { code: 127, reason }, Tail::default())
        }
    }
}
