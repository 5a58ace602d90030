//! `proxy::parse` and `sniff` over arbitrary bytes; the first byte picks the
//! listener's versions (v1, v2, any). Checks: no panic; the parser is online (every
//! prefix is `Incomplete` or the same answer); a header is exactly its `header_len` bytes
//! (shorter is `Incomplete`, what follows is not read), begins with its signature, fits
//! its bound, and says what a reference reading of the same bytes says; the versions a
//! listener accepts only narrow what `Any` accepts.
#![no_main]

use std::net::{IpAddr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use sluice::constants::{PROXY_V1_HEADER_BYTES_MAX, PROXY_V2_HEADER_BYTES_MAX};
use sluice::net::proxy::{self, Parsed, ProxyError, Sniff, Version, Versions};

/// The v1 line a header with these addresses reads as; std's parsers must give the same
/// addresses back from it, and for TCP4 (one canonical text) it must be the very bytes.
fn check_v1(header: &[u8], source: SocketAddr, destination: SocketAddr) {
    let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    let line = format!("PROXY {family} {} {} {} {}\r\n", source.ip(), destination.ip(), source.port(), destination.port());
    if family == "TCP4" {
        assert_eq!(line.as_bytes(), header);
    }
    let words: Vec<&[u8]> = header[..header.len() - 2].split(|&b| b == b' ').collect();
    assert_eq!(words.len(), 6, "{header:?}");
    let ip = |word: &[u8]| std::str::from_utf8(word).ok()?.parse::<IpAddr>().ok();
    assert_eq!((ip(words[2]), ip(words[3])), (Some(source.ip()), Some(destination.ip())));
    let port = |word: &[u8]| std::str::from_utf8(word).ok()?.parse::<u16>().ok();
    assert_eq!((port(words[4]), port(words[5])), (Some(source.port()), Some(destination.port())));
}

/// The v2 address block these addresses encode to must be the header's.
fn check_v2(header: &[u8], source: SocketAddr, destination: SocketAddr) {
    let mut block = Vec::new();
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => [s.octets(), d.octets()].iter().for_each(|o| block.extend_from_slice(o)),
        (IpAddr::V6(s), IpAddr::V6(d)) => [s.octets(), d.octets()].iter().for_each(|o| block.extend_from_slice(o)),
        _ => panic!("mixed families {source} {destination}"),
    }
    block.extend_from_slice(&source.port().to_be_bytes());
    block.extend_from_slice(&destination.port().to_be_bytes());
    assert_eq!(header[12] & 0x0f, 1, "addresses only with PROXY");
    assert_eq!(header[13], if source.is_ipv4() { 0x11 } else { 0x21 });
    assert_eq!(&header[16..16 + block.len()], &block[..]);
}

fn check_done(
    input: &[u8],
    versions: Versions,
    header_len: usize,
    version: Version,
    source: Option<SocketAddr>,
    destination: Option<SocketAddr>,
) {
    let header = &input[..header_len];
    assert!(versions.allows(version));
    assert_eq!(proxy::sniff(input), Sniff::Proxy(version));
    assert_eq!(proxy::parse(&input[..header_len - 1], versions), Ok(Parsed::Incomplete));
    match version {
        Version::V1 => {
            assert!(header_len <= PROXY_V1_HEADER_BYTES_MAX && header.ends_with(b"\r\n") && header.starts_with(b"PROXY "));
            assert!(!header[..header_len - 2].contains(&b'\r') && !header[..header_len - 2].contains(&b'\n'));
        }
        Version::V2 => {
            assert!(header_len <= PROXY_V2_HEADER_BYTES_MAX && header.starts_with(proxy::V2_SIGNATURE));
            assert_eq!(header_len, 16 + usize::from(u16::from_be_bytes([header[14], header[15]])));
            assert_eq!(header[12] >> 4, 2);
        }
    }
    match (source, destination) {
        (None, None) => {}
        (Some(source), Some(destination)) => {
            assert_eq!(source.is_ipv4(), destination.is_ipv4());
            if version == Version::V1 { check_v1(header, source, destination) } else { check_v2(header, source, destination) }
        }
        other => panic!("one address without the other: {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else { return };
    let versions = [Versions::V1, Versions::V2, Versions::Any][usize::from(seed % 3)];
    let whole = proxy::parse(input, versions);
    // Online: the header is at most 4 KiB, so checking every prefix up to a little past
    // it covers every byte the parser may look at.
    for end in 0..input.len().min(PROXY_V2_HEADER_BYTES_MAX + 2) {
        let early = proxy::parse(&input[..end], versions);
        assert!(early == Ok(Parsed::Incomplete) || early == whole, "{end} bytes: {early:?}, whole: {whole:?}");
    }
    match whole {
        Ok(Parsed::Done { header_len, version, source, destination }) => {
            check_done(input, versions, header_len, version, source, destination);
            let any = proxy::parse(input, Versions::Any);
            assert_eq!(any, whole, "Any accepts whatever one version accepts");
        }
        Ok(Parsed::Incomplete) => assert_ne!(proxy::sniff(input), Sniff::NotProxy),
        Err(ProxyError::SignatureExpected { expected }) => {
            assert_eq!(expected, versions);
            if versions == Versions::Any {
                assert_eq!(proxy::sniff(input), Sniff::NotProxy);
            }
        }
        Err(error) => {
            assert_ne!(proxy::sniff(input), Sniff::NotProxy, "{error}");
            assert!(!error.to_string().is_empty());
        }
    }
});
