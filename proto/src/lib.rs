//! The `polarway.v1` service definition (`proto/polarway/v1/polarway.proto`), compiled for Rust.
//! It is the single source of truth every client and the worker share.

pub mod transport;

pub mod v1 {
    tonic::include_proto!("polarway.v1");

    /// Encoded descriptors of `polarway.v1`, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("polarway_descriptor");
}

/// Metadata header that names the dataset a call is about; the gateway hashes on it.
pub const ROUTING_KEY_HEADER: &str = "x-polarway-key";
/// Largest IPC chunk a sender puts in one message.
pub const CHUNK_TARGET_BYTES: usize = 1024 * 1024;
/// Largest IPC chunk a receiver accepts (RESOURCE_EXHAUSTED above).
pub const CHUNK_LIMIT_BYTES: usize = 4 * 1024 * 1024;
/// Largest encoded gRPC message either side decodes; above the chunk limit so that an oversized
/// chunk reaches the handler and gets a clear RESOURCE_EXHAUSTED instead of a transport error.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
