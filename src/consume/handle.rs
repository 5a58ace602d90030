//! A consumer request in, one answer (or the start of a wait or a stream) out:
//! authentication, the request line, the topic and subscription checks, and the answer.
//! Every request is recorded in the read log.

use std::sync::atomic::Ordering;

use super::auth::{Reader, TOPIC_NOT_ALLOWED};
use super::query::{self, From, QueryError, Route, SseQuery, StreamQuery};
use super::read::{self, PartitionCursor, ReadWait};
use super::readlog::{Kind, ReadRecord};
use super::reorder::Reorder;
use super::stream::{self, Part, SseStream, Stream, SubscriptionStream};
use super::subscriptions::{CursorIn, Definition, Put, ReadFrom, SubscriptionError};
use super::{ConnConsumer, Mode};
use crate::constants::{COMMIT_CURSORS_MAX, CONSUMER_BODY_BYTES_MAX, SSE_RETRY_MS};
use crate::http::{self, Request, Status, itoa_buf};
use crate::ingest::answer::{Answer, Written, answer_method, answer_rejected};
use crate::ingest::handle::{Core, Handled, Peer};
use crate::ingest::refusal::Reject;
use crate::log::partitioner;

/// A consumer request that goes on beyond its first answer.
pub enum Started {
    /// Park the connection until the partition moves or the wait ends.
    Wait(ReadWait),
    /// The stream's head is written; pump it from now on.
    Stream(Box<Stream>),
}

/// Refusal shorthand: reason, message.
type Refused = (Reject, String);

fn refused(reason: Reject, message: impl Into<String>) -> Refused {
    (reason, message.into())
}

impl Core {
    /// Serves a request under `/v1/topics` or `/v1/subscriptions/`.
    pub fn consume_request(
        &mut self,
        request: &Request<'_>,
        peer: Peer<'_>,
        answer: Answer<'_>,
        out: &mut Vec<u8>,
        consumer: &mut Option<Box<ConnConsumer>>,
        monotonic_ms: u64,
    ) -> Handled {
        crate::metrics::ShardStats::add(&self.control.shards[self.shard].consumer_requests, 1);
        if !self.control.ready.load(std::sync::atomic::Ordering::Acquire) {
            // Until every shard has recovered, ends and earliest offsets are not known.
            let refusal = crate::ingest::refusal::Refusal::NotReady;
            return Handled::Answered(crate::ingest::answer::answer_refusal(out, refusal, refusal.message(), answer));
        }
        let route = match query::parse(request.method, request.path, request.query) {
            Ok(route) => route,
            Err(QueryError::Method(allow)) => {
                self.log_refused("", "method_not_allowed");
                let allow = format!("allow: {}\r\n", String::from_utf8_lossy(allow));
                return Handled::Answered(answer_method(out, allow.as_bytes(), answer));
            }
            Err(QueryError::NotFound) => {
                self.log_refused("", "not_found");
                let refusal = crate::ingest::refusal::Refusal::NotFound;
                return Handled::Answered(crate::ingest::answer::answer_refusal(out, refusal, refusal.message(), answer));
            }
            Err(QueryError::Parameter(message)) => {
                self.log_refused("", Reject::ParameterInvalid.code());
                return self.consume_refused(out, answer, refused(Reject::ParameterInvalid, message));
            }
            Err(QueryError::SubscriptionName) => {
                self.log_refused("", Reject::ParameterInvalid.code());
                let message = "a subscription name is 1..=64 characters of [A-Za-z0-9_.-]";
                return self.consume_refused(out, answer, refused(Reject::ParameterInvalid, message));
            }
        };
        let reader = match self.admit_reader(request, peer) {
            Ok(reader) => reader,
            Err((reason, message)) => {
                self.log_refused("", reason.code());
                return Handled::Answered(answer_rejected(out, reason, message, 0, answer));
            }
        };
        let partner = self.keyring.partner(reader.partner).name.clone();
        let result = match route {
            Route::ListTopics => self.list_topics(reader, &partner, answer, out).map(Handled::Answered),
            Route::Read { topic, partition, query } => {
                self.read(reader, &partner, topic, partition, query, answer, out, consumer, monotonic_ms)
            }
            Route::Sse { topic, query } => self.start_sse(reader, &partner, topic, query, request.last_event_id, answer, out, monotonic_ms),
            Route::PutSubscription { name } => self.put_subscription(reader, &partner, name, request, answer, out).map(Handled::Answered),
            Route::Stream { name, query } => self.start_stream(reader, &partner, name, query, answer, out, monotonic_ms),
            Route::Commit { name } => self.commit(reader, &partner, name, request, answer, out).map(Handled::Answered),
            Route::Stats { name } => self.subscription_stats(reader, &partner, name, answer, out).map(Handled::Answered),
        };
        match result {
            Ok(handled) => handled,
            Err(refusal) => {
                self.log_refused(&partner, refusal.0.code());
                self.consume_refused(out, answer, refusal)
            }
        }
    }

    /// Records a refused consumer request: the partner if known, the refusal's code in
    /// the record's subscription field.
    fn log_refused(&mut self, partner: &str, code: &str) {
        let record = ReadRecord {
            time_ms: self.now_ms,
            kind: Kind::Refused,
            partition: None,
            from: 0,
            to: 0,
            events: 0,
            bytes: 0,
            partner,
            topic: "",
            subscription: code,
        };
        self.consume.read_log.record(&record);
    }

    fn consume_refused(&mut self, out: &mut Vec<u8>, answer: Answer<'_>, (reason, message): Refused) -> Handled {
        Handled::Answered(answer_rejected(out, reason, &message, 0, answer))
    }

    fn topic_for(&self, reader: Reader, name: &[u8]) -> Result<u16, Refused> {
        let topic = self.topology.by_name(name).ok_or_else(|| {
            refused(Reject::TopicNotFound, format!("no topic {:?}", String::from_utf8_lossy(&name[..name.len().min(64)])))
        })?;
        if !self.may_read(reader, &self.topology.topic(topic).name) {
            return Err(refused(TOPIC_NOT_ALLOWED.0, TOPIC_NOT_ALLOWED.1));
        }
        Ok(topic)
    }

    /// Subscription `name`, if it exists, is the partner's (another partner's is "not
    /// found": subscriptions are per partner, and their names are not disclosed) and
    /// `reader` may read every one of its topics.
    fn subscription_for(&self, reader: Reader, name: &[u8]) -> Result<String, Refused> {
        let name = std::str::from_utf8(name).map_err(|_| refused(Reject::ParameterInvalid, "subscription name"))?;
        let not_found = || refused(Reject::SubscriptionNotFound, format!("no subscription {name:?}"));
        let (topics, owner) = self.consume.subscriptions.topics_of(name).ok_or_else(not_found)?;
        if owner != self.keyring.partner(reader.partner).name {
            return Err(not_found());
        }
        for topic in &topics {
            self.topic_for(reader, topic.as_bytes())?;
        }
        Ok(name.to_owned())
    }

    fn list_topics(&mut self, reader: Reader, partner: &str, answer: Answer<'_>, out: &mut Vec<u8>) -> Result<Written, Refused> {
        let mut body = Vec::with_capacity(1024);
        let mut number = itoa_buf::Buffer::new();
        body.extend_from_slice(b"{\"topics\":[");
        let mut first = true;
        for topic in self.topology.topics() {
            if !self.may_read(reader, &topic.name) {
                continue;
            }
            if !first {
                body.push(b',');
            }
            first = false;
            body.extend_from_slice(b"{\"name\":\"");
            body.extend_from_slice(topic.name.as_bytes());
            body.extend_from_slice(b"\",\"partitions\":[");
            for partition in 0..topic.partitions {
                let slot = (topic.base + partition) as usize;
                if partition > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(b"{\"partition\":");
                body.extend_from_slice(number.format(u64::from(partition)));
                body.extend_from_slice(b",\"earliest\":");
                body.extend_from_slice(number.format(self.control.start_offsets[slot].load(Ordering::Acquire)));
                body.extend_from_slice(b",\"end\":");
                body.extend_from_slice(number.format(self.control.readable_ends[slot].load(Ordering::Acquire)));
                body.push(b'}');
            }
            body.extend_from_slice(b"]}");
        }
        body.extend_from_slice(b"]}");
        self.log_read(Kind::Topics, partner, "", None, 0, 0, 0, body.len() as u64, "");
        Ok(answer_json(out, Status::Ok, &body, b"", answer))
    }

    #[expect(clippy::too_many_arguments, reason = "one request's parts, passed through once")]
    fn read(
        &mut self,
        reader: Reader,
        partner: &str,
        topic_name: &[u8],
        partition: u32,
        query: query::ReadQuery,
        answer: Answer<'_>,
        out: &mut Vec<u8>,
        consumer: &mut Option<Box<ConnConsumer>>,
        monotonic_ms: u64,
    ) -> Result<Handled, Refused> {
        let topic = self.topic_for(reader, topic_name)?;
        let partitions = self.topology.topic(topic).partitions;
        if partition >= partitions {
            return Err(refused(Reject::PartitionNotFound, format!("the topic has partitions 0..{partitions}")));
        }
        let slot = self.topology.slot(topic, partition);
        let earliest = self.control.start_offsets[slot as usize].load(Ordering::Acquire);
        let end = self.control.readable_ends[slot as usize].load(Ordering::Acquire);
        let from = match query.from {
            From::Earliest => earliest,
            From::Latest => end,
            // Below what retention kept: 416 (SPEC §6). Beyond the end: "nothing at
            // `from` yet", a wait like at the end.
            From::Offset(offset) if offset < earliest => {
                let topic_name = self.topology.topic(topic).name.to_string();
                let record = ReadRecord {
                    time_ms: self.now_ms,
                    kind: Kind::Refused,
                    partition: Some(partition),
                    from: offset,
                    to: offset,
                    events: 0,
                    bytes: 0,
                    partner,
                    topic: &topic_name,
                    subscription: Reject::OffsetOutOfRange.code(),
                };
                self.consume.read_log.record(&record);
                return Ok(Handled::Answered(answer_out_of_range(out, offset, earliest, end, answer)));
            }
            From::Offset(offset) => offset,
        };
        if from >= end && query.wait_ms > 0 {
            let wait = ReadWait {
                slot,
                from,
                max: query.max,
                deadline_ms: monotonic_ms + query.wait_ms,
                keep_alive: answer.keep_alive,
                partner: Box::from(partner),
            };
            return Ok(Handled::Consumer(Started::Wait(wait)));
        }
        let written = self.answer_partition_read(slot, from, query.max, partner, answer, out, consumer).map_err(storage_refusal)?;
        Ok(Handled::Answered(written))
    }

    /// Writes the 200 answer of a read of `slot` from `from` (also when a parked read
    /// wakes) and records it.
    #[expect(clippy::too_many_arguments, reason = "one read's parts")]
    pub fn answer_partition_read(
        &mut self,
        slot: u32,
        from: u64,
        max: u32,
        partner: &str,
        answer: Answer<'_>,
        out: &mut Vec<u8>,
        consumer: &mut Option<Box<ConnConsumer>>,
    ) -> Result<Written, crate::log::StorageError> {
        let (topic, partition) = self.topology.locate(slot);
        let end = self.control.readable_ends[slot as usize].load(Ordering::Acquire);
        let consumer = consumer.get_or_insert_with(Box::default);
        let mut cursor = match consumer.cached.take() {
            Some((cached, cursor)) if cached == slot && cursor.position() == from => cursor,
            _ => PartitionCursor::open_hinted(
                &self.consume.dirs[usize::from(topic)],
                partition,
                from,
                &self.control.seek_hints[slot as usize],
            )?,
        };
        let topic_name = self.topology.topic(topic).name.clone();
        let done = read::answer_read(out, &mut cursor, &topic_name, partition, end, max, answer.keep_alive)?;
        cursor.leave_hint(&self.control.seek_hints[slot as usize]);
        consumer.cached = Some((slot, cursor));
        let body = out.len() - done.bytes as usize..out.len();
        answer.stats.count_answer(answer.path, Status::Ok.code());
        let stats = answer.stats;
        crate::metrics::ShardStats::add(&stats.consumer_events_out, done.events);
        crate::metrics::ShardStats::add(&stats.consumer_bytes_out, done.bytes);
        self.log_read(Kind::Read, partner, &topic_name, Some(partition), from, done.next, done.events, done.bytes, "");
        Ok(Written { status: Status::Ok, body, asks_retry: false })
    }

    fn put_subscription(
        &mut self,
        reader: Reader,
        partner: &str,
        name: &[u8],
        request: &Request<'_>,
        answer: Answer<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Written, Refused> {
        let name = std::str::from_utf8(name).map_err(|_| refused(Reject::ParameterInvalid, "subscription name"))?;
        let definition = parse_definition(request)?;
        for topic in &definition.topics {
            self.topic_for(reader, topic.as_bytes())?;
        }
        let put = self
            .consume
            .subscriptions
            .put(name, definition.clone(), partner, &self.topology, &self.control)
            .map_err(subscription_refusal)?;
        let status = if put == Put::Created { Status::Created } else { Status::Ok };
        let mut body = Vec::new();
        body.extend_from_slice(b"{\"name\":\"");
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(b"\",\"topics\":");
        body.extend_from_slice(serde_json::to_string(&definition.topics).unwrap_or_default().as_bytes());
        body.extend_from_slice(b",\"read_from\":\"");
        body.extend_from_slice(if definition.read_from == ReadFrom::Earliest { b"earliest" } else { b"latest" });
        body.extend_from_slice(b"\"}");
        self.log_read(Kind::Subscribe, partner, "", None, 0, 0, 0, 0, name);
        Ok(answer_json(out, status, &body, b"", answer))
    }

    #[expect(clippy::too_many_arguments, reason = "one request's parts, passed through once")]
    fn start_stream(
        &mut self,
        reader: Reader,
        partner: &str,
        name: &[u8],
        query: StreamQuery,
        answer: Answer<'_>,
        out: &mut Vec<u8>,
        monotonic_ms: u64,
    ) -> Result<Handled, Refused> {
        let name = self.subscription_for(reader, name)?;
        let name = name.as_str();
        self.stream_room()?;
        let id = self.consume.subscriptions.open_stream(name, self.shard).map_err(subscription_refusal)?;
        self.consume.wake |= self.consume.subscriptions.stream_shards(name);
        let mut number = itoa_buf::Buffer::new();
        let mut extra = b"x-stream-id: ".to_vec();
        extra.extend_from_slice(number.format(id));
        extra.extend_from_slice(b"\r\n");
        http::begin_stream(out, Status::Ok, b"application/x-ndjson", &extra);
        answer.stats.count_answer(answer.path, Status::Ok.code());
        self.log_read(Kind::Stream, partner, "", None, 0, 0, 0, 0, name);
        let subscription = SubscriptionStream {
            name: Box::from(name),
            id,
            query,
            seen_generation: 0,
            committed_seen: 0,
            waiting_commit: false,
            next_part: 0,
            reorder: (query.reorder_window_ms > 0).then(|| Reorder::new(query.reorder_window_ms)),
        };
        let stream = Stream {
            kind: stream::Kind::Subscription(Box::new(subscription)),
            parts: Vec::new(),
            last_write_ms: monotonic_ms,
            last_pump_ms: 0,
            ends_at_ms: (query.stream_timeout_ms > 0).then_some(monotonic_ms + query.stream_timeout_ms),
            partner: Box::from(partner),
            expires_ms: reader.expires_ms,
            events: 0,
            bytes: 0,
            ended: false,
        };
        Ok(Handled::Consumer(Started::Stream(Box::new(stream))))
    }

    fn commit(
        &mut self,
        _reader: Reader,
        partner: &str,
        name: &[u8],
        request: &Request<'_>,
        answer: Answer<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Written, Refused> {
        let name = self.subscription_for(_reader, name)?;
        let name = name.as_str();
        let stream = request
            .stream_id
            .and_then(|id| std::str::from_utf8(id).ok()?.parse::<u64>().ok())
            .ok_or_else(|| refused(Reject::ParameterInvalid, "X-Stream-Id must name the stream the cursors came from"))?;
        json_body(request)?;
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Items {
            items: Vec<CursorIn>,
        }
        let items: Items = serde_json::from_slice(request.body)
            .map_err(|error| refused(Reject::BodyInvalid, format!("the body must be {{\"items\":[cursor, ...]}}: {error}")))?;
        if items.items.is_empty() || items.items.len() > COMMIT_CURSORS_MAX {
            return Err(refused(Reject::BodyInvalid, format!("items holds 1..={COMMIT_CURSORS_MAX} cursors")));
        }
        let moved = self
            .consume
            .subscriptions
            .commit(name, stream, &items.items, &self.control, self.now_ms, &mut self.consume.journal)
            .map_err(subscription_refusal)?;
        self.consume.wake |= self.consume.subscriptions.stream_shards(name);
        let last = items.items.last().map_or(0, |cursor| cursor.offset);
        self.log_read(Kind::Commit, partner, "", None, 0, last, moved as u64, 0, name);
        http::write_no_content(out, answer.keep_alive);
        answer.stats.count_answer(answer.path, Status::NoContent.code());
        Ok(Written { status: Status::NoContent, body: out.len()..out.len(), asks_retry: false })
    }

    fn subscription_stats(
        &mut self,
        reader: Reader,
        partner: &str,
        name: &[u8],
        answer: Answer<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Written, Refused> {
        let name = self.subscription_for(reader, name)?;
        let name = name.as_str();
        let rows = self.consume.subscriptions.stats(name).unwrap_or_default();
        let mut body = Vec::with_capacity(128 * rows.len() + 16);
        let mut number = itoa_buf::Buffer::new();
        body.extend_from_slice(b"{\"items\":[");
        for (index, row) in rows.iter().enumerate() {
            if index > 0 {
                body.push(b',');
            }
            let (topic, partition) = self.topology.locate(row.slot);
            let end = self.control.readable_ends[row.slot as usize].load(Ordering::Acquire);
            let lag = end.saturating_sub(row.committed);
            let age_ms = if lag == 0 {
                0
            } else {
                oldest_ingest_ms(
                    &self.consume.dirs[usize::from(topic)],
                    partition,
                    row.committed,
                    end,
                    &self.control.seek_hints[row.slot as usize],
                )
                .map_or(0, |ingest| (self.now_ms - ingest).max(0))
            };
            body.extend_from_slice(b"{\"topic\":\"");
            body.extend_from_slice(self.topology.topic(topic).name.as_bytes());
            body.extend_from_slice(b"\",\"partition\":");
            body.extend_from_slice(number.format(u64::from(partition)));
            body.extend_from_slice(b",\"committed\":");
            match row.committed.checked_sub(1) {
                Some(offset) => body.extend_from_slice(number.format(offset)),
                None => body.extend_from_slice(b"null"),
            }
            body.extend_from_slice(b",\"end\":");
            body.extend_from_slice(number.format(end));
            body.extend_from_slice(b",\"lag\":");
            body.extend_from_slice(number.format(lag));
            body.extend_from_slice(b",\"lag_seconds\":");
            body.extend_from_slice(format!("{:.3}", age_ms as f64 / 1000.0).as_bytes());
            body.extend_from_slice(b",\"stream_id\":");
            if row.owner == 0 {
                body.extend_from_slice(b"null");
            } else {
                body.push(b'"');
                body.extend_from_slice(number.format(row.owner));
                body.push(b'"');
            }
            body.push(b'}');
        }
        body.extend_from_slice(b"]}");
        self.log_read(Kind::Stats, partner, "", None, 0, 0, 0, 0, name);
        Ok(answer_json(out, Status::Ok, &body, b"", answer))
    }

    #[expect(clippy::too_many_arguments, reason = "one request's parts, passed through once")]
    fn start_sse(
        &mut self,
        reader: Reader,
        partner: &str,
        topic_name: &[u8],
        query: SseQuery,
        last_event_id: Option<&[u8]>,
        answer: Answer<'_>,
        out: &mut Vec<u8>,
        monotonic_ms: u64,
    ) -> Result<Handled, Refused> {
        let topic = self.topic_for(reader, topic_name)?;
        self.stream_room()?;
        let partitions: Vec<u32> = match &query.key {
            Some(key) => vec![partitioner::partition_for(partitioner::murmur2(key), self.topology.topic(topic).partitions)],
            None => (0..self.topology.topic(topic).partitions).collect(),
        };
        if matches!(query.from, From::Offset(_)) && partitions.len() != 1 {
            return Err(refused(Reject::ParameterInvalid, "from=<offset> needs key=<user_id> (one partition); use earliest or latest"));
        }
        let resume = match last_event_id {
            Some(id) => Some(
                stream::parse_sse_id(id).ok_or_else(|| refused(Reject::ParameterInvalid, "Last-Event-ID is not an id this stream sent"))?,
            ),
            None => None,
        };
        let mut parts = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let slot = self.topology.slot(topic, partition);
            let earliest = self.control.start_offsets[slot as usize].load(Ordering::Acquire);
            let end = self.control.readable_ends[slot as usize].load(Ordering::Acquire);
            let start = match resume.as_ref().and_then(|pairs| pairs.iter().find(|(p, _)| *p == partition)) {
                Some((_, next)) => (*next).max(earliest).min(end),
                None => match query.from {
                    From::Earliest => earliest,
                    From::Latest => end,
                    From::Offset(offset) => offset.max(earliest).min(end),
                },
            };
            let dir = &self.consume.dirs[usize::from(topic)];
            let cursor =
                PartitionCursor::open_hinted(dir, partition, start, &self.control.seek_hints[slot as usize]).map_err(storage_refusal)?;
            parts.push(Part { slot, cursor, sent_next: start, committed: start });
        }
        http::begin_stream(out, Status::Ok, b"text/event-stream", b"");
        answer.stats.count_answer(answer.path, Status::Ok.code());
        let chunk = http::begin_chunk(out);
        out.extend_from_slice(format!("retry: {SSE_RETRY_MS}\n\n").as_bytes());
        http::finish_chunk(out, chunk);
        let topic_label = self.topology.topic(topic).name.to_string();
        self.log_read(Kind::Sse, partner, &topic_label, None, 0, 0, 0, 0, "");
        let stream = Stream {
            kind: stream::Kind::Sse(Box::new(SseStream { key: query.key, topic })),
            parts,
            last_write_ms: monotonic_ms,
            last_pump_ms: 0,
            ends_at_ms: None,
            partner: Box::from(partner),
            expires_ms: reader.expires_ms,
            events: 0,
            bytes: 0,
            ended: false,
        };
        Ok(Handled::Consumer(Started::Stream(Box::new(stream))))
    }

    /// Room for one more stream on this shard (`CONSUMER_STREAMS_PER_SHARD_MAX`).
    fn stream_room(&self) -> Result<(), Refused> {
        let stats = &self.control.shards[self.shard];
        let open = stats.consumer_streams.load(Ordering::Relaxed) + stats.consumer_sse.load(Ordering::Relaxed);
        if open as usize >= crate::constants::CONSUMER_STREAMS_PER_SHARD_MAX {
            return Err(refused(Reject::Overloaded, "this shard serves as many streams as it may; retry, or use partition reads"));
        }
        Ok(())
    }

    /// Records one consumer request in the read log.
    #[expect(clippy::too_many_arguments, reason = "the read log record's fields")]
    pub fn log_read(
        &mut self,
        kind: Kind,
        partner: &str,
        topic: &str,
        partition: Option<u32>,
        from: u64,
        to: u64,
        events: u64,
        bytes: u64,
        subscription: &str,
    ) {
        self.consume.read_log.record(&ReadRecord {
            time_ms: self.now_ms,
            kind,
            partition,
            from,
            to,
            events,
            bytes,
            partner,
            topic,
            subscription,
        });
    }
}

/// The connection's consumer mode after a started wait or stream.
pub fn mode_of(started: Started) -> Mode {
    match started {
        Started::Wait(wait) => Mode::Waiting(wait),
        Started::Stream(stream) => Mode::Stream(stream),
    }
}

fn answer_json(out: &mut Vec<u8>, status: Status, body: &[u8], extra: &[u8], answer: Answer<'_>) -> Written {
    let slot = http::begin_response(out, status, answer.keep_alive, extra);
    let start = out.len();
    out.extend_from_slice(body);
    let end = out.len();
    http::finish_response(out, slot);
    answer.stats.count_answer(answer.path, status.code());
    Written { status, body: start..end, asks_retry: false }
}

/// `416 offset_out_of_range` with `X-Earliest-Offset` and `X-End-Offset`.
fn answer_out_of_range(out: &mut Vec<u8>, offset: u64, earliest: u64, end: u64, answer: Answer<'_>) -> Written {
    let extra = format!("x-earliest-offset: {earliest}\r\nx-end-offset: {end}\r\n");
    let message = format!("offset {offset} is outside the partition's retained offsets {earliest}..{end}");
    answer.stats.count_rejected(Reject::OffsetOutOfRange, 0);
    let slot = http::begin_response(out, Status::RangeNotSatisfiable, answer.keep_alive, extra.as_bytes());
    let start = out.len();
    http::write_error_body(out, Reject::OffsetOutOfRange.code(), &message);
    let body = start..out.len();
    http::finish_response(out, slot);
    answer.stats.count_answer(answer.path, Status::RangeNotSatisfiable.code());
    Written { status: Status::RangeNotSatisfiable, body, asks_retry: false }
}

fn json_body(request: &Request<'_>) -> Result<(), Refused> {
    let media = request.content_type.map(|value| value.split(|b| *b == b';').next().unwrap_or(value).trim_ascii());
    if !media.is_some_and(|media| media.eq_ignore_ascii_case(b"application/json")) {
        return Err(refused(Reject::UnsupportedMediaType, "Content-Type must be application/json"));
    }
    if request.body.len() > CONSUMER_BODY_BYTES_MAX {
        return Err(refused(Reject::BodyTooLarge, format!("the body may hold at most {CONSUMER_BODY_BYTES_MAX} bytes")));
    }
    Ok(())
}

fn parse_definition(request: &Request<'_>) -> Result<Definition, Refused> {
    json_body(request)?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        topics: Vec<String>,
        #[serde(default)]
        read_from: Option<ReadFrom>,
    }
    let body: Body = serde_json::from_slice(request.body).map_err(|error| {
        refused(Reject::BodyInvalid, format!("the body must be {{\"topics\":[...],\"read_from\":\"earliest\"|\"latest\"}}: {error}"))
    })?;
    if body.topics.is_empty() || body.topics.len() > 64 {
        return Err(refused(Reject::BodyInvalid, "topics lists 1..=64 topics"));
    }
    for (index, topic) in body.topics.iter().enumerate() {
        if body.topics[..index].contains(topic) {
            return Err(refused(Reject::BodyInvalid, "a topic is listed twice"));
        }
    }
    Ok(Definition { topics: body.topics, read_from: body.read_from.unwrap_or(ReadFrom::Latest) })
}

fn subscription_refusal(error: SubscriptionError) -> Refused {
    match error {
        SubscriptionError::NotFound => refused(Reject::SubscriptionNotFound, "no such subscription"),
        SubscriptionError::Conflict => refused(Reject::SubscriptionConflict, "the subscription exists with another definition"),
        SubscriptionError::TooMany => refused(Reject::TooManySubscriptions, "this node keeps no more subscriptions"),
        SubscriptionError::UnknownTopic(topic) => refused(Reject::TopicNotFound, format!("no topic {topic:?}")),
        SubscriptionError::NoFreePartitions { partitions } => {
            refused(Reject::NoFreePartitions, format!("every one of the subscription's {partitions} partitions has a stream already"))
        }
        SubscriptionError::NotOwner { topic, partition } => refused(
            Reject::StreamNotOwner,
            format!("the stream does not own {topic:?} partition {partition} (any more): its events go to another stream"),
        ),
        SubscriptionError::CursorInvalid(message) => refused(Reject::CursorInvalid, message),
        SubscriptionError::Storage(message) => refused(Reject::StorageUnavailable, message),
    }
}

fn storage_refusal(error: crate::log::StorageError) -> Refused {
    tracing::error!(%error, "a consumer read failed");
    refused(Reject::StorageUnavailable, "the partition cannot be read now; retry")
}

/// The ingest time of the first record at or after `from` (below `end`).
pub fn oldest_ingest_ms(dir: &crate::log::DataDir, partition: u32, from: u64, end: u64, hints: &read::SeekHints) -> Option<i64> {
    let mut cursor = PartitionCursor::open_hinted(dir, partition, from, hints).ok()?;
    let mut found = None;
    let mut skipped = 0;
    cursor
        .read(end, 1, &mut skipped, |_, ingest_ms, _| {
            found = Some(ingest_ms);
            false
        })
        .ok()?;
    found
}
