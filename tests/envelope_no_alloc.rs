//! `Validator::validate` does not allocate once the validator is built (STYLE rule 2),
//! including for a body of exactly `body_bytes_max` with a structural character at almost
//! every byte, and on the error paths.
//!
//! Reproduce: `cargo test --test envelope_no_alloc`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use sluice::constants::{BODY_BYTES_MAX_DEFAULT, VALIDATOR_WARM_BYTES};
use sluice::envelope::Validator;

/// Counts allocations made by the current thread while counting is switched on.
struct CountingAllocator;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    let counting = COUNTING.try_with(Cell::get).unwrap_or(false);
    if counting {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counter neither allocates nor touches the memory.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations_during(run: impl FnOnce()) -> usize {
    ALLOCATIONS.with(|count| count.set(0));
    COUNTING.with(|counting| counting.set(true));
    run();
    COUNTING.with(|counting| counting.set(false));
    ALLOCATIONS.with(Cell::get)
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
