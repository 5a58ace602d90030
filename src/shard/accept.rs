//! Accepting connections (multishot accept on the plaintext and TLS listeners) and the
//! shard's wake-up eventfd.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use io_uring::cqueue;

use super::Shard;
use super::token::Token;
use crate::metrics::ShardStats;
use crate::net::conn::{Conn, Preamble};
use crate::net::tls::session::Session;
use crate::perimeter::limits::PerIpGuard;
use crate::reactor::op;

impl Shard {
    pub(super) fn arm_wake(&mut self) {
        let fd = self.wakers[self.index].as_raw_fd();
        self.push(op::poll::readable_multishot(fd, Token::Wake.encode()));
    }

    pub(super) fn on_wake(&mut self, flags: u32) {
        self.wakers[self.index].reset();
        // Another shard's owner may have moved a partition a consumer here waits on.
        self.consumers.woken = true;
        if !cqueue::more(flags) {
            self.arm_wake();
        }
    }

    pub(super) fn arm_accept(&mut self, tls: bool) {
        let (listener, token) = match (&self.tls, tls) {
            (Some(shard_tls), true) => (shard_tls.listener.as_ref(), Token::AcceptTls),
            _ => (self.listener.as_ref(), Token::Accept),
        };
        if let Some(listener) = listener {
            let entry = op::accept::multishot(listener.as_raw_fd(), token.encode());
            self.push(entry);
        }
    }

    /// A reload put new TLS material in force: handshakes from now on use it; open
    /// connections keep the session they have. One atomic load per loop.
    pub(super) fn refresh_tls_config(&mut self) {
        if let Some(tls) = &mut self.tls
            && tls.shared.generation() != tls.generation
        {
            (tls.generation, tls.config) = tls.shared.current();
        }
    }

    pub(super) fn on_accept(&mut self, result: i32, flags: u32, tls: bool) {
        if !cqueue::more(flags) && self.accepting {
            self.arm_accept(tls);
        }
        if result < 0 {
            if result != -libc::ECANCELED
                && let Some(suppressed) = self.log_sampler.admit(self.clock.now_ms)
            {
                let error = io::Error::from_raw_os_error(-result);
                tracing::error!(shard = self.index, %error, suppressed, "accept failed");
            }
            return;
        }
        let socket = op::accept::accepted(result);
        let Some(slot) = self.take_slot() else { return self.refuse(socket, None) };
        let peer_ip = peer_ip(&socket);
        let listener_proxy = if tls { self.tls.as_ref().and_then(|shard_tls| shard_tls.proxy.as_ref()) } else { self.proxy.as_ref() };
        let preamble = listener_proxy.map(|proxy| proxy.preamble(peer_ip));
        // A trusted balancer carries many clients: its own address is never counted; the
        // client's is, once its header names it.
        let counted_ip = if matches!(preamble, Some(Preamble::Expect(_))) { None } else { peer_ip };
        let counted: Option<PerIpGuard> = match counted_ip {
            Some(ip) => match self.per_ip.admit(ip) {
                Some(guard) => Some(guard),
                None => {
                    ShardStats::add(&self.stats().connections_refused_per_ip, 1);
                    return self.refuse(socket, Some(slot));
                }
            },
            None => None,
        };
        let session = match (&self.tls, tls) {
            (Some(shard_tls), true) => match Session::new(Arc::clone(&shard_tls.config)) {
                Ok(session) => Some(Box::new(session)),
                Err(error) => {
                    tracing::error!(shard = self.index, %error, "cannot start a TLS session");
                    return self.refuse(socket, Some(slot));
                }
            },
            _ => None,
        };
        let _ = socket2::SockRef::from(&socket).set_tcp_nodelay(true);
        self.conns[slot as usize].open(socket, peer_ip, counted, preamble, session, &self.clock);
        self.open += 1;
        self.stats().connections_open.store(self.open as u64, Ordering::Relaxed);
        self.arm_recv(slot);
    }

    /// A free slot for a new connection, while accepting and under `connections_max`.
    fn take_slot(&mut self) -> Option<u32> {
        if !self.accepting {
            return None;
        }
        if let Some(slot) = self.free.pop() {
            return Some(slot);
        }
        if self.conns.len() < self.config.ingest.connections_max {
            self.conns.push(Conn::vacant());
            return Some(self.conns.len() as u32 - 1);
        }
        None
    }

    /// Closes a just-accepted socket at once (by dropping it), giving back the slot it
    /// would have used.
    fn refuse(&mut self, socket: OwnedFd, slot: Option<u32>) {
        if let Some(slot) = slot {
            self.free.push(slot);
        }
        ShardStats::add(&self.stats().connections_refused, 1);
        drop(socket);
    }
}

/// The TCP peer's address of an accepted socket (one getpeername per connection);
/// IPv4-mapped IPv6 addresses are given as IPv4.
fn peer_ip(socket: &OwnedFd) -> Option<IpAddr> {
    let address = socket2::SockRef::from(socket).peer_addr().ok()?;
    address.as_socket().map(|address| address.ip().to_canonical())
}
