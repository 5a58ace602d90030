//! `envelope::Validator::validate` over arbitrary bodies, differentially against
//! serde_json: whatever the validator accepts, serde_json must parse too, with the same
//! `event_id`, the same `key.user_id` (by its murmur2 hash) and the closing brace where
//! the validator says it is.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sluice::ingest::envelope::Validator;
use sluice::log::partitioner::murmur2;

thread_local! {
    static VALIDATOR: RefCell<Validator> = RefCell::new(Validator::new(64 * 1024));
}

fuzz_target!(|body: &[u8]| {
    let Ok(envelope) = VALIDATOR.with_borrow_mut(|validator| validator.validate(body)) else { return };
    let value: Value = serde_json::from_slice(body).expect("the validator accepted what serde_json refuses");
    assert_eq!(value["event_id"].as_str().map(str::as_bytes), Some(envelope.event_id()));
    let user_id = value["key"]["user_id"].as_str().expect("accepted without a string key.user_id");
    assert_eq!(murmur2(user_id.as_bytes()), envelope.user_id_hash);
    assert_eq!(body[envelope.close_brace], b'}');
    assert!(body[envelope.close_brace + 1..].iter().all(u8::is_ascii_whitespace));
});
