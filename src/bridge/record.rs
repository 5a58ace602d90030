//! What the bridge writes: one Kafka record per stored event (SPEC §8) and one progress
//! record per sluice partition a transaction touched.

use std::borrow::Cow;

/// The record key of a stored event: its `key.user_id`. Every stored event passed the
/// envelope check, so `None` means the log holds bytes ingest would not have written.
pub fn user_key(event: &[u8]) -> Option<Cow<'_, str>> {
    serde_json::from_slice::<crate::consume::read::StoredKey<'_>>(event).ok().map(|stored| stored.key.user_id)
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

    #[test]
    fn key_is_the_user_id_whatever_else_the_event_holds() {
        let event = br#"{"event_id":"e1","payload":{"key":{"user_id":"no"}},"key":{"user_id":"u\u00e9-7","tenant":"t"}}"#;
        assert_eq!(user_key(event).as_deref(), Some("u\u{e9}-7"));
        assert_eq!(user_key(br#"{"event_id":"e1"}"#), None);
        assert_eq!(user_key(b"not json"), None);
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
