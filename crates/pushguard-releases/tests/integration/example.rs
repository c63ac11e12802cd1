//! `examples/monitoring_integration.rs` as a user runs it: its endpoints,
//! the real fetch job against local sources, and its `/metrics`.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::harness::get;
use crate::prom;
use crate::sources::{RSS, Sources};

/// The example binary, built by `cargo test` next to the test binaries.
fn example_bin() -> PathBuf {
    // target/<profile>/deps/integration-… → target/<profile>/examples/
    let test = std::env::current_exe().expect("the test binary's path");
    let profile = test
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target dir");
    let bin = profile.join("examples").join("monitoring_integration");
    assert!(
        bin.is_file(),
        "{} is missing: run the tests with `cargo test -p pushguard-releases` (it builds the examples)",
        bin.display()
    );
    bin
}

struct Service {
    child: Child,
    url: String,
}

impl Service {
    fn start(dir: &std::path::Path) -> Service {
        let mut child = Command::new(example_bin())
            .args(["--listen", "127.0.0.1:0", "--jobs"])
            .arg(dir.join("jobs"))
            .arg("--store")
            .arg(dir.join("releases.db"))
            .env_remove("PUSHGATEWAY_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the example");
        // It prints its address once it listens: no polling needed.
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("first line");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Service { child, url }
    }

    fn json(&self, path: &str) -> Value {
        let text =
            get(&format!("{}{path}", self.url)).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"))
    }

    fn post(&self, path: &str) -> (u16, Value) {
        let mut answer = ureq::post(&format!("{}{path}", self.url))
            .config()
            .http_status_as_error(false)
            .build()
            .send_empty()
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = answer.status().as_u16();
        let text = answer.body_mut().read_to_string().expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_service_runs_the_real_fetch_job_and_exposes_its_metrics() {
    let sources = Sources::start();
    sources.rss("/kodansha.rss", RSS);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("jobs")).expect("jobs dir");
    std::fs::write(
        dir.path().join("jobs/fetch.toml"),
        format!(
            r#"schedule = "@hourly"
builtin = "fetch"
[settings]
timeout = "5s"
{}"#,
            sources.job_sources(&["anime"], &[("kodansha", "/kodansha.rss")]),
        ),
    )
    .expect("job file");
    let service = Service::start(dir.path());

    assert_eq!(service.json("/")["service"], "release delivery");
    assert_eq!(service.json("/api/works").as_array().map(Vec::len), Some(0));

    let (status, body) = service.post("/api/fetch/simulate");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "success");
    let works = service.json("/api/works");
    let titles: Vec<&str> = works
        .as_array()
        .expect("works array")
        .iter()
        .filter_map(|w| w["native_title"].as_str())
        .collect();
    assert!(titles.contains(&"葬送のフリーレン"), "{works}");
    let pending = service.json("/api/releases/pending");
    assert!(
        pending.as_array().is_some_and(|p| p.len() >= 5),
        "{pending}"
    );

    // No notify job file: the run fails with a message naming what is missing.
    let (status, body) = service.post("/api/notify/simulate");
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("builtin = \"notify\"")),
        "{body}"
    );

    let (status, body) = service.post("/api/load/simulate?seconds=1");
    assert_eq!(status, 200, "{body}");
    assert!(body["db_queries"].as_u64().is_some_and(|q| q > 0), "{body}");

    let metrics = get(&format!("{}/metrics", service.url)).expect("metrics");
    for needle in [
        "http_requests_total{method=\"POST\",route=\"/api/fetch/simulate\",status=\"200\"} 1",
        "http_requests_total{method=\"GET\",route=\"/api/works\",status=\"200\"} 2",
        "http_request_errors_total{method=\"POST\",route=\"/api/notify/simulate\"} 1",
        "http_request_duration_seconds_count{method=\"GET\",route=\"/\"} 1",
        "api_fetch_total{source=\"anilist\",status=\"success\"} 1",
        "api_fetch_duration_seconds_count{source=\"kodansha\"} 1",
        "anime_works_total 3",
        "db_operations_total{operation=\"upsert\",status=\"success\",table=\"works\"}",
        "db_operation_duration_seconds_bucket{operation=\"select\",table=\"works\"",
        "releases_pending ",
        "manga_works_total ",
        "system_cpu_usage_percent ",
        "system_memory_usage_bytes ",
        "system_disk_usage_percent{mount=",
    ] {
        assert!(
            metrics.contains(needle),
            "{needle} missing from /metrics:\n{metrics}"
        );
    }
    // Every family carries `# HELP` and `# TYPE`, and promtool's linter has
    // nothing to say about any of them but the content gauges' `_total`
    // suffix: their names are what alerts, dashboards and the README use,
    // renaming them is a contract change of its own.
    prom::check_metrics(
        "the example service's /metrics",
        &metrics,
        &[
            "anime_works_total non-counter metrics should not have \"_total\" suffix",
            "manga_works_total non-counter metrics should not have \"_total\" suffix",
        ],
    );
}
