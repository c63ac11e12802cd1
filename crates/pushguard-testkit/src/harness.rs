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
    pub url: String,
}

impl Pushgateway {
    pub fn start() -> Self {
        require(PUSHGATEWAY, "prometheus-pushgateway");
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(PUSHGATEWAY)
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--persistence.file=")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start prometheus-pushgateway");
            let url = format!("http://127.0.0.1:{port}");
            let ready_url = format!("{url}/-/ready");
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut pause = Duration::from_millis(2);
            loop {
                if get(&ready_url).is_ok() {
                    return Pushgateway { child, port, url };
                }
                if child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                    // Lost the port race or failed: try another port.
                    let _ = child.kill();
                    let _ = child.wait();
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
        let text = get(&format!("{}/api/v1/metrics", self.url)).expect("read /api/v1/metrics");
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
        get(&format!("{}/metrics", self.url)).expect("read /metrics")
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
/// read.
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
}

impl SwitchShared {
    fn mode(&self) -> ProxyMode {
        self.mode.lock().unwrap_or_else(|p| p.into_inner()).clone()
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
    shared.requests.fetch_add(1, Ordering::SeqCst);
    match shared.mode() {
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
