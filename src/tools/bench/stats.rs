//! What one client thread counts, merged across threads at the end of a run.

#![forbid(unsafe_code)]

use hdrhistogram::Histogram;

use crate::constants::{BENCH_LATENCY_NS_MAX, BENCH_LATENCY_NS_MIN, BENCH_LATENCY_SIGNIFICANT_DIGITS};
use crate::tools::bench::plan::RequestKind;

/// Status codes are counted in a flat table; httparse only accepts three digits.
pub const STATUS_CODES: usize = 1000;

/// Connection-level failures, by kind. Each is one event, not one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The server refused the connection (ECONNREFUSED).
    ConnectRefused,
    /// Any other connect failure (unreachable, connect timeout, ...).
    ConnectFailed,
    /// The connection was reset or broke while sending or receiving.
    Reset,
    /// The server closed the connection with requests unanswered and no `Connection: close`.
    Eof,
    /// No answer arrived within `--timeout` while requests were waiting.
    Timeout,
    /// The bytes received were not a valid HTTP/1.1 response stream.
    Parse,
    /// The TLS handshake failed or the TLS stream broke (bad record, alert).
    Tls,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::ConnectRefused,
        ErrorKind::ConnectFailed,
        ErrorKind::Reset,
        ErrorKind::Eof,
        ErrorKind::Timeout,
        ErrorKind::Parse,
        ErrorKind::Tls,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::ConnectRefused => "connect_refused",
            ErrorKind::ConnectFailed => "connect_failed",
            ErrorKind::Reset => "reset",
            ErrorKind::Eof => "eof",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Parse => "parse",
            ErrorKind::Tls => "tls",
        }
    }
}

/// Latency histogram in nanoseconds, 1 ns .. 60 s, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(BENCH_LATENCY_NS_MIN, BENCH_LATENCY_NS_MAX, BENCH_LATENCY_SIGNIFICANT_DIGITS) {
        Ok(histogram) => histogram,
        // The bounds are constants that HdrHistogram accepts; a test covers it.
        Err(error) => unreachable!("latency histogram bounds rejected: {error:?}"),
    }
}

/// Counts of the measured part of a run (requests started after the warm-up).
#[derive(Debug, Clone)]
pub struct Measured {
    pub latency: Histogram<u64>,
    /// Requests written, by kind.
    pub sent: [u64; 3],
    /// Answers, by request kind and status code.
    pub status: [Box<[u64; STATUS_CODES]>; 3],
    /// Events in requests answered 2xx (batch size × 2xx answers).
    pub events_ok: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl Default for Measured {
    fn default() -> Self {
        Measured {
            latency: latency_histogram(),
            sent: [0; 3],
            status: std::array::from_fn(|_| Box::new([0; STATUS_CODES])),
            events_ok: 0,
            bytes_sent: 0,
            bytes_received: 0,
        }
    }
}

impl Measured {
    pub fn record(&mut self, kind: RequestKind, status: u16, latency_ns: u64, events: u64) {
        self.latency.saturating_record(latency_ns.max(BENCH_LATENCY_NS_MIN));
        self.status[kind.index()][usize::from(status) % STATUS_CODES] += 1;
        if (200..300).contains(&status) {
            self.events_ok += events;
        }
    }

    pub fn completed(&self) -> u64 {
        self.status.iter().map(|codes| codes.iter().sum::<u64>()).sum()
    }

    pub fn completed_of(&self, kind: RequestKind) -> u64 {
        self.status[kind.index()].iter().sum()
    }

    pub fn merge(&mut self, other: &Measured) {
        // Same bounds on both sides, so adding cannot fail; saturate rather than panic.
        if self.latency.add(&other.latency).is_err() {
            for value in other.latency.iter_recorded() {
                self.latency.saturating_record_n(value.value_iterated_to(), value.count_at_value());
            }
        }
        for kind in 0..3 {
            self.sent[kind] += other.sent[kind];
            for (mine, theirs) in self.status[kind].iter_mut().zip(other.status[kind].iter()) {
                *mine += theirs;
            }
        }
        self.events_ok += other.events_ok;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
    }
}

/// Everything one thread reports at the end.
#[derive(Debug, Clone, Default)]
pub struct ThreadTotals {
    pub measured: Measured,
    /// Requests started during the warm-up, and their answers (not in `measured`).
    pub warmup_sent: u64,
    pub warmup_completed: u64,
    /// Requests written and never answered (lost with their connection, or still
    /// waiting when the run ended).
    pub unanswered: u64,
    pub errors: [u64; ErrorKind::ALL.len()],
    /// Connections established, re-established after a close, and closed by the server
    /// with `Connection: close` (or an idle close between requests).
    pub connections_opened: u64,
    pub reconnects: u64,
    pub closed_by_server: u64,
    /// Load connections open when the measured run started.
    pub load_connections_ready: u64,
    /// Open loop: the furthest behind schedule a request was written, in ns, and how
    /// many were written more than a millisecond late.
    pub max_lag_ns: u64,
    pub late_requests: u64,
    pub idle: IdleTotals,
    /// The pool ran out before the end of the run (closed loop).
    pub pool_exhausted: bool,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct IdleTotals {
    pub ready: u64,
    pub open_at_end: u64,
    pub pings: u64,
    pub ping_failures: u64,
    pub reopened: u64,
}

impl ThreadTotals {
    pub fn count_error(&mut self, kind: ErrorKind) {
        self.errors[kind as usize] += 1;
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub fn merge(&mut self, other: &ThreadTotals) {
        self.measured.merge(&other.measured);
        self.warmup_sent += other.warmup_sent;
        self.warmup_completed += other.warmup_completed;
        self.unanswered += other.unanswered;
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine += theirs;
        }
        self.connections_opened += other.connections_opened;
        self.reconnects += other.reconnects;
        self.closed_by_server += other.closed_by_server;
        self.load_connections_ready += other.load_connections_ready;
        self.max_lag_ns = self.max_lag_ns.max(other.max_lag_ns);
        self.late_requests += other.late_requests;
        self.idle.ready += other.idle.ready;
        self.idle.open_at_end += other.idle.open_at_end;
        self.idle.pings += other.idle.pings;
        self.idle.ping_failures += other.idle.ping_failures;
        self.idle.reopened += other.idle.reopened;
        self.pool_exhausted |= other.pool_exhausted;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_covers_one_nanosecond_to_a_minute() {
        let mut histogram = latency_histogram();
        histogram.saturating_record(1);
        histogram.saturating_record(60_000_000_000);
        histogram.saturating_record(u64::MAX);
        assert_eq!(histogram.len(), 3);
        assert!(histogram.max() >= 59_900_000_000);
    }

    #[test]
    fn merge_adds_everything() {
        let mut a = ThreadTotals::default();
        let mut b = ThreadTotals::default();
        a.measured.record(RequestKind::Unique, 202, 1000, 10);
        b.measured.record(RequestKind::BadSignature, 401, 5000, 10);
        b.count_error(ErrorKind::Reset);
        b.max_lag_ns = 7;
        a.merge(&b);
        assert_eq!(a.measured.completed(), 2);
        assert_eq!(a.measured.events_ok, 10);
        assert_eq!(a.measured.status[RequestKind::BadSignature.index()][401], 1);
        assert_eq!(a.measured.latency.len(), 2);
        assert_eq!(a.errors_total(), 1);
        assert_eq!(a.max_lag_ns, 7);
    }
}
