//! Parsing and validation of one event envelope (SPEC §1.2), and the `ingested_at` stamp.
//!
//! The stored event is the producer's raw body with the gateway's stamp inserted before
//! the closing brace: sluice never re-serializes a document. The `event_id` used for
//! dedup is the *decoded* string from the same bytes, and a document with duplicate keys
//! is rejected, so the `event_id` a consumer reads from the stored bytes and the dedup key
//! can never disagree (no `{"event_id":"a","event_id":"b"}` where a reader keeps the
//! first and we kept the last).
//!
//! Depth: simd-json 0.15's tape builder (stage 2) is iterative, with its stack on the heap
//! sized by the structural count, so a deeply nested body cannot overflow the thread's
//! stack; the depth limit is enforced on the finished tape
//! (`validate_survives_depth_of_100_000` guards this if simd-json changes).

mod fields;
mod ndjson;
mod stamp;
mod validator;

use simd_json::{Buffers, Node, Tape};

use crate::constants::{EVENT_ID_BYTES_MAX, EVENT_TYPE_BYTES_MAX, JSON_DEPTH_MAX, USER_ID_BYTES_MAX, VALIDATOR_WARM_BYTES};
use crate::log::partitioner::murmur2;
use crate::platform::time::{RFC3339_MS_LEN, format_rfc3339_ms, parse_rfc3339_ms};

const _: () = assert!(EVENT_ID_BYTES_MAX <= u8::MAX as usize);
// The fixed error messages below quote these limits.
const _: () = assert!(EVENT_ID_BYTES_MAX == 128 && EVENT_TYPE_BYTES_MAX == 64);
const _: () = assert!(USER_ID_BYTES_MAX == 256 && JSON_DEPTH_MAX == 64);

/// A top-level field of the envelope, named in `field_missing` / `field_type` errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    EventId,
    EventType,
    OccurredAt,
    Key,
    UserId,
    SchemaVersion,
    Ctx,
    Payload,
}

impl Field {
    /// The field's path in the document, e.g. `key.user_id`.
    pub fn name(self) -> &'static str {
        match self {
            Field::EventId => "event_id",
            Field::EventType => "event_type",
            Field::OccurredAt => "occurred_at",
            Field::Key => "key",
            Field::UserId => "key.user_id",
            Field::SchemaVersion => "schema_version",
            Field::Ctx => "ctx",
            Field::Payload => "payload",
        }
    }
}

/// Why a body is not a valid envelope. Every variant is answered 400, except
/// `BodyTooLarge` (413), which the HTTP layer normally catches before validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeError {
    BodyTooLarge,
    Utf8Invalid,
    JsonInvalid,
    JsonTooDeep,
    JsonDuplicateKey,
    NotAnObject,
    FieldMissing(Field),
    FieldType(Field),
    EventIdInvalid,
    EventTypeInvalid,
    OccurredAtInvalid,
    UserIdInvalid,
    FieldReserved,
}

impl EnvelopeError {
    /// One error of each code (the field-carrying variants with one example field).
    #[cfg(test)]
    pub(crate) const ONE_OF_EACH: [EnvelopeError; 13] = [
        EnvelopeError::BodyTooLarge,
        EnvelopeError::Utf8Invalid,
        EnvelopeError::JsonInvalid,
        EnvelopeError::JsonTooDeep,
        EnvelopeError::JsonDuplicateKey,
        EnvelopeError::NotAnObject,
        EnvelopeError::FieldMissing(Field::UserId),
        EnvelopeError::FieldType(Field::Ctx),
        EnvelopeError::EventIdInvalid,
        EnvelopeError::EventTypeInvalid,
        EnvelopeError::OccurredAtInvalid,
        EnvelopeError::UserIdInvalid,
        EnvelopeError::FieldReserved,
    ];

    /// The `error.code` of the answer (SPEC §1.3), snake_case.
    pub fn code(&self) -> &'static str {
        match self {
            EnvelopeError::BodyTooLarge => "body_too_large",
            EnvelopeError::Utf8Invalid => "utf8_invalid",
            EnvelopeError::JsonInvalid => "json_invalid",
            EnvelopeError::JsonTooDeep => "json_too_deep",
            EnvelopeError::JsonDuplicateKey => "json_duplicate_key",
            EnvelopeError::NotAnObject => "not_an_object",
            EnvelopeError::FieldMissing(_) => "field_missing",
            EnvelopeError::FieldType(_) => "field_type",
            EnvelopeError::EventIdInvalid => "event_id_invalid",
            EnvelopeError::EventTypeInvalid => "event_type_invalid",
            EnvelopeError::OccurredAtInvalid => "occurred_at_invalid",
            EnvelopeError::UserIdInvalid => "user_id_invalid",
            EnvelopeError::FieldReserved => "field_reserved",
        }
    }

    /// The `error.message` of the answer: fixed text, never echoing producer bytes.
    pub fn message(&self) -> &'static str {
        match self {
            EnvelopeError::BodyTooLarge => "body is larger than body_bytes_max",
            EnvelopeError::Utf8Invalid => "body is not valid UTF-8",
            EnvelopeError::JsonInvalid => "body is not valid JSON",
            EnvelopeError::JsonTooDeep => "JSON nesting is deeper than 64 levels",
            EnvelopeError::JsonDuplicateKey => "an object has the same key twice",
            EnvelopeError::NotAnObject => "body must be a JSON object",
            EnvelopeError::FieldMissing(field) => missing_message(*field),
            EnvelopeError::FieldType(field) => type_message(*field),
            EnvelopeError::EventIdInvalid => "event_id must be 1..128 characters of [A-Za-z0-9_.:-]",
            EnvelopeError::EventTypeInvalid => "event_type must be 1..64 characters of [A-Za-z0-9_.:-]",
            EnvelopeError::OccurredAtInvalid => "occurred_at must be an RFC 3339 date-time",
            EnvelopeError::UserIdInvalid => "key.user_id must be 1..256 bytes",
            EnvelopeError::FieldReserved => "ingested_at, replayed and replay_id are set by the gateway and must not be sent",
        }
    }
}

fn missing_message(field: Field) -> &'static str {
    match field {
        Field::EventId => "required field event_id is missing",
        Field::EventType => "required field event_type is missing",
        Field::OccurredAt => "required field occurred_at is missing",
        Field::Key => "required field key is missing",
        Field::UserId => "required field key.user_id is missing",
        Field::SchemaVersion => "field schema_version is missing",
        Field::Ctx => "field ctx is missing",
        Field::Payload => "field payload is missing",
    }
}

fn type_message(field: Field) -> &'static str {
    match field {
        Field::EventId => "event_id must be a string",
        Field::EventType => "event_type must be a string",
        Field::OccurredAt => "occurred_at must be a string",
        Field::Key => "key must be an object",
        Field::UserId => "key.user_id must be a string",
        Field::SchemaVersion => "schema_version must be a string",
        Field::Ctx => "ctx must be an object",
        Field::Payload => "payload must be an object",
    }
}

impl std::fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl std::error::Error for EnvelopeError {}

/// What the gateway needs from a valid envelope; the body itself is stored as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope {
    event_id: [u8; EVENT_ID_BYTES_MAX],
    event_id_len: u8,
    event_type: [u8; EVENT_TYPE_BYTES_MAX],
    event_type_len: u8,
    /// [`murmur2`] of the decoded `key.user_id` bytes: feed to `partitioner::partition_for`.
    pub user_id_hash: u32,
    /// Index in the body of the top-level object's closing `}`.
    pub close_brace: usize,
    /// `occurred_at` in Unix milliseconds.
    pub occurred_at_ms: i64,
}

impl Envelope {
    /// The decoded `event_id` (escapes resolved): the dedup key. 1..=128 ASCII bytes.
    pub fn event_id(&self) -> &[u8] {
        &self.event_id[..usize::from(self.event_id_len)]
    }

    /// The decoded `event_type`: 1..=64 ASCII bytes of `[A-Za-z0-9_.:-]`; what partner
    /// scopes are checked against.
    pub fn event_type(&self) -> &[u8] {
        &self.event_type[..usize::from(self.event_type_len)]
    }
}

use fields::*;
pub use ndjson::ndjson_lines;
pub use stamp::{STAMP_BYTES, Stamp, stamped_parts, unstamped};
pub use validator::Validator;
use validator::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::BODY_BYTES_MAX_DEFAULT;

    /// The example of SPEC §1.2, verbatim.
    const EXAMPLE: &str = r#"{"event_id":"e_01HF3Z8Z7Q8Q2K","event_type":"bet","schema_version":"1.3.0",
 "occurred_at":"2025-10-24T11:37:21Z","key":{"user_id":"u_12345"},
 "ctx":{"session_id":"s_778","platform":"ios","geo":"TR","device_fp":"fp_4a1"},
 "payload":{"game_id":"slot_wolf","bet":0.5,"win":1.25,"currency":"EUR","provider":"GameCo"}}"#;

    fn validator() -> Validator {
        Validator::new(BODY_BYTES_MAX_DEFAULT)
    }

    /// A valid envelope with `extra` spliced in as further top-level members.
    fn with_members(extra: &str) -> String {
        format!(r#"{{"event_id":"e_1","event_type":"bet","occurred_at":"2025-10-24T11:37:21Z","key":{{"user_id":"u_1"}}{extra}}}"#)
    }

    fn error_of(body: &str) -> EnvelopeError {
        validator().validate(body.as_bytes()).expect_err(body)
    }

    #[test]
    fn the_stamp_is_taken_out_exactly() {
        let stored = br#"{"event_id":"e1","a":"b","ingested_at":"2026-01-01T00:00:00.000Z"}"#;
        assert_eq!(unstamped(stored), br#"{"event_id":"e1","a":"b"}"#);
        assert_eq!(unstamped(b"{\"x\":1}"), b"{\"x\":1}");
    }

    #[test]
    fn ndjson_lines_split_trim_and_stop_past_the_limit() {
        let mut spans = Vec::new();
        let body = b"{\"a\":1}\r\n\n  \t\r\n{\"b\":2}\n{\"c\":3}";
        assert_eq!(ndjson_lines(body, &mut spans, 10), 3);
        let lines: Vec<&[u8]> = spans.iter().map(|span| &body[span.clone()]).collect();
        assert_eq!(lines, [&b"{\"a\":1}"[..], b"{\"b\":2}", b"{\"c\":3}"]);
        assert_eq!(ndjson_lines(b"", &mut spans, 10), 0);
        assert_eq!(ndjson_lines(b"\n\r\n \n", &mut spans, 10), 0);
        assert!(spans.is_empty());
        // A lone \r is part of the line (only \r\n ends one); a trailing newline adds nothing.
        assert_eq!(ndjson_lines(b"x\ry\n", &mut spans, 10), 1);
        assert_eq!(spans, vec![std::ops::Range { start: 0, end: 3 }]);
        let many = b"1\n".repeat(50);
        assert_eq!(ndjson_lines(&many, &mut spans, 3), 4);
        assert_eq!(spans, [0..1, 2..3, 4..5]);
    }

    #[test]
    fn ndjson_lines_match_the_plain_definition_on_random_bodies() {
        let alphabet = b"\n\r \ta{";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut spans = Vec::new();
        for _ in 0..5000 {
            let len = (state % 40) as usize;
            let body: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    alphabet[(state % alphabet.len() as u64) as usize]
                })
                .collect();
            let plain: Vec<&[u8]> = body
                .split(|b| *b == b'\n')
                .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
                .filter(|line| !line.trim_ascii().is_empty())
                .collect();
            let count = ndjson_lines(&body, &mut spans, 1000);
            let fast: Vec<&[u8]> = spans.iter().map(|span| &body[span.clone()]).collect();
            assert_eq!((count, fast), (plain.len(), plain), "{body:?}");
        }
    }

    #[test]
    fn spec_example_is_accepted() {
        let envelope = validator().validate(EXAMPLE.as_bytes()).expect("valid");
        assert_eq!(envelope.event_id(), b"e_01HF3Z8Z7Q8Q2K");
        assert_eq!(envelope.event_type(), b"bet");
        assert_eq!(envelope.close_brace, EXAMPLE.len() - 1);
        assert_eq!(envelope.user_id_hash, murmur2(b"u_12345"));
        assert_eq!(envelope.occurred_at_ms, 1_761_305_841_000);
    }

    #[test]
    fn trailing_and_leading_whitespace_are_allowed() {
        let body = format!(" \n{EXAMPLE} \r\n\t ");
        let envelope = validator().validate(body.as_bytes()).expect("valid");
        assert_eq!(envelope.close_brace, 2 + EXAMPLE.len() - 1);
        assert_eq!(body.as_bytes()[envelope.close_brace], b'}');
    }

    #[test]
    fn escaped_event_id_is_decoded() {
        let body = with_members("").replace(r#""e_1""#, r#""e\u005f1""#);
        assert!(body.contains(r"\u005f"));
        let envelope = validator().validate(body.as_bytes()).expect("valid");
        assert_eq!(envelope.event_id(), b"e_1");
    }

    #[test]
    fn required_fields_missing() {
        let cases = [
            (r#""event_id":"e_1","#, Field::EventId),
            (r#""event_type":"bet","#, Field::EventType),
            (r#""occurred_at":"2025-10-24T11:37:21Z","#, Field::OccurredAt),
            (r#","key":{"user_id":"u_1"}"#, Field::Key),
        ];
        for (member, field) in cases {
            let body = with_members("").replace(member, "");
            assert_eq!(error_of(&body), EnvelopeError::FieldMissing(field), "{body}");
            assert!(EnvelopeError::FieldMissing(field).message().contains(field.name()));
        }
        let body = with_members("").replace(r#""user_id":"u_1""#, r#""tenant":"t""#);
        assert_eq!(error_of(&body), EnvelopeError::FieldMissing(Field::UserId));
    }

    #[test]
    fn wrong_types() {
        let cases = [
            (r#""event_id":"e_1""#, r#""event_id":1"#, Field::EventId),
            (r#""event_type":"bet""#, r#""event_type":null"#, Field::EventType),
            (r#""occurred_at":"2025-10-24T11:37:21Z""#, r#""occurred_at":1761305841"#, Field::OccurredAt),
            (r#""key":{"user_id":"u_1"}"#, r#""key":"u_1""#, Field::Key),
            (r#""user_id":"u_1""#, r#""user_id":12345"#, Field::UserId),
        ];
        for (from, to, field) in cases {
            let body = with_members("").replace(from, to);
            assert_eq!(error_of(&body), EnvelopeError::FieldType(field), "{body}");
        }
        for (extra, field) in [
            (r#","schema_version":1"#, Field::SchemaVersion),
            (r#","ctx":[]"#, Field::Ctx),
            (r#","payload":"x""#, Field::Payload),
            (r#","payload":null"#, Field::Payload),
        ] {
            assert_eq!(error_of(&with_members(extra)), EnvelopeError::FieldType(field), "{extra}");
        }
        let optional = with_members(r#","schema_version":"2","ctx":{},"payload":{"a":[1]},"other":7"#);
        assert!(validator().validate(optional.as_bytes()).is_ok());
    }

    #[test]
    fn field_values_are_checked() {
        let long_id = "e".repeat(129);
        let max_id = "e".repeat(128);
        let long_user = "u".repeat(257);
        let cases = [
            (r#""event_id":"e_1""#, r#""event_id":"""#.to_string(), EnvelopeError::EventIdInvalid),
            (r#""event_id":"e_1""#, r#""event_id":"e 1""#.to_string(), EnvelopeError::EventIdInvalid),
            (r#""event_id":"e_1""#, r#""event_id":"é""#.to_string(), EnvelopeError::EventIdInvalid),
            (r#""event_id":"e_1""#, format!(r#""event_id":"{long_id}""#), EnvelopeError::EventIdInvalid),
            (r#""event_type":"bet""#, r#""event_type":"""#.to_string(), EnvelopeError::EventTypeInvalid),
            (r#""event_type":"bet""#, format!(r#""event_type":"{}""#, "t".repeat(65)), EnvelopeError::EventTypeInvalid),
            (r#""event_type":"bet""#, r#""event_type":"b/t""#.to_string(), EnvelopeError::EventTypeInvalid),
            (r#"11:37:21Z"#, r#"11:37:21""#.to_string(), EnvelopeError::JsonInvalid),
            (r#"2025-10-24T11:37:21Z"#, "2025-02-30T11:37:21Z".to_string(), EnvelopeError::OccurredAtInvalid),
            (r#"2025-10-24T11:37:21Z"#, "yesterday".to_string(), EnvelopeError::OccurredAtInvalid),
            (r#""user_id":"u_1""#, r#""user_id":"""#.to_string(), EnvelopeError::UserIdInvalid),
            (r#""user_id":"u_1""#, format!(r#""user_id":"{long_user}""#), EnvelopeError::UserIdInvalid),
        ];
        for (from, to, expected) in cases {
            let body = with_members("").replace(from, &to);
            assert_eq!(error_of(&body), expected, "{body}");
        }
        let body = with_members("").replace("e_1", &max_id).replace("bet", "a.B-9:_");
        let envelope = validator().validate(body.as_bytes()).expect("limits are inclusive");
        assert_eq!(envelope.event_id(), max_id.as_bytes());
        let body = with_members("").replace("u_1", &"ü".repeat(128));
        assert!(validator().validate(body.as_bytes()).is_ok(), "user_id of 256 bytes");
    }

    #[test]
    fn ingested_at_is_reserved_at_top_level_only() {
        let body = with_members(r#","ingested_at":"2025-10-24T11:37:21.000Z""#);
        assert_eq!(error_of(&body), EnvelopeError::FieldReserved);
        let nested = with_members(r#","payload":{"ingested_at":"x"}"#);
        assert!(validator().validate(nested.as_bytes()).is_ok());
    }

    #[test]
    fn not_an_object_and_invalid_json() {
        for body in ["[]", "\"e_1\"", "42", "null", "[{}]"] {
            assert_eq!(error_of(body), EnvelopeError::NotAnObject, "{body}");
        }
        for body in ["", "   ", "{", "{}}", "{\"a\":1,}", "{'a':1}", "{} {}", "{\"a\":01}", "{\"a\":1}\0"] {
            assert_eq!(error_of(body), EnvelopeError::JsonInvalid, "{body}");
        }
        assert_eq!(error_of("{}"), EnvelopeError::FieldMissing(Field::EventId));
    }

    #[test]
    fn unpaired_surrogate_escapes_are_rejected() {
        for string in [r"\ud800", r"\ud800x", r"\udc00", r"\ud800\ue000", r"\ud800\u0041", r"a\\\ud800"] {
            let body = with_members(&format!(r#","payload":{{"s":"{string}"}}"#));
            assert_eq!(error_of(&body), EnvelopeError::JsonInvalid, "{string}");
        }
        for string in [r"\ud83d\ude00", r"\\ud800", r"\\\\ud800", r#"\u00e9\n\""#, r"\uFFFD"] {
            let body = with_members(&format!(r#","payload":{{"s":"{string}"}}"#));
            assert!(validator().validate(body.as_bytes()).is_ok(), "{string}");
        }
    }

    /// Found by the envelope_validator fuzz target (fuzz/, docs/FUZZING.md): simd-json
    /// accepted a NUL byte after a scalar and skipped what followed it; serde_json and
    /// every other strict parser refuse the document.
    #[test]
    fn nul_byte_after_a_scalar_is_rejected() {
        for member in ["1\0", "0.2\u{0}5", "-2e3\0 ", "true\0junk", "false\0", "null\0\0", "\"a\0\""] {
            let body = with_members(&format!(r#","w":{member}"#));
            assert_eq!(error_of(&body), EnvelopeError::JsonInvalid, "{body:?}");
        }
        assert!(validator().validate(with_members(r#","w":"a\u0000b""#).as_bytes()).is_ok(), "an escaped NUL is fine");
    }

    /// Found by the envelope_validator fuzz target: simd-json's slow path for numbers of
    /// more than 19 significant digits did not check the byte after the number.
    #[test]
    fn long_number_followed_by_junk_is_rejected() {
        let long = "0.5555555555555555555555555";
        for member in [
            format!("{long})ey5"),
            format!("-{long})"),
            format!("{long}.5"),
            format!("{long}e"),
            format!("{long}x"),
            "55555555555555555555.5x".to_owned(),
        ] {
            let body = with_members(&format!(r#","w":{member}"#));
            assert_eq!(error_of(&body), EnvelopeError::JsonInvalid, "{member}");
        }
        for member in [long.to_owned(), format!("-{long}e-7"), "1E+2".to_owned(), "0".to_owned(), "-0.0e0".to_owned()] {
            let body = with_members(&format!(r#","w":[{member} , {member}],"s":"1)x\"2","v":{member}"#));
            assert!(validator().validate(body.as_bytes()).is_ok(), "{body}");
        }
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let mut body = with_members(r#","payload":{"name":"XX"}"#).into_bytes();
        let at = body.windows(2).position(|w| w == b"XX").expect("marker");
        body[at] = 0xc3; // a lead byte followed by 'X'
        assert_eq!(validator().validate(&body), Err(EnvelopeError::Utf8Invalid));
        body[at] = 0xff;
        assert_eq!(validator().validate(&body), Err(EnvelopeError::Utf8Invalid));
    }

    #[test]
    fn duplicate_keys_are_rejected_at_any_depth() {
        let top = with_members("").replace(r#""event_type":"bet""#, r#""event_type":"bet","event_type":"bet""#);
        assert_eq!(error_of(&top), EnvelopeError::JsonDuplicateKey);
        // Decoded comparison: `event\u005fid` is `event_id`.
        let escaped = with_members(r#","event\u005fid":"e_2""#);
        assert_eq!(error_of(&escaped), EnvelopeError::JsonDuplicateKey);
        let nested = with_members(r#","payload":{"a":{"b":[{"c":1,"c":2}]}}"#);
        assert_eq!(error_of(&nested), EnvelopeError::JsonDuplicateKey);
        let in_key = with_members("").replace(r#"{"user_id":"u_1"}"#, r#"{"user_id":"u_1","user_id":"u_2"}"#);
        assert_eq!(error_of(&in_key), EnvelopeError::JsonDuplicateKey);
        // Many keys take the sorting path; the duplicate is the first and the last.
        let mut many: String = (0..40).map(|n| format!(r#""k{n}":{n},"#)).collect();
        many.push_str(r#""k0":0"#);
        assert_eq!(error_of(&with_members(&format!(r#","payload":{{{many}}}"#))), EnvelopeError::JsonDuplicateKey);
        let distinct: String = (0..40).map(|n| format!(r#""k{n}":{{"k{n}":1}}"#)).collect::<Vec<_>>().join(",");
        assert!(validator().validate(with_members(&format!(r#","payload":{{{distinct}}}"#)).as_bytes()).is_ok());
    }

    /// A valid envelope whose deepest value sits at `depth` (the top-level object is 1).
    fn nested(depth: usize) -> String {
        let arrays = depth - 1;
        with_members(&format!(r#","extra":{}{}"#, "[".repeat(arrays), "]".repeat(arrays)))
    }

    #[test]
    fn depth_64_is_accepted_and_65_rejected() {
        assert!(validator().validate(nested(JSON_DEPTH_MAX).as_bytes()).is_ok());
        assert_eq!(error_of(&nested(JSON_DEPTH_MAX + 1)), EnvelopeError::JsonTooDeep);
        let objects = format!(r#","payload":{}1{}"#, r#"{"a":"#.repeat(63), "}".repeat(63));
        assert!(validator().validate(with_members(&objects).as_bytes()).is_ok());
        let objects = format!(r#","payload":{}1{}"#, r#"{"a":"#.repeat(64), "}".repeat(64));
        assert_eq!(error_of(&with_members(&objects)), EnvelopeError::JsonTooDeep);
        // Siblings after a deep branch are back at a shallow depth.
        let siblings = with_members(&format!(r#","x":{}{},"y":{{}}"#, "[".repeat(63), "]".repeat(63)));
        assert!(validator().validate(siblings.as_bytes()).is_ok());
    }

    #[test]
    fn validate_survives_depth_of_100_000() {
        assert_eq!(error_of(&nested(100_000)), EnvelopeError::JsonTooDeep);
        let unclosed = format!("{{\"a\":{}", "[".repeat(200_000));
        assert_eq!(error_of(&unclosed), EnvelopeError::JsonInvalid);
    }

    #[test]
    fn body_over_limit_is_rejected() {
        let mut small = Validator::new(64);
        assert_eq!(small.validate(EXAMPLE.as_bytes()), Err(EnvelopeError::BodyTooLarge));
    }

    #[test]
    fn stamped_event_is_valid_json_with_ingested_at() {
        let body = format!("{EXAMPLE}\n");
        let mut validator = validator();
        let envelope = validator.validate(body.as_bytes()).expect("valid");
        let stamp = Stamp::new(1_761_305_841_183);
        assert_eq!(stamp.as_bytes(), b",\"ingested_at\":\"2025-10-24T11:37:21.183Z\"");
        let stored: Vec<u8> = stamped_parts(body.as_bytes(), &envelope, &stamp).concat();
        assert_eq!(stored.len(), body.len() + STAMP_BYTES);
        // The stored event is a valid document carrying the gateway's field...
        assert_eq!(validator.validate(&stored), Err(EnvelopeError::FieldReserved));
        let mut copy = stored.clone();
        let value = simd_json::to_borrowed_value(&mut copy).expect("stored event is JSON");
        use simd_json::prelude::*;
        assert_eq!(value.get_str("ingested_at"), Some("2025-10-24T11:37:21.183Z"));
        assert_eq!(value.get_str("event_id"), Some("e_01HF3Z8Z7Q8Q2K"));
    }

    #[test]
    fn error_codes_are_snake_case_and_messages_present() {
        let errors = EnvelopeError::ONE_OF_EACH;
        for error in errors {
            let code = error.code();
            assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()), "{code}");
            assert!(!error.message().is_empty());
            assert!(error.to_string().starts_with(code));
        }
    }

    /// xorshift64*: deterministic bytes for the fuzz loop.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut validator = Validator::new(4096);
        let alphabet = b"{}[]\":,\\ u0123abcdefnrtlsx_-.e+\xc3\xa9\xff\t\n";
        let mut accepted = 0;
        for round in 0..20_000 {
            let mut body = EXAMPLE.as_bytes().to_vec();
            match round % 4 {
                0 => {
                    // Random bytes drawn mostly from JSON's alphabet.
                    body.clear();
                    for _ in 0..rng.below(300) {
                        body.push(alphabet[rng.below(alphabet.len())]);
                    }
                }
                1 => body.truncate(rng.below(body.len() + 1)),
                _ => {
                    for _ in 0..1 + rng.below(4) {
                        let at = rng.below(body.len());
                        body[at] = alphabet[rng.below(alphabet.len())];
                    }
                }
            }
            if let Ok(envelope) = validator.validate(&body) {
                accepted += 1;
                assert_eq!(body[envelope.close_brace], b'}');
                assert!(!envelope.event_id().is_empty());
            }
        }
        assert!(accepted > 0, "some mutations must stay valid");
        assert!(validator.validate(EXAMPLE.as_bytes()).is_ok(), "validator is reusable after errors");
    }
}
