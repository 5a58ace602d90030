//! Overload (SPEC §7, docs/OPERATIONS.md § Overload): one memory budget for the whole
//! process, each shard's pressure, and the cheap look at a body that lets a shard refuse
//! an optional event before it spends a signature check on it.
//!
//! **The budget** counts what clients make the server hold: the bodies of requests still
//! being received (reserved a step of [`BODY_STEP_BYTES`] ahead of what has arrived, up to
//! what the head announced, so a sender holds the budget with the bytes it sent, never
//! with a promise), connection buffers (answers
//! waiting to leave, consumer streams, requests buffered behind a parked one) and the
//! side logs' buffers, sampled by each shard every tick. A body the budget cannot hold
//! is answered 503 `overloaded` with `Retry-After` and its connection closed; a request
//! that arrives whole in one read needs no reservation, so small events keep flowing
//! while slow senders fill the budget. Bodies over [`LARGE_BODY_BYTES`] may use only
//! three quarters of it, keeping room for the rest (and for what the tick samples late).
//!
//! **Pressure** is how busy a shard's loop is: the share of wall time it spent working
//! rather than waiting for completions, over windows of [`WINDOW_MS`]. Above
//! [`SHED_ON`] the shard refuses events of optional topics (`optional = true`) with 503
//! until the share falls under [`SHED_OFF`]; money events are never refused for being
//! busy, only when the budget, the partition owner's queue or storage cannot take them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A body larger than this is "large": it may fill only 3/4 of the budget.
pub const LARGE_BODY_BYTES: u64 = 64 * 1024;
/// Bodies being received are reserved this far ahead of their bytes (one receive is at
/// most a quarter of it).
pub const BODY_STEP_BYTES: u64 = 64 * 1024;
/// Length of one pressure window.
pub const WINDOW_MS: u64 = 50;
/// Busy share at which a shard starts refusing optional events...
pub const SHED_ON: f64 = 0.90;
/// ...and under which it stops.
pub const SHED_OFF: f64 = 0.70;
/// Budget use (of the limit) at which optional events are refused whatever the CPU does.
pub const SHED_MEMORY_SHARE: f64 = 0.80;

/// The process-wide memory budget.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    /// Bodies being received, a step ahead of their bytes.
    reserved: AtomicU64,
    /// Buffers sampled by the shards (each adds the change of its own sample).
    sampled: AtomicU64,
    /// Bodies refused because the budget could not hold them.
    pub refused: AtomicU64,
    /// The highest use seen.
    pub peak: AtomicU64,
}

impl MemoryBudget {
    pub fn new(limit: u64) -> MemoryBudget {
        MemoryBudget { limit, reserved: AtomicU64::new(0), sampled: AtomicU64::new(0), refused: AtomicU64::new(0), peak: AtomicU64::new(0) }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn used(&self) -> u64 {
        self.reserved.load(Ordering::Relaxed) + self.sampled.load(Ordering::Relaxed)
    }

    /// Reserves `bytes` more for a body of `body_bytes` (announced, or as far as known);
    /// false (nothing reserved) when the budget cannot hold them.
    pub fn try_reserve(&self, bytes: u64, body_bytes: u64) -> bool {
        let limit = if body_bytes > LARGE_BODY_BYTES { self.limit / 4 * 3 } else { self.limit };
        let before = self.reserved.fetch_add(bytes, Ordering::Relaxed);
        let used = before + bytes + self.sampled.load(Ordering::Relaxed);
        if used > limit {
            self.reserved.fetch_sub(bytes, Ordering::Relaxed);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.peak.fetch_max(used, Ordering::Relaxed);
        true
    }

    pub fn release(&self, bytes: u64) {
        if bytes > 0 {
            self.reserved.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// A shard's sampled buffers went from `before` to `now` bytes.
    pub fn resample(&self, before: u64, now: u64) {
        if now >= before {
            self.sampled.fetch_add(now - before, Ordering::Relaxed);
        } else {
            self.sampled.fetch_sub(before - now, Ordering::Relaxed);
        }
    }

    /// Past [`SHED_MEMORY_SHARE`] of the limit: optional events are refused.
    pub fn tight(&self) -> bool {
        self.used() as f64 > self.limit as f64 * SHED_MEMORY_SHARE
    }
}

/// One shard's busy share, measured per window, with hysteresis.
#[derive(Debug, Default)]
pub struct Pressure {
    window_start_ns: u64,
    busy_ns: u64,
    /// The busy share of the last whole window, in thousandths (for /metrics).
    pub last_share_milli: u64,
    shedding: bool,
}

impl Pressure {
    /// Counts one loop turn's work, from `started_ns` to `ended_ns`; returns whether the
    /// shard now sheds optional events.
    pub fn turn(&mut self, started_ns: u64, ended_ns: u64) -> bool {
        if self.window_start_ns == 0 {
            self.window_start_ns = started_ns;
        }
        self.busy_ns += ended_ns.saturating_sub(started_ns);
        let elapsed = ended_ns.saturating_sub(self.window_start_ns);
        if elapsed >= WINDOW_MS * 1_000_000 {
            let share = self.busy_ns as f64 / elapsed as f64;
            self.last_share_milli = (share * 1000.0) as u64;
            self.shedding = if self.shedding { share >= SHED_OFF } else { share >= SHED_ON };
            self.window_start_ns = ended_ns;
            self.busy_ns = 0;
        }
        self.shedding
    }

    pub fn shedding(&self) -> bool {
        self.shedding
    }
}

/// Upper bounds (ns) of the loop-turn duration histogram's buckets; a last bucket is +Inf.
pub const TURN_BUCKET_BOUNDS_NS: [u64; 8] = [100_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000, 50_000_000, 100_000_000];

/// Per shard, what /metrics shows of its pressure.
#[derive(Debug, Default)]
pub struct ShardPressure {
    pub busy_milli: AtomicU64,
    pub shedding: AtomicBool,
    pub buffers_bytes: AtomicU64,
    /// Loop turns by how long their work took (the time a request framed in a turn can
    /// wait for it): counts per [`TURN_BUCKET_BOUNDS_NS`] bucket, then +Inf.
    pub turns: [AtomicU64; TURN_BUCKET_BOUNDS_NS.len() + 1],
    pub turns_ns: AtomicU64,
}

impl ShardPressure {
    /// Counts one loop turn that worked for `ns`.
    pub fn count_turn(&self, ns: u64) {
        let bucket = TURN_BUCKET_BOUNDS_NS.iter().position(|bound| ns <= *bound).unwrap_or(TURN_BUCKET_BOUNDS_NS.len());
        self.turns[bucket].fetch_add(1, Ordering::Relaxed);
        self.turns_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

/// How much of a body [`sniff_event_type`] looks at: the envelope's fields come first
/// in practice; a body that puts `event_type` later is judged by the full check.
pub const SNIFF_BYTES_MAX: usize = 4096;

/// The `event_type` of a single-event body, found without parsing it: the string value
/// of an `"event_type"` key of the top-level object, within the first
/// [`SNIFF_BYTES_MAX`] bytes, or `None` when unsure (an escape in it, or not found). A
/// guess, used only to refuse an optional event early; nothing is stored on it, and an
/// event it cannot read goes to the full check.
pub fn sniff_event_type(body: &[u8]) -> Option<&[u8]> {
    let body = &body[..body.len().min(SNIFF_BYTES_MAX)];
    let mut depth = 0u32;
    let mut top_is_object = false;
    let mut at = 0;
    while at < body.len() {
        match body[at] {
            b'{' | b'[' => {
                top_is_object |= depth == 0 && body[at] == b'{';
                depth += 1;
            }
            b'}' | b']' => depth = depth.checked_sub(1)?,
            b'"' => {
                let end = string_end(body, at + 1)?;
                let text = &body[at + 1..end];
                at = end + 1;
                let after = body[at..].trim_ascii_start();
                if depth == 1 && top_is_object && text == b"event_type" && after.first() == Some(&b':') {
                    let value = after[1..].trim_ascii_start().strip_prefix(b"\"")?;
                    let close = value.iter().position(|byte| *byte == b'"' || *byte == b'\\')?;
                    return (value[close] == b'"').then(|| &value[..close]);
                }
                continue;
            }
            _ => {}
        }
        at += 1;
    }
    None
}

/// The index of the quote that closes the string whose text starts at `from`.
fn string_end(body: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while at < body.len() {
        match body[at] {
            b'\\' => at += 2,
            b'"' => return Some(at),
            _ => at += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refuses_what_it_cannot_hold_and_keeps_room_for_small_bodies() {
        let budget = MemoryBudget::new(800);
        assert!(budget.try_reserve(600, 100_000), "large bodies may fill 3/4");
        assert!(!budget.try_reserve(1, 100_000), "a large body past 3/4 is refused");
        assert!(budget.try_reserve(200, 100), "a small body still fits");
        assert!(!budget.try_reserve(1, 1), "past the limit nothing fits");
        assert_eq!(budget.refused.load(Ordering::Relaxed), 2);
        assert_eq!(budget.used(), 800);
        budget.release(600);
        budget.resample(0, 500);
        assert!(budget.tight(), "700 of 800 used");
        assert!(!budget.try_reserve(101, 1), "sampled buffers count too");
        budget.resample(500, 0);
        budget.release(200);
        assert_eq!(budget.used(), 0);
        assert_eq!(budget.peak.load(Ordering::Relaxed), 800);
    }

    #[test]
    fn pressure_sheds_above_the_high_mark_and_stops_under_the_low_one() {
        let mut pressure = Pressure::default();
        let ms = 1_000_000;
        // Busy 95 % of a window.
        let mut t = ms;
        for _ in 0..40 {
            pressure.turn(t, t + ms * 95 / 40);
            t += ms * 5 / 2;
        }
        assert!(pressure.shedding(), "{}", pressure.last_share_milli);
        // 80 %: above the low mark, still shedding.
        for _ in 0..40 {
            pressure.turn(t, t + ms * 2);
            t += ms * 5 / 2;
        }
        assert!(pressure.shedding(), "hysteresis: {}", pressure.last_share_milli);
        // 40 %: stops.
        for _ in 0..40 {
            pressure.turn(t, t + ms);
            t += ms * 5 / 2;
        }
        assert!(!pressure.shedding(), "{}", pressure.last_share_milli);
    }

    #[test]
    fn the_event_type_is_sniffed_or_left_unknown() {
        assert_eq!(sniff_event_type(br#"{"event_id":"e1","event_type":"telemetry","x":1}"#), Some(&b"telemetry"[..]));
        assert_eq!(sniff_event_type(br#"{"event_type" : "bet"}"#), Some(&b"bet"[..]));
        assert_eq!(sniff_event_type(br#"{"event_type":"b\"et"}"#), None, "an escape is left to the parser");
        assert_eq!(sniff_event_type(br#"{"event_type":1}"#), None);
        assert_eq!(sniff_event_type(br#"{"event_type":"unterminated"#), None);
        assert_eq!(sniff_event_type(b""), None);
        // Only the top-level key counts: a nested one (or one inside a string) is not it.
        let nested = br#"{"payload":{"event_type":"telemetry"},"note":"\"event_type\":\"x\"","event_type":"bet"}"#;
        assert_eq!(sniff_event_type(nested), Some(&b"bet"[..]));
        assert_eq!(sniff_event_type(br#"{"payload":{"event_type":"telemetry"}}"#), None);
        assert_eq!(sniff_event_type(br#"["event_type":"x"]"#), None, "not in an object at depth 1");
        let late = format!(r#"{{"pad":"{}","event_type":"telemetry"}}"#, "x".repeat(SNIFF_BYTES_MAX));
        assert_eq!(sniff_event_type(late.as_bytes()), None, "past the bytes looked at");
    }
}
