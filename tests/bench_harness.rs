//! `sluice bench` against a real `sluice serve` over real sockets: every answer is
//! counted by kind, bad signatures are all 401, duplicates all 200, and `sluice tail`
//! holds exactly the unique events that were accepted; request classes are counted
//! apart and land in the topics their event types route to; a comparison run gives
//! finite ratios; request templates are sent as written and every 2xx counts its events.
//! No throughput assertions.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use sluice_test_support::{KID, Sandbox, Server, Setup, auth_headers, bin, event, unique_prefix};

fn run_bench(args: &[&str]) -> Output {
    Command::new(bin()).arg("bench").args(args).stdin(Stdio::null()).output().expect("run sluice bench")
}

fn run_bench_in(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(bin()).arg("bench").args(args).current_dir(dir).stdin(Stdio::null()).output().expect("run sluice bench")
}

/// Runs `sluice bench --json` against `server` and returns the report.
fn bench(sandbox: &Sandbox, server: &Server, extra: &[&str]) -> Value {
    let url = format!("http://{}", server.ingest);
    let keys = sandbox.keys.to_str().expect("utf-8 path");
    let mut args = vec!["--url", url.as_str(), "--keys-file", keys, "--kid", KID, "--json"];
    args.extend_from_slice(extra);
    let output = run_bench(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "sluice bench {args:?} failed: {:?}\n{stderr}", output.status);
    assert!(stderr.contains("built "), "the build time is printed: {stderr}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)))
}

fn count(value: &Value, path: &[&str]) -> u64 {
    let mut at = value;
    for key in path {
        at = &at[*key];
    }
    at.as_u64().unwrap_or(0)
}

/// The accounting every run must satisfy, whatever its speed. Returns the unique
/// events the server accepted.
fn assert_counts_add_up(report: &Value) -> u64 {
    assert_eq!(count(report, &["errors", "total"]), 0, "no connection errors: {report}");
    assert_eq!(count(report, &["requests", "unanswered"]), 0, "every request answered: {report}");
    let sent = |kind| count(report, &["requests", "sent_by_kind", kind]);
    let (unique, duplicate, bad) = (sent("unique"), sent("duplicate"), sent("bad_signature"));
    assert!(unique > 0 && duplicate > 0 && bad > 0, "the mix has every kind: {report}");
    assert_eq!(count(report, &["requests", "sent"]), unique + duplicate + bad);
    assert_eq!(count(report, &["requests", "completed"]), unique + duplicate + bad);
    // Every bad signature is refused, and nothing else is.
    assert_eq!(report["status_by_kind"]["bad_signature"], serde_json::json!({ "401": bad }), "{report}");
    assert_eq!(count(report, &["status", "401"]), bad);
    // Of an original and its copies exactly one is stored (202), whichever the server
    // saw first; every other copy is answered 200 duplicate.
    assert_eq!(count(report, &["status", "202"]), unique, "{report}");
    assert_eq!(count(report, &["status", "200"]), duplicate, "{report}");
    let answered_ok = count(report, &["status", "202"]) + count(report, &["status", "200"]);
    assert_eq!(answered_ok + bad, unique + duplicate + bad, "no other status: {report}");
    unique
}

fn assert_stored_exactly(sandbox: &Sandbox, events: u64) {
    let stored = sandbox.tail();
    assert_eq!(stored.len() as u64, events, "sluice tail shows each accepted event once");
    let mut ids: Vec<String> = stored.iter().map(|line| line.event_id()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len() as u64, events, "no event id is stored twice");
}

#[test]
fn closed_loop_counts_every_answer_and_stores_each_unique_event_once() {
    let sandbox = Sandbox::new(Setup::default());
    let mut server = sandbox.start();
    let report = bench(
        &sandbox,
        &server,
        &[
            "--connections",
            "4",
            "--pipeline",
            "2",
            "--duration",
            "1",
            "--requests",
            "1500",
            "--users",
            "50",
            "--duplicate-ratio",
            "0.2",
            "--bad-signature-ratio",
            "0.1",
        ],
    );
    assert_eq!(report["mode"], "closed");
    assert_eq!(count(&report, &["plan", "requests"]), 1500);
    let unique = assert_counts_add_up(&report);
    assert!(count(&report, &["latency_us", "count"]) > 0 && report["latency_us"]["p99"].as_f64().unwrap_or(0.0) > 0.0);
    if report["pool_exhausted"] == true {
        assert_eq!(count(&report, &["requests", "sent"]), 1500, "an exhausted pool was sent whole");
    }
    server.stop();
    assert_stored_exactly(&sandbox, unique);
}

#[test]
fn open_loop_with_idle_connections_counts_every_answer() {
    let sandbox = Sandbox::new(Setup::default());
    let mut server = sandbox.start();
    let svg = sandbox.path().join("latency.svg");
    let report = bench(
        &sandbox,
        &server,
        &[
            "--rate",
            "1500",
            "--duration",
            "1",
            "--connections",
            "4",
            "--duplicate-ratio",
            "0.2",
            "--bad-signature-ratio",
            "0.1",
            "--idle-connections",
            "20",
            "--idle-ping",
            "0.05",
            "--svg",
            svg.to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(report["mode"], "open");
    assert_eq!(count(&report, &["plan", "requests"]), 1500, "rate x duration requests are built");
    assert_eq!(count(&report, &["requests", "sent"]), 1500, "an open-loop run sends its whole schedule");
    let unique = assert_counts_add_up(&report);
    assert!(report["schedule"]["max_lag_us"].is_number());
    assert_eq!(count(&report, &["idle", "ready_at_start"]), 20);
    assert_eq!(count(&report, &["idle", "open_at_end"]), 20);
    assert!(count(&report, &["idle", "pings"]) > 0, "idle connections ping: {report}");
    assert_eq!(count(&report, &["idle", "ping_failures"]), 0);
    let plot = std::fs::read_to_string(&svg).expect("SVG written");
    assert!(plot.starts_with("<svg") && plot.trim_end().ends_with("</svg>"));
    server.stop();
    assert_stored_exactly(&sandbox, unique);
}

#[test]
fn batches_store_every_event_of_every_unique_batch() {
    let sandbox = Sandbox::new(Setup::default());
    let mut server = sandbox.start();
    let report = bench(
        &sandbox,
        &server,
        &[
            "--connections",
            "2",
            "--duration",
            "1",
            "--requests",
            "120",
            "--batch",
            "5",
            "--event-bytes",
            "500",
            "--duplicate-ratio",
            "0.2",
            "--bad-signature-ratio",
            "0.1",
        ],
    );
    assert_eq!(report["batch"], 5);
    assert!(report["url"].as_str().is_some_and(|url| url.ends_with("/v1/events/batch")));
    assert_eq!(count(&report, &["errors", "total"]), 0);
    let unique = count(&report, &["requests", "sent_by_kind", "unique"]);
    let bad = count(&report, &["requests", "sent_by_kind", "bad_signature"]);
    assert_eq!(report["status_by_kind"]["bad_signature"], serde_json::json!({ "401": bad }));
    server.stop();
    assert_stored_exactly(&sandbox, unique * 5);
}

/// Optional events (`telemetry`) go to a topic of their own, the rest to `events`.
const CLASS_TOPICS: &str = "\n[[topics]]\nname = \"telemetry\"\nevent_types = [\"telemetry\"]\npartitions = 2\n\n\
                            [[topics]]\nname = \"events\"\nevent_types = [\"*\"]\npartitions = 4\n";

/// Per class: sent = accepted + refused (429, 503, other) + unanswered, and the classes
/// add up to the requests sent; the timeline holds every request once.
fn assert_classes_add_up(report: &Value) {
    let mut sent_total = 0;
    for class in ["critical", "optional"] {
        let c = |key: &str| count(report, &["classes", class, key]);
        let sent = c("sent");
        assert!(sent > 0, "{class}: the mix has both classes: {report}");
        let settled = c("accepted") + c("refused_429") + c("refused_503") + c("refused_other") + c("unanswered");
        assert_eq!(settled, sent, "{class}: every request settled once: {}", report["classes"][class]);
        assert_eq!(c("answered") + c("unanswered"), sent, "{class}");
        let timeline = report["timeline"].as_array().expect("timeline");
        let per_second = |key: &str| timeline.iter().map(|second| second[class][key].as_u64().unwrap_or(0)).sum::<u64>();
        assert_eq!(per_second("sent"), sent, "{class}: the timeline's seconds add up");
        assert_eq!(per_second("accepted"), c("accepted"), "{class}");
        assert!(report["classes"][class]["latency_us"]["p99"].as_f64().is_some_and(|p99| p99 > 0.0));
        sent_total += sent;
    }
    assert_eq!(sent_total, count(report, &["requests", "sent"]), "the classes add up to the requests sent");
}

#[test]
fn overload_mode_counts_each_class_apart_and_routes_it_to_its_topic() {
    let sandbox = Sandbox::new(Setup { extra_config: CLASS_TOPICS.to_owned(), ..Setup::default() });
    let mut server = sandbox.start();
    let probe = format!("http://{}/healthz", server.ingest);
    let report = bench(
        &sandbox,
        &server,
        &["--rate", "1000", "--duration", "1", "--connections", "4", "--optional-ratio", "0.5", "--probe", &probe, "--probe-every", "50"],
    );
    assert_eq!(report["optional_ratio"], 0.5);
    assert_eq!(report["optional_event_type"], "telemetry");
    assert_eq!(count(&report, &["errors", "total"]), 0, "{report}");
    assert_classes_add_up(&report);
    let optional_sent = count(&report, &["classes", "optional", "sent"]);
    assert!((300..=700).contains(&optional_sent), "about half of 1000: {optional_sent}");
    assert!(report["timeline"].as_array().is_some_and(|seconds| !seconds.is_empty()));
    let probes = count(&report, &["probe", "sent"]);
    assert!(probes >= 5, "a probe every 50 ms for 1 s: {}", report["probe"]);
    assert_eq!(count(&report, &["probe", "answered"]), probes, "{}", report["probe"]);
    assert_eq!(count(&report, &["probe", "failed"]) + count(&report, &["probe", "timeouts"]), 0);
    assert!(report["probe"]["latency_us"]["max"].as_f64().is_some_and(|max| max > 0.0));
    // No overload was configured: every event is stored, in the topic of its class.
    server.stop();
    let stored = sandbox.tail();
    for (class, topic) in [("critical", "events"), ("optional", "telemetry")] {
        let accepted = count(&report, &["classes", class, "status", "202"]);
        assert_eq!(accepted, count(&report, &["classes", class, "sent"]), "{class}: all stored (202)");
        let in_topic = stored.iter().filter(|line| line.topic == topic).count() as u64;
        assert_eq!(in_topic, accepted, "{class} events are in topic {topic}");
    }
}

#[test]
fn compare_mode_gives_both_series_and_finite_ratios() {
    let sandbox = Sandbox::new(Setup::default());
    let mut server = sandbox.start();
    let reference = format!("http://{}/v1/events", server.ingest);
    let report =
        bench(&sandbox, &server, &["--rate", "800", "--duration", "1", "--connections", "2", "--compare-url", &reference, "--rounds", "1"]);
    assert_eq!(report["reference_url"], reference.as_str());
    assert_eq!(report["rounds"], 1);
    assert_eq!(report["interrupted"], false);
    for side in ["reference", "sluice"] {
        let series = report[side].as_array().expect("series");
        assert_eq!(series.len(), 1, "{side}: one round");
        assert!(series[0]["requests_per_sec"].as_f64().is_some_and(|rps| rps > 0.0), "{side}: {}", series[0]);
        assert_eq!(series[0]["errors"], 0);
        assert!(report["mean"][side]["p99_us"].as_f64().is_some_and(|p99| p99 > 0.0));
    }
    for key in ["requests_per_sec", "p50", "p99"] {
        let ratio = report["ratio"][key].as_f64().unwrap_or(f64::NAN);
        assert!(ratio.is_finite() && ratio > 0.0, "ratio.{key} = {ratio}: {report}");
    }
    server.stop();
    assert_stored_exactly(&sandbox, 1600);
}

/// `--request-templates` lines as tuning/iggy_bench.sh writes them, here for real signed
/// single events of sluice: each template is sent as written, over and over.
fn signed_templates(count: usize) -> (String, Vec<String>) {
    let prefix = unique_prefix();
    let ids: Vec<String> = (0..count).map(|index| format!("{prefix}-t{index}")).collect();
    let lines: Vec<String> = ids
        .iter()
        .map(|id| {
            let body = event(id, "u_7");
            let mut headers: Vec<(String, String)> = vec![("Host".into(), "sluice.test".into())];
            headers.push(("Content-Type".into(), "application/json".into()));
            headers.extend(auth_headers(body.as_bytes()));
            headers.push(("Content-Length".into(), body.len().to_string()));
            let template = serde_json::json!({
                "method": "POST", "path": "/v1/events", "headers": headers, "body": body, "events": 1, "key": "u_7", "partition": null,
            });
            template.to_string()
        })
        .collect();
    (lines.join("\n") + "\n", ids)
}

#[test]
fn request_templates_are_sent_as_written_and_every_2xx_counts_its_events() {
    let sandbox = Sandbox::new(Setup::default());
    let mut server = sandbox.start();
    let (templates, ids) = signed_templates(3);
    let file = sandbox.path().join("templates.jsonl");
    std::fs::write(&file, templates).expect("write the templates");
    let file = file.to_str().expect("utf-8 path");
    let url = format!("http://{}", server.ingest);
    let args = ["--url", url.as_str(), "--request-templates", file, "--connections", "2", "--duration", "1", "--json"];
    let output = run_bench(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "sluice bench {args:?} failed: {:?}\n{stderr}", output.status);
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert_eq!(report["url"], url.as_str(), "the URL gives only host and port");
    assert_eq!(report["request_templates"]["templates"], 3, "{report}");
    assert_eq!(
        (report["request_templates"]["events_min"].as_u64(), report["request_templates"]["events_max"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(count(&report, &["errors", "total"]), 0, "{report}");
    assert_eq!(count(&report, &["requests", "unanswered"]), 0, "{report}");
    let completed = count(&report, &["requests", "completed"]);
    assert!(completed > 3, "the three templates are sent again and again: {report}");
    // Each template's event is stored once (202); every later copy is a duplicate (200).
    assert_eq!(report["status"], serde_json::json!({ "202": 3, "200": completed - 3 }), "{report}");
    let (requests_per_sec, events_per_sec) =
        (report["throughput"]["requests_per_sec"].as_f64().unwrap_or(0.0), report["throughput"]["events_per_sec"].as_f64().unwrap_or(-1.0));
    assert!(requests_per_sec > 0.0 && events_per_sec == requests_per_sec, "every 2xx counts its one event: {report}");
    server.stop();
    let mut stored: Vec<String> = sandbox.tail().iter().map(|line| line.event_id()).collect();
    stored.sort();
    assert_eq!(stored, ids, "the templates' events, each once");

    for (extra, needle) in [(&["--batch", "10"][..], "--batch"), (&["--url", "http://127.0.0.1:1/v1/events"], "HOST[:PORT]")] {
        let mut args = vec!["--request-templates", file, "--duration", "0.2"];
        args.extend_from_slice(extra);
        let output = run_bench(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(needle), "{extra:?}: {stderr}");
    }
    let bad = sandbox.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"method\":\"POST\",\"path\":\"/\",\"headers\":[],\"body\":\"\",\"events\":1}\n{\"method\":\"POST\"}\n")
        .expect("write");
    let output = run_bench(&["--request-templates", bad.to_str().expect("utf-8 path"), "--duration", "0.2"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.jsonl line 2: no \"path\" key"), "{stderr}");
}

#[test]
fn help_explains_every_option() {
    let output = run_bench(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).expect("utf-8 help");
    for option in [
        "--url",
        "--keys-file",
        "--kid",
        "--secret",
        "--connections",
        "--threads",
        "--duration",
        "--warmup",
        "--rate",
        "--pipeline",
        "--requests",
        "--batch",
        "--event-bytes",
        "--users",
        "--duplicate-ratio",
        "--bad-signature-ratio",
        "--idle-connections",
        "--idle-ping",
        "--timeout",
        "--seed",
        "--json",
        "--svg",
        "--fsync-probe",
        "--fsync-probe-secs",
        "--max-error-ratio",
        "--optional-ratio",
        "--optional-event-type",
        "--probe",
        "--probe-every",
        "--timeline",
        "--compare-url",
        "--rounds",
        "--request-templates",
    ] {
        assert!(help.contains(&format!("{option} ")) || help.contains(&format!("{option}\n")), "--help does not mention {option}");
    }
    assert!(help.contains("latency_us"), "--help names the JSON keys");
}

#[test]
fn bad_usage_exits_2_and_no_server_exits_1() {
    let secret = sluice_test_support::whsec(&sluice_test_support::SECRET);
    let signing = ["--secret", secret.as_str(), "--kid", KID, "--requests", "10", "--duration", "0.2"];
    for bad in [
        &["--duplicate-ratio", "1.5"][..],
        &["--url", "https://127.0.0.1:1/v1/events"],
        &["--url", "127.0.0.1:8080"],
        &["--batch", "0"],
        &["--no-such-option"],
        &["--optional-ratio", "2"],
        &["--optional-event-type", "a b"],
        &["--probe", "https://127.0.0.1:1/healthz"],
        &["--compare-url", "http://127.0.0.1:1/v1/events", "--rounds", "0"],
    ] {
        let mut args = signing.to_vec();
        args.extend_from_slice(bad);
        let output = run_bench(&args);
        assert_eq!(output.status.code(), Some(2), "{bad:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    let empty = tempfile::tempdir().expect("temp dir");
    let output = run_bench_in(empty.path(), &["--kid", KID, "--duration", "1"]);
    assert_eq!(output.status.code(), Some(2), "--kid without a key source: {}", String::from_utf8_lossy(&output.stderr));

    let closed_port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("http://127.0.0.1:{closed_port}");
    let mut args = signing.to_vec();
    args.extend_from_slice(&["--url", &url, "--timeout", "2"]);
    let output = run_bench(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
}
