//! The quarantine record codec (`quarantine::decode` / `encode`), which `sluice
//! quarantine list|replay` runs over the files the server wrote. Arbitrary bytes:
//! `decode` never panics, a record's parts lie inside the bytes it used, `used <=
//! input.len()`, and encoding the decoded record gives back exactly those bytes. Then a
//! record built from the input (`common::parts`, which can stretch a part past the
//! length fields): `encode` refuses it, appending nothing, exactly when a part exceeds
//! its `u16` length field or the payload `QUARANTINE_PAYLOAD_BYTES_MAX`; otherwise
//! `decode` reads it back whole.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use sluice::sidelog::quarantine::{self, QUARANTINE_PAYLOAD_BYTES_MAX, QuarantineError, Quarantined, Transport};

/// Two timestamps, four `u16` lengths and a `u32` length (the layout in src/sidelog/quarantine.rs).
const PAYLOAD_FIXED_BYTES: usize = 8 + 8 + 4 * 2 + 4;

fuzz_target!(|data: &[u8]| {
    if let Ok((record, used)) = quarantine::decode(data) {
        let identity = record.transport.and_then(|transport| transport.tls_identity).unwrap_or_default();
        let parts = [record.partner.as_bytes(), record.kid.as_bytes(), record.path, record.content_type, record.body, identity.as_bytes()];
        common::check_decoded(data, used, &parts, |out| quarantine::encode(&record, out));
    }

    let [partner, kid, path, content_type, body, numbers, identity] = <[Vec<u8>; 7]>::try_from(common::parts(data, 7)).expect("seven parts");
    let (partner, kid, identity) = (String::from_utf8_lossy(&partner), String::from_utf8_lossy(&kid), String::from_utf8_lossy(&identity));
    // The last number byte says whether the record has a transport block, and its shape.
    let shape = numbers.get(16).copied().unwrap_or(0);
    let transport = (shape & 1 == 1).then(|| Transport {
        tls_identity: (shape & 2 == 2).then_some(&*identity),
        client_ip: (shape & 4 == 4).then(|| std::net::IpAddr::from(common::le_bytes::<4>(&numbers, 17))),
    });
    let record = Quarantined {
        received_ms: i64::from_le_bytes(common::le_bytes(&numbers, 0)),
        timestamp_secs: i64::from_le_bytes(common::le_bytes(&numbers, 8)),
        partner: &partner,
        kid: &kid,
        path: &path,
        content_type: &content_type,
        body: &body,
        transport,
    };
    let identity_bytes = transport.and_then(|transport| transport.tls_identity).unwrap_or_default().len();
    let ip_bytes = if transport.and_then(|transport| transport.client_ip).is_some() { 4 } else { 0 };
    let transport_bytes = if transport.is_some() { 3 + identity_bytes + ip_bytes } else { 0 };
    let variable = [record.partner.as_bytes(), record.kid.as_bytes(), record.path, record.content_type];
    let payload_len = PAYLOAD_FIXED_BYTES + variable.iter().map(|part| part.len()).sum::<usize>() + record.body.len() + transport_bytes;
    let too_large = variable.iter().any(|part| part.len() > usize::from(u16::MAX))
        || identity_bytes > usize::from(u16::MAX)
        || payload_len > QUARANTINE_PAYLOAD_BYTES_MAX;
    let refused = too_large.then_some(QuarantineError::TooLarge);
    common::check_encoded(
        refused,
        |out| quarantine::encode(&record, out),
        |bytes| {
            assert_eq!(quarantine::decode(bytes), Ok((record.clone(), bytes.len())));
        },
    );
});
