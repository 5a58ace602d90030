//! The event-type sniff a shard runs on a single event's body before its signature is
//! checked, to refuse an optional event early under overload (`overload::sniff_event_type`).
//! Arbitrary bytes: never panics; what it returns lies inside the body, right after an
//! `"event_type"` key, a colon and a quote (whitespace between them), holds no quote or
//! backslash, and is followed by the closing quote.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::overload::sniff_event_type;

fuzz_target!(|data: &[u8]| {
    let Some(found) = sniff_event_type(data) else { return };
    let start = found.as_ptr() as usize - data.as_ptr() as usize;
    let end = start + found.len();
    assert!(end < data.len(), "the value is inside the body, before its closing quote");
    assert_eq!(data[end], b'"');
    assert!(!found.iter().any(|byte| *byte == b'"' || *byte == b'\\'));
    let before = data[..start].strip_suffix(b"\"").expect("an opening quote").trim_ascii_end();
    let before = before.strip_suffix(b":").expect("a colon").trim_ascii_end();
    assert!(before.ends_with(b"\"event_type\""), "after the key");
});
