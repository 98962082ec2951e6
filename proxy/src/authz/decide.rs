//! The decision: Cedar's answer, made stricter.
//!
//! Cedar skips a policy whose evaluation errors and decides with the rest, so a forbid that
//! errors could let a permit through. Here any evaluation error denies, whatever matched. With
//! no policy satisfied, or no policies at all, the request is denied (default deny).

use std::sync::Arc;

use cedar_policy::{Decision as CedarDecision, Entities, PolicyId, PolicySet, Request, Response};

use super::load::PolicySnapshot;
use super::request::{build_request, RequestFacts};
use super::{PolicyRef, PrincipalKind};

/// The outcome for one request, with what decided it, for the access log and `policy explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// True only when a permit was satisfied, no forbid was, and nothing errored.
    pub allowed: bool,
    /// What decided: the satisfied permits on allow; the satisfied forbids on a forbid; the
    /// policies that errored on an error; empty on default deny. Sorted by file and line.
    pub reasons: Vec<PolicyRef>,
    /// Evaluation errors, and why a request could not be evaluated at all.
    pub errors: Vec<String>,
}

impl Decision {
    fn deny_with_error(error: String) -> Self {
        Self {
            allowed: false,
            reasons: Vec::new(),
            errors: vec![error],
        }
    }
}

/// Decides requests against a [`PolicySnapshot`].
#[derive(Debug, Default)]
pub struct Authorizer {
    cedar: cedar_policy::Authorizer,
}

impl Authorizer {
    /// A new authorizer; it holds no state between requests.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decides one request: builds it with [`build_request`] and evaluates the policies the
    /// index selects. A request that cannot be built (an unknown method, say) is denied with
    /// the reason in `errors`.
    pub fn decide(&self, snapshot: &PolicySnapshot, facts: &RequestFacts) -> Decision {
        match build_request(snapshot, facts) {
            Ok((request, entities)) => {
                let sets = snapshot.index.candidates(
                    &facts.method,
                    PrincipalKind::type_of(facts.identity.as_ref()),
                    &facts.route,
                    &facts.service,
                );
                self.evaluate(snapshot, &sets, &request, &entities)
            }
            Err(e) => Decision::deny_with_error(e.to_string()),
        }
    }

    /// [`Authorizer::decide`], answered from the snapshot's memo when a request with the same
    /// facts (in every part the policies can read) was decided before: what the proxy calls
    /// for every request. The memo keeps at most `capacity` decisions (0: none). The answer is
    /// shared, not copied.
    pub fn decide_memoized(
        &self,
        snapshot: &PolicySnapshot,
        facts: &RequestFacts,
        capacity: usize,
    ) -> Arc<Decision> {
        if capacity > 0 {
            if let Some(known) = snapshot.memo.get(facts) {
                return known;
            }
        }
        let decision = Arc::new(self.decide(snapshot, facts));
        snapshot.memo.put(facts, decision.clone(), capacity);
        decision
    }

    /// Decides an already built request against every policy, without the index: the
    /// reference the indexed [`Authorizer::decide`] is checked against.
    pub fn decide_unindexed(
        &self,
        snapshot: &PolicySnapshot,
        request: &Request,
        entities: &Entities,
    ) -> Decision {
        self.evaluate(snapshot, &[&snapshot.policies], request, entities)
    }

    /// Evaluates each set and combines the answers as one set would: forbid wins over permit;
    /// then, stricter than Cedar, any error denies.
    fn evaluate(
        &self,
        snapshot: &PolicySnapshot,
        sets: &[&PolicySet],
        request: &Request,
        entities: &Entities,
    ) -> Decision {
        let mut permits: Vec<PolicyId> = Vec::new();
        let mut forbids: Vec<PolicyId> = Vec::new();
        let mut errored: Vec<PolicyId> = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        for set in sets {
            let response: Response = self.cedar.is_authorized(request, set, entities);
            let reasons = response.diagnostics().reason().cloned();
            // A deny with reasons is a satisfied forbid; a deny without is "no permit".
            match response.decision() {
                CedarDecision::Allow => permits.extend(reasons),
                CedarDecision::Deny => forbids.extend(reasons),
            }
            for error in response.diagnostics().errors() {
                let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = error;
                errored.push(e.policy_id().clone());
                errors.push(error.to_string());
            }
        }
        errors.sort();

        let (allowed, deciding) = if !forbids.is_empty() {
            (false, forbids)
        } else if !errored.is_empty() {
            (false, errored)
        } else if !permits.is_empty() {
            (true, permits)
        } else {
            (false, Vec::new())
        };
        let mut reasons: Vec<PolicyRef> = deciding
            .iter()
            .map(|id| {
                snapshot
                    .policy_ref(id)
                    .cloned()
                    .unwrap_or_else(|| PolicyRef {
                        id: id.to_string(),
                        file: Default::default(),
                        line: 0,
                    })
            })
            .collect();
        reasons.sort_by(|a, b| (&a.file, a.line, &a.id).cmp(&(&b.file, b.line, &b.id)));
        reasons.dedup();
        Decision {
            allowed,
            reasons,
            errors,
        }
    }
}

#[cfg(test)]
mod starter_tests;
#[cfg(test)]
mod tests;
