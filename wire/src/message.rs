//! The messages of the control channel, and the bundle they carry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::WireError;

/// One frame's content: the schema version, then the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u16,
    pub msg: Message,
}

/// A message of the control channel, tagged by `"type"` in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Message {
    /// Node → control plane, first on every connection: who the node is and what it runs.
    Register {
        node_id: String,
        spiffe_id: String,
        site: String,
        zone: String,
        region: String,
        software_version: String,
        /// The bundle the node serves now (its LKG), if any.
        bundle_version: Option<BundleVersion>,
    },
    /// Control plane → node: the desired state for this node.
    Bundle(Bundle),
    /// Node → control plane: the outcome of applying a bundle.
    BundleAck {
        version: BundleVersion,
        result: AckResult,
    },
    /// Node → control plane: one batch of aggregated metrics, encoded as an OTLP
    /// `ExportMetricsServiceRequest` (protobuf).
    Telemetry {
        seq: u64,
        #[serde(with = "base64_bytes")]
        otlp: Vec<u8>,
        /// Batches dropped on the node (queue full) since the previous batch was queued.
        dropped_before: u64,
    },
    /// Control plane → node: the batch `seq` is stored (now, or before: a resent batch is
    /// acked again and not counted twice). Batches are stored in `seq` order per node, so a
    /// batch at or below the highest stored `seq` counts as stored.
    TelemetryAck { seq: u64 },
    /// Either way, to keep the link and the fleet's "last contact" fresh.
    Heartbeat { at_unix: i64 },
}

/// How a node answered a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status")]
pub enum AckResult {
    Applied,
    Refused { reason: String },
}

/// Which bundle: the Git commit it was rendered from and the hash of its content.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BundleVersion {
    pub commit: String,
    /// Lowercase hex SHA-256 of the content, as [`Bundle::content_hash`] computes it.
    pub hash: String,
}

/// The desired state of one node: its files by relative path (`proxy.toml`,
/// `policies/*.cedar`, `policies/schema.cedarschema`, `policies/entities.json`,
/// `trust/<trust domain>.pem`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    pub node_id: String,
    pub version: BundleVersion,
    pub files: BTreeMap<String, String>,
}

impl Bundle {
    /// SHA-256 over the files in path order, each path and content prefixed by its length as a
    /// big-endian u64, so that no two different file sets hash alike.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        for (path, text) in &self.files {
            h.update((path.len() as u64).to_be_bytes());
            h.update(path.as_bytes());
            h.update((text.len() as u64).to_be_bytes());
            h.update(text.as_bytes());
        }
        hex(&h.finalize())
    }

    /// Checks that the claimed hash is the hash of the content.
    pub fn verify_hash(&self) -> Result<(), WireError> {
        let actual = self.content_hash();
        if actual == self.version.hash {
            Ok(())
        } else {
            Err(WireError::HashMismatch {
                claimed: self.version.hash.clone(),
                actual,
            })
        }
    }

    /// Checks every path is a plain relative path that stays inside the bundle folder.
    pub fn check_paths(&self) -> Result<(), WireError> {
        self.files.keys().try_for_each(|p| check_path(p))
    }
}

/// A bundle path is relative, uses `/`, has no empty, `.` or `..` segment, and only letters,
/// digits, `.`, `-` and `_` in its segments.
pub fn check_path(path: &str) -> Result<(), WireError> {
    let bad = |reason| {
        Err(WireError::BadPath {
            path: path.chars().take(200).collect(),
            reason,
        })
    };
    if path.is_empty() || path.len() > 255 {
        return bad("it must have 1 to 255 characters");
    }
    for seg in path.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return bad("it must be relative, without empty, `.` or `..` segments");
        }
        let ok = seg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !ok {
            return bad("segments may only hold letters, digits, `.`, `-` and `_`");
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Binary fields as standard base64 strings in JSON.
mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle() -> Bundle {
        let files = BTreeMap::from([
            ("proxy.toml".to_owned(), "[node]\n".to_owned()),
            (
                "policies/a.cedar".to_owned(),
                "permit(principal, action, resource);".to_owned(),
            ),
        ]);
        let mut b = Bundle {
            node_id: "n1".into(),
            version: BundleVersion {
                commit: "abc".into(),
                hash: String::new(),
            },
            files,
        };
        b.version.hash = b.content_hash();
        b
    }

    #[test]
    fn hash_verifies_and_detects_a_changed_file() {
        let mut b = bundle();
        assert!(b.verify_hash().is_ok());
        assert_eq!(b.version.hash.len(), 64);
        b.files.insert("proxy.toml".into(), "[node]\nx=1\n".into());
        assert!(matches!(
            b.verify_hash(),
            Err(WireError::HashMismatch { .. })
        ));
    }

    #[test]
    fn hash_is_length_prefixed() {
        let mut a = bundle();
        a.files = BTreeMap::from([("ab".to_owned(), "c".to_owned())]);
        let mut b = bundle();
        b.files = BTreeMap::from([("a".to_owned(), "bc".to_owned())]);
        assert_ne!(a.content_hash(), b.content_hash());
    }

    #[test]
    fn paths_that_escape_are_refused() {
        for p in ["../x", "/etc/passwd", "a//b", "a/./b", "a\\b", "", "a b"] {
            assert!(check_path(p).is_err(), "{p}");
        }
        for p in [
            "proxy.toml",
            "policies/schema.cedarschema",
            "trust/acme.example.pem",
        ] {
            assert!(check_path(p).is_ok(), "{p}");
        }
    }
}
