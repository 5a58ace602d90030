//! The exact per-partition `event_id` index behind SPEC §2's "exactly-once per `event_id`
//! within a partition for the dedup window", kept on disk in memory-mapped tables.
//!
//! Each id is stored as 96 bits of its keyed SipHash-1-3, never as its bytes. The key is
//! a per-data-directory secret, so a producer cannot compute which ids collide. With `n`
//! ids in a window the chance that any two distinct ids share 96 bits is at most
//! n²/2^97, about 6e-18 for a full default window of one million ids; a collision would
//! make a new event read as a duplicate of an older one, at odds far below those of an
//! undetected hardware fault.
//!
//! Layout: a partition's index is a short chain of tables, one file each
//! (`dedup-<first offset>.idx`), oldest first. A table is an open-addressing hash table
//! (linear probing) pre-sized when it is made and never rehashed: 16-byte slots (the
//! hash and the offset as a 32-bit delta from the table's first offset), a CRC'd header
//! and a small state block. Inserts go to the newest table; when it is 3/4 full the next
//! one is made, twice as large up to the size that holds `ids_max` ids, so the disk a
//! partition uses follows the ids it has seen. The next table is prepared on the
//! segment preparer's thread once the newest one is half way there, so a shard does
//! not create files on the request path. A lookup probes the tables newest first.
//! Nothing is ever deleted from a table: a table is dropped whole once the newer ones
//! hold `ids_max` ids (counted as early evictions if it still had ids inside the window)
//! or once its newest id is older than the window. So an id is remembered for at least
//! the window (up to `ids_max` ids), and at most until its table is dropped.
//!
//! Memory: the tables are file-backed mappings (page cache, not anonymous memory); the
//! kernel keeps the hot part resident and writes dirty pages back in the background.
//! Restarts need no rebuild: the tables are trusted when the last run closed them
//! cleanly, or when this is the same boot (a kill -9 leaves every write to the mapping
//! in the page cache); then only records appended after the last indexed one are
//! indexed again. After a power loss without a clean close the tables are discarded and
//! rebuilt from the log (`DedupIndex::open` says which).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::MmapMut;
use siphasher::sip128::SipHasher13;

use super::StorageError;
use super::{segment, spare};

/// First bytes of every table file.
const MAGIC: [u8; 8] = *b"SLUICDDX";
const VERSION: u32 = 1;
/// The immutable header covers bytes 0..60, its CRC-32C is at 60..64.
const HEADER_CRC_AT: usize = 60;
/// The mutable state block: count, indexed_next, newest_ms, boot id, clean flag.
const STATE_AT: usize = 64;
/// Slots start on the second page, so the header page is the only one rewritten often.
const SLOTS_AT: u64 = 4096;
const SLOT_BYTES: u64 = 16;
/// Smallest table: 64 Ki slots, 1 MiB.
const FIRST_TABLE_SLOTS: u64 = 1 << 16;
/// A table takes ids until it is this full (numerator / denominator): linear probing
/// then costs about 2.5 slots per hit and 8.5 per miss, a cache line or three.
const LOAD_NUMERATOR: u64 = 3;
const LOAD_DENOMINATOR: u64 = 4;
const FILE_PREFIX: &str = "dedup-";
const FILE_SUFFIX: &str = ".idx";

/// An event id's keyed hash, as the tables store it.
#[derive(Debug, Clone, Copy)]
pub struct IdHash((u64, u32));

/// How [`DedupIndex::open`] found the tables on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// Trusted: every record below this offset is indexed; index the log from here.
    IndexedUpTo(u64),
    /// None were trusted (none yet, a power loss without a clean close, another key):
    /// the caller indexes the log's window from scratch.
    Rebuild,
}

/// One table file, mapped read-write.
struct Table {
    map: MmapMut,
    file: File,
    path: PathBuf,
    /// Slot count, a power of two.
    slots: u64,
    first_offset: u64,
    /// Ids stored (also in the state block).
    count: u64,
    /// Largest `ingest_ms` stored (also in the state block).
    newest_ms: i64,
}

/// The ids stored in one partition during its dedup window, each mapped to the offset of
/// the stored original. Owned by the partition's shard; not shared.
pub struct DedupIndex {
    dir: PathBuf,
    partition: u32,
    hasher: SipHasher13,
    key_check: u64,
    ids_max: u64,
    /// Size of a full-grown table: the smallest power of two that holds `ids_max` ids.
    max_slots: u64,
    /// Oldest first; inserts go to the last one.
    tables: VecDeque<Table>,
    boot_id: [u8; 16],
    evicted_early: u64,
    /// The next table, being prepared on the segment preparer's thread (`spare.rs`)
    /// once the newest one is half way to its load limit.
    next: Option<spare::Pending>,
    /// Tables made on the shard thread because the prepared one was not ready.
    stalls: u64,
}

impl DedupIndex {
    /// Opens the index of `partition` in its directory `dir` (created on the first
    /// insert). `key` is the per-data-directory SipHash key; `ids_max` bounds the ids
    /// remembered (0 disables the index: nothing is remembered, nothing is written).
    pub fn open(dir: &Path, partition: u32, key: [u8; 16], ids_max: usize) -> Result<(DedupIndex, Opened), StorageError> {
        let (key0, key1) = key.split_at(8);
        let hasher = SipHasher13::new_with_keys(
            u64::from_le_bytes(key0.try_into().expect("8 bytes")),
            u64::from_le_bytes(key1.try_into().expect("8 bytes")),
        );
        let key_check = hasher.hash(b"sluice dedup key check").h1;
        let ids_max = ids_max as u64;
        let max_slots = (ids_max * LOAD_DENOMINATOR).div_ceil(LOAD_NUMERATOR).next_power_of_two().max(FIRST_TABLE_SLOTS);
        let mut index = DedupIndex {
            dir: dir.to_owned(),
            partition,
            hasher,
            key_check,
            ids_max,
            max_slots,
            tables: VecDeque::new(),
            boot_id: crate::platform::boot_id(),
            evicted_early: 0,
            next: None,
            stalls: 0,
        };
        let opened = index.load()?;
        if opened == Opened::Rebuild {
            index.remove_all()?;
        }
        // From here until a clean close, a crash leaves the tables untrusted unless the
        // page cache survives it (same boot).
        index.mark_open()?;
        Ok((index, opened))
    }

    /// Opens the index of `partition` after deleting whatever tables it had (the caller
    /// found them inconsistent with the log and indexes the log again).
    pub fn open_discarding(dir: &Path, partition: u32, key: [u8; 16], ids_max: usize) -> Result<(DedupIndex, Opened), StorageError> {
        for path in table_files(dir)? {
            fs::remove_file(&path).map_err(|e| StorageError::io(&path, "remove dedup table", e))?;
        }
        DedupIndex::open(dir, partition, key, ids_max)
    }

    /// Maps every table file; decides whether they can be trusted.
    fn load(&mut self) -> Result<Opened, StorageError> {
        let mut paths = table_files(&self.dir)?;
        paths.sort();
        if paths.is_empty() || self.ids_max == 0 {
            return Ok(Opened::Rebuild);
        }
        let mut trusted = true;
        for path in paths {
            match Table::open(&path, self.partition, self.key_check)? {
                Some((table, clean, boot_id)) => {
                    trusted &= clean || (boot_id == self.boot_id && boot_id != [0; 16]);
                    self.tables.push_back(table);
                }
                None => trusted = false,
            }
        }
        let ordered = self.tables.iter().zip(self.tables.iter().skip(1)).all(|(older, newer)| older.first_offset < newer.first_offset);
        match self.tables.back() {
            Some(newest) if trusted && ordered => Ok(Opened::IndexedUpTo(newest.indexed_next())),
            _ => Ok(Opened::Rebuild),
        }
    }

    fn remove_all(&mut self) -> Result<(), StorageError> {
        self.tables.clear();
        for path in table_files(&self.dir)? {
            fs::remove_file(&path).map_err(|e| StorageError::io(&path, "remove dedup table", e))?;
        }
        Ok(())
    }

    /// Clears the clean flag and stamps this boot on every table, durably.
    fn mark_open(&mut self) -> Result<(), StorageError> {
        let boot_id = self.boot_id;
        for table in &mut self.tables {
            table.set_state(boot_id, false);
            table.sync()?;
        }
        Ok(())
    }

    fn hash(&self, event_id: &[u8]) -> (u64, u32) {
        let hash = self.hasher.hash(event_id);
        (hash.h1, hash.h2 as u32)
    }

    /// The offset of the stored event with this `event_id`, if it is remembered.
    pub fn get(&self, event_id: &[u8]) -> Option<u64> {
        self.lookup(event_id).ok()
    }

    /// [`DedupIndex::get`], and when the id is new, its hash for
    /// [`DedupIndex::insert_hashed`]: the request path hashes each id once.
    pub fn lookup(&self, event_id: &[u8]) -> Result<u64, IdHash> {
        let hash = self.hash(event_id);
        match self.tables.iter().rev().find_map(|table| table.find(hash)) {
            Some(offset) => Ok(offset),
            None => Err(IdHash(hash)),
        }
    }

    /// Makes sure the next insert, at `offset`, has a table with room, making one when
    /// needed. Call before appending the record: an error (no disk for the table) then
    /// refuses the event instead of storing it unindexed.
    pub fn prepare(&mut self, offset: u64) -> Result<(), StorageError> {
        if self.ids_max == 0 {
            return Ok(());
        }
        let slots = match self.tables.back() {
            None => FIRST_TABLE_SLOTS.min(self.max_slots),
            Some(newest) if newest.has_room_for(offset) => {
                // Half way to the load limit: have the next table made off this thread.
                if self.next.is_none() && newest.count * LOAD_DENOMINATOR * 2 >= newest.slots * LOAD_NUMERATOR {
                    let slots = (newest.slots * 2).min(self.max_slots);
                    self.next = spare::request(&self.dir, SLOTS_AT + slots * SLOT_BYTES);
                }
                return Ok(());
            }
            Some(newest) => (newest.slots * 2).min(self.max_slots),
        };
        let (key_check, boot_id, partition) = (self.key_check, self.boot_id, self.partition);
        let table = match self.next.take().map(spare::Pending::take) {
            Some(spare::Taken::Ready(ready)) if ready.map.len() as u64 == SLOTS_AT + slots * SLOT_BYTES => {
                Table::from_spare(&self.dir, ready, partition, key_check, slots, offset, boot_id)?
            }
            other => {
                if let Some(spare::Taken::Ready(unused)) = other {
                    let _ = fs::remove_file(&unused.tmp_path);
                }
                if !self.tables.is_empty() {
                    self.stalls += 1;
                }
                Table::create(&self.dir, partition, key_check, slots, offset, boot_id)?
            }
        };
        self.tables.push_back(table);
        self.drop_beyond_ids_max();
        Ok(())
    }

    /// Tables made on the shard thread because the prepared one was not ready in time.
    pub fn stalls(&self) -> u64 {
        self.stalls
    }

    /// Remembers `event_id` (not present: the caller looked it up) as stored at
    /// `offset` at `ingest_ms`. Offsets increase from one insert to the next, and
    /// `prepare(offset)` came first.
    pub fn insert(&mut self, event_id: &[u8], offset: u64, ingest_ms: i64) {
        self.insert_hashed(IdHash(self.hash(event_id)), offset, ingest_ms);
    }

    /// [`DedupIndex::insert`] with the hash [`DedupIndex::lookup`] gave.
    pub fn insert_hashed(&mut self, IdHash(hash): IdHash, offset: u64, ingest_ms: i64) {
        if self.ids_max == 0 {
            return;
        }
        let Some(table) = self.tables.back_mut() else { unreachable!("prepare made a table") };
        debug_assert!(table.has_room_for(offset), "prepare({offset}) was not called");
        if !table.insert(hash, offset, ingest_ms) {
            // Only a table whose stored count disagrees with its slots (damage that kept
            // its header's CRC) gets here: take no more ids into it.
            tracing::error!(path = %table.path.display(), "dedup table full although its count says otherwise; starting the next one");
            table.count = table.slots;
        }
    }

    /// Drops tables whose newest id is older than `window_start_ms`, and tables that
    /// hold only offsets below `start_offset` (retention deleted them). The newest table
    /// is kept (it is the one inserts go to).
    pub fn expire(&mut self, window_start_ms: i64, start_offset: u64) {
        // Bounded by the number of tables.
        while self.tables.len() > 1 {
            let below_start = self.tables.get(1).is_some_and(|next| next.first_offset <= start_offset);
            if self.tables[0].newest_ms >= window_start_ms && !below_start {
                break;
            }
            self.drop_oldest();
        }
    }

    /// Drops the oldest tables while the newer ones alone hold `ids_max` ids.
    fn drop_beyond_ids_max(&mut self) {
        // Bounded by the number of tables.
        while self.tables.len() > 1 && self.tables.iter().skip(1).map(|table| table.count).sum::<u64>() >= self.ids_max {
            self.evicted_early += self.tables[0].count;
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some(table) = self.tables.pop_front() {
            // A leftover file is dropped at the next start (it no longer fits the chain).
            if let Err(error) = fs::remove_file(&table.path) {
                tracing::warn!(path = %table.path.display(), %error, "cannot remove an expired dedup table");
            }
        }
    }

    /// Flushes every table and marks it clean, so the next start trusts it whatever
    /// happens to the machine meanwhile. Call after the log itself is flushed.
    pub fn close_clean(&mut self) -> Result<(), StorageError> {
        let boot_id = self.boot_id;
        for table in &mut self.tables {
            table.sync()?;
            table.set_state(boot_id, true);
            table.sync()?;
        }
        Ok(())
    }

    /// After a failed fdatasync: the kernel may drop pages it could not write, so what
    /// this run wrote to the tables may not be what a later read finds. Clears the
    /// clean flag and this boot's id in every table (best effort), so the next start
    /// rebuilds the index from the log instead of trusting it.
    pub fn distrust(&mut self) {
        for table in &mut self.tables {
            table.set_state([0; 16], false);
            let _ = table.sync();
        }
        self.boot_id = [0; 16];
    }

    /// Ids remembered (across tables; an id is in one table only).
    pub fn len(&self) -> u64 {
        self.tables.iter().map(|table| table.count).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ids forgotten because newer ids filled `ids_max` (each is a duplicate that would
    /// no longer be caught within the window).
    pub fn evicted_early(&self) -> u64 {
        self.evicted_early
    }

    /// Bytes of table files on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.tables.iter().map(|table| SLOTS_AT + table.slots * SLOT_BYTES).sum()
    }
}

/// `dedup-*.idx` files in `dir` (a missing directory has none).
fn table_files(dir: &Path) -> Result<Vec<PathBuf>, StorageError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(StorageError::io(dir, "list", error)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(dir, "list", e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(FILE_PREFIX) && (name.ends_with(FILE_SUFFIX) || name.ends_with(".tmp")) {
            paths.push(entry.path());
        }
    }
    Ok(paths)
}

/// Bytes of a table's header and state block, the part `decode_table_head` reads.
pub const TABLE_HEAD_BYTES: usize = 128;

/// What a table's first `TABLE_HEAD_BYTES` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableHead {
    pub slots: u64,
    pub first_offset: u64,
    pub count: u64,
    pub newest_ms: i64,
    pub boot_id: [u8; 16],
    pub clean: bool,
}

/// Reads a table's header and state block: `None` unless the magic, version, CRC,
/// partition and key check hold, the slot count is a power of two that fills a file of
/// `file_bytes` exactly, and the stored id count is below the slot count.
pub fn decode_table_head(bytes: &[u8], file_bytes: u64, partition: u32, key_check: u64) -> Option<TableHead> {
    let bytes = bytes.get(..TABLE_HEAD_BYTES)?;
    let crc_ok = u32_at(bytes, HEADER_CRC_AT) == crc32c::crc32c(&bytes[..HEADER_CRC_AT]);
    let slots = u64_at(bytes, 16);
    let fits = slots.is_power_of_two() && slots.checked_mul(SLOT_BYTES).is_some_and(|used| SLOTS_AT.checked_add(used) == Some(file_bytes));
    let count = u64_at(bytes, STATE_AT);
    let valid = bytes[0..8] == MAGIC
        && crc_ok
        && u32_at(bytes, 8) == VERSION
        && u32_at(bytes, 12) == partition
        && u64_at(bytes, 40) == key_check
        && fits
        && count < slots;
    valid.then(|| TableHead {
        slots,
        first_offset: u64_at(bytes, 24),
        count,
        newest_ms: u64_at(bytes, STATE_AT + 16) as i64,
        boot_id: bytes[STATE_AT + 24..STATE_AT + 40].try_into().expect("16 bytes"),
        clean: bytes[STATE_AT + 40] == 1,
    })
}

/// A table's first `TABLE_HEAD_BYTES` as `Table::create` and an insert leave them
/// (for the fuzz target and tests).
pub fn encode_table_head(partition: u32, key_check: u64, head: &TableHead, indexed_next: u64) -> [u8; TABLE_HEAD_BYTES] {
    let mut out = [0u8; TABLE_HEAD_BYTES];
    out[..64].copy_from_slice(&encode_header(partition, key_check, head.slots, head.first_offset));
    out[STATE_AT..STATE_AT + 8].copy_from_slice(&head.count.to_le_bytes());
    out[STATE_AT + 8..STATE_AT + 16].copy_from_slice(&indexed_next.to_le_bytes());
    out[STATE_AT + 16..STATE_AT + 24].copy_from_slice(&head.newest_ms.to_le_bytes());
    out[STATE_AT + 24..STATE_AT + 40].copy_from_slice(&head.boot_id);
    out[STATE_AT + 40] = u8::from(head.clean);
    out
}

/// The immutable, CRC'd first 64 bytes of a table.
fn encode_header(partition: u32, key_check: u64, slots: u64, first_offset: u64) -> [u8; 64] {
    let mut header = [0u8; 64];
    header[0..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&partition.to_le_bytes());
    header[16..24].copy_from_slice(&slots.to_le_bytes());
    header[24..32].copy_from_slice(&first_offset.to_le_bytes());
    header[32..40].copy_from_slice(&crate::platform::time::now_unix_ms().to_le_bytes());
    header[40..48].copy_from_slice(&key_check.to_le_bytes());
    let crc = crc32c::crc32c(&header[..HEADER_CRC_AT]);
    header[HEADER_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    header
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

impl Table {
    fn path_for(dir: &Path, first_offset: u64) -> PathBuf {
        dir.join(format!("{FILE_PREFIX}{first_offset:020}{FILE_SUFFIX}"))
    }

    /// Makes a table file: reserved whole (a full disk under a mapping is SIGBUS), header
    /// written, renamed into place.
    fn create(dir: &Path, partition: u32, key_check: u64, slots: u64, first_offset: u64, boot_id: [u8; 16]) -> Result<Table, StorageError> {
        fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, "create directory", e))?;
        let path = Table::path_for(dir, first_offset);
        let tmp = path.with_extension("idx.tmp");
        let bytes = SLOTS_AT + slots * SLOT_BYTES;
        let file = segment::create_then_rename(&tmp, &path, |file| {
            segment::reserve(file, &tmp, bytes)?;
            let header = encode_header(partition, key_check, slots, first_offset);
            file.write_all_at(&header, 0).map_err(|e| StorageError::io(&tmp, "write dedup header", e))
        })?;
        let map = segment::map_writable(&file, &path, bytes)?;
        let mut table = Table { map, file, path, slots, first_offset, count: 0, newest_ms: i64::MIN };
        table.write_counters(first_offset);
        table.set_state(boot_id, false);
        Ok(table)
    }

    /// Turns a prepared spare (reserved, mapped, all zero) into the table for
    /// `first_offset`: the header goes in through the mapping, then the rename.
    fn from_spare(
        dir: &Path,
        spare: spare::Spare,
        partition: u32,
        key_check: u64,
        slots: u64,
        first_offset: u64,
        boot_id: [u8; 16],
    ) -> Result<Table, StorageError> {
        let spare::Spare { file, mut map, tmp_path } = spare;
        map[..64].copy_from_slice(&encode_header(partition, key_check, slots, first_offset));
        let path = Table::path_for(dir, first_offset);
        fs::rename(&tmp_path, &path).map_err(|e| StorageError::io(&path, "rename", e))?;
        let mut table = Table { map, file, path, slots, first_offset, count: 0, newest_ms: i64::MIN };
        table.write_counters(first_offset);
        table.set_state(boot_id, false);
        Ok(table)
    }

    /// Maps an existing table. `None` when it is not one this partition and key can use
    /// (torn, another key, another partition, a leftover `.tmp`); the caller rebuilds.
    /// Also returns its clean flag and boot id.
    fn open(path: &Path, partition: u32, key_check: u64) -> Result<Option<(Table, bool, [u8; 16])>, StorageError> {
        if path.extension().is_some_and(|extension| extension == "tmp") {
            return Ok(None);
        }
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(|e| StorageError::io(path, "open", e))?;
        let file_bytes = file.metadata().map_err(|e| StorageError::io(path, "stat", e))?.len();
        let mut header = [0u8; TABLE_HEAD_BYTES];
        if file_bytes < SLOTS_AT || file.read_exact_at(&mut header, 0).is_err() {
            return Ok(None);
        }
        let Some(head) = decode_table_head(&header, file_bytes, partition, key_check) else {
            return Ok(None);
        };
        let map = segment::map_writable(&file, path, file_bytes)?;
        let (slots, first_offset, count, newest_ms) = (head.slots, head.first_offset, head.count, head.newest_ms);
        let table = Table { map, file, path: path.to_owned(), slots, first_offset, count, newest_ms };
        Ok(Some((table, head.clean, head.boot_id)))
    }

    /// Offset after the last record indexed in this table.
    fn indexed_next(&self) -> u64 {
        u64_at(&self.map, STATE_AT + 8)
    }

    fn has_room_for(&self, offset: u64) -> bool {
        self.count * LOAD_DENOMINATOR < self.slots * LOAD_NUMERATOR && offset - self.first_offset < u64::from(u32::MAX - 1)
    }

    fn write_counters(&mut self, indexed_next: u64) {
        self.map[STATE_AT..STATE_AT + 8].copy_from_slice(&self.count.to_le_bytes());
        self.map[STATE_AT + 8..STATE_AT + 16].copy_from_slice(&indexed_next.to_le_bytes());
        self.map[STATE_AT + 16..STATE_AT + 24].copy_from_slice(&self.newest_ms.to_le_bytes());
    }

    fn set_state(&mut self, boot_id: [u8; 16], clean: bool) {
        self.map[STATE_AT + 24..STATE_AT + 40].copy_from_slice(&boot_id);
        self.map[STATE_AT + 40] = u8::from(clean);
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.map.flush().map_err(|e| StorageError::sync(&self.path, "msync", e))?;
        self.file.sync_data().map_err(|e| StorageError::sync(&self.path, "fdatasync", e))
    }

    /// Slot `index`'s (h1, h2, offset delta + 1); all zero when empty.
    fn slot(&self, index: u64) -> (u64, u32, u32) {
        let at = (SLOTS_AT + index * SLOT_BYTES) as usize;
        (u64_at(&self.map, at), u32_at(&self.map, at + 8), u32_at(&self.map, at + 12))
    }

    fn find(&self, (h1, h2): (u64, u32)) -> Option<u64> {
        let mask = self.slots - 1;
        let mut index = h1 & mask;
        // Bounded: the table is never full (has_room_for), so an empty slot ends the probe.
        for _ in 0..self.slots {
            let (stored1, stored2, delta) = self.slot(index);
            if delta == 0 {
                return None;
            }
            if stored1 == h1 && stored2 == h2 {
                return Some(self.first_offset + u64::from(delta - 1));
            }
            index = (index + 1) & mask;
        }
        None
    }

    /// Stores the id; false when no slot is free (the count was wrong).
    fn insert(&mut self, (h1, h2): (u64, u32), offset: u64, ingest_ms: i64) -> bool {
        let mask = self.slots - 1;
        let mut index = h1 & mask;
        let delta = u32::try_from(offset - self.first_offset + 1).expect("has_room_for bounds the delta");
        // Bounded as in `find`.
        for _ in 0..self.slots {
            if self.slot(index).2 == 0 {
                let at = (SLOTS_AT + index * SLOT_BYTES) as usize;
                self.map[at..at + 8].copy_from_slice(&h1.to_le_bytes());
                self.map[at + 8..at + 12].copy_from_slice(&h2.to_le_bytes());
                self.map[at + 12..at + 16].copy_from_slice(&delta.to_le_bytes());
                self.count += 1;
                self.newest_ms = self.newest_ms.max(ingest_ms);
                self.write_counters(offset + 1);
                return true;
            }
            index = (index + 1) & mask;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 16] = *b"0123456789abcdef";

    fn id(n: u64) -> Vec<u8> {
        format!("e_{n}").into_bytes()
    }

    fn fill(index: &mut DedupIndex, offsets: std::ops::Range<u64>) {
        for n in offsets {
            index.prepare(n).unwrap();
            index.insert(&id(n), n, n as i64);
        }
    }

    #[test]
    fn insert_then_get_returns_the_original_offset_and_survives_a_reopen() {
        let temp = tempfile::tempdir().unwrap();
        let (mut index, opened) = DedupIndex::open(temp.path(), 3, KEY, 1000).unwrap();
        assert_eq!(opened, Opened::Rebuild);
        assert!(index.is_empty() && table_files(temp.path()).unwrap().is_empty(), "nothing on disk before the first id");
        fill(&mut index, 10..20);
        assert_eq!(index.get(&id(12)), Some(12));
        assert_eq!(index.get(&id(99)), None);
        assert_eq!(index.len(), 10);
        drop(index);
        // Same boot, not closed (a kill -9): trusted, indexed up to 20.
        let (index, opened) = DedupIndex::open(temp.path(), 3, KEY, 1000).unwrap();
        assert_eq!(opened, Opened::IndexedUpTo(20));
        assert_eq!(index.get(&id(15)), Some(15));
    }

    #[test]
    fn another_boot_trusts_only_a_clean_close() {
        let temp = tempfile::tempdir().unwrap();
        let (mut index, _) = DedupIndex::open(temp.path(), 0, KEY, 1000).unwrap();
        fill(&mut index, 0..5);
        // A power loss: the state says another boot and not clean.
        index.tables[0].set_state([7; 16], false);
        drop(index);
        let (index, opened) = DedupIndex::open(temp.path(), 0, KEY, 1000).unwrap();
        assert_eq!(opened, Opened::Rebuild);
        assert_eq!(index.get(&id(1)), None, "untrusted tables are discarded");
        assert!(table_files(temp.path()).unwrap().is_empty());
        let (mut index, _) = DedupIndex::open(temp.path(), 0, KEY, 1000).unwrap();
        fill(&mut index, 0..5);
        index.close_clean().unwrap();
        index.tables[0].map[STATE_AT + 24..STATE_AT + 40].copy_from_slice(&[7; 16]);
        drop(index);
        let (index, opened) = DedupIndex::open(temp.path(), 0, KEY, 1000).unwrap();
        assert_eq!(opened, Opened::IndexedUpTo(5), "a clean close is trusted on any boot");
        assert_eq!(index.get(&id(1)), Some(1));
    }

    #[test]
    fn another_key_or_a_damaged_header_is_not_trusted() {
        let temp = tempfile::tempdir().unwrap();
        let (mut index, _) = DedupIndex::open(temp.path(), 0, KEY, 1000).unwrap();
        fill(&mut index, 0..5);
        drop(index);
        let (_, opened) = DedupIndex::open(temp.path(), 0, *b"fedcba9876543210", 1000).unwrap();
        assert_eq!(opened, Opened::Rebuild);
        let (mut index, _) = DedupIndex::open(temp.path(), 0, KEY, 1000).unwrap();
        fill(&mut index, 0..5);
        let path = index.tables[0].path.clone();
        drop(index);
        File::options().write(true).open(&path).unwrap().write_all_at(&[0xEE], 20).unwrap();
        assert_eq!(DedupIndex::open(temp.path(), 0, KEY, 1000).unwrap().1, Opened::Rebuild);
    }

    #[test]
    fn tables_grow_by_doubling_and_old_ones_go_once_ids_max_newer_ids_exist() {
        let temp = tempfile::tempdir().unwrap();
        let ids_max = 200_000;
        let (mut index, _) = DedupIndex::open(temp.path(), 0, KEY, ids_max).unwrap();
        fill(&mut index, 0..600_000);
        let sizes: Vec<u64> = index.tables.iter().map(|table| table.slots).collect();
        assert!(sizes.iter().all(|&slots| slots <= index.max_slots), "{sizes:?}");
        assert_eq!(index.max_slots, 1 << 19, "200k ids at 3/4 load need more than 2^18 slots");
        // Every id among the newest ids_max is still found.
        for n in (600_000 - ids_max as u64..600_000).step_by(997) {
            assert_eq!(index.get(&id(n)), Some(n), "id {n}");
        }
        assert!(index.len() >= ids_max as u64);
        assert!(index.evicted_early() > 0 && index.evicted_early() + index.len() == 600_000);
        assert_eq!(table_files(temp.path()).unwrap().len(), index.tables.len());
        assert!(index.disk_bytes() <= 2 * (SLOTS_AT + (1 << 19) * SLOT_BYTES), "{sizes:?}");
    }

    #[test]
    fn expire_drops_tables_past_the_window_or_below_the_start() {
        let temp = tempfile::tempdir().unwrap();
        let (mut index, _) = DedupIndex::open(temp.path(), 0, KEY, 1_000_000).unwrap();
        fill(&mut index, 0..60_000); // 49,152 fit the first table; the rest go to a second.
        assert_eq!(index.tables.len(), 2);
        index.expire(10, 0);
        assert_eq!(index.tables.len(), 2, "the first table's newest id (ms 49151) is inside the window");
        index.expire(49_152, 0);
        assert_eq!(index.tables.len(), 1);
        assert_eq!(index.get(&id(100)), None);
        assert_eq!(index.get(&id(50_000)), Some(50_000));
        index.expire(i64::MAX, u64::MAX);
        assert_eq!(index.tables.len(), 1, "the newest table stays");
        assert_eq!(index.evicted_early(), 0);
    }

    #[test]
    fn zero_ids_max_remembers_nothing_and_writes_nothing() {
        let temp = tempfile::tempdir().unwrap();
        let (mut index, _) = DedupIndex::open(temp.path(), 0, KEY, 0).unwrap();
        fill(&mut index, 0..10);
        assert_eq!(index.get(&id(1)), None);
        assert!(table_files(temp.path()).unwrap().is_empty());
    }
}
