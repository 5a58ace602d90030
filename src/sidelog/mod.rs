//! Small framed logs beside the partition logs: the clock-skew quarantine and the
//! request-id journal, written by one per-shard writer (`writer.rs`; the dead-letter
//! queue and the audit log will be its next users).

pub mod frame;
pub mod journal;
pub mod quarantine;
pub mod writer;
