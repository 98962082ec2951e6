//! The cost of canonicalizing a request's path and host, done once per request before routing
//! and authorization.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use edgeward_proxy::request::{canonicalize_host, canonicalize_path};

/// A typical API path, already canonical.
const PLAIN: &str = "/api/v1/sites/berlin/devices/cam-7/readings?since=1718000000&limit=100";

/// Dot segments, repeated slashes, and escapes: unreserved ones to decode (`%7E`, `%2D`),
/// lower-case hex to upper-case (`%c3%a9`), a dot segment hidden in escapes (`%2e%2e`).
const MESSY: &str = "/api/./v1//sites/%62erlin/../berlin/devices/cam%2D7/%2e%2e/cam-7/\
                     readings/%7Ealice/caf%c3%a9/./?since=1718000000";

fn bench_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("canonicalize_path");
    assert_eq!(
        canonicalize_path(PLAIN, false).expect("plain path").path,
        "/api/v1/sites/berlin/devices/cam-7/readings"
    );
    assert_eq!(
        canonicalize_path(MESSY, false).expect("messy path").path,
        "/api/v1/sites/berlin/devices/cam-7/readings/~alice/caf%C3%A9/"
    );
    group.bench_function("plain", |b| {
        b.iter(|| canonicalize_path(black_box(PLAIN), false))
    });
    group.bench_function("dots_and_escapes", |b| {
        b.iter(|| canonicalize_path(black_box(MESSY), false))
    });
    group.finish();
}

fn bench_host(c: &mut Criterion) {
    let mut group = c.benchmark_group("canonicalize_host");
    let canonical = canonicalize_host("api.berlin.acme.example", true).expect("plain host");
    assert_eq!(canonical.hostname(), "api.berlin.acme.example");
    let messy = canonicalize_host("API.Berlin.ACME.example.:443", true).expect("messy host");
    assert_eq!(messy.hostname(), "api.berlin.acme.example");
    assert_eq!(messy.port(), None);
    group.bench_function("plain", |b| {
        b.iter(|| canonicalize_host(black_box("api.berlin.acme.example"), true))
    });
    group.bench_function("upper_dot_default_port", |b| {
        b.iter(|| canonicalize_host(black_box("API.Berlin.ACME.example.:443"), true))
    });
    group.bench_function("ipv6_port", |b| {
        b.iter(|| canonicalize_host(black_box("[2001:DB8::1]:8443"), true))
    });
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
    targets = bench_path, bench_host
}
criterion_main!(benches);
