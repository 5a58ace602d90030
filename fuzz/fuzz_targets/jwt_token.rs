//! `jwt::JwtVerifier::verify` with a fixed policy (issuer `https://issuer.example` with
//! RS256, ES256 and EdDSA keys; issuer `https://ed.example` with the same Ed25519 key),
//! its JWKS files written once at the first call. The first byte picks what the rest is:
//! `% 3 == 0` the raw `Authorization` value; `1` a JOSE header and a claims set split at
//! the first NUL; `2` a claims set under a fixed EdDSA header. For 1 and 2 the target
//! base64url-encodes the JSON and signs it with the Ed25519 key, so the strict JSON,
//! header and claims parsers (private to `src/perimeter/jwt/`) and every check after the
//! signature see fuzzed input. Checks: no panic; whatever verifies is a token serde_json
//! reads the same way: `alg` EdDSA, a signature the Ed25519 key verifies, the issuer,
//! audience, expiry, subject and scopes the claims hold.
#![no_main]

#[allow(dead_code)]
#[path = "../../tests/support/src/jwt.rs"]
mod mint;

use std::cell::RefCell;
use std::sync::OnceLock;

use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use mint::Signer;
use serde_json::Value;
use sluice::perimeter::jwt::{Algorithm, IssuerPolicy, JwtError, JwtPolicy, JwtScratch, JwtVerifier, Verified};

const NOW_MS: i64 = 1_761_305_841_000;
const LEEWAY_SECS: u64 = 60;
const FIXED_HEADER: &[u8] = br#"{"alg":"EdDSA","typ":"JWT","kid":"ed-1"}"#;

struct Fixture {
    verifier: JwtVerifier,
    ed: Signer,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

thread_local! {
    static SCRATCH: RefCell<JwtScratch> = RefCell::new(JwtScratch::new());
}

/// Key pairs generated once per process; the public halves go to two JWKS files in a
/// per-process temporary directory.
fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("sluice-fuzz-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the JWKS directory");
        let (rsa, ec, ed) = (Signer::rsa("rsa-1"), Signer::ec("ec-1"), Signer::ed("ed-1"));
        mint::write_jwks(&dir.join("main.json"), &[&rsa, &ec, &ed]);
        mint::write_jwks(&dir.join("ed.json"), &[&ed]);
        let issuer = |name: &str, audience: &str, algorithms: &[Algorithm], file: &str| IssuerPolicy {
            issuer: name.to_owned(),
            audience: audience.to_owned(),
            algorithms: algorithms.to_vec(),
            jwks_file: dir.join(file),
        };
        let issuers = vec![
            issuer("https://issuer.example", "sluice-ingest", &Algorithm::ALL, "main.json"),
            issuer("https://ed.example", "ed-audience", &[Algorithm::EdDsa], "ed.json"),
        ];
        let policy = JwtPolicy::new(issuers, LEEWAY_SECS).expect("fuzz policy is valid");
        Fixture { verifier: JwtVerifier::load(policy).expect("fuzz JWKS files load"), ed }
    })
}

fn verify(authorization: &[u8], check: impl FnOnce(&Verified<'_>)) -> Result<(), JwtError> {
    SCRATCH.with_borrow_mut(|scratch| fixture().verifier.verify(authorization, NOW_MS, scratch).map(|verified| check(&verified)))
}

/// `Bearer <header>.<claims>.<signature>`, signed by the Ed25519 key or with an empty
/// signature.
fn token(header: &[u8], claims: &[u8], signed: bool) -> Vec<u8> {
    let signing_input = format!("{}.{}", mint::b64(header), mint::b64(claims));
    let signature = if signed { mint::b64(&fixture().ed.sign(signing_input.as_bytes())) } else { String::new() };
    format!("Bearer {signing_input}.{signature}").into_bytes()
}

/// What serde_json and aws-lc read in a token the verifier accepted must agree with it.
fn check_accepted(authorization: &[u8], verified: &Verified<'_>) {
    let value = authorization.trim_ascii();
    assert!(value[..6].eq_ignore_ascii_case(b"bearer") && matches!(value[6], b' ' | b'\t'), "scheme of an accepted value");
    let token = value[7..].trim_ascii();
    let segments: Vec<&[u8]> = token.split(|&b| b == b'.').collect();
    let [header, claims, signature] = segments[..] else { panic!("accepted {} segments", segments.len()) };
    let decode = |segment: &[u8]| URL_SAFE_NO_PAD.decode(segment).expect("an accepted segment is base64url");
    let header: Value = serde_json::from_slice(&decode(header)).expect("an accepted header is JSON");
    assert_eq!(header["alg"], "EdDSA", "accepted a token the fuzzer cannot have signed");
    let public_key = URL_SAFE_NO_PAD.decode(fixture().ed.jwk()["x"].as_str().expect("x")).expect("x is base64url");
    let signing_input = &token[..token.iter().rposition(|&b| b == b'.').expect("two dots")];
    UnparsedPublicKey::new(&ED25519, public_key).verify(signing_input, &decode(signature)).expect("accepted a bad signature");

    let claims: Value = serde_json::from_slice(&decode(claims)).expect("accepted claims are JSON");
    let issuer = &fixture().verifier.policy().issuers()[verified.issuer_index];
    assert_eq!(claims["iss"], issuer.issuer.as_str());
    let audience = issuer.audience.as_str();
    assert!(claims["aud"] == audience || claims["aud"].as_array().is_some_and(|list| list.iter().any(|aud| aud == audience)));
    let exp = &claims["exp"];
    let expires_at_ms = exp.as_i64().map_or_else(|| (exp.as_f64().expect("exp is a number") * 1000.0).floor() as i64, |secs| secs * 1000);
    assert_eq!(verified.expires_at_ms, expires_at_ms);
    assert!(NOW_MS < expires_at_ms.saturating_add(LEEWAY_SECS as i64 * 1000), "accepted an expired token");
    let subject = ["sub", "client_id", "azp"].iter().find_map(|name| claims[name].as_str().filter(|text| !text.is_empty()));
    assert_eq!(subject, Some(verified.subject));
    let listed = |name: &str, scope: &str| match &claims[name] {
        Value::String(list) => list.split(' ').any(|token| token == scope),
        Value::Array(items) => items.iter().any(|item| item == scope),
        _ => false,
    };
    for scope in verified.scopes.iter() {
        assert!(scope.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e)), "scope {scope:?}");
        assert!(listed("scope", scope) || listed("scp", scope), "scope {scope:?} is in neither scope nor scp");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let (header, claims) = match mode % 3 {
        0 => {
            let _ = verify(rest, |verified| check_accepted(rest, verified));
            return;
        }
        1 => match rest.iter().position(|&b| b == 0) {
            Some(nul) => (&rest[..nul], &rest[nul + 1..]),
            None => (rest, &[][..]),
        },
        _ => (FIXED_HEADER, rest),
    };
    // Unsigned first: only a token that gets as far as the signature is signed and tried again.
    if verify(&token(header, claims, false), |_| panic!("an unsigned token verified")) == Err(JwtError::SignatureInvalid) {
        let signed = token(header, claims, true);
        let _ = verify(&signed, |verified| check_accepted(&signed, verified));
    }
});
