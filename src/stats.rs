//! Counters each shard bumps without locks (one cache line per shard, relaxed adds) and
//! the admin listener reads. `GET /metrics` renders them in Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// One shard's counters, padded so shards never share a cache line.
#[derive(Default)]
#[repr(align(128))]
pub struct ShardStats {
    pub requests: AtomicU64,
    pub bytes_in: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_refused: AtomicU64,
    pub events_accepted: AtomicU64,
    pub events_duplicate: AtomicU64,
    pub events_rejected: AtomicU64,
    pub responses_2xx: AtomicU64,
    pub responses_4xx: AtomicU64,
    pub responses_5xx: AtomicU64,
    /// Bumped every reactor loop; the admin plane uses it to tell a live shard.
    pub heartbeat: AtomicU64,
}

impl ShardStats {
    pub fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    pub fn count_status(&self, status: u16) {
        let counter = match status {
            200..=299 => &self.responses_2xx,
            400..=499 => &self.responses_4xx,
            _ => &self.responses_5xx,
        };
        Self::add(counter, 1);
    }
}

/// A metric family: name, help text, and the counter it reads from each shard.
type Family = (&'static str, &'static str, fn(&ShardStats) -> &AtomicU64);

/// Process-wide state shared by shards, the admin listener and the main thread.
pub struct Control {
    pub shards: Vec<ShardStats>,
    /// Next offset per partition, published by the owning shard after appends.
    pub end_offsets: Vec<AtomicU64>,
    pub ready: AtomicBool,
    pub draining: AtomicBool,
    /// Shards that have finished their own connections while draining.
    pub shards_quiesced: AtomicUsize,
}

impl Control {
    pub fn new(shards: usize, partitions: u32) -> Control {
        Control {
            shards: (0..shards).map(|_| ShardStats::default()).collect(),
            end_offsets: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            shards_quiesced: AtomicUsize::new(0),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }

    /// Prometheus text exposition of every counter.
    pub fn render_metrics(&self) -> String {
        let mut out = String::with_capacity(4096);
        let families: [Family; 10] = [
            ("sluice_requests_total", "HTTP requests framed", |s| &s.requests),
            ("sluice_bytes_in_total", "bytes received on ingest connections", |s| &s.bytes_in),
            ("sluice_connections_open", "open ingest connections", |s| &s.connections_open),
            ("sluice_connections_refused_total", "connections closed at accept (limit or draining)", |s| &s.connections_refused),
            ("sluice_events_accepted_total", "events stored", |s| &s.events_accepted),
            ("sluice_events_duplicate_total", "events answered as duplicates", |s| &s.events_duplicate),
            ("sluice_events_rejected_total", "events rejected (auth, framing, envelope, storage)", |s| &s.events_rejected),
            ("sluice_responses_2xx_total", "2xx answers", |s| &s.responses_2xx),
            ("sluice_responses_4xx_total", "4xx answers", |s| &s.responses_4xx),
            ("sluice_responses_5xx_total", "5xx answers", |s| &s.responses_5xx),
        ];
        for (name, help, field) in families {
            let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (index, shard) in self.shards.iter().enumerate() {
                let _ = writeln!(out, "{name}{{shard=\"{index}\"}} {}", field(shard).load(Ordering::Relaxed));
            }
        }
        let _ = writeln!(out, "# HELP sluice_partition_end_offset next offset to be written\n# TYPE sluice_partition_end_offset gauge");
        for (partition, offset) in self.end_offsets.iter().enumerate() {
            let _ = writeln!(out, "sluice_partition_end_offset{{partition=\"{partition}\"}} {}", offset.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP sluice_ready 1 when accepting traffic\n# TYPE sluice_ready gauge\nsluice_ready {}",
            u8::from(self.is_ready())
        );
        out
    }
}
