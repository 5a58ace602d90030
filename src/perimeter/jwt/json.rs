//! Strict, allocation-free reading of a token's JSON with serde_json: the callers'
//! visitors see each member once, in order, and keep only what they need.
//!
//! Strictness (an attacker must not make two parsers disagree about a token): in every
//! object at every depth, a member name may appear once and must not contain a
//! backslash escape (so the comparison of raw names is the comparison of decoded
//! names, without a buffer); at most `JWT_JSON_MEMBERS_MAX` members per object and
//! `JWT_JSON_DEPTH_MAX` levels. serde_json itself rejects invalid UTF-8, lone
//! surrogates, trailing bytes and numbers out of the `f64` range.
//!
//! Allocation: none for a document without escapes. serde_json decodes a string that
//! holds an escape into a scratch `Vec` of its own (one allocation per document), and
//! boxes its error on rejection.

use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::constants::{JWT_JSON_DEPTH_MAX, JWT_JSON_MEMBERS_MAX};

/// Parses `bytes` as one JSON value with `seed` and rejects trailing bytes.
fn parse<'de, S: DeserializeSeed<'de>>(bytes: &'de [u8], seed: S) -> Option<S::Value> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = seed.deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    Some(value)
}

/// Reads the members of one object, for [`parse_object`].
pub(super) trait Members<'de> {
    /// Reads member `name`; must consume its value from `map`.
    fn member<A: MapAccess<'de>>(&mut self, name: &'de str, map: &mut A) -> Result<(), A::Error>;
}

/// Parses `bytes` as one strict JSON object whose members `members` reads; `None` on
/// any fault, the reader's own errors included.
pub(super) fn parse_object<'de, M: Members<'de>>(bytes: &'de [u8], members: M) -> Option<M> {
    parse(bytes, Object(members))
}

struct Object<M>(M);

impl<'de, M: Members<'de>> DeserializeSeed<'de> for Object<M> {
    type Value = M;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<M, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, M: Members<'de>> Visitor<'de> for Object<M> {
    type Value = M;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<M, A::Error> {
        visit_members(&mut map, |name, map| self.0.member(name, map))?;
        Ok(self.0)
    }
}

/// Calls `member(name, map)` for each member of one object, in order; `member` must
/// consume the value. Rejects the object on a repeated or escaped name (serde_json
/// cannot borrow an escaped name as `&str`) or more than `JWT_JSON_MEMBERS_MAX` members.
pub(super) fn visit_members<'de, A, F>(map: &mut A, mut member: F) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    F: FnMut(&'de str, &mut A) -> Result<(), A::Error>,
{
    let mut names: [&'de str; JWT_JSON_MEMBERS_MAX] = [""; JWT_JSON_MEMBERS_MAX];
    let mut count = 0;
    while let Some(name) = map.next_key::<&'de str>()? {
        if count == JWT_JSON_MEMBERS_MAX {
            return Err(de::Error::custom("too many members"));
        }
        if names[..count].contains(&name) {
            return Err(de::Error::custom("duplicate member name"));
        }
        names[count] = name;
        count += 1;
        member(name, map)?;
    }
    Ok(())
}

/// A value sluice does not read, checked with the same strictness as the rest (so a
/// duplicate hidden in an unread claim is still a rejection). `depth` is the nesting
/// depth the value would open; a top-level member's value is at depth 2.
#[derive(Clone, Copy)]
pub(super) struct Ignored {
    pub depth: usize,
}

impl<'de> DeserializeSeed<'de> for Ignored {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Ignored {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.deeper::<A::Error>()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.deeper::<A::Error>()?;
        visit_members(&mut map, |_, map| map.next_value_seed(inner))
    }
}

impl Ignored {
    /// The seed for the elements of the container this one opens.
    fn deeper<E: de::Error>(self) -> Result<Ignored, E> {
        if self.depth > JWT_JSON_DEPTH_MAX {
            return Err(E::custom("nested too deep"));
        }
        Ok(Ignored { depth: self.depth + 1 })
    }
}

/// Appends `text` to the scratch text and returns where it landed.
pub(super) fn append(scratch_text: &mut String, text: &str) -> Range<usize> {
    let start = scratch_text.len();
    scratch_text.push_str(text);
    start..scratch_text.len()
}

/// A JSON string, handed (decoded) to `F`; any other type is an error.
pub(super) struct WithStr<F>(pub F);

impl<'de, T, F: FnOnce(&str) -> T> DeserializeSeed<'de> for WithStr<F> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, T, F: FnOnce(&str) -> T> Visitor<'de> for WithStr<F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        Ok((self.0)(text))
    }
}

/// Where a string handed on by [`WithStrs`] stood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Form {
    /// The whole value.
    String,
    /// One element of an array.
    Element,
}

/// A JSON string or an array of strings (`aud`, `scope`, `scp`), each handed to `F`
/// with its [`Form`].
pub(super) struct WithStrs<F>(pub F);

impl<'de, F: FnMut(&str, Form)> DeserializeSeed<'de> for WithStrs<F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, F: FnMut(&str, Form)> Visitor<'de> for WithStrs<F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an array of strings")
    }

    fn visit_str<E: de::Error>(mut self, text: &str) -> Result<(), E> {
        (self.0)(text, Form::String);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(WithStr(|text: &str| (self.0)(text, Form::Element)))?.is_some() {}
        Ok(())
    }
}

/// A JWT NumericDate (RFC 7519 §2): seconds since the epoch, integer or not, as whole
/// Unix milliseconds (rounded down). Non-numbers and values whose milliseconds overflow
/// an `i64` are errors.
pub(super) struct NumericDate;

/// Seconds beyond which milliseconds no longer fit an `i64` (about 292 million years).
const NUMERIC_DATE_SECS_LIMIT: f64 = (i64::MAX / 1000) as f64;

impl<'de> DeserializeSeed<'de> for NumericDate {
    type Value = i64;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<i64, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NumericDate {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a NumericDate")
    }

    fn visit_i64<E: de::Error>(self, secs: i64) -> Result<i64, E> {
        secs.checked_mul(1000).ok_or_else(|| E::custom("NumericDate out of range"))
    }

    fn visit_u64<E: de::Error>(self, secs: u64) -> Result<i64, E> {
        let secs = i64::try_from(secs).map_err(|_| E::custom("NumericDate out of range"))?;
        self.visit_i64(secs)
    }

    fn visit_f64<E: de::Error>(self, secs: f64) -> Result<i64, E> {
        if !secs.is_finite() || secs.abs() >= NUMERIC_DATE_SECS_LIMIT {
            return Err(E::custom("NumericDate out of range"));
        }
        // Finite and in range, so the cast only drops the fraction the floor removed.
        Ok((secs * 1000.0).floor() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a document as an object of ignored members (what the claims reader does
    /// with every member it does not know).
    fn strict(text: &str) -> bool {
        parse(text.as_bytes(), Ignored { depth: 1 }).is_some()
    }

    fn date(text: &str) -> Option<i64> {
        parse(text.as_bytes(), NumericDate)
    }

    #[test]
    fn duplicate_names_are_rejected_at_every_depth() {
        assert!(strict(r#"{"a":1,"b":{"c":[{"d":1,"e":2}]}}"#));
        assert!(!strict(r#"{"a":1,"a":1}"#));
        assert!(!strict(r#"{"a":1,"b":{"c":[{"d":1,"d":2}]}}"#));
    }

    #[test]
    fn escaped_names_are_rejected_and_escaped_values_accepted() {
        assert!(!strict(r#"{"\u0061":1}"#));
        // `a` and its escape would be the same name to every other parser.
        assert!(!strict(r#"{"a":1,"\u0061":2}"#));
        assert!(strict(r#"{"a":"\u00fc\/\n"}"#));
    }

    #[test]
    fn depth_and_member_count_are_bounded() {
        let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        // The top-level object is depth 1, so it leaves JWT_JSON_DEPTH_MAX - 1 arrays.
        assert!(strict(&format!(r#"{{"a":{}}}"#, nested(JWT_JSON_DEPTH_MAX - 1))));
        assert!(!strict(&format!(r#"{{"a":{}}}"#, nested(JWT_JSON_DEPTH_MAX))));
        assert!(!strict(&format!(r#"{{"a":{}}}"#, nested(100_000))));
        let members = |count: usize| (0..count).map(|i| format!(r#""m{i}":0"#)).collect::<Vec<_>>().join(",");
        assert!(strict(&format!("{{{}}}", members(JWT_JSON_MEMBERS_MAX))));
        assert!(!strict(&format!("{{{}}}", members(JWT_JSON_MEMBERS_MAX + 1))));
    }

    #[test]
    fn invalid_json_is_rejected() {
        for text in [r#"{"a":1} x"#, r#"{"a":"\ud800"}"#, r#"{"a":1,}"#, "{", r#"{"a":1e400}"#, ""] {
            assert!(!strict(text), "{text}");
        }
        assert!(parse(b"{\"a\":\"\xff\"}", Ignored { depth: 1 }).is_none());
    }

    #[test]
    fn numeric_dates_are_integers_or_floats() {
        assert_eq!(date("1700000000"), Some(1_700_000_000_000));
        assert_eq!(date("1700000000.25"), Some(1_700_000_000_250));
        assert_eq!(date("1.7e9"), Some(1_700_000_000_000));
        assert_eq!(date("-1"), Some(-1000));
        assert_eq!(date("-0.5"), Some(-500));
        for text in ["\"1700000000\"", "null", "true", "9223372036854775807", "1e300", "18446744073709551615"] {
            assert_eq!(date(text), None, "{text}");
        }
    }
}
