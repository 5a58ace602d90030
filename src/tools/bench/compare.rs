//! `--compare-url`: the same load against a reference server (typically nginx `return
//! 204`) and against sluice, alternately: reference, sluice, reference, sluice, ... so
//! both see the machine in the same state (page cache, CPU frequency, noisy neighbours).
//! Every run is a whole run with its own warm-up and its own request pool. The report
//! gives each round's throughput and latency, their means, and the ratios sluice /
//! reference of mean throughput, mean p50 and mean p99.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use serde::Serialize;

use crate::tools::bench::report::{LatencyReport, REPORT_VERSION, Report, RunInfo, group, micros};

/// Which target a run measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Reference,
    Sluice,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Reference => "reference",
            Side::Sluice => "sluice",
        }
    }
}

/// Runs `measure` for rounds `1..=rounds`, reference first in each. Stops early, keeping
/// what was measured, once a run reports it was interrupted or `interrupted()` says so.
/// Returns the reports of each side in round order.
pub fn alternate<E>(
    rounds: usize,
    interrupted: impl Fn() -> bool,
    mut measure: impl FnMut(Side, usize) -> Result<Report, E>,
) -> Result<(Vec<Report>, Vec<Report>), E> {
    let mut reference = Vec::with_capacity(rounds);
    let mut sluice = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        for side in [Side::Reference, Side::Sluice] {
            if interrupted() {
                return Ok((reference, sluice));
            }
            let report = measure(side, round)?;
            let stop = report.interrupted;
            match side {
                Side::Reference => reference.push(report),
                Side::Sluice => sluice.push(report),
            }
            if stop {
                return Ok((reference, sluice));
            }
        }
    }
    Ok((reference, sluice))
}

/// One run of one side.
#[derive(Debug, Clone, Serialize)]
pub struct RoundReport {
    pub round: usize,
    pub url: String,
    pub measured_secs: f64,
    pub requests_per_sec: f64,
    pub events_per_sec: f64,
    pub latency_us: LatencyReport,
    pub status: BTreeMap<String, u64>,
    /// Connection-level errors.
    pub errors: u64,
    pub unanswered: u64,
}

impl RoundReport {
    fn of(round: usize, report: &Report) -> RoundReport {
        RoundReport {
            round,
            url: report.run.url.clone(),
            measured_secs: report.measured_secs,
            requests_per_sec: report.throughput.requests_per_sec,
            events_per_sec: report.throughput.events_per_sec,
            latency_us: report.latency_us.clone(),
            status: report.status.clone(),
            errors: report.errors.get("total").copied().unwrap_or(0),
            unanswered: report.requests.unanswered,
        }
    }
}

/// Means over one side's rounds; null without rounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Means {
    pub requests_per_sec: Option<f64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
}

/// sluice / reference; null when either mean is missing or the reference's is 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ratios {
    pub requests_per_sec: Option<f64>,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

/// The comparison, printed instead of a single run's report. Field names are the JSON keys.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub version: u32,
    /// The load, as run against both (`url` is sluice's).
    #[serde(flatten)]
    pub run: RunInfo,
    pub reference_url: String,
    /// Rounds asked for; each series has one entry per round run.
    pub rounds: usize,
    /// SIGINT or SIGTERM ended the comparison early: a run was cut short, or not made.
    pub interrupted: bool,
    pub reference: Vec<RoundReport>,
    pub sluice: Vec<RoundReport>,
    /// `reference` and `sluice`.
    pub mean: BTreeMap<&'static str, Means>,
    pub ratio: Ratios,
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, count) = values.fold((0.0, 0usize), |(sum, count), value| (sum + value, count + 1));
    (count > 0).then(|| sum / count as f64)
}

fn means(rounds: &[RoundReport]) -> Means {
    Means {
        requests_per_sec: mean(rounds.iter().map(|round| round.requests_per_sec)),
        p50_us: mean(rounds.iter().map(|round| round.latency_us.p50)),
        p99_us: mean(rounds.iter().map(|round| round.latency_us.p99)),
    }
}

fn reports_interrupted(reports: &[Report]) -> bool {
    reports.iter().any(|report| report.interrupted)
}

/// `sluice / reference`, when both are known and the quotient is a finite number.
pub fn ratio(sluice: Option<f64>, reference: Option<f64>) -> Option<f64> {
    let quotient = sluice? / reference.filter(|reference| *reference > 0.0)?;
    quotient.is_finite().then(|| (quotient * 1000.0).round() / 1000.0)
}

impl Comparison {
    /// `run` describes the load (the sluice side's set-up).
    pub fn new(run: RunInfo, reference_url: String, rounds: usize, reference: &[Report], sluice: &[Report]) -> Comparison {
        let series =
            |reports: &[Report]| reports.iter().enumerate().map(|(at, report)| RoundReport::of(at + 1, report)).collect::<Vec<_>>();
        let cut_short = reference.len() + sluice.len() < 2 * rounds;
        let interrupted = cut_short || reports_interrupted(reference) || reports_interrupted(sluice);
        let (reference, sluice) = (series(reference), series(sluice));
        let (of_reference, of_sluice) = (means(&reference), means(&sluice));
        Comparison {
            version: REPORT_VERSION,
            run,
            reference_url,
            rounds,
            interrupted,
            ratio: Ratios {
                requests_per_sec: ratio(of_sluice.requests_per_sec, of_reference.requests_per_sec),
                p50: ratio(of_sluice.p50_us, of_reference.p50_us),
                p99: ratio(of_sluice.p99_us, of_reference.p99_us),
            },
            mean: BTreeMap::from([(Side::Reference.name(), of_reference), (Side::Sluice.name(), of_sluice)]),
            reference,
            sluice,
        }
    }

    pub fn write_json(&self, out: &mut dyn Write) -> io::Result<()> {
        serde_json::to_writer(&mut *out, self).map_err(io::Error::other)?;
        writeln!(out)
    }

    pub fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut text = String::new();
        self.human(&mut text).map_err(io::Error::other)?;
        out.write_all(text.as_bytes())
    }

    fn human(&self, s: &mut String) -> std::fmt::Result {
        let run = &self.run;
        let shape = match (run.rate, run.pipeline) {
            (Some(rate), _) => format!("open loop at {} req/s", group(rate.round() as u64)),
            (None, Some(pipeline)) => format!("closed loop, pipeline {pipeline}"),
            (None, None) => "closed loop".to_owned(),
        };
        writeln!(
            s,
            "sluice bench: comparison, {} rounds of {shape}, {} connections, {} s each after {} s of warm-up",
            self.rounds, run.connections, run.duration_secs, run.warmup_secs
        )?;
        writeln!(s, "  reference: {}\n  sluice:    {}", self.reference_url, run.url)?;
        writeln!(s, "  {:<6} {:<10} {:>12} {:>10} {:>10} {:>8} {:>10}", "round", "target", "req/s", "p50", "p99", "errors", "unanswered")?;
        let rows = self.reference.iter().map(|round| (Side::Reference, round)).chain(self.sluice.iter().map(|round| (Side::Sluice, round)));
        let mut rows: Vec<_> = rows.collect();
        rows.sort_by_key(|(side, round)| (round.round, *side == Side::Sluice));
        for (side, round) in rows {
            writeln!(
                s,
                "  {:<6} {:<10} {:>12} {:>10} {:>10} {:>8} {:>10}",
                round.round,
                side.name(),
                group(round.requests_per_sec.round() as u64),
                micros(round.latency_us.p50),
                micros(round.latency_us.p99),
                group(round.errors),
                group(round.unanswered)
            )?;
        }
        for side in [Side::Reference, Side::Sluice] {
            let Some(means) = self.mean.get(side.name()) else { continue };
            let show = |value: Option<f64>, format: fn(f64) -> String| value.map_or_else(|| "-".to_owned(), format);
            writeln!(
                s,
                "  {:<6} {:<10} {:>12} {:>10} {:>10}",
                "mean",
                side.name(),
                show(means.requests_per_sec, |value| group(value.round() as u64)),
                show(means.p50_us, micros),
                show(means.p99_us, micros)
            )?;
        }
        let times = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |value| format!("{value:.3}x"));
        writeln!(
            s,
            "sluice / reference: throughput {}, p50 {}, p99 {}",
            times(self.ratio.requests_per_sec),
            times(self.ratio.p50),
            times(self.ratio.p99)
        )?;
        if self.interrupted {
            writeln!(s, "NOTE: interrupted; the figures cover the runs that were made.")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    #[test]
    fn ratios_are_sluice_over_reference_and_never_infinite() {
        assert_eq!(ratio(Some(90.0), Some(100.0)), Some(0.9));
        assert_eq!(ratio(Some(250.0), Some(100.0)), Some(2.5));
        assert_eq!(ratio(Some(1.0), Some(3.0)), Some(0.333));
        assert_eq!(ratio(Some(5.0), Some(0.0)), None, "a reference of 0 gives no ratio");
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(ratio(Some(1.0), None), None);
        assert_eq!(ratio(Some(f64::INFINITY), Some(1.0)), None);
        assert_eq!(mean([1.0, 2.0, 6.0].into_iter()), Some(3.0));
        assert_eq!(mean(std::iter::empty()), None);
    }

    #[test]
    fn rounds_alternate_reference_first_and_stop_when_interrupted() {
        let calls = RefCell::new(Vec::new());
        let (reference, sluice) = alternate::<()>(
            3,
            || false,
            |side, round| {
                calls.borrow_mut().push((side, round));
                Ok(crate::tools::bench::report::tests::sample())
            },
        )
        .expect("rounds");
        assert_eq!((reference.len(), sluice.len()), (3, 3));
        let expected: Vec<_> = (1..=3).flat_map(|round| [(Side::Reference, round), (Side::Sluice, round)]).collect();
        assert_eq!(*calls.borrow(), expected);

        let made = RefCell::new(0);
        let (reference, sluice) = alternate::<()>(
            3,
            || false,
            |_, _| {
                *made.borrow_mut() += 1;
                let mut report = crate::tools::bench::report::tests::sample();
                report.interrupted = *made.borrow() == 2;
                Ok(report)
            },
        )
        .expect("rounds");
        assert_eq!((reference.len(), sluice.len()), (1, 1), "the interrupted run is kept, nothing after it runs");
        let comparison = Comparison::new(reference[0].run.clone(), "http://ref".into(), 3, &reference, &sluice);
        assert!(comparison.interrupted);
        assert_eq!(alternate::<()>(2, || true, |_, _| unreachable!("interrupted before the first run")).expect("none").0.len(), 0);
        let mut last = crate::tools::bench::report::tests::sample();
        last.interrupted = true;
        let whole = [crate::tools::bench::report::tests::sample()];
        assert!(Comparison::new(last.run.clone(), "http://ref".into(), 1, &whole, &[last]).interrupted, "the last run was cut short");
        assert!(!Comparison::new(whole[0].run.clone(), "http://ref".into(), 1, &whole, &whole).interrupted);
        assert_eq!(alternate(2, || false, |_, _| Err("cannot connect")).map(|_| ()), Err("cannot connect"));
    }

    #[test]
    fn the_comparison_has_both_series_their_means_and_the_ratios() {
        let with = |requests_per_sec: f64, p99: f64| {
            let mut report = crate::tools::bench::report::tests::sample();
            report.throughput.requests_per_sec = requests_per_sec;
            report.latency_us.p99 = p99;
            report.latency_us.p50 = p99 / 4.0;
            report
        };
        let reference = [with(200_000.0, 400.0), with(180_000.0, 600.0)];
        let sluice = [with(95_000.0, 900.0), with(85_000.0, 1100.0)];
        let comparison = Comparison::new(reference[0].run.clone(), "http://127.0.0.1:18080/v1/events".into(), 2, &reference, &sluice);
        assert!(!comparison.interrupted);
        assert_eq!(comparison.mean["reference"].requests_per_sec, Some(190_000.0));
        assert_eq!(comparison.mean["sluice"].p99_us, Some(1000.0));
        assert_eq!(comparison.ratio, Ratios { requests_per_sec: Some(0.474), p50: Some(2.0), p99: Some(2.0) });
        let mut out = Vec::new();
        comparison.write_json(&mut out).expect("json");
        let value: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        for key in
            ["version", "url", "mode", "connections", "reference_url", "rounds", "interrupted", "reference", "sluice", "mean", "ratio"]
        {
            assert!(value.get(key).is_some(), "missing key {key}: {value}");
        }
        assert_eq!(value["reference"][1]["round"], 2);
        assert_eq!(value["sluice"][0]["requests_per_sec"], 95_000.0);
        assert!(value["sluice"][0]["latency_us"]["p50"].is_number());
        assert_eq!(value["ratio"]["requests_per_sec"], 0.474);
        let mut text = Vec::new();
        comparison.write_human(&mut text).expect("text");
        let text = String::from_utf8(text).expect("utf-8");
        for needle in ["comparison, 2 rounds", "reference  ", "sluice / reference: throughput 0.474x, p50 2.000x, p99 2.000x", "190,000"] {
            assert!(text.contains(needle), "{needle:?} not in\n{text}");
        }
        let first_sluice = text.find("sluice      ").expect("a sluice row");
        let second_reference = text.match_indices("reference  ").nth(1).expect("two reference rows").0;
        assert!(first_sluice < second_reference, "rows in the order they ran:\n{text}");
    }
}
