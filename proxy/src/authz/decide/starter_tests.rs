//! The starter policies of `policies/`: each pattern permits what its comment says, and no more.

use crate::authz::testkit::{self, facts};
use crate::authz::{Authorizer, Decision, RequestFacts};

const SENSOR: &str = "spiffe://acme.example/site/berlin/device/sensor-1";
const CAM: &str = "spiffe://acme.example/site/berlin/device/cam-7";
const MUNICH_CAM: &str = "spiffe://acme.example/site/munich/device/cam-1";
const ALICE: &str = "spiffe://acme.example/site/berlin/operator/alice";
const DASHBOARD: &str = "spiffe://acme.example/site/berlin/service/dashboard";

fn decide(request: &RequestFacts) -> Decision {
    Authorizer::new().decide(&testkit::starter(), request)
}

fn on_route(identity: &str, method: &str, route: &str, path: &str) -> RequestFacts {
    let mut request = facts(Some(identity), method, path);
    request.route = route.into();
    request.service = route.into();
    request
}

fn ids(decision: &Decision) -> Vec<&str> {
    decision.reasons.iter().map(|r| r.id.as_str()).collect()
}

#[test]
fn devices_send_to_their_own_sites_ingest_route_only() {
    let cam = decide(&on_route(CAM, "POST", "ingest", "/v1/readings"));
    assert!(cam.allowed);
    assert_eq!(ids(&cam), ["device-ingest-own-site"]);
    assert!(!decide(&on_route(CAM, "GET", "ingest", "/v1/readings")).allowed);
    assert!(!decide(&on_route(CAM, "POST", "api", "/v1/readings")).allowed);
    assert!(!decide(&on_route(MUNICH_CAM, "POST", "ingest", "/v1/readings")).allowed);
}

#[test]
fn readers_read_the_api_service_on_their_site() {
    assert!(decide(&on_route(DASHBOARD, "GET", "api", "/orders")).allowed);
    assert!(!decide(&on_route(DASHBOARD, "POST", "api", "/orders")).allowed);
    assert!(!decide(&on_route(DASHBOARD, "GET", "billing", "/orders")).allowed);
    let mut munich_node = on_route(DASHBOARD, "GET", "api", "/orders");
    munich_node.node.site = "munich".into();
    assert!(!decide(&munich_node).allowed);
}

#[test]
fn operators_reach_admin_only_from_the_site_network_or_loopback() {
    let mut request = on_route(ALICE, "PUT", "admin", "/admin/config");
    for (ip, allowed) in [
        ("10.49.3.4", true),
        ("127.0.0.1", true),
        ("::1", true),
        ("192.168.1.5", false),
        ("10.50.0.1", false),
    ] {
        request.peer_ip = ip.parse().expect("ip");
        assert_eq!(decide(&request).allowed, allowed, "{ip}");
    }
    request.peer_ip = "127.0.0.1".parse().expect("ip");
    request.tls.mtls = false;
    assert!(
        !decide(&request).allowed,
        "admin needs a client certificate"
    );
}

#[test]
fn no_device_reaches_admin_whatever_permits_exist() {
    for path in ["/admin", "/admin/users"] {
        let decision = decide(&on_route(SENSOR, "GET", "admin", path));
        assert!(!decision.allowed, "{path}");
        assert_eq!(ids(&decision), ["baseline-no-device-admin"]);
    }
}

#[test]
fn quickstart_identities() {
    // sensor-1: anything but /admin, on its own site.
    assert!(decide(&on_route(SENSOR, "GET", "api", "/status")).allowed);
    assert!(decide(&on_route(SENSOR, "DELETE", "api", "/items/1")).allowed);
    assert!(!decide(&on_route(SENSOR, "GET", "api", "/admin")).allowed);
    // alice: anything, /admin included from loopback.
    let mut admin = on_route(ALICE, "GET", "admin", "/admin");
    admin.peer_ip = "127.0.0.1".parse().expect("ip");
    assert!(decide(&admin).allowed);
    assert!(decide(&on_route(ALICE, "POST", "api", "/anything")).allowed);
    // Others: nothing.
    assert!(!decide(&on_route(CAM, "GET", "api", "/status")).allowed);
    assert!(!decide(&facts(None, "GET", "/status")).allowed);
}
