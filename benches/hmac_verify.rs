//! HMAC-SHA256 signature verification (scheme v1, SPEC §1.1) per request body size.
//!
//! Measures `sluice::perimeter::hmac::verify_v1` against a one-key ring built with
//! `KeyRing::from_toml` (secret `whsec_` + base64 of 32 bytes) for bodies of 330 B (one
//! event), 4 KiB (one large event) and 100 events of 330 B as an NDJSON batch (~32 KiB).
//! Signatures are made with `hmac::sign_v1` and `now_ms` is read once, before timing.
//! Throughput is body bytes authenticated per second.
//!
//! Reproduce: `cargo bench --bench hmac_verify`

use sluice_test_support::bench_inputs as common;

use std::hint::black_box;
use std::path::Path;

use base64::Engine;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice::constants::TIMESTAMP_TOLERANCE_SECS_DEFAULT;
use sluice::perimeter::hmac::{self, Credentials};
use sluice::perimeter::keyring::KeyRing;

const KID: &str = "k_bench";
/// The 32 secret bytes of the bench key.
const SECRET: [u8; 32] = *b"sluice-bench-hmac-secret-32bytes";

fn key_ring() -> KeyRing {
    let secret = base64::engine::general_purpose::STANDARD.encode(SECRET);
    let text = format!("[[keys]]\nkid = \"{KID}\"\nsecret = \"whsec_{secret}\"\npartner = \"bench\"\n");
    KeyRing::from_toml(&text, Path::new("bench-keyring.toml")).expect("bench key ring is valid")
}

fn bench_verify(c: &mut Criterion) {
    let ring = key_ring();
    let key = ring.get(KID.as_bytes()).expect("bench key is in the ring");
    let now_ms = sluice::platform::time::now_unix_ms();
    let timestamp = now_ms.div_euclid(1000).to_string();

    let bodies = [
        ("single_event", common::event("e_01HF3Z8Z7Q8Q2K", common::EVENT_BYTES_TYPICAL)),
        ("large_event", common::event("e_01HF3Z8Z7Q8Q2L", common::EVENT_BYTES_LARGE)),
        ("batch_100_events", common::ndjson_batch(common::BATCH_EVENTS, common::EVENT_BYTES_TYPICAL)),
    ];

    let mut group = c.benchmark_group("hmac_verify_v1");
    for (name, body) in &bodies {
        let signature = hmac::sign_v1(key.hmac_key(), timestamp.as_bytes(), body);
        let credentials = Credentials { kid: Some(KID.as_bytes()), timestamp: Some(timestamp.as_bytes()), signature: Some(&signature) };
        let verified = hmac::verify_v1(&ring, &credentials, body, now_ms, TIMESTAMP_TOLERANCE_SECS_DEFAULT);
        assert!(verified.is_ok(), "bench signature must verify: {verified:?}");

        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new(*name, format!("{}B", body.len())), body, |b, body| {
            b.iter(|| {
                let verified =
                    hmac::verify_v1(&ring, black_box(&credentials), black_box(body), black_box(now_ms), TIMESTAMP_TOLERANCE_SECS_DEFAULT);
                black_box(verified.is_ok())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
