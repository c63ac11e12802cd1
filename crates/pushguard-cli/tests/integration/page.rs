//! The runner's status page in a real browser: Debian's headless Chromium
//! loads the page of a runner with real jobs — one failing, one overdue, one
//! whose push the gateway refuses — and the test reads the DOM Chromium
//! built (`--dump-dom`) and saves screenshots under `target/status-page/`
//! for people to look at. The trigger form and the access rule are driven
//! over plain HTTP, as a browser posts them.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Listener, Pushgateway, pushguard, read_request_from, respond};
use crate::prom;
use crate::runner::{RunnerProcess, jobs_dir, state_path, workspace, write_job};

const CHROMIUM: &str = "/usr/bin/chromium";
const LIMIT: Duration = Duration::from_secs(30);

/// Hostile text for labels and output: markup, both quotes, an ampersand and
/// a right-to-left override.
const HOSTILE_LABEL: &str = r#"<script>alert("label")</script> it's & "quoted" "#;
const RTL: &str = "\u{202E}gnp.exe";

/// A schedule that does not fire during a test (1 January, 00:00).
const YEARLY: &str = "0 0 1 1 *";

/// Where the screenshots go: `target/status-page/` of the build.
fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| prom::repo().join("target"));
    let dir = target.join("status-page");
    fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// Runs headless Chromium with `args` and its own profile in `dir`; its
/// stdout, or a panic with both streams when it fails or outlives `LIMIT`.
fn chromium(dir: &Path, args: &[&str]) -> String {
    prom::require(CHROMIUM, "chromium");
    let profile = dir.join(format!("chromium-{}", args.len()));
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + LIMIT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("chromium output");
    assert!(
        out.status.success(),
        "chromium {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn dump_dom(dir: &Path, url: &str) -> String {
    chromium(dir, &["--dump-dom", url])
}

fn screenshot(dir: &Path, url: &str, file: &Path, size: &str) {
    let _ = fs::remove_file(file);
    chromium(
        dir,
        &[
            &format!("--screenshot={}", file.display()),
            &format!("--window-size={size}"),
            url,
        ],
    );
    let png = fs::read(file).unwrap_or_default();
    assert!(
        png.starts_with(b"\x89PNG"),
        "no screenshot at {}",
        file.display()
    );
}

/// A gateway in front of `upstream` that refuses every push of job
/// `refused` with 400 — as a gateway refuses a push it cannot accept — and
/// forwards everything else.
fn refusing_gateway(upstream: u16) -> Listener {
    Listener::start(move |mut stream| {
        let Ok(Some(request)) = read_request_from(&stream) else {
            return;
        };
        let _ = if request.path.starts_with("/metrics/job/refused") {
            respond(
                &mut stream,
                400,
                "text/plain",
                "",
                b"pushed metrics are invalid or inconsistent with existing metrics",
            )
        } else {
            request
                .forward(upstream)
                .and_then(|answer| stream.write_all(&answer))
        };
    })
}

/// `GET url`: status, headers as (lower-case name, value), body.
fn fetch(url: &str, auth: Option<&str>) -> (u16, Vec<(String, String)>, String) {
    let mut request = ureq::get(url)
        .config()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build();
    if let Some(auth) = auth {
        request = request.header("Authorization", auth);
    }
    let mut answer = request.call().expect("GET");
    let headers = answer
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let status = answer.status().as_u16();
    (
        status,
        headers,
        answer.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// Posts the trigger form as a browser does from the page itself.
fn post_form(base: &str, job: &str, token: &str, origin: &str) -> (u16, String) {
    let mut answer = ureq::post(format!("{base}/jobs/{job}/trigger"))
        .config()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .header("Origin", origin)
        .header(
            "Sec-Fetch-Site",
            if origin == base {
                "same-origin"
            } else {
                "cross-site"
            },
        )
        .send_form([("token", token)])
        .expect("POST the trigger form");
    let status = answer.status().as_u16();
    (
        status,
        answer.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// Runs of `slow` going on, from the API (with the test's token).
fn running(base: &str) -> u64 {
    let (status, _, body) = fetch(&format!("{base}/api/jobs"), Some("Bearer s3cret"));
    assert_eq!(status, 200, "{body}");
    let jobs: serde_json::Value = serde_json::from_str(&body).expect("/api/jobs JSON");
    jobs.as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["name"] == "slow"))
        .and_then(|job| job["running"].as_u64())
        .expect("slow in /api/jobs")
}

/// The position of `needle` in `text`; panics with the text when missing.
fn at(text: &str, needle: &str) -> usize {
    text.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not found in:\n{text}"))
}

/// Markup a page must never carry from the jobs' own text.
fn assert_escaped(dom: &str) {
    assert!(!dom.contains("<script>alert"), "unescaped script:\n{dom}");
    assert!(!dom.contains("<img src=x"), "unescaped markup:\n{dom}");
    // Chromium's serialisation escapes < > & in text.
    assert!(dom.contains("&lt;script&gt;alert("), "{dom}");
}

#[test]
fn page_in_chromium_shows_failing_overdue_and_refused_jobs() {
    let gw = Pushgateway::start();
    let gateway = refusing_gateway(gw.port);
    let dir = workspace();
    let d = dir.path();
    let script = d.join("hostile.sh");
    fs::write(
        &script,
        "echo '<script>alert(1)</script>'\n\
         echo \"it's \\\"quoted\\\" & more\"\n\
         echo 'مرحبا بالعالم'\n\
         echo '</pre><img src=x onerror=alert(2)>'\n\
         exit 3\n",
    )
    .expect("write the job's script");
    write_job(
        d,
        "failing",
        &format!(
            "schedule = \"{YEARLY}\"\ntimezone = \"Asia/Tokyo\"\ncommand = [\"sh\", {:?}]\n\
             labels = {{ team = {HOSTILE_LABEL:?}, file = \"\\u202Egnp.exe\" }}\n",
            script.display().to_string()
        ),
    );
    write_job(
        d,
        "overdue",
        "schedule = \"0 * * * *\"\ncommand = [\"true\"]\n",
    );
    write_job(
        d,
        "refused",
        &format!("schedule = \"{YEARLY}\"\ncommand = [\"true\"]\n"),
    );
    write_job(
        d,
        "fine",
        &format!("schedule = \"{YEARLY}\"\ncommand = [\"true\"]\n"),
    );

    // The overdue job ran once, five hours ago: its run is recorded now and
    // moved back in the state file.
    let out = pushguard(d)
        .args(["trigger", "overdue", "--jobs"])
        .arg(jobs_dir(d))
        .env("PUSHGATEWAY_URL", &gw.url)
        .env("PUSHGUARD_STATE", state_path(d))
        .output()
        .expect("pushguard trigger");
    assert!(out.status.success(), "{out:?}");
    let db = rusqlite::Connection::open(state_path(d)).expect("open the state file");
    let moved = db
        .execute(
            "UPDATE runs SET start = start - 18000, \"end\" = \"end\" - 18000 WHERE job = 'overdue'",
            [],
        )
        .expect("age the run");
    assert_eq!(moved, 1);
    drop(db);

    let runner = RunnerProcess::start(d, &gateway.url);
    for job in ["failing", "refused", "fine"] {
        assert_eq!(runner.trigger(job, None), 202, "trigger {job}");
    }
    let base = runner.url.clone();
    runner.wait_until("the runs and the dead letter on the page", LIMIT, || {
        let (status, _, page) = fetch(&format!("{base}/"), None);
        status == 200
            && page.contains("dead letter")
            && ["failing", "refused", "fine"]
                .iter()
                .all(|job| runner.runs(job, 1).len() == 1)
    });

    let dom = dump_dom(d, &format!("{base}/"));
    // Failing first, then overdue, then the rest by name.
    let order: Vec<usize> = ["failing", "overdue", "fine", "refused"]
        .iter()
        .map(|job| at(&dom, &format!("data-job=\"{job}\"")))
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "order {order:?}:\n{dom}"
    );
    let row = |job: &str| {
        let start = at(&dom, &format!("data-job=\"{job}\""));
        let end = dom[start..].find("</tr>").map_or(dom.len(), |e| start + e);
        dom[start..end].to_owned()
    };
    let failing = row("failing");
    assert!(failing.contains("data-status=\"failing\""), "{failing}");
    assert!(
        failing.contains("Asia/Tokyo") && failing.contains(" JST"),
        "{failing}"
    );
    assert!(
        failing.contains("At 00:00, on day 1, in January."),
        "{failing}"
    );
    assert!(failing.contains("<svg class=\"chart\""), "{failing}");
    assert!(failing.contains("data-outcome=\"failure\""), "{failing}");
    assert!(failing.contains(">3</td>"), "exit code 3: {failing}");
    assert!(
        failing.contains(&format!("<bdi>{RTL}</bdi>")),
        "isolated RTL: {failing}"
    );
    assert!(
        failing.contains("&lt;script&gt;alert(\"label\")"),
        "{failing}"
    );
    let overdue = row("overdue");
    assert!(overdue.contains("data-status=\"overdue\""), "{overdue}");
    assert!(overdue.contains("data-outcome=\"success\""), "{overdue}");
    assert!(row("fine").contains("data-status=\"ok\""), "{dom}");
    assert!(row("refused").contains("push refused"), "{dom}");
    let outbox = &dom[at(&dom, "id=\"outbox\"")..];
    let letter = &outbox[at(outbox, "<bdi>refused</bdi>")..];
    assert!(letter.contains("dead letter"), "{outbox}");
    assert!(
        letter.contains("inconsistent with existing metrics"),
        "the reason: {outbox}"
    );
    assert!(
        dom.contains("<caption>Jobs, failing and overdue first</caption>"),
        "{dom}"
    );
    assert!(dom.contains("<th scope=\"col\">Next run</th>"), "{dom}");
    assert_escaped(&dom);

    let job_url = format!("{base}/jobs/failing");
    let dom = dump_dom(d, &job_url);
    let output = &dom[at(&dom, "id=\"output\"")..];
    assert!(output.contains("<bdi>مرحبا بالعالم</bdi>"), "{output}");
    assert!(output.contains("it's \"quoted\" &amp; more"), "{output}");
    assert!(output.contains("&lt;/pre&gt;&lt;img src=x"), "{output}");
    assert!(dom.contains("<caption>Runs of <bdi>failing</bdi>"), "{dom}");
    assert_escaped(&dom);

    let shots = screenshot_dir();
    screenshot(
        d,
        &format!("{base}/"),
        &shots.join("overview.png"),
        "1400,1000",
    );
    screenshot(d, &job_url, &shots.join("job.png"), "1200,900");
}

#[test]
fn page_asks_for_the_token_and_answers_a_skipped_trigger() {
    let gw = Pushgateway::start();
    let dir = workspace();
    let d = dir.path();
    write_job(
        d,
        "slow",
        &format!("schedule = \"{YEARLY}\"\ncommand = [\"sleep\", \"10\"]\noverlap = \"forbid\"\n"),
    );
    let runner = RunnerProcess::start_with(d, &gw.url, &[("PUSHGUARD_API_TOKEN", "s3cret")]);
    let base = runner.url.clone();

    // Without the token: the browser's own sign-in prompt, no page.
    let (status, headers, body) = fetch(&format!("{base}/"), None);
    assert_eq!(status, 401, "{body}");
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "www-authenticate" && v.starts_with("Basic ")),
        "{headers:?}"
    );
    assert!(!body.contains("slow"), "{body}");
    // The token as the Basic password (any user name), or as a bearer token.
    let (status, headers, body) = fetch(&format!("{base}/"), Some("Basic dXNlcjpzM2NyZXQ="));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("type=\"password\""),
        "the form asks for the token: {body}"
    );
    assert!(
        !headers.iter().any(|(k, _)| k == "set-cookie"),
        "no cookie: {headers:?}"
    );
    assert_eq!(
        fetch(&format!("{base}/jobs/slow"), Some("Bearer s3cret")).0,
        200
    );
    assert_eq!(
        fetch(&format!("{base}/jobs/slow"), Some("Bearer wrong")).0,
        401
    );
    // The style sheet and the script need no token: they hold no data.
    assert_eq!(fetch(&format!("{base}/assets/page.css"), None).0, 200);

    let (status, body) = post_form(&base, "slow", "wrong", &base);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("token is missing or wrong"), "{body}");
    let (status, body) = post_form(&base, "slow", "s3cret", "http://elsewhere.example");
    assert_eq!(status, 403, "a post from another site: {body}");
    assert_eq!(running(&base), 0, "nothing started");

    let (status, body) = post_form(&base, "slow", "s3cret", &base);
    assert_eq!(status, 202, "{body}");
    assert!(body.contains("data-answer=\"started\""), "{body}");
    runner.wait_until("the run to start", LIMIT, || running(&base) == 1);
    let (status, body) = post_form(&base, "slow", "s3cret", &base);
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("data-answer=\"skipped\""), "{body}");
    assert!(
        body.contains("still going on") && body.contains("forbid"),
        "{body}"
    );
}
