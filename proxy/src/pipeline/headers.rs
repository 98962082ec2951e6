//! Header rewriting. Upstream sees the canonical request (the same host and path that routing
//! and policy saw), the identity header set by the proxy alone, forwarding headers set by the
//! proxy, and no hop-by-hop header in either direction (RFC 9110 section 7.6.1).

use http::header::{self, HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;

use super::{Pipeline, RequestCtx, PEER_ID_HEADER};
use crate::config::ListenerKind;

/// Hop-by-hop fields; message framing (`transfer-encoding`, `content-length`) is left to
/// pingora, which frames each side itself. As header names, so that looking them up parses
/// nothing.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

/// [`PEER_ID_HEADER`] as a header name.
const PEER_ID: HeaderName = HeaderName::from_static(PEER_ID_HEADER);

/// Fields a `Connection` header may not remove: the proxy needs them to frame and route.
const PROTECTED: [&str; 3] = ["content-length", "transfer-encoding", "host"];

/// Rewrites the request that goes upstream.
pub fn rewrite_request(
    p: &Pipeline,
    session: &Session,
    req: &mut RequestHeader,
    ctx: &RequestCtx,
) -> Result<()> {
    // The canonical target and host, where they differ from what the client sent.
    if ctx.rewrite_target {
        let uri: http::Uri = ctx.canonical_target.parse().map_err(|_| {
            Error::explain(ErrorType::HTTPStatus(400), "canonical target is not a URI")
        })?;
        req.set_uri(uri);
    }
    let mut hosts = req.headers.get_all(header::HOST).iter();
    let host_is_canonical = matches!(
        (hosts.next(), hosts.next()),
        (Some(v), None) if v.as_bytes() == ctx.canonical_host.as_bytes()
    );
    if !host_is_canonical {
        req.insert_header(header::HOST, &ctx.canonical_host)?;
    }

    // Hop-by-hop fields and every field that `Connection` nominates are gone already: pingora
    // removes them before this hook, under the standard upstream request policy that
    // `upstream::peer_for` sets (a WebSocket upgrade keeps its `Connection: upgrade` and
    // `Upgrade: websocket`; any other upgrade is not forwarded). `TE: trailers` is the one
    // hop-by-hop value HTTP/2 keeps (RFC 9113 section 8.2.2): gRPC needs it end to end, so it
    // is put back, from what the client sent, towards HTTP/2 upstreams.
    if ctx.cluster.as_ref().is_some_and(|c| c.config.http2)
        && accepts_trailers(&session.req_header().headers)
    {
        req.insert_header("te", "trailers")?;
    }

    // Identity: only the proxy speaks for the peer.
    req.remove_header(&PEER_ID);
    if let Some(id) = &ctx.identity {
        req.insert_header(PEER_ID_HEADER, id.to_string())?;
    }

    // Forwarding facts, set (not appended): what the client claims is not believed.
    let ip = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    let proto = if p.listener == ListenerKind::Plaintext {
        "http"
    } else {
        "https"
    };
    let (for_ip, forwarded) = forwarding_values(ip, proto, &ctx.canonical_host)?;
    req.insert_header("x-forwarded-for", for_ip)?;
    req.insert_header("x-forwarded-proto", proto)?;
    req.insert_header("x-forwarded-host", &ctx.canonical_host)?;
    req.insert_header("forwarded", forwarded)?;
    Ok(())
}

/// The `X-Forwarded-For` and `Forwarded` values for a client address, protocol and canonical
/// host. Formatting them was a tenth of the proxy's own work per request; each thread keeps
/// the values of the last request it forwarded, which a keep-alive connection asks for again.
/// A kept value is shared, not copied.
fn forwarding_values(
    ip: Option<std::net::IpAddr>,
    proto: &'static str,
    host: &str,
) -> Result<(HeaderValue, HeaderValue)> {
    type Kept = (
        Option<std::net::IpAddr>,
        &'static str,
        String,
        HeaderValue,
        HeaderValue,
    );
    thread_local! {
        static LAST: std::cell::RefCell<Option<Kept>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((i, p, h, for_ip, forwarded)) = last.as_ref() {
            if *i == ip && *p == proto && h == host {
                return Ok((for_ip.clone(), forwarded.clone()));
            }
        }
        let ip_text = ip.map(|ip| ip.to_string()).unwrap_or_default();
        let forwarded = if ip_text.contains(':') {
            format!("for=\"[{ip_text}]\";proto={proto};host=\"{host}\"")
        } else {
            format!("for={ip_text};proto={proto};host=\"{host}\"")
        };
        let invalid =
            |_| Error::explain(InvalidHTTPHeader, "forwarding value is not a header value");
        let for_ip = HeaderValue::try_from(ip_text).map_err(invalid)?;
        let forwarded = HeaderValue::try_from(forwarded).map_err(invalid)?;
        *last = Some((
            ip,
            proto,
            host.to_owned(),
            for_ip.clone(),
            forwarded.clone(),
        ));
        Ok((for_ip, forwarded))
    })
}

/// Rewrites the response that goes downstream: no hop-by-hop field, nor any field its
/// `Connection` nominates, except the `Connection: upgrade` and `Upgrade` of a 101 to an
/// upgrade the client asked for.
pub fn rewrite_response(resp: &mut ResponseHeader, upgrade: bool) {
    let switching = upgrade && resp.status.as_u16() == 101;
    // Most responses carry none of these: one pass over their few fields says so.
    if !switching && !resp.headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let nominated = connection_tokens(&resp.headers);
    for name in &HOP_BY_HOP {
        if switching && (name == header::UPGRADE || name == header::CONNECTION) {
            continue;
        }
        remove(resp, name);
    }
    for name in &nominated {
        if PROTECTED.contains(&name.as_str()) || (switching && name == "upgrade") {
            continue;
        }
        remove(resp, name.as_str());
    }
    if switching {
        let _ = resp.insert_header(header::CONNECTION, "upgrade");
    }
}

/// Removes a field; looked up first, since most responses carry none of these.
fn remove<'n, N: ?Sized>(resp: &mut ResponseHeader, name: &'n N)
where
    &'n N: header::AsHeaderName,
{
    if resp.headers.contains_key(name) {
        resp.remove_header(name);
    }
}

/// Whether the client's `TE` lists `trailers`.
fn accepts_trailers(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("trailers")
        })
}

/// The field names listed in `Connection` headers, lowercase.
pub fn connection_tokens(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && t != "close" && t != "keep-alive")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn te_trailers_is_recognized_among_other_codings() {
        let mut h = http::HeaderMap::new();
        assert!(!accepts_trailers(&h));
        h.append("te", "gzip;q=0.5, Trailers".parse().unwrap());
        assert!(accepts_trailers(&h));
        let mut h = http::HeaderMap::new();
        h.append("te", "gzip, x-trailers".parse().unwrap());
        assert!(!accepts_trailers(&h));
    }

    #[test]
    fn forwarding_values_follow_each_address_protocol_and_host() {
        let v4 = Some("10.49.0.5".parse().expect("ip"));
        let v6 = Some("2001:db8::7".parse().expect("ip"));
        let cases = [
            (
                v4,
                "https",
                "api.acme.example",
                "10.49.0.5",
                "for=10.49.0.5;proto=https;host=\"api.acme.example\"",
            ),
            // Each one differs from the one before in one part, so a kept value would show.
            (
                v4,
                "http",
                "api.acme.example",
                "10.49.0.5",
                "for=10.49.0.5;proto=http;host=\"api.acme.example\"",
            ),
            (
                v4,
                "http",
                "b.acme.example",
                "10.49.0.5",
                "for=10.49.0.5;proto=http;host=\"b.acme.example\"",
            ),
            (
                v6,
                "http",
                "b.acme.example",
                "2001:db8::7",
                "for=\"[2001:db8::7]\";proto=http;host=\"b.acme.example\"",
            ),
            (
                None,
                "http",
                "b.acme.example",
                "",
                "for=;proto=http;host=\"b.acme.example\"",
            ),
            (
                v4,
                "https",
                "api.acme.example",
                "10.49.0.5",
                "for=10.49.0.5;proto=https;host=\"api.acme.example\"",
            ),
        ];
        for (ip, proto, host, for_ip, forwarded) in cases {
            let (a, b) = forwarding_values(ip, proto, host).expect("values");
            assert_eq!(a, for_ip, "{ip:?} {proto} {host}");
            assert_eq!(b, forwarded, "{ip:?} {proto} {host}");
        }
    }

    #[test]
    fn responses_without_hop_by_hop_fields_keep_every_field() {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.insert_header("content-type", "text/plain").unwrap();
        r.insert_header("x-served-by", "local").unwrap();
        rewrite_response(&mut r, false);
        assert_eq!(r.headers.len(), 2);
        // A 101 to an upgrade the client asked for says so even when the upstream left it out.
        let mut r = ResponseHeader::build(101, None).unwrap();
        r.insert_header("upgrade", "websocket").unwrap();
        rewrite_response(&mut r, true);
        assert_eq!(
            r.headers.get("connection").map(|v| v.as_bytes()),
            Some(&b"upgrade"[..])
        );
    }

    #[test]
    fn connection_tokens_are_listed_lowercase() {
        let mut h = http::HeaderMap::new();
        h.append("connection", "close, X-Edgeward-Peer-Id".parse().unwrap());
        h.append("connection", "Foo".parse().unwrap());
        assert_eq!(connection_tokens(&h), ["x-edgeward-peer-id", "foo"]);
    }

    #[test]
    fn responses_lose_hop_by_hop_and_nominated_fields() {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.insert_header("connection", "x-secret").unwrap();
        r.insert_header("x-secret", "1").unwrap();
        r.insert_header("keep-alive", "timeout=5").unwrap();
        r.insert_header("content-length", "3").unwrap();
        rewrite_response(&mut r, false);
        assert!(r.headers.get("x-secret").is_none());
        assert!(r.headers.get("keep-alive").is_none());
        assert!(r.headers.get("connection").is_none());
        assert!(r.headers.get("content-length").is_some());
    }
}
