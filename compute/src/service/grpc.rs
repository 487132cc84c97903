//! Load served beneath tonic's codec (`crate::wire`): its IPC chunks go out as the Arrow buffers
//! they are made of. Every other `polarway.v1` call goes through tonic as usual.

use polarway_proto::v1::polarway_server::PolarwayServer;
use polarway_proto::v1::LoadRequest;
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;
use tonic::Status;

use super::PolarwayService;
use crate::wire;

/// The `polarway.v1` service as tonic serves it, with Load answered by `load` below.
pub fn service(
    server: PolarwayServer<PolarwayService>,
    polarway: PolarwayService,
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
        path: "/polarway.v1.Polarway/Load",
        handler: move |req| load(polarway.clone(), req),
    }
}

async fn load(
    service: PolarwayService,
    req: http::Request<Body>,
) -> Result<http::Response<Body>, Status> {
    let (parts, body) = req.into_parts();
    let request: LoadRequest = wire::read_request(body, "Load").await?;
    let stream = service
        .load_pieces(&MetadataMap::from_headers(parts.headers), request)
        .await?;
    Ok(wire::response(stream))
}
