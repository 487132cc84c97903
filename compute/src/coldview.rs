//! The cold directory (`<data-dir>/cold`, POLARWAY_PARQUET_PATH): the latest version of every
//! dataset `X` appears there as `X.parquet`, so SQL can scan datasets by path and glob
//! (`parquet_scan('/data/cold/trades_*.parquet')`) next to Parquet files users put there.
//! A view file is a hard link to the stored object where the store is a local directory, and a
//! copy otherwise; it is replaced by an atomic rename, so a reader sees the old or the new file.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::store::{dir::staging_name, Catalog, ObjectData};

pub struct ColdView {
    dir: PathBuf,
    /// Data key currently published per dataset, for views that are copies.
    copied: Mutex<HashMap<String, String>>,
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
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.parquet"))
    }

    /// Make `<cold>/<name>.parquet` the latest version of `name` (or remove it if `name` is gone).
    /// Re-checks after publishing, so that racing writers converge on the newest version.
    pub async fn refresh(&self, catalog: &Catalog, name: &str) -> Result<()> {
        for _ in 0..4 {
            let manifest = match catalog.latest(name).await {
                Ok(m) => m,
                Err(Error::NotFound(_)) => return self.remove(name).await,
                Err(e) => return Err(e),
            };
            let key = manifest.data.clone().unwrap_or_default();
            match catalog.open(&manifest).await {
                Ok(data) => self.publish(name, &key, data).await?,
                Err(Error::NotFound(_)) => continue,
                Err(e) => return Err(e),
            }
            if catalog.latest(name).await.map(|m| m.version).ok() == Some(manifest.version) {
                return Ok(());
            }
        }
        Ok(())
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

    async fn remove(&self, name: &str) -> Result<()> {
        self.copied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        match tokio::fs::remove_file(self.path(name)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}
