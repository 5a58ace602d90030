//! One framed request in, one answer out: routing by path, the envelope of each event,
//! and the hand-off of each event to the shard that owns its partition.

pub mod envelope;
pub mod handle;
