//! The closed label sets of the metrics: request path, answer status and rejection
//! reason. Each is a fixed list indexed by a small integer, so a counter is an array slot
//! and no producer byte ever becomes a label value: cardinality is bounded by the code.

use crate::ingest::envelope::EnvelopeError;
use crate::perimeter::hmac::AuthError;
use crate::perimeter::jwt::JwtError;

/// The path a request is counted under. Unknown paths all count as `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathLabel {
    Events,
    EventsBatch,
    /// `/v1/webhooks` and everything below it (`/v1/webhooks/<source>`).
    Webhooks,
    Healthz,
    Readyz,
    /// Any other path, and requests that could not be framed (no path to trust).
    Other,
}

impl PathLabel {
    /// Every label, in index order.
    pub const ALL: [PathLabel; 6] =
        [PathLabel::Events, PathLabel::EventsBatch, PathLabel::Webhooks, PathLabel::Healthz, PathLabel::Readyz, PathLabel::Other];
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
pub const STATUSES: [u16; 17] = [200, 202, 400, 401, 403, 404, 405, 408, 409, 413, 415, 422, 429, 431, 500, 503, 505];
/// Counter slots per path: one per known status and one for `other`.
pub const STATUS_SLOTS: usize = STATUSES.len() + 1;
/// The `other` slot.
pub const STATUS_SLOT_OTHER: usize = STATUSES.len();

/// The counter slot of `status`: its position in [`STATUSES`], or [`STATUS_SLOT_OTHER`].
pub fn status_slot(status: u16) -> usize {
    match status {
        200 => 0,
        202 => 1,
        400 => 2,
        401 => 3,
        403 => 4,
        404 => 5,
        405 => 6,
        408 => 7,
        409 => 8,
        413 => 9,
        415 => 10,
        422 => 11,
        429 => 12,
        431 => 13,
        500 => 14,
        503 => 15,
        505 => 16,
        _ => STATUS_SLOT_OTHER,
    }
}

/// Why an event was not stored: the `error.code` the producer was sent (SPEC §1.3).
/// Built from the typed errors of each layer, so the label is always the code sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    UnsupportedMediaType,
    BatchTooLarge,
    SignatureMissing,
    KeyUnknown,
    KeyNotValid,
    TimestampInvalid,
    TimestampOutOfWindow,
    SignatureInvalid,
    BodyTooLarge,
    Utf8Invalid,
    JsonInvalid,
    JsonTooDeep,
    JsonDuplicateKey,
    NotAnObject,
    FieldMissing,
    FieldType,
    EventIdInvalid,
    EventTypeInvalid,
    OccurredAtInvalid,
    UserIdInvalid,
    FieldReserved,
    StorageUnavailable,
    Overloaded,
    AlgorithmNotAllowed,
    EventTypeNotAllowed,
    IpNotAllowed,
    ClientCertificateRequired,
    PartnerMismatch,
    RequestIdInvalid,
    RequestIdConflict,
    RequestInProgress,
    TokenInvalid,
    TokenMissing,
    TokenTooLarge,
    TokenMalformed,
    TokenAlgorithmNotAllowed,
    TokenIssuerUnknown,
    TokenKeyUnknown,
    TokenSignatureInvalid,
    TokenClaimMissing,
    TokenExpired,
    TokenNotYetValid,
    TokenIssuedInFuture,
    TokenAudienceMismatch,
}

impl Reject {
    /// Every reason, in index order.
    pub const ALL: [Reject; 44] = [
        Reject::UnsupportedMediaType,
        Reject::BatchTooLarge,
        Reject::SignatureMissing,
        Reject::KeyUnknown,
        Reject::KeyNotValid,
        Reject::TimestampInvalid,
        Reject::TimestampOutOfWindow,
        Reject::SignatureInvalid,
        Reject::BodyTooLarge,
        Reject::Utf8Invalid,
        Reject::JsonInvalid,
        Reject::JsonTooDeep,
        Reject::JsonDuplicateKey,
        Reject::NotAnObject,
        Reject::FieldMissing,
        Reject::FieldType,
        Reject::EventIdInvalid,
        Reject::EventTypeInvalid,
        Reject::OccurredAtInvalid,
        Reject::UserIdInvalid,
        Reject::FieldReserved,
        Reject::StorageUnavailable,
        Reject::Overloaded,
        Reject::AlgorithmNotAllowed,
        Reject::EventTypeNotAllowed,
        Reject::IpNotAllowed,
        Reject::ClientCertificateRequired,
        Reject::PartnerMismatch,
        Reject::RequestIdInvalid,
        Reject::RequestIdConflict,
        Reject::RequestInProgress,
        Reject::TokenInvalid,
        Reject::TokenMissing,
        Reject::TokenTooLarge,
        Reject::TokenMalformed,
        Reject::TokenAlgorithmNotAllowed,
        Reject::TokenIssuerUnknown,
        Reject::TokenKeyUnknown,
        Reject::TokenSignatureInvalid,
        Reject::TokenClaimMissing,
        Reject::TokenExpired,
        Reject::TokenNotYetValid,
        Reject::TokenIssuedInFuture,
        Reject::TokenAudienceMismatch,
    ];
    pub const COUNT: usize = Reject::ALL.len();

    pub fn index(self) -> usize {
        self as usize
    }

    /// The `error.code` of the answer, and the `reason` label value. Auth and envelope
    /// codes are taken from their error types, so the two cannot drift apart.
    pub fn code(self) -> &'static str {
        use crate::ingest::envelope::Field;
        match self {
            Reject::UnsupportedMediaType => "unsupported_media_type",
            Reject::BatchTooLarge => "batch_too_large",
            Reject::SignatureMissing => AuthError::SignatureMissing.code(),
            Reject::KeyUnknown => AuthError::KeyUnknown.code(),
            Reject::KeyNotValid => AuthError::KeyNotValid.code(),
            Reject::TimestampInvalid => AuthError::TimestampInvalid.code(),
            Reject::TimestampOutOfWindow => AuthError::TimestampOutOfWindow.code(),
            Reject::SignatureInvalid => AuthError::SignatureInvalid.code(),
            Reject::BodyTooLarge => EnvelopeError::BodyTooLarge.code(),
            Reject::Utf8Invalid => EnvelopeError::Utf8Invalid.code(),
            Reject::JsonInvalid => EnvelopeError::JsonInvalid.code(),
            Reject::JsonTooDeep => EnvelopeError::JsonTooDeep.code(),
            Reject::JsonDuplicateKey => EnvelopeError::JsonDuplicateKey.code(),
            Reject::NotAnObject => EnvelopeError::NotAnObject.code(),
            Reject::FieldMissing => EnvelopeError::FieldMissing(Field::EventId).code(),
            Reject::FieldType => EnvelopeError::FieldType(Field::EventId).code(),
            Reject::EventIdInvalid => EnvelopeError::EventIdInvalid.code(),
            Reject::EventTypeInvalid => EnvelopeError::EventTypeInvalid.code(),
            Reject::OccurredAtInvalid => EnvelopeError::OccurredAtInvalid.code(),
            Reject::UserIdInvalid => EnvelopeError::UserIdInvalid.code(),
            Reject::FieldReserved => EnvelopeError::FieldReserved.code(),
            Reject::StorageUnavailable => "storage_unavailable",
            Reject::Overloaded => "overloaded",
            Reject::AlgorithmNotAllowed => "algorithm_not_allowed",
            Reject::EventTypeNotAllowed => "event_type_not_allowed",
            Reject::IpNotAllowed => "ip_not_allowed",
            Reject::ClientCertificateRequired => "client_certificate_required",
            Reject::PartnerMismatch => "partner_mismatch",
            Reject::RequestIdInvalid => "request_id_invalid",
            Reject::RequestIdConflict => "request_id_conflict",
            Reject::RequestInProgress => "request_in_progress",
            Reject::TokenInvalid => "token_invalid",
            Reject::TokenMissing => JwtError::Missing.code(),
            Reject::TokenTooLarge => JwtError::TooLarge.code(),
            Reject::TokenMalformed => JwtError::Malformed.code(),
            Reject::TokenAlgorithmNotAllowed => JwtError::AlgorithmNotAllowed.code(),
            Reject::TokenIssuerUnknown => JwtError::IssuerUnknown.code(),
            Reject::TokenKeyUnknown => JwtError::KeyUnknown.code(),
            Reject::TokenSignatureInvalid => JwtError::SignatureInvalid.code(),
            Reject::TokenClaimMissing => JwtError::ClaimMissing.code(),
            Reject::TokenExpired => JwtError::Expired.code(),
            Reject::TokenNotYetValid => JwtError::NotYetValid.code(),
            Reject::TokenIssuedInFuture => JwtError::IssuedInFuture.code(),
            Reject::TokenAudienceMismatch => JwtError::AudienceMismatch.code(),
        }
    }
}

impl From<AuthError> for Reject {
    fn from(error: AuthError) -> Reject {
        match error {
            AuthError::SignatureMissing => Reject::SignatureMissing,
            AuthError::KeyUnknown => Reject::KeyUnknown,
            AuthError::KeyNotValid => Reject::KeyNotValid,
            AuthError::TimestampInvalid => Reject::TimestampInvalid,
            AuthError::TimestampOutOfWindow => Reject::TimestampOutOfWindow,
            AuthError::SignatureInvalid => Reject::SignatureInvalid,
        }
    }
}

impl From<JwtError> for Reject {
    fn from(error: JwtError) -> Reject {
        match error {
            JwtError::Missing => Reject::TokenMissing,
            JwtError::TooLarge => Reject::TokenTooLarge,
            JwtError::Malformed => Reject::TokenMalformed,
            JwtError::AlgorithmNotAllowed => Reject::TokenAlgorithmNotAllowed,
            JwtError::IssuerUnknown => Reject::TokenIssuerUnknown,
            JwtError::KeyUnknown => Reject::TokenKeyUnknown,
            JwtError::SignatureInvalid => Reject::TokenSignatureInvalid,
            JwtError::ClaimMissing => Reject::TokenClaimMissing,
            JwtError::Expired => Reject::TokenExpired,
            JwtError::NotYetValid => Reject::TokenNotYetValid,
            JwtError::IssuedInFuture => Reject::TokenIssuedInFuture,
            JwtError::AudienceMismatch => Reject::TokenAudienceMismatch,
        }
    }
}

impl From<EnvelopeError> for Reject {
    fn from(error: EnvelopeError) -> Reject {
        match error {
            EnvelopeError::BodyTooLarge => Reject::BodyTooLarge,
            EnvelopeError::Utf8Invalid => Reject::Utf8Invalid,
            EnvelopeError::JsonInvalid => Reject::JsonInvalid,
            EnvelopeError::JsonTooDeep => Reject::JsonTooDeep,
            EnvelopeError::JsonDuplicateKey => Reject::JsonDuplicateKey,
            EnvelopeError::NotAnObject => Reject::NotAnObject,
            EnvelopeError::FieldMissing(_) => Reject::FieldMissing,
            EnvelopeError::FieldType(_) => Reject::FieldType,
            EnvelopeError::EventIdInvalid => Reject::EventIdInvalid,
            EnvelopeError::EventTypeInvalid => Reject::EventTypeInvalid,
            EnvelopeError::OccurredAtInvalid => Reject::OccurredAtInvalid,
            EnvelopeError::UserIdInvalid => Reject::UserIdInvalid,
            EnvelopeError::FieldReserved => Reject::FieldReserved,
        }
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

    #[test]
    fn reject_codes_are_the_codes_each_layer_sends() {
        let auth = AuthError::ALL;
        for error in auth {
            assert_eq!(Reject::from(error).code(), error.code());
        }
        let envelope = EnvelopeError::ONE_OF_EACH;
        for error in envelope {
            assert_eq!(Reject::from(error).code(), error.code());
        }
        for (index, reason) in Reject::ALL.iter().enumerate() {
            assert_eq!(reason.index(), index);
            assert!(reason.code().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{}", reason.code());
            assert_eq!(Reject::ALL.iter().filter(|other| other.code() == reason.code()).count(), 1, "{}", reason.code());
        }
    }
}
