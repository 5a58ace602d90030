//! The consumer side's side-log records: the cursor journal (`decode_cursor`, read at
//! every start to restore committed cursors) and the read log (`readlog::decode`, read
//! by tools and the audit log). Arbitrary bytes: decoding never panics, a decoded record
//! used at most the input and encodes back to exactly those bytes; then records built
//! from the input round-trip or are refused whole.
#![no_main]

#[allow(dead_code, reason = "the shared helpers this target does not use")]
mod common;

use libfuzzer_sys::fuzz_target;
use sluice::consume::readlog::{self, Kind, ReadRecord};
use sluice::consume::subscriptions::{decode_cursor, encode_cursor};

fuzz_target!(|data: &[u8]| {
    if let Ok(((name, topic, partition, next), used)) = decode_cursor(data) {
        common::check_decoded(data, used, &[name.as_bytes(), topic.as_bytes()], |out| encode_cursor(out, name, topic, partition, next));
    }
    if let Ok((record, used)) = readlog::decode(data) {
        let parts = [record.partner.as_bytes(), record.topic.as_bytes(), record.subscription.as_bytes()];
        common::check_decoded(data, used, &parts, |out| readlog::encode(&record, out));
    }

    let [a, b, c, numbers] = <[Vec<u8>; 4]>::try_from(common::parts(data, 4)).expect("four parts");
    let (a, b, c) = (String::from_utf8_lossy(&a), String::from_utf8_lossy(&b), String::from_utf8_lossy(&c));
    let value = u64::from_le_bytes(common::le_bytes(&numbers, 0));
    let partition = u32::from_le_bytes(common::le_bytes(&numbers, 8));
    let mut out = Vec::new();
    match encode_cursor(&mut out, &a, &b, partition, value) {
        Ok(()) => assert_eq!(decode_cursor(&out).expect("an encoded cursor decodes"), ((&*a, &*b, partition, value), out.len())),
        Err(_) => assert!(out.is_empty() && 2 + a.len() + 2 + b.len() + 12 > 512),
    }
    let record = ReadRecord {
        time_ms: value as i64,
        kind: Kind::Read,
        partition: (partition % 3 != 0).then_some(partition),
        from: value,
        to: value.wrapping_add(1),
        events: u64::from(partition),
        bytes: value >> 3,
        partner: &a,
        topic: &b,
        subscription: &c,
    };
    let mut out = Vec::new();
    match readlog::encode(&record, &mut out) {
        Ok(()) => assert_eq!(readlog::decode(&out).expect("an encoded record decodes"), (record, out.len())),
        Err(_) => assert!(out.is_empty()),
    }
});
