//! Arrow IPC stream <-> gRPC chunks. A sender encodes record batches as one IPC stream and cuts the
//! bytes into chunks of at most `CHUNK_TARGET_BYTES`; a receiver feeds chunks, in order, to an
//! incremental decoder. Memory on either side is one record batch plus one chunk.

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::datatypes::Schema;
use arrow::ipc::reader::StreamDecoder;
use arrow::ipc::writer::StreamWriter;
use bytes::Bytes;
use polarway_proto::CHUNK_TARGET_BYTES;

use crate::error::{Error, Result};

/// Encodes record batches into IPC stream chunks.
pub struct ChunkEncoder {
    writer: StreamWriter<Vec<u8>>,
}

impl ChunkEncoder {
    pub fn new(schema: &Schema) -> Result<Self> {
        let writer = StreamWriter::try_new(Vec::with_capacity(CHUNK_TARGET_BYTES), schema)
            .map_err(|e| Error::internal("encoding Arrow IPC", e))?;
        Ok(Self { writer })
    }

    /// The chunks holding everything written so far (the schema, then each batch).
    pub fn take_chunks(&mut self) -> Vec<Bytes> {
        split(std::mem::take(self.writer.get_mut()))
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<Vec<Bytes>> {
        // Room for the whole encoded batch up front: growing by doubling would copy it again at
        // every step, each time into freshly mapped (page-faulted) memory.
        self.writer
            .get_mut()
            .reserve(batch.get_array_memory_size() + 4096);
        self.writer
            .write(batch)
            .map_err(|e| Error::internal("encoding Arrow IPC", e))?;
        Ok(self.take_chunks())
    }

    pub fn finish(mut self) -> Result<Vec<Bytes>> {
        self.writer
            .finish()
            .map_err(|e| Error::internal("encoding Arrow IPC", e))?;
        Ok(self.take_chunks())
    }
}

fn split(buf: Vec<u8>) -> Vec<Bytes> {
    if buf.is_empty() {
        return vec![];
    }
    let all = Bytes::from(buf);
    (0..all.len())
        .step_by(CHUNK_TARGET_BYTES)
        .map(|i| all.slice(i..(i + CHUNK_TARGET_BYTES).min(all.len())))
        .collect()
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
            if let Some(batch) = self
                .decoder
                .decode(&mut buffer)
                .map_err(|e| self.malformed(e))?
            {
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
