//! Assembles and runs the node: load and check everything first (so a bad start says why and
//! serves nothing), then one pingora service per listener, the admin port, the health checker
//! and the reloader.

use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::protocols::http::v2::server::H2Options;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::admin::Admin;
use crate::authz::{Authorizer, PolicyStore};
use crate::config::{Config, ListenerKind};
use crate::control::ControlService;
use crate::health::HealthChecker;
use crate::identity::serving::Resolver;
use crate::identity::{
    NodeCert, PeerCallbacks, ServingCert, SpiffeClientVerifier, TrustMaterial, TrustStore,
};
use crate::listener::Guarded;
use crate::metrics::{CertLabels, Metrics};
use crate::pipeline::Pipeline;
use crate::reload::Reloader;
use crate::signals::{LastWords, Signals};
use crate::state::{Shared, Snapshot};
use crate::upstream::pin::UpstreamPins;

/// Streams a client may reset before they are accepted, at once, before GOAWAY.
const H2_MAX_PENDING_RESETS: usize = 20;
/// Streams we may reset because of the client's errors, per connection, before GOAWAY.
const H2_MAX_LOCAL_RESETS: usize = 1024;

/// A listener endpoint without pingora's 64 KiB read buffer per connection. The HTTP/1 code
/// reads a request header into its own buffer and rustls into its own, so that layer only
/// copied bytes once more and held 64 KiB for every idle keep-alive connection (measured: 98
/// KiB per idle plaintext connection with it). Writes keep pingora's one-MSS buffer, which
/// joins a response's header and body into one send.
fn downstream_endpoint(addr: &str) -> ListenerConfig {
    ListenerConfig::tcp(addr).l4_buffer(L4BufferSettings::default().read(0))
}

/// Why the node did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigErrors),
    #[error("{0}")]
    Policies(#[from] crate::authz::AuthzLoadError),
    #[error("{0}")]
    Identity(#[from] crate::identity::IdentityError),
    #[error("{0}")]
    Boot(#[from] crate::control::boot::BootError),
    #[error("{0}")]
    Other(String),
}

/// Everything loaded and checked, before any socket is bound.
pub struct Loaded {
    pub shared: Arc<Shared>,
    pub warnings: Vec<String>,
}

/// Loads config, trust, the node certificate and policies, and checks them together. Used by
/// `edgeward proxy` before serving and by `edgeward check` alone.
pub fn load(config_path: &Path) -> Result<Loaded, StartError> {
    let config = Config::load(config_path)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut warnings = Vec::new();

    // Trust material and the node's own certificate.
    let trust = TrustMaterial::load(&config.trust_domains, &provider, 1)?;
    let now = time::OffsetDateTime::now_utc();
    let serving = match &config.identity {
        Some(id) => {
            let cert = NodeCert::load(&id.cert, &id.key, &provider)?;
            if now > cert.leaf.not_after {
                return Err(StartError::Other(format!(
                    "`identity.cert` (`{}`): the node certificate expired at {}: issue a new one with `edgeward cert issue`",
                    id.cert.display(),
                    edgeward_certs::cert::rfc3339(cert.leaf.not_after)
                )));
            }
            let chain: Vec<Vec<u8>> = cert.chain.clone();
            let roots: Vec<Vec<u8>> = trust.all_roots.iter().map(|r| r.to_vec()).collect();
            if let Err(e) = edgeward_certs::verify::verify_svid(&chain, &roots, &[], now) {
                warnings.push(format!(
                    "the node certificate does not verify against the configured bundles: {e}"
                ));
            }
            if cert.leaf.elapsed_fraction(now) >= edgeward_certs::inspect::DEFAULT_RENEW_AT {
                warnings.push(format!(
                    "the node certificate has under a third of its lifetime left (expires {})",
                    edgeward_certs::cert::rfc3339(cert.leaf.not_after)
                ));
            }
            Some(Arc::new(ServingCert::new(cert)))
        }
        None => None,
    };

    // Policies, validated against the schema.
    let policies = PolicyStore::load(
        &config.authz.policies,
        &config.authz.schema,
        config.authz.entities.as_deref(),
    )?;
    if policies.policy_count() == 0 {
        warnings.push("no policies are loaded: every request will be denied".into());
    }
    let snapshot = Snapshot::build(config, 1, None).map_err(StartError::Other)?;

    let shared = Arc::new(Shared {
        snapshot: arc_swap::ArcSwap::from_pointee(snapshot),
        policies: PolicyStore::new(policies),
        policy_generation: AtomicU64::new(1),
        authorizer: Authorizer::new(),
        trust: Arc::new(TrustStore::new(trust, provider)),
        serving,
        metrics: Metrics::default(),
        pins: UpstreamPins::default(),
        started: Instant::now(),
        telemetry: Default::default(),
    });
    Ok(Loaded { shared, warnings })
}

/// Starts serving; returns only on a startup failure.
pub fn run(config_path: &Path, threads: usize) -> Result<(), StartError> {
    // The last-known-good bundle when the node has one, else the local file.
    let boot = crate::control::boot::choose(config_path)?;
    if let Some(reason) = &boot.lkg_refused {
        tracing::error!("{reason}: not used; starting from the local config");
    }
    if boot.serve != config_path {
        tracing::info!(config = %boot.serve.display(), "starting from the last-known-good bundle");
    }
    let loaded = load(&boot.serve)?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let shared = loaded.shared;
    let snapshot = shared.snapshot();
    let config = snapshot.config.clone();

    // Refuse addresses that are taken before pingora tries them (its error is less clear).
    for addr in config
        .listeners
        .iter()
        .map(|l| l.address)
        .chain([config.admin.address])
    {
        TcpListener::bind(addr)
            .map_err(|e| StartError::Other(format!("cannot listen on {addr}: {e}")))?;
    }

    let mut conf = ServerConf {
        threads: threads.max(1),
        // Requests in flight get this long on a graceful stop; `drain` ends it early once
        // every client connection has closed.
        grace_period_seconds: Some(crate::drain::GRACE.as_secs()),
        graceful_shutdown_timeout_seconds: Some(2),
        // Each worker thread runs its own connections (as nginx's workers do): no work
        // stealing, so a request's wake-ups stay on one thread's run queue. Measured: 19 % less
        // CPU per keep-alive request with one worker. A connection is given to a random worker
        // at accept.
        work_stealing: false,
        ..ServerConf::default()
    };
    conf.upstream_keepalive_pool_size = 256;
    conf.ca_file = Some(crate::upstream::CONNECTOR_CA_FILE.to_owned());
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let conf = server.configuration.clone();

    // One proxy service per listener, so each knows its kind.
    for listener in &config.listeners {
        let pipeline = Pipeline {
            shared: shared.clone(),
            listener: listener.kind,
            listener_name: listener.name.as_str().to_owned(),
        };
        let mut proxy = pingora::proxy::http_proxy(&conf, pipeline);
        let mut h2 = H2Options::new();
        h2.max_concurrent_streams(config.limits.h2_max_concurrent_streams.get());
        h2.max_header_list_size(config.limits.h2_max_header_list_bytes.get());
        // A client that resets streams faster than they are served ("rapid reset"), or that
        // makes us reset many, gets GOAWAY and the connection closes. h2's defaults, pinned.
        h2.max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS);
        h2.max_local_error_reset_streams(Some(H2_MAX_LOCAL_RESETS));
        proxy.h2_options = Some(h2);
        let guarded = Guarded::new(
            proxy,
            listener.name.as_str(),
            listener.max_connections.get(),
            config.limits.header_timeout,
            &shared.metrics,
        );
        let mut service = Service::new(listener.name.as_str().to_owned(), guarded);
        let addr = listener.address.to_string();
        match listener.kind {
            ListenerKind::Plaintext => service.add_listener(downstream_endpoint(&addr)),
            ListenerKind::Tls | ListenerKind::Mtls => {
                let serving = shared
                    .serving
                    .clone()
                    .ok_or_else(|| StartError::Other("a TLS listener needs [identity]".into()))?;
                let mut tls = TlsSettings::with_callbacks(Box::<PeerCallbacks>::default())
                    .map_err(|e| StartError::Other(e.to_string()))?;
                tls.set_cert_resolver(Arc::new(Resolver(serving)));
                if listener.kind == ListenerKind::Mtls {
                    tls.set_client_cert_verifier(Arc::new(SpiffeClientVerifier::new(
                        shared.trust.clone(),
                    )));
                }
                tls.enable_h2();
                service.add_listener(downstream_endpoint(&addr).tls(tls));
            }
        }
        tracing::info!(listener = %listener.name.as_str(), kind = ?listener.kind, address = %addr, "listening");
        server.add_service(service);
    }

    // The admin port.
    let mut admin = Service::new(
        "admin".to_owned(),
        Admin {
            shared: shared.clone(),
        },
    );
    admin.add_tcp(&config.admin.address.to_string());
    tracing::info!(address = %config.admin.address, "admin listening");
    server.add_service(admin);

    // Background work.
    server.add_service(background_service(
        "health",
        HealthChecker {
            shared: shared.clone(),
        },
    ));
    let interval = config
        .identity
        .as_ref()
        .map(|i| i.reload_interval)
        .unwrap_or(Duration::from_secs(5));
    server.add_service(background_service(
        "reload",
        Reloader {
            shared: shared.clone(),
            interval,
        },
    ));

    let mut last_words: Option<LastWords> = None;
    if boot.local.control_plane.is_some() {
        let locality = boot.local.node.locality.clone();
        let control = ControlService::new(shared.clone(), boot.local).map_err(StartError::Other)?;
        let (shared, queue) = (shared.clone(), control.queue.clone());
        last_words = Some(Arc::new(move || {
            crate::control::close_window(&shared, &queue, &locality)
        }));
        server.add_service(background_service("control", control));
    }

    tracing::info!(node = %config.node.id.as_str(), site = %config.node.locality.site.as_str(), "edgeward proxy started");
    crate::drain::exit_when_drained(server.watch_execution_phase(), last_words.clone());
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals::new(last_words.clone())),
    });
    // Every runtime has stopped (pingora joins the worker threads): what was counted since the
    // last window was written goes to the queue too.
    if let Some(last_words) = last_words {
        last_words();
    }
    std::process::exit(0)
}

/// Updates the gauges that are read rather than counted.
pub fn refresh_gauges(shared: &Shared) {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let m = &shared.metrics;
    if let Some(serving) = &shared.serving {
        let cert = serving.current();
        m.cert_expiry
            .get_or_create(&CertLabels {
                cert: format!("node:{}", cert.id),
            })
            .set((cert.leaf.not_after.unix_timestamp() - now) as f64);
        let left = cert.leaf.not_after.unix_timestamp() - now;
        let total = (cert.leaf.not_after - cert.leaf.not_before).whole_seconds();
        if left <= 0 {
            tracing::error!(id = %cert.id, expired_seconds_ago = -left, "the node certificate has expired: clients refuse it and /readyz fails; issue a new one");
        } else if left < total / 3 {
            tracing::warn!(id = %cert.id, seconds_left = left, "the node certificate has under a third of its lifetime left: renew it");
        }
    }
    for (name, not_after) in &shared.trust.current().expiries {
        m.cert_expiry
            .get_or_create(&CertLabels { cert: name.clone() })
            .set((not_after - now) as f64);
    }
    m.config_generation.set(shared.snapshot().generation as i64);
    m.policy_generation
        .set(shared.policy_generation.load(Ordering::Relaxed) as i64);
    m.policy_count
        .set(shared.policies.current().policy_count() as i64);
}
