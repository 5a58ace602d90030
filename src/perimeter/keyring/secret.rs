//! Secrets and key ids: the `whsec_<base64>` form (SPEC §1.1), generation from the
//! system's random source, and wiping secret bytes after use.

use super::*;

/// Decodes a Standard Webhooks secret: `whsec_` then standard base64 (padding optional)
/// of `SECRET_BYTES_MIN..=SECRET_BYTES_MAX` bytes. Errors never quote the input.
pub fn decode_secret(text: &str) -> Result<Vec<u8>, KeyRingError> {
    secret_bytes(text).map_err(|reason| KeyRingError::Secret { reason })
}

pub(super) fn secret_bytes(text: &str) -> Result<Vec<u8>, String> {
    let Some(encoded) = text.strip_prefix(SECRET_PREFIX) else {
        return Err(format!("must start with {SECRET_PREFIX:?}"));
    };
    let length_reason = || format!("must be base64 of {SECRET_BYTES_MIN}..={SECRET_BYTES_MAX} bytes");
    if encoded.len() > SECRET_BYTES_MAX.div_ceil(3) * 4 {
        return Err(length_reason());
    }
    // The decoder's own error names the offending byte: a piece of the secret. Drop it.
    let mut bytes = SECRET_BASE64.decode(encoded).map_err(|_| "is not standard base64".to_owned())?;
    if !(SECRET_BYTES_MIN..=SECRET_BYTES_MAX).contains(&bytes.len()) {
        wipe(&mut bytes);
        return Err(length_reason());
    }
    Ok(bytes)
}

/// Best-effort erasure of secret bytes before they are freed.
pub(super) fn wipe(bytes: &mut [u8]) {
    bytes.fill(0);
    std::hint::black_box(bytes);
}

/// A fresh secret: `whsec_` + base64 of `SECRET_BYTES_GENERATED` random bytes.
///
/// # Panics
/// If the operating system's random source fails, which aws-lc treats as fatal anyway.
pub fn generate_secret() -> String {
    let mut bytes = random_bytes::<SECRET_BYTES_GENERATED>();
    let text = format!("{SECRET_PREFIX}{}", SECRET_BASE64.encode(bytes));
    wipe(&mut bytes);
    text
}

/// A fresh kid: `k` + the UTC date of `now_ms` (`YYYYMMDD`) + 6 random lower-case hex
/// digits, e.g. `k20261121a1b2c3`.
pub fn generate_kid(now_ms: i64) -> String {
    let date = format_rfc3339_ms(now_ms);
    let random = random_bytes::<3>();
    let mut kid = String::with_capacity(15);
    kid.push('k');
    for &byte in date[0..4].iter().chain(&date[5..7]).chain(&date[8..10]) {
        kid.push(char::from(byte));
    }
    for byte in random {
        kid.push(char::from(HEX_LOWER[usize::from(byte >> 4)]));
        kid.push(char::from(HEX_LOWER[usize::from(byte & 0xf)]));
    }
    kid
}

pub(super) const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

pub(super) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random number generator failed");
    bytes
}

pub(super) fn is_valid_kid(kid: &[u8]) -> bool {
    (1..=KID_BYTES_MAX).contains(&kid.len()) && kid.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}
