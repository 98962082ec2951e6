//! `edgeward ca ...`: create a trust domain's root, site CAs, and CRLs.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use edgeward_certs::ca::{self, Ca, KeyAlg, NewCa};
use edgeward_certs::cert::rfc3339;
use edgeward_certs::{revoke, PathPrefix, TrustDomain};
use time::OffsetDateTime;

use super::{parse_ttl, report_written, Failure, Outcome};

#[derive(Subcommand)]
pub enum CaCommand {
    /// Create the root CA of a trust domain: DIR/ca.crt and DIR/ca.key.
    Init {
        /// The trust domain, e.g. `acme.example` (lowercase letters, digits, `.`, `-`, `_`).
        #[arg(long, value_parser = parse_trust_domain)]
        trust_domain: TrustDomain,
        /// The folder to write into (created when missing).
        #[arg(long)]
        out: PathBuf,
        /// Lifetime of the root.
        #[arg(long, default_value = "10y", value_parser = parse_ttl)]
        ttl: Duration,
        /// p256, p384 or ed25519.
        #[arg(long, default_value = "p256")]
        key_type: KeyAlg,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Create a site CA signed by the root: DIR2/ca.crt, ca.key and chain.pem.
    Intermediate {
        /// The root CA's folder.
        #[arg(long)]
        ca: PathBuf,
        /// The site's name, e.g. `berlin`.
        #[arg(long)]
        name: String,
        /// The folder to write into (created when missing).
        #[arg(long)]
        out: PathBuf,
        /// Lifetime of the site CA (cut to the root's).
        #[arg(long, default_value = "1y", value_parser = parse_ttl)]
        ttl: Duration,
        /// Only issue SPIFFE IDs at or below this path, e.g. `/site/berlin`.
        #[arg(long, value_parser = parse_prefix)]
        path_prefix: Option<PathPrefix>,
        /// p256, p384 or ed25519.
        #[arg(long, default_value = "p256")]
        key_type: KeyAlg,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Sign a CRL listing every certificate this CA revoked.
    Crl {
        /// The CA's folder.
        #[arg(long)]
        ca: PathBuf,
        /// The CRL file to write (PEM).
        #[arg(long)]
        out: PathBuf,
        /// How long the CRL is valid (its nextUpdate).
        #[arg(long, default_value = "7d", value_parser = parse_ttl)]
        ttl: Duration,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

fn parse_trust_domain(s: &str) -> Result<TrustDomain, String> {
    TrustDomain::parse_uri_or_name(s).map_err(|e| format!("trust domain `{s}` {e}"))
}

fn parse_prefix(s: &str) -> Result<PathPrefix, String> {
    PathPrefix::parse(s).map_err(|e| format!("path prefix `{s}` {e}"))
}

pub fn run(cmd: CaCommand) -> Result<Outcome, Failure> {
    let now = OffsetDateTime::now_utc();
    match cmd {
        CaCommand::Init {
            trust_domain,
            out,
            ttl,
            key_type,
            force,
        } => {
            let opts = NewCa {
                out: &out,
                ttl,
                key_alg: key_type,
                force,
                now,
            };
            let written = ca::init_root(&trust_domain, &opts)?;
            report_written(&written);
            println!(
                "root CA of trust domain `{trust_domain}` is ready in {}",
                out.display()
            );
        }
        CaCommand::Intermediate {
            ca: parent_dir,
            name,
            out,
            ttl,
            path_prefix,
            key_type,
            force,
        } => {
            let parent = Ca::load(&parent_dir, now)?;
            let opts = NewCa {
                out: &out,
                ttl,
                key_alg: key_type,
                force,
                now,
            };
            let (written, clamped) =
                ca::create_intermediate(&parent, &name, path_prefix.as_ref(), &opts)?;
            if clamped {
                eprintln!(
                    "warning: the site CA's lifetime was cut to its root's notAfter ({})",
                    rfc3339(parent.cert.not_after)
                );
            }
            report_written(&written);
            match &path_prefix {
                Some(p) => println!("site CA `{name}` is ready; it issues only IDs under `{p}`"),
                None => println!("site CA `{name}` is ready"),
            }
        }
        CaCommand::Crl {
            ca: dir,
            out,
            ttl,
            force,
        } => {
            let ca = Ca::load(&dir, now)?;
            let (path, count) = revoke::write_crl(&ca, &out, ttl, force, now)?;
            println!(
                "wrote {} listing {count} revoked certificate(s), valid until {}",
                path.display(),
                rfc3339(now + ttl)
            );
        }
    }
    Ok(Outcome::Done)
}
