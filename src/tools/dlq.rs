//! `sluice dlq list|show|stats`: the dead-letter queue read straight from the data dir
//! (read-only, safe while `serve` runs; the torn tail of a file being written is where
//! each file's reading stops).
//!
//! - `list` prints one JSON line per dead letter, without the body (and its headers),
//!   so a listing never spreads payloads further than needed;
//! - `show` prints whole dead letters, body and headers included;
//! - `stats` counts them by reason, partner and event type.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::path::Path;

use serde_json::{Value, json};

use crate::sidelog::dlq::{self, Filter};

/// Dead letters `list` and `show` print without `--limit`.
pub const LIST_DEFAULT: usize = 1000;

/// `list` (`with_body` false) or `show` (true): up to `limit` dead letters, oldest first.
pub fn print(data_dir: &Path, filter: &Filter, limit: usize, with_body: bool, out: &mut impl Write) -> io::Result<usize> {
    let mut printed = 0;
    let mut line = Vec::new();
    let mut failed = None;
    dlq::read_dir(&data_dir.join(dlq::DLQ_DIR), filter, |letter| {
        line.clear();
        dlq::to_json(letter, &mut line);
        if !with_body && let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(&line) {
            for field in ["body", "body_base64", "headers"] {
                object.remove(field);
            }
            object.insert("body_bytes".to_owned(), json!(letter.body.len()));
            line = Value::Object(object).to_string().into_bytes();
        }
        if line.last() != Some(&b'\n') {
            line.push(b'\n');
        }
        if let Err(error) = out.write_all(&line) {
            failed = Some(error);
            return ControlFlow::Break(());
        }
        printed += 1;
        if printed >= limit { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    })?;
    match failed {
        Some(error) if error.kind() != io::ErrorKind::BrokenPipe => Err(error),
        _ => Ok(printed),
    }
}

/// `stats`: totals by reason, partner and event type, and the bytes on disk.
pub fn stats(data_dir: &Path, filter: &Filter) -> io::Result<Value> {
    let (mut reasons, mut partners, mut types) =
        (BTreeMap::<String, u64>::new(), BTreeMap::<String, u64>::new(), BTreeMap::<String, u64>::new());
    let (mut total, mut first_ms, mut last_ms) = (0u64, i64::MAX, i64::MIN);
    dlq::read_dir(&data_dir.join(dlq::DLQ_DIR), filter, |letter| {
        total += 1;
        *reasons.entry(letter.reason.to_owned()).or_default() += 1;
        *partners.entry(letter.partner.to_owned()).or_default() += 1;
        *types.entry(String::from_utf8_lossy(letter.event_type).into_owned()).or_default() += 1;
        first_ms = first_ms.min(letter.received_ms);
        last_ms = last_ms.max(letter.received_ms);
        ControlFlow::Continue(())
    })?;
    let bytes = dlq::directory_bytes(&data_dir.join(dlq::DLQ_DIR));
    let (first, last) = if total == 0 { (Value::Null, Value::Null) } else { (json!(first_ms), json!(last_ms)) };
    Ok(
        json!({"dead_letters": total, "bytes": bytes, "first_ms": first, "last_ms": last, "by_reason": reasons, "by_partner": partners, "by_event_type": types}),
    )
}
