//! The signed replay runbook: a JSON document that names what to replay (the items, each
//! pinned by the SHA-256 of its body), where to, why and until when, signed by the
//! person who asked for it and by at least one other person who approved it.
//!
//! Parsing is strict: the document is at most `RUNBOOK_BYTES_MAX` bytes, a key repeated
//! in any object is refused (two parsers could read different values), unknown fields
//! are refused, and every field is checked against its bounds before anything else
//! looks at it.
//!
//! # What is signed
//!
//! `set_sha256` is the lowercase hex SHA-256 over the items in order, each as
//! `ref "\n" event_id "\n" sha256 "\n"` (a `ref` holds no control characters and an
//! `event_id` only `[A-Za-z0-9_.:-]`, so the lines cannot be re-split another way).
//!
//! The signed message is the SHA-256 of the canonical bytes: the line
//! `sluice-replay-runbook-v1\n`, then one line `name=value\n` per field in this order:
//!
//! ```text
//! id  created_at_ms  expires_at_ms  requester  reason  source.kind
//! dlq:    source.ids (count), then source.id per id
//! topic:  source.topic  source.from_ms  source.to_ms
//! events: source.topic  source.event_ids (count), then source.event_id per id
//! target_topic  items (count)  set_sha256
//! ```
//!
//! An integer is written in decimal (`-` for negatives); a string as its length in
//! bytes, `:`, then its bytes (`requester=5:alice`), so no value can run into the next
//! field whatever it holds. Every signature is Ed25519 over those 32 digest bytes. The
//! signatures themselves are outside the message, so each signer signs the same digest.

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use aws_lc_rs::digest::{self, SHA256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::signer::{self, PUBLIC_KEY_BYTES, PublicSigner, Role, SIGNATURE_BYTES, Signer};
use crate::constants::{
    EVENT_ID_BYTES_MAX, RUNBOOK_BYTES_MAX, RUNBOOK_CLOCK_SKEW_MS, RUNBOOK_ITEMS_MAX, RUNBOOK_REASON_CHARS_MAX, RUNBOOK_REF_BYTES_MAX,
    RUNBOOK_SIGNATURE_JSON_BYTES_MAX, RUNBOOK_SIGNATURES_MAX, RUNBOOK_VALIDITY_MS_MAX,
};
use crate::topics;

/// The `format` of every runbook this code reads and writes.
pub const RUNBOOK_FORMAT: &str = "sluice-replay-runbook-v1";
const ID_PREFIX: &str = "rb_";
/// 26 characters of 36 carry 134 bits: ids never collide and cannot be guessed.
const ID_RANDOM_CHARS: usize = 26;
const ID_ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
/// Random bytes drawn for one id: bytes at or above `ID_BYTE_LIMIT` are dropped so every
/// character is equally likely; needing more than 38 of 64 dropped never happens.
const ID_RANDOM_BYTES: usize = 64;
const ID_BYTE_LIMIT: u8 = 252;
const SHA256_HEX_CHARS: usize = 64;
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

const _: () = assert!((ID_BYTE_LIMIT as usize).is_multiple_of(ID_ALPHABET.len()));
const _: () = assert!(ID_RANDOM_BYTES >= 2 * ID_RANDOM_CHARS);

/// A replay plan as parsed or built; `verify` says whether it may be run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runbook {
    format: Format,
    /// `rb_` and 26 characters of `[0-9a-z]`.
    pub id: String,
    /// Unix milliseconds. Valid from `created_at_ms` (less `RUNBOOK_CLOCK_SKEW_MS`) to
    /// `expires_at_ms` inclusive, at most `RUNBOOK_VALIDITY_MS_MAX` apart.
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    /// The signer name of who asked for the replay.
    pub requester: String,
    /// Free text for the approvers: 1..=2000 characters, no control characters but
    /// newline and tab, no bidirectional overrides.
    pub reason: String,
    pub source: Source,
    pub target_topic: String,
    pub items: Vec<Item>,
    pub set_sha256: String,
    pub signatures: Vec<RunbookSignature>,
}

/// Where the items were taken from, as the requester selected them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Source {
    Dlq { ids: Vec<String> },
    Topic { topic: String, from_ms: i64, to_ms: i64 },
    Events { topic: String, event_ids: Vec<String> },
}

/// One event to replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// Where the body is read from (a DLQ id, `topic/partition/offset`): 1..=256 bytes,
    /// no control characters, unique within the runbook.
    #[serde(rename = "ref")]
    pub reference: String,
    pub event_id: String,
    /// Lowercase hex SHA-256 of the body bytes: a replay must refuse a body that differs.
    pub sha256: String,
}

impl Item {
    /// The item for `body` read from `reference`.
    pub fn new(reference: impl Into<String>, event_id: impl Into<String>, body: &[u8]) -> Item {
        Item { reference: reference.into(), event_id: event_id.into(), sha256: hex(digest::digest(&SHA256, body).as_ref()) }
    }
}

/// One signature: Ed25519 by `signer`, acting as `role`, over the runbook's digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookSignature {
    pub signer: String,
    pub role: Role,
    #[serde(with = "signature_base64")]
    pub sig: [u8; SIGNATURE_BYTES],
}

/// What `Runbook::plan` needs; the id is drawn at random and `set_sha256` computed.
#[derive(Debug, Clone)]
pub struct Plan {
    pub requester: String,
    pub reason: String,
    pub source: Source,
    pub target_topic: String,
    pub items: Vec<Item>,
    pub created_at_ms: i64,
    /// At most `RUNBOOK_VALIDITY_MS_MAX`.
    pub valid_for_ms: i64,
}

/// A runbook that passed `verify`: who asked, who approved, and the digest they signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub requester: String,
    /// In the order their signatures appear; never empty, never the requester.
    pub approvers: Vec<String>,
    pub digest: [u8; 32],
}

/// Why a runbook was refused. `code()` is a stable id for logs and exit reports.
#[derive(Debug, thiserror::Error)]
pub enum RunbookError {
    #[error("runbook is {bytes} bytes, more than the {max_bytes} a runbook may be; split the replay into several runbooks")]
    TooLarge { bytes: usize, max_bytes: usize },
    #[error("runbook has {count} items, more than the {max} a runbook may hold; split the replay into several runbooks")]
    TooManyItems { count: usize, max: usize },
    #[error("runbook repeats the key {key:?} within one object; refused because another parser could read the other value")]
    DuplicateKey { key: String },
    #[error("runbook is not a valid {RUNBOOK_FORMAT} document: {source}")]
    Json { source: serde_json::Error },
    #[error("runbook field {field} {problem}")]
    Invalid { field: String, problem: String },
    #[error("runbook is not signed by its requester {requester:?}")]
    Unsigned { requester: String },
    #[error("runbook names {requester:?} as its requester but carries a requester signature by {signer:?}")]
    RequesterMismatch { requester: String, signer: String },
    #[error("runbook is signed by {signer:?}, who is not in the list of known signers")]
    SignerUnknown { signer: String },
    #[error("runbook is signed by {signer:?} as {claimed}, but {signer:?} is not a known {claimed}")]
    RoleWrong { signer: String, claimed: Role },
    #[error("the signature by {signer:?} does not verify: the runbook was changed after it was signed, or signed with another key")]
    SignatureInvalid { signer: String },
    #[error("runbook items do not match its set_sha256 (written {written}, items hash to {computed}): the items were changed")]
    ItemsAltered { written: String, computed: String },
    #[error("runbook expired at {expires_at_ms} ms (now {now_ms} ms); plan and sign a new one")]
    Expired { expires_at_ms: i64, now_ms: i64 },
    #[error("runbook is valid only from {created_at_ms} ms (now {now_ms} ms, {RUNBOOK_CLOCK_SKEW_MS} ms of clock skew allowed)")]
    NotYetValid { created_at_ms: i64, now_ms: i64 },
    #[error("runbook by {requester:?} has no approver signature; someone other than the requester must approve it")]
    NotApproved { requester: String },
    #[error("runbook by {requester:?} is approved by {approver:?} with the requester's own name or key; approval needs a second person")]
    SelfApproved { requester: String, approver: String },
    #[error("runbook carries the signature of {signer:?} twice (same name and role, or the same approver key under two names)")]
    DuplicateSignature { signer: String },
    #[error("the system random generator failed; no runbook was made")]
    Random,
}

impl RunbookError {
    /// A stable snake_case id of the refusal.
    pub fn code(&self) -> &'static str {
        match self {
            RunbookError::TooLarge { .. } | RunbookError::TooManyItems { .. } => "runbook_too_large",
            RunbookError::DuplicateKey { .. } | RunbookError::Json { .. } | RunbookError::Invalid { .. } => "runbook_malformed",
            RunbookError::Unsigned { .. } => "runbook_unsigned",
            RunbookError::RequesterMismatch { .. } => "runbook_requester_mismatch",
            RunbookError::SignerUnknown { .. } => "runbook_signer_unknown",
            RunbookError::RoleWrong { .. } => "runbook_role_wrong",
            RunbookError::SignatureInvalid { .. } => "runbook_altered",
            RunbookError::ItemsAltered { .. } => "runbook_items_altered",
            RunbookError::Expired { .. } => "runbook_expired",
            RunbookError::NotYetValid { .. } => "runbook_not_yet_valid",
            RunbookError::NotApproved { .. } => "runbook_not_approved",
            RunbookError::SelfApproved { .. } => "runbook_self_approved",
            RunbookError::DuplicateSignature { .. } => "runbook_duplicate_signature",
            RunbookError::Random => "runbook_random_failed",
        }
    }
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> RunbookError {
    RunbookError::Invalid { field: field.into(), problem: problem.into() }
}

/// A signature that verified, with the key it verified under.
struct SignedBy<'a> {
    name: &'a str,
    role: Role,
    key: [u8; PUBLIC_KEY_BYTES],
}

impl Runbook {
    /// A new, unsigned runbook with a random id. Refuses a plan that breaks a field's
    /// bounds, or whose document (with room for `RUNBOOK_SIGNATURES_MAX` signatures)
    /// would exceed `RUNBOOK_BYTES_MAX`, so every runbook planned can be parsed.
    pub fn plan(plan: Plan) -> Result<Runbook, RunbookError> {
        let expires_at_ms = plan.created_at_ms.checked_add(plan.valid_for_ms).ok_or_else(|| invalid("expires_at_ms", "overflows"))?;
        let runbook = Runbook {
            format: Format,
            id: random_id()?,
            created_at_ms: plan.created_at_ms,
            expires_at_ms,
            requester: plan.requester,
            reason: plan.reason,
            source: plan.source,
            target_topic: plan.target_topic,
            set_sha256: set_sha256_of(&plan.items),
            items: plan.items,
            signatures: Vec::new(),
        };
        runbook.validate()?;
        let bytes = runbook.to_json().len() + RUNBOOK_SIGNATURES_MAX * RUNBOOK_SIGNATURE_JSON_BYTES_MAX;
        if bytes > RUNBOOK_BYTES_MAX {
            return Err(RunbookError::TooLarge { bytes, max_bytes: RUNBOOK_BYTES_MAX });
        }
        Ok(runbook)
    }

    /// Parses and checks a runbook document. Refuses more than `RUNBOOK_BYTES_MAX`
    /// bytes, a duplicate key in any object, unknown or missing fields, and any field
    /// outside its bounds. Signatures are not checked here: that is `verify`.
    pub fn parse(bytes: &[u8]) -> Result<Runbook, RunbookError> {
        if bytes.len() > RUNBOOK_BYTES_MAX {
            return Err(RunbookError::TooLarge { bytes: bytes.len(), max_bytes: RUNBOOK_BYTES_MAX });
        }
        refuse_duplicate_keys(bytes)?;
        let runbook: Runbook = serde_json::from_slice(bytes).map_err(|source| RunbookError::Json { source })?;
        runbook.validate()?;
        Ok(runbook)
    }

    /// The document, pretty-printed with a final newline. The same runbook always gives
    /// the same bytes (fields in declaration order).
    pub fn to_json(&self) -> Vec<u8> {
        // Plain structs, strings and integers into memory: serde_json cannot fail here.
        let mut json = serde_json::to_vec_pretty(self).expect("a runbook serializes to JSON");
        json.push(b'\n');
        json
    }

    /// Appends `signer`'s signature in its role. Refuses a runbook that is malformed or
    /// whose items do not match `set_sha256`, a second signature by the same name in
    /// the same role, and a signature past `RUNBOOK_SIGNATURES_MAX`.
    pub fn sign(&mut self, signer: &Signer) -> Result<(), RunbookError> {
        self.validate()?;
        self.check_items()?;
        if self.signatures.iter().any(|signature| signature.signer == signer.name() && signature.role == signer.role()) {
            return Err(RunbookError::DuplicateSignature { signer: signer.name().to_owned() });
        }
        if self.signatures.len() >= RUNBOOK_SIGNATURES_MAX {
            return Err(invalid("signatures", format!("already holds {RUNBOOK_SIGNATURES_MAX}, the most a runbook may carry")));
        }
        let sig = signer.sign(&self.digest());
        self.signatures.push(RunbookSignature { signer: signer.name().to_owned(), role: signer.role(), sig });
        Ok(())
    }

    /// Whether this runbook may run at `now_ms` (Unix milliseconds) given the known
    /// `signers`. It must be well-formed, its items must match `set_sha256`, every
    /// signature must be by a known signer in the role that signer is known for and
    /// verify, the named requester must have signed as requester, and at least one
    /// approver other than the requester (by name and by key) must have signed.
    pub fn verify(&self, signers: &[PublicSigner], now_ms: i64) -> Result<Verified, RunbookError> {
        self.validate()?;
        self.check_items()?;
        let digest = self.digest();
        let signed = self.check_signatures(signers, &digest)?;
        let approvers = self.check_approval(&signed)?;
        if now_ms > self.expires_at_ms {
            return Err(RunbookError::Expired { expires_at_ms: self.expires_at_ms, now_ms });
        }
        if now_ms.saturating_add(RUNBOOK_CLOCK_SKEW_MS) < self.created_at_ms {
            return Err(RunbookError::NotYetValid { created_at_ms: self.created_at_ms, now_ms });
        }
        Ok(Verified { requester: self.requester.clone(), approvers, digest })
    }

    /// The SHA-256 of `canonical_bytes`: what every signature signs.
    pub fn digest(&self) -> [u8; 32] {
        let mut out = [0; 32];
        out.copy_from_slice(digest::digest(&SHA256, &self.canonical_bytes()).as_ref());
        out
    }

    /// The canonical bytes of every field but `signatures` (the module doc defines them).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Canonical(format!("{RUNBOOK_FORMAT}\n").into_bytes());
        out.text("id", &self.id);
        out.integer("created_at_ms", self.created_at_ms);
        out.integer("expires_at_ms", self.expires_at_ms);
        out.text("requester", &self.requester);
        out.text("reason", &self.reason);
        match &self.source {
            Source::Dlq { ids } => {
                out.text("source.kind", "dlq");
                out.integer("source.ids", ids.len());
                ids.iter().for_each(|id| out.text("source.id", id));
            }
            Source::Topic { topic, from_ms, to_ms } => {
                out.text("source.kind", "topic");
                out.text("source.topic", topic);
                out.integer("source.from_ms", from_ms);
                out.integer("source.to_ms", to_ms);
            }
            Source::Events { topic, event_ids } => {
                out.text("source.kind", "events");
                out.text("source.topic", topic);
                out.integer("source.event_ids", event_ids.len());
                event_ids.iter().for_each(|id| out.text("source.event_id", id));
            }
        }
        out.text("target_topic", &self.target_topic);
        out.integer("items", self.items.len());
        out.text("set_sha256", &self.set_sha256);
        out.0
    }

    /// Checks every field against its bounds (what `parse` runs after reading the
    /// JSON); for a runbook changed in memory.
    pub fn validate(&self) -> Result<(), RunbookError> {
        self.validate_header()?;
        validate_source(&self.source)?;
        validate_items(&self.items)?;
        if !is_sha256_hex(&self.set_sha256) {
            return Err(invalid("set_sha256", "must be 64 lowercase hex digits"));
        }
        if self.signatures.len() > RUNBOOK_SIGNATURES_MAX {
            return Err(invalid("signatures", format!("holds {}, more than {RUNBOOK_SIGNATURES_MAX}", self.signatures.len())));
        }
        match self.signatures.iter().position(|signature| !signer::valid_name(&signature.signer)) {
            Some(index) => Err(invalid(format!("signatures[{index}].signer"), "must be 1..=64 characters of [a-z0-9_.-]")),
            None => Ok(()),
        }
    }

    fn validate_header(&self) -> Result<(), RunbookError> {
        let random = self.id.strip_prefix(ID_PREFIX).unwrap_or_default();
        if random.len() != ID_RANDOM_CHARS || !random.bytes().all(|byte| ID_ALPHABET.contains(&byte)) {
            return Err(invalid("id", "must be rb_ and 26 characters of [0-9a-z]"));
        }
        if self.created_at_ms < 0 {
            return Err(invalid("created_at_ms", "must not be negative"));
        }
        if self.expires_at_ms <= self.created_at_ms {
            return Err(invalid("expires_at_ms", "must be after created_at_ms"));
        }
        if self.expires_at_ms - self.created_at_ms > RUNBOOK_VALIDITY_MS_MAX {
            return Err(invalid("expires_at_ms", format!("must be at most {RUNBOOK_VALIDITY_MS_MAX} ms after created_at_ms")));
        }
        if !signer::valid_name(&self.requester) {
            return Err(invalid("requester", "must be 1..=64 characters of [a-z0-9_.-]"));
        }
        let reason_chars = self.reason.chars().count();
        if !(1..=RUNBOOK_REASON_CHARS_MAX).contains(&reason_chars) {
            return Err(invalid("reason", format!("must be 1..={RUNBOOK_REASON_CHARS_MAX} characters, not {reason_chars}")));
        }
        // An approver reads the reason in a terminal: escape sequences and bidirectional
        // overrides could make it show something other than what is signed.
        if self.reason.chars().any(|c| (c.is_control() && c != '\n' && c != '\t') || is_bidi_control(c)) {
            return Err(invalid("reason", "must not hold control characters other than newline and tab"));
        }
        topics::valid_name(&self.target_topic).map_err(|problem| invalid("target_topic", problem))
    }

    fn check_items(&self) -> Result<(), RunbookError> {
        let computed = set_sha256_of(&self.items);
        if computed != self.set_sha256 {
            return Err(RunbookError::ItemsAltered { written: self.set_sha256.clone(), computed });
        }
        Ok(())
    }

    /// Every signature, verified: none repeated, each by a known signer in the role it
    /// claims, each valid over `digest`.
    fn check_signatures(&self, signers: &[PublicSigner], digest: &[u8]) -> Result<Vec<SignedBy<'_>>, RunbookError> {
        if self.signatures.is_empty() {
            return Err(RunbookError::Unsigned { requester: self.requester.clone() });
        }
        let mut signed: Vec<SignedBy<'_>> = Vec::with_capacity(self.signatures.len());
        for signature in &self.signatures {
            if signed.iter().any(|earlier| earlier.name == signature.signer && earlier.role == signature.role) {
                return Err(RunbookError::DuplicateSignature { signer: signature.signer.clone() });
            }
            let key = verify_signature(signature, signers, digest)?;
            signed.push(SignedBy { name: &signature.signer, role: signature.role, key });
        }
        Ok(signed)
    }

    /// The approvers' names, once the requester is known to have signed and no approver
    /// is the requester (by name or key) or another approver (by key).
    fn check_approval(&self, signed: &[SignedBy<'_>]) -> Result<Vec<String>, RunbookError> {
        let mut requester_key = None;
        for by in signed.iter().filter(|by| by.role == Role::Requester) {
            if by.name != self.requester {
                return Err(RunbookError::RequesterMismatch { requester: self.requester.clone(), signer: by.name.to_owned() });
            }
            requester_key = Some(by.key);
        }
        let Some(requester_key) = requester_key else {
            return Err(RunbookError::Unsigned { requester: self.requester.clone() });
        };
        let approvers: Vec<&SignedBy<'_>> = signed.iter().filter(|by| by.role == Role::Approver).collect();
        if approvers.is_empty() {
            return Err(RunbookError::NotApproved { requester: self.requester.clone() });
        }
        for (index, approver) in approvers.iter().enumerate() {
            if approver.name == self.requester || approver.key == requester_key {
                return Err(RunbookError::SelfApproved { requester: self.requester.clone(), approver: approver.name.to_owned() });
            }
            if approvers[..index].iter().any(|earlier| earlier.key == approver.key) {
                return Err(RunbookError::DuplicateSignature { signer: approver.name.to_owned() });
            }
        }
        Ok(approvers.iter().map(|approver| approver.name.to_owned()).collect())
    }
}

/// The key `signature` verifies under among the known signers of its name and role.
fn verify_signature(signature: &RunbookSignature, signers: &[PublicSigner], digest: &[u8]) -> Result<[u8; PUBLIC_KEY_BYTES], RunbookError> {
    let signer = || signature.signer.clone();
    let named: Vec<&PublicSigner> = signers.iter().filter(|known| known.name == signature.signer).collect();
    if named.is_empty() {
        return Err(RunbookError::SignerUnknown { signer: signer() });
    }
    let in_role: Vec<&PublicSigner> = named.into_iter().filter(|known| known.role == signature.role).collect();
    if in_role.is_empty() {
        return Err(RunbookError::RoleWrong { signer: signer(), claimed: signature.role });
    }
    // A name may be listed with more than one key (a key being rotated in).
    in_role
        .iter()
        .find(|known| UnparsedPublicKey::new(&ED25519, known.public_key).verify(digest, &signature.sig).is_ok())
        .map(|known| known.public_key)
        .ok_or_else(|| RunbookError::SignatureInvalid { signer: signer() })
}

fn validate_source(source: &Source) -> Result<(), RunbookError> {
    match source {
        Source::Dlq { ids } => {
            check_count("source.ids", ids.len())?;
            match ids.iter().position(|id| !is_reference(id)) {
                Some(index) => Err(invalid(format!("source.ids[{index}]"), reference_problem())),
                None => Ok(()),
            }
        }
        Source::Topic { topic, from_ms, to_ms } => {
            topics::valid_name(topic).map_err(|problem| invalid("source.topic", problem))?;
            if *from_ms < 0 || from_ms > to_ms {
                return Err(invalid("source.from_ms", "must be 0 or more and at most source.to_ms"));
            }
            Ok(())
        }
        Source::Events { topic, event_ids } => {
            topics::valid_name(topic).map_err(|problem| invalid("source.topic", problem))?;
            check_count("source.event_ids", event_ids.len())?;
            match event_ids.iter().position(|id| !is_event_id(id)) {
                Some(index) => Err(invalid(format!("source.event_ids[{index}]"), event_id_problem())),
                None => Ok(()),
            }
        }
    }
}

fn validate_items(items: &[Item]) -> Result<(), RunbookError> {
    if items.len() > RUNBOOK_ITEMS_MAX {
        return Err(RunbookError::TooManyItems { count: items.len(), max: RUNBOOK_ITEMS_MAX });
    }
    check_count("items", items.len())?;
    let mut references = HashSet::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        if !is_reference(&item.reference) {
            return Err(invalid(format!("items[{index}].ref"), reference_problem()));
        }
        if !is_event_id(&item.event_id) {
            return Err(invalid(format!("items[{index}].event_id"), event_id_problem()));
        }
        if !is_sha256_hex(&item.sha256) {
            return Err(invalid(format!("items[{index}].sha256"), "must be 64 lowercase hex digits"));
        }
        // The same source record twice is a planning mistake, and would replay twice.
        if !references.insert(item.reference.as_str()) {
            return Err(invalid(format!("items[{index}].ref"), "repeats an earlier item's ref"));
        }
    }
    Ok(())
}

fn check_count(field: &str, count: usize) -> Result<(), RunbookError> {
    if !(1..=RUNBOOK_ITEMS_MAX).contains(&count) {
        return Err(invalid(field, format!("must hold 1..={RUNBOOK_ITEMS_MAX} entries, not {count}")));
    }
    Ok(())
}

fn is_reference(text: &str) -> bool {
    (1..=RUNBOOK_REF_BYTES_MAX).contains(&text.len()) && !text.chars().any(char::is_control)
}

fn reference_problem() -> String {
    format!("must be 1..={RUNBOOK_REF_BYTES_MAX} bytes without control characters")
}

/// `[A-Za-z0-9_.:-]{1,128}`, the envelope's `event_id` (SPEC §1.2).
fn is_event_id(text: &str) -> bool {
    let allowed = |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b':' | b'-');
    (1..=EVENT_ID_BYTES_MAX).contains(&text.len()) && text.bytes().all(allowed)
}

fn event_id_problem() -> String {
    format!("must be 1..={EVENT_ID_BYTES_MAX} characters of [A-Za-z0-9_.:-]")
}

fn is_sha256_hex(text: &str) -> bool {
    text.len() == SHA256_HEX_CHARS && text.bytes().all(|byte| HEX_DIGITS.contains(&byte))
}

/// Unicode bidirectional embeddings, overrides and isolates (U+202A..=U+202E,
/// U+2066..=U+2069): text that displays in another order than it is stored.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Lowercase hex SHA-256 over the items in order, each `ref\nevent_id\nsha256\n`.
pub fn set_sha256_of(items: &[Item]) -> String {
    let mut context = digest::Context::new(&SHA256);
    for item in items {
        for part in [&item.reference, &item.event_id, &item.sha256] {
            context.update(part.as_bytes());
            context.update(b"\n");
        }
    }
    hex(context.finish().as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().flat_map(|byte| [HEX_DIGITS[usize::from(byte >> 4)], HEX_DIGITS[usize::from(byte & 0xf)]]).map(char::from).collect()
}

/// `rb_` and 26 random characters of `[0-9a-z]`, each equally likely.
fn random_id() -> Result<String, RunbookError> {
    let mut bytes = [0; ID_RANDOM_BYTES];
    SystemRandom::new().fill(&mut bytes).map_err(|_| RunbookError::Random)?;
    let random: String = bytes
        .iter()
        .filter(|&&byte| byte < ID_BYTE_LIMIT)
        .map(|&byte| char::from(ID_ALPHABET[usize::from(byte) % ID_ALPHABET.len()]))
        .take(ID_RANDOM_CHARS)
        .collect();
    if random.len() < ID_RANDOM_CHARS {
        return Err(RunbookError::Random);
    }
    Ok(format!("{ID_PREFIX}{random}"))
}

/// The canonical bytes being built: `name=value\n` lines.
struct Canonical(Vec<u8>);

impl Canonical {
    fn integer(&mut self, name: &str, value: impl fmt::Display) {
        self.0.extend_from_slice(format!("{name}={value}\n").as_bytes());
    }

    /// Length-prefixed, so the value may hold any byte, `\n` and `=` included.
    fn text(&mut self, name: &str, value: &str) {
        self.0.extend_from_slice(format!("{name}={}:", value.len()).as_bytes());
        self.0.extend_from_slice(value.as_bytes());
        self.0.push(b'\n');
    }
}

/// The `format` field: present and exactly `RUNBOOK_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Format;

impl Serialize for Format {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(RUNBOOK_FORMAT)
    }
}

impl<'de> Deserialize<'de> for Format {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Format, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text != RUNBOOK_FORMAT {
            return Err(de::Error::custom(format_args!("format must be {RUNBOOK_FORMAT:?}, not {text:?}")));
        }
        Ok(Format)
    }
}

/// `sig`: standard base64 (with padding) of exactly 64 bytes.
mod signature_base64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer, de};

    use super::SIGNATURE_BYTES;

    pub fn serialize<S: Serializer>(sig: &[u8; SIGNATURE_BYTES], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(sig))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; SIGNATURE_BYTES], D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = STANDARD.decode(&text).map_err(|_| de::Error::custom("sig must be base64"))?;
        bytes.try_into().map_err(|_| de::Error::custom("sig must be the base64 of 64 bytes"))
    }
}

/// Refuses a document in which any object repeats a key. serde_json keeps the last of
/// two equal keys, other parsers the first; a reviewer's tool and sluice must not read
/// different runbooks from the same bytes. The walk keeps one set of keys per open
/// object and nothing else; serde_json's recursion limit bounds the depth.
fn refuse_duplicate_keys(bytes: &[u8]) -> Result<(), RunbookError> {
    let duplicate = Cell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let walked = UniqueKeys { duplicate: &duplicate }.deserialize(&mut deserializer).and_then(|()| deserializer.end());
    match (walked, duplicate.take()) {
        (_, Some(key)) => Err(RunbookError::DuplicateKey { key }),
        (Err(source), None) => Err(RunbookError::Json { source }),
        (Ok(()), None) => Ok(()),
    }
}

/// Walks any JSON value, recording the first repeated key of an object in `duplicate`.
#[derive(Clone, Copy)]
struct UniqueKeys<'a> {
    duplicate: &'a Cell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for UniqueKeys<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueKeys<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if keys.contains(&key) {
                let error = de::Error::custom(format_args!("duplicate key {key:?}"));
                self.duplicate.set(Some(key));
                return Err(error);
            }
            map.next_value_seed(self)?;
            keys.insert(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::signer::{generate, load_private, write_private};

    const CREATED_MS: i64 = 1_700_000_000_000;
    const VALID_FOR_MS: i64 = 3_600_000;
    const NOW_MS: i64 = CREATED_MS + 1000;

    /// A signer loaded from its key file, as a person's tool would.
    fn load(text: &str) -> Signer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write_private(&path, text).unwrap();
        load_private(&path).unwrap()
    }

    fn signer(name: &str, role: Role) -> (Signer, PublicSigner, String) {
        let (text, public) = generate(name, role).unwrap();
        (load(&text), public, text)
    }

    /// alice asks, bob approves; both known. `alice_key` is alice's private key file.
    struct Team {
        alice: Signer,
        alice_key: String,
        bob: Signer,
        known: Vec<PublicSigner>,
    }

    fn team() -> Team {
        let (alice, alice_public, alice_key) = signer("alice", Role::Requester);
        let (bob, bob_public, _) = signer("bob", Role::Approver);
        Team { alice, alice_key, bob, known: vec![alice_public, bob_public] }
    }

    fn plan() -> Plan {
        Plan {
            requester: "alice".to_owned(),
            reason: "consumer bug #123 dropped these two; replay after the fix".to_owned(),
            source: Source::Dlq { ids: vec!["dlq-1".to_owned(), "dlq-2".to_owned()] },
            target_topic: "wallet_events.v2".to_owned(),
            items: vec![Item::new("dlq-1", "evt-1", br#"{"a":1}"#), Item::new("dlq-2", "evt-2", br#"{"a":2}"#)],
            created_at_ms: CREATED_MS,
            valid_for_ms: VALID_FOR_MS,
        }
    }

    fn signed_by(signers: &[&Signer]) -> Runbook {
        let mut runbook = Runbook::plan(plan()).unwrap();
        signers.iter().for_each(|signer| runbook.sign(signer).unwrap());
        runbook
    }

    fn refusal(runbook: &Runbook, known: &[PublicSigner]) -> &'static str {
        runbook.verify(known, NOW_MS).unwrap_err().code()
    }

    /// The runbook's document with `from` replaced once by `to`, parsed.
    fn edited(runbook: &Runbook, from: &str, to: &str) -> Result<Runbook, RunbookError> {
        let json = String::from_utf8(runbook.to_json()).unwrap();
        assert!(json.contains(from), "{from:?} not in {json}");
        Runbook::parse(json.replacen(from, to, 1).as_bytes())
    }

    #[test]
    fn a_signed_runbook_round_trips_and_verifies() {
        let team = team();
        let runbook = signed_by(&[&team.alice, &team.bob]);
        let json = runbook.to_json();
        assert!(json.starts_with(b"{\n  \"format\": \"sluice-replay-runbook-v1\",\n  \"id\": \"rb_"), "{}", String::from_utf8_lossy(&json));
        let parsed = Runbook::parse(&json).unwrap();
        assert_eq!(parsed, runbook);
        assert_eq!(parsed.to_json(), json, "the document is stable");
        let verified = parsed.verify(&team.known, NOW_MS).unwrap();
        assert_eq!((verified.requester.as_str(), verified.approvers.as_slice()), ("alice", ["bob".to_owned()].as_slice()));
        assert_eq!(verified.digest, runbook.digest());
        assert_eq!(runbook.id.len(), 29);
        assert_ne!(Runbook::plan(plan()).unwrap().id, runbook.id, "ids are random");
        let by_topic = Plan { source: Source::Topic { topic: "wallet".to_owned(), from_ms: 5, to_ms: 9 }, ..plan() };
        let events = Plan { source: Source::Events { topic: "wallet".to_owned(), event_ids: vec!["evt-1".to_owned()] }, ..plan() };
        for plan in [by_topic, events] {
            let mut runbook = Runbook::plan(plan).unwrap();
            runbook.sign(&team.alice).unwrap();
            runbook.sign(&team.bob).unwrap();
            assert!(Runbook::parse(&runbook.to_json()).unwrap().verify(&team.known, NOW_MS).is_ok());
        }
    }

    #[test]
    fn the_canonical_bytes_are_pinned() {
        let items = vec![Item::new("dlq/1", "e1", b"body")];
        assert_eq!(items[0].sha256, "230d8358dc8e8890b4c58deeb62912ee2f20357ae92a5cc861b98e68fe31acb5");
        let set_sha256 = "c2f1d47e1a23f13be85cdd6ba196fc192b8ef33dceef7ed48aa38f0f403b2615";
        assert_eq!(set_sha256_of(&items), set_sha256, "sha256 of \"dlq/1\\ne1\\n<item sha256>\\n\"");
        let runbook = Runbook {
            format: Format,
            id: "rb_0123456789abcdefghijklmnop".to_owned(),
            created_at_ms: 1000,
            expires_at_ms: 2000,
            requester: "alice".to_owned(),
            reason: "ok\nthen=x".to_owned(),
            source: Source::Events { topic: "wallet".to_owned(), event_ids: vec!["e1".to_owned()] },
            target_topic: "wallet_events.v2".to_owned(),
            items,
            set_sha256: set_sha256.to_owned(),
            signatures: Vec::new(),
        };
        runbook.validate().unwrap();
        let expected = format!(
            "sluice-replay-runbook-v1\nid=29:rb_0123456789abcdefghijklmnop\ncreated_at_ms=1000\nexpires_at_ms=2000\n\
             requester=5:alice\nreason=9:ok\nthen=x\nsource.kind=6:events\nsource.topic=6:wallet\nsource.event_ids=1\n\
             source.event_id=2:e1\ntarget_topic=16:wallet_events.v2\nitems=1\nset_sha256=64:{set_sha256}\n"
        );
        assert_eq!(String::from_utf8(runbook.canonical_bytes()).unwrap(), expected);
        assert_eq!(runbook.digest().as_slice(), digest::digest(&SHA256, expected.as_bytes()).as_ref());
    }

    #[test]
    fn a_runbook_without_its_requester_signature_is_refused() {
        let team = team();
        assert_eq!(refusal(&signed_by(&[]), &team.known), "runbook_unsigned");
        assert_eq!(refusal(&signed_by(&[&team.bob]), &team.known), "runbook_unsigned");
        assert_eq!(refusal(&signed_by(&[&team.alice]), &team.known), "runbook_not_approved");
        let (carol, carol_public, _) = signer("carol", Role::Requester);
        let known = [team.known.clone(), vec![carol_public]].concat();
        let error = signed_by(&[&carol, &team.bob]).verify(&known, NOW_MS).unwrap_err();
        assert_eq!(error.code(), "runbook_requester_mismatch");
        assert!(error.to_string().contains("\"alice\"") && error.to_string().contains("\"carol\""), "{error}");
    }

    #[test]
    fn an_altered_field_breaks_the_signatures() {
        let team = team();
        let runbook = signed_by(&[&team.alice, &team.bob]);
        for (from, to) in [
            ("consumer bug #123", "consumer bug #124"),
            ("\"wallet_events.v2\"", "\"wallet_events.v3\""),
            (
                &format!("\"expires_at_ms\": {}", CREATED_MS + VALID_FOR_MS),
                &format!("\"expires_at_ms\": {}", CREATED_MS + 2 * VALID_FOR_MS),
            ),
            ("\"ids\": [\n      \"dlq-1\"", "\"ids\": [\n      \"dlq-9\""),
        ] {
            let altered = edited(&runbook, from, to).unwrap();
            let error = altered.verify(&team.known, NOW_MS).unwrap_err();
            assert_eq!(error.code(), "runbook_altered", "{from}: {error}");
            assert!(error.to_string().contains("changed after it was signed"), "{error}");
        }
    }

    #[test]
    fn altered_items_or_set_hash_are_refused() {
        let team = team();
        let runbook = signed_by(&[&team.alice, &team.bob]);
        let item_sha = runbook.items[0].sha256.clone();
        let other_sha = "0".repeat(64);
        assert_eq!(refusal(&edited(&runbook, &item_sha, &other_sha).unwrap(), &team.known), "runbook_items_altered");
        assert_eq!(refusal(&edited(&runbook, &runbook.set_sha256, &other_sha).unwrap(), &team.known), "runbook_items_altered");
        // Items changed and set_sha256 recomputed to match: the signatures catch it.
        let mut consistent = runbook.clone();
        consistent.items[1].event_id = "evt-3".to_owned();
        consistent.set_sha256 = set_sha256_of(&consistent.items);
        assert_eq!(refusal(&consistent, &team.known), "runbook_altered");
        let mut dropped = runbook.clone();
        dropped.items.pop();
        dropped.set_sha256 = set_sha256_of(&dropped.items);
        assert_eq!(refusal(&dropped, &team.known), "runbook_altered");
        let mut unsigned = Runbook::plan(plan()).unwrap();
        unsigned.items[0].event_id = "evt-9".to_owned();
        assert_eq!(unsigned.sign(&team.alice).unwrap_err().code(), "runbook_items_altered", "nobody signs altered items");
    }

    #[test]
    fn a_runbook_is_valid_only_inside_its_window() {
        let team = team();
        let runbook = signed_by(&[&team.alice, &team.bob]);
        assert!(runbook.verify(&team.known, runbook.expires_at_ms).is_ok());
        let error = runbook.verify(&team.known, runbook.expires_at_ms + 1).unwrap_err();
        assert_eq!(error.code(), "runbook_expired", "{error}");
        assert!(runbook.verify(&team.known, CREATED_MS - RUNBOOK_CLOCK_SKEW_MS).is_ok(), "clock skew allowed");
        assert_eq!(runbook.verify(&team.known, CREATED_MS - RUNBOOK_CLOCK_SKEW_MS - 1).unwrap_err().code(), "runbook_not_yet_valid");
        let too_long = Plan { valid_for_ms: RUNBOOK_VALIDITY_MS_MAX + 1, ..plan() };
        assert_eq!(Runbook::plan(too_long).unwrap_err().code(), "runbook_malformed");
    }

    #[test]
    fn self_approval_is_refused_by_name_and_by_key() {
        let team = team();
        // alice is also a known approver, with a key of her own.
        let (alice_approver, alice_approver_public, _) = signer("alice", Role::Approver);
        let known = [team.known.clone(), vec![alice_approver_public]].concat();
        let error = signed_by(&[&team.alice, &alice_approver]).verify(&known, NOW_MS).unwrap_err();
        assert_eq!(error.code(), "runbook_self_approved", "{error}");
        // alice's own key, known under a second name as an approver.
        let alias_text = team.alice_key.replacen("alice requester", "alice2 approver", 1);
        let alias = load(&alias_text);
        let known = [team.known.clone(), vec![alias.public()]].concat();
        assert_eq!(alias.public().public_key, team.alice.public().public_key);
        let error = signed_by(&[&team.alice, &alias]).verify(&known, NOW_MS).unwrap_err();
        assert_eq!(error.code(), "runbook_self_approved", "{error}");
        assert!(error.to_string().contains("\"alice2\""), "{error}");
        // Even with a genuine second approver beside the alias.
        assert_eq!(refusal(&signed_by(&[&team.alice, &team.bob, &alias]), &known), "runbook_self_approved");
    }

    #[test]
    fn a_signer_in_the_wrong_role_or_unknown_is_refused() {
        let team = team();
        // dave's key file says approver, the verifier knows him as a requester only.
        let (dave, mut dave_public, _) = signer("dave", Role::Approver);
        dave_public.role = Role::Requester;
        let known = [team.known.clone(), vec![dave_public]].concat();
        let error = signed_by(&[&team.alice, &dave]).verify(&known, NOW_MS).unwrap_err();
        assert_eq!(error.code(), "runbook_role_wrong");
        assert!(error.to_string().contains("\"dave\" is not a known approver"), "{error}");
        let error = signed_by(&[&team.alice, &team.bob]).verify(&team.known[..1], NOW_MS).unwrap_err();
        assert_eq!(error.code(), "runbook_signer_unknown");
        assert!(error.to_string().contains("\"bob\""), "{error}");
        // bob's name with another key: his signature does not verify.
        let (_, impostor, _) = signer("bob", Role::Approver);
        let known = vec![team.known[0].clone(), impostor];
        assert_eq!(refusal(&signed_by(&[&team.alice, &team.bob]), &known), "runbook_altered");
    }

    #[test]
    fn duplicate_signatures_are_refused() {
        let team = team();
        let mut runbook = signed_by(&[&team.alice, &team.bob]);
        assert_eq!(runbook.sign(&team.bob).unwrap_err().code(), "runbook_duplicate_signature");
        let copy = runbook.signatures[1].clone();
        runbook.signatures.push(copy);
        assert_eq!(refusal(&runbook, &team.known), "runbook_duplicate_signature");
        // One approver's key under two names counts once, so it is refused, not counted twice.
        let bob2 = PublicSigner { name: "bob2".to_owned(), ..team.bob.public() };
        let mut twice = signed_by(&[&team.alice, &team.bob]);
        let mut copy = twice.signatures[1].clone();
        copy.signer = "bob2".to_owned();
        twice.signatures.push(copy);
        let known = [team.known.clone(), vec![bob2]].concat();
        assert_eq!(refusal(&twice, &known), "runbook_duplicate_signature");
    }

    #[test]
    fn a_duplicate_key_anywhere_is_refused() {
        let team = team();
        let runbook = signed_by(&[&team.alice, &team.bob]);
        for (from, to, key) in [
            ("\"reason\": ", "\"reason\": \"replay all\", \"reason\": ", "reason"),
            ("\"kind\": \"dlq\",", "\"kind\": \"dlq\", \"kind\": \"dlq\",", "kind"),
            ("\"event_id\": ", "\"event_id\": \"evt-7\", \"event_id\": ", "event_id"),
            ("\"sig\": ", "\"sig\": \"\", \"sig\": ", "sig"),
            ("\"reason\": ", "\"re\\u0061son\": \"replay all\", \"reason\": ", "reason"),
        ] {
            let error = edited(&runbook, from, to).unwrap_err();
            assert!(matches!(&error, RunbookError::DuplicateKey { key: found } if found == key), "{to}: {error}");
            assert_eq!(error.code(), "runbook_malformed");
        }
        assert!(matches!(Runbook::parse(br#"{"a":1,"a":2}"#), Err(RunbookError::DuplicateKey { .. })));
        assert!(matches!(Runbook::parse(br#"[{"a":{}},{"a":{"b":1,"b":1}}]"#), Err(RunbookError::DuplicateKey { .. })));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let team = team();
        let runbook = signed_by(&[&team.alice, &team.bob]);
        for (from, to) in [
            ("\"reason\": ", "\"approved\": true, \"reason\": "),
            ("\"kind\": \"dlq\",", "\"kind\": \"dlq\", \"topic\": \"wallet\","),
            ("\"event_id\": ", "\"partition\": 0, \"event_id\": "),
            ("\"sig\": ", "\"key\": \"x\", \"sig\": "),
        ] {
            let error = edited(&runbook, from, to).unwrap_err();
            assert_eq!(error.code(), "runbook_malformed", "{to}: {error}");
            assert!(error.to_string().contains("unknown field"), "{to}: {error}");
        }
    }

    #[test]
    fn oversized_runbooks_are_refused() {
        let too_large = vec![b' '; RUNBOOK_BYTES_MAX + 1];
        assert!(matches!(Runbook::parse(&too_large), Err(RunbookError::TooLarge { .. })));
        let many: Vec<Item> = (0..=RUNBOOK_ITEMS_MAX).map(|i| Item::new(i.to_string(), "e", b"")).collect();
        let error = Runbook::plan(Plan { items: many, ..plan() }).unwrap_err();
        assert!(matches!(error, RunbookError::TooManyItems { count, .. } if count == RUNBOOK_ITEMS_MAX + 1), "{error}");
        assert_eq!(error.code(), "runbook_too_large");
        // Fewer items than the limit, but a document past RUNBOOK_BYTES_MAX.
        let reference = "r".repeat(RUNBOOK_REF_BYTES_MAX - 8);
        let long: Vec<Item> = (0..30_000).map(|i| Item::new(format!("{reference}{i:08}"), "e", b"")).collect();
        assert_eq!(Runbook::plan(Plan { items: long, ..plan() }).unwrap_err().code(), "runbook_too_large");
    }

    #[test]
    fn fields_outside_their_bounds_are_refused() {
        let team = team();
        let runbook = signed_by(&[&team.alice, &team.bob]);
        let item_sha = runbook.items[0].sha256.clone();
        for (from, to, expected) in [
            ("-runbook-v1", "-runbook-v2", "format must be"),
            (runbook.id.as_str(), "rb_short", "field id"),
            (item_sha.as_str(), &item_sha.to_uppercase(), "items[0].sha256"),
            ("consumer bug", "\\u001b[2Jconsumer bug", "field reason"),
            ("consumer bug", "\\u202econsumer bug", "field reason"),
            ("\"evt-1\"", "\"evt 1\"", "items[0].event_id"),
            ("\"wallet_events.v2\"", "\"_sluice\"", "field target_topic"),
            ("\"ref\": \"dlq-2\"", "\"ref\": \"dlq-1\"", "repeats"),
            ("\"requester\",", "\"admin\",", "unknown variant"),
            ("\"sig\": \"", "\"sig\": \"!", "base64"),
            (&format!("\"created_at_ms\": {CREATED_MS}"), "\"created_at_ms\": 1.5", "invalid type"),
            ("\"signatures\": [", "\"signatures\": [ 1, ", "invalid type"),
        ] {
            let error = edited(&runbook, from, to).unwrap_err();
            assert_eq!(error.code(), "runbook_malformed", "{to}: {error}");
            assert!(error.to_string().contains(expected), "{to}: {error}");
        }
        let reason = "x".repeat(RUNBOOK_REASON_CHARS_MAX + 1);
        assert!(Runbook::plan(Plan { reason, ..plan() }).unwrap_err().to_string().contains("field reason"));
        let reason = "é".repeat(RUNBOOK_REASON_CHARS_MAX);
        assert!(Runbook::plan(Plan { reason, ..plan() }).is_ok(), "the limit counts characters, not bytes");
        let mut json = runbook.to_json();
        json.extend_from_slice(b"{}");
        assert_eq!(Runbook::parse(&json).unwrap_err().code(), "runbook_malformed");
        assert_eq!(Runbook::parse(b"{").unwrap_err().code(), "runbook_malformed");
    }

    #[test]
    fn every_signature_fits_the_room_a_plan_keeps() {
        let mut runbook = Runbook::plan(plan()).unwrap();
        let unsigned_bytes = runbook.to_json().len();
        for index in 0..RUNBOOK_SIGNATURES_MAX {
            let (signer, _, _) = signer(&format!("{}{index}", "a".repeat(63)), Role::Requester);
            runbook.sign(&signer).unwrap();
        }
        assert!(runbook.to_json().len() - unsigned_bytes <= RUNBOOK_SIGNATURES_MAX * RUNBOOK_SIGNATURE_JSON_BYTES_MAX);
        let (one_more, _, _) = signer("z", Role::Approver);
        assert!(runbook.sign(&one_more).unwrap_err().to_string().contains("signatures"));
        assert!(Runbook::parse(&runbook.to_json()).is_ok());
    }
}
