//! The test harness of the pushguard workspace: real servers (Pushgateway,
//! Prometheus, Alertmanager, an OTLP receiver, radicale, an SMTP server,
//! PostgreSQL) and
//! local stand-ins for the services that cannot run here (Slack, Discord,
//! AniList, feeds), each on a free loopback port and killed on drop.
//!
//! Readiness is polled with a deadline, never waited for with a fixed sleep.
//! Every crate of the workspace uses it from its integration tests.

pub mod fuzz;
pub mod harness;
pub mod otlp;
pub mod postgres;
pub mod prom;
pub mod receivers;
pub mod sources;
pub mod tls;
