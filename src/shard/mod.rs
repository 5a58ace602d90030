//! One shard: a pinned thread that owns an io_uring, an SO_REUSEPORT listener, its
//! connections and a disjoint set of partitions. Each loop (`run.rs`): submit and wait
//! once, handle every completion (`accept.rs`, `io.rs`), take other shards' batches and
//! hand off ours (`handoff.rs`), start group commits (`commit.rs`), and queue one send
//! per connection with everything it has to say. `drain.rs` winds it down on SIGTERM;
//! `serve.rs` starts the shards and supervises them.

mod accept;
mod commit;
mod consume;
mod drain;
pub mod handoff;
mod io;
pub mod partitions;
mod proxy;
mod run;
pub mod serve;
pub mod token;

use std::io as stdio;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use io_uring::{IoUring, squeue};

pub use serve::{Bound, ServeError, serve};

use crate::config::Config;
use crate::constants::{
    LOG_SAMPLE_PERIOD_MS, POOL_BUFFER_BYTES_INITIAL, POOL_BUFFER_BYTES_MAX, POOL_BUFFERS_MAX, RECV_BUFFER_BYTES, RECV_BUFFERS,
};
use crate::http::Limits;
use crate::ingest::handle::Core;
use crate::metrics::{Control, LoopLatency, ShardStats};
use crate::net::conn::{BufferPool, Clock, Conn};
use crate::net::tls::ServerTls;
use crate::perimeter::limits::ConnectionsPerIp;
use crate::platform::logging::Sampler;
use crate::platform::sys::EventFd;
use crate::reactor::{self, bufring::BufRing};
use handoff::{Message, StoreBatch, Ticket};
use proxy::ProxyListener;

/// Everything a shard thread is started with.
pub struct ShardSetup {
    pub index: usize,
    pub config: Arc<Config>,
    pub listener: OwnedFd,
    /// Every shard's eventfd; this shard polls its own and writes the others'.
    pub wakers: Arc<Vec<EventFd>>,
    pub inbox: Receiver<Message>,
    pub peers: Vec<Sender<Message>>,
    pub control: Arc<Control>,
    /// The shard's TLS listener and the shared, reloadable TLS configuration.
    pub tls: Option<(OwnedFd, Arc<ServerTls>)>,
    pub per_ip: Arc<ConnectionsPerIp>,
}

/// The shard's TLS listener and the configuration new handshakes use, refreshed from
/// the shared one when its generation moves (a reload).
struct ShardTls {
    /// Closed (`None`) when draining starts.
    listener: Option<OwnedFd>,
    proxy: Option<ProxyListener>,
    shared: Arc<ServerTls>,
    generation: u64,
    config: Arc<rustls::ServerConfig>,
}

pub struct Shard {
    index: usize,
    ring: IoUring,
    buffers: BufRing,
    /// The plaintext listener; closed (`None`) when draining starts.
    listener: Option<OwnedFd>,
    /// The plaintext listener's PROXY protocol setting (`None`: off).
    proxy: Option<ProxyListener>,
    tls: Option<ShardTls>,
    per_ip: Arc<ConnectionsPerIp>,
    wakers: Arc<Vec<EventFd>>,
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
    /// Slots with something to send this loop, and slots whose receive is to be armed.
    flush: Vec<u32>,
    rearm: Vec<u32>,
    completions: Vec<(u64, i32, u32)>,
    /// Reused list of fdatasync entries to submit this loop.
    sync_entries: Vec<squeue::Entry>,
    spent_out: Vec<Vec<StoreBatch>>,
    results_vecs: Vec<Vec<(Ticket, handoff::Outcome)>>,
    started: Instant,
    /// The loop's time (monotonic ms since the shard started) and the phase timeouts.
    clock: Clock,
    /// Answers queued this loop, observed into the latency histogram when it ends.
    latency: LoopLatency,
    last_tick_ms: u64,
    last_housekeeping_ms: u64,
    last_checkpoint_ms: u64,
    accepting: bool,
    /// Bounds the log lines of errors that can repeat per connection.
    log_sampler: Sampler,
    drain_deadline_ms: Option<u64>,
    quiesced: bool,
    /// Consumer connections in a wait or a stream, and what they wait for.
    consumers: consume::Consumers,
    /// How busy the loop is: whether optional events are shed (`overload.rs`).
    pressure: crate::overload::Pressure,
    /// This shard's buffers as last counted in the memory budget.
    sampled_bytes: u64,
    /// TLS connections whose handshake bytes wait for the next loop turn, in arrival
    /// order, and the handshake work done in this turn (ns).
    handshakes: std::collections::VecDeque<(u32, u32)>,
    handshake_ns: u64,
}

impl Shard {
    /// Registers the receive buffer ring on the still disabled `ring`, then locks it to
    /// [`reactor::restrictions::SHARD`] and enables it; call on the shard's own thread.
    pub fn new(setup: ShardSetup, ring: reactor::DisabledRing, core: Core) -> stdio::Result<Shard> {
        let buffers = BufRing::register(&ring, 0, RECV_BUFFERS, RECV_BUFFER_BYTES)
            .map_err(|error| stdio::Error::new(error.kind(), format!("cannot register the receive buffer ring: {error}")))?;
        let ring = ring.enable()?;
        let ingest = &setup.config.ingest;
        let limits = Limits {
            header_bytes_max: ingest.header_bytes_max,
            headers_count_max: ingest.headers_count_max,
            body_bytes_max: ingest.body_bytes_max,
        };
        let clock = Clock {
            now_ms: 0,
            idle_timeout_ms: ingest.idle_timeout_ms,
            header_timeout_ms: ingest.header_timeout_ms,
            body_timeout_ms: ingest.body_timeout_ms,
        };
        let tls = setup.tls.map(|(listener, shared)| {
            let (generation, config) = shared.current();
            let proxy = ingest.tls.as_ref().and_then(|tls| ProxyListener::of(&tls.proxy));
            ShardTls { listener: Some(listener), proxy, shared, generation, config }
        });
        Ok(Shard {
            index: setup.index,
            ring,
            buffers,
            listener: Some(setup.listener),
            proxy: ProxyListener::of(&ingest.proxy),
            tls,
            per_ip: setup.per_ip,
            wakers: setup.wakers,
            inbox: setup.inbox,
            spent_out: (0..ingest.shards).map(|_| Vec::new()).collect(),
            peers: setup.peers,
            control: setup.control,
            core,
            conns: Vec::new(),
            free: Vec::new(),
            open: 0,
            pool: BufferPool::new(POOL_BUFFER_BYTES_INITIAL, POOL_BUFFER_BYTES_MAX, POOL_BUFFERS_MAX),
            limits,
            flush: Vec::new(),
            rearm: Vec::new(),
            completions: Vec::with_capacity(reactor::RING_ENTRIES as usize * 4),
            sync_entries: Vec::new(),
            results_vecs: Vec::new(),
            started: Instant::now(),
            clock,
            latency: LoopLatency::default(),
            last_tick_ms: 0,
            last_housekeeping_ms: 0,
            last_checkpoint_ms: 0,
            accepting: true,
            log_sampler: Sampler::new(LOG_SAMPLE_PERIOD_MS),
            drain_deadline_ms: None,
            quiesced: false,
            consumers: consume::Consumers::default(),
            pressure: crate::overload::Pressure::default(),
            sampled_bytes: 0,
            handshakes: std::collections::VecDeque::new(),
            handshake_ns: 0,
            config: setup.config,
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
}
