//! The two error layers of JWT auth: [`JwtError`] rejects one request (answered 401 with
//! fixed text), [`JwtLoadError`] rejects a configuration or a JWKS file (names the file
//! and the key for the operator; JWKS files hold only public keys).

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a bearer token is not accepted; every variant is answered 401. Checks run in the
/// order listed, and no claim is judged before the signature verified, so an
/// unauthenticated caller learns nothing about which claims a forged token got right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    /// No `Authorization: Bearer <token>` (absent, empty, or another scheme).
    Missing,
    /// The token is longer than `JWT_TOKEN_BYTES_MAX`.
    TooLarge,
    /// Not three base64url segments (no padding), or a header or claims set that is not
    /// one strict JSON object: duplicate or escaped member names, too many members, too
    /// deep, a registered claim of the wrong type, a `crit` header.
    Malformed,
    /// `alg` is not one of the issuer's algorithms (`none` and `HS*` never are), or does
    /// not match the type of the key its `kid` names.
    AlgorithmNotAllowed,
    /// `iss` is absent or names no configured issuer.
    IssuerUnknown,
    /// No key of the issuer's JWKS has this `kid`; or no `kid` and not exactly one key
    /// of the token's algorithm.
    KeyUnknown,
    /// The signature does not verify with the selected key.
    SignatureInvalid,
    /// `exp` is absent, or neither `sub`, `client_id` nor `azp` names the caller.
    ClaimMissing,
    /// `now >= exp + leeway`.
    Expired,
    /// `now + leeway < nbf`.
    NotYetValid,
    /// `iat > now + leeway`.
    IssuedInFuture,
    /// `aud` is absent or does not contain the issuer's audience.
    AudienceMismatch,
}

impl JwtError {
    /// Every variant, for tests and label tables.
    pub const ALL: [JwtError; 12] = [
        JwtError::Missing,
        JwtError::TooLarge,
        JwtError::Malformed,
        JwtError::AlgorithmNotAllowed,
        JwtError::IssuerUnknown,
        JwtError::KeyUnknown,
        JwtError::SignatureInvalid,
        JwtError::ClaimMissing,
        JwtError::Expired,
        JwtError::NotYetValid,
        JwtError::IssuedInFuture,
        JwtError::AudienceMismatch,
    ];

    /// The `error.code` of the 401 answer (SPEC §1.3), snake_case.
    pub fn code(&self) -> &'static str {
        match self {
            JwtError::Missing => "token_missing",
            JwtError::TooLarge => "token_too_large",
            JwtError::Malformed => "token_malformed",
            JwtError::AlgorithmNotAllowed => "token_algorithm_not_allowed",
            JwtError::IssuerUnknown => "token_issuer_unknown",
            JwtError::KeyUnknown => "token_key_unknown",
            JwtError::SignatureInvalid => "token_signature_invalid",
            JwtError::ClaimMissing => "token_claim_missing",
            JwtError::Expired => "token_expired",
            JwtError::NotYetValid => "token_not_yet_valid",
            JwtError::IssuedInFuture => "token_issued_in_future",
            JwtError::AudienceMismatch => "token_audience_mismatch",
        }
    }

    /// The `error.message` of the 401 answer: fixed text, never token bytes or claims.
    pub fn message(&self) -> &'static str {
        match self {
            JwtError::Missing => "an Authorization: Bearer <token> header is required",
            JwtError::TooLarge => "the bearer token is longer than 8192 bytes",
            JwtError::Malformed => "the bearer token is not a compact JWS with a strict JSON header and claims set",
            JwtError::AlgorithmNotAllowed => "the token's alg is not allowed for its issuer and key (RS256, ES256 or EdDSA as configured)",
            JwtError::IssuerUnknown => "the token's iss names no issuer trusted by this server",
            JwtError::KeyUnknown => "the token's kid names no key of its issuer's key set",
            JwtError::SignatureInvalid => "the token's signature does not verify",
            JwtError::ClaimMissing => "the token must carry exp and one of sub, client_id or azp",
            JwtError::Expired => "the token has expired",
            JwtError::NotYetValid => "the token is not valid yet (nbf)",
            JwtError::IssuedInFuture => "the token's iat is in the future; check the issuer's clock",
            JwtError::AudienceMismatch => "the token's aud does not name this server",
        }
    }
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::error::Error for JwtError {}

/// Why a JWT policy or one of its JWKS files cannot be used. At start-up this is fatal
/// (exit 2); on reload the issuer keeps its previous keys.
#[derive(Debug, thiserror::Error)]
pub enum JwtLoadError {
    #[error("jwt: leeway_secs = {leeway_secs}; at most {max_secs} is allowed")]
    LeewayTooLarge { leeway_secs: u64, max_secs: u64 },
    #[error("jwt: {count} issuers configured; 1 to {max} are allowed")]
    IssuerCount { count: usize, max: usize },
    #[error("jwt: issuer #{index}: {problem}")]
    IssuerInvalid { index: usize, problem: &'static str },
    #[error("cannot read JWKS {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("JWKS {path}: {bytes} bytes; at most {max_bytes} are allowed")]
    FileTooLarge { path: PathBuf, bytes: u64, max_bytes: u64 },
    #[error("JWKS {path}: not a JSON Web Key Set: {source}")]
    Syntax { path: PathBuf, source: serde_json::Error },
    #[error("JWKS {path}: {count} keys; at most {max} are allowed")]
    TooManyKeys { path: PathBuf, count: usize, max: usize },
    #[error("JWKS {path}: key #{index} (kid {kid:?}): {problem}")]
    KeyInvalid { path: PathBuf, index: usize, kid: String, problem: &'static str },
    #[error("JWKS {path}: kid {kid:?} appears more than once")]
    DuplicateKid { path: PathBuf, kid: String },
    #[error("JWKS {path}: no key usable with the issuer's algorithms ({skipped} skipped)")]
    NoUsableKeys { path: PathBuf, skipped: usize },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::JWT_TOKEN_BYTES_MAX;

    #[test]
    fn codes_are_distinct_snake_case_and_messages_fixed() {
        assert_eq!(JWT_TOKEN_BYTES_MAX, 8192, "JwtError::TooLarge's message quotes the limit");
        let mut codes: Vec<&str> = JwtError::ALL.iter().map(JwtError::code).collect();
        for (error, code) in JwtError::ALL.iter().zip(&codes) {
            assert!(code.starts_with("token_") && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{code}");
            assert!(!error.message().is_empty());
            assert_eq!(error.to_string(), *code);
        }
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), JwtError::ALL.len());
    }
}
