//! The Polarway gateway: the public gRPC entry point in front of Polarway workers. It decides who
//! the caller is and what it may do, and routes; workers execute, and enforce the caller's grants
//! (forwarded in `x-polarway-grants`) where data is touched. It is a transparent HTTP/2 proxy: it
//! routes on metadata (the path names the method, `x-polarway-key` the dataset, `authorization`
//! the caller) and never decodes Arrow payloads; it reads only the first, small message of calls
//! that name a dataset (`layers/body_key.rs`) and buffered Query requests (`layers/retry.rs`).
//!
//! # Layout
//! Each module uses only modules above it in this list (no import circles):
//! ```text
//! error.rs       GatewayError and its one mapping to gRPC statuses
//! call.rs        what layers tell each other about a call (request extensions, the service type)
//! config.rs      the flags (clap, each with an environment variable)
//! backends.rs    the workers: addresses (DNS refresh), health state, rendezvous ranking
//! metrics.rs     the Prometheus metrics
//! quota.rs       the policy's rates as governor limiters (runtime state of the rate-limit layer)
//! tls.rs         rustls server config (ALPN h2, optional mTLS), reload; client config toward workers
//! proxy.rs       the innermost service: the call forwarded over pooled HTTP/2 to the chosen worker
//! health.rs      active grpc.health.v1 checks of workers; the gateway's own health service
//! layers/        the request path, one decision per file, each a `Step` (layers/mod.rs):
//!   observe.rs     request id, access log, per-call metrics; errors → trailers-only gRPC
//!   deadline.rs    grpc-timeout capped by policy, forwarded as time left, DEADLINE_EXCEEDED
//!   auth.rs        bearer tokens and JWT → identity → grants (polarway-access), checked against
//!                  the method and dataset, then forwarded to the worker; Flight's Handshake
//!   body_key.rs    the dataset named in a small request body must be the one x-polarway-key names
//!   ratelimit.rs   quotas per identity (and method) → RESOURCE_EXHAUSTED
//!   inflight.rs    calls in progress per identity; response streams nobody reads are ended
//!   retry.rs       idempotent calls retried on another worker, small bodies, budget
//!   route.rs       the worker a call goes to (sticky on x-polarway-key)
//! server.rs      run(): listeners, TLS, HTTP/2 settings, background tasks, drain
//! main.rs        flags → run()
//! ```
//!
//! # The path of a request
//! A TCP connection is accepted (TLS handshake if configured) and served by hyper as HTTP/2.
//! `grpc.health.v1` calls are answered by the gateway itself. Every other call goes down the path:
//! observe (request id, timer) → deadline → auth (identity, permission) → rate limit → in flight →
//! retry (buffers small idempotent requests) → route (picks the worker) → proxy (sends it).
//! The worker's response streams back up unbuffered; its trailers carry the status, which the
//! observe layer records. A layer that refuses a call returns a `GatewayError`, which the observe
//! layer turns into a trailers-only gRPC response (HTTP 200 with `grpc-status` and `grpc-message`).

pub mod backends;
pub mod call;
pub mod config;
pub mod error;
pub mod health;
pub mod layers;
pub mod metrics;
pub mod proxy;
pub mod quota;
pub mod server;
pub mod tls;

pub use server::run;
