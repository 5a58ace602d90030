//! The shard's side of consumers (`crate::consume`): parked long-polls and streams on
//! this shard's connections, woken when a partition they wait on moves, when their
//! subscription changes, when their connection drained its output, or by a deadline.
//!
//! Wake-ups: a consumer caught up on a partition sets this shard's bit in
//! `Control::read_waiters[slot]` and looks at the readable end once more; the owner,
//! after publishing a new end (`Partitions::publish_readable`), takes the bits and
//! writes the eventfd of every shard named (its own: a flag). No consumer polls.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::Shard;
use crate::consume::stream::Context;
use crate::consume::{Mode, Started};
use crate::ingest::answer::Answer;
use crate::metrics::{PathLabel, ShardStats};
use crate::net::conn::Event;

/// Consumer connections of one shard and what they wait for.
#[derive(Default)]
pub struct Consumers {
    /// Slots (and generations) of connections in a wait or a stream.
    pub active: Vec<(u32, u32)>,
    /// Per partition slot: the connections caught up on it, at which position.
    pub waits: HashMap<u32, Vec<(u32, u32, u64)>>,
    /// Connections to run forward this loop.
    pub ready: Vec<(u32, u32)>,
    /// Streams woken again in the millisecond they were last pumped: run next
    /// millisecond, so a busy partition costs a stream at most one pump per ms (its
    /// events go out together) and producers' loops stay short.
    pub deferred: Vec<(u32, u32)>,
    /// A wake-up came (an owner moved a partition this shard waits on).
    pub woken: bool,
    /// The subscription registry generation last looked at.
    pub generation: u64,
}

impl Shard {
    /// A consumer request started a wait or a stream on `slot`.
    pub(super) fn consumer_started(&mut self, slot: u32, started: Started) {
        let conn = &mut self.conns[slot as usize];
        let consumer = conn.consumer.get_or_insert_with(Box::default);
        let stats = &self.control.shards[self.index];
        match &started {
            Started::Wait(_) => ShardStats::add(&stats.consumer_waiting, 1),
            Started::Stream(stream) if stream.subscription().is_some() => ShardStats::add(&stats.consumer_streams, 1),
            Started::Stream(_) => ShardStats::add(&stats.consumer_sse, 1),
        }
        consumer.mode = crate::consume::mode_of(started);
        let generation = conn.generation;
        self.consumers.active.push((slot, generation));
        self.consumers.ready.push((slot, generation));
    }

    /// After framing: a consumer request that started a wait or a stream is registered;
    /// a waiting or streaming connection whose peer closed is looked at this loop.
    pub(super) fn after_drive_consumer(&mut self, slot: u32, started: Option<Started>) {
        if let Some(started) = started {
            return self.consumer_started(slot, started);
        }
        let conn = &self.conns[slot as usize];
        if crate::consume::ConnConsumer::busy(&conn.consumer) && conn.peer_closed() {
            self.consumers.ready.push((slot, conn.generation));
        }
    }

    /// The connection in `slot` leaves consumer mode (its wait answered, its stream
    /// over, or the connection gone): gauges down, a subscription stream given back.
    pub(super) fn consumer_finished(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        let Some(consumer) = conn.consumer.as_mut() else { return };
        let mode = std::mem::take(&mut consumer.mode);
        let stats = &self.control.shards[self.index];
        match mode {
            Mode::Idle => return,
            Mode::Waiting(_) => ShardStats::sub(&stats.consumer_waiting, 1),
            Mode::Stream(stream) => {
                match stream.subscription() {
                    Some((name, id)) => {
                        ShardStats::sub(&stats.consumer_streams, 1);
                        self.core.consume.subscriptions.close_stream(name, id);
                        self.core.consume.wake |= self.core.consume.subscriptions.stream_shards(name);
                    }
                    None => ShardStats::sub(&stats.consumer_sse, 1),
                }
                let partner = stream.partner.clone();
                let subscription = stream.subscription().map(|(name, _)| name.to_owned()).unwrap_or_default();
                let kind = stream.read_kind();
                self.core.log_read(kind, &partner, "", None, 0, 0, stream.events, stream.bytes, &subscription);
            }
        }
        let generation = conn.generation;
        self.consumers.active.retain(|entry| *entry != (slot, generation));
        self.consumers.waits.retain(|_, waiters| {
            waiters.retain(|(known, known_generation, _)| (*known, *known_generation) != (slot, generation));
            !waiters.is_empty()
        });
    }

    /// Runs consumer connection `slot` forward: answers a parked read whose partition
    /// moved (or whose wait is over), pumps a stream.
    pub(super) fn pump_consumer(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if !conn.in_use() {
            return;
        }
        if conn.peer_closed() && crate::consume::ConnConsumer::busy(&conn.consumer) {
            // The client left while waiting or streaming: nothing more is owed to it.
            return self.kill(slot);
        }
        let reading = conn.is_reading();
        let Some(consumer) = conn.consumer.as_mut() else { return };
        match &mut consumer.mode {
            Mode::Idle => {}
            Mode::Waiting(wait) => {
                let wait = wait.clone();
                if !reading {
                    // The client closed while waiting: nothing to answer.
                    self.consumer_finished(slot);
                    return self.after_progress(slot);
                }
                let end = self.control.readable_ends[wait.slot as usize].load(Ordering::Acquire);
                if end <= wait.from && self.clock.now_ms < wait.deadline_ms {
                    self.wait_on(wait.slot, slot, wait.from);
                    return;
                }
                self.consumer_finished(slot);
                let Shard { conns, core, control, pool, latency, clock, .. } = self;
                let conn = &mut conns[slot as usize];
                pool.lend(&mut conn.output);
                let answer = Answer {
                    path: PathLabel::Topics,
                    keep_alive: wait.keep_alive,
                    stats: &control.shards[core.shard],
                    topology: &control.topology,
                };
                let out = &mut conn.output;
                match core.answer_partition_read(wait.slot, wait.from, wait.max, &wait.partner, answer, out, &mut conn.consumer) {
                    Ok(_) => {}
                    Err(error) => {
                        tracing::error!(%error, "a parked consumer read failed");
                        let refusal = crate::ingest::refusal::Refusal::Event(crate::ingest::refusal::Reject::StorageUnavailable);
                        crate::ingest::answer::answer_refusal(out, refusal, "the partition cannot be read now; retry", answer);
                    }
                }
                latency.answered();
                conn.step(Event::Resolved { keep_alive: wait.keep_alive }, clock);
                if conn.is_reading() && !conn.input.is_empty() {
                    return self.drive(slot);
                }
                self.after_progress(slot);
            }
            Mode::Stream(_) => self.pump_stream(slot, reading),
        }
    }

    fn pump_stream(&mut self, slot: u32, reading: bool) {
        if !reading {
            // The peer closed (or the connection is being closed): the stream is over.
            self.consumer_finished(slot);
            return self.after_progress(slot);
        }
        let Shard { conns, core, control, pool, clock, .. } = self;
        let conn = &mut conns[slot as usize];
        let Some(consumer) = conn.consumer.as_mut() else { return };
        let Mode::Stream(stream) = &mut consumer.mode else { return };
        pool.lend(&mut conn.output);
        let context = Context {
            control,
            topology: &control.topology,
            dirs: &core.consume.dirs,
            subscriptions: &core.consume.subscriptions,
            now_ms: clock.now_ms,
            wall_ms: core.now_ms,
        };
        let pumped = match stream.pump(&context, &mut conn.output) {
            Ok(pumped) => pumped,
            Err(error) => {
                tracing::error!(%error, "a consumer stream cannot read its partition; ending it");
                stream.end(&mut conn.output);
                crate::consume::stream::Pumped { ended: true, ..Default::default() }
            }
        };
        let stats = &control.shards[core.shard];
        ShardStats::add(&stats.consumer_events_out, pumped.events);
        ShardStats::add(&stats.consumer_bytes_out, pumped.bytes);
        ShardStats::add(&stats.consumer_redelivered, pumped.redelivered);
        ShardStats::add(&stats.consumer_late, pumped.late);
        ShardStats::add(&stats.consumer_reorder_forced, pumped.forced);
        if conn.output.is_empty() {
            pool.give_back(&mut conn.output);
        }
        if pumped.ended {
            self.consumer_finished(slot);
            let conn = &mut self.conns[slot as usize];
            // The answer is complete: send it and close.
            conn.step(Event::Resolved { keep_alive: false }, &self.clock);
            return self.after_progress(slot);
        }
        for (partition_slot, position) in pumped.caught_up {
            self.wait_on(partition_slot, slot, position);
        }
        self.after_progress(slot);
    }

    /// Parks connection `slot` on partition `partition_slot` at `position`, or makes it
    /// ready at once if the partition moved past it meanwhile.
    fn wait_on(&mut self, partition_slot: u32, slot: u32, position: u64) {
        let generation = self.conns[slot as usize].generation;
        let waiters = self.consumers.waits.entry(partition_slot).or_default();
        if let Some(entry) = waiters.iter_mut().find(|(known, known_generation, _)| *known == slot && *known_generation == generation) {
            // Registered already, so this shard's bit is set (an owner that took it woke
            // us, and the wake-up either took this entry or set the bit again).
            entry.2 = position;
            if self.control.readable_ends[partition_slot as usize].load(Ordering::Acquire) > position {
                self.consumers.woken = true;
            }
            return;
        }
        waiters.push((slot, generation, position));
        let bit = 1u64 << (self.index % 64);
        self.control.read_waiters[partition_slot as usize].fetch_or(bit, Ordering::SeqCst);
        if self.control.readable_ends[partition_slot as usize].load(Ordering::SeqCst) > position {
            self.consumers.woken = true;
        }
    }

    /// Once per loop: publishes this shard's partitions to consumers (waking the shards
    /// parked on them), then runs forward every consumer connection that has something
    /// to do.
    pub(super) fn poll_consumers(&mut self) {
        let wake = self.core.partitions.publish_readable() | std::mem::take(&mut self.core.consume.wake);
        if wake != 0 {
            // Bit `shard % 64`: past 64 shards a bit wakes every shard that shares it.
            for shard in 0..self.wakers.len() {
                if wake & (1 << (shard % 64)) == 0 {
                    continue;
                }
                if shard == self.index {
                    self.consumers.woken = true;
                } else {
                    self.wakers[shard].notify();
                }
            }
        }
        if self.consumers.active.is_empty() {
            return;
        }
        let generation = self.core.consume.subscriptions.generation();
        if generation != self.consumers.generation {
            self.consumers.generation = generation;
            for (slot, conn_generation) in self.consumers.active.clone() {
                let stale = self.conns[slot as usize]
                    .consumer
                    .as_ref()
                    .is_some_and(|consumer| matches!(&consumer.mode, Mode::Stream(stream) if stream.stale(generation)));
                if stale {
                    self.consumers.ready.push((slot, conn_generation));
                }
            }
        }
        if std::mem::take(&mut self.consumers.woken) {
            let bit = 1u64 << (self.index % 64);
            let waits = std::mem::take(&mut self.consumers.waits);
            let mut kept = HashMap::with_capacity(waits.len());
            for (partition_slot, waiters) in waits {
                let end = self.control.readable_ends[partition_slot as usize].load(Ordering::SeqCst);
                let mut still = Vec::new();
                for (slot, generation, position) in waiters {
                    if end > position {
                        self.consumers.ready.push((slot, generation));
                    } else {
                        still.push((slot, generation, position));
                    }
                }
                if !still.is_empty() {
                    // The owner took our bit when it woke us: set it again for the rest.
                    self.control.read_waiters[partition_slot as usize].fetch_or(bit, Ordering::SeqCst);
                    if self.control.readable_ends[partition_slot as usize].load(Ordering::SeqCst) > end {
                        self.consumers.woken = true;
                    }
                    kept.insert(partition_slot, still);
                }
            }
            self.consumers.waits = kept;
        }
        self.run_ready();
    }

    /// Runs forward the consumer connections made ready this loop (streams pumped this
    /// millisecond already wait for the next).
    fn run_ready(&mut self) {
        let mut ready = std::mem::take(&mut self.consumers.ready);
        ready.append(&mut self.consumers.deferred);
        let now_ms = self.clock.now_ms;
        for (slot, generation) in ready {
            let conn = &mut self.conns[slot as usize];
            if !conn.in_use() || conn.generation != generation {
                continue;
            }
            if let Some(Mode::Stream(stream)) = conn.consumer.as_deref_mut().map(|consumer| &mut consumer.mode) {
                if stream.last_pump_ms == now_ms && !stream.ended {
                    if !self.consumers.deferred.contains(&(slot, generation)) {
                        self.consumers.deferred.push((slot, generation));
                    }
                    continue;
                }
                stream.last_pump_ms = now_ms;
            }
            self.pump_consumer(slot);
        }
    }

    /// Every tick: waits that are over, streams due a keep-alive or at their end, and
    /// subscription streams past their commit timeout.
    pub(super) fn tick_consumers(&mut self) {
        let now_ms = self.clock.now_ms;
        // A look at every waited partition each tick as well: a wake-up can never be
        // lost for longer than a tick, whatever happens to an eventfd write.
        if !self.consumers.waits.is_empty() {
            self.consumers.woken = true;
        }
        // Draining: a long-poll is answered with what there is, a stream gets its last
        // chunk; then their connections close like any other.
        if self.control.draining.load(Ordering::Acquire) {
            for (slot, generation) in self.consumers.active.clone() {
                let conn = &mut self.conns[slot as usize];
                if !conn.in_use() || conn.generation != generation {
                    continue;
                }
                let Some(consumer) = conn.consumer.as_mut() else { continue };
                match &mut consumer.mode {
                    Mode::Idle => continue,
                    Mode::Waiting(wait) => wait.deadline_ms = 0,
                    Mode::Stream(stream) => stream.ends_at_ms = Some(0),
                }
                self.consumers.ready.push((slot, generation));
            }
            return;
        }
        for (slot, generation) in self.consumers.active.clone() {
            let conn = &self.conns[slot as usize];
            if !conn.in_use() || conn.generation != generation {
                self.consumers.active.retain(|entry| *entry != (slot, generation));
                continue;
            }
            let Some(consumer) = conn.consumer.as_ref() else { continue };
            match &consumer.mode {
                Mode::Idle => {}
                Mode::Waiting(wait) if now_ms >= wait.deadline_ms => self.consumers.ready.push((slot, generation)),
                Mode::Waiting(_) => {}
                Mode::Stream(stream) => {
                    if !self.core.still_allowed(stream) {
                        tracing::info!(
                            partner = &*stream.partner,
                            "a stream's credential expired or its partner may no longer read it: ending it"
                        );
                        if let Some(Mode::Stream(stream)) = self.conns[slot as usize].consumer.as_mut().map(|consumer| &mut consumer.mode) {
                            stream.ends_at_ms = Some(0);
                        }
                        self.consumers.ready.push((slot, generation));
                        continue;
                    }
                    let due = stream.due(now_ms);
                    if let Some((name, id)) = stream.subscription()
                        && let Some(since) = self.core.consume.subscriptions.waiting_since(name, id)
                        && let crate::consume::stream::Kind::Subscription(subscription) = &stream.kind
                        && self.core.now_ms - since > subscription.query.commit_timeout_ms as i64
                    {
                        tracing::info!(subscription = name, stream = id, "no commit within the commit timeout: ending the stream");
                        ShardStats::add(&self.control.shards[self.index].consumer_commit_timeouts, 1);
                        let (name, id) = (name.to_owned(), id);
                        self.core.consume.subscriptions.close_stream(&name, id);
                        self.consumers.ready.push((slot, generation));
                    } else if due {
                        self.consumers.ready.push((slot, generation));
                    }
                }
            }
        }
    }

    /// A consumer connection being torn down (killed, or its slot freed).
    pub(super) fn consumer_gone(&mut self, slot: u32) {
        self.consumer_finished(slot);
        self.conns[slot as usize].consumer = None;
    }
}
