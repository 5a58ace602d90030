//! The PROXY protocol on a shard's listeners (docs/SECURITY.md § PROXY protocol). A
//! connection from a trusted balancer must begin with a header; its source replaces the
//! balancer's address for everything downstream and is what the per-IP limit counts. A
//! connection from anywhere else must not begin with one. Until that is settled the
//! connection's bytes are staged in `input` and neither TLS nor HTTP sees them; after it,
//! the connection goes on exactly as one accepted on a listener with the protocol off.

use std::net::IpAddr;

use super::Shard;
use crate::config::ProxyConfig;
use crate::ingest::answer::{Answer, answer_refusal};
use crate::ingest::refusal::Refusal;
use crate::metrics::{PathLabel, ProxyHeaderLabel, ProxyReject, ShardStats};
use crate::net::conn::{Event, Preamble};
use crate::net::proxy::{self, Parsed, Sniff, Version, Versions};
use crate::perimeter::partners::Cidr;

/// A listener with the PROXY protocol on, as the shard checks it at accept.
pub(super) struct ProxyListener {
    versions: Versions,
    trusted: Vec<Cidr>,
}

impl ProxyListener {
    /// `None` when the listener has the protocol off.
    pub(super) fn of(config: &ProxyConfig) -> Option<ProxyListener> {
        config.versions.map(|versions| ProxyListener { versions, trusted: config.trusted_cidrs.clone() })
    }

    /// What a connection from `peer` must begin with. An unknown peer is not trusted.
    pub(super) fn preamble(&self, peer: Option<IpAddr>) -> Preamble {
        match peer {
            Some(ip) if self.trusted.iter().any(|cidr| cidr.contains(ip)) => Preamble::Expect(self.versions),
            _ => Preamble::Sniff,
        }
    }
}

impl Shard {
    /// Bytes arrived on a connection whose first bytes are not settled (they are staged
    /// in `input`): wait for more, refuse the connection, or settle it and go on.
    pub(super) fn on_proxy_bytes(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        let header_len = match conn.preamble() {
            None => 0,
            Some(Preamble::Expect(versions)) => match proxy::parse(&conn.input, versions) {
                Ok(Parsed::Incomplete) => return self.after_progress(slot),
                Err(_) => return self.refuse_proxy(slot, ProxyReject::Invalid),
                Ok(Parsed::Done { header_len, version, source, .. }) => {
                    let stats = &self.control.shards[self.index];
                    let label = match (source, version) {
                        (None, _) => ProxyHeaderLabel::Local,
                        (Some(_), Version::V1) => ProxyHeaderLabel::V1,
                        (Some(_), Version::V2) => ProxyHeaderLabel::V2,
                    };
                    stats.count_proxy_header(label);
                    if let Some(source) = source {
                        let ip = source.ip().to_canonical();
                        debug_assert!(conn.counted.is_none(), "a balancer's connection is never counted");
                        let Some(counted) = self.per_ip.admit(ip) else {
                            ShardStats::add(&stats.connections_refused, 1);
                            ShardStats::add(&stats.connections_refused_per_ip, 1);
                            return self.kill(slot);
                        };
                        conn.peer_ip = Some(ip);
                        conn.counted = Some(counted);
                    }
                    header_len
                }
            },
            Some(Preamble::Sniff) => match proxy::sniff(&conn.input) {
                Sniff::NotProxy => 0,
                Sniff::Proxy(_) => return self.refuse_proxy(slot, ProxyReject::UntrustedSource),
                Sniff::Undecided => {
                    // Part of a signature (or of `POST`): as long as a request head may take.
                    conn.step(Event::PreambleUndecided, &self.clock);
                    return self.after_progress(slot);
                }
            },
        };
        self.settle_proxy(slot, header_len);
    }

    /// The first `header_len` staged bytes were the header (0: there was none); the rest
    /// goes where bytes of a settled connection go: to the framer, or through TLS first.
    fn settle_proxy(&mut self, slot: u32, header_len: usize) {
        let conn = &mut self.conns[slot as usize];
        conn.step(Event::PreambleSettled { header: header_len > 0, handshake: conn.tls.is_some() }, &self.clock);
        let Some(session) = conn.tls.as_deref_mut() else {
            conn.input.drain(..header_len);
            return self.drive(slot);
        };
        let mut staged = std::mem::take(&mut conn.input);
        let received = (staged.len() > header_len).then(|| {
            self.pool.lend(&mut conn.input);
            session.receive(&staged[header_len..], &mut conn.input)
        });
        staged.clear();
        self.pool.give_back(&mut staged);
        if let Some(received) = received {
            self.after_tls_receive(slot, received);
        }
        self.after_receive(slot);
    }

    /// Closes a connection at its first bytes, reading none of them as a request. A
    /// plaintext client is told why (`400`); a TLS client gets no answer, since there is no
    /// session to send it in.
    fn refuse_proxy(&mut self, slot: u32, reason: ProxyReject) {
        let stats = &self.control.shards[self.index];
        stats.count_proxy_rejected(reason);
        let conn = &mut self.conns[slot as usize];
        conn.input.clear();
        self.pool.give_back(&mut conn.input);
        if conn.tls.is_some() {
            return self.kill(slot);
        }
        self.pool.lend(&mut conn.output);
        let answer = Answer { path: PathLabel::Other, keep_alive: false, stats, topology: &self.control.topology };
        answer_refusal(&mut conn.output, Refusal::Proxy(reason), reason.message(), answer);
        conn.step(Event::Refused, &self.clock);
        self.after_progress(slot);
    }

    /// The deadline passed before the connection's first bytes were settled.
    pub(super) fn proxy_timed_out(&mut self, slot: u32) {
        match self.conns[slot as usize].preamble() {
            Some(Preamble::Expect(_)) => self.refuse_proxy(slot, ProxyReject::Timeout),
            // A client that stalls inside `P` or `\r\n`: as for a stalled request head.
            Some(Preamble::Sniff) | None => self.kill(slot),
        }
    }

    /// The peer closed its side before the connection's first bytes were settled: nothing
    /// can be served. A balancer that sent part of a header has sent an invalid one.
    pub(super) fn proxy_cut_short(&mut self, slot: u32) {
        let conn = &self.conns[slot as usize];
        if matches!(conn.preamble(), Some(Preamble::Expect(_))) && !conn.input.is_empty() {
            self.control.shards[self.index].count_proxy_rejected(ProxyReject::Invalid);
        }
        self.kill(slot);
    }
}
