//! Clock-skew quarantine (the article's incident, section 15): a validly signed request
//! outside the timestamp window is answered 401 and stores nothing, but is kept with its
//! partner; `sluice quarantine list` shows it, the metrics count it per partner, and
//! `sluice quarantine replay` stores it once (a second replay sends nothing).

mod common;

use common::*;

fn skewed(body: &[u8], skew_secs: i64) -> Vec<u8> {
    let timestamp = (now_secs() as i64 + skew_secs).to_string();
    post("/v1/events", Some("application/json"), &signing_headers(KID, &SECRET, &timestamp, body), body)
}

#[test]
fn skewed_requests_are_kept_and_can_be_replayed_once() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let prefix = unique_prefix();
    let body = event(&format!("{prefix}-late"), "u_skew");
    let mut client = server.client();
    expect_error(&client.request(&skewed(body.as_bytes(), -540)), 401, "timestamp_out_of_window");
    // A wrong signature outside the window is not genuine: not kept.
    let forged = String::from_utf8(skewed(body.as_bytes(), -540)).unwrap().replace("X-Signature: v1=", "X-Signature: v1=ff");
    expect_error(&client.request(forged.as_bytes()), 401, "signature_invalid");
    assert!(sandbox.tail().is_empty(), "a quarantined request must not be stored");

    let config = sandbox.config.to_str().unwrap();
    let list = run_sluice(&["quarantine", "list", "--config", config]);
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    let lines: Vec<Json> = String::from_utf8(list.stdout).unwrap().lines().map(|line| Json::parse(line.as_bytes()).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].get("partner").and_then(Json::as_str), Some("tests"));
    assert_eq!(lines[0].get("kid").and_then(Json::as_str), Some(KID));
    assert_eq!(lines[0].get("replayed"), Some(&Json::Bool(false)));

    let metrics = server.admin_client().request(&get("/metrics")).text();
    assert!(metrics.contains("sluice_quarantined_total{partner=\"tests\"} 1"), "{metrics}");

    let to = server.ingest.to_string();
    let replay = run_sluice(&["quarantine", "replay", "--config", config, "--to", &to]);
    let said = String::from_utf8_lossy(&replay.stdout).into_owned();
    assert!(replay.status.success(), "{said} {}", String::from_utf8_lossy(&replay.stderr));
    assert!(said.contains("replayed 1 requests: 1 events accepted"), "{said}");
    let stored = sandbox.tail();
    assert_eq!(stored.len(), 1);
    assert_stored_as_sent(&body, &stored[0].event);

    let again = run_sluice(&["quarantine", "replay", "--config", config, "--to", &to]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("replayed 0 requests"), "{}", String::from_utf8_lossy(&again.stdout));
    let list = run_sluice(&["quarantine", "list", "--config", config]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("\"replayed\":true"));
    assert_eq!(sandbox.tail().len(), 1);
}
