//! The command line of SPEC §3: check-config, keys gen/list/rotate, tail's partition
//! check, serve's SIGTERM drain and exit status, and the health and metrics endpoints.

use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::Duration;

use sluice_test_support::*;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn exit_code(output: &Output) -> Option<i32> {
    output.status.code()
}

#[test]
fn check_config_prints_effective_values() {
    let sandbox = Sandbox::new(Setup { shards: 3, partitions: 16, durability: "fsync", ..Setup::default() });
    let config = sandbox.config.to_str().unwrap();
    let output = run_sluice(&["check-config", "--config", config]);
    assert_eq!(exit_code(&output), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    for needle in [
        "[ingest]",
        "shards = 3",
        "[storage]",
        "partitions = 16",
        "durability = \"fsync\"",
        "segment_bytes = 1048576",
        "[auth]",
        "[admin]",
        "timestamp_tolerance_secs = 300",
        "body_bytes_max = 65536",
        "io_uring_lockdown = true",
    ] {
        assert!(text.contains(needle), "check-config output lacks {needle:?}:\n{text}");
    }
    // Defaults are printed too, and the output is itself a valid configuration.
    assert!(text.contains("header_timeout_ms = "), "{text}");
    let again = sandbox.path().join("effective.toml");
    std::fs::write(&again, &text).unwrap();
    let output = run_sluice(&["check-config", "--config", again.to_str().unwrap()]);
    assert_eq!(exit_code(&output), Some(0), "effective config does not validate: {}", stderr(&output));
    assert_eq!(stdout(&output), text, "effective config is not a fixed point");
}

#[test]
fn check_config_rejects_bad_configurations_with_status_2() {
    let temp = tempfile::tempdir().unwrap();
    for (name, toml, needle) in [
        ("unknown key", "[ingest]\nlistne = \"127.0.0.1:1\"\n", "listne"),
        ("unknown section", "[ingets]\nshards = 1\n", "ingets"),
        ("bad durability", "[storage]\ndurability = \"disk\"\n", "storage.durability"),
        ("zero partitions", "[storage]\npartitions = 0\n", "storage.partitions"),
        ("bad address", "[ingest]\nlisten = \"nowhere\"\n", "ingest.listen"),
        ("small segments", "[storage]\nsegment_bytes = 4096\n", "storage.segment_bytes"),
        (
            "segment below twice the body",
            "[ingest]\nbody_bytes_max = 1048576\n[storage]\nsegment_bytes = 2000000\n",
            "storage.segment_bytes",
        ),
        ("wrong type", "[ingest]\nshards = \"two\"\n", "shards"),
        ("not TOML", "[ingest\n", ""),
    ] {
        let path = temp.path().join("bad.toml");
        std::fs::write(&path, toml).unwrap();
        let output = run_sluice(&["check-config", "--config", path.to_str().unwrap()]);
        assert_eq!(exit_code(&output), Some(2), "{name}: {:?} {}", output.status, stderr(&output));
        assert!(stderr(&output).contains(needle), "{name}: error does not name {needle:?}: {}", stderr(&output));
        assert!(stdout(&output).is_empty(), "{name}: printed a config anyway");
    }
    let missing = temp.path().join("missing.toml");
    let output = run_sluice(&["check-config", "--config", missing.to_str().unwrap()]);
    assert_eq!(exit_code(&output), Some(2), "missing file: {}", stderr(&output));
    // Bad usage is 2 as well.
    assert_eq!(exit_code(&run_sluice(&["check-config"])), Some(2));
    assert_eq!(exit_code(&run_sluice(&["no-such-command"])), Some(2));
    // And `serve` refuses the same bad file with 2 before binding anything.
    let path = temp.path().join("bad.toml");
    std::fs::write(&path, "[storage]\ndurability = \"disk\"\n").unwrap();
    assert_eq!(exit_code(&run_sluice(&["serve", "--config", path.to_str().unwrap()])), Some(2));
}

#[test]
fn check_config_reads_the_key_ring_and_the_jwks_files() {
    let sandbox =
        Sandbox::new(Setup { extra_keys: "[[partners]]\nname = \"p\"\nallow_cidrs = [\"10.0.0.0/99\"]\n".into(), ..Setup::default() });
    let output = run_sluice(&["check-config", "--config", sandbox.config.to_str().unwrap()]);
    assert_eq!(exit_code(&output), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("allow_cidrs"), "{}", stderr(&output));
    let jwks = sandbox.path().join("missing-jwks.json");
    let extra_config = format!(
        "\n[auth.jwt]\n[[auth.jwt.issuers]]\nissuer = \"https://idp\"\naudience = \"a\"\nalgorithms = [\"EdDSA\"]\njwks_file = {:?}\n",
        jwks.display().to_string()
    );
    let sandbox = Sandbox::new(Setup { extra_config, ..Setup::default() });
    let output = run_sluice(&["check-config", "--config", sandbox.config.to_str().unwrap()]);
    assert_eq!(exit_code(&output), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("missing-jwks.json"), "the error names the file: {}", stderr(&output));
}

/// `created kid <KID> ...` → KID.
fn created_kid(output: &Output) -> String {
    assert_eq!(exit_code(output), Some(0), "{}", stderr(output));
    let text = stdout(output);
    let kid = text.split_whitespace().skip_while(|w| *w != "kid").nth(1).unwrap_or_else(|| panic!("no kid in {text:?}"));
    kid.to_owned()
}

#[test]
fn keys_gen_list_rotate() {
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("ring").join("keys.toml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let f = file.to_str().unwrap();
    let first = created_kid(&run_sluice(&["keys", "gen", "--keys-file", f, "--partner", "acme"]));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "key ring file mode");
    let text = std::fs::read_to_string(&file).unwrap();
    let secrets: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("secret"))
        .map(|rest| rest.trim().trim_start_matches('=').trim().trim_matches('"').to_owned())
        .collect();
    assert_eq!(secrets.len(), 1, "{text}");
    assert!(secrets[0].starts_with("whsec_"), "secret form: {}", secrets[0]);

    let list = run_sluice(&["keys", "list", "--keys-file", f]);
    assert_eq!(exit_code(&list), Some(0), "{}", stderr(&list));
    let listed = stdout(&list);
    assert!(listed.contains(&first), "list lacks {first}: {listed}");
    assert!(listed.contains("acme"), "{listed}");
    assert!(!listed.contains("whsec_") && !listed.contains(&secrets[0][6..]), "list shows a secret: {listed}");

    let second = created_kid(&run_sluice(&["keys", "rotate", "--keys-file", f, "--partner", "acme", "--grace-days", "3"]));
    assert_ne!(first, second);
    let list = run_sluice(&["keys", "list", "--keys-file", f]);
    let listed = stdout(&list);
    assert!(listed.contains(&first) && listed.contains(&second), "{listed}");
    assert!(!listed.contains("whsec_"), "list shows a secret: {listed}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.matches("[[keys]]").count(), 2, "{text}");
    assert!(text.contains("grace_days = 3"), "old key has no grace period: {text}");
    // Every secret in the file stays out of every listing.
    for line in text.lines().filter_map(|l| l.trim().strip_prefix("secret")) {
        let secret = line.trim().trim_start_matches('=').trim().trim_matches('"');
        assert!(!listed.contains(&secret[6..]), "list shows a secret");
    }
    // Rotating a partner without keys is refused.
    let output = run_sluice(&["keys", "rotate", "--keys-file", f, "--partner", "nobody"]);
    assert_ne!(exit_code(&output), Some(0));
    assert!(!stderr(&output).contains("whsec_"));

    // The generated ring works with a server: sign with the rotated-out and the new key.
    let secret_of = |kid: &str| -> Vec<u8> {
        let text = std::fs::read_to_string(&file).unwrap();
        let block = text.split("[[keys]]").find(|b| b.contains(&format!("\"{kid}\""))).expect("kid in file");
        let line = block.lines().find(|l| l.trim_start().starts_with("secret")).expect("secret line");
        let value = line.split('"').nth(1).expect("quoted secret");
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.decode(value.strip_prefix("whsec_").unwrap()).expect("base64")
    };
    let data = temp.path().join("data");
    let config = temp.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "[ingest]\nlisten = \"127.0.0.1:0\"\nshards = 1\nbody_bytes_max = 65536\n[storage]\ndata_dir = {:?}\npartitions = 2\nsegment_bytes = 1048576\n[auth]\nkeys_file = {f:?}\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    let server = Server::start(&config);
    let mut client = server.client();
    for (i, kid) in [&first, &second].into_iter().enumerate() {
        let body = event(&format!("{}-{i}", unique_prefix()), "u");
        let ts = now_secs().to_string();
        let sig = sign_v1(&secret_of(kid), &ts, body.as_bytes());
        let headers = vec![("X-Key-Id".to_owned(), kid.clone()), ("X-Timestamp".to_owned(), ts), ("X-Signature".to_owned(), sig)];
        expect_accepted(&client.request(&post("/v1/events", Some("application/json"), &headers, body.as_bytes())));
    }
}

#[test]
fn tail_refuses_a_partition_that_does_not_exist() {
    let sandbox = Sandbox::new(Setup { partitions: 64, ..Setup::default() });
    let mut server = sandbox.start();
    assert!(server.stop().success());
    let dir = sandbox.data_dir.to_str().unwrap();
    let output = run_sluice(&["tail", "--data-dir", dir, "--partition", "999"]);
    assert_eq!(exit_code(&output), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("999"), "{}", stderr(&output));
    let output = run_sluice(&["tail", "--data-dir", dir, "--partition", "64"]);
    assert_eq!(exit_code(&output), Some(2), "{}", stderr(&output));
    let output = run_sluice(&["tail", "--data-dir", dir, "--partition", "63"]);
    assert_eq!(exit_code(&output), Some(0), "{}", stderr(&output));
    assert!(output.stdout.is_empty());
    let output = run_sluice(&["tail", "--data-dir", dir, "--from", "soon"]);
    assert_eq!(exit_code(&output), Some(2), "{}", stderr(&output));
    let nowhere = sandbox.path().join("nowhere");
    let output = run_sluice(&["tail", "--data-dir", nowhere.to_str().unwrap()]);
    assert_eq!(exit_code(&output), Some(2), "not a data dir: {}", stderr(&output));
}

#[test]
fn tail_from_offset_and_latest() {
    let sandbox = Sandbox::new(Setup { partitions: 2, ..Setup::default() });
    let server = sandbox.start();
    let mut client = server.client();
    let prefix = unique_prefix();
    let mut placed = Vec::new();
    for i in 0..5 {
        placed.push(expect_accepted(&client.request(&signed_event(event(&format!("{prefix}-{i}"), "one-user").as_bytes()))));
    }
    let partition = placed[0].0.to_string();
    let lines = tail_with(&sandbox.data_dir, &["--partition", &partition, "--from", "2"]);
    let offsets: Vec<u64> = lines.iter().map(|l| l.offset).collect();
    assert_eq!(offsets, vec![2, 3, 4]);
    assert!(tail_with(&sandbox.data_dir, &["--partition", &partition, "--from", "latest"]).is_empty());
    // --config works as well as --data-dir.
    let output = run_sluice(&["tail", "--config", sandbox.config.to_str().unwrap(), "--partition", &partition]);
    assert_eq!(exit_code(&output), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output).lines().count(), 5);
}

#[test]
fn serve_drains_in_flight_requests_on_sigterm_and_exits_0() {
    let sandbox = Sandbox::new(Setup { drain_timeout_ms: Some(5000), ..Setup::default() });
    let mut server = sandbox.start();
    let body = event(&format!("{}-drain", unique_prefix()), "u_drain");
    let request = signed_event(body.as_bytes());
    let (first_half, second_half) = request.split_at(request.len() / 2);
    let mut in_flight = server.client();
    in_flight.send(first_half);
    std::thread::sleep(Duration::from_millis(100));
    server.sigterm();
    // While draining, readiness is withdrawn on the admin listener.
    let mut ready_status = 0;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(20));
        ready_status = server.admin_client().request(&get("/readyz")).status;
        if ready_status == 503 {
            break;
        }
    }
    assert_eq!(ready_status, 503, "/readyz still ready while draining");
    // The request that was in flight is finished and answered, then the connection closes.
    in_flight.send(second_half);
    let response = in_flight.read_response();
    expect_accepted(&response);
    assert!(response.closes(), "answer during drain should close the connection");
    let status = server.wait();
    assert!(status.success(), "sluice serve exited with {status:?} after SIGTERM");
    assert!(server.stderr_text().contains("drained"), "{}", server.stderr_text());
    assert_eq!(sandbox.tail().len(), 1);
}

#[test]
fn idle_server_exits_0_on_sigterm() {
    let sandbox = Sandbox::new(Setup::default());
    let mut server = sandbox.start();
    let status = server.stop();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn health_ready_and_metrics() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    for (listener, addr) in [("ingest", server.ingest), ("admin", server.admin)] {
        for path in ["/healthz", "/readyz"] {
            let response = Client::connect(addr).request(&get(path));
            assert_eq!(response.status, 200, "{listener} {path}: {}", response.describe());
            response.json();
        }
    }
    let metric_total = |name: &str| -> u64 {
        let response = server.admin_client().request(&get("/metrics"));
        assert_eq!(response.status, 200);
        assert!(response.header("content-type").is_some_and(|v| v.starts_with("text/plain")), "{:?}", response.headers);
        let text = response.text();
        assert!(text.contains(&format!("# TYPE {name} counter")), "{text}");
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap_or_else(|_| panic!("bad sample {l:?}")))
            .sum()
    };
    assert_eq!(metric_total("sluice_events_accepted_total"), 0);
    let prefix = unique_prefix();
    let mut client = server.client();
    for i in 0..3 {
        expect_accepted(&client.request(&signed_event(event(&format!("{prefix}-{i}"), &format!("u{i}")).as_bytes())));
    }
    expect_duplicate(&client.request(&signed_event(event(&format!("{prefix}-0"), "u0").as_bytes())));
    assert_eq!(metric_total("sluice_events_accepted_total"), 3);
    assert_eq!(metric_total("sluice_events_duplicate_total"), 1);
    let response = server.admin_client().request(&get("/nope"));
    assert_eq!(response.status, 404);
}

#[test]
fn tail_follow_prints_new_events() {
    use std::io::BufRead;
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let mut child = std::process::Command::new(bin())
        .args(["tail", "--data-dir", sandbox.data_dir.to_str().unwrap(), "--follow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn tail --follow");
    // Killed (and reaped) even if an assertion below fails.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let _reap = Reap(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Started before any segment exists; events arrive afterwards, in two partitions.
    std::thread::sleep(Duration::from_millis(200));
    let prefix = unique_prefix();
    let mut client = server.client();
    let mut expected = Vec::new();
    for i in 0..4 {
        let id = format!("{prefix}-{i}");
        expect_accepted(&client.request(&signed_event(event(&id, &format!("follow-{i}")).as_bytes())));
        expected.push(id);
    }
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let line = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|_| panic!("tail --follow printed only {seen:?}"));
        seen.push(parse_tail_line(&line).event_id());
    }
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected);
}

#[test]
fn serve_refuses_another_partition_count_and_a_second_server() {
    let sandbox = Sandbox::new(Setup { partitions: 8, ..Setup::default() });
    let first = sandbox.start();
    // A second server on the same data dir must not start (it would interleave records).
    let output = std::process::Command::new(bin())
        .args(["serve", "--config", sandbox.config.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    assert!(!output.status.success(), "a second server started on the same data dir");
    assert!(
        String::from_utf8_lossy(&output.stderr).to_lowercase().contains("lock") || output.status.code() == Some(1),
        "{}",
        stderr(&output)
    );
    expect_accepted(&first.client().request(&signed_event(event(&format!("{}-x", unique_prefix()), "u").as_bytes())));
    drop(first);
    // The data dir was made with 8 partitions: 16 is a configuration error (exit 2).
    let other = Setup { partitions: 16, ..Setup::default() };
    std::fs::write(&sandbox.config, other.toml(&sandbox.data_dir, &sandbox.keys)).unwrap();
    let output = run_sluice(&["serve", "--config", sandbox.config.to_str().unwrap()]);
    assert_eq!(exit_code(&output), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains('8') && stderr(&output).contains("16"), "{}", stderr(&output));
}
