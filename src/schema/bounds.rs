//! What a schema may be before it is compiled: bounded in size, depth, values, enum
//! entries and references, with every reference local (`#...`) and every `pattern` a
//! regex the linear-time `regex` engine accepts. A schema bomb is refused here, at
//! registration, with the reason; it never reaches a shard.

#![forbid(unsafe_code)]

use serde_json::Value;

use crate::constants::{SCHEMA_DEPTH_MAX, SCHEMA_ENUM_VALUES_MAX, SCHEMA_NODES_MAX, SCHEMA_PATTERN_BYTES_MAX, SCHEMA_REFS_MAX};

/// Keywords whose value is a reference to another schema document.
const REFERENCE_KEYWORDS: [&str; 3] = ["$ref", "$dynamicRef", "$recursiveRef"];

/// Walks `schema` and refuses what a registry must not compile; the error names the
/// place (a JSON pointer) and the limit.
pub fn check(schema: &Value) -> Result<(), String> {
    let mut stack: Vec<(&Value, usize, String)> = vec![(schema, 0, String::new())];
    let (mut nodes, mut refs) = (0usize, 0usize);
    while let Some((value, depth, pointer)) = stack.pop() {
        nodes += 1;
        if nodes > SCHEMA_NODES_MAX {
            return Err(format!("the schema has more than {SCHEMA_NODES_MAX} values"));
        }
        if depth > SCHEMA_DEPTH_MAX {
            return Err(format!("at {pointer}: the schema nests deeper than {SCHEMA_DEPTH_MAX} levels"));
        }
        match value {
            Value::Object(map) => {
                refs += check_keywords(map, &pointer)?;
                if refs > SCHEMA_REFS_MAX {
                    return Err(format!("the schema has more than {SCHEMA_REFS_MAX} references"));
                }
                for (key, child) in map {
                    stack.push((child, depth + 1, format!("{pointer}/{}", escape_pointer(key))));
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    stack.push((child, depth + 1, format!("{pointer}/{index}")));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks the keywords of one schema object; returns how many references it holds.
fn check_keywords(map: &serde_json::Map<String, Value>, pointer: &str) -> Result<usize, String> {
    let mut refs = 0;
    for keyword in REFERENCE_KEYWORDS {
        if let Some(target) = map.get(keyword) {
            let Some(target) = target.as_str() else { continue };
            if !target.starts_with('#') {
                return Err(format!(
                    "at {pointer}/{keyword}: {target:?} refers to another document; only local references (\"#...\") are allowed"
                ));
            }
            refs += 1;
        }
    }
    if let Some(Value::Array(values)) = map.get("enum")
        && values.len() > SCHEMA_ENUM_VALUES_MAX
    {
        return Err(format!("at {pointer}/enum: more than {SCHEMA_ENUM_VALUES_MAX} values"));
    }
    if let Some(Value::String(pattern)) = map.get("pattern") {
        check_pattern(pattern).map_err(|error| format!("at {pointer}/pattern: {error}"))?;
    }
    if let Some(Value::Object(patterns)) = map.get("patternProperties") {
        for pattern in patterns.keys() {
            check_pattern(pattern).map_err(|error| format!("at {pointer}/patternProperties: {error}"))?;
        }
    }
    Ok(refs)
}

/// A pattern must compile with the linear-time engine within its size limit.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(SCHEMA_PATTERN_BYTES_MAX)
        .dfa_size_limit(SCHEMA_PATTERN_BYTES_MAX)
        .build()
        .map(|_| ())
        .map_err(|error| match error {
            regex::Error::CompiledTooBig(_) => format!("the pattern compiles to more than {SCHEMA_PATTERN_BYTES_MAX} bytes"),
            other => format!("the pattern is not a regular expression sluice can match in linear time: {}", first_line(&other.to_string())),
        })
}

fn first_line(text: &str) -> &str {
    text.lines().last().unwrap_or(text).trim()
}

/// RFC 6901 escaping of one reference token.
fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_an_ordinary_schema_with_local_references() {
        let schema = json!({"type":"object","$defs":{"money":{"type":"number"}},
            "properties":{"payload":{"properties":{"bet":{"$ref":"#/$defs/money"},"currency":{"pattern":"^[A-Z]{3}$"}}}}});
        assert_eq!(check(&schema), Ok(()));
    }

    #[test]
    fn refuses_remote_references() {
        let error = check(&json!({"properties":{"a":{"$ref":"https://evil.example/s.json"}}})).unwrap_err();
        assert!(error.contains("/properties/a/$ref") && error.contains("only local"), "{error}");
        assert!(check(&json!({"$dynamicRef":"file:///etc/passwd"})).is_err());
    }

    #[test]
    fn refuses_deep_nesting_huge_enums_and_many_values() {
        let mut deep = json!({"type":"string"});
        for _ in 0..40 {
            deep = json!({"items": deep});
        }
        assert!(check(&deep).unwrap_err().contains("deeper than 32"));
        let values: Vec<Value> = (0..2000).map(Value::from).collect();
        assert!(check(&json!({"enum": values})).unwrap_err().contains("more than 1024 values"));
        let wide: serde_json::Map<String, Value> = (0..25_000).map(|i| (format!("p{i}"), json!(true))).collect();
        assert!(check(&json!({"properties": wide})).unwrap_err().contains("more than 20000 values"));
    }

    #[test]
    fn refuses_reference_chains_past_the_bound() {
        let defs: serde_json::Map<String, Value> =
            (0..200).map(|i| (format!("d{i}"), json!({"$ref": format!("#/$defs/d{}", i + 1)}))).collect();
        assert!(check(&json!({"$defs": defs})).unwrap_err().contains("references"));
    }

    #[test]
    fn refuses_backtracking_only_and_oversized_patterns() {
        // Backreferences and look-around need a backtracking engine: refused.
        assert!(check(&json!({"pattern":"^(a+)\\1$"})).is_err());
        assert!(check(&json!({"patternProperties":{"(?=x)":{}}})).is_err());
        assert!(check(&json!({"pattern":"(\\w{1000}){1000}"})).unwrap_err().contains("compiles to more than"));
        // The classic catastrophic pattern is fine for a linear-time engine.
        assert_eq!(check(&json!({"pattern":"^(a+)+$"})), Ok(()));
    }
}
