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
    policy: Policy,
    path: PathBuf,
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

    pub fn policy(&self) -> &Policy {
        &self.policy
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

/// Decodes a Standard Webhooks secret: `whsec_` then standard base64 (padding optional)
/// of `SECRET_BYTES_MIN..=SECRET_BYTES_MAX` bytes. Errors never quote the input.
pub fn decode_secret(text: &str) -> Result<Vec<u8>, KeyRingError> {
    secret_bytes(text).map_err(|reason| KeyRingError::Secret { reason })
}

fn secret_bytes(text: &str) -> Result<Vec<u8>, String> {
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
fn wipe(bytes: &mut [u8]) {
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

const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random number generator failed");
    bytes
}

fn is_valid_kid(kid: &[u8]) -> bool {
    (1..=KID_BYTES_MAX).contains(&kid.len()) && kid.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

fn partner_problem(partner: &str) -> Option<String> {
    if partner.is_empty() {
        Some("must not be empty".to_owned())
    } else if partner.len() > PARTNER_BYTES_MAX {
        Some(format!("must be at most {PARTNER_BYTES_MAX} bytes"))
    } else if partner.chars().any(char::is_control) {
        Some("must not contain control characters".to_owned())
    } else {
        None
    }
}

// ---- The file as written: serialized back verbatim except for the fields we change. ----

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRing {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy: Option<RawPolicy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    partners: Vec<RawPartner>,
    #[serde(default)]
    keys: Vec<RawKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    kid: String,
    secret: String,
    partner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_before: Option<toml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_after: Option<toml::Value>,
    #[serde(default, skip_serializing_if = "is_zero")]
    grace_days: u32,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// Reads a time field: a quoted RFC 3339 string (what we write) or a native TOML offset
/// date-time. `None` for anything else, including a local date-time without offset.
fn time_unix_ms(value: &toml::Value) -> Option<i64> {
    match value {
        toml::Value::String(text) => parse_rfc3339_ms(text.as_bytes()),
        toml::Value::Datetime(datetime) => parse_rfc3339_ms(datetime.to_string().as_bytes()),
        _ => None,
    }
}

/// `unix_ms` as we write it; whole seconds without a fraction: `2026-11-21T00:00:00Z`.
fn time_text(unix_ms: i64) -> String {
    let full = format_rfc3339_ms(unix_ms);
    let keep = if unix_ms.rem_euclid(1000) == 0 { &full[..19] } else { &full[..23] };
    let mut text: String = keep.iter().map(|&b| char::from(b)).collect();
    text.push('Z');
    text
}

fn parse_raw(text: &str, origin: &Path) -> Result<RawRing, KeyRingError> {
    toml::from_str(text).map_err(|error| {
        let line = error.span().map_or(0, |span| {
            let end = span.start.min(text.len());
            1 + text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count()
        });
        KeyRingError::Parse { path: origin.to_owned(), line, message: redact_quoted(error.message()) }
    })
}

/// Replaces every `"..."` in a parser message with `"…"`: serde quotes the offending
/// value (`invalid type: string "whsec_…"`), which may be a secret in the wrong place.
/// Text in backticks (field names, expected tokens) is kept.
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let (mut in_quotes, mut in_backticks) = (false, false);
    for c in message.chars() {
        match c {
            '"' if !in_backticks => {
                if in_quotes {
                    out.push('…');
                }
                out.push(c);
                in_quotes = !in_quotes;
            }
            _ if in_quotes => {}
            '`' => {
                out.push(c);
                in_backticks = !in_backticks;
            }
            _ => out.push(c),
        }
    }
    out
}

fn build_ring(raw: &RawRing, origin: &Path) -> Result<KeyRing, KeyRingError> {
    if raw.keys.len() > KEYS_PER_RING_MAX {
        return Err(KeyRingError::TooManyKeys { path: origin.to_owned(), count: raw.keys.len(), max: KEYS_PER_RING_MAX });
    }
    let policy_error =
        |what: String, (field, reason): partners::Problem| KeyRingError::Policy { path: origin.to_owned(), what, field, reason };
    let policy = partners::validate_policy(&raw.policy.clone().unwrap_or_default(), GRACE_DAYS_MAX)
        .map_err(|problem| policy_error("[policy]".to_owned(), problem))?;
    if raw.partners.len() > PARTNERS_PER_RING_MAX {
        let problem = ("partners", format!("{} tables; at most {PARTNERS_PER_RING_MAX} are allowed", raw.partners.len()));
        return Err(policy_error("[[partners]]".to_owned(), problem));
    }
    let mut ring = KeyRing {
        keys: Vec::with_capacity(raw.keys.len()),
        index_by_kid: HashMap::with_capacity(raw.keys.len()),
        partners: Vec::with_capacity(raw.partners.len()),
        partner_by_name: HashMap::new(),
        partner_by_tls_identity: HashMap::new(),
        partner_by_jwt_subject: HashMap::new(),
        keys_by_partner: Vec::new(),
        policy,
        path: origin.to_owned(),
    };
    for (index, raw_partner) in raw.partners.iter().enumerate() {
        let partner = partners::validate_partner(raw_partner, partner_problem)
            .map_err(|problem| policy_error(format!("partner #{}", index + 1), problem))?;
        ring.add_partner(partner)?;
    }
    for (index, raw_key) in raw.keys.iter().enumerate() {
        let mut key = validate_key(raw_key, index, origin)?;
        key.partner_index = match ring.partner_by_name.get(&key.partner) {
            Some(&partner) => partner,
            None => ring.add_partner(Partner::implied(&key.partner))?,
        };
        if ring.index_by_kid.insert(Box::from(key.kid.as_bytes()), index).is_some() {
            return Err(KeyRingError::DuplicateKid { path: origin.to_owned(), kid: key.kid });
        }
        ring.keys.push(key);
    }
    ring.keys_by_partner = vec![Vec::new(); ring.partners.len()];
    for (index, key) in ring.keys.iter().enumerate() {
        ring.keys_by_partner[key.partner_index].push(index);
    }
    Ok(ring)
}

impl KeyRing {
    /// Adds a partner and indexes its name, identities and subjects, each of which must
    /// point at one partner only.
    fn add_partner(&mut self, partner: Partner) -> Result<usize, KeyRingError> {
        let index = self.partners.len();
        let duplicate = |what: &str| KeyRingError::Policy {
            path: self.path.clone(),
            what: format!("partner {:?}", partner.name),
            field: "name",
            reason: format!("{what} is already another partner's"),
        };
        if self.partner_by_name.contains_key(&partner.name) {
            return Err(KeyRingError::DuplicatePartner { path: self.path.clone(), partner: partner.name });
        }
        for identity in &partner.tls_identities {
            if self.partner_by_tls_identity.contains_key(identity) {
                return Err(duplicate("a tls_identities entry"));
            }
        }
        for subject in &partner.jwt_subjects {
            if self.partner_by_jwt_subject.contains_key(subject) {
                return Err(duplicate("a jwt_subjects entry"));
            }
        }
        self.partner_by_name.insert(partner.name.clone(), index);
        self.partner_by_tls_identity.extend(partner.tls_identities.iter().map(|identity| (identity.clone(), index)));
        self.partner_by_jwt_subject.extend(partner.jwt_subjects.iter().map(|subject| (subject.clone(), index)));
        self.partners.push(partner);
        Ok(index)
    }
}

fn validate_key(raw: &RawKey, index: usize, origin: &Path) -> Result<Key, KeyRingError> {
    let kid_ok = is_valid_kid(raw.kid.as_bytes());
    let invalid = |field: &'static str, reason: String| KeyRingError::Invalid {
        path: origin.to_owned(),
        // A bad kid is not echoed: it may be a secret pasted into the wrong field.
        key: if kid_ok { format!("key {:?}", raw.kid) } else { format!("key #{}", index + 1) },
        field,
        reason,
    };
    if !kid_ok {
        return Err(invalid("kid", format!("must be 1..={KID_BYTES_MAX} characters of [A-Za-z0-9_.:-]")));
    }
    if let Some(problem) = partner_problem(&raw.partner) {
        return Err(invalid("partner", problem));
    }
    let time = |field: &'static str, value: &Option<toml::Value>| match value {
        None => Ok(None),
        Some(value) => time_unix_ms(value).map(Some).ok_or_else(|| invalid(field, TIME_REASON.to_owned())),
    };
    let not_before_ms = time("not_before", &raw.not_before)?;
    let not_after_ms = time("not_after", &raw.not_after)?;
    if let (Some(start), Some(end)) = (not_before_ms, not_after_ms)
        && end < start
    {
        return Err(invalid("not_after", "is earlier than not_before".to_owned()));
    }
    if raw.grace_days > GRACE_DAYS_MAX {
        return Err(invalid("grace_days", format!("must be at most {GRACE_DAYS_MAX}")));
    }
    let mut secret = secret_bytes(&raw.secret).map_err(|reason| invalid("secret", reason))?;
    let hmac = hmac::Key::new(hmac::HMAC_SHA256, &secret);
    wipe(&mut secret);
    Ok(Key {
        kid: raw.kid.clone(),
        partner: raw.partner.clone(),
        partner_index: 0,
        not_before_ms,
        not_after_ms,
        grace_days: raw.grace_days,
        hmac,
    })
}

// ---- File operations for `sluice keys`. ----

/// A key just written to a ring file. The secret stays in the file only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub kid: String,
    pub partner: String,
    pub path: PathBuf,
    /// For `rotate`: the grace period the previous keys were given; 0 otherwise.
    pub grace_days: u32,
}

/// One line of `sluice keys list`: everything about a key except its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub kid: String,
    pub partner: String,
    pub not_before_ms: Option<i64>,
    pub not_after_ms: Option<i64>,
    pub grace_days: u32,
    /// `not_after + grace_days`; `None`: no expiry.
    pub accepted_until_ms: Option<i64>,
    pub status: KeyStatus,
}

/// `kid partner status not_before not_after grace_days`, `-` for an absent time.
impl fmt::Display for KeyInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = |value: Option<i64>| value.map_or_else(|| "-".to_owned(), time_text);
        write!(
            f,
            "{} {:?} {} not_before={} not_after={} grace_days={}",
            self.kid,
            self.partner,
            self.status,
            time(self.not_before_ms),
            time(self.not_after_ms),
            self.grace_days
        )
    }
}

/// Appends a key for `partner` with a fresh kid and secret, creating the file if it is
/// missing. `valid_days`: `not_after = now + days` (1..=`KEY_VALID_DAYS_MAX`); `None`: no
/// expiry. The key is valid at once. Refuses to touch a file that does not validate.
pub fn gen_key(path: &Path, partner: &str, valid_days: Option<u32>, now_ms: i64) -> Result<NewKey, KeyRingError> {
    check_partner_argument(partner)?;
    if let Some(days) = valid_days
        && !(1..=KEY_VALID_DAYS_MAX).contains(&days)
    {
        return Err(KeyRingError::Argument { name: "valid_days", reason: format!("must be 1..={KEY_VALID_DAYS_MAX}") });
    }
    let mut raw = read_raw(path)?.unwrap_or_default();
    let ring = build_ring(&raw, path)?;
    let now_ms = whole_second(now_ms);
    let kid = unused_kid(&ring, now_ms)?;
    let key = match valid_days {
        Some(days) => new_raw_key(kid.clone(), partner, Some(toml::Value::String(time_text(now_ms + i64::from(days) * DAY_MS))), 0),
        None => policy_key(kid.clone(), partner, ring.policy(), now_ms),
    };
    raw.keys.push(key);
    store(path, &raw)?;
    Ok(NewKey { kid, partner: partner.to_owned(), path: path.to_owned(), grace_days: 0 })
}

/// Every key in the file with its status at `now_ms`; never a secret.
pub fn list_keys(path: &Path, now_ms: i64) -> Result<Vec<KeyInfo>, KeyRingError> {
    let ring = KeyRing::load(path)?;
    let info = ring.keys().iter().map(|key| KeyInfo {
        kid: key.kid.clone(),
        partner: key.partner.clone(),
        not_before_ms: key.not_before_ms,
        not_after_ms: key.not_after_ms,
        grace_days: key.grace_days,
        accepted_until_ms: key.accepted_until_ms(),
        status: key.status_at(now_ms),
    });
    Ok(info.collect())
}

/// Adds a key for `partner` (expiring after the policy's `rotation_days`, if any) and
/// starts the grace period (`grace_days`, else the policy's `grace_period_days`) of every
/// key of that partner accepted at `now_ms`: `not_after = now`, `grace_days = grace_days`,
/// unless the key already stops being accepted by `now + grace_days`. Pending keys are
/// left alone. `grace_days = 0` revokes the old keys at once. The file must exist and the
/// partner must have an accepted key (else `NothingToRotate`).
pub fn rotate_key(path: &Path, partner: &str, grace_days: Option<u32>, now_ms: i64) -> Result<NewKey, KeyRingError> {
    check_partner_argument(partner)?;
    let Some(mut raw) = read_raw(path)? else {
        return Err(KeyRingError::Read { path: path.to_owned(), source: io::ErrorKind::NotFound.into() });
    };
    let ring = build_ring(&raw, path)?;
    let grace_days = grace_days.unwrap_or(ring.policy().grace_period_days);
    if grace_days > GRACE_DAYS_MAX {
        return Err(KeyRingError::Argument { name: "grace_days", reason: format!("must be at most {GRACE_DAYS_MAX}") });
    }
    let now_ms = whole_second(now_ms);
    let grace_end_ms = now_ms + grace_ms(grace_days);
    let mut rotated = 0usize;
    for (raw_key, key) in raw.keys.iter_mut().zip(ring.keys()) {
        if key.partner != partner || !key.accepts_at(now_ms) {
            continue;
        }
        rotated += 1;
        if key.accepted_until_ms().is_some_and(|until| until <= grace_end_ms) {
            continue;
        }
        raw_key.not_after = Some(toml::Value::String(time_text(now_ms)));
        raw_key.grace_days = grace_days;
    }
    if rotated == 0 {
        return Err(KeyRingError::NothingToRotate { path: path.to_owned(), partner: partner.to_owned() });
    }
    let kid = unused_kid(&ring, now_ms)?;
    raw.keys.push(policy_key(kid.clone(), partner, ring.policy(), now_ms));
    store(path, &raw)?;
    Ok(NewKey { kid, partner: partner.to_owned(), path: path.to_owned(), grace_days })
}

/// Creates a ring with one non-expiring key for partner `dev` if nothing exists at `path`
/// (parent directories included). `Some(key)` when created; `None` when a file was
/// already there (it is not read). Never replaces an existing file, even under a race.
pub fn ensure_dev_keyring(path: &Path, now_ms: i64) -> Result<Option<NewKey>, KeyRingError> {
    let write_error = |source| KeyRingError::Write { path: path.to_owned(), source };
    if fs::symlink_metadata(path).is_ok() {
        return Ok(None);
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(write_error)?;
    }
    let kid = generate_kid(whole_second(now_ms));
    let raw = RawRing { keys: vec![new_raw_key(kid.clone(), DEV_PARTNER, None, 0)], ..RawRing::default() };
    let text = render(&raw, path)?;
    if !write_file(path, text.as_bytes(), Publish::NoClobber).map_err(write_error)? {
        return Ok(None);
    }
    Ok(Some(NewKey { kid, partner: DEV_PARTNER.to_owned(), path: path.to_owned(), grace_days: 0 }))
}

fn check_partner_argument(partner: &str) -> Result<(), KeyRingError> {
    match partner_problem(partner) {
        Some(reason) => Err(KeyRingError::Argument { name: "partner", reason }),
        None => Ok(()),
    }
}

fn whole_second(unix_ms: i64) -> i64 {
    unix_ms - unix_ms.rem_euclid(1000)
}

fn new_raw_key(kid: String, partner: &str, not_after: Option<toml::Value>, grace_days: u32) -> RawKey {
    RawKey { kid, secret: generate_secret(), partner: partner.to_owned(), not_before: None, not_after, grace_days }
}

/// A new key under the ring's policy: with `rotation_days`, it expires that many days
/// from now and then has `grace_period_days` of grace; without, it never expires.
fn policy_key(kid: String, partner: &str, policy: &Policy, now_ms: i64) -> RawKey {
    match policy.rotation_days {
        Some(days) => {
            let not_after = toml::Value::String(time_text(now_ms + i64::from(days) * DAY_MS));
            new_raw_key(kid, partner, Some(not_after), policy.grace_period_days)
        }
        None => new_raw_key(kid, partner, None, 0),
    }
}

fn unused_kid(ring: &KeyRing, now_ms: i64) -> Result<String, KeyRingError> {
    for _ in 0..KID_GENERATE_ATTEMPTS_MAX {
        let kid = generate_kid(now_ms);
        if ring.get(kid.as_bytes()).is_none() {
            return Ok(kid);
        }
    }
    Err(KeyRingError::KidExhausted { path: ring.path.clone(), attempts: KID_GENERATE_ATTEMPTS_MAX })
}

/// The parsed file, or `None` if it does not exist.
fn read_raw(path: &Path) -> Result<Option<RawRing>, KeyRingError> {
    match fs::read_to_string(path) {
        Ok(text) => parse_raw(&text, path).map(Some),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KeyRingError::Read { path: path.to_owned(), source }),
    }
}

/// Validates `raw` once more, then replaces the file.
fn store(path: &Path, raw: &RawRing) -> Result<(), KeyRingError> {
    build_ring(raw, path)?;
    let text = render(raw, path)?;
    write_file(path, text.as_bytes(), Publish::Replace).map(|_| ()).map_err(|source| KeyRingError::Write { path: path.to_owned(), source })
}

fn render(raw: &RawRing, path: &Path) -> Result<String, KeyRingError> {
    let body = toml::to_string(raw)
        .map_err(|error| KeyRingError::Write { path: path.to_owned(), source: io::Error::other(redact_quoted(&error.to_string())) })?;
    // A blank line between keys; `[[keys]]` cannot occur inside a value: newlines in
    // strings are escaped.
    Ok(format!("{FILE_HEADER}{}", body.replace("\n[[keys]]", "\n\n[[keys]]").replace("\n[[partners]]", "\n\n[[partners]]")))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Publish {
    /// rename(2) over whatever is there.
    Replace,
    /// link(2), which fails if the name exists.
    NoClobber,
}

/// Writes `contents` to a mode 0600 temporary file in `path`'s directory, fsyncs it,
/// publishes it under `path` and fsyncs the directory. Returns false only for
/// `NoClobber` when `path` already exists. The temporary file never outlives the call.
/// A file that is replaced passes on its owner, group and permission bits (less any for
/// others and any execute bit): `keys rotate` run as root must leave a root:sluice 0640
/// ring readable by the service.
fn write_file(path: &Path, contents: &[u8], publish: Publish) -> io::Result<bool> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let Some(name) = path.file_name() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "the key ring path names no file"));
    };
    let [a, b, c] = random_bytes::<3>();
    let temporary = directory.join(format!(".{}.{}.{a:02x}{b:02x}{c:02x}.tmp", name.to_string_lossy(), std::process::id()));
    let existing = if publish == Publish::Replace { fs::metadata(path).ok() } else { None };
    let result = write_and_publish(&temporary, path, contents, publish, existing.as_ref());
    if !matches!(result, Ok(true) if publish == Publish::Replace) {
        // Replace moved it away on success; in every other case it is still there.
        let _ = fs::remove_file(&temporary);
    }
    let published = result?;
    File::open(directory)?.sync_all()?;
    Ok(published)
}

fn write_and_publish(temporary: &Path, path: &Path, contents: &[u8], publish: Publish, like: Option<&fs::Metadata>) -> io::Result<bool> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(temporary)?;
    let mode = match like {
        Some(existing) => {
            use std::os::unix::fs::MetadataExt;
            let ours = file.metadata()?;
            if (ours.uid(), ours.gid()) != (existing.uid(), existing.gid()) {
                std::os::unix::fs::fchown(&file, Some(existing.uid()), Some(existing.gid())).map_err(|error| {
                    io::Error::new(
                        error.kind(),
                        format!(
                            "cannot give the new key ring the owner {}:{} of the file it replaces: {error}",
                            existing.uid(),
                            existing.gid()
                        ),
                    )
                })?;
            }
            (existing.mode() & REPLACED_MODE_MASK) | FILE_MODE
        }
        None => FILE_MODE,
    };
    // The umask may have removed bits from the mode; make it exact.
    file.set_permissions(Permissions::from_mode(mode))?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    match publish {
        Publish::Replace => fs::rename(temporary, path).map(|()| true),
        Publish::NoClobber => match fs::hard_link(temporary, path) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(error) => Err(error),
        },
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
