//! sluice: a thread-per-core, io_uring ingest appliance for signed event feeds.
//!
//! Layers, from the wire inwards: [`reactor`] (io_uring), [`server`] (shards,
//! connections, hand-off), [`http`] (framing), [`auth`] (HMAC v1 against the
//! [`keyring`]), [`envelope`] (simd-json validation), [`routing`] (partition choice),
//! [`dedup`] and [`storage`] (segment logs). [`loadgen`] is `sluice bench`, the load
//! harness.

pub mod admin;
pub mod auth;
pub mod config;
pub mod constants;
pub mod dedup;
pub mod durable;
pub mod envelope;
pub mod framed;
pub mod http;
pub mod jwt;
pub mod keyring;
pub mod loadgen;
pub mod lockdown;
pub mod logging;
pub mod partners;
pub mod proxy_protocol;
pub mod quarantine;
pub mod quarantine_progress;
pub mod quarantine_replay;
pub mod reactor;
pub mod request_ids;
pub mod request_journal;
pub mod rlimit;
pub mod routing;
pub mod server;
pub mod stats;
pub mod storage;
pub mod swap;
pub mod systemd;
pub mod tail;
pub mod time;
pub mod tls;
pub mod tune;
