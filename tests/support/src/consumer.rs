//! The consumer side of the tests (SPEC §6): a key ring with a consumer token, requests
//! carrying it, and a subscription stream read line by line over a raw connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::http::{Client, Response};
use crate::json::{Json, ParseJson};

/// The consumer token of partner `tests` (its SHA-256 is in [`consumer_ring`]).
pub const CONSUMER_TOKEN: &str = "sltk_test-consumer-token-of-partner-tests";
/// A token of partner `other`, which may read topic `wallet` only.
pub const OTHER_TOKEN: &str = "sltk_test-consumer-token-of-partner-other";

/// Hex SHA-256 (own implementation over the `sha2` of the support crate's deps).
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    crate::sign::hex(&sha2::Sha256::digest(text.as_bytes()))
}

/// `[[partners]]` and `[[tokens]]` for [`crate::Setup::extra_keys`]: partner `tests`
/// reads every topic, `other` only `wallet`.
pub fn consumer_ring() -> String {
    format!(
        "[[partners]]\nname = \"tests\"\nconsume_topics = [\"*\"]\n\n[[partners]]\nname = \"other\"\nconsume_topics = [\"wallet\"]\n\n\
         [[tokens]]\nname = \"tests-reader\"\npartner = \"tests\"\nsha256 = \"{}\"\n\n\
         [[tokens]]\nname = \"other-reader\"\npartner = \"other\"\nsha256 = \"{}\"\n\n",
        sha256_hex(CONSUMER_TOKEN),
        sha256_hex(OTHER_TOKEN)
    )
}

/// A GET with a bearer token.
pub fn get_as(path: &str, token: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: sluice.test\r\nAuthorization: Bearer {token}\r\n\r\n").into_bytes()
}

/// A request with a JSON body, a bearer token and extra headers.
pub fn json_as(method: &str, path: &str, token: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!(
        "{method} {path} HTTP/1.1\r\nHost: sluice.test\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

/// The NDJSON lines of a read answer.
pub fn lines(response: &Response) -> Vec<Json> {
    response
        .text()
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| Json::parse(line.as_bytes()).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

/// Creates subscription `name` for `topics` from `read_from`; panics unless 201/200.
pub fn subscribe(addr: SocketAddr, name: &str, topics: &[&str], read_from: &str) -> Response {
    let topics: Vec<String> = topics.iter().map(|topic| format!("{topic:?}")).collect();
    let body = format!("{{\"topics\":[{}],\"read_from\":\"{read_from}\"}}", topics.join(","));
    let response = Client::connect(addr).request(&json_as("PUT", &format!("/v1/subscriptions/{name}"), CONSUMER_TOKEN, &[], &body));
    assert!(matches!(response.status, 200 | 201), "PUT subscription: {}", response.describe());
    response
}

/// One open subscription stream.
pub struct Stream {
    pub client: Client,
    pub id: String,
    pending: Vec<u8>,
}

/// One line of a stream: its cursor (`None` for a keep-alive without one) and events.
#[derive(Debug, Clone)]
pub struct Batch {
    pub cursor: Option<Json>,
    pub events: Vec<Json>,
}

impl Batch {
    pub fn partition(&self) -> Option<(String, u64)> {
        let cursor = self.cursor.as_ref()?;
        Some((cursor.get("topic")?.as_str()?.to_owned(), cursor.get("partition")?.as_u64()?))
    }
}

impl Stream {
    /// `GET /v1/subscriptions/{name}/events?{query}`; panics unless 200.
    pub fn open(addr: SocketAddr, name: &str, query: &str) -> Stream {
        let mut client = Client::connect(addr);
        client.send(&get_as(&format!("/v1/subscriptions/{name}/events?{query}"), CONSUMER_TOKEN));
        let head = client.read_head_only();
        assert_eq!(head.status, 200, "stream open: {}", head.describe());
        let id = head.header("x-stream-id").expect("X-Stream-Id").to_owned();
        Stream { client, id, pending: Vec::new() }
    }

    /// The next line within `within`; `None` when nothing came or the stream ended.
    pub fn next_batch(&mut self, within: Duration) -> Option<Batch> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let json = Json::parse(&line).unwrap_or_else(|e| panic!("stream line not JSON ({e}): {}", String::from_utf8_lossy(&line)));
                let cursor = json.get("cursor").filter(|cursor| !cursor.is_null()).cloned();
                let events = json.get("events").and_then(Json::as_array).expect("events array").to_vec();
                return Some(Batch { cursor, events });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match self.client.read_chunk_within(left) {
                Ok(Some(chunk)) => self.pending.extend_from_slice(&chunk),
                Ok(None) => return None,
                Err(error) if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return None,
                Err(error) => panic!("reading the stream: {error}"),
            }
        }
    }

    /// Reads batches with events until `count` events came or `within` passed.
    pub fn events(&mut self, count: usize, within: Duration) -> Vec<Batch> {
        let deadline = Instant::now() + within;
        let mut batches = Vec::new();
        let mut seen = 0;
        while seen < count {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(batch) = self.next_batch(left) else { break };
            if batch.events.is_empty() {
                continue;
            }
            seen += batch.events.len();
            batches.push(batch);
        }
        batches
    }

    /// Commits `cursors` for this stream on a new connection; returns the answer.
    pub fn commit(&self, addr: SocketAddr, name: &str, cursors: &[&Json]) -> Response {
        let items: Vec<String> = cursors.iter().map(|cursor| cursor.to_string()).collect();
        let body = format!("{{\"items\":[{}]}}", items.join(","));
        Client::connect(addr).request(&json_as(
            "POST",
            &format!("/v1/subscriptions/{name}/cursors"),
            CONSUMER_TOKEN,
            &[("X-Stream-Id", &self.id)],
            &body,
        ))
    }
}
