//! What the bridge writes: one Kafka record per stored event (SPEC §8) and one progress
//! record per sluice partition a transaction touched.

use std::borrow::Cow;

use rdkafka::message::{Header, OwnedHeaders};

/// The record key of a stored event: its `key.user_id`. Every stored event passed the
/// envelope check, so `None` means the log holds bytes ingest would not have written.
pub fn user_key(event: &[u8]) -> Option<Cow<'_, str>> {
    serde_json::from_slice::<crate::consume::read::StoredKey<'_>>(event).ok().map(|stored| stored.key.user_id)
}

/// `sluice-topic`, `sluice-partition`, `sluice-offset` and `event-id`.
pub fn headers(topic: &str, partition: u32, offset: u64, event_id: &[u8]) -> OwnedHeaders {
    let mut digits = itoa_buffer();
    let partition_text = format_u64(&mut digits, u64::from(partition)).to_owned();
    let offset_text = format_u64(&mut digits, offset);
    OwnedHeaders::new_with_capacity(4)
        .insert(Header { key: "sluice-topic", value: Some(topic.as_bytes()) })
        .insert(Header { key: "sluice-partition", value: Some(partition_text.as_bytes()) })
        .insert(Header { key: "sluice-offset", value: Some(offset_text.as_bytes()) })
        .insert(Header { key: "event-id", value: Some(event_id) })
}

fn itoa_buffer() -> [u8; 20] {
    [0; 20]
}

/// Decimal digits of `value` in `buffer`, without allocating.
fn format_u64(buffer: &mut [u8; 20], mut value: u64) -> &str {
    let mut start = buffer.len();
    loop {
        start -= 1;
        buffer[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    std::str::from_utf8(&buffer[start..]).unwrap_or("0")
}

/// Where the bridge stands on one sluice partition: the offset it sends next and the
/// event id of the record before it (to notice a log rewritten under it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    pub next_offset: u64,
    #[serde(default)]
    pub last_event_id: String,
    /// When the transaction that wrote it was prepared (for people reading the topic).
    #[serde(default)]
    pub written_ms: i64,
}

/// The progress record key: `<transactional id>/<sluice topic>/<partition>`; ids
/// cannot contain '/', so keys of different bridges never collide.
pub fn progress_key(bridge_id: &str, topic: &str, partition: u32) -> String {
    format!("{bridge_id}/{topic}/{partition}")
}

/// The (topic, partition) of a progress key of `bridge_id`; `None` for other bridges'.
pub fn parse_progress_key<'a>(bridge_id: &str, key: &'a str) -> Option<(&'a str, u32)> {
    let rest = key.strip_prefix(bridge_id)?.strip_prefix('/')?;
    let (topic, partition) = rest.rsplit_once('/')?;
    Some((topic, partition.parse().ok()?))
}

pub fn encode_progress(progress: &Progress) -> Vec<u8> {
    serde_json::to_vec(progress).unwrap_or_default()
}

pub fn decode_progress(value: &[u8]) -> Result<Progress, String> {
    serde_json::from_slice(value).map_err(|error| format!("progress record is not {{\"next_offset\":N,...}}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Headers;

    #[test]
    fn key_is_the_user_id_whatever_else_the_event_holds() {
        let event = br#"{"event_id":"e1","payload":{"key":{"user_id":"no"}},"key":{"user_id":"u\u00e9-7","tenant":"t"}}"#;
        assert_eq!(user_key(event).as_deref(), Some("u\u{e9}-7"));
        assert_eq!(user_key(br#"{"event_id":"e1"}"#), None);
        assert_eq!(user_key(b"not json"), None);
    }

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
        let mut buffer = itoa_buffer();
        assert_eq!(format_u64(&mut buffer, 0), "0");
        assert_eq!(format_u64(&mut buffer, u64::MAX), u64::MAX.to_string());
    }

    #[test]
    fn progress_keys_belong_to_one_bridge() {
        let key = progress_key("box-1", "events", 12);
        assert_eq!(parse_progress_key("box-1", &key), Some(("events", 12)));
        assert_eq!(parse_progress_key("box-2", &key), None);
        assert_eq!(parse_progress_key("box", &key), None);
        assert_eq!(parse_progress_key("box-1", "box-1/events/x"), None);
        let progress = Progress { next_offset: 42, last_event_id: "e\"41".to_owned(), written_ms: 5 };
        assert_eq!(decode_progress(&encode_progress(&progress)), Ok(progress));
        assert!(decode_progress(b"{}").is_err());
    }
}
