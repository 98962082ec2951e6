//! The entities of a Cedar request: the principal with its groups, the action with its group,
//! and the route in its service.
//!
//! Building them, with Cedar's transitive closure of their ancestors, cost more than
//! evaluating the policies. All of them but the route depend only on who asks, with which
//! method, on which route of which service, under which policy snapshot; each thread keeps
//! those of the last request it decided. A request with the same ones adds only its route
//! (which carries the host and path) to a copy, and one with the same host and path too (a
//! keep-alive client asking again while the memo cannot answer, because a policy reads the
//! time or a header) takes the whole set again. Copies share the entities themselves.

use std::cell::RefCell;
use std::collections::HashSet;

use cedar_policy::{Entities, Entity, EntityUid, RestrictedExpression};
use edgeward_certs::SpiffeId;

use super::{AuthzError, RequestFacts};
use crate::authz::load::PolicySnapshot;
use crate::authz::principal::{anonymous_uid, DerivedPrincipal};
use crate::authz::{entity_uid, SERVICE_TYPE};

/// What the kept entities other than the route were built from.
#[derive(PartialEq, Eq)]
struct Asker {
    snapshot: u64,
    identity: Option<SpiffeId>,
    method: String,
    route: String,
    service: String,
}

impl Asker {
    fn of(snapshot: &PolicySnapshot, facts: &RequestFacts) -> Self {
        Self {
            snapshot: snapshot.generation,
            identity: facts.identity.clone(),
            method: facts.method.clone(),
            route: facts.route.clone(),
            service: facts.service.clone(),
        }
    }

    fn matches(&self, snapshot: &PolicySnapshot, facts: &RequestFacts) -> bool {
        self.snapshot == snapshot.generation
            && self.identity == facts.identity
            && self.method == facts.method
            && self.route == facts.route
            && self.service == facts.service
    }
}

/// One thread's entities of the last request it decided.
struct Kept {
    asker: Asker,
    principal: EntityUid,
    /// Every entity but the route.
    base: Entities,
    host: String,
    path: String,
    /// `base` and the route with `host` and `path`.
    all: Entities,
}

/// The principal's uid and every entity the request needs. `action` and `resource` are the
/// request's action and route uids.
pub(super) fn entities(
    snapshot: &PolicySnapshot,
    facts: &RequestFacts,
    action: &EntityUid,
    resource: &EntityUid,
) -> Result<(EntityUid, Entities), AuthzError> {
    thread_local! {
        static LAST: RefCell<Option<Kept>> = const { RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some(kept) = last
            .as_mut()
            .filter(|kept| kept.asker.matches(snapshot, facts))
        {
            if kept.host != facts.host || kept.path != facts.path {
                // Replaced only once the new set is built: an error keeps the old one whole.
                kept.all = with_route(&kept.base, facts, resource)?;
                kept.host.clone_from(&facts.host);
                kept.path.clone_from(&facts.path);
            }
            return Ok((kept.principal.clone(), kept.all.clone()));
        }
        let (principal, base) = without_route(snapshot, facts, action)?;
        let all = with_route(&base, facts, resource)?;
        *last = Some(Kept {
            asker: Asker::of(snapshot, facts),
            principal: principal.clone(),
            base,
            host: facts.host.clone(),
            path: facts.path.clone(),
            all: all.clone(),
        });
        Ok((principal, all))
    })
}

/// The principal (derived from the SPIFFE ID, or as the entities file lists it) with its
/// groups, the action with its group, and the route's service.
fn without_route(
    snapshot: &PolicySnapshot,
    facts: &RequestFacts,
    action: &EntityUid,
) -> Result<(EntityUid, Entities), AuthzError> {
    let (principal, entity) = match &facts.identity {
        // No attributes and no groups (the schema gives it none).
        None => {
            let uid = anonymous_uid();
            (uid.clone(), Entity::new_no_attrs(uid, HashSet::new()))
        }
        Some(id) => {
            let derived = DerivedPrincipal::from_spiffe(id);
            let uid = derived.uid();
            let entity = match snapshot.entities.get(&uid) {
                // Listed in the file: its derived attributes were checked against the ID at load.
                Some(listed) => listed.clone(),
                None => derived.entity(HashSet::new()).map_err(AuthzError::Build)?,
            };
            (uid, entity)
        }
    };
    let ancestors = |store: &Entities, uid: &EntityUid| -> Vec<Entity> {
        store
            .ancestors(uid)
            .into_iter()
            .flatten()
            .filter_map(|a| store.get(a).cloned())
            .collect()
    };
    let mut entities = vec![entity];
    entities.extend(ancestors(&snapshot.entities, &principal));
    if let Some(entity) = snapshot.actions.get(action) {
        entities.push(entity.clone());
    }
    entities.extend(ancestors(&snapshot.actions, action));
    entities.push(Entity::new_no_attrs(
        entity_uid(SERVICE_TYPE, &facts.service),
        HashSet::new(),
    ));
    let entities =
        Entities::from_entities(entities, None).map_err(|e| AuthzError::Build(e.to_string()))?;
    Ok((principal, entities))
}

/// `base` and the route, with the request's host and path, in its service.
fn with_route(
    base: &Entities,
    facts: &RequestFacts,
    resource: &EntityUid,
) -> Result<Entities, AuthzError> {
    let route = Entity::new(
        resource.clone(),
        [
            (
                "host".to_owned(),
                RestrictedExpression::new_string(facts.host.clone()),
            ),
            (
                "path".to_owned(),
                RestrictedExpression::new_string(facts.path.clone()),
            ),
        ]
        .into(),
        HashSet::from([entity_uid(SERVICE_TYPE, &facts.service)]),
    )
    .map_err(|e| AuthzError::Build(e.to_string()))?;
    base.clone()
        .add_entities([route], None)
        .map_err(|e| AuthzError::Build(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::testkit::{self, facts};
    use crate::authz::{Authorizer, ACTION_TYPE, ROUTE_TYPE};

    const CAM: &str = "spiffe://acme.example/site/berlin/device/cam-7";
    const ALICE: &str = "spiffe://acme.example/site/berlin/operator/alice";

    /// The entities of `facts` built from nothing kept.
    fn fresh(snapshot: &PolicySnapshot, facts: &RequestFacts) -> Entities {
        let action = entity_uid(ACTION_TYPE, &facts.method);
        let (_, base) = without_route(snapshot, facts, &action).expect("base");
        with_route(&base, facts, &entity_uid(ROUTE_TYPE, &facts.route)).expect("route")
    }

    fn kept(snapshot: &PolicySnapshot, facts: &RequestFacts) -> Entities {
        let action = entity_uid(ACTION_TYPE, &facts.method);
        let resource = entity_uid(ROUTE_TYPE, &facts.route);
        entities(snapshot, facts, &action, &resource)
            .expect("entities")
            .1
    }

    #[test]
    fn kept_entities_are_never_used_for_other_facts() {
        let snapshot = testkit::starter();
        let base = facts(Some(CAM), "GET", "/");
        let changes: [fn(&mut RequestFacts); 7] = [
            |f| f.identity = Some(SpiffeId::parse(ALICE).expect("id")),
            |f| f.identity = None,
            |f| f.method = "POST".into(),
            |f| f.route = "admin".into(),
            |f| f.service = "billing".into(),
            |f| f.host = "other.acme.example".into(),
            |f| f.path = "/admin".into(),
        ];
        // Cedar's `==` on entities compares uids only; `deep_eq` compares attributes too.
        let same = |a: &Entities, b: &Entities| a.deep_eq(b);
        for (i, change) in changes.into_iter().enumerate() {
            assert!(
                same(&kept(&snapshot, &base), &fresh(&snapshot, &base)),
                "change {i}"
            );
            let mut changed = base.clone();
            change(&mut changed);
            let second = kept(&snapshot, &changed);
            assert!(same(&second, &fresh(&snapshot, &changed)), "change {i}");
            assert!(!same(&second, &fresh(&snapshot, &base)), "change {i}");
            // And back: the first facts get their own entities again.
            assert!(
                same(&kept(&snapshot, &base), &fresh(&snapshot, &base)),
                "change {i}"
            );
        }
    }

    #[test]
    fn a_new_snapshot_is_not_answered_with_the_old_ones_entities() {
        // The same principal is an operator under the first entities file and not under the
        // second: a decision after the reload must see the second.
        let policy = r#"permit (principal in Edgeward::Group::"operators", action, resource);"#;
        let listed = |groups: &str| {
            format!(
                r#"[{{ "uid": {{ "type": "Edgeward::Group", "id": "operators" }}, "attrs": {{}}, "parents": [] }},
                   {{ "uid": {{ "type": "Edgeward::Workload", "id": "{ALICE}" }}, "attrs": {{}}, "parents": [{groups}] }}]"#
            )
        };
        let before = testkit::snapshot(
            &[("ops.cedar", policy)],
            Some(&listed(
                r#"{ "type": "Edgeward::Group", "id": "operators" }"#,
            )),
        );
        let after = testkit::snapshot(&[("ops.cedar", policy)], Some(&listed("")));
        let request = facts(Some(ALICE), "GET", "/");
        let authorizer = Authorizer::new();
        assert!(authorizer.decide(&before, &request).allowed);
        assert!(!authorizer.decide(&after, &request).allowed);
        assert!(authorizer.decide(&before, &request).allowed);
    }

    #[test]
    fn the_route_follows_each_requests_path() {
        let policy =
            r#"permit (principal, action, resource) unless { resource.path like "/admin*" };"#;
        let snapshot = testkit::snapshot(&[("paths.cedar", policy)], None);
        let authorizer = Authorizer::new();
        for (path, allowed) in [
            ("/", true),
            ("/admin/x", false),
            ("/y", true),
            ("/admin", false),
        ] {
            let decision = authorizer.decide(&snapshot, &facts(Some(CAM), "GET", path));
            assert_eq!(decision.allowed, allowed, "{path}");
        }
    }
}
