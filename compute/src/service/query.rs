//! Query: DuckDB SQL in the sandbox of `sql.rs`. Without `into` the result streams back as IPC
//! chunks; with `into` it is written to Parquet and committed as a dataset.

use std::sync::Arc;
use std::time::Duration;

use polarway_proto::v1 as pb;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::{dataset_info, ResponseStream, Worker};
use crate::error::{validate_name, Error, Result};
use crate::ipc::ChunkEncoder;
use crate::parquet_io::{columns_of, ParquetStager};
use crate::sql::{check_read_only, cold_path_patterns, referenced_identifiers, Output, Sandbox};
use crate::store::{dir::staging_name, Condition, Staged};

/// `client_deadline`: the time the caller will wait (grpc-timeout); the query gets the smaller of
/// it and the server's limit.
pub async fn query(
    w: Arc<Worker>,
    req: pb::QueryRequest,
    client_deadline: Option<Duration>,
    permit: OwnedSemaphorePermit,
) -> Result<ResponseStream<pb::QueryResponse>> {
    let timeout = client_deadline.map_or(w.sql.timeout, |d| d.min(w.sql.timeout));
    check_read_only(&req.sql)?;
    if let Some(into) = &req.into {
        validate_name(into)?;
    }
    let tables = prepare_tables(&w, &req.sql).await?;
    let (tx, rx) = mpsc::channel(4);
    let worker = w.clone();
    match req.into {
        None => {
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                if let Err(e) = stream_result(&worker, &req.sql, &tables, timeout, &tx) {
                    let _ = tx.blocking_send(Err(Status::from(e)));
                }
            });
        }
        Some(into) => {
            tokio::spawn(async move {
                let _permit = permit;
                let reply = store_result(worker, req.sql, tables, into, timeout, tx.clone()).await;
                let _ = tx.send(reply.map(|info| pb::QueryResponse { ipc: Default::default(), stored: Some(info) }).map_err(Status::from)).await;
            });
        }
    }
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// Datasets the SQL names (as tables, or by cold paths and globs): refresh their cold views and
/// return the ones to expose as views.
async fn prepare_tables(w: &Worker, sql: &str) -> Result<Vec<(String, std::path::PathBuf)>> {
    let names = w.catalog.names().await?;
    let idents = referenced_identifiers(sql);
    let patterns = cold_path_patterns(sql, w.cold.dir());
    let mut tables = Vec::new();
    for name in names {
        let as_table = idents.iter().any(|i| i == &name);
        if !as_table && !patterns.iter().any(|p| p.is_match(&name)) {
            continue;
        }
        w.cold.refresh(&w.catalog, &name).await?;
        if as_table && w.cold.path(&name).exists() {
            tables.push((name.clone(), w.cold.path(&name)));
        }
    }
    Ok(tables)
}

fn open_sandbox(w: &Worker, tables: &[(String, std::path::PathBuf)]) -> Result<Sandbox> {
    Sandbox::open(w.cold.dir(), &w.spill_dir, tables, &w.sql, &w.sandbox_spare)
}

fn stream_result(
    w: &Worker,
    sql: &str,
    tables: &[(String, std::path::PathBuf)],
    timeout: Duration,
    tx: &mpsc::Sender<Result<pb::QueryResponse, Status>>,
) -> Result<()> {
    let send = |ipc: bytes::Bytes| {
        tx.blocking_send(Ok(pb::QueryResponse { ipc, stored: None }))
            .map_err(|_| Error::Unavailable("the client went away".into()))
    };
    let sandbox = open_sandbox(w, tables)?;
    let mut encoder: Option<ChunkEncoder> = None;
    sandbox.run(sql, timeout, &|| tx.is_closed(), |out| {
        let chunks = match out {
            Output::Schema(schema) => {
                let mut enc = ChunkEncoder::new(&schema)?;
                let chunks = enc.take_chunks();
                encoder = Some(enc);
                chunks
            }
            Output::Batch(batch) => {
                w.metrics.rows_sent("Query", batch.num_rows());
                encoder.as_mut().expect("schema comes first").write(&batch)?
            }
        };
        // A failed send means the client went away: stop the query.
        Ok(chunks.into_iter().try_for_each(send).is_ok())
    })?;
    if let Some(enc) = encoder {
        enc.finish()?.into_iter().try_for_each(send)?;
    }
    Ok(())
}

async fn store_result(
    w: Arc<Worker>,
    sql: String,
    tables: Vec<(String, std::path::PathBuf)>,
    into: String,
    timeout: Duration,
    tx: mpsc::Sender<Result<pb::QueryResponse, Status>>,
) -> Result<pb::DatasetInfo> {
    let path = w.catalog.staging_dir().join(staging_name("parquet"));
    let worker = w.clone();
    let (path, rows, columns) = tokio::task::spawn_blocking(move || -> Result<_> {
        let sandbox = open_sandbox(&worker, &tables)?;
        let mut stager: Option<ParquetStager> = None;
        sandbox.run(&sql, timeout, &|| tx.is_closed(), |out| {
            match out {
                Output::Schema(schema) => stager = Some(ParquetStager::create(path.clone(), schema)?),
                Output::Batch(batch) => stager.as_mut().expect("schema comes first").write(&batch)?,
            }
            Ok(true)
        })?;
        let stager = stager.ok_or_else(|| Error::internal("query", "no result schema"))?;
        let columns = columns_of(stager.schema());
        let (path, rows) = stager.finish()?;
        Ok((path, rows, columns))
    })
    .await??;
    let m = w.catalog.commit(Staged { name: into, condition: Condition::Always, path, rows, columns }).await?;
    if let Err(e) = w.cold.refresh(&w.catalog, &m.name).await {
        tracing::warn!(dataset = %m.name, error = %e, "updating the cold view failed");
    }
    Ok(dataset_info(&m, true))
}
