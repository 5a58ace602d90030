//! `http::Framer::poll` over arbitrary bytes delivered in arbitrary pieces, as the shard
//! feeds it. The first input byte picks the piece sizes. Checks: no panic; a complete
//! request consumed at most what was buffered, its body is within the limit and its path
//! is origin-form; and framing the same bytes in one piece gives the same requests and
//! the same end (piece-wise framing may only stop earlier with `ChunkedTooLarge`, since
//! that limit is about what is buffered).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::http::{Framer, HttpError, Limits, Poll};

const LIMITS: Limits = Limits { header_bytes_max: 1024, headers_count_max: 16, body_bytes_max: 2048 };

/// What a framed request looked like, and how the run ended.
type Framed = (Vec<(Vec<u8>, Vec<u8>, Option<Vec<u8>>, bool, usize)>, Option<HttpError>);

fn frame(input: &[u8], mut piece: impl FnMut() -> usize) -> Framed {
    let (mut framer, mut buf, mut fed, mut requests) = (Framer::default(), Vec::new(), 0, Vec::new());
    while fed < input.len() {
        let next = (fed + piece()).min(input.len());
        buf.extend_from_slice(&input[fed..next]);
        fed = next;
        loop {
            let buffered = buf.len();
            match framer.poll(&mut buf, &LIMITS) {
                Ok(Poll::Incomplete(_)) => break,
                Ok(Poll::Complete { request, consumed }) => {
                    assert!(consumed > 0 && consumed <= buffered, "consumed {consumed} of {buffered}");
                    assert!(request.body.len() <= LIMITS.body_bytes_max);
                    assert!(request.path.starts_with(b"/"));
                    requests.push((
                        request.path.to_vec(),
                        request.body.to_vec(),
                        request.signature.map(<[u8]>::to_vec),
                        request.keep_alive,
                        consumed,
                    ));
                    buf.drain(..consumed);
                }
                Err(error) => return (requests, Some(error)),
            }
        }
    }
    (requests, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else { return };
    let whole = frame(input, || input.len());
    let mut state = u32::from(seed) | 1;
    let pieces = frame(input, || {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        1 + (state >> 16) as usize % (usize::from(seed % 64) + 1)
    });
    if pieces.1 == Some(HttpError::ChunkedTooLarge) && pieces != whole {
        assert!(whole.0.starts_with(&pieces.0));
    } else {
        assert_eq!(pieces, whole);
    }
});
