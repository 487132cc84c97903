//! List, Describe, Delete, CacheStats.

use polarway_access::Access;
use polarway_proto::v1 as pb;

use super::{dataset_info, Worker};
use crate::error::Result;

/// Only the datasets the caller may List appear; the others are not even counted.
pub async fn list(w: &Worker, access: &Access, req: pb::ListRequest) -> Result<pb::ListResponse> {
    let datasets = w
        .catalog
        .list(&req.prefix, |name| access.allows("List", name))
        .await?;
    Ok(pb::ListResponse {
        datasets: datasets.iter().map(|m| dataset_info(m, false)).collect(),
    })
}

pub async fn describe(
    w: &Worker,
    access: &Access,
    req: pb::DescribeRequest,
) -> Result<pb::DatasetInfo> {
    access.check("Describe", &req.name)?;
    let m = w.catalog.get(&req.name, req.version).await?;
    Ok(dataset_info(&m, true))
}

pub async fn delete(
    w: &Worker,
    access: &Access,
    req: pb::DeleteRequest,
) -> Result<pb::DeleteResponse> {
    access.check("Delete", &req.name)?;
    let (version, marker) = w.catalog.delete(&req.name).await?;
    w.cold.withdraw(&req.name, marker).await?;
    Ok(pb::DeleteResponse { version })
}

pub fn cache_stats(w: &Worker) -> pb::CacheStatsResponse {
    use std::sync::atomic::Ordering::Relaxed;
    let s = w.cache.stats();
    let mut out = pb::CacheStatsResponse {
        hits: s.hits,
        misses: s.misses,
        hit_rate: s.hit_rate(),
        bytes: s.bytes,
        capacity: s.capacity,
        entries: s.entries,
        evictions: s.evictions,
        ..Default::default()
    };
    if let Some(disk) = &w.disk_cache {
        let d = disk.stats();
        (
            out.disk_hits,
            out.disk_misses,
            out.disk_bytes,
            out.disk_capacity,
        ) = (d.hits, d.misses, d.bytes, d.capacity);
    }
    let store = w.catalog.store_counters();
    out.store_requests = store.requests.load(Relaxed);
    out.store_bytes_read = store.bytes_read.load(Relaxed);
    out.store_bytes_written = store.bytes_written.load(Relaxed);
    out
}
