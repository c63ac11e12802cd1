//! A real PostgreSQL server (Debian's `postgresql` package) on a free
//! loopback port, in its own temp data directory, killed on drop.
//!
//! PostgreSQL refuses to run as root: the data directory belongs to the
//! `postgres` user and `initdb` and the server run as that user (the child
//! process switches its uid itself, so killing it kills the server, not a
//! `runuser` wrapper). Authentication is `trust`: any password is accepted,
//! which lets tests put one in a URL and check that it is never printed.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::harness::free_port;

/// Where Debian's `postgresql` package puts the server binaries.
pub const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// A running PostgreSQL server.
pub struct Postgres {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
    next_db: AtomicUsize,
}

fn bin(name: &str) -> PathBuf {
    Path::new(BIN_DIR).join(name)
}

/// The uid and gid of the `postgres` user.
fn postgres_user() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run id");
        assert!(
            out.status.success(),
            "no `postgres` user: install the Debian package `postgresql` (scripts/test does this)"
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a numeric id")
    };
    (id("-u"), id("-g"))
}

impl Postgres {
    /// A server that trusts every connection (any password is accepted).
    pub fn start() -> Self {
        Self::spawn(None)
    }

    /// A server that asks TCP clients for the password of the `postgres`
    /// user (SCRAM); the harness's own `psql` uses the Unix socket, trusted.
    pub fn start_with_password(password: &str) -> Self {
        Self::spawn(Some(password))
    }

    fn spawn(password: Option<&str>) -> Self {
        assert!(
            bin("postgres").exists(),
            "{BIN_DIR}/postgres is missing: install the Debian package `postgresql` (scripts/test does this)"
        );
        let (uid, gid) = postgres_user();
        let dir = tempfile::tempdir().expect("temp dir for the cluster");
        let status = Command::new("chown")
            .arg(format!("{uid}:{gid}"))
            .arg(dir.path())
            .status()
            .expect("run chown");
        assert!(status.success(), "chown the cluster directory");
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--no-sync"]);
        match password {
            None => initdb.args(["-A", "trust"]),
            Some(password) => {
                let file = dir.path().join("pwfile");
                std::fs::write(&file, format!("{password}\n")).expect("write the password file");
                let status = Command::new("chown")
                    .arg(format!("{uid}:{gid}"))
                    .arg(&file)
                    .status()
                    .expect("run chown");
                assert!(status.success(), "chown the password file");
                initdb
                    .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
                    .arg(format!("--pwfile={}", file.display()))
            }
        };
        let out = initdb
            .uid(uid)
            .gid(gid)
            .current_dir(dir.path())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for _ in 0..5 {
            let port = free_port();
            let mut child = server(dir.path(), port);
            if wait_ready(&mut child, port) {
                return Postgres {
                    child,
                    port,
                    dir,
                    next_db: AtomicUsize::new(0),
                };
            }
            // Lost the port to another process: try another one.
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("postgres did not start on any of 5 ports");
    }

    /// Stops the server at once (immediate shutdown, as a crash would):
    /// clients see their connections closed and new ones refused.
    pub fn stop(&mut self) {
        stop(&mut self.child);
    }

    /// Starts the server again on the same port and data (after
    /// [`stop`](Self::stop)); panics if the port was taken meanwhile.
    pub fn start_again(&mut self) {
        let mut child = server(self.dir.path(), self.port);
        assert!(
            wait_ready(&mut child, self.port),
            "postgres did not start again on port {}",
            self.port
        );
        self.child = child;
    }

    /// Runs `sql` with `psql` in `database`, as the superuser over the Unix
    /// socket (trusted whatever the TCP authentication); returns its
    /// output (unaligned, tuples only).
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = Command::new(bin("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
                "-h",
            ])
            .arg(self.dir.path())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-d")
            .arg(database)
            .arg("-c")
            .arg(sql)
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The data directory's parent (the server's socket directory).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates a fresh database and returns its name.
    pub fn create_database(&self) -> String {
        let name = format!("test{}", self.next_db.fetch_add(1, Ordering::SeqCst));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/DATABASE` of a fresh
    /// database (any password is accepted).
    pub fn database_url(&self, password: &str) -> String {
        let name = self.create_database();
        format!(
            "postgres://postgres:{password}@127.0.0.1:{}/{name}",
            self.port
        )
    }
}

/// Polls `pg_isready` until the server accepts connections; false when it
/// exited first.
fn wait_ready(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pause = Duration::from_millis(10);
    loop {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return false;
        }
        let ready = Command::new(bin("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(port.to_string())
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return true;
        }
        assert!(Instant::now() < deadline, "postgres not ready within 30s");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// `postgres` on `port` for the cluster under `dir`, as the `postgres` user.
fn server(dir: &Path, port: u16) -> Child {
    let (uid, gid) = postgres_user();
    Command::new(bin("postgres"))
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(dir)
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
        .args(["-c", "max_connections=300"])
        .uid(uid)
        .gid(gid)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start postgres")
}

/// Immediate shutdown (SIGQUIT) ends the backends too; SIGKILL if that
/// takes too long.
fn stop(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = Command::new("kill")
        .args(["-QUIT", &child.id().to_string()])
        .status();
    let exited = {
        let mut done = false;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                done = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        done
    };
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}
