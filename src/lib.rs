//! sluice: a thread-per-core, io_uring ingest appliance for signed event feeds.
//!
//! Layers, from the wire inwards: [`reactor`] (io_uring, connections), [`http`]
//! (framing), [`auth`] (HMAC v1 against the [`keyring`]), [`envelope`] (simd-json
//! validation), [`routing`] (partition choice), [`storage`] (segment logs, dedup).

pub mod config;
pub mod constants;
pub mod dedup;
pub mod envelope;
pub mod routing;
pub mod time;
