//! What the node's own config file keeps when a bundle is in force.
//!
//! The control plane decides the routes, clusters, listeners, policies and trust; the node's
//! local file decides how it reaches the control plane and where its own secrets and state
//! are: `[control_plane]`, `[identity]` (its certificate and key never travel) and
//! `[node] data_dir`. These are written over the bundle's `proxy.toml`, as absolute paths,
//! to form the config the node serves.

use std::path::Path;

use toml::{Table, Value};

use crate::config::Config;

/// The local part of the effective config.
#[derive(Debug, Clone)]
pub struct Overlay {
    pub node_id: String,
    table: Table,
}

impl Overlay {
    /// The overlay of a validated local config (which has `[control_plane]`).
    pub fn from_local(config: &Config) -> Result<Self, String> {
        let cp = config
            .control_plane
            .as_ref()
            .ok_or("the local config has no [control_plane]")?;
        let data_dir = config
            .node
            .data_dir
            .as_ref()
            .ok_or("the local config has no node.data_dir")?;
        let mut table = Table::new();
        let mut node = Table::new();
        node.insert("data_dir".into(), path_value(data_dir)?);
        table.insert("node".into(), Value::Table(node));
        let mut control = Table::new();
        control.insert("address".into(), Value::String(cp.address.to_string()));
        control.insert("spiffe_id".into(), Value::String(cp.spiffe_id.to_string()));
        control.insert("server_name".into(), Value::String(cp.server_name.clone()));
        control.insert(
            "telemetry_interval".into(),
            Value::String(format!("{}ms", cp.telemetry_interval.as_millis())),
        );
        control.insert(
            "telemetry_queue_bytes".into(),
            Value::Integer(i64::try_from(cp.telemetry_queue_bytes.get()).unwrap_or(i64::MAX)),
        );
        table.insert("control_plane".into(), Value::Table(control));
        if let Some(id) = &config.identity {
            let mut identity = Table::new();
            identity.insert("cert".into(), path_value(&id.cert)?);
            identity.insert("key".into(), path_value(&id.key)?);
            identity.insert(
                "reload_interval".into(),
                Value::String(format!("{}ms", id.reload_interval.as_millis())),
            );
            table.insert("identity".into(), Value::Table(identity));
        }
        Ok(Self {
            node_id: config.node.id.as_str().to_owned(),
            table,
        })
    }

    /// The bundle's `proxy.toml` with the overlay written over it.
    pub fn apply(&self, proxy_toml: &str) -> Result<String, String> {
        let mut base: Table = proxy_toml
            .parse()
            .map_err(|e| format!("the bundle's proxy.toml is not TOML: {e}"))?;
        for (key, value) in &self.table {
            match (base.get_mut(key), value) {
                (Some(Value::Table(b)), Value::Table(v)) if key == "node" => {
                    for (k, x) in v {
                        b.insert(k.clone(), x.clone());
                    }
                }
                _ => {
                    base.insert(key.clone(), value.clone());
                }
            }
        }
        toml::to_string(&base).map_err(|e| format!("cannot write the effective config: {e}"))
    }
}

fn path_value(path: &Path) -> Result<Value, String> {
    let abs = std::path::absolute(path).map_err(|e| format!("`{}`: {e}", path.display()))?;
    abs.to_str()
        .map(|s| Value::String(s.to_owned()))
        .ok_or_else(|| format!("`{}` is not valid UTF-8", abs.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_sections_win_and_the_rest_is_the_bundles() {
        let mut table = Table::new();
        let mut node = Table::new();
        node.insert("data_dir".into(), Value::String("/var/lib/edgeward".into()));
        table.insert("node".into(), Value::Table(node));
        let mut cp = Table::new();
        cp.insert("address".into(), Value::String("127.0.0.1:7443".into()));
        table.insert("control_plane".into(), Value::Table(cp));
        let overlay = Overlay {
            node_id: "n1".into(),
            table,
        };
        let out = overlay
            .apply("[node]\nid = \"n1\"\nsite = \"berlin\"\ndata_dir = \"/elsewhere\"\n[[routes]]\nname = \"r\"\n")
            .unwrap();
        let t: Table = out.parse().unwrap();
        assert_eq!(t["node"]["site"].as_str(), Some("berlin"));
        assert_eq!(t["node"]["data_dir"].as_str(), Some("/var/lib/edgeward"));
        assert_eq!(
            t["control_plane"]["address"].as_str(),
            Some("127.0.0.1:7443")
        );
        assert_eq!(t["routes"][0]["name"].as_str(), Some("r"));
        assert!(overlay.apply("not toml [").is_err());
    }
}
