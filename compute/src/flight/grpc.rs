//! DoGet served beneath tonic's codec (`crate::wire`): each Flight data message goes out with its
//! body as the Arrow buffers it is made of. Every other Flight call goes through tonic as usual.

use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::{Any, TicketStatementQuery};
use arrow_flight::Ticket;
use futures::TryStreamExt;
use prost::Message;
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;
use tonic::Status;

use super::encode::Wire;
use super::{Flight, Stream_};
use crate::wire;

/// FlightData's `data_body` field.
const DATA_BODY_FIELD: u32 = 1000;

/// The Flight service as tonic serves it, with DoGet answered by `do_get` below.
pub fn service(
    server: FlightServiceServer<Flight>,
    flight: Flight,
) -> impl tower::Service<
    http::Request<Body>,
    Response = http::Response<Body>,
    Error = std::convert::Infallible,
    Future: Send,
> + NamedService
       + Clone
       + Send
       + Sync
       + 'static {
    wire::Intercept {
        inner: server,
        path: "/arrow.flight.protocol.FlightService/DoGet",
        handler: move |req| do_get(flight.clone(), req),
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
