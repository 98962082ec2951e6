//! Tests of rendering: layering, merge rules, SPIFFE IDs and refusals.

use super::*;

pub(crate) fn snapshot(files: &[(&str, &str)]) -> Snapshot {
    Snapshot {
        revision: "r1".into(),
        files: files
            .iter()
            .map(|(p, t)| (p.to_string(), t.as_bytes().to_vec()))
            .collect(),
    }
}

fn td() -> TrustDomain {
    TrustDomain::new("acme.example").expect("td")
}

const BASE: &[(&str, &str)] = &[
    ("shared/proxy.toml", "[admin]\naddress = \"127.0.0.1:9901\"\n[limits]\nmax_body_bytes = 10\nmax_header_count = 50\n"),
    ("shared/schema.cedarschema", "namespace X {}"),
    ("shared/policies/a.cedar", "// a"),
    ("shared/trust/acme.example.pem", "pem"),
    ("sites/berlin/site.toml", "[limits]\nmax_body_bytes = 20\n"),
    ("sites/berlin/policies/a.cedar", "// site a"),
    ("nodes/gw-1/node.toml", "[node]\nsite = \"berlin\"\nzone = \"z\"\nregion = \"r\"\n[limits]\nmax_header_count = 70\n"),
    ("nodes/gw-1/policies/n.cedar", "// node"),
];

#[test]
fn node_wins_over_site_over_shared() {
    let d = render(&snapshot(BASE), &td()).expect("renders");
    assert_eq!(d.nodes.len(), 1);
    let n = &d.nodes[0];
    assert_eq!(n.node_id, "gw-1");
    assert_eq!(
        (n.site.as_str(), n.zone.as_str(), n.region.as_str()),
        ("berlin", "z", "r")
    );
    assert_eq!(
        n.spiffe_id.to_string(),
        "spiffe://acme.example/site/berlin/node/gw-1"
    );
    let cfg: Table = n.files["proxy.toml"].parse().expect("toml");
    assert_eq!(cfg["limits"]["max_body_bytes"].as_integer(), Some(20));
    assert_eq!(cfg["limits"]["max_header_count"].as_integer(), Some(70));
    assert_eq!(cfg["admin"]["address"].as_str(), Some("127.0.0.1:9901"));
    assert_eq!(cfg["node"]["id"].as_str(), Some("gw-1"));
    assert_eq!(cfg["authz"]["policies"].as_str(), Some("policies"));
    assert_eq!(
        cfg["trust_domains"][0]["bundle"].as_str(),
        Some("trust/acme.example.pem")
    );
    let names: Vec<&str> = n.files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        vec![
            "policies/a.cedar",
            "policies/node-n.cedar",
            "policies/schema.cedarschema",
            "policies/site-berlin-a.cedar",
            "proxy.toml",
            "trust/acme.example.pem"
        ]
    );
    assert_eq!(d.sites.iter().collect::<Vec<_>>(), vec!["berlin"]);
}

#[test]
fn arrays_are_replaced_not_appended() {
    let mut base = Table::new();
    merge(&mut base, "a = [1, 2]\n[t]\nx = 1\n".parse().expect("toml"));
    merge(&mut base, "a = [3]\n[t]\ny = 2\n".parse().expect("toml"));
    assert_eq!(
        toml::to_string(&base).expect("ser"),
        "a = [3]\n\n[t]\nx = 1\ny = 2\n"
    );
}

#[test]
fn declared_spiffe_id_is_used_and_fleet_table_is_stripped() {
    let mut files = BASE.to_vec();
    files[6].1 = "[node]\nsite = \"berlin\"\n[fleet]\nspiffe_id = \"spiffe://acme.example/gw\"\n";
    let d = render(&snapshot(&files), &td()).expect("renders");
    assert_eq!(d.nodes[0].spiffe_id.to_string(), "spiffe://acme.example/gw");
    assert!(!d.nodes[0].files["proxy.toml"].contains("fleet"));
}

#[test]
fn every_problem_is_reported() {
    let files = [
        ("shared/proxy.toml", "not = = toml"),
        ("nodes/a/node.toml", "[node]\nzone = \"z\"\n"),
        ("nodes/b/node.toml", "[node]\nsite = \"nowhere\"\n"),
        (
            "nodes/c/node.toml",
            "[node]\nid = \"other\"\nsite = \"berlin\"\n",
        ),
        ("sites/berlin/site.toml", ""),
    ];
    let problems = render(&snapshot(&files), &td()).expect_err("refused");
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 5, "{text:#?}");
    assert!(
        text[0].starts_with("shared/proxy.toml: is not valid TOML"),
        "{text:#?}"
    );
    assert!(text[1].contains("schema.cedarschema"), "{text:#?}");
    assert!(text[2].contains("`node.site` is required"), "{text:#?}");
    assert!(text[3].contains("no `sites/nowhere/` folder"), "{text:#?}");
    assert!(text[4].contains("`node.id` is `other`"), "{text:#?}");
}
