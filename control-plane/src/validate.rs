//! Validating rendered bundles exactly as a node would load them: each node's files are
//! written to a temporary folder, its `proxy.toml` is loaded with the proxy's own
//! `Config::load`, its policies with `PolicySnapshot::load` (Cedar validation against the
//! schema in strict mode, and the entities file), and every trust file must hold certificates.
//! A revision is valid only when every node's bundle is.

use std::path::Path;

use edgeward_proxy::authz::PolicySnapshot;
use edgeward_proxy::config::Config;

use crate::render::{Desired, Problem, RenderedNode};

/// Checks every node of `desired`; returns every problem found.
pub fn validate(desired: &Desired) -> Result<(), Vec<Problem>> {
    let mut problems = Vec::new();
    for node in &desired.nodes {
        validate_node(node, &mut problems);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn validate_node(node: &RenderedNode, problems: &mut Vec<Problem>) {
    let label = format!("bundle of `{}`", node.node_id);
    let mut push = |file: &str, message: String| {
        problems.push(Problem {
            file: format!("{label}: {file}"),
            message,
        })
    };

    // Materialize the bundle.
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            push(
                "",
                format!("cannot create a temporary folder to check it: {e}"),
            );
            return;
        }
    };
    for (rel, text) in &node.files {
        if let Err(e) = edgeward_wire::message::check_path(rel) {
            push(rel, e.to_string());
            return;
        }
        if let Err(e) = write_file(dir.path(), rel, text) {
            push(rel, e);
            return;
        }
    }
    let strip = |s: String| s.replace(&format!("{}/", dir.path().display()), "");

    // The config, as the node loads it.
    let config = match Config::load(&dir.path().join("proxy.toml")) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors.errors() {
                let key = if e.key.is_empty() {
                    String::new()
                } else {
                    format!("`{}` ", e.key)
                };
                push("proxy.toml", strip(format!("{key}{}", e.message)));
            }
            return;
        }
    };

    // The policies, entities and schema it names.
    if let Err(e) = PolicySnapshot::load(
        &config.authz.policies,
        &config.authz.schema,
        config.authz.entities.as_deref(),
    ) {
        for p in &e.problems {
            let at = p.line.map(|l| format!(" (line {l})")).unwrap_or_default();
            push(
                &strip(p.file.display().to_string()),
                format!("{}{at}", p.message),
            );
        }
    }

    // Trust material.
    for (rel, text) in node.files.iter().filter(|(p, _)| p.starts_with("trust/")) {
        if let Err(e) = check_certificates(text) {
            push(rel, e);
        }
    }
}

/// Writes `rel` under `root`, refusing anything but plain relative paths.
fn write_file(root: &Path, rel: &str, text: &str) -> Result<(), String> {
    let bad = rel.is_empty()
        || rel.starts_with('/')
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err("is not a plain relative path".into());
    }
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create its folder: {e}"))?;
    }
    std::fs::write(&path, text).map_err(|e| format!("cannot write it: {e}"))
}

/// Every PEM block must be a certificate that parses, and there must be at least one.
pub fn check_certificates(text: &str) -> Result<usize, String> {
    let blocks = pem::parse_many(text).map_err(|e| format!("is not PEM: {e}"))?;
    if blocks.is_empty() {
        return Err("holds no certificate".into());
    }
    for (i, block) in blocks.iter().enumerate() {
        if block.tag() != "CERTIFICATE" {
            return Err(format!(
                "block {} is a `{}`, not a CERTIFICATE",
                i + 1,
                block.tag()
            ));
        }
        edgeward_certs::CertView::parse(block.contents())
            .map_err(|e| format!("certificate {} does not parse: {e}", i + 1))?;
    }
    Ok(blocks.len())
}
