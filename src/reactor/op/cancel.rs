//! `IORING_OP_ASYNC_CANCEL`: ends the operation submitted with a given user_data (a
//! multishot accept at drain).

use io_uring::{opcode, squeue};

use super::Opcode;

pub const OPCODE: Opcode = Opcode { code: opcode::AsyncCancel::CODE, name: "IORING_OP_ASYNC_CANCEL", flags: squeue::Flags::empty() };

/// Cancels the operation submitted as `target`; its own completion carries `user_data`.
pub fn by_user_data(target: u64, user_data: u64) -> squeue::Entry {
    opcode::AsyncCancel::new(target).build().user_data(user_data)
}
