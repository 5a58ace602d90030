//! Request-id memory (SPEC §1.3, 409): an `X-Request-Id` or `webhook-id` is remembered
//! with a digest of its body and the answer it got, for twice the timestamp window (a
//! request signed at `now + tolerance` is valid until `now + 2 × tolerance`). A repeat
//! with the same body gets the original answer again; a different body gets 409
//! `request_id_conflict`; a repeat while the first is still being stored gets 409
//! `request_in_progress`.
//!
//! Ids are scoped to the partner that authenticated (two partners may use the same id).
//! The table is shared by every shard: a fixed number of stripes, each a mutex around a
//! hash map, touched once when a request with an id arrives and once when its answer is
//! known; requests without an id never touch it. Memory is bounded by an entry count and
//! by the bytes of remembered answers; past either bound the oldest entries go first and
//! are counted (`evicted`). Losing an entry early is safe: the repeat is processed again
//! and event_id dedup answers `duplicate` with the original offsets.
//!
//! Answers that ask for a retry (429, 503, a batch with overloaded lines) are not
//! remembered. Each shard appends remembered answers to its journal (see
//! [`crate::sidelog::journal`]), so the memory survives a restart.

use std::collections::{HashMap, VecDeque};
use std::hash::Hasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use siphasher::sip128::{Hasher128, SipHasher13};

use crate::sidelog::journal::JournalRecord;

/// Stripes of the table: enough that two shards rarely meet on one lock.
const STRIPES: usize = 64;
/// A claim whose answer never came (a crash of the request's path) is given up after this.
const IN_FLIGHT_STALE_MS: i64 = 60_000;
/// Bytes of bookkeeping per entry besides its answer, for the memory bound.
const ENTRY_OVERHEAD_BYTES: usize = 96;

/// The digest of a request's body (and path), compared on repeats.
pub type BodyDigest = [u8; 16];

/// A claimed id: where its entry lives, to complete or release it later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claimed {
    key: u128,
    digest: BodyDigest,
    claimed_ms: i64,
}

impl Claimed {
    /// When the entry's window ends.
    pub fn expires_ms(&self, window_ms: i64) -> i64 {
        self.claimed_ms + window_ms
    }

    pub fn digest(&self) -> BodyDigest {
        self.digest
    }
}

/// What the memory says about a request carrying an id.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// First time seen (or forgotten): process it, then `complete` or `release`.
    New(Claimed),
    /// Seen with the same body and answered: send this again.
    Repeat { status: u16, body: Box<[u8]> },
    /// Seen with another body.
    Conflict,
    /// Seen with the same body, not answered yet.
    InProgress,
}

#[derive(Debug)]
enum Entry {
    InFlight { digest: BodyDigest, claimed_ms: i64 },
    Done { digest: BodyDigest, status: u16, body: Box<[u8]> },
}

#[derive(Default)]
struct Stripe {
    entries: HashMap<u128, (i64, Entry)>,
    /// `(expires_ms, key)` in claim order, which is expiry order.
    order: VecDeque<(i64, u128)>,
    bytes: usize,
}

/// The shared table. See the module doc.
pub struct RequestIds {
    stripes: Box<[Mutex<Stripe>]>,
    hash_keys: (u64, u64),
    window_ms: i64,
    entries_per_stripe_max: usize,
    bytes_per_stripe_max: usize,
    /// Entries dropped before their window ended, to respect the bounds.
    pub evicted: AtomicU64,
    /// Repeats answered from memory.
    pub repeats: AtomicU64,
    /// Repeats refused with 409.
    pub conflicts: AtomicU64,
}

impl RequestIds {
    /// A table remembering ids for `window_ms`, holding at most `entries_max` ids and
    /// about `bytes_max` bytes of answers and bookkeeping.
    pub fn new(window_ms: i64, entries_max: usize, bytes_max: usize) -> RequestIds {
        let mut seed = [0u8; 16];
        // A random hash key per process: request ids are chosen by clients.
        if aws_lc_rs::rand::fill(&mut seed).is_err() {
            seed = (std::process::id() as u128 ^ crate::platform::time::now_unix_ms() as u128).to_le_bytes();
        }
        let (k0, k1) = seed.split_at(8);
        RequestIds {
            stripes: (0..STRIPES).map(|_| Mutex::new(Stripe::default())).collect(),
            hash_keys: (u64::from_le_bytes(k0.try_into().unwrap_or_default()), u64::from_le_bytes(k1.try_into().unwrap_or_default())),
            window_ms,
            entries_per_stripe_max: entries_max.div_ceil(STRIPES).max(1),
            bytes_per_stripe_max: bytes_max.div_ceil(STRIPES).max(1),
            evicted: AtomicU64::new(0),
            repeats: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
        }
    }

    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }

    fn key_of(&self, partner: &str, id: &[u8]) -> u128 {
        let mut hasher = SipHasher13::new_with_keys(self.hash_keys.0, self.hash_keys.1);
        hasher.write(partner.as_bytes());
        hasher.write_u8(0xff);
        hasher.write(id);
        hasher.finish128().as_u128()
    }

    fn stripe(&self, key: u128) -> std::sync::MutexGuard<'_, Stripe> {
        // A panic while holding a stripe cannot leave it inconsistent in a way that
        // matters more than losing the server, so a poisoned lock is simply taken.
        self.stripes[(key as usize) % STRIPES].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Looks `id` up for `partner` and claims it when new. `digest` is [`digest`] of the
    /// request.
    pub fn claim(&self, partner: &str, id: &[u8], digest: BodyDigest, now_ms: i64) -> Claim {
        let key = self.key_of(partner, id);
        let mut stripe = self.stripe(key);
        stripe.expire(now_ms);
        if let Some((_, entry)) = stripe.entries.get(&key) {
            let claim = match entry {
                Entry::InFlight { digest: seen, .. } | Entry::Done { digest: seen, .. } if *seen != digest => Claim::Conflict,
                Entry::InFlight { claimed_ms, .. } if now_ms - claimed_ms < IN_FLIGHT_STALE_MS => Claim::InProgress,
                Entry::InFlight { .. } => Claim::New(Claimed { key, digest, claimed_ms: now_ms }),
                Entry::Done { status, body, .. } => Claim::Repeat { status: *status, body: body.clone() },
            };
            match &claim {
                Claim::Repeat { .. } => self.repeats.fetch_add(1, Ordering::Relaxed),
                Claim::Conflict | Claim::InProgress => self.conflicts.fetch_add(1, Ordering::Relaxed),
                Claim::New(_) => 0,
            };
            if let Claim::New(claimed) = claim {
                // A stale claim is taken over: a new window, queued for expiry again.
                let expires_ms = now_ms + self.window_ms;
                stripe.entries.insert(key, (expires_ms, Entry::InFlight { digest, claimed_ms: now_ms }));
                stripe.order.push_back((expires_ms, key));
                return Claim::New(claimed);
            }
            return claim;
        }
        let expires_ms = now_ms + self.window_ms;
        stripe.entries.insert(key, (expires_ms, Entry::InFlight { digest, claimed_ms: now_ms }));
        stripe.order.push_back((expires_ms, key));
        stripe.bytes += ENTRY_OVERHEAD_BYTES;
        let evicted = stripe.bound(self.entries_per_stripe_max, self.bytes_per_stripe_max);
        self.evicted.fetch_add(evicted, Ordering::Relaxed);
        Claim::New(Claimed { key, digest, claimed_ms: now_ms })
    }

    /// Remembers the answer of a claimed request.
    pub fn complete(&self, claimed: Claimed, status: u16, body: &[u8]) {
        let mut stripe = self.stripe(claimed.key);
        let Some((_, entry)) = stripe.entries.get_mut(&claimed.key) else { return };
        if !matches!(entry, Entry::InFlight { claimed_ms, .. } if *claimed_ms == claimed.claimed_ms) {
            return;
        }
        *entry = Entry::Done { digest: claimed.digest, status, body: Box::from(body) };
        stripe.bytes += body.len();
        let evicted = stripe.bound(self.entries_per_stripe_max, self.bytes_per_stripe_max);
        self.evicted.fetch_add(evicted, Ordering::Relaxed);
    }

    /// Forgets a claimed request whose answer asks for a retry.
    pub fn release(&self, claimed: Claimed) {
        let mut stripe = self.stripe(claimed.key);
        if let Some((_, Entry::InFlight { claimed_ms, .. })) = stripe.entries.get(&claimed.key)
            && *claimed_ms == claimed.claimed_ms
        {
            stripe.entries.remove(&claimed.key);
        }
    }

    /// Puts back an answer read from a journal at start-up; `expires_ms` as journaled.
    pub fn restore(&self, record: &JournalRecord<'_>, now_ms: i64) {
        let expires_ms = record.expires_ms;
        if expires_ms <= now_ms {
            return;
        }
        let key = self.key_of(record.partner, record.id);
        let mut stripe = self.stripe(key);
        let body = record.body;
        let entry = Entry::Done { digest: record.digest, status: record.status, body: Box::from(body) };
        match stripe.entries.insert(key, (expires_ms, entry)) {
            Some((_, Entry::Done { body: old, .. })) => stripe.bytes = stripe.bytes.saturating_sub(ENTRY_OVERHEAD_BYTES + old.len()),
            Some((_, Entry::InFlight { .. })) => stripe.bytes = stripe.bytes.saturating_sub(ENTRY_OVERHEAD_BYTES),
            None => {}
        }
        stripe.order.push_back((expires_ms, key));
        stripe.bytes += ENTRY_OVERHEAD_BYTES + body.len();
        let evicted = stripe.bound(self.entries_per_stripe_max, self.bytes_per_stripe_max);
        self.evicted.fetch_add(evicted, Ordering::Relaxed);
    }

    /// Ids remembered now (including claims in flight).
    pub fn len(&self) -> usize {
        self.stripes.iter().map(|stripe| stripe.lock().map_or(0, |stripe| stripe.entries.len())).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Stripe {
    /// Drops entries whose window has passed.
    fn expire(&mut self, now_ms: i64) {
        while let Some(&(expires_ms, key)) = self.order.front() {
            if expires_ms > now_ms {
                break;
            }
            self.pop_front(key, expires_ms);
        }
    }

    /// Drops the oldest entries while over a bound; returns how many went early.
    fn bound(&mut self, entries_max: usize, bytes_max: usize) -> u64 {
        let mut evicted = 0;
        while self.entries.len() > entries_max || self.bytes > bytes_max {
            let Some(&(expires_ms, key)) = self.order.front() else { break };
            self.pop_front(key, expires_ms);
            evicted += 1;
        }
        evicted
    }

    fn pop_front(&mut self, key: u128, expires_ms: i64) {
        self.order.pop_front();
        // A restored entry may have been queued twice; only the matching expiry removes it.
        if self.entries.get(&key).is_some_and(|(expires, _)| *expires == expires_ms)
            && let Some((_, entry)) = self.entries.remove(&key)
        {
            let body = match entry {
                Entry::Done { body, .. } => body.len(),
                Entry::InFlight { .. } => 0,
            };
            self.bytes = self.bytes.saturating_sub(ENTRY_OVERHEAD_BYTES + body);
        }
    }
}

/// The digest a repeat is compared by: SHA-256 over the path and the body, truncated to
/// 128 bits (collisions would need a chosen-prefix attack by the authenticated partner).
pub fn digest(path: &[u8], body: &[u8]) -> BodyDigest {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(&(path.len() as u64).to_le_bytes());
    context.update(path);
    context.update(body);
    let mut out = [0u8; 16];
    out.copy_from_slice(&context.finish().as_ref()[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW_MS: i64 = 600_000;

    fn new_claim(ids: &RequestIds, partner: &str, id: &[u8], body: &[u8], now_ms: i64) -> Claimed {
        match ids.claim(partner, id, digest(b"/v1/events", body), now_ms) {
            Claim::New(claimed) => claimed,
            other => panic!("expected a new claim, got {other:?}"),
        }
    }

    #[test]
    fn repeats_replay_and_other_bodies_conflict() {
        let ids = RequestIds::new(WINDOW_MS, 1000, 1 << 20);
        let claimed = new_claim(&ids, "p", b"r1", b"body", 0);
        assert_eq!(ids.claim("p", b"r1", digest(b"/v1/events", b"body"), 1), Claim::InProgress);
        assert_eq!(ids.claim("p", b"r1", digest(b"/v1/events", b"other"), 1), Claim::Conflict);
        ids.complete(claimed, 202, b"{\"status\":\"accepted\"}");
        let repeat = ids.claim("p", b"r1", digest(b"/v1/events", b"body"), 2);
        assert_eq!(repeat, Claim::Repeat { status: 202, body: Box::from(&b"{\"status\":\"accepted\"}"[..]) });
        assert_eq!(ids.claim("p", b"r1", digest(b"/v1/events/batch", b"body"), 3), Claim::Conflict, "another path is another request");
        new_claim(&ids, "q", b"r1", b"other", 4);
        assert_eq!(ids.repeats.load(Ordering::Relaxed), 1);
        assert_eq!(ids.conflicts.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn entries_expire_after_the_window_and_releases_forget() {
        let ids = RequestIds::new(WINDOW_MS, 1000, 1 << 20);
        let claimed = new_claim(&ids, "p", b"r", b"b", 0);
        ids.complete(claimed, 202, b"x");
        assert!(matches!(ids.claim("p", b"r", digest(b"/v1/events", b"b"), WINDOW_MS - 1), Claim::Repeat { .. }));
        new_claim(&ids, "p", b"r", b"b", WINDOW_MS);
        let retry = new_claim(&ids, "p", b"s", b"b", 0);
        ids.release(retry);
        new_claim(&ids, "p", b"s", b"b", 1);
        // A claim whose answer never came stops blocking after IN_FLIGHT_STALE_MS.
        new_claim(&ids, "p", b"t", b"b", 0);
        assert_eq!(ids.claim("p", b"t", digest(b"/v1/events", b"b"), 1), Claim::InProgress);
        new_claim(&ids, "p", b"t", b"b", IN_FLIGHT_STALE_MS);
        // The taken-over claim still expires (it was queued again), so nothing leaks.
        assert_eq!(ids.claim("p", b"t", digest(b"/v1/events", b"b"), IN_FLIGHT_STALE_MS + 1), Claim::InProgress);
        let key = ids.key_of("p", b"t");
        // Past every entry's expiry: the stripe's queue is in claim order, so an entry
        // of another id that shares the stripe (random hash keys, 1 in STRIPES) and
        // expires later holds the queue until then.
        ids.stripe(key).expire(IN_FLIGHT_STALE_MS + 2 * WINDOW_MS);
        assert!(!ids.stripe(key).entries.contains_key(&key), "the taken-over claim expired");
    }

    #[test]
    fn bounds_evict_the_oldest_first() {
        let ids = RequestIds::new(WINDOW_MS, STRIPES * 4, usize::MAX / 2);
        for n in 0..(STRIPES * 40) as i64 {
            let claimed = new_claim(&ids, "p", n.to_string().as_bytes(), b"b", n);
            ids.complete(claimed, 202, b"x");
        }
        assert!(ids.len() <= STRIPES * 4, "{} entries", ids.len());
        assert!(ids.evicted.load(Ordering::Relaxed) >= (STRIPES * 36) as u64);
        let newest = (STRIPES * 40 - 1).to_string();
        assert!(matches!(ids.claim("p", newest.as_bytes(), digest(b"/v1/events", b"b"), 10_000), Claim::Repeat { .. }));
        let small = RequestIds::new(WINDOW_MS, 1_000_000, STRIPES * 1024);
        for n in 0..1000 {
            let claimed = new_claim(&small, "p", format!("{n}").as_bytes(), b"b", n);
            small.complete(claimed, 200, &[b'a'; 4096]);
        }
        assert!(small.len() < 1000 && small.evicted.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn restored_answers_replay_until_they_expire() {
        let ids = RequestIds::new(WINDOW_MS, 1000, 1 << 20);
        let body_digest = digest(b"/v1/events", b"b");
        let record = |id: &'static [u8], expires_ms| JournalRecord {
            expires_ms,
            status: 202,
            digest: body_digest,
            partner: "p",
            id,
            body: b"answer",
        };
        ids.restore(&record(b"r", 5_000), 1_000);
        ids.restore(&record(b"old", 500), 1_000);
        assert!(matches!(ids.claim("p", b"r", body_digest, 4_999), Claim::Repeat { status: 202, .. }));
        assert!(matches!(ids.claim("p", b"old", body_digest, 1_000), Claim::New(_)));
        assert!(matches!(ids.claim("p", b"r", body_digest, 5_000), Claim::New(_)));
    }
}
