//! Local receivers: Slack/Discord webhook stand-ins, an SMTP server (aiosmtpd) and a CalDAV server (radicale).
//!
//! Each starts on a free loopback port, is polled for readiness with a
//! deadline, and is killed (or stopped) on drop.
//!
//! - [`Webhook`]: a small HTTP/1.1 server that records every request
//!   (method, path, headers, body) and answers from a queue the test fills
//!   (an error status, a 429 with `Retry-After` and Discord's JSON
//!   `retry_after`), then with its standing answer.
//! - [`Smtp`]: aiosmtpd from the test venv with a handler that writes each
//!   message it accepts to a JSON file (envelope, decoded headers and body,
//!   the raw `Subject:` line); a flag file makes it refuse messages.
//! - [`Radicale`]: the Debian radicale server with its storage in a temp
//!   dir, read back over HTTP or straight from the storage folder.

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Listener, Request, free_port, read_request_from, respond};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the webhook receiver answers to one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// This status with this body.
    Status(u16, &'static str),
    /// 429 with an optional `Retry-After: <seconds>` header and an optional
    /// JSON body with `retry_after` (Discord's shape), given here in seconds
    /// and written as Discord's API writes it on the path called: in
    /// milliseconds (an integer) on the unversioned default API
    /// (`/api/webhooks/…`) and versions before 8, in fractional seconds on
    /// `/api/v8/` and later (and on any other path).
    TooMany {
        header: Option<u64>,
        retry_after: Option<f64>,
    },
    /// This status with Discord's empty-bucket headers:
    /// `X-RateLimit-Remaining: 0`, `X-RateLimit-Reset-After: <seconds>`.
    Exhausted { status: u16, reset_after: f64 },
}

/// Whether Discord's API on `path` writes `retry_after` in milliseconds:
/// unversioned (`/api/webhooks/…`, the deprecated default v6) and v6, v7.
pub fn discord_millis(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/api/") else {
        return false;
    };
    rest.starts_with("webhooks/")
        || rest
            .strip_prefix('v')
            .and_then(|r| r.split('/').next())
            .and_then(|v| v.parse::<u32>().ok())
            .is_some_and(|v| v < 8)
}

/// One request the webhook receiver read, and when.
#[derive(Debug, Clone)]
pub struct Hit {
    pub request: Request,
    pub at: Instant,
}

impl std::ops::Deref for Hit {
    type Target = Request;

    fn deref(&self) -> &Request {
        &self.request
    }
}

impl Hit {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.request.body).unwrap_or(Value::Null)
    }
}

struct WebhookShared {
    queue: Mutex<VecDeque<Answer>>,
    standing: Mutex<Answer>,
    hits: Mutex<Vec<Hit>>,
}

/// A Slack/Discord incoming-webhook stand-in.
pub struct Webhook {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    shared: Arc<WebhookShared>,
    _listener: Listener,
}

impl Webhook {
    /// Starts a receiver answering `standing` once its queue is empty
    /// (Slack answers `200 ok`, Discord `204`).
    pub fn start(standing: Answer) -> Webhook {
        let shared = Arc::new(WebhookShared {
            queue: Mutex::new(VecDeque::new()),
            standing: Mutex::new(standing),
            hits: Mutex::new(Vec::new()),
        });
        let serving = shared.clone();
        let listener = Listener::start(move |stream| {
            let _ = serve(stream, &serving);
        });
        Webhook {
            base: listener.url.clone(),
            shared,
            _listener: listener,
        }
    }

    /// The URL of `path` on this receiver (`/services/T0/B0/secret`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Answers the next requests with `answers`, in order.
    pub fn queue(&self, answers: impl IntoIterator<Item = Answer>) {
        lock(&self.shared.queue).extend(answers);
    }

    /// Changes the answer given once the queue is empty.
    pub fn set_standing(&self, answer: Answer) {
        *lock(&self.shared.standing) = answer;
    }

    /// Every request read so far, in order.
    pub fn hits(&self) -> Vec<Hit> {
        lock(&self.shared.hits).clone()
    }
}

fn serve(mut stream: TcpStream, shared: &WebhookShared) -> std::io::Result<()> {
    let Some(request) = read_request_from(&stream)? else {
        return Ok(());
    };
    let millis = discord_millis(&request.path);
    lock(&shared.hits).push(Hit {
        request,
        at: Instant::now(),
    });
    let answer = lock(&shared.queue)
        .pop_front()
        .unwrap_or_else(|| lock(&shared.standing).clone());
    let (status, extra, body) = match answer {
        Answer::Status(status, body) => (status, String::new(), body.to_owned()),
        Answer::TooMany {
            header,
            retry_after,
        } => {
            let extra = header
                .map(|s| format!("Retry-After: {s}\r\n"))
                .unwrap_or_default();
            let body = retry_after
                .map(|s| {
                    let value = if millis {
                        format!("{}", (s * 1000.0).round() as u64)
                    } else {
                        format!("{s:?}")
                    };
                    format!(r#"{{"message": "You are being rate limited.", "retry_after": {value}, "global": false}}"#)
                })
                .unwrap_or_default();
            (429, extra, body)
        }
        Answer::Exhausted {
            status,
            reset_after,
        } => (
            status,
            format!("X-RateLimit-Remaining: 0\r\nX-RateLimit-Reset-After: {reset_after:?}\r\n"),
            String::new(),
        ),
    };
    let content_type = if body.starts_with('{') {
        "application/json"
    } else {
        "text/plain"
    };
    respond(&mut stream, status, content_type, &extra, body.as_bytes())
}

/// The test venv's python (made by scripts/test).
fn venv_python() -> PathBuf {
    let path = crate::prom::repo().join("target/test-venv/bin/python");
    assert!(
        path.exists(),
        "{} is missing: scripts/test creates the test venv and installs aiosmtpd into it",
        path.display()
    );
    path
}

/// The SMTP handler: records each accepted message as `NNNN.json` in the
/// output folder; refuses messages (451) while the file `reject` exists.
const SMTP_HANDLER: &str = r#"
import email, email.policy, json, os, re, sys, threading
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

host, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
credentials = sys.argv[4] if len(sys.argv) > 4 else None

class Handler:
    def __init__(self):
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        if os.path.exists(os.path.join(out, "reject")):
            return "451 4.3.0 refused by the test"
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        message = email.message_from_bytes(raw, policy=email.policy.default)
        match = re.search(rb"^Subject:(.*(?:\r?\n[ \t].*)*)", raw, re.MULTILINE | re.IGNORECASE)
        body = message.get_body(preferencelist=("plain",))
        # The authenticator below returns the user name as auth_data.
        login = session.auth_data if session.authenticated else None
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(message["from"]),
            "to": str(message["to"]),
            "subject": str(message["subject"]),
            "raw_subject": match.group(1).decode("ascii", "replace").strip() if match else None,
            "content_type": message.get_content_type(),
            "charset": message.get_content_charset(),
            "body": body.get_content() if body is not None else None,
            "login": login,
        }
        self.count += 1
        final = os.path.join(out, "%04d.json" % self.count)
        with open(final + ".tmp", "w", encoding="utf-8") as f:
            json.dump(record, f, ensure_ascii=False)
        os.rename(final + ".tmp", final)
        return "250 2.0.0 OK"

def authenticator(server, session, envelope, mechanism, auth_data):
    user = auth_data.login.decode() if isinstance(auth_data.login, bytes) else auth_data.login
    password = auth_data.password.decode() if isinstance(auth_data.password, bytes) else auth_data.password
    return AuthResult(success=credentials == "%s:%s" % (user, password), auth_data=user)

kwargs = {}
if credentials:
    kwargs = {"authenticator": authenticator, "auth_require_tls": False}
controller = Controller(Handler(), hostname=host, port=port, **kwargs)
controller.start()
print("ready", flush=True)
threading.Event().wait()
"#;

/// A real SMTP server (aiosmtpd) recording every message it accepts.
pub struct Smtp {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Smtp {
    /// Starts a server accepting anyone.
    pub fn start() -> Smtp {
        Smtp::start_with(None)
    }

    /// Starts a server that requires `user:password` (AUTH over plain SMTP,
    /// allowed for the test).
    pub fn start_with(credentials: Option<&str>) -> Smtp {
        let python = venv_python();
        let dir = tempfile::tempdir().expect("temp dir");
        let script = dir.path().join("smtp_handler.py");
        std::fs::write(&script, SMTP_HANDLER).expect("write the SMTP handler");
        let out = dir.path().join("messages");
        std::fs::create_dir(&out).expect("create the messages folder");
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = Command::new(&python);
            cmd.arg(&script)
                .arg("127.0.0.1")
                .arg(port.to_string())
                .arg(&out)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Some(c) = credentials {
                cmd.arg(c);
            }
            let mut child = cmd.spawn().expect("start the aiosmtpd handler");
            if ready(&mut child, Duration::from_secs(15), || smtp_banner(port)) {
                return Smtp { child, port, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "aiosmtpd did not become ready (is it installed in target/test-venv? scripts/test installs it)"
        );
    }

    /// Makes the server refuse (451) or accept messages from now on.
    pub fn refuse(&self, refuse: bool) {
        let flag = self.dir.path().join("messages/reject");
        if refuse {
            std::fs::write(flag, "").expect("write the reject flag");
        } else {
            let _ = std::fs::remove_file(flag);
        }
    }

    /// The messages received so far, in order.
    pub fn messages(&self) -> Vec<Value> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("messages"))
            .expect("read the messages folder")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).expect("read a recorded message");
                serde_json::from_str(&text).expect("recorded message JSON")
            })
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether an SMTP server on `port` sends its `220` greeting.
fn smtp_banner(port: u16) -> bool {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    let ok = BufReader::new(&stream).read_line(&mut line).is_ok() && line.starts_with("220");
    let _ = (&stream).write_all(b"QUIT\r\n");
    ok
}

/// Polls `probe` until it holds (true), the child exits or `limit` passes (false).
fn ready(child: &mut Child, limit: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(5);
    loop {
        if probe() {
            return true;
        }
        if child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

pub const RADICALE: &str = "/usr/bin/radicale";

/// A real CalDAV server (radicale), anonymous access, storage in a temp dir.
pub struct Radicale {
    child: Child,
    pub port: u16,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    dir: tempfile::TempDir,
}

impl Radicale {
    pub fn start() -> Radicale {
        assert!(
            Path::new(RADICALE).exists(),
            "{RADICALE} is missing: install the Debian package `radicale` (scripts/test does this)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("config");
            std::fs::write(
                &config,
                format!(
                    "[server]\nhosts = 127.0.0.1:{port}\n\n[auth]\ntype = none\n\n[rights]\ntype = authenticated\n\n[storage]\nfilesystem_folder = {}\n\n[logging]\nlevel = warning\n",
                    dir.path().join("collections").display()
                ),
            )
            .expect("write the radicale config");
            let mut child = Command::new(RADICALE)
                .arg("--config")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start radicale");
            let base = format!("http://127.0.0.1:{port}");
            let probe = format!("{base}/.web/");
            if ready(&mut child, Duration::from_secs(15), || {
                crate::harness::get(&probe).is_ok()
            }) {
                return Radicale {
                    child,
                    port,
                    base,
                    dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("radicale did not become ready");
    }

    /// The URL of `path` (`/user/releases/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The calendar objects stored in the collection at `path`
    /// (`/user/releases/`), by file name, read from the storage folder.
    pub fn items(&self, path: &str) -> Vec<(String, String)> {
        let folder = self
            .dir
            .path()
            .join("collections/collection-root")
            .join(path.trim_matches('/'));
        let Ok(entries) = std::fs::read_dir(&folder) else {
            return Vec::new();
        };
        let mut items: Vec<(String, String)> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with('.'))
            .map(|name| {
                let text = std::fs::read_to_string(folder.join(&name)).expect("read an item");
                (name, text)
            })
            .collect();
        items.sort();
        items
    }

    /// GETs the resource at `path` over HTTP.
    pub fn get(&self, path: &str) -> Result<String, ureq::Error> {
        crate::harness::get(&self.url(path))
    }
}

impl Drop for Radicale {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The events of an iCalendar text as vobject (radicale's parser) reads
/// them: uid, summary, description, dtstart, dtend (ISO 8601).
pub fn parse_with_vobject(text: &str) -> Vec<Value> {
    const SCRIPT: &str = r#"
import json, sys, vobject
cal = vobject.readOne(sys.stdin.read())
events = []
for e in cal.vevent_list:
    events.append({
        "uid": e.uid.value,
        "summary": e.summary.value,
        "description": e.description.value,
        "dtstart": e.dtstart.value.isoformat(),
        "dtend": e.dtend.value.isoformat(),
        "url": e.url.value,
    })
print(json.dumps(events, ensure_ascii=False))
"#;
    let python = "/usr/bin/python3";
    assert!(
        Path::new(python).exists(),
        "{python} is missing: install the Debian package `radicale` (it brings python3-vobject; scripts/test does this)"
    );
    let mut child = Command::new(python)
        .arg("-c")
        .arg(SCRIPT)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start python3");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write the calendar");
    let out = child.wait_with_output().expect("run vobject");
    assert!(
        out.status.success(),
        "vobject refused the calendar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("vobject JSON")
}
