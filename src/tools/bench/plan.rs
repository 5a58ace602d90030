//! The request pool of one run: every request built and signed (SPEC §1.1) before the
//! clock starts, so the measured loop only copies bytes. Requests are built in chunks of
//! `BENCH_PLAN_CHUNK_REQUESTS`, in parallel on every core; each chunk is one contiguous
//! byte buffer allocated once, and each request is a 16-byte span into one of them.
//!
//! Each request carries valid envelopes (SPEC §1.2) with event ids unique to this run. A
//! duplicate is not built: its span points at the bytes of one of the last
//! `BENCH_DUPLICATE_LOOKBACK` unique requests of its chunk, so it is byte-identical, as a
//! producer's retry is. A bad-signature request is a unique request whose signature has one hex
//! digit changed; duplicates only ever copy correctly signed requests.
//!
//! Independently of its kind, each request is of a [`RequestClass`]: its events are
//! critical (the usual event types) or optional (`--optional-event-type`, which the
//! server routes to a topic refused first under overload). A duplicate keeps the class
//! of the request it repeats.
//!
//! With `--request-templates` the pool is built from the file's requests instead
//! ([`Plan::from_templates`]): each template is a chunk of its own, and request `i` is
//! template `i mod templates` (every one of kind unique and class critical).

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use aws_lc_rs::hmac;

use crate::constants::{
    BENCH_DUPLICATE_LOOKBACK, BENCH_PLAN_BYTES_MAX, BENCH_PLAN_CHUNK_REQUESTS, BENCH_PLAN_REQUESTS_MAX, BENCH_TEMPLATES_MAX,
};
use crate::perimeter::hmac::sign_v1;
use crate::platform::time::format_rfc3339_ms;
use crate::tools::bench::templates::Template;

/// What a request is; answers are counted per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// Signed, with event ids never sent before in this run.
    Unique,
    /// The exact bytes of an earlier unique request.
    Duplicate,
    /// Unique events with a corrupted signature: the server must answer 401.
    BadSignature,
}

impl RequestKind {
    pub const ALL: [RequestKind; 3] = [RequestKind::Unique, RequestKind::Duplicate, RequestKind::BadSignature];

    pub fn index(self) -> usize {
        self as usize
    }

    /// The key used in reports.
    pub fn name(self) -> &'static str {
        match self {
            RequestKind::Unique => "unique",
            RequestKind::Duplicate => "duplicate",
            RequestKind::BadSignature => "bad_signature",
        }
    }
}

/// Which class a request's events are of. Under overload the server refuses the events of
/// `optional = true` topics first; answers are counted per class to show it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestClass {
    /// The usual event types (`bet`, `win`, `deposit`).
    Critical,
    /// Every event of the request has the optional event type.
    Optional,
}

impl RequestClass {
    pub const ALL: [RequestClass; 2] = [RequestClass::Critical, RequestClass::Optional];

    pub fn index(self) -> usize {
        self as usize
    }

    /// The key used in reports.
    pub fn name(self) -> &'static str {
        match self {
            RequestClass::Critical => "critical",
            RequestClass::Optional => "optional",
        }
    }
}

/// The key requests are signed with.
#[derive(Clone)]
pub struct Signer {
    pub kid: String,
    pub key: hmac::Key,
}

/// What to build. Ratios are in `0.0..=1.0` and sum to at most 1 (checked by the caller).
#[derive(Debug, Clone)]
pub struct PlanSpec {
    /// Requests to build, at most `BENCH_PLAN_REQUESTS_MAX`.
    pub requests: usize,
    /// Events per request; 1 is a single-event body, more an NDJSON batch.
    pub batch: usize,
    /// Pad each event to this many bytes (0: no padding, about 330 bytes).
    pub event_bytes: usize,
    /// `key.user_id` is drawn uniformly from this many users (at least 1).
    pub users: u64,
    pub duplicate_ratio: f64,
    pub bad_signature_ratio: f64,
    /// Fraction of requests whose events are all of `optional_event_type`.
    pub optional_ratio: f64,
    /// The event type of optional requests (valid per SPEC §1.2: `[A-Za-z0-9_.:-]{1,64}`).
    pub optional_event_type: String,
    /// Every unique request carries `X-Request-Id: <run id>-<request index>`.
    pub request_ids: bool,
    /// Seeds the draws (users, duplicates, bad signatures); the same seed gives the same mix.
    pub seed: u64,
    /// `Host` header value and request target.
    pub host: String,
    pub path: String,
    /// Open loop: request `i` is signed with timestamp `now + i / rate` (its intended send
    /// second), so runs of any length stay inside the server's window. Closed loop
    /// (`None`): every request is signed at build time.
    pub rate: Option<f64>,
    /// Part of every event id, so runs never collide with each other's events.
    pub run_id: u32,
}

/// Where one request's bytes are: a range of one chunk's buffer.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u64,
    len: u32,
    chunk: u16,
    kind: RequestKind,
    class: RequestClass,
}

const _: () = assert!(std::mem::size_of::<Span>() == 16);
const _: () = assert!(BENCH_PLAN_REQUESTS_MAX / BENCH_PLAN_CHUNK_REQUESTS <= u16::MAX as usize + 1);

/// The built requests. Read-only; shared by every client thread.
pub struct Plan {
    chunks: Vec<Vec<u8>>,
    spans: Vec<Span>,
    counts: [u64; 3],
    class_counts: [u64; 2],
    /// Events in each request of a chunk, by chunk.
    chunk_events: Vec<u32>,
    build_time: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{requests} requests to pre-build; at most {max} are allowed: shorten --duration, lower --rate or --requests")]
    TooManyRequests { requests: usize, max: usize },
    #[error(
        "the request pool would take about {bytes} bytes ({requests} requests of about {each} bytes); at most {max} are allowed: shorten --duration, lower --rate or --requests"
    )]
    TooLarge { bytes: u64, requests: usize, each: usize, max: u64 },
    #[error("cannot allocate the request pool ({bytes} bytes): shorten --duration, lower --rate or --requests")]
    OutOfMemory { bytes: u64 },
    #[error("a request of {bytes} bytes is larger than 4 GiB")]
    RequestTooLarge { bytes: usize },
    #[error("a request-building thread panicked")]
    BuilderPanicked,
}

impl Plan {
    /// Builds every request at `now_ms` (Unix milliseconds), on up to `workers` threads
    /// (at least one). Each chunk's buffer is allocated once. The result does not depend
    /// on `workers`.
    pub fn build(spec: &PlanSpec, signer: &Signer, now_ms: i64, workers: usize) -> Result<Plan, PlanError> {
        let started = Instant::now();
        if spec.requests > BENCH_PLAN_REQUESTS_MAX {
            return Err(PlanError::TooManyRequests { requests: spec.requests, max: BENCH_PLAN_REQUESTS_MAX });
        }
        // Size the pool from a sample request; later ones are a few digits longer.
        let mut sample = Vec::new();
        Builder::new(spec, signer, now_ms, 0).write_unique(&mut sample, 0, false, RequestClass::Critical);
        // Serials grow a few digits; an optional event type may be longer than `bet`.
        let slack = if spec.optional_ratio > 0.0 { 8 + spec.optional_event_type.len() } else { 8 };
        let each = sample.len() + slack * spec.batch;
        let estimate = each as u64 * spec.requests as u64;
        if estimate > BENCH_PLAN_BYTES_MAX {
            return Err(PlanError::TooLarge { bytes: estimate, requests: spec.requests, each, max: BENCH_PLAN_BYTES_MAX });
        }
        let chunk_count = spec.requests.div_ceil(BENCH_PLAN_CHUNK_REQUESTS);
        let workers = workers.clamp(1, chunk_count.max(1));
        let built: Vec<Result<Vec<BuiltChunk>, PlanError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|worker| {
                    scope.spawn(move || {
                        (worker..chunk_count).step_by(workers).map(|chunk| build_chunk(spec, signer, now_ms, chunk, each)).collect()
                    })
                })
                .collect();
            handles.into_iter().map(|handle| handle.join().unwrap_or(Err(PlanError::BuilderPanicked))).collect()
        });
        let mut chunks: Vec<Option<BuiltChunk>> = (0..chunk_count).map(|_| None).collect();
        for result in built {
            for chunk in result? {
                let index = chunk.index;
                chunks[index] = Some(chunk);
            }
        }
        let mut plan = Plan {
            chunks: Vec::with_capacity(chunk_count),
            spans: Vec::new(),
            counts: [0; 3],
            class_counts: [0; 2],
            chunk_events: vec![spec.batch as u32; chunk_count],
            build_time: Duration::ZERO,
        };
        plan.spans.try_reserve_exact(spec.requests).map_err(|_| PlanError::OutOfMemory { bytes: estimate })?;
        for chunk in chunks.into_iter().flatten() {
            for span in &chunk.spans {
                plan.counts[span.kind.index()] += 1;
                plan.class_counts[span.class.index()] += 1;
            }
            plan.spans.extend_from_slice(&chunk.spans);
            plan.chunks.push(chunk.bytes);
        }
        plan.build_time = started.elapsed();
        Ok(plan)
    }

    /// `requests` requests cycling over `templates` (at least one, at most
    /// `BENCH_TEMPLATES_MAX`), each written for `host`; no byte is copied per request.
    pub fn from_templates(templates: &[Template], host: &str, requests: usize) -> Result<Plan, PlanError> {
        let started = Instant::now();
        if requests > BENCH_PLAN_REQUESTS_MAX {
            return Err(PlanError::TooManyRequests { requests, max: BENCH_PLAN_REQUESTS_MAX });
        }
        assert!(!templates.is_empty() && templates.len() <= BENCH_TEMPLATES_MAX, "{} templates", templates.len());
        let mut chunks = Vec::with_capacity(templates.len());
        let mut cycle = Vec::with_capacity(templates.len());
        for (chunk, template) in templates.iter().enumerate() {
            let mut bytes = Vec::new();
            template.write_request(host, &mut bytes);
            let len = u32::try_from(bytes.len()).map_err(|_| PlanError::RequestTooLarge { bytes: bytes.len() })?;
            let (kind, class) = (RequestKind::Unique, RequestClass::Critical);
            cycle.push(Span { start: 0, len, chunk: chunk as u16, kind, class });
            chunks.push(bytes);
        }
        let mut spans = Vec::new();
        let bytes = requests as u64 * std::mem::size_of::<Span>() as u64;
        spans.try_reserve_exact(requests).map_err(|_| PlanError::OutOfMemory { bytes })?;
        spans.extend(cycle.iter().cycle().take(requests));
        Ok(Plan {
            chunks,
            spans,
            counts: RequestKind::ALL.map(|kind| if kind == RequestKind::Unique { requests as u64 } else { 0 }),
            class_counts: RequestClass::ALL.map(|class| if class == RequestClass::Critical { requests as u64 } else { 0 }),
            chunk_events: templates.iter().map(|template| template.events).collect(),
            build_time: started.elapsed(),
        })
    }

    /// Requests in the pool.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The raw bytes of request `index` (head and body), ready to write.
    pub fn request(&self, index: usize) -> &[u8] {
        let span = self.spans[index];
        &self.chunks[usize::from(span.chunk)][span.start as usize..span.start as usize + span.len as usize]
    }

    pub fn kind(&self, index: usize) -> RequestKind {
        self.spans[index].kind
    }

    pub fn class(&self, index: usize) -> RequestClass {
        self.spans[index].class
    }

    /// Requests of this kind in the whole pool.
    pub fn count(&self, kind: RequestKind) -> u64 {
        self.counts[kind.index()]
    }

    /// Requests of this class in the whole pool.
    pub fn count_class(&self, class: RequestClass) -> u64 {
        self.class_counts[class.index()]
    }

    /// Events in request `index`: `--batch`, or its template's `events`.
    pub fn events(&self, index: usize) -> u64 {
        u64::from(self.chunk_events[usize::from(self.spans[index].chunk)])
    }

    /// Bytes held by the pool (duplicates share their original's bytes).
    pub fn pool_bytes(&self) -> u64 {
        self.chunks.iter().map(|chunk| chunk.len() as u64).sum()
    }

    /// Mean bytes per request on the wire.
    pub fn mean_request_bytes(&self) -> u64 {
        let total: u64 = self.spans.iter().map(|span| u64::from(span.len)).sum();
        total.checked_div(self.spans.len() as u64).unwrap_or(0)
    }

    /// How long building took.
    pub fn build_time(&self) -> Duration {
        self.build_time
    }
}

/// One chunk's requests: plan indices `index * BENCH_PLAN_CHUNK_REQUESTS ..`.
struct BuiltChunk {
    index: usize,
    bytes: Vec<u8>,
    spans: Vec<Span>,
}

fn build_chunk(spec: &PlanSpec, signer: &Signer, now_ms: i64, index: usize, each: usize) -> Result<BuiltChunk, PlanError> {
    let first = index * BENCH_PLAN_CHUNK_REQUESTS;
    let last = (first + BENCH_PLAN_CHUNK_REQUESTS).min(spec.requests);
    let reserve = each as u64 * (last - first) as u64;
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(reserve as usize).map_err(|_| PlanError::OutOfMemory { bytes: reserve })?;
    let mut spans = Vec::new();
    spans.try_reserve_exact(last - first).map_err(|_| PlanError::OutOfMemory { bytes: reserve })?;
    let mut builder = Builder::new(spec, signer, now_ms, index);
    for request in first..last {
        spans.push(builder.next(&mut bytes, request)?);
    }
    Ok(BuiltChunk { index, bytes, spans })
}

const EVENT_TYPES: [&[u8]; 3] = [b"bet", b"win", b"deposit"];
const PLATFORMS: [&[u8]; 3] = [b"ios", b"android", b"web"];
const PAD_OPEN: &[u8] = br#","props":{"pad":""#;
/// Closes the pad string, `props` and the event.
const PAD_CLOSE: &[u8] = br#""}}"#;

/// Builds requests one after another; holds the scratch buffers and the draws.
struct Builder<'a> {
    spec: &'a PlanSpec,
    chunk: u16,
    signer: &'a Signer,
    rng: Rng,
    /// `POST <path> HTTP/1.1` … `X-Timestamp: `: the same for every request.
    head_prefix: Vec<u8>,
    occurred_at: [u8; crate::platform::time::RFC3339_MS_LEN],
    now_secs: u64,
    body: Vec<u8>,
    serial: u64,
    /// Spans of the last unique, correctly signed requests (a ring).
    recent: Vec<Span>,
    recent_next: usize,
}

impl<'a> Builder<'a> {
    /// The builder of chunk `chunk`: its own draws, and event serials that no other
    /// chunk uses.
    fn new(spec: &'a PlanSpec, signer: &'a Signer, now_ms: i64, chunk: usize) -> Builder<'a> {
        let content_type: &[u8] = if spec.batch > 1 { b"application/x-ndjson" } else { b"application/json" };
        let mut head_prefix = Vec::new();
        for piece in [
            b"POST ".as_slice(),
            spec.path.as_bytes(),
            b" HTTP/1.1\r\nHost: ",
            spec.host.as_bytes(),
            b"\r\nContent-Type: ",
            content_type,
            b"\r\nX-Key-Id: ",
            signer.kid.as_bytes(),
            b"\r\nX-Timestamp: ",
        ] {
            head_prefix.extend_from_slice(piece);
        }
        let mut seeder = Rng::new(spec.seed ^ (chunk as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        Builder {
            spec,
            chunk: chunk as u16,
            signer,
            rng: Rng::new(seeder.next()),
            head_prefix,
            occurred_at: format_rfc3339_ms(now_ms),
            now_secs: u64::try_from(now_ms.div_euclid(1000)).unwrap_or(0),
            body: Vec::new(),
            serial: (chunk * BENCH_PLAN_CHUNK_REQUESTS * spec.batch) as u64,
            recent: Vec::with_capacity(BENCH_DUPLICATE_LOOKBACK),
            recent_next: 0,
        }
    }

    fn next(&mut self, out: &mut Vec<u8>, index: usize) -> Result<Span, PlanError> {
        let draw = self.rng.unit();
        let duplicate = draw < self.spec.duplicate_ratio;
        if duplicate && !self.recent.is_empty() {
            let pick = self.rng.below(self.recent.len() as u64) as usize;
            return Ok(Span { kind: RequestKind::Duplicate, ..self.recent[pick] });
        }
        // A duplicate drawn before anything can be copied is built as a unique request.
        let bad = !duplicate && draw < self.spec.duplicate_ratio + self.spec.bad_signature_ratio;
        // Drawn only when there are classes, so a seed gives the same requests as before.
        let optional = self.spec.optional_ratio > 0.0 && self.rng.unit() < self.spec.optional_ratio;
        let class = if optional { RequestClass::Optional } else { RequestClass::Critical };
        let start = out.len();
        self.write_unique(out, index, bad, class);
        let len = out.len() - start;
        let len = u32::try_from(len).map_err(|_| PlanError::RequestTooLarge { bytes: len })?;
        let kind = if bad { RequestKind::BadSignature } else { RequestKind::Unique };
        let span = Span { start: start as u64, len, chunk: self.chunk, kind, class };
        if !bad {
            if self.recent.len() < BENCH_DUPLICATE_LOOKBACK {
                self.recent.push(span);
            } else {
                self.recent[self.recent_next] = span;
                self.recent_next = (self.recent_next + 1) % BENCH_DUPLICATE_LOOKBACK;
            }
        }
        Ok(span)
    }

    /// Appends one request with fresh event ids to `out`.
    fn write_unique(&mut self, out: &mut Vec<u8>, index: usize, bad_signature: bool, class: RequestClass) {
        self.body.clear();
        for line in 0..self.spec.batch {
            if line > 0 {
                self.body.push(b'\n');
            }
            let user = self.rng.below(self.spec.users);
            let event_type = match class {
                RequestClass::Critical => EVENT_TYPES[(self.serial % 3) as usize],
                RequestClass::Optional => self.spec.optional_event_type.as_bytes(),
            };
            write_event(&mut self.body, self.spec, Event { serial: self.serial, event_type, user }, &self.occurred_at);
            self.serial += 1;
        }
        let mut timestamp = [0u8; 20];
        let timestamp = decimal(self.timestamp_secs(index), &mut timestamp);
        let mut signature = sign_v1(&self.signer.key, timestamp, &self.body);
        if bad_signature {
            // One hex digit changed: still well-formed, never valid.
            let digit = &mut signature[3];
            *digit = if *digit == b'0' { b'1' } else { b'0' };
        }
        out.extend_from_slice(&self.head_prefix);
        out.extend_from_slice(timestamp);
        out.extend_from_slice(b"\r\nX-Signature: ");
        out.extend_from_slice(&signature);
        if self.spec.request_ids {
            out.extend_from_slice(format!("\r\nX-Request-Id: {:08x}-{index}", self.spec.run_id).as_bytes());
        }
        out.extend_from_slice(b"\r\nContent-Length: ");
        let mut length = [0u8; 20];
        out.extend_from_slice(decimal(self.body.len() as u64, &mut length));
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&self.body);
    }

    fn timestamp_secs(&self, index: usize) -> u64 {
        match self.spec.rate {
            Some(rate) if rate > 0.0 => self.now_secs + (index as f64 / rate) as u64,
            _ => self.now_secs,
        }
    }
}

/// What varies from one event to the next.
struct Event<'a> {
    serial: u64,
    event_type: &'a [u8],
    user: u64,
}

/// Appends one SPEC §1.2 event; padded with a `props` field to exactly
/// `spec.event_bytes` when that is larger than the event without padding.
fn write_event(out: &mut Vec<u8>, spec: &PlanSpec, event: Event<'_>, occurred_at: &[u8]) {
    let Event { serial, event_type, user } = event;
    let start = out.len();
    let mut digits = [0u8; 20];
    out.extend_from_slice(br#"{"event_id":"b"#);
    out.extend_from_slice(&hex8(spec.run_id));
    out.push(b'-');
    out.extend_from_slice(decimal(serial, &mut digits));
    out.extend_from_slice(br#"","event_type":""#);
    out.extend_from_slice(event_type);
    out.extend_from_slice(br#"","schema_version":"1.3.0","occurred_at":""#);
    out.extend_from_slice(occurred_at);
    out.extend_from_slice(br#"","key":{"user_id":"u_"#);
    let user = decimal(user, &mut digits);
    out.extend_from_slice(user);
    out.extend_from_slice(br#""},"ctx":{"session_id":"s_"#);
    out.extend_from_slice(user);
    out.extend_from_slice(br#"","platform":""#);
    out.extend_from_slice(PLATFORMS[(serial % 3) as usize]);
    out.extend_from_slice(br#"","geo":"TR"},"payload":{"game_id":"slot_wolf","bet":0.5,"win":1.25,"currency":"EUR","provider":"GameCo"}"#);
    let fixed = out.len() - start + PAD_OPEN.len() + PAD_CLOSE.len();
    if spec.event_bytes > fixed {
        out.extend_from_slice(PAD_OPEN);
        out.resize(out.len() + spec.event_bytes - fixed, b'x');
        out.extend_from_slice(PAD_CLOSE);
    } else {
        out.push(b'}');
    }
}

/// `value` in decimal, written at the end of `buffer`.
fn decimal(mut value: u64, buffer: &mut [u8; 20]) -> &[u8] {
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &buffer[at..];
        }
    }
}

fn hex8(value: u32) -> [u8; 8] {
    let mut out = [0u8; 8];
    for (position, byte) in out.iter_mut().enumerate() {
        *byte = b"0123456789abcdef"[((value >> (28 - 4 * position)) & 0xf) as usize];
    }
    out
}

/// SplitMix64: small, fast, and reproducible from `--seed`; not for secrets.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..bound` (`bound` ≥ 1; the modulo bias is below 2^-40 for the
    /// bounds used here).
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;

    use super::*;
    use crate::ingest::envelope::Validator;
    use crate::perimeter::hmac::{AuthError, Credentials, verify_v1};
    use crate::perimeter::keyring::KeyRing;

    const NOW_MS: i64 = 1_790_000_000_123;
    const RING: &str =
        "[[keys]]\nkid = \"bench-1\"\nsecret = \"whsec_c2x1aWNlLWJlbmNoLXBsYW4tdGVzdC1zZWNyZXQtMzI=\"\npartner = \"bench\"\n";

    fn ring() -> KeyRing {
        KeyRing::from_toml(RING, Path::new("test.toml")).expect("test ring")
    }

    fn signer(ring: &KeyRing) -> Signer {
        let key = &ring.keys()[0];
        Signer { kid: key.kid.clone(), key: key.hmac_key().clone() }
    }

    fn spec(requests: usize) -> PlanSpec {
        PlanSpec {
            requests,
            batch: 1,
            event_bytes: 0,
            users: 1000,
            duplicate_ratio: 0.0,
            bad_signature_ratio: 0.0,
            optional_ratio: 0.0,
            optional_event_type: "telemetry".into(),
            request_ids: false,
            seed: 7,
            host: "127.0.0.1:8080".into(),
            path: "/v1/events".into(),
            rate: None,
            run_id: 0xabcd_0123,
        }
    }

    struct Parsed<'a> {
        path: String,
        headers: Vec<(String, &'a [u8])>,
        body: &'a [u8],
    }

    impl Parsed<'_> {
        fn header(&self, name: &str) -> Option<&[u8]> {
            self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
        }
    }

    fn parse(request: &[u8]) -> Parsed<'_> {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Request::new(&mut headers);
        let httparse::Status::Complete(head) = parsed.parse(request).expect("valid request") else { panic!("partial request") };
        let path = parsed.path.expect("path").to_owned();
        let headers: Vec<_> = parsed.headers.iter().map(|h| (h.name.to_owned(), h.value)).collect();
        let length: usize = std::str::from_utf8(headers.iter().find(|(n, _)| n == "Content-Length").expect("length").1)
            .expect("ascii")
            .parse()
            .expect("number");
        assert_eq!(request.len(), head + length, "Content-Length covers exactly the body");
        Parsed { path, headers, body: &request[head..] }
    }

    fn verify(ring: &KeyRing, request: &Parsed<'_>) -> Result<(), AuthError> {
        let credentials = Credentials {
            kid: request.header("X-Key-Id"),
            timestamp: request.header("X-Timestamp"),
            signature: request.header("X-Signature"),
        };
        verify_v1(ring, &credentials, request.body, NOW_MS, 300).map(|_| ())
    }

    #[test]
    fn every_request_is_signed_and_a_valid_envelope() {
        let ring = ring();
        let plan = Plan::build(&spec(200), &signer(&ring), NOW_MS, 2).expect("plan");
        let mut validator = Validator::new(512 * 1024);
        let mut ids = HashSet::new();
        for index in 0..plan.len() {
            let request = parse(plan.request(index));
            assert_eq!(request.path, "/v1/events");
            assert_eq!(request.header("Content-Type"), Some(b"application/json".as_slice()));
            assert_eq!(verify(&ring, &request), Ok(()));
            let envelope = validator.validate(request.body).expect("valid envelope");
            assert!(ids.insert(envelope.event_id().to_vec()), "event ids are unique");
        }
        assert_eq!(plan.count(RequestKind::Unique), 200);
    }

    #[test]
    fn duplicates_are_byte_identical_repeats_of_earlier_unique_requests() {
        let ring = ring();
        let plan = Plan::build(&PlanSpec { duplicate_ratio: 0.3, ..spec(4000) }, &signer(&ring), NOW_MS, 2).expect("plan");
        let duplicates = plan.count(RequestKind::Duplicate);
        assert!((1000..1400).contains(&duplicates), "about 30% duplicates, got {duplicates}");
        let mut seen: HashSet<&[u8]> = HashSet::new();
        for index in 0..plan.len() {
            let bytes = plan.request(index);
            match plan.kind(index) {
                RequestKind::Duplicate => assert!(seen.contains(bytes), "request {index} repeats an earlier one"),
                _ => assert!(seen.insert(bytes), "unique request {index} is new"),
            }
        }
        assert_eq!(seen.len() as u64, plan.count(RequestKind::Unique));
        assert_eq!(plan.pool_bytes(), seen.iter().map(|b| b.len() as u64).sum::<u64>(), "duplicates take no pool bytes");
    }

    #[test]
    fn bad_signature_requests_fail_verification_and_are_never_duplicated() {
        let ring = ring();
        let plan = Plan::build(&PlanSpec { duplicate_ratio: 0.2, bad_signature_ratio: 0.2, ..spec(2000) }, &signer(&ring), NOW_MS, 2)
            .expect("plan");
        let bad = plan.count(RequestKind::BadSignature);
        assert!((300..500).contains(&bad), "about 20% bad signatures, got {bad}");
        let mut bad_bytes = HashSet::new();
        for index in 0..plan.len() {
            let request = parse(plan.request(index));
            match plan.kind(index) {
                RequestKind::BadSignature => {
                    assert_eq!(verify(&ring, &request), Err(AuthError::SignatureInvalid));
                    let good = sign_v1(&signer(&ring).key, request.header("X-Timestamp").expect("ts"), request.body);
                    assert_ne!(request.header("X-Signature"), Some(good.as_slice()));
                    bad_bytes.insert(plan.request(index));
                }
                _ => assert_eq!(verify(&ring, &request), Ok(())),
            }
        }
        for index in 0..plan.len() {
            if plan.kind(index) == RequestKind::Duplicate {
                assert!(!bad_bytes.contains(plan.request(index)));
            }
        }
    }

    #[test]
    fn request_ids_are_unique_and_retries_repeat_them() {
        let ring = ring();
        let plan =
            Plan::build(&PlanSpec { request_ids: true, duplicate_ratio: 0.3, ..spec(500) }, &signer(&ring), NOW_MS, 2).expect("plan");
        let mut by_id = std::collections::HashMap::new();
        for index in 0..plan.len() {
            let request = parse(plan.request(index));
            let id = request.header("X-Request-Id").expect("every request has an id").to_vec();
            let body = request.body.to_vec();
            assert_eq!(by_id.entry(id).or_insert_with(|| body.clone()), &body, "one id, one body");
        }
        assert!(by_id.len() < plan.len(), "a retry repeats its id");
        let plain = Plan::build(&spec(5), &signer(&ring), NOW_MS, 2).expect("plan");
        assert_eq!(parse(plain.request(0)).header("X-Request-Id"), None);
    }

    #[test]
    fn batches_have_one_event_per_line() {
        let ring = ring();
        let plan =
            Plan::build(&PlanSpec { batch: 25, path: "/v1/events/batch".into(), ..spec(10) }, &signer(&ring), NOW_MS, 2).expect("plan");
        let mut validator = Validator::new(512 * 1024);
        for index in 0..plan.len() {
            let request = parse(plan.request(index));
            assert_eq!(request.path, "/v1/events/batch");
            assert_eq!(request.header("Content-Type"), Some(b"application/x-ndjson".as_slice()));
            let lines: Vec<&[u8]> = request.body.split(|&b| b == b'\n').collect();
            assert_eq!(lines.len(), 25);
            for line in lines {
                validator.validate(line).expect("each line is a valid envelope");
            }
        }
        assert!((0..plan.len()).all(|index| plan.events(index) == 25));
    }

    #[test]
    fn events_are_padded_to_the_requested_size() {
        let ring = ring();
        for event_bytes in [100, 600, 4096] {
            let plan = Plan::build(&PlanSpec { batch: 3, event_bytes, ..spec(5) }, &signer(&ring), NOW_MS, 2).expect("plan");
            let mut validator = Validator::new(512 * 1024);
            for index in 0..plan.len() {
                for line in parse(plan.request(index)).body.split(|&b| b == b'\n') {
                    validator.validate(line).expect("padded event is valid");
                    if event_bytes > 400 {
                        assert_eq!(line.len(), event_bytes);
                    } else {
                        assert!(line.len() < 400, "no padding below the natural size");
                    }
                }
            }
        }
    }

    #[test]
    fn open_loop_requests_are_signed_for_their_intended_second() {
        let ring = ring();
        let plan = Plan::build(&PlanSpec { rate: Some(100.0), ..spec(1000) }, &signer(&ring), NOW_MS, 2).expect("plan");
        let timestamp = |index: usize| -> u64 {
            let request = parse(plan.request(index));
            std::str::from_utf8(request.header("X-Timestamp").expect("ts")).expect("ascii").parse().expect("number")
        };
        let now_secs = (NOW_MS / 1000) as u64;
        assert_eq!(timestamp(0), now_secs);
        assert_eq!(timestamp(99), now_secs);
        assert_eq!(timestamp(100), now_secs + 1);
        assert_eq!(timestamp(999), now_secs + 9);
    }

    #[test]
    fn parallel_chunks_build_the_same_pool_with_unique_event_ids() {
        let ring = ring();
        let spec = PlanSpec { duplicate_ratio: 0.1, bad_signature_ratio: 0.1, ..spec(2 * BENCH_PLAN_CHUNK_REQUESTS + 10) };
        let one = Plan::build(&spec, &signer(&ring), NOW_MS, 1).expect("plan");
        let three = Plan::build(&spec, &signer(&ring), NOW_MS, 3).expect("plan");
        assert_eq!(one.len(), spec.requests);
        assert!((0..one.len()).all(|i| one.kind(i) == three.kind(i) && one.request(i) == three.request(i)));
        let mut ids = HashSet::new();
        for index in 0..one.len() {
            if one.kind(index) == RequestKind::Duplicate {
                continue;
            }
            let bytes = one.request(index);
            let at = bytes.windows(12).position(|w| w == b"\"event_id\":\"").expect("event id") + 12;
            let end = bytes[at..].iter().position(|&b| b == b'"').expect("closing quote") + at;
            assert!(ids.insert(bytes[at..end].to_vec()), "event id {} repeats", String::from_utf8_lossy(&bytes[at..end]));
        }
    }

    #[test]
    fn optional_requests_carry_only_the_optional_event_type_and_duplicates_keep_their_class() {
        let ring = ring();
        let spec = PlanSpec { optional_ratio: 0.5, duplicate_ratio: 0.2, batch: 3, path: "/v1/events/batch".into(), ..spec(4000) };
        let plan = Plan::build(&spec, &signer(&ring), NOW_MS, 2).expect("plan");
        let optional = plan.count_class(RequestClass::Optional);
        assert!((1800..2200).contains(&optional), "about half optional, got {optional}");
        assert_eq!(optional + plan.count_class(RequestClass::Critical), 4000);
        let mut validator = Validator::new(512 * 1024);
        let mut class_of: std::collections::HashMap<&[u8], RequestClass> = std::collections::HashMap::new();
        for index in 0..plan.len() {
            let bytes = plan.request(index);
            let class = plan.class(index);
            for line in parse(bytes).body.split(|&b| b == b'\n') {
                let event_type = validator.validate(line).expect("valid envelope").event_type().to_vec();
                let optional = event_type == b"telemetry";
                assert_eq!(optional, class == RequestClass::Optional, "request {index}: {}", String::from_utf8_lossy(&event_type));
            }
            assert_eq!(*class_of.entry(bytes).or_insert(class), class, "a duplicate keeps its original's class");
        }
        for (ratio, all) in [(0.0, RequestClass::Critical), (1.0, RequestClass::Optional)] {
            let plan = Plan::build(&PlanSpec { optional_ratio: ratio, ..spec.clone() }, &signer(&ring), NOW_MS, 2).expect("plan");
            assert_eq!(plan.count_class(all), 4000, "ratio {ratio}");
        }
    }

    #[test]
    fn a_long_optional_event_type_fits_the_reserved_pool() {
        let ring = ring();
        let long = "t".repeat(64);
        let spec = PlanSpec { optional_ratio: 1.0, optional_event_type: long, batch: 10, path: "/v1/events/batch".into(), ..spec(50) };
        let plan = Plan::build(&spec, &signer(&ring), NOW_MS, 1).expect("plan");
        let capacity = plan.chunks.iter().map(Vec::capacity).sum::<usize>() as u64;
        // Growing past the reservation would at least double it.
        assert!(plan.pool_bytes() <= capacity && 2 * capacity < 3 * plan.pool_bytes(), "one allocation per chunk: {capacity}");
        let mut validator = Validator::new(512 * 1024);
        for line in parse(plan.request(0)).body.split(|&b| b == b'\n') {
            validator.validate(line).expect("a 64-byte event type is valid");
        }
    }

    #[test]
    fn templates_are_cycled_and_each_request_counts_its_own_events() {
        let text = "{\"method\":\"POST\",\"path\":\"/one\",\"headers\":[[\"A\",\"1\"]],\"body\":\"x\",\"events\":1}\n\
                    {\"method\":\"POST\",\"path\":\"/many\",\"headers\":[],\"body\":\"xyz\",\"events\":100}\n\
                    {\"method\":\"GET\",\"path\":\"/ping\",\"headers\":[],\"body\":\"\",\"events\":7}\n";
        let file = crate::tools::bench::templates::TemplateFile::parse(Path::new("t.jsonl"), text.as_bytes()).expect("templates");
        let plan = Plan::from_templates(&file.templates, "127.0.0.1:9", 7).expect("plan");
        assert_eq!(plan.len(), 7);
        let paths: Vec<String> = (0..plan.len()).map(|index| parse(plan.request(index)).path).collect();
        assert_eq!(paths, ["/one", "/many", "/ping", "/one", "/many", "/ping", "/one"], "round-robin over the file");
        assert_eq!((0..plan.len()).map(|index| plan.events(index)).collect::<Vec<_>>(), [1, 100, 7, 1, 100, 7, 1]);
        assert_eq!(parse(plan.request(0)).header("A"), Some(b"1".as_slice()));
        assert_eq!(parse(plan.request(1)).header("Host"), Some(b"127.0.0.1:9".as_slice()));
        assert_eq!(parse(plan.request(1)).body, b"xyz");
        assert_eq!((plan.count(RequestKind::Unique), plan.count(RequestKind::Duplicate), plan.count(RequestKind::BadSignature)), (7, 0, 0));
        assert_eq!((plan.count_class(RequestClass::Critical), plan.count_class(RequestClass::Optional)), (7, 0));
        let template_bytes: u64 = (0..3).map(|index| plan.request(index).len() as u64).sum();
        assert_eq!(plan.pool_bytes(), template_bytes, "the pool holds each template once");
    }

    #[test]
    fn the_same_seed_builds_the_same_mix() {
        let ring = ring();
        let spec = PlanSpec { duplicate_ratio: 0.1, bad_signature_ratio: 0.1, ..spec(500) };
        let a = Plan::build(&spec, &signer(&ring), NOW_MS, 2).expect("plan");
        let b = Plan::build(&spec, &signer(&ring), NOW_MS, 2).expect("plan");
        assert!((0..a.len()).all(|i| a.kind(i) == b.kind(i) && a.request(i) == b.request(i)));
    }
}
