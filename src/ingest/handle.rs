//! An ingest request (`POST /v1/events`, `/v1/events/batch`, `/v1/webhooks/<source>`) in,
//! one answer (now or later) out: content-type pinning, admission (`perimeter`), the
//! request-id claim, validation of each event, and the hand-off of each event to its
//! partition's owner. Refusals are answered from the table in `refusal.rs`.

use std::sync::Arc;

use crate::constants::{BATCH_EVENTS_MAX, HANDOFF_RECORDS_PER_LOOP_MAX, RESULT_VECS_POOLED_MAX};
use crate::http::{Request, Status};
use crate::ingest::answer::{Answer, Written, answer_outcome, answer_pending, answer_refusal, answer_rejected, answer_repeat};
use crate::ingest::envelope::{self, Envelope, Stamp, Validator};
use crate::ingest::refusal::{Refusal, Reject};
use crate::log::partitioner;
use crate::metrics::{Control, PathLabel};
use crate::perimeter::admit::Principal;
use crate::perimeter::keyring::KeyRing;
use crate::perimeter::request_ids::{self, Claim, Claimed};
use crate::perimeter::webhooks;
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
    /// The topics and their routing.
    pub topology: Arc<crate::topics::Topology>,
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
    /// Consumers: data dirs, subscriptions, cursor journal, read log.
    pub consume: crate::consume::ConsumeCore,
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

/// What became of a framed request.
pub enum Handled {
    /// Its answer is in the output.
    Answered(Written),
    /// It waits for outcomes from other shards or the group commit.
    Parked(Pending),
    /// A consumer read that waits for events, or a stream whose head is written.
    Consumer(crate::consume::Started),
}

const EVENT_TYPE_NOT_ALLOWED: &str = "the partner may not send events of this event_type";
const EVENT_TYPE_NOT_ROUTED: &str = "no topic takes this event_type (and no topic lists \"*\")";
const BATCH_TOO_LARGE: &str = "a batch holds at most 1000 events";
// The message names the limit; SPEC §1 fixes it, and this keeps the text honest.
const _: () = assert!(BATCH_EVENTS_MAX == 1000);

fn media_type_is(value: Option<&[u8]>, expected: &[u8]) -> bool {
    let Some(value) = value else { return false };
    let media = value.split(|b| *b == b';').next().unwrap_or(value);
    media.trim_ascii().eq_ignore_ascii_case(expected)
}

impl Core {
    /// `POST /v1/events`, `/v1/events/batch` or `/v1/webhooks/<source>`, as `answer.path` says.
    pub(super) fn ingest(
        &mut self,
        request: &Request<'_>,
        peer: Peer<'_>,
        origin: Origin,
        answer: Answer<'_>,
        out: &mut Vec<u8>,
    ) -> Handled {
        let batch = answer.path == PathLabel::EventsBatch;
        let (media, message): (&[u8], &str) = if batch {
            (b"application/x-ndjson", "Content-Type must be application/x-ndjson")
        } else {
            (b"application/json", "Content-Type must be application/json")
        };
        if !media_type_is(request.content_type, media) {
            return Handled::Answered(answer_rejected(out, Reject::UnsupportedMediaType, message, 1, answer));
        }
        let principal = match self.admit(request, peer, answer.path) {
            Ok(principal) => principal,
            Err(refusal) => return Handled::Answered(answer_rejected(out, refusal.reason, refusal.message, 1, answer)),
        };
        let id = request.request_id.or(if answer.path == PathLabel::Webhooks { request.webhook_id } else { None });
        let remember = match id {
            None => None,
            Some(id) => match self.claim_request_id(request, principal, id, answer, out) {
                Ok(remember) => Some(remember),
                Err(written) => return Handled::Answered(written),
            },
        };
        let handled = if batch {
            self.ingest_batch(request.body, principal, origin, answer, out)
        } else {
            self.ingest_single(request.body, principal, origin, answer, out)
        };
        match handled {
            Handled::Answered(written) => {
                if let Some(remember) = remember {
                    self.remember_answer(&remember, &written, &out[written.body.clone()]);
                }
                Handled::Answered(written)
            }
            Handled::Parked(mut pending) => {
                pending.remember = remember;
                Handled::Parked(pending)
            }
            Handled::Consumer(started) => Handled::Consumer(started),
        }
    }

    /// Looks the request id up. `Ok`: a new claim, go on; `Err`: answered (a repeat's
    /// original answer, a conflict, or an invalid id).
    fn claim_request_id(
        &mut self,
        request: &Request<'_>,
        principal: Principal,
        id: &[u8],
        answer: Answer<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Box<Remember>, Written> {
        if !webhooks::is_webhook_id(id) {
            let message = "the request id must be 1 to 256 visible ASCII characters";
            return Err(answer_rejected(out, Reject::RequestIdInvalid, message, 1, answer));
        }
        let partner = &self.keyring.partner(principal.partner).name;
        let digest = request_ids::digest(request.path, request.body);
        match self.control.request_ids.claim(partner, id, digest, self.now_ms) {
            Claim::New(claimed) => Ok(Box::new(Remember { claimed, partner: Box::from(partner.as_str()), id: Box::from(id) })),
            Claim::Repeat { status, body } => {
                // Only statuses sluice sends are remembered (and journaled).
                let status = Status::from_code(status).unwrap_or(Status::InternalServerError);
                Err(answer_repeat(out, status, &body, answer))
            }
            Claim::Conflict => {
                let message = "the request id was already used with another body";
                Err(answer_rejected(out, Reject::RequestIdConflict, message, 1, answer))
            }
            Claim::InProgress => {
                let message = "a request with this id is still being processed; retry";
                Err(answer_rejected(out, Reject::RequestInProgress, message, 1, answer))
            }
        }
    }

    /// Remembers (or, if it asks for a retry, forgets) the answer `written`, whose body
    /// is `body`, of a claimed request, and journals it.
    pub fn remember_answer(&mut self, remember: &Remember, written: &Written, body: &[u8]) {
        if written.asks_retry {
            self.control.request_ids.release(remember.claimed);
            return;
        }
        let status = written.status.code();
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

    /// Housekeeping every `HOUSEKEEPING_MS`: retention, the dedup window, and expired
    /// request-id journal files.
    pub fn housekeeping(&mut self) {
        self.partitions.housekeeping(self.now_ms);
        if let Some(journal) = self.journal.as_mut() {
            journal.prune(self.now_ms);
        }
        self.consume.read_log.prune();
    }

    /// Takes the key ring and JWT verifier a reload put in force (one atomic load each).
    pub fn refresh_shared(&mut self) {
        self.keyring.refresh();
        if let Some(jwt) = self.jwt.as_mut() {
            jwt.refresh();
        }
    }

    /// Writes this loop's side-log appends (request-id journal, quarantine); called
    /// before the loop's answers are handed to the kernel.
    pub fn flush_side_logs(&mut self) {
        if let Some(journal) = self.journal.as_mut() {
            journal.flush(self.now_ms);
        }
        if let Some(writer) = self.quarantine.as_mut() {
            writer.flush(self.now_ms, &self.control.quarantine);
        }
        self.consume.read_log.flush(self.now_ms);
    }

    fn ingest_single(&mut self, body: &[u8], principal: Principal, origin: Origin, answer: Answer<'_>, out: &mut Vec<u8>) -> Handled {
        let line = self.ingest_line(body, principal, origin, 0);
        match line {
            LineResult::Done(outcome) => Handled::Answered(answer_outcome(out, &outcome, answer)),
            LineResult::Rejected { reason, message } => Handled::Answered(answer_rejected(out, reason, message, 1, answer)),
            LineResult::Waiting => {
                let mut results = self.results_pool.pop().unwrap_or_default();
                results.push(line);
                let pending =
                    Pending { path: answer.path, batch: false, keep_alive: answer.keep_alive, outstanding: 1, results, remember: None };
                Handled::Parked(pending)
            }
        }
    }

    fn ingest_batch(&mut self, body: &[u8], principal: Principal, origin: Origin, answer: Answer<'_>, out: &mut Vec<u8>) -> Handled {
        let mut spans = std::mem::take(&mut self.line_spans);
        let count = envelope::ndjson_lines(body, &mut spans, BATCH_EVENTS_MAX);
        if count == 0 {
            self.line_spans = spans;
            return Handled::Answered(answer_refusal(out, Refusal::BatchEmpty, Refusal::BatchEmpty.message(), answer));
        }
        if count > BATCH_EVENTS_MAX {
            self.line_spans = spans;
            return Handled::Answered(answer_rejected(out, Reject::BatchTooLarge, BATCH_TOO_LARGE, count as u64, answer));
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
        let written = answer_pending(out, &pending, answer.stats, answer.topology);
        self.recycle_results(pending.results);
        Handled::Answered(written)
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
        let Some(topic) = self.topology.route(event_type) else {
            return LineResult::Rejected { reason: Reject::EventTypeNotRouted, message: EVENT_TYPE_NOT_ROUTED };
        };
        let partition = partitioner::partition_for(envelope.user_id_hash, self.topology.topic(topic).partitions);
        // From here on `partition` is the slot: unique across topics, owned by one shard.
        let partition = self.topology.slot(topic, partition);
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
        if self.outgoing[owner].items.len() >= HANDOFF_RECORDS_PER_LOOP_MAX {
            return LineResult::Done(Outcome::Overloaded);
        }
        self.outgoing[owner].push(ticket, partition, self.now_ms, envelope.event_id(), &parts);
        LineResult::Waiting
    }

    pub fn recycle_results(&mut self, mut results: Vec<LineResult>) {
        results.clear();
        if self.results_pool.len() < RESULT_VECS_POOLED_MAX {
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
