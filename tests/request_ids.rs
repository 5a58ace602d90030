//! Request-id memory (SPEC §1.3): an `X-Request-Id` repeated with the same body gets the
//! original answer (marked `idempotent-replayed: true`), with another body 409
//! `request_id_conflict`; ids are per partner; the memory survives a restart.

use sluice_test_support::*;

fn with_id(body: &[u8], id: &str) -> Vec<u8> {
    let mut headers = auth_headers(body);
    headers.push(("X-Request-Id".into(), id.into()));
    post("/v1/events", Some("application/json"), &headers, body)
}

#[test]
fn a_repeat_gets_the_original_answer_and_another_body_conflicts() {
    let sandbox = Sandbox::new(Setup::default());
    let mut server = sandbox.start();
    let prefix = unique_prefix();
    let body = event(&format!("{prefix}-a"), "u_rid");
    let id = format!("{prefix}-req-1");
    let mut client = server.client();
    let first = client.request(&with_id(body.as_bytes(), &id));
    let placement = expect_accepted(&first);
    // Same id, same body, fresh signature: the original 202, not a 200 duplicate.
    let repeat = client.request(&with_id(body.as_bytes(), &id));
    assert_eq!(repeat.status, 202, "{}", repeat.describe());
    assert_eq!(repeat.placement(), placement);
    assert_eq!(repeat.header("idempotent-replayed"), Some("true"), "{:?}", repeat.headers);
    let other = event(&format!("{prefix}-b"), "u_rid");
    expect_error(&client.request(&with_id(other.as_bytes(), &id)), 409, "request_id_conflict");
    // Another partner may use the same id.
    let ts = now_secs().to_string();
    let headers = vec![
        ("X-Key-Id".into(), KID_OTHER.into()),
        ("X-Timestamp".into(), ts.clone()),
        ("X-Signature".into(), sign_v1(&SECRET_OTHER, &ts, other.as_bytes())),
        ("X-Request-Id".into(), id.clone()),
    ];
    expect_accepted(&client.request(&post("/v1/events", Some("application/json"), &headers, other.as_bytes())));
    // Rejections are remembered too: a repeated invalid request gets the same 400.
    let invalid = r#"{"event_id":"x"}"#;
    let bad_id = format!("{prefix}-req-bad");
    let first_bad = client.request(&with_id(invalid.as_bytes(), &bad_id));
    assert_eq!(first_bad.status, 400);
    let repeat_bad = client.request(&with_id(invalid.as_bytes(), &bad_id));
    assert_eq!((repeat_bad.status, repeat_bad.body.clone()), (400, first_bad.body.clone()));
    expect_error(&client.request(&with_id(body.as_bytes(), "bad id with spaces")), 400, "request_id_invalid");
    assert_eq!(sandbox.tail().len(), 2, "one event per body, whatever the repeats");

    // After a restart the id is still remembered.
    assert!(server.stop().success());
    let server = sandbox.start();
    let mut client = server.client();
    let after = client.request(&with_id(body.as_bytes(), &id));
    assert_eq!(after.status, 202, "{}", after.describe());
    assert_eq!(after.placement(), placement);
    expect_error(&client.request(&with_id(other.as_bytes(), &id)), 409, "request_id_conflict");
    assert_eq!(sandbox.tail().len(), 2);
}

#[test]
fn batch_answers_are_replayed_whole() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let prefix = unique_prefix();
    let lines: Vec<String> = (0..5).map(|n| event(&format!("{prefix}-{n}"), &format!("u{n}"))).collect();
    let body = lines.join("\n");
    let mut headers = auth_headers(body.as_bytes());
    headers.push(("X-Request-Id".into(), format!("{prefix}-batch")));
    let request = post("/v1/events/batch", Some("application/x-ndjson"), &headers, body.as_bytes());
    let mut client = server.client();
    let first = client.request(&request);
    assert_eq!(first.status, 200, "{}", first.describe());
    assert_eq!(first.json().get("accepted").and_then(Json::as_u64), Some(5));
    let repeat = client.request(&request);
    assert_eq!((repeat.status, repeat.body.clone()), (200, first.body.clone()), "the batch answer is replayed byte for byte");
    assert_eq!(sandbox.tail().len(), 5);
}

#[test]
fn remembered_answers_survive_kill_9() {
    let sandbox = Sandbox::new(Setup::default());
    let mut server = sandbox.start();
    let prefix = unique_prefix();
    let mut client = server.client();
    let mut sent = Vec::new();
    for n in 0..20 {
        let body = event(&format!("{prefix}-{n}"), &format!("u{n}"));
        let id = format!("{prefix}-id-{n}");
        let placement = expect_accepted(&client.request(&with_id(body.as_bytes(), &id)));
        sent.push((body, id, placement));
    }
    // Every answer above was read by the client, so its journal record was written first.
    server.kill9();
    let server = sandbox.start();
    let mut client = server.client();
    for (body, id, placement) in &sent {
        let repeat = client.request(&with_id(body.as_bytes(), id));
        assert_eq!((repeat.status, repeat.placement()), (202, *placement), "{id}: {}", repeat.describe());
        assert_eq!(repeat.header("idempotent-replayed"), Some("true"));
    }
    assert_eq!(sandbox.tail().len(), sent.len());
}
