//! The KYC/RG state read back from the stream at start (`gates.rs`): every partition of
//! the topics the KYC and RG event types route to, oldest first, each gate event applied
//! with its offset, before any shard takes traffic. The state is thus exactly what the
//! stored stream says, after any crash.
//!
//! The cost is one pass over those topics (events of other types are skipped by a byte
//! search before any parse). Retention bounds it, and also bounds memory of the past:
//! a user whose last KYC result was deleted by retention is unknown again after a
//! restart (docs/SCHEMAS.md § KYC and RG gates; route KYC events to a topic with a long retention).

use std::collections::BTreeSet;

use super::gates::{GateRules, GateState};
use crate::log::{DataDir, LogReader, StartAt, StorageError};
use crate::topics::Topology;

/// What [`rebuild`] read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    pub records: u64,
    pub applied: u64,
}

/// Applies every stored KYC/RG event of `dirs` (one per topic, in `topology` order).
pub fn rebuild(gates: &GateRules, state: &GateState, topology: &Topology, dirs: &[DataDir]) -> Result<Rebuilt, StorageError> {
    let watched: Vec<&str> = gates.kyc_event_types.iter().chain(&gates.rg_event_types).map(|event_type| &**event_type).collect();
    let topics: BTreeSet<u16> = watched.iter().filter_map(|event_type| topology.route(event_type.as_bytes())).collect();
    let needles: Vec<Vec<u8>> = watched.iter().map(|event_type| format!("\"{event_type}\"").into_bytes()).collect();
    let mut rebuilt = Rebuilt::default();
    for topic in topics {
        let dir = &dirs[usize::from(topic)];
        for partition in 0..dir.partitions() {
            let mut reader = LogReader::open(dir, partition, StartAt::Earliest)?;
            while let Some(record) = reader.next()? {
                rebuilt.records += 1;
                // An escaped event type (`"rg\u005fstatus"`) is the same type: a record with a
                // backslash is always parsed.
                if !needles.iter().any(|needle| memchr::memmem::find(record.event, needle).is_some())
                    && memchr::memchr(b'\\', record.event).is_none()
                {
                    continue;
                }
                let update = crate::schema::tape::with_parsed(record.event, |event| {
                    let event_type = event.member("event_type")?.str()?;
                    gates.update_of(event_type.as_bytes(), event)
                });
                if let Some(Some(update)) = update {
                    state.apply(update, record.offset);
                    rebuilt.applied += 1;
                }
            }
        }
    }
    Ok(rebuilt)
}
