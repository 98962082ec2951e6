//! The control plane's TOML configuration: parsed by serde into raw structs (unknown keys
//! refused), then validated into types that cannot hold bad values. Every error names the file,
//! the key and what was expected, and all errors are reported at once.
//!
//! Relative paths resolve against the folder of the config file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where the desired state comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// A local Git repository (bare or with a work tree), read at `reference`.
    Git { repo: PathBuf, reference: String },
    /// A plain folder, read as it is on disk.
    Folder(PathBuf),
}

/// `[source]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub kind: SourceKind,
    /// How often the source is read again for a new revision.
    pub poll_interval: Duration,
}

/// `[listen]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// The QUIC listener nodes connect to.
    pub quic: SocketAddr,
    /// The JSON API and fleet page (plain HTTP: bind it to a local address).
    pub api: SocketAddr,
}

/// `[identity]`: the control plane's own SVID and the trust roots its nodes chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// PEM file of the trust domain's root certificate(s).
    pub bundle: PathBuf,
    /// CRL files (PEM or DER) of the CAs that issue node certificates, read at start.
    pub crls: Vec<PathBuf>,
}

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    pub sqlite: PathBuf,
    /// How long telemetry points and events are kept.
    pub retention: Duration,
}

/// The validated control plane configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub file: PathBuf,
    pub source: Source,
    pub listen: Listen,
    pub identity: Identity,
    pub store: Store,
}

// The proxy's config error types: one format for every config file Edgeward reads.
pub use edgeward_proxy::config::{ConfigError, ConfigErrors};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    source: Option<RawSource>,
    listen: Option<RawListen>,
    identity: Option<RawIdentity>,
    store: Option<RawStore>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    git: Option<String>,
    folder: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<String>,
    poll_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    quic: Option<String>,
    api: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    cert: Option<String>,
    key: Option<String>,
    bundle: Option<String>,
    crls: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    sqlite: Option<String>,
    retention: Option<String>,
}

/// Collects errors while validating, and resolves relative paths.
struct Ctx<'a> {
    file: &'a Path,
    errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    fn error(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            key: key.to_owned(),
            message: message.into(),
        });
    }

    fn path(&mut self, key: &str, value: Option<&String>) -> PathBuf {
        match value {
            Some(v) if !v.trim().is_empty() => {
                let dir = self.file.parent().unwrap_or_else(|| Path::new("."));
                dir.join(v)
            }
            Some(_) => {
                self.error(key, "must be a non-empty path");
                PathBuf::new()
            }
            None => {
                self.error(key, "is required: expected a path");
                PathBuf::new()
            }
        }
    }

    fn duration(&mut self, key: &str, value: Option<&String>, default: Duration) -> Duration {
        let Some(v) = value else { return default };
        match humantime::parse_duration(v) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.error(key, "must be longer than zero");
                default
            }
            Err(e) => {
                self.error(
                    key,
                    format!("expected a duration such as `5s` or `7d`, found `{v}`: {e}"),
                );
                default
            }
        }
    }

    fn addr(&mut self, key: &str, value: Option<&String>, default: &str) -> SocketAddr {
        let v = value.map_or(default, String::as_str);
        match v.parse() {
            Ok(a) => a,
            Err(_) => {
                self.error(key, format!("expected an `ip:port` address, found `{v}`"));
                SocketAddr::from(([127, 0, 0, 1], 0))
            }
        }
    }
}

/// The default QUIC listener.
pub const DEFAULT_QUIC: &str = "127.0.0.1:7443";
/// The default API listener.
pub const DEFAULT_API: &str = "127.0.0.1:7080";

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::new(vec![ConfigError {
                file: path.to_path_buf(),
                key: String::new(),
                message: format!("cannot read the file: {e}"),
            }])
        })?;
        Self::from_toml_str(&text, path)
    }

    /// Validates config text; `file` is named in errors and anchors relative paths.
    pub fn from_toml_str(text: &str, file: &Path) -> Result<Config, ConfigErrors> {
        let mut cx = Ctx {
            file,
            errors: Vec::new(),
        };
        let raw: Raw = match toml::Deserializer::parse(text)
            .map_err(|e| e.to_string())
            .and_then(|de| serde_path_to_error::deserialize(de).map_err(|e| e.to_string()))
        {
            Ok(raw) => raw,
            Err(e) => {
                cx.error("", e.trim_end().replace('\n', " "));
                return Err(ConfigErrors::new(cx.errors));
            }
        };

        // [source]: exactly one of `git` and `folder`.
        let s = raw.source.unwrap_or_default();
        let kind = match (&s.git, &s.folder) {
            (Some(_), None) => SourceKind::Git {
                repo: cx.path("source.git", s.git.as_ref()),
                reference: s.reference.clone().unwrap_or_else(|| "main".into()),
            },
            (None, Some(_)) => {
                if s.reference.is_some() {
                    cx.error("source.ref", "applies only to a `git` source");
                }
                SourceKind::Folder(cx.path("source.folder", s.folder.as_ref()))
            }
            _ => {
                cx.error(
                    "source",
                    "needs exactly one of `git` (a repository) and `folder`",
                );
                SourceKind::Folder(PathBuf::new())
            }
        };
        let poll_interval = cx.duration(
            "source.poll_interval",
            s.poll_interval.as_ref(),
            Duration::from_secs(5),
        );

        // [listen]
        let l = raw.listen.unwrap_or_default();
        let listen = Listen {
            quic: cx.addr("listen.quic", l.quic.as_ref(), DEFAULT_QUIC),
            api: cx.addr("listen.api", l.api.as_ref(), DEFAULT_API),
        };

        // [identity]
        let i = raw.identity.unwrap_or_default();
        let identity = Identity {
            cert: cx.path("identity.cert", i.cert.as_ref()),
            key: cx.path("identity.key", i.key.as_ref()),
            bundle: cx.path("identity.bundle", i.bundle.as_ref()),
            crls: i
                .crls
                .iter()
                .flatten()
                .enumerate()
                .map(|(n, c)| cx.path(&format!("identity.crls[{n}]"), Some(c)))
                .collect(),
        };

        // [store]
        let st = raw.store.unwrap_or_default();
        let default_db = "cp.db".to_owned();
        let store = Store {
            sqlite: cx.path(
                "store.sqlite",
                Some(st.sqlite.as_ref().unwrap_or(&default_db)),
            ),
            retention: cx.duration(
                "store.retention",
                st.retention.as_ref(),
                Duration::from_secs(7 * 24 * 3600),
            ),
        };

        if !cx.errors.is_empty() {
            return Err(ConfigErrors::new(cx.errors));
        }
        Ok(Config {
            file: file.to_path_buf(),
            source: Source {
                kind,
                poll_interval,
            },
            listen,
            identity,
            store,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Vec<String> {
        match Config::from_toml_str(text, Path::new("/etc/cp/cp.toml")) {
            Ok(_) => Vec::new(),
            Err(e) => e.errors().iter().map(|e| e.key.clone()).collect(),
        }
    }

    #[test]
    fn full_config_validates_with_resolved_paths() {
        let text = r#"
[source]
git = "fleet.git"
ref = "prod"
poll_interval = "2s"
[listen]
quic = "0.0.0.0:7443"
[identity]
cert = "cp.crt"
key = "cp.key"
bundle = "root.crt"
crls = ["berlin.crl"]
[store]
retention = "1d"
"#;
        let c = Config::from_toml_str(text, Path::new("/etc/cp/cp.toml")).expect("valid");
        assert_eq!(
            c.source.kind,
            SourceKind::Git {
                repo: "/etc/cp/fleet.git".into(),
                reference: "prod".into()
            }
        );
        assert_eq!(c.source.poll_interval, Duration::from_secs(2));
        assert_eq!(c.listen.api.to_string(), DEFAULT_API);
        assert_eq!(c.store.sqlite, Path::new("/etc/cp/cp.db"));
        assert_eq!(c.identity.crls, vec![PathBuf::from("/etc/cp/berlin.crl")]);
        assert_eq!(c.store.retention, Duration::from_secs(86400));
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let text = r#"
[source]
git = "a"
folder = "b"
poll_interval = "soon"
[listen]
api = "nowhere"
[store]
retention = "0s"
"#;
        assert_eq!(
            keys(text),
            vec![
                "source",
                "source.poll_interval",
                "listen.api",
                "identity.cert",
                "identity.key",
                "identity.bundle",
                "store.retention"
            ]
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = Config::from_toml_str(
            "[source]\nfolder = \"x\"\nbranch = \"y\"\n",
            Path::new("c.toml"),
        )
        .expect_err("unknown key");
        assert!(e.to_string().contains("branch"), "{e}");
    }
}
