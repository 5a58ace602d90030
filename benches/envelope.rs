//! Envelope validation (SPEC §1.2) and the routing hash.
//!
//! Measures `sluice::ingest::envelope::Validator::validate` (UTF-8, simd-json tape, depth,
//! duplicate keys, field checks) on the SPEC §1.2 example event (310 B) and on a 4 KiB
//! event whose payload carries a list of line items, with a validator sized for the
//! default 512 KiB body limit; and `sluice::log::partitioner::murmur2` on a short and a UUID-length
//! `key.user_id`. Throughput is body bytes validated per second, and hashes per second.
//!
//! Reproduce: `cargo bench --bench envelope`

use sluice_test_support::bench_inputs as common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice::constants::BODY_BYTES_MAX_DEFAULT;
use sluice::ingest::envelope::Validator;
use sluice::log::partitioner;

fn bench_validate(c: &mut Criterion) {
    let mut validator = Validator::new(BODY_BYTES_MAX_DEFAULT);
    let bodies =
        [("spec_example", common::SPEC_EVENT.to_vec()), ("large_payload", common::event("e_01HF3Z8Z7Q8Q2L", common::EVENT_BYTES_LARGE))];

    let mut group = c.benchmark_group("envelope_validate");
    for (name, body) in &bodies {
        let envelope = validator.validate(body).expect("bench event is a valid envelope");
        assert_eq!(envelope.user_id_hash, partitioner::murmur2(common::USER_ID.as_bytes()));

        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new(*name, format!("{}B", body.len())), body, |b, body| {
            b.iter(|| black_box(validator.validate(black_box(body)).is_ok()))
        });
    }
    group.finish();
}

fn bench_murmur2(c: &mut Criterion) {
    let user_ids: [&[u8]; 2] = [common::USER_ID.as_bytes(), b"u_3f2c9a4e-7b1d-4c8e-9a06-5d2f1e8b7c34"];

    let mut group = c.benchmark_group("routing_murmur2");
    group.throughput(Throughput::Elements(1));
    for user_id in user_ids {
        group.bench_with_input(BenchmarkId::new("user_id", format!("{}B", user_id.len())), user_id, |b, user_id| {
            b.iter(|| partitioner::murmur2(black_box(user_id)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_validate, bench_murmur2);
criterion_main!(benches);
