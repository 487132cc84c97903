//! Who may do what, decided the same way by the worker (`polarway server --policy`) and the gateway.
//!
//! ```text
//! file.rs     the policy file format (TOML): identities, JWT issuers, roles, limits, routing
//! policy.rs   the compiled policy: who a caller is (static token, JWT, anonymous) and its grants
//! jwt.rs      JWT issuers: keys (inline, files, JWKS documents or URLs) and token verification
//! grants.rs   what a caller may do (methods × dataset patterns), and the header that carries
//!             it from the gateway to the worker that touches the data
//! handle.rs   the policy in force, reloaded on SIGHUP and when its files change
//! reload.rs   the SIGHUP / changed-file trigger (the gateway's TLS reload uses it too)
//! ```
//!
//! The gateway authenticates a call, checks the method and the dataset it names, and forwards the
//! caller's grants in `x-polarway-grants`. The worker enforces those grants wherever data is
//! touched (every dataset a call names, every dataset a query reads). Grants received in that
//! header only ever narrow what the sender may do, so a caller that forges the header gains
//! nothing: see `Access`.

pub mod file;
pub mod grants;
pub mod handle;
pub mod jwt;
pub mod policy;
pub mod reload;

pub use file::{PolicyFile, RateFile, Strategy};
pub use grants::{glob_match, Access, Grants, Rule, GRANTS_HEADER};
pub use handle::PolicyHandle;
pub use jwt::JwksCache;
pub use policy::{Identity, Policy, PolicyError};

/// Choose the JWT library's crypto backend (RustCrypto) once per process, before the first token
/// is verified.
pub fn install_jwt_crypto() {
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
}

/// Why a call is refused. The gateway and the worker map these to UNAUTHENTICATED and
/// PERMISSION_DENIED.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
}

/// The methods that write a dataset: a role needs one of them (or `*`) to change data, and
/// `Query` with `into` needs `Store` on its target.
pub const WRITE_METHODS: &[&str] = &["Store", "StoreBatch", "Delete"];

/// Calls that never name a dataset: granting the method is enough.
pub const DATASETLESS_METHODS: &[&str] = &["Health", "CacheStats", "List"];

/// The Arrow Flight service's methods, by their full names (`FLIGHT_SERVICE` + `DoGet`).
pub const FLIGHT_SERVICE: &str = "arrow.flight.protocol.FlightService/";

/// What a Flight call may amount to on a worker, which decides by its command (a SQL query is a
/// Query, a PATH DoGet a Load, an ingest a Store, GetTables a List): a gateway lets a Flight call
/// through when the caller may use one of these, and the worker enforces the one it is.
pub const FLIGHT_AMOUNTS_TO: &[&str] = &["Query", "Load", "List", "Store", "Describe"];

pub fn is_flight_method(method: &str) -> bool {
    method.starts_with(FLIGHT_SERVICE)
}

/// Methods of the `polarway.v1.Polarway` service, by their short names (`Load`); everything else
/// is named `package.Service/Method`.
pub fn is_polarway_method(method: &str) -> bool {
    !method.contains('/')
}
