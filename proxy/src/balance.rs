//! Locality-aware endpoint choice, health and outlier state, and retry eligibility.
//!
//! Every decision here is pure: it takes `now` as an argument and reads no clock, so tests
//! step through failover, ejection and recovery without sleeping. The I/O around it (health
//! check requests, upstream connects) reports results back through `Cluster`.

mod cluster;
mod health;
mod retry;
mod tier;

pub use cluster::{Cluster, EndpointId, OutstandingGuard, Pick, TierChange};
pub use health::{Ejection, HealthState, HealthTransition};
pub use retry::{is_idempotent, retry_allowed, FailureKind};
pub use tier::{select_tier, Tier};
