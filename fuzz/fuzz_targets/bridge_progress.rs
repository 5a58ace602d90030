//! What the Kafka bridge parses from outside: progress records read back from Kafka
//! (`bridge::record::decode_progress` on the value, `parse_progress_key` on the key) and
//! the record key taken from a stored event (`bridge::record::user_key`). The first byte
//! splits the input into key and value. Never panics; a progress value that decodes
//! encodes and decodes to itself; a key that parses belongs to the bridge it was asked
//! for and re-renders to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::bridge::record::{decode_progress, encode_progress, parse_progress_key, progress_key, user_key};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let at = usize::from(split).min(rest.len());
    let (key, value) = rest.split_at(at);
    if let Ok(progress) = decode_progress(value) {
        assert_eq!(decode_progress(&encode_progress(&progress)).as_ref(), Ok(&progress));
    }
    if let Ok(key) = std::str::from_utf8(key) {
        for bridge in ["sluice-bridge", "b", ""] {
            if let Some((topic, partition)) = parse_progress_key(bridge, key) {
                let rendered = progress_key(bridge, topic, partition);
                assert_eq!(parse_progress_key(bridge, &rendered), Some((topic, partition)));
            }
        }
    }
    if let Some(user) = user_key(value) {
        assert!(user.len() <= value.len());
    }
});
