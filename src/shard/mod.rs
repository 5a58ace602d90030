//! One shard: a pinned thread that owns an io_uring, an SO_REUSEPORT listener, its
//! connections and a disjoint set of partitions. Each loop: submit and wait once, handle
//! every completion, take other shards' batches, hand off ours, start group commits,
//! and queue one send per connection with everything it has to say.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use io_uring::{IoUring, cqueue, opcode, squeue, types};

use crate::config::{Config, Durability};
use crate::constants::RECEIVES_PER_EARLY_FLUSH;
use crate::http::{Limits, Phase, Poll};
use crate::ingest::handle::{self, Answer, Core, Handled, LineResult, Origin, Peer};
use crate::metrics::{Control, LoopLatency, PathLabel, ShardStats};
use crate::net::conn::{BufferPool, Closing, Conn, ProxyStage};
use crate::net::tls::ServerTls;
use crate::net::tls::session::{Received, Session};
use crate::perimeter::limits::ConnectionsPerIp;
use crate::reactor::bufring::BufRing;
use crate::reactor::{self, Token};
use crate::shard::handoff::{Message, Outcome, StoreBatch, Ticket};

pub mod handoff;
pub mod partitions;
pub mod serve;

pub use serve::{Bound, ServeError, serve};
mod proxy;

use proxy::ProxyListener;

/// Receive buffers in the ring and their size: 256 × 16 KiB = 4 MiB per shard, shared
/// by all of the shard's connections (a buffer is held only between completion and copy).
const RECV_BUFFERS: u16 = 256;
const RECV_BUFFER_BYTES: u32 = 16 * 1024;
/// Stop reading a connection whose unsent answers exceed this (it is not reading).
const OUTPUT_HIGH_WATER_BYTES: usize = 256 * 1024;
/// How long a closing connection reads and discards before it is cut.
const LINGER_MS: u64 = 2000;
/// Inbox messages handled per loop, so a flood from one shard cannot starve the network.
const INBOX_MESSAGES_PER_LOOP_MAX: usize = 256;
/// Retention and dedup-window housekeeping period.
const HOUSEKEEPING_MS: u64 = 10_000;
/// Pooled connection buffers per shard and the largest one kept.
const POOL_BUFFERS_MAX: usize = 4096;
const POOL_BUFFER_BYTES_MAX: usize = 64 * 1024;
const POOL_BUFFER_BYTES_INITIAL: usize = 16 * 1024;

/// Everything a shard thread is started with.
pub struct ShardSetup {
    pub index: usize,
    pub config: Arc<Config>,
    pub listener: RawFd,
    pub wake_fd: RawFd,
    pub wake_fds: Arc<Vec<RawFd>>,
    pub inbox: Receiver<Message>,
    pub peers: Vec<Sender<Message>>,
    pub control: Arc<Control>,
    /// The shard's TLS listener and the shared, reloadable TLS configuration.
    pub tls: Option<(RawFd, Arc<ServerTls>)>,
    pub per_ip: Arc<ConnectionsPerIp>,
}

/// The shard's TLS listener and the configuration new handshakes use, refreshed from
/// the shared one when its generation moves (a reload).
struct ShardTls {
    listener: RawFd,
    proxy: Option<ProxyListener>,
    shared: Arc<ServerTls>,
    generation: u64,
    config: Arc<rustls::ServerConfig>,
}

pub struct Shard {
    index: usize,
    ring: IoUring,
    buffers: BufRing,
    listener: RawFd,
    /// The plaintext listener's PROXY protocol setting (`None`: off).
    proxy: Option<ProxyListener>,
    tls: Option<ShardTls>,
    per_ip: Arc<ConnectionsPerIp>,
    wake_fd: RawFd,
    wake_fds: Arc<Vec<RawFd>>,
    inbox: Receiver<Message>,
    peers: Vec<Sender<Message>>,
    control: Arc<Control>,
    core: Core,
    conns: Vec<Conn>,
    free: Vec<u32>,
    open: usize,
    pool: BufferPool,
    limits: Limits,
    config: Arc<Config>,
    flush: Vec<u32>,
    rearm: Vec<u32>,
    completions: Vec<(u64, i32, u32)>,
    /// Reused list of fdatasync entries to submit this loop.
    sync_entries: Vec<squeue::Entry>,
    spent_out: Vec<Vec<StoreBatch>>,
    results_vecs: Vec<Vec<(Ticket, Outcome)>>,
    started: Instant,
    now_ms: u64,
    /// Answers queued this loop, observed into the latency histogram when it ends.
    latency: LoopLatency,
    last_tick_ms: u64,
    last_housekeeping_ms: u64,
    accepting: bool,
    /// Bounds the log lines of errors that can repeat per connection.
    log_sampler: crate::platform::logging::Sampler,
    drain_deadline_ms: Option<u64>,
    quiesced: bool,
}

fn wall_ms() -> i64 {
    crate::platform::time::now_unix_ms()
}

impl Shard {
    /// Registers the receive buffer ring on the still disabled `ring`, then locks it to
    /// [`reactor::restrictions::SHARD`] and enables it; call on the shard's own thread.
    pub fn new(setup: ShardSetup, ring: reactor::DisabledRing, core: Core) -> io::Result<Shard> {
        let buffers = BufRing::register(&ring, 0, RECV_BUFFERS, RECV_BUFFER_BYTES)
            .map_err(|error| io::Error::new(error.kind(), format!("cannot register the receive buffer ring: {error}")))?;
        let ring = ring.enable()?;
        let shards = setup.config.ingest.shards;
        let limits = Limits {
            header_bytes_max: setup.config.ingest.header_bytes_max,
            headers_count_max: setup.config.ingest.headers_count_max,
            body_bytes_max: setup.config.ingest.body_bytes_max,
        };
        Ok(Shard {
            index: setup.index,
            ring,
            buffers,
            listener: setup.listener,
            proxy: ProxyListener::of(&setup.config.ingest.proxy),
            tls: setup.tls.map(|(listener, shared)| {
                let (generation, config) = shared.current();
                let proxy = setup.config.ingest.tls.as_ref().and_then(|tls| ProxyListener::of(&tls.proxy));
                ShardTls { listener, proxy, shared, generation, config }
            }),
            per_ip: setup.per_ip,
            wake_fd: setup.wake_fd,
            wake_fds: setup.wake_fds,
            inbox: setup.inbox,
            peers: setup.peers,
            control: setup.control,
            core,
            conns: Vec::new(),
            free: Vec::new(),
            open: 0,
            pool: BufferPool::new(POOL_BUFFER_BYTES_INITIAL, POOL_BUFFER_BYTES_MAX, POOL_BUFFERS_MAX),
            limits,
            config: setup.config,
            flush: Vec::new(),
            rearm: Vec::new(),
            completions: Vec::with_capacity(reactor::RING_ENTRIES as usize * 4),
            sync_entries: Vec::new(),
            spent_out: (0..shards).map(|_| Vec::new()).collect(),
            results_vecs: Vec::new(),
            started: Instant::now(),
            now_ms: 0,
            latency: LoopLatency::default(),
            last_tick_ms: 0,
            last_housekeeping_ms: 0,
            accepting: true,
            log_sampler: crate::platform::logging::Sampler::new(crate::constants::LOG_SAMPLE_PERIOD_MS),
            drain_deadline_ms: None,
            quiesced: false,
        })
    }

    /// Nanoseconds since the shard started, from the monotonic clock. Read twice per
    /// loop (after the wait and at the end), never per request.
    fn monotonic_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    fn stats(&self) -> &ShardStats {
        &self.control.shards[self.index]
    }

    fn push(&mut self, entry: squeue::Entry) {
        if let Err(error) = reactor::push(&mut self.ring, &entry) {
            tracing::error!(shard = self.index, %error, "io_uring submit failed");
        }
    }

    /// Runs until drained. Returns an error only if the ring itself fails.
    pub fn run(&mut self) -> io::Result<()> {
        self.arm_accept(false);
        if self.tls.is_some() {
            self.arm_accept(true);
        }
        self.arm_wake();
        loop {
            let busy = !self.flush.is_empty() || !self.rearm.is_empty() || !self.core.resolved.is_empty() || !self.inbox.is_empty();
            let wait = if busy { None } else { Some(Duration::from_millis(crate::constants::TICK_MS)) };
            reactor::submit_and_wait(&self.ring, wait)?;
            let loop_started_ns = self.monotonic_ns();
            self.refresh_tls_config();
            self.core.refresh_shared();
            self.now_ms = loop_started_ns / 1_000_000;
            self.latency.begin(loop_started_ns);
            self.core.now_ms = wall_ms();
            self.reap();
            self.take_inbox();
            self.core.route_released();
            self.apply_resolved();
            self.hand_off();
            self.start_syncs();
            self.queue_answers();
            self.core.partitions.publish_offsets();
            let loop_ended_ns = self.monotonic_ns();
            self.latency.finish(loop_ended_ns, &self.control.shards[self.index].latency);
            ShardStats::add(&self.stats().heartbeat, 1);
            if self.now_ms >= self.last_tick_ms + crate::constants::TICK_MS {
                self.last_tick_ms = self.now_ms;
                self.tick();
                if self.drained() {
                    break;
                }
            }
        }
        if self.config.storage.durability == Durability::Fsync {
            self.core.partitions.sync_all();
        }
        Ok(())
    }

    fn reap(&mut self) {
        let mut completions = std::mem::take(&mut self.completions);
        completions.extend(self.ring.completion().map(|cqe| (cqe.user_data(), cqe.result(), cqe.flags())));
        let mut receives = 0;
        for (data, result, flags) in completions.drain(..) {
            match Token::decode(data) {
                Token::Accept => self.on_accept(result, flags, false),
                Token::AcceptTls => self.on_accept(result, flags, true),
                Token::Wake => self.on_wake(flags),
                Token::Recv { slot, generation } => {
                    self.on_recv(slot, generation, result, flags);
                    receives += 1;
                    if receives % RECEIVES_PER_EARLY_FLUSH == 0 {
                        self.flush_early();
                    }
                }
                Token::Send { slot, generation } => self.on_send(slot, generation, result),
                Token::Fsync { partition } => self.core.partitions.sync_done(partition, result),
                Token::Ignore => {}
            }
        }
        self.completions = completions;
    }

    /// Sends the answers ready so far and re-arms their receives without waiting for the
    /// rest of a large batch of completions: under load one loop can reap 128 of them,
    /// and answering all at the end made the first ones wait for the last (measured:
    /// p99 at 100k req/s open loop, docs/PERFORMANCE.md). One extra non-blocking
    /// io_uring_enter per RECEIVES_PER_EARLY_FLUSH requests.
    fn flush_early(&mut self) {
        self.queue_answers();
        if let Err(error) = self.ring.submit() {
            tracing::error!(shard = self.index, %error, "io_uring submit failed");
        }
    }

    /// Queues the sends of every answer ready, re-arms the receives that wait for them and
    /// returns consumed receive buffers to the ring.
    fn queue_answers(&mut self) {
        self.core.flush_journals();
        self.submit_sends();
        self.rearm_receives();
        self.buffers.publish();
    }

    fn arm_wake(&mut self) {
        let poll = opcode::PollAdd::new(types::Fd(self.wake_fd), libc::POLLIN as u32).multi(true).build();
        self.push(poll.user_data(Token::Wake.encode()));
    }

    fn on_wake(&mut self, flags: u32) {
        let mut counter = 0u64;
        // SAFETY: reading 8 bytes into a u64 from our own non-blocking eventfd.
        unsafe { libc::read(self.wake_fd, (&raw mut counter).cast(), 8) };
        if !cqueue::more(flags) {
            self.arm_wake();
        }
    }

    fn arm_accept(&mut self, tls: bool) {
        let (listener, token) = match (&self.tls, tls) {
            (Some(shard_tls), true) => (shard_tls.listener, Token::AcceptTls),
            _ => (self.listener, Token::Accept),
        };
        self.push(opcode::AcceptMulti::new(types::Fd(listener)).build().user_data(token.encode()));
    }

    /// A reload put new TLS material in force: handshakes from now on use it; open
    /// connections keep the session they have. One atomic load per loop.
    fn refresh_tls_config(&mut self) {
        if let Some(tls) = &mut self.tls
            && tls.shared.generation() != tls.generation
        {
            (tls.generation, tls.config) = tls.shared.current();
        }
    }

    fn on_accept(&mut self, result: i32, flags: u32, tls: bool) {
        if !cqueue::more(flags) && self.accepting {
            self.arm_accept(tls);
        }
        if result < 0 {
            if result != -libc::ECANCELED
                && let Some(suppressed) = self.log_sampler.admit(self.now_ms)
            {
                let error = io::Error::from_raw_os_error(-result);
                tracing::error!(shard = self.index, %error, suppressed, "accept failed");
            }
            return;
        }
        let fd = result;
        let slot = match self.free.pop() {
            Some(slot) if self.accepting => Some(slot),
            Some(slot) => {
                self.free.push(slot);
                None
            }
            None if self.accepting && self.conns.len() < self.config.ingest.connections_max => {
                self.conns.push(Conn::vacant());
                Some(self.conns.len() as u32 - 1)
            }
            None => None,
        };
        let Some(slot) = slot else { return self.refuse(fd, None) };
        let peer_ip = peer_ip(fd);
        let listener_proxy = if tls { self.tls.as_ref().and_then(|shard_tls| shard_tls.proxy.as_ref()) } else { self.proxy.as_ref() };
        let stage = listener_proxy.map_or(ProxyStage::Settled, |proxy| proxy.stage(peer_ip));
        // A trusted balancer carries many clients: its own address is never counted; the
        // client's is, once its header names it.
        let counted_ip = if matches!(stage, ProxyStage::Expect(_)) { None } else { peer_ip };
        if let Some(ip) = counted_ip
            && !self.per_ip.try_acquire(ip)
        {
            ShardStats::add(&self.stats().connections_refused_per_ip, 1);
            return self.refuse(fd, Some(slot));
        }
        let session = match (&self.tls, tls) {
            (Some(shard_tls), true) => match Session::new(Arc::clone(&shard_tls.config)) {
                Ok(session) => Some(Box::new(session)),
                Err(error) => {
                    tracing::error!(shard = self.index, %error, "cannot start a TLS session");
                    if let Some(ip) = counted_ip {
                        self.per_ip.release(ip);
                    }
                    return self.refuse(fd, Some(slot));
                }
            },
            _ => None,
        };
        set_nodelay(fd);
        // A TLS handshake and a PROXY header have the time a request head has.
        let deadline_ms = self.now_ms
            + if session.is_some() || matches!(stage, ProxyStage::Expect(_)) {
                self.config.ingest.header_timeout_ms
            } else {
                self.config.ingest.idle_timeout_ms
            };
        let conn = &mut self.conns[slot as usize];
        conn.open(fd, peer_ip, counted_ip, stage, deadline_ms);
        conn.tls = session;
        self.open += 1;
        self.stats().connections_open.store(self.open as u64, Ordering::Relaxed);
        self.arm_recv(slot);
    }

    /// Closes a just-accepted socket at once, giving back the slot it would have used.
    fn refuse(&mut self, fd: RawFd, slot: Option<u32>) {
        if let Some(slot) = slot {
            self.free.push(slot);
        }
        ShardStats::add(&self.stats().connections_refused, 1);
        // SAFETY: fd was just accepted for us and is owned by nobody else.
        unsafe { libc::close(fd) };
    }

    fn arm_recv(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if conn.recv_inflight || conn.closing == Closing::Dead || conn.closing == Closing::AfterFlush {
            return;
        }
        conn.recv_inflight = true;
        let token = Token::Recv { slot, generation: conn.generation };
        let entry = opcode::Recv::new(types::Fd(conn.fd), std::ptr::null_mut(), self.buffers.buffer_bytes())
            .buf_group(self.buffers.group())
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(token.encode());
        self.push(entry);
    }

    fn on_recv(&mut self, slot: u32, generation: u32, result: i32, flags: u32) {
        let bid = cqueue::buffer_select(flags);
        let conn = &mut self.conns[slot as usize];
        let current = conn.in_use && conn.generation == generation;
        if current {
            conn.recv_inflight = false;
        }
        if result > 0 {
            let Some(bid) = bid else { return self.kill(slot) };
            let mut tls_received = None;
            let mut proxy_pending = false;
            if current && conn.closing == Closing::Open {
                self.pool.lend(&mut conn.input);
                let data = self.buffers.data(bid, result as usize);
                if conn.proxy != ProxyStage::Settled {
                    // The PROXY header precedes everything, TLS included: stage the raw bytes.
                    conn.input.extend_from_slice(data);
                    proxy_pending = true;
                } else {
                    match conn.tls.as_deref_mut() {
                        None => conn.input.extend_from_slice(data),
                        Some(session) => tls_received = Some(session.receive(data, &mut conn.input)),
                    }
                }
                ShardStats::add(&self.control.shards[self.index].bytes_in, result as u64);
            }
            self.buffers.recycle(bid);
            if !current {
                return;
            }
            if proxy_pending {
                return self.on_proxy_bytes(slot);
            }
            if let Some(received) = tls_received {
                self.after_tls_receive(slot, received);
            }
            match self.conns[slot as usize].closing {
                Closing::Open => self.drive(slot),
                Closing::Dead => self.kill(slot),
                Closing::AfterFlush | Closing::Lingering { .. } => self.queue_rearm(slot),
            }
            return;
        }
        if !current {
            return;
        }
        if result == -libc::ENOBUFS {
            return self.queue_rearm(slot);
        }
        if result == 0 && self.conns[slot as usize].proxy != ProxyStage::Settled {
            return self.proxy_cut_short(slot);
        }
        if result == 0 && self.conns[slot as usize].closing == Closing::Open {
            self.conns[slot as usize].peer_closed = true;
            return self.drive(slot);
        }
        self.kill(slot);
    }

    /// Records what a TLS receive changed. A failed session has queued its alert: the
    /// connection sends it and closes, and whatever plaintext came before is dropped.
    fn after_tls_receive(&mut self, slot: u32, received: Result<Received, rustls::Error>) {
        let stats = &self.control.shards[self.index];
        let conn = &mut self.conns[slot as usize];
        match received {
            Ok(received) => {
                if received.handshake_completed {
                    ShardStats::add(&stats.tls_handshakes, 1);
                    conn.tls_identity = conn.tls.as_ref().and_then(|session| session.peer_identity());
                    conn.deadline_ms = self.now_ms + self.config.ingest.idle_timeout_ms;
                }
                conn.peer_closed |= received.peer_closed;
            }
            Err(_) => {
                if conn.tls.as_ref().is_some_and(|session| session.is_handshaking()) {
                    ShardStats::add(&stats.tls_handshake_failures, 1);
                }
                conn.input.clear();
                self.pool.give_back(&mut conn.input);
                conn.closing = Closing::AfterFlush;
                conn.deadline_ms = self.now_ms + LINGER_MS;
                self.after_progress(slot);
            }
        }
    }

    /// Frames and handles every complete request buffered on `slot`, in order, until one
    /// parks or the connection must stop reading.
    fn drive(&mut self, slot: u32) {
        let Shard { conns, core, control, pool, limits, config, now_ms, latency, .. } = self;
        let conn = &mut conns[slot as usize];
        debug_assert_eq!(conn.proxy, ProxyStage::Settled, "framing bytes before the PROXY header was dealt with");
        let draining = control.draining.load(Ordering::Relaxed);
        let mut consumed_total = 0;
        while conn.pending.is_none() && conn.closing == Closing::Open && conn.output.len() < OUTPUT_HIGH_WATER_BYTES {
            let origin = Origin { slot, generation: conn.generation };
            match conn.framer.poll(&mut conn.input[consumed_total..], limits) {
                Ok(Poll::Incomplete(phase)) => {
                    if phase != conn.phase {
                        conn.phase = phase;
                        conn.deadline_ms = *now_ms
                            + match phase {
                                Phase::Idle => config.ingest.idle_timeout_ms,
                                Phase::Head => config.ingest.header_timeout_ms,
                                Phase::Body { .. } => config.ingest.body_timeout_ms,
                            };
                    }
                    if matches!(phase, Phase::Body { expects_continue: true }) && !conn.continue_sent {
                        pool.lend(&mut conn.output);
                        conn.output.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                        conn.continue_sent = true;
                    }
                    break;
                }
                Ok(Poll::Complete { request, consumed }) => {
                    // A half-closed peer still gets every answer it asked for; the close follows them.
                    let keep_alive = request.keep_alive && !draining;
                    pool.lend(&mut conn.output);
                    let peer = Peer { ip: conn.peer_ip, tls_identity: conn.tls_identity.as_deref() };
                    match core.handle(control, &request, peer, origin, keep_alive, &mut conn.output) {
                        Handled::Answered => {
                            latency.answered();
                            if !keep_alive {
                                conn.closing = Closing::AfterFlush;
                            }
                        }
                        Handled::Parked(pending) => {
                            conn.pending = Some(pending);
                            conn.framed_ns = latency.started_ns();
                        }
                    }
                    consumed_total += consumed;
                    conn.continue_sent = false;
                    conn.phase = Phase::Idle;
                    conn.deadline_ms = *now_ms + config.ingest.idle_timeout_ms;
                }
                Err(error) => {
                    pool.lend(&mut conn.output);
                    // Framing failed, so the path (if any was read) is not trusted.
                    let answer = Answer { path: PathLabel::Other, keep_alive: false, stats: &control.shards[core.shard] };
                    handle::answer_error(&mut conn.output, error.status(), error.code(), error.message(), answer);
                    latency.answered();
                    conn.closing = Closing::AfterFlush;
                    conn.deadline_ms = *now_ms + config.ingest.idle_timeout_ms;
                    break;
                }
            }
        }
        if consumed_total > 0 {
            conn.input.drain(..consumed_total);
        }
        if conn.input.is_empty() {
            pool.give_back(&mut conn.input);
        }
        // The peer sent its last byte: once nothing is parked, whatever is left is final.
        if conn.peer_closed && conn.pending.is_none() && conn.closing == Closing::Open {
            conn.closing = Closing::AfterFlush;
        }
        self.after_progress(slot);
    }

    /// Queues what a connection now needs: a send, a receive, or its close.
    fn after_progress(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if conn.closing == Closing::AfterFlush
            && conn.output.is_empty()
            && let Some(session) = conn.tls.as_deref_mut()
        {
            // Every answer is sealed already, so the alert goes after the last of them.
            session.queue_close_notify();
        }
        let has_output = conn.has_output();
        if has_output && !conn.send_inflight && !conn.flush_queued {
            conn.flush_queued = true;
            self.flush.push(slot);
        }
        if conn.closing == Closing::AfterFlush && !has_output && !conn.send_inflight {
            return self.linger(slot);
        }
        let room =
            conn.input.len() < self.limits.header_bytes_max + self.limits.body_bytes_max && conn.output.len() < OUTPUT_HIGH_WATER_BYTES;
        if conn.closing == Closing::Open && !conn.peer_closed && room {
            self.queue_rearm(slot);
        }
    }

    fn queue_rearm(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if !conn.recv_inflight && !conn.rearm_queued {
            conn.rearm_queued = true;
            self.rearm.push(slot);
        }
    }

    fn rearm_receives(&mut self) {
        let mut rearm = std::mem::take(&mut self.rearm);
        for slot in rearm.drain(..) {
            self.conns[slot as usize].rearm_queued = false;
            if self.conns[slot as usize].in_use {
                self.arm_recv(slot);
            }
        }
        self.rearm = rearm;
    }

    fn submit_sends(&mut self) {
        let mut flush = std::mem::take(&mut self.flush);
        for slot in flush.drain(..) {
            let conn = &mut self.conns[slot as usize];
            conn.flush_queued = false;
            if !conn.in_use || conn.send_inflight || conn.closing == Closing::Dead {
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
            self.conns[slot as usize].sent = 0;
            self.start_send(slot);
        }
        self.flush = flush;
    }

    /// Encrypts a TLS connection's answers (and any handshake or alert records) into its
    /// empty `sending` buffer; `close_notify` follows the last answer of a closing
    /// connection. False if the session cannot write (the connection must be cut).
    fn seal(&mut self, slot: u32) -> bool {
        let conn = &mut self.conns[slot as usize];
        let Some(session) = conn.tls.as_deref_mut() else { return true };
        debug_assert!(conn.sending.is_empty(), "sealing over a send in flight");
        self.pool.lend(&mut conn.sending);
        let sealed = session.seal(&conn.output, conn.closing == Closing::AfterFlush, &mut conn.sending).is_ok();
        conn.output.clear();
        self.pool.give_back(&mut conn.output);
        if conn.sending.is_empty() {
            self.pool.give_back(&mut conn.sending);
        }
        sealed
    }

    fn start_send(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        conn.send_inflight = true;
        let rest = &conn.sending[conn.sent..];
        let token = Token::Send { slot, generation: conn.generation };
        let entry = opcode::Send::new(types::Fd(conn.fd), rest.as_ptr(), rest.len() as u32).flags(libc::MSG_NOSIGNAL).build();
        self.push(entry.user_data(token.encode()));
    }

    fn on_send(&mut self, slot: u32, generation: u32, result: i32) {
        let conn = &mut self.conns[slot as usize];
        if !conn.in_use || conn.generation != generation {
            return;
        }
        conn.send_inflight = false;
        if result < 0 || conn.closing == Closing::Dead {
            return self.kill(slot);
        }
        ShardStats::add(&self.control.shards[self.index].bytes_out, result as u64);
        conn.sent += result as usize;
        // A request being read keeps its phase's deadline: an answer to an earlier request
        // or a `100 Continue` must not give a slow head or body the idle timeout.
        if conn.phase == Phase::Idle || conn.closing != Closing::Open {
            conn.deadline_ms = conn.deadline_ms.max(self.now_ms + self.config.ingest.idle_timeout_ms);
        }
        if conn.sent < conn.sending.len() {
            return self.start_send(slot);
        }
        conn.sending.clear();
        if conn.output.is_empty() {
            self.pool.give_back(&mut conn.sending);
            self.pool.give_back(&mut conn.output);
        }
        if conn.closing == Closing::Open && !conn.input.is_empty() && conn.pending.is_none() {
            return self.drive(slot);
        }
        self.after_progress(slot);
    }

    /// Half-closes after the last answer and reads until EOF or the linger deadline.
    fn linger(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        // SAFETY: shutdown on a socket fd this slot owns.
        unsafe { libc::shutdown(conn.fd, libc::SHUT_WR) };
        conn.closing = Closing::Lingering { until_ms: self.now_ms + LINGER_MS };
        if conn.peer_closed {
            return self.kill(slot);
        }
        self.queue_rearm(slot);
    }

    /// Shuts the socket so in-flight operations complete, and frees the slot once they have.
    fn kill(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if !conn.in_use {
            return;
        }
        if conn.closing != Closing::Dead {
            // SAFETY: shutdown on a socket fd this slot owns; it makes a pending receive
            // complete so its slot can be released.
            unsafe { libc::shutdown(conn.fd, libc::SHUT_RDWR) };
            conn.closing = Closing::Dead;
        }
        if conn.recv_inflight || conn.send_inflight {
            return;
        }
        // SAFETY: no operation on this fd is in flight any more; the slot owns it.
        unsafe { libc::close(conn.fd) };
        conn.in_use = false;
        conn.fd = -1;
        conn.tls = None;
        conn.tls_identity = None;
        if let Some(ip) = conn.counted_ip.take() {
            self.per_ip.release(ip);
        }
        let pending = conn.pending.take();
        self.pool.give_back(&mut conn.input);
        self.pool.give_back(&mut conn.output);
        self.pool.give_back(&mut conn.sending);
        if let Some(pending) = pending {
            self.core.recycle_results(pending.results);
        }
        self.free.push(slot);
        self.open -= 1;
        self.stats().connections_open.store(self.open as u64, Ordering::Relaxed);
    }

    /// Applies outcomes decided after their request parked, answering finished requests.
    fn apply_resolved(&mut self) {
        while !self.core.resolved.is_empty() {
            let mut resolved = std::mem::take(&mut self.core.resolved);
            for (ticket, outcome) in resolved.drain(..) {
                self.resolve(ticket, outcome);
            }
            if self.core.resolved.is_empty() {
                self.core.resolved = resolved;
            }
        }
    }

    fn resolve(&mut self, ticket: Ticket, outcome: Outcome) {
        let slot = ticket.slot;
        let Some(conn) = self.conns.get_mut(slot as usize) else { return };
        if !conn.in_use || conn.generation != ticket.generation {
            return;
        }
        let Some(pending) = conn.pending.as_mut() else { return };
        let Some(line) = pending.results.get_mut(usize::from(ticket.line)) else { return };
        if !matches!(line, LineResult::Waiting) {
            return;
        }
        *line = LineResult::Done(outcome);
        pending.outstanding -= 1;
        if pending.outstanding > 0 {
            return;
        }
        let mut pending = conn.pending.take().expect("checked above");
        let stats = &self.control.shards[self.index];
        if conn.closing == Closing::Open {
            self.pool.lend(&mut conn.output);
            let start = conn.output.len();
            handle::answer_pending(&mut conn.output, &pending, stats);
            if let Some(remember) = pending.remember.take() {
                self.core.remember_answer(&remember, &conn.output[start..]);
            }
            self.latency.answered_parked(conn.framed_ns);
            if !pending.keep_alive {
                conn.closing = Closing::AfterFlush;
            }
        } else if let Some(remember) = pending.remember.take() {
            // The client is gone, but its repeat must still get this answer.
            let mut scratch = Vec::new();
            handle::answer_pending(&mut scratch, &pending, stats);
            self.core.remember_answer(&remember, &scratch);
        }
        self.core.recycle_results(pending.results);
        let conn = &self.conns[slot as usize];
        if conn.closing == Closing::Open && !conn.input.is_empty() {
            return self.drive(slot);
        }
        if conn.peer_closed && conn.closing == Closing::Open {
            self.conns[slot as usize].closing = Closing::AfterFlush;
        }
        self.after_progress(slot);
    }

    fn take_inbox(&mut self) {
        for _ in 0..INBOX_MESSAGES_PER_LOOP_MAX {
            let Ok(message) = self.inbox.try_recv() else { break };
            match message {
                Message::Store { from, mut batch } => {
                    self.core.store_batch(from, &batch);
                    batch.clear();
                    self.spent_out[from].push(batch);
                }
                Message::Results(mut items) => {
                    self.core.resolved.append(&mut items);
                    self.results_vecs.push(items);
                }
                Message::Spent(batch) => self.core.spare_batches.push(batch),
            }
        }
    }

    /// Sends this loop's batches and outcomes to the other shards and wakes them.
    fn hand_off(&mut self) {
        for dest in 0..self.peers.len() {
            if dest == self.index {
                continue;
            }
            let mut wake = false;
            if !self.core.outgoing[dest].items.is_empty() {
                let spare = self.core.spare_batches.pop().unwrap_or_default();
                let batch = std::mem::replace(&mut self.core.outgoing[dest], spare);
                match self.peers[dest].try_send(Message::Store { from: self.index, batch }) {
                    Ok(()) => wake = true,
                    Err(
                        TrySendError::Full(Message::Store { mut batch, .. }) | TrySendError::Disconnected(Message::Store { mut batch, .. }),
                    ) => {
                        for item in &batch.items {
                            self.core.resolved.push((item.ticket, Outcome::Overloaded));
                        }
                        batch.clear();
                        self.core.spare_batches.push(batch);
                    }
                    Err(_) => {}
                }
            }
            if !self.core.results_out[dest].is_empty() {
                let fresh = self.results_vecs.pop().unwrap_or_default();
                let items = std::mem::replace(&mut self.core.results_out[dest], fresh);
                match self.peers[dest].try_send(Message::Results(items)) {
                    Ok(()) => wake = true,
                    // Outcomes are never dropped: a full inbox means try again next loop.
                    Err(TrySendError::Full(Message::Results(mut items)) | TrySendError::Disconnected(Message::Results(mut items))) => {
                        let fresh = std::mem::take(&mut self.core.results_out[dest]);
                        items.extend(fresh);
                        self.core.results_out[dest] = items;
                    }
                    Err(_) => {}
                }
            }
            while let Some(batch) = self.spent_out[dest].pop() {
                if self.peers[dest].try_send(Message::Spent(batch)).is_err() {
                    break;
                }
            }
            if wake {
                let one = 1u64;
                // SAFETY: writing 8 bytes from a u64 to an eventfd that lives as long as
                // the process (closed only after every shard has stopped).
                unsafe { libc::write(self.wake_fds[dest], (&raw const one).cast(), 8) };
            }
        }
    }

    fn start_syncs(&mut self) {
        let mut entries = std::mem::take(&mut self.sync_entries);
        self.core.partitions.syncs_to_start(|index, fd| {
            let entry = opcode::Fsync::new(types::Fd(fd)).flags(types::FsyncFlags::DATASYNC).build();
            entries.push(entry.user_data(Token::Fsync { partition: index }.encode()));
        });
        for entry in entries.drain(..) {
            self.push(entry);
        }
        self.sync_entries = entries;
    }

    /// Timeouts, housekeeping and draining; runs every TICK_MS.
    fn tick(&mut self) {
        if self.now_ms >= self.last_housekeeping_ms + HOUSEKEEPING_MS {
            self.last_housekeeping_ms = self.now_ms;
            self.core.partitions.housekeeping(self.core.now_ms);
            if let Some(journal) = self.core.journal.as_mut() {
                journal.prune(self.core.now_ms);
            }
        }
        let draining = self.control.draining.load(Ordering::Acquire);
        if draining && self.accepting {
            self.accepting = false;
            self.drain_deadline_ms = Some(self.now_ms + self.config.ingest.drain_timeout_ms);
            let cancel = opcode::AsyncCancel::new(Token::Accept.encode()).build().user_data(Token::Ignore.encode());
            self.push(cancel);
            // New connections are refused from now on (SO_REUSEPORT stops routing here);
            // the in-flight accept keeps its own file reference until it is cancelled.
            // SAFETY: the listener fd is owned by this shard and not used after this.
            unsafe { libc::close(self.listener) };
            if let Some(tls) = &self.tls {
                let cancel = opcode::AsyncCancel::new(Token::AcceptTls.encode()).build().user_data(Token::Ignore.encode());
                let listener = tls.listener;
                self.push(cancel);
                // SAFETY: as above, for the TLS listener.
                unsafe { libc::close(listener) };
            }
        }
        for slot in 0..self.conns.len() as u32 {
            let conn = &self.conns[slot as usize];
            if !conn.in_use || conn.closing == Closing::Dead {
                continue;
            }
            if let Closing::Lingering { until_ms } = conn.closing {
                if self.now_ms >= until_ms {
                    self.kill(slot);
                }
                continue;
            }
            if draining && conn.is_quiet() && conn.closing == Closing::Open {
                self.kill(slot);
                continue;
            }
            if conn.pending.is_some() || self.now_ms < conn.deadline_ms {
                continue;
            }
            if conn.proxy != ProxyStage::Settled && conn.closing == Closing::Open {
                self.proxy_timed_out(slot);
                continue;
            }
            if conn.closing == Closing::Open && matches!(conn.phase, Phase::Head | Phase::Body { .. }) && !conn.send_inflight {
                let conn = &mut self.conns[slot as usize];
                self.pool.lend(&mut conn.output);
                // No request was framed: counted under `other`, not observed as latency.
                let answer = Answer { path: PathLabel::Other, keep_alive: false, stats: &self.control.shards[self.index] };
                handle::answer_error(&mut conn.output, 408, "request_timeout", "the request was not received in time", answer);
                conn.closing = Closing::AfterFlush;
                conn.deadline_ms = self.now_ms + LINGER_MS;
                self.after_progress(slot);
            } else {
                self.kill(slot);
            }
        }
    }

    /// While draining: true once this shard has no connections, nothing parked and
    /// nothing to sync, and every other shard is there too (they may still need our
    /// partitions); or when the drain deadline has passed.
    fn drained(&mut self) -> bool {
        let Some(deadline) = self.drain_deadline_ms else { return false };
        let idle = self.open == 0 && !self.core.partitions.sync_pending() && self.core.results_out.iter().all(Vec::is_empty);
        if idle && !self.quiesced {
            self.quiesced = true;
            self.control.shards_quiesced.fetch_add(1, Ordering::AcqRel);
        }
        let everyone = self.control.shards_quiesced.load(Ordering::Acquire) >= self.control.shards.len();
        everyone || self.now_ms >= deadline
    }
}

fn set_nodelay(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with a valid int option value on a socket fd we own.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&raw const one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// The TCP peer's address of an accepted socket (one getpeername per connection);
/// IPv4-mapped IPv6 addresses are given as IPv4.
fn peer_ip(fd: RawFd) -> Option<std::net::IpAddr> {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut length = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage and length are valid for writes and describe the same buffer.
    let result = unsafe { libc::getpeername(fd, (&raw mut storage).cast(), &raw mut length) };
    if result != 0 {
        return None;
    }
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let v4: &libc::sockaddr_in = unsafe { &*(&raw const storage).cast() };
            Some(std::net::IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let v6: &libc::sockaddr_in6 = unsafe { &*(&raw const storage).cast() };
            let ip = std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Some(ip.to_ipv4_mapped().map_or(std::net::IpAddr::V6(ip), std::net::IpAddr::V4))
        }
        _ => None,
    }
}
