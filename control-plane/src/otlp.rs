//! Decoding a telemetry batch: an OTLP `ExportMetricsServiceRequest` (protobuf) into store
//! points, one per aggregation interval.
//!
//! The control plane reads three metrics (see the protocol in `edgeward_wire`); any other
//! metric in the batch is ignored, so the same batch can also carry data meant for another
//! OpenTelemetry collector:
//!
//! - [`REQUESTS`]: a delta `Sum` of requests, with attributes `decision` (`deny` counts as a
//!   deny) and `tier` (`site` is served on site; `zone`, `region`, `any` are served elsewhere).
//! - [`FAILOVERS`]: a delta `Sum` of tier changes.
//! - [`LATENCY`]: a delta `Histogram` of request durations in milliseconds, explicit buckets.
//!
//! An interval is a data point's `[start_time_unix_nano, time_unix_nano)`, kept to the second.
//! Counters add up exactly. Percentiles are the upper bound of the bucket holding the quantile
//! (the highest over the data points of one interval): an upper bound, not an interpolation.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, HistogramDataPoint, NumberDataPoint,
};
use prost::Message as _;

use crate::store::telemetry::Point;

/// Requests, by `decision` and `tier`.
pub const REQUESTS: &str = "edgeward.requests";
/// Changes of the tier serving a cluster.
pub const FAILOVERS: &str = "edgeward.failovers";
/// Request durations, milliseconds.
pub const LATENCY: &str = "edgeward.request.duration";

/// The longest interval one data point may cover.
pub const MAX_INTERVAL_SECS: i64 = 3600;

/// Why a batch cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtlpError {
    #[error("the batch is not an OTLP ExportMetricsServiceRequest: {0}")]
    Decode(String),
    #[error("metric `{metric}`: {reason}")]
    Invalid {
        metric: &'static str,
        reason: String,
    },
}

/// Decodes a batch into points, oldest first.
pub fn decode(bytes: &[u8]) -> Result<Vec<Point>, OtlpError> {
    let req =
        ExportMetricsServiceRequest::decode(bytes).map_err(|e| OtlpError::Decode(e.to_string()))?;
    let mut points: BTreeMap<(i64, i64), Point> = BTreeMap::new();
    let metrics = req
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics);
    for m in metrics {
        match (m.name.as_str(), &m.data) {
            (REQUESTS, Some(metric::Data::Sum(sum))) => {
                delta(REQUESTS, sum.aggregation_temporality)?;
                for dp in &sum.data_points {
                    let p = slot(
                        &mut points,
                        REQUESTS,
                        dp.start_time_unix_nano,
                        dp.time_unix_nano,
                    )?;
                    let n = count(REQUESTS, dp)?;
                    p.requests += n;
                    if attr(&dp.attributes, "decision") == Some("deny") {
                        p.denies += n;
                    }
                    match attr(&dp.attributes, "tier") {
                        Some("site") => p.on_site += n,
                        Some("zone" | "region" | "any") => p.off_site += n,
                        _ => {}
                    }
                }
            }
            (FAILOVERS, Some(metric::Data::Sum(sum))) => {
                delta(FAILOVERS, sum.aggregation_temporality)?;
                for dp in &sum.data_points {
                    let p = slot(
                        &mut points,
                        FAILOVERS,
                        dp.start_time_unix_nano,
                        dp.time_unix_nano,
                    )?;
                    p.failovers += count(FAILOVERS, dp)?;
                }
            }
            (LATENCY, Some(metric::Data::Histogram(h))) => {
                delta(LATENCY, h.aggregation_temporality)?;
                for dp in &h.data_points {
                    let p = slot(
                        &mut points,
                        LATENCY,
                        dp.start_time_unix_nano,
                        dp.time_unix_nano,
                    )?;
                    let (p50, p95) = (quantile(dp, 0.5)?, quantile(dp, 0.95)?);
                    p.p50_ms = max_opt(p.p50_ms, p50);
                    p.p95_ms = max_opt(p.p95_ms, p95);
                }
            }
            (name @ (REQUESTS | FAILOVERS | LATENCY), _) => {
                let metric = [REQUESTS, FAILOVERS, LATENCY]
                    .into_iter()
                    .find(|n| *n == name)
                    .unwrap_or(REQUESTS);
                let want = if metric == LATENCY {
                    "a Histogram"
                } else {
                    "a Sum"
                };
                return Err(OtlpError::Invalid {
                    metric,
                    reason: format!("must be {want}"),
                });
            }
            _ => {}
        }
    }
    Ok(points.into_values().collect())
}

fn delta(metric: &'static str, temporality: i32) -> Result<(), OtlpError> {
    if temporality == AggregationTemporality::Delta as i32 {
        Ok(())
    } else {
        Err(OtlpError::Invalid {
            metric,
            reason: "must have delta temporality: the control plane adds intervals up".into(),
        })
    }
}

/// The point of the interval `[start, end)`, created on first use.
fn slot<'a>(
    points: &'a mut BTreeMap<(i64, i64), Point>,
    metric: &'static str,
    start_ns: u64,
    end_ns: u64,
) -> Result<&'a mut Point, OtlpError> {
    let bad = |reason: String| OtlpError::Invalid { metric, reason };
    let at = i64::try_from(start_ns / 1_000_000_000)
        .map_err(|_| bad("start time out of range".into()))?;
    let end =
        i64::try_from(end_ns / 1_000_000_000).map_err(|_| bad("end time out of range".into()))?;
    if start_ns == 0 || end_ns == 0 {
        return Err(bad("a data point needs its start and end time".into()));
    }
    let width = end - at;
    if width <= 0 || width > MAX_INTERVAL_SECS {
        return Err(bad(format!(
            "a data point covers {width} s: it must cover 1 to {MAX_INTERVAL_SECS} s"
        )));
    }
    Ok(points.entry((at, width)).or_insert_with(|| Point {
        at,
        width,
        ..Point::default()
    }))
}

fn count(metric: &'static str, dp: &NumberDataPoint) -> Result<u64, OtlpError> {
    let bad = |reason: &str| OtlpError::Invalid {
        metric,
        reason: reason.into(),
    };
    match dp.value {
        Some(number_data_point::Value::AsInt(v)) => {
            u64::try_from(v).map_err(|_| bad("a count must not be negative"))
        }
        Some(number_data_point::Value::AsDouble(v))
            if v.is_finite() && v >= 0.0 && v.fract() == 0.0 =>
        {
            Ok(v as u64)
        }
        Some(number_data_point::Value::AsDouble(_)) => Err(bad("a count must be a whole number")),
        None => Err(bad("a data point has no value")),
    }
}

/// The upper bound of the bucket holding quantile `q`, or `None` for an empty histogram.
fn quantile(dp: &HistogramDataPoint, q: f64) -> Result<Option<f64>, OtlpError> {
    let bad = |reason: &str| OtlpError::Invalid {
        metric: LATENCY,
        reason: reason.into(),
    };
    if dp.bucket_counts.len() != dp.explicit_bounds.len() + 1 {
        return Err(bad("needs one more bucket count than explicit bounds"));
    }
    let total: u64 = dp.bucket_counts.iter().sum();
    if total == 0 {
        return Ok(None);
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, c) in dp.bucket_counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            // The overflow bucket has no upper bound: its lower bound, or the recorded max.
            let bound = dp
                .explicit_bounds
                .get(i)
                .copied()
                .or(dp.max)
                .or_else(|| dp.explicit_bounds.last().copied());
            return Ok(bound.filter(|b| b.is_finite()));
        }
    }
    Ok(None)
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

/// One counter value of a [`reference_batch`]: `(decision, tier, requests)`.
pub type RequestCount<'a> = (&'a str, &'a str, u64);

/// Encodes one interval the way [`decode`] reads it: requests by decision and tier, failovers,
/// and a latency histogram (`bounds` in ms, `buckets` one longer). The reference for the node
/// side's encoder, and what the tests send.
pub fn reference_batch(
    start_unix: u64,
    width_secs: u64,
    requests: &[RequestCount<'_>],
    failovers: u64,
    latency: Option<(&[f64], &[u64])>,
) -> Vec<u8> {
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::metrics::v1::{
        Histogram, Metric, ResourceMetrics, ScopeMetrics, Sum,
    };

    let (start, end) = (
        start_unix * 1_000_000_000,
        (start_unix + width_secs) * 1_000_000_000,
    );
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    };
    let number = |attributes: Vec<KeyValue>, n: u64| NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: end,
        value: Some(number_data_point::Value::AsInt(
            i64::try_from(n).unwrap_or(i64::MAX),
        )),
        ..Default::default()
    };
    let sum = |name: &str, data_points| Metric {
        name: name.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points,
            aggregation_temporality: AggregationTemporality::Delta as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    let reqs = requests
        .iter()
        .map(|(d, t, n)| number(vec![kv("decision", d), kv("tier", t)], *n))
        .collect();
    let mut metrics = vec![
        sum(REQUESTS, reqs),
        sum(FAILOVERS, vec![number(vec![], failovers)]),
    ];
    if let Some((bounds, buckets)) = latency {
        metrics.push(Metric {
            name: LATENCY.into(),
            unit: "ms".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    start_time_unix_nano: start,
                    time_unix_nano: end,
                    count: buckets.iter().sum(),
                    bucket_counts: buckets.to_vec(),
                    explicit_bounds: bounds.to_vec(),
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Delta as i32,
            })),
            ..Default::default()
        });
    }
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests;
