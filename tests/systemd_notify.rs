//! The test plays systemd: it owns the `NOTIFY_SOCKET` datagram socket, sets
//! `WATCHDOG_USEC`, and checks what `sluice serve` tells it over a whole life:
//! `READY=1` with a status, `WATCHDOG=1` pings, `RELOADING=1` then `READY=1` on SIGHUP,
//! `STOPPING=1` with a stop-timeout extension on SIGTERM, and exit status 0.

use std::time::Duration;

use sluice_test_support::*;

use sluice_test_support::fake_systemd::{FakeSystemd, has_line};

#[test]
fn sluice_tells_systemd_ready_watchdog_reloading_and_stopping() {
    let sandbox = Sandbox::new(Setup::default());
    let socket_path = sandbox.temp.path().join("notify.sock");
    let mut systemd = FakeSystemd::bind(&socket_path);
    // WatchdogSec=0.4: a ping is due every 200 ms.
    let env = [("NOTIFY_SOCKET", socket_path.to_str().unwrap()), ("WATCHDOG_USEC", "400000")];
    let mut server = Server::start_with_env(&sandbox.config, &env);

    let ready = systemd.wait_for("READY=1", |m| has_line(m, "READY=1"));
    let status = systemd.received[ready].lines().find_map(|l| l.strip_prefix("STATUS=")).expect("READY=1 carries a STATUS=");
    assert!(status.contains(&format!("ingest={}", server.ingest)), "status names the listener: {status}");
    assert!(status.contains("partitions"), "{status}");
    // Before it: start-up said what it was doing, and recovery asked for more time.
    let recovering = systemd.received[..ready].iter().position(|m| m.contains("STATUS=recovering")).expect("a recovery status");
    assert!(systemd.received[recovering].lines().any(|l| l.starts_with("EXTEND_TIMEOUT_USEC=")), "{:?}", systemd.received);
    assert!(systemd.received[0].starts_with("STATUS=starting"), "{:?}", systemd.received);

    // The watchdog is fed while every shard's loop turns: about five pings a second.
    let first_ping = systemd.wait_for("WATCHDOG=1", |m| m == "WATCHDOG=1");
    assert!(first_ping > ready, "a ping before READY=1: {:?}", systemd.received);
    std::thread::sleep(Duration::from_millis(1_000));
    systemd.drain();
    assert!(systemd.count("WATCHDOG=1") >= 3, "too few pings in a second: {:?}", systemd.received);

    // SIGHUP: RELOADING=1 (with the monotonic stamp systemd matches), then READY=1.
    server.sighup();
    let reloading = systemd.wait_for("RELOADING=1", |m| has_line(m, "RELOADING=1"));
    assert!(systemd.received[reloading].lines().any(|l| l.starts_with("MONOTONIC_USEC=")), "{:?}", systemd.received[reloading]);
    let ready_again = systemd.wait_for("READY=1 after the reload", |m| has_line(m, "READY=1") && m.contains("reloaded"));
    assert!(ready_again > reloading);

    // A reload that fails still ends the RELOADING state, and says it was rejected.
    std::fs::write(&sandbox.keys, "[[keys]]\nkid = \"broken\"\n").unwrap();
    server.sighup();
    systemd.wait_for("READY=1 after a refused reload", |m| has_line(m, "READY=1") && m.contains("rejected"));

    // SIGTERM: STOPPING=1 with time for the drain, then a clean exit.
    server.sigterm();
    let stopping = systemd.wait_for("STOPPING=1", |m| has_line(m, "STOPPING=1"));
    let extend: u64 = systemd.received[stopping]
        .lines()
        .find_map(|l| l.strip_prefix("EXTEND_TIMEOUT_USEC="))
        .and_then(|v| v.parse().ok())
        .expect("STOPPING=1 extends the stop timeout");
    assert!(extend >= 10_000_000, "the extension covers the default 10 s drain: {extend}");
    let status = server.wait();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn without_notify_socket_nothing_is_sent_and_the_server_runs() {
    // No NOTIFY_SOCKET (a plain start): serve must not depend on systemd.
    let sandbox = Sandbox::new(Setup::default());
    let mut server = Server::start_with_env(&sandbox.config, &[("WATCHDOG_USEC", "400000")]);
    let answer = server.admin_client().request(&get("/readyz"));
    assert_eq!(answer.status, 200, "{}", answer.describe());
    assert_eq!(server.stop().code(), Some(0));
}
