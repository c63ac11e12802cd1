//! The library's integration tests against a real Pushgateway and a real
//! OTLP receiver. One binary; one module per area.

use pushguard_testkit::{harness, otlp, prom};

mod gateway;
mod guard;
mod spool;
mod trace;
