//! The `notify` built-in job: announces pending releases on Slack, Discord
//! and e-mail, each release exactly once per channel.
//!
//! Delivery is recorded per (release, channel) as soon as a channel accepts
//! a message, and a release is marked notified only when every configured
//! channel has it. A failed channel therefore loses nothing and duplicates
//! nothing: the next run sends to that channel only what it is missing.
//! A channel that fails once (an error status, a refused connection, a
//! timeout) is left alone for the rest of the run, so a dead endpoint is
//! not hammered with the whole batch.

mod email;
pub(super) mod message;
mod webhook;

use std::path::{Path, PathBuf};
use std::time::Duration;

use pushguard::http_client::HttpClientBuilder;
use reqwest::{Client, Url};

use self::email::{EmailConfig, Mailer};
use self::message::Language;
use super::error::BuiltinError;
use super::metrics::NotifyMetrics;
use super::settings::chain;
pub(super) use super::settings::{deserialize, invalid};
use super::store::{Release, Store};

/// The `[settings]` of a `builtin = "notify"` job file.
///
/// | key | default | meaning |
/// |---|---|---|
/// | `store` | `releases.db` beside the state file | the release store, relative to the job file |
/// | `language` | `en` | `en` or `ja`: the message text (titles are never translated; `ja` shows times in JST) |
/// | `batch_limit` | 100 | most pending releases one run handles, earliest first |
/// | `timeout` | `10s` | per HTTP request; per SMTP command (a whole message: three times it) |
/// | `[slack]` | none | `webhook_url_env = "VAR"` or `webhook_url_file = "path"` |
/// | `[discord]` | none | the same keys as `[slack]` |
/// | `[email]` | none | `host`, `port` (by `tls`: 587, 465, 25), `tls` (`starttls`, `tls`, `none`), `from`, `to = [...]`, optional `username_env` + `password_env` |
///
/// A channel is used when its table is present; at least one is required.
/// Webhook URLs are secrets: name an environment variable or a file holding
/// them. A literal `webhook_url = "https://…"` is accepted but discouraged
/// (job files end up in version control). Secrets are read when the job
/// runs, not when the file is checked.
///
/// ```
/// let table: toml::Table = toml::from_str(r#"
///     language = "ja"
///     [slack]
///     webhook_url_env = "SLACK_WEBHOOK_URL"
///     [email]
///     host = "smtp.example.org"
///     from = "Releases <releases@example.org>"
///     to = ["me@example.org"]
/// "#).unwrap();
/// let settings = pushguard_releases::NotifySettings::from_table(&table, "jobs".as_ref())?;
/// assert_eq!(settings.channels(), ["slack", "email"]);
/// assert_eq!(settings.language(), "ja");
/// # Ok::<(), pushguard_releases::BuiltinError>(())
/// ```
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// The store file when the job names one, resolved against the job
    /// file's directory (the runner opens it).
    pub store: Option<PathBuf>,
    /// Most pending releases one run handles.
    pub batch_limit: usize,
    /// Per HTTP request (and per SMTP command).
    pub timeout: Duration,
    language: Language,
    slack: Option<WebhookUrl>,
    discord: Option<WebhookUrl>,
    email: Option<EmailConfig>,
}

impl Default for NotifySettings {
    /// English, 100 releases a run, a 10 s timeout and no channel.
    fn default() -> Self {
        NotifySettings {
            store: None,
            batch_limit: DEFAULT_BATCH_LIMIT,
            timeout: DEFAULT_TIMEOUT,
            language: Language::En,
            slack: None,
            discord: None,
            email: None,
        }
    }
}

impl NotifySettings {
    /// Validates a job file's `[settings]` table; relative paths are
    /// resolved against `base` (the job file's directory).
    pub fn from_table(table: &toml::Table, base: &Path) -> Result<NotifySettings, BuiltinError> {
        parse_settings(table, base)
    }

    /// The configured channels, in the order they are served: `slack`,
    /// `discord`, `email`.
    pub fn channels(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.slack.is_some() {
            names.push(SLACK);
        }
        if self.discord.is_some() {
            names.push(DISCORD);
        }
        if self.email.is_some() {
            names.push(EMAIL);
        }
        names
    }

    /// The message language, `"en"` or `"ja"`.
    pub fn language(&self) -> &'static str {
        self.language.as_str()
    }

    /// Why the job has nothing it can do, when no channel can be used: every
    /// channel takes its URL from an environment variable that is unset or
    /// empty, and there is no email. The shipped job file is like that until
    /// the URLs are set; `None` once any channel is configured.
    ///
    /// ```
    /// let table: toml::Table = toml::from_str(
    ///     "[slack]\nwebhook_url_env = \"PUSHGUARD_DOC_SURELY_UNSET\"",
    /// ).unwrap();
    /// let settings = pushguard_releases::NotifySettings::from_table(&table, "jobs".as_ref())?;
    /// assert!(settings.unconfigured().unwrap().contains("PUSHGUARD_DOC_SURELY_UNSET"));
    /// # Ok::<(), pushguard_releases::BuiltinError>(())
    /// ```
    pub fn unconfigured(&self) -> Option<String> {
        if self.email.is_some() {
            return None;
        }
        let mut unset = Vec::new();
        for url in [&self.slack, &self.discord].into_iter().flatten() {
            match url {
                WebhookUrl::Env(var)
                    if std::env::var(var).map_or(true, |v| v.trim().is_empty()) =>
                {
                    unset.push(var.as_str());
                }
                _ => return None,
            }
        }
        Some(match unset.as_slice() {
            [] => "no channel is configured: add [settings.slack], [settings.discord] or [settings.email]".to_owned(),
            vars => format!(
                "no channel is configured yet: set {} (or add [settings.email]); until then its runs are recorded as skipped",
                vars.join(" or ")
            ),
        })
    }
}

/// What one run did on one channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChannelReport {
    /// `slack`, `discord` or `email`.
    pub channel: String,
    /// Messages the channel accepted.
    pub sent: usize,
    /// Whether the channel failed (and was then left alone for the run).
    pub failed: bool,
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct NotifyReport {
    /// Pending releases the run looked at.
    pub pending: usize,
    /// Releases marked notified (every channel has them).
    pub notified: usize,
    /// One entry per configured channel.
    pub channels: Vec<ChannelReport>,
}

impl std::fmt::Display for NotifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.pending == 0 {
            return f.write_str("no pending releases");
        }
        write!(
            f,
            "{} pending release{}, {} notified",
            self.pending,
            if self.pending == 1 { "" } else { "s" },
            self.notified
        )?;
        for (i, c) in self.channels.iter().enumerate() {
            let sep = if i == 0 { " — " } else { ", " };
            let failed = if c.failed { " (failed)" } else { "" };
            write!(f, "{sep}{}: {} sent{failed}", c.channel, c.sent)?;
        }
        Ok(())
    }
}

const SLACK: &str = "slack";
const DISCORD: &str = "discord";
const EMAIL: &str = "email";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_BATCH_LIMIT: usize = 100;

/// Where a webhook URL comes from.
#[derive(Clone)]
enum WebhookUrl {
    /// An environment variable's name.
    Env(String),
    /// A file holding the URL (trailing whitespace removed).
    File(PathBuf),
    /// Written in the job file (discouraged).
    Literal(String),
}

impl std::fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WebhookUrl::Env(var) => f.debug_tuple("Env").field(var).finish(),
            WebhookUrl::File(path) => f.debug_tuple("File").field(path).finish(),
            WebhookUrl::Literal(_) => f.write_str("Literal(<redacted>)"),
        }
    }
}

impl WebhookUrl {
    /// Reads the URL (`channel` names the table for errors).
    fn resolve(&self, channel: &str) -> Result<Url, BuiltinError> {
        let (key, text) = match self {
            WebhookUrl::Env(var) => {
                let key = format!("{channel}.webhook_url_env");
                let text = env_secret(&key, var)?;
                (key, text)
            }
            WebhookUrl::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| BuiltinError::File {
                    path: path.clone(),
                    reason: format!("cannot read the {channel} webhook URL: {e}"),
                })?;
                (
                    format!("{channel}.webhook_url_file"),
                    text.trim().to_owned(),
                )
            }
            WebhookUrl::Literal(text) => (format!("{channel}.webhook_url"), text.clone()),
        };
        // The URL is a secret: errors name where it came from, not its text.
        let url = Url::parse(text.trim())
            .map_err(|e| invalid(&key, format!("the {channel} webhook URL is not a URL: {e}")))?;
        match url.scheme() {
            "http" | "https" => Ok(url),
            other => Err(invalid(
                &key,
                format!("the {channel} webhook URL has scheme {other:?}: use https"),
            )),
        }
    }
}

/// The value of environment variable `var`, named by setting `key`.
fn env_secret(key: &str, var: &str) -> Result<String, BuiltinError> {
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_owned()),
        Ok(_) => Err(invalid(key, format!("environment variable {var} is empty"))),
        Err(std::env::VarError::NotPresent) => Err(invalid(
            key,
            format!("environment variable {var} is not set"),
        )),
        Err(std::env::VarError::NotUnicode(_)) => Err(invalid(
            key,
            format!("environment variable {var} is not valid UTF-8"),
        )),
    }
}

/// The `[settings]` table as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    store: Option<PathBuf>,
    language: Option<String>,
    batch_limit: Option<usize>,
    timeout: Option<String>,
    slack: Option<toml::Table>,
    discord: Option<toml::Table>,
    email: Option<toml::Table>,
}

/// A `[slack]` or `[discord]` table as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    webhook_url_env: Option<String>,
    webhook_url_file: Option<PathBuf>,
    webhook_url: Option<String>,
}

fn parse_settings(table: &toml::Table, base: &Path) -> Result<NotifySettings, BuiltinError> {
    let raw: RawSettings = deserialize(table, "")?;
    let language = match raw.language.as_deref() {
        None => Language::En,
        Some(text) => Language::parse(text).ok_or_else(|| {
            invalid(
                "language",
                format!("unknown language {text:?}: expected \"en\" or \"ja\""),
            )
        })?,
    };
    let batch_limit = raw.batch_limit.unwrap_or(DEFAULT_BATCH_LIMIT);
    if batch_limit == 0 {
        return Err(invalid("batch_limit", "must be at least 1"));
    }
    let timeout = parse_timeout(raw.timeout.as_deref())?;
    let webhook = |channel: &str, table: &toml::Table| -> Result<WebhookUrl, BuiltinError> {
        let raw: RawWebhook = deserialize(table, channel)?;
        match (raw.webhook_url_env, raw.webhook_url_file, raw.webhook_url) {
            (Some(var), None, None) if !var.trim().is_empty() => Ok(WebhookUrl::Env(var)),
            (Some(_), None, None) => Err(invalid(
                &format!("{channel}.webhook_url_env"),
                "must name an environment variable",
            )),
            (None, Some(path), None) => Ok(WebhookUrl::File(base.join(path))),
            (None, None, Some(url)) => Ok(WebhookUrl::Literal(url)),
            (None, None, None) => Err(invalid(
                &format!("{channel}.webhook_url_env"),
                "missing: set webhook_url_env (or webhook_url_file) to where the webhook URL is kept",
            )),
            _ => Err(invalid(
                &format!("{channel}.webhook_url_env"),
                "set only one of webhook_url_env, webhook_url_file and webhook_url",
            )),
        }
    };
    let slack = raw.slack.as_ref().map(|t| webhook(SLACK, t)).transpose()?;
    let discord = raw
        .discord
        .as_ref()
        .map(|t| webhook(DISCORD, t))
        .transpose()?;
    let email = raw
        .email
        .as_ref()
        .map(EmailConfig::from_table)
        .transpose()?;
    if slack.is_none() && discord.is_none() && email.is_none() {
        return Err(invalid(
            "settings",
            "no channel configured: add a [settings.slack], [settings.discord] or [settings.email] table",
        ));
    }
    Ok(NotifySettings {
        store: raw.store.map(|p| base.join(p)),
        batch_limit,
        timeout,
        language,
        slack,
        discord,
        email,
    })
}

/// Parses the `timeout` key (default 10 s).
fn parse_timeout(text: Option<&str>) -> Result<Duration, BuiltinError> {
    match text {
        None => Ok(DEFAULT_TIMEOUT),
        Some(text) => match humantime::parse_duration(text) {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => Err(invalid("timeout", "must be longer than zero")),
            Err(e) => Err(invalid(
                "timeout",
                format!("invalid duration {text:?}: {e}; write it like \"10s\" or \"1m 30s\""),
            )),
        },
    }
}

/// One channel ready to send.
enum Sender {
    Webhook {
        /// `slack` or `discord`.
        name: &'static str,
        client: Client,
        url: Url,
        /// No request before this: the service said its bucket is empty.
        hold: std::sync::Mutex<Option<tokio::time::Instant>>,
    },
    Email(Mailer),
}

impl Sender {
    fn name(&self) -> &'static str {
        match self {
            Sender::Webhook { name, .. } => name,
            Sender::Email(_) => EMAIL,
        }
    }

    async fn send(
        &self,
        release: &Release,
        language: Language,
        timeout: Duration,
    ) -> Result<(), String> {
        let text = message::render(release, language);
        match self {
            Sender::Webhook {
                name,
                client,
                url,
                hold,
            } => {
                let payload = if *name == SLACK {
                    webhook::slack_payload(&text)
                } else {
                    webhook::discord_payload(release, &text)
                };
                let until = *hold.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(until) = until {
                    let wait = until.saturating_duration_since(tokio::time::Instant::now());
                    if wait > timeout {
                        return Err(format!(
                            "rate limited by {}: its bucket is empty for {:.1}s, longer than the {} timeout",
                            webhook::redacted(url),
                            wait.as_secs_f64(),
                            humantime::format_duration(timeout)
                        ));
                    }
                    tokio::time::sleep(wait).await;
                }
                let next = webhook::post(client, url, &payload, timeout).await?;
                *hold.lock().unwrap_or_else(|p| p.into_inner()) =
                    next.map(|wait| tokio::time::Instant::now() + wait);
                Ok(())
            }
            Sender::Email(mailer) => mailer.send(&text).await,
        }
    }
}

/// Resolves the secrets and builds the configured channels.
fn open_channels(settings: &NotifySettings) -> Result<Vec<Sender>, BuiltinError> {
    let mut hooks = Vec::new();
    if let Some(url) = &settings.slack {
        hooks.push((SLACK, url.resolve(SLACK)?));
    }
    if let Some(url) = &settings.discord {
        // Pinned to an API version: the unversioned default's 429s give
        // `retry_after` in milliseconds.
        hooks.push((DISCORD, webhook::discord_url(&url.resolve(DISCORD)?)));
    }
    let mut senders = Vec::new();
    if !hooks.is_empty() {
        // The system roots are loaded only when a webhook is https.
        let client = HttpClientBuilder::new()
            .targets(hooks.iter().map(|(_, url)| url.as_str()))
            .connect_timeout(settings.timeout)
            .build()
            .map_err(|e| invalid(hooks[0].0, chain(&e)))?;
        for (name, url) in hooks {
            senders.push(Sender::Webhook {
                name,
                client: client.clone(),
                url,
                hold: std::sync::Mutex::new(None),
            });
        }
    }
    if let Some(email) = &settings.email {
        senders.push(Sender::Email(email.connect(settings.timeout)?));
    }
    Ok(senders)
}

/// Runs the job once: every pending release (up to `batch_limit`, earliest
/// first) to every configured channel that does not have it yet.
///
/// `notifications_sent_total{channel,status}` counts each attempt. When a
/// channel failed, the run ends with [`BuiltinError::Partial`]: one line per
/// failed channel (its first failure, and how many releases it then left
/// for the next run), out of the channels that had something to send; what
/// the other channels accepted is recorded first.
pub async fn notify(
    settings: &NotifySettings,
    store: &Store,
    metrics: &NotifyMetrics,
) -> Result<NotifyReport, BuiltinError> {
    if let Some(reason) = settings.unconfigured() {
        return Err(BuiltinError::Unconfigured { reason });
    }
    let senders = open_channels(settings)?;
    let pending = store.pending_releases(settings.batch_limit)?;
    let mut report = NotifyReport {
        pending: pending.len(),
        notified: 0,
        channels: senders
            .iter()
            .map(|s| ChannelReport {
                channel: s.name().to_owned(),
                ..ChannelReport::default()
            })
            .collect(),
    };
    // Per channel: its first failure, releases left after it, whether it had work.
    let mut failure: Vec<Option<String>> = vec![None; senders.len()];
    let mut left = vec![0usize; senders.len()];
    let mut busy = vec![false; senders.len()];
    for release in &pending {
        let delivered = store.delivered_channels(release.id)?;
        let mut complete = true;
        for (i, sender) in senders.iter().enumerate() {
            let name = sender.name();
            if delivered.iter().any(|d| d == name) {
                continue;
            }
            busy[i] = true;
            if failure[i].is_some() {
                left[i] += 1;
                complete = false;
                continue;
            }
            match sender
                .send(release, settings.language, settings.timeout)
                .await
            {
                Ok(()) => {
                    metrics.sent.with_label_values(&[name, "success"]).inc();
                    store.record_delivery(release.id, name)?;
                    report.channels[i].sent += 1;
                }
                Err(reason) => {
                    metrics.sent.with_label_values(&[name, "failure"]).inc();
                    report.channels[i].failed = true;
                    failure[i] = Some(format!(
                        "{name}: release {} ({}): {reason}",
                        release.id,
                        message::render(release, Language::En).summary
                    ));
                    complete = false;
                }
            }
        }
        if complete {
            store.mark_notified(release.id)?;
            report.notified += 1;
        }
    }
    let failed: Vec<String> = failure
        .into_iter()
        .zip(&left)
        .filter_map(|(line, left)| {
            line.map(|line| match left {
                0 => line,
                n => format!(
                    "{line}; {n} later release{} left for the next run",
                    if *n == 1 { "" } else { "s" }
                ),
            })
        })
        .collect();
    if failed.is_empty() {
        Ok(report)
    } else {
        Err(BuiltinError::Partial {
            failed,
            total: busy.iter().filter(|b| **b).count(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NotifySettings, BuiltinError> {
        let table: toml::Table = toml::from_str(text).unwrap();
        NotifySettings::from_table(&table, Path::new("/jobs"))
    }

    fn key_of(text: &str) -> String {
        match parse(text) {
            Err(BuiltinError::Settings { key, .. }) => key,
            other => panic!("expected a settings error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_and_paths() {
        let s = parse(
            "store = \"r.db\"\n[discord]\nwebhook_url_file = \"hook\"\n[slack]\nwebhook_url_env = \"X\"",
        )
        .unwrap();
        assert_eq!(s.store.as_deref(), Some(Path::new("/jobs/r.db")));
        assert_eq!(s.batch_limit, 100);
        assert_eq!(s.timeout, Duration::from_secs(10));
        assert_eq!(s.channels(), ["slack", "discord"]);
        assert!(matches!(&s.discord, Some(WebhookUrl::File(p)) if p == Path::new("/jobs/hook")));
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(
            key_of("language = \"fr\"\n[slack]\nwebhook_url_env = \"X\""),
            "language"
        );
        assert_eq!(
            key_of("batch_limit = 0\n[slack]\nwebhook_url_env = \"X\""),
            "batch_limit"
        );
        assert_eq!(
            key_of("timeout = \"soon\"\n[slack]\nwebhook_url_env = \"X\""),
            "timeout"
        );
        assert_eq!(
            key_of("colour = 1\n[slack]\nwebhook_url_env = \"X\""),
            "colour"
        );
        assert_eq!(key_of("[slack]\nwebhook = \"X\""), "slack.webhook");
        assert_eq!(key_of("[slack]"), "slack.webhook_url_env");
        assert_eq!(
            key_of("[discord]\nwebhook_url_env = \"X\"\nwebhook_url = \"https://x\""),
            "discord.webhook_url_env"
        );
        assert_eq!(key_of("language = \"en\""), "settings");
        let email = "[email]\nhost = \"h\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]\n";
        assert!(parse(email).is_ok());
        assert_eq!(key_of(&format!("{email}tls = \"ssl\"")), "email.tls");
        assert_eq!(
            key_of(&format!("{email}username_env = \"U\"")),
            "email.password_env"
        );
        assert_eq!(
            key_of("[email]\nhost = \"h\"\nfrom = \"not an address\"\nto = []"),
            "email.from"
        );
        assert_eq!(
            key_of("[email]\nhost = \"h\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\", \"bad\"]"),
            "email.to[1]"
        );
        assert_eq!(key_of("[email]\nfrom = \"a@b.c\"\nto = []"), "email.host");
    }

    #[test]
    fn a_literal_url_is_redacted_in_debug() {
        let s = parse("[slack]\nwebhook_url = \"https://hooks.example/secret\"").unwrap();
        assert!(!format!("{s:?}").contains("secret"));
    }

    #[test]
    fn report_line() {
        let report = NotifyReport {
            pending: 2,
            notified: 1,
            channels: vec![
                ChannelReport {
                    channel: "slack".into(),
                    sent: 2,
                    failed: false,
                },
                ChannelReport {
                    channel: "discord".into(),
                    sent: 1,
                    failed: true,
                },
            ],
        };
        assert_eq!(
            report.to_string(),
            "2 pending releases, 1 notified — slack: 2 sent, discord: 1 sent (failed)"
        );
        assert_eq!(NotifyReport::default().to_string(), "no pending releases");
    }
}
