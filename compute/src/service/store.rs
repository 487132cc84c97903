//! Store and StoreBatch: receive IPC chunks, write Parquet to a staging file as they arrive (so
//! memory stays at one batch whatever the upload's size), then commit through the catalog.

use bytes::Bytes;
use polarway_access::Access;
use polarway_proto::v1::{self as pb, condition::Kind, store_request::Msg};
use polarway_proto::CHUNK_LIMIT_BYTES;
use tokio::sync::mpsc;
use tonic::Streaming;

use super::Worker;
use crate::error::{validate_name, Error, Result};
use crate::ipc::ChunkDecoder;
use crate::parquet_io::{columns_of, ParquetStager};
use crate::store::{dir::staging_name, Condition, Manifest, Staged};

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
    let m = w.catalog.commit(staged).await?;
    w.metrics.rows_received("Store", m.rows);
    publish_cold(w, &m.name).await;
    Ok(m)
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
        publish_cold(w, &m.name).await;
    }
    Ok(ms)
}

/// The cold view is a convenience for SQL, refreshed again before each query that needs it: a
/// failure here must not fail a store that has committed.
async fn publish_cold(w: &Worker, name: &str) {
    if let Err(e) = w.cold.refresh(&w.catalog, name).await {
        tracing::warn!(dataset = ?name, error = %e, "updating the cold view failed");
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
