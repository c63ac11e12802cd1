//! A checking reader of the text exposition format.
//!
//! It does not build a model: it walks every line, validates names, label
//! syntax and values, and reports what the gateway would refuse (timestamps,
//! a family split or declared twice), with the line number. The text itself
//! is sent on unchanged.

use std::collections::HashSet;
use std::fmt::Write as _;

use crate::error::PushError;
use crate::grouping::{validate_label_name, validate_metric_name};

/// What a successful check found.
#[derive(Debug, Default)]
pub(super) struct Parsed {
    /// Family names in order of appearance.
    pub families: Vec<String>,
    /// Every label name used by a sample.
    pub label_names: HashSet<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

struct Current {
    name: String,
    kind: Option<Kind>,
    has_help: bool,
    has_samples: bool,
}

impl Current {
    /// Whether a sample called `sample` belongs to this family.
    fn owns(&self, sample: &str) -> bool {
        if sample == self.name {
            return !matches!(self.kind, Some(Kind::Histogram));
        }
        let Some(suffix) = sample.strip_prefix(self.name.as_str()) else {
            return false;
        };
        match self.kind {
            Some(Kind::Histogram) => matches!(suffix, "_bucket" | "_sum" | "_count"),
            Some(Kind::Summary) => matches!(suffix, "_sum" | "_count"),
            _ => false,
        }
    }
}

pub(super) fn parse(input: &str) -> Result<Parsed, PushError> {
    let mut parsed = Parsed::default();
    let mut done: HashSet<String> = HashSet::new();
    let mut current: Option<Current> = None;
    // Every series seen (name and sorted label pairs): the gateway refuses a
    // body with the same series twice.
    let mut series: HashSet<String> = HashSet::new();

    for (index, raw) in input.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim_start();
        let err = |what: String| PushError::body(format!("line {line_no}: {what}"));
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, [' ', '\t']);
            let keyword = words.next().unwrap_or("");
            if keyword != "TYPE" && keyword != "HELP" {
                continue;
            }
            let name = words.next().unwrap_or("");
            validate_metric_name(name).map_err(|e| err(e.to_string()))?;
            let rest = words.next().unwrap_or("").trim();
            let same = current.as_ref().is_some_and(|c| c.name == name);
            if !same {
                start_family(&mut parsed, &mut done, &mut current, name).map_err(err)?;
            }
            let family = current.as_mut().expect("a family was just started");
            if keyword == "TYPE" {
                if family.kind.is_some() || family.has_samples {
                    return Err(err(format!(
                        "TYPE of {name:?} given twice or after its samples"
                    )));
                }
                family.kind = Some(match rest {
                    "counter" => Kind::Counter,
                    "gauge" => Kind::Gauge,
                    "histogram" => Kind::Histogram,
                    "summary" => Kind::Summary,
                    "untyped" => Kind::Untyped,
                    other => return Err(err(format!("unknown type {other:?} for {name:?}"))),
                });
            } else {
                if family.has_help {
                    return Err(err(format!("HELP of {name:?} given twice")));
                }
                family.has_help = true;
            }
            continue;
        }

        let mut sample = parse_sample(line).map_err(err)?;
        let owned = current.as_ref().is_some_and(|c| c.owns(sample.name));
        if !owned {
            start_family(&mut parsed, &mut done, &mut current, sample.name).map_err(err)?;
        }
        if let Some(family) = current.as_mut() {
            family.has_samples = true;
        }
        sample.labels.sort_unstable();
        let mut id = sample.name.to_owned();
        for (label, value) in &sample.labels {
            let _ = write!(id, "\u{0}{label}\u{0}{value}");
        }
        if !series.insert(id) {
            return Err(err(format!(
                "the series {} appears twice: each series may be pushed once per request",
                line.split_ascii_whitespace().next().unwrap_or(sample.name)
            )));
        }
        parsed
            .label_names
            .extend(sample.labels.into_iter().map(|(label, _)| label));
    }
    Ok(parsed)
}

/// A sample read back: name, label pairs (values unescaped), value.
#[cfg(feature = "remote-write")]
pub(crate) type Sampled = (String, Vec<(String, String)>, f64);

/// The samples of text that [`parse`] accepted: name, label pairs (values
/// unescaped) and value, in order. Lines that do not parse are skipped; the
/// text was checked when it was added.
#[cfg(feature = "remote-write")]
pub(super) fn samples(input: &str) -> Vec<Sampled> {
    let mut out = Vec::new();
    for raw in input.lines() {
        let line = raw.trim_start();
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Ok(sample) = parse_sample(line) else {
            continue;
        };
        let Some(value) = line_value(line) else {
            continue;
        };
        let labels = sample
            .labels
            .into_iter()
            .map(|(name, value)| (name, unescape(&value)))
            .collect();
        out.push((sample.name.to_owned(), labels, value));
    }
    out
}

/// The value of a checked sample line: the first field after the name and
/// the label set.
#[cfg(feature = "remote-write")]
fn line_value(line: &str) -> Option<f64> {
    let name_end = line.find(|c: char| c == '{' || c.is_ascii_whitespace())?;
    let after = if line[name_end..].starts_with('{') {
        &line[closing_brace(line)? + 1..]
    } else {
        &line[name_end..]
    };
    parse_value(after.split_ascii_whitespace().next()?)
}

/// The index of the `}` that closes a sample's label set, skipping quoted values.
#[cfg(feature = "remote-write")]
fn closing_brace(line: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (at, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(at),
            _ => {}
        }
    }
    None
}

/// A label value as written in the text format, unescaped.
#[cfg(feature = "remote-write")]
fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

fn start_family(
    parsed: &mut Parsed,
    done: &mut HashSet<String>,
    current: &mut Option<Current>,
    name: &str,
) -> Result<(), String> {
    if let Some(previous) = current.take() {
        done.insert(previous.name);
    }
    if done.contains(name) {
        return Err(format!(
            "family {name:?} appears again after other families: each family must be one block"
        ));
    }
    parsed.families.push(name.to_owned());
    *current = Some(Current {
        name: name.to_owned(),
        kind: None,
        has_help: false,
        has_samples: false,
    });
    Ok(())
}

struct Sample<'a> {
    name: &'a str,
    /// Label names with their values as written (escaped).
    labels: Vec<(String, String)>,
}

fn parse_sample(line: &str) -> Result<Sample<'_>, String> {
    let end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .unwrap_or(line.len());
    let name = &line[..end];
    validate_metric_name(name).map_err(|e| e.to_string())?;
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, name, &mut labels)?;
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = fields
        .next()
        .ok_or_else(|| format!("sample {name:?} has no value"))?;
    parse_value(value).ok_or_else(|| format!("sample {name:?} has an invalid value {value:?}"))?;
    if let Some(timestamp) = fields.next() {
        return Err(format!(
            "sample {name:?} carries the timestamp {timestamp:?}: the pushgateway refuses timestamps"
        ));
    }
    Ok(Sample { name, labels })
}

/// Parses `name="value", ...}` and returns what follows the closing brace.
fn parse_labels<'a>(
    mut rest: &'a str,
    metric: &str,
    labels: &mut Vec<(String, String)>,
) -> Result<&'a str, String> {
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("sample {metric:?} has an unterminated label set"))?;
        let label = rest[..eq].trim();
        validate_label_name(label).map_err(|e| e.to_string())?;
        if labels.iter().any(|(l, _)| l == label) {
            return Err(format!("sample {metric:?} has label {label:?} twice"));
        }
        rest = rest[eq + 1..].trim_start();
        rest = rest
            .strip_prefix('"')
            .ok_or_else(|| format!("label {label:?} of {metric:?} needs a quoted value"))?;
        let mut chars = rest.char_indices();
        let close = loop {
            match chars.next() {
                None => {
                    return Err(format!(
                        "label {label:?} of {metric:?} has an unterminated value"
                    ));
                }
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\' | '"' | 'n')) => {}
                    _ => {
                        return Err(format!(
                            "label {label:?} of {metric:?} has an invalid escape"
                        ));
                    }
                },
                Some((i, '"')) => break i,
                Some(_) => {}
            }
        };
        labels.push((label.to_owned(), rest[..close].to_owned()));
        rest = rest[close + 1..].trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err(format!(
                "sample {metric:?}: expected ',' or '}}' after label {label:?}"
            ));
        }
    }
}

fn parse_value(value: &str) -> Option<f64> {
    match value {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        other
            if other
                .bytes()
                .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
        {
            // A finite literal too large for f64 (`1e309`) is refused, not
            // sent as +Inf: Go's parser, and so the gateway, refuses it too.
            other.parse().ok().filter(|v: &f64| v.is_finite())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_usual_shapes() {
        let parsed = parse(
            "# HELP a_seconds Latency.\n# TYPE a_seconds histogram\n\
             a_seconds_bucket{le=\"0.5\"} 1\na_seconds_bucket{le=\"+Inf\"} 2\n\
             a_seconds_sum 0.7\na_seconds_count 2\n\n# a comment\n\
             b{x=\"q\\\"uote\\\\\",y=\"\\n\",} -Inf\nc 1e3\n# TYPE d summary\nd{quantile=\"0.5\"} 1\nd_sum 1\nd_count 1\n",
        )
        .unwrap();
        assert_eq!(parsed.families, ["a_seconds", "b", "c", "d"]);
        assert!(parsed.label_names.contains("x") && parsed.label_names.contains("le"));
    }

    #[test]
    fn refuses_a_series_twice_and_out_of_range_values() {
        let twice = "# TYPE a gauge\na{x=\"1\",y=\"2\"} 1\na{y=\"2\", x=\"1\"} 2\n";
        let error = parse(twice).unwrap_err().to_string();
        assert!(
            error.contains("line 3") && error.contains("twice"),
            "{error}"
        );
        parse("# TYPE a gauge\na{x=\"1\"} 1\na{x=\"2\"} 2\n").unwrap();
        let error = parse("a 1e309\n").unwrap_err().to_string();
        assert!(error.contains("1e309"), "{error}");
        parse("a 1e308\nb +Inf\n").unwrap();
    }

    #[test]
    fn refuses_with_line_numbers() {
        let cases = [
            ("a 1 1700000000\n", "line 1", "timestamp"),
            ("a 1\nb 1\na 2\n", "line 3", "appears again"),
            ("a 1\n# TYPE a gauge\n", "line 2", "TYPE"),
            ("# TYPE a gauge\n# TYPE a gauge\n", "line 2", "twice"),
            ("2a 1\n", "line 1", "\"2a\""),
            ("a{2x=\"1\"} 1\n", "line 1", "\"2x\""),
            ("a{x=\"1\",x=\"2\"} 1\n", "line 1", "twice"),
            ("a{x=1} 1\n", "line 1", "quoted"),
            ("a{x=\"1} 1\n", "line 1", "unterminated"),
            ("a one\n", "line 1", "\"one\""),
            ("a\n", "line 1", "no value"),
            ("# TYPE a gage\n", "line 1", "\"gage\""),
        ];
        for (input, line, what) in cases {
            let msg = parse(input).unwrap_err().to_string();
            assert!(msg.contains(line) && msg.contains(what), "{input:?}: {msg}");
        }
    }

    proptest! {
        #[test]
        fn any_escaped_label_value_is_accepted(value in any::<String>(), number in any::<f64>()) {
            let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            let mut text = String::new();
            text.push_str("m{l=\"");
            text.push_str(&escaped);
            text.push_str("\"} ");
            let mut v = String::new();
            super::super::push_value(&mut v, number);
            text.push_str(&v);
            text.push('\n');
            let parsed = parse(&text).unwrap();
            prop_assert_eq!(parsed.families, vec!["m".to_owned()]);
            // What remote write sends: the value as it was, the number too.
            #[cfg(feature = "remote-write")]
            {
                let read = samples(&text);
                prop_assert_eq!(read.len(), 1);
                prop_assert_eq!(&read[0].1, &vec![("l".to_owned(), value.clone())]);
                let back = read[0].2;
                prop_assert!(back == number || (back.is_nan() && number.is_nan()));
            }
        }

        #[test]
        fn never_panics(input in ".{0,200}") {
            let _ = parse(&input);
        }
    }
}
