//! Authorization: every request is decided by Cedar policies, on the node, before it goes
//! upstream.
//!
//! The model (see `policies/schema.cedarschema` and `policies/README.md`): the principal is the
//! peer's verified SPIFFE identity (`Edgeward::Device` or `Edgeward::Workload`, or
//! `Edgeward::Anonymous` without a client certificate), the action is the HTTP method (in the
//! `read` and `write` groups), the resource is the matched `Edgeward::Route` in its
//! `Edgeward::Service`, and the context holds the node's locality, the peer address, TLS facts,
//! the time and selected headers.
//!
//! The parts, in the order a request meets them:
//! - [`load`]: reads the schema, the `*.cedar` files and the entities file into an immutable
//!   [`PolicySnapshot`], refusing the whole set on any error ([`PolicyStore`] swaps snapshots);
//! - [`request`]: [`build_request`], the one function that turns [`RequestFacts`] into a Cedar
//!   request and its entities, shared by the proxy and `edgeward policy test/explain`;
//! - [`index`]: groups policies by action and route/service so a request only evaluates the
//!   policies that can apply;
//! - [`decide`]: [`Authorizer::decide`], default deny, and any evaluation error denies;
//! - [`memo`]: the decisions of a snapshot, kept for requests whose facts are the same.

use std::fmt;
use std::path::PathBuf;

use cedar_policy::{EntityId, EntityTypeName, EntityUid};

pub mod decide;
pub mod entities_dups;
pub mod facts;
pub mod index;
pub mod lint;
pub mod load;
pub mod memo;
pub mod principal;
pub mod request;

#[cfg(test)]
mod testkit;

pub use decide::{Authorizer, Decision};
pub use load::{AuthzLoadError, LoadProblem, PolicySnapshot, PolicyStore};
pub use principal::{DerivedPrincipal, PrincipalKind};
pub use request::{build_request, select_headers, AuthzError, Locality, RequestFacts, TlsFacts};

/// Entity type of device identities.
pub const DEVICE_TYPE: &str = "Edgeward::Device";
/// Entity type of all other SPIFFE identities.
pub const WORKLOAD_TYPE: &str = "Edgeward::Workload";
/// Entity type of requests without a client certificate.
pub const ANONYMOUS_TYPE: &str = "Edgeward::Anonymous";
/// The one id of the anonymous principal.
pub const ANONYMOUS_ID: &str = "anonymous";
/// Entity type of groups, from the entities file.
pub const GROUP_TYPE: &str = "Edgeward::Group";
/// Entity type of matched routes (id = route name).
pub const ROUTE_TYPE: &str = "Edgeward::Route";
/// Entity type of upstream services (id = the route's service).
pub const SERVICE_TYPE: &str = "Edgeward::Service";
/// Entity type of actions.
pub const ACTION_TYPE: &str = "Edgeward::Action";

/// The HTTP methods that are actions, with their group. Any other method is denied without
/// evaluation. Methods are case-sensitive (RFC 9110, section 9.1): `get` is not `GET`.
pub const METHODS: [(&str, &str); 7] = [
    ("GET", "read"),
    ("HEAD", "read"),
    ("OPTIONS", "read"),
    ("POST", "write"),
    ("PUT", "write"),
    ("PATCH", "write"),
    ("DELETE", "write"),
];

/// Where a policy comes from: its id, file and line, as the access log and `policy explain`
/// show it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyRef {
    /// The `@id("...")` annotation, or `<file stem>:<index>` (index from 0 within the file).
    pub id: String,
    /// The `.cedar` file that holds the policy.
    pub file: PathBuf,
    /// The line (from 1) where the policy starts, annotations included.
    pub line: usize,
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}:{})", self.id, self.file.display(), self.line)
    }
}

/// Every entity type of the schema that the proxy names.
const ENTITY_TYPES: [&str; 7] = [
    DEVICE_TYPE,
    WORKLOAD_TYPE,
    ANONYMOUS_TYPE,
    GROUP_TYPE,
    ROUTE_TYPE,
    SERVICE_TYPE,
    ACTION_TYPE,
];

/// Builds a uid of one of this crate's entity types (the `*_TYPE` constants).
pub(crate) fn entity_uid(type_name: &'static str, id: &str) -> EntityUid {
    // Only the constants above reach here (a test parses each of them), so the parse cannot
    // fail on request data.
    // Parsed once: Cedar's name parser is far too slow for every request.
    static TYPES: std::sync::LazyLock<Vec<(&'static str, EntityTypeName)>> =
        std::sync::LazyLock::new(|| {
            ENTITY_TYPES
                .into_iter()
                .map(|t| {
                    #[allow(clippy::expect_used)]
                    let parsed = t
                        .parse::<EntityTypeName>()
                        .expect("entity type constants are valid Cedar names");
                    (t, parsed)
                })
                .collect()
        });
    let ty = match TYPES.iter().find(|(t, _)| *t == type_name) {
        Some((_, parsed)) => parsed.clone(),
        #[allow(clippy::expect_used)]
        None => type_name
            .parse::<EntityTypeName>()
            .expect("entity type constants are valid Cedar names"),
    };
    EntityUid::from_type_name_and_id(ty, EntityId::new(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_type_constants_are_valid_cedar_names() {
        for ty in ENTITY_TYPES {
            assert!(ty.parse::<EntityTypeName>().is_ok(), "{ty}");
            assert_eq!(entity_uid(ty, "x").type_name().to_string(), ty);
        }
    }

    #[test]
    fn policy_ref_displays_id_file_and_line() {
        let r = PolicyRef {
            id: "p".into(),
            file: "policies/a.cedar".into(),
            line: 3,
        };
        assert_eq!(r.to_string(), "p (policies/a.cedar:3)");
    }
}
