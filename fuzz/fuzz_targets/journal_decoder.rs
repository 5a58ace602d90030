//! The request-id journal's record codec (`journal::decode` / `encode`), which
//! start-up runs over every journal file. Arbitrary bytes: `decode` never panics, a
//! record's parts lie inside the bytes it used, `used <= input.len()`, and encoding the
//! decoded record gives back exactly those bytes. Then a record built from the input
//! (`common::parts`, which can stretch a part past the length fields): `encode` refuses
//! it, appending nothing, exactly when the partner or id exceeds its `u16` length field
//! or the payload `JOURNAL_PAYLOAD_BYTES_MAX`; otherwise `decode` reads it back whole.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use sluice::sidelog::journal::{self, JOURNAL_PAYLOAD_BYTES_MAX, JournalError, JournalRecord};

/// Expiry, status, digest, two `u16` lengths and a `u32` length (src/sidelog/journal.rs).
const PAYLOAD_FIXED_BYTES: usize = 8 + 2 + 16 + 2 * 2 + 4;

fuzz_target!(|data: &[u8]| {
    if let Ok((record, used)) = journal::decode(data) {
        let parts = [record.partner.as_bytes(), record.id, record.body];
        common::check_decoded(data, used, &parts, |out| journal::encode(&record, out));
    }

    let [partner, id, body, numbers] = <[Vec<u8>; 4]>::try_from(common::parts(data, 4)).expect("four parts");
    let partner = String::from_utf8_lossy(&partner);
    let record = JournalRecord {
        expires_ms: i64::from_le_bytes(common::le_bytes(&numbers, 0)),
        status: u16::from_le_bytes(common::le_bytes(&numbers, 8)),
        digest: common::le_bytes(&numbers, 10),
        partner: &partner,
        id: &id,
        body: &body,
    };
    let payload_len = PAYLOAD_FIXED_BYTES + record.partner.len() + record.id.len() + record.body.len();
    let too_long = |part: usize| part > usize::from(u16::MAX);
    let too_large = too_long(record.partner.len()) || too_long(record.id.len()) || payload_len > JOURNAL_PAYLOAD_BYTES_MAX;
    let refused = too_large.then_some(JournalError::TooLarge);
    common::check_encoded(
        refused,
        |out| journal::encode(&record, out),
        |bytes| {
            assert_eq!(journal::decode(bytes), Ok((record.clone(), bytes.len())));
        },
    );
});
