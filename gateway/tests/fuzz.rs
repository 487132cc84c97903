//! Property tests of the gateway's request-body scan (`layers::body_key`), which reads the first
//! message of calls that name a dataset: whatever bytes a caller sends, cut into whatever HTTP/2
//! frames, the scan never panics, passes the body on byte for byte, and finds the same dataset
//! however the body is cut; a well-formed request is judged by the dataset it names.
//! `PROPTEST_CASES` raises the number of cases (the test command runs the default, 256 each).

use std::sync::Mutex;

use crate::common::framed;
use bytes::Bytes;
use http_body_util::BodyExt;
use polarway_gateway::error::GatewayError;
use polarway_gateway::layers::body_key::reconcile;
use polarway_proto::v1 as pb;
use polarway_proto::ROUTING_KEY_HEADER;
use proptest::prelude::*;
use prost::Message;

const METHODS: &[&str] = &[
    "Load",
    "Describe",
    "Delete",
    "Query",
    "Store",
    "StoreBatch",
    "List",
];

/// `bytes` as a request body cut at `cuts` (positions taken modulo its length).
fn body(bytes: &[u8], cuts: &[usize]) -> tonic::body::Body {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    at.extend([0, bytes.len()]);
    at.sort_unstable();
    at.dedup();
    let chunks: Vec<Bytes> = at
        .windows(2)
        .map(|w| Bytes::copy_from_slice(&bytes[w[0]..w[1]]))
        .collect();
    let frames = futures::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, tonic::Status>(http_body::Frame::data(c))),
    );
    tonic::body::Body::new(http_body_util::StreamBody::new(frames))
}

/// What the scan did: the names it asked about, and (unless it refused) the key the request left
/// with and the body it passes on.
struct Scanned {
    asked: Vec<String>,
    outcome: Result<(Option<String>, Vec<u8>), String>,
}

fn scan(method: &str, bytes: &[u8], cuts: &[usize], key: Option<&str>) -> Scanned {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let asked = Mutex::new(Vec::new());
    let mut req = http::Request::new(body(bytes, cuts));
    if let Some(k) = key {
        req.headers_mut()
            .insert(ROUTING_KEY_HEADER, k.parse().unwrap());
    }
    let outcome = runtime.block_on(async {
        let allowed = |name: &str| -> Result<(), GatewayError> {
            asked.lock().unwrap().push(name.to_string());
            match name.starts_with("secret") {
                true => Err(GatewayError::InvalidArgument("refused".into())),
                false => Ok(()),
            }
        };
        match reconcile(req, method, allowed).await {
            Err(e) => Err(e.to_string()),
            Ok(req) => {
                let key = req
                    .headers()
                    .get(ROUTING_KEY_HEADER)
                    .map(|v| v.to_str().unwrap().to_string());
                let passed = req.into_body().collect().await.unwrap().to_bytes();
                Ok((key, passed.to_vec()))
            }
        }
    });
    Scanned {
        asked: asked.into_inner().unwrap(),
        outcome,
    }
}

/// A well-formed first message of `method` naming `name` (and, for streams, more after it).
fn request(method: &str, name: &str, tail: &[u8]) -> Vec<u8> {
    let first = match method {
        "Load" => pb::LoadRequest {
            name: name.into(),
            ..Default::default()
        }
        .encode_to_vec(),
        "Describe" => pb::DescribeRequest {
            name: name.into(),
            version: None,
        }
        .encode_to_vec(),
        "Delete" => pb::DeleteRequest { name: name.into() }.encode_to_vec(),
        "Query" => pb::QueryRequest {
            sql: "SELECT 1".into(),
            into: Some(name.into()),
        }
        .encode_to_vec(),
        _ => pb::StoreRequest {
            msg: Some(pb::store_request::Msg::Header(pb::StoreHeader {
                name: name.into(),
                ..Default::default()
            })),
        }
        .encode_to_vec(),
    };
    let mut out = framed(&first);
    if matches!(method, "Store" | "StoreBatch") {
        out.extend(framed(
            &pb::StoreRequest {
                msg: Some(pb::store_request::Msg::Ipc(Bytes::copy_from_slice(tail))),
            }
            .encode_to_vec(),
        ));
    }
    out
}

/// The scan of `bytes` cut at `cuts` asks about the same names and reaches the same verdict as
/// the scan of `bytes` in one frame, and passes the body on unchanged.
fn same_however_cut(
    method: &str,
    bytes: &[u8],
    cuts: &[usize],
    key: Option<&str>,
) -> Result<(), TestCaseError> {
    let whole = scan(method, bytes, &[], key);
    let cut = scan(method, bytes, cuts, key);
    prop_assert_eq!(&whole.asked, &cut.asked);
    prop_assert_eq!(&whole.outcome, &cut.outcome);
    if let Ok((_, passed)) = &cut.outcome {
        prop_assert_eq!(passed.as_slice(), bytes);
    }
    Ok(())
}

fn method() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(METHODS)
}

proptest! {
    /// Arbitrary bytes, arbitrarily cut: no panic, the body passes on unchanged, and the verdict
    /// does not depend on the cuts.
    #[test]
    fn any_body_any_cut(
        method in method(),
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        key in proptest::option::of("[a-z_]{1,8}"),
    ) {
        same_however_cut(method, &bytes, &cuts, key.as_deref())?;
    }

    /// A damaged first message (a byte flipped, or the length prefix changed): the same
    /// properties, near the shapes the scan decodes.
    #[test]
    fn damaged_requests(
        method in method(),
        name in "[a-z_]{1,12}",
        flip in any::<usize>(),
        with in any::<u8>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut bytes = request(method, &name, b"ipc");
        let at = flip % bytes.len();
        bytes[at] = with;
        same_however_cut(method, &bytes, &cuts, None)?;
    }

    /// A well-formed request is judged by the dataset it names: refused when the caller may not
    /// use it, routed by it without a key, refused when the key names another dataset.
    #[test]
    fn well_formed_requests_are_judged_by_their_body(
        method in proptest::sample::select(&METHODS[..6]),
        name in "(secret)?[a-z_]{1,12}",
        key in proptest::option::of("[a-z_]{1,12}"),
        tail in proptest::collection::vec(any::<u8>(), 0..70_000),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let bytes = request(method, &name, &tail);
        let s = scan(method, &bytes, &cuts, key.as_deref());
        prop_assert_eq!(&s.asked, &vec![name.clone()]);
        match (&s.outcome, name.starts_with("secret"), key.as_deref()) {
            (Err(_), true, _) => {}
            (Ok((Some(k), passed)), false, None) => {
                prop_assert_eq!(k, &name);
                prop_assert_eq!(passed, &bytes);
            }
            (Ok((Some(k), _)), false, Some(key)) if key == name => prop_assert_eq!(k, &name),
            (Err(e), false, Some(key)) if key != name => prop_assert!(e.contains("does not match"), "{}", e),
            (other, _, _) => prop_assert!(false, "unexpected outcome {:?}", other),
        }
    }
}
