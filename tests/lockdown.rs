//! `[ingest] io_uring_lockdown`: once its shards run, `sluice serve` puts a seccomp filter
//! on every thread that refuses `io_uring_setup` and `io_uring_register`. Seen from
//! outside through `/proc/<pid>/task/*/status`; the server still takes events, reloads
//! on SIGHUP and `POST /admin/reload`, and drains on SIGTERM. That the filter refuses the
//! two calls (and not `io_uring_enter`) is the unit test in src/platform/lockdown.rs.

use std::collections::BTreeMap;

use sluice_test_support::*;

/// The `Seccomp:` and `Seccomp_filters:` lines of one `/proc/.../status` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SeccompState {
    /// 0 off, 1 strict, 2 filter.
    mode: u32,
    /// Filters attached to the thread (inherited ones included).
    filters: u32,
    no_new_privs: u32,
}

fn seccomp_state(status_file: &std::path::Path) -> SeccompState {
    let text = std::fs::read_to_string(status_file).unwrap_or_else(|error| panic!("{}: {error}", status_file.display()));
    let field = |name: &str| -> u32 {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{} has no {name} line:\n{text}", status_file.display()))
    };
    SeccompState { mode: field("Seccomp:"), filters: field("Seccomp_filters:"), no_new_privs: field("NoNewPrivs:") }
}

/// Every thread of `pid`, by thread id, with its name and seccomp state.
fn threads(pid: u32) -> BTreeMap<u32, (String, SeccompState)> {
    let mut threads = BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/<pid>/task") {
        let dir = entry.expect("task entry").path();
        let tid: u32 = dir.file_name().and_then(|name| name.to_str()?.parse().ok()).expect("numeric tid");
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default().trim().to_owned();
        threads.insert(tid, (name, seccomp_state(&dir.join("status"))));
    }
    threads
}

/// What the test process itself runs under (a container may filter it already; the
/// server inherits that).
fn own_state() -> SeccompState {
    seccomp_state(std::path::Path::new("/proc/self/status"))
}

fn lockdown_gauge(server: &Server) -> String {
    let response = server.admin_client().request(&get("/metrics"));
    assert_eq!(response.status, 200, "{}", response.describe());
    let text = response.text();
    text.lines()
        .find_map(|line| line.strip_prefix("sluice_io_uring_lockdown_active ").map(str::to_owned))
        .unwrap_or_else(|| panic!("no sluice_io_uring_lockdown_active in /metrics:\n{text}"))
}

#[test]
fn every_thread_runs_the_filter_and_the_server_still_serves_reloads_and_drains() {
    let sandbox = Sandbox::new(Setup::default());
    let mut server = sandbox.start();
    server.wait_for_stderr("io_uring lockdown: io_uring_setup and io_uring_register refused from now on", 1);
    let own = own_state();
    let process = seccomp_state(&std::path::PathBuf::from(format!("/proc/{}/status", server.pid())));
    assert_eq!(process.mode, 2, "the server runs in seccomp filter mode: {process:?}");
    assert_eq!(process.filters, own.filters + 1, "one filter more than the test process: {process:?}, own {own:?}");
    assert_eq!(process.no_new_privs, 1, "{process:?}");
    let all = threads(server.pid());
    assert!(all.len() > sandbox.setup.shards, "main and shard threads at least: {all:?}");
    for (tid, (name, state)) in &all {
        assert_eq!((state.mode, state.filters), (2, own.filters + 1), "thread {tid} ({name}) lacks the filter: {state:?}");
    }
    assert_eq!(lockdown_gauge(&server), "1");

    // Events are stored: rings made before the filter keep submitting (io_uring_enter).
    let prefix = unique_prefix();
    let mut client = server.client();
    expect_accepted(&client.request(&signed_event(event(&format!("{prefix}-0"), "u").as_bytes())));

    // A reload reads the configuration and key ring again, on the main thread and on the
    // admin thread (started after the filter, so it inherits it).
    const LATE_KID: &str = "added-under-lockdown";
    const LATE_SECRET: [u8; 32] = *b"a-key-added-after-the-lockdown!!";
    let ring = std::fs::read_to_string(&sandbox.keys).unwrap();
    std::fs::write(
        &sandbox.keys,
        format!("{ring}\n[[keys]]\nkid = \"{LATE_KID}\"\nsecret = \"{}\"\npartner = \"late\"\n", whsec(&LATE_SECRET)),
    )
    .unwrap();
    server.sighup();
    server.wait_for_stderr("reloaded cause=SIGHUP parts=config,keys", 1);
    let body = event(&format!("{prefix}-1"), "u");
    let headers = signing_headers(LATE_KID, &LATE_SECRET, &now_secs().to_string(), body.as_bytes());
    expect_accepted(&client.request(&post("/v1/events", Some("application/json"), &headers, body.as_bytes())));
    let answer = server.admin_client().request(&post("/admin/reload", None, &[], b""));
    assert_eq!(answer.status, 200, "{}", answer.describe());
    expect_accepted(&client.request(&signed_event(event(&format!("{prefix}-2"), "u").as_bytes())));
    let after = threads(server.pid());
    for (tid, (name, state)) in &after {
        assert_eq!(state.mode, 2, "thread {tid} ({name}), after the reloads: {state:?}");
    }

    drop(client);
    let status = server.stop();
    assert!(status.success(), "SIGTERM drains and exits 0: {status:?}\n{}", server.stderr_text());
    assert!(!server.stderr_text().contains("lockdown not installed"), "{}", server.stderr_text());
    assert_eq!(sandbox.tail().len(), 3);
}

#[test]
fn with_io_uring_lockdown_false_no_filter_is_added() {
    let sandbox = Sandbox::new(Setup { ingest_extra: "io_uring_lockdown = false\n".into(), ..Setup::default() });
    let mut server = sandbox.start();
    server.wait_for_stderr("io_uring lockdown off", 1);
    let own = own_state();
    for (tid, (name, state)) in threads(server.pid()) {
        assert_eq!((state.mode, state.filters), (own.mode, own.filters), "thread {tid} ({name}) as the test process: {state:?}");
    }
    if own.mode == 0 {
        let process = seccomp_state(&std::path::PathBuf::from(format!("/proc/{}/status", server.pid())));
        assert_eq!(process.mode, 0, "Seccomp: 0 without the lockdown: {process:?}");
    }
    assert_eq!(lockdown_gauge(&server), "0");
    expect_accepted(&server.client().request(&signed_event(event(&format!("{}-0", unique_prefix()), "u").as_bytes())));
    assert!(server.stop().success(), "{}", server.stderr_text());
}
