//! The worker's integration tests, each file a module of one test binary: one link instead of
//! one per file. Run one file's tests with
//! `cargo test --release --workspace --test worker -- FILE::` (for example `tls::`).

mod common;

mod bad_input;
mod cache;
mod durability;
mod fuzz;
mod memory;
mod query;
mod roundtrip;
mod s3;
mod tls;
