//! The group commit under `durability = "fsync"`: at the end of each loop every
//! partition with waiting outcomes and no fdatasync in flight gets one, run by the
//! kernel's io-wq workers while the shard goes on serving (`partitions.rs` releases the
//! outcomes when it completes).

use super::Shard;
use super::token::Token;
use crate::reactor::op;

impl Shard {
    pub(super) fn start_syncs(&mut self) {
        let mut entries = std::mem::take(&mut self.sync_entries);
        self.core.partitions.syncs_to_start(self.core.now_ms, |index, fd| {
            entries.push(op::fsync::datasync(fd, Token::Fsync { partition: index }.encode()));
        });
        for entry in entries.drain(..) {
            self.push(entry);
        }
        self.sync_entries = entries;
    }
}
