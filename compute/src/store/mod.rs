//! Handle stores: where datasets live, what a version is, and the names they may have. The
//! version protocol that makes every commit atomic is `catalog.rs`; the storage it needs is
//! `backend.rs`, with one implementation per store kind (`memory.rs`, `dir.rs`, `s3.rs`).
//!
//! Layout of a store (the same keys in every backend):
//! ```text
//! datasets/<name>/m<version:020>.json     manifest: one per version, the commit record
//! datasets/<name>/data-<uuid>.parquet     the version's data (Parquet, zstd), written first
//! batches/<id>                            "committed" | "aborted": the fate of a StoreBatch
//! ```
//! A version exists once its manifest exists; manifests are created with the backend's one atomic
//! operation, "create if absent", so two writers can never both claim version N. Data is complete
//! before its manifest is created, so no reader ever sees a partial version, and a crash at any
//! point leaves the previous version as it was.
//!
//! A StoreBatch claims one manifest per dataset, each naming the batch; such manifests are visible
//! only once `batches/<id>` says "committed", which is one more atomic create: all or nothing. A
//! writer that meets an undecided batch below its own claim ends it by creating `batches/<id>` as
//! "aborted" first (the batch then fails with ABORTED and its client retries), so no version ever
//! appears under a newer one after the fact. Version numbers only grow; those of aborted batches
//! are skipped, never reused.

pub mod backend;
pub mod catalog;
pub mod dir;
pub mod disk_cache;
pub mod memory;
pub mod s3;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use backend::{Backend, ObjectData};
pub use catalog::Catalog;

use crate::error::{Error, Result};

/// Dataset names: 1-255 chars of `[A-Za-z0-9_.-]`, not starting with '.'. Checked before a name
/// touches storage, so no name can ever address a path outside its dataset.
pub fn validate_name(name: &str) -> Result<()> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if name.is_empty() || name.len() > 255 || !ok_chars || name.starts_with('.') {
        let shown: String = name.chars().take(64).collect();
        return Err(Error::InvalidArgument(format!(
            "invalid dataset name {shown:?}: use 1-255 characters of A-Z a-z 0-9 _ . - not starting with '.'"
        )));
    }
    Ok(())
}

/// A precondition on a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    Always,
    IfAbsent,
    IfVersion(u64),
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    pub data_type: String,
    pub nullable: bool,
}

/// The commit record of one version.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub name: String,
    pub version: u64,
    /// Key of the Parquet object; `None` for a deletion marker.
    pub data: Option<String>,
    pub rows: u64,
    pub bytes: u64,
    pub created_unix_ms: i64,
    pub columns: Vec<ColumnInfo>,
    /// The StoreBatch this version belongs to, if any.
    #[serde(default)]
    pub batch: Option<String>,
}

impl Manifest {
    pub fn is_deleted(&self) -> bool {
        self.data.is_none()
    }
}

/// A dataset written completely to a local file, waiting to be committed.
#[derive(Debug)]
pub struct Staged {
    pub name: String,
    pub condition: Condition,
    pub path: PathBuf,
    pub rows: u64,
    pub columns: Vec<ColumnInfo>,
}

/// A staged file nobody committed (a failed batch, a refused header, an error) is removed; one
/// that was committed has been moved into the store already.
impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::validate_name;

    #[test]
    fn names() {
        for good in ["a", "trades_20260203", "x.y-z", &"n".repeat(255)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".hidden",
            "../x",
            "/abs",
            "a/b",
            "a b",
            "é",
            &"n".repeat(256),
            "..",
            "a\0b",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
