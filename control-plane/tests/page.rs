//! The fleet page in a real headless browser (Debian's `chromium`): it loads without errors
//! and shows the example fleet's nodes, their state and a chart of the last hour.

mod support;

use std::process::Command;

use edgeward_control_plane::otlp::reference_batch;
use edgeward_wire::Message;
use support::{register, Fleet, Session, BERLIN_ID};

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|b| {
        Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_fleet_in_a_headless_browser() {
    let Some(browser) = chromium() else {
        // CI installs chromium (.ci/run); elsewhere the test says it did not run.
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is required in CI"
        );
        eprintln!("skipped: no chromium on this machine (apt-get install chromium)");
        return;
    };
    let fleet = Fleet::start().await;

    // Berlin online, with one interval of telemetry from a minute ago.
    let conn = fleet
        .connect_as(&fleet.pki, "berlin", BERLIN_ID)
        .await
        .expect("handshake");
    let mut s = Session::open(conn).await;
    s.send(&register("berlin-gw-1", BERLIN_ID)).await;
    assert!(matches!(s.recv().await, Message::Bundle(_)));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    for (seq, at) in [(1, now - 120), (2, now - 60)] {
        let otlp = reference_batch(
            at,
            10,
            &[("allow", "site", 90), ("deny", "none", 10)],
            0,
            None,
        );
        s.send(&Message::Telemetry {
            seq,
            otlp,
            dropped_before: 0,
        })
        .await;
        assert_eq!(s.recv().await, Message::TelemetryAck { seq });
    }

    // The page, rendered with its scripts run.
    let url = format!("http://{}/", fleet.cp().api);
    let profile = fleet.dir.path().join("chromium");
    let out = tokio::task::spawn_blocking({
        let browser = browser.to_owned();
        move || {
            Command::new(browser)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                ])
                .arg(format!("--user-data-dir={}", profile.display()))
                .args([
                    "--enable-logging=stderr",
                    "--v=0",
                    "--virtual-time-budget=5000",
                ])
                .args(["--dump-dom", &url])
                .output()
                .expect("chromium runs")
        }
    })
    .await
    .expect("join");
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");

    assert!(dom.contains(r#"data-site="berlin""#), "{dom}");
    assert!(dom.contains(r#"data-site="paris""#), "{dom}");
    assert!(dom.contains(r#"data-node="berlin-gw-1""#), "{dom}");
    assert!(dom.contains(r#"data-node="paris-gw-1""#), "{dom}");
    assert!(dom.contains("1/1 online"), "{dom}");
    assert!(dom.contains("0/1 online"), "{dom}");
    // Denied requests are served by no tier: all 180 allowed ones were served on site.
    assert!(dom.contains("100% on site"), "{dom}");
    assert!(dom.contains("<polyline"), "{dom}");
    assert!(
        dom.contains(r#"<span id="error"></span>"#),
        "the page shows an error: {dom}"
    );
    for bad in [
        "Uncaught",
        "TypeError",
        "ReferenceError",
        "Failed to load resource",
    ] {
        assert!(!log.contains(bad), "{bad} in the browser log: {log}");
    }
}
