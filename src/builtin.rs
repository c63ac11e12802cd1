//! The release-delivery built-in jobs: `fetch` (AniList and RSS/Atom sources
//! into the store), `notify` (Slack, Discord, email) and `calendar`
//! (iCalendar file and CalDAV), over one SQLite store.
//!
//! Each job is an async function over a [`Store`] and its metric families;
//! the runner dispatches `builtin = "…"` job files to them, and a service can
//! call them directly (see `examples/monitoring_integration.rs`).

mod calendar;
mod error;
mod fetch;
mod metrics;
mod notify;
mod settings;
mod store;

pub use calendar::{CalendarReport, CalendarSettings, sync_calendar};
pub use error::BuiltinError;
pub use fetch::{FetchReport, FetchSettings, SourceReport, fetch};
pub use metrics::{CalendarMetrics, DbMetrics, FetchMetrics, NotifyMetrics};
pub use notify::{ChannelReport, NotifyReport, NotifySettings, notify};
pub use store::{NewRelease, NewWork, Release, Store, StoreError, Work, WorkKind};

/// The store file the built-ins use when a job does not set `store`:
/// `releases.db` beside the state file.
pub const DEFAULT_STORE_FILE: &str = "releases.db";

/// Checks the `[settings]` of a `builtin = "…"` job without running it:
/// `pushguard check` and the job-file loader report what it finds.
pub(crate) fn check_settings(
    builtin: crate::config::Builtin,
    settings: &toml::Table,
    base: &std::path::Path,
) -> Result<(), BuiltinError> {
    use crate::config::Builtin;
    match builtin {
        Builtin::Noop => Ok(()),
        Builtin::Fetch => FetchSettings::from_table(settings, base).map(drop),
        Builtin::Notify => NotifySettings::from_table(settings, base).map(drop),
        Builtin::Calendar => CalendarSettings::from_table(settings, base).map(drop),
    }
}
