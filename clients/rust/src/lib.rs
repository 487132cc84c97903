//! Rust client for Polarway: store Polars DataFrames by name on a Polarway server, load them
//! back whole or as a stream, and run SQL over them.
//!
//! ```no_run
//! use polarway::DistributedClient;
//! use polars::prelude::*;
//!
//! # async fn run() -> polarway::Result<()> {
//! let client = DistributedClient::connect("http://localhost:50052").await?;
//! let df = df! { "symbol" => &["BTC", "ETH"], "price" => &[50000, 3000] }?;
//! client.store("trades_20260203", &df).await?;
//! let loaded = client.load("trades_20260203").await?;
//! let avg = client.query("SELECT symbol, AVG(price) FROM trades_20260203 GROUP BY symbol").await?;
//! # Ok(()) }
//! ```
//!
//! Every call sets the routing-key header (`x-polarway-key`, the dataset name) that the gateway
//! hashes on, carries the bearer token when one is configured, and has a deadline. Idempotent
//! calls (load, query without `into`, list, describe, health, cache stats) are retried with
//! exponential backoff when the server is UNAVAILABLE.

mod error;
mod ipc;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use polars::prelude::DataFrame;
use polarway_proto::v1::{self as pb, polarway_client::PolarwayClient};
use polarway_proto::{transport, MAX_MESSAGE_BYTES, ROUTING_KEY_HEADER};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::task::AbortOnDropHandle;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub use error::{Error, Result};
pub use pb::{CacheStatsResponse as CacheStats, DatasetInfo};
pub use tonic::Code;

/// A stream of DataFrames, one per record batch, as `load_stream` returns.
pub type FrameStream = Pin<Box<dyn Stream<Item = Result<DataFrame>> + Send>>;

/// A precondition on a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Store only if the dataset does not exist (else ALREADY_EXISTS).
    IfAbsent,
    /// Store only if the current version is this one (else ABORTED).
    IfVersion(u64),
}

/// TLS settings: the CA to trust and, for mutual TLS, the client's certificate and key (PEM).
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    pub ca_cert: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Name to verify the server certificate against, when it differs from the URL's host.
    pub domain: Option<String>,
}

/// Builds a client with options; `DistributedClient::connect(url)` uses the defaults.
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    url: String,
    timeout: Duration,
    auth_token: Option<String>,
    tls: Option<TlsOptions>,
    retries: u32,
    backoff: Duration,
    lazy: bool,
}

impl ClientBuilder {
    /// Deadline of each call (default 30 s). For streamed loads it bounds the wait for each message.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Bearer token sent as `authorization: Bearer <token>`.
    pub fn auth_token(mut self, token: impl Into<String>) -> Self {
        self.auth_token = Some(token.into());
        self
    }

    /// Connect with TLS (use an `https://` URL).
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Retries of idempotent calls on UNAVAILABLE (default 3), starting at `backoff` (default
    /// 100 ms) and doubling.
    pub fn retries(mut self, retries: u32, backoff: Duration) -> Self {
        self.retries = retries;
        self.backoff = backoff;
        self
    }

    /// Do not connect until the first call (which then retries while the server comes up).
    pub fn lazy(mut self, lazy: bool) -> Self {
        self.lazy = lazy;
        self
    }

    pub async fn connect(self) -> Result<DistributedClient> {
        let mut endpoint = Endpoint::from_shared(self.url.clone())
            .map_err(|e| Error::Connect(format!("invalid URL {:?}: {e}", self.url)))?
            .connect_timeout(self.timeout.min(Duration::from_secs(10)))
            .initial_stream_window_size(transport::STREAM_WINDOW)
            .initial_connection_window_size(transport::CONNECTION_WINDOW)
            // Servers may send 1 MiB DATA frames: a 1 GiB load is then 1,024 frames, not 65,536.
            .max_frame_size(transport::MAX_FRAME)
            .tcp_nodelay(true);
        if let Some(tls) = &self.tls {
            let read = |p: &PathBuf| {
                std::fs::read(p)
                    .map_err(|e| Error::Connect(format!("cannot read {}: {e}", p.display())))
            };
            let mut cfg = ClientTlsConfig::new();
            if let Some(ca) = &tls.ca_cert {
                cfg = cfg.ca_certificate(Certificate::from_pem(read(ca)?));
            }
            if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
                cfg = cfg.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            if let Some(domain) = &tls.domain {
                cfg = cfg.domain_name(domain.clone());
            }
            endpoint = endpoint.tls_config(cfg)?;
        }
        let channel = if self.lazy {
            endpoint.connect_lazy()
        } else {
            endpoint.connect().await?
        };
        let inner = PolarwayClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(DistributedClient { inner, opts: self })
    }
}

/// A connection to a Polarway server (or gateway). Cheap to clone; safe to share across tasks.
#[derive(Clone, Debug)]
pub struct DistributedClient {
    inner: PolarwayClient<Channel>,
    opts: ClientBuilder,
}

impl DistributedClient {
    /// Connect with default options, e.g. `connect("http://localhost:50052")`.
    pub async fn connect(url: impl Into<String>) -> Result<Self> {
        Self::builder(url).connect().await
    }

    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            timeout: Duration::from_secs(30),
            auth_token: None,
            tls: None,
            retries: 3,
            backoff: Duration::from_millis(100),
            lazy: false,
        }
    }

    fn request<T>(&self, msg: T, key: &str) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(self.opts.timeout);
        let md = req.metadata_mut();
        if let Ok(v) = MetadataValue::try_from(key) {
            if !key.is_empty() {
                md.insert(ROUTING_KEY_HEADER, v);
            }
        }
        if let Some(token) = &self.opts.auth_token {
            if let Ok(v) = MetadataValue::try_from(format!("Bearer {token}")) {
                md.insert("authorization", v);
            }
        }
        req
    }

    /// Run an idempotent call, retrying on UNAVAILABLE with exponential backoff.
    async fn retrying<T, F, Fut>(&self, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut delay = self.opts.backoff;
        let mut attempt = 0;
        loop {
            let outcome = match tokio::time::timeout(self.opts.timeout, call()).await {
                Ok(r) => r,
                Err(_) => Err(Error::Timeout(self.opts.timeout)),
            };
            match outcome {
                Err(e) if e.is_retryable() && attempt < self.opts.retries => {
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                other => return other,
            }
        }
    }

    /// "OK" when the server can serve.
    pub async fn health_check(&self) -> Result<String> {
        self.retrying(|| {
            let mut c = self.inner.clone();
            let req = self.request(pb::HealthRequest {}, "");
            async move { Ok(c.health(req).await?.into_inner().status) }
        })
        .await
    }

    /// Store `df` as the next version of `name`.
    pub async fn store(&self, name: &str, df: &DataFrame) -> Result<DatasetInfo> {
        self.store_inner(name, df, None).await
    }

    /// Store only if `condition` holds; otherwise ALREADY_EXISTS (if absent) or ABORTED (if version).
    pub async fn store_if(
        &self,
        name: &str,
        df: &DataFrame,
        condition: Condition,
    ) -> Result<DatasetInfo> {
        self.store_inner(name, df, Some(condition)).await
    }

    async fn store_inner(
        &self,
        name: &str,
        df: &DataFrame,
        condition: Option<Condition>,
    ) -> Result<DatasetInfo> {
        let (tx, rx) = mpsc::channel::<pb::StoreRequest>(4);
        let encoder = spawn_encoder(vec![(name.to_string(), df.clone(), condition)], tx);
        let req = self.request(ReceiverStream::new(rx), name);
        let result = self.inner.clone().store(req).await;
        finish_upload(encoder, result)
            .await
            .map(|r| r.into_inner().dataset.unwrap_or_default())
    }

    /// Store several datasets in one call: all are committed or none is.
    pub async fn store_batch<'a>(
        &self,
        frames: impl IntoIterator<Item = (&'a str, &'a DataFrame)>,
    ) -> Result<Vec<DatasetInfo>> {
        let items: Vec<_> = frames
            .into_iter()
            .map(|(n, df)| (n.to_string(), df.clone(), None))
            .collect();
        let key = items.first().map(|(n, _, _)| n.clone()).unwrap_or_default();
        let (tx, rx) = mpsc::channel::<pb::StoreRequest>(4);
        let encoder = spawn_encoder(items, tx);
        let req = self.request(ReceiverStream::new(rx), &key);
        let result = self.inner.clone().store_batch(req).await;
        finish_upload(encoder, result)
            .await
            .map(|r| r.into_inner().datasets)
    }

    /// The latest version of `name`, whole.
    pub async fn load(&self, name: &str) -> Result<DataFrame> {
        self.load_with(name, &[], None).await
    }

    /// Some columns (in this order; empty: all) of a version (None: the latest).
    pub async fn load_with(
        &self,
        name: &str,
        columns: &[&str],
        version: Option<u64>,
    ) -> Result<DataFrame> {
        let req = load_request(name, columns, version);
        self.retrying(|| {
            let req = req.clone();
            async move { collect_frames(self.open_load(req).await?).await }
        })
        .await
    }

    /// The latest version of `name` as a stream of DataFrames, one per record batch: memory is
    /// freed as you go.
    pub async fn load_stream(&self, name: &str) -> Result<FrameStream> {
        self.load_stream_with(name, &[], None).await
    }

    pub async fn load_stream_with(
        &self,
        name: &str,
        columns: &[&str],
        version: Option<u64>,
    ) -> Result<FrameStream> {
        let req = load_request(name, columns, version);
        let chunks = self.retrying(|| self.open_load(req.clone())).await?;
        Ok(decode_frames(chunks))
    }

    /// Run SQL; the result as a DataFrame.
    pub async fn query(&self, sql: &str) -> Result<DataFrame> {
        let req = pb::QueryRequest {
            sql: sql.to_string(),
            into: None,
        };
        let key = first_table(sql);
        self.retrying(|| {
            let mut c = self.inner.clone();
            let req = self.request(req.clone(), &key);
            async move {
                let stream = c.query(req).await?.into_inner();
                let chunks = stream.map(|m| m.map(|m| m.ipc).map_err(Error::from));
                collect_frames(Box::pin(chunks)).await
            }
        })
        .await
    }

    /// Run SQL and keep the result on the server as dataset `into`.
    pub async fn query_into(&self, sql: &str, into: &str) -> Result<DatasetInfo> {
        let req = self.request(
            pb::QueryRequest {
                sql: sql.to_string(),
                into: Some(into.to_string()),
            },
            into,
        );
        let mut stream = self.inner.clone().query(req).await?.into_inner();
        while let Some(msg) = stream.message().await? {
            if let Some(info) = msg.stored {
                return Ok(info);
            }
        }
        Err(Error::Data(
            "the server did not describe the stored result".into(),
        ))
    }

    /// Datasets whose names start with `prefix` (all with ""), sorted by name.
    pub async fn list(&self, prefix: &str) -> Result<Vec<DatasetInfo>> {
        self.retrying(|| {
            let mut c = self.inner.clone();
            let req = self.request(
                pb::ListRequest {
                    prefix: prefix.to_string(),
                },
                "",
            );
            async move { Ok(c.list(req).await?.into_inner().datasets) }
        })
        .await
    }

    /// Version, rows, bytes, schema and creation time of the latest version (or `version`).
    pub async fn describe(&self, name: &str) -> Result<DatasetInfo> {
        self.describe_version(name, None).await
    }

    pub async fn describe_version(&self, name: &str, version: Option<u64>) -> Result<DatasetInfo> {
        self.retrying(|| {
            let mut c = self.inner.clone();
            let req = self.request(
                pb::DescribeRequest {
                    name: name.to_string(),
                    version,
                },
                name,
            );
            async move { Ok(c.describe(req).await?.into_inner()) }
        })
        .await
    }

    /// Delete `name`; returns the version it had.
    pub async fn delete(&self, name: &str) -> Result<u64> {
        let req = self.request(
            pb::DeleteRequest {
                name: name.to_string(),
            },
            name,
        );
        Ok(self.inner.clone().delete(req).await?.into_inner().version)
    }

    /// The server's read-through cache counters.
    pub async fn cache_stats(&self) -> Result<CacheStats> {
        self.retrying(|| {
            let mut c = self.inner.clone();
            let req = self.request(pb::CacheStatsRequest {}, "");
            async move { Ok(c.cache_stats(req).await?.into_inner()) }
        })
        .await
    }

    /// Start a load; its IPC chunks as a stream.
    async fn open_load(&self, req: pb::LoadRequest) -> Result<ChunkStream> {
        let name = req.name.clone();
        let stream = self
            .inner
            .clone()
            .load(self.request(req, &name))
            .await?
            .into_inner();
        Ok(Box::pin(
            stream.map(|m| m.map(|m| m.ipc).map_err(Error::from)),
        ))
    }
}

/// The routing key of a query: the first table it reads (`FROM name`), so that the gateway sends
/// it where that dataset is cached. Empty when the query starts from a function or a path.
fn first_table(sql: &str) -> String {
    let lower = sql.to_ascii_lowercase();
    let Some(at) = lower
        .find(" from ")
        .map(|i| i + 1)
        .or_else(|| lower.find("\nfrom ").map(|i| i + 1))
        .or_else(|| lower.starts_with("from ").then_some(0))
    else {
        return String::new();
    };
    let rest = sql[at + 4..].trim_start();
    let quoted = rest.starts_with('"');
    let name: String = rest
        .trim_start_matches('"')
        .chars()
        .take_while(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') || (quoted && *c != '"')
        })
        .collect();
    let after = rest.trim_start_matches('"')[name.len()..]
        .trim_start_matches('"')
        .trim_start();
    if name.is_empty() || after.starts_with('(') {
        String::new()
    } else {
        name
    }
}

type Encoder = tokio::task::JoinHandle<Result<()>>;

/// Encode frames on a blocking thread, feeding the request stream: a header, then its chunks.
fn spawn_encoder(
    items: Vec<(String, DataFrame, Option<Condition>)>,
    tx: mpsc::Sender<pb::StoreRequest>,
) -> Encoder {
    use pb::store_request::Msg;
    tokio::task::spawn_blocking(move || {
        for (name, df, condition) in items {
            let condition = condition.map(|c| pb::Condition {
                kind: Some(match c {
                    Condition::IfAbsent => pb::condition::Kind::IfAbsent(true),
                    Condition::IfVersion(v) => pb::condition::Kind::IfVersion(v),
                }),
            });
            let header = pb::StoreRequest {
                msg: Some(Msg::Header(pb::StoreHeader { name, condition })),
            };
            if tx.blocking_send(header).is_err() {
                return Ok(()); // the call ended early; its status says why
            }
            let (chunk_tx, mut chunk_rx) = mpsc::channel::<Bytes>(4);
            let forward_to = tx.clone();
            let forward = std::thread::spawn(move || {
                while let Some(chunk) = chunk_rx.blocking_recv() {
                    if forward_to
                        .blocking_send(pb::StoreRequest {
                            msg: Some(Msg::Ipc(chunk)),
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            });
            let written = ipc::write_frame(df, chunk_tx);
            let _ = forward.join();
            if let Err(e) = written {
                if tx.is_closed() {
                    return Ok(());
                }
                return Err(e);
            }
        }
        Ok(())
    })
}

async fn finish_upload<T>(
    encoder: Encoder,
    result: std::result::Result<T, tonic::Status>,
) -> Result<T> {
    let encoded = encoder
        .await
        .map_err(|e| Error::Data(format!("encoder failed: {e}")))?;
    let response = result?;
    encoded?;
    Ok(response)
}

fn load_request(name: &str, columns: &[&str], version: Option<u64>) -> pb::LoadRequest {
    pb::LoadRequest {
        name: name.to_string(),
        columns: columns.iter().map(|c| c.to_string()).collect(),
        version,
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// Forward chunks from the async stream to a blocking decoder's reader (up to its first error).
/// Dropping the returned handle drops the call: the server sees it cancelled at once, instead of
/// when it next sends (a dropped query would otherwise keep running on the server).
fn chunk_reader(mut chunks: ChunkStream) -> (ipc::ChunkReader, AbortOnDropHandle<()>) {
    let (chunk_tx, chunk_rx) = mpsc::channel::<Result<Bytes>>(4);
    let feeder = AbortOnDropHandle::new(tokio::spawn(async move {
        while let Some(chunk) = chunks.next().await {
            let failed = chunk.is_err();
            if chunk_tx.send(chunk).await.is_err() || failed {
                break;
            }
        }
    }));
    (ipc::ChunkReader::new(chunk_rx), feeder)
}

/// Decode a chunk stream into frames on a blocking thread.
fn decode_frames(chunks: ChunkStream) -> FrameStream {
    let (frame_tx, frame_rx) = mpsc::channel::<Result<DataFrame>>(2);
    let (reader, feeder) = chunk_reader(chunks);
    tokio::task::spawn_blocking(move || {
        let frames = frame_tx.clone();
        let result = ipc::read_frames(reader, |df| frames.blocking_send(Ok(df)).is_ok());
        if let Err(e) = result {
            let _ = frame_tx.blocking_send(Err(e));
        }
    });
    // The stream owns the feeder, so dropping the stream ends the call.
    let frames = ReceiverStream::new(frame_rx);
    Box::pin(futures::stream::unfold(
        (frames, feeder),
        |(mut frames, feeder)| async move { frames.next().await.map(|f| (f, (frames, feeder))) },
    ))
}

/// Decode a whole result into one DataFrame (an empty one with the schema if there are no rows).
async fn collect_frames(chunks: ChunkStream) -> Result<DataFrame> {
    let (reader, feeder) = chunk_reader(chunks);
    let decoded = tokio::task::spawn_blocking(move || -> Result<DataFrame> {
        let mut out: Option<DataFrame> = None;
        let mut failure = None;
        let schema = ipc::read_frames(reader, |df| {
            match out.as_mut() {
                None => out = Some(df),
                Some(acc) => {
                    if let Err(e) = acc.vstack_mut_owned(df) {
                        failure = Some(Error::from(e));
                        return false;
                    }
                }
            }
            true
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(match (out, schema) {
            (Some(df), _) => df,
            (None, Some(schema)) => DataFrame::empty_with_schema(&schema),
            (None, None) => DataFrame::empty(),
        })
    })
    .await
    .map_err(|e| Error::Data(format!("decoder failed: {e}")))?;
    let _ = feeder.await;
    decoded
}

#[cfg(test)]
mod tests {
    use super::first_table;

    #[test]
    fn routing_key_of_a_query() {
        assert_eq!(
            first_table("SELECT * FROM trades_20260203 WHERE x"),
            "trades_20260203"
        );
        assert_eq!(first_table("select a from \"my.data\" t"), "my.data");
        assert_eq!(first_table("FROM quotes LIMIT 1"), "quotes");
        assert_eq!(
            first_table("SELECT * FROM parquet_scan('/data/cold/x.parquet')"),
            ""
        );
        assert_eq!(first_table("SELECT 1"), "");
    }
}
