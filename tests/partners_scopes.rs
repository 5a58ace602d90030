//! Partners and key scopes (the article's KMS policy): a valid signature from a key whose
//! partner may not send an event type is 403 `event_type_not_allowed`; an address outside
//! the partner's allow-list is 403 `ip_not_allowed`; a partner that must use mTLS is 403
//! over plain TCP; a policy that does not allow HMAC-SHA256 refuses HMAC with 401. Every
//! refusal stores nothing.

use sluice_test_support::*;

const WALLET_KID: &str = "wallet-key";
const WALLET_SECRET: [u8; 32] = *b"wallet-partner-secret-32-bytes!!";
const FENCED_KID: &str = "fenced-key";
const CERT_KID: &str = "cert-key";

fn partner_ring() -> String {
    format!(
        "[[keys]]\nkid = \"{WALLET_KID}\"\nsecret = \"{}\"\npartner = \"wallet\"\n\n\
         [[keys]]\nkid = \"{FENCED_KID}\"\nsecret = \"{}\"\npartner = \"fenced\"\n\n\
         [[keys]]\nkid = \"{CERT_KID}\"\nsecret = \"{}\"\npartner = \"certonly\"\n\n\
         [[partners]]\nname = \"wallet\"\nevent_types = [\"deposit\", \"withdrawal\"]\n\n\
         [[partners]]\nname = \"fenced\"\nallow_cidrs = [\"10.0.0.0/8\", \"192.0.2.0/24\"]\n\n\
         [[partners]]\nname = \"certonly\"\nclient_cert = \"required\"\ntls_identities = [\"certonly.prod\"]\n",
        whsec(&WALLET_SECRET),
        whsec(&WALLET_SECRET),
        whsec(&WALLET_SECRET),
    )
}

fn signed_as(kid: &str, path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    post(path, Some(content_type), &signing_headers(kid, &WALLET_SECRET, &now_secs().to_string(), body), body)
}

#[test]
fn event_types_outside_the_partner_scope_are_forbidden() {
    let sandbox = Sandbox::new(Setup { extra_keys: partner_ring(), ..Setup::default() });
    let server = sandbox.start();
    let mut client = server.client();
    let prefix = unique_prefix();
    let bet = typed_event(&format!("{prefix}-bet"), "u_scope", "bet");
    expect_error(&client.request(&signed_as(WALLET_KID, "/v1/events", "application/json", bet.as_bytes())), 403, "event_type_not_allowed");
    let deposit = typed_event(&format!("{prefix}-deposit"), "u_scope", "deposit");
    expect_accepted(&client.request(&signed_as(WALLET_KID, "/v1/events", "application/json", deposit.as_bytes())));
    // In a batch the out-of-scope lines are rejected one by one; the others are stored.
    let lines = [typed_event(&format!("{prefix}-b1"), "u_scope", "withdrawal"), typed_event(&format!("{prefix}-b2"), "u_scope", "win")];
    let body = lines.join("\n");
    let response = client.request(&signed_as(WALLET_KID, "/v1/events/batch", "application/x-ndjson", body.as_bytes()));
    assert_eq!(response.status, 200, "{}", response.describe());
    let json = response.json();
    assert_eq!(json.get("accepted").and_then(Json::as_u64), Some(1), "{}", response.describe());
    assert_eq!(json.get("rejected").and_then(Json::as_u64), Some(1), "{}", response.describe());
    let results = json.get("results").and_then(Json::as_array).expect("results");
    let code = results[1].get("error").and_then(|e| e.get("code")).and_then(Json::as_str);
    assert_eq!(code, Some("event_type_not_allowed"));
    // The undeclared partner of the test key is unrestricted (rings without partners work).
    expect_accepted(&client.request(&signed_event(bet.as_bytes())));
    let mut stored: Vec<String> = sandbox.tail().iter().map(TailLine::event_id).collect();
    stored.sort();
    assert_eq!(stored, [format!("{prefix}-b1"), format!("{prefix}-bet"), format!("{prefix}-deposit")]);
}

#[test]
fn allow_lists_and_required_client_certificates_are_enforced() {
    let sandbox = Sandbox::new(Setup { extra_keys: partner_ring(), ..Setup::default() });
    let server = sandbox.start();
    let mut client = server.client();
    let prefix = unique_prefix();
    let fenced = typed_event(&format!("{prefix}-fenced"), "u_scope", "bet");
    expect_error(&client.request(&signed_as(FENCED_KID, "/v1/events", "application/json", fenced.as_bytes())), 403, "ip_not_allowed");
    let cert = typed_event(&format!("{prefix}-cert"), "u_scope", "bet");
    let response = client.request(&signed_as(CERT_KID, "/v1/events", "application/json", cert.as_bytes()));
    expect_error(&response, 403, "client_certificate_required");
    assert!(sandbox.tail().is_empty(), "a refused request stored something");
}

#[test]
fn a_policy_without_hmac_refuses_signatures() {
    let policy = "[policy]\nallow_algos = []\n".to_owned();
    let sandbox = Sandbox::new(Setup { extra_keys: policy, ..Setup::default() });
    let server = sandbox.start();
    let mut client = server.client();
    let body = event(&format!("{}-nohmac", unique_prefix()), "u");
    expect_error(&client.request(&signed_event(body.as_bytes())), 401, "algorithm_not_allowed");
    assert!(sandbox.tail().is_empty());
}

#[test]
fn bad_partner_tables_are_refused_at_start() {
    let sandbox =
        Sandbox::new(Setup { extra_keys: "[[partners]]\nname = \"x\"\nallow_cidrs = [\"10.0.0.0/33\"]\n".into(), ..Setup::default() });
    let serve =
        std::process::Command::new(bin()).args(["serve", "--config", sandbox.config.to_str().unwrap()]).output().expect("run sluice serve");
    assert_eq!(serve.status.code(), Some(2), "serve with a bad partner table: {}", String::from_utf8_lossy(&serve.stderr));
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert!(stderr.contains("allow_cidrs"), "the error names the field: {stderr}");
}
