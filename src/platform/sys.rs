//! The system calls sluice makes that neither std nor socket2 wraps, each behind a safe
//! function. With the reactor and the log's mappings, this is the only module allowed
//! `unsafe`; every block says why it holds.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An eventfd (`EFD_NONBLOCK | EFD_CLOEXEC`): another thread writes to wake the owner's
/// ring, which polls it readable.
#[derive(Debug)]
pub struct EventFd(File);

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a descriptor the
        // kernel just created for us and nothing else owns.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above, `fd` is ours alone.
        Ok(EventFd(File::from(unsafe { OwnedFd::from_raw_fd(fd) })))
    }

    /// Adds one to the counter, making the descriptor readable. Never blocks: a counter
    /// at its maximum (which 2^64 - 2 wake-ups would take) is already readable.
    pub fn notify(&self) {
        let _ = (&self.0).write(&1u64.to_ne_bytes());
    }

    /// Resets the counter (the owner has woken up).
    pub fn reset(&self) {
        let mut counter = [0u8; 8];
        let _ = (&self.0).read(&mut counter);
    }

    pub fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: `Ok(false)` if another open file description holds it.
pub fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    // SAFETY: flock takes a descriptor `file` keeps open and integer flags; no memory.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EWOULDBLOCK) { Ok(false) } else { Err(error) }
}

/// `fallocate(mode, offset, length)` on `file`.
pub fn fallocate(file: &File, mode: libc::c_int, offset: u64, length: u64) -> io::Result<()> {
    let invalid = |_| io::Error::from_raw_os_error(libc::EFBIG);
    let (offset, length) = (libc::off_t::try_from(offset).map_err(invalid)?, libc::off_t::try_from(length).map_err(invalid)?);
    // SAFETY: plain syscall on a descriptor `file` keeps open; no memory is passed.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), mode, offset, length) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Bytes an unprivileged user may still write on the file system holding `path`.
pub fn available_bytes(path: &std::path::Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `stats` is a writable statvfs-sized buffer.
    if unsafe { libc::statvfs(path.as_ptr(), stats.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `stats`.
    let stats = unsafe { stats.assume_init() };
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// The end of the last stretch of `file` below `to` that may hold data, searching from
/// `from` with `SEEK_DATA`/`SEEK_HOLE`: every byte from there to `to` reads as zero (a
/// hole or an unwritten extent). `to` when the file system cannot say.
pub fn data_end(file: &File, from: u64, to: u64) -> u64 {
    let seek = |offset: u64, whence: libc::c_int| -> Option<u64> {
        let offset = libc::off_t::try_from(offset).ok()?;
        // SAFETY: plain syscall on a descriptor `file` keeps open; no memory is passed.
        let found = unsafe { libc::lseek(file.as_raw_fd(), offset, whence) };
        u64::try_from(found).ok()
    };
    let mut end = from;
    let mut at = from;
    // Bounded: every pass moves `at` forward to the end of a data stretch, below `to`.
    while at < to {
        let Some(data) = seek(at, libc::SEEK_DATA) else {
            // ENXIO: no data after `at`. Anything else: unknown, assume data to the end.
            return if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) { end } else { to };
        };
        if data >= to {
            break;
        }
        let Some(hole) = seek(data, libc::SEEK_HOLE) else { return to };
        end = hole.min(to);
        if hole <= at {
            return to;
        }
        at = hole;
    }
    end
}

/// A resource limit: `(soft, hard)`, `RLIM_INFINITY` as the kernel gives it.
pub fn getrlimit(resource: libc::__rlimit_resource_t) -> io::Result<(libc::rlim_t, libc::rlim_t)> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into memory we own for the call.
    if unsafe { libc::getrlimit(resource, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

pub fn setrlimit(resource: libc::__rlimit_resource_t, soft: libc::rlim_t, hard: libc::rlim_t) -> io::Result<()> {
    let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: setrlimit reads one rlimit from memory we own for the call.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether this process may create files in `dir` (`access(W_OK | X_OK)`, which counts
/// the effective user's capabilities as the kernel would).
pub fn dir_writable(dir: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return false };
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// `CLOCK_MONOTONIC` in microseconds (what systemd's `MONOTONIC_USEC=` means).
pub fn monotonic_usec() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid pointer to a timespec we own; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut now) };
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`: irreversible; needed before an unprivileged process
/// may install a seccomp filter.
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only; it touches no memory of ours.
    let rc =
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, program)`: `Ok(0)` when
/// installed on every thread, `Ok(tid)` naming a thread that could not be synchronised.
/// Neither allocates nor locks, so a forked child may call it.
pub fn install_seccomp_filter_all_threads(program: &[libc::sock_filter]) -> io::Result<i64> {
    let len = libc::c_ushort::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let fprog = libc::sock_fprog { len, filter: program.as_ptr().cast_mut() };
    // SAFETY: `fprog` points at `program`, `len` valid instructions that outlive the call;
    // the kernel copies (and validates) them and keeps no pointer, and never writes
    // through `filter`. The other arguments are integers, passed as the longs it reads.
    let result = unsafe {
        libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong, libc::SECCOMP_FILTER_FLAG_TSYNC, &raw const fprog)
    };
    if result < 0 { Err(io::Error::last_os_error()) } else { Ok(result) }
}

/// Fixes glibc's mmap threshold at its default (128 KiB), turning off its dynamic
/// growth: every buffer of a large body is then its own mapping, returned to the kernel
/// when freed, so what a burst of large bodies took (within the memory budget) does not
/// stay in the heap after them (docs/OPERATIONS.md § Memory budget). True if applied.
pub fn fix_mmap_threshold() -> bool {
    // SAFETY: mallopt takes two integers and changes allocator settings only; it is
    // called once at start, before the shards run.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) == 1 }
}

/// Raw calls the lockdown test makes in a forked child to see the filter at work.
#[cfg(test)]
pub mod probes {
    use std::io;

    /// `PR_GET_SECCOMP`: the calling thread's seccomp mode.
    pub fn seccomp_mode() -> i32 {
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong) }
    }

    /// `io_uring_setup(2, zeroed params)`: the new ring's descriptor or -1.
    pub fn io_uring_setup() -> i64 {
        // struct io_uring_params (120 bytes, 8-aligned), zeroed: a plain ring.
        let mut params = [0u64; 15];
        // SAFETY: io_uring_setup reads and writes at most sizeof(struct io_uring_params)
        // bytes of `params`, which lives across the call.
        unsafe { libc::syscall(libc::SYS_io_uring_setup, 2 as libc::c_long, params.as_mut_ptr()) }
    }

    /// `io_uring_register(-1, 0, NULL, 0)`.
    pub fn io_uring_register_nothing() -> i64 {
        // SAFETY: integer arguments and a null pointer the kernel never reaches (refused first).
        unsafe { libc::syscall(libc::SYS_io_uring_register, -1 as libc::c_long, 0 as libc::c_long, 0usize, 0 as libc::c_long) }
    }

    /// `io_uring_enter(-1, ...)`: fails with EBADF unless a filter refuses it first.
    pub fn io_uring_enter_nothing() -> i64 {
        // SAFETY: integer arguments and a null signal mask; fd -1 fails with EBADF.
        unsafe {
            libc::syscall(
                libc::SYS_io_uring_enter,
                -1 as libc::c_long,
                0 as libc::c_long,
                0 as libc::c_long,
                0 as libc::c_long,
                0usize,
                0 as libc::c_long,
            )
        }
    }

    /// Submits `entry` (which points at no memory) to `ring` and waits for it.
    pub fn submit_nop(ring: &mut io_uring::IoUring, entry: &io_uring::squeue::Entry) -> io::Result<()> {
        // SAFETY: a NOP points at no memory.
        unsafe { ring.submission().push(entry) }.map_err(|_| io::Error::other("submission queue full"))?;
        ring.submit_and_wait(1).map(|_| ())
    }

    /// Runs `child` in a forked process and returns its exit status. The child must only
    /// make system calls (the parent has other threads, and a lock one of them held at the
    /// fork would never be released in the child) and must not panic.
    pub fn in_forked_child(child: fn() -> i32) -> io::Result<libc::c_int> {
        // SAFETY: fork; the child runs only `child` and leaves with `_exit`, never
        // returning into the test harness.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            let code = child();
            // SAFETY: ends the child at once, without running the parent's atexit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked; `status` lives across the call.
        let waited = unsafe { libc::waitpid(pid, &raw mut status, 0) };
        if waited != pid {
            return Err(io::Error::last_os_error());
        }
        Ok(status)
    }
}
