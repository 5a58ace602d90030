//! `[[policies]]`, `[gates]` and `[dlq]` (SPEC §9): field policies in the article's
//! form (§7: `compatibility` mode, `blocked_fields`, `required_fields`), geo allow/deny
//! lists, the KYC/RG gates and the dead-letter queue's bounds.
//!
//! ```toml
//! [[policies]]
//! name = "wallet"                            # label in answers (default "policies[i]")
//! event_types = ["deposit", "withdrawal"]    # and/or topics = ["wallet_events"]; neither: every event
//! partners = ["acme"]                        # only events from these partners (default: all)
//! mode = "backward"                          # compatibility of the schemas it covers
//! enforce = true                             # events it covers need a registered schema
//! blocked_fields = ["payload.ssn", "payload.card_number"]
//! required_fields = ["payload.amount"]
//! geo_allow = ["TR", "DE"]                   # ctx.geo values allowed (default: any)
//! geo_deny = ["US"]
//!
//! [gates]
//! kyc_event_types = ["kyc_result"]
//! kyc_level_field = "payload.level"
//! rg_event_types = ["rg_status"]
//! rg_field = "payload.status"
//! rg_ok_values = ["ok"]
//! rg_unknown_ok = true
//! [[gates.rewards]]
//! event_types = ["bonus_paid", "payout"]
//! kyc_level_min = 2
//! rg_ok_required = true
//!
//! [dlq]
//! bytes_max = 1073741824                     # 0 = no dead-letter queue
//! retention_hours = 720
//! ```

use serde::Deserialize;

use super::{ConfigError, invalid};
use crate::constants::{EVENT_TYPE_BYTES_MAX, POLICY_FIELDS_MAX, POLICY_GEO_CODES_MAX};
use crate::policy::gates::{GateRules, Reward};
use crate::policy::{FieldPath, Policy};
use crate::schema::compat::Mode;
use crate::topics::Topology;

/// Policies a configuration may hold: each event is checked against every one that
/// covers it.
pub const POLICIES_MAX: usize = 256;
/// Default bound of the dead-letter queue, and its retention.
pub const DLQ_BYTES_MAX_DEFAULT: u64 = 1 << 30;
pub const DLQ_RETENTION_HOURS_DEFAULT: u64 = 720;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    name: Option<String>,
    #[serde(default)]
    event_types: Vec<String>,
    #[serde(default)]
    topics: Vec<String>,
    #[serde(default)]
    partners: Vec<String>,
    mode: Option<String>,
    #[serde(default)]
    enforce: bool,
    #[serde(default)]
    blocked_fields: Vec<String>,
    #[serde(default)]
    required_fields: Vec<String>,
    #[serde(default)]
    geo_allow: Vec<String>,
    #[serde(default)]
    geo_deny: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGates {
    #[serde(default)]
    kyc_event_types: Vec<String>,
    kyc_level_field: Option<String>,
    #[serde(default)]
    rg_event_types: Vec<String>,
    rg_field: Option<String>,
    #[serde(default)]
    rg_ok_values: Vec<toml::Value>,
    rg_unknown_ok: Option<bool>,
    #[serde(default)]
    rewards: Vec<RawReward>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReward {
    #[serde(default)]
    event_types: Vec<String>,
    kyc_level_min: Option<i64>,
    #[serde(default)]
    rg_ok_required: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDlq {
    bytes_max: Option<u64>,
    retention_hours: Option<u64>,
}

/// `[dlq]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DlqConfig {
    /// Bytes of dead letters kept over every shard; past it new ones are counted and
    /// dropped (alarmed), old ones are never deleted to make room. 0: off.
    pub bytes_max: u64,
    pub retention_ms: u64,
}

pub(super) fn dlq_config(raw: RawDlq) -> Result<DlqConfig, ConfigError> {
    let hours = raw.retention_hours.unwrap_or(DLQ_RETENTION_HOURS_DEFAULT);
    if hours == 0 {
        return Err(invalid("dlq.retention_hours", "must be positive"));
    }
    Ok(DlqConfig { bytes_max: raw.bytes_max.unwrap_or(DLQ_BYTES_MAX_DEFAULT), retention_ms: hours.saturating_mul(3_600_000) })
}

fn event_types(key: &str, listed: Vec<String>) -> Result<Vec<Box<str>>, ConfigError> {
    let mut out: Vec<Box<str>> = Vec::with_capacity(listed.len());
    for event_type in listed {
        if event_type.is_empty() || event_type.len() > EVENT_TYPE_BYTES_MAX {
            return Err(invalid(key.to_owned(), format!("{event_type:?} must be 1..={EVENT_TYPE_BYTES_MAX} bytes")));
        }
        if !out.iter().any(|known| **known == *event_type) {
            out.push(event_type.into_boxed_str());
        }
    }
    Ok(out)
}

fn field_paths(key: &str, listed: Vec<String>) -> Result<Vec<FieldPath>, ConfigError> {
    if listed.len() > POLICY_FIELDS_MAX {
        return Err(invalid(key.to_owned(), format!("at most {POLICY_FIELDS_MAX} fields")));
    }
    listed.iter().map(|path| FieldPath::parse(path).map_err(|reason| invalid(key.to_owned(), reason))).collect()
}

fn geo_codes(key: &str, listed: Vec<String>) -> Result<Vec<Box<str>>, ConfigError> {
    if listed.len() > POLICY_GEO_CODES_MAX {
        return Err(invalid(key.to_owned(), format!("at most {POLICY_GEO_CODES_MAX} codes")));
    }
    for code in &listed {
        if code.is_empty() || code.len() > 8 || !code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(invalid(key.to_owned(), format!("{code:?} is not a country or region code")));
        }
    }
    Ok(listed.into_iter().map(String::into_boxed_str).collect())
}

pub(super) fn policies_config(raw: Vec<RawPolicy>, topics: &Topology) -> Result<Vec<Policy>, ConfigError> {
    if raw.len() > POLICIES_MAX {
        return Err(invalid("policies", format!("at most {POLICIES_MAX} policies")));
    }
    raw.into_iter().enumerate().map(|(index, raw)| policy_config(index, raw, topics)).collect()
}

fn policy_config(index: usize, raw: RawPolicy, topics: &Topology) -> Result<Policy, ConfigError> {
    let key = |field: &str| format!("policies[{index}].{field}");
    for topic in &raw.topics {
        if topics.by_name(topic.as_bytes()).is_none() {
            return Err(invalid(key("topics"), format!("{topic:?} is not a configured topic")));
        }
    }
    let mode = match raw.mode {
        Some(mode) => Some(Mode::parse(&mode).ok_or_else(|| invalid(key("mode"), format!("{mode:?} is not a compatibility mode")))?),
        None => None,
    };
    let geo_allow = geo_codes(&key("geo_allow"), raw.geo_allow)?;
    let geo_deny = geo_codes(&key("geo_deny"), raw.geo_deny)?;
    if let Some(both) = geo_allow.iter().find(|code| geo_deny.iter().any(|denied| denied.eq_ignore_ascii_case(code))) {
        return Err(invalid(key("geo_deny"), format!("{both:?} is also in geo_allow")));
    }
    Ok(Policy {
        name: raw.name.unwrap_or_else(|| format!("policies[{index}]")).into_boxed_str(),
        event_types: event_types(&key("event_types"), raw.event_types)?,
        topics: raw.topics.into_iter().map(String::into_boxed_str).collect(),
        partners: raw.partners.into_iter().map(String::into_boxed_str).collect(),
        mode,
        enforce: raw.enforce,
        blocked_fields: field_paths(&key("blocked_fields"), raw.blocked_fields)?,
        required_fields: field_paths(&key("required_fields"), raw.required_fields)?,
        geo_allow,
        geo_deny,
    })
}

/// Every type of `types` must route to one topic: one user's gate events are then in
/// one partition, where offsets order them.
fn one_topic(key: &str, types: &[Box<str>], topics: &Topology) -> Result<(), ConfigError> {
    let routes: Vec<Option<u16>> = types.iter().map(|event_type| topics.route(event_type.as_bytes())).collect();
    if let Some(position) = routes.iter().position(Option::is_none) {
        return Err(invalid(key.to_owned(), format!("{:?} is not routed to any topic", types[position])));
    }
    if routes.windows(2).any(|pair| pair[0] != pair[1]) {
        return Err(invalid(key.to_owned(), "must all route to one topic, so that one user's events are ordered in one partition"));
    }
    Ok(())
}

pub(super) fn gates_config(raw: Option<RawGates>, topics: &Topology) -> Result<Option<GateRules>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let kyc_event_types = event_types("gates.kyc_event_types", raw.kyc_event_types)?;
    let rg_event_types = event_types("gates.rg_event_types", raw.rg_event_types)?;
    one_topic("gates.kyc_event_types", &kyc_event_types, topics)?;
    one_topic("gates.rg_event_types", &rg_event_types, topics)?;
    let path = |key: &str, text: Option<String>, default: &str| {
        FieldPath::parse(text.as_deref().unwrap_or(default)).map_err(|reason| invalid(key.to_owned(), reason))
    };
    let rg_ok_values = raw
        .rg_ok_values
        .into_iter()
        .map(|value| serde_json::to_value(value).map_err(|error| invalid("gates.rg_ok_values", error.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rewards = Vec::with_capacity(raw.rewards.len());
    for (index, reward) in raw.rewards.into_iter().enumerate() {
        let key = format!("gates.rewards[{index}].event_types");
        let types = event_types(&key, reward.event_types)?;
        if types.is_empty() {
            return Err(invalid(key.to_owned(), "lists no event type"));
        }
        if types.iter().any(|event_type| kyc_event_types.contains(event_type) || rg_event_types.contains(event_type)) {
            return Err(invalid(key.to_owned(), "a KYC or RG event type cannot itself be a gated reward"));
        }
        rewards.push(Reward { event_types: types, kyc_level_min: reward.kyc_level_min, rg_ok_required: reward.rg_ok_required });
    }
    let needs_kyc = rewards.iter().any(|reward| reward.kyc_level_min.is_some());
    if needs_kyc && kyc_event_types.is_empty() {
        return Err(invalid("gates.kyc_event_types", "is empty, but a reward needs a KYC level"));
    }
    if rewards.iter().any(|reward| reward.rg_ok_required) && (rg_event_types.is_empty() || rg_ok_values.is_empty()) {
        return Err(invalid("gates.rg_event_types", "and rg_ok_values are needed when a reward requires an OK RG flag"));
    }
    Ok(Some(GateRules {
        kyc_level_field: path("gates.kyc_level_field", raw.kyc_level_field, "payload.level")?,
        rg_field: path("gates.rg_field", raw.rg_field, "payload.status")?,
        kyc_event_types,
        rg_event_types,
        rg_ok_values,
        rg_unknown_ok: raw.rg_unknown_ok.unwrap_or(true),
        rewards,
    }))
}
