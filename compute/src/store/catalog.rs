//! The version protocol over one `Backend` (the layout and its rules are in `store/mod.rs`):
//! versions claimed by "create if absent" on their manifests, StoreBatch fates, pruning.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::backend::{self, Backend, ObjectData};
use super::{validate_name, Condition, Manifest, Staged};
use crate::error::{Error, Result};

const CLAIM_ATTEMPTS: usize = 64;
/// Manifests remembered (a few hundred bytes each).
const MANIFEST_MEMO_ENTRIES: u64 = 100_000;

/// A dataset's newest visible version (if any) and the listing stamp it was resolved at.
type Stamped = (i128, Option<Manifest>);

/// The version protocol over one backend. Cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    backend: Arc<dyn Backend>,
    /// Decided batch fates never change, so they are remembered.
    batch_states: Arc<Mutex<HashMap<String, BatchState>>>,
    /// Newest visible version per dataset, with the listing stamp it was resolved at: a warm
    /// lookup is one stamp check (a stat of the dataset's directory), no reads.
    latest: Arc<Mutex<HashMap<String, Stamped>>>,
    /// Manifests read so far, by key. A manifest never changes once created (only pruning
    /// removes it), so a lookup on a remote store costs one listing, not a read per version.
    manifests: moka::sync::Cache<String, Arc<Manifest>>,
    retain_versions: usize,
}

/// A listing stamp is trusted only once it is this old: filesystem timestamps are coarse, so two
/// changes within one tick could share a stamp.
const STAMP_SETTLE_NANOS: i128 = 100_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BatchState {
    Committed,
    Aborted,
    Pending,
}

/// What a scan of one dataset's manifests found.
struct Scan {
    /// Highest claimed version number (visible or not), 0 if none.
    top: u64,
    /// Newest visible version (possibly a deletion marker).
    current: Option<Manifest>,
    /// Undecided batch versions above `current` were seen.
    pending: bool,
}

fn manifest_key(name: &str, version: u64) -> String {
    format!("datasets/{name}/m{version:020}.json")
}

fn parse_manifest_version(file: &str) -> Option<u64> {
    file.strip_prefix('m')?.strip_suffix(".json")?.parse().ok()
}

pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Catalog {
    pub fn new(backend: Arc<dyn Backend>, retain_versions: usize) -> Self {
        Self {
            backend,
            batch_states: Default::default(),
            latest: Default::default(),
            manifests: moka::sync::Cache::new(MANIFEST_MEMO_ENTRIES),
            retain_versions: retain_versions.max(1),
        }
    }

    pub fn kind(&self) -> &'static str {
        self.backend.kind()
    }

    pub fn store_counters(&self) -> Arc<backend::StoreCounters> {
        self.backend.counters()
    }

    pub fn staging_dir(&self) -> PathBuf {
        self.backend.staging_dir().to_path_buf()
    }

    /// The newest version of `name`, or NOT_FOUND.
    pub async fn latest(&self, name: &str) -> Result<Manifest> {
        validate_name(name)?;
        match self.current(name).await? {
            Some(m) if !m.is_deleted() => Ok(m),
            _ => Err(not_found(name)),
        }
    }

    /// The newest visible version, from the stamp-validated memo when the listing is unchanged.
    async fn current(&self, name: &str) -> Result<Option<Manifest>> {
        let stamp = self
            .backend
            .listing_stamp(&format!("datasets/{name}/"))
            .await?;
        let memo = |g: &HashMap<String, Stamped>| g.get(name).cloned();
        if let Some(stamp) = stamp {
            if let Some((seen, m)) = memo(&self.latest.lock().unwrap_or_else(|e| e.into_inner())) {
                if seen == stamp {
                    return Ok(m);
                }
            }
        }
        let scan = self.scan(name, false).await?;
        let settled =
            stamp.is_some_and(|s| now_unix_ms() as i128 * 1_000_000 - s > STAMP_SETTLE_NANOS);
        if let (Some(stamp), true, false) = (stamp, settled, scan.pending) {
            self.latest
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.to_string(), (stamp, scan.current.clone()));
        }
        Ok(scan.current)
    }

    /// A given version of `name` (or the newest), or NOT_FOUND.
    pub async fn get(&self, name: &str, version: Option<u64>) -> Result<Manifest> {
        let Some(version) = version else {
            return self.latest(name).await;
        };
        let latest = self.latest(name).await?;
        let missing = || {
            Error::NotFound(format!(
                "dataset {name:?} has no version {version}; the latest is {} (older versions may have been pruned)",
                latest.version
            ))
        };
        if version > latest.version {
            return Err(missing());
        }
        let manifest = self
            .read_manifest(name, version)
            .await?
            .ok_or_else(missing)?;
        if manifest.is_deleted() || self.batch_state(&manifest).await? != BatchState::Committed {
            return Err(missing());
        }
        Ok(manifest)
    }

    pub async fn open(&self, manifest: &Manifest) -> Result<ObjectData> {
        let key = manifest
            .data
            .as_deref()
            .ok_or_else(|| not_found(&manifest.name))?;
        self.backend.open(key).await?.ok_or_else(|| {
            Error::NotFound(format!(
                "version {} of {:?} was pruned or deleted while being read; load it again",
                manifest.version, manifest.name
            ))
        })
    }

    /// Names with any manifest (live or deleted), unsorted: a cheap listing.
    pub async fn names(&self) -> Result<Vec<String>> {
        let mut names = self.backend.list_children("datasets/").await?;
        names.retain(|n| validate_name(n).is_ok());
        Ok(names)
    }

    /// Every live dataset whose name starts with `prefix` and passes `visible`, sorted by name.
    pub async fn list(
        &self,
        prefix: &str,
        visible: impl Fn(&str) -> bool,
    ) -> Result<Vec<Manifest>> {
        let mut names = self.names().await?;
        names.retain(|n| n.starts_with(prefix) && visible(n));
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            if let Some(m) = self.current(&name).await? {
                if !m.is_deleted() {
                    out.push(m);
                }
            }
        }
        Ok(out)
    }

    /// Commit one staged dataset as its next version.
    pub async fn commit(&self, staged: Staged) -> Result<Manifest> {
        let (data_key, bytes) = self.upload(&staged).await?;
        let result = self
            .claim(&staged, Some(data_key.clone()), bytes, None)
            .await;
        match result {
            Ok(m) => {
                self.prune_in_background(&m.name);
                Ok(m)
            }
            Err(e) => {
                // A refusal (condition, contention) left no manifest. Any other failure may have
                // come after the manifest was written (its answer lost): the data it points to
                // stays, so that the version is whole if it turns out to exist.
                if matches!(
                    e,
                    Error::AlreadyExists(_) | Error::Aborted(_) | Error::InvalidArgument(_)
                ) {
                    let _ = self.backend.delete(&data_key).await;
                }
                Err(e)
            }
        }
    }

    /// Commit several datasets: all become visible at one instant, or none does.
    pub async fn commit_batch(&self, staged: Vec<Staged>) -> Result<Vec<Manifest>> {
        let mut seen = std::collections::HashSet::new();
        for s in &staged {
            if !seen.insert(s.name.as_str()) {
                return Err(Error::InvalidArgument(format!(
                    "dataset {:?} appears twice in one StoreBatch; send each name once",
                    s.name
                )));
            }
        }
        let batch_id = uuid::Uuid::new_v4().simple().to_string();
        let mut data_keys = Vec::new();
        let mut claimed: Vec<Manifest> = Vec::new();
        let outcome: Result<()> = async {
            let mut sizes = Vec::new();
            for s in &staged {
                let (key, bytes) = self.upload(s).await?;
                data_keys.push(key);
                sizes.push(bytes);
            }
            for ((s, key), bytes) in staged.iter().zip(&data_keys).zip(sizes) {
                claimed.push(
                    self.claim(s, Some(key.clone()), bytes, Some(&batch_id))
                        .await?,
                );
            }
            Ok(())
        }
        .await;
        let decided = match outcome {
            Ok(()) => self.decide_batch(&batch_id, BatchState::Committed).await?,
            Err(e) => {
                self.decide_batch(&batch_id, BatchState::Aborted).await?;
                self.discard(&data_keys).await;
                return Err(e);
            }
        };
        if decided != BatchState::Committed {
            self.discard(&data_keys).await;
            return Err(Error::Aborted(
                "a concurrent store of one of these datasets interrupted this StoreBatch; nothing was committed, retry it"
                    .into(),
            ));
        }
        for m in &claimed {
            self.prune_in_background(&m.name);
        }
        Ok(claimed)
    }

    /// Delete `name`: a deletion marker becomes its newest version and older data is removed.
    /// Returns the version that was current and the marker's version.
    pub async fn delete(&self, name: &str) -> Result<(u64, u64)> {
        validate_name(name)?;
        for _ in 0..CLAIM_ATTEMPTS {
            let scan = self.scan(name, true).await?;
            let current = match scan.current {
                Some(m) if !m.is_deleted() => m,
                _ => return Err(not_found(name)),
            };
            let marker = Manifest {
                name: name.to_string(),
                version: scan.top + 1,
                data: None,
                rows: 0,
                bytes: 0,
                created_unix_ms: now_unix_ms(),
                columns: vec![],
                batch: None,
            };
            if self.put_manifest(&marker).await? {
                self.prune_in_background(name);
                return Ok((current.version, marker.version));
            }
        }
        Err(contention(name))
    }

    /// Put the staged file into the store under a fresh key; returns the key and its size.
    async fn upload(&self, staged: &Staged) -> Result<(String, u64)> {
        validate_name(&staged.name)?;
        let key = format!(
            "datasets/{}/data-{}.parquet",
            staged.name,
            uuid::Uuid::new_v4().simple()
        );
        let bytes = self.backend.put_file(&key, &staged.path).await?;
        Ok((key, bytes))
    }

    /// Claim the next version of `staged.name` if its condition holds.
    async fn claim(
        &self,
        staged: &Staged,
        data: Option<String>,
        bytes: u64,
        batch: Option<&str>,
    ) -> Result<Manifest> {
        let name = &staged.name;
        for _ in 0..CLAIM_ATTEMPTS {
            let scan = self.scan(name, true).await?;
            let live = scan.current.as_ref().filter(|m| !m.is_deleted());
            match (staged.condition, live) {
                (Condition::IfAbsent, Some(m)) => {
                    return Err(Error::AlreadyExists(format!(
                        "dataset {name:?} already exists (version {}); store without the if-absent condition to replace it",
                        m.version
                    )))
                }
                (Condition::IfVersion(want), current) if current.map(|m| m.version) != Some(want) => {
                    let now = current.map_or("it does not exist".to_string(), |m| format!("it is at version {}", m.version));
                    return Err(Error::Aborted(format!(
                        "dataset {name:?} is not at version {want}: {now}; reload and retry with the current version"
                    )));
                }
                _ => {}
            }
            let manifest = Manifest {
                name: name.clone(),
                version: scan.top + 1,
                data: data.clone(),
                rows: staged.rows,
                bytes,
                created_unix_ms: now_unix_ms(),
                columns: staged.columns.clone(),
                batch: batch.map(str::to_string),
            };
            if self.put_manifest(&manifest).await? {
                return Ok(manifest);
            }
            // Someone claimed that number first: look again.
        }
        Err(contention(name))
    }

    /// Create `m` unless its version is taken; true if it is ours. A taken version can be ours:
    /// when a write succeeds but its answer is lost (a cut connection), the S3 client sends it
    /// again and that attempt finds the key the first one created.
    async fn put_manifest(&self, m: &Manifest) -> Result<bool> {
        let json = serde_json::to_vec(m).map_err(|e| Error::internal("manifest", e))?;
        let key = manifest_key(&m.name, m.version);
        if self.backend.put_if_absent(&key, Bytes::from(json)).await? {
            // What was just written needs no read back (loads and pruning look it up next).
            self.manifests.insert(key, Arc::new(m.clone()));
            return Ok(true);
        }
        Ok(self.read_manifest(&m.name, m.version).await?.as_ref() == Some(m))
    }

    async fn read_manifest(&self, name: &str, version: u64) -> Result<Option<Manifest>> {
        let key = manifest_key(name, version);
        if let Some(m) = self.manifests.get(&key) {
            return Ok(Some((*m).clone()));
        }
        let Some(bytes) = self.backend.get(&key).await? else {
            return Ok(None);
        };
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            Error::internal(&format!("manifest {version} of {name:?} is unreadable"), e)
        })?;
        self.manifests.insert(key, Arc::new(m.clone()));
        Ok(Some(m))
    }

    async fn delete_manifest(&self, name: &str, version: u64) -> Result<()> {
        let key = manifest_key(name, version);
        self.manifests.invalidate(&key);
        self.backend.delete(&key).await
    }

    /// Version numbers with a manifest, newest first.
    async fn manifest_versions(&self, name: &str) -> Result<Vec<u64>> {
        let mut versions: Vec<u64> = self
            .backend
            .list_children(&format!("datasets/{name}/"))
            .await?
            .iter()
            .filter_map(|f| parse_manifest_version(f))
            .collect();
        versions.sort_unstable_by(|a, b| b.cmp(a));
        Ok(versions)
    }

    /// Find the newest visible version. A writer (`end_pending`) ends undecided batches above it.
    async fn scan(&self, name: &str, end_pending: bool) -> Result<Scan> {
        let versions = self.manifest_versions(name).await?;
        let top = versions.first().copied().unwrap_or(0);
        let mut pending = false;
        for v in versions {
            let Some(m) = self.read_manifest(name, v).await? else {
                continue;
            };
            let mut state = self.batch_state(&m).await?;
            if state == BatchState::Pending && end_pending {
                state = self
                    .decide_batch(m.batch.as_deref().unwrap_or_default(), BatchState::Aborted)
                    .await?;
            }
            if state == BatchState::Committed {
                return Ok(Scan {
                    top,
                    current: Some(m),
                    pending,
                });
            }
            pending |= state == BatchState::Pending;
        }
        Ok(Scan {
            top,
            current: None,
            pending,
        })
    }

    async fn batch_state(&self, m: &Manifest) -> Result<BatchState> {
        let Some(id) = m.batch.as_deref() else {
            return Ok(BatchState::Committed);
        };
        if let Some(s) = self
            .batch_states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            return Ok(*s);
        }
        let state = match self.backend.get(&format!("batches/{id}")).await? {
            Some(b) if &b[..] == b"committed" => BatchState::Committed,
            Some(_) => BatchState::Aborted,
            None => return Ok(BatchState::Pending),
        };
        self.batch_states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), state);
        Ok(state)
    }

    /// Try to set a batch's fate; returns the fate it has (ours, or whoever decided first).
    async fn decide_batch(&self, id: &str, want: BatchState) -> Result<BatchState> {
        let word: &'static [u8] = if want == BatchState::Committed {
            b"committed"
        } else {
            b"aborted"
        };
        let key = format!("batches/{id}");
        let state = if self
            .backend
            .put_if_absent(&key, Bytes::from_static(word))
            .await?
        {
            want
        } else {
            match self.backend.get(&key).await? {
                Some(b) if &b[..] == b"committed" => BatchState::Committed,
                _ => BatchState::Aborted,
            }
        };
        self.batch_states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), state);
        Ok(state)
    }

    /// Drop the data of an aborted batch. Its manifests stay (invisible, their batch decided):
    /// removing the newest would let a later writer reuse its number under a writer that already
    /// claimed the next one. Pruning removes them once they are no longer the newest.
    async fn discard(&self, data_keys: &[String]) {
        for k in data_keys {
            let _ = self.backend.delete(k).await;
        }
    }

    fn prune_in_background(&self, name: &str) {
        let this = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            if let Err(e) = this.prune(&name).await {
                tracing::warn!(dataset = %name, error = %e, "pruning old versions failed");
            }
        });
    }

    /// Keep the newest `retain_versions` versions (none after a deletion); drop the data of older
    /// ones and the manifests of aborted batches. Manifests of kept numbers stay so that version
    /// numbers never repeat.
    async fn prune(&self, name: &str) -> Result<()> {
        let versions = self.manifest_versions(name).await?;
        let mut kept = 0;
        let mut deleted_seen = false;
        for (i, v) in versions.iter().enumerate() {
            let Some(m) = self.read_manifest(name, *v).await? else {
                continue;
            };
            match self.batch_state(&m).await? {
                BatchState::Pending => continue,
                BatchState::Aborted => {
                    if let Some(d) = &m.data {
                        self.backend.delete(d).await?;
                    }
                    if i > 0 {
                        self.delete_manifest(name, *v).await?;
                    }
                }
                BatchState::Committed => {
                    if m.is_deleted() {
                        deleted_seen = true;
                        continue;
                    }
                    if deleted_seen || kept >= self.retain_versions {
                        if let Some(d) = &m.data {
                            self.backend.delete(d).await?;
                        }
                        self.delete_manifest(name, *v).await?;
                    } else {
                        kept += 1;
                    }
                }
            }
        }
        Ok(())
    }
}

fn not_found(name: &str) -> Error {
    Error::NotFound(format!(
        "dataset {name:?} does not exist; `list` shows the stored datasets"
    ))
}

fn contention(name: &str) -> Error {
    Error::Aborted(format!("too many concurrent stores of {name:?}; retry"))
}
