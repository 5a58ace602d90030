//! The document checks on simd-json's tape: UTF-8, numbers and escapes the tape does not
//! vouch for, depth, and duplicate keys at any depth; then the envelope's fields
//! (`fields.rs`). The validator's buffers are warmed once so validation allocates nothing.

use super::*;

/// Per-shard envelope validator. All its buffers are sized in [`Validator::new`] for a
/// body of `body_bytes_max` bytes, so [`Validator::validate`] never allocates.
///
/// Memory: about 55 bytes per byte of `body_bytes_max` (simd-json's tape and stage-2
/// stack, 24 bytes per structural character each, plus the structural index, copies of
/// the input and a key list), so about 28 MiB per shard at the 512 KiB default.
pub struct Validator {
    pub(super) body_bytes_max: usize,
    /// simd-json rewrites strings in place, so the body is copied here first.
    pub(super) scratch: Vec<u8>,
    pub(super) buffers: Buffers,
    /// The tape's storage between calls; always empty there, hence `'static`.
    pub(super) tape_nodes: Vec<Node<'static>>,
    /// Tape indices of one object's keys, for duplicate detection.
    pub(super) keys: Vec<usize>,
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
        self.validate_with(body, |_, _| ()).map(|(envelope, ())| envelope)
    }

    /// [`Validator::validate`], then `then` on the envelope and the parsed document (its
    /// tape, as schemas and policies read it), before the tape is reused: the one parse
    /// of an event serves the envelope, its schema and its policies.
    pub fn validate_with<R>(
        &mut self,
        body: &[u8],
        then: impl FnOnce(&Envelope, crate::schema::tape::TapeNode<'_>) -> R,
    ) -> Result<(Envelope, R), EnvelopeError> {
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
            Ok(()) => check_document(&tape.0, &mut self.keys, body).and_then(|envelope| {
                let root = crate::schema::tape::TapeNode::root(&tape.0).ok_or(EnvelopeError::NotAnObject)?;
                let then = then(&envelope, root);
                Ok((envelope, then))
            }),
            Err(_) => Err(EnvelopeError::JsonInvalid),
        };
        self.tape_nodes = tape.reset().0;
        result
    }
}

/// JSON insignificant whitespace (RFC 8259 §2).
pub(super) fn is_json_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

pub(super) fn check_document(nodes: &[Node<'_>], keys: &mut Vec<usize>, body: &[u8]) -> Result<Envelope, EnvelopeError> {
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
pub(super) fn may_hold_long_number(body: &[u8]) -> bool {
    body.chunks_exact(8).any(|block| block.iter().fold(true, |all, &byte| all & (byte.is_ascii_digit() | (byte == b'.'))))
}

/// True if every number outside strings follows RFC 8259 §6 and ends at whitespace, `,`,
/// `]` or `}`. simd-json 0.15 parses a number of more than 19 significant digits on a
/// slow path that stops at the first byte it cannot use and never looks at it, so
/// `{..,"n":0.55555555555555555555)x}` passed. `body` must already have parsed as JSON.
pub(super) fn numbers_well_formed(body: &[u8]) -> bool {
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
pub(super) fn string_end(body: &[u8], open: usize) -> Option<usize> {
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
pub(super) fn number_len(text: &[u8]) -> Option<usize> {
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
pub(super) fn hex4(digits: &[u8]) -> Option<u32> {
    let digits = digits.get(..4)?;
    digits.iter().try_fold(0u32, |acc, &digit| Some(acc * 16 + char::from(digit).to_digit(16)?))
}

/// True if a `\u` escape in `body` is a surrogate that is not the high half of a
/// high-low pair. I-JSON (RFC 7493 §2.1) forbids them, and simd-json 0.15 decodes them
/// loosely (a lone high surrogate becomes U+0000; `\ud800\ue000` becomes U+10400), so
/// two keys we compare as different could be equal to another parser, or vice versa.
/// `body` must already have parsed as JSON: every backslash then starts an escape.
pub(super) fn has_unpaired_surrogate(body: &[u8]) -> bool {
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
pub(super) fn span(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

/// One pass over the tape: nesting depth (the top-level value is depth 1) and duplicate
/// keys in every object.
pub(super) fn check_structure(nodes: &[Node<'_>], keys: &mut Vec<usize>) -> Result<(), EnvelopeError> {
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

pub(super) fn key_at<'a>(nodes: &[Node<'a>], index: usize) -> Result<&'a str, EnvelopeError> {
    match nodes.get(index) {
        Some(Node::String(key)) => Ok(key),
        _ => Err(EnvelopeError::JsonInvalid),
    }
}

/// Rejects an object (at tape index `object`, with `len` members) that has two equal
/// decoded keys. Sorts key indices in place: O(n log n) and no allocation, and unlike a
/// hash set it has no worst case a producer could craft.
pub(super) fn check_unique_keys(nodes: &[Node<'_>], object: usize, len: usize, keys: &mut Vec<usize>) -> Result<(), EnvelopeError> {
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
