//! `sluice bridge kafka` against a real Kafka-protocol broker on loopback (tansu, from
//! the pinned PyPI wheel), read back with real Kafka clients (SPEC §8): every event
//! once, in order per key, with its key, headers and murmur2 partition; kill -9 of the
//! bridge under load; the broker stopped for 30 s; a second bridge fenced; offsets lost
//! to retention stop the bridge with their range. See tests/support/src/kafka.rs for why
//! read-back applies the transaction markers itself.

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sluice::log::partitioner::{murmur2, partition_for};
use sluice_test_support::kafka::{Bridge, Broker, KafkaRecord, bridge_section, free_port, librdkafka_read_committed, read_committed};
use sluice_test_support::*;

const TOPICS: &str = "\n[[topics]]\nname = \"wallet\"\nevent_types = [\"deposit\", \"withdrawal\"]\npartitions = 2\n\n\
                      [[topics]]\nname = \"events\"\nevent_types = [\"*\"]\npartitions = 4\n";
const KAFKA_TOPICS: [&str; 2] = ["sl.wallet", "sl.events"];

/// A node with two topics and a `[bridge.kafka]` section for `broker`.
fn sandbox(broker: &Broker, metrics_port: u16, extra_bridge: &str) -> Sandbox {
    let extra_config = format!("{TOPICS}{}", bridge_section(&broker.bootstrap, metrics_port, extra_bridge));
    Sandbox::new(Setup { partitions: 4, extra_config, ..Setup::default() })
}

/// Posts `count` events (ids `{prefix}-{n}`, 40 users, every fifth a deposit) in
/// batches; every one must be stored.
fn post_events(server: &Server, prefix: &str, range: std::ops::Range<usize>) {
    let mut client = server.client();
    let ids: Vec<usize> = range.collect();
    for chunk in ids.chunks(50) {
        let lines: Vec<String> = chunk
            .iter()
            .map(|n| {
                let kind = if n % 5 == 0 { "deposit" } else { "bet" };
                typed_event(&format!("{prefix}-{n}"), &format!("user-{}", n % 40), kind)
            })
            .collect();
        let response = client.request(&signed_batch(&lines));
        assert_eq!(response.status, 200, "{}", response.describe());
    }
}

/// Waits until the bridge says every stored event is in Kafka (`total` of them).
fn wait_drained(bridge: &Bridge, total: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let lag = bridge.metric("sluice_bridge_lag_events", "");
        let end = bridge.metric("sluice_bridge_end_offset", "");
        if lag == Some(0.0) && end == Some(total as f64) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "bridge not drained within {within:?}: lag {lag:?}, end {end:?}, {total} stored\n{}",
            bridge.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Checks `records` against what sluice stored: each stored event exactly once, with
/// the stored bytes, `key.user_id` as key, the headers, Kafka's murmur2 partition, and
/// per key in sluice's order.
fn assert_exactly_once(sandbox: &Sandbox, records: &[KafkaRecord]) {
    let stored = sandbox.tail();
    let mut by_origin: HashMap<(String, u32, u64), &KafkaRecord> = HashMap::new();
    for record in records {
        if let Some(earlier) = by_origin.insert(record.origin(), record) {
            panic!(
                "sent twice: {:?} at {}:{}@{} and {}@{}",
                record.origin(),
                record.topic,
                record.partition,
                record.offset,
                earlier.partition,
                earlier.offset
            );
        }
    }
    assert_eq!(records.len(), stored.len(), "Kafka holds {} records, sluice stored {} events", records.len(), stored.len());
    let mut last_per_key: HashMap<String, (u32, u64, u64)> = HashMap::new();
    let mut ordered: Vec<&KafkaRecord> = records.iter().collect();
    ordered.sort_by_key(|record| (record.topic.clone(), record.partition, record.offset));
    for line in &stored {
        let record = by_origin
            .get(&(line.topic.clone(), line.partition, line.offset))
            .unwrap_or_else(|| panic!("stored event {}:{}@{} never reached Kafka", line.topic, line.partition, line.offset));
        assert_eq!(record.topic, format!("sl.{}", line.topic));
        assert_eq!(record.value, line.event.as_bytes(), "value is the stored bytes");
        let user = line.event_json.get("key").and_then(|key| key.get("user_id")).and_then(Json::as_str).expect("user_id").to_owned();
        assert_eq!(record.key.as_deref(), Some(user.as_str()));
        let partitions = if line.topic == "wallet" { 2 } else { 4 };
        assert_eq!(record.partition, partition_for(murmur2(user.as_bytes()), partitions), "Kafka's murmur2 partition");
        assert_eq!(record.partition, line.partition, "equal partition counts: the same partition number");
        let event_id = line.event_json.get("event_id").and_then(Json::as_str).expect("event_id");
        assert_eq!(record.header("event-id"), event_id);
    }
    for record in ordered {
        let (_, partition, offset) = record.origin();
        let key = format!("{}/{}", record.topic, record.key.clone().unwrap_or_default());
        if let Some((kafka_partition, kafka_offset, sluice_offset)) =
            last_per_key.insert(key.clone(), (record.partition, record.offset, offset))
        {
            assert_eq!(kafka_partition, record.partition, "{key}: one partition per key");
            assert!(
                kafka_offset < record.offset && sluice_offset < offset,
                "{key}: out of order at sluice offset {offset} (partition {partition})"
            );
        }
    }
}

#[test]
fn forwards_every_event_once_with_key_headers_and_partition_and_resumes() {
    let broker = Broker::start();
    let metrics_port = free_port();
    let sandbox = sandbox(&broker, metrics_port, "");
    let server = sandbox.start();
    let prefix = unique_prefix();
    post_events(&server, &prefix, 0..600);

    let mut bridge = Bridge::start(&sandbox.config, metrics_port, &["--once"]);
    let status = bridge.wait_exit(Duration::from_secs(60)).expect("--once exits");
    assert!(status.success(), "{status:?}\n{}", bridge.stderr_text());
    let records = read_committed(&broker.bootstrap, &KAFKA_TOPICS);
    assert_exactly_once(&sandbox, &records);
    // No transaction was aborted: librdkafka's own read_committed consumer agrees.
    let through_librdkafka = librdkafka_read_committed(&broker.bootstrap, &KAFKA_TOPICS);
    assert_eq!(through_librdkafka.len(), records.len());
    // Record timestamps are the ingest times.
    assert!(records.iter().all(|record| record.timestamp > 1_700_000_000_000), "ingest time as the record timestamp");

    // More events; a new run resumes after the committed progress: nothing twice.
    post_events(&server, &prefix, 600..900);
    let mut again = Bridge::start(&sandbox.config, metrics_port, &["--once"]);
    let status = again.wait_exit(Duration::from_secs(60)).expect("--once exits");
    assert!(status.success(), "{status:?}\n{}", again.stderr_text());
    assert_exactly_once(&sandbox, &read_committed(&broker.bootstrap, &KAFKA_TOPICS));
    let progress = read_committed(&broker.bootstrap, &["sluice-bridge-progress"]);
    let keys: std::collections::BTreeSet<&str> = progress.iter().filter_map(|record| record.key.as_deref()).collect();
    assert_eq!(keys.len(), 6, "one progress key per sluice partition: {keys:?}");
    assert!(keys.contains("sluice-bridge/wallet/1") && keys.contains("sluice-bridge/events/3"), "{keys:?}");
}

#[test]
fn at_least_once_mode_forwards_without_transactions_and_resumes_after_its_progress() {
    let broker = Broker::start();
    let metrics_port = free_port();
    let sandbox = sandbox(&broker, metrics_port, "mode = \"at-least-once\"");
    let server = sandbox.start();
    let prefix = unique_prefix();
    post_events(&server, &prefix, 0..400);
    let mut bridge = Bridge::start(&sandbox.config, metrics_port, &["--once"]);
    assert!(bridge.wait_exit(Duration::from_secs(60)).expect("--once exits").success(), "{}", bridge.stderr_text());
    // No transactions: librdkafka's consumer reads what was written as it is.
    assert_exactly_once(&sandbox, &librdkafka_read_committed(&broker.bootstrap, &KAFKA_TOPICS));
    post_events(&server, &prefix, 400..500);
    let mut again = Bridge::start(&sandbox.config, metrics_port, &["--once"]);
    assert!(again.wait_exit(Duration::from_secs(60)).expect("--once exits").success(), "{}", again.stderr_text());
    // Without a failure in between, the progress written after each acknowledged batch
    // lets the second run start where the first stopped: nothing twice here.
    assert_exactly_once(&sandbox, &librdkafka_read_committed(&broker.bootstrap, &KAFKA_TOPICS));
    assert!(again.stderr_text().contains("partitions_with_progress=6"), "{}", again.stderr_text());
}

/// Posts batches until `stop`, counting the events stored (from `stored`'s start value).
fn load(server_addr: std::net::SocketAddr, prefix: String, stop: Arc<AtomicBool>, stored: Arc<AtomicUsize>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut client = Client::connect(server_addr);
        // Ids go on from what `stored` says is stored already.
        let mut n = stored.load(Ordering::Relaxed);
        while !stop.load(Ordering::Relaxed) {
            let lines: Vec<String> =
                (n..n + 20).map(|i| typed_event(&format!("{prefix}-{i}"), &format!("user-{}", i % 40), "bet")).collect();
            let response = client.request(&signed_batch(&lines));
            assert_eq!(response.status, 200, "{}", response.describe());
            n += 20;
            stored.store(n, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}

#[test]
fn kill9_three_times_under_load_then_exactly_once() {
    let broker = Broker::start();
    let metrics_port = free_port();
    // Transactions of 500 ms: a kill -9 then lands in the ~1 ms between the progress
    // reaching tansu and the commit rarely. There, a complete Kafka aborts the open
    // transaction at the next start (markers, read_committed); tansu writes no marker and
    // serves that progress as committed, so the next bridge would resume after records
    // the marker-applying reader counts as aborted (docs/KAFKA.md § The broker in the tests).
    let sandbox = sandbox(&broker, metrics_port, "transaction_ms = 500");
    let server = sandbox.start();
    let (stop, stored) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let loader = load(server.ingest, unique_prefix(), Arc::clone(&stop), Arc::clone(&stored));

    let mut bridge = Bridge::start(&sandbox.config, metrics_port, &[]);
    for round in 0..3 {
        // Let it forward (and be in the middle of transactions) before the crash.
        assert!(bridge.wait_for_stderr("connected to Kafka", Duration::from_secs(30)), "{}", bridge.stderr_text());
        let committed_before = bridge.metric("sluice_bridge_transactions_total", "").unwrap_or(0.0);
        let deadline = Instant::now() + Duration::from_secs(20);
        while bridge.metric("sluice_bridge_transactions_total", "").unwrap_or(0.0) < committed_before + 2.0 + round as f64 {
            assert!(Instant::now() < deadline, "no transactions committed\n{}", bridge.stderr_text());
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(137 * (round + 1)));
        bridge.kill9();
        bridge = Bridge::start(&sandbox.config, metrics_port, &[]);
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    loader.join().expect("loader");
    let total = stored.load(Ordering::Relaxed);
    assert!(total >= 200, "the load stored only {total} events");
    wait_drained(&bridge, total, Duration::from_secs(60));
    let records = read_committed(&broker.bootstrap, &KAFKA_TOPICS);
    assert_exactly_once(&sandbox, &records);
}

#[test]
fn broker_stopped_30s_sluice_keeps_accepting_and_lag_drains() {
    let broker = Broker::start();
    let metrics_port = free_port();
    let sandbox = sandbox(&broker, metrics_port, "");
    let server = sandbox.start();
    let prefix = unique_prefix();
    post_events(&server, &prefix, 0..200);
    let bridge = Bridge::start(&sandbox.config, metrics_port, &[]);
    wait_drained(&bridge, 200, Duration::from_secs(30));

    broker.pause();
    let paused = Instant::now();
    let mut posted = 200;
    while paused.elapsed() < Duration::from_secs(30) {
        post_events(&server, &prefix, posted..posted + 100);
        posted += 100;
        std::thread::sleep(Duration::from_millis(500));
    }
    let lag = bridge.metric("sluice_bridge_lag_events", "").expect("metrics while Kafka is away");
    assert!(lag > 0.0, "lag grows while Kafka is away");
    assert!(bridge.metric("sluice_bridge_lag_seconds", "").unwrap_or(0.0) > 5.0, "lag in seconds grows");
    assert!(bridge.metric("sluice_bridge_last_error_timestamp_seconds", "").unwrap_or(0.0) > 0.0, "the failure is reported");
    broker.resume();
    wait_drained(&bridge, posted, Duration::from_secs(90));
    // The transaction open when the broker stopped was aborted, its records sent again.
    assert!(bridge.metric("sluice_bridge_aborts_total", "").unwrap_or(0.0) >= 1.0, "the abort path ran");
    assert_exactly_once(&sandbox, &read_committed(&broker.bootstrap, &KAFKA_TOPICS));
    assert_eq!(bridge.metric("sluice_bridge_lag_seconds", ""), Some(0.0));
}

#[test]
fn a_second_bridge_on_the_same_data_fences_the_first() {
    let broker = Broker::start();
    let first_port = free_port();
    let sandbox = sandbox(&broker, first_port, "");
    let server = sandbox.start();
    let prefix = unique_prefix();
    post_events(&server, &prefix, 0..500);
    let mut first = Bridge::start(&sandbox.config, first_port, &[]);
    assert!(first.wait_for_stderr("connected to Kafka", Duration::from_secs(30)), "{}", first.stderr_text());
    wait_drained(&first, 500, Duration::from_secs(30));

    // The same configuration but its metrics on another port.
    let second_port = free_port();
    let text = std::fs::read_to_string(&sandbox.config).expect("config");
    let second_config = sandbox.path().join("second.toml");
    std::fs::write(&second_config, text.replace(&format!(":{first_port}\""), &format!(":{second_port}\""))).expect("write");
    let mut second = Bridge::start(&second_config, second_port, &[]);
    assert!(second.wait_for_stderr("connected to Kafka", Duration::from_secs(30)), "{}", second.stderr_text());
    // The first bridge was idle when it was fenced: its next transaction, under load, is
    // refused. (Fencing in the middle of a commit is not tested: tansu neither answers the
    // fenced producer's EndTxn nor writes the abort marker that Kafka's coordinator
    // writes, so what it then serves to read_committed readers is not Kafka's answer;
    // docs/KAFKA.md § The broker in the tests.)
    let (stop, stored) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(500)));
    let loader = load(server.ingest, prefix, Arc::clone(&stop), Arc::clone(&stored));

    // The second's init_transactions fences the first, which stops with exit 3 at its
    // next transactional call. (tansu may leave the fenced bridge's commit unanswered
    // instead of refusing it; that bridge then gives the transaction up and, with a new
    // producer, fences the second one, which stops instead. Either way exactly one
    // bridge is left, and it never restarts into a fencing duel.)
    let deadline = Instant::now() + Duration::from_secs(90);
    let (stopped, survivor) = loop {
        if let Some(status) = first.wait_exit(Duration::from_millis(100)) {
            break ((status, first.stderr_text()), second);
        }
        if let Some(status) = second.wait_exit(Duration::from_millis(100)) {
            break ((status, second.stderr_text()), first);
        }
        assert!(Instant::now() < deadline, "no bridge was fenced\n{}\n{}", first.stderr_text(), second.stderr_text());
    };
    assert_eq!(stopped.0.code(), Some(3), "exit 3 when fenced\n{}", stopped.1);
    assert!(stopped.1.contains("fenced: another bridge with transactional.id"), "{}", stopped.1);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    loader.join().expect("loader");
    wait_drained(&survivor, stored.load(Ordering::Relaxed), Duration::from_secs(90));
    assert_exactly_once(&sandbox, &read_committed(&broker.bootstrap, &KAFKA_TOPICS));
}

/// An event of about 2 KB (so that a few thousand fill the smallest segments).
fn big_event(id: &str) -> String {
    event(id, "user-1").replace("\"marker\"", &format!("\"pad\":\"{}\",\"marker\"", "x".repeat(2000)))
}

#[test]
fn offsets_lost_to_retention_stop_the_bridge_with_their_range() {
    let broker = Broker::start();
    let metrics_port = free_port();
    // One partition, 1 MiB segments, 2 MiB retention.
    let extra_config = format!(
        "\n[[topics]]\nname = \"events\"\nevent_types = [\"*\"]\npartitions = 1\nretention_bytes = 2097152\n{}",
        bridge_section(&broker.bootstrap, metrics_port, "topics = [\"events\"]")
    );
    let sandbox = Sandbox::new(Setup { partitions: 1, segment_bytes: 1 << 20, extra_config, ..Setup::default() });
    let server = sandbox.start();
    let prefix = unique_prefix();
    let post = |range: std::ops::Range<usize>| {
        let mut client = server.client();
        for n in range {
            let response = client.request(&signed_event(big_event(&format!("{prefix}-{n}")).as_bytes()));
            assert!(matches!(response.status, 200 | 202), "{}", response.describe());
        }
    };
    post(0..100);
    let mut bridge = Bridge::start(&sandbox.config, metrics_port, &["--once"]);
    assert!(bridge.wait_exit(Duration::from_secs(60)).expect("exits").success(), "{}", bridge.stderr_text());

    // The bridge is away while retention deletes segments it has not sent.
    post(100..2500);
    let deadline = Instant::now() + Duration::from_secs(30);
    while sandbox.tail().first().map_or(0, |line| line.offset) <= 100 {
        assert!(Instant::now() < deadline, "retention deleted nothing");
        post(2500..2510);
        std::thread::sleep(Duration::from_millis(200));
    }
    let earliest = sandbox.tail().first().expect("events").offset;
    let mut bridge = Bridge::start(&sandbox.config, metrics_port, &["--once"]);
    let status = bridge.wait_exit(Duration::from_secs(60)).expect("the bridge stops");
    assert_eq!(status.code(), Some(1), "{}", bridge.stderr_text());
    let expected = format!("topic events partition 0: offsets 100..{earliest} ({} events) were deleted by retention", earliest - 100);
    assert!(bridge.stderr_text().contains(&expected), "wanted {expected:?} in:\n{}", bridge.stderr_text());

    // With --skip-lost it counts the range and forwards the rest, once.
    let mut bridge = Bridge::start(&sandbox.config, metrics_port, &["--once", "--skip-lost"]);
    assert!(bridge.wait_exit(Duration::from_secs(60)).expect("exits").success(), "{}", bridge.stderr_text());
    assert!(bridge.stderr_text().contains("going on (--skip-lost)"), "{}", bridge.stderr_text());
    let records = read_committed(&broker.bootstrap, &["sl.events"]);
    let offsets: Vec<u64> = records.iter().map(|record| record.origin().2).collect();
    let stored: Vec<u64> = sandbox.tail().iter().map(|line| line.offset).collect();
    let mut wanted: Vec<u64> = (0..100).collect();
    wanted.extend(stored.iter().copied().filter(|&offset| offset >= earliest));
    let mut sorted = offsets.clone();
    sorted.sort_unstable();
    assert_eq!(sorted.len(), offsets.len());
    let counts: BTreeMap<u64, usize> = offsets.iter().fold(BTreeMap::new(), |mut counts, offset| {
        *counts.entry(*offset).or_default() += 1;
        counts
    });
    assert!(counts.values().all(|&count| count == 1), "an offset sent twice");
    // Retention may have gone on deleting between the two runs: what was still stored
    // at the second run start is a suffix of `wanted`.
    assert!(sorted.starts_with(&wanted[..100]), "the first 100 once");
    assert!(sorted.iter().skip(100).all(|offset| *offset >= earliest), "nothing from the lost range");
}

#[test]
fn refuses_a_configuration_without_a_bridge_section_or_kafka_topic() {
    let sandbox = Sandbox::new(Setup::default());
    let output = run_sluice(&["bridge", "kafka", "--config", sandbox.config.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("[bridge.kafka]"), "{}", String::from_utf8_lossy(&output.stderr));

    // A Kafka topic that does not exist, with create_topics off: exit 2, saying what to do.
    let broker = Broker::start();
    let port = free_port();
    let extra = bridge_section(&broker.bootstrap, port, "").replace("create_topics = true", "create_topics = false");
    let sandbox = Sandbox::new(Setup { extra_config: extra, ..Setup::default() });
    let server = sandbox.start();
    post_events(&server, &unique_prefix(), 0..10);
    let output = Command::new(bin()).args(["bridge", "kafka", "--once", "--config"]).arg(&sandbox.config).output().expect("run the bridge");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("Kafka topic sl.events does not exist: create it with"), "{stderr}");
}
