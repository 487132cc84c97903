//! JWT issuers. The `iss` claim picks the issuer from the policy; the token's `alg` must be one
//! the issuer accepts *and* the algorithm of the key its `kid` names, so `alg: none` (not an
//! algorithm here) and algorithm confusion (an HS256 token "signed" with an RSA public key) are
//! refused. `exp` is required; `exp`, `nbf`, `iss` and `aud` are checked with a small leeway, and
//! `aud` is required when the issuer lists audiences. A token's roles are the issuer's default
//! roles plus the claimed roles the issuer is allowed to grant.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::file::JwtIssuerFile;
use crate::policy::Identity;
use crate::AccessError;

#[derive(Clone)]
struct JwtKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Where an issuer publishes its keys, and how long fetched keys are trusted.
struct RemoteJwks {
    url: String,
    refresh: Duration,
}

/// Keys fetched from JWKS URLs, by URL: the runtime state of whoever verifies tokens (the gateway's
/// auth layer, the worker's authenticator), kept across policy reloads; the policy only names the
/// URLs. Keys are fetched again after the issuer's refresh period or (at most every 30 s) when a
/// token names an unknown `kid`: that is how key rotation is picked up.
#[derive(Default)]
pub struct JwksCache {
    /// One entry per URL a policy has named (a bounded set).
    urls: std::sync::Mutex<std::collections::HashMap<String, Arc<CachedKeys>>>,
}

type CachedKeys = tokio::sync::Mutex<Option<(Instant, Arc<Vec<JwtKey>>)>>;

const MISS_REFETCH: Duration = Duration::from_secs(30);

pub struct JwtIssuer {
    pub issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    keys: Vec<JwtKey>,
    remote: Option<RemoteJwks>,
    roles_claim: String,
    default_roles: Vec<String>,
    allowed_roles: Vec<String>,
}

fn jwk_key(jwk: &Jwk) -> Option<JwtKey> {
    let key = DecodingKey::from_jwk(jwk).ok()?;
    let alg = match &jwk.common.key_algorithm {
        Some(a) => Algorithm::from_str(&format!("{a:?}")).ok()?,
        None => match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            AlgorithmParameters::OctetKey(_) => Algorithm::HS256,
            _ => return None,
        },
    };
    Some(JwtKey {
        kid: jwk.common.key_id.clone(),
        alg,
        key,
    })
}

fn jwks_keys(text: &str) -> Result<Vec<JwtKey>, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("invalid JWKS: {e}"))?;
    Ok(set.keys.iter().filter_map(jwk_key).collect())
}

impl JwtIssuer {
    pub fn compile(file: JwtIssuerFile, base: &Path) -> Result<Self, String> {
        let who = format!("jwt issuer {:?}", file.issuer);
        let algorithms = file
            .algorithms
            .iter()
            .map(|a| Algorithm::from_str(a).map_err(|_| format!("{who}: unknown algorithm {a:?}")))
            .collect::<Result<Vec<_>, _>>()?;
        if algorithms.is_empty() {
            return Err(format!("{who}: list the accepted algorithms"));
        }
        let mut keys = Vec::new();
        for k in file.keys {
            let alg = Algorithm::from_str(&k.alg)
                .map_err(|_| format!("{who}: unknown key algorithm {:?}", k.alg))?;
            let pem = match (&k.public_key_pem, &k.public_key_file) {
                (Some(p), None) => Some(p.clone().into_bytes()),
                (None, Some(f)) => Some(
                    std::fs::read(base.join(f))
                        .map_err(|e| format!("{who}: cannot read {}: {e}", f.display()))?,
                ),
                (None, None) => None,
                _ => {
                    return Err(format!(
                        "{who}: give public_key_pem or public_key_file, not both"
                    ))
                }
            };
            let secret = match (&k.secret, &k.secret_env) {
                (Some(s), None) => Some(s.clone()),
                (None, Some(var)) => match std::env::var(var) {
                    Ok(v) if !v.is_empty() => Some(v),
                    _ => {
                        tracing::warn!("{who}: {var} is not set: key {:?} disabled", k.kid);
                        continue;
                    }
                },
                (None, None) => None,
                _ => return Err(format!("{who}: give secret or secret_env, not both")),
            };
            let key = match (alg.family(), pem, secret) {
                (jsonwebtoken::AlgorithmFamily::Hmac, None, Some(s)) => {
                    DecodingKey::from_secret(s.as_bytes())
                }
                (jsonwebtoken::AlgorithmFamily::Rsa, Some(p), None) => {
                    DecodingKey::from_rsa_pem(&p)
                        .map_err(|e| format!("{who}: bad RSA public key: {e}"))?
                }
                (jsonwebtoken::AlgorithmFamily::Ec, Some(p), None) => DecodingKey::from_ec_pem(&p)
                    .map_err(|e| format!("{who}: bad EC public key: {e}"))?,
                (jsonwebtoken::AlgorithmFamily::Hmac, ..) => {
                    return Err(format!("{who}: an {} key needs a secret (only)", k.alg))
                }
                _ => return Err(format!("{who}: a {} key needs a public key (only)", k.alg)),
            };
            keys.push(JwtKey {
                kid: k.kid,
                alg,
                key,
            });
        }
        let has_jwks_file = file.jwks_file.is_some();
        if let Some(f) = &file.jwks_file {
            let path = base.join(f);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("{who}: cannot read {}: {e}", path.display()))?;
            keys.extend(jwks_keys(&text).map_err(|e| format!("{who}: {}: {e}", path.display()))?);
        }
        let remote = file.jwks_url.map(|url| RemoteJwks {
            url,
            refresh: Duration::from_secs(file.jwks_refresh_secs.unwrap_or(300)),
        });
        if keys.is_empty() && remote.is_none() && !has_jwks_file {
            tracing::warn!("{who}: no usable key: its tokens will be refused");
        }
        Ok(Self {
            issuer: file.issuer,
            audiences: file.audiences,
            algorithms,
            leeway: file.leeway_secs.unwrap_or(30),
            keys,
            remote,
            roles_claim: file.roles_claim.unwrap_or_else(|| "roles".into()),
            allowed_roles: file
                .allowed_roles
                .unwrap_or_else(|| file.default_roles.clone()),
            default_roles: file.default_roles,
        })
    }

    /// Keys that may verify a token with this `kid` and `alg`.
    async fn keys_for(&self, kid: Option<&str>, alg: Algorithm, jwks: &JwksCache) -> Vec<JwtKey> {
        let pick = |keys: &[JwtKey]| -> Vec<JwtKey> {
            keys.iter()
                .filter(|k| k.alg == alg && (kid.is_none() || k.kid.as_deref() == kid))
                .cloned()
                .collect()
        };
        let mut found = pick(&self.keys);
        if found.is_empty() {
            if let Some(remote) = &self.remote {
                found = pick(&jwks.keys(remote, kid).await);
            }
        }
        found
    }

    pub async fn verify(
        &self,
        token: &str,
        header: &jsonwebtoken::Header,
        jwks: &JwksCache,
    ) -> Result<Identity, AccessError> {
        let unauth = |m: String| AccessError::Unauthenticated(m);
        if !self.algorithms.contains(&header.alg) {
            return Err(unauth(format!(
                "algorithm {:?} is not accepted for issuer {}",
                header.alg, self.issuer
            )));
        }
        let keys = self.keys_for(header.kid.as_deref(), header.alg, jwks).await;
        if keys.is_empty() {
            return Err(unauth(format!(
                "no {:?} key{} for issuer {}",
                header.alg,
                header
                    .kid
                    .as_ref()
                    .map(|k| format!(" with kid {k:?}"))
                    .unwrap_or_default(),
                self.issuer
            )));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        if self.audiences.is_empty() {
            validation.set_required_spec_claims(&["exp", "iss"]);
            validation.validate_aud = false;
        } else {
            // Listing audiences means a token must name one: a token without `aud` was meant for
            // any service of the issuer, not specifically for this one.
            validation.set_required_spec_claims(&["exp", "iss", "aud"]);
            validation.set_audience(&self.audiences);
        }
        let mut last = None;
        for k in &keys {
            match jsonwebtoken::decode::<serde_json::Value>(token, &k.key, &validation) {
                Ok(data) => return Ok(self.identity(&data.claims)),
                Err(e) => last = Some(e),
            }
        }
        let reason = match last.as_ref().map(|e| e.kind()) {
            Some(ErrorKind::ExpiredSignature) => "token expired".to_string(),
            Some(ErrorKind::ImmatureSignature) => "token not yet valid (nbf)".to_string(),
            Some(ErrorKind::InvalidIssuer) => "wrong issuer".to_string(),
            Some(ErrorKind::InvalidAudience) => "wrong audience".to_string(),
            Some(ErrorKind::InvalidSignature) => "bad signature".to_string(),
            Some(ErrorKind::MissingRequiredClaim(c)) => format!("token lacks the {c} claim"),
            Some(k) => format!("invalid token: {k:?}"),
            None => "invalid token".to_string(),
        };
        Err(unauth(reason))
    }

    fn identity(&self, claims: &serde_json::Value) -> Identity {
        let sub = claims.get("sub").and_then(|s| s.as_str()).unwrap_or("-");
        let mut claimed: Vec<&str> = match claims.get(&self.roles_claim) {
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|r| r.as_str()).collect(),
            Some(serde_json::Value::String(s)) => s.split_whitespace().collect(),
            _ => vec![],
        };
        claimed.retain(|r| self.allowed_roles.iter().any(|a| a == r));
        let mut roles = self.default_roles.clone();
        for r in claimed {
            if !roles.iter().any(|have| have == r) {
                roles.push(r.to_string());
            }
        }
        // Named with the issuer (both quoted, so no two (issuer, subject) pairs share a name):
        // users of different issuers never share a rate bucket or a routing hash.
        Identity {
            name: format!("jwt:{:?}:{sub:?}", self.issuer),
            roles,
            authenticated: true,
            dynamic: true,
            issuer: Some(self.issuer.clone()),
            rate: None,
        }
    }

    /// The roles this issuer's tokens may hold (default and allowed), for the policy's checks.
    pub fn role_names(&self) -> impl Iterator<Item = &String> {
        self.default_roles.iter().chain(self.allowed_roles.iter())
    }
}

impl JwksCache {
    async fn keys(&self, remote: &RemoteJwks, kid: Option<&str>) -> Arc<Vec<JwtKey>> {
        let entry = {
            let mut urls = self.urls.lock().unwrap_or_else(|e| e.into_inner());
            urls.entry(remote.url.clone()).or_default().clone()
        };
        let mut cached = entry.lock().await;
        let stale = match &*cached {
            None => true,
            Some((at, keys)) => {
                let unknown =
                    kid.is_some_and(|kid| !keys.iter().any(|k| k.kid.as_deref() == Some(kid)));
                at.elapsed() > remote.refresh || (unknown && at.elapsed() > MISS_REFETCH)
            }
        };
        if stale {
            match fetch(&remote.url).await.and_then(|t| jwks_keys(&t)) {
                Ok(keys) => *cached = Some((Instant::now(), Arc::new(keys))),
                Err(e) => {
                    tracing::warn!(url = %remote.url, "cannot fetch JWKS: {e}");
                    // Keep serving the keys we have; try again after MISS_REFETCH.
                    let keys = cached.as_ref().map(|(_, k)| k.clone()).unwrap_or_default();
                    let back = remote.refresh.saturating_sub(MISS_REFETCH);
                    let at = Instant::now()
                        .checked_sub(back)
                        .unwrap_or_else(Instant::now);
                    *cached = Some((at, keys));
                }
            }
        }
        cached.as_ref().map(|(_, k)| k.clone()).unwrap_or_default()
    }
}

/// GET a small document over HTTP(S) (JWKS).
async fn fetch(url: &str) -> Result<String, String> {
    use http_body_util::{BodyExt, Empty, Limited};
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Empty<bytes::Bytes>>(connector);
    let uri: http::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.get(uri))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let body = Limited::new(resp.into_body(), 1 << 20)
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    String::from_utf8(body.to_bytes().to_vec()).map_err(|e| e.to_string())
}
