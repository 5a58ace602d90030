//! `sluice consume`: a small network consumer for operators and scripts (SPEC §6).
//!
//! - `--subscription S` streams the subscription, prints each event as one NDJSON line
//!   and commits each batch's cursor after its events are printed and flushed (so a
//!   crash of the consumer redelivers, never skips). `--topics a,b` creates it first.
//! - `--topic T --partition P [--from ...]` reads one partition; it stops at the end
//!   unless `--follow` (then it long-polls).
//!
//! Plain HTTP/1.1 over one keep-alive connection (TLS: put it behind a local tunnel).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;

/// Commits of a subscription stream: at most this often while events keep coming
/// (caught up), and at least this often.
const COMMIT_EVERY_MIN: std::time::Duration = std::time::Duration::from_millis(100);
const COMMIT_EVERY_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// What to consume.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    /// `host:port` of the ingest (or consumer) listener.
    pub address: String,
    pub token: String,
    pub target: Target,
    /// Stop after this many events (0: never).
    pub max_events: u64,
}

#[derive(Debug, Clone)]
pub enum Target {
    Subscription { name: String, create_topics: Option<Vec<String>>, read_from: String, batch_limit: u32 },
    Partition { topic: String, partition: u32, from: String, follow: bool },
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot talk to {address}: {source}")]
    Connection { address: String, source: io::Error },
    #[error("{what} answered {status}: {body}")]
    Refused { what: String, status: u16, body: String },
    #[error("cannot write output: {0}")]
    Output(io::Error),
    #[error("the server sent something that is not HTTP/1.1 as expected: {0}")]
    Protocol(String),
}

/// `http://host:port` (a path or `https` is refused) into `host:port`.
pub fn address_of(url: &str) -> Result<String, ConsumeError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ConsumeError::Usage(format!("--url must be http://host:port, not {url:?} (TLS: use a local tunnel)")))?;
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') {
        return Err(ConsumeError::Usage(format!("--url must be http://host:port without a path, not {url:?}")));
    }
    Ok(rest.to_owned())
}

struct Client {
    address: String,
    token: String,
    reader: BufReader<TcpStream>,
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    chunked: bool,
    length: Option<usize>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(known, _)| known.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

impl Client {
    fn connect(address: &str, token: &str) -> Result<Client, ConsumeError> {
        let connection = |source| ConsumeError::Connection { address: address.to_owned(), source };
        let stream = TcpStream::connect(address).map_err(connection)?;
        stream.set_nodelay(true).map_err(connection)?;
        Ok(Client { address: address.to_owned(), token: token.to_owned(), reader: BufReader::new(stream) })
    }

    fn io(&self) -> impl Fn(io::Error) -> ConsumeError + '_ {
        |source| ConsumeError::Connection { address: self.address.clone(), source }
    }

    fn send(&mut self, method: &str, path: &str, body: Option<(&str, &[u8])>, extra: &[(&str, &str)]) -> Result<Response, ConsumeError> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n", self.address, self.token);
        for (name, value) in extra {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some((content_type, bytes)) = body {
            head.push_str(&format!("Content-Type: {content_type}\r\nContent-Length: {}\r\n", bytes.len()));
        }
        head.push_str("\r\n");
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes()).map_err(|source| ConsumeError::Connection { address: self.address.clone(), source })?;
        if let Some((_, bytes)) = body {
            stream.write_all(bytes).map_err(|source| ConsumeError::Connection { address: self.address.clone(), source })?;
        }
        self.read_head()
    }

    fn read_head(&mut self) -> Result<Response, ConsumeError> {
        let mut line = String::new();
        self.reader.read_line(&mut line).map_err(self.io())?;
        let status = line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| ConsumeError::Protocol(format!("status line {:?}", line.trim_end())))?;
        let mut response = Response { status, headers: Vec::new(), chunked: false, length: None };
        loop {
            line.clear();
            if self.reader.read_line(&mut line).map_err(self.io())? == 0 {
                return Err(ConsumeError::Protocol("the connection closed inside a response head".to_owned()));
            }
            let text = line.trim_end();
            if text.is_empty() {
                break;
            }
            let Some((name, value)) = text.split_once(':') else {
                return Err(ConsumeError::Protocol(format!("header line {text:?}")));
            };
            let value = value.trim().to_owned();
            if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
                response.chunked = true;
            }
            if name.eq_ignore_ascii_case("content-length") {
                response.length = value.parse().ok();
            }
            response.headers.push((name.to_owned(), value));
        }
        Ok(response)
    }

    fn body(&mut self, response: &Response) -> Result<Vec<u8>, ConsumeError> {
        let mut body = vec![0; response.length.unwrap_or(0)];
        self.reader.read_exact(&mut body).map_err(self.io())?;
        Ok(body)
    }

    /// The next chunk of a chunked body (`None`: the last chunk).
    fn chunk(&mut self) -> Result<Option<Vec<u8>>, ConsumeError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).map_err(self.io())? == 0 {
            return Ok(None);
        }
        let size = usize::from_str_radix(line.trim_end().split(';').next().unwrap_or(""), 16)
            .map_err(|_| ConsumeError::Protocol(format!("chunk size {:?}", line.trim_end())))?;
        if size == 0 {
            return Ok(None);
        }
        let mut chunk = vec![0; size + 2];
        self.reader.read_exact(&mut chunk).map_err(self.io())?;
        chunk.truncate(size);
        Ok(Some(chunk))
    }
}

fn refused(what: &str, status: u16, body: &[u8]) -> ConsumeError {
    ConsumeError::Refused { what: what.to_owned(), status, body: String::from_utf8_lossy(body).into_owned() }
}

/// Prints one stream line's events as stored (byte for byte, not re-serialised) and
/// keeps its cursor as the newest of its partition; returns the events printed.
fn print_batch(line: &[u8], out: &mut impl Write, cursors: &mut Vec<(String, String)>) -> Result<u64, ConsumeError> {
    #[derive(serde::Deserialize)]
    struct Line<'a> {
        #[serde(borrow)]
        cursor: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow)]
        events: Vec<&'a serde_json::value::RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct Place<'a> {
        topic: &'a str,
        partition: u32,
    }
    let batch: Line<'_> =
        serde_json::from_slice(line).map_err(|error| ConsumeError::Protocol(format!("a stream line is not JSON: {error}")))?;
    for event in &batch.events {
        writeln!(out, "{}", event.get()).map_err(ConsumeError::Output)?;
    }
    out.flush().map_err(ConsumeError::Output)?;
    if let Some(cursor) = batch.cursor.filter(|_| !batch.events.is_empty()) {
        let place: Place<'_> = serde_json::from_str(cursor.get()).map_err(|error| ConsumeError::Protocol(format!("a cursor: {error}")))?;
        let key = format!("{}/{}", place.topic, place.partition);
        cursors.retain(|(known, _)| *known != key);
        cursors.push((key, cursor.get().to_owned()));
    }
    Ok(batch.events.len() as u64)
}

/// Runs the consumer until `max_events`, the end of the partition (without `follow`),
/// or the stream's end.
pub fn run(options: &ConsumeOptions, out: &mut impl Write) -> Result<(), ConsumeError> {
    let mut client = Client::connect(&options.address, &options.token)?;
    match &options.target {
        Target::Partition { topic, partition, from, follow } => {
            read_partition(&mut client, topic, *partition, from, *follow, options.max_events, out)
        }
        Target::Subscription { name, create_topics, read_from, batch_limit } => {
            if let Some(topics) = create_topics {
                let body = serde_json::json!({ "topics": topics, "read_from": read_from }).to_string();
                let response =
                    client.send("PUT", &format!("/v1/subscriptions/{name}"), Some(("application/json", body.as_bytes())), &[])?;
                let answer = client.body(&response)?;
                if !matches!(response.status, 200 | 201) {
                    return Err(refused("creating the subscription", response.status, &answer));
                }
            }
            stream_subscription(client, &options.address, &options.token, name, *batch_limit, options.max_events, out)
        }
    }
}

fn read_partition(
    client: &mut Client,
    topic: &str,
    partition: u32,
    from: &str,
    follow: bool,
    max_events: u64,
    out: &mut impl Write,
) -> Result<(), ConsumeError> {
    let mut from = from.to_owned();
    let mut printed = 0u64;
    loop {
        let wait = if follow { 10_000 } else { 0 };
        let path = format!("/v1/topics/{topic}/partitions/{partition}/events?from={from}&wait_ms={wait}");
        let response = client.send("GET", &path, None, &[])?;
        let body = client.body(&response)?;
        if response.status != 200 {
            return Err(refused("the partition read", response.status, &body));
        }
        let next = response.header("x-next-offset").unwrap_or("").to_owned();
        if max_events == 0 {
            // The answer is NDJSON already: out as it came.
            out.write_all(&body).map_err(ConsumeError::Output)?;
        } else {
            for line in body.split(|b| *b == b'\n').filter(|line| !line.is_empty()) {
                out.write_all(line).and_then(|()| out.write_all(b"\n")).map_err(ConsumeError::Output)?;
                printed += 1;
                if printed >= max_events {
                    return out.flush().map_err(ConsumeError::Output);
                }
            }
        }
        out.flush().map_err(ConsumeError::Output)?;
        if body.is_empty() && !follow {
            return Ok(());
        }
        if next.is_empty() {
            return Err(ConsumeError::Protocol("a read answer without X-Next-Offset".to_owned()));
        }
        from = next;
    }
}

fn stream_subscription(
    mut stream: Client,
    address: &str,
    token: &str,
    name: &str,
    batch_limit: u32,
    max_events: u64,
    out: &mut impl Write,
) -> Result<(), ConsumeError> {
    // Room for ten batches in flight, and a keep-alive every second: the commits below
    // can wait for a pause without stalling the stream.
    let max_uncommitted = (u64::from(batch_limit) * 10).clamp(1000, 100_000);
    let query = format!("batch_limit={batch_limit}&max_uncommitted={max_uncommitted}&batch_flush_timeout_ms=1000");
    let response = stream.send("GET", &format!("/v1/subscriptions/{name}/events?{query}"), None, &[])?;
    if response.status != 200 {
        let body = stream.body(&response)?;
        return Err(refused("opening the stream", response.status, &body));
    }
    let stream_id = response.header("x-stream-id").unwrap_or("").to_owned();
    // Commits go on a second connection: the first one is the stream.
    let mut committer = Client::connect(address, token)?;
    let mut printed = 0u64;
    let mut pending = Vec::new();
    // The newest cursor per partition not committed yet: committed (after the events
    // before it are printed and flushed) whenever nothing more is buffered, at least
    // once a second, and before leaving. One commit covers many lines under load.
    let mut cursors: Vec<(String, String)> = Vec::new();
    let mut last_commit = std::time::Instant::now();
    let mut uncommitted = 0u64;
    let commit = |committer: &mut Client, cursors: &mut Vec<(String, String)>| -> Result<(), ConsumeError> {
        if cursors.is_empty() {
            return Ok(());
        }
        let items: Vec<&str> = cursors.iter().map(|(_, cursor)| cursor.as_str()).collect();
        let body = format!("{{\"items\":[{}]}}", items.join(","));
        let response = committer.send(
            "POST",
            &format!("/v1/subscriptions/{name}/cursors"),
            Some(("application/json", body.as_bytes())),
            &[("X-Stream-Id", &stream_id)],
        )?;
        let answer = committer.body(&response)?;
        if response.status != 204 {
            return Err(refused("the commit", response.status, &answer));
        }
        cursors.clear();
        Ok(())
    };
    while let Some(chunk) = stream.chunk()? {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let events = print_batch(&line, out, &mut cursors)?;
            printed += events;
            uncommitted += events;
            if max_events > 0 && printed >= max_events {
                return commit(&mut committer, &mut cursors);
            }
        }
        // Commit when caught up (nothing more buffered), at most every 100 ms unless
        // half the stream's room is used, and at least once a second: one commit covers
        // many lines under load, and the stream never waits for one.
        let since = last_commit.elapsed();
        let caught_up = stream.reader.buffer().is_empty();
        if (caught_up && (since >= COMMIT_EVERY_MIN || uncommitted >= max_uncommitted / 2)) || since >= COMMIT_EVERY_MAX {
            commit(&mut committer, &mut cursors)?;
            last_commit = std::time::Instant::now();
            uncommitted = 0;
        }
    }
    commit(&mut committer, &mut cursors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(address_of("http://127.0.0.1:8080").unwrap(), "127.0.0.1:8080");
        assert_eq!(address_of("http://127.0.0.1:8080/").unwrap(), "127.0.0.1:8080");
        assert!(address_of("https://x:1").is_err());
        assert!(address_of("http://x:1/v1").is_err());
    }
}
