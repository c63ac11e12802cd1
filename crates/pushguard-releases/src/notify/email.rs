//! The e-mail channel: one plain-text UTF-8 message per release over SMTP
//! (lettre's tokio transport), with STARTTLS, implicit TLS or, for a local
//! relay, no TLS at all.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

use super::message::Text;
use super::{env_secret, invalid};
use crate::error::BuiltinError;
use crate::settings::chain;

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tls {
    /// Plain connection upgraded with STARTTLS (required, never skipped).
    Starttls,
    /// TLS from the first byte (SMTPS).
    Wrapper,
    /// No TLS: only for a relay on the same host or a test server.
    None,
}

impl Tls {
    /// The port each mode usually listens on.
    fn default_port(self) -> u16 {
        match self {
            Tls::Starttls => 587,
            Tls::Wrapper => 465,
            Tls::None => 25,
        }
    }
}

/// The `[settings.email]` table, validated.
#[derive(Debug, Clone)]
pub(super) struct EmailConfig {
    host: String,
    port: u16,
    tls: Tls,
    from: Mailbox,
    to: Vec<Mailbox>,
    username_env: Option<String>,
    password_env: Option<String>,
}

/// The table as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    host: String,
    port: Option<u16>,
    tls: Option<String>,
    from: String,
    to: Vec<String>,
    username_env: Option<String>,
    password_env: Option<String>,
}

impl EmailConfig {
    /// Validates `[settings.email]`.
    pub(super) fn from_table(table: &toml::Table) -> Result<EmailConfig, BuiltinError> {
        let raw: RawEmail = super::deserialize(table, "email")?;
        if raw.host.trim().is_empty() {
            return Err(invalid("email.host", "must not be empty"));
        }
        let tls = match raw.tls.as_deref() {
            None | Some("starttls") => Tls::Starttls,
            Some("tls") => Tls::Wrapper,
            Some("none") => Tls::None,
            Some(other) => {
                return Err(invalid(
                    "email.tls",
                    format!("unknown mode {other:?}: expected \"starttls\", \"tls\" or \"none\""),
                ));
            }
        };
        let port = raw.port.unwrap_or(tls.default_port());
        if port == 0 {
            return Err(invalid("email.port", "must be between 1 and 65535"));
        }
        let mailbox = |key: &str, text: &str| {
            text.parse::<Mailbox>().map_err(|e| {
                invalid(
                    key,
                    format!("invalid address {text:?}: {e}; write it like \"Releases <releases@example.org>\""),
                )
            })
        };
        let from = mailbox("email.from", &raw.from)?;
        if raw.to.is_empty() {
            return Err(invalid("email.to", "name at least one recipient"));
        }
        let to = raw
            .to
            .iter()
            .enumerate()
            .map(|(i, t)| mailbox(&format!("email.to[{i}]"), t))
            .collect::<Result<Vec<_>, _>>()?;
        match (&raw.username_env, &raw.password_env) {
            (Some(_), None) => {
                return Err(invalid(
                    "email.password_env",
                    "missing: username_env needs password_env as well",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "email.username_env",
                    "missing: password_env needs username_env as well",
                ));
            }
            _ => {}
        }
        Ok(EmailConfig {
            host: raw.host.trim().to_owned(),
            port,
            tls,
            from,
            to,
            username_env: raw.username_env,
            password_env: raw.password_env,
        })
    }

    /// The server, for messages: `smtp.example.org:587`.
    pub(super) fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Builds the transport, reading the credentials from the environment.
    pub(super) fn connect(&self, timeout: Duration) -> Result<Mailer, BuiltinError> {
        let builder = match self.tls {
            Tls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host),
            Tls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&self.host)
                .map_err(|e| {
                    invalid(
                        "email.host",
                        format!("cannot set up TLS for {:?}: {e}", self.host),
                    )
                })?,
            Tls::Wrapper => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&self.host).map_err(|e| {
                    invalid(
                        "email.host",
                        format!("cannot set up TLS for {:?}: {e}", self.host),
                    )
                })?
            }
        };
        let mut builder = builder.port(self.port).timeout(Some(timeout));
        if let (Some(user_var), Some(password_var)) = (&self.username_env, &self.password_env) {
            let user = env_secret("email.username_env", user_var)?;
            let password = env_secret("email.password_env", password_var)?;
            builder = builder.credentials(Credentials::new(user, password));
        }
        Ok(Mailer {
            transport: builder.build(),
            from: self.from.clone(),
            to: self.to.clone(),
            timeout,
            server: self.server(),
        })
    }
}

/// A ready SMTP transport and the envelope of every message.
pub(super) struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    timeout: Duration,
    /// `host:port`, for messages.
    server: String,
}

impl Mailer {
    /// Sends one release; the error is one line.
    pub(super) async fn send(&self, text: &Text) -> Result<(), String> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(text.subject.clone())
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let mut body = format!("{}\n", text.headline);
        if let Some(url) = &text.url {
            body.push('\n');
            body.push_str(url);
            body.push('\n');
        }
        let message = builder
            .body(body)
            .map_err(|e| format!("cannot build the message: {e}"))?;
        // lettre's timeout bounds each SMTP command; this bounds the whole
        // conversation (connect, TLS, AUTH, DATA).
        match tokio::time::timeout(self.timeout * 3, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("SMTP {}: {}", self.server, chain(&e))),
            Err(_) => Err(format!(
                "SMTP {}: timed out after {}",
                self.server,
                humantime::format_duration(self.timeout * 3)
            )),
        }
    }
}
