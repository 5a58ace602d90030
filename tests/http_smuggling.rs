//! Request smuggling and framing probes over real sockets: every request a proxy in
//! front could frame differently from sluice is answered 400 (413 when the body is too
//! large), the connection is closed after the answer, and nothing is stored, including
//! a complete signed event hidden where a second request could start.
//! The framer's unit tests (src/http/) cover each rule byte by byte; these prove the
//! server answers and closes as promised (docs/DECISIONS.md § HTTP).

use std::time::Duration;

use sluice_test_support::*;

/// How long the server may take to close after its answer.
const CLOSE_WITHIN_MS: u64 = 3_000;

/// Sends `wire` on a fresh connection and asserts the answer is `status` with `code`,
/// announced as the last one, and that the server then closes the connection.
fn assert_refused(server: &Server, wire: &[u8], status: u16, code: &str) {
    let mut client = server.client();
    // The server may answer and stop reading before the whole probe is sent.
    let _ = client.try_send(wire);
    let response = client.read_response();
    expect_error(&response, status, code);
    assert!(response.closes(), "{code}: answer does not announce the close");
    assert!(
        client.is_closed_by_peer(Duration::from_millis(CLOSE_WITHIN_MS)),
        "{code}: connection left open after {:?}",
        String::from_utf8_lossy(wire)
    );
}

/// A complete signed event request: what a smuggler hides in the body of another.
fn smuggled_event(prefix: &str, name: &str) -> Vec<u8> {
    signed_event(event(&format!("{prefix}-smuggled-{name}"), "victim").as_bytes())
}

/// Proves the server still stores a good event and that it is the only one stored.
fn assert_only_control_event_stored(server: &Server, sandbox: &Sandbox, prefix: &str) {
    let control = event(&format!("{prefix}-control"), "u");
    expect_accepted(&server.client().request(&signed_event(control.as_bytes())));
    let stored: Vec<String> = sandbox.tail().iter().map(TailLine::event_id).collect();
    assert_eq!(stored, vec![format!("{prefix}-control")], "something besides the control event was stored");
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn content_length_that_is_not_one_plain_number_is_refused() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let prefix = unique_prefix();
    let smuggled = smuggled_event(&prefix, "cl");
    for (name, header) in [
        ("duplicate", "Content-Length: 0\r\nContent-Length: 0"),
        ("conflicting", "Content-Length: 0\r\nContent-Length: 5"),
        ("list", "Content-Length: 0, 0"),
        ("plus", "Content-Length: +0"),
        ("minus", "Content-Length: -1"),
        ("space_inside", "Content-Length: 1 0"),
        ("hex", "Content-Length: 0x0"),
        ("overflow", "Content-Length: 18446744073709551616"),
        ("empty", "Content-Length: "),
    ] {
        let head = format!("POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{header}\r\n\r\n");
        let wire = concat(&[head.as_bytes(), &smuggled]);
        eprintln!("case {name}");
        assert_refused(&server, &wire, 400, "content_length_invalid");
    }
    assert_refused(&server, b"POST /v1/events HTTP/1.1\r\nContent-Length: 65537\r\n\r\n", 413, "body_too_large");
    assert_only_control_event_stored(&server, &sandbox, &prefix);
}

#[test]
fn transfer_encoding_other_than_one_chunked_is_refused() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let prefix = unique_prefix();
    let smuggled = smuggled_event(&prefix, "te");
    for (name, header, code) in [
        ("chunked_identity", "Transfer-Encoding: chunked, identity", "transfer_encoding_unsupported"),
        ("gzip_chunked", "Transfer-Encoding: gzip, chunked", "transfer_encoding_unsupported"),
        ("identity", "Transfer-Encoding: identity", "transfer_encoding_unsupported"),
        ("xchunked", "Transfer-Encoding: xchunked", "transfer_encoding_unsupported"),
        ("twice", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked", "transfer_encoding_unsupported"),
        ("chunked_then_other", "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity", "transfer_encoding_unsupported"),
        ("space_before_colon", "Transfer-Encoding : chunked", "http_malformed"),
        ("with_content_length", "Transfer-Encoding: chunked\r\nContent-Length: 5", "content_length_with_transfer_encoding"),
    ] {
        let head = format!("POST /v1/events HTTP/1.1\r\nHost: t\r\n{header}\r\n\r\n");
        let wire = concat(&[head.as_bytes(), b"0\r\n\r\n", &smuggled]);
        eprintln!("case {name}");
        assert_refused(&server, &wire, 400, code);
    }
    // HTTP/1.0 has no Transfer-Encoding (RFC 9112 §6.1): faulty framing.
    let wire = concat(&[b"POST /v1/events HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", &smuggled]);
    assert_refused(&server, &wire, 400, "transfer_encoding_in_http_1_0");
    // Odd whitespace around the one value is fine: the body is framed and answered.
    let body = event(&format!("{prefix}-tabs"), "u");
    let chunked = chunked_event(body.as_bytes(), "Transfer-Encoding:\t chunked \t");
    expect_accepted(&server.client().request(&chunked));
    let stored: Vec<String> = sandbox.tail().iter().map(TailLine::event_id).collect();
    assert_eq!(stored, vec![format!("{prefix}-tabs")]);
}

/// A signed `POST /v1/events` whose body is sent as one chunk, with `te_header` as the
/// Transfer-Encoding line.
fn chunked_event(body: &[u8], te_header: &str) -> Vec<u8> {
    let mut wire = b"POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n".to_vec();
    for (name, value) in auth_headers(body) {
        wire.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    wire.extend_from_slice(format!("{te_header}\r\n\r\n{:x}\r\n", body.len()).as_bytes());
    wire.extend_from_slice(body);
    wire.extend_from_slice(b"\r\n0\r\n\r\n");
    wire
}

#[test]
fn bad_chunk_sizes_lines_and_trailers_are_refused() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let prefix = unique_prefix();
    let smuggled = smuggled_event(&prefix, "chunk");
    let head: &[u8] = b"POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let long_extension = concat(&[b"1;", &[b'e'; 2048], b"\r\n{\r\n0\r\n\r\n"]);
    let big_trailers = concat(&[b"0\r\n", &b"X-Trailer: 0123456789abcdef0123456789abcdef\r\n".repeat(200), b"\r\n"]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("non_hex", b"zz\r\n".to_vec(), "chunk_invalid"),
        ("empty", b"\r\n".to_vec(), "chunk_invalid"),
        ("0x_prefix", b"0x10\r\n".to_vec(), "chunk_invalid"),
        ("negative", b"-1\r\n".to_vec(), "chunk_invalid"),
        ("overflowing", b"10000000000000000\r\n".to_vec(), "chunk_invalid"),
        ("stray_bytes_after_size", b"1 x\r\n{\r\n0\r\n\r\n".to_vec(), "chunk_invalid"),
        ("bare_lf_in_extension", b"1;a\nb\r\n{\r\n0\r\n\r\n".to_vec(), "chunk_invalid"),
        ("bare_lf_size_line", b"1\n{\r\n0\r\n\r\n".to_vec(), "chunk_invalid"),
        ("missing_crlf_after_data", b"1\r\n{}0\r\n\r\n".to_vec(), "chunk_invalid"),
        ("bare_lf_after_data", b"1\r\n{\n0\r\n\r\n".to_vec(), "chunk_invalid"),
        ("bare_lf_in_trailer", b"0\r\nX: a\nb\r\n\r\n".to_vec(), "chunk_invalid"),
        ("folded_trailer", b"0\r\nX: a\r\n b\r\n\r\n".to_vec(), "chunk_invalid"),
        ("long_extension", long_extension, "chunk_line_too_long"),
        ("large_trailers", big_trailers, "trailers_too_large"),
    ];
    for (name, body, code) in cases {
        eprintln!("case {name}");
        assert_refused(&server, &concat(&[head, &body, &smuggled]), 400, code);
    }
    // Over the body limit (64 KiB in the test setup), by one chunk or by their sum.
    assert_refused(&server, &concat(&[head, b"10001\r\n"]), 413, "body_too_large");
    let half = concat(&[b"8000\r\n", &[b' '; 0x8000], b"\r\n"]);
    assert_refused(&server, &concat(&[head, &half, &half, b"1\r\n"]), 413, "body_too_large");
    assert_only_control_event_stored(&server, &sandbox, &prefix);
}

#[test]
fn heads_with_bare_line_ends_folding_or_control_bytes_are_refused() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let prefix = unique_prefix();
    let smuggled = smuggled_event(&prefix, "head");
    let cases: [(&str, &[u8], &str); 12] = [
        ("bare_lf_request_line", b"POST /v1/events HTTP/1.1\nHost: t\r\nContent-Length: 0\r\n\r\n", "line_ending_invalid"),
        ("bare_lf_header", b"POST /v1/events HTTP/1.1\r\nHost: t\nContent-Length: 0\r\n\r\n", "line_ending_invalid"),
        ("bare_lf_head_end", b"POST /v1/events HTTP/1.1\r\nContent-Length: 0\r\n\n", "line_ending_invalid"),
        ("all_bare_lf", b"POST /v1/events HTTP/1.1\nContent-Length: 0\n\n", "line_ending_invalid"),
        ("bare_cr", b"POST /v1/events HTTP/1.1\r\nHost: t\rContent-Length: 0\r\n\r\n", "http_malformed"),
        ("obs_fold_space", b"POST /v1/events HTTP/1.1\r\nHost: t\r\n Content-Length: 0\r\n\r\n", "http_malformed"),
        ("obs_fold_tab", b"POST /v1/events HTTP/1.1\r\nX-Note: a\r\n\tb\r\nContent-Length: 0\r\n\r\n", "http_malformed"),
        ("space_before_colon", b"POST /v1/events HTTP/1.1\r\nContent-Length : 0\r\n\r\n", "http_malformed"),
        ("nul_in_value", b"POST /v1/events HTTP/1.1\r\nHost: t\x00x\r\nContent-Length: 0\r\n\r\n", "http_malformed"),
        ("escape_in_value", b"POST /v1/events HTTP/1.1\r\nHost: t\x1bx\r\nContent-Length: 0\r\n\r\n", "http_malformed"),
        ("del_in_value", b"POST /v1/events HTTP/1.1\r\nHost: t\x7f\r\nContent-Length: 0\r\n\r\n", "http_malformed"),
        ("vertical_tab_in_value", b"POST /v1/events HTTP/1.1\r\nHost: t\x0bx\r\nContent-Length: 0\r\n\r\n", "http_malformed"),
    ];
    for (name, head, code) in cases {
        eprintln!("case {name}");
        assert_refused(&server, &concat(&[head, &smuggled]), 400, code);
    }
    assert_only_control_event_stored(&server, &sandbox, &prefix);
}

#[test]
fn repeated_security_headers_are_refused() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let prefix = unique_prefix();
    for name in [
        "X-Key-Id",
        "X-Timestamp",
        "X-Signature",
        "Authorization",
        "X-Request-Id",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "Content-Type",
    ] {
        // A correctly signed event with the header twice: with two values, a proxy
        // could check one and sluice use the other.
        let signed = signed_event(event(&format!("{prefix}-{name}"), "u").as_bytes());
        let line_end = signed.windows(2).position(|w| w == b"\r\n").expect("request line") + 2;
        let present = String::from_utf8_lossy(&signed).to_lowercase().contains(&format!("\r\n{}:", name.to_lowercase()));
        let extra = if present { format!("{name}: other\r\n") } else { format!("{name}: one\r\n{name}: other\r\n") };
        let wire = concat(&[&signed[..line_end], extra.as_bytes(), &signed[line_end..]]);
        eprintln!("case {name}");
        assert_refused(&server, &wire, 400, "header_repeated");
    }
    assert_only_control_event_stored(&server, &sandbox, &prefix);
}

#[test]
fn request_targets_other_than_a_path_are_refused() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    for target in ["http://sluice.test/v1/events", "*", "sluice.test:443", "v1/events"] {
        let wire = format!("GET {target} HTTP/1.1\r\nHost: sluice.test\r\n\r\n");
        assert_refused(&server, wire.as_bytes(), 400, "request_target_invalid");
    }
    assert_eq!(server.client().request(&get("/healthz?probe=1")).status, 200);
}

#[test]
fn classic_cl_te_and_te_cl_smuggling_stores_nothing() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let prefix = unique_prefix();
    // CL.TE: a front end that reads Content-Length forwards everything; a back end that
    // reads the chunks would end the body at `0` and take the rest as a new request.
    let smuggled = smuggled_event(&prefix, "cl-te");
    let body = concat(&[b"0\r\n\r\n", &smuggled]);
    let head = format!("POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n", body.len());
    assert_refused(&server, &concat(&[head.as_bytes(), &body]), 400, "content_length_with_transfer_encoding");
    // TE.CL: a front end that reads the chunks forwards everything; a back end that
    // reads Content-Length: 4 would take the chunk data as a new request.
    let smuggled = smuggled_event(&prefix, "te-cl");
    let body = concat(&[format!("{:x}\r\n", smuggled.len()).as_bytes(), &smuggled, b"\r\n0\r\n\r\n"]);
    let head = "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_refused(&server, &concat(&[head.as_bytes(), &body]), 400, "content_length_with_transfer_encoding");
    // TE.TE: an obfuscated second Transfer-Encoding one side ignores.
    let smuggled = smuggled_event(&prefix, "te-te");
    let body = concat(&[format!("{:x}\r\n", smuggled.len()).as_bytes(), &smuggled, b"\r\n0\r\n\r\n"]);
    let head = "POST /v1/events HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: cow\r\n\r\n";
    assert_refused(&server, &concat(&[head.as_bytes(), &body]), 400, "transfer_encoding_unsupported");
    // A bare LF hiding Transfer-Encoding from a parser that splits lines only at CRLF.
    let smuggled = smuggled_event(&prefix, "lf");
    let body = concat(&[b"0\r\n\r\n", &smuggled]);
    let head = format!("POST /v1/events HTTP/1.1\r\nHost: t\r\nX: y\nTransfer-Encoding: chunked\r\nX-Len: {}\r\n\r\n", body.len());
    assert_refused(&server, &concat(&[head.as_bytes(), &body]), 400, "line_ending_invalid");
    // A bare LF in a chunk extension: a lenient parser ends the size line there and
    // reads the smuggled request as chunk data, a strict one the other way round.
    let smuggled = smuggled_event(&prefix, "ext");
    let wire =
        concat(&[b"POST /v1/events HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2;\n", &smuggled, b"\r\nxx\r\n0\r\n\r\n"]);
    assert_refused(&server, &wire, 400, "chunk_invalid");
    assert_only_control_event_stored(&server, &sandbox, &prefix);
}

/// RFC 9112 §3.2: an HTTP/1.1 request without Host, or any request with two, is 400;
/// two Hosts are what a proxy and sluice could each read differently.
#[test]
fn a_missing_repeated_or_invalid_host_is_refused() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let prefix = unique_prefix();
    let body = event(&format!("{prefix}-nohost"), "u");
    let signed = signed_event(body.as_bytes());
    let without_host = String::from_utf8(signed.clone()).unwrap().replace("Host: sluice.test\r\n", "");
    assert_refused(&server, without_host.as_bytes(), 400, "host_missing");
    let two_hosts = String::from_utf8(signed).unwrap().replace("Host: sluice.test\r\n", "Host: a.test\r\nHost: b.test\r\n");
    assert_refused(&server, two_hosts.as_bytes(), 400, "header_repeated");
    assert_refused(&server, b"GET /healthz HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400, "header_repeated");
    assert_refused(&server, b"GET /healthz HTTP/1.1\r\nHost: a.test, b.test\r\n\r\n", 400, "host_invalid");
    let healthz = server.client().request(b"GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!(healthz.status, 200, "HTTP/1.0 needs no Host: {}", healthz.describe());
    assert_only_control_event_stored(&server, &sandbox, &prefix);
}

/// A request line in the trailer section of a chunked body was accepted and swallowed
/// with the request before it; it must be refused as a malformed chunked body.
#[test]
fn a_request_line_in_the_trailers_is_refused() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let prefix = unique_prefix();
    let body = event(&format!("{prefix}-trailer"), "u");
    let head = "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n";
    let mut wire = head.as_bytes().to_vec();
    for (name, value) in auth_headers(body.as_bytes()) {
        wire.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    wire.extend_from_slice(format!("\r\n{:x}\r\n{body}\r\n0\r\nGET /healthz HTTP/1.1\r\n\r\n", body.len()).as_bytes());
    assert_refused(&server, &wire, 400, "chunk_invalid");
    assert_only_control_event_stored(&server, &sandbox, &prefix);
}
