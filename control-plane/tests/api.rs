//! The API and the page of the real control plane, over plain HTTP.

mod support;

use support::{http, Fleet};

#[tokio::test]
async fn the_fleet_api_shows_both_sites_and_their_nodes() {
    let fleet = Fleet::start().await;
    let api = fleet.cp().api;

    let (status, body) = http(api, "GET", "/api/fleet").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let sites: Vec<&str> = v["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(sites, vec!["berlin", "paris"]);
    assert_eq!(v["sites"][0]["nodes"][0]["id"], "berlin-gw-1");
    assert_eq!(v["sites"][1]["nodes"][0]["online"], false);
    assert!(v["revision"].as_str().is_some_and(|r| r.len() == 40));

    let (status, body) = http(api, "GET", "/api/nodes/paris-gw-1").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("spiffe://acme.example/site/paris/node/paris-gw-1"),
        "{body}"
    );
    assert_eq!(http(api, "GET", "/api/nodes/nowhere").await.0, 404);
    assert_eq!(http(api, "GET", "/api/nodes").await.0, 200);
    assert_eq!(
        http(api, "GET", "/api/telemetry?node=berlin-gw-1&since=0")
            .await
            .1,
        "[]"
    );
    assert!(http(api, "GET", "/api/events")
        .await
        .1
        .contains("revision-published"));
    assert_eq!(http(api, "DELETE", "/api/sync").await.0, 405);
    assert!(http(api, "POST", "/api/sync")
        .await
        .1
        .contains("\"outcome\":\"unchanged\""));
}

#[tokio::test]
async fn the_page_health_and_metrics_are_served() {
    let fleet = Fleet::start().await;
    let api = fleet.cp().api;
    let (status, page) = http(api, "GET", "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("<title>Edgeward fleet</title>"));
    assert!(page.contains("/api/fleet"));
    assert_eq!(http(api, "GET", "/healthz").await, (200, "ok\n".to_owned()));
    let (status, metrics) = http(api, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("edgeward_cp_revisions_total{outcome=\"published\"} 1"),
        "{metrics}"
    );
    assert_eq!(http(api, "GET", "/nope").await.0, 404);
}
