//! `Body::add_text`: never panics; accepted text is accepted again as the
//! body holds it; every refusal names a line of the input.

use proptest::prelude::*;
use pushguard::Body;

use crate::{config, mutate, mutation};

/// A sample value as an exporter writes it.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f64>().prop_map(|v| {
            if v.is_nan() {
                "NaN".to_owned()
            } else if v == f64::INFINITY {
                "+Inf".to_owned()
            } else if v == f64::NEG_INFINITY {
                "-Inf".to_owned()
            } else {
                format!("{v}")
            }
        }),
        any::<f64>().prop_map(|v| format!("{v:e}")),
        any::<i64>().prop_map(|v| v.to_string()),
        Just("1e308".to_owned()),
        Just("-Inf".to_owned()),
        Just("Inf".to_owned()),
        Just(".5".to_owned()),
        Just("5.".to_owned()),
        Just("+3".to_owned()),
    ]
}

fn metric_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}"
}

fn label_name() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z0-9_]{0,8}"
}

/// A label value, escaped as the format wants it.
fn label_value() -> impl Strategy<Value = String> {
    any::<String>().prop_map(|v| {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    })
}

#[derive(Debug, Clone, Copy)]
enum Type {
    Counter,
    Gauge,
    Untyped,
    Summary,
    Histogram,
    None,
}

fn family_type() -> impl Strategy<Value = Type> {
    prop_oneof![
        Just(Type::Counter),
        Just(Type::Gauge),
        Just(Type::Untyped),
        Just(Type::Summary),
        Just(Type::Histogram),
        Just(Type::None),
    ]
}

/// One family as tokens, valid on its own.
#[derive(Debug, Clone)]
struct Family {
    name: String,
    kind: Type,
    help: Option<String>,
    /// Per sample: extra labels and the value.
    samples: Vec<(Vec<(String, String)>, String)>,
}

fn family() -> impl Strategy<Value = Family> {
    (
        metric_name(),
        family_type(),
        proptest::option::of("[^\n\r]{0,20}"),
        prop::collection::vec(
            (
                prop::collection::vec((label_name(), label_value()), 0..3),
                value(),
            ),
            1..4,
        ),
    )
        .prop_map(|(name, kind, help, samples)| Family {
            name,
            kind,
            help,
            samples,
        })
}

fn labels_tokens(tokens: &mut Vec<String>, labels: &[(String, String)]) {
    if labels.is_empty() {
        return;
    }
    tokens.push("{".into());
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            tokens.push(",".into());
        }
        tokens.push(name.clone());
        tokens.push("=".into());
        tokens.push(format!("\"{value}\""));
    }
    tokens.push("}".into());
}

fn sample_tokens(tokens: &mut Vec<String>, name: &str, labels: &[(String, String)], value: &str) {
    tokens.push(name.to_owned());
    labels_tokens(tokens, labels);
    tokens.push(" ".into());
    tokens.push(value.to_owned());
    tokens.push("\n".into());
}

/// Valid exposition text, as tokens: family names are made unique, every
/// sample gets a distinct `i` label so no series repeats.
fn valid_tokens(families: &[Family], line_end: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    for (f, family) in families.iter().enumerate() {
        let name = format!("{}_f{f}", family.name);
        if let Some(help) = &family.help {
            tokens.extend(["# HELP".into(), " ".into(), name.clone(), " ".into()]);
            tokens.push(help.trim().to_owned());
            tokens.push(line_end.into());
        }
        let kind = match family.kind {
            Type::Counter => Some("counter"),
            Type::Gauge => Some("gauge"),
            Type::Untyped => Some("untyped"),
            Type::Summary => Some("summary"),
            Type::Histogram => Some("histogram"),
            Type::None => None,
        };
        if let Some(kind) = kind {
            tokens.extend(["# TYPE".into(), " ".into(), name.clone(), " ".into()]);
            tokens.push(kind.into());
            tokens.push(line_end.into());
        }
        for (s, (extra, value)) in family.samples.iter().enumerate() {
            let mut labels: Vec<(String, String)> = vec![("i".into(), s.to_string())];
            for (label, v) in extra {
                if !labels.iter().any(|(l, _)| l == label) && label != "le" && label != "quantile" {
                    labels.push((label.clone(), v.clone()));
                }
            }
            match family.kind {
                Type::Histogram => {
                    let mut bucket = labels.clone();
                    bucket.push(("le".into(), "+Inf".into()));
                    sample_tokens(&mut tokens, &format!("{name}_bucket"), &bucket, value);
                    sample_tokens(&mut tokens, &format!("{name}_sum"), &labels, value);
                    sample_tokens(&mut tokens, &format!("{name}_count"), &labels, "1");
                }
                Type::Summary => {
                    let mut quantile = labels.clone();
                    quantile.push(("quantile".into(), "0.5".into()));
                    sample_tokens(&mut tokens, &name, &quantile, value);
                    sample_tokens(&mut tokens, &format!("{name}_count"), &labels, "1");
                }
                _ => sample_tokens(&mut tokens, &name, &labels, value),
            }
        }
        if line_end != "\n" {
            for token in &mut tokens {
                if token == "\n" {
                    *token = line_end.to_owned();
                }
            }
        }
    }
    tokens
}

fn line_end() -> impl Strategy<Value = &'static str> {
    prop_oneof![4 => Just("\n"), 1 => Just("\r\n")]
}

/// The number of lines the checker sees in `input`.
fn line_count(input: &str) -> usize {
    input.split('\n').count()
}

/// Checks the three properties on one input.
fn check(input: &str) -> Result<(), TestCaseError> {
    let mut body = Body::new();
    match body.add_text(input) {
        Ok(()) => {
            let mut again = Body::new();
            prop_assert!(
                again.add_text(body.as_str()).is_ok(),
                "accepted {input:?} but refused the body {:?}",
                body.as_str()
            );
            prop_assert_eq!(again.as_str(), body.as_str());
        }
        Err(error) => {
            let message = error.to_string();
            let line = message
                .split("line ")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse::<usize>().ok());
            prop_assert!(
                line.is_some_and(|n| n >= 1 && n <= line_count(input)),
                "the refusal of {input:?} names no line of it: {message}"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn generated_text_is_accepted(
        families in prop::collection::vec(family(), 0..5),
        end in line_end(),
    ) {
        let text: String = valid_tokens(&families, end).concat();
        let mut body = Body::new();
        if let Err(error) = body.add_text(&text) {
            return Err(TestCaseError::fail(format!("refused valid {text:?}: {error}")));
        }
        check(&text)?;
    }

    #[test]
    fn mutated_text_never_panics_and_names_the_line(
        families in prop::collection::vec(family(), 0..4),
        end in line_end(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let mut tokens = valid_tokens(&families, end);
        mutate(&mut tokens, &mutations);
        check(&tokens.concat())?;
    }

    #[test]
    fn arbitrary_text_never_panics(input in any::<String>()) {
        check(&input)?;
    }

    #[test]
    fn arbitrary_lines_never_panic(
        lines in prop::collection::vec("[ -~\t\u{0}\r\u{a0}é😀]{0,40}", 0..8),
    ) {
        check(&lines.join("\n"))?;
    }
}

/// Refusals the fuzzer found, kept as plain cases.
#[test]
fn regressions() {
    for input in ["a 1\rb 2\n", "a 1\n\r", "a 1\nb 2\rc 3\n"] {
        check(input).unwrap();
    }
    let error = Body::new().add_text("a 1\r\nb 2\rc 3\n").unwrap_err();
    assert!(
        error.to_string().contains("line 2: a carriage return"),
        "{error}"
    );
}
