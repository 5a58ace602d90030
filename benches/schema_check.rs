//! The schema check of one event (SPEC §9, issue 15 target: ≤ 1 µs for a typical
//! 500 B event with a compiled schema).
//!
//! A registry in a temp dir holds one schema for `bet` shaped like a real envelope
//! schema (required envelope fields, typed payload with bounds, an enum, a pattern and a
//! closed `key` object); `Schemas::build` compiles it once, as the admin thread does.
//! The check reads the event through the envelope validator's simd-json tape
//! (`schema::tape`), so the shard parses an event once. Timed separately:
//! - `check`: `CompiledSubject::judge` on the parsed event (the compiled check);
//! - `envelope_only` and `envelope_and_check`: the envelope validator alone, and with the
//!   check run on its tape, which is what the shard pays per event (their difference is
//!   the schema's cost);
//! - `rules_judge`: the whole `policy::Rules::judge` (two policies, the schema, no gate).
//!
//! Reproduce: `cargo bench --bench schema_check`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use sluice::constants::BODY_BYTES_MAX_DEFAULT;
use sluice::ingest::envelope::Validator;
use sluice::policy::{FieldPath, Policy, Rules};
use sluice::schema::Schemas;
use sluice::schema::compat::Mode;
use sluice::schema::registry::{Registry, parse_version};
use sluice::schema::tape::TapeNode;
use sluice_test_support::bench_inputs;

/// Size of the typical event of the target.
const EVENT_BYTES: usize = 500;

fn bet_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["event_id", "event_type", "occurred_at", "key", "payload"],
        "properties": {
            "event_id": {"type": "string", "maxLength": 128},
            "event_type": {"const": "bet"},
            "schema_version": {"type": "string"},
            "occurred_at": {"type": "string", "format": "date-time"},
            "key": {"type": "object", "required": ["user_id"], "additionalProperties": false,
                    "properties": {"user_id": {"type": "string", "pattern": "^u_[0-9]+$"}}},
            "ctx": {"type": "object", "properties": {"platform": {"enum": ["ios", "android", "web"]}, "geo": {"type": "string", "minLength": 2, "maxLength": 2}}},
            "payload": {"type": "object", "required": ["game_id", "bet", "currency"],
                        "properties": {"game_id": {"type": "string"}, "bet": {"type": "number", "minimum": 0, "maximum": 100000},
                                       "win": {"type": "number", "minimum": 0}, "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                                       "provider": {"type": "string"}, "note": {"type": "string"}}}
        }
    })
}

fn bench_schema_check(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut registry = Registry::open(dir.path()).expect("registry");
    registry.add("bet", parse_version("1.3.0").expect("version"), bet_schema(), 0, Some(Mode::None)).expect("register");
    let schemas = Schemas::build(&registry).expect("compile");
    let body = bench_inputs::event("e_01HF3Z8Z7Q8Q2K", EVENT_BYTES);
    let subject = schemas.subject(b"bet").expect("subject");
    let mut bytes = body.clone();
    let tape = simd_json::to_tape(&mut bytes).expect("the bench event is JSON");
    let root = TapeNode::root(&tape.0).expect("a document");
    assert!(subject.judge(Some("1.3.0"), root).is_ok(), "the bench event passes its schema");

    let mut group = c.benchmark_group("schema_check");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("check_500B", |b| b.iter(|| black_box(subject.judge(Some("1.3.0"), black_box(root)).is_ok())));
    let mut validator = Validator::new(BODY_BYTES_MAX_DEFAULT);
    group.bench_function("envelope_only_500B", |b| b.iter(|| black_box(validator.validate(black_box(&body)).is_ok())));
    group.bench_function("envelope_and_check_500B", |b| {
        b.iter(|| black_box(validator.validate_with(black_box(&body), |_, root| subject.judge(Some("1.3.0"), root).is_ok()).is_ok()))
    });
    let policy = |name: &str| Policy {
        name: Box::from(name),
        event_types: vec![Box::from("bet")],
        blocked_fields: vec![FieldPath::parse("payload.card_number").expect("path"), FieldPath::parse("payload.ssn").expect("path")],
        required_fields: vec![FieldPath::parse("payload.bet").expect("path")],
        geo_allow: vec![Box::from("TR"), Box::from("DE")],
        ..Policy::default()
    };
    let rules = Rules { policies: vec![policy("pii"), policy("geo")], schemas: Schemas::build(&registry).expect("compile"), gates: None };
    group.bench_function("rules_judge_500B", |b| b.iter(|| black_box(rules.judge(b"bet", "events", "acme", black_box(root)).is_ok())));
    group.finish();
}

criterion_group!(benches, bench_schema_check);
criterion_main!(benches);
