//! Load: stream a dataset version back as IPC chunks, batch by batch from the cache or from
//! Parquet. Small datasets are decoded whole once and kept in the read-through cache; larger ones
//! stream through with memory bounded by one batch plus a few chunks in flight.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use polarway_access::Access;
use polarway_proto::v1 as pb;
use tonic::Status;

use super::reply::{self, Reply};
use super::{dataset_info, Admission, ResponseStream, Worker};
use crate::cache::CachedTable;
use crate::error::{Error, Result};
use crate::ipc::ChunkEncoder;
use crate::parquet_io::{projection, ParquetBatches};

pub async fn load(
    w: Arc<Worker>,
    access: &Access,
    req: pb::LoadRequest,
    permit: Admission,
) -> Result<ResponseStream<pb::LoadResponse>> {
    access.check("Load", &req.name)?;
    let m = w.catalog.get(&req.name, req.version).await?;
    let key = m.data.clone().unwrap_or_default();
    let info = dataset_info(&m, true);
    let (reply, stream) = reply::channel(w.stall_timeout(), w.metrics.stalled("Load"));
    let columns = req.columns;

    let source = match w.cache.get(&key) {
        Some(table) => Source::Cached(table),
        None => {
            let data = w.catalog.open(&m).await?;
            // Worth trying to cache: its decoded size is at least its stored size, and collecting
            // stops once it passes the limit.
            let cacheable = m.bytes <= w.cache.admission_limit();
            let read_columns = if cacheable { vec![] } else { columns.clone() };
            let batches =
                tokio::task::spawn_blocking(move || ParquetBatches::open(&data, &read_columns))
                    .await??;
            Source::Parquet {
                batches,
                cache_as: cacheable.then_some(key),
            }
        }
    };
    // Validate the projection before the response starts, so a bad column is a clean error. A
    // projected Parquet read is already in the requested order; whole tables are projected here.
    let (indices, _) = projection(source.schema(), &columns)?;
    let project = if source.is_whole() { indices } else { None };

    let worker = w.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let sender = Sender { reply: &reply };
        if let Err(e) = send(&worker, source, project, info, &sender) {
            reply.fail(Status::from(e));
        }
    });
    Ok(stream)
}

enum Source {
    Cached(CachedTable),
    Parquet {
        batches: ParquetBatches,
        cache_as: Option<String>,
    },
}

impl Source {
    /// All columns, as stored (not projected while reading).
    fn is_whole(&self) -> bool {
        match self {
            Source::Cached(_) => true,
            Source::Parquet { cache_as, .. } => cache_as.is_some(),
        }
    }

    fn schema(&self) -> &SchemaRef {
        match self {
            Source::Cached(t) => &t.schema,
            Source::Parquet { batches, .. } => batches.schema(),
        }
    }
}

struct Sender<'a> {
    reply: &'a Reply<pb::LoadResponse>,
}

impl Sender<'_> {
    fn chunks(&self, chunks: Vec<bytes::Bytes>) -> Result<()> {
        chunks
            .into_iter()
            .try_for_each(|ipc| self.reply.send(pb::LoadResponse { dataset: None, ipc }))
    }
}

/// `columns`: indices to project whole batches to.
fn send(
    w: &Worker,
    source: Source,
    columns: Option<Vec<usize>>,
    info: pb::DatasetInfo,
    out: &Sender,
) -> Result<()> {
    let project = |b: &RecordBatch| -> Result<RecordBatch> {
        match &columns {
            Some(o) => b.project(o).map_err(|e| Error::internal("projecting", e)),
            None => Ok(b.clone()),
        }
    };
    let schema = match &columns {
        Some(o) => Arc::new(
            source
                .schema()
                .project(o)
                .map_err(|e| Error::internal("projecting", e))?,
        ),
        None => source.schema().clone(),
    };
    out.reply.send(pb::LoadResponse {
        dataset: Some(info),
        ipc: Default::default(),
    })?;
    let mut encoder = ChunkEncoder::new(&schema)?;
    out.chunks(encoder.take_chunks())?;
    match source {
        Source::Cached(table) => {
            for b in table.batches.iter() {
                out.chunks(encoder.write(&project(b)?)?)?;
                w.metrics.rows_sent("Load", b.num_rows());
            }
        }
        Source::Parquet { batches, cache_as } => {
            let full_schema = batches.schema().clone();
            let limit = w.cache.admission_limit();
            let mut kept: Option<(Vec<RecordBatch>, u64)> =
                cache_as.as_ref().map(|_| (Vec::new(), 0));
            for batch in batches {
                let batch = batch?;
                out.chunks(encoder.write(&project(&batch)?)?)?;
                w.metrics.rows_sent("Load", batch.num_rows());
                if let Some((list, size)) = kept.as_mut() {
                    *size += batch.get_array_memory_size() as u64;
                    if *size > limit {
                        kept = None; // too big to cache after all
                    } else {
                        list.push(batch);
                    }
                }
            }
            if let (Some(key), Some((list, _))) = (cache_as, kept) {
                w.cache.insert(
                    key,
                    CachedTable {
                        schema: full_schema,
                        batches: Arc::new(list),
                    },
                );
            }
        }
    }
    out.chunks(encoder.finish()?)
}
