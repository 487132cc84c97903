//! Query: DuckDB SQL through the gate and in the sandbox of `sql/`. Without `into` the result
//! streams back as IPC chunks; with `into` it is written to Parquet and committed as a dataset,
//! which is a write: the caller needs Store on the target as well as Query on what it reads.

use std::sync::Arc;
use std::time::Duration;

use polarway_access::Access;
use polarway_proto::v1 as pb;
use tonic::Status;

use super::reply::{self, Reply};
use super::{dataset_info, Admission, ResponseStream, Worker};
use crate::error::{Error, Result};
use crate::ipc::{Chunk, ChunkedStream};
use crate::parquet_io::{columns_of, ParquetStager};
use crate::scratch::staging_name;
use crate::sql::gate::ParamHint;
use crate::sql::reads::{resolve, Pinned, Places, Snapshot};
use crate::sql::{Output, Sandbox};
use crate::store::{validate_name, Condition, Staged};

/// `client_deadline`: the time the caller will wait (grpc-timeout); the query gets the smaller of
/// it and the server's limit.
pub async fn query(
    w: Arc<Worker>,
    req: pb::QueryRequest,
    access: Access,
    client_deadline: Option<Duration>,
    permit: Admission,
) -> Result<ResponseStream<pb::QueryResponse>> {
    let limit = w.sql_pool.limits().timeout;
    let timeout = client_deadline.map_or(limit, |d| d.min(limit));
    access.check_call("Query")?;
    if let Some(into) = &req.into {
        validate_name(into)?;
        access.check("Store", into)?;
    }
    // The response starts at once and the rest happens behind it: tonic ends a handler that
    // outlives the caller's deadline with CANCELLED, where the caller should see DEADLINE_EXCEEDED.
    let (reply, stream) = reply::channel(w.stall_timeout(), w.metrics.stalled("Query"));
    tokio::spawn(async move {
        let _permit = permit;
        if let Err(e) = run(&w, req, &access, timeout, reply).await {
            if let Error::PermissionDenied { reason, .. } = &e.0 {
                w.metrics.denied("Query", reason);
            }
            e.1.fail(Status::from(e.0));
        }
    });
    Ok(stream)
}

/// A failure, with the reply it is to end.
type Failed = (Error, Arc<Reply<pb::QueryResponse>>);

/// Check the SQL, pin what it reads, run it, and stream or store the result.
async fn run(
    w: &Arc<Worker>,
    req: pb::QueryRequest,
    access: &Access,
    timeout: Duration,
    reply: Reply<pb::QueryResponse>,
) -> std::result::Result<(), Failed> {
    let reply = Arc::new(reply);
    let failed = |e: Error| (e, reply.clone());
    let Planned { sql, pinned, .. } = plan(w, &req.sql, access, &Snapshot::new())
        .await
        .map_err(failed)?;
    let worker = w.clone();
    match req.into {
        None => {
            let out = reply.clone();
            tokio::task::spawn_blocking(move || {
                stream_result(&worker, &sql, &pinned, timeout, &out)
            })
            .await
            .map_err(Error::from)
            .and_then(|r| r)
            .map_err(failed)
        }
        Some(into) => {
            let info = store_result(worker, sql, pinned, into, timeout, reply.clone())
                .await
                .map_err(failed)?;
            let stored = pb::QueryResponse {
                ipc: Default::default(),
                stored: Some(info),
            };
            let out = reply.clone();
            let _ = tokio::task::spawn_blocking(move || out.send(stored)).await;
            Ok(())
        }
    }
}

/// A query checked by the gate, what it reads pinned, and its SQL rendered over the pinned files:
/// ready to run in a sandbox.
pub struct Planned {
    pub sql: String,
    pub pinned: Pinned,
    /// What the SQL says of each positional parameter's type.
    pub params: Vec<ParamHint>,
}

/// Check `sql`, pin what it reads (the versions in `snapshot` where it names them), and render it.
pub async fn plan(w: &Worker, sql: &str, access: &Access, snapshot: &Snapshot) -> Result<Planned> {
    let gate = w.sql_gate.clone();
    let text = sql.to_string();
    let checked = tokio::task::spawn_blocking(move || gate.check(&text)).await??;
    let places = Places {
        catalog: &w.catalog,
        cold_dirs: &w.cold_dirs,
        pins_root: &w.pins_dir,
    };
    let pinned = resolve(&places, &checked.reads, access, snapshot).await?;
    let params = checked.param_hints();
    // With no file paths to replace, what runs is the text the gate judged (DuckDB parses it
    // to the same tree); rendering it back costs a parser call.
    let sql = if checked.reads.paths.is_empty() {
        sql.to_string()
    } else {
        let gate = w.sql_gate.clone();
        let files = pinned.path_files.clone();
        tokio::task::spawn_blocking(move || gate.render(&checked, &files)).await??
    };
    Ok(Planned {
        sql,
        pinned,
        params,
    })
}

pub fn open_sandbox(w: &Worker, pinned: &Pinned) -> Result<Sandbox> {
    Sandbox::open(&w.sql_pool, pinned.dir(), &pinned.tables, &pinned.allowed())
}

fn stream_result(
    w: &Worker,
    sql: &str,
    pinned: &Pinned,
    timeout: Duration,
    reply: &Reply<pb::QueryResponse>,
) -> Result<()> {
    let send = |chunk: Chunk| {
        let ipc = match chunk.as_slice() {
            [one] => one.clone(),
            pieces => pieces.concat().into(),
        };
        reply.send(pb::QueryResponse { ipc, stored: None })
    };
    let sandbox = open_sandbox(w, pinned)?;
    let mut stream: Option<ChunkedStream> = None;
    sandbox.run(sql, &[], timeout, &|| reply.is_closed(), |out| {
        let chunks = match out {
            Output::Schema(schema) => {
                stream = Some(ChunkedStream::new(&schema)?);
                vec![]
            }
            Output::Batch(batch) => {
                w.metrics.rows_sent("Query", batch.num_rows());
                stream.as_mut().expect("schema comes first").batch(&batch)?
            }
        };
        // A failed send means the client went away: stop the query.
        Ok(chunks.into_iter().try_for_each(send).is_ok())
    })?;
    if let Some(stream) = stream {
        stream.finish()?.into_iter().try_for_each(send)?;
    }
    Ok(())
}

async fn store_result(
    w: Arc<Worker>,
    sql: String,
    pinned: Pinned,
    into: String,
    timeout: Duration,
    reply: Arc<Reply<pb::QueryResponse>>,
) -> Result<pb::DatasetInfo> {
    let path = w.catalog.staging_dir().join(staging_name("parquet"));
    let worker = w.clone();
    let (path, rows, columns) = tokio::task::spawn_blocking(move || -> Result<_> {
        let sandbox = open_sandbox(&worker, &pinned)?;
        let mut stager: Option<ParquetStager> = None;
        sandbox.run(&sql, &[], timeout, &|| reply.is_closed(), |out| {
            match out {
                Output::Schema(schema) => {
                    stager = Some(ParquetStager::create(path.clone(), schema)?)
                }
                Output::Batch(batch) => {
                    stager.as_mut().expect("schema comes first").write(&batch)?
                }
            }
            Ok(true)
        })?;
        let stager = stager.ok_or_else(|| Error::internal("query", "no result schema"))?;
        let columns = columns_of(stager.schema());
        let (path, rows) = stager.finish()?;
        Ok((path, rows, columns))
    })
    .await??;
    let staged = Staged {
        name: into,
        condition: Condition::Always,
        path,
        rows,
        columns,
    };
    let m = super::store::commit_one(&w, staged).await?;
    Ok(dataset_info(&m, true))
}
