//! Store and StoreBatch: receive IPC chunks, write Parquet to a staging file as they arrive (so
//! memory stays at one batch whatever the upload's size), then commit through the catalog.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use polarway_access::Access;
use polarway_proto::v1::{self as pb, condition::Kind, store_request::Msg};
use polarway_proto::CHUNK_LIMIT_BYTES;
use tokio::sync::mpsc;
use tonic::Streaming;

use super::{load, Worker};
use crate::error::{Error, Result};
use crate::ipc::ChunkDecoder;
use crate::parquet_io::{columns_of, ParquetStager};
use crate::scratch::staging_name;
use crate::sql::Output;
use crate::store::{validate_name, ColumnInfo, Condition, Manifest, Staged};

pub async fn store_one(
    w: &Worker,
    access: &Access,
    mut stream: Streaming<pb::StoreRequest>,
) -> Result<Manifest> {
    let header = first_header(&mut stream, "Store").await?;
    let mut total = 0;
    let (staged, next) =
        receive_dataset(w, (access, "Store"), header, &mut stream, &mut total).await?;
    if next.is_some() {
        return Err(Error::InvalidArgument(
            "Store takes one dataset; send several with StoreBatch".into(),
        ));
    }
    let m = commit_one(w, staged).await?;
    w.metrics.rows_received("Store", m.rows);
    Ok(m)
}

/// Commit one staged dataset and publish it to the cold view: the one step of every write of a
/// single dataset (Store, Flight uploads, a query's result stored with `into`).
pub async fn commit_one(w: &Worker, staged: Staged) -> Result<Manifest> {
    let m = w.catalog.commit(staged).await?;
    publish_cold(w, &m).await;
    Ok(m)
}

/// A dataset version written from record batches as they arrive (Flight uploads): a blocking
/// writer behind a small channel, so memory stays at a few batches whatever the upload's size.
pub struct BatchStager {
    tx: mpsc::Sender<Incoming>,
    writer: tokio::task::JoinHandle<Result<(std::path::PathBuf, u64, Vec<ColumnInfo>)>>,
    schema: SchemaRef,
}

enum Incoming {
    Batch(RecordBatch),
    End,
}

impl BatchStager {
    /// Start a file of `schema`; with `before`, its rows come first (an append). A `before` of
    /// other columns or types is refused.
    pub fn start(w: Arc<Worker>, schema: SchemaRef, before: Option<load::Opened>) -> Result<Self> {
        if let Some(old) = &before {
            let same = old.schema().fields().len() == schema.fields().len()
                && old
                    .schema()
                    .fields()
                    .iter()
                    .zip(schema.fields())
                    .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
            if !same {
                return Err(Error::InvalidArgument(format!(
                    "appending to dataset {:?} needs its columns and types ({}); these are ({})",
                    old.manifest.name,
                    describe_fields(old.schema()),
                    describe_fields(&schema)
                )));
            }
        }
        let path = w.catalog.staging_dir().join(staging_name("parquet"));
        let (tx, mut rx) = mpsc::channel::<Incoming>(4);
        let file_schema = schema.clone();
        let writer = tokio::task::spawn_blocking(move || {
            let mut stager = ParquetStager::create(path, file_schema)?;
            if let Some(old) = before {
                load::send(&w, old, "Store", &mut |out| match out {
                    Output::Schema(_) => Ok(()),
                    Output::Batch(b) => stager.write(&b),
                })?;
            }
            loop {
                match rx.blocking_recv() {
                    Some(Incoming::Batch(b)) => stager.write(&b)?,
                    Some(Incoming::End) => break,
                    None => {
                        return Err(Error::Aborted(
                            "the upload was interrupted; nothing was stored".into(),
                        ))
                    }
                }
            }
            let columns = columns_of(stager.schema());
            let (path, rows) = stager.finish()?;
            Ok((path, rows, columns))
        });
        Ok(Self { tx, writer, schema })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub async fn write(&self, batch: RecordBatch) -> Result<()> {
        if batch.schema().fields() != self.schema.fields() {
            return Err(Error::InvalidArgument(
                "every batch of an upload must have the schema it started with".into(),
            ));
        }
        if self.tx.send(Incoming::Batch(batch)).await.is_err() {
            // The writer stopped: its error says why.
            return Err(Error::Aborted("the dataset writer stopped".into()));
        }
        Ok(())
    }

    /// The staged file, once every batch is written; `Err` with the writer's error if it failed.
    pub async fn finish(self, name: String, condition: Condition) -> Result<Staged> {
        let _ = self.tx.send(Incoming::End).await;
        drop(self.tx);
        let (path, rows, columns) = self.writer.await??;
        Ok(Staged {
            name,
            condition,
            path,
            rows,
            columns,
        })
    }

    /// Stop; the partial file is removed. Returns the writer's own error, if it had one.
    pub async fn abort(self) -> Option<Error> {
        drop(self.tx);
        match self.writer.await {
            Ok(Err(Error::Aborted(_))) | Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(e.into()),
        }
    }
}

fn describe_fields(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every header is checked before its data is read: one dataset the caller may not write fails
/// the whole batch, and nothing of it is committed.
pub async fn store_batch(
    w: &Worker,
    access: &Access,
    mut stream: Streaming<pb::StoreRequest>,
) -> Result<Vec<Manifest>> {
    let mut header = Some(first_header(&mut stream, "StoreBatch").await?);
    let mut total = 0;
    let mut staged = Vec::new();
    while let Some(h) = header.take() {
        let (s, next) =
            receive_dataset(w, (access, "StoreBatch"), h, &mut stream, &mut total).await?;
        staged.push(s);
        header = next;
    }
    let ms = w.catalog.commit_batch(staged).await?;
    for m in &ms {
        w.metrics.rows_received("StoreBatch", m.rows);
        publish_cold(w, m).await;
    }
    Ok(ms)
}

/// The cold view is a convenience for outside tools (queries read the versions they pin): a
/// failure here must not fail a store that has committed.
async fn publish_cold(w: &Worker, m: &Manifest) {
    if let Err(e) = w.cold.publish_version(&w.catalog, m).await {
        tracing::warn!(dataset = ?m.name, error = %e, "updating the cold view failed");
    }
}

async fn first_header(
    stream: &mut Streaming<pb::StoreRequest>,
    call: &str,
) -> Result<pb::StoreHeader> {
    match stream.message().await? {
        Some(pb::StoreRequest { msg: Some(Msg::Header(h)) }) => Ok(h),
        _ => Err(Error::InvalidArgument(format!(
            "{call} must start with a StoreHeader message naming the dataset, followed by its Arrow IPC chunks"
        ))),
    }
}

fn condition(h: &pb::StoreHeader) -> Condition {
    match h.condition.as_ref().and_then(|c| c.kind) {
        Some(Kind::IfAbsent(true)) => Condition::IfAbsent,
        Some(Kind::IfVersion(v)) => Condition::IfVersion(v),
        _ => Condition::Always,
    }
}

enum Chunk {
    Data(Bytes),
    End,
}

/// Receive one dataset's chunks into a staged Parquet file. Returns the next dataset's header
/// when the stream goes on with one (StoreBatch).
async fn receive_dataset(
    w: &Worker,
    (access, method): (&Access, &str),
    header: pb::StoreHeader,
    stream: &mut Streaming<pb::StoreRequest>,
    total: &mut u64,
) -> Result<(Staged, Option<pb::StoreHeader>)> {
    validate_name(&header.name)?;
    access.check(method, &header.name)?;
    let name = header.name.clone();
    let path = w.catalog.staging_dir().join(staging_name("parquet"));
    let (tx, rx) = mpsc::channel::<Chunk>(4);
    let what = format!("dataset {name:?}");
    let writer = tokio::task::spawn_blocking(move || stage(rx, path, what));

    let mut next = None;
    let received: Result<()> = async {
        while let Some(msg) = stream.message().await? {
            match msg.msg {
                Some(Msg::Ipc(chunk)) => {
                    if chunk.len() > CHUNK_LIMIT_BYTES {
                        return Err(Error::ResourceExhausted(format!(
                            "an IPC chunk of {} bytes exceeds the {} byte limit; cut the stream into chunks of at most 1 MiB",
                            chunk.len(),
                            CHUNK_LIMIT_BYTES
                        )));
                    }
                    *total += chunk.len() as u64;
                    if *total > w.max_upload_bytes {
                        return Err(Error::ResourceExhausted(format!(
                            "the upload exceeds the server's {} byte limit (--max-upload-bytes)",
                            w.max_upload_bytes
                        )));
                    }
                    if tx.send(Chunk::Data(chunk)).await.is_err() {
                        return Ok(()); // the writer failed; its error is reported below
                    }
                }
                Some(Msg::Header(h)) => {
                    next = Some(h);
                    return Ok(());
                }
                None => return Err(Error::InvalidArgument("empty StoreRequest message".into())),
            }
        }
        Ok(())
    }
    .await;
    if received.is_ok() {
        let _ = tx.send(Chunk::End).await;
    }
    drop(tx);
    let staged = writer.await?;
    received?;
    let (path, rows, columns) = staged?;
    Ok((
        Staged {
            name,
            condition: condition(&header),
            path,
            rows,
            columns,
        },
        next,
    ))
}

/// Blocking: decode chunks and write Parquet until `End`. A closed channel without `End` means
/// the upload failed; the staging file is then removed.
fn stage(
    mut rx: mpsc::Receiver<Chunk>,
    path: std::path::PathBuf,
    what: String,
) -> Result<(std::path::PathBuf, u64, Vec<crate::store::ColumnInfo>)> {
    let mut decoder = ChunkDecoder::new(what);
    let mut stager: Option<ParquetStager> = None;
    loop {
        match rx.blocking_recv() {
            Some(Chunk::Data(bytes)) => {
                let batches = decoder.push(bytes)?;
                if stager.is_none() {
                    if let Some(schema) = decoder.schema() {
                        stager = Some(ParquetStager::create(path.clone(), schema)?);
                    }
                }
                for batch in batches {
                    stager
                        .as_mut()
                        .expect("schema precedes batches")
                        .write(&batch)?;
                }
            }
            Some(Chunk::End) => break,
            None => {
                return Err(Error::Aborted(
                    "the upload was interrupted; nothing was stored".into(),
                ))
            }
        }
    }
    decoder.finish()?;
    let stager = stager.expect("finish checked the schema");
    let columns = columns_of(stager.schema());
    let (path, rows) = stager.finish()?;
    Ok((path, rows, columns))
}
