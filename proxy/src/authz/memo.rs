//! Decisions remembered per policy snapshot.
//!
//! A decision is a pure function of the policy snapshot and the request facts: the same facts
//! under the same snapshot always get the same answer. Building a Cedar request (entities,
//! their transitive closure, the context) costs several times what evaluating the policies
//! does, and a keep-alive client asks the same question again and again, so the answer is kept
//! and reused when every fact it depended on is equal.
//!
//! Exactness comes from the key: every fact of [`RequestFacts`] is in it, except the time and
//! the context headers when no policy of the snapshot reads them (`context.time`,
//! `context.headers`; see [`ContextReads`]). A policy that reads `context` whole counts as
//! reading both. The memo lives in the snapshot, so a policy reload starts an empty one.
//!
//! It is bounded by `[authz] decision_memo` (default 4096 decisions): when full it is emptied
//! and fills again; 0 turns it off. Lookups allocate nothing; only a miss stores a copy of the
//! facts.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use cedar_policy::PolicySet;
use foldhash::fast::RandomState;
use serde_json::Value;

use super::decide::Decision;
use super::request::RequestFacts;

/// Which per-request parts of the context any policy of a snapshot reads. The others are left
/// out of the memo key, since they cannot change a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextReads {
    /// `context.time` (changes every second).
    pub time: bool,
    /// `context.headers` (may change with every request).
    pub headers: bool,
}

impl ContextReads {
    /// Reads everything: the safe answer when a policy cannot be inspected.
    pub const ALL: Self = Self {
        time: true,
        headers: true,
    };

    /// What the policies of `set` read, from their JSON form. A policy that cannot be turned
    /// into JSON counts as reading everything.
    pub fn of(set: &PolicySet) -> Self {
        let mut reads = Self {
            time: false,
            headers: false,
        };
        // `to_json` parses the policy text again, so it is only asked of policies whose text
        // names `context` at all, and not once everything is known to be read.
        for policy in set.policies() {
            if reads == Self::ALL {
                return reads;
            }
            if policy
                .to_cedar()
                .is_some_and(|text| !text.contains("context"))
            {
                continue;
            }
            match policy.to_json() {
                Ok(json) => reads.visit(&json),
                Err(_) => return Self::ALL,
            }
        }
        for template in set.templates() {
            match template.to_json() {
                Ok(json) => reads.visit(&json),
                Err(_) => return Self::ALL,
            }
        }
        reads
    }

    /// Walks a policy's JSON (Cedar's EST). Every use of the `context` variable is either an
    /// attribute access or test (`.`, `has`) naming one field, or it reads the whole record.
    fn visit(&mut self, v: &Value) {
        match v {
            Value::Object(map) => {
                if map.get("Var").and_then(Value::as_str) == Some("context") {
                    *self = Self::ALL;
                    return;
                }
                for op in [".", "has"] {
                    if let Some(access) = map.get(op) {
                        if is_context(access.get("left")) {
                            match access.get("attr").and_then(Value::as_str) {
                                Some("time") => self.time = true,
                                Some("headers") => self.headers = true,
                                Some(_) => {}
                                None => *self = Self::ALL,
                            }
                            return;
                        }
                    }
                }
                map.values().for_each(|child| self.visit(child));
            }
            Value::Array(items) => items.iter().for_each(|child| self.visit(child)),
            _ => {}
        }
    }
}

fn is_context(v: Option<&Value>) -> bool {
    v.and_then(|v| v.get("Var"))
        .and_then(Value::as_str)
        .is_some_and(|name| name == "context")
}

/// The remembered decisions of one snapshot.
#[derive(Debug)]
pub struct DecisionMemo {
    reads: ContextReads,
    hasher: RandomState,
    /// Keyed by the facts' hash, so the map itself hashes a `u64`, with the same cheap hasher.
    map: Mutex<HashMap<u64, Entry, RandomState>>,
}

#[derive(Debug)]
struct Entry {
    facts: RequestFacts,
    decision: Arc<Decision>,
}

impl DecisionMemo {
    /// An empty memo for a snapshot whose policies read `reads`.
    pub fn new(reads: ContextReads) -> Self {
        Self {
            reads,
            hasher: RandomState::default(),
            map: Mutex::new(HashMap::default()),
        }
    }

    /// What the snapshot's policies read of the context.
    pub fn reads(&self) -> ContextReads {
        self.reads
    }

    /// The decision remembered for facts equal to `facts` in every part that counts.
    pub fn get(&self, facts: &RequestFacts) -> Option<Arc<Decision>> {
        let key = self.key(facts);
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&key)
            .filter(|e| same(&e.facts, facts, self.reads))
            .map(|e| e.decision.clone())
    }

    /// Remembers `decision` for `facts`, replacing what had the same key; with `capacity`
    /// decisions kept already, the memo is emptied first.
    pub fn put(&self, facts: &RequestFacts, decision: Arc<Decision>, capacity: usize) {
        if capacity == 0 {
            return;
        }
        let key = self.key(facts);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= capacity && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(
            key,
            Entry {
                facts: facts.clone(),
                decision,
            },
        );
    }

    /// How many decisions are kept.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn key(&self, f: &RequestFacts) -> u64 {
        let mut h = self.hasher.build_hasher();
        f.identity.hash(&mut h);
        f.method.hash(&mut h);
        f.host.hash(&mut h);
        f.path.hash(&mut h);
        f.route.hash(&mut h);
        f.service.hash(&mut h);
        f.node.site.hash(&mut h);
        f.node.zone.hash(&mut h);
        f.node.region.hash(&mut h);
        f.peer_ip.to_canonical().hash(&mut h);
        f.tls.version.hash(&mut h);
        f.tls.mtls.hash(&mut h);
        f.tls.alpn.hash(&mut h);
        if self.reads.time {
            f.now_unix.hash(&mut h);
        }
        if self.reads.headers {
            f.headers.hash(&mut h);
        }
        h.finish()
    }
}

/// Equal in every fact the decision can depend on.
fn same(a: &RequestFacts, b: &RequestFacts, reads: ContextReads) -> bool {
    a.identity == b.identity
        && a.method == b.method
        && a.host == b.host
        && a.path == b.path
        && a.route == b.route
        && a.service == b.service
        && a.node == b.node
        && a.peer_ip.to_canonical() == b.peer_ip.to_canonical()
        && a.tls == b.tls
        && (!reads.time || a.now_unix == b.now_unix)
        && (!reads.headers || a.headers == b.headers)
}

#[cfg(test)]
mod tests;
