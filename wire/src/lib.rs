//! The control channel between an Edgeward node and its control plane.
//!
//! Both sides share these types so that neither can drift from the other:
//!
//! - [`message`]: the versioned messages (register, bundle push and ack, telemetry batches and
//!   acks, heartbeats) and the content-addressed [`Bundle`].
//! - [`frame`]: how a message travels on a QUIC stream (a 4-byte big-endian length, then the
//!   JSON of an [`Envelope`]), with every size bounded before anything is read.
//! - [`protocol`]: the ALPN id, the timers and the close codes.
//!
//! Every frame is checked for its length, its protocol version and its shape; a bad frame is an
//! error, never a panic.
//!
//! # The protocol, version 1
//!
//! **Transport.** QUIC (quinn 0.11, rustls with the ring provider, TLS 1.3), ALPN
//! `edgeward-ctl/1` ([`protocol::ALPN`]). The control plane presents its SVID; the node should
//! check the chain against its trust bundle and the URI SAN against the control plane's
//! configured SPIFFE ID (a verifier of its own: the SVID need not carry the DNS name the node
//! dials, though `edgeward cert issue --dns` can add one for a plain WebPKI check). The node
//! **must** present its own SVID (leaf first, then its site CA): the control plane verifies
//! the chain against its trust bundle (rustls `WebPkiClientVerifier`), then requires exactly
//! one URI SAN that is a valid SPIFFE ID in the bundle's trust domain. Any other certificate
//! is refused during the handshake.
//!
//! **Frames.** Each message is a 4-byte big-endian body length, then the JSON body
//! `{"version":1,"msg":{"type":"<Message variant>", ...fields}}`; binary fields (the OTLP
//! payload) are standard base64 strings. For example
//! `{"version":1,"msg":{"type":"TelemetryAck","seq":7}}`.
//!
//! **One stream.** After the handshake the node opens **one** bidirectional stream and sends
//! [`Message::Register`] on it within 10 s ([`protocol::REGISTER_TIMEOUT`]), else the
//! connection is closed with [`protocol::close::REGISTER_TIMEOUT`]. The control plane looks up
//! the published node whose SPIFFE ID is the certificate's; `Register.node_id` must be that
//! node's id and `Register.spiffe_id` the certificate's ID, else the connection is closed with
//! [`protocol::close::REFUSED`] and a reason naming the mismatch. An unknown SPIFFE ID is
//! refused the same way. A newer connection of the same node replaces the older one
//! ([`protocol::close::REPLACED`]).
//!
//! **Bundles.** Right after `Register`, if the node's published bundle version differs from
//! `Register.bundle_version` (or that is `None`), the control plane sends [`Message::Bundle`].
//! Whenever a new revision is published it pushes the new `Bundle` to each connected node
//! whose bundle content changed; a node whose content did not change keeps its bundle version
//! (with the older commit) and is sent nothing. `Register.site`, `zone` and `region` are
//! informational: the fleet shows the desired state's locality. The node checks `node_id`, [`Bundle::verify_hash`] and
//! [`Bundle::check_paths`], applies it, and answers [`Message::BundleAck`] with the bundle's
//! version and `Applied` or `Refused { reason }`. The control plane records either.
//!
//! **Telemetry.** The node sends [`Message::Telemetry`] with a sequence number that increases
//! by batch (never reused for other content), the OTLP `ExportMetricsServiceRequest` protobuf
//! (at most [`MAX_TELEMETRY_BATCH_BYTES`]), and how many batches it dropped since the previous
//! one. The control plane stores a batch once per `(node, seq)` and answers
//! [`Message::TelemetryAck`] with the same `seq`; a `seq` at or below the highest stored one is
//! acked again and not stored twice, so the node may resend anything unacked after a
//! reconnect. A batch that does not decode is logged and not acked (the node should drop it
//! rather than resend it forever). The metrics read are delta `Sum`s `edgeward.requests`
//! (attributes `decision`, with `deny` counted as a deny, and `tier`: `site` on site, `zone`,
//! `region` or `any` elsewhere) and `edgeward.failovers`, and the delta `Histogram`
//! `edgeward.request.duration` in milliseconds; a data point covers
//! `[start_time_unix_nano, time_unix_nano)` of 1 s to 1 h. Other metrics are ignored.
//!
//! **Liveness.** Each side sends [`Message::Heartbeat`] every 10 s
//! ([`protocol::HEARTBEAT_INTERVAL`]); any frame counts as contact, and after 30 s without one
//! ([`protocol::SILENCE_TIMEOUT`]) a side closes with [`protocol::close::SILENCE`]. The control
//! plane marks the node offline when the connection ends.
//!
//! **Errors.** A frame over its limit ([`MAX_MESSAGE_BYTES`], refused from its 4-byte header
//! before the body is read), of another protocol version, or malformed, and any message not
//! allowed in its place (a second `Register`, a `Bundle` or `TelemetryAck` from a node) close
//! the connection with [`protocol::close::PROTOCOL`] and the error as the reason phrase.

pub mod error;
pub mod frame;
pub mod message;
pub mod protocol;

pub use error::WireError;
pub use frame::{decode_body, decode_frame, encode_frame, frame_len, read_frame, write_frame};
pub use message::{AckResult, Bundle, BundleVersion, Envelope, Message};

/// The version of the message schema this build speaks. A frame of any other version is refused.
pub const PROTOCOL_VERSION: u16 = 1;

/// The largest frame body accepted (a bundle with its policies and trust material).
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// The largest OTLP payload one telemetry batch may carry (before base64).
pub const MAX_TELEMETRY_BATCH_BYTES: usize = 1024 * 1024;
