//! The segment summary codec (`log::summary`), which every start reads beside each
//! segment instead of the segment. Arbitrary bytes: `Summary::decode` never panics,
//! keeps at most `DAMAGE_KEPT_MAX` damaged ranges, and whatever it accepts encodes back
//! to exactly the input. Then a summary built from the input encodes and decodes to
//! itself, with its damage list cut at `DAMAGE_KEPT_MAX`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::log::summary::{DAMAGE_KEPT_MAX, Summary};

fn word(data: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = data.get(at + i).copied().unwrap_or(0);
    }
    u64::from_le_bytes(bytes)
}

fuzz_target!(|data: &[u8]| {
    if let Some(summary) = Summary::decode(data) {
        assert!(summary.damage.len() <= DAMAGE_KEPT_MAX);
        assert_eq!(summary.encode(), data, "an accepted summary is its own encoding");
    }
    let damage: Vec<(u64, u64)> = data.chunks(16).skip(5).map(|chunk| (word(chunk, 0), word(chunk, 8))).collect();
    let built = Summary {
        partition: word(data, 0) as u32,
        base_offset: word(data, 4),
        end_offset: word(data, 12),
        records: word(data, 20),
        last_ingest_ms: word(data, 28) as i64,
        end_position: word(data, 36),
        segment_bytes: word(data, 44),
        boot_id: [data.first().copied().unwrap_or(0); 16],
        sealed: word(data, 52) & 1 == 1,
        durable: word(data, 52) & 2 == 2,
        damage: damage.clone(),
    };
    let decoded = Summary::decode(&built.encode()).expect("an encoded summary decodes");
    let kept = &damage[..damage.len().min(DAMAGE_KEPT_MAX)];
    assert_eq!(decoded.damage, kept);
    assert_eq!(Summary { damage: kept.to_vec(), ..built }, decoded);
});
