//! `edgeward`: one binary whose subcommands dispatch into the workspace crates.
//!
//! Exit codes: 0 success; 1 a check answered "no" (`cert verify` found the certificate invalid,
//! `cert needs-renewal` found it not yet due); 2 bad input (arguments, files, identities);
//! 3 an internal failure.

mod cmd;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: the proxy allocates and frees many small objects per
/// request on a few threads, where mimalloc is cheaper. Servers also run
/// [`return_freed_memory`], so the memory of closed connections goes back to the system.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for this process: mimalloc commits its arenas eagerly and asks
/// for huge pages, and with THP the kernel backs them with 2 MiB pages, which doubled the idle
/// proxy's memory (PSS 35 MiB against 20 MiB without THP, measured with the release build).
/// The `no_thp` feature stops mimalloc's `madvise(MADV_HUGEPAGE)`; this also covers kernels
/// set to THP `always`. An edge node has little memory to spare.
#[cfg(target_os = "linux")]
fn no_transparent_huge_pages() {
    let (on, unused): (libc::c_ulong, libc::c_ulong) = (1, 0);
    // SAFETY: prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) takes plain integers (passed as the
    // unsigned longs it reads) and changes only this process's memory policy; its result is
    // ignored (a kernel without it keeps the default).
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, on, unused, unused, unused);
    }
}

#[cfg(not(target_os = "linux"))]
fn no_transparent_huge_pages() {}

/// How often a server gives memory freed since (closed connections, say) back to the system.
const RETURN_FREED_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// mimalloc hands freed pages back to the system a second after they were freed, but only
/// when some thread allocates through its slow path; a proxy that goes quiet after a burst of
/// connections would keep their memory. A small thread asks it to, every few seconds.
fn return_freed_memory() {
    let spawned = std::thread::Builder::new()
        .name("memory".into())
        .spawn(|| loop {
            std::thread::sleep(RETURN_FREED_EVERY);
            // SAFETY: mi_collect takes a plain bool and only works on mimalloc's own state;
            // it may be called from any thread at any time.
            unsafe { libmimalloc_sys::mi_collect(false) };
        });
    if let Err(e) = spawned {
        eprintln!("warning: freed memory will not be returned to the system: {e}");
    }
}

fn main() -> ExitCode {
    no_transparent_huge_pages();
    let cli = cmd::Cli::parse();
    if !cli.is_server() {
        // A command piped into `head` ends quietly when the pipe closes, as Unix tools do.
        // Servers keep Rust's default (SIGPIPE ignored): a peer closing its socket must be an
        // error on that connection, never the end of the process.
        // SAFETY: restoring the default disposition of one signal, before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    } else {
        return_freed_memory();
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
