//! The dead-letter queue and signed replay over a real `sluice serve` (SPEC §9): what
//! the DLQ keeps for each reason (read back with `sluice dlq` and the admin API), a
//! replay refused unsigned, altered, self-approved and unapproved, then run, killed with
//! -9 midway and resumed without doubles, its events marked and in the new stream
//! version; and the article's clock-skew incident end to end (partner health, alerts'
//! metrics, DLQ, signed replay).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice_test_support::replay::{Signers, replay, said};
use sluice_test_support::*;

const CONFIG: &str = r#"
[[topics]]
name = "events"
event_types = ["*"]
partitions = 4
versions = 2

[[policies]]
name = "pii"
event_types = ["deposit"]
blocked_fields = ["payload.card_number"]

[[policies]]
name = "bet-geo"
event_types = ["bet"]
geo_allow = ["TR"]

[gates]
kyc_event_types = ["kyc_result"]
[[gates.rewards]]
event_types = ["bonus_paid"]
kyc_level_min = 1
"#;

fn sandbox(signers: &Signers) -> Sandbox {
    Sandbox::new(Setup { extra_config: CONFIG.to_owned(), extra_keys: signers.ring.clone(), ..Setup::default() })
}

fn skewed(body: &[u8], skew_secs: i64) -> Vec<u8> {
    let timestamp = (now_secs() as i64 + skew_secs).to_string();
    post("/v1/events", Some("application/json"), &signing_headers(KID, &SECRET, &timestamp, body), body)
}

fn dlq_lines(sandbox: &Sandbox, args: &[&str]) -> Vec<Json> {
    let config = sandbox.config.to_str().unwrap();
    let mut all = vec!["dlq", "--config", config];
    all.extend_from_slice(args);
    let output = run_sluice(&all);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| Json::parse(line.as_bytes()).unwrap_or_else(|error| panic!("{error:?}: {line:?}")))
        .collect()
}

fn field<'a>(line: &'a Json, name: &str) -> &'a str {
    line.get(name).and_then(Json::as_str).unwrap_or_default()
}

/// Waits for the shards to write their side logs (once per loop; an idle shard wakes on
/// its housekeeping tick).
fn wait_for_dead_letters(sandbox: &Sandbox, count: usize) -> Vec<Json> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = dlq_lines(sandbox, &["list", "--limit", "10000"]);
        if lines.len() >= count || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_refusal_after_authentication_is_a_dead_letter_with_its_reason() {
    let signers = Signers::new();
    let sandbox = sandbox(&signers);
    let server = sandbox.start();
    let mut client = server.client();
    let deposit = typed_event("d-1", "u1", "deposit").replace("\"marker\":\"d-1\"", "\"card_number\":\"4111111111111111\"");
    assert_eq!(client.request(&signed_event(deposit.as_bytes())).error_code(), "blocked_field");
    assert_eq!(client.request(&signed_event(event("g-1", "u1").replace("TR", "US").as_bytes())).error_code(), "geo_not_allowed");
    assert_eq!(client.request(&signed_event(typed_event("k-1", "u1", "bonus_paid").as_bytes())).error_code(), "kyc_gate");
    assert_eq!(client.request(&signed_event(b"{\"event_id\":\"x\"")).error_code(), "json_invalid");
    let batch = client.request(&signed_batch(&[event("ok-1", "u1"), event("g-2", "u1").replace("TR", "US")]));
    assert_eq!(batch.json()["accepted"].as_u64(), Some(1));
    assert_eq!(client.request(&skewed(event("s-1", "u1").as_bytes(), -540)).error_code(), "timestamp_out_of_window");
    // Not authenticated: no dead letter (anyone could fill the queue).
    let forged = String::from_utf8(signed_event(event("f-1", "u1").as_bytes())).unwrap().replace("X-Signature: v1=", "X-Signature: v1=00");
    assert_eq!(client.request(forged.as_bytes()).error_code(), "signature_invalid");

    let lines = wait_for_dead_letters(&sandbox, 6);
    let reasons: Vec<&str> = lines.iter().map(|line| field(line, "reason")).collect();
    for reason in ["blocked_field", "geo_not_allowed", "kyc_gate", "json_invalid", "timestamp_out_of_window"] {
        assert!(reasons.contains(&reason), "{reason} missing from {reasons:?}");
    }
    assert_eq!(reasons.len(), 6, "{reasons:?}");
    assert!(!reasons.contains(&"signature_invalid"));
    let geo: Vec<&Json> = lines.iter().filter(|line| field(line, "reason") == "geo_not_allowed").collect();
    assert_eq!(geo.len(), 2);
    assert!(geo.iter().any(|line| line.get("line").and_then(Json::as_u64) == Some(1)), "the batch line is named: {geo:?}");
    assert!(lines.iter().all(|line| field(line, "partner") == "tests" && line.get("body").is_none()), "{lines:?}");
    // A gated reward is judged (and kept) where it was to be stored, which has no request
    // head: its dead letter names the partner but no kid.
    assert!(lines.iter().filter(|line| field(line, "reason") != "kyc_gate").all(|line| field(line, "kid") == KID));
    // show has the body and headers, signatures redacted; the blocked value is in the
    // kept body (evidence) but never in the detail.
    let blocked = dlq_lines(&sandbox, &["show", "--reason", "blocked_field"]);
    assert_eq!(field(&blocked[0], "event_id"), "d-1");
    assert_eq!(field(&blocked[0], "event_type"), "deposit");
    assert_eq!(field(&blocked[0], "topic"), "events");
    assert!(field(&blocked[0], "body").contains("4111") && !field(&blocked[0], "detail").contains("4111"));
    let headers = blocked[0].get("headers").unwrap().to_string();
    assert!(headers.contains("<redacted>") && !headers.contains("v1="), "{headers}");
    let skew = dlq_lines(&sandbox, &["show", "--reason", "timestamp_out_of_window"]);
    assert!(field(&skew[0], "detail").contains("-540 s") || field(&skew[0], "detail").contains("-54"), "{}", field(&skew[0], "detail"));
    // The admin API and the stats agree.
    let listed = server.admin_client().request(&get("/admin/dlq?reason=geo_not_allowed"));
    assert_eq!(listed.status, 200);
    assert_eq!(listed.text().lines().count(), 2);
    let stats = run_sluice(&["dlq", "--config", sandbox.config.to_str().unwrap(), "stats"]);
    let stats = Json::parse(&stats.stdout).unwrap();
    assert_eq!(stats.get("dead_letters").and_then(Json::as_u64), Some(6));
    let metrics = server.admin_client().request(&get("/metrics")).text();
    assert!(metrics.contains("sluice_dead_letters_total{reason=\"geo_not_allowed\"} 2"), "{metrics}");
    assert!(metrics.contains("sluice_dlq_alarm 0"));
}

/// Plans a runbook of the DLQ's `reason` into `events.v2`.
fn plan(sandbox: &Sandbox, signers: &Signers, out: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut args =
        vec!["plan", "--key", signers.requester.to_str().unwrap(), "--reason", "partner clock fixed; replay", "--target", "events.v2"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--out", out.to_str().unwrap()]);
    replay(&sandbox.config, &args)
}

fn run(sandbox: &Sandbox, server: &Server, runbook: &std::path::Path) -> std::process::Output {
    let (to, admin) = (server.ingest.to_string(), server.admin.to_string());
    replay(&sandbox.config, &["run", runbook.to_str().unwrap(), "--to", &to, "--admin", &admin])
}

#[test]
fn a_replay_runs_only_signed_by_two_people_and_resumes_after_kill_9_without_doubles() {
    let signers = Signers::new();
    let sandbox = sandbox(&signers);
    let server = sandbox.start();
    let mut client = server.client();
    const EVENTS: usize = 400;
    for index in 0..EVENTS {
        let body = event(&format!("late-{index}"), &format!("u{}", index % 17));
        assert_eq!(client.request(&skewed(body.as_bytes(), -540)).status, 401);
    }
    assert_eq!(wait_for_dead_letters(&sandbox, EVENTS).len(), EVENTS);
    let dir = signers.dir.path();
    let runbook = dir.join("rb.json");
    let planned = plan(&sandbox, &signers, &runbook, &["--dlq-reason", "timestamp_out_of_window"]);
    assert!(planned.status.success(), "{}", said(&planned));

    // Signed by the requester only: refused, nothing registered, nothing stored.
    let unsigned = run(&sandbox, &server, &runbook);
    assert_eq!(unsigned.status.code(), Some(2), "{}", said(&unsigned));
    assert!(said(&unsigned).contains("runbook_not_approved"), "{}", said(&unsigned));
    // Self-approval under a second name with the same key.
    let twin = dir.join("twin.json");
    std::fs::copy(&runbook, &twin).unwrap();
    assert!(
        replay(&sandbox.config, &["approve", twin.to_str().unwrap(), "--key", signers.requester_as_approver.to_str().unwrap()])
            .status
            .success()
    );
    let self_approved = run(&sandbox, &server, &twin);
    assert_eq!(self_approved.status.code(), Some(2));
    assert!(said(&self_approved).contains("runbook_self_approved"), "{}", said(&self_approved));
    // Approved, then altered: a widened reason (or target) breaks the signatures.
    let approved = replay(&sandbox.config, &["approve", runbook.to_str().unwrap(), "--key", signers.approver.to_str().unwrap()]);
    assert!(approved.status.success(), "{}", said(&approved));
    let altered = dir.join("altered.json");
    std::fs::write(&altered, std::fs::read_to_string(&runbook).unwrap().replace("partner clock fixed", "partner clock FIXED")).unwrap();
    let refused = run(&sandbox, &server, &altered);
    assert_eq!(refused.status.code(), Some(2));
    assert!(said(&refused).contains("runbook_altered"), "{}", said(&refused));
    // An unregistered replay id is refused by the server itself.
    let direct =
        String::from_utf8(signed_event(event("late-0", "u0").as_bytes())).unwrap().replace("Host:", "X-Replay-Id: rb_forged\r\nHost:");
    assert_eq!(server.client().request(direct.as_bytes()).error_code(), "replay_not_approved");
    assert!(sandbox.tail().is_empty());

    // The real run, killed with -9 midway.
    let done_before = run_killed_midway(&sandbox, &server, &runbook, EVENTS);
    let resumed = run(&sandbox, &server, &runbook);
    assert!(resumed.status.success(), "{}", said(&resumed));
    let summary = Json::parse(&resumed.stdout).unwrap();
    assert_eq!(summary.get("already_done").and_then(Json::as_u64), Some(done_before as u64), "{summary:?}");

    let stored = sandbox.tail();
    assert_eq!(stored.len(), EVENTS, "every item stored exactly once");
    let mut ids: Vec<String> = stored.iter().map(TailLine::event_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), EVENTS);
    let replay_id = Json::parse(&std::fs::read(&runbook).unwrap()).unwrap().get("id").and_then(Json::as_str).unwrap().to_owned();
    for line in &stored {
        assert_eq!(line.topic, "events.v2", "never into the original");
        assert_eq!(line.event_json.get("replayed"), Some(&Json::Bool(true)));
        assert_eq!(line.event_json.get("replay_id").and_then(Json::as_str), Some(replay_id.as_str()));
    }
    // Running it again sends nothing new.
    let again = Json::parse(&run(&sandbox, &server, &runbook).stdout).unwrap();
    assert_eq!(again.get("sent").and_then(Json::as_u64), Some(0));
    assert_eq!(sandbox.tail().len(), EVENTS);
}

/// Starts `sluice replay run`, kills it with -9 once 50 items are recorded; returns how
/// many were recorded.
fn run_killed_midway(sandbox: &Sandbox, server: &Server, runbook: &std::path::Path, events: usize) -> usize {
    let progress = runbook.with_extension("json.progress");
    let (to, admin) = (server.ingest.to_string(), server.admin.to_string());
    let config = sandbox.config.to_str().unwrap().to_owned();
    let mut child = Command::new(bin())
        .args(["replay", "--config", &config, "run", runbook.to_str().unwrap(), "--to", &to, "--admin", &admin])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&progress).map_or(0, |text| text.lines().count()) < 50 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // A kill in the middle of a write leaves a torn last line, which a run does not count
    // as done (its item is sent again and answered `duplicate`): count whole lines only.
    let text = std::fs::read_to_string(&progress).unwrap();
    let done_before = text.lines().filter(|line| Json::parse(line.as_bytes()).is_ok()).count();
    assert!(done_before < events, "the run finished before the kill: {done_before}");
    done_before
}

#[test]
fn the_clock_skew_incident_end_to_end() {
    let signers = Signers::new();
    let sandbox = sandbox(&signers);
    let server = sandbox.start();
    let mut client = server.client();
    for index in 0..20 {
        assert_eq!(client.request(&signed_event(event(&format!("on-time-{index}"), "u1").as_bytes())).status, 202);
    }
    // The partner's clock drifts −9 minutes: every request refused, each kept.
    for index in 0..30 {
        let body = event(&format!("drift-{index}"), &format!("u{index}"));
        assert_eq!(client.request(&skewed(body.as_bytes(), -540)).error_code(), "timestamp_out_of_window");
    }
    // Within the minute, health says failing and the metrics carry what the alert needs.
    let health = server.admin_client().request(&get("/admin/partners")).json();
    let partner = health["partners"].as_array().unwrap().iter().find(|p| p["partner"].as_str() == Some("tests")).unwrap().clone();
    assert_eq!(partner["state"].as_str(), Some("failing"), "{health:?}");
    assert!(partner["clock_skew_secs_last"].as_i64().unwrap() <= -539);
    let metrics = server.admin_client().request(&get("/metrics")).text();
    assert!(metrics.contains("sluice_partner_timestamp_skew_total{partner=\"tests\"} 30"), "{metrics}");
    assert!(metrics.contains("sluice_partner_clock_skew_seconds{partner=\"tests\"} -54"), "{metrics}");
    // The fix, then the replay of exactly those requests, approved by a second person.
    assert_eq!(wait_for_dead_letters(&sandbox, 30).len(), 30);
    let runbook = signers.dir.path().join("incident.json");
    assert!(plan(&sandbox, &signers, &runbook, &["--dlq-reason", "timestamp_out_of_window", "--partner", "tests"]).status.success());
    assert!(replay(&sandbox.config, &["approve", runbook.to_str().unwrap(), "--key", signers.approver.to_str().unwrap()]).status.success());
    let ran = run(&sandbox, &server, &runbook);
    assert!(ran.status.success(), "{}", said(&ran));
    let summary = Json::parse(&ran.stdout).unwrap();
    assert_eq!(summary.get("stored").and_then(Json::as_u64), Some(30), "{summary:?}");
    let stored = sandbox.tail();
    let replayed: Vec<&TailLine> = stored.iter().filter(|line| line.topic == "events.v2").collect();
    assert_eq!(replayed.len(), 30);
    assert!(
        replayed.iter().all(|line| line.event_id().starts_with("drift-") && line.event_json.get("replayed") == Some(&Json::Bool(true)))
    );
    assert_eq!(stored.iter().filter(|line| line.topic == "events").count(), 20, "the original stream is untouched");
    // A replayed event sent again outside its runbook is refused: the producer cannot
    // claim `replayed` itself either.
    let claimed = event("x-1", "u1").replace("\"payload\"", "\"replayed\":true,\"payload\"");
    assert_eq!(client.request(&signed_event(claimed.as_bytes())).error_code(), "field_reserved");
    // The old unsigned path is closed.
    let legacy = run_sluice(&["quarantine", "replay", "--config", sandbox.config.to_str().unwrap(), "--to", &server.ingest.to_string()]);
    assert_eq!(legacy.status.code(), Some(2));
    assert!(said(&legacy).contains("signed runbook"));
}
