//! The Kubernetes manifests in config/kubernetes/.
//!
//! Every manifest is checked against the Kubernetes API's JSON schemas by
//! `kubernetes-validate` (PyPI, installed by scripts/test into the test venv;
//! it ships the schemas and needs no network), strictly: an unknown field is
//! an error. Then what a schema cannot see: the kustomization lists every
//! manifest; the CronJob runs its command under `pushguard exec`; every
//! Secret and ConfigMap the workloads read ships, with the keys they read,
//! and the Secret holds placeholders only; the image, user, paths and port
//! agree with the Dockerfile and the Service; and `pushguard check` accepts
//! the configuration and job files the runner's ConfigMaps mount.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::pushguard;
use crate::monitoring::{str_of, yaml_file};
use crate::prom::repo;

/// Where scripts/test installs kubernetes-validate, in the workspace.
const VALIDATE: &str = "target/test-venv/bin/kubernetes-validate";
/// The pinned package (keep in step with scripts/test).
const VALIDATE_PACKAGE: &str = "kubernetes-validate==1.37.0";
/// The Kubernetes versions the manifests are checked against: the oldest
/// they are meant for and the newest the pinned tool knows.
const KUBERNETES_VERSIONS: &[&str] = &["1.30", "1.37"];
/// The kinds that run pods.
const WORKLOADS: &[&str] = &["CronJob", "Job", "Deployment", "StatefulSet", "DaemonSet"];

// ------------------------------------------------------------------ helpers

fn kube_dir() -> PathBuf {
    repo().join("config/kubernetes")
}

/// The manifests' file names (every YAML file but kustomization.yaml), sorted.
fn manifest_files() -> Vec<String> {
    let dir = kube_dir();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            (name.ends_with(".yaml") || name.ends_with(".yml")) && name != "kustomization.yaml"
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    files
}

/// Every manifest, one resource a file: (file name, resource).
fn manifests() -> Vec<(String, Value)> {
    manifest_files()
        .into_iter()
        .map(|file| {
            let resource = yaml_file(&kube_dir().join(&file));
            (file, resource)
        })
        .collect()
}

fn of_kind(kind: &str) -> Vec<(String, Value)> {
    manifests()
        .into_iter()
        .filter(|(_, r)| str_of(r, "kind") == kind)
        .collect()
}

fn workloads() -> Vec<(String, Value)> {
    manifests()
        .into_iter()
        .filter(|(_, r)| WORKLOADS.contains(&str_of(r, "kind")))
        .collect()
}

/// The shipped resource of this kind and name, with its file.
fn find<'a>(all: &'a [(String, Value)], kind: &str, name: &str) -> Option<&'a (String, Value)> {
    all.iter()
        .find(|(_, r)| str_of(r, "kind") == kind && str_of(&r["metadata"], "name") == name)
}

fn list(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// A workload's pod template.
fn pod_template(workload: &Value) -> &Value {
    if str_of(workload, "kind") == "CronJob" {
        &workload["spec"]["jobTemplate"]["spec"]["template"]
    } else {
        &workload["spec"]["template"]
    }
}

fn pod_spec(workload: &Value) -> &Value {
    &pod_template(workload)["spec"]
}

fn containers(pod: &Value) -> Vec<&Value> {
    list(&pod["initContainers"])
        .iter()
        .chain(list(&pod["containers"]))
        .collect()
}

/// A container's entry in `env`.
fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    list(&container["env"])
        .iter()
        .find(|var| str_of(var, "name") == name)
}

/// The Secret and key an environment variable is read from.
fn secret_key(container: &Value, name: &str) -> Option<(String, String)> {
    env(container, name).and_then(|var| {
        let source = &var["valueFrom"]["secretKeyRef"];
        source.is_object().then(|| {
            (
                str_of(source, "name").to_owned(),
                str_of(source, "key").to_owned(),
            )
        })
    })
}

/// The value an environment variable gets: its `value`, or the key of a
/// shipped ConfigMap it names.
fn env_value(all: &[(String, Value)], container: &Value, name: &str) -> Option<String> {
    let var = env(container, name)?;
    if let Some(value) = var["value"].as_str() {
        return Some(value.to_owned());
    }
    let source = &var["valueFrom"]["configMapKeyRef"];
    let (_, map) = find(all, "ConfigMap", str_of(source, "name"))?;
    map["data"][str_of(source, "key")]
        .as_str()
        .map(str::to_owned)
}

/// The keys a Secret or ConfigMap holds.
fn keys(resource: &Value) -> BTreeSet<String> {
    ["data", "stringData", "binaryData"]
        .iter()
        .flat_map(|field| {
            resource[*field]
                .as_object()
                .into_iter()
                .flat_map(|map| map.keys().cloned())
        })
        .collect()
}

/// One Secret or ConfigMap a workload reads, and where.
#[derive(Debug)]
struct Reference {
    kind: &'static str,
    name: String,
    /// None: all of it (`envFrom`, a volume without `items`).
    key: Option<String>,
    optional: bool,
    user: String,
}

fn references(file: &str, pod: &Value) -> Vec<Reference> {
    let mut refs = Vec::new();
    for container in containers(pod) {
        let at = format!("{file}: container {}", str_of(container, "name"));
        for var in list(&container["env"]) {
            for (field, kind) in [("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")] {
                let source = &var["valueFrom"][field];
                if source.is_object() {
                    refs.push(Reference {
                        kind,
                        name: str_of(source, "name").to_owned(),
                        key: Some(str_of(source, "key").to_owned()),
                        optional: source["optional"].as_bool().unwrap_or(false),
                        user: format!("{at}: env {}", str_of(var, "name")),
                    });
                }
            }
        }
        for from in list(&container["envFrom"]) {
            for (field, kind) in [("secretRef", "Secret"), ("configMapRef", "ConfigMap")] {
                let source = &from[field];
                if source.is_object() {
                    refs.push(Reference {
                        kind,
                        name: str_of(source, "name").to_owned(),
                        key: None,
                        optional: source["optional"].as_bool().unwrap_or(false),
                        user: format!("{at}: envFrom"),
                    });
                }
            }
        }
    }
    for volume in list(&pod["volumes"]) {
        for (field, name_field, kind) in [
            ("secret", "secretName", "Secret"),
            ("configMap", "name", "ConfigMap"),
        ] {
            let source = &volume[field];
            if !source.is_object() {
                continue;
            }
            let name = str_of(source, name_field).to_owned();
            let optional = source["optional"].as_bool().unwrap_or(false);
            let user = format!("{file}: volume {}", str_of(volume, "name"));
            let items = list(&source["items"]);
            if items.is_empty() {
                refs.push(Reference {
                    kind,
                    name,
                    key: None,
                    optional,
                    user,
                });
            } else {
                for item in items {
                    refs.push(Reference {
                        kind,
                        name: name.clone(),
                        key: Some(str_of(item, "key").to_owned()),
                        optional,
                        user: user.clone(),
                    });
                }
            }
        }
    }
    refs
}

/// The final stage of the repository's Dockerfile: what the containers run.
#[derive(Debug, Default)]
struct Image {
    expose: Vec<u16>,
    volumes: Vec<String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    workdir: String,
    env: BTreeMap<String, String>,
}

fn dockerfile() -> Image {
    let path = repo().join("Dockerfile");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    // Instructions, continuation lines joined, comments dropped.
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    let mut image = Image::default();
    for instruction in &instructions {
        let (word, rest) = instruction
            .split_once(char::is_whitespace)
            .unwrap_or((instruction.as_str(), ""));
        let rest = rest.trim();
        match word.to_ascii_uppercase().as_str() {
            // A new stage: only the last one is the image.
            "FROM" => image = Image::default(),
            "EXPOSE" => {
                for port in rest.split_whitespace() {
                    let number = port.split('/').next().unwrap_or(port);
                    image.expose.push(
                        number
                            .parse()
                            .unwrap_or_else(|e| panic!("Dockerfile: EXPOSE {port}: {e}")),
                    );
                }
            }
            "VOLUME" => image.volumes.extend(json_or_words(rest)),
            "ENTRYPOINT" => image.entrypoint = json_or_words(rest),
            "CMD" => image.cmd = json_or_words(rest),
            "WORKDIR" => image.workdir = rest.to_owned(),
            "ENV" => {
                for pair in rest.split_whitespace() {
                    if let Some((name, value)) = pair.split_once('=') {
                        image.env.insert(name.to_owned(), value.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    image
}

/// An instruction's arguments in exec form (a JSON array) or shell form.
fn json_or_words(text: &str) -> Vec<String> {
    serde_json::from_str(text)
        .unwrap_or_else(|_| text.split_whitespace().map(str::to_owned).collect())
}

/// What a container runs: its command (else the image's entrypoint) and its
/// args (else, without a command of its own, the image's CMD).
fn argv(container: &Value, image: &Image) -> Vec<String> {
    fn strings(value: &Value) -> Vec<String> {
        list(value)
            .iter()
            .map(|s| s.as_str().unwrap_or_default().to_owned())
            .collect()
    }
    let mut argv = if container["command"].is_null() {
        image.entrypoint.clone()
    } else {
        strings(&container["command"])
    };
    if !container["args"].is_null() {
        argv.extend(strings(&container["args"]));
    } else if container["command"].is_null() {
        argv.extend(image.cmd.iter().cloned());
    }
    argv
}

fn is_pushguard(program: &str) -> bool {
    Path::new(program)
        .file_name()
        .is_some_and(|name| name == "pushguard")
}

/// The value after `name` among a command's flags.
fn flag<'a>(flags: &'a [String], name: &str) -> Option<&'a str> {
    flags
        .iter()
        .position(|a| a == name)
        .and_then(|i| flags.get(i + 1))
        .map(String::as_str)
}

/// The container of the runner Deployment that runs `pushguard run`.
fn runner_container<'a>(file: &str, deployment: &'a Value, image: &Image) -> &'a Value {
    containers(pod_spec(deployment))
        .into_iter()
        .find(|c| argv(c, image).get(1).is_some_and(|a| a == "run"))
        .unwrap_or_else(|| panic!("{file}: no container runs `pushguard run`"))
}

/// A `key = value` line of a TOML text, the value unquoted.
fn toml_setting(text: &str, key: &str) -> Option<String> {
    text.lines().map(str::trim).find_map(|line| {
        let (name, value) = line.split_once('=')?;
        (name.trim() == key).then(|| {
            value
                .split('#')
                .next()
                .unwrap_or_default()
                .trim()
                .trim_matches('"')
                .to_owned()
        })
    })
}

// -------------------------------------------------------------------- tests

#[test]
fn every_manifest_passes_kubernetes_validate() {
    let tool = repo().join(VALIDATE);
    assert!(
        tool.exists(),
        "{} is missing: install the PyPI package {VALIDATE_PACKAGE} into target/test-venv \
         (scripts/test does this)",
        tool.display()
    );
    let files = manifest_files();
    for &version in KUBERNETES_VERSIONS {
        let out = Command::new(&tool)
            .args(["--strict", "--kubernetes-version", version])
            .args(&files)
            .current_dir(kube_dir())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", tool.display()));
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "kubernetes-validate refuses a manifest for Kubernetes {version} ({}):\n{said}",
            out.status
        );
        // It also exits 0 when it has no schema (an unknown kind or
        // apiVersion only warns): each file must have passed.
        for file in &files {
            assert!(
                said.contains(&format!("INFO {file} passed")),
                "kubernetes-validate did not pass {file} for Kubernetes {version}:\n{said}"
            );
        }
    }
}

#[test]
fn the_kustomization_lists_every_manifest_and_sets_the_workloads_image() {
    let kustomization = yaml_file(&kube_dir().join("kustomization.yaml"));
    assert_eq!(str_of(&kustomization, "kind"), "Kustomization");
    let listed: BTreeSet<&str> = list(&kustomization["resources"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let files = manifest_files();
    let shipped: BTreeSet<&str> = files.iter().map(String::as_str).collect();
    assert_eq!(
        listed, shipped,
        "kustomization.yaml's resources and the manifests in config/kubernetes differ"
    );
    let images: BTreeSet<&str> = list(&kustomization["images"])
        .iter()
        .map(|i| str_of(i, "name"))
        .collect();
    for (file, workload) in workloads() {
        for container in containers(pod_spec(&workload)) {
            let image = str_of(container, "image");
            assert!(
                images.contains(image),
                "{file}: image {image:?} is not one kustomization.yaml sets ({images:?})"
            );
        }
    }
    let namespace = str_of(&kustomization, "namespace");
    assert!(
        !namespace.is_empty(),
        "kustomization.yaml sets no namespace"
    );
    for (file, resource) in manifests() {
        let own = str_of(&resource["metadata"], "namespace");
        assert!(
            own.is_empty() || own == namespace,
            "{file}: namespace {own:?}, not the kustomization's {namespace:?}"
        );
    }
}

#[test]
fn the_cronjob_runs_its_command_under_pushguard_exec() {
    let image = dockerfile();
    let cronjobs = of_kind("CronJob");
    assert!(!cronjobs.is_empty(), "config/kubernetes ships no CronJob");
    for (file, cronjob) in &cronjobs {
        let spec = &cronjob["spec"];
        assert_eq!(
            str_of(spec, "concurrencyPolicy"),
            "Forbid",
            "{file}: a run still going when the next one is due must not get a twin"
        );
        let job = &spec["jobTemplate"]["spec"];
        let backoff = job["backoffLimit"].as_u64().unwrap_or_else(|| {
            panic!("{file}: set backoffLimit (the default retries a failing run six times)")
        });
        assert!(
            backoff <= 3,
            "{file}: backoffLimit {backoff}: every retry is one more failed run on the gateway"
        );
        let deadline = job["activeDeadlineSeconds"]
            .as_u64()
            .unwrap_or_else(|| panic!("{file}: set activeDeadlineSeconds"));
        let pod = pod_spec(cronjob);
        assert_eq!(
            str_of(pod, "restartPolicy"),
            "Never",
            "{file}: every attempt is its own pod, and its own pushed run"
        );
        let runs = containers(pod);
        assert_eq!(runs.len(), 1, "{file}: one container, the wrapped job");
        let argv = argv(runs[0], &image);
        assert!(
            argv.len() >= 2 && is_pushguard(&argv[0]) && argv[1] == "exec",
            "{file}: the container runs {argv:?}, not `pushguard exec`"
        );
        let rest = &argv[2..];
        let end = rest
            .iter()
            .position(|a| a == "--")
            .unwrap_or_else(|| panic!("{file}: no `--` before the command in {argv:?}"));
        let (flags, command) = (&rest[..end], &rest[end + 1..]);
        assert!(!command.is_empty(), "{file}: nothing to run after `--`");
        let job_name =
            flag(flags, "--job").unwrap_or_else(|| panic!("{file}: no --job in {argv:?}"));
        assert!(
            !job_name.is_empty()
                && job_name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)),
            "{file}: --job {job_name:?} is not a job name"
        );
        assert!(
            flag(flags, "--expected-interval").is_some(),
            "{file}: give --expected-interval, so the staleness alert fires when runs stop"
        );
        let timeout_text = flag(flags, "--timeout").unwrap_or_else(|| {
            panic!(
                "{file}: give --timeout, below activeDeadlineSeconds, so a hung run is pushed \
                 as a timeout"
            )
        });
        let timeout = humantime::parse_duration(timeout_text)
            .unwrap_or_else(|e| panic!("{file}: --timeout {timeout_text}: {e}"));
        assert!(
            timeout < Duration::from_secs(deadline),
            "{file}: --timeout {timeout_text} must stop the command before \
             activeDeadlineSeconds ({deadline}s) kills the pod"
        );
        assert!(
            !flags.iter().any(|a| a == "--no-state"),
            "{file}: the run must be recorded in the state"
        );
        let all = manifests();
        let gateway = env_value(&all, runs[0], "PUSHGATEWAY_URL");
        assert!(
            gateway.is_some_and(|url| url.starts_with("http")),
            "{file}: PUSHGATEWAY_URL must be a value or a key of a shipped ConfigMap"
        );
    }
}

#[test]
fn the_cronjob_and_the_runner_share_one_postgresql_state_from_the_secret() {
    let image = dockerfile();
    let mut states = BTreeSet::new();
    for (file, workload) in workloads() {
        for container in containers(pod_spec(&workload)) {
            if !argv(container, &image)
                .first()
                .is_some_and(|a| is_pushguard(a))
            {
                continue;
            }
            let at = format!("{file}: container {}", str_of(container, "name"));
            let state = secret_key(container, "PUSHGUARD_STATE")
                .unwrap_or_else(|| panic!("{at}: PUSHGUARD_STATE must come from a Secret"));
            let password = secret_key(container, "PGPASSWORD")
                .unwrap_or_else(|| panic!("{at}: PGPASSWORD must come from a Secret"));
            states.insert((state, password));
        }
    }
    assert_eq!(
        states.len(),
        1,
        "the workloads must read one state: {states:?}"
    );
    let all = manifests();
    let ((secret, key), _) = states.iter().next().expect("one state");
    let (file, shipped) = find(&all, "Secret", secret)
        .unwrap_or_else(|| panic!("the state's Secret {secret:?} does not ship"));
    let url = str_of(&shipped["stringData"], key);
    assert!(
        url.starts_with("postgres://") || url.starts_with("postgresql://"),
        "{file}: {key} is {url:?}, not a PostgreSQL URL"
    );
}

#[test]
fn every_secret_and_config_map_the_workloads_read_ships_with_its_keys() {
    let all = manifests();
    let mut checked = 0;
    for (file, workload) in all
        .iter()
        .filter(|(_, r)| WORKLOADS.contains(&str_of(r, "kind")))
    {
        for reference in references(file, pod_spec(workload)) {
            checked += 1;
            let Reference {
                kind,
                name,
                key,
                optional,
                user,
            } = reference;
            let (shipped_file, shipped) = find(&all, kind, &name).unwrap_or_else(|| {
                panic!("{user}: reads {kind} {name:?}, which config/kubernetes does not ship")
            });
            let Some(key) = key else { continue };
            let held = keys(shipped);
            if held.contains(&key) {
                continue;
            }
            assert!(
                optional,
                "{user}: reads key {key:?} of {kind} {name:?}, which has only {held:?}"
            );
            // An optional key left out of the example is documented in it.
            let text = std::fs::read_to_string(kube_dir().join(shipped_file)).expect("read");
            assert!(
                text.contains(&key),
                "{user}: the optional key {key:?} is not mentioned in {shipped_file}"
            );
        }
    }
    assert!(checked > 0, "the workloads read no Secret or ConfigMap");
}

#[test]
fn the_shipped_secrets_hold_placeholders_only() {
    let secrets = of_kind("Secret");
    assert!(!secrets.is_empty(), "config/kubernetes ships no Secret");
    for (file, secret) in &secrets {
        assert!(
            secret["data"].is_null() && secret["binaryData"].is_null(),
            "{file}: give the example values in stringData, readable as placeholders"
        );
        let values = secret["stringData"]
            .as_object()
            .unwrap_or_else(|| panic!("{file}: no stringData"));
        for (key, value) in values {
            let value = value.as_str().unwrap_or_default();
            match value.split_once("://") {
                Some((_, rest)) => {
                    let (userinfo, host) = rest.split_once('@').unwrap_or(("", rest));
                    assert!(
                        !userinfo.contains(':'),
                        "{file}: {key} holds a password; give it in its own key"
                    );
                    assert!(
                        host.contains("example"),
                        "{file}: {key} = {value:?} is not an example host"
                    );
                }
                None => assert!(
                    value.contains("CHANGE-ME"),
                    "{file}: {key} = {value:?} is not a placeholder (CHANGE-ME)"
                ),
            }
        }
    }
}

#[test]
fn the_workloads_run_the_dockerfiles_image_unprivileged_on_a_read_only_root() {
    let image = dockerfile();
    assert!(
        image.entrypoint.first().is_some_and(|e| is_pushguard(e)),
        "the Dockerfile's ENTRYPOINT is {:?}",
        image.entrypoint
    );
    let workloads = workloads();
    assert!(!workloads.is_empty(), "config/kubernetes ships no workload");
    for (file, workload) in &workloads {
        let pod = pod_spec(workload);
        assert_eq!(
            pod["automountServiceAccountToken"],
            json!(false),
            "{file}: pushguard does not talk to the API server"
        );
        for container in containers(pod) {
            let at = format!("{file}: container {}", str_of(container, "name"));
            let argv = argv(container, &image);
            assert!(
                argv.first().is_some_and(|a| is_pushguard(a)),
                "{at}: runs {argv:?}, not pushguard"
            );
            let security = &container["securityContext"];
            let setting = |key: &str| {
                if security[key].is_null() {
                    pod["securityContext"][key].clone()
                } else {
                    security[key].clone()
                }
            };
            assert_eq!(setting("runAsNonRoot"), json!(true), "{at}: runAsNonRoot");
            assert!(
                setting("runAsUser").as_u64().is_some_and(|uid| uid > 0),
                "{at}: give a numeric non-root runAsUser (the image's USER is a name, which \
                 the kubelet cannot check against runAsNonRoot)"
            );
            assert_eq!(
                security["readOnlyRootFilesystem"],
                json!(true),
                "{at}: readOnlyRootFilesystem"
            );
            assert_eq!(
                security["allowPrivilegeEscalation"],
                json!(false),
                "{at}: allowPrivilegeEscalation"
            );
            assert!(
                list(&security["capabilities"]["drop"]).contains(&json!("ALL")),
                "{at}: drop all capabilities"
            );
            for limit in ["requests", "limits"] {
                assert!(
                    !container["resources"][limit]["memory"].is_null(),
                    "{at}: no resources.{limit}.memory"
                );
            }
            // The root is read-only: what pushguard and its commands write
            // goes to volumes at the image's VOLUME, working directory and /tmp.
            let mounts: Vec<&str> = list(&container["volumeMounts"])
                .iter()
                .map(|m| str_of(m, "mountPath"))
                .collect();
            for path in image
                .volumes
                .iter()
                .map(String::as_str)
                .chain([image.workdir.as_str(), "/tmp"])
            {
                assert!(
                    mounts.contains(&path),
                    "{at}: nothing is mounted at {path}, and the root file system is read-only"
                );
            }
            let workdir = str_of(container, "workingDir");
            assert!(
                workdir.is_empty() || workdir == image.workdir,
                "{at}: workingDir {workdir}, not the image's {}",
                image.workdir
            );
        }
    }
}

#[test]
fn the_runner_listens_on_the_exposed_port_behind_the_service_with_probes_on_health() {
    let image = dockerfile();
    assert_eq!(
        image.expose.len(),
        1,
        "the Dockerfile EXPOSEs {:?}",
        image.expose
    );
    let port = image.expose[0];
    let deployments = of_kind("Deployment");
    assert_eq!(deployments.len(), 1, "one runner Deployment");
    let (file, deployment) = &deployments[0];
    // Two runners that share the schedule through the PostgreSQL state:
    // one pod dies, the other stands in; a rolling update is safe.
    assert!(
        deployment["spec"]["replicas"].as_u64() >= Some(2),
        "{file}: runners stand in for each other only with two replicas or more"
    );
    assert_eq!(
        str_of(&deployment["spec"]["strategy"], "type"),
        "RollingUpdate",
        "{file}: runners sharing a schedule can be replaced one at a time"
    );
    let runner = runner_container(file, deployment, &image);
    let id = env(runner, "PUSHGUARD_RUNNER_ID")
        .unwrap_or_else(|| panic!("{file}: each pod needs its own PUSHGUARD_RUNNER_ID"));
    assert_eq!(
        str_of(&id["valueFrom"]["fieldRef"], "fieldPath"),
        "metadata.name",
        "{file}: the runner's name comes from the pod's"
    );
    let ports = list(&runner["ports"]);
    let http = ports
        .iter()
        .find(|p| p["containerPort"].as_u64() == Some(u64::from(port)))
        .unwrap_or_else(|| {
            panic!("{file}: the runner does not declare the Dockerfile's EXPOSE {port}: {ports:?}")
        });
    let port_name = str_of(http, "name");
    let names_the_port = |v: &Value| {
        v.as_u64() == Some(u64::from(port))
            || (!port_name.is_empty() && v.as_str() == Some(port_name))
    };
    let listen = env(runner, "PUSHGUARD_LISTEN")
        .map(|var| str_of(var, "value"))
        .unwrap_or_default();
    assert_eq!(
        listen,
        format!("0.0.0.0:{port}"),
        "{file}: the runner must listen on every interface, on port {port}"
    );
    assert!(
        secret_key(runner, "PUSHGUARD_API_TOKEN").is_some(),
        "{file}: on 0.0.0.0 the /api needs PUSHGUARD_API_TOKEN, from a Secret"
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &runner[probe]["httpGet"];
        assert_eq!(str_of(get, "path"), "/health", "{file}: {probe} on /health");
        assert!(
            names_the_port(&get["port"]),
            "{file}: {probe} port {} is not the runner's {port}",
            get["port"]
        );
    }
    let labels = &pod_template(deployment)["metadata"]["labels"];
    let matches = |selector: &Value| {
        selector
            .as_object()
            .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &labels[k.as_str()] == v))
    };
    assert!(
        matches(&deployment["spec"]["selector"]["matchLabels"]),
        "{file}: the selector does not match the pod template's labels {labels}"
    );
    let services = of_kind("Service");
    let (service_file, service) = services
        .iter()
        .find(|(_, s)| matches(&s["spec"]["selector"]))
        .unwrap_or_else(|| panic!("no Service selects the runner's pods ({labels})"));
    let service_port = list(&service["spec"]["ports"])
        .iter()
        .find(|p| p["port"].as_u64() == Some(u64::from(port)))
        .unwrap_or_else(|| panic!("{service_file}: no port {port}"));
    let target = if service_port["targetPort"].is_null() {
        &service_port["port"]
    } else {
        &service_port["targetPort"]
    };
    assert!(
        names_the_port(target),
        "{service_file}: targetPort {target} is not the runner's port {port}"
    );
}

#[test]
fn the_runner_accepts_the_configuration_and_jobs_its_config_maps_mount() {
    let image = dockerfile();
    let all = manifests();
    let (file, deployment) = all
        .iter()
        .find(|(_, r)| str_of(r, "kind") == "Deployment")
        .expect("the runner Deployment");
    let pod = pod_spec(deployment);
    let runner = runner_container(file, deployment, &image);
    let image_config = image
        .env
        .get("PUSHGUARD_CONFIG")
        .cloned()
        .expect("the Dockerfile sets PUSHGUARD_CONFIG");
    let config_path =
        env_value(&all, runner, "PUSHGUARD_CONFIG").unwrap_or_else(|| image_config.clone());
    assert_eq!(
        config_path, image_config,
        "{file}: PUSHGUARD_CONFIG differs from the image's"
    );

    // The files the ConfigMap volumes put in the container, under `root`.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let mut written = Vec::new();
    for mount in list(&runner["volumeMounts"]) {
        let volume = list(&pod["volumes"])
            .iter()
            .find(|v| str_of(v, "name") == str_of(mount, "name"))
            .unwrap_or_else(|| panic!("{file}: mount {mount} has no volume"));
        let source = &volume["configMap"];
        if !source.is_object() {
            continue;
        }
        assert!(
            mount["subPath"].is_null(),
            "{file}: a subPath mount of a ConfigMap never sees its updates"
        );
        let name = str_of(source, "name");
        let (_, map) = find(&all, "ConfigMap", name)
            .unwrap_or_else(|| panic!("{file}: ConfigMap {name} does not ship"));
        let data = &map["data"];
        let dir = root.join(str_of(mount, "mountPath").trim_start_matches('/'));
        let items: Vec<(String, String)> = match source["items"].as_array() {
            Some(items) => items
                .iter()
                .map(|i| (str_of(i, "key").to_owned(), str_of(i, "path").to_owned()))
                .collect(),
            None => data
                .as_object()
                .into_iter()
                .flat_map(|d| d.keys())
                .map(|k| (k.clone(), k.clone()))
                .collect(),
        };
        for (key, path) in items {
            let text = data[key.as_str()]
                .as_str()
                .unwrap_or_else(|| panic!("ConfigMap {name} has no key {key}"));
            let target = dir.join(&path);
            std::fs::create_dir_all(target.parent().expect("a parent")).expect("create dir");
            std::fs::write(&target, text).expect("write");
            if path.ends_with(".toml") {
                written.push(target);
            }
        }
    }
    let config = root.join(config_path.trim_start_matches('/'));
    assert!(
        config.exists(),
        "{file}: no ConfigMap puts a file at PUSHGUARD_CONFIG {config_path}"
    );
    let jobs: Vec<String> = written
        .iter()
        .filter(|p| **p != config)
        .filter_map(|p| p.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    assert!(!jobs.is_empty(), "{file}: the ConfigMaps hold no job files");

    let listen = env_value(&all, runner, "PUSHGUARD_LISTEN").expect("PUSHGUARD_LISTEN");
    let gateway = env_value(&all, runner, "PUSHGATEWAY_URL").expect("PUSHGATEWAY_URL");
    let out = pushguard(tmp.path())
        .arg("check")
        .arg("--config")
        .arg(&config)
        .env_remove("PUSHGUARD_JOBS")
        .env("PUSHGUARD_LISTEN", listen)
        .env("PUSHGUARD_API_TOKEN", "placeholder-token")
        .env("PUSHGATEWAY_URL", gateway)
        .output()
        .expect("run pushguard check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pushguard check refuses the ConfigMaps' configuration:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("ok: {} job(s) in", jobs.len())),
        "{stdout}"
    );
    for job in &jobs {
        assert!(stdout.contains(job.as_str()), "job {job} missing: {stdout}");
    }

    // On SIGTERM running jobs get shutdown_grace: the pod must wait longer.
    let text = std::fs::read_to_string(&config).expect("read the config");
    if let Some(grace) = toml_setting(&text, "shutdown_grace") {
        let grace = humantime::parse_duration(&grace)
            .unwrap_or_else(|e| panic!("shutdown_grace {grace}: {e}"));
        let pod_grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
        assert!(
            Duration::from_secs(pod_grace) > grace,
            "{file}: terminationGracePeriodSeconds {pod_grace} is not above the runner's \
             shutdown_grace {grace:?}"
        );
    }
}
