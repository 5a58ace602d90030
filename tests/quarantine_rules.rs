//! The clock-skew quarantine (and with it the dead-letter queue's reason
//! `timestamp_out_of_window`) keeps only what every other rule would have let in, with
//! the connection it came on. Replay is only through a signed runbook since issue 15
//! (tests/dlq_replay.rs): a replayed request meets the partner's rules in force again on
//! the connection `sluice replay run` opens.
//!
//! The hole this closes: a request signed with a `client_cert = "required"` partner's
//! HMAC key, sent without the partner's certificate and with a timestamp outside the
//! window, was answered 401 and kept; its record did not say it lacked a certificate,
//! and the replay runbook (set the partner to "optional", reload, replay) stored it. A
//! stolen HMAC key alone thus got events stored, and could fill the quarantine.

use std::path::Path;

use sluice_test_support::pki::{self, Authority};
use sluice_test_support::*;

const STRICT_KID: &str = "strict-key";
const STRICT_SECRET: [u8; 32] = *b"strict-partner-secret-32-bytes!!";

fn ring(client_cert: &str) -> String {
    format!(
        "[[keys]]\nkid = \"{STRICT_KID}\"\nsecret = \"{}\"\npartner = \"strict\"\n\n\
         [[partners]]\nname = \"strict\"\nclient_cert = \"{client_cert}\"\ntls_identities = [\"partner-strict\"]\nevent_types = [\"bet\"]\n",
        whsec(&STRICT_SECRET)
    )
}

fn tls_lines(dir: &Path) -> String {
    let file = |name: &str| dir.join(name).display().to_string();
    format!(
        "cert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\nclient_auth = \"optional\"\n",
        file("server.pem"),
        file("server.key"),
        file("clients-ca.pem")
    )
}

/// A request signed by the strict partner's key, nine minutes in the past.
fn skewed(body: &str) -> Vec<u8> {
    let timestamp = (now_secs() - 540).to_string();
    post("/v1/events", Some("application/json"), &signing_headers(STRICT_KID, &STRICT_SECRET, &timestamp, body.as_bytes()), body.as_bytes())
}

/// `(event marker, tls_identity)` of every quarantined request.
fn listed(config: &str) -> Vec<(String, Option<String>)> {
    let list = run_sluice(&["quarantine", "list", "--config", config]);
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    let text = String::from_utf8(list.stdout).expect("utf-8");
    text.lines()
        .map(|line| {
            let json = Json::parse(line.as_bytes()).expect("a JSON line");
            assert!(json.get("client_ip").and_then(Json::as_str).is_some(), "the client address is kept: {line}");
            (
                json.get("partner").and_then(Json::as_str).expect("partner").to_owned(),
                json.get("tls_identity").and_then(Json::as_str).map(str::to_owned),
            )
        })
        .collect()
}

#[test]
fn a_required_certificate_cannot_be_bypassed_through_the_quarantine() {
    let dir = tempfile::Builder::new().prefix("sluice-pki-").tempdir().unwrap();
    let (server_ca, clients_ca) = (Authority::new("server CA"), Authority::new("clients CA"));
    server_ca.server("server-a", 1).write(dir.path(), "server");
    std::fs::write(dir.path().join("clients-ca.pem"), &clients_ca.pem).unwrap();
    let sandbox = Sandbox::new(Setup { shards: 1, tls: Some(tls_lines(dir.path())), extra_keys: ring("required"), ..Setup::default() });
    let server = sandbox.start();
    let config = sandbox.config.to_str().unwrap();
    let prefix = unique_prefix();

    // The stolen-key case: the partner's HMAC key, no certificate, a skewed clock.
    let mut plain = server.client();
    expect_error(&plain.request(&skewed(&event(&format!("{prefix}-stolen"), "u1"))), 401, "timestamp_out_of_window");
    // Neither is a request the partner's own rules refuse (an event type it may not send).
    let mut strict = pki::connect(
        server.ingest_tls.expect("TLS"),
        pki::client_config(&server_ca, Some(&clients_ca.client("partner-strict", 7, false)), &[]),
    )
    .expect("mTLS connect");
    let win = typed_event(&format!("{prefix}-win"), "u1", "win");
    expect_error(&strict.request(&skewed(&win)), 401, "timestamp_out_of_window");
    assert!(listed(config).is_empty(), "nothing kept: {:?}", listed(config));

    // The partner itself, over its certificate, with a skewed clock: kept, with its identity.
    expect_error(&strict.request(&skewed(&event(&format!("{prefix}-genuine"), "u2"))), 401, "timestamp_out_of_window");
    assert_eq!(listed(config), [("strict".to_owned(), Some("partner-strict".to_owned()))]);

    // The dead-letter queue kept the same one only, with its identity.
    let dlq = run_sluice(&["dlq", "--config", config, "list", "--reason", "timestamp_out_of_window"]);
    let text = String::from_utf8(dlq.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains(&format!("{prefix}-genuine")) && text.contains("partner-strict"), "{text}");
}
