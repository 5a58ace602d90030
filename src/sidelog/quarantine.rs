//! Clock-skew quarantine (the article's incident, section 15): a request whose signature
//! verifies but whose timestamp is outside the window is answered 401
//! `timestamp_out_of_window` like any other, and kept here with its partner so an
//! operator can replay it into the stream once the partner's clock is fixed
//! (`sluice quarantine replay`; event_id dedup makes a replay safe to repeat).
//!
//! Each shard appends to `data_dir/quarantine/shard-<k>-<unix ms>.quarantine`, buffered
//! per loop and written before the loop's answers go out (like the request-id journal).
//! The directory is bounded by `quarantine_bytes_max` across shards: past it new requests
//! are counted as dropped, never written, and nothing old is deleted automatically
//! (it is evidence). `sluice quarantine replay` records its progress per file in a
//! `<file>.replayed` sidecar (`tools::quarantine::progress`).
//!
//! Only a request every other rule would have let in is kept (`perimeter/admit.rs`), and
//! its record says how it came: the client-certificate identity and the client address,
//! so `replay` can hold it to the partner's rules again.
//!
//! Record: `len u32 | crc32c u32 | payload`, payload = `received_ms i64 | timestamp i64 |
//! partner_len u16 | kid_len u16 | path_len u16 | content_type_len u16 | body_len u32 |
//! partner | kid | path | content_type | body | transport`, little-endian, where
//! `transport` = `identity_len u16 | ip_len u8 (0, 4 or 16) | identity | ip`. Records
//! written before the transport was kept end after the body; they read back with
//! `transport: None`.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::constants::BODY_BYTES_MAX_CEILING;
use crate::sidelog::frame;
use crate::sidelog::writer::{self, Bound, Rotation, SideLogWriter};

const PAYLOAD_FIXED_BYTES: usize = 8 + 8 + 2 + 2 + 2 + 2 + 4;
/// The transport block: its two lengths, an identity at its `u16` limit, an IPv6 address.
const TRANSPORT_BYTES_MAX: usize = 2 + 1 + u16::MAX as usize + 16;
/// Largest payload written and read back: the fixed part, four parts at their `u16`
/// limit, a body at the ceiling of `ingest.body_bytes_max`, and the transport block.
pub const QUARANTINE_PAYLOAD_BYTES_MAX: usize = PAYLOAD_FIXED_BYTES + 4 * u16::MAX as usize + BODY_BYTES_MAX_CEILING + TRANSPORT_BYTES_MAX;
const _: () = assert!(QUARANTINE_PAYLOAD_BYTES_MAX <= u32::MAX as usize);
/// Distinct partners counted in the metrics; more share the `other` label.
const PARTNER_LABELS_MAX: usize = 1024;
pub const SUFFIX: &str = ".quarantine";

/// One quarantined request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined<'a> {
    /// Server clock when it arrived (Unix ms).
    pub received_ms: i64,
    /// The producer's signed timestamp (Unix seconds).
    pub timestamp_secs: i64,
    pub partner: &'a str,
    pub kid: &'a str,
    pub path: &'a [u8],
    pub content_type: &'a [u8],
    pub body: &'a [u8],
    /// How the request came; `None` in records written before it was kept.
    pub transport: Option<Transport<'a>>,
}

/// How a quarantined request came to the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transport<'a> {
    /// The verified client-certificate identity of its connection, if it had one.
    pub tls_identity: Option<&'a str>,
    /// The client address (the TCP peer's, or the one a trusted PROXY header named).
    pub client_ip: Option<IpAddr>,
}

/// Why bytes are not a record; reading stops at the first one.
pub type QuarantineError = crate::sidelog::frame::FrameError;

/// Appends the framed record to `out`. A partner, kid, path or content type longer than
/// `u16::MAX` bytes, or a payload over `QUARANTINE_PAYLOAD_BYTES_MAX`, is `TooLarge` and
/// appends nothing: [`decode`] would refuse the record, and with it the rest of the file.
pub fn encode(record: &Quarantined<'_>, out: &mut Vec<u8>) -> Result<(), QuarantineError> {
    let variable = [record.partner.as_bytes(), record.kid.as_bytes(), record.path, record.content_type];
    let identity = record.transport.and_then(|transport| transport.tls_identity).unwrap_or_default().as_bytes();
    let ip = match record.transport.and_then(|transport| transport.client_ip) {
        Some(IpAddr::V4(v4)) => v4.octets().to_vec(),
        Some(IpAddr::V6(v6)) => v6.octets().to_vec(),
        None => Vec::new(),
    };
    let transport_len = if record.transport.is_some() { 3 + identity.len() + ip.len() } else { 0 };
    let payload_len = PAYLOAD_FIXED_BYTES + variable.iter().map(|part| part.len()).sum::<usize>() + record.body.len() + transport_len;
    let too_long = |part: &[u8]| part.len() > usize::from(u16::MAX);
    if variable.iter().any(|part| too_long(part)) || too_long(identity) || payload_len > QUARANTINE_PAYLOAD_BYTES_MAX {
        return Err(QuarantineError::TooLarge);
    }
    let start = frame::begin(out);
    out.extend_from_slice(&record.received_ms.to_le_bytes());
    out.extend_from_slice(&record.timestamp_secs.to_le_bytes());
    for part in variable {
        out.extend_from_slice(&(part.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(&(record.body.len() as u32).to_le_bytes());
    for part in variable {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(record.body);
    if record.transport.is_some() {
        out.extend_from_slice(&(identity.len() as u16).to_le_bytes());
        out.push(ip.len() as u8);
        out.extend_from_slice(identity);
        out.extend_from_slice(&ip);
    }
    frame::finish(out, start);
    Ok(())
}

/// Decodes the record at the start of `bytes`; returns it and the bytes it used.
pub fn decode(bytes: &[u8]) -> Result<(Quarantined<'_>, usize), QuarantineError> {
    let (payload, used) = frame::payload(bytes, PAYLOAD_FIXED_BYTES, QUARANTINE_PAYLOAD_BYTES_MAX)?;
    let i64_at = |at: usize| i64::from_le_bytes(payload[at..at + 8].try_into().unwrap_or([0; 8]));
    let u16_at = |at: usize| usize::from(u16::from_le_bytes([payload[at], payload[at + 1]]));
    let lengths = [u16_at(16), u16_at(18), u16_at(20), u16_at(22)];
    let body_len = u32::from_le_bytes([payload[24], payload[25], payload[26], payload[27]]) as usize;
    let before_transport = PAYLOAD_FIXED_BYTES + lengths.iter().sum::<usize>() + body_len;
    if before_transport > payload.len() {
        return Err(QuarantineError::BadFields);
    }
    let mut rest = &payload[PAYLOAD_FIXED_BYTES..];
    let mut parts = [&[][..]; 4];
    for (part, len) in parts.iter_mut().zip(lengths) {
        (*part, rest) = rest.split_at(len);
    }
    let (body, transport) = rest.split_at(body_len);
    let record = Quarantined {
        received_ms: i64_at(0),
        timestamp_secs: i64_at(8),
        partner: utf8(parts[0])?,
        kid: utf8(parts[1])?,
        path: parts[2],
        content_type: parts[3],
        body,
        transport: decode_transport(transport)?,
    };
    Ok((record, used))
}

/// The transport block after the body: absent in older records, else exactly one block.
fn decode_transport(bytes: &[u8]) -> Result<Option<Transport<'_>>, QuarantineError> {
    let [identity_low, identity_high, ip_len, rest @ ..] = bytes else {
        return if bytes.is_empty() { Ok(None) } else { Err(QuarantineError::BadFields) };
    };
    let identity_len = usize::from(u16::from_le_bytes([*identity_low, *identity_high]));
    if rest.len() != identity_len + usize::from(*ip_len) {
        return Err(QuarantineError::BadFields);
    }
    let (identity, ip) = rest.split_at(identity_len);
    let client_ip = match *ip_len {
        0 => None,
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(ip).map_err(|_| QuarantineError::BadFields)?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(ip).map_err(|_| QuarantineError::BadFields)?)),
        _ => return Err(QuarantineError::BadFields),
    };
    let tls_identity = if identity.is_empty() { None } else { Some(utf8(identity)?) };
    Ok(Some(Transport { tls_identity, client_ip }))
}

fn utf8(bytes: &[u8]) -> Result<&str, QuarantineError> {
    std::str::from_utf8(bytes).map_err(|_| QuarantineError::BadFields)
}

/// Counters shared by every shard and the metrics endpoint.
#[derive(Default)]
pub struct QuarantineStats {
    /// Bytes in the quarantine directory (at start: what was found).
    pub bytes: AtomicU64,
    /// Requests not kept because the directory was full or could not be written.
    pub dropped: AtomicU64,
    per_partner: Mutex<BTreeMap<String, u64>>,
}

impl QuarantineStats {
    fn count(&self, partner: &str) {
        let mut counts = self.per_partner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = counts.get_mut(partner) {
            *count += 1;
        } else if counts.len() < PARTNER_LABELS_MAX {
            counts.insert(partner.to_owned(), 1);
        } else {
            *counts.entry("other".to_owned()).or_default() += 1;
        }
    }

    /// `(partner, quarantined requests)` in name order.
    pub fn per_partner(&self) -> Vec<(String, u64)> {
        let counts = self.per_partner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        counts.iter().map(|(partner, count)| (partner.clone(), *count)).collect()
    }
}

/// One shard's writer: the side-log writer with one file per process, within the
/// directory's byte bound (`quarantine_bytes_max` across shards).
pub struct QuarantineWriter {
    log: SideLogWriter,
    bytes_max: u64,
}

impl QuarantineWriter {
    /// Bytes its buffer holds allocated (for the memory budget).
    pub fn buffer_bytes(&self) -> u64 {
        self.log.buffer_bytes()
    }

    pub fn new(dir: &Path, shard: usize, bytes_max: u64) -> QuarantineWriter {
        QuarantineWriter { log: SideLogWriter::new(dir, "quarantine", SUFFIX, shard, Rotation::PerProcess), bytes_max }
    }

    /// Keeps `record` unless the directory is full or it is too large to encode; counts
    /// it either way.
    pub fn keep(&mut self, record: &Quarantined<'_>, stats: &QuarantineStats) {
        let bound = Bound { bytes: &stats.bytes, max: self.bytes_max };
        match self.log.append(Some(bound), |out| encode(record, out)) {
            Ok(()) => stats.count(record.partner),
            Err(_) => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Writes what was kept this loop.
    pub fn flush(&mut self, now_ms: i64, stats: &QuarantineStats) {
        if self.log.flush(now_ms).is_err() {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Bytes in the quarantine files of `dir` (0 if it does not exist).
pub fn directory_bytes(dir: &Path) -> u64 {
    quarantine_files(dir).unwrap_or_default().iter().filter_map(|path| fs::metadata(path).ok()).map(|meta| meta.len()).sum()
}

/// The quarantine files of `dir`, oldest first.
pub fn quarantine_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(writer::files(dir, SUFFIX)?.into_iter().map(|file| file.path).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(body: &[u8]) -> Quarantined<'_> {
        Quarantined {
            received_ms: 1_700_000_000_123,
            timestamp_secs: 1_699_999_400,
            partner: "gameco",
            kid: "k1",
            path: b"/v1/events",
            content_type: b"application/json",
            body,
            transport: Some(Transport { tls_identity: Some("gw.partner.example"), client_ip: Some(IpAddr::from([192, 0, 2, 7])) }),
        }
    }

    #[test]
    fn records_round_trip_and_damage_is_detected() {
        let mut bytes = Vec::new();
        encode(&sample(b"{\"a\":1}"), &mut bytes).unwrap();
        assert_eq!(decode(&bytes).unwrap(), (sample(b"{\"a\":1}"), bytes.len()));
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        assert_eq!(decode(&flipped).unwrap_err(), QuarantineError::BadChecksum);
    }

    /// A record from before the transport was kept reads back with `transport: None`;
    /// a record with one keeps identity and address (IPv4 or IPv6) or their absence.
    #[test]
    fn the_transport_block_is_optional_and_read_exactly() {
        for transport in [
            None,
            Some(Transport { tls_identity: None, client_ip: None }),
            Some(Transport { tls_identity: Some("cn"), client_ip: Some(IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1])) }),
        ] {
            let record = Quarantined { transport, ..sample(b"{}") };
            let mut bytes = Vec::new();
            encode(&record, &mut bytes).unwrap();
            assert_eq!(decode(&bytes).unwrap(), (record, bytes.len()));
        }
    }

    #[test]
    fn the_directory_bound_drops_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let stats = QuarantineStats::default();
        let mut one = Vec::new();
        encode(&sample(b"body"), &mut one).unwrap();
        let mut writer = QuarantineWriter::new(dir.path(), 0, one.len() as u64 * 2);
        for _ in 0..3 {
            writer.keep(&sample(b"body"), &stats);
        }
        writer.flush(5, &stats);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(stats.per_partner(), [("gameco".to_owned(), 2)]);
        assert_eq!(directory_bytes(dir.path()), one.len() as u64 * 2);
        let files = quarantine_files(dir.path()).unwrap();
        assert_eq!(files.len(), 1);
        let mut progress = crate::tools::quarantine::progress::Progress::default();
        progress.mark_all(42);
        progress.store(&files[0]).unwrap();
        assert_eq!(quarantine_files(dir.path()).unwrap().len(), 1, "the progress file is not a quarantine file");
    }

    /// A content type over 64 KiB (reachable: the media type check reads only what is
    /// before `;`, and `header_bytes_max` may be 1 MiB) was written with its length cut
    /// to 16 bits; the checksum still matched, so `decode` said `BadFields` and `list` and
    /// `replay` stopped there, losing every later record of the file. Found by the
    /// `quarantine_decoder` fuzz target (a 1 MiB content type).
    #[test]
    fn a_part_longer_than_its_length_field_is_refused_not_truncated() {
        let content_type = [b"application/json; x=".as_slice(), &[b'y'; 70_000]].concat();
        let oversized = Quarantined { content_type: &content_type, ..sample(b"{}") };
        let mut bytes = vec![7];
        assert_eq!(encode(&oversized, &mut bytes), Err(QuarantineError::TooLarge));
        assert_eq!(bytes, [7], "nothing appended");
        let longest = Quarantined { content_type: &content_type[..usize::from(u16::MAX)], ..sample(b"{}") };
        encode(&longest, &mut bytes).unwrap();
        assert_eq!(decode(&bytes[1..]).unwrap(), (longest, bytes.len() - 1));

        let dir = tempfile::tempdir().unwrap();
        let stats = QuarantineStats::default();
        let mut writer = QuarantineWriter::new(dir.path(), 0, u64::MAX);
        writer.keep(&oversized, &stats);
        writer.keep(&sample(b"after"), &stats);
        writer.flush(5, &stats);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 1);
        let file = fs::read(&quarantine_files(dir.path()).unwrap()[0]).unwrap();
        assert_eq!(decode(&file).unwrap(), (sample(b"after"), file.len()));
    }

    /// `QUARANTINE_PAYLOAD_BYTES_MAX` was the body ceiling alone, so a request with a
    /// body at `body_bytes_max = 64 MiB` made a record `decode` refused as `BadLength`.
    #[test]
    fn a_body_at_the_configured_ceiling_reads_back() {
        let body = vec![b'x'; 64 << 20];
        let mut bytes = Vec::new();
        encode(&sample(&body), &mut bytes).unwrap();
        assert_eq!(decode(&bytes).unwrap(), (sample(&body), bytes.len()));
    }
}
