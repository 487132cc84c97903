//! Polars DataFrames <-> Arrow IPC stream chunks, off the async runtime.
//!
//! Frames are written with Polars' oldest compatibility level (LargeUtf8 strings, no view
//! types), which every Arrow implementation reads: a dataset stored from Rust loads in Python,
//! Go and TypeScript too.

use std::io::{Read, Seek, SeekFrom, Write};

use bytes::Bytes;
use polars::io::ipc::IpcStreamWriter;
use polars::io::SerWriter;
use polars::prelude::{CompatLevel, DataFrame, Schema, SchemaExt};
use polars_arrow::io::ipc::read::{read_stream_metadata, StreamReader, StreamState};
use polarway_proto::CHUNK_TARGET_BYTES;
use tokio::sync::mpsc;

use crate::error::{Error, Result};

/// A `Write` that cuts what it receives into chunks and sends them.
struct ChunkSink {
    buf: Vec<u8>,
    tx: mpsc::Sender<Bytes>,
}

impl ChunkSink {
    fn flush_full(&mut self, force: bool) -> std::io::Result<()> {
        while self.buf.len() >= CHUNK_TARGET_BYTES || (force && !self.buf.is_empty()) {
            let n = self.buf.len().min(CHUNK_TARGET_BYTES);
            let chunk = Bytes::copy_from_slice(&self.buf[..n]);
            self.buf.drain(..n);
            self.tx.blocking_send(chunk).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "upload stopped")
            })?;
        }
        Ok(())
    }
}

impl Write for ChunkSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        self.flush_full(false)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Encode `df` as IPC chunks into `tx` (blocking; run it on a blocking thread).
pub fn write_frame(mut df: DataFrame, tx: mpsc::Sender<Bytes>) -> Result<()> {
    let mut sink = ChunkSink {
        buf: Vec::with_capacity(CHUNK_TARGET_BYTES * 2),
        tx,
    };
    IpcStreamWriter::new(&mut sink)
        .with_compat_level(CompatLevel::oldest())
        .finish(&mut df)?;
    sink.flush_full(true)
        .map_err(|e| Error::Data(e.to_string()))
}

/// A forward-only reader over chunks arriving on a channel. Polars' stream reader wants `Seek`,
/// but only ever skips forward, which this supports by reading and discarding.
pub struct ChunkReader {
    rx: mpsc::Receiver<Result<Bytes>>,
    current: Bytes,
    position: u64,
    /// An error from the transport, reported instead of a bare "unexpected EOF".
    pub failure: Option<Error>,
}

impl ChunkReader {
    pub fn new(rx: mpsc::Receiver<Result<Bytes>>) -> Self {
        Self {
            rx,
            current: Bytes::new(),
            position: 0,
            failure: None,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => {
                    let msg = e.to_string();
                    self.failure = Some(e);
                    return Err(std::io::Error::other(msg));
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        self.position += n as u64;
        Ok(n)
    }
}

impl Seek for ChunkReader {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let skip = match pos {
            SeekFrom::Current(n) if n >= 0 => n as u64,
            _ => {
                return Err(std::io::Error::other(
                    "the IPC stream can only skip forward",
                ))
            }
        };
        std::io::copy(&mut self.by_ref().take(skip), &mut std::io::sink())?;
        Ok(self.position)
    }
}

/// Decode the IPC stream from `reader` into frames, one per record batch, handing each to
/// `emit` (blocking; run it on a blocking thread). `emit` returns false to stop.
pub fn read_frames(
    mut reader: ChunkReader,
    mut emit: impl FnMut(DataFrame) -> bool,
) -> Result<Option<Schema>> {
    let data_err = |reader: &mut ChunkReader, e: polars::error::PolarsError| {
        reader
            .failure
            .take()
            .unwrap_or_else(|| Error::Data(e.to_string()))
    };
    let metadata = match read_stream_metadata(&mut reader) {
        Ok(m) => m,
        Err(e) => return Err(data_err(&mut reader, e)),
    };
    let schema = Schema::from_arrow_schema(&metadata.schema);
    let mut failed = None;
    {
        let stream = StreamReader::new(&mut reader, metadata, None);
        for state in stream {
            match state {
                Ok(StreamState::Some(batch)) => {
                    if !emit(DataFrame::from(batch)) {
                        break;
                    }
                }
                Ok(StreamState::Waiting) => continue,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
    }
    match failed {
        Some(e) => Err(data_err(&mut reader, e)),
        None => Ok(Some(schema)),
    }
}
