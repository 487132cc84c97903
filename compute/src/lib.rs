//! The Polarway worker: a gRPC server that stores DataFrames by name, loads them back (whole or
//! streamed) and runs SQL over them, with Arrow IPC on the wire.
//!
//! Layout, and the path a request takes:
//! - `main.rs`, `config.rs`: `polarway server` and its flags (each also an env variable).
//! - `server.rs`: builds the `Worker` and serves it with TLS, grpc.health.v1, reflection and a
//!   graceful drain on shutdown.
//! - `service/`: the `polarway.v1.Polarway` RPCs, one module per family. Every call but Health is
//!   authenticated (`auth.rs`: token, policy, forwarded grants → an `Access`) and takes an
//!   in-flight slot; each checks its `Access` against every dataset it touches.
//!   - `store.rs`: IPC chunks are decoded (`ipc.rs`) and written to a staged Parquet file
//!     (`parquet_io.rs`) as they arrive, then committed by the catalog.
//!   - `load.rs`: a version is read from the read-through cache (`cache.rs`) or batch by batch
//!     from Parquet, and sent as IPC chunks.
//!   - `query.rs`: the SQL gate (`sql/gate.rs`, DuckDB's parse tree), the datasets and files it
//!     reads resolved and pinned (`sql/reads.rs`), then DuckDB in the sandbox of `sql/mod.rs` on
//!     a pooled instance (`sql/pool.rs`).
//!   - `catalog.rs`: list, describe, delete, cache stats.
//! - `flight/`: Arrow Flight and Flight SQL on the same port, over the same admission, gate,
//!   sandbox, loader and store steps; signed self-contained tickets (`ticket.rs`).
//! - `store/`: the version protocol (`catalog.rs`) over a `Backend` (`backend.rs`): `memory.rs`, `dir.rs`
//!   (`external`, a shared directory), `s3.rs` (with the disk tier `disk_cache.rs`).
//! - `scratch.rs`: names of a worker's own files in shared places (staging, spill, disk cache).
//! - `coldview.rs`: `<data-dir>/cold`, where each dataset's latest version appears for outside tools.
//! - `wire.rs`: Flight's DoGet framed beneath tonic, Arrow buffers uncopied.
//! - `error.rs`: the error type and its one mapping to gRPC status codes; `oversize.rs`: tonic's
//!   answer to an over-size message given our code for size limits (RESOURCE_EXHAUSTED).
//! - `panics.rs`: panics on malformed input (Arrow's IPC reader) caught and answered quietly.
//! - `metrics.rs`: Prometheus metrics; the per-call series come from polarway-telemetry's layer,
//!   which `server.rs` puts around every service.

pub mod auth;
pub mod cache;
pub mod coldview;
pub mod config;
pub mod error;
pub mod flight;
pub mod ipc;
pub mod metrics;
pub mod oversize;
pub mod panics;
pub mod parquet_io;
pub mod scratch;
pub mod server;
pub mod service;
pub mod sql;
pub mod store;
pub mod wire;
