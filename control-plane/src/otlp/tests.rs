//! Tests of batch decoding: counters by decision and tier, percentiles, and refusals.

use super::*;

#[test]
fn requests_are_split_by_decision_and_tier() {
    let batch = reference_batch(
        1_000,
        10,
        &[
            ("allow", "site", 7),
            ("deny", "none", 2),
            ("allow", "region", 3),
        ],
        1,
        Some((&[5.0, 10.0, 50.0], &[10, 5, 3, 2])),
    );
    let points = decode(&batch).expect("decodes");
    assert_eq!(points.len(), 1);
    let p = &points[0];
    assert_eq!((p.at, p.width), (1_000, 10));
    assert_eq!(
        (p.requests, p.denies, p.on_site, p.off_site, p.failovers),
        (12, 2, 7, 3, 1)
    );
    // 20 samples: the 10th is in the first bucket, the 19th in the third.
    assert_eq!((p.p50_ms, p.p95_ms), (Some(5.0), Some(50.0)));
}

#[test]
fn garbage_is_refused_as_not_otlp() {
    let e = decode(&[0xff, 0xff, 0xff]).expect_err("refused");
    assert!(matches!(e, OtlpError::Decode(_)), "{e}");
}

#[test]
fn an_empty_request_holds_no_point() {
    assert_eq!(decode(&[]).expect("empty is valid"), Vec::new());
}

#[test]
fn cumulative_counters_are_refused() {
    let mut req = ExportMetricsServiceRequest::decode(
        reference_batch(1_000, 10, &[("allow", "site", 1)], 0, None).as_slice(),
    )
    .expect("decode");
    let m = &mut req.resource_metrics[0].scope_metrics[0].metrics[0];
    if let Some(metric::Data::Sum(s)) = &mut m.data {
        s.aggregation_temporality = AggregationTemporality::Cumulative as i32;
    }
    let e = decode(&req.encode_to_vec()).expect_err("refused");
    assert!(e.to_string().contains("delta temporality"), "{e}");
}

#[test]
fn a_point_without_times_is_refused() {
    let e = decode(&reference_batch(0, 10, &[("allow", "site", 1)], 0, None)).expect_err("refused");
    assert!(e.to_string().contains("start and end time"), "{e}");
    let e =
        decode(&reference_batch(5, 7200, &[("allow", "site", 1)], 0, None)).expect_err("too wide");
    assert!(e.to_string().contains("7200 s"), "{e}");
}

#[test]
fn a_histogram_with_mismatched_buckets_is_refused() {
    let e = decode(&reference_batch(1_000, 10, &[], 0, Some((&[1.0], &[1])))).expect_err("refused");
    assert!(e.to_string().contains("bucket count"), "{e}");
}
