//! SPEC §1.1, Standard Webhooks compatibility: `POST /v1/webhooks/<source>` accepts
//! `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64>` over
//! `"<id>.<timestamp>.<body>"`. `<source>` names the partner; any accepted key of that
//! partner may have signed. The producer side here is the published `standardwebhooks`
//! package from PyPI (the test support installs it into its venv; see
//! tests/support/python-requirements.txt), and the reverse direction checks that the
//! package verifies sluice's own signatures.

use sluice_test_support::*;

/// Signs with `standardwebhooks.Webhook` and POSTs with http.client; prints the status,
/// the `idempotent-replayed` header and the body.
const PRODUCER: &str = r#"
import sys, http.client, datetime
from standardwebhooks.webhooks import Webhook
host, port, path, secret, msg_id, body = sys.argv[1:7]
skew = int(sys.argv[7]) if len(sys.argv) > 7 else 0
when = datetime.datetime.now(tz=datetime.timezone.utc) + datetime.timedelta(seconds=skew)
signature = Webhook(secret).sign(msg_id, when, body)
headers = {"content-type": "application/json", "webhook-id": msg_id,
           "webhook-timestamp": str(int(when.timestamp())), "webhook-signature": signature}
conn = http.client.HTTPConnection(host, int(port), timeout=10)
conn.request("POST", path, body=body.encode(), headers=headers)
answer = conn.getresponse()
print(answer.status)
print(answer.getheader("idempotent-replayed") or "-")
print(answer.read().decode())
"#;

/// Verifies a sluice-made signature with `standardwebhooks.Webhook.verify`.
const CONSUMER: &str = r#"
import sys
from standardwebhooks.webhooks import Webhook
secret, msg_id, timestamp, signature, body = sys.argv[1:6]
Webhook(secret).verify(body, {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signature})
print("verified")
"#;

fn run_python(script: &str, args: &[&str]) -> String {
    sluice_test_support::python::run(script, args)
}

/// `(status, idempotent-replayed header, body)` of one webhook sent by the package.
fn send(server: &Server, source: &str, secret: &[u8], msg_id: &str, body: &str, skew_secs: i64) -> (u16, String, String) {
    let addr = server.ingest;
    let out = run_python(
        PRODUCER,
        &[
            &addr.ip().to_string(),
            &addr.port().to_string(),
            &format!("/v1/webhooks/{source}"),
            &whsec(secret),
            msg_id,
            body,
            &skew_secs.to_string(),
        ],
    );
    let mut lines = out.lines();
    let status = lines.next().and_then(|l| l.parse().ok()).expect("status line");
    let replayed = lines.next().unwrap_or("-").to_owned();
    (status, replayed, lines.collect::<Vec<_>>().join("\n"))
}

#[test]
fn the_standard_webhooks_package_can_deliver() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let prefix = unique_prefix();
    let body = event(&format!("{prefix}-wh"), "u_wh");
    let msg_id = format!("msg_{prefix}");
    let (status, replayed, answer) = send(&server, "tests", &SECRET, &msg_id, &body, 0);
    assert_eq!(status, 202, "{answer}");
    assert_eq!(replayed, "-");
    // The same webhook-id again (a webhook retry): the original answer, nothing stored twice.
    let (status, replayed, again) = send(&server, "tests", &SECRET, &msg_id, &body, 0);
    assert_eq!((status, replayed.as_str(), again.as_str()), (202, "true", answer.as_str()));
    // The same webhook-id with another body is a conflict.
    let other = event(&format!("{prefix}-wh2"), "u_wh");
    assert_eq!(send(&server, "tests", &SECRET, &msg_id, &other, 0).0, 409);
    // The other partner's secret does not sign for `tests`; an unknown source is refused.
    assert_eq!(send(&server, "tests", &SECRET_OTHER, &format!("{msg_id}-x"), &other, 0).0, 401);
    assert_eq!(send(&server, "nobody", &SECRET, &format!("{msg_id}-y"), &other, 0).0, 401);
    // Outside the timestamp window: 401, whatever the signature.
    assert_eq!(send(&server, "tests", &SECRET, &format!("{msg_id}-z"), &other, -600).0, 401);
    let stored: Vec<String> = sandbox.tail().iter().map(TailLine::event_id).collect();
    assert_eq!(stored, [format!("{prefix}-wh")]);
}

#[test]
fn unsigned_webhooks_are_refused_and_the_endpoint_is_post_only() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let mut client = server.client();
    let body = event(&format!("{}-wh", unique_prefix()), "u_wh");
    let unsigned = client.request(&post("/v1/webhooks/tests", Some("application/json"), &[], body.as_bytes()));
    expect_error(&unsigned, 401, "signature_missing");
    let response = client.request(&get("/v1/webhooks/tests"));
    assert_eq!(response.status, 405, "{}", response.describe());
    assert!(sandbox.tail().is_empty());
}

#[test]
fn the_package_verifies_sluice_signatures() {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &SECRET);
    let (id, timestamp, body) = ("msg_2b7a", now_secs().to_string(), r#"{"event_id":"e_1"}"#);
    let signature = sluice::perimeter::webhooks::sign_webhook(&key, id.as_bytes(), timestamp.as_bytes(), body.as_bytes());
    assert_eq!(run_python(CONSUMER, &[&whsec(&SECRET), id, &timestamp, &signature, body]).trim(), "verified");
}
