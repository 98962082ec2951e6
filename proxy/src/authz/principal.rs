//! The principal of a request: how a verified SPIFFE ID (or its absence) becomes a Cedar entity.
//!
//! A path with a `device` segment followed by a name is an `Edgeward::Device`, any other ID an
//! `Edgeward::Workload`; no certificate is `Edgeward::Anonymous::"anonymous"`. The attributes
//! `trust_domain`, `path`, `site` and `name` are always derived from the ID, never taken from
//! the entities file (see `policies/schema.cedarschema`).

use std::collections::{HashMap, HashSet};

use cedar_policy::{Entity, EntityUid, RestrictedExpression};
use edgeward_certs::SpiffeId;

use super::{entity_uid, ANONYMOUS_ID, ANONYMOUS_TYPE, DEVICE_TYPE, WORKLOAD_TYPE};

/// The attribute names the proxy derives from the SPIFFE ID; the entities file may not set them
/// to other values.
pub const DERIVED_ATTRS: [&str; 4] = ["trust_domain", "path", "site", "name"];

/// Which principal type an identity maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A path with a `device` segment followed by a name.
    Device,
    /// Any other SPIFFE ID.
    Workload,
}

impl PrincipalKind {
    /// The kind of a verified SPIFFE ID: a device when a `device` segment is followed by a
    /// non-empty one.
    pub fn of(id: &SpiffeId) -> Self {
        let mut after_device = false;
        for segment in id.segments() {
            if after_device && !segment.is_empty() {
                return Self::Device;
            }
            after_device = segment == "device";
        }
        Self::Workload
    }

    /// The principal type of a request with this identity (`None`: anonymous).
    pub fn type_of(identity: Option<&SpiffeId>) -> &'static str {
        identity.map_or(ANONYMOUS_TYPE, |id| Self::of(id).type_name())
    }

    /// The Cedar entity type name of this kind.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::Device => DEVICE_TYPE,
            Self::Workload => WORKLOAD_TYPE,
        }
    }
}

/// The facts derived from a SPIFFE ID, before they become Cedar values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedPrincipal {
    /// Device or workload.
    pub kind: PrincipalKind,
    /// The full SPIFFE ID, the entity id.
    pub id: String,
    /// The trust domain, e.g. `acme.example`.
    pub trust_domain: String,
    /// The path, starting with `/`.
    pub path: String,
    /// The segment after a `site` segment, or "" when there is none.
    pub site: String,
    /// The last path segment.
    pub name: String,
}

impl DerivedPrincipal {
    /// Derives the principal facts of a verified SPIFFE ID.
    pub fn from_spiffe(id: &SpiffeId) -> Self {
        let segments: Vec<&str> = id.segments().collect();
        let after = |label: &str| {
            segments
                .windows(2)
                .find(|pair| pair[0] == label && !pair[1].is_empty())
                .map(|pair| pair[1])
        };
        Self {
            kind: PrincipalKind::of(id),
            id: id.to_string(),
            trust_domain: id.trust_domain().as_str().to_owned(),
            path: id.path().to_owned(),
            site: after("site").unwrap_or_default().to_owned(),
            name: segments.last().copied().unwrap_or_default().to_owned(),
        }
    }

    /// The derived attributes as (name, value) pairs, in `DERIVED_ATTRS` order.
    pub fn attrs(&self) -> [(&'static str, &str); 4] {
        [
            ("trust_domain", &self.trust_domain),
            ("path", &self.path),
            ("site", &self.site),
            ("name", &self.name),
        ]
    }

    /// The Cedar uid of this principal.
    pub fn uid(&self) -> EntityUid {
        entity_uid(self.kind.type_name(), &self.id)
    }

    /// The Cedar entity, with the derived attributes and the given parents (groups).
    pub fn entity(&self, parents: HashSet<EntityUid>) -> Result<Entity, String> {
        let attrs: HashMap<String, RestrictedExpression> = self
            .attrs()
            .iter()
            .map(|(k, v)| {
                (
                    (*k).to_owned(),
                    RestrictedExpression::new_string((*v).to_owned()),
                )
            })
            .collect();
        Entity::new(self.uid(), attrs, parents).map_err(|e| e.to_string())
    }
}

/// The uid of the anonymous principal.
pub fn anonymous_uid() -> EntityUid {
    entity_uid(ANONYMOUS_TYPE, ANONYMOUS_ID)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn derive(id: &str) -> DerivedPrincipal {
        DerivedPrincipal::from_spiffe(&SpiffeId::parse(id).expect("valid test id"))
    }

    #[test]
    fn device_segment_followed_by_name_is_a_device() {
        let p = derive("spiffe://acme.example/site/berlin/device/cam-7");
        assert_eq!(p.kind, PrincipalKind::Device);
        assert_eq!(p.trust_domain, "acme.example");
        assert_eq!(p.path, "/site/berlin/device/cam-7");
        assert_eq!(p.site, "berlin");
        assert_eq!(p.name, "cam-7");
        assert_eq!(p.id, "spiffe://acme.example/site/berlin/device/cam-7");
        assert_eq!(p.uid().to_string(), format!("{DEVICE_TYPE}::\"{}\"", p.id));
    }

    #[test]
    fn services_and_operators_are_workloads() {
        let svc = derive("spiffe://acme.example/site/berlin/service/api");
        assert_eq!(svc.kind, PrincipalKind::Workload);
        assert_eq!((svc.site.as_str(), svc.name.as_str()), ("berlin", "api"));
        let op = derive("spiffe://acme.example/ops/operator/alice");
        assert_eq!(op.kind, PrincipalKind::Workload);
        assert_eq!((op.site.as_str(), op.name.as_str()), ("", "alice"));
    }

    #[test]
    fn trailing_device_segment_without_name_is_a_workload() {
        let p = derive("spiffe://acme.example/site/berlin/device");
        assert_eq!(p.kind, PrincipalKind::Workload);
        assert_eq!(p.name, "device");
    }

    #[test]
    fn anonymous_has_fixed_uid() {
        assert_eq!(
            anonymous_uid().to_string(),
            "Edgeward::Anonymous::\"anonymous\""
        );
    }
}
