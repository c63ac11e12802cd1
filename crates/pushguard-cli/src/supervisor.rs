//! The one process supervisor behind `pushguard exec` and the runner's
//! command jobs.
//!
//! Both start a command without a shell in its own process group, wait for
//! it with an optional time limit, stop the whole group the same way (SIGTERM,
//! a grace period, SIGKILL) and report the same exit codes (the command's own,
//! 128+signal, 124 on timeout, 127/126 when it cannot be started). Keeping
//! that in one place is what makes a job behave the same under `exec` and
//! under the runner. What differs is an option, not a second implementation:
//! `exec` inherits stdio and may hand the terminal to the command
//! ([`Spec::terminal`]) and forwards signals to [`Child::pgid`]; the runner
//! captures output into a byte-bounded [`Tail`] and stops runs through a
//! watch channel.
//!
//! Output is read in chunks, never as whole lines, so a command printing one
//! endless line costs a fixed amount of memory: each kept line is cut at
//! [`LINE_BYTES`] (marked `… [cut N bytes]`) and the tail keeps at most
//! [`TAIL_BYTES`].

use crate::{errln, outln};
use std::collections::{HashSet, VecDeque};
use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, killpg, sigprocmask};
use nix::unistd::{Pid, getpgrp, tcgetpgrp, tcsetpgrp};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Exit code of a run stopped by its time limit, as timeout(1) uses.
pub const TIMEOUT_EXIT: i32 = 124;

/// Exit code of a run stopped from outside: 128 + SIGTERM.
pub const STOPPED_EXIT: i32 = 128 + Signal::SIGTERM as i32;

/// Most bytes a [`Tail`] keeps, line separators included.
pub const TAIL_BYTES: usize = 64 * 1024;

/// Most bytes kept of one output line; the rest is counted, not kept.
pub const LINE_BYTES: usize = 4 * 1024;

/// Size of one read from a captured pipe.
const CHUNK: usize = 16 * 1024;

/// What the command reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// `/dev/null`.
    Null,
    /// The supervisor's own stdin.
    Inherit,
}

/// Where the command's stdout and stderr go.
#[derive(Debug, Clone)]
pub enum Output {
    /// The supervisor's own stdout and stderr, untouched.
    Inherit,
    /// Read line by line: each line is logged as `[label] line` (stdout lines
    /// on stdout, stderr lines on stderr) and kept in `tail`, both cut at
    /// [`LINE_BYTES`].
    Capture {
        /// The prefix of each logged line, usually the job name.
        label: String,
        /// Where the last lines are kept.
        tail: Tail,
    },
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The program and its arguments, run without a shell.
    pub argv: Vec<OsString>,
    /// Variables added to the inherited environment.
    pub env: Vec<(OsString, OsString)>,
    /// The working directory; the supervisor's own when `None`.
    pub workdir: Option<PathBuf>,
    /// What the command reads.
    pub stdin: Input,
    /// Where its output goes.
    pub output: Output,
    /// Hand the terminal's foreground to the command's process group while it
    /// runs, when stdin is a terminal and the supervisor is in its
    /// foreground (an interactive `exec`); taken back when it ends.
    pub terminal: bool,
    /// Stop the command after this long ([`Ending::TimedOut`]).
    pub timeout: Option<Duration>,
    /// Between SIGTERM and SIGKILL when the group is stopped.
    pub grace: Duration,
}

impl Spec {
    /// `argv` with nothing added: stdin from `/dev/null`, output inherited,
    /// no time limit, a 10 s grace.
    pub fn new<I, S>(argv: I) -> Spec
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Spec {
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            workdir: None,
            stdin: Input::Null,
            output: Output::Inherit,
            terminal: false,
            timeout: None,
            grace: Duration::from_secs(10),
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// It exited by itself; `code` is its exit code, or 128+signal when a
    /// signal killed it.
    Exited {
        /// The shell convention's exit code.
        code: i32,
        /// The signal that killed it, if one did.
        signal: Option<i32>,
    },
    /// It ran past its time limit and its group was stopped.
    TimedOut,
    /// It was stopped from outside and its group was stopped.
    Stopped,
    /// It could not be started: 127 when the program was not found, 126
    /// otherwise.
    NotStarted {
        /// 127 or 126.
        code: i32,
        /// Why, naming the program.
        reason: String,
    },
    /// Waiting for it failed (its exit status was taken by someone else);
    /// its group was stopped.
    Lost {
        /// Why.
        reason: String,
    },
    /// Nothing ran: a built-in job had nothing it could do yet (no channel
    /// configured). Recorded as a skipped run, not a failure.
    Skipped {
        /// Why.
        reason: String,
    },
}

impl Ending {
    /// The exit code the shell convention gives this ending: the command's
    /// own, 128+signal, 124 on timeout, 143 when stopped, 127/126 when not
    /// started, 1 when lost.
    pub fn exit_code(&self) -> i32 {
        match self {
            Ending::Exited { code, .. } | Ending::NotStarted { code, .. } => *code,
            Ending::TimedOut => TIMEOUT_EXIT,
            Ending::Stopped => STOPPED_EXIT,
            Ending::Lost { .. } => 1,
            Ending::Skipped { .. } => 0,
        }
    }

    fn from_status(status: ExitStatus) -> Ending {
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
}

/// A command that could not be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotStarted {
    /// 127 when the program was not found, 126 otherwise.
    pub code: i32,
    /// Why, naming the program.
    pub reason: String,
}

impl std::fmt::Display for NotStarted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl From<NotStarted> for Ending {
    fn from(not: NotStarted) -> Ending {
        Ending::NotStarted {
            code: not.code,
            reason: not.reason,
        }
    }
}

/// The last lines a command printed, bounded in lines and in bytes: at most
/// the given number of lines, each cut at [`LINE_BYTES`], all together at
/// most [`TAIL_BYTES`]. Clones share the same lines.
#[derive(Debug, Clone, Default)]
pub struct Tail {
    kept: Arc<Mutex<Kept>>,
    limit: usize,
}

#[derive(Debug, Default)]
struct Kept {
    lines: VecDeque<String>,
    /// Bytes of `lines`, one separator per line included.
    bytes: usize,
}

impl Tail {
    /// A tail of at most `lines` lines (nothing is kept when 0).
    pub fn new(lines: usize) -> Tail {
        Tail {
            kept: Arc::default(),
            limit: lines,
        }
    }

    /// Keeps `line` (cut at [`LINE_BYTES`]), dropping the oldest lines past
    /// the bounds.
    pub fn push(&self, line: impl Into<String>) {
        self.keep(bounded(line.into(), 0));
    }

    /// Keeps `line`, already [`bounded`].
    fn keep(&self, line: String) {
        if self.limit == 0 {
            return;
        }
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.bytes += line.len() + 1;
        kept.lines.push_back(line);
        while kept.lines.len() > self.limit || kept.bytes > TAIL_BYTES + 1 {
            match kept.lines.pop_front() {
                Some(old) => kept.bytes -= old.len() + 1,
                None => break,
            }
        }
    }

    /// The kept lines, joined by newlines.
    pub fn text(&self) -> String {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let mut text = String::with_capacity(kept.bytes);
        for (i, line) in kept.lines.iter().enumerate() {
            if i > 0 {
                text.push('\n');
            }
            text.push_str(line);
        }
        text
    }
}

/// `line` cut at [`LINE_BYTES`] (on a character boundary), with a marker
/// counting what is not kept, `dropped` bytes included.
fn bounded(mut line: String, mut dropped: usize) -> String {
    if line.len() > LINE_BYTES {
        let mut end = LINE_BYTES;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        dropped += line.len() - end;
        line.truncate(end);
    }
    if dropped > 0 {
        line.push_str(&format!("… [cut {dropped} bytes]"));
    }
    line
}

/// One output line being read: at most [`LINE_BYTES`] kept, the rest counted.
#[derive(Default)]
struct Line {
    kept: Vec<u8>,
    dropped: usize,
}

impl Line {
    fn extend(&mut self, bytes: &[u8]) {
        let take = LINE_BYTES.saturating_sub(self.kept.len()).min(bytes.len());
        self.kept.extend_from_slice(&bytes[..take]);
        self.dropped += bytes.len() - take;
    }

    fn is_empty(&self) -> bool {
        self.kept.is_empty() && self.dropped == 0
    }

    /// The line as text and the count of bytes not kept; the line is empty
    /// again afterwards.
    fn take(&mut self) -> (String, usize) {
        let mut kept = std::mem::take(&mut self.kept);
        let mut dropped = std::mem::take(&mut self.dropped);
        if dropped == 0 {
            if kept.last() == Some(&b'\r') {
                kept.pop();
            }
        } else if let Err(error) = std::str::from_utf8(&kept)
            && error.error_len().is_none()
        {
            // The cut split a character: its first bytes go with the rest.
            dropped += kept.len() - error.valid_up_to();
            kept.truncate(error.valid_up_to());
        }
        let text = match String::from_utf8(kept) {
            Ok(text) => text,
            Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
        };
        (text, dropped)
    }
}

/// Reads `stream` to its end in chunks, logging and keeping each line.
async fn pump(label: String, mut stream: impl AsyncRead + Unpin, tail: Tail, stderr: bool) {
    let mut chunk = vec![0; CHUNK];
    let mut line = Line::default();
    let emit = |line: &mut Line| {
        let (text, dropped) = line.take();
        let text = bounded(text, dropped);
        if stderr {
            errln!("[{label}] {text}");
        } else {
            outln!("[{label}] {text}");
        }
        tail.keep(text);
    };
    loop {
        let read = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let mut rest = &chunk[..read];
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            line.extend(&rest[..end]);
            emit(&mut line);
            rest = &rest[end + 1..];
        }
        line.extend(rest);
    }
    if !line.is_empty() {
        emit(&mut line);
    }
}

/// The process ids of the commands started here and still waited for: the
/// PID-1 reaper ([`reap_orphans`]) leaves those to their own waiter.
fn own_children() -> &'static Mutex<HashSet<i32>> {
    static OWN: OnceLock<Mutex<HashSet<i32>>> = OnceLock::new();
    OWN.get_or_init(Mutex::default)
}

/// A process id in [`own_children`], removed when dropped.
#[derive(Debug)]
struct Registration(i32);

impl Drop for Registration {
    fn drop(&mut self) {
        own_children()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.0);
    }
}

/// As PID 1 (in a container), a supervisor inherits every orphaned process
/// of its commands; this reaps the ones that exited, never a command that is
/// still waited for. Returns how many were reaped.
pub fn reap_orphans() -> usize {
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

/// A started command; [`wait`](Child::wait) for its [`Ending`].
#[derive(Debug)]
pub struct Child {
    child: tokio::process::Child,
    pgid: Pid,
    pumps: Vec<JoinHandle<()>>,
    terminal: Option<Terminal>,
    timeout: Option<Duration>,
    grace: Duration,
    _own: Registration,
}

/// Starts `spec` in its own process group (whose id is the command's pid).
/// Must be called within a tokio runtime with I/O and time enabled.
pub fn spawn(spec: &Spec) -> Result<Child, NotStarted> {
    let Some((program, args)) = spec.argv.split_first() else {
        return Err(NotStarted {
            code: 127,
            reason: "empty command".to_owned(),
        });
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .process_group(0)
        .kill_on_drop(true);
    command.stdin(match spec.stdin {
        Input::Null => Stdio::null(),
        Input::Inherit => Stdio::inherit(),
    });
    if let Output::Capture { .. } = spec.output {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    if let Some(dir) = &spec.workdir {
        command.current_dir(dir);
    }
    // Registered while the spawn still holds the lock, so the PID-1 reaper
    // can never take this child's exit status first.
    let spawned = {
        let mut own = own_children().lock().unwrap_or_else(|p| p.into_inner());
        command.spawn().map(|child| {
            let pid = child.id().map(|id| id as i32);
            if let Some(pid) = pid {
                own.insert(pid);
            }
            (child, pid)
        })
    };
    let (mut child, pid) = match spawned {
        Ok((child, Some(pid))) => (child, pid),
        Ok((_, None)) => {
            return Err(NotStarted {
                code: 126,
                reason: format!("lost {:?} as it started", program.to_string_lossy()),
            });
        }
        Err(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return Err(NotStarted {
                code,
                reason: format!("cannot run {:?}: {e}", program.to_string_lossy()),
            });
        }
    };
    let own = Registration(pid);
    let pgid = Pid::from_raw(pid);
    let terminal = if spec.terminal {
        Terminal::hand_to(pgid)
    } else {
        None
    };
    let mut pumps = Vec::new();
    if let Output::Capture { label, tail } = &spec.output {
        if let Some(out) = child.stdout.take() {
            pumps.push(tokio::spawn(pump(label.clone(), out, tail.clone(), false)));
        }
        if let Some(err) = child.stderr.take() {
            pumps.push(tokio::spawn(pump(label.clone(), err, tail.clone(), true)));
        }
    }
    Ok(Child {
        child,
        pgid,
        pumps,
        terminal,
        timeout: spec.timeout,
        grace: spec.grace,
        _own: own,
    })
}

/// [`spawn`] and [`Child::wait`] in one.
pub async fn run(spec: &Spec, stop: watch::Receiver<bool>) -> Ending {
    match spawn(spec) {
        Ok(child) => child.wait(stop).await,
        Err(not) => not.into(),
    }
}

impl Child {
    /// The command's process group (its own pid), for signals to forward.
    pub fn pgid(&self) -> Pid {
        self.pgid
    }

    /// Waits until the command exits, its time limit passes or `stop` turns
    /// true (a dropped sender never stops it); in the last two cases the
    /// whole group is stopped: SIGTERM, up to the grace period for it to
    /// empty, then SIGKILL. Captured output is read to its end (at most 1 s
    /// more: a grandchild holding the pipes open is not waited for) and the
    /// terminal is taken back before this returns.
    pub async fn wait(mut self, mut stop: watch::Receiver<bool>) -> Ending {
        let timeout = self.timeout;
        let limit = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let stopped = async {
            while !*stop.borrow_and_update() {
                if stop.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        let ending = tokio::select! {
            status = self.child.wait() => match status {
                Ok(status) => Ending::from_status(status),
                Err(e) => Ending::Lost {
                    reason: format!("cannot wait for the command: {e}"),
                },
            },
            () = limit => Ending::TimedOut,
            () = stopped => Ending::Stopped,
        };
        if !matches!(ending, Ending::Exited { .. }) {
            self.stop_group().await;
        }
        drop(self.terminal.take());
        for pump in self.pumps.drain(..) {
            // The pipes close when the group is gone.
            let _ = tokio::time::timeout(Duration::from_secs(1), pump).await;
        }
        ending
    }

    /// SIGTERM to the whole group, up to the grace period for it to empty
    /// (the command and anything it started), then SIGKILL to whatever is
    /// left.
    async fn stop_group(&mut self) {
        let deadline = tokio::time::Instant::now() + self.grace;
        let _ = killpg(self.pgid, Signal::SIGTERM);
        let _ = tokio::time::timeout_at(deadline, self.child.wait()).await;
        // The command is gone (or the grace is over); give the rest of its
        // group what is left of the grace. `killpg(pgid, None)` only probes.
        while tokio::time::Instant::now() < deadline && killpg(self.pgid, None).is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = killpg(self.pgid, Signal::SIGKILL);
        let _ = self.child.wait().await;
    }
}

/// While an interactive command runs, its process group owns the terminal, so
/// it can read stdin and receives Ctrl-C directly; the terminal is taken back
/// when the command ends.
#[derive(Debug)]
struct Terminal {
    ours: Pid,
}

impl Terminal {
    fn hand_to(child: Pid) -> Option<Terminal> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let ours = getpgrp();
        if tcgetpgrp(&stdin).ok()? != ours {
            return None; // we are not in the foreground ourselves
        }
        tcsetpgrp(&stdin, child).ok()?;
        // A command that touched the terminal before the hand-over was
        // stopped by SIGTTIN; let it go on now that the terminal is its own.
        let _ = killpg(child, Signal::SIGCONT);
        Some(Terminal { ours })
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // Taking the terminal back from a background group raises SIGTTOU
        // unless it is blocked.
        let mut ttou = SigSet::empty();
        ttou.add(Signal::SIGTTOU);
        let mut old = SigSet::empty();
        if sigprocmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut old)).is_ok() {
            let _ = tcsetpgrp(std::io::stdin(), self.ours);
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(argv: &[&str], tail: &Tail) -> Spec {
        let mut spec = Spec::new(argv);
        spec.env = vec![("GREETING".into(), "hi".into())];
        spec.grace = Duration::from_millis(200);
        spec.output = Output::Capture {
            label: "t".to_owned(),
            tail: tail.clone(),
        };
        spec
    }

    #[tokio::test]
    async fn exit_codes_output_tail_and_timeouts() {
        let (_tx, rx) = watch::channel(false);
        let tail = Tail::new(2);
        let script = "echo one; echo two >&2; echo $GREETING; exit 3";
        let ending = run(&spec(&["sh", "-c", script], &tail), rx.clone()).await;
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

        let tail = Tail::new(2);
        let ending = run(&spec(&["sh", "-c", "kill -KILL $$"], &tail), rx.clone()).await;
        assert_eq!(
            ending,
            Ending::Exited {
                code: 137,
                signal: Some(9)
            }
        );

        let mut slow = spec(&["sh", "-c", "trap '' TERM; sleep 30"], &tail);
        slow.timeout = Some(Duration::from_millis(100));
        let started = std::time::Instant::now();
        let ending = run(&slow, rx.clone()).await;
        assert_eq!(ending, Ending::TimedOut);
        assert_eq!(ending.exit_code(), 124);
        assert!(started.elapsed() < Duration::from_secs(10));

        let ending = run(&spec(&["/nonexistent/x"], &tail), rx.clone()).await;
        assert!(matches!(ending, Ending::NotStarted { code: 127, .. }));
        let ending = run(&spec(&["/dev/null"], &tail), rx.clone()).await;
        assert!(matches!(ending, Ending::NotStarted { code: 126, .. }));

        let (tx, rx) = watch::channel(false);
        let sleeper = spec(&["sleep", "30"], &tail);
        let handle = tokio::spawn(async move { run(&sleeper, rx).await });
        tx.send(true).unwrap();
        let ending = handle.await.unwrap();
        assert_eq!(ending, Ending::Stopped);
        assert_eq!(ending.exit_code(), 143);
    }

    #[tokio::test]
    async fn a_huge_line_is_cut_and_the_tail_stays_within_its_budget() {
        let (_tx, rx) = watch::channel(false);
        let tail = Tail::new(1000);
        let script = "echo before; head -c 50000000 /dev/zero | tr '\\0' a; echo; echo after";
        let ending = run(&spec(&["sh", "-c", script], &tail), rx).await;
        assert_eq!(ending.exit_code(), 0);
        let text = tail.text();
        assert!(text.len() <= TAIL_BYTES, "{} bytes kept", text.len());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{:?}", &text[..200.min(text.len())]);
        assert_eq!(lines[0], "before");
        assert_eq!(lines[2], "after");
        let cut = format!("… [cut {} bytes]", 50_000_000 - LINE_BYTES);
        assert!(lines[1].ends_with(&cut), "{}", &lines[1][LINE_BYTES..]);
        assert_eq!(lines[1].len(), LINE_BYTES + cut.len());
    }

    #[test]
    fn the_tail_keeps_its_byte_budget_and_cuts_on_character_boundaries() {
        let tail = Tail::new(1000);
        for _ in 0..100 {
            tail.push("x".repeat(3000));
        }
        let text = tail.text();
        assert!(text.len() <= TAIL_BYTES, "{}", text.len());
        assert_eq!(text.lines().count(), TAIL_BYTES / 3001);

        let tail = Tail::new(5);
        tail.push("é".repeat(LINE_BYTES));
        let text = tail.text();
        assert!(text.starts_with(&"é".repeat(LINE_BYTES / 2)), "{text}");
        assert!(
            text.ends_with(&format!("… [cut {} bytes]", LINE_BYTES)),
            "{text}"
        );

        let mut line = Line::default();
        line.extend(&[b'a'; LINE_BYTES - 1]);
        line.extend("é and more".as_bytes());
        let (text, dropped) = line.take();
        assert_eq!(text.len(), LINE_BYTES - 1);
        assert_eq!(dropped, "é and more".len());
        assert!(line.is_empty());
    }
}
