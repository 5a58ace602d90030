//! Multishot accept (`IORING_OP_ACCEPT` with the multishot ioprio bit): one entry keeps
//! posting a completion per accepted connection until it is cancelled or the kernel ends
//! it (no `IORING_CQE_F_MORE`), when the owner arms it again.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use io_uring::{opcode, squeue, types};

use super::Opcode;

pub const OPCODE: Opcode = Opcode { code: opcode::AcceptMulti::CODE, name: "IORING_OP_ACCEPT", flags: squeue::Flags::empty() };

/// Accepts on `listener` until cancelled.
pub fn multishot(listener: RawFd, user_data: u64) -> squeue::Entry {
    opcode::AcceptMulti::new(types::Fd(listener)).build().user_data(user_data)
}

/// The connection a successful accept completion delivered (`result` ≥ 0).
pub fn accepted(result: i32) -> OwnedFd {
    debug_assert!(result >= 0, "an accept error is not a descriptor");
    // SAFETY: a non-negative accept result is a descriptor the kernel has just installed
    // in this process for this completion; nothing else knows it, so taking ownership here
    // is the only owner there will be.
    unsafe { OwnedFd::from_raw_fd(result) }
}
