//! The policy index: a request only evaluates the policies whose scope can match it.
//!
//! Every request has one concrete action (a method) and one resource (a route inside its
//! service). A policy is filed under each method its action scope can match, and under its
//! route or service when its resource scope names exactly one (`resource == Route::"r"`,
//! `resource in Service::"s"`, `resource is Route in Service::"s"`); everything else is
//! generic for that method. A request then evaluates at most three small sets: the generic one
//! of its method and those of its route and service. The decision is the same as evaluating
//! the whole set (a test compares both on generated policies), because a policy left out can
//! neither be satisfied nor error: Cedar checks the scope before the conditions.

use std::collections::{HashMap, HashSet};

use cedar_policy::{ActionConstraint, Entities, EntityUid, Policy, PolicySet, ResourceConstraint};

use super::{entity_uid, ACTION_TYPE, METHODS, ROUTE_TYPE, SERVICE_TYPE};

/// Policies grouped by method, and by route or service within a method.
#[derive(Debug, Default)]
pub struct PolicyIndex {
    generic: HashMap<&'static str, PolicySet>,
    by_route: HashMap<(&'static str, String), PolicySet>,
    by_service: HashMap<(&'static str, String), PolicySet>,
}

/// The resource part of an index key.
enum ResourceKey {
    Generic,
    Route(String),
    Service(String),
}

impl PolicyIndex {
    /// Files every policy of `policies`; `actions` are the schema's action entities, which say
    /// which group each method is in.
    pub fn build(policies: &PolicySet, actions: &Entities) -> Self {
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
            let key = resource_key(policy);
            for (method, ancestors) in &method_ancestors {
                if !action_may_match(policy, ancestors) {
                    continue;
                }
                let set = match &key {
                    ResourceKey::Generic => index.generic.entry(method).or_default(),
                    ResourceKey::Route(r) => index.by_route.entry((method, r.clone())).or_default(),
                    ResourceKey::Service(s) => {
                        index.by_service.entry((method, s.clone())).or_default()
                    }
                };
                // Ids are unique in the source set, so adding cannot fail; a failure would only
                // drop the policy from this key, which the equality test would catch.
                let _ = set.add(policy.clone());
            }
        }
        index
    }

    /// The sets a request with this method, route and service must evaluate.
    pub fn candidates<'a>(
        &'a self,
        method: &str,
        route: &str,
        service: &str,
    ) -> Vec<&'a PolicySet> {
        let mut sets = Vec::with_capacity(3);
        let Some((method, _)) = METHODS.iter().find(|(m, _)| *m == method) else {
            return sets;
        };
        sets.extend(self.generic.get(method));
        sets.extend(self.by_route.get(&(*method, route.to_owned())));
        sets.extend(self.by_service.get(&(*method, service.to_owned())));
        sets
    }
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
        PolicyIndex::build(&snapshot.policies, &snapshot.actions)
    }

    fn count(index: &PolicyIndex, method: &str, route: &str, service: &str) -> usize {
        index
            .candidates(method, route, service)
            .iter()
            .map(|s| s.num_of_policies())
            .sum()
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
