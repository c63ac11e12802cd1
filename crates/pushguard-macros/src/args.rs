//! The arguments of `#[pushguard::job(…)]`, checked while compiling: a
//! mistake here is a compile error on the offending token that says what to
//! write instead, not a failed push at 3 a.m.

use std::time::Duration;

use proc_macro2::TokenTree;
use syn::ext::IdentExt as _;
use syn::parse::{Parse, ParseStream};
use syn::{Error, Ident, LitStr, Result, Token};

/// Every argument, as the error for an unknown one lists them.
const ARGUMENTS: &str = "name = \"…\", labels(key = \"value\", …), method = \"post\" | \"put\", \
                         gateway = \"http://…\", expected_interval = \"1h\"";

/// The parsed arguments; `None` keeps the builder's default.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) name: Option<LitStr>,
    pub(crate) labels: Vec<(String, LitStr)>,
    pub(crate) put: Option<bool>,
    pub(crate) gateway: Option<LitStr>,
    pub(crate) expected_interval: Option<Duration>,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> Result<Self> {
        let mut args = Args::default();
        let mut seen: Vec<String> = Vec::new();
        while !input.is_empty() {
            if input.peek(LitStr) {
                let lit: LitStr = input.parse()?;
                return Err(Error::new(
                    lit.span(),
                    format!(
                        "name the argument: #[pushguard::job(name = {:?})]",
                        lit.value()
                    ),
                ));
            }
            let key = input.call(Ident::parse_any)?;
            let text = key.unraw().to_string();
            if seen.contains(&text) {
                return Err(Error::new(
                    key.span(),
                    format!("`{text}` is given twice; keep one"),
                ));
            }
            match text.as_str() {
                "name" => {
                    let name = string(input, &key, "name = \"nightly_etl\"")?;
                    if name.value().is_empty() {
                        return Err(Error::new(
                            name.span(),
                            "the job name must not be empty: name = \"nightly_etl\"",
                        ));
                    }
                    args.name = Some(name);
                }
                "labels" => args.labels = labels(input, &key)?,
                "method" => {
                    let method = string(input, &key, "method = \"put\"")?;
                    args.put = Some(match method.value().to_ascii_lowercase().as_str() {
                        "post" => false,
                        "put" => true,
                        other => {
                            return Err(Error::new(
                                method.span(),
                                format!(
                                    "unknown method {other:?}: write method = \"post\" (push-add, \
                                     the default: keeps the families this push does not carry) \
                                     or method = \"put\" (replaces the whole group)"
                                ),
                            ));
                        }
                    });
                }
                "gateway" => {
                    let url = string(input, &key, "gateway = \"http://127.0.0.1:9091\"")?;
                    let lower = url.value().to_ascii_lowercase();
                    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                        return Err(Error::new(
                            url.span(),
                            format!(
                                "gateway URL {:?} must start with http:// or https://, like \
                                 gateway = \"http://127.0.0.1:9091\"",
                                url.value()
                            ),
                        ));
                    }
                    args.gateway = Some(url);
                }
                "expected_interval" => {
                    let text = string(input, &key, "expected_interval = \"1h\"")?;
                    args.expected_interval = Some(interval(&text)?);
                }
                other => return Err(Error::new(key.span(), unknown(other))),
            }
            seen.push(text);
            if input.is_empty() {
                break;
            }
            if !input.peek(Token![,]) {
                let next: TokenTree = input.parse()?;
                return Err(Error::new(
                    next.span(),
                    "expected `,` between two arguments",
                ));
            }
            input.parse::<Token![,]>()?;
        }
        Ok(args)
    }
}

/// `= "…"` after `key`, or an error that shows `example`.
fn string(input: ParseStream<'_>, key: &Ident, example: &str) -> Result<LitStr> {
    if !input.peek(Token![=]) {
        return Err(Error::new(
            key.span(),
            format!("`{key}` takes a string: {example}"),
        ));
    }
    input.parse::<Token![=]>()?;
    if input.peek(LitStr) {
        return input.parse();
    }
    let span = match input.parse::<TokenTree>() {
        Ok(token) => token.span(),
        Err(_) => key.span(),
    };
    Err(Error::new(
        span,
        format!("`{key}` takes a string literal: {example}"),
    ))
}

/// `(team = "media", env = "prod")` after `labels`.
fn labels(input: ParseStream<'_>, key: &Ident) -> Result<Vec<(String, LitStr)>> {
    const EXAMPLE: &str = "labels(team = \"media\", env = \"prod\")";
    if !input.peek(syn::token::Paren) {
        return Err(Error::new(
            key.span(),
            format!("write the grouping labels in parentheses: {EXAMPLE}"),
        ));
    }
    let content;
    syn::parenthesized!(content in input);
    let mut labels: Vec<(String, LitStr)> = Vec::new();
    while !content.is_empty() {
        if content.peek(LitStr) {
            let lit: LitStr = content.parse()?;
            return Err(Error::new(
                lit.span(),
                format!("write the label name bare, not quoted: {EXAMPLE}"),
            ));
        }
        let name = content.call(Ident::parse_any)?;
        let text = name.unraw().to_string();
        if let Err(problem) = check_label_name(&text) {
            return Err(Error::new(name.span(), problem));
        }
        if labels.iter().any(|(seen, _)| *seen == text) {
            return Err(Error::new(
                name.span(),
                format!("label `{text}` is given twice; keep one"),
            ));
        }
        let value = string(&content, &name, &format!("{text} = \"value\""))?;
        labels.push((text, value));
        if content.is_empty() {
            break;
        }
        content.parse::<Token![,]>()?;
    }
    if labels.is_empty() {
        return Err(Error::new(
            key.span(),
            format!("`labels()` is empty: give at least one, {EXAMPLE}, or leave it out"),
        ));
    }
    Ok(labels)
}

/// The Prometheus rule for label names, as `pushguard::validate_label_name`
/// checks it at run time, plus `job`, which the job name already is.
pub(crate) fn check_label_name(name: &str) -> std::result::Result<(), String> {
    if name == "job" {
        return Err(
            "`job` cannot be a grouping label: it is the job name; set that with name = \"…\""
                .to_owned(),
        );
    }
    let mut bytes = name.bytes();
    let valid = match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {
            bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        }
        _ => false,
    };
    if !valid {
        return Err(format!(
            "invalid label name `{name}`: a label name must match [a-zA-Z_][a-zA-Z0-9_]*; \
             use ASCII letters, digits and `_` only"
        ));
    }
    if name.starts_with("__") {
        let plain = name.trim_matches('_');
        let plain = if plain.is_empty() { "name" } else { plain };
        return Err(format!(
            "invalid label name `{name}`: names starting with `__` are reserved by Prometheus; \
             rename it, say `{plain}`"
        ));
    }
    Ok(())
}

/// A humantime duration, as `pushguard exec --expected-interval` reads it.
fn interval(text: &LitStr) -> Result<Duration> {
    match humantime::parse_duration(text.value().trim()) {
        Ok(interval) if interval.is_zero() => Err(Error::new(
            text.span(),
            "expected_interval must be longer than zero, like expected_interval = \"1h\"",
        )),
        Ok(interval) => Ok(interval),
        Err(problem) => Err(Error::new(
            text.span(),
            format!(
                "invalid expected_interval {:?}: {problem}; write it like \"30m\", \"1h\" or \
                 \"1day 12h\"",
                text.value()
            ),
        )),
    }
}

/// The error for an unknown argument: the closest one, then all of them.
fn unknown(given: &str) -> String {
    const KNOWN: [&str; 5] = ["name", "labels", "method", "gateway", "expected_interval"];
    let alias = match given {
        "job" | "job_name" => Some("name"),
        "url" | "gateway_url" | "pushgateway" => Some("gateway"),
        "interval" | "every" | "schedule" => Some("expected_interval"),
        "replace" | "put" | "post" => Some("method"),
        _ => None,
    };
    let closest = alias.or_else(|| {
        KNOWN
            .iter()
            .map(|known| (distance(given, known), *known))
            .filter(|(d, _)| *d <= 2)
            .min()
            .map(|(_, known)| known)
    });
    let hint = closest
        .map(|known| format!("did you mean `{known}`? "))
        .unwrap_or_default();
    format!("unknown argument `{given}` of #[pushguard::job]: {hint}The arguments are {ARGUMENTS}")
}

/// Levenshtein distance, for the suggestion above.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(current + 1);
            previous = current;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(tokens: &str) -> Result<Args> {
        syn::parse_str(tokens)
    }

    #[test]
    fn every_argument_is_read() {
        let args = parse(
            r#"name = "etl", labels(team = "media", r#type = "batch"), method = "PUT",
               gateway = "https://gw:9091", expected_interval = "1h 30m""#,
        )
        .unwrap();
        assert_eq!(args.name.unwrap().value(), "etl");
        let labels: Vec<_> = args
            .labels
            .iter()
            .map(|(n, v)| (n.as_str(), v.value()))
            .collect();
        assert_eq!(
            labels,
            [("team", "media".to_owned()), ("type", "batch".to_owned())]
        );
        assert_eq!(args.put, Some(true));
        assert_eq!(args.gateway.unwrap().value(), "https://gw:9091");
        assert_eq!(args.expected_interval, Some(Duration::from_secs(5400)));
        assert!(parse("").unwrap().name.is_none());
    }

    #[test]
    fn label_names_follow_the_library_rule() {
        // The same cases as pushguard's own `validate_label_name` tests.
        for ok in ["team", "_x1", "env"] {
            check_label_name(ok).unwrap();
        }
        for bad in ["2xx", "a-b", "", "café", "__name__", "job"] {
            assert!(check_label_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mistakes_say_what_to_write() {
        let cases = [
            ("nme = \"x\"", "did you mean `name`?"),
            ("job = \"x\"", "did you mean `name`?"),
            (
                "name = etl",
                "`name` takes a string literal: name = \"nightly_etl\"",
            ),
            ("name = \"\"", "must not be empty"),
            ("method = \"patch\"", "write method = \"post\""),
            (
                "gateway = \"gw:9091\"",
                "must start with http:// or https://",
            ),
            ("expected_interval = \"soon\"", "write it like \"30m\""),
            ("expected_interval = \"0s\"", "longer than zero"),
            (
                "labels(__name__ = \"x\")",
                "reserved by Prometheus; rename it, say `name`",
            ),
            (
                "labels(team = \"a\", team = \"b\")",
                "label `team` is given twice",
            ),
            ("labels = \"x\"", "in parentheses"),
            ("name = \"a\", name = \"b\"", "`name` is given twice"),
            ("name = \"a\" method = \"put\"", "expected `,`"),
            (
                "\"etl\"",
                "name the argument: #[pushguard::job(name = \"etl\")]",
            ),
        ];
        for (tokens, wanted) in cases {
            let error = parse(tokens)
                .err()
                .unwrap_or_else(|| panic!("{tokens} parsed"))
                .to_string();
            assert!(error.contains(wanted), "{tokens}: {error}");
        }
    }
}
