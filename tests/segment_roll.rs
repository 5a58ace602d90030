//! A partition's log spans several segment files once the active one is full; reads,
//! dedup and recovery after kill -9 work across the roll.

use sluice_test_support::*;

#[test]
fn events_span_segments_and_survive_kill9() {
    // 1 MiB segments and ~48 KiB events: about 21 per segment.
    let sandbox = Sandbox::new(Setup { shards: 1, partitions: 1, ..Setup::default() });
    let mut server = sandbox.start();
    let prefix = unique_prefix();
    let pad = "p".repeat(48 * 1024);
    let bodies: Vec<String> = (0..50)
        .map(|i| {
            format!(r#"{{"event_id":"{prefix}-{i}","event_type":"t","occurred_at":"2025-10-24T11:37:21Z","key":{{"user_id":"u"}},"payload":{{"pad":"{pad}"}}}}"#)
        })
        .collect();
    let mut client = server.client();
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(expect_accepted(&client.request(&signed_event(body.as_bytes()))), (0, i as u64));
    }
    // Dedup reaches back into a sealed segment.
    assert_eq!(expect_duplicate(&client.request(&signed_event(bodies[0].as_bytes()))), (0, 0));
    drop(client);
    server.kill9();
    let files = segment_files(&sandbox.data_dir, 0);
    assert!(files.len() >= 3, "expected several segments, found {files:?}");
    for file in &files {
        let name = file.file_stem().unwrap().to_str().unwrap();
        assert_eq!(name.len(), 20, "segment name {name} is not a 20-digit offset");
    }

    let server = sandbox.start();
    let lines = sandbox.tail();
    assert_eq!(lines.len(), bodies.len());
    for (i, (line, body)) in lines.iter().zip(&bodies).enumerate() {
        assert_eq!(line.offset, i as u64);
        assert_stored_as_sent(body, &line.event);
    }
    let mut client = server.client();
    assert_eq!(expect_duplicate(&client.request(&signed_event(bodies[1].as_bytes()))), (0, 1));
    let last = event(&format!("{prefix}-last"), "u");
    assert_eq!(expect_accepted(&client.request(&signed_event(last.as_bytes()))), (0, bodies.len() as u64));
    let from = tail_with(&sandbox.data_dir, &["--from", "30"]);
    assert_eq!(from.first().map(|l| l.offset), Some(30));
    assert_eq!(from.len(), bodies.len() + 1 - 30);
}
