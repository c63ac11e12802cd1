//! Integration tests against real servers. One binary; one module per area.

mod harness;
mod otlp;

mod cli;
mod gateway;
mod guard;
mod runner;
mod state;
mod trace;
