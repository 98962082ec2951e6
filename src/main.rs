//! `edgeward`: one binary whose subcommands dispatch into the workspace crates.
//!
//! Exit codes: 0 success; 1 a check answered "no" (`cert verify` found the certificate invalid,
//! `cert needs-renewal` found it not yet due); 2 bad input (arguments, files, identities);
//! 3 an internal failure.

mod cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    match cmd::run(cli) {
        Ok(cmd::Outcome::Done) => ExitCode::SUCCESS,
        Ok(cmd::Outcome::No(reason)) => {
            eprintln!("{reason}");
            ExitCode::from(1)
        }
        Err(failure) => {
            eprintln!("error: {:#}", failure.error);
            ExitCode::from(if failure.internal { 3 } else { 2 })
        }
    }
}
