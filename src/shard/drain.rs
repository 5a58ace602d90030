//! Winding a shard down on SIGTERM: stop accepting, close idle connections, answer what
//! is in flight, and stop once every shard is quiet (they may still need each other's
//! partitions) or the drain deadline has passed.

use std::sync::atomic::Ordering;

use super::Shard;
use super::token::Token;
use crate::reactor::op;

impl Shard {
    /// Cancels the accepts and closes the listeners: new connections are refused from
    /// now on (SO_REUSEPORT stops routing here); an in-flight accept keeps its own file
    /// reference until it is cancelled.
    pub(super) fn stop_accepting(&mut self) {
        self.accepting = false;
        self.drain_deadline_ms = Some(self.clock.now_ms + self.config.ingest.drain_timeout_ms);
        self.push(op::cancel::by_user_data(Token::Accept.encode(), Token::Ignore.encode()));
        self.listener = None;
        if self.tls.is_some() {
            self.push(op::cancel::by_user_data(Token::AcceptTls.encode(), Token::Ignore.encode()));
        }
        if let Some(tls) = &mut self.tls {
            tls.listener = None;
        }
    }

    /// While draining: true once this shard has no connections, nothing parked and
    /// nothing to sync, and every other shard is there too; or when the drain deadline
    /// has passed.
    pub(super) fn drained(&mut self) -> bool {
        let Some(deadline) = self.drain_deadline_ms else { return false };
        let idle = self.open == 0 && !self.core.partitions.sync_pending() && self.core.results_out.iter().all(Vec::is_empty);
        if idle && !self.quiesced {
            self.quiesced = true;
            self.control.shards_quiesced.fetch_add(1, Ordering::AcqRel);
        }
        let everyone = self.control.shards_quiesced.load(Ordering::Acquire) >= self.control.shards.len();
        everyone || self.clock.now_ms >= deadline
    }
}
