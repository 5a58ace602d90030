//! Limits and overload over real sockets and a real `sluice serve` (SPEC §7): GCRA rate
//! limits per address (before the signature), per partner and per kid (after it), each
//! answered 429 `rate_limited` with `Retry-After` and the IETF `RateLimit-Policy` /
//! `RateLimit` headers; the memory budget holding the bodies of slow senders and
//! answering 503 `overloaded` to what it cannot hold, while whole small requests keep
//! being served; and optional topics refused first once the server is under pressure.

use std::io::Write;
use std::time::Duration;

use sluice_test_support::*;

fn signed_by(kid: &str, secret: &[u8], body: &[u8]) -> Vec<u8> {
    post("/v1/events", Some("application/json"), &signing_headers(kid, secret, &now_secs().to_string(), body), body)
}

#[test]
fn rate_limits_per_address_partner_and_kid_answer_429_with_the_ietf_headers() {
    let limits = r#"
[[limits.rate]]
per = "ip"
match = "127.0.0.0/8"
rate_per_sec = 0.05
burst = 6

[[limits.rate]]
per = "partner"
match = "tests"
rate_per_sec = 0.05
burst = 2

[[limits.rate]]
per = "kid"
match = "test-key-2"
rate_per_sec = 0.05
burst = 1
"#;
    let sandbox = Sandbox::new(Setup { extra_config: limits.to_owned(), ..Setup::default() });
    let server = sandbox.start();
    let prefix = unique_prefix();
    let mut client = server.client();
    // Partner "tests": burst 2 lets 3 in, then 429 (the address still has room).
    for n in 0..3 {
        let body = event(&format!("{prefix}-t{n}"), "u1");
        expect_accepted(&client.request(&signed_event(body.as_bytes())));
    }
    let refused = client.request(&signed_event(event(&format!("{prefix}-t3"), "u1").as_bytes()));
    expect_error(&refused, 429, "rate_limited");
    let retry: u64 = refused.header("retry-after").expect("Retry-After").parse().expect("whole seconds");
    assert!((1..=20).contains(&retry), "one request per 20 s: {retry}");
    assert_eq!(refused.header("ratelimit-policy"), Some("\"partner\";q=3;w=60"), "{}", refused.describe());
    assert_eq!(refused.header("ratelimit"), Some(&*format!("\"partner\";r=0;t={retry}")));
    assert!(!refused.closes(), "a 429 keeps the connection");
    // The other partner's kid has its own, smaller bucket: 2 in, then 429 per kid.
    for n in 0..2 {
        let body = event(&format!("{prefix}-o{n}"), "u2");
        expect_accepted(&client.request(&signed_by(KID_OTHER, &SECRET_OTHER, body.as_bytes())));
    }
    let refused = client.request(&signed_by(KID_OTHER, &SECRET_OTHER, event(&format!("{prefix}-o2"), "u2").as_bytes()));
    expect_error(&refused, 429, "rate_limited");
    assert_eq!(refused.header("ratelimit-policy"), Some("\"kid\";q=2;w=40"));
    // Seven requests from the address so far (burst 6, plus one): the next is refused
    // before its signature is looked at, so even a bad one gets 429, not 401.
    let unsigned = post("/v1/events", Some("application/json"), &[], b"{}");
    let refused = client.request(&unsigned);
    expect_error(&refused, 429, "rate_limited");
    assert_eq!(refused.header("ratelimit-policy"), Some("\"ip\";q=7;w=140"));
    // Nothing refused was stored; the five accepted events were.
    let stored: Vec<String> = sandbox.tail().iter().map(|line| line.event_id()).collect();
    assert_eq!(stored.len(), 5, "{stored:?}");
    // The refusals are counted per kind.
    let metrics = server.admin_client().request(&get("/metrics")).text();
    for per in ["ip", "partner", "kid"] {
        let line = format!("sluice_rate_limited_total{{per=\"{per}\"}} 1");
        assert!(metrics.contains(&line), "{line} missing");
    }
    let answered_429: f64 = metrics
        .lines()
        .filter(|line| line.starts_with("sluice_http_requests_total{") && line.contains("status=\"429\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(answered_429, 3.0, "429s counted as answers");
    // /healthz is never limited.
    assert_eq!(client.request(&get("/healthz")).status, 200);
}

/// A head announcing a body of `len` bytes, and the first `sent` bytes of it.
fn stalled_body(len: usize, sent: usize) -> Vec<u8> {
    let mut bytes = format!(
        "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nX-Key-Id: {KID}\r\n\
         X-Timestamp: 1\r\nX-Signature: v1=00\r\nContent-Length: {len}\r\n\r\n"
    )
    .into_bytes();
    bytes.resize(bytes.len() + sent, b' ');
    bytes
}

const BUDGET_LIMITS: &str = "
[limits]
memory_bytes_max = 16777216

[[topics]]
name = \"telemetry\"
event_types = [\"telemetry\"]
partitions = 2
optional = true

[[topics]]
name = \"events\"
event_types = [\"*\"]
partitions = 4
";

#[test]
fn the_memory_budget_holds_slow_bodies_refuses_the_rest_and_small_events_still_flow() {
    let body_max = 512 * 1024;
    let sandbox = Sandbox::new(Setup {
        extra_config: BUDGET_LIMITS.to_owned(),
        body_bytes_max: body_max,
        body_timeout_ms: Some(30_000),
        segment_bytes: 4 << 20,
        ..Setup::default()
    });
    let server = sandbox.start();
    // Heads alone hold one 64 KiB step each, not the 512 KiB they announce: 40 of them fit.
    let mut slow = Vec::new();
    for _ in 0..40 {
        let mut client = server.client();
        client.send(&stalled_body(body_max, 1000));
        slow.push(client);
    }
    for client in &mut slow {
        let answer = client.try_read_response_within(Duration::from_millis(200));
        assert!(!matches!(answer, Ok(Some(_))), "nothing refused yet");
    }
    // Now each sends most of its body: 16 MiB of budget, 3/4 of it for large bodies, so
    // at most 24 bodies of 500 KB fit and at least 16 are refused.
    let rest = vec![b' '; 500_000];
    for client in &mut slow {
        let _ = client.try_send(&rest);
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut refused = 0;
    for client in &mut slow {
        if let Ok(Some(response)) = client.try_read_response_within(Duration::from_millis(100)) {
            expect_error(&response, 503, "overloaded");
            assert_eq!(response.header("retry-after"), Some("1"));
            assert!(response.closes(), "the body cannot be read: the connection closes");
            refused += 1;
        }
    }
    assert!((16..=40).contains(&refused) && refused < 40, "{refused} of 40 refused; 16 to 24 should fit");
    // Large bodies alone stay under 3/4: optional events still flow.
    let prefix = unique_prefix();
    let mut client = server.client();
    let optional = typed_event(&format!("{prefix}-tel0"), "u0", "telemetry");
    expect_accepted(&client.request(&signed_event(optional.as_bytes())));
    // Small unfinished bodies (under 64 KiB) may use the last quarter: past 80 % of the
    // budget, whole small events are still served (none needs a reservation), but optional
    // ones are refused first.
    for _ in 0..60 {
        let mut small = server.client();
        small.send(&stalled_body(60_000, 30_000));
        slow.push(small);
    }
    std::thread::sleep(Duration::from_millis(300));
    let critical = event(&format!("{prefix}-bet"), "u1");
    expect_accepted(&client.request(&signed_event(critical.as_bytes())));
    let optional = typed_event(&format!("{prefix}-tel"), "u1", "telemetry");
    let shed = client.request(&signed_event(optional.as_bytes()));
    expect_error(&shed, 503, "overloaded");
    assert!(shed.header("retry-after").is_some());
    // In a batch, only the optional line is refused.
    let batch =
        client.request(&signed_batch(&[typed_event(&format!("{prefix}-tel2"), "u2", "telemetry"), event(&format!("{prefix}-bet2"), "u2")]));
    assert_eq!(batch.status, 200, "{}", batch.describe());
    let json = batch.json();
    assert_eq!(json.get("accepted").and_then(Json::as_u64), Some(1), "{}", batch.describe());
    assert_eq!(json.get("rejected").and_then(Json::as_u64), Some(1));
    let metrics = server.admin_client().request(&get("/metrics")).text();
    assert!(metrics.contains("sluice_memory_budget_bytes "), "budget exported");
    assert!(metrics.lines().any(|line| line.starts_with("sluice_memory_refused_total ") && !line.ends_with(" 0")), "refusals counted");
    drop(slow);
    after_the_slow_senders(&server, &mut client, &prefix);
}

/// The slow senders went away: their reservations are given back, optional events flow
/// again and a large body is taken whole.
fn after_the_slow_senders(server: &Server, client: &mut Client, prefix: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let optional = typed_event(&format!("{prefix}-tel3"), "u3", "telemetry");
        let response = client.request(&signed_event(optional.as_bytes()));
        if response.status == 202 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "optional events still refused: {}", response.describe());
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut big = server.client();
    let body = event(&format!("{prefix}-big"), "u4");
    let padded = body.replacen("\"payload\":{", &format!("\"payload\":{{\"pad\":\"{}\",", "x".repeat(400_000)), 1);
    let request = signed_event(padded.as_bytes());
    big.stream.write_all(&request).expect("send");
    expect_accepted(&big.read_response());
}
