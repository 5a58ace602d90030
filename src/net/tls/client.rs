//! The bench client's TLS configuration (`sluice bench --tls`): the server is verified
//! against `--ca-file` (or not at all with `--insecure`), and `--client-cert` /
//! `--client-key` present a client certificate for mTLS.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::material::{TlsError, read_certificates, read_private_key};

/// How the bench client speaks TLS.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// CA bundle (PEM) the server's certificate must chain to; required unless `insecure`.
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate (signatures are still checked): loopback benches only.
    pub insecure: bool,
    /// Client certificate chain and key (PEM), for servers that ask for one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// SNI and the name the server's certificate must carry.
    pub server_name: String,
}

impl ClientTls {
    /// Builds the client configuration; every error names the file.
    pub fn config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let provider = super::provider();
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(super::PROTOCOL_VERSIONS)
            .map_err(|error| TlsError::Invalid { path: PathBuf::new(), message: error.to_string() })?;
        let builder = match (&self.ca_file, self.insecure) {
            (_, true) => builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyServerCertificate(provider))),
            (Some(ca_file), false) => {
                let mut roots = RootCertStore::empty();
                for certificate in read_certificates(ca_file)? {
                    roots.add(certificate).map_err(|error| TlsError::Invalid {
                        path: ca_file.clone(),
                        message: format!("not a usable CA certificate: {error}"),
                    })?;
                }
                builder.with_root_certificates(roots)
            }
            (None, false) => {
                return Err(TlsError::Invalid { path: PathBuf::new(), message: "--tls needs --ca-file FILE (or --insecure)".into() });
            }
        };
        let mut config = match &self.client_cert {
            Some((cert_file, key_file)) => builder
                .with_client_auth_cert(read_certificates(cert_file)?, read_private_key(key_file)?)
                .map_err(|error| TlsError::Invalid {
                    path: key_file.clone(),
                    message: format!("cannot be used with the certificate in {}: {error}", cert_file.display()),
                })?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![super::ALPN_HTTP11.to_vec()];
        Ok(Arc::new(config))
    }

    /// The name to send as SNI and verify the certificate against.
    pub fn server_name(&self) -> Result<ServerName<'static>, String> {
        ServerName::try_from(self.server_name.clone()).map_err(|error| format!("{:?} is not a server name: {error}", self.server_name))
    }
}

/// `--insecure`: any certificate is accepted, but the handshake signatures are still
/// verified, so the session keys are bound to the certificate that was sent.
#[derive(Debug)]
struct AnyServerCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
