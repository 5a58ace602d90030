//! Certificates made at test time (rcgen): a server CA and the server certificates it
//! signs, a client CA and its client certificates (good, expired, revoked), a CA nobody
//! trusts, CRLs; and a rustls client over a real socket. Included with `#[path]` by the
//! TLS test binaries only.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod,
    KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber, date_time_ymd,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// The stream of a TLS test client.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A CA: its certificate (PEM and DER) and what signs with it.
pub struct Authority {
    pub pem: String,
    pub der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate with its key.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    key_pkcs8: Vec<u8>,
    pub der: CertificateDer<'static>,
    pub serial: u64,
}

impl Leaf {
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()))
    }

    /// Writes `<stem>.pem` and `<stem>.key` in `dir`.
    pub fn write(&self, dir: &Path, stem: &str) {
        std::fs::write(dir.join(format!("{stem}.pem")), &self.cert_pem).expect("write certificate");
        std::fs::write(dir.join(format!("{stem}.key")), &self.key_pem).expect("write key");
    }
}

impl Authority {
    pub fn new(name: &str) -> Authority {
        let mut params = CertificateParams::new(Vec::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        Authority { pem: cert.pem(), der: cert.der().clone(), issuer: Issuer::new(params, key) }
    }

    fn issue(&self, params: CertificateParams, serial: u64) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed leaf");
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), key_pkcs8: key.serialize_der(), der: cert.der().clone(), serial }
    }

    /// A server certificate for `localhost` and 127.0.0.1 whose CN is `label`.
    pub fn server(&self, label: &str, serial: u64) -> Leaf {
        let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, label);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.serial_number = Some(SerialNumber::from(serial));
        self.issue(params, serial)
    }

    /// A client certificate with subject CN `cn`; `expired`: valid only in 2019.
    pub fn client(&self, cn: &str, serial: u64, expired: bool) -> Leaf {
        let mut params = CertificateParams::new(Vec::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(SerialNumber::from(serial));
        if expired {
            params.not_before = date_time_ymd(2019, 1, 1);
            params.not_after = date_time_ymd(2019, 12, 31);
        }
        self.issue(params, serial)
    }

    /// A CRL (PEM) revoking `serials`.
    pub fn crl(&self, serials: &[u64], number: u64) -> String {
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2024, 1, 1),
            next_update: date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from(*serial),
                    revocation_time: date_time_ymd(2024, 6, 1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).expect("CRL").pem().expect("CRL PEM")
    }
}

/// A rustls client configuration trusting `server_ca`, presenting `client` if given,
/// speaking `versions` (TLS 1.3 and 1.2 when empty) and offering ALPN http/1.1.
pub fn client_config(
    server_ca: &Authority,
    client: Option<&Leaf>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(server_ca.der.clone()).expect("root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions = if versions.is_empty() { rustls::ALL_VERSIONS } else { versions };
    let builder =
        ClientConfig::builder_with_provider(provider).with_protocol_versions(versions).expect("versions").with_root_certificates(roots);
    let mut config = match client {
        Some(leaf) => builder.with_client_auth_cert(vec![leaf.der.clone()], leaf.key_der()).expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Connects and completes the client's side of the handshake. With TLS 1.3 a server that
/// rejects the client certificate says so only after this returns: the first read fails.
pub fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> io::Result<crate::http::Client<TlsStream>> {
    let tcp = crate::http::connect_tcp(addr)?;
    let name = ServerName::try_from("localhost").expect("server name");
    let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(crate::http::Client::over(stream))
}
