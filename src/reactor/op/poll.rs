//! Multishot `IORING_OP_POLL_ADD`: a completion each time a descriptor (the shard's
//! eventfd) becomes readable.

use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};

use super::Opcode;

pub const OPCODE: Opcode = Opcode { code: opcode::PollAdd::CODE, name: "IORING_OP_POLL_ADD", flags: squeue::Flags::empty() };

/// Completes every time `fd` is readable, until the kernel ends it.
pub fn readable_multishot(fd: RawFd, user_data: u64) -> squeue::Entry {
    opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32).multi(true).build().user_data(user_data)
}
