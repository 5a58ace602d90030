//! TLS and mTLS on the ingest listener, over real sockets with certificates made at test
//! time: events over TLS (keep-alive, pipelining, ALPN, TLS 1.2), old protocol versions
//! refused, client certificates verified against the CA bundle and CRLs, and reloads
//! (SIGHUP, `POST /admin/reload`) that swap certificates and CRLs without dropping
//! open connections.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use sluice_test_support::pki;
use sluice_test_support::pki::{Authority, Leaf, TlsStream};
use sluice_test_support::*;

/// The `[ingest.tls]` lines for files written by [`write_server`] and, for mTLS, the
/// client CA bundle and the CRL.
fn tls_lines(dir: &Path, mtls: Option<&str>) -> String {
    let mut lines = format!(
        "cert_file = {:?}\nkey_file = {:?}\n",
        dir.join("server.pem").display().to_string(),
        dir.join("server.key").display().to_string()
    );
    if let Some(client_auth) = mtls {
        lines.push_str(&format!(
            "client_ca_file = {:?}\nclient_auth = \"{client_auth}\"\ncrl_files = [{:?}]\n",
            dir.join("clients-ca.pem").display().to_string(),
            dir.join("clients.crl").display().to_string()
        ));
    }
    lines
}

/// Certificates live next to the sandbox (made before its config is written).
fn pki_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("sluice-pki-").tempdir().expect("temp dir")
}

fn start_tls(dir: &Path, mtls: Option<&str>, shards: usize) -> (Sandbox, Server) {
    let sandbox = Sandbox::new(Setup { shards, tls: Some(tls_lines(dir, mtls)), ..Setup::default() });
    let server = sandbox.start();
    assert!(server.ingest_tls.is_some(), "no ingest_tls= in the ready line:\n{}", server.stderr_text());
    (sandbox, server)
}

fn connect(server: &Server, config: &Arc<ClientConfig>) -> std::io::Result<Client<TlsStream>> {
    pki::connect(server.ingest_tls.expect("TLS listener"), Arc::clone(config))
}

fn post_event(client: &mut Client<TlsStream>, id: &str) -> Response {
    client.request(&signed_event(event(id, "u-tls").as_bytes()))
}

/// The handshake, or the first request after it, fails: no answer ever arrives.
fn refused(server: &Server, config: &Arc<ClientConfig>, id: &str) -> bool {
    let Ok(mut client) = connect(server, config) else { return true };
    if client.try_send(&signed_event(event(id, "u-tls").as_bytes())).is_err() {
        return true;
    }
    !matches!(client.try_read_response(), Ok(Some(_)))
}

/// The stored events are exactly `<prefix>-<name>` for `names`, in any order.
fn assert_stored(sandbox: &Sandbox, prefix: &str, names: &[&str]) {
    let mut stored: Vec<String> = sandbox.tail().iter().map(TailLine::event_id).collect();
    stored.sort();
    let mut expected: Vec<String> = names.iter().map(|name| format!("{prefix}-{name}")).collect();
    expected.sort();
    assert_eq!(stored, expected);
}

fn metric(server: &Server, name: &str) -> u64 {
    let mut admin = server.admin_client();
    let text = admin.request(&get("/metrics")).text();
    text.lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with('{'))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn write_server(dir: &Path, leaf: &Leaf) {
    leaf.write(dir, "server");
}

/// A server CA whose certificate `server-a` the server presents, and a client CA (with a
/// CRL revoking `revoked`) the server verifies clients against, written to `dir`.
fn mtls_pki(dir: &Path, revoked: &[u64]) -> (Authority, Authority) {
    let server_ca = Authority::new("server CA");
    let clients_ca = Authority::new("clients CA");
    write_server(dir, &server_ca.server("server-a", 1));
    std::fs::write(dir.join("server-ca.pem"), &server_ca.pem).expect("write CA");
    std::fs::write(dir.join("clients-ca.pem"), &clients_ca.pem).expect("write CA");
    std::fs::write(dir.join("clients.crl"), clients_ca.crl(revoked, 1)).expect("write CRL");
    (server_ca, clients_ca)
}

fn peer_leaf(client: &Client<TlsStream>) -> Vec<u8> {
    client.stream.conn.peer_certificates().expect("server certificate")[0].to_vec()
}

#[test]
fn events_over_tls_are_stored_with_keep_alive_pipelining_and_alpn() {
    let dir = pki_dir();
    let server_ca = Authority::new("server CA");
    write_server(dir.path(), &server_ca.server("server-a", 1));
    let (sandbox, mut server) = start_tls(dir.path(), None, 2);
    let prefix = unique_prefix();

    let mut client = connect(&server, &pki::client_config(&server_ca, None, &[])).expect("TLS connect");
    assert_eq!(client.stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]), "ALPN http/1.1 negotiated");
    assert_eq!(client.stream.conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    expect_accepted(&post_event(&mut client, &format!("{prefix}-one")));
    // Keep-alive: a second request on the same connection.
    expect_accepted(&post_event(&mut client, &format!("{prefix}-two")));
    // Pipelining: three requests in one write, three answers in order.
    let mut burst = Vec::new();
    for index in 0..3 {
        burst.extend_from_slice(&signed_event(event(&format!("{prefix}-pipe{index}"), &format!("u{index}")).as_bytes()));
    }
    client.send(&burst);
    for _ in 0..3 {
        expect_accepted(&client.read_response());
    }
    assert_eq!(client.request(&get("/healthz")).status, 200);

    // A TLS 1.2-only client is served too.
    let tls12 = pki::client_config(&server_ca, None, &[&rustls::version::TLS12]);
    let mut old = connect(&server, &tls12).expect("TLS 1.2 connect");
    assert_eq!(old.stream.conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    expect_accepted(&post_event(&mut old, &format!("{prefix}-tls12")));

    // The plaintext listener still speaks plaintext.
    let mut plain = server.client();
    expect_accepted(&plain.request(&signed_event(event(&format!("{prefix}-plain"), "u").as_bytes())));

    assert!(metric(&server, "sluice_tls_handshakes_total") >= 2);
    drop((client, old, plain));
    server.stop();
    assert_stored(&sandbox, &prefix, &["one", "two", "pipe0", "pipe1", "pipe2", "tls12", "plain"]);
}

/// A TLS 1.1 ClientHello (no supported_versions extension): the answer is a fatal
/// `protocol_version` alert and the connection closes.
#[test]
fn tls_1_1_and_plaintext_on_the_tls_port_are_refused() {
    let dir = pki_dir();
    let server_ca = Authority::new("server CA");
    write_server(dir.path(), &server_ca.server("server-a", 1));
    let (sandbox, server) = start_tls(dir.path(), None, 1);
    let addr = server.ingest_tls.expect("TLS listener");

    let mut body = vec![0x03, 0x02]; // client_version TLS 1.1
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    // TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, which TLS 1.2 would accept.
    body.extend_from_slice(&[0x00, 0x02, 0xc0, 0x2b]);
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    // signature_algorithms: ecdsa_secp256r1_sha256 (the server key's), so only the version is wrong.
    body.extend_from_slice(&[0x00, 0x08, 0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03]);
    let mut handshake = vec![0x01, 0x00, (body.len() >> 8) as u8, body.len() as u8];
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x02, (handshake.len() >> 8) as u8, handshake.len() as u8];
    record.extend_from_slice(&handshake);
    let mut tcp = connect_tcp(addr).expect("connect");
    tcp.write_all(&record).expect("send hello");
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    assert!(answer.len() >= 7 && answer[0] == 0x15, "expected an alert record, got {answer:?}");
    assert_eq!(&answer[5..7], &[2, 70], "fatal protocol_version alert");

    // Plain HTTP on the TLS port: an alert, a close, and nothing stored.
    let mut tcp = connect_tcp(addr).expect("connect");
    tcp.write_all(&signed_event(event("plain-on-tls", "u").as_bytes())).expect("send");
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    assert!(answer.first().is_none_or(|byte| *byte == 0x15), "only an alert may come back: {answer:?}");
    assert!(metric(&server, "sluice_tls_handshake_failures_total") >= 2);
    assert!(sandbox.tail().is_empty());
}

/// A TLS 1.0 or 1.1 ClientHello as real legacy clients send it, without the TLS 1.2
/// `signature_algorithms` extension: rustls refused it for the missing extension with
/// `handshake_failure`; RFC 8446 §4.2.1 asks for `protocol_version`.
#[test]
fn a_legacy_hello_without_signature_algorithms_gets_protocol_version() {
    let dir = pki_dir();
    let server_ca = Authority::new("server CA");
    write_server(dir.path(), &server_ca.server("server-a", 1));
    let (_sandbox, server) = start_tls(dir.path(), None, 1);
    let addr = server.ingest_tls.expect("TLS listener");
    for version in [[0x03, 0x01], [0x03, 0x02]] {
        let mut body = version.to_vec();
        body.extend_from_slice(&[7u8; 32]); // random
        body.push(0); // session id
        body.extend_from_slice(&[0x00, 0x02, 0x00, 0x2f]); // TLS_RSA_WITH_AES_128_CBC_SHA
        body.extend_from_slice(&[0x01, 0x00]); // null compression
        body.extend_from_slice(&[0x00, 0x06, 0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]); // ec_point_formats only
        let mut handshake = vec![0x01, 0x00, (body.len() >> 8) as u8, body.len() as u8];
        handshake.extend_from_slice(&body);
        let mut record = vec![0x16, 0x03, 0x01, (handshake.len() >> 8) as u8, handshake.len() as u8];
        record.extend_from_slice(&handshake);
        let mut tcp = connect_tcp(addr).expect("connect");
        tcp.write_all(&record).expect("send hello");
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer);
        assert!(answer.len() >= 7 && answer[0] == 0x15, "{version:?}: expected an alert record, got {answer:?}");
        assert_eq!(&answer[5..7], &[2, 70], "{version:?}: fatal protocol_version alert");
    }
    assert!(metric(&server, "sluice_tls_handshake_failures_total") >= 2);
}

#[test]
fn mtls_admits_only_valid_unrevoked_client_certificates() {
    let dir = pki_dir();
    let (server_ca, clients_ca) = mtls_pki(dir.path(), &[13]);
    let stranger_ca = Authority::new("nobody trusts this CA");
    let good = clients_ca.client("partner-good", 11, false);
    let expired = clients_ca.client("partner-expired", 12, true);
    let revoked = clients_ca.client("partner-revoked", 13, false);
    let foreign = stranger_ca.client("partner-foreign", 14, false);
    let (sandbox, mut server) = start_tls(dir.path(), Some("required"), 2);
    let prefix = unique_prefix();

    let mut client = connect(&server, &pki::client_config(&server_ca, Some(&good), &[])).expect("mTLS connect");
    expect_accepted(&post_event(&mut client, &format!("{prefix}-good")));
    for (name, leaf) in [("expired", Some(&expired)), ("revoked", Some(&revoked)), ("foreign", Some(&foreign)), ("none", None)] {
        let config = pki::client_config(&server_ca, leaf, &[]);
        assert!(refused(&server, &config, &format!("{prefix}-{name}")), "{name} client certificate was let in");
    }
    assert!(metric(&server, "sluice_tls_handshake_failures_total") >= 4);
    // The good connection is unaffected.
    expect_accepted(&post_event(&mut client, &format!("{prefix}-good2")));
    drop(client);
    server.stop();
    assert_stored(&sandbox, &prefix, &["good", "good2"]);
}

#[test]
fn optional_client_auth_admits_anonymous_clients_but_not_bad_certificates() {
    let dir = pki_dir();
    let (server_ca, clients_ca) = mtls_pki(dir.path(), &[]);
    let (_sandbox, server) = start_tls(dir.path(), Some("optional"), 1);
    let prefix = unique_prefix();
    let mut anonymous = connect(&server, &pki::client_config(&server_ca, None, &[])).expect("connect");
    expect_accepted(&post_event(&mut anonymous, &format!("{prefix}-anonymous")));
    let good = clients_ca.client("partner-good", 11, false);
    let mut identified = connect(&server, &pki::client_config(&server_ca, Some(&good), &[])).expect("connect");
    expect_accepted(&post_event(&mut identified, &format!("{prefix}-identified")));
    let expired = clients_ca.client("partner-expired", 12, true);
    assert!(refused(&server, &pki::client_config(&server_ca, Some(&expired), &[]), &format!("{prefix}-expired")));
}

/// End to end: the identity of the verified client certificate reaches the handler as
/// the connection's `tls_identity`, where a partner that requires mTLS is matched on it.
#[test]
fn the_client_certificate_identity_reaches_the_partner_check() {
    let dir = pki_dir();
    let (server_ca, clients_ca) = mtls_pki(dir.path(), &[]);
    let partners = "[[partners]]\nname = \"tests\"\nclient_cert = \"required\"\ntls_identities = [\"partner-good\"]\n".to_owned();
    let sandbox = Sandbox::new(Setup { tls: Some(tls_lines(dir.path(), Some("optional"))), extra_keys: partners, ..Setup::default() });
    let mut server = sandbox.start();
    let prefix = unique_prefix();
    let good = clients_ca.client("partner-good", 41, false);
    let mut identified = connect(&server, &pki::client_config(&server_ca, Some(&good), &[])).expect("mTLS connect");
    expect_accepted(&post_event(&mut identified, &format!("{prefix}-identified")));
    let mut anonymous = connect(&server, &pki::client_config(&server_ca, None, &[])).expect("TLS connect");
    expect_error(&post_event(&mut anonymous, &format!("{prefix}-anonymous")), 403, "client_certificate_required");
    let stranger = clients_ca.client("someone-else", 42, false);
    let mut other = connect(&server, &pki::client_config(&server_ca, Some(&stranger), &[])).expect("mTLS connect");
    expect_error(&post_event(&mut other, &format!("{prefix}-other")), 403, "client_certificate_required");
    let mut plain = server.client();
    expect_error(&plain.request(&signed_event(event(&format!("{prefix}-plain"), "u").as_bytes())), 403, "client_certificate_required");
    drop((identified, anonymous, other, plain));
    server.stop();
    assert_stored(&sandbox, &prefix, &["identified"]);
}

fn admin_reload(server: &Server) -> Response {
    server.admin_client().request(b"POST /admin/reload HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n")
}

#[test]
fn reload_swaps_certificates_and_crls_without_dropping_connections() {
    let dir = pki_dir();
    let server_ca = Authority::new("server CA");
    let clients_ca = Authority::new("clients CA");
    let (cert_a, cert_b, cert_c) = (server_ca.server("server-a", 1), server_ca.server("server-b", 2), server_ca.server("server-c", 3));
    write_server(dir.path(), &cert_a);
    std::fs::write(dir.path().join("clients-ca.pem"), &clients_ca.pem).expect("write CA");
    std::fs::write(dir.path().join("clients.crl"), clients_ca.crl(&[], 1)).expect("write CRL");
    let (first, second) = (clients_ca.client("partner-1", 21, false), clients_ca.client("partner-2", 22, false));
    let (first_config, second_config) =
        (pki::client_config(&server_ca, Some(&first), &[]), pki::client_config(&server_ca, Some(&second), &[]));
    let (sandbox, mut server) = start_tls(dir.path(), Some("required"), 2);
    let prefix = unique_prefix();

    let mut kept = connect(&server, &first_config).expect("connect");
    assert_eq!(peer_leaf(&kept), cert_a.der.to_vec());
    expect_accepted(&post_event(&mut kept, &format!("{prefix}-before")));
    let mut second_kept = connect(&server, &second_config).expect("partner-2 connects before its revocation");

    // SIGHUP: certificate B, and a CRL that revokes partner-2.
    write_server(dir.path(), &cert_b);
    std::fs::write(dir.path().join("clients.crl"), clients_ca.crl(&[22], 2)).expect("write CRL");
    assert_eq!(kill(server.pid(), libc::SIGHUP), 0);
    server.wait_for_stderr("reloaded cause=SIGHUP parts=config,tls,keys", 1);
    expect_accepted(&post_event(&mut kept, &format!("{prefix}-kept")));
    // An open connection keeps its session, even one whose certificate is now revoked.
    expect_accepted(&post_event(&mut second_kept, &format!("{prefix}-second-kept")));
    let mut fresh = connect(&server, &first_config).expect("connect after reload");
    assert_eq!(peer_leaf(&fresh), cert_b.der.to_vec(), "a new connection sees certificate B");
    expect_accepted(&post_event(&mut fresh, &format!("{prefix}-fresh")));
    assert!(refused(&server, &second_config, &format!("{prefix}-revoked")), "the newly revoked certificate is refused");

    // A broken PEM file: the reload is refused, certificate B stays in force.
    std::fs::write(dir.path().join("server.pem"), "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n").expect("write");
    let answer = admin_reload(&server);
    assert_eq!(answer.status, 400, "{}", answer.describe());
    assert_eq!(answer.error_code(), "reload_rejected");
    assert!(answer.text().contains("server.pem"), "the error names the file: {}", answer.text());
    server.wait_for_stderr("server.pem", 1);
    let mut still_b = connect(&server, &first_config).expect("connect after a refused reload");
    assert_eq!(peer_leaf(&still_b), cert_b.der.to_vec(), "the old certificate stays in force");
    expect_accepted(&post_event(&mut still_b, &format!("{prefix}-still-b")));

    // The admin call puts certificate C in force.
    write_server(dir.path(), &cert_c);
    let answer = admin_reload(&server);
    assert_eq!(answer.status, 200, "{}", answer.describe());
    assert_eq!(answer.text(), r#"{"reloaded":["config","tls","keys"],"restart_needed":[]}"#);
    let mut with_c = connect(&server, &first_config).expect("connect after the admin reload");
    assert_eq!(peer_leaf(&with_c), cert_c.der.to_vec());
    expect_accepted(&post_event(&mut with_c, &format!("{prefix}-with-c")));
    expect_accepted(&post_event(&mut kept, &format!("{prefix}-kept-again")));

    drop((kept, second_kept, fresh, still_b, with_c));
    server.stop();
    assert_stored(&sandbox, &prefix, &["before", "kept", "second-kept", "fresh", "still-b", "with-c", "kept-again"]);
}

#[test]
fn bad_tls_material_exits_2_naming_the_file() {
    let dir = pki_dir();
    std::fs::write(dir.path().join("server.pem"), "not a certificate").expect("write");
    std::fs::write(dir.path().join("server.key"), "not a key").expect("write");
    let sandbox = Sandbox::new(Setup { tls: Some(tls_lines(dir.path(), None)), ..Setup::default() });
    for command in ["check-config", "serve"] {
        let output = run_sluice(&[command, "--config", sandbox.config.to_str().expect("utf-8")]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command}: {stderr}");
        assert!(stderr.contains("server.pem") && stderr.contains("no CERTIFICATE block"), "{command}: {stderr}");
    }
}

#[test]
fn sluice_bench_speaks_tls_and_mtls() {
    let dir = pki_dir();
    let (_server_ca, clients_ca) = mtls_pki(dir.path(), &[]);
    clients_ca.client("bench", 31, false).write(dir.path(), "bench");
    let (sandbox, mut server) = start_tls(dir.path(), Some("required"), 2);
    let url = format!("https://{}", server.ingest_tls.expect("TLS listener"));
    let path = |name: &str| dir.path().join(name).display().to_string();
    let (ca, cert, key, keys) = (path("server-ca.pem"), path("bench.pem"), path("bench.key"), sandbox.keys.display().to_string());
    let mut args = vec!["bench", "--url", &url, "--server-name", "localhost", "--ca-file", &ca, "--keys-file", &keys, "--kid", KID];
    args.extend_from_slice(&["--connections", "4", "--requests", "300", "--duration", "10", "--json"]);
    // 150 pipelined requests (~80 KiB) sealed at once: more than rustls's default buffer limit.
    let with_certificate = [args.clone(), vec!["--client-cert", &cert, "--client-key", &key, "--pipeline", "150"]].concat();
    let output = run_sluice(&with_certificate);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert_eq!(report["url"], format!("{url}/v1/events"));
    assert_eq!(report["errors"]["total"], 0, "{report}");
    assert_eq!(report["status"]["202"], 300, "{report}");
    assert_eq!(report["connection_events"]["ready_at_start"], 4, "handshakes happen before the clock starts: {report}");

    // Without the client certificate every handshake is refused. With TLS 1.3 the client
    // finishes its side first and learns of the refusal from the alert that answers its
    // first request, so the run goes on and counts `tls` errors.
    let without = [&args[..args.len() - 7], &["--connections", "2", "--duration", "1", "--json", "--max-error-ratio", "0"]].concat();
    let output = run_sluice(&without);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert!(report["errors"]["tls"].as_u64().unwrap_or(0) > 0, "{report}");
    assert!(report["status"].get("202").is_none(), "{report}");
    server.stop();
    assert_eq!(sandbox.tail().len(), 300);
}

/// A burst of handshakes whose ClientHellos all arrive at once: the shard does a bounded
/// share of handshake work per loop turn and defers the rest (counted), every handshake
/// still completes, and a plaintext request on the same shard is answered meanwhile.
#[test]
fn a_burst_of_handshakes_is_spread_over_loop_turns_and_every_one_completes() {
    const BURST: usize = 300;
    let dir = pki_dir();
    let server_ca = Authority::new("server CA");
    write_server(dir.path(), &server_ca.server("server-a", 1));
    let (_sandbox, server) = start_tls(dir.path(), None, 1);
    let config = pki::client_config(&server_ca, None, &[]);
    let addr = server.ingest_tls.expect("TLS listener");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("server name");
    // Every socket connected and every ClientHello made first, then all sent at once.
    let mut pending: Vec<(rustls::ClientConnection, std::net::TcpStream)> = (0..BURST)
        .map(|_| {
            let conn = rustls::ClientConnection::new(Arc::clone(&config), name.clone()).expect("client");
            (conn, connect_tcp(addr).expect("connect"))
        })
        .collect();
    for (conn, sock) in &mut pending {
        conn.write_tls(sock).expect("ClientHello");
    }
    let mut plain = server.client();
    assert_eq!(plain.request(&get("/healthz")).status, 200, "plaintext served during the burst");
    for (conn, sock) in &mut pending {
        while conn.is_handshaking() {
            conn.complete_io(sock).expect("handshake completes");
        }
    }
    // The client is done once it has sent its Finished; the server counts a handshake when
    // it has read it, which deferred steps may do a few turns later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while metric(&server, "sluice_tls_handshakes_total") < BURST as u64 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(metric(&server, "sluice_tls_handshakes_total"), BURST as u64);
    assert!(metric(&server, "sluice_tls_handshakes_deferred_total") > 0, "{BURST} hellos at once exceed one turn's share");
}
