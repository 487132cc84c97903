//! Flight tickets and prepared-statement handles, self-contained and signed.
//!
//! A ticket carries everything needed to serve it: the SQL and its bound parameters (or the
//! dataset and version a PATH descriptor named), the dataset versions resolved when the plan was
//! made, who it was issued to and when it expires. It is signed (HMAC-SHA256) with a key the
//! workers share, so GetFlightInfo on one worker and DoGet on another return the same snapshot,
//! and a ticket changed in any byte, expired, or presented by another caller is refused.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::sql::reads::Snapshot;

/// How long a ticket from GetFlightInfo may be redeemed.
pub const TICKET_TTL: Duration = Duration::from_secs(3600);
/// How long a prepared statement's handle stays usable (no server state is kept meanwhile).
pub const HANDLE_TTL: Duration = Duration::from_secs(24 * 3600);

/// Marks our tickets (and their format version).
const MAGIC: &[u8] = b"pw1";
const MAC_LEN: usize = 32;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum What {
    /// A SQL query, with its parameters (one row, Arrow IPC stream bytes, base64).
    Sql {
        sql: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        params: Option<String>,
    },
    /// A dataset version (a PATH descriptor, or a `polarway.v1.LoadRequest` command), and the
    /// columns wanted (all when empty).
    Load {
        name: String,
        version: u64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        columns: Vec<String>,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub what: What,
    /// The dataset versions to read (empty in a prepared statement's handle: each execution
    /// resolves its own).
    #[serde(default, skip_serializing_if = "Snapshot::is_empty")]
    pub snapshot: Snapshot,
    /// Who it was issued to.
    pub who: String,
    /// Unix seconds after which it is refused.
    pub exp: u64,
    /// Names the running query, for CancelFlightInfo.
    pub id: String,
}

impl Claims {
    pub fn new(what: What, snapshot: Snapshot, who: &str, ttl: Duration) -> Self {
        Self {
            what,
            snapshot,
            who: who.to_string(),
            exp: (now() + ttl).as_secs(),
            id: uuid::Uuid::new_v4().simple().to_string(),
        }
    }
}

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Seals and opens tickets with one key.
pub struct Signer {
    key: Vec<u8>,
}

impl Signer {
    /// The key: `secret` when given (`--ticket-key`), else derived from the worker's auth token
    /// (workers behind one gateway share it), else random (tickets then work on this process only).
    pub fn new(secret: Option<&str>, auth_token: Option<&str>) -> Self {
        use sha2::Digest;
        let key = match (secret.filter(|s| !s.is_empty()), auth_token) {
            (Some(s), _) => Sha256::digest(format!("polarway tickets\0{s}")).to_vec(),
            (None, Some(t)) => Sha256::digest(format!("polarway tickets from token\0{t}")).to_vec(),
            (None, None) => uuid::Uuid::new_v4()
                .as_bytes()
                .iter()
                .chain(uuid::Uuid::new_v4().as_bytes())
                .copied()
                .collect(),
        };
        Self { key }
    }

    fn mac(&self, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(MAGIC);
        mac.update(body);
        mac
    }

    pub fn seal(&self, claims: &Claims) -> Bytes {
        let body = serde_json::to_vec(claims).expect("claims serialize");
        let tag = self.mac(&body).finalize().into_bytes();
        let mut out = Vec::with_capacity(MAGIC.len() + body.len() + MAC_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&body);
        out.extend_from_slice(&tag);
        out.into()
    }

    /// The claims of a ticket this worker (or one sharing its key) sealed, if unexpired and issued
    /// to `who`.
    pub fn open(&self, ticket: &[u8], who: &str) -> Result<Claims> {
        let invalid = || {
            Error::InvalidArgument(
                "the ticket or handle is not one this service issued, or was altered; get a new one (GetFlightInfo, CreatePreparedStatement)".into(),
            )
        };
        let rest = ticket.strip_prefix(MAGIC).ok_or_else(invalid)?;
        if rest.len() < MAC_LEN {
            return Err(invalid());
        }
        let (body, tag) = rest.split_at(rest.len() - MAC_LEN);
        self.mac(body).verify_slice(tag).map_err(|_| invalid())?;
        let claims: Claims = serde_json::from_slice(body).map_err(|_| invalid())?;
        if claims.exp < now().as_secs() {
            return Err(Error::InvalidArgument(
                "the ticket or handle has expired; get a new one (GetFlightInfo, CreatePreparedStatement)".into(),
            ));
        }
        if claims.who != who {
            return Err(Error::denied(
                "ticket",
                "the ticket or handle was issued to another caller",
            ));
        }
        Ok(claims)
    }
}

/// Parameter bytes as a claim holds them.
pub fn encode_params(ipc: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ipc)
}

pub fn decode_params(text: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| Error::internal("reading a handle's parameters", "not base64"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(who: &str, ttl: Duration) -> Claims {
        Claims::new(
            What::Sql {
                sql: "SELECT 1".into(),
                params: None,
            },
            Snapshot::from([("t".to_string(), 3)]),
            who,
            ttl,
        )
    }

    #[test]
    fn round_trip_and_refusals() {
        let signer = Signer::new(Some("k"), None);
        let c = claims("alice", TICKET_TTL);
        let sealed = signer.seal(&c);
        assert_eq!(signer.open(&sealed, "alice").unwrap(), c);
        // Another caller, another key, any changed byte, a truncated ticket: refused.
        assert!(matches!(
            signer.open(&sealed, "bob"),
            Err(Error::PermissionDenied { .. })
        ));
        assert!(Signer::new(Some("other"), None)
            .open(&sealed, "alice")
            .is_err());
        for i in 0..sealed.len() {
            let mut bad = sealed.to_vec();
            bad[i] ^= 1;
            assert!(signer.open(&bad, "alice").is_err(), "byte {i}");
        }
        assert!(signer.open(&sealed[..10], "alice").is_err());
        assert!(signer.open(b"", "alice").is_err());
        // Workers that share the key (or the auth token) accept each other's tickets.
        let (a, b) = (Signer::new(None, Some("t")), Signer::new(None, Some("t")));
        assert!(b.open(&a.seal(&c), "alice").is_ok());
        assert!(Signer::new(None, None)
            .open(&Signer::new(None, None).seal(&c), "alice")
            .is_err());
    }

    #[test]
    fn expired() {
        let signer = Signer::new(Some("k"), None);
        let mut c = claims("alice", TICKET_TTL);
        c.exp = now().as_secs() - 1;
        let err = signer.open(&signer.seal(&c), "alice").unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
    }
}
