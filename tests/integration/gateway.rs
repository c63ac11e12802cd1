//! The push client against a real Pushgateway: methods, encoding, failures.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use pushguard::{Body, Gateway, GroupingKey, Method, PushError};

use crate::harness::{FlakyProxy, Hang, ProxyMode, Pushgateway, SwitchProxy, wait_until};

fn client(url: &str) -> Gateway {
    Gateway::builder()
        .url(url)
        .backoff(Duration::from_millis(10))
        .build()
        .expect("gateway client")
}

fn body(samples: &[(&str, f64)]) -> Body {
    let mut body = Body::new();
    for (name, value) in samples {
        body.gauge(name, "test metric", *value)
            .expect("valid sample");
    }
    body
}

#[test]
fn post_adds_put_replaces_delete_removes() {
    let gw = Pushgateway::start();
    let client = client(&gw.url);
    let key = GroupingKey::new("methods").unwrap();

    client
        .push(&key, Method::Post, &body(&[("a", 1.0), ("b", 2.0)]))
        .unwrap();
    client
        .push(&key, Method::Post, &body(&[("b", 3.0)]))
        .unwrap();
    let group = gw.group("methods", &[]).expect("group after POST");
    assert_eq!(
        group.value("a", &[]),
        Some(1.0),
        "POST must keep families it does not carry"
    );
    assert_eq!(group.value("b", &[]), Some(3.0));

    client
        .push(&key, Method::Put, &body(&[("c", 4.0)]))
        .unwrap();
    let group = gw.group("methods", &[]).expect("group after PUT");
    assert!(
        !group.has("a") && !group.has("b"),
        "PUT must replace the group: {:?}",
        group.families()
    );
    assert_eq!(group.value("c", &[]), Some(4.0));

    let report = client.delete(&key).unwrap();
    assert_eq!(report.attempts, 1);
    assert!(
        gw.group("methods", &[]).is_none(),
        "DELETE must remove the group"
    );
}

#[test]
fn text_and_registry_families_arrive_typed() {
    let gw = Pushgateway::start();
    let registry = prometheus::Registry::new();
    let hist = prometheus::Histogram::with_opts(
        prometheus::HistogramOpts::new("load_seconds", "Load time.").buckets(vec![0.1, 1.0]),
    )
    .unwrap();
    registry.register(Box::new(hist.clone())).unwrap();
    hist.observe(0.5);
    let mut body = Body::new();
    body.add_registry(&registry).unwrap();
    body.add_text("# TYPE files_total counter\nfiles_total{kind=\"a b\"} 7\n")
        .unwrap();
    client(&gw.url)
        .push(&GroupingKey::new("typed").unwrap(), Method::Post, &body)
        .unwrap();
    let group = gw.group("typed", &[]).unwrap();
    assert_eq!(
        group.family_type("load_seconds").as_deref(),
        Some("HISTOGRAM")
    );
    assert_eq!(group.family_type("files_total").as_deref(), Some("COUNTER"));
    assert_eq!(group.value("files_total", &[("kind", "a b")]), Some(7.0));
    assert!(
        gw.metrics_text()
            .contains("load_seconds_bucket{instance=\"\",job=\"typed\",le=\"1\"} 1")
    );
}

/// Any UTF-8 label value (and job name) comes back from the gateway byte for byte.
#[test]
fn any_utf8_grouping_value_round_trips() {
    let gw = Pushgateway::start();
    let client = client(&gw.url);
    let values = prop_oneof![
        Just(String::new()),
        Just("/".to_owned()),
        Just("a/b/c".to_owned()),
        Just(".".to_owned()),
        Just(" +%\"'\n\t=@😀 ".to_owned()),
        "\\PC{0,16}",
        any::<String>().prop_filter("no NUL", |s| !s.contains('\0')),
    ];
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    });
    runner
        .run(&("[^\u{0}]{1,12}", values), |(job, value)| {
            let key = GroupingKey::new(job.clone())
                .unwrap()
                .label("v", value.clone())
                .unwrap();
            client
                .push(&key, Method::Put, &body(&[("round_trip", 1.0)]))
                .unwrap();
            let groups = gw.groups();
            let found = groups.iter().any(|g| {
                let labels = g.labels();
                labels.contains(&("job".to_owned(), job.clone()))
                    && labels.contains(&("v".to_owned(), value.clone()))
            });
            let seen: Vec<_> = groups.iter().map(|g| g.labels()).collect();
            prop_assert!(found, "job {job:?} / value {value:?} not found: {seen:?}");
            client.delete(&key).unwrap();
            Ok(())
        })
        .unwrap();
}

#[test]
fn bad_request_is_not_retried_and_carries_the_reason() {
    let gw = Pushgateway::start();
    let proxy = FlakyProxy::start(gw.port, 0, 500, "");
    let client = client(&proxy.url);
    let key = GroupingKey::new("conflict").unwrap();
    // A family whose type differs from the same family in another group is
    // refused by the gateway as inconsistent.
    let other = GroupingKey::new("conflict_other").unwrap();
    client
        .push(&other, Method::Post, &body(&[("x", 1.0)]))
        .unwrap();
    let mut counter = Body::new();
    counter.add_text("# TYPE x counter\nx 2\n").unwrap();
    let before = proxy.requests.load(std::sync::atomic::Ordering::SeqCst);
    let err = client.push(&key, Method::Post, &counter).unwrap_err();
    let after = proxy.requests.load(std::sync::atomic::Ordering::SeqCst);
    match &err {
        PushError::Rejected { status, body, .. } => {
            assert_eq!(*status, 400);
            assert!(
                body.contains("inconsistent with existing metrics"),
                "reason text missing: {body}"
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(after - before, 1, "a 400 must not be retried");
    assert!(!err.is_retryable());
    // The gateway keeps no sample of a refused push, only the failure time.
    if let Some(group) = gw.group("conflict", &[]) {
        assert!(!group.has("x"), "a refused push must store no sample");
        assert!(group.value("push_failure_time_seconds", &[]).unwrap_or(0.0) > 0.0);
    }
}

#[test]
fn server_errors_are_retried_until_the_gateway_accepts() {
    let gw = Pushgateway::start();
    let proxy = FlakyProxy::start(gw.port, 2, 503, "warming up");
    let report = client(&proxy.url)
        .push(
            &GroupingKey::new("flaky").unwrap(),
            Method::Post,
            &body(&[("ok", 1.0)]),
        )
        .unwrap();
    assert_eq!(report.attempts, 3);
    assert_eq!(proxy.requests.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(gw.group("flaky", &[]).unwrap().value("ok", &[]), Some(1.0));
}

#[test]
fn retries_stop_at_the_limit_with_the_last_answer() {
    let gw = Pushgateway::start();
    let proxy = FlakyProxy::start(gw.port, 100, 502, "bad gateway");
    let gateway = Gateway::builder()
        .url(&proxy.url)
        .retries(2)
        .backoff(Duration::from_millis(5))
        .build()
        .unwrap();
    let err = gateway
        .push(
            &GroupingKey::new("never").unwrap(),
            Method::Post,
            &body(&[("ok", 1.0)]),
        )
        .unwrap_err();
    assert!(
        matches!(err, PushError::Rejected { status: 502, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("bad gateway"), "{err}");
    assert_eq!(proxy.requests.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert!(gw.group("never", &[]).is_none());
}

#[test]
fn a_down_gateway_fails_fast_with_a_transport_error() {
    let port = Pushgateway::start().stop();
    let started = Instant::now();
    let err = client(&format!("http://127.0.0.1:{port}"))
        .push(
            &GroupingKey::new("down").unwrap(),
            Method::Post,
            &body(&[("ok", 1.0)]),
        )
        .unwrap_err();
    assert!(
        matches!(err, PushError::Transport { attempts: 4, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_hanging_gateway_is_bounded_by_the_deadline() {
    let hang = Hang::start();
    let deadline = Duration::from_millis(600);
    let gateway = Gateway::builder()
        .url(&hang.url)
        .deadline(deadline)
        .attempt_timeout(Duration::from_millis(250))
        .backoff(Duration::from_millis(10))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = gateway
        .push(
            &GroupingKey::new("hung").unwrap(),
            Method::Post,
            &body(&[("ok", 1.0)]),
        )
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, PushError::Timeout { .. }), "{err:?}");
    assert!(
        took >= Duration::from_millis(250),
        "gave up too early: {took:?}"
    );
    assert!(
        took < deadline + Duration::from_millis(400),
        "deadline not held: {took:?}"
    );
}

#[test]
fn invalid_bodies_never_reach_the_network() {
    let hang = Hang::start(); // would hang if anything were sent
    let client = client(&hang.url);
    let key = GroupingKey::new("j").unwrap().label("host", "a").unwrap();
    let mut with_job = Body::new();
    with_job.add_text("x{job=\"other\"} 1\n").unwrap();
    let started = Instant::now();
    let err = client.push(&key, Method::Post, &with_job).unwrap_err();
    assert!(err.to_string().contains("\"job\""), "{err}");
    let mut with_host = Body::new();
    with_host.add_text("x{host=\"b\"} 1\n").unwrap();
    let err = client.push(&key, Method::Post, &with_host).unwrap_err();
    assert!(err.to_string().contains("\"host\""), "{err}");
    assert!(started.elapsed() < Duration::from_millis(200));
    let mut body = Body::new();
    assert!(
        body.add_text("x 1 1700000000000\n")
            .unwrap_err()
            .to_string()
            .contains("timestamp")
    );
    assert!(Body::new().add_text("x 1\ny 1\nx 2\n").is_err());
}

#[test]
fn works_inside_tokio_runtimes() {
    let gw = Pushgateway::start();
    let client = client(&gw.url);
    let key = GroupingKey::new("in_runtime").unwrap();
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    current.block_on(async {
        client
            .push(&key, Method::Post, &body(&[("current", 1.0)]))
            .unwrap();
    });
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    multi.block_on(async {
        client
            .push(&key, Method::Post, &body(&[("multi", 1.0)]))
            .unwrap();
        client
            .push_async(&key, Method::Post, &body(&[("async_push", 1.0)]))
            .await
            .unwrap();
    });
    drop(multi);
    let group = gw.group("in_runtime", &[]).unwrap();
    for family in ["current", "multi", "async_push"] {
        assert_eq!(group.value(family, &[]), Some(1.0), "{family}");
    }
}

#[test]
fn refusals_name_the_real_method_status_and_url() {
    crate::within(Duration::from_secs(10), || {
        let proxy = SwitchProxy::start(ProxyMode::Answer(409, "  not this one \n"));
        let client = client(&proxy.url);
        let key = GroupingKey::new("refused")
            .unwrap()
            .label("host", "a")
            .unwrap();
        let url = format!("{}/metrics/job/refused/host/a", proxy.url);
        let refusals = [
            (
                "POST",
                client.push(&key, Method::Post, &body(&[("x", 1.0)])),
            ),
            ("PUT", client.push(&key, Method::Put, &body(&[("x", 1.0)]))),
            ("DELETE", client.delete(&key)),
        ];
        for (name, result) in refusals {
            match result.unwrap_err() {
                PushError::Rejected {
                    method,
                    url: got,
                    status,
                    body,
                } => {
                    assert_eq!((method, got.as_str(), status), (name, url.as_str(), 409));
                    assert_eq!(body, "not this one", "trimmed reason");
                }
                other => panic!("expected a refusal of {name}, got {other:?}"),
            }
        }
        assert_eq!(proxy.requests(), 3, "a 409 is not retried");
    });
}

#[test]
fn a_deadline_counts_every_attempt_it_made() {
    crate::within(Duration::from_secs(10), || {
        let proxy = SwitchProxy::start(ProxyMode::Hang);
        let deadline = Duration::from_millis(700);
        let gateway = Gateway::builder()
            .url(&proxy.url)
            .deadline(deadline)
            .attempt_timeout(Duration::from_millis(200))
            .retries(10)
            .backoff(Duration::from_millis(10))
            .build()
            .unwrap();
        let started = Instant::now();
        let err = gateway
            .push(
                &GroupingKey::new("hung_attempts").unwrap(),
                Method::Post,
                &body(&[("ok", 1.0)]),
            )
            .unwrap_err();
        let took = started.elapsed();
        let PushError::Timeout {
            attempts,
            deadline: reported,
            url,
        } = err
        else {
            panic!("expected a timeout, got {err:?}");
        };
        assert_eq!(reported, deadline);
        assert_eq!(url, format!("{}/metrics/job/hung_attempts", proxy.url));
        // 200 ms attempts with 10 ms pauses: three whole ones and a short fourth.
        assert!((3..=4).contains(&attempts), "{attempts} attempts");
        wait_until(
            "the proxy saw every attempt",
            Duration::from_secs(2),
            || proxy.requests() == attempts as usize,
        );
        assert!(took >= deadline, "gave up early: {took:?}");
        assert!(
            took < deadline + Duration::from_millis(400),
            "took {took:?}"
        );
    });
}

#[test]
fn backoff_doubles_between_retries() {
    crate::within(Duration::from_secs(10), || {
        let gw = Pushgateway::start();
        let proxy = FlakyProxy::start(gw.port, 3, 503, "warming up");
        let gateway = Gateway::builder()
            .url(&proxy.url)
            .retries(3)
            .backoff(Duration::from_millis(100))
            .build()
            .unwrap();
        let started = Instant::now();
        let report = gateway
            .push(
                &GroupingKey::new("backoff").unwrap(),
                Method::Post,
                &body(&[("ok", 1.0)]),
            )
            .unwrap();
        let took = started.elapsed();
        assert_eq!((report.status, report.attempts), (200, 4));
        // 100 + 200 + 400 ms of backoff.
        assert!(took >= Duration::from_millis(700), "took {took:?}");
        assert!(took < Duration::from_millis(2500), "took {took:?}");
        assert!(report.elapsed <= took && report.elapsed >= Duration::from_millis(700));
    });
}

#[test]
fn a_burst_of_pushes_through_one_client_goes_over_a_few_kept_alive_connections() {
    use std::io::Write as _;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    // A gateway stand-in that holds every request until released, so that
    // the requests it holds at once are the client's requests in flight,
    // then answers 200 over kept-alive connections.
    #[derive(Default)]
    struct Seen {
        connections: AtomicUsize,
        in_flight: AtomicUsize,
        most: AtomicUsize,
        answered: AtomicUsize,
        open: AtomicBool,
        paths: Mutex<Vec<String>>,
    }
    let seen = Arc::new(Seen::default());
    let listener = {
        let seen = seen.clone();
        crate::harness::Listener::start(move |stream| {
            seen.connections.fetch_add(1, Ordering::SeqCst);
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut stream = stream;
            while let Ok(Some(request)) = crate::harness::read_request(&mut reader) {
                let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                seen.most.fetch_max(now, Ordering::SeqCst);
                seen.paths.lock().unwrap().push(request.path);
                crate::harness::wait_until(
                    "the test opens the gate",
                    Duration::from_secs(20),
                    || seen.open.load(Ordering::SeqCst),
                );
                seen.in_flight.fetch_sub(1, Ordering::SeqCst);
                seen.answered.fetch_add(1, Ordering::SeqCst);
                if stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .is_err()
                {
                    break;
                }
            }
        })
    };
    let gateway = Gateway::builder()
        .url(&listener.url)
        .deadline(Duration::from_secs(30))
        .attempt_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    std::thread::scope(|scope| {
        let pushes: Vec<_> = (0..40)
            .map(|i| {
                let gateway = gateway.clone();
                scope.spawn(move || {
                    gateway.push(
                        &GroupingKey::new(format!("burst_{i}")).unwrap(),
                        Method::Put,
                        &body(&[("ok", 1.0)]),
                    )
                })
            })
            .collect();
        // The first turns are taken; the other pushes wait for theirs.
        wait_until("eight requests in flight", Duration::from_secs(10), || {
            seen.in_flight.load(Ordering::SeqCst) == 8
        });
        seen.open.store(true, Ordering::SeqCst);
        for push in pushes {
            push.join()
                .unwrap()
                .expect("every push of the burst is confirmed");
        }
    });
    assert_eq!(seen.answered.load(Ordering::SeqCst), 40);
    let most = seen.most.load(Ordering::SeqCst);
    assert_eq!(most, 8, "at most 8 requests in flight at once, saw {most}");
    let connections = seen.connections.load(Ordering::SeqCst);
    assert!(
        connections <= 8,
        "40 pushes opened {connections} connections: they were not kept alive"
    );
    let mut paths = seen.paths.lock().unwrap().clone();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 40, "every group reached the gateway once");
}
