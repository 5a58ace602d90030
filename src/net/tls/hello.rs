//! The protocol versions a ClientHello offers, read before rustls sees it.
//!
//! sluice speaks TLS 1.2 and 1.3 only. RFC 8446 §4.2.1 (and RFC 5246 §E.1) answers a
//! client that offers nothing newer with a `protocol_version` alert, but a TLS 1.0/1.1
//! ClientHello has no `signature_algorithms` extension, and rustls refuses that first,
//! with `handshake_failure`: the client is told the wrong thing and an operator reading
//! its log looks for a cipher problem. So the first record of a connection is read here,
//! and a hello that offers only old versions gets the right alert.
//!
//! Strict bounds, no allocation, never a panic: a record that is not a whole
//! ClientHello is `Unknown`, and rustls judges it as usual.

/// What the first record says about the versions the client can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// TLS 1.2 or 1.3 is offered: rustls negotiates.
    Modern,
    /// Only versions older than TLS 1.2.
    LegacyOnly,
    /// Not a whole ClientHello in one record (or not TLS at all): rustls decides.
    Unknown,
}

const RECORD_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXTENSION_SUPPORTED_VERSIONS: u16 = 43;
const TLS12: u16 = 0x0303;

/// The alert record for it: fatal `protocol_version` (70), in a TLS 1.0 record, which a
/// legacy client can read.
pub const PROTOCOL_VERSION_ALERT: [u8; 7] = [21, 0x03, 0x01, 0x00, 0x02, 2, 70];

/// Reads the first record of a connection.
pub fn offered(bytes: &[u8]) -> Offered {
    parse(bytes).unwrap_or(Offered::Unknown)
}

/// A cursor over a byte slice that refuses to read past its end.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.bytes.split_at_checked(count)?;
        self.bytes = rest;
        Some(taken)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        let bytes = self.take(2)?;
        Some(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    fn u24(&mut self) -> Option<usize> {
        let bytes = self.take(3)?;
        Some(usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]))
    }

    /// A vector with a length prefix of `width` bytes.
    fn vector(&mut self, width: usize) -> Option<Reader<'a>> {
        let len = match width {
            1 => usize::from(self.u8()?),
            _ => usize::from(self.u16()?),
        };
        Some(Reader { bytes: self.take(len)? })
    }
}

fn parse(bytes: &[u8]) -> Option<Offered> {
    let mut record = Reader { bytes };
    if record.u8()? != RECORD_HANDSHAKE {
        return None;
    }
    let _record_version = record.u16()?;
    let mut fragment = record.vector(2)?;
    if fragment.u8()? != HANDSHAKE_CLIENT_HELLO {
        return None;
    }
    let hello_len = fragment.u24()?;
    let mut hello = Reader { bytes: fragment.take(hello_len)? };
    let client_version = hello.u16()?;
    hello.take(32)?; // random
    hello.vector(1)?; // session id
    hello.vector(2)?; // cipher suites
    hello.vector(1)?; // compression methods
    let mut offered_modern = client_version >= TLS12;
    if hello.bytes.is_empty() {
        // No extensions at all: only the legacy version field speaks.
        return Some(if offered_modern { Offered::Modern } else { Offered::LegacyOnly });
    }
    let mut extensions = hello.vector(2)?;
    while !extensions.bytes.is_empty() {
        let kind = extensions.u16()?;
        let mut body = extensions.vector(2)?;
        if kind == EXTENSION_SUPPORTED_VERSIONS {
            // RFC 8446 §4.2.1: when present, this list alone says what the client speaks.
            let mut versions = body.vector(1)?;
            offered_modern = false;
            while !versions.bytes.is_empty() {
                offered_modern |= versions.u16()? >= TLS12;
            }
        }
    }
    Some(if offered_modern { Offered::Modern } else { Offered::LegacyOnly })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello record with `version` in its legacy field and, if given, a
    /// supported_versions extension listing `versions`.
    fn hello(version: u16, versions: Option<&[u16]>) -> Vec<u8> {
        let mut body = version.to_be_bytes().to_vec();
        body.extend_from_slice(&[7; 32]);
        body.extend_from_slice(&[0, 0, 2, 0x00, 0x2f, 1, 0]);
        let mut extensions = vec![0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]; // ec_point_formats
        if let Some(versions) = versions {
            extensions.extend_from_slice(&EXTENSION_SUPPORTED_VERSIONS.to_be_bytes());
            extensions.extend_from_slice(&((versions.len() * 2 + 1) as u16).to_be_bytes());
            extensions.push((versions.len() * 2) as u8);
            for version in versions {
                extensions.extend_from_slice(&version.to_be_bytes());
            }
        }
        body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
        body.extend_from_slice(&extensions);
        let mut handshake = vec![HANDSHAKE_CLIENT_HELLO, 0, (body.len() >> 8) as u8, body.len() as u8];
        handshake.extend_from_slice(&body);
        let mut record = vec![RECORD_HANDSHAKE, 0x03, 0x01, (handshake.len() >> 8) as u8, handshake.len() as u8];
        record.extend_from_slice(&handshake);
        record
    }

    #[test]
    fn legacy_and_modern_hellos_are_told_apart() {
        assert_eq!(offered(&hello(0x0301, None)), Offered::LegacyOnly, "TLS 1.0");
        assert_eq!(offered(&hello(0x0302, None)), Offered::LegacyOnly, "TLS 1.1");
        assert_eq!(offered(&hello(0x0303, None)), Offered::Modern, "TLS 1.2");
        assert_eq!(offered(&hello(0x0303, Some(&[0x0304]))), Offered::Modern, "TLS 1.3");
        assert_eq!(offered(&hello(0x0303, Some(&[0x0302, 0x0301]))), Offered::LegacyOnly, "the extension decides");
        assert_eq!(offered(&hello(0x0301, Some(&[0x7f1c, 0x0303]))), Offered::Modern);
    }

    #[test]
    fn anything_short_or_other_is_left_to_rustls() {
        let whole = hello(0x0301, None);
        for cut in 0..whole.len() {
            assert_eq!(offered(&whole[..cut]), Offered::Unknown, "cut at {cut}");
        }
        assert_eq!(offered(b"GET / HTTP/1.1\r\n\r\n"), Offered::Unknown);
        let mut bad_extension = hello(0x0301, Some(&[0x0303]));
        let last = bad_extension.len() - 1;
        bad_extension[last - 3] = 0xff; // an extension length past the end
        assert_eq!(offered(&bad_extension), Offered::Unknown);
    }
}
