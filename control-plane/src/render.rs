//! Rendering the desired state into one set of bundle files per node.
//!
//! The layout (see `examples/fleet/README.md`):
//!
//! - `shared/proxy.toml` (optional): the base proxy config for every node;
//!   `shared/schema.cedarschema`, `shared/entities.json` (optional), `shared/policies/*.cedar`,
//!   `shared/trust/<trust-domain>.pem`.
//! - `sites/<site>/site.toml` (optional): merged over the base; `sites/<site>/policies/*.cedar`.
//! - `nodes/<node-id>/node.toml`: merged last (node wins), must name `[node] site`; an optional
//!   `[fleet] spiffe_id` (not part of the proxy config) names the node's SPIFFE ID, which is
//!   otherwise `spiffe://<trust domain>/site/<site>/node/<node-id>`;
//!   `nodes/<node-id>/policies/*.cedar`.
//!
//! Merging is a TOML table merge: tables merge key by key, any other value (arrays included)
//! of a later layer replaces the earlier one. The bundle's `proxy.toml` points at the bundle's
//! own files: `[authz]` paths are set to `policies/`, and `[[trust_domains]]`, when no layer
//! names them, lists one entry per trust file.

use std::collections::{BTreeMap, BTreeSet};

use edgeward_certs::{SpiffeId, TrustDomain};
use toml::{Table, Value};

use crate::source::Snapshot;

/// The bundle files of one node, before validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedNode {
    pub node_id: String,
    /// The SPIFFE ID the node's certificate must carry.
    pub spiffe_id: SpiffeId,
    pub site: String,
    pub zone: String,
    pub region: String,
    /// Bundle-relative path to contents.
    pub files: BTreeMap<String, String>,
}

/// Every node of one revision, and the sites it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub revision: String,
    pub sites: BTreeSet<String>,
    pub nodes: Vec<RenderedNode>,
}

/// One problem found in the desired state, by the source file it is in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub file: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file, self.message)
    }
}

fn problem(file: &str, message: impl Into<String>) -> Problem {
    Problem {
        file: file.to_owned(),
        message: message.into(),
    }
}

/// Renders every node of `snapshot`, or returns every problem found.
pub fn render(snapshot: &Snapshot, td: &TrustDomain) -> Result<Desired, Vec<Problem>> {
    let mut problems = Vec::new();
    let files = &snapshot.files;

    // The shared layer.
    let base = table(files, "shared/proxy.toml", &mut problems).unwrap_or_default();
    if !files.contains_key("shared/schema.cedarschema") {
        problems.push(problem(
            "shared/schema.cedarschema",
            "is missing: every bundle needs the Cedar schema",
        ));
    }
    let mut shared_files = BTreeMap::new();
    copy(
        files,
        "shared/schema.cedarschema",
        "policies/schema.cedarschema",
        &mut shared_files,
        &mut problems,
    );
    copy(
        files,
        "shared/entities.json",
        "policies/entities.json",
        &mut shared_files,
        &mut problems,
    );
    copy_dir(
        files,
        "shared/policies/",
        "policies/",
        ".cedar",
        &mut shared_files,
        &mut problems,
    );
    copy_dir(
        files,
        "shared/trust/",
        "trust/",
        ".pem",
        &mut shared_files,
        &mut problems,
    );
    let trust_names: Vec<String> = shared_files
        .keys()
        .filter_map(|p| p.strip_prefix("trust/")?.strip_suffix(".pem"))
        .map(str::to_owned)
        .collect();

    // Sites, and nodes, each rendered over the shared layer.
    let sites = children(files, "sites/");
    let mut nodes = Vec::new();
    for id in children(files, "nodes/") {
        if let Some(node) = render_node(
            files,
            &id,
            &base,
            &shared_files,
            &trust_names,
            &sites,
            td,
            &mut problems,
        ) {
            nodes.push(node);
        }
    }
    if nodes.is_empty() && problems.is_empty() {
        problems.push(problem(
            "nodes/",
            "names no node: add `nodes/<node-id>/node.toml`",
        ));
    }

    if !problems.is_empty() {
        return Err(problems);
    }
    let mut all_sites = sites;
    all_sites.extend(nodes.iter().map(|n| n.site.clone()));
    Ok(Desired {
        revision: snapshot.revision.clone(),
        sites: all_sites,
        nodes,
    })
}

#[allow(clippy::too_many_arguments)]
fn render_node(
    files: &BTreeMap<String, Vec<u8>>,
    id: &str,
    base: &Table,
    shared_files: &BTreeMap<String, String>,
    trust_names: &[String],
    sites: &BTreeSet<String>,
    td: &TrustDomain,
    problems: &mut Vec<Problem>,
) -> Option<RenderedNode> {
    let node_file = format!("nodes/{id}/node.toml");
    let Some(mut node) = table(files, &node_file, problems) else {
        problems.push(problem(
            &node_file,
            "is missing: every node folder needs one",
        ));
        return None;
    };

    // The `[fleet]` table is for the control plane only.
    let fleet = node.remove("fleet");
    let declared_id = fleet
        .as_ref()
        .and_then(|f| f.get("spiffe_id"))
        .map(|v| v.as_str().map(str::to_owned).ok_or(()));

    // The node's site picks the site layer.
    let site = match node
        .get("node")
        .and_then(|n| n.get("site"))
        .and_then(Value::as_str)
    {
        Some(site) => site.to_owned(),
        None => {
            problems.push(problem(
                &node_file,
                "`node.site` is required: it picks the site layer",
            ));
            return None;
        }
    };
    if !sites.contains(&site) {
        problems.push(problem(
            &node_file,
            format!("`node.site` names `{site}`, which has no `sites/{site}/` folder"),
        ));
        return None;
    }
    if let Some(named) = node
        .get("node")
        .and_then(|n| n.get("id"))
        .and_then(Value::as_str)
    {
        if named != id {
            problems.push(problem(
                &node_file,
                format!("`node.id` is `{named}` but the folder is `nodes/{id}/`"),
            ));
            return None;
        }
    }

    // Merge: shared, then site, then node.
    let site_file = format!("sites/{site}/site.toml");
    let mut merged = base.clone();
    if files.contains_key(&site_file) {
        merge(&mut merged, table(files, &site_file, problems)?);
    }
    merge(&mut merged, node);
    point_at_bundle(&mut merged, id, shared_files, trust_names);

    // The SPIFFE ID the node must present.
    let spiffe_id = match declared_id {
        Some(Ok(s)) => match SpiffeId::parse(&s) {
            Ok(sid) => sid,
            Err(e) => {
                problems.push(problem(
                    &node_file,
                    format!("`fleet.spiffe_id` `{s}` is not a SPIFFE ID: it {e}"),
                ));
                return None;
            }
        },
        Some(Err(())) => {
            problems.push(problem(&node_file, "`fleet.spiffe_id` must be a string"));
            return None;
        }
        None => {
            let uri = format!("spiffe://{}/site/{site}/node/{id}", td.as_str());
            match SpiffeId::parse(&uri) {
                Ok(sid) => sid,
                Err(e) => {
                    problems.push(problem(
                        &node_file,
                        format!("the derived SPIFFE ID `{uri}` is not valid: it {e}"),
                    ));
                    return None;
                }
            }
        }
    };

    // The files: shared, then the site's and the node's own policies under distinct names.
    let mut out = shared_files.clone();
    copy_dir(
        files,
        &format!("sites/{site}/policies/"),
        &format!("policies/site-{site}-"),
        ".cedar",
        &mut out,
        problems,
    );
    copy_dir(
        files,
        &format!("nodes/{id}/policies/"),
        "policies/node-",
        ".cedar",
        &mut out,
        problems,
    );
    let text = match toml::to_string(&merged) {
        Ok(t) => t,
        Err(e) => {
            problems.push(problem(
                &node_file,
                format!("the merged config cannot be written: {e}"),
            ));
            return None;
        }
    };
    out.insert("proxy.toml".into(), text);

    let locality = |key: &str| {
        merged
            .get("node")
            .and_then(|n| n.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    Some(RenderedNode {
        node_id: id.to_owned(),
        spiffe_id,
        zone: locality("zone"),
        region: locality("region"),
        site,
        files: out,
    })
}

/// Sets the node id and the bundle-relative paths of policies and trust material.
fn point_at_bundle(
    merged: &mut Table,
    id: &str,
    files: &BTreeMap<String, String>,
    trust: &[String],
) {
    if let Some(Value::Table(node)) = merged.get_mut("node") {
        node.insert("id".into(), Value::String(id.to_owned()));
    }
    let authz = merged
        .entry("authz")
        .or_insert_with(|| Value::Table(Table::new()));
    if let Value::Table(authz) = authz {
        authz.insert("policies".into(), Value::String("policies".into()));
        authz.insert(
            "schema".into(),
            Value::String("policies/schema.cedarschema".into()),
        );
        if files.contains_key("policies/entities.json") {
            authz.insert(
                "entities".into(),
                Value::String("policies/entities.json".into()),
            );
        }
    }
    if !merged.contains_key("trust_domains") && !trust.is_empty() {
        let list = trust
            .iter()
            .map(|name| {
                let mut t = Table::new();
                t.insert("name".into(), Value::String(name.clone()));
                t.insert("bundle".into(), Value::String(format!("trust/{name}.pem")));
                Value::Table(t)
            })
            .collect();
        merged.insert("trust_domains".into(), Value::Array(list));
    }
}

/// Merges `over` into `base`: tables key by key, anything else replaced.
pub fn merge(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn text<'a>(
    files: &'a BTreeMap<String, Vec<u8>>,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<&'a str> {
    let data = files.get(path)?;
    match std::str::from_utf8(data) {
        Ok(t) => Some(t),
        Err(_) => {
            problems.push(problem(path, "is not UTF-8 text"));
            None
        }
    }
}

fn table(
    files: &BTreeMap<String, Vec<u8>>,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<Table> {
    let t = text(files, path, problems)?;
    match t.parse::<Table>() {
        Ok(table) => Some(table),
        Err(e) => {
            problems.push(problem(
                path,
                format!("is not valid TOML: {}", e.message().trim_end()),
            ));
            None
        }
    }
}

fn copy(
    files: &BTreeMap<String, Vec<u8>>,
    from: &str,
    to: &str,
    out: &mut BTreeMap<String, String>,
    problems: &mut Vec<Problem>,
) {
    if let Some(t) = text(files, from, problems) {
        out.insert(to.to_owned(), t.to_owned());
    }
}

/// Copies the files directly in folder `from` ending in `ext` to `to<name>`.
fn copy_dir(
    files: &BTreeMap<String, Vec<u8>>,
    from: &str,
    to: &str,
    ext: &str,
    out: &mut BTreeMap<String, String>,
    problems: &mut Vec<Problem>,
) {
    for path in files.keys() {
        let Some(name) = path.strip_prefix(from) else {
            continue;
        };
        if name.contains('/') || !name.ends_with(ext) {
            continue;
        }
        copy(files, path, &format!("{to}{name}"), out, problems);
    }
}

/// The names of the folders directly under `prefix`.
fn children(files: &BTreeMap<String, Vec<u8>>, prefix: &str) -> BTreeSet<String> {
    files
        .keys()
        .filter_map(|p| {
            p.strip_prefix(prefix)?
                .split_once('/')
                .map(|(name, _)| name.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests;
