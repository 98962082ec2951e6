//! `edgeward`: one binary whose subcommands dispatch into the workspace crates.
//!
//! Exit codes: 0 success; 1 a check answered "no" (`cert verify` found the certificate invalid,
//! `cert needs-renewal` found it not yet due); 2 bad input (arguments, files, identities);
//! 3 an internal failure.

mod cmd;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: the proxy allocates and frees many small objects per
/// request on a few threads, where mimalloc is cheaper, and after a burst of connections
/// closes it returns the freed pages to the system, where glibc's per-thread arenas kept them
/// (measured in `bench/`: memory returned after idle connections close).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    if !cli.is_server() {
        // A command piped into `head` ends quietly when the pipe closes, as Unix tools do.
        // Servers keep Rust's default (SIGPIPE ignored): a peer closing its socket must be an
        // error on that connection, never the end of the process.
        // SAFETY: restoring the default disposition of one signal, before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
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
