//! The dead-letter queue (SPEC §9, docs/API.md): an authenticated request, or one line
//! of a batch, refused for what it says (`schema_violation`, `blocked_field`,
//! `geo_not_allowed`, ...) is kept here with its reason, so an operator can see what a
//! partner sent (`GET /admin/dlq`, `sluice dlq`) and replay it once the cause is fixed.
//!
//! Each shard appends to `data_dir/dlq/shard-<k>-<hour>.dlq`, buffered per loop and
//! written before the loop's answers go out (`sidelog::writer`). Files are hourly so
//! [`DlqWriter::prune`] expires whole files past the retention. The directory is bounded
//! by `dlq_bytes_max` across shards: past it a dead letter is counted as dropped and the
//! alarm is raised, and nothing old is deleted to make room (it is evidence).
//!
//! Record: `len u32 | crc32c u32 | payload`, little-endian, payload =
//! `version u8 (1) | received_ms i64 | id u64 | line u32 | reason_len u8 | detail_len
//! u16 | partner_len u16 | kid_len u16 | topic_len u16 | event_type_len u16 |
//! event_id_len u16 | path_len u16 | identity_len u16 | ip_len u8 (0, 4 or 16) |
//! headers_count u16 | headers_len u16 | body_len u32 | reason | detail | partner | kid |
//! topic | event_type | event_id | path | identity | ip | headers | body`, where
//! `headers` = `headers_count` times `name_len u16 | value_len u16 | name | value`. The
//! lengths add up to the payload exactly; anything else is refused.
//!
//! Ids: `shard << 48 | sequence`. A shard's sequence is strictly increasing and never
//! below the record's arrival in ms since 2020-01-01 (`max(previous + 1, received_ms -
//! epoch)`); a writer starts from the highest id in its shard's newest file. So an id is
//! not repeated after a restart whether the last records reached the disk (the file
//! says how far the sequence went) or were lost with the page cache (the clock has moved
//! on), and the 48 bits last until the year 10889. It could repeat only if, at once, the
//! wall clock was set back across an hour boundary and the records after it were lost.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use base64::Engine;

use crate::constants::{
    BODY_BYTES_MAX_CEILING, DLQ_DETAIL_BYTES_MAX, DLQ_FILE_PERIOD_MS, DLQ_HEADERS_BYTES_MAX, DLQ_HEADERS_COUNT_MAX, DLQ_REASON_BYTES_MAX,
    DLQ_REASON_LABELS_MAX, SHARDS_MAX,
};
use crate::sidelog::frame::{self, FRAME_BYTES, FrameError};
pub use crate::sidelog::quarantine::Transport;
use crate::sidelog::writer::{self, Bound, Refused, Rotation, SideLogWriter};

/// The directory under `data_dir`.
pub const DLQ_DIR: &str = "dlq";
pub const SUFFIX: &str = ".dlq";
/// `line` of a dead letter that is a whole request, not one line of a batch.
pub const LINE_WHOLE_REQUEST: u32 = u32::MAX;

const FORMAT_VERSION: u8 = 1;
/// 2020-01-01T00:00:00Z: the sequence's floor counts ms from here.
const ID_EPOCH_MS: i64 = 1_577_836_800_000;
const ID_SEQUENCE_BITS: u32 = 48;
const ID_SEQUENCE_MAX: u64 = (1 << ID_SEQUENCE_BITS) - 1;
const _: () = assert!(SHARDS_MAX as u64 <= 1 << (u64::BITS - ID_SEQUENCE_BITS));

/// Version, two times and the line, then the lengths (layout in the module comment).
const PAYLOAD_FIXED_BYTES: usize = 1 + 8 + 8 + 4 + 1 + 8 * 2 + 1 + 2 + 2 + 4;
/// `name_len u16 | value_len u16` before each header.
const HEADER_LENGTHS_BYTES: usize = 4;
const HEADERS_BLOCK_BYTES_MAX: usize = DLQ_HEADERS_COUNT_MAX * HEADER_LENGTHS_BYTES + DLQ_HEADERS_BYTES_MAX;
const _: () = assert!(HEADERS_BLOCK_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(DLQ_HEADERS_COUNT_MAX <= u16::MAX as usize && DLQ_REASON_BYTES_MAX <= u8::MAX as usize);
const _: () = assert!(DLQ_DETAIL_BYTES_MAX <= u16::MAX as usize);
/// Largest payload written and read back: every part at its limit (the seven `u16` ones
/// at `u16::MAX`, a body at the ceiling of `ingest.body_bytes_max`).
pub const DLQ_PAYLOAD_BYTES_MAX: usize = PAYLOAD_FIXED_BYTES
    + DLQ_REASON_BYTES_MAX
    + DLQ_DETAIL_BYTES_MAX
    + 7 * u16::MAX as usize
    + 16
    + HEADERS_BLOCK_BYTES_MAX
    + BODY_BYTES_MAX_CEILING;
const _: () = assert!(DLQ_PAYLOAD_BYTES_MAX <= u32::MAX as usize);
/// Read-ahead of the reader; a record larger than this is read in one piece anyway.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// One dead letter, borrowed: from the caller to [`encode`] or [`DlqWriter::append`], or
/// from the bytes [`decode`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetter<'a> {
    /// Server clock when the request arrived (Unix ms).
    pub received_ms: i64,
    /// Unique in the data directory (module comment); printed by [`format_id`].
    pub id: u64,
    /// The snake_case error code the request or line was refused with, at most
    /// `DLQ_REASON_BYTES_MAX` bytes.
    pub reason: &'a str,
    /// Human text, at most `DLQ_DETAIL_BYTES_MAX` bytes. Never the value of a blocked
    /// field: the caller names the field, not what it held.
    pub detail: &'a str,
    pub partner: &'a str,
    pub kid: &'a str,
    /// The topic, event type and event id as sent; empty when unknown (a line that is
    /// not JSON, a refusal before the body was read).
    pub topic: &'a [u8],
    pub event_type: &'a [u8],
    pub event_id: &'a [u8],
    /// Index of the line in a batch, or [`LINE_WHOLE_REQUEST`].
    pub line: u32,
    pub path: &'a [u8],
    /// The request's head lines, credentials already replaced by the caller ([`redact`]).
    pub headers: Headers<'a>,
    /// The whole body as received (for a batch: the whole batch).
    pub body: &'a [u8],
    /// How the request came. `tls_identity: Some("")` is stored, and read back, as `None`.
    pub transport: Transport<'a>,
}

/// A dead letter's headers: `(name, value)` pairs, either the caller's slice or the
/// block [`decode`] checked. Two compare equal when their pairs are the same.
#[derive(Clone, Copy)]
pub struct Headers<'a>(HeadersRepr<'a>);

#[derive(Clone, Copy)]
enum HeadersRepr<'a> {
    Pairs(&'a [Header<'a>]),
    /// `count` headers in the stored layout, checked whole by `Headers::parse`.
    Stored {
        count: usize,
        block: &'a [u8],
    },
}

impl<'a> Headers<'a> {
    pub const EMPTY: Headers<'static> = Headers(HeadersRepr::Pairs(&[]));

    pub fn new(pairs: &'a [Header<'a>]) -> Headers<'a> {
        Headers(HeadersRepr::Pairs(pairs))
    }

    pub fn len(&self) -> usize {
        match self.0 {
            HeadersRepr::Pairs(pairs) => pairs.len(),
            HeadersRepr::Stored { count, .. } => count,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = Header<'a>> + use<'a> {
        let (pairs, mut block, count) = match self.0 {
            HeadersRepr::Pairs(pairs) => (pairs, &[][..], 0),
            HeadersRepr::Stored { count, block } => (&[][..], block, count),
        };
        let stored = std::iter::from_fn(move || {
            let (header, rest) = split_header(block)?;
            block = rest;
            Some(header)
        });
        pairs.iter().copied().chain(stored.take(count))
    }

    /// Bytes of the names and values together.
    fn bytes(&self) -> usize {
        self.iter().map(|(name, value)| name.len() + value.len()).sum()
    }

    /// The longest prefix within `DLQ_HEADERS_COUNT_MAX` and `DLQ_HEADERS_BYTES_MAX`.
    fn within_bounds(self) -> Headers<'a> {
        let HeadersRepr::Pairs(pairs) = self.0 else { return self };
        let mut bytes = 0;
        let fitting = pairs.iter().take(DLQ_HEADERS_COUNT_MAX).take_while(|(name, value)| {
            bytes += name.len() + value.len();
            bytes <= DLQ_HEADERS_BYTES_MAX
        });
        Headers::new(&pairs[..fitting.count()])
    }

    /// `count` headers filling `block` exactly, within the bounds.
    fn parse(block: &'a [u8], count: usize) -> Result<Headers<'a>, FrameError> {
        if count > DLQ_HEADERS_COUNT_MAX {
            return Err(FrameError::BadFields);
        }
        let mut rest = block;
        for _ in 0..count {
            rest = split_header(rest).ok_or(FrameError::BadFields)?.1;
        }
        // Each header took its four length bytes from the block, so this cannot underflow.
        let values_bytes = block.len() - count * HEADER_LENGTHS_BYTES;
        if !rest.is_empty() || values_bytes > DLQ_HEADERS_BYTES_MAX {
            return Err(FrameError::BadFields);
        }
        Ok(Headers(HeadersRepr::Stored { count, block }))
    }
}

/// One `(name, value)` pair.
pub type Header<'a> = (&'a [u8], &'a [u8]);

/// What a credential header's value is stored as.
pub const REDACTED: &[u8] = b"<redacted>";
/// Headers whose values are credentials (a bearer token, the HMAC signatures).
const REDACTED_HEADERS: [&[u8]; 5] = [b"authorization", b"x-signature", b"webhook-signature", b"cookie", b"proxy-authorization"];

/// `value`, or [`REDACTED`] if `name` is a credential header (any case): what the caller
/// puts in a dead letter's headers.
pub fn redact<'a>(name: &[u8], value: &'a [u8]) -> &'a [u8] {
    if REDACTED_HEADERS.iter().any(|redacted| redacted.eq_ignore_ascii_case(name)) { REDACTED } else { value }
}

/// The header at the start of a stored block and the rest of the block.
fn split_header(block: &[u8]) -> Option<(Header<'_>, &[u8])> {
    let [name_low, name_high, value_low, value_high, rest @ ..] = block else { return None };
    let name_len = usize::from(u16::from_le_bytes([*name_low, *name_high]));
    let value_len = usize::from(u16::from_le_bytes([*value_low, *value_high]));
    let name = rest.get(..name_len)?;
    let value = rest.get(name_len..name_len + value_len)?;
    Some(((name, value), &rest[name_len + value_len..]))
}

impl PartialEq for Headers<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Headers<'_> {}

impl fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lossy = self.iter().map(|(name, value)| (String::from_utf8_lossy(name), String::from_utf8_lossy(value)));
        f.debug_list().entries(lossy).finish()
    }
}

/// `d_` and the id in 16 lowercase hex digits.
pub fn format_id(id: u64) -> [u8; 18] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = *b"d_0000000000000000";
    for (index, digit) in out[2..].iter_mut().enumerate() {
        *digit = HEX[(id >> (60 - 4 * index) & 0xf) as usize];
    }
    out
}

/// The id of `d_<16 hex digits>` (either case), as [`format_id`] prints it.
pub fn parse_id(text: &str) -> Option<u64> {
    let digits = text.strip_prefix("d_")?;
    if digits.len() != 16 || !digits.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// The client address's octets (4 or 16 of them used).
fn ip_octets(ip: Option<IpAddr>) -> ([u8; 16], usize) {
    match ip {
        Some(IpAddr::V4(v4)) => {
            let mut octets = [0; 16];
            octets[..4].copy_from_slice(&v4.octets());
            (octets, 4)
        }
        Some(IpAddr::V6(v6)) => (v6.octets(), 16),
        None => ([0; 16], 0),
    }
}

/// Reason, detail, partner, kid, topic, event type, event id, path, identity: the parts
/// before the address, in stored order.
fn texts<'a>(letter: &DeadLetter<'a>) -> [&'a [u8]; 9] {
    let identity = letter.transport.tls_identity.unwrap_or_default();
    let DeadLetter { reason, detail, partner, kid, topic, event_type, event_id, path, .. } = *letter;
    [reason.as_bytes(), detail.as_bytes(), partner.as_bytes(), kid.as_bytes(), topic, event_type, event_id, path, identity.as_bytes()]
}

/// Appends the framed record to `out`. A part over its limit (reason
/// `DLQ_REASON_BYTES_MAX`, detail `DLQ_DETAIL_BYTES_MAX`, more than
/// `DLQ_HEADERS_COUNT_MAX` headers or `DLQ_HEADERS_BYTES_MAX` of them, a body over
/// `BODY_BYTES_MAX_CEILING`, anything else over its `u16` length) is `TooLarge` and
/// appends nothing: [`decode`] would refuse the record, and with it the rest of the file.
pub fn encode(letter: &DeadLetter<'_>, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let texts = texts(letter);
    let (ip, ip_len) = ip_octets(letter.transport.client_ip);
    let headers_bytes = letter.headers.bytes();
    let too_large = texts[0].len() > DLQ_REASON_BYTES_MAX
        || texts[1].len() > DLQ_DETAIL_BYTES_MAX
        || texts.iter().any(|text| text.len() > usize::from(u16::MAX))
        || letter.headers.len() > DLQ_HEADERS_COUNT_MAX
        || headers_bytes > DLQ_HEADERS_BYTES_MAX
        || letter.body.len() > BODY_BYTES_MAX_CEILING;
    if too_large {
        return Err(FrameError::TooLarge);
    }
    let headers_len = letter.headers.len() * HEADER_LENGTHS_BYTES + headers_bytes;
    let start = frame::begin(out);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&letter.received_ms.to_le_bytes());
    out.extend_from_slice(&letter.id.to_le_bytes());
    out.extend_from_slice(&letter.line.to_le_bytes());
    out.push(texts[0].len() as u8);
    for text in &texts[1..] {
        out.extend_from_slice(&(text.len() as u16).to_le_bytes());
    }
    out.push(ip_len as u8);
    out.extend_from_slice(&(letter.headers.len() as u16).to_le_bytes());
    out.extend_from_slice(&(headers_len as u16).to_le_bytes());
    out.extend_from_slice(&(letter.body.len() as u32).to_le_bytes());
    for text in texts {
        out.extend_from_slice(text);
    }
    out.extend_from_slice(&ip[..ip_len]);
    for (name, value) in letter.headers.iter() {
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(value);
    }
    out.extend_from_slice(letter.body);
    frame::finish(out, start);
    Ok(())
}

/// The `N` bytes at `at` of the fixed part (always there: the frame's minimum length).
fn fixed<const N: usize>(payload: &[u8], at: usize) -> [u8; N] {
    payload.get(at..at + N).and_then(|bytes| bytes.try_into().ok()).unwrap_or([0; N])
}

/// Decodes the record at the start of `bytes`; returns it and the bytes it used. Every
/// length is checked against its limit and the lengths must fill the payload exactly.
/// Never panics.
pub fn decode(bytes: &[u8]) -> Result<(DeadLetter<'_>, usize), FrameError> {
    let (payload, used) = frame::payload(bytes, PAYLOAD_FIXED_BYTES, DLQ_PAYLOAD_BYTES_MAX)?;
    let u16_at = |at: usize| usize::from(u16::from_le_bytes(fixed(payload, at)));
    let mut lengths = [usize::from(payload[21]); 9];
    for (index, len) in lengths.iter_mut().enumerate().skip(1) {
        *len = u16_at(20 + 2 * index);
    }
    let ip_len = usize::from(payload[38]);
    let (headers_count, headers_len) = (u16_at(39), u16_at(41));
    let body_len = u32::from_le_bytes(fixed(payload, 43)) as usize;
    let within = payload[0] == FORMAT_VERSION
        && lengths[0] <= DLQ_REASON_BYTES_MAX
        && lengths[1] <= DLQ_DETAIL_BYTES_MAX
        && matches!(ip_len, 0 | 4 | 16)
        && body_len <= BODY_BYTES_MAX_CEILING
        && PAYLOAD_FIXED_BYTES + lengths.iter().sum::<usize>() + ip_len + headers_len + body_len == payload.len();
    if !within {
        return Err(FrameError::BadFields);
    }
    let mut rest = &payload[PAYLOAD_FIXED_BYTES..];
    let mut texts = [&[][..]; 9];
    for (text, len) in texts.iter_mut().zip(lengths) {
        (*text, rest) = rest.split_at(len);
    }
    let (ip, rest) = rest.split_at(ip_len);
    let (headers, body) = rest.split_at(headers_len);
    let client_ip = match ip_len {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(ip).map_err(|_| FrameError::BadFields)?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(ip).map_err(|_| FrameError::BadFields)?)),
        _ => None,
    };
    let identity = utf8(texts[8])?;
    let letter = DeadLetter {
        received_ms: i64::from_le_bytes(fixed(payload, 1)),
        id: u64::from_le_bytes(fixed(payload, 9)),
        line: u32::from_le_bytes(fixed(payload, 17)),
        reason: utf8(texts[0])?,
        detail: utf8(texts[1])?,
        partner: utf8(texts[2])?,
        kid: utf8(texts[3])?,
        topic: texts[4],
        event_type: texts[5],
        event_id: texts[6],
        path: texts[7],
        headers: Headers::parse(headers, headers_count)?,
        body,
        transport: Transport { tls_identity: (!identity.is_empty()).then_some(identity), client_ip },
    };
    Ok((letter, used))
}

fn utf8(bytes: &[u8]) -> Result<&str, FrameError> {
    std::str::from_utf8(bytes).map_err(|_| FrameError::BadFields)
}

/// Counters shared by every shard's writer and the metrics endpoint.
#[derive(Debug, Default)]
pub struct DlqCounters {
    /// Bytes in the DLQ directory: the shared [`Bound`]'s counter. Start it at
    /// [`directory_bytes`].
    pub bytes: AtomicU64,
    /// Dead letters not kept: the directory was full, one was too large to encode, or a
    /// write failed.
    pub dropped: AtomicU64,
    /// Raised when the directory is full and a dead letter was refused; lowered when a
    /// prune makes room again.
    pub alarm: AtomicBool,
    /// Written dead letters per reason, at most `DLQ_REASON_LABELS_MAX` reasons and `other`.
    written_by_reason: Mutex<BTreeMap<String, u64>>,
}

impl DlqCounters {
    pub fn starting_at(bytes: u64) -> DlqCounters {
        DlqCounters { bytes: AtomicU64::new(bytes), ..DlqCounters::default() }
    }

    /// `(reason, dead letters written)` in reason order.
    pub fn written_by_reason(&self) -> Vec<(String, u64)> {
        let counts = self.written_by_reason.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        counts.iter().map(|(reason, count)| (reason.clone(), *count)).collect()
    }

    /// Adds a flush's counts: once per flush, so the lock is off the per-record path.
    fn add_written(&self, tally: &[(String, u64)]) {
        let mut counts = self.written_by_reason.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (reason, count) in tally.iter().filter(|(_, count)| *count > 0) {
            if let Some(total) = counts.get_mut(reason) {
                *total += count;
            } else if counts.len() < DLQ_REASON_LABELS_MAX {
                counts.insert(reason.clone(), *count);
            } else {
                *counts.entry("other".to_owned()).or_default() += count;
            }
        }
    }

    fn give_back(&self, bytes: u64) {
        let _ = self.bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| Some(now.saturating_sub(bytes)));
    }
}

/// One shard's writer: the side-log writer with hourly files, within the directory's
/// byte bound (`dlq_bytes_max` across shards).
pub struct DlqWriter {
    log: SideLogWriter,
    shard: u64,
    bytes_max: u64,
    /// The last sequence given (0: none yet).
    sequence: u64,
    /// Dead letters appended since the last flush, and their bytes.
    pending_records: u64,
    pending_bytes: u64,
    /// Per reason, since the last flush; entries stay (at 0) so a reason seen before
    /// costs no allocation. At most `DLQ_REASON_LABELS_MAX` and `other`.
    tally: Vec<(String, u64)>,
}

impl DlqWriter {
    /// Bytes its buffer holds allocated (for the memory budget).
    pub fn buffer_bytes(&self) -> u64 {
        self.log.buffer_bytes()
    }

    /// Shard `shard`'s writer over `dir` (`data_dir/dlq`). Its ids go on after the
    /// highest one in this shard's newest file; `Err` if that file cannot be read.
    pub fn open(dir: &Path, shard: usize, bytes_max: u64) -> io::Result<DlqWriter> {
        assert!(shard < SHARDS_MAX, "shard {shard} does not fit the id's shard bits");
        let sequence = last_sequence(dir, shard)?;
        Ok(DlqWriter {
            log: SideLogWriter::new(dir, "dead-letter queue", SUFFIX, shard, Rotation::Period { period_ms: DLQ_FILE_PERIOD_MS }),
            shard: shard as u64,
            bytes_max,
            sequence,
            pending_records: 0,
            pending_bytes: 0,
            tally: Vec::new(),
        })
    }

    /// Keeps `letter` for the next flush under a new id, which it returns (`letter.id` is
    /// not used). A detail over `DLQ_DETAIL_BYTES_MAX` is cut at a character boundary and
    /// headers past `DLQ_HEADERS_COUNT_MAX` or `DLQ_HEADERS_BYTES_MAX` are left out (the
    /// first ones that fit are kept), rather than lose the dead letter. Refused (and
    /// counted as dropped) past the directory's bound, which raises the alarm, or when
    /// another part is over its limit.
    pub fn append(&mut self, letter: &DeadLetter<'_>, counters: &DlqCounters) -> Result<u64, Refused> {
        let floor = u64::try_from(letter.received_ms.saturating_sub(ID_EPOCH_MS)).unwrap_or(0);
        let sequence = floor.max(self.sequence + 1);
        if sequence > ID_SEQUENCE_MAX {
            // Year 10889, or 2^48 dead letters: refusing keeps the ids unique.
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::Full);
        }
        let id = self.shard << ID_SEQUENCE_BITS | sequence;
        let stored = DeadLetter {
            id,
            detail: cut_at_char_boundary(letter.detail, DLQ_DETAIL_BYTES_MAX),
            headers: letter.headers.within_bounds(),
            ..*letter
        };
        let bound = Bound { bytes: &counters.bytes, max: self.bytes_max };
        let mut added = 0;
        let result = self.log.append(Some(bound), |out| {
            let before = out.len();
            encode(&stored, out)?;
            added = out.len() - before;
            Ok(())
        });
        match result {
            Ok(()) => {
                self.sequence = sequence;
                self.pending_records += 1;
                self.pending_bytes += added as u64;
                self.count(letter.reason);
                Ok(id)
            }
            Err(refused) => {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                if refused == Refused::Full {
                    counters.alarm.store(true, Ordering::Relaxed);
                }
                Err(refused)
            }
        }
    }

    fn count(&mut self, reason: &str) {
        if let Some((_, count)) = self.tally.iter_mut().find(|(known, _)| known == reason) {
            *count += 1;
            return;
        }
        let label = if self.tally.len() < DLQ_REASON_LABELS_MAX { reason } else { "other" };
        match self.tally.iter_mut().find(|(known, _)| known == label) {
            Some((_, count)) => *count += 1,
            None => self.tally.push((label.to_owned(), 1)),
        }
    }

    /// Writes what was appended this loop and counts it per reason. A failed write drops
    /// the loop's dead letters (counted) and gives their bytes back to the bound: the
    /// side-log writer opens a new file at the next flush.
    pub fn flush(&mut self, now_ms: i64, counters: &DlqCounters) {
        if self.pending_records == 0 {
            return;
        }
        match self.log.flush(now_ms) {
            Ok(()) => counters.add_written(&self.tally),
            Err(_) => {
                counters.dropped.fetch_add(self.pending_records, Ordering::Relaxed);
                counters.give_back(self.pending_bytes);
            }
        }
        self.pending_records = 0;
        self.pending_bytes = 0;
        self.tally.iter_mut().for_each(|(_, count)| *count = 0);
    }

    /// Deletes this shard's files whose every dead letter is older than `retention_ms`,
    /// gives their bytes back to the bound, and lowers the alarm if that made room.
    pub fn prune(&mut self, now_ms: i64, retention_ms: i64, counters: &DlqCounters) {
        let keep_periods = retention_ms.max(0).saturating_add(DLQ_FILE_PERIOD_MS - 1) / DLQ_FILE_PERIOD_MS;
        let freed = self.log.prune(now_ms, keep_periods);
        if freed > 0 {
            counters.give_back(freed);
            if counters.bytes.load(Ordering::Relaxed) < self.bytes_max {
                counters.alarm.store(false, Ordering::Relaxed);
            }
        }
    }
}

fn cut_at_char_boundary(text: &str, bytes_max: usize) -> &str {
    let mut end = bytes_max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The highest sequence of `shard`'s ids in its newest file (0 if it has none).
fn last_sequence(dir: &Path, shard: usize) -> io::Result<u64> {
    let Some(newest) = writer::files(dir, SUFFIX)?.into_iter().filter(|file| file.shard == shard).max_by_key(|file| file.number) else {
        return Ok(0);
    };
    let mut highest = 0;
    let _: ControlFlow<()> = read_file(&newest.path, &mut Vec::new(), &mut |letter| {
        if letter.id >> ID_SEQUENCE_BITS == shard as u64 {
            highest = highest.max(letter.id & ID_SEQUENCE_MAX);
        }
        ControlFlow::Continue(())
    })?;
    Ok(highest)
}

/// Bytes in the DLQ files of `dir` (0 if it does not exist).
pub fn directory_bytes(dir: &Path) -> u64 {
    let files = writer::files(dir, SUFFIX).unwrap_or_default();
    files.iter().filter_map(|file| fs::metadata(&file.path).ok()).map(|meta| meta.len()).sum()
}

/// Which dead letters a reader wants; `None` matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub reason: Option<String>,
    pub partner: Option<String>,
    pub event_type: Option<String>,
    /// `from_ms <= received_ms < to_ms` (Unix ms).
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub id: Option<u64>,
}

impl Filter {
    pub fn matches(&self, letter: &DeadLetter<'_>) -> bool {
        self.reason.as_deref().is_none_or(|reason| reason == letter.reason)
            && self.partner.as_deref().is_none_or(|partner| partner == letter.partner)
            && self.event_type.as_deref().is_none_or(|event_type| event_type.as_bytes() == letter.event_type)
            && self.from_ms.is_none_or(|from_ms| letter.received_ms >= from_ms)
            && self.to_ms.is_none_or(|to_ms| letter.received_ms < to_ms)
            && self.id.is_none_or(|id| id == letter.id)
    }
}

/// Calls `visit` for every dead letter in `dir` that `filter` matches, files oldest
/// first, until it breaks. Each file is read up to its first torn or damaged record (the
/// tail of a file being appended to); the next file is read all the same. A missing
/// directory holds none; `Err` only if the directory or a file cannot be read.
pub fn read_dir(dir: &Path, filter: &Filter, mut visit: impl FnMut(&DeadLetter<'_>) -> ControlFlow<()>) -> io::Result<()> {
    // An id names its shard, and a shard writes only its own files.
    let shard = filter.id.map(|id| id >> ID_SEQUENCE_BITS);
    let mut buffer = Vec::new();
    for file in writer::files(dir, SUFFIX)? {
        if shard.is_some_and(|shard| shard != file.shard as u64) {
            continue;
        }
        let flow = read_file(&file.path, &mut buffer, &mut |letter| {
            if !filter.matches(letter) {
                return ControlFlow::Continue(());
            }
            let flow = visit(letter);
            // Ids are unique: the one asked for ends the walk.
            if filter.id.is_some() { ControlFlow::Break(()) } else { flow }
        })?;
        if flow.is_break() {
            break;
        }
    }
    Ok(())
}

/// Calls `visit` for each whole record of the file at `path`, in order, reading one
/// record at a time into `buffer`, and stops at the first that is torn or damaged. A
/// file deleted meanwhile (pruned) holds none.
fn read_file(path: &Path, buffer: &mut Vec<u8>, visit: &mut impl FnMut(&DeadLetter<'_>) -> ControlFlow<()>) -> io::Result<ControlFlow<()>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(ControlFlow::Continue(())),
        Err(error) => return Err(error),
    };
    let mut left = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, file);
    loop {
        buffer.clear();
        buffer.resize(FRAME_BYTES, 0);
        if left < FRAME_BYTES as u64 || !read_exact(&mut reader, buffer)? {
            return Ok(ControlFlow::Continue(()));
        }
        let payload_len = u32::from_le_bytes(fixed(buffer, 0)) as usize;
        let record_len = FRAME_BYTES + payload_len;
        // Checked before the buffer grows: a damaged length must not allocate 64 MiB.
        if !(PAYLOAD_FIXED_BYTES..=DLQ_PAYLOAD_BYTES_MAX).contains(&payload_len) || record_len as u64 > left {
            return Ok(ControlFlow::Continue(()));
        }
        buffer.resize(record_len, 0);
        if !read_exact(&mut reader, &mut buffer[FRAME_BYTES..])? {
            return Ok(ControlFlow::Continue(()));
        }
        left -= record_len as u64;
        let Ok((letter, _)) = decode(buffer) else { return Ok(ControlFlow::Continue(())) };
        if visit(&letter).is_break() {
            return Ok(ControlFlow::Break(()));
        }
    }
}

/// `read_exact`, with the end of the file (it was cut meanwhile) as `false`.
fn read_exact(reader: &mut impl Read, into: &mut [u8]) -> io::Result<bool> {
    match reader.read_exact(into) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(error) => Err(error),
    }
}

/// Appends `letter` as one NDJSON line: `id`, `reason`, `detail`, `partner`, `kid`,
/// `topic`, `event_type`, `event_id`, `line` (`null` for a whole request), `path`,
/// `received_at` (RFC 3339, ms), `headers` (`[[name, value], ...]`), `body`, and
/// `body_base64` only when the body is not UTF-8 (`body` is then its lossy reading),
/// `tls_identity` and `client_ip` (or `null`). Bytes that are not UTF-8 elsewhere are
/// read lossily.
pub fn to_json(letter: &DeadLetter<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"id\":\"");
    out.extend_from_slice(&format_id(letter.id));
    out.push(b'"');
    let texts: [(&str, &[u8]); 7] = [
        ("reason", letter.reason.as_bytes()),
        ("detail", letter.detail.as_bytes()),
        ("partner", letter.partner.as_bytes()),
        ("kid", letter.kid.as_bytes()),
        ("topic", letter.topic),
        ("event_type", letter.event_type),
        ("event_id", letter.event_id),
    ];
    for (name, text) in texts {
        json_field(out, name, text);
    }
    out.extend_from_slice(b",\"line\":");
    match letter.line {
        LINE_WHOLE_REQUEST => out.extend_from_slice(b"null"),
        line => out.extend_from_slice(line.to_string().as_bytes()),
    }
    json_field(out, "path", letter.path);
    json_field(out, "received_at", &crate::platform::time::format_rfc3339_ms(letter.received_ms));
    out.extend_from_slice(b",\"headers\":[");
    for (index, (name, value)) in letter.headers.iter().enumerate() {
        out.extend_from_slice(if index == 0 { b"[" } else { b",[" });
        json_string(out, name);
        out.push(b',');
        json_string(out, value);
        out.push(b']');
    }
    out.push(b']');
    json_field(out, "body", letter.body);
    if std::str::from_utf8(letter.body).is_err() {
        json_field(out, "body_base64", base64::engine::general_purpose::STANDARD.encode(letter.body).as_bytes());
    }
    out.extend_from_slice(b",\"tls_identity\":");
    match letter.transport.tls_identity {
        Some(identity) => json_string(out, identity.as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"client_ip\":");
    match letter.transport.client_ip {
        Some(ip) => json_string(out, ip.to_string().as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b"}\n");
}

/// `,"name":"text"`.
fn json_field(out: &mut Vec<u8>, name: &str, text: &[u8]) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    json_string(out, text);
}

/// `text` (read lossily as UTF-8) as a JSON string, escaped by serde_json.
fn json_string(out: &mut Vec<u8>, text: &[u8]) {
    // Serialising a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &String::from_utf8_lossy(text));
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECEIVED_MS: i64 = 1_800_000_000_123;
    const HEADERS: [(&[u8], &[u8]); 3] =
        [(b"host", b"ingest.example"), (b"x-signature", b"<redacted>"), (b"content-type", b"application/x-ndjson")];

    fn sample<'a>(reason: &'a str, partner: &'a str, body: &'a [u8]) -> DeadLetter<'a> {
        DeadLetter {
            received_ms: RECEIVED_MS,
            id: 0x0003_0000_0000_002a,
            reason,
            detail: "field /amount: expected number",
            partner,
            kid: "k1",
            topic: b"bets",
            event_type: b"bet_placed",
            event_id: b"evt-1",
            line: 7,
            path: b"/v1/events:batch",
            headers: Headers::new(&HEADERS),
            body,
            transport: Transport {
                tls_identity: Some("gw.partner.example"),
                client_ip: Some(IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1])),
            },
        }
    }

    fn encoded(letter: &DeadLetter<'_>) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode(letter, &mut bytes).unwrap();
        bytes
    }

    /// The payload of `record` changed by `edit`, framed again with a valid checksum.
    fn reframed(record: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut bytes = record.to_vec();
        let mut payload = bytes.split_off(FRAME_BYTES);
        edit(&mut payload);
        bytes.extend_from_slice(&payload);
        frame::finish(&mut bytes, 0);
        bytes
    }

    #[test]
    fn every_field_round_trips_and_damage_is_detected() {
        let body = b"{\"a\":1}\n{\"b\":2}";
        let bytes = encoded(&sample("schema_violation", "gameco", body));
        let (letter, used) = decode(&bytes).unwrap();
        assert_eq!((letter, used), (sample("schema_violation", "gameco", body), bytes.len()));
        assert_eq!(letter.headers.iter().collect::<Vec<_>>(), HEADERS);
        for transport in [Transport::default(), Transport { tls_identity: None, client_ip: Some(IpAddr::from([192, 0, 2, 7])) }] {
            let letter = DeadLetter { transport, line: LINE_WHOLE_REQUEST, topic: b"", headers: Headers::EMPTY, ..letter };
            let bytes = encoded(&letter);
            assert_eq!(decode(&bytes).unwrap(), (letter, bytes.len()));
        }
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for index in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[index] ^= 0x04;
            assert!(decode(&flipped).is_err(), "flip at {index}");
        }
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        assert_eq!(decode(&two).unwrap().1, bytes.len(), "one record at a time");
    }

    /// With a valid checksum, a payload whose fields do not add up is still refused:
    /// trailing bytes, a length that lies, a length over its limit, an unknown version,
    /// an address of 5 bytes, a header count that does not fill the block, bad UTF-8.
    #[test]
    fn decode_is_strict_inside_a_valid_frame() {
        let bytes = encoded(&sample("blocked_field", "gameco", b"{}"));
        type Edit = fn(&mut Vec<u8>);
        let edits: [(&str, Edit); 8] = [
            ("trailing byte", |payload| payload.push(0)),
            ("body length one more than the payload holds", |payload| payload[43] = 3),
            ("version", |payload| payload[0] = 2),
            ("reason over its limit", |payload| payload[21] = 65),
            ("address of 5 bytes", |payload| payload[38] = 5),
            ("one header fewer", |payload| payload[39] = 2),
            ("one header more", |payload| payload[39] = 4),
            ("partner not UTF-8", |payload| payload[PAYLOAD_FIXED_BYTES + 13 + 30] = 0xff),
        ];
        assert_eq!(&bytes[FRAME_BYTES + PAYLOAD_FIXED_BYTES + 13 + 30..][..6], b"gameco", "the partner's place");
        for (what, edit) in edits {
            assert_eq!(decode(&reframed(&bytes, edit)).unwrap_err(), FrameError::BadFields, "{what}");
        }
        assert_eq!(decode(&reframed(&bytes, |_| {})), Ok((sample("blocked_field", "gameco", b"{}"), bytes.len())));
    }

    #[test]
    fn every_bound_is_refused_at_encode_and_reads_back_at_the_limit() {
        let long = "x".repeat(usize::from(u16::MAX) + 1);
        let many: Vec<(&[u8], &[u8])> = vec![(b"a", b"b"); DLQ_HEADERS_COUNT_MAX + 1];
        let big_value = vec![b'v'; DLQ_HEADERS_BYTES_MAX];
        let big: [(&[u8], &[u8]); 1] = [(b"n", &big_value)];
        let at_limit: [(&[u8], &[u8]); 1] = [(b"", &big_value)];
        let body = vec![b'b'; BODY_BYTES_MAX_CEILING + 1];
        let base = sample("schema_violation", "gameco", b"{}");
        let over = [
            ("reason", DeadLetter { reason: &long[..DLQ_REASON_BYTES_MAX + 1], ..base }),
            ("detail", DeadLetter { detail: &long[..DLQ_DETAIL_BYTES_MAX + 1], ..base }),
            ("partner", DeadLetter { partner: &long, ..base }),
            ("event id", DeadLetter { event_id: long.as_bytes(), ..base }),
            ("identity", DeadLetter { transport: Transport { tls_identity: Some(&long), client_ip: None }, ..base }),
            ("header count", DeadLetter { headers: Headers::new(&many), ..base }),
            ("header bytes", DeadLetter { headers: Headers::new(&big), ..base }),
            ("body", DeadLetter { body: &body, ..base }),
        ];
        for (what, letter) in over {
            let mut out = vec![7];
            assert_eq!(encode(&letter, &mut out), Err(FrameError::TooLarge), "{what}");
            assert_eq!(out, [7], "{what}: nothing appended");
        }
        let limits = DeadLetter {
            reason: &long[..DLQ_REASON_BYTES_MAX],
            detail: &long[..DLQ_DETAIL_BYTES_MAX],
            partner: &long[..usize::from(u16::MAX)],
            headers: Headers::new(&many[..DLQ_HEADERS_COUNT_MAX]),
            body: &body[..BODY_BYTES_MAX_CEILING],
            ..base
        };
        let bytes = encoded(&limits);
        assert_eq!(decode(&bytes).unwrap(), (limits, bytes.len()));
        let limits = DeadLetter { headers: Headers::new(&at_limit), ..base };
        let bytes = encoded(&limits);
        assert_eq!(decode(&bytes).unwrap(), (limits, bytes.len()));
    }

    fn read_all(dir: &Path, filter: &Filter) -> Vec<(u64, String, i64)> {
        let mut seen = Vec::new();
        read_dir(dir, filter, |letter| {
            seen.push((letter.id, letter.reason.to_owned(), letter.received_ms));
            ControlFlow::Continue(())
        })
        .unwrap();
        seen
    }

    #[test]
    fn the_reader_walks_files_oldest_first_past_torn_tails_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let counters = DlqCounters::default();
        let (mut zero, mut one) = (DlqWriter::open(dir.path(), 0, u64::MAX).unwrap(), DlqWriter::open(dir.path(), 1, u64::MAX).unwrap());
        let hour = DLQ_FILE_PERIOD_MS;
        let at = |ms: i64, letter: DeadLetter<'static>| DeadLetter { received_ms: ms, ..letter };
        let a = zero.append(&at(RECEIVED_MS, sample("schema_violation", "gameco", b"1")), &counters).unwrap();
        let b = one.append(&at(RECEIVED_MS + 1, sample("geo_not_allowed", "betco", b"2")), &counters).unwrap();
        zero.flush(RECEIVED_MS, &counters);
        one.flush(RECEIVED_MS, &counters);
        let c = zero.append(&at(RECEIVED_MS + hour, sample("schema_violation", "betco", b"3")), &counters).unwrap();
        zero.flush(RECEIVED_MS + hour, &counters);
        fs::write(dir.path().join("notes.txt"), b"not a dlq file").unwrap();

        let all = read_all(dir.path(), &Filter::default());
        assert_eq!(all.iter().map(|(id, _, _)| *id).collect::<Vec<_>>(), [a, b, c]);
        let files = writer::files(dir.path(), SUFFIX).unwrap();
        assert_eq!(files.len(), 3);
        let mut torn = fs::read(&files[0].path).unwrap();
        let whole = torn.len();
        torn.extend_from_slice(&encoded(&sample("x", "y", b"z"))[..20]);
        fs::write(&files[0].path, &torn).unwrap();
        assert_eq!(read_all(dir.path(), &Filter::default()), all, "a torn tail ends its file only");
        assert_eq!(directory_bytes(dir.path()), counters.bytes.load(Ordering::Relaxed) + (torn.len() - whole) as u64);

        let only = |filter: Filter| read_all(dir.path(), &filter).into_iter().map(|(id, _, _)| id).collect::<Vec<_>>();
        assert_eq!(only(Filter { reason: Some("schema_violation".into()), ..Filter::default() }), [a, c]);
        assert_eq!(only(Filter { partner: Some("betco".into()), ..Filter::default() }), [b, c]);
        assert_eq!(only(Filter { event_type: Some("bet_settled".into()), ..Filter::default() }), Vec::<u64>::new());
        assert_eq!(only(Filter { event_type: Some("bet_placed".into()), to_ms: Some(RECEIVED_MS + 1), ..Filter::default() }), [a]);
        assert_eq!(only(Filter { from_ms: Some(RECEIVED_MS + 1), ..Filter::default() }), [b, c]);
        assert_eq!(only(Filter { id: Some(c), ..Filter::default() }), [c]);
        assert_eq!(only(Filter { id: Some(c), partner: Some("gameco".into()), ..Filter::default() }), Vec::<u64>::new());
        let mut first = Vec::new();
        read_dir(dir.path(), &Filter::default(), |letter| {
            first.push(letter.id);
            ControlFlow::Break(())
        })
        .unwrap();
        assert_eq!(first, [a], "a break stops the walk");
        assert_eq!(counters.written_by_reason(), [("geo_not_allowed".to_owned(), 1), ("schema_violation".to_owned(), 2)]);
        assert!(read_all(&dir.path().join("missing"), &Filter::default()).is_empty());
    }

    #[test]
    fn past_the_bound_dead_letters_are_dropped_and_the_alarm_raised_until_a_prune() {
        let dir = tempfile::tempdir().unwrap();
        let one = encoded(&sample("schema_violation", "gameco", b"body")).len() as u64;
        let counters = DlqCounters::starting_at(0);
        let mut writer = DlqWriter::open(dir.path(), 0, 2 * one).unwrap();
        let letter = sample("schema_violation", "gameco", b"body");
        assert!(writer.append(&letter, &counters).is_ok());
        writer.flush(RECEIVED_MS, &counters);
        assert!(writer.append(&letter, &counters).is_ok());
        assert_eq!(writer.append(&letter, &counters), Err(Refused::Full));
        assert_eq!(
            writer.append(&DeadLetter { reason: &"r".repeat(65), ..letter }, &counters),
            Err(Refused::Encoding(FrameError::TooLarge))
        );
        writer.flush(RECEIVED_MS, &counters);
        assert_eq!((counters.dropped.load(Ordering::Relaxed), counters.alarm.load(Ordering::Relaxed)), (2, true));
        assert_eq!(counters.written_by_reason(), [("schema_violation".to_owned(), 2)]);
        assert_eq!(directory_bytes(dir.path()), 2 * one, "nothing old was deleted to make room");

        let day_ms = 24 * DLQ_FILE_PERIOD_MS;
        writer.prune(RECEIVED_MS + day_ms, day_ms, &counters);
        assert_eq!(directory_bytes(dir.path()), 2 * one, "inside the retention");
        writer.prune(RECEIVED_MS + day_ms + 2 * DLQ_FILE_PERIOD_MS, day_ms, &counters);
        assert_eq!((directory_bytes(dir.path()), counters.bytes.load(Ordering::Relaxed)), (0, 0));
        assert!(!counters.alarm.load(Ordering::Relaxed), "the prune made room");
        assert!(writer.append(&letter, &counters).is_ok());
    }

    /// A detail or headers past their bounds are cut, not the dead letter; a failed
    /// write counts the loop's dead letters as dropped and gives their bytes back.
    #[test]
    fn the_writer_cuts_detail_and_headers_and_counts_a_failed_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dlq");
        let counters = DlqCounters::default();
        let mut writer = DlqWriter::open(&path, 0, u64::MAX).unwrap();
        let detail = format!("{}é", "x".repeat(DLQ_DETAIL_BYTES_MAX - 1));
        let many: Vec<(&[u8], &[u8])> = vec![(b"a", b"b"); DLQ_HEADERS_COUNT_MAX + 5];
        let letter = DeadLetter { detail: &detail, headers: Headers::new(&many), ..sample("schema_violation", "gameco", b"{}") };
        let id = writer.append(&letter, &counters).unwrap();
        writer.flush(RECEIVED_MS, &counters);
        let mut kept = Vec::new();
        read_dir(&path, &Filter::default(), |letter| {
            kept.push((letter.id, letter.detail.len(), letter.headers.len()));
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(kept, [(id, DLQ_DETAIL_BYTES_MAX - 1, DLQ_HEADERS_COUNT_MAX)]);

        let written = counters.bytes.load(Ordering::Relaxed);
        fs::remove_dir_all(&path).unwrap();
        fs::write(&path, b"").unwrap();
        writer.append(&letter, &counters).unwrap();
        writer.append(&letter, &counters).unwrap();
        writer.flush(RECEIVED_MS + DLQ_FILE_PERIOD_MS, &counters);
        assert_eq!((counters.dropped.load(Ordering::Relaxed), counters.bytes.load(Ordering::Relaxed)), (2, written));
        assert_eq!(counters.written_by_reason(), [("schema_violation".to_owned(), 1)]);
    }

    #[test]
    fn ids_are_unique_across_shards_and_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let counters = DlqCounters::default();
        let letter = sample("schema_violation", "gameco", b"{}");
        let mut ids = Vec::new();
        for shard in [0, 1] {
            let mut writer = DlqWriter::open(dir.path(), shard, u64::MAX).unwrap();
            for _ in 0..3 {
                ids.push(writer.append(&letter, &counters).unwrap());
            }
            writer.flush(RECEIVED_MS, &counters);
        }
        // The clock went back: the ids go on from the file, not from the clock.
        let mut reopened = DlqWriter::open(dir.path(), 0, u64::MAX).unwrap();
        let back = DeadLetter { received_ms: RECEIVED_MS - 60_000, ..letter };
        ids.push(reopened.append(&back, &counters).unwrap());
        reopened.flush(RECEIVED_MS, &counters);
        // Nothing reached the disk: the ids go on from the clock.
        let empty = tempfile::tempdir().unwrap();
        let floor =
            DlqWriter::open(empty.path(), 0, u64::MAX).unwrap().append(&DeadLetter { received_ms: RECEIVED_MS + 1, ..letter }, &counters);

        let sequence = (RECEIVED_MS - ID_EPOCH_MS) as u64;
        let shard_one = 1 << ID_SEQUENCE_BITS;
        let expected = [
            sequence,
            sequence + 1,
            sequence + 2,
            shard_one | sequence,
            shard_one | (sequence + 1),
            shard_one | (sequence + 2),
            sequence + 3,
        ];
        assert_eq!(ids, expected);
        assert_eq!(floor, Ok(sequence + 1));
        assert_eq!(read_all(dir.path(), &Filter::default()).len(), 7);
        let printed = format_id(ids[3]);
        assert!(printed.starts_with(b"d_0001"), "{printed:?}");
        assert_eq!(std::str::from_utf8(&printed).ok().and_then(parse_id), Some(ids[3]));
        assert_eq!(parse_id("d_+000000000000001"), None);
        assert_eq!(parse_id("d_00000000000000001"), None);
        assert_eq!(parse_id("D_0000000000000001"), None);
    }

    #[test]
    fn credential_headers_are_redacted_in_any_case() {
        assert_eq!(redact(b"Authorization", b"Bearer eyJ"), REDACTED);
        assert_eq!(redact(b"X-SIGNATURE", b"v1=ab"), REDACTED);
        assert_eq!(redact(b"webhook-signature", b"v1,xyz"), REDACTED);
        assert_eq!(redact(b"x-key-id", b"k1"), b"k1");
    }

    #[test]
    fn json_lines_carry_the_spec_fields() {
        let body = [b'{', 0xff, b'}'];
        let letter = DeadLetter { line: LINE_WHOLE_REQUEST, ..sample("blocked_field", "game\"co", &body) };
        let mut out = Vec::new();
        to_json(&letter, &mut out);
        to_json(&sample("schema_violation", "gameco", b"{\"a\":\"\\n\"}"), &mut out);
        let text = std::str::from_utf8(&out).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!((lines.len(), text.ends_with('\n')), (2, true));
        for field in ["id", "reason", "partner", "received_at", "headers", "body"] {
            assert!(lines.iter().all(|line| line.get(field).is_some()), "{field}");
        }
        assert_eq!(lines[0]["id"], "d_000300000000002a");
        assert_eq!(lines[0]["partner"], "game\"co");
        assert_eq!(lines[0]["line"], serde_json::Value::Null);
        assert_eq!(lines[0]["received_at"], "2027-01-15T08:00:00.123Z");
        assert_eq!(lines[0]["headers"][1], serde_json::json!(["x-signature", "<redacted>"]));
        assert_eq!(lines[0]["body"], "{\u{fffd}}");
        assert_eq!(lines[0]["body_base64"], "e/99");
        assert_eq!(lines[0]["client_ip"], "2001:db8::1");
        assert_eq!((&lines[1]["line"], &lines[1]["body"]), (&serde_json::json!(7), &serde_json::json!("{\"a\":\"\\n\"}")));
        assert!(lines[1].get("body_base64").is_none());
        assert_eq!(lines[1]["event_type"], "bet_placed");
    }
}
