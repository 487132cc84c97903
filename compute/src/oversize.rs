//! tonic answers a gRPC message longer than the server's limit with OUT_OF_RANGE ("Error, decoded
//! message length too large ..."), before any handler sees it. gRPC's own status table and our API
//! say RESOURCE_EXHAUSTED for a size limit, so `rewrite_response` (a map over every response of
//! the worker) rewrites that one answer, wherever it goes: the headers of a trailers-only response
//! (a unary or server-streaming request) or the trailers of a streaming one (an upload read by the
//! handler). Every other status passes as is.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response};
use http_body::Frame;
use tonic::body::Body;

const TONIC_PREFIX: &str = "Error, decoded message length too large: found ";

/// The RESOURCE_EXHAUSTED message for tonic's OUT_OF_RANGE one, if `message` is that one.
fn resource_exhausted_message(message: &str) -> Option<String> {
    // "Error, decoded message length too large: found {len} bytes, the limit is: {limit} bytes"
    let rest = message.strip_prefix(TONIC_PREFIX)?;
    let (len, rest) = rest.split_once(" bytes, the limit is: ")?;
    let limit = rest.strip_suffix(" bytes")?;
    let (len, limit): (u64, u64) = (len.parse().ok()?, limit.parse().ok()?);
    Some(format!(
        "a gRPC message of {len} bytes is over this server's limit of {limit} bytes per message: \
         send the data in smaller messages (Polarway's clients split uploads into chunks; a Flight \
         client can send smaller record batches)"
    ))
}

/// Rewrite `headers` (response headers or trailers) if they carry tonic's over-size answer.
fn rewrite(headers: &mut HeaderMap) {
    if headers.get("grpc-status").map(HeaderValue::as_bytes) != Some(b"11") {
        return;
    }
    // tonic percent-encodes grpc-message: read it back through tonic, write it the same way.
    let Some(message) = tonic::Status::from_header_map(headers)
        .and_then(|status| resource_exhausted_message(status.message()))
    else {
        return;
    };
    headers.remove("grpc-message");
    let _ = tonic::Status::resource_exhausted(message).add_header(headers);
}

/// The response of any call, with tonic's over-size answer rewritten (for
/// `tower::util::MapResponseLayer`, around every service of the worker).
pub fn rewrite_response(mut resp: Response<Body>) -> Response<Body> {
    if resp.headers().contains_key("grpc-status") {
        rewrite(resp.headers_mut()); // trailers-only: the status is all there is
        return resp;
    }
    resp.map(|inner| Body::new(Trailers { inner }))
}

/// A response body passed through, its trailers rewritten.
struct Trailers {
    inner: Body,
}

impl http_body::Body for Trailers {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &mut polled {
            if let Some(trailers) = frame.trailers_mut() {
                rewrite(trailers);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tonics_over_size_answer_is_rewritten() {
        // As tonic sends it (percent-encoded).
        let mut h = HeaderMap::new();
        tonic::Status::out_of_range(
            "Error, decoded message length too large: found 70000000 bytes, the limit is: 67108864 bytes",
        )
        .add_header(&mut h)
        .unwrap();
        rewrite(&mut h);
        let status = tonic::Status::from_header_map(&h).unwrap();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        let msg = status.message();
        assert!(
            msg.contains("70000000 bytes") && msg.contains("67108864"),
            "{msg}"
        );

        // Any other OUT_OF_RANGE, or another status with the same text, is left alone.
        for (status, message) in [
            ("11", "version 9 is out of range"),
            (
                "13",
                "Error, decoded message length too large: found 1 bytes, the limit is: 0 bytes",
            ),
            (
                "11",
                "Error, decoded message length too large: found x bytes, the limit is: 0 bytes",
            ),
        ] {
            let mut h = HeaderMap::new();
            tonic::Status::new(tonic::Code::from_bytes(status.as_bytes()), message)
                .add_header(&mut h)
                .unwrap();
            let before = h.clone();
            rewrite(&mut h);
            assert_eq!(h, before);
        }
    }
}
