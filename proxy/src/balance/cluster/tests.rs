//! Tests that step a cluster through failover, ejection and balancing with a fake clock.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::Config;

/// A cluster seen from a node in site `berlin`, zone `eu-a`, region `eu`, with endpoints at
/// (site, zone, region).
fn cluster(balance: &str, health: bool, endpoints: &[(&str, &str, &str)]) -> Cluster {
    let mut text = format!(
        "[node]\nid = \"n\"\nsite = \"berlin\"\nzone = \"eu-a\"\nregion = \"eu\"\n\
         [authz]\npolicies = \"p\"\nschema = \"s\"\n\
         [[clusters]]\nname = \"c\"\nbalance = \"{balance}\"\n\
         [clusters.outlier]\nconsecutive_failures = 2\nbase_ejection = \"10s\"\nmax_ejection = \"40s\"\n"
    );
    if health {
        text.push_str(
            "[clusters.health]\npath = \"/healthz\"\nhealthy_threshold = 2\nunhealthy_threshold = 1\n",
        );
    }
    for (i, (site, zone, region)) in endpoints.iter().enumerate() {
        text.push_str(&format!(
            "[[clusters.endpoints]]\naddress = \"127.0.0.1:{}\"\nsite = \"{site}\"\nzone = \"{zone}\"\nregion = \"{region}\"\n",
            9000 + i
        ));
    }
    let config = Config::from_toml_str(&text, Path::new("t.toml")).expect("valid config");
    Cluster::new(&config.clusters[0], &config.node.locality)
}

fn pick_id(c: &Cluster, now: Instant) -> Option<usize> {
    c.pick(now, &[]).map(|p| p.endpoint.0)
}

const LOCAL: (&str, &str, &str) = ("berlin", "eu-a", "eu");
const ZONE: (&str, &str, &str) = ("potsdam", "eu-a", "eu");
const CLOUD: (&str, &str, &str) = ("cloud", "eu-b", "eu");

#[test]
fn fails_over_to_a_farther_tier_and_returns() {
    let c = cluster("round_robin", true, &[LOCAL, CLOUD]);
    let now = Instant::now();
    let first = c.pick(now, &[]).expect("pick");
    assert_eq!(
        (first.endpoint.0, first.tier, first.tier_change),
        (0, Tier::Site, None)
    );

    // The local endpoint fails its check: traffic fails over to the region, reported once.
    assert_eq!(
        c.report_check(EndpointId(0), false),
        Some(HealthTransition::BecameUnhealthy)
    );
    let over = c.pick(now, &[]).expect("pick");
    assert_eq!((over.endpoint.0, over.tier), (1, Tier::Region));
    let change = over.tier_change.expect("tier change");
    assert_eq!(
        (change.from, change.to, change.is_failover()),
        (Tier::Site, Tier::Region, true)
    );
    assert_eq!(c.pick(now, &[]).and_then(|p| p.tier_change), None);

    // Two passing checks bring it back, and the return is reported.
    assert_eq!(c.report_check(EndpointId(0), true), None);
    assert_eq!(c.pick(now, &[]).map(|p| p.tier), Some(Tier::Region));
    assert_eq!(
        c.report_check(EndpointId(0), true),
        Some(HealthTransition::BecameHealthy)
    );
    let back = c.pick(now, &[]).expect("pick");
    assert_eq!(back.endpoint.0, 0);
    let change = back.tier_change.expect("tier change");
    assert_eq!(
        (change.from, change.to, change.is_failover()),
        (Tier::Region, Tier::Site, false)
    );
}

#[test]
fn ejected_endpoint_is_never_picked_until_its_ejection_ends() {
    let c = cluster("round_robin", false, &[LOCAL, ZONE]);
    let t0 = Instant::now();
    assert_eq!(c.report_connect_failure(EndpointId(0), t0), None);
    let e = c.report_response(EndpointId(0), 502, t0).expect("ejected");
    assert_eq!(e.duration, Duration::from_secs(10));
    for _ in 0..5 {
        assert_eq!(pick_id(&c, t0 + Duration::from_secs(9)), Some(1));
    }
    assert_eq!(pick_id(&c, t0 + Duration::from_secs(10)), Some(0));

    // A second ejection lasts twice as long.
    let t1 = t0 + Duration::from_secs(10);
    assert_eq!(c.report_response(EndpointId(0), 500, t1), None);
    let e = c
        .report_connect_failure(EndpointId(0), t1)
        .expect("ejected");
    assert_eq!(e.duration, Duration::from_secs(20));
}

#[test]
fn success_between_failures_prevents_ejection() {
    let c = cluster("round_robin", false, &[LOCAL]);
    let now = Instant::now();
    for _ in 0..5 {
        assert_eq!(c.report_response(EndpointId(0), 503, now), None);
        assert_eq!(c.report_response(EndpointId(0), 404, now), None);
    }
    assert_eq!(pick_id(&c, now), Some(0));
}

#[test]
fn nothing_available_means_no_pick() {
    let c = cluster("least_outstanding", true, &[LOCAL, CLOUD]);
    let now = Instant::now();
    c.report_check(EndpointId(0), false);
    c.report_check(EndpointId(1), false);
    assert!(c.pick(now, &[]).is_none());
}

#[test]
fn exclude_moves_a_retry_without_reporting_a_failover() {
    let c = cluster("round_robin", false, &[LOCAL, CLOUD]);
    let now = Instant::now();
    assert_eq!(pick_id(&c, now), Some(0));
    let retry = c.pick(now, &[EndpointId(0)]).expect("pick");
    assert_eq!(
        (retry.endpoint.0, retry.tier, retry.tier_change),
        (1, Tier::Region, None)
    );
    assert!(c.pick(now, &[EndpointId(0), EndpointId(1)]).is_none());
}

#[test]
fn round_robin_is_fair_within_the_tier() {
    let c = cluster("round_robin", false, &[LOCAL, LOCAL, CLOUD, LOCAL]);
    let now = Instant::now();
    let mut counts = [0usize; 4];
    for _ in 0..300 {
        if let Some(i) = pick_id(&c, now) {
            counts[i] += 1;
        }
    }
    assert_eq!(counts, [100, 100, 0, 100]);
}

#[test]
fn least_outstanding_picks_the_least_busy_and_guards_release() {
    let c = cluster("least_outstanding", false, &[LOCAL, LOCAL, LOCAL]);
    let now = Instant::now();
    let a = c.pick(now, &[]).expect("pick");
    let b = c.pick(now, &[]).expect("pick");
    let mut busy = [a.endpoint.0, b.endpoint.0];
    busy.sort_unstable();
    let free = (0..3).find(|i| !busy.contains(i));
    assert_ne!(a.endpoint, b.endpoint);
    let third = c.pick(now, &[]).expect("pick");
    assert_eq!(Some(third.endpoint.0), free);
    assert_eq!(
        c.endpoint_status(third.endpoint, now),
        Some((Tier::Site, true, 1))
    );

    // Once the first request ends, its endpoint is the only idle one.
    let idle = a.endpoint;
    drop(a);
    assert_eq!(c.endpoint_status(idle, now), Some((Tier::Site, true, 0)));
    assert_eq!(c.pick(now, &[]).map(|p| p.endpoint), Some(idle));
}

#[test]
fn checks_are_ignored_without_active_health_checking() {
    let c = cluster("round_robin", false, &[LOCAL]);
    assert_eq!(c.report_check(EndpointId(0), false), None);
    assert_eq!(pick_id(&c, Instant::now()), Some(0));
    assert_eq!(c.report_check(EndpointId(7), false), None);
    assert_eq!(
        c.report_connect_failure(EndpointId(7), Instant::now()),
        None
    );
}
