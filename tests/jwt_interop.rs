//! Interoperability with another implementation of JWT (RFC 7519): tokens minted by
//! PyJWT, the most used Python library, verify with sluice's verifier.
//!
//! Reproduce: `cargo test --test jwt_interop` (the test support fetches PyJWT and
//! `cryptography` into its venv; see tests/support/python-requirements.txt).

use std::path::PathBuf;

use serde_json::Value;
use sluice::perimeter::jwt::{Algorithm, IssuerPolicy, JwtPolicy, JwtScratch, JwtVerifier};
use sluice_test_support::jwt as mint;
use sluice_test_support::python;

const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "sluice-ingest";
const LEEWAY_SECS: u64 = 60;

fn issuer(name: &str, algorithms: &[Algorithm], jwks_file: PathBuf) -> IssuerPolicy {
    IssuerPolicy { issuer: name.to_owned(), audience: AUDIENCE.to_owned(), algorithms: algorithms.to_vec(), jwks_file }
}

/// PyJWT (with `cryptography`) mints one token per algorithm and exports the JWKS;
/// sluice must accept them. The packages come from the test support's venv; without
/// them the test fails, it never skips.
#[test]
fn tokens_minted_by_pyjwt_verify() {
    let output = pyjwt_tokens();
    let dir = tempfile::tempdir().unwrap();
    let jwks_file = dir.path().join("pyjwt.json");
    std::fs::write(&jwks_file, output["jwks"].to_string()).unwrap();
    let policy = JwtPolicy::new(vec![issuer(ISSUER, &Algorithm::ALL, jwks_file)], LEEWAY_SECS).unwrap();
    let verifier = JwtVerifier::load(policy).unwrap();
    let mut scratch = JwtScratch::new();
    let now_ms = mint::now_secs() * 1000;
    for algorithm in Algorithm::ALL {
        let token = output["tokens"][algorithm.name()].as_str().unwrap();
        let header = format!("Bearer {token}");
        let verified = verifier.verify(header.as_bytes(), now_ms, &mut scratch);
        let verified = verified.unwrap_or_else(|error| panic!("PyJWT {} token: {error}", algorithm.name()));
        assert_eq!(verified.subject, "partner-ü");
        assert!(verified.scopes.allows_event_type(b"bet") && !verified.scopes.allows_event_type(b"kyc"));
    }
}

const PYJWT_SCRIPT: &str = r#"
import json, sys, time
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
iss, aud = sys.argv[1], sys.argv[2]
now = time.time()
keys = [("py-rsa", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048), RSAAlgorithm),
        ("py-ec", "ES256", ec.generate_private_key(ec.SECP256R1()), ECAlgorithm),
        ("py-ed", "EdDSA", ed25519.Ed25519PrivateKey.generate(), OKPAlgorithm)]
jwks, tokens = [], {}
for kid, alg, key, algorithm in keys:
    jwk = json.loads(algorithm.to_jwk(key.public_key()))
    jwk.update(kid=kid, use="sig", alg=alg)
    jwks.append(jwk)
    claims = {"iss": iss, "aud": [aud, "other"], "sub": "partner-\u00fc", "iat": now, "nbf": int(now) - 5,
              "exp": now + 300.5, "scp": ["ingest:bet", "ingest:login"], "client_id": "c"}
    tokens[alg] = jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})
print(json.dumps({"jwks": {"keys": jwks}, "tokens": tokens}))
"#;

/// The script's output: the JWKS and one token per algorithm.
fn pyjwt_tokens() -> Value {
    let stdout = python::run(PYJWT_SCRIPT, &[ISSUER, AUDIENCE]);
    serde_json::from_str(&stdout).expect("the script prints JSON")
}
