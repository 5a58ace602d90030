//! `hmac::verify_v1` allocates nothing (STYLE rule 2): a counting global allocator around
//! one verification of each outcome. Its own test binary, so the allocator is ours alone.

use std::path::Path;

use sluice::perimeter::hmac::{AuthError, Credentials, sign_v1, verify_v1};
use sluice::perimeter::keyring::KeyRing;

use sluice_test_support::counting_alloc::{CountingAllocator, allocations_during};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// kid, `X-Signature`, expected outcome.
type Case<'a> = (&'a [u8], &'a [u8], Result<(), AuthError>);

#[test]
fn verification_does_not_allocate() {
    let text = "[[keys]]\nkid = \"k1\"\nsecret = \"whsec_c2x1aWNlLXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODlhYmNkZWY=\"\npartner = \"p\"\n";
    let ring = KeyRing::from_toml(text, Path::new("keys.toml")).unwrap();
    let body = vec![b'x'; 64 * 1024];
    let signature = sign_v1(ring.get(b"k1").unwrap().hmac_key(), b"1700000000", &body);
    let mut header = b"v0=aa, v1=0000000000000000000000000000000000000000000000000000000000000000, ".to_vec();
    header.extend_from_slice(&signature);
    let now_ms = 1_700_000_000_000;
    let (_, counted) = allocations_during(|| std::hint::black_box(vec![0u8; 10]));
    assert!(counted > 0, "the counting allocator is not in use");
    let cases: [Case; 4] = [
        (b"k1", &header, Ok(())),
        (b"k1", b"v1=00", Err(AuthError::SignatureInvalid)),
        (b"k2", &header, Err(AuthError::KeyUnknown)),
        (b"k1", &signature[..66], Err(AuthError::SignatureInvalid)),
    ];
    for (kid, signature, expected) in cases {
        let credentials = Credentials { kid: Some(kid), timestamp: Some(b"1700000000"), signature: Some(signature) };
        let (result, allocations) = allocations_during(|| verify_v1(&ring, &credentials, &body, now_ms, 300).map(|_| ()));
        assert_eq!(result, expected);
        assert_eq!(allocations, 0, "{expected:?}");
    }
}
