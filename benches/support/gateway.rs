//! A real Pushgateway for the benches: a child process on a loopback port,
//! ready when `/-/ready` answers, killed on drop. Shared by the bench binaries,
//! each of which uses part of it.

#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pushguard::Gateway;

pub const PUSHGATEWAY_BIN: &str = "/usr/bin/prometheus-pushgateway";

/// How long a started gateway may take to answer `/-/ready`.
const READY_DEADLINE: Duration = Duration::from_secs(10);

/// A loopback address nothing listens on: a free port, probed and released.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("cannot find a free loopback port: {e}"))
}

/// A Pushgateway child process on a loopback port, killed on drop.
pub struct Pushgateway {
    child: Child,
    addr: SocketAddr,
}

impl Pushgateway {
    /// Starts the gateway on a free port; a few tries in case the port was
    /// taken between probing it and the gateway binding it.
    pub fn start() -> Result<Self, String> {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::start_on(free_addr()) {
                Ok(gateway) => return Ok(gateway),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Starts the gateway on `addr` and waits for `/-/ready`.
    pub fn start_on(addr: SocketAddr) -> Result<Self, String> {
        let child = Command::new(PUSHGATEWAY_BIN)
            .arg(format!("--web.listen-address={addr}"))
            .arg("--persistence.file=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {PUSHGATEWAY_BIN}: {e}"))?;
        let mut gateway = Pushgateway { child, addr };
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Ok(Some(status)) = gateway.child.try_wait() {
                return Err(format!(
                    "{PUSHGATEWAY_BIN} on {addr} exited early: {status}"
                ));
            }
            if gateway.ready() {
                return Ok(gateway);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{PUSHGATEWAY_BIN} on {addr} not ready after {READY_DEADLINE:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// True when `GET /-/ready` answers 200.
    fn ready(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let request = format!("GET /-/ready HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr);
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client with the default retries and deadline.
    pub fn client(&self) -> Gateway {
        Gateway::builder()
            .url(self.url())
            .build()
            .unwrap_or_else(|e| panic!("cannot build the gateway client: {e}"))
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn have_pushgateway(bench: &str) -> bool {
    let have = Path::new(PUSHGATEWAY_BIN).exists();
    if !have {
        eprintln!(
            "note: skipping \"{bench}\": {PUSHGATEWAY_BIN} is missing \
             (apt-get install prometheus-pushgateway)"
        );
    }
    have
}
