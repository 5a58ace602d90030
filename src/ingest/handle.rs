//! An ingest request (`POST /v1/events`, `/v1/events/batch`, `/v1/webhooks/<source>`) in,
//! one answer (now or later) out: content-type pinning, admission (`perimeter`), the
//! request-id claim, validation of each event, and the hand-off of each event to its
//! partition's owner. Refusals are answered from the table in `refusal.rs`.

use std::sync::Arc;

use crate::constants::{BATCH_EVENTS_MAX, HANDOFF_RECORDS_PER_LOOP_MAX, RESULT_VECS_POOLED_MAX};
use crate::http::{Request, Status};
use crate::ingest::answer::{
    Answer, Written, answer_outcome, answer_pending, answer_rate_limited, answer_refusal, answer_rejected, answer_repeat,
};
use crate::ingest::dead_letters::Refused;
use crate::ingest::envelope::{self, Envelope, Stamp, Validator};
use crate::ingest::refusal::{Refusal, Reject};
use crate::log::partitioner;
use crate::metrics::{Control, PathLabel};
use crate::perimeter::admit::Principal;
use crate::perimeter::keyring::KeyRing;
use crate::perimeter::rate::Per;
use crate::perimeter::request_ids::{self, Claim, Claimed};
use crate::perimeter::webhooks;
use crate::platform::swap::Local;
use crate::policy::gates::{Gate, GateRefusal};
use crate::schema::tape::TapeNode;
use crate::shard::handoff::{Outcome, StoreBatch, Ticket};
use crate::shard::partitions::{Partitions, Stored};
use crate::sidelog::journal::{Journal, JournalRecord};
use crate::sidelog::quarantine::QuarantineWriter;

/// What became of one event of a request.
#[derive(Debug, Clone)]
pub enum LineResult {
    Waiting,
    Done(Outcome),
    Rejected { reason: Reject, message: Message },
}

/// The `error.message` of a refused line: fixed text, or text naming a field path or a
/// rule (never a value from the event).
#[derive(Debug, Clone)]
pub enum Message {
    Fixed(&'static str),
    Owned(Box<str>),
}

impl std::ops::Deref for Message {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Message::Fixed(text) => text,
            Message::Owned(text) => text,
        }
    }
}

impl LineResult {
    fn rejected(reason: Reject, message: &'static str) -> LineResult {
        LineResult::Rejected { reason, message: Message::Fixed(message) }
    }
}

/// The line before, for dual-write's pair rule: its event id and schema major, when it
/// passed its checks.
#[derive(Debug, Default)]
pub struct PairMemo {
    event_id: Vec<u8>,
    event_type: Vec<u8>,
    major: Option<u32>,
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
    /// Schemas, policies and gates in force; replaced when the registry changes.
    pub rules: Local<crate::policy::Rules>,
    /// Every user's KYC/RG state (shared by all shards).
    pub gate_state: Arc<crate::policy::gates::GateState>,
    /// The line before in this request, for dual-write's pair rule.
    pub pair: PairMemo,
    /// Registered replay runbooks (`X-Replay-Id`).
    pub governance: Arc<crate::policy::Governance>,
    /// The runbook of the request being handled, when it is a replay.
    pub replay: Option<Arc<crate::policy::replays::ApprovedReplay>>,
    /// This shard's dead-letter queue writer (`None`: `[dlq] bytes_max = 0`).
    pub dlq: Option<crate::sidelog::dlq::DlqWriter>,
    pub dlq_retention_ms: i64,
    /// Requests admitted per partner (ring index) since the last housekeeping tick.
    pub admitted_by_partner: Vec<u64>,
    /// The shard refuses events of optional topics (set every loop turn, `overload.rs`).
    pub shedding: bool,
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
const REPLAY_NOT_IN_RUNBOOK: &str = "the event's bytes are not one of the runbook's items";
const REPLAY_TARGET_INVALID: &str = "the runbook's target is not another stream version of this event's topic";
/// A refusal to keep in the dead-letter queue: its reason and message.
type DeadRefusal = (Reject, &'static str);

const SHEDDING: &str = "the server is overloaded and refuses events of optional topics first; retry after Retry-After seconds";
const DUAL_WRITE_PAIR_MISSING: &str =
    "dual-write is on for this event type: send the event of the older major (same event_id) on the line right before this one";
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
        if let Some(written) = self.refuse_early(request, peer, batch, answer, out) {
            return Handled::Answered(written);
        }
        let (media, message): (&[u8], &str) = if batch {
            (b"application/x-ndjson", "Content-Type must be application/x-ndjson")
        } else {
            (b"application/json", "Content-Type must be application/json")
        };
        if !media_type_is(request.content_type, media) {
            return Handled::Answered(answer_rejected(out, Reject::UnsupportedMediaType, message, 1, answer));
        }
        let principal = match self.admit(request, peer, answer.path) {
            Ok(principal) => {
                if let Some(count) = self.admitted_by_partner.get_mut(principal.partner) {
                    *count += 1;
                } else if principal.partner < crate::constants::PARTNERS_PER_RING_MAX * 2 {
                    self.admitted_by_partner.resize(principal.partner + 1, 0);
                    self.admitted_by_partner[principal.partner] = 1;
                }
                principal
            }
            Err(refusal) => return Handled::Answered(answer_rejected(out, refusal.reason, refusal.message, 1, answer)),
        };
        if let Some(written) = self.limit_principal(request, principal, answer, out) {
            return Handled::Answered(written);
        }
        let id = request.request_id.or(if answer.path == PathLabel::Webhooks { request.webhook_id } else { None });
        let remember = match id {
            None => None,
            Some(id) => match self.claim_request_id(request, principal, id, answer, out) {
                Ok(remember) => Some(remember),
                Err((written, refused)) => {
                    if let Some((reason, message)) = refused {
                        self.dead_letter_request(request, peer, principal, reason.code(), message);
                    }
                    return Handled::Answered(written);
                }
            },
        };
        self.replay = match self.replay_of(request, peer, principal, answer, out) {
            Ok(replay) => replay,
            Err(written) => {
                if let Some(remember) = remember {
                    self.remember_answer(&remember, &written, &out[written.body.clone()]);
                }
                return Handled::Answered(written);
            }
        };
        let handled = if batch {
            self.ingest_batch(request, peer, principal, origin, answer, out)
        } else {
            self.ingest_single(request, peer, principal, origin, answer, out)
        };
        self.replay = None;
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

    /// Refusals decided before the request's signature is checked: the per-address rate
    /// limit, and an optional event while the shard sheds them (its event type sniffed,
    /// `overload.rs`; a line the sniff misses is refused after validation instead).
    fn refuse_early(
        &mut self,
        request: &Request<'_>,
        peer: Peer<'_>,
        batch: bool,
        answer: Answer<'_>,
        out: &mut Vec<u8>,
    ) -> Option<Written> {
        let rate = &self.control.rate;
        if rate.limits(Per::Ip)
            && let Some(ip) = peer.ip
            && let Err(limited) = rate.check_ip(ip, rate.now_ns())
        {
            return Some(answer_rate_limited(out, &limited, 1, answer));
        }
        if self.shedding
            && !batch
            && let Some(event_type) = crate::overload::sniff_event_type(request.body)
            && self.topology.route(event_type).is_some_and(|topic| self.topology.topic(topic).optional)
        {
            return Some(answer_rejected(out, Reject::Overloaded, SHEDDING, 1, answer));
        }
        None
    }

    /// The per-partner and per-key-id rate limits, once the request is known to be theirs.
    fn limit_principal(&mut self, request: &Request<'_>, principal: Principal, answer: Answer<'_>, out: &mut Vec<u8>) -> Option<Written> {
        let rate = &self.control.rate;
        if !rate.limits(Per::Partner) && !rate.limits(Per::Kid) {
            return None;
        }
        let now_ns = rate.now_ns();
        let limited = if rate.limits(Per::Partner)
            && let Err(limited) = rate.check_name(Per::Partner, self.keyring.partner(principal.partner).name.as_bytes(), now_ns)
        {
            limited
        } else if rate.limits(Per::Kid)
            && principal.hmac
            && let Some(kid) = request.key_id
            && let Err(limited) = rate.check_name(Per::Kid, kid, now_ns)
        {
            limited
        } else {
            return None;
        };
        Some(answer_rate_limited(out, &limited, 1, answer))
    }

    /// The registered runbook a request's `X-Replay-Id` names (`None` without one), or
    /// the refusal answered when it names none.
    fn replay_of(
        &mut self,
        request: &Request<'_>,
        peer: Peer<'_>,
        principal: Principal,
        answer: Answer<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Option<Arc<crate::policy::replays::ApprovedReplay>>, Written> {
        let Some(id) = request.replay_id else { return Ok(None) };
        if let Some(replay) = self.governance.replays.get(id, self.now_ms) {
            return Ok(Some(replay));
        }
        let message = "X-Replay-Id names no registered, unexpired runbook: start replays with `sluice replay run`";
        self.dead_letter_request(request, peer, principal, Reject::ReplayNotApproved.code(), message);
        Err(answer_rejected(out, Reject::ReplayNotApproved, message, 1, answer))
    }

    /// Keeps a request refused whole after authentication in the dead-letter queue.
    fn dead_letter_request(&mut self, request: &Request<'_>, peer: Peer<'_>, principal: Principal, code: &str, message: &str) {
        if self.dlq.is_none() {
            return;
        }
        let partner = self.keyring.partner(principal.partner).name.clone();
        let kid = String::from_utf8_lossy(request.key_id.unwrap_or_default()).into_owned();
        let refused = Refused { reason: code, detail: message, partner: &partner, kid: &kid, line: None, body: request.body };
        self.dead_letter(request, peer, &refused);
    }

    /// Keeps each line of a batch refused on this shard (a gated reward is kept by the
    /// shard that judged it, and a line asked to retry is no dead letter).
    fn dead_letter_lines(
        &mut self,
        request: &Request<'_>,
        peer: Peer<'_>,
        principal: Principal,
        results: &[LineResult],
        spans: &[std::ops::Range<usize>],
    ) {
        if self.dlq.is_none() || !results.iter().any(|result| matches!(result, LineResult::Rejected { .. })) {
            return;
        }
        let partner = self.keyring.partner(principal.partner).name.clone();
        let kid = String::from_utf8_lossy(request.key_id.unwrap_or_default()).into_owned();
        for (line, (result, span)) in results.iter().zip(spans).enumerate() {
            if let LineResult::Rejected { reason, message } = result {
                let body = &request.body[span.clone()];
                let refused =
                    Refused { reason: reason.code(), detail: message, partner: &partner, kid: &kid, line: Some(line as u32), body };
                self.dead_letter(request, peer, &refused);
            }
        }
    }

    /// Looks the request id up. `Ok`: a new claim, go on; `Err`: answered (a repeat's
    /// original answer, a conflict, or an invalid id), with the refusal to keep in the
    /// dead-letter queue (a conflict or an invalid id; a repeat's dead letter, if any,
    /// was written the first time, and "in progress" asks for a retry).
    fn claim_request_id(
        &mut self,
        request: &Request<'_>,
        principal: Principal,
        id: &[u8],
        answer: Answer<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Box<Remember>, (Written, Option<DeadRefusal>)> {
        if !webhooks::is_webhook_id(id) {
            let message = "the request id must be 1 to 256 visible ASCII characters";
            return Err((answer_rejected(out, Reject::RequestIdInvalid, message, 1, answer), Some((Reject::RequestIdInvalid, message))));
        }
        let partner = &self.keyring.partner(principal.partner).name;
        let digest = request_ids::digest(request.path, request.body);
        match self.control.request_ids.claim(partner, id, digest, self.now_ms) {
            Claim::New(claimed) => Ok(Box::new(Remember { claimed, partner: Box::from(partner.as_str()), id: Box::from(id) })),
            Claim::Repeat { status, body } => {
                // Only statuses sluice sends are remembered (and journaled).
                let status = Status::from_code(status).unwrap_or(Status::InternalServerError);
                Err((answer_repeat(out, status, &body, answer), None))
            }
            Claim::Conflict => {
                let message = "the request id was already used with another body";
                Err((answer_rejected(out, Reject::RequestIdConflict, message, 1, answer), Some((Reject::RequestIdConflict, message))))
            }
            Claim::InProgress => {
                let message = "a request with this id is still being processed; retry";
                Err((answer_rejected(out, Reject::RequestInProgress, message, 1, answer), None))
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
    /// Bytes the side logs' buffers hold allocated (for the memory budget).
    pub fn side_log_bytes(&self) -> u64 {
        self.journal.as_ref().map_or(0, Journal::buffer_bytes)
            + self.quarantine.as_ref().map_or(0, QuarantineWriter::buffer_bytes)
            + self.dlq.as_ref().map_or(0, crate::sidelog::dlq::DlqWriter::buffer_bytes)
            + self.consume.read_log.buffer_bytes()
    }

    pub fn housekeeping(&mut self) {
        self.partitions.housekeeping(self.now_ms);
        if let Some(journal) = self.journal.as_mut() {
            journal.prune(self.now_ms);
        }
        self.consume.read_log.prune();
        for (partner, count) in self.admitted_by_partner.iter_mut().enumerate() {
            if *count > 0 && partner < self.keyring.partners().len() {
                self.governance.health.admitted(&self.keyring.partner(partner).name, *count, self.now_ms);
            }
            *count = 0;
        }
        if let Some(writer) = self.dlq.as_mut() {
            writer.prune(self.now_ms, self.dlq_retention_ms, &self.control.dlq);
        }
    }

    /// Takes the key ring and JWT verifier a reload put in force (one atomic load each).
    pub fn refresh_shared(&mut self) {
        // A reload may renumber partners: counts not merged yet (at most one housekeeping
        // tick's) then go to the new holder of the number; health is a rate, not a ledger.
        self.keyring.refresh();
        self.rules.refresh();
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
        if let Some(writer) = self.dlq.as_mut() {
            writer.flush(self.now_ms, &self.control.dlq);
        }
        self.consume.read_log.flush(self.now_ms);
    }

    fn ingest_single(
        &mut self,
        request: &Request<'_>,
        peer: Peer<'_>,
        principal: Principal,
        origin: Origin,
        answer: Answer<'_>,
        out: &mut Vec<u8>,
    ) -> Handled {
        let line = self.ingest_line(request.body, principal, origin, 0);
        match line {
            LineResult::Done(outcome) => Handled::Answered(answer_outcome(out, &outcome, answer)),
            LineResult::Rejected { reason, message } => {
                self.dead_letter_request(request, peer, principal, reason.code(), &message);
                Handled::Answered(answer_rejected(out, reason, &message, 1, answer))
            }
            LineResult::Waiting => {
                let mut results = self.results_pool.pop().unwrap_or_default();
                results.push(line);
                let pending =
                    Pending { path: answer.path, batch: false, keep_alive: answer.keep_alive, outstanding: 1, results, remember: None };
                Handled::Parked(pending)
            }
        }
    }

    fn ingest_batch(
        &mut self,
        request: &Request<'_>,
        peer: Peer<'_>,
        principal: Principal,
        origin: Origin,
        answer: Answer<'_>,
        out: &mut Vec<u8>,
    ) -> Handled {
        let body = request.body;
        let mut spans = std::mem::take(&mut self.line_spans);
        let count = envelope::ndjson_lines(body, &mut spans, BATCH_EVENTS_MAX);
        if count == 0 {
            self.line_spans = spans;
            self.dead_letter_request(request, peer, principal, Refusal::BatchEmpty.code(), Refusal::BatchEmpty.message());
            return Handled::Answered(answer_refusal(out, Refusal::BatchEmpty, Refusal::BatchEmpty.message(), answer));
        }
        if count > BATCH_EVENTS_MAX {
            self.line_spans = spans;
            self.dead_letter_request(request, peer, principal, Reject::BatchTooLarge.code(), BATCH_TOO_LARGE);
            return Handled::Answered(answer_rejected(out, Reject::BatchTooLarge, BATCH_TOO_LARGE, count as u64, answer));
        }
        let mut results = self.results_pool.pop().unwrap_or_default();
        let mut outstanding = 0;
        for (index, span) in spans.iter().enumerate() {
            let result = self.ingest_line(&body[span.clone()], principal, origin, index as u16);
            outstanding += usize::from(matches!(result, LineResult::Waiting));
            results.push(result);
        }
        self.dead_letter_lines(request, peer, principal, &results, &spans);
        self.line_spans = spans;
        let pending = Pending { path: answer.path, batch: true, keep_alive: answer.keep_alive, outstanding, results, remember: None };
        if outstanding > 0 {
            return Handled::Parked(pending);
        }
        let written = answer_pending(out, &pending, answer.stats, answer.topology);
        self.recycle_results(pending.results);
        Handled::Answered(written)
    }

    /// Validates one event, checks the partner's scope, its route, schema, policies and
    /// gates, and stores it here or hands it to the owner shard.
    fn ingest_line(&mut self, event: &[u8], principal: Principal, origin: Origin, line: u16) -> LineResult {
        // The line before is a pair only if it was taken: any refusal of this line, at any
        // step, leaves none for the next, and a request starts with none.
        let before = self.pair.major.take().filter(|_| line > 0);
        let Core { validator, keyring, token_scopes, topology, replay, rules, pair, .. } = self;
        let checks = LineChecks { keyring, token_scopes, topology, replay: replay.as_deref(), rules };
        let validated = validator.validate_with(event, |envelope, root| checks.check(event, envelope, root, principal, (&*pair, before)));
        let (envelope, checked) = match validated {
            Ok(validated) => validated,
            Err(error) => return LineResult::rejected(Reject::from(error), error.message()),
        };
        let (mut topic, mut gate, pair_major) = match checked {
            Ok(checked) => checked,
            Err(rejected) => return rejected,
        };
        if self.shedding && self.topology.topic(topic).optional {
            return LineResult::Done(Outcome::Overloaded);
        }
        // The KYC/RG state is the fold of the first stream version (what a restart reads
        // back); a gate event of a newer major or a replay changes nothing.
        if matches!(gate, Some(Gate::Update(_))) && (self.replay.is_some() || self.topology.stream_of(topic).1 > 1) {
            gate = None;
        }
        let replay = self.replay.clone();
        if let Some(replay) = &replay {
            if self.topology.stream_of(replay.target_topic).0 != self.topology.stream_of(topic).0 || replay.target_topic == topic {
                return LineResult::rejected(Reject::ReplayTargetInvalid, REPLAY_TARGET_INVALID);
            }
            topic = replay.target_topic;
        }
        let marker = replay.as_ref().map_or(&[][..], |replay| &replay.marker[..]);
        let ticket = Ticket { shard: self.shard as u16, slot: origin.slot, generation: origin.generation, line };
        let stored = self.store_line(event, &envelope, ticket, topic, gate, marker);
        if let Some(major) = pair_major
            && matches!(stored, LineResult::Waiting | LineResult::Done(Outcome::Accepted { .. } | Outcome::Duplicate { .. }))
        {
            self.pair.major = Some(major);
            self.pair.event_id.clear();
            self.pair.event_id.extend_from_slice(envelope.event_id());
            self.pair.event_type.clear();
            self.pair.event_type.extend_from_slice(envelope.event_type());
        }
        stored
    }

    /// Stores a checked event in `topic`, here or through its owner shard.
    fn store_line(
        &mut self,
        event: &[u8],
        envelope: &Envelope,
        ticket: Ticket,
        topic: u16,
        gate: Option<Gate>,
        marker: &[u8],
    ) -> LineResult {
        let partition = partitioner::partition_for(envelope.user_id_hash, self.topology.topic(topic).partitions);
        // From here on `partition` is the slot: unique across topics, owned by one shard.
        let partition = self.topology.slot(topic, partition);
        let owner = partitioner::owner_shard(partition, self.shards);
        if self.stamp_ms != self.now_ms {
            self.stamp_ms = self.now_ms;
            self.stamp = Stamp::new(self.now_ms);
        }
        let stamp = self.stamp;
        let [head, stamp_part, tail] = envelope::stamped_parts(event, envelope, &stamp);
        let marked = [head, stamp_part, marker, tail];
        let parts: &[&[u8]] = if marker.is_empty() { &[head, stamp_part, tail] } else { &marked };
        if owner == self.shard {
            if let Some(refused) = self.gate_refuses(gate, parts, partition, ticket.line) {
                return LineResult::Done(refused);
            }
            let stored = self.partitions.store(ticket, partition, envelope.event_id(), self.now_ms, parts);
            return match stored {
                Stored::Now(outcome) => {
                    if let Some(offset) = outcome.offset().filter(|_| matches!(outcome, Outcome::Accepted { .. })) {
                        self.apply_gate(gate, offset);
                    }
                    LineResult::Done(outcome)
                }
                Stored::AfterSync { offset, appended } => {
                    if appended {
                        self.apply_gate(gate, offset);
                    }
                    LineResult::Waiting
                }
            };
        }
        if self.outgoing[owner].items.len() >= HANDOFF_RECORDS_PER_LOOP_MAX {
            return LineResult::Done(Outcome::Overloaded);
        }
        self.outgoing[owner].push(ticket, partition, self.now_ms, envelope.event_id(), parts, gate);
        LineResult::Waiting
    }

    /// A reward refused by its gates as the state stands now, where it is to be stored;
    /// its dead letter is written here, the one shard that knows (`stored` is the event
    /// as it would have been stored, `slot` its partition, `line` its line).
    fn gate_refuses(&mut self, gate: Option<Gate>, stored: &[&[u8]], slot: u32, line: u16) -> Option<Outcome> {
        let Some(Gate::Check(check)) = gate else { return None };
        let reason = match self.gate_state.refuses(&check)? {
            GateRefusal::Kyc => Reject::KycGate,
            GateRefusal::Rg => Reject::RgGate,
        };
        self.dead_letter_stored(reason, check.partner as usize, stored, slot, line);
        Some(Outcome::Refused(reason))
    }

    /// Applies a KYC/RG change of an event stored at `offset`.
    fn apply_gate(&self, gate: Option<Gate>, offset: u64) {
        if let Some(Gate::Update(update)) = gate {
            self.gate_state.apply(update, offset);
        }
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
            if let Some(refused) = self.gate_refuses(item.gate, &[event], item.partition, item.ticket.line) {
                self.results_out[from].push((item.ticket, refused));
                continue;
            }
            let stored = self.partitions.store(item.ticket, item.partition, batch.event_id(item), item.ingest_ms, &[event]);
            let offset = match stored {
                Stored::Now(outcome) => {
                    self.results_out[from].push((item.ticket, outcome));
                    outcome.offset().filter(|_| matches!(outcome, Outcome::Accepted { .. }))
                }
                Stored::AfterSync { offset, appended } => appended.then_some(offset),
            };
            if let Some(offset) = offset {
                self.apply_gate(item.gate, offset);
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

/// What a line is checked with while its parsed document is at hand.
struct LineChecks<'c> {
    keyring: &'c Local<KeyRing>,
    token_scopes: &'c crate::perimeter::admit::TokenScopes,
    topology: &'c crate::topics::Topology,
    replay: Option<&'c crate::policy::replays::ApprovedReplay>,
    rules: &'c Local<crate::policy::Rules>,
}

/// The topic an event goes to, its gate part, and its schema major (for the next line's
/// dual-write pair), or the line's refusal.
type Checked = Result<(u16, Option<Gate>, Option<u32>), LineResult>;

impl LineChecks<'_> {
    /// The partner's scope, the route, the replay's item set, then schemas, policies and
    /// gates (`crate::policy`): the topic (stream version) the event goes to and its gate
    /// part, or the line's refusal. Events no rule covers are looked at no further.
    fn check(
        &self,
        event: &[u8],
        envelope: &Envelope,
        root: TapeNode<'_>,
        principal: Principal,
        (pair, before): (&PairMemo, Option<u32>),
    ) -> Checked {
        let event_type = envelope.event_type();
        let partner = self.keyring.partner(principal.partner);
        if !partner.allows_event_type(event_type) || (principal.token && !self.token_scopes.allows_event_type(event_type)) {
            return Err(LineResult::rejected(Reject::EventTypeNotAllowed, EVENT_TYPE_NOT_ALLOWED));
        }
        let Some(topic) = self.topology.route(event_type) else {
            return Err(LineResult::rejected(Reject::EventTypeNotRouted, EVENT_TYPE_NOT_ROUTED));
        };
        if let Some(replay) = self.replay
            && !replay.holds(event)
        {
            return Err(LineResult::rejected(Reject::ReplayNotInRunbook, REPLAY_NOT_IN_RUNBOOK));
        }
        let topic_name = &self.topology.topic(topic).name;
        let rules = self.rules.get();
        if !rules.applies(event_type, topic_name, &partner.name) {
            return Ok((topic, None, None));
        }
        let judged = rules.judge_as(event_type, topic_name, (&partner.name, principal.partner as u32), root).map_err(refused_line)?;
        let Some(passed) = judged.passed else { return Ok((topic, judged.gate, None)) };
        if let Some(older) = passed.pair_major
            && (before != Some(older) || pair.event_id != envelope.event_id() || pair.event_type != event_type)
        {
            return Err(LineResult::rejected(Reject::DualWritePairMissing, DUAL_WRITE_PAIR_MISSING));
        }
        let stream = passed.version.stream_version();
        let target = self.topology.stream(topic, stream).ok_or_else(|| {
            let message = format!(
                "topic {topic_name} has no stream version {stream} for major {}: set versions = {stream} on the topic",
                passed.version.major
            );
            LineResult::Rejected { reason: Reject::SchemaMajorNotEnabled, message: Message::Owned(message.into_boxed_str()) }
        })?;
        Ok((target, judged.gate, Some(passed.version.major)))
    }
}

/// The line refusal of a policy, schema or gate refusal.
fn refused_line(refused: crate::policy::Refused) -> LineResult {
    use crate::policy::Refused;
    use crate::schema::SchemaRefusal;
    let (reason, message) = match refused {
        Refused::BlockedField(text) => (Reject::BlockedField, text),
        Refused::RequiredFieldMissing(text) => (Reject::RequiredFieldMissing, text),
        Refused::GeoNotAllowed(text) => (Reject::GeoNotAllowed, text),
        Refused::SchemaNotRegistered(text) => (Reject::SchemaNotRegistered, text),
        Refused::Schema(SchemaRefusal::Violation(text)) => (Reject::SchemaViolation, text),
        Refused::Schema(SchemaRefusal::VersionUnknown) => {
            return LineResult::rejected(Reject::SchemaVersionUnknown, "schema_version is not a registered version of this event type");
        }
        Refused::Schema(SchemaRefusal::MajorNotEnabled(major)) => {
            (Reject::SchemaMajorNotEnabled, format!("major version {major} of this event type is not enabled yet"))
        }
        Refused::Schema(SchemaRefusal::MajorRetired(major)) => {
            (Reject::SchemaMajorRetired, format!("major version {major} of this event type is retired"))
        }
    };
    LineResult::Rejected { reason, message: Message::Owned(message.into_boxed_str()) }
}
