//! The worker's Prometheus metrics (`--metrics-enabled`, `--metrics-port`): the per-call gRPC
//! series every Polarway server exports (polarway-telemetry), rows moved, and, read at each
//! scrape from the same counters CacheStats reports, the cache tiers and the handle store's I/O.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use polarway_telemetry::grpc::MethodDirection;
use polarway_telemetry::{method_label, GrpcMetrics};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::cache::Cache;
use crate::store::backend::StoreCounters;
use crate::store::disk_cache::DiskCache;

#[derive(Clone)]
pub struct WorkerMetrics {
    pub registry: Arc<Registry>,
    pub grpc: GrpcMetrics,
    rows: Family<MethodDirection, Counter>,
    denied: Family<Denied, Counter>,
    stalled: Family<polarway_telemetry::grpc::MethodLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Denied {
    method: String,
    reason: &'static str,
}

impl WorkerMetrics {
    /// `extra` registers what only some stores have (the S3 request series).
    pub fn new(
        cache: Arc<Cache>,
        disk: Option<Arc<DiskCache>>,
        store: Arc<StoreCounters>,
        extra: impl FnOnce(&mut Registry),
    ) -> Self {
        let mut registry = Registry::default();
        let grpc = GrpcMetrics::register(&mut registry);
        let rows = Family::<MethodDirection, Counter>::default();
        registry.register(
            "polarway_rows",
            "Rows received (Store, StoreBatch) and sent (Load, Query), by method and direction",
            rows.clone(),
        );
        let denied = Family::<Denied, Counter>::default();
        registry.register(
            "polarway_authz_denied",
            "Calls refused by authorization or the SQL gate, by method and reason (method, grant, statement, path, sandbox)",
            denied.clone(),
        );
        let stalled = Family::<polarway_telemetry::grpc::MethodLabel, Counter>::default();
        registry.register(
            "polarway_stalled_streams",
            "Response streams ended because their caller read nothing for the stall timeout",
            stalled.clone(),
        );
        registry.register_collector(Box::new(StateCollector { cache, disk, store }));
        extra(&mut registry);
        Self {
            registry: Arc::new(registry),
            grpc,
            rows,
            denied,
            stalled,
        }
    }

    pub fn rows_sent(&self, method: &str, n: usize) {
        self.rows
            .get_or_create(&MethodDirection {
                method: method.into(),
                direction: "sent",
            })
            .inc_by(n as u64);
    }

    pub fn denied(&self, method: &str, reason: &'static str) {
        self.denied
            .get_or_create(&Denied {
                method: method_label(method).into(),
                reason,
            })
            .inc();
    }

    /// The counter of `method`'s stalled streams.
    pub fn stalled(&self, method: &str) -> Counter {
        self.stalled
            .get_or_create(&polarway_telemetry::grpc::MethodLabel {
                method: method_label(method).into(),
            })
            .clone()
    }

    pub fn rows_received(&self, method: &str, n: u64) {
        self.rows
            .get_or_create(&MethodDirection {
                method: method.into(),
                direction: "received",
            })
            .inc_by(n);
    }
}

/// Cache and store figures, read when Prometheus scrapes.
struct StateCollector {
    cache: Arc<Cache>,
    disk: Option<Arc<DiskCache>>,
    store: Arc<StoreCounters>,
}

impl std::fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateCollector")
    }
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge_u(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let g = ConstGauge::new(v as i64);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for StateCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = self.cache.stats();
        let rate = ConstGauge::new(c.hit_rate());
        rate.encode(e.encode_descriptor(
            "polarway_cache_hit_rate",
            "Share of loads served from the memory cache since the worker started (as CacheStats.hit_rate)",
            None,
            rate.metric_type(),
        )?)?;
        counter(
            &mut e,
            "polarway_cache_hits",
            "Loads served from the memory cache",
            c.hits,
        )?;
        counter(
            &mut e,
            "polarway_cache_misses",
            "Loads that had to read the store",
            c.misses,
        )?;
        counter(
            &mut e,
            "polarway_cache_evictions",
            "Entries evicted from the memory cache",
            c.evictions,
        )?;
        gauge_u(
            &mut e,
            "polarway_cache_bytes",
            "Bytes held by the memory cache",
            c.bytes,
        )?;
        gauge_u(
            &mut e,
            "polarway_cache_capacity_bytes",
            "The memory cache's bound (--cache-size)",
            c.capacity,
        )?;
        gauge_u(
            &mut e,
            "polarway_cache_entries",
            "Dataset versions in the memory cache",
            c.entries,
        )?;

        let d = self.disk.as_ref().map(|d| d.stats()).unwrap_or_default();
        counter(
            &mut e,
            "polarway_disk_cache_hits",
            "Reads served from the local disk cache of S3 objects",
            d.hits,
        )?;
        counter(
            &mut e,
            "polarway_disk_cache_misses",
            "Reads that downloaded from S3",
            d.misses,
        )?;
        gauge_u(
            &mut e,
            "polarway_disk_cache_bytes",
            "Bytes held by the disk cache",
            d.bytes,
        )?;
        gauge_u(
            &mut e,
            "polarway_disk_cache_capacity_bytes",
            "The disk cache's bound (--disk-cache-size)",
            d.capacity,
        )?;

        let s = &self.store;
        counter(
            &mut e,
            "polarway_state_store_requests",
            "Requests to the handle store (S3 requests, files of the external store)",
            s.requests.load(Relaxed),
        )?;
        counter(
            &mut e,
            "polarway_state_store_bytes_read",
            "Bytes read from the handle store",
            s.bytes_read.load(Relaxed),
        )?;
        counter(
            &mut e,
            "polarway_state_store_bytes_written",
            "Bytes written to the handle store",
            s.bytes_written.load(Relaxed),
        )?;
        Ok(())
    }
}
