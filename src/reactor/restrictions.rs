//! What each ring may do once enabled (`IORING_REGISTER_RESTRICTIONS`, Linux ≥ 5.10).
//!
//! io_uring operations are not syscalls, so a seccomp filter (`SystemCallFilter=`) and
//! `RestrictAddressFamilies=` never see them: without a policy, code injected into sluice
//! could open files, create sockets or connect out through a shard's ring. Every ring is
//! therefore created disabled ([`super::setup`]), does all its registration, installs its
//! policy and only then is enabled ([`super::DisabledRing::enable`]). From then on the
//! kernel fails any SQE whose opcode is not listed, or whose flags are not allowed, with a
//! `-EACCES` completion, and refuses every `io_uring_register` call with `EACCES`: no
//! policy allows a register opcode, because nothing registers after enabling.

use io_uring::register::Restriction;
use io_uring::squeue;

use super::op::{self, Opcode};

/// The operations one kind of ring may submit. The same opcodes are probed at setup, so
/// a kernel that lacks one is named at start rather than at first use.
pub struct RingPolicy {
    /// Whose ring this is, for error messages.
    pub owner: &'static str,
    /// The SQE opcodes the ring may submit.
    pub opcodes: &'static [Opcode],
    /// The only SQE flags an entry may carry; an entry with any other is refused.
    pub sqe_flags: squeue::Flags,
}

/// A shard of `sluice serve` (`src/shard/`). Multishot accept is `IORING_OP_ACCEPT` with an
/// ioprio bit, multishot poll is `IORING_OP_POLL_ADD` with a poll flag, fdatasync is
/// `IORING_OP_FSYNC` with `IORING_FSYNC_DATASYNC`: none of them is another opcode or an SQE
/// flag. Receives carry `IOSQE_BUFFER_SELECT` (the provided buffer ring).
pub static SHARD: RingPolicy = RingPolicy {
    owner: "shard",
    opcodes: &[op::accept::OPCODE, op::recv::OPCODE, op::send::OPCODE, op::fsync::OPCODE, op::poll::OPCODE, op::cancel::OPCODE],
    sqe_flags: squeue::Flags::BUFFER_SELECT,
};

/// A thread of `sluice bench` (`src/tools/bench/engine/`): a connect linked to its timeout
/// (`IOSQE_IO_LINK`), multishot receives with buffer select, sends.
pub static BENCH: RingPolicy = RingPolicy {
    owner: "bench",
    opcodes: &[op::connect::OPCODE, op::connect::TIMEOUT_OPCODE, op::recv::OPCODE, op::send::OPCODE],
    sqe_flags: squeue::Flags::IO_LINK.union(squeue::Flags::BUFFER_SELECT),
};

impl RingPolicy {
    /// The restriction records for `IORING_REGISTER_RESTRICTIONS`: one per opcode and one
    /// for the allowed flags; no register opcode and no required flag.
    pub(super) fn restrictions(&self) -> Vec<Restriction> {
        let mut list: Vec<Restriction> = self.opcodes.iter().map(|opcode| Restriction::sqe_op(opcode.code)).collect();
        list.push(Restriction::sqe_flags_allowed(self.sqe_flags.bits()));
        list
    }

    pub fn allows(&self, code: u8) -> bool {
        self.opcodes.iter().any(|allowed| allowed.code == code)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::fs::File;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::{Duration, Instant};

    use io_uring::{IoUring, cqueue, opcode, squeue, types};

    use super::*;
    use crate::reactor::{self, bufring::BufRing};

    /// How long a test waits for one completion before it fails.
    const COMPLETION_WAIT_MS: u64 = 5_000;

    /// Identifiers that follow `prefix` in `source` (`opcode::Recv::new` → `Recv`), where
    /// `prefix` starts a path (`Nop::new` is not a use of `op::`).
    fn names_after<'a>(source: &'a str, prefix: &str) -> BTreeSet<&'a str> {
        source
            .match_indices(prefix)
            .filter(|(at, _)| source[..*at].chars().next_back().is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_'))
            .map(|(at, _)| {
                let rest = &source[at + prefix.len()..];
                &rest[..rest.find(|c: char| !c.is_ascii_alphanumeric() && c != '_').unwrap_or(rest.len())]
            })
            .filter(|name| !name.is_empty())
            .collect()
    }

    fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src/") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                out.push(path);
            }
        }
    }

    /// The guard against adding a submission without allowing it: entries are built only
    /// in `reactor/op/`, and every `op::X::` a ring's owner uses must have its opcodes and
    /// their SQE flags in that ring's policy. (Forgetting would otherwise surface as
    /// `-EACCES` completions at run time.)
    #[test]
    fn every_submitted_opcode_and_flag_is_in_its_rings_policy() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut checked = 0;
        for file in files {
            let relative = file.strip_prefix(&src).expect("under src/").to_string_lossy().into_owned();
            let source = std::fs::read_to_string(&file).expect("read source");
            if relative.starts_with("reactor/") {
                continue;
            }
            // lockdown.rs submits nothing but, in its test, a NOP on a plain ring of a forked child.
            let raw = names_after(&source, "opcode::");
            let test_only = relative == "platform/lockdown.rs" && raw.iter().all(|name| *name == "Nop");
            assert!(
                raw.is_empty() || test_only,
                "src/{relative} builds io_uring entries itself ({raw:?}): add an operation in src/reactor/op/"
            );
            let used = names_after(&source, "op::");
            if used.is_empty() {
                continue;
            }
            let policy = match relative.split('/').next() {
                Some("shard") => &SHARD,
                Some("tools") if relative.starts_with("tools/bench/") => &BENCH,
                _ => panic!(
                    "src/{relative} submits io_uring operations but no ring policy covers it: add one in src/reactor/restrictions.rs"
                ),
            };
            for name in used {
                let Some((_, opcodes)) = op::ALL.iter().find(|(known, _)| *known == name) else {
                    panic!("src/{relative} uses op::{name}, which is not in reactor::op::ALL")
                };
                for opcode in *opcodes {
                    assert!(
                        policy.allows(opcode.code),
                        "src/{relative} submits {}, which the {} policy does not allow",
                        opcode.name,
                        policy.owner
                    );
                    assert!(
                        policy.sqe_flags.contains(opcode.flags),
                        "{} sets {:?}, which the {} policy does not allow",
                        opcode.name,
                        opcode.flags,
                        policy.owner
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked >= SHARD.opcodes.len(), "the scan found the submissions ({checked} opcode uses)");
    }

    /// A ring built the way `Shard::new` builds it: disabled, buffer ring registered, locked.
    fn shard_ring() -> (IoUring, BufRing) {
        let (disabled, _features) = reactor::setup(&SHARD).expect("io_uring available");
        let buffers = BufRing::register(&disabled, 0, 8, 4096).expect("buffer ring");
        (disabled.enable().expect("restrictions and enable"), buffers)
    }

    /// Waits for the first completion of `user_data`, dropping others on the way.
    fn wait_for(ring: &mut IoUring, user_data: u64) -> cqueue::Entry {
        let deadline = Instant::now() + Duration::from_millis(COMPLETION_WAIT_MS);
        while Instant::now() < deadline {
            reactor::submit_and_wait(ring, Some(Duration::from_millis(100))).expect("submit");
            if let Some(cqe) = ring.completion().find(|cqe| cqe.user_data() == user_data) {
                return cqe;
            }
        }
        panic!("no completion for user_data {user_data} within {COMPLETION_WAIT_MS} ms");
    }

    /// Submits `entry` as `user_data` and returns its first completion.
    fn complete(ring: &mut IoUring, entry: squeue::Entry, user_data: u64) -> cqueue::Entry {
        reactor::push(ring, &entry.user_data(user_data)).expect("push");
        wait_for(ring, user_data)
    }

    #[test]
    fn a_shard_ring_runs_every_operation_of_its_policy() {
        let (mut ring, buffers) = shard_ring();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let accept = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd())).build().user_data(1);
        reactor::push(&mut ring, &accept).expect("push");
        ring.submit().expect("submit");
        let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let accepted = wait_for(&mut ring, 1).result();
        assert!(accepted >= 0, "multishot accept: {accepted}");
        // SAFETY: a successful accept completion's result is a new descriptor nothing else owns.
        let server = unsafe { OwnedFd::from_raw_fd(accepted) };
        let fd = types::Fd(server.as_raw_fd());

        client.write_all(b"ping").expect("client write");
        let recv = opcode::Recv::new(fd, std::ptr::null_mut(), 4096).buf_group(0).build().flags(squeue::Flags::BUFFER_SELECT);
        let received = complete(&mut ring, recv, 2);
        assert_eq!(received.result(), 4, "recv with buffer select");
        let bid = cqueue::buffer_select(received.flags()).expect("a provided buffer");
        assert_eq!(buffers.data(bid, 4), b"ping");

        let answer = b"pong";
        let send = opcode::Send::new(fd, answer.as_ptr(), answer.len() as u32).flags(libc::MSG_NOSIGNAL).build();
        assert_eq!(complete(&mut ring, send, 3).result(), 4, "send");
        let mut read = [0u8; 4];
        client.read_exact(&mut read).expect("client read");
        assert_eq!(&read, answer);

        client.write_all(b"x").expect("client write");
        let poll = opcode::PollAdd::new(fd, libc::POLLIN as u32).multi(true).build();
        assert!(complete(&mut ring, poll, 4).result() & i32::from(libc::POLLIN) != 0, "multishot poll");
        assert_eq!(complete(&mut ring, opcode::AsyncCancel::new(4).build(), 5).result(), 0, "async cancel of the poll");

        let file = tempfile::tempfile().expect("temp file");
        let fsync = opcode::Fsync::new(types::Fd(file.as_raw_fd())).flags(types::FsyncFlags::DATASYNC).build();
        assert_eq!(complete(&mut ring, fsync, 6).result(), 0, "fdatasync");
    }

    #[test]
    fn a_shard_ring_refuses_other_opcodes_flags_and_registrations() {
        let (mut ring, _buffers) = shard_ring();
        let path = std::ffi::CString::new(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).expect("path");
        File::open(path.to_str().expect("utf-8")).expect("the file itself can be opened");
        let openat = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), path.as_ptr()).flags(libc::O_RDONLY | libc::O_CLOEXEC).build();
        assert_eq!(complete(&mut ring, openat, 1).result(), -libc::EACCES, "IORING_OP_OPENAT");
        let socket = opcode::Socket::new(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0).build();
        assert_eq!(complete(&mut ring, socket, 2).result(), -libc::EACCES, "IORING_OP_SOCKET");
        assert_eq!(complete(&mut ring, opcode::Nop::new().build(), 3).result(), -libc::EACCES, "IORING_OP_NOP");

        let file = tempfile::tempfile().expect("temp file");
        let forced_async = opcode::Fsync::new(types::Fd(file.as_raw_fd())).build().flags(squeue::Flags::ASYNC);
        assert_eq!(complete(&mut ring, forced_async, 4).result(), -libc::EACCES, "an allowed opcode with IOSQE_ASYNC");

        let refused = |result: std::io::Result<()>| result.err().and_then(|error| error.raw_os_error());
        let mut probe = io_uring::Probe::new();
        assert_eq!(refused(ring.submitter().register_probe(&mut probe)), Some(libc::EACCES), "IORING_REGISTER_PROBE");
        assert_eq!(refused(ring.submitter().register_files(&[file.as_raw_fd()])), Some(libc::EACCES), "IORING_REGISTER_FILES");
        assert_eq!(refused(ring.submitter().unregister_buf_ring(0)), Some(libc::EACCES), "IORING_UNREGISTER_PBUF_RING");
    }

    #[test]
    fn a_bench_ring_refuses_what_it_does_not_submit() {
        let (disabled, _features) = reactor::setup(&BENCH).expect("io_uring available");
        let mut ring = disabled.enable().expect("restrictions and enable");
        let file = tempfile::tempfile().expect("temp file");
        let fsync = opcode::Fsync::new(types::Fd(file.as_raw_fd())).build();
        assert_eq!(complete(&mut ring, fsync, 1).result(), -libc::EACCES, "IORING_OP_FSYNC");
        let socket = opcode::Socket::new(libc::AF_INET, libc::SOCK_STREAM, 0).build();
        assert_eq!(complete(&mut ring, socket, 2).result(), -libc::EACCES, "IORING_OP_SOCKET");
    }

    #[test]
    fn restriction_records_are_one_per_opcode_plus_the_flags() {
        assert_eq!(SHARD.restrictions().len(), SHARD.opcodes.len() + 1);
        assert_eq!(BENCH.restrictions().len(), BENCH.opcodes.len() + 1);
    }
}
