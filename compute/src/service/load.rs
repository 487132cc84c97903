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
use crate::ipc::{Chunk, ChunkedStream};
use crate::parquet_io::{projection, ParquetBatches};
use crate::sql::Output;
use crate::store::Manifest;
use crate::wire;

/// Load: the dataset info, then the IPC stream in chunks, each made of pieces of Arrow's own
/// buffers (`crate::wire`); tonic's Load handler joins each chunk's pieces (`into_response`).
pub async fn load(
    w: Arc<Worker>,
    access: &Access,
    req: pb::LoadRequest,
    permit: Admission,
) -> Result<ResponseStream<wire::Message>> {
    let opened = open(&w, access, &req.name, req.version, req.columns).await?;
    let info = dataset_info(&opened.manifest, true);
    let (reply, stream) = reply::channel(w.stall_timeout(), w.metrics.stalled("Load"));
    let worker = w.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        if let Err(e) = send_pieces(&worker, opened, info, &reply) {
            reply.fail(Status::from(e));
        }
    });
    Ok(stream)
}

/// One message of `load` as a `LoadResponse` (its pieces joined in one buffer).
pub fn into_response(m: wire::Message) -> Result<pb::LoadResponse, Status> {
    use prost::Message as _;
    let mut response = pb::LoadResponse::decode(m.head)
        .map_err(|e| Status::internal(format!("re-reading a load message: {e}")))?;
    if !m.pieces.is_empty() {
        response.ipc = m.pieces.concat().into();
    }
    Ok(response)
}

/// LoadResponse's `ipc` field.
const IPC_FIELD: u32 = 2;

/// Blocking: the dataset info first, then the IPC stream in chunks of at most
/// `CHUNK_TARGET_BYTES`, each cut from the encoder's pieces without copying.
fn send_pieces(
    w: &Worker,
    opened: Opened,
    info: pb::DatasetInfo,
    reply: &Reply<wire::Message>,
) -> Result<()> {
    use prost::Message as _;
    let head = pb::LoadResponse {
        dataset: Some(info),
        ipc: Default::default(),
    };
    reply.send(wire::Message {
        head: head.encode_to_vec().into(),
        field: IPC_FIELD,
        pieces: vec![],
    })?;
    let chunk = |pieces: Chunk| wire::Message {
        head: bytes::Bytes::new(),
        field: IPC_FIELD,
        pieces,
    };
    let mut stream: Option<ChunkedStream> = None;
    send(w, opened, "Load", &mut |out| {
        let chunks = match out {
            Output::Schema(schema) => {
                stream = Some(ChunkedStream::new(&schema)?);
                vec![]
            }
            Output::Batch(batch) => stream.as_mut().expect("schema comes first").batch(&batch)?,
        };
        chunks.into_iter().try_for_each(|c| reply.send(chunk(c)))
    })?;
    if let Some(stream) = stream {
        for c in stream.finish()? {
            reply.send(chunk(c))?;
        }
    }
    Ok(())
}

/// A dataset version ready to stream: where its batches come from and how to project them.
pub struct Opened {
    pub manifest: Manifest,
    source: Source,
    /// Indices to project whole batches to.
    project: Option<Vec<usize>>,
}

impl Opened {
    /// The schema of the whole version (before any projection).
    pub fn schema(&self) -> &SchemaRef {
        self.source.schema()
    }
}

/// Find the version, check the caller may load it, and open its batches (from the cache, else
/// from Parquet). A bad column is an error here, before any response starts.
pub async fn open(
    w: &Worker,
    access: &Access,
    name: &str,
    version: Option<u64>,
    columns: Vec<String>,
) -> Result<Opened> {
    access.check("Load", name)?;
    let m = w.catalog.get(name, version).await?;
    let key = m.data.clone().unwrap_or_default();
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
    // A projected Parquet read is already in the requested order; whole tables are projected here.
    let (indices, _) = projection(source.schema(), &columns)?;
    let project = if source.is_whole() { indices } else { None };
    Ok(Opened {
        manifest: m,
        source,
        project,
    })
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

/// Blocking: hand the (projected) schema and then each batch to `sink`, filling the cache on
/// the way when the version is worth caching. `method` labels the rows-sent metric.
pub fn send(
    w: &Worker,
    opened: Opened,
    method: &'static str,
    sink: &mut dyn FnMut(Output) -> Result<()>,
) -> Result<()> {
    let Opened {
        source,
        project: columns,
        ..
    } = opened;
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
    sink(Output::Schema(schema))?;
    match source {
        Source::Cached(table) => {
            for b in table.batches.iter() {
                sink(Output::Batch(project(b)?))?;
                w.metrics.rows_sent(method, b.num_rows());
            }
        }
        Source::Parquet { batches, cache_as } => {
            let full_schema = batches.schema().clone();
            let limit = w.cache.admission_limit();
            let mut kept: Option<(Vec<RecordBatch>, u64)> =
                cache_as.as_ref().map(|_| (Vec::new(), 0));
            for batch in batches {
                let batch = batch?;
                sink(Output::Batch(project(&batch)?))?;
                w.metrics.rows_sent(method, batch.num_rows());
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
    Ok(())
}
