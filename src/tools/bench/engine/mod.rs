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
use std::net::Shutdown;
use std::sync::atomic::Ordering;
use std::time::Duration;

use io_uring::{IoUring, cqueue, squeue, types};
use socket2::SockAddr;

use crate::constants::{
    BENCH_OPEN_LOOP_OUTSTANDING_PER_CONN_MAX, BENCH_RECONNECT_DELAY_MS, BENCH_RECV_BUFFER_BYTES, BENCH_RECV_BUFFERS, BENCH_TICK_MS,
};
use crate::reactor::{self, bufring::BufRing, op};
use crate::tools::bench::conn::{Conn, ConnState, Op, PING, Role, SLOTS_MAX, Waiting, decode, token};
use crate::tools::bench::plan::Plan;
use crate::tools::bench::response::Response;
use crate::tools::bench::shared::{EngineOptions, Shared};
use crate::tools::bench::stats::{ErrorKind, ThreadTotals};

mod events;

const TICK_NS: u64 = BENCH_TICK_MS * 1_000_000;
const RECONNECT_DELAY_NS: u64 = BENCH_RECONNECT_DELAY_MS * 1_000_000;
/// A request written this much after its intended time counts as late (open loop).
const LATE_NS: u64 = 1_000_000;
/// How often each thread refreshes its p99 for the progress line.
const PROGRESS_P99_EVERY_NS: u64 = 1_000_000_000;

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
    /// Plaintext of one TLS receive, reused.
    plaintext: Vec<u8>,
    connecting: usize,
    /// Connections in their TLS handshake (they count against the connect bound too).
    handshaking: usize,
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
        let (ring, _features) = reactor::setup(&reactor::restrictions::BENCH)?;
        let buffers = BufRing::register(&ring, 0, BENCH_RECV_BUFFERS, BENCH_RECV_BUFFER_BYTES)?;
        let ring = ring.enable()?;
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
            plaintext: Vec::new(),
            connecting: 0,
            handshaking: 0,
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
            let all_tried = self.conns.iter().all(|conn| conn.attempted) && self.connecting == 0 && self.handshaking == 0;
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
                if intended >= self.warmup_end_ns {
                    self.totals.measured.timeline.late(now - self.warmup_end_ns);
                }
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
            self.totals.measured.record_sent(plan.kind(index), plan.class(index), now.saturating_sub(self.warmup_end_ns));
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
            if conn.is_live() && !conn.recv_inflight {
                conn.recv_inflight = true;
                let fd = conn.socket.as_ref().map_or(-1, std::os::fd::AsRawFd::as_raw_fd);
                let entry = op::recv::multishot(fd, &self.buffers, token(Op::Recv, slot, conn.generation));
                self.push(&entry);
            }
        }
        self.rearm = rearm;
        self.buffers.publish();
    }

    fn start_send(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if conn.send_inflight || !conn.is_live() {
            return;
        }
        if conn.sent >= conn.sending.len() {
            conn.sending.clear();
            conn.sent = 0;
            match conn.tls.as_deref_mut() {
                None => std::mem::swap(&mut conn.output, &mut conn.sending),
                Some(tls) => {
                    let sealed = crate::net::tls::seal(tls, &conn.output, &mut conn.sending);
                    conn.output.clear();
                    if sealed.is_err() {
                        self.count_error(ErrorKind::Tls);
                        return self.close(slot, self.now(), RECONNECT_DELAY_NS);
                    }
                }
            }
            if conn.sending.is_empty() {
                return;
            }
        }
        conn.send_inflight = true;
        let fd = conn.socket.as_ref().map_or(-1, std::os::fd::AsRawFd::as_raw_fd);
        let rest = &conn.sending[conn.sent..];
        let entry = op::send::bytes(fd, rest, token(Op::Send, slot, conn.generation));
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
            let waits = (conn.is_open() && !conn.waiting.is_empty()) || conn.state == ConnState::Handshaking;
            if waits && now.saturating_sub(conn.progress_ns) > timeout {
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

    /// Counts a request that will never be answered (a ping is nobody's loss).
    fn lose(&mut self, waiting: Waiting, now: u64) {
        if waiting.index == PING {
            return;
        }
        self.totals.unanswered += 1;
        if waiting.start_ns >= self.warmup_end_ns {
            let class = self.setup.plan.class(waiting.index as usize);
            self.totals.measured.record_unanswered(class, now.saturating_sub(self.warmup_end_ns));
        }
    }

    /// Counts what is left: requests still waiting are unanswered; idle connections still open.
    fn finish(&mut self) {
        let now = self.now();
        for slot in 0..self.load_connections {
            let mut waiting = std::mem::take(&mut self.conns[slot].waiting);
            for lost in waiting.drain(..) {
                self.lose(lost, now);
            }
        }
        self.publish_progress(now);
        self.totals.idle.open_at_end = self.conns[self.load_connections..].iter().filter(|conn| conn.is_open()).count() as u64;
        for conn in &mut self.conns {
            conn.waiting.clear();
            if let Some(socket) = &conn.socket {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
    }
}
