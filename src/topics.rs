//! Topics (SPEC §5): named sets of partitions, each event routed to one by its
//! `event_type`. Every partition of every topic has one number across the node, its
//! *slot*: topic `t`'s partition `p` is slot `base(t) + p`. Slots are what shards own
//! (`slot mod shards`), so each topic's partitions spread over every shard, and what the
//! shared per-partition state (end offsets, read wake-ups, metrics) is indexed by.
//!
//! Topic `events` keeps the data dir layout written before topics existed
//! (`<data_dir>/partitions/NNNN`); every other topic lives in `<data_dir>/topics/<name>/`
//! with its own `sluice.meta` (partition count, dedup key). Nothing is ever rewritten.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The topic a configuration without `[[topics]]` has, and the one an old data dir is.
pub const DEFAULT_TOPIC: &str = "events";
/// Topics other than [`DEFAULT_TOPIC`] live under this directory of the data dir.
pub const TOPICS_DIR: &str = "topics";
/// Longest topic name (SPEC §5).
pub const TOPIC_NAME_BYTES_MAX: usize = 64;

/// One topic, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub name: Box<str>,
    /// The event types routed here; `"*"` is kept apart in `wildcard`.
    pub event_types: Vec<Box<str>>,
    /// Takes every event type no other topic lists.
    pub wildcard: bool,
    pub partitions: u32,
    pub retention_ms: u64,
    /// Per partition; 0 = no size limit.
    pub retention_bytes: u64,
    /// Slot of partition 0.
    pub base: u32,
    /// `optional = true`: its events are refused first under overload (SPEC §7).
    pub optional: bool,
}

/// Every topic of the node and the routing table, fixed at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    topics: Vec<Topic>,
    routes: HashMap<Box<[u8]>, u16>,
    wildcard: Option<u16>,
    slots: u32,
    /// Stream versions: `(topic, version)` → the topic named `<topic>.v<version>`.
    streams: HashMap<(u16, u32), u16>,
}

/// A routing or naming mistake in `[[topics]]`, with the key to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyError {
    pub key: String,
    pub reason: String,
}

/// Whether `name` is a valid name for a configured topic: 1..=64 of `[a-z0-9_.-]`, not
/// starting with `_` (reserved for sluice's own topics).
pub fn valid_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(format!("must be 1..={TOPIC_NAME_BYTES_MAX} characters"));
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')) {
        return Err("may hold only a-z, 0-9, '_', '.' and '-'".to_owned());
    }
    if name.starts_with('_') {
        return Err("names starting with '_' are reserved for sluice's own topics".to_owned());
    }
    if name == "." || name == ".." {
        return Err("must not be '.' or '..'".to_owned());
    }
    Ok(())
}

impl Topology {
    /// Builds the routing table; `topics` in configuration order (their `base` is set
    /// here). Refuses two topics with one name, an event type listed twice, and more than
    /// one `"*"` topic.
    pub fn new(mut topics: Vec<Topic>, slots_max: u32) -> Result<Topology, TopologyError> {
        let mut routes = HashMap::new();
        let mut wildcard = None;
        let mut names: HashMap<Box<str>, usize> = HashMap::new();
        let mut slots = 0u32;
        for (index, topic) in topics.iter_mut().enumerate() {
            let key = |field: &str| format!("topics[{index}].{field}");
            if let Some(first) = names.insert(topic.name.clone(), index) {
                return Err(TopologyError { key: key("name"), reason: format!("{:?} is also the name of topics[{first}]", topic.name) });
            }
            let topic_index = u16::try_from(index).map_err(|_| TopologyError { key: key("name"), reason: "too many topics".to_owned() })?;
            for event_type in &topic.event_types {
                if let Some(other) = routes.insert(Box::from(event_type.as_bytes()), topic_index) {
                    let other = usize::from(other);
                    return Err(TopologyError {
                        key: key("event_types"),
                        reason: format!("{event_type:?} is also routed to topics[{other}]: an event type goes to one topic"),
                    });
                }
            }
            if topic.wildcard {
                if let Some(other) = wildcard {
                    return Err(TopologyError {
                        key: key("event_types"),
                        reason: format!("\"*\" is also listed by topics[{other}]: at most one topic takes the unlisted types"),
                    });
                }
                wildcard = Some(topic_index);
            }
            topic.base = slots;
            slots = slots.checked_add(topic.partitions).filter(|total| *total <= slots_max).ok_or_else(|| TopologyError {
                key: key("partitions"),
                reason: format!("all topics together may have at most {slots_max} partitions"),
            })?;
        }
        if topics.is_empty() {
            return Err(TopologyError { key: "topics".to_owned(), reason: "at least one topic is needed".to_owned() });
        }
        let streams = stream_versions(&topics, &names);
        Ok(Topology { topics, routes, wildcard, slots, streams })
    }

    /// The one topic `events`, taking every type: a node without `[[topics]]`.
    pub fn single(partitions: u32, retention_ms: u64, retention_bytes: u64) -> Topology {
        let topic = Topic {
            name: Box::from(DEFAULT_TOPIC),
            event_types: Vec::new(),
            wildcard: true,
            partitions,
            retention_ms,
            retention_bytes,
            base: 0,
            optional: false,
        };
        Topology::new(vec![topic], u32::MAX).expect("one wildcard topic is a valid topology")
    }

    /// Stream version `version` of `topic`: the topic itself for 1, else the topic named
    /// `<topic>.v<version>` (declared with `versions = N`, or by name), if there is one.
    pub fn stream(&self, topic: u16, version: u32) -> Option<u16> {
        if version <= 1 {
            return Some(topic);
        }
        self.streams.get(&(topic, version)).copied()
    }

    /// The base topic and stream version of `topic` (`(topic, 1)` when it is no version of another).
    pub fn stream_of(&self, topic: u16) -> (u16, u32) {
        self.streams.iter().find(|(_, derived)| **derived == topic).map_or((topic, 1), |((base, version), _)| (*base, *version))
    }

    /// The topic `event_type` goes to, if any.
    pub fn route(&self, event_type: &[u8]) -> Option<u16> {
        if self.routes.is_empty() {
            return self.wildcard;
        }
        self.routes.get(event_type).copied().or(self.wildcard)
    }

    pub fn topics(&self) -> &[Topic] {
        &self.topics
    }

    pub fn topic(&self, index: u16) -> &Topic {
        &self.topics[usize::from(index)]
    }

    pub fn by_name(&self, name: &[u8]) -> Option<u16> {
        self.topics.iter().position(|topic| topic.name.as_bytes() == name).map(|index| index as u16)
    }

    /// Whether some topic takes the types no topic lists.
    pub fn has_wildcard(&self) -> bool {
        self.wildcard.is_some()
    }

    /// Partitions of all topics together: the number of slots.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// The slot of `topic`'s `partition`.
    pub fn slot(&self, topic: u16, partition: u32) -> u32 {
        let topic = self.topic(topic);
        debug_assert!(partition < topic.partitions);
        topic.base + partition
    }

    /// The topic and partition of `slot`.
    pub fn locate(&self, slot: u32) -> (u16, u32) {
        let index = self.topics.partition_point(|topic| topic.base <= slot).saturating_sub(1);
        (index as u16, slot - self.topics[index].base)
    }

    /// Where `topic` keeps its partitions and `sluice.meta`.
    pub fn topic_root(data_dir: &Path, name: &str) -> PathBuf {
        if name == DEFAULT_TOPIC { data_dir.to_owned() } else { data_dir.join(TOPICS_DIR).join(name) }
    }

    /// The topic names a data dir holds (for readers with no configuration): `events`
    /// when its `sluice.meta` exists, then every `topics/<name>` with one, by name.
    pub fn names_on_disk(data_dir: &Path) -> Vec<String> {
        let mut names = Vec::new();
        if data_dir.join("sluice.meta").exists() {
            names.push(DEFAULT_TOPIC.to_owned());
        }
        let mut others: Vec<String> = std::fs::read_dir(data_dir.join(TOPICS_DIR))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| valid_name(name).is_ok() && data_dir.join(TOPICS_DIR).join(name).join("sluice.meta").exists())
            .collect();
        others.sort();
        names.extend(others);
        names
    }
}

/// Finds the topics named `<base>.v<N>` (N ≥ 2) of another topic `<base>`.
fn stream_versions(topics: &[Topic], names: &HashMap<Box<str>, usize>) -> HashMap<(u16, u32), u16> {
    let mut streams = HashMap::new();
    for (index, topic) in topics.iter().enumerate() {
        let Some((base, version)) = topic.name.rsplit_once(".v") else { continue };
        let Some(version) = version.parse::<u32>().ok().filter(|version| *version >= 2 && !version.to_string().starts_with('0')) else {
            continue;
        };
        if let Some(base) = names.get(base) {
            streams.insert((*base as u16, version), index as u16);
        }
    }
    streams
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, types: &[&str], partitions: u32) -> Topic {
        Topic {
            name: Box::from(name),
            event_types: types.iter().filter(|t| **t != "*").map(|t| Box::from(*t)).collect(),
            wildcard: types.contains(&"*"),
            partitions,
            retention_ms: 1,
            retention_bytes: 0,
            base: 0,
            optional: false,
        }
    }

    #[test]
    fn routes_by_type_then_to_the_wildcard_and_numbers_slots_in_order() {
        let topology = Topology::new(vec![topic("wallet", &["deposit", "bonus_paid"], 4), topic("events", &["*"], 8)], 4096).unwrap();
        assert_eq!(topology.route(b"deposit"), Some(0));
        assert_eq!(topology.route(b"bet"), Some(1));
        assert_eq!(topology.slots(), 12);
        assert_eq!(topology.slot(1, 3), 7);
        assert_eq!(topology.locate(0), (0, 0));
        assert_eq!(topology.locate(3), (0, 3));
        assert_eq!(topology.locate(4), (1, 0));
        assert_eq!(topology.locate(11), (1, 7));
        assert_eq!(topology.by_name(b"events"), Some(1));
    }

    #[test]
    fn without_a_wildcard_unlisted_types_are_not_routed() {
        let topology = Topology::new(vec![topic("wallet", &["deposit"], 2)], 4096).unwrap();
        assert_eq!(topology.route(b"bet"), None);
        assert!(!topology.has_wildcard());
    }

    #[test]
    fn refuses_a_type_in_two_topics_two_wildcards_and_one_name_twice() {
        let twice = Topology::new(vec![topic("a", &["bet"], 1), topic("b", &["bet"], 1)], 4096).unwrap_err();
        assert_eq!(twice.key, "topics[1].event_types");
        let wild = Topology::new(vec![topic("a", &["*"], 1), topic("b", &["*"], 1)], 4096).unwrap_err();
        assert!(wild.reason.contains("at most one"), "{wild:?}");
        let named = Topology::new(vec![topic("a", &["x"], 1), topic("a", &["y"], 1)], 4096).unwrap_err();
        assert_eq!(named.key, "topics[1].name");
        let big = Topology::new(vec![topic("a", &["*"], 4000), topic("b", &["y"], 200)], 4096).unwrap_err();
        assert_eq!(big.key, "topics[1].partitions");
    }

    #[test]
    fn stream_versions_are_topics_named_after_their_base() {
        let topology =
            Topology::new(vec![topic("wallet", &["deposit"], 2), topic("wallet.v2", &[], 2), topic("x.v2", &[], 1)], 4096).unwrap();
        assert_eq!(topology.stream(0, 1), Some(0));
        assert_eq!(topology.stream(0, 2), Some(1));
        assert_eq!(topology.stream(0, 3), None);
        assert_eq!(topology.stream(2, 2), None);
        assert_eq!(topology.stream_of(1), (0, 2));
        assert_eq!(topology.stream_of(2), (2, 1));
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("wallet_events").is_ok());
        assert!(valid_name("a.b-c").is_ok());
        for bad in ["", "_own", "Upper", "a/b", "..", &"x".repeat(65)] {
            assert!(valid_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_default_topic_keeps_the_old_layout() {
        let root = Path::new("/d");
        assert_eq!(Topology::topic_root(root, "events"), PathBuf::from("/d"));
        assert_eq!(Topology::topic_root(root, "wallet"), PathBuf::from("/d/topics/wallet"));
    }
}
