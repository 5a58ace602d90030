//! A connection's receives and sends on the shard's ring, and what happens between them:
//! bytes in (through TLS when the connection has a session), requests framed and handled
//! in order, answers out, and the close. Every change of a connection's state goes
//! through [`Conn::step`]; this file does the I/O the new state asks for.

use std::net::Shutdown;
use std::sync::atomic::Ordering;

use io_uring::cqueue;

use super::Shard;
use super::token::Token;
use crate::constants::{HANDSHAKE_NS_PER_TURN, OUTPUT_HIGH_WATER_BYTES};
use crate::http::Poll;
use crate::ingest::answer::{Answer, answer_refusal};
use crate::ingest::handle::{Handled, Origin, Peer};
use crate::ingest::refusal::Refusal;
use crate::metrics::{PathLabel, ShardStats};
use crate::net::conn::{AfterEof, Effect, Event, Parked, Queued, RecvOp, SendOp, State};
use crate::net::tls::session::Received;
use crate::overload::BODY_STEP_BYTES;
use crate::reactor::op;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
const BUDGET_FULL: &str = "the server's memory budget cannot hold this body now; retry after Retry-After seconds";

/// What became of received bytes.
enum Intake {
    Plain,
    /// Raw bytes before a PROXY header was dealt with.
    Staged,
    /// Handshake bytes put off to a later turn.
    Deferred,
    Tls(Result<Received, rustls::Error>),
}

/// The shard's handshake queue and this turn's handshake work, for [`take_in`].
struct Handshakes<'a> {
    waiting: &'a mut std::collections::VecDeque<(u32, u32)>,
    spent_ns: &'a mut u64,
    slot: u32,
    generation: u32,
}

/// Takes received bytes into a connection: staged before a PROXY header is settled,
/// through its TLS session, or straight into its input. A handshake step waits for a
/// later turn once this turn has done its share, and behind the handshakes already
/// waiting ([`Shard::run_handshakes`]).
fn take_in(conn: &mut crate::net::conn::Conn, data: &[u8], handshakes: Handshakes<'_>) -> Intake {
    if conn.preamble().is_some() {
        conn.input.extend_from_slice(data);
        return Intake::Staged;
    }
    let Some(session) = conn.tls.as_deref_mut() else {
        conn.input.extend_from_slice(data);
        return Intake::Plain;
    };
    if !session.is_handshaking() {
        return Intake::Tls(session.receive(data, &mut conn.input));
    }
    if *handshakes.spent_ns >= HANDSHAKE_NS_PER_TURN || !handshakes.waiting.is_empty() || !conn.backlog.is_empty() {
        if conn.backlog.is_empty() {
            handshakes.waiting.push_back((handshakes.slot, handshakes.generation));
        }
        conn.backlog.extend_from_slice(data);
        return Intake::Deferred;
    }
    let started = std::time::Instant::now();
    let received = session.receive(data, &mut conn.input);
    *handshakes.spent_ns += started.elapsed().as_nanos() as u64;
    Intake::Tls(received)
}

impl Shard {
    pub(super) fn arm_recv(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if conn.recv == RecvOp::InFlight || matches!(conn.state, State::Dead | State::Flushing { .. }) {
            return;
        }
        conn.recv = RecvOp::InFlight;
        let entry = op::recv::single(conn.fd(), &self.buffers, Token::Recv { slot, generation: conn.generation }.encode());
        self.push(entry);
    }

    pub(super) fn on_recv(&mut self, slot: u32, generation: u32, result: i32, flags: u32) {
        let bid = cqueue::buffer_select(flags);
        let conn = &mut self.conns[slot as usize];
        let current = conn.in_use() && conn.generation == generation;
        if current {
            conn.recv = RecvOp::Idle;
        }
        if result > 0 {
            let Some(bid) = bid else { return self.kill(slot) };
            let mut intake = Intake::Plain;
            if current && conn.is_open() {
                self.pool.lend(&mut conn.input);
                let data = self.buffers.data(bid, result as usize);
                let handshakes = Handshakes { waiting: &mut self.handshakes, spent_ns: &mut self.handshake_ns, slot, generation };
                intake = take_in(conn, data, handshakes);
                if matches!(intake, Intake::Deferred) {
                    // A deferred handshake holds its raw bytes only, not an input buffer.
                    self.pool.give_back(&mut conn.input);
                }
                ShardStats::add(&self.control.shards[self.index].bytes_in, result as u64);
            }
            self.buffers.recycle(bid);
            if !current {
                return;
            }
            match intake {
                Intake::Staged => return self.on_proxy_bytes(slot),
                Intake::Deferred => return,
                Intake::Tls(received) => self.after_tls_receive(slot, received),
                Intake::Plain => {}
            }
            return self.after_receive(slot);
        }
        if !current {
            return;
        }
        if result == -libc::ENOBUFS {
            return self.queue_rearm(slot);
        }
        if result == 0 {
            return match self.conns[slot as usize].on_eof(&self.clock) {
                AfterEof::PreambleCutShort => self.proxy_cut_short(slot),
                AfterEof::Drive => self.drive(slot),
                AfterEof::Flush => self.after_progress(slot),
                AfterEof::Kill => self.kill(slot),
            };
        }
        self.kill(slot);
    }

    /// After bytes were taken in: frame them while serving; while closing, keep reading
    /// (and discarding) until the peer closes.
    pub(super) fn after_receive(&mut self, slot: u32) {
        match self.conns[slot as usize].state {
            State::Reading { .. } => self.drive(slot),
            State::Dead => self.kill(slot),
            State::Preamble(_) | State::Flushing { .. } | State::Lingering { .. } | State::Vacant => self.queue_rearm(slot),
        }
    }

    /// Feeds the handshakes that wait (oldest first) until this turn's handshake share,
    /// [`HANDSHAKE_NS_PER_TURN`], is spent; the rest wait for the next turn. A burst of
    /// handshakes thus takes a bounded slice of each turn, and the plaintext requests
    /// of the same shard keep their latency (docs/PERFORMANCE.md § TLS handshakes).
    pub(super) fn run_handshakes(&mut self) {
        self.handshake_ns = 0;
        while self.handshake_ns < HANDSHAKE_NS_PER_TURN
            && let Some((slot, generation)) = self.handshakes.pop_front()
        {
            let conn = &mut self.conns[slot as usize];
            // A connection closed while it waited: `kill` dropped its backlog, and the slot
            // may hold a newer connection with its own entry.
            if !(conn.in_use() && conn.generation == generation && conn.is_open()) {
                continue;
            }
            let backlog = std::mem::take(&mut conn.backlog);
            let Some(session) = conn.tls.as_deref_mut() else { continue };
            self.pool.lend(&mut conn.input);
            let started = std::time::Instant::now();
            let received = session.receive(&backlog, &mut conn.input);
            self.handshake_ns += started.elapsed().as_nanos() as u64;
            ShardStats::add(&self.control.shards[self.index].tls_handshakes_deferred, 1);
            self.after_tls_receive(slot, received);
            self.after_receive(slot);
        }
    }

    /// Records what a TLS receive changed. A failed session has queued its alert: the
    /// connection sends it and closes, and whatever plaintext came before is dropped.
    pub(super) fn after_tls_receive(&mut self, slot: u32, received: Result<Received, rustls::Error>) {
        let stats = &self.control.shards[self.index];
        let conn = &mut self.conns[slot as usize];
        match received {
            Ok(received) => {
                if received.handshake_completed {
                    ShardStats::add(&stats.tls_handshakes, 1);
                    conn.tls_identity = conn.tls.as_ref().and_then(|session| session.peer_identity());
                    conn.step(Event::HandshakeDone, &self.clock);
                }
                if received.peer_closed {
                    conn.step(Event::PeerClosed, &self.clock);
                }
            }
            Err(_) => {
                if conn.tls.as_ref().is_some_and(|session| session.is_handshaking()) {
                    ShardStats::add(&stats.tls_handshake_failures, 1);
                }
                conn.input.clear();
                self.pool.give_back(&mut conn.input);
                conn.step(Event::Refused, &self.clock);
                self.after_progress(slot);
            }
        }
    }

    /// Frames and handles every complete request buffered on `slot`, in order, until one
    /// parks or the connection must stop reading.
    pub(super) fn drive(&mut self, slot: u32) {
        let Shard { conns, core, control, pool, limits, clock, latency, .. } = self;
        let conn = &mut conns[slot as usize];
        debug_assert!(conn.preamble().is_none(), "framing bytes before the PROXY header was dealt with");
        let draining = control.draining.load(Ordering::Relaxed);
        let mut consumed_total = 0;
        let mut started_consumer = None;
        // Whether the framer has seen everything buffered: false when the loop stopped at a
        // parked request or a full output with whole requests still waiting behind it.
        let mut framed_all = false;
        while conn.frames_more(OUTPUT_HIGH_WATER_BYTES) {
            let origin = Origin { slot, generation: conn.generation };
            match conn.framer.poll(&mut conn.input[consumed_total..], limits) {
                Ok(Poll::Incomplete(phase)) => {
                    framed_all = true;
                    if conn.step(Event::Incomplete(phase), clock) == Effect::SendContinue {
                        pool.lend(&mut conn.output);
                        conn.output.extend_from_slice(CONTINUE);
                    }
                    break;
                }
                Ok(Poll::Complete { request, consumed }) => {
                    // A half-closed peer still gets every answer it asked for; the close follows them.
                    let keep_alive = request.keep_alive && !draining;
                    pool.lend(&mut conn.output);
                    let peer = Peer { ip: conn.peer_ip, tls_identity: conn.tls_identity.as_deref() };
                    match core.handle(control, &request, peer, origin, keep_alive, &mut conn.output, &mut conn.consumer, clock.now_ms) {
                        Handled::Answered(_) => {
                            latency.answered();
                            conn.step(Event::Answered { keep_alive }, clock);
                        }
                        Handled::Parked(pending) => {
                            conn.parked = Some(Parked { pending, framed_ns: latency.started_ns() });
                            conn.step(Event::Parked, clock);
                        }
                        Handled::Consumer(started) => {
                            conn.step(Event::Parked, clock);
                            started_consumer = Some(started);
                            // Nothing behind a wait or a stream is framed until it ends.
                            consumed_total += consumed;
                            break;
                        }
                    }
                    consumed_total += consumed;
                }
                Err(error) => {
                    pool.lend(&mut conn.output);
                    // Framing failed, so the path (if any was read) is not trusted.
                    let answer = Answer {
                        path: PathLabel::Other,
                        keep_alive: false,
                        stats: &control.shards[core.shard],
                        topology: &control.topology,
                    };
                    answer_refusal(&mut conn.output, Refusal::Framing(error), error.message(), answer);
                    latency.answered();
                    conn.step(Event::FramingFailed, clock);
                    break;
                }
            }
        }
        if consumed_total > 0 {
            conn.input.drain(..consumed_total);
        }
        // What is empty goes back to the pool: a request that waits (a long-poll, a
        // parked ingest) wrote nothing yet, and its connection holds no buffer meanwhile.
        for (buffer, empty) in [(&mut conn.input, true), (&mut conn.output, conn.send == SendOp::Idle)] {
            if empty && buffer.is_empty() {
                pool.give_back(buffer);
            }
        }
        // The peer sent its last byte: once nothing is parked and no whole request waits
        // (`on_send` frames the rest when the output drains), whatever is left is final.
        if framed_all || conn.input.is_empty() {
            conn.step(Event::InputFramed, clock);
        }
        if self.hold_body(slot) {
            self.after_drive_consumer(slot, started_consumer);
            self.after_progress(slot);
        }
    }

    /// Holds the memory budget for the body `slot` is receiving: all of it once the head
    /// has announced its length, chunked bodies in steps (`overload.rs`). A body the
    /// budget cannot hold is answered 503 `overloaded` and its connection closed; false
    /// then (the refusal has been queued). A connection between bodies holds nothing.
    fn hold_body(&mut self, slot: u32) -> bool {
        let conn = &mut self.conns[slot as usize];
        let budget = &self.control.budget;
        // One step ahead of what has arrived, never past what the head announced: a
        // client holds the budget with bytes it sent, not with a promise.
        let want = match conn.state {
            State::Reading { phase: crate::http::Phase::Body { .. }, .. } => {
                let stepped = (conn.input.len() as u64 / BODY_STEP_BYTES + 1) * BODY_STEP_BYTES;
                conn.framer.expected_len().map_or(stepped, |total| stepped.min(total as u64))
            }
            _ => 0,
        };
        if want <= conn.held {
            if want == 0 {
                budget.release(std::mem::take(&mut conn.held));
            }
            return true;
        }
        let announced = conn.framer.expected_len();
        if budget.try_reserve(want - conn.held, announced.map_or(want, |total| total as u64)) {
            conn.held = want;
            if let Some(total) = announced {
                // The whole body's room at once (address space: pages count only once the
                // body's bytes fill them), so the buffer never doubles past it.
                conn.input.reserve_exact(total.saturating_sub(conn.input.len()));
            }
            return true;
        }
        budget.release(std::mem::take(&mut conn.held));
        conn.input.clear();
        self.pool.give_back(&mut conn.input);
        self.pool.lend(&mut conn.output);
        let answer =
            Answer { path: PathLabel::Other, keep_alive: false, stats: &self.control.shards[self.index], topology: &self.control.topology };
        answer_refusal(&mut conn.output, Refusal::Event(crate::ingest::refusal::Reject::Overloaded), BUDGET_FULL, answer);
        self.latency.answered();
        conn.step(Event::Refused, &self.clock);
        self.after_progress(slot);
        false
    }

    /// Queues what a connection now needs: a send, a receive, or its close.
    pub(super) fn after_progress(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        let flushing = matches!(conn.state, State::Flushing { .. });
        if flushing
            && conn.output.is_empty()
            && let Some(session) = conn.tls.as_deref_mut()
        {
            // Every answer is sealed already, so the alert goes after the last of them.
            session.queue_close_notify();
        }
        let has_output = conn.has_output();
        let sending = conn.send != SendOp::Idle;
        if has_output && !sending && conn.queued.insert(Queued::SEND) {
            self.flush.push(slot);
        }
        if flushing && !has_output && !sending {
            return self.linger(slot);
        }
        let room =
            conn.input.len() < self.limits.header_bytes_max + self.limits.body_bytes_max && conn.output.len() < OUTPUT_HIGH_WATER_BYTES;
        if conn.is_open() && !conn.peer_closed() && room {
            self.queue_rearm(slot);
        }
    }

    pub(super) fn queue_rearm(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if conn.recv == RecvOp::Idle && conn.queued.insert(Queued::RECV) {
            self.rearm.push(slot);
        }
    }

    pub(super) fn rearm_receives(&mut self) {
        let mut rearm = std::mem::take(&mut self.rearm);
        for slot in rearm.drain(..) {
            self.conns[slot as usize].queued.remove(Queued::RECV);
            if self.conns[slot as usize].in_use() {
                self.arm_recv(slot);
            }
        }
        self.rearm = rearm;
    }

    pub(super) fn submit_sends(&mut self) {
        let mut flush = std::mem::take(&mut self.flush);
        for slot in flush.drain(..) {
            let conn = &mut self.conns[slot as usize];
            conn.queued.remove(Queued::SEND);
            if !conn.in_use() || conn.send != SendOp::Idle || conn.state == State::Dead {
                continue;
            }
            if conn.tls.is_some() {
                if !self.seal(slot) {
                    self.kill(slot);
                    continue;
                }
            } else if conn.output.is_empty() {
                continue;
            } else {
                std::mem::swap(&mut conn.output, &mut conn.sending);
            }
            if self.conns[slot as usize].sending.is_empty() {
                continue;
            }
            self.start_send(slot, 0);
        }
        self.flush = flush;
    }

    /// Encrypts a TLS connection's answers (and any handshake or alert records) into its
    /// empty `sending` buffer; `close_notify` follows the last answer of a closing
    /// connection. False if the session cannot write (the connection must be cut).
    fn seal(&mut self, slot: u32) -> bool {
        let conn = &mut self.conns[slot as usize];
        let closing = matches!(conn.state, State::Flushing { .. });
        let Some(session) = conn.tls.as_deref_mut() else { return true };
        debug_assert!(conn.sending.is_empty(), "sealing over a send in flight");
        self.pool.lend(&mut conn.sending);
        let sealed = session.seal(&conn.output, closing, &mut conn.sending).is_ok();
        conn.output.clear();
        self.pool.give_back(&mut conn.output);
        if conn.sending.is_empty() {
            self.pool.give_back(&mut conn.sending);
        }
        sealed
    }

    /// Sends `sending` from byte `sent` on.
    fn start_send(&mut self, slot: u32, sent: usize) {
        let conn = &mut self.conns[slot as usize];
        conn.send = SendOp::InFlight { sent };
        let token = Token::Send { slot, generation: conn.generation };
        let entry = op::send::bytes(conn.fd(), &conn.sending[sent..], token.encode());
        self.push(entry);
    }

    pub(super) fn on_send(&mut self, slot: u32, generation: u32, result: i32) {
        let conn = &mut self.conns[slot as usize];
        if !conn.in_use() || conn.generation != generation {
            return;
        }
        let SendOp::InFlight { sent } = conn.send else { return };
        conn.send = SendOp::Idle;
        if result < 0 || conn.state == State::Dead {
            return self.kill(slot);
        }
        ShardStats::add(&self.control.shards[self.index].bytes_out, result as u64);
        let sent = sent + result as usize;
        conn.step(Event::Sent, &self.clock);
        if sent < conn.sending.len() {
            return self.start_send(slot, sent);
        }
        conn.sending.clear();
        if conn.output.is_empty() {
            self.pool.give_back(&mut conn.sending);
            self.pool.give_back(&mut conn.output);
        }
        if crate::consume::ConnConsumer::busy(&conn.consumer) {
            // A stream's output drained: give it more.
            if matches!(conn.consumer.as_deref().map(|c| &c.mode), Some(crate::consume::Mode::Stream(_))) && conn.output.is_empty() {
                return self.pump_consumer(slot);
            }
        } else if conn.is_reading() && !conn.input.is_empty() && conn.parked.is_none() {
            return self.drive(slot);
        }
        self.after_progress(slot);
    }

    /// Half-closes after the last answer and reads until EOF or the linger deadline; a
    /// peer that has closed already is closed at once.
    fn linger(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if let Some(socket) = &conn.socket {
            let _ = socket2::SockRef::from(socket).shutdown(Shutdown::Write);
        }
        let peer_closed = conn.peer_closed();
        conn.step(Event::Flushed, &self.clock);
        if peer_closed {
            return self.kill(slot);
        }
        self.queue_rearm(slot);
    }

    /// Shuts the socket so in-flight operations complete, and frees the slot once they
    /// have: the socket closes, the per-IP place is given back, the buffers go to the pool.
    pub(super) fn kill(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if !conn.in_use() {
            return;
        }
        if conn.state != State::Dead {
            // It makes a pending receive complete so its slot can be released.
            if let Some(socket) = &conn.socket {
                let _ = socket2::SockRef::from(socket).shutdown(Shutdown::Both);
            }
            conn.step(Event::Killed, &self.clock);
        }
        if conn.recv != RecvOp::Idle || conn.send != SendOp::Idle {
            return;
        }
        conn.socket = None;
        conn.tls = None;
        conn.tls_identity = None;
        conn.counted = None;
        self.control.budget.release(std::mem::take(&mut conn.held));
        conn.backlog = Vec::new();
        if conn.consumer.is_some() {
            self.consumer_gone(slot);
        }
        let conn = &mut self.conns[slot as usize];
        let parked = conn.parked.take();
        self.pool.give_back(&mut conn.input);
        self.pool.give_back(&mut conn.output);
        self.pool.give_back(&mut conn.sending);
        conn.step(Event::Freed, &self.clock);
        if let Some(parked) = parked {
            self.core.recycle_results(parked.pending.results);
        }
        self.free.push(slot);
        self.open -= 1;
        self.stats().connections_open.store(self.open as u64, Ordering::Relaxed);
    }
}
