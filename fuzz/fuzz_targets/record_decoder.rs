//! The log record decoder recovery and readers use (`log::format`). Arbitrary bytes
//! as a segment: `decode_segment_header` and `scan_segment` never panic, every record
//! they return lies inside the input, and the scan ends inside it. Then the input's
//! halves as an event id and an event: writing a record and decoding it gives them back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::constants::{RECORD_ALIGN_BYTES, SEGMENT_HEADER_BYTES};
use sluice::log::format;

fuzz_target!(|data: &[u8]| {
    let _ = format::decode_segment_header(data);
    let mut last = None;
    let outcome = format::scan_segment(data, 7, |record| {
        assert!(record.stored_bytes.is_multiple_of(RECORD_ALIGN_BYTES) && record.stored_bytes <= data.len());
        assert!(last.is_none_or(|last| record.offset > last), "offsets only grow");
        last = Some(record.offset);
    });
    assert!(outcome.end_position == SEGMENT_HEADER_BYTES || outcome.end_position <= data.len());
    for damage in &outcome.damage {
        assert!(damage.from_offset < damage.to_offset && damage.to_offset <= outcome.end_offset);
        assert!(damage.from_position <= damage.to_position && damage.to_position <= data.len());
    }
    let (event_id, event) = data.split_at((data.len() / 2).min(u16::MAX.into()));
    let mut out = vec![0xaa; format::stored_len((data.len()) as u64) as usize];
    let Ok(body_len) = format::write_record_uncommitted(&mut out, 42, -1, event_id, &[event]) else { return };
    out[..4].copy_from_slice(&body_len.to_le_bytes());
    let record = format::decode_record(&out).expect("a record just written decodes");
    assert_eq!((record.offset, record.ingest_ms, record.event_id, record.event), (42, -1, event_id, event));
});
