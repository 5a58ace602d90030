//! Every refusal the ingest listener answers with, in one table: its status, its
//! `error.code`, whether it asks the client to retry (`Retry-After`), and how it is
//! counted. Answer builders (`answer.rs`) take a [`Refusal`]; no status number appears
//! anywhere else on the data path.

use crate::http::{HttpError, Status};
use crate::ingest::envelope::EnvelopeError;
use crate::metrics::ProxyReject;
use crate::perimeter::hmac::AuthError;
use crate::perimeter::jwt::JwtError;

/// Why an answer is not a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An event (or a request refused whole) not stored; counted in
    /// `sluice_events_rejected_total{reason}`.
    Event(Reject),
    /// The request could not be framed; the connection closes after the answer.
    Framing(HttpError),
    /// A plaintext connection began wrongly for its listener's PROXY protocol setting.
    Proxy(ProxyReject),
    /// No such endpoint.
    NotFound,
    /// The endpoint exists, but not for this method.
    MethodNotAllowed,
    /// `/readyz` while starting, draining, stalled or refusing writes.
    NotReady,
    /// A request head or body did not arrive within its timeout.
    RequestTimeout,
    /// A batch with no event in it.
    BatchEmpty,
}

impl Refusal {
    pub fn status(self) -> Status {
        match self {
            Refusal::Event(reason) => reason.status(),
            Refusal::Framing(error) => error.http_status(),
            Refusal::Proxy(_) | Refusal::BatchEmpty => Status::BadRequest,
            Refusal::NotFound => Status::NotFound,
            Refusal::MethodNotAllowed => Status::MethodNotAllowed,
            Refusal::NotReady => Status::ServiceUnavailable,
            Refusal::RequestTimeout => Status::RequestTimeout,
        }
    }

    /// The `error.code` of the answer.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Event(reason) => reason.code(),
            Refusal::Framing(error) => error.code(),
            Refusal::Proxy(reason) => reason.code(),
            Refusal::NotFound => "not_found",
            Refusal::MethodNotAllowed => "method_not_allowed",
            Refusal::NotReady => "not_ready",
            Refusal::RequestTimeout => "request_timeout",
            Refusal::BatchEmpty => "batch_empty",
        }
    }

    /// The default `error.message`; callers with more to say pass their own.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Event(_) => "the event was not stored",
            Refusal::Framing(error) => error.message(),
            Refusal::Proxy(reason) => reason.message(),
            Refusal::NotFound => "no such endpoint",
            Refusal::MethodNotAllowed => "method not allowed on this path",
            Refusal::NotReady => "starting, draining, a shard stalled, or storage refusing writes",
            Refusal::RequestTimeout => "the request was not received in time",
            Refusal::BatchEmpty => "the batch holds no events",
        }
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
    EventTypeNotRouted,
    TopicNotFound,
    SubscriptionNotFound,
    TopicNotAllowed,
    ParameterInvalid,
    OffsetOutOfRange,
    SubscriptionConflict,
    NoFreePartitions,
    StreamNotOwner,
    CursorInvalid,
    BodyInvalid,
    TooManySubscriptions,
    PartitionNotFound,
    SchemaViolation,
    SchemaVersionUnknown,
    SchemaMajorNotEnabled,
    SchemaMajorRetired,
    SchemaNotRegistered,
    BlockedField,
    RequiredFieldMissing,
    GeoNotAllowed,
    KycGate,
    RgGate,
    DualWritePairMissing,
    ReplayNotApproved,
    ReplayNotInRunbook,
    ReplayTargetInvalid,
    RateLimited,
}

impl Reject {
    /// The status of an answer that refuses a whole request for this reason (a batch
    /// line refused for it is a `rejected` result inside a `200`).
    pub const fn status(self) -> Status {
        match self {
            Reject::UnsupportedMediaType => Status::UnsupportedMediaType,
            Reject::BatchTooLarge => Status::ContentTooLarge,
            Reject::SignatureMissing
            | Reject::KeyUnknown
            | Reject::KeyNotValid
            | Reject::TimestampInvalid
            | Reject::TimestampOutOfWindow
            | Reject::SignatureInvalid
            | Reject::AlgorithmNotAllowed
            | Reject::TokenInvalid
            | Reject::TokenMissing
            | Reject::TokenTooLarge
            | Reject::TokenMalformed
            | Reject::TokenAlgorithmNotAllowed
            | Reject::TokenIssuerUnknown
            | Reject::TokenKeyUnknown
            | Reject::TokenSignatureInvalid
            | Reject::TokenClaimMissing
            | Reject::TokenExpired
            | Reject::TokenNotYetValid
            | Reject::TokenIssuedInFuture
            | Reject::TokenAudienceMismatch => Status::Unauthorized,
            Reject::EventTypeNotAllowed | Reject::IpNotAllowed | Reject::ClientCertificateRequired | Reject::PartnerMismatch => {
                Status::Forbidden
            }
            Reject::BodyTooLarge => Status::ContentTooLarge,
            Reject::Utf8Invalid
            | Reject::JsonInvalid
            | Reject::JsonTooDeep
            | Reject::JsonDuplicateKey
            | Reject::NotAnObject
            | Reject::FieldMissing
            | Reject::FieldType
            | Reject::EventIdInvalid
            | Reject::EventTypeInvalid
            | Reject::OccurredAtInvalid
            | Reject::UserIdInvalid
            | Reject::FieldReserved
            | Reject::RequestIdInvalid => Status::BadRequest,
            Reject::RequestIdConflict | Reject::RequestInProgress => Status::Conflict,
            Reject::EventTypeNotRouted => Status::UnprocessableContent,
            Reject::TopicNotFound => Status::NotFound,
            Reject::SubscriptionNotFound => Status::NotFound,
            Reject::TopicNotAllowed => Status::Forbidden,
            Reject::ParameterInvalid => Status::BadRequest,
            Reject::OffsetOutOfRange => Status::RangeNotSatisfiable,
            Reject::SubscriptionConflict => Status::Conflict,
            Reject::NoFreePartitions => Status::Conflict,
            Reject::StreamNotOwner => Status::Conflict,
            Reject::CursorInvalid => Status::BadRequest,
            Reject::BodyInvalid => Status::BadRequest,
            Reject::TooManySubscriptions => Status::Conflict,
            Reject::PartitionNotFound => Status::NotFound,
            Reject::StorageUnavailable | Reject::Overloaded => Status::ServiceUnavailable,
            Reject::SchemaViolation
            | Reject::SchemaVersionUnknown
            | Reject::SchemaMajorNotEnabled
            | Reject::SchemaMajorRetired
            | Reject::SchemaNotRegistered
            | Reject::BlockedField
            | Reject::RequiredFieldMissing
            | Reject::DualWritePairMissing => Status::UnprocessableContent,
            Reject::GeoNotAllowed | Reject::KycGate | Reject::RgGate | Reject::ReplayNotApproved | Reject::ReplayNotInRunbook => {
                Status::Forbidden
            }
            Reject::ReplayTargetInvalid => Status::UnprocessableContent,
            Reject::RateLimited => Status::TooManyRequests,
        }
    }

    /// Every reason, in index order.
    pub const ALL: [Reject; 72] = [
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
        Reject::EventTypeNotRouted,
        Reject::TopicNotFound,
        Reject::SubscriptionNotFound,
        Reject::TopicNotAllowed,
        Reject::ParameterInvalid,
        Reject::OffsetOutOfRange,
        Reject::SubscriptionConflict,
        Reject::NoFreePartitions,
        Reject::StreamNotOwner,
        Reject::CursorInvalid,
        Reject::BodyInvalid,
        Reject::TooManySubscriptions,
        Reject::PartitionNotFound,
        Reject::SchemaViolation,
        Reject::SchemaVersionUnknown,
        Reject::SchemaMajorNotEnabled,
        Reject::SchemaMajorRetired,
        Reject::SchemaNotRegistered,
        Reject::BlockedField,
        Reject::RequiredFieldMissing,
        Reject::GeoNotAllowed,
        Reject::KycGate,
        Reject::RgGate,
        Reject::DualWritePairMissing,
        Reject::ReplayNotApproved,
        Reject::ReplayNotInRunbook,
        Reject::ReplayTargetInvalid,
        Reject::RateLimited,
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
            Reject::EventTypeNotRouted => "event_type_not_routed",
            Reject::TopicNotFound => "topic_not_found",
            Reject::SubscriptionNotFound => "subscription_not_found",
            Reject::TopicNotAllowed => "topic_not_allowed",
            Reject::ParameterInvalid => "parameter_invalid",
            Reject::OffsetOutOfRange => "offset_out_of_range",
            Reject::SubscriptionConflict => "subscription_conflict",
            Reject::NoFreePartitions => "no_free_partitions",
            Reject::StreamNotOwner => "stream_not_owner",
            Reject::CursorInvalid => "cursor_invalid",
            Reject::BodyInvalid => "body_invalid",
            Reject::TooManySubscriptions => "too_many_subscriptions",
            Reject::PartitionNotFound => "partition_not_found",
            governance => governance.governance_code(),
        }
    }

    /// The codes of schemas, policies, gates and replays (SPEC §9).
    fn governance_code(self) -> &'static str {
        match self {
            Reject::SchemaViolation => "schema_violation",
            Reject::SchemaVersionUnknown => "schema_version_unknown",
            Reject::SchemaMajorNotEnabled => "schema_major_not_enabled",
            Reject::SchemaMajorRetired => "schema_major_retired",
            Reject::SchemaNotRegistered => "schema_not_registered",
            Reject::BlockedField => "blocked_field",
            Reject::RequiredFieldMissing => "required_field_missing",
            Reject::GeoNotAllowed => "geo_not_allowed",
            Reject::KycGate => "kyc_gate",
            Reject::RgGate => "rg_gate",
            Reject::DualWritePairMissing => "dual_write_pair_missing",
            Reject::ReplayNotApproved => "replay_not_approved",
            Reject::ReplayNotInRunbook => "replay_not_in_runbook",
            Reject::ReplayTargetInvalid => "replay_target_invalid",
            Reject::RateLimited => "rate_limited",
            other => unreachable!("{other:?} has its code in Reject::code"),
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

    /// Every refusal, in the order docs/API.md lists them.
    fn all_refusals() -> Vec<Refusal> {
        let mut all: Vec<Refusal> = Reject::ALL.iter().map(|reason| Refusal::Event(*reason)).collect();
        all.extend(HttpError::ALL.map(Refusal::Framing));
        all.extend(ProxyReject::ALL.map(Refusal::Proxy));
        all.extend([Refusal::NotFound, Refusal::MethodNotAllowed, Refusal::NotReady, Refusal::RequestTimeout, Refusal::BatchEmpty]);
        all
    }

    /// docs/API.md lists every error code with its status: the table is checked against
    /// this one, so the contract in the repository cannot drift from the code.
    #[test]
    fn docs_api_lists_every_code_with_its_status() {
        let api = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/API.md")).expect("docs/API.md");
        for refusal in all_refusals() {
            let row = format!("| `{}` | {} |", refusal.code(), refusal.status().code());
            assert!(api.contains(&row), "docs/API.md lacks the row {row}");
        }
    }

    #[test]
    fn every_refusal_is_an_error_status_and_retry_goes_with_503() {
        let mut all: Vec<Refusal> = Reject::ALL.iter().map(|reason| Refusal::Event(*reason)).collect();
        all.extend(ProxyReject::ALL.map(Refusal::Proxy));
        all.extend([Refusal::NotFound, Refusal::MethodNotAllowed, Refusal::NotReady, Refusal::RequestTimeout, Refusal::BatchEmpty]);
        for refusal in all {
            assert!((400..600).contains(&refusal.status().code()), "{refusal:?}");
            assert!(!refusal.message().is_empty());
        }
        assert!(Refusal::Event(Reject::Overloaded).status().asks_retry());
        assert!(!Refusal::Event(Reject::SignatureInvalid).status().asks_retry());
        assert_eq!(Refusal::Event(Reject::EventTypeNotAllowed).status(), 403);
    }
}
