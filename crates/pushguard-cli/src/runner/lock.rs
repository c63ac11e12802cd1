//! One runner per state file.
//!
//! Two `pushguard run` on one state file would run every job twice. The
//! runner holds an exclusive `flock` on `<state file>.runner.lock` for as
//! long as it runs (the kernel drops it when the process dies, however it
//! dies); a second runner finds it taken and refuses to start, naming the
//! first one's process id. Runners that stand in for each other share a
//! schedule through a state on PostgreSQL instead (see `runner/fleet.rs`).

use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// The held lock; released on drop.
#[derive(Debug)]
pub struct RunnerLock {
    _file: Flock<File>,
    path: PathBuf,
}

impl RunnerLock {
    /// Takes the lock beside `state_file`, or says who holds it.
    pub fn acquire(state_file: &Path) -> Result<RunnerLock, String> {
        let mut name = state_file.as_os_str().to_owned();
        name.push(".runner.lock");
        let path = PathBuf::from(name);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("cannot open the runner lock {}: {e}", path.display()))?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, _)) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another pushguard run".to_owned()
                } else {
                    format!("another pushguard run (pid {holder})")
                };
                return Err(format!(
                    "{who} already uses the state file {}: two runners on one state file would run every job twice; stop it, give this one another --state, or share one schedule between runners through a postgres:// state",
                    state_file.display()
                ));
            }
        };
        // The holder's pid, for the message a second runner prints.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        let _ = file.flush();
        Ok(RunnerLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.db");
        let first = RunnerLock::acquire(&state).unwrap();
        let error = RunnerLock::acquire(&state).unwrap_err();
        assert!(error.contains(&std::process::id().to_string()), "{error}");
        assert!(error.contains("state.db"), "{error}");
        drop(first);
        RunnerLock::acquire(&state).unwrap();
    }
}
