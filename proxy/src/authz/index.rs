//! The policy index: a request only evaluates the policies whose scope can match it.
//!
//! Every request has one concrete action (a method), one principal of one of three types
//! (device, workload or anonymous) and one resource (a route inside its service). A policy is
//! filed under each method its action scope can match and each principal type its principal
//! scope can match (`principal is Device`, `principal == Workload::"…"`, `principal in
//! Group::"g"` for the types the schema lets be members of a group), and under its route or
//! service when its resource scope names exactly one (`resource == Route::"r"`, `resource in
//! Service::"s"`, `resource is Route in Service::"s"`); everything else is generic for that
//! method and principal type. A request then evaluates at most three small sets: the generic
//! one of its method and principal type and those of its route and service. The decision is
//! the same as evaluating the whole set (a test compares both on generated policies), because
//! a policy left out can neither be satisfied nor error: Cedar checks the scope before the
//! conditions.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    ActionConstraint, Entities, EntityTypeName, EntityUid, Policy, PolicySet, PrincipalConstraint,
    ResourceConstraint, Schema,
};

use super::{
    entity_uid, ACTION_TYPE, ANONYMOUS_TYPE, DEVICE_TYPE, METHODS, ROUTE_TYPE, SERVICE_TYPE,
    WORKLOAD_TYPE,
};

/// The principal types a request can have (see `principal.rs`).
const PRINCIPAL_TYPES: [&str; 3] = [DEVICE_TYPE, WORKLOAD_TYPE, ANONYMOUS_TYPE];

/// (method, principal type).
type Key = (&'static str, &'static str);

/// Policies grouped by method and principal type, and by route or service within those.
#[derive(Debug, Default)]
pub struct PolicyIndex {
    generic: HashMap<Key, PolicySet>,
    by_route: HashMap<(Key, String), PolicySet>,
    by_service: HashMap<(Key, String), PolicySet>,
}

/// The resource part of an index key.
enum ResourceKey {
    Generic,
    Route(String),
    Service(String),
}

impl PolicyIndex {
    /// Files every policy of `policies`; `actions` are the schema's action entities, which say
    /// which group each method is in, and `schema` says which entity types a principal of
    /// each type can be a member of.
    pub fn build(policies: &PolicySet, actions: &Entities, schema: &Schema) -> Self {
        let mut index = Self::default();
        let method_ancestors: Vec<(&'static str, HashSet<EntityUid>)> = METHODS
            .iter()
            .map(|(method, _)| {
                let uid = entity_uid(ACTION_TYPE, method);
                let mut set: HashSet<EntityUid> = actions
                    .ancestors(&uid)
                    .into_iter()
                    .flatten()
                    .cloned()
                    .collect();
                set.insert(uid);
                (*method, set)
            })
            .collect();
        for policy in policies.policies() {
            let resource = resource_key(policy);
            let principals = principal_types(policy, schema);
            for (method, ancestors) in &method_ancestors {
                if !action_may_match(policy, ancestors) {
                    continue;
                }
                for principal in &principals {
                    let key = (*method, *principal);
                    let set = match &resource {
                        ResourceKey::Generic => index.generic.entry(key).or_default(),
                        ResourceKey::Route(r) => {
                            index.by_route.entry((key, r.clone())).or_default()
                        }
                        ResourceKey::Service(s) => {
                            index.by_service.entry((key, s.clone())).or_default()
                        }
                    };
                    // Ids are unique in the source set, so adding cannot fail; a failure would
                    // only drop the policy from this key, which the equality test would catch.
                    let _ = set.add(policy.clone());
                }
            }
        }
        index
    }

    /// The sets a request with this method, principal type (`Edgeward::Device`, ...), route
    /// and service must evaluate.
    pub fn candidates<'a>(
        &'a self,
        method: &str,
        principal_type: &str,
        route: &str,
        service: &str,
    ) -> Vec<&'a PolicySet> {
        let mut sets = Vec::with_capacity(3);
        let Some((method, _)) = METHODS.iter().find(|(m, _)| *m == method) else {
            return sets;
        };
        let Some(principal) = PRINCIPAL_TYPES.iter().find(|t| **t == principal_type) else {
            return sets;
        };
        let key = (*method, *principal);
        sets.extend(self.generic.get(&key));
        sets.extend(self.by_route.get(&(key, route.to_owned())));
        sets.extend(self.by_service.get(&(key, service.to_owned())));
        sets
    }
}

/// The principal types of [`PRINCIPAL_TYPES`] the policy's principal scope can match: `==` its
/// entity's type, `is` its type, `in` an entity of type U the types that are U or that the
/// schema lets be members of U (directly or through groups).
fn principal_types(policy: &Policy, schema: &Schema) -> Vec<&'static str> {
    let is = |ty: &str, other: &EntityTypeName| other.to_string() == ty;
    let may_be_in = |ty: &str, group: &EntityTypeName| {
        is(ty, group)
            || EntityTypeName::from_str(ty).ok().is_some_and(|name| {
                schema
                    .ancestors(&name)
                    .is_some_and(|mut ancestors| ancestors.any(|a| a == group))
            })
    };
    let constraint = policy.principal_constraint();
    PRINCIPAL_TYPES
        .into_iter()
        .filter(|ty| match &constraint {
            PrincipalConstraint::Any => true,
            PrincipalConstraint::Eq(uid) => is(ty, uid.type_name()),
            PrincipalConstraint::Is(t) => is(ty, t),
            PrincipalConstraint::In(uid) => may_be_in(ty, uid.type_name()),
            PrincipalConstraint::IsIn(t, uid) => is(ty, t) && may_be_in(ty, uid.type_name()),
        })
        .collect()
}

/// True when the policy's action scope can match a request whose action is `ancestors`' first
/// member: `==` is equality, `in` also matches the action's groups.
fn action_may_match(policy: &Policy, ancestors: &HashSet<EntityUid>) -> bool {
    match policy.action_constraint() {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(uid) => ancestors.iter().any(|a| *a == uid && is_method(a)),
        ActionConstraint::In(uids) => uids.iter().any(|uid| ancestors.contains(uid)),
    }
}

fn is_method(uid: &EntityUid) -> bool {
    METHODS.iter().any(|(m, _)| uid.id().unescaped() == *m)
        && uid.type_name().to_string() == ACTION_TYPE
}

/// The single route or service a resource scope names, if any. Routes have only their service
/// as parent, so `in Route::"r"` means `== Route::"r"`.
fn resource_key(policy: &Policy) -> ResourceKey {
    let named = |uid: &EntityUid| {
        let ty = uid.type_name().to_string();
        let id = uid.id().unescaped().to_owned();
        if ty == ROUTE_TYPE {
            ResourceKey::Route(id)
        } else if ty == SERVICE_TYPE {
            ResourceKey::Service(id)
        } else {
            ResourceKey::Generic
        }
    };
    match policy.resource_constraint() {
        ResourceConstraint::Eq(uid) | ResourceConstraint::In(uid) => named(&uid),
        ResourceConstraint::IsIn(ty, uid) if ty.to_string() == ROUTE_TYPE => named(&uid),
        _ => ResourceKey::Generic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::testkit;

    fn index_of(policies: &str) -> PolicyIndex {
        let snapshot = testkit::snapshot(&[("p.cedar", policies)], None);
        PolicyIndex::build(&snapshot.policies, &snapshot.actions, &snapshot.schema)
    }

    fn count(index: &PolicyIndex, method: &str, route: &str, service: &str) -> usize {
        count_for(index, method, DEVICE_TYPE, route, service)
    }

    fn count_for(
        index: &PolicyIndex,
        method: &str,
        principal: &str,
        route: &str,
        service: &str,
    ) -> usize {
        index
            .candidates(method, principal, route, service)
            .iter()
            .map(|s| s.num_of_policies())
            .sum()
    }

    #[test]
    fn principal_scopes_only_reach_the_types_they_can_match() {
        let index = index_of(
            r#"permit (principal, action, resource);
               permit (principal is Edgeward::Device, action, resource);
               permit (principal == Edgeward::Workload::"spiffe://acme.example/w", action, resource);
               permit (principal in Edgeward::Group::"operators", action, resource);
               permit (principal is Edgeward::Workload in Edgeward::Group::"operators", action, resource);
               permit (principal is Edgeward::Anonymous, action, resource);"#,
        );
        // Any; is Device; in a group (devices may be members).
        assert_eq!(count_for(&index, "GET", DEVICE_TYPE, "r", "s"), 3);
        // Any; ==; in a group; is Workload in the group.
        assert_eq!(count_for(&index, "GET", WORKLOAD_TYPE, "r", "s"), 4);
        // Any; is Anonymous: the schema puts anonymous in no group.
        assert_eq!(count_for(&index, "GET", ANONYMOUS_TYPE, "r", "s"), 2);
        assert_eq!(count_for(&index, "GET", "Edgeward::Robot", "r", "s"), 0);
    }

    #[test]
    fn action_groups_file_under_their_methods() {
        let index = index_of(
            r#"permit (principal, action in Edgeward::Action::"read", resource);
               permit (principal, action == Edgeward::Action::"POST", resource);"#,
        );
        assert_eq!(count(&index, "GET", "r", "s"), 1);
        assert_eq!(count(&index, "OPTIONS", "r", "s"), 1);
        assert_eq!(count(&index, "POST", "r", "s"), 1);
        assert_eq!(count(&index, "DELETE", "r", "s"), 0);
        assert_eq!(count(&index, "BREW", "r", "s"), 0);
    }

    #[test]
    fn route_and_service_scopes_only_reach_their_requests() {
        let index = index_of(
            r#"permit (principal, action, resource == Edgeward::Route::"ingest");
               permit (principal, action, resource in Edgeward::Service::"api");
               permit (principal, action, resource is Edgeward::Route in Edgeward::Service::"db");
               permit (principal, action, resource);"#,
        );
        assert_eq!(count(&index, "GET", "ingest", "x"), 2);
        assert_eq!(count(&index, "GET", "other", "api"), 2);
        assert_eq!(count(&index, "GET", "other", "db"), 2);
        assert_eq!(count(&index, "GET", "other", "x"), 1);
    }

    #[test]
    fn thousands_of_route_policies_leave_a_request_a_handful() {
        let text: String = (0..2_000)
            .map(|i| {
                format!(
                    "permit (principal, action in Edgeward::Action::\"read\", resource == Edgeward::Route::\"r{}\") when {{ context.site == \"s{i}\" }};\n",
                    i % 400
                )
            })
            .collect();
        let index = index_of(&text);
        assert_eq!(count(&index, "GET", "r7", "svc"), 5);
        assert_eq!(count(&index, "POST", "r7", "svc"), 0);
    }
}
