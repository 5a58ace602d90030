//! Runbooks the server holds to while `sluice replay run` sends their items: each was
//! verified here, against the key ring's `[[signers]]`, when the run registered it
//! (`POST /admin/replays`). A request carrying `X-Replay-Id` is taken only for a
//! registered, unexpired runbook, and each event only if the SHA-256 of its bytes is one
//! of the runbook's items; it is stored in the runbook's target (a stream version of the
//! event's topic other than the one it would go to), marked `"replayed":true` and
//! `"replay_id"`. A stolen producer key alone therefore cannot replay anything.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use crate::replay::runbook::{Runbook, RunbookError};
use crate::replay::signer::PublicSigner;
use crate::topics::Topology;

/// Runbooks registered at once; expired ones are dropped first.
pub const REPLAYS_REGISTERED_MAX: usize = 64;

/// A verified runbook, as the shards check replayed events against it.
#[derive(Debug)]
pub struct ApprovedReplay {
    pub id: Box<str>,
    pub target_topic: u16,
    pub expires_at_ms: i64,
    /// SHA-256 of every item's body.
    items: HashSet<[u8; 32]>,
    /// `,"replayed":true,"replay_id":"<id>"`, inserted before the closing brace.
    pub marker: Box<[u8]>,
}

impl ApprovedReplay {
    pub fn holds(&self, body: &[u8]) -> bool {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        self.items.contains(&key)
    }
}

/// Why a runbook was not registered.
#[derive(Debug, thiserror::Error)]
pub enum ReplayRefused {
    #[error("{0}")]
    Runbook(#[from] RunbookError),
    #[error("target topic {0:?} is not a configured topic")]
    TargetUnknown(String),
    #[error(
        "target topic {0:?} is a topic's first stream version; replays go to a new stream version (<topic>.v<N>), never into the original"
    )]
    TargetOriginal(String),
    #[error("{0} runbooks are registered and none has expired")]
    Full(usize),
}

impl ReplayRefused {
    pub fn code(&self) -> &'static str {
        match self {
            ReplayRefused::Runbook(error) => error.code(),
            ReplayRefused::TargetUnknown(_) | ReplayRefused::TargetOriginal(_) => "replay_target_invalid",
            ReplayRefused::Full(_) => "replays_full",
        }
    }
}

/// The registered runbooks.
#[derive(Default)]
pub struct Replays {
    registered: Mutex<HashMap<Box<str>, Arc<ApprovedReplay>>>,
}

impl Replays {
    /// Verifies `runbook` and registers it (again: registering is idempotent).
    pub fn register(
        &self,
        runbook: &Runbook,
        signers: &[PublicSigner],
        topology: &Topology,
        now_ms: i64,
    ) -> Result<Arc<ApprovedReplay>, ReplayRefused> {
        runbook.verify(signers, now_ms)?;
        let target =
            topology.by_name(runbook.target_topic.as_bytes()).ok_or_else(|| ReplayRefused::TargetUnknown(runbook.target_topic.clone()))?;
        if topology.stream_of(target).1 < 2 {
            return Err(ReplayRefused::TargetOriginal(runbook.target_topic.clone()));
        }
        let items = runbook
            .items
            .iter()
            .filter_map(|item| {
                let bytes = hex_32(&item.sha256)?;
                Some(bytes)
            })
            .collect();
        let marker = format!(",\"replayed\":true,\"replay_id\":\"{}\"", runbook.id).into_bytes().into_boxed_slice();
        let approved = Arc::new(ApprovedReplay {
            id: Box::from(runbook.id.as_str()),
            target_topic: target,
            expires_at_ms: runbook.expires_at_ms,
            items,
            marker,
        });
        let mut registered = self.registered.lock().unwrap_or_else(PoisonError::into_inner);
        registered.retain(|_, replay| replay.expires_at_ms > now_ms);
        if registered.len() >= REPLAYS_REGISTERED_MAX && !registered.contains_key(runbook.id.as_str()) {
            return Err(ReplayRefused::Full(registered.len()));
        }
        registered.insert(Box::from(runbook.id.as_str()), Arc::clone(&approved));
        Ok(approved)
    }

    /// The registered, unexpired runbook `id`.
    pub fn get(&self, id: &[u8], now_ms: i64) -> Option<Arc<ApprovedReplay>> {
        let id = std::str::from_utf8(id).ok()?;
        let registered = self.registered.lock().unwrap_or_else(PoisonError::into_inner);
        registered.get(id).filter(|replay| replay.expires_at_ms > now_ms).cloned()
    }
}

fn hex_32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (index, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}
