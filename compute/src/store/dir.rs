//! `external` handle store: a directory (POLARWAY_STATE_DIR) that several workers share, e.g. over
//! NFS or a Docker volume. Objects are files; "create if absent" is `link(2)`, which is atomic and
//! fails when the target exists, on local filesystems and on NFS alike.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::backend::{Backend, ObjectData, StoreCounters};
use crate::error::{Error, Result};
use crate::scratch::{remove_orphaned_staging_files, staging_name};

pub struct DirBackend {
    root: PathBuf,
    staging: PathBuf,
    counters: Arc<StoreCounters>,
}

impl DirBackend {
    pub fn open(root: &Path) -> Result<Self> {
        let staging = root.join("tmp");
        std::fs::create_dir_all(&staging).map_err(|e| {
            Error::Unavailable(format!(
                "cannot create state directory {}: {e}",
                staging.display()
            ))
        })?;
        remove_orphaned_staging_files(&staging);
        Ok(Self {
            root: root.to_path_buf(),
            staging,
            counters: Default::default(),
        })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
}

#[async_trait]
impl Backend for DirBackend {
    fn kind(&self) -> &'static str {
        "external"
    }

    fn counters(&self) -> Arc<StoreCounters> {
        self.counters.clone()
    }

    fn staging_dir(&self) -> &Path {
        &self.staging
    }

    async fn put_if_absent(&self, key: &str, bytes: Bytes) -> Result<bool> {
        let target = self.path(key);
        let tmp = self.staging.join(staging_name("obj"));
        self.counters.request();
        self.counters.written(bytes.len() as u64);
        tokio::task::spawn_blocking(move || -> Result<bool> {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            write_synced(&tmp, &bytes)?;
            let linked = std::fs::hard_link(&tmp, &target);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => {
                    sync_dir(target.parent());
                    Ok(true)
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e.into()),
            }
        })
        .await?
    }

    async fn put_file(&self, key: &str, local: &Path) -> Result<u64> {
        let target = self.path(key);
        let local = local.to_path_buf();
        self.counters.request();
        let size = tokio::task::spawn_blocking(move || -> Result<u64> {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let file = std::fs::File::open(&local)?;
            // Committed objects never change: read-only on disk, so that no process of ours or
            // an operator's (the cold directory links to them) rewrites one in place.
            let mut perms = file.metadata()?.permissions();
            perms.set_readonly(true);
            file.set_permissions(perms)?;
            file.sync_all()?;
            // The key is unique, so a rename cannot replace anyone's object.
            std::fs::rename(&local, &target)?;
            sync_dir(target.parent());
            Ok(std::fs::metadata(&target)?.len())
        })
        .await??;
        self.counters.written(size);
        Ok(size)
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.counters.request();
        match tokio::fs::read(self.path(key)).await {
            Ok(b) => {
                self.counters.read(b.len() as u64);
                Ok(Some(Bytes::from(b)))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn open(&self, key: &str) -> Result<Option<ObjectData>> {
        let path = self.path(key);
        self.counters.request();
        match tokio::fs::metadata(&path).await {
            // Its reader (a Load or a query) reads it whole from the shared directory.
            Ok(meta) => {
                self.counters.read(meta.len());
                Ok(Some(ObjectData::File(path)))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn list_children(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = self.path(prefix);
        let mut out = Vec::new();
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        while let Some(entry) = entries.next_entry().await? {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }

    async fn listing_stamp(&self, prefix: &str) -> Result<Option<i128>> {
        match tokio::fs::metadata(self.path(prefix)).await {
            Ok(m) => Ok(m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos() as i128)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match tokio::fs::remove_file(self.path(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Make a new directory entry durable (the file's data was synced before it was linked).
fn sync_dir(dir: Option<&Path>) {
    if let Some(d) = dir {
        if let Ok(f) = std::fs::File::open(d) {
            let _ = f.sync_all();
        }
    }
}
