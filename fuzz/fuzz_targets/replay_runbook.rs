//! The signed replay runbook's strict parser (`replay::runbook::Runbook::parse`: size
//! bound, duplicate keys, unknown fields, field bounds), then `verify` with no known
//! signers. Never panics; nothing verifies without a known signer; a runbook that parses
//! writes a document that parses to the same runbook.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::constants::RUNBOOK_BYTES_MAX;
use sluice::replay::runbook::Runbook;

fuzz_target!(|data: &[u8]| {
    let Ok(runbook) = Runbook::parse(data) else { return };
    assert!(runbook.verify(&[], runbook.created_at_ms).is_err());
    let json = runbook.to_json();
    // Pretty-printing a compact document can push it past the size bound.
    if json.len() <= RUNBOOK_BYTES_MAX {
        assert_eq!(Runbook::parse(&json).ok().as_ref(), Some(&runbook));
    }
});
