//! The closed label sets of the metrics: request path, answer status and rejection
//! reason. Each is a fixed list indexed by a small integer, so a counter is an array slot
//! and no producer byte ever becomes a label value: cardinality is bounded by the code.

pub use crate::ingest::refusal::Reject;

/// The path a request is counted under. Unknown paths all count as `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathLabel {
    Events,
    EventsBatch,
    /// `/v1/webhooks` and everything below it (`/v1/webhooks/<source>`).
    Webhooks,
    Healthz,
    Readyz,
    /// `/v1/topics` and everything below it (the consumer reads, SSE).
    Topics,
    /// `/v1/subscriptions` and everything below it.
    Subscriptions,
    /// Any other path, and requests that could not be framed (no path to trust).
    Other,
}

impl PathLabel {
    /// Every label, in index order.
    pub const ALL: [PathLabel; 8] = [
        PathLabel::Events,
        PathLabel::EventsBatch,
        PathLabel::Webhooks,
        PathLabel::Healthz,
        PathLabel::Readyz,
        PathLabel::Topics,
        PathLabel::Subscriptions,
        PathLabel::Other,
    ];
    pub const COUNT: usize = PathLabel::ALL.len();

    /// Classifies a request path (query string already removed).
    pub fn of(path: &[u8]) -> PathLabel {
        match path {
            b"/v1/events" => PathLabel::Events,
            b"/v1/events/batch" => PathLabel::EventsBatch,
            b"/healthz" => PathLabel::Healthz,
            b"/readyz" => PathLabel::Readyz,
            b"/v1/webhooks" => PathLabel::Webhooks,
            _ if path.starts_with(b"/v1/webhooks/") => PathLabel::Webhooks,
            b"/v1/topics" => PathLabel::Topics,
            _ if path.starts_with(b"/v1/topics/") => PathLabel::Topics,
            _ if path.starts_with(b"/v1/subscriptions/") => PathLabel::Subscriptions,
            _ => PathLabel::Other,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The `path` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            PathLabel::Events => "/v1/events",
            PathLabel::EventsBatch => "/v1/events/batch",
            PathLabel::Webhooks => "/v1/webhooks",
            PathLabel::Healthz => "/healthz",
            PathLabel::Readyz => "/readyz",
            PathLabel::Topics => "/v1/topics",
            PathLabel::Subscriptions => "/v1/subscriptions",
            PathLabel::Other => "other",
        }
    }
}

/// What a PROXY protocol header carried (`sluice_proxy_headers_total{version}`): `v1` and
/// `v2` a client address; `local` none (v2 `LOCAL`, a balancer's own health check; v1
/// `UNKNOWN`; v2 `UNSPEC` or UNIX), so the connection kept the balancer's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeaderLabel {
    V1,
    V2,
    Local,
}

impl ProxyHeaderLabel {
    pub const ALL: [ProxyHeaderLabel; 3] = [ProxyHeaderLabel::V1, ProxyHeaderLabel::V2, ProxyHeaderLabel::Local];
    pub const COUNT: usize = ProxyHeaderLabel::ALL.len();

    pub fn index(self) -> usize {
        self as usize
    }

    /// The `version` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyHeaderLabel::V1 => "v1",
            ProxyHeaderLabel::V2 => "v2",
            ProxyHeaderLabel::Local => "local",
        }
    }
}

/// Why a connection was closed at its PROXY protocol header
/// (`sluice_proxy_header_rejected_total{reason}`). No request was read, so nothing is
/// counted in `sluice_events_rejected_total`; a plaintext connection is answered
/// `400` with [`ProxyReject::code`] before the close, a TLS one is just closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyReject {
    /// A trusted balancer's connection did not begin with a valid header of the
    /// listener's versions.
    Invalid,
    /// A client outside `proxy_trusted_cidrs` began with a PROXY header: a spoofing attempt.
    UntrustedSource,
    /// A trusted balancer's connection sent no whole header within `header_timeout_ms`.
    Timeout,
}

impl ProxyReject {
    pub const ALL: [ProxyReject; 3] = [ProxyReject::Invalid, ProxyReject::UntrustedSource, ProxyReject::Timeout];
    pub const COUNT: usize = ProxyReject::ALL.len();

    pub fn index(self) -> usize {
        self as usize
    }

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyReject::Invalid => "invalid",
            ProxyReject::UntrustedSource => "untrusted_source",
            ProxyReject::Timeout => "timeout",
        }
    }

    /// The `error.code` a plaintext connection is answered with.
    pub fn code(self) -> &'static str {
        match self {
            ProxyReject::Invalid | ProxyReject::Timeout => "proxy_header_invalid",
            ProxyReject::UntrustedSource => "proxy_header_not_allowed",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            ProxyReject::Invalid => "a trusted load balancer's connection must begin with a valid PROXY protocol header",
            ProxyReject::UntrustedSource => "a PROXY protocol header is accepted only from the load balancers in proxy_trusted_cidrs",
            ProxyReject::Timeout => "no whole PROXY protocol header arrived within ingest.header_timeout_ms",
        }
    }
}

/// Every final status sluice sends (the ones `http::reason` names, without the interim
/// 100), in label order. Anything else lands in the slot after them, labelled `other`.
pub const STATUSES: [u16; 20] = [200, 201, 202, 204, 400, 401, 403, 404, 405, 408, 409, 413, 415, 416, 422, 429, 431, 500, 503, 505];
/// Counter slots per path: one per known status and one for `other`.
pub const STATUS_SLOTS: usize = STATUSES.len() + 1;
/// The `other` slot.
pub const STATUS_SLOT_OTHER: usize = STATUSES.len();

/// The counter slot of `status`: its position in [`STATUSES`], or [`STATUS_SLOT_OTHER`].
pub fn status_slot(status: u16) -> usize {
    match status {
        200 => 0,
        201 => 1,
        202 => 2,
        204 => 3,
        400 => 4,
        401 => 5,
        403 => 6,
        404 => 7,
        405 => 8,
        408 => 9,
        409 => 10,
        413 => 11,
        415 => 12,
        416 => 13,
        422 => 14,
        429 => 15,
        431 => 16,
        500 => 17,
        503 => 18,
        505 => 19,
        _ => STATUS_SLOT_OTHER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_classify_into_the_closed_set() {
        let cases: [(&[u8], PathLabel); 10] = [
            (b"/v1/events", PathLabel::Events),
            (b"/v1/events/batch", PathLabel::EventsBatch),
            (b"/v1/webhooks", PathLabel::Webhooks),
            (b"/v1/webhooks/stripe", PathLabel::Webhooks),
            (b"/healthz", PathLabel::Healthz),
            (b"/readyz", PathLabel::Readyz),
            (b"/v1/events/", PathLabel::Other),
            (b"/v1/webhooksx", PathLabel::Other),
            (b"/", PathLabel::Other),
            (b"", PathLabel::Other),
        ];
        for (path, label) in cases {
            assert_eq!(PathLabel::of(path), label, "{}", String::from_utf8_lossy(path));
        }
        for (index, label) in PathLabel::ALL.iter().enumerate() {
            assert_eq!(label.index(), index);
        }
    }

    #[test]
    fn status_slots_match_the_status_list_and_the_reason_table() {
        for (index, status) in STATUSES.iter().enumerate() {
            assert_eq!(status_slot(*status), index, "{status}");
            assert_ne!(crate::http::reason(*status), "Unknown", "{status} is counted but has no reason phrase");
        }
        for status in 101..=599u16 {
            if crate::http::reason(status) != "Unknown" {
                assert!(STATUSES.contains(&status), "sluice can send {status} but it has no counter slot");
            } else {
                assert_eq!(status_slot(status), STATUS_SLOT_OTHER, "{status}");
            }
        }
    }

    #[test]
    fn proxy_labels_are_indexed_in_order_and_their_codes_are_new() {
        for (index, label) in ProxyHeaderLabel::ALL.iter().enumerate() {
            assert_eq!(label.index(), index);
        }
        for (index, reason) in ProxyReject::ALL.iter().enumerate() {
            assert_eq!(reason.index(), index);
            assert!(Reject::ALL.iter().all(|other| other.code() != reason.code()), "{} is also an event code", reason.code());
            assert!(reason.code().starts_with("proxy_header_") && !reason.message().is_empty());
        }
    }
}
