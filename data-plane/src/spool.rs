//! The durable usage spool: an append-only file of usage records (one JSON object per line) in the node's state
//! directory, between the request path's in-memory queue and the control plane.
//!
//! - Each request appends its own record ([`Spool::append_one`]: one `write` of one line under a short lock, no
//!   fsync) before its client gets the end of the response; the reporter's appender appends, in one write, the
//!   records whose own write failed. The sender reads from the acknowledged offset, posts the lines as they are
//!   (no re-parse), and advances the offset once the control plane acknowledges them. A failed write is cut back
//!   off the file, so it never holds a torn line between whole ones.
//! - Acknowledged bytes are reclaimed: the file is truncated when everything in it is acknowledged, and the
//!   unacknowledged tail is copied to a fresh file when the acknowledged prefix grows past [`COMPACT_MIN`] bytes
//!   and past the tail (the bulk copied outside the lock, only what was appended meanwhile under it).
//! - At open, the file is replayed from the start in order. A torn last line (a crash mid-write) or a line that
//!   is not a record is dropped and logged. Records already acknowledged before a crash may be sent again; the
//!   control plane ingests by record id, so that never double-counts.
//! - Bounded: unacknowledged bytes never exceed the limit. A record that does not fit is dropped and counted in
//!   `switchyard_usage_records_dropped_total` (serving goes on: a billing outage does not become a traffic
//!   outage); a warning is logged when the spool passes 80 % of its bound, and the bound is exported as a metric.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
#[cfg(unix)]
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use switchyard_shared::UsageRecord;

/// Acknowledged bytes kept in the file before it is compacted (when they also outweigh the unacknowledged tail).
pub const COMPACT_MIN: u64 = 1 << 20;

/// Most bytes read for one batch.
const READ_MAX: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("usage spool {path}: {source}")]
    Io { path: String, source: io::Error },
}

/// What an append did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub written: usize,
    /// Records refused because the spool is at its bound.
    pub dropped: usize,
}

/// Records read for one batch: the raw lines joined by commas (a JSON array's inside), and where the next
/// batch starts.
pub struct Chunk {
    pub body: Vec<u8>,
    pub records: usize,
    pub next: u64,
}

pub struct Spool {
    path: PathBuf,
    limit: u64,
    inner: Mutex<Inner>,
}

struct Inner {
    file: File,
    /// Logical offset of the file's first byte (offsets only grow, across truncations and compactions).
    base: u64,
    /// Logical end of the file.
    end: u64,
    /// Everything before this logical offset is acknowledged.
    acked: u64,
    /// A near-full warning was logged and the spool has not drained below half since.
    warned: bool,
}

impl Spool {
    /// Opens (or creates) `dir/usage-spool.<node_id>.jsonl`, keeping its valid records for replay.
    pub fn open(dir: &Path, node_id: &str, limit: u64) -> Result<Self, SpoolError> {
        let path = dir.join(format!("usage-spool.{node_id}.jsonl"));
        let err = |source| SpoolError::Io { path: path.display().to_string(), source };
        std::fs::create_dir_all(dir).map_err(err)?;
        let existing = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(err(e)),
        };
        let (kept, records, bad) = valid_lines(&existing);
        if bad > 0 || kept.len() != existing.len() {
            tracing::warn!(bad_lines = bad, "usage spool had a torn or unreadable tail; those lines were dropped");
            replace_file(&path, &kept).map_err(err)?;
        }
        if records > 0 {
            tracing::info!(records, bytes = kept.len(), "replaying usage records spooled before the restart");
        }
        let file = OpenOptions::new().read(true).append(true).create(true).open(&path).map_err(err)?;
        let end = kept.len() as u64;
        Ok(Self { path, limit, inner: Mutex::new(Inner { file, base: 0, end, acked: 0, warned: false }) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Unacknowledged bytes (what the bound applies to).
    pub fn pending_bytes(&self) -> u64 {
        let i = self.lock();
        i.end - i.acked
    }

    /// Logical end: once [`Spool::acked`] reaches it, everything appended so far is acknowledged.
    pub fn end(&self) -> u64 {
        self.lock().end
    }

    pub fn acked(&self) -> u64 {
        self.lock().acked
    }

    /// Appends records in order with one write; records past the bound are dropped (and reported as such).
    pub fn append(&self, records: &[UsageRecord]) -> Result<Appended, SpoolError> {
        let mut buf = Vec::with_capacity(records.len() * 512);
        let mut lines = Vec::with_capacity(records.len());
        let mut out = Appended::default();
        for r in records {
            let before = buf.len();
            if serde_json::to_writer(&mut buf, r).is_err() {
                buf.truncate(before);
                out.dropped += 1;
                continue;
            }
            buf.push(b'\n');
            lines.push(buf.len() - before);
        }
        let mut inner = self.lock();
        let room = self.limit.saturating_sub(inner.end - inner.acked);
        // Whole lines that fit, in order; the rest is dropped.
        let mut fit = 0;
        let mut fitting = 0;
        for len in &lines {
            if (fit + len) as u64 > room {
                break;
            }
            fit += len;
            fitting += 1;
        }
        out.written = fitting;
        out.dropped += lines.len() - fitting;
        self.write_locked(&mut inner, &buf[..fit])?;
        Ok(out)
    }

    /// Appends one record with one `write` (the request path's call: when it returns, the record survives the
    /// process being killed). `Ok(false)`: the spool is at its bound and the record was not written.
    pub fn append_one(&self, record: &UsageRecord) -> Result<bool, SpoolError> {
        let mut line = Vec::with_capacity(640);
        serde_json::to_writer(&mut line, record).map_err(|e| self.io(io::Error::other(e)))?;
        line.push(b'\n');
        let mut inner = self.lock();
        if (inner.end - inner.acked).saturating_add(line.len() as u64) > self.limit {
            return Ok(false);
        }
        self.write_locked(&mut inner, &line)?;
        Ok(true)
    }

    /// Writes whole lines at the end. A failed write (disk full) is cut back off the file, so the file never
    /// holds a torn line between whole ones.
    fn write_locked(&self, inner: &mut Inner, buf: &[u8]) -> Result<(), SpoolError> {
        if !buf.is_empty() {
            if let Err(source) = inner.file.write_all(buf) {
                let _ = inner.file.set_len(inner.end - inner.base);
                return Err(self.io(source));
            }
            inner.end += buf.len() as u64;
        }
        let pending = inner.end - inner.acked;
        if !inner.warned && pending * 5 > self.limit * 4 {
            inner.warned = true;
            tracing::warn!(bytes = pending, limit = self.limit, "usage spool is over 80% of its bound");
        } else if inner.warned && pending * 2 < self.limit {
            inner.warned = false;
        }
        Ok(())
    }

    /// Up to `max_records` unacknowledged lines from the acknowledged offset, or `None` when all is acknowledged.
    pub fn read_from_acked(&self, max_records: usize) -> Result<Option<Chunk>, SpoolError> {
        let (file, start, len, acked) = {
            let i = self.lock();
            let len = i.end - i.acked;
            if len == 0 {
                return Ok(None);
            }
            (i.file.try_clone().map_err(|source| self.io(source))?, i.acked - i.base, len, i.acked)
        };
        let mut data = vec![0; usize::try_from(len.min(READ_MAX)).unwrap_or(usize::MAX)];
        read_exact_at(&file, &mut data, start).map_err(|source| self.io(source))?;
        if !data.contains(&b'\n') && len > READ_MAX {
            // A line longer than a read: take it whole.
            data = vec![0; usize::try_from(len).unwrap_or(usize::MAX)];
            read_exact_at(&file, &mut data, start).map_err(|source| self.io(source))?;
        }
        let mut body = Vec::with_capacity(data.len());
        let mut records = 0;
        let mut consumed = 0;
        for line in data.split_inclusive(|b| *b == b'\n') {
            if records == max_records || line.last() != Some(&b'\n') {
                break;
            }
            consumed += line.len();
            let line = &line[..line.len() - 1];
            if line.is_empty() {
                continue;
            }
            if records > 0 {
                body.push(b',');
            }
            body.extend_from_slice(line);
            records += 1;
        }
        Ok(Some(Chunk { body, records, next: acked + consumed as u64 }))
    }

    /// Marks everything before `upto` acknowledged and reclaims space: truncation when nothing is left,
    /// compaction when the acknowledged prefix is large. The lock (which the request path takes to append) is
    /// held only for short steps: the bulk of a compaction is copied and synced outside it.
    pub fn ack(&self, upto: u64) -> Result<(), SpoolError> {
        let (file, base, from, to) = {
            let mut i = self.lock();
            i.acked = upto.clamp(i.acked, i.end);
            let prefix = i.acked - i.base;
            let tail = i.end - i.acked;
            if tail == 0 {
                i.file.set_len(0).map_err(|source| self.io(source))?;
                i.base = i.end;
                return Ok(());
            }
            if prefix < COMPACT_MIN || prefix < tail {
                return Ok(());
            }
            (i.file.try_clone().map_err(|source| self.io(source))?, i.base, i.acked, i.end)
        };
        // Only the sender acknowledges, so `base` and `acked` do not move until this returns; appends only add
        // bytes after `to`.
        let read = |from: u64, to: u64| -> Result<Vec<u8>, SpoolError> {
            let mut data = vec![0; usize::try_from(to - from).unwrap_or(usize::MAX)];
            read_exact_at(&file, &mut data, from - base).map_err(|source| self.io(source))?;
            Ok(data)
        };
        let tmp = self.path.with_extension("jsonl.tmp");
        let mut out = File::create(&tmp).map_err(|source| self.io(source))?;
        let bulk = read(from, to)?;
        out.write_all(&bulk).and_then(|()| out.sync_data()).map_err(|source| self.io(source))?;
        drop(bulk);
        let mut i = self.lock();
        // What was appended while the bulk was copied (little), then the swap.
        let late = read(to, i.end)?;
        out.write_all(&late).map_err(|source| self.io(source))?;
        std::fs::rename(&tmp, &self.path).map_err(|source| self.io(source))?;
        i.file = OpenOptions::new().read(true).append(true).open(&self.path).map_err(|source| self.io(source))?;
        i.base = from;
        Ok(())
    }

    /// Flushes the file to stable storage (process death never loses written bytes; this covers power loss).
    pub fn sync(&self) -> Result<(), SpoolError> {
        let file = self.lock().file.try_clone().map_err(|source| self.io(source))?;
        file.sync_data().map_err(|source| self.io(source))
    }

    fn io(&self, source: io::Error) -> SpoolError {
        SpoolError::Io { path: self.path.display().to_string(), source }
    }
}

/// The prefix of `data` made of complete lines that parse as usage records (invalid lines cut out), the number
/// of records, and the number of lines dropped.
fn valid_lines(data: &[u8]) -> (Vec<u8>, usize, usize) {
    let mut kept = Vec::with_capacity(data.len());
    let (mut records, mut bad) = (0, 0);
    for line in data.split_inclusive(|b| *b == b'\n') {
        let complete = line.last() == Some(&b'\n');
        let body = if complete { &line[..line.len() - 1] } else { line };
        if body.is_empty() {
            continue;
        }
        if complete && serde_json::from_slice::<UsageRecord>(body).is_ok() {
            kept.extend_from_slice(line);
            records += 1;
        } else {
            bad += 1;
        }
    }
    (kept, records, bad)
}

/// Writes `data` to a temporary file beside `path`, syncs it and renames it over `path`.
fn replace_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("jsonl.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    file.read_exact_at(buf, offset)
}

#[cfg(not(unix))]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut f = file.try_clone()?;
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_shared::usage::UsageSource;

    fn record(n: u64) -> UsageRecord {
        UsageRecord {
            id: uuid::Uuid::now_v7(),
            request_id: format!("req-{n}"),
            node_id: "n1".into(),
            team_id: 1,
            key_id: 2,
            model: "m".into(),
            provider_id: None,
            upstream_model: None,
            started_at: chrono::Utc::now(),
            duration_us: n,
            ttft_us: None,
            status: 200,
            error_code: None,
            stream: false,
            prompt_tokens: n,
            completion_tokens: 1,
            cached_input_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            usage_source: UsageSource::Upstream,
            cost_micros: 0,
        }
    }

    fn ids(chunk: &Chunk) -> Vec<String> {
        let v: Vec<UsageRecord> = serde_json::from_slice(&[b"[", &chunk.body[..], b"]"].concat()).unwrap();
        v.into_iter().map(|r| r.request_id).collect()
    }

    #[test]
    fn records_survive_a_reopen_in_order_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), "n1", 1 << 20).unwrap();
        let written = spool.append(&(0..5).map(record).collect::<Vec<_>>()).unwrap();
        assert_eq!(written, Appended { written: 5, dropped: 0 });
        let first = spool.read_from_acked(2).unwrap().unwrap();
        assert_eq!(ids(&first), ["req-0", "req-1"]);
        spool.ack(first.next).unwrap();
        drop(spool);

        // A restart replays from the start of the file; acknowledged-but-kept lines are re-sent (idempotent).
        let spool = Spool::open(dir.path(), "n1", 1 << 20).unwrap();
        let all = spool.read_from_acked(100).unwrap().unwrap();
        assert_eq!(ids(&all), ["req-0", "req-1", "req-2", "req-3", "req-4"]);
        spool.ack(all.next).unwrap();
        assert!(spool.read_from_acked(100).unwrap().is_none());
        assert_eq!(std::fs::metadata(spool.path()).unwrap().len(), 0, "fully acknowledged spool is truncated");
        spool.append(&[record(9)]).unwrap();
        assert_eq!(ids(&spool.read_from_acked(100).unwrap().unwrap()), ["req-9"]);
    }

    #[test]
    fn a_torn_last_line_is_dropped_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), "n1", 1 << 20).unwrap();
        spool.append(&[record(1), record(2)]).unwrap();
        let path = spool.path().to_path_buf();
        drop(spool);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"id":"0193a3c4-7f00-70"#).unwrap();
        drop(f);
        let spool = Spool::open(dir.path(), "n1", 1 << 20).unwrap();
        spool.append(&[record(3)]).unwrap();
        assert_eq!(ids(&spool.read_from_acked(100).unwrap().unwrap()), ["req-1", "req-2", "req-3"]);
    }

    #[test]
    fn the_bound_drops_what_does_not_fit_and_acknowledgement_makes_room() {
        let dir = tempfile::tempdir().unwrap();
        let line = serde_json::to_vec(&record(1)).unwrap().len() as u64 + 1;
        let spool = Spool::open(dir.path(), "n1", line * 3 + line / 2).unwrap();
        let out = spool.append(&(1..=5).map(record).collect::<Vec<_>>()).unwrap();
        assert_eq!(out, Appended { written: 3, dropped: 2 });
        assert!(spool.pending_bytes() <= spool.limit());
        let chunk = spool.read_from_acked(2).unwrap().unwrap();
        spool.ack(chunk.next).unwrap();
        assert_eq!(spool.append(&[record(6), record(7)]).unwrap().written, 2);
        assert_eq!(ids(&spool.read_from_acked(100).unwrap().unwrap()), ["req-3", "req-6", "req-7"]);
    }

    #[test]
    fn single_appends_keep_order_respect_the_bound_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let line = serde_json::to_vec(&record(1)).unwrap().len() as u64 + 1;
        let spool = Spool::open(dir.path(), "n1", line * 2 + line / 2).unwrap();
        assert!(spool.append_one(&record(1)).unwrap());
        assert!(spool.append_one(&record(2)).unwrap());
        assert!(!spool.append_one(&record(3)).unwrap(), "past the bound");
        drop(spool);
        let spool = Spool::open(dir.path(), "n1", 1 << 20).unwrap();
        assert_eq!(ids(&spool.read_from_acked(100).unwrap().unwrap()), ["req-1", "req-2"]);
    }

    #[test]
    fn appends_during_a_compaction_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let spool = std::sync::Arc::new(Spool::open(dir.path(), "n1", 64 << 20).unwrap());
        let n = COMPACT_MIN / 300 + 10;
        spool.append(&(0..n).map(record).collect::<Vec<_>>()).unwrap();
        let chunk = spool.read_from_acked(usize::try_from(n - 3).unwrap()).unwrap().unwrap();
        let writer = {
            let spool = spool.clone();
            std::thread::spawn(move || (0..200).for_each(|i| assert!(spool.append_one(&record(n + i)).unwrap())))
        };
        spool.ack(chunk.next).unwrap();
        writer.join().unwrap();
        let rest = spool.read_from_acked(1000).unwrap().unwrap();
        let expected: Vec<String> = (n - 3..n + 200).map(|i| format!("req-{i}")).collect();
        assert_eq!(ids(&rest), expected);
        drop(spool);
        let reopened = Spool::open(dir.path(), "n1", 64 << 20).unwrap();
        assert_eq!(reopened.read_from_acked(1000).unwrap().unwrap().records, 203);
    }

    #[test]
    fn a_large_acknowledged_prefix_is_compacted_away() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), "n1", 64 << 20).unwrap();
        let n = COMPACT_MIN / 300 + 10;
        spool.append(&(0..n).map(record).collect::<Vec<_>>()).unwrap();
        let chunk = spool.read_from_acked(usize::try_from(n - 3).unwrap()).unwrap().unwrap();
        spool.ack(chunk.next).unwrap();
        assert!(std::fs::metadata(spool.path()).unwrap().len() < 2_000, "the acknowledged prefix is still on disk");
        spool.append(&[record(n)]).unwrap();
        let rest = spool.read_from_acked(100).unwrap().unwrap();
        assert_eq!(ids(&rest), [n - 3, n - 2, n - 1, n].map(|i| format!("req-{i}")));
        drop(spool);
        let reopened = Spool::open(dir.path(), "n1", 64 << 20).unwrap();
        assert_eq!(reopened.read_from_acked(100).unwrap().unwrap().records, 4);
    }
}
