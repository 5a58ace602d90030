//! Standard Webhooks (SPEC §1.1): `POST /v1/webhooks/<source>` with `webhook-id`,
//! `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256(secret,
//! "<id>.<timestamp>.<body>")>`, so producers can use the published libraries. The key
//! ring, the errors and the constant-time compare are those of scheme v1 (`hmac.rs`).

#![forbid(unsafe_code)]

use aws_lc_rs::hmac;

use super::hmac::{AuthError, Refused, SignatureCandidates, TAG_BYTES, equal_ct, parse_timestamp};
use crate::constants::{REQUEST_ID_BYTES_MAX, SIGNATURES_PER_HEADER_MAX, WEBHOOK_KEYS_TRIED_MAX};
use crate::perimeter::keyring::{Key, KeyRing};

/// The raw values of the Standard Webhooks headers of one request; `None` when absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebhookCredentials<'a> {
    /// `webhook-id`.
    pub id: Option<&'a [u8]>,
    /// `webhook-timestamp`.
    pub timestamp: Option<&'a [u8]>,
    /// `webhook-signature`: space-separated `v1,<base64>` items.
    pub signature: Option<&'a [u8]>,
}

/// Verifies a Standard Webhooks request (SPEC §1.1): `webhook-signature` holds
/// `v1,<base64 HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>` items for any key of the
/// partner that is accepted now; at most `WEBHOOK_KEYS_TRIED_MAX` keys are tried, in file
/// order. Returns the key that verified. Allocates nothing.
pub fn verify_webhook<'k>(
    ring: &'k KeyRing,
    partner: usize,
    credentials: &WebhookCredentials<'_>,
    body: &[u8],
    now_ms: i64,
    tolerance_secs: u64,
) -> Result<&'k Key, Refused<'k>> {
    let (Some(id), Some(timestamp), Some(signature)) = (credentials.id, credentials.timestamp, credentials.signature) else {
        return Err(AuthError::SignatureMissing.into());
    };
    if !is_webhook_id(id) {
        return Err(AuthError::SignatureMissing.into());
    }
    let timestamp_secs = parse_timestamp(timestamp).ok_or(AuthError::TimestampInvalid)?;
    let candidates = SignatureCandidates::parse_webhook(signature)?;
    let mut tried = 0;
    let mut verified = None;
    for key in ring.keys_of_partner(partner).filter(|key| key.accepts_at(now_ms)).take(WEBHOOK_KEYS_TRIED_MAX) {
        tried += 1;
        let expected = tag_webhook(key.hmac_key(), id, timestamp, body);
        let mut matched = false;
        for candidate in candidates.as_slice() {
            matched |= equal_ct(&expected, candidate);
        }
        if matched && verified.is_none() {
            verified = Some(key);
        }
    }
    if tried == 0 {
        return Err(AuthError::KeyNotValid.into());
    }
    let Some(key) = verified else {
        return Err(AuthError::SignatureInvalid.into());
    };
    if now_ms.div_euclid(1000).abs_diff(timestamp_secs) > tolerance_secs {
        return Err(Refused { error: AuthError::TimestampOutOfWindow, skewed_key: Some(key) });
    }
    Ok(key)
}

/// `v1,` + the base64 HMAC-SHA256 of `"<id>.<timestamp>.<body>"`: a Standard Webhooks
/// `webhook-signature` item. For tests and the bench.
pub fn sign_webhook(key: &hmac::Key, id: &[u8], timestamp: &[u8], body: &[u8]) -> String {
    use base64::Engine;
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(tag_webhook(key, id, timestamp, body)))
}

fn tag_webhook(key: &hmac::Key, id: &[u8], timestamp: &[u8], body: &[u8]) -> [u8; TAG_BYTES] {
    let mut context = hmac::Context::with_key(key);
    context.update(id);
    context.update(b".");
    context.update(timestamp);
    context.update(b".");
    context.update(body);
    let mut out = [0u8; TAG_BYTES];
    out.copy_from_slice(context.sign().as_ref());
    out
}

/// A `webhook-id` (or `X-Request-Id`): 1..=`REQUEST_ID_BYTES_MAX` visible ASCII bytes.
pub fn is_webhook_id(id: &[u8]) -> bool {
    (1..=REQUEST_ID_BYTES_MAX).contains(&id.len()) && id.iter().all(|b| b.is_ascii_graphic())
}

impl SignatureCandidates {
    /// Splits a `webhook-signature` on spaces, keeps `v1,<base64>` items that decode to
    /// exactly 32 bytes and ignores other versions. More than `SIGNATURES_PER_HEADER_MAX`
    /// items is `SignatureInvalid`.
    fn parse_webhook(header: &[u8]) -> Result<SignatureCandidates, AuthError> {
        use base64::Engine;
        let mut candidates = SignatureCandidates { tags: [[0; TAG_BYTES]; SIGNATURES_PER_HEADER_MAX], count: 0 };
        for (index, item) in header.split(|&b| b == b' ').filter(|item| !item.is_empty()).enumerate() {
            if index >= SIGNATURES_PER_HEADER_MAX {
                return Err(AuthError::SignatureInvalid);
            }
            let Some(encoded) = item.strip_prefix(b"v1,") else {
                continue;
            };
            let mut tag = [0u8; TAG_BYTES + 2];
            if let Ok(TAG_BYTES) = base64::engine::general_purpose::STANDARD.decode_slice(encoded, &mut tag) {
                candidates.tags[candidates.count].copy_from_slice(&tag[..TAG_BYTES]);
                candidates.count += 1;
            }
        }
        if candidates.count == 0 {
            return Err(AuthError::SignatureInvalid);
        }
        Ok(candidates)
    }
}
