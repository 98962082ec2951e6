//! `edgeward proxy` and `edgeward check`.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;
use edgeward_proxy::server;

use super::logging::{init_logging, LogFormat};
use super::{Failure, Outcome};

#[derive(Args)]
pub struct ProxyArgs {
    /// The proxy's TOML config.
    #[arg(long)]
    config: PathBuf,
    /// Worker threads per listener.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// `human` or `json`. The level comes from RUST_LOG (default `info`).
    #[arg(long, value_enum, default_value = "human")]
    log_format: LogFormat,
}

#[derive(Args)]
pub struct CheckArgs {
    /// The proxy's TOML config.
    #[arg(long)]
    config: PathBuf,
}

pub fn run(args: ProxyArgs) -> Result<Outcome, Failure> {
    init_logging(args.log_format);
    match server::run(&args.config, args.threads) {
        Ok(()) => Ok(Outcome::Done),
        Err(e) => Err(anyhow!("{}: {e}", args.config.display()).into()),
    }
}

pub fn check(args: CheckArgs) -> Result<Outcome, Failure> {
    let loaded =
        server::load(&args.config).map_err(|e| anyhow!("{}: {e}", args.config.display()))?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let snapshot = loaded.shared.snapshot();
    let config = &snapshot.config;
    let policies = loaded.shared.policies.current();
    println!("config:       {} is valid", args.config.display());
    println!(
        "node:         {} (site {}, zone {}, region {})",
        config.node.id.as_str(),
        config.node.locality.site.as_str(),
        config.node.locality.zone.as_str(),
        config.node.locality.region.as_str()
    );
    if let Some(serving) = &loaded.shared.serving {
        let cert = serving.current();
        println!(
            "identity:     {} (expires {})",
            cert.id,
            edgeward_certs::cert::rfc3339(cert.leaf.not_after)
        );
    }
    for td in &config.trust_domains {
        println!("trust domain: {} ({} CRL file(s))", td.name, td.crls.len());
    }
    for l in &config.listeners {
        println!(
            "listener:     {} ({}) on {}",
            l.name.as_str(),
            l.kind.as_str(),
            l.address
        );
    }
    println!(
        "routes:       {}, clusters: {}",
        config.routes.len(),
        config.clusters.len()
    );
    println!(
        "policies:     {} valid against the schema",
        policies.policy_count()
    );
    Ok(Outcome::Done)
}
