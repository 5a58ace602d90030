//! Parsing and validation of one event envelope (SPEC §1.2), and the `ingested_at` stamp.
//!
//! The stored event is the producer's raw body with the gateway's stamp inserted before
//! the closing brace: sluice never re-serializes a document. The `event_id` used for
//! dedup is the *decoded* string from the same bytes, and a document with duplicate keys
//! is rejected, so the `event_id` a consumer reads from the stored bytes and the dedup key
//! can never disagree (no `{"event_id":"a","event_id":"b"}` where a reader keeps the
//! first and we kept the last).
//!
//! Depth: simd-json 0.15's tape builder (stage 2) is iterative, with its stack on the heap
//! sized by the structural count, so a deeply nested body cannot overflow the thread's
//! stack; the depth limit is enforced on the finished tape
//! (`validate_survives_depth_of_100_000` guards this if simd-json changes).

use simd_json::{Buffers, Node, Tape};

use crate::constants::{EVENT_ID_BYTES_MAX, EVENT_TYPE_BYTES_MAX, JSON_DEPTH_MAX, USER_ID_BYTES_MAX, VALIDATOR_WARM_BYTES};
use crate::log::partitioner::murmur2;
use crate::platform::time::{RFC3339_MS_LEN, format_rfc3339_ms, parse_rfc3339_ms};

const _: () = assert!(EVENT_ID_BYTES_MAX <= u8::MAX as usize);
// The fixed error messages below quote these limits.
const _: () = assert!(EVENT_ID_BYTES_MAX == 128 && EVENT_TYPE_BYTES_MAX == 64);
const _: () = assert!(USER_ID_BYTES_MAX == 256 && JSON_DEPTH_MAX == 64);

/// A top-level field of the envelope, named in `field_missing` / `field_type` errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    EventId,
    EventType,
    OccurredAt,
    Key,
    UserId,
    SchemaVersion,
    Ctx,
    Payload,
}

impl Field {
    /// The field's path in the document, e.g. `key.user_id`.
    pub fn name(self) -> &'static str {
        match self {
            Field::EventId => "event_id",
            Field::EventType => "event_type",
            Field::OccurredAt => "occurred_at",
            Field::Key => "key",
            Field::UserId => "key.user_id",
            Field::SchemaVersion => "schema_version",
            Field::Ctx => "ctx",
            Field::Payload => "payload",
        }
    }
}

/// Why a body is not a valid envelope. Every variant is answered 400, except
/// `BodyTooLarge` (413), which the HTTP layer normally catches before validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeError {
    BodyTooLarge,
    Utf8Invalid,
    JsonInvalid,
    JsonTooDeep,
    JsonDuplicateKey,
    NotAnObject,
    FieldMissing(Field),
    FieldType(Field),
    EventIdInvalid,
    EventTypeInvalid,
    OccurredAtInvalid,
    UserIdInvalid,
    FieldReserved,
}

impl EnvelopeError {
    /// One error of each code (the field-carrying variants with one example field).
    #[cfg(test)]
    pub(crate) const ONE_OF_EACH: [EnvelopeError; 13] = [
        EnvelopeError::BodyTooLarge,
        EnvelopeError::Utf8Invalid,
        EnvelopeError::JsonInvalid,
        EnvelopeError::JsonTooDeep,
        EnvelopeError::JsonDuplicateKey,
        EnvelopeError::NotAnObject,
        EnvelopeError::FieldMissing(Field::UserId),
        EnvelopeError::FieldType(Field::Ctx),
        EnvelopeError::EventIdInvalid,
        EnvelopeError::EventTypeInvalid,
        EnvelopeError::OccurredAtInvalid,
        EnvelopeError::UserIdInvalid,
        EnvelopeError::FieldReserved,
    ];

    /// The `error.code` of the answer (SPEC §1.3), snake_case.
    pub fn code(&self) -> &'static str {
        match self {
            EnvelopeError::BodyTooLarge => "body_too_large",
            EnvelopeError::Utf8Invalid => "utf8_invalid",
            EnvelopeError::JsonInvalid => "json_invalid",
            EnvelopeError::JsonTooDeep => "json_too_deep",
            EnvelopeError::JsonDuplicateKey => "json_duplicate_key",
            EnvelopeError::NotAnObject => "not_an_object",
            EnvelopeError::FieldMissing(_) => "field_missing",
            EnvelopeError::FieldType(_) => "field_type",
            EnvelopeError::EventIdInvalid => "event_id_invalid",
            EnvelopeError::EventTypeInvalid => "event_type_invalid",
            EnvelopeError::OccurredAtInvalid => "occurred_at_invalid",
            EnvelopeError::UserIdInvalid => "user_id_invalid",
            EnvelopeError::FieldReserved => "field_reserved",
        }
    }

    /// The `error.message` of the answer: fixed text, never echoing producer bytes.
    pub fn message(&self) -> &'static str {
        match self {
            EnvelopeError::BodyTooLarge => "body is larger than body_bytes_max",
            EnvelopeError::Utf8Invalid => "body is not valid UTF-8",
            EnvelopeError::JsonInvalid => "body is not valid JSON",
            EnvelopeError::JsonTooDeep => "JSON nesting is deeper than 64 levels",
            EnvelopeError::JsonDuplicateKey => "an object has the same key twice",
            EnvelopeError::NotAnObject => "body must be a JSON object",
            EnvelopeError::FieldMissing(field) => missing_message(*field),
            EnvelopeError::FieldType(field) => type_message(*field),
            EnvelopeError::EventIdInvalid => "event_id must be 1..128 characters of [A-Za-z0-9_.:-]",
            EnvelopeError::EventTypeInvalid => "event_type must be 1..64 characters of [A-Za-z0-9_.:-]",
            EnvelopeError::OccurredAtInvalid => "occurred_at must be an RFC 3339 date-time",
            EnvelopeError::UserIdInvalid => "key.user_id must be 1..256 bytes",
            EnvelopeError::FieldReserved => "ingested_at is set by the gateway and must not be sent",
        }
    }
}

fn missing_message(field: Field) -> &'static str {
    match field {
        Field::EventId => "required field event_id is missing",
        Field::EventType => "required field event_type is missing",
        Field::OccurredAt => "required field occurred_at is missing",
        Field::Key => "required field key is missing",
        Field::UserId => "required field key.user_id is missing",
        Field::SchemaVersion => "field schema_version is missing",
        Field::Ctx => "field ctx is missing",
        Field::Payload => "field payload is missing",
    }
}

fn type_message(field: Field) -> &'static str {
    match field {
        Field::EventId => "event_id must be a string",
        Field::EventType => "event_type must be a string",
        Field::OccurredAt => "occurred_at must be a string",
        Field::Key => "key must be an object",
        Field::UserId => "key.user_id must be a string",
        Field::SchemaVersion => "schema_version must be a string",
        Field::Ctx => "ctx must be an object",
        Field::Payload => "payload must be an object",
    }
}

impl std::fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl std::error::Error for EnvelopeError {}

/// What the gateway needs from a valid envelope; the body itself is stored as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope {
    event_id: [u8; EVENT_ID_BYTES_MAX],
    event_id_len: u8,
    event_type: [u8; EVENT_TYPE_BYTES_MAX],
    event_type_len: u8,
    /// [`murmur2`] of the decoded `key.user_id` bytes: feed to `routing::partition_for`.
    pub user_id_hash: u32,
    /// Index in the body of the top-level object's closing `}`.
    pub close_brace: usize,
    /// `occurred_at` in Unix milliseconds.
    pub occurred_at_ms: i64,
}

impl Envelope {
    /// The decoded `event_id` (escapes resolved): the dedup key. 1..=128 ASCII bytes.
    pub fn event_id(&self) -> &[u8] {
        &self.event_id[..usize::from(self.event_id_len)]
    }

    /// The decoded `event_type`: 1..=64 ASCII bytes of `[A-Za-z0-9_.:-]`; what partner
    /// scopes are checked against.
    pub fn event_type(&self) -> &[u8] {
        &self.event_type[..usize::from(self.event_type_len)]
    }
}

const STAMP_PREFIX: &[u8] = b",\"ingested_at\":\"";
/// Length of a [`Stamp`]: the prefix, a millisecond RFC 3339 time, the closing quote.
pub const STAMP_BYTES: usize = STAMP_PREFIX.len() + RFC3339_MS_LEN + 1;

/// The `,"ingested_at":"<RFC 3339 ms>"` bytes the gateway inserts before the closing
/// brace. A valid envelope has at least four members, so the leading comma is always right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    bytes: [u8; STAMP_BYTES],
}

impl Stamp {
    /// The stamp for `ingest_ms` (Unix milliseconds, gateway clock), always UTC with `Z`.
    pub fn new(ingest_ms: i64) -> Stamp {
        let mut bytes = [0u8; STAMP_BYTES];
        let time_at = STAMP_PREFIX.len();
        bytes[..time_at].copy_from_slice(STAMP_PREFIX);
        bytes[time_at..time_at + RFC3339_MS_LEN].copy_from_slice(&format_rfc3339_ms(ingest_ms));
        bytes[STAMP_BYTES - 1] = b'"';
        Stamp { bytes }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// The stored event is `body[..close_brace] ++ stamp ++ body[close_brace..]`; returns the
/// three parts for a vectored append. `envelope` must come from validating `body`.
pub fn stamped_parts<'a>(body: &'a [u8], envelope: &Envelope, stamp: &'a Stamp) -> [&'a [u8]; 3] {
    assert_eq!(body.get(envelope.close_brace), Some(&b'}'), "envelope is not from this body");
    let (head, tail) = body.split_at(envelope.close_brace);
    [head, stamp.as_bytes(), tail]
}

/// Per-shard envelope validator. All its buffers are sized in [`Validator::new`] for a
/// body of `body_bytes_max` bytes, so [`Validator::validate`] never allocates.
///
/// Memory: about 55 bytes per byte of `body_bytes_max` (simd-json's tape and stage-2
/// stack, 24 bytes per structural character each, plus the structural index, copies of
/// the input and a key list), so about 28 MiB per shard at the 512 KiB default.
pub struct Validator {
    body_bytes_max: usize,
    /// simd-json rewrites strings in place, so the body is copied here first.
    scratch: Vec<u8>,
    buffers: Buffers,
    /// The tape's storage between calls; always empty there, hence `'static`.
    tape_nodes: Vec<Node<'static>>,
    /// Tape indices of one object's keys, for duplicate detection.
    keys: Vec<usize>,
}

impl Validator {
    /// A validator for bodies of at most `body_bytes_max` bytes. Reserves (virtual)
    /// capacity for that size and sizes simd-json's buffers by parsing a worst-case
    /// document (every byte a structural character) of `VALIDATOR_WARM_BYTES`: bodies up
    /// to that size never allocate. A larger body grows the buffers once to what it
    /// needs, which then stays (at most about 28 MiB per shard for a hostile 512 KiB
    /// body; about 3.5 MiB resident otherwise, instead of warming up for 512 KiB).
    pub fn new(body_bytes_max: usize) -> Validator {
        let mut validator = Validator {
            body_bytes_max,
            scratch: Vec::with_capacity(body_bytes_max),
            buffers: Buffers::new(body_bytes_max),
            tape_nodes: Vec::with_capacity(body_bytes_max + 1),
            // A key and its value take at least 5 bytes (`"":0,`).
            keys: Vec::with_capacity(body_bytes_max / 5 + 2),
        };
        validator.warm_up();
        validator
    }

    /// Grows simd-json's private buffers (structural index, stage-2 stack) to their
    /// worst case for `VALIDATOR_WARM_BYTES`, which `Buffers::new` does not.
    fn warm_up(&mut self) {
        let len = self.body_bytes_max.min(VALIDATOR_WARM_BYTES);
        if len < 3 {
            return;
        }
        self.scratch.clear();
        if len % 2 == 1 {
            self.scratch.extend_from_slice(b"[0");
        } else {
            self.scratch.extend_from_slice(b"[[]");
        }
        while self.scratch.len() + 1 < len {
            self.scratch.extend_from_slice(b",0");
        }
        self.scratch.push(b']');
        debug_assert_eq!(self.scratch.len(), len);
        let mut tape = Tape(std::mem::take(&mut self.tape_nodes)).reset();
        let parsed = simd_json::fill_tape(&mut self.scratch, &mut self.buffers, &mut tape);
        debug_assert!(parsed.is_ok(), "warm-up document must parse");
        self.tape_nodes = tape.reset().0;
    }

    /// Validates one event body against SPEC §1.2. `body` is not modified.
    ///
    /// Checks, in order: size, UTF-8, JSON syntax, top-level object, nesting depth and
    /// duplicate keys (any object, any depth, decoded keys), then the fields. Unknown
    /// top-level fields are allowed.
    pub fn validate(&mut self, body: &[u8]) -> Result<Envelope, EnvelopeError> {
        if body.len() > self.body_bytes_max {
            return Err(EnvelopeError::BodyTooLarge);
        }
        if std::str::from_utf8(body).is_err() {
            return Err(EnvelopeError::Utf8Invalid);
        }
        // simd-json ends a number, `true`, `false` or `null` at a NUL byte and skips what
        // follows up to the next structural character, so `{..,"n":1\0junk}` would pass
        // and be stored. Valid JSON has no raw NUL anywhere (strings must escape it).
        if memchr::memchr(0, body).is_some() {
            return Err(EnvelopeError::JsonInvalid);
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(body);
        let mut tape = Tape(std::mem::take(&mut self.tape_nodes)).reset();
        let result = match simd_json::fill_tape(&mut self.scratch, &mut self.buffers, &mut tape) {
            Ok(()) => check_document(&tape.0, &mut self.keys, body),
            Err(_) => Err(EnvelopeError::JsonInvalid),
        };
        self.tape_nodes = tape.reset().0;
        result
    }
}

/// JSON insignificant whitespace (RFC 8259 §2).
fn is_json_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

fn check_document(nodes: &[Node<'_>], keys: &mut Vec<usize>, body: &[u8]) -> Result<Envelope, EnvelopeError> {
    let Some(Node::Object { .. }) = nodes.first() else {
        return Err(EnvelopeError::NotAnObject);
    };
    if has_unpaired_surrogate(body) || (may_hold_long_number(body) && !numbers_well_formed(body)) {
        return Err(EnvelopeError::JsonInvalid);
    }
    check_structure(nodes, keys)?;
    let close_brace = body.iter().rposition(|&byte| !is_json_whitespace(byte)).ok_or(EnvelopeError::JsonInvalid)?;
    if body[close_brace] != b'}' {
        return Err(EnvelopeError::JsonInvalid);
    }
    let mut envelope = check_fields(nodes)?;
    envelope.close_brace = close_brace;
    Ok(envelope)
}

/// False when no number in `body` can have the 20 or more significant digits that send
/// simd-json down the slow path [`numbers_well_formed`] guards against: a run of 15 or
/// more digits and dots always covers an aligned 8-byte block of them. Branch-free per
/// block, so the common body costs a fraction of the full scan.
fn may_hold_long_number(body: &[u8]) -> bool {
    body.chunks_exact(8).any(|block| block.iter().fold(true, |all, &byte| all & (byte.is_ascii_digit() | (byte == b'.'))))
}

/// True if every number outside strings follows RFC 8259 §6 and ends at whitespace, `,`,
/// `]` or `}`. simd-json 0.15 parses a number of more than 19 significant digits on a
/// slow path that stops at the first byte it cannot use and never looks at it, so
/// `{..,"n":0.55555555555555555555)x}` passed. `body` must already have parsed as JSON.
fn numbers_well_formed(body: &[u8]) -> bool {
    let mut at = 0;
    while at < body.len() {
        match body[at] {
            b'"' => match string_end(body, at) {
                Some(end) => at = end,
                None => return false,
            },
            b'-' | b'0'..=b'9' => {
                let Some(len) = number_len(&body[at..]) else { return false };
                at += len;
                if !matches!(body.get(at), None | Some(b' ' | b'\t' | b'\n' | b'\r' | b',' | b']' | b'}')) {
                    return false;
                }
            }
            _ => at += 1,
        }
    }
    true
}

/// Position just past the closing quote of the string whose opening quote is at `open`.
fn string_end(body: &[u8], open: usize) -> Option<usize> {
    let mut at = open + 1;
    loop {
        at += memchr::memchr2(b'"', b'\\', body.get(at..)?)?;
        if body[at] == b'"' {
            return Some(at + 1);
        }
        at += 2;
    }
}

/// Length of the JSON number (RFC 8259 §6) at the start of `text`, if one is there.
fn number_len(text: &[u8]) -> Option<usize> {
    let digits = |from: usize| text[from..].iter().take_while(|b| b.is_ascii_digit()).count();
    let mut at = usize::from(text.first() == Some(&b'-'));
    match text.get(at) {
        Some(b'0') => at += 1,
        Some(b'1'..=b'9') => at += digits(at),
        _ => return None,
    }
    if text.get(at) == Some(&b'.') {
        let fraction = digits(at + 1);
        if fraction == 0 {
            return None;
        }
        at += 1 + fraction;
    }
    if matches!(text.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(text.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        let exponent = digits(at);
        if exponent == 0 {
            return None;
        }
        at += exponent;
    }
    Some(at)
}

/// The four hex digits after a `\u`, if they are four hex digits.
fn hex4(digits: &[u8]) -> Option<u32> {
    let digits = digits.get(..4)?;
    digits.iter().try_fold(0u32, |acc, &digit| Some(acc * 16 + char::from(digit).to_digit(16)?))
}

/// True if a `\u` escape in `body` is a surrogate that is not the high half of a
/// high-low pair. I-JSON (RFC 7493 §2.1) forbids them, and simd-json 0.15 decodes them
/// loosely (a lone high surrogate becomes U+0000; `\ud800\ue000` becomes U+10400), so
/// two keys we compare as different could be equal to another parser, or vice versa.
/// `body` must already have parsed as JSON: every backslash then starts an escape.
fn has_unpaired_surrogate(body: &[u8]) -> bool {
    const HIGH: std::ops::Range<u32> = 0xd800..0xdc00;
    const LOW: std::ops::Range<u32> = 0xdc00..0xe000;
    let mut at = 0;
    while let Some(found) = body.get(at..).and_then(|rest| memchr::memchr(b'\\', rest)) {
        let escape = at + found;
        if body.get(escape + 1) != Some(&b'u') {
            at = escape + 2;
            continue;
        }
        let Some(unit) = hex4(&body[escape + 2..]) else {
            return true;
        };
        at = escape + 6;
        if LOW.contains(&unit) {
            return true;
        }
        if HIGH.contains(&unit) {
            let low = match body.get(at..at + 2) {
                Some(b"\\u") => hex4(&body[at + 2..]),
                _ => None,
            };
            if !low.is_some_and(|low| LOW.contains(&low)) {
                return true;
            }
            at += 6;
        }
    }
    false
}

/// Number of tape nodes a value occupies, itself included.
fn span(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

/// One pass over the tape: nesting depth (the top-level value is depth 1) and duplicate
/// keys in every object.
fn check_structure(nodes: &[Node<'_>], keys: &mut Vec<usize>) -> Result<(), EnvelopeError> {
    // ends[d] = tape index just past the open container at depth d + 1.
    let mut ends = [0usize; JSON_DEPTH_MAX];
    let mut depth = 0;
    for (index, node) in nodes.iter().enumerate() {
        while depth > 0 && ends[depth - 1] <= index {
            depth -= 1;
        }
        if let Node::Object { .. } | Node::Array { .. } = node {
            if depth == JSON_DEPTH_MAX {
                return Err(EnvelopeError::JsonTooDeep);
            }
            ends[depth] = index + span(node);
            depth += 1;
        }
        if let Node::Object { len, .. } = node {
            check_unique_keys(nodes, index, *len, keys)?;
        }
    }
    Ok(())
}

fn key_at<'a>(nodes: &[Node<'a>], index: usize) -> Result<&'a str, EnvelopeError> {
    match nodes.get(index) {
        Some(Node::String(key)) => Ok(key),
        _ => Err(EnvelopeError::JsonInvalid),
    }
}

/// Rejects an object (at tape index `object`, with `len` members) that has two equal
/// decoded keys. Sorts key indices in place: O(n log n) and no allocation, and unlike a
/// hash set it has no worst case a producer could craft.
fn check_unique_keys(nodes: &[Node<'_>], object: usize, len: usize, keys: &mut Vec<usize>) -> Result<(), EnvelopeError> {
    if len < 2 {
        return Ok(());
    }
    keys.clear();
    let mut at = object + 1;
    for _ in 0..len {
        key_at(nodes, at)?;
        keys.push(at);
        at += 1 + nodes.get(at + 1).map_or(1, span);
    }
    if len <= 8 {
        for (i, &a) in keys.iter().enumerate() {
            for &b in &keys[i + 1..] {
                if key_at(nodes, a)? == key_at(nodes, b)? {
                    return Err(EnvelopeError::JsonDuplicateKey);
                }
            }
        }
        return Ok(());
    }
    keys.sort_unstable_by_key(|&index| match &nodes[index] {
        Node::String(key) => *key,
        _ => "",
    });
    for pair in keys.windows(2) {
        if key_at(nodes, pair[0])? == key_at(nodes, pair[1])? {
            return Err(EnvelopeError::JsonDuplicateKey);
        }
    }
    Ok(())
}

/// Tape indices of the values of the top-level members sluice reads.
#[derive(Default)]
struct Members {
    event_id: Option<usize>,
    event_type: Option<usize>,
    occurred_at: Option<usize>,
    key: Option<usize>,
    schema_version: Option<usize>,
    ctx: Option<usize>,
    payload: Option<usize>,
}

fn find_members(nodes: &[Node<'_>]) -> Result<Members, EnvelopeError> {
    let Some(&Node::Object { len, .. }) = nodes.first() else {
        return Err(EnvelopeError::NotAnObject);
    };
    let mut members = Members::default();
    let mut at = 1;
    for _ in 0..len {
        let value = at + 1;
        let slot = match key_at(nodes, at)? {
            "event_id" => &mut members.event_id,
            "event_type" => &mut members.event_type,
            "occurred_at" => &mut members.occurred_at,
            "key" => &mut members.key,
            "schema_version" => &mut members.schema_version,
            "ctx" => &mut members.ctx,
            "payload" => &mut members.payload,
            "ingested_at" => return Err(EnvelopeError::FieldReserved),
            _ => {
                at = value + nodes.get(value).map_or(1, span);
                continue;
            }
        };
        *slot = Some(value);
        at = value + nodes.get(value).map_or(1, span);
    }
    Ok(members)
}

fn string_field<'a>(nodes: &[Node<'a>], value: Option<usize>, field: Field) -> Result<&'a str, EnvelopeError> {
    let value = value.ok_or(EnvelopeError::FieldMissing(field))?;
    match nodes.get(value) {
        Some(Node::String(text)) => Ok(text),
        _ => Err(EnvelopeError::FieldType(field)),
    }
}

fn check_object(nodes: &[Node<'_>], value: Option<usize>, field: Field) -> Result<(), EnvelopeError> {
    match value.map(|value| nodes.get(value)) {
        None | Some(Some(Node::Object { .. })) => Ok(()),
        Some(_) => Err(EnvelopeError::FieldType(field)),
    }
}

/// `[A-Za-z0-9_.:-]{1,max}`.
fn is_name(text: &str, max: usize) -> bool {
    let ok = |byte: &u8| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b':' | b'-');
    (1..=max).contains(&text.len()) && text.as_bytes().iter().all(ok)
}

fn check_fields(nodes: &[Node<'_>]) -> Result<Envelope, EnvelopeError> {
    let members = find_members(nodes)?;
    let event_id = string_field(nodes, members.event_id, Field::EventId)?;
    if !is_name(event_id, EVENT_ID_BYTES_MAX) {
        return Err(EnvelopeError::EventIdInvalid);
    }
    let event_type = string_field(nodes, members.event_type, Field::EventType)?;
    if !is_name(event_type, EVENT_TYPE_BYTES_MAX) {
        return Err(EnvelopeError::EventTypeInvalid);
    }
    let occurred_at = string_field(nodes, members.occurred_at, Field::OccurredAt)?;
    let occurred_at_ms = parse_rfc3339_ms(occurred_at.as_bytes()).ok_or(EnvelopeError::OccurredAtInvalid)?;
    let user_id = user_id(nodes, members.key)?;
    if let Some(value) = members.schema_version {
        string_field(nodes, Some(value), Field::SchemaVersion)?;
    }
    check_object(nodes, members.ctx, Field::Ctx)?;
    check_object(nodes, members.payload, Field::Payload)?;

    let mut envelope = Envelope {
        event_id: [0; EVENT_ID_BYTES_MAX],
        event_id_len: event_id.len() as u8,
        event_type: [0; EVENT_TYPE_BYTES_MAX],
        event_type_len: event_type.len() as u8,
        user_id_hash: murmur2(user_id.as_bytes()),
        close_brace: 0,
        occurred_at_ms,
    };
    envelope.event_id[..event_id.len()].copy_from_slice(event_id.as_bytes());
    envelope.event_type[..event_type.len()].copy_from_slice(event_type.as_bytes());
    Ok(envelope)
}

/// The decoded `key.user_id`: 1..=USER_ID_BYTES_MAX bytes.
fn user_id<'a>(nodes: &[Node<'a>], key: Option<usize>) -> Result<&'a str, EnvelopeError> {
    let key = key.ok_or(EnvelopeError::FieldMissing(Field::Key))?;
    let Some(&Node::Object { len, .. }) = nodes.get(key) else {
        return Err(EnvelopeError::FieldType(Field::Key));
    };
    let mut at = key + 1;
    let mut user_id = None;
    for _ in 0..len {
        if key_at(nodes, at)? == "user_id" {
            user_id = Some(at + 1);
            break;
        }
        at += 1 + nodes.get(at + 1).map_or(1, span);
    }
    let user_id = string_field(nodes, user_id, Field::UserId)?;
    if user_id.is_empty() || user_id.len() > USER_ID_BYTES_MAX {
        return Err(EnvelopeError::UserIdInvalid);
    }
    Ok(user_id)
}

/// Splits an NDJSON body into its event lines: `\n` separates, a `\r` before it is
/// dropped, and blank (all ASCII whitespace) lines are skipped. Records at most `max`
/// ranges in `spans` (cleared first) and returns how many lines there are, counting
/// on past `max` only to `max + 1`, so a caller can tell "too many" without scanning a
/// hostile body to its end twice. Uses SIMD `memchr`: this runs over every batch byte.
pub fn ndjson_lines(body: &[u8], spans: &mut Vec<std::ops::Range<usize>>, max: usize) -> usize {
    spans.clear();
    let mut count = 0;
    let mut start = 0;
    // Bounded: each pass moves `start` past one newline or to the end of the body.
    while start < body.len() && count <= max {
        let end = memchr::memchr(b'\n', &body[start..]).map_or(body.len(), |at| start + at);
        let mut line_end = end;
        if line_end > start && body[line_end - 1] == b'\r' {
            line_end -= 1;
        }
        if !body[start..line_end].trim_ascii().is_empty() {
            count += 1;
            if count <= max {
                spans.push(start..line_end);
            }
        }
        start = end + 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::BODY_BYTES_MAX_DEFAULT;

    /// The example of SPEC §1.2, verbatim.
    const EXAMPLE: &str = r#"{"event_id":"e_01HF3Z8Z7Q8Q2K","event_type":"bet","schema_version":"1.3.0",
 "occurred_at":"2025-10-24T11:37:21Z","key":{"user_id":"u_12345"},
 "ctx":{"session_id":"s_778","platform":"ios","geo":"TR","device_fp":"fp_4a1"},
 "payload":{"game_id":"slot_wolf","bet":0.5,"win":1.25,"currency":"EUR","provider":"GameCo"}}"#;

    fn validator() -> Validator {
        Validator::new(BODY_BYTES_MAX_DEFAULT)
    }

    /// A valid envelope with `extra` spliced in as further top-level members.
    fn with_members(extra: &str) -> String {
        format!(r#"{{"event_id":"e_1","event_type":"bet","occurred_at":"2025-10-24T11:37:21Z","key":{{"user_id":"u_1"}}{extra}}}"#)
    }

    fn error_of(body: &str) -> EnvelopeError {
        validator().validate(body.as_bytes()).expect_err(body)
    }

    #[test]
    fn ndjson_lines_split_trim_and_stop_past_the_limit() {
        let mut spans = Vec::new();
        let body = b"{\"a\":1}\r\n\n  \t\r\n{\"b\":2}\n{\"c\":3}";
        assert_eq!(ndjson_lines(body, &mut spans, 10), 3);
        let lines: Vec<&[u8]> = spans.iter().map(|span| &body[span.clone()]).collect();
        assert_eq!(lines, [&b"{\"a\":1}"[..], b"{\"b\":2}", b"{\"c\":3}"]);
        assert_eq!(ndjson_lines(b"", &mut spans, 10), 0);
        assert_eq!(ndjson_lines(b"\n\r\n \n", &mut spans, 10), 0);
        assert!(spans.is_empty());
        // A lone \r is part of the line (only \r\n ends one); a trailing newline adds nothing.
        assert_eq!(ndjson_lines(b"x\ry\n", &mut spans, 10), 1);
        assert_eq!(spans, vec![std::ops::Range { start: 0, end: 3 }]);
        let many = b"1\n".repeat(50);
        assert_eq!(ndjson_lines(&many, &mut spans, 3), 4);
        assert_eq!(spans, [0..1, 2..3, 4..5]);
    }

    #[test]
    fn ndjson_lines_match_the_plain_definition_on_random_bodies() {
        let alphabet = b"\n\r \ta{";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut spans = Vec::new();
        for _ in 0..5000 {
            let len = (state % 40) as usize;
            let body: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    alphabet[(state % alphabet.len() as u64) as usize]
                })
                .collect();
            let plain: Vec<&[u8]> = body
                .split(|b| *b == b'\n')
                .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
                .filter(|line| !line.trim_ascii().is_empty())
                .collect();
            let count = ndjson_lines(&body, &mut spans, 1000);
            let fast: Vec<&[u8]> = spans.iter().map(|span| &body[span.clone()]).collect();
            assert_eq!((count, fast), (plain.len(), plain), "{body:?}");
        }
    }

    #[test]
    fn spec_example_is_accepted() {
        let envelope = validator().validate(EXAMPLE.as_bytes()).expect("valid");
        assert_eq!(envelope.event_id(), b"e_01HF3Z8Z7Q8Q2K");
        assert_eq!(envelope.event_type(), b"bet");
        assert_eq!(envelope.close_brace, EXAMPLE.len() - 1);
        assert_eq!(envelope.user_id_hash, murmur2(b"u_12345"));
        assert_eq!(envelope.occurred_at_ms, 1_761_305_841_000);
    }

    #[test]
    fn trailing_and_leading_whitespace_are_allowed() {
        let body = format!(" \n{EXAMPLE} \r\n\t ");
        let envelope = validator().validate(body.as_bytes()).expect("valid");
        assert_eq!(envelope.close_brace, 2 + EXAMPLE.len() - 1);
        assert_eq!(body.as_bytes()[envelope.close_brace], b'}');
    }

    #[test]
    fn escaped_event_id_is_decoded() {
        let body = with_members("").replace(r#""e_1""#, r#""e\u005f1""#);
        assert!(body.contains(r"\u005f"));
        let envelope = validator().validate(body.as_bytes()).expect("valid");
        assert_eq!(envelope.event_id(), b"e_1");
    }

    #[test]
    fn required_fields_missing() {
        let cases = [
            (r#""event_id":"e_1","#, Field::EventId),
            (r#""event_type":"bet","#, Field::EventType),
            (r#""occurred_at":"2025-10-24T11:37:21Z","#, Field::OccurredAt),
            (r#","key":{"user_id":"u_1"}"#, Field::Key),
        ];
        for (member, field) in cases {
            let body = with_members("").replace(member, "");
            assert_eq!(error_of(&body), EnvelopeError::FieldMissing(field), "{body}");
            assert!(EnvelopeError::FieldMissing(field).message().contains(field.name()));
        }
        let body = with_members("").replace(r#""user_id":"u_1""#, r#""tenant":"t""#);
        assert_eq!(error_of(&body), EnvelopeError::FieldMissing(Field::UserId));
    }

    #[test]
    fn wrong_types() {
        let cases = [
            (r#""event_id":"e_1""#, r#""event_id":1"#, Field::EventId),
            (r#""event_type":"bet""#, r#""event_type":null"#, Field::EventType),
            (r#""occurred_at":"2025-10-24T11:37:21Z""#, r#""occurred_at":1761305841"#, Field::OccurredAt),
            (r#""key":{"user_id":"u_1"}"#, r#""key":"u_1""#, Field::Key),
            (r#""user_id":"u_1""#, r#""user_id":12345"#, Field::UserId),
        ];
        for (from, to, field) in cases {
            let body = with_members("").replace(from, to);
            assert_eq!(error_of(&body), EnvelopeError::FieldType(field), "{body}");
        }
        for (extra, field) in [
            (r#","schema_version":1"#, Field::SchemaVersion),
            (r#","ctx":[]"#, Field::Ctx),
            (r#","payload":"x""#, Field::Payload),
            (r#","payload":null"#, Field::Payload),
        ] {
            assert_eq!(error_of(&with_members(extra)), EnvelopeError::FieldType(field), "{extra}");
        }
        let optional = with_members(r#","schema_version":"2","ctx":{},"payload":{"a":[1]},"other":7"#);
        assert!(validator().validate(optional.as_bytes()).is_ok());
    }

    #[test]
    fn field_values_are_checked() {
        let long_id = "e".repeat(129);
        let max_id = "e".repeat(128);
        let long_user = "u".repeat(257);
        let cases = [
            (r#""event_id":"e_1""#, r#""event_id":"""#.to_string(), EnvelopeError::EventIdInvalid),
            (r#""event_id":"e_1""#, r#""event_id":"e 1""#.to_string(), EnvelopeError::EventIdInvalid),
            (r#""event_id":"e_1""#, r#""event_id":"é""#.to_string(), EnvelopeError::EventIdInvalid),
            (r#""event_id":"e_1""#, format!(r#""event_id":"{long_id}""#), EnvelopeError::EventIdInvalid),
            (r#""event_type":"bet""#, r#""event_type":"""#.to_string(), EnvelopeError::EventTypeInvalid),
            (r#""event_type":"bet""#, format!(r#""event_type":"{}""#, "t".repeat(65)), EnvelopeError::EventTypeInvalid),
            (r#""event_type":"bet""#, r#""event_type":"b/t""#.to_string(), EnvelopeError::EventTypeInvalid),
            (r#"11:37:21Z"#, r#"11:37:21""#.to_string(), EnvelopeError::JsonInvalid),
            (r#"2025-10-24T11:37:21Z"#, "2025-02-30T11:37:21Z".to_string(), EnvelopeError::OccurredAtInvalid),
            (r#"2025-10-24T11:37:21Z"#, "yesterday".to_string(), EnvelopeError::OccurredAtInvalid),
            (r#""user_id":"u_1""#, r#""user_id":"""#.to_string(), EnvelopeError::UserIdInvalid),
            (r#""user_id":"u_1""#, format!(r#""user_id":"{long_user}""#), EnvelopeError::UserIdInvalid),
        ];
        for (from, to, expected) in cases {
            let body = with_members("").replace(from, &to);
            assert_eq!(error_of(&body), expected, "{body}");
        }
        let body = with_members("").replace("e_1", &max_id).replace("bet", "a.B-9:_");
        let envelope = validator().validate(body.as_bytes()).expect("limits are inclusive");
        assert_eq!(envelope.event_id(), max_id.as_bytes());
        let body = with_members("").replace("u_1", &"ü".repeat(128));
        assert!(validator().validate(body.as_bytes()).is_ok(), "user_id of 256 bytes");
    }

    #[test]
    fn ingested_at_is_reserved_at_top_level_only() {
        let body = with_members(r#","ingested_at":"2025-10-24T11:37:21.000Z""#);
        assert_eq!(error_of(&body), EnvelopeError::FieldReserved);
        let nested = with_members(r#","payload":{"ingested_at":"x"}"#);
        assert!(validator().validate(nested.as_bytes()).is_ok());
    }

    #[test]
    fn not_an_object_and_invalid_json() {
        for body in ["[]", "\"e_1\"", "42", "null", "[{}]"] {
            assert_eq!(error_of(body), EnvelopeError::NotAnObject, "{body}");
        }
        for body in ["", "   ", "{", "{}}", "{\"a\":1,}", "{'a':1}", "{} {}", "{\"a\":01}", "{\"a\":1}\0"] {
            assert_eq!(error_of(body), EnvelopeError::JsonInvalid, "{body}");
        }
        assert_eq!(error_of("{}"), EnvelopeError::FieldMissing(Field::EventId));
    }

    #[test]
    fn unpaired_surrogate_escapes_are_rejected() {
        for string in [r"\ud800", r"\ud800x", r"\udc00", r"\ud800\ue000", r"\ud800\u0041", r"a\\\ud800"] {
            let body = with_members(&format!(r#","payload":{{"s":"{string}"}}"#));
            assert_eq!(error_of(&body), EnvelopeError::JsonInvalid, "{string}");
        }
        for string in [r"\ud83d\ude00", r"\\ud800", r"\\\\ud800", r#"\u00e9\n\""#, r"\uFFFD"] {
            let body = with_members(&format!(r#","payload":{{"s":"{string}"}}"#));
            assert!(validator().validate(body.as_bytes()).is_ok(), "{string}");
        }
    }

    /// Found by the envelope_validator fuzz target (fuzz/, docs/FUZZING.md): simd-json
    /// accepted a NUL byte after a scalar and skipped what followed it; serde_json and
    /// every other strict parser refuse the document.
    #[test]
    fn nul_byte_after_a_scalar_is_rejected() {
        for member in ["1\0", "0.2\u{0}5", "-2e3\0 ", "true\0junk", "false\0", "null\0\0", "\"a\0\""] {
            let body = with_members(&format!(r#","w":{member}"#));
            assert_eq!(error_of(&body), EnvelopeError::JsonInvalid, "{body:?}");
        }
        assert!(validator().validate(with_members(r#","w":"a\u0000b""#).as_bytes()).is_ok(), "an escaped NUL is fine");
    }

    /// Found by the envelope_validator fuzz target: simd-json's slow path for numbers of
    /// more than 19 significant digits did not check the byte after the number.
    #[test]
    fn long_number_followed_by_junk_is_rejected() {
        let long = "0.5555555555555555555555555";
        for member in [
            format!("{long})ey5"),
            format!("-{long})"),
            format!("{long}.5"),
            format!("{long}e"),
            format!("{long}x"),
            "55555555555555555555.5x".to_owned(),
        ] {
            let body = with_members(&format!(r#","w":{member}"#));
            assert_eq!(error_of(&body), EnvelopeError::JsonInvalid, "{member}");
        }
        for member in [long.to_owned(), format!("-{long}e-7"), "1E+2".to_owned(), "0".to_owned(), "-0.0e0".to_owned()] {
            let body = with_members(&format!(r#","w":[{member} , {member}],"s":"1)x\"2","v":{member}"#));
            assert!(validator().validate(body.as_bytes()).is_ok(), "{body}");
        }
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let mut body = with_members(r#","payload":{"name":"XX"}"#).into_bytes();
        let at = body.windows(2).position(|w| w == b"XX").expect("marker");
        body[at] = 0xc3; // a lead byte followed by 'X'
        assert_eq!(validator().validate(&body), Err(EnvelopeError::Utf8Invalid));
        body[at] = 0xff;
        assert_eq!(validator().validate(&body), Err(EnvelopeError::Utf8Invalid));
    }

    #[test]
    fn duplicate_keys_are_rejected_at_any_depth() {
        let top = with_members("").replace(r#""event_type":"bet""#, r#""event_type":"bet","event_type":"bet""#);
        assert_eq!(error_of(&top), EnvelopeError::JsonDuplicateKey);
        // Decoded comparison: `event\u005fid` is `event_id`.
        let escaped = with_members(r#","event\u005fid":"e_2""#);
        assert_eq!(error_of(&escaped), EnvelopeError::JsonDuplicateKey);
        let nested = with_members(r#","payload":{"a":{"b":[{"c":1,"c":2}]}}"#);
        assert_eq!(error_of(&nested), EnvelopeError::JsonDuplicateKey);
        let in_key = with_members("").replace(r#"{"user_id":"u_1"}"#, r#"{"user_id":"u_1","user_id":"u_2"}"#);
        assert_eq!(error_of(&in_key), EnvelopeError::JsonDuplicateKey);
        // Many keys take the sorting path; the duplicate is the first and the last.
        let mut many: String = (0..40).map(|n| format!(r#""k{n}":{n},"#)).collect();
        many.push_str(r#""k0":0"#);
        assert_eq!(error_of(&with_members(&format!(r#","payload":{{{many}}}"#))), EnvelopeError::JsonDuplicateKey);
        let distinct: String = (0..40).map(|n| format!(r#""k{n}":{{"k{n}":1}}"#)).collect::<Vec<_>>().join(",");
        assert!(validator().validate(with_members(&format!(r#","payload":{{{distinct}}}"#)).as_bytes()).is_ok());
    }

    /// A valid envelope whose deepest value sits at `depth` (the top-level object is 1).
    fn nested(depth: usize) -> String {
        let arrays = depth - 1;
        with_members(&format!(r#","extra":{}{}"#, "[".repeat(arrays), "]".repeat(arrays)))
    }

    #[test]
    fn depth_64_is_accepted_and_65_rejected() {
        assert!(validator().validate(nested(JSON_DEPTH_MAX).as_bytes()).is_ok());
        assert_eq!(error_of(&nested(JSON_DEPTH_MAX + 1)), EnvelopeError::JsonTooDeep);
        let objects = format!(r#","payload":{}1{}"#, r#"{"a":"#.repeat(63), "}".repeat(63));
        assert!(validator().validate(with_members(&objects).as_bytes()).is_ok());
        let objects = format!(r#","payload":{}1{}"#, r#"{"a":"#.repeat(64), "}".repeat(64));
        assert_eq!(error_of(&with_members(&objects)), EnvelopeError::JsonTooDeep);
        // Siblings after a deep branch are back at a shallow depth.
        let siblings = with_members(&format!(r#","x":{}{},"y":{{}}"#, "[".repeat(63), "]".repeat(63)));
        assert!(validator().validate(siblings.as_bytes()).is_ok());
    }

    #[test]
    fn validate_survives_depth_of_100_000() {
        assert_eq!(error_of(&nested(100_000)), EnvelopeError::JsonTooDeep);
        let unclosed = format!("{{\"a\":{}", "[".repeat(200_000));
        assert_eq!(error_of(&unclosed), EnvelopeError::JsonInvalid);
    }

    #[test]
    fn body_over_limit_is_rejected() {
        let mut small = Validator::new(64);
        assert_eq!(small.validate(EXAMPLE.as_bytes()), Err(EnvelopeError::BodyTooLarge));
    }

    #[test]
    fn stamped_event_is_valid_json_with_ingested_at() {
        let body = format!("{EXAMPLE}\n");
        let mut validator = validator();
        let envelope = validator.validate(body.as_bytes()).expect("valid");
        let stamp = Stamp::new(1_761_305_841_183);
        assert_eq!(stamp.as_bytes(), b",\"ingested_at\":\"2025-10-24T11:37:21.183Z\"");
        let stored: Vec<u8> = stamped_parts(body.as_bytes(), &envelope, &stamp).concat();
        assert_eq!(stored.len(), body.len() + STAMP_BYTES);
        // The stored event is a valid document carrying the gateway's field...
        assert_eq!(validator.validate(&stored), Err(EnvelopeError::FieldReserved));
        let mut copy = stored.clone();
        let value = simd_json::to_borrowed_value(&mut copy).expect("stored event is JSON");
        use simd_json::prelude::*;
        assert_eq!(value.get_str("ingested_at"), Some("2025-10-24T11:37:21.183Z"));
        assert_eq!(value.get_str("event_id"), Some("e_01HF3Z8Z7Q8Q2K"));
    }

    #[test]
    fn error_codes_are_snake_case_and_messages_present() {
        let errors = EnvelopeError::ONE_OF_EACH;
        for error in errors {
            let code = error.code();
            assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()), "{code}");
            assert!(!error.message().is_empty());
            assert!(error.to_string().starts_with(code));
        }
    }

    /// xorshift64*: deterministic bytes for the fuzz loop.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut validator = Validator::new(4096);
        let alphabet = b"{}[]\":,\\ u0123abcdefnrtlsx_-.e+\xc3\xa9\xff\t\n";
        let mut accepted = 0;
        for round in 0..20_000 {
            let mut body = EXAMPLE.as_bytes().to_vec();
            match round % 4 {
                0 => {
                    // Random bytes drawn mostly from JSON's alphabet.
                    body.clear();
                    for _ in 0..rng.below(300) {
                        body.push(alphabet[rng.below(alphabet.len())]);
                    }
                }
                1 => body.truncate(rng.below(body.len() + 1)),
                _ => {
                    for _ in 0..1 + rng.below(4) {
                        let at = rng.below(body.len());
                        body[at] = alphabet[rng.below(alphabet.len())];
                    }
                }
            }
            if let Ok(envelope) = validator.validate(&body) {
                accepted += 1;
                assert_eq!(body[envelope.close_brace], b'}');
                assert!(!envelope.event_id().is_empty());
            }
        }
        assert!(accepted > 0, "some mutations must stay valid");
        assert!(validator.validate(EXAMPLE.as_bytes()).is_ok(), "validator is reusable after errors");
    }
}
