//! The schema registry (SPEC §9): JSON Schemas per `event_type` ("subject"), versioned
//! `MAJOR.MINOR.PATCH`, each subject with a compatibility mode and a flag per major.
//!
//! On disk, under `<data_dir>/schemas/<event_type>/`: one `<version>.json` per version
//! (`{"version","registered_ms","schema"}`) and `subject.json` (mode, major flags,
//! dual-write). Every file is written whole (temporary file, fsync,
//! rename, fsync of the directory), so a crash leaves the old registry or the new one.
//! Only the admin thread writes; shards read the compiled set ([`super::Schemas`]).
//!
//! Versions of one major must pass the subject's mode against the earlier versions of
//! that major. The first version of a new major starts a new stream version of the topic
//! (`<topic>.v<major>`), so it is not held to the old major; it is refused on the ingest
//! path (`schema_major_not_enabled`) until its flag is on (docs/SCHEMAS.md).

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::compat::{self, Incompatibility, Mode};
use super::version::SchemaVersion;
use crate::constants::{EVENT_TYPE_BYTES_MAX, SCHEMA_BYTES_MAX, SCHEMA_SUBJECTS_MAX, SCHEMA_VERSIONS_MAX};

/// The registry's directory under the data dir.
pub const SCHEMAS_DIR: &str = "schemas";
const SUBJECT_FILE: &str = "subject.json";

/// The flag of one major version of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MajorState {
    /// Registered but refused on the ingest path (`schema_major_not_enabled`).
    Off,
    /// Events of this major are accepted, into the stream version of the major.
    On,
    /// No longer accepted (`schema_major_retired`); its stream keeps what it has.
    Retired,
}

/// `subject.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectSettings {
    /// `None`: the mode a policy names for this type, else `backward`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Flags of majors after the first; the lowest registered major is always on unless
    /// retired here.
    #[serde(default)]
    pub majors: BTreeMap<u32, MajorState>,
    /// Dual-write: while the newest enabled major and the one before it are both on, an
    /// event of the newer major must come right after its pair of the older major (the
    /// same `event_id`) in one batch, so consumers of both stream versions see it.
    #[serde(default)]
    pub dual_write: bool,
}

/// One registered version.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    pub version: SchemaVersion,
    pub registered_ms: i64,
    pub schema: Value,
}

/// One event type's schemas, oldest version first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Subject {
    pub settings: SubjectSettings,
    pub versions: Vec<Registered>,
}

impl Subject {
    /// The flag of `major`: the lowest registered major is on unless retired.
    pub fn major_state(&self, major: u32) -> MajorState {
        if let Some(state) = self.settings.majors.get(&major) {
            return *state;
        }
        if self.versions.first().is_some_and(|first| first.version.major == major) { MajorState::On } else { MajorState::Off }
    }

    /// The compatibility mode in force, given the mode a policy names (if any).
    pub fn mode(&self, policy_mode: Option<Mode>) -> Mode {
        self.settings.mode.as_deref().and_then(Mode::parse).or(policy_mode).unwrap_or_default()
    }
}

/// Why the registry refused a request; each maps to one answer of the admin API.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// 400 `schema_invalid`.
    #[error("{0}")]
    Invalid(String),
    /// 409 `schema_incompatible`, with every reason.
    #[error("the schema is not {mode}-compatible: {}", describe(.reasons))]
    Incompatible { mode: &'static str, reasons: Vec<Incompatibility> },
    /// 409 `schema_version_exists`: the version is registered with another schema.
    #[error("version {0} is already registered with a different schema; register a new version")]
    VersionExists(String),
    /// 404 `schema_not_found`.
    #[error("{0}")]
    NotFound(String),
    /// 500: the registry could not be written; nothing changed.
    #[error("the registry could not be written: {0}")]
    Io(#[from] io::Error),
}

impl RegistryError {
    /// The `error.code` of the admin API's answer.
    pub fn code(&self) -> &'static str {
        match self {
            RegistryError::Invalid(_) => "schema_invalid",
            RegistryError::Incompatible { .. } => "schema_incompatible",
            RegistryError::VersionExists(_) => "schema_version_exists",
            RegistryError::NotFound(_) => "schema_not_found",
            RegistryError::Io(_) => "internal_error",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            RegistryError::Invalid(_) => 400,
            RegistryError::Incompatible { .. } | RegistryError::VersionExists(_) => 409,
            RegistryError::NotFound(_) => 404,
            RegistryError::Io(_) => 500,
        }
    }
}

fn describe(reasons: &[Incompatibility]) -> String {
    reasons.iter().map(|reason| format!("{} at {}: {}", reason.rule, reason.path, reason.message)).collect::<Vec<_>>().join("; ")
}

/// What [`Registry::add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// A new version (201).
    Created,
    /// The same version with the same schema was already there (200).
    Unchanged,
}

/// Whether `event_type` is a valid subject name: the envelope's `event_type` rule
/// (1..=64 of `[A-Za-z0-9_.:-]`), and not `.` or `..` (it names a directory).
pub fn valid_event_type(event_type: &str) -> Result<(), RegistryError> {
    let ok = !event_type.is_empty()
        && event_type.len() <= EVENT_TYPE_BYTES_MAX
        && event_type.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
        && event_type != "."
        && event_type != "..";
    if ok { Ok(()) } else { Err(RegistryError::Invalid(format!("{event_type:?} is not an event_type (1..64 of [A-Za-z0-9_.:-])"))) }
}

/// Parses a version argument.
pub fn parse_version(text: &str) -> Result<SchemaVersion, RegistryError> {
    SchemaVersion::parse(text.as_bytes()).ok_or_else(|| RegistryError::Invalid(format!("{text:?} is not a MAJOR.MINOR.PATCH version")))
}

/// Checks a schema document: bounds first, then that it compiles.
pub fn check_document(schema: &Value) -> Result<(), RegistryError> {
    if !matches!(schema, Value::Object(_) | Value::Bool(_)) {
        return Err(RegistryError::Invalid("a schema is a JSON object (or true/false)".to_owned()));
    }
    let bytes = serde_json::to_vec(schema).map_err(|error| RegistryError::Invalid(error.to_string()))?;
    if bytes.len() > SCHEMA_BYTES_MAX {
        return Err(RegistryError::Invalid(format!("the schema is larger than {SCHEMA_BYTES_MAX} bytes")));
    }
    super::bounds::check(schema).map_err(RegistryError::Invalid)?;
    super::compile(schema).map(|_| ()).map_err(RegistryError::Invalid)
}

/// The registry: every subject, as on disk.
#[derive(Debug)]
pub struct Registry {
    dir: PathBuf,
    subjects: BTreeMap<String, Subject>,
}

impl Registry {
    /// Opens (creating) `<data_dir>/schemas` and reads every subject. A file that does not
    /// parse, or a schema that no longer compiles, is an error naming the file: the
    /// registry is configuration, and starting without part of it would let events in
    /// unchecked.
    pub fn open(data_dir: &Path) -> Result<Registry, String> {
        let dir = data_dir.join(SCHEMAS_DIR);
        fs::create_dir_all(&dir).map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
        let mut subjects = BTreeMap::new();
        for entry in read_dir_sorted(&dir)? {
            let Some(name) = entry.file_name().and_then(|name| name.to_str()).map(str::to_owned) else { continue };
            if !entry.is_dir() || valid_event_type(&name).is_err() {
                continue;
            }
            let subject = read_subject(&entry)?;
            if !subject.versions.is_empty() || subject.settings != SubjectSettings::default() {
                subjects.insert(name, subject);
            }
        }
        Ok(Registry { dir, subjects })
    }

    pub fn subjects(&self) -> &BTreeMap<String, Subject> {
        &self.subjects
    }

    pub fn subject(&self, event_type: &str) -> Option<&Subject> {
        self.subjects.get(event_type)
    }

    /// Whether `schema` may be registered as `version` of `event_type` under `mode`
    /// (the subject's mode when `None`), without registering it.
    pub fn check(
        &self,
        event_type: &str,
        version: SchemaVersion,
        schema: &Value,
        policy_mode: Option<Mode>,
    ) -> Result<Added, RegistryError> {
        valid_event_type(event_type)?;
        check_document(schema)?;
        let empty = Subject::default();
        let subject = self.subjects.get(event_type).unwrap_or(&empty);
        if let Some(existing) = subject.versions.iter().find(|registered| registered.version == version) {
            return if existing.schema == *schema { Ok(Added::Unchanged) } else { Err(RegistryError::VersionExists(version.to_string())) };
        }
        if subject.versions.len() >= SCHEMA_VERSIONS_MAX {
            return Err(RegistryError::Invalid(format!("{event_type} already has {SCHEMA_VERSIONS_MAX} versions")));
        }
        if self.subjects.len() >= SCHEMA_SUBJECTS_MAX && subject.versions.is_empty() {
            return Err(RegistryError::Invalid(format!("the registry already has {SCHEMA_SUBJECTS_MAX} event types")));
        }
        let same_major: Vec<&Registered> = subject.versions.iter().filter(|registered| registered.version.major == version.major).collect();
        if let Some(later) = same_major.iter().find(|registered| registered.version > version) {
            return Err(RegistryError::Invalid(format!(
                "{} is registered already: versions of one major are added in increasing order",
                later.version
            )));
        }
        let mode = subject.mode(policy_mode);
        let labels: Vec<String> = same_major.iter().map(|registered| registered.version.to_string()).collect();
        let previous: Vec<(&str, &Value)> =
            labels.iter().map(String::as_str).zip(same_major.iter().map(|registered| &registered.schema)).collect();
        let reasons = compat::check(mode, &previous, schema);
        if !reasons.is_empty() {
            return Err(RegistryError::Incompatible { mode: mode.as_str(), reasons });
        }
        Ok(Added::Created)
    }

    /// Registers `schema` as `version` of `event_type` (after [`Registry::check`]).
    pub fn add(
        &mut self,
        event_type: &str,
        version: SchemaVersion,
        schema: Value,
        now_ms: i64,
        policy_mode: Option<Mode>,
    ) -> Result<Added, RegistryError> {
        if self.check(event_type, version, &schema, policy_mode)? == Added::Unchanged {
            return Ok(Added::Unchanged);
        }
        let registered = Registered { version, registered_ms: now_ms, schema };
        let dir = self.dir.join(event_type);
        fs::create_dir_all(&dir)?;
        let file = serde_json::json!({"version": version.to_string(), "registered_ms": now_ms, "schema": registered.schema});
        write_whole(&dir, &format!("{version}.json"), &file)?;
        let subject = self.subjects.entry(event_type.to_owned()).or_default();
        subject.versions.push(registered);
        subject.versions.sort_by_key(|registered| registered.version);
        Ok(Added::Created)
    }

    /// Deletes `version` of `event_type` (its events stay stored; new ones naming it are
    /// refused as `schema_version_unknown`).
    pub fn delete(&mut self, event_type: &str, version: SchemaVersion) -> Result<(), RegistryError> {
        let subject = self.subjects.get_mut(event_type).ok_or_else(|| RegistryError::NotFound(format!("no schemas for {event_type}")))?;
        let index = subject
            .versions
            .iter()
            .position(|registered| registered.version == version)
            .ok_or_else(|| RegistryError::NotFound(format!("{event_type} has no version {version}")))?;
        fs::remove_file(self.dir.join(event_type).join(format!("{version}.json")))?;
        // Gone from disk: gone from the registry, even if the directory's fsync fails.
        subject.versions.remove(index);
        fs::File::open(self.dir.join(event_type))?.sync_all()?;
        Ok(())
    }

    /// Replaces the settings of `event_type` (mode, major flags, dual-write).
    pub fn set_settings(&mut self, event_type: &str, settings: SubjectSettings) -> Result<(), RegistryError> {
        valid_event_type(event_type)?;
        if let Some(mode) = &settings.mode
            && Mode::parse(mode).is_none()
        {
            return Err(RegistryError::Invalid(format!("{mode:?} is not a compatibility mode")));
        }
        let dir = self.dir.join(event_type);
        fs::create_dir_all(&dir)?;
        let value = serde_json::to_value(&settings).map_err(|error| RegistryError::Invalid(error.to_string()))?;
        write_whole(&dir, SUBJECT_FILE, &value)?;
        self.subjects.entry(event_type.to_owned()).or_default().settings = settings;
        Ok(())
    }
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = fs::read_dir(dir).map_err(|error| format!("cannot read {}: {error}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries.flatten().map(|entry| entry.path()).collect();
    paths.sort();
    Ok(paths)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionFile {
    version: String,
    registered_ms: i64,
    schema: Value,
}

fn read_subject(dir: &Path) -> Result<Subject, String> {
    let mut subject = Subject::default();
    for path in read_dir_sorted(dir)? {
        let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
        let bytes = || fs::read(&path).map_err(|error| format!("cannot read {}: {error}", path.display()));
        if name == SUBJECT_FILE {
            subject.settings = serde_json::from_slice(&bytes()?).map_err(|error| format!("{}: {error}", path.display()))?;
        } else if let Some(stem) = name.strip_suffix(".json") {
            let file: VersionFile = serde_json::from_slice(&bytes()?).map_err(|error| format!("{}: {error}", path.display()))?;
            let version = SchemaVersion::parse(file.version.as_bytes()).filter(|version| version.to_string() == stem);
            let version = version.ok_or_else(|| format!("{}: the version inside does not match the file name", path.display()))?;
            check_document(&file.schema).map_err(|error| format!("{}: {error}", path.display()))?;
            subject.versions.push(Registered { version, registered_ms: file.registered_ms, schema: file.schema });
        }
    }
    subject.versions.sort_by_key(|registered| registered.version);
    Ok(subject)
}

/// Writes `value` as `dir/name`, whole: a reader sees the old file or the new one.
fn write_whole(dir: &Path, name: &str, value: &Value) -> io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    crate::platform::durable::replace_file(&dir.join(name), &dir.join(format!(".{name}.tmp")), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn version(text: &str) -> SchemaVersion {
        SchemaVersion::parse(text.as_bytes()).unwrap()
    }

    fn bet_v1() -> Value {
        json!({"type":"object","properties":{"payload":{"type":"object","properties":{"bet":{"type":"number"}},"required":["bet"]}}})
    }

    #[test]
    fn adds_survives_reopen_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let mut registry = Registry::open(dir.path()).unwrap();
        assert_eq!(registry.add("bet", version("1.0.0"), bet_v1(), 5, None).unwrap(), Added::Created);
        assert_eq!(registry.add("bet", version("1.0.0"), bet_v1(), 6, None).unwrap(), Added::Unchanged);
        let reopened = Registry::open(dir.path()).unwrap();
        let subject = reopened.subject("bet").unwrap();
        assert_eq!(subject.versions.len(), 1);
        assert_eq!(subject.versions[0].registered_ms, 5);
        assert_eq!(subject.major_state(1), MajorState::On);
        assert_eq!(subject.major_state(2), MajorState::Off);
    }

    #[test]
    fn a_different_schema_under_a_registered_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut registry = Registry::open(dir.path()).unwrap();
        registry.add("bet", version("1.0.0"), bet_v1(), 5, None).unwrap();
        let error = registry.add("bet", version("1.0.0"), json!({"type":"object"}), 6, None).unwrap_err();
        assert_eq!(error.code(), "schema_version_exists");
    }

    #[test]
    fn an_incompatible_minor_is_refused_and_a_new_major_is_not_held_to_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut registry = Registry::open(dir.path()).unwrap();
        registry.add("bet", version("1.0.0"), bet_v1(), 5, None).unwrap();
        let narrowed =
            json!({"type":"object","properties":{"payload":{"type":"object","properties":{"bet":{"type":"integer"}},"required":["bet"]}}});
        let error = registry.add("bet", version("1.1.0"), narrowed.clone(), 6, None).unwrap_err();
        assert_eq!((error.code(), error.status()), ("schema_incompatible", 409));
        assert!(error.to_string().contains("/properties/payload/properties/bet"), "{error}");
        assert_eq!(registry.add("bet", version("2.0.0"), narrowed, 7, None).unwrap(), Added::Created);
        let none = Registry::open(dir.path()).unwrap().subject("bet").unwrap().versions.len();
        assert_eq!(none, 2);
    }

    #[test]
    fn versions_of_a_major_go_up_and_deletes_are_durable() {
        let dir = tempfile::tempdir().unwrap();
        let mut registry = Registry::open(dir.path()).unwrap();
        registry.add("bet", version("1.2.0"), bet_v1(), 5, None).unwrap();
        assert_eq!(registry.add("bet", version("1.1.0"), bet_v1(), 5, None).unwrap_err().code(), "schema_invalid");
        registry.delete("bet", version("1.2.0")).unwrap();
        assert_eq!(registry.delete("bet", version("1.2.0")).unwrap_err().code(), "schema_not_found");
        assert!(Registry::open(dir.path()).unwrap().subject("bet").is_none_or(|subject| subject.versions.is_empty()));
    }

    #[test]
    fn bad_documents_and_names_are_invalid_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let mut registry = Registry::open(dir.path()).unwrap();
        let remote = registry.add("bet", version("1.0.0"), json!({"$ref":"http://x/y.json"}), 1, None).unwrap_err();
        assert!(remote.to_string().contains("only local"), "{remote}");
        let broken = registry.add("bet", version("1.0.0"), json!({"type": 12}), 1, None).unwrap_err();
        assert_eq!(broken.code(), "schema_invalid");
        assert_eq!(registry.add("../x", version("1.0.0"), bet_v1(), 1, None).unwrap_err().code(), "schema_invalid");
        assert_eq!(registry.add("bet", version("1.0.0"), json!([1]), 1, None).unwrap_err().code(), "schema_invalid");
    }

    #[test]
    fn settings_are_checked_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut registry = Registry::open(dir.path()).unwrap();
        registry.add("bet", version("1.0.0"), bet_v1(), 5, None).unwrap();
        registry.add("bet", version("2.0.0"), json!({"type":"object"}), 6, None).unwrap();
        let mut settings = SubjectSettings { mode: Some("full".to_owned()), ..SubjectSettings::default() };
        settings.majors.insert(2, MajorState::On);
        settings.dual_write = true;
        registry.set_settings("bet", settings.clone()).unwrap();
        assert_eq!(Registry::open(dir.path()).unwrap().subject("bet").unwrap().settings, settings);
        settings.mode = Some("sideways".to_owned());
        assert_eq!(registry.set_settings("bet", settings).unwrap_err().code(), "schema_invalid");
    }
}
