//! Signed events go in over real sockets and come back from `sluice tail` byte for byte
//! (plus `ingested_at`), at the partition and offset the answer named.

use std::collections::HashMap;

use sluice_test_support::*;

/// Tail lines keyed by (partition, offset); panics on a repeated position.
fn by_position(lines: &[TailLine]) -> HashMap<(u32, u64), TailLine> {
    let mut map = HashMap::new();
    for line in lines {
        assert!(map.insert((line.partition, line.offset), line.clone()).is_none(), "position printed twice: {}", line.line);
    }
    map
}

fn assert_recent(ingested_ms: i64) {
    let skew = (now_ms() - ingested_ms).abs();
    assert!(skew < 5 * 60 * 1000, "ingested_at is {skew} ms away from the test clock");
}

#[test]
fn single_events_come_back_byte_identical() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let prefix = unique_prefix();
    // Unusual but valid bytes that a re-serialising gateway would change: spacing,
    // member order, unicode (raw and escaped), number spellings, unknown members.
    let bodies = [
        event(&format!("{prefix}-a"), "u_1"),
        format!(
            r#"{{ "payload" : {{"amount": 1.50e2, "note":"caf\u00e9 ü \"q\" \\ /"}},
  "key":{{"user_id":"u_2","region":"eu"}}, "occurred_at":"2025-10-24T11:37:21.250+03:00",
  "event_type":"kyc.result", "event_id":"{prefix}-b", "extra":[1,2,{{"x":null}}], "flag":true }}"#
        ),
        format!(r#"{{"event_id":"{prefix}-c","event_type":"t","occurred_at":"2025-10-24T11:37:21Z","key":{{"user_id":"u_3"}}}}"#),
        format!(
            "{{\"event_id\":\"{prefix}-d\",\"event_type\":\"t\",\"occurred_at\":\"2025-10-24T11:37:21Z\",\"key\":{{\"user_id\":\"u_4\"}},\"payload\":{{\"emoji\":\"\u{1F600}\"}}}}"
        ),
    ];
    let mut client = server.client();
    let mut placed = Vec::new();
    for body in &bodies {
        let response = client.request(&signed_event(body.as_bytes()));
        placed.push(expect_accepted(&response));
        assert!(!response.closes(), "keep-alive request answered with connection: close");
    }
    let stored = by_position(&sandbox.tail());
    assert_eq!(stored.len(), bodies.len(), "tail shows other events than were sent");
    for (body, position) in bodies.iter().zip(&placed) {
        let line = stored.get(position).unwrap_or_else(|| panic!("nothing in tail at {position:?}"));
        assert_recent(assert_stored_as_sent(body, &line.event));
    }
    // The spec's example body: a multi-line body is stored with its bytes (tail turns the
    // insignificant CR/LF into spaces to keep one event per line).
    let multiline = format!(
        "{{\"event_id\":\"{prefix}-e\",\r\n \"event_type\":\"bet\",\n \"occurred_at\":\"2025-10-24T11:37:21Z\",\n \"key\":{{\"user_id\":\"u_5\"}}}}\n"
    );
    let position = expect_accepted(&client.request(&signed_event(multiline.as_bytes())));
    let stored = by_position(&sandbox.tail());
    assert_recent(assert_stored_as_sent(&multiline, &stored[&position].event));
    // On disk the bytes are exactly the sent ones, CR/LF included.
    let on_disk = segment_records(&sandbox.data_dir, position.0);
    let record = on_disk.iter().find(|r| r.offset == position.1).expect("record on disk");
    let close = multiline.rfind('}').unwrap();
    assert!(record.event.starts_with(&multiline.as_bytes()[..close]), "stored bytes differ: {:?}", String::from_utf8_lossy(&record.event));
    assert!(record.event.ends_with(&multiline.as_bytes()[close..]), "stored bytes differ: {:?}", String::from_utf8_lossy(&record.event));
    assert_eq!(record.event.len(), multiline.len() + ",\"ingested_at\":\"2025-10-24T11:37:21.000Z\"".len());
    assert_eq!(record.event_id, format!("{prefix}-e").into_bytes());
}

#[test]
fn batch_results_match_tail() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let prefix = unique_prefix();
    let lines: Vec<String> = (0..6).map(|i| event(&format!("{prefix}-{i}"), &format!("user-{i}"))).collect();
    // CRLF line ends and a trailing newline are both fine in NDJSON.
    let body = format!("{}\r\n{}\n", lines[..3].join("\r\n"), lines[3..].join("\n"));
    let request = post("/v1/events/batch", Some("application/x-ndjson"), &auth_headers(body.as_bytes()), body.as_bytes());
    let response = server.client().request(&request);
    assert_eq!(response.status, 200, "{}", response.describe());
    let json = response.json();
    assert_eq!(json.get("accepted").and_then(Json::as_u64), Some(6), "{}", response.describe());
    assert_eq!(json.get("duplicates").and_then(Json::as_u64), Some(0));
    assert_eq!(json.get("rejected").and_then(Json::as_u64), Some(0));
    let results = json.get("results").and_then(Json::as_array).expect("results array").to_vec();
    assert_eq!(results.len(), 6);
    let stored = by_position(&sandbox.tail());
    assert_eq!(stored.len(), 6);
    for (line, result) in lines.iter().zip(&results) {
        assert_eq!(result.get("status").and_then(Json::as_str), Some("accepted"), "{result:?}");
        let position = placement_of(result).expect("placement");
        let tail_line = stored.get(&position).unwrap_or_else(|| panic!("nothing at {position:?}"));
        assert_recent(assert_stored_as_sent(line, &tail_line.event));
    }
}

#[test]
fn one_user_keeps_order_in_one_partition() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let prefix = unique_prefix();
    let mut client = server.client();
    let mut positions = Vec::new();
    for i in 0..8 {
        positions.push(expect_accepted(&client.request(&signed_event(event(&format!("{prefix}-s{i}"), "same-user").as_bytes()))));
    }
    let batch: Vec<String> = (8..16).map(|i| event(&format!("{prefix}-s{i}"), "same-user")).collect();
    let response = client.request(&signed_batch(&batch));
    assert_eq!(response.status, 200, "{}", response.describe());
    for result in response.json().get("results").and_then(Json::as_array).expect("results") {
        positions.push(placement_of(result).expect("accepted"));
    }
    let partition = positions[0].0;
    assert!(positions.iter().all(|(p, _)| *p == partition), "one user_id spread over partitions: {positions:?}");
    assert!(positions.windows(2).all(|w| w[0].1 < w[1].1), "offsets not increasing in send order: {positions:?}");
    let in_partition = tail_with(&sandbox.data_dir, &["--partition", &partition.to_string()]);
    let ids: Vec<String> = in_partition.iter().map(TailLine::event_id).collect();
    let expected: Vec<String> = (0..16).map(|i| format!("{prefix}-s{i}")).collect();
    assert_eq!(ids, expected, "tail order differs from send order");
}

#[test]
fn chunked_body_is_accepted() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let body = event(&format!("{}-chunked", unique_prefix()), "u_chunk");
    let bytes = body.as_bytes();
    let mut request =
        String::from("POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n");
    for (name, value) in auth_headers(bytes) {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut wire = request.into_bytes();
    let (first, rest) = bytes.split_at(10);
    let (second, third) = rest.split_at(rest.len() / 2);
    for (index, chunk) in [first, second, third].into_iter().enumerate() {
        // Upper-case hex and a chunk extension on one chunk: both legal.
        let size = if index == 1 { format!("{:X};ext=1", chunk.len()) } else { format!("{:x}", chunk.len()) };
        wire.extend_from_slice(format!("{size}\r\n").as_bytes());
        wire.extend_from_slice(chunk);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    let mut client = server.client();
    // Dribble the request so the framer sees it in pieces.
    for piece in wire.chunks(37) {
        client.send(piece);
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let position = expect_accepted(&client.read_response());
    let stored = by_position(&sandbox.tail());
    assert_stored_as_sent(&body, &stored[&position].event);
    // The connection is still usable after a chunked request.
    assert_eq!(client.request(&get("/healthz")).status, 200);
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let prefix = unique_prefix();
    let mut client = server.client();
    for i in 0..10 {
        let response = client.request(&signed_event(event(&format!("{prefix}-k{i}"), &format!("u{i}")).as_bytes()));
        expect_accepted(&response);
        assert!(!response.closes());
        let health = client.request(&get("/healthz"));
        assert_eq!(health.status, 200);
    }
    assert_eq!(sandbox.tail().len(), 10);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let prefix = unique_prefix();
    // Different users: some events are stored by this shard, some handed to the other
    // one, so answers become ready out of order; they must still go out in order.
    let ids: Vec<String> = (0..3).map(|i| format!("{prefix}-p{i}")).collect();
    let mut wire = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        wire.extend(signed_event(event(id, &format!("pipeline-user-{i}")).as_bytes()));
    }
    let mut client = server.client();
    client.send(&wire);
    let positions: Vec<(u32, u64)> = (0..3).map(|_| expect_accepted(&client.read_response())).collect();
    let stored = by_position(&sandbox.tail());
    for (id, position) in ids.iter().zip(&positions) {
        assert_eq!(&stored[position].event_id(), id, "answer order differs from request order");
    }
    // A longer pipeline mixing methods, including a batch and a health check.
    let mut wire = Vec::new();
    let more: Vec<String> = (3..9).map(|i| format!("{prefix}-p{i}")).collect();
    for (i, id) in more.iter().enumerate() {
        wire.extend(signed_event(event(id, &format!("pipeline-user-{i}")).as_bytes()));
        if i == 2 {
            wire.extend(get("/healthz"));
            wire.extend(signed_batch(&[event(&format!("{prefix}-pb"), "pipeline-batch")]));
        }
    }
    client.send(&wire);
    let mut answers = Vec::new();
    for _ in 0..more.len() + 2 {
        answers.push(client.read_response());
    }
    assert_eq!(answers[3].status, 200);
    assert_eq!(answers[3].json().get("status").and_then(Json::as_str), Some("ok"), "{}", answers[3].describe());
    assert_eq!(answers[4].status, 200);
    assert_eq!(answers[4].json().get("accepted").and_then(Json::as_u64), Some(1), "{}", answers[4].describe());
    let singles: Vec<&Response> = answers.iter().enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, r)| r).collect();
    let stored = by_position(&sandbox.tail());
    for (id, response) in more.iter().zip(singles) {
        let position = expect_accepted(response);
        assert_eq!(&stored[&position].event_id(), id, "answer order differs from request order");
    }
}
