//! `sluice replay keygen|plan|approve|run` (SPEC §9, the article §12): replay only from
//! a runbook signed by its requester and approved by someone else.
//!
//! - `plan` resolves a selection (dead letters by id or filter, a time range or event ids
//!   of a topic) to a fixed set of items, each pinned by the SHA-256 of its bytes, and
//!   signs the runbook with the requester's Ed25519 key.
//! - `approve` adds an approver's signature (a different signer; a self-approval, even
//!   under another name with the same key, is refused when the runbook is verified).
//! - `run` verifies it against the key ring's `[[signers]]` (exit 2 naming why),
//!   registers it with the server (which verifies it again), then sends each item through
//!   the full ingest path with `X-Replay-Id`, signed afresh with a current key of the
//!   item's partner. The server stores each event in the runbook's target stream
//!   version, never the original, marked `"replayed":true` and `"replay_id"`. Each step
//!   is recorded in `<runbook>.progress` (one JSON line per item, fsynced), so a run
//!   killed midway resumes where it stopped; an item sent but not recorded is sent
//!   again and answered `duplicate` (event_id dedup in the target), never stored twice.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::config::Config;
use crate::ingest::envelope::unstamped;
use crate::log::DataDir;
use crate::perimeter::hmac;
use crate::perimeter::keyring::KeyRing;
use crate::replay::runbook::{Item, Plan, Runbook, RunbookError, Source};
use crate::replay::signer::{self, Role};
use crate::sidelog::dlq::{self, Filter};
use crate::topics::Topology;

/// 403 codes that refuse the event itself, not how it was sent.
const REFUSED_FOR_GOOD: [&str; 6] =
    ["geo_not_allowed", "kyc_gate", "rg_gate", "event_type_not_allowed", "replay_not_in_runbook", "topic_not_allowed"];

/// Default validity of a planned runbook.
pub const RUNBOOK_VALID_HOURS_DEFAULT: u64 = 24;

/// Why a replay command failed; `Refused` and `Usage` exit 2, the rest 1.
#[derive(Debug, thiserror::Error)]
pub enum ReplayCommandError {
    #[error("{0}")]
    Usage(String),
    /// The runbook is unsigned, altered, expired, self-approved, ...: exit 2, naming why.
    #[error("{code}: {message}")]
    Refused { code: String, message: String },
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl From<RunbookError> for ReplayCommandError {
    fn from(error: RunbookError) -> Self {
        ReplayCommandError::Refused { code: error.code().to_owned(), message: error.to_string() }
    }
}

/// `keygen`: writes the private key file (mode 0600) and prints the `[[signers]]` table
/// to add to the key ring.
pub fn keygen(name: &str, role: &str, out_file: &Path, out: &mut impl Write) -> Result<(), ReplayCommandError> {
    let role = Role::parse(role).ok_or_else(|| ReplayCommandError::Usage("--role is requester or approver".to_owned()))?;
    let (text, public) = signer::generate(name, role).map_err(|error| ReplayCommandError::Usage(error.to_string()))?;
    signer::write_private(out_file, &text).map_err(|error| ReplayCommandError::Failed(error.to_string()))?;
    writeln!(out, "[[signers]]\nname = \"{}\"\nrole = \"{}\"\npublic_key = \"{}\"", public.name, role.as_str(), public.key_text())?;
    Ok(())
}

/// What `plan` selects.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub dlq_ids: Vec<String>,
    pub dlq_filter: Option<Filter>,
    pub topic: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub event_ids: Vec<String>,
}

/// `plan`: resolves `selection` against the data dir and writes the runbook signed by
/// `key_file`'s requester.
pub fn plan(
    config: &Config,
    selection: &Selection,
    key_file: &Path,
    reason: &str,
    target: &str,
    valid_hours: u64,
    out_file: &Path,
) -> Result<usize, ReplayCommandError> {
    let signer = signer::load_private(key_file).map_err(|error| ReplayCommandError::Usage(error.to_string()))?;
    let (source, items) = resolve(config, selection)?;
    if items.is_empty() {
        return Err(ReplayCommandError::Usage("the selection holds no event to replay".to_owned()));
    }
    let now_ms = crate::platform::time::now_unix_ms();
    let plan = Plan {
        requester: signer.name().to_owned(),
        reason: reason.to_owned(),
        source,
        target_topic: target.to_owned(),
        items,
        created_at_ms: now_ms,
        valid_for_ms: (valid_hours.max(1) * 3_600_000) as i64,
    };
    let mut runbook = Runbook::plan(plan)?;
    runbook.sign(&signer)?;
    write_new(out_file, &runbook.to_json())?;
    Ok(runbook.items.len())
}

/// `approve`: checks every item against its source (the approver signs what the data dir
/// holds, not hashes taken on trust), prints what is approved, and adds the approver's
/// signature to the runbook file, in place.
pub fn approve(config: &Config, runbook_file: &Path, key_file: &Path, out: &mut impl Write) -> Result<(), ReplayCommandError> {
    let signer = signer::load_private(key_file).map_err(|error| ReplayCommandError::Usage(error.to_string()))?;
    let mut runbook = read_runbook(runbook_file)?;
    let sources = load_sources(&config.storage.data_dir.join(dlq::DLQ_DIR), &open_dirs(config)?, &config.topics, &runbook)?;
    check_sources(&sources, &runbook)?;
    let mut by_type: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for item in &runbook.items {
        let event_type = serde_json::from_slice::<Value>(&sources[&item.reference].1)
            .ok()
            .and_then(|event| event["event_type"].as_str().map(str::to_owned));
        *by_type.entry(event_type.unwrap_or_default()).or_default() += 1;
    }
    writeln!(
        out,
        "{}",
        json!({"id": runbook.id, "requester": runbook.requester, "reason": runbook.reason, "target_topic": runbook.target_topic,
                              "items": runbook.items.len(), "by_event_type": by_type, "expires_at_ms": runbook.expires_at_ms})
    )?;
    if signer.name() == runbook.requester {
        return Err(ReplayCommandError::Refused {
            code: "runbook_self_approved".to_owned(),
            message: format!("{} requested this runbook and cannot approve it", runbook.requester),
        });
    }
    runbook.sign(&signer)?;
    crate::platform::durable::replace_file(runbook_file, &runbook_file.with_extension("approving"), &runbook.to_json())?;
    Ok(())
}

fn read_runbook(file: &Path) -> Result<Runbook, ReplayCommandError> {
    let meta = fs::metadata(file).map_err(|error| ReplayCommandError::Usage(format!("{}: {error}", file.display())))?;
    if meta.len() > crate::constants::RUNBOOK_BYTES_MAX as u64 {
        return Err(RunbookError::TooLarge { bytes: meta.len() as usize, max_bytes: crate::constants::RUNBOOK_BYTES_MAX }.into());
    }
    Ok(Runbook::parse(&fs::read(file)?)?)
}

fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn event_id_of(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(body).ok()?.get("event_id")?.as_str().map(str::to_owned)
}

/// The events of a dead letter: its body, or each line of a batch.
fn dead_letter_events(letter: &dlq::DeadLetter<'_>) -> Vec<(String, Vec<u8>)> {
    let id = String::from_utf8_lossy(&dlq::format_id(letter.id)).into_owned();
    if letter.line == dlq::LINE_WHOLE_REQUEST && letter.path.ends_with(b"/batch") {
        return letter
            .body
            .split(|byte| *byte == b'\n')
            .map(<[u8]>::trim_ascii)
            .filter(|line| !line.is_empty())
            .enumerate()
            .map(|(line, body)| (format!("{id}#{line}"), body.to_vec()))
            .collect();
    }
    vec![(id, letter.body.to_vec())]
}

fn resolve(config: &Config, selection: &Selection) -> Result<(Source, Vec<Item>), ReplayCommandError> {
    let mut items = Vec::new();
    let mut push = |reference: String, body: &[u8]| {
        if let Some(event_id) = event_id_of(body) {
            items.push(Item::new(reference, event_id, body));
        }
    };
    if let Some(topic) = &selection.topic {
        let wanted: HashSet<&str> = selection.event_ids.iter().map(String::as_str).collect();
        let (from, to) = (selection.from_ms.unwrap_or(i64::MIN), selection.to_ms.unwrap_or(i64::MAX));
        let dirs = open_dirs(config)?;
        for_each_stored(&dirs, &config.topics, topic, |reference, ingest_ms, stored| {
            let body = unstamped(stored);
            let chosen = if wanted.is_empty() {
                (from..to).contains(&ingest_ms)
            } else {
                event_id_of(&body).is_some_and(|id| wanted.contains(id.as_str()))
            };
            if chosen {
                push(reference, &body);
            }
        })?;
        let source = if selection.event_ids.is_empty() {
            Source::Topic { topic: topic.clone(), from_ms: from.max(0), to_ms: to.min(i64::MAX / 2) }
        } else {
            Source::Events { topic: topic.clone(), event_ids: selection.event_ids.clone() }
        };
        return Ok((source, items));
    }
    let dir = config.storage.data_dir.join(dlq::DLQ_DIR);
    let wanted: HashSet<u64> = selection.dlq_ids.iter().filter_map(|id| dlq::parse_id(id)).collect();
    if wanted.len() != selection.dlq_ids.len() {
        return Err(ReplayCommandError::Usage("a --dlq-id is not a dead-letter id (d_<16 hex>)".to_owned()));
    }
    let filter = selection.dlq_filter.clone().unwrap_or_default();
    let mut ids = Vec::new();
    dlq::read_dir(&dir, &filter, |letter| {
        if wanted.is_empty() || wanted.contains(&letter.id) {
            ids.push(String::from_utf8_lossy(&dlq::format_id(letter.id)).into_owned());
            for (reference, body) in dead_letter_events(letter) {
                push(reference, &body);
            }
        }
        ControlFlow::Continue(())
    })?;
    Ok((Source::Dlq { ids }, items))
}

/// Every stored event of `topic`: `topic/partition/offset`, ingest time, bytes.
fn for_each_stored(
    dirs: &[DataDir],
    topology: &Topology,
    topic: &str,
    mut visit: impl FnMut(String, i64, &[u8]),
) -> Result<(), ReplayCommandError> {
    let index =
        topology.by_name(topic.as_bytes()).ok_or_else(|| ReplayCommandError::Usage(format!("{topic:?} is not a configured topic")))?;
    let dir = dirs.get(usize::from(index)).ok_or_else(|| ReplayCommandError::Failed(format!("topic {topic} is not open")))?;
    for partition in 0..dir.partitions() {
        let mut reader = crate::log::LogReader::open(dir, partition, crate::log::StartAt::Earliest)
            .map_err(|error| ReplayCommandError::Failed(error.to_string()))?;
        while let Some(record) = reader.next().map_err(|error| ReplayCommandError::Failed(error.to_string()))? {
            visit(format!("{topic}/{partition}/{}", record.offset), record.ingest_ms, record.event);
        }
    }
    Ok(())
}

/// The topics' data dirs of a configuration, for a command beside a running server.
fn open_dirs(config: &Config) -> Result<Vec<DataDir>, ReplayCommandError> {
    crate::log::open_topics(&config.storage.data_dir, &config.topics).map_err(|error| ReplayCommandError::Failed(error.to_string()))
}

/// Where `run` sends and whom it signs as.
pub struct RunTarget {
    pub ingest: SocketAddr,
    pub admin: SocketAddr,
    /// Sign topic items (which carry no partner) with this kid.
    pub kid: Option<String>,
}

/// What a run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    pub sent: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub refused: u64,
    pub skipped_done: u64,
}

/// `run`: verify, register, send every item not done yet, recording each.
pub fn run(config: &Config, runbook_file: &Path, target: &RunTarget) -> Result<RunSummary, ReplayCommandError> {
    let runbook = read_runbook(runbook_file)?;
    let ring = KeyRing::load(&config.keys_path()).map_err(|error| ReplayCommandError::Usage(error.to_string()))?;
    let now_ms = crate::platform::time::now_unix_ms();
    runbook.verify(ring.signers(), now_ms)?;
    let (status, answer) = crate::tools::admin_client::call(target.admin, "POST", "/admin/replays", Some(&runbook.to_json()))
        .map_err(|error| ReplayCommandError::Failed(error.to_string()))?;
    if status != 201 {
        let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
        let code = answer["error"]["code"].as_str().unwrap_or("replay_refused").to_owned();
        return Err(ReplayCommandError::Refused {
            code,
            message: answer["error"]["message"].as_str().unwrap_or("the server refused the runbook").to_owned(),
        });
    }
    let progress_path = progress_path(runbook_file);
    let done = read_progress(&progress_path)?;
    let mut progress = OpenOptions::new().create(true).append(true).open(&progress_path)?;
    let sources = load_sources(&config.storage.data_dir.join(dlq::DLQ_DIR), &open_dirs(config)?, &config.topics, &runbook)?;
    let mut summary = RunSummary::default();
    for (index, item) in runbook.items.iter().enumerate() {
        if done.contains(&index) {
            summary.skipped_done += 1;
            continue;
        }
        let step = send_item(&ring, &sources, item, &runbook.id, target)?;
        match step["status"].as_str() {
            Some("accepted") => summary.stored += 1,
            Some("duplicate") => summary.duplicates += 1,
            _ => summary.refused += 1,
        }
        summary.sent += 1;
        let mut line =
            json!({"index": index, "ref": item.reference, "event_id": item.event_id, "at_ms": crate::platform::time::now_unix_ms()});
        if let (Value::Object(line), Value::Object(step)) = (&mut line, step) {
            line.extend(step);
        }
        writeln!(progress, "{line}")?;
        progress.sync_data()?;
    }
    Ok(summary)
}

pub fn progress_path(runbook_file: &Path) -> PathBuf {
    let mut name = runbook_file.as_os_str().to_owned();
    name.push(".progress");
    PathBuf::from(name)
}

/// Indices recorded as done; a torn last line (a kill midway) is ignored.
fn read_progress(path: &Path) -> io::Result<HashSet<usize>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(error) => return Err(error),
    };
    let mut done = HashSet::new();
    for line in BufReader::new(file).lines() {
        let line = line?;
        if let Some(index) = serde_json::from_str::<Value>(&line).ok().and_then(|step| step["index"].as_u64()) {
            done.insert(index as usize);
        }
    }
    Ok(done)
}

/// Each item's bytes and partner, by reference.
pub type Sources = HashMap<String, (Option<String>, Vec<u8>)>;

/// Reads every item's source as it is now: the dead letters under `dlq_dir`, or the
/// stored events of the runbook's topic in `dirs`.
pub fn load_sources(dlq_dir: &Path, dirs: &[DataDir], topology: &Topology, runbook: &Runbook) -> Result<Sources, ReplayCommandError> {
    let mut sources = Sources::new();
    match &runbook.source {
        Source::Dlq { .. } => {
            dlq::read_dir(dlq_dir, &Filter::default(), |letter| {
                for (reference, body) in dead_letter_events(letter) {
                    sources.insert(reference, (Some(letter.partner.to_owned()), body));
                }
                ControlFlow::Continue(())
            })?;
        }
        Source::Topic { topic, .. } | Source::Events { topic, .. } => {
            let wanted: HashSet<&str> = runbook.items.iter().map(|item| item.reference.as_str()).collect();
            for_each_stored(dirs, topology, topic, |reference, _, stored| {
                if wanted.contains(reference.as_str()) {
                    sources.insert(reference, (None, unstamped(stored)));
                }
            })?;
        }
    }
    Ok(sources)
}

/// Every item's source still holds the bytes (and event id) the item pins: a runbook
/// whose hashes were not taken from its sources is refused, however it is signed.
pub fn check_sources(sources: &Sources, runbook: &Runbook) -> Result<(), ReplayCommandError> {
    for (index, item) in runbook.items.iter().enumerate() {
        let pinned = sources.get(&item.reference).map(|(_, body)| Item::new(item.reference.clone(), item.event_id.clone(), body));
        match pinned {
            Some(pinned)
                if pinned.sha256 == item.sha256 && event_id_of(&sources[&item.reference].1).as_deref() == Some(item.event_id.as_str()) => {}
            Some(_) => {
                return Err(ReplayCommandError::Refused {
                    code: "runbook_sources_mismatch".to_owned(),
                    message: format!("item {index} ({}): its source holds other bytes than the item pins", item.reference),
                });
            }
            None => {
                return Err(ReplayCommandError::Refused {
                    code: "runbook_sources_mismatch".to_owned(),
                    message: format!("item {index} ({}): no such source", item.reference),
                });
            }
        }
    }
    Ok(())
}

/// Sends one item; the recorded step (`status`, and `topic`/`partition`/`offset` or `code`).
fn send_item(ring: &KeyRing, sources: &Sources, item: &Item, replay_id: &str, target: &RunTarget) -> Result<Value, ReplayCommandError> {
    let Some((partner, body)) = sources.get(&item.reference) else {
        return Ok(json!({"status": "missing", "code": "source_gone"}));
    };
    if Item::new(item.reference.clone(), item.event_id.clone(), body).sha256 != item.sha256 {
        return Ok(json!({"status": "refused", "code": "source_changed"}));
    }
    let now_ms = crate::platform::time::now_unix_ms();
    let key = match (&target.kid, partner) {
        (Some(kid), _) => ring.get(kid.as_bytes()),
        (None, Some(partner)) => {
            ring.partner_by_name(partner.as_bytes()).and_then(|index| ring.keys_of_partner(index).find(|key| key.accepts_at(now_ms)))
        }
        (None, None) => return Err(ReplayCommandError::Usage("topic items carry no partner: say --kid".to_owned())),
    };
    let Some(key) = key else {
        return Err(ReplayCommandError::Failed(format!("no key accepted now for the partner of {}", item.reference)));
    };
    let timestamp = now_ms.div_euclid(1000).to_string();
    let signature = hmac::sign_v1(key.hmac_key(), timestamp.as_bytes(), body);
    let mut request = format!(
        "POST /v1/events HTTP/1.1\r\nhost: sluice\r\nconnection: close\r\ncontent-type: application/json\r\nx-replay-id: {replay_id}\r\n\
         x-key-id: {}\r\nx-timestamp: {timestamp}\r\nx-signature: ",
        key.kid
    )
    .into_bytes();
    request.extend_from_slice(&signature);
    request.extend_from_slice(format!("\r\ncontent-length: {}\r\n\r\n", body.len()).as_bytes());
    request.extend_from_slice(body);
    let (status, answer) = exchange(target.ingest, &request)?;
    let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
    let code = answer["error"]["code"].as_str().unwrap_or_default();
    match status {
        200 | 202 => {
            Ok(json!({"status": answer["status"], "topic": answer["topic"], "partition": answer["partition"], "offset": answer["offset"]}))
        }
        // The event itself is refused (its envelope, schema, policies, gates, the runbook's
        // hash or target): sending it again cannot help; recorded and skipped.
        400 | 409 | 413 | 422 => Ok(json!({"status": "refused", "http": status, "code": code})),
        403 if REFUSED_FOR_GOOD.contains(&code) => Ok(json!({"status": "refused", "http": status, "code": code})),
        // How it was sent is refused (credentials, certificate, address), or the server asks
        // to retry: stop with the item not done, for a run after the fix.
        _ => Err(ReplayCommandError::Failed(format!("HTTP {status} {code} at {}: fix it and run again to resume", item.reference))),
    }
}

fn exchange(addr: SocketAddr, request: &[u8]) -> Result<(u16, Vec<u8>), ReplayCommandError> {
    use std::io::Read;
    let failed = |error: io::Error| ReplayCommandError::Failed(format!("ingest listener {addr}: {error}; run again to resume"));
    let timeout = std::time::Duration::from_secs(10);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(failed)?;
    stream.set_read_timeout(Some(timeout)).map_err(failed)?;
    stream.write_all(request).map_err(failed)?;
    let mut answer = Vec::new();
    stream.take(1 << 20).read_to_end(&mut answer).map_err(failed)?;
    let head_end = memchr::memmem::find(&answer, b"\r\n\r\n").map_or(answer.len(), |at| at + 4);
    let status =
        std::str::from_utf8(&answer[..head_end.min(answer.len())]).ok().and_then(|head| head.split(' ').nth(1)?.parse().ok()).unwrap_or(0);
    Ok((status, answer[head_end..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_must_pin_their_sources_bytes() {
        let body = br#"{"event_id":"e1","event_type":"bet"}"#.to_vec();
        let item = Item::new("d_0000000000000001", "e1", &body);
        let plan = Plan {
            requester: "alice".to_owned(),
            reason: "test".to_owned(),
            source: Source::Dlq { ids: vec!["d_0000000000000001".to_owned()] },
            target_topic: "events.v2".to_owned(),
            items: vec![item],
            created_at_ms: 1_800_000_000_000,
            valid_for_ms: 3_600_000,
        };
        let runbook = Runbook::plan(plan).unwrap();
        let mut sources = Sources::new();
        sources.insert("d_0000000000000001".to_owned(), (Some("acme".to_owned()), body.clone()));
        assert!(check_sources(&sources, &runbook).is_ok());
        // The requester pinned other bytes than the dead letter holds: refused.
        sources.insert("d_0000000000000001".to_owned(), (Some("acme".to_owned()), br#"{"event_id":"e1","event_type":"win"}"#.to_vec()));
        let Err(ReplayCommandError::Refused { code, .. }) = check_sources(&sources, &runbook) else { panic!("refused") };
        assert_eq!(code, "runbook_sources_mismatch");
        assert!(check_sources(&Sources::new(), &runbook).is_err(), "a missing source");
    }

    #[test]
    fn progress_ignores_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rb.json.progress");
        fs::write(&path, "{\"index\":0,\"status\":\"accepted\"}\n{\"index\":1,\"status\":\"acc").unwrap();
        assert_eq!(read_progress(&path).unwrap(), HashSet::from([0]));
    }
}
