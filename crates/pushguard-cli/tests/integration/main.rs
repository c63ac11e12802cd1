//! The `pushguard` binary against real servers: the commands, the state
//! file, the runner, the shipped monitoring stack and the release pipeline.
//! One binary; one module per area.

use pushguard_testkit::{otlp, prom, receivers, sources};

/// The workspace's harness, plus the binary under test.
mod harness {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    pub use pushguard_testkit::harness::*;

    /// The built `pushguard` binary.
    pub fn pushguard_bin() -> PathBuf {
        PathBuf::from(env!("CARGO_BIN_EXE_pushguard"))
    }

    /// A `pushguard` command with a clean environment in `dir`.
    pub fn pushguard(dir: &Path) -> Command {
        pushguard_command(&pushguard_bin(), dir)
    }
}

mod builtins;
mod cli;
mod fuzz;
mod kubernetes;
mod monitoring;
mod page;
mod pipeline;
mod prune;
mod remote_write;
mod runner;
mod state;
mod tls;
mod trace;
