//! A real OTLP receiver for the tests: `rotel` (PyPI), started on free
//! loopback ports, printing every span it receives; killed on drop.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{free_port, wait_until};

/// Where `scripts/test` installs rotel: a venv under `target/`.
fn rotel_agent() -> PathBuf {
    if let Some(path) = std::env::var_os("PUSHGUARD_ROTEL_AGENT") {
        return PathBuf::from(path);
    }
    let lib = crate::prom::repo().join("target/test-venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|dirs| {
        dirs.flatten()
            .map(|d| d.path().join("site-packages/rotel/rotel-agent"))
            .find(|p| p.exists())
    });
    found.unwrap_or_else(|| {
        panic!(
            "rotel-agent not found under {}: run scripts/test, which installs the PyPI \
             package rotel==0.0.1a15 into target/test-venv (or set PUSHGUARD_ROTEL_AGENT)",
            lib.display()
        )
    })
}

/// One span as the receiver printed it.
#[derive(Debug, Clone, Default)]
pub struct SpanRecord {
    pub trace_id: String,
    pub parent_id: String,
    pub id: String,
    pub name: String,
    pub status_code: String,
    pub status_message: String,
    pub attributes: HashMap<String, String>,
}

impl SpanRecord {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(String::as_str)
    }
}

pub struct Collector {
    child: Child,
    out: PathBuf,
    _dir: tempfile::TempDir,
    /// The base endpoint, as `OTEL_EXPORTER_OTLP_ENDPOINT` takes it.
    pub endpoint: String,
}

impl Collector {
    pub fn start() -> Collector {
        let agent = rotel_agent();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temp dir");
            let out = dir.path().join("spans.txt");
            let (http, grpc) = (free_port(), free_port());
            let child = Command::new(&agent)
                .args(["start", "--exporter", "blackhole", "--debug-log", "traces"])
                .args(["--debug-log-verbosity", "detailed"])
                .arg("--otlp-http-endpoint")
                .arg(format!("127.0.0.1:{http}"))
                .arg("--otlp-grpc-endpoint")
                .arg(format!("127.0.0.1:{grpc}"))
                .stdout(std::fs::File::create(&out).expect("output file"))
                .stderr(Stdio::null())
                .spawn()
                .expect("start rotel-agent");
            let mut collector = Collector {
                child,
                out,
                _dir: dir,
                endpoint: format!("http://127.0.0.1:{http}"),
            };
            if collector.wait_ready() {
                return collector;
            }
        }
        panic!("rotel-agent did not become ready");
    }

    fn wait_ready(&mut self) -> bool {
        let url = format!("{}/v1/traces", self.endpoint);
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let mut pause = Duration::from_millis(5);
        while std::time::Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return false; // lost a port race; try other ports
            }
            let ok = ureq::post(&url)
                .header("Content-Type", "application/json")
                .send(r#"{"resourceSpans":[]}"#)
                .is_ok_and(|r| r.status() == 200);
            if ok {
                return true;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        false
    }

    /// Every span printed so far.
    pub fn spans(&self) -> Vec<SpanRecord> {
        let raw = std::fs::read(&self.out).unwrap_or_default();
        parse(&String::from_utf8_lossy(&raw))
    }

    /// Waits until a span named `name` arrived and returns all spans then.
    pub fn wait_for(&self, name: &str) -> Vec<SpanRecord> {
        wait_until(
            &format!("span {name:?} at the receiver"),
            Duration::from_secs(15),
            || self.spans().iter().any(|s| s.name == name),
        );
        self.spans()
    }

    pub fn span(&self, name: &str) -> SpanRecord {
        self.wait_for(name)
            .into_iter()
            .find(|s| s.name == name)
            .expect("span present")
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses rotel's detailed debug output (`Span #N` blocks).
fn parse(text: &str) -> Vec<SpanRecord> {
    let mut spans = Vec::new();
    let mut current: Option<SpanRecord> = None;
    let mut in_attributes = false;
    for line in text.lines() {
        let line = line.trim_start_matches('\0');
        if line.starts_with("Span #") {
            spans.extend(current.take());
            current = Some(SpanRecord::default());
            in_attributes = false;
            continue;
        }
        if line.starts_with("ResourceSpans #") || line.starts_with("ScopeSpans #") {
            spans.extend(current.take());
            continue;
        }
        let Some(span) = current.as_mut() else {
            continue;
        };
        let trimmed = line.trim();
        if trimmed == "Attributes:" {
            in_attributes = true;
            continue;
        }
        if let Some(attr) = trimmed.strip_prefix("-> ") {
            if in_attributes && let Some((key, value)) = attr.split_once(": ") {
                span.attributes.insert(key.to_owned(), unwrap_value(value));
            }
            continue;
        }
        if let Some((key, value)) = trimmed.split_once(':') {
            let value = value.trim().to_owned();
            match key.trim() {
                "Trace ID" => span.trace_id = value,
                "Parent ID" => span.parent_id = value,
                "ID" => span.id = value,
                "Name" => span.name = value,
                "Status code" => span.status_code = value,
                "Status message" => span.status_message = value,
                _ => {}
            }
        }
    }
    spans.extend(current);
    spans
}

/// `Str(x)` → `x`, `Int(2)` → `2`.
fn unwrap_value(value: &str) -> String {
    match value.split_once('(') {
        Some((_, rest)) => rest.strip_suffix(')').unwrap_or(rest).to_owned(),
        None => value.to_owned(),
    }
}
