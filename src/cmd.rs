//! The command line: one module per subcommand group; each only parses, calls the library and
//! prints.

mod ca;
mod cert;
mod control_plane;
mod logging;
mod policy;
mod proxy;

use clap::{Parser, Subcommand};

/// Edgeward: an edge-aware API gateway and zero-trust service mesh proxy.
#[derive(Parser)]
#[command(name = "edgeward", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create and run certificate authorities: a root per trust domain, a CA per site, CRLs.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Issue, sign, inspect, verify and revoke SPIFFE certificates (X.509-SVIDs).
    #[command(subcommand)]
    Cert(cert::CertCommand),
    /// Validate, test, explain and format Cedar policies, deciding as the proxy does.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Run the proxy: mTLS with SPIFFE identities, Cedar on every request, local-first routing.
    Proxy(proxy::ProxyArgs),
    /// Check a proxy config, its policies and certificates without serving.
    Check(proxy::CheckArgs),
    /// Run the control plane: desired state from Git, bundles to nodes over QUIC, fleet page.
    ControlPlane(control_plane::ControlPlaneArgs),
}

impl Cli {
    /// Whether the command is a long-running server (the proxy, the control plane).
    pub fn is_server(&self) -> bool {
        matches!(self.command, Command::Proxy(_) | Command::ControlPlane(_))
    }
}

/// How a command that did its job ended.
pub enum Outcome {
    Done,
    /// The command ran, and its answer is "no" (exit 1), with the reason.
    No(String),
}

/// A command that could not do its job.
pub struct Failure {
    pub error: anyhow::Error,
    /// Ours (exit 3) rather than the input's (exit 2).
    pub internal: bool,
}

impl From<edgeward_certs::PkiError> for Failure {
    fn from(e: edgeward_certs::PkiError) -> Self {
        Failure {
            internal: e.is_internal(),
            error: e.into(),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure {
            error,
            internal: false,
        }
    }
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<Outcome, Failure> {
    match cli.command {
        Command::Ca(c) => ca::run(c),
        Command::Cert(c) => cert::run(c),
        Command::Policy(c) => policy::run(c),
        Command::Proxy(a) => proxy::run(a),
        Command::Check(a) => proxy::check(a),
        Command::ControlPlane(a) => control_plane::run(a),
    }
}

/// Parses `--ttl` values for clap.
pub fn parse_ttl(s: &str) -> Result<std::time::Duration, String> {
    edgeward_certs::ttl::parse_ttl(s).map_err(|e| e.to_string())
}

/// Parses a SPIFFE ID argument for clap.
pub fn parse_spiffe_id(s: &str) -> Result<edgeward_certs::SpiffeId, String> {
    edgeward_certs::SpiffeId::parse(s)
        .map_err(|e| format!("`{s}` is not a valid SPIFFE ID: it {e}"))
}

/// Prints what a command wrote.
pub fn report_written(paths: &[std::path::PathBuf]) {
    for p in paths {
        println!("wrote {}", p.display());
    }
}
