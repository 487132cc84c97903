//! The `polarway.v1.Polarway` gRPC service: one module per RPC family, sharing `Worker` state.

mod catalog;
mod load;
mod query;
mod store;

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use polarway_proto::v1::{self as pb, polarway_server::Polarway};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Request, Response, Status, Streaming};

use crate::auth::TokenAuth;
use crate::cache::Cache;
use crate::coldview::ColdView;
use crate::metrics::WorkerMetrics;
use crate::sql::SqlLimits;
use crate::store::{Catalog, Manifest};

/// Everything a request may need. Shared by all requests.
pub struct Worker {
    pub catalog: Catalog,
    pub cache: Arc<Cache>,
    pub cold: ColdView,
    pub sql: SqlLimits,
    /// The next query's DuckDB instance, opened ahead.
    pub sandbox_spare: Arc<crate::sql::Spare>,
    /// Where DuckDB may spill.
    pub spill_dir: std::path::PathBuf,
    pub auth: TokenAuth,
    pub max_upload_bytes: u64,
    pub in_flight: Arc<Semaphore>,
    /// The local disk cache of a remote (S3) store.
    pub disk_cache: Option<Arc<crate::store::disk_cache::DiskCache>>,
    pub metrics: WorkerMetrics,
}

pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[derive(Clone)]
pub struct PolarwayService {
    worker: Arc<Worker>,
}

impl PolarwayService {
    pub fn new(worker: Arc<Worker>) -> Self {
        Self { worker }
    }

    /// Authenticate and take an in-flight slot; the slot is held until the call (or its
    /// response stream) ends.
    fn admit<T>(&self, req: &Request<T>) -> Result<OwnedSemaphorePermit, Status> {
        self.worker.auth.check(req.metadata())?;
        self.worker.in_flight.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted("the server is at its concurrent request limit; retry with backoff")
        })
    }
}

/// The caller's deadline from its `grpc-timeout` header ("<digits><unit>", unit one of H M S m u n).
fn client_deadline(md: &tonic::metadata::MetadataMap) -> Option<std::time::Duration> {
    let v = md.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    use std::time::Duration as D;
    Some(match unit {
        "H" => D::from_secs(n.saturating_mul(3600)),
        "M" => D::from_secs(n.saturating_mul(60)),
        "S" => D::from_secs(n),
        "m" => D::from_millis(n),
        "u" => D::from_micros(n),
        "n" => D::from_nanos(n),
        _ => return None,
    })
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
                .map(|c| pb::Column { name: c.name.clone(), data_type: c.data_type.clone(), nullable: c.nullable })
                .collect()
        } else {
            vec![]
        },
    }
}

#[tonic::async_trait]
impl Polarway for PolarwayService {
    async fn health(&self, _req: Request<pb::HealthRequest>) -> Result<Response<pb::HealthResponse>, Status> {
        Ok(Response::new(pb::HealthResponse {
            status: "OK".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            handle_store: self.worker.catalog.kind().into(),
        }))
    }

    async fn store(&self, req: Request<Streaming<pb::StoreRequest>>) -> Result<Response<pb::StoreResponse>, Status> {
        let _permit = self.admit(&req)?;
        let m = store::store_one(&self.worker, req.into_inner()).await?;
        tracing::info!(dataset = %m.name, version = m.version, rows = m.rows, bytes = m.bytes, "stored");
        Ok(Response::new(pb::StoreResponse { dataset: Some(dataset_info(&m, true)) }))
    }

    async fn store_batch(
        &self,
        req: Request<Streaming<pb::StoreRequest>>,
    ) -> Result<Response<pb::StoreBatchResponse>, Status> {
        let _permit = self.admit(&req)?;
        let ms = store::store_batch(&self.worker, req.into_inner()).await?;
        tracing::info!(datasets = ms.len(), "stored batch");
        Ok(Response::new(pb::StoreBatchResponse { datasets: ms.iter().map(|m| dataset_info(m, true)).collect() }))
    }

    type LoadStream = ResponseStream<pb::LoadResponse>;

    async fn load(&self, req: Request<pb::LoadRequest>) -> Result<Response<Self::LoadStream>, Status> {
        let permit = self.admit(&req)?;
        let stream = load::load(self.worker.clone(), req.into_inner(), permit).await?;
        Ok(Response::new(stream))
    }

    type QueryStream = ResponseStream<pb::QueryResponse>;

    async fn query(&self, req: Request<pb::QueryRequest>) -> Result<Response<Self::QueryStream>, Status> {
        let permit = self.admit(&req)?;
        let deadline = client_deadline(req.metadata());
        let stream = query::query(self.worker.clone(), req.into_inner(), deadline, permit).await?;
        Ok(Response::new(stream))
    }

    async fn list(&self, req: Request<pb::ListRequest>) -> Result<Response<pb::ListResponse>, Status> {
        let _permit = self.admit(&req)?;
        Ok(Response::new(catalog::list(&self.worker, req.into_inner()).await?))
    }

    async fn describe(&self, req: Request<pb::DescribeRequest>) -> Result<Response<pb::DatasetInfo>, Status> {
        let _permit = self.admit(&req)?;
        Ok(Response::new(catalog::describe(&self.worker, req.into_inner()).await?))
    }

    async fn delete(&self, req: Request<pb::DeleteRequest>) -> Result<Response<pb::DeleteResponse>, Status> {
        let _permit = self.admit(&req)?;
        Ok(Response::new(catalog::delete(&self.worker, req.into_inner()).await?))
    }

    async fn cache_stats(
        &self,
        req: Request<pb::CacheStatsRequest>,
    ) -> Result<Response<pb::CacheStatsResponse>, Status> {
        let _permit = self.admit(&req)?;
        Ok(Response::new(catalog::cache_stats(&self.worker)))
    }
}
