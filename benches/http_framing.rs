//! HTTP/1.1 framing and response writing on the ingest hot path.
//!
//! Measures `sluice::http::Framer::poll` on
//! - one signed single-event `POST /v1/events` (330-byte JSON body; headers X-Key-Id,
//!   X-Timestamp, X-Signature, Content-Type, Content-Length),
//! - 16 such requests pipelined in one buffer, framed one after the other,
//! - the same request with a chunked body (64-byte chunks, de-chunked in place),
//!
//! and `http::begin_response` + `finish_response` writing a 202 answer into a warm buffer.
//! Throughput is request bytes framed (or response bytes written) per second.
//!
//! Reproduce: `cargo bench --bench http_framing`

use sluice_test_support::bench_inputs as common;

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sluice::constants::{BODY_BYTES_MAX_DEFAULT, HEADER_BYTES_MAX_DEFAULT, HEADERS_COUNT_MAX_DEFAULT};
use sluice::http::{self, Framer, Limits, Poll};

/// Requests in the pipelined buffer.
const PIPELINED_REQUESTS: usize = 16;
/// Chunk size of the chunked body: a producer streaming in small writes.
const CHUNK_BYTES: usize = 64;
/// A representative 202 body (SPEC §1.3).
const ACCEPTED_BODY: &[u8] = br#"{"status":"accepted","partition":3,"offset":1234567}"#;
/// The `X-Signature` value: its shape is what framing sees, not whether it verifies.
const SIGNATURE: &[u8] = b"v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd";

fn limits() -> Limits {
    Limits {
        header_bytes_max: HEADER_BYTES_MAX_DEFAULT,
        headers_count_max: HEADERS_COUNT_MAX_DEFAULT,
        body_bytes_max: BODY_BYTES_MAX_DEFAULT,
    }
}

fn typical_body() -> Vec<u8> {
    common::event("e_01HF3Z8Z7Q8Q2K", common::EVENT_BYTES_TYPICAL)
}

/// Frames every request in `buf`; returns how many there were. Panics on anything but a
/// sequence of complete requests, so a bench can never time an error path by mistake.
fn frame_all(framer: &mut Framer, buf: &mut [u8], limits: &Limits) -> usize {
    let mut at = 0;
    let mut requests = 0;
    while at < buf.len() {
        match framer.poll(&mut buf[at..], limits) {
            Ok(Poll::Complete { request, consumed }) => {
                black_box(&request);
                at += consumed;
                requests += 1;
            }
            other => panic!("expected a complete request at byte {at}, got {other:?}"),
        }
    }
    requests
}

fn bench_framing(c: &mut Criterion) {
    let limits = limits();
    let body = typical_body();
    let single = common::signed_post(&body, "k_bench", "1761305841", SIGNATURE);
    let pipelined = single.repeat(PIPELINED_REQUESTS);
    let chunked = common::signed_post_chunked(&body, "k_bench", "1761305841", SIGNATURE, CHUNK_BYTES);

    let mut framer = Framer::default();
    assert_eq!(frame_all(&mut framer, &mut single.clone(), &limits), 1);
    assert_eq!(frame_all(&mut framer, &mut pipelined.clone(), &limits), PIPELINED_REQUESTS);
    assert_eq!(frame_all(&mut framer, &mut chunked.clone(), &limits), 1);

    let mut group = c.benchmark_group("http_framing");

    // Content-Length framing does not write to the buffer, so one copy serves every iteration.
    let mut buf = single.clone();
    group.throughput(Throughput::Bytes(buf.len() as u64));
    group.bench_function(format!("poll/single_post_{}B_request", single.len()), |b| {
        b.iter(|| frame_all(&mut framer, black_box(&mut buf), &limits))
    });

    let mut buf = pipelined.clone();
    group.throughput(Throughput::Bytes(buf.len() as u64));
    group.bench_function(format!("poll/pipelined_{PIPELINED_REQUESTS}_posts_{}B", pipelined.len()), |b| {
        b.iter(|| frame_all(&mut framer, black_box(&mut buf), &limits))
    });

    // De-chunking rewrites the buffer in place: each iteration gets a fresh copy, made
    // outside the timed routine.
    group.throughput(Throughput::Bytes(chunked.len() as u64));
    group.bench_function(format!("poll/chunked_post_{CHUNK_BYTES}B_chunks_{}B", chunked.len()), |b| {
        b.iter_batched_ref(|| chunked.clone(), |buf| frame_all(&mut framer, black_box(buf), &limits), BatchSize::SmallInput)
    });
    group.finish();
}

fn bench_response(c: &mut Criterion) {
    let mut out = Vec::with_capacity(512);
    http::write_response(&mut out, http::Status::Accepted, ACCEPTED_BODY, true, b"");
    let response_bytes = out.len();

    let mut group = c.benchmark_group("http_response");
    group.throughput(Throughput::Bytes(response_bytes as u64));
    group.bench_function("begin_finish_202", |b| {
        b.iter(|| {
            out.clear();
            let slot = http::begin_response(&mut out, black_box(http::Status::Accepted), black_box(true), b"");
            out.extend_from_slice(black_box(ACCEPTED_BODY));
            http::finish_response(&mut out, slot);
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench_framing, bench_response);
criterion_main!(benches);
