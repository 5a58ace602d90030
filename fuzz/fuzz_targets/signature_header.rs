//! The `X-Signature` parser and `hmac::verify_v1` with a fixed one-key ring. Checks: no
//! panic; the parser agrees with a plain reference (count of `v1=<64 hex>` items, at
//! most `SIGNATURES_PER_HEADER_MAX` items); a fuzzed header never verifies; and a fuzzed
//! header with the right signature appended verifies whenever it still parses.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sluice::perimeter::hmac::{self, AuthError, Credentials};
use sluice::constants::SIGNATURES_PER_HEADER_MAX;
use sluice::perimeter::keyring::KeyRing;

const NOW_MS: i64 = 1_761_305_841_000;
const TIMESTAMP: &[u8] = b"1761305841";

static RING: LazyLock<KeyRing> = LazyLock::new(|| {
    let text = "[[keys]]\nkid = \"k\"\nsecret = \"whsec_c2x1aWNlLWZ1enotc2VjcmV0LTMyLWJ5dGVzLWxvbmch\"\npartner = \"fuzz\"\n";
    KeyRing::from_toml(text, Path::new("fuzz-keyring.toml")).expect("fuzz key ring is valid")
});

fn reference_count(header: &[u8]) -> Result<usize, AuthError> {
    let items: Vec<&[u8]> = header.split(|&b| b == b',').collect();
    if items.len() > SIGNATURES_PER_HEADER_MAX {
        return Err(AuthError::SignatureInvalid);
    }
    let trim = |item: &[u8]| String::from_utf8_lossy(item).trim_matches([' ', '\t']).to_owned();
    let valid = |item: &String| item.strip_prefix("v1=").is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    Ok(items.iter().map(|item| trim(item)).filter(valid).count())
}

fuzz_target!(|data: &[u8]| {
    let (header, body) = data.split_at(data.iter().position(|&b| b == 0).unwrap_or(data.len()));
    assert_eq!(hmac::count_v1_signatures(header), reference_count(header));
    let offered = Credentials { kid: Some(b"k"), timestamp: Some(TIMESTAMP), signature: Some(header) };
    assert!(hmac::verify_v1(&RING, &offered, body, NOW_MS, 300).is_err());
    let key = RING.get(b"k").expect("fuzz key");
    let with_valid = [header, b",", &hmac::sign_v1(key.hmac_key(), TIMESTAMP, body)].concat();
    let offered = Credentials { signature: Some(&with_valid), ..offered };
    assert_eq!(hmac::verify_v1(&RING, &offered, body, NOW_MS, 300).is_ok(), hmac::count_v1_signatures(&with_valid).is_ok());
});
