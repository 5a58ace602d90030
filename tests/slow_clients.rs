//! Slow clients: a head or body trickled one byte at a time is cut when its phase's
//! timeout, counted from the phase's start, expires; bytes arriving do not extend it,
//! and neither does an answer the server sends meanwhile (to an earlier pipelined
//! request, or a `100 Continue`). While many such clients trickle, a normal producer is
//! served at once.

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice_test_support::*;

const HEADER_TIMEOUT_MS: u64 = 1_000;
const BODY_TIMEOUT_MS: u64 = 1_500;
/// One byte per this many ms: a slowloris.
const TRICKLE_EVERY_MS: u64 = 200;
/// Slack on a timeout for the 100 ms reactor tick and a busy test machine.
const TIMEOUT_SLACK_MS: u64 = 1_000;
/// Trickled connections while a normal client is served.
const SLOWLORIS_CONNECTIONS: usize = 50;
/// Generous bound on the normal client's answer (a behaviour test, not a benchmark).
const NORMAL_ANSWER_MS_MAX: u64 = 2_000;

fn setup() -> Setup {
    // The idle timeout stays at its 60 s default: an answer that reset a reading
    // request's deadline to the idle one would make these tests time out.
    Setup { header_timeout_ms: Some(HEADER_TIMEOUT_MS), body_timeout_ms: Some(BODY_TIMEOUT_MS), ..Setup::default() }
}

/// Writes `bytes` one at a time every `TRICKLE_EVERY_MS` from a thread, until all are
/// written, a write fails (the server closed) or the returned flag is set.
fn trickle(stream: &TcpStream, bytes: Vec<u8>) -> (Arc<AtomicBool>, JoinHandle<()>) {
    let mut stream = stream.try_clone().expect("clone stream");
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        for byte in bytes {
            if stopped.load(Ordering::Relaxed) || stream.write_all(&[byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(TRICKLE_EVERY_MS));
        }
    });
    (stop, thread)
}

/// A head that never ends: the request line and one header value growing forever.
fn endless_head() -> Vec<u8> {
    [b"POST /v1/events HTTP/1.1\r\nHost: t\r\nX-Pad: ".as_slice(), &[b'a'; 200]].concat()
}

/// Reads the answer to a trickling client and checks it is `408` and the close, at
/// about `timeout_ms` after `started`.
fn expect_cut_at(client: &mut Client, started: Instant, timeout_ms: u64, what: &str) {
    let response = client.read_response();
    let waited = started.elapsed();
    expect_error(&response, 408, "request_timeout");
    assert!(response.closes(), "{what}: 408 without the close");
    assert!(waited >= Duration::from_millis(timeout_ms - 200), "{what}: cut after {waited:?}, before its timeout");
    assert!(waited <= Duration::from_millis(timeout_ms + TIMEOUT_SLACK_MS), "{what}: cut only after {waited:?}");
    assert!(client.is_closed_by_peer(Duration::from_secs(3)), "{what}: left open after the 408");
}

#[test]
fn slowloris_head_is_cut_at_the_head_timeout_from_its_first_byte() {
    let sandbox = Sandbox::new(setup());
    let server = sandbox.start();
    let mut client = server.client();
    let started = Instant::now();
    let (stop, thread) = trickle(&client.stream, endless_head());
    expect_cut_at(&mut client, started, HEADER_TIMEOUT_MS, "slowloris head");
    stop.store(true, Ordering::Relaxed);
    thread.join().expect("trickle thread");

    // The same behind a pipelined request: its answer must not restart the head's clock.
    let mut client = server.client();
    let head = endless_head();
    let started = Instant::now();
    client.send(&[get("/healthz").as_slice(), &head[..1]].concat());
    assert_eq!(client.read_response().status, 200);
    let (stop, thread) = trickle(&client.stream, head[1..].to_vec());
    expect_cut_at(&mut client, started, HEADER_TIMEOUT_MS, "slowloris head after an answered request");
    stop.store(true, Ordering::Relaxed);
    thread.join().expect("trickle thread");
    assert!(sandbox.tail().is_empty());
}

#[test]
fn slow_body_is_cut_at_the_body_timeout_from_the_end_of_its_head() {
    let sandbox = Sandbox::new(setup());
    let server = sandbox.start();
    let body = event(&format!("{}-slow", unique_prefix()), "u");
    for expect_continue in [false, true] {
        let request = signed_event(body.as_bytes());
        let split = request.windows(4).position(|w| w == b"\r\n\r\n").expect("head end") + 2;
        // With `Expect: 100-continue` the server sends `100 Continue` while the body is
        // read; that send must not extend the body's deadline either.
        let expect = if expect_continue { "Expect: 100-continue\r\n" } else { "" };
        let head = [&request[..split], expect.as_bytes(), b"\r\n"].concat();
        let mut client = server.client();
        let started = Instant::now();
        client.send(&head);
        let (stop, thread) = trickle(&client.stream, request[split + 2..].to_vec());
        expect_cut_at(&mut client, started, BODY_TIMEOUT_MS, &format!("slow body (expect_continue: {expect_continue})"));
        stop.store(true, Ordering::Relaxed);
        thread.join().expect("trickle thread");
    }
    assert!(sandbox.tail().is_empty(), "a timed-out body was stored");
}

#[test]
fn normal_client_is_served_while_fifty_slowloris_connections_trickle() {
    // Long timeouts so every slow connection is still trickling when the event is sent.
    let sandbox = Sandbox::new(Setup { header_timeout_ms: Some(30_000), ..Setup::default() });
    let server = sandbox.start();
    let slow: Vec<Client> = (0..SLOWLORIS_CONNECTIONS).map(|_| server.client()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let mut streams: Vec<TcpStream> = slow.iter().map(|c| c.stream.try_clone().expect("clone")).collect();
    // One thread trickles on every connection: one byte each per round.
    let trickler = std::thread::spawn(move || {
        for byte in endless_head() {
            if stopped.load(Ordering::Relaxed) {
                return;
            }
            for stream in &mut streams {
                stream.write_all(&[byte]).expect("slowloris connection closed early");
            }
            std::thread::sleep(Duration::from_millis(TRICKLE_EVERY_MS));
        }
    });
    // Let every slow connection get a few bytes in first.
    std::thread::sleep(Duration::from_millis(3 * TRICKLE_EVERY_MS));
    let id = format!("{}-normal", unique_prefix());
    let before = Instant::now();
    expect_accepted(&server.client().request(&signed_event(event(&id, "u").as_bytes())));
    let waited = before.elapsed();
    stop.store(true, Ordering::Relaxed);
    trickler.join().expect("trickle thread");
    assert!(waited < Duration::from_millis(NORMAL_ANSWER_MS_MAX), "normal client waited {waited:?}");
    let ids: Vec<String> = sandbox.tail().iter().map(TailLine::event_id).collect();
    assert_eq!(ids, vec![id]);
    drop(slow);
}
