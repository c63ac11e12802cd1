//! Integration tests against real servers. One binary; one module per area.

mod harness;
mod otlp;
mod prom;
mod receivers;
mod sources;

mod calendar;
mod cli;
mod example;
mod fetch;
mod gateway;
mod guard;
mod monitoring;
mod notify;
mod pipeline;
mod runner;
mod state;
mod trace;
