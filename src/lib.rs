//! sluice: a thread-per-core, io_uring ingest appliance for signed event feeds.

pub mod admin;
pub mod config;
pub mod constants;
pub mod http;
pub mod ingest;
pub mod log;
pub mod metrics;
pub mod net;
pub mod perimeter;
pub mod platform;
#[allow(unsafe_code, reason = "the io_uring layer: ring memory, provided buffers, descriptors from completions")]
pub mod reactor;
pub mod shard;
pub mod sidelog;
pub mod tools;
