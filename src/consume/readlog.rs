//! The read log: every consumer request recorded (time, partner, what, topic,
//! partitions and offsets, events, bytes) in `consumers/reads/`, through the side-log
//! writer: one file per shard per hour, written before the loop's answers are sent,
//! bounded by bytes over every shard (past the bound the oldest hour is deleted, and a
//! record that still does not fit is counted as dropped). The audit log takes it over.
//!
//! Record payload (little-endian): `time_ms i64 | kind u8 | partition i64 (-1: several)
//! | from u64 | to u64 | events u64 | bytes u64 | partner_len u16 | topic_len u16 |
//! subscription_len u16 | partner | topic | subscription`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::constants::READ_LOG_PERIOD_MS;
use crate::sidelog::frame::{self, FrameError};
use crate::sidelog::writer::{self, Bound, Rotation, SideLogWriter};

pub const READS_DIR: &str = "reads";
const READS_SUFFIX: &str = ".reads";
const FIXED_BYTES: usize = 8 + 1 + 8 + 8 + 8 + 8 + 8 + 2 + 2 + 2;
const PAYLOAD_BYTES_MAX: usize = 4096;

/// What a consumer request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Topics = 1,
    Read = 2,
    Stream = 3,
    Commit = 4,
    Sse = 5,
    Subscribe = 6,
    Stats = 7,
    Refused = 8,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Topics => "topics",
            Kind::Read => "read",
            Kind::Stream => "stream",
            Kind::Commit => "commit",
            Kind::Sse => "sse",
            Kind::Subscribe => "subscribe",
            Kind::Stats => "stats",
            Kind::Refused => "refused",
        }
    }

    fn from_u8(value: u8) -> Option<Kind> {
        [Kind::Topics, Kind::Read, Kind::Stream, Kind::Commit, Kind::Sse, Kind::Subscribe, Kind::Stats, Kind::Refused]
            .into_iter()
            .find(|kind| *kind as u8 == value)
    }
}

/// One read log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord<'a> {
    pub time_ms: i64,
    pub kind: Kind,
    /// `None`: several partitions (a stream's summary, a topic listing).
    pub partition: Option<u32>,
    pub from: u64,
    pub to: u64,
    pub events: u64,
    pub bytes: u64,
    pub partner: &'a str,
    pub topic: &'a str,
    pub subscription: &'a str,
}

pub fn encode(record: &ReadRecord<'_>, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let (partner, topic, subscription) = (record.partner.as_bytes(), record.topic.as_bytes(), record.subscription.as_bytes());
    if FIXED_BYTES + partner.len() + topic.len() + subscription.len() > PAYLOAD_BYTES_MAX {
        return Err(FrameError::TooLarge);
    }
    let start = frame::begin(out);
    out.extend_from_slice(&record.time_ms.to_le_bytes());
    out.push(record.kind as u8);
    out.extend_from_slice(&record.partition.map_or(-1i64, i64::from).to_le_bytes());
    for value in [record.from, record.to, record.events, record.bytes] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    for part in [partner, topic, subscription] {
        out.extend_from_slice(&(part.len() as u16).to_le_bytes());
    }
    for part in [partner, topic, subscription] {
        out.extend_from_slice(part);
    }
    frame::finish(out, start);
    Ok(())
}

pub fn decode(bytes: &[u8]) -> Result<(ReadRecord<'_>, usize), FrameError> {
    let (payload, used) = frame::payload(bytes, FIXED_BYTES, PAYLOAD_BYTES_MAX)?;
    let u64_at = |at: usize| u64::from_le_bytes(payload[at..at + 8].try_into().unwrap_or_default());
    let u16_at = |at: usize| u16::from_le_bytes(payload[at..at + 2].try_into().unwrap_or_default()) as usize;
    let kind = Kind::from_u8(payload[8]).ok_or(FrameError::BadFields)?;
    let partition = u64_at(9) as i64;
    let partition = if partition < 0 { None } else { Some(u32::try_from(partition).map_err(|_| FrameError::BadFields)?) };
    let lens = [u16_at(FIXED_BYTES - 6), u16_at(FIXED_BYTES - 4), u16_at(FIXED_BYTES - 2)];
    if FIXED_BYTES + lens.iter().sum::<usize>() != payload.len() {
        return Err(FrameError::BadFields);
    }
    let mut at = FIXED_BYTES;
    let mut text = |len: usize| {
        let part = &payload[at..at + len];
        at += len;
        std::str::from_utf8(part).map_err(|_| FrameError::BadFields)
    };
    let (partner, topic, subscription) = (text(lens[0])?, text(lens[1])?, text(lens[2])?);
    let record = ReadRecord {
        time_ms: u64_at(0) as i64,
        kind,
        partition,
        from: u64_at(17),
        to: u64_at(25),
        events: u64_at(33),
        bytes: u64_at(41),
        partner,
        topic,
        subscription,
    };
    Ok((record, used))
}

/// The bytes every shard's read log files hold, and the records refused past the bound.
#[derive(Debug, Default)]
pub struct ReadLogStats {
    pub bytes: AtomicU64,
    pub dropped: AtomicU64,
    pub records: AtomicU64,
}

/// One shard's read log writer.
pub struct ReadLog {
    writer: SideLogWriter,
    dir: std::path::PathBuf,
    bytes_max: u64,
    stats: std::sync::Arc<ReadLogStats>,
}

impl ReadLog {
    /// Bytes its buffer holds allocated (for the memory budget).
    pub fn buffer_bytes(&self) -> u64 {
        self.writer.buffer_bytes()
    }

    pub fn new(data_dir: &Path, shard: usize, bytes_max: u64, stats: std::sync::Arc<ReadLogStats>) -> ReadLog {
        let dir = data_dir.join(super::subscriptions::CONSUMERS_DIR).join(READS_DIR);
        let writer = SideLogWriter::new(&dir, "read log", READS_SUFFIX, shard, Rotation::Period { period_ms: READ_LOG_PERIOD_MS });
        ReadLog { writer, dir, bytes_max, stats }
    }

    /// Records one consumer request (written with the loop's side logs).
    pub fn record(&mut self, record: &ReadRecord<'_>) {
        let bound = Some(Bound { bytes: &self.stats.bytes, max: self.bytes_max });
        match self.writer.append(bound, |out| encode(record, out)) {
            Ok(()) => {
                self.stats.records.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn flush(&mut self, now_ms: i64) {
        let _ = self.writer.flush(now_ms);
    }

    /// Past three quarters of the bound, deletes the oldest hour's files (any shard's):
    /// the read log keeps the most recent history that fits. Called from housekeeping.
    pub fn prune(&mut self) {
        if self.stats.bytes.load(Ordering::Relaxed) < self.bytes_max / 4 * 3 {
            return;
        }
        let Ok(files) = writer::files(&self.dir, READS_SUFFIX) else { return };
        let Some(oldest) = files.first().map(|file| file.number) else { return };
        let current = crate::platform::time::now_unix_ms().div_euclid(READ_LOG_PERIOD_MS);
        if oldest >= current {
            return;
        }
        for file in files.iter().filter(|file| file.number == oldest) {
            let size = std::fs::metadata(&file.path).map_or(0, |metadata| metadata.len());
            if std::fs::remove_file(&file.path).is_ok() {
                self.stats.bytes.fetch_sub(size.min(self.stats.bytes.load(Ordering::Relaxed)), Ordering::Relaxed);
            }
        }
    }
}

/// Bytes the read log holds on disk (at start).
pub fn directory_bytes(data_dir: &Path) -> u64 {
    let dir = data_dir.join(super::subscriptions::CONSUMERS_DIR).join(READS_DIR);
    writer::files(&dir, READS_SUFFIX)
        .unwrap_or_default()
        .iter()
        .filter_map(|file| std::fs::metadata(&file.path).ok())
        .map(|m| m.len())
        .sum()
}

/// One record as a JSON object (`sluice read-log`): `time` (RFC 3339 ms), `kind`,
/// `partner`, `topic`, `partition` (null: several), `from`, `to`, `events`, `bytes`,
/// `subscription` (for a refusal: its error code).
pub fn json_line(record: &ReadRecord<'_>) -> String {
    let time = crate::platform::time::format_rfc3339_ms(record.time_ms);
    serde_json::json!({
        "time": String::from_utf8_lossy(&time),
        "kind": record.kind.as_str(),
        "partner": record.partner,
        "topic": record.topic,
        "partition": record.partition,
        "from": record.from,
        "to": record.to,
        "events": record.events,
        "bytes": record.bytes,
        "subscription": record.subscription,
    })
    .to_string()
}

/// Every record of the read log, oldest file first (for tests and tools).
pub fn for_each(data_dir: &Path, mut each: impl FnMut(&ReadRecord<'_>)) -> std::io::Result<()> {
    let dir = data_dir.join(super::subscriptions::CONSUMERS_DIR).join(READS_DIR);
    for file in writer::files(&dir, READS_SUFFIX)? {
        let bytes = std::fs::read(&file.path)?;
        writer::read_records(&bytes, decode, |_, record| each(&record));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_refused() {
        let record = ReadRecord {
            time_ms: 1_700_000_000_000,
            kind: Kind::Read,
            partition: Some(3),
            from: 10,
            to: 20,
            events: 10,
            bytes: 4000,
            partner: "crm",
            topic: "wallet",
            subscription: "",
        };
        let mut out = Vec::new();
        encode(&record, &mut out).unwrap();
        let (decoded, used) = decode(&out).unwrap();
        assert_eq!((decoded, used), (record, out.len()));
        out[12] ^= 0x40;
        assert!(decode(&out).is_err());
    }
}
