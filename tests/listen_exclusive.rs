//! A second `sluice serve` on the ingest address of a running one used to start and
//! silently take a share of the traffic (SO_REUSEPORT), answering the first one's
//! producers `401 key_unknown`. It now refuses to start (exit 1), naming the address and
//! the process that holds it; the shards of one server still share their address.

use std::net::TcpListener;

use sluice_test_support::*;

/// A configuration listening on `ingest` (the sandbox's config listens on port 0).
fn config_on(sandbox: &Sandbox, ingest: std::net::SocketAddr, name: &str) -> String {
    let text = std::fs::read_to_string(&sandbox.config).unwrap().replacen("listen = \"127.0.0.1:0\"", &format!("listen = \"{ingest}\""), 1);
    let path = sandbox.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn a_second_server_on_the_same_address_refuses_to_start() {
    let first = Sandbox::new(Setup { shards: 2, ..Setup::default() });
    let server = first.start();
    assert_eq!(server.client().request(&get("/healthz")).status, 200);

    let second = Sandbox::new(Setup { shards: 2, ..Setup::default() });
    let config = config_on(&second, server.ingest, "same-address.toml");
    let output = run_sluice(&["serve", "--config", &config, "--log-format", "text"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&server.ingest.to_string()), "names the address: {stderr}");
    assert!(stderr.contains(&format!("pid {}", server.pid())), "names the process holding it: {stderr}");
    // The first one still answers every connection.
    for _ in 0..20 {
        assert_eq!(server.client().request(&get("/healthz")).status, 200);
    }
}

#[test]
fn an_address_held_by_another_program_is_refused_too() {
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let sandbox = Sandbox::new(Setup::default());
    let config = config_on(&sandbox, other.local_addr().unwrap(), "taken.toml");
    let output = run_sluice(&["serve", "--config", &config, "--log-format", "text"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("already in use"), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", std::process::id())), "names this test as the holder: {stderr}");
}
