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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::backend::{Backend, ObjectData};
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

/// Requests sent to S3 and bytes moved, for CacheStats.
#[derive(Default)]
pub struct S3Counters {
    pub requests: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
}

pub struct S3Backend {
    client: Client,
    bucket: String,
    prefix: String,
    staging: PathBuf,
    disk: Arc<DiskCache>,
    counters: Arc<S3Counters>,
}

impl S3Backend {
    pub async fn connect(opts: &S3Options, staging: PathBuf, disk: Arc<DiskCache>) -> Result<Self> {
        std::fs::create_dir_all(&staging)?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(url) = &opts.endpoint {
            loader = loader.endpoint_url(url);
        }
        let sdk = loader.load().await;
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(opts.timeout.min(Duration::from_secs(5)))
            .operation_attempt_timeout(opts.timeout)
            .build();
        let conf = aws_sdk_s3::config::Builder::from(&sdk)
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
            counters: Default::default(),
        };
        this.client.head_bucket().bucket(&this.bucket).send().await.map_err(|e| {
            Error::Unavailable(format!(
                "cannot reach S3 bucket {:?}: {}; check POLARWAY_S3_BUCKET, the endpoint and the AWS credentials",
                this.bucket,
                DisplayErrorContext(&e)
            ))
        })?;
        if !opts.allow_unconditional_writes {
            this.check_conditional_writes().await?;
        }
        Ok(this)
    }

    pub fn counters(&self) -> Arc<S3Counters> {
        self.counters.clone()
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn count(&self) {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
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
        self.count();
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
                (&mut file).take(PART_BYTES as u64).read_to_end(&mut buf).await?;
                if buf.is_empty() && number > 1 {
                    break;
                }
                let len = buf.len();
                self.count();
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
                self.counters.bytes_written.fetch_add(len as u64, Ordering::Relaxed);
                parts.push(CompletedPart::builder().part_number(number).set_e_tag(out.e_tag().map(str::to_string)).build());
                if len < PART_BYTES {
                    break;
                }
            }
            Ok(parts)
        }
        .await;
        let completed = match uploaded {
            Ok(parts) => {
                self.count();
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&full)
                    .upload_id(&upload_id)
                    .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| s3_error("completing a multipart upload", e))
            }
            Err(e) => Err(e),
        };
        if completed.is_err() {
            // The parts of an unfinished upload are invisible but kept (and billed): drop them.
            self.count();
            let _ = self.client.abort_multipart_upload().bucket(&self.bucket).key(&full).upload_id(&upload_id).send().await;
        }
        completed
    }

    /// The body of an object, or `None` if it does not exist.
    async fn get_object(&self, key: &str) -> Result<Option<ByteStream>> {
        self.count();
        match self.client.get_object().bucket(&self.bucket).key(self.key(key)).send().await {
            Ok(resp) => Ok(Some(resp.body)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(s3_error("reading an object", e)),
        }
    }

    /// Stream an object into a local file; `None` if it does not exist.
    async fn download(&self, key: &str, to: &Path) -> Result<Option<()>> {
        let Some(mut body) = self.get_object(key).await? else { return Ok(None) };
        let written: Result<()> = async {
            let mut out = tokio::fs::File::create(to).await?;
            while let Some(bytes) = body.try_next().await.map_err(|e| Error::Unavailable(format!("S3 read failed: {e}")))? {
                self.counters.bytes_read.fetch_add(bytes.len() as u64, Ordering::Relaxed);
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
    Error::Unavailable(format!("S3 failed while {what}: {}", DisplayErrorContext(&e)))
}

#[async_trait]
impl Backend for S3Backend {
    fn kind(&self) -> &'static str {
        "s3"
    }

    fn staging_dir(&self) -> &Path {
        &self.staging
    }

    async fn put_if_absent(&self, key: &str, bytes: Bytes) -> Result<bool> {
        // 409 (ConditionalRequestConflict): a concurrent write of the key was in flight; the next
        // attempt sees its outcome.
        for _ in 0..5 {
            self.count();
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
                    self.counters.bytes_written.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    return Ok(true);
                }
                Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 412 => return Ok(false),
                Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 409 => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(s3_error("writing an object", e)),
            }
        }
        Err(Error::Unavailable(format!("S3 kept reporting conflicting writes of {key:?}; retry")))
    }

    async fn put_file(&self, key: &str, local: &Path) -> Result<u64> {
        let size = tokio::fs::metadata(local).await?.len();
        if size as usize > PART_BYTES {
            self.upload_parts(key, local).await?;
        } else {
            let body = ByteStream::from_path(local).await.map_err(|e| Error::internal("reading the staged file", e))?;
            self.count();
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(self.key(key))
                .body(body)
                .send()
                .await
                .map_err(|e| s3_error("writing an object", e))?;
            self.counters.bytes_written.fetch_add(size, Ordering::Relaxed);
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
        let Some(body) = self.get_object(key).await? else { return Ok(None) };
        let bytes = body.collect().await.map_err(|e| Error::Unavailable(format!("S3 read failed: {e}")))?.into_bytes();
        self.counters.bytes_read.fetch_add(bytes.len() as u64, Ordering::Relaxed);
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
        Ok(Some(if cached == tmp { ObjectData::Temp(tmp) } else { ObjectData::File(cached) }))
    }

    async fn list_children(&self, prefix: &str) -> Result<Vec<String>> {
        let full = self.key(prefix);
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(&full).delimiter("/").into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.try_next().await.map_err(|e| s3_error("listing objects", e))? {
            self.count();
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
        self.count();
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
