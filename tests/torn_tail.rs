//! A crash can leave the active segment with a torn last record or garbage after the
//! last whole record. A restart must cut back to the last whole record and carry on
//! from there (SPEC §2: "a torn tail is cut back to the last whole record").

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};

use sluice_test_support::*;

const EVENTS: usize = 6;

fn single_partition() -> Setup {
    Setup { shards: 1, partitions: 1, ..Setup::default() }
}

/// Stores `EVENTS` events in partition 0, kills the server with -9 and returns the sent
/// bodies and the records as they are on disk.
fn store_and_crash(sandbox: &Sandbox, prefix: &str) -> (Vec<String>, Vec<RawRecord>) {
    let mut server = sandbox.start();
    let mut client = server.client();
    let mut bodies = Vec::new();
    for i in 0..EVENTS {
        let body = event(&format!("{prefix}-{i}"), &format!("u{i}"));
        assert_eq!(expect_accepted(&client.request(&signed_event(body.as_bytes()))), (0, i as u64));
        bodies.push(body);
    }
    drop(client);
    server.kill9();
    let records = segment_records(&sandbox.data_dir, 0);
    assert_eq!(records.len(), EVENTS, "records on disk before the damage");
    assert_eq!(segment_files(&sandbox.data_dir, 0).len(), 1);
    (bodies, records)
}

/// After the restart: tail shows exactly `kept` of the sent bodies, byte for byte, and
/// one new event gets offset `kept` and is readable.
fn check_recovered(sandbox: &Sandbox, bodies: &[String], kept: usize, prefix: &str) -> Server {
    let server = sandbox.start();
    let lines = sandbox.tail();
    assert_eq!(lines.len(), kept, "records after recovery: {lines:?}");
    for (i, (line, body)) in lines.iter().zip(bodies).enumerate() {
        assert_eq!((line.partition, line.offset), (0, i as u64));
        assert_stored_as_sent(body, &line.event);
    }
    let body = event(&format!("{prefix}-new"), "u-new");
    assert_eq!(expect_accepted(&server.client().request(&signed_event(body.as_bytes()))), (0, kept as u64));
    let lines = sandbox.tail();
    assert_eq!(lines.len(), kept + 1);
    assert_stored_as_sent(&body, &lines[kept].event);
    server
}

#[test]
fn record_cut_in_the_middle_is_dropped() {
    let sandbox = Sandbox::new(single_partition());
    let prefix = unique_prefix();
    let (bodies, records) = store_and_crash(&sandbox, &prefix);
    let last = records.last().expect("records");
    // Cut inside the last record's body: its header claims more bytes than remain.
    let cut = (last.position + 32 + last.event.len() / 2) as u64;
    OpenOptions::new().write(true).open(&last.path).expect("open segment").set_len(cut).expect("truncate");
    let mut server = check_recovered(&sandbox, &bodies, EVENTS - 1, &prefix);
    assert!(server.stderr_text().contains("torn tail"), "recovery did not report the cut:\n{}", server.stderr_text());
    assert!(server.stop().success());
    // Everything on disk is whole again, with the new record where the torn one was.
    let on_disk = segment_records(&sandbox.data_dir, 0);
    assert_eq!(on_disk.len(), EVENTS);
    assert_eq!(on_disk[EVENTS - 1].position, last.position);
    assert_eq!(on_disk[EVENTS - 1].event_id, format!("{prefix}-new").into_bytes());
}

#[test]
fn record_header_cut_is_dropped() {
    let sandbox = Sandbox::new(single_partition());
    let prefix = unique_prefix();
    let (bodies, records) = store_and_crash(&sandbox, &prefix);
    let last = records.last().expect("records");
    // Only 10 bytes of the last record's 32-byte header survive.
    OpenOptions::new().write(true).open(&last.path).expect("open segment").set_len(last.position as u64 + 10).expect("truncate");
    drop(check_recovered(&sandbox, &bodies, EVENTS - 1, &prefix));
}

#[test]
fn garbage_after_the_last_record_is_cut() {
    let sandbox = Sandbox::new(single_partition());
    let prefix = unique_prefix();
    let (bodies, records) = store_and_crash(&sandbox, &prefix);
    let last = records.last().expect("records");
    let end = (last.position + last.stored_bytes) as u64;
    let mut file = OpenOptions::new().write(true).open(&last.path).expect("open segment");
    file.seek(SeekFrom::Start(end)).expect("seek");
    file.write_all(&[0xAB; 100]).expect("write garbage");
    drop(file);
    let mut server = check_recovered(&sandbox, &bodies, EVENTS, &prefix);
    assert!(server.stop().success());
    // The new record replaced the garbage and nothing of it is left after the record.
    let on_disk = segment_records(&sandbox.data_dir, 0);
    assert_eq!(on_disk.len(), EVENTS + 1);
    let new = &on_disk[EVENTS];
    assert_eq!(new.position as u64, end);
    let bytes = std::fs::read(&new.path).expect("read segment");
    let after = &bytes[new.position + new.stored_bytes..];
    let dirty = after.iter().take(4096).position(|&b| b != 0);
    assert_eq!(dirty, None, "bytes after the last record are not zero");
}

#[test]
fn flipped_byte_in_the_last_record_is_a_torn_tail() {
    let sandbox = Sandbox::new(single_partition());
    let prefix = unique_prefix();
    let (bodies, records) = store_and_crash(&sandbox, &prefix);
    // Damage the middle of the last record's body with nothing valid after it: a torn
    // tail, cut. (Damage with intact records after it is kept and reported instead:
    // `tests/storage_faults.rs`.)
    let victim = &records[EVENTS - 1];
    let at = (victim.position + 32 + victim.event.len() / 2) as u64;
    let mut file = OpenOptions::new().write(true).open(&victim.path).expect("open segment");
    file.seek(SeekFrom::Start(at)).expect("seek");
    file.write_all(b"#").expect("write");
    drop(file);
    drop(check_recovered(&sandbox, &bodies, EVENTS - 1, &prefix));
}
