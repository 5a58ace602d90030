//! One framed request in, one answer out: the endpoints (`route.rs`), the ingest paths
//! (`handle.rs`: admission, request ids, the envelope of each event, the hand-off to the
//! shard that owns its partition), the answers (`answer.rs`) and the one table of
//! refusals (`refusal.rs`); what refused requests leave in the dead-letter queue
//! (`dead_letters.rs`).

pub mod answer;
pub mod dead_letters;
pub mod envelope;
pub mod handle;
pub mod refusal;
mod route;
