//! The gateway's integration tests, each file a module of one test binary: one link instead of
//! one per file. Run one file's tests with
//! `cargo test --release --workspace --test gateway -- FILE::` (for example `routing::`).

mod common;

mod auth;
mod backend;
mod bench;
mod fuzz;
mod isolation;
mod metrics;
mod proxy;
mod ratelimit;
mod reload;
mod routing;
