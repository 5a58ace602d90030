//! One issuer's JSON Web Key Set file (RFC 7517 §5), parsed once into aws-lc-rs public
//! keys, each pinned to the one algorithm its type allows.
//!
//! A key is *usable* when its type is RSA (2048..=4096 bits), EC P-256 or OKP Ed25519,
//! its `use` (if present) is `sig`, its `alg` (if present) is the algorithm its type
//! implies, and that algorithm is one of the issuer's. Other keys are skipped and
//! counted: real key sets mix signing keys with encryption keys (Keycloak publishes an
//! `RSA-OAEP` key next to its `RS256` one). A usable type with a broken value (bad
//! base64url, a point off the curve) is an error naming the file and the kid.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ED25519, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::GeneralPurpose;
use base64::engine::{DecodePaddingMode, GeneralPurposeConfig};
use serde::Deserialize;

use super::error::{JwtError, JwtLoadError};
use super::policy::Algorithm;
use crate::constants::{JWKS_FILE_BYTES_MAX, JWKS_KEYS_MAX, JWKS_KID_BYTES_MAX, JWT_RSA_BITS_MAX, JWT_RSA_BITS_MIN};

/// JWK members are base64url; some publishers pad them, which changes nothing here.
const JWK_BASE64: GeneralPurpose =
    GeneralPurpose::new(&URL_SAFE, GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent));

/// P-256 coordinate and Ed25519 public key length in bytes (RFC 7518 §6.2.1.2, RFC 8037 §2).
const COORDINATE_BYTES: usize = 32;

/// When a file was last seen and how long it was, to tell whether it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

/// The stamp of `path` now; `None` if it cannot be read.
pub(super) fn file_stamp(path: &Path) -> Option<FileStamp> {
    let metadata = std::fs::metadata(path).ok()?;
    Some(FileStamp { modified: metadata.modified().ok(), len: metadata.len() })
}

struct VerifyingKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: ParsedPublicKey,
}

/// The usable keys of one JWKS file.
pub(super) struct KeySet {
    keys: Vec<VerifyingKey>,
    skipped: usize,
    stamp: Option<FileStamp>,
}

/// One JWK as written; unknown members (`x5c`, `key_ops`, ...) are ignored.
#[derive(Deserialize)]
struct JwkText {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Deserialize)]
struct JwksText {
    keys: Vec<JwkText>,
}

impl KeySet {
    /// Reads and parses `path`, keeping the keys usable with `algorithms`. Fails on an
    /// unreadable or oversized file, invalid JSON, more than `JWKS_KEYS_MAX` keys, a
    /// broken usable key, a repeated kid, or no usable key at all.
    pub fn load(path: &Path, algorithms: &[Algorithm]) -> Result<KeySet, JwtLoadError> {
        let stamp = file_stamp(path);
        let bytes = read_bounded(path)?;
        let text: JwksText = serde_json::from_slice(&bytes).map_err(|source| JwtLoadError::Syntax { path: path.to_owned(), source })?;
        if text.keys.len() > JWKS_KEYS_MAX {
            return Err(JwtLoadError::TooManyKeys { path: path.to_owned(), count: text.keys.len(), max: JWKS_KEYS_MAX });
        }
        let mut set = KeySet { keys: Vec::with_capacity(text.keys.len()), skipped: 0, stamp };
        for (index, jwk) in text.keys.into_iter().enumerate() {
            let invalid =
                |problem| JwtLoadError::KeyInvalid { path: path.to_owned(), index, kid: jwk.kid.clone().unwrap_or_default(), problem };
            let Some(key) = usable_key(&jwk, algorithms).map_err(invalid)? else {
                set.skipped += 1;
                continue;
            };
            if key.kid.is_some() && set.keys.iter().any(|other| other.kid == key.kid) {
                return Err(JwtLoadError::DuplicateKid { path: path.to_owned(), kid: jwk.kid.unwrap_or_default() });
            }
            set.keys.push(key);
        }
        if set.keys.is_empty() {
            return Err(JwtLoadError::NoUsableKeys { path: path.to_owned(), skipped: set.skipped });
        }
        Ok(set)
    }

    /// The key for a token with this `kid` and `alg`. Without a kid, the key set must
    /// hold exactly one key of the algorithm. A kid that names a key of another type is
    /// `AlgorithmNotAllowed` (an `ES256` token cannot be checked with an RSA key).
    pub fn select(&self, kid: Option<&str>, algorithm: Algorithm) -> Result<&ParsedPublicKey, JwtError> {
        let key = match kid {
            Some(kid) => self.keys.iter().find(|key| key.kid.as_deref() == Some(kid)).ok_or(JwtError::KeyUnknown)?,
            None => {
                let mut of_algorithm = self.keys.iter().filter(|key| key.algorithm == algorithm);
                match (of_algorithm.next(), of_algorithm.next()) {
                    (Some(key), None) => key,
                    _ => return Err(JwtError::KeyUnknown),
                }
            }
        };
        if key.algorithm != algorithm {
            return Err(JwtError::AlgorithmNotAllowed);
        }
        Ok(&key.key)
    }

    /// Usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Keys of the file that were skipped as unusable.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// The file's stamp when it was read.
    pub fn stamp(&self) -> Option<FileStamp> {
        self.stamp
    }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, JwtLoadError> {
    let read_error = |source| JwtLoadError::Read { path: path.to_owned(), source };
    let file = File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    // One byte past the limit tells an oversized file from one of exactly the limit.
    file.take(JWKS_FILE_BYTES_MAX + 1).read_to_end(&mut bytes).map_err(read_error)?;
    let len = bytes.len() as u64;
    if len > JWKS_FILE_BYTES_MAX {
        return Err(JwtLoadError::FileTooLarge { path: PathBuf::from(path), bytes: len, max_bytes: JWKS_FILE_BYTES_MAX });
    }
    Ok(bytes)
}

/// The key `jwk` describes if it is usable with `algorithms`, `None` if it is to be
/// skipped, or why a key of a usable type is broken.
fn usable_key(jwk: &JwkText, algorithms: &[Algorithm]) -> Result<Option<VerifyingKey>, &'static str> {
    let algorithm = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => Algorithm::Rs256,
        ("EC", Some("P-256")) => Algorithm::Es256,
        ("OKP", Some("Ed25519")) => Algorithm::EdDsa,
        _ => return Ok(None),
    };
    let not_for_signing = jwk.usage.as_deref().is_some_and(|usage| usage != "sig");
    let other_algorithm = jwk.alg.as_deref().is_some_and(|alg| alg != algorithm.name());
    if not_for_signing || other_algorithm || !algorithms.contains(&algorithm) {
        return Ok(None);
    }
    if jwk.kid.as_ref().is_some_and(|kid| kid.is_empty() || kid.len() > JWKS_KID_BYTES_MAX) {
        return Err("kid must be 1 to 256 bytes");
    }
    let key = match algorithm {
        Algorithm::Rs256 => match rsa_key(jwk)? {
            Some(key) => key,
            None => return Ok(None),
        },
        Algorithm::Es256 => {
            let mut point = vec![0x04];
            point.extend_from_slice(&coordinate(jwk.x.as_deref())?);
            point.extend_from_slice(&coordinate(jwk.y.as_deref())?);
            ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).map_err(|_| "x, y is not a point on P-256")?
        }
        Algorithm::EdDsa => ParsedPublicKey::new(&ED25519, coordinate(jwk.x.as_deref())?).map_err(|_| "x is not an Ed25519 public key")?,
    };
    Ok(Some(VerifyingKey { kid: jwk.kid.clone(), algorithm, key }))
}

/// The RSA key of `n` and `e`; `None` (skipped) if the modulus is outside
/// `JWT_RSA_BITS_MIN..=JWT_RSA_BITS_MAX`.
fn rsa_key(jwk: &JwkText) -> Result<Option<ParsedPublicKey>, &'static str> {
    let n = unsigned(jwk.n.as_deref()).ok_or("n must be a non-zero base64url integer")?;
    let e = unsigned(jwk.e.as_deref()).ok_or("e must be a non-zero base64url integer")?;
    let bits = n.len() * 8 - n[0].leading_zeros() as usize;
    if !(JWT_RSA_BITS_MIN..=JWT_RSA_BITS_MAX).contains(&bits) {
        return Ok(None);
    }
    let components = RsaPublicKeyComponents { n: &n[..], e: &e[..] };
    components.to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256).map(Some).map_err(|_| "n, e is not an RSA public key")
}

/// A base64url big-endian integer without its leading zero bytes; `None` if absent,
/// not base64url, or zero.
fn unsigned(text: Option<&str>) -> Option<Vec<u8>> {
    let mut bytes = JWK_BASE64.decode(text?).ok()?;
    let leading_zeros = bytes.iter().position(|&byte| byte != 0)?;
    bytes.drain(..leading_zeros);
    Some(bytes)
}

fn coordinate(text: Option<&str>) -> Result<[u8; COORDINATE_BYTES], &'static str> {
    let bytes = text.and_then(|text| JWK_BASE64.decode(text).ok()).ok_or("x and y must be base64url")?;
    bytes.try_into().map_err(|_| "x and y must decode to 32 bytes")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use sluice_test_support::jwt::{Signer, b64, jwks_text};

    fn load(text: &str) -> Result<KeySet, JwtLoadError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, text).unwrap();
        KeySet::load(&path, &Algorithm::ALL)
    }

    #[test]
    fn usable_keys_of_each_type_and_unknown_ones_skipped() {
        let signers = [Signer::rsa("r"), Signer::ec("e"), Signer::ed("d")];
        let mut keys: Vec<_> = signers.iter().map(Signer::jwk).collect();
        keys.push(json!({"kty":"oct","k":"c2VjcmV0","kid":"h"}));
        keys.push(json!({"kty":"EC","crv":"P-384","x":"AA","y":"AA","kid":"p384"}));
        keys.push(json!({"kty":"OKP","crv":"X25519","x":"AA","kid":"x"}));
        let mut encryption = signers[0].jwk();
        encryption["use"] = json!("enc");
        encryption["kid"] = json!("r-enc");
        keys.push(encryption);
        let mut pss = signers[0].jwk();
        pss["alg"] = json!("PS256");
        pss["kid"] = json!("r-pss");
        keys.push(pss);
        let set = load(&jwks_text(&keys)).unwrap();
        assert_eq!((set.len(), set.skipped()), (3, 5));
        assert!(set.select(Some("r"), Algorithm::Rs256).is_ok());
        assert!(set.select(Some("e"), Algorithm::Es256).is_ok());
        assert!(set.select(Some("d"), Algorithm::EdDsa).is_ok());
        assert!(matches!(set.select(Some("r-enc"), Algorithm::Rs256), Err(JwtError::KeyUnknown)));
        assert!(matches!(set.select(Some("e"), Algorithm::Rs256), Err(JwtError::AlgorithmNotAllowed)));
        assert!(set.select(None, Algorithm::EdDsa).is_ok(), "one key of the algorithm: no kid needed");
    }

    #[test]
    fn missing_kid_needs_exactly_one_key_of_the_algorithm() {
        let set = load(&jwks_text(&[Signer::ed("a").jwk(), Signer::ed("b").jwk()])).unwrap();
        assert!(matches!(set.select(None, Algorithm::EdDsa), Err(JwtError::KeyUnknown)));
        assert!(matches!(set.select(None, Algorithm::Rs256), Err(JwtError::KeyUnknown)));
    }

    #[test]
    fn rsa_outside_2048_to_4096_bits_is_skipped() {
        let mut small = Signer::rsa("small").jwk();
        // A 1024-bit modulus: half of a 2048-bit one.
        let n = JWK_BASE64.decode(small["n"].as_str().unwrap()).unwrap();
        small["n"] = json!(b64(&n[..128]));
        let error = load(&jwks_text(&[small])).err().unwrap();
        assert!(matches!(error, JwtLoadError::NoUsableKeys { skipped: 1, .. }), "{error}");
    }

    #[test]
    fn broken_files_and_keys_name_the_problem() {
        let good = Signer::ec("k").jwk();
        let mut off_curve = good.clone();
        off_curve["y"] = off_curve["x"].clone();
        let mut short = good.clone();
        short["x"] = json!("AAAA");
        let mut no_n = Signer::rsa("k").jwk();
        no_n.as_object_mut().unwrap().remove("n");
        for (text, expected) in [
            ("{", "not a JSON Web Key Set"),
            (r#"{"keys":{}}"#, "not a JSON Web Key Set"),
            (r#"{"keys":[{"kty":"RSA","kty":"EC"}]}"#, "not a JSON Web Key Set"),
            (&jwks_text(&[good.clone(), good.clone()]), "kid \"k\" appears more than once"),
            (&jwks_text(&[off_curve]), "not a point on P-256"),
            (&jwks_text(&[short]), "32 bytes"),
            (&jwks_text(&[no_n]), "n must be"),
            (r#"{"keys":[]}"#, "no key usable"),
        ] {
            let error = load(text).err().unwrap().to_string();
            assert!(error.contains("jwks.json") && error.contains(expected), "{error}");
        }
        let many: Vec<_> = (0..=JWKS_KEYS_MAX).map(|i| json!({"kty":"oct","kid":i.to_string()})).collect();
        assert!(matches!(load(&jwks_text(&many)), Err(JwtLoadError::TooManyKeys { .. })));
        let padding = " ".repeat(JWKS_FILE_BYTES_MAX as usize);
        assert!(matches!(load(&format!("{}{padding}", jwks_text(&[good]))), Err(JwtLoadError::FileTooLarge { .. })));
        assert!(matches!(KeySet::load(Path::new("/nonexistent/jwks.json"), &Algorithm::ALL), Err(JwtLoadError::Read { .. })));
    }

    #[test]
    fn keys_outside_the_issuer_algorithms_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, jwks_text(&[Signer::rsa("r").jwk(), Signer::ed("d").jwk()])).unwrap();
        let set = KeySet::load(&path, &[Algorithm::EdDsa]).unwrap();
        assert_eq!((set.len(), set.skipped()), (1, 1));
        assert!(matches!(set.select(Some("r"), Algorithm::Rs256), Err(JwtError::KeyUnknown)));
    }
}
