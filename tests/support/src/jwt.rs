//! Token minting for JWT tests: key pairs generated at test time with aws-lc-rs, their
//! public halves as a JWKS file, and compact tokens with chosen headers and claims,
//! including the forgeries a verifier must refuse (`alg: none`, HS256 keyed with the
//! RSA public key). Independent of sluice's verifier; the library's unit tests and
//! benches include this file too (`#[path]`), so there is one minting code.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

/// Base64url without padding, as JOSE writes every binary value.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Unix seconds now.
pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs() as i64
}

enum SignerKey {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A private key with its kid and JOSE algorithm.
pub struct Signer {
    pub kid: String,
    pub alg: &'static str,
    key: SignerKey,
}

impl Signer {
    /// RS256 with a fresh 2048-bit key.
    pub fn rsa(kid: &str) -> Signer {
        Signer::rsa_sized(kid, KeySize::Rsa2048)
    }

    pub fn rsa_sized(kid: &str, size: KeySize) -> Signer {
        let key = RsaKeyPair::generate(size).expect("RSA key generation");
        Signer { kid: kid.to_owned(), alg: "RS256", key: SignerKey::Rsa(key) }
    }

    /// ES256 with a fresh P-256 key.
    pub fn ec(kid: &str) -> Signer {
        let key = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key generation");
        Signer { kid: kid.to_owned(), alg: "ES256", key: SignerKey::Ec(key) }
    }

    /// EdDSA with a fresh Ed25519 key.
    pub fn ed(kid: &str) -> Signer {
        let key = Ed25519KeyPair::generate().expect("Ed25519 key generation");
        Signer { kid: kid.to_owned(), alg: "EdDSA", key: SignerKey::Ed(key) }
    }

    /// The public JWK (RFC 7517/7518/8037) with `kid`, `use: sig` and `alg`.
    pub fn jwk(&self) -> Value {
        let mut jwk = match &self.key {
            SignerKey::Rsa(key) => {
                let public = key.public_key();
                json!({"kty": "RSA", "n": b64(public.modulus().big_endian_without_leading_zero()),
                       "e": b64(public.exponent().big_endian_without_leading_zero())})
            }
            SignerKey::Ec(key) => {
                let point = key.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])})
            }
            SignerKey::Ed(key) => json!({"kty": "OKP", "crv": "Ed25519", "x": b64(key.public_key().as_ref())}),
        };
        jwk["kid"] = json!(self.kid);
        jwk["use"] = json!("sig");
        jwk["alg"] = json!(self.alg);
        jwk
    }

    /// The JWS signature of `message` (ES256 in JOSE `r || s` form).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.key {
            SignerKey::Rsa(key) => {
                let mut out = vec![0; key.public_modulus_len()];
                key.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut out).expect("RSA signing");
                out
            }
            SignerKey::Ec(key) => key.sign(&rng, message).expect("ECDSA signing").as_ref().to_vec(),
            SignerKey::Ed(key) => key.sign(message).as_ref().to_vec(),
        }
    }

    /// `{"alg":…,"typ":"JWT","kid":…}`.
    pub fn header(&self) -> Value {
        json!({"alg": self.alg, "typ": "JWT", "kid": self.kid})
    }

    /// A token with the usual header and these claims.
    pub fn token(&self, claims: &Value) -> String {
        self.token_with_header(&self.header(), claims)
    }

    pub fn token_with_header(&self, header: &Value, claims: &Value) -> String {
        self.token_from_json(&header.to_string(), &claims.to_string())
    }

    /// A token over header and claims JSON exactly as given (duplicate keys, escapes).
    pub fn token_from_json(&self, header_json: &str, claims_json: &str) -> String {
        let signing_input = format!("{}.{}", b64(header_json.as_bytes()), b64(claims_json.as_bytes()));
        format!("{signing_input}.{}", b64(&self.sign(signing_input.as_bytes())))
    }

    /// The RSA public key as PKCS#1 PEM, the text a key-confusion attacker feeds to
    /// HS256 as the "secret". Panics for other key types.
    pub fn rsa_public_key_pem(&self) -> String {
        let SignerKey::Rsa(key) = &self.key else { panic!("not an RSA signer") };
        let der = STANDARD.encode(key.public_key().as_ref());
        let lines: Vec<&str> = der.as_bytes().chunks(64).map(|line| std::str::from_utf8(line).expect("base64 is ASCII")).collect();
        format!("-----BEGIN RSA PUBLIC KEY-----\n{}\n-----END RSA PUBLIC KEY-----\n", lines.join("\n"))
    }
}

/// An unsecured JWS (RFC 7519 §6): `alg: none` and an empty signature.
pub fn unsigned_token(claims: &Value) -> String {
    let header = json!({"alg": "none", "typ": "JWT"});
    format!("{}.{}.", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()))
}

/// An HS256 token keyed with `secret`: with an RSA public key as the secret, the classic
/// key-confusion forgery against verifiers that take `alg` from the token.
pub fn hs256_token(secret: &[u8], kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": kid});
    let signing_input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), signing_input.as_bytes());
    format!("{signing_input}.{}", b64(tag.as_ref()))
}

/// `{"keys":[…]}`.
pub fn jwks_text(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

/// Writes the public keys of `signers` as a JWKS file.
pub fn write_jwks(path: &Path, signers: &[&Signer]) {
    let keys: Vec<Value> = signers.iter().map(|signer| signer.jwk()).collect();
    std::fs::write(path, jwks_text(&keys)).expect("write JWKS file");
}

/// An access token's claims, valid from one minute ago for ten minutes.
pub fn access_claims(issuer: &str, audience: &str, subject: &str, now_secs: i64, scope: &str) -> Value {
    json!({"iss": issuer, "aud": audience, "sub": subject, "iat": now_secs - 60, "nbf": now_secs - 60,
           "exp": now_secs + 600, "scope": scope, "jti": "t-1"})
}
