//! What the server's answer to a replayed request means for the quarantined record: done
//! (progress may move past it) or blocked (its partner's progress stays, and the run
//! sends nothing more of that partner).
//!
//! A record is done only when the answer is about the event itself, so that a retry
//! would get the same answer: 2xx, or a 4xx that judges the body (400, 413, 415, 422,
//! 431, a 403 `event_type_not_allowed`). Everything else is blocked, because the replay
//! re-signs every request and sends it from the operator's host in plaintext, so a
//! refusal of *how* it was sent says nothing about the event:
//! - 401, whatever the code: the credentials are the replay's own, made a moment ago
//!   (key ring out of sync with the server's, this host's clock, the key policy);
//! - 403 `ip_not_allowed`, `client_certificate_required`, `partner_mismatch`: the
//!   partner's transport rules (admit.rs), which this host may not meet;
//! - 400 `proxy_header_invalid` / `proxy_header_not_allowed`: the listener expects a
//!   PROXY protocol header from this address;
//! - 404, 405: not an ingest listener; 408, 409, 429, 5xx, a batch with lines not stored
//!   (`storage_unavailable`, `overloaded`) and anything unexpected: retry later.
//!
//! The list of "done" answers is the closed one on purpose: a record wrongly blocked
//! costs a message and a second run; a record wrongly done is lost.

#![forbid(unsafe_code)]

use std::fmt;

/// What one answer counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub accepted: u64,
    pub duplicates: u64,
    /// Refused for what the event says (for a batch: its lines refused); not retried.
    pub rejected: u64,
}

/// Why a partner's records are not sent (any more) in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The key ring read by the replay has no key of the partner accepted now.
    NoKey,
    /// The server refused the request for how it was sent, or could not take it now.
    Refused { status: u16, code: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Done(Counts),
    Blocked(Cause),
}

/// Codes of a 403 that refuse the connection the replay came over, not the event.
const TRANSPORT_CODES: [&str; 3] = ["ip_not_allowed", "client_certificate_required", "partner_mismatch"];
/// Codes of a 400 from the PROXY protocol check, before any request is read.
const PROXY_CODES: [&str; 2] = ["proxy_header_invalid", "proxy_header_not_allowed"];
/// Codes of batch lines that were not stored and ask for a retry (handle.rs).
const RETRY_LINE_CODES: [&str; 2] = ["storage_unavailable", "overloaded"];
/// Statuses whose answer judges the event (or the request as it was kept).
const EVENT_STATUSES: [u16; 6] = [400, 403, 413, 415, 422, 431];

/// The verdict on `status` and `body` (the JSON the server answered).
pub fn judge(status: u16, body: &str) -> Verdict {
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let code = json.pointer("/error/code").and_then(serde_json::Value::as_str).unwrap_or("");
    let refused = |code: &str| Verdict::Blocked(Cause::Refused { status, code: code.to_owned() });
    let count = |name: &str| json.get(name).and_then(serde_json::Value::as_u64).unwrap_or(0);
    match status {
        202 => Verdict::Done(Counts { accepted: 1, ..Counts::default() }),
        200 if json.get("status").and_then(serde_json::Value::as_str) == Some("duplicate") => {
            Verdict::Done(Counts { duplicates: 1, ..Counts::default() })
        }
        200 if json.get("accepted").is_some() => {
            let lines = json.get("results").and_then(serde_json::Value::as_array).map(Vec::as_slice).unwrap_or_default();
            match lines.iter().filter_map(|line| line.pointer("/error/code")?.as_str()).find(|code| RETRY_LINE_CODES.contains(code)) {
                Some(code) => refused(code),
                None => Verdict::Done(Counts { accepted: count("accepted"), duplicates: count("duplicates"), rejected: count("rejected") }),
            }
        }
        401 => refused(code),
        403 if TRANSPORT_CODES.contains(&code) => refused(code),
        400 if PROXY_CODES.contains(&code) => refused(code),
        _ if EVENT_STATUSES.contains(&status) => Verdict::Done(Counts { rejected: 1, ..Counts::default() }),
        _ => refused(code),
    }
}

impl Cause {
    /// What the operator can do about it, in one sentence.
    pub fn advice(&self) -> &'static str {
        let (status, code) = match self {
            Cause::NoKey => return "add a key for the partner (sluice keys gen --partner P) or make one valid now, then run again",
            Cause::Refused { status, code } => (*status, code.as_str()),
        };
        match (status, code) {
            (_, "ip_not_allowed") => {
                "the partner's allow_cidrs exclude the address this replay connects from: run the replay on a host inside them, \
                 or add this host's address (127.0.0.1/32 with the default --to) to allow_cidrs, reload, replay with --partner, \
                 then remove it and reload"
            }
            (_, "client_certificate_required") => {
                "the partner has client_cert = \"required\" and replay sends without a client certificate: set it to \
                 \"optional\" for the partner, reload, replay with --partner, then set it back and reload (replay sends \
                 only the requests that came with one of the partner's certificates; the others are refused before sending)"
            }
            (_, "partner_mismatch") => {
                "a client certificate of another partner was presented on the way: send straight to an ingest listener (--to)"
            }
            (_, "proxy_header_invalid" | "proxy_header_not_allowed") => {
                "the listener expects a PROXY protocol header from this address (proxy_trusted_cidrs) and replay sends none: \
                 replay from an address outside proxy_trusted_cidrs, or --to a listener without proxy_protocol"
            }
            (_, "timestamp_out_of_window") => {
                "this host's clock is more than timestamp_tolerance_secs from the server's: fix it and run again (the refused \
                 request was quarantined again; replayed later it answers duplicate)"
            }
            (_, "algorithm_not_allowed") => {
                "the server's key policy does not allow HMAC-SHA256, the only signature replay makes: allow it in [policy] \
                 allow_algos for the replay"
            }
            (401, _) => {
                "the server does not accept the key replay signed with: the key ring of --config differs from the running \
                 server's; reload the server (POST /admin/reload) or pass the server's own configuration"
            }
            (404 | 405, _) => "this address is not an ingest listener: check --to (default: [ingest] listen)",
            _ => "the server could not take the request now: run the replay again later; it resumes where it stopped",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::NoKey => f.write_str("no key of the partner is accepted now"),
            Cause::Refused { status, code } if code.is_empty() => write!(f, "the server answered {status}"),
            Cause::Refused { status, code } => write!(f, "the server answered {status} {code}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: &str) -> String {
        format!("{{\"error\":{{\"code\":\"{code}\",\"message\":\"m\"}}}}")
    }

    fn blocked(status: u16, code: &str) -> Verdict {
        Verdict::Blocked(Cause::Refused { status, code: code.to_owned() })
    }

    const REJECTED: Verdict = Verdict::Done(Counts { accepted: 0, duplicates: 0, rejected: 1 });

    /// Replay counted every 4xx but 408 and 429 as done, so a partner whose allow-list or
    /// client-certificate rule refused the operator's host lost its quarantined requests.
    #[test]
    fn replay_marks_403s_as_done_no_more() {
        for code in TRANSPORT_CODES {
            assert_eq!(judge(403, &error(code)), blocked(403, code));
        }
        for code in ["key_unknown", "key_not_valid", "signature_invalid", "timestamp_out_of_window", "algorithm_not_allowed", ""] {
            assert_eq!(judge(401, &error(code)), blocked(401, code), "{code}");
        }
        for code in PROXY_CODES {
            assert_eq!(judge(400, &error(code)), blocked(400, code));
        }
        for (status, code) in
            [(404, "not_found"), (405, ""), (408, "request_timeout"), (429, ""), (500, ""), (503, "overloaded"), (204, "")]
        {
            assert_eq!(judge(status, &error(code)), blocked(status, code));
        }
        assert_eq!(judge(0, ""), blocked(0, ""), "no status line");
    }

    #[test]
    fn answers_about_the_event_are_done() {
        assert_eq!(judge(202, "{\"status\":\"accepted\"}"), Verdict::Done(Counts { accepted: 1, ..Counts::default() }));
        assert_eq!(judge(200, "{\"status\":\"duplicate\"}"), Verdict::Done(Counts { duplicates: 1, ..Counts::default() }));
        for (status, code) in [(400, "json_invalid"), (403, "event_type_not_allowed"), (413, "body_too_large"), (415, ""), (422, "x")] {
            assert_eq!(judge(status, &error(code)), REJECTED, "{status} {code}");
        }
        let batch =
            r#"{"accepted":2,"duplicates":1,"rejected":1,"results":[{"status":"rejected","error":{"code":"json_invalid","message":"m"}}]}"#;
        assert_eq!(judge(200, batch), Verdict::Done(Counts { accepted: 2, duplicates: 1, rejected: 1 }));
        let not_stored = r#"{"accepted":1,"duplicates":0,"rejected":1,"results":[{"status":"rejected","error":{"code":"storage_unavailable","message":"m"}}]}"#;
        assert_eq!(judge(200, not_stored), blocked(200, "storage_unavailable"), "a line to retry keeps the batch");
    }

    #[test]
    fn every_cause_names_what_to_do() {
        assert!(Cause::Refused { status: 403, code: "ip_not_allowed".into() }.advice().contains("allow_cidrs"));
        assert!(Cause::Refused { status: 403, code: "client_certificate_required".into() }.advice().contains("client_cert"));
        assert!(Cause::Refused { status: 401, code: "key_unknown".into() }.advice().contains("reload"));
        assert!(Cause::Refused { status: 503, code: "storage_unavailable".into() }.advice().contains("later"));
        assert!(Cause::NoKey.advice().contains("keys gen"));
        assert_eq!(Cause::Refused { status: 403, code: "ip_not_allowed".into() }.to_string(), "the server answered 403 ip_not_allowed");
    }
}
