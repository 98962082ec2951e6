//! The config file as written, parsed by serde with unknown keys refused. Values that need
//! checking stay strings here so that validation can report every bad value at once.

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub node: Option<RawNode>,
    pub identity: Option<RawIdentity>,
    #[serde(default)]
    pub trust_domains: Vec<RawTrustDomain>,
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub limits: RawLimits,
    pub authz: Option<RawAuthz>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub clusters: Vec<RawCluster>,
    pub control_plane: Option<RawControlPlane>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawControlPlane {
    pub address: Option<String>,
    pub spiffe_id: Option<String>,
    pub server_name: Option<String>,
    pub telemetry_interval: Option<String>,
    pub telemetry_queue_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub id: Option<String>,
    pub site: Option<String>,
    pub zone: Option<String>,
    pub region: Option<String>,
    pub data_dir: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdentity {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub reload_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrustDomain {
    pub name: Option<String>,
    pub bundle: Option<String>,
    #[serde(default)]
    pub crls: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub address: Option<String>,
    pub max_connections: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub max_header_bytes: Option<u64>,
    pub max_header_count: Option<u64>,
    pub header_timeout: Option<String>,
    pub h2_max_concurrent_streams: Option<u64>,
    pub h2_max_header_list_bytes: Option<u64>,
    pub max_body_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuthz {
    pub policies: Option<String>,
    pub schema: Option<String>,
    pub entities: Option<String>,
    #[serde(default)]
    pub context_headers: Vec<String>,
    pub decision_memo: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub name: Option<String>,
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub cluster: Option<String>,
    pub service: Option<String>,
    pub mode: Option<String>,
    pub allow_encoded_slash: Option<bool>,
    pub max_body_bytes: Option<u64>,
    pub connect_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub retries: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub name: Option<String>,
    pub balance: Option<String>,
    pub http2: Option<bool>,
    pub health: Option<RawHealth>,
    pub outlier: Option<RawOutlier>,
    #[serde(default)]
    pub endpoints: Vec<RawEndpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub healthy_threshold: Option<u64>,
    pub unhealthy_threshold: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutlier {
    pub consecutive_failures: Option<u64>,
    pub base_ejection: Option<String>,
    pub max_ejection: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEndpoint {
    pub address: Option<String>,
    pub site: Option<String>,
    pub zone: Option<String>,
    pub region: Option<String>,
    pub tls: Option<bool>,
    pub spiffe_id: Option<String>,
    pub sni: Option<String>,
}
