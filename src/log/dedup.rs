//! The exact per-partition `event_id` index behind SPEC §2's "exactly-once per `event_id`
//! within a partition for the dedup window".
//!
//! Each id is stored as its 128-bit keyed SipHash-1-3, never as its bytes. The key is a
//! per-data-directory secret, so a producer cannot compute which ids collide. Two
//! distinct ids share a 128-bit hash with probability 2^-128; with `n` ids in a window the
//! chance that any pair collides is at most n²/2^129, about 1.5e-27 for a full default
//! window of one million ids. A collision would make a new event read as a duplicate of
//! an older one; at these odds that is below the rate of undetected hardware faults.
//!
//! Layout: a ring of `(hash, offset)` entries in insertion (= offset) order, and a
//! `hashbrown` table of ring positions keyed by the hash. The ring gives FIFO eviction
//! and `evict_below` by offset; the table gives O(1) lookup. Storing 4-byte positions in
//! the table instead of `(u128, u64)` pairs keeps memory at [`DedupIndex::BYTES_PER_ID`],
//! about 40 % of a `HashMap<u128, u64>` plus a `VecDeque<u128>` at the same bound.

use std::collections::VecDeque;

use hashbrown::HashTable;
use siphasher::sip128::SipHasher13;

/// One remembered id: its keyed hash (two words, so the entry is 8-byte aligned and
/// 24 bytes rather than a 16-byte-aligned 32) and the offset of the stored original.
#[derive(Clone, Copy, Debug)]
struct Entry {
    hash: [u64; 2],
    offset: u64,
}

/// Smallest growth step for the ring and the table, so a fresh partition does not
/// reallocate on each of its first few inserts.
const GROWTH_IDS_MIN: usize = 64;

/// The ids stored in one partition during its dedup window, each mapped to the offset of
/// the stored original. Memory grows with use and never beyond `ids_max` ids.
pub struct DedupIndex {
    hasher: SipHasher13,
    ids_max: usize,
    /// Entries oldest first. An entry whose id was inserted again later is stale: the
    /// table points at the newer entry, and popping the stale one leaves the id in place.
    ring: VecDeque<Entry>,
    /// Sequence number (wrapping) of `ring.front()`; entry `i` of the ring has `head + i`.
    head: u32,
    /// Sequence numbers of the live entries, hashed by `Entry::hash[0]`.
    table: HashTable<u32>,
    evicted_early: u64,
}

impl DedupIndex {
    /// Upper bound on the memory one remembered id costs once the index holds `ids_max`
    /// ids: a 24-byte ring entry, plus a table bucket (a 4-byte position and a 1-byte
    /// control byte) times the buckets per id. The table's bucket count is the smallest
    /// power of two whose 7/8 holds the ids, so there are fewer than 16/7 buckets per id:
    /// 5 × 16/7 < 12 bytes. A full default partition (1 000 000 ids) uses 34.5 MB; the
    /// `dedup_index_memory_stays_within_bytes_per_id` test checks the bound.
    pub const BYTES_PER_ID: usize = size_of::<Entry>() + 12;

    /// An empty index that will remember at most `ids_max` ids (0 disables it: nothing
    /// is remembered). `key` is the per-data-directory SipHash key. Allocates nothing
    /// until the first insert. `ids_max` must fit in a `u32`.
    pub fn new(key: [u8; 16], ids_max: usize) -> DedupIndex {
        assert!(u32::try_from(ids_max).is_ok(), "ids_max {ids_max} exceeds u32::MAX");
        let (key0, key1) = key.split_at(8);
        let key0 = u64::from_le_bytes(key0.try_into().expect("8 bytes"));
        let key1 = u64::from_le_bytes(key1.try_into().expect("8 bytes"));
        DedupIndex {
            hasher: SipHasher13::new_with_keys(key0, key1),
            ids_max,
            ring: VecDeque::new(),
            head: 0,
            table: HashTable::new(),
            evicted_early: 0,
        }
    }

    fn hash(&self, event_id: &[u8]) -> [u64; 2] {
        let hash = self.hasher.hash(event_id);
        [hash.h1, hash.h2]
    }

    /// The offset of the stored event with this `event_id`, if it is in the window.
    pub fn get(&self, event_id: &[u8]) -> Option<u64> {
        let hash = self.hash(event_id);
        let (ring, head) = (&self.ring, self.head);
        let seq = self.table.find(hash[0], |&seq| ring[position(seq, head)].hash == hash)?;
        Some(ring[position(*seq, head)].offset)
    }

    /// Remembers `event_id` as stored at `offset`. Offsets must increase from one insert
    /// to the next. If the index already holds `ids_max` entries, the oldest is forgotten
    /// first and counted in [`DedupIndex::evicted_early`]. Inserting an id that is
    /// already present moves it to `offset`.
    pub fn insert(&mut self, event_id: &[u8], offset: u64) {
        if self.ids_max == 0 {
            return;
        }
        if let Some(newest) = self.ring.back() {
            assert!(offset > newest.offset, "offset {offset} after {}", newest.offset);
        }
        if self.ring.len() == self.ids_max && self.pop_oldest() {
            self.evicted_early += 1;
        }
        self.grow_if_full();
        let hash = self.hash(event_id);
        self.ring.push_back(Entry { hash, offset });
        let seq = self.head.wrapping_add((self.ring.len() - 1) as u32);
        let (ring, head) = (&self.ring, self.head);
        match self.table.find_mut(hash[0], |&old| ring[position(old, head)].hash == hash) {
            Some(old) => *old = seq,
            None => {
                self.table.insert_unique(hash[0], seq, |&seq| ring[position(seq, head)].hash[0]);
            }
        }
    }

    /// Forgets every id stored before `offset` (the window's start moved).
    pub fn evict_below(&mut self, offset: u64) {
        while self.ring.front().is_some_and(|oldest| oldest.offset < offset) {
            self.pop_oldest();
        }
    }

    /// Number of distinct ids remembered.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Ids forgotten because the index was full (`ids_max`) rather than because the
    /// window moved: each is a duplicate that would no longer be caught.
    pub fn evicted_early(&self) -> u64 {
        self.evicted_early
    }

    /// Pops the oldest ring entry; returns whether it was a live id (not a stale entry
    /// of an id inserted again later).
    fn pop_oldest(&mut self) -> bool {
        let Some(oldest) = self.ring.pop_front() else {
            return false;
        };
        let seq = self.head;
        self.head = self.head.wrapping_add(1);
        match self.table.find_entry(oldest.hash[0], |&live| live == seq) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }

    /// Grows the ring and the table ahead of an insert, by at least [`GROWTH_IDS_MIN`],
    /// doubling otherwise, and never past `ids_max` entries.
    fn grow_if_full(&mut self) {
        let len = self.ring.len();
        let additional = len.max(GROWTH_IDS_MIN).min(self.ids_max - len);
        if len == self.ring.capacity() {
            self.ring.reserve_exact(additional);
        }
        if self.table.len() == self.table.capacity() {
            let (ring, head) = (&self.ring, self.head);
            self.table.reserve(additional, |&seq| ring[position(seq, head)].hash[0]);
        }
    }
}

/// Index into the ring of the entry with sequence number `seq`.
fn position(seq: u32, head: u32) -> usize {
    seq.wrapping_sub(head) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 16] = *b"0123456789abcdef";

    fn id(n: u64) -> Vec<u8> {
        format!("e_{n}").into_bytes()
    }

    #[test]
    fn insert_then_get_returns_original_offset() {
        let mut index = DedupIndex::new(KEY, 100);
        assert!(index.is_empty());
        index.insert(b"e_1", 10);
        index.insert(b"e_2", 11);
        assert_eq!(index.get(b"e_1"), Some(10));
        assert_eq!(index.get(b"e_2"), Some(11));
        assert_eq!(index.get(b"e_3"), None);
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn different_keys_hash_differently() {
        let a = DedupIndex::new(KEY, 1);
        let b = DedupIndex::new(*b"fedcba9876543210", 1);
        assert_ne!(a.hash(b"e_1"), b.hash(b"e_1"));
    }

    #[test]
    fn full_index_evicts_oldest_first_and_counts_it() {
        let mut index = DedupIndex::new(KEY, 3);
        for n in 0..5 {
            index.insert(&id(n), n);
        }
        assert_eq!(index.len(), 3);
        assert_eq!(index.evicted_early(), 2);
        assert_eq!(index.get(&id(0)), None);
        assert_eq!(index.get(&id(1)), None);
        for n in 2..5 {
            assert_eq!(index.get(&id(n)), Some(n));
        }
    }

    #[test]
    fn evict_below_forgets_older_ids_without_counting() {
        let mut index = DedupIndex::new(KEY, 100);
        for n in 0..10 {
            index.insert(&id(n), n * 10);
        }
        index.evict_below(45);
        assert_eq!(index.len(), 5);
        assert_eq!(index.get(&id(4)), None);
        assert_eq!(index.get(&id(5)), Some(50));
        assert_eq!(index.evicted_early(), 0);
        index.evict_below(1000);
        assert!(index.is_empty());
    }

    #[test]
    fn reinserted_id_survives_eviction_of_its_stale_entry() {
        let mut index = DedupIndex::new(KEY, 3);
        index.insert(b"a", 1);
        index.insert(b"b", 2);
        index.insert(b"a", 3); // ring: a(stale) b a
        assert_eq!(index.len(), 2);
        assert_eq!(index.get(b"a"), Some(3));
        index.insert(b"c", 4); // pops the stale `a`: nothing live is lost
        assert_eq!(index.evicted_early(), 0);
        assert_eq!(index.get(b"a"), Some(3));
        index.evict_below(3); // forgets b only
        assert_eq!(index.get(b"b"), None);
        assert_eq!(index.get(b"a"), Some(3));
        assert_eq!(index.get(b"c"), Some(4));
    }

    #[test]
    fn zero_ids_max_remembers_nothing() {
        let mut index = DedupIndex::new(KEY, 0);
        index.insert(b"a", 1);
        assert_eq!(index.get(b"a"), None);
        assert_eq!(index.evicted_early(), 0);
    }

    #[test]
    fn sequence_numbers_survive_many_generations() {
        let mut index = DedupIndex::new(KEY, 50);
        for n in 0..10_000 {
            index.insert(&id(n), n);
            assert_eq!(index.get(&id(n)), Some(n));
        }
        assert_eq!(index.len(), 50);
        assert_eq!(index.evicted_early(), 10_000 - 50);
        for n in 10_000 - 50..10_000 {
            assert_eq!(index.get(&id(n)), Some(n));
        }
    }

    #[test]
    fn dedup_index_memory_stays_within_bytes_per_id() {
        // 114_689 is one id past a power-of-two table's 7/8 load: the worst bucket ratio.
        for ids_max in [1000, 7169, 114_689] {
            let mut index = DedupIndex::new(KEY, ids_max);
            for n in 0..ids_max as u64 + 10 {
                index.insert(&id(n), n);
            }
            let bytes = index.ring.capacity() * size_of::<Entry>() + index.table.allocation_size();
            // A few dozen bytes of fixed table overhead (trailing control group).
            assert!(bytes <= DedupIndex::BYTES_PER_ID * ids_max + 64, "{ids_max}: {bytes}");
            assert!(index.ring.capacity() <= ids_max);
        }
    }
}
