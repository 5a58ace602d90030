//! The measured run second by second: requests sent and settled per class, how they
//! were settled (accepted, 429, 503, another refusal, lost) and each second's latency,
//! so a run shows when overload began and ended and how fast latency recovered.
//!
//! Seconds count from the end of the warm-up. A request belongs to the second it was
//! written in; an answer to the second it arrived in; a lost request to the second its
//! loss was noticed (its connection broke or timed out, or the run ended with it
//! unanswered). The first `BENCH_TIMELINE_SECS_MAX` seconds are kept; what happens
//! later is in the run's totals only, and `dropped` counts it.

#![forbid(unsafe_code)]

use hdrhistogram::Histogram;

use crate::constants::{BENCH_TIMELINE_LATENCY_US_MAX, BENCH_TIMELINE_SECS_MAX, BENCH_TIMELINE_SIGNIFICANT_DIGITS};
use crate::tools::bench::plan::RequestClass;

const CLASSES: usize = RequestClass::ALL.len();
const NS_PER_SEC: u64 = 1_000_000_000;

/// How a request of the measured part was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Any 2xx: 202 stored, 200 duplicate (or a reference server's 204).
    Accepted,
    /// 429 `rate_limited`.
    RateLimited,
    /// 503 `overloaded` (or `storage_unavailable`).
    Overloaded,
    /// Any other answer (401 bad signature, 4xx, 5xx).
    Refused,
    /// No answer: its connection broke or timed out, or the run ended first.
    Unanswered,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [Outcome::Accepted, Outcome::RateLimited, Outcome::Overloaded, Outcome::Refused, Outcome::Unanswered];

    pub fn of_status(status: u16) -> Outcome {
        match status {
            200..=299 => Outcome::Accepted,
            429 => Outcome::RateLimited,
            503 => Outcome::Overloaded,
            _ => Outcome::Refused,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The key used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::RateLimited => "refused_429",
            Outcome::Overloaded => "refused_503",
            Outcome::Refused => "refused_other",
            Outcome::Unanswered => "unanswered",
        }
    }
}

const OUTCOMES: usize = Outcome::ALL.len();

/// One second of the measured run.
#[derive(Debug, Clone, Default)]
pub struct Second {
    /// Requests written in this second, by class.
    pub sent: [u64; CLASSES],
    /// Requests settled in this second, by class and [`Outcome`].
    pub settled: [[u64; OUTCOMES]; CLASSES],
    /// Connection-level errors (timeouts included) counted in this second.
    pub errors: u64,
    /// Open loop: requests written more than 1 ms after their intended time.
    pub late: u64,
    /// Latency of the answers that arrived in this second, by class, in microseconds;
    /// allocated at the class's first answer of the second.
    latency: [Option<Box<Histogram<u32>>>; CLASSES],
}

impl Second {
    /// The `quantile` latency of this second's answers of `classes`, in nanoseconds;
    /// `None` when none arrived.
    pub fn latency_ns_at(&self, classes: &[RequestClass], quantile: f64) -> Option<u64> {
        let mut picked = classes.iter().filter_map(|class| self.latency[class.index()].as_deref());
        let first = picked.next()?;
        let mut merged = first.clone();
        for other in picked {
            add(&mut merged, other);
        }
        Some(merged.value_at_quantile(quantile) * 1000)
    }

    fn merge(&mut self, other: &Second) {
        for class in 0..CLASSES {
            self.sent[class] += other.sent[class];
            for (mine, theirs) in self.settled[class].iter_mut().zip(other.settled[class]) {
                *mine += theirs;
            }
            match (&mut self.latency[class], &other.latency[class]) {
                (Some(mine), Some(theirs)) => add(mine, theirs),
                (mine @ None, Some(theirs)) => *mine = Some(theirs.clone()),
                (_, None) => {}
            }
        }
        self.errors += other.errors;
        self.late += other.late;
    }
}

/// Adds `other` into `into`; both have the timeline's bounds, so the add cannot fail,
/// but saturate rather than lose counts if it ever did.
fn add(into: &mut Histogram<u32>, other: &Histogram<u32>) {
    if into.add(other).is_err() {
        for value in other.iter_recorded() {
            into.saturating_record_n(value.value_iterated_to(), value.count_at_value());
        }
    }
}

fn second_histogram() -> Histogram<u32> {
    match Histogram::new_with_bounds(1, BENCH_TIMELINE_LATENCY_US_MAX, BENCH_TIMELINE_SIGNIFICANT_DIGITS) {
        Ok(histogram) => histogram,
        // The bounds are constants that HdrHistogram accepts; a test covers it.
        Err(error) => unreachable!("timeline histogram bounds rejected: {error:?}"),
    }
}

/// One thread's timeline, or the merge of all of them. Times are nanoseconds since the
/// end of the warm-up.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    seconds: Vec<Second>,
    /// Events (sends, settlements, errors) after the last second kept.
    pub dropped: u64,
}

impl Timeline {
    /// The second `at_ns` falls in, added (with the empty ones before it) if new; `None`
    /// past the bound. Grows at most once a second of run, never per request.
    fn second(&mut self, at_ns: u64) -> Option<&mut Second> {
        let index = usize::try_from(at_ns / NS_PER_SEC).unwrap_or(usize::MAX);
        if index >= BENCH_TIMELINE_SECS_MAX {
            self.dropped += 1;
            return None;
        }
        if index >= self.seconds.len() {
            self.seconds.resize_with(index + 1, Second::default);
        }
        Some(&mut self.seconds[index])
    }

    pub fn sent(&mut self, at_ns: u64, class: RequestClass) {
        if let Some(second) = self.second(at_ns) {
            second.sent[class.index()] += 1;
        }
    }

    pub fn late(&mut self, at_ns: u64) {
        if let Some(second) = self.second(at_ns) {
            second.late += 1;
        }
    }

    pub fn error(&mut self, at_ns: u64) {
        if let Some(second) = self.second(at_ns) {
            second.errors += 1;
        }
    }

    /// An answer with `status` arrived `latency_ns` after the request's start.
    pub fn answered(&mut self, at_ns: u64, class: RequestClass, status: u16, latency_ns: u64) {
        if let Some(second) = self.second(at_ns) {
            second.settled[class.index()][Outcome::of_status(status).index()] += 1;
            let histogram = second.latency[class.index()].get_or_insert_with(|| Box::new(second_histogram()));
            histogram.saturating_record((latency_ns / 1000).max(1));
        }
    }

    pub fn unanswered(&mut self, at_ns: u64, class: RequestClass) {
        if let Some(second) = self.second(at_ns) {
            second.settled[class.index()][Outcome::Unanswered.index()] += 1;
        }
    }

    pub fn merge(&mut self, other: &Timeline) {
        if other.seconds.len() > self.seconds.len() {
            self.seconds.resize_with(other.seconds.len(), Second::default);
        }
        for (mine, theirs) in self.seconds.iter_mut().zip(&other.seconds) {
            mine.merge(theirs);
        }
        self.dropped += other.dropped;
    }

    pub fn seconds(&self) -> &[Second] {
        &self.seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn events_fall_in_the_second_they_happen_in() {
        let mut timeline = Timeline::default();
        timeline.sent(0, RequestClass::Critical);
        timeline.sent(999 * MS, RequestClass::Optional);
        timeline.answered(999 * MS, RequestClass::Critical, 202, 2 * MS);
        timeline.answered(1000 * MS, RequestClass::Optional, 503, 40_000);
        timeline.answered(1500 * MS, RequestClass::Optional, 429, 40_000);
        timeline.unanswered(3200 * MS, RequestClass::Critical);
        timeline.error(3200 * MS);
        timeline.late(3999 * MS);
        let seconds = timeline.seconds();
        assert_eq!(seconds.len(), 4, "seconds 0..=3, the empty second 2 included");
        assert_eq!(seconds[0].sent, [1, 1]);
        assert_eq!(seconds[0].settled[0][Outcome::Accepted.index()], 1);
        assert_eq!(seconds[1].settled[1][Outcome::Overloaded.index()], 1);
        assert_eq!(seconds[1].settled[1][Outcome::RateLimited.index()], 1);
        assert_eq!(seconds[1].settled[0], [0; OUTCOMES]);
        assert_eq!(seconds[2].settled, [[0; OUTCOMES]; 2]);
        assert_eq!(seconds[3].settled[0][Outcome::Unanswered.index()], 1);
        assert_eq!((seconds[3].errors, seconds[3].late), (1, 1));
        assert_eq!(timeline.dropped, 0);
    }

    #[test]
    fn each_second_has_its_own_p99() {
        let mut timeline = Timeline::default();
        for i in 0..1000u64 {
            // Second 0: 1 ms answers, ten of them 50 ms; second 1: all 100 µs.
            let latency = if i % 100 == 0 { 50 * MS } else { MS };
            timeline.answered(i * MS / 2, RequestClass::Critical, 202, latency);
            timeline.answered(1000 * MS + i * MS / 2, RequestClass::Optional, 202, MS / 10);
        }
        let [first, second] = timeline.seconds() else { panic!("two seconds") };
        let near = |ns: Option<u64>, want: u64| ns.is_some_and(|ns| ns.abs_diff(want) * 100 <= want);
        assert!(near(first.latency_ns_at(&RequestClass::ALL, 0.5), MS));
        assert!(near(first.latency_ns_at(&RequestClass::ALL, 0.995), 50 * MS), "{:?}", first.latency_ns_at(&RequestClass::ALL, 0.995));
        assert_eq!(first.latency_ns_at(&[RequestClass::Optional], 0.99), None, "no optional answer in second 0");
        assert!(near(second.latency_ns_at(&RequestClass::ALL, 0.99), MS / 10));
    }

    #[test]
    fn merging_adds_seconds_and_latencies() {
        let mut a = Timeline::default();
        let mut b = Timeline::default();
        a.answered(0, RequestClass::Critical, 202, MS);
        b.answered(10, RequestClass::Critical, 202, 3 * MS);
        b.answered(2500 * MS, RequestClass::Optional, 500, MS);
        a.merge(&b);
        let seconds = a.seconds();
        assert_eq!(seconds.len(), 3);
        assert_eq!(seconds[0].settled[0][Outcome::Accepted.index()], 2);
        assert_eq!(seconds[2].settled[1][Outcome::Refused.index()], 1);
        assert!(seconds[0].latency_ns_at(&[RequestClass::Critical], 1.0).is_some_and(|ns| ns >= 3 * MS - 30_000));
    }

    #[test]
    fn the_timeline_is_bounded() {
        let mut timeline = Timeline::default();
        let last = (BENCH_TIMELINE_SECS_MAX as u64 - 1) * NS_PER_SEC;
        timeline.sent(last, RequestClass::Critical);
        timeline.sent(last + NS_PER_SEC, RequestClass::Critical);
        timeline.answered(u64::MAX, RequestClass::Critical, 202, 1);
        assert_eq!(timeline.seconds().len(), BENCH_TIMELINE_SECS_MAX);
        assert_eq!(timeline.dropped, 2);
        let histogram = second_histogram();
        assert!(histogram.high() >= BENCH_TIMELINE_LATENCY_US_MAX);
    }

    #[test]
    fn statuses_map_to_outcomes() {
        for (status, outcome) in [
            (202, Outcome::Accepted),
            (200, Outcome::Accepted),
            (204, Outcome::Accepted),
            (429, Outcome::RateLimited),
            (503, Outcome::Overloaded),
            (401, Outcome::Refused),
            (500, Outcome::Refused),
            (301, Outcome::Refused),
        ] {
            assert_eq!(Outcome::of_status(status), outcome, "{status}");
        }
    }
}
