//! JSON in answers, tail lines and logs, read with serde_json.

/// A JSON value.
pub type Json = serde_json::Value;

/// `Json::parse(bytes)`: one JSON document, or why not.
pub trait ParseJson: Sized {
    fn parse(bytes: &[u8]) -> Result<Self, String>;
}

impl ParseJson for Json {
    fn parse(bytes: &[u8]) -> Result<Json, String> {
        serde_json::from_slice(bytes).map_err(|error| error.to_string())
    }
}
