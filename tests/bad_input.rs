//! Malformed HTTP, bodies and envelopes get the right 4xx, framing errors close the
//! connection, a slow client cannot hold a shard, and nothing rejected is stored.

use std::time::{Duration, Instant};

use sluice_test_support::*;

const BODY_BYTES_MAX: usize = 128 * 1024;
const HEADER_TIMEOUT_MS: u64 = 300;

fn setup() -> Setup {
    Setup { body_bytes_max: BODY_BYTES_MAX, header_timeout_ms: Some(HEADER_TIMEOUT_MS), ..Setup::default() }
}

/// Sends `request` on a fresh connection and checks the answer; with `closes`, also that
/// the server announces and performs the close.
fn check_fresh(server: &Server, name: &str, request: &[u8], status: u16, code: &str, closes: bool) -> Response {
    let mut client = server.client();
    // The server may answer (and stop reading) before a large request is fully written.
    let _ = client.try_send(request);
    let response =
        client.try_read_response().unwrap_or_else(|e| panic!("{name}: {e}")).unwrap_or_else(|| panic!("{name}: closed without an answer"));
    assert_eq!(response.status, status, "{name}: {}", response.describe());
    assert_eq!(response.error_code(), code, "{name}: {}", response.describe());
    if closes {
        assert!(response.closes(), "{name}: answer lacks connection: close: {:?}", response.headers);
        assert!(client.is_closed_by_peer(Duration::from_secs(3)), "{name}: connection left open after a framing error");
    } else {
        assert!(!response.closes(), "{name}: connection closed after a non-framing error");
        assert_eq!(client.request(&get("/healthz")).status, 200, "{name}: connection unusable afterwards");
    }
    response
}

/// A signed single event with an arbitrary body.
fn signed_raw(body: &[u8]) -> Vec<u8> {
    signed_event(body)
}

/// A valid envelope whose payload nests `depth` levels in total (top-level object = 1),
/// alternating objects and arrays below the payload object.
fn nested(id: &str, depth: usize) -> String {
    let below = depth - 2; // the top-level object and the payload object
    let mut value = String::from("1");
    for level in 0..below {
        value = if level % 2 == 0 { format!("[{value}]") } else { format!("{{\"a\":{value}}}") };
    }
    format!(
        r#"{{"event_id":"{id}","event_type":"t","occurred_at":"2025-10-24T11:37:21Z","key":{{"user_id":"u"}},"payload":{{"a":{value}}}}}"#
    )
}

#[test]
fn nested_helper_counts_levels() {
    // {"..","payload":{"a":[{"a":[ ... 1 ... ]}]}}: check the depth the helper builds.
    for depth in [2usize, 3, 4, 64, 65] {
        let text = nested("x", depth);
        let json = Json::parse(text.as_bytes()).expect("valid JSON");
        fn depth_of(json: &Json) -> usize {
            match json {
                Json::Object(members) => 1 + members.iter().map(|(_, v)| depth_of(v)).max().unwrap_or(0),
                Json::Array(items) => 1 + items.iter().map(depth_of).max().unwrap_or(0),
                _ => 0,
            }
        }
        assert_eq!(depth_of(&json), depth, "{text}");
    }
}

#[test]
#[expect(clippy::too_many_lines, reason = "one table of cases with its checks reads best whole")]
fn envelope_and_media_type_errors() {
    let sandbox = Sandbox::new(setup());
    let server = sandbox.start();
    let p = unique_prefix();
    let good = event(&format!("{p}-good"), "u");
    let base = r#""event_type":"t","occurred_at":"2025-10-24T11:37:21Z","key":{"user_id":"u"}"#;
    let id = |suffix: &str| format!("{p}-{suffix}");

    // 415: content type is checked per path, before anything else.
    for (name, path, content_type) in [
        ("text/plain single", "/v1/events", Some("text/plain")),
        ("no content type", "/v1/events", None),
        ("ndjson on single", "/v1/events", Some("application/x-ndjson")),
        ("json on batch", "/v1/events/batch", Some("application/json")),
        ("form on batch", "/v1/events/batch", Some("application/x-www-form-urlencoded")),
    ] {
        let request = post(path, content_type, &auth_headers(good.as_bytes()), good.as_bytes());
        check_fresh(&server, name, &request, 415, "unsupported_media_type", false);
    }
    // Parameters and case do not matter.
    let request = post("/v1/events", Some("Application/JSON; charset=utf-8"), &auth_headers(good.as_bytes()), good.as_bytes());
    expect_accepted(&server.client().request(&request));

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not JSON", b"{\"event_id\":".to_vec(), "json_invalid"),
        ("trailing comma", format!(r#"{{"event_id":"{}",{base},}}"#, id("tc")).into_bytes(), "json_invalid"),
        ("two documents", format!(r#"{{"event_id":"{}",{base}}} {{}}"#, id("two")).into_bytes(), "json_invalid"),
        ("empty body", Vec::new(), "json_invalid"),
        ("array", b"[1,2]".to_vec(), "not_an_object"),
        (
            "duplicate top-level key",
            format!(r#"{{"event_id":"{}","event_id":"{}",{base}}}"#, id("d1"), id("d2")).into_bytes(),
            "json_duplicate_key",
        ),
        (
            "duplicate nested key",
            format!(r#"{{"event_id":"{}",{base},"payload":{{"a":1,"b":2,"a":3}}}}"#, id("d3")).into_bytes(),
            "json_duplicate_key",
        ),
        (
            "duplicate key via escape",
            format!(r#"{{"event_id":"{}",{base},"payload":{{"ab":1,"a\u0062":2}}}}"#, id("d4")).into_bytes(),
            "json_duplicate_key",
        ),
        ("missing event_id", format!("{{{base}}}").into_bytes(), "field_missing"),
        (
            "missing event_type",
            format!(r#"{{"event_id":"{}","occurred_at":"2025-10-24T11:37:21Z","key":{{"user_id":"u"}}}}"#, id("m1")).into_bytes(),
            "field_missing",
        ),
        (
            "missing occurred_at",
            format!(r#"{{"event_id":"{}","event_type":"t","key":{{"user_id":"u"}}}}"#, id("m2")).into_bytes(),
            "field_missing",
        ),
        (
            "missing key",
            format!(r#"{{"event_id":"{}","event_type":"t","occurred_at":"2025-10-24T11:37:21Z"}}"#, id("m3")).into_bytes(),
            "field_missing",
        ),
        (
            "missing user_id",
            format!(r#"{{"event_id":"{}","event_type":"t","occurred_at":"2025-10-24T11:37:21Z","key":{{}}}}"#, id("m4")).into_bytes(),
            "field_missing",
        ),
        ("numeric event_id", format!(r#"{{"event_id":7,{base}}}"#).into_bytes(), "field_type"),
        ("empty event_id", format!(r#"{{"event_id":"",{base}}}"#).into_bytes(), "event_id_invalid"),
        ("event_id with space", format!(r#"{{"event_id":"a b",{base}}}"#).into_bytes(), "event_id_invalid"),
        ("event_id with slash", format!(r#"{{"event_id":"a/b",{base}}}"#).into_bytes(), "event_id_invalid"),
        ("event_id of 129 chars", format!(r#"{{"event_id":"{}",{base}}}"#, "e".repeat(129)).into_bytes(), "event_id_invalid"),
        (
            "bad occurred_at",
            format!(r#"{{"event_id":"{}","event_type":"t","occurred_at":"2025-02-30T00:00:00Z","key":{{"user_id":"u"}}}}"#, id("o"))
                .into_bytes(),
            "occurred_at_invalid",
        ),
        (
            "client ingested_at",
            format!(r#"{{"event_id":"{}",{base},"ingested_at":"2025-10-24T11:37:21.000Z"}}"#, id("r")).into_bytes(),
            "field_reserved",
        ),
        ("nesting 65", nested(&id("deep"), 65).into_bytes(), "json_too_deep"),
        (
            "invalid UTF-8",
            [format!(r#"{{"event_id":"{}",{base},"payload":{{"s":""#, id("utf")).as_bytes(), b"\xff\xfe", b"\"}}"].concat(),
            "utf8_invalid",
        ),
        ("lone surrogate", format!(r#"{{"event_id":"{}",{base},"payload":{{"s":"\ud800"}}}}"#, id("sur")).into_bytes(), "json_invalid"),
    ];
    let mut client = server.client();
    for (name, body, code) in &cases {
        let response = client.request(&signed_raw(body));
        assert_eq!(response.status, 400, "{name}: {}", response.describe());
        assert_eq!(response.error_code(), *code, "{name}: {}", response.describe());
        assert!(!response.closes(), "{name}: an envelope error need not close the connection");
    }
    // 64 levels is the limit, not past it.
    let deepest = nested(&id("deep64"), 64);
    let at_limit = expect_accepted(&client.request(&signed_raw(deepest.as_bytes())));
    // A body of exactly body_bytes_max is accepted.
    let mut full = format!(r#"{{"event_id":"{}",{base},"payload":{{"pad":""}}}}"#, id("full"));
    let pad = BODY_BYTES_MAX - full.len();
    full = full.replace(r#""pad":"""#, &format!(r#""pad":"{}""#, "x".repeat(pad)));
    assert_eq!(full.len(), BODY_BYTES_MAX);
    let full_at = expect_accepted(&client.request(&signed_raw(full.as_bytes())));

    let stored = sandbox.tail();
    let mut ids: Vec<String> = stored.iter().map(TailLine::event_id).collect();
    ids.sort();
    let mut expected = vec![id("good"), id("deep64"), id("full")];
    expected.sort();
    assert_eq!(ids, expected, "only the valid events may be stored");
    for (position, body) in [(at_limit, &deepest), (full_at, &full)] {
        let line = stored.iter().find(|l| (l.partition, l.offset) == position).expect("stored");
        assert_stored_as_sent(body, &line.event);
    }
}

#[test]
#[expect(clippy::too_many_lines, reason = "one table of cases with its checks reads best whole")]
fn framing_errors_close_the_connection() {
    let sandbox = Sandbox::new(setup());
    let server = sandbox.start();
    let body = event(&format!("{}-framing", unique_prefix()), "u");
    let signed = auth_headers(body.as_bytes());
    let head = |extra: &str| {
        let mut text = String::from("POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n");
        for (name, value) in &signed {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str(extra);
        text.push_str("\r\n");
        text.into_bytes()
    };
    let with_body = |extra: &str, payload: &[u8]| [head(extra), payload.to_vec()].concat();
    let chunked_body = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());

    check_fresh(
        &server,
        "Content-Length and Transfer-Encoding",
        &with_body(&format!("Content-Length: {}\r\nTransfer-Encoding: chunked\r\n", chunked_body.len()), chunked_body.as_bytes()),
        400,
        "content_length_with_transfer_encoding",
        true,
    );
    check_fresh(
        &server,
        "Transfer-Encoding then Content-Length",
        &with_body(&format!("Transfer-Encoding: chunked\r\nContent-Length: {}\r\n", body.len()), chunked_body.as_bytes()),
        400,
        "content_length_with_transfer_encoding",
        true,
    );
    let length = format!("Content-Length: {}\r\n", body.len());
    check_fresh(
        &server,
        "duplicate Content-Length",
        &with_body(&format!("{length}{length}"), body.as_bytes()),
        400,
        "content_length_invalid",
        true,
    );
    check_fresh(
        &server,
        "Content-Length list",
        &with_body(&format!("Content-Length: {0}, {0}\r\n", body.len()), body.as_bytes()),
        400,
        "content_length_invalid",
        true,
    );
    check_fresh(&server, "negative Content-Length", &with_body("Content-Length: -1\r\n", b""), 400, "content_length_invalid", true);
    check_fresh(
        &server,
        "bad chunk size",
        &with_body("Transfer-Encoding: chunked\r\n", b"zz\r\nhello\r\n0\r\n\r\n"),
        400,
        "chunk_invalid",
        true,
    );
    check_fresh(
        &server,
        "chunk without CRLF",
        &with_body("Transfer-Encoding: chunked\r\n", b"5\r\nhelloX\r\n0\r\n\r\n"),
        400,
        "chunk_invalid",
        true,
    );
    check_fresh(
        &server,
        "gzip transfer coding",
        &with_body("Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"),
        400,
        "transfer_encoding_unsupported",
        true,
    );
    check_fresh(
        &server,
        "Content-Length over the limit",
        &head(&format!("Content-Length: {}\r\n", BODY_BYTES_MAX + 1)),
        413,
        "body_too_large",
        true,
    );
    // The same over-limit body actually sent: the server must still answer first.
    let big = vec![b' '; BODY_BYTES_MAX + 1];
    check_fresh(
        &server,
        "body over the limit",
        &with_body(&format!("Content-Length: {}\r\n", big.len()), &big),
        413,
        "body_too_large",
        true,
    );
    let mut chunked_big = Vec::new();
    for _ in 0..3 {
        chunked_big.extend_from_slice(format!("{:x}\r\n", BODY_BYTES_MAX / 2).as_bytes());
        chunked_big.extend(std::iter::repeat_n(b' ', BODY_BYTES_MAX / 2));
        chunked_big.extend_from_slice(b"\r\n");
    }
    chunked_big.extend_from_slice(b"0\r\n\r\n");
    check_fresh(
        &server,
        "chunked body over the limit",
        &with_body("Transfer-Encoding: chunked\r\n", &chunked_big),
        413,
        "body_too_large",
        true,
    );
    let huge_header = format!("X-Padding: {}\r\n", "a".repeat(20 * 1024));
    check_fresh(
        &server,
        "headers over 16 KiB",
        &with_body(&format!("{huge_header}{length}"), body.as_bytes()),
        431,
        "headers_too_large",
        true,
    );
    let many: String = (0..70).map(|i| format!("X-H{i}: v\r\n")).collect();
    check_fresh(&server, "70 headers", &with_body(&format!("{many}{length}"), body.as_bytes()), 431, "too_many_headers", true);
    check_fresh(&server, "garbage request line", b"HELLO\x01 THERE\r\n\r\n", 400, "http_malformed", true);
    check_fresh(&server, "bare LF garbage", b"\x00\x01\x02\r\n\r\n", 400, "http_malformed", true);

    // A request after a framing error on the same connection is never served.
    let mut client = server.client();
    let mut wire = with_body(&format!("{length}{length}"), body.as_bytes());
    wire.extend(signed_event(body.as_bytes()));
    client.send(&wire);
    expect_error(&client.read_response(), 400, "content_length_invalid");
    assert!(client.is_closed_by_peer(Duration::from_secs(3)));

    assert!(sandbox.tail().is_empty(), "a refused request was stored");
}

#[test]
fn routing_errors_and_batch_limits() {
    let sandbox = Sandbox::new(setup());
    let server = sandbox.start();
    let p = unique_prefix();
    let body = event(&format!("{p}-r"), "u");
    check_fresh(
        &server,
        "unknown path",
        &post("/v1/nope", Some("application/json"), &auth_headers(body.as_bytes()), body.as_bytes()),
        404,
        "not_found",
        false,
    );
    check_fresh(&server, "root", &get("/"), 404, "not_found", false);
    check_fresh(
        &server,
        "trailing slash",
        &post("/v1/events/", Some("application/json"), &auth_headers(body.as_bytes()), body.as_bytes()),
        404,
        "not_found",
        false,
    );
    let response = check_fresh(&server, "GET events", &get("/v1/events"), 405, "method_not_allowed", false);
    assert_eq!(response.header("allow"), Some("POST"));
    let put = format!("PUT /v1/events/batch HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    check_fresh(&server, "PUT batch", put.as_bytes(), 405, "method_not_allowed", false);
    let response = check_fresh(&server, "POST healthz", &post("/healthz", None, &[], b""), 405, "method_not_allowed", false);
    assert!(response.header("allow").is_some_and(|v| v.contains("GET")), "{:?}", response.headers);

    // Batches: over 1000 events is 413; an empty batch is 400.
    let line =
        |i: usize| format!(r#"{{"event_id":"{p}-b{i}","event_type":"t","occurred_at":"2025-10-24T11:37:21Z","key":{{"user_id":"u{i}"}}}}"#);
    let lines: Vec<String> = (0..1001).map(line).collect();
    assert!(lines.join("\n").len() < BODY_BYTES_MAX);
    check_fresh(&server, "1001 events", &signed_batch(&lines), 413, "batch_too_large", false);
    check_fresh(&server, "empty batch", &signed_batch(&[]), 400, "batch_empty", false);
    check_fresh(&server, "blank lines only", &signed_batch(&["".into(), "  ".into(), "".into()]), 400, "batch_empty", false);
    assert!(sandbox.tail().is_empty(), "a refused batch was stored");

    // A bad line rejects only itself.
    let mixed = vec![line(1), "{not json".into(), line(2), format!(r#"{{"event_id":"{p}-b3"}}"#)];
    let response = server.client().request(&signed_batch(&mixed));
    assert_eq!(response.status, 200, "{}", response.describe());
    let json = response.json();
    assert_eq!(json.get("accepted").and_then(Json::as_u64), Some(2), "{}", response.describe());
    assert_eq!(json.get("rejected").and_then(Json::as_u64), Some(2));
    let results = json.get("results").and_then(Json::as_array).expect("results").to_vec();
    assert_eq!(results.len(), 4);
    let rejected_code = |i: usize| {
        assert_eq!(results[i].get("status").and_then(Json::as_str), Some("rejected"), "{:?}", results[i]);
        results[i].get("error").and_then(|e| e.get("code")).and_then(Json::as_str).map(str::to_owned)
    };
    assert_eq!(rejected_code(1).as_deref(), Some("json_invalid"));
    assert_eq!(rejected_code(3).as_deref(), Some("field_missing"));
    let mut ids: Vec<String> = sandbox.tail().iter().map(TailLine::event_id).collect();
    ids.sort();
    assert_eq!(ids, vec![format!("{p}-b1"), format!("{p}-b2")]);
}

#[test]
fn exactly_1000_events_fit_in_a_batch() {
    let sandbox = Sandbox::new(setup());
    let server = sandbox.start();
    let p = unique_prefix();
    let lines: Vec<String> = (0..1000)
        .map(|i| format!(r#"{{"event_id":"{p}-{i}","event_type":"t","occurred_at":"2025-10-24T11:37:21Z","key":{{"user_id":"u{i}"}}}}"#))
        .collect();
    let response = server.client().request(&signed_batch(&lines));
    assert_eq!(response.status, 200, "{}", response.describe());
    assert_eq!(response.json().get("accepted").and_then(Json::as_u64), Some(1000), "{}", response.describe());
    assert_eq!(sandbox.tail().len(), 1000);
}

#[test]
fn slow_client_times_out_without_blocking_others() {
    let sandbox = Sandbox::new(Setup { shards: 1, ..setup() });
    let server = sandbox.start();
    let mut slow = server.client();
    let started = Instant::now();
    slow.send(b"POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: appl");
    // Another client on the same (single) shard is served while the slow one dawdles.
    std::thread::sleep(Duration::from_millis(50));
    let id = format!("{}-fast", unique_prefix());
    let mut fast = server.client();
    let before = Instant::now();
    expect_accepted(&fast.request(&signed_event(event(&id, "u_fast").as_bytes())));
    assert!(before.elapsed() < Duration::from_millis(HEADER_TIMEOUT_MS), "fast client waited {:?}", before.elapsed());
    // The slow one gets 408 (or just a close) soon after header_timeout_ms.
    std::thread::sleep(Duration::from_millis(HEADER_TIMEOUT_MS + 200));
    match slow.try_read_response() {
        Ok(Some(response)) => {
            expect_error(&response, 408, "request_timeout");
            assert!(response.closes());
            assert!(slow.is_closed_by_peer(Duration::from_secs(3)));
        }
        Ok(None) => {}
        Err(e) => panic!("slow client neither answered nor closed: {e}"),
    }
    let waited = started.elapsed();
    assert!(waited < Duration::from_millis(HEADER_TIMEOUT_MS + 2000), "timeout took {waited:?}");
    // A slow body (headers done, body stalled) is cut too, by body_timeout_ms, which
    // is 30 s by default: only check that the header timer does not fire on it early.
    let body = event(&format!("{id}-2"), "u_fast");
    let mut request = signed_event(body.as_bytes());
    let tail = request.split_off(request.len() - 10);
    let mut stalled = server.client();
    stalled.send(&request);
    std::thread::sleep(Duration::from_millis(HEADER_TIMEOUT_MS + 200));
    stalled.send(&tail);
    expect_accepted(&stalled.read_response());
    let ids: Vec<String> = sandbox.tail().iter().map(TailLine::event_id).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
}
