//! The calls, made with the generated tonic client as a real client would: routing key, token,
//! 16 MiB messages, large HTTP/2 windows, 1 MiB IPC chunks, loads decoded to RecordBatches.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use arrow::buffer::Buffer;
use arrow::ipc::reader::StreamDecoder;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
pub use polarway_proto::transport::code_name;
use polarway_proto::transport::{CONNECTION_WINDOW, MAX_FRAME, STREAM_WINDOW};
use polarway_proto::v1::{self as pb, polarway_client::PolarwayClient};
use polarway_proto::{CHUNK_TARGET_BYTES, MAX_MESSAGE_BYTES, ROUTING_KEY_HEADER};
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

#[derive(Clone, Debug, Default)]
pub struct ConnectOpts {
    pub tls_ca: Option<PathBuf>,
    pub tls_domain: Option<String>,
    pub token: Option<String>,
}

#[derive(Clone)]
pub struct Client {
    inner: PolarwayClient<Channel>,
    token: Option<String>,
    timeout: Duration,
}

/// What one call moved.
#[derive(Clone, Copy, Debug, Default)]
pub struct Moved {
    pub sent: u64,
    pub received: u64,
    pub rows: u64,
}

/// Why a call failed: a gRPC status, or a client-side check (wrong row count, bad Arrow).
#[derive(Debug)]
pub struct CallError {
    pub status: String,
    pub message: String,
}

impl From<tonic::Status> for CallError {
    fn from(s: tonic::Status) -> Self {
        CallError {
            status: code_name(s.code()).to_string(),
            message: s.message().to_string(),
        }
    }
}

impl From<arrow::error::ArrowError> for CallError {
    fn from(e: arrow::error::ArrowError) -> Self {
        CallError {
            status: "CLIENT_DECODE".into(),
            message: e.to_string(),
        }
    }
}

pub type CallResult = std::result::Result<Moved, CallError>;

impl Client {
    /// One HTTP/2 connection (tonic reconnects it after a failure, e.g. a restarted worker).
    pub async fn connect(url: &str, opts: &ConnectOpts, timeout: Duration) -> Result<Client> {
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .with_context(|| format!("invalid target URL {url:?}"))?
            .connect_timeout(Duration::from_secs(10))
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME)
            .tcp_nodelay(true);
        if url.starts_with("https://") {
            let mut cfg = ClientTlsConfig::new();
            if let Some(ca) = &opts.tls_ca {
                let pem =
                    std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
                cfg = cfg.ca_certificate(Certificate::from_pem(pem));
            }
            if let Some(domain) = &opts.tls_domain {
                cfg = cfg.domain_name(domain.clone());
            }
            endpoint = endpoint.tls_config(cfg)?;
        }
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        let inner = PolarwayClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Client {
            inner,
            token: opts.token.clone(),
            timeout,
        })
    }

    fn request<T>(&self, msg: T, key: &str) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(self.timeout);
        let md = req.metadata_mut();
        if !key.is_empty() {
            if let Ok(v) = MetadataValue::try_from(key) {
                md.insert(ROUTING_KEY_HEADER, v);
            }
        }
        if let Some(token) = &self.token {
            if let Ok(v) = MetadataValue::try_from(format!("Bearer {token}")) {
                md.insert("authorization", v);
            }
        }
        req
    }

    /// Upload one pre-encoded IPC stream as the next version of `name`, in 1 MiB chunks.
    pub async fn store(
        &self,
        name: &str,
        ipc: &Bytes,
    ) -> std::result::Result<(Moved, pb::DatasetInfo), CallError> {
        self.store_with(name, ipc, None).await
    }

    /// `store` under a condition (`IfAbsent`, `IfVersion`).
    pub async fn store_with(
        &self,
        name: &str,
        ipc: &Bytes,
        condition: Option<pb::Condition>,
    ) -> std::result::Result<(Moved, pb::DatasetInfo), CallError> {
        use pb::store_request::Msg;
        let header = pb::StoreRequest {
            msg: Some(Msg::Header(pb::StoreHeader {
                name: name.to_string(),
                condition,
            })),
        };
        let chunks = (0..ipc.len().div_ceil(CHUNK_TARGET_BYTES)).map({
            let ipc = ipc.clone();
            move |i| pb::StoreRequest {
                msg: Some(Msg::Ipc(ipc.slice(
                    i * CHUNK_TARGET_BYTES..((i + 1) * CHUNK_TARGET_BYTES).min(ipc.len()),
                ))),
            }
        });
        let stream = futures::stream::iter(std::iter::once(header).chain(chunks));
        let info = self
            .inner
            .clone()
            .store(self.request(stream, name))
            .await?
            .into_inner()
            .dataset
            .unwrap_or_default();
        Ok((
            Moved {
                sent: ipc.len() as u64,
                received: 0,
                rows: info.rows,
            },
            info,
        ))
    }

    /// Load `name` whole (`keep`: hold every batch until the end, as a `load` does) or as a stream
    /// whose batches are dropped once decoded (`load_stream`).
    pub async fn load(&self, name: &str, columns: &[String], keep: bool) -> CallResult {
        let (info, moved, _kept) = self.read_load(name, columns, None, keep).await?;
        let expected = info.map(|i| i.rows);
        match expected {
            Some(rows) if rows == moved.rows => Ok(moved),
            _ => Err(CallError {
                status: "CLIENT_ROWS".into(),
                message: format!(
                    "decoded {} rows, the dataset has {:?}",
                    moved.rows, expected
                ),
            }),
        }
    }

    /// A version of `name` (the latest without one), whole: its version and its batches.
    pub async fn load_rows(
        &self,
        name: &str,
        version: Option<u64>,
    ) -> std::result::Result<(u64, Vec<RecordBatch>), CallError> {
        let (info, _, batches) = self.read_load(name, &[], version, true).await?;
        let info = info.ok_or_else(|| CallError {
            status: "CLIENT_NO_INFO".into(),
            message: "the load stream did not say which version it is".into(),
        })?;
        Ok((info.version, batches))
    }

    /// One Load call read to its end: the dataset it described, what it moved, and the decoded
    /// batches if `keep`.
    async fn read_load(
        &self,
        name: &str,
        columns: &[String],
        version: Option<u64>,
        keep: bool,
    ) -> std::result::Result<(Option<pb::DatasetInfo>, Moved, Vec<RecordBatch>), CallError> {
        let req = self.request(
            pb::LoadRequest {
                name: name.to_string(),
                columns: columns.to_vec(),
                version,
            },
            name,
        );
        let mut stream = self.inner.clone().load(req).await?.into_inner();
        let mut decoder = StreamDecoder::new();
        let mut moved = Moved::default();
        let mut info = None;
        let mut kept: Vec<RecordBatch> = Vec::new();
        while let Some(msg) = self.next(&mut stream).await? {
            if let Some(i) = msg.dataset {
                info = Some(i);
            }
            moved.received += msg.ipc.len() as u64;
            let mut buf = Buffer::from(msg.ipc);
            while !buf.is_empty() {
                if let Some(batch) = decoder.decode(&mut buf)? {
                    moved.rows += batch.num_rows() as u64;
                    if keep {
                        kept.push(batch);
                    }
                }
            }
        }
        decoder.finish()?;
        Ok((info, moved, kept))
    }

    /// The current version of `name`.
    pub async fn latest_version(&self, name: &str) -> std::result::Result<u64, CallError> {
        Ok(self.describe_info(name).await?.version)
    }

    async fn describe_info(&self, name: &str) -> std::result::Result<pb::DatasetInfo, CallError> {
        Ok(self
            .inner
            .clone()
            .describe(self.request(
                pb::DescribeRequest {
                    name: name.to_string(),
                    version: None,
                },
                name,
            ))
            .await?
            .into_inner())
    }

    /// Each message of a response stream within the call's timeout.
    async fn next<T>(
        &self,
        stream: &mut tonic::Streaming<T>,
    ) -> std::result::Result<Option<T>, CallError> {
        match tokio::time::timeout(self.timeout, stream.message()).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(CallError {
                status: "DEADLINE_EXCEEDED".into(),
                message: "client timeout".into(),
            }),
        }
    }

    pub async fn query(&self, sql: &str, key: &str) -> CallResult {
        let req = self.request(
            pb::QueryRequest {
                sql: sql.to_string(),
                into: None,
            },
            key,
        );
        let mut stream = self.inner.clone().query(req).await?.into_inner();
        let mut decoder = StreamDecoder::new();
        let mut moved = Moved {
            sent: sql.len() as u64,
            ..Default::default()
        };
        while let Some(msg) = self.next(&mut stream).await? {
            moved.received += msg.ipc.len() as u64;
            let mut buf = Buffer::from(msg.ipc);
            while !buf.is_empty() {
                if let Some(batch) = decoder.decode(&mut buf)? {
                    moved.rows += batch.num_rows() as u64;
                }
            }
        }
        decoder.finish()?;
        Ok(moved)
    }

    pub async fn describe(&self, name: &str) -> CallResult {
        let info = self.describe_info(name).await?;
        Ok(Moved {
            sent: 0,
            received: 0,
            rows: info.rows,
        })
    }

    pub async fn list(&self, prefix: &str) -> CallResult {
        let list = self
            .inner
            .clone()
            .list(self.request(
                pb::ListRequest {
                    prefix: prefix.to_string(),
                },
                "",
            ))
            .await?
            .into_inner();
        Ok(Moved {
            sent: 0,
            received: 0,
            rows: list.datasets.len() as u64,
        })
    }

    pub async fn cache_stats(&self) -> std::result::Result<pb::CacheStatsResponse, CallError> {
        Ok(self
            .inner
            .clone()
            .cache_stats(self.request(pb::CacheStatsRequest {}, ""))
            .await?
            .into_inner())
    }
}
