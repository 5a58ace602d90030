//! Every way a v1 signature can be wrong is answered 401 with its own code, and nothing
//! of a rejected request is stored (SPEC §1.1, §1.3).

use sluice_test_support::*;

const DAY_MS: i64 = 86_400_000;

fn rfc3339(unix_ms: i64) -> String {
    String::from_utf8(sluice::platform::time::format_rfc3339_ms(unix_ms).to_vec()).expect("ascii")
}

/// Keys beside the two default ones: expired, in grace, not yet valid.
fn setup_with_lifecycle_keys() -> Setup {
    let now = now_ms();
    let extra_keys = format!(
        "[[keys]]\nkid = \"expired\"\nsecret = \"{secret}\"\npartner = \"tests\"\nnot_after = \"{expired}\"\n\n\
         [[keys]]\nkid = \"in-grace\"\nsecret = \"{secret}\"\npartner = \"tests\"\nnot_after = \"{yesterday}\"\ngrace_days = 7\n\n\
         [[keys]]\nkid = \"pending\"\nsecret = \"{secret}\"\npartner = \"tests\"\nnot_before = \"{next_week}\"\n",
        secret = whsec(&SECRET),
        expired = rfc3339(now - 10 * DAY_MS),
        yesterday = rfc3339(now - DAY_MS),
        next_week = rfc3339(now + 7 * DAY_MS),
    );
    Setup { extra_keys, ..Setup::default() }
}

struct Case {
    name: &'static str,
    headers: Vec<(String, String)>,
    code: &'static str,
}

fn header(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_owned(), value.into())
}

fn headers(kid: &str, ts: &str, sig: &str) -> Vec<(String, String)> {
    vec![header("X-Key-Id", kid), header("X-Timestamp", ts), header("X-Signature", sig)]
}

fn without(mut list: Vec<(String, String)>, name: &str) -> Vec<(String, String)> {
    list.retain(|(n, _)| n != name);
    list
}

fn rejection_cases(body: &[u8]) -> Vec<Case> {
    let now = now_secs_early();
    let ts = now.to_string();
    let good = sign_v1(&SECRET, &ts, body);
    let valid = headers(KID, &ts, &good);
    let stale = (now - 301).to_string();
    let future = (now + 301).to_string();
    // The article's sketch signs the body alone; that must not verify.
    let mac_only_body = {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&SECRET).expect("any key length");
        mac.update(body);
        format!("v1={}", hex(&mac.finalize().into_bytes()))
    };
    let flipped = {
        let mut s = good.clone();
        let last = s.pop().expect("a signature");
        s.push(if last == '0' { '1' } else { '0' });
        s
    };
    let mut cases = vec![
        // First: sent within half a second of `now`, so the server judges them in the same second.
        Case {
            name: "stale timestamp (now-301)",
            headers: headers(KID, &stale, &sign_v1(&SECRET, &stale, body)),
            code: "timestamp_out_of_window",
        },
        Case {
            name: "future timestamp (now+301)",
            headers: headers(KID, &future, &sign_v1(&SECRET, &future, body)),
            code: "timestamp_out_of_window",
        },
        Case { name: "no X-Key-Id", headers: without(valid.clone(), "X-Key-Id"), code: "signature_missing" },
        Case { name: "no X-Timestamp", headers: without(valid.clone(), "X-Timestamp"), code: "signature_missing" },
        Case { name: "no X-Signature", headers: without(valid.clone(), "X-Signature"), code: "signature_missing" },
        Case { name: "no headers at all", headers: Vec::new(), code: "signature_missing" },
        Case { name: "empty X-Key-Id", headers: headers("", &ts, &good), code: "signature_missing" },
        Case { name: "empty signature", headers: headers(KID, &ts, ""), code: "signature_invalid" },
        Case { name: "bare v1=", headers: headers(KID, &ts, "v1="), code: "signature_invalid" },
        Case { name: "truncated signature", headers: headers(KID, &ts, &good[..good.len() - 1]), code: "signature_invalid" },
        Case { name: "half a signature", headers: headers(KID, &ts, &good[..3 + 32]), code: "signature_invalid" },
        Case { name: "long signature", headers: headers(KID, &ts, &format!("{good}00")), code: "signature_invalid" },
        Case { name: "non-hex signature", headers: headers(KID, &ts, &format!("v1={}", "zz".repeat(32))), code: "signature_invalid" },
        Case { name: "last digit flipped", headers: headers(KID, &ts, &flipped), code: "signature_invalid" },
        Case { name: "wrong secret", headers: headers(KID, &ts, &sign_v1(&SECRET_OTHER, &ts, body)), code: "signature_invalid" },
        Case { name: "other kid's valid signature", headers: headers(KID_OTHER, &ts, &good), code: "signature_invalid" },
        Case { name: "body-only signature", headers: headers(KID, &ts, &mac_only_body), code: "signature_invalid" },
        Case { name: "signature for another timestamp", headers: headers(KID, &(now - 1).to_string(), &good), code: "signature_invalid" },
        Case { name: "unknown scheme only", headers: headers(KID, &ts, &good.replacen("v1=", "v2=", 1)), code: "signature_invalid" },
        Case { name: "unknown kid", headers: headers("no-such-kid", &ts, &good), code: "key_unknown" },
        Case { name: "non-numeric timestamp", headers: headers(KID, "17e8", &sign_v1(&SECRET, "17e8", body)), code: "timestamp_invalid" },
        Case { name: "negative timestamp", headers: headers(KID, "-1", &sign_v1(&SECRET, "-1", body)), code: "timestamp_invalid" },
        Case {
            name: "fractional timestamp",
            headers: headers(KID, &format!("{ts}.5"), &sign_v1(&SECRET, &format!("{ts}.5"), body)),
            code: "timestamp_invalid",
        },
        Case { name: "expired key", headers: headers("expired", &ts, &good), code: "key_not_valid" },
        Case { name: "key not yet valid", headers: headers("pending", &ts, &good), code: "key_not_valid" },
    ];
    // More comma-separated items than the server hashes against.
    let many = vec![good.clone(); 9].join(",");
    cases.push(Case { name: "nine signatures", headers: headers(KID, &ts, &many), code: "signature_invalid" });
    cases
}

/// Sends every case whose code `select` picks to both ingest paths; asserts the 401
/// and that nothing was stored.
fn check_rejections(select: impl Fn(&str) -> bool) {
    let sandbox = Sandbox::new(setup_with_lifecycle_keys());
    let server = sandbox.start();
    let body = event(&format!("{}-rejected", unique_prefix()), "u_auth");
    let mut client = server.client();
    let cases: Vec<Case> = rejection_cases(body.as_bytes()).into_iter().filter(|c| select(c.code)).collect();
    assert!(!cases.is_empty());
    for case in cases {
        let response = client.request(&post("/v1/events", Some("application/json"), &case.headers, body.as_bytes()));
        assert_eq!(response.status, 401, "{}: {}", case.name, response.describe());
        assert_eq!(response.error_code(), case.code, "{}: {}", case.name, response.describe());
        // The message never echoes what was sent.
        let text = response.text();
        for (_, value) in &case.headers {
            if value.len() > 8 {
                assert!(!text.contains(value.as_str()), "{}: answer echoes a header: {text}", case.name);
            }
        }
        assert!(!response.closes(), "{}: a 401 need not close the connection", case.name);
        // The same case against the batch endpoint.
        let batch = post("/v1/events/batch", Some("application/x-ndjson"), &case.headers, body.as_bytes());
        let response = client.request(&batch);
        assert_eq!((response.status, response.error_code().as_str()), (401, case.code), "batch {}: {}", case.name, response.describe());
    }
    assert!(sandbox.tail().is_empty(), "a rejected request was stored");
}

#[test]
fn missing_stale_future_unknown_and_malformed_credentials_are_401() {
    check_rejections(|code| code != "signature_invalid");
}

#[test]
fn invalid_signatures_are_401_signature_invalid() {
    check_rejections(|code| code == "signature_invalid");
}

#[test]
fn one_valid_signature_among_several_is_enough() {
    let sandbox = Sandbox::new(setup_with_lifecycle_keys());
    let server = sandbox.start();
    let prefix = unique_prefix();
    let mut client = server.client();
    let mut accepted = Vec::new();
    /// Builds an `X-Signature` value from the valid signature and another key's one.
    type Variant = fn(&str, &str) -> String;
    let variants: [Variant; 4] = [
        |good, _| format!("v1={},{good}", "ab".repeat(32)),
        |good, _| format!("{good}, v1={}", "cd".repeat(32)),
        |good, other| format!("v0=abc, {other} ,\t{good}"),
        |good, _| good.to_uppercase().replacen("V1=", "v1=", 1),
    ];
    for (i, make) in variants.iter().enumerate() {
        let id = format!("{prefix}-multi-{i}");
        let body = event(&id, "u_multi");
        let ts = now_secs().to_string();
        let good = sign_v1(&SECRET, &ts, body.as_bytes());
        let other = sign_v1(&SECRET_OTHER, &ts, body.as_bytes());
        let response =
            client.request(&post("/v1/events", Some("application/json"), &headers(KID, &ts, &make(&good, &other)), body.as_bytes()));
        expect_accepted(&response);
        accepted.push(id);
    }
    // A key past not_after but inside its grace period, and the other partner's key.
    for (kid, secret) in [("in-grace", &SECRET[..]), (KID_OTHER, &SECRET_OTHER[..])] {
        let id = format!("{prefix}-{kid}");
        let body = event(&id, "u_multi");
        let ts = now_secs().to_string();
        let sig = sign_v1(secret, &ts, body.as_bytes());
        expect_accepted(&client.request(&post("/v1/events", Some("application/json"), &headers(kid, &ts, &sig), body.as_bytes())));
        accepted.push(id);
    }
    // Just inside the window on both sides.
    for delta in [-299i64, 299] {
        let id = format!("{prefix}-edge{delta}");
        let body = event(&id, "u_multi");
        let ts = (now_secs_early() as i64 + delta).to_string();
        let sig = sign_v1(&SECRET, &ts, body.as_bytes());
        expect_accepted(&client.request(&post("/v1/events", Some("application/json"), &headers(KID, &ts, &sig), body.as_bytes())));
        accepted.push(id);
    }
    // Interleave rejected requests: they must leave no trace.
    for i in 0..3 {
        let body = event(&format!("{prefix}-bad-{i}"), "u_multi");
        let ts = (now_secs() - 1000).to_string();
        let response = client.request(&post(
            "/v1/events",
            Some("application/json"),
            &headers(KID, &ts, &sign_v1(&SECRET, &ts, body.as_bytes())),
            body.as_bytes(),
        ));
        expect_error(&response, 401, "timestamp_out_of_window");
    }
    let mut stored: Vec<String> = sandbox.tail().iter().map(TailLine::event_id).collect();
    stored.sort();
    accepted.sort();
    assert_eq!(stored, accepted);
}

#[test]
fn a_signature_is_bound_to_its_body() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let body = event(&format!("{}-bound", unique_prefix()), "u_bound");
    let request = signed_event(body.as_bytes());
    // Same headers, one body byte changed (same length): a tampered or replayed body.
    let tampered = String::from_utf8(request.clone()).unwrap().replace("slot_wolf", "slot_wolv");
    let mut client = server.client();
    expect_error(&client.request(tampered.as_bytes()), 401, "signature_invalid");
    // Trailing whitespace is part of the signed bytes too.
    let mut padded = body.clone();
    padded.push(' ');
    let headers_for_body = auth_headers(body.as_bytes());
    expect_error(
        &client.request(&post("/v1/events", Some("application/json"), &headers_for_body, padded.as_bytes())),
        401,
        "signature_invalid",
    );
    assert!(sandbox.tail().is_empty());
    expect_accepted(&client.request(&request));
    assert_eq!(sandbox.tail().len(), 1);
}
