//! sluice: a thread-per-core, io_uring ingest appliance for signed event feeds.
//!
//! The tree follows a request from the wire inwards (docs/ARCHITECTURE.md has the same
//! map with what each part owns):
//!
//! ```text
//! main.rs        the binary: parse the command line, run the command, map errors to exit codes
//! constants.rs   every limit, unit last, with its reason; relations checked at compile time
//! config/        the file as written → validated Config → check-config's TOML; reload
//! platform/      the OS: syscall wrappers (sys.rs), systemd, seccomp lockdown, logs, clocks
//! reactor/       io_uring: ring setup and restrictions, the provided buffer ring, one file per op
//! net/           listeners, the connection slot and its state machine, PROXY protocol, TLS
//! http/          HTTP/1.1 framing (head, chunked), typed statuses, response writing
//! perimeter/     who may send: admission, HMAC v1, webhooks, JWT, key ring, partners, limits, request ids
//! ingest/        endpoints, the ingest paths, the envelope, answers and the one table of refusals
//! shard/         one pinned thread per core: the loop, accept, I/O, hand-off, group commit, drain; serve
//! topics.rs      topics: routing by event_type, the slot of each topic partition, stream versions, the data dir layout
//! schema/        the schema registry: versions, compatibility, bounds against schema bombs, the compiled set
//! policy/        what may enter: field policies, geo lists, KYC/RG gates; the one check after the envelope
//! consume/       consumers: who may read, partition reads and long-polls, subscriptions, streams, SSE, the read log
//! log/           the partition logs: segments, format, recovery, readers, dedup, partitioner
//! sidelog/       small framed per-shard logs: quarantine, request-id journal (one writer)
//! admin/         the admin listener: /metrics, /healthz, /readyz, reload
//! metrics/       lock-free per-shard counters, closed label sets, Prometheus rendering
//! replay/        signed replay runbooks: the strict document, its canonical digest, signer keys
//! tools/         the other commands: cli, check-config, keys, tail, quarantine, bench, tune
//! ```
//!
//! `unsafe` is denied in the whole crate and allowed in three places only: `reactor`
//! (ring memory, provided buffers, descriptors from completions), `log::segment` (the
//! mappings and their commit word) and `platform::sys` (the syscalls no crate wraps).
//! Every block there carries a `// SAFETY:` comment (`clippy::undocumented_unsafe_blocks`).

#![deny(unsafe_code)]
#![warn(clippy::unwrap_used)]

pub mod admin;
pub mod bridge;
pub mod config;
pub mod constants;
pub mod consume;
pub mod http;
pub mod ingest;
pub mod log;
pub mod metrics;
pub mod net;
pub mod overload;
pub mod perimeter;
pub mod platform;
pub mod policy;
#[allow(unsafe_code, reason = "the io_uring layer: ring memory, provided buffers, descriptors from completions")]
pub mod reactor;
pub mod replay;
pub mod schema;
pub mod shard;
pub mod sidelog;
pub mod tools;
pub mod topics;
