//! The `pushguard` command: parse, validate into settings, call the library.

#![forbid(unsafe_code)]

mod cli;

use pushguard_cli::errln;
use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(error) => {
            errln!("pushguard: error: {error:#}");
            match error.downcast_ref::<cli::UsageError>() {
                Some(_) => ExitCode::from(2),
                None => ExitCode::from(1),
            }
        }
    }
}
