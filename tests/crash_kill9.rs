//! Durability promise of SPEC §2: with `durability = "os"` (and a fortiori "fsync") every
//! acknowledged event survives kill -9, exactly once, at its acknowledged place, and the
//! log keeps growing densely after the restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sluice_test_support::*;

const CLIENT_THREADS: usize = 4;
const LOAD_MS: u64 = 1500;
const BATCH_EVENTS: usize = 4;

/// An event the server acknowledged with a 2xx: (event_id, partition, offset).
type Ack = (String, u32, u64);

/// Sends unique events (singles and small batches) over keep-alive connections until
/// `stop`; returns every acknowledged one. Errors (the server being killed) end a
/// connection; the loop reconnects until stopped.
fn producer(addr: std::net::SocketAddr, prefix: String, thread: usize, stop: Arc<AtomicBool>) -> Vec<Ack> {
    let mut acks = Vec::new();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut client) = Client::try_connect(addr) else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        loop {
            if stop.load(Ordering::Relaxed) {
                return acks;
            }
            let batch = seq % 3 == 2;
            let ids: Vec<String> = (0..if batch { BATCH_EVENTS } else { 1 }).map(|i| format!("{prefix}-t{thread}-{seq}-{i}")).collect();
            seq += 1;
            let bodies: Vec<String> = ids.iter().map(|id| event(id, &format!("user-{thread}-{}", seq % 13))).collect();
            let request = if batch { signed_batch(&bodies) } else { signed_event(bodies[0].as_bytes()) };
            if client.try_send(&request).is_err() {
                break;
            }
            let response = match client.try_read_response() {
                Ok(Some(response)) => response,
                _ => break,
            };
            let json = response.json();
            if batch {
                assert_eq!(response.status, 200, "{}", response.describe());
                let results = json.get("results").and_then(Json::as_array).expect("results");
                assert_eq!(results.len(), ids.len());
                for (id, result) in ids.iter().zip(results) {
                    if result.get("status").and_then(Json::as_str) == Some("accepted") {
                        let (p, o) = placement_of(result).expect("placement");
                        acks.push((id.clone(), p, o));
                    }
                }
            } else if response.status == 202 {
                let (p, o) = response.placement();
                acks.push((ids[0].clone(), p, o));
            } else {
                assert_eq!(response.status, 503, "unexpected answer under load: {}", response.describe());
            }
        }
    }
    acks
}

fn crash_and_recover(durability: &'static str) {
    let sandbox = Sandbox::new(Setup { shards: 2, partitions: 8, durability, ..Setup::default() });
    let mut server = sandbox.start();
    let prefix = unique_prefix();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..CLIENT_THREADS)
        .map(|t| {
            let (addr, prefix, stop) = (server.ingest, prefix.clone(), Arc::clone(&stop));
            std::thread::spawn(move || producer(addr, prefix, t, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(LOAD_MS));
    // Mid-stream: the producers are still sending.
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    let acks: Vec<Ack> = threads.into_iter().flat_map(|t| t.join().expect("producer thread")).collect();
    assert!(acks.len() > 50, "too few acknowledged events to test anything: {}", acks.len());

    // Must come up again on the same data dir.
    let mut restarted = sandbox.start();
    let lines = sandbox.tail();
    let mut by_id: HashMap<String, (u32, u64)> = HashMap::new();
    let mut offsets: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for line in &lines {
        assert!(by_id.insert(line.event_id(), (line.partition, line.offset)).is_none(), "event stored twice: {}", line.line);
        offsets.entry(line.partition).or_default().push(line.offset);
    }
    for (id, partition, offset) in &acks {
        let found = by_id.get(id).unwrap_or_else(|| panic!("acknowledged event {id} lost ({} acked, {} stored)", acks.len(), lines.len()));
        assert_eq!(*found, (*partition, *offset), "acknowledged event {id} moved");
    }
    for (partition, list) in &offsets {
        let expected: Vec<u64> = (0..list.len() as u64).collect();
        assert_eq!(list, &expected, "partition {partition}: offsets are not dense from 0");
    }

    // New events append right after the old ones.
    let mut client = restarted.client();
    let mut next: BTreeMap<u32, u64> = offsets.iter().map(|(p, list)| (*p, list.len() as u64)).collect();
    let mut fresh = Vec::new();
    for i in 0..16 {
        let id = format!("{prefix}-after-{i}");
        let (partition, offset) = expect_accepted(&client.request(&signed_event(event(&id, &format!("after-{i}")).as_bytes())));
        let expected = next.entry(partition).or_insert(0);
        assert_eq!(offset, *expected, "partition {partition}: new event not appended after the recovered ones");
        *expected += 1;
        fresh.push((id, partition, offset));
    }
    drop(client);
    assert!(restarted.stop().success());
    let after = sandbox.tail();
    assert_eq!(after.len(), lines.len() + fresh.len());
    let positions: HashMap<String, (u32, u64)> = after.iter().map(|l| (l.event_id(), (l.partition, l.offset))).collect();
    for (id, partition, offset) in acks.iter().chain(&fresh) {
        assert_eq!(positions.get(id), Some(&(*partition, *offset)), "{id}");
    }
    eprintln!("{durability}: {} acknowledged before kill -9, {} stored, all found", acks.len(), lines.len());
}

#[test]
fn acknowledged_events_survive_kill9_durability_os() {
    crash_and_recover("os");
}

#[test]
fn acknowledged_events_survive_kill9_durability_fsync() {
    crash_and_recover("fsync");
}
