//! Counters each shard bumps without locks and the admin listener reads. Every shard
//! owns one block of relaxed atomics, aligned so no two shards share a cache line; the
//! hot path only ever adds to its own block and never allocates. `GET /metrics` renders
//! them in Prometheus text format (`render.rs`); the label sets are in `labels.rs`.

pub mod labels;
mod render;
pub(crate) use render::escape_into;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

pub use labels::{PathLabel, ProxyHeaderLabel, ProxyReject, Reject, STATUS_SLOTS, STATUSES};

/// Upper bounds (inclusive) of the request latency buckets, in nanoseconds; a last
/// `+Inf` bucket follows. Spaced for a server whose answers take microseconds, with a
/// tail that still resolves group-commit waits on a slow disk.
pub const LATENCY_BUCKET_BOUNDS_NS: [u64; 15] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
];
/// Buckets including `+Inf`.
pub const LATENCY_BUCKETS: usize = LATENCY_BUCKET_BOUNDS_NS.len() + 1;

const _: () = {
    let mut index = 1;
    while index < LATENCY_BUCKET_BOUNDS_NS.len() {
        assert!(LATENCY_BUCKET_BOUNDS_NS[index - 1] < LATENCY_BUCKET_BOUNDS_NS[index]);
        index += 1;
    }
};

/// A latency histogram with fixed buckets. Each bucket counts its own observations (not
/// cumulative), so one observation is one add to one bucket; the renderer accumulates.
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS],
    sum_ns: AtomicU64,
}

/// A copy of a histogram's counts, taken bucket by bucket (not one atomic snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencySnapshot {
    /// Observations per bucket, not cumulative; the last is `+Inf`.
    pub buckets: [u64; LATENCY_BUCKETS],
    pub sum_ns: u64,
}

impl LatencyHistogram {
    const fn new() -> LatencyHistogram {
        LatencyHistogram { buckets: [const { AtomicU64::new(0) }; LATENCY_BUCKETS], sum_ns: AtomicU64::new(0) }
    }

    /// Records `count` observations of `duration_ns` each.
    pub fn observe(&self, duration_ns: u64, count: u64) {
        let bucket = LATENCY_BUCKET_BOUNDS_NS.partition_point(|bound| *bound < duration_ns);
        self.buckets[bucket].fetch_add(count, Ordering::Relaxed);
        self.sum_ns.fetch_add(duration_ns.saturating_mul(count), Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            buckets: std::array::from_fn(|index| self.buckets[index].load(Ordering::Relaxed)),
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
        }
    }
}

/// One shard's counters. Only the owning shard writes them; the admin thread reads.
#[repr(align(128))]
pub struct ShardStats {
    /// Answers by path and status, `[path.index() * STATUS_SLOTS + status slot]`.
    answers: [AtomicU64; PathLabel::COUNT * STATUS_SLOTS],
    /// Events not stored, by reason.
    rejected: [AtomicU64; Reject::COUNT],
    pub events_accepted: AtomicU64,
    pub events_duplicate: AtomicU64,
    pub bytes_in: AtomicU64,
    /// Bytes the kernel took from sends (answers and `100 Continue`).
    pub bytes_out: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_refused: AtomicU64,
    /// Of `connections_refused`: the client address held `connections_per_ip_max` already.
    pub connections_refused_per_ip: AtomicU64,
    /// TLS handshakes completed / failed (alert sent, connection closed).
    pub tls_handshakes: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    /// TLS handshake steps put off to a later loop turn (the turn's share was spent).
    pub tls_handshakes_deferred: AtomicU64,
    /// PROXY protocol headers accepted, by what they carried.
    proxy_headers: [AtomicU64; ProxyHeaderLabel::COUNT],
    /// Connections closed at their PROXY protocol header, by reason.
    proxy_rejected: [AtomicU64; ProxyReject::COUNT],
    /// Bumped every reactor loop; a shard whose count stops moving is stuck.
    pub heartbeat: AtomicU64,
    /// Time from the loop that framed a request to the loop that queued its answer.
    pub latency: LatencyHistogram,
    /// Consumer requests (every path under /v1/topics and /v1/subscriptions).
    pub consumer_requests: AtomicU64,
    /// Events and bytes (NDJSON lines, stream lines, SSE messages) sent to consumers.
    pub consumer_events_out: AtomicU64,
    pub consumer_bytes_out: AtomicU64,
    /// Open subscription streams, SSE streams and parked long-polls on this shard.
    pub consumer_streams: AtomicU64,
    pub consumer_sse: AtomicU64,
    pub consumer_waiting: AtomicU64,
    /// Events a subscription stream sent again (after a rebalance or a commit timeout).
    pub consumer_redelivered: AtomicU64,
    /// Streams ended because no commit came within their commit timeout.
    pub consumer_commit_timeouts: AtomicU64,
    /// Events released late by a reorder window, and released before their watermark
    /// because the hold was full.
    pub consumer_late: AtomicU64,
    pub consumer_reorder_forced: AtomicU64,
}

impl Default for ShardStats {
    fn default() -> Self {
        ShardStats {
            answers: [const { AtomicU64::new(0) }; PathLabel::COUNT * STATUS_SLOTS],
            rejected: [const { AtomicU64::new(0) }; Reject::COUNT],
            events_accepted: AtomicU64::new(0),
            events_duplicate: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            connections_refused_per_ip: AtomicU64::new(0),
            tls_handshakes: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
            tls_handshakes_deferred: AtomicU64::new(0),
            consumer_requests: AtomicU64::new(0),
            consumer_events_out: AtomicU64::new(0),
            consumer_bytes_out: AtomicU64::new(0),
            consumer_streams: AtomicU64::new(0),
            consumer_sse: AtomicU64::new(0),
            consumer_waiting: AtomicU64::new(0),
            consumer_redelivered: AtomicU64::new(0),
            consumer_commit_timeouts: AtomicU64::new(0),
            consumer_late: AtomicU64::new(0),
            consumer_reorder_forced: AtomicU64::new(0),
            proxy_headers: [const { AtomicU64::new(0) }; ProxyHeaderLabel::COUNT],
            proxy_rejected: [const { AtomicU64::new(0) }; ProxyReject::COUNT],
            heartbeat: AtomicU64::new(0),
            latency: LatencyHistogram::new(),
        }
    }
}

impl ShardStats {
    pub fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    /// Lowers a gauge kept with [`ShardStats::add`].
    pub fn sub(counter: &AtomicU64, value: u64) {
        counter.fetch_sub(value, Ordering::Relaxed);
    }

    /// Counts one answer with `status` to a request for `path`.
    pub fn count_answer(&self, path: PathLabel, status: u16) {
        Self::add(&self.answers[path.index() * STATUS_SLOTS + labels::status_slot(status)], 1);
    }

    /// Counts `events` events not stored for `reason`.
    pub fn count_rejected(&self, reason: Reject, events: u64) {
        Self::add(&self.rejected[reason.index()], events);
    }

    /// Answers so far for `path` in status slot `slot` (see [`labels::status_slot`]).
    pub fn answers(&self, path: PathLabel, slot: usize) -> u64 {
        self.answers[path.index() * STATUS_SLOTS + slot].load(Ordering::Relaxed)
    }

    pub fn rejected(&self, reason: Reject) -> u64 {
        self.rejected[reason.index()].load(Ordering::Relaxed)
    }

    pub fn count_proxy_header(&self, label: ProxyHeaderLabel) {
        Self::add(&self.proxy_headers[label.index()], 1);
    }

    pub fn count_proxy_rejected(&self, reason: ProxyReject) {
        Self::add(&self.proxy_rejected[reason.index()], 1);
    }

    pub fn proxy_headers(&self, label: ProxyHeaderLabel) -> u64 {
        self.proxy_headers[label.index()].load(Ordering::Relaxed)
    }

    pub fn proxy_rejected(&self, reason: ProxyReject) -> u64 {
        self.proxy_rejected[reason.index()].load(Ordering::Relaxed)
    }
}

/// Answers queued during one reactor loop, observed into the histogram together when
/// the loop ends. The clock is read at the loop's start and end, never per request:
/// a request framed in this loop took (end − start); a parked request framed in an
/// earlier loop took (end − the start of that loop).
#[derive(Default)]
pub struct LoopLatency {
    started_ns: u64,
    answered_now: u64,
    /// Loop start stamps of parked requests answered this loop: at most one per
    /// connection (a connection has at most one request parked), so bounded by
    /// `[ingest] connections_max`; reused, so it stops growing once warm.
    answered_parked: Vec<u64>,
}

impl LoopLatency {
    /// A loop starts at `now_ns` (monotonic); requests framed from here on carry it.
    pub fn begin(&mut self, now_ns: u64) {
        self.started_ns = now_ns;
    }

    /// The stamp to keep with a request framed in this loop that parks.
    pub fn started_ns(&self) -> u64 {
        self.started_ns
    }

    /// A request framed in this loop was answered in it.
    pub fn answered(&mut self) {
        self.answered_now += 1;
    }

    /// A parked request framed in the loop that started at `framed_ns` was answered.
    pub fn answered_parked(&mut self, framed_ns: u64) {
        self.answered_parked.push(framed_ns);
    }

    /// The loop ends at `now_ns`: observes every answer it queued.
    pub fn finish(&mut self, now_ns: u64, histogram: &LatencyHistogram) {
        if self.answered_now > 0 {
            histogram.observe(now_ns.saturating_sub(self.started_ns), self.answered_now);
            self.answered_now = 0;
        }
        for framed_ns in self.answered_parked.drain(..) {
            histogram.observe(now_ns.saturating_sub(framed_ns), 1);
        }
    }
}

/// Process-wide state shared by shards, the admin listener and the main thread.
pub struct Control {
    pub shards: Vec<ShardStats>,
    /// The topics; every per-partition vector below is indexed by slot (`topics.rs`).
    pub topology: std::sync::Arc<crate::topics::Topology>,
    /// Next offset per partition, published by the owning shard after appends.
    pub end_offsets: Vec<AtomicU64>,
    /// Per partition, the offset below which consumers may read: the end offset under
    /// `os`, the synced offset under `fsync` (a consumer never sees an event a power loss
    /// could take back). Published by the owning shard with `Release`.
    pub readable_ends: Vec<AtomicU64>,
    /// Per partition, the oldest offset retention has kept.
    pub start_offsets: Vec<AtomicU64>,
    /// Per partition, record positions consumers found, so the next seek starts near
    /// its target (`consume::read::SeekHints`).
    pub seek_hints: Vec<crate::consume::read::SeekHints>,
    /// Per partition, the shards (bit `1 << shard`) with a reader parked for it; the
    /// owner wakes them when `readable_ends` moves (`shard/reads.rs`).
    pub read_waiters: Vec<AtomicU64>,
    pub ready: AtomicBool,
    pub draining: AtomicBool,
    /// Storage is fail-stop (an fdatasync failed under `durability = "fsync"`): no more
    /// acknowledgements until a restart, so the node is not ready.
    pub storage_failed: AtomicBool,
    /// Wall-clock ms of the latest append that failed (a full disk); 0 if none has.
    pub storage_refused_ms: AtomicU64,
    /// Storage is refusing writes, with hysteresis: set by the first failed append,
    /// cleared only by [`Control::settle_storage`] once no append has failed for
    /// `STORAGE_UNREADY_HOLD_MS` and the data dir has room again, never by an append
    /// that happens to succeed in a partition with room left.
    pub storage_refusing: AtomicBool,
    /// Offsets recovery found damaged, per partition (`sluice_log_damaged_offsets`).
    pub damaged_offsets: Vec<AtomicU64>,
    /// The damaged ranges recovery found, for `/readyz` and the operator.
    pub damage: std::sync::Mutex<Vec<(u32, crate::log::DamagedOffsets)>>,
    /// Start-up recovery progress: partitions opened and records scanned, all shards.
    pub partitions_recovered: AtomicU64,
    pub records_recovered: AtomicU64,
    /// A shard's reactor loop has stood still past `SHARD_STALL_MS` (set by the main
    /// thread's watch); `/readyz` answers 503 while it is.
    pub stalled: AtomicBool,
    /// The io_uring lockdown (`src/platform/lockdown.rs`) is in force on every thread.
    pub io_uring_lockdown: AtomicBool,
    /// Shards that have finished their own connections while draining.
    pub shards_quiesced: AtomicUsize,
    /// The request-id memory every shard shares.
    pub request_ids: crate::perimeter::request_ids::RequestIds,
    pub quarantine: crate::sidelog::quarantine::QuarantineStats,
    /// The dead-letter queue's bytes, drops, alarm and counts by reason (issue 15).
    pub dlq: crate::sidelog::dlq::DlqCounters,
    /// The subscription registry (set once at start; `/metrics` reads lag from it).
    pub subscriptions: std::sync::OnceLock<Arc<crate::consume::subscriptions::Subscriptions>>,
    pub read_log: Arc<crate::consume::readlog::ReadLogStats>,
    /// Every topic's data dir (set once at start), for lag in seconds.
    pub topic_dirs: std::sync::OnceLock<Arc<Vec<crate::log::DataDir>>>,
    /// Schemas, policies, gates (issue 15): set once at start.
    pub governance: std::sync::OnceLock<Arc<crate::policy::Governance>>,
    /// `(slot, offset)` → ingest ms of that record: lag in seconds without reading the
    /// log at every scrape while a cursor stands still.
    lag_cache: std::sync::Mutex<std::collections::HashMap<(u32, u64), i64>>,
    /// The memory budget (issue 16): unlimited until [`Control::with_limits`].
    pub budget: crate::overload::MemoryBudget,
    /// The rate limits (none until [`Control::with_limits`]).
    pub rate: Arc<crate::perimeter::rate::RateLimits>,
    /// Per shard: its busy share, whether it sheds optional events, its sampled buffers.
    pub pressure: Vec<crate::overload::ShardPressure>,
}

impl Control {
    pub fn new(shards: usize, topology: std::sync::Arc<crate::topics::Topology>) -> Control {
        let partitions = topology.slots();
        let zeros = || (0..partitions).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Control {
            shards: (0..shards).map(|_| ShardStats::default()).collect(),
            topology,
            end_offsets: zeros(),
            readable_ends: zeros(),
            start_offsets: zeros(),
            read_waiters: zeros(),
            seek_hints: (0..partitions).map(|_| crate::consume::read::SeekHints::default()).collect(),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            storage_failed: AtomicBool::new(false),
            storage_refused_ms: AtomicU64::new(0),
            storage_refusing: AtomicBool::new(false),
            damaged_offsets: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
            damage: std::sync::Mutex::new(Vec::new()),
            io_uring_lockdown: AtomicBool::new(false),
            partitions_recovered: AtomicU64::new(0),
            records_recovered: AtomicU64::new(0),
            shards_quiesced: AtomicUsize::new(0),
            request_ids: crate::perimeter::request_ids::RequestIds::new(
                2 * crate::constants::TIMESTAMP_TOLERANCE_SECS_DEFAULT as i64 * 1000,
                crate::constants::REQUEST_IDS_MAX_DEFAULT,
                crate::constants::REQUEST_ID_MEMORY_BYTES_MAX_DEFAULT,
            ),
            quarantine: crate::sidelog::quarantine::QuarantineStats::default(),
            dlq: crate::sidelog::dlq::DlqCounters::default(),
            subscriptions: std::sync::OnceLock::new(),
            read_log: Arc::default(),
            topic_dirs: std::sync::OnceLock::new(),
            governance: std::sync::OnceLock::new(),
            lag_cache: std::sync::Mutex::new(std::collections::HashMap::new()),
            budget: crate::overload::MemoryBudget::new(u64::MAX / 4),
            rate: Arc::new(crate::perimeter::rate::RateLimits::new(Vec::new())),
            pressure: (0..shards).map(|_| crate::overload::ShardPressure::default()).collect(),
        }
    }

    /// The memory budget and rate limits of `[limits]`.
    pub fn with_limits(mut self, limits: &crate::config::limits::LimitsConfig) -> Control {
        self.budget = crate::overload::MemoryBudget::new(limits.memory_bytes_max);
        self.rate = Arc::new(crate::perimeter::rate::RateLimits::new(limits.rate.clone()));
        self
    }

    /// How long ago the record at `committed` (the oldest not consumed) of `slot` was
    /// ingested; 0 when there is none yet.
    pub fn oldest_unconsumed_age_ms(&self, slot: u32, committed: u64, now_ms: i64) -> i64 {
        let end = self.readable_ends[slot as usize].load(Ordering::Acquire);
        if committed >= end {
            return 0;
        }
        let mut cache = self.lag_cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let ingest = match cache.get(&(slot, committed)) {
            Some(ingest) => Some(*ingest),
            None => {
                let (topic, partition) = self.topology.locate(slot);
                let found = self.topic_dirs.get().and_then(|dirs| {
                    crate::consume::oldest_ingest_ms(&dirs[usize::from(topic)], partition, committed, end, &self.seek_hints[slot as usize])
                });
                if let Some(ingest) = found {
                    if cache.len() > 4096 {
                        cache.clear();
                    }
                    cache.insert((slot, committed), ingest);
                }
                found
            }
        };
        ingest.map_or(0, |ingest| (now_ms - ingest).max(0))
    }

    /// The `topic` and `partition` label values of `slot`.
    pub fn slot_labels(&self, slot: usize) -> (&str, String) {
        let (topic, partition) = self.topology.locate(slot as u32);
        (&self.topology.topic(topic).name, partition.to_string())
    }

    /// Replaces the request-id memory (its window and bounds come from the configuration).
    pub fn with_request_ids(mut self, request_ids: crate::perimeter::request_ids::RequestIds) -> Control {
        self.request_ids = request_ids;
        self
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
            && !self.draining.load(Ordering::Acquire)
            && !self.stalled.load(Ordering::Acquire)
            && self.storage_takes_writes()
    }

    /// False while storage refuses writes: after a fail-stop (until a restart), and
    /// from a failed append until [`Control::settle_storage`] sees the disk recovered.
    pub fn storage_takes_writes(&self) -> bool {
        !self.storage_failed.load(Ordering::Acquire) && !self.storage_refusing.load(Ordering::Acquire)
    }

    /// A shard's append failed at wall-clock `now_ms` (not a sync failure: that is
    /// fail-stop). The node turns not ready at once.
    pub fn storage_refused(&self, now_ms: i64) {
        self.storage_refused_ms.store(now_ms.max(1) as u64, Ordering::Release);
        if !self.storage_refusing.swap(true, Ordering::AcqRel) {
            tracing::error!("storage refuses writes (disk full or failing): /readyz is 503 until it has recovered");
        }
    }

    /// Called by the supervisor about every second: leaves the refusing state once no
    /// append has failed for `STORAGE_UNREADY_HOLD_MS` and `free_bytes` (what the data
    /// dir's file system has left; `None` when unknown) is at least `resume_bytes`.
    /// Entering is immediate and leaving needs both, so a balancer sees one transition
    /// each way however many partitions still have room. Returns true when it left.
    pub fn settle_storage(&self, now_ms: u64, free_bytes: Option<u64>, resume_bytes: u64) -> bool {
        if !self.storage_refusing.load(Ordering::Acquire) {
            return false;
        }
        let refused_ms = self.storage_refused_ms.load(Ordering::Acquire);
        let quiet = now_ms >= refused_ms + crate::constants::STORAGE_UNREADY_HOLD_MS;
        if quiet && free_bytes.is_none_or(|free| free >= resume_bytes) {
            self.storage_refusing.store(false, Ordering::SeqCst);
            // An append that failed between the load above and the store saw the flag
            // still set and left it alone: put it back.
            if self.storage_refused_ms.load(Ordering::SeqCst) != refused_ms {
                self.storage_refusing.store(true, Ordering::SeqCst);
                return false;
            }
            tracing::warn!(free_bytes, "storage has room again: /readyz is 200");
            return true;
        }
        false
    }

    /// Records what recovery found damaged in `partition` (start-up only).
    pub fn record_damage(&self, partition: u32, damage: &[crate::log::DamagedOffsets]) {
        let count: u64 = damage.iter().map(crate::log::DamagedOffsets::count).sum();
        self.damaged_offsets[partition as usize].store(count, Ordering::Relaxed);
        let mut all = self.damage.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        all.extend(damage.iter().map(|range| (partition, range.clone())));
    }

    /// `(partitions opened, records scanned)` so far during start-up recovery.
    pub fn recovery_progress(&self) -> (u64, u64) {
        (self.partitions_recovered.load(Ordering::Relaxed), self.records_recovered.load(Ordering::Relaxed))
    }

    /// Every answer sent so far, all shards and paths (for the request rate).
    pub fn answers_total(&self) -> u64 {
        self.shards.iter().map(|shard| shard.answers.iter().map(|count| count.load(Ordering::Relaxed)).sum::<u64>()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_readiness_has_hysteresis() {
        let control = Control::new(1, std::sync::Arc::new(crate::topics::Topology::single(1, 1, 0)));
        let hold = crate::constants::STORAGE_UNREADY_HOLD_MS;
        let room = Some(1 << 30);
        assert!(control.storage_takes_writes());
        // A failed append at t = 5 s: not ready at once.
        control.storage_refused(5_000);
        assert!(!control.storage_takes_writes());
        // Neither time alone nor room alone brings it back.
        assert!(!control.settle_storage(5_000 + hold - 1, room, 100));
        assert!(!control.settle_storage(5_000 + hold, Some(99), 100));
        assert!(!control.storage_takes_writes());
        // Another failure restarts the quiet period.
        control.storage_refused(6_000);
        assert!(!control.settle_storage(5_000 + hold, room, 100));
        assert!(control.settle_storage(6_000 + hold, room, 100));
        assert!(control.storage_takes_writes());
        assert!(!control.settle_storage(6_000 + hold, room, 100), "already settled");
        // Fail-stop stays until a restart.
        control.storage_failed.store(true, Ordering::Release);
        assert!(!control.storage_takes_writes());
    }

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_holds_them() {
        let histogram = LatencyHistogram::new();
        histogram.observe(0, 1);
        histogram.observe(10_000, 2); // on a bound: `le` is inclusive
        histogram.observe(10_001, 1);
        histogram.observe(2_000_000, 1);
        histogram.observe(5_000_000_000, 1);
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.buckets[0], 3);
        assert_eq!(snapshot.buckets[1], 1);
        assert_eq!(snapshot.buckets[7], 1, "2 ms is in the 2.5 ms bucket");
        assert_eq!(snapshot.buckets[LATENCY_BUCKETS - 1], 1, "5 s is only in +Inf");
        assert_eq!(snapshot.buckets.iter().sum::<u64>(), 6);
        assert_eq!(snapshot.sum_ns, 20_000 + 10_001 + 2_000_000 + 5_000_000_000);
    }

    #[test]
    fn a_loop_observes_its_own_requests_once_and_parked_ones_from_their_loop() {
        let histogram = LatencyHistogram::new();
        let mut latency = LoopLatency::default();
        latency.begin(1_000_000);
        for _ in 0..5 {
            latency.answered();
        }
        latency.answered_parked(0);
        latency.answered_parked(900_000);
        latency.finish(1_020_000, &histogram);
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.buckets[1], 5, "20 µs each");
        assert_eq!(snapshot.buckets[4], 1, "120 µs");
        assert_eq!(snapshot.buckets[7], 1, "1.02 ms");
        assert_eq!(snapshot.buckets.iter().sum::<u64>(), 7);
        assert_eq!(snapshot.sum_ns, 5 * 20_000 + 1_020_000 + 120_000);
        latency.begin(2_000_000);
        latency.finish(2_050_000, &histogram);
        assert_eq!(histogram.snapshot().buckets.iter().sum::<u64>(), 7, "a loop without answers observes nothing");
    }

    #[test]
    fn answers_and_rejections_count_in_their_own_slots() {
        let stats = ShardStats::default();
        stats.count_answer(PathLabel::Events, 202);
        stats.count_answer(PathLabel::Events, 202);
        stats.count_answer(PathLabel::Other, 418);
        stats.count_rejected(Reject::BatchTooLarge, 1001);
        assert_eq!(stats.answers(PathLabel::Events, labels::status_slot(202)), 2);
        assert_eq!(stats.answers(PathLabel::EventsBatch, labels::status_slot(202)), 0);
        assert_eq!(stats.answers(PathLabel::Other, labels::STATUS_SLOT_OTHER), 1);
        assert_eq!(stats.rejected(Reject::BatchTooLarge), 1001);
        assert_eq!(std::mem::align_of::<ShardStats>(), 128);
        assert!(std::mem::size_of::<ShardStats>().is_multiple_of(128));
    }
}
