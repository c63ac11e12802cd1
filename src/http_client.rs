//! The one place pushguard builds its HTTP clients.
//!
//! Every client — the Pushgateway's, the OTLP exporter's over plain HTTP, the
//! release jobs' — is made by an [`HttpClientBuilder`], so they agree on:
//!
//! - TLS: rustls with the `ring` provider (installed as the process default
//!   unless the application already installed one);
//! - root certificates: the system roots are read only when a target needs
//!   https (or a CA file or client certificate is set); a client that only
//!   speaks plain `http://` skips them, which saves milliseconds at every
//!   start of a short-lived process;
//! - no proxy from the environment, the `pushguard/VERSION` user agent, and
//!   no redirects unless asked for.
//!
//! ```
//! use std::time::Duration;
//! use pushguard::http_client::HttpClientBuilder;
//!
//! let client: reqwest::Client = HttpClientBuilder::new()
//!     .target("http://127.0.0.1:9091")
//!     .connect_timeout(Duration::from_secs(2))
//!     .timeout(Duration::from_secs(5))
//!     .build()?;
//! # drop(client);
//! # Ok::<(), pushguard::http_client::HttpClientError>(())
//! ```

use std::time::Duration;

/// The user agent every pushguard client sends.
pub const USER_AGENT: &str = concat!("pushguard/", env!("CARGO_PKG_VERSION"));

/// Applies the builder's settings to a `reqwest` async or blocking builder
/// (same method names, different types).
macro_rules! configure {
    ($settings:expr, $builder:expr, $roots:expr, $identity:expr) => {{
        let settings = &$settings;
        let mut client = $builder.user_agent(USER_AGENT).no_proxy();
        if !settings.follow_redirects {
            client = client.redirect(reqwest::redirect::Policy::none());
        }
        if let Some(timeout) = settings.connect_timeout {
            client = client.connect_timeout(timeout);
        }
        if let Some(timeout) = settings.timeout {
            client = client.timeout(timeout);
        }
        if let Some(timeout) = settings.pool_idle_timeout {
            client = client.pool_idle_timeout(timeout);
        }
        if settings.plain_http_only() {
            // Plain HTTP verifies no certificate: skip the system roots.
            client = client.tls_certs_only(Vec::new());
        }
        for cert in $roots {
            client = client.add_root_certificate(cert);
        }
        if let Some(identity) = $identity {
            client = client.identity(identity);
        }
        client
    }};
}

/// Builds a `reqwest` client with pushguard's TLS, timeout and proxy settings.
///
/// | setting | default |
/// |---|---|
/// | [`connect_timeout`](Self::connect_timeout) | none (the OS limit) |
/// | [`timeout`](Self::timeout) | none (async), 30 s (blocking) |
/// | [`pool_idle_timeout`](Self::pool_idle_timeout) | reqwest's (90 s) |
/// | [`follow_redirects`](Self::follow_redirects) | no |
/// | root certificates | the system roots, unless every [`target`](Self::target) is `http://` |
/// | [`ca_certificate_pem`](Self::ca_certificate_pem), [`client_identity_pem`](Self::client_identity_pem) | none |
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until `build()` is called"]
pub struct HttpClientBuilder {
    connect_timeout: Option<Duration>,
    timeout: Option<Duration>,
    pool_idle_timeout: Option<Duration>,
    follow_redirects: bool,
    /// Whether any target was declared.
    targets: bool,
    /// Whether a declared target needs TLS.
    needs_tls: bool,
    ca_pem: Vec<Vec<u8>>,
    identity_pem: Option<Vec<u8>>,
}

/// Why an [`HttpClientBuilder`] could not build its client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpClientError {
    /// A CA certificate is not valid PEM.
    #[error("cannot read the CA certificate")]
    CaCertificate(#[source] reqwest::Error),
    /// A CA certificate file holds no certificate.
    #[error("the CA certificate file holds no PEM certificate")]
    NoCaCertificate,
    /// The client certificate and key are not valid PEM.
    #[error("cannot read the client certificate and key (PEM)")]
    ClientIdentity(#[source] reqwest::Error),
    /// `reqwest` refused the configuration (no TLS provider, unreadable
    /// system roots, …).
    #[error("cannot build the HTTP client")]
    Build(#[source] reqwest::Error),
    /// The thread that builds a blocking client panicked.
    #[error("cannot build the HTTP client: its thread panicked")]
    Thread,
}

impl HttpClientBuilder {
    /// A builder with the defaults in the table above.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a URL the client will talk to. When every declared target is
    /// plain `http://` (and no CA or client certificate is set), the system
    /// root certificates are not loaded. With no target declared, they are.
    pub fn target(mut self, url: &str) -> Self {
        self.targets = true;
        self.needs_tls |= !is_plain_http(url);
        self
    }

    /// [`target`](Self::target) for each URL.
    pub fn targets<I, S>(self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        urls.into_iter()
            .fold(self, |builder, url| builder.target(url.as_ref()))
    }

    /// Time limit to open a connection (TCP and TLS handshake).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Time limit of a whole request, from connecting to the end of the body.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long an idle pooled connection is kept.
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = Some(timeout);
        self
    }

    /// Follows up to 10 redirects (reqwest's default policy) instead of
    /// returning the 3xx answer.
    pub fn follow_redirects(mut self, follow: bool) -> Self {
        self.follow_redirects = follow;
        self
    }

    /// Trusts the PEM certificate(s) in `pem` in addition to the system roots.
    pub fn ca_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem.push(pem.into());
        self
    }

    /// Presents a client certificate (mutual TLS): `pem` holds the
    /// certificate chain and the private key.
    pub fn client_identity_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.identity_pem = Some(pem.into());
        self
    }

    /// Whether the system root certificates are skipped.
    fn plain_http_only(&self) -> bool {
        self.targets && !self.needs_tls && self.ca_pem.is_empty() && self.identity_pem.is_none()
    }

    /// The parsed CA certificates and client identity.
    fn tls_material(
        &self,
    ) -> Result<(Vec<reqwest::Certificate>, Option<reqwest::Identity>), HttpClientError> {
        let mut roots = Vec::new();
        for pem in &self.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(HttpClientError::CaCertificate)?;
            if certs.is_empty() {
                return Err(HttpClientError::NoCaCertificate);
            }
            roots.extend(certs);
        }
        let identity = self
            .identity_pem
            .as_deref()
            .map(reqwest::Identity::from_pem)
            .transpose()
            .map_err(HttpClientError::ClientIdentity)?;
        Ok((roots, identity))
    }

    /// Builds the async client.
    pub fn build(self) -> Result<reqwest::Client, HttpClientError> {
        let (roots, identity) = self.tls_material()?;
        install_ring();
        let client = configure!(self, reqwest::Client::builder(), roots, identity);
        client.build().map_err(HttpClientError::Build)
    }

    /// Builds the blocking client (the OTLP exporter's). It is built on a
    /// thread of its own: a blocking client owns a runtime, which must not be
    /// created inside the caller's.
    #[cfg(feature = "otel")]
    pub fn build_blocking(self) -> Result<reqwest::blocking::Client, HttpClientError> {
        let (roots, identity) = self.tls_material()?;
        install_ring();
        std::thread::spawn(move || {
            let client = configure!(self, reqwest::blocking::Client::builder(), roots, identity);
            client.build().map_err(HttpClientError::Build)
        })
        .join()
        .unwrap_or(Err(HttpClientError::Thread))
    }
}

/// rustls is built without a bundled provider: use ring, unless the
/// application already installed one.
pub(crate) fn install_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn is_plain_http(url: &str) -> bool {
    url.trim_start()
        .get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_targets_skip_the_system_roots() {
        assert!(!HttpClientBuilder::new().plain_http_only());
        assert!(
            HttpClientBuilder::new()
                .target("http://a:1")
                .plain_http_only()
        );
        assert!(
            HttpClientBuilder::new()
                .target(" HTTP://a:1")
                .plain_http_only()
        );
        assert!(
            !HttpClientBuilder::new()
                .targets(["http://a:1", "https://b"])
                .plain_http_only()
        );
        assert!(
            !HttpClientBuilder::new()
                .target("http://a:1")
                .client_identity_pem("x")
                .plain_http_only()
        );
        assert!(
            !HttpClientBuilder::new()
                .target("httpx://a")
                .plain_http_only()
        );
    }

    #[test]
    fn bad_tls_material_is_reported() {
        let err = HttpClientBuilder::new()
            .ca_certificate_pem("not a certificate")
            .build()
            .unwrap_err();
        assert!(matches!(err, HttpClientError::NoCaCertificate), "{err:?}");
        let err = HttpClientBuilder::new()
            .client_identity_pem("not a key")
            .build()
            .unwrap_err();
        assert!(matches!(err, HttpClientError::ClientIdentity(_)), "{err:?}");
    }

    /// A self-signed test certificate (P-256) and its key; not a secret.
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBiTCCAS+gAwIBAgIUYZG/l1kaN7fTDxZdfarwfZK11NUwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOcHVzaGd1YXJkLXRlc3QwIBcNMjYxMTMwMTIxMTQ2WhgPMjEy
NjExMDYxMjExNDZaMBkxFzAVBgNVBAMMDnB1c2hndWFyZC10ZXN0MFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAESO279lI92cDP0TISGAzZaMWQmzgrqBAZzYj9A7dq
SYd+heL+mZYGhqGPhUxfykfy6s3TUxwQRiGSkjbstRcPSaNTMFEwHQYDVR0OBBYE
FHCP9LVcQ//FduiVF84qWloWrMKSMB8GA1UdIwQYMBaAFHCP9LVcQ//FduiVF84q
WloWrMKSMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIgcFvIYgvS
7lwLB5pV9tsGtWOQ2wHXXgEAGNh19YQBjnACIQCIwuwPCJxuCz1TGycAiuydRSXg
6eOTtHFH3XYFHpKB6A==
-----END CERTIFICATE-----
";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgFDBMjXjHjiD0g3cy
PUl6n8fN9EUhjd+VfU+yMxXUPfmhRANCAARI7bv2Uj3ZwM/RMhIYDNloxZCbOCuo
EBnNiP0Dt2pJh36F4v6ZlgaGoY+FTF/KR/LqzdNTHBBGIZKSNuy1Fw9J
-----END PRIVATE KEY-----
";

    #[test]
    fn a_ca_file_and_a_client_identity_are_accepted() {
        let builder = HttpClientBuilder::new()
            .target("http://127.0.0.1:1")
            .ca_certificate_pem(CERT)
            .client_identity_pem(format!("{CERT}{KEY}"));
        assert!(!builder.plain_http_only());
        builder.clone().build().unwrap();
        #[cfg(feature = "otel")]
        builder.build_blocking().unwrap();
    }

    #[test]
    fn builds_async_and_blocking_clients() {
        HttpClientBuilder::new()
            .target("http://127.0.0.1:1")
            .build()
            .unwrap();
        #[cfg(feature = "otel")]
        HttpClientBuilder::new()
            .target("http://127.0.0.1:1")
            .timeout(Duration::from_secs(1))
            .build_blocking()
            .unwrap();
    }
}
