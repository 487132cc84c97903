//! The storage primitive every handle store is built on: a flat namespace of immutable objects with
//! one atomic operation, "create this key only if it is absent". The version protocol in
//! `catalog.rs` needs nothing else, so a new store (S3 with `If-None-Match`) is one more `Backend`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;

/// Where the bytes of an object can be read.
#[derive(Clone, Debug)]
pub enum ObjectData {
    /// A local file that stays readable while open, even if the object is deleted meanwhile.
    File(PathBuf),
    /// A private local copy made for this read (too big for a cache): whoever reads it removes
    /// it once it has it open.
    Temp(PathBuf),
    Bytes(Bytes),
}

/// Traffic between this worker and its store since it started (CacheStats and /metrics).
#[derive(Debug, Default)]
pub struct StoreCounters {
    pub requests: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
}

impl StoreCounters {
    pub fn request(&self) {
        self.requests.fetch_add(1, Relaxed);
    }
    pub fn read(&self, bytes: u64) {
        self.bytes_read.fetch_add(bytes, Relaxed);
    }
    pub fn written(&self, bytes: u64) {
        self.bytes_written.fetch_add(bytes, Relaxed);
    }
}

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// "memory", "external", "s3".
    fn kind(&self) -> &'static str;

    fn counters(&self) -> Arc<StoreCounters>;

    /// A local directory for files being written before `put_file` takes them.
    fn staging_dir(&self) -> &Path;

    /// Create `key` holding `bytes` if no object has that key. `Ok(false)`: it already exists.
    /// Readers see either no object or all of it.
    async fn put_if_absent(&self, key: &str, bytes: Bytes) -> Result<bool>;

    /// Move a completely written local file (in `staging_dir`) into the store under `key`, a key
    /// nobody else uses. Returns the object's size.
    async fn put_file(&self, key: &str, local: &Path) -> Result<u64>;

    async fn get(&self, key: &str) -> Result<Option<Bytes>>;

    async fn open(&self, key: &str) -> Result<Option<ObjectData>>;

    /// Names one level below `prefix` (which ends in '/'): objects and "directories" alike,
    /// without the prefix and without a trailing '/'.
    async fn list_children(&self, prefix: &str) -> Result<Vec<String>>;

    async fn delete(&self, key: &str) -> Result<()>;

    /// A cheap stamp (nanoseconds, e.g. a directory's mtime) that changes whenever the listing
    /// under `prefix` changes; `None` where the backend has no such thing (then callers list).
    async fn listing_stamp(&self, _prefix: &str) -> Result<Option<i128>> {
        Ok(None)
    }
}
