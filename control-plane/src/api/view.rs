//! What the API shows of a node: its stored row plus figures derived from its telemetry. Pure
//! functions of the stored data and `now`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::store::telemetry::Point;
use crate::store::NodeRow;

/// A certificate whose issue time is not known (a store from before it was recorded) is
/// flagged within this many seconds of its expiry.
pub const EXPIRY_WARNING_SECS: i64 = 7 * 24 * 3600;

/// Whether a node's certificate is flagged on the page: under a third of its lifetime left, as
/// `edgeward check` and the node's own readiness warnings say (a day's certificate is not
/// flagged when it is new, a year's is flagged four months ahead). Expired is flagged too.
pub fn cert_expires_soon(not_before: Option<i64>, not_after: i64, now: i64) -> bool {
    let left = not_after - now;
    match not_before {
        Some(nb) if nb < not_after => left * 3 < not_after - nb,
        _ => left < EXPIRY_WARNING_SECS,
    }
}

/// The window of the rates shown.
pub const RATE_WINDOW_SECS: i64 = 300;

/// Figures over the recent past of one node (or of the fleet).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Requests per second over the last 5 minutes.
    pub request_rate: f64,
    /// Denied requests per second over the last 5 minutes.
    pub deny_rate: f64,
    /// Share of the last hour's requests served on site (0..1), if any were served.
    pub on_site_share: Option<f64>,
    pub requests_1h: u64,
    pub denies_1h: u64,
    pub failovers_1h: u64,
    pub dropped_1h: u64,
}

/// One node as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    #[serde(flatten)]
    pub row: NodeRow,
    /// The applied bundle is the desired one.
    pub in_sync: bool,
    /// Seconds until the node's certificate expires, if one was seen.
    pub cert_expires_in: Option<i64>,
    pub cert_expires_soon: bool,
    pub summary: Summary,
}

/// One site and its nodes.
#[derive(Debug, Clone, Serialize)]
pub struct SiteView {
    pub name: String,
    pub nodes: Vec<NodeView>,
}

/// Sums the points of the last hour (`points` may hold older ones, which are skipped).
pub fn summarize(points: &[Point], now: i64) -> Summary {
    let mut s = Summary::default();
    let (mut recent_req, mut recent_deny, mut on, mut off) = (0u64, 0u64, 0u64, 0u64);
    for p in points.iter().filter(|p| p.at + p.width > now - 3600) {
        s.requests_1h += p.requests;
        s.denies_1h += p.denies;
        s.failovers_1h += p.failovers;
        s.dropped_1h += p.dropped;
        on += p.on_site;
        off += p.off_site;
        if p.at + p.width > now - RATE_WINDOW_SECS {
            recent_req += p.requests;
            recent_deny += p.denies;
        }
    }
    s.request_rate = recent_req as f64 / RATE_WINDOW_SECS as f64;
    s.deny_rate = recent_deny as f64 / RATE_WINDOW_SECS as f64;
    if on + off > 0 {
        s.on_site_share = Some(on as f64 / (on + off) as f64);
    }
    s
}

/// A node's row with its derived figures.
pub fn node_view(row: NodeRow, points: &[Point], now: i64) -> NodeView {
    let in_sync = row.desired_hash.is_some() && row.desired_hash == row.applied_hash;
    let cert_expires_in = row.cert_not_after.map(|t| t - now);
    NodeView {
        in_sync,
        cert_expires_in,
        cert_expires_soon: row
            .cert_not_after
            .is_some_and(|na| cert_expires_soon(row.cert_not_before, na, now)),
        summary: summarize(points, now),
        row,
    }
}

/// Groups nodes by site; `sites` adds the published sites that have no node in the store.
pub fn by_site(nodes: Vec<NodeView>, sites: &BTreeSet<String>) -> Vec<SiteView> {
    let mut map: BTreeMap<String, Vec<NodeView>> =
        sites.iter().map(|s| (s.clone(), Vec::new())).collect();
    for n in nodes {
        map.entry(n.row.site.clone()).or_default().push(n);
    }
    map.into_iter()
        .map(|(name, nodes)| SiteView { name, nodes })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(at: i64, requests: u64, denies: u64, on: u64, off: u64) -> Point {
        Point {
            at,
            width: 10,
            requests,
            denies,
            on_site: on,
            off_site: off,
            failovers: 1,
            ..Point::default()
        }
    }

    #[test]
    fn rates_use_the_last_five_minutes_and_shares_the_last_hour() {
        let now = 10_000;
        let points = [
            p(now - 7200, 999, 999, 999, 0), // older than an hour: ignored
            p(now - 1000, 100, 10, 50, 50),  // in the hour, not in the rate window
            p(now - 60, 300, 30, 300, 0),
        ];
        let s = summarize(&points, now);
        assert_eq!((s.requests_1h, s.denies_1h, s.failovers_1h), (400, 40, 2));
        assert!((s.request_rate - 1.0).abs() < 1e-9);
        assert!((s.deny_rate - 0.1).abs() < 1e-9);
        assert_eq!(s.on_site_share, Some(350.0 / 400.0));
        assert_eq!(summarize(&[], now).on_site_share, None);
    }

    #[test]
    fn sync_and_expiry_are_derived() {
        let row = NodeRow {
            id: "a".into(),
            site: "berlin".into(),
            desired_hash: Some("h".into()),
            applied_hash: Some("h".into()),
            cert_not_after: Some(1_000 + 3600),
            cert_not_before: Some(1_000 - 24 * 3600),
            ..NodeRow::default()
        };
        let v = node_view(row, &[], 1_000);
        assert!(v.in_sync);
        assert!(v.cert_expires_soon);
        let sites = by_site(vec![v], &BTreeSet::from(["paris".to_owned()]));
        let names: Vec<&str> = sites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["berlin", "paris"]);
        assert!(sites[1].nodes.is_empty());
    }

    #[test]
    fn a_certificate_is_flagged_with_under_a_third_of_its_lifetime_left() {
        let day = 24 * 3600;
        // A day's certificate: not when new, not with 9 hours left, yes with 7 hours left.
        assert!(!cert_expires_soon(Some(0), day, 0));
        assert!(!cert_expires_soon(Some(0), day, day - 9 * 3600));
        assert!(cert_expires_soon(Some(0), day, day - 7 * 3600));
        // A year's: flagged four months ahead, not five.
        assert!(!cert_expires_soon(
            Some(0),
            365 * day,
            365 * day - 150 * day
        ));
        assert!(cert_expires_soon(Some(0), 365 * day, 365 * day - 110 * day));
        // Expired.
        assert!(cert_expires_soon(Some(0), day, 2 * day));
        // Issue time unknown (or nonsense): within seven days of expiry.
        assert!(cert_expires_soon(None, 10 * day, 4 * day));
        assert!(!cert_expires_soon(None, 10 * day, 2 * day));
        assert!(!cert_expires_soon(Some(20 * day), 10 * day, 2 * day));
    }
}
