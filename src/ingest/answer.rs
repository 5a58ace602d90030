//! The answers of the ingest listener, written straight into a connection's output
//! buffer: refusals (from the table in `refusal.rs`), the outcome of a single event, and
//! the batch answer with one result per line. Each builder counts what it answered and
//! returns what it wrote ([`Written`]), so nothing is read back out of the bytes.

use std::ops::Range;

use crate::http::{self, Status, itoa_buf};
use crate::ingest::handle::{LineResult, Pending};
use crate::ingest::refusal::{Refusal, Reject};
use crate::metrics::{PathLabel, ShardStats};
use crate::platform::logging::{Sampler, admit_on_this_thread};
use crate::shard::handoff::Outcome;

const RETRY_AFTER: &[u8] = b"retry-after: 1\r\n";
const STORAGE_UNAVAILABLE: &str = "storage cannot take writes; retry";
const OVERLOADED: &str = "the partition owner is overloaded; retry";

/// The message of an event refused where it was to be stored (`Outcome::Refused`).
pub fn refused_message(reason: Reject) -> &'static str {
    match reason {
        Reject::KycGate => "the user's KYC level stored before this reward is below the one it requires, or none is stored",
        Reject::RgGate => "the user's responsible-gambling flag stored before this reward is not OK",
        _ => "the event was not stored",
    }
}

/// An answer about to be written: the connection's keep-alive and where it is counted.
#[derive(Clone, Copy)]
pub struct Answer<'s> {
    pub path: PathLabel,
    pub keep_alive: bool,
    pub stats: &'s ShardStats,
    /// Names the topic of a stored event's slot.
    pub topology: &'s crate::topics::Topology,
}

/// An answer as written: its status, where its body lies in the output buffer, and
/// whether it asks the client to retry (a 429/503, or a batch with lines not stored
/// because of overload or storage trouble). Such an answer is never remembered for a
/// repeat of its request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub status: Status,
    pub body: Range<usize>,
    pub asks_retry: bool,
}

/// Writes a whole answer with `body` and counts it under `answer.path`.
fn write(out: &mut Vec<u8>, status: Status, body: impl FnOnce(&mut Vec<u8>), extra: &[u8], answer: Answer<'_>) -> Written {
    let retry = if status.asks_retry() { RETRY_AFTER } else { b"" };
    let slot = http::begin_response(out, status, answer.keep_alive, if extra.is_empty() { retry } else { extra });
    let start = out.len();
    body(out);
    let end = out.len();
    http::finish_response(out, slot);
    answer.stats.count_answer(answer.path, status.code());
    Written { status, body: start..end, asks_retry: status.asks_retry() }
}

/// Appends 429 `rate_limited` with `Retry-After` and the IETF `RateLimit-Policy` /
/// `RateLimit` headers of the rule `limited` hit.
pub fn answer_rate_limited(out: &mut Vec<u8>, limited: &crate::perimeter::rate::Limited, events: u64, answer: Answer<'_>) -> Written {
    let mut headers = [0u8; 256];
    let mut cursor = std::io::Cursor::new(&mut headers[..]);
    limited.write_headers(&mut cursor);
    let len = cursor.position() as usize;
    let message = match limited.per {
        crate::perimeter::rate::Per::Ip => "too many requests from this address; retry after Retry-After seconds",
        crate::perimeter::rate::Per::Partner => "too many requests from this partner; retry after Retry-After seconds",
        crate::perimeter::rate::Per::Kid => "too many requests signed with this key id; retry after Retry-After seconds",
    };
    let reason = Reject::RateLimited;
    let written = write(out, reason.status(), |out| http::write_error_body(out, reason.code(), message), &headers[..len], answer);
    answer.stats.count_rejected(reason, events);
    written
}

/// Appends the error answer for `refusal` with `message` (no count of rejected events:
/// see [`answer_rejected`]).
pub fn answer_refusal(out: &mut Vec<u8>, refusal: Refusal, message: &str, answer: Answer<'_>) -> Written {
    let written = write(out, refusal.status(), |out| http::write_error_body(out, refusal.code(), message), b"", answer);
    log_rejection_sampled(refusal.status(), refusal.code(), answer.path);
    written
}

/// Appends the error answer for a request refused whole for `reason`, and counts
/// `events` rejections.
pub fn answer_rejected(out: &mut Vec<u8>, reason: Reject, message: &str, events: u64, answer: Answer<'_>) -> Written {
    answer.stats.count_rejected(reason, events);
    answer_refusal(out, Refusal::Event(reason), message, answer)
}

/// `405` with the methods the path allows.
pub fn answer_method(out: &mut Vec<u8>, allow: &[u8], answer: Answer<'_>) -> Written {
    let refusal = Refusal::MethodNotAllowed;
    write(out, refusal.status(), |out| http::write_error_body(out, refusal.code(), refusal.message()), allow, answer)
}

/// `200` with a ready body.
pub fn answer_ok(out: &mut Vec<u8>, body: &[u8], answer: Answer<'_>) -> Written {
    write(out, Status::Ok, |out| out.extend_from_slice(body), b"", answer)
}

/// A remembered answer for a repeated request id, as it was first sent.
pub fn answer_repeat(out: &mut Vec<u8>, status: Status, body: &[u8], answer: Answer<'_>) -> Written {
    write(out, status, |out| out.extend_from_slice(body), b"idempotent-replayed: true\r\n", answer)
}

/// The one log line on the request path: at debug level only, and at most one per
/// `LOG_SAMPLE_PERIOD_MS` per shard, with the count of the ones skipped. With the
/// default level the cost is the cached `enabled` check of the call site.
fn log_rejection_sampled(status: Status, code: &str, path: PathLabel) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    thread_local! {
        static SAMPLER: std::cell::RefCell<Sampler> = const { Sampler::per_thread() };
    }
    if let Some(suppressed) = admit_on_this_thread(&SAMPLER) {
        tracing::debug!(status = status.code(), code, path = path.as_str(), suppressed, "request refused (sampled)");
    }
}

fn write_outcome_json(out: &mut Vec<u8>, outcome: &Outcome, topology: &crate::topics::Topology) {
    let mut number = itoa_buf::Buffer::new();
    match outcome {
        Outcome::Accepted { partition: slot, offset } | Outcome::Duplicate { partition: slot, offset } => {
            let status: &[u8] = if matches!(outcome, Outcome::Accepted { .. }) { b"accepted" } else { b"duplicate" };
            let (topic, partition) = topology.locate(*slot);
            out.extend_from_slice(b"{\"status\":\"");
            out.extend_from_slice(status);
            // Topic names are [a-z0-9_.-]: nothing to escape.
            out.extend_from_slice(b"\",\"topic\":\"");
            out.extend_from_slice(topology.topic(topic).name.as_bytes());
            out.extend_from_slice(b"\",\"partition\":");
            out.extend_from_slice(number.format(u64::from(partition)));
            out.extend_from_slice(b",\"offset\":");
            out.extend_from_slice(number.format(*offset));
            out.push(b'}');
        }
        Outcome::StorageUnavailable => write_rejected(out, Reject::StorageUnavailable.code(), STORAGE_UNAVAILABLE),
        Outcome::Overloaded => write_rejected(out, Reject::Overloaded.code(), OVERLOADED),
        Outcome::Refused(reason) => write_rejected(out, reason.code(), refused_message(*reason)),
    }
}

fn write_rejected(out: &mut Vec<u8>, code: &str, message: &str) {
    out.extend_from_slice(b"{\"status\":\"rejected\",\"error\":");
    http::write_error_object(out, code, message);
    out.push(b'}');
}

/// Appends the answer to a finished single-event request.
pub fn answer_outcome(out: &mut Vec<u8>, outcome: &Outcome, answer: Answer<'_>) -> Written {
    let stats = answer.stats;
    let (status, counter) = match outcome {
        Outcome::Accepted { .. } => (Status::Accepted, &stats.events_accepted),
        Outcome::Duplicate { .. } => (Status::Ok, &stats.events_duplicate),
        Outcome::StorageUnavailable => return answer_rejected(out, Reject::StorageUnavailable, STORAGE_UNAVAILABLE, 1, answer),
        Outcome::Overloaded => return answer_rejected(out, Reject::Overloaded, OVERLOADED, 1, answer),
        Outcome::Refused(reason) => return answer_rejected(out, *reason, refused_message(*reason), 1, answer),
    };
    ShardStats::add(counter, 1);
    write(out, status, |out| write_outcome_json(out, outcome, answer.topology), b"", answer)
}

/// Appends the answer to a finished request (single or batch).
pub fn answer_pending(out: &mut Vec<u8>, pending: &Pending, stats: &ShardStats, topology: &crate::topics::Topology) -> Written {
    let answer = Answer { path: pending.path, keep_alive: pending.keep_alive, stats, topology };
    if !pending.batch {
        let outcome = match pending.results.first() {
            Some(LineResult::Done(outcome)) => *outcome,
            _ => Outcome::StorageUnavailable,
        };
        return answer_outcome(out, &outcome, answer);
    }
    let (mut accepted, mut duplicates, mut retry) = (0u64, 0u64, false);
    for result in &pending.results {
        match result {
            LineResult::Done(Outcome::Accepted { .. }) => accepted += 1,
            LineResult::Done(Outcome::Duplicate { .. }) => duplicates += 1,
            LineResult::Done(Outcome::StorageUnavailable) | LineResult::Waiting => {
                stats.count_rejected(Reject::StorageUnavailable, 1);
                retry = true;
            }
            LineResult::Done(Outcome::Overloaded) => {
                stats.count_rejected(Reject::Overloaded, 1);
                retry = true;
            }
            LineResult::Rejected { reason, .. } | LineResult::Done(Outcome::Refused(reason)) => stats.count_rejected(*reason, 1),
        }
    }
    let rejected = pending.results.len() as u64 - accepted - duplicates;
    let mut written = write(out, Status::Ok, |out| write_batch_body(out, pending, [accepted, duplicates, rejected], topology), b"", answer);
    ShardStats::add(&stats.events_accepted, accepted);
    ShardStats::add(&stats.events_duplicate, duplicates);
    written.asks_retry = retry;
    written
}

/// `{"accepted":A,"duplicates":D,"rejected":R,"results":[...]}`, one result per line.
fn write_batch_body(out: &mut Vec<u8>, pending: &Pending, [accepted, duplicates, rejected]: [u64; 3], topology: &crate::topics::Topology) {
    let mut number = itoa_buf::Buffer::new();
    out.extend_from_slice(b"{\"accepted\":");
    out.extend_from_slice(number.format(accepted));
    out.extend_from_slice(b",\"duplicates\":");
    out.extend_from_slice(number.format(duplicates));
    out.extend_from_slice(b",\"rejected\":");
    out.extend_from_slice(number.format(rejected));
    out.extend_from_slice(b",\"results\":[");
    for (index, result) in pending.results.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        match result {
            LineResult::Done(outcome) => write_outcome_json(out, outcome, topology),
            LineResult::Waiting => write_rejected(out, Reject::StorageUnavailable.code(), STORAGE_UNAVAILABLE),
            LineResult::Rejected { reason, message } => write_rejected(out, reason.code(), message),
        }
    }
    out.extend_from_slice(b"]}");
}
