//! Static bearer-token auth for a standalone worker (POLARWAY_AUTH_TOKEN). Behind the gateway,
//! the gateway does identity and policy; this token then only proves a caller is the gateway.

use tonic::metadata::MetadataMap;
use tonic::Status;

#[derive(Clone, Default)]
pub struct TokenAuth {
    token: Option<String>,
}

impl TokenAuth {
    pub fn new(token: Option<String>) -> Self {
        Self { token: token.filter(|t| !t.is_empty()) }
    }

    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }

    pub fn check(&self, md: &MetadataMap) -> Result<(), Status> {
        let Some(expected) = &self.token else { return Ok(()) };
        let header = md.get("authorization").and_then(|v| v.to_str().ok()).ok_or_else(|| {
            Status::unauthenticated("missing credentials: send the header `authorization: Bearer <token>`")
        })?;
        let presented = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| Status::unauthenticated("malformed authorization header: use `Bearer <token>`"))?;
        if !constant_time_eq(presented.trim().as_bytes(), expected.as_bytes()) {
            return Err(Status::unauthenticated("invalid token"));
        }
        Ok(())
    }
}

/// Compare without an early exit, so timing does not reveal how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= (a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff)) as usize;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(v: Option<&str>) -> MetadataMap {
        let mut m = MetadataMap::new();
        if let Some(v) = v {
            m.insert("authorization", v.parse().unwrap());
        }
        m
    }

    #[test]
    fn checks_bearer_token() {
        let auth = TokenAuth::new(Some("s3cret".into()));
        assert!(auth.check(&md(Some("Bearer s3cret"))).is_ok());
        for bad in [None, Some("Bearer s3cre"), Some("Bearer s3cret2"), Some("s3cret"), Some("Bearer ")] {
            assert_eq!(auth.check(&md(bad)).unwrap_err().code(), tonic::Code::Unauthenticated, "{bad:?}");
        }
        assert!(TokenAuth::new(None).check(&md(None)).is_ok());
    }
}
