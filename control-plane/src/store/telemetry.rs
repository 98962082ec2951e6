//! Telemetry series: one row per node per interval, with counters that add up exactly.
//!
//! A batch is stored at most once: each node's highest stored sequence number is kept in the
//! same transaction as the points, so a batch re-sent after a reconnect (its ack was lost) is
//! acknowledged again but not counted twice.
//!
//! Downsampling folds points older than an hour into 5-minute points: counters are summed, so
//! totals stay exact; latency percentiles become the highest of the folded values (an upper
//! bound, not a true percentile of the merged distribution).

use rusqlite::{params, OptionalExtension, Transaction};
use serde::Serialize;

use super::{Store, StoreError};

/// The width of downsampled points, in seconds.
pub const COARSE_WIDTH: i64 = 300;
/// Points younger than this stay at full resolution.
pub const FINE_FOR: i64 = 3600;

/// The aggregates of one node over one interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Point {
    /// Start of the interval (Unix seconds).
    pub at: i64,
    /// Length of the interval in seconds.
    pub width: i64,
    pub requests: u64,
    pub denies: u64,
    /// Requests served by an endpoint of the node's own site.
    pub on_site: u64,
    /// Requests served elsewhere (zone, region, cloud).
    pub off_site: u64,
    pub failovers: u64,
    /// Telemetry batches the node dropped (queue full), reported with this interval.
    pub dropped: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
}

/// What became of a telemetry batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Stored,
    /// Its sequence number was stored before: acknowledge it, count nothing.
    Duplicate,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn add_point(tx: &Transaction<'_>, node: &str, p: &Point) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO telemetry (node, at, width, requests, denies, on_site, off_site, failovers,
           dropped, p50_ms, p95_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (node, at, width) DO UPDATE SET
           requests = requests + ?4, denies = denies + ?5, on_site = on_site + ?6,
           off_site = off_site + ?7, failovers = failovers + ?8, dropped = dropped + ?9,
           p50_ms = max(coalesce(p50_ms, ?10), coalesce(?10, p50_ms)),
           p95_ms = max(coalesce(p95_ms, ?11), coalesce(?11, p95_ms))",
        params![
            node,
            p.at,
            p.width,
            to_i64(p.requests),
            to_i64(p.denies),
            to_i64(p.on_site),
            to_i64(p.off_site),
            to_i64(p.failovers),
            to_i64(p.dropped),
            p.p50_ms,
            p.p95_ms
        ],
    )?;
    Ok(())
}

impl Store {
    /// Stores one batch of `node` unless `seq` was stored already.
    pub fn record_batch(
        &self,
        node: &str,
        seq: u64,
        points: &[Point],
    ) -> Result<Recorded, StoreError> {
        let mut conn = self.conn();
        let result = (|| {
            let tx = conn.transaction()?;
            let last: Option<i64> = tx
                .query_row(
                    "SELECT telemetry_seq FROM nodes WHERE id = ?1",
                    [node],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            if last.is_some_and(|last| to_i64(seq) <= last) {
                return Ok(Recorded::Duplicate);
            }
            for p in points {
                add_point(&tx, node, p)?;
            }
            tx.execute(
                "INSERT INTO nodes (id, telemetry_seq) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET telemetry_seq = ?2",
                params![node, to_i64(seq)],
            )?;
            tx.commit()?;
            Ok(Recorded::Stored)
        })();
        result.map_err(|e| self.err(e))
    }

    /// The highest batch sequence number stored for `node`.
    pub fn telemetry_seq(&self, node: &str) -> Result<Option<u64>, StoreError> {
        let seq: Option<Option<i64>> = self
            .conn()
            .query_row(
                "SELECT telemetry_seq FROM nodes WHERE id = ?1",
                [node],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(seq.flatten().and_then(|s| u64::try_from(s).ok()))
    }

    /// The points of `node` (or of all nodes, summed per interval) since `since`, oldest first.
    pub fn series(&self, node: Option<&str>, since: i64) -> Result<Vec<Point>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT at, max(width), sum(requests), sum(denies), sum(on_site), sum(off_site),
                   sum(failovers), sum(dropped), max(p50_ms), max(p95_ms)
                 FROM telemetry WHERE at >= ?2 AND (?1 IS NULL OR node = ?1)
                 GROUP BY at ORDER BY at",
            )
            .map_err(|e| self.err(e))?;
        let get = |r: &rusqlite::Row<'_>, i| -> rusqlite::Result<u64> {
            Ok(u64::try_from(r.get::<_, i64>(i)?).unwrap_or(0))
        };
        let rows = stmt
            .query_map(params![node, since], |r| {
                Ok(Point {
                    at: r.get(0)?,
                    width: r.get(1)?,
                    requests: get(r, 2)?,
                    denies: get(r, 3)?,
                    on_site: get(r, 4)?,
                    off_site: get(r, 5)?,
                    failovers: get(r, 6)?,
                    dropped: get(r, 7)?,
                    p50_ms: r.get(8)?,
                    p95_ms: r.get(9)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e));
        rows
    }

    /// Applies retention (drops points, events and refusals older than `now - retention`) and
    /// folds fine points older than an hour into 5-minute points.
    pub fn compact(&self, now: i64, retention_secs: i64) -> Result<(), StoreError> {
        let cutoff = now - retention_secs;
        let fine_before = now - FINE_FOR;
        {
            let mut conn = self.conn();
            let result = (|| {
                let tx = conn.transaction()?;
                tx.execute("DELETE FROM telemetry WHERE at < ?1", [cutoff])?;
                let mut fine: Vec<(String, Point)> = Vec::new();
                {
                    let mut stmt = tx.prepare(
                        "SELECT node, at, requests, denies, on_site, off_site, failovers, dropped,
                           p50_ms, p95_ms FROM telemetry WHERE width < ?1 AND at < ?2",
                    )?;
                    let rows = stmt.query_map(params![COARSE_WIDTH, fine_before], |r| {
                        let n = |i| -> rusqlite::Result<u64> {
                            Ok(u64::try_from(r.get::<_, i64>(i)?).unwrap_or(0))
                        };
                        let at: i64 = r.get(1)?;
                        Ok((
                            r.get(0)?,
                            Point {
                                at: at - at.rem_euclid(COARSE_WIDTH),
                                width: COARSE_WIDTH,
                                requests: n(2)?,
                                denies: n(3)?,
                                on_site: n(4)?,
                                off_site: n(5)?,
                                failovers: n(6)?,
                                dropped: n(7)?,
                                p50_ms: r.get(8)?,
                                p95_ms: r.get(9)?,
                            },
                        ))
                    })?;
                    for row in rows {
                        fine.push(row?);
                    }
                }
                tx.execute(
                    "DELETE FROM telemetry WHERE width < ?1 AND at < ?2",
                    params![COARSE_WIDTH, fine_before],
                )?;
                for (node, p) in &fine {
                    add_point(&tx, node, p)?;
                }
                tx.commit()
            })();
            result.map_err(|e| self.err(e))?;
        }
        self.prune_history(cutoff)
    }
}
