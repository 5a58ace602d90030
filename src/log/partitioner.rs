//! Partition choice: which partition an event's routing key (`key.user_id`) lands in and
//! which shard owns that partition.
//!
//! The hash and the partition formula are Kafka's default partitioner for keyed records
//! (`Utils.toPositive(Utils.murmur2(keyBytes)) % numPartitions`), so a topic with the same
//! partition count holds the same keys in the same partitions as sluice; the Kafka bridge
//! relies on this to keep per-key order without repartitioning.

/// Kafka's `Utils.murmur2`: 32-bit MurmurHash2 with seed `0x9747b28c`, little-endian
/// 4-byte blocks and Kafka's tail handling. Returns the bits of Kafka's Java `int`
/// (e.g. Kafka's `-790332482` for `b"foobar"` is `(-790332482i32) as u32`).
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Java's `seed ^ length` takes an int length; bodies are far below 2^31 bytes, and
    // truncation is what Java would see for any length that fits in an int.
    let mut h = SEED ^ (data.len() as u32);
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        // Kafka's switch falls through from case 3 to case 1; the multiply runs once.
        if tail.len() == 3 {
            h ^= u32::from(tail[2]) << 16;
        }
        if tail.len() >= 2 {
            h ^= u32::from(tail[1]) << 8;
        }
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition of a key hash: Kafka's `toPositive(hash) % partitions` (the sign bit is
/// masked, not negated). `partitions` must be at least 1.
pub fn partition_for(hash: u32, partitions: u32) -> u32 {
    assert!(partitions > 0, "partition count must be at least 1");
    (hash & 0x7fff_ffff) % partitions
}

/// The shard that owns `partition`: partitions are dealt round-robin over the shards, so
/// each shard owns `partitions / shards` of them, give or take one. `shards` must be at
/// least 1.
pub fn owner_shard(partition: u32, shards: usize) -> usize {
    assert!(shards > 0, "shard count must be at least 1");
    partition as usize % shards
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expectations from Kafka's own `UtilsTest.testMurmur2`
    /// (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java), as Java ints.
    #[test]
    fn murmur2_matches_kafka_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input) as i32, expected, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn murmur2_covers_every_tail_length() {
        // Lengths 0..=7 walk every tail case; distinct outputs catch a dropped tail byte.
        let data = b"abcdefg";
        let hashes: Vec<u32> = (0..=data.len()).map(|len| murmur2(&data[..len])).collect();
        for (i, a) in hashes.iter().enumerate() {
            for b in &hashes[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn partition_masks_sign_bit_like_kafka() {
        // toPositive(-790332482) = -790332482 & 0x7fffffff = 1357151166.
        let hash = murmur2(b"foobar");
        assert_eq!(hash & 0x7fff_ffff, 1_357_151_166);
        assert_eq!(partition_for(hash, 64), 1_357_151_166 % 64);
        assert_eq!(partition_for(0xffff_ffff, 10), 0x7fff_ffff % 10);
        assert_eq!(partition_for(12345, 1), 0);
    }

    #[test]
    fn owner_shard_deals_round_robin() {
        assert_eq!(owner_shard(0, 4), 0);
        assert_eq!(owner_shard(5, 4), 1);
        assert_eq!(owner_shard(63, 1), 0);
    }
}
