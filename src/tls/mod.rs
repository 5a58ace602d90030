//! TLS for the ingest listener and the bench client: rustls on the aws-lc-rs provider,
//! TLS 1.3 and 1.2 only, rustls's default (safe) cipher suites, ALPN `http/1.1`.
//!
//! - [`material`]: reads certificates, keys, CA bundles and CRLs into a
//!   `rustls::ServerConfig`, and [`material::ServerTls`], the reloadable handle the shards
//!   pick new material up from.
//! - [`session`]: one server connection's TLS state, fed from the reactor's receive
//!   buffers and written into its send buffer (no I/O of its own).
//! - [`identity`]: the identity of a verified client certificate.
//! - [`client`]: the bench client's `rustls::ClientConfig`.

#![forbid(unsafe_code)]

pub mod client;
pub mod identity;
pub mod material;
pub mod session;

use std::sync::Arc;

use rustls::SupportedProtocolVersion;
use rustls::crypto::CryptoProvider;

pub use material::{ServerTls, TlsError};

/// The only protocol versions sluice speaks: TLS 1.0 and 1.1 are refused at the handshake.
pub const PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The one application protocol offered and accepted (RFC 7301): a client that offers
/// ALPN without it fails the handshake; a client that offers none is served HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The aws-lc-rs provider with its default cipher suites and key exchange groups.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
