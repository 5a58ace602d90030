//! What the ingest path keeps in the dead-letter queue (SPEC §9): every request refused
//! after authentication (a line of a batch on its own, a request refused whole with its
//! whole body, a genuine request refused only for its clock: the clock-skew quarantine's
//! reason `timestamp_out_of_window`), with its reason, detail, partner, kid, topic,
//! event type and id, the request head (credentials redacted), the body and how it came.
//! Appends are buffered per loop and written with the loop's other side logs.

use crate::http::Request;
use crate::ingest::handle::{Core, Peer};
use crate::sidelog::dlq::{self, DeadLetter, Headers, LINE_WHOLE_REQUEST, Transport};

/// A refused request or line, as the ingest path knows it.
pub struct Refused<'a> {
    pub reason: &'a str,
    pub detail: &'a str,
    pub partner: &'a str,
    pub kid: &'a str,
    /// The line of a batch, or `None` for the whole request.
    pub line: Option<u32>,
    pub body: &'a [u8],
}

/// Headers of the request head, credentials redacted; at most what a dead letter keeps.
fn head_lines(head: &[u8]) -> Vec<(&[u8], &[u8])> {
    head.split(|byte| *byte == b'\n')
        .skip(1)
        .map(<[u8]>::trim_ascii)
        .filter(|line| !line.is_empty())
        .filter_map(|line| {
            let colon = line.iter().position(|byte| *byte == b':')?;
            let (name, value) = (line[..colon].trim_ascii(), line[colon + 1..].trim_ascii());
            Some((name, dlq::redact(name, value)))
        })
        .take(crate::constants::DLQ_HEADERS_COUNT_MAX)
        .collect()
}

/// `event_type`, `event_id` and the routed topic of a line, when it parses.
fn describe_event(core: &Core, body: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (event_type, event_id) = type_and_id(body);
    let topic = core.topology.route(&event_type).map(|topic| core.topology.topic(topic).name.as_bytes().to_vec()).unwrap_or_default();
    (event_type, event_id, topic)
}

/// `event_type` and `event_id` of an event, when it parses (empty otherwise).
fn type_and_id(body: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(body) else { return Default::default() };
    let text = |name: &str| event.get(name).and_then(serde_json::Value::as_str).unwrap_or_default().as_bytes().to_vec();
    (text("event_type"), text("event_id"))
}

impl Core {
    /// Keeps `refused` in the dead-letter queue (nothing when the queue is off; counted
    /// as dropped past its bound).
    pub fn dead_letter(&mut self, request: &Request<'_>, peer: Peer<'_>, refused: &Refused<'_>) {
        if self.dlq.is_none() {
            self.governance.health.dead_letter(refused.partner, refused.reason, self.now_ms);
            return;
        }
        let (event_type, event_id, topic) = if refused.line.is_some() || !request.path.ends_with(b"/batch") {
            describe_event(self, refused.body)
        } else {
            Default::default()
        };
        let headers = head_lines(request.head);
        let letter = DeadLetter {
            received_ms: self.now_ms,
            id: 0,
            reason: refused.reason,
            detail: refused.detail,
            partner: refused.partner,
            kid: refused.kid,
            topic: &topic,
            event_type: &event_type,
            event_id: &event_id,
            line: refused.line.unwrap_or(LINE_WHOLE_REQUEST),
            path: request.path,
            headers: Headers::new(&headers),
            body: refused.body,
            transport: Transport { tls_identity: peer.tls_identity, client_ip: peer.ip },
        };
        self.governance.health.dead_letter(refused.partner, refused.reason, self.now_ms);
        if let Some(writer) = self.dlq.as_mut() {
            let _ = writer.append(&letter, &self.control.dlq);
        }
    }
}

impl Core {
    /// Keeps an event refused where it was to be stored (a gated reward): this shard has
    /// the event as it would have been stored (its `ingested_at` stamp is taken out
    /// again, so the body is the producer's), its partition and its sender, but not the
    /// request head.
    pub fn dead_letter_stored(&mut self, reason: crate::ingest::refusal::Reject, partner: usize, stored: &[&[u8]], slot: u32, line: u16) {
        let joined = stored.concat();
        let body = crate::ingest::envelope::unstamped(&joined);
        let partner = if partner < self.keyring.partners().len() { self.keyring.partner(partner).name.clone() } else { String::new() };
        self.governance.health.dead_letter(&partner, reason.code(), self.now_ms);
        let Some(writer) = self.dlq.as_mut() else { return };
        let (topic, _) = self.topology.locate(slot);
        let topic = self.topology.topic(topic).name.as_bytes().to_vec();
        let (event_type, event_id) = type_and_id(&body);
        let letter = DeadLetter {
            received_ms: self.now_ms,
            id: 0,
            reason: reason.code(),
            detail: crate::ingest::answer::refused_message(reason),
            partner: &partner,
            kid: "",
            topic: &topic,
            event_type: &event_type,
            event_id: &event_id,
            line: u32::from(line),
            path: b"/v1/events",
            headers: Headers::new(&[]),
            body: &body,
            transport: Transport::default(),
        };
        let _ = writer.append(&letter, &self.control.dlq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_is_split_into_headers_with_credentials_redacted() {
        let head = b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Signature: v1=abcd\r\nX-Key-Id: k1\r\nAuthorization: Bearer t\r\n\r\n";
        let lines = head_lines(head);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], (&b"Host"[..], &b"x"[..]));
        assert_eq!(lines[1].1, dlq::REDACTED);
        assert_eq!(lines[2].1, b"k1");
        assert_eq!(lines[3].1, dlq::REDACTED);
    }
}
