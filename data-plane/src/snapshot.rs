//! Receiving snapshots: long-poll the control plane, verify each snapshot (digest, schema, references, version
//! strictly newer), persist it for restarts, and swap the compiled catalog in atomically. A snapshot that fails
//! any check is refused and the current one stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use switchyard_shared::Snapshot;
use switchyard_shared::protocol::{self, SnapshotPoll};
use switchyard_shared::snapshot::SnapshotError;
use tokio::sync::watch;

use crate::catalog::{Catalog, DecodedKeys};
use crate::config::Secret;
use crate::health::Registry;

/// The snapshot kept for restarts: one file, the body's hex SHA-256 on the first line and the body after it, so
/// that a single rename replaces both at once.
const SEALED_FILE: &str = "snapshot.bin";
/// The layout of earlier versions (body and digest in two files, renamed one after the other): still read at
/// start when there is no `snapshot.bin`, removed once one is written.
const SNAPSHOT_FILE: &str = "snapshot.json";
const DIGEST_FILE: &str = "snapshot.json.sha256";

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("digest mismatch: the body does not hash to the announced SHA-256")]
    Digest,
    #[error("snapshot is not valid JSON: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("snapshot is invalid: {0}")]
    Invalid(#[from] SnapshotError),
    #[error("snapshot version {offered} is not newer than the applied {applied}")]
    Stale { offered: u64, applied: u64 },
    #[error("snapshot verification was aborted")]
    Aborted,
}

/// The catalog the request path reads, swapped whole when a newer snapshot is applied.
pub struct SnapshotStore {
    current: ArcSwap<Catalog>,
    version_tx: watch::Sender<u64>,
    dir: PathBuf,
    health: Arc<Registry>,
}

impl SnapshotStore {
    pub fn new(dir: PathBuf, health: Arc<Registry>) -> Self {
        Self { current: ArcSwap::from_pointee(Catalog::empty()), version_tx: watch::channel(0).0, dir, health }
    }

    /// The catalog to serve one request from; cheap, lock-free.
    pub fn load(&self) -> arc_swap::Guard<Arc<Catalog>> {
        self.current.load()
    }

    /// An owned reference to the current catalog, for a request that outlives a borrow (streams).
    pub fn load_full(&self) -> Arc<Catalog> {
        self.current.load_full()
    }

    pub fn version(&self) -> u64 {
        self.current.load().version
    }

    /// Resolves once a version at least `v` is applied.
    pub async fn wait_for_version(&self, v: u64) {
        let mut rx = self.version_tx.subscribe();
        // An error means the store was dropped: nothing more will ever be applied.
        let _ = rx.wait_for(|applied| *applied >= v).await;
    }

    /// Verifies a snapshot body, swaps it in, then writes it to disk before returning.
    ///
    /// Ordering: digest, decode, validate and compile run on a blocking thread (a 1M-key snapshot takes a good
    /// fraction of a second of CPU that must not stall a runtime worker); the swap follows at once, so requests
    /// see the new version before the file is written; the file is fsynced before `apply` returns, and the sync
    /// loop reports a version as applied to the control plane only after that. A crash between the swap and
    /// the end of the write leaves the previous file on disk (one temp file holding digest and body, fsynced, then
    /// renamed): the node restarts from the previous snapshot and the control plane, which has not seen this
    /// version acknowledged, sends it again. The write runs on a blocking thread and completes even if the caller
    /// is dropped; [`run_sync`] never drops an apply on `stop`.
    pub async fn apply(&self, body: Bytes, digest: &str) -> Result<u64, ApplyError> {
        let version = self.install(body.clone(), digest.to_owned()).await?;
        if let Err(e) = persist(&self.dir, body, digest).await {
            tracing::error!(error = %e, dir = %self.dir.display(), "could not persist snapshot; serving it from memory");
        }
        Ok(version)
    }

    /// Applies the snapshot kept on disk by an earlier run, if there is a valid one.
    pub async fn load_from_disk(&self) -> Option<u64> {
        let (body, digest) = match tokio::fs::read(self.dir.join(SEALED_FILE)).await {
            Ok(sealed) => {
                let sealed = Bytes::from(sealed);
                let Some(eol) = sealed.iter().position(|&b| b == b'\n') else {
                    tracing::warn!("ignoring the snapshot on disk: no digest line");
                    return None;
                };
                let digest = String::from_utf8_lossy(&sealed[..eol]).trim().to_owned();
                (sealed.slice(eol + 1..), digest)
            }
            Err(_) => {
                let body = tokio::fs::read(self.dir.join(SNAPSHOT_FILE)).await.ok()?;
                let digest = tokio::fs::read_to_string(self.dir.join(DIGEST_FILE)).await.ok()?;
                (body.into(), digest.trim().to_owned())
            }
        };
        match self.install(body, digest).await {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring the snapshot on disk");
                None
            }
        }
    }

    /// Verifies and compiles off the runtime, then swaps; the previous catalog is freed off the runtime too.
    async fn install(&self, body: Bytes, digest: String) -> Result<u64, ApplyError> {
        let applied = self.version();
        let health = self.health.clone();
        let catalog = tokio::task::spawn_blocking(move || {
            let snapshot = verify(&body, &digest, applied)?;
            Ok::<_, ApplyError>(Catalog::from_decoded(snapshot, &health))
        })
        .await
        .map_err(|_| ApplyError::Aborted)??;
        let version = catalog.version;
        let new = Arc::new(catalog);
        // The version is checked again at the swap, atomically: another apply may have won while this one compiled.
        let old = self.current.rcu(|current| if current.version < version { new.clone() } else { current.clone() });
        if old.version >= version {
            return Err(ApplyError::Stale { offered: version, applied: old.version });
        }
        self.health.retain_used();
        self.version_tx.send_replace(version);
        tracing::info!(version, keys = new.key_count(), models = new.model_count(), "snapshot applied");
        tokio::task::spawn_blocking(move || drop(old));
        Ok(version)
    }
}

/// Digest, decoding, internal references, and a version strictly newer than the one being served. Keys are
/// decoded straight into the catalog's key table (`DecodedKeys`): at 1M keys, decoding them into `KeyEntry`s
/// first was most of the apply time.
pub fn verify(body: &[u8], digest: &str, applied: u64) -> Result<Snapshot<DecodedKeys>, ApplyError> {
    if protocol::body_digest(body) != digest {
        return Err(ApplyError::Digest);
    }
    let snapshot: Snapshot<DecodedKeys> = serde_json::from_slice(body)?;
    snapshot.validate()?;
    if snapshot.version <= applied {
        return Err(ApplyError::Stale { offered: snapshot.version, applied });
    }
    Ok(snapshot)
}

/// Writes digest and body to one temp file, fsyncs it, renames it over the previous one and fsyncs the directory,
/// so a crash at any point leaves the old snapshot or the new one, never a mix or a torn file. Runs on a blocking
/// thread: once started it completes even if the caller is dropped. The file holds provider credentials: it is
/// readable by the owner only.
async fn persist(dir: &Path, body: Bytes, digest: &str) -> std::io::Result<()> {
    let dir = dir.to_path_buf();
    let digest = digest.to_owned();
    tokio::task::spawn_blocking(move || persist_blocking(&dir, &body, &digest))
        .await
        .map_err(|e| std::io::Error::other(format!("snapshot write aborted: {e}")))?
}

fn persist_blocking(dir: &Path, body: &[u8], digest: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let path = dir.join(SEALED_FILE);
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(digest.as_bytes())?;
    f.write_all(b"\n")?;
    f.write_all(body)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, &path)?;
    // The rename itself survives a power loss only once the directory is synced.
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    for legacy in [SNAPSHOT_FILE, DIGEST_FILE] {
        let _ = std::fs::remove_file(dir.join(legacy));
    }
    Ok(())
}

/// Keeps the store current: long-polls the control plane until `stop` fires. Failures are logged and retried
/// with backoff while the node goes on serving its last snapshot.
///
/// `stop` interrupts the poll (the wait and the download), never an apply: a snapshot already swapped in is
/// written to disk before the task ends, so a node stopped right after taking a new version restarts on it.
pub async fn run_sync(
    store: Arc<SnapshotStore>,
    client: reqwest::Client,
    control_plane_url: String,
    node_token: Secret,
    node_id: String,
    wait: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let url = format!("{}{}", control_plane_url.trim_end_matches('/'), protocol::SNAPSHOT_PATH);
    let mut backoff = Duration::from_millis(100);
    loop {
        let poll = SnapshotPoll { node_id: node_id.clone(), applied: store.version(), wait_secs: wait.as_secs() };
        let attempt = fetch(&client, &url, &node_token, &poll, wait);
        let fetched = tokio::select! {
            r = attempt => r,
            _ = stop.changed() => return,
        };
        let outcome = match fetched {
            Ok(Some((body, digest))) => match store.apply(body, &digest).await {
                Ok(_) | Err(ApplyError::Stale { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            },
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "snapshot poll failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum PollError {
    #[error("control plane unreachable: {0}")]
    Http(#[from] reqwest::Error),
    #[error("control plane answered {0}")]
    Status(reqwest::StatusCode),
    #[error("snapshot refused: {0}")]
    Apply(#[from] ApplyError),
}

/// One long poll: `Some((body, digest))` when the control plane has a newer snapshot, `None` when it has not.
async fn fetch(
    client: &reqwest::Client,
    url: &str,
    token: &Secret,
    poll: &SnapshotPoll,
    wait: Duration,
) -> Result<Option<(Bytes, String)>, PollError> {
    // node ids are restricted to URL-safe characters when the node starts, so no encoding is needed.
    let url = format!("{url}?node_id={}&applied={}&wait_secs={}", poll.node_id, poll.applied, poll.wait_secs);
    let res = client.get(url).bearer_auth(token.expose()).timeout(wait + Duration::from_secs(10)).send().await?;
    match res.status() {
        reqwest::StatusCode::NO_CONTENT => Ok(None),
        reqwest::StatusCode::OK => {
            let digest = res
                .headers()
                .get(protocol::SNAPSHOT_SHA256_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            Ok(Some((res.bytes().await?, digest)))
        }
        s => Err(PollError::Status(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_shared::snapshot::{KeyEntry, TeamEntry};

    fn body(version: u64, team_of_key: i64) -> (Bytes, String) {
        let mut s = Snapshot::empty(chrono::Utc::now());
        s.version = version;
        s.teams = vec![TeamEntry { id: 1, name: "t".into() }];
        s.keys = vec![KeyEntry {
            id: 1,
            hash: switchyard_shared::KeyHash::of("k"),
            team_id: team_of_key,
            name: "k".into(),
            allowed_models: None,
            expires_at: None,
        }];
        let bytes = Bytes::from(serde_json::to_vec(&s).unwrap());
        let digest = protocol::body_digest(&bytes);
        (bytes, digest)
    }

    #[tokio::test]
    async fn bad_snapshots_are_refused_and_the_current_one_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::new(dir.path().to_path_buf(), Default::default());
        let (b, d) = body(3, 1);
        assert_eq!(store.apply(b.clone(), &d).await.unwrap(), 3);

        assert!(matches!(store.apply(b.clone(), "00").await, Err(ApplyError::Digest)));
        assert!(matches!(store.apply(b, &d).await, Err(ApplyError::Stale { offered: 3, applied: 3 })));
        let (older, d) = body(2, 1);
        assert!(matches!(store.apply(older, &d).await, Err(ApplyError::Stale { .. })));
        let (dangling, d) = body(4, 99);
        assert!(matches!(store.apply(dangling, &d).await, Err(ApplyError::Invalid(_))));
        let garbage = Bytes::from_static(b"{not json");
        let d = protocol::body_digest(&garbage);
        assert!(matches!(store.apply(garbage, &d).await, Err(ApplyError::Decode(_))));

        assert_eq!(store.version(), 3);
        assert!(store.load().key(&switchyard_shared::KeyHash::of("k")).is_some());
    }

    #[tokio::test]
    async fn an_applied_snapshot_is_on_disk_for_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::new(dir.path().to_path_buf(), Default::default());
        let (b, d) = body(7, 1);
        store.apply(b, &d).await.unwrap();

        let restarted = SnapshotStore::new(dir.path().to_path_buf(), Default::default());
        assert_eq!(restarted.load_from_disk().await, Some(7));
        assert_eq!(restarted.version(), 7);

        // A write killed half-way leaves only its temp file: the previous snapshot is what loads.
        std::fs::write(dir.path().join(SEALED_FILE).with_extension("tmp"), b"0123\n{\"vers").unwrap();
        let after_crash = SnapshotStore::new(dir.path().to_path_buf(), Default::default());
        assert_eq!(after_crash.load_from_disk().await, Some(7));

        // A tampered file is ignored rather than served.
        let sealed = std::fs::read(dir.path().join(SEALED_FILE)).unwrap();
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() = b' ';
        tampered.push(b' ');
        std::fs::write(dir.path().join(SEALED_FILE), &tampered).unwrap();
        let again = SnapshotStore::new(dir.path().to_path_buf(), Default::default());
        assert_eq!(again.load_from_disk().await, None);
        assert_eq!(again.version(), 0);
        std::fs::write(dir.path().join(SEALED_FILE), b"{}").unwrap();
        assert_eq!(SnapshotStore::new(dir.path().to_path_buf(), Default::default()).load_from_disk().await, None);
    }

    #[tokio::test]
    async fn a_snapshot_in_the_earlier_two_file_layout_still_loads_and_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (b, d) = body(5, 1);
        std::fs::write(dir.path().join(SNAPSHOT_FILE), &b).unwrap();
        std::fs::write(dir.path().join(DIGEST_FILE), &d).unwrap();
        let store = SnapshotStore::new(dir.path().to_path_buf(), Default::default());
        assert_eq!(store.load_from_disk().await, Some(5));

        let (b, d) = body(6, 1);
        store.apply(b, &d).await.unwrap();
        assert!(!dir.path().join(SNAPSHOT_FILE).exists() && !dir.path().join(DIGEST_FILE).exists());
        let restarted = SnapshotStore::new(dir.path().to_path_buf(), Default::default());
        assert_eq!(restarted.load_from_disk().await, Some(6));
    }
}
