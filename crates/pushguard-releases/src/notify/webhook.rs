//! Slack and Discord incoming webhooks: their payload shapes and one POST
//! with the rate-limit handling both services document.
//!
//! Slack answers 429 with a `Retry-After` header (seconds); Discord with a
//! `Retry-After` header and a JSON body whose `retry_after` is in (fractional)
//! seconds from API v8 on, in milliseconds before (and on the unversioned
//! default, v6, which the URLs Discord hands out reach). Discord webhooks
//! are therefore sent to a pinned version ([`discord_url`]). Either wait is
//! honoured once, when it fits the timeout. Discord also says when its
//! bucket is empty (`X-RateLimit-Remaining: 0`); the next post then waits
//! `X-RateLimit-Reset-After`.

use std::time::Duration;

use chrono::SecondsFormat;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Client, StatusCode, Url};
use serde_json::{Value, json};

use super::message::{Text, truncate};
use crate::store::{Release, WorkKind};

/// Discord's limit on a message's `content`.
const DISCORD_CONTENT_MAX: usize = 2000;
/// Discord's limit on an embed's title.
const DISCORD_TITLE_MAX: usize = 256;
/// Discord's limit on an embed's description.
const DISCORD_DESCRIPTION_MAX: usize = 4096;
/// Slack's limit on a section block's text.
const SLACK_SECTION_MAX: usize = 3000;
/// Slack's recommended limit on a message's top-level `text`.
const SLACK_TEXT_MAX: usize = 4000;

/// Slack's `mrkdwn` escape of one character: the three it reserves become
/// entities; in a link's label `|` (which would end it) becomes `¦`.
fn slack_char(c: char, label: bool) -> Option<&'static str> {
    match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        '|' if label => Some("¦"),
        _ => None,
    }
}

/// Escapes the three characters Slack's `mrkdwn` reserves.
fn slack_escape(text: &str) -> String {
    fit(text, usize::MAX, |c, _, _| slack_char(c, false))
}

/// The longest start of `raw` whose escaped form (with `…` when cut) has
/// at most `max` characters, escaped by `escape` (given each character,
/// whether it starts a line and the character after it): the raw text is cut, then escaped, so an
/// escape is never split.
fn fit(
    raw: &str,
    max: usize,
    escape: impl Fn(char, bool, Option<char>) -> Option<&'static str>,
) -> String {
    let escaped = |text: &str| -> (String, usize) {
        let mut out = String::with_capacity(text.len());
        let mut count = 0;
        let mut line_start = true;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match escape(c, line_start, chars.peek().copied()) {
                Some(e) => {
                    out.push_str(e);
                    count += e.chars().count();
                }
                None => {
                    out.push(c);
                    count += 1;
                }
            }
            line_start = c == '\n';
        }
        (out, count)
    };
    let (whole, count) = escaped(raw);
    if count <= max {
        return whole;
    }
    // Cut: the longest prefix whose escape leaves room for the `…`.
    let room = max.saturating_sub(1);
    let mut used = 0;
    let mut end = 0;
    let mut line_start = true;
    let mut chars = raw.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|(_, n)| *n);
        let width = escape(c, line_start, next).map_or(1, |e| e.chars().count());
        if used + width > room {
            break;
        }
        used += width;
        end = i + c.len_utf8();
        line_start = c == '\n';
    }
    let mut out = escaped(&raw[..end]).0;
    out.push('…');
    out
}

/// The most a webhook URL may take of a Slack section; a longer one is
/// left out (the title is shown without its link).
const SLACK_URL_MAX: usize = 1000;
/// The most the detail line may take of a Slack section.
const SLACK_DETAIL_MAX: usize = 500;

/// A Slack incoming-webhook payload: `text` (the notification and fallback
/// line) and one `section` block in `mrkdwn` with a linked title.
///
/// Every piece is cut before it is escaped, and only the title and the
/// detail are ever cut: the link's `<…|…>`, the kind and the time stay
/// whole within the section's 3000 characters.
pub(super) fn slack_payload(text: &Text) -> Value {
    let kind = fit(&text.kind, 100, |c, _, _| slack_char(c, false));
    let when = fit(&text.when, 100, |c, _, _| slack_char(c, false));
    let detail = fit(&text.detail, SLACK_DETAIL_MAX, |c, _, _| {
        slack_char(c, false)
    });
    // In a link only `|` and `>` end the URL or label; escape them.
    let url = text
        .url
        .as_deref()
        .map(|url| slack_escape(url).replace('|', "%7C"))
        .filter(|url| url.chars().count() <= SLACK_URL_MAX);
    // Everything but the title: `{kind}: *<{url}|` `>*` `\n{detail}` `\n{when}`.
    let mut fixed = kind.chars().count() + 2 + 2 + 1 + when.chars().count();
    if !detail.is_empty() {
        fixed += 1 + detail.chars().count();
    }
    if let Some(url) = &url {
        fixed += url.chars().count() + 3;
    }
    let room = SLACK_SECTION_MAX.saturating_sub(fixed);
    let title = match &url {
        Some(url) => format!(
            "*<{url}|{}>*",
            fit(&text.title, room, |c, _, _| slack_char(c, true))
        ),
        None => format!(
            "*{}*",
            fit(&text.title, room, |c, _, _| slack_char(c, false))
        ),
    };
    let mut lines = vec![format!("{kind}: {title}")];
    if !detail.is_empty() {
        lines.push(detail);
    }
    lines.push(when);
    json!({
        "text": fit(&text.headline, SLACK_TEXT_MAX, |c, _, _| slack_char(c, false)),
        "blocks": [{
            "type": "section",
            "text": {"type": "mrkdwn", "text": lines.join("\n")},
        }],
    })
}

/// Discord's markdown escape of one character (given whether it starts a
/// line): emphasis, code, spoilers, quotes, headings, masked links
/// (`[label](url)`), `<…>` mentions and timestamps, `-` lists and `-#`
/// subtext at a line's start, and the `:` of `https://` (no bare link).
fn discord_char(c: char, line_start: bool, next: Option<char>) -> Option<&'static str> {
    Some(match c {
        '\\' => "\\\\",
        '*' => "\\*",
        '_' => "\\_",
        '~' => "\\~",
        '`' => "\\`",
        '|' => "\\|",
        '>' => "\\>",
        '<' => "\\<",
        '#' => "\\#",
        '[' => "\\[",
        ']' => "\\]",
        ':' if next == Some('/') => "\\:",
        '-' if line_start => "\\-",
        _ => return None,
    })
}

/// `text` with Discord markdown escaped, cut (before escaping) to `max`
/// characters once escaped.
fn discord_fit(text: &str, max: usize) -> String {
    fit(text, max, discord_char)
}

/// A Discord webhook payload: `content` (≤ 2000 characters), one embed
/// with the title, link, details and the release time as its timestamp,
/// and no mentions (a title saying `@everyone` pings nobody). Titles and
/// details are escaped, so they show as written: no masked link, no
/// emphasis, no heading.
pub(super) fn discord_payload(release: &Release, text: &Text) -> Value {
    let color = match release.kind {
        WorkKind::Anime => 0x3498db,
        WorkKind::Manga => 0xe67e22,
    };
    let when = discord_fit(&text.when, 100);
    let mut description = String::new();
    if !text.detail.is_empty() {
        let room = DISCORD_DESCRIPTION_MAX - 1 - when.chars().count();
        description.push_str(&discord_fit(&text.detail, room));
        description.push('\n');
    }
    description.push_str(&when);
    let mut embed = json!({
        "title": discord_fit(&text.title, DISCORD_TITLE_MAX),
        "description": description,
        "timestamp": release.release_time.to_rfc3339_opts(SecondsFormat::Secs, true),
        "color": color,
    });
    if let Some(url) = &text.url {
        embed["url"] = Value::String(url.clone());
    }
    json!({
        "content": discord_fit(&text.headline, DISCORD_CONTENT_MAX),
        "embeds": [embed],
        "allowed_mentions": {"parse": []},
    })
}

/// The Discord API version webhooks are sent to. Its 429 bodies give
/// `retry_after` in (fractional) seconds; the unversioned default (v6)
/// gives milliseconds.
const DISCORD_API: &str = "v10";

/// `url` pinned to [`DISCORD_API`] when it is an unversioned Discord
/// webhook URL (`/api/webhooks/ID/TOKEN`, as Discord hands them out); its
/// query (`?wait=`, `thread_id=`) is kept. Other URLs are returned as they are.
pub(super) fn discord_url(url: &Url) -> Url {
    let mut pinned = url.clone();
    if let Some(rest) = url.path().strip_prefix("/api/webhooks/") {
        pinned.set_path(&format!("/api/{DISCORD_API}/webhooks/{rest}"));
    }
    pinned
}

/// Whether a 429 body from `url` gives `retry_after` in milliseconds: the
/// Discord API before v8 (and unversioned, which is v6) did.
fn retry_after_in_millis(url: &Url) -> bool {
    let Some(rest) = url.path().strip_prefix("/api/") else {
        return false;
    };
    if rest.starts_with("webhooks/") {
        return true;
    }
    rest.strip_prefix('v')
        .and_then(|r| r.split('/').next())
        .and_then(|v| v.parse::<u32>().ok())
        .is_some_and(|v| v < 8)
}

/// Where a webhook URL points, for messages: scheme, host and port only
/// (the path of a webhook URL is its secret).
pub(super) fn redacted(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}", url.scheme()),
        (Some(host), None) => format!("{}://{host}", url.scheme()),
        _ => url.scheme().to_owned(),
    }
}

/// POSTs `payload` to `url`; a 429 is retried once after the wait the
/// service asks for when that fits `timeout`. Errors are one line that
/// never shows the URL's secret path.
///
/// On success, the wait the service asks for before the next request to
/// it, when it says the bucket is empty (`X-RateLimit-Remaining: 0` with
/// `X-RateLimit-Reset-After: <seconds>`, Discord's headers).
pub(super) async fn post(
    client: &Client,
    url: &Url,
    payload: &Value,
    timeout: Duration,
) -> Result<Option<Duration>, String> {
    let mut retried = false;
    loop {
        let response = client
            .post(url.clone())
            .timeout(timeout)
            .json(payload)
            .send()
            .await
            .map_err(|e| describe(e, url))?;
        let status = response.status();
        if status.is_success() {
            return Ok(bucket_empty(response.headers()));
        }
        let header_wait = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok());
        let body = response.bytes().await.unwrap_or_default();
        let what = format!("HTTP {status} from {}{}", redacted(url), excerpt(&body));
        if status != StatusCode::TOO_MANY_REQUESTS {
            return Err(what);
        }
        // Discord's body says `retry_after` in (fractional) seconds, or
        // in milliseconds before API v8.
        let scale = if retry_after_in_millis(url) {
            1e-3
        } else {
            1.0
        };
        let body_wait = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("retry_after").and_then(Value::as_f64))
            .map(|v| v * scale);
        let wait = body_wait
            .or(header_wait)
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        match wait {
            Some(wait) if !retried && wait <= timeout => {
                retried = true;
                tokio::time::sleep(wait).await;
            }
            Some(wait) if !retried => {
                return Err(format!(
                    "{what}; retry after {:.1}s exceeds the {} timeout",
                    wait.as_secs_f64(),
                    humantime::format_duration(timeout)
                ));
            }
            _ => return Err(what),
        }
    }
}

/// The wait before the next request when the response says the rate-limit
/// bucket is empty: `X-RateLimit-Remaining: 0` and
/// `X-RateLimit-Reset-After: <seconds>` (fractional).
fn bucket_empty(headers: &HeaderMap) -> Option<Duration> {
    let value = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if value("x-ratelimit-remaining")? != "0" {
        return None;
    }
    value("x-ratelimit-reset-after")?
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
}

/// A request error in words, without the URL (it holds the secret).
fn describe(e: reqwest::Error, url: &Url) -> String {
    let kind = crate::settings::failure_kind(&e);
    let e = e.without_url();
    let mut text = format!("{kind}: {} ({e}", redacted(url));
    crate::settings::push_causes(&mut text, &e);
    text.push(')');
    text
}

/// `: <the start of body>` when the body is short readable text.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {}", truncate(&text.replace(['\n', '\r'], " "), 200))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::message::{Language, render};

    fn release() -> Release {
        Release {
            id: 12,
            work_id: 1,
            kind: WorkKind::Anime,
            title: "Frieren <Beyond> & *Journey's End*".into(),
            native_title: Some("葬送のフリーレン".into()),
            url: Some("https://anilist.co/anime/154587".into()),
            episode: Some(12),
            volume: None,
            platform: Some("Crunchyroll".into()),
            release_time: chrono::DateTime::from_timestamp(1_796_137_200, 0).unwrap(),
            source: "anilist".into(),
            source_id: "airing-12".into(),
            notified_at: None,
            calendar_uid: None,
            chapter: None,
            time_basis: crate::store::TimeBasis::Scheduled,
        }
    }

    #[test]
    fn slack_shape_and_escaping() {
        let r = release();
        let p = slack_payload(&render(&r, Language::En));
        let text = p["text"].as_str().unwrap();
        assert!(
            text.contains("Frieren &lt;Beyond&gt; &amp; *Journey's End*"),
            "{text}"
        );
        assert!(text.contains("葬送のフリーレン"));
        assert_eq!(p["blocks"][0]["type"], "section");
        assert_eq!(p["blocks"][0]["text"]["type"], "mrkdwn");
        let section = p["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(
            section.starts_with("New episode: *<https://anilist.co/anime/154587|"),
            "{section}"
        );
    }

    /// Every `&` in `text` starts one of the three entities.
    fn entities_whole(text: &str) -> bool {
        text.match_indices('&').all(|(i, _)| {
            ["&amp;", "&lt;", "&gt;"]
                .iter()
                .any(|e| text[i..].starts_with(e))
        })
    }

    #[test]
    fn slack_cuts_before_escaping_and_keeps_the_link_and_lines() {
        let mut r = release();
        for title in ["&".repeat(2000), "a&b<c>d|".repeat(700), "x".repeat(5000)] {
            r.title = title;
            let p = slack_payload(&render(&r, Language::En));
            let section = p["blocks"][0]["text"]["text"].as_str().unwrap();
            assert!(section.chars().count() <= SLACK_SECTION_MAX, "{section}");
            assert!(entities_whole(section), "{section}");
            let lines: Vec<&str> = section.lines().collect();
            assert_eq!(lines.len(), 3, "{section}");
            assert!(
                lines[0].starts_with("New episode: *<https://anilist.co/anime/154587|"),
                "{section}"
            );
            assert!(lines[0].ends_with("…>*"), "{section}");
            assert_eq!(lines[1], "episode 12 on Crunchyroll");
            assert_eq!(lines[2], "2026-12-01 15:00 UTC");
            let text = p["text"].as_str().unwrap();
            assert!(text.chars().count() <= SLACK_TEXT_MAX, "{text}");
            assert!(entities_whole(text), "{text}");
            assert!(text.ends_with('…'), "{text}");
        }
        // Short text is not cut.
        let p = slack_payload(&render(&release(), Language::En));
        let section = p["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(
            section.contains("|Frieren &lt;Beyond&gt; &amp; *Journey's End* (葬送のフリーレン)>*"),
            "{section}"
        );
    }

    #[test]
    fn discord_shape_and_limits() {
        let mut r = release();
        r.title = "x".repeat(3000);
        let p = discord_payload(&r, &render(&r, Language::En));
        assert!(p["content"].as_str().unwrap().chars().count() <= 2000);
        let embeds = p["embeds"].as_array().unwrap();
        assert_eq!(embeds.len(), 1);
        assert!(embeds[0]["title"].as_str().unwrap().chars().count() <= 256);
        assert_eq!(embeds[0]["timestamp"], "2026-12-01T15:00:00Z");
        assert_eq!(embeds[0]["url"], "https://anilist.co/anime/154587");
        assert_eq!(p["allowed_mentions"]["parse"], json!([]));
    }

    #[test]
    fn redaction_hides_the_path() {
        let url = Url::parse("https://hooks.slack.com/services/T0/B0/secret").unwrap();
        assert_eq!(redacted(&url), "https://hooks.slack.com");
    }
}
