//! Configuration of a [`Gateway`]: URL, auth, TLS, timeouts and retries.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};

use super::{Gateway, Inner, worker::Worker};
use crate::error::PushError;
use crate::http_client::{HttpClientBuilder, HttpClientError};
use crate::redact::redact_userinfo;

/// Builds a [`Gateway`].
///
/// | setting | default |
/// |---|---|
/// | [`url`](Self::url) | `http://127.0.0.1:9091` |
/// | [`attempt_timeout`](Self::attempt_timeout) | 2 s per attempt |
/// | [`deadline`](Self::deadline) | 5 s for the whole push, retries included |
/// | [`retries`](Self::retries) | 3 (on connection errors, timeouts, 5xx, 429; not on a TLS certificate failure) |
/// | [`backoff`](Self::backoff) | 100 ms, doubled after each retry |
/// | [`in_doubt_window`](Self::in_doubt_window) | 30 s: how late the gateway may still apply a request it never answered |
/// | [`turn_wait`](Self::turn_wait) | the deadline: how long a push waits for one of the client's 8 requests in flight |
/// | auth | none |
/// | TLS | rustls, system roots |
///
/// ```
/// use std::time::Duration;
/// let gateway = pushguard::Gateway::builder()
///     .url("https://push.example.net")
///     .bearer_token("s3cret")
///     .deadline(Duration::from_secs(3))
///     .build()?;
/// assert_eq!(gateway.url(), "https://push.example.net");
/// # Ok::<(), pushguard::PushError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build()` is called"]
pub struct GatewayBuilder {
    url: String,
    headers: Vec<(String, String)>,
    basic: Option<(String, String)>,
    bearer: Option<String>,
    ca_pem: Vec<Vec<u8>>,
    identity_pem: Option<Vec<u8>>,
    attempt_timeout: Duration,
    deadline: Duration,
    retries: u32,
    backoff: Duration,
    in_doubt_window: Duration,
    turn_wait: Option<Duration>,
    remote_write: bool,
}

impl Default for GatewayBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl GatewayBuilder {
    /// A builder with the defaults in the table above.
    pub fn new() -> Self {
        GatewayBuilder {
            url: Gateway::DEFAULT_URL.to_owned(),
            headers: Vec::new(),
            basic: None,
            bearer: None,
            ca_pem: Vec::new(),
            identity_pem: None,
            attempt_timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(5),
            retries: 3,
            backoff: Duration::from_millis(100),
            in_doubt_window: Duration::from_secs(30),
            turn_wait: None,
            remote_write: false,
        }
    }

    /// A builder configured from the environment: `PUSHGATEWAY_URL`,
    /// `PUSHGATEWAY_USERNAME` + `PUSHGATEWAY_PASSWORD`, or
    /// `PUSHGATEWAY_BEARER_TOKEN`; each secret also as `…_FILE` naming a file
    /// that holds it. Unset variables keep the defaults.
    pub fn from_env() -> Result<Self, PushError> {
        let mut builder = Self::new();
        if let Some(url) = env_var("PUSHGATEWAY_URL") {
            builder = builder.url(url);
        }
        let username = secret("PUSHGATEWAY_USERNAME")?;
        let password = secret("PUSHGATEWAY_PASSWORD")?;
        match (username, password) {
            (Some(user), password) => {
                builder = builder.basic_auth(user, password.unwrap_or_default())
            }
            (None, Some(_)) => {
                return Err(PushError::config(
                    "PUSHGATEWAY_PASSWORD is set but PUSHGATEWAY_USERNAME is not",
                ));
            }
            (None, None) => {}
        }
        if let Some(token) = secret("PUSHGATEWAY_BEARER_TOKEN")? {
            builder = builder.bearer_token(token);
        }
        Ok(builder)
    }

    /// The gateway base URL (`http://` or `https://`, optionally with a path
    /// prefix).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// Writes to a Prometheus remote-write receiver at `url` (its full write
    /// URL, such as `http://prometheus:9090/api/v1/write` or Mimir's
    /// `/api/v1/push`) instead of pushing to a Pushgateway: every push is
    /// sent as a remote-write 1.0 request (protobuf `WriteRequest`, snappy,
    /// `X-Prometheus-Remote-Write-Version: 0.1.0`), its samples stamped with
    /// the run's end in milliseconds, `job` and the grouping labels on every
    /// series. The outbox, retries, auth and TLS work as for a gateway.
    ///
    /// ```
    /// let writer = pushguard::Gateway::builder()
    ///     .remote_write("http://127.0.0.1:9090/api/v1/write")
    ///     .tenant("team-a")
    ///     .build()?;
    /// assert!(writer.is_remote_write());
    /// # Ok::<(), pushguard::PushError>(())
    /// ```
    #[cfg(feature = "remote-write")]
    pub fn remote_write(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self.remote_write = true;
        self
    }

    /// The tenant of a multi-tenant store (Mimir, Cortex, Thanos Receive):
    /// the `X-Scope-OrgID` header on every request.
    #[cfg(feature = "remote-write")]
    pub fn tenant(self, tenant: impl Into<String>) -> Self {
        self.header(super::remote_write::TENANT_HEADER, tenant)
    }

    /// HTTP basic auth.
    pub fn basic_auth(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.basic = Some((username.into(), password.into()));
        self
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer = Some(token.into());
        self
    }

    /// An extra header sent with every request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Trusts the PEM certificate(s) in `pem` in addition to the system roots.
    pub fn ca_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem.push(pem.into());
        self
    }

    /// Presents a client certificate: `pem` holds the certificate chain and
    /// the private key.
    pub fn client_identity_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.identity_pem = Some(pem.into());
        self
    }

    /// Time limit of one HTTP attempt.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Time limit of the whole push, retries and backoff included.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Retries after the first attempt (connection errors, timeouts, 5xx).
    /// A TLS handshake that fails over a certificate is not retried: the push
    /// fails (or is spooled) after that one attempt.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// How long a push waits for its turn among this client's requests in
    /// flight (at most 8 at once) before giving up without sending: by
    /// default its whole deadline. With a state file a push that gave up is
    /// still in the outbox, delivered first by the next push to its group or
    /// the next flush; a process ending many runs a second (the runner) sets
    /// a short wait, so that a gateway slower than the runs fills the outbox,
    /// not threads and memory.
    pub fn turn_wait(mut self, wait: Duration) -> Self {
        self.turn_wait = Some(wait);
        self
    }

    /// How late a gateway may still apply a request that was sent but never
    /// answered (a client-side timeout, a connection broken mid-request).
    /// Such an attempt is *in doubt*: it could land after a newer push and
    /// overwrite it. With a state file, the group's newest push is sent again
    /// once this window has passed since the attempt — on the next push to
    /// the group, [`State::flush`](crate::State::flush) or the runner's drain —
    /// so the newest result is the one applied last. Every push carries
    /// absolute values, so sending one again is harmless.
    pub fn in_doubt_window(mut self, window: Duration) -> Self {
        self.in_doubt_window = window;
        self
    }

    /// The first backoff; it doubles after each retry.
    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// Checks a gateway URL the way [`build`](Self::build) does, without
    /// building a client: `http` or `https` with a host, no query or
    /// fragment, and no credentials (a URL with user-info is refused — it
    /// would end up in logs and the state file; use `PUSHGATEWAY_USERNAME`
    /// and `PUSHGATEWAY_PASSWORD`). Messages never show the user-info.
    ///
    /// ```
    /// use pushguard::GatewayBuilder;
    ///
    /// assert!(GatewayBuilder::check_url("http://127.0.0.1:9091").is_ok());
    /// let error = GatewayBuilder::check_url("http://me:s3cret@gw:9091").unwrap_err();
    /// assert!(!error.to_string().contains("s3cret"));
    /// ```
    pub fn check_url(url: &str) -> Result<(), PushError> {
        let base = url.trim_end_matches('/');
        // Messages show the URL without any user-info: a password in it is
        // never printed.
        let shown = redact_userinfo(url);
        let parsed = reqwest::Url::parse(base)
            .map_err(|e| PushError::config_with(format!("invalid gateway URL {shown:?}"), e))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(PushError::config(format!(
                "invalid gateway URL {shown:?}: credentials in the URL are refused (they would \
                 end up in logs and the state file); set PUSHGATEWAY_USERNAME and \
                 PUSHGATEWAY_PASSWORD (or their _FILE variants) instead"
            )));
        }
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(PushError::config(format!(
                "invalid gateway URL {shown:?}: use http://HOST:PORT or https://HOST:PORT"
            )));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(PushError::config(format!(
                "invalid gateway URL {shown:?}: a query or fragment is not allowed"
            )));
        }
        Ok(())
    }

    /// Builds the client; fails on an invalid URL (see
    /// [`check_url`](Self::check_url)), header or credential setting.
    pub fn build(self) -> Result<Gateway, PushError> {
        Self::check_url(&self.url)?;
        let base = self.url.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base)
            .map_err(|e| PushError::config_with("invalid gateway URL", e))?;
        if self.deadline.is_zero() || self.attempt_timeout.is_zero() {
            return Err(PushError::config(
                "the push deadline and attempt timeout must be above zero",
            ));
        }
        if self.basic.is_some() && self.bearer.is_some() {
            return Err(PushError::config(
                "both basic auth and a bearer token are configured: choose one",
            ));
        }

        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| PushError::config_with(format!("invalid header name {name:?}"), e))?;
            let header_value = HeaderValue::from_str(value).map_err(|e| {
                PushError::config_with(format!("invalid value for header {name:?}"), e)
            })?;
            headers.append(header_name, header_value);
        }
        if let Some((user, password)) = &self.basic {
            use base64::Engine as _;
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            headers.insert(
                AUTHORIZATION,
                sensitive(&format!("Basic {encoded}"), "basic auth")?,
            );
        }
        if let Some(token) = &self.bearer {
            headers.insert(
                AUTHORIZATION,
                sensitive(&format!("Bearer {}", token.trim()), "bearer token")?,
            );
        }

        let mut client = HttpClientBuilder::new()
            .target(&base)
            .pool_idle_timeout(Duration::from_secs(60));
        for pem in &self.ca_pem {
            client = client.ca_certificate_pem(pem.as_slice());
        }
        if let Some(pem) = self.identity_pem {
            client = client.client_identity_pem(pem);
        }
        let client = client.build().map_err(|e| {
            let reason = e.to_string();
            match e {
                HttpClientError::CaCertificate(source)
                | HttpClientError::ClientIdentity(source)
                | HttpClientError::Build(source) => PushError::config_with(reason, source),
                HttpClientError::NoCaCertificate | HttpClientError::Thread => {
                    PushError::config(reason)
                }
            }
        })?;

        Ok(Gateway {
            inner: std::sync::Arc::new(Inner {
                identity: super::identity(&parsed),
                base,
                client,
                headers,
                attempt_timeout: self.attempt_timeout,
                deadline: self.deadline,
                retries: self.retries,
                backoff: self.backoff,
                in_doubt_window: self.in_doubt_window,
                turn_wait: self.turn_wait.unwrap_or(self.deadline),
                remote_write: self.remote_write,
                #[cfg(feature = "remote-write")]
                latest: Default::default(),
                worker: Worker::default(),
                in_flight: tokio::sync::Semaphore::new(super::MAX_IN_FLIGHT),
            }),
        })
    }
}

fn sensitive(value: &str, what: &str) -> Result<HeaderValue, PushError> {
    let mut header = HeaderValue::from_str(value).map_err(|_| {
        PushError::config(format!(
            "the {what} contains characters not allowed in a header"
        ))
    })?;
    header.set_sensitive(true);
    Ok(header)
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Reads `NAME`, or the file named by `NAME_FILE` (trailing newline removed).
pub(crate) fn secret(name: &str) -> Result<Option<String>, PushError> {
    if let Some(value) = env_var(name) {
        return Ok(Some(value));
    }
    let file_var = format!("{name}_FILE");
    match env_var(&file_var) {
        None => Ok(None),
        Some(path) => std::fs::read_to_string(&path)
            .map(|s| Some(s.trim_end_matches(['\n', '\r']).to_owned()))
            .map_err(|e| {
                PushError::config_with(format!("cannot read {file_var} file {path:?}"), e)
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_checks() {
        assert!(
            GatewayBuilder::new()
                .url("http://127.0.0.1:9091/")
                .build()
                .is_ok()
        );
        for bad in ["", "127.0.0.1:9091", "ftp://x", "http://x/?a=b"] {
            let err = GatewayBuilder::new()
                .url(bad)
                .build()
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        let err = GatewayBuilder::new()
            .header("bad name", "x")
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"bad name\""), "{err}");
        assert!(
            GatewayBuilder::new()
                .basic_auth("a", "b")
                .bearer_token("c")
                .build()
                .is_err()
        );
        assert!(
            GatewayBuilder::new()
                .ca_certificate_pem("nope")
                .build()
                .is_err()
        );
    }

    #[test]
    fn credentials_in_the_url_are_refused_without_being_shown() {
        for url in [
            "http://user:s3cret@127.0.0.1:9091",
            "https://user:s3cret@gw.example:9091/",
            "http://:s3cret@127.0.0.1:9091",
        ] {
            let error = GatewayBuilder::default().url(url).build().unwrap_err();
            let text = format!("{error} {error:?}");
            assert!(text.contains("PUSHGATEWAY_USERNAME"), "{text}");
            assert!(!text.contains("s3cret"), "{text}");
        }
        assert_eq!(redact_userinfo("http://a:b@h:1/p@x"), "http://***@h:1/p@x");
        assert_eq!(redact_userinfo("http://h:1/p@x"), "http://h:1/p@x");
    }

    #[test]
    fn one_identity_per_gateway_whatever_the_spelling() {
        let id = |url: &str| {
            GatewayBuilder::new()
                .url(url)
                .build()
                .unwrap()
                .identity()
                .to_owned()
        };
        let loopback = "http://127.0.0.1:9091";
        for url in [
            "http://127.0.0.1:9091",
            "http://127.0.0.1:9091/",
            "http://localhost:9091",
            "HTTP://LOCALHOST:9091",
            "http://localhost.:9091",
            "http://127.1:9091",
            "http://127.0.0.1:09091",
            "http://127.0.0.2:9091",
            "http://[::1]:9091",
            "http://[::ffff:127.0.0.1]:9091",
        ] {
            assert_eq!(id(url), loopback, "{url}");
        }
        assert_eq!(id("http://push.example.net"), "http://push.example.net:80");
        assert_eq!(
            id("https://Push.Example.NET./"),
            "https://push.example.net:443"
        );
        assert_eq!(
            id("https://push.example.net:443/gw/"),
            "https://push.example.net:443/gw"
        );
        assert_eq!(id("http://10.1.2.3:9091"), "http://10.1.2.3:9091");
        assert_eq!(id("http://[2001:db8::1]:9091"), "http://[2001:db8::1]:9091");
        // Different gateways stay different.
        for other in [
            "https://127.0.0.1:9091",
            "http://127.0.0.1:9092",
            "http://127.0.0.1:9091/prefix",
            "http://10.0.0.1:9091",
        ] {
            assert_ne!(id(other), loopback, "{other}");
        }
    }
}
