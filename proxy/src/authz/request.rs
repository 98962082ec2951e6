//! From request facts to a Cedar request: the one function the proxy and `edgeward policy
//! test/explain` share, so a decision shown by the tooling is the decision the proxy makes.
//!
//! The facts are plain values the proxy already has after canonicalizing the request and
//! matching the route; nothing here reads a socket or the clock.

use std::net::IpAddr;

use cedar_policy::{Context, Entities, EntityUid, Request, RestrictedExpression};
use edgeward_certs::SpiffeId;
use time::OffsetDateTime;

use super::load::PolicySnapshot;
use super::{entity_uid, ACTION_TYPE, METHODS, ROUTE_TYPE};

mod entities;

/// Header values in the context are cut at this many bytes.
pub const MAX_HEADER_VALUE: usize = 256;

/// The locality of the node that decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Locality {
    /// The node's site, e.g. `berlin`.
    pub site: String,
    /// The node's zone.
    pub zone: String,
    /// The node's region.
    pub region: String,
}

/// What the listener knows about the connection's TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFacts {
    /// `TLSv1.3`, `TLSv1.2`, or "" on plaintext.
    pub version: String,
    /// True when the peer presented a verified client certificate.
    pub mtls: bool,
    /// The negotiated ALPN protocol, or "".
    pub alpn: String,
}

/// Everything a decision depends on, already canonical: the host and path the route matched
/// and that go upstream, the verified identity, and the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFacts {
    /// The peer's verified SPIFFE ID; `None` without a client certificate (anonymous).
    pub identity: Option<SpiffeId>,
    /// The HTTP method, case-sensitive.
    pub method: String,
    /// The canonical host (lowercase, no trailing dot, no default port).
    pub host: String,
    /// The normalized path.
    pub path: String,
    /// The matched route's name.
    pub route: String,
    /// The matched route's service.
    pub service: String,
    /// The deciding node's locality.
    pub node: Locality,
    /// The peer address. An IPv4-mapped IPv6 address is seen by policies as IPv4.
    pub peer_ip: IpAddr,
    /// TLS facts of the connection.
    pub tls: TlsFacts,
    /// Now, in seconds since the Unix epoch.
    pub now_unix: i64,
    /// The headers the config lists for the context (see [`select_headers`]).
    pub headers: Vec<(String, String)>,
}

/// A request that cannot be turned into a Cedar request; it is denied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthzError {
    /// The method is not an action of the schema.
    #[error("method `{0}` is not one of GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE; denied without evaluation")]
    UnknownMethod(String),
    /// The clock is outside the range Cedar's time facts can hold.
    #[error("time {0} is out of range")]
    TimeOutOfRange(i64),
    /// Building the context or the entities failed.
    #[error("cannot build the request: {0}")]
    Build(String),
    /// The request does not conform to the schema.
    #[error("the request does not match the schema: {0}")]
    Schema(String),
}

/// Picks the context headers out of a request's headers: names are compared and kept in
/// lowercase, only names in `listed` (from config) are kept, values are cut at
/// [`MAX_HEADER_VALUE`] bytes.
pub fn select_headers<'h>(
    listed: &[String],
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
) -> Vec<(String, String)> {
    headers
        .into_iter()
        .filter(|(name, _)| listed.iter().any(|l| l.eq_ignore_ascii_case(name)))
        .map(|(name, value)| (name.to_ascii_lowercase(), truncate(value).to_owned()))
        .collect()
}

/// Turns request facts into a Cedar request, validated against the snapshot's schema, and the
/// entities it needs: the principal with its groups, the action with its group, the route and
/// its service (see [`entities`]).
pub fn build_request(
    snapshot: &PolicySnapshot,
    facts: &RequestFacts,
) -> Result<(Request, Entities), AuthzError> {
    // Action: only the methods of the schema.
    if !METHODS.iter().any(|(m, _)| *m == facts.method) {
        return Err(AuthzError::UnknownMethod(facts.method.clone()));
    }
    let action = entity_uid(ACTION_TYPE, &facts.method);
    let resource = entity_uid(ROUTE_TYPE, &facts.route);
    let (principal, entities) = entities::entities(snapshot, facts, &action, &resource)?;
    let context = context(facts)?;
    let request = conforming_request(snapshot, principal, action, resource, context)?;
    Ok((request, entities))
}

/// The request, checked against the schema. The context is built here with a fixed shape and
/// every field of a fixed type, so whether a request conforms depends only on its principal
/// type and action: the first request of each pair is validated in full and the answer kept
/// for the snapshot (validating every request cost as much as evaluating the policies).
fn conforming_request(
    snapshot: &PolicySnapshot,
    principal: EntityUid,
    action: EntityUid,
    resource: EntityUid,
    context: Context,
) -> Result<Request, AuthzError> {
    let key = (
        principal.type_name().to_string(),
        action.id().unescaped().to_owned(),
    );
    let known = snapshot
        .conforms
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .cloned();
    match known {
        Some(Ok(())) => Request::new(principal, action, resource, context, None)
            .map_err(|e| AuthzError::Build(e.to_string())),
        Some(Err(e)) => Err(AuthzError::Schema(e)),
        None => {
            let checked =
                Request::new(principal, action, resource, context, Some(&snapshot.schema))
                    .map_err(|e| e.to_string());
            snapshot
                .conforms
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, checked.as_ref().map(|_| ()).map_err(Clone::clone));
            checked.map_err(AuthzError::Schema)
        }
    }
}

/// The facts a context is made of: the node, the peer address, the connection's TLS, the
/// second and the listed headers.
#[derive(PartialEq, Eq)]
struct ContextFacts {
    node: Locality,
    peer_ip: IpAddr,
    tls: TlsFacts,
    now_unix: i64,
    headers: Vec<(String, String)>,
}

impl ContextFacts {
    fn matches(&self, facts: &RequestFacts) -> bool {
        self.now_unix == facts.now_unix
            && self.peer_ip == facts.peer_ip
            && self.tls == facts.tls
            && self.node == facts.node
            && self.headers == facts.headers
    }
}

/// The context for `facts`. Building one (Cedar evaluates each field's expression) costs about
/// a quarter of building a request; the context of the last request each thread decided is
/// kept and used again when its facts are the same, as they are for the requests of one
/// keep-alive connection within a second. A `Context` is shared, so the copy costs nothing.
fn context(facts: &RequestFacts) -> Result<Context, AuthzError> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(ContextFacts, Context)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((known, context)) = last.as_ref() {
            if known.matches(facts) {
                return Ok(context.clone());
            }
        }
        let context = build_context(facts)?;
        *last = Some((
            ContextFacts {
                node: facts.node.clone(),
                peer_ip: facts.peer_ip,
                tls: facts.tls.clone(),
                now_unix: facts.now_unix,
                headers: facts.headers.clone(),
            },
            context.clone(),
        ));
        Ok(context)
    })
}

fn build_context(facts: &RequestFacts) -> Result<Context, AuthzError> {
    let string = |s: &str| RestrictedExpression::new_string(s.to_owned());
    let record = |fields: Vec<(&str, RestrictedExpression)>| {
        RestrictedExpression::new_record(fields.into_iter().map(|(k, v)| (k.to_owned(), v)))
            .map_err(|e| AuthzError::Build(e.to_string()))
    };
    let now = OffsetDateTime::from_unix_timestamp(facts.now_unix)
        .map_err(|_| AuthzError::TimeOutOfRange(facts.now_unix))?;
    let tls = record(vec![
        ("version", string(&facts.tls.version)),
        ("mtls", RestrictedExpression::new_bool(facts.tls.mtls)),
        ("alpn", string(&facts.tls.alpn)),
    ])?;
    let time = record(vec![
        ("unix", RestrictedExpression::new_long(facts.now_unix)),
        (
            "hour",
            RestrictedExpression::new_long(i64::from(now.hour())),
        ),
        (
            "weekday",
            RestrictedExpression::new_long(i64::from(now.weekday().number_from_monday())),
        ),
    ])?;
    let headers = facts
        .headers
        .iter()
        .map(|(name, value)| {
            record(vec![
                ("name", string(&name.to_ascii_lowercase())),
                ("value", string(truncate(value))),
            ])
        })
        .collect::<Result<Vec<_>, _>>()?;
    Context::from_pairs([
        ("site".to_owned(), string(&facts.node.site)),
        ("zone".to_owned(), string(&facts.node.zone)),
        ("region".to_owned(), string(&facts.node.region)),
        (
            "peer_ip".to_owned(),
            ip_expression(facts.peer_ip.to_canonical()),
        ),
        ("tls".to_owned(), tls),
        ("time".to_owned(), time),
        ("headers".to_owned(), RestrictedExpression::new_set(headers)),
    ])
    .map_err(|e| AuthzError::Build(e.to_string()))
}

/// `ip("…")` for `addr`. Cedar's `new_ip` runs its parser on every call (to name the
/// extension); the expression of the last address each thread saw is kept, which is what a
/// connection's keep-alive requests ask for again.
fn ip_expression(addr: IpAddr) -> RestrictedExpression {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(IpAddr, RestrictedExpression)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match last.as_ref() {
            Some((a, e)) if *a == addr => e.clone(),
            _ => {
                let e = RestrictedExpression::new_ip(addr.to_string());
                *last = Some((addr, e.clone()));
                e
            }
        }
    })
}

/// Cuts `value` at [`MAX_HEADER_VALUE`] bytes, on a character boundary.
fn truncate(value: &str) -> &str {
    let mut end = value.len().min(MAX_HEADER_VALUE);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

#[cfg(test)]
mod tests;
