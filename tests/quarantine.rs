//! Clock-skew quarantine (the article's incident, section 15): a validly signed request
//! outside the timestamp window is answered 401 and stores nothing, but is kept with its
//! partner; `sluice quarantine list` shows it, the metrics count it per partner, and it
//! is a dead letter with reason `timestamp_out_of_window`. The unsigned `sluice quarantine
//! replay` of before is refused: replay is only from a signed runbook
//! (tests/dlq_replay.rs runs the incident end to end).

use sluice_test_support::*;

fn skewed(body: &[u8], skew_secs: i64) -> Vec<u8> {
    skewed_as(KID, &SECRET, body, skew_secs)
}

fn skewed_as(kid: &str, secret: &[u8], body: &[u8], skew_secs: i64) -> Vec<u8> {
    let timestamp = (now_secs() as i64 + skew_secs).to_string();
    post("/v1/events", Some("application/json"), &signing_headers(kid, secret, &timestamp, body), body)
}

/// Quarantines one event per `(partner, event_id)`, in this order, on one connection of
/// a one-shard server (so all land in one file, interleaved).
fn quarantine_events(server: &Server, events: &[(&str, &str)]) {
    quarantine_events_on(server.client(), events);
}

fn quarantine_events_on(mut client: Client, events: &[(&str, &str)]) {
    for (partner, event_id) in events {
        let (kid, secret): (&str, &[u8]) = if *partner == "tests" { (KID, &SECRET) } else { (KID_OTHER, &SECRET_OTHER) };
        let body = event(event_id, "u_skew");
        expect_error(&client.request(&skewed_as(kid, secret, body.as_bytes(), -540)), 401, "timestamp_out_of_window");
    }
}

#[test]
fn skewed_requests_are_kept_listed_and_replayed_only_through_a_runbook() {
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
    let lines: Vec<Json> =
        String::from_utf8(list.stdout).unwrap().lines().map(|line| Json::parse(line.as_bytes()).expect("a JSON line")).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].get("partner").and_then(Json::as_str), Some("tests"));
    assert_eq!(lines[0].get("kid").and_then(Json::as_str), Some(KID));
    assert_eq!(lines[0].get("replayed"), Some(&Json::Bool(false)));

    let metrics = server.admin_client().request(&get("/metrics")).text();
    assert!(metrics.contains("sluice_quarantined_total{partner=\"tests\"} 1"), "{metrics}");

    let to = server.ingest.to_string();
    let replay = run_sluice(&["quarantine", "replay", "--config", config, "--to", &to]);
    assert_eq!(replay.status.code(), Some(2), "the unsigned replay is closed");
    assert!(String::from_utf8_lossy(&replay.stderr).contains("signed runbook"));
    assert!(sandbox.tail().is_empty());

    // Partners are kept apart: the other partner's skewed request is listed under it.
    quarantine_events(&server, &[("other", &format!("{prefix}-other"))]);
    let partner = run_sluice(&["quarantine", "list", "--config", config, "--partner", "other"]);
    let text = String::from_utf8(partner.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let dlq = run_sluice(&["dlq", "--config", config, "list", "--reason", "timestamp_out_of_window"]);
    let text = String::from_utf8(dlq.stdout).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains("\"partner\":\"tests\"") && text.contains("\"partner\":\"other\""), "{text}");
}
