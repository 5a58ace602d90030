//! `IORING_OP_SEND` with `MSG_NOSIGNAL` (a peer that went away is an error completion,
//! not a SIGPIPE).

use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};

use super::Opcode;

pub const OPCODE: Opcode = Opcode { code: opcode::Send::CODE, name: "IORING_OP_SEND", flags: squeue::Flags::empty() };

/// Sends `bytes` (at most `u32::MAX` of them); they must stay in place until the
/// completion arrives (the owner parks the buffer in its slot meanwhile).
pub fn bytes(fd: RawFd, bytes: &[u8], user_data: u64) -> squeue::Entry {
    let length = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    opcode::Send::new(types::Fd(fd), bytes.as_ptr(), length).flags(libc::MSG_NOSIGNAL).build().user_data(user_data)
}
