//! DoGet served beneath tonic's codec (`crate::wire`): each Flight data message goes out with its
//! body as the Arrow buffers it is made of. Every other Flight call goes through tonic as usual.

use std::convert::Infallible;
use std::task::{Context, Poll};

use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::{Any, TicketStatementQuery};
use arrow_flight::Ticket;
use futures::future::BoxFuture;
use futures::TryStreamExt;
use prost::Message;
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;
use tonic::Status;

use super::encode::Wire;
use super::{Flight, Stream_};
use crate::wire;

const DO_GET: &str = "/arrow.flight.protocol.FlightService/DoGet";
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
    let ticket: Ticket = wire::read_request(body, "DoGet").await?;
    let metadata = MetadataMap::from_headers(parts.headers);
    // Our own tickets stream their bodies in pieces; other tickets (metadata commands) are
    // answered by the Flight SQL service as usual.
    let ours = Any::decode(ticket.ticket.clone())
        .ok()
        .and_then(|any| any.unpack::<TicketStatementQuery>().ok().flatten());
    let stream: Stream_<Wire> = match ours {
        Some(t) => flight.sql.redeem(&t.statement_handle, &metadata).await?,
        None => {
            let request = tonic::Request::from_parts(metadata, parts.extensions, ticket);
            let stream = FlightService::do_get(&flight, request).await?.into_inner();
            Box::pin(stream.map_ok(Wire::from_flight_data))
        }
    };
    Ok(wire::response(stream.map_ok(|w| wire::Message {
        head: w.head.encode_to_vec().into(),
        field: DATA_BODY_FIELD,
        pieces: w.body,
    })))
}
