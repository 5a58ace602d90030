//! JWT bearer auth over real sockets (OAuth2 client credentials): a good token per
//! algorithm is accepted for its partner; expired, wrong-audience, `alg: none` and
//! HS256-signed-with-the-public-key tokens are 401; a scope that does not cover the
//! event type is 403; a JWKS file that changes on disk is picked up. Nothing refused is
//! stored.

use std::path::Path;

use sluice_test_support::jwt::{Signer, access_claims, hs256_token, unsigned_token, write_jwks};
use sluice_test_support::*;

const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "sluice-ingest";

fn jwt_setup(jwks: &Path) -> Setup {
    let extra_config = format!(
        "\n[auth.jwt]\nleeway_secs = 30\n\n[[auth.jwt.issuers]]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
         algorithms = [\"RS256\", \"ES256\", \"EdDSA\"]\njwks_file = {:?}\n",
        jwks.display().to_string()
    );
    let extra_keys = "[[partners]]\nname = \"crm\"\njwt_subjects = [\"crm-client\"]\nevent_types = [\"bet\", \"deposit\"]\n".to_owned();
    Setup { extra_config, extra_keys, ..Setup::default() }
}

fn bearer(token: &str, body: &[u8]) -> Vec<u8> {
    post("/v1/events", Some("application/json"), &[("Authorization".into(), format!("Bearer {token}"))], body)
}

#[test]
fn tokens_are_verified_pinned_and_scoped() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let (rsa, ec, ed) = (Signer::rsa("rsa-1"), Signer::ec("ec-1"), Signer::ed("ed-1"));
    write_jwks(&jwks, &[&rsa, &ec, &ed]);
    let sandbox = Sandbox::new(jwt_setup(&jwks));
    let server = sandbox.start();
    let mut client = server.client();
    let prefix = unique_prefix();
    let now = sluice_test_support::jwt::now_secs();
    let good = access_claims(ISSUER, AUDIENCE, "crm-client", now, "ingest:bet ingest:deposit");
    let mut accepted = Vec::new();
    for (signer, name) in [(&rsa, "rs256"), (&ec, "es256"), (&ed, "eddsa")] {
        let body = typed_event(&format!("{prefix}-{name}"), "u_jwt", "bet");
        expect_accepted(&client.request(&bearer(&signer.token(&good), body.as_bytes())));
        accepted.push(format!("{prefix}-{name}"));
    }
    let body = typed_event(&format!("{prefix}-refused"), "u_jwt", "bet");
    let mut expired = good.clone();
    expired["exp"] = (now - 3600).into();
    expired["iat"] = (now - 7200).into();
    expect_error(&client.request(&bearer(&rsa.token(&expired), body.as_bytes())), 401, "token_expired");
    let wrong_audience = access_claims(ISSUER, "someone-else", "crm-client", now, "ingest:bet");
    expect_error(&client.request(&bearer(&rsa.token(&wrong_audience), body.as_bytes())), 401, "token_audience_mismatch");
    let none = unsigned_token(&good);
    assert_eq!(client.request(&bearer(&none, body.as_bytes())).status, 401, "alg none");
    // The classic confusion: HS256 keyed with the RSA public key the server trusts.
    let confused = hs256_token(rsa.rsa_public_key_pem().as_bytes(), &rsa.kid, &good);
    expect_error(&client.request(&bearer(&confused, body.as_bytes())), 401, "token_algorithm_not_allowed");
    let stranger = access_claims(ISSUER, AUDIENCE, "nobody", now, "ingest:*");
    expect_error(&client.request(&bearer(&rsa.token(&stranger), body.as_bytes())), 401, "token_invalid");
    // Scopes: the token covers bet and deposit, the partner bet and deposit. A win is
    // outside both; a deposit with a bet-only token is outside the token's.
    let win = typed_event(&format!("{prefix}-win"), "u_jwt", "win");
    expect_error(&client.request(&bearer(&rsa.token(&good), win.as_bytes())), 403, "event_type_not_allowed");
    let bet_only = access_claims(ISSUER, AUDIENCE, "crm-client", now, "ingest:bet");
    let deposit = typed_event(&format!("{prefix}-deposit"), "u_jwt", "deposit");
    expect_error(&client.request(&bearer(&rsa.token(&bet_only), deposit.as_bytes())), 403, "event_type_not_allowed");
    let mut stored: Vec<String> = sandbox.tail().iter().map(TailLine::event_id).collect();
    stored.sort();
    accepted.sort();
    assert_eq!(stored, accepted);
}

#[test]
fn a_rotated_jwks_file_is_picked_up_and_a_broken_one_keeps_the_old_keys() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let (old, new) = (Signer::ed("old"), Signer::ed("new"));
    write_jwks(&jwks, &[&old]);
    let sandbox = Sandbox::new(jwt_setup(&jwks));
    let server = sandbox.start();
    let mut client = server.client();
    let prefix = unique_prefix();
    let claims = access_claims(ISSUER, AUDIENCE, "crm-client", sluice_test_support::jwt::now_secs(), "ingest:*");
    expect_accepted(&client.request(&bearer(&old.token(&claims), typed_event(&format!("{prefix}-1"), "u_jwt", "bet").as_bytes())));
    expect_error(
        &client.request(&bearer(&new.token(&claims), typed_event(&format!("{prefix}-2"), "u_jwt", "bet").as_bytes())),
        401,
        "token_key_unknown",
    );
    std::fs::write(&jwks, "{ not json").unwrap();
    write_jwks(&jwks, &[&old, &new]);
    // Housekeeping polls the file every 10 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(25);
    let mut status = 0;
    while std::time::Instant::now() < deadline {
        status = client.request(&bearer(&new.token(&claims), typed_event(&format!("{prefix}-2"), "u_jwt", "bet").as_bytes())).status;
        if status == 202 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert_eq!(status, 202, "the new key was not picked up");
    std::fs::write(&jwks, "{ broken").unwrap();
    std::thread::sleep(std::time::Duration::from_secs(11));
    expect_accepted(&client.request(&bearer(&old.token(&claims), typed_event(&format!("{prefix}-3"), "u_jwt", "bet").as_bytes())));
    assert!(server.stderr_text().contains("JWKS reload"), "the broken file is reported: {}", server.stderr_text());
}
