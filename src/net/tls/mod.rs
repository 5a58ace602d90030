//! TLS for the ingest listener and the bench client: rustls on the aws-lc-rs provider,
//! TLS 1.3 and 1.2 only, rustls's default (safe) cipher suites, ALPN `http/1.1`.
//!
//! - [`material`]: reads certificates, keys, CA bundles and CRLs into a
//!   `rustls::ServerConfig`, and [`material::ServerTls`], the reloadable handle the shards
//!   pick new material up from.
//! - [`session`]: one server connection's TLS state, fed from the reactor's receive
//!   buffers and written into its send buffer (no I/O of its own).
//! - [`hello`]: the versions a ClientHello offers, so a client offering only TLS 1.0/1.1
//!   gets the `protocol_version` alert.
//! - [`identity`]: the identity of a verified client certificate.
//! - [`client`]: the bench client's `rustls::ClientConfig`.

#![forbid(unsafe_code)]

pub mod client;
pub mod hello;
pub mod identity;
pub mod material;
pub mod session;

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{ConnectionCommon, SupportedProtocolVersion};

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

/// Feeds received ciphertext to a client or server connection and appends the plaintext
/// it carried to `plaintext`. Returns true once the peer has sent `close_notify` (bytes
/// after it are ignored). On an error the connection has queued its alert.
pub fn feed<Data>(conn: &mut ConnectionCommon<Data>, mut ciphertext: &[u8], plaintext: &mut Vec<u8>) -> Result<bool, rustls::Error> {
    let mut peer_closed = false;
    while !ciphertext.is_empty() {
        // read_tls takes at most one buffer's worth (about 16 KiB) per call.
        match conn.read_tls(&mut ciphertext) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => return Err(rustls::Error::General(error.to_string())),
        }
        let state = conn.process_new_packets()?;
        let ready = state.plaintext_bytes_to_read();
        if ready > 0 {
            let start = plaintext.len();
            plaintext.resize(start + ready, 0);
            if let Err(error) = conn.reader().read_exact(&mut plaintext[start..]) {
                plaintext.truncate(start);
                return Err(rustls::Error::General(error.to_string()));
            }
        }
        peer_closed |= state.peer_has_closed();
    }
    Ok(peer_closed)
}

/// Encrypts `plaintext` (if any) and appends every TLS record waiting to be sent
/// (handshake, alerts, data) to `wire`. The connection's buffer limit must be off
/// (`set_buffer_limit(None)`): a plaintext larger than the limit would fail half-written.
pub fn seal<Data>(conn: &mut ConnectionCommon<Data>, plaintext: &[u8], wire: &mut Vec<u8>) -> io::Result<()> {
    if !plaintext.is_empty() {
        conn.writer().write_all(plaintext)?;
    }
    while conn.wants_write() {
        conn.write_tls(wire)?;
    }
    Ok(())
}
