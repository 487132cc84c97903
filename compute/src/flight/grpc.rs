//! DoGet served beneath tonic's codec. tonic encodes each response message into its own buffer,
//! which would copy every Arrow body once more; here each Flight data message goes out as a gRPC
//! frame whose body is the IPC encoder's buffer itself, handed to HTTP/2 as it is (HTTP/2 sends
//! large data without copying it again). Every other Flight call goes through tonic as usual.

use std::convert::Infallible;
use std::task::{Context, Poll};

use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::{Any, TicketStatementQuery};
use arrow_flight::Ticket;
use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use http_body::Frame;
use http_body_util::BodyExt;
use prost::Message;
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;
use tonic::Status;

use super::encode::Wire;
use super::{Flight, Stream_};

type WireStream = Stream_<Wire>;

const DO_GET: &str = "/arrow.flight.protocol.FlightService/DoGet";
/// A DoGet request is one small Ticket message.
const MAX_REQUEST_BYTES: usize = 1 << 20;
/// FlightData's `data_body` field.
const DATA_BODY_FIELD: u32 = 1000;

/// The Flight service as tonic serves it, with DoGet answered by `do_get` below.
#[derive(Clone)]
pub struct FlightGrpc {
    server: FlightServiceServer<Flight>,
    flight: Flight,
}

impl FlightGrpc {
    pub fn new(server: FlightServiceServer<Flight>, flight: Flight) -> Self {
        Self { server, flight }
    }
}

impl NamedService for FlightGrpc {
    const NAME: &'static str = <FlightServiceServer<Flight> as NamedService>::NAME;
}

impl tower::Service<http::Request<Body>> for FlightGrpc {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() != DO_GET {
            let mut server = self.server.clone();
            return Box::pin(async move { server.call(req).await });
        }
        let flight = self.flight.clone();
        Box::pin(async move { Ok(do_get(flight, req).await.unwrap_or_else(|s| s.into_http())) })
    }
}

async fn do_get(flight: Flight, req: http::Request<Body>) -> Result<http::Response<Body>, Status> {
    let (parts, body) = req.into_parts();
    let bytes = http_body_util::Limited::new(body, MAX_REQUEST_BYTES)
        .collect()
        .await
        .map_err(|e| Status::invalid_argument(format!("reading the DoGet request: {e}")))?
        .to_bytes();
    let ticket = match bytes.as_ref() {
        [0, len @ ..] if len.len() >= 4 => {
            let n = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let message = len.get(4..).filter(|m| m.len() == n).ok_or_else(|| {
                Status::invalid_argument("DoGet takes exactly one Ticket message")
            })?;
            Ticket::decode(message)
                .map_err(|e| Status::invalid_argument(format!("not a Ticket: {e}")))?
        }
        _ => {
            return Err(Status::invalid_argument(
                "DoGet takes one uncompressed Ticket message",
            ))
        }
    };
    let metadata = MetadataMap::from_headers(parts.headers);
    // Our own tickets stream their bodies in pieces; other tickets (metadata commands) are
    // answered by the Flight SQL service as usual.
    let ours = Any::decode(ticket.ticket.clone())
        .ok()
        .and_then(|any| any.unpack::<TicketStatementQuery>().ok().flatten());
    let stream: WireStream = match ours {
        Some(t) => flight.sql.redeem(&t.statement_handle, &metadata).await?,
        None => {
            let request = tonic::Request::from_parts(metadata, parts.extensions, ticket);
            let stream = FlightService::do_get(&flight, request).await?.into_inner();
            Box::pin(stream.map_ok(Wire::from_flight_data))
        }
    };
    // Each message's frames, then the trailers with the final status (an error ends the stream).
    let frames = futures::stream::unfold(Some(stream), |state| async move {
        let mut stream = state?;
        Some(match stream.next().await {
            Some(Ok(wire)) => (message_frames(wire), Some(stream)),
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
    Ok(response)
}

/// One message as a gRPC message: the length prefix and the small fields in one frame, then the
/// body's pieces as they are (Arrow's buffers).
fn message_frames(wire: Wire) -> Vec<Frame<Bytes>> {
    let body_len = wire.body_len();
    let mut body_key = BytesMut::new();
    if body_len > 0 {
        prost::encoding::encode_key(
            DATA_BODY_FIELD,
            prost::encoding::WireType::LengthDelimited,
            &mut body_key,
        );
        prost::encoding::encode_varint(body_len as u64, &mut body_key);
    }
    let head_len = wire.head.encoded_len();
    let mut head = BytesMut::with_capacity(5 + head_len + body_key.len());
    head.put_u8(0);
    head.put_u32((head_len + body_key.len() + body_len) as u32);
    wire.head.encode(&mut head).expect("BytesMut grows");
    head.extend_from_slice(&body_key);
    let mut frames = vec![Frame::data(head.freeze())];
    frames.extend(wire.body.into_iter().map(Frame::data));
    frames
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

    #[test]
    fn frames_decode_as_the_message() {
        let data = FlightData {
            data_header: Bytes::from_static(b"header"),
            app_metadata: Bytes::from_static(b"meta"),
            data_body: Bytes::from(vec![7u8; 300]),
            ..Default::default()
        };
        let frames = message_frames(Wire::from_flight_data(data.clone()));
        let mut wire = Vec::new();
        for f in frames {
            wire.extend_from_slice(&f.into_data().unwrap());
        }
        assert_eq!(wire[0], 0);
        let n = u32::from_be_bytes(wire[1..5].try_into().unwrap()) as usize;
        assert_eq!(n, wire.len() - 5);
        assert_eq!(FlightData::decode(&wire[5..]).unwrap(), data);
        // No body: one frame.
        let empty = FlightData {
            data_header: Bytes::from_static(b"schema"),
            ..Default::default()
        };
        assert_eq!(message_frames(Wire::from_flight_data(empty)).len(), 1);
        // A body in pieces is one message body.
        let pieces = Wire {
            head: FlightData::default(),
            body: vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cde")],
        };
        let wire: Vec<u8> = message_frames(pieces)
            .into_iter()
            .flat_map(|f| f.into_data().unwrap().to_vec())
            .collect();
        assert_eq!(
            FlightData::decode(&wire[5..]).unwrap().data_body.as_ref(),
            b"abcde"
        );
    }
}
