//! TLS and authentication against a real Pushgateway started with a web
//! config (`--web.config.file`): https with a test CA, mutual TLS, basic auth
//! from the environment and from files, and what happens when any of it is
//! wrong. Every check reads back what the gateway holds, and what
//! `outbox --json`, `history --json` and the state file say.
//!
//! The certificates are made afresh by each test ([`Pki::generate`]): a CA,
//! a server certificate for 127.0.0.1 and a client certificate.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pushguard_testkit::tls::{Pki, basic_auth_users};
use serde_json::Value;

use crate::harness::{self, Access, Pushgateway, pushguard};

/// Upper bound for any single pushguard run.
const EXIT_LIMIT: Duration = Duration::from_secs(60);

/// How a run of `pushguard` ended.
#[derive(Debug)]
struct Done {
    code: Option<i32>,
    elapsed: Duration,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?} after {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.elapsed, self.stdout, self.stderr
        )
    }
}

impl Done {
    fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "{self}");
        self
    }

    fn quiet(&self) -> &Self {
        assert!(self.stderr.trim().is_empty(), "expected no stderr: {self}");
        self
    }
}

/// Runs `cmd` to its end (killed past [`EXIT_LIMIT`]).
fn run(cmd: &mut Command) -> Done {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pushguard");
    let collect = |mut reader: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = reader.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = collect(Box::new(child.stdout.take().expect("stdout")));
    let stderr = collect(Box::new(child.stderr.take().expect("stderr")));
    let deadline = started + EXIT_LIMIT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pushguard still running after {EXIT_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Exited: `wait` returns at once.
    let status = child.wait().expect("wait");
    Done {
        code: status.code(),
        elapsed: started.elapsed(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// `pushguard exec --gateway URL --job JOB [extra] -- sh -c 'exit CODE'`.
fn exec(dir: &Path, gateway: &str, job: &str, code: i32, extra: &[&str]) -> Command {
    let mut cmd = pushguard(dir);
    cmd.args(["exec", "--gateway", gateway, "--job", job])
        .args(extra)
        .args(["--", "sh", "-c", &format!("exit {code}")]);
    cmd
}

fn json_list(done: &Done) -> Vec<Value> {
    done.expect_code(0);
    let value: Value =
        serde_json::from_str(&done.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {done}"));
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a JSON array: {done}"))
        .clone()
}

/// `pushguard outbox --json`.
fn outbox(dir: &Path) -> (Done, Vec<Value>) {
    let done = run(pushguard(dir).args(["outbox", "--json"]));
    let list = json_list(&done);
    (done, list)
}

/// `pushguard history --json`.
fn history(dir: &Path) -> (Done, Vec<Value>) {
    let done = run(pushguard(dir).args(["history", "--json", "--limit", "100"]));
    let list = json_list(&done);
    (done, list)
}

fn text<'a>(entry: &'a Value, name: &str) -> &'a str {
    entry[name]
        .as_str()
        .unwrap_or_else(|| panic!("no string {name:?} in {entry}"))
}

/// The exit code the gateway holds for `job`; fails listing what it holds.
fn exit_code_held(gw: &Pushgateway, job: &str) -> f64 {
    let group = gw.group(job, &[]).unwrap_or_else(|| {
        let held: Vec<_> = gw.groups().iter().map(|g| g.labels()).collect();
        panic!("the gateway has no group job={job:?}; it holds {held:?}")
    });
    group
        .value("job_last_exit_code", &[])
        .unwrap_or_else(|| panic!("job_last_exit_code missing: {:?}", group.families()))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A gateway serving https with the test PKI's server certificate;
/// `require_client_cert` turns on `RequireAndVerifyClientCert`.
fn https_gateway(pki: &Pki, require_client_cert: bool) -> Pushgateway {
    Pushgateway::start_with_web_config(&pki.tls_server_config(require_client_cert), pki.access())
}

// ---------------------------------------------------------------------------
// Delivered

#[test]
fn https_with_the_test_ca_delivers_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate();
    let gw = https_gateway(&pki, false);
    assert!(gw.url.starts_with("https://"), "{}", gw.url);

    run(&mut exec(
        dir.path(),
        &gw.url,
        "tls_flag",
        0,
        &["--ca-file", path(&pki.ca)],
    ))
    .expect_code(0)
    .quiet();
    assert_eq!(exit_code_held(&gw, "tls_flag"), 0.0);

    // The same from PUSHGATEWAY_CA_FILE, and the command's code passes through.
    run(exec(dir.path(), &gw.url, "tls_env", 3, &[]).env("PUSHGATEWAY_CA_FILE", &pki.ca))
        .expect_code(3)
        .quiet();
    assert_eq!(exit_code_held(&gw, "tls_env"), 3.0);
    let (_, entries) = outbox(dir.path());
    assert!(entries.is_empty(), "{entries:#?}");
}

#[test]
fn mutual_tls_with_a_client_certificate_delivers_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate();
    let gw = https_gateway(&pki, true);

    // Certificate and key in two files.
    run(&mut exec(
        dir.path(),
        &gw.url,
        "mtls_two_files",
        0,
        &[
            "--ca-file",
            path(&pki.ca),
            "--cert-file",
            path(&pki.client_cert),
            "--key-file",
            path(&pki.client_key),
        ],
    ))
    .expect_code(0)
    .quiet();
    assert_eq!(exit_code_held(&gw, "mtls_two_files"), 0.0);

    // Both in one --cert-file.
    run(&mut exec(
        dir.path(),
        &gw.url,
        "mtls_one_file",
        2,
        &[
            "--ca-file",
            path(&pki.ca),
            "--cert-file",
            path(&pki.client_combined),
        ],
    ))
    .expect_code(2)
    .quiet();
    assert_eq!(exit_code_held(&gw, "mtls_one_file"), 2.0);

    // From the environment.
    run(exec(dir.path(), &gw.url, "mtls_env", 0, &[])
        .env("PUSHGATEWAY_CA_FILE", &pki.ca)
        .env("PUSHGATEWAY_CERT_FILE", &pki.client_cert)
        .env("PUSHGATEWAY_KEY_FILE", &pki.client_key))
    .expect_code(0)
    .quiet();
    assert_eq!(exit_code_held(&gw, "mtls_env"), 0.0);
}

#[test]
fn mutual_tls_without_a_valid_client_certificate_keeps_the_run_in_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate();
    let gw = https_gateway(&pki, true);

    // No client certificate.
    let done = run(&mut exec(
        dir.path(),
        &gw.url,
        "mtls_missing",
        5,
        &["--ca-file", path(&pki.ca)],
    ));
    done.expect_code(5);
    assert!(
        done.stderr.contains("warning") && done.stderr.contains("mtls_missing"),
        "{done}"
    );
    assert!(
        done.stderr.to_lowercase().contains("certificate"),
        "the error should name the certificate problem: {done}"
    );
    assert!(
        done.stderr.contains("after 1 attempt"),
        "not retried: {done}"
    );
    assert!(gw.group("mtls_missing", &[]).is_none());

    // A client certificate from another CA.
    let done = run(&mut exec(
        dir.path(),
        &gw.url,
        "mtls_stranger",
        0,
        &[
            "--ca-file",
            path(&pki.ca),
            "--cert-file",
            path(&pki.stranger_cert),
            "--key-file",
            path(&pki.stranger_key),
        ],
    ));
    done.expect_code(0);
    assert!(done.stderr.contains("warning"), "{done}");
    assert!(gw.group("mtls_stranger", &[]).is_none());

    let (_, entries) = outbox(dir.path());
    assert_eq!(entries.len(), 2, "{entries:#?}");
    for entry in &entries {
        assert_eq!(text(entry, "status"), "pending", "{entry}");
        assert!(
            text(entry, "last_error")
                .to_lowercase()
                .contains("certificate"),
            "{entry}"
        );
    }
    let (_, runs) = history(dir.path());
    assert!(
        runs.iter().all(|r| text(r, "push_status") == "spooled"),
        "{runs:#?}"
    );

    // With the right certificate, a flush delivers both.
    let done = run(pushguard(dir.path()).args([
        "outbox",
        "--flush",
        "--json",
        "--ca-file",
        path(&pki.ca),
        "--cert-file",
        path(&pki.client_cert),
        "--key-file",
        path(&pki.client_key),
    ]));
    assert!(json_list(&done).is_empty(), "{done}");
    assert_eq!(exit_code_held(&gw, "mtls_missing"), 5.0);
    assert_eq!(exit_code_held(&gw, "mtls_stranger"), 0.0);
}

#[test]
fn basic_auth_from_the_environment_delivers_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate();
    // Basic auth over https, as it would be deployed.
    let yaml = format!(
        "{}{}",
        pki.tls_server_config(false),
        basic_auth_users("alice", "correct horse")
    );
    let gw = Pushgateway::start_with_web_config(
        &yaml,
        pki.access().with_basic("alice", "correct horse"),
    );

    run(exec(
        dir.path(),
        &gw.url,
        "basic_env",
        0,
        &["--ca-file", path(&pki.ca)],
    )
    .env("PUSHGATEWAY_USERNAME", "alice")
    .env("PUSHGATEWAY_PASSWORD", "correct horse"))
    .expect_code(0)
    .quiet();
    assert_eq!(exit_code_held(&gw, "basic_env"), 0.0);
}

#[test]
fn basic_auth_from_files_delivers_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start_with_web_config(
        &basic_auth_users("bob", "from-a-file"),
        Access::default().with_basic("bob", "from-a-file"),
    );
    // The harness itself is refused without the credentials.
    let (status, _) = harness::access_get(&Access::default(), gw.port, "/api/v1/metrics").unwrap();
    assert_eq!(status, 401);

    let user = secrets.path().join("user");
    let password = secrets.path().join("password");
    // Trailing newlines, as `echo` writes them, are not part of the secret.
    std::fs::write(&user, "bob\n").unwrap();
    std::fs::write(&password, "from-a-file\n").unwrap();
    run(exec(dir.path(), &gw.url, "basic_files", 4, &[])
        .env("PUSHGATEWAY_USERNAME_FILE", &user)
        .env("PUSHGATEWAY_PASSWORD_FILE", &password))
    .expect_code(4)
    .quiet();
    assert_eq!(exit_code_held(&gw, "basic_files"), 4.0);
}

// ---------------------------------------------------------------------------
// Wrong

#[test]
fn a_wrong_ca_is_reported_kept_in_the_outbox_and_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate();
    let gw = https_gateway(&pki, false);

    let done = run(&mut exec(
        dir.path(),
        &gw.url,
        "wrong_ca",
        6,
        &["--ca-file", path(&pki.other_ca)],
    ));
    done.expect_code(6);
    let stderr = done.stderr.to_lowercase();
    assert!(
        stderr.contains("warning") && stderr.contains("certificate"),
        "the error should name the certificate problem: {done}"
    );
    // One attempt: a certificate the client does not trust will not become
    // trusted by retrying within the run.
    assert!(done.stderr.contains("after 1 attempt"), "{done}");
    assert!(done.elapsed < Duration::from_secs(3), "{done}");
    assert!(gw.group("wrong_ca", &[]).is_none());

    let (_, entries) = outbox(dir.path());
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(text(&entries[0], "status"), "pending");
    assert_eq!(entries[0]["attempts"], 1, "{entries:#?}");
    assert!(
        text(&entries[0], "last_error")
            .to_lowercase()
            .contains("certificate"),
        "{entries:#?}"
    );

    // A flush with the wrong CA leaves it there (one more attempt), one with
    // the right CA delivers it.
    let done = run(pushguard(dir.path()).args([
        "outbox",
        "--flush",
        "--json",
        "--ca-file",
        path(&pki.other_ca),
    ]));
    done.expect_code(1);
    let (_, entries) = outbox(dir.path());
    assert_eq!(entries[0]["attempts"], 2, "{entries:#?}");
    let done = run(pushguard(dir.path()).args([
        "outbox",
        "--flush",
        "--json",
        "--ca-file",
        path(&pki.ca),
    ]));
    assert!(json_list(&done).is_empty(), "{done}");
    assert_eq!(exit_code_held(&gw, "wrong_ca"), 6.0);
}

#[test]
fn a_wrong_password_is_a_dead_letter_saying_authentication_failed() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Pushgateway::start_with_web_config(
        &basic_auth_users("carol", "right-password"),
        Access::default().with_basic("carol", "right-password"),
    );

    let done = run(exec(dir.path(), &gw.url, "wrong_password", 0, &[])
        .env("PUSHGATEWAY_USERNAME", "carol")
        .env("PUSHGATEWAY_PASSWORD", "wrong-password"));
    done.expect_code(0);
    assert!(done.stderr.contains("authentication failed"), "{done}");
    assert!(done.stderr.contains(&gw.url), "names the gateway: {done}");
    assert!(!done.stderr.contains("wrong-password"), "{done}");
    assert!(gw.group("wrong_password", &[]).is_none());

    let (_, entries) = outbox(dir.path());
    assert_eq!(entries.len(), 1, "{entries:#?}");
    let entry = &entries[0];
    assert_eq!(text(entry, "status"), "dead", "{entry}");
    assert_eq!(entry["attempts"], 1, "{entry}");
    let reason = text(entry, "last_error");
    assert!(
        reason.contains("authentication failed") && reason.contains("401"),
        "{reason}"
    );

    // `push` says the same and fails.
    let done = run(pushguard(dir.path())
        .args(["push", "--gateway", &gw.url, "--job", "wrong_password_push"])
        .args(["--metric", "x=1"])
        .env("PUSHGATEWAY_USERNAME", "carol")
        .env("PUSHGATEWAY_PASSWORD", "wrong-password"));
    done.expect_code(1);
    assert!(done.stderr.contains("authentication failed"), "{done}");

    // A dead letter is final: a flush does not retry it.
    let done = run(pushguard(dir.path())
        .args(["outbox", "--flush", "--json"])
        .env("PUSHGATEWAY_USERNAME", "carol")
        .env("PUSHGATEWAY_PASSWORD", "right-password"));
    let left = json_list(&done);
    assert_eq!(left.len(), 2, "{done}");
    assert!(left.iter().all(|e| e["attempts"] == 1), "{left:#?}");
}

/// Every place a password could leak, after good and bad runs with it.
#[test]
fn credentials_never_appear_in_output_history_outbox_or_the_state_file() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let (user, good, bad) = ("dave", "Sup3r-s3cret-good", "Sup3r-s3cret-bad");
    let gw = Pushgateway::start_with_web_config(
        &basic_auth_users(user, good),
        Access::default().with_basic(user, good),
    );
    let password_file = secrets.path().join("password");
    std::fs::write(&password_file, bad).unwrap();

    let mut outputs = vec![
        // Delivered.
        run(exec(dir.path(), &gw.url, "leak_good", 0, &[])
            .env("PUSHGATEWAY_USERNAME", user)
            .env("PUSHGATEWAY_PASSWORD", good)),
        // Refused, from the environment and from a file.
        run(exec(dir.path(), &gw.url, "leak_bad", 1, &[])
            .env("PUSHGATEWAY_USERNAME", user)
            .env("PUSHGATEWAY_PASSWORD", bad)),
        run(exec(dir.path(), &gw.url, "leak_bad_file", 1, &[])
            .env("PUSHGATEWAY_USERNAME", user)
            .env("PUSHGATEWAY_PASSWORD_FILE", &password_file)),
        run(pushguard(dir.path())
            .args(["push", "--gateway", &gw.url, "--job", "leak_push"])
            .args(["--metric", "x=1"])
            .env("PUSHGATEWAY_USERNAME", user)
            .env("PUSHGATEWAY_PASSWORD", bad)),
    ];
    assert_eq!(exit_code_held(&gw, "leak_good"), 0.0);
    outputs.push(history(dir.path()).0);
    outputs.push(outbox(dir.path()).0);
    outputs.push(run(pushguard(dir.path()).args(["outbox"])));
    outputs.push(run(pushguard(dir.path()).args(["history"])));
    let refused = outbox(dir.path()).1;
    assert_eq!(refused.len(), 3, "{refused:#?}");

    let encoded = |password: &str| {
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    };
    let forbidden = [good, bad, &encoded(good), &encoded(bad)];
    for done in &outputs {
        for secret in forbidden {
            assert!(
                !done.stdout.contains(secret) && !done.stderr.contains(secret),
                "{secret:?} leaked: {done}"
            );
        }
    }
    // The state file and its journal, byte for byte.
    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        files += 1;
        let bytes = std::fs::read(&path).unwrap();
        for secret in forbidden {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret:?} is in {}",
                path.display()
            );
        }
    }
    assert!(files >= 1, "no state file written");
}
