//! Schemas, policies and gates over real sockets and a real `sluice serve` (SPEC §9):
//! registration through the admin API and `sluice schema`, compatibility refusals with
//! their reasons, bad schemas refused at registration, 422/403 answers per policy (alone
//! and per line of a batch), a major refused then dual-written once its flag is on, and
//! the KYC/RG gates following the stream across a restart.

use sluice_test_support::*;

const CONFIG: &str = r#"
[[topics]]
name = "wallet"
event_types = ["deposit", "bonus_paid", "kyc_result", "rg_status"]
partitions = 2
versions = 2

[[topics]]
name = "events"
event_types = ["*"]
partitions = 2
versions = 2

[[policies]]
name = "wallet-pii"
event_types = ["deposit", "bonus_paid"]
blocked_fields = ["payload.ssn", "payload.card_number"]
required_fields = ["payload.amount"]

[[policies]]
name = "bet-geo"
event_types = ["bet"]
geo_allow = ["TR", "DE"]

[gates]
kyc_event_types = ["kyc_result"]
kyc_level_field = "payload.level"
rg_event_types = ["rg_status"]
rg_field = "payload.status"
rg_ok_values = ["ok"]

[[gates.rewards]]
event_types = ["bonus_paid"]
kyc_level_min = 2
rg_ok_required = true
"#;

fn sandbox() -> Sandbox {
    Sandbox::new(Setup { extra_config: CONFIG.to_owned(), ..Setup::default() })
}

/// An admin request with a JSON body.
fn admin(server: &Server, method: &str, path: &str, body: &str) -> Response {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    server.admin_client().request(request.as_bytes())
}

fn register(server: &Server, event_type: &str, version: &str, schema: &str) -> Response {
    admin(server, "POST", &format!("/admin/schemas/{event_type}"), &format!(r#"{{"version":"{version}","schema":{schema}}}"#))
}

const BET_V1: &str = r#"{"type":"object","properties":{"payload":{"type":"object","properties":{"bet":{"type":"number"},"win":{"type":"number"}},"required":["bet"]}}}"#;
const BET_INTEGER: &str = r#"{"type":"object","properties":{"payload":{"type":"object","properties":{"bet":{"type":"integer"},"win":{"type":"number"}},"required":["bet"]}}}"#;

/// [`event`] with its `schema_version` replaced (or removed with `None`).
fn versioned(id: &str, user: &str, version: Option<&str>) -> String {
    let base = event(id, user);
    match version {
        Some(version) => base.replace("\"schema_version\":\"1.3.0\"", &format!("\"schema_version\":\"{version}\"")),
        None => base.replace("\"schema_version\":\"1.3.0\",", ""),
    }
}

fn wallet_event(id: &str, user: &str, event_type: &str, payload: &str) -> String {
    format!(
        r#"{{"event_id":"{id}","event_type":"{event_type}","occurred_at":"2025-10-24T11:37:21Z","key":{{"user_id":"{user}"}},"ctx":{{"geo":"TR"}},"payload":{payload}}}"#
    )
}

fn post(server: &Server, body: &str) -> Response {
    server.client().request(&signed_event(body.as_bytes()))
}

#[test]
fn versions_register_survive_a_restart_and_incompatible_ones_are_refused_with_the_reason() {
    let sandbox = sandbox();
    let mut server = sandbox.start();
    assert_eq!(register(&server, "bet", "1.3.0", BET_V1).status, 201);
    assert_eq!(register(&server, "bet", "1.3.0", BET_V1).status, 200, "the same version and schema again is not an error");
    let other = register(&server, "bet", "1.3.0", r#"{"type":"object"}"#);
    assert_eq!((other.status, other.error_code().as_str()), (409, "schema_version_exists"));
    // Backward (the default): integer cannot read the number old producers send.
    let narrowed = register(&server, "bet", "1.4.0", BET_INTEGER);
    assert_eq!((narrowed.status, narrowed.error_code().as_str()), (409, "schema_incompatible"), "{}", narrowed.describe());
    assert!(narrowed.text().contains("/properties/payload/properties/bet"), "{}", narrowed.text());
    // check says the same without registering.
    let checked = admin(&server, "POST", "/admin/schemas/bet/check", &format!(r#"{{"version":"1.4.0","schema":{BET_INTEGER}}}"#));
    assert_eq!(checked.status, 409);
    let widened = BET_V1.replace(r#""required":["bet"]"#, r#""required":[]"#);
    let ok = admin(&server, "POST", "/admin/schemas/bet/check", &format!(r#"{{"version":"1.4.0","schema":{widened}}}"#));
    assert_eq!((ok.status, ok.json()["compatible"].as_bool()), (200, Some(true)), "{}", ok.describe());
    // Mode none takes anything; forward refuses a reader that drops a required field.
    assert_eq!(admin(&server, "PUT", "/admin/schemas/bet/settings", r#"{"mode":"forward"}"#).status, 200);
    let forward = register(&server, "bet", "1.4.0", &widened);
    assert_eq!(forward.status, 409, "{}", forward.describe());
    assert_eq!(admin(&server, "PUT", "/admin/schemas/bet/settings", r#"{"mode":"none"}"#).status, 200);
    assert_eq!(register(&server, "bet", "1.4.0", BET_INTEGER).status, 201);
    server.stop();
    let server = sandbox.start();
    let listed = admin(&server, "GET", "/admin/schemas/bet", "").json();
    let versions: Vec<&str> = listed["versions"].as_array().unwrap().iter().map(|v| v["version"].as_str().unwrap()).collect();
    assert_eq!(versions, ["1.3.0", "1.4.0"]);
    assert_eq!(listed["mode"].as_str(), Some("none"));
    // Compiled again at start: the 1.4.0 schema refuses a fractional bet.
    let refused = post(&server, &versioned("e1", "u1", Some("1.4.0")));
    assert_eq!((refused.status, refused.error_code().as_str()), (422, "schema_violation"), "{}", refused.describe());
}

#[test]
fn schema_bombs_and_remote_references_are_refused_at_registration() {
    let sandbox = sandbox();
    let server = sandbox.start();
    let remote = register(&server, "bet", "1.0.0", r#"{"$ref":"https://schemas.example/bet.json"}"#);
    assert_eq!((remote.status, remote.error_code().as_str()), (400, "schema_invalid"));
    assert!(remote.text().contains("only local"), "{}", remote.text());
    let deep = format!("{}{{}}{}", r#"{"items":"#.repeat(40), "}".repeat(40));
    assert!(register(&server, "bet", "1.0.0", &deep).text().contains("deeper than"));
    let backtracking = register(&server, "bet", "1.0.0", r#"{"properties":{"s":{"pattern":"^(a+)\\1$"}}}"#);
    assert_eq!(backtracking.status, 400, "{}", backtracking.describe());
    let values: Vec<String> = (0..2000).map(|i| i.to_string()).collect();
    let huge_enum = register(&server, "bet", "1.0.0", &format!(r#"{{"enum":[{}]}}"#, values.join(",")));
    assert_eq!(huge_enum.status, 400);
    let not_a_schema = register(&server, "bet", "1.0.0", r#"{"type":12}"#);
    assert_eq!(not_a_schema.error_code(), "schema_invalid");
    assert_eq!(admin(&server, "GET", "/admin/schemas/bet", "").status, 404, "nothing was registered");
    // The catastrophic pattern compiles for a linear-time engine and cannot stall a shard.
    assert_eq!(
        register(&server, "bet", "1.3.0", r#"{"properties":{"ctx":{"properties":{"platform":{"pattern":"^(a+)+$"}}}}}"#).status,
        201
    );
    let hostile = event("e-regex", "u1").replace("\"platform\":\"ios\"", &format!("\"platform\":\"{}!\"", "a".repeat(30_000)));
    let started = std::time::Instant::now();
    assert_eq!(post(&server, &hostile).error_code(), "schema_violation");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "a hostile string took {:?}", started.elapsed());
}

#[test]
fn events_are_checked_against_their_version_and_refusals_name_paths_never_values() {
    let sandbox = sandbox();
    let server = sandbox.start();
    assert_eq!(register(&server, "bet", "1.3.0", BET_V1).status, 201);
    assert_eq!(post(&server, &versioned("ok-1", "u1", Some("1.3.0"))).status, 202);
    assert_eq!(post(&server, &versioned("ok-2", "u1", None)).status, 202, "no schema_version: the latest");
    let bad = versioned("bad-1", "u1", Some("1.3.0")).replace("\"bet\":0.5", "\"bet\":\"4111111111111111\"");
    let refused = post(&server, &bad);
    assert_eq!((refused.status, refused.error_code().as_str()), (422, "schema_violation"));
    assert!(refused.text().contains("/payload/bet") && !refused.text().contains("4111"), "{}", refused.text());
    let unknown = post(&server, &versioned("bad-2", "u1", Some("1.9.0")));
    assert_eq!(unknown.error_code(), "schema_version_unknown");
    let batch =
        server.client().request(&signed_batch(&[versioned("b-1", "u1", None), bad.replace("bad-1", "b-2"), versioned("b-3", "u2", None)]));
    let answer = batch.json();
    assert_eq!((answer["accepted"].as_u64(), answer["rejected"].as_u64()), (Some(2), Some(1)), "{}", batch.describe());
    assert_eq!(answer["results"][1]["error"]["code"].as_str(), Some("schema_violation"));
    let stored: Vec<String> = sandbox.tail().iter().map(|line| line.event_json["event_id"].as_str().unwrap().to_owned()).collect();
    assert!(stored.contains(&"b-3".to_owned()) && !stored.iter().any(|id| id.starts_with("bad") || id == "b-2"), "{stored:?}");
}

#[test]
fn blocked_required_and_geo_policies_answer_422_and_403_alone_and_per_line() {
    let sandbox = sandbox();
    let server = sandbox.start();
    let deposit = |id: &str, payload: &str| wallet_event(id, "u1", "deposit", payload);
    assert_eq!(post(&server, &deposit("d-ok", r#"{"amount":10}"#)).status, 202);
    let blocked = post(&server, &deposit("d-pii", r#"{"amount":10,"card_number":"4111111111111111"}"#));
    assert_eq!((blocked.status, blocked.error_code().as_str()), (422, "blocked_field"));
    assert!(blocked.text().contains("payload.card_number") && !blocked.text().contains("4111"), "{}", blocked.text());
    let nested = post(&server, &deposit("d-ssn", r#"{"amount":10,"ssn":null}"#));
    assert_eq!(nested.error_code(), "blocked_field");
    let missing = post(&server, &deposit("d-none", r#"{"currency":"EUR"}"#));
    assert_eq!((missing.status, missing.error_code().as_str()), (422, "required_field_missing"));
    assert!(missing.text().contains("payload.amount"));
    let geo = post(&server, &event("g-us", "u1").replace("\"geo\":\"TR\"", "\"geo\":\"US\""));
    assert_eq!((geo.status, geo.error_code().as_str()), (403, "geo_not_allowed"));
    assert_eq!(post(&server, &event("g-de", "u1").replace("\"geo\":\"TR\"", "\"geo\":\"DE\"")).status, 202);
    let lines = [
        deposit("l-1", r#"{"amount":1}"#),
        deposit("l-2", r#"{"ssn":"x","amount":1}"#),
        event("l-3", "u1").replace("TR", "US"),
        deposit("l-4", "{}"),
    ];
    let batch = server.client().request(&signed_batch(&lines)).json();
    let codes: Vec<Option<&str>> = batch["results"].as_array().unwrap().iter().map(|result| result["error"]["code"].as_str()).collect();
    assert_eq!(codes, [None, Some("blocked_field"), Some("geo_not_allowed"), Some("required_field_missing")]);
}

#[test]
fn a_new_major_is_refused_until_its_flag_then_dual_written_with_its_pair_then_the_old_one_retires() {
    let sandbox = sandbox();
    let server = sandbox.start();
    assert_eq!(register(&server, "bet", "1.3.0", BET_V1).status, 201);
    let v2 = r#"{"type":"object","properties":{"payload":{"type":"object","required":["stake"]}}}"#;
    assert_eq!(register(&server, "bet", "2.0.0", v2).status, 201, "a new major is not held to the old one");
    let new = |id: &str| versioned(id, "u7", Some("2.0.0")).replace("\"bet\":0.5", "\"stake\":0.5");
    let refused = post(&server, &new("m-1"));
    assert_eq!((refused.status, refused.error_code().as_str()), (422, "schema_major_not_enabled"));
    let flags = |body: &str| admin(&server, "PUT", "/admin/schemas/bet/settings", body);
    assert_eq!(flags(r#"{"majors":{"2":"on"}}"#).status, 200);
    let accepted = post(&server, &new("m-2"));
    assert_eq!((accepted.status, accepted.json()["topic"].as_str()), (202, Some("events.v2")), "{}", accepted.describe());
    // Dual-write: a v2 event alone is refused; with its v1 pair right before it, both land.
    assert_eq!(flags(r#"{"majors":{"2":"on"},"dual_write":true}"#).status, 200);
    assert_eq!(post(&server, &new("m-3")).error_code(), "dual_write_pair_missing");
    let pair = server.client().request(&signed_batch(&[versioned("m-4", "u7", Some("1.3.0")), new("m-4")])).json();
    let topics: Vec<Option<&str>> = pair["results"].as_array().unwrap().iter().map(|result| result["topic"].as_str()).collect();
    assert_eq!(topics, [Some("events"), Some("events.v2")], "{pair:?}");
    let crossed = server.client().request(&signed_batch(&[versioned("m-5", "u7", Some("1.3.0")), new("m-6")])).json();
    assert_eq!(crossed["results"][1]["error"]["code"].as_str(), Some("dual_write_pair_missing"), "another event_id is not a pair");
    // Regressions: a pair never carries over from another request (even past a refused
    // first line), and an event of another type is no pair.
    let mut client = server.client();
    client.request(&signed_batch(&[versioned("m-10", "u7", Some("1.3.0"))]));
    let carried = client.request(&signed_batch(&["{not json".to_owned(), new("m-10")])).json();
    assert_eq!(carried["results"][1]["error"]["code"].as_str(), Some("dual_write_pair_missing"), "{carried:?}");
    let other_type = versioned("m-11", "u7", Some("1.3.0")).replace("\"event_type\":\"bet\"", "\"event_type\":\"spin\"");
    let typed = client.request(&signed_batch(&[other_type, new("m-11")])).json();
    assert_eq!(typed["results"][1]["error"]["code"].as_str(), Some("dual_write_pair_missing"), "{typed:?}");
    // v1 alone still works until it is retired.
    assert_eq!(post(&server, &versioned("m-7", "u7", Some("1.3.0"))).status, 202);
    assert_eq!(flags(r#"{"majors":{"1":"retired","2":"on"},"dual_write":true}"#).status, 200);
    assert_eq!(post(&server, &versioned("m-8", "u7", Some("1.3.0"))).error_code(), "schema_major_retired");
    assert_eq!(post(&server, &new("m-9")).status, 202, "with v1 retired there is no pair to hold to");
    let in_v2: Vec<String> = sandbox
        .tail()
        .iter()
        .filter(|line| line.topic == "events.v2")
        .map(|line| line.event_json["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(in_v2, ["m-2", "m-4", "m-9"]);
}

#[test]
fn kyc_and_rg_gates_follow_the_stream_across_a_restart() {
    let sandbox = sandbox();
    let mut server = sandbox.start();
    let bonus = |id: &str| wallet_event(id, "u42", "bonus_paid", r#"{"amount":50}"#);
    let kyc = |id: &str, level: u32| wallet_event(id, "u42", "kyc_result", &format!(r#"{{"level":{level}}}"#));
    let rg = |id: &str, status: &str| wallet_event(id, "u42", "rg_status", &format!(r#"{{"status":"{status}"}}"#));
    let before = post(&server, &bonus("b-1"));
    assert_eq!((before.status, before.error_code().as_str()), (403, "kyc_gate"), "a reward before any KYC result");
    assert_eq!(post(&server, &kyc("k-1", 1)).status, 202);
    assert_eq!(post(&server, &bonus("b-2")).error_code(), "kyc_gate", "level 1 is below 2");
    assert_eq!(post(&server, &kyc("k-2", 3)).status, 202);
    assert_eq!(post(&server, &bonus("b-3")).status, 202);
    assert_eq!(post(&server, &rg("r-1", "self_excluded")).status, 202);
    let excluded = post(&server, &bonus("b-4"));
    assert_eq!((excluded.status, excluded.error_code().as_str()), (403, "rg_gate"));
    // Another user is unaffected by u42's state; a batch judges each line by what was stored before it.
    let other = wallet_event("k-other", "u43", "kyc_result", r#"{"level":2}"#);
    let batch = server.client().request(&signed_batch(&[other, wallet_event("b-other", "u43", "bonus_paid", r#"{"amount":1}"#)])).json();
    assert_eq!(batch["accepted"].as_u64(), Some(2), "{batch:?}");
    server.stop();
    let mut server = sandbox.start();
    assert_eq!(post(&server, &bonus("b-5")).error_code(), "rg_gate", "the state is read back from the stream");
    assert_eq!(post(&server, &rg("r-2", "ok")).status, 202);
    assert_eq!(post(&server, &bonus("b-6")).status, 202);
    // An RG event whose type is written with an escape is the same type, live and when
    // read back at start (the rebuild skipped it by a byte search).
    let escaped = rg("r-3", "self_excluded").replace("\"event_type\":\"rg_status\"", "\"event_type\":\"rg\\u005fstatus\"");
    assert_eq!(post(&server, &escaped).status, 202);
    assert_eq!(post(&server, &bonus("b-6x")).error_code(), "rg_gate");
    server.kill9();
    let server = sandbox.start();
    assert_eq!(post(&server, &bonus("b-6y")).error_code(), "rg_gate", "the escaped RG event is read back");
    assert_eq!(post(&server, &rg("r-4", "ok")).status, 202);
    assert_eq!(post(&server, &bonus("b-7")).status, 202, "after kill -9 too");
    assert_eq!(post(&server, &wallet_event("b-8", "u44", "bonus_paid", r#"{"amount":1}"#)).error_code(), "kyc_gate");
}

#[test]
fn the_schema_command_registers_checks_and_lists_through_the_admin_api() {
    let sandbox = sandbox();
    let server = sandbox.start();
    let admin_addr = server.admin.to_string();
    let v1 = sandbox.path().join("bet-v1.json");
    let narrowed = sandbox.path().join("bet-int.json");
    std::fs::write(&v1, BET_V1).unwrap();
    std::fs::write(&narrowed, BET_INTEGER).unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["schema", "--admin", &admin_addr];
        all.extend_from_slice(args);
        run_sluice(&all)
    };
    let added = run(&["add", "bet", "1.0.0", v1.to_str().unwrap()]);
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let checked = run(&["check", "bet", "1.1.0", narrowed.to_str().unwrap()]);
    assert_eq!(checked.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(stderr.contains("schema_incompatible") && stderr.contains("/properties/payload/properties/bet"), "{stderr}");
    let listed = run(&["list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("\"1.0.0\""));
    let shown = run(&["show", "bet", "1.0.0"]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("\"required\""));
    assert!(run(&["flag", "bet", "--mode", "none"]).status.success());
    assert!(run(&["add", "bet", "1.1.0", narrowed.to_str().unwrap()]).status.success());
    assert!(run(&["delete", "bet", "1.1.0"]).status.success());
    assert_eq!(run(&["delete", "bet", "1.1.0"]).status.code(), Some(1));
}

/// Regression: under `durability = "fsync"`, a duplicate of an event still waiting for
/// its group commit applied its own body to the gate state at the original's offset.
#[test]
fn a_duplicate_never_changes_the_gate_state() {
    let sandbox = Sandbox::new(Setup { extra_config: CONFIG.to_owned(), durability: "fsync", ..Setup::default() });
    let server = sandbox.start();
    let status = wallet_event("X-1", "u60", "rg_status", r#"{"status":"ok"}"#);
    let fake_kyc = wallet_event("X-1", "u60", "kyc_result", r#"{"level":9}"#);
    let batch = server.client().request(&signed_batch(&[status, fake_kyc])).json();
    assert_eq!(batch["duplicates"].as_u64(), Some(1), "{batch:?}");
    let bonus = wallet_event("b-60", "u60", "bonus_paid", r#"{"amount":5}"#);
    assert_eq!(post(&server, &bonus).error_code(), "kyc_gate", "the duplicate's level 9 was never stored");
}
