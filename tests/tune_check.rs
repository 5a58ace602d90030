//! `sluice tune --check` on the machine running the tests: every line is a finding with a
//! status, observed and recommended values, and a fix for each warning and failure; the
//! io_uring check is there and passes (the server tests need io_uring anyway); the exit
//! status follows the findings; usage and configuration errors exit 2.

use std::process::Output;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");
const STATUSES: [&str; 4] = ["ok", "info", "warn", "fail"];

fn sluice(args: &[&str]) -> Output {
    std::process::Command::new(BIN).args(args).output().expect("run sluice")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

/// The expected exit status: 1 if any finding failed, else 0.
fn status_for(failed: bool) -> Option<i32> {
    Some(if failed { 1 } else { 0 })
}

#[test]
fn json_lines_are_findings_with_fixes_for_every_warning() {
    let output = sluice(&["tune", "--check", "--json"]);
    let text = stdout(&output);
    let findings: Vec<Value> = text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect();
    assert!(findings.len() >= 15, "{text}");
    let mut checks = Vec::new();
    for finding in &findings {
        let status = finding["status"].as_str().expect("status");
        assert!(STATUSES.contains(&status), "{finding}");
        for key in ["check", "observed", "recommended", "note"] {
            assert!(finding[key].is_string(), "{key} missing: {finding}");
        }
        assert!(!finding["observed"].as_str().unwrap().is_empty(), "{finding}");
        if status == "warn" || status == "fail" {
            assert!(finding["fix"].as_str().is_some_and(|fix| !fix.is_empty()), "no fix: {finding}");
        }
        checks.push(finding["check"].as_str().unwrap().to_owned());
    }
    let uring = findings.iter().find(|finding| finding["check"] == "io_uring").expect("an io_uring finding");
    assert_eq!(uring["status"], "ok", "{uring}");
    for wanted in
        ["kernel.version", "rlimit.nofile", "rlimit.memlock", "net.core.somaxconn", "vm.max_map_count", "cpu.governor", "irqbalance"]
    {
        assert!(checks.iter().any(|check| check == wanted), "no {wanted} finding in {checks:?}");
    }
    let failed = findings.iter().any(|finding| finding["status"] == "fail");
    assert_eq!(output.status.code(), status_for(failed), "{text}{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn text_lines_match_the_json_findings() {
    let json = stdout(&sluice(&["tune", "--check", "--json"]));
    let output = sluice(&["tune", "--check"]);
    let text = stdout(&output);
    assert_eq!(text.lines().count(), json.lines().count(), "{text}");
    let mut failed = false;
    for (line, json_line) in text.lines().zip(json.lines()) {
        let finding: Value = serde_json::from_str(json_line).unwrap();
        let (status, rest) = line.split_once(' ').expect("status first");
        assert!(STATUSES.contains(&status), "{line}");
        let check = finding["check"].as_str().unwrap();
        assert!(rest.trim_start().starts_with(&format!("{check} ")), "{line} is not {check}");
        assert!(line.contains(" observed ") && line.contains("; recommended "), "{line}");
        if status == "warn" || status == "fail" {
            assert!(line.contains("; fix: "), "no fix: {line}");
        }
        failed |= status == "fail";
    }
    assert!(text.lines().any(|line| line.starts_with("ok ") && line.contains(" io_uring ")), "{text}");
    assert_eq!(output.status.code(), status_for(failed), "{text}");
    let summary = String::from_utf8_lossy(&output.stderr);
    assert!(summary.contains("tune --check: ") && summary.contains(" checks: "), "{summary}");
}

#[test]
fn the_configuration_sets_what_the_limits_are_checked_against() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, "[ingest]\nshards = 3\nconnections_max = 1000\n[storage]\npartitions = 8\n").unwrap();
    let output = sluice(&["tune", "--check", "--json", "--config", config.to_str().unwrap()]);
    let nofile: Value = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|finding| finding["check"] == "rlimit.nofile")
        .expect("an rlimit.nofile finding");
    // 3 x 1000 connections + 3 x 8 segment files + 64.
    assert!(nofile["recommended"].as_str().unwrap().starts_with(">= 3088 "), "{nofile}");
}

#[test]
fn bad_usage_and_bad_configuration_exit_2() {
    let output = sluice(&["tune"]);
    assert_eq!(output.status.code(), Some(2), "tune without --check");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--check"));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[storage]\npartitions = 0\n").unwrap();
    let output = sluice(&["tune", "--check", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty(), "no findings for a bad configuration");
    assert!(String::from_utf8_lossy(&output.stderr).contains("storage.partitions"));
    assert_eq!(sluice(&["tune", "--check", "--config", "/nonexistent/sluice.toml"]).status.code(), Some(2));
}
