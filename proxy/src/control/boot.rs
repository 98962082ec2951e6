//! Which config a node starts from.
//!
//! A node with `[control_plane]` in its local file starts from its last-known-good bundle when
//! there is one that checks out (hash, config and policies), re-applying the local overlay (so
//! a moved certificate or a new control plane address in the local file count at once). A
//! corrupt or unusable LKG is reported and not used; the node then starts from its local file,
//! and when that is not a config it can serve either, it refuses to start and says why.

use std::path::{Path, PathBuf};

use super::lkg::{self, LkgStore};
use super::overlay::Overlay;
use crate::config::{Config, ConfigErrors};

/// The config the node serves, and the local config (which names the control plane).
#[derive(Debug)]
pub struct Boot {
    pub serve: PathBuf,
    pub local: Config,
    /// What was wrong with the LKG, when one was found and not used.
    pub lkg_refused: Option<String>,
}

/// Why the node cannot start.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("{0}")]
    Local(ConfigErrors),
    #[error("{local}\nand there is no usable last-known-good bundle in `{data_dir}`{why}: fix the local config, or let the node fetch a bundle from its control plane once")]
    Neither {
        local: ConfigErrors,
        data_dir: String,
        why: String,
    },
}

/// Chooses the config to start from for the local file `local_path`.
pub fn choose(local_path: &Path) -> Result<Boot, BootError> {
    let local = Config::load(local_path);
    let local = match local {
        Ok(c) => c,
        Err(errors) => return Err(no_local(local_path, errors)),
    };
    let (Some(_), Some(data_dir)) = (&local.control_plane, local.node.data_dir.clone()) else {
        return Ok(Boot {
            serve: local_path.to_path_buf(),
            local,
            lkg_refused: None,
        });
    };
    let store = LkgStore::new(&data_dir);
    let refused = match usable_lkg(&store, &local) {
        Ok(Some(path)) => {
            return Ok(Boot {
                serve: path,
                local,
                lkg_refused: None,
            })
        }
        Ok(None) => None,
        Err(reason) => Some(reason),
    };
    Ok(Boot {
        serve: local_path.to_path_buf(),
        local,
        lkg_refused: refused,
    })
}

/// When the local file is not a servable config, say so together with what the LKG says.
fn no_local(local_path: &Path, errors: ConfigErrors) -> BootError {
    // The data folder, if the file names one at all.
    let data_dir = std::fs::read_to_string(local_path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| {
            let d = t.get("node")?.get("data_dir")?.as_str()?.to_owned();
            Some(local_path.parent().unwrap_or(Path::new(".")).join(d))
        });
    match data_dir {
        None => BootError::Local(errors),
        Some(d) => {
            let why = match LkgStore::new(&d).load() {
                Ok(None) => String::new(),
                Ok(Some(_)) => " (one is there, but the local file is needed for the identity and control plane it overlays)".into(),
                Err(e) => format!(" ({e})"),
            };
            BootError::Neither {
                local: errors,
                data_dir: d.display().to_string(),
                why,
            }
        }
    }
}

/// The LKG's effective config, rewritten with today's overlay and checked; `Ok(None)` when
/// there is no LKG.
fn usable_lkg(store: &LkgStore, local: &Config) -> Result<Option<PathBuf>, String> {
    let Some(bundle) = store.load().map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let overlay = Overlay::from_local(local)?;
    let staged = store
        .stage(&bundle, &overlay)
        .map_err(|e| format!("the last-known-good bundle no longer loads: {e}"))?;
    lkg::check_loads(&staged)?;
    store.commit(&bundle.version.hash)?;
    Ok(Some(store.config_path()))
}
