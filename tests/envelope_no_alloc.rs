//! `Validator::validate` does not allocate once the validator is built (STYLE rule 2),
//! including for a body of exactly `body_bytes_max` with a structural character at almost
//! every byte, and on the error paths.
//!
//! Reproduce: `cargo test --test envelope_no_alloc`.

use sluice::constants::{BODY_BYTES_MAX_DEFAULT, VALIDATOR_WARM_BYTES};
use sluice::ingest::envelope::Validator;

use sluice_test_support::counting_alloc::{self, CountingAllocator};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Allocations this thread made in `run`.
fn allocations_during(run: impl FnOnce()) -> usize {
    counting_alloc::allocations_during(run).1
}

const HEAD: &str = r#"{"event_id":"e\u005f1","event_type":"bet","occurred_at":"2025-10-24T11:37:21Z","key":{"user_id":"u_1"},"payload":{"#;

/// A valid envelope padded to exactly `len` bytes with `0,` array elements.
fn full_size_body(len: usize) -> Vec<u8> {
    let mut body = format!(r#"{HEAD}"s":"\ud83d\ude00"}},"x":[0"#).into_bytes();
    while body.len() + 4 <= len {
        body.extend_from_slice(b",0");
    }
    body.extend_from_slice(b"]}");
    while body.len() < len {
        body.push(b' ');
    }
    body
}

#[test]
fn validate_does_not_allocate_after_new_up_to_the_warm_size() {
    let mut validator = Validator::new(BODY_BYTES_MAX_DEFAULT);
    let warm = full_size_body(VALIDATOR_WARM_BYTES);
    assert_eq!(warm.len(), VALIDATOR_WARM_BYTES);
    let many_keys: String = (0..2000).map(|n| format!(r#""k{n}":[{{"a":{n}}}],"#)).collect();
    let many_keys = format!(r#"{HEAD}{many_keys}"z":null}}}}"#).into_bytes();
    assert!(many_keys.len() < VALIDATOR_WARM_BYTES);
    let deep = format!(r#"{HEAD}"x":{}1{}}}}}"#, "[".repeat(70), "]".repeat(70)).into_bytes();
    let bodies: [&[u8]; 6] = [&warm, &many_keys, &deep, b"[1,2,3]", b"{\"a\":", b"\xff"];
    let mut outcomes = Vec::with_capacity(3 * bodies.len());

    let allocations = allocations_during(|| {
        for _ in 0..3 {
            for body in bodies {
                outcomes.push(validator.validate(body).map(|envelope| envelope.close_brace));
            }
        }
    });

    assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
    assert!(outcomes[1].is_ok(), "{:?}", outcomes[1]);
    assert!(outcomes[2].is_err());
    assert_eq!(allocations, 0, "validate() allocated");
}

#[test]
fn a_larger_body_grows_the_buffers_once() {
    let mut validator = Validator::new(BODY_BYTES_MAX_DEFAULT);
    let full = full_size_body(BODY_BYTES_MAX_DEFAULT);
    assert_eq!(full.len(), BODY_BYTES_MAX_DEFAULT);
    let first = allocations_during(|| assert!(validator.validate(&full).is_ok()));
    let mut outcomes = Vec::with_capacity(3);
    let again = allocations_during(|| {
        for _ in 0..3 {
            outcomes.push(validator.validate(&full).is_ok());
        }
    });
    assert_eq!(outcomes, [true; 3]);
    assert!(first > 0, "a full-size body should have grown the warm buffers");
    assert_eq!(again, 0, "validate() allocated again for a size it has seen");
}
