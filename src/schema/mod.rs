//! Schemas (SPEC §9): the registry on disk (`registry.rs`), what a schema may be before
//! it is compiled (`bounds.rs`), compatibility between versions (`compat.rs`), versions
//! (`version.rs`), and the compiled set shards check events against ([`Schemas`]).
//!
//! Shards never compile: the admin thread compiles every version once when the registry
//! changes and publishes a new [`Schemas`] through a `Swap`, which each shard picks up
//! at the top of its loop, with its connections untouched.

#![forbid(unsafe_code)]

pub mod bounds;
pub mod compat;
pub mod registry;
pub mod tape;
pub mod version;

use std::collections::HashMap;

use serde_json::Value;

use crate::constants::SCHEMA_PATTERN_BYTES_MAX;
use registry::{MajorState, Registry};
use version::SchemaVersion;

/// Compiles one schema: offline (a reference to another document fails to compile, and
/// `bounds::check` refused it before), patterns on the linear-time `regex` engine,
/// `format` asserted.
pub fn compile(schema: &Value) -> Result<jsonschema::Validator<tape::Tape>, String> {
    let patterns = jsonschema::PatternOptions::regex().size_limit(SCHEMA_PATTERN_BYTES_MAX).dfa_size_limit(SCHEMA_PATTERN_BYTES_MAX);
    jsonschema::options_for::<tape::Tape>()
        .offline()
        .should_validate_formats(true)
        .with_pattern_options(patterns)
        .build(schema)
        .map_err(|error| format!("the schema does not compile: {}", error.to_string().lines().next().unwrap_or("")))
}

/// Why an event was refused by its schema. The text names places in the document and
/// the schema, never a value from the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaRefusal {
    /// `schema_version` is not a registered version (422 `schema_version_unknown`).
    VersionUnknown,
    /// Its major is registered but its flag is off (422 `schema_major_not_enabled`).
    MajorNotEnabled(u32),
    /// Its major was retired (422 `schema_major_retired`).
    MajorRetired(u32),
    /// The event breaks the schema (422 `schema_violation`).
    Violation(String),
}

/// An event that passed its schema: the version it was checked against, and, while
/// dual-write is on for its major, the older major whose event must come right before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passed {
    pub version: SchemaVersion,
    pub pair_major: Option<u32>,
}

struct CompiledVersion {
    version: SchemaVersion,
    state: MajorState,
    validator: jsonschema::Validator<tape::Tape>,
}

/// One event type's compiled versions, oldest first.
pub struct CompiledSubject {
    versions: Vec<CompiledVersion>,
    /// Index of the newest version whose major is on: events without `schema_version`.
    latest: Option<usize>,
    /// Dual-write in force: `(newer major, older major)`.
    dual: Option<(u32, u32)>,
}

/// Every compiled subject, by event type; what shards check events against.
#[derive(Default)]
pub struct Schemas {
    subjects: HashMap<Box<[u8]>, CompiledSubject>,
}

impl Schemas {
    /// Compiles every version of `registry` (each was checked when registered).
    pub fn build(registry: &Registry) -> Result<Schemas, String> {
        let mut subjects = HashMap::new();
        for (event_type, subject) in registry.subjects() {
            let mut versions = Vec::with_capacity(subject.versions.len());
            for registered in &subject.versions {
                let validator = compile(&registered.schema).map_err(|error| format!("{event_type} {}: {error}", registered.version))?;
                versions.push(CompiledVersion {
                    version: registered.version,
                    state: subject.major_state(registered.version.major),
                    validator,
                });
            }
            let latest = versions.iter().rposition(|compiled| compiled.state == MajorState::On);
            let dual = dual_write(subject);
            if !versions.is_empty() {
                subjects.insert(Box::from(event_type.as_bytes()), CompiledSubject { versions, latest, dual });
            }
        }
        Ok(Schemas { subjects })
    }

    pub fn subject(&self, event_type: &[u8]) -> Option<&CompiledSubject> {
        self.subjects.get(event_type)
    }

    pub fn is_empty(&self) -> bool {
        self.subjects.is_empty()
    }
}

/// The pair of majors dual-write holds to: the newest enabled major and the enabled
/// one before it, when the subject asks for dual-write.
fn dual_write(subject: &registry::Subject) -> Option<(u32, u32)> {
    if !subject.settings.dual_write {
        return None;
    }
    let mut on: Vec<u32> = subject
        .versions
        .iter()
        .map(|registered| registered.version.major)
        .filter(|major| subject.major_state(*major) == MajorState::On)
        .collect();
    on.dedup();
    match on.as_slice() {
        [.., older, newer] => Some((*newer, *older)),
        _ => None,
    }
}

impl CompiledSubject {
    /// Checks `event` against the version it names (`schema_version`), or the newest
    /// enabled one when it names none.
    pub fn judge(&self, schema_version: Option<&str>, event: tape::TapeNode<'_>) -> Result<Passed, SchemaRefusal> {
        let index = match schema_version {
            Some(text) => {
                let wanted = SchemaVersion::parse(text.as_bytes()).ok_or(SchemaRefusal::VersionUnknown)?;
                self.versions.iter().position(|compiled| compiled.version == wanted).ok_or(SchemaRefusal::VersionUnknown)?
            }
            None => self.latest.ok_or(SchemaRefusal::VersionUnknown)?,
        };
        let compiled = &self.versions[index];
        match compiled.state {
            MajorState::On => {}
            MajorState::Off => return Err(SchemaRefusal::MajorNotEnabled(compiled.version.major)),
            MajorState::Retired => return Err(SchemaRefusal::MajorRetired(compiled.version.major)),
        }
        if let Err(error) = compiled.validator.validate(event) {
            return Err(SchemaRefusal::Violation(describe_violation(&error)));
        }
        let pair_major = self.dual.filter(|(newer, _)| *newer == compiled.version.major).map(|(_, older)| older);
        Ok(Passed { version: compiled.version, pair_major })
    }
}

/// `"/payload/bet: fails type (schema /properties/payload/properties/bet/type)"`: where
/// and which keyword, never the offending value (it may be personal data).
fn describe_violation(error: &jsonschema::ValidationError<'_>) -> String {
    let at = error.instance_path().as_str();
    let at = if at.is_empty() { "the event" } else { at };
    format!("{at}: fails {} (schema {})", error.kind().keyword(), error.schema_path().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn registry_with(versions: &[(&str, Value)]) -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let mut registry = Registry::open(dir.path()).unwrap();
        for (version, schema) in versions {
            registry.add("bet", registry::parse_version(version).unwrap(), schema.clone(), 1, Some(compat::Mode::None)).unwrap();
        }
        (dir, registry)
    }

    #[test]
    fn an_event_is_checked_against_its_version_or_the_latest_enabled() {
        let v1 = json!({"properties":{"payload":{"properties":{"bet":{"type":"number"}}}}});
        let v2 = json!({"properties":{"payload":{"required":["stake"]}}});
        let (_dir, registry) = registry_with(&[("1.0.0", v1), ("2.0.0", v2)]);
        let schemas = Schemas::build(&registry).unwrap();
        let subject = schemas.subject(b"bet").unwrap();
        let good = json!({"payload":{"bet":1.5}});
        assert_eq!(tape::with_value(&good, |event| subject.judge(None, event)).unwrap().version.to_string(), "1.0.0");
        assert_eq!(tape::with_value(&good, |event| subject.judge(Some("2.0.0"), event)).unwrap_err(), SchemaRefusal::MajorNotEnabled(2));
        assert_eq!(tape::with_value(&good, |event| subject.judge(Some("1.9.0"), event)).unwrap_err(), SchemaRefusal::VersionUnknown);
        let secret = json!({"payload":{"bet":"card 4111111111111111"}});
        let SchemaRefusal::Violation(text) = tape::with_value(&secret, |event| subject.judge(Some("1.0.0"), event)).unwrap_err() else {
            panic!()
        };
        assert_eq!(text, "/payload/bet: fails type (schema /properties/payload/properties/bet/type)");
        assert!(!text.contains("4111"));
    }

    #[test]
    fn patterns_match_in_linear_time() {
        let (_dir, registry) = registry_with(&[("1.0.0", json!({"properties":{"s":{"pattern":"^(a+)+$"}}}))]);
        let schemas = Schemas::build(&registry).unwrap();
        let hostile = json!({"s": format!("{}!", "a".repeat(100_000))});
        let started = std::time::Instant::now();
        assert!(tape::with_value(&hostile, |event| schemas.subject(b"bet").unwrap().judge(None, event)).is_err());
        // A backtracking engine takes longer than the age of the universe here.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
