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
//!
//! - `mod.rs`: the services, admission, tickets redeemed (DoGet), plain Flight calls, cancelling.
//! - `sql.rs`: Flight SQL's commands. `upload.rs`: DoPut and bulk ingest. `metadata.rs`: the
//!   catalog commands and ListFlights. `params.rs`: prepared statements' parameters.
//! - `ticket.rs`: signed tickets and handles. `encode.rs` and `grpc.rs`: DoGet's messages, framed
//!   beneath tonic without copying Arrow data (`crate::wire`).

pub mod encode;
pub mod grpc;
mod metadata;
mod params;
mod sql;
pub mod ticket;
mod upload;

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

use crate::error::{Error, Result};
use crate::service::query::{open_sandbox, plan, Planned};
use crate::service::{client_deadline, load, reply, store, Admission, Worker};
use crate::sql::reads::Snapshot;
use crate::sql::Output;
use crate::store::{validate_name, Condition};
use encode::Wire;
use ticket::{Claims, Signer, What, HANDLE_TTL, TICKET_TTL};
use upload::if_version;

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
        let limit = self.w.sql_pool.limits().timeout;
        client_deadline(md).map_or(limit, |d| d.min(limit))
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
