//! `IORING_OP_FSYNC` with `IORING_FSYNC_DATASYNC`: the group commit's fdatasync, run by
//! the kernel's io-wq workers while the shard goes on serving.

use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};

use super::Opcode;

pub const OPCODE: Opcode = Opcode { code: opcode::Fsync::CODE, name: "IORING_OP_FSYNC", flags: squeue::Flags::empty() };

/// fdatasync of `fd`.
pub fn datasync(fd: RawFd, user_data: u64) -> squeue::Entry {
    opcode::Fsync::new(types::Fd(fd)).flags(types::FsyncFlags::DATASYNC).build().user_data(user_data)
}
