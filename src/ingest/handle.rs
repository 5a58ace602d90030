//! One framed request in, one answer (now or later) out: routing, content-type pinning,
//! authentication, validation, and the hand-off of each event to its partition's owner.
//! Every error the data path can return is mapped to its HTTP answer here.

use std::sync::Arc;

use crate::http::{self, Method, Request, itoa_buf};
use crate::ingest::envelope::{self, Envelope, Stamp, Validator};
use crate::log::partitioner;
use crate::metrics::{Control, PathLabel, Reject, ShardStats};
use crate::perimeter::admit::Principal;
use crate::perimeter::hmac;
use crate::perimeter::keyring::KeyRing;
use crate::perimeter::request_ids::{self, Claim, Claimed};
use crate::platform::swap::Local;
use crate::shard::handoff::{Outcome, StoreBatch, Ticket};
use crate::shard::partitions::{Partitions, Stored};
use crate::sidelog::journal::{Journal, JournalRecord};
use crate::sidelog::quarantine::QuarantineWriter;

/// What became of one event of a request.
#[derive(Debug, Clone, Copy)]
pub enum LineResult {
    Waiting,
    Done(Outcome),
    Rejected { reason: Reject, message: &'static str },
}

/// A request whose answer waits for other shards or the group commit.
#[derive(Debug)]
pub struct Pending {
    /// The path the answer is counted under.
    pub path: PathLabel,
    pub batch: bool,
    pub keep_alive: bool,
    pub outstanding: usize,
    pub results: Vec<LineResult>,
    /// The request's id claim, when it carried `X-Request-Id` or `webhook-id`.
    pub remember: Option<Box<Remember>>,
}

/// A claimed request id whose answer is to be remembered.
#[derive(Debug)]
pub struct Remember {
    claimed: Claimed,
    /// By name: a reload may renumber the partners before the answer is known.
    partner: Box<str>,
    id: Box<[u8]>,
}

/// Shard-wide state request handling needs (everything but the connections and ring).
pub struct Core {
    pub shard: usize,
    pub shards: usize,
    pub partitions_count: u32,
    /// The key ring in force (partners, policy, keys); replaced by a reload.
    pub keyring: Local<KeyRing>,
    pub tolerance_secs: u64,
    pub validator: Validator,
    pub partitions: Partitions,
    /// Outgoing store batches, one per destination shard.
    pub outgoing: Vec<StoreBatch>,
    /// Recycled store batches.
    pub spare_batches: Vec<StoreBatch>,
    /// Outcomes for connections of this shard that were decided after their request was
    /// parked (remote answers, group commits); applied by the reactor.
    pub resolved: Vec<(Ticket, Outcome)>,
    /// Outcomes to send to other shards, one list per destination.
    pub results_out: Vec<Vec<(Ticket, Outcome)>>,
    /// Pool of result vectors for batch requests.
    pub results_pool: Vec<Vec<LineResult>>,
    /// The `ingested_at` stamp for `stamp_ms`, formatted once per millisecond, not per event.
    pub stamp: Stamp,
    pub stamp_ms: i64,
    /// Reused list of the current batch's line ranges (at most BATCH_EVENTS_MAX).
    pub line_spans: Vec<std::ops::Range<usize>>,
    /// Reused buffer for outcomes released by the group commit.
    pub resolved_scratch: Vec<(Ticket, Outcome)>,
    pub now_ms: i64,
    pub control: Arc<Control>,
    /// This shard's request-id journal (`None`: not persisted).
    pub journal: Option<Journal>,
    /// This shard's quarantine writer (`None`: quarantine disabled).
    pub quarantine: Option<QuarantineWriter>,
    /// Bearer-token verifier (`None`: no `[auth.jwt]` issuers), its scratch space and the
    /// scopes of the request being handled.
    pub jwt: Option<Local<crate::perimeter::jwt::JwtVerifier>>,
    pub jwt_scratch: Box<crate::perimeter::jwt::JwtScratch>,
    pub token_scopes: crate::perimeter::admit::TokenScopes,
}

/// The connection a request came in on.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub slot: u32,
    pub generation: u32,
}

/// Who sent a request, as the transport knows it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peer<'a> {
    /// The client's address (the TCP peer).
    pub ip: Option<std::net::IpAddr>,
    /// The verified client-certificate identity (subject CN, else the first SAN) of an
    /// mTLS connection.
    pub tls_identity: Option<&'a str>,
}

pub enum Handled {
    Answered,
    Parked(Pending),
}

const RETRY_AFTER: &[u8] = b"retry-after: 1\r\n";
const EVENT_TYPE_NOT_ALLOWED: &str = "the partner may not send events of this event_type";

/// The status of a whole-request rejection for `reason`.
fn reason_status(reason: Reject) -> u16 {
    match reason {
        Reject::EventTypeNotAllowed => 403,
        _ => 400,
    }
}

/// The status code of a response we wrote (`HTTP/1.1 NNN ...`).
fn response_status(response: &[u8]) -> u16 {
    response.get(9..12).and_then(|digits| std::str::from_utf8(digits).ok()?.parse().ok()).unwrap_or(500)
}

/// The body of a response we wrote (after the blank line).
fn response_body(response: &[u8]) -> &[u8] {
    memchr::memmem::find(response, b"\r\n\r\n").map_or(&[][..], |at| &response[at + 4..])
}

/// True when a batch answer has lines the producer should retry (not stored because of
/// overload or storage trouble): such an answer must not be replayed from memory.
fn body_asks_retry(body: &[u8]) -> bool {
    let codes = [Reject::StorageUnavailable.code().as_bytes(), Reject::Overloaded.code().as_bytes()];
    codes.iter().any(|code| memchr::memmem::find(body, code).is_some())
}
const STORAGE_UNAVAILABLE: &str = "storage cannot take writes; retry";
const OVERLOADED: &str = "the partition owner is overloaded; retry";

fn media_type_is(value: Option<&[u8]>, expected: &[u8]) -> bool {
    let Some(value) = value else { return false };
    let media = value.split(|b| *b == b';').next().unwrap_or(value);
    media.trim_ascii().eq_ignore_ascii_case(expected)
}

/// An answer about to be written: the connection's keep-alive and where it is counted.
#[derive(Clone, Copy)]
pub struct Answer<'s> {
    pub path: PathLabel,
    pub keep_alive: bool,
    pub stats: &'s ShardStats,
}

/// Appends an error answer.
pub fn answer_error(out: &mut Vec<u8>, status: u16, code: &str, message: &str, answer: Answer<'_>) {
    let extra = if status == 503 || status == 429 { RETRY_AFTER } else { b"" };
    let slot = http::begin_response(out, status, answer.keep_alive, extra);
    http::write_error_body(out, code, message);
    http::finish_response(out, slot);
    answer.stats.count_answer(answer.path, status);
    log_rejection_sampled(status, code, answer.path);
}

/// The one log line on the request path: at debug level only, and at most one per
/// `LOG_SAMPLE_PERIOD_MS` per shard, with the count of the ones skipped. With the
/// default level the cost is the cached `enabled` check of the call site.
fn log_rejection_sampled(status: u16, code: &str, path: PathLabel) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    thread_local! {
        static SAMPLER: std::cell::RefCell<crate::platform::logging::Sampler> = const { crate::platform::logging::Sampler::per_thread() };
    }
    if let Some(suppressed) = crate::platform::logging::admit_on_this_thread(&SAMPLER) {
        tracing::debug!(status, code, path = path.as_str(), suppressed, "request refused (sampled)");
    }
}

/// Appends the error answer for an event refused whole and counts `events` rejections.
fn answer_rejected(out: &mut Vec<u8>, status: u16, reason: Reject, message: &str, events: u64, answer: Answer<'_>) {
    answer.stats.count_rejected(reason, events);
    answer_error(out, status, reason.code(), message, answer);
}

fn write_outcome_json(out: &mut Vec<u8>, outcome: &Outcome) {
    let mut number = itoa_buf::Buffer::new();
    match outcome {
        Outcome::Accepted { partition, offset } | Outcome::Duplicate { partition, offset } => {
            let status: &[u8] = if matches!(outcome, Outcome::Accepted { .. }) { b"accepted" } else { b"duplicate" };
            out.extend_from_slice(b"{\"status\":\"");
            out.extend_from_slice(status);
            out.extend_from_slice(b"\",\"partition\":");
            out.extend_from_slice(number.format(u64::from(*partition)));
            out.extend_from_slice(b",\"offset\":");
            out.extend_from_slice(number.format(*offset));
            out.push(b'}');
        }
        Outcome::StorageUnavailable => write_rejected(out, Reject::StorageUnavailable.code(), STORAGE_UNAVAILABLE),
        Outcome::Overloaded => write_rejected(out, Reject::Overloaded.code(), OVERLOADED),
    }
}

fn write_rejected(out: &mut Vec<u8>, code: &str, message: &str) {
    out.extend_from_slice(b"{\"status\":\"rejected\",\"error\":");
    http::write_error_object(out, code, message);
    out.push(b'}');
}

/// Appends the answer to a finished single-event request.
pub fn answer_outcome(out: &mut Vec<u8>, outcome: &Outcome, answer: Answer<'_>) {
    let stats = answer.stats;
    let (status, counter) = match outcome {
        Outcome::Accepted { .. } => (202, &stats.events_accepted),
        Outcome::Duplicate { .. } => (200, &stats.events_duplicate),
        Outcome::StorageUnavailable => return answer_rejected(out, 503, Reject::StorageUnavailable, STORAGE_UNAVAILABLE, 1, answer),
        Outcome::Overloaded => return answer_rejected(out, 503, Reject::Overloaded, OVERLOADED, 1, answer),
    };
    ShardStats::add(counter, 1);
    let slot = http::begin_response(out, status, answer.keep_alive, b"");
    write_outcome_json(out, outcome);
    http::finish_response(out, slot);
    stats.count_answer(answer.path, status);
}

/// Appends the answer to a finished request (single or batch).
pub fn answer_pending(out: &mut Vec<u8>, pending: &Pending, stats: &ShardStats) {
    let answer = Answer { path: pending.path, keep_alive: pending.keep_alive, stats };
    if !pending.batch {
        let outcome = match pending.results.first() {
            Some(LineResult::Done(outcome)) => *outcome,
            _ => Outcome::StorageUnavailable,
        };
        return answer_outcome(out, &outcome, answer);
    }
    let (mut accepted, mut duplicates) = (0u64, 0u64);
    for result in &pending.results {
        match result {
            LineResult::Done(Outcome::Accepted { .. }) => accepted += 1,
            LineResult::Done(Outcome::Duplicate { .. }) => duplicates += 1,
            LineResult::Done(Outcome::StorageUnavailable) | LineResult::Waiting => stats.count_rejected(Reject::StorageUnavailable, 1),
            LineResult::Done(Outcome::Overloaded) => stats.count_rejected(Reject::Overloaded, 1),
            LineResult::Rejected { reason, .. } => stats.count_rejected(*reason, 1),
        }
    }
    let rejected = pending.results.len() as u64 - accepted - duplicates;
    let mut number = itoa_buf::Buffer::new();
    let slot = http::begin_response(out, 200, pending.keep_alive, b"");
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
            LineResult::Done(outcome) => write_outcome_json(out, outcome),
            LineResult::Waiting => write_rejected(out, Reject::StorageUnavailable.code(), STORAGE_UNAVAILABLE),
            LineResult::Rejected { reason, message } => write_rejected(out, reason.code(), message),
        }
    }
    out.extend_from_slice(b"]}");
    http::finish_response(out, slot);
    ShardStats::add(&stats.events_accepted, accepted);
    ShardStats::add(&stats.events_duplicate, duplicates);
    stats.count_answer(pending.path, 200);
}

impl Core {
    /// Handles one framed request: answers into `out` now, or parks it.
    pub fn handle(
        &mut self,
        control: &Control,
        request: &Request<'_>,
        peer: Peer<'_>,
        origin: Origin,
        keep_alive: bool,
        out: &mut Vec<u8>,
    ) -> Handled {
        let start = out.len();
        let handled = self.route(control, request, peer, origin, keep_alive, out);
        if request.method == Method::Head {
            http::strip_body(out, start);
        }
        handled
    }

    fn route(
        &mut self,
        control: &Control,
        request: &Request<'_>,
        peer: Peer<'_>,
        origin: Origin,
        keep_alive: bool,
        out: &mut Vec<u8>,
    ) -> Handled {
        let path = PathLabel::of(request.path);
        let answer = Answer { path, keep_alive, stats: &control.shards[self.shard] };
        match (request.method, path) {
            (Method::Get | Method::Head, PathLabel::Healthz) => answer_ok(out, b"{\"status\":\"ok\"}", answer),
            (Method::Get | Method::Head, PathLabel::Readyz) if control.is_ready() => answer_ok(out, b"{\"status\":\"ready\"}", answer),
            (Method::Get | Method::Head, PathLabel::Readyz) => {
                answer_error(out, 503, "not_ready", "starting, draining, a shard stalled, or storage refusing writes", answer)
            }
            (Method::Post, PathLabel::Events | PathLabel::EventsBatch | PathLabel::Webhooks) => {
                return self.ingest(request, peer, origin, answer, out);
            }
            (_, PathLabel::Healthz | PathLabel::Readyz) => answer_method(out, b"allow: GET, HEAD\r\n", answer),
            (_, PathLabel::Events | PathLabel::EventsBatch | PathLabel::Webhooks) => answer_method(out, b"allow: POST\r\n", answer),
            (_, PathLabel::Other) => answer_error(out, 404, "not_found", "no such endpoint", answer),
        }
        Handled::Answered
    }

    /// `POST /v1/events`, `/v1/events/batch` or `/v1/webhooks/<source>`, as `answer.path` says.
    fn ingest(&mut self, request: &Request<'_>, peer: Peer<'_>, origin: Origin, answer: Answer<'_>, out: &mut Vec<u8>) -> Handled {
        let batch = answer.path == PathLabel::EventsBatch;
        let (media, message): (&[u8], &str) = if batch {
            (b"application/x-ndjson", "Content-Type must be application/x-ndjson")
        } else {
            (b"application/json", "Content-Type must be application/json")
        };
        if !media_type_is(request.content_type, media) {
            answer_rejected(out, 415, Reject::UnsupportedMediaType, message, 1, answer);
            return Handled::Answered;
        }
        let principal = match self.admit(request, peer, answer.path) {
            Ok(principal) => principal,
            Err(refusal) => {
                answer_rejected(out, refusal.status, refusal.reason, refusal.message, 1, answer);
                return Handled::Answered;
            }
        };
        let id = request.request_id.or(if answer.path == PathLabel::Webhooks { request.webhook_id } else { None });
        let remember = match id {
            None => None,
            Some(id) => match self.claim_request_id(request, principal, id, answer, out) {
                Some(remember) => Some(remember),
                None => return Handled::Answered,
            },
        };
        let start = out.len();
        let handled = if batch {
            self.ingest_batch(request.body, principal, origin, answer, out)
        } else {
            self.ingest_single(request.body, principal, origin, answer, out)
        };
        match handled {
            Handled::Answered => {
                if let Some(remember) = remember {
                    self.remember_answer(&remember, &out[start..]);
                }
                Handled::Answered
            }
            Handled::Parked(mut pending) => {
                pending.remember = remember;
                Handled::Parked(pending)
            }
        }
    }

    /// Looks the request id up. `Some`: a new claim, go on; `None`: answered (a repeat's
    /// original answer, a conflict, or an invalid id).
    fn claim_request_id(
        &mut self,
        request: &Request<'_>,
        principal: Principal,
        id: &[u8],
        answer: Answer<'_>,
        out: &mut Vec<u8>,
    ) -> Option<Box<Remember>> {
        if !hmac::is_webhook_id(id) {
            answer_rejected(out, 400, Reject::RequestIdInvalid, "the request id must be 1 to 256 visible ASCII characters", 1, answer);
            return None;
        }
        let partner = &self.keyring.partner(principal.partner).name;
        let digest = request_ids::digest(request.path, request.body);
        match self.control.request_ids.claim(partner, id, digest, self.now_ms) {
            Claim::New(claimed) => Some(Box::new(Remember { claimed, partner: Box::from(partner.as_str()), id: Box::from(id) })),
            Claim::Repeat { status, body } => {
                http::write_response(out, status, &body, answer.keep_alive, b"idempotent-replayed: true\r\n");
                answer.stats.count_answer(answer.path, status);
                None
            }
            Claim::Conflict => {
                answer_rejected(out, 409, Reject::RequestIdConflict, "the request id was already used with another body", 1, answer);
                None
            }
            Claim::InProgress => {
                answer_rejected(out, 409, Reject::RequestInProgress, "a request with this id is still being processed; retry", 1, answer);
                None
            }
        }
    }

    /// Remembers (or, if it asks for a retry, forgets) the answer `response` (status
    /// line, headers, body) of a claimed request, and journals it.
    pub fn remember_answer(&mut self, remember: &Remember, response: &[u8]) {
        let status = response_status(response);
        let body = response_body(response);
        if matches!(status, 429 | 503) || body_asks_retry(body) {
            self.control.request_ids.release(remember.claimed);
            return;
        }
        self.control.request_ids.complete(remember.claimed, status, body);
        if let Some(journal) = self.journal.as_mut() {
            journal.append(&JournalRecord {
                expires_ms: remember.claimed.expires_ms(self.control.request_ids.window_ms()),
                status,
                digest: remember.claimed.digest(),
                partner: &remember.partner,
                id: &remember.id,
                body,
            });
        }
    }

    /// Takes the key ring and JWT verifier a reload put in force (one atomic load each).
    pub fn refresh_shared(&mut self) {
        self.keyring.refresh();
        if let Some(jwt) = self.jwt.as_mut() {
            jwt.refresh();
        }
    }

    /// Writes this loop's request-id journal and quarantine appends; called before the
    /// loop's answers are handed to the kernel.
    pub fn flush_journals(&mut self) {
        if let Some(journal) = self.journal.as_mut() {
            journal.flush(self.now_ms);
        }
        if let Some(writer) = self.quarantine.as_mut() {
            writer.flush(self.now_ms, &self.control.quarantine);
        }
    }

    fn ingest_single(&mut self, body: &[u8], principal: Principal, origin: Origin, answer: Answer<'_>, out: &mut Vec<u8>) -> Handled {
        let line = self.ingest_line(body, principal, origin, 0);
        match line {
            LineResult::Done(outcome) => answer_outcome(out, &outcome, answer),
            LineResult::Rejected { reason, message } => answer_rejected(out, reason_status(reason), reason, message, 1, answer),
            LineResult::Waiting => {
                let mut results = self.results_pool.pop().unwrap_or_default();
                results.push(line);
                let pending =
                    Pending { path: answer.path, batch: false, keep_alive: answer.keep_alive, outstanding: 1, results, remember: None };
                return Handled::Parked(pending);
            }
        }
        Handled::Answered
    }

    fn ingest_batch(&mut self, body: &[u8], principal: Principal, origin: Origin, answer: Answer<'_>, out: &mut Vec<u8>) -> Handled {
        let mut spans = std::mem::take(&mut self.line_spans);
        let count = envelope::ndjson_lines(body, &mut spans, crate::constants::BATCH_EVENTS_MAX);
        if count == 0 {
            self.line_spans = spans;
            answer_error(out, 400, "batch_empty", "the batch holds no events", answer);
            return Handled::Answered;
        }
        if count > crate::constants::BATCH_EVENTS_MAX {
            self.line_spans = spans;
            answer_rejected(out, 413, Reject::BatchTooLarge, "a batch holds at most 1000 events", count as u64, answer);
            return Handled::Answered;
        }
        let mut results = self.results_pool.pop().unwrap_or_default();
        let mut outstanding = 0;
        for (index, span) in spans.iter().enumerate() {
            let result = self.ingest_line(&body[span.clone()], principal, origin, index as u16);
            outstanding += usize::from(matches!(result, LineResult::Waiting));
            results.push(result);
        }
        self.line_spans = spans;
        let pending = Pending { path: answer.path, batch: true, keep_alive: answer.keep_alive, outstanding, results, remember: None };
        if outstanding > 0 {
            return Handled::Parked(pending);
        }
        answer_pending(out, &pending, answer.stats);
        self.recycle_results(pending.results);
        Handled::Answered
    }

    /// Validates one event, checks the partner's scope, and stores it here or hands it to
    /// the owner shard.
    fn ingest_line(&mut self, event: &[u8], principal: Principal, origin: Origin, line: u16) -> LineResult {
        let envelope: Envelope = match self.validator.validate(event) {
            Ok(envelope) => envelope,
            Err(error) => return LineResult::Rejected { reason: Reject::from(error), message: error.message() },
        };
        let event_type = envelope.event_type();
        if !self.keyring.partner(principal.partner).allows_event_type(event_type)
            || (principal.token && !self.token_scopes.allows_event_type(event_type))
        {
            return LineResult::Rejected { reason: Reject::EventTypeNotAllowed, message: EVENT_TYPE_NOT_ALLOWED };
        }
        let partition = partitioner::partition_for(envelope.user_id_hash, self.partitions_count);
        let owner = partitioner::owner_shard(partition, self.shards);
        if self.stamp_ms != self.now_ms {
            self.stamp_ms = self.now_ms;
            self.stamp = Stamp::new(self.now_ms);
        }
        let stamp = self.stamp;
        let parts = envelope::stamped_parts(event, &envelope, &stamp);
        let ticket = Ticket { shard: self.shard as u16, slot: origin.slot, generation: origin.generation, line };
        if owner == self.shard {
            return match self.partitions.store(ticket, partition, envelope.event_id(), self.now_ms, &parts) {
                Stored::Now(outcome) => LineResult::Done(outcome),
                Stored::AfterSync => LineResult::Waiting,
            };
        }
        if self.outgoing[owner].items.len() >= crate::constants::HANDOFF_RECORDS_PER_LOOP_MAX {
            return LineResult::Done(Outcome::Overloaded);
        }
        self.outgoing[owner].push(ticket, partition, self.now_ms, envelope.event_id(), &parts);
        LineResult::Waiting
    }

    pub fn recycle_results(&mut self, mut results: Vec<LineResult>) {
        results.clear();
        if self.results_pool.len() < 1024 {
            self.results_pool.push(results);
        }
    }

    /// Stores a batch another shard handed over; outcomes go back to their shards.
    pub fn store_batch(&mut self, from: usize, batch: &StoreBatch) {
        for item in &batch.items {
            let event = batch.event(item);
            match self.partitions.store(item.ticket, item.partition, batch.event_id(item), item.ingest_ms, &[event]) {
                Stored::Now(outcome) => self.results_out[from].push((item.ticket, outcome)),
                Stored::AfterSync => {}
            }
        }
    }

    /// Routes outcomes released by the group commit to their shards.
    pub fn route_released(&mut self) {
        let mut released = std::mem::take(&mut self.resolved_scratch);
        self.partitions.take_released(&mut released);
        for (ticket, outcome) in released.drain(..) {
            if usize::from(ticket.shard) == self.shard {
                self.resolved.push((ticket, outcome));
            } else {
                self.results_out[usize::from(ticket.shard)].push((ticket, outcome));
            }
        }
        self.resolved_scratch = released;
    }
}

fn answer_method(out: &mut Vec<u8>, allow: &[u8], answer: Answer<'_>) {
    let slot = http::begin_response(out, 405, answer.keep_alive, allow);
    http::write_error_body(out, "method_not_allowed", "method not allowed on this path");
    http::finish_response(out, slot);
    answer.stats.count_answer(answer.path, 405);
}

fn answer_ok(out: &mut Vec<u8>, body: &[u8], answer: Answer<'_>) {
    http::write_response(out, 200, body, answer.keep_alive, b"");
    answer.stats.count_answer(answer.path, 200);
}
