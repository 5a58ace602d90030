//! Completions of one client thread's connections: connect, send, receive and close,
//! and what each answer does to the counts and to the closed loop.

use std::io;
use std::net::{Shutdown, SocketAddr};

use io_uring::cqueue;
use socket2::{Domain, Protocol, Socket, Type};

use super::{Engine, Phase, RECONNECT_DELAY_NS};
use crate::constants::BENCH_CONNECTS_IN_FLIGHT_MAX;
use crate::reactor::op;
use crate::tools::bench::conn::{ConnState, Op, PING, Role, token};
use crate::tools::bench::response::Response;
use crate::tools::bench::stats::{Answer, ErrorKind};

// Connection life cycle.
impl Engine<'_> {
    /// Starts connects for slots that are down and due, within the in-flight bound.
    pub(super) fn start_connects(&mut self, now: u64) {
        let connecting_phase = matches!(self.phase, Phase::Connecting { .. });
        for slot in 0..self.conns.len() {
            if self.connecting + self.handshaking >= BENCH_CONNECTS_IN_FLIGHT_MAX {
                return;
            }
            let conn = &self.conns[slot];
            let due = matches!(conn.state, ConnState::Down { retry_at_ns } if retry_at_ns <= now);
            if due && (!connecting_phase || !conn.attempted) {
                self.start_connect(slot as u32, now);
            }
        }
    }

    fn start_connect(&mut self, slot: u32, now: u64) {
        self.conns[slot as usize].attempted = true;
        let socket = match new_socket(self.setup.options.addr) {
            Ok(socket) => socket,
            Err(error) => return self.connect_failed(slot, &error, now),
        };
        let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
        let conn = &mut self.conns[slot as usize];
        conn.socket = Some(socket);
        conn.state = ConnState::Connecting;
        conn.connect_inflight = true;
        let generation = conn.generation;
        self.connecting += 1;
        // A linked pair must reach the kernel in one submission.
        let room = {
            let submission = self.ring.submission();
            submission.capacity() - submission.len()
        };
        if room < 2
            && let Err(error) = self.ring.submit()
        {
            eprintln!("sluice bench: io_uring submit failed: {error}");
        }
        let [connect, timeout] = op::connect::with_timeout(
            fd,
            &self.addr,
            &self.connect_timeout,
            token(Op::Connect, slot, generation),
            token(Op::ConnectTimeout, slot, generation),
        );
        self.push(&connect);
        self.push(&timeout);
    }

    fn connect_failed(&mut self, slot: u32, error: &io::Error, now: u64) {
        let kind = if error.raw_os_error() == Some(libc::ECONNREFUSED) { ErrorKind::ConnectRefused } else { ErrorKind::ConnectFailed };
        self.count_error(kind);
        if let Ok(mut last) = self.setup.shared.last_connect_error.lock() {
            *last = Some(error.to_string());
        }
        self.close(slot, now, RECONNECT_DELAY_NS);
    }

    pub(super) fn on_connect(&mut self, slot: u32, result: i32, now: u64) {
        let conn = &mut self.conns[slot as usize];
        conn.connect_inflight = false;
        self.connecting -= 1;
        if conn.state != ConnState::Connecting {
            return self.finish_close(slot, now);
        }
        if result < 0 {
            let error = if result == -libc::ECANCELED {
                io::Error::new(io::ErrorKind::TimedOut, "connect timed out")
            } else {
                io::Error::from_raw_os_error(-result)
            };
            return self.connect_failed(slot, &error, now);
        }
        conn.progress_ns = now;
        if let Some(tls) = &self.setup.options.tls {
            match rustls::ClientConnection::new(std::sync::Arc::clone(&tls.config), tls.server_name.clone()) {
                Ok(mut session) => {
                    // Every seal drains rustls's buffer into `sending`, and an open loop
                    // may queue more than rustls's default 64 KiB behind a slow send.
                    session.set_buffer_limit(None);
                    // The ClientHello goes out now; requests wait for the handshake.
                    conn.tls = Some(Box::new(session));
                    conn.state = ConnState::Handshaking;
                    self.handshaking += 1;
                    self.queue_rearm(slot);
                    self.queue_flush(slot);
                }
                Err(error) => {
                    eprintln!("sluice bench: cannot start a TLS session: {error}");
                    self.count_error(ErrorKind::Tls);
                    self.close(slot, now, RECONNECT_DELAY_NS);
                }
            }
            return;
        }
        self.opened(slot, now);
    }

    /// The connection can carry requests: TCP is up (and TLS, with `--tls`).
    fn opened(&mut self, slot: u32, now: u64) {
        let conn = &mut self.conns[slot as usize];
        conn.state = ConnState::Open;
        conn.progress_ns = now;
        let reopened = conn.ever_opened;
        conn.ever_opened = true;
        let role = conn.role;
        self.totals.connections_opened += 1;
        if reopened {
            self.totals.reconnects += 1;
            if role == Role::Idle {
                self.totals.idle.reopened += 1;
            }
        }
        self.queue_rearm(slot);
        self.refill(slot, now);
    }

    /// Shuts a connection down. Requests still waiting on it are counted unanswered; it
    /// reconnects `retry_delay_ns` after its operations have completed.
    pub(super) fn close(&mut self, slot: u32, now: u64, retry_delay_ns: u64) {
        let conn = &mut self.conns[slot as usize];
        if matches!(conn.state, ConnState::Closing { .. }) {
            return;
        }
        if let ConnState::Down { .. } = conn.state {
            conn.state = ConnState::Down { retry_at_ns: now + retry_delay_ns };
            return;
        }
        if conn.state == ConnState::Handshaking {
            self.handshaking -= 1;
        }
        let mut waiting = std::mem::take(&mut conn.waiting);
        for lost in waiting.drain(..) {
            self.lose(lost, now);
        }
        let conn = &mut self.conns[slot as usize];
        conn.waiting = waiting;
        conn.parser.reset();
        conn.output.clear();
        conn.state = ConnState::Closing { retry_delay_ns };
        if let Some(socket) = &conn.socket {
            let _ = socket.shutdown(Shutdown::Both);
        }
        self.finish_close(slot, now);
    }

    /// Releases a closing slot once the kernel is done with it.
    fn finish_close(&mut self, slot: u32, now: u64) {
        let conn = &mut self.conns[slot as usize];
        let ConnState::Closing { retry_delay_ns } = conn.state else { return };
        if !conn.is_quiet() {
            return;
        }
        conn.socket = None;
        conn.tls = None;
        conn.generation = conn.generation.wrapping_add(1);
        conn.sending.clear();
        conn.sent = 0;
        conn.state = ConnState::Down { retry_at_ns: now + retry_delay_ns };
        // After an orderly close, reconnect now rather than at the next tick.
        if retry_delay_ns == 0 && self.phase == Phase::Running && self.connecting + self.handshaking < BENCH_CONNECTS_IN_FLIGHT_MAX {
            self.start_connect(slot, now);
        }
    }

    pub(super) fn count_error(&mut self, kind: ErrorKind) {
        self.totals.count_error(kind);
        let now = self.now();
        if self.measuring(now) {
            self.totals.measured.timeline.error(now - self.warmup_end_ns);
        }
    }

    pub(super) fn on_send(&mut self, slot: u32, result: i32, now: u64) {
        let conn = &mut self.conns[slot as usize];
        conn.send_inflight = false;
        if !conn.is_live() {
            return self.finish_close(slot, now);
        }
        if result <= 0 {
            self.count_error(ErrorKind::Reset);
            return self.close(slot, now, RECONNECT_DELAY_NS);
        }
        conn.sent += result as usize;
        let more = conn.sent < conn.sending.len() || !conn.output.is_empty() || conn.tls.as_ref().is_some_and(|tls| tls.wants_write());
        if self.measuring(now) {
            self.totals.measured.bytes_sent += result as u64;
        }
        if more {
            self.queue_flush(slot);
        }
    }

    pub(super) fn on_recv(&mut self, slot: u32, result: i32, flags: u32, now: u64) {
        let more = cqueue::more(flags);
        if !more {
            self.conns[slot as usize].recv_inflight = false;
        }
        if result > 0 {
            let Some(bid) = cqueue::buffer_select(flags) else {
                self.count_error(ErrorKind::Reset);
                return self.close(slot, now, RECONNECT_DELAY_NS);
            };
            self.on_data(slot, bid, result as usize, now);
        } else if result == 0 {
            self.on_eof(slot, now);
        } else if result != -libc::ENOBUFS && self.conns[slot as usize].is_live() {
            self.count_error(ErrorKind::Reset);
            self.close(slot, now, RECONNECT_DELAY_NS);
        }
        let conn = &self.conns[slot as usize];
        if !conn.recv_inflight {
            if conn.is_live() {
                self.queue_rearm(slot);
            } else {
                self.finish_close(slot, now);
            }
        }
    }

    fn on_data(&mut self, slot: u32, bid: u16, length: usize, now: u64) {
        let Engine { buffers, conns, responses, plaintext, .. } = self;
        let conn = &mut conns[slot as usize];
        if !conn.is_live() {
            buffers.recycle(bid);
            return;
        }
        let mut tls_progress = None;
        let parsed = match conn.tls.as_deref_mut() {
            None => conn.parser.feed(buffers.data(bid, length), &mut |response| responses.push(response)),
            Some(tls) => {
                plaintext.clear();
                let was_handshaking = tls.is_handshaking();
                let fed = crate::net::tls::feed(tls, buffers.data(bid, length), plaintext);
                tls_progress = Some(fed.map(|_| (was_handshaking && !tls.is_handshaking(), tls.wants_write())));
                conn.parser.feed(plaintext, &mut |response| responses.push(response))
            }
        };
        buffers.recycle(bid);
        if self.measuring(now) {
            self.totals.measured.bytes_received += length as u64;
        }
        match tls_progress {
            Some(Err(error)) => {
                self.responses.clear();
                if let Ok(mut last) = self.setup.shared.last_connect_error.lock() {
                    *last = Some(format!("TLS: {error}"));
                }
                self.count_error(ErrorKind::Tls);
                return self.close(slot, now, RECONNECT_DELAY_NS);
            }
            Some(Ok((handshake_done, wants_write))) => {
                if handshake_done {
                    self.handshaking -= 1;
                    self.opened(slot, now);
                }
                if wants_write {
                    self.queue_flush(slot);
                }
            }
            None => {}
        }
        let mut responses = std::mem::take(&mut self.responses);
        for response in responses.drain(..) {
            if self.conns[slot as usize].is_open() {
                self.on_response(slot, response, now);
            }
        }
        self.responses = responses;
        if parsed.is_err() && self.conns[slot as usize].is_open() {
            self.count_error(ErrorKind::Parse);
            self.close(slot, now, RECONNECT_DELAY_NS);
        }
    }

    fn on_eof(&mut self, slot: u32, now: u64) {
        let conn = &mut self.conns[slot as usize];
        if conn.state == ConnState::Handshaking {
            // The server closed during the handshake: it refused us.
            self.count_error(ErrorKind::Tls);
            return self.close(slot, now, RECONNECT_DELAY_NS);
        }
        if !conn.is_open() {
            return;
        }
        if let Some(response) = conn.parser.finish_at_eof() {
            self.on_response(slot, response, now);
            return;
        }
        if conn.waiting.is_empty() {
            // An idle keep-alive connection closed by the server (its idle timeout).
            self.totals.closed_by_server += 1;
            return self.close(slot, now, 0);
        }
        self.count_error(ErrorKind::Eof);
        self.close(slot, now, RECONNECT_DELAY_NS);
    }

    fn on_response(&mut self, slot: u32, response: Response, now: u64) {
        let conn = &mut self.conns[slot as usize];
        let Some(waiting) = conn.waiting.pop_front() else {
            // An answer nobody asked for: the stream is out of step.
            self.count_error(ErrorKind::Parse);
            return self.close(slot, now, RECONNECT_DELAY_NS);
        };
        conn.progress_ns = now;
        if waiting.index == PING {
            self.totals.idle.pings += 1;
            if !(200..300).contains(&response.status) {
                self.totals.idle.ping_failures += 1;
            }
        } else {
            self.completed += 1;
            let index = waiting.index as usize;
            if waiting.start_ns >= self.warmup_end_ns {
                let plan = self.setup.plan;
                self.totals.measured.record(&Answer {
                    kind: plan.kind(index),
                    class: plan.class(index),
                    status: response.status,
                    latency_ns: now.saturating_sub(waiting.start_ns),
                    at_ns: now.saturating_sub(self.warmup_end_ns),
                    events: plan.events(index),
                });
            } else {
                self.totals.warmup_completed += 1;
            }
        }
        if response.close {
            self.totals.closed_by_server += 1;
            return self.close(slot, now, 0);
        }
        self.refill(slot, now);
    }
}

fn new_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking().cloexec(), Some(Protocol::TCP))?;
    socket.set_tcp_nodelay(true)?;
    Ok(socket)
}
