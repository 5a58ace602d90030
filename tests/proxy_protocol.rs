//! The PROXY protocol on the ingest listeners, over real sockets. Loopback is the load
//! balancer: `proxy_trusted_cidrs = ["127.0.0.0/8"]` makes the test client one, and
//! `["10.0.0.0/8"]` makes it a direct client. Through a trusted header the client address
//! is the header's (a partner allow-list and the per-IP limit see it); a malformed,
//! missing or late header closes the connection; a header from a direct client is a
//! spoofing attempt and is refused before anything is read; TLS works behind a header.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use sluice_test_support::pki;
use sluice_test_support::pki::{Authority, TlsStream};
use sluice_test_support::*;

const TRUSTED: &str = "proxy_protocol = \"any\"\nproxy_trusted_cidrs = [\"127.0.0.0/8\"]\n";
const UNTRUSTED: &str = "proxy_protocol = \"any\"\nproxy_trusted_cidrs = [\"10.0.0.0/8\"]\n";

/// A partner that may send only from the documentation ranges the headers claim.
const FENCED_KID: &str = "fenced-key";
const FENCED_SECRET: [u8; 32] = *b"fenced-partner-secret-32-bytes!!";

fn fenced_ring() -> String {
    format!(
        "[[keys]]\nkid = \"{FENCED_KID}\"\nsecret = \"{}\"\npartner = \"fenced\"\n\n\
         [[partners]]\nname = \"fenced\"\nallow_cidrs = [\"192.0.2.0/24\", \"2001:db8::/32\"]\n",
        whsec(&FENCED_SECRET)
    )
}

fn fenced_event(id: &str) -> Vec<u8> {
    let body = event(id, "u_proxy");
    post(
        "/v1/events",
        Some("application/json"),
        &signing_headers(FENCED_KID, &FENCED_SECRET, &now_secs().to_string(), body.as_bytes()),
        body.as_bytes(),
    )
}

fn v1(source: &str, port: u16) -> Vec<u8> {
    let family = if source.contains(':') { "TCP6" } else { "TCP4" };
    let destination = if source.contains(':') { "::1" } else { "127.0.0.1" };
    format!("PROXY {family} {source} {destination} {port} 8080\r\n").into_bytes()
}

fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend_from_slice(&[0x20 | command, family]);
    out.extend_from_slice(&(block.len() as u16).to_be_bytes());
    out.extend_from_slice(block);
    out
}

fn v2_tcp(source: SocketAddr) -> Vec<u8> {
    let (family, mut block) = match source {
        SocketAddr::V4(v4) => (0x11, [v4.ip().octets(), Ipv4Addr::LOCALHOST.octets()].concat()),
        SocketAddr::V6(v6) => (0x21, [v6.ip().octets(), Ipv6Addr::LOCALHOST.octets()].concat()),
    };
    block.extend_from_slice(&source.port().to_be_bytes());
    block.extend_from_slice(&8080u16.to_be_bytes());
    // A TLV the receiver skips (an AWS-style VPC endpoint id).
    block.extend_from_slice(&[0xea, 0x00, 0x05, 0x01, b'v', b'p', b'c', b'e']);
    v2(1, family, &block)
}

fn v2_local() -> Vec<u8> {
    v2(0, 0x00, &[])
}

/// Sum over shards of `name{...label...}`.
fn metric(server: &Server, name: &str, label: &str) -> u64 {
    let text = server.admin_client().request(&get("/metrics")).text();
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn stored_ids(sandbox: &Sandbox) -> Vec<String> {
    let mut ids: Vec<String> = sandbox.tail().iter().map(TailLine::event_id).collect();
    ids.sort();
    ids
}

fn start(ingest_extra: &str, setup: Setup) -> (Sandbox, Server) {
    let sandbox = Sandbox::new(Setup { shards: 1, ingest_extra: ingest_extra.to_owned(), extra_keys: fenced_ring(), ..setup });
    let server = sandbox.start();
    (sandbox, server)
}

/// A client that first sends `header`, as a balancer does.
fn behind(server: &Server, header: &[u8]) -> Client {
    let mut client = server.client();
    client.send(header);
    client
}

/// The connection is answered `400 <code>`, told it closes, and is closed.
fn expect_refused(client: &mut Client, code: &str) {
    let response = client.read_response();
    expect_error(&response, 400, code);
    assert!(response.closes(), "the refusal does not close: {:?}", response.headers);
    assert!(client.is_closed_by_peer(Duration::from_secs(5)), "the connection stays open after {code}");
}

#[test]
fn the_header_source_is_the_address_the_partner_allow_list_sees() {
    let (sandbox, server) = start(TRUSTED, Setup::default());
    let prefix = unique_prefix();
    let mut v1_client = behind(&server, &v1("192.0.2.7", 51234));
    expect_accepted(&v1_client.request(&fenced_event(&format!("{prefix}-v1"))));
    let v6: SocketAddr = "[2001:db8::7]:443".parse().unwrap();
    let mut v2_client = behind(&server, &v2_tcp(v6));
    expect_accepted(&v2_client.request(&fenced_event(&format!("{prefix}-v2"))));
    // Another address, in either version: the allow-list refuses it.
    let mut other = behind(&server, &v1("198.51.100.9", 1));
    expect_error(&other.request(&fenced_event(&format!("{prefix}-other-v1"))), 403, "ip_not_allowed");
    let mut other = behind(&server, &v2_tcp("198.51.100.9:1".parse().unwrap()));
    expect_error(&other.request(&fenced_event(&format!("{prefix}-other-v2"))), 403, "ip_not_allowed");
    // A mapped IPv4 source counts as IPv4 (the allow-list holds 192.0.2.0/24).
    let mut mapped = behind(&server, &v1("::ffff:192.0.2.8", 2));
    expect_accepted(&mapped.request(&fenced_event(&format!("{prefix}-mapped"))));
    // Keep-alive: the address holds for the connection's later requests.
    expect_accepted(&v1_client.request(&fenced_event(&format!("{prefix}-v1-again"))));
    assert_eq!(metric(&server, "sluice_proxy_headers_total", "version=\"v1\""), 3);
    assert_eq!(metric(&server, "sluice_proxy_headers_total", "version=\"v2\""), 2);
    let expected: Vec<String> = ["mapped", "v1", "v1-again", "v2"].iter().map(|name| format!("{prefix}-{name}")).collect();
    assert_eq!(stored_ids(&sandbox), expected);
}

/// Opens a connection behind a header naming `source` and proves it was admitted.
fn admitted(server: &Server, source: &str) -> Option<Client> {
    let mut client = behind(server, &v1(source, 40000));
    client.try_send(&get("/healthz")).ok()?;
    match client.try_read_response() {
        Ok(Some(response)) if response.status == 200 => Some(client),
        _ => None,
    }
}

#[test]
fn the_per_ip_limit_counts_the_proxied_client_and_never_the_balancer() {
    let (_sandbox, server) = start(TRUSTED, Setup { connections_per_ip_max: Some(2), ..Setup::default() });
    let mut first: Vec<Client> = (0..2).map(|_| admitted(&server, "192.0.2.1").expect("within the limit")).collect();
    assert!(admitted(&server, "192.0.2.1").is_none(), "a third connection for 192.0.2.1 was admitted");
    assert_eq!(metric(&server, "sluice_connections_refused_per_ip_total", ""), 1);
    // The balancer (127.0.0.1) already holds three connections; other clients still get in.
    let others: Vec<Client> = (0..2).map(|_| admitted(&server, "192.0.2.2").expect("another client")).collect();
    // Health checks from the balancer itself carry no client and are not counted.
    let mut checks = Vec::new();
    for _ in 0..3 {
        let mut check = behind(&server, &v2_local());
        assert_eq!(check.request(&get("/readyz")).status, 200);
        checks.push(check);
    }
    let mut unknown = behind(&server, b"PROXY UNKNOWN\r\n");
    assert_eq!(unknown.request(&get("/healthz")).status, 200);
    assert_eq!(metric(&server, "sluice_proxy_headers_total", "version=\"local\""), 4);

    // A close gives back exactly one place: one new connection fits, the next does not.
    drop(first.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    let replacement = loop {
        if let Some(client) = admitted(&server, "192.0.2.1") {
            break client;
        }
        assert!(Instant::now() < deadline, "closing a proxied connection did not free its place");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(admitted(&server, "192.0.2.1").is_none(), "a close was released twice");
    for client in first.iter_mut().chain([replacement].iter_mut()) {
        assert_eq!(client.request(&get("/healthz")).status, 200, "the admitted connections still work");
    }
    drop(others);
}

#[test]
fn a_malformed_or_missing_header_from_a_balancer_is_answered_400_and_closed() {
    let (sandbox, server) = start(TRUSTED, Setup::default());
    let prefix = unique_prefix();
    let malformed: [Vec<u8>; 4] = [
        b"PROXY TCP4 192.0.2.1 10.0.0.1 01 80\r\n".to_vec(),
        b"PROXY TCP4 2001:db8::1 10.0.0.1 1 80\r\n".to_vec(),
        [&v2(1, 0x11, &[0; 12])[..12], &[0x31, 0x11, 0, 12], &[0; 12]].concat(),
        v2(1, 0x22, &[0; 36]),
    ];
    for (index, header) in malformed.iter().enumerate() {
        let mut client = behind(&server, &[&header[..], &fenced_event(&format!("{prefix}-{index}"))].concat());
        expect_refused(&mut client, "proxy_header_invalid");
    }
    // A balancer that sends no header: the request is not a header either.
    let mut bare = server.client();
    bare.send(&signed_event(event(&format!("{prefix}-bare"), "u_proxy").as_bytes()));
    expect_refused(&mut bare, "proxy_header_invalid");
    assert_eq!(metric(&server, "sluice_proxy_header_rejected_total", "reason=\"invalid\""), 5);
    assert!(stored_ids(&sandbox).is_empty(), "a refused connection stored something");
}

#[test]
fn a_balancer_that_sends_no_header_in_time_is_cut_at_the_header_timeout() {
    let (_sandbox, server) = start(TRUSTED, Setup { header_timeout_ms: Some(600), ..Setup::default() });
    for sent in [&b""[..], b"PROXY TCP4 192.0.2.1 ", &v2_local()[..10]] {
        let started = Instant::now();
        let mut client = behind(&server, sent);
        expect_refused(&mut client, "proxy_header_invalid");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(500) && waited < Duration::from_secs(5), "cut after {waited:?}");
    }
    assert_eq!(metric(&server, "sluice_proxy_header_rejected_total", "reason=\"timeout\""), 3);
}

#[test]
fn a_header_from_an_untrusted_source_is_refused_and_nothing_is_stored() {
    let (sandbox, server) = start(UNTRUSTED, Setup::default());
    let prefix = unique_prefix();
    let own_event = |name: &str| signed_event(event(&format!("{prefix}-{name}"), "u_proxy").as_bytes());
    for (name, header) in [("v1", v1("192.0.2.7", 1)), ("v2", v2_tcp("192.0.2.7:1".parse().unwrap())), ("local", v2_local())] {
        let mut client = behind(&server, &[&header[..], &own_event(name)].concat());
        expect_refused(&mut client, "proxy_header_not_allowed");
    }
    // Sent a byte at a time, the signature is still recognised.
    let mut slow = server.client();
    for byte in b"PROXY TCP4 192.0.2.7 127.0.0.1 1 8080\r\n".iter().take(5) {
        slow.send(&[*byte]);
        std::thread::sleep(Duration::from_millis(20));
    }
    expect_refused(&mut slow, "proxy_header_not_allowed");
    assert_eq!(metric(&server, "sluice_proxy_header_rejected_total", "reason=\"untrusted_source\""), 4);
    // Without a header a direct client is served as itself: 127.0.0.1 is not in the
    // fenced partner's allow-list; the unrestricted test partner is stored.
    let mut direct = server.client();
    expect_error(&direct.request(&fenced_event(&format!("{prefix}-fenced"))), 403, "ip_not_allowed");
    expect_accepted(&direct.request(&own_event("direct")));
    // `POST` starts like `PROXY`: a request sent a byte at a time is still served.
    let mut typing = server.client();
    for byte in own_event("typed") {
        typing.send(&[byte]);
    }
    expect_accepted(&typing.read_response());
    assert_eq!(stored_ids(&sandbox), [format!("{prefix}-direct"), format!("{prefix}-typed")]);
}

#[test]
fn requests_in_the_same_segment_as_the_header_are_served_in_order() {
    let (sandbox, server) = start(TRUSTED, Setup::default());
    let prefix = unique_prefix();
    let mut client = server.client();
    let burst = [v1("192.0.2.9", 5), fenced_event(&format!("{prefix}-a")), fenced_event(&format!("{prefix}-b")), get("/readyz")].concat();
    client.send(&burst);
    expect_accepted(&client.read_response());
    expect_accepted(&client.read_response());
    assert_eq!(client.read_response().status, 200);
    // And a header that trickles in a byte at a time, then a request.
    let mut slow = server.client();
    for byte in v2_tcp("192.0.2.10:6".parse().unwrap()) {
        slow.send(&[byte]);
    }
    expect_accepted(&slow.request(&fenced_event(&format!("{prefix}-c"))));
    let expected: Vec<String> = ["a", "b", "c"].iter().map(|name| format!("{prefix}-{name}")).collect();
    assert_eq!(stored_ids(&sandbox), expected);
}

// ---------------------------------------------------------------------------------------
// TLS: the header comes before the ClientHello
// ---------------------------------------------------------------------------------------

fn tls_lines(dir: &std::path::Path, proxy: &str) -> String {
    format!(
        "cert_file = {:?}\nkey_file = {:?}\n{proxy}",
        dir.join("server.pem").display().to_string(),
        dir.join("server.key").display().to_string()
    )
}

/// A TLS connection whose first write is `header` and the ClientHello together, in one
/// segment, as a balancer forwards them.
fn tls_behind(addr: SocketAddr, config: &Arc<ClientConfig>, header: &[u8]) -> std::io::Result<Client<TlsStream>> {
    let mut tcp = connect_tcp(addr)?;
    let mut conn =
        ClientConnection::new(Arc::clone(config), ServerName::try_from("localhost").expect("name")).map_err(std::io::Error::other)?;
    let mut first = header.to_vec();
    conn.write_tls(&mut first)?;
    tcp.write_all(&first)?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(Client::over(stream))
}

/// The handshake or the first answer fails: the server closed the connection.
fn tls_refused(addr: SocketAddr, config: &Arc<ClientConfig>, header: &[u8], request: &[u8]) -> bool {
    let Ok(mut client) = tls_behind(addr, config, header) else { return true };
    if client.try_send(request).is_err() {
        return true;
    }
    !matches!(client.try_read_response(), Ok(Some(_)))
}

fn tls_server(plain: &str, tls_proxy: &str) -> (tempfile::TempDir, Authority, Sandbox, Server) {
    let dir = tempfile::Builder::new().prefix("sluice-pki-").tempdir().expect("temp dir");
    let ca = Authority::new("server CA");
    ca.server("server-a", 1).write(dir.path(), "server");
    let setup = Setup { tls: Some(tls_lines(dir.path(), tls_proxy)), ..Setup::default() };
    let (sandbox, server) = start(plain, setup);
    (dir, ca, sandbox, server)
}

#[test]
fn a_header_before_the_tls_handshake_carries_the_client_address() {
    let v2_only = "proxy_protocol = \"v2\"\nproxy_trusted_cidrs = [\"127.0.0.0/8\"]\n";
    let (_dir, ca, sandbox, server) = tls_server("", v2_only);
    let addr = server.ingest_tls.expect("TLS listener");
    let config = pki::client_config(&ca, None, &[]);
    let prefix = unique_prefix();
    let mut client = tls_behind(addr, &config, &v2_tcp("192.0.2.7:1".parse().unwrap())).expect("TLS behind a v2 header");
    expect_accepted(&client.request(&fenced_event(&format!("{prefix}-tls"))));
    let mut check = tls_behind(addr, &config, &v2_local()).expect("TLS behind LOCAL");
    assert_eq!(check.request(&get("/readyz")).status, 200);
    // The listener takes v2 only; a v1 header, or none, closes the connection.
    assert!(tls_refused(addr, &config, &v1("192.0.2.7", 1), &fenced_event(&format!("{prefix}-v1"))));
    assert!(tls_refused(addr, &config, b"", &fenced_event(&format!("{prefix}-none"))));
    assert_eq!(metric(&server, "sluice_proxy_header_rejected_total", "reason=\"invalid\""), 2);
    // The plaintext listener has the protocol off: a PROXY line is just bad HTTP (its
    // three words read as a request line with an unknown version).
    let mut plain = server.client();
    plain.send(&[&v1("192.0.2.7", 1)[..], &fenced_event(&format!("{prefix}-plain"))].concat());
    expect_error(&plain.read_response(), 505, "http_version_unsupported");
    assert_eq!(stored_ids(&sandbox), [format!("{prefix}-tls")]);
}

#[test]
fn a_spoofed_header_on_the_tls_listener_is_closed() {
    let (_dir, ca, sandbox, server) = tls_server(UNTRUSTED, UNTRUSTED);
    let addr = server.ingest_tls.expect("TLS listener");
    let config = pki::client_config(&ca, None, &[]);
    let prefix = unique_prefix();
    let own_event = |name: &str| signed_event(event(&format!("{prefix}-{name}"), "u_proxy").as_bytes());
    assert!(tls_refused(addr, &config, &v1("192.0.2.7", 1), &own_event("spoofed-v1")));
    assert!(tls_refused(addr, &config, &v2_tcp("192.0.2.7:1".parse().unwrap()), &own_event("spoofed-v2")));
    assert_eq!(metric(&server, "sluice_proxy_header_rejected_total", "reason=\"untrusted_source\""), 2);
    let mut direct = tls_behind(addr, &config, b"").expect("a direct TLS client");
    expect_accepted(&direct.request(&own_event("direct")));
    assert_eq!(stored_ids(&sandbox), [format!("{prefix}-direct")]);
}
