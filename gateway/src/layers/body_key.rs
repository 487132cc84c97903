//! Routing-key honesty. The gateway authorizes and routes on `x-polarway-key`, while the worker
//! acts on the dataset named in the request body; the two must agree. For calls whose first
//! message names a dataset (Load, Describe, Delete, Query with `into`, and the first header of
//! Store and StoreBatch) that message is read here when it is small, and:
//! - the caller must be allowed to use the body's dataset (PERMISSION_DENIED otherwise);
//! - without a key, the body's dataset becomes the key, so plain gRPC tools are routed by what
//!   they actually touch;
//! - with a different key, the call is refused with INVALID_ARGUMENT.
//!
//! The rest of the body streams on untouched. Workers check every name again (StoreBatch's later
//! headers, larger messages), so this keeps routing honest rather than being the only wall.

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request};
use http_body_util::BodyExt;
use polarway_proto::v1 as pb;
use prost::Message;
use tonic::body::Body;

use crate::call::routing_key;
use crate::error::GatewayError;

/// Largest first message read for the check (requests that name a dataset are tiny).
pub const MAX_PEEK: usize = 64 * 1024;

const NAMING_METHODS: &[&str] = &["Load", "Describe", "Delete", "Query", "Store", "StoreBatch"];

/// Check (or set) `x-polarway-key` against the dataset the body names. `allowed(name)` says
/// whether the caller may use `name` as this call does.
pub async fn reconcile(
    req: Request<Body>,
    method: &str,
    allowed: impl Fn(&str) -> Result<(), GatewayError>,
) -> Result<Request<Body>, GatewayError> {
    if !NAMING_METHODS.contains(&method) {
        return Ok(req);
    }
    let (mut parts, body) = req.into_parts();
    let (head, rest) = read_first_message(body).await?;
    let named = first_message_dataset(method, &head);
    let body = match rest {
        None => Body::new(http_body_util::Full::new(head)),
        Some(rest) => {
            let head = futures::stream::once(async move {
                Ok::<_, tonic::Status>(http_body::Frame::data(head))
            });
            let chained = futures::StreamExt::chain(head, http_body_util::BodyStream::new(rest));
            Body::new(http_body_util::StreamBody::new(chained))
        }
    };
    if let Some(name) = named {
        allowed(&name)?;
        match routing_key(&parts.headers) {
            Some(key) if key == name => {}
            None => {
                if let Ok(v) = HeaderValue::from_str(&name) {
                    parts.headers.insert(polarway_proto::ROUTING_KEY_HEADER, v);
                }
            }
            Some(key) => {
                return Err(GatewayError::InvalidArgument(format!(
                    "x-polarway-key {key:?} does not match the dataset the request names ({name:?}); send the dataset's name as the key"
                )));
            }
        }
    }
    Ok(Request::from_parts(parts, body))
}

/// Read until the first gRPC message is complete (or more than `MAX_PEEK` bytes, or the end).
/// Returns what was read and, unless the body ended, the rest of it.
async fn read_first_message(mut body: Body) -> Result<(Bytes, Option<Body>), GatewayError> {
    let mut buf = BytesMut::new();
    loop {
        if buf.len() >= 5 {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if buf.len() >= 5 + len || buf.len() > MAX_PEEK + 5 {
                return Ok((buf.freeze(), Some(body)));
            }
        }
        match body.frame().await {
            None => return Ok((buf.freeze(), None)),
            Some(Err(e)) => {
                return Err(GatewayError::InvalidArgument(format!("request body: {e}")))
            }
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    buf.extend_from_slice(data);
                }
            }
        }
    }
}

/// The dataset a call's first message names, if it is complete, uncompressed and decodes.
fn first_message_dataset(method: &str, framed: &[u8]) -> Option<String> {
    if framed.len() < 5 || framed[0] != 0 {
        return None;
    }
    let len = u32::from_be_bytes([framed[1], framed[2], framed[3], framed[4]]) as usize;
    let msg = framed.get(5..5 + len)?;
    let name = match method {
        "Load" => pb::LoadRequest::decode(msg).ok()?.name,
        "Describe" => pb::DescribeRequest::decode(msg).ok()?.name,
        "Delete" => pb::DeleteRequest::decode(msg).ok()?.name,
        "Query" => pb::QueryRequest::decode(msg).ok()?.into?,
        "Store" | "StoreBatch" => match pb::StoreRequest::decode(msg).ok()?.msg? {
            pb::store_request::Msg::Header(h) => h.name,
            pb::store_request::Msg::Ipc(_) => return None,
        },
        _ => return None,
    };
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(msg: impl Message) -> Vec<u8> {
        let bytes = msg.encode_to_vec();
        let mut f = vec![0];
        f.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        f.extend_from_slice(&bytes);
        f
    }

    #[test]
    fn names_in_first_messages() {
        let load = framed(pb::LoadRequest {
            name: "bob_x".into(),
            ..Default::default()
        });
        assert_eq!(
            first_message_dataset("Load", &load).as_deref(),
            Some("bob_x")
        );
        let q = framed(pb::QueryRequest {
            sql: "SELECT 1".into(),
            into: Some("out".into()),
        });
        assert_eq!(first_message_dataset("Query", &q).as_deref(), Some("out"));
        let q = framed(pb::QueryRequest {
            sql: "SELECT 1".into(),
            into: None,
        });
        assert_eq!(first_message_dataset("Query", &q), None);
        let store = framed(pb::StoreRequest {
            msg: Some(pb::store_request::Msg::Header(pb::StoreHeader {
                name: "bob_y".into(),
                condition: None,
            })),
        });
        assert_eq!(
            first_message_dataset("StoreBatch", &store).as_deref(),
            Some("bob_y")
        );
        assert_eq!(
            first_message_dataset("Load", &load[..load.len() - 1]),
            None,
            "incomplete"
        );
        let mut compressed = load.clone();
        compressed[0] = 1;
        assert_eq!(first_message_dataset("Load", &compressed), None);
    }
}
