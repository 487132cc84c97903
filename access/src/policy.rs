//! The compiled policy: who a caller is and what it may do.
//!
//! A file is parsed and compiled as a whole: any error (unknown field, bad glob, unreadable key,
//! role that does not exist...) refuses the file, and on a reload the policy in force stays.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::file::{LimitsFile, PolicyFile, RateFile, Strategy};
use crate::grants::{Grants, Rule};
use crate::jwt::{JwksCache, JwtIssuer};
use crate::AccessError;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// Who is calling, once authenticated.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub roles: Vec<String>,
    /// Whether the name identifies a caller (a token or a JWT subject), so routing may hash on it.
    pub authenticated: bool,
    /// From a JWT: one of an unbounded set of names (rate-limit memory treats these apart).
    pub dynamic: bool,
    /// The JWT issuer that vouched for this identity.
    pub issuer: Option<String>,
    pub rate: Option<RateFile>,
}

pub struct Policy {
    pub path: Option<PathBuf>,
    /// The gateway's `routing` section.
    pub backends: Vec<String>,
    pub strategy: Option<Strategy>,
    /// The gateway's `limits` section, as written (the gateway owns the limiters).
    pub limits: LimitsFile,
    pub max_deadline: Option<Duration>,
    /// SHA-256 of each static token: tokens are never kept or compared in clear.
    tokens: HashMap<[u8; 32], Arc<Identity>>,
    pub anonymous: Option<Arc<Identity>>,
    pub issuers: Vec<JwtIssuer>,
    roles: HashMap<String, Rule>,
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
    /// A policy that lets every call through unauthenticated (a gateway without `--policy`).
    pub fn open() -> Self {
        let file: PolicyFile =
            toml::from_str("[auth]\nanonymous_roles = [\"all\"]\n[roles.all]\nmethods = [\"*\"]\ndatasets = [\"*\"]\n")
                .expect("built-in policy");
        Self::compile(file, None).expect("built-in policy")
    }

    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.into(),
            source,
        })?;
        let file: PolicyFile = toml::from_str(&text).map_err(|e| PolicyError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        Self::compile(file, Some(path)).map_err(|e| PolicyError::Parse {
            path: path.into(),
            message: e.to_string(),
        })
    }

    pub fn compile(file: PolicyFile, path: Option<&Path>) -> Result<Self, PolicyError> {
        let base = path
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut roles = HashMap::new();
        for (name, role) in file.roles {
            if role.methods.is_empty() {
                return Err(PolicyError::Invalid(format!(
                    "role {name:?} grants no method"
                )));
            }
            if role.datasets.iter().any(String::is_empty) {
                return Err(PolicyError::Invalid(format!(
                    "role {name:?} has an empty dataset pattern"
                )));
            }
            roles.insert(
                name,
                Rule {
                    methods: role.methods,
                    datasets: role.datasets,
                },
            );
        }
        fn check_roles<'a>(
            roles: &HashMap<String, Rule>,
            who: &str,
            mut list: impl Iterator<Item = &'a String>,
        ) -> Result<(), PolicyError> {
            match list.find(|r| !roles.contains_key(*r)) {
                Some(r) => Err(PolicyError::Invalid(format!(
                    "{who} names unknown role {r:?}"
                ))),
                None => Ok(()),
            }
        }
        let check_rate = |who: &str, rate: &Option<RateFile>| -> Result<(), PolicyError> {
            match rate {
                Some(r) if !(r.per_second > 0.0 && r.burst > 0) => Err(PolicyError::Invalid(
                    format!("{who}: rate needs per_second > 0 and burst > 0"),
                )),
                _ => Ok(()),
            }
        };

        let mut tokens = HashMap::new();
        for id in file.identities {
            check_roles(&roles, &format!("identity {:?}", id.name), id.roles.iter())?;
            check_rate(&format!("identity {:?}", id.name), &id.rate)?;
            let hash = match (&id.token, &id.token_sha256, &id.token_env) {
                (Some(t), None, None) => sha256(t.as_bytes()),
                (None, Some(h), None) => parse_sha256(h).ok_or_else(|| {
                    PolicyError::Invalid(format!(
                        "identity {:?}: token_sha256 is not 64 hex digits",
                        id.name
                    ))
                })?,
                (None, None, Some(var)) => match std::env::var(var) {
                    Ok(t) if !t.is_empty() => sha256(t.as_bytes()),
                    _ => {
                        tracing::warn!(identity = %id.name, "environment variable {var} is not set: identity disabled");
                        continue;
                    }
                },
                _ => {
                    return Err(PolicyError::Invalid(format!(
                        "identity {:?} needs exactly one of token, token_sha256, token_env",
                        id.name
                    )))
                }
            };
            let identity = Identity {
                name: id.name.clone(),
                roles: id.roles,
                authenticated: true,
                dynamic: false,
                issuer: None,
                rate: id.rate,
            };
            if tokens.insert(hash, Arc::new(identity)).is_some() {
                return Err(PolicyError::Invalid(format!(
                    "identity {:?} reuses another identity's token",
                    id.name
                )));
            }
        }

        check_roles(
            &roles,
            "auth.anonymous_roles",
            file.auth.anonymous_roles.iter(),
        )?;
        let anonymous = (!file.auth.anonymous_roles.is_empty()).then(|| {
            Arc::new(Identity {
                name: "anonymous".into(),
                roles: file.auth.anonymous_roles,
                authenticated: false,
                dynamic: false,
                issuer: None,
                rate: None,
            })
        });

        let mut watched: Vec<PathBuf> = path.map(|p| vec![p.to_path_buf()]).unwrap_or_default();
        let mut issuers: Vec<JwtIssuer> = Vec::new();
        for jwt in file.jwt {
            if issuers.iter().any(|i| i.issuer == jwt.issuer) {
                return Err(PolicyError::Invalid(format!(
                    "jwt issuer {:?} is listed twice",
                    jwt.issuer
                )));
            }
            if let Some(f) = &jwt.jwks_file {
                watched.push(base.join(f));
            }
            let issuer = JwtIssuer::compile(jwt, &base).map_err(PolicyError::Invalid)?;
            check_roles(
                &roles,
                &format!("jwt issuer {:?}", issuer.issuer),
                issuer.role_names(),
            )?;
            issuers.push(issuer);
        }

        check_rate("limits.rate", &file.limits.rate)?;
        for (m, r) in &file.limits.methods {
            check_rate(&format!("limits.methods.{m}"), &Some(*r))?;
        }
        let max_deadline = match file.limits.max_deadline_secs {
            Some(s) if s > 0.0 && s.is_finite() => Some(Duration::from_secs_f64(s)),
            Some(_) => {
                return Err(PolicyError::Invalid(
                    "limits.max_deadline_secs must be > 0".into(),
                ))
            }
            None => None,
        };
        if file.limits.max_in_flight == Some(0) || file.limits.max_in_flight_per_issuer == Some(0) {
            return Err(PolicyError::Invalid(
                "limits.max_in_flight and max_in_flight_per_issuer must be at least 1".into(),
            ));
        }
        if file
            .limits
            .stall_timeout_secs
            .is_some_and(|s| !(s > 0.0 && s <= 86_400.0))
        {
            return Err(PolicyError::Invalid(
                "limits.stall_timeout_secs must be > 0 and at most 86400 (a day)".into(),
            ));
        }

        Ok(Self {
            path: path.map(Path::to_path_buf),
            backends: file.routing.backends,
            strategy: file.routing.strategy,
            limits: file.limits,
            max_deadline,
            tokens,
            anonymous,
            issuers,
            roles,
            watched,
        })
    }

    /// The identity holding this static token, if any.
    pub fn token_identity(&self, token: &str) -> Option<Arc<Identity>> {
        self.tokens.get(&sha256(token.as_bytes())).cloned()
    }

    /// Who sends a request with these headers: a static token, a JWT of a trusted issuer (its keys
    /// from the policy, or fetched into `jwks`), or the anonymous identity when there is no
    /// `authorization` header and the policy allows it.
    pub async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        jwks: &JwksCache,
    ) -> Result<Arc<Identity>, AccessError> {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return self.anonymous.clone().ok_or_else(|| {
                AccessError::Unauthenticated(
                    "missing authorization: send `authorization: Bearer <token>`".into(),
                )
            });
        };
        let token = bearer(value)?;
        let token = token.as_str();
        if let Some(id) = self.token_identity(token) {
            return Ok(id);
        }
        if token.matches('.').count() == 2 && !self.issuers.is_empty() {
            let unauth = |e: jsonwebtoken::errors::Error| {
                AccessError::Unauthenticated(format!("invalid token: {e}"))
            };
            let header = jsonwebtoken::decode_header(token).map_err(unauth)?;
            // Only to pick the issuer whose keys then verify the token.
            let claims: serde_json::Value =
                jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(unauth)?;
            let iss = claims
                .get("iss")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            let issuer = self
                .issuers
                .iter()
                .find(|i| i.issuer == iss)
                .ok_or_else(|| {
                    AccessError::Unauthenticated(format!("wrong issuer: {iss:?} is not trusted"))
                })?;
            return issuer.verify(token, &header, jwks).await.map(Arc::new);
        }
        Err(AccessError::Unauthenticated(
            "unknown token (with a user name and password, the password must be the token)".into(),
        ))
    }

    /// The union of the identity's roles.
    pub fn grants(&self, identity: &Identity) -> Grants {
        Grants {
            identity: identity.name.clone(),
            rules: identity
                .roles
                .iter()
                .filter_map(|r| self.roles.get(r))
                .cloned()
                .collect(),
        }
    }
}

/// The token an `authorization` header presents: `Bearer <token>`, or `Basic` credentials whose
/// password is the token (the user name is ignored), as Flight SQL clients (ADBC, JDBC) send a
/// user name and password. Base64 with or without padding.
pub fn bearer(value: &http::HeaderValue) -> Result<String, AccessError> {
    let malformed = || {
        AccessError::Unauthenticated(
            "malformed authorization header: use `Bearer <token>` (or Basic with the token as the password)".into(),
        )
    };
    let text = value.to_str().map_err(|_| malformed())?;
    let (scheme, rest) = text.split_once(' ').ok_or_else(malformed)?;
    let token = if scheme.eq_ignore_ascii_case("bearer") {
        rest.trim().to_string()
    } else if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine as _;
        let lenient = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let decoded = lenient.decode(rest.trim()).map_err(|_| malformed())?;
        let pair = String::from_utf8(decoded).map_err(|_| malformed())?;
        let (_user, password) = pair.split_once(':').ok_or_else(malformed)?;
        password.to_string()
    } else {
        return Err(malformed());
    };
    match token.is_empty() {
        true => Err(malformed()),
        false => Ok(token),
    }
}

fn parse_sha256(digits: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(digits.trim(), &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_credentials() {
        let token = |v: &str| bearer(&http::HeaderValue::from_str(v).unwrap());
        assert_eq!(token("Bearer t-1").unwrap(), "t-1");
        assert_eq!(token("bearer  t-1 ").unwrap(), "t-1");
        // "alice:t-1", padded and not; the user name is ignored, the password is the token.
        assert_eq!(token("Basic YWxpY2U6dC0x").unwrap(), "t-1");
        assert_eq!(token("Basic YWxpY2U6dDox").unwrap(), "t:1");
        assert_eq!(token("Basic YTp0LTE=").unwrap(), "t-1");
        assert_eq!(token("Basic YTp0LTE").unwrap(), "t-1");
        for bad in [
            "t-1",
            "Bearer ",
            "Basic",
            "Basic !!!",
            "Basic YWxpY2U=",
            "Basic YTo=",
            "Digest x",
        ] {
            assert!(token(bad).is_err(), "{bad}");
        }
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
        let g = p.grants(&ann);
        assert!(g.allows("Load", "trades_1"));
        assert!(g.may_call("List"));
        assert!(!g.allows("Load", "quotes_1"));
        assert!(!g.allows("Store", "trades_1"));
    }

    #[test]
    fn shipped_policies_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "toml") {
                Policy::load(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            }
        }
    }

    #[test]
    fn bad_files_are_refused() {
        for bad in [
            "[roles.a]\nmethods = []",
            "[[identity]]\nname = \"x\"\ntoken = \"t\"\nroles = [\"missing\"]",
            "[[identity]]\nname = \"x\"\nroles = []",
            "unknown_key = 1",
            "[[jwt]]\nissuer = \"i\"\nalgorithms = [\"HS256\"]\nallowed_roles = [\"nope\"]",
            "[[jwt]]\nissuer = \"i\"\nalgorithms = [\"HS256\"]\n[[jwt]]\nissuer = \"i\"\nalgorithms = [\"HS256\"]",
            "[limits]\nmax_in_flight = 0",
            "[limits]\nstall_timeout_secs = -1",
            "[limits]\nstall_timeout_secs = 1e20",
        ] {
            let parsed = toml::from_str::<PolicyFile>(bad);
            assert!(parsed.is_err() || Policy::compile(parsed.unwrap(), None).is_err(), "{bad}");
        }
    }
}
