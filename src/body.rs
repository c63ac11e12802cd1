//! The metrics of one push, validated before any network call.
//!
//! A [`Body`] collects metric families from three sources — single samples
//! added by name, `prometheus` crate registries, and exposition text (a file
//! or stdin) — checks each against the Prometheus data model and the rules of
//! the Pushgateway (no timestamps, no duplicate families, no label that is
//! part of the grouping key), and keeps them encoded in the text format with
//! `# TYPE` lines, ready to send.

mod text;

use std::collections::HashSet;
use std::fmt::Write as _;

use prometheus::Encoder as _;
use prometheus::proto::MetricFamily;

use crate::error::PushError;
use crate::grouping::{GroupingKey, validate_label_name, validate_metric_name};

/// Content type of the text exposition format.
pub(crate) const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The type of a metric family given by name and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricKind {
    /// A value that can go up and down.
    Gauge,
    /// A monotonically increasing total.
    Counter,
    /// A value of unknown type.
    Untyped,
}

impl MetricKind {
    fn as_str(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Counter => "counter",
            MetricKind::Untyped => "untyped",
        }
    }
}

impl std::str::FromStr for MetricKind {
    type Err = PushError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gauge" => Ok(MetricKind::Gauge),
            "counter" => Ok(MetricKind::Counter),
            "untyped" => Ok(MetricKind::Untyped),
            other => Err(PushError::body(format!(
                "unknown metric type {other:?}: use gauge, counter or untyped"
            ))),
        }
    }
}

/// Validated metric families encoded in the text exposition format.
///
/// ```
/// let mut body = pushguard::Body::new();
/// body.gauge("rows_processed", "Rows the last run processed.", 1234.0)?;
/// assert!(body.as_str().contains("# TYPE rows_processed gauge"));
/// assert!(body.gauge("rows_processed", "again", 1.0).is_err()); // duplicate family
/// # Ok::<(), pushguard::PushError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Body {
    text: String,
    families: HashSet<String>,
    label_names: HashSet<String>,
}

impl Body {
    /// An empty body.
    pub fn new() -> Self {
        Self::default()
    }

    /// The encoded text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when no family was added.
    pub fn is_empty(&self) -> bool {
        self.families.is_empty()
    }

    /// True when a family of this name was added.
    pub fn contains_family(&self, name: &str) -> bool {
        self.families.contains(name)
    }

    /// Adds a family with a single unlabelled sample.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) -> Result<(), PushError> {
        self.sample(name, help, MetricKind::Gauge, value)
    }

    /// Adds a family with a single unlabelled sample of the given kind.
    pub fn sample(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricKind,
        value: f64,
    ) -> Result<(), PushError> {
        self.family(name, help, kind, &[(None, value)])
    }

    /// Adds a family whose samples differ by one label (`label`, value) pairs;
    /// `None` means an unlabelled sample.
    pub(crate) fn family(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricKind,
        samples: &[(Option<(&str, &str)>, f64)],
    ) -> Result<(), PushError> {
        validate_metric_name(name)?;
        for (label, value) in samples {
            if let Some((label_name, _)) = label {
                validate_label_name(label_name)?;
            }
            if kind == MetricKind::Counter && (value.is_nan() || *value < 0.0) {
                return Err(PushError::body(format!(
                    "counter {name:?} has the value {value}: a counter is never negative or NaN (use a gauge)"
                )));
            }
        }
        self.claim_family(name)?;
        if !help.is_empty() {
            let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        }
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.as_str());
        for (label, value) in samples {
            self.text.push_str(name);
            if let Some((label_name, label_value)) = label {
                self.label_names.insert((*label_name).to_owned());
                let _ = write!(
                    self.text,
                    "{{{label_name}=\"{}\"}}",
                    escape_label_value(label_value)
                );
            }
            self.text.push(' ');
            push_value(&mut self.text, *value);
            self.text.push('\n');
        }
        Ok(())
    }

    /// Adds families gathered from a `prometheus` registry (or built by hand).
    /// Families without samples are skipped.
    pub fn add_families(&mut self, families: &[MetricFamily]) -> Result<(), PushError> {
        let mut keep = Vec::with_capacity(families.len());
        for family in families {
            if family.get_metric().is_empty() {
                continue;
            }
            let name = family.name();
            validate_metric_name(name)?;
            for metric in family.get_metric() {
                if metric.timestamp_ms() != 0 {
                    return Err(PushError::body(format!(
                        "family {name:?} carries a timestamp: the pushgateway refuses timestamps"
                    )));
                }
                let mut seen = HashSet::new();
                for pair in metric.get_label() {
                    validate_label_name(pair.name())?;
                    if !seen.insert(pair.name()) {
                        return Err(PushError::body(format!(
                            "family {name:?} has label {:?} twice in one sample",
                            pair.name()
                        )));
                    }
                    self.label_names.insert(pair.name().to_owned());
                }
            }
            self.claim_family(name)?;
            keep.push(family.clone());
        }
        if keep.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&keep, &mut buf)
            .map_err(|e| PushError::body(format!("cannot encode families: {e}")))?;
        self.text.push_str(&String::from_utf8_lossy(&buf));
        Ok(())
    }

    /// Adds every family of a `prometheus` registry, as it is.
    pub fn add_registry(&mut self, registry: &prometheus::Registry) -> Result<(), PushError> {
        self.add_families(&registry.gather())
    }

    /// Adds exposition text (the format `/metrics` endpoints serve), checking
    /// every line. Errors name the line.
    pub fn add_text(&mut self, input: &str) -> Result<(), PushError> {
        // CRLF line endings (a file written on Windows) are sent as LF: the
        // gateway refuses a carriage return inside a line.
        let normalized;
        let input = if input.contains('\r') {
            normalized = input.replace("\r\n", "\n");
            if let Some(at) = normalized.find('\r') {
                let line_no = normalized[..at].matches('\n').count() + 1;
                return Err(PushError::body(format!(
                    "line {line_no}: a carriage return outside a CRLF line ending: the gateway refuses it"
                )));
            }
            normalized.as_str()
        } else {
            input
        };
        let parsed = text::parse(input)?;
        for name in &parsed.families {
            self.claim_family(name)?;
        }
        self.label_names.extend(parsed.label_names);
        self.text.push_str(input);
        if !input.is_empty() && !input.ends_with('\n') {
            self.text.push('\n');
        }
        Ok(())
    }

    /// Every sample of the body: name, labels (values unescaped), value.
    #[cfg(feature = "remote-write")]
    pub(crate) fn samples(&self) -> Vec<text::Sampled> {
        text::samples(&self.text)
    }

    /// Refuses a body whose samples carry `job` or a label of the grouping key:
    /// the gateway would answer 400 or silently override them.
    pub fn check_grouping(&self, key: &GroupingKey) -> Result<(), PushError> {
        let mut clashing: Vec<&str> = self
            .label_names
            .iter()
            .map(String::as_str)
            .filter(|name| key.contains_label(name))
            .collect();
        clashing.sort_unstable();
        match clashing.first() {
            None => Ok(()),
            Some(name) => Err(PushError::body(format!(
                "samples carry the label {name:?}, which is part of the grouping key: set it only with the job name or --label"
            ))),
        }
    }

    fn claim_family(&mut self, name: &str) -> Result<(), PushError> {
        if self.families.insert(name.to_owned()) {
            Ok(())
        } else {
            Err(PushError::body(format!(
                "family {name:?} appears twice: each family may be pushed once per request"
            )))
        }
    }
}

pub(crate) fn push_value(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value == f64::INFINITY {
        out.push_str("+Inf");
    } else if value == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{value}");
    }
}

pub(crate) fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

pub(crate) fn escape_label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_and_duplicates() {
        let mut body = Body::new();
        body.gauge("a", "help \\ with\nnewline", 1.5).unwrap();
        body.family(
            "runs_total",
            "",
            MetricKind::Counter,
            &[(Some(("outcome", "ok \"x\"")), 2.0), (None, f64::INFINITY)],
        )
        .unwrap();
        assert_eq!(
            body.as_str(),
            "# HELP a help \\\\ with\\nnewline\n# TYPE a gauge\na 1.5\n\
             # TYPE runs_total counter\nruns_total{outcome=\"ok \\\"x\\\"\"} 2\nruns_total +Inf\n"
        );
        assert!(body.gauge("a", "", 1.0).is_err());
        assert!(body.gauge("bad-name", "", 1.0).is_err());
        assert!(body.add_text("a 3\n").is_err());
    }

    #[test]
    fn registry_families() {
        let registry = prometheus::Registry::new();
        let counter = prometheus::IntCounterVec::new(
            prometheus::Opts::new("rows_total", "Rows."),
            &["table"],
        )
        .unwrap();
        registry.register(Box::new(counter.clone())).unwrap();
        counter.with_label_values(&["users"]).inc_by(7);
        let mut body = Body::new();
        body.add_registry(&registry).unwrap();
        assert!(body.as_str().contains("rows_total{table=\"users\"} 7"));
        assert!(body.as_str().contains("# TYPE rows_total counter"));
        let key = GroupingKey::new("j").unwrap().label("table", "x").unwrap();
        let err = body.check_grouping(&key).unwrap_err().to_string();
        assert!(err.contains("\"table\""), "{err}");
        assert!(body.check_grouping(&GroupingKey::new("j").unwrap()).is_ok());
    }

    #[test]
    fn timestamps_refused() {
        let mut family = MetricFamily::default();
        family.set_name("x".into());
        let mut metric = prometheus::proto::Metric::default();
        metric.set_timestamp_ms(1000);
        family.set_metric(vec![metric]);
        let err = Body::new().add_families(&[family]).unwrap_err().to_string();
        assert!(err.contains("timestamp"), "{err}");
    }
}
