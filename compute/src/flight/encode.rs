//! Record batches as Flight data messages without copying their Arrow buffers: arrow's
//! `StreamEncoder` lays a batch out as IPC stream pieces that are the batch's own buffers, and
//! each message's body is handed on as slices of them (`Wire`). Encoding runs in the producer (a
//! blocking thread); `grpc.rs` frames the pieces for HTTP/2, which sends them as they are.

use std::collections::VecDeque;

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::datatypes::Schema;
use arrow::ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteOptions, StreamEncoder};
use arrow::ipc::MessageHeader;
use arrow_flight::FlightData;
use bytes::Bytes;

use crate::error::{Error, Result};

/// The largest message body sent: big batches are cut into slices of about this size (clients'
/// gRPC message limits; Arrow's Java and C++ clients accept any size, others 16 MiB or less).
const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// One Flight data message: its fields but the body (`head`), and the body in pieces.
pub struct Wire {
    pub head: FlightData,
    pub body: Vec<Bytes>,
}

impl Wire {
    /// A message with its body in one buffer.
    pub fn from_flight_data(mut data: FlightData) -> Self {
        let body = std::mem::take(&mut data.data_body);
        Self {
            head: data,
            body: if body.is_empty() { vec![] } else { vec![body] },
        }
    }

    /// As one FlightData, the body copied together (for callers that need the message type).
    pub fn into_flight_data(self) -> FlightData {
        let mut data = self.head;
        data.data_body = match self.body.len() {
            0 => Bytes::new(),
            1 => self.body.into_iter().next().expect("one piece"),
            _ => self.body.concat().into(),
        };
        data
    }

    pub fn body_len(&self) -> usize {
        self.body.iter().map(Bytes::len).sum()
    }
}

#[derive(Default)]
pub struct FrameEncoder {
    stream: Option<StreamEncoder>,
}

impl FrameEncoder {
    pub fn new() -> Self {
        Self { stream: None }
    }

    /// The stream's first message. (The stream encoder would put the schema before the first
    /// batch; it is sent now instead, so a result without rows still has one, and that copy is
    /// dropped. Both number dictionaries the same way, in schema order.)
    pub fn schema(&mut self, schema: &Schema) -> Result<Wire> {
        let options = IpcWriteOptions::default();
        let encoded = IpcDataGenerator::default().schema_to_bytes_with_dictionary_tracker(
            schema,
            &mut DictionaryTracker::new(false),
            &options,
        );
        self.stream = Some(
            StreamEncoder::try_new_with_options(schema, options)
                .map_err(|e| Error::internal("encoding Arrow IPC", e))?,
        );
        Ok(Wire {
            head: FlightData {
                data_header: encoded.ipc_message.into(),
                ..Default::default()
            },
            body: vec![],
        })
    }

    /// A batch's messages: its dictionaries (when new), then the batch in slices.
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<Wire>> {
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| Error::internal("encoding Arrow IPC", "a batch before the schema"))?;
        let rows = batch.num_rows();
        let size = batch.get_array_memory_size().max(1);
        let step = (rows * MAX_MESSAGE_BYTES / size).clamp(1, rows.max(1));
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let len = step.min(rows - offset);
            let buffers = stream
                .encode(&batch.slice(offset, len))
                .map_err(|e| Error::internal("encoding Arrow IPC", e))?;
            out.extend(
                split_messages(buffers)?
                    .into_iter()
                    .filter(|(kind, _)| *kind != MessageHeader::Schema)
                    .map(|(_, wire)| wire),
            );
            offset += len;
            if offset >= rows {
                return Ok(out);
            }
        }
    }
}

/// Cut IPC stream pieces into messages: each is a continuation marker and a length, the
/// flatbuffer header (copied: a few hundred bytes), then `bodyLength` bytes of body (slices of
/// the pieces, not copied).
fn split_messages(buffers: Vec<Buffer>) -> Result<Vec<(MessageHeader, Wire)>> {
    let bad = |what: &str| Error::internal("splitting Arrow IPC", what);
    let mut rope: VecDeque<Bytes> = buffers
        .into_iter()
        .filter(|b| !b.is_empty())
        .map(Bytes::from_owner)
        .collect();
    let mut out = Vec::new();
    while !rope.is_empty() {
        let prefix = take(&mut rope, 8).ok_or_else(|| bad("a cut message prefix"))?;
        let prefix = prefix.concat();
        let len = i32::from_le_bytes(prefix[4..8].try_into().expect("8 bytes"));
        if prefix[..4] != [0xff; 4] || len < 0 {
            return Err(bad("no continuation marker"));
        }
        if len == 0 {
            break; // end of stream
        }
        let header = take(&mut rope, len as usize)
            .ok_or_else(|| bad("a cut header"))?
            .concat();
        let message = arrow::ipc::root_as_message(&header)
            .map_err(|e| Error::internal("splitting Arrow IPC", e))?;
        let kind = message.header_type();
        let body_len = usize::try_from(message.bodyLength()).map_err(|_| bad("body length"))?;
        let body = take(&mut rope, body_len).ok_or_else(|| bad("a cut body"))?;
        out.push((
            kind,
            Wire {
                head: FlightData {
                    data_header: header.into(),
                    ..Default::default()
                },
                body,
            },
        ));
    }
    Ok(out)
}

/// The next `n` bytes of the rope, as slices of its pieces.
fn take(rope: &mut VecDeque<Bytes>, mut n: usize) -> Option<Vec<Bytes>> {
    let mut out = Vec::new();
    while n > 0 {
        let front = rope.front_mut()?;
        if front.len() <= n {
            n -= front.len();
            out.push(rope.pop_front().expect("front exists"));
        } else {
            out.push(front.split_to(n));
            n = 0;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, DictionaryArray, Float64Array, StringArray};
    use arrow::datatypes::Int32Type;

    use super::*;

    #[test]
    fn messages_make_the_same_stream() {
        let n = 600_000;
        let dict: DictionaryArray<Int32Type> = (0..n).map(|i| ["a", "b", "c"][i % 3]).collect();
        let batch = RecordBatch::try_from_iter([
            (
                "x",
                Arc::new(Float64Array::from_iter_values((0..n).map(|i| i as f64))) as ArrayRef,
            ),
            ("d", Arc::new(dict) as ArrayRef),
            (
                "s",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("v{i}")),
                )) as ArrayRef,
            ),
        ])
        .unwrap();
        let mut enc = FrameEncoder::new();
        let mut wires = vec![enc.schema(&batch.schema()).unwrap()];
        wires.extend(enc.batch(&batch).unwrap());
        // The schema, the dictionary and the batch cut in several messages.
        assert!(wires.len() > 3, "{}", wires.len());
        // Framed as an IPC stream again, they read back as the batch.
        let mut stream = Vec::new();
        for w in wires {
            let data = w.into_flight_data();
            stream.extend_from_slice(&[0xff; 4]);
            stream.extend_from_slice(&(data.data_header.len() as i32).to_le_bytes());
            stream.extend_from_slice(&data.data_header);
            stream.extend_from_slice(&data.data_body);
        }
        let reader = arrow::ipc::reader::StreamReader::try_new(&stream[..], None).unwrap();
        let rows: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        let back = arrow::compute::concat_batches(&batch.schema(), &rows).unwrap();
        assert_eq!(back, batch);
    }
}
