//! Subscriptions (SPEC §6): server-side consumer groups in the style of Nakadi's
//! subscription API. One registry per node, shared by every shard behind one mutex
//! (taken per control operation and per stream pump, never per event).
//!
//! - A subscription names topics; its partitions are every partition of those topics.
//! - Each partition belongs to exactly one open stream: partition `i` (in topic order)
//!   to the `i mod n`-th of the `n` open streams, by age. Opening or ending a stream
//!   shares them out again (a rebalance) and bumps [`Subscriptions::generation`], which
//!   every shard watches.
//! - The committed cursor of a partition is the next offset to deliver. A stream starts
//!   each partition it gets at its committed cursor, so what was sent and not committed
//!   is sent again (at-least-once).
//! - Cursor tokens are an HMAC-SHA256 (key in `consumers/cursor.key`, made on first
//!   start) over subscription, topic, partition and offset: a client cannot make one for
//!   another subscription or another offset, so it cannot skip or rewind anything but
//!   what it was sent. A commit only ever moves a cursor forward.
//! - Definitions live in `consumers/subscriptions/<name>.json` (replaced atomically);
//!   commits are appended to the cursor journal (`consumers/cursors/`, the side-log
//!   framing, written before the 204) and folded into a fresh snapshot at every start.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::constants::SUBSCRIPTIONS_MAX;
use crate::metrics::Control;
use crate::sidelog::frame::{self, FrameError};
use crate::sidelog::writer::{self, Rotation, SideLogWriter};
use crate::topics::Topology;

pub const CONSUMERS_DIR: &str = "consumers";
const SUBSCRIPTIONS_DIR: &str = "subscriptions";
const CURSORS_DIR: &str = "cursors";
const CURSORS_SUFFIX: &str = ".cursors";
const KEY_FILE: &str = "cursor.key";
/// The shard number of the snapshot file written at start.
const SNAPSHOT_SHARD: usize = 9999;
const CURSOR_PAYLOAD_BYTES_MAX: usize = 512;
const DEFINITION_BYTES_MAX: u64 = 1 << 20;
/// Bytes of a cursor token: 128 bits of the HMAC, as 32 hex digits.
const TOKEN_BYTES: usize = 16;

/// Where a new subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    Earliest,
    Latest,
}

/// What a client asked for in `PUT /v1/subscriptions/{s}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub topics: Vec<String>,
    pub read_from: ReadFrom,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredDefinition {
    name: String,
    topics: Vec<String>,
    read_from: ReadFrom,
    partner: String,
    created_ms: i64,
    /// The cursors the subscription started with: `[topic, partition, next]`.
    initial: Vec<(String, u32, u64)>,
}

/// One open stream of a subscription.
#[derive(Debug, Clone)]
struct StreamEntry {
    id: u64,
    shard: usize,
    /// Since when a batch it was sent waits for a commit (`None`: nothing waits).
    waiting_since_ms: Option<i64>,
}

struct Subscription {
    definition: Definition,
    /// Per slot index: the highest offset + 1 ever sent (to count redeliveries).
    sent_high: Vec<u64>,
    partner: String,
    /// Every partition slot of its topics, in topic then partition order.
    slots: Vec<u32>,
    /// Per slot index: the next offset to deliver (the committed cursor + 1).
    committed: Vec<u64>,
    /// Per slot index: the owning stream's id, 0 when none.
    owners: Vec<u64>,
    streams: Vec<StreamEntry>,
}

impl Subscription {
    fn rebalance(&mut self) {
        for (index, owner) in self.owners.iter_mut().enumerate() {
            *owner = if self.streams.is_empty() { 0 } else { self.streams[index % self.streams.len()].id };
        }
    }
}

/// What `put` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Created,
    Exists,
}

/// Why a subscription operation is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionError {
    NotFound,
    Conflict,
    TooMany,
    UnknownTopic(String),
    NoFreePartitions { partitions: usize },
    NotOwner { topic: String, partition: u32 },
    CursorInvalid(String),
    Storage(String),
}

/// A cursor as a client sends it back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct CursorIn {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub token: String,
}

/// A partition a stream owns: its slot and the offset to start (again) at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owned {
    pub slot: u32,
    pub committed: u64,
}

/// One row of `GET /v1/subscriptions/{s}/stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionStats {
    pub slot: u32,
    pub committed: u64,
    pub owner: u64,
}

pub struct Subscriptions {
    topology: Topology,
    dir: PathBuf,
    key: aws_lc_rs::hmac::Key,
    state: Mutex<HashMap<String, Subscription>>,
    /// Bumped by every change a stream must look at (commit, rebalance).
    generation: AtomicU64,
    next_stream_id: AtomicU64,
    /// Rebalances since start, for `/metrics`.
    pub rebalances: AtomicU64,
}

impl Subscriptions {
    /// Opens (making on first start) `<data_dir>/consumers`: the token key, every
    /// definition, and the cursor journal folded into a fresh snapshot (older journal
    /// files are then deleted). Definitions naming a topic that no longer exists keep
    /// their other topics.
    pub fn open(data_dir: &Path, topology: &Topology) -> io::Result<Subscriptions> {
        let dir = data_dir.join(CONSUMERS_DIR);
        fs::create_dir_all(dir.join(SUBSCRIPTIONS_DIR))?;
        fs::create_dir_all(dir.join(CURSORS_DIR))?;
        let key = load_or_make_key(&dir.join(KEY_FILE))?;
        let mut subscriptions = HashMap::new();
        for entry in fs::read_dir(dir.join(SUBSCRIPTIONS_DIR))? {
            let path = entry?.path();
            if path.extension().is_none_or(|ext| ext != "json") {
                continue;
            }
            let stored: StoredDefinition = match read_definition(&path) {
                Ok(stored) => stored,
                Err(error) => {
                    tracing::error!(path = %path.display(), %error, "subscription definition unreadable; skipped");
                    continue;
                }
            };
            let definition = Definition { topics: stored.topics.clone(), read_from: stored.read_from };
            let slots = slots_of(&definition.topics, topology);
            let mut committed = vec![0; slots.len()];
            for (topic, partition, next) in &stored.initial {
                if let Some(index) = slot_index(&slots, topology, topic, *partition) {
                    committed[index] = *next;
                }
            }
            let owners = vec![0; slots.len()];
            let sent_high = committed.clone();
            let subscription =
                Subscription { definition, sent_high, partner: stored.partner, slots, committed, owners, streams: Vec::new() };
            subscriptions.insert(stored.name, subscription);
        }
        let cursors = dir.join(CURSORS_DIR);
        let files = writer::files(&cursors, CURSORS_SUFFIX)?;
        for file in &files {
            let bytes = fs::read(&file.path)?;
            writer::read_records(&bytes, decode_cursor, |_, (name, topic, partition, next)| {
                if let Some(subscription) = subscriptions.get_mut(name)
                    && let Some(index) = slot_index(&subscription.slots, topology, topic, partition)
                {
                    subscription.committed[index] = subscription.committed[index].max(next);
                }
            });
        }
        let registry = Subscriptions {
            topology: topology.clone(),
            dir,
            key,
            state: Mutex::new(subscriptions),
            generation: AtomicU64::new(1),
            // Unique across restarts (a stale X-Stream-Id never names a new stream) and
            // within JSON's exact integers.
            next_stream_id: AtomicU64::new(random_u64() & ((1 << 52) - 1) | 1 << 52),
            rebalances: AtomicU64::new(0),
        };
        registry.write_snapshot(topology, &files)?;
        Ok(registry)
    }

    /// Every committed cursor into one new journal file (synced), then the older files
    /// are deleted: the journal never grows past one start's commits.
    fn write_snapshot(&self, topology: &Topology, older: &[writer::SideLogFile]) -> io::Result<()> {
        let cursors = self.dir.join(CURSORS_DIR);
        let number = older.iter().map(|file| file.number + 1).max().unwrap_or(0).max(crate::platform::time::now_unix_ms());
        let mut out = Vec::new();
        for (name, subscription) in self.lock().iter() {
            for (index, slot) in subscription.slots.iter().enumerate() {
                let (topic, partition) = topology.locate(*slot);
                encode_cursor(&mut out, name, &topology.topic(topic).name, partition, subscription.committed[index])
                    .map_err(|error| io::Error::other(error.to_string()))?;
            }
        }
        let path = cursors.join(writer::file_name(SNAPSHOT_SHARD, number, CURSORS_SUFFIX));
        let mut file = fs::File::create(&path)?;
        file.write_all(&out)?;
        file.sync_all()?;
        fs::File::open(&cursors)?.sync_all()?;
        for old in older {
            fs::remove_file(&old.path)?;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Subscription>> {
        // A panic while holding it leaves the map consistent (every change is one step).
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// `PUT /v1/subscriptions/{name}`: creates it (cursors at the earliest retained or
    /// the current end of each partition), or says it exists with this definition.
    pub fn put(
        &self,
        name: &str,
        definition: Definition,
        partner: &str,
        topology: &Topology,
        control: &Control,
    ) -> Result<Put, SubscriptionError> {
        if let Some(unknown) = definition.topics.iter().find(|topic| topology.by_name(topic.as_bytes()).is_none()) {
            return Err(SubscriptionError::UnknownTopic(unknown.clone()));
        }
        let mut state = self.lock();
        if let Some(existing) = state.get(name) {
            let same = existing.definition == definition && existing.partner == partner;
            return if same { Ok(Put::Exists) } else { Err(SubscriptionError::Conflict) };
        }
        if state.len() >= SUBSCRIPTIONS_MAX {
            return Err(SubscriptionError::TooMany);
        }
        let slots = slots_of(&definition.topics, topology);
        let committed: Vec<u64> = slots
            .iter()
            .map(|slot| match definition.read_from {
                ReadFrom::Earliest => control.start_offsets[*slot as usize].load(Ordering::Acquire),
                ReadFrom::Latest => control.readable_ends[*slot as usize].load(Ordering::Acquire),
            })
            .collect();
        let initial = slots
            .iter()
            .zip(&committed)
            .map(|(slot, next)| {
                let (topic, partition) = topology.locate(*slot);
                (topology.topic(topic).name.to_string(), partition, *next)
            })
            .collect();
        let stored = StoredDefinition {
            name: name.to_owned(),
            topics: definition.topics.clone(),
            read_from: definition.read_from,
            partner: partner.to_owned(),
            created_ms: crate::platform::time::now_unix_ms(),
            initial,
        };
        let path = self.dir.join(SUBSCRIPTIONS_DIR).join(format!("{name}.json"));
        let text = serde_json::to_vec_pretty(&stored).map_err(|error| SubscriptionError::Storage(error.to_string()))?;
        crate::platform::durable::replace_file(&path, &path.with_extension("json.tmp"), &text)
            .map_err(|error| SubscriptionError::Storage(format!("cannot write {}: {error}", path.display())))?;
        let owners = vec![0; slots.len()];
        let sent_high = committed.clone();
        state.insert(
            name.to_owned(),
            Subscription { definition, sent_high, partner: partner.to_owned(), slots, committed, owners, streams: Vec::new() },
        );
        Ok(Put::Created)
    }

    /// After recovery: a committed cursor past its partition's end (the log lost its
    /// tail to a power loss under `durability = "os"`, the cursor journal did not) is
    /// brought back to the end, so the offsets the log hands out again are not passed
    /// over. Logged per cursor moved.
    pub fn clamp_to_log(&self, control: &Control) {
        if self.clamp(control) {
            // Kept: the next start must not fold the journal back past the log's end.
            let cursors = self.dir.join(CURSORS_DIR);
            let written = writer::files(&cursors, CURSORS_SUFFIX).and_then(|files| self.write_snapshot(&self.topology, &files));
            if let Err(error) = written {
                tracing::error!(%error, "cannot rewrite the cursor snapshot after moving cursors back");
            }
        }
    }

    fn clamp(&self, control: &Control) -> bool {
        let mut moved = false;
        let mut state = self.lock();
        for (name, subscription) in state.iter_mut() {
            for (index, slot) in subscription.slots.iter().enumerate() {
                let end = control.readable_ends[*slot as usize].load(Ordering::Acquire);
                if subscription.committed[index] > end {
                    let (topic, partition) = control.topology.locate(*slot);
                    tracing::warn!(
                        subscription = name.as_str(),
                        topic = &*control.topology.topic(topic).name,
                        partition,
                        committed = subscription.committed[index],
                        end,
                        "a committed cursor is past its partition's end (the log lost records the commit had seen): moved back to the end"
                    );
                    subscription.committed[index] = end;
                    subscription.sent_high[index] = subscription.sent_high[index].min(end);
                    moved = true;
                }
            }
        }
        moved
    }

    /// The topics of `name` (for the caller's scope check) and its creator.
    pub fn topics_of(&self, name: &str) -> Option<(Vec<String>, String)> {
        self.lock().get(name).map(|subscription| (subscription.definition.topics.clone(), subscription.partner.clone()))
    }

    /// Opens a stream on `shard`: a rebalance shares the partitions out again.
    pub fn open_stream(&self, name: &str, shard: usize) -> Result<u64, SubscriptionError> {
        let mut state = self.lock();
        let subscription = state.get_mut(name).ok_or(SubscriptionError::NotFound)?;
        if subscription.streams.len() >= subscription.slots.len() {
            return Err(SubscriptionError::NoFreePartitions { partitions: subscription.slots.len() });
        }
        let id = self.next_stream_id.fetch_add(1, Ordering::Relaxed);
        subscription.streams.push(StreamEntry { id, shard, waiting_since_ms: None });
        subscription.rebalance();
        drop(state);
        self.rebalances.fetch_add(1, Ordering::Relaxed);
        self.bump();
        Ok(id)
    }

    /// Ends a stream (closed by either side, timed out): its partitions go to the others.
    pub fn close_stream(&self, name: &str, id: u64) {
        let mut state = self.lock();
        let Some(subscription) = state.get_mut(name) else { return };
        let before = subscription.streams.len();
        subscription.streams.retain(|stream| stream.id != id);
        if subscription.streams.len() == before {
            return;
        }
        subscription.rebalance();
        drop(state);
        self.rebalances.fetch_add(1, Ordering::Relaxed);
        self.bump();
    }

    /// What stream `id` owns now, with the committed cursors; `None` when the stream is
    /// no longer open (ended by a timeout elsewhere).
    pub fn assignment(&self, name: &str, id: u64, into: &mut Vec<Owned>) -> bool {
        into.clear();
        let state = self.lock();
        let Some(subscription) = state.get(name) else { return false };
        if !subscription.streams.iter().any(|stream| stream.id == id) {
            return false;
        }
        for (index, owner) in subscription.owners.iter().enumerate() {
            if *owner == id {
                into.push(Owned { slot: subscription.slots[index], committed: subscription.committed[index] });
            }
        }
        true
    }

    /// A stream sent `count` events of `slot` from `first` on, with a cursor at
    /// `cursor` (if any); returns how many of them had been sent before (redelivered).
    pub fn note_sent(&self, name: &str, slot: u32, first: u64, count: u64, cursor: Option<u64>) -> u64 {
        let mut state = self.lock();
        let Some(subscription) = state.get_mut(name) else { return 0 };
        let Some(index) = subscription.slots.iter().position(|known| *known == slot) else { return 0 };
        let high = &mut subscription.sent_high[index];
        let redelivered = high.saturating_sub(first).min(count);
        *high = (*high).max(first + count).max(cursor.map_or(0, |offset| offset + 1));
        redelivered
    }

    /// A stream sent a batch at `now_ms`: its commit timeout runs from now unless it
    /// was already running.
    pub fn sent(&self, name: &str, id: u64, now_ms: i64) {
        let mut state = self.lock();
        if let Some(stream) = state.get_mut(name).and_then(|s| s.streams.iter_mut().find(|stream| stream.id == id)) {
            stream.waiting_since_ms.get_or_insert(now_ms);
        }
    }

    /// Since when stream `id` waits for a commit, if it does.
    pub fn waiting_since(&self, name: &str, id: u64) -> Option<i64> {
        self.lock().get(name)?.streams.iter().find(|stream| stream.id == id)?.waiting_since_ms
    }

    /// The cursor token of `offset` in `topic`'s `partition` for subscription `name`.
    pub fn token(&self, name: &str, topic: &str, partition: u32, offset: u64) -> [u8; 2 * TOKEN_BYTES] {
        let mut context = aws_lc_rs::hmac::Context::with_key(&self.key);
        context.update(name.as_bytes());
        context.update(&[0]);
        context.update(topic.as_bytes());
        context.update(&[0]);
        context.update(&partition.to_be_bytes());
        context.update(&offset.to_be_bytes());
        let tag = context.sign();
        let mut hex = [0u8; 2 * TOKEN_BYTES];
        crate::perimeter::hmac::hex_into(&tag.as_ref()[..TOKEN_BYTES], &mut hex);
        hex
    }

    /// Commits `cursors` for stream `stream` of `name`. All of them are checked first
    /// (token, a partition of the subscription, owned by the stream); then each moves
    /// its cursor forward to `offset + 1` (never back). `journal` writes the moved ones
    /// before the answer; if it fails nothing is committed. Returns how many moved.
    pub fn commit(
        &self,
        name: &str,
        stream: u64,
        cursors: &[CursorIn],
        control: &Control,
        now_ms: i64,
        journal: &mut CursorJournal,
    ) -> Result<usize, SubscriptionError> {
        let topology = &*control.topology;
        // The tokens first, outside the lock: an HMAC per cursor.
        for cursor in cursors {
            let expected = self.token(name, &cursor.topic, cursor.partition, cursor.offset);
            // A token is 32 hex digits: compared in constant time over all of them.
            let given: Option<&[u8; 2 * TOKEN_BYTES]> = cursor.token.as_bytes().try_into().ok();
            if !given.is_some_and(|given| crate::perimeter::hmac::equal_ct(given, &expected)) {
                return Err(SubscriptionError::CursorInvalid(format!(
                    "the cursor of {:?} partition {} offset {} was not issued for this subscription",
                    printable(&cursor.topic),
                    cursor.partition,
                    cursor.offset
                )));
            }
        }
        let mut state = self.lock();
        let subscription = state.get_mut(name).ok_or(SubscriptionError::NotFound)?;
        // Only an open stream of this subscription commits (owner 0 means "none").
        let open = stream != 0 && subscription.streams.iter().any(|entry| entry.id == stream);
        let mut moves = Vec::with_capacity(cursors.len());
        for cursor in cursors {
            let Some(index) = slot_index(&subscription.slots, topology, &cursor.topic, cursor.partition) else {
                return Err(SubscriptionError::CursorInvalid("the cursor names a partition outside this subscription".to_owned()));
            };
            if !open || subscription.owners[index] != stream {
                return Err(SubscriptionError::NotOwner { topic: cursor.topic.clone(), partition: cursor.partition });
            }
            // Only what was sent (and is still in the log) can be committed.
            let end = control.readable_ends[subscription.slots[index] as usize].load(Ordering::Acquire);
            if cursor.offset >= end.min(subscription.sent_high[index]) {
                return Err(SubscriptionError::CursorInvalid(format!("offset {} was not sent on this subscription", cursor.offset)));
            }
            moves.push((index, cursor.offset.saturating_add(1)));
        }
        let mut moved = Vec::new();
        for (index, next) in moves {
            if next > subscription.committed[index] && !moved.iter().any(|(known, value)| *known == index && *value >= next) {
                moved.retain(|(known, _)| *known != index);
                moved.push((index, next));
            }
        }
        for (index, next) in &moved {
            let (topic, partition) = topology.locate(subscription.slots[*index]);
            journal.append(name, &topology.topic(topic).name, partition, *next);
        }
        journal.flush(now_ms).map_err(|error| SubscriptionError::Storage(format!("cannot write the cursor journal: {error}")))?;
        for (index, next) in &moved {
            subscription.committed[*index] = subscription.committed[*index].max(*next);
        }
        // A commit that moved something restarts the commit timeout; a repeated one
        // does not keep a stream alive.
        if !moved.is_empty()
            && let Some(entry) = subscription.streams.iter_mut().find(|entry| entry.id == stream)
        {
            entry.waiting_since_ms = Some(now_ms);
        }
        drop(state);
        self.bump();
        Ok(moved.len())
    }

    /// A stream found everything it sent committed: its commit timeout stops.
    pub fn all_committed(&self, name: &str, id: u64) {
        let mut state = self.lock();
        if let Some(stream) = state.get_mut(name).and_then(|s| s.streams.iter_mut().find(|stream| stream.id == id)) {
            stream.waiting_since_ms = None;
        }
    }

    /// Per partition of `name`: committed cursor and owner.
    pub fn stats(&self, name: &str) -> Option<Vec<PartitionStats>> {
        let state = self.lock();
        let subscription = state.get(name)?;
        Some(
            subscription
                .slots
                .iter()
                .enumerate()
                .map(|(index, slot)| PartitionStats {
                    slot: *slot,
                    committed: subscription.committed[index],
                    owner: subscription.owners[index],
                })
                .collect(),
        )
    }

    /// Every subscription's name with its partitions' committed cursors (for `/metrics`).
    pub fn all_committed_cursors(&self) -> Vec<(String, Vec<(u32, u64)>)> {
        let state = self.lock();
        let mut all: Vec<(String, Vec<(u32, u64)>)> = state
            .iter()
            .map(|(name, subscription)| {
                (name.clone(), subscription.slots.iter().copied().zip(subscription.committed.iter().copied()).collect())
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The shards that hold a stream of `name` (to wake after a commit).
    pub fn stream_shards(&self, name: &str) -> u64 {
        self.lock()
            .get(name)
            .map_or(0, |subscription| subscription.streams.iter().fold(0u64, |mask, stream| mask | 1u64 << (stream.shard % 64)))
    }
}

/// One shard's writer of the cursor journal.
pub struct CursorJournal {
    writer: SideLogWriter,
}

impl CursorJournal {
    pub fn new(data_dir: &Path, shard: usize) -> CursorJournal {
        let dir = data_dir.join(CONSUMERS_DIR).join(CURSORS_DIR);
        CursorJournal { writer: SideLogWriter::new(&dir, "cursor journal", CURSORS_SUFFIX, shard, Rotation::PerProcess) }
    }

    fn append(&mut self, name: &str, topic: &str, partition: u32, next: u64) {
        // Names are bounded (64 bytes each): the record always fits.
        let _ = self.writer.append(None, |out| encode_cursor(out, name, topic, partition, next));
    }

    fn flush(&mut self, now_ms: i64) -> io::Result<()> {
        self.writer.flush(now_ms)
    }
}

/// `name_len u16 | name | topic_len u16 | topic | partition u32 | next u64`, framed.
pub fn encode_cursor(out: &mut Vec<u8>, name: &str, topic: &str, partition: u32, next: u64) -> Result<(), FrameError> {
    if 2 + name.len() + 2 + topic.len() + 12 > CURSOR_PAYLOAD_BYTES_MAX {
        return Err(FrameError::TooLarge);
    }
    let start = frame::begin(out);
    for part in [name.as_bytes(), topic.as_bytes()] {
        out.extend_from_slice(&(part.len() as u16).to_le_bytes());
        out.extend_from_slice(part);
    }
    out.extend_from_slice(&partition.to_le_bytes());
    out.extend_from_slice(&next.to_le_bytes());
    frame::finish(out, start);
    Ok(())
}

/// One cursor journal record: `(subscription, topic, partition, next)`.
/// A cursor journal record: subscription, topic, partition, next offset.
pub type CursorRecord<'a> = (&'a str, &'a str, u32, u64);

pub fn decode_cursor(bytes: &[u8]) -> Result<(CursorRecord<'_>, usize), FrameError> {
    let (payload, used) = frame::payload(bytes, 16, CURSOR_PAYLOAD_BYTES_MAX)?;
    let mut at = 0;
    let mut text = || -> Result<&str, FrameError> {
        let len = u16::from_le_bytes(payload.get(at..at + 2).ok_or(FrameError::BadFields)?.try_into().map_err(|_| FrameError::BadFields)?)
            as usize;
        let part = payload.get(at + 2..at + 2 + len).ok_or(FrameError::BadFields)?;
        at += 2 + len;
        std::str::from_utf8(part).map_err(|_| FrameError::BadFields)
    };
    let name = text()?;
    let topic = text()?;
    let rest = payload.get(at..).ok_or(FrameError::BadFields)?;
    if rest.len() != 12 {
        return Err(FrameError::BadFields);
    }
    let partition = u32::from_le_bytes(rest[..4].try_into().map_err(|_| FrameError::BadFields)?);
    let next = u64::from_le_bytes(rest[4..].try_into().map_err(|_| FrameError::BadFields)?);
    Ok(((name, topic, partition, next), used))
}

fn read_definition(path: &Path) -> io::Result<StoredDefinition> {
    let metadata = fs::metadata(path)?;
    if metadata.len() > DEFINITION_BYTES_MAX {
        return Err(io::Error::other("larger than 1 MiB"));
    }
    serde_json::from_slice(&fs::read(path)?).map_err(io::Error::other)
}

fn load_or_make_key(path: &Path) -> io::Result<aws_lc_rs::hmac::Key> {
    let bytes = match fs::read(path) {
        Ok(bytes) if bytes.len() == 32 => bytes,
        Ok(_) => {
            return Err(io::Error::other(format!(
                "{} is not 32 bytes: restore it or remove it (every cursor token changes)",
                path.display()
            )));
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let mut bytes = vec![0u8; 32];
            aws_lc_rs::rand::fill(&mut bytes).map_err(|_| io::Error::other("the system random number generator failed"))?;
            let temporary = path.with_extension("key.tmp");
            {
                use std::os::unix::fs::OpenOptionsExt;
                let mut file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temporary)?;
                file.write_all(&bytes)?;
                file.sync_all()?;
            }
            fs::rename(&temporary, path)?;
            bytes
        }
        Err(error) => return Err(error),
    };
    Ok(aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &bytes))
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // A failed random source leaves 0: ids still count up from there.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

fn slots_of(topics: &[String], topology: &Topology) -> Vec<u32> {
    let mut slots = Vec::new();
    for topic in topics {
        if let Some(index) = topology.by_name(topic.as_bytes()) {
            let topic = topology.topic(index);
            slots.extend(topic.base..topic.base + topic.partitions);
        }
    }
    slots
}

fn slot_index(slots: &[u32], topology: &Topology, topic: &str, partition: u32) -> Option<usize> {
    let index = topology.by_name(topic.as_bytes())?;
    if partition >= topology.topic(index).partitions {
        return None;
    }
    let slot = topology.slot(index, partition);
    slots.iter().position(|known| *known == slot)
}

fn printable(text: &str) -> String {
    text.chars().take(64).map(|c| if c.is_control() { '?' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        Topology::single(4, 3_600_000, 0)
    }

    #[test]
    fn streams_share_partitions_and_commits_move_forward_only() {
        let dir = tempfile::tempdir().unwrap();
        let topology = topology();
        let control = Control::new(1, std::sync::Arc::new(topology.clone()));
        let registry = Subscriptions::open(dir.path(), &topology).unwrap();
        let definition = Definition { topics: vec!["events".into()], read_from: ReadFrom::Earliest };
        assert_eq!(registry.put("s", definition.clone(), "p", &topology, &control), Ok(Put::Created));
        assert_eq!(registry.put("s", definition, "p", &topology, &control), Ok(Put::Exists));
        let other = Definition { topics: vec!["events".into()], read_from: ReadFrom::Latest };
        assert_eq!(registry.put("s", other, "p", &topology, &control), Err(SubscriptionError::Conflict));
        let a = registry.open_stream("s", 0).unwrap();
        let b = registry.open_stream("s", 0).unwrap();
        let (mut owned_a, mut owned_b) = (Vec::new(), Vec::new());
        registry.assignment("s", a, &mut owned_a);
        registry.assignment("s", b, &mut owned_b);
        assert_eq!(owned_a.iter().map(|o| o.slot).collect::<Vec<_>>(), [0, 2]);
        assert_eq!(owned_b.iter().map(|o| o.slot).collect::<Vec<_>>(), [1, 3]);
        let mut journal = CursorJournal::new(dir.path(), 0);
        control.readable_ends[2].store(20, Ordering::Release);
        let token = String::from_utf8(registry.token("s", "events", 2, 12).to_vec()).unwrap();
        let unsent = CursorIn { topic: "events".into(), partition: 2, offset: 12, token };
        assert!(
            matches!(registry.commit("s", a, &[unsent], &control, 0, &mut journal), Err(SubscriptionError::CursorInvalid(_))),
            "only what was sent may be committed"
        );
        assert_eq!(registry.note_sent("s", 2, 0, 10, Some(9)), 0);
        let token = String::from_utf8(registry.token("s", "events", 2, 9).to_vec()).unwrap();
        let cursor = CursorIn { topic: "events".into(), partition: 2, offset: 9, token: token.clone() };
        assert!(matches!(
            registry.commit("s", b, std::slice::from_ref(&cursor), &control, 0, &mut journal),
            Err(SubscriptionError::NotOwner { .. })
        ));
        assert_eq!(registry.commit("s", a, std::slice::from_ref(&cursor), &control, 0, &mut journal), Ok(1));
        let forged = CursorIn { offset: 20, ..cursor.clone() };
        assert!(matches!(registry.commit("s", a, &[forged], &control, 0, &mut journal), Err(SubscriptionError::CursorInvalid(_))));
        let older = CursorIn { offset: 3, token: String::from_utf8(registry.token("s", "events", 2, 3).to_vec()).unwrap(), ..cursor };
        assert_eq!(registry.commit("s", a, &[older], &control, 0, &mut journal), Ok(0), "a cursor never moves back");
        registry.close_stream("s", a);
        registry.assignment("s", b, &mut owned_b);
        assert_eq!(owned_b.len(), 4);
        assert_eq!(owned_b[2], Owned { slot: 2, committed: 10 });
        // A restart reads the journal back and folds it into a snapshot.
        drop(registry);
        let reopened = Subscriptions::open(dir.path(), &topology).unwrap();
        assert_eq!(reopened.stats("s").unwrap()[2].committed, 10);
        assert_eq!(writer::files(&dir.path().join(CONSUMERS_DIR).join(CURSORS_DIR), CURSORS_SUFFIX).unwrap().len(), 1);
    }

    #[test]
    fn more_streams_than_partitions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let topology = Topology::single(1, 3_600_000, 0);
        let control = Control::new(1, std::sync::Arc::new(topology.clone()));
        let registry = Subscriptions::open(dir.path(), &topology).unwrap();
        registry.put("s", Definition { topics: vec!["events".into()], read_from: ReadFrom::Latest }, "p", &topology, &control).unwrap();
        // No stream yet: stream 0 ("no owner") must not commit for the unowned partition.
        let token = String::from_utf8(registry.token("s", "events", 0, 0).to_vec()).unwrap();
        let cursor = CursorIn { topic: "events".into(), partition: 0, offset: 0, token };
        let mut journal = CursorJournal::new(dir.path(), 0);
        assert!(matches!(registry.commit("s", 0, &[cursor], &control, 0, &mut journal), Err(SubscriptionError::NotOwner { .. })));
        registry.open_stream("s", 0).unwrap();
        assert_eq!(registry.open_stream("s", 0), Err(SubscriptionError::NoFreePartitions { partitions: 1 }));
    }

    #[test]
    fn cursor_records_round_trip_and_refuse_damage() {
        let mut out = Vec::new();
        encode_cursor(&mut out, "s", "events", 3, 42).unwrap();
        let ((name, topic, partition, next), used) = decode_cursor(&out).unwrap();
        assert_eq!((name, topic, partition, next, used), ("s", "events", 3, 42, out.len()));
        let last = out.len() - 1;
        out[last] ^= 1;
        assert!(decode_cursor(&out).is_err());
    }
}
