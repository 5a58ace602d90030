//! Reloading the key ring (keys, partners, policy) on SIGHUP and `POST /admin/reload`:
//! a kid added to the file is accepted afterwards on a connection opened before; a
//! partner's new scope applies; a broken file is refused, named on stderr, and the old
//! keys keep working.

use sluice_test_support::*;

const NEW_KID: &str = "added-later";
const NEW_SECRET: [u8; 32] = *b"a-key-added-while-sluice-runs!!!";

fn signed_as(kid: &str, secret: &[u8], body: &str) -> Vec<u8> {
    post("/v1/events", Some("application/json"), &signing_headers(kid, secret, &now_secs().to_string(), body.as_bytes()), body.as_bytes())
}

#[test]
fn sighup_and_the_admin_call_reload_the_key_ring_without_dropping_connections() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let prefix = unique_prefix();
    let mut client = server.client();
    expect_error(&client.request(&signed_as(NEW_KID, &NEW_SECRET, &event(&format!("{prefix}-0"), "u"))), 401, "key_unknown");

    let original = std::fs::read_to_string(&sandbox.keys).unwrap();
    let added = format!("{original}\n[[keys]]\nkid = \"{NEW_KID}\"\nsecret = \"{}\"\npartner = \"late\"\n", whsec(&NEW_SECRET));
    std::fs::write(&sandbox.keys, &added).unwrap();
    server.sighup();
    server.wait_for_stderr("reloaded cause=SIGHUP parts=config,keys", 1);
    expect_accepted(&client.request(&signed_as(NEW_KID, &NEW_SECRET, &event(&format!("{prefix}-1"), "u"))));

    // A broken file is refused; the keys in force stay.
    std::fs::write(&sandbox.keys, format!("{added}\n[[keys]]\nkid = \"broken\"\n")).unwrap();
    let answer = server.admin_client().request(&post("/admin/reload", None, &[], b""));
    assert_eq!(answer.status, 400, "{}", answer.describe());
    server.wait_for_stderr("reload rejected", 1);
    assert!(server.stderr_text().contains("error=\"keys:"), "{}", server.stderr_text());
    // The same through SIGHUP: refused, logged, the old keys stay.
    server.sighup();
    server.wait_for_stderr("reload rejected", 2);
    assert!(!server.stderr_text().contains(&whsec(&NEW_SECRET)), "a secret reached the log");
    expect_accepted(&client.request(&signed_as(NEW_KID, &NEW_SECRET, &event(&format!("{prefix}-2"), "u"))));
    expect_accepted(&client.request(&signed_event(event(&format!("{prefix}-3"), "u").as_bytes())));

    // Partners reload too: restrict the new key's partner to deposits.
    std::fs::write(&sandbox.keys, format!("{added}\n[[partners]]\nname = \"late\"\nevent_types = [\"deposit\"]\n")).unwrap();
    let answer = server.admin_client().request(&post("/admin/reload", None, &[], b""));
    assert_eq!(answer.status, 200, "{}", answer.describe());
    assert_eq!(answer.text(), r#"{"reloaded":["config","keys"],"restart_needed":[]}"#);
    expect_error(&client.request(&signed_as(NEW_KID, &NEW_SECRET, &event(&format!("{prefix}-4"), "u"))), 403, "event_type_not_allowed");
    let stored: Vec<String> = sandbox.tail().iter().map(TailLine::event_id).collect();
    assert_eq!(stored.len(), 3, "{stored:?}");
}

#[test]
fn sighup_reads_the_configuration_file_again_refusing_a_broken_one() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let prefix = unique_prefix();
    let mut client = server.client();
    let original = std::fs::read_to_string(&sandbox.config).unwrap();

    // A configuration that does not parse is refused whole; the server keeps running as it was.
    std::fs::write(&sandbox.config, format!("{original}\n[ingest\n")).unwrap();
    server.sighup();
    server.wait_for_stderr("reload rejected", 1);
    assert!(server.stderr_text().contains("error=\"config:"), "{}", server.stderr_text());
    expect_accepted(&client.request(&signed_event(event(&format!("{prefix}-0"), "u").as_bytes())));

    // A valid file whose changes need a restart: the reload succeeds and names them.
    let changed = original.replace("[storage]", "[dedup]\nwindow_hours = 1\n\n[storage]");
    assert_ne!(changed, original, "the test configuration has a [storage] table");
    std::fs::write(&sandbox.config, changed).unwrap();
    let answer = server.admin_client().request(&post("/admin/reload", None, &[], b""));
    assert_eq!(answer.status, 200, "{}", answer.describe());
    assert_eq!(answer.text(), r#"{"reloaded":["config","keys"],"restart_needed":["dedup.window_hours"]}"#);
    server.wait_for_stderr("take effect only after a restart", 1);
    // The same connection still works.
    expect_accepted(&client.request(&signed_event(event(&format!("{prefix}-1"), "u").as_bytes())));
}
