//! What an operator configures: the trusted issuers, each with its audience, its pinned
//! algorithms and its JWKS file, and the clock leeway. Validated once, at construction.

use std::path::PathBuf;

use super::error::JwtLoadError;
use crate::constants::{JWT_ISSUERS_MAX, JWT_LEEWAY_SECS_MAX};

/// A JWS algorithm sluice verifies. Nothing else is ever accepted: no `none`, no HMAC
/// (`HS*`, the key-confusion family), no PSS or SHA-384/512 variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `RS256`: RSASSA-PKCS1-v1_5 with SHA-256, 2048..=4096-bit keys (JWK `kty: RSA`).
    Rs256,
    /// `ES256`: ECDSA on P-256 with SHA-256, signature as JOSE `r || s` (JWK `kty: EC`,
    /// `crv: P-256`).
    Es256,
    /// `EdDSA` with Ed25519 (JWK `kty: OKP`, `crv: Ed25519`).
    EdDsa,
}

impl Algorithm {
    /// Every algorithm, in configuration order of preference.
    pub const ALL: [Algorithm; 3] = [Algorithm::Rs256, Algorithm::Es256, Algorithm::EdDsa];

    /// The JOSE `alg` name (RFC 7518 §3.1, RFC 8037 §3.1): `RS256`, `ES256`, `EdDSA`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    /// The algorithm with this exact (case-sensitive) JOSE name; `None` for every other
    /// name, `none` and `HS256` included.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|algorithm| algorithm.name() == name)
    }
}

/// One trusted issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerPolicy {
    /// The exact `iss` value of its tokens (compared byte for byte, RFC 7519 §4.1.1).
    pub issuer: String,
    /// The value `aud` must contain (a string, or one element of an array).
    pub audience: String,
    /// The algorithms its tokens may use; a token's `alg` must be listed here and match
    /// the type of the key its `kid` names.
    pub algorithms: Vec<Algorithm>,
    /// Its JWKS (RFC 7517) file, read at load and at every reload.
    pub jwks_file: PathBuf,
}

/// The validated JWT configuration: at least one issuer, distinct `iss` values, and a
/// leeway of at most `JWT_LEEWAY_SECS_MAX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtPolicy {
    issuers: Vec<IssuerPolicy>,
    leeway_secs: u64,
}

impl JwtPolicy {
    /// Checks the configuration: 1..=`JWT_ISSUERS_MAX` issuers with non-empty, distinct
    /// `issuer` values, non-empty `audience`, at least one algorithm (duplicates are
    /// dropped), and `leeway_secs <= JWT_LEEWAY_SECS_MAX`.
    pub fn new(mut issuers: Vec<IssuerPolicy>, leeway_secs: u64) -> Result<JwtPolicy, JwtLoadError> {
        if leeway_secs > JWT_LEEWAY_SECS_MAX {
            return Err(JwtLoadError::LeewayTooLarge { leeway_secs, max_secs: JWT_LEEWAY_SECS_MAX });
        }
        if issuers.is_empty() || issuers.len() > JWT_ISSUERS_MAX {
            return Err(JwtLoadError::IssuerCount { count: issuers.len(), max: JWT_ISSUERS_MAX });
        }
        for (index, policy) in issuers.iter_mut().enumerate() {
            let problem = if policy.issuer.is_empty() {
                Some("issuer is empty")
            } else if policy.audience.is_empty() {
                Some("audience is empty")
            } else if policy.algorithms.is_empty() {
                Some("algorithms is empty")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(JwtLoadError::IssuerInvalid { index, problem });
            }
            let mut seen = Vec::with_capacity(Algorithm::ALL.len());
            policy.algorithms.retain(|algorithm| {
                !seen.contains(algorithm) && {
                    seen.push(*algorithm);
                    true
                }
            });
        }
        for (index, policy) in issuers.iter().enumerate() {
            if issuers[..index].iter().any(|earlier| earlier.issuer == policy.issuer) {
                return Err(JwtLoadError::IssuerInvalid { index, problem: "issuer is configured twice" });
            }
        }
        Ok(JwtPolicy { issuers, leeway_secs })
    }

    /// The issuers, in configuration order (`Verified::issuer_index` indexes this).
    pub fn issuers(&self) -> &[IssuerPolicy] {
        &self.issuers
    }

    /// Seconds of clock skew granted on `exp`, `nbf` and `iat`.
    pub fn leeway_secs(&self) -> u64 {
        self.leeway_secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(name: &str) -> IssuerPolicy {
        IssuerPolicy {
            issuer: name.to_owned(),
            audience: "sluice".to_owned(),
            algorithms: vec![Algorithm::Rs256, Algorithm::Rs256, Algorithm::EdDsa],
            jwks_file: PathBuf::from("jwks.json"),
        }
    }

    #[test]
    fn algorithm_names_are_exact() {
        for algorithm in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(algorithm.name()), Some(algorithm));
        }
        for name in ["none", "None", "HS256", "rs256", "RS384", "PS256", "ES384", "Ed25519", ""] {
            assert_eq!(Algorithm::from_name(name), None, "{name}");
        }
    }

    #[test]
    fn policy_checks_its_bounds() {
        let policy = JwtPolicy::new(vec![issuer("a")], JWT_LEEWAY_SECS_MAX).unwrap();
        assert_eq!(policy.issuers()[0].algorithms, [Algorithm::Rs256, Algorithm::EdDsa]);
        assert!(matches!(JwtPolicy::new(vec![issuer("a")], JWT_LEEWAY_SECS_MAX + 1), Err(JwtLoadError::LeewayTooLarge { .. })));
        assert!(matches!(JwtPolicy::new(vec![], 0), Err(JwtLoadError::IssuerCount { .. })));
        let too_many = (0..=JWT_ISSUERS_MAX).map(|i| issuer(&i.to_string())).collect();
        assert!(matches!(JwtPolicy::new(too_many, 0), Err(JwtLoadError::IssuerCount { .. })));
        assert!(matches!(JwtPolicy::new(vec![issuer("a"), issuer("a")], 0), Err(JwtLoadError::IssuerInvalid { index: 1, .. })));
        let mut no_algorithms = issuer("a");
        no_algorithms.algorithms.clear();
        assert!(matches!(JwtPolicy::new(vec![no_algorithms], 0), Err(JwtLoadError::IssuerInvalid { index: 0, .. })));
        let mut no_audience = issuer("a");
        no_audience.audience.clear();
        assert!(matches!(JwtPolicy::new(vec![no_audience], 0), Err(JwtLoadError::IssuerInvalid { index: 0, .. })));
    }
}
