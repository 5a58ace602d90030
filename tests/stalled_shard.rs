//! A stuck shard: the test stops ONE shard thread of a running server (ptrace
//! `PTRACE_SEIZE` + `PTRACE_INTERRUPT` on that thread only; the rest of the process keeps
//! running) and checks what the issue asks of the watchdog: `/readyz` turns 503, the
//! status says which shard, and `WATCHDOG=1` stops while the shard stands still; when
//! the thread runs again, readiness and the pings come back.

use std::time::{Duration, Instant};

use sluice_test_support::*;

use sluice_test_support::fake_systemd::{FakeSystemd, has_line};

fn readyz(server: &Server) -> u16 {
    server.admin_client().request(&get("/readyz")).status
}

#[test]
fn a_stopped_shard_withdraws_readiness_and_starves_the_watchdog_until_it_runs_again() {
    let sandbox = Sandbox::new(Setup::default());
    let socket_path = sandbox.temp.path().join("notify.sock");
    let mut systemd = FakeSystemd::bind(&socket_path);
    let env = [("NOTIFY_SOCKET", socket_path.to_str().unwrap()), ("WATCHDOG_USEC", "400000")];
    let mut server = Server::start_with_env(&sandbox.config, &env);
    systemd.wait_for("READY=1", |m| has_line(m, "READY=1"));
    systemd.wait_for("WATCHDOG=1", |m| m == "WATCHDOG=1");
    assert_eq!(readyz(&server), 200);

    let stopped = StoppedThread::stop(thread_named(server.pid(), "sluice-shard-0"));
    let stopped_at = Instant::now();
    // The stall is declared after SHARD_STALL_MS (2 s) without a loop.
    let mut status = readyz(&server);
    while status == 200 && stopped_at.elapsed() < Duration::from_secs(6) {
        std::thread::sleep(Duration::from_millis(100));
        status = readyz(&server);
    }
    assert_eq!(status, 503, "/readyz stayed 200 with shard 0 stopped");
    assert!(stopped_at.elapsed() >= Duration::from_millis(1_500), "declared stalled too early");
    let stall = systemd.wait_for("a stalled status", |m| m.starts_with("STATUS=shard 0 stalled"));
    // No ping while it stands still (the server pings every 200 ms otherwise).
    systemd.collect_for(Duration::from_millis(1_000));
    let pings_while_stalled = systemd.received[stall + 1..].iter().filter(|m| m.as_str() == "WATCHDOG=1").count();
    assert_eq!(pings_while_stalled, 0, "the watchdog was fed while a shard stood still: {:?}", &systemd.received[stall..]);
    // The other shard still serves, and the stall is logged once.
    server.wait_for_stderr("shard reactor stalled", 1);

    drop(stopped);
    let resumed = systemd.received.len();
    systemd.wait_for_from(resumed, "WATCHDOG=1 after the shard ran again", |m| m == "WATCHDOG=1");
    let deadline = Instant::now() + Duration::from_secs(3);
    while readyz(&server) != 200 {
        assert!(Instant::now() < deadline, "/readyz did not come back");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.wait_for_stderr("every shard reactor is turning again", 1);
    assert_eq!(server.stop().code(), Some(0));
}
