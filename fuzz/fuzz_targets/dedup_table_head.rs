//! The dedup table's header and state block (`log::dedup::decode_table_head`), which
//! every start reads from each `dedup-*.idx` before it maps the table. Arbitrary bytes and
//! a file length from the input: the decoder never panics, and what it accepts has a
//! power-of-two slot count that fills the file exactly and fewer ids than slots. Then a
//! head built from the input: encoded, it decodes to itself whenever it is valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::log::dedup::{TABLE_HEAD_BYTES, TableHead, decode_table_head, encode_table_head};

const SLOTS_AT: u64 = 4096;
const SLOT_BYTES: u64 = 16;

fn word(data: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = data.get(at + i).copied().unwrap_or(0);
    }
    u64::from_le_bytes(bytes)
}

fuzz_target!(|data: &[u8]| {
    let file_bytes = word(data, TABLE_HEAD_BYTES);
    if let Some(head) = decode_table_head(data, file_bytes, 3, 0x5EED) {
        assert!(head.slots.is_power_of_two() && SLOTS_AT + head.slots * SLOT_BYTES == file_bytes);
        assert!(head.count < head.slots);
    }
    let slots = 1u64 << (word(data, 0) % 40);
    let head = TableHead {
        slots,
        first_offset: word(data, 8),
        count: word(data, 16) % (slots + 1),
        newest_ms: word(data, 24) as i64,
        boot_id: [data.get(32).copied().unwrap_or(0); 16],
        clean: word(data, 40) & 1 == 1,
    };
    let bytes = encode_table_head(3, 0x5EED, &head, word(data, 48));
    let decoded = decode_table_head(&bytes, SLOTS_AT + slots * SLOT_BYTES, 3, 0x5EED);
    assert_eq!(decoded, (head.count < slots).then_some(head));
    assert_eq!(decode_table_head(&bytes, SLOTS_AT + slots * SLOT_BYTES, 4, 0x5EED), None, "another partition's table");
    assert_eq!(decode_table_head(&bytes, SLOTS_AT + slots * SLOT_BYTES, 3, 0x5EEE), None, "another key's table");
});
