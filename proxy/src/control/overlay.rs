//! What the node's own config file keeps when a bundle is in force.
//!
//! The control plane decides the routes, clusters, listeners, policies and trust; the node's
//! local file decides how it reaches the control plane and where its own secrets and state
//! are: `[control_plane]`, `[identity]` (its certificate and key never travel) and
//! `[node] data_dir`. These are written over the bundle's `proxy.toml`, as absolute paths,
//! to form the config the node serves. The local file's CRLs are added to the bundle's trust
//! domain of the same name: a site CA revokes on the site, and a revocation must hold whatever
//! the bundle says.

use std::collections::BTreeMap;
use std::path::Path;

use toml::{Table, Value};

use crate::config::Config;

/// The local part of the effective config.
#[derive(Debug, Clone)]
pub struct Overlay {
    pub node_id: String,
    table: Table,
    /// Local CRL files (absolute) by trust domain name.
    crls: BTreeMap<String, Vec<String>>,
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
        let mut crls: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for td in &config.trust_domains {
            for crl in &td.crls {
                if let Value::String(p) = path_value(crl)? {
                    crls.entry(td.name.to_string()).or_default().push(p);
                }
            }
        }
        Ok(Self {
            node_id: config.node.id.as_str().to_owned(),
            table,
            crls,
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
        if let Some(Value::Array(domains)) = base.get_mut("trust_domains") {
            for td in domains.iter_mut().filter_map(Value::as_table_mut) {
                let Some(local) = td
                    .get("name")
                    .and_then(Value::as_str)
                    .and_then(|n| self.crls.get(n))
                else {
                    continue;
                };
                let list = td.entry("crls").or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = list {
                    for crl in local {
                        if !list.iter().any(|v| v.as_str() == Some(crl)) {
                            list.push(Value::String(crl.clone()));
                        }
                    }
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
            crls: BTreeMap::from([(
                "acme.example".to_owned(),
                vec!["/site/berlin.crl".to_owned()],
            )]),
        };
        let out = overlay
            .apply("[node]\nid = \"n1\"\nsite = \"berlin\"\ndata_dir = \"/elsewhere\"\n[[routes]]\nname = \"r\"\n[[trust_domains]]\nname = \"acme.example\"\nbundle = \"trust/acme.example.pem\"\n[[trust_domains]]\nname = \"other.example\"\nbundle = \"trust/other.example.pem\"\n")
            .unwrap();
        let t: Table = out.parse().unwrap();
        assert_eq!(t["node"]["site"].as_str(), Some("berlin"));
        assert_eq!(t["node"]["data_dir"].as_str(), Some("/var/lib/edgeward"));
        assert_eq!(
            t["control_plane"]["address"].as_str(),
            Some("127.0.0.1:7443")
        );
        assert_eq!(t["routes"][0]["name"].as_str(), Some("r"));
        // The site's own CRL holds for the bundle's trust domain of the same name.
        assert_eq!(
            t["trust_domains"][0]["crls"][0].as_str(),
            Some("/site/berlin.crl")
        );
        assert!(t["trust_domains"][1].get("crls").is_none());
        assert!(overlay.apply("not toml [").is_err());
    }
}
