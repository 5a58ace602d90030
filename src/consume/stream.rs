//! Streamed answers: a subscription stream (`GET /v1/subscriptions/{s}/events`) and
//! Server-Sent Events (`GET /v1/topics/{t}/sse`). Each is one chunked answer that goes on
//! until the client leaves, the stream times out, or (a subscription) the stream loses
//! its place. The shard pumps a stream when one of its partitions moved, the
//! subscription changed, or its connection drained what it was given
//! (`shard/consume.rs`); a pump writes only while the connection's output is below
//! `STREAM_OUTPUT_HIGH_WATER_BYTES`, so a slow reader holds back only itself.

use std::sync::atomic::Ordering;

use crate::constants::{SSE_KEEPALIVE_MS, STREAM_LINE_BYTES_MAX, STREAM_OUTPUT_HIGH_WATER_BYTES};
use crate::http::{self, itoa_buf};
use crate::log::{DataDir, StorageError};
use crate::metrics::Control;
use crate::topics::Topology;

use super::query::StreamQuery;
use super::read::{PartitionCursor, write_event};
use super::reorder::{Release, Reorder};
use super::subscriptions::{Owned, Subscriptions};

/// One partition a stream reads.
pub struct Part {
    pub slot: u32,
    pub cursor: PartitionCursor,
    /// The next offset to read (everything below was sent, or is held for the reorder
    /// window).
    pub sent_next: u64,
    /// The committed cursor as last seen (subscriptions).
    pub committed: u64,
}

pub enum Kind {
    Subscription(Box<SubscriptionStream>),
    Sse(Box<SseStream>),
}

pub struct SubscriptionStream {
    pub name: Box<str>,
    pub id: u64,
    pub query: StreamQuery,
    /// The registry generation this stream last looked at (assignment, and committed
    /// cursors).
    pub seen_generation: u64,
    pub committed_seen: u64,
    /// The registry knows this stream waits for a commit.
    pub waiting_commit: bool,
    /// Round-robin start among the parts, so one busy partition cannot starve the rest.
    pub next_part: usize,
    pub reorder: Option<Reorder>,
}

pub struct SseStream {
    /// Only events whose `key.user_id` is this.
    pub key: Option<Box<[u8]>>,
    pub topic: u16,
}

pub struct Stream {
    pub kind: Kind,
    pub parts: Vec<Part>,
    /// Monotonic ms of the last line (or keep-alive) written, and of the last pump.
    pub last_write_ms: u64,
    pub last_pump_ms: u64,
    /// Monotonic ms when the stream ends (`stream_timeout_ms`).
    pub ends_at_ms: Option<u64>,
    /// By name: a key ring reload may renumber or remove partners.
    pub partner: Box<str>,
    /// When the credential the stream was opened with expires (wall-clock ms).
    pub expires_ms: Option<i64>,
    /// Totals for the read log and metrics.
    pub events: u64,
    pub bytes: u64,
    /// The stream is over: its last chunk is written.
    pub ended: bool,
}

/// What a stream needs from the node to make progress.
pub struct Context<'a> {
    pub control: &'a Control,
    pub topology: &'a Topology,
    pub dirs: &'a [DataDir],
    pub subscriptions: &'a Subscriptions,
    /// Monotonic and wall-clock ms now.
    pub now_ms: u64,
    pub wall_ms: i64,
}

/// What a pump did.
#[derive(Debug, Default)]
pub struct Pumped {
    pub events: u64,
    pub bytes: u64,
    /// Events sent again after a rebalance or a timeout (their partition's committed
    /// cursor was below what this stream had read).
    pub redelivered: u64,
    /// Partitions this stream has read to their readable end: wake it when they move.
    pub caught_up: Vec<(u32, u64)>,
    /// Events a reorder window sent late, and sent before their watermark (hold full).
    pub late: u64,
    pub forced: u64,
    /// The stream was ended (by the registry or a storage error); close the connection.
    pub ended: bool,
}

impl Stream {
    /// Runs the stream forward into `out` (the connection's output).
    pub fn pump(&mut self, context: &Context<'_>, out: &mut Vec<u8>) -> Result<Pumped, StorageError> {
        let mut pumped = Pumped::default();
        if self.ended {
            pumped.ended = true;
            return Ok(pumped);
        }
        if self.ends_at_ms.is_some_and(|end| context.now_ms >= end) {
            self.end(out);
            pumped.ended = true;
            return Ok(pumped);
        }
        let result = match &mut self.kind {
            Kind::Subscription(subscription) => pump_subscription(subscription, &mut self.parts, context, out, &mut pumped),
            Kind::Sse(sse) => pump_sse(sse, &mut self.parts, context, out, &mut pumped),
        };
        result?;
        if pumped.ended {
            self.end(out);
            return Ok(pumped);
        }
        if pumped.bytes > 0 {
            self.last_write_ms = context.now_ms;
        } else if context.now_ms >= self.last_write_ms + self.keepalive_ms() {
            self.keepalive(out);
            self.last_write_ms = context.now_ms;
        }
        self.events += pumped.events;
        self.bytes += pumped.bytes;
        Ok(pumped)
    }

    fn keepalive_ms(&self) -> u64 {
        match &self.kind {
            Kind::Subscription(subscription) => subscription.query.batch_flush_timeout_ms,
            Kind::Sse(_) => SSE_KEEPALIVE_MS,
        }
    }

    /// An idle subscription stream sends `{"cursor":null,"events":[]}` (nothing to
    /// commit); SSE a comment.
    fn keepalive(&mut self, out: &mut Vec<u8>) {
        let chunk = http::begin_chunk(out);
        match &self.kind {
            Kind::Subscription(_) => {
                out.extend_from_slice(b"{\"cursor\":null,\"events\":[]}\n");
            }
            Kind::Sse(_) => out.extend_from_slice(b": keep-alive\n\n"),
        }
        http::finish_chunk(out, chunk);
    }

    /// Writes the last chunk: the answer is complete.
    pub fn end(&mut self, out: &mut Vec<u8>) {
        if !self.ended {
            http::end_stream(out);
            self.ended = true;
        }
    }

    /// The subscription stream's name and id, if it is one.
    pub fn subscription(&self) -> Option<(&str, u64)> {
        match &self.kind {
            Kind::Subscription(subscription) => Some((&subscription.name, subscription.id)),
            Kind::Sse(_) => None,
        }
    }

    /// The read log's record kind.
    pub fn read_kind(&self) -> super::readlog::Kind {
        match self.kind {
            Kind::Subscription(_) => super::readlog::Kind::Stream,
            Kind::Sse(_) => super::readlog::Kind::Sse,
        }
    }

    /// Whether a tick should run the stream: a keep-alive or its end is due, or a
    /// reorder window holds events the clock may release.
    pub fn due(&self, now_ms: u64) -> bool {
        let held = matches!(&self.kind, Kind::Subscription(subscription) if subscription.reorder.as_ref().is_some_and(|r| r.held() > 0));
        held || self.ends_at_ms.is_some_and(|end| now_ms >= end) || now_ms >= self.last_write_ms + self.keepalive_ms()
    }

    /// Whether the subscription this stream belongs to changed since it last looked.
    pub fn stale(&self, generation: u64) -> bool {
        matches!(&self.kind, Kind::Subscription(subscription) if subscription.seen_generation != generation)
    }
}

/// Brings `parts` in line with the registry's assignment: partitions kept stay where
/// they are (what they sent is still theirs to commit), new ones start at their
/// committed cursor (so what another stream sent and nobody committed comes again).
fn sync_assignment(subscription: &mut SubscriptionStream, parts: &mut Vec<Part>, context: &Context<'_>) -> Result<bool, StorageError> {
    let generation = context.subscriptions.generation();
    if subscription.seen_generation == generation {
        return Ok(true);
    }
    let mut owned: Vec<Owned> = Vec::new();
    if !context.subscriptions.assignment(&subscription.name, subscription.id, &mut owned) {
        return Ok(false);
    }
    subscription.seen_generation = generation;
    parts.retain(|part| owned.iter().any(|o| o.slot == part.slot));
    if let Some(reorder) = subscription.reorder.as_mut() {
        reorder.retain(|slot| owned.iter().any(|o| o.slot == slot));
    }
    for o in &owned {
        match parts.iter_mut().find(|part| part.slot == o.slot) {
            Some(part) => part.committed = part.committed.max(o.committed),
            None => {
                let (topic, partition) = context.topology.locate(o.slot);
                let dir = &context.dirs[usize::from(topic)];
                let start = o.committed.max(context.control.start_offsets[o.slot as usize].load(Ordering::Acquire));
                let cursor = PartitionCursor::open_hinted(dir, partition, start, &context.control.seek_hints[o.slot as usize])?;
                // Retention may have passed the committed cursor: what it deleted can be
                // neither sent nor waited for, so it counts as neither sent nor pending.
                parts.push(Part { slot: o.slot, cursor, sent_next: start, committed: start });
            }
        }
    }
    parts.sort_by_key(|part| part.slot);
    Ok(true)
}

fn pump_subscription(
    subscription: &mut SubscriptionStream,
    parts: &mut Vec<Part>,
    context: &Context<'_>,
    out: &mut Vec<u8>,
    pumped: &mut Pumped,
) -> Result<(), StorageError> {
    if !sync_assignment(subscription, parts, context)? {
        pumped.ended = true;
        return Ok(());
    }
    refresh_committed(subscription, parts, context);
    let max_uncommitted = u64::from(subscription.query.max_uncommitted);
    let batch_limit = subscription.query.batch_limit as usize;
    let count = parts.len();
    let mut sent_any = false;
    // One limit for the whole stream (SPEC §6: a stream pauses when it holds
    // max_uncommitted events), shared by its partitions in turn.
    let mut pending = uncommitted(parts, &subscription.reorder);
    for step in 0..count {
        if out.len() >= STREAM_OUTPUT_HIGH_WATER_BYTES {
            break;
        }
        let index = (subscription.next_part + step) % count;
        let part = &mut parts[index];
        let end = context.control.readable_ends[part.slot as usize].load(Ordering::Acquire);
        let (topic, partition) = context.topology.locate(part.slot);
        let topic_name = &context.topology.topic(topic).name;
        let room = max_uncommitted.saturating_sub(pending);
        if room == 0 {
            break;
        }
        // Nothing new here (and nothing held to release): only its wake-up to keep.
        let holding = subscription.reorder.as_ref().is_some_and(|reorder| reorder.holds(part.slot));
        if end <= part.sent_next && !holding {
            pumped.caught_up.push((part.slot, part.sent_next));
            continue;
        }
        let limit = batch_limit.min(room as usize);
        let chunk = http::begin_chunk(out);
        let line_start = out.len();
        out.extend_from_slice(b"{\"cursor\":");
        let cursor_at = out.len();
        out.extend_from_slice(b",\"events\":[");
        let Taken { written, first, last } = take_events(subscription.reorder.as_mut(), part, end, limit, context.wall_ms, out)?;
        part.sent_next = part.cursor.position();
        part.cursor.leave_hint(&context.control.seek_hints[part.slot as usize]);
        if written == 0 {
            out.truncate(chunk);
            if part.sent_next >= end {
                pumped.caught_up.push((part.slot, part.sent_next));
            }
            continue;
        }
        out.extend_from_slice(b"]}\n");
        let mut cursor_json = Vec::with_capacity(128);
        match last {
            Some(offset) => write_cursor(&mut cursor_json, context.subscriptions, &subscription.name, topic_name, partition, offset),
            None => cursor_json.extend_from_slice(b"null"),
        }
        out.splice(cursor_at..cursor_at, cursor_json);
        http::finish_chunk(out, chunk);
        pending += written;
        pumped.events += written;
        pumped.bytes += (out.len() - line_start) as u64;
        pumped.redelivered += context.subscriptions.note_sent(&subscription.name, part.slot, first.unwrap_or(0), written, last);
        sent_any = true;
        if part.sent_next >= end {
            pumped.caught_up.push((part.slot, part.sent_next));
        }
    }
    if count > 0 {
        subscription.next_part = (subscription.next_part + 1) % count;
    }
    if let Some(reorder) = subscription.reorder.as_mut() {
        (pumped.late, pumped.forced) = reorder.take_counts();
    }
    note_commit_wait(subscription, parts, sent_any, context);
    Ok(())
}

/// The commit timeout runs while something sent waits for its commit.
fn note_commit_wait(subscription: &mut SubscriptionStream, parts: &[Part], sent_any: bool, context: &Context<'_>) {
    if sent_any && !subscription.waiting_commit {
        context.subscriptions.sent(&subscription.name, subscription.id, context.wall_ms);
        subscription.waiting_commit = true;
    } else if !sent_any && subscription.waiting_commit && uncommitted(parts, &subscription.reorder) == 0 {
        context.subscriptions.all_committed(&subscription.name, subscription.id);
        subscription.waiting_commit = false;
    }
}

/// Takes the committed cursors a commit may have moved since the last look (a commit
/// arrives on any shard). A cursor retention has passed counts from the oldest offset
/// left.
fn refresh_committed(subscription: &mut SubscriptionStream, parts: &mut [Part], context: &Context<'_>) {
    let generation = context.subscriptions.generation();
    if subscription.committed_seen == generation {
        return;
    }
    subscription.committed_seen = generation;
    let Some(stats) = context.subscriptions.stats(&subscription.name) else { return };
    for part in parts.iter_mut() {
        if let Some(row) = stats.iter().find(|row| row.slot == part.slot) {
            let start = context.control.start_offsets[part.slot as usize].load(Ordering::Acquire);
            part.committed = part.committed.max(row.committed).max(start.min(part.sent_next));
        }
    }
}

/// Events delivered and not committed, over `parts` (held events are not delivered).
fn uncommitted(parts: &[Part], reorder: &Option<Reorder>) -> u64 {
    parts
        .iter()
        .map(|part| {
            let delivered_next = reorder.as_ref().map_or(part.sent_next, |r| r.safe_next(part.slot, part.sent_next));
            delivered_next.saturating_sub(part.committed)
        })
        .sum()
}

/// What one batch took from a partition.
struct Taken {
    written: u64,
    first: Option<u64>,
    /// The offset the batch's cursor commits (`None`: nothing may be committed yet).
    last: Option<u64>,
}

/// Writes up to `limit` events of `part` below `end` into `out`, comma-separated: in
/// offset order, or through the reorder window (held events go out when due, late ones
/// at once with `"late":true`, and the cursor never passes a held one).
fn take_events(
    reorder: Option<&mut Reorder>,
    part: &mut Part,
    end: u64,
    limit: usize,
    wall_ms: i64,
    out: &mut Vec<u8>,
) -> Result<Taken, StorageError> {
    let mut taken = Taken { written: 0, first: None, last: None };
    let mut skipped = 0;
    let Some(reorder) = reorder else {
        let start = out.len();
        part.cursor.read(end, limit, &mut skipped, |offset, _, event| {
            if taken.written > 0 {
                out.push(b',');
            }
            write_event(out, event);
            taken.first.get_or_insert(offset);
            taken.last = Some(offset);
            taken.written += 1;
            out.len() - start < STREAM_LINE_BYTES_MAX
        })?;
        return Ok(taken);
    };
    // Read what there is into the hold while it has room, then release what is due.
    let slot = part.slot;
    if reorder.has_room() {
        part.cursor.read(end, limit.max(1024), &mut skipped, |offset, ingest_ms, event| {
            reorder.hold(slot, offset, ingest_ms, event);
            reorder.has_room()
        })?;
    }
    let position = part.cursor.position();
    reorder.release(slot, position, position >= end, wall_ms, limit, |release: Release<'_>| {
        if taken.written > 0 {
            out.push(b',');
        }
        let at = out.len();
        write_event(out, release.event);
        if release.late {
            // `"late":true` goes into the event object, before its closing brace.
            if let Some(close) = out[at..].iter().rposition(|b| *b == b'}') {
                out.splice(at + close..at + close, b",\"late\":true".iter().copied());
            }
        }
        taken.first.get_or_insert(release.offset);
        taken.written += 1;
    });
    // The cursor never passes a held event; none to give before offset 0.
    taken.last = reorder.safe_next(slot, position).checked_sub(1);
    Ok(taken)
}

/// `{"topic":T,"partition":P,"offset":O,"token":"..."}`.
fn write_cursor(out: &mut Vec<u8>, subscriptions: &Subscriptions, name: &str, topic: &str, partition: u32, offset: u64) {
    super::read::write_position(out, topic, partition, offset);
    out.extend_from_slice(b",\"token\":\"");
    out.extend_from_slice(&subscriptions.token(name, topic, partition, offset));
    out.extend_from_slice(b"\"}");
}

fn pump_sse(
    sse: &mut SseStream,
    parts: &mut [Part],
    context: &Context<'_>,
    out: &mut Vec<u8>,
    pumped: &mut Pumped,
) -> Result<(), StorageError> {
    for index in 0..parts.len() {
        if out.len() >= STREAM_OUTPUT_HIGH_WATER_BYTES {
            break;
        }
        let end = context.control.readable_ends[parts[index].slot as usize].load(Ordering::Acquire);
        if end <= parts[index].sent_next {
            pumped.caught_up.push((parts[index].slot, parts[index].sent_next));
            continue;
        }
        let mut skipped = 0;
        let mut matched: Vec<(u64, std::ops::Range<usize>)> = Vec::new();
        let mut scratch = Vec::new();
        let key = sse.key.as_deref();
        parts[index].cursor.read(end, 1000, &mut skipped, |offset, _, event| {
            if key.is_none_or(|key| event_has_user(event, key)) {
                let start = scratch.len();
                write_event(&mut scratch, event);
                matched.push((offset, start..scratch.len()));
            }
            scratch.len() < STREAM_OUTPUT_HIGH_WATER_BYTES
        })?;
        parts[index].sent_next = parts[index].cursor.position();
        parts[index].cursor.leave_hint(&context.control.seek_hints[parts[index].slot as usize]);
        for (offset, range) in matched {
            let chunk = http::begin_chunk(out);
            let start = out.len();
            out.extend_from_slice(b"id: ");
            write_sse_id(out, parts, index, offset + 1, context.topology);
            out.extend_from_slice(b"\ndata: ");
            out.extend_from_slice(&scratch[range]);
            out.extend_from_slice(b"\n\n");
            http::finish_chunk(out, chunk);
            pumped.events += 1;
            pumped.bytes += (out.len() - start) as u64;
        }
        if parts[index].sent_next >= end {
            pumped.caught_up.push((parts[index].slot, parts[index].sent_next));
        }
    }
    Ok(())
}

/// The SSE event id: where to resume, `partition:next` for each partition the stream
/// reads (comma-separated), with `next` of partition `at` set to `next`.
fn write_sse_id(out: &mut Vec<u8>, parts: &[Part], at: usize, next: u64, topology: &Topology) {
    let mut number = itoa_buf::Buffer::new();
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        let (_, partition) = topology.locate(part.slot);
        out.extend_from_slice(number.format(u64::from(partition)));
        out.push(b':');
        out.extend_from_slice(number.format(if index == at { next } else { part.sent_next }));
    }
}

/// Parses a `Last-Event-ID` written by [`write_sse_id`]: `(partition, next)` pairs.
pub fn parse_sse_id(text: &[u8]) -> Option<Vec<(u32, u64)>> {
    if text.is_empty() || text.len() > 64 * 1024 {
        return None;
    }
    let mut pairs = Vec::new();
    for item in text.split(|b| *b == b',') {
        let colon = item.iter().position(|b| *b == b':')?;
        let number = |digits: &[u8]| -> Option<u64> {
            if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(digits).ok()?.parse().ok()
        };
        let partition = u32::try_from(number(&item[..colon])?).ok()?;
        pairs.push((partition, number(&item[colon + 1..])?));
    }
    Some(pairs)
}

/// Whether the stored event's `key.user_id` is `key`: a substring search first (most
/// events of the partition are other users'), then an exact parse of the candidates.
fn event_has_user(event: &[u8], key: &[u8]) -> bool {
    if memchr::memmem::find(event, key).is_none() && !event.contains(&b'\\') {
        return false;
    }
    serde_json::from_slice::<super::read::StoredKey<'_>>(event).is_ok_and(|stored| stored.key.user_id.as_bytes() == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_ids_round_trip() {
        assert_eq!(parse_sse_id(b"0:15,3:7"), Some(vec![(0, 15), (3, 7)]));
        for bad in [&b""[..], b"0", b"0:", b":1", b"0:1,", b"x:1", b"0:-1"] {
            assert_eq!(parse_sse_id(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn key_filter_is_exact() {
        let event = br#"{"event_id":"e","key":{"user_id":"u_1"},"payload":{"note":"u_12"}}"#;
        assert!(event_has_user(event, b"u_1"));
        assert!(!event_has_user(event, b"u_12"));
        assert!(!event_has_user(event, b"u_2"));
        let escaped = br#"{"key":{"user_id":"u\u005f1"}}"#;
        assert!(event_has_user(escaped, b"u_1"));
    }
}
