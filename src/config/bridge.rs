//! `[bridge.kafka]` (SPEC §8): what `sluice bridge kafka` forwards where, and how. `serve`
//! accepts and ignores the section, so one file can configure the node and its bridge.
//! docs/KAFKA.md lists every key with its default and why.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

use super::{ConfigError, invalid};
use crate::topics::Topology;

/// `[bridge]`: one table per kind of bridge (only Kafka today).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBridge {
    pub(super) kafka: Option<RawKafkaBridge>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKafkaBridge {
    brokers: Option<String>,
    topics: Option<Vec<String>>,
    topic_prefix: Option<String>,
    mode: Option<String>,
    transactional_id: Option<String>,
    progress_topic: Option<String>,
    create_topics: Option<bool>,
    replication_factor: Option<i32>,
    topic_config: Option<BTreeMap<String, String>>,
    transaction_records_max: Option<usize>,
    transaction_ms: Option<u64>,
    linger_ms: Option<u64>,
    batch_bytes: Option<u64>,
    compression: Option<String>,
    transaction_timeout_ms: Option<u64>,
    backoff_initial_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    metrics_listen: Option<String>,
    retention_alert_ratio: Option<f64>,
    librdkafka: Option<BTreeMap<String, String>>,
}

/// How the bridge writes to Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeMode {
    /// A transactional producer: each transaction holds records and the progress that
    /// says they were sent; a `read_committed` consumer sees every event once.
    ExactlyOnce,
    /// An idempotent producer without transactions, progress written after the records
    /// are acknowledged: after a crash of the bridge, events since the last progress
    /// record are sent again.
    AtLeastOnce,
}

impl BridgeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BridgeMode::ExactlyOnce => "exactly-once",
            BridgeMode::AtLeastOnce => "at-least-once",
        }
    }
}

/// The effective `[bridge.kafka]`.
#[derive(Debug, Clone)]
pub struct KafkaBridgeConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The sluice topics forwarded (all configured topics unless `topics` names some).
    pub topics: Vec<String>,
    /// Kafka topic of sluice topic `t`: `topic_prefix + t`.
    pub topic_prefix: String,
    pub mode: BridgeMode,
    /// The producer's `transactional.id`, and the name progress records are kept under:
    /// one per box (two bridges with the same id fence each other).
    pub transactional_id: String,
    /// The compacted topic the progress records go to.
    pub progress_topic: String,
    /// Create missing Kafka topics (same partition count as the sluice topic).
    pub create_topics: bool,
    pub replication_factor: i32,
    /// Topic settings for topics the bridge creates (`min.insync.replicas`, ...).
    pub topic_config: BTreeMap<String, String>,
    /// Records per transaction at most.
    pub transaction_records_max: usize,
    /// How long a transaction collects records before it commits.
    pub transaction_ms: u64,
    pub linger_ms: u64,
    pub batch_bytes: u64,
    pub compression: String,
    pub transaction_timeout_ms: u64,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// `/metrics` and `/healthz` of the bridge; `None` when set to "off".
    pub metrics_listen: Option<SocketAddr>,
    /// The retention alarm fires when the oldest unsent event has used this share of its
    /// topic's retention (time or bytes).
    pub retention_alert_ratio: f64,
    /// Passed to librdkafka as they are (TLS, SASL, timeouts); never printed.
    pub librdkafka: BTreeMap<String, String>,
}

/// librdkafka settings the bridge owns: setting them would void a guarantee.
/// Settings set through a key of their own (or a librdkafka alias of one) are refused too:
/// which of two spellings wins is librdkafka's business, not the operator's.
const OWNED_SETTINGS: [&str; 19] = [
    "bootstrap.servers",
    "metadata.broker.list",
    "transactional.id",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "partitioner",
    "isolation.level",
    "enable.auto.commit",
    "compression.type",
    "compression.codec",
    "linger.ms",
    "queue.buffering.max.ms",
    "batch.size",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "transaction.timeout.ms",
    "enable.partition.eof",
    "group.id",
];

const COMPRESSIONS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

pub(super) fn kafka_bridge_config(raw: RawKafkaBridge, topology: &Topology) -> Result<KafkaBridgeConfig, ConfigError> {
    let timing = timing(&raw)?;
    let brokers = raw.brokers.ok_or_else(|| invalid("bridge.kafka.brokers", "is required (host:port,...)"))?;
    if brokers.trim().is_empty() {
        return Err(invalid("bridge.kafka.brokers", "is empty"));
    }
    let topics = forwarded_topics(raw.topics, topology)?;
    let mode = match raw.mode.as_deref().unwrap_or("exactly-once") {
        "exactly-once" => BridgeMode::ExactlyOnce,
        "at-least-once" => BridgeMode::AtLeastOnce,
        other => return Err(invalid("bridge.kafka.mode", format!("is exactly-once or at-least-once, not {other:?}"))),
    };
    let topic_prefix = raw.topic_prefix.unwrap_or_default();
    let progress_topic = raw.progress_topic.unwrap_or_else(|| "sluice-bridge-progress".to_owned());
    for (key, name) in
        [("bridge.kafka.topic_prefix", format!("{topic_prefix}events")), ("bridge.kafka.progress_topic", progress_topic.clone())]
    {
        kafka_topic_name(&name).map_err(|reason| invalid(key, reason))?;
    }
    if topics.iter().any(|topic| format!("{topic_prefix}{topic}") == progress_topic) {
        return Err(invalid("bridge.kafka.progress_topic", "is also where a sluice topic goes"));
    }
    let transactional_id = raw.transactional_id.unwrap_or_else(|| "sluice-bridge".to_owned());
    if transactional_id.is_empty() || transactional_id.len() > 200 || transactional_id.contains('/') {
        return Err(invalid("bridge.kafka.transactional_id", "is 1 to 200 characters without '/'"));
    }
    let compression = raw.compression.unwrap_or_else(|| "zstd".to_owned());
    if !COMPRESSIONS.contains(&compression.as_str()) {
        return Err(invalid("bridge.kafka.compression", format!("is one of {}", COMPRESSIONS.join(", "))));
    }
    let librdkafka = raw.librdkafka.unwrap_or_default();
    if let Some(owned) = librdkafka.keys().find(|key| OWNED_SETTINGS.contains(&key.as_str())) {
        return Err(invalid("bridge.kafka.librdkafka", format!("{owned:?} is set by the bridge itself (see docs/KAFKA.md)")));
    }
    let metrics_listen = match raw.metrics_listen.as_deref().unwrap_or("127.0.0.1:9466") {
        "off" => None,
        text => Some(text.parse().map_err(|_| invalid("bridge.kafka.metrics_listen", format!("{text:?} is not host:port or \"off\"")))?),
    };
    let ratio = raw.retention_alert_ratio.unwrap_or(0.5);
    if !(0.05..=0.95).contains(&ratio) {
        return Err(invalid("bridge.kafka.retention_alert_ratio", "is between 0.05 and 0.95"));
    }
    let topic_config = topic_config(raw.topic_config, timing.replication_factor)?;
    Ok(KafkaBridgeConfig {
        brokers,
        topics,
        topic_prefix,
        mode,
        transactional_id,
        progress_topic,
        create_topics: raw.create_topics.unwrap_or(false),
        replication_factor: timing.replication_factor,
        topic_config,
        linger_ms: raw.linger_ms.unwrap_or(5).min(5_000),
        batch_bytes: raw.batch_bytes.unwrap_or(1 << 20).clamp(1 << 10, 1 << 30),
        compression,
        transaction_records_max: timing.transaction_records_max,
        transaction_ms: timing.transaction_ms,
        transaction_timeout_ms: timing.transaction_timeout_ms,
        backoff_initial_ms: timing.backoff_initial_ms,
        backoff_max_ms: timing.backoff_max_ms,
        metrics_listen,
        retention_alert_ratio: ratio,
        librdkafka,
    })
}

/// Settings of the topics the bridge creates; `min.insync.replicas` must be reachable.
fn topic_config(raw: Option<BTreeMap<String, String>>, replication_factor: i32) -> Result<BTreeMap<String, String>, ConfigError> {
    let settings = raw.unwrap_or_else(|| BTreeMap::from([("min.insync.replicas".to_owned(), "2".to_owned())]));
    if let Some(min_insync) = settings.get("min.insync.replicas")
        && min_insync.parse::<i32>().is_ok_and(|min_insync| min_insync > replication_factor)
    {
        return Err(invalid(
            "bridge.kafka.topic_config",
            format!("min.insync.replicas = {min_insync} is above replication_factor = {replication_factor}: no write could succeed"),
        ));
    }
    Ok(settings)
}

/// The sluice topics to forward: `topics`, each a configured one, else all.
fn forwarded_topics(topics: Option<Vec<String>>, topology: &Topology) -> Result<Vec<String>, ConfigError> {
    let configured: Vec<String> = topology.topics().iter().map(|topic| topic.name.to_string()).collect();
    match topics {
        None => Ok(configured),
        Some(list) if list.is_empty() => Err(invalid("bridge.kafka.topics", "names no topic (leave it out to forward all)")),
        Some(list) => {
            for (index, name) in list.iter().enumerate() {
                if list[..index].contains(name) {
                    return Err(invalid("bridge.kafka.topics", format!("{name:?} is listed twice (its events would be sent twice)")));
                }
                if !configured.contains(name) {
                    return Err(invalid("bridge.kafka.topics", format!("{name:?} is not a configured topic ({})", configured.join(", "))));
                }
            }
            Ok(list)
        }
    }
}

/// The sizes and times of `[bridge.kafka]`, checked.
struct Timing {
    transaction_records_max: usize,
    transaction_ms: u64,
    transaction_timeout_ms: u64,
    backoff_initial_ms: u64,
    backoff_max_ms: u64,
    replication_factor: i32,
}

fn timing(raw: &RawKafkaBridge) -> Result<Timing, ConfigError> {
    let transaction_timeout_ms = raw.transaction_timeout_ms.unwrap_or(60_000);
    if !(1_000..=900_000).contains(&transaction_timeout_ms) {
        return Err(invalid("bridge.kafka.transaction_timeout_ms", "is between 1000 and 900000"));
    }
    let transaction_ms = raw.transaction_ms.unwrap_or(100);
    if transaction_ms == 0 || transaction_ms * 2 > transaction_timeout_ms {
        return Err(invalid("bridge.kafka.transaction_ms", "is at least 1 and at most half of transaction_timeout_ms"));
    }
    let backoff_initial_ms = raw.backoff_initial_ms.unwrap_or(100).max(1);
    let backoff_max_ms = raw.backoff_max_ms.unwrap_or(30_000);
    if backoff_max_ms < backoff_initial_ms || backoff_max_ms > 300_000 {
        return Err(invalid("bridge.kafka.backoff_max_ms", "is at least backoff_initial_ms and at most 300000"));
    }
    let transaction_records_max = raw.transaction_records_max.unwrap_or(50_000);
    if !(1..=1_000_000).contains(&transaction_records_max) {
        return Err(invalid("bridge.kafka.transaction_records_max", "is between 1 and 1000000"));
    }
    let replication_factor = raw.replication_factor.unwrap_or(3);
    if replication_factor < 1 {
        return Err(invalid("bridge.kafka.replication_factor", "is at least 1"));
    }
    Ok(Timing { transaction_records_max, transaction_ms, transaction_timeout_ms, backoff_initial_ms, backoff_max_ms, replication_factor })
}

/// Kafka's topic name rule: 1 to 249 of `[a-zA-Z0-9._-]`, not "." or "..".
fn kafka_topic_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if valid { Ok(()) } else { Err(format!("{name:?} is not a Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)")) }
}

impl KafkaBridgeConfig {
    /// The Kafka topic events of sluice topic `topic` go to.
    pub fn kafka_topic(&self, topic: &str) -> String {
        format!("{}{topic}", self.topic_prefix)
    }

    /// `[bridge.kafka]` as `check-config` prints it; librdkafka values are hidden (they
    /// hold passwords).
    pub fn to_toml(&self) -> String {
        let list = |items: &mut dyn Iterator<Item = String>| items.map(|item| format!("{item:?}")).collect::<Vec<_>>().join(", ");
        let mut out = format!(
            "\n[bridge.kafka]\nbrokers = {:?}\ntopics = [{}]\ntopic_prefix = {:?}\nmode = \"{}\"\ntransactional_id = {:?}\n\
             progress_topic = {:?}\ncreate_topics = {}\nreplication_factor = {}\ntransaction_records_max = {}\ntransaction_ms = {}\n\
             linger_ms = {}\nbatch_bytes = {}\ncompression = {:?}\ntransaction_timeout_ms = {}\nbackoff_initial_ms = {}\n\
             backoff_max_ms = {}\nmetrics_listen = \"{}\"\nretention_alert_ratio = {}\n",
            self.brokers,
            list(&mut self.topics.iter().cloned()),
            self.topic_prefix,
            self.mode.as_str(),
            self.transactional_id,
            self.progress_topic,
            self.create_topics,
            self.replication_factor,
            self.transaction_records_max,
            self.transaction_ms,
            self.linger_ms,
            self.batch_bytes,
            self.compression,
            self.transaction_timeout_ms,
            self.backoff_initial_ms,
            self.backoff_max_ms,
            self.metrics_listen.map_or_else(|| "off".to_owned(), |addr| addr.to_string()),
            self.retention_alert_ratio,
        );
        out.push_str("\n[bridge.kafka.topic_config]\n");
        for (key, value) in &self.topic_config {
            out.push_str(&format!("{key:?} = {value:?}\n"));
        }
        if !self.librdkafka.is_empty() {
            out.push_str("\n[bridge.kafka.librdkafka]\n");
            for key in self.librdkafka.keys() {
                out.push_str(&format!("# {key:?} = (set; not shown)\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<KafkaBridgeConfig, ConfigError> {
        let raw: RawKafkaBridge = toml::from_str(text).unwrap();
        kafka_bridge_config(raw, &Topology::single(4, 0, 0))
    }

    #[test]
    fn defaults_are_exactly_once_zstd_all_topics() {
        let config = parse("brokers = \"k1:9092\"").unwrap();
        assert_eq!(config.mode, BridgeMode::ExactlyOnce);
        assert_eq!(config.topics, ["events"]);
        assert_eq!(config.compression, "zstd");
        assert_eq!(config.kafka_topic("events"), "events");
        assert_eq!(config.topic_config["min.insync.replicas"], "2");
    }

    #[test]
    fn refuses_what_would_void_a_guarantee_or_cannot_work() {
        for (text, key) in [
            ("", "bridge.kafka.brokers"),
            ("brokers = \"k\"\nmode = \"maybe\"", "bridge.kafka.mode"),
            ("brokers = \"k\"\ntopics = [\"bets\"]", "bridge.kafka.topics"),
            ("brokers = \"k\"\ntopic_prefix = \"a b\"", "bridge.kafka.topic_prefix"),
            ("brokers = \"k\"\nprogress_topic = \"events\"", "bridge.kafka.progress_topic"),
            ("brokers = \"k\"\n[librdkafka]\n\"enable.idempotence\" = \"false\"", "bridge.kafka.librdkafka"),
            ("brokers = \"k\"\ntransaction_ms = 40000", "bridge.kafka.transaction_ms"),
            ("brokers = \"k\"\ntransactional_id = \"a/b\"", "bridge.kafka.transactional_id"),
            ("brokers = \"k\"\ncompression = \"brotli\"", "bridge.kafka.compression"),
            ("brokers = \"k\"\ntopics = [\"events\", \"events\"]", "bridge.kafka.topics"),
            ("brokers = \"k\"\nreplication_factor = 1", "bridge.kafka.topic_config"),
            ("brokers = \"k\"\n[librdkafka]\n\"queue.buffering.max.ms\" = \"0\"", "bridge.kafka.librdkafka"),
        ] {
            match parse(text) {
                Err(ConfigError::Invalid { key: found, .. }) => assert_eq!(found, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn printed_form_hides_librdkafka_values() {
        let config = parse("brokers = \"k\"\n[librdkafka]\n\"sasl.password\" = \"hunter2\"").unwrap();
        let text = config.to_toml();
        assert!(text.contains("sasl.password") && !text.contains("hunter2"), "{text}");
    }
}
