//! `edgeward cert ...`: leaf SVIDs for services and devices.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::Subcommand;
use edgeward_certs::ca::{Ca, KeyAlg};
use edgeward_certs::cert::rfc3339;
use edgeward_certs::files::{Output, Secrecy};
use edgeward_certs::inspect::{self, DEFAULT_RENEW_AT};
use edgeward_certs::issue::{self, ExtraSans, LeafRequest};
use edgeward_certs::revoke::{self, Reason, Revoked, Target};
use edgeward_certs::ttl::human;
use edgeward_certs::{pem_io, verify, CertView, SpiffeId};
use time::OffsetDateTime;

use super::{parse_spiffe_id, parse_ttl, report_written, Failure, Outcome};

#[derive(Subcommand)]
pub enum CertCommand {
    /// Issue a key and certificate for a SPIFFE ID: PREFIX.crt (leaf, then the chain without
    /// the root) and PREFIX.key.
    Issue {
        /// The identity, e.g. `spiffe://acme.example/site/berlin/service/api`.
        #[arg(value_parser = parse_spiffe_id)]
        spiffe_id: SpiffeId,
        /// The issuing CA's folder.
        #[arg(long)]
        ca: PathBuf,
        /// Output prefix: writes PREFIX.crt and PREFIX.key.
        #[arg(long)]
        out: PathBuf,
        /// Lifetime (cut to the CA's).
        #[arg(long, default_value = "24h", value_parser = parse_ttl)]
        ttl: Duration,
        /// Extra DNS name SAN (repeatable).
        #[arg(long)]
        dns: Vec<String>,
        /// Extra IP address SAN (repeatable).
        #[arg(long)]
        ip: Vec<IpAddr>,
        /// p256, p384 or ed25519.
        #[arg(long, default_value = "p256")]
        key_type: KeyAlg,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Create a key and a certificate signing request on the device: PREFIX.csr and PREFIX.key.
    Csr {
        /// The identity to request.
        #[arg(value_parser = parse_spiffe_id)]
        spiffe_id: SpiffeId,
        /// Output prefix: writes PREFIX.csr and PREFIX.key.
        #[arg(long)]
        out: PathBuf,
        /// Extra DNS name SAN (repeatable).
        #[arg(long)]
        dns: Vec<String>,
        /// Extra IP address SAN (repeatable).
        #[arg(long)]
        ip: Vec<IpAddr>,
        /// p256, p384 or ed25519.
        #[arg(long, default_value = "p256")]
        key_type: KeyAlg,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Sign a CSR: takes only its SPIFFE ID, extra SANs and public key.
    Sign {
        /// The CSR file (PEM).
        csr: PathBuf,
        /// The issuing CA's folder.
        #[arg(long)]
        ca: PathBuf,
        /// The chain file to write.
        #[arg(long)]
        out: PathBuf,
        /// Lifetime (cut to the CA's).
        #[arg(long, default_value = "24h", value_parser = parse_ttl)]
        ttl: Duration,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Describe every certificate in a file.
    Inspect {
        /// A PEM file of one or more certificates.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Verify a certificate chain: to the bundle, the SVID profile, revocation. Exit 0 if valid.
    Verify {
        /// The chain to verify (leaf first).
        file: PathBuf,
        /// The trusted roots (PEM).
        #[arg(long)]
        bundle: PathBuf,
        /// A CRL to check revocation against (repeatable).
        #[arg(long)]
        crl: Vec<PathBuf>,
    },
    /// Record a revocation in the CA's folder (then publish it with `edgeward ca crl`).
    Revoke {
        /// The certificate to revoke.
        #[arg(required_unless_present = "serial", conflicts_with = "serial")]
        file: Option<PathBuf>,
        /// Or its serial number in hex.
        #[arg(long)]
        serial: Option<String>,
        /// The CA that issued it.
        #[arg(long)]
        ca: PathBuf,
        /// Why: unspecified, key-compromise, ca-compromise, affiliation-changed, superseded,
        /// cessation-of-operation, certificate-hold, privilege-withdrawn.
        #[arg(long, default_value = "unspecified")]
        reason: Reason,
    },
    /// Exit 0 when the leaf is past the given share of its lifetime or expired, 1 otherwise.
    NeedsRenewal {
        /// The certificate file.
        file: PathBuf,
        /// The share of the lifetime after which renewal is due (0 < at <= 1).
        #[arg(long, default_value_t = DEFAULT_RENEW_AT, value_parser = parse_fraction)]
        at: f64,
    },
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f > 0.0 && f <= 1.0 => Ok(f),
        _ => Err(format!(
            "`{s}` is not a fraction between 0 (excluded) and 1"
        )),
    }
}

pub fn run(cmd: CertCommand) -> Result<Outcome, Failure> {
    let now = OffsetDateTime::now_utc();
    match cmd {
        CertCommand::Issue {
            spiffe_id,
            ca,
            out,
            ttl,
            dns,
            ip,
            key_type,
            force,
        } => {
            let ca = Ca::load(&ca, now)?;
            let sans = ExtraSans { dns, ips: ip };
            let req = LeafRequest {
                id: &spiffe_id,
                sans: &sans,
                ttl,
                now,
            };
            let (written, leaf) = issue::issue(&ca, &req, key_type, &out, force)?;
            warn_clamped(leaf.clamped, leaf.not_after);
            report_written(&written);
            println!(
                "issued `{spiffe_id}`, valid until {}",
                rfc3339(leaf.not_after)
            );
        }
        CertCommand::Csr {
            spiffe_id,
            out,
            dns,
            ip,
            key_type,
            force,
        } => {
            let sans = ExtraSans { dns, ips: ip };
            let written = issue::create_csr(&spiffe_id, &sans, key_type, &out, force)?;
            report_written(&written);
            println!("send the .csr to your CA; the .key stays here");
        }
        CertCommand::Sign {
            csr,
            ca,
            out,
            ttl,
            force,
        } => {
            let request = issue::read_csr(&csr)?;
            let ca = Ca::load(&ca, now)?;
            let mut output = Output::new(force);
            output
                .check_absent(&out)
                .map_err(edgeward_certs::PkiError::from)?;
            let req = LeafRequest {
                id: &request.id,
                sans: &request.sans,
                ttl,
                now,
            };
            let leaf = issue::sign_leaf(&ca, &req, &request.key)?;
            output
                .stage(&out, leaf.chain_pem.as_bytes(), Secrecy::Public)
                .map_err(edgeward_certs::PkiError::from)?;
            let written = output.commit().map_err(edgeward_certs::PkiError::from)?;
            warn_clamped(leaf.clamped, leaf.not_after);
            report_written(&written);
            println!(
                "signed `{}`, valid until {}",
                request.id,
                rfc3339(leaf.not_after)
            );
        }
        CertCommand::Inspect { file, json } => {
            let reports = inspect::inspect(read_views(&file)?, now);
            if json {
                let text = serde_json::to_string_pretty(&reports).map_err(anyhow::Error::from)?;
                println!("{text}");
            } else {
                print_reports(&reports);
            }
            for r in reports.iter().filter(|r| !r.warnings.is_empty()) {
                for w in &r.warnings {
                    eprintln!("warning: certificate {} ({}): {w}", r.index, r.role);
                }
            }
        }
        CertCommand::Verify { file, bundle, crl } => {
            let chain = pem_io::read_certificates(&file).map_err(edgeward_certs::PkiError::from)?;
            let roots =
                pem_io::read_certificates(&bundle).map_err(edgeward_certs::PkiError::from)?;
            let mut crls = Vec::new();
            for path in &crl {
                crls.extend(
                    pem_io::read_blocks(path, pem_io::Kind::Crl)
                        .map_err(edgeward_certs::PkiError::from)?,
                );
            }
            return Ok(match verify::verify_svid(&chain, &roots, &crls, now) {
                Ok(v) => {
                    println!(
                        "valid: `{}`, {} left",
                        v.id,
                        human(Duration::from_secs(v.leaf.seconds_left(now).max(0) as u64))
                    );
                    Outcome::Done
                }
                Err(e) => Outcome::No(format!("invalid: {}: {e}", file.display())),
            });
        }
        CertCommand::Revoke {
            file,
            serial,
            ca,
            reason,
        } => {
            let ca = Ca::load(&ca, now)?;
            let target = match (&file, &serial) {
                (Some(f), _) => Target::File(f),
                (None, Some(s)) => Target::Serial(s),
                (None, None) => return Err(anyhow!("give a certificate file or --serial").into()),
            };
            match revoke::revoke(&ca, target, reason, now)? {
                Revoked::Recorded(r) => println!(
                    "revoked serial {} ({}); publish it with `edgeward ca crl --ca {} --out FILE`",
                    r.serial,
                    r.reason,
                    ca.dir.display()
                ),
                Revoked::AlreadyRevoked(r) => println!(
                    "serial {} was already revoked at {} ({}); nothing changed",
                    r.serial,
                    rfc3339(r.revoked_at),
                    r.reason
                ),
            }
        }
        CertCommand::NeedsRenewal { file, at } => {
            let views = read_views(&file)?;
            let leaf = &views[0];
            let used = leaf.elapsed_fraction(now);
            return Ok(if inspect::needs_renewal(leaf, at, now) {
                println!(
                    "renew: {:.0}% of its lifetime has passed",
                    used.min(1.0) * 100.0
                );
                Outcome::Done
            } else {
                Outcome::No(format!(
                    "not yet: {:.0}% of its lifetime has passed (renewal at {:.0}%)",
                    used.max(0.0) * 100.0,
                    at * 100.0
                ))
            });
        }
    }
    Ok(Outcome::Done)
}

fn read_views(file: &std::path::Path) -> Result<Vec<CertView>, Failure> {
    let ders = pem_io::read_certificates(file).map_err(edgeward_certs::PkiError::from)?;
    ders.iter()
        .enumerate()
        .map(|(i, d)| {
            CertView::parse(d)
                .with_context(|| format!("{}: certificate {}", file.display(), i + 1))
                .map_err(Failure::from)
        })
        .collect()
}

fn warn_clamped(clamped: bool, not_after: OffsetDateTime) {
    if clamped {
        eprintln!(
            "warning: the lifetime was cut to the CA's notAfter ({})",
            rfc3339(not_after)
        );
    }
}

fn print_reports(reports: &[inspect::Report]) {
    for r in reports {
        let c = &r.cert;
        println!("certificate {} ({})", r.index, r.role);
        if let Some(id) = &r.spiffe_id {
            println!("  spiffe id:    {id}");
        }
        println!("  subject:      {}", c.subject);
        println!("  issuer:       {}", c.issuer);
        println!("  serial:       {}", c.serial);
        println!("  not before:   {}", rfc3339(c.not_before));
        println!("  not after:    {}", rfc3339(c.not_after));
        let left = if r.seconds_left >= 0 {
            format!("{} left", human(Duration::from_secs(r.seconds_left as u64)))
        } else {
            format!(
                "expired {} ago",
                human(Duration::from_secs(r.seconds_left.unsigned_abs()))
            )
        };
        println!(
            "  time left:    {left} ({:.0}% of lifetime used)",
            r.lifetime_used * 100.0
        );
        println!("  key type:     {}", c.key_type.name());
        let mut sans: Vec<String> = c.uris.iter().map(|u| format!("URI:{u}")).collect();
        sans.extend(c.dns_names.iter().map(|d| format!("DNS:{d}")));
        sans.extend(c.ip_addresses.iter().map(|i| format!("IP:{i}")));
        sans.extend(c.other_sans.iter().cloned());
        println!("  SANs:         {}", sans.join(", "));
        let ku = &c.key_usage;
        let mut usages = Vec::new();
        for (on, name) in [
            (ku.digital_signature, "digitalSignature"),
            (ku.key_encipherment, "keyEncipherment"),
            (ku.key_agreement, "keyAgreement"),
            (ku.key_cert_sign, "keyCertSign"),
            (ku.crl_sign, "cRLSign"),
            (c.server_auth, "serverAuth"),
            (c.client_auth, "clientAuth"),
        ] {
            if on {
                usages.push(name);
            }
        }
        println!("  key usages:   {}", usages.join(", "));
        match c.ca {
            Some(Some(n)) => println!("  CA:           yes, path length {n}"),
            Some(None) => println!("  CA:           yes"),
            None => println!("  CA:           no"),
        }
        println!("  sha256:       {}", c.sha256_fingerprint);
    }
}
