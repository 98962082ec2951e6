//! Framing: a 4-byte big-endian body length, then the JSON of an [`Envelope`].
//!
//! The pure functions ([`encode_frame`], [`frame_len`], [`decode_body`], [`decode_frame`]) hold
//! every check, so tests step through them without a network; [`write_frame`] and
//! [`read_frame`] only move bytes on a quinn stream.

use serde::{Deserialize, Serialize};

use crate::PROTOCOL_VERSION;
use crate::{Envelope, Message, WireError, MAX_MESSAGE_BYTES, MAX_TELEMETRY_BATCH_BYTES};

#[derive(Serialize)]
struct EnvelopeRef<'a> {
    version: u16,
    msg: &'a Message,
}

/// Only the version, read first so that a newer schema is named as such rather than as
/// malformed.
#[derive(Deserialize)]
struct VersionOnly {
    version: u16,
}

/// Encodes `msg` as one frame (length prefix included) of the current protocol version.
pub fn encode_frame(msg: &Message) -> Result<Vec<u8>, WireError> {
    check_limits(msg)?;
    let env = EnvelopeRef {
        version: PROTOCOL_VERSION,
        msg,
    };
    let mut out = vec![0u8; 4];
    serde_json::to_writer(&mut out, &env).map_err(|e| WireError::Malformed(e.to_string()))?;
    let len = out.len() - 4;
    if len > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge {
            len,
            max: MAX_MESSAGE_BYTES,
        });
    }
    let len32 = u32::try_from(len).map_err(|_| WireError::TooLarge {
        len,
        max: MAX_MESSAGE_BYTES,
    })?;
    out[..4].copy_from_slice(&len32.to_be_bytes());
    Ok(out)
}

/// The body length a frame header announces, refused when over `max`.
pub fn frame_len(header: [u8; 4], max: usize) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(WireError::TooLarge { len, max });
    }
    Ok(len)
}

/// Parses a frame body: its version first, then the message, then the message's own limits.
pub fn decode_body(body: &[u8]) -> Result<Message, WireError> {
    let head: VersionOnly =
        serde_json::from_slice(body).map_err(|e| WireError::Malformed(e.to_string()))?;
    if head.version != PROTOCOL_VERSION {
        return Err(WireError::UnknownVersion(head.version));
    }
    let env: Envelope =
        serde_json::from_slice(body).map_err(|e| WireError::Malformed(e.to_string()))?;
    check_limits(&env.msg)?;
    Ok(env.msg)
}

/// Parses one whole frame held in memory (header and body, nothing after).
pub fn decode_frame(frame: &[u8]) -> Result<Message, WireError> {
    let header: [u8; 4] = frame
        .get(..4)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| WireError::Malformed("frame shorter than its 4-byte header".into()))?;
    let len = frame_len(header, MAX_MESSAGE_BYTES)?;
    let body = &frame[4..];
    if body.len() != len {
        return Err(WireError::Malformed(format!(
            "header announces {len} bytes, frame holds {}",
            body.len()
        )));
    }
    decode_body(body)
}

/// Limits that depend on the message: a telemetry batch is bounded tighter than a bundle.
fn check_limits(msg: &Message) -> Result<(), WireError> {
    match msg {
        Message::Telemetry { otlp, .. } if otlp.len() > MAX_TELEMETRY_BATCH_BYTES => {
            Err(WireError::TooLarge {
                len: otlp.len(),
                max: MAX_TELEMETRY_BATCH_BYTES,
            })
        }
        _ => Ok(()),
    }
}

/// Writes one frame to the stream.
pub async fn write_frame(send: &mut quinn::SendStream, msg: &Message) -> Result<(), WireError> {
    let frame = encode_frame(msg)?;
    send.write_all(&frame)
        .await
        .map_err(|e| WireError::Write(e.to_string()))
}

/// Reads one frame of at most [`MAX_MESSAGE_BYTES`] from the stream.
pub async fn read_frame(recv: &mut quinn::RecvStream) -> Result<Message, WireError> {
    read_frame_limited(recv, MAX_MESSAGE_BYTES).await
}

/// Reads one frame of at most `max` bytes; the length is checked before the body is read, so an
/// oversized frame costs nothing but its header. A stream finished cleanly between two frames
/// is [`WireError::Closed`].
pub async fn read_frame_limited(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<Message, WireError> {
    let mut header = [0u8; 4];
    recv.read_exact(&mut header).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(0) => WireError::Closed,
        other => WireError::Read(other.to_string()),
    })?;
    let len = frame_len(header, max)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| WireError::Read(e.to_string()))?;
    decode_body(&body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AckResult, BundleVersion};

    fn v() -> BundleVersion {
        BundleVersion {
            commit: "c0ffee".into(),
            hash: "ab".repeat(32),
        }
    }

    #[test]
    fn every_message_round_trips() {
        let msgs = [
            Message::Register {
                node_id: "n1".into(),
                spiffe_id: "spiffe://acme.example/node/n1".into(),
                site: "berlin".into(),
                zone: "eu-central".into(),
                region: "eu".into(),
                software_version: "0.1.0".into(),
                bundle_version: Some(v()),
            },
            Message::BundleAck {
                version: v(),
                result: AckResult::Refused {
                    reason: "policy `a` does not validate".into(),
                },
            },
            Message::BundleAck {
                version: v(),
                result: AckResult::Applied,
            },
            Message::Telemetry {
                seq: 7,
                otlp: vec![0, 1, 2, 255],
                dropped_before: 3,
            },
            Message::TelemetryAck { seq: 7 },
            Message::Heartbeat {
                at_unix: 1_700_000_000,
            },
        ];
        for m in msgs {
            let frame = encode_frame(&m).unwrap();
            assert_eq!(decode_frame(&frame).unwrap(), m);
        }
    }

    #[test]
    fn json_is_tagged_and_binary_is_base64() {
        let frame = encode_frame(&Message::Telemetry {
            seq: 1,
            otlp: b"hi".to_vec(),
            dropped_before: 0,
        })
        .unwrap();
        let text = std::str::from_utf8(&frame[4..]).unwrap();
        assert_eq!(
            text,
            r#"{"version":1,"msg":{"type":"Telemetry","seq":1,"otlp":"aGk=","dropped_before":0}}"#
        );
    }

    #[test]
    fn oversized_length_is_refused_before_the_body() {
        let header = ((MAX_MESSAGE_BYTES + 1) as u32).to_be_bytes();
        assert!(matches!(
            frame_len(header, MAX_MESSAGE_BYTES),
            Err(WireError::TooLarge { .. })
        ));
        // A header alone, with no body behind it, is refused for its length.
        assert!(matches!(
            decode_frame(&header),
            Err(WireError::TooLarge { .. })
        ));
        assert!(matches!(
            frame_len(u32::MAX.to_be_bytes(), MAX_MESSAGE_BYTES),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn oversized_telemetry_is_refused_both_ways() {
        let m = Message::Telemetry {
            seq: 1,
            otlp: vec![0; MAX_TELEMETRY_BATCH_BYTES + 1],
            dropped_before: 0,
        };
        assert!(matches!(encode_frame(&m), Err(WireError::TooLarge { .. })));
        let body = serde_json::to_vec(&Envelope { version: 1, msg: m }).unwrap();
        assert!(matches!(
            decode_body(&body),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn unknown_version_is_named() {
        let body = br#"{"version":2,"msg":{"type":"Whatever","x":1}}"#;
        assert!(matches!(
            decode_body(body),
            Err(WireError::UnknownVersion(2))
        ));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let bodies: [&[u8]; 6] = [
            b"",
            b"not json",
            br#"{"msg":{"type":"Heartbeat","at_unix":1}}"#,
            br#"{"version":1,"msg":{"type":"Nope"}}"#,
            br#"{"version":1,"msg":{"type":"Telemetry","seq":1,"otlp":"***","dropped_before":0}}"#,
            br#"{"version":1,"msg":{"type":"Heartbeat","at_unix":"x"}}"#,
        ];
        for b in bodies {
            assert!(
                matches!(decode_body(b), Err(WireError::Malformed(_))),
                "{b:?}"
            );
        }
        assert!(matches!(
            decode_frame(&[0, 0]),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            decode_frame(&[0, 0, 0, 9, b'{']),
            Err(WireError::Malformed(_))
        ));
    }

    /// Not a fuzzer, but the same promise: mangled frames are errors, never panics.
    #[test]
    fn mangled_frames_are_errors_not_panics() {
        let good = encode_frame(&Message::Register {
            node_id: "n1".into(),
            spiffe_id: "spiffe://acme.example/node/n1".into(),
            site: "s".into(),
            zone: "z".into(),
            region: "r".into(),
            software_version: "0.1.0".into(),
            bundle_version: Some(v()),
        })
        .unwrap();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..5_000 {
            let mut f = good.clone();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % f.len();
                f[i] = next() as u8;
            }
            let cut = (next() as usize) % (f.len() + 1);
            let _ = decode_frame(&f[..cut]);
            let _ = decode_frame(&f);
        }
    }
}
