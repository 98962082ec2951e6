//! Locality tiers: how near an endpoint is to the node.

use std::fmt;

use crate::config::Locality;

/// How near an endpoint is to the node, nearest first (the order is the preference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// Same site (and so same zone and region).
    Site,
    /// Same zone and region, another site.
    Zone,
    /// Same region, another zone.
    Region,
    /// Anywhere else.
    Any,
}

impl Tier {
    /// The tier of an endpoint at `endpoint` seen from a node at `node`. Sites count as the
    /// same only within the same zone and region, so equal site names elsewhere do not match.
    pub fn of(node: &Locality, endpoint: &Locality) -> Tier {
        if node.region != endpoint.region {
            Tier::Any
        } else if node.zone != endpoint.zone {
            Tier::Region
        } else if node.site != endpoint.site {
            Tier::Zone
        } else {
            Tier::Site
        }
    }

    /// A stable lowercase name for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Site => "site",
            Tier::Zone => "zone",
            Tier::Region => "region",
            Tier::Any => "any",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The nearest tier that has an available (healthy, not ejected) endpoint, from pairs of
/// (tier, available). `None` means nothing can serve: the caller answers 503 at once.
pub fn select_tier<I: IntoIterator<Item = (Tier, bool)>>(endpoints: I) -> Option<Tier> {
    endpoints
        .into_iter()
        .filter(|(_, available)| *available)
        .map(|(tier, _)| tier)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Name;

    fn loc(site: &str, zone: &str, region: &str) -> Locality {
        let n = |s: &str| Name::new(s).expect("name");
        Locality {
            site: n(site),
            zone: n(zone),
            region: n(region),
        }
    }

    #[test]
    fn tiers_follow_the_locality_hierarchy() {
        let node = loc("berlin", "eu-a", "eu");
        assert_eq!(Tier::of(&node, &loc("berlin", "eu-a", "eu")), Tier::Site);
        assert_eq!(Tier::of(&node, &loc("potsdam", "eu-a", "eu")), Tier::Zone);
        assert_eq!(Tier::of(&node, &loc("berlin", "eu-b", "eu")), Tier::Region);
        assert_eq!(Tier::of(&node, &loc("berlin", "eu-a", "us")), Tier::Any);
    }

    #[test]
    fn nearest_available_tier_wins() {
        use Tier::*;
        assert_eq!(
            select_tier([(Region, true), (Site, false), (Zone, true)]),
            Some(Zone)
        );
        assert_eq!(select_tier([(Any, true), (Site, true)]), Some(Site));
        assert_eq!(select_tier([(Site, false), (Any, false)]), None);
        assert_eq!(select_tier([]), None);
    }
}
