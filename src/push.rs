//! The Pushgateway client: PUT, POST and DELETE of one group, with bounded
//! retries under an overall deadline.
//!
//! Only connection errors, timeouts and 5xx (and 429) answers are retried, with
//! exponential backoff; any other answer is final and its error carries the
//! gateway's reason text. The blocking calls run the request on a small
//! private runtime thread, so they work the same inside and outside a tokio
//! runtime (a current-thread one included) and never panic there.

pub(crate) mod builder;
#[cfg(feature = "state")]
mod groups;
#[cfg(feature = "remote-write")]
pub(crate) mod remote_write;
mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::HeaderMap;

pub use builder::GatewayBuilder;

use crate::body::{Body, TEXT_CONTENT_TYPE};
use crate::error::PushError;
use crate::grouping::GroupingKey;

/// How a push treats metrics already stored in the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// `POST` (push-add): replaces only the families of the same name; the
    /// rest of the group stays. The default, so a failed run never erases
    /// the last success timestamp.
    #[default]
    Post,
    /// `PUT`: replaces the whole group.
    Put,
}

impl Method {
    /// `"POST"` or `"PUT"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }

    fn http(self) -> reqwest::Method {
        match self {
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
        }
    }
}

/// What an outbox entry sends: a push with its method, a delete, or a
/// remote-write request. Stored in the state file as `POST`, `PUT`, `DELETE`
/// or `WRITE`; it travels as this enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg(feature = "state")]
pub(crate) enum Stored {
    /// A push (POST or PUT).
    Push(Method),
    /// A delete of the group.
    Delete,
    /// A remote-write request (its body the base64 of the wire bytes), sent
    /// to the receiver's URL itself; the group path only orders it.
    Write,
}

#[cfg(feature = "state")]
impl Stored {
    /// The HTTP method, as the state file stores it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Stored::Push(method) => method.as_str(),
            Stored::Delete => "DELETE",
            Stored::Write => "WRITE",
        }
    }

    /// The content type of the stored body.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Stored::Write => "application/x-protobuf",
            _ => TEXT_CONTENT_TYPE,
        }
    }

    /// The stored method written as `text`, if it is one.
    pub(crate) fn parse(text: &str) -> Option<Stored> {
        match text {
            "POST" => Some(Stored::Push(Method::Post)),
            "PUT" => Some(Stored::Push(Method::Put)),
            "DELETE" => Some(Stored::Delete),
            "WRITE" => Some(Stored::Write),
            _ => None,
        }
    }
}

/// What a push or delete that was accepted looked like: delivered, or kept in
/// the state file's outbox for later ([`spooled`](Self::spooled)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PushReport {
    /// The full URL of the request.
    pub url: String,
    /// The status the gateway answered (200 or 202); 0 when another
    /// pushguard process delivered this push from the shared outbox, and
    /// when the push is spooled.
    pub status: u16,
    /// Attempts made, 1 when the first one succeeded.
    pub attempts: u32,
    /// Older spooled pushes of the same group delivered first.
    pub replayed: usize,
    /// A problem with the state file that did not stop the push (it was then
    /// sent directly, without the outbox).
    pub state_warning: Option<String>,
    /// Set when tracing was asked for by the environment but could not be
    /// set up (a bad `OTEL_*` variable): the run went on without a span.
    pub tracing_warning: Option<String>,
    /// Wall time from the first attempt to the answer.
    pub elapsed: Duration,
    /// `None` when the push was delivered. `Some(reason)` when the gateway
    /// could not take it now (down, hanging past the deadline, answering 5xx
    /// or 429) and it is kept in the state file's outbox: a later push to the
    /// group, [`State::flush`](crate::State::flush), `pushguard outbox
    /// --flush` or the runner delivers it, in order. Monitoring being down is
    /// not the job's failure, so this is an `Ok` report, not an error.
    pub spooled: Option<String>,
    /// The outbox entry that holds the push while it is spooled.
    pub outbox_entry: Option<i64>,
}

impl PushReport {
    /// True when the gateway has the push (false when it is
    /// [`spooled`](Self::spooled)).
    pub fn is_delivered(&self) -> bool {
        self.spooled.is_none()
    }

    /// The report of a delivered push, else [`PushError::Spooled`], for
    /// callers that must treat "not delivered yet" as an error (`pushguard
    /// push` exits 1 on it).
    ///
    /// ```no_run
    /// let guard = pushguard::JobRun::new("strict").start()?;
    /// let report = guard.finish(pushguard::Outcome::Success)?.into_delivered()?;
    /// assert!(report.is_delivered());
    /// # Ok::<(), pushguard::PushError>(())
    /// ```
    pub fn into_delivered(self) -> Result<PushReport, PushError> {
        match self.spooled {
            None => Ok(self),
            Some(reason) => Err(PushError::Spooled {
                id: self.outbox_entry.unwrap_or_default(),
                reason,
            }),
        }
    }
}

/// A Pushgateway client — or, built with
/// [`GatewayBuilder::remote_write`], a Prometheus remote-write client that
/// sends the same pushes as remote-write requests. Cheap to clone; clones
/// share one connection pool.
///
/// ```no_run
/// use pushguard::{Body, Gateway, GroupingKey, Method};
///
/// let gateway = Gateway::builder().url("http://127.0.0.1:9091").build()?;
/// let mut body = Body::new();
/// body.gauge("backup_size_bytes", "Size of the last backup.", 1.2e9)?;
/// gateway.push(&GroupingKey::new("backup")?, Method::Post, &body)?;
/// # Ok::<(), pushguard::PushError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

// A panic cannot leave the client half-updated: its only shared state is the
// connection pool, which hyper keeps consistent on its own.
impl std::panic::UnwindSafe for Gateway {}
impl std::panic::RefUnwindSafe for Gateway {}

#[derive(Debug)]
struct Inner {
    base: String,
    identity: String,
    client: reqwest::Client,
    headers: HeaderMap,
    attempt_timeout: Duration,
    deadline: Duration,
    retries: u32,
    backoff: Duration,
    in_doubt_window: Duration,
    /// Sends remote-write requests to `base` instead of pushes to groups.
    remote_write: bool,
    /// The newest series of each group written, for a refresh.
    #[cfg(feature = "remote-write")]
    latest: remote_write::Latest,
    worker: worker::Worker,
    /// Requests of this client in flight at once (see [`MAX_IN_FLIGHT`]).
    in_flight: tokio::sync::Semaphore,
    /// How long a request waits for its turn.
    turn_wait: Duration,
}

/// How many requests one gateway client has in flight at once. A burst of
/// runs ending together (a runner with a thousand jobs due each second) goes
/// out over this many kept-alive connections, in turn, rather than opening a
/// connection per run and queueing them all at the gateway. A request waits
/// for its turn within its own deadline.
pub(crate) const MAX_IN_FLIGHT: usize = 8;

enum Request<'a> {
    Push(Method, &'a str),
    Delete,
    /// A remote-write request: the compressed protobuf, POSTed to the base URL.
    #[cfg_attr(not(feature = "remote-write"), allow(dead_code))]
    Write(&'a [u8]),
}

impl Gateway {
    /// The gateway URL used when none is configured.
    pub const DEFAULT_URL: &str = "http://127.0.0.1:9091";

    /// A builder with the defaults listed on [`GatewayBuilder`].
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::new()
    }

    /// The gateway base URL, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.inner.base
    }

    /// The gateway's identity: the key the state file's outbox orders and
    /// leases pushes by, so that every spelling of one gateway's URL shares
    /// one queue and an older spooled push never lands after a newer one.
    ///
    /// It is the URL as the `url` crate parses it (scheme and host
    /// lowercased, IPv4 shorthand such as `127.1` expanded, percent-encoding
    /// normalised), then: the port always explicit (`:80`, `:443` when
    /// defaulted) and without leading zeros, no user name or password, no
    /// trailing slash, a trailing dot of a host name removed, and every
    /// loopback host (`localhost`, `127.0.0.0/8`, `::1`) written
    /// `127.0.0.1`. A path prefix is kept: two gateways behind one host
    /// under different prefixes are different gateways.
    ///
    /// ```
    /// let id = |url: &str| pushguard::Gateway::builder().url(url).build().unwrap().identity().to_owned();
    /// assert_eq!(id("HTTP://LocalHost:09091/"), "http://127.0.0.1:9091");
    /// assert_eq!(id("http://127.1:9091"), id("http://[::1]:9091"));
    /// assert_eq!(id("https://Push.Example.NET/gw/"), "https://push.example.net:443/gw");
    /// ```
    pub fn identity(&self) -> &str {
        &self.inner.identity
    }

    /// Whether this client writes to a Prometheus remote-write receiver
    /// ([`GatewayBuilder::remote_write`]) rather than pushing to a
    /// Pushgateway.
    pub fn is_remote_write(&self) -> bool {
        self.inner.remote_write
    }

    /// The overall deadline of one push, retries included.
    pub fn deadline(&self) -> Duration {
        self.inner.deadline
    }

    /// How late the gateway may still apply a request it never answered; see
    /// [`GatewayBuilder::in_doubt_window`].
    pub fn in_doubt_window(&self) -> Duration {
        self.inner.in_doubt_window
    }

    /// Pushes `body` to the group `key`, blocking until the gateway confirmed
    /// it or the deadline passed. Works inside and outside a tokio runtime.
    ///
    /// A remote-write client sends every sample of `body` as a series with
    /// `job` and the grouping labels, stamped with the current time; the
    /// method does not apply there (a receiver stores samples, not groups).
    pub fn push(
        &self,
        key: &GroupingKey,
        method: Method,
        body: &Body,
    ) -> Result<PushReport, PushError> {
        self.push_at(key, method, body, SystemTime::now())
    }

    /// [`push`](Self::push), remote-write samples stamped `at` (a run's end).
    pub(crate) fn push_at(
        &self,
        key: &GroupingKey,
        method: Method,
        body: &Body,
        at: SystemTime,
    ) -> Result<PushReport, PushError> {
        body.check_grouping(key)?;
        let this = self.clone();
        let path = key.path();
        let limit = self.inner.deadline;
        if self.inner.remote_write {
            let wire = self.write_request(key, body, at)?;
            return self.block(limit, async move {
                this.send(&path, Request::Write(&wire), limit).await
            });
        }
        let text = body.as_str().to_owned();
        self.block(limit, async move {
            this.send(&path, Request::Push(method, &text), limit).await
        })
    }

    /// The remote-write wire bytes of `body` in the group `key` at `at`.
    #[cfg(feature = "remote-write")]
    fn write_request(
        &self,
        key: &GroupingKey,
        body: &Body,
        at: SystemTime,
    ) -> Result<Vec<u8>, PushError> {
        remote_write::encode(key, body, at)
    }

    #[cfg(not(feature = "remote-write"))]
    fn write_request(
        &self,
        _key: &GroupingKey,
        _body: &Body,
        _at: SystemTime,
    ) -> Result<Vec<u8>, PushError> {
        Err(no_remote_write())
    }

    /// What the outbox stores for a push of `body` to `key` at `at`: the
    /// stored method and body (the text, or the remote-write request).
    #[cfg(feature = "state")]
    pub(crate) fn stored(
        &self,
        key: &GroupingKey,
        method: Method,
        body: &Body,
        at: SystemTime,
    ) -> Result<(Stored, String), PushError> {
        if !self.inner.remote_write {
            return Ok((Stored::Push(method), body.as_str().to_owned()));
        }
        let wire = self.write_request(key, body, at)?;
        #[cfg(feature = "remote-write")]
        return Ok((Stored::Write, remote_write::to_stored(&wire)));
        #[cfg(not(feature = "remote-write"))]
        {
            let _ = wire;
            Err(no_remote_write())
        }
    }

    /// Deletes the group `key` (every metric in it), blocking. A
    /// remote-write receiver has no groups to delete: an error.
    pub fn delete(&self, key: &GroupingKey) -> Result<PushReport, PushError> {
        self.refuse_delete()?;
        let this = self.clone();
        let path = key.path();
        let limit = self.inner.deadline;
        self.block(limit, async move {
            this.send(&path, Request::Delete, limit).await
        })
    }

    /// Sends one stored request (a push or the delete of `path`), blocking,
    /// with this client's retries, within `limit` (at most the client's
    /// deadline).
    #[cfg(feature = "state")]
    pub(crate) fn send_stored(
        &self,
        path: &str,
        stored: Stored,
        body: String,
        limit: Duration,
    ) -> Result<PushReport, PushError> {
        let limit = limit.min(self.inner.deadline);
        let this = self.clone();
        let path = path.to_owned();
        self.block(limit, async move {
            this.send_one_stored(&path, stored, &body, limit).await
        })
    }

    /// Sends stored requests of the group `path` (pushes or deletes) in
    /// order, all in one task on the worker: one kept-alive connection, and
    /// no hand-over between threads per request. Each goes with this
    /// client's retries within its deadline, or what is left before `until`.
    /// A send starts only before `start_before`; the sends stop after the
    /// first failure that may go away later (a refusal does not stop them).
    /// Returns the result of each request sent, in order: fewer than given
    /// when they stopped.
    #[cfg(feature = "state")]
    pub(crate) fn send_stored_all(
        &self,
        path: &str,
        requests: Vec<(Stored, String)>,
        start_before: Instant,
        until: Option<Instant>,
    ) -> Vec<Result<PushReport, PushError>> {
        let this = self.clone();
        let path = path.to_owned();
        let deadline = self.inner.deadline;
        // The last send may start just before `start_before`.
        let limit = start_before.saturating_duration_since(Instant::now()) + deadline;
        let sent = self.block(limit, async move {
            let mut results = Vec::with_capacity(requests.len());
            for (stored, body) in requests {
                let now = Instant::now();
                if now >= start_before || until.is_some_and(|t| now >= t) {
                    break;
                }
                let limit =
                    until.map_or(deadline, |t| t.saturating_duration_since(now).min(deadline));
                let result = this.send_one_stored(&path, stored, &body, limit).await;
                let stop = matches!(&result, Err(error) if error.is_retryable());
                results.push(result);
                if stop {
                    break;
                }
            }
            Ok(results)
        });
        // A stalled worker: nothing is known to be delivered.
        sent.unwrap_or_else(|error| vec![Err(error)])
    }

    /// Sends one stored request on the worker's runtime.
    #[cfg(feature = "state")]
    async fn send_one_stored(
        &self,
        path: &str,
        stored: Stored,
        body: &str,
        limit: Duration,
    ) -> Result<PushReport, PushError> {
        let request = match stored {
            Stored::Push(method) => Request::Push(method, body),
            Stored::Delete => Request::Delete,
            #[cfg(feature = "remote-write")]
            Stored::Write => {
                let wire = remote_write::from_stored(body)?;
                return self.send(path, Request::Write(&wire), limit).await;
            }
            #[cfg(not(feature = "remote-write"))]
            Stored::Write => return Err(no_remote_write()),
        };
        self.send(path, request, limit).await
    }

    /// Held by a run from its end stamp until its request is spooled, when
    /// this client writes to a remote-write receiver (see [`remote_write::Latest`]).
    #[cfg(feature = "remote-write")]
    pub(crate) fn run_ending(&self) -> Option<std::sync::RwLockReadGuard<'_, ()>> {
        self.inner
            .remote_write
            .then(|| self.inner.latest.run_ending())
    }

    /// The newest state of the groups this client wrote.
    #[cfg(all(feature = "remote-write", feature = "state"))]
    pub(crate) fn latest(&self) -> &remote_write::Latest {
        &self.inner.latest
    }

    /// Sends remote-write wire bytes for the group `path`, blocking.
    #[cfg(all(feature = "remote-write", feature = "state"))]
    pub(crate) fn send_wire(&self, path: &str, wire: Vec<u8>) -> Result<PushReport, PushError> {
        let this = self.clone();
        let path = path.to_owned();
        let limit = self.inner.deadline;
        self.block(limit, async move {
            this.send(&path, Request::Write(&wire), limit).await
        })
    }

    fn refuse_delete(&self) -> Result<(), PushError> {
        if self.inner.remote_write {
            return Err(PushError::config(format!(
                "{} is a remote-write receiver: it stores samples, not groups, so there is no group to delete",
                self.inner.base
            )));
        }
        Ok(())
    }

    /// Pushes `body` to the group `key` on the caller's runtime.
    #[cfg(feature = "async")]
    pub async fn push_async(
        &self,
        key: &GroupingKey,
        method: Method,
        body: &Body,
    ) -> Result<PushReport, PushError> {
        body.check_grouping(key)?;
        if self.inner.remote_write {
            let wire = self.write_request(key, body, SystemTime::now())?;
            return self
                .send(&key.path(), Request::Write(&wire), self.inner.deadline)
                .await;
        }
        self.send(
            &key.path(),
            Request::Push(method, body.as_str()),
            self.inner.deadline,
        )
        .await
    }

    /// Deletes the group `key` on the caller's runtime.
    #[cfg(feature = "async")]
    pub async fn delete_async(&self, key: &GroupingKey) -> Result<PushReport, PushError> {
        self.refuse_delete()?;
        self.send(&key.path(), Request::Delete, self.inner.deadline)
            .await
    }

    fn block<F, T>(&self, deadline: Duration, fut: F) -> Result<T, PushError>
    where
        F: std::future::Future<Output = Result<T, PushError>> + Send + 'static,
        T: Send + 'static,
    {
        // A little slack past the deadline: the request enforces the deadline
        // itself, this only guards against a stalled worker.
        let limit = deadline + Duration::from_millis(250);
        match self.inner.worker.run(fut, limit) {
            Some(result) => result,
            None => Err(PushError::Timeout {
                url: self.inner.base.clone(),
                deadline,
                attempts: 0,
            }),
        }
    }

    async fn send(
        &self,
        path: &str,
        request: Request<'_>,
        limit: Duration,
    ) -> Result<PushReport, PushError> {
        let inner = &self.inner;
        // A remote-write request goes to the receiver's URL itself.
        let url = match request {
            Request::Write(_) => inner.base.clone(),
            _ => format!("{}{}", inner.base, path),
        };
        let started = Instant::now();
        let deadline = started + limit;
        let mut attempts = 0u32;
        let mut backoff = inner.backoff;
        loop {
            attempts += 1;
            let now = Instant::now();
            let Some(remaining) = deadline
                .checked_duration_since(now)
                .filter(|d| !d.is_zero())
            else {
                return Err(timeout(limit, &url, attempts - 1));
            };
            let (method, builder) = match &request {
                Request::Push(method, text) => (
                    method.http(),
                    inner
                        .client
                        .request(method.http(), &url)
                        .header(reqwest::header::CONTENT_TYPE, TEXT_CONTENT_TYPE)
                        .body(text.to_string()),
                ),
                Request::Delete => (reqwest::Method::DELETE, inner.client.delete(&url)),
                Request::Write(wire) => (reqwest::Method::POST, write(&inner.client, &url, wire)),
            };
            let Ok(Ok(turn)) =
                tokio::time::timeout(remaining.min(inner.turn_wait), inner.in_flight.acquire())
                    .await
            else {
                return Err(timeout(limit, &url, attempts - 1));
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let builder = builder
                .headers(inner.headers.clone())
                .timeout(inner.attempt_timeout.min(remaining));
            let outcome = match builder.send().await {
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        #[cfg(feature = "remote-write")]
                        if let Request::Write(wire) = request {
                            inner.latest.remember(path, wire);
                        }
                        return Ok(PushReport {
                            url,
                            status: status.as_u16(),
                            attempts,
                            elapsed: started.elapsed(),
                            replayed: 0,
                            state_warning: None,
                            tracing_warning: None,
                            spooled: None,
                            outbox_entry: None,
                        });
                    }
                    let text = response.text().await.unwrap_or_default();
                    Err(PushError::Rejected {
                        method: match request {
                            Request::Write(_) => "WRITE",
                            _ => method_name(&method),
                        },
                        url: url.clone(),
                        status: status.as_u16(),
                        body: text.trim().to_owned(),
                    })
                }
                Err(e) if e.is_timeout() => Err(timeout(limit, &url, attempts)),
                Err(e) => Err(PushError::Transport {
                    url: url.clone(),
                    attempts,
                    source: e.without_url(),
                }),
            };
            // Not held over the backoff: another request takes the turn.
            drop(turn);
            let error = match outcome {
                Ok(report) => return Ok(report),
                Err(error) => error,
            };
            // A certificate problem will not go away within this push:
            // report it after one attempt (it is still spooled, not final).
            if !error.is_retryable() || attempts > inner.retries || is_certificate_failure(&error) {
                return Err(error);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left <= backoff {
                return Err(error);
            }
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
        }
    }
}

/// A remote-write POST of `wire` to `url` with the protocol's headers.
fn write(client: &reqwest::Client, url: &str, wire: &[u8]) -> reqwest::RequestBuilder {
    #[cfg(feature = "remote-write")]
    let builder = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, remote_write::CONTENT_TYPE)
        .header(
            reqwest::header::CONTENT_ENCODING,
            remote_write::CONTENT_ENCODING,
        )
        .header(remote_write::VERSION_HEADER, remote_write::VERSION)
        .body(wire.to_vec());
    #[cfg(not(feature = "remote-write"))]
    let builder = client.post(url).body(wire.to_vec());
    builder
}

/// The error of a remote-write request in a build without the feature.
#[cfg(not(feature = "remote-write"))]
fn no_remote_write() -> PushError {
    PushError::config(
        "this pushguard was built without remote-write support (the `remote-write` feature)",
    )
}

/// The identity of the gateway at `url`; see [`Gateway::identity`].
// One definition for the outbox key, the lease key and the migration that
// rewrote keys stored before it: scheme, loopback-folded host, explicit port
// and path without a trailing slash; credentials, query and fragment dropped.
pub(crate) fn identity(url: &reqwest::Url) -> String {
    use std::net::{Ipv4Addr, Ipv6Addr};
    const LOOPBACK: &str = "127.0.0.1";
    // The parser has already lowercased the host and written any IPv4
    // address (`127.1`, `0x7f.1`) as a dotted quad, IPv6 in brackets.
    let raw = url.host_str().unwrap_or_default();
    let host = if let Some(v6) = raw.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        match v6.parse::<Ipv6Addr>() {
            Ok(ip)
                if ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()) =>
            {
                LOOPBACK.to_owned()
            }
            _ => raw.to_owned(),
        }
    } else if let Ok(ip) = raw.parse::<Ipv4Addr>() {
        if ip.is_loopback() {
            LOOPBACK.to_owned()
        } else {
            ip.to_string()
        }
    } else {
        let name = raw.trim_end_matches('.').to_ascii_lowercase();
        if name == "localhost" || name.ends_with(".localhost") {
            LOOPBACK.to_owned()
        } else {
            name
        }
    };
    let port = url
        .port_or_known_default()
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    let path = url.path().trim_end_matches('/');
    format!("{}://{host}{port}{path}", url.scheme())
}

/// [`identity`] of a URL given as text; the text itself when it does not parse.
#[cfg(feature = "state")]
pub(crate) fn identity_of(url: &str) -> String {
    reqwest::Url::parse(url.trim()).map_or_else(|_| url.to_owned(), |parsed| identity(&parsed))
}

/// Whether `error` is a TLS handshake that failed over a certificate: the
/// gateway's is not trusted (wrong CA, wrong name, expired), or the gateway
/// refused or required ours. Retrying at once cannot fix either.
pub(crate) fn is_certificate_failure(error: &PushError) -> bool {
    let PushError::Transport { source, .. } = error else {
        return false;
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source);
    while let Some(error) = cause {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return certificate_problem(tls);
        }
        // An `io::Error` shows what it wraps only through `get_ref`: its
        // `source` skips a level (and the TLS error comes wrapped twice).
        cause = match error.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    false
}

fn certificate_problem(error: &rustls::Error) -> bool {
    use rustls::AlertDescription as A;
    match error {
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => true,
        rustls::Error::AlertReceived(alert) => matches!(
            alert,
            A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::CertificateRequired
        ),
        _ => false,
    }
}

fn timeout(deadline: Duration, url: &str, attempts: u32) -> PushError {
    PushError::Timeout {
        url: url.to_owned(),
        deadline,
        attempts,
    }
}

fn method_name(method: &reqwest::Method) -> &'static str {
    match *method {
        reqwest::Method::PUT => "PUT",
        reqwest::Method::POST => "POST",
        reqwest::Method::DELETE => "DELETE",
        _ => "request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(url: &str) -> String {
        identity(&reqwest::Url::parse(url).unwrap())
    }

    #[test]
    fn every_loopback_spelling_is_one_identity() {
        for url in [
            "http://127.0.0.1:9091",
            "http://127.0.0.2:9091/",
            "http://localhost:9091",
            "http://LOCALHOST.:9091",
            "http://push.localhost:9091",
            "http://[::1]:9091",
            "http://[::ffff:127.0.0.1]:9091",
            "http://user:secret@127.0.0.1:9091?x=1#f",
        ] {
            assert_eq!(id(url), "http://127.0.0.1:9091", "{url}");
        }
    }

    #[test]
    fn other_hosts_keep_their_name() {
        assert_eq!(id("http://10.0.0.1:9091"), "http://10.0.0.1:9091");
        assert_eq!(id("http://[2001:db8::1]:9091"), "http://[2001:db8::1]:9091");
        assert_eq!(
            id("http://[::ffff:10.0.0.1]:9091"),
            "http://[::ffff:a00:1]:9091"
        );
        assert_eq!(
            id("https://Gw.Example.Net./p/"),
            "https://gw.example.net:443/p"
        );
        assert_eq!(id("http://notlocalhost:80"), "http://notlocalhost:80");
        assert_eq!(
            id("http://localhost.example:80"),
            "http://localhost.example:80"
        );
    }

    #[cfg(feature = "state")]
    #[test]
    fn identity_of_text() {
        assert_eq!(
            identity_of(" http://localhost:9091/ "),
            "http://127.0.0.1:9091"
        );
        assert_eq!(identity_of("not a url"), "not a url");
    }

    #[test]
    fn method_names() {
        assert_eq!(
            (Method::Post.as_str(), Method::Put.as_str()),
            ("POST", "PUT")
        );
        assert_eq!(Method::Post.http(), reqwest::Method::POST);
        assert_eq!(Method::Put.http(), reqwest::Method::PUT);
        assert_eq!(Method::default(), Method::Post);
        assert_eq!(method_name(&reqwest::Method::PUT), "PUT");
        assert_eq!(method_name(&reqwest::Method::POST), "POST");
        assert_eq!(method_name(&reqwest::Method::DELETE), "DELETE");
        assert_eq!(method_name(&reqwest::Method::GET), "request");
    }

    #[test]
    fn reports_say_whether_they_were_delivered() {
        let report = PushReport {
            url: "http://127.0.0.1:9091/metrics/job/j".into(),
            status: 0,
            attempts: 0,
            replayed: 0,
            state_warning: None,
            tracing_warning: None,
            elapsed: Duration::ZERO,
            spooled: Some("gateway down".into()),
            outbox_entry: Some(7),
        };
        assert!(!report.is_delivered());
        match report.clone().into_delivered() {
            Err(PushError::Spooled { id, reason }) => {
                assert_eq!((id, reason.as_str()), (7, "gateway down"));
            }
            other => panic!("{other:?}"),
        }
        let delivered = PushReport {
            spooled: None,
            outbox_entry: None,
            status: 200,
            ..report
        };
        assert!(delivered.is_delivered());
        assert_eq!(delivered.clone().into_delivered().unwrap(), delivered);
    }

    #[test]
    fn a_gateway_tells_its_url_identity_and_deadline() {
        let gateway = Gateway::builder()
            .url("http://LocalHost:9091/")
            .deadline(Duration::from_secs(3))
            .build()
            .unwrap();
        assert_eq!(gateway.url(), "http://LocalHost:9091");
        assert_eq!(gateway.identity(), "http://127.0.0.1:9091");
        assert_eq!(gateway.deadline(), Duration::from_secs(3));
    }
}
