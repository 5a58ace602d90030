//! Topics and consumers over real sockets and a real `sluice serve` (SPEC §5, §6):
//! routing, partition reads and long-polls, subscriptions (rebalance, commit, kill -9,
//! commit timeout, reorder window), SSE with a real client from PyPI, `sluice consume`,
//! the read log, and every refusal a consumer can meet.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sluice_test_support::consumer::{self, Batch, CONSUMER_TOKEN, OTHER_TOKEN, Stream, consumer_ring, get_as, json_as, subscribe};
use sluice_test_support::*;

const TOPICS: &str = "\n[[topics]]\nname = \"wallet\"\nevent_types = [\"deposit\"]\npartitions = 2\n\n\
                      [[topics]]\nname = \"events\"\nevent_types = [\"*\"]\npartitions = 4\n";

fn consumer_setup() -> Setup {
    Setup { extra_keys: consumer_ring(), extra_config: TOPICS.to_owned(), ..Setup::default() }
}

/// An event of `user` with `occurred_at` at `occurred_ms` (Unix ms).
fn event_at(id: &str, user: &str, occurred_ms: i64) -> String {
    let text = rfc3339(occurred_ms);
    event(id, user).replace("2025-10-24T11:37:21Z", &text)
}

fn rfc3339(ms: i64) -> String {
    String::from_utf8(sluice::platform::time::format_rfc3339_ms(ms).to_vec()).expect("ASCII")
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64
}

fn post_all(server: &Server, bodies: &[String]) -> Vec<Json> {
    let mut client = server.client();
    bodies
        .iter()
        .map(|body| {
            let response = client.request(&signed_event(body.as_bytes()));
            assert!(matches!(response.status, 200 | 202), "{}", response.describe());
            response.json()
        })
        .collect()
}

fn event_ids(batches: &[Batch]) -> Vec<String> {
    batches.iter().flat_map(|batch| batch.events.iter()).map(|event| event["event_id"].as_str().expect("event_id").to_owned()).collect()
}

fn stats(server: &Server, name: &str) -> Vec<Json> {
    let response = server.client().request(&get_as(&format!("/v1/subscriptions/{name}/stats"), CONSUMER_TOKEN));
    assert_eq!(response.status, 200, "{}", response.describe());
    response.json()["items"].as_array().expect("items").clone()
}

#[test]
fn topics_route_by_event_type_and_every_answer_and_tail_line_names_its_topic() {
    let sandbox = Sandbox::new(consumer_setup());
    let server = sandbox.start();
    let prefix = unique_prefix();
    let deposit = typed_event(&format!("{prefix}-d"), "u1", "deposit");
    let bet = typed_event(&format!("{prefix}-b"), "u1", "bet");
    let answers = post_all(&server, &[deposit.clone(), bet]);
    assert_eq!(answers[0]["topic"], "wallet", "{}", answers[0]);
    assert_eq!(answers[1]["topic"], "events", "{}", answers[1]);
    assert!(answers[0]["partition"].as_u64().expect("partition") < 2);
    // The same event_id in another topic is another event: dedup is per topic partition.
    let again = server.client().request(&signed_event(deposit.as_bytes()));
    assert_eq!(again.status, 200, "{}", again.describe());
    assert_eq!(again.json()["topic"], "wallet");
    let lines = sandbox.tail();
    let mut topics: Vec<&str> = lines.iter().map(|line| line.topic.as_str()).collect();
    topics.sort_unstable();
    assert_eq!(topics, ["events", "wallet"]);
    let only = tail_with(&sandbox.data_dir, &["--topic", "wallet"]);
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].topic, "wallet");
    assert!(sandbox.data_dir.join("topics/wallet/sluice.meta").exists(), "a topic other than events lives under topics/");
    drop(server);

    // Without a "*" topic an unlisted type is refused, whole or as a batch line.
    let strict = Setup {
        extra_config: "\n[[topics]]\nname = \"wallet\"\nevent_types = [\"deposit\"]\npartitions = 2\n".to_owned(),
        ..consumer_setup()
    };
    let sandbox = Sandbox::new(strict);
    let server = sandbox.start();
    let refused = server.client().request(&signed_event(typed_event(&format!("{prefix}-x"), "u1", "spin").as_bytes()));
    expect_error(&refused, 422, "event_type_not_routed");
    let batch = server
        .client()
        .request(&signed_batch(&[typed_event(&format!("{prefix}-y"), "u1", "spin"), typed_event(&format!("{prefix}-z"), "u1", "deposit")]));
    let json = batch.json();
    assert_eq!(json["rejected"], 1, "{json}");
    assert_eq!(json["results"][0]["error"]["code"], "event_type_not_routed");
    let check = run_sluice(&["check-config", "--config", sandbox.config.to_str().expect("utf-8")]);
    assert!(String::from_utf8_lossy(&check.stderr).contains("no [[topics]] table lists \"*\""), "{check:?}");
}

#[test]
fn check_config_refuses_a_type_in_two_topics_and_two_wildcards() {
    for (topics, key) in [
        ("[[topics]]\nname = \"a\"\nevent_types = [\"bet\"]\n[[topics]]\nname = \"b\"\nevent_types = [\"bet\"]\n", "topics[1].event_types"),
        ("[[topics]]\nname = \"a\"\nevent_types = [\"*\"]\n[[topics]]\nname = \"b\"\nevent_types = [\"*\"]\n", "topics[1].event_types"),
        ("[[topics]]\nname = \"_own\"\nevent_types = [\"*\"]\n", "topics[0].name"),
    ] {
        let sandbox = Sandbox::new(Setup { extra_config: format!("\n{topics}"), ..Setup::default() });
        let output = run_sluice(&["check-config", "--config", sandbox.config.to_str().expect("utf-8")]);
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        assert!(String::from_utf8_lossy(&output.stderr).contains(key), "{}", String::from_utf8_lossy(&output.stderr));
    }
}

#[test]
fn a_data_dir_from_before_topics_opens_as_topic_events_with_nothing_rewritten() {
    let sandbox = Sandbox::new(Setup { extra_keys: consumer_ring(), partitions: 4, ..Setup::default() });
    let prefix = unique_prefix();
    let bodies: Vec<String> = (0..6).map(|i| event(&format!("{prefix}-{i}"), &format!("user-{i}"))).collect();
    let mut first = sandbox.start();
    let placed = post_all(&first, &bodies);
    assert!(first.stop().success());
    let before: Vec<(String, Vec<u8>)> = segment_files(&sandbox.data_dir, 0)
        .into_iter()
        .map(|path| (path.display().to_string(), std::fs::read(&path).expect("segment")))
        .collect();

    // Now with topics: `events` (4 partitions, as the data dir has) and `wallet`.
    let config = std::fs::read_to_string(&sandbox.config).expect("config")
        + "\n[[topics]]\nname = \"events\"\nevent_types = [\"*\"]\npartitions = 4\n\n[[topics]]\nname = \"wallet\"\nevent_types = [\"deposit\"]\npartitions = 2\n";
    std::fs::write(&sandbox.config, config).expect("config");
    let server = sandbox.start();
    for answer in &placed {
        let (partition, offset) = (answer["partition"].as_u64().expect("p"), answer["offset"].as_u64().expect("o"));
        let read = server
            .client()
            .request(&get_as(&format!("/v1/topics/events/partitions/{partition}/events?from={offset}&max=1"), CONSUMER_TOKEN));
        assert_eq!(read.status, 200, "{}", read.describe());
        let lines = consumer::lines(&read);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["topic"], "events");
        assert_eq!(lines[0]["offset"].as_u64(), Some(offset));
    }
    let deposit = post_all(&server, &[typed_event(&format!("{prefix}-dep"), "user-0", "deposit")]);
    assert_eq!(deposit[0]["topic"], "wallet");
    for (path, bytes) in before {
        let now = std::fs::read(&path).expect("segment");
        assert_eq!(&now[..bytes.len().min(now.len())], &bytes[..bytes.len().min(now.len())], "{path} was rewritten");
    }
}

#[test]
fn partition_reads_page_with_next_offset_and_long_polls_wake_on_append() {
    let sandbox = Sandbox::new(consumer_setup());
    let server = sandbox.start();
    let prefix = unique_prefix();
    let bodies: Vec<String> = (0..5).map(|i| event(&format!("{prefix}-{i}"), "reader-user")).collect();
    let placed = post_all(&server, &bodies);
    let partition = placed[0]["partition"].as_u64().expect("partition");
    let path = |query: &str| format!("/v1/topics/events/partitions/{partition}/events?{query}");
    let mut client = server.client();

    let first = client.request(&get_as(&path("from=earliest&max=2"), CONSUMER_TOKEN));
    assert_eq!(first.status, 200, "{}", first.describe());
    assert_eq!(first.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(first.header("x-next-offset"), Some("2"));
    let lines = consumer::lines(&first);
    assert_eq!(lines.iter().map(|line| line["offset"].as_u64().expect("offset")).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(lines[0]["event"]["event_id"].as_str(), Some(format!("{prefix}-0").as_str()));
    let rest = client.request(&get_as(&path("from=2"), CONSUMER_TOKEN));
    assert_eq!(consumer::lines(&rest).len(), 3);
    assert_eq!(rest.header("x-next-offset"), Some("5"));

    // Nothing there yet and no wait: 200 with an empty body at once.
    let empty = client.request(&get_as(&path("from=latest"), CONSUMER_TOKEN));
    assert_eq!((empty.status, empty.body.len(), empty.header("x-next-offset")), (200, 0, Some("5")));

    // A long-poll is woken by the append, well before its wait ends.
    let addr = server.ingest;
    let poller = std::thread::spawn(move || {
        let started = Instant::now();
        let response = Client::connect(addr)
            .request(&get_as(&format!("/v1/topics/events/partitions/{partition}/events?from=5&wait_ms=20000"), CONSUMER_TOKEN));
        (response, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    post_all(&server, &[event(&format!("{prefix}-late"), "reader-user")]);
    let (woken, waited) = poller.join().unwrap_or_else(|_| panic!("the long-poll failed; server log:\n{}", server.stderr_text()));
    assert_eq!(woken.status, 200, "{}", woken.describe());
    assert_eq!(consumer::lines(&woken)[0]["offset"].as_u64(), Some(5));
    assert!(waited < Duration::from_secs(5), "the long-poll waited {waited:?}: not woken by the append");

    // A wait that ends empty: 200, no body, after at least wait_ms.
    let started = Instant::now();
    let timed_out = client.request(&get_as(&path("from=6&wait_ms=400"), CONSUMER_TOKEN));
    assert_eq!((timed_out.status, timed_out.body.len()), (200, 0));
    assert!(started.elapsed() >= Duration::from_millis(400));

    // The same connection goes on serving after the wait (keep-alive). Nothing at an
    // offset beyond the end yet: an empty answer that says where to go on.
    let beyond = client.request(&get_as(&path("from=9"), CONSUMER_TOKEN));
    assert_eq!((beyond.status, beyond.body.len(), beyond.header("x-next-offset")), (200, 0, Some("9")));
}

#[test]
fn consumer_refusals_have_their_status_and_code() {
    let sandbox = Sandbox::new(consumer_setup());
    let server = sandbox.start();
    let request = |bytes: Vec<u8>| server.client().request(&bytes);
    let read = "/v1/topics/events/partitions/0/events";
    expect_error(&request(get(read)), 401, "token_missing");
    expect_error(&request(get_as(read, "sltk_not-a-known-token")), 401, "token_invalid");
    expect_error(&request(get_as(read, OTHER_TOKEN)), 403, "topic_not_allowed");
    expect_error(&request(get_as("/v1/topics/nope/partitions/0/events", CONSUMER_TOKEN)), 404, "topic_not_found");
    expect_error(&request(get_as("/v1/topics/events/partitions/4/events", CONSUMER_TOKEN)), 404, "partition_not_found");
    for query in ["max=0", "max=10001", "wait_ms=30001", "from=x", "frm=1", "max=1&max=2"] {
        expect_error(&request(get_as(&format!("{read}?{query}"), CONSUMER_TOKEN)), 400, "parameter_invalid");
    }
    expect_error(&request(get_as("/v1/subscriptions/none/stats", CONSUMER_TOKEN)), 404, "subscription_not_found");
    expect_error(&request(get_as("/v1/subscriptions/none/events", CONSUMER_TOKEN)), 404, "subscription_not_found");
    // The listing shows only what the caller may read.
    let listing = request(get_as("/v1/topics", OTHER_TOKEN)).json();
    let names: Vec<&str> =
        listing["topics"].as_array().expect("topics").iter().map(|topic| topic["name"].as_str().expect("name")).collect();
    assert_eq!(names, ["wallet"]);
    let all = request(get_as("/v1/topics", CONSUMER_TOKEN)).json();
    assert_eq!(all["topics"][1]["partitions"].as_array().expect("partitions").len(), 4);
    // Subscriptions: a second PUT with another body conflicts; the other partner may
    // not subscribe to a topic it cannot read.
    subscribe(server.ingest, "refusals", &["events"], "earliest");
    let same =
        request(json_as("PUT", "/v1/subscriptions/refusals", CONSUMER_TOKEN, &[], "{\"topics\":[\"events\"],\"read_from\":\"earliest\"}"));
    assert_eq!(same.status, 200, "{}", same.describe());
    let other =
        request(json_as("PUT", "/v1/subscriptions/refusals", CONSUMER_TOKEN, &[], "{\"topics\":[\"wallet\"],\"read_from\":\"earliest\"}"));
    expect_error(&other, 409, "subscription_conflict");
    let forbidden = request(json_as("PUT", "/v1/subscriptions/theirs", OTHER_TOKEN, &[], "{\"topics\":[\"events\"]}"));
    expect_error(&forbidden, 403, "topic_not_allowed");
    let bad_body = request(json_as("PUT", "/v1/subscriptions/bad", CONSUMER_TOKEN, &[], "{\"topic\":[\"events\"]}"));
    expect_error(&bad_body, 400, "body_invalid");
    let unknown = request(json_as("PUT", "/v1/subscriptions/bad", CONSUMER_TOKEN, &[], "{\"topics\":[\"nope\"]}"));
    expect_error(&unknown, 404, "topic_not_found");
    // Cursors: a forged token, a cursor of another subscription, a stream that is not
    // the committer's.
    post_all(&server, &(0..8).map(|i| event(&format!("{}-{i}", unique_prefix()), &format!("u{i}"))).collect::<Vec<_>>());
    subscribe(server.ingest, "second", &["events"], "earliest");
    let mut stream = Stream::open(server.ingest, "refusals", "batch_limit=100");
    let batch = stream.events(1, Duration::from_secs(5)).remove(0);
    let cursor = batch.cursor.clone().expect("cursor");
    let mut forged = cursor.clone();
    forged["offset"] = Json::from(cursor["offset"].as_u64().expect("offset") + 100);
    expect_error(&stream.commit(server.ingest, "refusals", &[&forged]), 400, "cursor_invalid");
    expect_error(&stream.commit(server.ingest, "second", &[&cursor]), 400, "cursor_invalid");
    let not_mine = Client::connect(server.ingest).request(&json_as(
        "POST",
        "/v1/subscriptions/refusals/cursors",
        CONSUMER_TOKEN,
        &[("X-Stream-Id", "12345")],
        &format!("{{\"items\":[{cursor}]}}"),
    ));
    expect_error(&not_mine, 409, "stream_not_owner");
    // Stream id 0 is no stream: it does not "own" the partitions nobody streams.
    let nobody = Client::connect(server.ingest).request(&json_as(
        "POST",
        "/v1/subscriptions/second/cursors",
        CONSUMER_TOKEN,
        &[("X-Stream-Id", "0")],
        &format!("{{\"items\":[{}]}}", Json::from(cursor.clone())),
    ));
    assert_eq!(nobody.status, 400, "a cursor of another subscription: {}", nobody.describe());
    expect_error(&request(get_as("/v1/topics/events/whatever", CONSUMER_TOKEN)), 404, "not_found");
    let stats_now = stats(&server, "refusals");
    assert!(stats_now.iter().all(|row| row["committed"].is_null()), "nothing may be committed by refused cursors: {stats_now:?}");
    assert_eq!(stream.commit(server.ingest, "refusals", &[&cursor]).status, 204);
    expect_error(
        &request(json_as("POST", "/v1/subscriptions/refusals/cursors", CONSUMER_TOKEN, &[], "{\"items\":[]}")),
        400,
        "parameter_invalid",
    );
}

#[test]
fn streams_share_the_partitions_out_and_rebalance_when_one_leaves() {
    let sandbox = Sandbox::new(consumer_setup());
    let server = sandbox.start();
    subscribe(server.ingest, "group", &["events", "wallet"], "earliest");
    let owners = |server: &Server| -> Vec<(String, u64, String)> {
        stats(server, "group")
            .iter()
            .map(|row| {
                let owner = row["stream_id"].as_str().map(str::to_owned).unwrap_or_default();
                (row["topic"].as_str().expect("topic").to_owned(), row["partition"].as_u64().expect("partition"), owner)
            })
            .collect()
    };
    let a = Stream::open(server.ingest, "group", "batch_limit=50");
    let b = Stream::open(server.ingest, "group", "batch_limit=50");
    let two = owners(&server);
    assert_eq!(two.len(), 6);
    assert!(two.iter().all(|(_, _, owner)| *owner == a.id || *owner == b.id), "{two:?}");
    assert_eq!(two.iter().filter(|(_, _, owner)| *owner == a.id).count(), 3, "{two:?}");
    let c = Stream::open(server.ingest, "group", "batch_limit=50");
    let three = owners(&server);
    for stream in [&a, &b, &c] {
        assert_eq!(three.iter().filter(|(_, _, owner)| *owner == stream.id).count(), 2, "{three:?}");
    }
    // Each partition to exactly one stream: the events that come afterwards go to their
    // partition's owner only.
    let prefix = unique_prefix();
    let bodies: Vec<String> =
        (0..40).map(|i| typed_event(&format!("{prefix}-{i}"), &format!("user-{i}"), if i % 4 == 0 { "deposit" } else { "bet" })).collect();
    post_all(&server, &bodies);
    let mut streams = [a, b, c];
    let mut seen = Vec::new();
    for stream in &mut streams {
        for batch in stream.events(40, Duration::from_millis(1500)) {
            let (topic, partition) = batch.partition().expect("cursor");
            let owner = three.iter().find(|(t, p, _)| *t == topic && *p == partition).map(|(_, _, owner)| owner.clone());
            assert_eq!(owner.as_deref(), Some(stream.id.as_str()), "{topic} {partition} sent to a stream that does not own it");
            seen.extend(event_ids(std::slice::from_ref(&batch)));
        }
    }
    seen.sort();
    let mut expected: Vec<String> = (0..40).map(|i| format!("{prefix}-{i}")).collect();
    expected.sort();
    assert_eq!(seen, expected, "the union of the streams is every event, once");
    // More streams than partitions: the seventh is refused.
    let extra: Vec<Stream> = (0..3).map(|_| Stream::open(server.ingest, "group", "")).collect();
    let seventh = server.client().request(&get_as("/v1/subscriptions/group/events", CONSUMER_TOKEN));
    expect_error(&seventh, 409, "no_free_partitions");
    drop(extra);
    // A stream that leaves gives its partitions to the others.
    let [a, b, c] = streams;
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = owners(&server);
        if now.iter().all(|(_, _, owner)| *owner == a.id || *owner == b.id) {
            assert_eq!(now.iter().filter(|(_, _, owner)| *owner == a.id).count(), 3, "{now:?}");
            break;
        }
        assert!(Instant::now() < deadline, "no rebalance after a stream closed: {now:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop((a, b));
    let metrics = String::from_utf8_lossy(&server.admin_client().request(&get("/metrics")).body).into_owned();
    assert!(metrics.lines().any(|line| line.starts_with("sluice_subscription_rebalances_total ") && !line.ends_with(" 0")), "{metrics}");
}

#[test]
fn committed_cursors_survive_kill_9_and_the_uncommitted_are_sent_again() {
    let sandbox = Sandbox::new(consumer_setup());
    let mut server = sandbox.start();
    let prefix = unique_prefix();
    let bodies: Vec<String> = (0..20).map(|i| event(&format!("{prefix}-{i:02}"), "one-user")).collect();
    post_all(&server, &bodies);
    subscribe(server.ingest, "durable", &["events"], "earliest");
    let mut stream = Stream::open(server.ingest, "durable", "batch_limit=5");
    let batches = stream.events(15, Duration::from_secs(5));
    assert_eq!(event_ids(&batches).len(), 15, "{batches:?}");
    let committed = batches[1].cursor.clone().expect("cursor");
    assert_eq!(committed["offset"].as_u64(), Some(9));
    assert_eq!(stream.commit(server.ingest, "durable", &[&committed]).status, 204);
    // The third batch went out and was never committed; sluice dies.
    server.kill9();

    let server = sandbox.start();
    let row = stats(&server, "durable").into_iter().find(|row| row["committed"].as_u64().is_some()).expect("a committed partition");
    assert_eq!(row["committed"].as_u64(), Some(9), "the committed cursor survived kill -9");
    assert_eq!(row["lag"].as_u64(), Some(10));
    let mut resumed = Stream::open(server.ingest, "durable", "batch_limit=100");
    let again = event_ids(&resumed.events(10, Duration::from_secs(5)));
    let expected: Vec<String> = (10..20).map(|i| format!("{prefix}-{i:02}")).collect();
    assert_eq!(again, expected, "resumed exactly after the committed cursor, the uncommitted sent again");
}

#[test]
fn a_stream_that_misses_its_commit_timeout_ends_and_its_events_go_out_again() {
    let sandbox = Sandbox::new(consumer_setup());
    let server = sandbox.start();
    let prefix = unique_prefix();
    post_all(&server, &(0..3).map(|i| event(&format!("{prefix}-{i}"), "slow-user")).collect::<Vec<_>>());
    subscribe(server.ingest, "slow", &["events"], "earliest");
    let mut first = Stream::open(server.ingest, "slow", "batch_limit=10&commit_timeout_ms=1000");
    let sent = event_ids(&first.events(3, Duration::from_secs(5)));
    assert_eq!(sent.len(), 3);
    // No commit: within the timeout (plus a tick) the stream ends.
    let started = Instant::now();
    while first.next_batch(Duration::from_millis(200)).is_some() || !first.client.is_closed_by_peer(Duration::from_millis(50)) {
        assert!(started.elapsed() < Duration::from_secs(8), "the stream outlived its commit timeout");
    }
    let mut second = Stream::open(server.ingest, "slow", "batch_limit=10");
    assert_eq!(event_ids(&second.events(3, Duration::from_secs(5))), sent, "the uncommitted events are delivered again");
    let metrics = String::from_utf8_lossy(&server.admin_client().request(&get("/metrics")).body).into_owned();
    let total = |name: &str| -> u64 {
        metrics.lines().filter(|line| line.starts_with(name)).filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok()).sum()
    };
    assert!(total("sluice_consumer_commit_timeouts_total") >= 1, "{metrics}");
    assert!(total("sluice_consumer_redeliveries_total") >= 3, "{metrics}");
}

#[test]
fn the_reorder_window_delivers_each_key_in_occurred_order_and_late_events_at_once() {
    let sandbox = Sandbox::new(consumer_setup());
    let server = sandbox.start();
    subscribe(server.ingest, "ordered", &["events"], "latest");
    let prefix = unique_prefix();
    // occurred_at a second ahead of the wall clock, so nothing is due when they arrive.
    let base = now_ms() + 1000;
    let user = "ordered-user";
    let events = [("c", 300), ("a", 100), ("b", 200)];
    let mut stream = Stream::open(server.ingest, "ordered", "batch_limit=100&reorder_window_ms=2000");
    post_all(&server, &events.iter().map(|(name, at)| event_at(&format!("{prefix}-{name}"), user, base + at)).collect::<Vec<_>>());
    assert!(stream.events(1, Duration::from_millis(900)).is_empty(), "released before the window passed");
    let released = event_ids(&stream.events(3, Duration::from_secs(8)));
    assert_eq!(released, [format!("{prefix}-a"), format!("{prefix}-b"), format!("{prefix}-c")], "not in occurred_at order");
    // Older than what the key already got: out at once, flagged late.
    let started = Instant::now();
    post_all(&server, &[event_at(&format!("{prefix}-old"), user, base + 50)]);
    let late = stream.events(1, Duration::from_secs(5));
    assert!(started.elapsed() < Duration::from_millis(1500), "a late event was held");
    let event = &late[0].events[0];
    assert_eq!(event["event_id"].as_str(), Some(format!("{prefix}-old").as_str()));
    assert_eq!(event["late"], true, "{event}");
    // Its cursor is committable and covers everything sent.
    let cursor = late[0].cursor.clone().expect("cursor");
    assert_eq!(stream.commit(server.ingest, "ordered", &[&cursor]).status, 204);
}

#[test]
fn sse_serves_a_real_client_and_resumes_after_last_event_id() {
    let sandbox = Sandbox::new(consumer_setup());
    let server = sandbox.start();
    let prefix = unique_prefix();
    let mut bodies = Vec::new();
    for i in 0..5 {
        bodies.push(event(&format!("{prefix}-mine-{i}"), "sse-user"));
        bodies.push(event(&format!("{prefix}-theirs-{i}"), &format!("sse-other-{i}")));
    }
    post_all(&server, &bodies);
    let script = r#"
import json, sys, urllib.request, sseclient
url, token = sys.argv[1], sys.argv[2]
def read(n, last=None):
    headers = {"Authorization": "Bearer " + token, "Accept": "text/event-stream"}
    if last:
        headers["Last-Event-ID"] = last
    response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10)
    got = []
    for event in sseclient.SSEClient(response).events():
        got.append((event.id, json.loads(event.data)["event_id"]))
        if len(got) == n:
            break
    response.close()
    return got
first = read(3)
second = read(2, first[-1][0])
print(json.dumps({"first": first, "second": second}))
"#;
    let url = format!("http://{}/v1/topics/events/sse?key=sse-user&from=earliest", server.ingest);
    let output = std::process::Command::new(sluice_test_support::python::python())
        .args(["-c", script, &url, CONSUMER_TOKEN])
        .output()
        .expect("run python");
    assert!(output.status.success(), "python SSE client failed: {}", String::from_utf8_lossy(&output.stderr));
    let result = Json::parse(&output.stdout).expect("json");
    let ids = |key: &str| -> Vec<String> {
        result[key].as_array().expect("list").iter().map(|pair| pair[1].as_str().expect("id").to_owned()).collect()
    };
    assert_eq!(ids("first"), (0..3).map(|i| format!("{prefix}-mine-{i}")).collect::<Vec<_>>(), "only the key's events, in order");
    assert_eq!(ids("second"), (3..5).map(|i| format!("{prefix}-mine-{i}")).collect::<Vec<_>>(), "resumed after Last-Event-ID");
    // The stream starts with a retry hint.
    let mut raw = server.client();
    raw.send(&get_as("/v1/topics/events/sse?key=sse-user", CONSUMER_TOKEN));
    let head = raw.read_head_only();
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    let first = raw.read_chunk_within(Duration::from_secs(5)).expect("chunk").expect("a first chunk");
    assert!(String::from_utf8_lossy(&first).starts_with("retry: "), "{}", String::from_utf8_lossy(&first));
}

#[test]
fn sluice_consume_prints_and_commits_and_every_request_is_in_the_read_log() {
    let sandbox = Sandbox::new(consumer_setup());
    let mut server = sandbox.start();
    let prefix = unique_prefix();
    post_all(&server, &(0..12).map(|i| event(&format!("{prefix}-{i}"), &format!("cli-{i}"))).collect::<Vec<_>>());
    let url = format!("http://{}", server.ingest);
    let output = run_sluice(&[
        "consume",
        "--url",
        &url,
        "--token",
        CONSUMER_TOKEN,
        "--subscription",
        "cli",
        "--topics",
        "events",
        "--read-from",
        "earliest",
        "--max-events",
        "12",
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut printed: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| Json::parse(line.as_bytes()).expect("json")["event_id"].as_str().expect("id").to_owned())
        .collect();
    printed.sort();
    let mut expected: Vec<String> = (0..12).map(|i| format!("{prefix}-{i}")).collect();
    expected.sort();
    assert_eq!(printed, expected);
    let lag: u64 = stats(&server, "cli").iter().map(|row| row["lag"].as_u64().expect("lag")).sum();
    assert_eq!(lag, 0, "sluice consume commits what it printed");
    let partition = run_sluice(&["consume", "--url", &url, "--token", CONSUMER_TOKEN, "--topic", "events", "--partition", "0"]);
    assert!(partition.status.success(), "{}", String::from_utf8_lossy(&partition.stderr));
    for line in String::from_utf8_lossy(&partition.stdout).lines() {
        assert_eq!(Json::parse(line.as_bytes()).expect("json")["partition"], 0);
    }
    let denied = run_sluice(&["consume", "--url", &url, "--token", OTHER_TOKEN, "--topic", "events", "--partition", "0"]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("topic_not_allowed"));
    assert!(server.stop().success());

    let mut kinds = Vec::new();
    sluice::consume::readlog::for_each(&sandbox.data_dir, |record| {
        kinds.push((record.kind.as_str().to_owned(), record.partner.to_owned(), record.topic.to_owned(), record.events));
    })
    .expect("read log");
    for kind in ["subscribe", "stream", "commit", "read", "refused"] {
        assert!(kinds.iter().any(|(k, ..)| k == kind), "no {kind} record in the read log: {kinds:?}");
    }
    assert!(kinds.iter().any(|(k, partner, topic, _)| k == "read" && partner == "tests" && topic == "events"));
    let streamed: u64 = kinds.iter().filter(|(k, ..)| k == "stream").map(|(.., events)| events).sum();
    assert!(streamed >= 12, "the stream's summary record counts its events: {kinds:?}");
    // `sluice read-log` prints the same records as JSON lines.
    let printed = run_sluice(&["read-log", "--data-dir", sandbox.data_dir.to_str().expect("utf-8"), "--partner", "tests"]);
    assert!(printed.status.success(), "{}", String::from_utf8_lossy(&printed.stderr));
    let lines: Vec<Json> =
        String::from_utf8_lossy(&printed.stdout).lines().map(|line| Json::parse(line.as_bytes()).expect("json")).collect();
    assert!(lines.iter().all(|line| line["partner"] == "tests"));
    assert!(lines.iter().any(|line| line["kind"] == "commit" && line["subscription"] == "cli"), "{lines:?}");
    assert!(lines.len() < kinds.len(), "--partner leaves out the other records (refusals before authentication)");
}

#[test]
fn retention_passing_a_slow_cursor_is_a_416_for_reads_and_a_jump_for_streams() {
    let setup = Setup {
        extra_keys: consumer_ring(),
        extra_config: "\n[[topics]]\nname = \"events\"\nevent_types = [\"*\"]\npartitions = 1\nretention_bytes = 2097152\n".to_owned(),
        ..Setup::default()
    };
    let sandbox = Sandbox::new(setup);
    let server = sandbox.start();
    subscribe(server.ingest, "slowpoke", &["events"], "earliest");
    let prefix = unique_prefix();
    let padding = "x".repeat(900);
    let mut client = server.client();
    for round in 0..120 {
        let lines: Vec<String> = (0..50)
            .map(|i| event(&format!("{prefix}-{round}-{i}"), "one").replace("\"marker\"", &format!("\"pad\":\"{padding}\",\"marker\"")))
            .collect();
        let response = client.request(&signed_batch(&lines));
        assert_eq!(response.json()["accepted"], 50, "{}", response.describe());
    }
    // Retention runs with the housekeeping (every 10 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    let earliest = loop {
        let listing = server.client().request(&get_as("/v1/topics", CONSUMER_TOKEN)).json();
        let earliest = listing["topics"][0]["partitions"][0]["earliest"].as_u64().expect("earliest");
        if earliest > 0 {
            break earliest;
        }
        assert!(Instant::now() < deadline, "retention deleted nothing");
        std::thread::sleep(Duration::from_millis(500));
    };
    let read = server.client().request(&get_as("/v1/topics/events/partitions/0/events?from=0", CONSUMER_TOKEN));
    expect_error(&read, 416, "offset_out_of_range");
    assert_eq!(read.header("x-earliest-offset"), Some(earliest.to_string().as_str()));
    let mut stream = Stream::open(server.ingest, "slowpoke", "batch_limit=10");
    let first = stream.events(1, Duration::from_secs(5));
    let cursor_offset = first[0].cursor.as_ref().expect("cursor")["offset"].as_u64().expect("offset");
    assert!(cursor_offset >= earliest, "the stream starts at the earliest retained offset ({earliest}), not {cursor_offset}");
    let lag: u64 = stats(&server, "slowpoke").iter().map(|row| row["lag"].as_u64().expect("lag")).sum();
    assert!(lag > 0);
}

#[test]
fn jwt_consume_scopes_and_client_certificates_name_readers() {
    use sluice_test_support::jwt::{Signer, access_claims, write_jwks};
    use sluice_test_support::pki::{self, Authority};
    let dir = tempfile::Builder::new().prefix("sluice-consumer-auth-").tempdir().expect("temp dir");
    let jwks = dir.path().join("jwks.json");
    let signer = Signer::ed("ed-1");
    write_jwks(&jwks, &[&signer]);
    let (server_ca, clients_ca) = (Authority::new("server CA"), Authority::new("clients CA"));
    server_ca.server("server-a", 1).write(dir.path(), "server");
    std::fs::write(dir.path().join("clients-ca.pem"), &clients_ca.pem).expect("ca");
    let file = |name: &str| dir.path().join(name).display().to_string();
    let tls = format!(
        "cert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\nclient_auth = \"optional\"\n",
        file("server.pem"),
        file("server.key"),
        file("clients-ca.pem")
    );
    let extra_config = format!(
        "\n[auth.jwt]\n\n[[auth.jwt.issuers]]\nissuer = \"https://idp.test\"\naudience = \"sluice\"\nalgorithms = [\"EdDSA\"]\njwks_file = {:?}\n{TOPICS}",
        jwks.display().to_string()
    );
    let extra_keys = format!(
        "{}[[partners]]\nname = \"analytics\"\njwt_subjects = [\"analytics-client\"]\nconsume_topics = [\"*\"]\n\n\
         [[partners]]\nname = \"board\"\ntls_identities = [\"leaderboard\"]\nconsume_topics = [\"events\"]\n\n",
        consumer_ring()
    );
    let sandbox = Sandbox::new(Setup { extra_keys, extra_config, tls: Some(tls), ..Setup::default() });
    let server = sandbox.start();
    let now = sluice_test_support::jwt::now_secs();
    let token = signer.token(&access_claims("https://idp.test", "sluice", "analytics-client", now, "consume:wallet"));
    let read = |path: &str, token: &str| server.client().request(&get_as(path, token));
    // The partner may read everything; the token's scope narrows it to wallet.
    assert_eq!(read("/v1/topics/wallet/partitions/0/events", &token).status, 200);
    expect_error(&read("/v1/topics/events/partitions/0/events", &token), 403, "topic_not_allowed");
    let everything = signer.token(&access_claims("https://idp.test", "sluice", "analytics-client", now, "consume:*"));
    assert_eq!(read("/v1/topics/events/partitions/0/events", &everything).status, 200);
    let ingest_only = signer.token(&access_claims("https://idp.test", "sluice", "analytics-client", now, "ingest:*"));
    expect_error(&read("/v1/topics/wallet/partitions/0/events", &ingest_only), 403, "topic_not_allowed");
    // A client certificate listed for a partner authenticates its reads, within its topics.
    let addr = server.ingest_tls.expect("TLS listener");
    let config = pki::client_config(&server_ca, Some(&clients_ca.client("leaderboard", 7, false)), &[]);
    let mut board = pki::connect(addr, config).expect("mTLS connect");
    let plain = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: sluice.test\r\n\r\n").into_bytes();
    assert_eq!(board.request(&plain("/v1/topics/events/partitions/0/events")).status, 200);
    expect_error(&board.request(&plain("/v1/topics/wallet/partitions/0/events")), 403, "topic_not_allowed");
    // Over TLS a stream works as over plain TCP.
    board.send(&plain("/v1/topics/events/sse?from=earliest"));
    let head = board.read_head_only();
    assert_eq!(head.status, 200, "{}", head.describe());
}

#[test]
fn sigterm_ends_streams_with_their_last_chunk_and_answers_long_polls() {
    let sandbox = Sandbox::new(consumer_setup());
    let mut server = sandbox.start();
    subscribe(server.ingest, "draining", &["events"], "latest");
    let mut stream = Stream::open(server.ingest, "draining", "");
    let addr = server.ingest;
    let poll = std::thread::spawn(move || {
        Client::connect(addr).request(&get_as("/v1/topics/events/partitions/0/events?from=latest&wait_ms=30000", CONSUMER_TOKEN))
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    server.sigterm();
    // The stream's answer ends properly (the last chunk), well before any timeout.
    assert!(stream.next_batch(Duration::from_secs(10)).is_none());
    assert!(stream.client.is_closed_by_peer(Duration::from_secs(5)), "the stream's connection stays open after its last chunk");
    let answered = poll.join().expect("long-poll");
    assert_eq!((answered.status, answered.body.len()), (200, 0), "{}", answered.describe());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(server.wait().success(), "SIGTERM did not exit 0");
}

#[test]
fn nothing_behind_a_stream_is_framed_and_subscriptions_are_the_partners_own() {
    let sandbox = Sandbox::new(consumer_setup());
    let server = sandbox.start();
    subscribe(server.ingest, "mine", &["wallet"], "earliest");
    // Two stream requests in one write: the second is never served on this connection
    // (it would be a stream nobody reads, holding partitions).
    let mut client = server.client();
    let mut twice = get_as("/v1/subscriptions/mine/events", CONSUMER_TOKEN);
    twice.extend(get_as("/v1/subscriptions/mine/events", CONSUMER_TOKEN));
    client.send(&twice);
    assert_eq!(client.read_head_only().status, 200);
    std::thread::sleep(Duration::from_millis(300));
    let owners: Vec<String> = stats(&server, "mine").iter().filter_map(|row| row["stream_id"].as_str().map(str::to_owned)).collect();
    assert_eq!(owners.len(), 2);
    assert_eq!(owners[0], owners[1], "one stream owns both partitions: {owners:?}");
    // Another partner (which may read wallet) cannot see, take or stream it.
    let theirs = server.client().request(&get_as("/v1/subscriptions/mine/stats", OTHER_TOKEN));
    expect_error(&theirs, 404, "subscription_not_found");
    let put = server.client().request(&json_as(
        "PUT",
        "/v1/subscriptions/mine",
        OTHER_TOKEN,
        &[],
        "{\"topics\":[\"wallet\"],\"read_from\":\"earliest\"}",
    ));
    expect_error(&put, 409, "subscription_conflict");
    expect_error(&server.client().request(&get_as("/v1/subscriptions/mine/events", OTHER_TOKEN)), 404, "subscription_not_found");
}

#[test]
fn a_stream_ends_when_the_token_it_was_opened_with_expires() {
    const SHORT: &str = "sltk_a-token-that-expires-in-a-few-seconds";
    let not_after = rfc3339((now_ms() / 1000 + 3) * 1000);
    let (ring, sha) = (consumer_ring(), consumer::sha256_hex(SHORT));
    let until = &not_after[..19];
    let ring = format!("{ring}[[tokens]]\nname = \"short\"\npartner = \"tests\"\nsha256 = \"{sha}\"\nnot_after = \"{until}Z\"\n\n");
    let sandbox = Sandbox::new(Setup { extra_keys: ring, extra_config: TOPICS.to_owned(), ..Setup::default() });
    let server = sandbox.start();
    let mut sse = server.client();
    sse.send(&get_as("/v1/topics/events/sse", SHORT));
    assert_eq!(sse.read_head_only().status, 200);
    let started = Instant::now();
    // The retry hint, then nothing until the token expires: the stream's last chunk.
    let mut chunks = 0;
    while sse.read_chunk_within(Duration::from_secs(8)).expect("read").is_some() {
        chunks += 1;
        assert!(chunks < 10, "the stream went on after its token expired");
    }
    assert!(started.elapsed() < Duration::from_secs(8), "the stream outlived its token");
    expect_error(&server.client().request(&get_as("/v1/topics/events/sse", SHORT)), 401, "token_invalid");
}
