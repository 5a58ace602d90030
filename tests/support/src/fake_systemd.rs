//! A fake service manager: owns the `NOTIFY_SOCKET` datagram socket and keeps what
//! `sluice serve` tells it. Included with `#[path]` by the tests that play systemd.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// Collects every datagram the server sends.
pub struct FakeSystemd {
    socket: UnixDatagram,
    pub received: Vec<String>,
}

impl FakeSystemd {
    pub fn bind(path: &std::path::Path) -> FakeSystemd {
        let socket = UnixDatagram::bind(path).expect("bind the notify socket");
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        FakeSystemd { socket, received: Vec::new() }
    }

    /// Reads until a datagram satisfies `wanted` (at most 10 s); returns its index.
    pub fn wait_for(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> usize {
        self.wait_for_from(0, what, wanted)
    }

    /// As [`FakeSystemd::wait_for`], among the datagrams from index `from` on.
    pub fn wait_for_from(&mut self, from: usize, what: &str, wanted: impl Fn(&str) -> bool) -> usize {
        if let Some(index) = self.received.iter().skip(from).position(|message| wanted(message)) {
            return from + index;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buffer = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(length) = self.socket.recv(&mut buffer) {
                let message = String::from_utf8(buffer[..length].to_vec()).expect("notify messages are text");
                self.received.push(message);
                if wanted(self.received.last().unwrap()) {
                    return self.received.len() - 1;
                }
            }
        }
        panic!("no {what} among {:?}", self.received);
    }

    /// Reads whatever has arrived until the socket is quiet for one read timeout.
    pub fn drain(&mut self) {
        let mut buffer = [0u8; 4096];
        while let Ok(length) = self.socket.recv(&mut buffer) {
            self.received.push(String::from_utf8_lossy(&buffer[..length]).into_owned());
        }
    }

    /// Reads everything that arrives during `window`.
    pub fn collect_for(&mut self, window: Duration) {
        let deadline = Instant::now() + window;
        let mut buffer = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(length) = self.socket.recv(&mut buffer) {
                self.received.push(String::from_utf8_lossy(&buffer[..length]).into_owned());
            }
        }
    }

    pub fn count(&self, line: &str) -> usize {
        self.received.iter().filter(|message| message.lines().any(|l| l == line)).count()
    }
}

pub fn has_line(message: &str, line: &str) -> bool {
    message.lines().any(|l| l == line)
}
