//! The cost of one authorization decision, by the size of the policy set.
//!
//! A policy set of N policies is generated into a temporary folder with the schema the proxy
//! ships (`policies/schema.cedarschema`): a few generic policies (a forbid and permits whose
//! resource scope names no single route) and N minus those, each scoped to one route, the shape
//! a site with many routes has. Loading and validation happen once, before measuring; each
//! iteration is one [`Authorizer::decide`]: build the Cedar request from the facts, select the
//! policies through the index, evaluate. `decide_unindexed` at 1 000 builds the same request and
//! evaluates the whole set instead, for comparison.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use edgeward_certs::SpiffeId;
use edgeward_proxy::authz::{
    build_request, Authorizer, Locality, PolicySnapshot, RequestFacts, TlsFacts,
};

/// The schema the proxy ships.
const SCHEMA: &str = include_str!("../../policies/schema.cedarschema");

/// Policy set sizes, as issue 3 asks.
const SIZES: [usize; 3] = [10, 1_000, 10_000];

/// The policies that apply to every route (their resource scope names no single route).
const GENERIC: &str = r#"
@id("baseline-no-device-admin")
forbid (principal is Edgeward::Device, action, resource)
when { resource.path == "/admin" || resource.path like "/admin/*" };

@id("operators-admin-site-network")
permit (principal in Edgeward::Group::"operators", action, resource)
when {
  (resource.path == "/admin" || resource.path like "/admin/*") &&
  principal.site == context.site &&
  context.tls.mtls &&
  (context.peer_ip.isLoopback() || context.peer_ip.isInRange(ip("10.49.0.0/16")))
};

@id("readers-read-api")
permit (
  principal in Edgeward::Group::"readers",
  action in Edgeward::Action::"read",
  resource in Edgeward::Service::"api"
)
when { principal.site == context.site };

@id("no-anonymous-writes")
forbid (principal is Edgeward::Anonymous, action in Edgeward::Action::"write", resource);

@id("health-for-all")
permit (principal, action == Edgeward::Action::"GET", resource)
when { resource.path == "/healthz" };
"#;

/// Number of policies in [`GENERIC`].
const GENERIC_COUNT: usize = 5;

/// At most this many policies per generated file.
const PER_FILE: usize = 1_000;

const ENTITIES: &str = r#"[
  { "uid": { "type": "Edgeward::Group", "id": "operators" }, "attrs": {}, "parents": [] },
  { "uid": { "type": "Edgeward::Group", "id": "readers" }, "attrs": {}, "parents": [] },
  {
    "uid": { "type": "Edgeward::Workload", "id": "spiffe://acme.example/site/berlin/operator/alice" },
    "attrs": {},
    "parents": [{ "type": "Edgeward::Group", "id": "operators" }]
  }
]"#;

/// One route-scoped policy for route `r{i}`: even routes let devices of the node's site read,
/// odd routes let operators write.
fn route_policy(out: &mut String, i: usize) {
    let (principal, action) = if i.is_multiple_of(2) {
        (
            "principal is Edgeward::Device",
            r#"action in Edgeward::Action::"read""#,
        )
    } else {
        (
            r#"principal in Edgeward::Group::"operators""#,
            r#"action in Edgeward::Action::"write""#,
        )
    };
    let _ = write!(
        out,
        "@id(\"route-r{i}\")\npermit ({principal}, {action}, resource == Edgeward::Route::\"r{i}\")\n\
         when {{ principal.site == context.site && context.tls.mtls }};\n\n"
    );
}

/// Writes a set of `total` policies (the generic ones included), the schema and the entities
/// file into `dir`, and loads it.
fn load_set(dir: &Path, total: usize) -> PolicySnapshot {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).expect("policies dir");
    std::fs::write(policies.join("00-generic.cedar"), GENERIC).expect("generic policies");
    let routes = total.saturating_sub(GENERIC_COUNT);
    for (file, start) in (0..routes).step_by(PER_FILE).enumerate() {
        let mut text = String::new();
        for i in start..routes.min(start + PER_FILE) {
            route_policy(&mut text, i);
        }
        std::fs::write(policies.join(format!("routes-{file:03}.cedar")), text)
            .expect("route policies");
    }
    let schema = dir.join("schema.cedarschema");
    std::fs::write(&schema, SCHEMA).expect("schema");
    let entities = dir.join("entities.json");
    std::fs::write(&entities, ENTITIES).expect("entities");
    let snapshot = PolicySnapshot::load(&policies, &schema, Some(&entities))
        .unwrap_or_else(|e| panic!("generated policy set of {total} refused: {e}"));
    assert_eq!(snapshot.policy_count(), total, "generated policy count");
    snapshot
}

/// A device of the node's site reading `/readings/42` on route `route`, over mTLS.
fn device_get(route: &str) -> RequestFacts {
    RequestFacts {
        identity: Some(
            SpiffeId::parse("spiffe://acme.example/site/berlin/device/sensor-1").expect("valid id"),
        ),
        method: "GET".to_owned(),
        host: "api.acme.example".to_owned(),
        path: "/readings/42".to_owned(),
        route: route.to_owned(),
        service: "api".to_owned(),
        node: Locality {
            site: "berlin".to_owned(),
            zone: "berlin-a".to_owned(),
            region: "eu-central".to_owned(),
        },
        peer_ip: "10.49.0.5".parse().expect("ip"),
        tls: TlsFacts {
            version: "TLSv1.3".to_owned(),
            mtls: true,
            alpn: "h2".to_owned(),
        },
        now_unix: 1_718_000_000,
        headers: Vec::new(),
    }
}

/// The route the measured request goes to: an even one in the middle of the generated set,
/// so the permit that allows it is one of many. With 10 policies it is `r2`.
fn target_route(total: usize) -> String {
    let routes = total.saturating_sub(GENERIC_COUNT);
    format!("r{}", (routes / 2) & !1)
}

fn bench_decide(c: &mut Criterion) {
    let authorizer = Authorizer::new();
    let mut group = c.benchmark_group("authz_decide");
    for total in SIZES {
        let tmp = tempfile::tempdir().expect("temp dir");
        let snapshot = load_set(tmp.path(), total);
        let facts = device_get(&target_route(total));
        let decision = authorizer.decide(&snapshot, &facts);
        assert!(
            decision.allowed,
            "the measured request is allowed: {decision:?}"
        );

        group.bench_with_input(BenchmarkId::new("allow", total), &facts, |b, facts| {
            b.iter(|| authorizer.decide(black_box(&snapshot), black_box(facts)))
        });

        // Default deny: a route no policy names, so only the generic set is evaluated.
        let unnamed = device_get("unnamed");
        assert!(!authorizer.decide(&snapshot, &unnamed).allowed);
        group.bench_with_input(BenchmarkId::new("deny", total), &unnamed, |b, facts| {
            b.iter(|| authorizer.decide(black_box(&snapshot), black_box(facts)))
        });
    }
    group.finish();
}

fn bench_unindexed(c: &mut Criterion) {
    let authorizer = Authorizer::new();
    let total = 1_000;
    let tmp = tempfile::tempdir().expect("temp dir");
    let snapshot = load_set(tmp.path(), total);
    let facts = device_get(&target_route(total));
    let (request, entities) = build_request(&snapshot, &facts).expect("request builds");
    let decision = authorizer.decide_unindexed(&snapshot, &request, &entities);
    assert!(decision.allowed, "unindexed agrees: {decision:?}");

    // Building the request is inside the loop, as it is inside `decide`, so the two compare.
    let mut group = c.benchmark_group("authz_decide_unindexed");
    group.bench_with_input(BenchmarkId::new("allow", total), &facts, |b, facts| {
        b.iter(|| {
            let (request, entities) =
                build_request(black_box(&snapshot), black_box(facts)).expect("request builds");
            authorizer.decide_unindexed(&snapshot, &request, &entities)
        })
    });
    group.finish();
}

/// What each thread's kept entities save (see `authz::request::entities`), at 1 000 policies:
/// the same request again (all entities kept), a new path each time (only the route is built
/// again), a new client each time (every entity is built again).
fn bench_kept_entities(c: &mut Criterion) {
    let authorizer = Authorizer::new();
    let total = 1_000;
    let tmp = tempfile::tempdir().expect("temp dir");
    let snapshot = load_set(tmp.path(), total);
    let facts = device_get(&target_route(total));
    let mut other_path = facts.clone();
    other_path.path = "/readings/43".to_owned();
    let mut other_client = facts.clone();
    other_client.identity = Some(
        SpiffeId::parse("spiffe://acme.example/site/berlin/device/sensor-2").expect("valid id"),
    );
    for f in [&facts, &other_path, &other_client] {
        let decision = authorizer.decide(&snapshot, f);
        assert!(decision.allowed, "{decision:?}");
    }

    let mut group = c.benchmark_group("authz_kept_entities");
    for (name, other) in [
        ("same_request", &facts),
        ("new_path", &other_path),
        ("new_client", &other_client),
    ] {
        group.bench_function(BenchmarkId::new(name, total), |b| {
            let mut flip = false;
            b.iter(|| {
                flip = !flip;
                let f = if flip { &facts } else { other };
                authorizer.decide(black_box(&snapshot), black_box(f))
            })
        });
    }
    group.finish();
}

/// Short runs: the whole suite fits in a few minutes on two cores.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_decide, bench_unindexed, bench_kept_entities
}
criterion_main!(benches);
