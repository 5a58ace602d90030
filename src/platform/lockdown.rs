//! Once every shard ring exists, the process may not create or re-register a ring.
//!
//! The shard rings are locked to their operations (`IORING_REGISTER_RESTRICTIONS`,
//! [`crate::reactor::restrictions`]), but that binds the rings, not the process: the
//! unit's `SystemCallFilter=` must allow `io_uring_setup` for start-up, so code that can
//! make arbitrary syscalls could create a fresh, unrestricted ring and reach files and
//! sockets past the filter. [`install`] closes that once `serve()` has seen every shard
//! ring set up, registered, restricted and enabled: a seccomp filter on every thread of
//! the process answers `io_uring_setup` and `io_uring_register` with `EPERM` and lets
//! every other call through (`io_uring_enter`, which the shards submit with, included).
//! Threads started later (the admin listener) inherit it; nothing removes it.
//!
//! The filter is a classic BPF program of eight or nine instructions ([`PROGRAM`]):
//!
//! ```text
//!   A = seccomp_data.arch
//!   if A != the native AUDIT_ARCH: kill the process
//!   A = seccomp_data.nr
//!   A &= !__X32_SYSCALL_BIT                (x86_64 only: the x32 numbers of the two calls)
//!   if A == io_uring_setup or A == io_uring_register: fail with EPERM
//!   allow
//! ```
//!
//! A call from another ABI (i386 `int 0x80` on x86_64) kills the process: sluice never
//! makes one, so such a call can only be injected code going around the number test,
//! and a `SIGSYS` death is loud in the journal (the unit's `SystemCallArchitectures=native`
//! refuses them as well). Architectures other than x86_64 and aarch64 get no filter:
//! [`install`] says so and `serve()` logs it.

use std::io;

use crate::platform::sys;

/// Why the filter is not in force; `serve()` logs it and goes on without the lockdown.
#[derive(Debug, thiserror::Error)]
pub enum LockdownError {
    #[error("no seccomp program for {arch} (sluice has one for x86_64 and aarch64)")]
    UnsupportedArch { arch: &'static str },
    #[error("prctl(PR_SET_NO_NEW_PRIVS): {source}")]
    NoNewPrivs { source: io::Error },
    #[error(
        "seccomp(SECCOMP_SET_MODE_FILTER, TSYNC): {source} (a kernel without CONFIG_SECCOMP_FILTER, or a container profile that refuses seccomp itself)"
    )]
    Install { source: io::Error },
    #[error("thread {tid} cannot take the filter: it runs a seccomp filter this thread does not have")]
    ThreadSync { tid: libc::c_long },
}

/// The ABI seccomp reports for a call, and the bit x32 calls carry in their number.
#[cfg(target_arch = "x86_64")]
mod native {
    /// `AUDIT_ARCH_X86_64` (linux/audit.h): `EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
    pub const AUDIT_ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    /// `__X32_SYSCALL_BIT` (asm/unistd.h). x32 calls also report `AUDIT_ARCH_X86_64`; their
    /// number is the x86_64 number of the same call with this bit set, for both io_uring calls.
    pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;
}

#[cfg(target_arch = "aarch64")]
mod native {
    /// `AUDIT_ARCH_AARCH64` (linux/audit.h): `EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
    /// A 64-bit task cannot make AArch32 calls, so there is no second ABI to cover.
    pub const AUDIT_ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000;
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod program {
    use libc::{BPF_ABS, BPF_ALU, BPF_AND, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, sock_filter};

    use super::native;

    /// Where the kernel's `struct seccomp_data` keeps the call number and the ABI.
    const NR_OFFSET: u32 = std::mem::offset_of!(libc::seccomp_data, nr) as u32;
    const ARCH_OFFSET: u32 = std::mem::offset_of!(libc::seccomp_data, arch) as u32;

    /// 425 and 427 on both architectures (the unified numbers of calls added since 5.1).
    pub const IO_URING_SETUP: u32 = libc::SYS_io_uring_setup as u32;
    pub const IO_URING_REGISTER: u32 = libc::SYS_io_uring_register as u32;

    /// What the filter answers the two calls: the call fails with `EPERM`, nothing else happens.
    pub const REFUSE: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

    const fn statement(code: u32, k: u32) -> sock_filter {
        sock_filter { code: code as u16, jt: 0, jf: 0, k }
    }

    /// `if A == k` jump `when_equal` instructions forward, else fall through.
    const fn jump_if_equal(k: u32, when_equal: u8) -> sock_filter {
        sock_filter { code: (BPF_JMP | BPF_JEQ | BPF_K) as u16, jt: when_equal, jf: 0, k }
    }

    #[cfg(target_arch = "x86_64")]
    pub const LEN: usize = 9;
    #[cfg(target_arch = "aarch64")]
    pub const LEN: usize = 8;

    /// The filter; jump offsets count from the instruction after the jump.
    pub const PROGRAM: [sock_filter; LEN] = [
        statement(BPF_LD | BPF_W | BPF_ABS, ARCH_OFFSET),
        jump_if_equal(native::AUDIT_ARCH, 1),
        statement(BPF_RET | BPF_K, libc::SECCOMP_RET_KILL_PROCESS),
        statement(BPF_LD | BPF_W | BPF_ABS, NR_OFFSET),
        #[cfg(target_arch = "x86_64")]
        statement(BPF_ALU | BPF_AND | BPF_K, !native::X32_SYSCALL_BIT),
        jump_if_equal(IO_URING_SETUP, 2),
        jump_if_equal(IO_URING_REGISTER, 1),
        statement(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW),
        statement(BPF_RET | BPF_K, REFUSE),
    ];

    // The kernel takes at most BPF_MAXINSNS (4096) instructions; the length goes in a u16.
    const _: () = assert!(LEN == PROGRAM.len() && LEN <= 4096);
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub use program::PROGRAM;

/// Installs the filter on every thread of the process (`SECCOMP_FILTER_FLAG_TSYNC`); from
/// then on `io_uring_setup` and `io_uring_register` fail with `EPERM` in this process and
/// every thread or child it starts. Rings that already exist keep working: submitting
/// and reaping is `io_uring_enter`, which stays allowed. It cannot be undone.
///
/// It first sets `PR_SET_NO_NEW_PRIVS`, which an unprivileged process needs before it may
/// install a filter (the unit sets `NoNewPrivileges=yes` anyway); that bit is also
/// irreversible and spreads to every thread with the filter.
///
/// It neither allocates nor takes a lock, so a forked child may call it.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub fn install() -> Result<(), LockdownError> {
    sys::set_no_new_privs().map_err(|source| LockdownError::NoNewPrivs { source })?;
    match sys::install_seccomp_filter_all_threads(&PROGRAM) {
        Ok(0) => Ok(()),
        // With TSYNC a positive result is the id of a thread that could not be synchronised.
        Ok(tid) => Err(LockdownError::ThreadSync { tid }),
        Err(source) => Err(LockdownError::Install { source }),
    }
}

/// No program for this architecture: the lockdown is skipped, and `serve()` says so.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn install() -> Result<(), LockdownError> {
    Err(LockdownError::UnsupportedArch { arch: std::env::consts::ARCH })
}

#[cfg(all(test, any(target_arch = "x86_64", target_arch = "aarch64")))]
mod tests {
    use libc::sock_filter;

    use super::native::AUDIT_ARCH;
    use super::program::{IO_URING_REGISTER, IO_URING_SETUP, REFUSE};
    use super::*;
    use crate::platform::sys::probes;

    /// Runs `program` the way the kernel would for a call `nr` from ABI `arch`; handles
    /// exactly the instructions the filter uses and fails on any other, or on a jump out
    /// of the program.
    fn run(program: &[sock_filter], nr: u32, arch: u32) -> u32 {
        let (mut accumulator, mut pc) = (0u32, 0usize);
        loop {
            let instruction = program.get(pc).unwrap_or_else(|| panic!("ran off the end at {pc}"));
            pc += 1;
            let code = u32::from(instruction.code);
            match code {
                _ if code == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    accumulator = match instruction.k {
                        0 => nr,
                        4 => arch,
                        other => panic!("load from offset {other}"),
                    }
                }
                _ if code == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => accumulator &= instruction.k,
                _ if code == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => {
                    pc += usize::from(if accumulator == instruction.k { instruction.jt } else { instruction.jf });
                }
                _ if code == libc::BPF_RET | libc::BPF_K => return instruction.k,
                other => panic!("instruction code {other:#x} the interpreter does not know"),
            }
        }
    }

    #[test]
    fn the_program_refuses_exactly_the_two_calls_and_kills_other_abis() {
        let allow = libc::SECCOMP_RET_ALLOW;
        assert_eq!(run(&PROGRAM, IO_URING_SETUP, AUDIT_ARCH), REFUSE, "io_uring_setup");
        assert_eq!(run(&PROGRAM, IO_URING_REGISTER, AUDIT_ARCH), REFUSE, "io_uring_register");
        assert_eq!(run(&PROGRAM, libc::SYS_io_uring_enter as u32, AUDIT_ARCH), allow, "io_uring_enter");
        for nr in [libc::SYS_read, libc::SYS_write, libc::SYS_close, libc::SYS_seccomp, 424, 426, 428] {
            assert_eq!(run(&PROGRAM, nr as u32, AUDIT_ARCH), allow, "syscall {nr}");
        }
        // i386 on x86_64 (AUDIT_ARCH_I386), AArch32 on aarch64 (AUDIT_ARCH_ARM), anything else.
        for arch in [0x4000_0003, 0x4000_0028, 0, u32::MAX] {
            assert_eq!(run(&PROGRAM, IO_URING_SETUP, arch), libc::SECCOMP_RET_KILL_PROCESS, "arch {arch:#x}");
            assert_eq!(run(&PROGRAM, libc::SYS_read as u32, arch), libc::SECCOMP_RET_KILL_PROCESS, "arch {arch:#x}");
        }
        #[cfg(target_arch = "x86_64")]
        {
            let x32 = super::native::X32_SYSCALL_BIT;
            assert_eq!(run(&PROGRAM, x32 | IO_URING_SETUP, AUDIT_ARCH), REFUSE, "x32 io_uring_setup");
            assert_eq!(run(&PROGRAM, x32 | IO_URING_REGISTER, AUDIT_ARCH), REFUSE, "x32 io_uring_register");
            assert_eq!(run(&PROGRAM, x32 | libc::SYS_io_uring_enter as u32, AUDIT_ARCH), allow, "x32 io_uring_enter");
            assert_eq!(run(&PROGRAM, x32 | libc::SYS_read as u32, AUDIT_ARCH), allow, "x32 read: ENOSYS or x32's own");
        }
    }

    #[test]
    fn the_program_is_encoded_as_the_kernel_reads_it() {
        let words: Vec<(u16, u8, u8, u32)> = PROGRAM.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect();
        assert_eq!(words[0], (0x20, 0, 0, 4), "ld [4]: seccomp_data.arch");
        assert_eq!(words[1], (0x15, 1, 0, AUDIT_ARCH), "jeq native, skip the kill");
        assert_eq!(words[2], (0x06, 0, 0, 0x8000_0000), "ret SECCOMP_RET_KILL_PROCESS");
        assert_eq!(words[3], (0x20, 0, 0, 0), "ld [0]: seccomp_data.nr");
        assert_eq!(words[words.len() - 2], (0x06, 0, 0, 0x7fff_0000), "ret SECCOMP_RET_ALLOW");
        assert_eq!(words[words.len() - 1], (0x06, 0, 0, 0x0005_0001), "ret SECCOMP_RET_ERRNO | EPERM");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(words[4], (0x54, 0, 0, 0xbfff_ffff), "and #~__X32_SYSCALL_BIT");
        assert_eq!(AUDIT_ARCH, if cfg!(target_arch = "x86_64") { 0xc000_003e } else { 0xc000_00b7 });
        assert_eq!((IO_URING_SETUP, IO_URING_REGISTER), (425, 427));
    }

    /// Exit codes of the forked child: which check failed.
    const CHILD_OK: i32 = 0;
    const CHILD_RING_BEFORE: i32 = 10;
    const CHILD_INSTALL: i32 = 11;
    const CHILD_SETUP_ALLOWED: i32 = 12;
    const CHILD_SETUP_NOT_EPERM: i32 = 13;
    const CHILD_REGISTER_NOT_EPERM: i32 = 14;
    const CHILD_ENTER_REFUSED: i32 = 15;
    const CHILD_NOP_SUBMIT: i32 = 16;
    const CHILD_NOP_RESULT: i32 = 17;
    const CHILD_OLD_RING_REGISTER_NOT_EPERM: i32 = 18;
    const CHILD_NO_SECCOMP_MODE: i32 = 19;

    fn errno() -> i32 {
        io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    /// The checks, in the forked child. Only system calls and the io-uring crate's ring
    /// setup (mmap, no allocation, no lock) run here: the parent has other threads, and a
    /// lock one of them held at the fork would never be released in the child.
    fn child_checks() -> i32 {
        use io_uring::{IoUring, opcode};
        // A plain, unrestricted ring made before the filter: it must keep working after.
        let Ok(mut ring) = IoUring::new(2) else { return CHILD_RING_BEFORE };
        if install().is_err() {
            return CHILD_INSTALL;
        }
        if probes::seccomp_mode() != libc::SECCOMP_MODE_FILTER as i32 {
            return CHILD_NO_SECCOMP_MODE;
        }
        if probes::io_uring_setup() >= 0 {
            return CHILD_SETUP_ALLOWED;
        }
        if errno() != libc::EPERM {
            return CHILD_SETUP_NOT_EPERM;
        }
        if probes::io_uring_register_nothing() != -1 || errno() != libc::EPERM {
            return CHILD_REGISTER_NOT_EPERM;
        }
        let entered = probes::io_uring_enter_nothing();
        if entered == -1 && errno() == libc::EPERM {
            return CHILD_ENTER_REFUSED;
        }
        let nop = opcode::Nop::new().build().user_data(7);
        if probes::submit_nop(&mut ring, &nop).is_err() {
            return CHILD_NOP_SUBMIT;
        }
        match ring.completion().next() {
            Some(cqe) if cqe.user_data() == 7 && cqe.result() == 0 => {}
            _ => return CHILD_NOP_RESULT,
        }
        let mut probe = io_uring::Probe::new();
        match ring.submitter().register_probe(&mut probe) {
            Err(error) if error.raw_os_error() == Some(libc::EPERM) => CHILD_OK,
            _ => CHILD_OLD_RING_REGISTER_NOT_EPERM,
        }
    }

    /// From inside a process: after [`install`], `io_uring_setup` and `io_uring_register`
    /// fail with `EPERM` (also for a ring that existed before), `io_uring_enter` is not
    /// refused, and a ring made before the filter still runs a NOP. In a forked child,
    /// so the test process itself stays unfiltered.
    #[test]
    fn after_install_rings_cannot_be_made_or_registered_but_old_rings_run() {
        let status = probes::in_forked_child(child_checks).expect("fork and wait");
        assert!(libc::WIFEXITED(status), "the child did not exit normally (signal {})", libc::WTERMSIG(status));
        let failed = match libc::WEXITSTATUS(status) {
            CHILD_OK => return,
            CHILD_RING_BEFORE => "could not create a plain ring before the filter (io_uring unavailable?)",
            CHILD_INSTALL => "install() failed",
            CHILD_NO_SECCOMP_MODE => "PR_GET_SECCOMP is not SECCOMP_MODE_FILTER after install()",
            CHILD_SETUP_ALLOWED => "io_uring_setup succeeded after install()",
            CHILD_SETUP_NOT_EPERM => "io_uring_setup failed, but not with EPERM",
            CHILD_REGISTER_NOT_EPERM => "io_uring_register did not fail with EPERM",
            CHILD_ENTER_REFUSED => "io_uring_enter was refused with EPERM",
            CHILD_NOP_SUBMIT => "submitting a NOP on the ring made before the filter failed",
            CHILD_NOP_RESULT => "the NOP on the ring made before the filter did not complete with 0",
            CHILD_OLD_RING_REGISTER_NOT_EPERM => "io_uring_register on the ring made before the filter was not refused with EPERM",
            _ => "unknown exit code",
        };
        panic!("child exit {}: {failed}", libc::WEXITSTATUS(status));
    }
}
