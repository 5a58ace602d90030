//! JWT bearer auth: OAuth2 access tokens (`Authorization: Bearer <token>`, RFC 6750,
//! RFC 9068) signed by configured issuers, verified against each issuer's JWKS file.
//!
//! Only RS256, ES256 and EdDSA (Ed25519) are verified, with aws-lc-rs, and the algorithm
//! is pinned three ways: it must be one of the issuer's, the key's type must imply it,
//! and the key's `alg` (if any) must name it. `none` and every HMAC algorithm are
//! refused before any key is looked at, so an RSA public key can never become an HMAC
//! secret. Keys come from the configured files only, never from the token (`jwk`,
//! `jku`, `x5u`, `x5c` are ignored).
//!
//! Order of checks: bearer scheme and size, segments and base64url, header (`alg` must
//! be one sluice verifies), claims syntax, issuer, issuer's algorithms, key, signature;
//! only then `exp`/`nbf`/`iat`, `aud` and the subject, so a forged token learns nothing
//! about its claims. The header and claims are parsed strictly (see `json.rs`): duplicate or
//! escaped member names, nesting beyond `JWT_JSON_DEPTH_MAX` and more than three segments
//! are `Malformed`.
//!
//! Allocation per request: none for an accepted token without escapes in its JSON; the
//! decode buffers and the text [`Verified`] borrows live in a reusable [`JwtScratch`],
//! sized at creation for the largest token. What remains: serde_json allocates its own
//! scratch for a string holding a backslash escape and boxes the error of a malformed
//! token; aws-lc (C) allocates its verification context per signature check.
//!
//! Reload builds a new verifier ([`JwtVerifier::reload`]): the server hands the new
//! `Arc<JwtVerifier>` to its shards, so the hot path takes no lock.

#![forbid(unsafe_code)]

mod claims;
mod error;
mod json;
mod jwks;
mod policy;
mod token;

use std::sync::Arc;

pub use self::error::{JwtError, JwtLoadError};
use self::jwks::{KeySet, file_stamp};
pub use self::policy::{Algorithm, IssuerPolicy, JwtPolicy};
use crate::constants::JWT_TOKEN_BYTES_MAX;

/// A policy and the keys of each of its issuers. Immutable; share it with `Arc`.
pub struct JwtVerifier {
    policy: JwtPolicy,
    /// One per issuer, in policy order; shared with the verifier a reload made.
    key_sets: Vec<Arc<KeySet>>,
}

/// A reloaded verifier and what went wrong with the files that could not be read.
pub struct Reloaded {
    /// Fresh keys for every file that loaded; the previous keys for the others.
    pub verifier: JwtVerifier,
    /// One error per file that kept its previous keys; empty if all reloaded.
    pub errors: Vec<JwtLoadError>,
}

/// A verified token: the issuer, the caller's name and its scopes. Borrows the scratch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified<'s> {
    /// Index into `JwtPolicy::issuers()`.
    pub issuer_index: usize,
    /// `sub`, or `client_id`, or `azp`: the first present and non-empty.
    pub subject: &'s str,
    pub scopes: Scopes<'s>,
    /// `exp` in Unix milliseconds (a NumericDate with a fraction is rounded down).
    pub expires_at_ms: i64,
}

/// The scope tokens of `scope` and `scp` (each a space-separated string or an array of
/// strings); tokens outside RFC 6749's character set are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scopes<'s> {
    /// The `scope` list and the `scp` list, each space-separated.
    lists: [&'s str; 2],
}

impl<'s> Scopes<'s> {
    /// Every scope token, `scope`'s first.
    pub fn iter(&self) -> impl Iterator<Item = &'s str> + use<'s> {
        self.lists.into_iter().flat_map(|list| list.split(' ')).filter(|scope| !scope.is_empty())
    }

    /// True if a scope is `ingest:<event_type>` or `ingest:*`. No scopes allow nothing.
    pub fn allows_event_type(&self, event_type: &[u8]) -> bool {
        self.iter().any(|scope| match scope.strip_prefix("ingest:") {
            Some("*") => true,
            Some(allowed) => !event_type.is_empty() && allowed.as_bytes() == event_type,
            None => false,
        })
    }
}

/// Per-thread buffers for [`JwtVerifier::verify`], sized for a `JWT_TOKEN_BYTES_MAX`
/// token so that verification does not allocate; reuse one per shard.
pub struct JwtScratch {
    header: Vec<u8>,
    claims: Vec<u8>,
    signature: Vec<u8>,
    /// Decoded `kid`, subject candidates and scope lists.
    text: String,
}

impl JwtScratch {
    /// About 24 KiB: four buffers of the largest decoded token.
    pub fn new() -> JwtScratch {
        let decoded_max = base64::decoded_len_estimate(JWT_TOKEN_BYTES_MAX);
        JwtScratch {
            header: Vec::with_capacity(decoded_max),
            claims: Vec::with_capacity(decoded_max),
            signature: Vec::with_capacity(decoded_max),
            text: String::with_capacity(decoded_max),
        }
    }
}

impl Default for JwtScratch {
    fn default() -> Self {
        JwtScratch::new()
    }
}

impl JwtVerifier {
    /// Reads every issuer's JWKS file; any failure names the file and is fatal.
    pub fn load(policy: JwtPolicy) -> Result<JwtVerifier, JwtLoadError> {
        let key_sets = policy
            .issuers()
            .iter()
            .map(|issuer| KeySet::load(&issuer.jwks_file, &issuer.algorithms).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(JwtVerifier { policy, key_sets })
    }

    /// Re-reads every JWKS file (on SIGHUP, an admin call, or when
    /// [`jwks_changed`](Self::jwks_changed)). A file that fails keeps its issuer's
    /// previous keys and adds an error naming it; `self` is unchanged.
    pub fn reload(&self) -> Reloaded {
        let mut errors = Vec::new();
        let key_sets = self
            .policy
            .issuers()
            .iter()
            .zip(&self.key_sets)
            .map(|(issuer, previous)| match KeySet::load(&issuer.jwks_file, &issuer.algorithms) {
                Ok(key_set) => Arc::new(key_set),
                Err(error) => {
                    errors.push(error);
                    Arc::clone(previous)
                }
            })
            .collect();
        Reloaded { verifier: JwtVerifier { policy: self.policy.clone(), key_sets }, errors }
    }

    /// True if a JWKS file's modification time or length differs from when its keys
    /// were read (one `stat` per issuer; for polling).
    pub fn jwks_changed(&self) -> bool {
        self.policy.issuers().iter().zip(&self.key_sets).any(|(issuer, key_set)| file_stamp(&issuer.jwks_file) != key_set.stamp())
    }

    pub fn policy(&self) -> &JwtPolicy {
        &self.policy
    }

    /// Usable and skipped keys of issuer `issuer_index`'s JWKS, for the start-up log.
    pub fn key_counts(&self, issuer_index: usize) -> (usize, usize) {
        let key_set = &self.key_sets[issuer_index];
        (key_set.len(), key_set.skipped())
    }

    /// Verifies the value of an `Authorization` header at `now_ms` (Unix milliseconds).
    /// See the module documentation for the order of checks; every error is a 401.
    pub fn verify<'s>(&self, authorization: &[u8], now_ms: i64, scratch: &'s mut JwtScratch) -> Result<Verified<'s>, JwtError> {
        let JwtScratch { header, claims, signature, text } = scratch;
        let compact = token::split(token::bearer_token(authorization)?)?;
        text.clear();
        token::decode(compact.header, header)?;
        let header = token::parse_header(header, text)?;
        token::decode(compact.claims, claims)?;
        let claims = claims::parse(claims, self.policy.issuers(), text)?;
        let issuer_index = claims.issuer.ok_or(JwtError::IssuerUnknown)?;
        if !self.policy.issuers()[issuer_index].algorithms.contains(&header.algorithm) {
            return Err(JwtError::AlgorithmNotAllowed);
        }
        let kid = header.kid.map(|kid| &text[kid]);
        let key = self.key_sets[issuer_index].select(kid, header.algorithm)?;
        token::decode_signature(compact.signature, signature)?;
        key.verify_sig(compact.signing_input, signature).map_err(|_| JwtError::SignatureInvalid)?;

        let expires_at_ms = claims.check_times(now_ms, self.policy.leeway_secs())?;
        if claims.audiences & (1 << issuer_index) == 0 {
            return Err(JwtError::AudienceMismatch);
        }
        let subject = claims.subject().ok_or(JwtError::ClaimMissing)?;
        let text: &'s String = text;
        Ok(Verified {
            issuer_index,
            subject: &text[subject],
            scopes: Scopes { lists: [&text[claims.scope], &text[claims.scp]] },
            expires_at_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::{Value, json};

    use super::*;
    use sluice_test_support::jwt::{self as mint, Signer};

    const ISSUER: &str = "https://issuer.example";
    const AUDIENCE: &str = "sluice-ingest";
    /// An issuer that only signs with Ed25519.
    const ED_ISSUER: &str = "https://ed.example";
    const NOW_SECS: i64 = 1_700_000_000;
    const NOW_MS: i64 = NOW_SECS * 1000;
    const LEEWAY_SECS: u64 = 60;

    struct Fixture {
        dir: tempfile::TempDir,
        rsa: Signer,
        ec: Signer,
        ed: Signer,
        verifier: JwtVerifier,
    }

    fn issuer(name: &str, algorithms: &[Algorithm], jwks_file: PathBuf) -> IssuerPolicy {
        IssuerPolicy { issuer: name.to_owned(), audience: AUDIENCE.to_owned(), algorithms: algorithms.to_vec(), jwks_file }
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (rsa, ec, ed) = (Signer::rsa("rsa-1"), Signer::ec("ec-1"), Signer::ed("ed-1"));
        mint::write_jwks(&dir.path().join("main.json"), &[&rsa, &ec, &ed]);
        mint::write_jwks(&dir.path().join("ed.json"), &[&ed]);
        let policy = JwtPolicy::new(
            vec![
                issuer(ISSUER, &Algorithm::ALL, dir.path().join("main.json")),
                issuer(ED_ISSUER, &[Algorithm::EdDsa], dir.path().join("ed.json")),
            ],
            LEEWAY_SECS,
        )
        .unwrap();
        let verifier = JwtVerifier::load(policy).unwrap();
        Fixture { dir, rsa, ec, ed, verifier }
    }

    fn claims() -> Value {
        mint::access_claims(ISSUER, AUDIENCE, "partner-1", NOW_SECS, "ingest:bet openid")
    }

    /// `claims()` with `changes` merged in (`null` removes a claim).
    fn claims_with(changes: Value) -> Value {
        let mut claims = claims();
        for (name, value) in changes.as_object().unwrap() {
            match value {
                Value::Null => claims.as_object_mut().unwrap().remove(name),
                _ => claims.as_object_mut().unwrap().insert(name.clone(), value.clone()),
            };
        }
        claims
    }

    fn check(verifier: &JwtVerifier, token: &str) -> Result<(), JwtError> {
        let mut scratch = JwtScratch::new();
        verifier.verify(format!("Bearer {token}").as_bytes(), NOW_MS, &mut scratch).map(|_| ())
    }

    /// The segment `index` of `token` replaced by `segment`.
    fn with_segment(token: &str, index: usize, segment: &str) -> String {
        let mut segments: Vec<&str> = token.split('.').collect();
        segments[index] = segment;
        segments.join(".")
    }

    #[test]
    fn a_good_token_per_algorithm() {
        let f = fixture();
        let mut scratch = JwtScratch::new();
        for signer in [&f.rsa, &f.ec, &f.ed] {
            let header = format!("Bearer {}", signer.token(&claims()));
            let verified = f.verifier.verify(header.as_bytes(), NOW_MS, &mut scratch).unwrap();
            assert_eq!((verified.issuer_index, verified.subject), (0, "partner-1"), "{}", signer.alg);
            assert_eq!(verified.expires_at_ms, (NOW_SECS + 600) * 1000);
            assert_eq!(verified.scopes.iter().collect::<Vec<_>>(), ["ingest:bet", "openid"]);
        }
        let ed_claims = claims_with(json!({"iss": ED_ISSUER}));
        let header = format!("Bearer {}", f.ed.token(&ed_claims));
        assert_eq!(f.verifier.verify(header.as_bytes(), NOW_MS, &mut scratch).unwrap().issuer_index, 1);
        assert_eq!(f.verifier.key_counts(0), (3, 0));
    }

    #[test]
    fn time_claims_with_leeway() {
        let f = fixture();
        let leeway = LEEWAY_SECS as i64;
        for (changes, expected) in [
            (json!({"exp": NOW_SECS - leeway + 1}), Ok(())),
            (json!({"exp": NOW_SECS - leeway}), Err(JwtError::Expired)),
            (json!({"exp": NOW_SECS as f64 - leeway as f64 + 0.001}), Ok(())),
            (json!({"exp": null}), Err(JwtError::ClaimMissing)),
            (json!({"nbf": NOW_SECS + leeway}), Ok(())),
            (json!({"nbf": NOW_SECS + leeway + 1}), Err(JwtError::NotYetValid)),
            (json!({"iat": NOW_SECS + leeway + 1}), Err(JwtError::IssuedInFuture)),
            (json!({"nbf": null, "iat": null}), Ok(())),
        ] {
            assert_eq!(check(&f.verifier, &f.ed.token(&claims_with(changes.clone()))), expected, "{changes}");
        }
    }

    #[test]
    fn issuer_audience_and_subject() {
        let f = fixture();
        for (changes, expected) in [
            (json!({"aud": "someone-else"}), Err(JwtError::AudienceMismatch)),
            (json!({"aud": ["someone-else", AUDIENCE]}), Ok(())),
            (json!({"aud": null}), Err(JwtError::AudienceMismatch)),
            (json!({"iss": "https://evil.example"}), Err(JwtError::IssuerUnknown)),
            (json!({"iss": null}), Err(JwtError::IssuerUnknown)),
            (json!({"sub": null}), Err(JwtError::ClaimMissing)),
            (json!({"sub": null, "client_id": "client-7"}), Ok(())),
            (json!({"sub": 7}), Err(JwtError::Malformed)),
        ] {
            assert_eq!(check(&f.verifier, &f.rsa.token(&claims_with(changes.clone()))), expected, "{changes}");
        }
    }

    #[test]
    fn unknown_and_missing_kid() {
        let f = fixture();
        let header = json!({"alg": "ES256", "kid": "ec-2"});
        assert_eq!(check(&f.verifier, &f.ec.token_with_header(&header, &claims())), Err(JwtError::KeyUnknown));
        // The main key set has one key per algorithm, so no kid is needed.
        assert_eq!(check(&f.verifier, &f.ec.token_with_header(&json!({"alg": "ES256"}), &claims())), Ok(()));
        let other_ec = Signer::ec("ec-2");
        mint::write_jwks(&f.dir.path().join("main.json"), &[&f.ec, &other_ec]);
        let reloaded = f.verifier.reload();
        assert!(reloaded.errors.is_empty());
        assert_eq!(check(&reloaded.verifier, &f.ec.token_with_header(&json!({"alg": "ES256"}), &claims())), Err(JwtError::KeyUnknown));
    }

    #[test]
    fn alg_none_and_hmac_forgeries_are_refused() {
        let f = fixture();
        assert_eq!(check(&f.verifier, &mint::unsigned_token(&claims())), Err(JwtError::AlgorithmNotAllowed));
        // The unsigned token with a real key's kid and a plausible alg name spelled otherwise.
        let none_with_kid = f.rsa.token_with_header(&json!({"alg": "None", "kid": "rsa-1"}), &claims());
        assert_eq!(check(&f.verifier, &none_with_kid), Err(JwtError::AlgorithmNotAllowed));
        let pem = f.rsa.rsa_public_key_pem();
        let jwk_n = f.rsa.jwk()["n"].as_str().unwrap().to_owned();
        for secret in [pem.as_bytes(), jwk_n.as_bytes(), f.rsa.jwk().to_string().as_bytes()] {
            assert_eq!(check(&f.verifier, &mint::hs256_token(secret, "rsa-1", &claims())), Err(JwtError::AlgorithmNotAllowed));
        }
    }

    #[test]
    fn algorithm_is_pinned_to_issuer_and_key() {
        let f = fixture();
        // An ES256 header naming the RSA key, signed with the EC key.
        let mismatch = f.ec.token_with_header(&json!({"alg": "ES256", "kid": "rsa-1"}), &claims());
        assert_eq!(check(&f.verifier, &mismatch), Err(JwtError::AlgorithmNotAllowed));
        // An RS256 header naming the Ed25519 key, signed with the RSA key.
        let mismatch = f.rsa.token_with_header(&json!({"alg": "RS256", "kid": "ed-1"}), &claims());
        assert_eq!(check(&f.verifier, &mismatch), Err(JwtError::AlgorithmNotAllowed));
        // The Ed25519-only issuer refuses RS256 before looking at keys.
        let rs256_for_ed_issuer = f.rsa.token(&claims_with(json!({"iss": ED_ISSUER})));
        assert_eq!(check(&f.verifier, &rs256_for_ed_issuer), Err(JwtError::AlgorithmNotAllowed));
    }

    #[test]
    fn tampering_is_detected() {
        let f = fixture();
        for signer in [&f.rsa, &f.ec, &f.ed] {
            let token = signer.token(&claims());
            let forged_claims = mint::b64(claims_with(json!({"scope": "ingest:*"})).to_string().as_bytes());
            assert_eq!(check(&f.verifier, &with_segment(&token, 1, &forged_claims)), Err(JwtError::SignatureInvalid));
            let mut signature =
                base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, token.split('.').nth(2).unwrap()).unwrap();
            signature[10] ^= 1;
            assert_eq!(check(&f.verifier, &with_segment(&token, 2, &mint::b64(&signature))), Err(JwtError::SignatureInvalid));
            assert_eq!(check(&f.verifier, &with_segment(&token, 2, &mint::b64(&signature[1..]))), Err(JwtError::SignatureInvalid));
            assert_eq!(check(&f.verifier, &with_segment(&token, 2, "")), Err(JwtError::SignatureInvalid));
            assert_eq!(check(&f.verifier, &with_segment(&token, 2, "!!!")), Err(JwtError::SignatureInvalid));
        }
        // A token of another issuer's key under our kid.
        let stranger = Signer::ed("ed-1");
        assert_eq!(check(&f.verifier, &stranger.token(&claims())), Err(JwtError::SignatureInvalid));
    }

    #[test]
    fn malformed_tokens() {
        let f = fixture();
        let token = f.ed.token(&claims());
        let duplicate_claims = r#"{"iss":"https://issuer.example","aud":"sluice-ingest","sub":"a","sub":"b","exp":1700000600}"#;
        let duplicate_alg = r#"{"alg":"EdDSA","alg":"none","kid":"ed-1"}"#;
        let header = f.ed.header().to_string();
        for (candidate, why) in [
            (format!("{token}.x.y"), "five segments (JWE)"),
            (format!("{token}."), "four segments"),
            (token.rsplit_once('.').unwrap().0.to_owned(), "two segments"),
            (with_segment(&token, 0, &format!("{}=", token.split('.').next().unwrap())), "padding"),
            (with_segment(&token, 1, "e30+"), "standard alphabet"),
            (f.ed.token_from_json(&header, duplicate_claims), "duplicate claim"),
            (f.ed.token_from_json(duplicate_alg, &claims().to_string()), "duplicate alg"),
            (f.ed.token_from_json(&header, &format!(r#"{{"x":{}1{}}}"#, "[".repeat(20), "]".repeat(20))), "deep claims"),
            (f.ed.token_from_json(&header, "[1]"), "claims not an object"),
        ] {
            assert_eq!(check(&f.verifier, &candidate), Err(JwtError::Malformed), "{why}");
        }
    }

    #[test]
    fn missing_bearer_and_oversize_token() {
        let f = fixture();
        let mut scratch = JwtScratch::new();
        for value in [&b""[..], b"Bearer ", b"Basic abc"] {
            assert_eq!(f.verifier.verify(value, NOW_MS, &mut scratch).err(), Some(JwtError::Missing));
        }
        let padding = "x".repeat(JWT_TOKEN_BYTES_MAX);
        let oversize = f.ed.token(&claims_with(json!({ "pad": padding })));
        assert_eq!(check(&f.verifier, &oversize), Err(JwtError::TooLarge));
        let fits = f.ed.token(&claims_with(json!({ "pad": "x".repeat(5000) })));
        assert!(fits.len() <= JWT_TOKEN_BYTES_MAX);
        assert_eq!(check(&f.verifier, &fits), Ok(()));
    }

    #[test]
    fn scopes_allow_event_types() {
        let f = fixture();
        let mut scratch = JwtScratch::new();
        let mut allows = |scopes: Value, event_type: &str| {
            let mut claims = claims_with(json!({"scope": null}));
            claims.as_object_mut().unwrap().extend(scopes.as_object().unwrap().clone());
            let token = f.ed.token(&claims);
            let header = format!("Bearer {token}");
            f.verifier.verify(header.as_bytes(), NOW_MS, &mut scratch).unwrap().scopes.allows_event_type(event_type.as_bytes())
        };
        assert!(allows(json!({"scope": "openid ingest:bet"}), "bet"));
        assert!(!allows(json!({"scope": "openid ingest:bet"}), "login"));
        assert!(!allows(json!({"scope": "ingest:bet"}), "be"));
        assert!(allows(json!({"scp": ["ingest:login", "ingest:bet"]}), "bet"));
        assert!(allows(json!({"scp": "ingest:login ingest:bet"}), "login"));
        assert!(allows(json!({"scope": "ingest:*"}), "anything.at_all"));
        assert!(!allows(json!({"scp": ["ingest:bet ingest:*"]}), "login"), "a scope with a space is dropped, not split");
        assert!(!allows(json!({"scope": "ingest:"}), ""));
        assert!(!allows(json!({"scope": "bet ingest ingest-bet"}), "bet"));
        assert!(!allows(json!({}), "bet"), "no scopes allow nothing");
    }

    #[test]
    fn reload_keeps_old_keys_when_a_file_breaks() {
        let f = fixture();
        let token = f.rsa.token(&claims());
        let main = f.dir.path().join("main.json");
        assert!(!f.verifier.jwks_changed());
        std::fs::write(&main, "{ not json").unwrap();
        assert!(f.verifier.jwks_changed());
        let reloaded = f.verifier.reload();
        assert_eq!(reloaded.errors.len(), 1);
        let message = reloaded.errors[0].to_string();
        assert!(message.contains(&main.display().to_string()), "{message}");
        assert_eq!(check(&reloaded.verifier, &token), Ok(()), "old keys kept");

        let rotated = Signer::rsa("rsa-2");
        mint::write_jwks(&main, &[&rotated]);
        let rotated_verifier = reloaded.verifier.reload();
        assert!(rotated_verifier.errors.is_empty());
        assert_eq!(check(&rotated_verifier.verifier, &token), Err(JwtError::KeyUnknown));
        assert_eq!(check(&rotated_verifier.verifier, &rotated.token(&claims())), Ok(()));
        assert!(!rotated_verifier.verifier.jwks_changed());
        assert_eq!(check(&f.verifier, &token), Ok(()), "the original verifier is unchanged");
    }

    /// A signature segment with base64 padding answered `token_signature_invalid` while
    /// docs/DECISIONS.md says every non-canonical segment is `token_malformed`.
    #[test]
    fn a_padded_signature_segment_is_malformed() {
        let f = fixture();
        let token = f.ec.token(&claims());
        let padded = format!("{token}==");
        let trailing_bits = {
            let (rest, last) = token.split_at(token.len() - 1);
            let flipped = if last == "A" { "B" } else { "A" };
            format!("{rest}{flipped}")
        };
        assert_eq!(check(&f.verifier, &padded), Err(JwtError::Malformed));
        assert!(matches!(check(&f.verifier, &trailing_bits), Err(JwtError::Malformed | JwtError::SignatureInvalid)));
        assert_eq!(check(&f.verifier, &token), Ok(()));
    }

    #[test]
    fn load_fails_on_a_broken_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, r#"{"keys":[{"kty":"oct","k":"AA"}]}"#).unwrap();
        let policy = JwtPolicy::new(vec![issuer(ISSUER, &Algorithm::ALL, path.clone())], 0).unwrap();
        let error = JwtVerifier::load(policy).err().unwrap();
        assert!(matches!(&error, JwtLoadError::NoUsableKeys { path: named, skipped: 1 } if named == &path), "{error}");
    }
}
