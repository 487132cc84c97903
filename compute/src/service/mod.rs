//! The `polarway.v1.Polarway` gRPC service: one module per RPC family, sharing `Worker` state.

mod catalog;
pub mod load;
pub mod query;
pub mod reply;
pub mod store;

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use polarway_access::Access;
use polarway_proto::transport::grpc_timeout;
use polarway_proto::v1::{self as pb, polarway_server::Polarway};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use reply::IdentitySlots;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Authenticator;
use crate::cache::Cache;
use crate::coldview::ColdView;
use crate::error::Error;
use crate::metrics::WorkerMetrics;
use crate::store::{Catalog, Manifest};

/// Everything a request may need. Shared by all requests.
pub struct Worker {
    pub catalog: Catalog,
    pub cache: Arc<Cache>,
    pub cold: ColdView,
    /// The cold directory as configured (made absolute) and canonical: where SQL may name files.
    pub cold_dirs: Vec<std::path::PathBuf>,
    /// Every query's SQL is judged here before it runs.
    pub sql_gate: Arc<crate::sql::gate::Gate>,
    /// Sandboxed DuckDB instances, reused one query at a time, and the limits of every query.
    pub sql_pool: Arc<crate::sql::Pool>,
    /// Where each query gets its own directory of pinned files (`sql/reads.rs`).
    pub pins_dir: std::path::PathBuf,
    pub auth: Authenticator,
    pub max_upload_bytes: u64,
    pub in_flight: Arc<Semaphore>,
    /// With a policy: calls in progress per identity (its `limits.max_in_flight`).
    pub identity_slots: IdentitySlots,
    /// How long a response stream may wait for its caller to read (`--stall-timeout`; a
    /// policy's `limits.stall_timeout_secs` wins).
    pub stall_timeout: std::time::Duration,
    /// The local disk cache of a remote (S3) store.
    pub disk_cache: Option<Arc<crate::store::disk_cache::DiskCache>>,
    pub metrics: WorkerMetrics,
}

pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// What an admitted call holds until it (or its response stream) ends: a slot of the worker's,
/// and one of its identity's when the worker enforces a policy.
pub struct Admission {
    _slot: OwnedSemaphorePermit,
    _identity: Option<OwnedSemaphorePermit>,
}

impl Worker {
    pub fn stall_timeout(&self) -> std::time::Duration {
        let from_policy = self
            .auth
            .policy()
            .and_then(|p| p.current().limits.stall_timeout_secs);
        from_policy
            .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok())
            .unwrap_or(self.stall_timeout)
    }

    /// Authenticate, check that the caller may call `method` at all (any method: None), and take an in-flight slot
    /// (held until the call or its response stream ends). The returned access is checked again
    /// against every dataset the call touches.
    pub async fn admit(
        &self,
        md: &tonic::metadata::MetadataMap,
        method: Option<&str>,
    ) -> Result<(Admission, Access), Status> {
        let w = self;
        let access = w.auth.access(md).await?;
        if let Some(method) = method {
            if let Err(e) = access.check_call(method) {
                w.metrics.denied(method, "method");
                return Err(Status::from(Error::from(e)));
            }
        }
        let identity = match w.auth.policy() {
            Some(policy) => {
                let max = policy
                    .current()
                    .limits
                    .max_in_flight
                    .unwrap_or(DEFAULT_MAX_IN_FLIGHT);
                Some(w.identity_slots.acquire(access.who(), max)?)
            }
            None => None,
        };
        let slot = w.in_flight.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(
                "the server is at its concurrent request limit; retry with backoff",
            )
        })?;
        Ok((
            Admission {
                _slot: slot,
                _identity: identity,
            },
            access,
        ))
    }
}

#[derive(Clone)]
pub struct PolarwayService {
    worker: Arc<Worker>,
}

impl PolarwayService {
    pub fn new(worker: Arc<Worker>) -> Self {
        Self { worker }
    }

    async fn admit<T>(
        &self,
        req: &Request<T>,
        method: &str,
    ) -> Result<(Admission, Access), Status> {
        self.worker.admit(req.metadata(), Some(method)).await
    }

    /// Load's messages, each IPC chunk as pieces of Arrow's buffers.
    pub async fn load_pieces(
        &self,
        md: &tonic::metadata::MetadataMap,
        req: pb::LoadRequest,
    ) -> Result<ResponseStream<crate::wire::Message>, Status> {
        let (permit, access) = self.worker.admit(md, Some("Load")).await?;
        load::load(self.worker.clone(), &access, req, permit)
            .await
            .map_err(|e| self.fail("Load", e))
    }

    /// A failed call's status; refusals are counted by reason.
    fn fail(&self, method: &str, e: Error) -> Status {
        if let Error::PermissionDenied { reason, .. } = &e {
            self.worker.metrics.denied(method, reason);
        }
        Status::from(e)
    }
}

/// Calls in progress per identity on a worker with a policy that does not say (as the gateway).
const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// The caller's deadline from its `grpc-timeout` header.
pub fn client_deadline(md: &tonic::metadata::MetadataMap) -> Option<std::time::Duration> {
    grpc_timeout::parse(md.get(grpc_timeout::HEADER)?.to_str().ok()?)
}

pub fn dataset_info(m: &Manifest, with_columns: bool) -> pb::DatasetInfo {
    pb::DatasetInfo {
        name: m.name.clone(),
        version: m.version,
        rows: m.rows,
        bytes: m.bytes,
        created_unix_ms: m.created_unix_ms,
        columns: if with_columns {
            m.columns
                .iter()
                .map(|c| pb::Column {
                    name: c.name.clone(),
                    data_type: c.data_type.clone(),
                    nullable: c.nullable,
                })
                .collect()
        } else {
            vec![]
        },
    }
}

#[tonic::async_trait]
impl Polarway for PolarwayService {
    async fn health(
        &self,
        _req: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        Ok(Response::new(pb::HealthResponse {
            status: "OK".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            handle_store: self.worker.catalog.kind().into(),
        }))
    }

    async fn store(
        &self,
        req: Request<Streaming<pb::StoreRequest>>,
    ) -> Result<Response<pb::StoreResponse>, Status> {
        let (_permit, access) = self.admit(&req, "Store").await?;
        let m = store::store_one(&self.worker, &access, req.into_inner())
            .await
            .map_err(|e| self.fail("Store", e))?;
        tracing::info!(dataset = ?m.name, version = m.version, rows = m.rows, bytes = m.bytes, "stored");
        Ok(Response::new(pb::StoreResponse {
            dataset: Some(dataset_info(&m, true)),
        }))
    }

    async fn store_batch(
        &self,
        req: Request<Streaming<pb::StoreRequest>>,
    ) -> Result<Response<pb::StoreBatchResponse>, Status> {
        let (_permit, access) = self.admit(&req, "StoreBatch").await?;
        let ms = store::store_batch(&self.worker, &access, req.into_inner())
            .await
            .map_err(|e| self.fail("StoreBatch", e))?;
        tracing::info!(datasets = ms.len(), "stored batch");
        Ok(Response::new(pb::StoreBatchResponse {
            datasets: ms.iter().map(|m| dataset_info(m, true)).collect(),
        }))
    }

    type LoadStream = ResponseStream<pb::LoadResponse>;

    async fn load(
        &self,
        req: Request<pb::LoadRequest>,
    ) -> Result<Response<Self::LoadStream>, Status> {
        // tonic encodes each message: the pieces are joined here.
        let (md, _, req) = req.into_parts();
        let stream = self.load_pieces(&md, req).await?;
        Ok(Response::new(Box::pin(
            stream.map(|m| m.and_then(load::into_response)),
        )))
    }

    type QueryStream = ResponseStream<pb::QueryResponse>;

    async fn query(
        &self,
        req: Request<pb::QueryRequest>,
    ) -> Result<Response<Self::QueryStream>, Status> {
        let (permit, access) = self.admit(&req, "Query").await?;
        let deadline = client_deadline(req.metadata());
        let stream = query::query(
            self.worker.clone(),
            req.into_inner(),
            access,
            deadline,
            permit,
        )
        .await
        .map_err(|e| self.fail("Query", e))?;
        Ok(Response::new(stream))
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let (_permit, access) = self.admit(&req, "List").await?;
        Ok(Response::new(
            catalog::list(&self.worker, &access, req.into_inner())
                .await
                .map_err(|e| self.fail("List", e))?,
        ))
    }

    async fn describe(
        &self,
        req: Request<pb::DescribeRequest>,
    ) -> Result<Response<pb::DatasetInfo>, Status> {
        let (_permit, access) = self.admit(&req, "Describe").await?;
        Ok(Response::new(
            catalog::describe(&self.worker, &access, req.into_inner())
                .await
                .map_err(|e| self.fail("Describe", e))?,
        ))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let (_permit, access) = self.admit(&req, "Delete").await?;
        Ok(Response::new(
            catalog::delete(&self.worker, &access, req.into_inner())
                .await
                .map_err(|e| self.fail("Delete", e))?,
        ))
    }

    async fn cache_stats(
        &self,
        req: Request<pb::CacheStatsRequest>,
    ) -> Result<Response<pb::CacheStatsResponse>, Status> {
        let _admitted = self.admit(&req, "CacheStats").await?;
        Ok(Response::new(catalog::cache_stats(&self.worker)))
    }
}
