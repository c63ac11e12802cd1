//! The release-delivery built-in jobs: `fetch` (AniList and RSS/Atom sources
//! into the store), `notify` (Slack, Discord, email) and `calendar`
//! (iCalendar file and CalDAV), over one SQLite store.
//!
//! Each job is an async function over a [`Store`] and its metric families
//! ([`METRICS`]); the runner reaches them through the one plug-in point,
//! [`Builtin`] (found by name with [`find`]), and a service can call them
//! directly (see `examples/monitoring_integration.rs`).
//!
//! This crate depends on the `pushguard` library (with its `state`, `system`
//! and `tower` features) and never the other way: a user who instruments a
//! batch job with `pushguard` compiles none of it.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builtin;
mod calendar;
mod error;
mod fetch;
mod metrics;
mod notify;
mod settings;
mod store;

pub use builtin::{
    Builtin, CalendarJob, DEFAULT_STORE_FILE, Env, FetchJob, JobState, Kind, Noop, NotifyJob,
    Prepared, RunFuture, StoreJob, builtin_names, find,
};
pub use calendar::{CalendarReport, CalendarSettings, sync_calendar};
pub use error::BuiltinError;
pub use fetch::{FetchReport, FetchSettings, SourceReport, fetch, fetch_until};
pub use metrics::{CalendarMetrics, DbMetrics, FetchMetrics, METRICS, NotifyMetrics, metric};
pub use notify::{ChannelReport, NotifyReport, NotifySettings, notify};
pub use store::{
    MangaCounts, NewRelease, NewWork, Release, ReleaseDetail, Store, StoreError, TimeBasis, Work,
    WorkKind,
};
