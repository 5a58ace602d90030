//! Small framed logs beside the partition logs: the clock-skew quarantine, the
//! request-id journal and the dead-letter queue, written by one per-shard writer
//! (`writer.rs`; the audit log will be its next user).

pub mod dlq;
pub mod frame;
pub mod journal;
pub mod quarantine;
pub mod writer;
