//! The key ring file as written (`[[keys]]`, `[[partners]]`, `[policy]`) and its
//! validation into a [`KeyRing`]: every key, partner and policy field checked, errors
//! naming the file and the key, secret text redacted from every message.

use super::*;

pub(super) fn partner_problem(partner: &str) -> Option<String> {
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
pub(super) struct RawRing {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) policy: Option<RawPolicy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) partners: Vec<RawPartner>,
    #[serde(default)]
    pub(super) keys: Vec<RawKey>,
    /// Consumer bearer tokens (SPEC §6), kept as their SHA-256 only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) tokens: Vec<RawToken>,
    /// Replay runbook signers (SPEC §9): Ed25519 public keys with a role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) signers: Vec<RawSigner>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSigner {
    pub(super) name: String,
    /// `requester` or `approver`.
    pub(super) role: String,
    /// `ed25519:<base64 of the 32-byte public key>`.
    pub(super) public_key: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawToken {
    pub(super) name: String,
    pub(super) partner: String,
    /// Lower-case hex SHA-256 of the whole token text.
    pub(super) sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) not_after: Option<toml::Value>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKey {
    pub(super) kid: String,
    pub(super) secret: String,
    pub(super) partner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) not_before: Option<toml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) not_after: Option<toml::Value>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(super) grace_days: u32,
}

pub(super) fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// Reads a time field: a quoted RFC 3339 string (what we write) or a native TOML offset
/// date-time. `None` for anything else, including a local date-time without offset.
pub(super) fn time_unix_ms(value: &toml::Value) -> Option<i64> {
    match value {
        toml::Value::String(text) => parse_rfc3339_ms(text.as_bytes()),
        toml::Value::Datetime(datetime) => parse_rfc3339_ms(datetime.to_string().as_bytes()),
        _ => None,
    }
}

/// `unix_ms` as we write it; whole seconds without a fraction: `2026-11-21T00:00:00Z`.
pub(super) fn time_text(unix_ms: i64) -> String {
    let full = format_rfc3339_ms(unix_ms);
    let keep = if unix_ms.rem_euclid(1000) == 0 { &full[..19] } else { &full[..23] };
    let mut text: String = keep.iter().map(|&b| char::from(b)).collect();
    text.push('Z');
    text
}

pub(super) fn parse_raw(text: &str, origin: &Path) -> Result<RawRing, KeyRingError> {
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
pub(super) fn redact_quoted(message: &str) -> String {
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

pub(super) fn build_ring(raw: &RawRing, origin: &Path) -> Result<KeyRing, KeyRingError> {
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
        tokens: Vec::new(),
        signers: Vec::new(),
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
    if raw.tokens.len() > crate::constants::TOKENS_PER_RING_MAX {
        let problem = ("tokens", format!("{} tables; at most {} are allowed", raw.tokens.len(), crate::constants::TOKENS_PER_RING_MAX));
        return Err(policy_error("[[tokens]]".to_owned(), problem));
    }
    for (index, raw_token) in raw.tokens.iter().enumerate() {
        let mut token = validate_token(raw_token, index, origin)?;
        if ring.tokens.iter().any(|known| known.name == token.name) {
            let problem = ("name", format!("{:?} names another token too", token.name));
            return Err(policy_error(format!("token #{}", index + 1), problem));
        }
        token.partner_index = match ring.partner_by_name.get(&token.partner) {
            Some(&partner) => partner,
            None => ring.add_partner(Partner::implied(&token.partner))?,
        };
        ring.tokens.push(token);
    }
    ring.signers = validate_signers(&raw.signers).map_err(|(index, problem)| policy_error(format!("signer #{}", index + 1), problem))?;
    ring.keys_by_partner = vec![Vec::new(); ring.partners.len()];
    for (index, key) in ring.keys.iter().enumerate() {
        ring.keys_by_partner[key.partner_index].push(index);
    }
    Ok(ring)
}

/// Signers a ring may list: a team's requesters and approvers.
const SIGNERS_PER_RING_MAX: usize = 256;

fn validate_signers(raw: &[RawSigner]) -> Result<Vec<crate::replay::signer::PublicSigner>, (usize, partners::Problem)> {
    use crate::replay::signer::{PublicSigner, Role, parse_public_key, valid_name};
    if raw.len() > SIGNERS_PER_RING_MAX {
        return Err((raw.len() - 1, ("signers", format!("at most {SIGNERS_PER_RING_MAX} signers"))));
    }
    let mut signers: Vec<PublicSigner> = Vec::with_capacity(raw.len());
    for (index, signer) in raw.iter().enumerate() {
        if !valid_name(&signer.name) {
            return Err((index, ("name", "must be 1..=64 of [a-z0-9_.-]".to_owned())));
        }
        let role = Role::parse(&signer.role).ok_or((index, ("role", "must be \"requester\" or \"approver\"".to_owned())))?;
        let public_key = parse_public_key(&signer.public_key).map_err(|error| (index, ("public_key", error.to_string())))?;
        if signers.iter().any(|known| known.name == signer.name && known.role == role && known.public_key == public_key) {
            return Err((index, ("name", format!("{:?} is listed twice with the same key and role", signer.name))));
        }
        signers.push(PublicSigner { name: signer.name.clone(), role, public_key });
    }
    Ok(signers)
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

pub(super) fn validate_key(raw: &RawKey, index: usize, origin: &Path) -> Result<Key, KeyRingError> {
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

pub(super) fn validate_token(raw: &RawToken, index: usize, origin: &Path) -> Result<Token, KeyRingError> {
    let name_ok = is_valid_kid(raw.name.as_bytes());
    let invalid = |field: &'static str, reason: String| KeyRingError::Invalid {
        path: origin.to_owned(),
        key: if name_ok { format!("token {:?}", raw.name) } else { format!("token #{}", index + 1) },
        field,
        reason,
    };
    if !name_ok {
        return Err(invalid("name", format!("must be 1..={KID_BYTES_MAX} characters of [A-Za-z0-9_.:-]")));
    }
    if let Some(problem) = partner_problem(&raw.partner) {
        return Err(invalid("partner", problem));
    }
    // Never echoed: a token pasted here by mistake would leak into the message.
    let digest = crate::perimeter::hmac::decode_hex_tag(raw.sha256.as_bytes())
        .ok_or_else(|| invalid("sha256", "must be 64 hex digits (the token's SHA-256)".to_owned()))?;
    let not_after_ms = match &raw.not_after {
        None => None,
        Some(value) => Some(time_unix_ms(value).ok_or_else(|| invalid("not_after", TIME_REASON.to_owned()))?),
    };
    Ok(Token { name: raw.name.clone(), partner: raw.partner.clone(), partner_index: 0, digest, not_after_ms })
}
