//! `GET /metrics`: the Prometheus text exposition format 0.0.4 of every counter. Runs on
//! the admin thread, so it may allocate; it reads each counter once, relaxed, and makes
//! no promise that two counters were read at the same instant.

use std::fmt::{Display, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use super::labels::{self, PathLabel, ProxyHeaderLabel, ProxyReject, Reject, STATUS_SLOTS, STATUSES};
use super::{Control, LATENCY_BUCKET_BOUNDS_NS, ShardStats};

/// Request series rendered even while zero, so `rate()` sees their first increment.
/// Other (path, status) pairs appear once they have counted something.
const REQUEST_SERIES_ALWAYS: [(PathLabel, u16); 5] = [
    (PathLabel::Events, 202),
    (PathLabel::Events, 200),
    (PathLabel::EventsBatch, 200),
    (PathLabel::Healthz, 200),
    (PathLabel::Readyz, 200),
];

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Appends HELP/TYPE headers and samples, escaping help text and label values.
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        debug_assert_eq!(matches!(kind, Kind::Counter), name.ends_with("_total"), "{name}");
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = write!(self.out, "# HELP {name} ");
        escape_into(&mut self.out, help, false);
        let _ = writeln!(self.out, "\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, suffix: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        self.out.push_str(suffix);
        if !labels.is_empty() {
            self.out.push('{');
            for (index, (label, label_value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                escape_into(&mut self.out, label_value, true);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with one sample per shard and value of `label` (every series, zeros
    /// included, so a rate over it never starts from a missing series).
    fn per_shard_by<L: Copy>(
        &mut self,
        shards: &[(String, &ShardStats)],
        (name, kind, help): (&str, Kind, &str),
        label: &str,
        values: &[L],
        label_value: impl Fn(L) -> &'static str,
        value: impl Fn(&ShardStats, L) -> u64,
    ) {
        self.family(name, kind, help);
        for (id, stats) in shards {
            for &each in values {
                self.sample(name, "", &[("shard", id), (label, label_value(each))], value(stats, each));
            }
        }
    }

    /// A family with one sample per shard.
    fn per_shard(&mut self, shards: &[(String, &ShardStats)], name: &str, kind: Kind, help: &str, value: impl Fn(&ShardStats) -> u64) {
        self.family(name, kind, help);
        for (id, stats) in shards {
            self.sample(name, "", &[("shard", id)], value(stats));
        }
    }
}

/// Escapes `\` and newline (help text), and `"` too in label values (format 0.0.4).
pub(crate) fn escape_into(out: &mut String, text: &str, quote: bool) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            _ => out.push(c),
        }
    }
}

/// Picks one counter out of a shard's block.
type CounterOf = fn(&ShardStats) -> &AtomicU64;

fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

fn status_label(slot: usize) -> String {
    STATUSES.get(slot).map_or_else(|| "other".to_owned(), u16::to_string)
}

impl Control {
    /// Prometheus text exposition (format 0.0.4) of every family; see docs/ARCHITECTURE.md.
    pub fn render_metrics(&self) -> String {
        let mut exposition = Exposition { out: String::with_capacity(16 * 1024) };
        let shards: Vec<(String, &ShardStats)> = self.shards.iter().enumerate().map(|(index, s)| (index.to_string(), s)).collect();
        render_requests(&mut exposition, &shards);
        render_latency(&mut exposition, &shards);
        render_events(&mut exposition, &shards);
        let e = &mut exposition;
        e.per_shard(&shards, "sluice_bytes_in_total", Kind::Counter, "bytes received on ingest connections", |s| {
            s.bytes_in.load(Ordering::Relaxed)
        });
        e.per_shard(&shards, "sluice_bytes_out_total", Kind::Counter, "bytes sent on ingest connections", |s| {
            s.bytes_out.load(Ordering::Relaxed)
        });
        render_connections(e, &shards);
        render_proxy(e, &shards);
        e.per_shard(&shards, "sluice_shard_loops_total", Kind::Counter, "reactor loops run; at least 10 per second on a live shard", |s| {
            s.heartbeat.load(Ordering::Relaxed)
        });
        render_legacy(e, &shards);
        let segments = crate::log::segment_counters();
        let process_wide: [(&str, &str, u64); 3] = [
            ("sluice_segments_prepared_total", "spare segments made ahead of their roll", segments.spares_prepared),
            ("sluice_segment_roll_stalls_total", "rolls that created their segment on the shard thread", segments.stalled_rolls),
            ("sluice_segment_dir_sync_failures_total", "failed background directory fsyncs after a roll", segments.dir_sync_failures),
        ];
        for (name, help, value) in process_wide {
            e.family(name, Kind::Counter, help);
            e.sample(name, "", &[], value);
        }
        render_perimeter(e, self);
        render_overload(e, self);
        render_governance(e, self);
        e.family("sluice_partition_end_offset", Kind::Gauge, "next offset to be written");
        for (slot, offset) in self.end_offsets.iter().enumerate() {
            let (topic, partition) = self.slot_labels(slot);
            e.sample("sluice_partition_end_offset", "", &[("topic", topic), ("partition", &partition)], offset.load(Ordering::Relaxed));
        }
        e.family("sluice_partition_start_offset", Kind::Gauge, "oldest offset retention has kept");
        for (slot, offset) in self.start_offsets.iter().enumerate() {
            let (topic, partition) = self.slot_labels(slot);
            e.sample("sluice_partition_start_offset", "", &[("topic", topic), ("partition", &partition)], offset.load(Ordering::Relaxed));
        }
        render_storage(e, self);
        render_consumers(e, self, &shards);
        e.family("sluice_ready", Kind::Gauge, "1 when accepting traffic");
        e.sample("sluice_ready", "", &[], u8::from(self.is_ready()));
        e.family(
            "sluice_io_uring_lockdown_active",
            Kind::Gauge,
            "1 when io_uring_setup and io_uring_register are refused to the process (seccomp, [ingest] io_uring_lockdown)",
        );
        e.sample("sluice_io_uring_lockdown_active", "", &[], u8::from(self.io_uring_lockdown.load(Ordering::Acquire)));
        exposition.out
    }
}

/// Consumers: requests, what went out, open streams and waits, subscription lag.
fn render_consumers(e: &mut Exposition, control: &Control, shards: &[(String, &ShardStats)]) {
    let counters: [(&str, Kind, &str, CounterOf); 10] = [
        ("sluice_consumer_requests_total", Kind::Counter, "consumer requests (reads, streams, commits, SSE, listings)", |s| {
            &s.consumer_requests
        }),
        ("sluice_consumer_events_out_total", Kind::Counter, "events sent to consumers", |s| &s.consumer_events_out),
        ("sluice_consumer_bytes_out_total", Kind::Counter, "bytes of events (with their framing) sent to consumers", |s| {
            &s.consumer_bytes_out
        }),
        ("sluice_consumer_streams", Kind::Gauge, "open subscription streams", |s| &s.consumer_streams),
        ("sluice_consumer_sse_streams", Kind::Gauge, "open Server-Sent Events streams", |s| &s.consumer_sse),
        ("sluice_consumer_long_polls", Kind::Gauge, "partition reads parked until events arrive", |s| &s.consumer_waiting),
        ("sluice_consumer_redeliveries_total", Kind::Counter, "events a subscription stream sent again (rebalance, commit timeout)", |s| {
            &s.consumer_redelivered
        }),
        ("sluice_consumer_commit_timeouts_total", Kind::Counter, "subscription streams ended for want of a commit", |s| {
            &s.consumer_commit_timeouts
        }),
        ("sluice_consumer_late_events_total", Kind::Counter, "events a reorder window delivered late (\"late\":true)", |s| {
            &s.consumer_late
        }),
        ("sluice_consumer_reorder_forced_total", Kind::Counter, "events a full reorder hold released before their watermark", |s| {
            &s.consumer_reorder_forced
        }),
    ];
    for (name, kind, help, counter) in counters {
        e.per_shard(shards, name, kind, help, |s| counter(s).load(Ordering::Relaxed));
    }
    let log = &control.read_log;
    for (name, kind, help, value) in [
        ("sluice_read_log_bytes", Kind::Gauge, "bytes the read log holds on disk", log.bytes.load(Ordering::Relaxed)),
        ("sluice_read_log_records_total", Kind::Counter, "consumer requests recorded in the read log", log.records.load(Ordering::Relaxed)),
        (
            "sluice_read_log_dropped_total",
            Kind::Counter,
            "consumer requests not recorded (read log full)",
            log.dropped.load(Ordering::Relaxed),
        ),
    ] {
        e.family(name, kind, help);
        e.sample(name, "", &[], value);
    }
    let Some(subscriptions) = control.subscriptions.get() else { return };
    e.family("sluice_subscription_rebalances_total", Kind::Counter, "times a subscription's partitions were shared out again");
    e.sample("sluice_subscription_rebalances_total", "", &[], subscriptions.rebalances.load(Ordering::Relaxed));
    let all = subscriptions.all_committed_cursors();
    e.family("sluice_subscription_lag_events", Kind::Gauge, "events of a subscription partition not committed yet");
    for (name, cursors) in &all {
        for (slot, committed) in cursors {
            let (topic, partition) = control.slot_labels(*slot as usize);
            let end = control.readable_ends[*slot as usize].load(Ordering::Acquire);
            let labels = [("subscription", name.as_str()), ("topic", topic), ("partition", partition.as_str())];
            e.sample("sluice_subscription_lag_events", "", &labels, end.saturating_sub(*committed));
        }
    }
    e.family("sluice_subscription_lag_seconds", Kind::Gauge, "age of the oldest event of a subscription partition not committed yet");
    let now_ms = crate::platform::time::now_unix_ms();
    for (name, cursors) in &all {
        for (slot, committed) in cursors {
            let (topic, partition) = control.slot_labels(*slot as usize);
            let age = control.oldest_unconsumed_age_ms(*slot, *committed, now_ms);
            let labels = [("subscription", name.as_str()), ("topic", topic), ("partition", partition.as_str())];
            e.sample("sluice_subscription_lag_seconds", "", &labels, format!("{:.3}", age as f64 / 1000.0));
        }
    }
}

/// The storage state: damage found by recovery, refusing writes, fail-stop.
fn render_storage(e: &mut Exposition, control: &Control) {
    e.family(
        "sluice_log_damaged_offsets",
        Kind::Gauge,
        "offsets recovery found damaged or missing (intact records around them kept, never reused; see sluice check-log)",
    );
    for (slot, count) in control.damaged_offsets.iter().enumerate() {
        let (topic, partition) = control.slot_labels(slot);
        e.sample("sluice_log_damaged_offsets", "", &[("topic", topic), ("partition", &partition)], count.load(Ordering::Relaxed));
    }
    e.family("sluice_storage_refusing", Kind::Gauge, "1 while storage refuses writes (disk full or failing; hysteresis)");
    e.sample("sluice_storage_refusing", "", &[], u8::from(control.storage_refusing.load(Ordering::Acquire)));
    e.family("sluice_storage_failed", Kind::Gauge, "1 after a failed fdatasync: fail-stop until a restart");
    e.sample("sluice_storage_failed", "", &[], u8::from(control.storage_failed.load(Ordering::Acquire)));
}

/// PROXY protocol headers on the ingest listeners (every series, zeros included).
fn render_proxy(e: &mut Exposition, shards: &[(String, &ShardStats)]) {
    let help = "PROXY protocol headers accepted: v1 or v2 with a client address, local without one (v2 LOCAL, v1 UNKNOWN)";
    e.per_shard_by(
        shards,
        ("sluice_proxy_headers_total", Kind::Counter, help),
        "version",
        &ProxyHeaderLabel::ALL,
        ProxyHeaderLabel::as_str,
        ShardStats::proxy_headers,
    );
    let help =
        "connections closed at their PROXY protocol header: invalid, untrusted_source (a header from outside proxy_trusted_cidrs), timeout";
    e.per_shard_by(
        shards,
        ("sluice_proxy_header_rejected_total", Kind::Counter, help),
        "reason",
        &ProxyReject::ALL,
        ProxyReject::as_str,
        ShardStats::proxy_rejected,
    );
}

/// Request-id memory and clock-skew quarantine.
fn render_perimeter(e: &mut Exposition, control: &Control) {
    let ids = &control.request_ids;
    let counters: [(&str, &str, u64); 4] = [
        ("sluice_request_id_repeats_total", "requests answered from the request-id memory", ids.repeats.load(Ordering::Relaxed)),
        ("sluice_request_id_conflicts_total", "requests refused 409 by the request-id memory", ids.conflicts.load(Ordering::Relaxed)),
        (
            "sluice_request_id_evictions_total",
            "request ids forgotten before their window ended (memory bound)",
            ids.evicted.load(Ordering::Relaxed),
        ),
        (
            "sluice_quarantine_dropped_total",
            "skewed requests not kept: quarantine full or unwritable",
            control.quarantine.dropped.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, value) in counters {
        e.family(name, Kind::Counter, help);
        e.sample(name, "", &[], value);
    }
    e.family("sluice_quarantine_bytes", Kind::Gauge, "bytes in the quarantine directory");
    e.sample("sluice_quarantine_bytes", "", &[], control.quarantine.bytes.load(Ordering::Relaxed));
    const QUARANTINED: &str = "sluice_quarantined_total";
    e.family(QUARANTINED, Kind::Counter, "validly signed requests outside the timestamp window, kept in quarantine, by partner");
    for (partner, count) in control.quarantine.per_partner() {
        e.sample(QUARANTINED, "", &[("partner", &partner)], count);
    }
}

/// Connection counters per shard: open, refused, TLS handshakes.
fn render_connections(e: &mut Exposition, shards: &[(String, &ShardStats)]) {
    e.per_shard(shards, "sluice_connections_open", Kind::Gauge, "open ingest connections", |s| s.connections_open.load(Ordering::Relaxed));
    e.per_shard(shards, "sluice_connections_refused_total", Kind::Counter, "connections closed at accept (limit or draining)", |s| {
        s.connections_refused.load(Ordering::Relaxed)
    });
    let connection_counters: [(&str, &str, CounterOf); 4] = [
        (
            "sluice_connections_refused_per_ip_total",
            "connections closed at accept because their address held connections_per_ip_max (also in sluice_connections_refused_total)",
            |s| &s.connections_refused_per_ip,
        ),
        ("sluice_tls_handshakes_total", "TLS handshakes completed on the ingest TLS listener", |s| &s.tls_handshakes),
        ("sluice_tls_handshake_failures_total", "TLS handshakes that failed (alert sent, connection closed)", |s| {
            &s.tls_handshake_failures
        }),
        (
            "sluice_tls_handshakes_deferred_total",
            "TLS handshake steps put off to a later loop turn because the turn's handshake share was spent",
            |s| &s.tls_handshakes_deferred,
        ),
    ];
    for (name, help, counter) in connection_counters {
        e.per_shard(shards, name, Kind::Counter, help, |s| counter(s).load(Ordering::Relaxed));
    }
}

/// Rate limits, the memory budget and each shard's pressure (issue 16).
fn render_overload(e: &mut Exposition, control: &Control) {
    use crate::perimeter::rate::Per;
    let rate = &control.rate;
    type CountOf = fn(&crate::perimeter::rate::RateCounts) -> u64;
    let families: [(&str, Kind, &str, CountOf); 3] = [
        ("sluice_rate_limited_total", Kind::Counter, "requests answered 429 rate_limited, by the kind of rule they hit", |c| {
            c.limited.load(Ordering::Relaxed)
        }),
        (
            "sluice_rate_limit_evictions_total",
            Kind::Counter,
            "keys that took the place of a live key in a full group of the rate-limit table",
            |c| c.evicted.load(Ordering::Relaxed),
        ),
        (
            "sluice_rate_limit_keys",
            Kind::Gauge,
            "keys with a bucket not yet refilled at the last sweep (partner and kid share one table, shown under partner)",
            |c| c.live.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, value) in families {
        e.family(name, kind, help);
        for per in Per::ALL {
            e.sample(name, "", &[("per", per.name())], value(&rate.counts[per as usize]));
        }
    }
    let budget = &control.budget;
    let gauges: [(&str, &str, u64); 3] = [
        ("sluice_memory_budget_bytes", "the memory budget in force ([limits] memory_bytes_max)", budget.limit()),
        (
            "sluice_memory_used_bytes",
            "bytes counted against the budget: bodies being received, connection, pool and side-log buffers",
            budget.used(),
        ),
        ("sluice_memory_used_peak_bytes", "the highest use of the budget seen", budget.peak.load(Ordering::Relaxed)),
    ];
    for (name, help, value) in gauges {
        e.family(name, Kind::Gauge, help);
        e.sample(name, "", &[], value);
    }
    e.family("sluice_memory_refused_total", Kind::Counter, "bodies answered 503 overloaded because the budget could not hold them");
    e.sample("sluice_memory_refused_total", "", &[], budget.refused.load(Ordering::Relaxed));
    e.family("sluice_shard_busy_ratio", Kind::Gauge, "share of the last 50 ms window the shard's loop spent working");
    for (index, pressure) in control.pressure.iter().enumerate() {
        let shard = index.to_string();
        e.sample("sluice_shard_busy_ratio", "", &[("shard", &shard)], pressure.busy_milli.load(Ordering::Relaxed) as f64 / 1000.0);
    }
    const TURNS: &str = "sluice_shard_loop_turn_seconds";
    e.family(TURNS, Kind::Histogram, "reactor loop turns by the time their work took (what a request framed in a turn may wait)");
    for (index, pressure) in control.pressure.iter().enumerate() {
        let shard = index.to_string();
        let mut cumulative = 0u64;
        for (bucket, count) in pressure.turns.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le =
                crate::overload::TURN_BUCKET_BOUNDS_NS.get(bucket).map_or_else(|| "+Inf".to_owned(), |bound| seconds(*bound).to_string());
            e.sample(TURNS, "_bucket", &[("shard", &shard), ("le", &le)], cumulative);
        }
        e.sample(TURNS, "_sum", &[("shard", &shard)], seconds(pressure.turns_ns.load(Ordering::Relaxed)));
        e.sample(TURNS, "_count", &[("shard", &shard)], cumulative);
    }
    e.family("sluice_shard_shedding", Kind::Gauge, "1 while the shard refuses events of optional topics (busy or memory tight)");
    for (index, pressure) in control.pressure.iter().enumerate() {
        let shard = index.to_string();
        e.sample("sluice_shard_shedding", "", &[("shard", &shard)], u8::from(pressure.shedding.load(Ordering::Relaxed)));
    }
}

/// Dead-letter queue, partner health, KYC/RG gates (issue 15).
fn render_governance(e: &mut Exposition, control: &Control) {
    let dlq = &control.dlq;
    e.family("sluice_dlq_bytes", Kind::Gauge, "bytes in the dead-letter queue (every shard)");
    e.sample("sluice_dlq_bytes", "", &[], dlq.bytes.load(Ordering::Relaxed));
    e.family("sluice_dlq_dropped_total", Kind::Counter, "dead letters not kept: the queue is at dlq.bytes_max (or unwritable)");
    e.sample("sluice_dlq_dropped_total", "", &[], dlq.dropped.load(Ordering::Relaxed));
    e.family("sluice_dlq_alarm", Kind::Gauge, "1 while the dead-letter queue is full and refusing new dead letters");
    e.sample("sluice_dlq_alarm", "", &[], u8::from(dlq.alarm.load(Ordering::Relaxed)));
    const WRITTEN: &str = "sluice_dead_letters_total";
    e.family(WRITTEN, Kind::Counter, "dead letters written, by reason (the error code the producer was sent)");
    for (reason, count) in dlq.written_by_reason() {
        e.sample(WRITTEN, "", &[("reason", &reason)], count);
    }
    let Some(governance) = control.governance.get() else { return };
    let state = &governance.gate_state;
    e.family("sluice_gate_users", Kind::Gauge, "users with a KYC/RG state read from the stream");
    e.sample("sluice_gate_users", "", &[], state.users());
    e.family("sluice_gate_users_dropped_total", Kind::Counter, "KYC/RG changes not kept: the user table is full");
    e.sample("sluice_gate_users_dropped_total", "", &[], state.dropped.load(Ordering::Relaxed));
    render_partner_health(e, governance);
}

fn render_partner_health(e: &mut Exposition, governance: &crate::policy::Governance) {
    let partners = governance.health.snapshot();
    type CountOf = fn(&crate::policy::health::PartnerCounters) -> u64;
    let counters: [(&str, &str, CountOf); 3] = [
        ("sluice_partner_admitted_total", "requests admitted (authenticated and authorized), by partner", |c| c.admitted),
        ("sluice_partner_signature_failures_total", "requests refused for an invalid signature under one of the partner's kids", |c| {
            c.signature_failures
        }),
        ("sluice_partner_timestamp_skew_total", "validly signed requests refused because the partner's clock is outside the window", |c| {
            c.skewed
        }),
    ];
    for (name, help, value) in counters {
        e.family(name, Kind::Counter, help);
        for (partner, counts) in &partners {
            e.sample(name, "", &[("partner", partner)], value(counts));
        }
    }
    e.family(
        "sluice_partner_clock_skew_seconds",
        Kind::Gauge,
        "the partner's clock minus the gateway's, last seen beyond half the tolerance in the last 5 minutes (else 0)",
    );
    let now_ms = crate::platform::time::now_unix_ms();
    for (partner, counts) in &partners {
        e.sample("sluice_partner_clock_skew_seconds", "", &[("partner", partner)], counts.recent_skew_secs(now_ms));
    }
    const DEAD: &str = "sluice_partner_dead_letters_total";
    e.family(DEAD, Kind::Counter, "dead letters by partner and reason");
    for (partner, counts) in &partners {
        for (reason, count) in &counts.dead_letters {
            e.sample(DEAD, "", &[("partner", partner), ("reason", reason)], count);
        }
    }
}

fn render_requests(e: &mut Exposition, shards: &[(String, &ShardStats)]) {
    const NAME: &str = "sluice_http_requests_total";
    e.family(NAME, Kind::Counter, "answers sent on the ingest listener, by request path (closed set) and status");
    for (id, stats) in shards {
        for path in PathLabel::ALL {
            for slot in 0..STATUS_SLOTS {
                let count = stats.answers(path, slot);
                let always = REQUEST_SERIES_ALWAYS.iter().any(|(p, status)| *p == path && labels::status_slot(*status) == slot);
                if count > 0 || always {
                    e.sample(NAME, "", &[("shard", id), ("path", path.as_str()), ("status", &status_label(slot))], count);
                }
            }
        }
    }
}

fn render_latency(e: &mut Exposition, shards: &[(String, &ShardStats)]) {
    const NAME: &str = "sluice_http_request_duration_seconds";
    e.family(
        NAME,
        Kind::Histogram,
        "time inside the server from the reactor loop that framed a request to the end of the loop that queued its answer",
    );
    for (id, stats) in shards {
        let snapshot = stats.latency.snapshot();
        let mut cumulative = 0u64;
        for (index, count) in snapshot.buckets.iter().enumerate() {
            cumulative += count;
            let le = LATENCY_BUCKET_BOUNDS_NS.get(index).map_or_else(|| "+Inf".to_owned(), |bound| seconds(*bound).to_string());
            e.sample(NAME, "_bucket", &[("shard", id), ("le", &le)], cumulative);
        }
        e.sample(NAME, "_sum", &[("shard", id)], seconds(snapshot.sum_ns));
        e.sample(NAME, "_count", &[("shard", id)], cumulative);
    }
}

fn render_events(e: &mut Exposition, shards: &[(String, &ShardStats)]) {
    e.per_shard(shards, "sluice_events_accepted_total", Kind::Counter, "events stored", |s| s.events_accepted.load(Ordering::Relaxed));
    e.per_shard(shards, "sluice_events_duplicate_total", Kind::Counter, "events answered as duplicates (nothing stored)", |s| {
        s.events_duplicate.load(Ordering::Relaxed)
    });
    let help = "events not stored, by the error code sent; a request refused whole counts once, a too-large batch per line";
    e.per_shard_by(
        shards,
        ("sluice_events_rejected_total", Kind::Counter, help),
        "reason",
        &Reject::ALL,
        Reject::code,
        ShardStats::rejected,
    );
}

/// Families from before `sluice_http_requests_total`, kept for existing dashboards and
/// now derived from it at scrape time (no hot-path cost).
fn render_legacy(e: &mut Exposition, shards: &[(String, &ShardStats)]) {
    /// Answers per status class: 2xx, 4xx, and 5xx with the `other` slot, as before.
    fn by_class(stats: &ShardStats) -> [u64; 3] {
        let mut totals = [0; 3];
        for path in PathLabel::ALL {
            for slot in 0..STATUS_SLOTS {
                let class = match STATUSES.get(slot) {
                    Some(200..=299) => 0,
                    Some(400..=499) => 1,
                    _ => 2,
                };
                totals[class] += stats.answers(path, slot);
            }
        }
        totals
    }
    let help = "HTTP requests answered (deprecated: sum of sluice_http_requests_total)";
    e.per_shard(shards, "sluice_requests_total", Kind::Counter, help, |s| by_class(s).iter().sum());
    let classes =
        [("sluice_responses_2xx_total", "2xx"), ("sluice_responses_4xx_total", "4xx"), ("sluice_responses_5xx_total", "5xx and other")];
    for (class, (name, what)) in classes.into_iter().enumerate() {
        let help = format!("{what} answers (deprecated: see sluice_http_requests_total)");
        e.per_shard(shards, name, Kind::Counter, &help, |s| by_class(s)[class]);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use super::*;

    #[derive(Debug)]
    struct Sample {
        name: String,
        labels: BTreeMap<String, String>,
        value: f64,
    }

    fn parse_labels(text: &str) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        let mut rest = text;
        while !rest.is_empty() {
            let (name, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("label without =\": {rest:?}"));
            assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "label name {name:?}");
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => panic!("bad escape {other:?} in {text:?}"),
                    },
                    Some((at, '"')) => break at,
                    Some((_, '\n')) => panic!("raw newline in label value"),
                    Some((_, c)) => value.push(c),
                    None => panic!("unterminated label value in {text:?}"),
                }
            };
            assert!(labels.insert(name.to_owned(), value).is_none(), "label {name} twice");
            rest = &after[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or_else(|| {
                assert!(rest.is_empty(), "junk after label value: {rest:?}");
                rest
            });
        }
        labels
    }

    /// Checks the exposition rules a scraper relies on and returns the samples.
    fn parse_exposition(text: &str) -> Vec<Sample> {
        assert!(text.ends_with('\n'), "exposition must end with a newline");
        let mut families: BTreeMap<String, String> = BTreeMap::new();
        let mut current: Option<(String, String)> = None;
        let mut series = HashSet::new();
        let mut samples = Vec::new();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP has a name and text");
                assert!(!help.is_empty(), "{name}: empty help");
                let type_line = lines.next().expect("TYPE after HELP");
                let kind = type_line.strip_prefix(&format!("# TYPE {name} ")).unwrap_or_else(|| panic!("{type_line:?} after HELP {name}"));
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{name}: type {kind}");
                assert_eq!(kind == "counter", name.ends_with("_total"), "{name}: counters and only counters end in _total");
                assert!(families.insert(name.to_owned(), kind.to_owned()).is_none(), "{name} declared twice");
                current = Some((name.to_owned(), kind.to_owned()));
                continue;
            }
            assert!(!line.starts_with('#') && !line.is_empty(), "unexpected line {line:?}");
            let (series_text, value) = line.rsplit_once(' ').expect("sample has a value");
            let value: f64 = if value == "+Inf" { f64::INFINITY } else { value.parse().unwrap_or_else(|_| panic!("value {value:?}")) };
            let (name, labels) = match series_text.split_once('{') {
                Some((name, labels)) => (name, parse_labels(labels.strip_suffix('}').expect("labels end with }"))),
                None => (series_text, BTreeMap::new()),
            };
            let (family, kind) = current.as_ref().unwrap_or_else(|| panic!("sample {name} before any TYPE"));
            let suffix = name.strip_prefix(family.as_str()).unwrap_or_else(|| panic!("sample {name} under family {family}"));
            let allowed: &[&str] = if kind == "histogram" { &["_bucket", "_sum", "_count"] } else { &[""] };
            assert!(allowed.contains(&suffix), "sample {name} under {kind} {family}");
            assert!(series.insert(series_text.to_owned()), "series {series_text} twice");
            samples.push(Sample { name: name.to_owned(), labels, value });
        }
        samples
    }

    fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        samples.iter().find(|s| s.name == name && s.labels == wanted).map(|s| s.value)
    }

    fn busy_control() -> Control {
        let control = Control::new(2, std::sync::Arc::new(crate::topics::Topology::single(3, 1, 0)));
        let shard = &control.shards[1];
        shard.count_answer(PathLabel::Events, 202);
        shard.count_answer(PathLabel::Events, 202);
        shard.count_answer(PathLabel::Events, 401);
        shard.count_answer(PathLabel::Other, 404);
        shard.count_answer(PathLabel::Other, 418);
        shard.count_rejected(Reject::SignatureInvalid, 1);
        shard.count_proxy_header(ProxyHeaderLabel::Local);
        shard.count_proxy_rejected(ProxyReject::UntrustedSource);
        ShardStats::add(&shard.events_accepted, 2);
        for duration_ns in [5_000, 30_000, 30_000, 2_000_000, 3_000_000_000] {
            shard.latency.observe(duration_ns, 1);
        }
        control.end_offsets[2].store(7, Ordering::Relaxed);
        control
    }

    #[test]
    fn exposition_is_well_formed() {
        let samples = parse_exposition(&busy_control().render_metrics());
        let requests =
            |path: &str, status: &str| value(&samples, "sluice_http_requests_total", &[("shard", "1"), ("path", path), ("status", status)]);
        assert_eq!(requests("/v1/events", "202"), Some(2.0));
        assert_eq!(requests("/v1/events", "401"), Some(1.0));
        assert_eq!(requests("other", "other"), Some(1.0), "an unlisted status counts as other");
        assert_eq!(requests("/v1/events", "503"), None, "zero series outside the always-rendered set are left out");
        assert_eq!(
            value(&samples, "sluice_http_requests_total", &[("shard", "0"), ("path", "/healthz"), ("status", "200")]),
            Some(0.0),
            "common series are there from the start"
        );
        assert_eq!(value(&samples, "sluice_events_rejected_total", &[("shard", "1"), ("reason", "signature_invalid")]), Some(1.0));
        assert_eq!(value(&samples, "sluice_events_rejected_total", &[("shard", "0"), ("reason", "overloaded")]), Some(0.0));
        assert_eq!(value(&samples, "sluice_events_accepted_total", &[("shard", "1")]), Some(2.0));
        assert_eq!(value(&samples, "sluice_requests_total", &[("shard", "1")]), Some(5.0));
        assert_eq!(value(&samples, "sluice_responses_2xx_total", &[("shard", "1")]), Some(2.0));
        assert_eq!(value(&samples, "sluice_responses_4xx_total", &[("shard", "1")]), Some(2.0));
        assert_eq!(value(&samples, "sluice_responses_5xx_total", &[("shard", "1")]), Some(1.0));
        assert_eq!(value(&samples, "sluice_partition_end_offset", &[("topic", "events"), ("partition", "2")]), Some(7.0));
        assert_eq!(value(&samples, "sluice_ready", &[]), Some(0.0));
        assert_eq!(value(&samples, "sluice_io_uring_lockdown_active", &[]), Some(0.0));
        assert_eq!(value(&samples, "sluice_bytes_out_total", &[("shard", "0")]), Some(0.0));
        assert_eq!(value(&samples, "sluice_proxy_headers_total", &[("shard", "1"), ("version", "local")]), Some(1.0));
        assert_eq!(value(&samples, "sluice_proxy_headers_total", &[("shard", "0"), ("version", "v2")]), Some(0.0));
        let rejected = |reason: &str| value(&samples, "sluice_proxy_header_rejected_total", &[("shard", "1"), ("reason", reason)]);
        assert_eq!((rejected("untrusted_source"), rejected("timeout")), (Some(1.0), Some(0.0)));
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_count_equals_the_inf_bucket() {
        let samples = parse_exposition(&busy_control().render_metrics());
        let name = "sluice_http_request_duration_seconds";
        for shard in ["0", "1"] {
            let buckets: Vec<(f64, f64)> = samples
                .iter()
                .filter(|s| s.name == format!("{name}_bucket") && s.labels["shard"] == shard)
                .map(|s| {
                    let le = &s.labels["le"];
                    (if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() }, s.value)
                })
                .collect();
            assert_eq!(buckets.len(), LATENCY_BUCKET_BOUNDS_NS.len() + 1);
            for (bucket, bound_ns) in buckets.iter().zip(LATENCY_BUCKET_BOUNDS_NS) {
                assert_eq!(bucket.0, bound_ns as f64 / 1e9, "le label parses back to its bound");
            }
            assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{buckets:?}");
            assert_eq!(buckets.last().unwrap().0, f64::INFINITY);
            let count = value(&samples, &format!("{name}_count"), &[("shard", shard)]).unwrap();
            assert_eq!(count, buckets.last().unwrap().1);
            assert!(value(&samples, &format!("{name}_sum"), &[("shard", shard)]).is_some());
        }
        let bucket = |le: &str| value(&samples, &format!("{name}_bucket"), &[("shard", "1"), ("le", le)]).unwrap();
        assert_eq!(bucket("0.00001"), 1.0);
        assert_eq!(bucket("0.000025"), 1.0);
        assert_eq!(bucket("0.00005"), 3.0);
        assert_eq!(bucket("0.0025"), 4.0);
        assert_eq!(bucket("1"), 4.0);
        assert_eq!(bucket("+Inf"), 5.0);
        let sum = value(&samples, &format!("{name}_sum"), &[("shard", "1")]).unwrap();
        assert!((sum - 3.002_065).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut exposition = Exposition { out: String::new() };
        exposition.family("x_total", Kind::Counter, "a \\ b\nc \"q\"");
        exposition.sample("x_total", "", &[("path", "a\"b\\c\nd")], 1);
        assert_eq!(exposition.out, "# HELP x_total a \\\\ b\\nc \"q\"\n# TYPE x_total counter\nx_total{path=\"a\\\"b\\\\c\\nd\"} 1\n");
        let samples = parse_exposition(&exposition.out);
        assert_eq!(samples[0].labels["path"], "a\"b\\c\nd");
    }
}
