//! The last-known-good (LKG) bundle in the node's data folder.
//!
//! ```text
//! DATA_DIR/bundles/<hash>/<bundle files>     as the control plane sent them
//! DATA_DIR/bundles/<hash>/@manifest.json     node id, version and the list of bundle files
//! DATA_DIR/bundles/<hash>/@effective.toml    the bundle's proxy.toml with the local overlay
//! DATA_DIR/current -> bundles/<hash>         the bundle in force (a symlink, swapped atomically)
//! ```
//!
//! A bundle is written to a temporary folder, every file fsynced, then renamed into place;
//! `current` is replaced by renaming a new symlink over it, and the folder is fsynced. Names
//! starting with `@` cannot be bundle paths (see `edgeward_wire::message::check_path`), so the
//! node's own files never collide with the control plane's. On load every file is read back and
//! the content hash recomputed: a bundle that does not match its hash is corrupt and not used.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use edgeward_wire::{Bundle, BundleVersion};
use serde::{Deserialize, Serialize};

use super::overlay::Overlay;
use crate::authz::PolicySnapshot;
use crate::config::Config;

const MANIFEST: &str = "@manifest.json";
/// The config the node serves from a bundle.
pub const EFFECTIVE: &str = "@effective.toml";

/// Why the LKG cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LkgError {
    #[error("the last-known-good bundle in `{dir}` is corrupt: {reason}")]
    Corrupt { dir: String, reason: String },
    #[error("cannot read the last-known-good bundle in `{dir}`: {reason}")]
    Io { dir: String, reason: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    node_id: String,
    version: BundleVersion,
    files: Vec<String>,
}

/// The bundle store of one node.
#[derive(Debug, Clone)]
pub struct LkgStore {
    dir: PathBuf,
}

impl LkgStore {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.to_path_buf(),
        }
    }

    fn current(&self) -> PathBuf {
        self.dir.join("current")
    }

    fn bundles(&self) -> PathBuf {
        self.dir.join("bundles")
    }

    /// The config path the node serves while a bundle is in force: through `current`, so a
    /// swap of the symlink moves every file at once.
    pub fn config_path(&self) -> PathBuf {
        self.current().join(EFFECTIVE)
    }

    /// The bundle in force, read back and checked against its hash; `Ok(None)` when there is
    /// none yet.
    pub fn load(&self) -> Result<Option<Bundle>, LkgError> {
        let current = self.current();
        if fs::symlink_metadata(&current).is_err() {
            return Ok(None);
        }
        let dir = current.display().to_string();
        let corrupt = |reason: String| LkgError::Corrupt {
            dir: dir.clone(),
            reason,
        };
        let text = fs::read_to_string(current.join(MANIFEST))
            .map_err(|e| corrupt(format!("{MANIFEST}: {e}")))?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| corrupt(format!("{MANIFEST}: {e}")))?;
        let mut files = BTreeMap::new();
        for path in &manifest.files {
            edgeward_wire::message::check_path(path).map_err(|e| corrupt(e.to_string()))?;
            let text = fs::read_to_string(current.join(path))
                .map_err(|e| corrupt(format!("`{path}`: {e}")))?;
            files.insert(path.clone(), text);
        }
        let bundle = Bundle {
            node_id: manifest.node_id,
            version: manifest.version,
            files,
        };
        bundle.verify_hash().map_err(|e| corrupt(e.to_string()))?;
        Ok(Some(bundle))
    }

    /// Writes `bundle` with the node's `overlay` into its own folder and checks that the
    /// proxy would load it (config, then policies against the schema). Nothing in force
    /// changes. Returns the path of the staged effective config.
    pub fn stage(&self, bundle: &Bundle, overlay: &Overlay) -> Result<PathBuf, String> {
        if bundle.node_id != overlay.node_id {
            return Err(format!(
                "the bundle is for node `{}`, this node is `{}`",
                bundle.node_id, overlay.node_id
            ));
        }
        bundle.verify_hash().map_err(|e| e.to_string())?;
        bundle.check_paths().map_err(|e| e.to_string())?;
        let proxy_toml = bundle
            .files
            .get("proxy.toml")
            .ok_or("the bundle has no proxy.toml")?;
        let effective = overlay.apply(proxy_toml)?;

        let bundles = self.bundles();
        fs::create_dir_all(&bundles).map_err(|e| io("create", &bundles, e))?;
        let final_dir = bundles.join(&bundle.version.hash);
        let tmp = bundles.join(format!(
            ".{}.tmp-{}",
            bundle.version.hash,
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&tmp);
        let result = (|| {
            for (path, text) in &bundle.files {
                write_synced(&tmp.join(path), text.as_bytes())?;
            }
            let manifest = Manifest {
                node_id: bundle.node_id.clone(),
                version: bundle.version.clone(),
                files: bundle.files.keys().cloned().collect(),
            };
            let json = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
            write_synced(&tmp.join(MANIFEST), &json)?;
            write_synced(&tmp.join(EFFECTIVE), effective.as_bytes())?;
            check_loads(&tmp.join(EFFECTIVE))?;
            if final_dir.exists() {
                fs::remove_dir_all(&final_dir).map_err(|e| io("replace", &final_dir, e))?;
            }
            fs::rename(&tmp, &final_dir).map_err(|e| io("rename", &tmp, e))?;
            sync_dir(&bundles)
        })();
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        Ok(final_dir.join(EFFECTIVE))
    }

    /// Makes the staged bundle `hash` the one in force; returns the previous target, for a
    /// rollback.
    pub fn commit(&self, hash: &str) -> Result<Option<PathBuf>, String> {
        let previous = fs::read_link(self.current()).ok();
        self.point_current_at(&PathBuf::from("bundles").join(hash))?;
        self.collect_garbage(hash, previous.as_deref());
        Ok(previous)
    }

    /// Puts `current` back to `previous` (or removes it when there was none).
    pub fn rollback(&self, previous: Option<&Path>) -> Result<(), String> {
        match previous {
            Some(p) => self.point_current_at(p),
            None => fs::remove_file(self.current()).map_err(|e| io("remove", &self.current(), e)),
        }
    }

    fn point_current_at(&self, target: &Path) -> Result<(), String> {
        let tmp = self
            .dir
            .join(format!(".current.tmp-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(target, &tmp).map_err(|e| io("link", &tmp, e))?;
        fs::rename(&tmp, self.current()).map_err(|e| io("rename", &tmp, e))?;
        sync_dir(&self.dir)
    }

    /// Keeps the bundle in force and the one before it; removes the others.
    fn collect_garbage(&self, keep: &str, previous: Option<&Path>) {
        let keep_prev = previous.and_then(|p| p.file_name()).map(|n| n.to_owned());
        let Ok(entries) = fs::read_dir(self.bundles()) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if name == keep || Some(&name) == keep_prev.as_ref() {
                continue;
            }
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Loads a staged config the way the proxy will: the config, then its policies.
pub fn check_loads(effective: &Path) -> Result<(), String> {
    let config = Config::load(effective).map_err(|e| e.to_string())?;
    PolicySnapshot::load(
        &config.authz.policies,
        &config.authz.schema,
        config.authz.entities.as_deref(),
    )
    .map_err(|e| format!("policies refused: {e}"))?;
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| io("create", parent, e))?;
    }
    let mut f = File::create(path).map_err(|e| io("create", path, e))?;
    f.write_all(bytes).map_err(|e| io("write", path, e))?;
    f.sync_all().map_err(|e| io("sync", path, e))
}

fn sync_dir(dir: &Path) -> Result<(), String> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("sync", dir, e))
}

fn io(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("cannot {what} `{}`: {e}", path.display())
}

#[cfg(test)]
mod tests;
