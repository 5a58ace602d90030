//! The client-certificate identity of an mTLS connection maps to a partner (docs/SECURITY.md):
//! with `client_cert = "sufficient"` the certificate alone authenticates; with
//! `"required"` the partner's signed requests must come over its certificate; a
//! certificate of one partner with another partner's credentials is 403
//! `partner_mismatch`; a verified certificate that maps to nobody authenticates nothing.

use std::path::Path;

use sluice_test_support::pki;
use sluice_test_support::pki::Authority;
use sluice_test_support::*;

const STRICT_KID: &str = "strict-key";
const STRICT_SECRET: [u8; 32] = *b"strict-partner-secret-32-bytes!!";

fn partners() -> String {
    format!(
        "[[keys]]\nkid = \"{STRICT_KID}\"\nsecret = \"{}\"\npartner = \"strict\"\n\n\
         [[partners]]\nname = \"gateway\"\nclient_cert = \"sufficient\"\ntls_identities = [\"partner-gw\"]\nevent_types = [\"bet\"]\n\n\
         [[partners]]\nname = \"strict\"\nclient_cert = \"required\"\ntls_identities = [\"partner-strict\"]\n",
        whsec(&STRICT_SECRET)
    )
}

fn tls_lines(dir: &Path) -> String {
    let file = |name: &str| dir.join(name).display().to_string();
    format!(
        "cert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\nclient_auth = \"optional\"\ncrl_files = [{:?}]\n",
        file("server.pem"),
        file("server.key"),
        file("clients-ca.pem"),
        file("clients.crl")
    )
}

fn unsigned(body: &str) -> Vec<u8> {
    post("/v1/events", Some("application/json"), &[], body.as_bytes())
}

fn signed_as(kid: &str, secret: &[u8], body: &str) -> Vec<u8> {
    post("/v1/events", Some("application/json"), &signing_headers(kid, secret, &now_secs().to_string(), body.as_bytes()), body.as_bytes())
}

#[test]
fn client_certificates_name_partners() {
    let dir = tempfile::Builder::new().prefix("sluice-pki-").tempdir().unwrap();
    let (server_ca, clients_ca) = (Authority::new("server CA"), Authority::new("clients CA"));
    server_ca.server("server-a", 1).write(dir.path(), "server");
    std::fs::write(dir.path().join("clients-ca.pem"), &clients_ca.pem).unwrap();
    std::fs::write(dir.path().join("clients.crl"), clients_ca.crl(&[], 1)).unwrap();
    let sandbox = Sandbox::new(Setup { tls: Some(tls_lines(dir.path())), extra_keys: partners(), ..Setup::default() });
    let server = sandbox.start();
    let addr = server.ingest_tls.expect("TLS listener");
    let as_client = |cn: &str, serial| pki::client_config(&server_ca, Some(&clients_ca.client(cn, serial, false)), &[]);
    let prefix = unique_prefix();

    // "sufficient": the gateway's certificate alone authenticates, within its scope.
    let mut gateway = pki::connect(addr, as_client("partner-gw", 11)).expect("mTLS connect");
    expect_accepted(&gateway.request(&unsigned(&event(&format!("{prefix}-gw"), "u1"))));
    let win = typed_event(&format!("{prefix}-gw-win"), "u1", "win");
    expect_error(&gateway.request(&unsigned(&win)), 403, "event_type_not_allowed");
    // The gateway's certificate with another partner's key: refused.
    expect_error(&gateway.request(&signed_event(event(&format!("{prefix}-mix"), "u1").as_bytes())), 403, "partner_mismatch");

    // "required": the strict partner's key works over its own certificate only.
    let mut strict = pki::connect(addr, as_client("partner-strict", 12)).expect("mTLS connect");
    let body = event(&format!("{prefix}-strict"), "u2");
    expect_accepted(&strict.request(&signed_as(STRICT_KID, &STRICT_SECRET, &body)));
    let mut plain = server.client();
    let body = event(&format!("{prefix}-strict-plain"), "u2");
    expect_error(&plain.request(&signed_as(STRICT_KID, &STRICT_SECRET, &body)), 403, "client_certificate_required");
    // The strict partner's certificate alone is not enough ("required" is not "sufficient").
    expect_error(&strict.request(&unsigned(&event(&format!("{prefix}-strict-bare"), "u2"))), 401, "signature_missing");

    // A valid certificate nobody claims authenticates nothing by itself.
    let mut anonymous = pki::connect(addr, as_client("partner-unknown", 13)).expect("mTLS connect");
    expect_error(&anonymous.request(&unsigned(&event(&format!("{prefix}-anon"), "u3"))), 401, "signature_missing");
    expect_accepted(&anonymous.request(&signed_event(event(&format!("{prefix}-anon-signed"), "u3").as_bytes())));

    let mut stored: Vec<String> = sandbox.tail().iter().map(TailLine::event_id).collect();
    stored.sort();
    assert_eq!(stored, [format!("{prefix}-anon-signed"), format!("{prefix}-gw"), format!("{prefix}-strict")]);
}
