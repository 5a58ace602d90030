//! What one client thread counts, merged across threads at the end of a run.

#![forbid(unsafe_code)]

use hdrhistogram::Histogram;

use crate::constants::{BENCH_LATENCY_NS_MAX, BENCH_LATENCY_NS_MIN, BENCH_LATENCY_SIGNIFICANT_DIGITS};
use crate::tools::bench::plan::{RequestClass, RequestKind};
use crate::tools::bench::timeline::Timeline;

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

const KINDS: usize = RequestKind::ALL.len();
const CLASSES: usize = RequestClass::ALL.len();

/// One answer to a request of the measured part.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    pub kind: RequestKind,
    pub class: RequestClass,
    pub status: u16,
    /// From the request's start to the answer's arrival.
    pub latency_ns: u64,
    /// When the answer arrived, in nanoseconds since the end of the warm-up.
    pub at_ns: u64,
    /// Events in the request.
    pub events: u64,
}

/// Counts of the measured part of a run (requests started after the warm-up).
#[derive(Debug, Clone)]
pub struct Measured {
    pub latency: Histogram<u64>,
    /// The same answers, by request class.
    pub class_latency: [Histogram<u64>; CLASSES],
    /// Requests written, by kind and class.
    pub sent: [[u64; CLASSES]; KINDS],
    /// Answers, by request kind, class and status code.
    pub status: [[Box<[u64; STATUS_CODES]>; CLASSES]; KINDS],
    /// Requests never answered (lost with their connection, or still waiting when the
    /// run ended), by class.
    pub unanswered: [u64; CLASSES],
    /// Events in requests answered 2xx (batch size × 2xx answers).
    pub events_ok: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub timeline: Timeline,
}

impl Default for Measured {
    fn default() -> Self {
        Measured {
            latency: latency_histogram(),
            class_latency: std::array::from_fn(|_| latency_histogram()),
            sent: [[0; CLASSES]; KINDS],
            status: std::array::from_fn(|_| std::array::from_fn(|_| Box::new([0; STATUS_CODES]))),
            unanswered: [0; CLASSES],
            events_ok: 0,
            bytes_sent: 0,
            bytes_received: 0,
            timeline: Timeline::default(),
        }
    }
}

/// Adds `other` into `into`. Same bounds on both sides, so adding cannot fail; saturate
/// rather than panic if it ever did.
fn add_histogram(into: &mut Histogram<u64>, other: &Histogram<u64>) {
    if into.add(other).is_err() {
        for value in other.iter_recorded() {
            into.saturating_record_n(value.value_iterated_to(), value.count_at_value());
        }
    }
}

impl Measured {
    pub fn record(&mut self, answer: &Answer) {
        let latency_ns = answer.latency_ns.max(BENCH_LATENCY_NS_MIN);
        self.latency.saturating_record(latency_ns);
        self.class_latency[answer.class.index()].saturating_record(latency_ns);
        self.status[answer.kind.index()][answer.class.index()][usize::from(answer.status) % STATUS_CODES] += 1;
        if (200..300).contains(&answer.status) {
            self.events_ok += answer.events;
        }
        self.timeline.answered(answer.at_ns, answer.class, answer.status, latency_ns);
    }

    /// A request of `class` was written `at_ns` after the end of the warm-up.
    pub fn record_sent(&mut self, kind: RequestKind, class: RequestClass, at_ns: u64) {
        self.sent[kind.index()][class.index()] += 1;
        self.timeline.sent(at_ns, class);
    }

    /// A request of `class` was found lost `at_ns` after the end of the warm-up.
    pub fn record_unanswered(&mut self, class: RequestClass, at_ns: u64) {
        self.unanswered[class.index()] += 1;
        self.timeline.unanswered(at_ns, class);
    }

    pub fn completed(&self) -> u64 {
        self.status.iter().flatten().map(|codes| codes.iter().sum::<u64>()).sum()
    }

    /// Answers by status code, summed over the (kind, class) cells `pick` selects.
    pub fn codes(&self, pick: impl Fn(RequestKind, RequestClass) -> bool) -> Vec<u64> {
        let mut sum = vec![0u64; STATUS_CODES];
        for kind in RequestKind::ALL {
            for class in RequestClass::ALL {
                if pick(kind, class) {
                    for (total, count) in sum.iter_mut().zip(self.status[kind.index()][class.index()].iter()) {
                        *total += count;
                    }
                }
            }
        }
        sum
    }

    /// Requests written, summed over the (kind, class) cells `pick` selects.
    pub fn sent_where(&self, pick: impl Fn(RequestKind, RequestClass) -> bool) -> u64 {
        let cells = RequestKind::ALL.into_iter().flat_map(|kind| RequestClass::ALL.into_iter().map(move |class| (kind, class)));
        cells.filter(|(kind, class)| pick(*kind, *class)).map(|(kind, class)| self.sent[kind.index()][class.index()]).sum()
    }

    pub fn merge(&mut self, other: &Measured) {
        add_histogram(&mut self.latency, &other.latency);
        for (mine, theirs) in self.class_latency.iter_mut().zip(&other.class_latency) {
            add_histogram(mine, theirs);
        }
        for kind in 0..KINDS {
            for class in 0..CLASSES {
                self.sent[kind][class] += other.sent[kind][class];
                for (mine, theirs) in self.status[kind][class].iter_mut().zip(other.status[kind][class].iter()) {
                    *mine += theirs;
                }
            }
        }
        for (mine, theirs) in self.unanswered.iter_mut().zip(other.unanswered) {
            *mine += theirs;
        }
        self.events_ok += other.events_ok;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.timeline.merge(&other.timeline);
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

    fn answer(kind: RequestKind, class: RequestClass, status: u16, latency_ns: u64) -> Answer {
        Answer { kind, class, status, latency_ns, at_ns: 1_500_000_000, events: 10 }
    }

    #[test]
    fn merge_adds_everything() {
        let mut a = ThreadTotals::default();
        let mut b = ThreadTotals::default();
        a.measured.record(&answer(RequestKind::Unique, RequestClass::Critical, 202, 1000));
        b.measured.record(&answer(RequestKind::BadSignature, RequestClass::Optional, 401, 5000));
        b.measured.record_sent(RequestKind::Unique, RequestClass::Optional, 0);
        b.measured.record_unanswered(RequestClass::Optional, 0);
        b.count_error(ErrorKind::Reset);
        b.max_lag_ns = 7;
        a.merge(&b);
        assert_eq!(a.measured.completed(), 2);
        assert_eq!(a.measured.events_ok, 10);
        assert_eq!(a.measured.status[RequestKind::BadSignature.index()][RequestClass::Optional.index()][401], 1);
        assert_eq!(a.measured.latency.len(), 2);
        assert_eq!(a.measured.class_latency.each_ref().map(Histogram::len), [1, 1]);
        assert_eq!(a.measured.sent[RequestKind::Unique.index()], [0, 1]);
        assert_eq!(a.measured.unanswered, [0, 1]);
        assert_eq!(a.measured.timeline.seconds().len(), 2, "the answers of second 1 and the loss of second 0");
        assert_eq!(a.errors_total(), 1);
        assert_eq!(a.max_lag_ns, 7);
    }

    #[test]
    fn answers_are_counted_by_kind_and_class() {
        let mut measured = Measured::default();
        let cells = [
            (RequestKind::Unique, RequestClass::Critical, 202),
            (RequestKind::Unique, RequestClass::Optional, 503),
            (RequestKind::Unique, RequestClass::Optional, 429),
            (RequestKind::Duplicate, RequestClass::Optional, 200),
            (RequestKind::BadSignature, RequestClass::Critical, 401),
        ];
        for (kind, class, status) in cells {
            measured.record_sent(kind, class, 0);
            measured.record(&answer(kind, class, status, 1000));
        }
        let optional = measured.codes(|_, class| class == RequestClass::Optional);
        assert_eq!((optional[503], optional[429], optional[200], optional[202]), (1, 1, 1, 0));
        let unique = measured.codes(|kind, _| kind == RequestKind::Unique);
        assert_eq!((unique[202], unique[503], unique[200]), (1, 1, 0));
        assert_eq!(measured.sent_where(|_, class| class == RequestClass::Optional), 3);
        assert_eq!(measured.sent_where(|kind, _| kind == RequestKind::BadSignature), 1);
        assert_eq!(measured.sent_where(|_, _| true), measured.completed());
        assert_eq!(measured.events_ok, 20, "the 202 and the 200");
    }
}
