//! A closed [`Window`] as an OTLP `ExportMetricsServiceRequest`, the metrics the control plane
//! reads (see `edgeward_wire`'s protocol) and any OpenTelemetry collector understands:
//! `edgeward.requests` and `edgeward.failovers` (delta, monotonic sums) and
//! `edgeward.request.duration` (a delta histogram in milliseconds).

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;

use super::{Window, LATENCY_BOUNDS_MS};
use crate::config::Locality;

/// Encodes `w` for the node at `locality` (the resource: service name, site, zone and region;
/// nothing that names a client).
pub fn encode(w: &Window, locality: &Locality) -> Vec<u8> {
    request(w, locality).encode_to_vec()
}

/// The OTLP request of one window.
pub fn request(w: &Window, locality: &Locality) -> ExportMetricsServiceRequest {
    let (start, end) = (w.start_ns, reported_end(w.start_ns, w.end_ns));
    let point = |attrs: Vec<KeyValue>, n: u64| NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: start,
        time_unix_nano: end,
        value: Some(number_data_point::Value::AsInt(
            i64::try_from(n).unwrap_or(i64::MAX),
        )),
        ..Default::default()
    };
    let sum = |points: Vec<NumberDataPoint>| {
        Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Delta as i32,
            is_monotonic: true,
        }))
    };
    let requests = w
        .requests
        .iter()
        .map(|(k, n)| {
            point(
                vec![
                    kv("route", &k.route),
                    kv("decision", &k.decision),
                    kv("status_class", &k.status_class),
                    kv("tier", &k.tier),
                ],
                *n,
            )
        })
        .collect();
    let failovers = w
        .failovers
        .iter()
        .map(|(k, n)| {
            point(
                vec![
                    kv("cluster", &k.cluster),
                    kv("from", &k.from),
                    kv("to", &k.to),
                ],
                *n,
            )
        })
        .collect();
    let count: u64 = w.latency_buckets.iter().sum();
    let latency = HistogramDataPoint {
        start_time_unix_nano: start,
        time_unix_nano: end,
        count,
        sum: Some(w.latency_sum_ms),
        bucket_counts: w.latency_buckets.clone(),
        explicit_bounds: LATENCY_BOUNDS_MS.to_vec(),
        ..Default::default()
    };
    let metrics = vec![
        Metric {
            name: "edgeward.requests".into(),
            description: "Requests by route, decision, status class and tier".into(),
            unit: "{request}".into(),
            data: sum(requests),
            ..Default::default()
        },
        Metric {
            name: "edgeward.failovers".into(),
            description: "Changes of the tier that serves a cluster".into(),
            unit: "{change}".into(),
            data: sum(failovers),
            ..Default::default()
        },
        Metric {
            name: "edgeward.request.duration".into(),
            description: "Time from request to the end of the response".into(),
            unit: "ms".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: if count > 0 { vec![latency] } else { Vec::new() },
                aggregation_temporality: AggregationTemporality::Delta as i32,
            })),
            ..Default::default()
        },
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "edgeward-proxy"),
                    kv("edgeward.site", locality.site.as_str()),
                    kv("edgeward.zone", locality.zone.as_str()),
                    kv("edgeward.region", locality.region.as_str()),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "edgeward".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Collectors (ours included) keep intervals to the second: a window shorter than that (the
/// last one before a shutdown) is reported as ending at the next whole second after its start,
/// so that it covers at least one second and is not refused.
fn reported_end(start_ns: u64, end_ns: u64) -> u64 {
    const S: u64 = 1_000_000_000;
    end_ns.max((start_ns / S + 1) * S)
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Name;
    use crate::telemetry::{Aggregator, RequestKey};

    #[test]
    fn a_short_window_still_covers_a_whole_second() {
        const S: u64 = 1_000_000_000;
        assert_eq!(reported_end(10 * S + 200, 10 * S + 700), 11 * S);
        assert_eq!(reported_end(10 * S + 200, 12 * S + 5), 12 * S + 5);
        assert_eq!(reported_end(10 * S, 10 * S), 11 * S);
    }

    #[test]
    fn a_window_encodes_and_decodes_with_its_counts_and_no_client_data() {
        let a = Aggregator::default();
        a.enable();
        for tier in ["site", "site", "region"] {
            a.record_request(
                RequestKey {
                    route: "app".into(),
                    decision: "allow".into(),
                    status_class: "2xx".into(),
                    tier: tier.into(),
                },
                3.0,
            );
        }
        let mut w = a.take(super::super::now_ns());
        w.end_ns = w.start_ns + 10_000_000_000;
        let locality = Locality {
            site: Name::new("berlin").unwrap(),
            zone: Name::new("berlin-a").unwrap(),
            region: Name::new("eu-central").unwrap(),
        };
        let bytes = encode(&w, &locality);
        let back = ExportMetricsServiceRequest::decode(bytes.as_slice()).unwrap();
        let metrics = &back.resource_metrics[0].scope_metrics[0].metrics;
        let Some(metric::Data::Sum(s)) = &metrics[0].data else {
            panic!("requests is a sum")
        };
        let total: i64 = s
            .data_points
            .iter()
            .map(|p| match p.value {
                Some(number_data_point::Value::AsInt(n)) => n,
                _ => 0,
            })
            .sum();
        assert_eq!(total, 3);
        let Some(metric::Data::Histogram(h)) = &metrics[2].data else {
            panic!("duration is a histogram")
        };
        assert_eq!(h.data_points[0].count, 3);
        assert_eq!(
            h.data_points[0].bucket_counts.len(),
            h.data_points[0].explicit_bounds.len() + 1
        );
    }
}
