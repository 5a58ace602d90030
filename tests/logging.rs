//! Structured logs: on a pipe (the journal) every line `sluice serve` writes is one JSON
//! object; `--log-level` filters; requests are never logged at the default level, and
//! at debug level refused requests are sampled, not logged one by one.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use sluice_test_support::*;

/// Runs `sluice serve` with `args`, hands the ingest address (from the JSON ready line)
/// to `drive`, then stops it with SIGTERM and returns every stderr line.
fn serve_json(sandbox: &Sandbox, args: &[&str], drive: impl FnOnce(std::net::SocketAddr)) -> Vec<String> {
    let mut child = Command::new(bin())
        .args(["serve", "--config", sandbox.config.to_str().expect("utf-8 path")])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice serve");
    let stderr = child.stderr.take().expect("stderr piped");
    let (lines_tx, lines_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        BufReader::new(stderr).lines().map_while(Result::ok).inspect(|l| lines_tx.send(l.clone()).unwrap_or(())).collect::<Vec<_>>()
    });
    let ingest = loop {
        let line = lines_rx.recv_timeout(Duration::from_secs(10)).expect("a ready line");
        let json = Json::parse(line.as_bytes()).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        if json.get("msg").and_then(Json::as_str) == Some("listening") {
            break json.get("ingest").and_then(Json::as_str).expect("ingest field").parse().expect("an address");
        }
    };
    drive(ingest);
    kill(child.id(), libc::SIGTERM);
    assert!(child.wait().expect("wait").success());
    reader.join().expect("reader")
}

fn refused_requests(ingest: std::net::SocketAddr, count: usize) {
    let mut client = Client::connect(ingest);
    for _ in 0..count {
        let answer = client.request(&post("/v1/events", Some("application/json"), &[], b"{}"));
        assert_eq!(answer.status, 401, "{}", answer.describe());
    }
}

#[test]
fn json_on_a_pipe_and_no_request_lines_at_info() {
    let sandbox = Sandbox::new(Setup::default());
    let lines = serve_json(&sandbox, &[], |ingest| refused_requests(ingest, 50));
    for line in &lines {
        let json = Json::parse(line.as_bytes()).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        for field in ["ts", "level", "target", "msg"] {
            assert!(json.get(field).and_then(Json::as_str).is_some(), "{field} missing: {line}");
        }
        assert!(["error", "warn", "info"].contains(&json.get("level").and_then(Json::as_str).unwrap()), "{line}");
    }
    let messages: Vec<_> =
        lines.iter().map(|l| Json::parse(l.as_bytes()).unwrap().get("msg").and_then(Json::as_str).unwrap().to_owned()).collect();
    assert!(messages.iter().any(|m| m == "draining") && messages.iter().any(|m| m == "drained, exiting"), "{messages:?}");
    assert!(!messages.iter().any(|m| m.starts_with("request")), "a request was logged at info: {messages:?}");
    assert!(lines.len() < 10, "50 refused requests made log lines: {messages:?}");
}

#[test]
fn debug_level_samples_refused_requests() {
    let sandbox = Sandbox::new(Setup::default());
    let lines = serve_json(&sandbox, &["--log-level", "debug"], |ingest| refused_requests(ingest, 200));
    let sampled: Vec<_> = lines.iter().filter(|l| l.contains("request refused (sampled)")).collect();
    assert!(!sampled.is_empty(), "no sampled line at debug: {lines:?}");
    assert!(sampled.len() < 20, "200 refusals were not sampled: {} lines", sampled.len());
    let json = Json::parse(sampled[0].as_bytes()).unwrap();
    assert_eq!(json.get("status").and_then(Json::as_u64), Some(401));
    assert_eq!(json.get("level").and_then(Json::as_str), Some("debug"));
}

#[test]
fn warn_level_hides_info_and_a_bad_level_is_a_usage_error() {
    let sandbox = Sandbox::new(Setup::default());
    let child = Command::new(bin())
        .args(["serve", "--config", sandbox.config.to_str().unwrap(), "--log-level", "warn", "--log-format", "text"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(700));
    kill(child.id(), libc::SIGTERM);
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(!text.contains("listening") && !text.contains("drained"), "info lines at warn level:\n{text}");

    let output = run_sluice(&["serve", "--config", sandbox.config.to_str().unwrap(), "--log-level", "loud[["]);
    let text = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("--log-level"), "{text}");
}

/// `--log-level warning` (also `errors`, `verbose`) was read as a filter for a target
/// named "warning" and silenced every line, the fatal configuration error included.
#[test]
fn level_aliases_keep_the_lines_of_their_level_and_unknown_words_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    let bad = temp.path().join("bad.toml");
    std::fs::write(&bad, "[storage]\ndurability = \"disk\"\n").unwrap();
    for level in ["warning", "errors", "verbose", "WARN", "error"] {
        let output = run_sluice(&["serve", "--config", bad.to_str().unwrap(), "--log-level", level, "--log-format", "text"]);
        let text = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{level}: {text}");
        assert!(text.contains("storage.durability"), "--log-level {level} silenced the fatal error: {text:?}");
    }
    for word in ["loud", "warnings-only", "info,chatty"] {
        let output = run_sluice(&["check-config", "--config", bad.to_str().unwrap(), "--log-level", word]);
        let text = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{word}: {text}");
        assert!(text.contains("is not a level"), "{word}: {text}");
    }
}
