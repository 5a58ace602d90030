//! The key ring file: the HMAC keys of signing scheme v1 (SPEC §1.1), one `[[keys]]`
//! table per key.
//!
//! [`KeyRing`] is the validated, read-only form that every shard shares through an `Arc`.
//! The file operations at the end (`gen_key`, `list_keys`, `rotate_key`,
//! `ensure_dev_keyring`) back `sluice keys`; they validate the whole file before they
//! touch it and replace it atomically with a mode 0600 file. Secrets never appear in
//! errors, `Debug` output or listings.
//!
//! Validity intervals are half-open: a key is accepted from `not_before` (inclusive) until
//! `not_after + grace_days` (exclusive).

#![forbid(unsafe_code)]

mod edit;
mod file;
mod secret;

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::hmac;
use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::{Deserialize, Serialize};

use crate::constants::{
    GRACE_DAYS_MAX, KEY_VALID_DAYS_MAX, KEYS_PER_RING_MAX, KID_BYTES_MAX, KID_GENERATE_ATTEMPTS_MAX, PARTNER_BYTES_MAX,
    PARTNERS_PER_RING_MAX, SECRET_BYTES_GENERATED, SECRET_BYTES_MAX, SECRET_BYTES_MIN,
};
use crate::perimeter::partners::{self, Partner, Policy, RawPartner, RawPolicy};
use crate::platform::time::{format_rfc3339_ms, parse_rfc3339_ms};
pub use edit::{KeyInfo, NewKey, NewToken, ensure_dev_keyring, gen_key, gen_token, list_keys, rotate_key};
use file::*;
use secret::*;
pub use secret::{decode_secret, generate_kid, generate_secret};

/// Standard Webhooks secret prefix (SPEC §1.1).
const SECRET_PREFIX: &str = "whsec_";
/// First line of every file we write.
const FILE_HEADER: &str = "# sluice key ring: these are secrets; keep this file mode 0600\n";
/// Mode of every key ring file we create: owner read/write only.
const FILE_MODE: u32 = 0o600;
/// Bits a replaced key ring may pass on: read and write for owner and group, nothing for
/// others, never execute.
const REPLACED_MODE_MASK: u32 = 0o660;
const DAY_MS: i64 = 86_400_000;
/// Partner of the development key ring's only key.
const DEV_PARTNER: &str = "dev";
const TIME_REASON: &str = "must be an RFC 3339 date-time with an offset, e.g. \"2026-11-21T00:00:00Z\"";

/// Standard alphabet; padding optional on input, written on output; no stray trailing bits.
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_encode_padding(true).with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a key ring cannot be read, used or written. Names the file and the key (by kid,
/// or by position when the kid itself is bad); never contains secret text.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("cannot read key ring {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write key ring {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    /// TOML syntax or shape; `line` is 1-based, 0 when unknown. Quoted values are
    /// redacted from `message`.
    #[error("key ring {path}, line {line}: {message}")]
    Parse { path: PathBuf, line: usize, message: String },
    #[error("key ring {path}: {key}: {field} {reason}")]
    Invalid { path: PathBuf, key: String, field: &'static str, reason: String },
    #[error("key ring {path}: kid {kid:?} appears more than once")]
    DuplicateKid { path: PathBuf, kid: String },
    #[error("key ring {path}: partner {partner:?} has more than one [[partners]] table")]
    DuplicatePartner { path: PathBuf, partner: String },
    #[error("key ring {path}: {what}: {field} {reason}")]
    Policy { path: PathBuf, what: String, field: &'static str, reason: String },
    #[error("key ring {path}: {count} keys; at most {max} are allowed")]
    TooManyKeys { path: PathBuf, count: usize, max: usize },
    #[error("key ring {path}: partner {partner:?} has no accepted key to rotate; use `sluice keys gen`")]
    NothingToRotate { path: PathBuf, partner: String },
    #[error("key ring {path}: no unused kid found in {attempts} random draws")]
    KidExhausted { path: PathBuf, attempts: usize },
    /// From [`decode_secret`]: the secret text is malformed.
    #[error("secret {reason}")]
    Secret { reason: String },
    /// A bad argument to a file operation (partner name, days).
    #[error("{name} {reason}")]
    Argument { name: &'static str, reason: String },
}

/// Where a key stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Before `not_before`.
    Pending,
    /// From `not_before` until `not_after` (or forever).
    Active,
    /// From `not_after` until `not_after + grace_days`: still accepted.
    Grace,
    /// At or after `not_after + grace_days`.
    Expired,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Pending => "pending",
            KeyStatus::Active => "active",
            KeyStatus::Grace => "grace",
            KeyStatus::Expired => "expired",
        }
    }
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One validated key. The HMAC key state (inner and outer pads) is computed once at load.
pub struct Key {
    pub kid: String,
    pub partner: String,
    /// Index of the key's partner in [`KeyRing::partners`].
    pub partner_index: usize,
    pub not_before_ms: Option<i64>,
    pub not_after_ms: Option<i64>,
    pub grace_days: u32,
    hmac: hmac::Key,
}

impl Key {
    /// Where the key stands at `now_ms` (Unix milliseconds).
    pub fn status_at(&self, now_ms: i64) -> KeyStatus {
        if self.not_before_ms.is_some_and(|start| now_ms < start) {
            return KeyStatus::Pending;
        }
        match self.not_after_ms {
            None => KeyStatus::Active,
            Some(end) if now_ms < end => KeyStatus::Active,
            Some(end) if now_ms < end.saturating_add(grace_ms(self.grace_days)) => KeyStatus::Grace,
            Some(_) => KeyStatus::Expired,
        }
    }

    /// True while the key is `Active` or in `Grace`.
    pub fn accepts_at(&self, now_ms: i64) -> bool {
        matches!(self.status_at(now_ms), KeyStatus::Active | KeyStatus::Grace)
    }

    /// `not_after + grace_days` in Unix milliseconds: the first instant the key is no
    /// longer accepted. `None`: no expiry.
    pub fn accepted_until_ms(&self) -> Option<i64> {
        self.not_after_ms.map(|end| end.saturating_add(grace_ms(self.grace_days)))
    }

    /// The HMAC-SHA256 key (the decoded secret bytes), ready for `hmac::Context::with_key`.
    pub fn hmac_key(&self) -> &hmac::Key {
        &self.hmac
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("partner", &self.partner)
            .field("not_before_ms", &self.not_before_ms)
            .field("not_after_ms", &self.not_after_ms)
            .field("grace_days", &self.grace_days)
            .finish_non_exhaustive()
    }
}

fn grace_ms(grace_days: u32) -> i64 {
    i64::from(grace_days) * DAY_MS
}

/// The validated key ring: at most `KEYS_PER_RING_MAX` keys with distinct kids, in file
/// order. Read-only after load; share it between shards with an `Arc`.
pub struct KeyRing {
    keys: Vec<Key>,
    index_by_kid: HashMap<Box<[u8]>, usize>,
    /// Declared partners in file order, then the partners keys imply.
    partners: Vec<Partner>,
    partner_by_name: HashMap<String, usize>,
    partner_by_tls_identity: HashMap<String, usize>,
    partner_by_jwt_subject: HashMap<String, usize>,
    /// Indices into `keys` per partner, in file order (built at load: a webhook request
    /// looks at its partner's keys without scanning the ring).
    keys_by_partner: Vec<Vec<usize>>,
    /// Consumer bearer tokens (`[[tokens]]`), in file order.
    tokens: Vec<Token>,
    /// Replay runbook signers (`[[signers]]`).
    signers: Vec<crate::replay::signer::PublicSigner>,
    policy: Policy,
    path: PathBuf,
}

/// A consumer bearer token: its SHA-256 only; the token itself is never stored.
#[derive(Clone)]
pub struct Token {
    pub name: String,
    pub partner: String,
    pub partner_index: usize,
    digest: [u8; 32],
    /// Not accepted from this instant on; `None`: no expiry.
    pub not_after_ms: Option<i64>,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token").field("name", &self.name).field("partner", &self.partner).field("not_after_ms", &self.not_after_ms).finish()
    }
}

impl KeyRing {
    /// Reads and validates a key ring file. An empty ring (no `[[keys]]`) is valid and
    /// accepts nothing.
    pub fn load(path: &Path) -> Result<KeyRing, KeyRingError> {
        let text = fs::read_to_string(path).map_err(|source| KeyRingError::Read { path: path.to_owned(), source })?;
        KeyRing::from_toml(&text, path)
    }

    /// Validates key ring TOML; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<KeyRing, KeyRingError> {
        build_ring(&parse_raw(text, origin)?, origin)
    }

    /// The key with this kid. No allocation: one hash of at most `KID_BYTES_MAX` bytes.
    pub fn get(&self, kid: &[u8]) -> Option<&Key> {
        if kid.len() > KID_BYTES_MAX {
            return None;
        }
        self.index_by_kid.get(kid).map(|&index| &self.keys[index])
    }

    /// All keys, in file order.
    /// Every partner: declared ones, then those only named by keys (unrestricted).
    pub fn partners(&self) -> &[Partner] {
        &self.partners
    }

    pub fn partner(&self, index: usize) -> &Partner {
        &self.partners[index]
    }

    /// The partner named `name` (a webhook `<source>`), declared or implied by a key.
    pub fn partner_by_name(&self, name: &[u8]) -> Option<usize> {
        std::str::from_utf8(name).ok().and_then(|name| self.partner_by_name.get(name).copied())
    }

    /// The partner a verified client-certificate identity belongs to.
    pub fn partner_by_tls_identity(&self, identity: &str) -> Option<usize> {
        self.partner_by_tls_identity.get(identity).copied()
    }

    /// The partner a JWT subject (`sub` or `client_id`) belongs to.
    pub fn partner_by_jwt_subject(&self, subject: &str) -> Option<usize> {
        self.partner_by_jwt_subject.get(subject).copied()
    }

    /// The keys of partner `index`, in file order.
    pub fn keys_of_partner(&self, index: usize) -> impl Iterator<Item = &Key> {
        self.keys_by_partner.get(index).into_iter().flatten().map(|&key| &self.keys[key])
    }

    /// The replay runbook signers (`[[signers]]`), in file order.
    pub fn signers(&self) -> &[crate::replay::signer::PublicSigner] {
        &self.signers
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The token whose SHA-256 is that of `secret`, if it is accepted at `now_ms`. The
    /// digest is compared with every token's in constant time over all 32 bytes, and all
    /// of them are compared, so neither the time nor the order tells which matched.
    pub fn token_by_secret(&self, secret: &[u8], now_ms: i64) -> Option<&Token> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret);
        let digest: &[u8; 32] = digest.as_ref().try_into().ok()?;
        let mut found = None;
        for token in &self.tokens {
            if crate::perimeter::hmac::equal_ct(&token.digest, digest) {
                found = Some(token);
            }
        }
        found.filter(|token| token.not_after_ms.is_none_or(|end| now_ms < end))
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// The file (or origin) this ring was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing").field("path", &self.path).field("keys", &self.keys).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 35 bytes; base64 "c2x1aWNl..." (the auth tests sign with the same secret).
    const SECRET: &str = "whsec_c2x1aWNlLXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODlhYmNkZWY=";
    const T0: i64 = 1_795_219_200_000; // 2026-11-21T00:00:00Z

    fn secret_of(bytes: usize) -> String {
        format!("whsec_{}", SECRET_BASE64.encode(vec![0x5a; bytes]))
    }

    fn ring_text(keys: &[(&str, &str, &str)]) -> String {
        let mut text = String::new();
        for (kid, partner, extra) in keys {
            text += &format!("[[keys]]\nkid = {kid:?}\nsecret = {SECRET:?}\npartner = {partner:?}\n{extra}\n");
        }
        text
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn loads_all_fields_and_finds_keys_by_kid() {
        let text = ring_text(&[
            ("k1", "dev", "not_before = \"2026-11-21T00:00:00Z\"\nnot_after = \"2027-11-21T00:00:00Z\"\ngrace_days = 7"),
            ("k2:b.c-d_e", "GameCo Ltd", "not_before = 2026-11-21T03:00:00+03:00"),
        ]);
        let ring = KeyRing::from_toml(&text, Path::new("keys.toml")).unwrap();
        assert_eq!(ring.keys().len(), 2);
        let k1 = ring.get(b"k1").unwrap();
        assert_eq!((k1.not_before_ms, k1.not_after_ms, k1.grace_days), (Some(T0), Some(T0 + 365 * DAY_MS), 7));
        let k2 = ring.get(b"k2:b.c-d_e").unwrap();
        assert_eq!((k2.partner.as_str(), k2.not_before_ms, k2.not_after_ms), ("GameCo Ltd", Some(T0), None));
        assert!(ring.get(b"k3").is_none());
        assert!(ring.get(b"").is_none());
        assert!(ring.get(&[b'k'; 1000]).is_none());
    }

    #[test]
    fn status_intervals_are_half_open() {
        let text = ring_text(&[("k", "p", "not_before = \"2026-11-21T00:00:00Z\"\nnot_after = \"2026-11-22T00:00:00Z\"\ngrace_days = 2")]);
        let ring = KeyRing::from_toml(&text, Path::new("k.toml")).unwrap();
        let key = ring.get(b"k").unwrap();
        let end = T0 + DAY_MS;
        for (now, status) in [
            (T0 - 1, KeyStatus::Pending),
            (T0, KeyStatus::Active),
            (end - 1, KeyStatus::Active),
            (end, KeyStatus::Grace),
            (end + 2 * DAY_MS - 1, KeyStatus::Grace),
            (end + 2 * DAY_MS, KeyStatus::Expired),
        ] {
            assert_eq!(key.status_at(now), status, "at {now}");
            assert_eq!(key.accepts_at(now), matches!(status, KeyStatus::Active | KeyStatus::Grace));
        }
        assert_eq!(key.accepted_until_ms(), Some(end + 2 * DAY_MS));
    }

    #[test]
    fn duplicate_kid_is_rejected_naming_file_and_kid() {
        let text = ring_text(&[("same", "a", ""), ("other", "a", ""), ("same", "b", "")]);
        let error = KeyRing::from_toml(&text, Path::new("/etc/sluice/keys.toml")).unwrap_err();
        assert!(matches!(error, KeyRingError::DuplicateKid { ref kid, .. } if kid == "same"));
        let message = error.to_string();
        assert!(message.contains("/etc/sluice/keys.toml") && message.contains("\"same\""), "{message}");
    }

    #[test]
    fn invalid_fields_are_named_and_secrets_never_echoed() {
        for (kid, extra, needle) in [
            ("k", "not_before = \"yesterday\"", "not_before"),
            ("k", "not_after = 2026-11-21T00:00:00", "not_after"), // local time: no offset
            ("k", "not_before = \"2026-11-22T00:00:00Z\"\nnot_after = \"2026-11-21T00:00:00Z\"", "earlier"),
            ("k", "grace_days = 366", "grace_days"),
            ("k", "not_after = 5", "not_after must be an RFC 3339"),
            ("bad kid", "", "key #1: kid"),
            ("", "", "key #1: kid"),
            ("k", "extra = 1", "unknown field"),
            ("k", "grace_days = \"whsec_c2x1aWNlLXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODlhYmNkZWY=\"", "line 5"),
        ] {
            let text = ring_text(&[(kid, "p", extra)]);
            let message = KeyRing::from_toml(&text, Path::new("ring.toml")).unwrap_err().to_string();
            assert!(message.contains(needle) && message.contains("ring.toml"), "{extra:?}: {message}");
            assert!(!message.contains("c2x1aWNl"), "secret echoed: {message}");
        }
        let unquoted = format!("[[keys]]\nkid = \"k\"\nsecret = {}\npartner = \"p\"\n", &SECRET[..40]);
        let message = KeyRing::from_toml(&unquoted, Path::new("ring.toml")).unwrap_err().to_string();
        assert!(message.contains("line 3") && !message.contains("c2x1aWNl"), "{message}");
        let missing = "[[keys]]\nkid = \"k\"\nsecret = \"whsec_AAAA\"\n";
        let message = KeyRing::from_toml(missing, Path::new("ring.toml")).unwrap_err().to_string();
        assert!(message.contains("partner"), "{message}");
    }

    #[test]
    fn parser_messages_lose_quoted_values_but_keep_backticks() {
        assert_eq!(redact_quoted(r#"invalid type: string "whsec_x", expected u32"#), r#"invalid type: string "…", expected u32"#);
        assert_eq!(redact_quoted(r#"expected `\`, `"`, or `u`"#), r#"expected `\`, `"`, or `u`"#);
        assert_eq!(redact_quoted(r#"unterminated "whsec_abc"#), r#"unterminated ""#);
    }

    #[test]
    fn bad_secrets_name_the_key_but_not_the_secret() {
        let short = secret_of(23);
        let text = format!("[[keys]]\nkid = \"k9\"\nsecret = {short:?}\npartner = \"p\"\n");
        let message = KeyRing::from_toml(&text, Path::new("ring.toml")).unwrap_err().to_string();
        assert!(message.contains("\"k9\"") && message.contains("secret"), "{message}");
        assert!(!message.contains(&short[6..]), "{message}");
    }

    #[test]
    fn decode_secret_enforces_form_and_bounds() {
        for bytes in [SECRET_BYTES_MIN, 32, SECRET_BYTES_MAX] {
            let padded = secret_of(bytes);
            assert_eq!(decode_secret(&padded).unwrap(), vec![0x5a; bytes]);
            assert_eq!(decode_secret(padded.trim_end_matches('=')).unwrap().len(), bytes);
        }
        assert_eq!(decode_secret(SECRET).unwrap(), b"sluice-test-secret-0123456789abcdef");
        for bad in [
            secret_of(23),
            secret_of(65),
            secret_of(1000),
            SECRET[6..].to_owned(),
            format!("WHSEC_{}", &SECRET[6..]),
            format!("{SECRET} "),
            SECRET.replace('L', "-"),
            "whsec_".to_owned(),
            "whsec_====".to_owned(),
        ] {
            let error = decode_secret(&bad).unwrap_err().to_string();
            assert!(error.starts_with("secret "), "{error}");
            assert!(!error.contains(&bad[bad.len().min(8)..]) || bad.len() <= 8, "{error}");
        }
        assert_eq!(generate_secret().len(), 6 + 44);
        assert_eq!(decode_secret(&generate_secret()).unwrap().len(), SECRET_BYTES_GENERATED);
        assert_ne!(generate_secret(), generate_secret());
    }

    #[test]
    fn generated_kids_carry_the_date_and_are_valid() {
        let kid = generate_kid(T0 + 5);
        assert_eq!(kid.len(), 15);
        assert!(kid.starts_with("k20261121"), "{kid}");
        assert!(kid[9..].bytes().all(|b| HEX_LOWER.contains(&b)));
        assert!(is_valid_kid(kid.as_bytes()));
    }

    #[test]
    fn gen_creates_a_private_file_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let first = gen_key(&path, "dev", None, T0 + 123).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(FILE_HEADER), "{text}");
        let second = gen_key(&path, "GameCo", Some(30), T0 + 123).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        let ring = KeyRing::load(&path).unwrap();
        assert_eq!(ring.keys().len(), 2);
        assert_eq!(ring.get(first.kid.as_bytes()).unwrap().not_after_ms, None);
        let key = ring.get(second.kid.as_bytes()).unwrap();
        assert_eq!((key.partner.as_str(), key.not_after_ms), ("GameCo", Some(T0 + 30 * DAY_MS)));
        assert!(key.accepts_at(T0 + 123));
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, [std::ffi::OsString::from("keys.toml")]);
        assert!(matches!(gen_key(&path, "", None, T0), Err(KeyRingError::Argument { name: "partner", .. })));
        assert!(matches!(gen_key(&path, "p", Some(0), T0), Err(KeyRingError::Argument { name: "valid_days", .. })));
    }

    #[test]
    fn rewrites_keep_every_key_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let original = ring_text(&[
            ("a", "p", "not_before = 2026-11-21T00:00:00Z\nnot_after = \"2027-01-01T00:00:00.250Z\"\ngrace_days = 3"),
            ("b", "q", ""),
        ]);
        fs::write(&path, &original).unwrap();
        gen_key(&path, "r", None, T0).unwrap();
        let before = KeyRing::from_toml(&original, &path).unwrap();
        let after = KeyRing::load(&path).unwrap();
        assert_eq!(after.keys().len(), 3);
        for (old, new) in before.keys().iter().zip(after.keys()) {
            assert_eq!(format!("{old:?}"), format!("{new:?}"));
            let tag = |key: &Key| hmac::sign(key.hmac_key(), b"x").as_ref().to_vec();
            assert_eq!(tag(old), tag(new), "secret of {} changed", old.kid);
        }
    }

    #[test]
    fn rotation_follows_the_policy_and_rewrites_keep_partners() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let policy = "[policy]\nrotation_days = 45\ngrace_period_days = 7\nallow_algos = [\"HMAC-SHA256\"]\n\n\
                      [[partners]]\nname = \"wallet\"\nevent_types = [\"deposit\"]\nallow_cidrs = [\"10.0.0.0/8\"]\n\n";
        fs::write(&path, format!("{policy}{}", ring_text(&[("a", "wallet", "")]))).unwrap();
        let new = rotate_key(&path, "wallet", None, T0).unwrap();
        assert_eq!(new.grace_days, 7, "the policy's grace period is the default");
        let ring = KeyRing::load(&path).unwrap();
        let old = ring.get(b"a").unwrap();
        assert_eq!((old.not_after_ms, old.grace_days), (Some(T0), 7));
        let fresh = ring.get(new.kid.as_bytes()).unwrap();
        assert_eq!((fresh.not_after_ms, fresh.grace_days), (Some(T0 + 45 * DAY_MS), 7), "new keys expire after rotation_days");
        let generated = gen_key(&path, "wallet", None, T0).unwrap();
        assert_eq!(KeyRing::load(&path).unwrap().get(generated.kid.as_bytes()).unwrap().not_after_ms, Some(T0 + 45 * DAY_MS));
        // The rewrites kept the policy and the partner table.
        let ring = KeyRing::load(&path).unwrap();
        assert_eq!(ring.policy().rotation_days, Some(45));
        let wallet = ring.partner(ring.partner_by_name(b"wallet").unwrap());
        assert!(wallet.declared && wallet.allows_event_type(b"deposit") && !wallet.allows_event_type(b"bet"));
        assert!(ring.keys().iter().all(|key| key.partner_index == ring.partner_by_name(b"wallet").unwrap()));
        assert_eq!(rotate_key(&path, "wallet", Some(0), T0 + 1000).unwrap().grace_days, 0, "--grace-days overrides the policy");
    }

    #[test]
    fn partner_tables_are_validated_and_unique() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let cases = [
            ("[[partners]]\nname = \"p\"\n\n[[partners]]\nname = \"p\"\n", "more than one"),
            (
                "[[partners]]\nname = \"p\"\ntls_identities = [\"x\"]\n\n[[partners]]\nname = \"q\"\ntls_identities = [\"x\"]\n",
                "tls_identities",
            ),
            ("[[partners]]\nname = \"p\"\nevent_types = [\"a b\"]\n", "event_types"),
            ("[policy]\nallow_algos = [\"HMAC-MD5\"]\n", "allow_algos"),
        ];
        for (text, needle) in cases {
            let error = KeyRing::from_toml(text, &path).map(|_| ()).expect_err(text).to_string();
            assert!(error.contains(needle), "{text}: {error}");
        }
        let implied = KeyRing::from_toml(&ring_text(&[("a", "dev", "")]), &path).unwrap();
        let dev = implied.partner(implied.get(b"a").unwrap().partner_index);
        assert!(!dev.declared && dev.allows_event_type(b"anything"), "a key's undeclared partner is unrestricted");
    }

    #[test]
    fn list_shows_status_but_never_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        gen_key(&path, "dev", Some(1), T0).unwrap();
        gen_key(&path, "ops", None, T0).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let ring = KeyRing::load(&path).unwrap();
        let infos = list_keys(&path, T0 + 2 * DAY_MS).unwrap();
        assert_eq!(infos.iter().map(|i| i.status).collect::<Vec<_>>(), [KeyStatus::Expired, KeyStatus::Active]);
        let mut printed = format!("{ring:?}");
        for info in &infos {
            printed += &format!("{info}\n{info:?}\n");
        }
        for line in text.lines().filter(|line| line.starts_with("secret")) {
            let encoded = &line[line.find("whsec_").unwrap() + 6..line.len() - 1];
            assert!(!printed.contains(encoded) && !printed.contains(&encoded[..12]), "{printed}");
        }
        assert!(!printed.contains("whsec_"), "{printed}");
        assert!(printed.contains("not_after=2026-11-22T00:00:00Z"), "{printed}");
    }

    #[test]
    fn rotation_keeps_the_old_kid_through_grace_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let old = gen_key(&path, "GameCo", None, T0).unwrap();
        let other = gen_key(&path, "other", None, T0).unwrap();
        let now = T0 + 10 * DAY_MS + 999;
        let new = rotate_key(&path, "GameCo", Some(7), now).unwrap();
        assert_ne!(new.kid, old.kid);
        assert_eq!(mode_of(&path), 0o600);
        let ring = KeyRing::load(&path).unwrap();
        let (old_key, new_key) = (ring.get(old.kid.as_bytes()).unwrap(), ring.get(new.kid.as_bytes()).unwrap());
        let grace_end = T0 + 17 * DAY_MS;
        assert_eq!(old_key.status_at(now), KeyStatus::Grace);
        assert!(old_key.accepts_at(grace_end - 1) && new_key.accepts_at(grace_end - 1));
        assert!(!old_key.accepts_at(grace_end) && new_key.accepts_at(grace_end));
        assert_eq!(ring.get(other.kid.as_bytes()).unwrap().not_after_ms, None);

        // A second rotation with a longer grace does not extend the first one's...
        let newer = rotate_key(&path, "GameCo", Some(30), now + DAY_MS).unwrap();
        let ring = KeyRing::load(&path).unwrap();
        assert_eq!(ring.get(old.kid.as_bytes()).unwrap().accepted_until_ms(), Some(grace_end));
        let second_end = ring.get(new.kid.as_bytes()).unwrap().accepted_until_ms();
        assert_eq!(second_end, Some(T0 + 41 * DAY_MS));
        // ...and a shorter one shortens it; grace 0 revokes at once.
        rotate_key(&path, "GameCo", Some(0), now + 2 * DAY_MS).unwrap();
        let ring = KeyRing::load(&path).unwrap();
        for kid in [&old.kid, &new.kid, &newer.kid] {
            assert!(!ring.get(kid.as_bytes()).unwrap().accepts_at(now + 2 * DAY_MS), "{kid}");
        }
        assert_eq!(ring.keys().iter().filter(|k| k.partner == "GameCo" && k.accepts_at(now + 2 * DAY_MS)).count(), 1);

        let error = rotate_key(&path, "nobody", Some(7), now).unwrap_err();
        assert!(matches!(error, KeyRingError::NothingToRotate { .. }), "{error}");
        let missing = dir.path().join("missing.toml");
        assert!(matches!(rotate_key(&missing, "GameCo", Some(7), now), Err(KeyRingError::Read { .. })));
        assert!(!missing.exists());
    }

    /// Regression: `keys rotate` run as root replaced a root:sluice 0640 ring with a
    /// root:root 0600 file, which the service could no longer read.
    #[test]
    fn rotation_keeps_the_group_and_mode_of_the_ring_it_replaces() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        gen_key(&path, "GameCo", None, T0).unwrap();
        // As root, hand the file to another group, as the service install does.
        // (The file is ours, so its owner says whether we are root.)
        let created = fs::metadata(&path).unwrap();
        let group = if created.uid() == 0 { 4242 } else { created.gid() };
        std::os::unix::fs::chown(&path, None, Some(group)).unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        rotate_key(&path, "GameCo", Some(7), T0 + DAY_MS).unwrap();
        let after = fs::metadata(&path).unwrap();
        assert_eq!(after.gid(), group, "the group of the replaced file is kept");
        assert_eq!(after.mode() & 0o777, 0o640, "group read kept, the world bit dropped");
        gen_key(&path, "other", None, T0).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o640, "gen keeps it too");
    }

    #[test]
    fn dev_ring_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/dev-keys.toml");
        let created = ensure_dev_keyring(&path, T0).unwrap().unwrap();
        assert_eq!(created.partner, "dev");
        assert_eq!(mode_of(&path), 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert!(ensure_dev_keyring(&path, T0).unwrap().is_none());
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
        let ring = KeyRing::load(&path).unwrap();
        assert!(ring.get(created.kid.as_bytes()).unwrap().accepts_at(T0 + 1000 * DAY_MS));
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn refuses_to_rewrite_an_invalid_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let broken = ring_text(&[("k", "p", ""), ("k", "p", "")]);
        fs::write(&path, &broken).unwrap();
        assert!(matches!(gen_key(&path, "p", None, T0), Err(KeyRingError::DuplicateKid { .. })));
        assert_eq!(fs::read_to_string(&path).unwrap(), broken);
    }

    #[test]
    fn too_many_keys_is_an_error() {
        let keys: Vec<String> = (0..=KEYS_PER_RING_MAX).map(|i| format!("k{i}")).collect();
        let text = ring_text(&keys.iter().map(|kid| (kid.as_str(), "p", "")).collect::<Vec<_>>());
        assert!(matches!(KeyRing::from_toml(&text, Path::new("k.toml")), Err(KeyRingError::TooManyKeys { .. })));
    }

    #[test]
    fn ring_is_shareable_between_shards() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<KeyRing>();
    }
}
