//! Two sections of a [`Report`](super::report::Report): how each request class fared
//! (`classes`), and the measured run second by second (`timeline`), in JSON and in the
//! summary.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::tools::bench::plan::RequestClass;
use crate::tools::bench::report::{LatencyReport, group, latency_report, micros, per_sec, status_map, us};
use crate::tools::bench::stats::{Measured, STATUS_CODES};
use crate::tools::bench::timeline::{Outcome, Second, Timeline};

/// The critical class's event types (the plan's `EVENT_TYPES`).
pub const CRITICAL_EVENT_TYPES: [&str; 3] = ["bet", "win", "deposit"];

/// How requests were settled; the field names are [`Outcome::name`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Outcomes {
    /// 2xx: 202 stored, 200 duplicate (any 2xx, so a reference's 204 too).
    pub accepted: u64,
    pub refused_429: u64,
    pub refused_503: u64,
    /// Any other status (401, 4xx, 5xx).
    pub refused_other: u64,
    /// Lost with their connection (reset, timeout) or still unanswered at the end.
    pub unanswered: u64,
}

impl Outcomes {
    fn from_counts(counts: &[u64; Outcome::ALL.len()]) -> Outcomes {
        let at = |outcome: Outcome| counts[outcome.index()];
        Outcomes {
            accepted: at(Outcome::Accepted),
            refused_429: at(Outcome::RateLimited),
            refused_503: at(Outcome::Overloaded),
            refused_other: at(Outcome::Refused),
            unanswered: at(Outcome::Unanswered),
        }
    }

    /// Answers by status code, plus `unanswered`.
    fn from_codes(codes: &[u64], unanswered: u64) -> Outcomes {
        let mut counts = [0u64; Outcome::ALL.len()];
        for (status, count) in codes.iter().enumerate().filter(|(_, count)| **count > 0) {
            counts[Outcome::of_status(status as u16).index()] += count;
        }
        counts[Outcome::Unanswered.index()] = unanswered;
        Outcomes::from_counts(&counts)
    }

    /// Requests with an answer, whatever it said.
    pub fn answered(&self) -> u64 {
        self.accepted + self.refused_429 + self.refused_503 + self.refused_other
    }
}

/// One class of requests over the measured run.
#[derive(Debug, Clone, Serialize)]
pub struct ClassReport {
    /// The event types of its events.
    pub event_types: Vec<String>,
    /// Requests written.
    pub sent: u64,
    /// Requests answered, whatever the status: `sent` = `answered` + `unanswered`.
    pub answered: u64,
    #[serde(flatten)]
    pub outcomes: Outcomes,
    /// Accepted requests per second of `measured_secs`.
    pub accepted_per_sec: f64,
    /// Answers by status code.
    pub status: BTreeMap<String, u64>,
    /// Latency of its answers, whatever the status.
    pub latency_us: LatencyReport,
}

/// `classes`: one [`ClassReport`] per class, by name.
pub fn classes(measured: &Measured, optional_event_type: &str, measured_secs: f64) -> BTreeMap<&'static str, ClassReport> {
    RequestClass::ALL
        .iter()
        .map(|&class| {
            let codes = measured.codes(|_, of| of == class);
            debug_assert_eq!(codes.len(), STATUS_CODES);
            let outcomes = Outcomes::from_codes(&codes, measured.unanswered[class.index()]);
            let event_types = match class {
                RequestClass::Critical => CRITICAL_EVENT_TYPES.iter().map(|name| (*name).to_owned()).collect(),
                RequestClass::Optional => vec![optional_event_type.to_owned()],
            };
            let report = ClassReport {
                event_types,
                sent: measured.sent_where(|_, of| of == class),
                answered: outcomes.answered(),
                outcomes,
                accepted_per_sec: per_sec(outcomes.accepted, measured_secs),
                status: status_map(&codes),
                latency_us: latency_report(&measured.class_latency[class.index()]),
            };
            (class.name(), report)
        })
        .collect()
}

/// One class in one second.
#[derive(Debug, Clone, Serialize)]
pub struct SecondClassReport {
    /// Requests written in this second.
    pub sent: u64,
    /// Requests settled in this second (answered, or found lost).
    #[serde(flatten)]
    pub outcomes: Outcomes,
    /// p99 of the answers that arrived in this second; null without any.
    pub p99_us: Option<f64>,
}

/// One second of the measured run; `second` 0 starts at the end of the warm-up.
#[derive(Debug, Clone, Serialize)]
pub struct SecondReport {
    pub second: u64,
    /// `critical` and `optional`.
    #[serde(flatten)]
    pub classes: BTreeMap<&'static str, SecondClassReport>,
    /// Answers that arrived in this second, every class.
    pub answered: u64,
    /// p99 of those answers; null without any.
    pub p99_us: Option<f64>,
    /// Connection-level errors (timeouts included).
    pub errors: u64,
    /// Open loop: requests written more than 1 ms late.
    pub late: u64,
}

fn second_report(index: usize, second: &Second) -> SecondReport {
    let p99 = |classes: &[RequestClass]| second.latency_ns_at(classes, 0.99).map(us);
    let classes: BTreeMap<_, _> = RequestClass::ALL
        .iter()
        .map(|&class| {
            let report = SecondClassReport {
                sent: second.sent[class.index()],
                outcomes: Outcomes::from_counts(&second.settled[class.index()]),
                p99_us: p99(&[class]),
            };
            (class.name(), report)
        })
        .collect();
    SecondReport {
        second: index as u64,
        answered: classes.values().map(|class| class.outcomes.answered()).sum(),
        classes,
        p99_us: p99(&RequestClass::ALL),
        errors: second.errors,
        late: second.late,
    }
}

/// `timeline`: every second of the measured window (a second with nothing in it
/// included), and any later second in which something was settled (the drain).
pub fn timeline(timeline: &Timeline, measured_secs: f64) -> Vec<SecondReport> {
    let kept = timeline.seconds();
    let window = (measured_secs.max(0.0).ceil() as usize).min(crate::constants::BENCH_TIMELINE_SECS_MAX);
    let empty = Second::default();
    (0..kept.len().max(window)).map(|index| second_report(index, kept.get(index).unwrap_or(&empty))).collect()
}

/// The summary's `classes:` lines.
pub fn write_classes(s: &mut String, classes: &BTreeMap<&'static str, ClassReport>) -> std::fmt::Result {
    writeln!(s, "classes:    sent, accepted (2xx), refused 429 / 503 / other, unanswered; accepted/s; latency")?;
    for class in RequestClass::ALL {
        let Some(report) = classes.get(class.name()) else { continue };
        let o = &report.outcomes;
        writeln!(
            s,
            "  {:<9} {} sent ({}): {} accepted, {} / {} / {} refused, {} unanswered; {} accepted/s",
            class.name(),
            group(report.sent),
            report.event_types.join(", "),
            group(o.accepted),
            group(o.refused_429),
            group(o.refused_503),
            group(o.refused_other),
            group(o.unanswered),
            group(report.accepted_per_sec.round() as u64)
        )?;
        let l = &report.latency_us;
        writeln!(
            s,
            "  {:<9} p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            "",
            micros(l.p50),
            micros(l.p90),
            micros(l.p99),
            micros(l.p99_9),
            micros(l.max)
        )?;
    }
    Ok(())
}

/// The summary's per-second table (`--timeline`); the optional rows only when the run had
/// optional requests.
pub fn write_timeline(s: &mut String, seconds: &[SecondReport], with_optional: bool) -> std::fmt::Result {
    writeln!(s, "timeline:   per second from the end of the warm-up; settled = answered or found lost; p99 of that second's answers")?;
    writeln!(
        s,
        "  {:>5}  {:<8} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>10} {:>7} {:>7}",
        "s", "class", "sent", "accepted", "429", "503", "other", "lost", "p99", "errors", "late"
    )?;
    let shown: &[RequestClass] = if with_optional { &RequestClass::ALL } else { &[RequestClass::Critical] };
    for second in seconds {
        for (row, class) in shown.iter().enumerate() {
            let Some(report) = second.classes.get(class.name()) else { continue };
            let o = &report.outcomes;
            let (index, errors, late) = match row {
                0 => (second.second.to_string(), second.errors.to_string(), second.late.to_string()),
                _ => (String::new(), String::new(), String::new()),
            };
            writeln!(
                s,
                "  {index:>5}  {:<8} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>10} {errors:>7} {late:>7}",
                class.name(),
                group(report.sent),
                group(o.accepted),
                group(o.refused_429),
                group(o.refused_503),
                group(o.refused_other),
                group(o.unanswered),
                report.p99_us.map_or_else(|| "-".to_owned(), micros)
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::bench::plan::RequestKind;
    use crate::tools::bench::stats::Answer;

    const MS: u64 = 1_000_000;

    fn answer(class: RequestClass, status: u16, latency_ns: u64, at_ns: u64) -> Answer {
        Answer { kind: RequestKind::Unique, class, status, latency_ns, at_ns, events: 1 }
    }

    /// 2 s: critical all accepted; optional refused 503 in second 1 and one lost.
    fn measured() -> Measured {
        let mut measured = Measured::default();
        for i in 0..200u64 {
            let at = i * 10 * MS;
            let class = if i % 2 == 0 { RequestClass::Critical } else { RequestClass::Optional };
            measured.record_sent(RequestKind::Unique, class, at);
            match (class, at >= 1000 * MS) {
                (RequestClass::Optional, true) if i == 199 => measured.record_unanswered(class, at),
                (RequestClass::Optional, true) => measured.record(&answer(class, 503, 100_000, at)),
                (_, _) => measured.record(&answer(class, 202, 2 * MS, at + MS)),
            }
        }
        measured
    }

    #[test]
    fn class_counts_add_up_to_requests_sent() {
        let measured = measured();
        let classes = classes(&measured, "telemetry", 2.0);
        let (critical, optional) = (&classes["critical"], &classes["optional"]);
        assert_eq!((critical.sent, optional.sent), (100, 100));
        assert_eq!(critical.outcomes, Outcomes { accepted: 100, ..Outcomes::default() });
        assert_eq!(optional.outcomes, Outcomes { accepted: 50, refused_503: 49, unanswered: 1, ..Outcomes::default() });
        for class in [critical, optional] {
            assert_eq!(class.answered + class.outcomes.unanswered, class.sent);
        }
        assert_eq!(optional.status.get("503"), Some(&49));
        assert_eq!((critical.accepted_per_sec, optional.accepted_per_sec), (50.0, 25.0));
        assert_eq!(optional.event_types, ["telemetry"]);
        assert!(critical.latency_us.p99 >= 1990.0 && optional.latency_us.p50 <= 2010.0);
    }

    #[test]
    fn the_timeline_shows_when_the_refusals_began() {
        let seconds = timeline(&measured().timeline, 3.0);
        assert_eq!(seconds.len(), 3, "the measured window's empty third second is shown");
        let (zero, one) = (&seconds[0], &seconds[1]);
        assert_eq!(zero.classes["optional"].outcomes.refused_503, 0);
        assert_eq!(one.classes["optional"].outcomes, Outcomes { refused_503: 49, unanswered: 1, ..Outcomes::default() });
        assert_eq!(zero.classes["critical"].sent + zero.classes["optional"].sent, 100);
        // The critical answer of t = 990 ms arrives at 991 ms; of 1990 ms, at 1991 ms.
        assert_eq!(zero.answered, 100);
        assert_eq!(one.answered, 99);
        assert!(zero.p99_us.is_some_and(|p99| (1990.0..=2010.0).contains(&p99)));
        assert!(one.classes["optional"].p99_us.is_some_and(|p99| (99.0..=101.0).contains(&p99)));
        assert_eq!((seconds[2].answered, seconds[2].p99_us), (0, None));
    }

    #[test]
    fn outcome_keys_are_the_outcome_names() {
        let value = serde_json::to_value(Outcomes::default()).expect("json");
        let mut keys: Vec<&str> = value.as_object().expect("object").keys().map(String::as_str).collect();
        let mut names: Vec<&str> = Outcome::ALL.iter().map(|outcome| outcome.name()).collect();
        keys.sort_unstable();
        names.sort_unstable();
        assert_eq!(keys, names);
    }

    #[test]
    fn the_human_table_has_a_row_per_second_and_class() {
        let seconds = timeline(&measured().timeline, 2.0);
        let mut text = String::new();
        write_timeline(&mut text, &seconds, true).expect("text");
        assert_eq!(text.lines().count(), 2 + 2 * 2, "{text}");
        assert!(text.contains("optional"), "{text}");
        let mut critical_only = String::new();
        write_timeline(&mut critical_only, &seconds, false).expect("text");
        assert!(!critical_only.contains("optional") && critical_only.lines().count() == 4, "{critical_only}");
        let mut classes_text = String::new();
        write_classes(&mut classes_text, &classes(&measured(), "telemetry", 2.0)).expect("text");
        assert!(classes_text.contains("optional  100 sent (telemetry): 50 accepted, 0 / 49 / 0 refused, 1 unanswered"), "{classes_text}");
    }
}
