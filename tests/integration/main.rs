//! The library's integration tests against a real Pushgateway and a real
//! OTLP receiver. One binary; one module per area.

use pushguard_testkit::{harness, otlp, prom};

mod gateway;
mod guard;
#[cfg(feature = "macros")]
mod job;
mod outbox;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "remote-write")]
mod remote_write;
mod spool;
mod trace;

/// Runs `body` on its own thread and fails the test when it has not finished
/// within `limit`: a regression that makes a push loop or hang fails here
/// instead of stalling the suite.
pub fn within<T: Send + 'static>(
    limit: std::time::Duration,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (done, finished) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let value = body();
        let _ = done.send(());
        value
    });
    match finished.recv_timeout(limit) {
        Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the test body did not finish within {limit:?}")
        }
    }
}
