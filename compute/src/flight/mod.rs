//! Arrow Flight and Flight SQL on the worker's port, next to `polarway.v1`: ADBC, JDBC and
//! pyarrow.flight clients use the worker with no Polarway code.
//!
//! Every call is admitted as the native calls are (`Worker::admit`) and enforced where data is
//! touched, under the Polarway method it amounts to: SQL is a Query (through the same gate and
//! sandbox), a PATH descriptor's DoGet a Load, DoPut and ingest a Store, GetTables and ListFlights
//! a List filtered to what the caller may list. Tickets and prepared-statement handles are
//! self-contained and signed (`ticket.rs`): no server keeps state between calls, so any worker
//! sharing the ticket key serves any ticket, and a ticket reads the dataset versions resolved when
//! it was issued.

pub mod encode;
pub mod grpc;
mod metadata;
mod params;
pub mod ticket;

use std::collections::HashMap;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow_flight::decode::{DecodedPayload, FlightDataDecoder, FlightRecordBatchStream};
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetCrossReference,
    CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest,
    CommandStatementQuery, CommandStatementSubstraitPlan, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TableExistsOption, TableNotExistOption,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, Criteria,
    Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::{Stream, StreamExt, TryStreamExt};
use polarway_access::Access;
use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::error::{validate_name, Error, Result};
use crate::service::query::{open_sandbox, plan, Planned};
use crate::service::{client_deadline, load, reply, store, Admission, Worker};
use crate::sql::reads::Snapshot;
use crate::sql::Output;
use crate::store::Condition;
use encode::Wire;
use ticket::{Claims, Signer, What, HANDLE_TTL, TICKET_TTL};

type Stream_<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send + 'static>>;

/// A `polarway.v1.LoadRequest` packed in a command descriptor: a load with columns (what Polarway's
/// own clients send to load over Flight).
pub const LOAD_REQUEST_TYPE: &str = "type.googleapis.com/polarway.v1.LoadRequest";

/// An ingest option (or call header) that makes the write conditional on the dataset's current
/// version, as Store's `IfVersion`.
pub const IF_VERSION_OPTION: &str = "polarway.if_version";
const IF_VERSION_HEADER: &str = "x-polarway-if-version";

/// Datasets live in DuckDB's default catalog and schema: the names Flight SQL clients see, and
/// the only qualifiers the SQL gate accepts.
pub const CATALOG: &str = "memory";
pub const DB_SCHEMA: &str = "main";

/// The Flight service: plain Flight (PATH descriptors, ListFlights, GetSchema, Handshake,
/// CancelFlightInfo) here, Flight SQL commands in `FlightSql`.
#[derive(Clone)]
pub struct Flight {
    sql: FlightSql,
}

#[derive(Clone)]
pub struct FlightSql {
    w: Arc<Worker>,
    signer: Arc<Signer>,
    running: Arc<Running>,
}

/// Queries started from tickets on this worker, by ticket id, so CancelFlightInfo can stop them
/// (and a ticket cancelled before its DoGet is refused).
#[derive(Default)]
struct Running {
    by_id: Mutex<HashMap<String, (Arc<AtomicBool>, u64)>>,
}

/// A query running from a ticket: its cancel flag, registered until it ends.
struct Run {
    running: Arc<Running>,
    id: String,
    cancelled: Arc<AtomicBool>,
}

impl Run {
    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

impl Drop for Run {
    /// A finished query is forgotten; a cancelled ticket stays known (until it expires) so a later
    /// DoGet of it is refused.
    fn drop(&mut self) {
        if !self.is_cancelled() {
            let mut map = self.running.by_id.lock().unwrap_or_else(|e| e.into_inner());
            map.remove(&self.id);
        }
    }
}

impl Running {
    fn start(self: &Arc<Self>, id: &str, exp: u64) -> Run {
        Run {
            running: self.clone(),
            id: id.to_string(),
            cancelled: self.flag(id, exp),
        }
    }

    fn flag(&self, id: &str, exp: u64) -> Arc<AtomicBool> {
        let mut map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 10_000 {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            map.retain(|_, (_, exp)| *exp >= now);
        }
        map.entry(id.to_string())
            .or_insert_with(|| (Arc::new(AtomicBool::new(false)), exp))
            .0
            .clone()
    }
}

impl Flight {
    pub fn new(w: Arc<Worker>, signer: Signer) -> Self {
        Self {
            sql: FlightSql {
                w,
                signer: Arc::new(signer),
                running: Default::default(),
            },
        }
    }
}

/// What a DoGet streams (DuckDB's or the loader's output) as Flight data messages on a reply.
struct FrameSender<'a> {
    reply: &'a reply::Reply<Wire>,
    encoder: encode::FrameEncoder,
}

impl<'a> FrameSender<'a> {
    fn new(reply: &'a reply::Reply<Wire>) -> Self {
        Self {
            reply,
            encoder: encode::FrameEncoder::new(),
        }
    }

    fn send(&mut self, out: Output) -> Result<()> {
        match out {
            Output::Schema(schema) => self.reply.send(self.encoder.schema(&schema)?),
            Output::Batch(batch) => self
                .encoder
                .batch(&batch)?
                .into_iter()
                .try_for_each(|m| self.reply.send(m)),
        }
    }
}

fn status(e: Error) -> Status {
    Status::from(e)
}

/// A PATH descriptor: `[name]` or `[name, "v3"]` (a version also as `"3"`).
fn path_target(desc: &FlightDescriptor) -> Result<(String, Option<u64>)> {
    let bad = || {
        Error::InvalidArgument(
            "a PATH descriptor names a dataset: [name] or [name, \"v3\"] for version 3".into(),
        )
    };
    let (name, version) = match desc.path.as_slice() {
        [name] => (name.clone(), None),
        [name, v] => {
            let digits = v.strip_prefix('v').unwrap_or(v);
            (
                name.clone(),
                Some(digits.parse::<u64>().map_err(|_| bad())?),
            )
        }
        _ => return Err(bad()),
    };
    validate_name(&name)?;
    Ok((name, version))
}

fn is_path(desc: &FlightDescriptor) -> bool {
    desc.r#type == arrow_flight::flight_descriptor::DescriptorType::Path as i32
}

impl FlightSql {
    /// Admit a call as `method` (None: any authenticated caller, for static metadata).
    async fn admit(
        &self,
        md: &MetadataMap,
        method: Option<&str>,
    ) -> Result<(Admission, Access), Status> {
        self.w.admit(md, method).await
    }

    fn denied(&self, method: &str, e: Error) -> Status {
        if let Error::PermissionDenied { reason, .. } = &e {
            self.w.metrics.denied(method, reason);
        }
        status(e)
    }

    fn ticket_info(
        &self,
        claims: &Claims,
        schema: &arrow::datatypes::Schema,
        desc: FlightDescriptor,
    ) -> Result<FlightInfo> {
        let handle = self.signer.seal(claims);
        let ticket = TicketStatementQuery {
            statement_handle: handle,
        };
        let endpoint =
            FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
        Ok(FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Error::internal("encoding a schema", e))?
            .with_endpoint(endpoint)
            .with_descriptor(desc)
            .with_total_records(-1)
            .with_ordered(true))
    }

    /// Plan `sql` as `access` and describe it: its result's schema and its parameters' types.
    async fn describe(
        &self,
        sql: &str,
        access: &Access,
        md: &MetadataMap,
    ) -> Result<(SchemaRef, Vec<arrow::datatypes::DataType>)> {
        let Planned {
            sql,
            pinned,
            params: hints,
        } = plan(&self.w, sql, access, &Snapshot::new()).await?;
        // The columns of what it reads, to type parameters compared with them.
        let mut columns = Vec::new();
        for (name, version) in &pinned.versions {
            let m = self.w.catalog.get(name, Some(*version)).await?;
            for c in m.columns {
                if let Ok(t) = arrow::datatypes::DataType::from_str(&c.data_type) {
                    columns.push((c.name, t));
                }
            }
        }
        let types: Vec<_> = hints
            .iter()
            .map(|h| params::param_type(h, &columns))
            .collect();
        let w = self.w.clone();
        let timeout = self.timeout(md);
        let nulls = vec![duckdb::types::Value::Null; types.len()];
        let schema = tokio::task::spawn_blocking(move || {
            open_sandbox(&w, &pinned)?.describe(&sql, &nulls, timeout)
        })
        .await??;
        Ok((schema, types))
    }

    fn timeout(&self, md: &MetadataMap) -> std::time::Duration {
        client_deadline(md).map_or(self.w.sql.timeout, |d| d.min(self.w.sql.timeout))
    }

    /// GetFlightInfo for SQL (a statement or a prepared statement with its parameters).
    async fn sql_info(
        &self,
        sql: String,
        params: Option<String>,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let (_admitted, access) = self.admit(request.metadata(), Some("Query")).await?;
        let md = request.metadata().clone();
        let desc = request.into_inner();
        let run = async {
            let Planned {
                sql: rendered,
                pinned,
                ..
            } = plan(&self.w, &sql, &access, &Snapshot::new()).await?;
            let snapshot = pinned.versions.clone();
            let w = self.w.clone();
            let timeout = self.timeout(&md);
            let bound = match &params {
                Some(p) => params::values(&ticket::decode_params(p)?)?,
                None => vec![],
            };
            let schema = tokio::task::spawn_blocking(move || {
                open_sandbox(&w, &pinned)?.describe(&rendered, &bound, timeout)
            })
            .await??;
            let claims = Claims::new(
                What::Sql { sql, params },
                snapshot,
                access.who(),
                TICKET_TTL,
            );
            self.ticket_info(&claims, &schema, desc)
        };
        run.await
            .map(Response::new)
            .map_err(|e| self.denied("Query", e))
    }

    /// DoGet of a ticket this service issued: its messages, their bodies still in pieces.
    pub async fn redeem(
        &self,
        handle: &[u8],
        md: &MetadataMap,
    ) -> std::result::Result<Stream_<Wire>, Status> {
        // Admitted as any caller first: the ticket says which method it amounts to.
        let (_probe, access) = self.admit(md, None).await?;
        let claims = self
            .signer
            .open(handle, access.who())
            .map_err(|e| self.denied("Query", e))?;
        drop(_probe);
        let run = self.running.start(&claims.id, claims.exp);
        if run.is_cancelled() {
            return Err(Status::aborted(
                "this query was cancelled (CancelFlightInfo)",
            ));
        }
        match claims.what {
            What::Load {
                name,
                version,
                columns,
            } => {
                let (permit, access) = self.admit(md, Some("Load")).await?;
                let opened = load::open(&self.w, &access, &name, Some(version), columns)
                    .await
                    .map_err(|e| self.denied("Load", e))?;
                let (reply, stream) =
                    reply::channel(self.w.stall_timeout(), self.w.metrics.stalled("Load"));
                let w = self.w.clone();
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let mut frames = FrameSender::new(&reply);
                    let sent =
                        load::send(&w, opened, "Load", &mut |out| match run.is_cancelled() {
                            true => Err(Error::Aborted(
                                "the load was cancelled (CancelFlightInfo)".into(),
                            )),
                            false => frames.send(out),
                        });
                    if let Err(e) = sent {
                        reply.fail(status(e));
                    }
                });
                Ok(stream)
            }
            What::Sql { sql, params } => {
                let (permit, access) = self.admit(md, Some("Query")).await?;
                let timeout = self.timeout(md);
                let Planned {
                    sql: rendered,
                    pinned,
                    ..
                } = plan(&self.w, &sql, &access, &claims.snapshot)
                    .await
                    .map_err(|e| self.denied("Query", e))?;
                let bound = match &params {
                    Some(p) => params::values(&ticket::decode_params(p).map_err(status)?)
                        .map_err(status)?,
                    None => vec![],
                };
                let (reply, stream) =
                    reply::channel(self.w.stall_timeout(), self.w.metrics.stalled("Query"));
                let w = self.w.clone();
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let result = (|| -> Result<()> {
                        let sandbox = open_sandbox(&w, &pinned)?;
                        let stop = || reply.is_closed() || run.is_cancelled();
                        let mut frames = FrameSender::new(&reply);
                        sandbox.run(&rendered, &bound, timeout, &stop, |out| {
                            if let Output::Batch(b) = &out {
                                w.metrics.rows_sent("Query", b.num_rows());
                            }
                            Ok(frames.send(out).is_ok())
                        })
                    })();
                    match result {
                        Ok(()) => {}
                        // ABORTED rather than CANCELLED: pyarrow turns a CANCELLED status into a
                        // simulated Ctrl-C in the reading process's main thread.
                        Err(_) if run.is_cancelled() => reply.fail(Status::aborted(
                            "the query was cancelled (CancelFlightInfo)",
                        )),
                        Err(e) => reply.fail(status(e)),
                    }
                });
                Ok(stream)
            }
        }
    }

    /// A Store from a Flight upload: the batches of `stream` as a new version of `name`.
    async fn put(
        &self,
        name: &str,
        access: &Access,
        condition: Condition,
        append: bool,
        stream: PeekableFlightDataStream,
    ) -> Result<(crate::store::Manifest, u64)> {
        validate_name(name)?;
        access.check("Store", name)?;
        // Messages with only app_metadata never reach the decoder, which takes every message for
        // an IPC one.
        let data = stream.filter_map(|item| async move {
            match item {
                Ok(d) if d.data_header.is_empty() => None,
                other => Some(other.map_err(FlightError::from)),
            }
        });
        let mut messages = FlightDataDecoder::new(data);
        let max = self.w.max_upload_bytes;
        let (mut total, mut rows) = (0u64, 0u64);
        let mut schema: Option<SchemaRef> = None;
        let mut stager: Option<store::BatchStager> = None;
        let mut condition = condition;
        let received: Result<()> = async {
            while let Some(message) = messages.next().await {
                let message = message.map_err(|e| match e {
                    FlightError::Tonic(s) => Error::Status(*s),
                    other => Error::InvalidArgument(format!(
                        "the uploaded Arrow data is invalid: {other}"
                    )),
                })?;
                let batch = match message.payload {
                    DecodedPayload::Schema(s) => {
                        schema = Some(s);
                        continue;
                    }
                    DecodedPayload::RecordBatch(batch) => batch,
                    DecodedPayload::None => continue,
                };
                total += batch.get_array_memory_size() as u64;
                if total > max {
                    return Err(Error::ResourceExhausted(format!(
                        "the upload exceeds the server's {max} byte limit (--max-upload-bytes)"
                    )));
                }
                if stager.is_none() {
                    let (s, c) = self
                        .start_stager(name, access, batch.schema(), condition, append)
                        .await?;
                    stager = Some(s);
                    condition = c;
                }
                rows += batch.num_rows() as u64;
                stager.as_ref().expect("started").write(batch).await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = received {
            if let Some(s) = stager {
                if let Some(inner) = s.abort().await {
                    return Err(inner);
                }
            }
            return Err(e);
        }
        let stager = match stager {
            Some(s) => s,
            // No batch: the schema alone (an empty dataset).
            None => {
                let schema = schema.ok_or_else(|| {
                    Error::InvalidArgument("the upload carried no Arrow schema".into())
                })?;
                let (s, c) = self
                    .start_stager(name, access, schema, condition, append)
                    .await?;
                condition = c;
                s
            }
        };
        let staged = stager.finish(name.to_string(), condition).await?;
        Ok((store::commit_one(&self.w, staged, "Store").await?, rows))
    }

    /// The writer for an upload; an append starts with the current version's rows and commits
    /// only if that version is still the latest.
    async fn start_stager(
        &self,
        name: &str,
        access: &Access,
        schema: SchemaRef,
        condition: Condition,
        append: bool,
    ) -> Result<(store::BatchStager, Condition)> {
        if !append {
            return Ok((
                store::BatchStager::start(self.w.clone(), schema, None)?,
                condition,
            ));
        }
        let current = match condition {
            Condition::IfVersion(v) => Some(v),
            _ => None,
        };
        match load::open(&self.w, &access.clone(), name, current, vec![]).await {
            Ok(old) => {
                if let Condition::IfAbsent = condition {
                    return Err(Error::AlreadyExists(format!(
                        "dataset {name:?} already exists"
                    )));
                }
                let version = old.manifest.version;
                let stager = store::BatchStager::start(self.w.clone(), schema, Some(old))?;
                Ok((stager, Condition::IfVersion(version)))
            }
            Err(Error::NotFound(_)) if current.is_none() => Ok((
                store::BatchStager::start(self.w.clone(), schema, None)?,
                Condition::IfAbsent,
            )),
            Err(e) => Err(e),
        }
    }
}

/// A version condition from the `x-polarway-if-version` call header or the ingest option.
fn if_version(md: &MetadataMap, options: &HashMap<String, String>) -> Result<Option<u64>> {
    let text = options.get(IF_VERSION_OPTION).cloned().or_else(|| {
        md.get(IF_VERSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    match text {
        None => Ok(None),
        Some(t) => t.trim().parse::<u64>().map(Some).map_err(|_| {
            Error::InvalidArgument(format!(
                "{IF_VERSION_OPTION} (or {IF_VERSION_HEADER}) must be a version number, not {t:?}"
            ))
        }),
    }
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> std::result::Result<Response<Stream_<HandshakeResponse>>, Status> {
        handshake(&self.w, request).await
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        if query.transaction_id.is_some() {
            return Err(Status::unimplemented(
                "transactions are not supported: every query reads a consistent snapshot on its own",
            ));
        }
        self.sql_info(query.query, None, request).await
    }

    async fn get_flight_info_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        _request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented(
            "Substrait plans are not supported; send SQL",
        ))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let (admitted, access) = self.admit(request.metadata(), Some("Query")).await?;
        let claims = self
            .signer
            .open(&cmd.prepared_statement_handle, access.who())
            .map_err(|e| self.denied("Query", e))?;
        drop(admitted);
        match claims.what {
            What::Sql { sql, params } => self.sql_info(sql, params, request).await,
            What::Load { .. } => Err(Status::invalid_argument(
                "this handle is not a prepared statement",
            )),
        }
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.admit(request.metadata(), None).await?;
        let schema = query.into_builder().schema();
        metadata::command_info(&schema, request.into_inner())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.admit(request.metadata(), None).await?;
        let schema = query.into_builder().schema();
        metadata::command_info(&schema, request.into_inner())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.admit(request.metadata(), Some("List")).await?;
        let schema = query.into_builder().schema();
        metadata::command_info(&schema, request.into_inner())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.admit(request.metadata(), None).await?;
        let schema = query.into_builder().schema();
        metadata::command_info(&schema, request.into_inner())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.admit(request.metadata(), None).await?;
        let schema = query.into_builder(metadata::sql_info()).schema();
        metadata::command_info(&schema, request.into_inner())
    }

    async fn get_flight_info_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.admit(request.metadata(), None).await?;
        metadata::command_info(&metadata::primary_keys_schema(), request.into_inner())
    }

    async fn get_flight_info_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.admit(request.metadata(), None).await?;
        metadata::command_info(&metadata::foreign_keys_schema(), request.into_inner())
    }

    async fn get_flight_info_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.admit(request.metadata(), None).await?;
        metadata::command_info(&metadata::foreign_keys_schema(), request.into_inner())
    }

    async fn get_flight_info_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.admit(request.metadata(), None).await?;
        metadata::command_info(&metadata::foreign_keys_schema(), request.into_inner())
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.admit(request.metadata(), None).await?;
        let schema = query.into_builder(metadata::xdbc_types()).schema();
        metadata::command_info(&schema, request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Stream_<FlightData>>, Status> {
        // `grpc.rs` serves DoGet without copying bodies together; this is the path through tonic.
        let stream = self
            .redeem(&ticket.statement_handle, request.metadata())
            .await?;
        Ok(Response::new(Box::pin(
            stream.map_ok(Wire::into_flight_data),
        )))
    }

    async fn do_get_prepared_statement(
        &self,
        _query: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> std::result::Result<Response<Stream_<FlightData>>, Status> {
        Err(Status::invalid_argument(
            "call GetFlightInfo with the prepared statement first and DoGet its endpoint's ticket",
        ))
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Stream_<FlightData>>, Status> {
        self.admit(request.metadata(), None).await?;
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        metadata::batch_stream(builder.build())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Stream_<FlightData>>, Status> {
        self.admit(request.metadata(), None).await?;
        let mut builder = query.into_builder();
        builder.append(CATALOG, DB_SCHEMA);
        metadata::batch_stream(builder.build())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Stream_<FlightData>>, Status> {
        let (_admitted, access) = self.admit(request.metadata(), Some("List")).await?;
        let batch = metadata::tables(&self.w, &access, query)
            .await
            .map_err(|e| self.denied("List", e))?;
        metadata::batch_stream(Ok::<_, Status>(batch))
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Stream_<FlightData>>, Status> {
        self.admit(request.metadata(), None).await?;
        let mut builder = query.into_builder();
        builder.append("TABLE");
        metadata::batch_stream(builder.build())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Stream_<FlightData>>, Status> {
        self.admit(request.metadata(), None).await?;
        metadata::batch_stream(query.into_builder(metadata::sql_info()).build())
    }

    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Stream_<FlightData>>, Status> {
        self.admit(request.metadata(), None).await?;
        metadata::batch_stream(Ok::<_, Status>(arrow::array::RecordBatch::new_empty(
            metadata::primary_keys_schema(),
        )))
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Stream_<FlightData>>, Status> {
        self.admit(request.metadata(), None).await?;
        metadata::batch_stream(Ok::<_, Status>(arrow::array::RecordBatch::new_empty(
            metadata::foreign_keys_schema(),
        )))
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Stream_<FlightData>>, Status> {
        self.admit(request.metadata(), None).await?;
        metadata::batch_stream(Ok::<_, Status>(arrow::array::RecordBatch::new_empty(
            metadata::foreign_keys_schema(),
        )))
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Stream_<FlightData>>, Status> {
        self.admit(request.metadata(), None).await?;
        metadata::batch_stream(Ok::<_, Status>(arrow::array::RecordBatch::new_empty(
            metadata::foreign_keys_schema(),
        )))
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Stream_<FlightData>>, Status> {
        self.admit(request.metadata(), None).await?;
        metadata::batch_stream(query.into_builder(metadata::xdbc_types()).build())
    }

    async fn do_put_statement_update(
        &self,
        _ticket: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        Err(Status::invalid_argument(
            "statements that change data (DDL/DML) are not run: datasets are written with DoPut or bulk ingest (adbc_ingest), and SQL is read-only",
        ))
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        Err(Status::invalid_argument(
            "statements that change data (DDL/DML) are not run: datasets are written with DoPut or bulk ingest (adbc_ingest), and SQL is read-only",
        ))
    }

    async fn do_put_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        _request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        Err(Status::unimplemented(
            "Substrait plans are not supported; send SQL",
        ))
    }

    async fn do_put_statement_ingest(
        &self,
        cmd: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        let (_admitted, access) = self.admit(request.metadata(), Some("Store")).await?;
        if cmd.transaction_id.is_some() {
            return Err(Status::unimplemented("transactions are not supported"));
        }
        if cmd.temporary {
            return Err(Status::invalid_argument(
                "temporary tables are not supported: every ingested dataset is stored",
            ));
        }
        if cmd
            .catalog
            .as_deref()
            .is_some_and(|c| !c.is_empty() && c != CATALOG)
            || cmd
                .schema
                .as_deref()
                .is_some_and(|s| !s.is_empty() && s != DB_SCHEMA)
        {
            return Err(Status::invalid_argument(format!(
                "datasets live in catalog {CATALOG:?}, schema {DB_SCHEMA:?}; leave both unset"
            )));
        }
        let options = cmd.table_definition_options.unwrap_or_default();
        let if_not_exist = TableNotExistOption::try_from(options.if_not_exist)
            .unwrap_or(TableNotExistOption::Unspecified);
        let if_exists = TableExistsOption::try_from(options.if_exists)
            .unwrap_or(TableExistsOption::Unspecified);
        let pinned = if_version(request.metadata(), &cmd.options).map_err(status)?;
        // (create if absent?, what to do if it exists)
        let (create, exists) = match (if_not_exist, if_exists) {
            (TableNotExistOption::Fail, _) => (false, if_exists),
            (_, e) => (true, e),
        };
        let (condition, append) = match (create, exists, pinned) {
            (_, _, Some(v)) => (Condition::IfVersion(v), exists == TableExistsOption::Append),
            (true, TableExistsOption::Replace, None) => (Condition::Always, false),
            (true, TableExistsOption::Append, None) => (Condition::Always, true),
            // Create, failing if it exists (ADBC's "create"; also the default).
            (true, _, None) => (Condition::IfAbsent, false),
            (false, TableExistsOption::Append, None) => (Condition::Always, true),
            (false, TableExistsOption::Replace, None) => (Condition::Always, false),
            (false, _, None) => {
                return Err(Status::invalid_argument(
                    "this ingest could never succeed (if the table does not exist: fail; if it exists: fail)",
                ))
            }
        };
        // Appending or replacing what must already exist: check it does.
        if !create && pinned.is_none() {
            self.w
                .catalog
                .latest(&cmd.table)
                .await
                .map_err(|e| self.denied("Store", e))?;
        }
        let (m, rows) = self
            .put(&cmd.table, &access, condition, append, request.into_inner())
            .await
            .map_err(|e| self.denied("Store", e))?;
        tracing::info!(dataset = ?m.name, version = m.version, rows, "ingested");
        Ok(rows as i64)
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<DoPutPreparedStatementResult, Status> {
        let (_admitted, access) = self.admit(request.metadata(), Some("Query")).await?;
        let claims = self
            .signer
            .open(&query.prepared_statement_handle, access.who())
            .map_err(|e| self.denied("Query", e))?;
        let What::Sql { sql, .. } = claims.what else {
            return Err(Status::invalid_argument(
                "this handle is not a prepared statement",
            ));
        };
        let mut batches = FlightRecordBatchStream::new_from_flight_data(
            request.into_inner().map_err(FlightError::from),
        );
        let mut rows = Vec::new();
        while let Some(b) = batches.next().await {
            let b = b.map_err(Status::from)?;
            if b.num_rows() > 0 {
                rows.push(b);
            }
        }
        let params = match rows.as_slice() {
            [] => None,
            [one] => Some(ticket::encode_params(&params::to_ipc(one).map_err(status)?)),
            _ => {
                return Err(Status::invalid_argument(
                    "bind exactly one row of parameters per execution; execute once per row",
                ))
            }
        };
        let claims = Claims::new(
            What::Sql { sql, params },
            Snapshot::new(),
            access.who(),
            HANDLE_TTL,
        );
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(self.signer.seal(&claims)),
        })
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> std::result::Result<ActionCreatePreparedStatementResult, Status> {
        let (_admitted, access) = self.admit(request.metadata(), Some("Query")).await?;
        if query.transaction_id.is_some() {
            return Err(Status::unimplemented("transactions are not supported"));
        }
        let (schema, types) = self
            .describe(&query.query, &access, request.metadata())
            .await
            .map_err(|e| self.denied("Query", e))?;
        let claims = Claims::new(
            What::Sql {
                sql: query.query,
                params: None,
            },
            Snapshot::new(),
            access.who(),
            HANDLE_TTL,
        );
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: self.signer.seal(&claims),
            dataset_schema: metadata::schema_bytes(&schema)?,
            parameter_schema: metadata::schema_bytes(&params::schema(&types))?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> std::result::Result<(), Status> {
        // Nothing is kept for a handle: closing only checks it is one of ours.
        let (_admitted, access) = self.admit(request.metadata(), None).await?;
        self.signer
            .open(&query.prepared_statement_handle, access.who())
            .map_err(status)?;
        Ok(())
    }

    async fn get_flight_info_fallback(
        &self,
        cmd: arrow_flight::sql::Command,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        if is_path(request.get_ref()) {
            let target = path_target(request.get_ref()).map(|(n, v)| (n, v, vec![]));
            return self.load_info(request, target).await;
        }
        if let arrow_flight::sql::Command::Unknown(any) = &cmd {
            if any.type_url == LOAD_REQUEST_TYPE {
                let target = polarway_proto::v1::LoadRequest::decode(any.value.clone())
                    .map(|r| (r.name, r.version, r.columns))
                    .map_err(|e| Error::InvalidArgument(format!("not a LoadRequest: {e}")));
                return self.load_info(request, target).await;
            }
        }
        Err(Status::invalid_argument(
            "unknown command: send a Flight SQL command or a PATH descriptor naming a dataset",
        ))
    }

    async fn do_put_fallback(
        &self,
        mut request: Request<PeekableFlightDataStream>,
        _message: Any,
    ) -> std::result::Result<Response<Stream_<PutResult>>, Status> {
        let desc = match request.get_mut().peek().await {
            Some(Ok(FlightData {
                flight_descriptor: Some(d),
                ..
            })) => d.clone(),
            _ => None.ok_or_else(|| Status::invalid_argument("DoPut needs a flight descriptor"))?,
        };
        if is_path(&desc) {
            return self.path_put(desc, request).await;
        }
        Err(Status::invalid_argument(
            "unknown command: DoPut takes a PATH descriptor naming a dataset, bulk ingest or a prepared statement's parameters",
        ))
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> std::result::Result<Response<Stream_<arrow_flight::Result>>, Status> {
        if request.get_ref().r#type == "CancelFlightInfo" {
            return self.cancel(request).await;
        }
        Err(Status::invalid_argument(format!(
            "unknown action {:?}; ListActions lists the supported ones",
            request.get_ref().r#type
        )))
    }

    async fn list_custom_actions(&self) -> Option<Vec<std::result::Result<ActionType, Status>>> {
        Some(vec![Ok(ActionType {
            r#type: "CancelFlightInfo".into(),
            description: "Stop the query of a FlightInfo's ticket".into(),
        })])
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// Handshake: with credentials (Basic with the token as password, or Bearer), answer with the
/// bearer token to send on later calls, in the response headers and trailers as Flight clients
/// look for it.
async fn handshake(
    w: &Worker,
    request: Request<Streaming<HandshakeRequest>>,
) -> std::result::Result<Response<Stream_<HandshakeResponse>>, Status> {
    let md = request.metadata().clone();
    w.auth.access(&md).await?;
    let token = md
        .get("authorization")
        .and_then(|v| http::HeaderValue::from_bytes(v.as_bytes()).ok())
        .and_then(|v| polarway_access::policy::bearer(&v).ok());
    let mut response = Response::new(Box::pin(futures::stream::iter(vec![Ok(HandshakeResponse {
        protocol_version: 0,
        payload: Default::default(),
    })])) as Stream_<HandshakeResponse>);
    if let Some(token) = token {
        if let Ok(v) = format!("Bearer {token}").parse() {
            response.metadata_mut().insert("authorization", v);
        }
    }
    Ok(response)
}

impl FlightSql {
    /// GetFlightInfo of a dataset version (a PATH descriptor, or a `polarway.v1.LoadRequest`
    /// command with columns): a ticket for it, its (projected) schema, and its `DatasetInfo` as the
    /// info's `app_metadata`.
    async fn load_info(
        &self,
        request: Request<FlightDescriptor>,
        target: Result<(String, Option<u64>, Vec<String>)>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let (_admitted, access) = self.admit(request.metadata(), Some("Load")).await?;
        let desc = request.into_inner();
        let run = async {
            let (name, version, columns) = target?;
            validate_name(&name)?;
            access.check("Load", &name)?;
            let m = self.w.catalog.get(&name, version).await?;
            let schema = metadata::dataset_schema(&self.w, &m).await?;
            let schema = match crate::parquet_io::projection(&schema, &columns)?.0 {
                Some(indices) => Arc::new(
                    schema
                        .project(&indices)
                        .map_err(|e| Error::internal("projecting", e))?,
                ),
                None => schema,
            };
            let info = crate::service::dataset_info(&m, true).encode_to_vec();
            let claims = Claims::new(
                What::Load {
                    name,
                    version: m.version,
                    columns,
                },
                Snapshot::new(),
                access.who(),
                TICKET_TTL,
            );
            Ok(self
                .ticket_info(&claims, &schema, desc)?
                .with_total_records(m.rows as i64)
                .with_total_bytes(m.bytes as i64)
                .with_app_metadata(info))
        };
        run.await
            .map(Response::new)
            .map_err(|e| self.denied("Load", e))
    }

    /// DoPut of a PATH descriptor: the upload becomes the dataset's next version (`[name, "v3"]`
    /// or `x-polarway-if-version: 3`: only if 3 is still its latest version).
    async fn path_put(
        &self,
        desc: FlightDescriptor,
        request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<Response<Stream_<PutResult>>, Status> {
        let (_admitted, access) = self.admit(request.metadata(), Some("Store")).await?;
        let run = async {
            let (name, version) = path_target(&desc)?;
            let condition = match version {
                Some(v) => Condition::IfVersion(v),
                None => match if_version(request.metadata(), &HashMap::new())? {
                    Some(v) => Condition::IfVersion(v),
                    None => Condition::Always,
                },
            };
            self.put(&name, &access, condition, false, request.into_inner())
                .await
        };
        let (m, _) = run.await.map_err(|e| self.denied("Store", e))?;
        tracing::info!(dataset = ?m.name, version = m.version, rows = m.rows, "stored by DoPut");
        let meta = serde_json::json!({"name": m.name, "version": m.version, "rows": m.rows});
        Ok(Response::new(Box::pin(futures::stream::iter(vec![Ok(
            PutResult {
                app_metadata: meta.to_string().into(),
            },
        )]))))
    }

    /// CancelFlightInfo: stop the queries of the info's tickets (or refuse their DoGet, if it has
    /// not started yet) on this worker.
    async fn cancel(
        &self,
        request: Request<Action>,
    ) -> std::result::Result<Response<Stream_<arrow_flight::Result>>, Status> {
        let (_admitted, access) = self.admit(request.metadata(), None).await?;
        let req = CancelFlightInfoRequest::decode(request.get_ref().body.clone())
            .map_err(|e| Status::invalid_argument(format!("not a CancelFlightInfoRequest: {e}")))?;
        let mut cancelled = false;
        for endpoint in req.info.map(|i| i.endpoint).unwrap_or_default() {
            let Some(ticket) = endpoint.ticket else {
                continue;
            };
            let any =
                Any::decode(ticket.ticket).map_err(|e| Status::invalid_argument(e.to_string()))?;
            let Some(t) = any
                .unpack::<TicketStatementQuery>()
                .map_err(|e| Status::invalid_argument(e.to_string()))?
            else {
                continue;
            };
            let claims = self
                .signer
                .open(&t.statement_handle, access.who())
                .map_err(status)?;
            self.running
                .flag(&claims.id, claims.exp)
                .store(true, Ordering::SeqCst);
            cancelled = true;
        }
        let result = CancelFlightInfoResult {
            status: if cancelled {
                CancelStatus::Cancelled as i32
            } else {
                CancelStatus::NotCancellable as i32
            },
        };
        Ok(Response::new(Box::pin(futures::stream::iter(vec![Ok(
            arrow_flight::Result {
                body: result.encode_to_vec().into(),
            },
        )]))))
    }
}

/// Plain Flight calls that Flight SQL leaves open (ListFlights, GetSchema) are answered here;
/// everything else goes to `FlightSql`.
#[tonic::async_trait]
impl FlightService for Flight {
    type HandshakeStream = Stream_<HandshakeResponse>;
    type ListFlightsStream = Stream_<FlightInfo>;
    type DoGetStream = Stream_<FlightData>;
    type DoPutStream = Stream_<PutResult>;
    type DoActionStream = Stream_<arrow_flight::Result>;
    type ListActionsStream = Stream_<ActionType>;
    type DoExchangeStream = Stream_<FlightData>;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> std::result::Result<Response<Self::HandshakeStream>, Status> {
        FlightService::handshake(&self.sql, request).await
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> std::result::Result<Response<Self::ListFlightsStream>, Status> {
        let (_admitted, access) = self.sql.admit(request.metadata(), Some("List")).await?;
        let infos = metadata::list_flights(&self.sql.w, &access)
            .await
            .map_err(|e| self.sql.denied("List", e))?;
        Ok(Response::new(Box::pin(futures::stream::iter(
            infos.into_iter().map(Ok),
        ))))
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        FlightService::get_flight_info(&self.sql, request).await
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented(
            "PollFlightInfo is not supported; call GetFlightInfo",
        ))
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<SchemaResult>, Status> {
        let info = self.get_flight_info(request).await?.into_inner();
        Ok(Response::new(SchemaResult {
            schema: info.schema,
        }))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Self::DoGetStream>, Status> {
        // A ticket is an Any-packed Flight SQL message; anything else gets a plain answer rather
        // than the protobuf decoder's.
        let ticket = &request.get_ref().ticket;
        let known = Any::decode(ticket.clone())
            .ok()
            .and_then(|any| arrow_flight::sql::Command::try_from(any).ok())
            .is_some_and(|c| !matches!(c, arrow_flight::sql::Command::Unknown(_)));
        if !known {
            return Err(Status::invalid_argument(
                "this is not a ticket this service issued: take tickets from GetFlightInfo's endpoints",
            ));
        }
        FlightService::do_get(&self.sql, request).await
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> std::result::Result<Response<Self::DoPutStream>, Status> {
        FlightService::do_put(&self.sql, request).await
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> std::result::Result<Response<Self::DoActionStream>, Status> {
        FlightService::do_action(&self.sql, request).await
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> std::result::Result<Response<Self::ListActionsStream>, Status> {
        FlightService::list_actions(&self.sql, request).await
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> std::result::Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("DoExchange is not supported"))
    }
}
