//! One endpoint's health: active check results moved across thresholds, and passive outlier
//! detection that ejects with exponential backoff.

use std::time::{Duration, Instant};

use crate::config::{HealthCheck, Outlier};

/// A change of the active-check verdict, for the caller to log and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthTransition {
    /// Enough checks passed in a row.
    BecameHealthy,
    /// Enough checks failed in a row.
    BecameUnhealthy,
}

/// An ejection that just started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejection {
    /// How long the endpoint is out.
    pub duration: Duration,
    /// When it may be picked again.
    pub until: Instant,
    /// Ejections of this endpoint so far, this one included.
    pub times_ejected: u32,
}

/// The health of one endpoint. Endpoints start healthy, with or without active checks: the
/// first failed checks take an endpoint down, so a restart does not wait for checks to pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthState {
    unhealthy: bool,
    checks_passed: u32,
    checks_failed: u32,
    consecutive_failures: u32,
    times_ejected: u32,
    ejected_until: Option<Instant>,
}

impl HealthState {
    /// Whether the endpoint may be picked at `now`: healthy by active checks and not ejected.
    pub fn is_available(&self, now: Instant) -> bool {
        !self.unhealthy && !self.is_ejected(now)
    }

    /// Whether an ejection is still running at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|until| now < until)
    }

    /// Whether active checks hold the endpoint healthy.
    pub fn is_healthy(&self) -> bool {
        !self.unhealthy
    }

    /// Records an active check result against the thresholds.
    pub fn record_check(&mut self, ok: bool, check: &HealthCheck) -> Option<HealthTransition> {
        if ok {
            self.checks_failed = 0;
            self.checks_passed = self.checks_passed.saturating_add(1);
            if self.unhealthy && self.checks_passed >= check.healthy_threshold.get() {
                self.unhealthy = false;
                return Some(HealthTransition::BecameHealthy);
            }
        } else {
            self.checks_passed = 0;
            self.checks_failed = self.checks_failed.saturating_add(1);
            if !self.unhealthy && self.checks_failed >= check.unhealthy_threshold.get() {
                self.unhealthy = true;
                return Some(HealthTransition::BecameUnhealthy);
            }
        }
        None
    }

    /// Records a connect failure or a 5xx. After `consecutive_failures` in a row the endpoint
    /// is ejected for `base_ejection * 2^(times_ejected - 1)`, at most `max_ejection`.
    pub fn record_failure(&mut self, now: Instant, outlier: &Outlier) -> Option<Ejection> {
        if self.is_ejected(now) {
            // Late results of requests sent before the ejection do not extend it.
            return None;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.consecutive_failures < outlier.consecutive_failures.get() {
            return None;
        }
        self.consecutive_failures = 0;
        self.times_ejected = self.times_ejected.saturating_add(1);
        let duration = ejection_length(self.times_ejected, outlier);
        let until = now + duration;
        self.ejected_until = Some(until);
        Some(Ejection {
            duration,
            until,
            times_ejected: self.times_ejected,
        })
    }

    /// Records a successful response: the consecutive failure count starts again. Once the
    /// endpoint has served well for `max_ejection` after its last ejection ended, the backoff
    /// starts again from `base_ejection`, so old incidents do not weigh forever.
    pub fn record_success(&mut self, now: Instant, outlier: &Outlier) {
        self.consecutive_failures = 0;
        if let Some(until) = self.ejected_until {
            if now >= until + outlier.max_ejection {
                self.times_ejected = 0;
                self.ejected_until = None;
            }
        }
    }
}

fn ejection_length(times_ejected: u32, outlier: &Outlier) -> Duration {
    let exponent = times_ejected.saturating_sub(1).min(31);
    outlier
        .base_ejection
        .checked_mul(1u32 << exponent)
        .map_or(outlier.max_ejection, |d| d.min(outlier.max_ejection))
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
    }

    fn check(healthy: u32, unhealthy: u32) -> HealthCheck {
        HealthCheck {
            path: "/healthz".into(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            healthy_threshold: nz(healthy),
            unhealthy_threshold: nz(unhealthy),
        }
    }

    #[test]
    fn checks_move_health_by_thresholds() {
        let c = check(2, 3);
        let mut h = HealthState::default();
        assert!(h.is_healthy());
        assert_eq!(h.record_check(false, &c), None);
        assert_eq!(h.record_check(false, &c), None);
        assert_eq!(h.record_check(true, &c), None);
        assert_eq!(h.record_check(false, &c), None);
        assert_eq!(h.record_check(false, &c), None);
        assert_eq!(
            h.record_check(false, &c),
            Some(HealthTransition::BecameUnhealthy)
        );
        assert!(!h.is_available(Instant::now()));
        assert_eq!(h.record_check(true, &c), None);
        assert_eq!(
            h.record_check(true, &c),
            Some(HealthTransition::BecameHealthy)
        );
        assert_eq!(h.record_check(true, &c), None);
    }

    #[test]
    fn ejections_back_off_exponentially_up_to_the_cap() {
        let o = Outlier {
            consecutive_failures: nz(2),
            base_ejection: Duration::from_secs(5),
            max_ejection: Duration::from_secs(12),
        };
        let mut h = HealthState::default();
        let mut now = Instant::now();
        let mut lengths = Vec::new();
        for _ in 0..3 {
            assert_eq!(h.record_failure(now, &o), None);
            let e = h.record_failure(now, &o).expect("ejected");
            assert!(!h.is_available(now));
            assert!(h.is_available(e.until));
            assert_eq!(
                h.record_failure(now, &o),
                None,
                "no extension while ejected"
            );
            lengths.push(e.duration.as_secs());
            now = e.until;
        }
        assert_eq!(lengths, vec![5, 10, 12]);
    }

    #[test]
    fn success_resets_the_consecutive_count() {
        let o = Outlier::default();
        let mut h = HealthState::default();
        let now = Instant::now();
        assert_eq!(h.record_failure(now, &o), None);
        assert_eq!(h.record_failure(now, &o), None);
        h.record_success(now, &o);
        assert_eq!(h.record_failure(now, &o), None);
        assert_eq!(h.record_failure(now, &o), None);
        assert!(h.record_failure(now, &o).is_some());
    }

    #[test]
    fn backoff_restarts_after_a_long_good_run() {
        let o = Outlier {
            consecutive_failures: nz(1),
            base_ejection: Duration::from_secs(5),
            max_ejection: Duration::from_secs(60),
        };
        let mut h = HealthState::default();
        let t0 = Instant::now();
        let first = h.record_failure(t0, &o).expect("ejected");
        h.record_success(first.until + Duration::from_secs(60), &o);
        let again = h
            .record_failure(first.until + Duration::from_secs(61), &o)
            .expect("ejected");
        assert_eq!(again.duration, Duration::from_secs(5));
    }
}
