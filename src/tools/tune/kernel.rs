//! The kernel: io_uring (can a ring actually be set up, is it switched off by sysctl),
//! the version the reactor's features need, and the locked-memory limit old kernels
//! charge rings to.

use super::{Finding, Host, Status, UringProbe};
use crate::config::Config;
use crate::platform::rlimit::UNLIMITED;
use crate::reactor::RING_ENTRIES;

/// First kernel with provided buffer rings (`IORING_REGISTER_PBUF_RING`): the receive
/// path cannot run without them.
const KERNEL_BUFFER_RING_MIN: (u32, u32) = (5, 19);
/// First kernel with `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN`; before
/// it the reactor falls back to COOP_TASKRUN (more task-work interrupts per loop).
const KERNEL_DEFER_TASKRUN_MIN: (u32, u32) = (6, 1);
/// First kernel that charges ring memory to the memory cgroup instead of RLIMIT_MEMLOCK.
const KERNEL_RINGS_IN_MEMCG_MIN: (u32, u32) = (5, 12);
/// Locked memory one shard's ring needs on kernels before 5.12: 4096 SQEs of 64 bytes,
/// 16384 CQEs of 16 bytes and the 4-byte SQ index array come to 528 KiB; a MiB leaves
/// room for the provided buffer ring's entries and page rounding.
const RING_LOCKED_BYTES_PER_SHARD: u64 = 1 << 20;
const _: () = assert!(RING_ENTRIES as u64 * (64 + 4) + RING_ENTRIES as u64 * 4 * 16 <= RING_LOCKED_BYTES_PER_SHARD);

const FIX_KERNEL: &str = "install a Linux >= 6.1 kernel and reboot (Debian 12: apt-get install linux-image-amd64)";

/// Sets up a tiny ring and registers a provided buffer ring, as a shard does.
pub fn io_uring(host: &Host) -> Finding {
    let check = "io_uring";
    let recommended = "a ring and a provided buffer ring set up";
    match host.live.uring {
        UringProbe::Works { defer_taskrun, buffer_ring: Ok(()) } => {
            let flags = if defer_taskrun { "SINGLE_ISSUER|DEFER_TASKRUN" } else { "no DEFER_TASKRUN" };
            Finding::new(
                Status::Ok,
                check,
                format!("ring set up ({flags}), buffer ring registered, locked to the shard opcodes and enabled"),
                recommended,
            )
        }
        UringProbe::Works { buffer_ring: Err(errno), .. } => Finding::new(
            Status::Fail,
            check,
            format!("ring set up, buffer ring refused ({})", std::io::Error::from_raw_os_error(errno)),
            recommended,
        )
        .fix(FIX_KERNEL)
        .note("the receive path needs provided buffer rings (Linux >= 5.19)"),
        UringProbe::SetupFailed { errno } => {
            let (fix, note) = match errno {
                libc::ENOSYS => (FIX_KERNEL, "the kernel is built without io_uring"),
                // With the sysctl at 0 (or absent) the refusal comes from seccomp or an LSM.
                libc::EPERM | libc::EACCES if matches!(host.sysctl("kernel.io_uring_disabled").as_deref(), None | Some("0")) => (
                    "allow io_uring_setup, io_uring_enter and io_uring_register in the seccomp profile (containers block them by default)",
                    "forbidden by a seccomp profile or a security module, not by kernel.io_uring_disabled",
                ),
                libc::EPERM | libc::EACCES => {
                    ("sysctl -w kernel.io_uring_disabled=0", "forbidden by kernel.io_uring_disabled for this user")
                }
                libc::ENOMEM => ("ulimit -l unlimited", "cannot lock ring memory: LimitMEMLOCK=infinity under systemd"),
                _ => ("dmesg | grep -i io_uring", "io_uring_setup failed for a reason sluice does not know"),
            };
            let observed = format!("io_uring_setup failed: {}", std::io::Error::from_raw_os_error(errno));
            Finding::new(Status::Fail, check, observed, recommended).fix(fix).note(note)
        }
    }
}

/// `kernel.io_uring_disabled` (6.6+): 1 lets only CAP_SYS_ADMIN and `io_uring_group`
/// members set up rings, so a probe run as root passes while the service user fails.
pub fn io_uring_disabled(host: &Host) -> Finding {
    let check = "kernel.io_uring_disabled";
    let group = host.sysctl("kernel.io_uring_group").and_then(|text| text.parse::<i64>().ok()).unwrap_or(-1);
    let fix = "sysctl -w kernel.io_uring_disabled=0";
    match host.sysctl(check).as_deref() {
        None => Finding::new(Status::Info, check, "not present (kernel < 6.6)", "0").note("io_uring cannot be switched off by sysctl here"),
        Some("0") => Finding::new(Status::Ok, check, "0", "0"),
        Some("1") if group >= 0 => Finding::new(Status::Warn, check, format!("1, kernel.io_uring_group = {group}"), "0")
            .fix(fix)
            .note(format!("only root and members of group {group} may use io_uring: the service user must be one")),
        Some("1") => Finding::new(Status::Fail, check, "1, kernel.io_uring_group = -1", "0")
            .fix(fix)
            .note("only CAP_SYS_ADMIN may use io_uring, so the service user cannot (or set kernel.io_uring_group to its group)"),
        Some(other) => Finding::new(Status::Fail, check, other, "0").fix(fix).note("io_uring is disabled for every process"),
    }
}

/// `6.18.44-fc` → (6, 18).
fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn kernel(host: &Host) -> Option<(u32, u32)> {
    parse_release(&host.read("/proc/sys/kernel/osrelease")?)
}

/// The kernel version against what the reactor uses.
pub fn version(host: &Host) -> Finding {
    let check = "kernel.version";
    let recommended = ">= 6.1";
    let Some(release) = host.read("/proc/sys/kernel/osrelease") else {
        return Finding::new(Status::Info, check, "not exposed", recommended);
    };
    match parse_release(&release) {
        None => Finding::new(Status::Info, check, release, recommended).note("cannot read a version from it"),
        Some(version) if version < KERNEL_BUFFER_RING_MIN => Finding::new(Status::Fail, check, release, recommended)
            .fix(FIX_KERNEL)
            .note("no provided buffer rings before 5.19: shards cannot start"),
        Some(version) if version < KERNEL_DEFER_TASKRUN_MIN => Finding::new(Status::Warn, check, release, recommended)
            .fix(FIX_KERNEL)
            .note("no SINGLE_ISSUER|DEFER_TASKRUN before 6.1: shards run with COOP_TASKRUN"),
        Some(_) => Finding::new(Status::Ok, check, release, recommended),
    }
}

pub(super) fn bytes(value: u64) -> String {
    match value {
        UNLIMITED => "unlimited".to_owned(),
        value if value >= 1 << 30 && value % (1 << 30) == 0 => format!("{} GiB", value >> 30),
        value if value >= 1 << 20 && value % (1 << 20) == 0 => format!("{} MiB", value >> 20),
        value if value >= 1 << 10 && value % (1 << 10) == 0 => format!("{} KiB", value >> 10),
        value => format!("{value} bytes"),
    }
}

/// RLIMIT_MEMLOCK: before 5.12 every ring is charged to it; since, only registered
/// (fixed) buffers are, and sluice registers none.
pub fn locked_memory(config: &Config, host: &Host) -> Finding {
    let check = "rlimit.memlock";
    let Some(limit) = host.live.locked_memory_bytes else {
        return Finding::new(Status::Info, check, "getrlimit failed", "unlimited");
    };
    let observed = format!("soft {}, hard {}", bytes(limit.soft), bytes(limit.hard));
    // A kernel whose version cannot be read is treated as old: the stricter rule.
    if kernel(host).is_some_and(|version| version >= KERNEL_RINGS_IN_MEMCG_MIN) {
        return Finding::new(Status::Ok, check, observed, "any")
            .note("Linux >= 5.12 charges rings to the memory cgroup, not to this limit");
    }
    let wanted = config.ingest.shards as u64 * RING_LOCKED_BYTES_PER_SHARD;
    let recommended = format!(">= {} ({} shards x {})", bytes(wanted), config.ingest.shards, bytes(RING_LOCKED_BYTES_PER_SHARD));
    if limit.soft >= wanted {
        return Finding::new(Status::Ok, check, observed, recommended);
    }
    // Up to the hard limit anyone may raise the soft one; past it only root can.
    let (fix, who) = if limit.hard >= wanted {
        (format!("ulimit -Sl {}", if limit.hard == UNLIMITED { "unlimited".to_owned() } else { (limit.hard / 1024).to_string() }), "")
    } else {
        ("ulimit -l unlimited".to_owned(), " (root only: the hard limit is below the need)")
    };
    Finding::new(Status::Fail, check, observed, recommended)
        .fix(fix)
        .note(format!("kernels before 5.12 charge io_uring rings to it{who}; under systemd: LimitMEMLOCK=infinity"))
}

#[cfg(test)]
mod tests {
    use super::super::host::fake::FakeBox;
    use super::*;
    use crate::platform::rlimit::Limit;

    fn config(shards: usize) -> Config {
        Config::parse(&format!("[ingest]\nshards = {shards}\n"), std::path::Path::new("x.toml")).unwrap()
    }

    #[test]
    fn io_uring_ok_when_ring_and_buffer_ring_work() {
        let fake = FakeBox::new();
        let finding = io_uring(&fake.host());
        assert_eq!(finding.status, Status::Ok);
        assert!(finding.observed.contains("DEFER_TASKRUN"), "{finding:?}");
    }

    #[test]
    fn io_uring_fails_with_a_fix_per_errno() {
        let mut fake = FakeBox::new();
        fake.sysctl("kernel.io_uring_disabled", "2");
        for (errno, fix) in [
            (libc::EPERM, "sysctl -w kernel.io_uring_disabled=0"),
            (libc::ENOSYS, FIX_KERNEL),
            (libc::ENOMEM, "ulimit -l unlimited"),
            (libc::EFAULT, "dmesg | grep -i io_uring"),
        ] {
            fake.live.uring = UringProbe::SetupFailed { errno };
            let finding = io_uring(&fake.host());
            assert_eq!((finding.status, finding.fix.as_deref()), (Status::Fail, Some(fix)), "{finding:?}");
        }
        fake.sysctl("kernel.io_uring_disabled", "0");
        fake.live.uring = UringProbe::SetupFailed { errno: libc::EPERM };
        assert!(io_uring(&fake.host()).fix.unwrap().contains("seccomp"), "EPERM with the sysctl at 0 is seccomp");
        fake.live.uring = UringProbe::Works { defer_taskrun: false, buffer_ring: Err(libc::EINVAL) };
        assert_eq!(io_uring(&fake.host()).status, Status::Fail);
    }

    #[test]
    fn io_uring_disabled_by_value_and_group() {
        let fake = FakeBox::new();
        assert_eq!(io_uring_disabled(&fake.host()).status, Status::Info);
        fake.sysctl("kernel.io_uring_disabled", "0");
        assert_eq!(io_uring_disabled(&fake.host()).status, Status::Ok);
        fake.sysctl("kernel.io_uring_disabled", "1").sysctl("kernel.io_uring_group", "-1");
        assert_eq!(io_uring_disabled(&fake.host()).status, Status::Fail);
        fake.sysctl("kernel.io_uring_group", "998");
        let finding = io_uring_disabled(&fake.host());
        assert_eq!(finding.status, Status::Warn);
        assert!(finding.observed.contains("998"));
        fake.sysctl("kernel.io_uring_disabled", "2");
        let finding = io_uring_disabled(&fake.host());
        assert_eq!((finding.status, finding.fix.as_deref()), (Status::Fail, Some("sysctl -w kernel.io_uring_disabled=0")));
    }

    #[test]
    fn kernel_version_thresholds() {
        let fake = FakeBox::new();
        assert_eq!(version(&fake.host()).status, Status::Info);
        for (release, status) in [
            ("6.18.44-fc-v657", Status::Ok),
            ("6.1.0-18-amd64", Status::Ok),
            ("6.0.9", Status::Warn),
            ("5.19.0-50-generic", Status::Warn),
            ("5.15.0-91-generic", Status::Fail),
            ("4.19.0", Status::Fail),
            ("weird", Status::Info),
        ] {
            fake.file("/proc/sys/kernel/osrelease", release);
            assert_eq!(version(&fake.host()).status, status, "{release}");
        }
    }

    #[test]
    fn memlock_matters_only_before_5_12() {
        let mut fake = FakeBox::new();
        fake.live.locked_memory_bytes = Some(Limit { soft: 64 << 10, hard: 64 << 10 });
        fake.file("/proc/sys/kernel/osrelease", "6.1.0");
        assert_eq!(locked_memory(&config(8), &fake.host()).status, Status::Ok);
        fake.file("/proc/sys/kernel/osrelease", "5.10.0");
        let finding = locked_memory(&config(8), &fake.host());
        assert_eq!((finding.status, finding.fix.as_deref()), (Status::Fail, Some("ulimit -l unlimited")));
        assert!(finding.recommended.starts_with(">= 8 MiB"), "{finding:?}");
        // A hard limit above the need: the fix raises the soft one to it, never past it.
        fake.live.locked_memory_bytes = Some(Limit { soft: 64 << 10, hard: 16 << 20 });
        let finding = locked_memory(&config(8), &fake.host());
        assert_eq!(finding.fix.as_deref(), Some("ulimit -Sl 16384"));
        fake.live.locked_memory_bytes = Some(Limit { soft: UNLIMITED, hard: UNLIMITED });
        let finding = locked_memory(&config(8), &fake.host());
        assert_eq!(finding.status, Status::Ok);
        assert!(finding.observed.contains("unlimited"));
    }

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(bytes(8 << 20), "8 MiB");
        assert_eq!(bytes(64 << 10), "64 KiB");
        assert_eq!(bytes(3 << 30), "3 GiB");
        assert_eq!(bytes(1000), "1000 bytes");
        assert_eq!(bytes(UNLIMITED), "unlimited");
    }
}
