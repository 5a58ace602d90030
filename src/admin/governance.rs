//! The admin API of SPEC §9 on the admin listener (loopback peers only): the schema
//! registry, the dead-letter queue, partner health and replay runbooks.
//!
//! | method, path | answer |
//! |---|---|
//! | `GET /admin/schemas` | every subject: event type, mode, versions, major flags |
//! | `GET /admin/schemas/{t}` | one subject |
//! | `GET /admin/schemas/{t}/versions/{v}` | the schema document of a version |
//! | `POST /admin/schemas/{t}` `{"version","schema"}` | 201 created, 200 already there, 409 `schema_incompatible` / `schema_version_exists`, 400 `schema_invalid` |
//! | `POST /admin/schemas/{t}/check` `{"version","schema"}` | 200 `{"compatible":true,..}`, or the refusal `POST` would give |
//! | `DELETE /admin/schemas/{t}/versions/{v}` | 204 |
//! | `PUT /admin/schemas/{t}/settings` `{"mode","majors","dual_write"}` | 200 |
//! | `GET /admin/dlq?reason=&partner=&event_type=&from_ms=&to_ms=&limit=` | NDJSON, one dead letter per line, oldest first |
//! | `GET /admin/dlq/stats` | bytes, dropped, alarm, counts by reason |
//! | `GET /admin/partners` | per partner: state (ok/degraded/failing), counters, clock skew, dead letters by reason |
//! | `POST /admin/replays` | a signed runbook, verified and registered for `sluice replay run` |

use std::io;
use std::net::TcpStream;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{AdminRequest, respond};
use crate::metrics::Control;
use crate::policy::Governance;
use crate::schema::registry::{self, Added, Registry, RegistryError, Subject, SubjectSettings};

const JSON: &str = "application/json";

fn error_body(code: &str, message: &str) -> String {
    json!({"error": {"code": code, "message": message}}).to_string()
}

fn refuse(stream: &mut TcpStream, status: u16, code: &str, message: &str) -> io::Result<()> {
    respond(stream, status, JSON, &error_body(code, message))
}

fn registry_error(stream: &mut TcpStream, error: &RegistryError) -> io::Result<()> {
    let mut body = json!({"error": {"code": error.code(), "message": error.to_string()}});
    if let RegistryError::Incompatible { reasons, .. } = error {
        body["error"]["reasons"] =
            reasons.iter().map(|reason| json!({"rule": reason.rule, "path": reason.path, "message": reason.message})).collect();
    }
    respond(stream, error.status(), JSON, &body.to_string())
}

/// Routes one `/admin/...` request (not `/admin/reload`).
pub(super) fn serve(
    stream: &mut TcpStream,
    control: &Control,
    reloadables: &crate::config::reload::Reloadables,
    request: &AdminRequest,
) -> io::Result<()> {
    let Some(governance) = control.governance.get() else {
        return refuse(stream, 503, "not_ready", "the schema registry is not open yet");
    };
    let segments: Vec<&str> = request.path.trim_start_matches("/admin/").split('/').collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["schemas"]) => list_subjects(stream, &governance.registry()),
        ("GET", ["schemas", event_type]) => show_subject(stream, governance, event_type),
        ("GET", ["schemas", event_type, "versions", version]) => show_version(stream, &governance.registry(), event_type, version),
        ("POST", ["schemas", event_type]) => add_version(stream, governance, event_type, &request.body, false),
        ("POST", ["schemas", event_type, "check"]) => add_version(stream, governance, event_type, &request.body, true),
        ("DELETE", ["schemas", event_type, "versions", version]) => delete_version(stream, governance, event_type, version),
        ("PUT", ["schemas", event_type, "settings"]) => put_settings(stream, governance, event_type, &request.body),
        ("GET", ["dlq"]) => list_dead_letters(stream, control, &request.query),
        ("GET", ["dlq", "stats"]) => dlq_stats(stream, control),
        ("GET", ["partners"]) => partner_health(stream, control, governance),
        ("POST", ["replays"]) => register_replay(stream, governance, control, &reloadables.keyring(), &request.body),
        (_, ["schemas", ..]) => refuse(stream, 405, "method_not_allowed", "method not allowed on this path"),
        _ => refuse(stream, 404, "not_found", "no such endpoint"),
    }
}

fn subject_json(event_type: &str, subject: &Subject) -> Value {
    let versions: Vec<Value> = subject
        .versions
        .iter()
        .map(|registered| {
            json!({"version": registered.version.to_string(), "registered_ms": registered.registered_ms,
                   "major_state": subject.major_state(registered.version.major)})
        })
        .collect();
    json!({"event_type": event_type, "mode": subject.mode(None).as_str(), "mode_set": subject.settings.mode,
           "majors": subject.settings.majors, "dual_write": subject.settings.dual_write, "versions": versions})
}

fn list_subjects(stream: &mut TcpStream, registry: &Registry) -> io::Result<()> {
    let subjects: Vec<Value> = registry.subjects().iter().map(|(event_type, subject)| subject_json(event_type, subject)).collect();
    respond(stream, 200, JSON, &json!({ "subjects": subjects }).to_string())
}

fn show_subject(stream: &mut TcpStream, governance: &Governance, event_type: &str) -> io::Result<()> {
    let registry = governance.registry();
    match registry.subject(event_type) {
        Some(subject) => {
            let mut body = subject_json(event_type, subject);
            body["mode"] = json!(subject.mode(governance.policy_mode(event_type)).as_str());
            respond(stream, 200, JSON, &body.to_string())
        }
        None => refuse(stream, 404, "schema_not_found", &format!("no schemas for {event_type}")),
    }
}

fn show_version(stream: &mut TcpStream, registry: &Registry, event_type: &str, version: &str) -> io::Result<()> {
    let found = registry
        .subject(event_type)
        .and_then(|subject| subject.versions.iter().find(|registered| registered.version.to_string() == version));
    match found {
        Some(registered) => {
            let body = json!({"event_type": event_type, "version": version, "registered_ms": registered.registered_ms, "schema": registered.schema});
            respond(stream, 200, JSON, &body.to_string())
        }
        None => refuse(stream, 404, "schema_not_found", &format!("{event_type} has no version {version}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewVersion {
    version: String,
    schema: Value,
}

fn add_version(stream: &mut TcpStream, governance: &Governance, event_type: &str, body: &[u8], check_only: bool) -> io::Result<()> {
    let new: NewVersion = match serde_json::from_slice(body) {
        Ok(new) => new,
        Err(error) => return refuse(stream, 400, "schema_invalid", &format!("the body must be {{\"version\",\"schema\"}}: {error}")),
    };
    let version = match registry::parse_version(&new.version) {
        Ok(version) => version,
        Err(error) => return registry_error(stream, &error),
    };
    let mode = governance.policy_mode(event_type);
    let mut registry = governance.registry();
    if check_only {
        return match registry.check(event_type, version, &new.schema, mode) {
            Ok(added) => {
                respond(stream, 200, JSON, &json!({"compatible": true, "registered_already": added == Added::Unchanged}).to_string())
            }
            Err(error) => registry_error(stream, &error),
        };
    }
    let now_ms = crate::platform::time::now_unix_ms();
    match registry.add(event_type, version, new.schema, now_ms, mode) {
        Ok(added) => {
            if let Err(message) = publish(governance, &registry) {
                return refuse(stream, 500, "internal_error", &message);
            }
            tracing::info!(event_type, version = %version, created = added == Added::Created, "schema registered");
            let status = if added == Added::Created { 201 } else { 200 };
            respond(stream, status, JSON, &json!({"event_type": event_type, "version": version.to_string()}).to_string())
        }
        Err(error) => registry_error(stream, &error),
    }
}

/// Puts a registry change in force; the error says the change is on disk but not in force.
fn publish(governance: &Governance, registry: &Registry) -> Result<(), String> {
    governance
        .publish(registry)
        .map_err(|message| format!("the change is on disk but not in force ({message}); it takes effect at the next start"))
}

fn delete_version(stream: &mut TcpStream, governance: &Governance, event_type: &str, version: &str) -> io::Result<()> {
    let version = match registry::parse_version(version) {
        Ok(version) => version,
        Err(error) => return registry_error(stream, &error),
    };
    let mut registry = governance.registry();
    match registry.delete(event_type, version) {
        Ok(()) => {
            if let Err(message) = publish(governance, &registry) {
                return refuse(stream, 500, "internal_error", &message);
            }
            tracing::info!(event_type, version = %version, "schema version deleted");
            respond(stream, 204, JSON, "")
        }
        Err(error) => registry_error(stream, &error),
    }
}

fn put_settings(stream: &mut TcpStream, governance: &Governance, event_type: &str, body: &[u8]) -> io::Result<()> {
    let settings: SubjectSettings = match serde_json::from_slice(body) {
        Ok(settings) => settings,
        Err(error) => {
            return refuse(stream, 400, "schema_invalid", &format!("the body must be {{\"mode\",\"majors\",\"dual_write\"}}: {error}"));
        }
    };
    let mut registry = governance.registry();
    match registry.set_settings(event_type, settings) {
        Ok(()) => {
            if let Err(message) = publish(governance, &registry) {
                return refuse(stream, 500, "internal_error", &message);
            }
            let subject = registry.subject(event_type).cloned().unwrap_or_default();
            tracing::info!(event_type, "schema settings changed");
            respond(stream, 200, JSON, &subject_json(event_type, &subject).to_string())
        }
        Err(error) => registry_error(stream, &error),
    }
}

/// `POST /admin/replays`: verifies a runbook against the key ring's signers and registers
/// it, so the ingest listener takes `X-Replay-Id` requests for its items.
fn register_replay(
    stream: &mut TcpStream,
    governance: &Governance,
    control: &Control,
    keyring: &crate::perimeter::keyring::KeyRing,
    body: &[u8],
) -> io::Result<()> {
    let runbook = match crate::replay::runbook::Runbook::parse(body) {
        Ok(runbook) => runbook,
        Err(error) => return refuse(stream, 400, error.code(), &error.to_string()),
    };
    let now_ms = crate::platform::time::now_unix_ms();
    // The signatures are checked first (cheap), then every item against its source.
    if let Err(error) = runbook.verify(keyring.signers(), now_ms) {
        return refuse(stream, 403, error.code(), &error.to_string());
    }
    let dirs = control.topic_dirs.get().map(|dirs| dirs.as_slice()).unwrap_or_default();
    let sources = crate::tools::replay::load_sources(&governance.dlq_dir, dirs, &control.topology, &runbook);
    if let Err(error) = sources.and_then(|sources| crate::tools::replay::check_sources(&sources, &runbook)) {
        let code = match &error {
            crate::tools::replay::ReplayCommandError::Refused { code, .. } => code.clone(),
            _ => "runbook_sources_mismatch".to_owned(),
        };
        return refuse(stream, 403, &code, &error.to_string());
    }
    match governance.replays.register(&runbook, keyring.signers(), &control.topology, now_ms) {
        Ok(approved) => {
            tracing::info!(replay_id = %approved.id, target = %runbook.target_topic, items = runbook.items.len(), requester = %runbook.requester, "replay runbook registered");
            respond(
                stream,
                201,
                JSON,
                &json!({"id": runbook.id, "target_topic": runbook.target_topic, "items": runbook.items.len()}).to_string(),
            )
        }
        Err(error) => {
            tracing::warn!(replay_id = %runbook.id, code = error.code(), error = %error, "replay runbook refused");
            refuse(stream, 403, error.code(), &error.to_string())
        }
    }
}

/// Dead letters an admin call returns at most (`limit`), and by default.
const DLQ_LIST_MAX: usize = 10_000;
const DLQ_LIST_DEFAULT: usize = 1000;
/// Bytes of one `GET /admin/dlq` answer: it is built in the server's memory, so a page
/// ends early past this (ask again with `from_ms` after the last `received_at`).
const DLQ_ANSWER_BYTES_MAX: usize = 32 << 20;

/// The DLQ filter and limit of a query string; the error names the bad parameter.
pub(crate) fn dlq_query(query: &str) -> Result<(crate::sidelog::dlq::Filter, usize), String> {
    let mut filter = crate::sidelog::dlq::Filter::default();
    let mut limit = DLQ_LIST_DEFAULT;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = &percent_decoded(value);
        let number = || value.parse::<i64>().map_err(|_| format!("{name} must be a number"));
        match name {
            "reason" => filter.reason = Some(value.to_owned()),
            "partner" => filter.partner = Some(value.to_owned()),
            "event_type" => filter.event_type = Some(value.to_owned()),
            "from_ms" => filter.from_ms = Some(number()?),
            "to_ms" => filter.to_ms = Some(number()?),
            "id" => filter.id = Some(crate::sidelog::dlq::parse_id(value).ok_or("id must be d_<16 hex>")?),
            "limit" => {
                limit = usize::try_from(number()?)
                    .ok()
                    .filter(|limit| (1..=DLQ_LIST_MAX).contains(limit))
                    .ok_or(format!("limit must be 1..={DLQ_LIST_MAX}"))?
            }
            _ => return Err(format!("unknown parameter {name:?}")),
        }
    }
    Ok((filter, limit))
}

fn list_dead_letters(stream: &mut TcpStream, control: &Control, query: &str) -> io::Result<()> {
    let (filter, limit) = match dlq_query(query) {
        Ok(parsed) => parsed,
        Err(message) => return refuse(stream, 400, "parameter_invalid", &message),
    };
    let Some(dir) = control.topic_dirs.get().and(control.governance.get()).map(|governance| governance.dlq_dir.clone()) else {
        return refuse(stream, 503, "not_ready", "starting");
    };
    let mut body = Vec::new();
    let mut count = 0;
    let read = crate::sidelog::dlq::read_dir(&dir, &filter, |letter| {
        crate::sidelog::dlq::to_json(letter, &mut body);
        count += 1;
        if count >= limit || body.len() >= DLQ_ANSWER_BYTES_MAX {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    });
    if let Err(error) = read {
        return refuse(stream, 500, "internal_error", &format!("cannot read the dead-letter queue: {error}"));
    }
    respond(stream, 200, "application/x-ndjson", &String::from_utf8_lossy(&body))
}

fn dlq_stats(stream: &mut TcpStream, control: &Control) -> io::Result<()> {
    use std::sync::atomic::Ordering::Relaxed;
    let dlq = &control.dlq;
    let by_reason: serde_json::Map<String, Value> =
        dlq.written_by_reason().into_iter().map(|(reason, count)| (reason, json!(count))).collect();
    let body = json!({"bytes": dlq.bytes.load(Relaxed), "dropped": dlq.dropped.load(Relaxed), "alarm": dlq.alarm.load(Relaxed), "written_by_reason": by_reason});
    respond(stream, 200, JSON, &body.to_string())
}

fn partner_health(stream: &mut TcpStream, control: &Control, governance: &Governance) -> io::Result<()> {
    let now_ms = crate::platform::time::now_unix_ms();
    let tolerance = governance.tolerance_secs;
    let partners: Vec<Value> = governance
        .health
        .snapshot()
        .into_iter()
        .map(|(partner, counts)| {
            let minutes: Vec<Value> = counts
                .recent()
                .map(|minute| json!({"minute_ms": minute.minute * 60_000, "admitted": minute.admitted, "signature_failures": minute.signature_failures, "timestamp_skew": minute.skewed, "dead_letters": minute.dead_letters}))
                .collect();
            json!({"partner": partner, "state": counts.state(now_ms, tolerance).as_str(), "admitted": counts.admitted,
                   "signature_failures": counts.signature_failures, "timestamp_skew": counts.skewed,
                   "clock_skew_secs_last": counts.skew_secs_last, "clock_skew_at_ms": counts.skew_at_ms,
                   "dead_letters": counts.dead_letters, "minutes": minutes})
        })
        .collect();
    let _ = control;
    respond(stream, 200, JSON, &json!({"tolerance_secs": tolerance, "partners": partners}).to_string())
}

/// A query value with `%XX` escapes and `+` decoded (invalid escapes kept as written).
fn percent_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let decoded = (bytes[at] == b'%')
            .then(|| bytes.get(at + 1..at + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match (decoded, bytes[at]) {
            (Some(byte), _) => {
                out.push(byte);
                at += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                at += 1;
            }
            (None, byte) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dlq_queries_decode_and_refuse_unknown_parameters() {
        let (filter, limit) = dlq_query("reason=schema_violation&partner=acme%20eu&from_ms=5&limit=7").unwrap();
        assert_eq!(
            (filter.reason.as_deref(), filter.partner.as_deref(), filter.from_ms, limit),
            (Some("schema_violation"), Some("acme eu"), Some(5), 7)
        );
        assert!(dlq_query("limit=0").is_err());
        assert!(dlq_query("colour=red").is_err());
        assert_eq!(percent_decoded("a%2Fb+c%zz"), "a/b c%zz");
    }
}
