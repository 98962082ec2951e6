//! The validated configuration types. Values reach these types only through validation, and
//! they serialize to the effective config shown by the admin `/config` endpoint.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use edgeward_certs::{SpiffeId, TrustDomain};
use serde::{Serialize, Serializer};

use crate::request::CanonicalHost;

/// The longest name (route, cluster, listener, node, locality label) we accept, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// A name of `[A-Za-z0-9._-]`, 1 to 128 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    /// Checks `raw` and wraps it; the error says what was expected.
    pub fn new(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("a non-empty name".into());
        }
        if raw.len() > MAX_NAME_LEN {
            return Err(format!("a name of at most {MAX_NAME_LEN} bytes"));
        }
        if let Some(c) = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "only letters, digits, `.`, `_` and `-`, found `{}`",
                c.escape_default()
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a node or endpoint runs: site within zone within region.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Locality {
    /// The site, e.g. `berlin`.
    pub site: Name,
    /// The zone, e.g. `eu-central-a`.
    pub zone: Name,
    /// The region, e.g. `eu-central`.
    pub region: Name,
}

/// `[node]`: who this node is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// The node's id, e.g. `berlin-gw-1`.
    pub id: Name,
    /// The node's own locality.
    pub locality: Locality,
    /// Where the node keeps its state (LKG bundle, telemetry queue), when configured.
    pub data_dir: Option<PathBuf>,
}

/// `[identity]`: the node's own X.509-SVID files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// Leaf then intermediates, PEM.
    pub cert: PathBuf,
    /// The private key, PEM. Only the path is ever shown.
    pub key: PathBuf,
    /// How often the files are re-checked for changes.
    #[serde(serialize_with = "ser_duration")]
    pub reload_interval: Duration,
}

/// `[[trust_domains]]`: a trust domain whose bundle verifies peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrustDomainConfig {
    /// The trust domain name.
    #[serde(serialize_with = "ser_display")]
    pub name: TrustDomain,
    /// Its root certificates, PEM.
    pub bundle: PathBuf,
    /// Revocation lists, PEM or DER.
    pub crls: Vec<PathBuf>,
}

/// What a listener asks of its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerKind {
    /// TLS with a client certificate required.
    Mtls,
    /// Server-only TLS; clients get the anonymous principal.
    Tls,
    /// No TLS; loopback addresses only.
    Plaintext,
}

impl ListenerKind {
    /// Every kind.
    pub const ALL: [ListenerKind; 3] = [
        ListenerKind::Mtls,
        ListenerKind::Tls,
        ListenerKind::Plaintext,
    ];

    /// The kind as the config spells it (`kind = "mtls"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Mtls => "mtls",
            ListenerKind::Tls => "tls",
            ListenerKind::Plaintext => "plaintext",
        }
    }
}

/// `[[listeners]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listener {
    /// Unique listener name.
    pub name: Name,
    /// mTLS, TLS or plaintext.
    pub kind: ListenerKind,
    /// The socket address to bind.
    pub address: SocketAddr,
    /// Connections accepted at once.
    pub max_connections: NonZeroU32,
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Admin {
    /// The admin socket address (loopback by default).
    pub address: SocketAddr,
}

/// `[limits]`: protocol limits, set explicitly because pingora's own are far looser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Largest request header block (431 above).
    pub max_header_bytes: NonZeroUsize,
    /// Most header fields (431 above).
    pub max_header_count: NonZeroUsize,
    /// Time for the whole request header to arrive (408 after).
    #[serde(serialize_with = "ser_duration")]
    pub header_timeout: Duration,
    /// HTTP/2 concurrent streams per connection.
    pub h2_max_concurrent_streams: NonZeroU32,
    /// HTTP/2 header list size.
    pub h2_max_header_list_bytes: NonZeroU32,
    /// Default body limit for routes.
    pub max_body_bytes: NonZeroU64,
}

/// `[authz]`: where the Cedar policies, schema and entities live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Authz {
    /// Folder of `*.cedar` files.
    pub policies: PathBuf,
    /// The Cedar schema file.
    pub schema: PathBuf,
    /// The entities file, when configured.
    pub entities: Option<PathBuf>,
    /// Lowercase header names copied into the Cedar context.
    pub context_headers: Vec<String>,
    /// Decisions remembered per policy snapshot (see `authz::memo`); 0 evaluates every request.
    pub decision_memo: usize,
}

/// `[control_plane]`: where the node gets its bundles and sends its telemetry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControlPlane {
    /// The control plane's QUIC address.
    pub address: SocketAddr,
    /// The SPIFFE ID the control plane's certificate must carry.
    #[serde(serialize_with = "ser_display")]
    pub spiffe_id: SpiffeId,
    /// The TLS server name sent (SNI); the certificate is checked by SPIFFE ID, not by name.
    pub server_name: String,
    /// How often telemetry is aggregated into one batch.
    #[serde(serialize_with = "ser_duration")]
    pub telemetry_interval: Duration,
    /// The most bytes of unsent telemetry kept on disk; the oldest batches go first.
    pub telemetry_queue_bytes: NonZeroU64,
}

/// Whether a route's authorization decision is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A deny is answered with 403.
    Enforce,
    /// The decision is logged and counted, and the request goes through.
    Audit,
}

/// `[[routes]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    /// Unique route name.
    pub name: Name,
    /// The canonical host (no port) this route serves; `None` serves any host.
    #[serde(serialize_with = "ser_opt_display")]
    pub host: Option<CanonicalHost>,
    /// A canonical path prefix starting with `/`, matched on whole segments.
    pub path_prefix: String,
    /// The cluster requests go to.
    pub cluster: Name,
    /// The Cedar service the route belongs to.
    pub service: Name,
    /// Enforce or audit.
    pub mode: Mode,
    /// Whether `%2F`, `%5C` and `\` are accepted (kept encoded) in paths.
    pub allow_encoded_slash: bool,
    /// Body limit.
    pub max_body_bytes: NonZeroU64,
    /// Upstream connect timeout per attempt.
    #[serde(serialize_with = "ser_duration")]
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    #[serde(serialize_with = "ser_duration")]
    pub request_timeout: Duration,
    /// Retries after the first attempt.
    pub retries: u32,
}

/// How a cluster spreads requests within a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BalanceKind {
    /// Each endpoint in turn.
    RoundRobin,
    /// The endpoint with the fewest requests in flight.
    LeastOutstanding,
}

/// `[clusters.health]`: active HTTP checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    /// The path requested, canonical, starting with `/`.
    pub path: String,
    /// Time between checks.
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
    /// Time a check may take (at most the interval).
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Passing checks in a row that make an unhealthy endpoint healthy.
    pub healthy_threshold: NonZeroU32,
    /// Failing checks in a row that make a healthy endpoint unhealthy.
    pub unhealthy_threshold: NonZeroU32,
}

/// `[clusters.outlier]`: passive outlier detection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outlier {
    /// Connect failures or 5xx in a row that eject an endpoint.
    pub consecutive_failures: NonZeroU32,
    /// The first ejection's length; each further one doubles it.
    #[serde(serialize_with = "ser_duration")]
    pub base_ejection: Duration,
    /// The longest ejection (at least `base_ejection`).
    #[serde(serialize_with = "ser_duration")]
    pub max_ejection: Duration,
}

impl Default for Outlier {
    fn default() -> Self {
        Self {
            consecutive_failures: NonZeroU32::MIN.saturating_add(2),
            base_ejection: Duration::from_secs(5),
            max_ejection: Duration::from_secs(300),
        }
    }
}

/// The host part of an upstream address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UpstreamHost {
    /// An IP literal.
    Ip(IpAddr),
    /// A DNS name, lowercase, resolved by the caller.
    Name(String),
}

/// An upstream `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamAddress {
    /// IP or name.
    pub host: UpstreamHost,
    /// Port, never zero.
    pub port: u16,
}

impl fmt::Display for UpstreamAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            UpstreamHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            UpstreamHost::Ip(IpAddr::V4(ip)) => write!(f, "{ip}:{}", self.port),
            UpstreamHost::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

impl Serialize for UpstreamAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How the proxy talks to an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UpstreamTransport {
    /// Plain HTTP.
    Plaintext,
    /// mTLS with the node's identity; the upstream must present `spiffe_id`.
    Tls {
        /// The identity the upstream must prove.
        #[serde(serialize_with = "ser_display")]
        spiffe_id: SpiffeId,
        /// The SNI sent, when configured.
        sni: Option<String>,
    },
}

/// `[[clusters.endpoints]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointConfig {
    /// Where to connect.
    pub address: UpstreamAddress,
    /// Where the endpoint runs.
    pub locality: Locality,
    /// Plaintext or mTLS.
    pub transport: UpstreamTransport,
}

/// `[[clusters]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterConfig {
    /// Unique cluster name.
    pub name: Name,
    /// Round robin or least outstanding.
    pub balance: BalanceKind,
    /// Speak HTTP/2 to the endpoints (h2 by ALPN over mTLS, prior-knowledge h2c in plaintext):
    /// what gRPC needs, with its trailers.
    pub http2: bool,
    /// Active checks, when configured.
    pub health: Option<HealthCheck>,
    /// Passive outlier detection.
    pub outlier: Outlier,
    /// At least one endpoint.
    pub endpoints: Vec<EndpointConfig>,
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

fn ser_display<T: fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn ser_opt_display<T: fmt::Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_str("*"),
    }
}
