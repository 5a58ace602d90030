//! KYC and responsible-gambling gates (the article §9): event types marked as valuable
//! rewards pass only when the user's current KYC level is at least the required one and
//! the RG flag is OK (403 `kyc_gate` / `rg_gate`).
//!
//! The user's state comes from the stream itself: the configured event types and fields
//! (`kyc_result.payload.level`, `rg_status.payload.status`). It is changed by the shard
//! that *stores* such an event, with the event's offset, and a change older in the stream
//! than what is kept is ignored, so the state is the fold of the partition in stream
//! order. Every KYC (and every RG) type must route to one topic: one user's events are
//! then in one partition, where offsets order them.
//!
//! A reward is judged where it is stored, just before it is appended ([`Gate::Check`]):
//! with the rewards in the KYC topic, a KYC result earlier in the same partition (even on
//! the line before in one batch) counts and one after it does not, whatever order
//! requests raced in. A reward in another topic is judged by what was stored before it
//! in time.
//!
//! Durable: the state is the stream's, so a restart reads it back (`rebuild.rs`) before
//! any shard takes traffic.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde_json::Value;

use super::FieldPath;
use crate::constants::GATE_USERS_MAX;
use crate::schema::tape::TapeNode;

/// Lock stripes of the user table: writers are the (rare) gate events' owner shards.
const GATE_STRIPES: usize = 64;

/// A reward: event types that pass only through the gates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reward {
    pub event_types: Vec<Box<str>>,
    /// Lowest KYC level that passes; `None`: the KYC gate does not apply.
    pub kyc_level_min: Option<i64>,
    /// Whether the RG flag must be OK.
    pub rg_ok_required: bool,
}

/// `[gates]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateRules {
    pub kyc_event_types: Vec<Box<str>>,
    pub kyc_level_field: FieldPath,
    pub rg_event_types: Vec<Box<str>>,
    pub rg_field: FieldPath,
    /// Values of `rg_field` that mean OK; any other value means not OK.
    pub rg_ok_values: Vec<Value>,
    /// Whether a user with no RG event yet counts as OK.
    pub rg_unknown_ok: bool,
    pub rewards: Vec<Reward>,
}

/// What a stored gate event changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Kyc(i64),
    Rg(bool),
}

/// A change to one user's state, carried with the event to the shard that stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateUpdate {
    pub user: u128,
    pub change: Change,
}

/// What a reward needs of its user's state; judged by the shard that stores the event,
/// at store time, so a KYC result stored before it in the stream counts and one after it
/// does not, whatever order requests raced in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateCheck {
    pub user: u128,
    /// The sender (key ring index), for the dead letter of a refusal.
    pub partner: u32,
    pub kyc_level_min: Option<i64>,
    pub rg_ok_required: bool,
    pub rg_unknown_ok: bool,
}

/// The gate part of an event carried to the shard that stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// A KYC or RG event: applied once stored.
    Update(GateUpdate),
    /// A reward: judged before it is stored.
    Check(GateCheck),
}

/// Which gate refused a reward at store time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateRefusal {
    Kyc,
    Rg,
}

fn listed(types: &[Box<str>], event_type: &[u8]) -> bool {
    types.iter().any(|listed| listed.as_bytes() == event_type)
}

/// The key of a user in the table: 128 bits of SHA-256 of `key.user_id`, so no chosen
/// user id can collide with another user's state.
pub fn user_key(user_id: &str) -> u128 {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, user_id.as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest.as_ref()[..16]);
    u128::from_le_bytes(key)
}

fn user_of(event: TapeNode<'_>) -> Option<u128> {
    event.path(&["key", "user_id"])?.str().map(user_key)
}

impl GateRules {
    /// Whether events of `event_type` are gate events or rewards.
    pub fn watches(&self, event_type: &[u8]) -> bool {
        listed(&self.kyc_event_types, event_type)
            || listed(&self.rg_event_types, event_type)
            || self.rewards.iter().any(|reward| listed(&reward.event_types, event_type))
    }

    /// The change a KYC or RG event makes, if it is one. A KYC event without an integer
    /// level changes nothing (its schema should require one).
    pub fn update_of(&self, event_type: &[u8], event: TapeNode<'_>) -> Option<GateUpdate> {
        let user = user_of(event)?;
        if listed(&self.kyc_event_types, event_type) {
            let level = self.kyc_level_field.get(event)?.i64()?;
            return Some(GateUpdate { user, change: Change::Kyc(level) });
        }
        if listed(&self.rg_event_types, event_type) {
            let value = self.rg_field.get(event)?;
            return Some(GateUpdate { user, change: Change::Rg(self.rg_ok_values.contains(&value.value())) });
        }
        None
    }

    /// The gate part of an event: a KYC/RG change, a reward's requirement, or none.
    pub fn gate_of(&self, event_type: &[u8], event: TapeNode<'_>, partner: u32) -> Option<Gate> {
        if let Some(update) = self.update_of(event_type, event) {
            return Some(Gate::Update(update));
        }
        let reward = self.rewards.iter().find(|reward| listed(&reward.event_types, event_type))?;
        // A reward without a user id cannot pass: user 0 has no state.
        let user = user_of(event).unwrap_or(0);
        Some(Gate::Check(GateCheck {
            user,
            partner,
            kyc_level_min: reward.kyc_level_min,
            rg_ok_required: reward.rg_ok_required,
            rg_unknown_ok: self.rg_unknown_ok,
        }))
    }
}

/// One user's state; `*_at` is the stream position (offset + 1) of the event that set
/// it, 0 when none has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserGate {
    pub kyc_level: i64,
    pub kyc_at: u64,
    pub rg_ok: bool,
    pub rg_at: u64,
}

impl UserGate {
    pub fn kyc_level(&self) -> Option<i64> {
        (self.kyc_at > 0).then_some(self.kyc_level)
    }

    pub fn rg_ok(&self) -> Option<bool> {
        (self.rg_at > 0).then_some(self.rg_ok)
    }

    /// Applies `change` made by the event at `offset`; an older one than the kept is ignored.
    pub fn apply(&mut self, change: Change, offset: u64) -> bool {
        let at = offset + 1;
        match change {
            Change::Kyc(level) if at > self.kyc_at => (self.kyc_level, self.kyc_at) = (level, at),
            Change::Rg(ok) if at > self.rg_at => (self.rg_ok, self.rg_at) = (ok, at),
            _ => return false,
        }
        true
    }
}

/// Every user's KYC/RG state, shared by all shards.
pub struct GateState {
    stripes: Vec<Mutex<HashMap<u128, UserGate>>>,
    users: AtomicUsize,
    /// Changes for new users not kept because the table is full.
    pub dropped: AtomicU64,
    /// Changes applied (live and at rebuild).
    pub applied: AtomicU64,
}

impl Default for GateState {
    fn default() -> GateState {
        GateState {
            stripes: (0..GATE_STRIPES).map(|_| Mutex::new(HashMap::new())).collect(),
            users: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            applied: AtomicU64::new(0),
        }
    }
}

impl GateState {
    fn stripe(&self, user: u128) -> std::sync::MutexGuard<'_, HashMap<u128, UserGate>> {
        let stripe = &self.stripes[(user as usize) % GATE_STRIPES];
        stripe.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn get(&self, user: u128) -> UserGate {
        self.stripe(user).get(&user).copied().unwrap_or_default()
    }

    /// Judges a reward's requirement by the state now: `None` passes, else whether the
    /// KYC gate (`Some(true)`) or the RG gate (`Some(false)`) refuses.
    pub fn refuses(&self, check: &GateCheck) -> Option<GateRefusal> {
        let known = self.get(check.user);
        if let Some(min) = check.kyc_level_min
            && known.kyc_level().is_none_or(|level| level < min)
        {
            return Some(GateRefusal::Kyc);
        }
        if check.rg_ok_required {
            // Once the table is full, an unknown user may be one whose self-exclusion was
            // not kept: unknown is then not OK, whatever `rg_unknown_ok` says.
            let unknown_ok = check.rg_unknown_ok && self.dropped.load(Ordering::Relaxed) == 0;
            let ok = known.rg_ok().unwrap_or(unknown_ok);
            if !ok {
                return Some(GateRefusal::Rg);
            }
        }
        None
    }

    /// Applies `update`, made by the event stored at `offset`.
    pub fn apply(&self, update: GateUpdate, offset: u64) {
        let mut stripe = self.stripe(update.user);
        let entry = match stripe.get_mut(&update.user) {
            Some(entry) => entry,
            None => {
                if self.users.fetch_add(1, Ordering::Relaxed) >= GATE_USERS_MAX {
                    self.users.fetch_sub(1, Ordering::Relaxed);
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                stripe.entry(update.user).or_default()
            }
        };
        if entry.apply(update.change, offset) {
            self.applied.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Users with a state.
    pub fn users(&self) -> usize {
        self.users.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::tape::with_value;
    use serde_json::json;

    pub(crate) fn rules() -> GateRules {
        GateRules {
            kyc_event_types: vec![Box::from("kyc_result")],
            kyc_level_field: FieldPath::parse("payload.level").unwrap(),
            rg_event_types: vec![Box::from("rg_status")],
            rg_field: FieldPath::parse("payload.status").unwrap(),
            rg_ok_values: vec![json!("ok")],
            rg_unknown_ok: true,
            rewards: vec![Reward { event_types: vec![Box::from("bonus_paid")], kyc_level_min: Some(2), rg_ok_required: true }],
        }
    }

    fn event(user: &str, payload: Value) -> Value {
        json!({"key":{"user_id":user},"payload":payload})
    }

    #[test]
    fn a_reward_check_is_judged_by_the_state_at_store_time() {
        let (rules, state) = (rules(), GateState::default());
        let Some(Gate::Check(check)) = with_value(&event("u1", json!({"amount":5})), |event| rules.gate_of(b"bonus_paid", event, 0)) else {
            panic!("a reward")
        };
        assert_eq!(state.refuses(&check), Some(GateRefusal::Kyc));
        let Some(Gate::Update(update)) = with_value(&event("u1", json!({"level":2})), |event| rules.gate_of(b"kyc_result", event, 0))
        else {
            panic!("an update")
        };
        state.apply(update, 3);
        assert_eq!(state.refuses(&check), None, "RG unknown counts as OK here");
        let Some(Gate::Update(rg)) =
            with_value(&event("u1", json!({"status":"cooling_off"})), |event| rules.gate_of(b"rg_status", event, 0))
        else {
            panic!()
        };
        state.apply(rg, 4);
        assert_eq!(state.refuses(&check), Some(GateRefusal::Rg));
        assert_eq!(with_value(&event("u1", json!({})), |event| rules.gate_of(b"bet", event, 0)), None);
    }

    #[test]
    fn the_state_follows_stream_order_not_arrival_order() {
        let (rules, state) = (rules(), GateState::default());
        let high = with_value(&event("u1", json!({"level":3})), |event| rules.update_of(b"kyc_result", event)).unwrap();
        let low = with_value(&event("u1", json!({"level":1})), |event| rules.update_of(b"kyc_result", event)).unwrap();
        // The level-1 result is later in the stream but its change arrives first.
        state.apply(low, 20);
        state.apply(high, 19);
        assert_eq!(state.get(user_key("u1")).kyc_level(), Some(1));
        assert_eq!(state.applied.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_kyc_event_without_an_integer_level_changes_nothing() {
        let rules = rules();
        assert_eq!(with_value(&event("u1", json!({"level":"high"})), |event| rules.update_of(b"kyc_result", event)), None);
        assert_eq!(with_value(&event("u1", json!({"level":3})), |event| rules.update_of(b"bet", event)), None);
        assert!(rules.watches(b"bonus_paid") && rules.watches(b"rg_status") && !rules.watches(b"bet"));
    }
}
