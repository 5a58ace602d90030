//! PROXY protocol headers (HAProxy's `proxy-protocol.txt`, versions 1 and 2): the line or
//! block a load balancer writes at the start of a TCP connection to say whose connection
//! it forwards. Pure: no I/O, no allocation. [`parse`] looks at the bytes received so far
//! and answers [`Parsed::Incomplete`], [`Parsed::Done`] (the header's length and the
//! addresses it carries) or the [`ProxyError`] that names what was expected; [`sniff`]
//! tells whether bytes begin with, or could still become, either signature.
//!
//! The parser is online: it judges each byte when it arrives and never looks past the
//! header, so for any bytes `b` and any prefix `p` of `b`, `parse(p)` is either
//! `Incomplete` or exactly `parse(b)`, and bytes after the header (the first HTTP request,
//! or a TLS ClientHello) are never consumed.
//!
//! Version 1 is read strictly: one space between fields, `TCP4` addresses as four decimal
//! numbers without leading zeros, `TCP6` addresses as IPv6 text, ports as decimal numbers
//! without leading zeros, CRLF within [`PROXY_V1_HEADER_BYTES_MAX`] bytes. `UNKNOWN` may be
//! followed by anything up to the CRLF, which the receiver must ignore (spec §2.1).
//! Version 2 accepts `LOCAL` with any address block, and `PROXY` with TCP over IPv4 or
//! IPv6, `UNSPEC`, or a UNIX stream socket; TLVs are skipped, and the whole header is
//! bounded by [`PROXY_V2_HEADER_BYTES_MAX`].

#![forbid(unsafe_code)]

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::constants::{PROXY_V1_HEADER_BYTES_MAX, PROXY_V2_HEADER_BYTES_MAX};

/// The version 1 signature; a single space follows it.
pub const V1_SIGNATURE: &[u8; 5] = b"PROXY";
/// The version 2 signature (spec §2.2).
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Version 2: signature, version and command, family and transport, length.
const V2_FIXED_BYTES: usize = 16;
/// Version 2 address blocks: two addresses and two ports.
const V2_INET_BYTES: u16 = 12;
const V2_INET6_BYTES: u16 = 36;
/// Two 108-byte `sun_path`s.
const V2_UNIX_BYTES: u16 = 216;
/// Longest IPv6 text (`INET6_ADDRSTRLEN` - 1, with an embedded IPv4 address).
const V1_IPV6_TEXT_BYTES_MAX: usize = 45;
const V1_IPV4_TEXT_BYTES_MAX: usize = 15;
const V1_PORT_DIGITS_MAX: usize = 5;
/// `UNKNOWN`, the longest protocol word.
const V1_PROTOCOL_BYTES_MAX: usize = 7;

/// The protocol versions a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    V1,
    V2,
    Any,
}

impl Versions {
    pub fn allows(self, version: Version) -> bool {
        matches!((self, version), (Versions::Any, _) | (Versions::V1, Version::V1) | (Versions::V2, Version::V2))
    }

    /// The configuration value (`proxy_protocol = "v1" | "v2" | "any"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Versions::V1 => "v1",
            Versions::V2 => "v2",
            Versions::Any => "any",
        }
    }
}

impl fmt::Display for Versions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Versions::V1 => "v1",
            Versions::V2 => "v2",
            Versions::Any => "v1 or v2",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// What the bytes received so far amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Every byte so far can start a valid header; more are needed.
    Incomplete,
    /// A whole header: the first `header_len` bytes. `source` and `destination` are both
    /// `None` when the header carries no client address (v1 `UNKNOWN`, v2 `LOCAL`, v2
    /// `UNSPEC` or UNIX): the connection's own peer stays its address.
    Done { header_len: usize, version: Version, source: Option<SocketAddr>, destination: Option<SocketAddr> },
}

/// Whether bytes are the start of a PROXY header (for refusing one from a client that
/// may not send it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    /// The bytes begin with this version's signature.
    Proxy(Version),
    /// The bytes are a proper prefix of a signature (or empty): wait for more.
    Undecided,
    /// The bytes cannot begin a PROXY header.
    NotProxy,
}

/// A version 1 field, named for errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V1Field {
    /// `TCP4`, `TCP6` or `UNKNOWN` after `PROXY` and one space.
    Protocol,
    SourceAddress,
    DestinationAddress,
    SourcePort,
    DestinationPort,
    /// The CRLF that ends the line.
    LineEnd,
}

impl fmt::Display for V1Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            V1Field::Protocol => "\"PROXY\", one space, then TCP4, TCP6 or UNKNOWN",
            V1Field::SourceAddress => "a source address of the stated family followed by one space",
            V1Field::DestinationAddress => "a destination address of the stated family followed by one space",
            V1Field::SourcePort => "a source port (0..65535, no leading zeros) followed by one space",
            V1Field::DestinationPort => "a destination port (0..65535, no leading zeros) followed by CRLF",
            V1Field::LineEnd => "CRLF",
        })
    }
}

/// Why bytes are not an acceptable PROXY header. Each says what was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("expected a PROXY protocol {expected} header")]
    SignatureExpected { expected: Versions },
    #[error("PROXY protocol v1: expected {0}")]
    V1Expected(V1Field),
    #[error("PROXY protocol v1: no CRLF within the first {PROXY_V1_HEADER_BYTES_MAX} bytes")]
    V1TooLong,
    #[error("PROXY protocol v2: version {0}; expected 2")]
    V2Version(u8),
    #[error("PROXY protocol v2: command {0}; expected LOCAL (0) or PROXY (1)")]
    V2Command(u8),
    #[error(
        "PROXY protocol v2: family and transport {0:#04x}; expected TCP over IPv4 (0x11) or IPv6 (0x21), UNSPEC (0x00) or a UNIX stream (0x31)"
    )]
    V2Family(u8),
    #[error("PROXY protocol v2: {length} address bytes; the family needs at least {needed}")]
    V2AddressesShort { length: u16, needed: u16 },
    #[error("PROXY protocol v2: a {bytes}-byte header; at most {PROXY_V2_HEADER_BYTES_MAX} are accepted")]
    V2TooLarge { bytes: usize },
}

/// How `bytes` relate to `signature`: it begins with it (`Some(true)`), is a proper
/// prefix of it (`Some(false)`), or neither (`None`).
fn against(bytes: &[u8], signature: &[u8]) -> Option<bool> {
    let shared = bytes.len().min(signature.len());
    (bytes[..shared] == signature[..shared]).then_some(shared == signature.len())
}

/// Whether `bytes` begin with a PROXY header's signature, could still (a proper prefix of
/// one, or nothing yet), or cannot.
pub fn sniff(bytes: &[u8]) -> Sniff {
    match (against(bytes, V1_SIGNATURE), against(bytes, V2_SIGNATURE)) {
        (Some(true), _) => Sniff::Proxy(Version::V1),
        (_, Some(true)) => Sniff::Proxy(Version::V2),
        (Some(false), _) | (_, Some(false)) => Sniff::Undecided,
        (None, None) => Sniff::NotProxy,
    }
}

/// Parses the PROXY header at the start of `bytes` (everything received so far), if it
/// is of one of `versions`. Never reads past the header.
pub fn parse(bytes: &[u8], versions: Versions) -> Result<Parsed, ProxyError> {
    let signature_expected = ProxyError::SignatureExpected { expected: versions };
    match bytes.first() {
        None => Ok(Parsed::Incomplete),
        Some(b'P') if versions.allows(Version::V1) => parse_v1(bytes).map_err(|error| error.unwrap_or(signature_expected)),
        Some(b'\r') if versions.allows(Version::V2) => parse_v2(bytes).map_err(|error| error.unwrap_or(signature_expected)),
        Some(_) => Err(signature_expected),
    }
}

/// A byte cursor over a version 1 line; `Ok(None)` from a step means "need more bytes".
struct Line<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// A step's error: `None` for "this is no PROXY header at all" (the signature differs).
type Step<T> = Result<Option<T>, Option<ProxyError>>;

impl<'a> Line<'a> {
    /// The bytes up to the next `end` byte (consumed, not returned), each passing
    /// `allowed`, at most `max` of them; a field error otherwise.
    fn field(&mut self, allowed: fn(u8) -> bool, max: usize, ends: &[u8], field: V1Field) -> Step<(&'a [u8], u8)> {
        let start = self.at;
        for (index, &byte) in self.bytes[start..].iter().enumerate() {
            if ends.contains(&byte) {
                self.at = start + index + 1;
                return Ok(Some((&self.bytes[start..start + index], byte)));
            }
            if !allowed(byte) || index == max {
                return Err(Some(ProxyError::V1Expected(field)));
            }
        }
        Ok(None)
    }

    /// The LF after a field that ended at CR.
    fn line_feed(&mut self) -> Step<()> {
        match self.bytes.get(self.at) {
            None => Ok(None),
            Some(b'\n') => {
                self.at += 1;
                Ok(Some(()))
            }
            Some(_) => Err(Some(ProxyError::V1Expected(V1Field::LineEnd))),
        }
    }
}

/// Needs more bytes: return `Incomplete`.
macro_rules! ready {
    ($step:expr) => {
        match $step? {
            Some(value) => value,
            None => return Ok(None),
        }
    };
}

fn parse_v1(bytes: &[u8]) -> Result<Parsed, Option<ProxyError>> {
    let window = &bytes[..bytes.len().min(PROXY_V1_HEADER_BYTES_MAX)];
    match scan_v1(window)? {
        Some(parsed) => Ok(parsed),
        None if window.len() == PROXY_V1_HEADER_BYTES_MAX => Err(Some(ProxyError::V1TooLong)),
        None => Ok(Parsed::Incomplete),
    }
}

/// The protocol word of a version 1 line.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Tcp4,
    Tcp6,
    Unknown,
}

fn scan_v1(window: &[u8]) -> Step<Parsed> {
    match against(window, b"PROXY ") {
        None if window.len() >= V1_SIGNATURE.len() && window.starts_with(V1_SIGNATURE) => {
            return Err(Some(ProxyError::V1Expected(V1Field::Protocol)));
        }
        None => return Err(None),
        Some(false) => return Ok(None),
        Some(true) => {}
    }
    let mut line = Line { bytes: window, at: 6 };
    let word = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit();
    let (protocol, end) = ready!(line.field(word, V1_PROTOCOL_BYTES_MAX, b" \r", V1Field::Protocol));
    let family = match (protocol, end) {
        (b"TCP4", b' ') => Family::Tcp4,
        (b"TCP6", b' ') => Family::Tcp6,
        (b"UNKNOWN", _) => Family::Unknown,
        _ => return Err(Some(ProxyError::V1Expected(V1Field::Protocol))),
    };
    if family == Family::Unknown {
        // Whatever follows UNKNOWN up to the CRLF is to be ignored (spec §2.1).
        if end == b' ' {
            let text = |b: u8| b != b'\n';
            ready!(line.field(text, PROXY_V1_HEADER_BYTES_MAX, b"\r", V1Field::LineEnd));
        }
        ready!(line.line_feed());
        return Ok(Some(Parsed::Done { header_len: line.at, version: Version::V1, source: None, destination: None }));
    }
    let source = ready!(v1_address(&mut line, family, V1Field::SourceAddress));
    let destination = ready!(v1_address(&mut line, family, V1Field::DestinationAddress));
    let source_port = ready!(v1_port(&mut line, b' ', V1Field::SourcePort));
    let destination_port = ready!(v1_port(&mut line, b'\r', V1Field::DestinationPort));
    ready!(line.line_feed());
    Ok(Some(Parsed::Done {
        header_len: line.at,
        version: Version::V1,
        source: Some(SocketAddr::new(source, source_port)),
        destination: Some(SocketAddr::new(destination, destination_port)),
    }))
}

fn v1_address(line: &mut Line<'_>, family: Family, field: V1Field) -> Step<IpAddr> {
    let refused = Some(ProxyError::V1Expected(field));
    let text = if family == Family::Tcp4 {
        ready!(line.field(|b| b.is_ascii_digit() || b == b'.', V1_IPV4_TEXT_BYTES_MAX, b" ", field)).0
    } else {
        ready!(line.field(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.', V1_IPV6_TEXT_BYTES_MAX, b" ", field)).0
    };
    // The field holds ASCII only, so this never fails; std's parsers refuse leading zeros
    // in IPv4 numbers and zone ids.
    let text = std::str::from_utf8(text).map_err(|_| refused)?;
    let address = match family {
        Family::Tcp4 => text.parse::<Ipv4Addr>().map(IpAddr::V4),
        _ => text.parse::<Ipv6Addr>().map(IpAddr::V6),
    };
    address.map(Some).map_err(|_| refused)
}

fn v1_port(line: &mut Line<'_>, end: u8, field: V1Field) -> Step<u16> {
    let (digits, _) = ready!(line.field(|b| b.is_ascii_digit(), V1_PORT_DIGITS_MAX, &[end], field));
    let refused = Some(ProxyError::V1Expected(field));
    if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
        return Err(refused);
    }
    let value = digits.iter().fold(0u32, |value, digit| value * 10 + u32::from(digit - b'0'));
    u16::try_from(value).map(Some).map_err(|_| refused)
}

fn parse_v2(bytes: &[u8]) -> Result<Parsed, Option<ProxyError>> {
    match against(bytes, V2_SIGNATURE) {
        None => return Err(None),
        Some(false) => return Ok(Parsed::Incomplete),
        Some(true) => {}
    }
    let Some(&version_command) = bytes.get(12) else { return Ok(Parsed::Incomplete) };
    if version_command >> 4 != 2 {
        return Err(Some(ProxyError::V2Version(version_command >> 4)));
    }
    let local = match version_command & 0x0f {
        0 => true,
        1 => false,
        command => return Err(Some(ProxyError::V2Command(command))),
    };
    let Some(&family) = bytes.get(13) else { return Ok(Parsed::Incomplete) };
    // LOCAL: the family is to be ignored (spec §2.2), and so is the address block.
    let needed = match (local, family) {
        (true, _) | (false, 0x00) => 0,
        (false, 0x11) => V2_INET_BYTES,
        (false, 0x21) => V2_INET6_BYTES,
        (false, 0x31) => V2_UNIX_BYTES,
        (false, other) => return Err(Some(ProxyError::V2Family(other))),
    };
    let Some(length) = bytes.get(14..16) else { return Ok(Parsed::Incomplete) };
    let length = u16::from_be_bytes([length[0], length[1]]);
    let header_len = V2_FIXED_BYTES + usize::from(length);
    if header_len > PROXY_V2_HEADER_BYTES_MAX {
        return Err(Some(ProxyError::V2TooLarge { bytes: header_len }));
    }
    if length < needed {
        return Err(Some(ProxyError::V2AddressesShort { length, needed }));
    }
    let Some(block) = bytes.get(V2_FIXED_BYTES..header_len) else { return Ok(Parsed::Incomplete) };
    let (source, destination) = match (local, family) {
        (false, 0x11) => {
            let ip = |at: usize| IpAddr::from(<[u8; 4]>::try_from(&block[at..at + 4]).expect("4 bytes"));
            (SocketAddr::new(ip(0), port(block, 8)), SocketAddr::new(ip(4), port(block, 10)))
        }
        (false, 0x21) => {
            let ip = |at: usize| IpAddr::from(<[u8; 16]>::try_from(&block[at..at + 16]).expect("16 bytes"));
            (SocketAddr::new(ip(0), port(block, 32)), SocketAddr::new(ip(16), port(block, 34)))
        }
        _ => return Ok(Parsed::Done { header_len, version: Version::V2, source: None, destination: None }),
    };
    Ok(Parsed::Done { header_len, version: Version::V2, source: Some(source), destination: Some(destination) })
}

fn port(block: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([block[at], block[at + 1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    const HTTP: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

    fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&(block.len() as u16).to_be_bytes());
        out.extend_from_slice(block);
        out
    }

    fn v2_tcp4(source: [u8; 4], destination: [u8; 4], ports: (u16, u16), tlvs: &[u8]) -> Vec<u8> {
        let block = [&source[..], &destination, &ports.0.to_be_bytes(), &ports.1.to_be_bytes(), tlvs].concat();
        v2(1, 0x11, &block)
    }

    fn v2_tcp6(source: Ipv6Addr, destination: Ipv6Addr, ports: (u16, u16), tlvs: &[u8]) -> Vec<u8> {
        let block = [&source.octets()[..], &destination.octets(), &ports.0.to_be_bytes(), &ports.1.to_be_bytes(), tlvs].concat();
        v2(1, 0x21, &block)
    }

    fn addr(text: &str) -> Option<SocketAddr> {
        Some(text.parse().expect("socket address"))
    }

    fn done(header_len: usize, version: Version, source: Option<SocketAddr>, destination: Option<SocketAddr>) -> Parsed {
        Parsed::Done { header_len, version, source, destination }
    }

    /// Every valid header: parsed whole with HTTP after it, Incomplete for every shorter
    /// prefix (fed a byte at a time), and the HTTP bytes are not consumed.
    fn check_valid(header: &[u8], versions: Versions, expected: Parsed) {
        let Parsed::Done { header_len, .. } = expected else { panic!("expected must be Done") };
        assert_eq!(header_len, header.len(), "{:?}", String::from_utf8_lossy(header));
        let mut stream = header.to_vec();
        stream.extend_from_slice(HTTP);
        for end in 0..header.len() {
            assert_eq!(parse(&stream[..end], versions), Ok(Parsed::Incomplete), "prefix of {end} bytes of {header:?}");
        }
        for end in header.len()..=stream.len() {
            assert_eq!(parse(&stream[..end], versions), Ok(expected), "{end} bytes of {header:?}");
        }
    }

    #[test]
    fn v1_tcp4_tcp6_and_unknown_parse_and_stop_at_the_crlf() {
        let tcp4 = b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 8080\r\n";
        check_valid(tcp4, Versions::V1, done(tcp4.len(), Version::V1, addr("192.0.2.7:51234"), addr("10.0.0.1:8080")));
        check_valid(tcp4, Versions::Any, done(tcp4.len(), Version::V1, addr("192.0.2.7:51234"), addr("10.0.0.1:8080")));
        let tcp6 = b"PROXY TCP6 2001:db8::7 2001:DB8:0:0:0:0:0:1 0 65535\r\n";
        check_valid(tcp6, Versions::V1, done(tcp6.len(), Version::V1, addr("[2001:db8::7]:0"), addr("[2001:db8::1]:65535")));
        let mapped = b"PROXY TCP6 ::ffff:192.0.2.7 :: 1 2\r\n";
        check_valid(mapped, Versions::Any, done(mapped.len(), Version::V1, addr("[::ffff:192.0.2.7]:1"), addr("[::]:2")));
        let unknown = b"PROXY UNKNOWN\r\n";
        check_valid(unknown, Versions::V1, done(unknown.len(), Version::V1, None, None));
        let unknown_long = b"PROXY UNKNOWN ffff:f...:ffff ffff:f...:ffff 65535 65535\r\n";
        check_valid(unknown_long, Versions::Any, done(unknown_long.len(), Version::V1, None, None));
        // The longest TCP6 line the spec allows is exactly 104 bytes; UNKNOWN can reach 107.
        let mut longest = b"PROXY UNKNOWN ".to_vec();
        longest.resize(PROXY_V1_HEADER_BYTES_MAX - 2, b'x');
        longest.extend_from_slice(b"\r\n");
        check_valid(&longest, Versions::V1, done(PROXY_V1_HEADER_BYTES_MAX, Version::V1, None, None));
    }

    #[test]
    fn v2_tcp4_tcp6_local_unspec_and_unix_parse_and_skip_tlvs() {
        let tcp4 = v2_tcp4([192, 0, 2, 7], [10, 0, 0, 1], (51234, 8080), &[]);
        check_valid(&tcp4, Versions::V2, done(28, Version::V2, addr("192.0.2.7:51234"), addr("10.0.0.1:8080")));
        let source: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let destination: Ipv6Addr = "2001:db8::1".parse().unwrap();
        // An AWS-style VPC endpoint TLV (type 0xEA) and a NOOP: skipped.
        let tlvs = [&[0xea, 0x00, 0x05, 0x01][..], b"vpce", &[0x04, 0x00, 0x02, 0, 0]].concat();
        let tcp6 = v2_tcp6(source, destination, (443, 8443), &tlvs);
        let expected = done(tcp6.len(), Version::V2, addr("[2001:db8::7]:443"), addr("[2001:db8::1]:8443"));
        check_valid(&tcp6, Versions::Any, expected);
        // LOCAL: the family and whatever block there is are ignored.
        for local in [v2(0, 0x00, &[]), v2(0, 0x11, &[0; 12]), v2(0, 0x7f, &[1, 2, 3])] {
            check_valid(&local, Versions::V2, done(local.len(), Version::V2, None, None));
        }
        let unspec = v2(1, 0x00, &[9; 5]);
        check_valid(&unspec, Versions::Any, done(unspec.len(), Version::V2, None, None));
        let unix = v2(1, 0x31, &[0; 216]);
        check_valid(&unix, Versions::V2, done(unix.len(), Version::V2, None, None));
        let largest = v2(0, 0x00, &vec![0; PROXY_V2_HEADER_BYTES_MAX - 16]);
        check_valid(&largest, Versions::V2, done(PROXY_V2_HEADER_BYTES_MAX, Version::V2, None, None));
    }

    /// Every malformed input, and the error it gets; also checks that every prefix of it
    /// is Incomplete or that same error (errors are found online, left to right).
    #[test]
    #[expect(clippy::too_many_lines, reason = "one table of malformed inputs reads best whole")]
    fn malformed_headers_name_what_was_expected() {
        use ProxyError::*;
        use V1Field::*;
        let any = SignatureExpected { expected: Versions::Any };
        let cases: Vec<(Vec<u8>, Versions, ProxyError)> = vec![
            (b"GET / HTTP/1.1\r\n\r\n".to_vec(), Versions::Any, any),
            (b"POST /v1/events HTTP/1.1\r\n".to_vec(), Versions::V1, SignatureExpected { expected: Versions::V1 }),
            (b"PROXI TCP4".to_vec(), Versions::Any, any),
            (b"\r\n\r\n\0\r\nQUIX\n".to_vec(), Versions::Any, any),
            (b"\r\nGET / HTTP/1.1\r\n".to_vec(), Versions::V2, SignatureExpected { expected: Versions::V2 }),
            (v2(1, 0x00, &[]), Versions::V1, SignatureExpected { expected: Versions::V1 }),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(), Versions::V2, SignatureExpected { expected: Versions::V2 }),
            (b"\x16\x03\x01\x02\x00".to_vec(), Versions::Any, any),
            // v1 framing
            (b"PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(), Versions::Any, V1Expected(Protocol)),
            (b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(), Versions::Any, V1Expected(Protocol)),
            (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(), Versions::Any, V1Expected(Protocol)),
            (b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(), Versions::Any, V1Expected(Protocol)),
            (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(), Versions::Any, V1Expected(Protocol)),
            (b"PROXY TCP4\r\n".to_vec(), Versions::Any, V1Expected(Protocol)),
            (b"PROXY UNKNOWNX\r\n".to_vec(), Versions::Any, V1Expected(Protocol)),
            (b"PROXY UNKNOWN\n".to_vec(), Versions::Any, V1Expected(Protocol)),
            (b"PROXY UNKNOWN\rX".to_vec(), Versions::Any, V1Expected(LineEnd)),
            (b"PROXY UNKNOWN a\nb\r\n".to_vec(), Versions::Any, V1Expected(LineEnd)),
            (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n".to_vec(), Versions::Any, V1Expected(DestinationAddress)),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n".to_vec(), Versions::Any, V1Expected(DestinationPort)),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX".to_vec(), Versions::Any, V1Expected(LineEnd)),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n".to_vec(), Versions::Any, V1Expected(DestinationPort)),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n".to_vec(), Versions::Any, V1Expected(SourcePort)),
            (b"PROXY TCP4 1.2.3.4\r\n".to_vec(), Versions::Any, V1Expected(SourceAddress)),
            (b"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n".to_vec(), Versions::Any, V1Expected(SourceAddress)),
            // v1 addresses: family, leading zeros, range, shape
            (b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n".to_vec(), Versions::Any, V1Expected(SourceAddress)),
            (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n".to_vec(), Versions::Any, V1Expected(SourceAddress)),
            (b"PROXY TCP6 ::1 5.6.7.8 1 2\r\n".to_vec(), Versions::Any, V1Expected(DestinationAddress)),
            (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n".to_vec(), Versions::Any, V1Expected(SourceAddress)),
            (b"PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n".to_vec(), Versions::Any, V1Expected(SourceAddress)),
            (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n".to_vec(), Versions::Any, V1Expected(SourceAddress)),
            (b"PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n".to_vec(), Versions::Any, V1Expected(SourceAddress)),
            (b"PROXY TCP4 1111.2222.3333.4444 5.6.7.8 1 2\r\n".to_vec(), Versions::Any, V1Expected(SourceAddress)),
            (b"PROXY TCP4 1.2.3.4 5.6.7.08 1 2\r\n".to_vec(), Versions::Any, V1Expected(DestinationAddress)),
            (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n".to_vec(), Versions::Any, V1Expected(SourceAddress)),
            (b"PROXY TCP6 1::2::3 ::1 1 2\r\n".to_vec(), Versions::Any, V1Expected(SourceAddress)),
            (b"PROXY TCP6 ::1 [::1] 1 2\r\n".to_vec(), Versions::Any, V1Expected(DestinationAddress)),
            // v1 ports: leading zeros, range, sign, length
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n".to_vec(), Versions::Any, V1Expected(SourcePort)),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n".to_vec(), Versions::Any, V1Expected(DestinationPort)),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n".to_vec(), Versions::Any, V1Expected(SourcePort)),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n".to_vec(), Versions::Any, V1Expected(DestinationPort)),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n".to_vec(), Versions::Any, V1Expected(SourcePort)),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n".to_vec(), Versions::Any, V1Expected(SourcePort)),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 +2\r\n".to_vec(), Versions::Any, V1Expected(DestinationPort)),
            // v2
            ([&V2_SIGNATURE[..], &[0x11, 0x11, 0, 12]].concat(), Versions::Any, V2Version(1)),
            ([&V2_SIGNATURE[..], &[0x31, 0x11, 0, 12]].concat(), Versions::V2, V2Version(3)),
            ([&V2_SIGNATURE[..], &[0x22, 0x11, 0, 12]].concat(), Versions::Any, V2Command(2)),
            ([&V2_SIGNATURE[..], &[0x2f, 0x11, 0, 12]].concat(), Versions::Any, V2Command(15)),
            (v2(1, 0x12, &[0; 12]), Versions::Any, V2Family(0x12)),
            (v2(1, 0x22, &[0; 36]), Versions::Any, V2Family(0x22)),
            (v2(1, 0x32, &[0; 216]), Versions::Any, V2Family(0x32)),
            (v2(1, 0x10, &[0; 12]), Versions::Any, V2Family(0x10)),
            (v2(1, 0x41, &[0; 12]), Versions::Any, V2Family(0x41)),
            (v2(1, 0x11, &[0; 11]), Versions::Any, V2AddressesShort { length: 11, needed: 12 }),
            (v2(1, 0x21, &[0; 12]), Versions::Any, V2AddressesShort { length: 12, needed: 36 }),
            (v2(1, 0x31, &[0; 36]), Versions::Any, V2AddressesShort { length: 36, needed: 216 }),
            (
                [&V2_SIGNATURE[..], &[0x20, 0x00], &((PROXY_V2_HEADER_BYTES_MAX - 15) as u16).to_be_bytes()].concat(),
                Versions::Any,
                V2TooLarge { bytes: PROXY_V2_HEADER_BYTES_MAX + 1 },
            ),
            ([&V2_SIGNATURE[..], &[0x21, 0x11, 0xff, 0xff]].concat(), Versions::V2, V2TooLarge { bytes: 16 + 65535 }),
        ];
        for (input, versions, error) in cases {
            assert_eq!(parse(&input, versions), Err(error), "{:?}", String::from_utf8_lossy(&input));
            for end in 0..input.len() {
                let early = parse(&input[..end], versions);
                assert!(early == Ok(Parsed::Incomplete) || early == Err(error), "{end} bytes of {input:?}: {early:?}");
            }
            assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn a_v1_line_without_crlf_in_107_bytes_is_too_long() {
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(PROXY_V1_HEADER_BYTES_MAX, b'x');
        assert_eq!(parse(&line[..PROXY_V1_HEADER_BYTES_MAX - 1], Versions::V1), Ok(Parsed::Incomplete));
        assert_eq!(parse(&line, Versions::V1), Err(ProxyError::V1TooLong));
        line.extend_from_slice(b"\r\n");
        assert_eq!(parse(&line, Versions::V1), Err(ProxyError::V1TooLong), "the CRLF at 108..110 is too late");
        // A CR as the 107th byte is not enough either: its LF would be the 108th.
        let mut late = b"PROXY UNKNOWN ".to_vec();
        late.resize(PROXY_V1_HEADER_BYTES_MAX - 1, b'x');
        late.extend_from_slice(b"\r\n");
        assert_eq!(parse(&late, Versions::V1), Err(ProxyError::V1TooLong));
    }

    #[test]
    fn sniff_tells_signatures_their_prefixes_and_everything_else_apart() {
        assert_eq!(sniff(b""), Sniff::Undecided);
        assert_eq!(sniff(b"P"), Sniff::Undecided, "could be PROXY or POST");
        assert_eq!(sniff(b"PROX"), Sniff::Undecided);
        assert_eq!(sniff(b"PROXY"), Sniff::Proxy(Version::V1));
        assert_eq!(sniff(b"PROXY TCP4 garbage"), Sniff::Proxy(Version::V1));
        assert_eq!(sniff(b"PO"), Sniff::NotProxy);
        assert_eq!(sniff(b"POST /v1/events HTTP/1.1\r\n"), Sniff::NotProxy);
        assert_eq!(sniff(b"GET"), Sniff::NotProxy);
        assert_eq!(sniff(b"\r\n"), Sniff::Undecided, "could be the v2 signature");
        assert_eq!(sniff(b"\r\nGET / HTTP/1.1"), Sniff::NotProxy);
        assert_eq!(sniff(&V2_SIGNATURE[..11]), Sniff::Undecided);
        assert_eq!(sniff(V2_SIGNATURE), Sniff::Proxy(Version::V2));
        assert_eq!(sniff(&v2(0, 0, &[])), Sniff::Proxy(Version::V2));
        assert_eq!(sniff(b"\x16\x03\x01"), Sniff::NotProxy, "a TLS ClientHello");
    }

    #[test]
    fn empty_input_is_incomplete_for_every_listener() {
        for versions in [Versions::V1, Versions::V2, Versions::Any] {
            assert_eq!(parse(b"", versions), Ok(Parsed::Incomplete));
        }
    }
}
