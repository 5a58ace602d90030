//! `--request-templates FILE`: pre-built requests, one JSON object a line, as
//! tuning/iggy_bench.sh writes them for Apache Iggy's HTTP produce API, so the same
//! client measures a peer that speaks another API:
//!
//! ```text
//! {"method":"POST","path":"/streams/0/topics/0/messages","headers":[["Authorization","Bearer ..."]],"body":"{...}","events":100}
//! ```
//!
//! `method`, `path`, `headers` (`[name, value]` pairs, in order), `body` (the exact
//! text to send) and `events` (what a 2xx answer to it counts in events/s) are
//! required; other keys (the script's `key`, `partition`) are ignored. A template's
//! `Host` and `Content-Length` headers are dropped: the run writes the target's host and
//! the body's length (a `Content-Length` that disagrees with the body is an error).

#![forbid(unsafe_code)]

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::constants::{BENCH_TEMPLATES_FILE_BYTES_MAX, BENCH_TEMPLATES_MAX};

/// The keys every line must have, in the order the messages name them.
const REQUIRED_KEYS: &str = "method, path, headers, body, events";

/// One request of the file, checked: it can be written as HTTP/1.1 as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// An HTTP token (`POST`, `GET`, ...).
    pub method: String,
    /// Origin form: starts with `/`, visible ASCII only.
    pub path: String,
    /// In file order, without `Host` and `Content-Length`.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Events the request carries, at least 1.
    pub events: u32,
}

/// A `--request-templates` file, parsed.
#[derive(Debug, Clone)]
pub struct TemplateFile {
    pub path: PathBuf,
    /// In file order; at least one, at most `BENCH_TEMPLATES_MAX`.
    pub templates: Vec<Template>,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("--request-templates: cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("--request-templates: {} is larger than {max} bytes", path.display())]
    TooLarge { path: PathBuf, max: u64 },
    #[error("--request-templates: {} has more than {max} templates", path.display())]
    TooMany { path: PathBuf, max: usize },
    #[error("--request-templates: {} has no template (every line is blank)", path.display())]
    Empty { path: PathBuf },
    #[error("--request-templates: {} line {line}: {reason}", path.display())]
    Line { path: PathBuf, line: usize, reason: String },
}

impl TemplateFile {
    /// Reads and checks the whole file (at most `BENCH_TEMPLATES_FILE_BYTES_MAX` bytes).
    pub fn load(path: &Path) -> Result<TemplateFile, TemplateError> {
        let read_error = |source| TemplateError::Read { path: path.to_owned(), source };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let mut bytes = Vec::new();
        file.take(BENCH_TEMPLATES_FILE_BYTES_MAX + 1).read_to_end(&mut bytes).map_err(read_error)?;
        if bytes.len() as u64 > BENCH_TEMPLATES_FILE_BYTES_MAX {
            return Err(TemplateError::TooLarge { path: path.to_owned(), max: BENCH_TEMPLATES_FILE_BYTES_MAX });
        }
        TemplateFile::parse(path, &bytes)
    }

    /// Parses `bytes`, one template per non-blank line; `path` names the file in errors,
    /// which give the first bad line's number (from 1).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<TemplateFile, TemplateError> {
        let mut templates = Vec::new();
        for (at, line) in bytes.split(|&byte| byte == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if templates.len() == BENCH_TEMPLATES_MAX {
                return Err(TemplateError::TooMany { path: path.to_owned(), max: BENCH_TEMPLATES_MAX });
            }
            let template = std::str::from_utf8(line)
                .map_err(|_| "not UTF-8".to_owned())
                .and_then(parse_line)
                .map_err(|reason| TemplateError::Line { path: path.to_owned(), line: at + 1, reason })?;
            templates.push(template);
        }
        if templates.is_empty() {
            return Err(TemplateError::Empty { path: path.to_owned() });
        }
        Ok(TemplateFile { path: path.to_owned(), templates })
    }

    /// The fewest and the most events of one template.
    pub fn events_range(&self) -> (u32, u32) {
        let events = self.templates.iter().map(|template| template.events);
        (events.clone().min().unwrap_or(0), events.max().unwrap_or(0))
    }
}

impl Template {
    /// Appends the request as sent to `host` (the target's authority):
    /// `METHOD PATH HTTP/1.1`, `Host`, the template's headers, `Content-Length`, the body.
    pub fn write_request(&self, host: &str, out: &mut Vec<u8>) {
        for piece in [self.method.as_str(), " ", self.path.as_str(), " HTTP/1.1\r\nHost: ", host, "\r\n"] {
            out.extend_from_slice(piece.as_bytes());
        }
        for (name, value) in &self.headers {
            for piece in [name.as_str(), ": ", value.as_str(), "\r\n"] {
                out.extend_from_slice(piece.as_bytes());
            }
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes());
        out.extend_from_slice(self.body.as_bytes());
    }
}

fn parse_line(line: &str) -> Result<Template, String> {
    let value: Value = serde_json::from_str(line).map_err(|error| {
        // Each line is parsed alone: serde's "at line 1 column C" would mislead.
        let text = error.to_string();
        let reason = text.rsplit_once(" at line ").map_or(text.as_str(), |(reason, _)| reason);
        format!("not valid JSON (column {}: {reason})", error.column())
    })?;
    let Value::Object(object) = value else {
        return Err(format!("not a JSON object with the keys {REQUIRED_KEYS}"));
    };
    let field = |key: &str| object.get(key).ok_or_else(|| format!("no \"{key}\" key (each line needs {REQUIRED_KEYS})"));
    let text = |key: &str| field(key)?.as_str().ok_or_else(|| format!("\"{key}\" must be a string"));
    let method = text("method")?;
    if !is_token(method) {
        return Err(format!("\"method\" {method:?} is not an HTTP method"));
    }
    let path = text("path")?;
    if !path.starts_with('/') || !path.bytes().all(|byte| byte.is_ascii_graphic() && byte != b'#') {
        return Err(format!("\"path\" {path:?} must start with / and hold visible ASCII only, no fragment"));
    }
    let body = text("body")?;
    let events = field("events")?
        .as_u64()
        .and_then(|events| u32::try_from(events).ok())
        .filter(|&events| events >= 1)
        .ok_or_else(|| format!("\"events\" must be a whole number from 1 to {}", u32::MAX))?;
    let headers = headers(field("headers")?, body.len())?;
    Ok(Template { method: method.to_owned(), path: path.to_owned(), headers, body: body.to_owned(), events })
}

/// `[[name, value], ...]`, checked, without `Host` and a `Content-Length` that matches
/// the body.
fn headers(value: &Value, body_bytes: usize) -> Result<Vec<(String, String)>, String> {
    let malformed = || "\"headers\" must be a list of [name, value] pairs of strings".to_owned();
    let mut headers = Vec::new();
    for pair in value.as_array().ok_or_else(malformed)? {
        let (name, value) = match pair.as_array().map(Vec::as_slice) {
            Some([Value::String(name), Value::String(value)]) => (name.as_str(), value.as_str()),
            _ => return Err(malformed()),
        };
        if !is_token(name) {
            return Err(format!("header name {name:?} is not an HTTP token"));
        }
        if !value.bytes().all(|byte| byte == b'\t' || (byte >= b' ' && byte != 0x7f)) {
            return Err(format!("header {name}: its value holds a control character (CR, LF, ...)"));
        }
        if name.eq_ignore_ascii_case("host") {
            continue;
        }
        if name.eq_ignore_ascii_case("content-length") {
            if value.trim().parse::<usize>().ok() != Some(body_bytes) {
                return Err(format!("Content-Length {value} but the body has {body_bytes} bytes"));
            }
            continue;
        }
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("Transfer-Encoding: bodies are sent whole, with Content-Length".into());
        }
        headers.push((name.to_owned(), value.to_owned()));
    }
    Ok(headers)
}

/// An RFC 9110 token: a method or a header name.
fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte))
}

#[cfg(test)]
mod tests {
    use super::*;

    const IGGY_LINE: &str = r#"{"method": "POST", "path": "/streams/0/topics/0/messages", "headers": [["Host", "127.0.0.1:18083"], ["Authorization", "Bearer eyJ0"], ["Content-Type", "application/json"], ["Content-Length", "17"]], "body": "{\"messages\":[1]}\n", "events": 100, "key": "u_7", "partition": 3}"#;

    fn parse(text: &str) -> Result<TemplateFile, String> {
        TemplateFile::parse(Path::new("t.jsonl"), text.as_bytes()).map_err(|error| error.to_string())
    }

    #[test]
    fn a_line_as_iggy_bench_writes_it() {
        let file = parse(&format!("{IGGY_LINE}\n\n{IGGY_LINE}\r\n")).expect("valid");
        assert_eq!(file.templates.len(), 2, "blank lines are skipped, CRLF is accepted");
        let template = &file.templates[0];
        assert_eq!((template.method.as_str(), template.path.as_str()), ("POST", "/streams/0/topics/0/messages"));
        let names: Vec<&str> = template.headers.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["Authorization", "Content-Type"], "Host and Content-Length are the run's");
        assert_eq!((template.body.as_str(), template.events), ("{\"messages\":[1]}\n", 100));
        assert_eq!(file.events_range(), (100, 100));
    }

    #[test]
    fn the_built_request_is_exact() {
        let file = parse(IGGY_LINE).expect("valid");
        let mut out = b"before".to_vec();
        file.templates[0].write_request("10.0.0.1:18083", &mut out);
        let expected = "beforePOST /streams/0/topics/0/messages HTTP/1.1\r\nHost: 10.0.0.1:18083\r\n\
                        Authorization: Bearer eyJ0\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n\
                        {\"messages\":[1]}\n";
        assert_eq!(String::from_utf8(out).expect("utf-8"), expected);
        let get = parse(r#"{"method":"GET","path":"/ping","headers":[],"body":"","events":1}"#).expect("valid");
        let mut out = Vec::new();
        get.templates[0].write_request("h", &mut out);
        assert_eq!(out, b"GET /ping HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
    }

    #[test]
    fn bad_lines_are_named_by_number() {
        let good = r#"{"method":"POST","path":"/p","headers":[],"body":"b","events":1}"#;
        for (bad, needle) in [
            (r#"{"method":"POST","path":"/p","headers":[],"body":"b"}"#, "no \"events\" key"),
            (r#"{"path":"/p","headers":[],"body":"b","events":1}"#, "no \"method\" key"),
            (r#"{"method":"POST","path":"/p","body":"b","events":1}"#, "no \"headers\" key"),
            (r#"{"method":"POST","path":"/p","headers":[],"body":"b","events":1"#, "not valid JSON (column"),
            ("[1, 2]", "not a JSON object"),
            (r#"{"method":"PO ST","path":"/p","headers":[],"body":"b","events":1}"#, "not an HTTP method"),
            (r#"{"method":"POST","path":"p","headers":[],"body":"b","events":1}"#, "must start with /"),
            (r#"{"method":"POST","path":"/a b","headers":[],"body":"b","events":1}"#, "visible ASCII"),
            (r#"{"method":"POST","path":"/p","headers":[],"body":7,"events":1}"#, "\"body\" must be a string"),
            (r#"{"method":"POST","path":"/p","headers":[],"body":"b","events":0}"#, "\"events\" must be a whole number"),
            (r#"{"method":"POST","path":"/p","headers":[],"body":"b","events":1.5}"#, "\"events\" must be a whole number"),
            (r#"{"method":"POST","path":"/p","headers":{"A":"b"},"body":"b","events":1}"#, "[name, value] pairs"),
            (r#"{"method":"POST","path":"/p","headers":[["A"]],"body":"b","events":1}"#, "[name, value] pairs"),
            (r#"{"method":"POST","path":"/p","headers":[["A:", "b"]],"body":"b","events":1}"#, "not an HTTP token"),
            (r#"{"method":"POST","path":"/p","headers":[["A", "b\r\nX: y"]],"body":"b","events":1}"#, "control character"),
            (r#"{"method":"POST","path":"/p","headers":[["Content-Length", "2"]],"body":"b","events":1}"#, "body has 1 bytes"),
            (r#"{"method":"POST","path":"/p","headers":[["Transfer-Encoding", "chunked"]],"body":"b","events":1}"#, "Transfer-Encoding"),
        ] {
            let error = parse(&format!("{good}\n\n{bad}\n{good}\n")).expect_err(bad);
            assert!(error.contains("t.jsonl line 3: ") && error.contains(needle), "{bad}: {error}");
        }
        assert!(parse("\n \n").expect_err("empty").contains("no template"));
        let error = TemplateFile::parse(Path::new("t.jsonl"), b"\xff\n").expect_err("not UTF-8").to_string();
        assert!(error.contains("line 1: not UTF-8"), "{error}");
    }

    #[test]
    fn a_missing_file_and_too_many_templates_are_refused() {
        let error = TemplateFile::load(Path::new("/nonexistent/t.jsonl")).expect_err("missing").to_string();
        assert!(error.contains("cannot read /nonexistent/t.jsonl"), "{error}");
        let line = "{\"method\":\"GET\",\"path\":\"/\",\"headers\":[],\"body\":\"\",\"events\":1}\n";
        let error = parse(&line.repeat(BENCH_TEMPLATES_MAX + 1)).expect_err("too many");
        assert!(error.contains("more than 65536 templates"), "{error}");
        assert_eq!(parse(&line.repeat(3)).expect("valid").templates.len(), 3);
    }
}
