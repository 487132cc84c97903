//! Policy files (`policies/*.toml`): identities with static tokens, JWT issuers, roles granting
//! methods and dataset-name patterns, rate-limit quotas, deadline caps and backends.
//!
//! A file is parsed and compiled as a whole: any error (unknown field, bad glob, unreadable key,
//! role that does not exist...) refuses the file and the policy in force stays. [`PolicyHandle`]
//! holds the current policy; [`watch`] reloads it on SIGHUP and when the file (or a JWKS file it
//! names) changes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::auth::JwtIssuer;
use crate::error::GatewayError;
use crate::ratelimit::RateLimits;
use crate::route::Strategy;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

// ---- the file format -------------------------------------------------------------------------

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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingFile {
    /// Worker URLs (`http://host:port` or `https://...`), added to the `--backend` flags.
    #[serde(default)]
    pub backends: Vec<String>,
    /// `hash` (default) or `round-robin`; the `--routing` flag wins when given.
    pub strategy: Option<Strategy>,
}

#[derive(Debug, Default, Deserialize)]
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
    /// Accepted `aud` values (the token must carry one); empty: `aud` not checked.
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

// ---- the compiled policy ---------------------------------------------------------------------

/// Who is calling, once authenticated.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub roles: Vec<String>,
    /// Whether the name identifies a caller (a token or a JWT subject), so routing may hash on it.
    pub authenticated: bool,
    /// From a JWT: one of an unbounded set of names (rate-limit memory treats these apart).
    pub dynamic: bool,
    pub rate: Option<RateFile>,
}

#[derive(Debug)]
pub struct Role {
    methods: Vec<String>,
    datasets: Vec<String>,
}

/// Calls that never name a dataset.
const DATASETLESS: &[&str] = &["Health", "CacheStats", "List"];

impl Role {
    fn grants_method(&self, method: &str) -> bool {
        self.methods.iter().any(|m| m == "*" || m == method)
    }

    fn grants_dataset(&self, method: &str, key: Option<&str>) -> bool {
        match key {
            Some(key) => self.datasets.iter().any(|p| glob_match(p, key)),
            // Without a routing key the gateway cannot tell which dataset a call touches: only
            // dataset-less calls, or roles over every dataset, may go on.
            None => DATASETLESS.contains(&method) || !method_is_polarway(method) || self.datasets.iter().any(|p| p == "*"),
        }
    }
}

fn method_is_polarway(method: &str) -> bool {
    !method.contains('/')
}

pub struct Policy {
    pub path: Option<PathBuf>,
    pub backends: Vec<String>,
    pub strategy: Option<Strategy>,
    /// SHA-256 of each static token: tokens are never kept or compared in clear.
    tokens: HashMap<[u8; 32], Arc<Identity>>,
    pub anonymous: Option<Arc<Identity>>,
    pub issuers: Vec<JwtIssuer>,
    roles: HashMap<String, Role>,
    pub max_deadline: Option<Duration>,
    pub rate: RateLimits,
    /// Files whose change triggers a reload (the policy and its JWKS files).
    pub watched: Vec<PathBuf>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("path", &self.path)
            .field("identities", &self.tokens.len())
            .field("issuers", &self.issuers.len())
            .field("roles", &self.roles.keys().collect::<Vec<_>>())
            .finish()
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl Policy {
    /// A policy that lets every call through unauthenticated (no `--policy` given).
    pub fn open() -> Self {
        let file: PolicyFile = toml::from_str("[auth]\nanonymous_roles = [\"all\"]\n[roles.all]\nmethods = [\"*\"]\ndatasets = [\"*\"]\n")
            .expect("built-in policy");
        Self::compile(file, None).expect("built-in policy")
    }

    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read { path: path.into(), source })?;
        let file: PolicyFile = toml::from_str(&text).map_err(|e| PolicyError::Parse { path: path.into(), message: e.to_string() })?;
        Self::compile(file, Some(path)).map_err(|e| PolicyError::Parse { path: path.into(), message: e.to_string() })
    }

    pub fn compile(file: PolicyFile, path: Option<&Path>) -> Result<Self, PolicyError> {
        let base = path.and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
        let mut roles = HashMap::new();
        for (name, role) in file.roles {
            if role.methods.is_empty() {
                return Err(PolicyError::Invalid(format!("role {name:?} grants no method")));
            }
            for p in &role.datasets {
                if p.is_empty() {
                    return Err(PolicyError::Invalid(format!("role {name:?} has an empty dataset pattern")));
                }
            }
            roles.insert(name, Role { methods: role.methods, datasets: role.datasets });
        }
        let check_roles = |who: &str, list: &[String]| -> Result<(), PolicyError> {
            match list.iter().find(|r| !roles.contains_key(*r)) {
                Some(r) => Err(PolicyError::Invalid(format!("{who} names unknown role {r:?}"))),
                None => Ok(()),
            }
        };
        let check_rate = |who: &str, rate: &Option<RateFile>| -> Result<(), PolicyError> {
            match rate {
                Some(r) if !(r.per_second > 0.0 && r.burst > 0) => {
                    Err(PolicyError::Invalid(format!("{who}: rate needs per_second > 0 and burst > 0")))
                }
                _ => Ok(()),
            }
        };

        let mut tokens = HashMap::new();
        for id in file.identities {
            check_roles(&format!("identity {:?}", id.name), &id.roles)?;
            check_rate(&format!("identity {:?}", id.name), &id.rate)?;
            let hash = match (&id.token, &id.token_sha256, &id.token_env) {
                (Some(t), None, None) => sha256(t.as_bytes()),
                (None, Some(h), None) => parse_sha256(h)
                    .ok_or_else(|| PolicyError::Invalid(format!("identity {:?}: token_sha256 is not 64 hex digits", id.name)))?,
                (None, None, Some(var)) => match std::env::var(var) {
                    Ok(t) if !t.is_empty() => sha256(t.as_bytes()),
                    _ => {
                        tracing::warn!(identity = %id.name, "environment variable {var} is not set: identity disabled");
                        continue;
                    }
                },
                _ => {
                    return Err(PolicyError::Invalid(format!("identity {:?} needs exactly one of token, token_sha256, token_env", id.name)))
                }
            };
            let identity = Identity { name: id.name.clone(), roles: id.roles, authenticated: true, dynamic: false, rate: id.rate };
            if tokens.insert(hash, Arc::new(identity)).is_some() {
                return Err(PolicyError::Invalid(format!("identity {:?} reuses another identity's token", id.name)));
            }
        }

        check_roles("auth.anonymous_roles", &file.auth.anonymous_roles)?;
        let anonymous = (!file.auth.anonymous_roles.is_empty()).then(|| {
            Arc::new(Identity {
                name: "anonymous".into(),
                roles: file.auth.anonymous_roles,
                authenticated: false,
                dynamic: false,
                rate: None,
            })
        });

        let mut watched: Vec<PathBuf> = path.map(|p| vec![p.to_path_buf()]).unwrap_or_default();
        let mut issuers = Vec::new();
        for jwt in file.jwt {
            check_roles(&format!("jwt issuer {:?}", jwt.issuer), &jwt.default_roles)?;
            if let Some(f) = &jwt.jwks_file {
                watched.push(base.join(f));
            }
            issuers.push(JwtIssuer::compile(jwt, &base).map_err(PolicyError::Invalid)?);
        }

        check_rate("limits.rate", &file.limits.rate)?;
        for (m, r) in &file.limits.methods {
            check_rate(&format!("limits.methods.{m}"), &Some(*r))?;
        }
        let max_deadline = match file.limits.max_deadline_secs {
            Some(s) if s > 0.0 && s.is_finite() => Some(Duration::from_secs_f64(s)),
            Some(_) => return Err(PolicyError::Invalid("limits.max_deadline_secs must be > 0".into())),
            None => None,
        };
        let rate = RateLimits::new(file.limits.rate, &file.limits.methods, file.limits.max_rate_keys.unwrap_or(100_000));

        Ok(Self {
            path: path.map(Path::to_path_buf),
            backends: file.routing.backends,
            strategy: file.routing.strategy,
            tokens,
            anonymous,
            issuers,
            roles,
            max_deadline,
            rate,
            watched,
        })
    }

    /// The identity holding this static token, if any.
    pub fn token_identity(&self, token: &str) -> Option<Arc<Identity>> {
        self.tokens.get(&sha256(token.as_bytes())).cloned()
    }

    /// May `identity` call `method` on dataset `key`? The error says which part is missing.
    pub fn authorize(&self, identity: &Identity, method: &str, key: Option<&str>) -> Result<(), GatewayError> {
        let roles: Vec<&Role> = identity.roles.iter().filter_map(|r| self.roles.get(r)).collect();
        let granting: Vec<&&Role> = roles.iter().filter(|r| r.grants_method(method)).collect();
        if granting.is_empty() {
            return Err(GatewayError::PermissionDenied(format!("{} may not call {method}", identity.name)));
        }
        if granting.iter().any(|r| r.grants_dataset(method, key)) {
            return Ok(());
        }
        Err(GatewayError::PermissionDenied(match key {
            Some(k) => format!("{} may not call {method} on dataset {k:?}", identity.name),
            None => format!("{} may call {method} only with an x-polarway-key naming a dataset it may use", identity.name),
        }))
    }
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Glob with `*` (any run) and `?` (one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

// ---- the policy in force and its reloading ---------------------------------------------------

/// The policy in force; cheap to clone, read once per call.
#[derive(Clone)]
pub struct PolicyHandle(Arc<watch::Sender<Arc<Policy>>>);

impl PolicyHandle {
    pub fn new(policy: Policy) -> Self {
        Self(Arc::new(watch::Sender::new(Arc::new(policy))))
    }

    pub fn current(&self) -> Arc<Policy> {
        self.0.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Policy>> {
        self.0.subscribe()
    }

    /// Load the file again; on error keep the policy in force and say why.
    pub fn reload(&self) -> Result<(), PolicyError> {
        let Some(path) = self.current().path.clone() else { return Ok(()) };
        match Policy::load(&path) {
            Ok(p) => {
                tracing::info!(policy = %path.display(), "policy reloaded");
                self.0.send_replace(Arc::new(p));
                Ok(())
            }
            Err(e) => {
                tracing::error!(policy = %path.display(), "policy refused, the previous one stays in force: {e}");
                Err(e)
            }
        }
    }
}

/// Reload on SIGHUP and when a watched file (the policy, its JWKS files) changes.
pub async fn watch(handle: PolicyHandle, poll: Duration, metrics: crate::metrics::Metrics) {
    let watched = handle.clone();
    crate::reload::on_change("policy", poll, Duration::ZERO, move || watched.current().watched.clone(), move || {
        metrics.policy_reload(handle.reload().is_ok())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("trades_*", "trades_20260203"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("a?c*", "abcdef"));
        assert!(!glob_match("trades_*", "quotes_1"));
        assert!(!glob_match("trades_?", "trades_12"));
    }

    #[test]
    fn roles_grant_methods_and_datasets() {
        let file: PolicyFile = toml::from_str(
            r#"
            [[identity]]
            name = "ann"
            token = "t-ann"
            roles = ["analyst"]
            [roles.analyst]
            methods = ["Load", "Query", "List"]
            datasets = ["trades_*"]
            "#,
        )
        .unwrap();
        let p = Policy::compile(file, None).unwrap();
        let ann = p.token_identity("t-ann").unwrap();
        assert!(p.token_identity("nope").is_none());
        assert!(p.authorize(&ann, "Load", Some("trades_1")).is_ok());
        assert!(p.authorize(&ann, "List", None).is_ok());
        assert!(p.authorize(&ann, "Load", Some("quotes_1")).is_err());
        assert!(p.authorize(&ann, "Load", None).is_err());
        assert!(p.authorize(&ann, "Store", Some("trades_1")).is_err());
    }

    #[test]
    fn shipped_policies_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        for f in ["default.toml", "roles.example.toml"] {
            Policy::load(&dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }

    #[test]
    fn bad_files_are_refused() {
        for bad in [
            "[roles.a]\nmethods = []",
            "[[identity]]\nname = \"x\"\ntoken = \"t\"\nroles = [\"missing\"]",
            "[[identity]]\nname = \"x\"\nroles = []",
            "unknown_key = 1",
        ] {
            let parsed = toml::from_str::<PolicyFile>(bad);
            assert!(parsed.is_err() || Policy::compile(parsed.unwrap(), None).is_err(), "{bad}");
        }
    }
}
