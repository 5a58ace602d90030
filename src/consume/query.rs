//! The consumer API's request line (SPEC §6): path and query string into a typed
//! [`Route`], or the refusal that names the part at fault. Every byte is hostile:
//! bounded lengths, strict numbers, no percent-decoding beyond what a value can hold.

use crate::constants::{
    BATCH_FLUSH_TIMEOUT_MS_MAX, COMMIT_TIMEOUT_MS_MAX, CONSUMER_QUERY_BYTES_MAX, READ_EVENTS_DEFAULT, READ_EVENTS_MAX, READ_WAIT_MS_MAX,
    REORDER_WINDOW_MS_MAX, STREAM_BATCH_LIMIT_MAX, STREAM_TIMEOUT_MS_MAX, STREAM_UNCOMMITTED_MAX, SUBSCRIPTION_NAME_BYTES_MAX,
    USER_ID_BYTES_MAX,
};
use crate::http::Method;

/// Where a read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    Earliest,
    Latest,
    Offset(u64),
}

/// `GET /v1/topics/{t}/partitions/{p}/events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadQuery {
    pub from: From,
    pub max: u32,
    pub wait_ms: u64,
}

/// The parameters of a subscription stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamQuery {
    pub batch_limit: u32,
    pub batch_flush_timeout_ms: u64,
    pub max_uncommitted: u32,
    /// 0 = no limit.
    pub stream_timeout_ms: u64,
    pub commit_timeout_ms: u64,
    /// 0 = deliver in offset order (no reorder window).
    pub reorder_window_ms: u64,
}

impl Default for StreamQuery {
    fn default() -> StreamQuery {
        StreamQuery {
            batch_limit: 1,
            batch_flush_timeout_ms: 30_000,
            max_uncommitted: 1000,
            stream_timeout_ms: 0,
            commit_timeout_ms: COMMIT_TIMEOUT_MS_MAX,
            reorder_window_ms: 0,
        }
    }
}

/// `GET /v1/topics/{t}/sse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseQuery {
    pub from: From,
    /// Only this user's events (and only its partition is read).
    pub key: Option<Box<[u8]>>,
}

/// A consumer API request, its names still unchecked against topics and subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    ListTopics,
    Read { topic: &'a [u8], partition: u32, query: ReadQuery },
    Sse { topic: &'a [u8], query: SseQuery },
    PutSubscription { name: &'a [u8] },
    Stream { name: &'a [u8], query: StreamQuery },
    Commit { name: &'a [u8] },
    Stats { name: &'a [u8] },
}

/// Why a consumer request line is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// No such consumer path.
    NotFound,
    /// The path exists; the method does not (the `Allow` value).
    Method(&'static [u8]),
    /// A parameter is unknown, repeated or out of its range (message says which).
    Parameter(String),
    /// A subscription name outside 1..=64 of `[A-Za-z0-9_.-]`.
    SubscriptionName,
}

/// Whether `name` may name a subscription.
pub fn valid_subscription_name(name: &[u8]) -> bool {
    (1..=SUBSCRIPTION_NAME_BYTES_MAX).contains(&name.len())
        && name.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && name != b"."
        && name != b".."
}

/// Parses a consumer request (`path` under `/v1/topics` or `/v1/subscriptions/`).
pub fn parse<'a>(method: Method, path: &'a [u8], query: &'a [u8]) -> Result<Route<'a>, QueryError> {
    if query.len() > CONSUMER_QUERY_BYTES_MAX {
        return Err(QueryError::Parameter(format!("the query string is longer than {CONSUMER_QUERY_BYTES_MAX} bytes")));
    }
    let get =
        |route: Route<'a>| if matches!(method, Method::Get | Method::Head) { Ok(route) } else { Err(QueryError::Method(b"GET, HEAD")) };
    // Reads and streams answer later or forever: GET only.
    let get_only = |route: Route<'a>| if method == Method::Get { Ok(route) } else { Err(QueryError::Method(b"GET")) };
    if path == b"/v1/topics" {
        no_parameters(query)?;
        return get(Route::ListTopics);
    }
    if let Some(rest) = path.strip_prefix(b"/v1/topics/") {
        let mut parts = rest.split(|b| *b == b'/');
        let topic = parts.next().unwrap_or_default();
        return match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(b"partitions"), Some(partition), Some(b"events"), None) => {
                let partition = number(partition, u64::from(u32::MAX)).ok_or(QueryError::NotFound)? as u32;
                let query = read_query(query)?;
                get_only(Route::Read { topic, partition, query })
            }
            (Some(b"sse"), None, None, None) => {
                let query = sse_query(query)?;
                get_only(Route::Sse { topic, query })
            }
            _ => Err(QueryError::NotFound),
        };
    }
    let Some(rest) = path.strip_prefix(b"/v1/subscriptions/") else {
        return Err(QueryError::NotFound);
    };
    let mut parts = rest.split(|b| *b == b'/');
    let name = parts.next().unwrap_or_default();
    let tail = (parts.next(), parts.next());
    if tail.1.is_some() {
        return Err(QueryError::NotFound);
    }
    if !valid_subscription_name(name) {
        return Err(QueryError::SubscriptionName);
    }
    match tail.0 {
        None => {
            no_parameters(query)?;
            if method == Method::Put { Ok(Route::PutSubscription { name }) } else { Err(QueryError::Method(b"PUT")) }
        }
        Some(b"events") => {
            let query = stream_query(query)?;
            get_only(Route::Stream { name, query })
        }
        Some(b"cursors") => {
            no_parameters(query)?;
            if method == Method::Post { Ok(Route::Commit { name }) } else { Err(QueryError::Method(b"POST")) }
        }
        Some(b"stats") => {
            no_parameters(query)?;
            get(Route::Stats { name })
        }
        Some(_) => Err(QueryError::NotFound),
    }
}

/// Splits `a=1&b=2` into pairs; a repeated or empty name is refused. Values are taken
/// as they are except `%XX` escapes (for `key`).
/// One `name=value` of a query string.
type Pair<'a> = (&'a [u8], &'a [u8]);

fn pairs(query: &[u8]) -> Result<Vec<Pair<'_>>, QueryError> {
    let mut pairs: Vec<Pair<'_>> = Vec::new();
    for pair in query.split(|b| *b == b'&').filter(|pair| !pair.is_empty()) {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        if name.is_empty() {
            return Err(QueryError::Parameter("a query parameter has no name".to_owned()));
        }
        if pairs.iter().any(|(known, _)| *known == name) {
            return Err(QueryError::Parameter(format!("{} is given twice", printable(name))));
        }
        pairs.push((name, value));
    }
    Ok(pairs)
}

fn no_parameters(query: &[u8]) -> Result<(), QueryError> {
    match pairs(query)?.first() {
        Some((name, _)) => Err(unknown(name)),
        None => Ok(()),
    }
}

fn unknown(name: &[u8]) -> QueryError {
    QueryError::Parameter(format!("{} is not a parameter of this path", printable(name)))
}

/// At most 64 bytes of `bytes`, non-printable bytes as `?`, for messages.
fn printable(bytes: &[u8]) -> String {
    bytes.iter().take(64).map(|b| if b.is_ascii_graphic() { char::from(*b) } else { '?' }).collect()
}

/// A decimal number of at most 20 digits up to `max`; no sign, no spaces.
fn number(text: &[u8], max: u64) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse::<u64>().ok().filter(|value| *value <= max)
}

fn ranged(name: &str, text: &[u8], min: u64, max: u64) -> Result<u64, QueryError> {
    number(text, max)
        .filter(|value| *value >= min)
        .ok_or_else(|| QueryError::Parameter(format!("{name} must be a whole number in {min}..={max}")))
}

fn from(text: &[u8]) -> Result<From, QueryError> {
    match text {
        b"earliest" => Ok(From::Earliest),
        b"latest" => Ok(From::Latest),
        offset => number(offset, u64::MAX - 1)
            .map(From::Offset)
            .ok_or_else(|| QueryError::Parameter("from must be earliest, latest or an offset".to_owned())),
    }
}

fn read_query(query: &[u8]) -> Result<ReadQuery, QueryError> {
    let mut read = ReadQuery { from: From::Earliest, max: READ_EVENTS_DEFAULT, wait_ms: 0 };
    for (name, value) in pairs(query)? {
        match name {
            b"from" => read.from = from(value)?,
            b"max" => read.max = ranged("max", value, 1, u64::from(READ_EVENTS_MAX))? as u32,
            b"wait_ms" => read.wait_ms = ranged("wait_ms", value, 0, READ_WAIT_MS_MAX)?,
            other => return Err(unknown(other)),
        }
    }
    Ok(read)
}

fn sse_query(query: &[u8]) -> Result<SseQuery, QueryError> {
    let mut sse = SseQuery { from: From::Latest, key: None };
    for (name, value) in pairs(query)? {
        match name {
            b"from" => sse.from = from(value)?,
            b"key" => sse.key = Some(percent_decoded(value, USER_ID_BYTES_MAX)?),
            other => return Err(unknown(other)),
        }
    }
    Ok(sse)
}

fn stream_query(query: &[u8]) -> Result<StreamQuery, QueryError> {
    let mut stream = StreamQuery::default();
    for (name, value) in pairs(query)? {
        match name {
            b"batch_limit" => stream.batch_limit = ranged("batch_limit", value, 1, u64::from(STREAM_BATCH_LIMIT_MAX))? as u32,
            b"batch_flush_timeout_ms" => {
                stream.batch_flush_timeout_ms = ranged("batch_flush_timeout_ms", value, 1, BATCH_FLUSH_TIMEOUT_MS_MAX)?;
            }
            b"max_uncommitted" => stream.max_uncommitted = ranged("max_uncommitted", value, 1, u64::from(STREAM_UNCOMMITTED_MAX))? as u32,
            b"stream_timeout_ms" => stream.stream_timeout_ms = ranged("stream_timeout_ms", value, 0, STREAM_TIMEOUT_MS_MAX)?,
            b"commit_timeout_ms" => stream.commit_timeout_ms = ranged("commit_timeout_ms", value, 1000, COMMIT_TIMEOUT_MS_MAX)?,
            b"reorder_window_ms" => stream.reorder_window_ms = ranged("reorder_window_ms", value, 0, REORDER_WINDOW_MS_MAX)?,
            other => return Err(unknown(other)),
        }
    }
    Ok(stream)
}

/// `%XX`-decodes `value` (a `+` stays a `+`); at most `max` decoded bytes, none of them
/// a control byte.
fn percent_decoded(value: &[u8], max: usize) -> Result<Box<[u8]>, QueryError> {
    let bad = || QueryError::Parameter(format!("key must be 1..={max} bytes (percent-encoded), without control characters"));
    let mut out = Vec::with_capacity(value.len().min(max));
    let mut index = 0;
    while index < value.len() {
        let byte = if value[index] == b'%' {
            let hex = value.get(index + 1..index + 3).ok_or_else(bad)?;
            let digit = |b: u8| (b as char).to_digit(16);
            let (high, low) = (digit(hex[0]).ok_or_else(bad)?, digit(hex[1]).ok_or_else(bad)?);
            index += 3;
            (high * 16 + low) as u8
        } else {
            index += 1;
            value[index - 1]
        };
        if byte.is_ascii_control() || out.len() == max {
            return Err(bad());
        }
        out.push(byte);
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out.into_boxed_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_get(path: &str, query: &str) -> Result<Route<'static>, QueryError> {
        let path: &'static [u8] = Box::leak(path.as_bytes().to_vec().into_boxed_slice());
        let query: &'static [u8] = Box::leak(query.as_bytes().to_vec().into_boxed_slice());
        parse(Method::Get, path, query)
    }

    #[test]
    fn partition_reads_take_from_max_and_wait() {
        let route = parse_get("/v1/topics/wallet/partitions/3/events", "from=17&max=50&wait_ms=2000").unwrap();
        assert_eq!(
            route,
            Route::Read { topic: b"wallet", partition: 3, query: ReadQuery { from: From::Offset(17), max: 50, wait_ms: 2000 } }
        );
        let defaults = parse_get("/v1/topics/t/partitions/0/events", "").unwrap();
        assert_eq!(defaults, Route::Read { topic: b"t", partition: 0, query: ReadQuery { from: From::Earliest, max: 1000, wait_ms: 0 } });
    }

    #[test]
    fn out_of_range_repeated_and_unknown_parameters_are_refused() {
        for query in
            ["max=0", "max=10001", "wait_ms=30001", "from=-1", "from=1x", "max=1&max=2", "frm=1", "=1", "max=99999999999999999999999"]
        {
            assert!(matches!(parse_get("/v1/topics/t/partitions/0/events", query), Err(QueryError::Parameter(_))), "{query}");
        }
    }

    #[test]
    fn paths_and_methods() {
        assert_eq!(parse_get("/v1/topics", "").unwrap(), Route::ListTopics);
        assert_eq!(parse_get("/v1/topics/t/partitions/x/events", ""), Err(QueryError::NotFound));
        assert_eq!(parse_get("/v1/topics/t/other", ""), Err(QueryError::NotFound));
        assert_eq!(parse(Method::Post, b"/v1/topics", b""), Err(QueryError::Method(b"GET, HEAD")));
        assert_eq!(parse(Method::Put, b"/v1/subscriptions/s1", b"").unwrap(), Route::PutSubscription { name: b"s1" });
        assert_eq!(parse(Method::Get, b"/v1/subscriptions/s1", b""), Err(QueryError::Method(b"PUT")));
        assert_eq!(parse(Method::Post, b"/v1/subscriptions/s1/cursors", b"").unwrap(), Route::Commit { name: b"s1" });
        assert_eq!(parse(Method::Get, b"/v1/subscriptions/a%2Fb/stats", b""), Err(QueryError::SubscriptionName));
        assert_eq!(parse(Method::Get, b"/v1/subscriptions/s/stats/x", b""), Err(QueryError::NotFound));
    }

    #[test]
    fn stream_parameters() {
        let route =
            parse_get("/v1/subscriptions/s/events", "batch_limit=10&max_uncommitted=20&commit_timeout_ms=5000&reorder_window_ms=60000");
        let Ok(Route::Stream { query, .. }) = route else { panic!("{route:?}") };
        assert_eq!((query.batch_limit, query.max_uncommitted, query.commit_timeout_ms, query.reorder_window_ms), (10, 20, 5000, 60000));
        assert!(parse_get("/v1/subscriptions/s/events", "commit_timeout_ms=61000").is_err());
    }

    #[test]
    fn sse_keys_are_percent_decoded() {
        let Ok(Route::Sse { query, .. }) = parse_get("/v1/topics/t/sse", "key=u%5F1&from=earliest") else { panic!() };
        assert_eq!(query, SseQuery { from: From::Earliest, key: Some(Box::from(&b"u_1"[..])) });
        for bad in ["key=", "key=%0a", "key=%zz", "key=%4"] {
            assert!(parse_get("/v1/topics/t/sse", bad).is_err(), "{bad}");
        }
    }
}
