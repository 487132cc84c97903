//! Property-based fuzzing of the worker's decoders and checkers, on stable Rust (proptest): no
//! input may panic or hang them, and valid inputs cut or reordered anywhere decode the same.
//! Each property runs `PROPTEST_CASES` cases (256 by default, as in CI); for a long run:
//! `PROPTEST_CASES=200000 cargo test --release --workspace --test worker -- fuzz::`. Failing cases are kept in
//! `fuzz.proptest-regressions` next to this file (the corpus) and replayed first on every run.

use std::sync::OnceLock;

use arrow::array::RecordBatch;
use bytes::Bytes;
use polarway_compute::error::Error;
use polarway_compute::ipc::{ChunkDecoder, ChunkedStream};
use polarway_compute::sql::gate::Gate;
use polarway_compute::store::validate_name;
use proptest::prelude::*;

use crate::common::{ipc_stream_of, numbered_batch};

/// Feed `chunks` to a decoder; the batches, or the error it gave.
fn decode(chunks: Vec<Vec<u8>>) -> Result<Vec<RecordBatch>, Error> {
    let mut decoder = ChunkDecoder::new("dataset \"fuzz\"".into());
    let mut out = Vec::new();
    for c in chunks {
        out.extend(decoder.push(Bytes::from(c))?);
    }
    decoder.finish()?;
    Ok(out)
}

/// `bytes` cut at the given fractions.
fn cut(bytes: &[u8], mut at: Vec<f64>) -> Vec<Vec<u8>> {
    at.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut points: Vec<usize> = at
        .iter()
        .map(|f| (f * bytes.len() as f64) as usize)
        .collect();
    points.push(bytes.len());
    let mut start = 0;
    points
        .into_iter()
        .map(|end| {
            let piece = bytes[start..end.max(start)].to_vec();
            start = end.max(start);
            piece
        })
        .collect()
}

fn gate() -> &'static Gate {
    static GATE: OnceLock<Gate> = OnceLock::new();
    GATE.get_or_init(|| Gate::new().unwrap())
}

proptest! {
    /// A valid stream cut anywhere into any number of chunks decodes to the same batches.
    #[test]
    fn ipc_chunks_cut_anywhere_decode_the_same(
        rows in proptest::collection::vec(0usize..300, 1..4),
        at in proptest::collection::vec(0.0f64..1.0, 0..12),
    ) {
        let batches: Vec<RecordBatch> =
            rows.iter().enumerate().map(|(i, r)| numbered_batch(*r, i as i64)).collect();
        let bytes = ipc_stream_of(&batches);
        let decoded = decode(cut(&bytes, at)).unwrap();
        prop_assert_eq!(decoded, batches);
    }

    /// Mutated or truncated streams never panic: they decode, or are refused as INVALID_ARGUMENT.
    #[test]
    fn damaged_ipc_is_refused_not_a_crash(
        rows in 0usize..200,
        flips in proptest::collection::vec((0.0f64..1.0, any::<u8>()), 0..8),
        keep in 0.0f64..=1.0,
        at in proptest::collection::vec(0.0f64..1.0, 0..4),
    ) {
        let mut bytes = ipc_stream_of(&[numbered_batch(rows, 3)]);
        for (where_, value) in flips {
            let i = ((where_ * bytes.len() as f64) as usize).min(bytes.len() - 1);
            bytes[i] = value;
        }
        bytes.truncate((keep * bytes.len() as f64) as usize);
        match decode(cut(&bytes, at)) {
            Ok(_) | Err(Error::InvalidArgument(_)) => {}
            Err(e) => prop_assert!(false, "unexpected error kind: {e:?}"),
        }
    }

    /// Arbitrary bytes as a stream: refused, never a crash.
    #[test]
    fn arbitrary_bytes_are_not_an_ipc_stream(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode(vec![bytes]);
    }

    /// What the worker sends (Load, Query) decodes to what it encoded, whatever the batch sizes.
    #[test]
    fn the_chunked_sender_round_trips(rows in proptest::collection::vec(0usize..5000, 0..4)) {
        let schema = numbered_batch(0, 0).schema();
        let batches: Vec<RecordBatch> =
            rows.iter().enumerate().map(|(i, r)| numbered_batch(*r, i as i64)).collect();
        let mut stream = ChunkedStream::new(&schema).unwrap();
        let mut chunks = Vec::new();
        for b in &batches {
            chunks.extend(stream.batch(b).unwrap());
        }
        chunks.extend(stream.finish().unwrap());
        for c in &chunks {
            prop_assert!(c.iter().map(Bytes::len).sum::<usize>() <= polarway_proto::CHUNK_TARGET_BYTES);
        }
        let wire: Vec<Vec<u8>> = chunks.into_iter().map(|c| c.concat()).collect();
        prop_assert_eq!(decode(wire).unwrap(), batches);
    }

    /// Dataset names: exactly the documented rule, for any string.
    #[test]
    fn dataset_names_follow_the_rule(name in "\\PC{0,8}|[A-Za-z0-9_.\\-]{0,300}") {
        let expected = !name.is_empty()
            && name.len() <= 255
            && !name.starts_with('.')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        prop_assert_eq!(validate_name(&name).is_ok(), expected);
    }

    /// The SQL gate judges any text without panicking: accepted, or refused as a caller's error.
    #[test]
    fn the_sql_gate_never_crashes(sql in "\\PC{0,200}") {
        match gate().check(&sql) {
            Ok(_) | Err(Error::InvalidArgument(_)) | Err(Error::PermissionDenied { .. }) => {}
            Err(e) => prop_assert!(false, "{sql:?}: unexpected error kind {e:?}"),
        }
    }

    /// SQL-shaped text (keywords, names, punctuation in any order): same property, deeper paths.
    #[test]
    fn sql_shaped_text_never_crashes_the_gate(
        words in proptest::collection::vec(
            prop_oneof![
                Just("SELECT"), Just("FROM"), Just("WHERE"), Just("*"), Just(","), Just("("),
                Just(")"), Just(";"), Just("trades"), Just("read_parquet('x.parquet')"),
                Just("COPY"), Just("TO"), Just("'/tmp/x'"), Just("ATTACH"), Just("PRAGMA"),
                Just("WITH"), Just("AS"), Just("t"), Just("UNION"), Just("1"), Just("?"),
                Just("$1"), Just("INSERT INTO"), Just("VALUES"), Just("CREATE"), Just("SET"),
                Just("LIMIT"), Just("JOIN"), Just("ON"), Just("="), Just("'a''b'"), Just("--"),
            ],
            0..24,
        ),
    ) {
        let sql = words.join(" ");
        match gate().check(&sql) {
            Ok(_) | Err(Error::InvalidArgument(_)) | Err(Error::PermissionDenied { .. }) => {}
            Err(e) => prop_assert!(false, "{sql:?}: unexpected error kind {e:?}"),
        }
    }
}
