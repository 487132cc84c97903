//! The worker's read-through cache: decoded record batches of recently loaded dataset versions,
//! bounded in bytes (`--cache-size`). Keys are data object keys, which are never reused, so an
//! entry can never be stale: a new version has a new key.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use moka::notification::RemovalCause;

#[derive(Clone)]
pub struct CachedTable {
    pub schema: SchemaRef,
    pub batches: Arc<Vec<RecordBatch>>,
}

impl CachedTable {
    pub fn memory_size(&self) -> u64 {
        self.batches
            .iter()
            .map(|b| b.get_array_memory_size() as u64)
            .sum()
    }
}

pub struct Cache {
    entries: moka::sync::Cache<String, CachedTable>,
    capacity: u64,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: Arc<AtomicU64>,
}

/// The figures of a cache tier (the memory cache here, the disk cache of `store/disk_cache.rs`).
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub bytes: u64,
    pub capacity: u64,
    pub entries: u64,
    pub evictions: u64,
}

impl CacheStats {
    pub fn hit_rate(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 {
            0.0
        } else {
            self.hits as f64 / lookups as f64
        }
    }
}

impl Cache {
    pub fn new(capacity: u64) -> Self {
        let evictions = Arc::new(AtomicU64::new(0));
        let counter = evictions.clone();
        let entries = moka::sync::Cache::builder()
            .max_capacity(capacity)
            // Plain LRU: every loaded table is admitted (TinyLFU would turn away new datasets
            // until they had been loaded several times).
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .weigher(|_k: &String, v: &CachedTable| v.memory_size().min(u32::MAX as u64) as u32)
            .eviction_listener(move |_k, _v, cause| {
                if matches!(cause, RemovalCause::Size) {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        Self {
            entries,
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions,
        }
    }

    /// Largest table worth caching: a quarter of the capacity, so one big dataset cannot flush
    /// every other entry.
    pub fn admission_limit(&self) -> u64 {
        self.capacity / 4
    }

    pub fn get(&self, key: &str) -> Option<CachedTable> {
        let found = self.entries.get(key);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub fn insert(&self, key: String, table: CachedTable) {
        if table.memory_size() <= self.admission_limit() {
            self.entries.insert(key, table);
        }
    }

    pub fn stats(&self) -> CacheStats {
        self.entries.run_pending_tasks();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bytes: self.entries.weighted_size(),
            capacity: self.capacity,
            entries: self.entries.entry_count(),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}
