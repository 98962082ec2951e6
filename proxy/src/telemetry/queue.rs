//! The on-disk telemetry queue, so that batches survive a long outage and a restart.
//!
//! ```text
//! DATA_DIR/telemetry/<seq, 20 digits>.batch   8 bytes: batches dropped before it (big endian),
//!                                             then the OTLP protobuf
//! DATA_DIR/telemetry/acked                    the highest sequence number the control plane
//!                                             acknowledged
//! ```
//!
//! Batches are written to a temporary file, fsynced and renamed; they are sent oldest first and
//! deleted once acknowledged, so nothing is lost or counted twice (the control plane stores a
//! sequence number once). The queue holds at most `max_bytes`: to make room the oldest batches
//! are deleted, counted, and the count travels with the next batch.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One queued batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub seq: u64,
    pub dropped_before: u64,
    pub otlp: Vec<u8>,
}

#[derive(Debug)]
struct State {
    next_seq: u64,
    acked: u64,
    /// Dropped since the last batch was queued.
    dropped_pending: u64,
    dropped_total: u64,
}

/// The queue in one folder.
#[derive(Debug)]
pub struct Queue {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
}

impl Queue {
    /// Opens (or creates) the queue in `dir`, removing batches already acknowledged and any
    /// half-written file.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, String> {
        fs::create_dir_all(dir).map_err(|e| format!("`{}`: {e}", dir.display()))?;
        let acked = match fs::read_to_string(dir.join("acked")) {
            Ok(t) => t.trim().parse::<u64>().map_err(|_| {
                format!(
                    "`{}`: expected a sequence number, found `{}`",
                    dir.join("acked").display(),
                    t.trim().escape_default()
                )
            })?,
            Err(_) => 0,
        };
        let mut max_seq = acked;
        for (seq, path) in list(dir)? {
            if seq <= acked {
                let _ = fs::remove_file(path);
            }
            max_seq = max_seq.max(seq);
        }
        for e in fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
            state: Mutex::new(State {
                next_seq: max_seq + 1,
                acked,
                dropped_pending: 0,
                dropped_total: 0,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues one OTLP batch; returns its sequence number, or `None` when it alone is larger
    /// than the queue (then it is dropped and counted).
    pub fn push(&self, otlp: &[u8]) -> Result<Option<u64>, String> {
        let mut st = self.lock();
        let size = otlp.len() as u64 + 8;
        if size > self.max_bytes {
            st.dropped_pending += 1;
            st.dropped_total += 1;
            return Ok(None);
        }
        // Make room: the oldest batches go first.
        let mut files = list(&self.dir)?;
        let mut used: u64 = files
            .iter()
            .map(|(_, p)| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        files.sort();
        let mut oldest = files.into_iter();
        while used + size > self.max_bytes {
            let Some((_, path)) = oldest.next() else {
                break;
            };
            used -= fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&path).map_err(|e| format!("`{}`: {e}", path.display()))?;
            st.dropped_pending += 1;
            st.dropped_total += 1;
        }
        let seq = st.next_seq;
        let mut bytes = Vec::with_capacity(otlp.len() + 8);
        bytes.extend_from_slice(&st.dropped_pending.to_be_bytes());
        bytes.extend_from_slice(otlp);
        let path = self.dir.join(format!("{seq:020}.batch"));
        write_atomic(&path, &bytes)?;
        st.next_seq += 1;
        st.dropped_pending = 0;
        Ok(Some(seq))
    }

    /// Up to `limit` queued batches after `after`, oldest first.
    pub fn pending(&self, after: u64, limit: usize) -> Result<Vec<Batch>, String> {
        let _st = self.lock();
        let mut files: Vec<_> = list(&self.dir)?
            .into_iter()
            .filter(|(s, _)| *s > after)
            .collect();
        files.sort();
        let mut out = Vec::new();
        for (seq, path) in files.into_iter().take(limit) {
            let bytes = match fs::read(&path) {
                Ok(b) if b.len() >= 8 => b,
                // Deleted meanwhile, or damaged: a damaged batch is dropped and counted.
                Ok(_) => {
                    let _ = fs::remove_file(&path);
                    continue;
                }
                Err(_) => continue,
            };
            let mut head = [0u8; 8];
            head.copy_from_slice(&bytes[..8]);
            out.push(Batch {
                seq,
                dropped_before: u64::from_be_bytes(head),
                otlp: bytes[8..].to_vec(),
            });
        }
        Ok(out)
    }

    /// The control plane has every batch up to `seq`: delete them.
    pub fn ack(&self, seq: u64) -> Result<(), String> {
        let mut st = self.lock();
        if seq <= st.acked {
            return Ok(());
        }
        write_atomic(&self.dir.join("acked"), seq.to_string().as_bytes())?;
        st.acked = seq;
        for (s, path) in list(&self.dir)? {
            if s <= seq {
                let _ = fs::remove_file(path);
            }
        }
        Ok(())
    }

    /// Batches dropped to make room (or too large), since the queue was opened.
    pub fn dropped_total(&self) -> u64 {
        self.lock().dropped_total
    }

    /// Batches waiting for an acknowledgement.
    pub fn len(&self) -> usize {
        list(&self.dir).map(|l| l.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, String> {
    let rd = fs::read_dir(dir).map_err(|e| format!("`{}`: {e}", dir.display()))?;
    Ok(rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let seq = name.strip_suffix(".batch")?.parse().ok()?;
            Some((seq, e.path()))
        })
        .collect())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let err = |e: std::io::Error| format!("`{}`: {e}", tmp.display());
    let mut f = fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    fs::rename(&tmp, path).map_err(|e| format!("`{}`: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_survive_a_reopen_and_go_once_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(q.push(b"one").unwrap(), Some(1));
        assert_eq!(q.push(b"two").unwrap(), Some(2));
        drop(q);
        let q = Queue::open(dir.path(), 1 << 20).unwrap();
        let p = q.pending(0, 10).unwrap();
        assert_eq!(p.iter().map(|b| b.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(p[1].otlp, b"two");
        q.ack(1).unwrap();
        assert_eq!(q.pending(0, 10).unwrap().len(), 1);
        // Sequence numbers are never reused, also after a reopen.
        drop(q);
        let q = Queue::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(q.push(b"three").unwrap(), Some(3));
        q.ack(3).unwrap();
        assert!(q.is_empty());
        drop(q);
        let q = Queue::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(q.push(b"four").unwrap(), Some(4));
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), 3 * (8 + 10)).unwrap();
        for _ in 0..5 {
            q.push(&[7u8; 10]).unwrap();
        }
        let p = q.pending(0, 10).unwrap();
        assert_eq!(p.iter().map(|b| b.seq).collect::<Vec<_>>(), [3, 4, 5]);
        // Batch 4 made room by dropping 1, batch 5 by dropping 2: each says so.
        assert_eq!(p[0].dropped_before, 0);
        assert_eq!(p[1].dropped_before, 1);
        assert_eq!(p[2].dropped_before, 1);
        assert_eq!(q.dropped_total(), 2);
        assert_eq!(q.push(&[0u8; 100]).unwrap(), None, "larger than the queue");
        assert_eq!(q.dropped_total(), 3);
    }

    #[test]
    fn a_damaged_acked_file_is_an_error_not_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("acked"), "x").unwrap();
        assert!(Queue::open(dir.path(), 100)
            .unwrap_err()
            .contains("sequence number"));
    }
}
