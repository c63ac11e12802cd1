//! Running one command job: argv without a shell, its own process group,
//! output captured line by line, a time limit that stops the whole group.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::sync::watch;

/// The process ids of the commands this runner started and still waits for:
/// the PID-1 reaper leaves those to their own waiter.
fn own_children() -> &'static Mutex<HashSet<i32>> {
    static OWN: std::sync::OnceLock<Mutex<HashSet<i32>>> = std::sync::OnceLock::new();
    OWN.get_or_init(Mutex::default)
}

/// As PID 1 (in a container), the runner inherits every orphaned process of
/// its jobs; this reaps the ones that exited, never the runner's own
/// commands. Returns how many were reaped.
pub(crate) fn reap_orphans() -> usize {
    use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
    let mut reaped = 0;
    loop {
        let peek = waitid(
            Id::All,
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
        );
        let pid = match peek {
            Ok(WaitStatus::StillAlive) | Err(_) => return reaped,
            Ok(status) => match status.pid() {
                Some(pid) => pid,
                None => return reaped,
            },
        };
        let own = own_children()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&pid.as_raw());
        if own {
            // Its own waiter reaps it; look again after that.
            return reaped;
        }
        if waitpid(pid, Some(WaitPidFlag::WNOHANG)).is_err() {
            return reaped;
        }
        reaped += 1;
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct CommandSpec {
    pub argv: Vec<String>,
    pub workdir: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub timeout: Option<Duration>,
    pub grace: Duration,
    pub tail_lines: usize,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    /// It exited by itself (code, or 128+signal).
    Exited { code: i32, signal: Option<i32> },
    /// It ran past its time limit and was stopped.
    TimedOut,
    /// It was stopped from outside (overlap = replace, shutdown).
    Stopped,
    /// It could not be started.
    NotStarted { code: i32, reason: String },
}

impl Ending {
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            Ending::Exited { code, .. } => *code,
            Ending::TimedOut => 124,
            Ending::Stopped => 143,
            Ending::NotStarted { code, .. } => *code,
        }
    }
}

/// The last lines a command printed, bounded.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tail {
    lines: Arc<Mutex<VecDeque<String>>>,
    limit: usize,
}

impl Tail {
    pub(crate) fn new(limit: usize) -> Tail {
        Tail {
            lines: Arc::default(),
            limit,
        }
    }

    pub(crate) fn push(&self, line: String) {
        if self.limit == 0 {
            return;
        }
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == self.limit {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    pub(crate) fn text(&self) -> String {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// Runs `spec`, logging each output line as `[job] line`, until it ends, times
/// out or `stop` turns true.
pub(crate) async fn run(
    job: &str,
    spec: &CommandSpec,
    mut stop: watch::Receiver<bool>,
) -> (Ending, Tail) {
    let tail = Tail::new(spec.tail_lines);
    let Some((program, args)) = spec.argv.split_first() else {
        return (
            Ending::NotStarted {
                code: 127,
                reason: "empty command".into(),
            },
            tail,
        );
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &spec.workdir {
        command.current_dir(dir);
    }
    // Registered while the spawn still holds the lock, so the PID-1 reaper
    // can never take this child's exit status first.
    let spawned = {
        let mut own = own_children().lock().unwrap_or_else(|p| p.into_inner());
        let spawned = command.spawn();
        if let Some(pid) = spawned.as_ref().ok().and_then(tokio::process::Child::id) {
            own.insert(pid as i32);
        }
        spawned
    };
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            let reason = format!("cannot run {program:?}: {e}");
            eprintln!("[{job}] {reason}");
            tail.push(reason.clone());
            return (Ending::NotStarted { code, reason }, tail);
        }
    };
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    let out = child
        .stdout
        .take()
        .map(|s| tokio::spawn(pump(job.to_owned(), s, tail.clone(), false)));
    let err = child
        .stderr
        .take()
        .map(|s| tokio::spawn(pump(job.to_owned(), s, tail.clone(), true)));

    let limit = async {
        match spec.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let stopped = async {
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let ending = tokio::select! {
        status = child.wait() => Some(status),
        () = limit => None,
        () = stopped => Some(Err(std::io::Error::other("stopped"))),
    };
    let ending = match ending {
        Some(Ok(status)) => exited(status),
        None => {
            stop_group(&mut child, pgid, spec.grace).await;
            Ending::TimedOut
        }
        Some(Err(_)) => {
            stop_group(&mut child, pgid, spec.grace).await;
            Ending::Stopped
        }
    };
    if let Some(pid) = pgid {
        own_children()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&pid.as_raw());
    }
    for pump in [out, err].into_iter().flatten() {
        // The pipes close when the group is gone; a grandchild that kept them
        // open is not waited for.
        let _ = tokio::time::timeout(Duration::from_secs(1), pump).await;
    }
    (ending, tail)
}

fn exited(status: ExitStatus) -> Ending {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => Ending::Exited { code, signal: None },
        (None, Some(signal)) => Ending::Exited {
            code: 128 + signal,
            signal: Some(signal),
        },
        (None, None) => Ending::Exited {
            code: 1,
            signal: None,
        },
    }
}

/// SIGTERM to the group, up to `grace` for it to end, then SIGKILL.
async fn stop_group(child: &mut tokio::process::Child, pgid: Option<Pid>, grace: Duration) {
    let Some(pgid) = pgid else {
        let _ = child.kill().await;
        return;
    };
    let _ = killpg(pgid, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    let _ = tokio::time::timeout_at(deadline, child.wait()).await;
    while tokio::time::Instant::now() < deadline && killpg(pgid, None).is_ok() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = killpg(pgid, Signal::SIGKILL);
    let _ = child.wait().await;
}

async fn pump(job: String, stream: impl AsyncRead + Unpin, tail: Tail, stderr: bool) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if stderr {
            eprintln!("[{job}] {line}");
        } else {
            println!("[{job}] {line}");
        }
        tail.push(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(argv: &[&str]) -> CommandSpec {
        CommandSpec {
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            workdir: None,
            env: vec![("GREETING".into(), "hi".into())],
            timeout: None,
            grace: Duration::from_millis(200),
            tail_lines: 2,
        }
    }

    #[tokio::test]
    async fn exit_codes_output_tail_and_timeouts() {
        let (_tx, rx) = watch::channel(false);
        let script = "echo one; echo two >&2; echo $GREETING; exit 3";
        let (ending, tail) = run("t", &spec(&["sh", "-c", script]), rx.clone()).await;
        assert_eq!(
            ending,
            Ending::Exited {
                code: 3,
                signal: None
            }
        );
        let text = tail.text();
        // Two lines kept; stdout and stderr interleave in any order.
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("hi"), "{text}");

        let (ending, _) = run("t", &spec(&["sh", "-c", "kill -KILL $$"]), rx.clone()).await;
        assert_eq!(
            ending,
            Ending::Exited {
                code: 137,
                signal: Some(9)
            }
        );

        let mut slow = spec(&["sh", "-c", "trap '' TERM; sleep 30"]);
        slow.timeout = Some(Duration::from_millis(100));
        let started = std::time::Instant::now();
        let (ending, _) = run("t", &slow, rx.clone()).await;
        assert_eq!(ending, Ending::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(10));

        let (ending, _) = run("t", &spec(&["/nonexistent/x"]), rx.clone()).await;
        assert!(matches!(ending, Ending::NotStarted { code: 127, .. }));

        let (tx, rx) = watch::channel(false);
        let handle = tokio::spawn(async move { run("t", &spec(&["sleep", "30"]), rx).await });
        tx.send(true).unwrap();
        let (ending, _) = handle.await.unwrap();
        assert_eq!(ending, Ending::Stopped);
    }
}
