//! Tests of config parsing and validation.

use std::path::Path;
use std::time::Duration;

use super::*;

const FULL: &str = r#"
[node]
id = "berlin-gw-1"
site = "berlin"
zone = "eu-central-a"
region = "eu-central"
data_dir = "state"

[identity]
cert = "certs/proxy.crt"
key = "/etc/edgeward/proxy.key"

[[trust_domains]]
name = "acme.example"
bundle = "certs/root.crt"
crls = ["certs/site.crl"]

[[listeners]]
name = "mtls"
kind = "mtls"
address = "0.0.0.0:8443"

[[listeners]]
name = "local"
kind = "plaintext"
address = "127.0.0.1:8080"

[authz]
policies = "policies"
schema = "policies/schema.cedarschema"
context_headers = ["x-request-priority"]

[[routes]]
name = "api"
host = "API.example."
path_prefix = "/api"
cluster = "api"
mode = "audit"

[[routes]]
name = "all"
path_prefix = "/"
cluster = "api"
service = "web"
max_body_bytes = 1024
retries = 0

[[clusters]]
name = "api"
balance = "least_outstanding"
[clusters.health]
path = "/healthz"
interval = "2s"
timeout = "1s"
healthy_threshold = 2
unhealthy_threshold = 3
[[clusters.endpoints]]
address = "127.0.0.1:9000"
site = "berlin"
zone = "eu-central-a"
region = "eu-central"
[[clusters.endpoints]]
address = "api.cloud.example:443"
site = "cloud"
zone = "eu-central-1"
region = "eu-central"
tls = true
spiffe_id = "spiffe://acme.example/cloud/api"
sni = "api.cloud.example"
"#;

fn origin() -> &'static Path {
    Path::new("/etc/edgeward/proxy.toml")
}

fn errors(text: &str) -> Vec<(String, String)> {
    match Config::from_toml_str(text, origin()) {
        Ok(_) => Vec::new(),
        Err(e) => e
            .errors()
            .iter()
            .map(|e| (e.key.clone(), e.message.clone()))
            .collect(),
    }
}

fn keys(text: &str) -> Vec<String> {
    errors(text).into_iter().map(|(k, _)| k).collect()
}

#[test]
fn full_example_validates_with_defaults_and_resolved_paths() {
    let c = Config::from_toml_str(FULL, origin()).expect("valid config");
    assert_eq!(c.node.id.as_str(), "berlin-gw-1");
    assert_eq!(c.node.data_dir, Some("/etc/edgeward/state".into()));
    let identity = c.identity.as_ref().expect("identity");
    assert_eq!(identity.cert, Path::new("/etc/edgeward/certs/proxy.crt"));
    assert_eq!(identity.reload_interval, Duration::from_secs(5));
    assert_eq!(
        c.trust_domains[0].crls,
        vec![Path::new("/etc/edgeward/certs/site.crl")]
    );
    assert_eq!(c.listeners[0].max_connections.get(), 10_000);
    assert_eq!(c.admin.address.to_string(), DEFAULT_ADMIN_ADDRESS);
    assert_eq!(c.limits.max_header_bytes.get(), 32_768);
    assert_eq!(c.limits.header_timeout, Duration::from_secs(15));
    assert_eq!(c.authz.decision_memo, 4096);

    let api = &c.routes[0];
    assert_eq!(
        api.host.as_ref().map(|h| h.to_string()),
        Some("api.example".into())
    );
    assert_eq!(api.service.as_str(), "api");
    assert_eq!(api.mode, Mode::Audit);
    assert_eq!(api.max_body_bytes.get(), 10 * 1024 * 1024);
    assert_eq!(api.connect_timeout, Duration::from_secs(2));
    assert_eq!(api.request_timeout, Duration::from_secs(30));
    assert_eq!(api.retries, 2);
    let all = &c.routes[1];
    assert_eq!((all.host.is_none(), all.service.as_str()), (true, "web"));
    assert_eq!((all.max_body_bytes.get(), all.retries), (1024, 0));

    let cluster = &c.clusters[0];
    assert_eq!(cluster.balance, BalanceKind::LeastOutstanding);
    assert_eq!(cluster.outlier, Outlier::default());
    assert_eq!(
        cluster.health.as_ref().map(|h| h.unhealthy_threshold.get()),
        Some(3)
    );
    assert_eq!(
        cluster.endpoints[1].address.to_string(),
        "api.cloud.example:443"
    );
    assert!(matches!(
        &cluster.endpoints[1].transport,
        UpstreamTransport::Tls { sni: Some(s), .. } if s == "api.cloud.example"
    ));
}

#[test]
fn all_validation_errors_are_reported_together() {
    let text = FULL
        .replace("address = \"127.0.0.1:9000\"", "address = \"127.0.0.1\"")
        .replace("interval = \"2s\"", "interval = \"0s\"")
        .replace("mode = \"audit\"", "mode = \"log\"")
        .replace("name = \"local\"", "name = \"mtls\"");
    assert_eq!(
        keys(&text),
        vec![
            "routes[0].mode",
            "clusters[0].health.interval",
            "clusters[0].endpoints[0].address",
            "listeners[1].name",
        ]
    );
    let err = Config::from_toml_str(&text, origin()).expect_err("invalid");
    let shown = err.to_string();
    assert!(shown.starts_with("4 errors in the config"), "{shown}");
    assert!(
        shown.contains(
            "/etc/edgeward/proxy.toml: `routes[0].mode` expected `enforce` or `audit`, found `log`"
        ),
        "{shown}"
    );
}

#[test]
fn unknown_and_mistyped_keys_name_their_path() {
    let unknown = FULL.replace("sni = ", "snii = ");
    let e = errors(&unknown);
    assert_eq!(e[0].0, "clusters[0].endpoints[1].snii");
    assert!(e[0].1.contains("unknown field `snii`"), "{:?}", e);
    let mistyped = FULL.replace("retries = 0", "retries = \"zero\"");
    assert_eq!(keys(&mistyped), vec!["routes[1].retries"]);
    let broken = errors("[node\nid = 1");
    assert_eq!(broken[0].0, "");
    assert!(broken[0].1.contains("(line 1)"), "{:?}", broken);
}

#[test]
fn plaintext_listener_must_be_loopback() {
    let text = FULL.replace("127.0.0.1:8080", "0.0.0.0:8080");
    let e = errors(&text);
    assert_eq!(e[0].0, "listeners[1].address");
    assert!(e[0].1.contains("loopback"));
}

#[test]
fn tls_needs_identity_and_trust_domains() {
    let no_identity = FULL.replace("[identity]", "[unused]");
    // `[unused]` is itself an unknown section: drop the whole identity table instead.
    let no_identity = no_identity.replace(
        "[unused]\ncert = \"certs/proxy.crt\"\nkey = \"/etc/edgeward/proxy.key\"\n",
        "",
    );
    assert_eq!(
        keys(&no_identity),
        vec!["listeners[0].kind", "clusters[0].endpoints[1].tls"]
    );

    let other_domain = FULL.replace("spiffe://acme.example/", "spiffe://other.example/");
    assert_eq!(
        keys(&other_domain),
        vec!["clusters[0].endpoints[1].spiffe_id"]
    );

    let no_domains = FULL.replace(
        "[[trust_domains]]\nname = \"acme.example\"\nbundle = \"certs/root.crt\"\ncrls = [\"certs/site.crl\"]\n",
        "",
    );
    assert_eq!(
        keys(&no_domains),
        vec!["listeners[0].kind", "clusters[0].endpoints[1].spiffe_id"]
    );
}

#[test]
fn tls_endpoint_without_spiffe_id_is_refused() {
    let text = FULL.replace("spiffe_id = \"spiffe://acme.example/cloud/api\"\n", "");
    assert_eq!(keys(&text), vec!["clusters[0].endpoints[1].spiffe_id"]);
    let plaintext_with_id = FULL.replace("tls = true\n", "");
    assert_eq!(
        keys(&plaintext_with_id),
        vec![
            "clusters[0].endpoints[1].spiffe_id",
            "clusters[0].endpoints[1].sni"
        ]
    );
}

#[test]
fn names_and_references_are_cross_checked() {
    let text = FULL
        .replace("cluster = \"api\"\nmode", "cluster = \"nope\"\nmode")
        .replace("name = \"all\"", "name = \"api\"");
    assert_eq!(keys(&text), vec!["routes[1].name", "routes[0].cluster"]);
    let same_address = FULL.replace("127.0.0.1:8080", "127.0.0.1:9901");
    let e = errors(&same_address);
    assert_eq!(e[0].0, "listeners[1].address");
    assert!(e[0].1.contains("admin.address"));
    let same_route = FULL.replace(
        "path_prefix = \"/\"",
        "path_prefix = \"/api\"\nhost = \"api.example\"",
    );
    assert_eq!(keys(&same_route), vec!["routes[1].path_prefix"]);
}

#[test]
fn the_decision_memo_is_bounded_and_may_be_off() {
    let with = |n: &str| {
        FULL.replace(
            "context_headers =",
            &format!("decision_memo = {n}\ncontext_headers ="),
        )
    };
    let off = Config::from_toml_str(&with("0"), origin()).expect("0 is valid");
    assert_eq!(off.authz.decision_memo, 0);
    let e = errors(&with("1000000"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "authz.decision_memo");
    assert!(e[0].1.contains("at most 100000"), "{e:?}");
    assert_eq!(keys(&with("-1")), vec!["authz.decision_memo"]);
}

#[test]
fn zero_and_malformed_values_are_refused() {
    let text = FULL
        .replace("unhealthy_threshold = 3", "unhealthy_threshold = 0")
        .replace("path_prefix = \"/api\"", "path_prefix = \"/api/../x\"")
        .replace("reload_interval", "x")
        .replace(
            "key = \"/etc/edgeward/proxy.key\"",
            "key = \"k\"\nreload_interval = \"soon\"",
        );
    let e = errors(&text);
    let k: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        k,
        vec![
            "identity.reload_interval",
            "routes[0].path_prefix",
            "clusters[0].health.unhealthy_threshold"
        ]
    );
    assert!(e[1].1.contains("`/x`"), "{:?}", e);
}

#[test]
fn missing_sections_are_named() {
    assert_eq!(
        keys("[limits]\nmax_body_bytes = 5\n"),
        vec!["node", "authz"]
    );
}

#[test]
fn max_header_count_stops_where_pingoras_parser_does() {
    let with = |n: u32| format!("{FULL}\n[limits]\nmax_header_count = {n}\n");
    assert!(errors(&with(256)).is_empty(), "{:?}", errors(&with(256)));
    let e = errors(&with(257));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "limits.max_header_count");
    assert!(e[0].1.contains("at most 256, found 257"), "{e:?}");
}

#[test]
fn redacted_json_shows_paths_and_defaults() {
    let c = Config::from_toml_str(FULL, origin()).expect("valid config");
    let json = c.redacted_json();
    assert_eq!(json["identity"]["key"], "/etc/edgeward/proxy.key");
    assert_eq!(json["identity"]["reload_interval"], "5s");
    assert_eq!(json["routes"][1]["host"], "*");
    assert_eq!(json["listeners"][0]["kind"], "mtls");
    assert_eq!(
        json["clusters"][0]["endpoints"][1]["transport"]["kind"],
        "tls"
    );
    assert_eq!(
        json["clusters"][0]["endpoints"][1]["transport"]["spiffe_id"],
        "spiffe://acme.example/cloud/api"
    );
}

#[test]
fn load_reads_the_file_and_names_it_on_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, FULL).expect("write");
    let c = Config::load(&path).expect("valid config");
    assert_eq!(c.authz.policies, dir.path().join("policies"));
    let missing = Config::load(&dir.path().join("absent.toml")).expect_err("missing file");
    assert!(missing
        .to_string()
        .contains("absent.toml: cannot read the file"));
}
