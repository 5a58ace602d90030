//! The io_uring layer each shard drives directly: ring setup with kernel probing and a
//! per-ring allow-list of operations, operation tokens, and the provided buffer ring.
//! `unsafe` in sluice lives here and in the memory-mapped log; every block says why it holds.

pub mod bufring;
pub mod op;
pub mod restrictions;

use std::io;
use std::time::Duration;

use io_uring::{IoUring, squeue, types};

pub use restrictions::RingPolicy;

/// Submission queue entries per shard ring; the completion queue is four times larger.
pub const RING_ENTRIES: u32 = 4096;

/// What the kernel offered at setup, for the start-up log line.
#[derive(Debug, Clone, Copy, Default)]
pub struct RingFeatures {
    pub defer_taskrun: bool,
}

fn unavailable(error: io::Error) -> io::Error {
    let hint = match error.raw_os_error() {
        Some(libc::ENOSYS) => "the kernel has no io_uring (needs Linux >= 6.1 built with CONFIG_IO_URING)",
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "io_uring is forbidden here: set `sysctl kernel.io_uring_disabled=0` (or add this user to kernel.io_uring_group), and allow io_uring_setup/io_uring_enter/io_uring_register in any seccomp profile (containers block them by default)"
        }
        Some(libc::ENOMEM) => "cannot lock io_uring memory: raise `ulimit -l` (LimitMEMLOCK= under systemd)",
        _ => "io_uring_setup failed",
    };
    io::Error::new(error.kind(), format!("{hint}: {error}"))
}

/// A ring created with `IORING_SETUP_R_DISABLED`: registrations work (the buffer ring
/// registers here, see [`bufring::BufRing::register`]), submissions do not until
/// [`DisabledRing::enable`] has locked the ring to its policy.
pub struct DisabledRing {
    ring: IoUring,
    policy: &'static RingPolicy,
}

impl DisabledRing {
    /// Installs the ring's policy (`IORING_REGISTER_RESTRICTIONS`) and enables the ring
    /// (`IORING_REGISTER_ENABLE_RINGS`). Afterwards the kernel completes any other opcode or
    /// SQE flag with `-EACCES` and refuses every `io_uring_register` call, so register
    /// everything first. Call it on the thread that will submit: with `SINGLE_ISSUER` the
    /// kernel binds the ring to the thread that enables it.
    pub fn enable(self) -> io::Result<IoUring> {
        let submitter = self.ring.submitter();
        submitter
            .register_restrictions(&mut self.policy.restrictions())
            .map_err(|error| not_locked(self.policy, "IORING_REGISTER_RESTRICTIONS", error))?;
        submitter.register_enable_rings().map_err(|error| not_locked(self.policy, "IORING_REGISTER_ENABLE_RINGS", error))?;
        Ok(self.ring)
    }
}

fn not_locked(policy: &RingPolicy, step: &str, error: io::Error) -> io::Error {
    io::Error::new(
        error.kind(),
        format!(
            "cannot lock the {} io_uring to its operations ({step}): {error}; this needs Linux >= 5.10 with nothing (seccomp, an LSM) refusing io_uring_register, and sluice does not run an unrestricted ring",
            policy.owner
        ),
    )
}

/// Creates a disabled ring with `SINGLE_ISSUER | DEFER_TASKRUN` when the kernel has them
/// (6.1+), else `COOP_TASKRUN`, else plain; then checks every opcode of `policy` and fails
/// with a message naming what to change. The caller registers what it needs, then calls
/// [`DisabledRing::enable`].
pub fn setup(policy: &'static RingPolicy) -> io::Result<(DisabledRing, RingFeatures)> {
    let attempts: [fn(&mut io_uring::Builder) -> &mut io_uring::Builder; 3] =
        [|b| b.setup_single_issuer().setup_defer_taskrun(), |b| b.setup_coop_taskrun(), |b| b];
    let mut last_error = None;
    for (index, configure) in attempts.iter().enumerate() {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(RING_ENTRIES * 4).setup_submit_all().setup_r_disabled();
        configure(&mut builder);
        match builder.build(RING_ENTRIES) {
            Ok(ring) => {
                check_opcodes(&ring, policy)?;
                if !ring.params().is_feature_ext_arg() {
                    return Err(io::Error::other("io_uring lacks IORING_FEAT_EXT_ARG: upgrade to Linux >= 6.1"));
                }
                return Ok((DisabledRing { ring, policy }, RingFeatures { defer_taskrun: index == 0 }));
            }
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => last_error = Some(error),
            Err(error) => return Err(unavailable(error)),
        }
    }
    Err(unavailable(last_error.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))))
}

fn check_opcodes(ring: &IoUring, policy: &RingPolicy) -> io::Result<()> {
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe).map_err(unavailable)?;
    for opcode in policy.opcodes {
        if !probe.is_supported(opcode.code) {
            return Err(io::Error::other(format!("io_uring on this kernel lacks {}: upgrade to Linux >= 6.1", opcode.name)));
        }
    }
    Ok(())
}

/// Pushes one entry, submitting first if the submission queue is full.
pub fn push(ring: &mut IoUring, entry: &squeue::Entry) -> io::Result<()> {
    loop {
        // SAFETY: every entry sluice builds points only at memory that outlives the
        // operation: connection buffers stay parked in their slot until the completion
        // arrives, and the buffer ring lives as long as the ring.
        if unsafe { ring.submission().push(entry) }.is_ok() {
            return Ok(());
        }
        ring.submit()?;
    }
}

/// Submits everything queued and waits up to `timeout` for at least one completion
/// (`None`: do not wait, only reap). A timeout or an interrupt is not an error.
pub fn submit_and_wait(ring: &IoUring, timeout: Option<Duration>) -> io::Result<()> {
    let timespec = types::Timespec::from(timeout.unwrap_or(Duration::ZERO));
    let args = types::SubmitArgs::new().timespec(&timespec);
    match ring.submitter().submit_with_args(1, &args) {
        Ok(_) => Ok(()),
        Err(error) if matches!(error.raw_os_error(), Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)) => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_setup_and_buffer_ring_work_on_this_kernel() {
        let (ring, _features) = setup(&restrictions::SHARD).expect("io_uring available");
        let mut buffers = bufring::BufRing::register(&ring, 0, 8, 4096).expect("buffer ring");
        let _ring = ring.enable().expect("restricted and enabled");
        buffers.recycle(3);
        buffers.publish();
        assert_eq!(buffers.data(3, 4).len(), 4);
    }
}
