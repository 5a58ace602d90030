//! The commands besides `serve`: the load harness, the box check, `tail`, and the
//! quarantine's list and replay.

pub mod bench;
pub mod quarantine;
pub mod tail;
pub mod tune;
