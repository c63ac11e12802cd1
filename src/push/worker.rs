//! A private runtime thread for the blocking API.
//!
//! `reqwest` needs a tokio runtime; the caller may have none, or may be inside
//! one where blocking on another runtime panics. Requests are therefore
//! spawned onto a current-thread runtime owned by one background thread and
//! the caller waits on a plain channel with a time limit. The thread starts on
//! first use and ends when the last [`Gateway`](super::Gateway) clone is dropped.

use std::future::Future;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

#[derive(Debug, Default)]
pub(super) struct Worker {
    started: OnceLock<Option<Started>>,
}

#[derive(Debug)]
struct Started {
    handle: Handle,
    // Dropping the sender ends the thread's `block_on`, then the runtime is
    // dropped on its own thread, where that is allowed.
    _stop: oneshot::Sender<()>,
}

impl Worker {
    fn start() -> Option<Started> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("pushguard-push".into())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })
            .ok()?;
        Some(Started {
            handle,
            _stop: stop,
        })
    }

    /// Runs `fut` on the worker and waits at most `limit` for its result;
    /// `None` when the limit passed or the worker could not start.
    pub(super) fn run<F, T>(&self, fut: F, limit: Duration) -> Option<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let started = self.started.get_or_init(Self::start).as_ref()?;
        let (tx, rx) = mpsc::sync_channel(1);
        let task = started.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        match rx.recv_timeout(limit) {
            Ok(value) => Some(value),
            Err(_) => {
                task.abort();
                None
            }
        }
    }
}
