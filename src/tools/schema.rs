//! `sluice schema add|list|show|check|delete|flag`: the schema registry through the
//! admin API of the running server (so the server stays the registry's one writer and
//! shards pick every change up without a restart).
//!
//! Exit status: 0 done (or compatible), 1 refused by the registry (incompatible,
//! invalid, unknown) or the server unreachable, 2 bad usage.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use serde_json::{Value, json};

use crate::tools::admin_client::{self, AdminCallError};
use crate::tools::cli::SchemaAction;

/// Why a schema command failed.
#[derive(Debug, thiserror::Error)]
pub enum SchemaCommandError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Call(#[from] AdminCallError),
    /// The registry refused: its code and message (and reasons, printed already).
    #[error("{code}: {message}")]
    Refused { code: String, message: String },
    #[error("cannot write the answer: {0}")]
    Output(#[from] std::io::Error),
}

fn read_schema(file: &Path) -> Result<Value, SchemaCommandError> {
    let bytes = std::fs::read(file).map_err(|error| SchemaCommandError::Usage(format!("cannot read {}: {error}", file.display())))?;
    serde_json::from_slice(&bytes).map_err(|error| SchemaCommandError::Usage(format!("{} is not JSON: {error}", file.display())))
}

/// Builds the settings body of `flag` from the subject as the server has it.
fn flag_body(current: &Value, mode: Option<&str>, enable: &[u32], disable: &[u32], retire: &[u32], dual_write: Option<bool>) -> Value {
    let mut majors = current.get("majors").cloned().filter(Value::is_object).unwrap_or_else(|| json!({}));
    for (list, state) in [(enable, "on"), (disable, "off"), (retire, "retired")] {
        for major in list {
            majors[major.to_string()] = json!(state);
        }
    }
    let mode = mode.map(str::to_owned).or_else(|| current.get("mode_set").and_then(Value::as_str).map(str::to_owned));
    let dual_write = dual_write.unwrap_or_else(|| current.get("dual_write").and_then(Value::as_bool).unwrap_or(false));
    let mut body = json!({"majors": majors, "dual_write": dual_write});
    if let Some(mode) = mode {
        body["mode"] = json!(mode);
    }
    body
}

/// Runs one `sluice schema` action against the admin API at `admin`.
pub fn run(admin: SocketAddr, action: &SchemaAction, out: &mut impl Write) -> Result<(), SchemaCommandError> {
    let (method, path, body) = match action {
        SchemaAction::List => ("GET", "/admin/schemas".to_owned(), None),
        SchemaAction::Show { event_type, version: None } => ("GET", format!("/admin/schemas/{event_type}"), None),
        SchemaAction::Show { event_type, version: Some(version) } => {
            ("GET", format!("/admin/schemas/{event_type}/versions/{version}"), None)
        }
        SchemaAction::Add { event_type, version, file } | SchemaAction::Check { event_type, version, file } => {
            let body = json!({"version": version, "schema": read_schema(file)?});
            let suffix = if matches!(action, SchemaAction::Check { .. }) { "/check" } else { "" };
            ("POST", format!("/admin/schemas/{event_type}{suffix}"), Some(body))
        }
        SchemaAction::Delete { event_type, version } => ("DELETE", format!("/admin/schemas/{event_type}/versions/{version}"), None),
        SchemaAction::Flag { event_type, mode, enable_major, disable_major, retire_major, dual_write } => {
            let (status, current) = admin_client::call(admin, "GET", &format!("/admin/schemas/{event_type}"), None)?;
            let current: Value = if status == 200 { serde_json::from_slice(&current).unwrap_or(Value::Null) } else { Value::Null };
            let dual_write = dual_write.as_deref().map(|text| text == "on");
            let body = flag_body(&current, mode.as_deref(), enable_major, disable_major, retire_major, dual_write);
            ("PUT", format!("/admin/schemas/{event_type}/settings"), Some(body))
        }
    };
    let body = body.map(|body| body.to_string().into_bytes());
    let (status, answer) = admin_client::call(admin, method, &path, body.as_deref())?;
    let parsed: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        if !answer.is_empty() {
            writeln!(out, "{}", serde_json::to_string_pretty(&parsed).unwrap_or_default())?;
        }
        return Ok(());
    }
    let error = &parsed["error"];
    for reason in error["reasons"].as_array().into_iter().flatten() {
        eprintln!(
            "  {} at {}: {}",
            reason["rule"].as_str().unwrap_or(""),
            reason["path"].as_str().unwrap_or(""),
            reason["message"].as_str().unwrap_or("")
        );
    }
    Err(SchemaCommandError::Refused {
        code: error["code"].as_str().unwrap_or("error").to_owned(),
        message: error["message"].as_str().map_or_else(|| format!("HTTP {status}"), str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_keeps_what_it_does_not_change() {
        let current = json!({"mode":"backward","mode_set":"full","majors":{"2":"on"},"dual_write":true});
        let body = flag_body(&current, None, &[3], &[], &[1], None);
        assert_eq!(body, json!({"majors":{"2":"on","3":"on","1":"retired"},"dual_write":true,"mode":"full"}));
        let fresh = flag_body(&Value::Null, Some("none"), &[], &[2], &[], Some(false));
        assert_eq!(fresh, json!({"majors":{"2":"off"},"dual_write":false,"mode":"none"}));
    }
}
