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
