//! What the built-ins share: reading `[settings]` tables with errors that
//! name the key, and error messages that carry their causes.

use super::error::BuiltinError;

/// A settings error at `key`.
pub(super) fn invalid(key: &str, reason: impl Into<String>) -> BuiltinError {
    BuiltinError::Settings {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// Deserializes `table` (found at `at`, `""` for `[settings]` itself), with
/// an error naming the offending key.
pub(super) fn deserialize<T: serde::de::DeserializeOwned>(
    table: &toml::Table,
    at: &str,
) -> Result<T, BuiltinError> {
    toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e: toml::de::Error| {
            let message = e.message();
            // `unknown field `x`…` and `missing field `x`` name the key in the
            // message; a bad value names it in the error's key path.
            let named = ["unknown field `", "missing field `"]
                .iter()
                .find_map(|prefix| message.strip_prefix(prefix))
                .and_then(|rest| rest.split('`').next())
                .map(str::to_owned);
            let path = named.or_else(|| {
                e.to_string().lines().find_map(|line| {
                    line.strip_prefix("in `")
                        .and_then(|l| l.strip_suffix('`'))
                        .map(str::to_owned)
                })
            });
            let key = match (at, path) {
                ("", Some(path)) => path,
                (at, Some(path)) => format!("{at}.{path}"),
                ("", None) => "settings".to_owned(),
                (at, None) => at.to_owned(),
            };
            let reason = message
                .replace("unknown field", "unknown key")
                .replace("missing field", "missing key");
            invalid(&key, reason)
        })
}

/// An error with its causes, `a: b: c`.
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    push_causes(&mut text, e);
    text
}

/// Appends `: cause` for each cause of `e` that `text` does not already say.
pub(super) fn push_causes(text: &mut String, e: &dyn std::error::Error) {
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
}

/// What went wrong with an HTTP request, in a few words.
pub(super) fn failure_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    }
}
