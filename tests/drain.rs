//! SIGTERM under load: `/readyz` turns 503 at once, new connections are refused, every
//! request already sent is answered (or its connection closed with no answer at all,
//! never half an answer), every event acknowledged is in the log exactly once, and the
//! process exits 0.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sluice_test_support::*;

const CLIENTS: usize = 8;

/// What one client saw: the event ids acknowledged with 202, and every status.
#[derive(Default)]
struct Seen {
    accepted: Vec<String>,
    statuses: HashMap<u16, usize>,
}

/// Sends signed events on one keep-alive connection until the server closes it, then
/// tries to reconnect until that is refused (the server stopped accepting).
fn client_loop(ingest: std::net::SocketAddr, prefix: String, stop: Arc<AtomicBool>) -> Seen {
    let mut seen = Seen::default();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sequence = 0;
    'connections: while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        let Ok(mut client) = Client::try_connect(ingest) else { break };
        loop {
            sequence += 1;
            let id = format!("{prefix}-{sequence}");
            let body = event(&id, &format!("user-{}", sequence % 50));
            if client.try_send(&signed_event(body.as_bytes())).is_err() {
                continue 'connections;
            }
            match client.try_read_response() {
                Ok(Some(response)) => {
                    *seen.statuses.entry(response.status).or_default() += 1;
                    if response.status == 202 {
                        seen.accepted.push(id);
                    }
                    if response.closes() {
                        continue 'connections;
                    }
                }
                // Closed (or reset) before any answer: not acknowledged, so not counted.
                Ok(None) => continue 'connections,
                Err(error) if matches!(error.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => continue 'connections,
                Err(error) => panic!("reading an answer during the drain: {error}"),
            }
        }
    }
    seen
}

#[test]
fn sigterm_under_load_answers_in_flight_requests_and_loses_nothing_acked() {
    let sandbox = Sandbox::new(Setup::default());
    let mut server = sandbox.start();
    let prefix = unique_prefix();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|index| {
            let (ingest, prefix, stop) = (server.ingest, format!("{prefix}-c{index}"), Arc::clone(&stop));
            std::thread::spawn(move || client_loop(ingest, prefix, stop))
        })
        .collect();

    // A request half sent when SIGTERM arrives keeps the drain open until it completes.
    let held = event(&format!("{prefix}-held"), "held-user");
    let held_request = signed_event(held.as_bytes());
    let (first_half, second_half) = held_request.split_at(held_request.len() - 10);
    let mut in_flight = server.client();
    in_flight.send(first_half);

    std::thread::sleep(Duration::from_millis(500));
    server.sigterm();
    let signalled = Instant::now();

    // Readiness goes at once (the balancer's health check sees it first).
    let mut ready_status = 200;
    while ready_status != 503 && signalled.elapsed() < Duration::from_secs(2) {
        ready_status = server.admin_client().request(&get("/readyz")).status;
    }
    assert_eq!(ready_status, 503, "/readyz still 200 after SIGTERM");

    // New connections are refused while the held request keeps the process draining.
    let mut refused = false;
    while !refused && signalled.elapsed() < Duration::from_secs(3) {
        match std::net::TcpStream::connect_timeout(&server.ingest, Duration::from_millis(200)) {
            Err(error) if error.kind() == ErrorKind::ConnectionRefused => refused = true,
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    assert!(refused, "new connections still accepted while draining");

    // The request that was in flight is finished and answered; the connection closes.
    in_flight.send(second_half);
    let answer = in_flight.read_response();
    expect_accepted(&answer);
    assert!(answer.closes(), "an answer during the drain announces the close");

    let status = server.wait();
    assert_eq!(status.code(), Some(0), "exit status after the drain: {status:?}");
    stop.store(true, Ordering::Relaxed);

    let mut acknowledged = vec![format!("{prefix}-held")];
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for client in clients {
        let seen = client.join().expect("client thread");
        acknowledged.extend(seen.accepted);
        for (status, count) in seen.statuses {
            *statuses.entry(status).or_default() += count;
        }
    }
    assert!(statuses.get(&202).copied().unwrap_or(0) > 100, "the load did not run: {statuses:?}");
    // 202 for stored events; 503 is the only other answer a drain may give.
    assert!(statuses.keys().all(|status| [202, 503].contains(status)), "unexpected answers while draining: {statuses:?}");

    // Every acknowledged event is in the log, exactly once.
    let mut stored: HashMap<String, usize> = HashMap::new();
    for line in sandbox.tail() {
        *stored.entry(line.event_id()).or_default() += 1;
    }
    for id in &acknowledged {
        assert_eq!(stored.get(id), Some(&1), "acknowledged event {id} is not stored exactly once");
    }
}
