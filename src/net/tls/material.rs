//! Loading TLS material from the files `[ingest.tls]` names, and the reloadable handle
//! shards take the current `ServerConfig` from. Every file is read whole, bounded in
//! size, and every error names the file so an operator knows which one to fix.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::config::{ClientAuth, TlsConfig};
use crate::constants::{TLS_CRL_FILE_BYTES_MAX, TLS_PEM_FILE_BYTES_MAX};

/// Material that cannot be used. The text names the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl TlsError {
    fn invalid(path: &Path, message: impl Into<String>) -> TlsError {
        TlsError::Invalid { path: path.to_owned(), message: message.into() }
    }

    /// The file could be read but its content is unusable (as opposed to an I/O error).
    pub fn is_invalid_content(&self) -> bool {
        matches!(self, TlsError::Invalid { .. })
    }
}

/// Reads a whole file of at most `bytes_max` bytes.
pub fn read_bounded(path: &Path, bytes_max: u64) -> Result<Vec<u8>, TlsError> {
    let read_error = |source| TlsError::Read { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(bytes_max + 1).read_to_end(&mut bytes).map_err(read_error)?;
    if bytes.len() as u64 > bytes_max {
        return Err(TlsError::invalid(path, format!("larger than {bytes_max} bytes")));
    }
    Ok(bytes)
}

/// Every block of type `T` (`label` names it for the error) in PEM text read from `path`,
/// in order; at least one.
fn pem_blocks<T: PemObject>(path: &Path, pem: &[u8], label: &str) -> Result<Vec<T>, TlsError> {
    let blocks = T::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::invalid(path, format!("not a valid PEM file: {error}")))?;
    if blocks.is_empty() {
        return Err(TlsError::invalid(path, format!("no {label} block")));
    }
    Ok(blocks)
}

/// Every `CERTIFICATE` block of a PEM file, in order; at least one.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    pem_blocks(path, &read_bounded(path, TLS_PEM_FILE_BYTES_MAX)?, "CERTIFICATE")
}

/// The first private key of a PEM file: PKCS#8 (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`)
/// or PKCS#1 (`RSA PRIVATE KEY`).
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_bounded(path, TLS_PEM_FILE_BYTES_MAX)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::invalid(path, "no PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY block"),
        other => TlsError::invalid(path, format!("not a valid PEM file: {other}")),
    })
}

/// The CRLs of one file: PEM (`X509 CRL` blocks) or a single DER CRL.
fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = read_bounded(path, TLS_CRL_FILE_BYTES_MAX)?;
    if !bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        return Ok(vec![CertificateRevocationListDer::from(bytes)]);
    }
    pem_blocks(path, &bytes, "X509 CRL")
}

/// The client-certificate verifier: the CA bundle as trust anchors, every CRL checked
/// for every certificate of the chain (an unknown revocation status is a failure, as
/// with nginx's `ssl_crl`).
fn client_verifier(tls: &TlsConfig, ca_file: &Path) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(ca_file)? {
        roots.add(certificate).map_err(|error| TlsError::invalid(ca_file, format!("not a usable CA certificate: {error}")))?;
    }
    let roots = Arc::new(roots);
    let mut crls = Vec::new();
    for path in &tls.crl_files {
        let these = read_crls(path)?;
        // Built once per file only to blame the right file for a CRL webpki cannot parse.
        WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), super::provider())
            .with_crls(these.iter().cloned())
            .build()
            .map_err(|error| TlsError::invalid(path, format!("not a usable CRL: {error}")))?;
        crls.extend(these);
    }
    let mut builder = WebPkiClientVerifier::builder_with_provider(roots, super::provider()).with_crls(crls);
    if tls.client_auth == ClientAuth::Optional {
        builder = builder.allow_unauthenticated();
    }
    builder.build().map_err(|error| TlsError::invalid(ca_file, format!("cannot verify client certificates with it: {error}")))
}

/// Reads every file `[ingest.tls]` names and builds the server's TLS configuration.
/// Nothing is partially applied: any error leaves the caller's current configuration as it was.
pub fn server_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = read_certificates(&tls.cert_file)?;
    let key = read_private_key(&tls.key_file)?;
    let builder = ServerConfig::builder_with_provider(super::provider())
        .with_protocol_versions(super::PROTOCOL_VERSIONS)
        .map_err(|error| TlsError::invalid(&tls.cert_file, error.to_string()))?;
    let builder = match (&tls.client_ca_file, tls.client_auth) {
        (Some(ca_file), ClientAuth::Optional | ClientAuth::Required) => builder.with_client_cert_verifier(client_verifier(tls, ca_file)?),
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|error| {
        TlsError::invalid(&tls.key_file, format!("cannot be used with the certificate in {}: {error}", tls.cert_file.display()))
    })?;
    config.alpn_protocols = vec![super::ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// The server's TLS configuration in force, shared by every shard. A reload builds a new
/// `ServerConfig` and swaps it in; each shard compares the generation once per loop (one
/// atomic load) and takes the new one when it moved. Connections keep the configuration
/// they started with; new handshakes use the new one.
pub type ServerTls = crate::platform::swap::Swap<ServerConfig>;
