//! The runner behind `pushguard run`, `trigger` and `check`: job files and
//! the runner's configuration ([`ConfigLoader`], [`JobSpec`]), schedules
//! ([`Schedule`]: 5- and 6-field cron, `@every`, IANA time zones with DST
//! handled like Debian's cron) and the [`Runner`] itself (timers, overlap,
//! timeouts, retries, catch-up, its HTTP endpoint).
//!
//! Every run goes through the `pushguard` library's run builder
//! ([`pushguard::JobRun`]); built-in jobs come from `pushguard_releases`
//! through its one plug-in point. The `pushguard` binary of this package
//! only parses the command line and calls this crate and the library; its
//! `exec` and the runner's command jobs share one process [`supervisor`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
#[doc(hidden)]
pub mod output;
pub mod prune;
mod runner;
mod schedule;
pub mod supervisor;

pub use config::{
    ApiToken, CatchUp, ConfigError, ConfigErrors, ConfigLoader, DEFAULT_CONFIG_PATH,
    DEFAULT_LISTEN, GatewaySettings, JobAction, JobDefaults, JobSink, JobSpec, Overlap,
    RunnerConfig, TriggerAccess, job_files, load_jobs,
};
pub use runner::{PUSH_TURN_WAIT, Reload, Runner, RunnerLock};
pub use schedule::{Schedule, ScheduleError};
