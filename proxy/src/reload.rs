//! Reloading without a restart: config, policies, the node's certificate and the trust
//! bundles and CRLs are re-read when their files change (checked on an interval, by content,
//! so atomic renames and in-place writes are both seen) and on SIGHUP. A bad new file is
//! refused with an error log and the material in force stays; requests in flight finish on
//! the snapshot they started with.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::identity::NodeCert;
use crate::state::{Shared, Snapshot};

/// What can be reloaded, each with its own fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Config,
    Policies,
    Identity,
    Trust,
}

const PARTS: [Part; 4] = [Part::Config, Part::Policies, Part::Identity, Part::Trust];

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Config => "config",
            Part::Policies => "policies",
            Part::Identity => "identity",
            Part::Trust => "trust",
        }
    }

    fn files(self, config: &Config) -> Vec<PathBuf> {
        match self {
            Part::Config => vec![config.source.clone()],
            Part::Policies => {
                let mut files = vec![config.authz.schema.clone()];
                files.extend(config.authz.entities.clone());
                if let Ok(rd) = std::fs::read_dir(&config.authz.policies) {
                    let mut cedar: Vec<PathBuf> = rd
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
                        .collect();
                    cedar.sort();
                    files.extend(cedar);
                }
                files
            }
            Part::Identity => config
                .identity
                .iter()
                .flat_map(|i| [i.cert.clone(), i.key.clone()])
                .collect(),
            Part::Trust => config
                .trust_domains
                .iter()
                .flat_map(|t| std::iter::once(t.bundle.clone()).chain(t.crls.iter().cloned()))
                .collect(),
        }
    }
}

/// A digest of the names and contents of files (missing files count as empty).
fn fingerprint(files: &[PathBuf]) -> [u8; 32] {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.as_os_str().as_encoded_bytes());
        h.update([0]);
        h.update(std::fs::read(f).unwrap_or_default());
        h.update([0xff]);
    }
    h.finalize().into()
}

/// The background service that watches and reloads.
pub struct Reloader {
    pub shared: Arc<Shared>,
    pub interval: Duration,
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let snapshot = self.shared.snapshot();
        let mut prints: Vec<[u8; 32]> = PARTS
            .iter()
            .map(|p| fingerprint(&p.files(&snapshot.config)))
            .collect();
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGHUP; reloading on file changes only");
                None
            }
        };
        let mut ticker = tokio::time::interval(self.interval);
        loop {
            // Parts already dealt with in this round (see below).
            let mut done = [false; PARTS.len()];
            let forced = tokio::select! {
                _ = shutdown.changed() => return,
                _ = ticker.tick() => false,
                Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            };
            if forced {
                tracing::info!("SIGHUP: reloading everything");
            }
            for (i, part) in PARTS.iter().enumerate() {
                if done[i] {
                    continue;
                }
                let config = self.shared.snapshot().config.clone();
                let now = fingerprint(&part.files(&config));
                if now == prints[i] && !forced {
                    continue;
                }
                prints[i] = now;
                let result = reload_part(&self.shared, *part);
                match &result {
                    Ok(()) => {
                        self.shared.metrics.reload(part.name(), true);
                        tracing::info!(part = part.name(), "reloaded");
                    }
                    // Counted and logged under the part whose files were refused.
                    Err(refused) => {
                        self.shared.metrics.reload(refused.part.name(), false);
                        tracing::error!(part = refused.part.name(), error = %refused.message, "reload refused; the previous version stays in force");
                    }
                }
                if *part == Part::Config {
                    // A config reload loads the policies and trust it names: in force when it
                    // succeeded, and refused already when they were what failed, so they are
                    // not loaded (or refused) a second time in this round.
                    match &result {
                        Ok(()) => {
                            done[index(Part::Policies)] = true;
                            done[index(Part::Trust)] = true;
                        }
                        Err(refused) => done[index(refused.part)] = true,
                    }
                    // A config change may move every other file: take their prints afresh.
                    let config = self.shared.snapshot().config.clone();
                    for (j, other) in PARTS.iter().enumerate().skip(1) {
                        prints[j] = fingerprint(&other.files(&config));
                    }
                }
            }
        }
    }
}

fn index(part: Part) -> usize {
    PARTS.iter().position(|p| *p == part).unwrap_or(0)
}

/// A reload that was refused, and the part whose files were refused.
#[derive(Debug)]
struct Refused {
    part: Part,
    message: String,
}

impl Refused {
    /// For `map_err`: the error, refused as `part`'s.
    fn of<E: std::fmt::Display>(part: Part) -> impl FnOnce(E) -> Refused {
        move |e| Refused {
            part,
            message: e.to_string(),
        }
    }
}

fn reload_part(shared: &Shared, part: Part) -> Result<(), Refused> {
    let snapshot = shared.snapshot();
    let config = &snapshot.config;
    match part {
        Part::Config => load_config(shared, &config.source),
        Part::Policies => reload_policies(shared, config).map_err(Refused::of(part)),
        Part::Identity => reload_identity(shared, config).map_err(Refused::of(part)),
        Part::Trust => shared
            .trust
            .reload(&config.trust_domains)
            .map(|_| ())
            .map_err(Refused::of(part)),
    }
}

fn reload_policies(shared: &Shared, config: &Config) -> Result<(), String> {
    shared
        .policies
        .reload(
            &config.authz.policies,
            &config.authz.schema,
            config.authz.entities.as_deref(),
        )
        .map_err(|e| e.to_string())?;
    shared.policy_generation.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn reload_identity(shared: &Shared, config: &Config) -> Result<(), String> {
    let (Some(id), Some(serving)) = (&config.identity, &shared.serving) else {
        return Ok(());
    };
    let cert =
        NodeCert::load(&id.cert, &id.key, shared.trust.provider()).map_err(|e| e.to_string())?;
    if cert.leaf.serial != serving.current().leaf.serial {
        tracing::info!(id = %cert.id, serial = %cert.leaf.serial, "serving a new node certificate");
    }
    serving.replace(cert);
    Ok(())
}

/// Loads the config file again and swaps in a new snapshot, with its policies and trust.
pub fn reload_config(shared: &Shared, path: &Path) -> Result<(), String> {
    load_config(shared, path).map_err(|r| r.message)
}

fn load_config(shared: &Shared, path: &Path) -> Result<(), Refused> {
    let config = Config::load(path).map_err(Refused::of(Part::Config))?;
    let old = shared.snapshot();
    if config.listeners != old.config.listeners || config.admin != old.config.admin {
        tracing::warn!("listener or admin addresses changed: they take effect at the next restart");
    }
    // Everything the new config names must load before anything is swapped.
    let policies = crate::authz::PolicySnapshot::load(
        &config.authz.policies,
        &config.authz.schema,
        config.authz.entities.as_deref(),
    )
    .map_err(Refused::of(Part::Policies))?;
    let next = Snapshot::build(config, old.generation + 1, Some(&old))
        .map_err(Refused::of(Part::Config))?;
    shared
        .trust
        .reload(&next.config.trust_domains)
        .map_err(Refused::of(Part::Trust))?;
    shared.policies.replace(policies);
    shared.policy_generation.fetch_add(1, Ordering::Relaxed);
    shared.snapshot.store(Arc::new(next));
    Ok(())
}
