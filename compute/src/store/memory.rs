//! `memory` handle store: objects in this process's RAM. Fast, lost on restart, not shared: for a
//! single worker in development.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::backend::{Backend, ObjectData, StoreCounters};
use crate::error::Result;

pub struct MemoryBackend {
    objects: Mutex<BTreeMap<String, Bytes>>,
    staging: PathBuf,
    /// Stay zero: nothing leaves the process.
    counters: Arc<StoreCounters>,
}

impl MemoryBackend {
    pub fn new(staging: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&staging)?;
        Ok(Self {
            objects: Mutex::new(BTreeMap::new()),
            staging,
            counters: Default::default(),
        })
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Bytes>> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn counters(&self) -> Arc<StoreCounters> {
        self.counters.clone()
    }

    fn staging_dir(&self) -> &Path {
        &self.staging
    }

    async fn put_if_absent(&self, key: &str, bytes: Bytes) -> Result<bool> {
        let mut objects = self.objects();
        if objects.contains_key(key) {
            return Ok(false);
        }
        objects.insert(key.to_string(), bytes);
        Ok(true)
    }

    async fn put_file(&self, key: &str, local: &Path) -> Result<u64> {
        let bytes = Bytes::from(tokio::fs::read(local).await?);
        let _ = tokio::fs::remove_file(local).await;
        let len = bytes.len() as u64;
        self.objects().insert(key.to_string(), bytes);
        Ok(len)
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self.objects().get(key).cloned())
    }

    async fn open(&self, key: &str) -> Result<Option<ObjectData>> {
        Ok(self.objects().get(key).cloned().map(ObjectData::Bytes))
    }

    async fn list_children(&self, prefix: &str) -> Result<Vec<String>> {
        let objects = self.objects();
        let mut out: Vec<String> = objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| {
                k[prefix.len()..]
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        out.dedup();
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.objects().remove(key);
        Ok(())
    }
}
