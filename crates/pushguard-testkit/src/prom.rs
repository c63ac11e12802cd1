//! Real Prometheus and Alertmanager started by the harness, and the tools
//! that check their configuration (Slack and Discord are stood in for by
//! `receivers::Webhook`). Every server listens on a free loopback port and is killed on
//! drop; readiness is polled with a deadline.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{free_port, get};

pub const PROMETHEUS: &str = "/usr/bin/prometheus";
pub const PROMTOOL: &str = "/usr/bin/promtool";
pub const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
pub const AMTOOL: &str = "/usr/bin/amtool";

/// Fails with a message saying how to install `binary` when it is missing.
pub fn require(binary: &str, package: &str) {
    assert!(
        Path::new(binary).exists(),
        "{binary} is missing: install the Debian package `{package}` (scripts/test does this)"
    );
}

/// The workspace root (where the top `Cargo.toml`, `config/` and `jobs/` are).
pub fn repo() -> PathBuf {
    let kit = Path::new(env!("CARGO_MANIFEST_DIR"));
    kit.ancestors()
        .nth(2)
        .map(Path::to_owned)
        .unwrap_or_else(|| kit.to_owned())
}

/// Runs a checking tool (promtool, amtool) and returns its output; panics with
/// both streams when it fails.
pub fn run_tool(binary: &str, package: &str, args: &[&str], dir: &Path) -> Output {
    require(binary, package);
    let out = Command::new(binary)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {binary}: {e}"));
    assert!(
        out.status.success(),
        "{binary} {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Spawns a server on a free port (`spawn` gets the port) until one answers
/// 200 on `ready_path`; retries on a lost port race.
fn start_server(
    what: &str,
    ready_path: &str,
    log: &Path,
    mut spawn: impl FnMut(u16, Stdio) -> Child,
) -> (Child, u16, String) {
    for _ in 0..5 {
        let port = free_port();
        let file = std::fs::File::create(log).expect("create server log");
        let mut child = spawn(port, Stdio::from(file));
        let url = format!("http://127.0.0.1:{port}");
        let ready = format!("{url}{ready_path}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut pause = Duration::from_millis(5);
        loop {
            if get(&ready).is_ok() {
                return (child, port, url);
            }
            if child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
    panic!(
        "{what} did not become ready; its log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// A real Prometheus server.
pub struct Prometheus {
    child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus on `config`, with its TSDB and log under `dir`.
    pub fn start(config: &Path, dir: &Path) -> Self {
        Self::start_with(config, dir, &[])
    }

    /// Starts Prometheus as a remote-write receiver (`--web.enable-remote-write-receiver`,
    /// POST `/api/v1/write`) with no scrape targets, plus `args` (such as
    /// `--query.lookback-delta=5s`).
    pub fn start_receiver(dir: &Path, args: &[&str]) -> Self {
        let config = dir.join("receiver.yml");
        std::fs::write(
            &config,
            "global:\n  scrape_interval: 1m\nscrape_configs: []\n",
        )
        .expect("write the receiver's config");
        let mut all = vec!["--web.enable-remote-write-receiver"];
        all.extend_from_slice(args);
        Self::start_with(&config, dir, &all)
    }

    /// The receiver's write URL.
    pub fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.url)
    }

    /// Starts Prometheus on `config` with extra command-line `args`.
    pub fn start_with(config: &Path, dir: &Path, args: &[&str]) -> Self {
        require(PROMETHEUS, "prometheus");
        let data = dir.join("prometheus-data");
        let log = dir.join("prometheus.log");
        let (child, _, url) = start_server("prometheus", "/-/ready", &log, |port, out| {
            Command::new(PROMETHEUS)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(out)
                .spawn()
                .expect("start prometheus")
        });
        Prometheus { child, url, log }
    }

    /// The result vector of an instant query (`[]` when the query fails).
    pub fn query(&self, promql: &str) -> Vec<Value> {
        let answer = ureq::get(&format!("{}/api/v1/query", self.url))
            .query("query", promql)
            .config()
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .call()
            .and_then(|mut r| r.body_mut().read_to_string());
        answer
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|json| json["data"]["result"].as_array().cloned())
            .unwrap_or_default()
    }

    /// The value of the first sample an instant query returns.
    pub fn value(&self, promql: &str) -> Option<f64> {
        self.query(promql)
            .first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse().ok())
    }

    /// The alerts Prometheus holds (`/api/v1/alerts`).
    pub fn alerts(&self) -> Vec<Value> {
        get(&format!("{}/api/v1/alerts", self.url))
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|json| json["data"]["alerts"].as_array().cloned())
            .unwrap_or_default()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Alertmanager, started through `config/alertmanager/render-secrets.sh`
/// like the compose file does, so the Discord URL is rendered from a secret file.
pub struct Alertmanager {
    child: Child,
    pub url: String,
    pub port: u16,
    pub log: PathBuf,
}

impl Alertmanager {
    /// Starts Alertmanager on the shipped-style `config` (with the Discord
    /// placeholder), rendering the URL held in `discord_url_file`; state,
    /// rendered config and log go under `dir`.
    pub fn start(config: &Path, discord_url_file: &Path, dir: &Path) -> Self {
        require(ALERTMANAGER, "prometheus-alertmanager");
        let script = repo().join("config/alertmanager/render-secrets.sh");
        let data = dir.join("alertmanager-data");
        let rendered = dir.join("alertmanager-rendered").join("config.yml");
        let log = dir.join("alertmanager.log");
        let (child, port, url) = start_server("alertmanager", "/-/ready", &log, |port, out| {
            Command::new("sh")
                .arg(&script)
                .arg(ALERTMANAGER)
                .arg("--cluster.listen-address=")
                .arg(format!("--storage.path={}", data.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .env("AM_CONFIG_IN", config)
                .env("AM_CONFIG_OUT", &rendered)
                .env("DISCORD_WEBHOOK_URL_FILE", discord_url_file)
                .env_remove("DISCORD_WEBHOOK_URL")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(out)
                .spawn()
                .expect("start render-secrets.sh")
        });
        Alertmanager {
            child,
            url,
            port,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        // render-secrets.sh execs Alertmanager: this is its process.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `promtool check metrics` over `exposition` (given on stdin) and
/// panics, naming `what`, unless it exits 0 and prints nothing: promtool
/// reports lint problems ("no help text", a counter without `_total`, …) one
/// line per metric on stdout or stderr. `known` lists complaint lines, word
/// for word, that are tolerated (and then its exit status too): problems a
/// contract's names cannot be rid of without a rename.
pub fn check_metrics(what: &str, exposition: &str, known: &[&str]) {
    use std::io::Write as _;
    require(PROMTOOL, "prometheus");
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {PROMTOOL}: {e}"));
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(exposition.as_bytes())
        .expect("write the exposition to promtool");
    let out = child.wait_with_output().expect("wait for promtool");
    let complaints: Vec<String> = [&out.stdout, &out.stderr]
        .iter()
        .flat_map(|stream| {
            String::from_utf8_lossy(stream)
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|line| !line.trim().is_empty())
        .collect();
    let unknown: Vec<&String> = complaints
        .iter()
        .filter(|line| !known.contains(&line.trim()))
        .collect();
    assert!(
        unknown.is_empty() && (out.status.success() || !complaints.is_empty()),
        "promtool check metrics rejects {what} ({}):\n{}\n--- the exposition\n{exposition}",
        out.status,
        complaints.join("\n")
    );
}
