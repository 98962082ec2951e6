//! The proxy's TOML configuration: parsed by serde into raw structs (unknown keys refused),
//! then validated into types that cannot hold bad values. Every error names the file, the key
//! and what was expected, and all validation errors are reported together.
//!
//! Relative file paths resolve against the folder of the config file. Durations are humantime
//! strings (`5s`, `2m`). `Config::redacted_json` dumps the effective config for the admin
//! `/config` endpoint; it carries file paths, never file contents.

mod checks;
mod context;
mod raw;
mod routing;
mod sections;
mod types;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use sections::DEFAULT_ADMIN_ADDRESS;
pub use types::{
    Admin, Authz, BalanceKind, ClusterConfig, ControlPlane, EndpointConfig, HealthCheck, Identity,
    Limits, Listener, ListenerKind, Locality, Mode, Name, Node, Outlier, Route, TrustDomainConfig,
    UpstreamAddress, UpstreamHost, UpstreamTransport, MAX_NAME_LEN,
};

/// The validated proxy configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    /// The file the config was read from.
    pub source: PathBuf,
    /// `[node]`.
    pub node: Node,
    /// `[identity]`, when present.
    pub identity: Option<Identity>,
    /// `[[trust_domains]]`.
    pub trust_domains: Vec<TrustDomainConfig>,
    /// `[[listeners]]`.
    pub listeners: Vec<Listener>,
    /// `[admin]`, defaulted.
    pub admin: Admin,
    /// `[limits]`, defaulted.
    pub limits: Limits,
    /// `[authz]`.
    pub authz: Authz,
    /// `[[routes]]`, in file order.
    pub routes: Vec<Route>,
    /// `[[clusters]]`, in file order.
    pub clusters: Vec<ClusterConfig>,
    /// `[control_plane]`, when the node is managed by one.
    pub control_plane: Option<ControlPlane>,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// The key, such as `clusters[1].endpoints[0].address`; empty when the file as a whole
    /// could not be read.
    pub key: String,
    /// What was expected, and what was found.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}: `{}` {}",
                self.file.display(),
                self.key,
                self.message
            )
        }
    }
}

/// Every problem found in a config file (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// The problems, in file order within each check.
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }

    /// Wraps the problems found in a config file (at least one).
    pub fn new(errors: Vec<ConfigError>) -> Self {
        Self { errors }
    }

    fn single(file: &Path, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            errors: vec![ConfigError {
                file: file.to_path_buf(),
                key: key.into(),
                message: message.into(),
            }],
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "{n} error{} in the config",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors::single(path, "", format!("cannot read the file: {e}")))?;
        Self::from_toml_str(&text, path)
    }

    /// Validates config text; `origin` is the file it came from, named in errors and used to
    /// resolve relative paths.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Config, ConfigErrors> {
        let raw = parse(text, origin)?;
        validate(&raw, origin)
    }

    /// The effective config as JSON for the admin `/config` endpoint: paths are shown, key
    /// material never is (the config holds no file contents).
    pub fn redacted_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_else(
            |e| serde_json::json!({ "error": format!("config could not be serialized: {e}") }),
        )
    }
}

/// Deserializes into the raw structs, naming the exact key on a schema mismatch.
fn parse(text: &str, origin: &Path) -> Result<raw::RawConfig, ConfigErrors> {
    let de = toml::Deserializer::parse(text)
        .map_err(|e| ConfigErrors::single(origin, "", toml_message(text, &e)))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        ConfigErrors::single(origin, key, toml_message(text, e.inner()))
    })
}

/// The TOML error's message with its line, without the multi-line snippet.
fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let line = text
                .get(..span.start)
                .map_or(0, |before| before.matches('\n').count())
                + 1;
            format!("{message} (line {line})")
        }
        None => message.to_owned(),
    }
}

fn validate(raw: &raw::RawConfig, origin: &Path) -> Result<Config, ConfigErrors> {
    let mut cx = context::Ctx::new(origin);

    // Node-level sections.
    let node = sections::node(&mut cx, raw.node.as_ref());
    let identity = raw
        .identity
        .as_ref()
        .map(|i| sections::identity(&mut cx, i));
    let trust_domains: Vec<_> = raw
        .trust_domains
        .iter()
        .enumerate()
        .map(|(i, t)| sections::trust_domain(&mut cx, i, t))
        .collect();
    let listeners: Vec<_> = raw
        .listeners
        .iter()
        .enumerate()
        .filter_map(|(i, l)| Some((i, sections::listener(&mut cx, i, l)?)))
        .collect();
    let admin = sections::admin(&mut cx, raw.admin.as_ref());
    let limits = sections::limits(&mut cx, &raw.limits);
    let authz = sections::authz(&mut cx, raw.authz.as_ref());
    let control_plane = raw.control_plane.as_ref().map(|c| {
        let has_data_dir = raw.node.as_ref().is_some_and(|n| n.data_dir.is_some());
        sections::control_plane(&mut cx, c, has_data_dir)
    });

    // Routes and clusters.
    let routes: Vec<_> = raw
        .routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, routing::route(&mut cx, i, r, limits.as_ref())?)))
        .collect();
    let clusters: Vec<_> = raw
        .clusters
        .iter()
        .enumerate()
        .filter_map(|(i, c)| Some((i, routing::cluster(&mut cx, i, c)?)))
        .collect();

    // Checks across sections.
    checks::cross_field(
        &mut cx,
        raw,
        &checks::Validated {
            listeners: &listeners,
            routes: &routes,
            clusters: &clusters,
            admin: admin.as_ref().map(|a| a.address),
        },
    );

    cx.finish()?;
    let (Some(node), Some(admin), Some(limits), Some(authz)) = (node, admin, limits, authz) else {
        return Err(ConfigErrors::single(origin, "", "is incomplete"));
    };
    let identity = match identity {
        Some(Some(i)) => Some(i),
        Some(None) => return Err(ConfigErrors::single(origin, "identity", "is incomplete")),
        None => None,
    };
    Ok(Config {
        source: origin.to_path_buf(),
        node,
        identity,
        trust_domains: trust_domains.into_iter().flatten().collect(),
        listeners: listeners.into_iter().map(|(_, l)| l).collect(),
        admin,
        limits,
        authz,
        routes: routes.into_iter().map(|(_, r)| r).collect(),
        clusters: clusters.into_iter().map(|(_, c)| c).collect(),
        control_plane: control_plane.flatten(),
    })
}

#[cfg(test)]
mod tests;
