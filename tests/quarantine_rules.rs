//! The clock-skew quarantine keeps only what every other rule would have let in, and
//! replay holds each record to its partner's rules in force (client certificate, allow-
//! list) by the connection it came on.
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

fn replay(config: &str, server: &Server) -> (Option<i32>, String) {
    replay_with(config, server, &[])
}

fn replay_with(config: &str, server: &Server, extra: &[&str]) -> (Option<i32>, String) {
    let to = server.ingest.to_string();
    let mut args = vec!["quarantine", "replay", "--config", config, "--to", &to];
    args.extend_from_slice(extra);
    let output = run_sluice(&args);
    (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr))
}

/// The replay ran well, sent one request, and `event_id` is all the log holds.
fn expect_one_stored(sandbox: &Sandbox, (status, said): (Option<i32>, String), event_id: &str) {
    assert_eq!(status, Some(0), "{said}");
    assert!(said.contains("replayed 1 requests: 1 events accepted"), "{said}");
    let stored: Vec<String> = sandbox.tail().iter().map(TailLine::event_id).collect();
    assert_eq!(stored, [event_id]);
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

    // The runbook: replay sends without a certificate, so the partner is set to optional
    // for the replay. Only the genuine request is stored.
    std::fs::write(&sandbox.keys, std::fs::read_to_string(&sandbox.keys).unwrap().replace("\"required\"", "\"optional\"")).unwrap();
    assert_eq!(server.admin_client().request(&post("/admin/reload", None, &[], b"")).status, 200);
    expect_one_stored(&sandbox, replay(config, &server), &format!("{prefix}-genuine"));
}

#[test]
fn replay_refuses_a_record_without_the_certificate_its_partner_now_requires() {
    let sandbox = Sandbox::new(Setup { shards: 1, extra_keys: ring("optional"), ..Setup::default() });
    let server = sandbox.start();
    let config = sandbox.config.to_str().unwrap();
    let prefix = unique_prefix();
    // Kept while the partner did not require a certificate: no identity on file.
    expect_error(&server.client().request(&skewed(&event(&format!("{prefix}-bare"), "u1"))), 401, "timestamp_out_of_window");
    assert_eq!(listed(config), [("strict".to_owned(), None)]);

    // The partner now requires one (the key ring replay reads says so); the running
    // server, not reloaded, would still take the request: replay sends nothing.
    std::fs::write(&sandbox.keys, std::fs::read_to_string(&sandbox.keys).unwrap().replace("\"optional\"", "\"required\"")).unwrap();
    let (status, said) = replay(config, &server);
    assert_eq!(status, Some(0), "{said}");
    assert!(said.contains("replayed 0 requests"), "{said}");
    assert!(said.contains("1 requests not sent: their partner's rules refuse how they came"), "{said}");
    assert!(sandbox.tail().is_empty(), "nothing stored");
}

/// The runbook relaxes `required` to `optional` for the replay; the ring replay reads
/// then cannot tell that from a partner that is optional for real. A request kept
/// without a certificate (here while the partner was optional, before a leaked key made
/// it required) is therefore not sent unless the operator says such requests are genuine.
#[test]
fn relaxing_the_certificate_rule_for_a_replay_does_not_send_requests_kept_without_one() {
    let sandbox = Sandbox::new(Setup { shards: 1, extra_keys: ring("optional"), ..Setup::default() });
    let server = sandbox.start();
    let config = sandbox.config.to_str().unwrap();
    let prefix = unique_prefix();
    expect_error(&server.client().request(&skewed(&event(&format!("{prefix}-bare"), "u1"))), 401, "timestamp_out_of_window");
    assert_eq!(listed(config), [("strict".to_owned(), None)]);

    // The ring is optional again (relaxed for the replay): the record stays.
    let (status, said) = replay(config, &server);
    assert_eq!(status, Some(0), "{said}");
    assert!(said.contains("replayed 0 requests"), "{said}");
    assert!(said.contains("1 requests left: they came without a client certificate"), "{said}");
    assert!(said.contains("--allow-no-certificate"), "{said}");
    assert!(sandbox.tail().is_empty(), "nothing stored");

    // Still there for a run that says plain requests of this partner are genuine.
    expect_one_stored(&sandbox, replay_with(config, &server, &["--allow-no-certificate"]), &format!("{prefix}-bare"));
}

/// An allow-list tightened since a request was kept applies to the replay: the recorded
/// client address is outside it.
#[test]
fn replay_refuses_a_record_from_an_address_the_partner_no_longer_allows() {
    let partner_without_certificates = format!(
        "[[keys]]\nkid = \"{STRICT_KID}\"\nsecret = \"{}\"\npartner = \"strict\"\n\n[[partners]]\nname = \"strict\"\n",
        whsec(&STRICT_SECRET)
    );
    let sandbox = Sandbox::new(Setup { shards: 1, extra_keys: partner_without_certificates, ..Setup::default() });
    let server = sandbox.start();
    let config = sandbox.config.to_str().unwrap();
    let prefix = unique_prefix();
    expect_error(&server.client().request(&skewed(&event(&format!("{prefix}-moved"), "u1"))), 401, "timestamp_out_of_window");
    assert_eq!(listed(config).len(), 1);

    let ring = std::fs::read_to_string(&sandbox.keys).unwrap();
    std::fs::write(&sandbox.keys, ring.replace("name = \"strict\"\n", "name = \"strict\"\nallow_cidrs = [\"10.0.0.0/8\"]\n")).unwrap();
    let (status, said) = replay(config, &server);
    assert_eq!(status, Some(0), "{said}");
    assert!(said.contains("replayed 0 requests"), "{said}");
    assert!(said.contains("1 requests not sent: their partner's rules refuse how they came"), "{said}");
    assert!(sandbox.tail().is_empty(), "nothing stored");
}
