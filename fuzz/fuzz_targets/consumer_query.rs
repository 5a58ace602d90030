//! The consumer API's request line (`consume::query::parse`, every consumer request
//! before authentication) and SSE's `Last-Event-ID` (`consume::stream::parse_sse_id`).
//! The first byte picks the method; the rest up to the first `?` is the path, after it
//! the query string. Never panics; whatever parses is within its documented ranges; and
//! a `Last-Event-ID` that parses re-renders to one that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::consume::query::{self, Route};
use sluice::consume::stream::parse_sse_id;
use sluice::http::Method;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let method = [Method::Get, Method::Head, Method::Post, Method::Put, Method::Other][usize::from(first) % 5];
    let (path, query) = match rest.iter().position(|b| *b == b'?') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    match query::parse(method, path, query) {
        Ok(Route::Read { query, .. }) => {
            assert!((1..=10_000).contains(&query.max) && query.wait_ms <= 30_000, "{query:?}");
            assert_eq!(method, Method::Get);
        }
        Ok(Route::Stream { name, query }) => {
            assert!(query::valid_subscription_name(name));
            assert!(query.batch_limit >= 1 && query.max_uncommitted >= 1 && (1000..=60_000).contains(&query.commit_timeout_ms));
        }
        Ok(Route::Sse { query, .. }) => {
            if let Some(key) = &query.key {
                assert!((1..=256).contains(&key.len()) && !key.iter().any(u8::is_ascii_control));
            }
        }
        Ok(Route::PutSubscription { name } | Route::Commit { name } | Route::Stats { name }) => {
            assert!(query::valid_subscription_name(name));
            assert!(query.is_empty() || query.iter().all(|b| *b == b'&'), "these paths take no parameters");
        }
        Ok(Route::ListTopics) => assert_eq!(path, b"/v1/topics"),
        Err(_) => {}
    }
    if let Some(pairs) = parse_sse_id(rest) {
        let rendered: Vec<String> = pairs.iter().map(|(partition, next)| format!("{partition}:{next}")).collect();
        assert_eq!(parse_sse_id(rendered.join(",").as_bytes()), Some(pairs));
    }
});
