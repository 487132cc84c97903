//! What the layers of the request path tell each other about one call. Every type a layer puts in
//! a request's (or response's) extensions is defined here, so that layers depend on this module
//! and never on each other:
//!
//! | extension            | set by          | read by                    |
//! |----------------------|-----------------|----------------------------|
//! | `Arc<CallInfo>`      | observe         | auth, route (fill it in)   |
//! | `Deadline`           | deadline        | proxy (forwards time left) |
//! | `Arc<Identity>`      | auth            | rate limit, in flight, route |
//! | `Tried`              | retry           | route (skips those workers) |
//! | `Arc<Endpoint>`      | route; proxy on the response | proxy; retry (which worker failed) |

use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use http::{Request, Response};
use tonic::body::Body;
use tower::util::BoxCloneSyncService;

use crate::error::GatewayError;

pub use polarway_access::Identity;
pub use polarway_telemetry::rpc_name;

/// The service type between layers.
pub type HttpService = BoxCloneSyncService<Request<Body>, Response<Body>, GatewayError>;

/// The dataset a call names (`x-polarway-key`), if any.
pub fn routing_key(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(polarway_proto::ROUTING_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
}

/// What later layers learn about a call, for its access-log line.
#[derive(Debug, Default)]
pub struct CallInfo {
    identity: OnceLock<String>,
    backend: Mutex<Option<String>>,
}

impl CallInfo {
    pub fn set_identity(&self, name: &str) {
        let _ = self.identity.set(name.to_string());
    }

    pub fn set_backend(&self, addr: &str) {
        *self.backend.lock().unwrap_or_else(|e| e.into_inner()) = Some(addr.to_string());
    }

    pub fn identity(&self) -> &str {
        self.identity.get().map(String::as_str).unwrap_or("-")
    }

    pub fn backend(&self) -> String {
        let backend = self.backend.lock().unwrap_or_else(|e| e.into_inner());
        backend.clone().unwrap_or_else(|| "-".into())
    }
}

/// When the call must be over.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub Instant);

/// Workers already tried by this call, by address (the route layer skips them).
#[derive(Debug, Clone, Default)]
pub struct Tried(pub Vec<String>);
