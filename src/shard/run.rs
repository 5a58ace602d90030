//! The reactor loop of one shard, and its tick: timeouts, housekeeping and the drain.

use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Shard;
use super::token::Token;
use crate::constants::{CHECKPOINT_MS, HOUSEKEEPING_MS, RECEIVES_PER_EARLY_FLUSH, TICK_MS};
use crate::http::Phase;
use crate::ingest::answer::{Answer, answer_refusal};
use crate::ingest::refusal::Refusal;
use crate::metrics::{PathLabel, ShardStats};
use crate::net::conn::{Event, SendOp, State};
use crate::platform::time::now_unix_ms;
use crate::reactor;

impl Shard {
    /// Runs until drained. Returns an error only if the ring itself fails.
    pub fn run(&mut self) -> io::Result<()> {
        self.arm_accept(false);
        if self.tls.is_some() {
            self.arm_accept(true);
        }
        self.arm_wake();
        loop {
            let busy = !self.flush.is_empty()
                || !self.rearm.is_empty()
                || !self.core.resolved.is_empty()
                || !self.inbox.is_empty()
                || !self.handshakes.is_empty();
            // Streams held back to their next millisecond (`shard/consume.rs`) need the
            // loop again within one.
            let wait = if busy {
                None
            } else if self.consumers.deferred.is_empty() {
                Some(Duration::from_millis(TICK_MS))
            } else {
                Some(Duration::from_millis(1))
            };
            reactor::submit_and_wait(&self.ring, wait)?;
            let loop_started_ns = self.monotonic_ns();
            self.refresh_tls_config();
            self.core.refresh_shared();
            self.clock.now_ms = loop_started_ns / 1_000_000;
            self.latency.begin(loop_started_ns);
            self.core.now_ms = now_unix_ms();
            self.run_handshakes();
            self.reap();
            self.take_inbox();
            self.core.route_released();
            self.apply_resolved();
            self.hand_off();
            self.start_syncs();
            self.queue_answers();
            // Producers' answers leave before consumers are served: when there are
            // consumers, the answers are submitted first (one non-blocking enter), then
            // the streams are pumped and their output queued.
            if !self.consumers.active.is_empty()
                && let Err(error) = self.ring.submit()
            {
                tracing::error!(shard = self.index, %error, "io_uring submit failed");
            }
            self.poll_consumers();
            self.queue_answers();
            let loop_ended_ns = self.monotonic_ns();
            self.latency.finish(loop_ended_ns, &self.control.shards[self.index].latency);
            self.control.pressure[self.index].count_turn(loop_ended_ns - loop_started_ns);
            let shedding = self.pressure.turn(loop_started_ns, loop_ended_ns) || self.control.budget.tight();
            if shedding != self.core.shedding {
                self.core.shedding = shedding;
                self.control.pressure[self.index].shedding.store(shedding, Ordering::Relaxed);
            }
            ShardStats::add(&self.stats().heartbeat, 1);
            if self.clock.now_ms >= self.last_tick_ms + TICK_MS {
                self.last_tick_ms = self.clock.now_ms;
                self.tick();
                if self.drained() {
                    break;
                }
            }
        }
        self.core.partitions.close();
        Ok(())
    }

    fn reap(&mut self) {
        let mut completions = std::mem::take(&mut self.completions);
        completions.extend(self.ring.completion().map(|cqe| (cqe.user_data(), cqe.result(), cqe.flags())));
        let mut receives = 0;
        for (data, result, flags) in completions.drain(..) {
            match Token::decode(data) {
                Token::Accept => self.on_accept(result, flags, false),
                Token::AcceptTls => self.on_accept(result, flags, true),
                Token::Wake => self.on_wake(flags),
                Token::Recv { slot, generation } => {
                    self.on_recv(slot, generation, result, flags);
                    receives += 1;
                    if receives % RECEIVES_PER_EARLY_FLUSH == 0 {
                        self.flush_early();
                    }
                }
                Token::Send { slot, generation } => self.on_send(slot, generation, result),
                Token::Fsync { partition } => self.core.partitions.sync_done(partition, result),
                Token::Ignore => {}
            }
        }
        self.completions = completions;
    }

    /// Sends the answers ready so far and re-arms their receives without waiting for the
    /// rest of a large batch of completions: under load one loop can reap 128 of them,
    /// and answering all at the end made the first ones wait for the last (measured:
    /// p99 at 100k req/s open loop, docs/PERFORMANCE.md). One extra non-blocking
    /// io_uring_enter per RECEIVES_PER_EARLY_FLUSH requests.
    fn flush_early(&mut self) {
        self.queue_answers();
        if let Err(error) = self.ring.submit() {
            tracing::error!(shard = self.index, %error, "io_uring submit failed");
        }
    }

    /// Queues the sends of every answer ready, re-arms the receives that wait for them and
    /// returns consumed receive buffers to the ring. The side logs are written first, so
    /// what they promise is in the page cache before the client can see the answer.
    fn queue_answers(&mut self) {
        self.core.flush_side_logs();
        self.submit_sends();
        self.rearm_receives();
        self.buffers.publish();
    }

    /// Timeouts, housekeeping and draining; runs every TICK_MS.
    fn tick(&mut self) {
        let now_ms = self.clock.now_ms;
        if now_ms >= self.last_housekeeping_ms + HOUSEKEEPING_MS {
            self.last_housekeeping_ms = now_ms;
            self.core.housekeeping();
        }
        if now_ms >= self.last_checkpoint_ms + CHECKPOINT_MS {
            self.last_checkpoint_ms = now_ms;
            self.core.partitions.checkpoint();
        }
        self.tick_consumers();
        self.sample_buffers();
        let draining = self.control.draining.load(Ordering::Acquire);
        if draining && self.accepting {
            self.stop_accepting();
        }
        for slot in 0..self.conns.len() as u32 {
            let conn = &self.conns[slot as usize];
            match conn.state {
                State::Vacant | State::Dead => continue,
                State::Lingering { until_ms } => {
                    if now_ms >= until_ms {
                        self.kill(slot);
                    }
                    continue;
                }
                _ => {}
            }
            if draining && conn.is_quiet() && conn.is_open() && !crate::consume::ConnConsumer::busy(&conn.consumer) {
                self.kill(slot);
                continue;
            }
            if conn.parked.is_some() || crate::consume::ConnConsumer::busy(&conn.consumer) || now_ms < conn.deadline_ms {
                continue;
            }
            if conn.preamble().is_some() {
                self.proxy_timed_out(slot);
                continue;
            }
            if conn.is_reading() && matches!(conn.phase(), Phase::Head | Phase::Body { .. }) && conn.send == SendOp::Idle {
                self.time_out_request(slot);
            } else {
                self.kill(slot);
            }
        }
    }

    /// Counts this shard's buffers in the memory budget: connection buffers (what a
    /// body's reservation already holds is not counted twice), the pool and the side
    /// logs. Once per tick; the bodies being received are counted as they arrive.
    fn sample_buffers(&mut self) {
        self.pool.trim(crate::constants::POOL_KEEP_BYTES_MAX);
        let mut bytes = self.pool.bytes() + self.core.side_log_bytes();
        for conn in &self.conns {
            // A body being received has its whole room reserved as address space; its
            // reservation counts what fills it, so only bytes past that are added here.
            let input = if conn.held > 0 { (conn.input.len() as u64).saturating_sub(conn.held) } else { conn.input.capacity() as u64 };
            bytes += input + (conn.output.capacity() + conn.sending.capacity() + conn.backlog.capacity()) as u64;
        }
        self.control.budget.resample(self.sampled_bytes, bytes);
        self.sampled_bytes = bytes;
        let pressure = &self.control.pressure[self.index];
        pressure.buffers_bytes.store(bytes, Ordering::Relaxed);
        pressure.busy_milli.store(self.pressure.last_share_milli, Ordering::Relaxed);
    }

    /// A request head or body did not arrive in time: `408`, then the connection closes.
    fn time_out_request(&mut self, slot: u32) {
        let clock = self.clock;
        let conn = &mut self.conns[slot as usize];
        self.pool.lend(&mut conn.output);
        // No request was framed: counted under `other`, not observed as latency.
        let answer =
            Answer { path: PathLabel::Other, keep_alive: false, stats: &self.control.shards[self.index], topology: &self.control.topology };
        answer_refusal(&mut conn.output, Refusal::RequestTimeout, Refusal::RequestTimeout.message(), answer);
        // The body will never be read: its reservation goes now, not after the linger.
        self.control.budget.release(std::mem::take(&mut conn.held));
        conn.input.clear();
        conn.step(Event::Refused, &clock);
        self.after_progress(slot);
    }
}
