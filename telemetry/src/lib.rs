//! What the worker (`polarway server`) and the gateway (`polarway-gateway`) share for operations:
//!
//! - `grpc.rs`: the per-call gRPC metrics both export under the same names
//!   (`polarway_grpc_requests_total`, `polarway_grpc_request_duration_seconds`, ...), and a tower
//!   layer that records them from the HTTP/2 exchange without decoding payloads.
//! - `endpoint.rs`: the Prometheus `/metrics` endpoint.
//! - `health.rs`: the `health` subcommand of both binaries (a grpc.health.v1 check for Docker's
//!   HEALTHCHECK and scripts).

pub mod endpoint;
pub mod grpc;
pub mod health;

pub use grpc::{
    code_name, header_status, method_label, rpc_name, Call, GrpcMetrics, GrpcMetricsLayer,
};
