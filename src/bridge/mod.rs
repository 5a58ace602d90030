//! `sluice bridge kafka` (SPEC §8): forwards the partition logs of this box to a Kafka
//! cluster, in its own process, reading the logs read-only like `sluice tail`.
//!
//! Exactly-once is Kafka Connect's pattern for exactly-once sources (KIP-618): each
//! Kafka transaction carries a batch of records and, for every sluice partition the batch
//! came from, a progress record (the next offset to send) in a compacted progress topic.
//! A crash anywhere leaves either the whole transaction or none of it; at start the
//! bridge calls `init_transactions` (which fences an older bridge with the same
//! transactional id and aborts its open transaction), reads the committed progress with
//! `read_committed`, and resumes exactly after it. docs/KAFKA.md is the operator's guide.
//!
//! - `record.rs`: the Kafka record of a stored event (key, headers) and progress records.
//! - `kafka.rs`: the librdkafka clients and how their errors are sorted.
//! - `forward.rs`: the loop: read, batch, commit, back off, report.
//! - `metrics.rs`: the bridge's `/metrics` listener.

#[cfg(feature = "kafka")]
mod forward;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod metrics;
pub mod record;

#[cfg(feature = "kafka")]
pub use forward::{BridgeError, BridgeOptions, Outcome, run};
