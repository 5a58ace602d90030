//! The dead-letter record codec (`dlq::decode` / `encode`), which `GET /admin/dlq` and
//! `sluice dlq` run over the files the server wrote. Arbitrary bytes: `decode` never
//! panics, a record's parts lie inside the bytes it used, `used <= input.len()`, and
//! encoding the decoded record gives back exactly those bytes. Then a record built from
//! the input (`common::parts`, which can stretch a part past the limits; the headers part
//! is split into lines and at the first `:`): `encode` refuses it, appending nothing,
//! exactly when a part exceeds its limit; otherwise `decode` reads it back whole.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use sluice::constants::{BODY_BYTES_MAX_CEILING, DLQ_DETAIL_BYTES_MAX, DLQ_HEADERS_BYTES_MAX, DLQ_HEADERS_COUNT_MAX, DLQ_REASON_BYTES_MAX};
use sluice::sidelog::dlq::{self, DeadLetter, Header, Headers, Transport};
use sluice::sidelog::frame::FrameError;

fuzz_target!(|data: &[u8]| {
    if let Ok((letter, used)) = dlq::decode(data) {
        let identity = letter.transport.tls_identity.unwrap_or_default();
        let mut parts = vec![letter.reason.as_bytes(), letter.detail.as_bytes(), letter.partner.as_bytes(), letter.kid.as_bytes()];
        parts.extend([letter.topic, letter.event_type, letter.event_id, letter.path, identity.as_bytes(), letter.body]);
        parts.extend(letter.headers.iter().flat_map(|(name, value)| [name, value]));
        common::check_decoded(data, used, &parts, |out| dlq::encode(&letter, out));
    }

    let [reason, detail, partner, kid, identity, topic, event_type, event_id, path, headers, body, numbers] =
        <[Vec<u8>; 12]>::try_from(common::parts(data, 12)).expect("twelve parts");
    let lossy = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let (reason, detail, partner, kid, identity) = (lossy(&reason), lossy(&detail), lossy(&partner), lossy(&kid), lossy(&identity));
    let pairs: Vec<Header<'_>> = if headers.is_empty() {
        Vec::new()
    } else {
        headers.split(|&b| b == b'\n').map(|line| line.split_at(line.iter().position(|&b| b == b':').unwrap_or(line.len()))).collect()
    };
    // The number bytes after the two times and the line say how the request came.
    let shape = numbers.get(20).copied().unwrap_or(0);
    let client_ip = match (shape >> 1) & 3 {
        1 => Some(std::net::IpAddr::from(common::le_bytes::<4>(&numbers, 21))),
        2 => Some(std::net::IpAddr::from(common::le_bytes::<16>(&numbers, 21))),
        _ => None,
    };
    let letter = DeadLetter {
        received_ms: i64::from_le_bytes(common::le_bytes(&numbers, 0)),
        id: u64::from_le_bytes(common::le_bytes(&numbers, 8)),
        line: u32::from_le_bytes(common::le_bytes(&numbers, 16)),
        reason: &reason,
        detail: &detail,
        partner: &partner,
        kid: &kid,
        topic: &topic,
        event_type: &event_type,
        event_id: &event_id,
        path: &path,
        headers: Headers::new(&pairs),
        body: &body,
        // `Some("")` reads back as `None`: only a non-empty identity is `Some`.
        transport: Transport { tls_identity: (shape & 1 == 1 && !identity.is_empty()).then_some(&*identity), client_ip },
    };
    let texts = [reason.as_bytes(), detail.as_bytes(), partner.as_bytes(), kid.as_bytes(), &topic, &event_type, &event_id, &path];
    let headers_bytes: usize = pairs.iter().map(|(name, value)| name.len() + value.len()).sum();
    let too_large = reason.len() > DLQ_REASON_BYTES_MAX
        || detail.len() > DLQ_DETAIL_BYTES_MAX
        || texts.iter().any(|text| text.len() > usize::from(u16::MAX))
        || letter.transport.tls_identity.is_some_and(|identity| identity.len() > usize::from(u16::MAX))
        || pairs.len() > DLQ_HEADERS_COUNT_MAX
        || headers_bytes > DLQ_HEADERS_BYTES_MAX
        || body.len() > BODY_BYTES_MAX_CEILING;
    common::check_encoded(
        too_large.then_some(FrameError::TooLarge),
        |out| dlq::encode(&letter, out),
        |bytes| {
            assert_eq!(dlq::decode(bytes), Ok((letter, bytes.len())));
        },
    );
});
