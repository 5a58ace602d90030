//! `IORING_OP_CONNECT` linked to an `IORING_OP_LINK_TIMEOUT` (`IOSQE_IO_LINK`), for the
//! bench client: a connect that does not finish within the timeout is cancelled.

use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};

use super::Opcode;

pub const OPCODE: Opcode = Opcode { code: opcode::Connect::CODE, name: "IORING_OP_CONNECT", flags: squeue::Flags::IO_LINK };
pub const TIMEOUT_OPCODE: Opcode =
    Opcode { code: opcode::LinkTimeout::CODE, name: "IORING_OP_LINK_TIMEOUT", flags: squeue::Flags::empty() };

/// The linked pair: connect `fd` to `addr`, cancelled after `timeout`. Both must reach the
/// kernel in the same submission, and `addr` and `timeout` must stay where they are
/// until both complete.
pub fn with_timeout(
    fd: RawFd,
    addr: &socket2::SockAddr,
    timeout: &types::Timespec,
    connect_data: u64,
    timeout_data: u64,
) -> [squeue::Entry; 2] {
    let connect = opcode::Connect::new(types::Fd(fd), addr.as_ptr().cast(), addr.len()).build().flags(OPCODE.flags).user_data(connect_data);
    let timeout = opcode::LinkTimeout::new(timeout).build().user_data(timeout_data);
    [connect, timeout]
}
