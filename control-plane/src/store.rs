//! The control plane's store: one SQLite file (rusqlite, SQLite compiled in).
//!
//! It holds the nodes and their status (online flag, last contact, connected or offline since,
//! the certificate's expiry seen at the handshake), desired and applied bundle versions, bundle
//! refusals, events, telemetry series (see [`telemetry`]), and the published set: the last good
//! revision with its rendered bundles, so that it stays published across a restart. All times
//! are Unix seconds.
//!
//! Calls are short, synchronous and serialized by one mutex around the connection; the async
//! callers accept that small blocking (the store is not on any request path).

pub mod telemetry;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("store `{path}`: {source}")]
pub struct StoreError {
    path: String,
    #[source]
    source: rusqlite::Error,
}

/// The SQLite store.
pub struct Store {
    path: String,
    conn: Mutex<Connection>,
}

/// What the store knows of one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NodeRow {
    pub id: String,
    pub spiffe_id: String,
    pub site: String,
    pub zone: String,
    pub region: String,
    pub software_version: String,
    pub online: bool,
    pub last_contact: Option<i64>,
    /// When the current connection started (online), or when the node went offline.
    pub since: Option<i64>,
    pub desired_commit: Option<String>,
    pub desired_hash: Option<String>,
    pub applied_commit: Option<String>,
    pub applied_hash: Option<String>,
    /// The reason of the node's last refusal of its desired bundle, while that is still desired.
    pub refusal: Option<String>,
    /// `notAfter` of the certificate the node presented last.
    pub cert_not_after: Option<i64>,
    /// Its `notBefore` (none in a store written before it was recorded).
    pub cert_not_before: Option<i64>,
}

/// When the certificate a node presented is valid, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

/// The desired state's view of one node, as [`Store::record_published`] writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DesiredNode<'a> {
    pub id: &'a str,
    pub spiffe_id: &'a str,
    pub site: &'a str,
    pub zone: &'a str,
    pub region: &'a str,
    pub commit: &'a str,
    pub hash: &'a str,
}

/// One event of the fleet's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub at: i64,
    pub node: Option<String>,
    pub kind: String,
    pub message: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS nodes (
    id TEXT PRIMARY KEY,
    spiffe_id TEXT NOT NULL DEFAULT '',
    site TEXT NOT NULL DEFAULT '',
    zone TEXT NOT NULL DEFAULT '',
    region TEXT NOT NULL DEFAULT '',
    software_version TEXT NOT NULL DEFAULT '',
    online INTEGER NOT NULL DEFAULT 0,
    last_contact INTEGER,
    since INTEGER,
    desired_commit TEXT,
    desired_hash TEXT,
    applied_commit TEXT,
    applied_hash TEXT,
    refusal TEXT,
    cert_not_after INTEGER,
    telemetry_seq INTEGER,
    cert_not_before INTEGER
);
CREATE TABLE IF NOT EXISTS refusals (
    at INTEGER NOT NULL, node TEXT NOT NULL, bundle_commit TEXT NOT NULL,
    bundle_hash TEXT NOT NULL, reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    at INTEGER NOT NULL, node TEXT, kind TEXT NOT NULL, message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_at ON events (at);
CREATE TABLE IF NOT EXISTS published (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision TEXT NOT NULL, bundles_json TEXT NOT NULL, at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS telemetry (
    node TEXT NOT NULL, at INTEGER NOT NULL, width INTEGER NOT NULL,
    requests INTEGER NOT NULL, denies INTEGER NOT NULL, on_site INTEGER NOT NULL,
    off_site INTEGER NOT NULL, failovers INTEGER NOT NULL, dropped INTEGER NOT NULL,
    p50_ms REAL, p95_ms REAL,
    PRIMARY KEY (node, at, width)
);
";

const NODE_COLUMNS: &str = "id, spiffe_id, site, zone, region, software_version, online, \
    last_contact, since, desired_commit, desired_hash, applied_commit, applied_hash, refusal, \
    cert_not_after, cert_not_before";

impl Store {
    /// Opens (or creates) the store at `path`; `:memory:` for a store in memory.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let name = path.display().to_string();
        let err = |source| StoreError {
            path: name.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        add_missing_columns(&conn).map_err(err)?;
        // A restart starts with every node offline until it connects again.
        conn.execute("UPDATE nodes SET online = 0 WHERE online = 1", [])
            .map_err(err)?;
        Ok(Store {
            path: name,
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves a consistent SQLite connection behind.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError {
            path: self.path.clone(),
            source,
        }
    }

    /// The path of the store file (`:memory:` for a store in memory).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Sets the desired state's view of a node (from a published revision).
    pub fn upsert_desired(
        &self,
        id: &str,
        spiffe_id: &str,
        (site, zone, region): (&str, &str, &str),
        (commit, hash): (&str, &str),
    ) -> Result<(), StoreError> {
        let node = DesiredNode {
            id,
            spiffe_id,
            site,
            zone,
            region,
            commit,
            hash,
        };
        upsert_desired(&self.conn(), &node).map_err(|e| self.err(e))
    }

    /// Records a newly published revision in one transaction: the desired view of its nodes
    /// (forgetting offline nodes it no longer has), the published set itself (`set`, kept as
    /// JSON: the last good revision, replacing the previous one, and what [`Self::load_published`]
    /// returns) and a `revision-published` event.
    pub fn record_published<T: Serialize>(
        &self,
        revision: &str,
        at: i64,
        set: &T,
        nodes: &[DesiredNode<'_>],
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(set).map_err(|e| self.err(json_error(e)))?;
        let mut conn = self.conn();
        let result = (|| {
            let tx = conn.transaction()?;
            for n in nodes {
                upsert_desired(&tx, n)?;
            }
            let keep: Vec<&str> = nodes.iter().map(|n| n.id).collect();
            remove_absent(&tx, &keep)?;
            tx.execute(
                "INSERT INTO published (id, revision, bundles_json, at) VALUES (1, ?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET revision = ?1, bundles_json = ?2, at = ?3",
                params![revision, json, at],
            )?;
            let message = format!("published revision {}", short(revision));
            insert_event(&tx, at, None, "revision-published", &message)?;
            tx.commit()
        })();
        result.map_err(|e| self.err(e))
    }

    /// The published set [`Self::record_published`] kept last, if any. A stored set that does
    /// not read back as a `T` is an error (naming the store file).
    pub fn load_published<T: DeserializeOwned>(&self) -> Result<Option<T>, StoreError> {
        let json: Option<String> = self
            .conn()
            .query_row("SELECT bundles_json FROM published WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| self.err(json_error(e))))
            .transpose()
    }

    /// A node connected and registered.
    pub fn node_connected(
        &self,
        id: &str,
        software_version: &str,
        applied: Option<(&str, &str)>,
        cert: Validity,
        now: i64,
    ) -> Result<(), StoreError> {
        let (commit, hash) = applied.unzip();
        self.conn()
            .execute(
                "INSERT INTO nodes (id, software_version, online, last_contact, since,
                   applied_commit, applied_hash, cert_not_after, cert_not_before)
                 VALUES (?1, ?2, 1, ?3, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE SET software_version = ?2, online = 1,
                   last_contact = ?3, since = ?3, applied_commit = ?4, applied_hash = ?5,
                   cert_not_after = ?6, cert_not_before = ?7",
                params![
                    id,
                    software_version,
                    now,
                    commit,
                    hash,
                    cert.not_after,
                    cert.not_before
                ],
            )
            .map_err(|e| self.err(e))?;
        self.event(now, Some(id), "online", "connected and registered")
    }

    /// A node's connection ended.
    pub fn node_disconnected(&self, id: &str, reason: &str, now: i64) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE nodes SET online = 0, since = ?2 WHERE id = ?1 AND online = 1",
                params![id, now],
            )
            .map_err(|e| self.err(e))?;
        self.event(now, Some(id), "offline", reason)
    }

    /// Any message from the node.
    pub fn touch(&self, id: &str, now: i64) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE nodes SET last_contact = ?2 WHERE id = ?1",
                params![id, now],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The node applied a bundle.
    pub fn bundle_applied(
        &self,
        id: &str,
        commit: &str,
        hash: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE nodes SET applied_commit = ?2, applied_hash = ?3, refusal = NULL,
                   last_contact = ?4 WHERE id = ?1",
                params![id, commit, hash, now],
            )
            .map_err(|e| self.err(e))?;
        self.event(
            now,
            Some(id),
            "applied",
            &format!("applied bundle {}", short(commit)),
        )
    }

    /// The node refused a bundle.
    pub fn bundle_refused(
        &self,
        id: &str,
        commit: &str,
        hash: &str,
        reason: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO refusals (at, node, bundle_commit, bundle_hash, reason)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![now, id, commit, hash, reason],
        )
        .map_err(|e| self.err(e))?;
        conn.execute(
            "UPDATE nodes SET refusal = ?2, last_contact = ?3 WHERE id = ?1",
            params![id, reason, now],
        )
        .map_err(|e| self.err(e))?;
        drop(conn);
        self.event(
            now,
            Some(id),
            "refused",
            &format!("refused bundle {}: {reason}", short(commit)),
        )
    }

    /// Records an event.
    pub fn event(
        &self,
        at: i64,
        node: Option<&str>,
        kind: &str,
        message: &str,
    ) -> Result<(), StoreError> {
        insert_event(&self.conn(), at, node, kind, message).map_err(|e| self.err(e))
    }

    /// The most recent events, newest first.
    pub fn events(&self, node: Option<&str>, limit: u32) -> Result<Vec<Event>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT at, node, kind, message FROM events
                 WHERE ?1 IS NULL OR node = ?1 ORDER BY at DESC, rowid DESC LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![node, limit], |r| {
                Ok(Event {
                    at: r.get(0)?,
                    node: r.get(1)?,
                    kind: r.get(2)?,
                    message: r.get(3)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e));
        rows
    }

    /// Every node, by id.
    pub fn nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {NODE_COLUMNS} FROM nodes ORDER BY site, id"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], node_row)
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e));
        rows
    }

    /// One node.
    pub fn node(&self, id: &str) -> Result<Option<NodeRow>, StoreError> {
        self.conn()
            .query_row(
                &format!("SELECT {NODE_COLUMNS} FROM nodes WHERE id = ?1"),
                [id],
                node_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Forgets nodes that are no longer in the desired state and are offline.
    pub fn remove_absent(&self, keep: &[&str]) -> Result<usize, StoreError> {
        remove_absent(&self.conn(), keep).map_err(|e| self.err(e))
    }

    /// Deletes events and refusals older than `before`.
    pub fn prune_history(&self, before: i64) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute("DELETE FROM events WHERE at < ?1", [before])
            .map_err(|e| self.err(e))?;
        conn.execute("DELETE FROM refusals WHERE at < ?1", [before])
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

fn upsert_desired(conn: &Connection, n: &DesiredNode<'_>) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO nodes (id, spiffe_id, site, zone, region, desired_commit, desired_hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET spiffe_id = ?2, site = ?3, zone = ?4,
           region = ?5, desired_commit = ?6, desired_hash = ?7,
           refusal = CASE WHEN desired_hash = ?7 THEN refusal ELSE NULL END",
        params![
            n.id,
            n.spiffe_id,
            n.site,
            n.zone,
            n.region,
            n.commit,
            n.hash
        ],
    )?;
    Ok(())
}

fn remove_absent(conn: &Connection, keep: &[&str]) -> rusqlite::Result<usize> {
    let list = serde_json::to_string(keep).unwrap_or_else(|_| "[]".into());
    conn.execute(
        "DELETE FROM nodes WHERE online = 0
           AND id NOT IN (SELECT value FROM json_each(?1))",
        [list],
    )
}

fn insert_event(
    conn: &Connection,
    at: i64,
    node: Option<&str>,
    kind: &str,
    message: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO events (at, node, kind, message) VALUES (?1, ?2, ?3, ?4)",
        params![at, node, kind, message],
    )?;
    Ok(())
}

/// The published set as JSON that does not (de)serialize, as a store error on its column.
fn json_error(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
}

fn node_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<NodeRow> {
    Ok(NodeRow {
        id: r.get(0)?,
        spiffe_id: r.get(1)?,
        site: r.get(2)?,
        zone: r.get(3)?,
        region: r.get(4)?,
        software_version: r.get(5)?,
        online: r.get(6)?,
        last_contact: r.get(7)?,
        since: r.get(8)?,
        desired_commit: r.get(9)?,
        desired_hash: r.get(10)?,
        applied_commit: r.get(11)?,
        applied_hash: r.get(12)?,
        refusal: r.get(13)?,
        cert_not_after: r.get(14)?,
        cert_not_before: r.get(15)?,
    })
}

/// Columns added after a store's first release, added to a store that predates them (SQLite's
/// `CREATE TABLE IF NOT EXISTS` leaves an existing table as it is).
fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('nodes')")?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if !names.iter().any(|n| n == "cert_not_before") {
        conn.execute("ALTER TABLE nodes ADD COLUMN cert_not_before INTEGER", [])?;
    }
    Ok(())
}

/// The first 12 characters of a commit id, for messages.
pub fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

#[cfg(test)]
mod tests;
