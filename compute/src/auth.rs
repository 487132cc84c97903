//! Who is calling a worker, and what the call may do (an `Access`, enforced by every service
//! where it touches data).
//!
//! - No `--auth-token` and no `--policy`: every caller may do everything.
//! - `--auth-token` (POLARWAY_AUTH_TOKEN): the holder of that token (the gateway, or a single
//!   trusted user) may do everything; other callers are refused.
//! - `--policy` (POLARWAY_POLICY): the gateway's policy file format; callers authenticate with its
//!   static tokens or JWTs and get the grants of their roles. The auth token, if also set, still
//!   marks the gateway.
//!
//! Whatever the mode, grants forwarded in `x-polarway-grants` (the gateway sends the caller's)
//! narrow the call further. They never widen it, so a caller forging the header gains nothing.

use polarway_access::{
    policy::bearer, Access, AccessError, Grants, JwksCache, PolicyHandle, GRANTS_HEADER,
};
use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;
use tonic::Status;

#[derive(Clone, Default)]
pub struct Authenticator {
    token: Option<String>,
    policy: Option<PolicyHandle>,
    /// Keys fetched from the policy's JWKS URLs, kept across policy reloads.
    jwks: Arc<JwksCache>,
}

fn status(e: AccessError) -> Status {
    match e {
        AccessError::Unauthenticated(m) => Status::unauthenticated(m),
        AccessError::PermissionDenied(m) => Status::permission_denied(m),
    }
}

impl Authenticator {
    pub fn new(token: Option<String>, policy: Option<PolicyHandle>) -> Self {
        Self {
            token: token.filter(|t| !t.is_empty()),
            policy,
            jwks: Default::default(),
        }
    }

    /// The policy in force, if the worker enforces one.
    pub fn policy(&self) -> Option<&PolicyHandle> {
        self.policy.as_ref()
    }

    /// Whether callers must authenticate.
    pub fn enabled(&self) -> bool {
        self.token.is_some() || self.policy.is_some()
    }

    /// What a call with this metadata may do, or why it is refused.
    pub async fn access(&self, md: &MetadataMap) -> Result<Access, Status> {
        let base = self.base(md).await?;
        match md.get(GRANTS_HEADER) {
            None => Ok(base),
            Some(v) => {
                let text = v.to_str().map_err(|_| {
                    Status::invalid_argument(format!("{GRANTS_HEADER} is not ASCII"))
                })?;
                let grants = Grants::decode(text).map_err(Status::invalid_argument)?;
                Ok(base.narrowed(grants))
            }
        }
    }

    async fn base(&self, md: &MetadataMap) -> Result<Access, Status> {
        let Some(header) = md.get("authorization") else {
            return match (&self.policy, &self.token) {
                (Some(policy), _) => {
                    let policy = policy.current();
                    let anonymous = policy.anonymous.clone().ok_or_else(|| {
                        Status::unauthenticated(
                            "missing credentials: send the header `authorization: Bearer <token>`",
                        )
                    })?;
                    Ok(Access::of(policy.grants(&anonymous)))
                }
                (None, Some(_)) => Err(Status::unauthenticated(
                    "missing credentials: send the header `authorization: Bearer <token>`",
                )),
                (None, None) => Ok(Access::everything()),
            };
        };
        if !self.enabled() {
            return Ok(Access::everything());
        }
        let value = http::HeaderValue::from_bytes(header.as_bytes())
            .map_err(|_| Status::unauthenticated("malformed authorization header"))?;
        let presented = bearer(&value).map_err(status)?;
        let presented = presented.as_str();
        if self
            .token
            .as_deref()
            .is_some_and(|t| bool::from(presented.as_bytes().ct_eq(t.as_bytes())))
        {
            return Ok(Access::everything());
        }
        let Some(policy) = &self.policy else {
            return Err(Status::unauthenticated("invalid token"));
        };
        let policy = policy.current();
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value);
        let identity = policy
            .authenticate(&headers, &self.jwks)
            .await
            .map_err(status)?;
        Ok(Access::of(policy.grants(&identity)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polarway_access::{Policy, PolicyFile};

    fn md(auth: Option<&str>, grants: Option<&Grants>) -> MetadataMap {
        let mut m = MetadataMap::new();
        if let Some(v) = auth {
            m.insert("authorization", v.parse().unwrap());
        }
        if let Some(g) = grants {
            m.insert(GRANTS_HEADER, g.encode().parse().unwrap());
        }
        m
    }

    #[tokio::test]
    async fn bearer_token() {
        let auth = Authenticator::new(Some("s3cret".into()), None);
        assert!(auth
            .access(&md(Some("Bearer s3cret"), None))
            .await
            .unwrap()
            .allows("Delete", "x"));
        for bad in [
            None,
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("s3cret"),
            Some("Bearer "),
        ] {
            assert_eq!(
                auth.access(&md(bad, None)).await.unwrap_err().code(),
                tonic::Code::Unauthenticated,
                "{bad:?}"
            );
        }
        assert!(Authenticator::default()
            .access(&md(None, None))
            .await
            .unwrap()
            .allows("Delete", "x"));
    }

    #[tokio::test]
    async fn forwarded_grants_narrow() {
        let alice = Grants {
            identity: "alice".into(),
            rules: vec![polarway_access::Rule {
                methods: vec!["Load".into()],
                datasets: vec!["alice_*".into()],
            }],
        };
        let auth = Authenticator::new(Some("gw".into()), None);
        let a = auth
            .access(&md(Some("Bearer gw"), Some(&alice)))
            .await
            .unwrap();
        assert!(a.allows("Load", "alice_1") && !a.allows("Load", "bob_1") && !a.may_call("Delete"));
        // An open worker applies them too: they can only take away.
        let a = Authenticator::default()
            .access(&md(None, Some(&alice)))
            .await
            .unwrap();
        assert!(!a.allows("Load", "bob_1"));
    }

    #[tokio::test]
    async fn policy_identities() {
        let file: PolicyFile = toml::from_str(
            "[[identity]]\nname = \"bob\"\ntoken = \"t-bob\"\nroles = [\"bob\"]\n[roles.bob]\nmethods = [\"*\"]\ndatasets = [\"bob_*\"]\n",
        )
        .unwrap();
        let auth = Authenticator::new(
            Some("gw".into()),
            Some(PolicyHandle::new(Policy::compile(file, None).unwrap())),
        );
        let bob = auth.access(&md(Some("Bearer t-bob"), None)).await.unwrap();
        assert!(bob.allows("Delete", "bob_1") && !bob.allows("Load", "alice_1"));
        // Bob forging everything in the header still gets bob's grants only.
        let forged = auth
            .access(&md(
                Some("Bearer t-bob"),
                Some(&Grants::everything("admin")),
            ))
            .await
            .unwrap();
        assert!(!forged.allows("Load", "alice_1"));
        assert!(auth
            .access(&md(Some("Bearer gw"), None))
            .await
            .unwrap()
            .allows("Load", "alice_1"));
        assert_eq!(
            auth.access(&md(Some("Bearer nope"), None))
                .await
                .unwrap_err()
                .code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            auth.access(&md(None, None)).await.unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }
}
