//! The consumer side (SPEC §6): who may read (`auth.rs`), the request line
//! (`query.rs`), partition reads and long-polls (`read.rs`), subscriptions and their
//! durable cursors (`subscriptions.rs`), the streamed answers of subscriptions and SSE
//! (`stream.rs`), and the read log every consumer request is recorded in (`readlog.rs`).
//!
//! Consumers are served by the shard that holds their connection, on its own ring, from
//! the partitions' segment files mapped read-only (any shard may read any partition; only
//! its owner writes). What a consumer may read ends at the partition's readable end
//! (`Control::readable_ends`: after the group commit under `fsync`), published by the
//! owner once per loop, which also wakes the shards with a reader parked on it
//! (`Control::read_waiters`). docs/CONSUMERS.md is the user's guide.

pub mod auth;
mod handle;
pub mod query;
pub mod read;
pub mod readlog;
pub mod reorder;
pub mod stream;
pub mod subscriptions;

use std::sync::Arc;

use crate::log::DataDir;
pub use handle::{Started, mode_of, oldest_ingest_ms};
use read::PartitionCursor;
use stream::Stream;
use subscriptions::{CursorJournal, Subscriptions};

/// Shard-wide consumer state (one per shard, in `ingest::handle::Core`).
pub struct ConsumeCore {
    /// Every topic's data dir, in the topology's order.
    pub dirs: Arc<Vec<DataDir>>,
    pub subscriptions: Arc<Subscriptions>,
    pub journal: CursorJournal,
    pub read_log: readlog::ReadLog,
    /// The `consume:` scopes of the current request's JWT.
    pub scopes: auth::TopicScopes,
    /// Shards (bit per shard) to wake after this loop: a subscription they stream
    /// changed (a commit, a stream opened).
    pub wake: u64,
}

/// What a connection serving a consumer holds between and beyond answers. Boxed in the
/// connection, so a producer's connection pays one pointer for it.
#[derive(Default)]
pub struct ConnConsumer {
    pub mode: Mode,
    /// The partition this connection read last and where it stopped: a next read from
    /// there goes on without seeking (a consumer polling with `X-Next-Offset`).
    pub cached: Option<(u32, PartitionCursor)>,
}

/// What a consumer connection is doing.
#[derive(Default)]
pub enum Mode {
    /// Answering requests one by one.
    #[default]
    Idle,
    /// A partition read waits for events (long-poll); nothing else is framed meanwhile.
    Waiting(read::ReadWait),
    /// An endless answer: a subscription stream or SSE. Ends the connection when done.
    Stream(Box<Stream>),
}

impl ConnConsumer {
    /// True while the connection must not frame another request.
    pub fn busy(consumer: &Option<Box<ConnConsumer>>) -> bool {
        consumer.as_ref().is_some_and(|consumer| !matches!(consumer.mode, Mode::Idle))
    }
}
