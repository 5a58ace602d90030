//! Structural compatibility of JSON Schemas, judged the way Confluent Schema Registry
//! judges JSON Schema subjects (docs/SCHEMAS.md, "Compatibility").
//!
//! Everything follows from one relation, `reads(reader, writer)`: every document valid
//! under `writer` is also valid under `reader`. Backward is `reads(candidate, previous)`,
//! forward `reads(previous, candidate)`, full both. The walk compares the two schemas
//! keyword by keyword and reports, with a path into the schema, each place where the
//! reader is narrower than the writer. It never validates documents and never resolves
//! `$ref`: what it cannot compare structurally it accepts only when unchanged.
//!
//! The walk is bounded (depth, nodes compared, incompatibilities kept), so a hostile
//! schema costs at most [`SCHEMA_NODES_MAX`] steps per version compared.

use std::collections::HashSet;
use std::fmt;

use serde_json::{Map, Value};

/// Most incompatibilities [`check`] returns; the walk stops when it has this many, so a
/// full list means there may be more. An operator fixes the first few and asks again.
pub const INCOMPATIBILITIES_MAX: usize = 32;
/// Deepest schema nesting compared (root = 1). Real event schemas nest 3 to 6 levels;
/// a subschema below this that differs is reported as `too_deep`, an equal one passes.
pub const SCHEMA_DEPTH_MAX: usize = 32;
/// Schema nodes (and enum or list entries) compared per pair of schemas: a schema of a
/// few hundred properties takes under a thousand; beyond this the pair is `too_large`.
pub const SCHEMA_NODES_MAX: usize = 10_000;
/// Longest value or property name quoted in a message, in bytes: enough to recognise
/// it, short enough that a hostile enum value cannot bloat an error answer.
pub const QUOTED_BYTES_MAX: usize = 64;

const _: () = assert!(INCOMPATIBILITIES_MAX > 0 && SCHEMA_DEPTH_MAX > 0);
const _: () = assert!(SCHEMA_NODES_MAX >= SCHEMA_DEPTH_MAX);

/// The stable rule ids of [`Incompatibility::rule`].
pub mod rule {
    /// The reader allows fewer JSON types than the writer (`integer` reads no `number`).
    pub const TYPE_NARROWED: &str = "type_narrowed";
    /// A property the writer may send is refused by the reader's closed content model.
    pub const PROPERTY_REMOVED_FROM_CLOSED_MODEL: &str = "property_removed_from_closed_model";
    /// The reader constrains a property the writer's open content model may send as anything.
    pub const PROPERTY_ADDED_TO_OPEN_MODEL: &str = "property_added_to_open_model";
    /// The reader requires a property the writer does not.
    pub const REQUIRED_ADDED: &str = "required_added";
    /// The reader refuses extra properties the writer allows.
    pub const CONTENT_MODEL_CLOSED: &str = "content_model_closed";
    /// The reader's `enum`/`const` lacks a value the writer allows.
    pub const ENUM_NARROWED: &str = "enum_narrowed";
    /// A numeric, length, size, `pattern`, `format` or `uniqueItems` bound is narrower.
    pub const BOUND_NARROWED: &str = "bound_narrowed";
    /// A keyword that cannot be compared structurally changed.
    pub const CANNOT_JUDGE: &str = "cannot_judge";
    /// The schemas differ below [`super::SCHEMA_DEPTH_MAX`].
    pub const TOO_DEEP: &str = "too_deep";
    /// Comparing the schemas took more than [`super::SCHEMA_NODES_MAX`] steps.
    pub const TOO_LARGE: &str = "too_large";
    /// A keyword holds a value of the wrong JSON type, or a schema is not an object or boolean.
    pub const INVALID_SCHEMA: &str = "invalid_schema";

    /// Every rule id, in the order docs/SCHEMAS.md lists them.
    pub const ALL: [&str; 11] = [
        TYPE_NARROWED,
        PROPERTY_REMOVED_FROM_CLOSED_MODEL,
        PROPERTY_ADDED_TO_OPEN_MODEL,
        REQUIRED_ADDED,
        CONTENT_MODEL_CLOSED,
        ENUM_NARROWED,
        BOUND_NARROWED,
        CANNOT_JUDGE,
        TOO_DEEP,
        TOO_LARGE,
        INVALID_SCHEMA,
    ];
}

/// A subject's compatibility mode, as Confluent Schema Registry names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The candidate reads documents written under the last version.
    #[default]
    Backward,
    /// The last version reads documents written under the candidate.
    Forward,
    /// Both backward and forward against the last version.
    Full,
    /// No check: every candidate is accepted.
    None,
    /// Backward against every version.
    BackwardTransitive,
    /// Forward against every version.
    ForwardTransitive,
    /// Full against every version.
    FullTransitive,
}

impl Mode {
    const ALL: [Mode; 7] =
        [Mode::Backward, Mode::Forward, Mode::Full, Mode::None, Mode::BackwardTransitive, Mode::ForwardTransitive, Mode::FullTransitive];

    /// The mode named `s`, in any ASCII case: `backward`, `BACKWARD_TRANSITIVE`, ...
    pub fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|mode| mode.as_str().eq_ignore_ascii_case(s))
    }

    /// The lower-case snake_case name [`Mode::parse`] accepts.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Backward => "backward",
            Mode::Forward => "forward",
            Mode::Full => "full",
            Mode::None => "none",
            Mode::BackwardTransitive => "backward_transitive",
            Mode::ForwardTransitive => "forward_transitive",
            Mode::FullTransitive => "full_transitive",
        }
    }

    /// Whether the candidate is compared with every previous version, not only the last.
    pub fn is_transitive(self) -> bool {
        matches!(self, Mode::BackwardTransitive | Mode::ForwardTransitive | Mode::FullTransitive)
    }

    fn is_backward(self) -> bool {
        matches!(self, Mode::Backward | Mode::Full | Mode::BackwardTransitive | Mode::FullTransitive)
    }

    fn is_forward(self) -> bool {
        matches!(self, Mode::Forward | Mode::Full | Mode::ForwardTransitive | Mode::FullTransitive)
    }
}

/// One reason a change is incompatible: a JSON-pointer-like path into the schema (e.g.
/// "/properties/payload/properties/amount") and a human sentence naming the rule (e.g.
/// "type narrowed from number to integer").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// An RFC 6901 pointer into the schemas compared, relative to their root: `""` is the
    /// root itself; `~` and `/` in property names are escaped as `~0` and `~1`.
    pub path: String,
    /// One of [`rule::ALL`]; stable, for programs to match on.
    pub rule: &'static str,
    /// For people: what narrowed, and which version it conflicts with.
    pub message: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() { "/" } else { &self.path };
        write!(f, "{} at {path}: {}", self.rule, self.message)
    }
}

/// `previous`: the subject's existing schemas, oldest first, each with its version.
/// Returns every incompatibility (at most [`INCOMPATIBILITIES_MAX`]) of `candidate` under
/// `mode`; empty = compatible. Non-transitive modes compare only with the last of
/// `previous`; transitive ones with every one, oldest first. Each message names the
/// version it conflicts with. Work is bounded by [`SCHEMA_NODES_MAX`] per version and
/// direction compared.
pub fn check(mode: Mode, previous: &[(&str, &Value)], candidate: &Value) -> Vec<Incompatibility> {
    let mut found = Vec::new();
    let against = match (mode.is_transitive(), previous.split_last()) {
        (true, _) => previous,
        (false, Some((last, _))) => std::slice::from_ref(last),
        (false, None) => &[],
    };
    for &(version, schema) in against {
        if mode.is_backward() {
            Walk::new(version, Direction::Backward, &mut found).reads(candidate, schema);
        }
        if mode.is_forward() {
            Walk::new(version, Direction::Forward, &mut found).reads(schema, candidate);
        }
        if found.len() >= INCOMPATIBILITIES_MAX {
            break;
        }
    }
    found
}

/// Which of the two schemas is the candidate: it names them in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// The candidate reads, the previous version writes.
    Backward,
    /// The previous version reads, the candidate writes.
    Forward,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Reader,
    Writer,
}

/// JSON types as bits; `number` is `INTEGER | FRACTION`, so `integer ⊂ number` is a
/// plain subset test.
mod types {
    pub const NULL: u8 = 1;
    pub const BOOLEAN: u8 = 1 << 1;
    pub const OBJECT: u8 = 1 << 2;
    pub const ARRAY: u8 = 1 << 3;
    pub const STRING: u8 = 1 << 4;
    pub const INTEGER: u8 = 1 << 5;
    /// Numbers with a fractional part: what `number` allows and `integer` does not.
    pub const FRACTION: u8 = 1 << 6;
    pub const NUMBER: u8 = INTEGER | FRACTION;
    pub const ANY: u8 = NULL | BOOLEAN | OBJECT | ARRAY | STRING | NUMBER;
}

/// Containers of subschemas that only `$ref` reaches. `$ref` is not resolved, so an
/// unchanged `$ref` is only safe while what it points at is unchanged too.
const DEFINITIONS: [&str; 2] = ["$defs", "definitions"];

/// Keywords that only annotate: a schema made of these alone accepts every document.
const ANNOTATIONS: [&str; 14] = [
    "$schema",
    "$id",
    "$anchor",
    "$dynamicAnchor",
    "$comment",
    "$defs",
    "definitions",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// Keywords whose effect depends on more than the schema node they sit in (references,
/// combinators, conditionals, keyword interplay): accepted only when unchanged.
const UNJUDGED: [&str; 19] = [
    "$ref",
    "$dynamicRef",
    "$recursiveRef",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "dependentSchemas",
    "dependentRequired",
    "dependencies",
    "patternProperties",
    "propertyNames",
    "contains",
    "minContains",
    "maxContains",
    "additionalItems",
];

/// Whether `schema` accepts every JSON document.
fn accepts_anything(schema: &Value) -> bool {
    match schema {
        Value::Bool(accepts) => *accepts,
        Value::Object(keywords) => keywords.keys().all(|keyword| ANNOTATIONS.contains(&keyword.as_str())),
        _ => false,
    }
}

/// What an object schema does with properties it does not list.
#[derive(Debug, Clone, Copy)]
enum Extra<'s> {
    /// `additionalProperties` absent, `true` or `{}`.
    Open,
    /// `additionalProperties: false`, or `unevaluatedProperties: false` without it.
    Closed,
    /// `additionalProperties` is a schema the extra properties must match.
    Schema(&'s Value),
}

fn extra_of(schema: &Map<String, Value>) -> Extra<'_> {
    match schema.get("additionalProperties") {
        Some(Value::Bool(false)) => Extra::Closed,
        Some(additional) if !accepts_anything(additional) => Extra::Schema(additional),
        _ if schema.get("unevaluatedProperties") == Some(&Value::Bool(false)) => Extra::Closed,
        _ => Extra::Open,
    }
}

/// One side of a numeric range, kept as a lower bound: an upper bound `x <= m` is stored
/// as `-x >= -m`, so one comparison serves both.
#[derive(Debug, Clone, Copy)]
struct Bound {
    value: f64,
    exclusive: bool,
    keyword: &'static str,
    upper: bool,
}

impl Bound {
    /// The tighter of two bounds on the same side.
    fn tighter(a: Option<Bound>, b: Option<Bound>) -> Option<Bound> {
        match (a, b) {
            (Some(a), Some(b)) if b.value > a.value || (b.value >= a.value && b.exclusive) => Some(b),
            (Some(a), _) => Some(a),
            (None, b) => b,
        }
    }

    /// Whether `reader` excludes a value `writer` allows.
    fn narrower(reader: Option<Bound>, writer: Option<Bound>) -> bool {
        match (reader, writer) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(r), Some(w)) => r.value > w.value || (r.value >= w.value && r.exclusive && !w.exclusive),
        }
    }

    fn describe(bound: Option<Bound>) -> String {
        match bound {
            None => "none".to_owned(),
            Some(Bound { value, exclusive, upper: false, .. }) => format!("{} {value}", if exclusive { ">" } else { ">=" }),
            Some(Bound { value, exclusive, upper: true, .. }) => format!("{} {}", if exclusive { "<" } else { "<=" }, -value),
        }
    }
}

/// The reader's `enum` values, for membership tests without comparing every pair.
/// Numbers compare by value (`1` equals `1.0`), as JSON Schema says.
struct ValueSet<'s> {
    strings: HashSet<&'s str>,
    numbers: Vec<f64>,
    scalars: Vec<&'s Value>,
    composites: Vec<&'s Value>,
}

impl<'s> ValueSet<'s> {
    fn new(values: &[&'s Value]) -> ValueSet<'s> {
        let mut set = ValueSet { strings: HashSet::new(), numbers: Vec::new(), scalars: Vec::new(), composites: Vec::new() };
        for value in values {
            match value {
                Value::String(s) => {
                    set.strings.insert(s.as_str());
                }
                Value::Number(n) => set.numbers.extend(n.as_f64().map(|f| f + 0.0)),
                Value::Null | Value::Bool(_) if !set.scalars.contains(value) => set.scalars.push(value),
                Value::Null | Value::Bool(_) => {}
                Value::Array(_) | Value::Object(_) => set.composites.push(value),
            }
        }
        set.numbers.sort_by(f64::total_cmp);
        set
    }

    /// Whether `value` is in the set, and how many comparisons the answer took.
    fn contains(&self, value: &Value) -> (bool, usize) {
        match value {
            Value::String(s) => (self.strings.contains(s.as_str()), 1),
            // `+ 0.0` turns -0 into 0, which `total_cmp` would otherwise keep apart.
            Value::Number(n) => (n.as_f64().is_some_and(|f| self.numbers.binary_search_by(|x| x.total_cmp(&(f + 0.0))).is_ok()), 1),
            Value::Null | Value::Bool(_) => (self.scalars.contains(&value), 1),
            Value::Array(_) | Value::Object(_) => (self.composites.contains(&value), self.composites.len().max(1)),
        }
    }
}

fn type_of(value: &Value) -> u8 {
    match value {
        Value::Null => types::NULL,
        Value::Bool(_) => types::BOOLEAN,
        Value::Object(_) => types::OBJECT,
        Value::Array(_) => types::ARRAY,
        Value::String(_) => types::STRING,
        Value::Number(n) if n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0) => types::INTEGER,
        Value::Number(_) => types::FRACTION,
    }
}

fn type_named(name: &str) -> Option<u8> {
    Some(match name {
        "null" => types::NULL,
        "boolean" => types::BOOLEAN,
        "object" => types::OBJECT,
        "array" => types::ARRAY,
        "string" => types::STRING,
        "integer" => types::INTEGER,
        "number" => types::NUMBER,
        _ => return None,
    })
}

fn describe_types(set: u8) -> String {
    if set == types::ANY {
        return "any".to_owned();
    }
    let numbers = match set & types::NUMBER {
        types::NUMBER => Some("number"),
        types::INTEGER => Some("integer"),
        types::FRACTION => Some("fractional number"),
        _ => None,
    };
    let names: Vec<&str> =
        [(types::NULL, "null"), (types::BOOLEAN, "boolean"), (types::OBJECT, "object"), (types::ARRAY, "array"), (types::STRING, "string")]
            .into_iter()
            .filter(|(bit, _)| set & bit != 0)
            .map(|(_, name)| name)
            .chain(numbers)
            .collect();
    match names.as_slice() {
        [] => "nothing".to_owned(),
        [one] => (*one).to_owned(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// `text`, or its first [`QUOTED_BYTES_MAX`] bytes (cut at a character boundary) and `…`.
fn cut(text: &str) -> String {
    if text.len() <= QUOTED_BYTES_MAX {
        return text.to_owned();
    }
    let end = (0..=QUOTED_BYTES_MAX).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    format!("{}…", &text[..end])
}

/// A property name or pattern, quoted, for a message.
fn quoted(text: &str) -> String {
    format!("\"{}\"", cut(text))
}

/// A JSON value as JSON, for a message.
fn shown(value: &Value) -> String {
    cut(&value.to_string())
}

/// One comparison of a reader schema with a writer schema, adding what it finds to a
/// list shared by every comparison of one [`check`].
struct Walk<'f> {
    found: &'f mut Vec<Incompatibility>,
    reader_name: String,
    writer_name: String,
    direction: Direction,
    /// The previous version's name, whichever side it is on.
    version_name: String,
    /// RFC 6901 pointer of the node being compared.
    path: String,
    depth: usize,
    nodes: usize,
    /// Set when a bound was hit: the list is full or the node budget is spent.
    stopped: bool,
    too_deep_reported: bool,
}

impl<'f> Walk<'f> {
    fn new(version: &str, direction: Direction, found: &'f mut Vec<Incompatibility>) -> Walk<'f> {
        let version = format!("version {version}");
        let candidate = "the candidate".to_owned();
        let (reader_name, writer_name) = match direction {
            Direction::Backward => (candidate, version.clone()),
            Direction::Forward => (version.clone(), candidate),
        };
        let stopped = found.len() >= INCOMPATIBILITIES_MAX;
        Walk {
            found,
            reader_name,
            writer_name,
            direction,
            version_name: version,
            path: String::new(),
            depth: 0,
            nodes: 0,
            stopped,
            too_deep_reported: false,
        }
    }

    fn name(&self, side: Side) -> &str {
        match side {
            Side::Reader => &self.reader_name,
            Side::Writer => &self.writer_name,
        }
    }

    fn report(&mut self, rule: &'static str, message: String) {
        if self.stopped {
            return;
        }
        let found = Incompatibility { path: self.path.clone(), rule, message };
        // Full mode compares both ways; a keyword that cannot be judged says so once.
        if !self.found.contains(&found) {
            self.found.push(found);
        }
        self.stopped = self.found.len() >= INCOMPATIBILITIES_MAX;
    }

    /// "`what` narrowed from `writer_has` in the writer to `reader_has` in the reader".
    fn narrowed(&mut self, rule: &'static str, what: &str, writer_has: &str, reader_has: &str) {
        let message = format!("{what} narrowed from {writer_has} in {} to {reader_has} in {}", self.writer_name, self.reader_name);
        self.report(rule, message);
    }

    fn invalid(&mut self, side: Side, keyword: &str, expected: &str) {
        let message = format!("{keyword} in {} must be {expected}", self.name(side));
        self.at(&[keyword], |walk| walk.report(rule::INVALID_SCHEMA, message));
    }

    fn not_a_schema(&mut self, side: Side) {
        let message = format!("{} has a schema here that is neither an object nor a boolean", self.name(side));
        self.report(rule::INVALID_SCHEMA, message);
    }

    /// Runs `compare` with `segments` appended to the path.
    fn at(&mut self, segments: &[&str], compare: impl FnOnce(&mut Self)) {
        let length = self.path.len();
        for segment in segments {
            self.path.push('/');
            for c in segment.chars() {
                match c {
                    '~' => self.path.push_str("~0"),
                    '/' => self.path.push_str("~1"),
                    c => self.path.push(c),
                }
            }
        }
        compare(self);
        self.path.truncate(length);
    }

    /// Charges `steps` to the node budget; false once it is spent.
    fn spend(&mut self, steps: usize) -> bool {
        self.nodes = self.nodes.saturating_add(steps);
        if self.nodes > SCHEMA_NODES_MAX && !self.stopped {
            let message = format!(
                "comparing with {} took more than {SCHEMA_NODES_MAX} steps; split the schema or use mode none to register anyway",
                self.version_name
            );
            self.report(rule::TOO_LARGE, message);
            self.stopped = true;
        }
        !self.stopped
    }

    /// Reports where `reader` does not read every document valid under `writer`.
    fn reads(&mut self, reader: &Value, writer: &Value) {
        if !self.spend(1) || reader == writer || accepts_anything(reader) || *writer == Value::Bool(false) {
            return;
        }
        if self.depth >= SCHEMA_DEPTH_MAX {
            if !self.too_deep_reported {
                self.too_deep_reported = true;
                let message = format!("the schemas differ below {SCHEMA_DEPTH_MAX} levels of nesting, deeper than the check compares");
                self.report(rule::TOO_DEEP, message);
            }
            return;
        }
        let empty = Map::new();
        let writer = match writer {
            Value::Object(keywords) => keywords,
            Value::Bool(true) => &empty,
            _ => return self.not_a_schema(Side::Writer),
        };
        match reader {
            Value::Object(reader) => {
                self.depth += 1;
                self.compare(reader, writer);
                self.depth -= 1;
            }
            Value::Bool(_) => {
                let message = format!("{} accepts nothing here (schema false)", self.reader_name);
                self.report(rule::TYPE_NARROWED, message);
            }
            _ => self.not_a_schema(Side::Reader),
        }
    }

    fn compare(&mut self, reader: &Map<String, Value>, writer: &Map<String, Value>) {
        let writer_types = self.types(writer, Side::Writer);
        let reader_types = self.types(reader, Side::Reader);
        if writer_types == 0 {
            return; // the writer allows no document at all
        }
        if writer_types & !reader_types != 0 {
            let (from, to) = (describe_types(writer_types), describe_types(reader_types));
            self.narrowed(rule::TYPE_NARROWED, "type", &from, &to);
        }
        self.compare_enum(reader, writer, writer_types);
        let both = writer_types & reader_types;
        if both & types::NUMBER != 0 {
            self.compare_numbers(reader, writer, writer_types);
        }
        if both & types::STRING != 0 {
            self.compare_strings(reader, writer);
        }
        if both & types::ARRAY != 0 {
            self.compare_arrays(reader, writer);
        }
        if both & types::OBJECT != 0 {
            self.compare_objects(reader, writer);
        }
        self.compare_unjudged(reader, writer);
    }

    /// The types `schema` allows: its `type` (absent = any) narrowed by its enum values.
    fn types(&mut self, schema: &Map<String, Value>, side: Side) -> u8 {
        let declared = match schema.get("type") {
            None => types::ANY,
            Some(Value::String(name)) => type_named(name).unwrap_or_else(|| {
                self.invalid(side, "type", "a JSON Schema type name");
                types::ANY
            }),
            Some(Value::Array(names)) => {
                let named: Option<Vec<u8>> = names.iter().map(|name| name.as_str().and_then(type_named)).collect();
                named.map_or_else(
                    || {
                        self.invalid(side, "type", "a list of JSON Schema type names");
                        types::ANY
                    },
                    |bits| bits.into_iter().fold(0, |set, bit| set | bit),
                )
            }
            Some(_) => {
                self.invalid(side, "type", "a type name or a list of them");
                types::ANY
            }
        };
        match self.enum_values(schema, side) {
            Some(values) => declared & values.iter().fold(0, |set, value| set | type_of(value)),
            None => declared,
        }
    }

    /// The values `const` and `enum` allow (`const` is a one-value enum), or `None`.
    fn enum_values<'s>(&mut self, schema: &'s Map<String, Value>, side: Side) -> Option<Vec<&'s Value>> {
        let listed = match schema.get("enum") {
            None => None,
            Some(Value::Array(values)) => Some(values),
            Some(_) => {
                self.invalid(side, "enum", "an array");
                None
            }
        };
        match (schema.get("const"), listed) {
            (Some(only), Some(values)) => Some(values.iter().filter(|value| *value == only).collect()),
            (Some(only), None) => Some(vec![only]),
            (None, Some(values)) => Some(values.iter().collect()),
            (None, None) => None,
        }
    }

    fn compare_enum(&mut self, reader: &Map<String, Value>, writer: &Map<String, Value>, writer_types: u8) {
        let Some(allowed) = self.enum_values(reader, Side::Reader) else { return };
        let keyword = if reader.contains_key("enum") { "enum" } else { "const" };
        // A writer without an enum that allows only null and booleans still lists its values.
        let implied = [(types::NULL, Value::Null), (types::BOOLEAN, Value::Bool(false)), (types::BOOLEAN, Value::Bool(true))];
        let sent = match self.enum_values(writer, Side::Writer) {
            Some(values) => values,
            None if writer_types & !(types::NULL | types::BOOLEAN) == 0 => {
                implied.iter().filter(|(bit, _)| writer_types & bit != 0).map(|(_, value)| value).collect()
            }
            None => {
                let message =
                    format!("{keyword} added in {}: {} allows any {}", self.reader_name, self.writer_name, describe_types(writer_types));
                return self.report(rule::ENUM_NARROWED, message);
            }
        };
        let set = ValueSet::new(&allowed);
        for value in sent {
            let (present, steps) = set.contains(value);
            if !self.spend(steps) {
                return;
            }
            if !present {
                let message =
                    format!("{keyword} narrowed: {} allows {} which {} does not", self.writer_name, shown(value), self.reader_name);
                self.report(rule::ENUM_NARROWED, message);
            }
        }
    }

    fn number(&mut self, schema: &Map<String, Value>, side: Side, keyword: &'static str) -> Option<f64> {
        match schema.get(keyword)? {
            Value::Number(n) => n.as_f64(),
            _ => {
                self.invalid(side, keyword, "a number");
                None
            }
        }
    }

    /// A non-negative integer keyword (`minLength`, `maxItems`, ...).
    fn count(&mut self, schema: &Map<String, Value>, side: Side, keyword: &'static str) -> Option<u64> {
        let value = schema.get(keyword)?;
        let count = value.as_u64().or_else(|| value.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64));
        if count.is_none() {
            self.invalid(side, keyword, "a non-negative integer");
        }
        count
    }

    /// The tighter of `minimum`/`exclusiveMinimum` (or of the maxima when `upper`).
    /// A boolean `exclusiveMinimum` is draft 4's: it makes `minimum` exclusive.
    fn bound(&mut self, schema: &Map<String, Value>, side: Side, upper: bool) -> Option<Bound> {
        let (inclusive, exclusive) = if upper { ("maximum", "exclusiveMaximum") } else { ("minimum", "exclusiveMinimum") };
        let sign = if upper { -1.0 } else { 1.0 };
        let (strict, draft4) = match schema.get(exclusive) {
            None => (None, false),
            Some(Value::Bool(draft4)) => (None, *draft4),
            Some(_) => (self.number(schema, side, exclusive), false),
        };
        let plain =
            self.number(schema, side, inclusive).map(|value| Bound { value: sign * value, exclusive: draft4, keyword: inclusive, upper });
        let strict = strict.map(|value| Bound { value: sign * value, exclusive: true, keyword: exclusive, upper });
        Bound::tighter(plain, strict)
    }

    fn compare_numbers(&mut self, reader: &Map<String, Value>, writer: &Map<String, Value>, writer_types: u8) {
        for upper in [false, true] {
            let (r, w) = (self.bound(reader, Side::Reader, upper), self.bound(writer, Side::Writer, upper));
            if let Some(bound) = r.filter(|_| Bound::narrower(r, w)) {
                let (from, to) = (Bound::describe(w), Bound::describe(r));
                self.narrowed(rule::BOUND_NARROWED, bound.keyword, &from, &to);
            }
        }
        let Some(divisor) = self.number(reader, Side::Reader, "multipleOf") else { return };
        // A writer of integers only sends multiples of 1.
        let integers = (writer_types & types::FRACTION == 0).then_some(1.0);
        let sent = self.number(writer, Side::Writer, "multipleOf").or(integers);
        let divides = sent.is_some_and(|step| {
            let quotient = step / divisor;
            divisor > 0.0 && (quotient - quotient.round()).abs() <= 1e-9 * quotient.abs().max(1.0)
        });
        if !divides {
            let from = sent.map_or_else(|| "none".to_owned(), |step| step.to_string());
            self.narrowed(rule::BOUND_NARROWED, "multipleOf", &from, &divisor.to_string());
        }
    }

    /// `min_keyword` and `max_keyword` of a length or size: the reader's range must hold the writer's.
    fn compare_counts(
        &mut self,
        reader: &Map<String, Value>,
        writer: &Map<String, Value>,
        min_keyword: &'static str,
        max_keyword: &'static str,
    ) {
        let describe = |count: Option<u64>| count.map_or_else(|| "none".to_owned(), |c| c.to_string());
        let (r, w) = (self.count(reader, Side::Reader, min_keyword), self.count(writer, Side::Writer, min_keyword));
        if r.unwrap_or(0) > w.unwrap_or(0) {
            self.narrowed(rule::BOUND_NARROWED, min_keyword, &describe(w), &describe(r));
        }
        let (r, w) = (self.count(reader, Side::Reader, max_keyword), self.count(writer, Side::Writer, max_keyword));
        if r.unwrap_or(u64::MAX) < w.unwrap_or(u64::MAX) {
            self.narrowed(rule::BOUND_NARROWED, max_keyword, &describe(w), &describe(r));
        }
    }

    fn compare_strings(&mut self, reader: &Map<String, Value>, writer: &Map<String, Value>) {
        self.compare_counts(reader, writer, "minLength", "maxLength");
        // Whether one regular expression or format contains another is not decidable
        // here: the reader's must be absent or the writer's, unchanged.
        for keyword in ["pattern", "format"] {
            let Some(required) = reader.get(keyword) else { continue };
            let Some(text) = required.as_str() else {
                self.invalid(Side::Reader, keyword, "a string");
                continue;
            };
            if writer.get(keyword) != Some(required) {
                let from = writer.get(keyword).map_or_else(|| "none".to_owned(), shown);
                self.narrowed(rule::BOUND_NARROWED, keyword, &from, &quoted(text));
            }
        }
    }

    fn compare_arrays(&mut self, reader: &Map<String, Value>, writer: &Map<String, Value>) {
        self.compare_counts(reader, writer, "minItems", "maxItems");
        let unique = |schema: &Map<String, Value>| schema.get("uniqueItems") == Some(&Value::Bool(true));
        if unique(reader) && !unique(writer) {
            self.narrowed(rule::BOUND_NARROWED, "uniqueItems", "false", "true");
        }
        let (r_items, w_items) = (reader.get("items"), writer.get("items"));
        if r_items.is_some_and(Value::is_array) || w_items.is_some_and(Value::is_array) {
            // Draft 4-2019 tuple form: its meaning rests on additionalItems, judged only unchanged.
            if r_items != w_items {
                self.cannot_judge(&["items"]);
            }
            return;
        }
        let r_prefix = self.prefix_items(reader, Side::Reader);
        let w_prefix = self.prefix_items(writer, Side::Writer);
        let any = Value::Bool(true);
        let (r_items, w_items) = (r_items.unwrap_or(&any), w_items.unwrap_or(&any));
        for index in 0..r_prefix.len().max(w_prefix.len()) {
            let r = r_prefix.get(index).unwrap_or(r_items);
            let w = w_prefix.get(index).unwrap_or(w_items);
            self.at(&["prefixItems", &index.to_string()], |walk| walk.reads(r, w));
            if self.stopped {
                return;
            }
        }
        self.at(&["items"], |walk| walk.reads(r_items, w_items));
    }

    fn prefix_items<'s>(&mut self, schema: &'s Map<String, Value>, side: Side) -> &'s [Value] {
        match schema.get("prefixItems") {
            None => &[],
            Some(Value::Array(items)) => items,
            Some(_) => {
                self.invalid(side, "prefixItems", "an array of schemas");
                &[]
            }
        }
    }

    fn properties<'s>(&mut self, schema: &'s Map<String, Value>, side: Side) -> Option<&'s Map<String, Value>> {
        match schema.get("properties")? {
            Value::Object(properties) => Some(properties),
            _ => {
                self.invalid(side, "properties", "an object");
                None
            }
        }
    }

    fn compare_objects(&mut self, reader: &Map<String, Value>, writer: &Map<String, Value>) {
        let empty = Map::new();
        let r_properties = self.properties(reader, Side::Reader).unwrap_or(&empty);
        let w_properties = self.properties(writer, Side::Writer).unwrap_or(&empty);
        let (r_extra, w_extra) = (extra_of(reader), extra_of(writer));
        for (name, w) in w_properties {
            if !self.spend(1) {
                return;
            }
            match r_properties.get(name) {
                Some(r) => self.at(&["properties", name], |walk| walk.reads(r, w)),
                None => self.at(&["properties", name], |walk| walk.property_removed(name, w, r_extra)),
            }
        }
        for (name, r) in r_properties.iter().filter(|(name, _)| !w_properties.contains_key(*name)) {
            if !self.spend(1) {
                return;
            }
            self.at(&["properties", name], |walk| walk.property_added(name, r, w_extra));
        }
        self.compare_extra(r_extra, w_extra);
        self.compare_required(reader, writer);
        self.compare_counts(reader, writer, "minProperties", "maxProperties");
    }

    /// Property `name` the writer lists and the reader does not: the reader's extra rule applies.
    fn property_removed(&mut self, name: &str, writer: &Value, reader_extra: Extra<'_>) {
        match reader_extra {
            Extra::Open => {}
            // A writer property of schema false is never sent.
            Extra::Closed if *writer == Value::Bool(false) => {}
            Extra::Closed => {
                let message = format!(
                    "property {} allowed by {} is refused by the closed content model of {}",
                    quoted(name),
                    self.writer_name,
                    self.reader_name
                );
                self.report(rule::PROPERTY_REMOVED_FROM_CLOSED_MODEL, message);
            }
            Extra::Schema(reader) => self.reads(reader, writer),
        }
    }

    /// Property `name` the reader lists and the writer does not: the writer's extra rule
    /// says what it may have sent under that name.
    fn property_added(&mut self, name: &str, reader: &Value, writer_extra: Extra<'_>) {
        match writer_extra {
            Extra::Closed => {}
            Extra::Open if accepts_anything(reader) => {}
            Extra::Open => {
                let message = format!(
                    "property {} is constrained in {} but {} has an open content model and may send it with any value",
                    quoted(name),
                    self.reader_name,
                    self.writer_name
                );
                self.report(rule::PROPERTY_ADDED_TO_OPEN_MODEL, message);
            }
            Extra::Schema(writer) => self.reads(reader, writer),
        }
    }

    fn compare_extra(&mut self, reader: Extra<'_>, writer: Extra<'_>) {
        let any = Value::Bool(true);
        match (reader, writer) {
            (Extra::Open, _) | (_, Extra::Closed) => {}
            (Extra::Closed, _) => {
                let message = format!(
                    "{} closes the content model (no additional properties) that {} leaves open",
                    self.reader_name, self.writer_name
                );
                self.report(rule::CONTENT_MODEL_CLOSED, message);
            }
            (Extra::Schema(r), Extra::Open) => self.at(&["additionalProperties"], |walk| walk.reads(r, &any)),
            (Extra::Schema(r), Extra::Schema(w)) => self.at(&["additionalProperties"], |walk| walk.reads(r, w)),
        }
    }

    fn required<'s>(&mut self, schema: &'s Map<String, Value>, side: Side) -> Vec<&'s str> {
        let Some(listed) = schema.get("required") else { return Vec::new() };
        match listed.as_array().and_then(|names| names.iter().map(Value::as_str).collect::<Option<Vec<&str>>>()) {
            Some(names) => names,
            None => {
                self.invalid(side, "required", "an array of property names");
                Vec::new()
            }
        }
    }

    fn compare_required(&mut self, reader: &Map<String, Value>, writer: &Map<String, Value>) {
        let required = self.required(reader, Side::Reader);
        let sent: HashSet<&str> = self.required(writer, Side::Writer).into_iter().collect();
        for name in required {
            if !self.spend(1) {
                return;
            }
            if !sent.contains(name) {
                let message = format!("property {} is required by {} but not by {}", quoted(name), self.reader_name, self.writer_name);
                self.report(rule::REQUIRED_ADDED, message);
            }
        }
    }

    /// A definition the candidate adds is fine: only a new or changed `$ref` reaches it,
    /// and those are judged where they are. One it changes or drops may alter what an
    /// unchanged `$ref` means.
    fn compare_definitions(&mut self, keyword: &str, reader: Option<&Value>, writer: Option<&Value>) {
        let (candidate, previous) = match self.direction {
            Direction::Backward => (reader, writer),
            Direction::Forward => (writer, reader),
        };
        let empty = Map::new();
        let (Some(candidate), Some(previous)) =
            (candidate.map_or(Some(&empty), Value::as_object), previous.map_or(Some(&empty), Value::as_object))
        else {
            if reader != writer {
                self.cannot_judge(&[keyword]);
            }
            return;
        };
        for (name, definition) in previous {
            if !self.spend(1) {
                return;
            }
            if candidate.get(name) != Some(definition) {
                self.cannot_judge(&[keyword, name]);
            }
        }
    }

    /// Reports the subschema at `segments` (below the current node) as changed beyond judging.
    fn cannot_judge(&mut self, segments: &[&str]) {
        let message = format!(
            "changes under {} cannot be judged structurally (against {}); use mode none to register anyway",
            cut(&segments.join("/")),
            self.version_name
        );
        self.at(segments, |walk| walk.report(rule::CANNOT_JUDGE, message));
    }

    fn compare_unjudged(&mut self, reader: &Map<String, Value>, writer: &Map<String, Value>) {
        for keyword in UNJUDGED {
            if reader.get(keyword) != writer.get(keyword) {
                self.cannot_judge(&[keyword]);
            }
        }
        for keyword in DEFINITIONS {
            self.compare_definitions(keyword, reader.get(keyword), writer.get(keyword));
        }
        // `unevaluatedProperties: false` closes the content model (compare_extra); any
        // other value depends on every applicator around it.
        let (r, w) = (reader.get("unevaluatedProperties"), writer.get("unevaluatedProperties"));
        let closes = |value: Option<&Value>| value.is_none() || value == Some(&Value::Bool(false));
        if r != w && !(closes(r) && closes(w)) {
            self.cannot_judge(&["unevaluatedProperties"]);
        }
        if reader.get("unevaluatedItems") != writer.get("unevaluatedItems") {
            self.cannot_judge(&["unevaluatedItems"]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The rule ids `check` reports for `candidate` after `previous` (versions 1, 2, ...).
    fn rules(mode: Mode, previous: &[Value], candidate: &Value) -> Vec<&'static str> {
        found(mode, previous, candidate).into_iter().map(|i| i.rule).collect()
    }

    fn found(mode: Mode, previous: &[Value], candidate: &Value) -> Vec<Incompatibility> {
        let versions: Vec<String> = (1..=previous.len()).map(|v| v.to_string()).collect();
        let pairs: Vec<(&str, &Value)> = versions.iter().map(String::as_str).zip(previous.iter()).collect();
        check(mode, &pairs, candidate)
    }

    /// Rules reported backward, forward and full for a change from `old` to `new`.
    fn each_way(old: Value, new: Value) -> [Vec<&'static str>; 3] {
        let previous = [old];
        [Mode::Backward, Mode::Forward, Mode::Full].map(|mode| rules(mode, &previous, &new))
    }

    fn object(properties: Value) -> Value {
        json!({"type": "object", "properties": properties})
    }

    fn closed(properties: Value) -> Value {
        json!({"type": "object", "properties": properties, "additionalProperties": false})
    }

    #[test]
    fn mode_parse_accepts_every_name_in_any_case() {
        for mode in Mode::ALL {
            assert_eq!(Mode::parse(mode.as_str()), Some(mode));
            assert_eq!(Mode::parse(&mode.as_str().to_ascii_uppercase()), Some(mode));
        }
        assert_eq!(Mode::parse("FULL_TRANSITIVE"), Some(Mode::FullTransitive));
    }

    #[test]
    fn mode_parse_refuses_unknown_names() {
        assert_eq!(Mode::parse("sideways"), None);
        assert_eq!(Mode::parse(""), None);
        assert_eq!(Mode::parse("backward-transitive"), None);
    }

    #[test]
    fn mode_default_is_backward() {
        assert_eq!(Mode::default(), Mode::Backward);
    }

    #[test]
    fn mode_transitive_ones_are_the_three_transitive() {
        let transitive: Vec<Mode> = Mode::ALL.into_iter().filter(|m| m.is_transitive()).collect();
        assert_eq!(transitive, [Mode::BackwardTransitive, Mode::ForwardTransitive, Mode::FullTransitive]);
    }

    #[test]
    fn identical_schemas_are_compatible_in_every_mode() {
        let schema = json!({"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/x"}]}}, "$defs": {"x": {"type": "null"}}});
        for mode in Mode::ALL {
            assert!(rules(mode, std::slice::from_ref(&schema), &schema).is_empty(), "{mode:?}");
        }
    }

    #[test]
    fn full_accepts_changes_that_mean_the_same() {
        let pairs = [
            (json!({"type": ["string", "null"]}), json!({"type": ["null", "string"], "description": "reordered"})),
            (json!({"type": "object", "required": ["a", "b"]}), json!({"type": "object", "required": ["b", "a"]})),
            (json!({"enum": ["a", "b"]}), json!({"enum": ["b", "a"]})),
            (json!({"const": 3}), json!({"enum": [3.0]})),
            (json!({"type": "object"}), json!({"type": "object", "additionalProperties": true})),
            (json!({"type": "object", "additionalProperties": {}}), json!({"type": "object"})),
            (json!({"type": "integer"}), json!({"type": "integer", "multipleOf": 1})),
            (json!({"type": "object", "properties": {"a": {}}}), json!({"type": "object"})),
        ];
        for (old, new) in pairs {
            assert!(rules(Mode::Full, std::slice::from_ref(&old), &new).is_empty(), "{old} -> {new}");
        }
    }

    #[test]
    fn mode_none_accepts_anything() {
        let previous = [json!({"type": "string"})];
        assert!(rules(Mode::None, &previous, &json!(false)).is_empty());
        assert!(rules(Mode::None, &previous, &json!({"anyOf": [{"type": "integer"}]})).is_empty());
    }

    #[test]
    fn no_previous_version_is_compatible() {
        for mode in Mode::ALL {
            assert!(check(mode, &[], &json!({"type": "string"})).is_empty());
        }
    }

    #[test]
    fn type_integer_to_number_is_backward_but_not_forward() {
        let [backward, forward, full] = each_way(json!({"type": "integer"}), json!({"type": "number"}));
        assert!(backward.is_empty());
        assert_eq!(forward, [rule::TYPE_NARROWED]);
        assert_eq!(full, [rule::TYPE_NARROWED]);
    }

    #[test]
    fn type_number_to_integer_is_forward_but_not_backward() {
        let [backward, forward, full] = each_way(json!({"type": "number"}), json!({"type": "integer"}));
        assert_eq!(backward, [rule::TYPE_NARROWED]);
        assert!(forward.is_empty());
        assert_eq!(full, [rule::TYPE_NARROWED]);
    }

    #[test]
    fn type_narrowed_message_names_both_types_and_the_version() {
        let found = found(Mode::Backward, &[json!({"type": "number"})], &json!({"type": "integer"}));
        assert_eq!(found[0].path, "");
        assert_eq!(found[0].message, "type narrowed from number in version 1 to integer in the candidate");
    }

    #[test]
    fn type_changed_to_unrelated_type_is_refused_both_ways() {
        let [backward, forward, full] = each_way(json!({"type": "string"}), json!({"type": "boolean"}));
        assert_eq!(backward, [rule::TYPE_NARROWED]);
        assert_eq!(forward, [rule::TYPE_NARROWED]);
        assert_eq!(full, [rule::TYPE_NARROWED, rule::TYPE_NARROWED]);
    }

    #[test]
    fn type_added_where_absent_is_forward_but_not_backward() {
        let [backward, forward, _] = each_way(json!({}), json!({"type": "string"}));
        assert_eq!(backward, [rule::TYPE_NARROWED]);
        assert!(forward.is_empty());
    }

    #[test]
    fn type_list_widened_is_backward_but_not_forward() {
        let [backward, forward, _] = each_way(json!({"type": "string"}), json!({"type": ["string", "null"]}));
        assert!(backward.is_empty());
        assert_eq!(forward, [rule::TYPE_NARROWED]);
    }

    #[test]
    fn true_schema_reads_everything() {
        let [backward, forward, _] = each_way(json!({"type": "string", "minLength": 3}), json!(true));
        assert!(backward.is_empty());
        assert_eq!(forward, [rule::TYPE_NARROWED, rule::BOUND_NARROWED]);
    }

    #[test]
    fn empty_schema_reads_like_true() {
        assert!(rules(Mode::Full, &[json!(true)], &json!({"description": "anything"})).is_empty());
    }

    #[test]
    fn false_schema_reads_only_false() {
        let [backward, forward, _] = each_way(json!({"type": "string"}), json!(false));
        assert_eq!(backward, [rule::TYPE_NARROWED]);
        assert!(forward.is_empty(), "a writer of nothing is read by anything");
        assert!(rules(Mode::Full, &[json!(false)], &json!(false)).is_empty());
    }

    #[test]
    fn nested_type_narrowed_reports_the_property_path() {
        let old = object(json!({"payload": object(json!({"amount": {"type": "number"}}))}));
        let new = object(json!({"payload": object(json!({"amount": {"type": "integer"}}))}));
        let found = found(Mode::Backward, &[old], &new);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "/properties/payload/properties/amount");
        assert_eq!(found[0].rule, rule::TYPE_NARROWED);
    }

    #[test]
    fn property_added_to_open_model_is_forward_but_not_backward() {
        let [backward, forward, full] =
            each_way(object(json!({"a": {"type": "string"}})), object(json!({"a": {"type": "string"}, "b": {"type": "string"}})));
        assert_eq!(backward, [rule::PROPERTY_ADDED_TO_OPEN_MODEL]);
        assert!(forward.is_empty());
        assert_eq!(full, [rule::PROPERTY_ADDED_TO_OPEN_MODEL]);
    }

    #[test]
    fn property_added_to_open_model_with_empty_schema_is_compatible() {
        let [backward, forward, full] = each_way(object(json!({"a": {}})), object(json!({"a": {}, "b": {"title": "anything"}})));
        assert!(backward.is_empty() && forward.is_empty() && full.is_empty());
    }

    #[test]
    fn property_added_to_closed_model_is_backward_but_not_forward() {
        let [backward, forward, full] =
            each_way(closed(json!({"a": {"type": "string"}})), closed(json!({"a": {"type": "string"}, "b": {"type": "string"}})));
        assert!(backward.is_empty());
        assert_eq!(forward, [rule::PROPERTY_REMOVED_FROM_CLOSED_MODEL]);
        assert_eq!(full, [rule::PROPERTY_REMOVED_FROM_CLOSED_MODEL]);
    }

    #[test]
    fn worked_example_optional_currency_in_closed_payload_is_backward() {
        let v1 = object(json!({"payload": closed(json!({"amount": {"type": "number"}}))}));
        let v2 = object(json!({"payload": closed(json!({"amount": {"type": "number"}, "currency": {"type": "string"}}))}));
        assert!(rules(Mode::Backward, std::slice::from_ref(&v1), &v2).is_empty());
        let forward = found(Mode::Forward, &[v1], &v2);
        assert_eq!(forward.len(), 1);
        assert_eq!(forward[0].path, "/properties/payload/properties/currency");
        assert_eq!(forward[0].rule, rule::PROPERTY_REMOVED_FROM_CLOSED_MODEL);
    }

    #[test]
    fn worked_example_currency_added_to_open_payload_is_not_backward() {
        let v1 = object(json!({"payload": object(json!({"amount": {"type": "number"}}))}));
        let v2 = object(json!({"payload": object(json!({"amount": {"type": "number"}, "currency": {"type": "string"}}))}));
        let backward = found(Mode::Backward, std::slice::from_ref(&v1), &v2);
        assert_eq!(backward.len(), 1);
        assert_eq!(backward[0].path, "/properties/payload/properties/currency");
        assert_eq!(backward[0].rule, rule::PROPERTY_ADDED_TO_OPEN_MODEL);
        assert!(rules(Mode::Forward, &[v1], &v2).is_empty());
    }

    #[test]
    fn worked_example_open_payload_closed_with_currency_is_not_backward() {
        let v1 = object(json!({"payload": object(json!({"amount": {"type": "number"}}))}));
        let v2 = object(json!({"payload": closed(json!({"amount": {"type": "number"}, "currency": {"type": "string"}}))}));
        let backward = rules(Mode::Backward, std::slice::from_ref(&v1), &v2);
        assert_eq!(backward, [rule::PROPERTY_ADDED_TO_OPEN_MODEL, rule::CONTENT_MODEL_CLOSED]);
        assert!(rules(Mode::Forward, &[v1], &v2).is_empty());
    }

    #[test]
    fn property_removed_from_closed_model_is_forward_but_not_backward() {
        let [backward, forward, _] = each_way(closed(json!({"a": {}, "b": {"type": "string"}})), closed(json!({"a": {}})));
        assert_eq!(backward, [rule::PROPERTY_REMOVED_FROM_CLOSED_MODEL]);
        assert!(forward.is_empty());
    }

    #[test]
    fn property_removed_from_open_model_is_backward_but_not_forward() {
        let [backward, forward, _] = each_way(object(json!({"a": {}, "b": {"type": "string"}})), object(json!({"a": {}})));
        assert!(backward.is_empty());
        assert_eq!(forward, [rule::PROPERTY_ADDED_TO_OPEN_MODEL]);
    }

    #[test]
    fn property_removed_is_read_by_an_additional_properties_schema_that_accepts_it() {
        let old = json!({"type": "object", "properties": {"b": {"type": "string"}}, "additionalProperties": {"type": "string"}});
        let new = json!({"type": "object", "additionalProperties": {"type": "string"}});
        assert!(rules(Mode::Full, &[old], &new).is_empty());
    }

    #[test]
    fn property_removed_is_refused_by_an_additional_properties_schema_that_narrows_it() {
        let old = json!({"type": "object", "properties": {"b": {"type": "number"}}, "additionalProperties": {"type": "integer"}});
        let new = json!({"type": "object", "additionalProperties": {"type": "integer"}});
        let found = found(Mode::Backward, &[old], &new);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].path.as_str(), found[0].rule), ("/properties/b", rule::TYPE_NARROWED));
    }

    #[test]
    fn required_added_is_forward_but_not_backward() {
        let old = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let new = json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]});
        let [backward, forward, full] = each_way(old, new);
        assert_eq!(backward, [rule::REQUIRED_ADDED]);
        assert!(forward.is_empty());
        assert_eq!(full, [rule::REQUIRED_ADDED]);
    }

    #[test]
    fn required_field_removed_from_open_model_is_backward_but_not_forward() {
        let old = json!({"type": "object", "properties": {"id": {"type": "string"}, "a": {}}, "required": ["id"]});
        let new = json!({"type": "object", "properties": {"a": {}}});
        let [backward, forward, _] = each_way(old, new);
        assert!(backward.is_empty());
        assert_eq!(forward, [rule::PROPERTY_ADDED_TO_OPEN_MODEL, rule::REQUIRED_ADDED]);
    }

    #[test]
    fn required_field_removed_from_closed_model_is_refused_backward() {
        let old = json!({"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"], "additionalProperties": false});
        let new = json!({"type": "object", "properties": {}, "additionalProperties": false});
        let [backward, forward, _] = each_way(old, new);
        assert_eq!(backward, [rule::PROPERTY_REMOVED_FROM_CLOSED_MODEL]);
        assert_eq!(forward, [rule::REQUIRED_ADDED]);
    }

    #[test]
    fn required_added_message_names_the_property() {
        let found = found(Mode::Backward, &[json!({"type": "object"})], &json!({"type": "object", "required": ["id"]}));
        assert_eq!(found[0].message, "property \"id\" is required by the candidate but not by version 1");
    }

    #[test]
    fn content_model_closed_is_forward_but_not_backward() {
        let [backward, forward, full] = each_way(object(json!({"a": {}})), closed(json!({"a": {}})));
        assert_eq!(backward, [rule::CONTENT_MODEL_CLOSED]);
        assert!(forward.is_empty());
        assert_eq!(full, [rule::CONTENT_MODEL_CLOSED]);
    }

    #[test]
    fn content_model_opened_is_backward_but_not_forward() {
        let [backward, forward, _] = each_way(closed(json!({"a": {}})), object(json!({"a": {}})));
        assert!(backward.is_empty());
        assert_eq!(forward, [rule::CONTENT_MODEL_CLOSED]);
    }

    #[test]
    fn unevaluated_properties_false_closes_the_content_model() {
        let new = json!({"type": "object", "properties": {"a": {}}, "unevaluatedProperties": false});
        let [backward, forward, _] = each_way(object(json!({"a": {}})), new);
        assert_eq!(backward, [rule::CONTENT_MODEL_CLOSED]);
        assert!(forward.is_empty());
    }

    #[test]
    fn additional_properties_schema_narrowed_from_open_is_refused_backward() {
        let new = json!({"type": "object", "additionalProperties": {"type": "string"}});
        let found = found(Mode::Backward, &[json!({"type": "object"})], &new);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].path.as_str(), found[0].rule), ("/additionalProperties", rule::TYPE_NARROWED));
        assert!(rules(Mode::Forward, &[json!({"type": "object"})], &new).is_empty());
    }

    #[test]
    fn enum_value_added_is_backward_but_not_forward() {
        let [backward, forward, full] = each_way(json!({"enum": ["a", "b"]}), json!({"enum": ["a", "b", "c"]}));
        assert!(backward.is_empty());
        assert_eq!(forward, [rule::ENUM_NARROWED]);
        assert_eq!(full, [rule::ENUM_NARROWED]);
    }

    #[test]
    fn enum_value_removed_is_forward_but_not_backward() {
        let [backward, forward, _] = each_way(json!({"enum": ["a", "b"]}), json!({"enum": ["a"]}));
        assert_eq!(backward, [rule::ENUM_NARROWED]);
        assert!(forward.is_empty());
        let found = found(Mode::Backward, &[json!({"enum": ["a", "b"]})], &json!({"enum": ["a"]}));
        assert_eq!(found[0].message, "enum narrowed: version 1 allows \"b\" which the candidate does not");
    }

    #[test]
    fn enum_added_to_an_unconstrained_string_is_forward_but_not_backward() {
        let [backward, forward, _] = each_way(json!({"type": "string"}), json!({"type": "string", "enum": ["a"]}));
        assert_eq!(backward, [rule::ENUM_NARROWED]);
        assert!(forward.is_empty());
    }

    #[test]
    fn const_is_a_one_value_enum() {
        let [backward, forward, _] = each_way(json!({"enum": ["a", "b"]}), json!({"const": "a"}));
        assert_eq!(backward, [rule::ENUM_NARROWED]);
        assert!(forward.is_empty());
        assert!(rules(Mode::Full, &[json!({"const": "a"})], &json!({"enum": ["a"]})).is_empty());
    }

    #[test]
    fn enum_numbers_compare_by_value() {
        let [backward, forward, _] = each_way(json!({"enum": [1, 2.5]}), json!({"enum": [1.0, 2.5, [1]]}));
        assert!(backward.is_empty(), "1.0 in the candidate reads 1 from version 1");
        assert_eq!(forward, [rule::TYPE_NARROWED, rule::ENUM_NARROWED], "only [1] is missing from version 1");
    }

    #[test]
    fn enum_over_a_boolean_type_lists_its_two_values() {
        let [backward, forward, _] = each_way(json!({"type": "boolean"}), json!({"enum": [true, false]}));
        assert!(backward.is_empty());
        assert!(forward.is_empty());
        assert_eq!(rules(Mode::Backward, &[json!({"type": "boolean"})], &json!({"enum": [true]})), [rule::ENUM_NARROWED]);
    }

    #[test]
    fn enum_values_narrow_the_writer_type() {
        // An enum of integers is read by an integer reader even without a writer `type`.
        assert!(rules(Mode::Backward, &[json!({"enum": [1, 2]})], &json!({"type": "integer"})).is_empty());
        assert_eq!(rules(Mode::Backward, &[json!({"enum": [1, 2.5]})], &json!({"type": "integer"})), [rule::TYPE_NARROWED]);
    }

    #[test]
    fn minimum_raised_is_forward_but_not_backward() {
        let [backward, forward, full] = each_way(json!({"type": "number", "minimum": 0}), json!({"type": "number", "minimum": 5}));
        assert_eq!(backward, [rule::BOUND_NARROWED]);
        assert!(forward.is_empty());
        assert_eq!(full, [rule::BOUND_NARROWED]);
    }

    #[test]
    fn bound_narrowed_message_names_the_keyword() {
        let found = found(Mode::Backward, &[json!({"minimum": 0})], &json!({"minimum": 5}));
        assert_eq!(found[0].message, "minimum narrowed from >= 0 in version 1 to >= 5 in the candidate");
    }

    #[test]
    fn maximum_added_is_forward_but_not_backward() {
        let [backward, forward, _] = each_way(json!({"type": "integer"}), json!({"type": "integer", "maximum": 10}));
        assert_eq!(backward, [rule::BOUND_NARROWED]);
        assert!(forward.is_empty());
    }

    #[test]
    fn exclusive_minimum_at_the_same_value_is_narrower() {
        let [backward, forward, _] = each_way(json!({"minimum": 0}), json!({"exclusiveMinimum": 0}));
        assert_eq!(backward, [rule::BOUND_NARROWED]);
        assert!(forward.is_empty());
    }

    #[test]
    fn exclusive_maximum_below_maximum_is_compared_as_one_range() {
        assert!(rules(Mode::Backward, &[json!({"exclusiveMaximum": 5})], &json!({"maximum": 5})).is_empty());
        assert_eq!(rules(Mode::Backward, &[json!({"maximum": 5})], &json!({"exclusiveMaximum": 5})), [rule::BOUND_NARROWED]);
    }

    #[test]
    fn draft4_boolean_exclusive_minimum_makes_minimum_exclusive() {
        let old = json!({"minimum": 0, "exclusiveMinimum": true});
        assert!(rules(Mode::Backward, std::slice::from_ref(&old), &json!({"minimum": 0})).is_empty());
        assert_eq!(rules(Mode::Forward, &[old], &json!({"minimum": 0})), [rule::BOUND_NARROWED]);
    }

    #[test]
    fn multiple_of_must_divide_the_writers_step() {
        let [backward, forward, _] = each_way(json!({"multipleOf": 2}), json!({"multipleOf": 4}));
        assert_eq!(backward, [rule::BOUND_NARROWED]);
        assert!(forward.is_empty());
        assert!(rules(Mode::Backward, &[json!({"multipleOf": 0.3})], &json!({"multipleOf": 0.1})).is_empty());
    }

    #[test]
    fn multiple_of_one_reads_every_integer() {
        assert!(rules(Mode::Backward, &[json!({"type": "integer"})], &json!({"type": "integer", "multipleOf": 1})).is_empty());
        assert_eq!(
            rules(Mode::Backward, &[json!({"type": "number"})], &json!({"type": "number", "multipleOf": 1})),
            [rule::BOUND_NARROWED]
        );
    }

    #[test]
    fn max_length_lowered_is_forward_but_not_backward() {
        let [backward, forward, _] = each_way(json!({"type": "string", "maxLength": 20}), json!({"type": "string", "maxLength": 10}));
        assert_eq!(backward, [rule::BOUND_NARROWED]);
        assert!(forward.is_empty());
    }

    #[test]
    fn min_length_removed_is_backward_but_not_forward() {
        let [backward, forward, _] = each_way(json!({"type": "string", "minLength": 1}), json!({"type": "string"}));
        assert!(backward.is_empty());
        assert_eq!(forward, [rule::BOUND_NARROWED]);
    }

    #[test]
    fn pattern_added_is_forward_but_not_backward() {
        let [backward, forward, full] = each_way(json!({"type": "string"}), json!({"type": "string", "pattern": "^[a-z]+$"}));
        assert_eq!(backward, [rule::BOUND_NARROWED]);
        assert!(forward.is_empty());
        assert_eq!(full, [rule::BOUND_NARROWED]);
    }

    #[test]
    fn pattern_changed_is_refused_both_ways() {
        let [backward, forward, _] = each_way(json!({"pattern": "^a"}), json!({"pattern": "^b"}));
        assert_eq!(backward, [rule::BOUND_NARROWED]);
        assert_eq!(forward, [rule::BOUND_NARROWED]);
    }

    #[test]
    fn format_added_is_forward_but_not_backward() {
        let [backward, forward, _] = each_way(json!({"type": "string"}), json!({"type": "string", "format": "date-time"}));
        assert_eq!(backward, [rule::BOUND_NARROWED]);
        assert!(forward.is_empty());
    }

    #[test]
    fn min_items_raised_is_forward_but_not_backward() {
        let [backward, forward, _] = each_way(json!({"type": "array"}), json!({"type": "array", "minItems": 1}));
        assert_eq!(backward, [rule::BOUND_NARROWED]);
        assert!(forward.is_empty());
    }

    #[test]
    fn unique_items_added_is_forward_but_not_backward() {
        let [backward, forward, _] = each_way(json!({"type": "array"}), json!({"type": "array", "uniqueItems": true}));
        assert_eq!(backward, [rule::BOUND_NARROWED]);
        assert!(forward.is_empty());
    }

    #[test]
    fn max_properties_lowered_is_forward_but_not_backward() {
        let [backward, forward, _] = each_way(json!({"type": "object", "maxProperties": 5}), json!({"type": "object", "maxProperties": 3}));
        assert_eq!(backward, [rule::BOUND_NARROWED]);
        assert!(forward.is_empty());
    }

    #[test]
    fn bounds_of_a_type_the_writer_never_sends_are_ignored() {
        let new = json!({"type": "integer", "minLength": 3, "minItems": 1, "required": ["x"]});
        assert!(rules(Mode::Full, &[json!({"type": "integer"})], &new).is_empty());
    }

    #[test]
    fn items_type_narrowed_reports_the_items_path() {
        let found = found(
            Mode::Backward,
            &[json!({"type": "array", "items": {"type": "number"}})],
            &json!({"type": "array", "items": {"type": "integer"}}),
        );
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].path.as_str(), found[0].rule), ("/items", rule::TYPE_NARROWED));
    }

    #[test]
    fn prefix_items_are_compared_position_by_position() {
        let old = json!({"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}]});
        let new = json!({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]});
        let found = found(Mode::Backward, std::slice::from_ref(&old), &new);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].path.as_str(), found[0].rule), ("/prefixItems/1", rule::TYPE_NARROWED));
        assert!(rules(Mode::Forward, &[old], &new).is_empty());
    }

    #[test]
    fn prefix_item_added_is_compared_with_the_writers_items() {
        let old = json!({"type": "array", "items": {"type": "string"}});
        let new = json!({"type": "array", "prefixItems": [{"type": "string", "maxLength": 3}], "items": {"type": "string"}});
        assert_eq!(rules(Mode::Backward, std::slice::from_ref(&old), &new), [rule::BOUND_NARROWED]);
        assert!(rules(Mode::Forward, &[old], &new).is_empty());
    }

    #[test]
    fn tuple_form_items_changed_cannot_be_judged() {
        let old = json!({"type": "array", "items": [{"type": "string"}]});
        let new = json!({"type": "array", "items": [{"type": "string"}, {"type": "number"}]});
        assert_eq!(rules(Mode::Backward, std::slice::from_ref(&old), &new), [rule::CANNOT_JUDGE]);
        assert!(rules(Mode::Full, std::slice::from_ref(&old), &old).is_empty());
    }

    #[test]
    fn any_of_unchanged_is_compatible() {
        let old = json!({"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}]}}, "maxProperties": 3});
        let new = json!({"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}]}}});
        assert!(rules(Mode::Backward, &[old], &new).is_empty());
    }

    #[test]
    fn any_of_changed_cannot_be_judged() {
        let old = json!({"anyOf": [{"type": "string"}]});
        let new = json!({"anyOf": [{"type": "string"}, {"type": "null"}]});
        let found = found(Mode::Full, &[old], &new);
        assert_eq!(found.len(), 1, "full mode reports it once");
        assert_eq!((found[0].path.as_str(), found[0].rule), ("/anyOf", rule::CANNOT_JUDGE));
        assert_eq!(
            found[0].message,
            "changes under anyOf cannot be judged structurally (against version 1); use mode none to register anyway"
        );
    }

    #[test]
    fn every_unjudged_keyword_changed_cannot_be_judged() {
        for keyword in UNJUDGED.into_iter().chain(["unevaluatedItems", "unevaluatedProperties"]) {
            let old = json!({"type": "object", keyword: {"type": "string"}});
            let new = json!({"type": "object", keyword: {"type": "integer"}});
            let found = found(Mode::Backward, &[old], &new);
            assert_eq!(found.len(), 1, "{keyword}");
            assert_eq!((found[0].rule, found[0].path.clone()), (rule::CANNOT_JUDGE, format!("/{keyword}")));
        }
    }

    #[test]
    fn ref_is_not_resolved() {
        let old = json!({"$ref": "#/$defs/a", "$defs": {"a": {"type": "string"}}});
        let new = json!({"$ref": "#/$defs/a", "$defs": {"a": {"type": "integer"}}});
        assert_eq!(rules(Mode::Backward, &[old], &new), [rule::CANNOT_JUDGE]);
    }

    #[test]
    fn definition_added_is_compatible() {
        let old = json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}}, "additionalProperties": false, "$defs": {"a": {"type": "string"}}});
        let mut new = old.clone();
        new["$defs"]["b"] = json!({"type": "integer"});
        new["properties"]["b"] = json!({"$ref": "#/$defs/b"});
        let [backward, forward, _] = each_way(old, new);
        assert!(backward.is_empty());
        assert_eq!(forward, [rule::PROPERTY_REMOVED_FROM_CLOSED_MODEL], "version 1 refuses b, whatever its definition");
    }

    #[test]
    fn definition_changed_cannot_be_judged() {
        let old = json!({"$ref": "#/$defs/a", "$defs": {"a": {"type": "number"}}});
        let new = json!({"$ref": "#/$defs/a", "$defs": {"a": {"type": "integer"}}});
        let found = found(Mode::Full, &[old], &new);
        assert_eq!(found.len(), 1, "full mode reports it once");
        assert_eq!((found[0].path.as_str(), found[0].rule), ("/$defs/a", rule::CANNOT_JUDGE));
        assert!(found[0].message.starts_with("changes under $defs/a cannot be judged structurally"));
    }

    #[test]
    fn definition_removed_cannot_be_judged() {
        let old = json!({"type": "object", "definitions": {"a": {"type": "number"}, "b": {}}});
        let new = json!({"type": "object", "definitions": {"b": {}}});
        let [backward, forward, full] = each_way(old, new);
        assert_eq!(backward, [rule::CANNOT_JUDGE]);
        assert_eq!(forward, [rule::CANNOT_JUDGE]);
        assert_eq!(full, [rule::CANNOT_JUDGE]);
    }

    #[test]
    fn transitive_mode_compares_with_every_version() {
        // Version 2 narrowed the enum under mode forward; the subject is now backward.
        let previous = [json!({"enum": ["a", "b"]}), json!({"enum": ["a"]})];
        let candidate = json!({"enum": ["a"], "description": "unchanged values"});
        assert!(rules(Mode::Backward, &previous, &candidate).is_empty());
        let found = found(Mode::BackwardTransitive, &previous, &candidate);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].rule, rule::ENUM_NARROWED);
        assert_eq!(found[0].message, "enum narrowed: version 1 allows \"b\" which the candidate does not");
    }

    #[test]
    fn transitive_mode_reports_each_version_it_conflicts_with() {
        let previous = [json!({"type": "number"}), json!({"type": "number", "maximum": 5})];
        let candidate = json!({"type": "integer", "maximum": 5});
        let found = found(Mode::BackwardTransitive, &previous, &candidate);
        let rules_found: Vec<(&str, bool)> = found.iter().map(|i| (i.rule, i.message.contains("version 2"))).collect();
        assert_eq!(rules_found, [(rule::TYPE_NARROWED, false), (rule::BOUND_NARROWED, false), (rule::TYPE_NARROWED, true)]);
    }

    #[test]
    fn non_transitive_mode_compares_only_with_the_last_version() {
        let previous = [json!({"type": "string"}), json!({"type": ["string", "null"]})];
        let candidate = json!({"type": ["string", "null"]});
        for mode in [Mode::Backward, Mode::Forward, Mode::Full, Mode::BackwardTransitive] {
            assert!(rules(mode, &previous, &candidate).is_empty(), "{mode:?}");
        }
        assert_eq!(rules(Mode::ForwardTransitive, &previous, &candidate), [rule::TYPE_NARROWED]);
        assert_eq!(rules(Mode::FullTransitive, &previous, &candidate), [rule::TYPE_NARROWED]);
    }

    #[test]
    fn every_message_names_the_version() {
        let old =
            json!({"type": "object", "properties": {"a": {"type": "number"}, "gone": {}}, "additionalProperties": false, "anyOf": []});
        let new = json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": false, "anyOf": [{}]});
        let found = found(Mode::Backward, &[json!({}), old], &new);
        assert_eq!(found.len(), 4);
        assert!(found.iter().all(|i| i.message.contains("version 2")), "{found:#?}");
    }

    #[test]
    fn property_names_are_escaped_in_paths() {
        let old = object(json!({"a/b~c": {"type": "number"}}));
        let new = object(json!({"a/b~c": {"type": "integer"}}));
        assert_eq!(found(Mode::Backward, &[old], &new)[0].path, "/properties/a~1b~0c");
    }

    #[test]
    fn a_change_below_the_depth_limit_is_too_deep() {
        let nest = |leaf: Value| (0..SCHEMA_DEPTH_MAX).fold(leaf, |inner, _| object(json!({"n": inner})));
        let found = found(Mode::Backward, &[nest(json!({"type": "number"}))], &nest(json!({"type": "integer"})));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].rule, rule::TOO_DEEP);
    }

    #[test]
    fn a_change_at_the_depth_limit_is_judged() {
        let nest = |leaf: Value| (1..SCHEMA_DEPTH_MAX).fold(leaf, |inner, _| object(json!({"n": inner})));
        assert_eq!(rules(Mode::Backward, &[nest(json!({"type": "number"}))], &nest(json!({"type": "integer"}))), [rule::TYPE_NARROWED]);
    }

    #[test]
    fn an_unchanged_subschema_below_the_depth_limit_passes() {
        let deep = (0..SCHEMA_DEPTH_MAX + 4).fold(json!({"type": "string"}), |inner, _| object(json!({"n": inner})));
        let mut new = deep.clone();
        new["description"] = json!("changed only at the root");
        assert!(rules(Mode::Full, &[deep], &new).is_empty());
    }

    #[test]
    fn a_schema_beyond_the_node_budget_is_too_large() {
        let properties: Map<String, Value> = (0..SCHEMA_NODES_MAX * 2).map(|i| (format!("p{i}"), json!({"type": "string"}))).collect();
        let old = json!({"type": "object", "properties": properties});
        let mut new = old.clone();
        new["description"] = json!("changed only at the root");
        assert_eq!(rules(Mode::Backward, &[old], &new), [rule::TOO_LARGE]);
    }

    #[test]
    fn incompatibilities_are_capped() {
        let properties = |t: &str| -> Map<String, Value> { (0..100).map(|i| (format!("p{i}"), json!({"type": t}))).collect() };
        let old = json!({"type": "object", "properties": properties("number")});
        let new = json!({"type": "object", "properties": properties("integer")});
        assert_eq!(rules(Mode::FullTransitive, &[old.clone(), old], &new).len(), INCOMPATIBILITIES_MAX);
    }

    #[test]
    fn keyword_of_the_wrong_type_is_an_invalid_schema() {
        let found = found(Mode::Backward, &[json!({"type": "number"})], &json!({"type": "number", "minimum": "5"}));
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].path.as_str(), found[0].rule), ("/minimum", rule::INVALID_SCHEMA));
    }

    #[test]
    fn a_schema_that_is_neither_object_nor_boolean_is_invalid() {
        assert_eq!(rules(Mode::Backward, &[json!({"type": "string"})], &json!(5)), [rule::INVALID_SCHEMA]);
        assert_eq!(rules(Mode::Backward, &[json!({"type": "string"}), json!([1])], &json!({"type": "string"})), [rule::INVALID_SCHEMA]);
    }

    #[test]
    fn unknown_keywords_are_annotations() {
        assert!(rules(Mode::Full, &[json!({"type": "string"})], &json!({"type": "string", "x-owner": "payments"})).is_empty());
    }

    #[test]
    fn display_shows_rule_path_and_message() {
        let found = found(Mode::Backward, &[json!({"type": "number"})], &json!({"type": "integer"}));
        assert_eq!(found[0].to_string(), "type_narrowed at /: type narrowed from number in version 1 to integer in the candidate");
    }

    #[test]
    fn long_enum_values_are_cut_in_messages() {
        let long = "x".repeat(1000);
        let found = found(Mode::Backward, &[json!({"enum": [long]})], &json!({"enum": ["y"]}));
        assert!(found[0].message.len() < 200, "{}", found[0].message);
    }
}
