//! One node's connection: register, then bundles, acks, telemetry and heartbeats until it
//! ends. Every way it can end closes the connection with a close code of
//! `edgeward_wire::protocol::close` and a reason phrase, and is logged and recorded.

use std::sync::Arc;
use std::time::Duration;

use edgeward_wire::protocol::{close, HEARTBEAT_INTERVAL, REGISTER_TIMEOUT, SILENCE_TIMEOUT};
use edgeward_wire::{read_frame, write_frame, AckResult, BundleVersion, Message, WireError};
use tokio::sync::mpsc;
use tokio::time::{interval_at, sleep_until, timeout, Instant, MissedTickBehavior};

use super::Shared;
use crate::metrics::Metrics;
use crate::otlp;
use crate::publish::Published;
use crate::store::telemetry::{Point, Recorded};

/// How long one write may wait on a node that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a session ended: a close code and its reason phrase.
#[derive(Debug)]
struct End {
    code: u32,
    reason: String,
}

fn end(code: u32, reason: impl Into<String>) -> End {
    End {
        code,
        reason: reason.into(),
    }
}

/// The Unix time now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A registered node.
struct Node {
    id: String,
    /// The bundle the node has, or was last sent.
    sent: Option<BundleVersion>,
}

/// Runs one connection to its end.
pub async fn run(conn: quinn::Connection, shared: Arc<Shared>) {
    let remote = conn.remote_address();

    // Register (within the timeout), then serve.
    let registered = timeout(REGISTER_TIMEOUT, register(&conn, &shared)).await;
    let (mut node, send, recv) = match registered {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return refuse(&conn, &shared, e),
        Err(_) => {
            let e = end(
                close::REGISTER_TIMEOUT,
                "no Register within 10 s of the handshake",
            );
            return refuse(&conn, &shared, e);
        }
    };
    tracing::info!(node.id = %node.id, peer.addr = %remote, "node connected");
    shared.metrics.nodes_connected.inc();
    let outcome = serve(&conn, &shared, &mut node, send, recv).await;
    shared.metrics.nodes_connected.dec();

    // Close, and mark the node offline unless a newer connection replaced this one.
    let reason = match &outcome {
        Ok(why) => why.clone(),
        Err(e) => {
            conn.close(e.code.into(), e.reason.as_bytes());
            e.reason.clone()
        }
    };
    let replaced = {
        let mut connected = shared.connected();
        match connected.get(&node.id) {
            Some(c) if c.stable_id() == conn.stable_id() => {
                connected.remove(&node.id);
                false
            }
            _ => true,
        }
    };
    tracing::info!(node.id = %node.id, reason = %reason, "node disconnected");
    if !replaced {
        if let Err(e) = shared.store.node_disconnected(&node.id, &reason, now()) {
            tracing::error!(error = %e, "cannot record a disconnection");
        }
    }
}

fn refuse(conn: &quinn::Connection, shared: &Shared, e: End) {
    tracing::info!(peer.addr = %conn.remote_address(), code = e.code, reason = ?e.reason, "node connection refused");
    let kind = match e.code {
        close::REGISTER_TIMEOUT => "register_timeout",
        close::PROTOCOL => "protocol",
        close::REFUSED => "refused",
        _ => "other",
    };
    Metrics::count(&shared.metrics.connections_refused, kind);
    conn.close(e.code.into(), e.reason.as_bytes());
}

/// Reads `Register`, checks it against the certificate and the published state, and records
/// the node as connected.
async fn register(
    conn: &quinn::Connection,
    shared: &Shared,
) -> Result<(Node, quinn::SendStream, quinn::RecvStream), End> {
    // The certificate's SPIFFE ID (verified at the handshake; checked again here).
    let chain = conn
        .peer_identity()
        .and_then(|a| {
            a.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .ok_or_else(|| end(close::REFUSED, "no client certificate"))?;
    let cert_id = shared.trust.check(&chain, now()).map_err(|r| {
        end(
            close::REFUSED,
            format!("the client certificate is refused: {r}"),
        )
    })?;
    let validity = edgeward_certs::CertView::parse(&chain[0])
        .map(|v| crate::store::Validity {
            not_before: v.not_before.unix_timestamp(),
            not_after: v.not_after.unix_timestamp(),
        })
        .unwrap_or(crate::store::Validity {
            not_before: 0,
            not_after: 0,
        });

    // The stream and its first frame.
    let (send, mut recv) = conn
        .accept_bi()
        .await
        .map_err(|e| end(close::PROTOCOL, format!("no stream opened: {e}")))?;
    let first = read_frame(&mut recv).await.map_err(frame_error)?;
    let Message::Register {
        node_id,
        spiffe_id,
        software_version,
        bundle_version,
        ..
    } = first
    else {
        return Err(end(
            close::PROTOCOL,
            format!("the first message must be Register, not {}", kind(&first)),
        ));
    };

    // The node must be published, under the certificate's ID, with the same id.
    let cert_id = cert_id.to_string();
    let published = shared.publisher.current();
    let Some(pn) = published.as_deref().and_then(|p| p.by_spiffe_id(&cert_id)) else {
        let msg = format!("no node of the published desired state has SPIFFE ID `{cert_id}`");
        record(shared, None, "register-refused", &msg);
        return Err(end(close::REFUSED, msg));
    };
    if pn.node_id != node_id || spiffe_id != cert_id {
        let msg = format!(
            "the certificate `{cert_id}` belongs to node `{}`, but Register names node `{}` with SPIFFE ID `{}`",
            pn.node_id,
            node_id.chars().take(128).collect::<String>(),
            spiffe_id.chars().take(256).collect::<String>()
        );
        record(shared, Some(&pn.node_id), "register-refused", &msg);
        return Err(end(close::REFUSED, msg));
    }

    // Connected: replace an older connection of the same node, and record it.
    if let Some(old) = shared.connected().insert(node_id.clone(), conn.clone()) {
        old.close(
            close::REPLACED.into(),
            b"replaced by a newer connection of this node",
        );
    }
    let applied = bundle_version
        .as_ref()
        .map(|v| (v.commit.as_str(), v.hash.as_str()));
    let sw: String = software_version.chars().take(64).collect();
    if let Err(e) = shared
        .store
        .node_connected(&node_id, &sw, applied, validity, now())
    {
        tracing::error!(error = %e, "cannot record a connection");
    }
    let node = Node {
        id: node_id,
        sent: bundle_version,
    };
    Ok((node, send, recv))
}

/// The session after `Register`: `Ok(reason)` when the node or the link ended it.
async fn serve(
    conn: &quinn::Connection,
    shared: &Shared,
    node: &mut Node,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) -> Result<String, End> {
    // Frames are read by their own task: reading is not cancel-safe inside `select!`.
    let (tx, mut frames) = mpsc::channel(4);
    let reader = tokio::spawn(async move {
        loop {
            let frame = read_frame(&mut recv).await;
            let last = frame.is_err();
            if tx.send(frame).await.is_err() || last {
                break;
            }
        }
    });
    let result = async {
        // The node's bundle, if it does not have it.
        let mut updates = shared.publisher.subscribe();
        updates.mark_unchanged();
        if let Some(p) = shared.publisher.current() {
            push_if_changed(&mut send, shared, node, &p).await?;
        }

        let mut heartbeat = interval_at(Instant::now() + HEARTBEAT_INTERVAL, HEARTBEAT_INTERVAL);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut silent_until = Instant::now() + SILENCE_TIMEOUT;
        loop {
            tokio::select! {
                frame = frames.recv() => {
                    let msg = match frame {
                        Some(Ok(m)) => m,
                        Some(Err(WireError::Closed)) | None => return Ok("the node closed the stream".to_owned()),
                        Some(Err(e @ WireError::Read(_))) => return Ok(format!("the link failed: {e}")),
                        Some(Err(e)) => return Err(frame_error(e)),
                    };
                    silent_until = Instant::now() + SILENCE_TIMEOUT;
                    if let Err(e) = shared.store.touch(&node.id, now()) {
                        tracing::error!(error = %e, "cannot record contact");
                    }
                    handle(&mut send, shared, node, msg).await?;
                }
                _ = heartbeat.tick() => {
                    write(&mut send, &Message::Heartbeat { at_unix: now() }).await?;
                }
                changed = updates.changed() => {
                    if changed.is_err() {
                        return Err(end(close::SHUTDOWN, "the control plane is shutting down"));
                    }
                    let latest = updates.borrow_and_update().clone();
                    if let Some(p) = latest {
                        push_if_changed(&mut send, shared, node, &p).await?;
                    }
                }
                _ = sleep_until(silent_until) => {
                    return Err(end(close::SILENCE, "nothing heard from the node for 30 s"));
                }
                e = conn.closed() => return Ok(format!("the connection closed: {e}")),
            }
        }
    }
    .await;
    reader.abort();
    result
}

/// Sends the node its published bundle if it differs from what the node has.
async fn push_if_changed(
    send: &mut quinn::SendStream,
    shared: &Shared,
    node: &mut Node,
    published: &Published,
) -> Result<(), End> {
    let Some(pn) = published.nodes.get(&node.id) else {
        let msg = "the node is no longer in the published desired state";
        record(shared, Some(&node.id), "removed", msg);
        return Err(end(close::REFUSED, msg));
    };
    if node.sent.as_ref() == Some(&pn.bundle.version) {
        return Ok(());
    }
    write(send, &Message::Bundle((*pn.bundle).clone())).await?;
    shared.metrics.bundles_sent.inc();
    tracing::info!(node.id = %node.id, bundle.commit = %pn.bundle.version.commit, "sent bundle");
    node.sent = Some(pn.bundle.version.clone());
    Ok(())
}

/// One message from a registered node.
async fn handle(
    send: &mut quinn::SendStream,
    shared: &Shared,
    node: &Node,
    msg: Message,
) -> Result<(), End> {
    match msg {
        Message::Heartbeat { .. } => Ok(()),
        Message::BundleAck { version, result } => {
            let stored = match &result {
                AckResult::Applied => {
                    Metrics::count(&shared.metrics.bundle_acks, "applied");
                    tracing::info!(node.id = %node.id, bundle.commit = %version.commit, "bundle applied");
                    shared
                        .store
                        .bundle_applied(&node.id, &version.commit, &version.hash, now())
                }
                AckResult::Refused { reason } => {
                    Metrics::count(&shared.metrics.bundle_acks, "refused");
                    let reason: String = reason.chars().take(2048).collect();
                    tracing::warn!(node.id = %node.id, bundle.commit = %version.commit, reason = ?reason, "node refused its bundle");
                    shared.store.bundle_refused(
                        &node.id,
                        &version.commit,
                        &version.hash,
                        &reason,
                        now(),
                    )
                }
            };
            if let Err(e) = stored {
                tracing::error!(error = %e, "cannot record a bundle ack");
            }
            Ok(())
        }
        Message::Telemetry {
            seq,
            otlp,
            dropped_before,
        } => telemetry(send, shared, node, seq, &otlp, dropped_before).await,
        other => Err(end(
            close::PROTOCOL,
            format!("a node may not send {} here", kind(&other)),
        )),
    }
}

/// Decodes and stores one batch, and acks it when it is stored (now or before).
async fn telemetry(
    send: &mut quinn::SendStream,
    shared: &Shared,
    node: &Node,
    seq: u64,
    otlp_bytes: &[u8],
    dropped_before: u64,
) -> Result<(), End> {
    let mut points = match otlp::decode(otlp_bytes) {
        Ok(p) => p,
        Err(e) => {
            Metrics::count(&shared.metrics.telemetry_batches, "refused");
            tracing::error!(node.id = %node.id, telemetry.seq = seq, error = %e, "refused a telemetry batch; it is not acked");
            record(
                shared,
                Some(&node.id),
                "telemetry-refused",
                &format!("batch {seq} refused: {e}"),
            );
            return Ok(());
        }
    };
    add_dropped(&mut points, dropped_before, now());
    match shared.store.record_batch(&node.id, seq, &points) {
        Ok(r) => {
            let outcome = if r == Recorded::Stored {
                "stored"
            } else {
                "duplicate"
            };
            Metrics::count(&shared.metrics.telemetry_batches, outcome);
            tracing::debug!(node.id = %node.id, telemetry.seq = seq, outcome, "telemetry batch");
            write(send, &Message::TelemetryAck { seq }).await
        }
        Err(e) => {
            // Not acked: the node keeps the batch and sends it again.
            tracing::error!(error = %e, "cannot store a telemetry batch");
            Ok(())
        }
    }
}

/// Counts the node's dropped batches with its first point, or a point of its own.
pub fn add_dropped(points: &mut Vec<Point>, dropped: u64, now: i64) {
    if dropped == 0 {
        return;
    }
    match points.first_mut() {
        Some(p) => p.dropped += dropped,
        None => points.push(Point {
            at: now - now.rem_euclid(10),
            width: 10,
            dropped,
            ..Point::default()
        }),
    }
}

async fn write(send: &mut quinn::SendStream, msg: &Message) -> Result<(), End> {
    match timeout(WRITE_TIMEOUT, write_frame(send, msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(end(
            close::PROTOCOL,
            format!("cannot send {}: {e}", kind(msg)),
        )),
        Err(_) => Err(end(close::SILENCE, "the node does not read its stream")),
    }
}

fn frame_error(e: WireError) -> End {
    end(close::PROTOCOL, format!("bad frame: {e}"))
}

fn record(shared: &Shared, node: Option<&str>, kind: &str, message: &str) {
    if let Err(e) = shared.store.event(now(), node, kind, message) {
        tracing::error!(error = %e, "cannot record an event");
    }
}

/// The message's type, for errors.
fn kind(m: &Message) -> &'static str {
    match m {
        Message::Register { .. } => "Register",
        Message::Bundle(_) => "Bundle",
        Message::BundleAck { .. } => "BundleAck",
        Message::Telemetry { .. } => "Telemetry",
        Message::TelemetryAck { .. } => "TelemetryAck",
        Message::Heartbeat { .. } => "Heartbeat",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_batches_are_counted_once() {
        let mut points = vec![Point::default(), Point::default()];
        add_dropped(&mut points, 3, 100);
        assert_eq!(points.iter().map(|p| p.dropped).sum::<u64>(), 3);
        let mut none = Vec::new();
        add_dropped(&mut none, 2, 105);
        assert_eq!((none[0].at, none[0].dropped), (100, 2));
        add_dropped(&mut none, 0, 105);
        assert_eq!(none.len(), 1);
    }
}
