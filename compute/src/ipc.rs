//! Arrow IPC stream <-> gRPC chunks. A sender (Load and Query alike) encodes record batches as one
//! IPC stream and cuts it into chunks of at most `CHUNK_TARGET_BYTES`; a receiver (Store) feeds
//! chunks, in order, to an incremental decoder. Memory on either side is one record batch plus one
//! chunk.

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::datatypes::Schema;
use arrow::ipc::reader::StreamDecoder;
use arrow::ipc::writer::StreamEncoder;
use bytes::Bytes;
use polarway_proto::CHUNK_TARGET_BYTES;

use crate::error::{Error, Result};

/// Encodes a result (its schema, then its batches) as one IPC stream cut into chunks of at most
/// `CHUNK_TARGET_BYTES`. A chunk is a list of pieces of Arrow's own buffers, not a copy: Load
/// hands them to HTTP/2 as they are, Query joins each chunk into its message. The chunks of a
/// batch are complete when the batch is, so a reader sees each batch without waiting for more.
pub struct ChunkedStream {
    encoder: StreamEncoder,
    cutter: Cutter,
}

/// One chunk: its pieces, in order.
pub type Chunk = Vec<Bytes>;

impl ChunkedStream {
    pub fn new(schema: &Schema) -> Result<Self> {
        Ok(Self {
            encoder: StreamEncoder::try_new(schema).map_err(encoding)?,
            cutter: Cutter::default(),
        })
    }

    /// The chunks that carry `batch` (and the schema, before the first batch).
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<Chunk>> {
        let pieces = self.encoder.encode(batch).map_err(encoding)?;
        Ok(self.cutter.cut(pieces))
    }

    /// The chunks that end the stream (the schema too, if no batch came).
    pub fn finish(self) -> Result<Vec<Chunk>> {
        let Self {
            encoder,
            mut cutter,
        } = self;
        Ok(cutter.cut(encoder.finish().map_err(encoding)?))
    }
}

/// Cuts runs of buffers into chunks of `CHUNK_TARGET_BYTES` (slices, not copies).
#[derive(Default)]
struct Cutter {
    current: Vec<Bytes>,
    len: usize,
}

impl Cutter {
    /// Every full chunk, then what is left (a batch's chunks end with the batch).
    fn cut(&mut self, buffers: Vec<Buffer>) -> Vec<Chunk> {
        let mut full = Vec::new();
        for buffer in buffers {
            let mut piece = Bytes::from_owner(buffer);
            while !piece.is_empty() {
                let take = (CHUNK_TARGET_BYTES - self.len).min(piece.len());
                self.current.push(piece.split_to(take));
                self.len += take;
                if self.len == CHUNK_TARGET_BYTES {
                    full.push(self.take());
                }
            }
        }
        if !self.current.is_empty() {
            full.push(self.take());
        }
        full
    }

    fn take(&mut self) -> Chunk {
        self.len = 0;
        std::mem::take(&mut self.current)
    }
}

fn encoding(e: arrow::error::ArrowError) -> Error {
    Error::internal("encoding Arrow IPC", e)
}

/// Decodes an IPC stream that arrives in chunks.
pub struct ChunkDecoder {
    decoder: StreamDecoder,
    what: String,
}

impl ChunkDecoder {
    /// `what` names the stream in error messages ("dataset \"x\"").
    pub fn new(what: String) -> Self {
        Self {
            decoder: StreamDecoder::new(),
            what,
        }
    }

    pub fn schema(&self) -> Option<arrow::datatypes::SchemaRef> {
        self.decoder.schema()
    }

    /// Feed one chunk; returns the batches it completed.
    pub fn push(&mut self, chunk: Bytes) -> Result<Vec<RecordBatch>> {
        let mut buffer = Buffer::from(chunk);
        let mut out = Vec::new();
        while !buffer.is_empty() {
            // Arrow's reader panics on some malformed messages (a buffer offset past the body, found
            // by tests/fuzz.rs) instead of returning an error: that is the caller's bad input too.
            let decoded =
                crate::panics::quietly(|| self.decoder.decode(&mut buffer)).ok_or_else(|| {
                    self.malformed(arrow::error::ArrowError::IpcError(
                        "a message's buffers lie outside its body".into(),
                    ))
                })?;
            if let Some(batch) = decoded.map_err(|e| self.malformed(e))? {
                out.push(batch);
            }
        }
        Ok(out)
    }

    /// The stream must have ended exactly at a message boundary, after a schema.
    pub fn finish(&mut self) -> Result<()> {
        if self.decoder.schema().is_none() {
            return Err(Error::InvalidArgument(format!(
                "no Arrow IPC data for {}: send an Arrow IPC stream (schema first) after the header",
                self.what
            )));
        }
        self.decoder.finish().map_err(|e| self.malformed(e))
    }

    fn malformed(&self, e: arrow::error::ArrowError) -> Error {
        Error::InvalidArgument(format!(
            "malformed or truncated Arrow IPC stream for {}: {e}; send the Arrow IPC *stream* format (not the file format)",
            self.what
        ))
    }
}
