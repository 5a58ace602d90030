//! `sluice quarantine list|replay`: the operator's side of the clock-skew quarantine.
//!
//! `replay` re-sends each quarantined request that has not been replayed yet to the
//! ingest listener, signed afresh (scheme v1, current time) with a currently accepted key
//! of the same partner from the key ring, so the partner's scopes and allow-lists apply
//! as for the original. Webhook requests are replayed to `/v1/events` (the body is the
//! same envelope). Replay cannot present the client's certificate, so before sending it
//! holds each record to the partner's client-certificate rules with the identity the
//! record kept (`perimeter::admit::authorize`): a request that came without one of the
//! partner's certificates where one is required, or with another partner's, is refused
//! here and never sent, whatever the listener replay talks to accepts from this host.
//! (The address allow-list was applied to the client when the request was kept; the
//! server applies it to the replay's own connection.)
//!
//! Progress is kept per file and partner (`tools::quarantine::progress`) and stored after every
//! request that is done, so a run resumes where the last one stopped and a second run
//! sends nothing; dedup by event_id makes a repeat harmless, but is not relied on. A
//! request is done when its answer is about the event ([`answer`]); an answer that
//! refuses how it was sent (or asks to retry) blocks its partner for the rest of the run:
//! none of its later records are sent, its progress stays, the others go on.

#![forbid(unsafe_code)]

mod answer;
pub mod progress;

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use answer::{Cause, Counts};

use crate::constants::PARTNERS_PER_RING_MAX;
use crate::perimeter::admit::authorize_certificate;
use crate::perimeter::hmac;
use crate::perimeter::keyring::KeyRing;
use crate::perimeter::partners::ClientCert;
use crate::sidelog::quarantine::{self, Quarantined};
use crate::tools::quarantine::progress::{Progress, ProgressError};
use answer::Verdict;

/// How long one replayed request may take.
const REPLAY_TIMEOUT_MS: u64 = 10_000;
/// Largest answer read back.
const ANSWER_BYTES_MAX: u64 = 1 << 20;
/// Partners one run may hold back: those of one key ring (a partner missing from the ring
/// is blocked too, so a ring that lost more than this many partners stops the run).
const BLOCKED_PARTNERS_MAX: usize = PARTNERS_PER_RING_MAX;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read quarantine {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Progress(#[from] ProgressError),
    #[error("cannot reach the ingest listener {addr}: {source} (what was replayed so far is recorded; run again to resume)")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("more than {BLOCKED_PARTNERS_MAX} partners are blocked; stopped (fix the key ring, then run again)")]
    TooManyBlocked,
}

/// A partner whose requests this run stopped sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub partner: String,
    pub cause: Cause,
    /// Its requests not sent by this run (the refused one included); they stay in the
    /// quarantine, not replayed.
    pub left: u64,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "partner {:?} blocked: {}; {} of its requests left for a later run. To replay them: {}",
            self.partner,
            self.cause,
            self.left,
            self.cause.advice()
        )
    }
}

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Requests done: answered for good and recorded as replayed.
    pub replayed: u64,
    pub accepted: u64,
    pub duplicates: u64,
    /// Refused for what the event says (for a batch: lines refused); not retried.
    pub rejected: u64,
    /// Requests not sent because the partner's rules in force refuse how they came (none
    /// of the partner's certificates where one is required, another partner's
    /// certificate, an address outside its allow-list); done, never sent.
    pub refused_by_rules: u64,
    /// Requests left unsent because they came without a client certificate while the
    /// partner lists certificate identities, and the run was not told that is fine
    /// (`--allow-no-certificate`): not done, a later run may send them.
    pub left_without_certificate: u64,
    /// Requests of partners other than `--partner`, not replayed yet.
    pub skipped_other_partners: u64,
    /// Requests of blocked partners, not replayed yet.
    pub blocked_left: u64,
    /// In partner name order.
    pub blocked: Vec<Blocked>,
}

impl fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "replayed {} requests: {} events accepted, {} duplicates, {} rejected; {} requests of other partners left; \
             {} requests of {} blocked partners left",
            self.replayed,
            self.accepted,
            self.duplicates,
            self.rejected,
            self.skipped_other_partners,
            self.blocked_left,
            self.blocked.len()
        )?;
        if self.refused_by_rules > 0 {
            write!(
                f,
                "; {} requests not sent: their partner's rules refuse how they came (certificate or address)",
                self.refused_by_rules
            )?;
        }
        if self.left_without_certificate > 0 {
            write!(
                f,
                "; {} requests left: they came without a client certificate and their partner lists certificates \
                 (--allow-no-certificate sends them)",
                self.left_without_certificate
            )?;
        }
        Ok(())
    }
}

/// Every quarantined request in `dir` (optionally one partner's), with its file, offset
/// and whether it was replayed, calling `each` per request.
pub fn for_each(dir: &Path, mut each: impl FnMut(&Path, u64, bool, &Quarantined<'_>)) -> Result<(), ReplayError> {
    for file in quarantine::quarantine_files(dir).map_err(|source| ReplayError::Read { path: dir.to_owned(), source })? {
        let bytes = fs::read(&file).map_err(|source| ReplayError::Read { path: file.clone(), source })?;
        let progress = Progress::load(&file)?;
        let mut at = 0usize;
        while let Ok((record, used)) = quarantine::decode(&bytes[at..]) {
            each(&file, at as u64, progress.is_replayed(at as u64, record.partner), &record);
            at += used;
        }
    }
    Ok(())
}

/// One line of `sluice quarantine list` (JSON, no body).
pub fn list_line(file: &Path, offset: u64, replayed: bool, record: &Quarantined<'_>) -> String {
    let skew_secs = record.timestamp_secs - record.received_ms.div_euclid(1000);
    serde_json::json!({
        "file": file.file_name().map(|name| name.to_string_lossy().into_owned()),
        "offset": offset,
        "partner": record.partner,
        "kid": record.kid,
        "path": String::from_utf8_lossy(record.path),
        "received_at": String::from_utf8_lossy(&crate::platform::time::format_rfc3339_ms(record.received_ms)),
        "timestamp": record.timestamp_secs,
        "skew_secs": skew_secs,
        "body_bytes": record.body.len(),
        "tls_identity": record.transport.and_then(|transport| transport.tls_identity),
        "client_ip": record.transport.and_then(|transport| transport.client_ip).map(|ip| ip.to_string()),
        "replayed": replayed,
    })
    .to_string()
}

/// Which requests a replay sends.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayScope<'a> {
    /// Only this partner's requests.
    pub partner: Option<&'a str>,
    /// Also send requests that came without a client certificate from partners that list
    /// certificate identities (`client_cert = "optional"` partners whose plain requests
    /// are genuine). Off by default: a replay runs with `required` relaxed to
    /// `optional`, and the ring it reads cannot tell that relaxation from the real thing.
    pub allow_no_certificate: bool,
}

/// Replays every request not replayed yet (within `scope`) to `addr`. Blocked partners
/// are in the summary, not an error: the caller decides the exit status.
pub fn replay(dir: &Path, ring: &KeyRing, addr: SocketAddr, scope: ReplayScope<'_>, now_ms: i64) -> Result<ReplaySummary, ReplayError> {
    let mut run = Run { ring, addr, now_ms, scope, summary: ReplaySummary::default(), blocked: BTreeMap::new() };
    for file in quarantine::quarantine_files(dir).map_err(|source| ReplayError::Read { path: dir.to_owned(), source })? {
        run.replay_file(&file)?;
    }
    run.summary.blocked = run.blocked.into_values().collect();
    Ok(run.summary)
}

struct Run<'r> {
    ring: &'r KeyRing,
    addr: SocketAddr,
    now_ms: i64,
    scope: ReplayScope<'r>,
    summary: ReplaySummary,
    /// At most `BLOCKED_PARTNERS_MAX`.
    blocked: BTreeMap<String, Blocked>,
}

impl Run<'_> {
    /// Sends the file's records in order, from its floor. A partner's offset moves past a
    /// record only once all its records before were done; the floor moves while every
    /// record so far is done, folding the partner offsets it passes.
    fn replay_file(&mut self, file: &Path) -> Result<(), ReplayError> {
        let bytes = fs::read(file).map_err(|source| ReplayError::Read { path: file.to_owned(), source })?;
        let mut progress = Progress::load(file)?;
        let mut stored = progress.clone();
        let mut at = progress.all() as usize;
        let mut all_done = true;
        while let Some(Ok((record, used))) = bytes.get(at..).map(quarantine::decode) {
            let end = (at + used) as u64;
            let sent = !progress.is_replayed(at as u64, record.partner) && self.offer(&record)?;
            if sent {
                progress.mark_partner(file, record.partner, end)?;
            }
            all_done &= progress.is_replayed(at as u64, record.partner);
            if all_done {
                progress.mark_all(end);
            }
            if sent {
                progress.store(file)?;
                stored.clone_from(&progress);
            }
            at += used;
        }
        if progress != stored {
            progress.store(file)?;
        }
        Ok(())
    }

    /// Sends `record` unless it is another partner's or its partner is blocked; true if
    /// it is done.
    fn offer(&mut self, record: &Quarantined<'_>) -> Result<bool, ReplayError> {
        if self.scope.partner.is_some_and(|wanted| wanted != record.partner) {
            self.summary.skipped_other_partners += 1;
            return Ok(false);
        }
        if let Some(blocked) = self.blocked.get_mut(record.partner) {
            blocked.left += 1;
            self.summary.blocked_left += 1;
            return Ok(false);
        }
        if let Some(partner) = self.ring.partner_by_name(record.partner.as_bytes()) {
            match rules_check(self.ring, partner, record, self.scope.allow_no_certificate) {
                RulesCheck::Pass => {}
                RulesCheck::Refused => {
                    self.summary.refused_by_rules += 1;
                    return Ok(true);
                }
                RulesCheck::NoCertificate => {
                    self.summary.left_without_certificate += 1;
                    return Ok(false);
                }
            }
        }
        let verdict = match self.signed_request(record) {
            Some(request) => {
                let (status, body) = exchange(self.addr, &request)?;
                answer::judge(status, &body)
            }
            None => Verdict::Blocked(Cause::NoKey),
        };
        match verdict {
            Verdict::Done(counts) => {
                self.summary.replayed += 1;
                self.summary.accepted += counts.accepted;
                self.summary.duplicates += counts.duplicates;
                self.summary.rejected += counts.rejected;
                Ok(true)
            }
            Verdict::Blocked(_) if self.blocked.len() >= BLOCKED_PARTNERS_MAX => Err(ReplayError::TooManyBlocked),
            Verdict::Blocked(cause) => {
                let partner = record.partner.to_owned();
                self.blocked.insert(partner.clone(), Blocked { partner, cause, left: 1 });
                self.summary.blocked_left += 1;
                Ok(false)
            }
        }
    }

    /// The request re-signed with a key of the record's partner accepted now; `None` if
    /// the ring has none.
    fn signed_request(&self, record: &Quarantined<'_>) -> Option<Vec<u8>> {
        let partner = self.ring.partner_by_name(record.partner.as_bytes())?;
        let key = self.ring.keys_of_partner(partner).find(|key| key.accepts_at(self.now_ms))?;
        let path: &[u8] = if record.path.starts_with(b"/v1/webhooks/") { b"/v1/events" } else { record.path };
        let timestamp = self.now_ms.div_euclid(1000).to_string();
        let signature = hmac::sign_v1(key.hmac_key(), timestamp.as_bytes(), record.body);
        let mut request = Vec::with_capacity(record.body.len() + 512);
        request.extend_from_slice(b"POST ");
        request.extend_from_slice(path);
        request.extend_from_slice(b" HTTP/1.1\r\nhost: sluice\r\nconnection: close\r\ncontent-type: ");
        request.extend_from_slice(record.content_type);
        let head = format!("\r\nx-key-id: {}\r\nx-timestamp: {timestamp}\r\nx-signature: ", key.kid);
        request.extend_from_slice(head.as_bytes());
        request.extend_from_slice(&signature);
        request.extend_from_slice(format!("\r\ncontent-length: {}\r\n\r\n", record.body.len()).as_bytes());
        request.extend_from_slice(record.body);
        Some(request)
    }
}

/// What `partner`'s rules in force say of `record` as it came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RulesCheck {
    Pass,
    /// Refused for good: its certificate is not the partner's, or it came from outside the
    /// partner's allow-list.
    Refused,
    /// No certificate identity on file for a partner that lists certificates: left for a
    /// run that says such requests are genuine.
    NoCertificate,
}

/// Judges `record` by the connection it came on, as recorded. The ring replay reads may
/// have `required` relaxed to `optional` for the replay itself, so a record without a
/// certificate identity (including one kept before connections were recorded) is sent
/// for a partner that lists certificates only when the operator says so. A record
/// without a recorded address (kept before addresses were recorded) had the allow-list
/// checked when it was kept.
fn rules_check(ring: &KeyRing, partner: usize, record: &Quarantined<'_>, allow_no_certificate: bool) -> RulesCheck {
    let rules = ring.partner(partner);
    let transport = record.transport.unwrap_or_default();
    if transport.client_ip.is_some() && !rules.allows_ip(transport.client_ip) {
        return RulesCheck::Refused;
    }
    match transport.tls_identity {
        Some(identity) if authorize_certificate(ring, partner, Some(identity)).is_err() => RulesCheck::Refused,
        Some(_) => RulesCheck::Pass,
        None if rules.client_cert == ClientCert::Required => RulesCheck::Refused,
        None if !rules.tls_identities.is_empty() && !allow_no_certificate => RulesCheck::NoCertificate,
        None => RulesCheck::Pass,
    }
}

/// Sends one request on a fresh connection and reads the status and body.
fn exchange(addr: SocketAddr, request: &[u8]) -> Result<(u16, String), ReplayError> {
    let connect = |source| ReplayError::Connect { addr, source };
    let timeout = Duration::from_millis(REPLAY_TIMEOUT_MS);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(connect)?;
    stream.set_read_timeout(Some(timeout)).map_err(connect)?;
    stream.write_all(request).map_err(connect)?;
    let mut reader = BufReader::new(stream.take(ANSWER_BYTES_MAX));
    let mut status_line = String::new();
    reader.read_line(&mut status_line).map_err(connect)?;
    let status = status_line.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(connect)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length.min(ANSWER_BYTES_MAX as usize)];
    reader.read_exact(&mut body).map_err(connect)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    use base64::Engine;

    use super::*;
    use crate::sidelog::quarantine::{QuarantineStats, QuarantineWriter};
    use crate::tools::quarantine::progress::progress_path;

    const NOW_MS: i64 = 1_800_000_000_000;

    fn ring() -> KeyRing {
        let secret = |byte: u8| base64::engine::general_purpose::STANDARD.encode([byte; 32]);
        let text = format!(
            "[[keys]]\nkid = \"ka\"\nsecret = \"whsec_{}\"\npartner = \"a\"\n\n[[keys]]\nkid = \"kb\"\nsecret = \"whsec_{}\"\npartner = \"b\"\n",
            secret(1),
            secret(2)
        );
        KeyRing::from_toml(&text, Path::new("keys.toml")).unwrap()
    }

    /// Writes records of `partners` (in this order) to one quarantine file in `dir`.
    fn quarantine(dir: &Path, partners: &[&str]) -> PathBuf {
        let stats = QuarantineStats::default();
        let mut writer = QuarantineWriter::new(dir, 0, u64::MAX);
        let bodies: Vec<String> = (0..partners.len()).map(|index| format!("{{\"n\":{index}}}")).collect();
        for (partner, body) in partners.iter().zip(&bodies) {
            let record = Quarantined {
                received_ms: NOW_MS,
                timestamp_secs: NOW_MS / 1000 - 540,
                partner,
                kid: "k",
                path: b"/v1/events",
                content_type: b"application/json",
                body: body.as_bytes(),
                transport: Some(crate::sidelog::quarantine::Transport { tls_identity: None, client_ip: Some([127, 0, 0, 1].into()) }),
            };
            writer.keep(&record, &stats);
        }
        writer.flush(NOW_MS, &stats);
        quarantine::quarantine_files(dir).unwrap().remove(0)
    }

    /// A listener that answers each request by the partner's kid (`x-key-id`) from
    /// `answers`, and notes the kids it was sent.
    fn fake_server(answers: Arc<Mutex<Vec<(&'static str, &'static str)>>>, sent: Arc<Mutex<Vec<String>>>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut kid, mut length) = (String::new(), 0usize);
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(value) = line.strip_prefix("x-key-id: ") {
                        kid = value.trim().to_owned();
                    }
                    if let Some(value) = line.strip_prefix("content-length: ") {
                        length = value.trim().parse().unwrap();
                    }
                }
                reader.read_exact(&mut vec![0; length]).unwrap();
                let answer = answers.lock().unwrap().iter().find(|(k, _)| *k == kid).map(|(_, answer)| *answer).unwrap();
                sent.lock().unwrap().push(kid);
                stream.write_all(answer.as_bytes()).unwrap();
            }
        });
        addr
    }

    const ACCEPTED: &str = "HTTP/1.1 202 Accepted\r\ncontent-length: 21\r\n\r\n{\"status\":\"accepted\"}";
    const IP_NOT_ALLOWED: &str =
        "HTTP/1.1 403 Forbidden\r\ncontent-length: 50\r\n\r\n{\"error\":{\"code\":\"ip_not_allowed\",\"message\":\"no\"}}";

    fn replayed_flags(dir: &Path) -> Vec<(String, bool)> {
        let mut flags = Vec::new();
        for_each(dir, |_, _, replayed, record| flags.push((record.partner.to_owned(), replayed))).unwrap();
        flags
    }

    /// `replay --partner A` advanced the file's one offset past B's records, so a later
    /// `replay --partner B` sent nothing.
    #[test]
    fn replay_partner_a_leaves_b_for_a_later_run() {
        let dir = tempfile::tempdir().unwrap();
        let file = quarantine(dir.path(), &["a", "b", "a", "b"]);
        let answers = Arc::new(Mutex::new(vec![("ka", ACCEPTED), ("kb", ACCEPTED)]));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let addr = fake_server(answers, sent.clone());

        let summary = replay(dir.path(), &ring(), addr, ReplayScope { partner: Some("a"), ..ReplayScope::default() }, NOW_MS).unwrap();
        assert_eq!((summary.replayed, summary.accepted, summary.skipped_other_partners), (2, 2, 2));
        let flags: Vec<bool> = replayed_flags(dir.path()).into_iter().map(|(_, replayed)| replayed).collect();
        assert_eq!(flags, [true, false, true, false]);
        assert!(fs::read_to_string(progress_path(&file)).unwrap().contains("\"partners\":{\"a\":"));

        let summary = replay(dir.path(), &ring(), addr, ReplayScope { partner: Some("b"), ..ReplayScope::default() }, NOW_MS).unwrap();
        assert_eq!((summary.replayed, summary.skipped_other_partners), (2, 0));
        assert_eq!(
            replay(dir.path(), &ring(), addr, ReplayScope::default(), NOW_MS).unwrap(),
            ReplaySummary::default(),
            "a second run sends nothing"
        );
        assert_eq!(*sent.lock().unwrap(), ["ka", "ka", "kb", "kb"]);
        let end = fs::metadata(&file).unwrap().len();
        assert_eq!(fs::read_to_string(progress_path(&file)).unwrap(), format!("{end}\n"), "folded back into the old format");
    }

    #[test]
    fn an_old_progress_file_counts_for_every_partner_and_a_blocked_partner_keeps_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let file = quarantine(dir.path(), &["a", "b", "a", "b", "b"]);
        let bytes = fs::read(&file).unwrap();
        let (_, first) = quarantine::decode(&bytes).unwrap();
        let (_, second) = quarantine::decode(&bytes[first..]).unwrap();
        fs::write(progress_path(&file), format!("{}\n", first + second)).unwrap();
        assert_eq!(replayed_flags(dir.path()).iter().map(|(_, replayed)| *replayed).collect::<Vec<_>>(), [true, true, false, false, false]);

        let answers = Arc::new(Mutex::new(vec![("ka", ACCEPTED), ("kb", IP_NOT_ALLOWED)]));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let addr = fake_server(answers.clone(), sent.clone());
        let summary = replay(dir.path(), &ring(), addr, ReplayScope::default(), NOW_MS).unwrap();
        assert_eq!((summary.replayed, summary.accepted, summary.rejected, summary.blocked_left), (1, 1, 0, 2));
        let cause = Cause::Refused { status: 403, code: "ip_not_allowed".to_owned() };
        assert_eq!(summary.blocked, [Blocked { partner: "b".to_owned(), cause, left: 2 }]);
        assert!(summary.to_string().ends_with("2 requests of 1 blocked partners left"), "{summary}");
        assert_eq!(*sent.lock().unwrap(), ["ka", "kb"], "one refusal stops the partner");
        assert_eq!(replayed_flags(dir.path()).iter().map(|(_, replayed)| *replayed).collect::<Vec<_>>(), [true, true, true, false, false]);

        answers.lock().unwrap()[1].1 = ACCEPTED;
        let summary = replay(dir.path(), &ring(), addr, ReplayScope::default(), NOW_MS).unwrap();
        assert_eq!((summary.replayed, summary.blocked_left), (2, 0));
        assert!(replayed_flags(dir.path()).iter().all(|(_, replayed)| *replayed));
        assert_eq!(replay(dir.path(), &ring(), addr, ReplayScope::default(), NOW_MS).unwrap().replayed, 0);
        assert_eq!(sent.lock().unwrap().len(), 4);
    }

    #[test]
    fn a_partner_without_a_key_is_blocked_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        quarantine(dir.path(), &["gone", "a"]);
        let sent = Arc::new(Mutex::new(Vec::new()));
        let addr = fake_server(Arc::new(Mutex::new(vec![("ka", ACCEPTED)])), sent);
        let summary = replay(dir.path(), &ring(), addr, ReplayScope::default(), NOW_MS).unwrap();
        assert_eq!((summary.replayed, summary.blocked_left), (1, 1));
        assert_eq!(summary.blocked[0].cause, Cause::NoKey);
        assert!(summary.blocked[0].to_string().starts_with("partner \"gone\" blocked: no key"), "{}", summary.blocked[0]);
        assert_eq!(replayed_flags(dir.path()), [("gone".to_owned(), false), ("a".to_owned(), true)]);
    }
}
