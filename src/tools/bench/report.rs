//! The result of a run: one [`Report`] with stable keys (docs/BENCH.md lists them),
//! printed as a human summary or as one JSON object.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::tools::bench::breakdown::{self, ClassReport, SecondReport};
use crate::tools::bench::fsync_probe::FsyncProbe;
use crate::tools::bench::plan::{Plan, RequestClass, RequestKind};
use crate::tools::bench::probe::ProbeTotals;
use crate::tools::bench::stats::{ErrorKind, Measured, ThreadTotals};

/// Bumped only if a key changes meaning or disappears; new keys do not bump it.
pub const REPORT_VERSION: u32 = 1;

/// What the report says about the run's set-up (from the validated options).
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub url: String,
    /// `"closed"` or `"open"`.
    pub mode: &'static str,
    pub threads: usize,
    pub connections: usize,
    /// Closed loop only.
    pub pipeline: Option<usize>,
    /// Open loop only: requests per second over all connections.
    pub rate: Option<f64>,
    pub duration_secs: f64,
    pub warmup_secs: f64,
    pub batch: usize,
    pub event_bytes: usize,
    pub users: u64,
    pub duplicate_ratio: f64,
    pub bad_signature_ratio: f64,
    pub optional_ratio: f64,
    pub optional_event_type: String,
    pub idle_connections: usize,
    /// `--request-templates`: the requests were the file's, not signed sluice events.
    pub request_templates: Option<TemplatesInfo>,
}

/// Where a `--request-templates` run's requests came from.
#[derive(Debug, Clone, Serialize)]
pub struct TemplatesInfo {
    pub file: String,
    pub templates: usize,
    /// The fewest and the most events of one template.
    pub events_min: u32,
    pub events_max: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub requests: u64,
    pub unique: u64,
    pub duplicate: u64,
    pub bad_signature: u64,
    /// By class: requests of critical and of optional events.
    pub critical: u64,
    pub optional: u64,
    pub pool_bytes: u64,
    pub mean_request_bytes: u64,
    pub build_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RequestsReport {
    /// Requests written in the measured part, in total and by kind.
    pub sent: u64,
    pub sent_by_kind: BTreeMap<&'static str, u64>,
    /// Answers received to those requests.
    pub completed: u64,
    /// Requests written and never answered (lost with a broken connection, or still
    /// waiting at the end), warm-up included.
    pub unanswered: u64,
    pub warmup_sent: u64,
    pub warmup_completed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub requests_per_sec: f64,
    /// Events in 2xx-answered requests per second (each such request's own events:
    /// `--batch`, or its template's `events`).
    pub events_per_sec: f64,
    pub sent_bytes_per_sec: f64,
    pub received_bytes_per_sec: f64,
}

/// Latency percentiles in microseconds (HdrHistogram, 3 significant digits).
#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub p99_99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionEvents {
    /// Load connections open when the measured run started.
    pub ready_at_start: u64,
    pub opened: u64,
    pub reconnects: u64,
    /// Closes announced by the server (`Connection: close`, or an idle keep-alive closed).
    pub closed_by_server: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScheduleReport {
    /// The furthest behind its intended time a request was written.
    pub max_lag_us: f64,
    /// Requests written more than 1 ms after their intended time.
    pub late_requests: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub connections: usize,
    pub ready_at_start: u64,
    pub open_at_end: u64,
    pub pings: u64,
    pub ping_failures: u64,
    pub reopened: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FsyncReport {
    pub dir: String,
    pub count: u64,
    pub secs: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p99_9_us: f64,
    pub max_us: f64,
}

/// `--probe`: the health probe's answers and latency.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub url: String,
    pub every_ms: u64,
    /// Probes written: `answered` + `errors` + `timeouts`.
    pub sent: u64,
    pub answered: u64,
    /// Answered with a status other than 2xx.
    pub failed: u64,
    /// Could not connect, the connection broke, or the answer was not HTTP/1.1.
    pub errors: u64,
    /// No answer within `--timeout`.
    pub timeouts: u64,
    /// Of the answered probes.
    pub latency_us: LatencyReport,
}

impl ProbeReport {
    fn human(&self, s: &mut String) -> std::fmt::Result {
        let l = &self.latency_us;
        writeln!(
            s,
            "probe:      {} every {} ms: {} sent, {} answered ({} not 2xx), {} errors, {} timeouts; p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            self.url,
            self.every_ms,
            group(self.sent),
            group(self.answered),
            group(self.failed),
            group(self.errors),
            group(self.timeouts),
            micros(l.p50),
            micros(l.p90),
            micros(l.p99),
            micros(l.p99_9),
            micros(l.max)
        )
    }

    pub fn of(url: &str, every_ms: u64, probe: &ProbeTotals) -> ProbeReport {
        ProbeReport {
            url: url.to_owned(),
            every_ms,
            sent: probe.sent,
            answered: probe.answered,
            failed: probe.failed,
            errors: probe.errors,
            timeouts: probe.timeouts,
            latency_us: latency_report(&probe.latency),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BytesReport {
    pub sent: u64,
    pub received: u64,
}

/// Everything a run measured. Field names are the JSON keys.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub version: u32,
    #[serde(flatten)]
    pub run: RunInfo,
    /// Length of the measured window: from the end of the warm-up until sending stopped.
    pub measured_secs: f64,
    /// The closed-loop pool ran out before `duration_secs`: the run stopped early.
    pub pool_exhausted: bool,
    /// SIGINT or SIGTERM stopped the run early; the figures cover `measured_secs`.
    pub interrupted: bool,
    pub plan: PlanReport,
    pub requests: RequestsReport,
    pub throughput: Throughput,
    pub latency_us: LatencyReport,
    /// Answers by status code.
    pub status: BTreeMap<String, u64>,
    /// Answers by request kind (`unique`, `duplicate`, `bad_signature`) and status code.
    pub status_by_kind: BTreeMap<&'static str, BTreeMap<String, u64>>,
    /// By request class (`critical`, `optional`): sent, how they were settled, latency.
    pub classes: BTreeMap<&'static str, ClassReport>,
    /// Connection-level failures by kind, and their total.
    pub errors: BTreeMap<&'static str, u64>,
    pub connection_events: ConnectionEvents,
    pub bytes: BytesReport,
    /// Open loop only.
    pub schedule: Option<ScheduleReport>,
    /// The measured run second by second.
    pub timeline: Vec<SecondReport>,
    /// Events after the timeline's last kept second (`BENCH_TIMELINE_SECS_MAX`).
    pub timeline_dropped: u64,
    /// Only with `--idle-connections`.
    pub idle: Option<IdleReport>,
    /// Only with `--probe`.
    pub probe: Option<ProbeReport>,
    /// Only with `--fsync-probe`.
    pub fsync_probe: Option<FsyncReport>,
}

/// Nanoseconds as microseconds with one decimal.
pub fn us(ns: u64) -> f64 {
    (ns as f64 / 1000.0 * 10.0).round() / 10.0
}

/// `count` per second of `secs`, one decimal; 0 for an empty window.
pub fn per_sec(count: u64, secs: f64) -> f64 {
    if secs > 0.0 { (count as f64 / secs * 10.0).round() / 10.0 } else { 0.0 }
}

pub fn latency_report(histogram: &Histogram<u64>) -> LatencyReport {
    if histogram.is_empty() {
        return LatencyReport { count: 0, min: 0.0, mean: 0.0, p50: 0.0, p90: 0.0, p99: 0.0, p99_9: 0.0, p99_99: 0.0, max: 0.0 };
    }
    let at = |quantile: f64| us(histogram.value_at_quantile(quantile));
    LatencyReport {
        count: histogram.len(),
        min: us(histogram.min()),
        mean: us(histogram.mean() as u64),
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        p99_9: at(0.999),
        p99_99: at(0.9999),
        max: us(histogram.max()),
    }
}

/// Non-zero counts by three-digit status code.
pub fn status_map(codes: &[u64]) -> BTreeMap<String, u64> {
    codes.iter().enumerate().filter(|(_, count)| **count > 0).map(|(code, count)| (format!("{code:03}"), *count)).collect()
}

impl PlanReport {
    fn of(plan: &Plan) -> PlanReport {
        PlanReport {
            requests: plan.len() as u64,
            unique: plan.count(RequestKind::Unique),
            duplicate: plan.count(RequestKind::Duplicate),
            bad_signature: plan.count(RequestKind::BadSignature),
            critical: plan.count_class(RequestClass::Critical),
            optional: plan.count_class(RequestClass::Optional),
            pool_bytes: plan.pool_bytes(),
            mean_request_bytes: plan.mean_request_bytes(),
            build_secs: (plan.build_time().as_secs_f64() * 1000.0).round() / 1000.0,
        }
    }
}

impl FsyncReport {
    fn of(probe: &FsyncProbe) -> FsyncReport {
        let latency = latency_report(&probe.latency);
        FsyncReport {
            dir: probe.dir.display().to_string(),
            count: latency.count,
            secs: (probe.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            p50_us: latency.p50,
            p99_us: latency.p99,
            p99_9_us: latency.p99_9,
            max_us: latency.max,
        }
    }
}

impl Report {
    pub fn new(run: RunInfo, plan: &Plan, totals: &ThreadTotals, measured_secs: f64, fsync: Option<&FsyncProbe>) -> Report {
        let measured: &Measured = &totals.measured;
        let all_codes = measured.codes(|_, _| true);
        let status_by_kind = RequestKind::ALL.iter().map(|&kind| (kind.name(), status_map(&measured.codes(|of, _| of == kind)))).collect();
        let mut errors: BTreeMap<&'static str, u64> =
            ErrorKind::ALL.iter().map(|kind| (kind.name(), totals.errors[*kind as usize])).collect();
        errors.insert("total", totals.errors_total());
        let completed = measured.completed();
        let open_loop = run.rate.is_some();
        let idle = (run.idle_connections > 0).then_some(IdleReport {
            connections: run.idle_connections,
            ready_at_start: totals.idle.ready,
            open_at_end: totals.idle.open_at_end,
            pings: totals.idle.pings,
            ping_failures: totals.idle.ping_failures,
            reopened: totals.idle.reopened,
        });
        Report {
            version: REPORT_VERSION,
            measured_secs: (measured_secs * 1000.0).round() / 1000.0,
            pool_exhausted: totals.pool_exhausted,
            interrupted: false,
            plan: PlanReport::of(plan),
            requests: RequestsReport {
                sent: measured.sent_where(|_, _| true),
                sent_by_kind: RequestKind::ALL.iter().map(|&kind| (kind.name(), measured.sent_where(|of, _| of == kind))).collect(),
                completed,
                unanswered: totals.unanswered,
                warmup_sent: totals.warmup_sent,
                warmup_completed: totals.warmup_completed,
            },
            throughput: Throughput {
                requests_per_sec: per_sec(completed, measured_secs),
                events_per_sec: per_sec(measured.events_ok, measured_secs),
                sent_bytes_per_sec: per_sec(measured.bytes_sent, measured_secs),
                received_bytes_per_sec: per_sec(measured.bytes_received, measured_secs),
            },
            latency_us: latency_report(&measured.latency),
            status: status_map(&all_codes),
            status_by_kind,
            classes: breakdown::classes(measured, &run.optional_event_type, measured_secs),
            errors,
            connection_events: ConnectionEvents {
                ready_at_start: totals.load_connections_ready,
                opened: totals.connections_opened,
                reconnects: totals.reconnects,
                closed_by_server: totals.closed_by_server,
            },
            bytes: BytesReport { sent: measured.bytes_sent, received: measured.bytes_received },
            schedule: open_loop.then(|| ScheduleReport { max_lag_us: us(totals.max_lag_ns), late_requests: totals.late_requests }),
            timeline: breakdown::timeline(&measured.timeline, measured_secs),
            timeline_dropped: measured.timeline.dropped,
            idle,
            probe: None,
            fsync_probe: fsync.map(FsyncReport::of),
            run,
        }
    }

    /// Connection errors plus unanswered requests, over requests sent (warm-up included).
    pub fn error_ratio(&self) -> f64 {
        let sent = self.requests.sent + self.requests.warmup_sent;
        let failed = self.errors.get("total").copied().unwrap_or(0) + self.requests.unanswered;
        if sent == 0 { if failed > 0 { 1.0 } else { 0.0 } } else { failed as f64 / sent as f64 }
    }

    pub fn write_json(&self, out: &mut dyn Write) -> io::Result<()> {
        serde_json::to_writer(&mut *out, self).map_err(io::Error::other)?;
        writeln!(out)
    }

    /// The summary; `timeline` adds the per-second table.
    pub fn write_human(&self, out: &mut dyn Write, timeline: bool) -> io::Result<()> {
        let mut text = String::new();
        self.human(&mut text).map_err(io::Error::other)?;
        if timeline {
            breakdown::write_timeline(&mut text, &self.timeline, self.has_optional()).map_err(io::Error::other)?;
        }
        out.write_all(text.as_bytes())
    }

    /// The run had requests of the optional class.
    fn has_optional(&self) -> bool {
        self.run.optional_ratio > 0.0 || self.classes.get(RequestClass::Optional.name()).is_some_and(|class| class.sent > 0)
    }

    fn human(&self, s: &mut String) -> std::fmt::Result {
        let run = &self.run;
        let shape = match (run.rate, run.pipeline) {
            (Some(rate), _) => format!("open loop at {} req/s", group(rate.round() as u64)),
            (None, Some(pipeline)) => format!("closed loop, pipeline {pipeline}"),
            (None, None) => "closed loop".to_owned(),
        };
        writeln!(s, "sluice bench: {shape} against {}", run.url)?;
        writeln!(
            s,
            "  {} connections, {} thread{}; {:.2} s measured after {:.2} s of warm-up",
            run.connections,
            run.threads,
            if run.threads == 1 { "" } else { "s" },
            self.measured_secs,
            run.warmup_secs
        )?;
        self.human_plan(s)?;
        let requests = &self.requests;
        writeln!(
            s,
            "requests:   {} sent, {} completed, {} unanswered (warm-up: {} sent)",
            group(requests.sent),
            group(requests.completed),
            group(requests.unanswered),
            group(requests.warmup_sent)
        )?;
        let throughput = &self.throughput;
        writeln!(
            s,
            "throughput: {} req/s, {} events/s (2xx x {}); sent {}/s, received {}/s",
            group(throughput.requests_per_sec.round() as u64),
            group(throughput.events_per_sec.round() as u64),
            if run.request_templates.is_some() { "events of each request" } else { "batch" },
            bytes(throughput.sent_bytes_per_sec as u64),
            bytes(throughput.received_bytes_per_sec as u64)
        )?;
        let l = &self.latency_us;
        writeln!(
            s,
            "latency:    p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}  mean {}",
            micros(l.p50),
            micros(l.p90),
            micros(l.p99),
            micros(l.p99_9),
            micros(l.p99_99),
            micros(l.max),
            micros(l.mean)
        )?;
        self.human_answers(s)?;
        if self.has_optional() {
            breakdown::write_classes(s, &self.classes)?;
        }
        self.human_rest(s)
    }

    fn human_plan(&self, s: &mut String) -> std::fmt::Result {
        let (run, plan) = (&self.run, &self.plan);
        if let Some(templates) = &run.request_templates {
            let events = match (templates.events_min, templates.events_max) {
                (1, 1) => "1 event".to_owned(),
                (min, max) if min == max => format!("{} events", group(u64::from(min))),
                (min, max) => format!("{} to {} events", group(u64::from(min)), group(u64::from(max))),
            };
            return writeln!(
                s,
                "plan:       {} requests cycling {} template{} of {events} from {} (~{} B each, {} pool) built in {:.2} s",
                group(plan.requests),
                group(templates.templates as u64),
                if templates.templates == 1 { "" } else { "s" },
                templates.file,
                plan.mean_request_bytes,
                bytes(plan.pool_bytes),
                plan.build_secs
            );
        }
        writeln!(
            s,
            "plan:       {} requests of {} event{} (~{} B each, {} pool) built in {:.2} s; {} duplicates, {} bad signatures, {} users",
            group(plan.requests),
            run.batch,
            if run.batch == 1 { "" } else { "s" },
            plan.mean_request_bytes,
            bytes(plan.pool_bytes),
            plan.build_secs,
            group(plan.duplicate),
            group(plan.bad_signature),
            group(run.users)
        )
    }

    fn human_answers(&self, s: &mut String) -> std::fmt::Result {
        let list = |map: &BTreeMap<String, u64>| -> String {
            if map.is_empty() {
                return "none".to_owned();
            }
            map.iter().map(|(code, count)| format!("{code} x {}", group(*count))).collect::<Vec<_>>().join(", ")
        };
        writeln!(s, "status:     {}", list(&self.status))?;
        for (kind, codes) in &self.status_by_kind {
            let sent = self.requests.sent_by_kind.get(kind).copied().unwrap_or(0);
            if sent > 0 || !codes.is_empty() {
                writeln!(s, "  {kind:<14} {} sent: {}", group(sent), list(codes))?;
            }
        }
        let errors: Vec<String> = self
            .errors
            .iter()
            .filter(|(name, count)| **name != "total" && **count > 0)
            .map(|(name, count)| format!("{name} {count}"))
            .collect();
        writeln!(s, "errors:     {}", if errors.is_empty() { "none".to_owned() } else { errors.join(", ") })?;
        let c = &self.connection_events;
        writeln!(
            s,
            "connections: {} ready at start, {} opened, {} reconnects, {} closed by the server",
            c.ready_at_start, c.opened, c.reconnects, c.closed_by_server
        )
    }

    fn human_rest(&self, s: &mut String) -> std::fmt::Result {
        if let Some(schedule) = &self.schedule {
            let verdict = if schedule.late_requests == 0 { "the client kept up" } else { "the client fell behind schedule" };
            writeln!(
                s,
                "schedule:   max lag {}, {} requests more than 1 ms late: {verdict}",
                micros(schedule.max_lag_us),
                group(schedule.late_requests)
            )?;
        }
        if let Some(idle) = &self.idle {
            writeln!(
                s,
                "idle:       {} connections, {} open at start, {} at end; {} pings ({} failed), {} reopened",
                idle.connections, idle.ready_at_start, idle.open_at_end, idle.pings, idle.ping_failures, idle.reopened
            )?;
        }
        if let Some(probe) = &self.probe {
            probe.human(s)?;
        }
        if self.timeline_dropped > 0 {
            writeln!(
                s,
                "NOTE: the timeline keeps the first {} seconds; {} later events are in the totals only.",
                self.timeline.len(),
                group(self.timeline_dropped)
            )?;
        }
        if let Some(fsync) = &self.fsync_probe {
            writeln!(
                s,
                "fsync probe: {} fdatasyncs of 4 KiB appends in {:.1} s in {}: p50 {}  p99 {}  p99.9 {}  max {}",
                group(fsync.count),
                fsync.secs,
                fsync.dir,
                micros(fsync.p50_us),
                micros(fsync.p99_us),
                micros(fsync.p99_9_us),
                micros(fsync.max_us)
            )?;
        }
        if self.interrupted {
            writeln!(
                s,
                "NOTE: interrupted after {:.2} s of the {:.2} s run; the figures cover what was measured.",
                self.measured_secs, self.run.duration_secs
            )?;
        }
        if self.pool_exhausted {
            writeln!(
                s,
                "NOTE: the request pool ({} requests) ran out after {:.2} s of the {:.2} s run, which stopped there; rerun with a larger --requests.",
                group(self.plan.requests),
                self.measured_secs,
                self.run.duration_secs
            )?;
        }
        Ok(())
    }
}

/// `1234567` → `1,234,567`.
pub fn group(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (position, digit) in digits.chars().enumerate() {
        if position > 0 && (digits.len() - position).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Microseconds as `850 µs`, `12.3 µs`, `1.25 ms` or `2.50 s`.
pub fn micros(value: f64) -> String {
    if value >= 1_000_000.0 {
        format!("{:.2} s", value / 1_000_000.0)
    } else if value >= 1000.0 {
        format!("{:.2} ms", value / 1000.0)
    } else if value >= 100.0 {
        format!("{value:.0} µs")
    } else {
        format!("{value:.1} µs")
    }
}

fn bytes(value: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if value < 1024 {
        return format!("{value} B");
    }
    let mut scaled = value as f64 / 1024.0;
    let mut unit = 0;
    while scaled >= 1024.0 && unit + 1 < UNITS.len() {
        scaled /= 1024.0;
        unit += 1;
    }
    format!("{scaled:.1} {}", UNITS[unit])
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use super::*;
    use crate::perimeter::keyring::KeyRing;
    use crate::tools::bench::plan::{PlanSpec, Signer};
    use crate::tools::bench::stats::Answer;

    /// A report with a little of everything (used by the comparison's tests too).
    pub(crate) fn sample() -> Report {
        let ring = KeyRing::from_toml(
            "[[keys]]\nkid = \"k\"\nsecret = \"whsec_c2x1aWNlLWJlbmNoLXBsYW4tdGVzdC1zZWNyZXQtMzI=\"\npartner = \"bench\"\n",
            Path::new("test.toml"),
        )
        .expect("ring");
        let signer = Signer { kid: "k".into(), key: ring.keys()[0].hmac_key().clone() };
        let spec = PlanSpec {
            requests: 10,
            batch: 1,
            event_bytes: 0,
            users: 10,
            duplicate_ratio: 0.0,
            bad_signature_ratio: 0.0,
            optional_ratio: 0.0,
            optional_event_type: "telemetry".into(),
            request_ids: false,
            seed: 1,
            host: "h".into(),
            path: "/v1/events".into(),
            rate: None,
            run_id: 1,
        };
        let plan = Plan::build(&spec, &signer, 1_790_000_000_000, 1).expect("plan");
        let mut totals = ThreadTotals::default();
        let answers = [
            (RequestKind::Unique, RequestClass::Critical, 202, 250_000),
            (RequestKind::Unique, RequestClass::Optional, 503, 1_500_000),
            (RequestKind::Duplicate, RequestClass::Critical, 200, 900_000),
        ];
        for (at, (kind, class, status, latency_ns)) in answers.into_iter().enumerate() {
            let at_ns = at as u64 * 600_000_000;
            totals.measured.record_sent(kind, class, at_ns);
            totals.measured.record(&Answer { kind, class, status, latency_ns, at_ns: at_ns + latency_ns, events: 1 });
        }
        totals.measured.record_sent(RequestKind::Unique, RequestClass::Optional, 0);
        totals.measured.record_unanswered(RequestClass::Optional, 999_000_000);
        totals.count_error(ErrorKind::Reset);
        let run = RunInfo {
            url: "http://127.0.0.1:8080/v1/events".into(),
            mode: "open",
            threads: 1,
            connections: 4,
            pipeline: None,
            rate: Some(100.0),
            duration_secs: 1.0,
            warmup_secs: 0.0,
            batch: 1,
            event_bytes: 0,
            users: 10,
            duplicate_ratio: 0.0,
            bad_signature_ratio: 0.0,
            optional_ratio: 0.5,
            optional_event_type: "telemetry".into(),
            idle_connections: 0,
            request_templates: None,
        };
        let mut report = Report::new(run, &plan, &totals, 1.0, None);
        let mut probe = ProbeTotals { sent: 3, answered: 2, timeouts: 1, ..ProbeTotals::default() };
        probe.latency.saturating_record(80_000);
        probe.latency.saturating_record(120_000);
        report.probe = Some(ProbeReport::of("http://127.0.0.1:9090/healthz", 100, &probe));
        report
    }

    #[test]
    fn json_has_the_documented_keys() {
        let mut out = Vec::new();
        sample().write_json(&mut out).expect("json");
        let value: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        for key in [
            "version",
            "url",
            "mode",
            "threads",
            "connections",
            "pipeline",
            "rate",
            "duration_secs",
            "warmup_secs",
            "measured_secs",
            "batch",
            "event_bytes",
            "users",
            "duplicate_ratio",
            "bad_signature_ratio",
            "optional_ratio",
            "optional_event_type",
            "idle_connections",
            "request_templates",
            "pool_exhausted",
            "interrupted",
            "plan",
            "requests",
            "throughput",
            "latency_us",
            "status",
            "status_by_kind",
            "classes",
            "errors",
            "connection_events",
            "bytes",
            "schedule",
            "timeline",
            "timeline_dropped",
            "idle",
            "probe",
            "fsync_probe",
        ] {
            assert!(value.get(key).is_some(), "missing key {key}: {value}");
        }
        for key in ["count", "min", "mean", "p50", "p90", "p99", "p99_9", "p99_99", "max"] {
            assert!(value["latency_us"].get(key).is_some(), "missing latency_us.{key}");
        }
        for key in ["connect_refused", "connect_failed", "reset", "eof", "timeout", "parse", "tls", "total"] {
            assert!(value["errors"].get(key).is_some(), "missing errors.{key}");
        }
        assert_eq!(value["status"]["202"], 1);
        assert_eq!(value["status"]["503"], 1);
        assert_eq!(value["status_by_kind"]["duplicate"]["200"], 1);
        assert_eq!(value["status_by_kind"]["unique"], serde_json::json!({"202": 1, "503": 1}));
        assert_eq!(value["requests"]["sent_by_kind"]["unique"], 3);
        assert_eq!(value["requests"]["sent"], 4);
        assert_eq!(value["plan"]["critical"], 10);
        assert_eq!(value["errors"]["total"], 1);
        assert_eq!(value["throughput"]["requests_per_sec"], 3.0);
        assert!(value["schedule"]["max_lag_us"].is_number());
        assert!(value["idle"].is_null() && value["fsync_probe"].is_null() && value["request_templates"].is_null());
    }

    #[test]
    fn a_template_run_says_where_its_requests_came_from() {
        let mut report = sample();
        report.run.request_templates = Some(TemplatesInfo { file: "r/mix.jsonl".into(), templates: 3, events_min: 1, events_max: 100 });
        let mut out = Vec::new();
        report.write_human(&mut out, false).expect("summary");
        let text = String::from_utf8(out).expect("utf-8");
        for needle in ["plan:       10 requests cycling 3 templates of 1 to 100 events from r/mix.jsonl", "(2xx x events of each request)"]
        {
            assert!(text.contains(needle), "{needle:?} in {text}");
        }
        let mut out = Vec::new();
        report.write_json(&mut out).expect("json");
        let value: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(
            value["request_templates"],
            serde_json::json!({"file": "r/mix.jsonl", "templates": 3, "events_min": 1, "events_max": 100})
        );
    }

    #[test]
    fn json_has_classes_timeline_and_probe() {
        let mut out = Vec::new();
        sample().write_json(&mut out).expect("json");
        let value: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        let optional = &value["classes"]["optional"];
        for (key, want) in
            [("sent", 2), ("answered", 1), ("accepted", 0), ("refused_429", 0), ("refused_503", 1), ("refused_other", 0), ("unanswered", 1)]
        {
            assert_eq!(optional[key], want, "classes.optional.{key}: {optional}");
        }
        assert_eq!(value["classes"]["critical"]["accepted"], 2);
        assert_eq!(value["classes"]["critical"]["accepted_per_sec"], 2.0);
        assert_eq!(value["classes"]["critical"]["event_types"], serde_json::json!(["bet", "win", "deposit"]));
        for key in ["p50", "p90", "p99", "p99_9", "max"] {
            assert!(optional["latency_us"][key].is_number(), "classes.optional.latency_us.{key}");
        }
        let timeline = value["timeline"].as_array().expect("timeline");
        assert_eq!(timeline.len(), 2, "one second of window, and the answer that came in second 1: {timeline:?}");
        assert_eq!(timeline[0]["second"], 0);
        assert_eq!(timeline[0]["critical"]["accepted"], 1);
        assert_eq!(timeline[0]["optional"]["unanswered"], 1);
        assert_eq!(timeline[1]["optional"]["refused_503"], 0);
        assert_eq!(timeline[0]["answered"], 2);
        assert_eq!(timeline[1]["critical"]["accepted"], 1);
        assert!(timeline[0]["p99_us"].is_number());
        for key in ["errors", "late", "answered", "p99_us"] {
            assert!(timeline[0].get(key).is_some(), "timeline[].{key}");
        }
        assert_eq!(value["probe"]["timeouts"], 1);
        let probe_max = value["probe"]["latency_us"]["max"].as_f64().unwrap_or(0.0);
        assert!((120.0..=120.2).contains(&probe_max), "HdrHistogram's 3 digits: {probe_max}");
    }

    #[test]
    fn human_summary_names_the_figures() {
        let mut out = Vec::new();
        sample().write_human(&mut out, true).expect("text");
        let text = String::from_utf8(out).expect("utf-8");
        for needle in [
            "open loop at 100 req/s",
            "p99 ",
            "202 x 1",
            "duplicate",
            "reset 1",
            "max lag",
            "optional  2 sent (telemetry): 0 accepted, 0 / 1 / 0 refused, 1 unanswered",
            "probe:      http://127.0.0.1:9090/healthz every 100 ms: 3 sent, 2 answered (0 not 2xx), 0 errors, 1 timeouts",
            "timeline:",
        ] {
            assert!(text.contains(needle), "{needle:?} not in\n{text}");
        }
        let mut plain = Vec::new();
        sample().write_human(&mut plain, false).expect("text");
        assert!(!String::from_utf8(plain).expect("utf-8").contains("timeline:"), "the table only with --timeline");
    }

    #[test]
    fn number_formatting() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(micros(12.34), "12.3 µs");
        assert_eq!(micros(850.0), "850 µs");
        assert_eq!(micros(1250.0), "1.25 ms");
        assert_eq!(micros(2_500_000.0), "2.50 s");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
