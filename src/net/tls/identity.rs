//! The identity of a verified client certificate: its subject common name, else its
//! first DNS or URI subject alternative name. rustls has verified the chain before this
//! runs; this only reads names out of the leaf.

use x509_parser::extensions::GeneralName;

use crate::constants::TLS_IDENTITY_BYTES_MAX;

/// The identity `cert_der` (a DER X.509 certificate) names, or `None` when it names none
/// that is 1..=`TLS_IDENTITY_BYTES_MAX` bytes without control characters.
pub fn client_identity(cert_der: &[u8]) -> Option<Box<str>> {
    let (_, certificate) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let common_name = certificate.subject().iter_common_name().filter_map(|name| name.as_str().ok()).find(|name| usable(name));
    if let Some(name) = common_name {
        return Some(name.into());
    }
    let names = certificate.subject_alternative_name().ok()??;
    names.value.general_names.iter().find_map(|name| match name {
        GeneralName::DNSName(text) | GeneralName::URI(text) if usable(text) => Some((*text).into()),
        _ => None,
    })
}

fn usable(name: &str) -> bool {
    (1..=TLS_IDENTITY_BYTES_MAX).contains(&name.len()) && !name.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    use super::*;

    fn certificate(common_name: Option<&str>, sans: Vec<SanType>) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::new()).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(name) = common_name {
            params.distinguished_name.push(DnType::CommonName, name);
        }
        params.distinguished_name.push(DnType::OrganizationName, "sluice tests");
        params.subject_alt_names = sans;
        params.self_signed(&KeyPair::generate().expect("key")).expect("certificate").der().to_vec()
    }

    fn dns(name: &str) -> SanType {
        SanType::DnsName(name.try_into().expect("DNS name"))
    }

    fn uri(text: &str) -> SanType {
        SanType::URI(text.try_into().expect("URI"))
    }

    #[test]
    fn common_name_first_then_the_first_dns_or_uri_name() {
        let both = certificate(Some("partner-7"), vec![dns("p7.example")]);
        assert_eq!(client_identity(&both).as_deref(), Some("partner-7"));
        let dns_only = certificate(None, vec![dns("p8.example"), uri("spiffe://example/p8")]);
        assert_eq!(client_identity(&dns_only).as_deref(), Some("p8.example"));
        let uri_only = certificate(None, vec![SanType::IpAddress([127, 0, 0, 1].into()), uri("spiffe://example/p9")]);
        assert_eq!(client_identity(&uri_only).as_deref(), Some("spiffe://example/p9"));
        assert_eq!(client_identity(&certificate(None, Vec::new())), None, "no name at all");
    }

    #[test]
    fn overlong_names_are_skipped_not_truncated() {
        let long = "a".repeat(TLS_IDENTITY_BYTES_MAX + 1);
        let with_fallback = certificate(Some(&long), vec![dns("short.example")]);
        assert_eq!(client_identity(&with_fallback).as_deref(), Some("short.example"));
        assert_eq!(client_identity(&certificate(Some(&long), Vec::new())), None);
        assert_eq!(client_identity(b"not a certificate"), None);
    }
}
