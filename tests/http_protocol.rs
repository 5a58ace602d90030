//! HTTP/1.1 connection semantics a producer's client library relies on: HEAD has no
//! body, `Expect: 100-continue`, HTTP/1.0 and `Connection: close`, and a client that
//! half-closes after its last request still gets every answer.

use std::time::Duration;

use sluice_test_support::*;

#[test]
fn head_answers_have_no_body() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let mut client = server.client();
    for path in ["/healthz", "/readyz"] {
        // HEAD then GET on one connection: the GET's status line must come right after
        // the HEAD's header block (RFC 9110 §9.3.2: a HEAD answer has no content).
        client.send(format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\nGET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let head = client.read_head_only();
        assert_eq!(head.status, 200);
        std::thread::sleep(Duration::from_millis(100));
        let next = client.read_response();
        assert_eq!(next.status, 200, "{path}: bytes after the HEAD answer: {}", next.describe());
        assert!(client.buffered().is_empty(), "{path}: stray bytes {:?}", String::from_utf8_lossy(client.buffered()));
    }
}

#[test]
fn expect_100_continue_gets_an_interim_answer() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let body = event(&format!("{}-expect", unique_prefix()), "u");
    let request = signed_event(body.as_bytes());
    let split = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 2;
    let mut head = request[..split].to_vec();
    head.extend_from_slice(b"Expect: 100-continue\r\n\r\n");
    let mut client = server.client();
    client.send(&head);
    let interim = client.read_head_only();
    assert_eq!(interim.status, 100, "expected 100 Continue before the body");
    client.send(&request[split + 2..]);
    let position = expect_accepted(&client.read_response());
    let lines = sandbox.tail();
    assert_eq!(lines.len(), 1);
    assert_eq!((lines[0].partition, lines[0].offset), position);
    assert_stored_as_sent(&body, &lines[0].event);
}

#[test]
fn http_1_0_and_connection_close_end_the_connection() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let prefix = unique_prefix();
    // HTTP/1.0 without keep-alive: one answer, then close.
    let body = event(&format!("{prefix}-10"), "u");
    let request = String::from_utf8(signed_event(body.as_bytes())).unwrap().replacen("HTTP/1.1", "HTTP/1.0", 1);
    let mut client = server.client();
    let response = client.request(request.as_bytes());
    expect_accepted(&response);
    assert!(client.is_closed_by_peer(Duration::from_secs(3)), "HTTP/1.0 connection left open");
    // HTTP/1.1 with Connection: close.
    let body = event(&format!("{prefix}-close"), "u");
    let request = String::from_utf8(signed_event(body.as_bytes())).unwrap().replacen(
        "Host: sluice.test\r\n",
        "Host: sluice.test\r\nConnection: close\r\n",
        1,
    );
    let mut client = server.client();
    let response = client.request(request.as_bytes());
    expect_accepted(&response);
    assert!(response.closes());
    assert!(client.is_closed_by_peer(Duration::from_secs(3)), "Connection: close left the connection open");
    // HTTP/1.0 with keep-alive stays open.
    let mut client = server.client();
    let response = client.request(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(response.status, 200);
    assert_eq!(client.request(&get("/healthz")).status, 200);
    assert_eq!(sandbox.tail().len(), 2);
}

/// Four signed single-event requests, back to back in one buffer.
fn pipeline_of_four(prefix: &str, round: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    for i in 0..4 {
        wire.extend(signed_event(event(&format!("{prefix}-{round}-{i}"), &format!("half-{i}")).as_bytes()));
    }
    wire
}

#[test]
fn half_closed_client_still_gets_every_answer() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let prefix = unique_prefix();
    // The loss depends on whether the FIN is seen before the pipeline is worked off, so
    // try several connections.
    for round in 0..10 {
        let wire = pipeline_of_four(&prefix, round);
        let mut client = server.client();
        client.send(&wire);
        client.shutdown_write();
        for i in 0..4 {
            match client.try_read_response() {
                Ok(Some(response)) => {
                    expect_accepted(&response);
                }
                other => panic!("round {round}: request {i} of 4 unanswered after the client half-closed ({other:?})"),
            }
        }
        assert!(client.is_closed_by_peer(Duration::from_secs(3)));
    }
    assert_eq!(sandbox.tail().len(), 40);
}

/// The same pipeline without the half-close is fully answered (control for the test
/// above).
#[test]
fn pipeline_then_close_after_reading_is_fully_answered() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let prefix = unique_prefix();
    for round in 0..10 {
        let wire = pipeline_of_four(&prefix, round);
        let mut client = server.client();
        client.send(&wire);
        for _ in 0..4 {
            expect_accepted(&client.read_response());
        }
    }
    assert_eq!(sandbox.tail().len(), 40);
}

#[test]
fn lower_case_and_odd_spacing_in_headers_are_fine() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let body = event(&format!("{}-case", unique_prefix()), "u");
    let ts = now_secs().to_string();
    let sig = sign_v1(&SECRET, &ts, body.as_bytes());
    let request = format!(
        "POST /v1/events?source=test HTTP/1.1\r\nhost: t\r\ncontent-type:application/json\r\nx-key-id:   {KID}\r\nX-TIMESTAMP: {ts}\t\r\nx-signature: {sig}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    expect_accepted(&server.client().request(request.as_bytes()));
}

/// A request parked on another shard, more pipelined answers behind it than a
/// connection buffers at once (256 KiB), then the client's FIN, read while the request
/// is still parked: every request behind the parked one must still be answered.
#[test]
fn half_close_behind_a_parked_request_and_a_full_output_loses_nothing() {
    const HEALTH_CHECKS: usize = 20_000;
    let sandbox = Sandbox::new(Setup { body_bytes_max: 1024 * 1024, segment_bytes: 4 * 1024 * 1024, ..Setup::default() });
    let server = sandbox.start();
    let prefix = unique_prefix();
    let user = user_on_shard_1(&server, &prefix);
    let stopped = StoppedThread::stop(thread_named(server.pid(), "sluice-shard-1"));
    let mut client = connection_on_shard_0(&server);
    let mut wire = signed_event(event(&format!("{prefix}-parked"), &user).as_bytes());
    for _ in 0..HEALTH_CHECKS {
        wire.extend(get("/healthz"));
    }
    client.send(&wire);
    client.shutdown_write();
    // Shard 0 reads the pipeline and the FIN while the event waits for shard 1.
    std::thread::sleep(Duration::from_millis(300));
    drop(stopped);
    expect_every_answer_then_close(&mut client, HEALTH_CHECKS, "unanswered after the half-close");
}

/// A request parked on another shard with a receive armed behind it, a pipeline whose
/// answers (9 MB) back up in a client that does not read yet, the last request saying
/// `Connection: close`, and the client's FIN once the parked request has resolved: the
/// FIN arrives while whole requests still wait behind a full output, and none of them may
/// be dropped.
#[test]
fn a_fin_while_answers_back_up_drops_no_request() {
    const HEALTH_CHECKS: usize = 100_000;
    let sandbox = Sandbox::new(Setup { body_bytes_max: 8 * 1024 * 1024, segment_bytes: 32 * 1024 * 1024, ..Setup::default() });
    let server = sandbox.start();
    let prefix = unique_prefix();
    let user = user_on_shard_1(&server, &prefix);
    let stopped = StoppedThread::stop(thread_named(server.pid(), "sluice-shard-1"));
    let mut client = connection_on_shard_0(&server);
    let mut wire = signed_event(event(&format!("{prefix}-parked"), &user).as_bytes());
    for _ in 0..HEALTH_CHECKS - 1 {
        wire.extend(get("/healthz"));
    }
    wire.extend(b"GET /healthz HTTP/1.1\r\nHost: sluice.test\r\nConnection: close\r\n\r\n");
    client.send(&wire);
    // Shard 0 reads the pipeline while the event waits, with a receive still armed.
    std::thread::sleep(Duration::from_millis(300));
    drop(stopped);
    // Shard 0 answers everything and is sending into a client that does not read.
    std::thread::sleep(Duration::from_millis(300));
    client.shutdown_write();
    std::thread::sleep(Duration::from_millis(300));
    expect_every_answer_then_close(&mut client, HEALTH_CHECKS, "cut off by the FIN");
}

/// The parked event's 202, `health_checks` 200s, then the server's close.
fn expect_every_answer_then_close(client: &mut Client, health_checks: usize, loss: &str) {
    expect_accepted(&client.read_response());
    for i in 0..health_checks {
        match client.try_read_response() {
            Ok(Some(response)) => assert_eq!(response.status, 200, "health check {i}"),
            other => panic!("health check {i} of {health_checks} {loss} ({other:?})"),
        }
    }
    assert!(client.is_closed_by_peer(Duration::from_secs(3)));
}

/// A user whose partition shard 1 owns (partitions go to shards round-robin).
fn user_on_shard_1(server: &Server, prefix: &str) -> String {
    (0..64)
        .map(|i| format!("parked-user-{i}"))
        .find(|user| {
            let response = server.client().request(&signed_event(event(&format!("{prefix}-probe-{user}"), user).as_bytes()));
            expect_accepted(&response).0 % 2 == 1
        })
        .expect("a user on an odd partition")
}

/// A connection shard 0 serves: it answers a health check while shard 1 stands still.
fn connection_on_shard_0(server: &Server) -> Client {
    (0..64)
        .map(|_| server.client())
        .find_map(|mut client| {
            client.send(&get("/healthz"));
            matches!(client.try_read_response_within(Duration::from_millis(300)), Ok(Some(r)) if r.status == 200).then_some(client)
        })
        .expect("a connection on shard 0")
}
