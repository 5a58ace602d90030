//! What shards send each other: batches of records to store on the owner of their
//! partition, and the outcomes back to the shard that holds the connection.
//! Batches are recycled (`Spent`), so steady traffic allocates nothing per request.
//! Each loop a shard takes its inbox, answers the parked requests whose outcomes are
//! all in, and sends at most one batch and one list of outcomes to each other shard.

use crossbeam_channel::TrySendError;

use super::Shard;
use crate::constants::INBOX_MESSAGES_PER_LOOP_MAX;
use crate::ingest::answer::answer_pending;
use crate::ingest::handle::LineResult;
use crate::net::conn::{Event, Parked};

/// Identifies one event of one request on one connection of one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub shard: u16,
    pub slot: u32,
    pub generation: u32,
    /// Index of the event within its request (0 for a single event).
    pub line: u16,
}

/// The result of trying to store one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted {
        partition: u32,
        offset: u64,
    },
    Duplicate {
        partition: u32,
        offset: u64,
    },
    /// Storage failed or stopped (fail-stop after an fsync error, disk full).
    StorageUnavailable,
    /// The owner shard's inbox was full.
    Overloaded,
    /// Refused where it was to be stored: a reward whose user's KYC/RG state, as stored
    /// before it, does not pass its gate (`policy::gates`).
    Refused(crate::ingest::refusal::Reject),
}

impl Outcome {
    /// The offset that must be durable before this outcome may be sent.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Outcome::Accepted { offset, .. } | Outcome::Duplicate { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}

/// One record inside a [`StoreBatch`]; ranges index `StoreBatch::data`.
#[derive(Debug, Clone, Copy)]
pub struct StoreItem {
    pub ticket: Ticket,
    pub partition: u32,
    pub ingest_ms: i64,
    pub start: u32,
    pub id_len: u16,
    pub event_len: u32,
    /// The KYC/RG change the event makes once stored, or the gate it must pass.
    pub gate: Option<crate::policy::gates::Gate>,
}

/// Records from one shard for partitions another shard owns.
#[derive(Debug, Default)]
pub struct StoreBatch {
    pub data: Vec<u8>,
    pub items: Vec<StoreItem>,
}

impl StoreBatch {
    pub fn push(
        &mut self,
        ticket: Ticket,
        partition: u32,
        ingest_ms: i64,
        event_id: &[u8],
        parts: &[&[u8]],
        gate: Option<crate::policy::gates::Gate>,
    ) {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(event_id);
        let mut event_len = 0;
        for part in parts {
            self.data.extend_from_slice(part);
            event_len += part.len();
        }
        self.items.push(StoreItem {
            ticket,
            partition,
            ingest_ms,
            start,
            id_len: event_id.len() as u16,
            event_len: event_len as u32,
            gate,
        });
    }

    pub fn event_id(&self, item: &StoreItem) -> &[u8] {
        &self.data[item.start as usize..item.start as usize + usize::from(item.id_len)]
    }

    pub fn event(&self, item: &StoreItem) -> &[u8] {
        let from = item.start as usize + usize::from(item.id_len);
        &self.data[from..from + item.event_len as usize]
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.items.clear();
    }
}

#[derive(Debug)]
pub enum Message {
    Store {
        from: usize,
        batch: StoreBatch,
    },
    Results(Vec<(Ticket, Outcome)>),
    /// A processed store batch going home to be reused.
    Spent(StoreBatch),
}

impl Shard {
    /// Applies outcomes decided after their request parked, answering finished requests.
    pub(super) fn apply_resolved(&mut self) {
        while !self.core.resolved.is_empty() {
            let mut resolved = std::mem::take(&mut self.core.resolved);
            for (ticket, outcome) in resolved.drain(..) {
                self.resolve(ticket, outcome);
            }
            if self.core.resolved.is_empty() {
                self.core.resolved = resolved;
            }
        }
    }

    fn resolve(&mut self, ticket: Ticket, outcome: Outcome) {
        let slot = ticket.slot;
        let Some(conn) = self.conns.get_mut(slot as usize) else { return };
        if !conn.in_use() || conn.generation != ticket.generation {
            return;
        }
        let Some(parked) = conn.parked.as_mut() else { return };
        let Some(line) = parked.pending.results.get_mut(usize::from(ticket.line)) else { return };
        if !matches!(line, LineResult::Waiting) {
            return;
        }
        *line = LineResult::Done(outcome);
        parked.pending.outstanding -= 1;
        if parked.pending.outstanding > 0 {
            return;
        }
        let Some(Parked { mut pending, framed_ns }) = conn.parked.take() else { return };
        let stats = &self.control.shards[self.index];
        if conn.is_reading() {
            self.pool.lend(&mut conn.output);
            let written = answer_pending(&mut conn.output, &pending, stats, &self.control.topology);
            if let Some(remember) = pending.remember.take() {
                self.core.remember_answer(&remember, &written, &conn.output[written.body.clone()]);
            }
            self.latency.answered_parked(framed_ns);
            conn.step(Event::Resolved { keep_alive: pending.keep_alive }, &self.clock);
        } else if let Some(remember) = pending.remember.take() {
            // The client is gone, but its repeat must still get this answer.
            let mut scratch = Vec::new();
            let written = answer_pending(&mut scratch, &pending, stats, &self.control.topology);
            self.core.remember_answer(&remember, &written, &scratch[written.body.clone()]);
        }
        self.core.recycle_results(pending.results);
        // Framing goes on behind the resolved request; `drive` alone decides when the
        // input of a peer that closed is worked off.
        if self.conns[slot as usize].is_reading() {
            return self.drive(slot);
        }
        self.after_progress(slot);
    }

    pub(super) fn take_inbox(&mut self) {
        for _ in 0..INBOX_MESSAGES_PER_LOOP_MAX {
            let Ok(message) = self.inbox.try_recv() else { break };
            match message {
                Message::Store { from, mut batch } => {
                    self.core.store_batch(from, &batch);
                    batch.clear();
                    self.spent_out[from].push(batch);
                }
                Message::Results(mut items) => {
                    self.core.resolved.append(&mut items);
                    self.results_vecs.push(items);
                }
                Message::Spent(batch) => self.core.spare_batches.push(batch),
            }
        }
    }

    /// Sends this loop's batches and outcomes to the other shards and wakes them.
    pub(super) fn hand_off(&mut self) {
        for dest in 0..self.peers.len() {
            if dest == self.index {
                continue;
            }
            let mut wake = false;
            if !self.core.outgoing[dest].items.is_empty() {
                let spare = self.core.spare_batches.pop().unwrap_or_default();
                let batch = std::mem::replace(&mut self.core.outgoing[dest], spare);
                match self.peers[dest].try_send(Message::Store { from: self.index, batch }) {
                    Ok(()) => wake = true,
                    Err(
                        TrySendError::Full(Message::Store { mut batch, .. }) | TrySendError::Disconnected(Message::Store { mut batch, .. }),
                    ) => {
                        for item in &batch.items {
                            self.core.resolved.push((item.ticket, Outcome::Overloaded));
                        }
                        batch.clear();
                        self.core.spare_batches.push(batch);
                    }
                    Err(_) => {}
                }
            }
            if !self.core.results_out[dest].is_empty() {
                let fresh = self.results_vecs.pop().unwrap_or_default();
                let items = std::mem::replace(&mut self.core.results_out[dest], fresh);
                match self.peers[dest].try_send(Message::Results(items)) {
                    Ok(()) => wake = true,
                    // Outcomes are never dropped: a full inbox means try again next loop.
                    Err(TrySendError::Full(Message::Results(mut items)) | TrySendError::Disconnected(Message::Results(mut items))) => {
                        let fresh = std::mem::take(&mut self.core.results_out[dest]);
                        items.extend(fresh);
                        self.core.results_out[dest] = items;
                    }
                    Err(_) => {}
                }
            }
            while let Some(batch) = self.spent_out[dest].pop() {
                if self.peers[dest].try_send(Message::Spent(batch)).is_err() {
                    break;
                }
            }
            if wake {
                self.wakers[dest].notify();
            }
        }
    }
}
