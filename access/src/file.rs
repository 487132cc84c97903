//! The policy file format (TOML). Unknown fields are errors, so a typo never silently drops a
//! rule. The worker reads the same files as the gateway and uses the parts that concern it
//! (identities, JWT issuers, roles); `routing` and `limits` are the gateway's.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// How the gateway picks a worker for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Rendezvous hashing on `x-polarway-key`, then the identity, then round robin.
    Hash,
    /// Every call to the next worker (for comparison; caches stay cold).
    RoundRobin,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default)]
    pub routing: RoutingFile,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub auth: AuthFile,
    #[serde(default, rename = "identity")]
    pub identities: Vec<IdentityFile>,
    #[serde(default)]
    pub jwt: Vec<JwtIssuerFile>,
    #[serde(default)]
    pub roles: BTreeMap<String, RoleFile>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingFile {
    /// Worker URLs (`http://host:port` or `https://...`), added to the `--backend` flags.
    #[serde(default)]
    pub backends: Vec<String>,
    /// `hash` (default) or `round-robin`; the `--routing` flag wins when given.
    pub strategy: Option<Strategy>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Default quota per identity (none: unlimited).
    pub rate: Option<RateFile>,
    /// Extra quota per identity and method, e.g. `[limits.methods.Store]`.
    #[serde(default)]
    pub methods: BTreeMap<String, RateFile>,
    /// Longest deadline a call may have; longer or absent `grpc-timeout`s are cut to it.
    pub max_deadline_secs: Option<f64>,
    /// Most keys a rate limiter remembers (default 100 000); beyond, new keys share one bucket.
    pub max_rate_keys: Option<usize>,
    /// Calls one identity may have in progress at once (default 256); more get RESOURCE_EXHAUSTED.
    pub max_in_flight: Option<usize>,
    /// Calls all the JWT subjects of one issuer may have in progress at once (default: four times
    /// `max_in_flight`), so an issuer cannot multiply the bound by minting subjects.
    pub max_in_flight_per_issuer: Option<usize>,
    /// Seconds a response stream may wait for its caller to read before the gateway ends it
    /// (default 60), so an unread stream cannot hold a worker's request slot until its deadline.
    pub stall_timeout_secs: Option<f64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateFile {
    pub per_second: f64,
    pub burst: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    /// Roles of calls without a token. Empty (the default): a token is required.
    #[serde(default)]
    pub anonymous_roles: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityFile {
    pub name: String,
    /// The token in clear (prefer `token_sha256` or `token_env`).
    pub token: Option<String>,
    /// Hex SHA-256 of the token: `printf %s "$TOKEN" | sha256sum`.
    pub token_sha256: Option<String>,
    /// Name of an environment variable holding the token; the identity is skipped when unset.
    pub token_env: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// This identity's own quota instead of `limits.rate`.
    pub rate: Option<RateFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtIssuerFile {
    /// Expected `iss`.
    pub issuer: String,
    /// Accepted `aud` values: a token must carry one of them. Empty: `aud` is not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Accepted algorithms: HS256, RS256, ES256 (and their 384/512 variants).
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf` (default 30 s).
    pub leeway_secs: Option<u64>,
    #[serde(default)]
    pub keys: Vec<JwtKeyFile>,
    /// A JWKS document on disk (reloaded when it changes).
    pub jwks_file: Option<PathBuf>,
    /// A JWKS URL, cached for `jwks_refresh_secs` (default 300) and fetched again on an unknown `kid`.
    pub jwks_url: Option<String>,
    pub jwks_refresh_secs: Option<u64>,
    /// Claim listing the caller's roles (default `roles`).
    pub roles_claim: Option<String>,
    /// Roles every token of this issuer has.
    #[serde(default)]
    pub default_roles: Vec<String>,
    /// Roles a token of this issuer may claim in `roles_claim`; claimed roles outside this list
    /// are ignored. Default: the issuer's `default_roles` (claims add nothing), so one issuer can
    /// never mint roles meant for another's users.
    pub allowed_roles: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyFile {
    pub kid: Option<String>,
    pub alg: String,
    /// HMAC secret (HS*), in clear.
    pub secret: Option<String>,
    /// Environment variable holding the HMAC secret.
    pub secret_env: Option<String>,
    /// Public key PEM (RS*/ES*), inline.
    pub public_key_pem: Option<String>,
    /// Public key PEM file, relative to the policy file.
    pub public_key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleFile {
    /// Method names (`Load`, `Query`, ...) or `*`.
    pub methods: Vec<String>,
    /// Dataset-name globs (`trades_*`) or `*`.
    #[serde(default)]
    pub datasets: Vec<String>,
}
