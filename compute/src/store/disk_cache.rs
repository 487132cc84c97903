//! A worker-local disk cache of remote objects (the second cache tier of the `s3` store), bounded
//! in bytes. Entries are keyed by object key; data objects are immutable and their keys are never
//! reused, so an entry is never stale. Least recently used entries are removed past the bound. A
//! reader that already opened a removed file keeps reading it (Linux frees it on close).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::cache::CacheStats;
use crate::error::{Error, Result};
use crate::scratch::{left_by_a_dead_process, process_tag};

pub struct DiskCache {
    dir: PathBuf,
    capacity: u64,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Default)]
struct State {
    /// key -> (size, last use tick)
    entries: HashMap<String, (u64, u64)>,
    bytes: u64,
    tick: u64,
    evictions: u64,
}

impl DiskCache {
    /// Open this process's cache directory under `parent` (`<host>-<pid>`, so workers sharing a
    /// data directory never touch each other's files), empty: what a previous process left is
    /// not trusted to be complete, and is cheap to fetch again. Directories of dead processes of
    /// this host are removed.
    pub fn open(parent: &Path, capacity: u64) -> Result<Self> {
        if let Ok(entries) = std::fs::read_dir(parent) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                // `objects` and `tmp-*` are the layout before per-process directories.
                if left_by_a_dead_process(&name) || name == "objects" || name.starts_with("tmp-") {
                    let _ = std::fs::remove_dir_all(entry.path())
                        .or_else(|_| std::fs::remove_file(entry.path()));
                }
            }
        }
        let dir = parent.join(process_tag());
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::Unavailable(format!("cannot create disk cache {}: {e}", dir.display()))
        })?;
        Ok(Self {
            dir,
            capacity,
            state: Default::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// Where `key` lives in the cache (keys are validated store keys: no `..`, relative).
    fn path(&self, key: &str) -> PathBuf {
        self.dir.join("objects").join(key)
    }

    /// A fresh temporary path in the cache's file system, for a download in progress.
    pub fn temp_path(&self) -> PathBuf {
        self.dir
            .join(format!("tmp-{}", uuid::Uuid::new_v4().simple()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached file of `key`, if present (and mark it used).
    pub fn get(&self, key: &str) -> Option<PathBuf> {
        let mut st = self.lock();
        st.tick += 1;
        let tick = st.tick;
        let found = st.entries.get_mut(key).map(|e| e.1 = tick).is_some();
        drop(st);
        let path = self.path(key);
        if found && path.exists() {
            self.hits.fetch_add(1, Ordering::Relaxed);
            Some(path)
        } else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// Take a complete local file as the cached copy of `key` (moved, not copied). Returns the
    /// cached path; files larger than the whole cache are not kept (the caller's file is returned
    /// as it is and remains the caller's).
    pub fn insert(&self, key: &str, file: &Path) -> Result<PathBuf> {
        let size = std::fs::metadata(file)?.len();
        if size > self.capacity {
            return Ok(file.to_path_buf());
        }
        let target = self.path(key);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::rename(file, &target)?;
        let evict = {
            let mut st = self.lock();
            st.tick += 1;
            let tick = st.tick;
            if let Some((old, _)) = st.entries.insert(key.to_string(), (size, tick)) {
                st.bytes -= old;
            }
            st.bytes += size;
            let mut victims = Vec::new();
            while st.bytes > self.capacity {
                let Some((k, (s, _))) = st
                    .entries
                    .iter()
                    .filter(|(k, _)| k.as_str() != key)
                    .min_by_key(|(_, (_, t))| *t)
                    .map(|(k, v)| (k.clone(), *v))
                else {
                    break;
                };
                st.entries.remove(&k);
                st.bytes -= s;
                st.evictions += 1;
                victims.push(k);
            }
            victims
        };
        for k in evict {
            let _ = std::fs::remove_file(self.path(&k));
        }
        Ok(target)
    }

    pub fn remove(&self, key: &str) {
        let removed = {
            let mut st = self.lock();
            let r = st.entries.remove(key);
            if let Some((s, _)) = r {
                st.bytes -= s;
            }
            r.is_some()
        };
        if removed {
            let _ = std::fs::remove_file(self.path(key));
        }
    }

    pub fn stats(&self) -> CacheStats {
        let st = self.lock();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bytes: st.bytes,
            capacity: self.capacity,
            entries: st.entries.len() as u64,
            evictions: st.evictions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_of(dir: &Path, name: &str, len: usize) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, vec![7u8; len]).unwrap();
        p
    }

    #[test]
    fn evicts_least_recently_used_past_the_bound() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(&tmp.path().join("cache"), 250).unwrap();
        cache
            .insert("datasets/a/x", &file_of(tmp.path(), "a", 100))
            .unwrap();
        cache
            .insert("datasets/b/x", &file_of(tmp.path(), "b", 100))
            .unwrap();
        assert!(cache.get("datasets/a/x").is_some()); // a is now newer than b
        cache
            .insert("datasets/c/x", &file_of(tmp.path(), "c", 100))
            .unwrap();
        assert!(
            cache.get("datasets/b/x").is_none(),
            "b was the least recently used"
        );
        assert!(cache.get("datasets/a/x").is_some());
        assert!(cache.get("datasets/c/x").is_some());
        let s = cache.stats();
        assert_eq!((s.entries, s.bytes, s.evictions), (2, 200, 1));
        // Larger than the whole cache: not kept.
        let big = file_of(tmp.path(), "big", 300);
        assert_eq!(cache.insert("datasets/d/x", &big).unwrap(), big);
        assert!(cache.get("datasets/d/x").is_none());
        cache.remove("datasets/a/x");
        assert_eq!(cache.stats().bytes, 100);
    }
}
