//! The cold directory (`<data-dir>/cold`, POLARWAY_PARQUET_PATH): the latest version of every
//! dataset `X` appears there as `X.parquet`, so SQL can scan datasets by path and glob
//! (`parquet_scan('/data/cold/trades_*.parquet')`) next to Parquet files users put there.
//! A view file is a hard link to the stored object where the store is a local directory, and a
//! copy otherwise; it is replaced by an atomic rename, so a reader sees the old or the new file.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::scratch::staging_name;
use crate::store::{Catalog, Manifest, ObjectData};

pub struct ColdView {
    dir: PathBuf,
    /// Data key currently published per dataset, for views that are copies.
    copied: Mutex<HashMap<String, String>>,
    /// The newest version published (or deleted) per dataset.
    newest: Mutex<HashMap<String, u64>>,
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ColdView {
    pub fn new(dir: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::Unavailable(format!(
                "cannot create cold directory {}: {e}",
                dir.display()
            ))
        })?;
        Ok(Self {
            dir,
            copied: Default::default(),
            newest: Default::default(),
            turns: Default::default(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.parquet"))
    }

    /// Make `<cold>/<name>.parquet` the version `m` just committed, unless this worker has
    /// published a newer version of it already (writers that race converge on the newest). The
    /// manifest is the one the commit made, so no listing of the store is needed.
    pub async fn publish_version(&self, catalog: &Catalog, m: &Manifest) -> Result<()> {
        let turn = self.turn(&m.name);
        let _turn = turn.lock().await;
        if self.newest(&m.name).is_some_and(|v| v >= m.version) {
            return Ok(());
        }
        let data = match catalog.open(m).await {
            Ok(data) => data,
            // Pruned already: a newer version was committed, and its writer publishes it.
            Err(Error::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.publish(&m.name, m.data.as_deref().unwrap_or_default(), data)
            .await?;
        self.set_newest(&m.name, m.version);
        Ok(())
    }

    /// `name` was deleted: its view goes, and versions below the deletion are never published
    /// again. `marker` is the deletion's version.
    pub async fn withdraw(&self, name: &str, marker: u64) -> Result<()> {
        let turn = self.turn(name);
        let _turn = turn.lock().await;
        self.set_newest(name, marker);
        self.copied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        match tokio::fs::remove_file(self.path(name)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// One publication of a dataset at a time, in the order they arrive.
    fn turn(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        if turns.len() > 10_000 {
            turns.retain(|_, t| Arc::strong_count(t) > 1);
        }
        turns.entry(name.to_string()).or_default().clone()
    }

    fn newest(&self, name: &str) -> Option<u64> {
        let newest = self.newest.lock().unwrap_or_else(|e| e.into_inner());
        newest.get(name).copied()
    }

    fn set_newest(&self, name: &str, version: u64) {
        let mut newest = self.newest.lock().unwrap_or_else(|e| e.into_inner());
        newest.insert(name.to_string(), version);
    }

    async fn publish(&self, name: &str, key: &str, data: ObjectData) -> Result<()> {
        let target = self.path(name);
        let tmp = self.dir.join(format!(".{}", staging_name("tmp")));
        let copied = self
            .copied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned();
        let key_owned = key.to_string();
        let linked = tokio::task::spawn_blocking(move || -> Result<bool> {
            // A copy of this very version is already in place.
            let copy_is_current =
                || copied.as_deref() == Some(key_owned.as_str()) && target.exists();
            match data {
                ObjectData::File(src) => {
                    if same_file(&src, &target) {
                        return Ok(true);
                    }
                    let linked = std::fs::hard_link(&src, &tmp).is_ok();
                    if !linked {
                        if copy_is_current() {
                            return Ok(false);
                        }
                        std::fs::copy(&src, &tmp)?;
                    }
                    std::fs::rename(&tmp, &target)?;
                    Ok(linked)
                }
                ObjectData::Temp(src) => {
                    if copy_is_current() {
                        let _ = std::fs::remove_file(&src);
                        return Ok(false);
                    }
                    // A private copy: move it into place (copy across file systems).
                    if std::fs::rename(&src, &tmp).is_err() {
                        std::fs::copy(&src, &tmp)?;
                        let _ = std::fs::remove_file(&src);
                    }
                    std::fs::rename(&tmp, &target)?;
                    Ok(false)
                }
                ObjectData::Bytes(b) => {
                    if copy_is_current() {
                        return Ok(false);
                    }
                    std::fs::write(&tmp, &b)?;
                    std::fs::rename(&tmp, &target)?;
                    Ok(false)
                }
            }
        })
        .await??;
        let mut copied = self.copied.lock().unwrap_or_else(|e| e.into_inner());
        if linked {
            copied.remove(name);
        } else {
            copied.insert(name.to_string(), key.to_string());
        }
        Ok(())
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}
