//! Signing scheme v1 (SPEC §1.1): `X-Signature: v1=<hex HMAC-SHA256(secret,
//! "<X-Timestamp>.<body>")>`, checked against the [`KeyRing`]; and what the Standard
//! Webhooks form (`webhooks.rs`) shares with it: the errors, the constant-time compare,
//! the timestamp syntax.
//!
//! Verification runs on the hot path: it allocates nothing, computes the HMAC once per
//! request and compares it with every candidate signature in constant time over the full
//! 32 bytes. Checks run in a fixed order (headers, key, timestamp syntax, signature,
//! timestamp window), so an
//! answer tells a producer which step to fix and never echoes what it sent.

#![forbid(unsafe_code)]

use std::fmt;

use aws_lc_rs::hmac;

use crate::constants::{SIGNATURES_PER_HEADER_MAX, TIMESTAMP_DIGITS_MAX};
use crate::perimeter::keyring::{Key, KeyRing};

/// HMAC-SHA256 output length.
pub(super) const TAG_BYTES: usize = 32;
/// Length of a `v1=` item: the prefix and 64 hex digits.
pub const SIGNATURE_V1_LEN: usize = V1_PREFIX.len() + 2 * TAG_BYTES;
const V1_PREFIX: &[u8] = b"v1=";
const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

/// The raw values of the three signing headers of one request; `None` when absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// `X-Key-Id`.
    pub kid: Option<&'a [u8]>,
    /// `X-Timestamp`.
    pub timestamp: Option<&'a [u8]>,
    /// `X-Signature`.
    pub signature: Option<&'a [u8]>,
}

/// Why a request is not authenticated; every variant is answered 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// `X-Key-Id`, `X-Timestamp` or `X-Signature` absent, or `X-Key-Id` empty.
    SignatureMissing,
    /// No key with this kid in the ring.
    KeyUnknown,
    /// The key exists but is not accepted now (pending, or past `not_after` + grace).
    KeyNotValid,
    /// `X-Timestamp` is not 1..=`TIMESTAMP_DIGITS_MAX` ASCII decimal digits.
    TimestampInvalid,
    /// `|now - X-Timestamp|` exceeds the tolerance.
    TimestampOutOfWindow,
    /// No `v1` item of `X-Signature` matches (empty, short, long, non-hex, wrong, or
    /// more than `SIGNATURES_PER_HEADER_MAX` items).
    SignatureInvalid,
}

impl AuthError {
    /// Every variant, for tests and label tables.
    pub const ALL: [AuthError; 6] = [
        AuthError::SignatureMissing,
        AuthError::KeyUnknown,
        AuthError::KeyNotValid,
        AuthError::TimestampInvalid,
        AuthError::TimestampOutOfWindow,
        AuthError::SignatureInvalid,
    ];

    /// The `error.code` of the 401 answer (SPEC §1.3).
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::SignatureMissing => "signature_missing",
            AuthError::KeyUnknown => "key_unknown",
            AuthError::KeyNotValid => "key_not_valid",
            AuthError::TimestampInvalid => "timestamp_invalid",
            AuthError::TimestampOutOfWindow => "timestamp_out_of_window",
            AuthError::SignatureInvalid => "signature_invalid",
        }
    }

    /// The `error.message` of the 401 answer: fixed text, no input echoed, no secret.
    pub fn message(&self) -> &'static str {
        match self {
            AuthError::SignatureMissing => "the X-Key-Id, X-Timestamp and X-Signature headers are required",
            AuthError::KeyUnknown => "X-Key-Id names no key known to this server",
            AuthError::KeyNotValid => "the key named by X-Key-Id is not valid at this time",
            AuthError::TimestampInvalid => "X-Timestamp must be Unix seconds as 1 to 12 decimal digits",
            AuthError::TimestampOutOfWindow => "X-Timestamp is too far from the server clock; check the producer's clock",
            AuthError::SignatureInvalid => "X-Signature holds no valid v1=<64 hex digits> HMAC-SHA256 of <X-Timestamp>.<body>",
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::error::Error for AuthError {}

/// Verifies a v1 signature over `"<timestamp>.<body>"` at `now_ms` (Unix milliseconds;
/// compared in whole seconds) and returns the key that verified. Allocates nothing.
pub fn verify_v1<'k>(
    ring: &'k KeyRing,
    credentials: &Credentials<'_>,
    body: &[u8],
    now_ms: i64,
    tolerance_secs: u64,
) -> Result<&'k Key, AuthError> {
    verify_v1_keyed(ring, credentials, body, now_ms, tolerance_secs).map_err(|refused| refused.error)
}

/// Why a request was refused, with the key whose signature verified when the only fault
/// is the timestamp window: such a request is genuine but skewed, and goes to quarantine.
#[derive(Debug, Clone, Copy)]
pub struct Refused<'k> {
    pub error: AuthError,
    /// `Some` only with `TimestampOutOfWindow`.
    pub skewed_key: Option<&'k Key>,
}

impl From<AuthError> for Refused<'_> {
    fn from(error: AuthError) -> Self {
        Refused { error, skewed_key: None }
    }
}

/// [`verify_v1`], keeping the key of a validly signed request outside the window. The
/// signature is checked before the window, so `TimestampOutOfWindow` always means
/// "signed by this key, at the wrong time".
pub fn verify_v1_keyed<'k>(
    ring: &'k KeyRing,
    credentials: &Credentials<'_>,
    body: &[u8],
    now_ms: i64,
    tolerance_secs: u64,
) -> Result<&'k Key, Refused<'k>> {
    let (Some(kid), Some(timestamp), Some(signature)) = (credentials.kid, credentials.timestamp, credentials.signature) else {
        return Err(AuthError::SignatureMissing.into());
    };
    if kid.is_empty() {
        return Err(AuthError::SignatureMissing.into());
    }
    let key = ring.get(kid).ok_or(AuthError::KeyUnknown)?;
    if !key.accepts_at(now_ms) {
        return Err(AuthError::KeyNotValid.into());
    }
    let timestamp_secs = parse_timestamp(timestamp).ok_or(AuthError::TimestampInvalid)?;
    let candidates = SignatureCandidates::parse(signature)?;
    if candidates.count == 0 {
        return Err(AuthError::SignatureInvalid.into());
    }
    let expected = tag_v1(key.hmac_key(), timestamp, body);
    // Every candidate is compared in full; no exit on the first match.
    let mut matched = false;
    for candidate in candidates.as_slice() {
        matched |= equal_ct(&expected, candidate);
    }
    if !matched {
        return Err(AuthError::SignatureInvalid.into());
    }
    if now_ms.div_euclid(1000).abs_diff(timestamp_secs) > tolerance_secs {
        return Err(Refused { error: AuthError::TimestampOutOfWindow, skewed_key: Some(key) });
    }
    Ok(key)
}

/// `v1=` + the lower-case hex HMAC-SHA256 of `"<timestamp>.<body>"`: the `X-Signature`
/// value a producer sends. For the bench, tests and documentation.
pub fn sign_v1(key: &hmac::Key, timestamp: &[u8], body: &[u8]) -> [u8; SIGNATURE_V1_LEN] {
    let tag = tag_v1(key, timestamp, body);
    let mut out = [0u8; SIGNATURE_V1_LEN];
    out[..V1_PREFIX.len()].copy_from_slice(V1_PREFIX);
    hex_into(&tag, &mut out[V1_PREFIX.len()..]);
    out
}

/// Writes `bytes` as lower-case hex into `out` (two digits per byte; `out` at least
/// twice as long).
pub(crate) fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX_LOWER[usize::from(byte >> 4)];
        pair[1] = HEX_LOWER[usize::from(byte & 0xf)];
    }
}

fn tag_v1(key: &hmac::Key, timestamp: &[u8], body: &[u8]) -> [u8; TAG_BYTES] {
    let mut context = hmac::Context::with_key(key);
    context.update(timestamp);
    context.update(b".");
    context.update(body);
    let tag = context.sign();
    let mut out = [0u8; TAG_BYTES];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Unix seconds from 1..=`TIMESTAMP_DIGITS_MAX` ASCII digits; no sign, no spaces.
pub(super) fn parse_timestamp(text: &[u8]) -> Option<i64> {
    if text.is_empty() || text.len() > TIMESTAMP_DIGITS_MAX || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(text.iter().fold(0i64, |value, digit| value * 10 + i64::from(digit - b'0')))
}

/// The decoded `v1` items of an `X-Signature` header, on the stack.
pub(super) struct SignatureCandidates {
    pub(super) tags: [[u8; TAG_BYTES]; SIGNATURES_PER_HEADER_MAX],
    pub(super) count: usize,
}

impl SignatureCandidates {
    /// Splits on `,`, trims spaces and tabs around each item, keeps `v1=` items of exactly
    /// 64 hex digits (either case) and ignores other schemes. More than
    /// `SIGNATURES_PER_HEADER_MAX` items is `SignatureInvalid`.
    fn parse(header: &[u8]) -> Result<SignatureCandidates, AuthError> {
        let mut candidates = SignatureCandidates { tags: [[0; TAG_BYTES]; SIGNATURES_PER_HEADER_MAX], count: 0 };
        for (index, item) in header.split(|&b| b == b',').enumerate() {
            if index >= SIGNATURES_PER_HEADER_MAX {
                return Err(AuthError::SignatureInvalid);
            }
            let Some(hex) = trim_spaces(item).strip_prefix(V1_PREFIX) else {
                continue;
            };
            if let Some(tag) = decode_hex_tag(hex) {
                candidates.tags[candidates.count] = tag;
                candidates.count += 1;
            }
        }
        Ok(candidates)
    }

    pub(super) fn as_slice(&self) -> &[[u8; TAG_BYTES]] {
        &self.tags[..self.count]
    }
}

/// Parses an `X-Signature` value exactly as [`verify_v1`] does and returns how many
/// well-formed `v1` signatures it offers (other schemes and malformed items are skipped).
/// More than `SIGNATURES_PER_HEADER_MAX` items is `SignatureInvalid`. For fuzzing and
/// tests; the hot path keeps the decoded signatures on the stack instead.
pub fn count_v1_signatures(header: &[u8]) -> Result<usize, AuthError> {
    SignatureCandidates::parse(header).map(|candidates| candidates.count)
}

fn trim_spaces(item: &[u8]) -> &[u8] {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t');
    let start = item.iter().position(|b| !is_space(b)).unwrap_or(item.len());
    let end = item.iter().rposition(|b| !is_space(b)).map_or(start, |last| last + 1);
    &item[start..end]
}

/// 64 hex digits (either case) as 32 bytes: a signature's tag, a token's SHA-256.
pub(crate) fn decode_hex_tag(hex: &[u8]) -> Option<[u8; TAG_BYTES]> {
    if hex.len() != 2 * TAG_BYTES {
        return None;
    }
    let mut tag = [0u8; TAG_BYTES];
    for (byte, pair) in tag.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
    }
    Some(tag)
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Constant-time equality of two tags: reads all 32 byte pairs whatever they hold;
/// `black_box` keeps the compiler from turning the fold into an early-exit compare.
pub(crate) fn equal_ct(a: &[u8; TAG_BYTES], b: &[u8; TAG_BYTES]) -> bool {
    let mut difference = 0u8;
    for (x, y) in std::hint::black_box(a).iter().zip(std::hint::black_box(b)) {
        difference |= x ^ y;
    }
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use ::hmac::{Hmac, Mac};
    use sha2::Sha256;

    use super::*;

    /// Decodes to `sluice-test-secret-0123456789abcdef`.
    const SECRET: &str = "whsec_c2x1aWNlLXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODlhYmNkZWY=";
    const SECRET_BYTES: &[u8] = b"sluice-test-secret-0123456789abcdef";
    /// python3: hmac.new(SECRET_BYTES, b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    const VECTOR_HEX: &str = "73b3766fd1e62154d2372bcaaf068b665d48e9d32a05c2d728935e7e97ded265";
    /// python3: the same over b'1700000000.' (an empty body).
    const VECTOR_EMPTY_BODY_HEX: &str = "877d967306ba31db8e16f45398d7ff95cb5a904dc8de68d6e021d9ee4db8027a";
    const NOW_MS: i64 = 1_700_000_000_000;
    const TOLERANCE_SECS: u64 = 300;
    const BODY: &[u8] = br#"{"a":1}"#;

    fn ring() -> KeyRing {
        let text = format!(
            "[[keys]]\nkid = \"live\"\nsecret = {SECRET:?}\npartner = \"p\"\n\
             [[keys]]\nkid = \"old\"\nsecret = {SECRET:?}\npartner = \"p\"\n\
             not_after = \"2023-11-14T00:00:00Z\"\ngrace_days = 1\n\
             [[keys]]\nkid = \"gone\"\nsecret = {SECRET:?}\npartner = \"p\"\nnot_after = \"2023-11-01T00:00:00Z\"\n\
             [[keys]]\nkid = \"future\"\nsecret = {SECRET:?}\npartner = \"p\"\nnot_before = \"2030-01-01T00:00:00Z\"\n"
        );
        KeyRing::from_toml(&text, Path::new("test-keys.toml")).unwrap()
    }

    fn reference_hex(key: &[u8], timestamp: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(timestamp);
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn verify(kid: &[u8], timestamp: &[u8], signature: &[u8]) -> Result<String, AuthError> {
        let ring = ring();
        let credentials = Credentials { kid: Some(kid), timestamp: Some(timestamp), signature: Some(signature) };
        verify_v1(&ring, &credentials, BODY, NOW_MS, TOLERANCE_SECS).map(|key| key.kid.clone())
    }

    fn valid_signature() -> Vec<u8> {
        format!("v1={VECTOR_HEX}").into_bytes()
    }

    #[test]
    fn sign_matches_the_known_vector_and_an_independent_hmac() {
        let ring = ring();
        let key = ring.get(b"live").unwrap().hmac_key();
        assert_eq!(sign_v1(key, b"1700000000", BODY).as_slice(), valid_signature().as_slice());
        assert_eq!(sign_v1(key, b"1700000000", b"")[3..], *VECTOR_EMPTY_BODY_HEX.as_bytes());
        let mut body = Vec::new();
        for length in [0usize, 1, 63, 64, 65, 1000, 70_000] {
            body.resize(length, 0);
            for (index, byte) in body.iter_mut().enumerate() {
                *byte = (index * 31 + length) as u8;
            }
            let timestamp = format!("{}", 1_700_000_000 + length);
            let ours = sign_v1(key, timestamp.as_bytes(), &body);
            let theirs = format!("v1={}", reference_hex(SECRET_BYTES, timestamp.as_bytes(), &body));
            assert_eq!(ours.as_slice(), theirs.as_bytes(), "body length {length}");
        }
    }

    #[test]
    fn valid_signatures_verify_in_any_case_and_position() {
        assert_eq!(verify(b"live", b"1700000000", &valid_signature()), Ok("live".to_owned()));
        let upper = format!("v1={}", VECTOR_HEX.to_ascii_uppercase());
        assert_eq!(verify(b"live", b"1700000000", upper.as_bytes()), Ok("live".to_owned()));
        let mixed = format!("v1={}{}", &VECTOR_HEX[..32].to_ascii_uppercase(), &VECTOR_HEX[32..]);
        assert_eq!(verify(b"live", b"1700000000", mixed.as_bytes()), Ok("live".to_owned()));
        let wrong = format!("v1={}", "0".repeat(64));
        let several = format!("{wrong}, v0=abc ,v1=zz,v1,,  v1={VECTOR_HEX}\t, v2={VECTOR_HEX}",);
        assert_eq!(verify(b"live", b"1700000000", several.as_bytes()), Ok("live".to_owned()));
        let first = format!("v1={VECTOR_HEX},{wrong}");
        assert_eq!(verify(b"live", b"1700000000", first.as_bytes()), Ok("live".to_owned()));
        // A key in its grace period still verifies.
        assert_eq!(verify(b"old", b"1700000000", &valid_signature()), Ok("old".to_owned()));
    }

    #[test]
    fn missing_headers_are_signature_missing() {
        let ring = ring();
        let signature = valid_signature();
        let full = Credentials { kid: Some(b"live"), timestamp: Some(b"1700000000"), signature: Some(&signature) };
        for credentials in [
            Credentials { kid: None, ..full },
            Credentials { timestamp: None, ..full },
            Credentials { signature: None, ..full },
            Credentials { kid: Some(b""), ..full },
            Credentials::default(),
        ] {
            let result = verify_v1(&ring, &credentials, BODY, NOW_MS, TOLERANCE_SECS);
            assert_eq!(result.map(|k| &k.kid).unwrap_err(), AuthError::SignatureMissing);
        }
    }

    #[test]
    fn unknown_and_invalid_keys() {
        assert_eq!(verify(b"nope", b"1700000000", &valid_signature()), Err(AuthError::KeyUnknown));
        assert_eq!(verify(&[b'k'; 200], b"1700000000", &valid_signature()), Err(AuthError::KeyUnknown));
        assert_eq!(verify(b"LIVE", b"1700000000", &valid_signature()), Err(AuthError::KeyUnknown));
        assert_eq!(verify(b"gone", b"1700000000", &valid_signature()), Err(AuthError::KeyNotValid));
        assert_eq!(verify(b"future", b"1700000000", &valid_signature()), Err(AuthError::KeyNotValid));
    }

    #[test]
    fn malformed_timestamps_are_timestamp_invalid() {
        for bad in [&b""[..], b"-1700000000", b"+1700000000", b" 1700000000", b"1700000000 ", b"17e8", b"1700000000.5", b"0001700000000"] {
            assert_eq!(verify(b"live", bad, &valid_signature()), Err(AuthError::TimestampInvalid), "{bad:?}");
        }
        // 12 digits parse (and are far out of the window); leading zeros are digits. The
        // window is judged after the signature, so a stamp signed by nobody is just invalid.
        let key = ring().get(b"live").unwrap().hmac_key().clone();
        assert_eq!(verify(b"live", b"999999999999", &sign_v1(&key, b"999999999999", BODY)), Err(AuthError::TimestampOutOfWindow));
        assert_eq!(verify(b"live", b"999999999999", &valid_signature()), Err(AuthError::SignatureInvalid));
        assert_eq!(verify(b"live", b"01700000000", &valid_signature()), Err(AuthError::SignatureInvalid));
    }

    #[test]
    fn window_is_inclusive_at_the_tolerance() {
        let ring = ring();
        let key = ring.get(b"live").unwrap().hmac_key();
        for (offset, ok) in [(-300i64, true), (300, true), (-301, false), (301, false), (0, true)] {
            let timestamp = (1_700_000_000 + offset).to_string();
            let signature = sign_v1(key, timestamp.as_bytes(), BODY);
            let result = verify(b"live", timestamp.as_bytes(), &signature);
            assert_eq!(result.is_ok(), ok, "offset {offset}: {result:?}");
            if !ok {
                assert_eq!(result, Err(AuthError::TimestampOutOfWindow));
            }
        }
        assert_eq!(verify(b"live", b"0", &sign_v1(key, b"0", BODY)), Err(AuthError::TimestampOutOfWindow));
        let credentials = Credentials { kid: Some(b"live"), timestamp: Some(b"0"), signature: Some(&sign_v1(key, b"0", BODY)) };
        let refused = verify_v1_keyed(&ring, &credentials, BODY, NOW_MS, TOLERANCE_SECS).unwrap_err();
        assert_eq!(refused.skewed_key.map(|key| key.kid.as_str()), Some("live"), "a genuine skewed request names its key");
        // Milliseconds of `now` are dropped: 1700000300.999 is still 300 s after the stamp.
        let credentials = Credentials { kid: Some(b"live"), timestamp: Some(b"1700000000"), signature: Some(&valid_signature()) };
        assert!(verify_v1(&ring, &credentials, BODY, NOW_MS + 300_999, TOLERANCE_SECS).is_ok());
        assert_eq!(verify_v1(&ring, &credentials, BODY, NOW_MS + 301_000, TOLERANCE_SECS).unwrap_err(), AuthError::TimestampOutOfWindow);
    }

    #[test]
    fn bad_signatures_are_signature_invalid() {
        let wrong_body = {
            let ring = ring();
            sign_v1(ring.get(b"live").unwrap().hmac_key(), b"1700000000", b"{\"a\":2}").to_vec()
        };
        let flipped = format!("v1={}0", &VECTOR_HEX[..63]);
        let long = format!("v1={VECTOR_HEX}0");
        let short = format!("v1={}", &VECTOR_HEX[..63]);
        let non_hex = format!("v1={}g", &VECTOR_HEX[..63]);
        let unprefixed = VECTOR_HEX.to_owned();
        let other_scheme = format!("v0={VECTOR_HEX}");
        let upper_scheme = format!("V1={VECTOR_HEX}");
        let inner_space = format!("v1= {VECTOR_HEX}");
        for bad in [
            &b""[..],
            b" ",
            b",",
            b"v1=",
            &wrong_body,
            flipped.as_bytes(),
            long.as_bytes(),
            short.as_bytes(),
            non_hex.as_bytes(),
            unprefixed.as_bytes(),
            other_scheme.as_bytes(),
            upper_scheme.as_bytes(),
            inner_space.as_bytes(),
        ] {
            assert_eq!(verify(b"live", b"1700000000", bad), Err(AuthError::SignatureInvalid), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn item_count_is_bounded() {
        let filler = format!("v1={}", "0".repeat(64));
        let mut items = vec![filler.as_str(); SIGNATURES_PER_HEADER_MAX - 1];
        let valid = format!("v1={VECTOR_HEX}");
        items.push(&valid);
        assert_eq!(verify(b"live", b"1700000000", items.join(",").as_bytes()), Ok("live".to_owned()));
        items.insert(0, "v0=x");
        assert_eq!(verify(b"live", b"1700000000", items.join(",").as_bytes()), Err(AuthError::SignatureInvalid));
        let commas = ",".repeat(SIGNATURES_PER_HEADER_MAX) + &valid;
        assert_eq!(verify(b"live", b"1700000000", commas.as_bytes()), Err(AuthError::SignatureInvalid));
    }

    #[test]
    fn errors_have_distinct_codes_and_fixed_messages() {
        let all = AuthError::ALL;
        let codes: std::collections::HashSet<_> = all.iter().map(AuthError::code).collect();
        assert_eq!(codes.len(), all.len());
        for error in all {
            assert!(error.code().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{}", error.code());
            assert!(!error.message().is_empty() && !error.message().contains("whsec"));
            assert_eq!(error.to_string(), error.code());
        }
        assert_eq!(AuthError::TimestampOutOfWindow.code(), "timestamp_out_of_window");
        assert_eq!(AuthError::SignatureMissing.code(), "signature_missing");
    }

    #[test]
    fn constant_time_equality_compares_every_byte() {
        let a = [0x42u8; 32];
        assert!(equal_ct(&a, &a));
        for index in [0, 1, 15, 30, 31] {
            for bit in 0..8 {
                let mut b = a;
                b[index] ^= 1 << bit;
                assert!(!equal_ct(&a, &b), "byte {index} bit {bit}");
            }
        }
    }

    #[test]
    fn hex_and_trim_helpers() {
        assert_eq!(trim_spaces(b"  v1=ab \t"), b"v1=ab");
        assert_eq!(trim_spaces(b" \t "), b"");
        assert_eq!(decode_hex_tag(VECTOR_HEX.as_bytes()).unwrap()[..2], [0x73, 0xb3]);
        assert!(decode_hex_tag(&VECTOR_HEX.as_bytes()[..62]).is_none());
        assert_eq!(parse_timestamp(b"000000000000"), Some(0));
        assert_eq!(parse_timestamp(b"999999999999"), Some(999_999_999_999));
    }
}
