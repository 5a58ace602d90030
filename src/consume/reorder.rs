//! The reorder window of a subscription stream (`reorder_window_ms`, the article §5:
//! per-key order with a 60–120 s window, late events as corrections), in the model of
//! Flink's bounded-out-of-orderness watermarks with a side output for late data.
//!
//! Per partition, events read from the log are held, ordered by `(occurred_at, offset)`.
//! The partition's watermark is `frontier - window`, where the frontier is the newest
//! ingest time read from the partition or, once the stream has read everything there is
//! (an idle partition), the wall clock. Held events with `occurred_at <= watermark` are
//! released in `occurred_at` order, so each key's events come in `occurred_at` order.
//! An event older than what its key was already given is not held: it goes out at once
//! with `"late": true`.
//!
//! Commits never pass a held event: the cursor a batch carries is the offset below the
//! oldest held one, so a restart or a rebalance reads held events again instead of
//! losing them. The hold is bounded (`REORDER_HELD_EVENTS_MAX` events over every
//! partition of the stream): past it the oldest are released early, and the per-key
//! memory forgets keys whose last event is older than the watermark by another window.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hasher;

use crate::constants::{REORDER_HELD_BYTES_MAX, REORDER_HELD_EVENTS_MAX};

/// An event on its way out of the hold.
pub struct Release<'a> {
    pub offset: u64,
    pub event: &'a [u8],
    pub late: bool,
}

struct Held {
    key: u64,
    event: Box<[u8]>,
}

#[derive(Default)]
struct Partition {
    /// `(occurred_at_ms, offset)` → event.
    held: BTreeMap<(i64, u64), Held>,
    /// Late events to send at once: `(offset, event)`.
    late: Vec<(u64, Box<[u8]>)>,
    /// Newest ingest time read.
    frontier_ms: i64,
}

pub struct Reorder {
    window_ms: i64,
    partitions: HashMap<u32, Partition>,
    /// Per key (SipHash of `key.user_id`): the newest `occurred_at` released.
    given: HashMap<u64, i64>,
    /// Events held and late ones not sent yet, over every partition, and their bytes.
    held_total: usize,
    held_bytes: usize,
    /// Events released before their watermark because the hold was full.
    pub forced: u64,
    pub late_total: u64,
}

impl Reorder {
    pub fn new(window_ms: u64) -> Reorder {
        Reorder {
            window_ms: i64::try_from(window_ms).unwrap_or(i64::MAX),
            partitions: HashMap::new(),
            given: HashMap::new(),
            held_total: 0,
            held_bytes: 0,
            forced: 0,
            late_total: 0,
        }
    }

    /// Keeps only the partitions `keep` says yes to (after a rebalance).
    pub fn retain(&mut self, mut keep: impl FnMut(u32) -> bool) {
        let (mut dropped, mut dropped_bytes) = (0, 0);
        self.partitions.retain(|slot, partition| {
            let kept = keep(*slot);
            if !kept {
                dropped += partition.held.len() + partition.late.len();
                dropped_bytes += partition.held.values().map(|held| held.event.len()).sum::<usize>()
                    + partition.late.iter().map(|(_, event)| event.len()).sum::<usize>();
            }
            kept
        });
        self.held_total -= dropped;
        self.held_bytes -= dropped_bytes;
    }

    /// Whether more events may be read into the hold.
    pub fn has_room(&self) -> bool {
        self.held_total < REORDER_HELD_EVENTS_MAX && self.held_bytes < REORDER_HELD_BYTES_MAX
    }

    /// Takes one event read from `slot`'s log.
    pub fn hold(&mut self, slot: u32, offset: u64, ingest_ms: i64, event: &[u8]) {
        let (occurred_ms, key) = occurred_and_key(event).unwrap_or((ingest_ms, 0));
        let partition = self.partitions.entry(slot).or_default();
        partition.frontier_ms = partition.frontier_ms.max(ingest_ms);
        self.held_total += 1;
        self.held_bytes += event.len();
        if self.given.get(&key).is_some_and(|given| occurred_ms < *given) {
            partition.late.push((offset, Box::from(event)));
            return;
        }
        partition.held.insert((occurred_ms, offset), Held { key, event: Box::from(event) });
    }

    /// Releases at most `limit` events of `slot` that are due (late ones first), oldest
    /// `occurred_at` first. `caught_up`: the stream has read the partition to its end, so
    /// the wall clock moves the watermark.
    pub fn release(&mut self, slot: u32, _position: u64, caught_up: bool, wall_ms: i64, limit: usize, mut emit: impl FnMut(Release<'_>)) {
        let Some(partition) = self.partitions.get_mut(&slot) else { return };
        let mut released = 0;
        let late: Vec<(u64, Box<[u8]>)> = partition.late.drain(..partition.late.len().min(limit)).collect();
        for (offset, event) in &late {
            emit(Release { offset: *offset, event, late: true });
            released += 1;
            self.late_total += 1;
            self.held_total -= 1;
            self.held_bytes -= event.len();
        }
        let frontier = if caught_up { partition.frontier_ms.max(wall_ms) } else { partition.frontier_ms };
        let watermark = frontier.saturating_sub(self.window_ms);
        // A full hold lets its oldest go early (up to `limit`): reading has stopped,
        // so the watermark would not move on its own.
        let full = self.held_total >= REORDER_HELD_EVENTS_MAX || self.held_bytes >= REORDER_HELD_BYTES_MAX;
        while released < limit {
            let Some(entry) = partition.held.first_entry() else { break };
            let (occurred_ms, offset) = *entry.key();
            let forced = full;
            if occurred_ms > watermark && !forced {
                break;
            }
            let held = entry.remove();
            self.held_total -= 1;
            self.held_bytes -= held.event.len();
            if forced && occurred_ms > watermark {
                self.forced += 1;
            }
            let given = self.given.entry(held.key).or_insert(i64::MIN);
            *given = (*given).max(occurred_ms);
            emit(Release { offset, event: &held.event, late: false });
            released += 1;
        }
        if self.given.len() > 4 * REORDER_HELD_EVENTS_MAX {
            let forget = watermark.saturating_sub(self.window_ms);
            self.given.retain(|_, given| *given >= forget);
        }
    }

    /// The next offset of `slot` a commit may not pass: the oldest held (or late, not
    /// yet sent) event's, else `position` (everything read was sent).
    pub fn safe_next(&self, slot: u32, position: u64) -> u64 {
        let Some(partition) = self.partitions.get(&slot) else { return position };
        let held = partition.held.keys().map(|(_, offset)| *offset).min();
        let late = partition.late.iter().map(|(offset, _)| *offset).min();
        held.into_iter().chain(late).fold(position, u64::min)
    }

    /// Late and early-released events since the last call.
    pub fn take_counts(&mut self) -> (u64, u64) {
        (std::mem::take(&mut self.late_total), std::mem::take(&mut self.forced))
    }

    /// Whether `slot` has events held or late ones waiting.
    pub fn holds(&self, slot: u32) -> bool {
        self.partitions.get(&slot).is_some_and(|partition| !partition.held.is_empty() || !partition.late.is_empty())
    }

    /// Events held over every partition.
    pub fn held(&self) -> usize {
        self.held_total
    }
}

/// `occurred_at` (Unix ms) and a 64-bit hash of `key.user_id` of a stored event.
fn occurred_and_key(event: &[u8]) -> Option<(i64, u64)> {
    let fields: super::read::StoredKey<'_> = serde_json::from_slice(event).ok()?;
    let occurred = crate::platform::time::parse_rfc3339_ms(fields.occurred_at?.as_bytes())?;
    let mut hasher = siphasher::sip::SipHasher13::new_with_keys(0x736c_7569_6365, 0x0072_656f_7264_6572);
    hasher.write(fields.key.user_id.as_bytes());
    Some((occurred, hasher.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(user: &str, second: u32) -> Vec<u8> {
        format!(r#"{{"event_id":"e","key":{{"user_id":"{user}"}},"occurred_at":"2026-01-01T00:00:{second:02}Z"}}"#).into_bytes()
    }

    const BASE_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn released(reorder: &mut Reorder, wall_ms: i64) -> Vec<(u64, bool)> {
        let mut out = Vec::new();
        reorder.release(0, 0, true, wall_ms, 1000, |release| out.push((release.offset, release.late)));
        out
    }

    #[test]
    fn holds_until_the_window_passes_then_releases_in_occurred_order() {
        let mut reorder = Reorder::new(10_000);
        reorder.hold(0, 0, BASE_MS + 5_000, &event("u1", 5));
        reorder.hold(0, 1, BASE_MS + 6_000, &event("u1", 2));
        assert_eq!(released(&mut reorder, BASE_MS + 7_000), []);
        assert_eq!(reorder.safe_next(0, 2), 0, "a commit may not pass a held event");
        assert_eq!(released(&mut reorder, BASE_MS + 16_000), [(1, false), (0, false)]);
        assert_eq!(reorder.safe_next(0, 2), 2);
        // Older than what u1 already got: at once, late; another key is held as usual.
        reorder.hold(0, 2, BASE_MS + 17_000, &event("u1", 1));
        reorder.hold(0, 3, BASE_MS + 17_000, &event("u2", 1));
        assert_eq!(released(&mut reorder, BASE_MS + 17_000), [(2, true), (3, false)]);
    }

    #[test]
    fn the_hold_is_bounded() {
        let mut reorder = Reorder::new(600_000);
        for offset in 0..REORDER_HELD_EVENTS_MAX as u64 {
            assert!(reorder.has_room());
            reorder.hold(0, offset, BASE_MS, &event("u", 30));
        }
        assert!(!reorder.has_room(), "a full hold stops the reading");
        let mut out = Vec::new();
        reorder.release(0, 0, true, BASE_MS, 10, |release| out.push(release.offset));
        assert_eq!(out, (0..10).collect::<Vec<u64>>(), "the oldest go early, in order");
        assert_eq!(reorder.forced, 10);
        assert_eq!(reorder.held(), REORDER_HELD_EVENTS_MAX - 10);
    }
}
