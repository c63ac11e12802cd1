//! Names and grouping keys.
//!
//! A Pushgateway stores metrics in *groups* addressed by a grouping key: the
//! job name plus optional labels, encoded into the URL path. Values that are
//! empty, contain `/` or anything that is not plain URL-safe text travel as
//! `<label>@base64/<urlsafe base64>` so every UTF-8 value comes back from the
//! gateway byte for byte. Names are checked against the Prometheus data model
//! here, before any network call.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;

use crate::error::PushError;

/// Checks a metric name against `[a-zA-Z_:][a-zA-Z0-9_:]*`.
///
/// ```
/// assert!(pushguard::validate_metric_name("rows_processed_total").is_ok());
/// assert!(pushguard::validate_metric_name("2xx").is_err());
/// ```
pub fn validate_metric_name(name: &str) -> Result<(), PushError> {
    let mut bytes = name.bytes();
    let ok = match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':' => {
            bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(PushError::InvalidMetricName {
            name: name.to_owned(),
        })
    }
}

/// Checks a label name against `[a-zA-Z_][a-zA-Z0-9_]*` and refuses the
/// names Prometheus reserves (`__` prefix).
///
/// ```
/// assert!(pushguard::validate_label_name("team").is_ok());
/// assert!(pushguard::validate_label_name("2xx").is_err());
/// assert!(pushguard::validate_label_name("__name__").is_err());
/// ```
pub fn validate_label_name(name: &str) -> Result<(), PushError> {
    let mut bytes = name.bytes();
    let ok = match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {
            bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        }
        _ => false,
    };
    if !ok {
        return Err(PushError::InvalidLabelName {
            name: name.to_owned(),
            reason: "must match [a-zA-Z_][a-zA-Z0-9_]*",
        });
    }
    if name.starts_with("__") {
        return Err(PushError::InvalidLabelName {
            name: name.to_owned(),
            reason: "names starting with \"__\" are reserved by Prometheus",
        });
    }
    Ok(())
}

/// The address of one group on a Pushgateway: `{job="<name>"}` plus labels.
///
/// ```
/// let key = pushguard::GroupingKey::new("backup")?.label("host", "db/1")?;
/// assert_eq!(key.path(), "/metrics/job/backup/host@base64/ZGIvMQ==");
/// # Ok::<(), pushguard::PushError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupingKey {
    job: String,
    labels: BTreeMap<String, String>,
}

impl GroupingKey {
    /// A key for `job` with no further labels. The job name may be any
    /// non-empty UTF-8 text.
    pub fn new(job: impl Into<String>) -> Result<Self, PushError> {
        let job = job.into();
        if job.is_empty() {
            return Err(PushError::InvalidJobName { name: job });
        }
        let key = GroupingKey {
            job,
            labels: BTreeMap::new(),
        };
        let length = key.path().len();
        if length > Self::MAX_PATH_BYTES {
            return Err(PushError::config(format!(
                "the job name is too long: its URL path would be {length} bytes, over the {} a push may use",
                Self::MAX_PATH_BYTES
            )));
        }
        Ok(key)
    }

    /// Adds a grouping label. `job` and reserved or malformed names are
    /// refused, and so is a label that makes the group's URL path longer than
    /// [`MAX_PATH_BYTES`](Self::MAX_PATH_BYTES) (a gateway refuses very long
    /// request lines, so such a push could never be delivered).
    pub fn label(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, PushError> {
        let name = name.into();
        validate_label_name(&name)?;
        if name == "job" {
            return Err(PushError::InvalidLabelName {
                name,
                reason: "the job is set by the job name, not by a label",
            });
        }
        self.labels.insert(name.clone(), value.into());
        let length = self.path().len();
        if length > Self::MAX_PATH_BYTES {
            return Err(PushError::config(format!(
                "the grouping key is too long with the label {name:?}: its URL path would be {length} bytes, over the {} a push may use; keep grouping labels short and push long values as metrics",
                Self::MAX_PATH_BYTES
            )));
        }
        Ok(self)
    }

    /// The longest URL path of a group pushguard sends: 16 KiB. Gateways
    /// refuse far longer request lines (Go's HTTP server stops at about
    /// 64 KiB of headers); this keeps a wide margin and fails before sending.
    pub const MAX_PATH_BYTES: usize = 16 * 1024;

    /// The job name.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The grouping labels other than `job`, sorted by name.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// True when `name` is `job` or one of the grouping labels.
    pub fn contains_label(&self, name: &str) -> bool {
        name == "job" || self.labels.contains_key(name)
    }

    /// Reads a path written by [`path`](Self::path) back into a key.
    ///
    /// ```
    /// let key = pushguard::GroupingKey::new("backup")?.label("host", "db/1")?;
    /// assert_eq!(pushguard::GroupingKey::from_path(&key.path()), Some(key));
    /// # Ok::<(), pushguard::PushError>(())
    /// ```
    pub fn from_path(path: &str) -> Option<GroupingKey> {
        let mut segments = path.strip_prefix("/metrics/")?.split('/');
        let mut pairs = Vec::new();
        while let Some(name) = segments.next() {
            let value = segments.next()?;
            let (name, value) = match name.strip_suffix("@base64") {
                Some(name) if value == "=" => (name, String::new()),
                Some(name) => {
                    let bytes = URL_SAFE.decode(value).ok()?;
                    (name, String::from_utf8(bytes).ok()?)
                }
                None => (name, value.to_owned()),
            };
            pairs.push((name.to_owned(), value));
        }
        let mut pairs = pairs.into_iter();
        let (first, job) = pairs.next()?;
        if first != "job" {
            return None;
        }
        let mut key = GroupingKey::new(job).ok()?;
        for (name, value) in pairs {
            key = key.label(name, value).ok()?;
        }
        Some(key)
    }

    /// The key in the Prometheus label-set notation, `{job="a",env="b"}`.
    pub fn display(&self) -> String {
        let mut text = format!("{{job={:?}", self.job);
        for (name, value) in &self.labels {
            let _ = write!(text, ",{name}={value:?}");
        }
        text.push('}');
        text
    }

    /// The URL path of the group, starting with `/metrics/job`.
    pub fn path(&self) -> String {
        let mut path = String::with_capacity(32 + self.job.len());
        path.push_str("/metrics");
        push_segment(&mut path, "job", &self.job);
        for (name, value) in &self.labels {
            push_segment(&mut path, name, value);
        }
        path
    }
}

fn is_plain(value: &str) -> bool {
    // "." and ".." would be removed from the path by URL normalisation.
    !matches!(value, "" | "." | "..")
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn push_segment(path: &mut String, name: &str, value: &str) {
    if is_plain(value) {
        let _ = write!(path, "/{name}/{value}");
    } else if value.is_empty() {
        // The gateway's documented spelling of an empty value.
        let _ = write!(path, "/{name}@base64/=");
    } else {
        let _ = write!(path, "/{name}@base64/{}", URL_SAFE.encode(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn metric_names() {
        for ok in ["a", "_", ":", "job_runs_total", "a:b_c9"] {
            validate_metric_name(ok).unwrap();
        }
        for bad in ["", "2xx", "a-b", "a b", "é", "a.b"] {
            let err = validate_metric_name(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn label_names() {
        validate_label_name("team").unwrap();
        validate_label_name("_x1").unwrap();
        for bad in ["", "2xx", "a:b", "__name__", "a-b"] {
            assert!(validate_label_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths() {
        let key = GroupingKey::new("backup").unwrap();
        assert_eq!(key.path(), "/metrics/job/backup");
        let key = key.label("b", "").unwrap().label("a", "x y").unwrap();
        assert_eq!(key.path(), "/metrics/job/backup/a@base64/eCB5/b@base64/=");
        let key = GroupingKey::new("..").unwrap().label("d", ".").unwrap();
        assert_eq!(key.path(), "/metrics/job@base64/Li4=/d@base64/Lg==");
        let key = GroupingKey::new("a/b").unwrap();
        assert_eq!(key.path(), "/metrics/job@base64/YS9i");
        assert!(GroupingKey::new("").is_err());
        assert!(GroupingKey::new("x").unwrap().label("job", "y").is_err());
        assert!(GroupingKey::new("x").unwrap().label("1a", "y").is_err());
    }

    proptest! {
        #[test]
        fn segments_decode_back(value in any::<String>()) {
            let key = GroupingKey::new("j").unwrap().label("l", value.clone()).unwrap();
            let path = key.path();
            let segment = path.strip_prefix("/metrics/job/j/").unwrap();
            let decoded = if let Some(b64) = segment.strip_prefix("l@base64/") {
                if b64 == "=" { String::new() } else {
                    String::from_utf8(URL_SAFE.decode(b64).unwrap()).unwrap()
                }
            } else {
                segment.strip_prefix("l/").unwrap().to_owned()
            };
            prop_assert_eq!(decoded, value.clone());
            prop_assert_eq!(GroupingKey::from_path(&path), Some(key));
        }
    }

    #[test]
    fn a_key_too_long_for_a_gateway_is_refused_naming_the_label() {
        let long = "x".repeat(GroupingKey::MAX_PATH_BYTES);
        let error = GroupingKey::new("j")
            .unwrap()
            .label("big", long.clone())
            .unwrap_err();
        assert!(error.to_string().contains("\"big\""), "{error}");
        assert!(GroupingKey::new(long).is_err());
        GroupingKey::new("j")
            .unwrap()
            .label("ok", "x".repeat(1000))
            .unwrap();
    }
}
