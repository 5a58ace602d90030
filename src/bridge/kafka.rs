//! The librdkafka clients of the bridge: the producer (transactional or idempotent), the
//! progress reader and the topic creator, all built from `[bridge.kafka]`, and how their
//! errors are sorted into what the bridge does next.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::record::{Progress, decode_progress, parse_progress_key};
use crate::config::{BridgeMode, KafkaBridgeConfig};
use crate::http::itoa_buf::Buffer;

/// The password librdkafka's `sasl.password` takes from the environment, so that it
/// need not be in the configuration file.
pub const SASL_PASSWORD_ENV: &str = "SLUICE_BRIDGE_SASL_PASSWORD";

/// Counts the producer's failed deliveries and keeps librdkafka's last error; its log
/// lines go to the bridge's log.
#[derive(Default)]
pub struct BridgeContext {
    pub failed_deliveries: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    /// Set once anything librdkafka reports says a newer producer with the same
    /// transactional id fenced this one: a delivery report, an error, a log line.
    pub fenced: AtomicBool,
}

impl BridgeContext {
    fn note(&self, error: String) {
        if mentions_fencing(&error) {
            self.fenced.store(true, Ordering::Relaxed);
        }
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error);
        }
    }

    pub fn take_last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|mut last| last.take())
    }
}

impl ClientContext for BridgeContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        if mentions_fencing(message) {
            self.fenced.store(true, Ordering::Relaxed);
        }
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::warn!(facility, message, "librdkafka")
            }
            RDKafkaLogLevel::Warning => tracing::info!(facility, message, "librdkafka"),
            _ => tracing::debug!(facility, message, "librdkafka"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Connection failures repeat at every retry; the bridge reports them once per
        // backoff through `last_error`.
        tracing::debug!(%error, reason, "librdkafka error");
        self.note(format!("{error}: {reason}"));
    }
}

impl ProducerContext for BridgeContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            if error.rdkafka_error_code().is_some_and(is_fenced) {
                self.fenced.store(true, Ordering::Relaxed);
            }
            self.failed_deliveries.fetch_add(1, Ordering::Relaxed);
            self.note(format!("delivery failed: {error}"));
        }
    }
}

pub type BridgeProducer = BaseProducer<BridgeContext>;

/// What to do after a failed librdkafka call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Try the same call again after a pause (a timeout, a broker away).
    Retry,
    /// Abort the transaction, send the records again.
    Abort,
    /// The producer is unusable: make a new one (`init_transactions` again).
    Fatal,
    /// Another bridge with the same transactional id took over: stop.
    Fenced,
}

/// Sorts an error of a transactional call (librdkafka's own flags first).
pub fn classify(error: &KafkaError, producer: &BridgeProducer) -> Failure {
    if producer.context().fenced.load(Ordering::Relaxed) {
        return Failure::Fenced;
    }
    if let Some((code, _)) = producer.client().fatal_error() {
        return if is_fenced(code) { Failure::Fenced } else { Failure::Fatal };
    }
    // Fencing first, whatever else the error says: a fenced producer's abort never
    // finishes, and a new producer would fence the bridge that fenced this one.
    if error.rdkafka_error_code().is_some_and(is_fenced) || mentions_fencing(&error.to_string()) {
        return Failure::Fenced;
    }
    match error {
        KafkaError::Transaction(error) if error.is_fatal() => Failure::Fatal,
        KafkaError::Transaction(error) if error.txn_requires_abort() => Failure::Abort,
        KafkaError::Transaction(error) if error.is_retriable() => Failure::Retry,
        KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut) => Failure::Retry,
        _ => Failure::Abort,
    }
}

/// Whether an error's text is Kafka's "a newer producer with the same transactionalId
/// fences the current one" (librdkafka reports it inside other errors' text, e.g. a
/// failed produce request in an abortable transaction error).
pub fn mentions_fencing(text: &str) -> bool {
    text.contains("fences the current one") || text.contains("PRODUCER_FENCED") || text.contains("Producer fenced")
}

fn is_fenced(code: RDKafkaErrorCode) -> bool {
    matches!(code, RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch)
}

/// Waits until every record sent is acknowledged (or failed), serving delivery reports.
/// The crate's own `flush` polls in slices of 100 ms and so never returns sooner; this one
/// returns within a millisecond of the last acknowledgement.
pub fn flush(producer: &BridgeProducer, timeout: Duration) -> Result<(), KafkaError> {
    // One call to librdkafka's flush wakes the broker threads to send what lingers.
    let _ = producer.flush(Duration::ZERO);
    let deadline = Instant::now() + timeout;
    while producer.in_flight_count() > 0 {
        if Instant::now() >= deadline {
            return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
        }
        producer.poll(Duration::from_millis(1));
    }
    Ok(())
}

/// The settings every client of the bridge shares: the brokers and what the operator
/// passed through (TLS, SASL, timeouts).
fn base_config(config: &KafkaBridgeConfig, client: &str) -> ClientConfig {
    let mut settings = ClientConfig::new();
    settings.set("bootstrap.servers", &config.brokers).set("client.id", format!("sluice-bridge-{client}"));
    for (key, value) in &config.librdkafka {
        settings.set(key, value);
    }
    if let Ok(password) = std::env::var(SASL_PASSWORD_ENV) {
        settings.set("sasl.password", password);
    }
    settings.set_log_level(RDKafkaLogLevel::Info);
    settings
}

/// The producer: `acks=all`, idempotent, zstd, Kafka's murmur2 partitioner for keyed
/// records; transactional in exactly-once mode. Not yet initialised.
pub fn producer(config: &KafkaBridgeConfig) -> Result<BridgeProducer, KafkaError> {
    let mut settings = base_config(config, "producer");
    settings
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("compression.type", &config.compression)
        .set("linger.ms", config.linger_ms.to_string())
        .set("batch.size", config.batch_bytes.min(i32::MAX as u64).to_string())
        .set("message.timeout.ms", config.transaction_timeout_ms.to_string());
    if !config.librdkafka.contains_key("queue.buffering.max.messages") {
        settings.set("queue.buffering.max.messages", "1000000");
    }
    if config.mode == BridgeMode::ExactlyOnce {
        settings.set("transactional.id", &config.transactional_id).set("transaction.timeout.ms", config.transaction_timeout_ms.to_string());
    }
    settings.create_with_context(BridgeContext::default())
}

/// The latest progress this bridge committed, per (sluice topic, partition), read with
/// `isolation.level=read_committed` from every partition of the progress topic up to the
/// high watermark taken after `init_transactions`. A `read_committed` reader stops short
/// of another producer's open transaction (another box's bridge that died mid-commit):
/// it waits for that to end rather than take older progress for the last (which would
/// send events twice). Each wait is bounded by `timeout`; the caller retries.
pub fn read_progress(
    config: &KafkaBridgeConfig,
    timeout: Duration,
    notifier: &crate::platform::systemd::Notifier,
) -> Result<HashMap<(String, u32), Progress>, String> {
    let mut settings = base_config(config, "progress");
    settings
        .set("group.id", format!("{}-progress", config.transactional_id))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer = settings.create().map_err(|error| format!("progress reader: {error}"))?;
    let high = assign_progress(&consumer, config, timeout)?;
    let partitions: Vec<i32> = high.keys().copied().collect();
    let mut found = HashMap::new();
    // A partition is read when librdkafka says it reached the end (end-of-partition) and
    // the position is at the high watermark: the first alone stops at another producer's
    // open transaction, the second alone trusts a broker's watermark arithmetic.
    let mut at_end = std::collections::HashSet::new();
    let deadline = Instant::now() + timeout * 3;
    loop {
        let position = consumer.position().map_err(|error| format!("position in {}: {error}", config.progress_topic))?;
        let behind = partitions.iter().any(|partition| {
            let at = match position.find_partition(&config.progress_topic, *partition).map(|entry| entry.offset()) {
                Some(Offset::Offset(at)) => at,
                _ => 0,
            };
            at < high[partition] || !at_end.contains(partition)
        });
        if !behind {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "progress topic {} not read to its end within {:?} (another producer's open transaction?)",
                config.progress_topic,
                timeout * 3
            ));
        }
        notifier.watchdog();
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
            }
            Some(Err(error)) => return Err(format!("reading {}: {error}", config.progress_topic)),
            Some(Ok(message)) => {
                at_end.remove(&message.partition());
                let Some(key) = message.key().and_then(|key| std::str::from_utf8(key).ok()) else { continue };
                let Some((topic, partition)) = parse_progress_key(&config.transactional_id, key) else { continue };
                // A tombstone (a compacted-away key) resets nothing: offsets never go back.
                let Some(value) = message.payload() else { continue };
                let progress = decode_progress(value).map_err(|error| format!("{key} at offset {}: {error}", message.offset()))?;
                found.insert((topic.to_owned(), partition), progress);
            }
        }
    }
    Ok(found)
}

/// Assigns every partition of the progress topic from its start; returns each one's high
/// watermark, taken now (after `init_transactions`).
fn assign_progress(consumer: &BaseConsumer, config: &KafkaBridgeConfig, timeout: Duration) -> Result<HashMap<i32, i64>, String> {
    let metadata = consumer
        .fetch_metadata(Some(&config.progress_topic), timeout)
        .map_err(|error| format!("metadata of {}: {error}", config.progress_topic))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|topic| topic.name() == config.progress_topic && topic.error().is_none())
        .flat_map(|topic| topic.partitions().iter().map(|partition| partition.id()))
        .collect();
    if partitions.is_empty() {
        return Err(format!("progress topic {} does not exist", config.progress_topic));
    }
    let mut assignment = TopicPartitionList::new();
    for &partition in &partitions {
        assignment
            .add_partition_offset(&config.progress_topic, partition, Offset::Beginning)
            .map_err(|error| format!("assign {}: {error}", config.progress_topic))?;
    }
    consumer.assign(&assignment).map_err(|error| format!("assign {}: {error}", config.progress_topic))?;
    let mut high = HashMap::new();
    for &partition in &partitions {
        let (_, watermark) = consumer
            .fetch_watermarks(&config.progress_topic, partition, timeout)
            .map_err(|error| format!("end of {} [{partition}]: {error}", config.progress_topic))?;
        high.insert(partition, watermark);
    }
    Ok(high)
}

/// Partition counts of `topics` in Kafka (`None`: the topic does not exist).
pub fn partition_counts(config: &KafkaBridgeConfig, topics: &[String], timeout: Duration) -> Result<Vec<Option<usize>>, String> {
    let consumer: BaseConsumer = base_config(config, "metadata").create().map_err(|error| format!("metadata client: {error}"))?;
    let metadata = consumer.fetch_metadata(None, timeout).map_err(|error| format!("cluster metadata: {error}"))?;
    Ok(topics
        .iter()
        .map(|wanted| {
            metadata.topics().iter().find(|topic| topic.name() == wanted && topic.error().is_none()).map(|topic| topic.partitions().len())
        })
        .collect())
}

/// A topic to create: name, partitions, topic settings.
pub struct TopicSpec {
    pub name: String,
    pub partitions: usize,
    pub settings: Vec<(String, String)>,
}

/// Creates `topics`; an existing topic is fine.
pub fn create_topics(config: &KafkaBridgeConfig, topics: &[TopicSpec], timeout: Duration) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> =
        base_config(config, "admin").create().map_err(|error| format!("admin client: {error}"))?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|spec| {
            let mut topic = NewTopic::new(&spec.name, spec.partitions as i32, TopicReplication::Fixed(config.replication_factor));
            for (key, value) in &spec.settings {
                topic = topic.set(key, value);
            }
            topic
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(timeout)).request_timeout(Some(timeout));
    let results =
        futures_executor::block_on(admin.create_topics(new_topics.iter(), &options)).map_err(|error| format!("create topics: {error}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(format!("create topic {topic}: {code}")),
        }
    }
    Ok(())
}

/// `sluice-topic`, `sluice-partition`, `sluice-offset` and `event-id`.
pub fn headers(topic: &str, partition: u32, offset: u64, event_id: &[u8]) -> OwnedHeaders {
    let (mut partition_digits, mut offset_digits) = (Buffer::new(), Buffer::new());
    OwnedHeaders::new_with_capacity(4)
        .insert(Header { key: "sluice-topic", value: Some(topic.as_bytes()) })
        .insert(Header { key: "sluice-partition", value: Some(partition_digits.format(u64::from(partition))) })
        .insert(Header { key: "sluice-offset", value: Some(offset_digits.format(offset)) })
        .insert(Header { key: "event-id", value: Some(event_id) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Headers;

    #[test]
    fn headers_say_where_the_event_came_from() {
        let headers = headers("bets", 7, 1_234_567_890_123, b"evt-1");
        let pairs: Vec<(String, Vec<u8>)> =
            headers.iter().map(|header| (header.key.to_owned(), header.value.unwrap_or_default().to_vec())).collect();
        assert_eq!(
            pairs,
            [
                ("sluice-topic".to_owned(), b"bets".to_vec()),
                ("sluice-partition".to_owned(), b"7".to_vec()),
                ("sluice-offset".to_owned(), b"1234567890123".to_vec()),
                ("event-id".to_owned(), b"evt-1".to_vec()),
            ]
        );
        assert_eq!(Buffer::new().format(0), b"0");
        assert_eq!(Buffer::new().format(u64::MAX), u64::MAX.to_string().as_bytes());
    }
}
