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

/// This boot of the kernel (`/proc/sys/kernel/random/boot_id`) as 16 bytes, all zero
/// when it cannot be read. Files written through a mapping by a process that was
/// killed are intact in the page cache for as long as the boot lasts; a different boot
/// id means a power loss or a reboot may have dropped what was not yet on disk.
pub fn boot_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") else { return id };
    let digits: Vec<u8> = text.bytes().filter_map(|b| (b as char).to_digit(16).map(|d| d as u8)).collect();
    if digits.len() != 32 {
        return id;
    }
    for (byte, pair) in id.iter_mut().zip(digits.chunks(2)) {
        *byte = pair[0] << 4 | pair[1];
    }
    id
}
