//! Publishing: each new revision of the source is rendered and validated as a whole, and only
//! a revision whose every bundle is valid replaces the published set. A refused revision keeps
//! the last good bundles in force and its problems are kept for the API and the page.
//!
//! The decision ([`plan`], [`build`], [`carry_over`]) is pure; [`Publisher`] wraps it with
//! the source, the store and the atomic swap the channel reads from.
//!
//! The published set is also kept in the store (in the transaction that records a new
//! revision), and [`Publisher::restore`] loads it at start: a control plane restarted while
//! the source's newest revision is invalid keeps serving the last good bundles.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use edgeward_certs::TrustDomain;
use edgeward_wire::{Bundle, BundleVersion};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::SourceKind;
use crate::render::{self, Desired, Problem, RenderedNode};
use crate::source::{self, Snapshot};
use crate::store::{DesiredNode, Store};
use crate::validate;

/// One node of a published revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedNode {
    pub node_id: String,
    pub spiffe_id: String,
    pub site: String,
    pub zone: String,
    pub region: String,
    #[serde(with = "arc_bundle")]
    pub bundle: Arc<Bundle>,
}

/// The bundles in force (kept in the store as JSON of this).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub revision: String,
    /// When it was published (Unix seconds).
    pub at: i64,
    pub sites: BTreeSet<String>,
    /// By node id.
    pub nodes: BTreeMap<String, PublishedNode>,
}

impl Published {
    /// The node whose rendered SPIFFE ID is `spiffe_id`.
    pub fn by_spiffe_id(&self, spiffe_id: &str) -> Option<&PublishedNode> {
        self.nodes.values().find(|n| n.spiffe_id == spiffe_id)
    }
}

/// A revision that was refused, with every problem found in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refused {
    pub revision: String,
    pub at: i64,
    pub problems: Vec<Problem>,
}

/// What one sync did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SyncOutcome {
    /// The revision was already published or refused: nothing to do.
    Unchanged {
        revision: String,
    },
    Published {
        revision: String,
        nodes: usize,
    },
    Refused {
        revision: String,
        problems: usize,
    },
    /// The source could not be read; the published bundles stay.
    SourceFailed {
        reason: String,
    },
}

/// What to do with a revision just read from the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Published or refused before: skip it.
    Skip,
    /// New: render and validate it.
    Evaluate,
}

/// A revision is evaluated once: neither the published one nor the last refused one again.
pub fn plan(revision: &str, published: Option<&str>, refused: Option<&str>) -> Plan {
    if Some(revision) == published || Some(revision) == refused {
        Plan::Skip
    } else {
        Plan::Evaluate
    }
}

/// Renders and validates a snapshot: the new published set, or every problem.
pub fn evaluate(
    snapshot: &Snapshot,
    td: &TrustDomain,
    now: i64,
) -> Result<Published, Vec<Problem>> {
    let desired = render::render(snapshot, td)?;
    validate::validate(&desired)?;
    Ok(build(desired, now))
}

/// Turns validated nodes into content-addressed bundles.
pub fn build(desired: Desired, now: i64) -> Published {
    let nodes = desired
        .nodes
        .into_iter()
        .map(|n| (n.node_id.clone(), published_node(n, &desired.revision)))
        .collect();
    Published {
        revision: desired.revision,
        at: now,
        sites: desired.sites,
        nodes,
    }
}

fn published_node(n: RenderedNode, revision: &str) -> PublishedNode {
    let mut bundle = Bundle {
        node_id: n.node_id.clone(),
        version: BundleVersion {
            commit: revision.to_owned(),
            hash: String::new(),
        },
        files: n.files,
    };
    bundle.version.hash = bundle.content_hash();
    PublishedNode {
        node_id: n.node_id,
        spiffe_id: n.spiffe_id.to_string(),
        site: n.site,
        zone: n.zone,
        region: n.region,
        bundle: Arc::new(bundle),
    }
}

/// Keeps the previous bundle (and so its version) of every node whose content did not change,
/// so that a commit touching one site pushes nothing to the others and leaves them in sync.
/// Returns the ids of the nodes whose bundle is new.
pub fn carry_over(old: Option<&Published>, new: &mut Published) -> Vec<String> {
    let mut changed = Vec::new();
    for n in new.nodes.values_mut() {
        match old.and_then(|o| o.nodes.get(&n.node_id)) {
            Some(o) if o.bundle.version.hash == n.bundle.version.hash => {
                n.bundle = o.bundle.clone();
            }
            _ => changed.push(n.node_id.clone()),
        }
    }
    changed
}

/// Reads the source, decides, and holds the published bundles.
pub struct Publisher {
    source: SourceKind,
    td: TrustDomain,
    store: Arc<Store>,
    current: ArcSwapOption<Published>,
    refused: Mutex<Option<Refused>>,
    last_error: Mutex<Option<String>>,
    /// Serializes syncs: the poll loop and "sync now" never evaluate at the same time.
    sync_lock: Mutex<()>,
    notify: watch::Sender<Option<Arc<Published>>>,
}

impl Publisher {
    /// Loads the published set kept in the store, if any, as the bundles in force: call it
    /// before the first sync and before nodes can connect. A kept set that cannot be read
    /// (or whose bundles do not verify) is logged, naming the store file, and nothing is
    /// published. Returns the restored revision.
    pub fn restore(&self) -> Option<String> {
        let loaded = self
            .store
            .load_published::<Published>()
            .map_err(|e| e.to_string())
            .and_then(|p| match p {
                Some(p) => check_restored(&p).map(|()| Some(p)),
                None => Ok(None),
            });
        match loaded {
            Ok(Some(p)) => {
                let revision = p.revision.clone();
                tracing::info!(revision = %revision, nodes = p.nodes.len(), "restored the last published revision from the store");
                let p = Arc::new(p);
                self.current.store(Some(p.clone()));
                self.notify.send_replace(Some(p));
                Some(revision)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::error!(store = %self.store.path(), error = %e, "cannot read the published revision kept in the store; starting with nothing published");
                None
            }
        }
    }

    /// A publisher with nothing published yet.
    pub fn new(source: SourceKind, td: TrustDomain, store: Arc<Store>) -> Self {
        Self {
            source,
            td,
            store,
            current: ArcSwapOption::empty(),
            refused: Mutex::new(None),
            last_error: Mutex::new(None),
            sync_lock: Mutex::new(()),
            notify: watch::channel(None).0,
        }
    }

    /// The trust domain every node belongs to.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.td
    }

    /// The bundles in force, if any revision was published.
    pub fn current(&self) -> Option<Arc<Published>> {
        self.current.load_full()
    }

    /// The last refused revision, if any.
    pub fn refused(&self) -> Option<Refused> {
        lock(&self.refused).clone()
    }

    /// Why the source could not be read at the last sync, if it could not.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    /// Tells of every newly published set.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Published>>> {
        self.notify.subscribe()
    }

    /// Reads the source and publishes its revision if it is new and valid. Blocking: run it
    /// off the async workers.
    pub fn sync(&self, now: i64) -> SyncOutcome {
        let _guard = lock(&self.sync_lock);

        // Read the revision; a source that cannot be read changes nothing.
        let snapshot = match self.read_if_new() {
            Ok(Ok(s)) => s,
            Ok(Err(revision)) => return SyncOutcome::Unchanged { revision },
            Err(reason) => {
                tracing::warn!(error = %reason, "desired state source cannot be read");
                *lock(&self.last_error) = Some(reason.clone());
                return SyncOutcome::SourceFailed { reason };
            }
        };
        *lock(&self.last_error) = None;

        // Render and validate; refuse the whole revision on any problem.
        let revision = snapshot.revision.clone();
        let mut published = match evaluate(&snapshot, &self.td, now) {
            Ok(p) => p,
            Err(problems) => return self.refuse(revision, problems, now),
        };

        // Publish: unchanged bundles keep their version; record, then swap and notify.
        let changed = carry_over(self.current().as_deref(), &mut published);
        let n = published.nodes.len();
        self.record_desired(&published, now);
        let published = Arc::new(published);
        self.current.store(Some(published.clone()));
        self.notify.send_replace(Some(published));
        tracing::info!(revision = %revision, nodes = n, changed = changed.len(), "published a revision");
        SyncOutcome::Published { revision, nodes: n }
    }

    /// The snapshot when its revision is new, or `Err(revision)` when it is not.
    fn read_if_new(&self) -> Result<Result<Snapshot, String>, String> {
        let revision = source::revision(&self.source).map_err(|e| e.to_string())?;
        let published = self.current().map(|p| p.revision.clone());
        let refused = lock(&self.refused).as_ref().map(|r| r.revision.clone());
        if plan(&revision, published.as_deref(), refused.as_deref()) == Plan::Skip {
            return Ok(Err(revision));
        }
        let snapshot = source::read(&self.source).map_err(|e| e.to_string())?;
        Ok(Ok(snapshot))
    }

    fn refuse(&self, revision: String, problems: Vec<Problem>, now: i64) -> SyncOutcome {
        let count = problems.len();
        tracing::warn!(revision = %revision, problems = count, "refused a revision; the last good bundles stay published");
        for p in &problems {
            tracing::warn!(revision = %revision, file = %p.file, "{}", p.message);
        }
        let message = format!(
            "refused revision {}: {}",
            crate::store::short(&revision),
            problems
                .first()
                .map(ToString::to_string)
                .unwrap_or_default()
        );
        if let Err(e) = self.store.event(now, None, "revision-refused", &message) {
            tracing::error!(error = %e, "cannot record the refused revision");
        }
        *lock(&self.refused) = Some(Refused {
            revision: revision.clone(),
            at: now,
            problems,
        });
        SyncOutcome::Refused {
            revision,
            problems: count,
        }
    }

    fn record_desired(&self, p: &Published, now: i64) {
        let nodes: Vec<DesiredNode<'_>> = p
            .nodes
            .values()
            .map(|n| DesiredNode {
                id: &n.node_id,
                spiffe_id: &n.spiffe_id,
                site: &n.site,
                zone: &n.zone,
                region: &n.region,
                commit: &n.bundle.version.commit,
                hash: &n.bundle.version.hash,
            })
            .collect();
        if let Err(e) = self.store.record_published(&p.revision, now, p, &nodes) {
            tracing::error!(error = %e, "cannot record the published revision in the store");
        }
    }
}

/// A published set read back from the store must be what was kept: every bundle under its
/// node's id, with a hash that verifies.
fn check_restored(p: &Published) -> Result<(), String> {
    for (id, n) in &p.nodes {
        if n.node_id != *id || n.bundle.node_id != *id {
            return Err(format!(
                "the bundle kept for node `{id}` names another node"
            ));
        }
        n.bundle
            .verify_hash()
            .map_err(|e| format!("the bundle kept for node `{id}`: {e}"))?;
    }
    Ok(())
}

/// (De)serializes an `Arc<Bundle>` as the bundle (serde's `rc` feature is not enabled).
mod arc_bundle {
    use std::sync::Arc;

    use edgeward_wire::Bundle;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(b: &Arc<Bundle>, s: S) -> Result<S::Ok, S::Error> {
        b.as_ref().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<Bundle>, D::Error> {
        Bundle::deserialize(d).map(Arc::new)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests;
