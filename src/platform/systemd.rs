//! Everything sluice says to systemd, in one place: the `sd_notify` datagrams
//! (`READY=1`, `STATUS=`, `WATCHDOG=1`, `RELOADING=1`, `STOPPING=1`,
//! `EXTEND_TIMEOUT_USEC=`) and the decision whether the watchdog may be fed.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) every call is a no-op. A failed send is
//! ignored: systemd not listening must never stop the appliance.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Sends state changes to the service manager named by `NOTIFY_SOCKET`.
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// The notifier systemd asked for, or an inactive one.
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let address = notify_address(path.as_encoded_bytes()).ok()?;
            let socket = UnixDatagram::unbound().ok()?;
            Some((socket, address))
        });
        Notifier { target }
    }

    /// A notifier that sends nothing.
    pub fn inactive() -> Notifier {
        Notifier { target: None }
    }

    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one datagram of `KEY=value` lines.
    pub fn send(&self, state: &str) -> io::Result<()> {
        match &self.target {
            Some((socket, address)) => socket.send_to_addr(state.as_bytes(), address).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Start-up (or a reload) is complete.
    pub fn ready(&self, status: &str) {
        let _ = self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    pub fn status(&self, status: &str) {
        let _ = self.send(&format!("STATUS={}", one_line(status)));
    }

    /// A reload starts; [`Notifier::ready`] ends it. `MONOTONIC_USEC` lets
    /// `Type=notify-reload` (systemd 253+) match the reload to the request.
    pub fn reloading(&self) {
        let _ = self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading", crate::platform::sys::monotonic_usec()));
    }

    /// A drain starts; asks for `drain` plus a margin before the stop timeout applies.
    pub fn stopping(&self, drain: Duration) {
        let extend_us = (drain + STOP_MARGIN).as_micros();
        let _ = self.send(&format!("STOPPING=1\nEXTEND_TIMEOUT_USEC={extend_us}\nSTATUS=draining"));
    }

    /// Asks for `extension` more before the current state's timeout (start-up
    /// recovery); must be repeated before it runs out.
    pub fn extend_timeout(&self, extension: Duration, status: &str) {
        let _ = self.send(&format!("EXTEND_TIMEOUT_USEC={}\nSTATUS={}", extension.as_micros(), one_line(status)));
    }

    pub fn watchdog(&self) {
        let _ = self.send("WATCHDOG=1");
    }
}

/// Time allowed past the drain for the last syncs, joins and log lines.
const STOP_MARGIN: Duration = Duration::from_secs(5);

/// `NOTIFY_SOCKET` is a path, or `@name` for the abstract namespace.
fn notify_address(path: &[u8]) -> io::Result<SocketAddr> {
    match path {
        [b'@', name @ ..] => SocketAddr::from_abstract_name(name),
        [b'/', ..] => SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(path)),
        _ => Err(io::Error::new(io::ErrorKind::InvalidInput, "NOTIFY_SOCKET is neither a path nor @abstract")),
    }
}

/// A status is one line: the protocol separates assignments with newlines.
fn one_line(status: &str) -> String {
    status.replace(['\n', '\r'], " ")
}

/// How often systemd expects `WATCHDOG=1`: half of `WATCHDOG_USEC`, if the watchdog is
/// meant for this process (`WATCHDOG_PID` unset or ours).
pub fn watchdog_period() -> Option<Duration> {
    watchdog_period_from(std::env::var("WATCHDOG_USEC").ok().as_deref(), std::env::var("WATCHDOG_PID").ok().as_deref(), std::process::id())
}

fn watchdog_period_from(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.parse::<u32>().ok() != Some(own_pid)
    {
        return None;
    }
    let usec: u64 = usec?.parse().ok().filter(|&usec| usec > 0)?;
    Some(Duration::from_micros(usec / 2))
}

/// Watches each shard's loop counter (`ShardStats::heartbeat`, bumped every reactor
/// loop, at least every `TICK_MS` when idle) and says which shards have not turned for
/// longer than the stall limit. The watchdog is fed only when none has.
pub struct ReactorWatch {
    last_seen: Vec<u64>,
    changed_ms: Vec<u64>,
    stall_ms: u64,
}

impl ReactorWatch {
    pub fn new(shards: usize, now_ms: u64, stall_ms: u64) -> ReactorWatch {
        ReactorWatch { last_seen: vec![0; shards], changed_ms: vec![now_ms; shards], stall_ms }
    }

    /// Records the counters read at `now_ms`.
    pub fn observe(&mut self, heartbeats: impl IntoIterator<Item = u64>, now_ms: u64) {
        for (index, beat) in heartbeats.into_iter().enumerate().take(self.last_seen.len()) {
            if beat != self.last_seen[index] {
                self.last_seen[index] = beat;
                self.changed_ms[index] = now_ms;
            }
        }
    }

    /// The first stalled shard and how long its loop has stood still, if any.
    pub fn stalled(&self, now_ms: u64) -> Option<(usize, u64)> {
        self.changed_ms
            .iter()
            .enumerate()
            .map(|(shard, &changed)| (shard, now_ms.saturating_sub(changed)))
            .find(|&(_, still_ms)| still_ms > self.stall_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier =
            Notifier { target: Some((UnixDatagram::unbound().unwrap(), notify_address(path.as_os_str().as_encoded_bytes()).unwrap())) };
        notifier.ready("listening\non 8080");
        let mut buffer = [0u8; 256];
        let length = listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..length], b"READY=1\nSTATUS=listening on 8080");
        notifier.stopping(Duration::from_secs(10));
        let length = listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..length], b"STOPPING=1\nEXTEND_TIMEOUT_USEC=15000000\nSTATUS=draining");
    }

    #[test]
    fn abstract_and_bad_addresses() {
        assert!(notify_address(b"@sluice-test").unwrap().as_abstract_name().is_some());
        assert!(notify_address(b"relative/path").is_err());
        assert!(notify_address(b"").is_err());
    }

    #[test]
    fn an_inactive_notifier_sends_nothing_and_does_not_fail() {
        let notifier = Notifier::inactive();
        assert!(!notifier.is_active());
        assert!(notifier.send("READY=1").is_ok());
    }

    #[test]
    fn the_watchdog_period_is_half_the_interval_and_only_for_our_pid() {
        assert_eq!(watchdog_period_from(Some("20000000"), None, 7), Some(Duration::from_secs(10)));
        assert_eq!(watchdog_period_from(Some("20000000"), Some("7"), 7), Some(Duration::from_secs(10)));
        assert_eq!(watchdog_period_from(Some("20000000"), Some("8"), 7), None);
        assert_eq!(watchdog_period_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_period_from(Some("soon"), None, 7), None);
        assert_eq!(watchdog_period_from(None, None, 7), None);
    }

    #[test]
    fn a_shard_whose_loop_stands_still_is_stalled() {
        let mut watch = ReactorWatch::new(2, 1_000, 500);
        watch.observe([1, 1], 1_100);
        assert_eq!(watch.stalled(1_400), None);
        // Shard 0 keeps turning, shard 1 does not.
        watch.observe([5, 1], 1_500);
        watch.observe([9, 1], 1_700);
        assert_eq!(watch.stalled(1_700), Some((1, 600)));
        // It turns again: no longer stalled.
        watch.observe([12, 2], 1_750);
        assert_eq!(watch.stalled(1_800), None);
    }

    #[test]
    fn a_shard_that_never_turned_after_start_is_stalled_once_the_limit_passes() {
        let watch = ReactorWatch::new(1, 1_000, 500);
        assert_eq!(watch.stalled(1_400), None);
        assert_eq!(watch.stalled(1_600), Some((0, 600)));
    }
}
