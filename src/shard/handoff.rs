//! What shards send each other: batches of records to store on the owner of their
//! partition, and the outcomes back to the shard that holds the connection.
//! Batches are recycled (`Spent`), so steady traffic allocates nothing per request.

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
}

/// Records from one shard for partitions another shard owns.
#[derive(Debug, Default)]
pub struct StoreBatch {
    pub data: Vec<u8>,
    pub items: Vec<StoreItem>,
}

impl StoreBatch {
    pub fn push(&mut self, ticket: Ticket, partition: u32, ingest_ms: i64, event_id: &[u8], parts: &[&[u8]]) {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(event_id);
        let mut event_len = 0;
        for part in parts {
            self.data.extend_from_slice(part);
            event_len += part.len();
        }
        self.items.push(StoreItem { ticket, partition, ingest_ms, start, id_len: event_id.len() as u16, event_len: event_len as u32 });
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
