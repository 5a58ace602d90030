//! The one check an event goes through after its envelope, scope and route: field
//! policies, geo, its schema, the KYC/RG gates, in that order. Events no policy, schema
//! or gate covers are not parsed a second time: [`Rules::applies`] answers that from the
//! event type, topic and partner alone.

use std::sync::Arc;

use super::Policy;
use super::gates::{Gate, GateRules};
use crate::schema::tape::TapeNode;
use crate::schema::{Passed, SchemaRefusal, Schemas};

/// Why [`Rules::judge`] refused an event: the answer's code (SPEC §9) and a message
/// naming the field path or rule, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    BlockedField(String),
    RequiredFieldMissing(String),
    GeoNotAllowed(String),
    SchemaNotRegistered(String),
    Schema(SchemaRefusal),
}

/// An event that passed: the schema version it was checked against (if any), and the
/// dual-write to do beside it.
#[derive(Debug, Default)]
pub struct Judged {
    pub passed: Option<Passed>,
    /// The KYC/RG change it makes, or the gate it must pass at store time.
    pub gate: Option<Gate>,
}

/// Everything a shard checks events against, published as one value through a `Swap`.
#[derive(Default)]
pub struct Rules {
    pub policies: Vec<Policy>,
    pub schemas: Schemas,
    pub gates: Option<Arc<GateRules>>,
}

impl Rules {
    /// Whether an event of `event_type` on `topic` from `partner` must be looked into.
    pub fn applies(&self, event_type: &[u8], topic: &str, partner: &str) -> bool {
        self.schemas.subject(event_type).is_some()
            || self.gates.as_ref().is_some_and(|gates| gates.watches(event_type))
            || self.policies.iter().any(|policy| policy.covers(event_type, topic, partner) && (policy.inspects_fields() || policy.enforce))
    }

    /// Judges one parsed event; a reward's gates are judged later, where it is stored
    /// (`Judged::gate`).
    pub fn judge(&self, event_type: &[u8], topic: &str, partner: &str, event: TapeNode<'_>) -> Result<Judged, Refused> {
        self.judge_as(event_type, topic, (partner, 0), event)
    }

    /// [`Rules::judge`] with the partner's key ring index, carried with a reward's gate.
    pub fn judge_as(&self, event_type: &[u8], topic: &str, (partner, index): (&str, u32), event: TapeNode<'_>) -> Result<Judged, Refused> {
        let mut enforce = false;
        for policy in self.policies.iter().filter(|policy| policy.covers(event_type, topic, partner)) {
            check_policy(policy, event)?;
            enforce |= policy.enforce;
        }
        let mut judged = Judged::default();
        match self.schemas.subject(event_type) {
            Some(subject) => {
                let version = event.member("schema_version").and_then(|node| node.str());
                judged.passed = Some(subject.judge(version, event).map_err(Refused::Schema)?);
            }
            None if enforce => {
                return Err(Refused::SchemaNotRegistered(format!(
                    "a policy requires a registered schema for {:?}, and none is registered",
                    String::from_utf8_lossy(event_type)
                )));
            }
            None => {}
        }
        judged.gate = self.gates.as_ref().and_then(|gates| gates.gate_of(event_type, event, index));
        Ok(judged)
    }
}

fn check_policy(policy: &Policy, event: TapeNode<'_>) -> Result<(), Refused> {
    if let Some(field) = policy.blocked_fields.iter().find(|field| field.present_in(event)) {
        return Err(Refused::BlockedField(format!("field {field} is blocked by policy {}", policy.name)));
    }
    if let Some(field) = policy.required_fields.iter().find(|field| !field.present_in(event)) {
        return Err(Refused::RequiredFieldMissing(format!("field {field} is required by policy {}", policy.name)));
    }
    if policy.geo_allow.is_empty() && policy.geo_deny.is_empty() {
        return Ok(());
    }
    let geo = event.path(&["ctx", "geo"]).and_then(|node| node.str());
    let allowed = match geo {
        Some(geo) => {
            (policy.geo_allow.is_empty() || policy.geo_allow.iter().any(|code| code.eq_ignore_ascii_case(geo)))
                && !policy.geo_deny.iter().any(|code| code.eq_ignore_ascii_case(geo))
        }
        None => policy.geo_allow.is_empty(),
    };
    if allowed {
        return Ok(());
    }
    // A country code is not personal data on its own; the answer still leaves it out,
    // the producer knows what it sent.
    let why = if geo.is_some() { "ctx.geo is not allowed by policy" } else { "ctx.geo is missing, and an allow list applies: policy" };
    Err(Refused::GeoNotAllowed(format!("{why} {}", policy.name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::FieldPath;
    use serde_json::json;

    fn policy() -> Policy {
        Policy {
            name: Box::from("wallet"),
            event_types: vec![Box::from("deposit")],
            blocked_fields: vec![FieldPath::parse("payload.card_number").unwrap()],
            required_fields: vec![FieldPath::parse("payload.amount").unwrap()],
            geo_allow: vec![Box::from("TR"), Box::from("DE")],
            ..Policy::default()
        }
    }

    fn judge(rules: &Rules, event: serde_json::Value) -> Result<(), Refused> {
        crate::schema::tape::with_value(&event, |event| rules.judge(b"deposit", "events", "acme", event).map(|_| ()))
    }

    #[test]
    fn blocked_required_and_geo_are_judged_in_order_without_values() {
        let rules = Rules { policies: vec![policy()], ..Rules::default() };
        assert!(rules.applies(b"deposit", "events", "acme"));
        assert!(!rules.applies(b"bet", "events", "acme"));
        assert_eq!(judge(&rules, json!({"payload":{"amount":5},"ctx":{"geo":"tr"}})), Ok(()));
        let blocked = judge(&rules, json!({"payload":{"amount":5,"card_number":"4111111111111111"}})).unwrap_err();
        assert_eq!(blocked, Refused::BlockedField("field payload.card_number is blocked by policy wallet".to_owned()));
        let missing = judge(&rules, json!({"payload":{},"ctx":{"geo":"TR"}})).unwrap_err();
        assert_eq!(missing, Refused::RequiredFieldMissing("field payload.amount is required by policy wallet".to_owned()));
        assert!(matches!(judge(&rules, json!({"payload":{"amount":5},"ctx":{"geo":"US"}})), Err(Refused::GeoNotAllowed(_))));
        assert!(matches!(judge(&rules, json!({"payload":{"amount":5}})), Err(Refused::GeoNotAllowed(_))));
    }

    #[test]
    fn a_deny_list_refuses_listed_codes_only_and_enforce_wants_a_schema() {
        let deny = Policy { name: Box::from("p"), geo_deny: vec![Box::from("US")], enforce: true, ..Policy::default() };
        let rules = Rules { policies: vec![deny], ..Rules::default() };
        assert!(matches!(judge(&rules, json!({"ctx":{"geo":"US"}})), Err(Refused::GeoNotAllowed(_))));
        assert!(matches!(judge(&rules, json!({"ctx":{"geo":"TR"}})), Err(Refused::SchemaNotRegistered(_))));
    }
}
