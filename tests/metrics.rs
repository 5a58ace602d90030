//! `GET /metrics` on the admin listener counts exactly what the ingest listener answered:
//! requests by path and status, events by outcome and rejection reason, and one latency
//! observation per answered request, after a known mix of requests.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sluice_test_support::*;

/// How long to wait for counters bumped on send completion (bytes out) to show.
const SCRAPE_SETTLE_MS: u64 = 3000;

struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of one scrape. Label values here never hold escapes, quotes or commas.
struct Scrape {
    samples: Vec<Sample>,
}

impl Scrape {
    fn take(server: &Server) -> Scrape {
        let response = server.admin_client().request(&get("/metrics"));
        assert_eq!(response.status, 200, "{}", response.describe());
        assert_eq!(response.header("content-type"), Some("text/plain; version=0.0.4"));
        let text = response.text();
        let mut samples = Vec::new();
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample {line:?}"));
            let value = if value == "+Inf" { f64::INFINITY } else { value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")) };
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("bad labels in {line:?}"));
                    let pairs = labels.split(',').map(|pair| {
                        let (key, value) = pair.split_once('=').unwrap_or_else(|| panic!("bad label {pair:?}"));
                        (key.to_owned(), value.trim_matches('"').to_owned())
                    });
                    (name, pairs.collect())
                }
                None => (series, BTreeMap::new()),
            };
            samples.push(Sample { name: name.to_owned(), labels, value });
        }
        Scrape { samples }
    }

    /// Sum over every sample of `name` whose labels include all of `filter` (e.g. over shards).
    fn sum(&self, name: &str, filter: &[(&str, &str)]) -> u64 {
        let matching =
            self.samples.iter().filter(|s| s.name == name && filter.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)));
        matching.map(|s| s.value as u64).sum()
    }

    /// Non-zero values of `name` summed over shards, keyed by the values of `keys`.
    fn nonzero_by(&self, name: &str, keys: &[&str]) -> BTreeMap<Vec<String>, u64> {
        let mut totals = BTreeMap::new();
        for sample in self.samples.iter().filter(|s| s.name == name) {
            let key = keys.iter().map(|k| sample.labels[*k].clone()).collect();
            *totals.entry(key).or_insert(0) += sample.value as u64;
        }
        totals.retain(|_, total| *total > 0);
        totals
    }

    /// Every shard's histogram is cumulative and its `_count` equals its `+Inf` bucket;
    /// returns the total count.
    fn latency_count(&self) -> u64 {
        let name = "sluice_http_request_duration_seconds";
        let mut total = 0;
        for count in self.samples.iter().filter(|s| s.name == format!("{name}_count")) {
            let shard = &count.labels["shard"];
            let buckets: Vec<f64> = self
                .samples
                .iter()
                .filter(|s| s.name == format!("{name}_bucket") && &s.labels["shard"] == shard)
                .map(|s| s.value)
                .collect();
            assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "shard {shard}: buckets not cumulative: {buckets:?}");
            assert_eq!(buckets.last().copied(), Some(count.value), "shard {shard}: _count is not the +Inf bucket");
            total += count.value as u64;
        }
        total
    }
}

fn key(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|part| part.to_string()).collect()
}

/// A signed-looking event whose headers are wrong in the way `headers` says.
fn event_with_headers(body: &str, headers: Vec<(String, String)>) -> Vec<u8> {
    post("/v1/events", Some("application/json"), &headers, body.as_bytes())
}

#[test]
#[expect(clippy::too_many_lines, reason = "one scrape checked against one known mix reads best whole")]
fn scrape_counts_a_known_mix_exactly() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let before = Scrape::take(&server);
    assert_eq!(before.latency_count(), 0);
    assert!(before.nonzero_by("sluice_http_requests_total", &["path", "status"]).is_empty());

    let prefix = unique_prefix();
    let id = |n: u32| format!("{prefix}-{n}");
    let mut client = server.client();
    expect_accepted(&client.request(&signed_event(event(&id(1), "u1").as_bytes())));
    expect_accepted(&client.request(&signed_event(event(&id(2), "u2").as_bytes())));
    expect_duplicate(&client.request(&signed_event(event(&id(1), "u1").as_bytes())));

    let body = event(&id(9), "u9");
    let mut forged = auth_headers(body.as_bytes());
    forged[2].1 = format!("v1={}", "0".repeat(64));
    expect_error(&client.request(&event_with_headers(&body, forged)), 401, "signature_invalid");
    let stale = (now_secs() - 3600).to_string();
    let stale_headers = vec![
        ("X-Key-Id".into(), KID.into()),
        ("X-Timestamp".into(), stale.clone()),
        ("X-Signature".into(), sign_v1(&SECRET, &stale, body.as_bytes())),
    ];
    expect_error(&client.request(&event_with_headers(&body, stale_headers)), 401, "timestamp_out_of_window");
    let as_text = post("/v1/events", Some("text/plain"), &auth_headers(body.as_bytes()), body.as_bytes());
    expect_error(&client.request(&as_text), 415, "unsupported_media_type");
    expect_error(&client.request(&signed_event(br#"{"event_type":"bet"}"#)), 400, "field_missing");

    let batch = client.request(&signed_batch(&[event(&id(3), "u3"), event(&id(1), "u1"), "not json".to_owned()]));
    assert_eq!(batch.status, 200, "{}", batch.describe());
    let results = batch.json();
    let results = results.get("results").and_then(Json::as_array).expect("batch results");
    assert_eq!(results[2].get("error").and_then(|e| e.get("code")).and_then(Json::as_str), Some("json_invalid"), "{}", batch.describe());

    expect_error(&client.request(&get("/nope")), 404, "not_found");
    expect_error(&client.request(&get("/v1/events")), 405, "method_not_allowed");
    assert_eq!(client.request(&get("/healthz")).status, 200);
    assert_eq!(client.request(&get("/readyz")).status, 200);
    let mut framing = server.client();
    let smuggle = b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    expect_error(&framing.request(smuggle), 400, "content_length_with_transfer_encoding");

    let scrape = Scrape::take(&server);
    let expected_requests: BTreeMap<Vec<String>, u64> = [
        (key(&["/v1/events", "202"]), 2),
        (key(&["/v1/events", "200"]), 1),
        (key(&["/v1/events", "401"]), 2),
        (key(&["/v1/events", "415"]), 1),
        (key(&["/v1/events", "400"]), 1),
        (key(&["/v1/events", "405"]), 1),
        (key(&["/v1/events/batch", "200"]), 1),
        (key(&["/healthz", "200"]), 1),
        (key(&["/readyz", "200"]), 1),
        (key(&["other", "404"]), 1),
        (key(&["other", "400"]), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(scrape.nonzero_by("sluice_http_requests_total", &["path", "status"]), expected_requests);
    let answered: u64 = expected_requests.values().sum();
    assert_eq!(scrape.latency_count(), answered, "one latency observation per answered request");
    assert_eq!(scrape.sum("sluice_requests_total", &[]), answered);
    assert_eq!(scrape.sum("sluice_responses_2xx_total", &[]), 6);
    assert_eq!(scrape.sum("sluice_responses_4xx_total", &[]), 7);
    assert_eq!(scrape.sum("sluice_responses_5xx_total", &[]), 0);

    assert_eq!(scrape.sum("sluice_events_accepted_total", &[]), 3);
    assert_eq!(scrape.sum("sluice_events_duplicate_total", &[]), 2);
    let expected_rejected: BTreeMap<Vec<String>, u64> = [
        (key(&["signature_invalid"]), 1),
        (key(&["timestamp_out_of_window"]), 1),
        (key(&["unsupported_media_type"]), 1),
        (key(&["field_missing"]), 1),
        (key(&["json_invalid"]), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(scrape.nonzero_by("sluice_events_rejected_total", &["reason"]), expected_rejected);
    assert_eq!(scrape.sum("sluice_partition_end_offset", &[]), 3);
    assert_eq!(scrape.sum("sluice_ready", &[]), 1);
    assert!(scrape.sum("sluice_bytes_in_total", &[]) > 0);
    assert!(scrape.sum("sluice_shard_loops_total", &[]) > 0);

    // Bytes out count when the kernel reports the send done, which may trail the answer.
    let deadline = Instant::now() + Duration::from_millis(SCRAPE_SETTLE_MS);
    while Scrape::take(&server).sum("sluice_bytes_out_total", &[]) == 0 {
        assert!(Instant::now() < deadline, "sluice_bytes_out_total stayed 0");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn answers_released_by_group_commit_are_counted_and_timed() {
    let sandbox = Sandbox::new(Setup { durability: "fsync", ..Setup::default() });
    let server = sandbox.start();
    let prefix = unique_prefix();
    let mut client = server.client();
    for n in 0..4 {
        expect_accepted(&client.request(&signed_event(event(&format!("{prefix}-{n}"), &format!("u{n}")).as_bytes())));
    }
    expect_duplicate(&client.request(&signed_event(event(&format!("{prefix}-0"), "u0").as_bytes())));
    let scrape = Scrape::take(&server);
    let expected: BTreeMap<Vec<String>, u64> = [(key(&["/v1/events", "202"]), 4), (key(&["/v1/events", "200"]), 1)].into_iter().collect();
    assert_eq!(scrape.nonzero_by("sluice_http_requests_total", &["path", "status"]), expected);
    assert_eq!(scrape.latency_count(), 5, "every answer released by an fdatasync is observed once");
    assert_eq!(scrape.sum("sluice_events_accepted_total", &[]), 4);
    assert_eq!(scrape.sum("sluice_events_duplicate_total", &[]), 1);
}
