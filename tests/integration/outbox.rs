//! The outbox under concurrency and gateway faults: one lease holder per
//! group, takeover when it gives up, a waiting push bounded by its own
//! deadline, and `State::flush` against a gateway that fails or refuses.
//! Every test runs against a real Pushgateway behind a [`SwitchProxy`] and
//! under its own time limit ([`within`]), so a push that loops fails the test.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pushguard::{Body, Gateway, GroupingKey, Method, PushError, PushReport, State};

use crate::harness::{ProxyMode, Pushgateway, SwitchProxy, wait_until};
use crate::within;

/// Well under cargo-mutants' per-mutant timeout, far above a normal run
/// (about a second), and below the pushes' own 15 s deadlines.
const LIMIT: Duration = Duration::from_secs(10);

fn gateway(url: &str, retries: u32, deadline: Duration) -> Gateway {
    Gateway::builder()
        .url(url)
        .retries(retries)
        .backoff(Duration::from_millis(10))
        .attempt_timeout(deadline)
        .deadline(deadline)
        .build()
        .unwrap()
}

fn body(value: f64) -> Body {
    let mut body = Body::new();
    body.gauge("outbox_value", "A value.", value).unwrap();
    body
}

/// A push through its own handle on the state file, as another process would.
fn push_in_thread(
    path: &std::path::Path,
    gateway: Gateway,
    key: &GroupingKey,
    value: f64,
) -> JoinHandle<Result<PushReport, PushError>> {
    let state = State::open(path).unwrap();
    let key = key.clone();
    std::thread::spawn(move || state.push(&gateway, &key, Method::Put, &body(value)))
}

/// Starts a push whose request hangs in the proxy, so that it holds the
/// group's lease, and returns once the proxy has its request.
fn hold_lease(
    path: &std::path::Path,
    proxy: &SwitchProxy,
    key: &GroupingKey,
    retries: u32,
) -> JoinHandle<Result<PushReport, PushError>> {
    let before = proxy.requests();
    let holder = push_in_thread(
        path,
        gateway(&proxy.url, retries, Duration::from_secs(15)),
        key,
        1.0,
    );
    wait_until("the holder's request", Duration::from_secs(5), || {
        proxy.requests() > before
    });
    holder
}

#[test]
fn a_waiting_push_is_delivered_by_the_lease_holder() {
    within(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let state = State::open(&path).unwrap();
        let gw = Pushgateway::start();
        let proxy = SwitchProxy::start(ProxyMode::Hang);
        let key = GroupingKey::new("outbox_holder_delivers").unwrap();
        // The holder retries once: its first attempt hangs until the proxy forwards.
        let holder = hold_lease(&path, &proxy, &key, 1);
        let waiter = push_in_thread(
            &path,
            gateway(&proxy.url, 1, Duration::from_secs(15)),
            &key,
            2.0,
        );
        wait_until("the waiting push spooled", Duration::from_secs(5), || {
            state.outbox().unwrap().len() == 2
        });
        // The waiter polls the lease meanwhile; it must not take it.
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(proxy.requests(), 1, "only the holder sends");
        proxy.set(ProxyMode::Forward(gw.port));

        let held = holder.join().unwrap().unwrap();
        assert_eq!(
            (held.status, held.attempts, held.spooled.as_deref()),
            (200, 2, None),
            "{held:?}"
        );
        let waited = waiter.join().unwrap().unwrap();
        // Delivered by the other process: no status or attempt of its own.
        assert_eq!(
            (
                waited.status,
                waited.attempts,
                waited.replayed,
                waited.spooled.as_deref(),
                waited.outbox_entry
            ),
            (0, 0, 0, None, None),
            "{waited:?}"
        );
        assert!(waited.is_delivered());
        assert_eq!(
            proxy.requests(),
            3,
            "a hung attempt, its retry, the waiter's push"
        );
        assert!(state.outbox().unwrap().is_empty());
        let group = gw.group("outbox_holder_delivers", &[]).expect("delivered");
        assert_eq!(group.value("outbox_value", &[]), Some(2.0), "newest last");

        // Neither left a lease behind: the next push goes out at once.
        let next = gateway(&proxy.url, 0, Duration::from_millis(500));
        let report = state.push(&next, &key, Method::Put, &body(3.0)).unwrap();
        assert_eq!(
            (report.status, report.spooled.as_deref()),
            (200, None),
            "{report:?}"
        );
    });
}

#[test]
fn a_waiting_push_takes_over_when_the_holder_gives_up() {
    within(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let state = State::open(&path).unwrap();
        let gw = Pushgateway::start();
        let proxy = SwitchProxy::start(ProxyMode::Hang);
        let key = GroupingKey::new("outbox_takeover").unwrap();
        // No retry: the holder gives up when its hung request is cut.
        let holder = hold_lease(&path, &proxy, &key, 0);
        let waiter = push_in_thread(
            &path,
            gateway(&proxy.url, 0, Duration::from_secs(15)),
            &key,
            2.0,
        );
        wait_until("the waiting push spooled", Duration::from_secs(5), || {
            state.outbox().unwrap().len() == 2
        });
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(proxy.requests(), 1, "only the holder sends");
        proxy.set(ProxyMode::Forward(gw.port));

        let held = holder.join().unwrap().unwrap();
        let held_entry = held.outbox_entry.expect("the holder's entry");
        assert!(held.spooled.is_some(), "{held:?}");
        assert_eq!((held.status, held.attempts), (0, 0), "{held:?}");
        let waited = waiter.join().unwrap().unwrap();
        // It delivered the holder's older push first, then its own.
        assert_eq!(
            (
                waited.status,
                waited.attempts,
                waited.replayed,
                waited.spooled.as_deref(),
                waited.outbox_entry
            ),
            (200, 1, 1, None, None),
            "{waited:?}"
        );
        assert_eq!(
            waited.url,
            format!("{}/metrics/job/outbox_takeover", proxy.url)
        );
        let entries = state.outbox().unwrap();
        assert!(
            entries.iter().all(|e| e.id != held_entry),
            "the holder's entry was delivered: {entries:?}"
        );
        assert!(entries.is_empty(), "{entries:?}");
        let group = gw.group("outbox_takeover", &[]).expect("delivered");
        assert_eq!(group.value("outbox_value", &[]), Some(2.0), "newest last");
    });
}

#[test]
fn a_push_kept_from_the_lease_is_spooled_at_its_own_deadline() {
    within(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let state = State::open(&path).unwrap();
        let gw = Pushgateway::start();
        let proxy = SwitchProxy::start(ProxyMode::Hang);
        let key = GroupingKey::new("outbox_kept_out").unwrap();
        let holder = hold_lease(&path, &proxy, &key, 0);

        let deadline = Duration::from_millis(600);
        let short = gateway(&proxy.url, 0, deadline);
        let started = Instant::now();
        let report = state.push(&short, &key, Method::Put, &body(2.0)).unwrap();
        let took = started.elapsed();
        assert_eq!(
            report.spooled.as_deref(),
            Some("another pushguard process held this group's delivery until the deadline"),
            "{report:?}"
        );
        assert_eq!((report.status, report.attempts, report.replayed), (0, 0, 0));
        assert!(took >= deadline, "gave up before its deadline: {took:?}");
        assert!(took < deadline + Duration::from_secs(1), "took {took:?}");
        let own = report.outbox_entry.expect("its entry");
        let entries = state.outbox().unwrap();
        let entry = entries.iter().find(|e| e.id == own).expect("still spooled");
        assert_eq!(
            (entry.attempts, entry.dead),
            (0, false),
            "never sent: {entry:?}"
        );

        // A flush meanwhile leaves the held group alone.
        let flushed = state.flush(&short).unwrap();
        assert_eq!(
            (flushed.delivered, flushed.rejected, flushed.deferred),
            (0, 0, 1)
        );
        assert_eq!(
            flushed.last_error, None,
            "deferred for the lease, not an error"
        );
        assert_eq!(proxy.requests(), 1, "only the holder sent");

        // The holder gives up; the next flush delivers both, in order.
        proxy.set(ProxyMode::Down);
        let held = holder.join().unwrap().unwrap();
        assert!(held.spooled.is_some(), "{held:?}");
        proxy.set(ProxyMode::Forward(gw.port));
        let flushed = state.flush(&short).unwrap();
        assert_eq!(
            (flushed.delivered, flushed.rejected, flushed.deferred),
            (2, 0, 0),
            "{flushed:?}"
        );
        assert!(state.outbox().unwrap().is_empty());
        let group = gw.group("outbox_kept_out", &[]).expect("delivered");
        assert_eq!(group.value("outbox_value", &[]), Some(2.0), "newest last");
    });
}

#[test]
fn flush_defers_on_failures_and_dead_letters_refusals() {
    within(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path().join("state.db")).unwrap();
        let proxy = SwitchProxy::start(ProxyMode::Down);
        let gw = gateway(&proxy.url, 0, Duration::from_secs(2));
        let first = GroupingKey::new("outbox_flush_a").unwrap();
        let second = GroupingKey::new("outbox_flush_b").unwrap();
        for (key, value) in [(&first, 1.0), (&first, 2.0), (&second, 3.0)] {
            let report = state.push(&gw, key, Method::Post, &body(value)).unwrap();
            assert!(report.spooled.is_some(), "{report:?}");
        }
        let attempts = |state: &State| -> Vec<(u32, bool)> {
            state
                .outbox()
                .unwrap()
                .iter()
                .map(|e| (e.attempts, e.dead))
                .collect()
        };
        // The second push of a group tried the older entry first, and stopped
        // there: it was never sent itself.
        assert_eq!(attempts(&state), [(2, false), (0, false), (1, false)]);

        // A gateway that keeps failing: each group stops at its first entry.
        proxy.set(ProxyMode::Answer(503, "busy right now"));
        let flushed = state.flush(&gw).unwrap();
        assert_eq!(
            (flushed.delivered, flushed.rejected, flushed.deferred),
            (0, 0, 2),
            "{flushed:?}"
        );
        let error = flushed.last_error.expect("the failure");
        assert!(error.contains("busy right now"), "{error}");
        assert_eq!(attempts(&state), [(3, false), (0, false), (2, false)]);

        // A gateway that refuses: every entry is a dead letter, none retried.
        proxy.set(ProxyMode::Answer(400, "refused here"));
        let flushed = state.flush(&gw).unwrap();
        assert_eq!(
            (flushed.delivered, flushed.rejected, flushed.deferred),
            (0, 3, 0),
            "{flushed:?}"
        );
        assert_eq!(flushed.last_error, None);
        assert_eq!(attempts(&state), [(4, true), (1, true), (3, true)]);
        let entries = state.outbox().unwrap();
        assert!(
            entries.iter().all(|e| e
                .last_error
                .as_deref()
                .is_some_and(|t| t.contains("refused here"))),
            "{entries:?}"
        );
        let requests = proxy.requests();
        let flushed = state.flush(&gw).unwrap();
        assert_eq!(flushed, pushguard::FlushReport::default());
        assert_eq!(
            proxy.requests(),
            requests,
            "dead letters are never sent again"
        );
    });
}

#[test]
fn state_push_reports_what_the_gateway_answered() {
    within(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path().join("state.db")).unwrap();
        let gw = Pushgateway::start();
        let flaky = crate::harness::FlakyProxy::start(gw.port, 1, 503, "warming up");
        let client = gateway(&flaky.url, 2, Duration::from_secs(5));
        let key = GroupingKey::new("outbox_fields").unwrap();

        let report = state.push(&client, &key, Method::Post, &body(5.0)).unwrap();
        assert_eq!(
            (
                report.status,
                report.attempts,
                report.replayed,
                report.spooled.as_deref(),
                report.outbox_entry
            ),
            (200, 2, 0, None, None),
            "{report:?}"
        );
        assert_eq!(
            report.url,
            format!("{}/metrics/job/outbox_fields", flaky.url)
        );
        assert!(state.outbox().unwrap().is_empty());
        let group = gw.group("outbox_fields", &[]).expect("delivered");
        assert_eq!(group.value("outbox_value", &[]), Some(5.0));

        let report = state.delete(&client, &key).unwrap();
        assert_eq!(
            (report.status, report.attempts, report.replayed),
            (202, 1, 0),
            "{report:?}"
        );
        assert!(gw.group("outbox_fields", &[]).is_none(), "deleted");

        // A refusal through the outbox names the stored method.
        let refusing = SwitchProxy::start(ProxyMode::Answer(409, "conflict here"));
        let client = gateway(&refusing.url, 2, Duration::from_secs(5));
        for (method, name) in [(Method::Put, "PUT"), (Method::Post, "POST")] {
            let error = state.push(&client, &key, method, &body(1.0)).unwrap_err();
            assert_refused(&error, name, 409, "conflict here");
        }
        let error = state.delete(&client, &key).unwrap_err();
        assert_refused(&error, "DELETE", 409, "conflict here");
        assert_eq!(refusing.requests(), 3, "refusals are not retried");
        let entries = state.outbox().unwrap();
        assert_eq!(entries.len(), 3);
        assert!(entries.iter().all(|e| e.dead), "{entries:?}");
    });
}

pub(crate) fn assert_refused(error: &PushError, method: &str, status: u16, reason: &str) {
    match error {
        PushError::Rejected {
            method: got,
            status: code,
            body,
            ..
        } => {
            assert_eq!((*got, *code), (method, status), "{error:?}");
            assert_eq!(body, reason);
        }
        other => panic!("expected a refusal of {method}, got {other:?}"),
    }
}

// Batched delivery: a flush sends a group's entries a batch at a time and
// records each batch in one transaction. These scenarios run on the state
// file here and on PostgreSQL in `postgres.rs`.

/// Spools PUTs of `values` to `key` while the gateway behind `client` is
/// down; returns their entry ids, oldest first.
fn spool_down(
    state: &State,
    client: &Gateway,
    key: &GroupingKey,
    values: impl IntoIterator<Item = u32>,
    body: impl Fn(f64) -> Body,
) -> Vec<i64> {
    values
        .into_iter()
        .map(|value| {
            let report = state
                .push(client, key, Method::Put, &body(f64::from(value)))
                .unwrap();
            assert!(report.spooled.is_some(), "{report:?}");
            report.outbox_entry.expect("a spooled push names its entry")
        })
        .collect()
}

/// The `outbox_value` of every push the proxy read for `key`, in order.
fn sent_values(proxy: &SwitchProxy, key: &GroupingKey) -> Vec<f64> {
    let path = key.path();
    proxy
        .seen()
        .iter()
        .filter(|seen| seen.path == path)
        .map(|seen| seen.sample("outbox_value").expect("an outbox_value sample"))
        .collect()
}

fn values(range: std::ops::RangeInclusive<u32>) -> Vec<f64> {
    range.map(f64::from).collect()
}

fn ids(state: &State) -> Vec<i64> {
    state.outbox().unwrap().iter().map(|e| e.id).collect()
}

/// The gateway fails (503) at the fifth entry of a batch: the four it
/// confirmed are gone, the failed one and every newer one stay, in order;
/// the next flush sends them after the ones already confirmed.
pub(crate) fn a_failure_mid_batch_keeps_exactly_the_unconfirmed_entries(state: &State) {
    let gw = Pushgateway::start();
    let proxy = SwitchProxy::start(ProxyMode::Down);
    let client = gateway(&proxy.url, 0, Duration::from_secs(5));
    let key = GroupingKey::new("outbox_batch_failure").unwrap();
    let spooled = spool_down(state, &client, &key, 1..=10, body);

    proxy.set(ProxyMode::Answer(503, "overloaded mid-batch"));
    proxy.queue(vec![ProxyMode::Forward(gw.port); 4]);
    let report = state.flush(&client).unwrap();
    assert_eq!(
        (report.delivered, report.rejected, report.deferred),
        (4, 0, 1),
        "{report:?}"
    );
    let error = report.last_error.expect("why the group stopped");
    assert!(error.contains("overloaded mid-batch"), "{error}");
    let left = state.outbox().unwrap();
    assert_eq!(ids(state), spooled[4..], "{left:?}");
    assert!(left.iter().all(|e| !e.dead), "{left:?}");
    assert!(
        left[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("overloaded mid-batch")),
        "{left:?}"
    );
    assert!(left[1..].iter().all(|e| e.attempts == 0), "{left:?}");
    let group = gw.group("outbox_batch_failure", &[]).expect("the group");
    assert_eq!(group.value("outbox_value", &[]), Some(4.0));
    assert_eq!(sent_values(&proxy, &key), values(1..=5));

    proxy.set(ProxyMode::Forward(gw.port));
    let report = state.flush(&client).unwrap();
    assert_eq!(
        (report.delivered, report.rejected, report.deferred),
        (6, 0, 0),
        "{report:?}"
    );
    assert!(state.outbox().unwrap().is_empty());
    let group = gw.group("outbox_batch_failure", &[]).expect("the group");
    assert_eq!(group.value("outbox_value", &[]), Some(10.0));
    let mut expected = values(1..=5);
    expected.extend(values(5..=10));
    assert_eq!(sent_values(&proxy, &key), expected);
}

/// The gateway refuses (400) the fourth entry of a batch: that entry alone
/// becomes a dead letter, every other one is delivered, in order.
pub(crate) fn a_refusal_mid_batch_dead_letters_that_entry_alone(state: &State) {
    let gw = Pushgateway::start();
    let proxy = SwitchProxy::start(ProxyMode::Down);
    let client = gateway(&proxy.url, 0, Duration::from_secs(5));
    let key = GroupingKey::new("outbox_batch_refusal").unwrap();
    let spooled = spool_down(state, &client, &key, 1..=10, body);

    proxy.set(ProxyMode::Forward(gw.port));
    let mut script = vec![ProxyMode::Forward(gw.port); 3];
    script.push(ProxyMode::Answer(400, "refused mid-batch"));
    proxy.queue(script);
    let report = state.flush(&client).unwrap();
    assert_eq!(
        (report.delivered, report.rejected, report.deferred),
        (9, 1, 0),
        "{report:?}"
    );
    let left = state.outbox().unwrap();
    assert_eq!(ids(state), [spooled[3]], "{left:?}");
    assert!(left[0].dead, "{left:?}");
    assert!(
        left[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("refused mid-batch")),
        "{left:?}"
    );
    let group = gw.group("outbox_batch_refusal", &[]).expect("the group");
    assert_eq!(group.value("outbox_value", &[]), Some(10.0));
    assert_eq!(sent_values(&proxy, &key), values(1..=10));
    let requests = proxy.requests();
    assert_eq!(
        state.flush(&client).unwrap(),
        pushguard::FlushReport::default()
    );
    assert_eq!(
        proxy.requests(),
        requests,
        "a dead letter is never sent again"
    );
}

/// A body of about 300 KB: more than a batch holds.
fn big_body(value: f64) -> Body {
    let mut text = String::from("# TYPE outbox_padding gauge\n");
    for slot in 0..9_000 {
        text.push_str(&format!("outbox_padding{{slot=\"{slot:06}\"}} {slot}\n"));
    }
    let mut body = body(value);
    body.add_text(&text).unwrap();
    body
}

/// Entries each larger than a batch may hold, between small ones: each
/// goes, in order, and the group ends empty.
pub(crate) fn entries_larger_than_a_batch_are_delivered_in_order(state: &State) {
    let gw = Pushgateway::start();
    let proxy = SwitchProxy::start(ProxyMode::Down);
    let client = gateway(&proxy.url, 0, Duration::from_secs(5));
    let key = GroupingKey::new("outbox_batch_big").unwrap();
    let big = [2, 3, 5];
    let spooled = spool_down(state, &client, &key, 1..=6, |value| {
        if big.contains(&(value as u32)) {
            big_body(value)
        } else {
            body(value)
        }
    });
    let sizes: Vec<usize> = state.outbox().unwrap().iter().map(|e| e.bytes).collect();
    assert!(
        big.iter().all(|&b| sizes[b as usize - 1] > 256 * 1024),
        "{sizes:?}"
    );
    assert_eq!(spooled.len(), 6);

    proxy.set(ProxyMode::Forward(gw.port));
    let report = state.flush(&client).unwrap();
    assert_eq!(
        (report.delivered, report.rejected, report.deferred),
        (6, 0, 0),
        "{report:?}"
    );
    assert!(state.outbox().unwrap().is_empty());
    assert_eq!(sent_values(&proxy, &key), values(1..=6));
    let group = gw.group("outbox_batch_big", &[]).expect("the group");
    assert_eq!(group.value("outbox_value", &[]), Some(6.0));
    assert!(
        !group.has("outbox_padding"),
        "the newest push replaced the group"
    );
}

/// More groups than a flush reads at a time, and one group longer than
/// several batches: every entry is delivered, each group in order, and the
/// gateway holds each group's newest push.
pub(crate) fn many_groups_are_flushed_with_every_entry_delivered(state: &State) {
    const GROUPS: u32 = 300;
    const LONG: u32 = 150;
    let gw = Pushgateway::start();
    let proxy = SwitchProxy::start(ProxyMode::Down);
    let client = gateway(&proxy.url, 0, Duration::from_secs(5));
    let keys: Vec<GroupingKey> = (0..GROUPS)
        .map(|g| GroupingKey::new(format!("outbox_many_{g:03}")).unwrap())
        .collect();
    let long = GroupingKey::new("outbox_many_long").unwrap();
    // Interleaved, as runs of many jobs spool: two rounds over every group.
    for round in 1..=2 {
        for key in &keys {
            spool_down(state, &client, key, [round], body);
        }
    }
    spool_down(state, &client, &long, 1..=LONG, body);

    proxy.set(ProxyMode::Forward(gw.port));
    let report = state.flush(&client).unwrap();
    assert_eq!(
        (report.delivered, report.rejected, report.deferred),
        ((GROUPS * 2 + LONG) as usize, 0, 0),
        "{report:?}"
    );
    assert!(state.outbox().unwrap().is_empty());
    for key in &keys {
        assert_eq!(sent_values(&proxy, key), [1.0, 2.0], "{}", key.path());
    }
    assert_eq!(sent_values(&proxy, &long), values(1..=LONG));
    assert_eq!(gw.groups().len(), GROUPS as usize + 1);
    for (g, key) in keys.iter().enumerate().step_by(37) {
        let group = gw
            .group(&format!("outbox_many_{g:03}"), &[])
            .expect("a group");
        assert_eq!(
            group.value("outbox_value", &[]),
            Some(2.0),
            "{}",
            key.path()
        );
    }
    let group = gw.group("outbox_many_long", &[]).expect("the long group");
    assert_eq!(group.value("outbox_value", &[]), Some(f64::from(LONG)));
}

fn on_a_file(scenario: fn(&State)) {
    within(Duration::from_secs(60), move || {
        let dir = tempfile::tempdir().unwrap();
        scenario(&State::open(dir.path().join("state.db")).unwrap());
    });
}

#[test]
fn a_failure_mid_batch_keeps_exactly_the_unconfirmed_entries_on_a_file() {
    on_a_file(a_failure_mid_batch_keeps_exactly_the_unconfirmed_entries);
}

#[test]
fn a_refusal_mid_batch_dead_letters_that_entry_alone_on_a_file() {
    on_a_file(a_refusal_mid_batch_dead_letters_that_entry_alone);
}

#[test]
fn entries_larger_than_a_batch_are_delivered_in_order_on_a_file() {
    on_a_file(entries_larger_than_a_batch_are_delivered_in_order);
}

#[test]
fn many_groups_are_flushed_with_every_entry_delivered_on_a_file() {
    on_a_file(many_groups_are_flushed_with_every_entry_delivered);
}
