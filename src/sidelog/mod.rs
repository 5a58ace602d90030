//! Small framed logs beside the partition logs: the clock-skew quarantine and the
//! request-id journal (the dead-letter queue and the audit log will join them).

pub mod frame;
pub mod journal;
pub mod quarantine;
