//! gRPC responses framed beneath tonic's codec, for Flight's DoGet.
//! tonic encodes every response message into a buffer of its own, which would copy each Arrow
//! body once more; here a message whose bulk is one bytes field goes out as the pieces that field
//! is made of (Arrow's own buffers), which HTTP/2 sends as they are. Everything else about the call
//! (admission, errors, trailers) stays as tonic would do it.

use std::convert::Infallible;
use std::future::Future;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use http_body::Frame;
use http_body_util::BodyExt;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::Status;

/// A tonic service with one method (`path`) answered by `handler` beneath tonic's codec; every
/// other method goes to `inner`, as tonic serves it.
#[derive(Clone)]
pub struct Intercept<S, H> {
    pub inner: S,
    pub path: &'static str,
    pub handler: H,
}

impl<S: NamedService, H> NamedService for Intercept<S, H> {
    const NAME: &'static str = S::NAME;
}

impl<S, H, F> tower::Service<http::Request<Body>> for Intercept<S, H>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    H: Fn(http::Request<Body>) -> F,
    F: Future<Output = Result<http::Response<Body>, Status>> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() != self.path {
            let mut inner = self.inner.clone();
            return Box::pin(async move { inner.call(req).await });
        }
        let answer = (self.handler)(req);
        Box::pin(async move { Ok(answer.await.unwrap_or_else(|s| s.into_http())) })
    }
}

/// A unary request of a bulk stream is small (a Ticket).
const MAX_REQUEST_BYTES: usize = 1 << 20;

/// One response message: its other fields, encoded, and one bytes field made of `pieces`.
pub struct Message {
    pub head: Bytes,
    pub field: u32,
    pub pieces: Vec<Bytes>,
}

impl Message {
    /// The bytes of the pieces.
    pub fn pieces_len(&self) -> usize {
        self.pieces.iter().map(Bytes::len).sum()
    }
}

/// The request message of a unary-request call, read whole from its body.
pub async fn read_request<M: prost::Message + Default>(
    body: Body,
    what: &str,
) -> Result<M, Status> {
    let bytes = http_body_util::Limited::new(body, MAX_REQUEST_BYTES)
        .collect()
        .await
        .map_err(|e| Status::invalid_argument(format!("reading the {what} request: {e}")))?
        .to_bytes();
    match bytes.as_ref() {
        [0, len @ ..] if len.len() >= 4 => {
            let n = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let message = len.get(4..).filter(|m| m.len() == n).ok_or_else(|| {
                Status::invalid_argument(format!("{what} takes exactly one request message"))
            })?;
            M::decode(message)
                .map_err(|e| Status::invalid_argument(format!("not a {what} request: {e}")))
        }
        _ => Err(Status::invalid_argument(format!(
            "{what} takes one uncompressed request message"
        ))),
    }
}

/// A streaming response: each message's frames, then trailers with the final status (an error
/// ends the stream).
pub fn response<S>(messages: S) -> http::Response<Body>
where
    S: Stream<Item = Result<Message, Status>> + Send + Unpin + 'static,
{
    let frames = futures::stream::unfold(Some(messages), |state| async move {
        let mut messages = state?;
        Some(match messages.next().await {
            Some(Ok(m)) => (frames(m), Some(messages)),
            Some(Err(status)) => (vec![trailers(&status)], None),
            None => (vec![trailers(&Status::ok(""))], None),
        })
    })
    .flat_map(|frames| futures::stream::iter(frames.into_iter().map(Ok::<_, Status>)));
    let mut response = http::Response::new(Body::new(http_body_util::StreamBody::new(frames)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// Pieces shorter than this (IPC headers, padding) are copied together rather than sent as frames
/// of their own.
const SMALL_PIECE: usize = 16 * 1024;

/// One message as gRPC frames: the length prefix, the head and the field's key, then the field's
/// pieces: large ones as they are, runs of small ones copied into one frame.
fn frames(m: Message) -> Vec<Frame<Bytes>> {
    let len = m.pieces_len();
    let mut key = BytesMut::new();
    if len > 0 {
        prost::encoding::encode_key(
            m.field,
            prost::encoding::WireType::LengthDelimited,
            &mut key,
        );
        prost::encoding::encode_varint(len as u64, &mut key);
    }
    let mut small = BytesMut::with_capacity(5 + m.head.len() + key.len() + 256);
    small.put_u8(0);
    small.put_u32((m.head.len() + key.len() + len) as u32);
    small.extend_from_slice(&m.head);
    small.extend_from_slice(&key);
    let mut out = Vec::new();
    for piece in m.pieces {
        if piece.len() < SMALL_PIECE {
            small.extend_from_slice(&piece);
            continue;
        }
        if !small.is_empty() {
            out.push(Frame::data(small.split().freeze()));
        }
        out.push(Frame::data(piece));
    }
    if !small.is_empty() {
        out.push(Frame::data(small.freeze()));
    }
    out
}

fn trailers(status: &Status) -> Frame<Bytes> {
    let mut headers = http::HeaderMap::new();
    if status.add_header(&mut headers).is_err() {
        headers.insert("grpc-status", http::HeaderValue::from_static("13"));
    }
    Frame::trailers(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_flight::FlightData;
    use prost::Message as _;

    fn wire(m: Message) -> Vec<u8> {
        frames(m)
            .into_iter()
            .flat_map(|f| f.into_data().unwrap().to_vec())
            .collect()
    }

    #[test]
    fn frames_decode_as_the_message() {
        let data = FlightData {
            data_header: Bytes::from_static(b"header"),
            app_metadata: Bytes::from_static(b"meta"),
            ..Default::default()
        };
        let m = Message {
            head: data.encode_to_vec().into(),
            field: 1000,
            pieces: vec![
                Bytes::from(vec![7u8; 300]),
                Bytes::new(),
                Bytes::from(vec![8u8; 40_000]),
                Bytes::from_static(b"ab"),
            ],
        };
        let bytes = wire(m);
        assert_eq!(bytes[0], 0);
        let n = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
        assert_eq!(n, bytes.len() - 5);
        let back = FlightData::decode(&bytes[5..]).unwrap();
        assert_eq!(back.data_header, data.data_header);
        assert_eq!(back.app_metadata, data.app_metadata);
        let mut body = vec![7u8; 300];
        body.extend(vec![8u8; 40_000]);
        body.extend(b"ab");
        assert_eq!(back.data_body.as_ref(), &body[..]);
        // No pieces: no field at all.
        let empty = Message {
            head: data.encode_to_vec().into(),
            field: 1000,
            pieces: vec![],
        };
        assert_eq!(FlightData::decode(&wire(empty)[5..]).unwrap(), data);
    }
}
