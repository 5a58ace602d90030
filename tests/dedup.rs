//! A repeated `event_id` is answered `200 duplicate` with the original's placement and is
//! stored once: within a run, across a restart, and inside one batch (SPEC §1.3, §2).

use sluice_test_support::*;

fn ids_in_tail(sandbox: &Sandbox) -> Vec<String> {
    sandbox.tail().iter().map(TailLine::event_id).collect()
}

#[test]
fn repeated_event_id_is_a_duplicate_stored_once() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let id = format!("{}-dup", unique_prefix());
    let body = event(&id, "u_dup");
    let mut client = server.client();
    let original = expect_accepted(&client.request(&signed_event(body.as_bytes())));
    // The same bytes again (a producer retry with a fresh signature).
    assert_eq!(expect_duplicate(&client.request(&signed_event(body.as_bytes()))), original);
    // Same event_id, different payload, on another connection: still the original.
    let changed = body.replace("slot_wolf", "slot_bear");
    assert_ne!(changed, body);
    assert_eq!(expect_duplicate(&server.client().request(&signed_event(changed.as_bytes()))), original);
    // The id written with a JSON escape is the same id once decoded.
    let escaped = body.replacen(&format!("\"event_id\":\"{id}\""), &format!("\"event_id\":\"{}\"", id.replace('-', "\\u002d")), 1);
    assert_ne!(escaped, body);
    assert_eq!(expect_duplicate(&client.request(&signed_event(escaped.as_bytes()))), original);
    let stored = sandbox.tail();
    assert_eq!(stored.len(), 1, "duplicate stored: {stored:?}");
    assert_eq!((stored[0].partition, stored[0].offset), original);
    assert_stored_as_sent(&body, &stored[0].event);
    // A new id goes right after the original in its partition.
    let next = expect_accepted(&client.request(&signed_event(event(&format!("{id}-2"), "u_dup").as_bytes())));
    assert_eq!(next, (original.0, original.1 + 1));
}

#[test]
fn still_a_duplicate_after_a_restart() {
    let sandbox = Sandbox::new(Setup::default());
    let prefix = unique_prefix();
    let bodies: Vec<String> = (0..5).map(|i| event(&format!("{prefix}-{i}"), &format!("user-{i}"))).collect();
    let mut first = sandbox.start();
    let mut client = first.client();
    let placed: Vec<(u32, u64)> = bodies.iter().map(|b| expect_accepted(&client.request(&signed_event(b.as_bytes())))).collect();
    drop(client);
    assert!(first.stop().success(), "SIGTERM did not exit 0");

    let second = sandbox.start();
    let mut client = second.client();
    for (body, position) in bodies.iter().zip(&placed) {
        assert_eq!(expect_duplicate(&client.request(&signed_event(body.as_bytes()))), *position);
    }
    // And as lines of a batch.
    let response = client.request(&signed_batch(&bodies));
    assert_eq!(response.status, 200, "{}", response.describe());
    let json = response.json();
    assert_eq!(json.get("duplicates").and_then(Json::as_u64), Some(5), "{}", response.describe());
    assert_eq!(json.get("accepted").and_then(Json::as_u64), Some(0));
    for (result, position) in json.get("results").and_then(Json::as_array).expect("results").iter().zip(&placed) {
        assert_eq!(result.get("status").and_then(Json::as_str), Some("duplicate"));
        assert_eq!(placement_of(result), Some(*position));
    }
    let mut ids = ids_in_tail(&sandbox);
    ids.sort();
    let mut expected: Vec<String> = (0..5).map(|i| format!("{prefix}-{i}")).collect();
    expected.sort();
    assert_eq!(ids, expected);
}

#[test]
fn still_a_duplicate_after_kill9() {
    let sandbox = Sandbox::new(Setup::default());
    let id = format!("{}-crash", unique_prefix());
    let body = event(&id, "u_crash");
    let mut first = sandbox.start();
    let original = expect_accepted(&first.client().request(&signed_event(body.as_bytes())));
    first.kill9();
    let second = sandbox.start();
    // Same boot: the mapped index is intact in the page cache and used as it is.
    assert!(!second.stderr_text().contains("rebuilt"), "{}", second.stderr_text());
    assert_eq!(expect_duplicate(&second.client().request(&signed_event(body.as_bytes()))), original);
    assert_eq!(ids_in_tail(&sandbox), vec![id]);
}

#[test]
fn duplicate_inside_one_batch() {
    let sandbox = Sandbox::new(Setup::default());
    let server = sandbox.start();
    let prefix = unique_prefix();
    let a = event(&format!("{prefix}-a"), "user-a");
    let b = event(&format!("{prefix}-b"), "user-b");
    let a_again = a.replace("slot_wolf", "other_game");
    let response = server.client().request(&signed_batch(&[a.clone(), b.clone(), a_again, a.clone()]));
    assert_eq!(response.status, 200, "{}", response.describe());
    let json = response.json();
    assert_eq!(json.get("accepted").and_then(Json::as_u64), Some(2), "{}", response.describe());
    assert_eq!(json.get("duplicates").and_then(Json::as_u64), Some(2));
    assert_eq!(json.get("rejected").and_then(Json::as_u64), Some(0));
    let results = json.get("results").and_then(Json::as_array).expect("results").to_vec();
    let status = |i: usize| results[i].get("status").and_then(Json::as_str).map(str::to_owned);
    assert_eq!(
        [status(0), status(1), status(2), status(3)],
        [Some("accepted".into()), Some("accepted".into()), Some("duplicate".into()), Some("duplicate".into())]
    );
    assert_eq!(placement_of(&results[2]), placement_of(&results[0]));
    assert_eq!(placement_of(&results[3]), placement_of(&results[0]));
    let stored = sandbox.tail();
    assert_eq!(stored.len(), 2);
    let first = stored.iter().find(|l| l.event_id() == format!("{prefix}-a")).expect("a stored");
    assert_stored_as_sent(&a, &first.event);
}

/// The index lives on disk (`dedup-*.idx` in each partition directory) and is used as
/// it is after a clean stop or a kill -9 on the same boot. When it cannot be trusted (a
/// power loss: its state names another boot and no clean close) it is discarded and
/// rebuilt from the log, and duplicates are still caught.
#[test]
fn dedup_index_is_on_disk_and_rebuilt_when_untrusted() {
    use std::os::unix::fs::FileExt;
    let sandbox = Sandbox::new(Setup { shards: 1, partitions: 1, ..Setup::default() });
    let prefix = unique_prefix();
    let bodies: Vec<String> = (0..20).map(|i| event(&format!("{prefix}-{i}"), "u")).collect();
    let mut first = sandbox.start();
    let mut client = first.client();
    for body in &bodies {
        expect_accepted(&client.request(&signed_event(body.as_bytes())));
    }
    drop(client);
    first.kill9();
    let partition_dir = sandbox.data_dir.join("partitions").join("0000");
    let tables: Vec<_> = std::fs::read_dir(&partition_dir)
        .expect("partition dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| {
            path.file_name().and_then(|name| name.to_str()).is_some_and(|name| name.starts_with("dedup-") && name.ends_with(".idx"))
        })
        .collect();
    assert_eq!(tables.len(), 1, "{tables:?}");
    // A power loss: another boot's id in the state block, the clean flag off.
    let file = std::fs::OpenOptions::new().write(true).open(&tables[0]).expect("open table");
    file.write_all_at(&[0x5A; 17], 64 + 24).expect("write state");
    drop(file);
    let mut second = sandbox.start();
    assert!(second.stderr_text().contains("dedup index rebuilt from the log"), "{}", second.stderr_text());
    let mut client = second.client();
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(expect_duplicate(&client.request(&signed_event(body.as_bytes()))), (0, i as u64));
    }
    let new = event(&format!("{prefix}-new"), "u");
    assert_eq!(expect_accepted(&client.request(&signed_event(new.as_bytes()))), (0, 20));
    drop(client);
    assert!(second.stop().success());
    let third = sandbox.start();
    assert!(!third.stderr_text().contains("rebuilt"), "a clean stop must not need a rebuild: {}", third.stderr_text());
    assert_eq!(expect_duplicate(&third.client().request(&signed_event(new.as_bytes()))), (0, 20));
}
