//! One connection slot. A slot is reused for many connections; its generation tells a
//! stale completion from a current one. Idle connections hold no buffers: input and
//! output buffers come from the shard's pool while there is something in them.

use std::net::IpAddr;
use std::os::fd::RawFd;

use crate::http::{Framer, Phase};
use crate::ingest::handle::Pending;
use crate::net::proxy::Versions;
use crate::net::tls::session::Session;

/// How a connection is winding down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    Open,
    /// Send what is queued, then half-close and linger.
    AfterFlush,
    /// Write side shut; reading and discarding until EOF or the deadline, so the client
    /// reads our last answer instead of a reset.
    Lingering {
        until_ms: u64,
    },
    /// Both sides shut; the slot is freed once no operation is in flight.
    Dead,
}

/// Where a connection stands with the PROXY protocol (docs/SECURITY.md § PROXY protocol).
/// Until it is `Settled`, received bytes are staged in `input` and neither the TLS
/// session nor the HTTP framer sees any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyStage {
    /// Nothing to check: the listener has the PROXY protocol off, or the first bytes
    /// have been dealt with.
    Settled,
    /// From a trusted balancer: the connection must begin with a header of these versions.
    Expect(Versions),
    /// From any other address on a listener with the PROXY protocol on: the connection
    /// must not begin with a header (that would be a spoofed client address).
    Sniff,
}

pub struct Conn {
    pub fd: RawFd,
    pub generation: u32,
    pub in_use: bool,
    /// The client's address: the TCP peer's (`None` if the kernel could not say), or the
    /// source a trusted balancer's PROXY header named.
    pub peer_ip: Option<IpAddr>,
    /// The address this connection holds a place for in the per-IP table, released
    /// (taken) exactly once when the slot is freed. `None` for a trusted balancer's own
    /// address, which is never counted.
    pub counted_ip: Option<IpAddr>,
    pub proxy: ProxyStage,
    /// The verified client-certificate identity of an mTLS connection.
    pub tls_identity: Option<Box<str>>,
    /// The TLS session of a connection accepted on the TLS listener; boxed so a
    /// plaintext connection pays one pointer for it.
    pub tls: Option<Box<Session>>,
    /// Plaintext (decrypted) request bytes not yet framed.
    pub input: Vec<u8>,
    pub framer: Framer,
    /// Answers not yet handed to the kernel (plaintext; a TLS connection encrypts them
    /// into `sending` when its send starts).
    pub output: Vec<u8>,
    /// The buffer of the send in flight (must not move until its completion).
    pub sending: Vec<u8>,
    pub sent: usize,
    pub recv_inflight: bool,
    pub send_inflight: bool,
    /// The peer shut its write side: answer what was asked, then close.
    pub peer_closed: bool,
    pub pending: Option<Pending>,
    /// Monotonic ns at the start of the loop that framed the request in `pending`.
    pub framed_ns: u64,
    pub closing: Closing,
    pub phase: Phase,
    /// Monotonic ms when the current phase times out.
    pub deadline_ms: u64,
    pub continue_sent: bool,
    /// Already on the shard's flush list this loop.
    pub flush_queued: bool,
    pub rearm_queued: bool,
}

impl Conn {
    pub fn vacant() -> Conn {
        Conn {
            fd: -1,
            generation: 0,
            in_use: false,
            peer_ip: None,
            counted_ip: None,
            proxy: ProxyStage::Settled,
            tls_identity: None,
            tls: None,
            input: Vec::new(),
            framer: Framer::default(),
            output: Vec::new(),
            sending: Vec::new(),
            sent: 0,
            recv_inflight: false,
            send_inflight: false,
            peer_closed: false,
            pending: None,
            framed_ns: 0,
            closing: Closing::Open,
            phase: Phase::Idle,
            deadline_ms: 0,
            continue_sent: false,
            flush_queued: false,
            rearm_queued: false,
        }
    }

    /// Resets the slot for a newly accepted socket.
    pub fn open(&mut self, fd: RawFd, peer_ip: Option<IpAddr>, counted_ip: Option<IpAddr>, proxy: ProxyStage, deadline_ms: u64) {
        let generation = self.generation.wrapping_add(1);
        *self = Conn::vacant();
        self.fd = fd;
        self.generation = generation;
        self.in_use = true;
        self.peer_ip = peer_ip;
        self.counted_ip = counted_ip;
        self.proxy = proxy;
        self.deadline_ms = deadline_ms;
    }

    /// Something waits to be sent: answers, or TLS records (handshake, alerts).
    pub fn has_output(&self) -> bool {
        !self.output.is_empty() || self.tls.as_ref().is_some_and(|session| session.wants_write())
    }

    /// Nothing is in progress: no partial request, no parked request, nothing to send.
    pub fn is_quiet(&self) -> bool {
        self.input.is_empty() && self.pending.is_none() && !self.has_output() && !self.send_inflight
    }
}

/// Buffers lent to connections while they hold bytes. Large buffers (a big body grew
/// them) are dropped instead of pooled, so the pool's memory stays bounded.
pub struct BufferPool {
    free: Vec<Vec<u8>>,
    initial_bytes: usize,
    pooled_bytes_max: usize,
    count_max: usize,
}

impl BufferPool {
    pub fn new(initial_bytes: usize, pooled_bytes_max: usize, count_max: usize) -> BufferPool {
        BufferPool { free: Vec::new(), initial_bytes, pooled_bytes_max, count_max }
    }

    /// Makes sure `buffer` has capacity, taking a pooled one if it has none.
    pub fn lend(&mut self, buffer: &mut Vec<u8>) {
        if buffer.capacity() == 0 {
            *buffer = self.free.pop().unwrap_or_else(|| Vec::with_capacity(self.initial_bytes));
        }
    }

    /// Takes back an emptied buffer.
    pub fn give_back(&mut self, buffer: &mut Vec<u8>) {
        if buffer.capacity() == 0 {
            return;
        }
        let mut taken = std::mem::take(buffer);
        if taken.capacity() <= self.pooled_bytes_max && self.free.len() < self.count_max {
            taken.clear();
            self.free.push(taken);
        }
    }
}
