//! Real servers for the tests, each on a free loopback port, killed on drop.
//!
//! Readiness is polled with a deadline, never waited for with a fixed sleep.

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const PUSHGATEWAY: &str = "/usr/bin/prometheus-pushgateway";

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// Polls `ready` every few milliseconds until it holds or `limit` passes.
pub fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(2);
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} not ready within {limit:?}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

fn require(binary: &str, package: &str) {
    assert!(
        Path::new(binary).exists(),
        "{binary} is missing: install the Debian package `{package}` (scripts/test does this)"
    );
}

/// A real Prometheus Pushgateway.
pub struct Pushgateway {
    child: Child,
    pub port: u16,
    /// `http://127.0.0.1:PORT`, or `https://…` with a TLS web config.
    pub url: String,
    /// How the harness itself reads the gateway back.
    access: Access,
    /// Holds the web config file, when there is one.
    _web_dir: Option<tempfile::TempDir>,
}

/// How the harness reaches a gateway started with a web config: the CA it
/// trusts (the gateway speaks https when set), the client certificate it
/// presents and the basic-auth credentials it sends, each as needed.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// PEM CA certificate(s) to trust; `Some` means https.
    pub ca_pem: Option<String>,
    /// PEM client certificate and PEM private key.
    pub client: Option<(String, String)>,
    /// User name and password.
    pub basic: Option<(String, String)>,
}

impl Access {
    /// `self` with basic-auth credentials.
    pub fn with_basic(mut self, user: &str, password: &str) -> Self {
        self.basic = Some((user.to_owned(), password.to_owned()));
        self
    }

    fn is_plain(&self) -> bool {
        self.ca_pem.is_none() && self.client.is_none() && self.basic.is_none()
    }
}

impl Pushgateway {
    pub fn start() -> Self {
        Self::spawn(None, Access::default())
    }

    /// A gateway started with `--web.config.file` holding `yaml` (the
    /// exporter-toolkit web config: `tls_server_config`, `basic_auth_users`);
    /// `access` says how the harness reaches it (see [`crate::tls::Pki`] for
    /// certificates and [`crate::tls::basic_auth_users`] for users).
    ///
    /// Ready once `GET /-/ready` over `access` gets any HTTP answer: over
    /// https that also proves the listener is this gateway (it presented the
    /// test certificate), not another process that won the port.
    pub fn start_with_web_config(yaml: &str, access: Access) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for the web config");
        let path = dir.path().join("web-config.yml");
        std::fs::write(&path, yaml).expect("write the web config");
        let mut gw = Self::spawn(Some(&path), access);
        gw._web_dir = Some(dir);
        gw
    }

    fn spawn(web_config: Option<&Path>, access: Access) -> Self {
        require(PUSHGATEWAY, "prometheus-pushgateway");
        let scheme = if access.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        for _ in 0..5 {
            let port = free_port();
            let mut command = Command::new(PUSHGATEWAY);
            command
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--persistence.file=");
            if let Some(path) = web_config {
                command.arg(format!("--web.config.file={}", path.display()));
            }
            let child = command
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start prometheus-pushgateway");
            let mut gw = Pushgateway {
                child,
                port,
                url: format!("{scheme}://127.0.0.1:{port}"),
                access: access.clone(),
                _web_dir: None,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut pause = Duration::from_millis(2);
            loop {
                let ready = if gw.access.is_plain() {
                    get(&format!("{}/-/ready", gw.url)).is_ok()
                } else {
                    gw.fetch("/-/ready").is_ok()
                };
                if ready {
                    return gw;
                }
                if gw.child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                    // Lost the port race or failed: try another port (the
                    // drop kills this one).
                    break;
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
        }
        panic!("prometheus-pushgateway did not become ready");
    }

    /// Every group the gateway holds, from `/api/v1/metrics`.
    pub fn groups(&self) -> Vec<Group> {
        let text = self.read("/api/v1/metrics");
        let json: Value = serde_json::from_str(&text).expect("gateway JSON");
        json["data"]
            .as_array()
            .expect("data array")
            .iter()
            .map(|g| Group(g.clone()))
            .collect()
    }

    /// The group whose labels are exactly `job` + `labels` (the gateway also
    /// reports `instance=""` on groups pushed without one; that is ignored).
    pub fn group(&self, job: &str, labels: &[(&str, &str)]) -> Option<Group> {
        self.groups().into_iter().find(|g| {
            let got = g.labels();
            let mut want: Vec<(String, String)> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            want.push(("job".into(), job.into()));
            want.sort();
            got == want
        })
    }

    /// The `/metrics` page.
    pub fn metrics_text(&self) -> String {
        self.read("/metrics")
    }

    /// The body of a successful `GET path`, through the gateway's [`Access`].
    pub fn read(&self, path: &str) -> String {
        if self.access.is_plain() {
            return get(&format!("{}{path}", self.url))
                .unwrap_or_else(|e| panic!("read {path} from the gateway: {e}"));
        }
        match self.fetch(path) {
            Ok((200..=299, body)) => body,
            Ok((status, body)) => panic!("read {path} from the gateway: {status}: {body}"),
            Err(e) => panic!("read {path} from the gateway: {e}"),
        }
    }

    /// `GET path` through the gateway's [`Access`] (its CA, client
    /// certificate and credentials): the status and body of any answer.
    pub fn fetch(&self, path: &str) -> Result<(u16, String), String> {
        access_get(&self.access, self.port, path)
    }

    /// Stops the gateway (for "gateway down" tests) and returns its port.
    pub fn stop(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One group of `/api/v1/metrics`.
#[derive(Debug, Clone)]
pub struct Group(pub Value);

impl Group {
    /// The grouping labels, sorted, without an empty `instance`.
    pub fn labels(&self) -> Vec<(String, String)> {
        let mut labels: Vec<(String, String)> = self.0["labels"]
            .as_object()
            .expect("labels")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .filter(|(k, v)| !(k == "instance" && v.is_empty()))
            .collect();
        labels.sort();
        labels
    }

    pub fn has(&self, family: &str) -> bool {
        self.0.get(family).is_some()
    }

    pub fn family_type(&self, family: &str) -> Option<String> {
        self.0.get(family)?.get("type")?.as_str().map(str::to_owned)
    }

    /// The value of the sample of `family` whose labels include `labels`
    /// (beyond the grouping labels).
    pub fn value(&self, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let metrics = self.0.get(family)?.get("metrics")?.as_array()?;
        metrics
            .iter()
            .find(|m| {
                labels
                    .iter()
                    .all(|(k, v)| m["labels"][*k].as_str() == Some(*v))
            })
            .and_then(|m| m["value"].as_str())
            .and_then(|v| v.parse().ok())
    }

    pub fn families(&self) -> Vec<String> {
        self.0
            .as_object()
            .map(|o| {
                o.keys()
                    .filter(|k| !matches!(k.as_str(), "labels" | "last_push_successful"))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `GET path` from 127.0.0.1:`port` over HTTP/1.0 (so the answer is never
/// chunked and ends with the connection), through `access`: TLS when it
/// names a CA, with its client certificate and basic-auth credentials.
pub fn access_get(access: &Access, port: u16, path: &str) -> Result<(u16, String), String> {
    use base64::Engine as _;
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n");
    if let Some((user, password)) = &access.basic {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    let timeout = Some(Duration::from_secs(5));
    tcp.set_read_timeout(timeout).map_err(|e| e.to_string())?;
    tcp.set_write_timeout(timeout).map_err(|e| e.to_string())?;
    let answer = match &access.ca_pem {
        None => exchange(tcp, request.as_bytes()),
        Some(ca) => {
            let tls = rustls::ClientConnection::new(tls_config(ca, access.client.as_ref())?, {
                rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())
            })
            .map_err(|e| format!("TLS client: {e}"))?;
            exchange(rustls::StreamOwned::new(tls, tcp), request.as_bytes())
        }
    }
    .map_err(|e| format!("GET {path}: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: no complete HTTP answer: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET {path}: no status line: {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// Sends `request` and reads the answer until the server closes. A TLS
/// server that closes without `close_notify` still delivered its answer.
fn exchange(
    mut stream: impl std::io::Read + std::io::Write,
    request: &[u8],
) -> std::io::Result<Vec<u8>> {
    stream.write_all(request)?;
    stream.flush()?;
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => Ok(answer),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => Ok(answer),
        Err(e) => Err(e),
    }
}

/// A rustls client config trusting only `ca_pem`, presenting `client` (PEM
/// certificate, PEM key) when given.
fn tls_config(
    ca_pem: &str,
    client: Option<&(String, String)>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| format!("CA PEM: {e}"))?)
            .map_err(|e| format!("CA certificate: {e}"))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("client certificate PEM: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|e| format!("client key PEM: {e}"))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
    };
    Ok(Arc::new(config))
}

/// A plain HTTP GET; errors on non-2xx answers.
pub fn get(url: &str) -> Result<String, ureq::Error> {
    ureq::get(url)
        .config()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .call()?
        .body_mut()
        .read_to_string()
}

/// A listener that accepts TCP connections and never answers: a hung gateway.
pub struct Hang {
    pub url: String,
    _listener: Listener,
}

impl Hang {
    pub fn start() -> Self {
        let held = Mutex::new(Vec::new());
        let listener = Listener::start(move |stream| {
            held.lock().unwrap_or_else(|p| p.into_inner()).push(stream);
        });
        Hang {
            url: listener.url.clone(),
            _listener: listener,
        }
    }
}

/// Accepts connections on a free loopback port and hands each to `serve` on
/// its own thread, until dropped.
pub struct Listener {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    stop: Arc<AtomicBool>,
}

impl Listener {
    pub fn start(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let stop = Arc::new(AtomicBool::new(false));
        let (serve, stopped) = (Arc::new(serve), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let serve = serve.clone();
                std::thread::spawn(move || serve(stream));
            }
        });
        Listener { url, stop }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        if let Some(addr) = self.url.strip_prefix("http://") {
            let _ = TcpStream::connect(addr);
        }
    }
}

/// One HTTP/1.1 request, as a stand-in server reads it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The request line and header lines as received, without line ends.
    pub lines: Vec<String>,
    /// Header names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sends the request to the server on `port` (with `Connection: close`)
    /// and returns its whole answer.
    pub fn forward(&self, port: u16) -> std::io::Result<Vec<u8>> {
        let mut up = TcpStream::connect(("127.0.0.1", port))?;
        for line in &self.lines {
            if !line.to_ascii_lowercase().starts_with("connection:") {
                up.write_all(line.as_bytes())?;
                up.write_all(b"\r\n")?;
            }
        }
        up.write_all(b"Connection: close\r\n\r\n")?;
        up.write_all(&self.body)?;
        let mut answer = Vec::new();
        up.read_to_end(&mut answer)?;
        Ok(answer)
    }
}

/// Reads one request off `reader`; `None` when the connection ends first.
pub fn read_request(reader: &mut impl BufRead) -> std::io::Result<Option<Request>> {
    let mut lines = Vec::new();
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            break;
        }
        if !lines.is_empty()
            && let Some((k, v)) = line.split_once(':')
        {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
            if k == "content-length" {
                length = v.parse().unwrap_or(0);
            }
            headers.push((k, v));
        }
        lines.push(line);
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let mut parts = lines
        .first()
        .map(String::as_str)
        .unwrap_or_default()
        .split_whitespace();
    Ok(Some(Request {
        method: parts.next().unwrap_or_default().to_owned(),
        path: parts.next().unwrap_or_default().to_owned(),
        lines,
        headers,
        body,
    }))
}

/// Reads one request from `stream`.
pub fn read_request_from(stream: &TcpStream) -> std::io::Result<Option<Request>> {
    read_request(&mut BufReader::new(stream.try_clone()?))
}

/// Answers with `status`, `extra` header lines (each ending in CRLF) and
/// `body`, then closes the connection.
pub fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    extra: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Both);
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// A proxy in front of a real gateway that answers the first `failures`
/// requests itself with `status` and forwards the rest.
pub struct FlakyProxy {
    pub url: String,
    pub requests: Arc<AtomicUsize>,
    _listener: Listener,
}

impl FlakyProxy {
    pub fn start(upstream_port: u16, failures: usize, status: u16, body: &'static str) -> Self {
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let listener = Listener::start(move |mut stream| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let Ok(Some(request)) = read_request_from(&stream) else {
                return;
            };
            let _ = if n < failures {
                respond(&mut stream, status, "text/plain", "", body.as_bytes())
            } else {
                request
                    .forward(upstream_port)
                    .and_then(|answer| stream.write_all(&answer))
            };
        });
        FlakyProxy {
            url: listener.url.clone(),
            requests,
            _listener: listener,
        }
    }
}

/// A `pushguard` command (the binary at `bin`) with a clean environment: no
/// inherited gateway, credentials, TLS files, tracing endpoint or state path;
/// its own temp dir as working directory and state location.
pub fn pushguard_command(bin: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.current_dir(dir).stdin(Stdio::null());
    for var in [
        "PUSHGATEWAY_URL",
        "PUSHGATEWAY_USERNAME",
        "PUSHGATEWAY_PASSWORD",
        "PUSHGATEWAY_BEARER_TOKEN",
        "PUSHGATEWAY_USERNAME_FILE",
        "PUSHGATEWAY_PASSWORD_FILE",
        "PUSHGATEWAY_BEARER_TOKEN_FILE",
        "PUSHGATEWAY_CA_FILE",
        "PUSHGATEWAY_CERT_FILE",
        "PUSHGATEWAY_KEY_FILE",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("PUSHGUARD_STATE", dir.join("pushguard-state.sqlite"))
        .env("XDG_STATE_HOME", dir.join("xdg-state"));
    cmd
}

/// What a [`SwitchProxy`] does with the requests it receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyMode {
    /// Closes every connection at once, unread: a gateway that is down.
    Down,
    /// Answers every request with this status and body.
    Answer(u16, &'static str),
    /// Reads the request and never answers; the connection is closed when the
    /// mode changes or the proxy is dropped.
    Hang,
    /// Forwards every request to the gateway on this loopback port.
    Forward(u16),
    /// Reads each request and holds it, unanswered, until
    /// [`SwitchProxy::release_held`]; then forwards it to the gateway on this
    /// port — after its client gave up: a gateway that applies a request
    /// late.
    Hold(u16),
}

/// A stable gateway URL whose behaviour a test switches at runtime: down,
/// answering an error, hanging, or forwarding to a real gateway (which may be
/// replaced by a restarted one). One request per connection; the mode is read
/// when a connection arrives (for `Down`) and again when its request has been
/// read. Modes queued with [`SwitchProxy::queue`] go first, one per request
/// read, in order. Every request read is kept ([`SwitchProxy::seen`]).
pub struct SwitchProxy {
    pub url: String,
    shared: Arc<SwitchShared>,
    _listener: Listener,
}

struct SwitchShared {
    mode: std::sync::Mutex<ProxyMode>,
    changed: std::sync::Condvar,
    stop: AtomicBool,
    requests: AtomicUsize,
    /// Bumped by `release_held`: held requests go on.
    released: std::sync::Mutex<u64>,
    forwarded_late: AtomicUsize,
    /// Modes for the next requests read, before the standing one.
    queued: std::sync::Mutex<std::collections::VecDeque<ProxyMode>>,
    seen: std::sync::Mutex<Vec<Seen>>,
}

/// A request a [`SwitchProxy`] read.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

impl Seen {
    /// The value of the sample `name` (without labels) in the body.
    pub fn sample(&self, name: &str) -> Option<f64> {
        String::from_utf8_lossy(&self.body)
            .lines()
            .find_map(|line| {
                let (metric, value) = line.split_once(' ')?;
                (metric == name).then(|| value.trim().parse().ok())?
            })
    }
}

impl SwitchShared {
    fn mode(&self) -> ProxyMode {
        self.mode.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The mode for a request just read: the next queued one, else the
    /// standing one.
    fn mode_for_request(&self) -> ProxyMode {
        let queued = self
            .queued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front();
        queued.unwrap_or_else(|| self.mode())
    }
}

impl SwitchProxy {
    pub fn start(mode: ProxyMode) -> Self {
        let shared = Arc::new(SwitchShared {
            mode: std::sync::Mutex::new(mode),
            changed: std::sync::Condvar::new(),
            stop: AtomicBool::new(false),
            requests: AtomicUsize::new(0),
            released: std::sync::Mutex::new(0),
            forwarded_late: AtomicUsize::new(0),
            queued: std::sync::Mutex::new(Default::default()),
            seen: std::sync::Mutex::new(Vec::new()),
        });
        let serving = shared.clone();
        let listener = Listener::start(move |stream| {
            let _ = switch_one(stream, &serving);
        });
        SwitchProxy {
            url: listener.url.clone(),
            shared,
            _listener: listener,
        }
    }

    /// Changes what the proxy does from the next request on; hanging
    /// connections are closed.
    pub fn set(&self, mode: ProxyMode) {
        *self.shared.mode.lock().unwrap_or_else(|p| p.into_inner()) = mode;
        self.shared.changed.notify_all();
    }

    /// Lets every request held by [`ProxyMode::Hold`] go on to the gateway.
    pub fn release_held(&self) {
        *self
            .shared
            .released
            .lock()
            .unwrap_or_else(|p| p.into_inner()) += 1;
        self.shared.changed.notify_all();
    }

    /// Held requests forwarded so far (answered by the gateway).
    pub fn forwarded_late(&self) -> usize {
        self.shared.forwarded_late.load(Ordering::SeqCst)
    }

    /// Requests read so far, in any mode but `Down`.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Handles the next requests read with `modes`, one each in order
    /// (`Answer` or `Forward`), before the standing mode: a gateway that
    /// fails in the middle of a run of pushes.
    pub fn queue(&self, modes: impl IntoIterator<Item = ProxyMode>) {
        self.shared
            .queued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(modes);
    }

    /// Every request read so far, in the order read.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for SwitchProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
    }
}

fn switch_one(mut stream: TcpStream, shared: &SwitchShared) -> std::io::Result<()> {
    if shared.stop.load(Ordering::SeqCst) || shared.mode() == ProxyMode::Down {
        let _ = stream.shutdown(Shutdown::Both);
        return Ok(());
    }
    let Some(request) = read_request_from(&stream)? else {
        return Ok(());
    };
    // Recorded and counted under one lock, so that `seen` lists requests
    // in the order their modes were handed out.
    let mode = {
        let mut seen = shared.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.push(Seen {
            method: request.method.clone(),
            path: request.path.clone(),
            body: request.body.clone(),
        });
        shared.requests.fetch_add(1, Ordering::SeqCst);
        shared.mode_for_request()
    };
    match mode {
        ProxyMode::Down => {}
        ProxyMode::Answer(status, body) => {
            return respond(&mut stream, status, "text/plain", "", body.as_bytes());
        }
        ProxyMode::Hang => {
            let mut mode = shared.mode.lock().unwrap_or_else(|p| p.into_inner());
            while *mode == ProxyMode::Hang && !shared.stop.load(Ordering::SeqCst) {
                mode = shared.changed.wait(mode).unwrap_or_else(|p| p.into_inner());
            }
        }
        ProxyMode::Forward(port) => stream.write_all(&request.forward(port)?)?,
        ProxyMode::Hold(port) => {
            let mut released = shared.released.lock().unwrap_or_else(|p| p.into_inner());
            let start = *released;
            while *released == start && !shared.stop.load(Ordering::SeqCst) {
                released = shared
                    .changed
                    .wait(released)
                    .unwrap_or_else(|p| p.into_inner());
            }
            drop(released);
            if shared.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            // The client is long gone; the gateway still applies it.
            let answer = request.forward(port)?;
            shared.forwarded_late.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(&answer);
        }
    }
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Both);
    Ok(())
}
