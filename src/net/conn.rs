//! One connection slot and the life of the connection in it, as a state machine.
//!
//! A slot is reused for many connections; its generation tells a stale completion from
//! a current one. Idle connections hold no buffers: input and output buffers come from
//! the shard's pool while there is something in them.
//!
//! The connection's life is one [`State`]; [`Conn::step`] is the only place that changes
//! it, and with it the deadline of the phase the connection enters. The two operations a
//! connection can have in flight are tracked apart ([`RecvOp`], [`SendOp`]), as reactors
//! track an op from submission to completion: a closing connection is freed only once
//! neither is in flight, because the kernel may still write into what they point at.
//!
//! ```text
//!  accept ─► Preamble ──settled──┐            (PROXY protocol listeners only)
//!     └──────────────────────────┴─► Reading ⇄ Parked      (one request in flight)
//!                                      │  └──────┴─► Flushing ─► Lingering ─► Dead ─► Vacant
//!                                      └── error, timeout, close ──┘         (or Dead at once)
//! ```

use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::http::{Framer, Phase};
use crate::ingest::handle::Pending;
use crate::net::proxy::Versions;
use crate::net::tls::session::Session;
use crate::perimeter::limits::PerIpGuard;

/// How long a closing connection reads and discards before it is cut.
pub use crate::constants::LINGER_MS;

/// Where a connection stands with the PROXY protocol (docs/SECURITY.md § PROXY protocol),
/// before its first bytes are settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preamble {
    /// From a trusted balancer: the connection must begin with a header of these versions.
    Expect(Versions),
    /// From any other address on a listener with the PROXY protocol on: the connection
    /// must not begin with a header (that would be a spoofed client address).
    Sniff,
}

/// The life of the connection in a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The slot holds no connection.
    Vacant,
    /// Accepted on a listener with the PROXY protocol on: received bytes are staged in
    /// `input` and neither the TLS session nor the HTTP framer sees any of them until they
    /// are settled.
    Preamble(Preamble),
    /// Serving requests; `phase` says where the one being read stands (its timeout).
    Reading {
        phase: Phase,
        /// `100 Continue` went out for the request being read.
        continue_sent: bool,
        /// The peer has sent its last byte: once what it asked is answered, close.
        peer_closed: bool,
    },
    /// The last answer is queued: send it, then half-close (or close at once if the
    /// peer has already closed its side).
    Flushing { peer_closed: bool },
    /// Write side shut; reading and discarding until EOF or `until_ms`, so the client
    /// reads our last answer instead of a reset.
    Lingering { until_ms: u64 },
    /// Both sides shut; the slot is freed once no operation is in flight.
    Dead,
}

/// A request of the connection that waits inside the server for its outcome (another
/// shard, the group commit). Requests pipelined behind it stay buffered, so answers
/// leave in request order. Like an operation in flight, it may outlive the connection's
/// serving states: its outcome is still remembered for a repeat of its request id.
#[derive(Debug)]
pub struct Parked {
    pub pending: Pending,
    /// Monotonic ns at the start of the loop that framed the request.
    pub framed_ns: u64,
}

/// The receive of a connection: at most one is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvOp {
    Idle,
    InFlight,
}

/// The send of a connection: at most one is in flight, of `sending`, `sent` bytes of
/// which the kernel has taken so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOp {
    Idle,
    InFlight { sent: usize },
}

/// What happened to a connection, as [`Conn::step`] hears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Its first bytes are settled: after a PROXY header (`header`) or without one;
    /// `handshake` if a TLS handshake comes next.
    PreambleSettled { header: bool, handshake: bool },
    /// Part of a PROXY signature (or of `POST`) arrived: no longer than a request head may take.
    PreambleUndecided,
    /// The TLS handshake completed.
    HandshakeDone,
    /// A request is being read and stands at `phase`.
    Incomplete(Phase),
    /// A request was framed and answered at once; the connection goes on if `keep_alive`.
    Answered { keep_alive: bool },
    /// A request was framed and parked (its keep-alive applies when it is resolved).
    Parked,
    /// The parked request was answered; the connection goes on if `keep_alive`.
    Resolved { keep_alive: bool },
    /// The peer sent its last byte (EOF or TLS close_notify).
    PeerClosed,
    /// Everything buffered has been framed: a peer that closed and waits for nothing
    /// parked is done.
    InputFramed,
    /// The request could not be framed: its error answer is the last one.
    FramingFailed,
    /// A refusal that ends the connection before or instead of a request (a failed TLS
    /// handshake, a PROXY header refused, a request that timed out): its answer, if any,
    /// is the last one and gets `LINGER_MS` to leave.
    Refused,
    /// A send completed.
    Sent,
    /// Everything queued while flushing has been sent; the write side is shut.
    Flushed,
    /// The socket is shut both ways.
    Killed,
    /// The slot was freed.
    Freed,
}

/// What the shard does after the peer's EOF, as [`Conn::on_eof`] decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterEof {
    /// The PROXY header (or the bytes that would settle its absence) was cut short.
    PreambleCutShort,
    /// Frame what is buffered: the answers to it are still owed.
    Drive,
    /// Go on sending the last answers; the close follows them.
    Flush,
    /// Nothing more is owed (lingering, or already dead): close.
    Kill,
}

/// The timeouts a connection's phases have, and the time now (monotonic ms).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now_ms: u64,
    pub idle_timeout_ms: u64,
    pub header_timeout_ms: u64,
    pub body_timeout_ms: u64,
}

impl State {
    fn reading() -> State {
        State::Reading { phase: Phase::Idle, continue_sent: false, peer_closed: false }
    }
}

impl Clock {
    fn phase_deadline(&self, phase: Phase) -> u64 {
        self.now_ms
            + match phase {
                Phase::Idle => self.idle_timeout_ms,
                Phase::Head => self.header_timeout_ms,
                Phase::Body { .. } => self.body_timeout_ms,
            }
    }
}

/// What [`Conn::step`] asks of the shard besides the new state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    None,
    /// Queue `HTTP/1.1 100 Continue`: the client waits for it before sending the body.
    SendContinue,
}

/// Lists a slot is on in the current loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Queued(u8);

impl Queued {
    pub const SEND: Queued = Queued(1);
    pub const RECV: Queued = Queued(2);

    /// Marks `list`; false if the slot was on it already.
    pub fn insert(&mut self, list: Queued) -> bool {
        let fresh = self.0 & list.0 == 0;
        self.0 |= list.0;
        fresh
    }

    pub fn remove(&mut self, list: Queued) {
        self.0 &= !list.0;
    }
}

pub struct Conn {
    /// The socket; `None` while the slot is vacant.
    pub socket: Option<OwnedFd>,
    pub generation: u32,
    pub state: State,
    pub recv: RecvOp,
    pub send: SendOp,
    /// The request waiting inside the server for its outcome, if any.
    pub parked: Option<Parked>,
    pub queued: Queued,
    /// Monotonic ms when the current phase times out.
    pub deadline_ms: u64,
    /// The client's address: the TCP peer's (`None` if the kernel could not say), or the
    /// source a trusted balancer's PROXY header named.
    pub peer_ip: Option<IpAddr>,
    /// The place this connection holds in the per-IP table, given back when the slot is
    /// freed. `None` for a trusted balancer's own address, which is never counted.
    pub counted: Option<PerIpGuard>,
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
    /// A consumer's wait, stream or reader kept between its requests (`None` for a
    /// producer's connection).
    pub consumer: Option<Box<crate::consume::ConnConsumer>>,
    /// Bytes of the memory budget held for the body being received (`overload.rs`).
    pub held: u64,
    /// TLS bytes received during the handshake and not yet fed to the session: the
    /// shard's handshake work per loop turn is bounded (`shard/io.rs`).
    pub backlog: Vec<u8>,
}

impl Conn {
    pub fn vacant() -> Conn {
        Conn {
            socket: None,
            generation: 0,
            state: State::Vacant,
            recv: RecvOp::Idle,
            send: SendOp::Idle,
            parked: None,
            queued: Queued::default(),
            deadline_ms: 0,
            peer_ip: None,
            counted: None,
            tls_identity: None,
            tls: None,
            input: Vec::new(),
            framer: Framer::default(),
            output: Vec::new(),
            sending: Vec::new(),
            consumer: None,
            held: 0,
            backlog: Vec::new(),
        }
    }

    /// Puts a newly accepted socket into the (vacant) slot: in `preamble` when its
    /// listener has the PROXY protocol on, else reading. A TLS handshake or a PROXY
    /// header has the time a request head has; a plain connection starts idle.
    pub fn open(
        &mut self,
        socket: OwnedFd,
        peer_ip: Option<IpAddr>,
        counted: Option<PerIpGuard>,
        preamble: Option<Preamble>,
        tls: Option<Box<Session>>,
        clock: &Clock,
    ) {
        debug_assert!(matches!(self.state, State::Vacant), "opening an occupied slot");
        let generation = self.generation.wrapping_add(1);
        let head_first = tls.is_some() || matches!(preamble, Some(Preamble::Expect(_)));
        *self = Conn::vacant();
        self.socket = Some(socket);
        self.generation = generation;
        self.peer_ip = peer_ip;
        self.counted = counted;
        self.tls = tls;
        self.state = match preamble {
            Some(preamble) => State::Preamble(preamble),
            None => State::reading(),
        };
        self.deadline_ms = clock.now_ms + if head_first { clock.header_timeout_ms } else { clock.idle_timeout_ms };
    }

    /// The one transition function: moves the connection to its next state on `event`
    /// and sets the deadline of the phase it enters.
    pub fn step(&mut self, event: Event, clock: &Clock) -> Effect {
        let now_ms = clock.now_ms;
        match (event, &mut self.state) {
            (Event::PreambleSettled { header, handshake }, _) => {
                self.state = State::reading();
                if header {
                    // A handshake gets the time it has without a header; after a plain
                    // header the balancer's connection is an idle keep-alive one.
                    self.deadline_ms = now_ms + if handshake { clock.header_timeout_ms } else { clock.idle_timeout_ms };
                }
            }
            (Event::PreambleUndecided, _) => self.deadline_ms = self.deadline_ms.min(now_ms + clock.header_timeout_ms),
            (Event::HandshakeDone, _) => self.deadline_ms = clock.phase_deadline(Phase::Idle),
            (Event::Incomplete(phase), State::Reading { phase: current, continue_sent, .. }) => {
                if *current != phase {
                    *current = phase;
                    self.deadline_ms = clock.phase_deadline(phase);
                }
                if matches!(phase, Phase::Body { expects_continue: true }) && !*continue_sent {
                    *continue_sent = true;
                    return Effect::SendContinue;
                }
            }
            (Event::Answered { keep_alive }, State::Reading { phase, continue_sent, peer_closed }) => {
                (*phase, *continue_sent) = (Phase::Idle, false);
                self.deadline_ms = clock.phase_deadline(Phase::Idle);
                if !keep_alive {
                    self.state = State::Flushing { peer_closed: *peer_closed };
                }
            }
            (Event::Parked, State::Reading { phase, continue_sent, .. }) => {
                (*phase, *continue_sent) = (Phase::Idle, false);
                self.deadline_ms = clock.phase_deadline(Phase::Idle);
            }
            (Event::Resolved { keep_alive }, State::Reading { peer_closed, .. }) => {
                // A long wait (a long-poll) must not leave its answer past the idle deadline.
                self.deadline_ms = self.deadline_ms.max(clock.phase_deadline(Phase::Idle));
                if !keep_alive {
                    self.state = State::Flushing { peer_closed: *peer_closed };
                }
            }
            (Event::PeerClosed, State::Reading { peer_closed, .. } | State::Flushing { peer_closed }) => *peer_closed = true,
            (Event::InputFramed, State::Reading { peer_closed: true, .. })
                if self.parked.is_none() && !crate::consume::ConnConsumer::busy(&self.consumer) =>
            {
                self.state = State::Flushing { peer_closed: true };
            }
            (Event::FramingFailed, _) => {
                self.state = State::Flushing { peer_closed: false };
                self.deadline_ms = clock.phase_deadline(Phase::Idle);
            }
            (Event::Refused, _) => {
                self.state = State::Flushing { peer_closed: false };
                self.deadline_ms = now_ms + LINGER_MS;
            }
            (Event::Sent, State::Reading { phase: Phase::Head | Phase::Body { .. }, .. }) => {
                // A request being read keeps its phase's deadline: an answer to an earlier
                // request or a `100 Continue` must not give a slow head or body the idle timeout.
            }
            (Event::Sent, _) => self.deadline_ms = self.deadline_ms.max(clock.phase_deadline(Phase::Idle)),
            (Event::Flushed, _) => self.state = State::Lingering { until_ms: now_ms + LINGER_MS },
            (Event::Killed, _) => self.state = State::Dead,
            (Event::Freed, _) => self.state = State::Vacant,
            (
                Event::Incomplete(_)
                | Event::Answered { .. }
                | Event::Parked
                | Event::Resolved { .. }
                | Event::PeerClosed
                | Event::InputFramed,
                _,
            ) => {}
        }
        Effect::None
    }

    /// The peer's EOF arrived (a receive completed with 0): records it and says what
    /// is still owed. A receive can be in flight when the connection starts flushing (a
    /// parked request resolved, or a send completion framed the last request), so an EOF
    /// while flushing must not cut the answers being sent.
    pub fn on_eof(&mut self, clock: &Clock) -> AfterEof {
        match self.state {
            State::Preamble(_) => AfterEof::PreambleCutShort,
            State::Reading { .. } => {
                self.step(Event::PeerClosed, clock);
                AfterEof::Drive
            }
            State::Flushing { .. } => {
                self.step(Event::PeerClosed, clock);
                AfterEof::Flush
            }
            State::Lingering { .. } | State::Dead | State::Vacant => AfterEof::Kill,
        }
    }

    /// The descriptor for io_uring operations (-1 once closed, which the kernel refuses).
    pub fn fd(&self) -> RawFd {
        self.socket.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    /// A connection is in the slot (in any state, dead included).
    pub fn in_use(&self) -> bool {
        self.state != State::Vacant
    }

    /// Serving requests: its first bytes settled, not closing.
    pub fn is_reading(&self) -> bool {
        matches!(self.state, State::Reading { .. })
    }

    /// Open for what the peer sends: serving, or its first bytes not settled yet.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Preamble(_) | State::Reading { .. })
    }

    /// Its first bytes still wait to be settled (PROXY protocol).
    pub fn preamble(&self) -> Option<Preamble> {
        match self.state {
            State::Preamble(preamble) => Some(preamble),
            _ => None,
        }
    }

    /// The peer has sent its last byte.
    pub fn peer_closed(&self) -> bool {
        matches!(self.state, State::Reading { peer_closed: true, .. } | State::Flushing { peer_closed: true })
    }

    /// Where the request being read stands (`Idle` outside `Reading`).
    pub fn phase(&self) -> Phase {
        match self.state {
            State::Reading { phase, .. } => phase,
            _ => Phase::Idle,
        }
    }

    /// Something waits to be sent: answers, or TLS records (handshake, alerts).
    pub fn has_output(&self) -> bool {
        !self.output.is_empty() || self.tls.as_ref().is_some_and(|session| session.wants_write())
    }

    /// Nothing is in progress: no partial request, no parked request, nothing to send.
    /// Whether the next buffered request may be framed: reading, nothing parked, no
    /// consumer wait or stream under way, and the output below `high_water`.
    pub fn frames_more(&self, high_water: usize) -> bool {
        self.parked.is_none() && !crate::consume::ConnConsumer::busy(&self.consumer) && self.is_reading() && self.output.len() < high_water
    }

    pub fn is_quiet(&self) -> bool {
        self.input.is_empty() && self.parked.is_none() && !self.has_output() && self.send == SendOp::Idle
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

    /// Bytes the pooled buffers hold allocated (for the memory budget).
    pub fn bytes(&self) -> u64 {
        self.free.iter().map(|buffer| buffer.capacity() as u64).sum()
    }

    /// Frees pooled buffers (the largest first) until the pool holds at most `max_bytes`.
    pub fn trim(&mut self, max_bytes: u64) {
        let mut bytes = self.bytes();
        if bytes <= max_bytes {
            return;
        }
        self.free.sort_unstable_by_key(Vec::capacity);
        while bytes > max_bytes
            && let Some(buffer) = self.free.pop()
        {
            bytes -= buffer.capacity() as u64;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::PathLabel;

    const CLOCK: Clock = Clock { now_ms: 1_000, idle_timeout_ms: 60_000, header_timeout_ms: 10_000, body_timeout_ms: 30_000 };

    fn in_state(state: State) -> Conn {
        let mut conn = Conn::vacant();
        conn.state = state;
        conn
    }

    fn parked() -> Parked {
        let pending =
            Pending { path: PathLabel::Other, batch: false, keep_alive: true, outstanding: 1, results: Vec::new(), remember: None };
        Parked { pending, framed_ns: 0 }
    }

    #[test]
    fn an_eof_while_flushing_keeps_the_answers_and_closes_after_them() {
        let mut conn = in_state(State::Flushing { peer_closed: false });
        assert_eq!(conn.on_eof(&CLOCK), AfterEof::Flush);
        assert_eq!(conn.state, State::Flushing { peer_closed: true });
        assert!(conn.peer_closed());
    }

    #[test]
    fn an_eof_while_reading_frames_what_is_buffered() {
        let mut conn = in_state(State::reading());
        assert_eq!(conn.on_eof(&CLOCK), AfterEof::Drive);
        assert_eq!(conn.state, State::Reading { phase: Phase::Idle, continue_sent: false, peer_closed: true });
    }

    #[test]
    fn an_eof_ends_lingering_and_cuts_a_preamble_short() {
        let mut lingering = in_state(State::Lingering { until_ms: 5_000 });
        assert_eq!(lingering.on_eof(&CLOCK), AfterEof::Kill);
        let mut preamble = in_state(State::Preamble(Preamble::Sniff));
        assert_eq!(preamble.on_eof(&CLOCK), AfterEof::PreambleCutShort);
        assert_eq!(preamble.state, State::Preamble(Preamble::Sniff));
    }

    #[test]
    fn a_closed_peer_is_done_only_once_nothing_is_parked() {
        let mut conn = in_state(State::Reading { phase: Phase::Idle, continue_sent: false, peer_closed: true });
        conn.parked = Some(parked());
        conn.step(Event::InputFramed, &CLOCK);
        assert!(conn.is_reading(), "a parked request's answer is still owed");
        conn.parked = None;
        conn.step(Event::InputFramed, &CLOCK);
        assert_eq!(conn.state, State::Flushing { peer_closed: true });
    }

    #[test]
    fn an_open_peer_keeps_reading_after_its_input_is_framed() {
        let mut conn = in_state(State::reading());
        conn.step(Event::InputFramed, &CLOCK);
        assert!(conn.is_reading());
    }

    #[test]
    fn answers_move_the_deadline_and_close_when_keep_alive_is_off() {
        let mut conn = in_state(State::reading());
        conn.step(Event::Incomplete(Phase::Head), &CLOCK);
        assert_eq!(conn.deadline_ms, CLOCK.now_ms + CLOCK.header_timeout_ms);
        conn.step(Event::Answered { keep_alive: true }, &CLOCK);
        assert_eq!(conn.deadline_ms, CLOCK.now_ms + CLOCK.idle_timeout_ms);
        assert!(conn.is_reading());
        conn.step(Event::Answered { keep_alive: false }, &CLOCK);
        assert_eq!(conn.state, State::Flushing { peer_closed: false });
    }

    #[test]
    fn continue_goes_out_once_per_request() {
        let mut conn = in_state(State::reading());
        let body = Phase::Body { expects_continue: true };
        assert_eq!(conn.step(Event::Incomplete(body), &CLOCK), Effect::SendContinue);
        assert_eq!(conn.step(Event::Incomplete(body), &CLOCK), Effect::None);
        conn.step(Event::Answered { keep_alive: true }, &CLOCK);
        assert_eq!(conn.step(Event::Incomplete(body), &CLOCK), Effect::SendContinue);
    }

    #[test]
    fn a_send_keeps_a_slow_request_on_its_own_deadline() {
        let mut conn = in_state(State::reading());
        conn.step(Event::Incomplete(Phase::Head), &CLOCK);
        let later = Clock { now_ms: CLOCK.now_ms + 5_000, ..CLOCK };
        conn.step(Event::Sent, &later);
        assert_eq!(conn.deadline_ms, CLOCK.now_ms + CLOCK.header_timeout_ms, "an answer to an earlier request must not extend a slow head");
    }

    #[test]
    fn flushing_lingers_then_dies_then_frees() {
        let mut conn = in_state(State::Flushing { peer_closed: false });
        conn.step(Event::Flushed, &CLOCK);
        assert_eq!(conn.state, State::Lingering { until_ms: CLOCK.now_ms + LINGER_MS });
        conn.step(Event::Killed, &CLOCK);
        assert_eq!(conn.state, State::Dead);
        assert!(conn.in_use(), "a dead connection holds its slot until no op is in flight");
        conn.step(Event::Freed, &CLOCK);
        assert!(!conn.in_use());
    }

    #[test]
    fn events_that_belong_to_reading_do_not_reopen_a_closing_connection() {
        for state in [State::Flushing { peer_closed: false }, State::Lingering { until_ms: 9 }, State::Dead] {
            let mut conn = in_state(state);
            for event in [Event::Incomplete(Phase::Head), Event::Answered { keep_alive: true }, Event::Parked, Event::InputFramed] {
                conn.step(event, &CLOCK);
                assert_eq!(conn.state, state, "{event:?} in {state:?}");
            }
        }
    }
}
