//! `edgeward control-plane`.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;
use edgeward_control_plane::config::Config;
use edgeward_control_plane::run::{self, RunError};

use super::logging::{init_logging, LogFormat};
use super::{Failure, Outcome};

#[derive(Args)]
pub struct ControlPlaneArgs {
    /// The control plane's TOML config ([source], [listen], [identity], [store]).
    #[arg(long)]
    config: PathBuf,
    /// `human` or `json`. The level comes from RUST_LOG (default `info`).
    #[arg(long, value_enum, default_value = "human")]
    log_format: LogFormat,
}

pub fn run(args: ControlPlaneArgs) -> Result<Outcome, Failure> {
    let config = Config::load(&args.config).map_err(|e| anyhow!("{e}"))?;
    init_logging(args.log_format);
    match run::run_blocking(&config) {
        Ok(()) => Ok(Outcome::Done),
        Err(RunError::Input(e)) => Err(anyhow!("{e}").into()),
        Err(RunError::Internal(e)) => Err(Failure {
            error: anyhow!("{e}"),
            internal: true,
        }),
    }
}
