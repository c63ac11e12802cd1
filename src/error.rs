//! The one error type of the push boundary.
//!
//! Every way a push can go wrong is a variant of [`PushError`], so callers can
//! tell a problem in their own input (fix the code) from a gateway that is
//! down (try later) from a gateway that refused the push (read its reason).

use std::time::Duration;

/// Why a push, a delete or the validation before them failed.
///
/// Messages are lowercase, name the offending value and say how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// A metric name does not match the Prometheus data model.
    #[error("invalid metric name {name:?}: must match [a-zA-Z_:][a-zA-Z0-9_:]*")]
    InvalidMetricName {
        /// The name as given.
        name: String,
    },

    /// A label name does not match the Prometheus data model or is reserved.
    #[error("invalid label name {name:?}: {reason}")]
    InvalidLabelName {
        /// The name as given.
        name: String,
        /// What rule it breaks.
        reason: &'static str,
    },

    /// The job name of a grouping key is empty.
    #[error("invalid job name {name:?}: the job name must not be empty")]
    InvalidJobName {
        /// The name as given.
        name: String,
    },

    /// The metrics to push are not acceptable to a Pushgateway.
    #[error("invalid metrics: {reason}")]
    InvalidBody {
        /// What is wrong, naming the family, label or line.
        reason: String,
    },

    /// A configuration value (URL, certificate, header, duration) is unusable.
    #[error("invalid configuration: {reason}")]
    Config {
        /// What is wrong and with which value.
        reason: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// The gateway could not be reached or the connection broke.
    #[error("cannot reach the pushgateway at {url} after {attempts} attempt(s)")]
    Transport {
        /// The gateway URL that was tried.
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last transport error.
        #[source]
        source: reqwest::Error,
    },

    /// The overall deadline passed before the gateway confirmed the push.
    #[error("the pushgateway at {url} did not answer within {deadline:?} ({})", attempts_made(*attempts))]
    Timeout {
        /// The gateway URL that was tried.
        url: String,
        /// The deadline that passed.
        deadline: Duration,
        /// How many attempts were made.
        attempts: u32,
    },

    /// The gateway answered with an error status; 4xx answers are not retried.
    /// A 401 or 403 says "authentication failed" and names the gateway, never
    /// the credentials.
    #[error("{}", rejected_message(.method, .url, *.status, .body))]
    Rejected {
        /// HTTP method of the refused request.
        method: &'static str,
        /// The full URL of the refused request.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The gateway's reason text (trimmed).
        body: String,
    },

    /// The push was not delivered yet; it is kept in the state file's outbox
    /// and delivered by a later push, `pushguard outbox --flush` or the runner.
    ///
    /// Not the job's failure: `finish`, `State::push` and `State::delete`
    /// return this case as an `Ok` report with
    /// [`PushReport::spooled`](crate::PushReport::spooled) set; only
    /// [`PushReport::into_delivered`](crate::PushReport::into_delivered)
    /// makes it this error, for callers that need delivery now.
    #[error("not delivered yet, kept in the outbox as entry {id}: {reason}")]
    Spooled {
        /// Outbox entry id.
        id: i64,
        /// Why it was not delivered now.
        reason: String,
    },

    /// The state file cannot be used.
    #[cfg(feature = "state")]
    #[error(transparent)]
    State(crate::state::StateError),

    /// A [`RunHandle`](crate::RunHandle) was used where no run is in
    /// progress: [`current`](crate::current) outside a `#[pushguard::job]`
    /// function (or [`JobRun::instrument`](crate::JobRun::instrument)), or a
    /// handle kept after its run ended.
    #[error("{}", not_running_message(.job.as_deref()))]
    NotRunning {
        /// The job whose run had already ended; `None` when the handle never
        /// belonged to a run.
        job: Option<String>,
    },
}

/// The text of [`PushError::NotRunning`].
fn not_running_message(job: Option<&str>) -> String {
    match job {
        Some(job) => format!(
            "the run of job {job:?} has already ended: register metrics and set the exit code \
             before the job function returns"
        ),
        None => "no job is running here: pushguard::current() was called outside a \
                 #[pushguard::job] function; in a thread or task the job starts, use a \
                 RunHandle cloned from pushguard::current() in the job instead"
            .to_owned(),
    }
}

/// The text of [`PushError::Rejected`].
fn rejected_message(method: &str, url: &str, status: u16, body: &str) -> String {
    match status {
        401 | 403 => format!(
            "authentication failed at the {}: the {method} to {url} was refused with \
             {status}: {body}; check the credentials (PUSHGATEWAY_USERNAME and \
             PUSHGATEWAY_PASSWORD, or PUSHGATEWAY_BEARER_TOKEN, or their _FILE variants)",
            if method == "WRITE" {
                "remote-write receiver"
            } else {
                "pushgateway"
            }
        ),
        _ if method == "WRITE" => {
            format!("the remote-write receiver refused the write to {url}: {status}: {body}")
        }
        _ => format!("the pushgateway refused the {method} to {url}: {status}: {body}"),
    }
}

#[cfg(feature = "state")]
impl From<crate::state::StateError> for PushError {
    fn from(error: crate::state::StateError) -> Self {
        PushError::State(error)
    }
}

impl PushError {
    /// Whether a failed push may still be applied by the gateway later: the
    /// request went out and no answer came (a timeout, a connection broken
    /// mid-request). A refused connection or an error status is not in doubt.
    #[cfg(feature = "state")]
    pub(crate) fn in_doubt(&self) -> bool {
        match self {
            // None sent (no turn came): nothing can land later.
            PushError::Timeout { attempts, .. } => *attempts > 0,
            PushError::Transport { source, .. } => !source.is_connect(),
            _ => false,
        }
    }

    /// True when trying the same push later may succeed (transport problems,
    /// timeouts, 5xx answers); false for errors in the pushed data.
    pub fn is_retryable(&self) -> bool {
        match self {
            PushError::Transport { .. } | PushError::Timeout { .. } | PushError::Spooled { .. } => {
                true
            }
            PushError::Rejected { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    pub(crate) fn config(reason: impl Into<String>) -> Self {
        PushError::Config {
            reason: reason.into(),
            source: None,
        }
    }

    pub(crate) fn config_with(
        reason: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        PushError::Config {
            reason: reason.into(),
            source: Some(Box::new(source)),
        }
    }

    pub(crate) fn body(reason: impl Into<String>) -> Self {
        PushError::InvalidBody {
            reason: reason.into(),
        }
    }
}

/// How many attempts a timed-out push made; none means its turn among the
/// client's requests in flight did not come within the deadline.
fn attempts_made(attempts: u32) -> String {
    match attempts {
        0 => "no attempt made: the client's other requests held every connection".to_owned(),
        n => format!("{n} attempt(s)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_says_whether_the_push_was_ever_sent() {
        let timeout = |attempts| PushError::Timeout {
            url: "http://127.0.0.1:9091/metrics/job/a".to_owned(),
            deadline: Duration::from_secs(5),
            attempts,
        };
        assert!(timeout(2).to_string().ends_with("(2 attempt(s))"));
        let waited = timeout(0).to_string();
        assert!(
            waited.contains("no attempt made: the client's other requests held every connection"),
            "{waited}"
        );
    }

    fn rejected(status: u16) -> String {
        PushError::Rejected {
            method: "PUT",
            url: "https://gw.example:9091/metrics/job/j".into(),
            status,
            body: "Unauthorized".into(),
        }
        .to_string()
    }

    #[test]
    fn an_auth_refusal_says_authentication_failed_and_names_the_gateway() {
        for status in [401, 403] {
            let text = rejected(status);
            assert!(text.starts_with("authentication failed"), "{text}");
            assert!(
                text.contains("https://gw.example:9091/metrics/job/j"),
                "{text}"
            );
            assert!(text.contains(&status.to_string()), "{text}");
        }
        let text = rejected(400);
        assert!(
            text.starts_with("the pushgateway refused the PUT"),
            "{text}"
        );
        assert!(
            !PushError::Rejected {
                method: "PUT",
                url: String::new(),
                status: 401,
                body: String::new(),
            }
            .is_retryable()
        );
    }
}
