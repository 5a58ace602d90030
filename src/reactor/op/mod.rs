//! One file per io_uring operation sluice submits: each builds its submission entries
//! and names the opcode and SQE flags they use, so a ring's policy
//! ([`super::restrictions`]) is written from the same constants the builders use, and
//! nothing outside `reactor/` builds an entry by hand.

pub mod accept;
pub mod cancel;
pub mod connect;
pub mod fsync;
pub mod poll;
pub mod recv;
pub mod send;

use io_uring::squeue;

/// One opcode as a policy lists it: the kernel's number and name, and the SQE flags an
/// entry of this operation carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opcode {
    pub code: u8,
    pub name: &'static str,
    pub flags: squeue::Flags,
}

/// Every operation file with the opcodes it submits (for the policy test).
pub const ALL: [(&str, &[Opcode]); 7] = [
    ("accept", &[accept::OPCODE]),
    ("cancel", &[cancel::OPCODE]),
    ("connect", &[connect::OPCODE, connect::TIMEOUT_OPCODE]),
    ("fsync", &[fsync::OPCODE]),
    ("poll", &[poll::OPCODE]),
    ("recv", &[recv::OPCODE]),
    ("send", &[send::OPCODE]),
];
