//! Clock-skew quarantine (the article's incident, section 15): a validly signed request
//! outside the timestamp window is answered 401 and stores nothing, but is kept with its
//! partner; `sluice quarantine list` shows it, the metrics count it per partner, and
//! `sluice quarantine replay` stores it once (a second replay sends nothing). Replay keeps
//! its place per partner: `--partner A` leaves B's requests in the same file for a later
//! run, and a partner the server refuses to hear from this host is reported blocked
//! (exit 1), its requests kept until a run after the fix.

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

/// `(partner, replayed)` per line of `sluice quarantine list`, in file order.
fn listed(config: &str) -> Vec<(String, bool)> {
    let list = run_sluice(&["quarantine", "list", "--config", config]);
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    let text = String::from_utf8(list.stdout).expect("utf-8");
    let lines: Vec<Json> = text.lines().map(|line| Json::parse(line.as_bytes()).expect("a JSON line")).collect();
    let file = lines[0].get("file").cloned();
    assert!(lines.iter().all(|line| line.get("file").cloned() == file), "one shard, one file: {text}");
    lines
        .iter()
        .map(|line| {
            (line.get("partner").and_then(Json::as_str).expect("a partner").to_owned(), line.get("replayed") == Some(&Json::Bool(true)))
        })
        .collect()
}

/// `sluice quarantine replay --config C --to ADDR [extra]`: (exit status, stdout, stderr).
fn replay(config: &str, server: &Server, extra: &[&str]) -> (Option<i32>, String, String) {
    let to = server.ingest.to_string();
    let mut args = vec!["quarantine", "replay", "--config", config, "--to", &to];
    args.extend_from_slice(extra);
    let output = run_sluice(&args);
    (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn stored_ids(sandbox: &Sandbox) -> Vec<String> {
    let mut ids: Vec<String> = sandbox.tail().iter().map(TailLine::event_id).collect();
    ids.sort();
    ids
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

/// `replay --partner A` moved the file's one offset past B's requests, so a later
/// `replay --partner B` sent nothing while the summary said they were left.
#[test]
fn replay_partner_a_then_partner_b_delivers_both() {
    let sandbox = Sandbox::new(Setup { shards: 1, ..Setup::default() });
    let server = sandbox.start();
    let config = sandbox.config.to_str().unwrap();
    let p = unique_prefix();
    let (a1, b1, a2, b2) = (format!("{p}-a1"), format!("{p}-b1"), format!("{p}-a2"), format!("{p}-b2"));
    quarantine_events(&server, &[("tests", &a1), ("other", &b1), ("tests", &a2), ("other", &b2)]);
    let partners = |flags: [bool; 4]| -> Vec<(String, bool)> {
        ["tests", "other", "tests", "other"].iter().zip(flags).map(|(partner, replayed)| (partner.to_string(), replayed)).collect()
    };
    assert_eq!(listed(config), partners([false; 4]));

    let (status, said, errors) = replay(config, &server, &["--partner", "tests"]);
    assert_eq!(status, Some(0), "{said} {errors}");
    assert!(said.contains("replayed 2 requests: 2 events accepted, 0 duplicates, 0 rejected; 2 requests of other partners left"), "{said}");
    assert_eq!(stored_ids(&sandbox), [a1.clone(), a2.clone()]);
    assert_eq!(listed(config), partners([true, false, true, false]));

    let (status, said, errors) = replay(config, &server, &["--partner", "other"]);
    assert_eq!(status, Some(0), "{said} {errors}");
    assert!(said.contains("replayed 2 requests: 2 events accepted, 0 duplicates, 0 rejected; 0 requests of other partners left"), "{said}");
    assert_eq!(stored_ids(&sandbox), [a1, a2, b1, b2]);
    assert_eq!(listed(config), partners([true; 4]));

    for extra in [&[][..], &["--partner", "other"], &["--partner", "tests"]] {
        let (status, said, _) = replay(config, &server, extra);
        assert_eq!(status, Some(0));
        assert!(said.starts_with("replayed 0 requests"), "{extra:?}: {said}");
    }
    assert_eq!(sandbox.tail().len(), 4, "nothing sent twice");
}

/// Replay counted a 403 `ip_not_allowed` as done, so the requests of a partner whose
/// allow-list excludes the operator's host were never sent again.
#[test]
fn a_partner_refused_by_its_allow_list_is_blocked_and_replayed_after_the_fix() {
    let sandbox = Sandbox::new(Setup { shards: 1, ..Setup::default() });
    let server = sandbox.start();
    let config = sandbox.config.to_str().unwrap();
    let p = unique_prefix();
    let (a1, b1, a2, b2) = (format!("{p}-a1"), format!("{p}-b1"), format!("{p}-a2"), format!("{p}-b2"));
    // The partners' host is 127.0.0.2; the operator replays from 127.0.0.1.
    let partners_host = Client::connect_from(server.ingest, [127, 0, 0, 2].into());
    quarantine_events_on(partners_host, &[("tests", &a1), ("other", &b1), ("tests", &a2), ("other", &b2)]);

    let reload = |ring: &str| {
        std::fs::write(&sandbox.keys, ring).unwrap();
        let answer = server.admin_client().request(&post("/admin/reload", None, &[], b""));
        assert_eq!(answer.status, 200, "{}", answer.describe());
    };
    let original = std::fs::read_to_string(&sandbox.keys).unwrap();
    reload(&format!("{original}\n[[partners]]\nname = \"other\"\nallow_cidrs = [\"127.0.0.2/32\"]\n"));

    let (status, said, errors) = replay(config, &server, &[]);
    assert_eq!(status, Some(1), "{said} {errors}");
    assert!(
        said.contains("replayed 2 requests: 2 events accepted, 0 duplicates, 0 rejected; 0 requests of other partners left; 2 requests of 1 blocked partners left"),
        "{said}"
    );
    assert!(errors.contains("partner \"other\" blocked: the server answered 403 ip_not_allowed"), "{errors}");
    assert!(errors.contains("allow_cidrs"), "says what to do: {errors}");
    assert_eq!(stored_ids(&sandbox), [a1.clone(), a2.clone()]);
    let flags: Vec<bool> = listed(config).into_iter().map(|(_, replayed)| replayed).collect();
    assert_eq!(flags, [true, false, true, false]);

    reload(&format!("{original}\n[[partners]]\nname = \"other\"\nallow_cidrs = [\"127.0.0.2/32\", \"127.0.0.1/32\"]\n"));
    let (status, said, errors) = replay(config, &server, &[]);
    assert_eq!(status, Some(0), "{said} {errors}");
    assert!(said.contains("replayed 2 requests: 2 events accepted"), "{said}");
    assert_eq!(stored_ids(&sandbox), [a1, a2, b1, b2]);
    assert!(listed(config).iter().all(|(_, replayed)| *replayed));
    let (_, said, _) = replay(config, &server, &[]);
    assert!(said.starts_with("replayed 0 requests"), "{said}");
}
