//! What is stored: `sluice tail` output parsed, the stored event compared with what was
//! sent, and records read straight from the segment files.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::json::{Json, ParseJson};
use crate::process::run_sluice;

/// One line of `sluice tail` output.
#[derive(Debug, Clone)]
pub struct TailLine {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    /// The stored event exactly as printed (raw bytes of the body plus `ingested_at`).
    pub event: String,
    pub event_json: Json,
    pub line: String,
}

impl TailLine {
    pub fn event_id(&self) -> String {
        self.event_json.get("event_id").and_then(Json::as_str).expect("stored event has event_id").to_owned()
    }
}

/// `sluice tail --data-dir DIR --from earliest` (all partitions), parsed; panics if it
/// fails or a line is not JSON of the promised shape.
pub fn tail(data_dir: &Path) -> Vec<TailLine> {
    tail_with(data_dir, &[])
}

pub fn tail_with(data_dir: &Path, extra: &[&str]) -> Vec<TailLine> {
    let dir = data_dir.to_str().expect("utf-8 path");
    let mut args = vec!["tail", "--data-dir", dir];
    args.extend_from_slice(extra);
    let output = run_sluice(&args);
    assert!(output.status.success(), "sluice tail {extra:?} failed: {:?}\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).expect("tail prints UTF-8");
    stdout.lines().map(parse_tail_line).collect()
}

pub fn parse_tail_line(line: &str) -> TailLine {
    let json = Json::parse(line.as_bytes()).unwrap_or_else(|e| panic!("tail line is not JSON ({e}): {line}"));
    let topic = json.get("topic").and_then(Json::as_str).unwrap_or_else(|| panic!("no topic: {line}")).to_owned();
    let partition = json.get("partition").and_then(Json::as_u64).unwrap_or_else(|| panic!("no partition: {line}"));
    let offset = json.get("offset").and_then(Json::as_u64).unwrap_or_else(|| panic!("no offset: {line}"));
    let event_json = json.get("event").cloned().unwrap_or_else(|| panic!("no event: {line}"));
    assert!(event_json.is_object(), "event is not an object: {line}");
    let prefix = format!("{{\"topic\":\"{topic}\",\"partition\":{partition},\"offset\":{offset},\"event\":");
    let event = line
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix('}'))
        .unwrap_or_else(|| panic!("tail line not shaped {{\"topic\",\"partition\",\"offset\",\"event\"}}: {line}"))
        .to_owned();
    TailLine { topic, partition: partition as u32, offset, event, event_json, line: line.to_owned() }
}

/// Checks that `stored` (as `sluice tail` prints it) is `sent` with
/// `,"ingested_at":"<RFC 3339 ms>"` inserted before the final `}`, and returns the
/// ingested_at value in Unix ms. Tail prints raw CR/LF (only ever insignificant
/// whitespace in valid JSON) as spaces, so they are compared as spaces; the bytes on
/// disk are checked exactly by [`segment_records`] users.
pub fn assert_stored_as_sent(sent: &str, stored: &str) -> i64 {
    let flat = sent.replace(['\r', '\n'], " ");
    let sent = flat.as_str();
    let close = sent.rfind('}').expect("sent body has a closing brace");
    let (head, tail) = sent.split_at(close);
    let rest = stored
        .strip_prefix(head)
        .unwrap_or_else(|| panic!("stored event does not start with the sent bytes\nsent:   {sent}\nstored: {stored}"));
    let rest = rest.strip_prefix(",\"ingested_at\":\"").unwrap_or_else(|| panic!("no ingested_at right after the sent bytes: {stored}"));
    let (stamp, after) = rest.split_once('"').unwrap_or_else(|| panic!("unterminated ingested_at: {stored}"));
    assert_eq!(after, tail, "bytes after ingested_at differ from the sent body's end\nsent:   {sent}\nstored: {stored}");
    parse_rfc3339_ms_utc(stamp).unwrap_or_else(|| panic!("ingested_at {stamp:?} is not RFC 3339 UTC with milliseconds"))
}

/// Parses exactly `YYYY-MM-DDTHH:MM:SS.mmmZ` into Unix ms (own implementation).
pub fn parse_rfc3339_ms_utc(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 24 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'.' || b[23] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(range)?;
        if s.bytes().all(|c| c.is_ascii_digit()) { s.parse().ok() } else { None }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second, milli) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) || day < 1 || day > month_days[(month - 1) as usize] || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut days = 0i64;
    for y in 1970..year {
        days += if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 { 366 } else { 365 };
    }
    days += month_days[..(month - 1) as usize].iter().sum::<i64>() + day - 1;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + milli)
}

/// One record read straight from the segment files (not through `sluice tail`).
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub offset: u64,
    pub event_id: Vec<u8>,
    pub event: Vec<u8>,
    /// Segment file and byte position of the record's start.
    pub path: PathBuf,
    pub position: usize,
    pub stored_bytes: usize,
}

/// Segment files of a partition, oldest first.
pub fn segment_files(data_dir: &Path, partition: u32) -> Vec<PathBuf> {
    let dir = data_dir.join("partitions").join(format!("{partition:04}"));
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.map(|e| e.expect("dir entry").path()).filter(|p| p.extension().is_some_and(|x| x == "seg")).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read {}: {e}", dir.display()),
    };
    files.sort();
    files
}

/// Every whole record of a partition, decoded with `sluice::log::format`.
pub fn segment_records(data_dir: &Path, partition: u32) -> Vec<RawRecord> {
    let mut records = Vec::new();
    for path in segment_files(data_dir, partition) {
        let bytes = std::fs::read(&path).expect("read segment");
        let header = sluice::log::format::decode_segment_header(&bytes).expect("segment header");
        sluice::log::format::scan_segment(&bytes, header.base_offset, |record| {
            // The id follows the 32-byte record header.
            let position = record.event_id.as_ptr() as usize - bytes.as_ptr() as usize - 32;
            records.push(RawRecord {
                offset: record.offset,
                event_id: record.event_id.to_vec(),
                event: record.event.to_vec(),
                path: path.clone(),
                position,
                stored_bytes: record.stored_bytes,
            });
        });
    }
    records
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64
}
