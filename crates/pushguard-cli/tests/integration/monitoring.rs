//! The monitoring stack in config/: validation and alerts end to end.
//!
//! The configuration is checked by the real tools (promtool, amtool), every
//! metric name in alerts and dashboards against `pushguard::catalog::METRICS`, every
//! dashboard query by promtool's parser, the compose file against the files it
//! mounts; then a failing job run by the real binary goes through a real
//! Pushgateway, Prometheus (the shipped rules) and Alertmanager (the shipped
//! routing tree) to Slack and Discord stand-ins, and a successful run resolves
//! it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use yaml_rust2::{Yaml, YamlLoader};

use crate::harness::{Pushgateway, pushguard};
use crate::prom::{AMTOOL, Alertmanager, PROMTOOL, Prometheus, repo, require, run_tool};
use crate::receivers::{Answer, Webhook};

// ------------------------------------------------------------------ helpers

fn config_dir() -> PathBuf {
    repo().join("config")
}

/// A YAML value as JSON (JSON is YAML, so a changed copy can be written back
/// as JSON and read by Prometheus and Alertmanager).
fn to_json(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
            .unwrap_or_else(|| Value::String(s.clone())),
        Yaml::Integer(i) => json!(i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) | Yaml::Real(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        other => panic!("unsupported YAML key {other:?}"),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Yaml::Null => Value::Null,
        Yaml::Alias(_) | Yaml::BadValue => panic!("unsupported YAML node {yaml:?}"),
    }
}

/// Parses a YAML file of the repository into JSON.
pub(crate) fn yaml_file(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let docs = YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
    assert_eq!(docs.len(), 1, "{}: one YAML document", path.display());
    to_json(&docs[0])
}

fn json_file(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn write_json(path: &Path, value: &Value) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create dir");
    }
    std::fs::write(path, serde_json::to_vec_pretty(value).expect("encode")).expect("write");
}

pub(crate) fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

/// Every rule of alerts.yml with its group name.
fn alert_rules() -> Vec<(String, Value)> {
    let rules = yaml_file(&config_dir().join("prometheus/alerts.yml"));
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| {
            let name = str_of(g, "name").to_owned();
            g["rules"]
                .as_array()
                .expect("rules")
                .iter()
                .map(move |r| (name.clone(), r.clone()))
        })
        .collect()
}

// ------------------------------------------------------ PromQL metric names

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "inf",
    "nan",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "atan2",
];
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Metric names a PromQL expression selects: identifiers outside strings,
/// label matchers, ranges and label lists that are neither functions nor
/// keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_string = |i: usize, quote: char| {
        let mut j = i + 1;
        while j < chars.len() && chars[j] != quote {
            j += if chars[j] == '\\' { 2 } else { 1 };
        }
        j + 1
    };
    let skip_to = |mut j: usize, close: char| {
        while j < chars.len() && chars[j] != close {
            j = if matches!(chars[j], '"' | '\'' | '`') {
                skip_string(j, chars[j])
            } else {
                j + 1
            };
        }
        j + 1
    };
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_string(i, c);
        } else if c == '{' {
            i = skip_to(i, '}');
        } else if c == '[' {
            i = skip_to(i, ']');
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':'))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let call = chars.get(next) == Some(&'(');
            if LABEL_LISTS.contains(&word.as_str()) && call {
                i = skip_to(next, ')');
            } else if call
                || KEYWORDS.contains(&word.as_str())
                || AGGREGATIONS.contains(&word.as_str())
            {
                // A function, an aggregation or an operator.
            } else {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Exporter metrics the stack may use besides pushguard's own.
const EXPORTER_METRICS: &[&str] = &[
    "up",
    "push_time_seconds",
    "push_failure_time_seconds",
    "ALERTS",
    "prometheus_rule_evaluation_failures_total",
    "alertmanager_notifications_failed_total",
];
/// node-exporter and cAdvisor families.
const EXPORTER_PREFIXES: &[&str] = &["node_", "container_"];

/// Whether `name` is a series pushguard emits or an allowed exporter metric.
fn known_metric(name: &str) -> bool {
    let ours = pushguard::catalog::METRICS
        .iter()
        .chain(pushguard_releases::METRICS)
        .any(|m| {
            m.name == name
                || (m.kind == pushguard::catalog::MetricType::Histogram
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| name.strip_suffix(suffix) == Some(m.name)))
        });
    ours || EXPORTER_METRICS.contains(&name)
        || EXPORTER_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Grafana's variables replaced by values PromQL accepts.
fn grafana_to_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("${__rate_interval}", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("${job}", ".*")
        .replace("$job", ".*")
}

#[test]
fn the_metric_name_extractor_finds_selected_names_only() {
    let names = metric_names(
        r#"sum by (job, le) (rate(http_request_duration_seconds_bucket{route="/a{b}",le!="x"}[5m] offset 1h)) / on(job) group_left() max without (instance) (up) > bool 0.5e3 and absent(foo:bar{a='b'}) or vector(1)"#,
    );
    let want: BTreeSet<String> = ["http_request_duration_seconds_bucket", "up", "foo:bar"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, want);
    assert!(known_metric("job_last_success_timestamp_seconds"));
    assert!(known_metric("db_operation_duration_seconds_bucket"));
    assert!(
        !known_metric("job_last_run_failed_bucket"),
        "only histograms have buckets"
    );
    assert!(!known_metric("job_last_sucess_timestamp_seconds"));
}

// ------------------------------------------------------------- tool checks

#[test]
fn promtool_accepts_the_prometheus_config_and_rules() {
    let dir = config_dir().join("prometheus");
    let out = run_tool(
        PROMTOOL,
        "prometheus",
        &["check", "config", "prometheus.yml"],
        &dir,
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 rule files found"));
    let out = run_tool(
        PROMTOOL,
        "prometheus",
        &["check", "rules", "alerts.yml"],
        &dir,
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let count = alert_rules().len();
    assert!(text.contains(&format!("{count} rules found")), "{text}");
}

#[test]
fn promtool_unit_tests_of_the_alerts_pass() {
    let dir = config_dir().join("prometheus");
    let out = run_tool(
        PROMTOOL,
        "prometheus",
        &["test", "rules", "alerts.test.yml"],
        &dir,
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"));
}

#[test]
fn promtool_checks_and_unit_tests_the_remote_write_alerts() {
    let dir = config_dir().join("prometheus");
    let out = run_tool(
        PROMTOOL,
        "prometheus",
        &["check", "rules", "alerts-remote-write.yml"],
        &dir,
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("6 rules found"));
    let out = run_tool(
        PROMTOOL,
        "prometheus",
        &["test", "rules", "alerts-remote-write.test.yml"],
        &dir,
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"));
    // Only the run contract's families, each read through last_over_time
    // unless it is a counter, and the same labels alerts.yml routes on.
    let rules = yaml_file(&dir.join("alerts-remote-write.yml"));
    let plain: BTreeMap<String, Value> = alert_rules()
        .into_iter()
        .map(|(_, r)| (str_of(&r, "alert").to_owned(), r))
        .collect();
    for rule in rules["groups"][0]["rules"].as_array().expect("rules") {
        let expr = str_of(rule, "expr");
        for name in metric_names(expr) {
            assert!(
                pushguard::catalog::CONTRACT_FAMILIES.contains(&name.as_str()),
                "{name} in {expr}"
            );
            if name != "job_runs_total" {
                assert!(
                    expr.contains(&format!("last_over_time({name}[")),
                    "{name} is read without last_over_time in {expr}"
                );
            }
        }
        if let Some(twin) = plain.get(str_of(rule, "alert")) {
            assert_eq!(rule["labels"], twin["labels"], "{}", str_of(rule, "alert"));
        }
    }
}

#[test]
fn amtool_accepts_the_alertmanager_config_as_shipped_and_rendered() {
    let dir = config_dir().join("alertmanager");
    let out = run_tool(
        AMTOOL,
        "prometheus-alertmanager",
        &["check-config", "config.yml"],
        &dir,
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("5 receivers") && text.contains("2 inhibit rules"),
        "{text}"
    );
    assert!(text.contains("1 templates"), "{text}");

    // The startup step of the compose file, with a URL that would trip sed.
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("discord_webhook_url");
    let url = "https://discord.com/api/webhooks/123456/a&b\\1|c_-";
    std::fs::write(&secret, format!("{url}\n")).unwrap();
    let rendered = tmp.path().join("out/config.yml");
    require(AMTOOL, "prometheus-alertmanager");
    let status = Command::new("sh")
        .arg(dir.join("render-secrets.sh"))
        .args([AMTOOL, "check-config"])
        .env("AM_CONFIG_IN", dir.join("config.yml"))
        .env("AM_CONFIG_OUT", &rendered)
        .env("DISCORD_WEBHOOK_URL_FILE", &secret)
        .output()
        .unwrap();
    // amtool has no --config.file: the exec fails, the rendering is done.
    assert!(!status.status.success());
    let text = std::fs::read_to_string(&rendered).unwrap();
    assert!(text.contains(&format!("webhook_url: '{url}'")), "{text}");
    assert!(!text.contains("discord.invalid"));
    assert!(
        rendered
            .parent()
            .unwrap()
            .join("templates/pushguard.tmpl")
            .exists()
    );
    let rendered_dir = rendered.parent().unwrap();
    run_tool(
        AMTOOL,
        "prometheus-alertmanager",
        &["check-config", "config.yml"],
        rendered_dir,
    );
}

// ------------------------------------------------------------ alert rules

#[test]
fn every_alert_has_severity_component_summary_description_and_runbook() {
    let rules = alert_rules();
    let groups: BTreeSet<&str> = rules.iter().map(|(g, _)| g.as_str()).collect();
    for want in [
        "batch_jobs",
        "system",
        "http",
        "database",
        "api_fetch",
        "notification",
        "calendar",
        "content",
        "service_health",
    ] {
        assert!(groups.contains(want), "no group {want}");
    }
    assert!(rules.len() >= 30, "{} rules", rules.len());
    let am = yaml_file(&config_dir().join("alertmanager/config.yml"));
    let routed: String = am["route"]["routes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["matchers"].as_array().unwrap().clone())
        .map(|m| m.as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join(" ");
    for (group, rule) in &rules {
        let name = str_of(rule, "alert");
        assert!(!name.is_empty(), "a rule of {group} is not an alert");
        let severity = str_of(&rule["labels"], "severity");
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        let component = str_of(&rule["labels"], "component");
        assert!(
            !component.is_empty() && routed.contains(component),
            "{name}: component {component:?} is not routed by config/alertmanager/config.yml"
        );
        for key in ["summary", "description", "runbook"] {
            assert!(
                !str_of(&rule["annotations"], key).is_empty(),
                "{name}: no {key} annotation"
            );
        }
    }
}

#[test]
fn every_alert_group_has_a_firing_and_a_quiet_unit_test() {
    let group_of: BTreeMap<String, String> = alert_rules()
        .into_iter()
        .map(|(g, r)| (str_of(&r, "alert").to_owned(), g))
        .collect();
    let tests = yaml_file(&config_dir().join("prometheus/alerts.test.yml"));
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for test in tests["tests"].as_array().unwrap() {
        for case in test["alert_rule_test"].as_array().unwrap() {
            let alert = str_of(case, "alertname");
            let group = group_of
                .get(alert)
                .unwrap_or_else(|| panic!("alerts.test.yml tests unknown alert {alert}"));
            if case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()) {
                firing.insert(group.clone());
            } else {
                quiet.insert(group.clone());
            }
        }
    }
    for group in group_of.values() {
        assert!(firing.contains(group), "no firing test for group {group}");
        assert!(quiet.contains(group), "no quiet test for group {group}");
    }
}

#[test]
fn staleness_is_judged_against_each_jobs_expected_interval() {
    let rules = alert_rules();
    let stale = rules
        .iter()
        .find(|(_, r)| str_of(r, "alert") == "BatchJobNotSucceeding")
        .expect("BatchJobNotSucceeding");
    let expr = str_of(&stale.1, "expr");
    assert!(
        expr.contains("job_last_success_timestamp_seconds")
            && expr.contains("2 * job_expected_interval_seconds"),
        "{expr}"
    );
    for (want, fragment) in [
        ("BatchJobLastRunFailed", "job_last_run_failed == 1"),
        ("BatchJobTimedOut", r#"job_runs_total{outcome="timeout"}"#),
        ("BatchJobMissedRuns", "job_missed_runs_total"),
        (
            "PushgatewayPushFailing",
            "push_failure_time_seconds > push_time_seconds",
        ),
        ("PushguardOutboxBacklog", "pushguard_outbox_depth"),
    ] {
        assert!(
            rules
                .iter()
                .any(|(_, r)| str_of(r, "alert") == want && str_of(r, "expr").contains(fragment)),
            "{want} does not use {fragment}"
        );
    }
}

#[test]
fn status_label_values_are_the_ones_pushguard_emits() {
    let mut exprs: Vec<String> = alert_rules()
        .iter()
        .map(|(_, r)| str_of(r, "expr").to_owned())
        .collect();
    exprs.extend(dashboard_queries().into_iter().map(|(_, q)| q));
    for expr in &exprs {
        for (pos, _) in expr.match_indices("status=") {
            let rest = &expr[pos + "status=".len()..];
            let value: String = rest
                .trim_start_matches(['~', '"'])
                .chars()
                .take_while(|c| *c != '"')
                .collect();
            for v in value.split('|') {
                let ok = ["success", "failure", "rate_limited"].contains(&v)
                    || (v.len() == 3 && v.chars().all(|c| c.is_ascii_digit() || c == 'x'))
                    || v == "5.."
                    || v.is_empty();
                assert!(ok, "status value {v:?} in {expr}");
            }
        }
    }
}

#[test]
fn alerts_and_dashboards_use_only_metrics_that_exist() {
    let mut used: BTreeMap<String, String> = BTreeMap::new();
    for (_, rule) in alert_rules() {
        for name in metric_names(str_of(&rule, "expr")) {
            used.insert(name, format!("alert {}", str_of(&rule, "alert")));
        }
    }
    let from_alerts = used.len();
    for (place, query) in dashboard_queries() {
        for name in metric_names(&grafana_to_promql(&query)) {
            used.insert(name, place.clone());
        }
    }
    let unknown: Vec<String> = used
        .iter()
        .filter(|(name, _)| !known_metric(name))
        .map(|(name, place)| format!("{name} ({place})"))
        .collect();
    assert!(
        unknown.is_empty(),
        "not in pushguard::catalog::METRICS nor a known exporter metric: {unknown:?}"
    );
    // The check saw the families the issue names, so it cannot pass empty.
    for name in [
        "job_expected_interval_seconds",
        "job_last_success_timestamp_seconds",
        "job_runs_total",
        "pushguard_outbox_depth",
        "http_request_duration_seconds_bucket",
        "db_operations_total",
        "api_fetch_total",
        "notifications_sent_total",
        "calendar_sync_total",
        "anime_works_total",
        "manga_works_total",
        "releases_pending",
        "system_disk_usage_percent",
    ] {
        assert!(used.contains_key(name), "nothing uses {name}");
    }
    assert!(
        from_alerts >= 25,
        "only {from_alerts} names found in the alerts"
    );
}

// ------------------------------------------------------------- Prometheus

#[test]
fn prometheus_scrapes_every_service_and_alerts_when_one_is_down() {
    let prom = yaml_file(&config_dir().join("prometheus/prometheus.yml"));
    let jobs: Vec<&Value> = prom["scrape_configs"].as_array().unwrap().iter().collect();
    let names: Vec<&str> = jobs.iter().map(|j| str_of(j, "job_name")).collect();
    for want in [
        "pushgateway",
        "pushguard",
        "node",
        "cadvisor",
        "prometheus",
        "alertmanager",
    ] {
        assert!(names.contains(&want), "no scrape job {want}");
    }
    let gateway = jobs
        .iter()
        .find(|j| str_of(j, "job_name") == "pushgateway")
        .unwrap();
    assert_eq!(
        gateway["honor_labels"],
        json!(true),
        "the gateway needs honor_labels"
    );
    let runner = jobs
        .iter()
        .find(|j| str_of(j, "job_name") == "pushguard")
        .unwrap();
    assert_eq!(
        runner["static_configs"][0]["targets"][0],
        json!("pushguard:9465")
    );
    assert_eq!(
        prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0],
        json!("alertmanager:9093")
    );
    let exprs: Vec<String> = alert_rules()
        .iter()
        .map(|(_, r)| str_of(r, "expr").replace(' ', ""))
        .collect();
    for name in names {
        let down = format!("up{{job=\"{name}\"}}==0");
        assert!(
            exprs.iter().any(|e| e.contains(&down)),
            "no alert for scrape job {name} being down"
        );
    }
}

// ---------------------------------------------------------------- Grafana

const MAIN_PANELS: [&str; 14] = [
    "Request rate",
    "API p95 latency",
    "CPU usage",
    "Memory usage",
    "Disk usage",
    "DB operation rate",
    "DB p95 latency",
    "Anime works",
    "Manga works",
    "Pending releases",
    "Notification rate",
    "API fetch rate",
    "API fetch p95 latency",
    "Error rate",
];

fn dashboards() -> Vec<(String, Value)> {
    ["main.json", "batch-jobs.json"]
        .iter()
        .map(|f| {
            (
                f.to_string(),
                json_file(&config_dir().join("grafana/dashboards").join(f)),
            )
        })
        .collect()
}

/// Panels, with the panels nested in rows.
fn panels(dashboard: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(p.clone());
        for inner in p["panels"].as_array().into_iter().flatten() {
            out.push(inner.clone());
        }
    }
    out
}

/// Every PromQL query of both dashboards with where it is, including the
/// metric selectors of `label_values(…)` variables.
fn dashboard_queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (file, d) in dashboards() {
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    out.push((
                        format!("{file} panel {:?}", str_of(&p, "title")),
                        expr.to_owned(),
                    ));
                }
            }
        }
        for var in d["templating"]["list"].as_array().into_iter().flatten() {
            let query = var["query"]["query"]
                .as_str()
                .or(var["query"].as_str())
                .unwrap_or_default();
            if let Some(inner) = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
            {
                let selector = inner.rsplit_once(',').map_or(inner, |(s, _)| s);
                out.push((
                    format!("{file} variable {}", str_of(var, "name")),
                    selector.to_owned(),
                ));
            }
        }
    }
    out
}

#[test]
fn dashboards_have_their_panels_unique_ids_and_a_job_variable() {
    for (file, d) in dashboards() {
        let mut ids = BTreeSet::new();
        for p in panels(&d) {
            let id = p["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{file}: a panel without id"));
            assert!(ids.insert(id), "{file}: panel id {id} twice");
            if str_of(&p, "type") != "row" {
                assert!(
                    p["targets"].as_array().is_some_and(|t| !t.is_empty()),
                    "{file}: panel {:?} has no query",
                    str_of(&p, "title")
                );
            }
        }
        assert!(!str_of(&d, "uid").is_empty(), "{file}: no uid");
    }
    let all = dashboards();
    let main = &all[0].1;
    let titles: Vec<String> = panels(main)
        .iter()
        .filter(|p| str_of(p, "type") != "row")
        .map(|p| str_of(p, "title").to_owned())
        .collect();
    assert_eq!(titles.len(), 14, "{titles:?}");
    for want in MAIN_PANELS {
        assert!(
            titles.iter().any(|t| t == want),
            "main.json has no panel {want:?}"
        );
    }
    let batch = &all[1].1;
    let job = batch["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| str_of(v, "name") == "job")
        .expect("batch-jobs.json has a job variable");
    assert_eq!(str_of(job, "type"), "query");
    let exprs: Vec<String> = panels(batch)
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| str_of(&t, "expr").to_owned())
        .collect();
    for family in [
        "job_last_success_timestamp_seconds",
        "job_expected_interval_seconds",
        "job_duration_seconds",
        "job_last_run_failed",
        "job_runs_total",
        "job_missed_runs_total",
        "pushguard_outbox_depth",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(family)),
            "batch-jobs.json shows no {family}"
        );
    }
    assert!(
        exprs
            .iter()
            .filter(|e| e.starts_with("job_") || e.contains("(job_") || e.contains(" job_"))
            .all(|e| e.contains("job=~\"$job\"")),
        "every per-job query filters on $job: {exprs:?}"
    );
}

#[test]
fn dashboard_queries_parse() {
    let rules: Vec<Value> = dashboard_queries()
        .into_iter()
        .enumerate()
        .map(|(n, (_, q))| json!({"record": format!("dashboard:query_{n}"), "expr": grafana_to_promql(&q)}))
        .collect();
    assert!(rules.len() > 20, "{} queries", rules.len());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yml");
    write_json(
        &file,
        &json!({"groups": [{"name": "dashboards", "rules": rules}]}),
    );
    run_tool(
        PROMTOOL,
        "prometheus",
        &["check", "rules", file.to_str().unwrap()],
        dir.path(),
    );
}

#[test]
fn dashboard_datasources_resolve_to_provisioned_ones() {
    let provisioning = config_dir().join("grafana/provisioning");
    let sources = yaml_file(&provisioning.join("datasources/datasources.yml"));
    let uids: BTreeSet<String> = sources["datasources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| str_of(d, "uid").to_owned())
        .collect();
    assert!(uids.contains("prometheus"), "{uids:?}");
    let providers = yaml_file(&provisioning.join("dashboards/dashboards.yml"));
    let path = str_of(&providers["providers"][0]["options"], "path");
    assert!(!path.is_empty(), "the dashboard provider has a path");
    for (file, d) in dashboards() {
        let mut seen = 0;
        let mut check = |ds: &Value, place: String| {
            if ds.is_null() {
                return;
            }
            let uid = ds["uid"].as_str().or(ds.as_str()).unwrap_or_default();
            assert!(
                uids.contains(uid),
                "{file} {place}: datasource {uid:?} is not provisioned"
            );
            seen += 1;
        };
        for p in panels(&d) {
            let title = str_of(&p, "title").to_owned();
            check(&p["datasource"], format!("panel {title:?}"));
            for t in p["targets"].as_array().into_iter().flatten() {
                check(&t["datasource"], format!("panel {title:?} target"));
            }
        }
        for var in d["templating"]["list"].as_array().into_iter().flatten() {
            check(
                &var["datasource"],
                format!("variable {}", str_of(var, "name")),
            );
        }
        assert!(seen > 0, "{file} names no datasource");
    }
}

// ---------------------------------------------------------------- compose

#[test]
fn the_compose_file_starts_the_stack_from_files_that_exist() {
    let file = config_dir().join("docker-compose-monitoring.yml");
    let compose = yaml_file(&file);
    let base = config_dir();
    let services = compose["services"].as_object().expect("services");
    for want in [
        "prometheus",
        "grafana",
        "alertmanager",
        "pushgateway",
        "jaeger",
        "node-exporter",
        "cadvisor",
        "pushguard",
    ] {
        assert!(services.contains_key(want), "no service {want}");
    }
    let volumes = compose["volumes"].as_object().cloned().unwrap_or_default();
    assert!(
        compose["networks"]["monitoring"].is_object()
            || compose["networks"]["monitoring"].is_null()
    );
    assert!(
        compose["networks"]
            .as_object()
            .is_some_and(|n| n.contains_key("monitoring"))
    );
    for (name, service) in services {
        let image = str_of(service, "image");
        if service["build"].is_null() {
            assert!(
                image.contains(':') && !image.ends_with(":latest"),
                "{name}: image {image:?} is not pinned"
            );
        }
        assert!(
            !service["healthcheck"]["test"].is_null(),
            "{name}: no healthcheck"
        );
        assert!(
            service["networks"]
                .as_array()
                .is_some_and(|n| n.contains(&json!("monitoring"))),
            "{name}: not on the monitoring network"
        );
        for mount in service["volumes"].as_array().into_iter().flatten() {
            let source = mount
                .as_str()
                .expect("short volume syntax")
                .split(':')
                .next()
                .unwrap();
            if source.starts_with('.') {
                let path = base.join(source);
                assert!(
                    path.exists(),
                    "{name}: mounts {source}, which does not exist"
                );
            } else if !source.starts_with('/') {
                assert!(
                    volumes.contains_key(source),
                    "{name}: volume {source} is not declared"
                );
            }
        }
    }
    let build = &services["pushguard"]["build"];
    let context = base.join(str_of(build, "context"));
    assert!(
        context.join("Cargo.toml").exists(),
        "the build context is the repository"
    );
    assert!(context.join(str_of(build, "dockerfile")).exists());
    let env = &services["pushguard"]["environment"];
    assert_eq!(env["PUSHGATEWAY_URL"], json!("http://pushgateway:9091"));
    assert_eq!(env["PUSHGUARD_LISTEN"], json!("0.0.0.0:9465"));
    assert_eq!(
        env["OTEL_EXPORTER_OTLP_ENDPOINT"],
        json!("http://jaeger:4318")
    );
    assert!(str_of(env, "PUSHGUARD_API_TOKEN_FILE").starts_with("/run/secrets/"));
    let jaeger = &services["jaeger"];
    let ports: Vec<&str> = jaeger["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(ports.iter().any(|p| p.ends_with("4317")) && ports.iter().any(|p| p.ends_with("4318")));
    // Secrets come from the environment, never from a committed file.
    for (name, secret) in compose["secrets"].as_object().into_iter().flatten() {
        assert!(
            !secret["environment"].is_null(),
            "secret {name} must come from the environment"
        );
    }
}

// ------------------------------------------------------------- end to end

/// Slack messages: (channel, title, text).
/// One notification the Slack/Discord stand-in got: its path and JSON body.
#[derive(Debug, Clone)]
struct Hook {
    path: String,
    body: Value,
}

fn received(hooks: &Webhook) -> Vec<Hook> {
    hooks
        .hits()
        .iter()
        .map(|h| Hook {
            path: h.path.clone(),
            body: h.json(),
        })
        .collect()
}

fn slack(hooks: &[Hook]) -> Vec<(String, String, String)> {
    hooks
        .iter()
        .filter(|h| h.path == "/slack")
        .flat_map(|h| {
            let channel = str_of(&h.body, "channel").to_owned();
            h.body["attachments"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |a| {
                    (
                        channel.clone(),
                        str_of(&a, "title").to_owned(),
                        str_of(&a, "text").to_owned(),
                    )
                })
        })
        .collect()
}

/// Discord messages: (title, description).
fn discord(hooks: &[Hook]) -> Vec<(String, String)> {
    hooks
        .iter()
        .filter(|h| h.path == "/discord")
        .flat_map(|h| h.body["embeds"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            (
                str_of(&e, "title").to_owned(),
                str_of(&e, "description").to_owned(),
            )
        })
        .collect()
}

/// Polls `ready` until it holds; on timeout panics with what the receiver
/// got and both servers' logs.
fn wait_for(
    what: &str,
    limit: Duration,
    hooks: &Webhook,
    logs: &dyn Fn() -> String,
    mut ready: impl FnMut(&[Hook]) -> bool,
) {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(10);
    loop {
        let got = received(hooks);
        if ready(&got) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not within {limit:?}\nreceived: {:#?}\n{}",
            got.iter().map(|h| (&h.path, &h.body)).collect::<Vec<_>>(),
            logs()
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Alertmanager with the shipped routing tree, inhibitions and templates;
/// Slack's URL from a secret file, Discord's rendered by render-secrets.sh;
/// only the grouping delays shortened. Both point at `hooks`.
fn start_alertmanager(dir: &Path, hooks: &Webhook) -> Alertmanager {
    let mut am = yaml_file(&config_dir().join("alertmanager/config.yml"));
    let slack_url = dir.join("slack_webhook_url");
    std::fs::write(&slack_url, format!("{}/slack", hooks.base)).unwrap();
    let discord_url = dir.join("discord_webhook_url");
    std::fs::write(&discord_url, format!("{}/discord\n", hooks.base)).unwrap();
    am["global"]["slack_api_url_file"] = json!(slack_url);
    am["templates"] = json!([config_dir().join("alertmanager/templates/*.tmpl")]);
    am["route"]["group_wait"] = json!("1s");
    am["route"]["group_interval"] = json!("1s");
    for route in am["route"]["routes"].as_array_mut().unwrap() {
        let route = route.as_object_mut().unwrap();
        route.remove("group_wait");
        route.remove("group_interval");
    }
    let am_config = dir.join("alertmanager-in/config.yml");
    write_json(&am_config, &am);
    Alertmanager::start(&am_config, &discord_url, dir)
}

/// `rules` with every `for` at 0s, written to `dir/NAME`.
fn rules_without_for(dir: &Path, name: &str) -> PathBuf {
    let mut rules = yaml_file(&config_dir().join("prometheus").join(name));
    for group in rules["groups"].as_array_mut().unwrap() {
        for rule in group["rules"].as_array_mut().unwrap() {
            if rule.get("for").is_some() {
                rule["for"] = json!("0s");
            }
        }
    }
    let rules_file = dir.join(name);
    write_json(&rules_file, &rules);
    rules_file
}

fn exec(dir: &Path, gateway: &str, interval: &str, command: &str) -> i32 {
    let status = pushguard(dir)
        .args([
            "exec",
            "--gateway",
            gateway,
            "--no-state",
            "--job",
            "e2e_backup",
        ])
        .args(["--label", "team=media", "--expected-interval", interval])
        .args(["--", command])
        .status()
        .expect("run pushguard exec");
    status.code().unwrap_or(-1)
}

#[test]
fn a_failing_job_alerts_slack_and_discord_and_a_success_resolves_it() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let gateway = Pushgateway::start();
    let hooks = Webhook::start(Answer::Status(200, "ok"));
    let alertmanager = start_alertmanager(dir, &hooks);

    // Prometheus: the shipped rules with every `for` at 0s, the shipped
    // gateway scrape job (honor_labels) aimed at the local gateway, 1 s
    // scrape and evaluation.
    let rules_file = rules_without_for(dir, "alerts.yml");
    let mut prom = yaml_file(&config_dir().join("prometheus/prometheus.yml"));
    prom["global"]["scrape_interval"] = json!("1s");
    prom["global"]["evaluation_interval"] = json!("1s");
    prom["rule_files"] = json!([rules_file]);
    prom["alerting"]["alertmanagers"][0]["static_configs"] =
        json!([{"targets": [format!("127.0.0.1:{}", alertmanager.port)]}]);
    let scrape = prom["scrape_configs"].as_array_mut().unwrap();
    scrape.retain(|j| str_of(j, "job_name") == "pushgateway");
    scrape[0]["static_configs"] = json!([{"targets": [format!("127.0.0.1:{}", gateway.port)]}]);
    let prom_config = dir.join("prometheus.yml");
    write_json(&prom_config, &prom);
    let prometheus = Prometheus::start(&prom_config, dir);
    let logs = || {
        format!(
            "prometheus alerts: {:#?}\nprometheus log:\n{}\nalertmanager log:\n{}",
            prometheus.alerts(),
            prometheus.log_text(),
            alertmanager.log_text()
        )
    };
    let servers_up = started.elapsed();

    crate::harness::wait_until(
        "prometheus scraping the gateway",
        Duration::from_secs(30),
        || prometheus.value(r#"up{job="pushgateway"}"#) == Some(1.0),
    );
    let first_scrape = started.elapsed();

    // One success, then a failure: the job's own interval is one second.
    let gw = gateway.url.clone();
    assert_eq!(exec(dir, &gw, "1s", "true"), 0);
    let pushed = Instant::now();
    assert_eq!(exec(dir, &gw, "1s", "false"), 1);
    // A runner's outbox over both thresholds of PushguardOutboxBacklog: the
    // critical alert must inhibit the warning of the same name.
    let pushed_outbox = pushguard(dir)
        .args([
            "push",
            "--gateway",
            &gw,
            "--no-state",
            "--job",
            "e2e_outbox",
        ])
        .args(["--metric", "pushguard_outbox_depth=150"])
        .status()
        .expect("run pushguard push");
    assert!(pushed_outbox.success());
    crate::harness::wait_until(
        "prometheus seeing the failed run",
        Duration::from_secs(10),
        || prometheus.value(r#"job_last_run_failed{job="e2e_backup",team="media"}"#) == Some(1.0),
    );

    let app_firing = |h: &[Hook]| {
        slack(h).into_iter().find(|(channel, title, _)| {
            channel == "#alerts-app"
                && title.starts_with("[FIRING:1] BatchJobLastRunFailed e2e_backup")
        })
    };
    let discord_firing = |h: &[Hook]| {
        discord(h)
            .into_iter()
            .find(|(title, _)| title.starts_with("[FIRING:1] BatchJobNotSucceeding e2e_backup"))
    };
    wait_for(
        "the failed run on Slack #alerts-app and the overdue job on Discord",
        Duration::from_secs(30),
        &hooks,
        &logs,
        |h| app_firing(h).is_some() && discord_firing(h).is_some(),
    );
    let alerted = pushed.elapsed();
    let got = received(&hooks);
    let (_, title, text) = app_firing(&got).unwrap();
    assert_eq!(
        title,
        "[FIRING:1] BatchJobLastRunFailed e2e_backup (warning)"
    );
    for want in [
        "*The last run of batch job e2e_backup failed*",
        r#"job="e2e_backup""#,
        r#"team="media""#,
        r#"severity="warning""#,
        r#"component="batch""#,
        "Runbook: pushguard history e2e_backup",
    ] {
        assert!(text.contains(want), "Slack text lacks {want}: {text}");
    }
    let (title, description) = discord_firing(&got).unwrap();
    assert_eq!(
        title,
        "[FIRING:1] BatchJobNotSucceeding e2e_backup (critical)"
    );
    assert!(
        description.contains("has not succeeded within twice its interval"),
        "{description}"
    );
    assert!(description.contains(r#"team="media""#), "{description}");
    // A critical alert also goes to the critical channel and, via `continue`,
    // to its component's channel.
    wait_for(
        "the critical channel",
        Duration::from_secs(10),
        &hooks,
        &logs,
        |h| {
            let s = slack(h);
            ["#alerts-critical", "#alerts-app"].iter().all(|ch| {
                s.iter().any(|(c, t, _)| {
                    c == ch && t.starts_with("[FIRING:1] BatchJobNotSucceeding e2e_backup")
                })
            })
        },
    );

    // The critical outbox alert was delivered, its warning twin inhibited.
    wait_for(
        "the critical outbox alert on #alerts-critical",
        Duration::from_secs(10),
        &hooks,
        &logs,
        |h| {
            slack(h).iter().any(|(c, t, text)| {
                c == "#alerts-critical"
                    && t == "[FIRING:1] PushguardOutboxBacklog e2e_outbox (critical)"
                    && text.starts_with("*The pushguard outbox holds 150 undelivered pushes*")
            })
        },
    );
    let am_alerts: Value = serde_json::from_str(
        &crate::harness::get(&format!("{}/api/v2/alerts", alertmanager.url)).unwrap(),
    )
    .unwrap();
    let outbox: Vec<&Value> = am_alerts
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["labels"]["alertname"] == "PushguardOutboxBacklog")
        .collect();
    let warning = outbox
        .iter()
        .find(|a| a["labels"]["severity"] == "warning")
        .expect("the warning reached Alertmanager");
    assert_eq!(warning["labels"]["job"], "e2e_outbox");
    assert_eq!(warning["status"]["state"], "suppressed", "{warning:#}");
    assert_eq!(
        warning["status"]["inhibitedBy"].as_array().map(Vec::len),
        Some(1)
    );

    // A success with the job's real interval resolves both.
    assert_eq!(exec(dir, &gw, "1h", "true"), 0);
    let succeeded = Instant::now();
    wait_for(
        "both alerts resolved on Slack and Discord",
        Duration::from_secs(30),
        &hooks,
        &logs,
        |h| {
            slack(h).iter().any(|(c, t, text)| {
                c == "#alerts-app"
                    && t == "[RESOLVED] BatchJobLastRunFailed e2e_backup (warning)"
                    && text.contains(r#"job="e2e_backup""#)
            }) && discord(h)
                .iter()
                .any(|(t, _)| t == "[RESOLVED] BatchJobNotSucceeding e2e_backup (critical)")
        },
    );
    let resolved = succeeded.elapsed();

    // Warnings never reach Discord or the critical channel.
    let got = received(&hooks);
    assert!(
        discord(&got).iter().all(|(t, _)| !t.contains("(warning)")),
        "{:#?}",
        discord(&got)
    );
    assert!(
        slack(&got)
            .iter()
            .all(|(c, t, _)| c != "#alerts-critical" || t.contains("(critical)")),
        "{:#?}",
        slack(&got)
    );
    // The inhibited warning was never sent anywhere.
    assert!(
        slack(&got)
            .iter()
            .all(|(_, t, _)| !t.contains("PushguardOutboxBacklog e2e_outbox (warning)")),
        "{:#?}",
        slack(&got)
    );
    eprintln!(
        "monitoring e2e: servers ready {servers_up:?}, first scrape {first_scrape:?}, \
         alert delivered {alerted:?} after the pushes, resolved {resolved:?} after the success, \
         total {:?}",
        started.elapsed()
    );
}

#[test]
fn a_failing_exec_written_over_remote_write_alerts_through_the_remote_write_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let hooks = Webhook::start(Answer::Status(200, "ok"));
    let alertmanager = start_alertmanager(dir, &hooks);
    // Prometheus as the remote-write receiver, evaluating the shipped
    // remote-write rules (every `for` at 0s) every second; nothing scraped.
    let rules_file = rules_without_for(dir, "alerts-remote-write.yml");
    let prom = json!({
        "global": {"evaluation_interval": "1s", "scrape_interval": "1m"},
        "rule_files": [rules_file],
        "alerting": {"alertmanagers": [{"static_configs": [
            {"targets": [format!("127.0.0.1:{}", alertmanager.port)]}
        ]}]},
        "scrape_configs": [],
    });
    let prom_config = dir.join("prometheus.yml");
    write_json(&prom_config, &prom);
    let prometheus =
        Prometheus::start_with(&prom_config, dir, &["--web.enable-remote-write-receiver"]);
    let logs = || {
        format!(
            "prometheus alerts: {:#?}\nprometheus log:\n{}\nalertmanager log:\n{}",
            prometheus.alerts(),
            prometheus.log_text(),
            alertmanager.log_text()
        )
    };
    // Alerts that fire before Prometheus has discovered the Alertmanager
    // are dropped and sent again only a minute later.
    crate::harness::wait_until(
        "prometheus discovering the alertmanager",
        Duration::from_secs(30),
        || {
            crate::harness::get(&format!("{}/api/v1/alertmanagers", prometheus.url))
                .is_ok_and(|text| text.contains(&format!("127.0.0.1:{}", alertmanager.port)))
        },
    );
    let write = |command: &str| {
        pushguard(dir)
            .args(["exec", "--sink", "remote-write", "--remote-write-url"])
            .arg(prometheus.write_url())
            .args(["--job", "e2e_rw", "--label", "team=media"])
            .args(["--expected-interval", "1s", "--", command])
            .status()
            .expect("run pushguard exec")
            .code()
    };
    assert_eq!(write("true"), Some(0));
    assert_eq!(write("false"), Some(1));
    let app_firing = |h: &[Hook]| {
        slack(h).into_iter().find(|(channel, title, _)| {
            channel == "#alerts-app" && title.starts_with("[FIRING:1] BatchJobLastRunFailed e2e_rw")
        })
    };
    let discord_firing = |h: &[Hook]| {
        discord(h)
            .into_iter()
            .find(|(title, _)| title.starts_with("[FIRING:1] BatchJobNotSucceeding e2e_rw"))
    };
    wait_for(
        "the failed run on Slack #alerts-app and the overdue job on Discord",
        Duration::from_secs(30),
        &hooks,
        &logs,
        |h| app_firing(h).is_some() && discord_firing(h).is_some(),
    );
    let got = received(&hooks);
    let (_, _, text) = app_firing(&got).unwrap();
    for want in [
        "*The last run of batch job e2e_rw failed*",
        r#"job="e2e_rw""#,
        r#"team="media""#,
        r#"severity="warning""#,
    ] {
        assert!(text.contains(want), "Slack text lacks {want}: {text}");
    }
    let (_, description) = discord_firing(&got).unwrap();
    assert!(description.contains(r#"team="media""#), "{description}");
}
