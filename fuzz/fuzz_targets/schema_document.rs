//! What the schema registry takes from an operator and what the shards then run: an
//! arbitrary document as a schema (`schema::registry::check_document`: bounds, local
//! references only, linear-time patterns, then compilation), and every document that is
//! accepted compiled and run against the input itself as an event, and against a
//! second schema for compatibility (`schema::compat::check`, every mode). The first byte
//! splits the input into the two schemas. Never panics; the compatibility answer is
//! bounded, and a schema is always compatible with itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::schema::compat::{self, Mode};
use sluice::schema::registry::check_document;

const MODES: [Mode; 7] = [Mode::Backward, Mode::Forward, Mode::Full, Mode::None, Mode::BackwardTransitive, Mode::ForwardTransitive, Mode::FullTransitive];

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let at = (usize::from(split) * rest.len() / 256).min(rest.len());
    let (first, second) = rest.split_at(at);
    let (Ok(first), Ok(second)) = (serde_json::from_slice::<serde_json::Value>(first), serde_json::from_slice::<serde_json::Value>(second)) else {
        return;
    };
    if check_document(&first).is_ok() {
        let validator = sluice::schema::compile(&first).expect("an accepted schema compiles");
        let _ = sluice::schema::tape::with_value(&second, |event| validator.is_valid(event));
        for mode in MODES {
            let reasons = compat::check(mode, &[("1.0.0", &first)], &second);
            assert!(reasons.len() <= compat::INCOMPATIBILITIES_MAX);
            let same = compat::check(mode, &[("1.0.0", &first)], &first);
            assert!(same.iter().all(|reason| matches!(reason.rule, "cannot_judge" | "too_large" | "too_deep" | "invalid_schema")), "{same:?}");
        }
    }
    if let Some(text) = first.as_str() {
        let _ = sluice::policy::FieldPath::parse(text).map(|path| sluice::schema::tape::with_value(&second, |event| path.present_in(event)));
    }
});
