//! The event as the envelope validator already parsed it, simd-json's tape, as a JSON
//! representation the schema validator reads (`jsonschema::json::Json`): no second parse
//! and no allocation per event. Policies and gates read fields through the same nodes.
//!
//! A tape is a flat array: an object node holds its member count and the number of nodes
//! under it, followed by key, value, key, value...; an array its elements. A node here is
//! the tape and an index into it.

#![forbid(unsafe_code)]

use std::borrow::Cow;

use jsonschema::JsonType;
use jsonschema::json::{Array, Json, JsonNumber, Node, NodeIdentity, Object};
use serde_json::Value;
use simd_json::{Node as TapeEntry, StaticNode};

/// The tape representation.
pub struct Tape;

/// One value of a tape.
#[derive(Clone, Copy)]
pub struct TapeNode<'a> {
    nodes: &'a [TapeEntry<'a>],
    at: usize,
}

impl<'a> TapeNode<'a> {
    /// The root of a tape (what the envelope validator parsed).
    pub fn root(nodes: &'a [TapeEntry<'a>]) -> Option<TapeNode<'a>> {
        (!nodes.is_empty()).then_some(TapeNode { nodes, at: 0 })
    }

    fn entry(&self) -> &'a TapeEntry<'a> {
        &self.nodes[self.at]
    }

    /// The member `key` of an object.
    pub fn member(&self, key: &str) -> Option<TapeNode<'a>> {
        TapeObject::of(*self)?.find(key)
    }

    pub fn str(&self) -> Option<&'a str> {
        match self.entry() {
            TapeEntry::String(text) => Some(text),
            _ => None,
        }
    }

    pub fn i64(&self) -> Option<i64> {
        match self.entry() {
            TapeEntry::Static(StaticNode::I64(value)) => Some(*value),
            TapeEntry::Static(StaticNode::U64(value)) => i64::try_from(*value).ok(),
            _ => None,
        }
    }

    /// The value at a dotted path through objects.
    pub fn path<S: AsRef<str>>(&self, segments: &[S]) -> Option<TapeNode<'a>> {
        segments.iter().try_fold(*self, |node, segment| node.member(segment.as_ref()))
    }

    /// Whether a field is present anywhere the path reaches, looking into every element of
    /// the arrays on the way.
    pub fn present<S: AsRef<str>>(&self, segments: &[S]) -> bool {
        let Some((first, rest)) = segments.split_first() else { return true };
        match self.entry() {
            TapeEntry::Object { .. } => self.member(first.as_ref()).is_some_and(|child| child.present(rest)),
            TapeEntry::Array { .. } => TapeArray::of(*self).is_some_and(|array| array.elements().any(|item| item.present(segments))),
            _ => false,
        }
    }

    /// The value as a `serde_json::Value` (cold paths: errors, `enum`, RG values).
    pub fn value(&self) -> Value {
        match self.entry() {
            TapeEntry::String(text) => Value::String((*text).to_owned()),
            TapeEntry::Static(StaticNode::Null) => Value::Null,
            TapeEntry::Static(StaticNode::Bool(value)) => Value::Bool(*value),
            TapeEntry::Static(StaticNode::I64(value)) => Value::from(*value),
            TapeEntry::Static(StaticNode::U64(value)) => Value::from(*value),
            TapeEntry::Static(StaticNode::F64(value)) => serde_json::Number::from_f64(*value).map_or(Value::Null, Value::Number),
            TapeEntry::Object { .. } => Value::Object(
                TapeObject::of(*self)
                    .into_iter()
                    .flat_map(|object| object.iter())
                    .map(|(key, value)| (key.to_owned(), value.value()))
                    .collect(),
            ),
            TapeEntry::Array { .. } => {
                Value::Array(TapeArray::of(*self).into_iter().flat_map(|array| array.elements()).map(|item| item.value()).collect())
            }
        }
    }
}

/// Tape entries a value takes, itself included.
fn span(entry: &TapeEntry<'_>) -> usize {
    match entry {
        TapeEntry::Object { count, .. } | TapeEntry::Array { count, .. } => count + 1,
        _ => 1,
    }
}

/// An object of a tape.
#[derive(Clone, Copy)]
pub struct TapeObject<'a> {
    node: TapeNode<'a>,
    len: usize,
}

impl<'a> TapeObject<'a> {
    fn of(node: TapeNode<'a>) -> Option<TapeObject<'a>> {
        match node.entry() {
            TapeEntry::Object { len, .. } => Some(TapeObject { node, len: *len }),
            _ => None,
        }
    }

    fn iter(&self) -> TapeMembers<'a> {
        TapeMembers { nodes: self.node.nodes, next: self.node.at + 1, left: self.len }
    }

    fn find(&self, key: &str) -> Option<TapeNode<'a>> {
        self.iter().find(|(name, _)| *name == key).map(|(_, value)| value)
    }
}

/// The members of an object, in document order.
pub struct TapeMembers<'a> {
    nodes: &'a [TapeEntry<'a>],
    next: usize,
    left: usize,
}

impl<'a> Iterator for TapeMembers<'a> {
    type Item = (&'a str, TapeNode<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let key = match self.nodes.get(self.next)? {
            TapeEntry::String(key) => *key,
            _ => return None,
        };
        let value = TapeNode { nodes: self.nodes, at: self.next + 1 };
        self.next += 1 + span(value.entry());
        Some((key, value))
    }
}

/// An array of a tape.
#[derive(Clone, Copy)]
pub struct TapeArray<'a> {
    node: TapeNode<'a>,
    len: usize,
}

impl<'a> TapeArray<'a> {
    fn of(node: TapeNode<'a>) -> Option<TapeArray<'a>> {
        match node.entry() {
            TapeEntry::Array { len, .. } => Some(TapeArray { node, len: *len }),
            _ => None,
        }
    }

    fn elements(&self) -> TapeElements<'a> {
        TapeElements { nodes: self.node.nodes, next: self.node.at + 1, left: self.len }
    }
}

/// The elements of an array, in order.
pub struct TapeElements<'a> {
    nodes: &'a [TapeEntry<'a>],
    next: usize,
    left: usize,
}

impl<'a> Iterator for TapeElements<'a> {
    type Item = TapeNode<'a>;

    fn next(&mut self) -> Option<TapeNode<'a>> {
        if self.left == 0 || self.next >= self.nodes.len() {
            return None;
        }
        self.left -= 1;
        let item = TapeNode { nodes: self.nodes, at: self.next };
        self.next += span(item.entry());
        Some(item)
    }
}

/// A number of a tape.
#[derive(Clone, Copy)]
pub struct TapeNumber(StaticNode);

impl JsonNumber for TapeNumber {
    fn as_u64(&self) -> Option<u64> {
        match self.0 {
            StaticNode::U64(value) => Some(value),
            StaticNode::I64(value) => u64::try_from(value).ok(),
            _ => None,
        }
    }

    fn as_i64(&self) -> Option<i64> {
        match self.0 {
            StaticNode::I64(value) => Some(value),
            StaticNode::U64(value) => i64::try_from(value).ok(),
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self.0 {
            StaticNode::I64(value) => Some(value as f64),
            StaticNode::U64(value) => Some(value as f64),
            StaticNode::F64(value) => Some(value),
            _ => None,
        }
    }

    fn as_str(&self) -> Cow<'_, str> {
        Cow::Owned(self.to_number().to_string())
    }

    fn to_number(&self) -> Cow<'_, serde_json::Number> {
        Cow::Owned(match self.0 {
            StaticNode::I64(value) => serde_json::Number::from(value),
            StaticNode::U64(value) => serde_json::Number::from(value),
            StaticNode::F64(value) => serde_json::Number::from_f64(value).unwrap_or_else(|| serde_json::Number::from(0)),
            _ => serde_json::Number::from(0),
        })
    }

    fn is_integer(&self) -> bool {
        match self.0 {
            StaticNode::I64(_) | StaticNode::U64(_) => true,
            StaticNode::F64(value) => value.fract() == 0.0 && value.is_finite(),
            _ => false,
        }
    }

    fn is_written_as_integer(&self) -> bool {
        matches!(self.0, StaticNode::I64(_) | StaticNode::U64(_))
    }
}

impl Json for Tape {
    type Node<'a> = TapeNode<'a>;
    type PreparedKey = String;
    type StringBuffer = ();

    // A lookup scans the members, so `properties` takes one pass over the object's members
    // (each looked up in the schema) rather than one scan per property: O(members), never
    // O(properties x members) on a hostile event.
    const KEYS_PER_LOOKUP: usize = usize::MAX / 2;
    const ACYCLIC: bool = true;

    fn prepare_key(key: &str) -> String {
        key.to_owned()
    }

    fn with_string_node<T>((): &mut (), string: &str, f: impl FnOnce(TapeNode<'_>) -> T) -> T {
        let nodes = [TapeEntry::String(string)];
        f(TapeNode { nodes: &nodes, at: 0 })
    }
}

impl<'a> Node<'a, Tape> for TapeNode<'a> {
    type Object = TapeObject<'a>;
    type Array = TapeArray<'a>;
    type Number = TapeNumber;

    fn as_object(&self) -> Option<TapeObject<'a>> {
        TapeObject::of(*self)
    }

    fn as_array(&self) -> Option<TapeArray<'a>> {
        TapeArray::of(*self)
    }

    fn as_string(&self) -> Option<Cow<'a, str>> {
        self.str().map(Cow::Borrowed)
    }

    fn as_number(&self) -> Option<TapeNumber> {
        match self.entry() {
            TapeEntry::Static(number @ (StaticNode::I64(_) | StaticNode::U64(_) | StaticNode::F64(_))) => Some(TapeNumber(*number)),
            _ => None,
        }
    }

    fn as_boolean(&self) -> Option<bool> {
        match self.entry() {
            TapeEntry::Static(StaticNode::Bool(value)) => Some(*value),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self.entry(), TapeEntry::Static(StaticNode::Null))
    }

    fn json_type(&self) -> JsonType {
        match self.entry() {
            TapeEntry::String(_) => JsonType::String,
            TapeEntry::Object { .. } => JsonType::Object,
            TapeEntry::Array { .. } => JsonType::Array,
            TapeEntry::Static(StaticNode::Null) => JsonType::Null,
            TapeEntry::Static(StaticNode::Bool(_)) => JsonType::Boolean,
            TapeEntry::Static(_) => JsonType::Number,
        }
    }

    fn to_value(&self) -> Cow<'a, Value> {
        Cow::Owned(self.value())
    }

    fn identity(&self) -> Option<NodeIdentity> {
        Some(NodeIdentity::tagged(self.nodes.as_ptr() as usize, self.at as u32))
    }
}

impl<'a> Object<'a, Tape> for TapeObject<'a> {
    type Node = TapeNode<'a>;
    type MemberName = &'a str;
    type MembersIter = TapeMembers<'a>;

    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, key: &String) -> Option<TapeNode<'a>> {
        self.find(key)
    }

    fn members(&self) -> TapeMembers<'a> {
        self.iter()
    }
}

impl<'a> Array<'a, Tape> for TapeArray<'a> {
    type Node = TapeNode<'a>;
    type ElementsIter = TapeElements<'a>;

    fn len(&self) -> usize {
        self.len
    }

    fn elements(&self) -> TapeElements<'a> {
        TapeArray::elements(self)
    }
}

/// Parses `json` into a tape and calls `f` with its root (tests, tools and other cold
/// paths; the ingest path uses the envelope validator's tape).
pub fn with_parsed<T>(json: &[u8], f: impl FnOnce(TapeNode<'_>) -> T) -> Option<T> {
    let mut bytes = json.to_vec();
    let tape = simd_json::to_tape(&mut bytes).ok()?;
    let root = TapeNode::root(&tape.0)?;
    Some(f(root))
}

/// [`with_parsed`] for a value at hand.
pub fn with_value<T>(value: &Value, f: impl FnOnce(TapeNode<'_>) -> T) -> T {
    let json = serde_json::to_vec(value).unwrap_or_default();
    with_parsed(&json, f).expect("a serde_json value serializes to JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_read_objects_arrays_and_scalars_like_the_document() {
        let json = br#"{"a":{"b":[1,{"c":"x"},2.5,-3]},"d":true,"e":null,"f":"s"}"#;
        with_parsed(json, |root| {
            assert_eq!(root.path(&["a", "b"]).map(|node| node.value()), Some(serde_json::json!([1, {"c":"x"}, 2.5, -3])));
            assert!(root.present(&["a", "b", "c"]));
            assert!(!root.present(&["a", "x"]));
            assert_eq!(root.member("f").and_then(|node| node.str()), Some("s"));
            assert_eq!(root.member("d").map(|node| node.json_type()), Some(JsonType::Boolean));
            assert!(root.member("e").is_some_and(|node| node.is_null()));
            assert_eq!(root.value(), serde_json::from_slice::<Value>(json).unwrap());
        })
        .unwrap();
    }

    #[test]
    fn a_compiled_schema_judges_a_tape_as_it_judges_the_value() {
        let schema = serde_json::json!({"type":"object","properties":{"n":{"type":"integer","minimum":2},"s":{"pattern":"^a"},"l":{"items":{"type":"number"}}},"required":["n"],"additionalProperties":false});
        let validator = jsonschema::options_for::<Tape>().build(&schema).unwrap();
        let plain = jsonschema::validator_for(&schema).unwrap();
        for json in [
            &br#"{"n":3,"s":"ab","l":[1,2.5]}"#[..],
            br#"{"n":1}"#,
            br#"{"n":2.0}"#,
            br#"{"s":"ab"}"#,
            br#"{"n":3,"x":1}"#,
            br#"{"n":3,"l":["a"]}"#,
            br#"{"n":3,"s":"b"}"#,
        ] {
            let expected = plain.is_valid(&serde_json::from_slice::<Value>(json).unwrap());
            assert_eq!(with_parsed(json, |root| validator.is_valid(root)), Some(expected), "{}", String::from_utf8_lossy(json));
        }
    }
}
