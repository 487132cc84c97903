//! Load served beneath tonic's codec (`crate::wire`): its IPC chunks go out as the Arrow buffers
//! they are made of. Every other `polarway.v1` call goes through tonic as usual.

use std::convert::Infallible;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use polarway_proto::v1::polarway_server::PolarwayServer;
use polarway_proto::v1::LoadRequest;
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;
use tonic::Status;

use super::PolarwayService;
use crate::wire;

const LOAD: &str = "/polarway.v1.Polarway/Load";

/// The `polarway.v1` service as tonic serves it, with Load answered by `load` below.
#[derive(Clone)]
pub struct PolarwayGrpc {
    server: PolarwayServer<PolarwayService>,
    service: PolarwayService,
}

impl PolarwayGrpc {
    pub fn new(server: PolarwayServer<PolarwayService>, service: PolarwayService) -> Self {
        Self { server, service }
    }
}

impl NamedService for PolarwayGrpc {
    const NAME: &'static str = <PolarwayServer<PolarwayService> as NamedService>::NAME;
}

impl tower::Service<http::Request<Body>> for PolarwayGrpc {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() != LOAD {
            let mut server = self.server.clone();
            return Box::pin(async move { server.call(req).await });
        }
        let service = self.service.clone();
        Box::pin(async move { Ok(load(service, req).await.unwrap_or_else(|s| s.into_http())) })
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
