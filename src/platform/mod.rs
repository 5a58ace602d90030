//! The operating system beneath sluice: the syscalls no crate wraps, systemd, the
//! io_uring lockdown, logs, clocks, resource limits, and the small tools for sharing a
//! reloadable value between threads and replacing a file atomically.

pub mod durable;
pub mod lockdown;
pub mod logging;
pub mod rlimit;
pub mod swap;
#[allow(unsafe_code, reason = "the syscall wrappers: the one place outside the reactor and the log that calls libc")]
pub mod sys;
pub mod systemd;
pub mod time;
