//! The owner of what may enter: the schema registry (written by the admin thread only),
//! the policies and gates from the configuration, the KYC/RG state, and the compiled
//! [`Rules`] every shard reads through a `Swap`. A registry change compiles a new
//! `Rules` here, off the shards, and publishes it; shards take it at the top of their
//! next loop, with no connection dropped.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::gates::{GateRules, GateState};
use super::{Policy, Rules};
use crate::platform::swap::Swap;
use crate::schema::Schemas;
use crate::schema::compat::Mode;
use crate::schema::registry::Registry;

pub struct Governance {
    registry: Mutex<Registry>,
    pub rules: Arc<Swap<Rules>>,
    policies: Vec<Policy>,
    gates: Option<Arc<GateRules>>,
    pub gate_state: Arc<GateState>,
    /// Replay runbooks registered by `sluice replay run`.
    pub replays: super::replays::Replays,
    /// Per-partner health (signature failures, clock skew, dead letters).
    pub health: super::health::PartnerHealth,
    /// `[auth] timestamp_tolerance_secs`, which health judges clock skew against.
    pub tolerance_secs: u64,
    /// Where the dead-letter queue lives.
    pub dlq_dir: std::path::PathBuf,
}

impl Governance {
    /// Opens the registry under `data_dir` and compiles the first [`Rules`].
    pub fn open(data_dir: &std::path::Path, policies: Vec<Policy>, gates: Option<GateRules>) -> Result<Governance, String> {
        let registry = Registry::open(data_dir)?;
        let gates = gates.map(Arc::new);
        let schemas = Schemas::build(&registry)?;
        let rules = Rules { policies: policies.clone(), schemas, gates: gates.clone() };
        Ok(Governance {
            registry: Mutex::new(registry),
            rules: Arc::new(Swap::new(Arc::new(rules))),
            policies,
            gates,
            gate_state: Arc::new(GateState::default()),
            replays: Default::default(),
            health: Default::default(),
            tolerance_secs: 300,
            dlq_dir: data_dir.join(crate::sidelog::dlq::DLQ_DIR),
        })
    }

    /// The registry, for the admin thread (one change at a time).
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The compatibility mode the first policy covering `event_type` names, if any.
    pub fn policy_mode(&self, event_type: &str) -> Option<Mode> {
        self.policies.iter().filter(|policy| policy.event_types.iter().any(|listed| &**listed == event_type)).find_map(|policy| policy.mode)
    }

    /// Compiles `registry` and publishes it to the shards.
    pub fn publish(&self, registry: &Registry) -> Result<(), String> {
        let schemas = Schemas::build(registry)?;
        self.rules.replace(Arc::new(Rules { policies: self.policies.clone(), schemas, gates: self.gates.clone() }));
        Ok(())
    }

    pub fn gates(&self) -> Option<&Arc<GateRules>> {
        self.gates.as_ref()
    }
}
