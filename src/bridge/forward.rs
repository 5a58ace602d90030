//! The forwarding loop. One *lane* per forwarded sluice partition: a [`LogReader`] that
//! sends, the offset Kafka holds up to (`committed`), and a second reader (the probe)
//! that follows the log's end for lag, retention alarms and `--once`.
//!
//! A transaction reads lanes round-robin until it holds `transaction_records_max`
//! records or is `transaction_ms` old, flushes them, adds one progress record per lane it
//! touched and commits. Any failure aborts (or, at least once, re-sends) and rewinds the
//! touched lanes to `committed`; the next attempt waits a bounded exponential delay.
//! Offsets the log can no longer give (retention, damage) stop the bridge with the range
//! named, unless `--skip-lost` says to count them and go on.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer};

use super::kafka::{self, BridgeProducer, Failure};
use super::metrics::{self, Page};
use super::record::{self, Progress};
use crate::config::{BridgeMode, Config, KafkaBridgeConfig};
use crate::log::{DataDir, GapCause, LogReader, SeekHint, StartAt, StorageError};
use crate::platform::systemd::Notifier;
use crate::platform::time::now_unix_ms;
use crate::topics::Topology;

/// Records one lane gives a transaction before the next lane's turn.
const LANE_TURN_RECORDS: usize = 2048;
/// How often ends are probed, the metrics page rendered and the watchdog fed.
const TICK: Duration = Duration::from_millis(500);
/// Time for one blocking librdkafka call (commit, abort, flush, init); below the unit's
/// watchdog period so a call cannot starve it.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at `commit_transaction` after the first times out, before the transaction is
/// aborted instead.
const COMMIT_TRIES: u32 = 3;
/// Attempts at `abort_transaction` before the producer is replaced instead.
const ABORT_TRIES: u32 = 2;
/// Pause when every lane is at its end.
const IDLE_PAUSE: Duration = Duration::from_millis(2);

pub struct BridgeOptions {
    /// Forward up to the ends found at start, then exit.
    pub once: bool,
    /// Count offsets the log no longer holds and go on, instead of stopping.
    pub skip_lost: bool,
}

/// How a run ended without error.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// SIGTERM or SIGINT, after the open transaction was committed or aborted.
    Stopped,
    /// `--once`: everything up to the ends found at start is in Kafka.
    CaughtUp,
}

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(
        "topic {topic} partition {partition}: offsets {from}..{to} ({} events) {cause} before the bridge sent them to Kafka; \
         the bridge stops instead of skipping them (docs/KAFKA.md § Lost offsets; --skip-lost goes on)",
        to - from
    )]
    Lost { topic: String, partition: u32, from: u64, to: u64, cause: String },
    #[error(
        "topic {topic} partition {partition}: the log no longer holds what the bridge already sent ({detail}); it was \
         rewritten under the bridge (a power loss under durability = \"os\"?). See docs/KAFKA.md § Rewritten log"
    )]
    Rewritten { topic: String, partition: u32, detail: String },
    #[error("topic {topic} partition {partition} offset {offset}: the stored event has no key.user_id")]
    NoKey { topic: String, partition: u32, offset: u64 },
    #[error("fenced: another bridge with transactional.id {0:?} started, and Kafka now takes its transactions only; this one stops")]
    Fenced(String),
}

impl BridgeError {
    /// The exit status: 2 bad configuration, 3 fenced (so that a service manager does not
    /// restart into a fencing duel), 1 anything else.
    pub fn status(&self) -> u8 {
        match self {
            BridgeError::Usage(_) => 2,
            BridgeError::Fenced(_) => 3,
            _ => 1,
        }
    }
}

/// Runs the bridge until a signal, `--once`'s end, or an error that must stop it.
pub fn run(config: &Config, options: &BridgeOptions, notifier: &Notifier) -> Result<Outcome, BridgeError> {
    let bridge = config
        .bridge_kafka
        .clone()
        .ok_or_else(|| BridgeError::Usage("the configuration has no [bridge.kafka] section (brokers = \"host:9092\", ...)".to_owned()))?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(|error| BridgeError::Usage(format!("signal handler: {error}")))?;
    }
    let lanes = open_lanes(config, &bridge)?;
    let page = Page::default();
    if let Some(addr) = bridge.metrics_listen {
        let bound = metrics::serve(addr, page.clone())
            .map_err(|error| BridgeError::Usage(format!("bridge.kafka.metrics_listen {addr}: {error}")))?;
        tracing::info!(%bound, "bridge metrics listening");
    }
    let mut forwarder = Forwarder::new(bridge, lanes, page, stop, options);
    forwarder.tick(notifier, true)?;
    notifier.ready("connecting to Kafka");
    tracing::info!(
        lanes = forwarder.lanes.len(),
        mode = forwarder.config.mode.as_str(),
        brokers = %forwarder.config.brokers,
        "bridge started"
    );
    let outcome = forwarder.run(notifier);
    if let Err(error) = &outcome {
        forwarder.last_error = Some(error.to_string());
        let _ = forwarder.tick(notifier, true);
    }
    outcome
}

/// The forwarded partitions, each with its readers at the start of its log (progress
/// moves them once Kafka is reached).
fn open_lanes(config: &Config, bridge: &KafkaBridgeConfig) -> Result<Vec<Lane>, BridgeError> {
    let mut lanes = Vec::new();
    for name in &bridge.topics {
        let Some(index) = config.topics.by_name(name.as_bytes()) else { continue };
        let topic = config.topics.topic(index);
        let root = Topology::topic_root(&config.storage.data_dir, name);
        let dir = DataDir::open_existing(&root)
            .map_err(|error| BridgeError::Usage(format!("topic {name}: {error} (start `sluice serve` with this configuration first)")))?;
        if dir.partitions() != topic.partitions {
            return Err(BridgeError::Usage(format!(
                "topic {name}: {} holds {} partitions, the configuration says {}",
                root.display(),
                dir.partitions(),
                topic.partitions
            )));
        }
        for partition in 0..topic.partitions {
            let mut lane = Lane::new(name, bridge.kafka_topic(name), partition, &dir)?;
            (lane.retention_ms, lane.retention_bytes) = (topic.retention_ms, topic.retention_bytes);
            lanes.push(lane);
        }
    }
    Ok(lanes)
}

struct Lane {
    topic: String,
    kafka_topic: String,
    partition: u32,
    dir: DataDir,
    retention_ms: u64,
    retention_bytes: u64,
    /// Reads what is sent.
    reader: LogReader,
    /// Follows the end of the log.
    probe: LogReader,
    /// The offset the reader must give next; `None` before the first record of a lane
    /// without progress (it starts at the oldest retained event).
    expected: Option<u64>,
    /// The next offset not in Kafka yet; `None` while nothing was ever committed.
    committed: Option<u64>,
    /// Where the record at `committed` starts, to rewind without a segment scan.
    committed_hint: Option<SeekHint>,
    committed_event_id: String,
    /// Event id of the last record read (the progress record's `last_event_id`).
    last_event_id: String,
    /// Ingest time of the oldest record read and not committed (lag in seconds).
    first_unsent_ms: Option<i64>,
    /// Ingest time of the oldest stored event not read yet, when none is read and unsent.
    unread_since_ms: Option<i64>,
    /// One past the last record the probe saw.
    end: u64,
    /// The first offset the probe saw (the start of a lane without progress).
    first_seen: Option<u64>,
    pending_records: u64,
    pending_bytes: u64,
    records: u64,
    bytes: u64,
    lost: u64,
    /// Bytes of the segments from the one holding `committed` to the end.
    behind_bytes: u64,
    alarm: bool,
    /// `--once`: the end to reach.
    target: Option<u64>,
}

impl Lane {
    /// A lane at the start of the log, nothing committed, no retention known.
    fn new(topic: &str, kafka_topic: String, partition: u32, dir: &DataDir) -> Result<Lane, StorageError> {
        // The probe starts at the end (a scan of the last segment only, not of the whole
        // retained log); the oldest offset comes from one record at the start.
        let first_seen = LogReader::open(dir, partition, StartAt::Earliest)?.next()?.map(|record| record.offset);
        let probe = LogReader::open(dir, partition, StartAt::Latest)?;
        Ok(Lane {
            topic: topic.to_owned(),
            kafka_topic,
            partition,
            reader: LogReader::open(dir, partition, StartAt::Earliest)?,
            end: probe.position(),
            probe,
            dir: dir.clone(),
            retention_ms: 0,
            retention_bytes: 0,
            expected: None,
            committed: None,
            committed_hint: None,
            committed_event_id: String::new(),
            last_event_id: String::new(),
            first_unsent_ms: None,
            unread_since_ms: None,
            first_seen,
            pending_records: 0,
            pending_bytes: 0,
            records: 0,
            bytes: 0,
            lost: 0,
            behind_bytes: 0,
            alarm: false,
            target: None,
        })
    }

    /// The next offset not in Kafka yet, as far as the bridge knows.
    fn sent_up_to(&self) -> u64 {
        self.committed.or(self.first_seen).unwrap_or(0)
    }

    fn lag(&self) -> u64 {
        self.end.saturating_sub(self.sent_up_to())
    }

    /// Puts the reader back at `committed`, dropping what was read since.
    fn rewind(&mut self) -> Result<(), StorageError> {
        self.unread_since_ms = None;
        self.reader = match (self.committed, self.committed_hint) {
            (Some(next), Some(hint)) => LogReader::open_at(&self.dir, self.partition, next, hint)?,
            (Some(next), None) => LogReader::open(&self.dir, self.partition, StartAt::Offset(next))?,
            (None, _) => LogReader::open(&self.dir, self.partition, StartAt::Earliest)?,
        };
        self.expected = self.committed;
        self.last_event_id.clone_from(&self.committed_event_id);
        self.pending_records = 0;
        self.pending_bytes = 0;
        Ok(())
    }

    /// Advances the probe to the end of the log.
    fn probe(&mut self) -> Result<(), StorageError> {
        // Behind the sending reader: jump to the committed position when its hint makes
        // that free; otherwise read on (an offset alone would scan its segment).
        if self.probe.position() < self.sent_up_to()
            && let Some(hint) = self.exact_hint()
        {
            self.probe = LogReader::open_at(&self.dir, self.partition, hint.offset, hint)?;
        }
        while let Some(record) = self.probe.next()? {
            self.first_seen.get_or_insert(record.offset);
            self.end = record.offset + 1;
        }
        // The sending reader may have passed the probe between two ticks (the probe is
        // then reopened at the reader's position, past the records it did not see).
        self.end = self.end.max(self.probe.position()).max(self.expected.unwrap_or(0));
        self.probe.take_gaps();
        // Events stored and not read yet (Kafka away since before they came): the age of
        // the oldest is the lag, read once per tick from the log.
        if self.first_unsent_ms.is_none() && self.lag() > 0 {
            if self.unread_since_ms.is_none() {
                let mut oldest = match self.exact_hint() {
                    Some(hint) => LogReader::open_at(&self.dir, self.partition, hint.offset, hint)?,
                    None => LogReader::open(&self.dir, self.partition, StartAt::Offset(self.sent_up_to()))?,
                };
                self.unread_since_ms = oldest.next()?.map(|record| record.ingest_ms);
            }
        } else {
            self.unread_since_ms = None;
        }
        if self.retention_bytes > 0 {
            self.behind_bytes = bytes_from(&self.dir.partition_dir(self.partition), self.sent_up_to());
        }
        Ok(())
    }

    /// Where the record at `committed` starts, when known.
    fn exact_hint(&self) -> Option<SeekHint> {
        self.committed_hint.filter(|hint| Some(hint.offset) == self.committed)
    }

    /// Ingest time of the oldest event not in Kafka yet, if any.
    fn oldest_unsent_ms(&self) -> Option<i64> {
        self.first_unsent_ms.or(self.unread_since_ms)
    }

    /// Seconds since the oldest event not in Kafka yet was stored.
    fn lag_seconds(&self, now_ms: i64) -> f64 {
        self.oldest_unsent_ms().map_or(0.0, |oldest| (now_ms - oldest).max(0) as f64 / 1000.0)
    }

    /// The share of its retention the oldest unsent event has used (time or bytes).
    fn retention_used(&self, now_ms: i64) -> f64 {
        let mut used: f64 = 0.0;
        if self.retention_ms > 0
            && let Some(oldest) = self.oldest_unsent_ms()
        {
            used = used.max((now_ms - oldest).max(0) as f64 / self.retention_ms as f64);
        }
        if self.retention_bytes > 0 && self.lag() > 0 {
            used = used.max(self.behind_bytes as f64 / self.retention_bytes as f64);
        }
        used
    }
}

/// Bytes of the segment files of a partition from the one holding `offset` on.
fn bytes_from(dir: &std::path::Path, offset: u64) -> u64 {
    let Ok(sizes) = crate::log::segment_sizes(dir) else { return 0 };
    let start = sizes.iter().rposition(|&(base_offset, _)| base_offset <= offset).unwrap_or(0);
    sizes[start..].iter().map(|&(_, size)| size).sum()
}

/// A bounded exponential delay with ±20 % jitter (so that bridges of many boxes do not
/// retry in step against a recovering cluster).
struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
    seed: u64,
}

impl Backoff {
    fn new(initial_ms: u64, max_ms: u64) -> Backoff {
        let initial = Duration::from_millis(initial_ms);
        Backoff { initial, max: Duration::from_millis(max_ms), current: initial, seed: now_unix_ms() as u64 | 1 }
    }

    fn reset(&mut self) {
        self.current = self.initial;
    }

    fn next(&mut self) -> Duration {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let jitter = 0.8 + (self.seed % 1000) as f64 / 2500.0;
        let delay = self.current.mul_f64(jitter).min(self.max);
        self.current = (self.current * 2).min(self.max);
        delay
    }
}

/// Counters of the whole run (metrics).
#[derive(Default)]
struct Totals {
    transactions: u64,
    aborts: u64,
    commit_retries: u64,
    producer_starts: u64,
    lost: u64,
}

struct Forwarder<'o> {
    config: KafkaBridgeConfig,
    lanes: Vec<Lane>,
    page: Page,
    stop: Arc<AtomicBool>,
    options: &'o BridgeOptions,
    totals: Totals,
    last_error: Option<String>,
    last_error_ms: i64,
    backoff: Backoff,
    connected: bool,
    next_lane: usize,
    /// When the open transaction (or at-least-once batch) began.
    batch_began: Option<Instant>,
    /// Failed deliveries counted when the open batch began (at least once).
    failed_before: u64,
    last_tick: Instant,
    last_status: Instant,
}

/// How a transaction attempt ended.
enum Attempt {
    /// Nothing to send.
    Idle,
    Committed,
    /// Failed and cleaned up (aborted, lanes rewound); `Fatal` means the producer must go.
    Failed(Failure, String),
}

impl<'o> Forwarder<'o> {
    fn new(config: KafkaBridgeConfig, lanes: Vec<Lane>, page: Page, stop: Arc<AtomicBool>, options: &'o BridgeOptions) -> Forwarder<'o> {
        let backoff = Backoff::new(config.backoff_initial_ms, config.backoff_max_ms);
        Forwarder {
            config,
            lanes,
            page,
            stop,
            options,
            totals: Totals::default(),
            last_error: None,
            last_error_ms: 0,
            backoff,
            connected: false,
            next_lane: 0,
            batch_began: None,
            failed_before: 0,
            last_tick: Instant::now(),
            last_status: Instant::now(),
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn run(&mut self, notifier: &Notifier) -> Result<Outcome, BridgeError> {
        let mut producer: Option<BridgeProducer> = None;
        loop {
            if self.stopping() {
                tracing::info!("bridge stopping on a signal");
                return Ok(Outcome::Stopped);
            }
            self.tick(notifier, false)?;
            let Some(active) = producer.as_ref() else {
                match self.connect(notifier) {
                    Ok(started) => {
                        producer = Some(started);
                        self.backoff.reset();
                    }
                    Err(Connect::Stop(error)) => return Err(error),
                    Err(Connect::Retry(message)) => {
                        self.note_error(format!("connecting: {message}"));
                        let delay = self.backoff.next();
                        self.pause(delay, notifier)?;
                    }
                }
                continue;
            };
            if self.options.once && self.lanes.iter().all(|lane| lane.target.is_none_or(|target| lane.sent_up_to() >= target)) {
                tracing::info!("--once: everything up to the ends found at start is in Kafka");
                return Ok(Outcome::CaughtUp);
            }
            match self.transaction(active, notifier)? {
                Attempt::Idle => std::thread::sleep(IDLE_PAUSE),
                Attempt::Committed => self.backoff.reset(),
                Attempt::Failed(failure, message) => {
                    self.totals.aborts += 1;
                    self.note_error(message);
                    // A transaction that outlived transaction_timeout_ms was aborted by
                    // its coordinator, which librdkafka reports as fenced: a new
                    // producer, not a stop.
                    let timed_out =
                        self.batch_began.is_some_and(|began| began.elapsed() >= Duration::from_millis(self.config.transaction_timeout_ms));
                    let failure = if failure == Failure::Fenced && timed_out { Failure::Fatal } else { failure };
                    match failure {
                        Failure::Fenced => return Err(BridgeError::Fenced(self.config.transactional_id.clone())),
                        Failure::Fatal => {
                            tracing::warn!("recreating the Kafka producer after a fatal error");
                            producer = None;
                            self.connected = false;
                        }
                        Failure::Retry | Failure::Abort => {}
                    }
                    let delay = self.backoff.next();
                    self.pause(delay, notifier)?;
                }
            }
        }
    }

    fn note_error(&mut self, message: String) {
        tracing::warn!(error = %message, "bridge: Kafka refused or unreachable; backing off");
        self.last_error = Some(message);
        self.last_error_ms = now_unix_ms();
    }

    /// Sleeps `delay` in slices, ticking, and returns early on a signal.
    fn pause(&mut self, delay: Duration, notifier: &Notifier) -> Result<(), BridgeError> {
        let until = Instant::now() + delay;
        while !self.stopping() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
            self.tick(notifier, false)?;
        }
        Ok(())
    }

    /// A producer ready to send, and every lane at the progress Kafka holds:
    /// `init_transactions` first (fencing an older bridge), then the progress topic.
    fn connect(&mut self, notifier: &Notifier) -> Result<BridgeProducer, Connect> {
        let producer =
            kafka::producer(&self.config).map_err(|error| Connect::Stop(BridgeError::Usage(format!("Kafka producer: {error}"))))?;
        self.totals.producer_starts += 1;
        if self.config.mode == BridgeMode::ExactlyOnce {
            producer.init_transactions(CALL_TIMEOUT).map_err(|error| Connect::Retry(format!("init_transactions: {error}")))?;
        }
        // Each call below is bounded (10 s); the watchdog is fed between them.
        notifier.watchdog();
        self.ensure_topics(notifier)?;
        notifier.watchdog();
        let progress = kafka::read_progress(&self.config, CALL_TIMEOUT, notifier).map_err(Connect::Retry)?;
        notifier.watchdog();
        for lane in &mut self.lanes {
            let found = progress.get(&(lane.topic.clone(), lane.partition));
            restore(lane, found).map_err(Connect::Stop)?;
            if self.options.once && lane.target.is_none() {
                lane.probe().map_err(|error| Connect::Stop(error.into()))?;
                lane.target = Some(lane.end);
            }
        }
        self.connected = true;
        tracing::info!(partitions_with_progress = progress.len(), "connected to Kafka; resuming after the committed progress");
        Ok(producer)
    }

    /// The progress topic (compacted) and, with `create_topics`, the data topics exist;
    /// a data topic that is missing otherwise stops the bridge with what to do.
    fn ensure_topics(&self, notifier: &Notifier) -> Result<(), Connect> {
        let mut names: Vec<String> = self.config.topics.iter().map(|topic| self.config.kafka_topic(topic)).collect();
        names.push(self.config.progress_topic.clone());
        let counts = kafka::partition_counts(&self.config, &names, CALL_TIMEOUT).map_err(Connect::Retry)?;
        let mut create = Vec::new();
        for (index, (name, count)) in names.iter().zip(&counts).enumerate() {
            let is_progress = index == names.len() - 1;
            let wanted = if is_progress {
                1
            } else {
                let sluice = &self.config.topics[index];
                self.lanes.iter().filter(|lane| &lane.topic == sluice).count()
            };
            match count {
                Some(count) if !is_progress && *count != wanted => tracing::warn!(
                    kafka_topic = %name,
                    kafka_partitions = count,
                    sluice_partitions = wanted,
                    "partition counts differ: a user's events keep their order but land on another partition number than in sluice"
                ),
                Some(_) => {}
                None if is_progress || self.config.create_topics => {
                    let mut settings: Vec<(String, String)> =
                        self.config.topic_config.iter().map(|(key, value)| (key.clone(), value.clone())).collect();
                    if is_progress {
                        settings.retain(|(key, _)| key == "min.insync.replicas");
                        settings.push(("cleanup.policy".to_owned(), "compact".to_owned()));
                    }
                    create.push(kafka::TopicSpec { name: name.clone(), partitions: wanted, settings });
                }
                None => {
                    return Err(Connect::Stop(BridgeError::Usage(format!(
                        "Kafka topic {name} does not exist: create it with {wanted} partitions, or set bridge.kafka.create_topics = true"
                    ))));
                }
            }
        }
        notifier.watchdog();
        if !create.is_empty() {
            kafka::create_topics(&self.config, &create, CALL_TIMEOUT).map_err(Connect::Retry)?;
            tracing::info!(topics = ?create.iter().map(|spec| &spec.name).collect::<Vec<_>>(), "created Kafka topics");
        }
        Ok(())
    }

    /// One transaction: read, send, commit (or abort and rewind).
    fn transaction(&mut self, producer: &BridgeProducer, notifier: &Notifier) -> Result<Attempt, BridgeError> {
        let exactly_once = self.config.mode == BridgeMode::ExactlyOnce;
        let (mut count, mut began) = (0usize, None::<Instant>);
        let window = Duration::from_millis(self.config.transaction_ms);
        loop {
            let mut read_any = false;
            let lanes = self.lanes.len();
            for turn in 0..lanes {
                let lane = &mut self.lanes[(self.next_lane + turn) % lanes];
                let mut taken = 0;
                while taken < LANE_TURN_RECORDS && count < self.config.transaction_records_max {
                    let Some(stored) = lane.reader.next()? else { break };
                    let (offset, ingest_ms) = (stored.offset, stored.ingest_ms);
                    if let Some(expected) = lane.expected
                        && offset != expected
                    {
                        if offset > expected {
                            self.totals.lost += pass_gap(lane, expected, offset, self.options.skip_lost)?;
                        }
                        continue;
                    }
                    let Some(key) = record::user_key(stored.event) else {
                        return Err(BridgeError::NoKey { topic: lane.topic.clone(), partition: lane.partition, offset });
                    };
                    if began.is_none() {
                        if exactly_once && let Err(error) = producer.begin_transaction() {
                            let failure = kafka::classify(&error, producer);
                            return Ok(self.fail(producer, failure, format!("begin_transaction: {error}"), notifier));
                        }
                        began = Some(Instant::now());
                        self.batch_began = began;
                        self.failed_before = producer.context().failed_deliveries.load(Ordering::Relaxed);
                    }
                    let headers = kafka::headers(&lane.topic, lane.partition, offset, stored.event_id);
                    let outgoing =
                        BaseRecord::to(&lane.kafka_topic).key(key.as_bytes()).payload(stored.event).headers(headers).timestamp(ingest_ms);
                    if let Err(error) = send(producer, outgoing) {
                        let failure = kafka::classify(&error, producer);
                        let message = format!("send to {}: {error}", lane.kafka_topic);
                        return Ok(self.fail(producer, failure, message, notifier));
                    }
                    // The same buffer each time: no allocation per record.
                    lane.last_event_id.clear();
                    match std::str::from_utf8(stored.event_id) {
                        Ok(text) => lane.last_event_id.push_str(text),
                        Err(_) => lane.last_event_id.push_str(&String::from_utf8_lossy(stored.event_id)),
                    }
                    lane.pending_bytes += stored.event.len() as u64;
                    lane.pending_records += 1;
                    lane.expected = Some(offset + 1);
                    lane.first_unsent_ms.get_or_insert(ingest_ms);
                    taken += 1;
                    count += 1;
                }
                read_any |= taken > 0;
            }
            self.next_lane = (self.next_lane + 1) % lanes.max(1);
            producer.poll(Duration::ZERO);
            let Some(started) = began else {
                return Ok(Attempt::Idle);
            };
            if count >= self.config.transaction_records_max || started.elapsed() >= window || self.stopping() {
                break;
            }
            if !read_any {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.tick(notifier, false)?;
        }
        if exactly_once { self.commit_transaction(producer, notifier) } else { self.commit_at_least_once(producer, notifier) }
    }

    /// Exactly once: flush the records, add the progress, commit. A commit that times out
    /// is retried (Kafka answers the same commit once); anything else aborts.
    fn commit_transaction(&mut self, producer: &BridgeProducer, notifier: &Notifier) -> Result<Attempt, BridgeError> {
        // The records first, then the progress: the progress reaches the broker only once
        // every record it covers is there.
        let flush_started = Instant::now();
        while let Err(error) = kafka::flush(producer, CALL_TIMEOUT) {
            match kafka::classify(&error, producer) {
                Failure::Retry if !self.stopping() => {
                    self.totals.commit_retries += 1;
                    self.note_error(format!("flush: {error}"));
                    self.tick(notifier, false)?;
                }
                failure => return Ok(self.fail(producer, failure, format!("flush: {error}"), notifier)),
            }
        }
        self.tick(notifier, false)?;
        if let Err((failure, message)) = self.send_progress(producer) {
            return Ok(self.fail(producer, failure, message, notifier));
        }
        // The crate's commit flushes first, in slices of 100 ms: leave it nothing to wait for.
        if let Err(error) = kafka::flush(producer, CALL_TIMEOUT) {
            let failure = kafka::classify(&error, producer);
            return Ok(self.fail(producer, failure, format!("flush progress: {error}"), notifier));
        }
        // Straight on to the commit: from here to EndTxn the progress is on the broker
        // and the transaction open, the window a crash leaves an open transaction in.
        notifier.watchdog();
        let commit_started = Instant::now();
        let mut tries = 0;
        loop {
            match producer.commit_transaction(CALL_TIMEOUT) {
                Ok(()) => {
                    tracing::debug!(
                        records = self.lanes.iter().map(|lane| lane.pending_records).sum::<u64>(),
                        flush_us = (commit_started - flush_started).as_micros() as u64,
                        commit_us = commit_started.elapsed().as_micros() as u64,
                        "transaction committed"
                    );
                    break;
                }
                Err(error) => match kafka::classify(&error, producer) {
                    // Stopping while Kafka is away: abort (the next start's
                    // `init_transactions` settles it if the abort cannot finish).
                    // A commit that keeps timing out (a coordinator that does not answer)
                    // is given up: abort, and a new producer if the abort cannot finish.
                    Failure::Retry if !self.stopping() && tries < COMMIT_TRIES => {
                        tries += 1;
                        self.totals.commit_retries += 1;
                        self.note_error(format!("commit_transaction: {error}"));
                        // Short: the transaction's own timeout is running.
                        self.pause(Duration::from_secs(1), notifier)?;
                    }
                    failure => return Ok(self.fail(producer, failure, format!("commit_transaction: {error}"), notifier)),
                },
            }
        }
        self.totals.transactions += 1;
        self.committed();
        Ok(Attempt::Committed)
    }

    /// At least once: flush; every record acknowledged moves the lanes on, then the
    /// progress goes out on its own (a crash before it lands re-sends the batch).
    fn commit_at_least_once(&mut self, producer: &BridgeProducer, notifier: &Notifier) -> Result<Attempt, BridgeError> {
        let failed_before = self.failed_before;
        while let Err(error) = kafka::flush(producer, CALL_TIMEOUT) {
            if self.stopping() {
                return Ok(self.fail(producer, Failure::Abort, format!("stopping with records unacknowledged: {error}"), notifier));
            }
            self.totals.commit_retries += 1;
            self.note_error(format!("flush: {error}"));
            self.tick(notifier, false)?;
        }
        if producer.context().failed_deliveries.load(Ordering::Relaxed) != failed_before {
            let message = producer.context().take_last_error().unwrap_or_else(|| "a delivery failed".to_owned());
            return Ok(self.fail(producer, Failure::Abort, message, notifier));
        }
        let progress = self.send_progress(producer);
        self.totals.transactions += 1;
        self.committed();
        if let Err((_, message)) =
            progress.and_then(|()| kafka::flush(producer, CALL_TIMEOUT).map_err(|error| (Failure::Retry, error.to_string())))
        {
            self.note_error(format!("progress not written (sent again with the next batch): {message}"));
        }
        Ok(Attempt::Committed)
    }

    /// One progress record per lane with records in this transaction.
    fn send_progress(&self, producer: &BridgeProducer) -> Result<(), (Failure, String)> {
        let written_ms = now_unix_ms();
        for lane in self.lanes.iter().filter(|lane| lane.pending_records > 0) {
            let Some(next_offset) = lane.expected else { continue };
            let key = record::progress_key(&self.config.transactional_id, &lane.topic, lane.partition);
            let value = record::encode_progress(&Progress { next_offset, last_event_id: lane.last_event_id.clone(), written_ms });
            let outgoing = BaseRecord::to(&self.config.progress_topic).key(key.as_bytes()).payload(&value);
            send(producer, outgoing).map_err(|error| (kafka::classify(&error, producer), format!("send progress: {error}")))?;
        }
        Ok(())
    }

    /// The lanes with records in the finished transaction move on.
    fn committed(&mut self) {
        for lane in self.lanes.iter_mut().filter(|lane| lane.pending_records > 0) {
            lane.committed = lane.expected;
            lane.committed_hint = lane.reader.hint();
            lane.committed_event_id.clone_from(&lane.last_event_id);
            lane.records += lane.pending_records;
            lane.bytes += lane.pending_bytes;
            lane.pending_records = 0;
            lane.pending_bytes = 0;
            lane.first_unsent_ms = None;
            lane.unread_since_ms = None;
        }
    }

    /// Cleans up after a failed attempt: aborts the open transaction (exactly once,
    /// unless the producer is beyond that) and rewinds every lane read since the last
    /// commit.
    fn fail(&mut self, producer: &BridgeProducer, mut failure: Failure, message: String, notifier: &Notifier) -> Attempt {
        if self.config.mode == BridgeMode::ExactlyOnce && matches!(failure, Failure::Retry | Failure::Abort) {
            // librdkafka's abort wants every delivery report served first: drop what is
            // still queued and wait out what is in flight.
            producer.purge(rdkafka::producer::PurgeConfig::default().queue());
            let _ = kafka::flush(producer, CALL_TIMEOUT);
            notifier.watchdog();
            let mut tries = 0;
            while let Err(error) = producer.abort_transaction(CALL_TIMEOUT) {
                match kafka::classify(&error, producer) {
                    // An abort that does not finish (a broker that cannot bump the
                    // producer epoch, say) is settled by a new producer:
                    // `init_transactions` aborts the transaction on the coordinator.
                    Failure::Retry | Failure::Abort if tries < ABORT_TRIES && !self.stopping() => {
                        tries += 1;
                        self.note_error(format!("abort_transaction: {error}"));
                        let delay = self.backoff.next();
                        let _ = self.pause(delay, notifier);
                    }
                    Failure::Fenced => {
                        failure = Failure::Fenced;
                        break;
                    }
                    _ => {
                        // A producer fenced by a newer bridge cannot abort; a new producer
                        // here would fence that bridge in turn.
                        let fenced = kafka::mentions_fencing(&message) || producer.context().fenced.load(Ordering::Relaxed);
                        failure = if fenced { Failure::Fenced } else { Failure::Fatal };
                        break;
                    }
                }
            }
        } else if self.config.mode == BridgeMode::AtLeastOnce {
            let _ = kafka::flush(producer, CALL_TIMEOUT);
        }
        // Every lane: one whose first record of this attempt failed to send has read it
        // without counting it.
        for lane in &mut self.lanes {
            if let Err(error) = lane.rewind() {
                tracing::error!(%error, topic = %lane.topic, partition = lane.partition, "rewind failed; retried at the next attempt");
            }
        }
        Attempt::Failed(failure, message)
    }

    /// Every `TICK`: probe the ends, check retention, render the metrics page, feed the
    /// watchdog and (every 5 s) say where the bridge stands.
    fn tick(&mut self, notifier: &Notifier, force: bool) -> Result<(), BridgeError> {
        if !force && self.last_tick.elapsed() < TICK {
            return Ok(());
        }
        self.last_tick = Instant::now();
        let now_ms = now_unix_ms();
        for lane in &mut self.lanes {
            lane.probe()?;
            let used = lane.retention_used(now_ms);
            let alarm = used >= self.config.retention_alert_ratio;
            if alarm && !lane.alarm {
                tracing::error!(
                    topic = %lane.topic, partition = lane.partition, lag = lane.lag(), retention_used = used,
                    "retention alarm: events the bridge has not sent will be deleted by retention if Kafka stays behind"
                );
            } else if !alarm && lane.alarm {
                tracing::info!(topic = %lane.topic, partition = lane.partition, "retention alarm cleared");
            }
            lane.alarm = alarm;
        }
        self.page.set(self.render(now_ms));
        notifier.watchdog();
        if force || self.last_status.elapsed() >= Duration::from_secs(5) {
            self.last_status = Instant::now();
            let lag: u64 = self.lanes.iter().map(Lane::lag).sum();
            let records: u64 = self.lanes.iter().map(|lane| lane.records).sum();
            let state = if self.connected { "forwarding" } else { "connecting to Kafka" };
            notifier.status(&format!(
                "{state}: {records} events in {} transactions, lag {lag} events, {} aborts",
                self.totals.transactions, self.totals.aborts
            ));
        }
        Ok(())
    }

    fn render(&self, now_ms: i64) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(4096 + self.lanes.len() * 600);
        let mut by_topic: HashMap<&str, (u64, u64)> = HashMap::new();
        for lane in &self.lanes {
            let entry = by_topic.entry(&lane.topic).or_default();
            entry.0 += lane.records;
            entry.1 += lane.bytes;
        }
        let mut topics: Vec<_> = by_topic.into_iter().collect();
        topics.sort();
        let _ = writeln!(out, "# HELP sluice_bridge_records_total Events committed to Kafka, by sluice topic.");
        let _ = writeln!(out, "# TYPE sluice_bridge_records_total counter");
        for (topic, (records, _)) in &topics {
            let _ = writeln!(out, "sluice_bridge_records_total{{topic=\"{topic}\"}} {records}");
        }
        let _ = writeln!(out, "# HELP sluice_bridge_bytes_total Event bytes committed to Kafka, by sluice topic.");
        let _ = writeln!(out, "# TYPE sluice_bridge_bytes_total counter");
        for (topic, (_, bytes)) in &topics {
            let _ = writeln!(out, "sluice_bridge_bytes_total{{topic=\"{topic}\"}} {bytes}");
        }
        for (name, help, value) in [
            ("sluice_bridge_transactions_total", "Transactions committed (batches acknowledged, at least once).", self.totals.transactions),
            ("sluice_bridge_aborts_total", "Attempts that failed and were aborted or re-sent.", self.totals.aborts),
            ("sluice_bridge_commit_retries_total", "Commits and flushes retried after a timeout.", self.totals.commit_retries),
            (
                "sluice_bridge_producer_starts_total",
                "Producers created (the first, then one per fatal error).",
                self.totals.producer_starts,
            ),
            ("sluice_bridge_lost_records_total", "Offsets passed over with --skip-lost (the log no longer held them).", self.totals.lost),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        }
        let _ = writeln!(out, "# HELP sluice_bridge_connected 1 while the producer is initialised and the progress read.");
        let _ = writeln!(out, "# TYPE sluice_bridge_connected gauge\nsluice_bridge_connected {}", u8::from(self.connected));
        let _ = writeln!(out, "# HELP sluice_bridge_info The bridge's mode and transactional id.");
        let _ = writeln!(
            out,
            "# TYPE sluice_bridge_info gauge\nsluice_bridge_info{{mode=\"{}\",transactional_id=\"{}\"}} 1",
            self.config.mode.as_str(),
            metrics::label(&self.config.transactional_id)
        );
        let _ = writeln!(out, "# HELP sluice_bridge_last_error_timestamp_seconds When the last Kafka error happened (0: none).");
        let _ = writeln!(out, "# TYPE sluice_bridge_last_error_timestamp_seconds gauge");
        let _ = writeln!(out, "sluice_bridge_last_error_timestamp_seconds {:.3}", self.last_error_ms as f64 / 1000.0);
        if let Some(error) = &self.last_error {
            let _ = writeln!(out, "# HELP sluice_bridge_last_error_info The last Kafka error, as text.");
            let _ = writeln!(
                out,
                "# TYPE sluice_bridge_last_error_info gauge\nsluice_bridge_last_error_info{{error=\"{}\"}} 1",
                metrics::label(error)
            );
        }
        self.render_lanes(&mut out, now_ms);
        out
    }

    /// The per-partition gauges.
    fn render_lanes(&self, out: &mut String, now_ms: i64) {
        use std::fmt::Write;
        let gauges: [LaneGauge<'_>; 6] = [
            ("sluice_bridge_lag_events", "Events stored in sluice and not yet committed to Kafka.", &|lane| lane.lag().to_string()),
            ("sluice_bridge_lag_seconds", "Seconds since the oldest event not yet committed to Kafka was stored.", &|lane| {
                format!("{:.3}", lane.lag_seconds(now_ms))
            }),
            ("sluice_bridge_committed_offset", "The next sluice offset not in Kafka yet.", &|lane| lane.sent_up_to().to_string()),
            ("sluice_bridge_end_offset", "One past the last event stored in sluice.", &|lane| lane.end.to_string()),
            ("sluice_bridge_retention_used_ratio", "Share of retention (time or bytes) the oldest unsent event has used.", &|lane| {
                format!("{:.4}", lane.retention_used(now_ms))
            }),
            ("sluice_bridge_retention_alarm", "1 when retention_used_ratio passed bridge.kafka.retention_alert_ratio.", &|lane| {
                u8::from(lane.alarm).to_string()
            }),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for lane in &self.lanes {
                let _ = writeln!(out, "{name}{{topic=\"{}\",partition=\"{}\"}} {}", lane.topic, lane.partition, value(lane));
            }
        }
    }
}

/// A per-partition gauge: name, help, value of a lane.
type LaneGauge<'a> = (&'a str, &'a str, &'a dyn Fn(&Lane) -> String);

/// Hands a record to librdkafka, waiting while its queue is full.
fn send<K, P>(producer: &BridgeProducer, mut record: BaseRecord<'_, K, P>) -> Result<(), KafkaError>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    // The clock is read only once the queue is full (not once per record).
    let mut deadline = None;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                // Full for a whole call's time: Kafka is not taking records; the attempt
                // is given up (and retried after the backoff).
                if *deadline.get_or_insert_with(|| Instant::now() + CALL_TIMEOUT) <= Instant::now() {
                    return Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull));
                }
                record = back;
                producer.poll(Duration::from_millis(1));
            }
            Err((error, _)) => return Err(error),
        }
    }
}

/// The reader gave `offset` where `expected` was due: offsets the log no longer holds.
/// Stops the bridge with their range, or with `skip_lost` logs and counts them, puts the
/// lane at `offset` and returns how many were passed over.
fn pass_gap(lane: &mut Lane, expected: u64, offset: u64, skip_lost: bool) -> Result<u64, BridgeError> {
    let cause = describe_gap(lane.reader.take_gaps().first().map(|gap| &gap.cause));
    if !skip_lost {
        return Err(BridgeError::Lost { topic: lane.topic.clone(), partition: lane.partition, from: expected, to: offset, cause });
    }
    tracing::error!(
        topic = %lane.topic, partition = lane.partition, from = expected, to = offset, %cause,
        "offsets lost before the bridge sent them; going on (--skip-lost)"
    );
    lane.lost += offset - expected;
    // Read the record at `offset` again, now as the expected one.
    lane.expected = Some(offset);
    lane.reader = LogReader::open(&lane.dir, lane.partition, StartAt::Offset(offset))?;
    Ok(offset - expected)
}

enum Connect {
    /// Kafka is away or refused: try again after a pause.
    Retry(String),
    /// Nothing a retry can fix.
    Stop(BridgeError),
}

/// Puts `lane` at the progress Kafka holds (or keeps what this process committed, if
/// that is further), after checking that the log still holds the event the progress
/// says was sent last.
fn restore(lane: &mut Lane, found: Option<&Progress>) -> Result<(), BridgeError> {
    if let Some(progress) = found
        && lane.committed.is_none_or(|committed| committed < progress.next_offset)
    {
        check_not_rewritten(lane, progress)?;
        lane.committed = Some(progress.next_offset);
        lane.committed_hint = None;
        lane.committed_event_id.clone_from(&progress.last_event_id);
    }
    lane.first_unsent_ms = None;
    lane.rewind()?;
    Ok(())
}

fn check_not_rewritten(lane: &mut Lane, progress: &Progress) -> Result<(), BridgeError> {
    let Some(last) = progress.next_offset.checked_sub(1) else { return Ok(()) };
    let mut reader = LogReader::open(&lane.dir, lane.partition, StartAt::Offset(last))?;
    let rewritten = |detail: String| BridgeError::Rewritten { topic: lane.topic.clone(), partition: lane.partition, detail };
    match reader.next()? {
        Some(record) if record.offset == last => {
            let found = String::from_utf8_lossy(record.event_id);
            if !progress.last_event_id.is_empty() && found != progress.last_event_id.as_str() {
                return Err(rewritten(format!(
                    "offset {last} was sent as event {:?} and now holds event {found:?}",
                    progress.last_event_id
                )));
            }
        }
        // Retention took it: nothing left to compare.
        Some(_) => {}
        None => {
            return Err(rewritten(format!("Kafka holds events up to offset {last}, the log ends before it")));
        }
    }
    Ok(())
}

fn describe_gap(cause: Option<&GapCause>) -> String {
    match cause {
        Some(GapCause::Retention) | None => "were deleted by retention".to_owned(),
        Some(GapCause::Damaged { path, position, reason }) => {
            format!("are damaged at byte {position} of {} ({reason})", path.display())
        }
        Some(GapCause::Missing { path }) => format!("are missing after the end of {}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_bound_with_jitter() {
        let mut backoff = Backoff::new(100, 1000);
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next()).collect();
        assert!(delays[0] >= Duration::from_millis(80) && delays[0] <= Duration::from_millis(120), "{delays:?}");
        assert!(delays[1] >= Duration::from_millis(160) && delays[1] <= Duration::from_millis(240), "{delays:?}");
        assert!(delays.iter().all(|delay| *delay <= Duration::from_millis(1000)), "{delays:?}");
        assert!(delays[7] >= Duration::from_millis(800), "{delays:?}");
        backoff.reset();
        assert!(backoff.next() <= Duration::from_millis(120));
    }

    fn test_lane(retention_ms: u64, retention_bytes: u64) -> (tempfile::TempDir, Lane) {
        let (temp, dir) = crate::log::test_support::data_dir(1);
        let mut lane = Lane::new("events", "events".to_owned(), 0, &dir).unwrap();
        (lane.retention_ms, lane.retention_bytes) = (retention_ms, retention_bytes);
        (lane.committed, lane.end, lane.first_seen) = (Some(10), 30, Some(0));
        (temp, lane)
    }

    #[test]
    fn retention_use_is_the_larger_of_age_and_bytes_behind() {
        let (_temp, mut lane) = test_lane(3_600_000, 1 << 30);
        assert_eq!(lane.lag(), 20);
        assert_eq!(lane.retention_used(1_000_000), 0.0, "nothing known unsent: no age");
        lane.first_unsent_ms = Some(1_000_000);
        assert!((lane.retention_used(1_000_000 + 1_800_000) - 0.5).abs() < 1e-9);
        assert!((lane.lag_seconds(1_000_000 + 1_800_000) - 1800.0).abs() < 1e-9);
        lane.behind_bytes = 3 << 28;
        assert!((lane.retention_used(1_000_000) - 0.75).abs() < 1e-9, "bytes behind: 3/4 of retention_bytes");
        // Read but not committed, or stored and not read: either is the oldest unsent.
        lane.first_unsent_ms = None;
        lane.unread_since_ms = Some(1_000_000);
        assert!((lane.lag_seconds(1_001_500) - 1.5).abs() < 1e-9);
        let (_temp, unlimited) = test_lane(0, 0);
        assert_eq!(unlimited.retention_used(i64::MAX / 2), 0.0);
    }

    #[test]
    fn gap_causes_read_as_sentences() {
        assert_eq!(describe_gap(Some(&GapCause::Retention)), "were deleted by retention");
        let missing = describe_gap(Some(&GapCause::Missing { path: "/d/0/x.seg".into() }));
        assert_eq!(missing, "are missing after the end of /d/0/x.seg");
    }
}
