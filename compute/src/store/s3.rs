//! `s3` handle store: objects in an S3 bucket (POLARWAY_S3_BUCKET, optional key prefix) that every
//! worker shares, with `aws-sdk-s3` (credentials and region from the standard AWS chain; endpoint
//! override and path-style addressing for S3-compatible stores).
//!
//! "Create if absent" is a conditional PutObject (`If-None-Match: *`): S3 answers 412 when the key
//! exists, so two workers can never both claim a version. A store that ignored the header would
//! silently break that, so the worker checks at start that the bucket enforces it and refuses to
//! run otherwise (`POLARWAY_S3_ALLOW_UNCONDITIONAL_WRITES=true` runs anyway: one writer only).
//!
//! Data objects are uploaded from the staged file, in 8 MiB parts above that size (memory: one
//! part), then kept in the worker's disk cache (`disk_cache.rs`), which also receives downloads,
//! streamed to disk. Data keys are never reused, so cached copies are never stale; manifests are
//! listed on every lookup, which is what makes a store on one worker visible on all others.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_s3::config::interceptors::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::backend::{Backend, ObjectData, StoreCounters};
use super::disk_cache::DiskCache;
use crate::error::{Error, Result};

/// Objects larger than this are uploaded in parts of this size.
const PART_BYTES: usize = 8 << 20;

#[derive(Clone, Debug)]
pub struct S3Options {
    pub bucket: String,
    /// Key prefix inside the bucket ("" or ending in '/').
    pub prefix: String,
    pub endpoint: Option<String>,
    pub path_style: bool,
    /// Per-attempt timeout of one S3 request.
    pub timeout: Duration,
    pub allow_unconditional_writes: bool,
}

pub struct S3Backend {
    client: Client,
    bucket: String,
    prefix: String,
    staging: PathBuf,
    disk: Arc<DiskCache>,
    counters: Arc<StoreCounters>,
    requests: S3RequestMetrics,
}

impl S3Backend {
    pub async fn connect(opts: &S3Options, staging: PathBuf, disk: Arc<DiskCache>) -> Result<Self> {
        std::fs::create_dir_all(&staging)?;
        crate::scratch::remove_orphaned_staging_files(&staging);
        use aws_smithy_http_client::tls;
        let https = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader =
            aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(https);
        if let Some(url) = &opts.endpoint {
            loader = loader.endpoint_url(url);
        }
        let sdk = loader.load().await;
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(opts.timeout.min(Duration::from_secs(5)))
            .operation_attempt_timeout(opts.timeout)
            .build();
        let counters = Arc::<StoreCounters>::default();
        let requests = S3RequestMetrics {
            counters: counters.clone(),
            ..Default::default()
        };
        let conf = aws_sdk_s3::config::Builder::from(&sdk)
            .interceptor(requests.clone())
            .force_path_style(opts.path_style)
            .timeout_config(timeouts)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3))
            .build();
        let mut prefix = opts.prefix.trim_start_matches('/').to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        let this = Self {
            client: Client::from_conf(conf),
            bucket: opts.bucket.clone(),
            prefix,
            staging,
            disk,
            counters,
            requests,
        };
        this.client
            .head_bucket()
            .bucket(&this.bucket)
            .send()
            .await
            .map_err(|e| {
                let status = match &e {
                    SdkError::ServiceError(se) => Some(se.raw().status().as_u16()),
                    _ => None,
                };
                Error::Unavailable(match status {
                    Some(401 | 403) => format!(
                        "S3 refused this worker's credentials for bucket {:?} (HTTP {}): check \
                     AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the role the worker runs \
                     as), and that they may read and write the bucket",
                        this.bucket,
                        status.unwrap_or_default()
                    ),
                    Some(404) => format!(
                        "S3 bucket {:?} does not exist at this endpoint: create it, or fix \
                     POLARWAY_S3_BUCKET or POLARWAY_S3_ENDPOINT",
                        this.bucket
                    ),
                    _ => format!(
                    "cannot reach S3 bucket {:?}: {}; check POLARWAY_S3_BUCKET, the endpoint and \
                     the AWS credentials",
                    this.bucket,
                    DisplayErrorContext(&e)
                ),
                })
            })?;
        if !opts.allow_unconditional_writes {
            this.check_conditional_writes().await?;
        }
        Ok(this)
    }

    /// Add the per-request S3 series to the worker's metrics.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        let r = &self.requests;
        registry.register(
            "polarway_s3_requests",
            "Requests sent to S3 (each attempt), by operation and result (ok, error)",
            r.calls.clone(),
        );
        registry.register(
            "polarway_s3_request_duration_seconds",
            "Duration of one S3 request attempt, by operation",
            r.seconds.clone(),
        );
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Write a probe object twice with `If-None-Match: *`: the second write must be refused.
    async fn check_conditional_writes(&self) -> Result<()> {
        let probe = format!("_polarway/probe-{}", uuid::Uuid::new_v4().simple());
        let first = self.put_if_absent(&probe, Bytes::from_static(b"1")).await?;
        let second = self.put_if_absent(&probe, Bytes::from_static(b"2")).await?;
        let _ = self.delete(&probe).await;
        if first && !second {
            return Ok(());
        }
        Err(Error::Unavailable(format!(
            "the S3 store behind bucket {:?} does not enforce conditional writes (If-None-Match: *), so two \
             workers could both commit the same version; use a store that does, or set \
             POLARWAY_S3_ALLOW_UNCONDITIONAL_WRITES=true if only one worker ever writes",
            self.bucket
        )))
    }

    async fn upload_parts(&self, key: &str, local: &Path) -> Result<()> {
        let full = self.key(key);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| s3_error("starting a multipart upload", e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let uploaded: Result<Vec<CompletedPart>> = async {
            let mut file = tokio::fs::File::open(local).await?;
            let mut parts = Vec::new();
            for number in 1.. {
                let mut buf = Vec::with_capacity(PART_BYTES);
                (&mut file)
                    .take(PART_BYTES as u64)
                    .read_to_end(&mut buf)
                    .await?;
                if buf.is_empty() && number > 1 {
                    break;
                }
                let len = buf.len();
                let out = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(&full)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(ByteStream::from(buf))
                    .send()
                    .await
                    .map_err(|e| s3_error("uploading a part", e))?;
                self.counters.written(len as u64);
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .build(),
                );
                if len < PART_BYTES {
                    break;
                }
            }
            Ok(parts)
        }
        .await;
        let completed = match uploaded {
            Ok(parts) => self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&full)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| s3_error("completing a multipart upload", e)),
            Err(e) => Err(e),
        };
        if completed.is_err() {
            // The parts of an unfinished upload are invisible but kept (and billed): drop them.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&full)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        completed
    }

    /// The body of an object, or `None` if it does not exist.
    async fn get_object(&self, key: &str) -> Result<Option<ByteStream>> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .send()
            .await
        {
            Ok(resp) => Ok(Some(resp.body)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(s3_error("reading an object", e)),
        }
    }

    /// Stream an object into a local file; `None` if it does not exist.
    async fn download(&self, key: &str, to: &Path) -> Result<Option<()>> {
        let Some(mut body) = self.get_object(key).await? else {
            return Ok(None);
        };
        let written: Result<()> = async {
            let mut out = tokio::fs::File::create(to).await?;
            while let Some(bytes) = body
                .try_next()
                .await
                .map_err(|e| Error::Unavailable(format!("S3 read failed: {e}")))?
            {
                self.counters.read(bytes.len() as u64);
                out.write_all(&bytes).await?;
            }
            out.flush().await?;
            Ok(())
        }
        .await;
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(to).await;
            return Err(e);
        }
        Ok(Some(()))
    }
}

/// S3 failures are the store being unavailable (retriable), with the SDK's whole explanation.
fn s3_error<E, R>(what: &str, e: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    Error::Unavailable(format!(
        "S3 failed while {what}: {}",
        DisplayErrorContext(&e)
    ))
}

#[async_trait]
impl Backend for S3Backend {
    fn kind(&self) -> &'static str {
        "s3"
    }

    fn counters(&self) -> Arc<StoreCounters> {
        self.counters.clone()
    }

    fn staging_dir(&self) -> &Path {
        &self.staging
    }

    async fn put_if_absent(&self, key: &str, bytes: Bytes) -> Result<bool> {
        // 409 (ConditionalRequestConflict): a concurrent write of the key was in flight; the next
        // attempt sees its outcome.
        for _ in 0..5 {
            let sent = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(self.key(key))
                .if_none_match("*")
                .body(ByteStream::from(bytes.clone()))
                .send()
                .await;
            match sent {
                Ok(_) => {
                    self.counters.written(bytes.len() as u64);
                    return Ok(true);
                }
                Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 412 => {
                    return Ok(false)
                }
                Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 409 => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(s3_error("writing an object", e)),
            }
        }
        Err(Error::Unavailable(format!(
            "S3 kept reporting conflicting writes of {key:?}; retry"
        )))
    }

    async fn put_file(&self, key: &str, local: &Path) -> Result<u64> {
        let size = tokio::fs::metadata(local).await?.len();
        if size as usize > PART_BYTES {
            self.upload_parts(key, local).await?;
        } else {
            let body = ByteStream::from_path(local)
                .await
                .map_err(|e| Error::internal("reading the staged file", e))?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(self.key(key))
                .body(body)
                .send()
                .await
                .map_err(|e| s3_error("writing an object", e))?;
            self.counters.written(size);
        }
        // The staged file is the object: keep it as this worker's cached copy.
        let disk = self.disk.clone();
        let (key, local) = (key.to_string(), local.to_path_buf());
        tokio::task::spawn_blocking(move || {
            match disk.insert(&key, &local) {
                Ok(cached) if cached != local => {} // moved into the cache
                _ => {
                    let _ = std::fs::remove_file(&local);
                }
            }
        })
        .await?;
        Ok(size)
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let Some(body) = self.get_object(key).await? else {
            return Ok(None);
        };
        let bytes = body
            .collect()
            .await
            .map_err(|e| Error::Unavailable(format!("S3 read failed: {e}")))?
            .into_bytes();
        self.counters.read(bytes.len() as u64);
        Ok(Some(bytes))
    }

    async fn open(&self, key: &str) -> Result<Option<ObjectData>> {
        if let Some(path) = self.disk.get(key) {
            return Ok(Some(ObjectData::File(path)));
        }
        let tmp = self.disk.temp_path();
        if self.download(key, &tmp).await?.is_none() {
            return Ok(None);
        }
        let disk = self.disk.clone();
        let key = key.to_string();
        let cached = tokio::task::spawn_blocking({
            let tmp = tmp.clone();
            move || disk.insert(&key, &tmp)
        })
        .await??;
        // Too big for the disk cache: the reader takes the downloaded copy.
        Ok(Some(if cached == tmp {
            ObjectData::Temp(tmp)
        } else {
            ObjectData::File(cached)
        }))
    }

    async fn list_children(&self, prefix: &str) -> Result<Vec<String>> {
        let full = self.key(prefix);
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full)
            .delimiter("/")
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages
            .try_next()
            .await
            .map_err(|e| s3_error("listing objects", e))?
        {
            for p in page.common_prefixes() {
                if let Some(name) = p.prefix().and_then(|p| p.strip_prefix(&full)) {
                    out.push(name.trim_end_matches('/').to_string());
                }
            }
            for o in page.contents() {
                if let Some(name) = o.key().and_then(|k| k.strip_prefix(&full)) {
                    out.push(name.to_string());
                }
            }
        }
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.disk.remove(key);
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .send()
            .await
            .map_err(|e| s3_error("deleting an object", e))?;
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationResult {
    operation: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operation {
    operation: String,
}

/// Counts and times every request attempt the SDK sends (retries included), whatever the operation:
/// an SDK interceptor, so no call site can forget it.
#[derive(Clone, Debug)]
struct S3RequestMetrics {
    counters: Arc<StoreCounters>,
    calls: Family<OperationResult, Counter>,
    seconds: Family<Operation, Histogram>,
}

impl Default for S3RequestMetrics {
    fn default() -> Self {
        Self {
            counters: Default::default(),
            calls: Default::default(),
            seconds: Family::new_with_constructor(
                polarway_telemetry::grpc::duration_histogram as fn() -> Histogram,
            ),
        }
    }
}

#[derive(Debug)]
struct AttemptStarted(Instant);

impl Storable for AttemptStarted {
    type Storer = StoreReplace<Self>;
}

impl Intercept for S3RequestMetrics {
    fn name(&self) -> &'static str {
        "PolarwayS3RequestMetrics"
    }

    fn read_before_attempt(
        &self,
        _: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        cfg.interceptor_state()
            .store_put(AttemptStarted(Instant::now()));
        Ok(())
    }

    fn read_after_attempt(
        &self,
        ctx: &FinalizerInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        let operation = cfg
            .load::<Metadata>()
            .map_or("unknown", |m| m.name())
            .to_string();
        // An answer that is not 2xx (404 of a missing object, 412 of a taken key included) is an error.
        let ok = ctx.response().is_some_and(|r| r.status().is_success());
        self.counters.request();
        self.calls
            .get_or_create(&OperationResult {
                operation: operation.clone(),
                result: if ok { "ok" } else { "error" },
            })
            .inc();
        if let Some(started) = cfg.load::<AttemptStarted>() {
            self.seconds
                .get_or_create(&Operation { operation })
                .observe(started.0.elapsed().as_secs_f64());
        }
        Ok(())
    }
}
