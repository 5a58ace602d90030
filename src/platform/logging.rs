//! Structured logs on stderr: one line per event, JSON when stderr is not a terminal
//! (the journal, a file, a pipe) and `sluice: message key=value` text on a terminal.
//!
//! Nothing on the request path logs, except sampled rejections at debug level
//! ([`Sampler`]): logging is for the life of the process (start, reload, drain,
//! recovery, stalls), and `/metrics` is for traffic. Each line is built in a
//! thread-local buffer and written with one `write` to the unbuffered stderr, so a line
//! is never interleaved with another and nothing waits in a buffer at exit.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::{IsTerminal, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// A line longer than this is cut (a runaway value must not make a log line unbounded).
const LOG_LINE_BYTES_MAX: usize = 16 * 1024;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// JSON when stderr is not a terminal, text when it is.
    Auto,
    /// One JSON object per line: `ts`, `level`, `target`, `msg`, then the fields.
    Json,
    /// `sluice: message key=value ...`, warnings and errors marked.
    Text,
}

#[derive(Debug, thiserror::Error)]
pub enum LogInitError {
    #[error("--log-level {level:?}: {message}")]
    Level { level: String, message: String },
    #[error("a logger is already installed")]
    AlreadyInstalled,
}

/// The level a word names, with the aliases people type (`warning`, `errors`,
/// `verbose`, ...); `None` for any other word.
fn level_word(word: &str) -> Option<&'static str> {
    Some(match word.to_ascii_lowercase().as_str() {
        "off" | "none" | "quiet" | "silent" => "off",
        "error" | "errors" | "err" | "fatal" | "critical" => "error",
        "warn" | "warning" | "warnings" => "warn",
        "info" | "information" | "informational" | "notice" => "info",
        "debug" | "verbose" => "debug",
        "trace" | "all" => "trace",
        _ => return None,
    })
}

/// `--log-level` as the filter understands it: each directive's level word normalised.
/// A bare word must be a level: the filter would take any other word for a target name
/// and silence everything else, the fatal error that stops `serve` included.
fn filter_directives(level: &str) -> Result<String, LogInitError> {
    let refuse = |message: String| LogInitError::Level { level: level.to_owned(), message };
    let mut out = Vec::new();
    for directive in level.split(',').map(str::trim).filter(|directive| !directive.is_empty()) {
        match directive.rsplit_once('=') {
            Some((target, word)) => {
                let level = level_word(word).ok_or_else(|| refuse(format!("{word:?} is not a level")))?;
                out.push(format!("{target}={level}"));
            }
            None => match level_word(directive) {
                Some(level) => out.push(level.to_owned()),
                // A module path on its own (all of its levels) is a directive too.
                None if directive.contains("::") || directive.contains('[') => out.push(directive.to_owned()),
                None => {
                    return Err(refuse(format!(
                        "{directive:?} is not a level: use error, warn, info, debug, trace or off, or TARGET=LEVEL directives"
                    )));
                }
            },
        }
    }
    if out.is_empty() {
        return Err(refuse("no level given".to_owned()));
    }
    Ok(out.join(","))
}

/// Installs the process-wide logger. `level` is a level (`error`..`trace`, `off`, or an
/// alias such as `warning`) or a filter directive list (`info,sluice::shard=debug`).
pub fn init(level: &str, format: LogFormat) -> Result<(), LogInitError> {
    let directives = filter_directives(level)?;
    let filter = EnvFilter::builder()
        .parse(&directives)
        .map_err(|error| LogInitError::Level { level: level.to_owned(), message: error.to_string() })?;
    let json = match format {
        LogFormat::Auto => !std::io::stderr().is_terminal(),
        LogFormat::Json => true,
        LogFormat::Text => false,
    };
    let subscriber = tracing_subscriber::registry().with(filter).with(LineWriter { json });
    tracing::subscriber::set_global_default(subscriber).map_err(|_| LogInitError::AlreadyInstalled)
}

/// The layer that turns events into lines on stderr.
struct LineWriter {
    json: bool,
}

impl<S: Subscriber> Layer<S> for LineWriter {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        thread_local! {
            static LINE: RefCell<String> = const { RefCell::new(String::new()) };
        }
        LINE.with_borrow_mut(|line| {
            line.clear();
            if self.json {
                format_json(line, event, crate::platform::time::now_unix_ms());
            } else {
                format_text(line, event);
            }
            if line.len() > LOG_LINE_BYTES_MAX {
                let mut cut = LOG_LINE_BYTES_MAX;
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                line.truncate(cut);
                line.push_str(if self.json { "\"}" } else { " …" });
            }
            line.push('\n');
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        });
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// `sluice: message key=value key="spaced value"`; warnings and errors say so.
fn format_text(line: &mut String, event: &Event<'_>) {
    line.push_str("sluice: ");
    match *event.metadata().level() {
        Level::ERROR => line.push_str("error: "),
        Level::WARN => line.push_str("warning: "),
        _ => {}
    }
    let mut visitor = TextFields { line, message_done: false, pending: Vec::new() };
    event.record(&mut visitor);
    visitor.finish();
}

struct TextFields<'a> {
    line: &'a mut String,
    message_done: bool,
    /// Fields seen before the message (tracing records the message first, but a
    /// visitor must not rely on it).
    pending: Vec<(&'static str, String)>,
}

impl TextFields<'_> {
    fn field(&mut self, name: &'static str, value: String) {
        if self.message_done {
            push_text_field(self.line, name, &value);
        } else {
            self.pending.push((name, value));
        }
    }

    fn finish(&mut self) {
        for (name, value) in std::mem::take(&mut self.pending) {
            push_text_field(self.line, name, &value);
        }
    }
}

fn push_text_field(line: &mut String, name: &str, value: &str) {
    let quoted = value.is_empty() || value.contains([' ', '"', '=']) || value.contains(char::is_control);
    if quoted {
        let _ = write!(line, " {name}={value:?}");
    } else {
        let _ = write!(line, " {name}={value}");
    }
}

impl Visit for TextFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.line.push_str(value);
            self.message_done = true;
        } else {
            self.field(field.name(), value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.line, "{value:?}");
            self.message_done = true;
            let pending = std::mem::take(&mut self.pending);
            for (name, value) in pending {
                push_text_field(self.line, name, &value);
            }
        } else {
            self.field(field.name(), format!("{value:?}"));
        }
    }
}

/// `{"ts":"…","level":"info","target":"sluice::shard","msg":"…","key":value,…}`.
fn format_json(line: &mut String, event: &Event<'_>, now_ms: i64) {
    let metadata = event.metadata();
    let ts = crate::platform::time::format_rfc3339_ms(now_ms);
    line.push_str("{\"ts\":\"");
    line.push_str(std::str::from_utf8(&ts).unwrap_or(""));
    line.push_str("\",\"level\":\"");
    line.push_str(level_name(metadata.level()));
    line.push_str("\",\"target\":");
    push_json_string(line, metadata.target());
    let mut visitor = JsonFields { line };
    event.record(&mut visitor);
    line.push('}');
}

struct JsonFields<'a> {
    line: &'a mut String,
}

impl JsonFields<'_> {
    fn key(&mut self, field: &Field) {
        self.line.push(',');
        push_json_string(self.line, if field.name() == "message" { "msg" } else { field.name() });
        self.line.push(':');
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_json_string(self.line, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            let _ = write!(self.line, "{value}");
        } else {
            self.line.push_str("null");
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        push_json_string(self.line, &format!("{value:?}"));
    }
}

/// Appends `text` as a JSON string (RFC 8259 escapes; control bytes as \u00XX).
fn push_json_string(line: &mut String, text: &str) {
    line.push('"');
    for c in text.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(line, "\\u{:04x}", c as u32);
            }
            c => line.push(c),
        }
    }
    line.push('"');
}

/// Lets through at most one event per `period_ms` and counts the ones held back, so a
/// flood of bad requests costs one line per period (per shard), not one per request.
#[derive(Debug)]
pub struct Sampler {
    period_ms: u64,
    next_ms: u64,
    suppressed: u64,
}

impl Sampler {
    pub const fn new(period_ms: u64) -> Sampler {
        Sampler { period_ms, next_ms: 0, suppressed: 0 }
    }

    /// A sampler for a `thread_local!` at a call site with nowhere to keep one (one per
    /// shard thread), at `LOG_SAMPLE_PERIOD_MS`; use it with [`admit_on_this_thread`].
    pub const fn per_thread() -> RefCell<Sampler> {
        RefCell::new(Sampler::new(crate::constants::LOG_SAMPLE_PERIOD_MS))
    }

    /// `Some(held back since the last one)` when an event may be logged at `now_ms`.
    pub fn admit(&mut self, now_ms: u64) -> Option<u64> {
        if now_ms < self.next_ms {
            self.suppressed += 1;
            return None;
        }
        self.next_ms = now_ms + self.period_ms;
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// [`Sampler::admit`] now, on this thread's sampler in `key`.
pub fn admit_on_this_thread(key: &'static std::thread::LocalKey<RefCell<Sampler>>) -> Option<u64> {
    let now_ms = crate::platform::time::now_unix_ms().max(0) as u64;
    key.with_borrow_mut(|sampler| sampler.admit(now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--log-level warning` parsed as a target named "warning" and silenced every line,
    /// the fatal configuration error included.
    #[test]
    fn level_aliases_are_levels_and_unknown_bare_words_are_refused() {
        assert_eq!(filter_directives("warning").unwrap(), "warn");
        assert_eq!(filter_directives("errors").unwrap(), "error");
        assert_eq!(filter_directives("Verbose").unwrap(), "debug");
        assert_eq!(filter_directives("warning,sluice::shard=verbose").unwrap(), "warn,sluice::shard=debug");
        assert_eq!(filter_directives("info,sluice::shard").unwrap(), "info,sluice::shard");
        for bad in ["loud", "", "sluice::shard=loud", "info,chatty"] {
            assert!(filter_directives(bad).is_err(), "{bad:?}");
        }
    }
    use std::sync::{Arc, Mutex};

    /// A layer that formats like [`LineWriter`] into a shared buffer.
    struct Capture {
        json: bool,
        lines: Arc<Mutex<Vec<String>>>,
    }

    impl<S: Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
            let mut line = String::new();
            if self.json {
                format_json(&mut line, event, 1_763_000_000_123);
            } else {
                format_text(&mut line, event);
            }
            self.lines.lock().unwrap().push(line);
        }
    }

    fn capture(json: bool, emit: impl FnOnce()) -> Vec<String> {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Capture { json, lines: Arc::clone(&lines) });
        tracing::subscriber::with_default(subscriber, emit);
        Arc::try_unwrap(lines).unwrap().into_inner().unwrap()
    }

    #[test]
    fn text_lines_read_like_the_old_stderr_lines() {
        let lines = capture(false, || {
            tracing::info!(ingest = "127.0.0.1:8080", shards = 2, "listening");
            tracing::warn!(file = "/etc/sluice/keys.toml", "reload refused");
            tracing::error!(error = "disk full", "shard stopped");
        });
        assert_eq!(lines[0], "sluice: listening ingest=127.0.0.1:8080 shards=2");
        assert_eq!(lines[1], "sluice: warning: reload refused file=/etc/sluice/keys.toml");
        assert_eq!(lines[2], "sluice: error: shard stopped error=\"disk full\"");
    }

    #[test]
    fn json_lines_are_objects_with_typed_fields() {
        let lines = capture(true, || {
            tracing::info!(shards = 2u64, ok = true, path = "a \"quoted\"\nname", "listening");
        });
        let value: serde_json::Value = serde_json::from_str(&lines[0]).expect("valid JSON");
        assert_eq!(value["ts"], "2025-11-13T02:13:20.123Z");
        assert_eq!(value["level"], "info");
        assert_eq!(value["msg"], "listening");
        assert_eq!(value["shards"], 2);
        assert_eq!(value["ok"], true);
        assert_eq!(value["path"], "a \"quoted\"\nname");
        assert!(value["target"].as_str().unwrap().starts_with("sluice"));
    }

    #[test]
    fn json_strings_escape_control_bytes() {
        let mut line = String::new();
        push_json_string(&mut line, "a\u{1}b\\");
        assert_eq!(line, "\"a\\u0001b\\\\\"");
        assert_eq!(serde_json::from_str::<String>(&line).unwrap(), "a\u{1}b\\");
    }

    #[test]
    fn a_bad_level_is_refused_with_its_text() {
        let error = init("info,=nonsense[", LogFormat::Text).unwrap_err();
        assert!(error.to_string().contains("nonsense"), "{error}");
    }

    #[test]
    fn the_sampler_lets_one_through_per_period_and_counts_the_rest() {
        let mut sampler = Sampler::new(1000);
        assert_eq!(sampler.admit(5_000), Some(0));
        assert_eq!(sampler.admit(5_001), None);
        assert_eq!(sampler.admit(5_999), None);
        assert_eq!(sampler.admit(6_000), Some(2));
        assert_eq!(sampler.admit(7_500), Some(0));
    }
}
