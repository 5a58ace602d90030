//! What may enter beyond the envelope (SPEC §9, the article §7 and §9): field policies
//! (blocked and required fields), geo allow/deny lists of `ctx.geo`, and the KYC/RG
//! gates (`gates.rs`). Schemas are in `crate::schema`; [`Rules`] puts the two together
//! for the shards, and [`Rules::judge`] is the one check an event goes through after its
//! envelope, scope and route.
//!
//! A refusal names the rule and the field path, never a value from the event: the value
//! of a blocked field is exactly what must not travel further, not even into an answer.

#![forbid(unsafe_code)]

pub mod gates;
pub mod governance;
pub mod health;
mod judge;
pub mod rebuild;
pub mod replays;

use std::fmt;

use crate::constants::POLICY_FIELD_PATH_BYTES_MAX;
use crate::schema::compat::Mode;
use crate::schema::tape::TapeNode;

pub use governance::Governance;
pub use judge::{Judged, Refused, Rules};

/// A dotted path to a field, `payload.card_number`: object keys from the top of the
/// event. Where a path meets an array, every element is looked into, so a blocked field
/// cannot hide in a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    text: Box<str>,
    segments: Vec<Box<str>>,
}

impl FieldPath {
    /// 1..=256 bytes; segments non-empty, split on `.`.
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        if text.is_empty() || text.len() > POLICY_FIELD_PATH_BYTES_MAX {
            return Err(format!("field path {text:?} must be 1..={POLICY_FIELD_PATH_BYTES_MAX} bytes"));
        }
        let segments: Vec<Box<str>> = text.split('.').map(Box::from).collect();
        if segments.iter().any(|segment| segment.is_empty()) {
            return Err(format!("field path {text:?} has an empty segment"));
        }
        Ok(FieldPath { text: Box::from(text), segments })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the field is present (with any value, `null` included) anywhere the path
    /// reaches.
    pub fn present_in(&self, event: TapeNode<'_>) -> bool {
        event.present(&self.segments)
    }

    /// The value at the path, when it leads through objects only.
    pub fn get<'a>(&self, event: TapeNode<'a>) -> Option<TapeNode<'a>> {
        event.path(&self.segments)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One `[[policies]]` table, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Its label in answers and logs (`policies[i]` when not named).
    pub name: Box<str>,
    /// Applies to these event types, and to every type of these topics; both empty:
    /// every event.
    pub event_types: Vec<Box<str>>,
    pub topics: Vec<Box<str>>,
    /// Applies only to events from these partners; empty: from every partner.
    pub partners: Vec<Box<str>>,
    /// The compatibility mode of the subjects it covers, unless a subject sets its own.
    pub mode: Option<Mode>,
    /// Events it covers must have a registered schema (422 `schema_not_registered`).
    pub enforce: bool,
    pub blocked_fields: Vec<FieldPath>,
    pub required_fields: Vec<FieldPath>,
    /// Allowed `ctx.geo` values (empty: any); an event without `ctx.geo` is refused when
    /// the list is not empty.
    pub geo_allow: Vec<Box<str>>,
    pub geo_deny: Vec<Box<str>>,
}

impl Policy {
    /// Whether this policy covers an event of `event_type` routed to `topic` from `partner`.
    pub fn covers(&self, event_type: &[u8], topic: &str, partner: &str) -> bool {
        let by_type = self.event_types.iter().any(|listed| listed.as_bytes() == event_type);
        let by_topic = self.topics.iter().any(|listed| &**listed == topic);
        let everything = self.event_types.is_empty() && self.topics.is_empty();
        (everything || by_type || by_topic) && (self.partners.is_empty() || self.partners.iter().any(|listed| &**listed == partner))
    }

    /// Whether it needs to look inside the event at all.
    pub fn inspects_fields(&self) -> bool {
        !self.blocked_fields.is_empty() || !self.required_fields.is_empty() || !self.geo_allow.is_empty() || !self.geo_deny.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::tape::with_value;
    use serde_json::json;

    #[test]
    fn paths_find_fields_through_objects_and_arrays() {
        let event = json!({"payload":{"ssn":null,"cards":[{"number":"4111"},{"x":1}]},"ctx":{"geo":"TR"}});
        let path = |text: &str| FieldPath::parse(text).unwrap();
        with_value(&event, |event| {
            assert!(path("payload.ssn").present_in(event));
            assert!(path("payload.cards.number").present_in(event));
            assert!(!path("payload.card_number").present_in(event));
            assert!(!path("ctx.geo.x").present_in(event));
            assert_eq!(path("ctx.geo").get(event).and_then(|node| node.str()), Some("TR"));
            assert!(path("payload.cards.number").get(event).is_none());
        });
        for bad in ["", ".a", "a..b", "a."] {
            assert!(FieldPath::parse(bad).is_err(), "{bad:?}");
        }
        assert!(FieldPath::parse(&"a".repeat(257)).is_err());
    }

    #[test]
    fn a_policy_covers_by_type_topic_and_partner() {
        let policy = Policy { event_types: vec![Box::from("deposit")], topics: vec![Box::from("wallet")], ..Policy::default() };
        assert!(policy.covers(b"deposit", "events", "acme"));
        assert!(policy.covers(b"bonus", "wallet", "acme"));
        assert!(!policy.covers(b"bet", "events", "acme"));
        let partner = Policy { partners: vec![Box::from("acme")], ..Policy::default() };
        assert!(partner.covers(b"bet", "events", "acme"));
        assert!(!partner.covers(b"bet", "events", "other"));
    }
}
