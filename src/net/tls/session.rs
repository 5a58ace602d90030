//! One server connection's TLS state. It does no I/O: the shard hands it the ciphertext
//! of each receive completion and gets plaintext appended to the connection's input
//! buffer, and before each send it turns the plaintext answers into the ciphertext the
//! send carries. The framer and the handler never see the difference.

use std::io;
use std::sync::Arc;

use rustls::{ServerConfig, ServerConnection};

use super::hello::{self, Offered};

/// What one receive did to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The handshake finished while processing these bytes.
    pub handshake_completed: bool,
    /// The peer sent `close_notify`: no more plaintext will come.
    pub peer_closed: bool,
}

pub struct Session {
    conn: ServerConnection,
    /// `close_notify` is queued (or must not be: the session failed).
    close_notify_queued: bool,
    /// The first record has been looked at (`hello.rs`).
    hello_read: bool,
    /// A `protocol_version` alert waits to be sent (a client offering only TLS < 1.2).
    version_alert: bool,
}

impl Session {
    pub fn new(config: Arc<ServerConfig>) -> Result<Session, rustls::Error> {
        let mut conn = ServerConnection::new(config)?;
        // The shard drains rustls's outgoing buffer into the send buffer after every
        // write and bounds what waits with its own output high-water mark, so rustls's
        // own limit (64 KiB) would only make a large batch answer fail half-written.
        conn.set_buffer_limit(None);
        Ok(Session { conn, close_notify_queued: false, hello_read: false, version_alert: false })
    }

    /// Feeds received ciphertext and appends the plaintext it carried to `plaintext`.
    /// On an error the session has queued the alert to send (see [`Session::seal`]) and
    /// the connection must close once it is sent; bytes after a `close_notify` are ignored.
    pub fn receive(&mut self, ciphertext: &[u8], plaintext: &mut Vec<u8>) -> Result<Received, rustls::Error> {
        if !self.hello_read {
            self.hello_read = true;
            if hello::offered(ciphertext) == Offered::LegacyOnly {
                // rustls would answer `handshake_failure` (hello.rs says why).
                self.version_alert = true;
                self.close_notify_queued = true;
                return Err(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered));
            }
        }
        let was_handshaking = self.conn.is_handshaking();
        match super::feed(&mut self.conn, ciphertext, plaintext) {
            Ok(peer_closed) => Ok(Received { handshake_completed: was_handshaking && !self.conn.is_handshaking(), peer_closed }),
            Err(error) => {
                // The alert says it all; no close_notify after it.
                self.close_notify_queued = true;
                Err(error)
            }
        }
    }

    /// Encrypts `plaintext` (if any), queues `close_notify` when `closing`, and appends
    /// every TLS record waiting to be sent (handshake, alerts, data) to `wire`.
    pub fn seal(&mut self, plaintext: &[u8], closing: bool, wire: &mut Vec<u8>) -> io::Result<()> {
        if std::mem::take(&mut self.version_alert) {
            wire.extend_from_slice(&hello::PROTOCOL_VERSION_ALERT);
            return Ok(());
        }
        super::seal(&mut self.conn, plaintext, wire)?;
        if closing {
            self.queue_close_notify();
            super::seal(&mut self.conn, &[], wire)?;
        }
        Ok(())
    }

    /// Queues `close_notify` once (never after a failure: the alert already said it).
    pub fn queue_close_notify(&mut self) {
        if !self.close_notify_queued {
            self.close_notify_queued = true;
            self.conn.send_close_notify();
        }
    }

    /// TLS records (handshake, alerts) wait to be sent.
    pub fn wants_write(&self) -> bool {
        self.version_alert || self.conn.wants_write()
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The identity of the client's verified certificate, once the handshake is done.
    pub fn peer_identity(&self) -> Option<Box<str>> {
        let chain = self.conn.peer_certificates()?;
        super::identity::client_identity(chain.first()?.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, RootCertStore};

    use super::*;
    use crate::config::{ClientAuth, TlsConfig};

    struct Pki {
        dir: tempfile::TempDir,
        ca: CertificateDer<'static>,
        client: (CertificateDer<'static>, PrivateKeyDer<'static>),
    }

    /// One CA signing the server's certificate (localhost) and a client's (CN partner-42).
    fn pki() -> Pki {
        let mut ca_params = CertificateParams::new(Vec::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "test CA");
        let ca_key = KeyPair::generate().expect("key");
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let mut server = CertificateParams::new(vec!["localhost".into()]).expect("params");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().expect("key");
        let server_cert = server.signed_by(&server_key, &issuer).expect("server certificate");
        let mut client = CertificateParams::new(Vec::new()).expect("params");
        client.distinguished_name.push(DnType::CommonName, "partner-42");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = KeyPair::generate().expect("key");
        let client_cert = client.signed_by(&client_key, &issuer).expect("client certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("server.pem"), server_cert.pem()).expect("write");
        std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).expect("write");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write");
        let client_key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(client_key.serialize_der()));
        Pki { dir, ca: ca.der().clone(), client: (client_cert.der().clone(), client_key) }
    }

    fn server_config(pki: &Pki, client_auth: ClientAuth) -> Arc<ServerConfig> {
        let path = |name: &str| pki.dir.path().join(name);
        let tls = TlsConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            cert_file: path("server.pem"),
            key_file: path("server.key"),
            client_ca_file: (client_auth != ClientAuth::Off).then(|| path("ca.pem")),
            client_auth,
            crl_files: Vec::new(),
            proxy: crate::config::ProxyConfig::default(),
        };
        crate::net::tls::material::server_config(&tls).expect("server config")
    }

    fn client(pki: &Pki, with_certificate: bool, versions: &[&'static rustls::SupportedProtocolVersion]) -> ClientConnection {
        let mut roots = RootCertStore::empty();
        roots.add(pki.ca.clone()).expect("root");
        let builder = ClientConfig::builder_with_provider(crate::net::tls::provider())
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots);
        let mut config = if with_certificate {
            builder.with_client_auth_cert(vec![pki.client.0.clone()], pki.client.1.clone_key()).expect("client auth")
        } else {
            builder.with_no_client_auth()
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").expect("name")).expect("client")
    }

    /// Runs the handshake in memory, the way the shard does: ciphertext in through
    /// `receive`, records out through `seal`. Returns the plaintext the server received.
    fn handshake(session: &mut Session, client: &mut ClientConnection, request: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let mut plaintext = Vec::new();
        client.writer().write_all(request).expect("client write");
        for _ in 0..8 {
            let mut to_server = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut to_server).expect("client write_tls");
            }
            session.receive(&to_server, &mut plaintext)?;
            let mut to_client = Vec::new();
            session.seal(&[], false, &mut to_client).expect("seal");
            if !to_client.is_empty() {
                client.read_tls(&mut to_client.as_slice()).expect("client read_tls");
                client.process_new_packets()?;
            }
            if !session.is_handshaking() && !client.is_handshaking() && plaintext.len() >= request.len() {
                break;
            }
        }
        Ok(plaintext)
    }

    #[test]
    fn a_verified_client_certificate_gives_the_connection_its_identity() {
        let pki = pki();
        let mut session = Session::new(server_config(&pki, ClientAuth::Required)).expect("session");
        let mut client = client(&pki, true, crate::net::tls::PROTOCOL_VERSIONS);
        let plaintext = handshake(&mut session, &mut client, b"GET /healthz HTTP/1.1\r\n\r\n").expect("handshake");
        assert_eq!(plaintext, b"GET /healthz HTTP/1.1\r\n\r\n");
        assert_eq!(session.peer_identity().as_deref(), Some("partner-42"));
        assert_eq!(client.alpn_protocol(), Some(crate::net::tls::ALPN_HTTP11));
        // Answers go out sealed, then close_notify.
        let mut wire = Vec::new();
        session.seal(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", true, &mut wire).expect("seal");
        client.read_tls(&mut wire.as_slice()).expect("read_tls");
        let state = client.process_new_packets().expect("records");
        assert!(state.peer_has_closed(), "close_notify follows the answer");
        let mut answer = String::new();
        let _ = client.reader().read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer:?}");
    }

    /// Regression: with rustls's default 64 KiB buffer limit a large answer (a batch
    /// result, or an open loop's queued requests on the bench client) failed half-written.
    #[test]
    fn answers_larger_than_rustls_buffer_limit_are_sealed_whole() {
        let pki = pki();
        let mut session = Session::new(server_config(&pki, ClientAuth::Off)).expect("session");
        let mut client = client(&pki, false, crate::net::tls::PROTOCOL_VERSIONS);
        handshake(&mut session, &mut client, b"x").expect("handshake");
        let answer = vec![b'a'; 300 * 1024];
        let mut wire = Vec::new();
        session.seal(&answer, false, &mut wire).expect("seal");
        let mut received = Vec::new();
        let mut reader = wire.as_slice();
        while !reader.is_empty() {
            client.read_tls(&mut reader).expect("read_tls");
            client.process_new_packets().expect("records");
            let mut chunk = Vec::new();
            let _ = client.reader().read_to_end(&mut chunk);
            received.extend_from_slice(&chunk);
        }
        assert_eq!(received.len(), answer.len());
    }

    #[test]
    fn required_client_auth_fails_without_a_certificate_and_queues_an_alert() {
        let pki = pki();
        let mut session = Session::new(server_config(&pki, ClientAuth::Required)).expect("session");
        let mut client = client(&pki, false, crate::net::tls::PROTOCOL_VERSIONS);
        let mut plaintext = Vec::new();
        let mut failed = false;
        for _ in 0..8 {
            let mut to_server = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut to_server).expect("write_tls");
            }
            if session.receive(&to_server, &mut plaintext).is_err() {
                failed = true;
                break;
            }
            let mut to_client = Vec::new();
            session.seal(&[], false, &mut to_client).expect("seal");
            client.read_tls(&mut to_client.as_slice()).expect("read_tls");
            let _ = client.process_new_packets();
        }
        assert!(failed, "the handshake must fail");
        assert!(session.wants_write(), "an alert waits to be sent");
        assert_eq!(session.peer_identity(), None);
    }

    #[test]
    fn anonymous_sessions_have_no_identity_and_tls12_works() {
        let pki = pki();
        let mut session = Session::new(server_config(&pki, ClientAuth::Off)).expect("session");
        let mut client = client(&pki, false, &[&rustls::version::TLS12]);
        handshake(&mut session, &mut client, b"x").expect("handshake");
        assert_eq!(client.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
        assert_eq!(session.peer_identity(), None);
    }
}
