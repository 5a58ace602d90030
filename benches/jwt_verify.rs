//! JWT bearer verification (`sluice::perimeter::jwt::JwtVerifier::verify`) per algorithm.
//!
//! One issuer, one JWKS holding an RS256 (2048-bit), an ES256 and an EdDSA key, tokens
//! minted by `tests/support/src/jwt.rs` with a typical client-credentials claims set (~330 B
//! of JSON, two scopes). Each iteration is a whole `verify`: bearer parsing, base64url,
//! strict JSON of header and claims, key selection, signature and claim checks, with
//! one warm `JwtScratch`. `now_ms` is read once, before timing. RS256 with a 4096-bit
//! key is measured too: it is the cost an issuer with the largest allowed key imposes.
//!
//! Reproduce: `cargo bench --bench jwt_verify`

use sluice_test_support::jwt as mint;

use std::hint::black_box;

use aws_lc_rs::rsa::KeySize;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mint::Signer;
use sluice::perimeter::jwt::{Algorithm, IssuerPolicy, JwtPolicy, JwtScratch, JwtVerifier};

const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "sluice-ingest";

fn bench_verify(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let signers = [
        ("RS256_2048", Signer::rsa("rsa-2048")),
        ("RS256_4096", Signer::rsa_sized("rsa-4096", KeySize::Rsa4096)),
        ("ES256", Signer::ec("ec-1")),
        ("EdDSA", Signer::ed("ed-1")),
    ];
    let jwks_file = dir.path().join("jwks.json");
    mint::write_jwks(&jwks_file, &signers.iter().map(|(_, signer)| signer).collect::<Vec<_>>());
    let issuer = IssuerPolicy { issuer: ISSUER.into(), audience: AUDIENCE.into(), algorithms: Algorithm::ALL.to_vec(), jwks_file };
    let verifier = JwtVerifier::load(JwtPolicy::new(vec![issuer], 60).expect("bench policy")).expect("bench JWKS");
    let now_secs = mint::now_secs();
    let claims = mint::access_claims(ISSUER, AUDIENCE, "partner-bench", now_secs, "ingest:bet ingest:login");
    let mut scratch = JwtScratch::new();

    let mut group = c.benchmark_group("jwt_verify");
    for (name, signer) in &signers {
        let header = format!("Bearer {}", signer.token(&claims));
        let verified = verifier.verify(header.as_bytes(), now_secs * 1000, &mut scratch).map(|_| ());
        assert_eq!(verified, Ok(()), "bench token must verify");
        group.bench_with_input(BenchmarkId::new(*name, format!("{}B", header.len())), &header, |b, header| {
            b.iter(|| {
                let verified = verifier.verify(black_box(header.as_bytes()), black_box(now_secs * 1000), &mut scratch);
                black_box(verified.is_ok())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
