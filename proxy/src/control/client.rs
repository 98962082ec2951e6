//! The control channel, node side (the protocol is documented in `edgeward_wire`).

use std::sync::Arc;
use std::time::Instant;

use edgeward_wire::protocol::{self, close};
use edgeward_wire::{read_frame, write_frame, AckResult, Bundle, BundleVersion, Message};
use pingora::server::ShutdownWatch;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{backoff, ControlService};
use crate::config::ControlPlane;
use crate::upstream::pin::IdVerifier;

/// Why a session ended.
enum End {
    Shutdown,
    /// The session registered, then failed: reconnect at once-ish.
    AfterRegister(String),
    /// It never got that far.
    Failed(String),
}

/// Connects, runs a session, and reconnects with backoff until shutdown.
pub async fn run(svc: &ControlService, mut shutdown: ShutdownWatch) {
    let Some(cp) = svc.local.control_plane.clone() else {
        return;
    };
    let mut failures = 0u32;
    loop {
        let delay = match session(svc, &cp, &mut shutdown).await {
            End::Shutdown => return,
            End::AfterRegister(e) => {
                tracing::warn!(control_plane = %cp.address, error = %e, "control plane connection lost; serving on, reconnecting");
                failures = 0;
                backoff(0, rand::random::<f64>())
            }
            End::Failed(e) => {
                let d = backoff(failures, rand::random::<f64>());
                failures = failures.saturating_add(1);
                tracing::warn!(control_plane = %cp.address, error = %e, retry_in_ms = d.as_millis() as u64, "cannot reach the control plane; serving on the bundle in force");
                d
            }
        };
        svc.shared.metrics.control_connected.set(0);
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

fn client_config(svc: &ControlService, cp: &ControlPlane) -> Result<quinn::ClientConfig, String> {
    let serving = svc
        .shared
        .serving
        .as_ref()
        .ok_or("the control channel needs the node's [identity]")?
        .current();
    let provider = svc.shared.trust.provider().clone();
    let roots = svc
        .shared
        .trust
        .current()
        .roots_of(cp.spiffe_id.trust_domain())
        .map(|r| r.to_vec())
        .ok_or_else(|| {
            format!(
                "no trust bundle for the control plane's trust domain `{}`",
                cp.spiffe_id.trust_domain()
            )
        })?;
    let verifier = Arc::new(IdVerifier::new(
        "control plane",
        roots,
        cp.spiffe_id.clone(),
        provider.clone(),
    ));
    let chain: Vec<CertificateDer<'static>> = serving
        .chain
        .iter()
        .cloned()
        .map(CertificateDer::from)
        .collect();
    let key = PrivateKeyDer::try_from(serving.key_der.clone()).map_err(|e| e.to_string())?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(chain, key)
        .map_err(|e| e.to_string())?;
    tls.alpn_protocols = vec![protocol::ALPN.to_vec()];
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}

async fn session(svc: &ControlService, cp: &ControlPlane, shutdown: &mut ShutdownWatch) -> End {
    let config = match client_config(svc, cp) {
        Ok(c) => c,
        Err(e) => return End::Failed(e),
    };
    let bind = if cp.address.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    // A new endpoint (and socket) per session: a node whose address changed starts afresh.
    let endpoint = match quinn::Endpoint::client(bind.parse().expect("a literal address")) {
        Ok(e) => e,
        Err(e) => return End::Failed(format!("cannot open a UDP socket: {e}")),
    };
    let connecting = match endpoint.connect_with(config, cp.address, &cp.server_name) {
        Ok(c) => c,
        Err(e) => return End::Failed(e.to_string()),
    };
    let conn = tokio::select! {
        _ = shutdown.changed() => return End::Shutdown,
        c = tokio::time::timeout(protocol::REGISTER_TIMEOUT, connecting) => match c {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return End::Failed(format!("handshake: {e}")),
            Err(_) => return End::Failed("no answer within 10 s".into()),
        },
    };
    let (mut send, mut recv) = match conn.open_bi().await {
        Ok(s) => s,
        Err(e) => return End::Failed(format!("cannot open the stream: {e}")),
    };
    let node = &svc.local.node;
    let id = svc
        .shared
        .serving
        .as_ref()
        .map(|s| s.current().id.to_string())
        .unwrap_or_default();
    let register = Message::Register {
        node_id: node.id.as_str().to_owned(),
        spiffe_id: id,
        site: node.locality.site.as_str().to_owned(),
        zone: node.locality.zone.as_str().to_owned(),
        region: node.locality.region.as_str().to_owned(),
        software_version: env!("CARGO_PKG_VERSION").to_owned(),
        bundle_version: current_version(svc),
    };
    if let Err(e) = write_frame(&mut send, &register).await {
        return End::Failed(format!("register: {e}"));
    }
    tracing::info!(control_plane = %cp.address, "connected to the control plane");
    svc.shared.metrics.control_connected.set(1);

    // Frames arrive on their own task, so a slow read never holds up heartbeats.
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let reader = tokio::spawn(async move {
        loop {
            let r = read_frame(&mut recv).await;
            let stop = r.is_err();
            if tx.send(r).await.is_err() || stop {
                return;
            }
        }
    });
    let end = serve(svc, &conn, &mut send, &mut rx, shutdown).await;
    reader.abort();
    match &end {
        End::Shutdown => conn.close(close::SHUTDOWN.into(), b"node shutting down"),
        _ => conn.close(close::PROTOCOL.into(), b"session ended"),
    }
    end
}

async fn serve(
    svc: &ControlService,
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    rx: &mut tokio::sync::mpsc::Receiver<Result<Message, edgeward_wire::WireError>>,
    shutdown: &mut ShutdownWatch,
) -> End {
    let mut heartbeat = tokio::time::interval(protocol::HEARTBEAT_INTERVAL);
    let mut telemetry = tokio::time::interval(std::time::Duration::from_millis(500));
    let mut last_contact = Instant::now();
    // Batches sent on this connection; unacknowledged ones are sent again on the next.
    let mut sent_up_to = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return End::Shutdown,
            frame = rx.recv() => {
                let msg = match frame {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => return ended(conn, e.to_string()),
                    None => return ended(conn, "the stream ended".into()),
                };
                last_contact = Instant::now();
                match msg {
                    Message::Bundle(bundle) => {
                        let version = bundle.version.clone();
                        let result = apply(svc, bundle);
                        if let Err(e) = write_frame(send, &Message::BundleAck { version, result }).await {
                            return End::AfterRegister(format!("bundle ack: {e}"));
                        }
                    }
                    Message::TelemetryAck { seq } => {
                        if let Err(e) = svc.queue.ack(seq) {
                            tracing::error!(error = %e, "cannot record a telemetry acknowledgement");
                        }
                        svc.shared.metrics.telemetry_queued.set(svc.queue.len() as i64);
                    }
                    Message::Heartbeat { .. } => {}
                    other => {
                        let what = format!("unexpected message from the control plane: {other:?}");
                        return End::AfterRegister(what.chars().take(200).collect());
                    }
                }
            }
            _ = heartbeat.tick() => {
                if last_contact.elapsed() > protocol::SILENCE_TIMEOUT {
                    conn.close(close::SILENCE.into(), b"no frame for 30 s");
                    return End::AfterRegister("the control plane went silent".into());
                }
                let at_unix = time::OffsetDateTime::now_utc().unix_timestamp();
                if let Err(e) = write_frame(send, &Message::Heartbeat { at_unix }).await {
                    return End::AfterRegister(format!("heartbeat: {e}"));
                }
            }
            _ = telemetry.tick() => {
                let batches = match svc.queue.pending(sent_up_to, 16) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the telemetry queue");
                        continue;
                    }
                };
                for b in batches {
                    let msg = Message::Telemetry { seq: b.seq, otlp: b.otlp, dropped_before: b.dropped_before };
                    if let Err(e) = write_frame(send, &msg).await {
                        return End::AfterRegister(format!("telemetry: {e}"));
                    }
                    sent_up_to = b.seq;
                }
            }
        }
    }
}

/// The session ended on a read: a refusal by the control plane (this node is unknown to it, or
/// not who it claims) backs off like a failed connect; anything else reconnects soon.
fn ended(conn: &quinn::Connection, fallback: String) -> End {
    match conn.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(c))
            if c.error_code == quinn::VarInt::from_u32(close::REFUSED) =>
        {
            End::Failed(format!(
                "refused by the control plane: {}",
                String::from_utf8_lossy(&c.reason)
            ))
        }
        Some(reason) => End::AfterRegister(reason.to_string()),
        None => End::AfterRegister(fallback),
    }
}

/// The version of the bundle in force, if the node serves one.
fn current_version(svc: &ControlService) -> Option<BundleVersion> {
    match svc.store.load() {
        Ok(Some(b)) if is_serving_bundle(svc) => Some(b.version),
        _ => None,
    }
}

fn is_serving_bundle(svc: &ControlService) -> bool {
    svc.shared.snapshot().config.source == svc.store.config_path()
}

/// Applies a bundle: stage and check it, make it current, swap the running config; any
/// failure leaves the bundle in force as it was.
fn apply(svc: &ControlService, bundle: Bundle) -> AckResult {
    let version = bundle.version.clone();
    if current_version(svc).as_ref() == Some(&version) {
        return AckResult::Applied;
    }
    let refused = |reason: String| {
        tracing::error!(commit = %version.commit, hash = %version.hash, reason = %reason, "bundle refused; the bundle in force stays");
        svc.shared.metrics.reload("bundle", false);
        AckResult::Refused { reason }
    };
    if let Err(e) = svc.store.stage(&bundle, &svc.overlay) {
        return refused(e);
    }
    let previous = match svc.store.commit(&version.hash) {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    if let Err(e) = crate::reload::reload_config(&svc.shared, &svc.store.config_path()) {
        if let Err(r) = svc.store.rollback(previous.as_deref()) {
            tracing::error!(error = %r, "cannot put the previous bundle back in place");
        }
        return refused(e);
    }
    svc.shared.metrics.reload("bundle", true);
    tracing::info!(commit = %version.commit, hash = %version.hash, "bundle applied");
    AckResult::Applied
}
