//! `IORING_OP_RECV` with `IOSQE_BUFFER_SELECT`: the kernel picks a buffer from the
//! provided buffer ring when data arrives, so an idle connection pins no receive memory.

use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};

use super::Opcode;
use crate::reactor::bufring::BufRing;

pub const OPCODE: Opcode = Opcode { code: opcode::Recv::CODE, name: "IORING_OP_RECV", flags: squeue::Flags::BUFFER_SELECT };
const _: () = assert!(opcode::Recv::CODE == opcode::RecvMulti::CODE);

/// One receive into a buffer of `buffers`; the owner arms the next one when it wants
/// more (that is its backpressure).
pub fn single(fd: RawFd, buffers: &BufRing, user_data: u64) -> squeue::Entry {
    opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), buffers.buffer_bytes())
        .buf_group(buffers.group())
        .build()
        .flags(OPCODE.flags)
        .user_data(user_data)
}

/// Receives until the connection ends, one completion per buffer filled.
pub fn multishot(fd: RawFd, buffers: &BufRing, user_data: u64) -> squeue::Entry {
    opcode::RecvMulti::new(types::Fd(fd), buffers.group()).build().user_data(user_data)
}
