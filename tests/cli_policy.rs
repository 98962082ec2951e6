//! End-to-end tests of `edgeward policy ...`: the real binary on the starter policies and on
//! small broken sets, one per class of bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_edgeward");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out: Output = Command::new(BIN)
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run edgeward");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A policy folder with the real schema, the given files and (optionally) entities.
fn set(files: &[(&str, &str)]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::copy(
        repo().join("policies/schema.cedarschema"),
        tmp.path().join("schema.cedarschema"),
    )
    .expect("schema");
    for (name, text) in files {
        let path = tmp.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        std::fs::write(path, text).expect("write");
    }
    tmp
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

const OK_POLICY: &str = "@id(\"ok\")\npermit (\n  principal in Edgeward::Group::\"ops\",\n  action,\n  resource == Edgeward::Route::\"api\"\n);\n";
const ENTITIES: &str =
    r#"[{ "uid": { "type": "Edgeward::Group", "id": "ops" }, "attrs": {}, "parents": [] }]"#;

#[test]
fn validate_accepts_the_starter_policies_without_warnings() {
    let (code, out, err) = run(&[
        "policy",
        "validate",
        "--deny-warnings",
        "--config",
        "policies/tests/config/berlin.toml",
        "policies",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("valid: 6 policies, 0 error(s), 0 warning(s)"),
        "{out}"
    );
}

#[test]
fn validate_warns_on_over_broad_and_fails_only_when_asked() {
    let broad =
        "@id(\"broad\")\npermit (principal, action, resource == Edgeward::Route::\"api\");\n";
    let dir = set(&[("p.cedar", broad)]);
    let (code, out, _) = run(&["policy", "validate", p(dir.path())]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("p.cedar:1:1: warning: [over-broad] policy `broad`"),
        "{out}"
    );
    let (code, _, err) = run(&["policy", "validate", "--deny-warnings", p(dir.path())]);
    assert_eq!(code, 1);
    assert!(err.contains("validation failed"), "{err}");
}

#[test]
fn validate_refuses_routes_the_config_does_not_have() {
    let policy = "@id(\"gone\")\npermit (principal in Edgeward::Group::\"ops\", action, resource == Edgeward::Route::\"gone\");\n";
    let dir = set(&[("p.cedar", policy), ("entities.json", ENTITIES)]);
    let config = repo().join("policies/tests/config/berlin.toml");
    let (code, out, _) = run(&["policy", "validate", "--config", p(&config), p(dir.path())]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("p.cedar:1:1: error: [unknown-reference] policy `gone` names route `gone`"),
        "{out}"
    );
}

/// Each class of bad policy input is refused by `validate` (exit 1) and `test` (exit 2) with
/// `file:line:col: error:`.
#[test]
fn bad_policy_input_is_reported_with_file_and_line() {
    let cases: [(&str, &str, &str); 5] = [
        ("syntax error", "permit (principal, action, resource) when { ;\n", "p.cedar:1:"),
        ("unknown entity type", "\npermit (principal is Edgeward::Robot, action, resource);\n", "p.cedar:2:"),
        ("unknown attribute", "permit (principal is Edgeward::Device, action, resource)\nwhen { principal.colour == \"red\" };\n", "p.cedar:2:"),
        ("type error", "permit (principal, action, resource)\nwhen { context.site == 1 };\n", "p.cedar:2:"),
        ("duplicate policy id", "@id(\"x\") permit (principal, action, resource);\n@id(\"x\") forbid (principal, action, resource);\n", "duplicate policy id `x`"),
    ];
    for (class, policy, expected) in cases {
        let dir = set(&[("p.cedar", policy), ("tests/t.toml", "")]);
        let (code, out, _) = run(&["policy", "validate", p(dir.path())]);
        assert_eq!(code, 1, "{class}: {out}");
        assert!(
            out.contains(expected) && out.contains(": error: "),
            "{class}: {out}"
        );
        let (code, _, err) = run(&["policy", "test", p(dir.path())]);
        assert_eq!(code, 2, "{class}: {err}");
        assert!(err.contains(expected), "{class}: {err}");
    }
}

#[test]
fn duplicate_keys_and_entities_in_the_entities_file_are_refused() {
    let dup_key = "[{ \"uid\": { \"type\": \"Edgeward::Group\", \"id\": \"ops\" },\n  \"attrs\": {}, \"attrs\": {}, \"parents\": [] }]";
    let dup_entity = format!(
        "[\n{},\n{}\n]",
        &ENTITIES[1..ENTITIES.len() - 1],
        &ENTITIES[1..ENTITIES.len() - 1]
    );
    for (text, expected) in [
        (
            dup_key.to_owned(),
            "entities.json:2:16: error: duplicate key `attrs`",
        ),
        (
            dup_entity,
            "entities.json:3:1: error: entity `Edgeward::Group::\"ops\"` is listed twice",
        ),
    ] {
        let dir = set(&[("p.cedar", OK_POLICY), ("entities.json", &text)]);
        let (code, out, _) = run(&["policy", "validate", p(dir.path())]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(expected), "{out}");
    }
}

const CASE: &str = "[[case]]\nname = \"ops read\"\nidentity = \"spiffe://acme.example/site/b/service/x\"\nmethod = \"GET\"\nurl = \"https://h/\"\nroute = \"api\"\nsite = \"b\"\nexpect = \"deny\"\n";

#[test]
fn duplicate_key_in_a_test_file_is_reported_with_its_line() {
    let text = format!("{CASE}method = \"POST\"\n");
    let dir = set(&[
        ("p.cedar", OK_POLICY),
        ("entities.json", ENTITIES),
        ("tests/t.toml", &text),
    ]);
    let (code, out, err) = run(&["policy", "test", p(dir.path())]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("t.toml:9:1: error: duplicate key"), "{err}");
    assert!(
        err.contains("no case was run") && !out.contains("pass"),
        "{out}{err}"
    );
}

#[test]
fn invalid_spiffe_id_in_a_test_case_names_the_rule_broken() {
    let text = CASE.replace(
        "spiffe://acme.example/site/b/service/x",
        "spiffe://Acme.example/x",
    );
    let dir = set(&[
        ("p.cedar", OK_POLICY),
        ("entities.json", ENTITIES),
        ("tests/t.toml", &text),
    ]);
    let (code, _, err) = run(&["policy", "test", p(dir.path())]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("t.toml:3:12: error: case `ops read`: `spiffe://Acme.example/x` is not a valid SPIFFE ID: it "), "{err}");
}

#[test]
fn test_runs_the_starter_cases() {
    let (code, out, err) = run(&["policy", "test", "policies"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("pass  a traversal into admin is decided on the canonical path"),
        "{out}"
    );
    assert!(out.contains(" passed, 0 failed"), "{out}");
}

#[test]
fn a_failing_case_shows_a_diff_and_exits_1() {
    let text = CASE.replace(
        "expect = \"deny\"",
        "expect = \"allow\"\npolicies = [\"ok\"]",
    );
    let dir = set(&[
        ("p.cedar", OK_POLICY),
        ("entities.json", ENTITIES),
        ("tests/t.toml", &text),
    ]);
    let (code, out, err) = run(&["policy", "test", p(dir.path())]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("FAIL  ops read"), "{out}");
    assert!(
        out.contains("- decision: allow\n        + decision: deny"),
        "{out}"
    );
    assert!(
        out.contains("- policies: [ok]\n        + policies: []"),
        "{out}"
    );
    assert!(err.contains("1 of 1 cases failed"), "{err}");
}

#[test]
fn explain_names_the_deciding_policy_route_and_tier() {
    let (code, out, err) = run(&[
        "policy",
        "explain",
        "--config",
        "policies/tests/config/berlin.toml",
        "--identity",
        "spiffe://acme.example/site/berlin/device/sensor-1",
        "--method",
        "GET",
        "--url",
        "https://GW.berlin.example/telemetry/../admin/users",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("decision: deny"), "{out}");
    assert!(
        out.contains("canonical: host `gw.berlin.example`, path `/admin/users`"),
        "{out}"
    );
    assert!(
        out.contains("route: `admin` (service `admin`, mode enforce)"),
        "{out}"
    );
    assert!(
        out.contains("upstream: 127.0.0.1:9003 in cluster `admin`, tier site"),
        "{out}"
    );
    assert!(
        out.contains("00-baseline.cedar:6: `baseline-no-device-admin`"),
        "{out}"
    );
}

#[test]
fn explain_json_and_default_deny() {
    let (code, out, err) = run(&[
        "policy",
        "explain",
        "--policies",
        "policies",
        "--route",
        "api",
        "--site",
        "berlin",
        "--method",
        "DELETE",
        "--url",
        "https://h/x",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["policies"], serde_json::json!([]));
    assert_eq!(v["route"]["name"], "api");
    assert_eq!(v["route"]["tier"], serde_json::Value::Null);
}

#[test]
fn format_checks_rewrites_and_refuses_bad_syntax() {
    let dir = set(&[(
        "p.cedar",
        "permit(principal,action,resource == Edgeward::Route::\"api\");",
    )]);
    let (code, out, _) = run(&["policy", "format", "--check", p(dir.path())]);
    assert_eq!(code, 1);
    assert!(out.contains("would reformat"), "{out}");
    let (code, out, _) = run(&["policy", "format", p(dir.path())]);
    assert_eq!(code, 0, "{out}");
    let text = std::fs::read_to_string(dir.path().join("p.cedar")).expect("read");
    assert!(
        text.starts_with("permit (\n  principal,\n  action,"),
        "{text}"
    );
    assert_eq!(run(&["policy", "format", "--check", p(dir.path())]).0, 0);
    assert_eq!(run(&["policy", "format", "--check", "policies"]).0, 0);

    let bad = set(&[("p.cedar", "permit (principal, action, resource) when {")]);
    let (code, _, err) = run(&["policy", "format", p(bad.path())]);
    assert_eq!(code, 2);
    assert!(
        err.contains("p.cedar:1:") && err.contains("nothing was written"),
        "{err}"
    );
}

/// A seeded generator (64-bit LCG, Knuth's constants): the same requests on every run.
struct Lcg(u64);

impl Lcg {
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        items[((self.0 >> 33) as usize) % items.len()]
    }
}

struct Generated {
    identity: Option<String>,
    method: String,
    url: String,
    peer_ip: String,
    allowed: bool,
    policies: Vec<String>,
}

const TIME: &str = "2024-06-10T06:13:20Z";

/// Random requests, each with the decision of the library, computed from facts built here by
/// hand from the proxy's canonicalization and route table.
fn generate(n: usize) -> Vec<Generated> {
    use edgeward_proxy::authz::{Authorizer, Locality, PolicySnapshot, RequestFacts, TlsFacts};
    use edgeward_proxy::config::Config;
    use edgeward_proxy::request::resolve_authority;
    use edgeward_proxy::route::RouteTable;

    let dir = repo().join("policies");
    let snapshot = PolicySnapshot::load(
        &dir,
        &dir.join("schema.cedarschema"),
        Some(&dir.join("entities.json")),
    )
    .expect("starter set");
    let config = Config::load(&dir.join("tests/config/berlin.toml")).expect("config");
    let table = RouteTable::new(&config.routes);
    let node = &config.node.locality;
    let mut rng = Lcg(0x5eed_ed6e_ba5e);
    let identities = [
        "",
        "spiffe://acme.example/site/berlin/device/sensor-1",
        "spiffe://acme.example/site/berlin/device/cam-7",
        "spiffe://acme.example/site/munich/device/cam-7",
        "spiffe://acme.example/site/berlin/operator/alice",
        "spiffe://acme.example/site/munich/operator/alice",
        "spiffe://acme.example/site/berlin/service/dashboard",
        "spiffe://other.example/site/berlin/device/cam-7",
    ];
    let methods = [
        "GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE", "get", "TRACE",
    ];
    let hosts = [
        "gw.berlin.example",
        "GW.Berlin.Example.",
        "gw.berlin.example:8443",
        "[::1]",
    ];
    let paths = [
        "/ingest",
        "/api",
        "/admin",
        "/telemetry",
        "/else",
        "/api/../admin",
        "/telemetry/%2e%2e/admin",
        "//ingest/./batch",
        "/admin%2Fx",
        "/ingest/..%2F",
        "/Admin",
        "/api/items?x=/admin",
    ];
    let ips = [
        "127.0.0.1",
        "10.49.3.4",
        "203.0.113.7",
        "::1",
        "::ffff:10.49.0.9",
    ];
    let now = 1_718_000_000;
    (0..n)
        .map(|_| {
            let identity = Some(rng.pick(&identities)).filter(|i| !i.is_empty());
            let method = rng.pick(&methods);
            let host = rng.pick(&hosts);
            let raw_path = rng.pick(&paths);
            let peer_ip = rng.pick(&ips);
            let decision = resolve_authority(&[], Some(host), true)
                .ok()
                .and_then(|h| Some((table.canonicalize_and_match(&h, raw_path).ok()?, h)))
                .map(|((target, route), host)| {
                    let facts = RequestFacts {
                        identity: identity.map(|i| edgeward_certs::SpiffeId::parse(i).expect("id")),
                        method: method.to_owned(),
                        host: host.to_string(),
                        path: target.path,
                        route: route.name.as_str().to_owned(),
                        service: route.service.as_str().to_owned(),
                        node: Locality {
                            site: node.site.as_str().to_owned(),
                            zone: node.zone.as_str().to_owned(),
                            region: node.region.as_str().to_owned(),
                        },
                        peer_ip: peer_ip.parse().expect("ip"),
                        tls: TlsFacts {
                            version: "TLSv1.3".to_owned(),
                            mtls: identity.is_some(),
                            alpn: "h2".to_owned(),
                        },
                        now_unix: now,
                        headers: Vec::new(),
                    };
                    Authorizer::new().decide(&snapshot, &facts)
                });
            Generated {
                identity: identity.map(str::to_owned),
                method: method.to_owned(),
                url: format!("https://{host}{raw_path}"),
                peer_ip: peer_ip.to_owned(),
                allowed: decision.as_ref().is_some_and(|d| d.allowed),
                policies: decision
                    .map(|d| d.reasons.into_iter().map(|r| r.id).collect())
                    .unwrap_or_default(),
            }
        })
        .collect()
}

#[test]
fn policy_test_and_explain_agree_with_the_library_on_random_requests() {
    let requests = generate(300);
    let allowed = requests.iter().filter(|r| r.allowed).count();
    assert!(
        allowed > 20 && allowed < 280,
        "the generator must cover both: {allowed}"
    );

    // `policy test`: every request as a case expecting the library's decision.
    let config = repo().join("policies/tests/config/berlin.toml");
    let mut text = format!("config = {:?}\n", p(&config));
    for (i, r) in requests.iter().enumerate() {
        text.push_str(&format!(
            "[[case]]\nname = \"r{i}\"\nmethod = \"{}\"\nurl = \"{}\"\npeer_ip = \"{}\"\ntime = \"{TIME}\"\nexpect = \"{}\"\npolicies = {:?}\n",
            r.method,
            r.url,
            r.peer_ip,
            if r.allowed { "allow" } else { "deny" },
            r.policies
        ));
        if let Some(id) = &r.identity {
            text.push_str(&format!("identity = \"{id}\"\n"));
        }
    }
    let dir = set(&[("tests/random.toml", &text)]);
    for entry in std::fs::read_dir(repo().join("policies")).expect("policies") {
        let path = entry.expect("entry").path();
        if path
            .extension()
            .is_some_and(|e| e == "cedar" || e == "json")
        {
            std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
        }
    }
    let (code, out, err) = run(&["policy", "test", p(dir.path())]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("300 passed, 0 failed"), "{out}");

    // `policy explain --json` on a sample.
    for r in requests.iter().step_by(10) {
        let mut args = vec![
            "policy",
            "explain",
            "--json",
            "--config",
            p(&config),
            "--policies",
            "policies",
            "--method",
            &r.method,
            "--url",
            &r.url,
            "--peer-ip",
            &r.peer_ip,
            "--time",
            TIME,
        ];
        if let Some(id) = &r.identity {
            args.extend(["--identity", id.as_str()]);
        }
        let (code, out, err) = run(&args);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        let ids: Vec<&str> = v["policies"]
            .as_array()
            .expect("policies")
            .iter()
            .filter_map(|p| p["id"].as_str())
            .collect();
        assert_eq!(
            v["decision"] == "allow",
            r.allowed,
            "{} {}: {out}",
            r.method,
            r.url
        );
        assert_eq!(ids, r.policies, "{} {}", r.method, r.url);
    }
}

#[test]
fn explain_refuses_a_url_that_is_not_absolute() {
    for url in ["not-a-url", "/admin", "https://", "ftp://x/"] {
        let (code, _, err) = run(&[
            "policy",
            "explain",
            "--policies",
            "policies",
            "--route",
            "app",
            "--site",
            "berlin",
            "--method",
            "GET",
            "--url",
            url,
        ]);
        assert_eq!(code, 2, "{url}: {err}");
        assert!(err.contains("expected an absolute URL"), "{url}: {err}");
    }
}
