//! Partners and the key policy of the key ring file (the article's KMS policy example):
//! who may send which event types, from which addresses, over which transport.
//!
//! ```toml
//! [policy]
//! rotation_days = 45              # new keys expire after this; `sluice keys rotate` starts grace
//! grace_period_days = 7           # default grace of `sluice keys rotate`
//! allow_algos = ["HMAC-SHA256"]   # signature algorithms keys may use; [] = HMAC disabled
//!
//! [[partners]]
//! name = "wallet-svc"             # the `partner` of its keys, the `<source>` of webhooks
//! event_types = ["deposit", "withdrawal"]   # absent or ["*"]: every type
//! allow_cidrs = ["10.20.0.0/16"]  # absent: any address
//! client_cert = "required"        # "optional" (default) | "required" | "sufficient"
//! tls_identities = ["wallet-svc.prod"]   # client-certificate identities (CN or SAN)
//! jwt_subjects = ["wallet-svc"]   # JWT `sub` (or `client_id`) values
//! ```
//!
//! A key whose partner has no `[[partners]]` table belongs to an unrestricted partner of
//! that name, so rings written before partners existed keep working unchanged.

#![forbid(unsafe_code)]

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::constants::{CIDRS_PER_PARTNER_MAX, EVENT_TYPE_BYTES_MAX, EVENT_TYPES_PER_PARTNER_MAX, IDENTITIES_PER_PARTNER_MAX};

/// The only signature algorithm keys have today (scheme v1 and Standard Webhooks).
pub const ALGO_HMAC_SHA256: &str = "HMAC-SHA256";

/// The kind of addresses a [`Cidr`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
    V4Mapped,
}

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix_bits: u8,
}

impl Cidr {
    /// The prefix length: how specific the block is.
    pub fn prefix_bits(&self) -> u8 {
        self.prefix_bits
    }

    /// The block's addresses: IPv4, IPv6, or IPv4-mapped IPv6 (`::ffff:a.b.c.d`, which
    /// the server never sees: it unmaps them).
    pub fn family(&self) -> Family {
        match self.network {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() && self.prefix_bits >= 96 => Family::V4Mapped,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// True when `ip` lies in the block. IPv4-mapped IPv6 peers are compared as IPv4
    /// (the server already unmaps them).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix_bits)).unwrap_or(0);
                u32::from(network) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix_bits)).unwrap_or(0);
                u128::from(network) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().map_err(|_| format!("{text:?} is not an IP address or CIDR block"))?;
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix_bits = match prefix {
            None => width,
            Some(bits) => bits
                .parse::<u8>()
                .ok()
                .filter(|bits| *bits <= width)
                .ok_or_else(|| format!("{text:?} has a prefix length outside 0..={width}"))?,
        };
        Ok(Cidr { network, prefix_bits })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_bits)
    }
}

/// What a partner's client certificate means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCert {
    /// Not checked: HMAC or JWT alone authenticates.
    #[default]
    Optional,
    /// HMAC or JWT requests must also arrive over mTLS with one of the partner's identities.
    Required,
    /// A client certificate with one of the partner's identities authenticates on its own
    /// (no signature headers needed); HMAC and JWT still work.
    Sufficient,
}

/// One partner's permissions, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partner {
    pub name: String,
    /// `None`: every event type.
    event_types: Option<Vec<Box<[u8]>>>,
    /// Empty: every address.
    allow_cidrs: Vec<Cidr>,
    pub client_cert: ClientCert,
    pub tls_identities: Vec<String>,
    pub jwt_subjects: Vec<String>,
    /// Topics its consumers may read; `None`: every topic (`"*"`).
    consume_topics: Option<Vec<Box<str>>>,
    /// Declared by a `[[partners]]` table (false: implied by a key's `partner`).
    pub declared: bool,
}

impl Partner {
    /// The unrestricted partner a key's `partner` names when no table declares it.
    pub fn implied(name: &str) -> Partner {
        Partner {
            name: name.to_owned(),
            event_types: None,
            allow_cidrs: Vec::new(),
            client_cert: ClientCert::Optional,
            tls_identities: Vec::new(),
            jwt_subjects: Vec::new(),
            consume_topics: Some(Vec::new()),
            declared: false,
        }
    }

    /// True when the partner may send events of `event_type`.
    pub fn allows_event_type(&self, event_type: &[u8]) -> bool {
        match &self.event_types {
            None => true,
            Some(types) => types.iter().any(|allowed| allowed.as_ref() == event_type),
        }
    }

    /// True when the partner's consumers may read `topic` (`consume_topics`).
    pub fn may_consume(&self, topic: &str) -> bool {
        match &self.consume_topics {
            None => true,
            Some(topics) => topics.iter().any(|allowed| &**allowed == topic),
        }
    }

    /// True when a request from `ip` passes the partner's allow-list. An unknown peer
    /// address passes only when there is no list.
    pub fn allows_ip(&self, ip: Option<IpAddr>) -> bool {
        if self.allow_cidrs.is_empty() {
            return true;
        }
        ip.is_some_and(|ip| self.allow_cidrs.iter().any(|cidr| cidr.contains(ip)))
    }

    /// True when `identity` (a verified client certificate's) is one of the partner's.
    pub fn has_tls_identity(&self, identity: Option<&str>) -> bool {
        identity.is_some_and(|identity| self.tls_identities.iter().any(|known| known == identity))
    }
}

/// The `[policy]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Keys made by `keys gen` and `keys rotate` expire this many days after creation.
    pub rotation_days: Option<u32>,
    /// The default grace period of `keys rotate`, and the grace of keys it creates.
    pub grace_period_days: u32,
    /// HMAC-SHA256 keys (scheme v1 and Standard Webhooks) are accepted.
    pub hmac_sha256: bool,
}

/// Grace period of `keys rotate` when neither the policy nor the command line sets one.
pub const GRACE_PERIOD_DAYS_DEFAULT: u32 = 7;

impl Default for Policy {
    fn default() -> Policy {
        Policy { rotation_days: None, grace_period_days: GRACE_PERIOD_DAYS_DEFAULT, hmac_sha256: true }
    }
}

// ---- The file as written. ----

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_algos: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPartner {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_cidrs: Vec<String>,
    #[serde(default, skip_serializing_if = "is_optional")]
    pub client_cert: ClientCert,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_identities: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwt_subjects: Vec<String>,
    /// Topics the partner's consumers may read (SPEC §6); `["*"]` every topic; absent:
    /// none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consume_topics: Vec<String>,
}

fn is_optional(value: &ClientCert) -> bool {
    *value == ClientCert::Optional
}

/// `(field, reason)` of the first problem.
pub type Problem = (&'static str, String);

/// Validates the `[policy]` table; `days_max` bounds both day counts.
pub fn validate_policy(raw: &RawPolicy, days_max: u32) -> Result<Policy, Problem> {
    let mut policy = Policy::default();
    if let Some(days) = raw.rotation_days {
        if !(1..=days_max).contains(&days) {
            return Err(("rotation_days", format!("must be 1..={days_max}")));
        }
        policy.rotation_days = Some(days);
    }
    if let Some(days) = raw.grace_period_days {
        if days > days_max {
            return Err(("grace_period_days", format!("must be at most {days_max}")));
        }
        policy.grace_period_days = days;
    }
    if let Some(algos) = &raw.allow_algos {
        if let Some(unknown) = algos.iter().find(|algo| algo.as_str() != ALGO_HMAC_SHA256) {
            return Err(("allow_algos", format!("names {unknown:?}; the only key algorithm is {ALGO_HMAC_SHA256:?}")));
        }
        policy.hmac_sha256 = !algos.is_empty();
    }
    Ok(policy)
}

/// Validates one `[[partners]]` table; `name_problem` checks the name like a key's partner.
pub fn validate_partner(raw: &RawPartner, name_problem: impl Fn(&str) -> Option<String>) -> Result<Partner, Problem> {
    if let Some(problem) = name_problem(&raw.name) {
        return Err(("name", problem));
    }
    let event_types = match &raw.event_types {
        None => None,
        Some(types) if types.iter().any(|t| t == "*") => None,
        Some(types) => {
            if types.len() > EVENT_TYPES_PER_PARTNER_MAX {
                return Err(("event_types", format!("lists more than {EVENT_TYPES_PER_PARTNER_MAX} types")));
            }
            if let Some(bad) = types.iter().find(|t| !is_event_type(t)) {
                return Err(("event_types", format!("{bad:?} is not 1..={EVENT_TYPE_BYTES_MAX} characters of [A-Za-z0-9_.:-]")));
            }
            Some(types.iter().map(|t| Box::from(t.as_bytes())).collect())
        }
    };
    if raw.allow_cidrs.len() > CIDRS_PER_PARTNER_MAX {
        return Err(("allow_cidrs", format!("lists more than {CIDRS_PER_PARTNER_MAX} blocks")));
    }
    let allow_cidrs =
        raw.allow_cidrs.iter().map(|text| text.parse::<Cidr>()).collect::<Result<Vec<_>, _>>().map_err(|e| ("allow_cidrs", e))?;
    for (field, list) in [("tls_identities", &raw.tls_identities), ("jwt_subjects", &raw.jwt_subjects)] {
        if list.len() > IDENTITIES_PER_PARTNER_MAX {
            return Err((field, format!("lists more than {IDENTITIES_PER_PARTNER_MAX} names")));
        }
        if list.iter().any(|name| name.is_empty() || name.chars().any(char::is_control)) {
            return Err((field, "names must be non-empty and free of control characters".to_owned()));
        }
    }
    if raw.consume_topics.len() > crate::constants::TOPICS_MAX {
        return Err(("consume_topics", format!("lists more than {} topics", crate::constants::TOPICS_MAX)));
    }
    if let Some(bad) = raw.consume_topics.iter().find(|topic| *topic != "*" && crate::topics::valid_name(topic).is_err()) {
        return Err(("consume_topics", format!("{bad:?} is not a topic name (1..=64 of [a-z0-9_.-]) or \"*\"")));
    }
    let consume_topics = if raw.consume_topics.iter().any(|topic| topic == "*") {
        None
    } else {
        Some(raw.consume_topics.iter().map(|topic| Box::from(topic.as_str())).collect())
    };
    if raw.client_cert != ClientCert::Optional && raw.tls_identities.is_empty() {
        return Err(("client_cert", "needs tls_identities to say which certificates are the partner's".to_owned()));
    }
    Ok(Partner {
        name: raw.name.clone(),
        event_types,
        allow_cidrs,
        client_cert: raw.client_cert,
        tls_identities: raw.tls_identities.clone(),
        jwt_subjects: raw.jwt_subjects.clone(),
        consume_topics,
        declared: true,
    })
}

fn is_event_type(text: &str) -> bool {
    (1..=EVENT_TYPE_BYTES_MAX).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn cidr_blocks_contain_their_addresses_only() {
        let block: Cidr = "10.20.0.0/16".parse().unwrap();
        assert!(block.contains(ip("10.20.255.1")));
        assert!(!block.contains(ip("10.21.0.1")));
        assert!(!block.contains(ip("::1")));
        let single: Cidr = "192.0.2.7".parse().unwrap();
        assert!(single.contains(ip("192.0.2.7")) && !single.contains(ip("192.0.2.8")));
        let everything: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains(ip("203.0.113.9")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::1")));
        for bad in ["10.0.0.0/33", "10.0.0/8", "::/129", "host/8", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn partners_check_types_addresses_and_identities() {
        let raw = RawPartner {
            name: "wallet".into(),
            event_types: Some(vec!["deposit".into()]),
            allow_cidrs: vec!["127.0.0.0/8".into()],
            client_cert: ClientCert::Required,
            tls_identities: vec!["wallet.prod".into()],
            jwt_subjects: vec![],
            consume_topics: vec!["wallet".into()],
        };
        let partner = validate_partner(&raw, |_| None).unwrap();
        assert!(partner.may_consume("wallet") && !partner.may_consume("events"));
        assert!(!Partner::implied("x").may_consume("events"), "a partner reads nothing unless consume_topics says so");
        let bad = RawPartner { consume_topics: vec!["Bad/Topic".into()], ..raw.clone() };
        assert_eq!(validate_partner(&bad, |_| None).unwrap_err().0, "consume_topics");
        assert!(partner.allows_event_type(b"deposit") && !partner.allows_event_type(b"bet"));
        assert!(partner.allows_ip(Some(ip("127.0.0.1"))) && !partner.allows_ip(Some(ip("10.0.0.1"))) && !partner.allows_ip(None));
        assert!(
            partner.has_tls_identity(Some("wallet.prod")) && !partner.has_tls_identity(Some("other")) && !partner.has_tls_identity(None)
        );
        let star = RawPartner { event_types: Some(vec!["*".into()]), client_cert: ClientCert::Optional, ..raw.clone() };
        assert!(validate_partner(&star, |_| None).unwrap().allows_event_type(b"anything"));
        let implied = Partner::implied("dev");
        assert!(implied.allows_event_type(b"bet") && implied.allows_ip(None));
    }

    #[test]
    fn bad_partner_tables_name_the_field() {
        let base = RawPartner { name: "p".into(), ..RawPartner::default() };
        let cases = [
            (RawPartner { event_types: Some(vec!["bad type".into()]), ..base.clone() }, "event_types"),
            (RawPartner { allow_cidrs: vec!["10.0.0.0/40".into()], ..base.clone() }, "allow_cidrs"),
            (RawPartner { client_cert: ClientCert::Required, ..base.clone() }, "client_cert"),
            (RawPartner { jwt_subjects: vec![String::new()], ..base.clone() }, "jwt_subjects"),
        ];
        for (raw, field) in cases {
            assert_eq!(validate_partner(&raw, |_| None).unwrap_err().0, field);
        }
        assert_eq!(validate_partner(&base, |_| Some("bad".into())).unwrap_err().0, "name");
    }

    #[test]
    fn policy_pins_the_algorithm_and_bounds_days() {
        assert_eq!(validate_policy(&RawPolicy::default(), 365).unwrap(), Policy::default());
        let pinned = RawPolicy { rotation_days: Some(45), grace_period_days: Some(7), allow_algos: Some(vec![ALGO_HMAC_SHA256.into()]) };
        let policy = validate_policy(&pinned, 365).unwrap();
        assert_eq!((policy.rotation_days, policy.grace_period_days, policy.hmac_sha256), (Some(45), 7, true));
        let none = RawPolicy { allow_algos: Some(vec![]), ..RawPolicy::default() };
        assert!(!validate_policy(&none, 365).unwrap().hmac_sha256);
        let md5 = RawPolicy { allow_algos: Some(vec!["HMAC-MD5".into()]), ..RawPolicy::default() };
        assert_eq!(validate_policy(&md5, 365).unwrap_err().0, "allow_algos");
        assert_eq!(validate_policy(&RawPolicy { rotation_days: Some(0), ..RawPolicy::default() }, 365).unwrap_err().0, "rotation_days");
    }
}
