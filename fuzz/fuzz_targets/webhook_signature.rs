//! `webhooks::verify_webhook` (Standard Webhooks) with a fixed ring: partner `acme` has two
//! accepted keys (`new`, and `old` in its grace period), partner `other` one. The input
//! after its first byte is split at NULs into `webhook-signature`, `webhook-id`,
//! `webhook-timestamp` and the body (absent headers are `None`). Checks: no panic;
//! whenever a key verified (`Ok`, or `TimestampOutOfWindow` with the skewed key), it is
//! acme's and the header holds `v1,` + the base64 HMAC of that key (`webhooks::sign_webhook`);
//! the answer and the key are what a plain reference of the checks says; and the same
//! again with the signature of the key the first byte picks appended (a key of `other`
//! must never verify).
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sluice::perimeter::hmac::AuthError;
use sluice::perimeter::webhooks::{self, WebhookCredentials};
use sluice::constants::{REQUEST_ID_BYTES_MAX, SIGNATURES_PER_HEADER_MAX, TIMESTAMP_DIGITS_MAX};
use sluice::perimeter::keyring::{Key, KeyRing};

const NOW_MS: i64 = 1_761_305_841_000;
const TOLERANCE_SECS: u64 = 300;

static RING: LazyLock<(KeyRing, usize)> = LazyLock::new(|| {
    let text = "[[keys]]\nkid = \"new\"\nsecret = \"whsec_c2x1aWNlLWZ1enotd2ViaG9vay1uZXctMzItYnl0ZXM=\"\npartner = \"acme\"\n\
                [[keys]]\nkid = \"old\"\nsecret = \"whsec_c2x1aWNlLWZ1enotd2ViaG9vay1vbGQtMzItYnl0ZXM=\"\npartner = \"acme\"\n\
                not_after = \"2025-10-20T00:00:00Z\"\ngrace_days = 30\n\
                [[keys]]\nkid = \"stranger\"\nsecret = \"whsec_c2x1aWNlLWZ1enotd2ViaG9vay1vdGhlci0zMi1ieXRlcw==\"\npartner = \"other\"\n";
    let ring = KeyRing::from_toml(text, Path::new("fuzz-webhook-keys.toml")).expect("fuzz key ring is valid");
    let acme = ring.partner_by_name(b"acme").expect("partner acme");
    assert!(ring.keys_of_partner(acme).all(|key| key.accepts_at(NOW_MS)) && ring.keys_of_partner(acme).count() == 2);
    (ring, acme)
});

/// What `verify_webhook` should answer, written out plainly: the checks in their
/// documented order, and the first of acme's keys whose signature is an item.
fn reference<'k>(
    ring: &'k KeyRing,
    acme: usize,
    credentials: &WebhookCredentials<'_>,
    body: &[u8],
) -> Result<&'k Key, (AuthError, Option<&'k Key>)> {
    let (Some(id), Some(timestamp), Some(signature)) = (credentials.id, credentials.timestamp, credentials.signature) else {
        return Err((AuthError::SignatureMissing, None));
    };
    if id.is_empty() || id.len() > REQUEST_ID_BYTES_MAX || !id.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return Err((AuthError::SignatureMissing, None));
    }
    if timestamp.is_empty() || timestamp.len() > TIMESTAMP_DIGITS_MAX || !timestamp.iter().all(u8::is_ascii_digit) {
        return Err((AuthError::TimestampInvalid, None));
    }
    let items: Vec<&[u8]> = signature.split(|&b| b == b' ').filter(|item| !item.is_empty()).collect();
    if items.len() > SIGNATURES_PER_HEADER_MAX {
        return Err((AuthError::SignatureInvalid, None));
    }
    let signed_by = |key: &&Key| items.contains(&webhooks::sign_webhook(key.hmac_key(), id, timestamp, body).as_bytes());
    let key = ring.keys_of_partner(acme).find(signed_by).ok_or((AuthError::SignatureInvalid, None))?;
    let timestamp_secs: i64 = std::str::from_utf8(timestamp).expect("digits").parse().expect("at most 12 digits");
    if (NOW_MS / 1000 - timestamp_secs).unsigned_abs() > TOLERANCE_SECS {
        return Err((AuthError::TimestampOutOfWindow, Some(key)));
    }
    Ok(key)
}

/// Verifies, checks that a key that verified is acme's and its signature is in the
/// header, and compares the answer with [`reference`].
fn check(ring: &KeyRing, acme: usize, credentials: &WebhookCredentials<'_>, body: &[u8]) {
    let result = webhooks::verify_webhook(ring, acme, credentials, body, NOW_MS, TOLERANCE_SECS);
    let result = result.map_err(|refused| (refused.error, refused.skewed_key));
    if let Ok(key) | Err((_, Some(key))) = result {
        assert_eq!(key.partner_index, acme, "another partner's key verified");
        let (id, timestamp, signature) = (credentials.id.unwrap(), credentials.timestamp.unwrap(), credentials.signature.unwrap());
        let expected = webhooks::sign_webhook(key.hmac_key(), id, timestamp, body);
        assert!(signature.split(|&b| b == b' ').any(|item| item == expected.as_bytes()), "verified without {expected}");
    }
    let kid = |key: &Key| key.kid.clone();
    let outcome = |result: Result<&Key, (AuthError, Option<&Key>)>| result.map(kid).map_err(|(error, key)| (error, key.map(kid)));
    assert_eq!(outcome(result), outcome(reference(ring, acme, credentials, body)));
}

fuzz_target!(|data: &[u8]| {
    let (ring, acme) = (&RING.0, RING.1);
    let Some((&pick, rest)) = data.split_first() else { return };
    let mut fields = rest.splitn(4, |&b| b == 0);
    let (signature, id, timestamp) = (fields.next(), fields.next(), fields.next());
    let body = fields.next().unwrap_or_default();
    let offered = WebhookCredentials { id, timestamp, signature };
    check(ring, acme, &offered, body);

    let (Some(signature), Some(id), Some(timestamp)) = (signature, id, timestamp) else { return };
    let key = &ring.keys()[usize::from(pick) % ring.keys().len()];
    let with_valid = [signature, b" ", webhooks::sign_webhook(key.hmac_key(), id, timestamp, body).as_bytes()].concat();
    check(ring, acme, &WebhookCredentials { signature: Some(&with_valid), ..offered }, body);
});
