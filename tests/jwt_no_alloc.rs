//! `JwtVerifier::verify` allocates nothing on the Rust heap for accepted tokens and for
//! the rejections decided after parsing (STYLE rule 2): a counting global allocator
//! around verifications with a warm `JwtScratch`. aws-lc's C allocations are outside
//! Rust's allocator and not counted.
//!
//! Reproduce: `cargo test --test jwt_no_alloc`.

use sluice_test_support::jwt as mint;

use mint::Signer;
use serde_json::json;
use sluice::perimeter::jwt::{Algorithm, IssuerPolicy, JwtError, JwtPolicy, JwtScratch, JwtVerifier};
use sluice_test_support::counting_alloc::{CountingAllocator, allocations_during, assert_counting};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "sluice-ingest";

#[test]
fn jwt_verification_does_not_allocate() {
    let dir = tempfile::tempdir().unwrap();
    let signers = [Signer::rsa("rsa-1"), Signer::ec("ec-1"), Signer::ed("ed-1")];
    let jwks_file = dir.path().join("jwks.json");
    mint::write_jwks(&jwks_file, &signers.iter().collect::<Vec<_>>());
    let issuer = IssuerPolicy { issuer: ISSUER.into(), audience: AUDIENCE.into(), algorithms: Algorithm::ALL.to_vec(), jwks_file };
    let verifier = JwtVerifier::load(JwtPolicy::new(vec![issuer], 60).unwrap()).unwrap();
    let now_secs = mint::now_secs();
    let claims = mint::access_claims(ISSUER, AUDIENCE, "partner-1", now_secs, "ingest:bet ingest:login");
    let mut cases = Vec::new();
    for signer in &signers {
        cases.push((format!("Bearer {}", signer.token(&claims)), Ok(())));
        let mut expired = claims.clone();
        expired["exp"] = json!(now_secs - 3600);
        cases.push((format!("Bearer {}", signer.token(&expired)), Err(JwtError::Expired)));
        let mut scp = claims.clone();
        scp["scp"] = json!(["ingest:a", "ingest:b"]);
        scp["aud"] = json!(["x", AUDIENCE]);
        cases.push((format!("Bearer {}", signer.token(&scp)), Ok(())));
    }
    let forged = mint::hs256_token(signers[0].rsa_public_key_pem().as_bytes(), "rsa-1", &claims);
    cases.push((format!("Bearer {forged}"), Err(JwtError::AlgorithmNotAllowed)));
    let token = signers[2].token(&claims);
    let mut segments: Vec<String> = token.split('.').map(str::to_owned).collect();
    segments[1] =
        mint::b64(json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now_secs + 60, "scope": "ingest:*"}).to_string().as_bytes());
    let tampered = segments.join(".");
    cases.push((format!("Bearer {tampered}"), Err(JwtError::SignatureInvalid)));

    assert_counting();
    let mut scratch = JwtScratch::new();
    let now_ms = now_secs * 1000;
    for (header, expected) in &cases {
        let (outcome, allocations) = allocations_during(|| verifier.verify(header.as_bytes(), now_ms, &mut scratch).map(|_| ()));
        assert_eq!(&outcome, expected, "{header}");
        assert_eq!(allocations, 0, "verify allocated for a case expecting {expected:?}");
    }
}
