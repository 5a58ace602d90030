//! One client thread: an io_uring, its share of the connections and of the request
//! pool. Each loop: one `io_uring_enter` that submits every queued operation and waits
//! for a completion, the next tick or the next due request (EXT_ARG timeout) → handle
//! every completion → write due requests → housekeeping → one send per connection with
//! everything it has to say → re-arm receives.
//!
//! Receives are multishot from a provided buffer ring, so the parser reads the kernel's
//! buffer directly and idle connections hold no receive memory. Requests are copied from
//! the plan into the connection's output buffer; a send in flight owns its buffer until
//! its completion arrives.
//!
//! Latency is measured from a request's *start*: in open loop its intended send time
//! (`start + i / rate`), whether or not the connection was free then, so a slow server
//! cannot hide its stalls (no coordinated omission); in closed loop the moment it was
//! handed to its connection. The end is the loop iteration whose completion carried the
//! last byte of its answer.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::constants::{
    BENCH_CONNECTS_IN_FLIGHT_MAX, BENCH_OPEN_LOOP_OUTSTANDING_PER_CONN_MAX, BENCH_RECONNECT_DELAY_MS, BENCH_RECV_BUFFER_BYTES,
    BENCH_RECV_BUFFERS, BENCH_TICK_MS,
};
use crate::loadgen::conn::{Conn, ConnState, Op, PING, Role, SLOTS_MAX, Waiting, decode, token};
use crate::loadgen::plan::Plan;
use crate::loadgen::response::Response;
use crate::loadgen::stats::{ErrorKind, ThreadTotals};
use crate::reactor::{self, bufring::BufRing};

const TICK_NS: u64 = BENCH_TICK_MS * 1_000_000;
const RECONNECT_DELAY_NS: u64 = BENCH_RECONNECT_DELAY_MS * 1_000_000;
/// A request written this much after its intended time counts as late (open loop).
const LATE_NS: u64 = 1_000_000;
/// How often each thread refreshes its p99 for the progress line.
const PROGRESS_P99_EVERY_NS: u64 = 1_000_000_000;

/// What the client loop needs from the validated options.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub addr: SocketAddr,
    /// `Host` header of the idle connections' pings.
    pub host: String,
    /// Closed loop: requests outstanding per connection.
    pub pipeline: usize,
    /// Open loop: requests per second over all threads.
    pub rate: Option<f64>,
    pub warmup_ns: u64,
    pub duration_ns: u64,
    /// No answer for this long while requests wait: the connection is reopened.
    pub timeout_ns: u64,
    pub idle_ping_ns: u64,
}

/// Live figures of one thread, for the progress line.
#[derive(Debug, Default)]
pub struct Progress {
    pub completed: AtomicU64,
    pub errors: AtomicU64,
    pub p99_ns: AtomicU64,
    /// Load connections open after the connect phase (valid once `ready` is passed).
    pub ready_connections: AtomicU64,
}

/// What the threads of one run share. Times are nanoseconds since `origin`.
pub struct Shared {
    origin: Instant,
    /// Every thread has tried its connections; then the main thread sets `start_ns`.
    pub gate: Gate,
    pub start_ns: AtomicU64,
    /// The main thread found no open connection: threads leave without running.
    pub abort: AtomicBool,
    /// A thread ran out of requests: everybody stops; `stopped_at_ns` says when.
    pub stop: AtomicBool,
    /// SIGINT or SIGTERM arrived: stop now and report what was measured.
    pub interrupted: Arc<AtomicBool>,
    pub stopped_at_ns: AtomicU64,
    pub progress: Vec<Progress>,
    /// The last connect error seen, for the "cannot connect" message.
    pub last_connect_error: Mutex<Option<String>>,
}

impl Shared {
    pub fn new(threads: usize) -> Shared {
        Shared {
            origin: Instant::now(),
            gate: Gate::default(),
            start_ns: AtomicU64::new(0),
            abort: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            interrupted: Arc::new(AtomicBool::new(false)),
            stopped_at_ns: AtomicU64::new(u64::MAX),
            progress: (0..threads).map(|_| Progress::default()).collect(),
            last_connect_error: Mutex::new(None),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
}

/// Where the threads meet before the clock starts: each [`arrive`](Gate::arrive)s after
/// its connect phase and waits for the main thread to [`open`](Gate::open) the gate.
#[derive(Debug, Default)]
pub struct Gate {
    state: Mutex<(usize, bool)>,
    changed: Condvar,
}

impl Gate {
    pub fn arrive(&self) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.0 += 1;
        self.changed.notify_all();
        while !state.1 {
            state = self.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Blocks until `count` threads have arrived.
    pub fn wait_arrivals(&self, count: usize) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while state.0 < count {
            state = self.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    pub fn open(&self) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.1 = true;
        self.changed.notify_all();
    }
}

/// One thread's share of the run.
pub struct ThreadSetup<'a> {
    pub thread: usize,
    pub threads: usize,
    pub load_connections: usize,
    pub idle_connections: usize,
    pub options: &'a EngineOptions,
    pub plan: &'a Plan,
    pub shared: &'a Shared,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting { deadline_ns: u64 },
    Running,
    Draining { deadline_ns: u64 },
    Done,
}

/// Runs one client thread: connect, wait for the others, run, drain. Always arrives at
/// the gate, even when its ring cannot be set up, so the main thread never hangs.
pub fn run_thread(setup: ThreadSetup<'_>) -> io::Result<ThreadTotals> {
    let shared = setup.shared;
    let progress = &shared.progress[setup.thread];
    let mut engine = Engine::new(setup);
    let connected = match engine.as_mut() {
        Ok(engine) => engine.connect_phase(),
        Err(_) => Ok(()),
    };
    if let Ok(engine) = &engine {
        progress.ready_connections.store(engine.totals.load_connections_ready, Ordering::Relaxed);
    }
    shared.gate.arrive();
    connected?;
    let mut engine = engine?;
    if shared.abort.load(Ordering::Relaxed) {
        return Ok(engine.totals);
    }
    engine.run()?;
    Ok(engine.totals)
}

struct Engine<'a> {
    // Dropped first: the kernel is done with every buffer below before they are freed.
    ring: IoUring,
    buffers: BufRing,
    setup: ThreadSetup<'a>,
    addr: Box<SockAddr>,
    connect_timeout: Box<types::Timespec>,
    ping: Vec<u8>,
    conns: Vec<Conn>,
    load_connections: usize,
    flush: Vec<u32>,
    rearm: Vec<u32>,
    completions: Vec<(u64, i32, u32)>,
    responses: Vec<Response>,
    connecting: usize,
    totals: ThreadTotals,
    phase: Phase,
    start_ns: u64,
    warmup_end_ns: u64,
    end_ns: u64,
    /// This thread's requests are plan indices `thread + k * threads`; `next` is k.
    next: usize,
    local_count: usize,
    /// Open loop: the next request's intended time, and the round-robin cursor.
    next_due_ns: u64,
    round_robin: usize,
    pings_sent: u64,
    last_tick_ns: u64,
    last_p99_ns: u64,
    completed: u64,
}

impl<'a> Engine<'a> {
    fn new(setup: ThreadSetup<'a>) -> io::Result<Engine<'a>> {
        let (ring, _features) = reactor::setup()?;
        let buffers = BufRing::register(&ring, 0, BENCH_RECV_BUFFERS, BENCH_RECV_BUFFER_BYTES)?;
        let total = setup.load_connections + setup.idle_connections;
        if total > SLOTS_MAX {
            return Err(io::Error::other(format!("{total} connections on one thread; at most {SLOTS_MAX}")));
        }
        let mut conns = Vec::with_capacity(total);
        conns.extend((0..setup.load_connections).map(|_| Conn::new(Role::Load)));
        conns.extend((0..setup.idle_connections).map(|_| Conn::new(Role::Idle)));
        let mine = setup.plan.len().saturating_sub(setup.thread);
        let local_count = mine.div_ceil(setup.threads);
        let timeout = Duration::from_nanos(setup.options.timeout_ns);
        Ok(Engine {
            ring,
            buffers,
            addr: Box::new(SockAddr::from(setup.options.addr)),
            connect_timeout: Box::new(types::Timespec::from(timeout)),
            ping: format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", setup.options.host).into_bytes(),
            load_connections: setup.load_connections,
            setup,
            conns,
            flush: Vec::new(),
            rearm: Vec::new(),
            completions: Vec::with_capacity(reactor::RING_ENTRIES as usize * 4),
            responses: Vec::new(),
            connecting: 0,
            totals: ThreadTotals::default(),
            phase: Phase::Done,
            start_ns: 0,
            warmup_end_ns: 0,
            end_ns: 0,
            next: 0,
            local_count,
            next_due_ns: 0,
            round_robin: 0,
            pings_sent: 0,
            last_tick_ns: 0,
            last_p99_ns: 0,
            completed: 0,
        })
    }

    fn now(&self) -> u64 {
        self.setup.shared.now_ns()
    }

    /// Bytes moved now belong to the measured part of the run.
    fn measuring(&self, now: u64) -> bool {
        matches!(self.phase, Phase::Running | Phase::Draining { .. }) && now >= self.warmup_end_ns
    }

    /// Tries every connection once, at most `BENCH_CONNECTS_IN_FLIGHT_MAX` at a time,
    /// for at most `--timeout`.
    fn connect_phase(&mut self) -> io::Result<()> {
        let now = self.now();
        self.phase = Phase::Connecting { deadline_ns: now + self.setup.options.timeout_ns };
        loop {
            let now = self.now();
            self.start_connects(now);
            let all_tried = self.conns.iter().all(|conn| conn.attempted) && self.connecting == 0;
            if all_tried || matches!(self.phase, Phase::Connecting { deadline_ns } if now >= deadline_ns) {
                break;
            }
            self.submit_queued();
            reactor::submit_and_wait(&self.ring, Some(Duration::from_nanos(TICK_NS)))?;
            self.reap();
        }
        let open = |role| self.conns.iter().filter(|c| c.role == role && c.is_open()).count() as u64;
        self.totals.load_connections_ready = open(Role::Load);
        self.totals.idle.ready = open(Role::Idle);
        Ok(())
    }

    fn run(&mut self) -> io::Result<()> {
        let options = self.setup.options;
        self.start_ns = self.setup.shared.start_ns.load(Ordering::Relaxed);
        self.warmup_end_ns = self.start_ns + options.warmup_ns;
        self.end_ns = self.warmup_end_ns + options.duration_ns;
        self.phase = Phase::Running;
        self.next_due_ns = self.intended_ns(self.setup.thread);
        self.last_tick_ns = self.start_ns;
        self.last_p99_ns = self.start_ns;
        if options.rate.is_none() {
            let now = self.now();
            for slot in 0..self.load_connections as u32 {
                self.refill(slot, now);
            }
        }
        while self.phase != Phase::Done {
            let now = self.now();
            self.schedule(now);
            if now >= self.last_tick_ns + TICK_NS {
                self.last_tick_ns = now;
                self.tick(now);
            }
            self.submit_queued();
            let wait = self.wait_ns(now);
            reactor::submit_and_wait(&self.ring, (wait > 0).then(|| Duration::from_nanos(wait)))?;
            self.reap();
        }
        self.finish();
        Ok(())
    }

    /// How long the next enter may wait: until the next tick, or the next due request.
    fn wait_ns(&self, now: u64) -> u64 {
        let mut deadline = self.last_tick_ns + TICK_NS;
        if self.setup.options.rate.is_some() && self.phase == Phase::Running && self.next < self.local_count {
            deadline = deadline.min(self.next_due_ns);
        }
        deadline.saturating_sub(now)
    }

    fn intended_ns(&self, global: usize) -> u64 {
        match self.setup.options.rate {
            Some(rate) => self.start_ns + (global as f64 * 1e9 / rate) as u64,
            None => self.start_ns,
        }
    }

    /// Plan index of this thread's next request, if the pool has one left.
    fn take_next(&mut self) -> Option<usize> {
        if self.next >= self.local_count {
            return None;
        }
        let global = self.setup.thread + self.next * self.setup.threads;
        self.next += 1;
        Some(global)
    }

    /// Open loop: writes every request whose intended time has come, round-robin over the
    /// open connections, whether or not earlier answers have arrived.
    fn schedule(&mut self, now: u64) {
        if self.setup.options.rate.is_none() || self.phase != Phase::Running {
            return;
        }
        while self.next < self.local_count {
            let global = self.setup.thread + self.next * self.setup.threads;
            let intended = self.intended_ns(global);
            if intended > now {
                self.next_due_ns = intended;
                return;
            }
            let Some(slot) = self.pick_connection() else {
                // Nothing can take it now; it stays due and its lag grows.
                self.next_due_ns = now + TICK_NS;
                return;
            };
            self.next += 1;
            let lag = now - intended;
            self.totals.max_lag_ns = self.totals.max_lag_ns.max(lag);
            if lag > LATE_NS {
                self.totals.late_requests += 1;
            }
            self.enqueue(slot, global, intended, now);
        }
    }

    fn pick_connection(&mut self) -> Option<u32> {
        for _ in 0..self.load_connections {
            let slot = self.round_robin;
            self.round_robin = (self.round_robin + 1) % self.load_connections;
            let conn = &self.conns[slot];
            if conn.is_open() && conn.waiting.len() < BENCH_OPEN_LOOP_OUTSTANDING_PER_CONN_MAX {
                return Some(slot as u32);
            }
        }
        None
    }

    /// Closed loop: keeps `--pipeline` requests outstanding on a load connection.
    fn refill(&mut self, slot: u32, now: u64) {
        let conn = &self.conns[slot as usize];
        let running = self.phase == Phase::Running && now < self.end_ns;
        if !running || self.setup.options.rate.is_some() || conn.role != Role::Load || !conn.is_open() {
            return;
        }
        while self.conns[slot as usize].waiting.len() < self.setup.options.pipeline {
            let Some(index) = self.take_next() else {
                self.totals.pool_exhausted = true;
                let shared = self.setup.shared;
                let _ = shared.stopped_at_ns.fetch_min(now, Ordering::Relaxed);
                shared.stop.store(true, Ordering::Relaxed);
                return;
            };
            self.enqueue(slot, index, now, now);
        }
    }

    /// Queues request `index` on `slot`; latency will be measured from `start_ns`.
    fn enqueue(&mut self, slot: u32, index: usize, start_ns: u64, now: u64) {
        let plan = self.setup.plan;
        let conn = &mut self.conns[slot as usize];
        conn.output.extend_from_slice(plan.request(index));
        if conn.waiting.is_empty() {
            conn.progress_ns = now;
        }
        conn.waiting.push_back(Waiting { index: index as u32, start_ns });
        if start_ns >= self.warmup_end_ns {
            self.totals.measured.sent[plan.kind(index).index()] += 1;
        } else {
            self.totals.warmup_sent += 1;
        }
        self.queue_flush(slot);
    }

    fn queue_flush(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if !conn.flush_queued {
            conn.flush_queued = true;
            self.flush.push(slot);
        }
    }

    fn queue_rearm(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if !conn.rearm_queued && !conn.recv_inflight {
            conn.rearm_queued = true;
            self.rearm.push(slot);
        }
    }

    fn push(&mut self, entry: &squeue::Entry) {
        // The entries built here point at the plan-independent `sending` buffer of a slot
        // (kept until the send's completion), at `addr` and `connect_timeout` (boxed, alive
        // as long as the ring), or at nothing (buffer-select receives).
        if let Err(error) = reactor::push(&mut self.ring, entry) {
            eprintln!("sluice bench: io_uring submit failed: {error}");
        }
    }

    /// Turns the queued sends and receives into submission entries.
    fn submit_queued(&mut self) {
        let mut flush = std::mem::take(&mut self.flush);
        for slot in flush.drain(..) {
            self.conns[slot as usize].flush_queued = false;
            self.start_send(slot);
        }
        self.flush = flush;
        let mut rearm = std::mem::take(&mut self.rearm);
        for slot in rearm.drain(..) {
            let conn = &mut self.conns[slot as usize];
            conn.rearm_queued = false;
            if conn.is_open() && !conn.recv_inflight {
                conn.recv_inflight = true;
                let fd = conn.socket.as_ref().map_or(-1, std::os::fd::AsRawFd::as_raw_fd);
                let entry =
                    opcode::RecvMulti::new(types::Fd(fd), self.buffers.group()).build().user_data(token(Op::Recv, slot, conn.generation));
                self.push(&entry);
            }
        }
        self.rearm = rearm;
        self.buffers.publish();
    }

    fn start_send(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if conn.send_inflight || !conn.is_open() {
            return;
        }
        if conn.sent >= conn.sending.len() {
            if conn.output.is_empty() {
                return;
            }
            conn.sending.clear();
            std::mem::swap(&mut conn.output, &mut conn.sending);
            conn.sent = 0;
        }
        conn.send_inflight = true;
        let fd = conn.socket.as_ref().map_or(-1, std::os::fd::AsRawFd::as_raw_fd);
        let rest = &conn.sending[conn.sent..];
        let length = rest.len().min(u32::MAX as usize) as u32;
        let entry = opcode::Send::new(types::Fd(fd), rest.as_ptr(), length).flags(libc::MSG_NOSIGNAL).build().user_data(token(
            Op::Send,
            slot,
            conn.generation,
        ));
        self.push(&entry);
    }

    fn reap(&mut self) {
        let now = self.now();
        let mut completions = std::mem::take(&mut self.completions);
        completions.extend(self.ring.completion().map(|cqe| (cqe.user_data(), cqe.result(), cqe.flags())));
        for (data, result, flags) in completions.drain(..) {
            let Some((op, slot, generation)) = decode(data) else { continue };
            if self.conns.get(slot as usize).is_none_or(|conn| conn.generation != generation) {
                if op == Op::Recv
                    && let Some(bid) = cqueue::buffer_select(flags)
                {
                    self.buffers.recycle(bid);
                }
                continue;
            }
            match op {
                Op::Connect => self.on_connect(slot, result, now),
                Op::Send => self.on_send(slot, result, now),
                Op::Recv => self.on_recv(slot, result, flags, now),
                Op::ConnectTimeout => {}
            }
        }
        self.completions = completions;
    }
}

// Connection life cycle.
impl Engine<'_> {
    /// Starts connects for slots that are down and due, within the in-flight bound.
    fn start_connects(&mut self, now: u64) {
        let connecting_phase = matches!(self.phase, Phase::Connecting { .. });
        for slot in 0..self.conns.len() {
            if self.connecting >= BENCH_CONNECTS_IN_FLIGHT_MAX {
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
        let connect = opcode::Connect::new(types::Fd(fd), self.addr.as_ptr().cast(), self.addr.len())
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(token(Op::Connect, slot, generation));
        let timeout = opcode::LinkTimeout::new(&*self.connect_timeout).build().user_data(token(Op::ConnectTimeout, slot, generation));
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

    fn on_connect(&mut self, slot: u32, result: i32, now: u64) {
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
    fn close(&mut self, slot: u32, now: u64, retry_delay_ns: u64) {
        let conn = &mut self.conns[slot as usize];
        if matches!(conn.state, ConnState::Closing { .. }) {
            return;
        }
        if let ConnState::Down { .. } = conn.state {
            conn.state = ConnState::Down { retry_at_ns: now + retry_delay_ns };
            return;
        }
        let lost = conn.waiting.drain(..).filter(|waiting| waiting.index != PING).count();
        self.totals.unanswered += lost as u64;
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
        conn.generation = conn.generation.wrapping_add(1);
        conn.sending.clear();
        conn.sent = 0;
        conn.state = ConnState::Down { retry_at_ns: now + retry_delay_ns };
        // After an orderly close, reconnect now rather than at the next tick.
        if retry_delay_ns == 0 && self.phase == Phase::Running && self.connecting < BENCH_CONNECTS_IN_FLIGHT_MAX {
            self.start_connect(slot, now);
        }
    }

    fn count_error(&mut self, kind: ErrorKind) {
        self.totals.count_error(kind);
    }

    fn on_send(&mut self, slot: u32, result: i32, now: u64) {
        let conn = &mut self.conns[slot as usize];
        conn.send_inflight = false;
        if !conn.is_open() {
            return self.finish_close(slot, now);
        }
        if result <= 0 {
            self.count_error(ErrorKind::Reset);
            return self.close(slot, now, RECONNECT_DELAY_NS);
        }
        conn.sent += result as usize;
        let more = conn.sent < conn.sending.len() || !conn.output.is_empty();
        if self.measuring(now) {
            self.totals.measured.bytes_sent += result as u64;
        }
        if more {
            self.queue_flush(slot);
        }
    }

    fn on_recv(&mut self, slot: u32, result: i32, flags: u32, now: u64) {
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
        } else if result != -libc::ENOBUFS && self.conns[slot as usize].is_open() {
            self.count_error(ErrorKind::Reset);
            self.close(slot, now, RECONNECT_DELAY_NS);
        }
        let conn = &self.conns[slot as usize];
        if !conn.recv_inflight {
            if conn.is_open() {
                self.queue_rearm(slot);
            } else {
                self.finish_close(slot, now);
            }
        }
    }

    fn on_data(&mut self, slot: u32, bid: u16, length: usize, now: u64) {
        let Engine { buffers, conns, responses, .. } = self;
        let conn = &mut conns[slot as usize];
        if !conn.is_open() {
            buffers.recycle(bid);
            return;
        }
        let parsed = conn.parser.feed(buffers.data(bid, length), &mut |response| responses.push(response));
        buffers.recycle(bid);
        if self.measuring(now) {
            self.totals.measured.bytes_received += length as u64;
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
                let latency = now.saturating_sub(waiting.start_ns);
                self.totals.measured.record(plan.kind(index), response.status, latency, plan.events_per_request());
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

// Housekeeping and the end of the run.
impl Engine<'_> {
    fn tick(&mut self, now: u64) {
        let shared = self.setup.shared;
        if self.phase == Phase::Running && shared.interrupted.load(Ordering::Relaxed) {
            let _ = shared.stopped_at_ns.fetch_min(now, Ordering::Relaxed);
            shared.stop.store(true, Ordering::Relaxed);
        }
        if self.phase == Phase::Running && (now >= self.end_ns || shared.stop.load(Ordering::Relaxed)) {
            self.phase = Phase::Draining { deadline_ns: now + self.setup.options.timeout_ns };
        }
        if let Phase::Draining { deadline_ns } = self.phase {
            let waiting = self.conns[..self.load_connections].iter().any(|conn| !conn.waiting.is_empty());
            if !waiting || now >= deadline_ns {
                self.phase = Phase::Done;
                return;
            }
        }
        self.check_timeouts(now);
        if self.phase == Phase::Running {
            self.start_connects(now);
            self.send_pings(now);
        }
        self.publish_progress(now);
    }

    fn check_timeouts(&mut self, now: u64) {
        let timeout = self.setup.options.timeout_ns;
        for slot in 0..self.conns.len() {
            let conn = &self.conns[slot];
            if conn.is_open() && !conn.waiting.is_empty() && now.saturating_sub(conn.progress_ns) > timeout {
                self.count_error(ErrorKind::Timeout);
                self.close(slot as u32, now, RECONNECT_DELAY_NS);
            }
        }
    }

    /// Idle connection `j` of `n` pings at `(k + j / n) * interval` after the start, so
    /// pings are spread evenly instead of arriving in one burst.
    fn send_pings(&mut self, now: u64) {
        let idle = self.conns.len() - self.load_connections;
        if idle == 0 {
            return;
        }
        let interval = self.setup.options.idle_ping_ns.max(1);
        let due = ((now - self.start_ns) as u128 * idle as u128 / interval as u128) as u64;
        while self.pings_sent < due {
            let slot = self.load_connections + (self.pings_sent % idle as u64) as usize;
            self.pings_sent += 1;
            let conn = &mut self.conns[slot];
            if conn.is_open() && conn.waiting.is_empty() {
                conn.output.extend_from_slice(&self.ping);
                conn.waiting.push_back(Waiting { index: PING, start_ns: now });
                conn.progress_ns = now;
                self.queue_flush(slot as u32);
            }
        }
    }

    fn publish_progress(&mut self, now: u64) {
        let progress = &self.setup.shared.progress[self.setup.thread];
        progress.completed.store(self.completed, Ordering::Relaxed);
        progress.errors.store(self.totals.errors_total(), Ordering::Relaxed);
        if now >= self.last_p99_ns + PROGRESS_P99_EVERY_NS {
            self.last_p99_ns = now;
            let latency = &self.totals.measured.latency;
            if !latency.is_empty() {
                progress.p99_ns.store(latency.value_at_quantile(0.99), Ordering::Relaxed);
            }
        }
    }

    /// Counts what is left: requests still waiting are unanswered; idle connections still open.
    fn finish(&mut self) {
        let now = self.now();
        self.publish_progress(now);
        let unanswered: usize = self.conns[..self.load_connections]
            .iter()
            .map(|conn| conn.waiting.iter().filter(|waiting| waiting.index != PING).count())
            .sum();
        self.totals.unanswered += unanswered as u64;
        self.totals.idle.open_at_end = self.conns[self.load_connections..].iter().filter(|conn| conn.is_open()).count() as u64;
        for conn in &mut self.conns {
            conn.waiting.clear();
            if let Some(socket) = &conn.socket {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
    }
}

fn new_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking().cloexec(), Some(Protocol::TCP))?;
    socket.set_tcp_nodelay(true)?;
    Ok(socket)
}
