//! `sluice bench`: the included load harness (docs/BENCH.md).
//!
//! A run: validate the options ([`args`]) → optionally probe the disk's fdatasync
//! latency ([`fsync_probe`]) → build and sign every request ([`plan`]), or cycle the
//! requests of a `--request-templates` file ([`templates`]) → start the
//! client threads, each with its own io_uring ([`engine`]), and wait until they have
//! opened their connections ([`shared`]) → start the clock (and the health [`probe`]) →
//! progress line → merge the threads' counts ([`stats`], per second in [`timeline`]) into
//! one [`report::Report`] (per class and per second: [`breakdown`]) → summary or JSON,
//! and the SVG plot ([`svg`]). With `--compare-url`, runs alternate between the reference
//! and sluice and one [`compare::Comparison`] is printed instead.

pub mod args;
pub mod breakdown;
pub mod compare;
pub mod conn;
pub mod engine;
pub mod fsync_probe;
pub mod plan;
pub mod probe;
pub mod report;
pub mod response;
pub mod shared;
pub mod stats;
pub mod svg;
pub mod templates;
pub mod timeline;

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_lc_rs::hmac;
use hdrhistogram::Histogram;

pub use args::{BenchArgs, Options};

use crate::perimeter::keyring::{KeyRing, KeyRingError};
use crate::tools::bench::args::{Compare, KeySource, RequestSource};
use crate::tools::bench::compare::{Comparison, Side};
use crate::tools::bench::engine::ThreadSetup;
use crate::tools::bench::fsync_probe::FsyncProbe;
use crate::tools::bench::plan::{Plan, PlanError, PlanSpec, Signer};
use crate::tools::bench::probe::ProbeTotals;
use crate::tools::bench::report::{ProbeReport, Report, RunInfo, TemplatesInfo};
use crate::tools::bench::shared::{EngineOptions, Shared};
use crate::tools::bench::stats::ThreadTotals;
use crate::tools::bench::templates::TemplateFile;

/// How often the progress line is redrawn, and how often the main thread looks.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
const MAIN_POLL: Duration = Duration::from_millis(20);

/// Why a run failed. [`BenchError::is_usage`] tells the exit status apart.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    KeyRing(#[from] KeyRingError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("fsync probe in {dir}: {source}")]
    FsyncProbe { dir: PathBuf, source: io::Error },
    #[error("cannot start a client thread: {0}")]
    Thread(io::Error),
    #[error("client thread failed: {0}")]
    Engine(io::Error),
    #[error("cannot connect to {url}: {reason}")]
    CannotConnect { url: String, reason: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot print the report: {0}")]
    Output(io::Error),
    #[error("error ratio {ratio:.4} is above --max-error-ratio {max}")]
    ErrorRatio { ratio: f64, max: f64 },
}

impl BenchError {
    /// True when the user must change the command line or the key ring (exit 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            BenchError::Usage(_)
                | BenchError::KeyRing(_)
                | BenchError::Plan(PlanError::TooLarge { .. } | PlanError::TooManyRequests { .. })
        )
    }
}

/// Runs what the options ask for, one run or a comparison, and prints the report on
/// `out` (JSON with `--json`), notes and progress on stderr. `--max-error-ratio`
/// failures are returned after the report is printed.
pub fn run(options: &Options, out: &mut dyn Write) -> Result<(), BenchError> {
    warn_open_files(options);
    let interrupted = catch_signals();
    match &options.compare {
        None => run_once(options, &interrupted, out).map(|_| ()),
        Some(compare) => run_comparison(options, compare, &interrupted, out).map(|_| ()),
    }
}

/// Ctrl-C (or SIGTERM) ends the run early, with a report of what was measured; a second
/// one exits at once. One flag for every run of the invocation.
fn catch_signals() -> Arc<AtomicBool> {
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let registered = signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&interrupted))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&interrupted)));
        if let Err(error) = registered {
            eprintln!("sluice bench: warning: cannot catch signal {signal}: {error}");
        }
    }
    interrupted
}

fn warn_open_files(options: &Options) {
    let wanted = options.connections + options.idle_connections + 64;
    let limit = crate::platform::rlimit::raise_open_files_limit();
    if limit.is_some_and(|limit| limit < wanted as u64) {
        eprintln!(
            "sluice bench: warning: the open-files limit is {limit:?}, below the {wanted} descriptors this run needs; raise `ulimit -Hn`"
        );
    }
}

/// One run: the report, printed, and the plot.
fn run_once(options: &Options, interrupted: &Arc<AtomicBool>, out: &mut dyn Write) -> Result<Report, BenchError> {
    let fsync = match &options.fsync_probe {
        Some((dir, secs)) => {
            eprintln!("sluice bench: probing fdatasync latency in {} for {:.1} s", dir.display(), secs.as_secs_f64());
            Some(fsync_probe::run(dir, *secs).map_err(|source| BenchError::FsyncProbe { dir: dir.clone(), source })?)
        }
        None => None,
    };
    let pool = PoolSource::load(&options.requests_from)?;
    let Measurement { report, latency } = measure(options, &pool, interrupted, fsync.as_ref())?;
    if options.json { report.write_json(out) } else { report.write_human(out, options.timeline) }.map_err(BenchError::Output)?;
    if let Some(path) = &options.svg {
        let title = format!("sluice bench: {} ({})", options.target.url, if options.rate.is_some() { "open loop" } else { "closed loop" });
        let plot = svg::percentile_plot(&latency, &title);
        std::fs::write(path, plot).map_err(|source| BenchError::Write { path: path.clone(), source })?;
    }
    check_error_ratio(options, &[&report])?;
    Ok(report)
}

/// `--compare-url`: the reference and sluice in turn, `--rounds` times, one report.
fn run_comparison(
    options: &Options,
    compare: &Compare,
    interrupted: &Arc<AtomicBool>,
    out: &mut dyn Write,
) -> Result<Comparison, BenchError> {
    let pool = PoolSource::load(&options.requests_from)?;
    let (reference, sluice) = compare::alternate(
        compare.rounds,
        || interrupted.load(Ordering::Relaxed),
        |side, round| {
            let (target, options) = match side {
                Side::Reference => ("reference", &*compare.reference),
                Side::Sluice => ("sluice", options),
            };
            eprintln!("sluice bench: round {round} of {}: {target} at {}", compare.rounds, options.target.url);
            let report = measure(options, &pool, interrupted, None)?.report;
            eprintln!(
                "sluice bench: round {round}, {target}: {} req/s, p50 {}, p99 {}",
                report::group(report.throughput.requests_per_sec.round() as u64),
                report::micros(report.latency_us.p50),
                report::micros(report.latency_us.p99)
            );
            Ok::<Report, BenchError>(report)
        },
    )?;
    let comparison = Comparison::new(run_info(options), compare.reference.target.url.clone(), compare.rounds, &reference, &sluice);
    if options.json { comparison.write_json(out) } else { comparison.write_human(out) }.map_err(BenchError::Output)?;
    let reports: Vec<&Report> = reference.iter().chain(&sluice).collect();
    check_error_ratio(options, &reports)?;
    Ok(comparison)
}

/// `--max-error-ratio`: the worst of `reports` against the limit.
fn check_error_ratio(options: &Options, reports: &[&Report]) -> Result<(), BenchError> {
    let Some(max) = options.max_error_ratio else { return Ok(()) };
    let ratio = reports.iter().map(|report| report.error_ratio()).fold(0.0, f64::max);
    if ratio > max {
        return Err(BenchError::ErrorRatio { ratio, max });
    }
    Ok(())
}

/// What one run measured: its report, and the latency histogram for the plot.
struct Measurement {
    report: Report,
    latency: Histogram<u64>,
}

/// What each run's pool is built from: loaded once per invocation.
enum PoolSource<'a> {
    /// Boxed: an HMAC key is over a kilobyte, a file reference 8 bytes.
    Signed(Box<Signer>),
    Templates(&'a TemplateFile),
}

impl PoolSource<'_> {
    fn load(source: &RequestSource) -> Result<PoolSource<'_>, BenchError> {
        match source {
            RequestSource::Signed(key) => load_signer(key).map(|signer| PoolSource::Signed(Box::new(signer))),
            RequestSource::Templates(file) => Ok(PoolSource::Templates(file)),
        }
    }

    /// The run's requests: signed now, or the templates written for the run's target.
    fn build_plan(&self, options: &Options) -> Result<Plan, PlanError> {
        match self {
            PoolSource::Signed(signer) => {
                let workers = std::thread::available_parallelism().map_or(1, usize::from);
                Plan::build(&plan_spec(options), signer, crate::platform::time::now_unix_ms(), workers)
            }
            PoolSource::Templates(file) => Plan::from_templates(&file.templates, &options.target.host, options.requests),
        }
    }
}

/// Builds the pool, runs the threads (and the probe) and makes the report; prints
/// nothing but notes on stderr.
fn measure(
    options: &Options,
    pool: &PoolSource<'_>,
    interrupted: &Arc<AtomicBool>,
    fsync: Option<&FsyncProbe>,
) -> Result<Measurement, BenchError> {
    let plan = pool.build_plan(options)?;
    eprintln!(
        "sluice bench: built {} requests ({} bytes of pool) in {:.2} s",
        report::group(plan.len() as u64),
        report::group(plan.pool_bytes()),
        plan.build_time().as_secs_f64()
    );
    let engine = engine_options(options);
    let shared = Shared::new(options.threads, Arc::clone(interrupted));
    let (totals, probe) = run_threads(options, &engine, &plan, &shared)?;
    if totals.load_connections_ready == 0 {
        let reason = shared.last_connect_error.lock().ok().and_then(|last| last.clone()).unwrap_or_else(|| "no connection opened".into());
        return Err(BenchError::CannotConnect { url: options.target.url.clone(), reason });
    }
    if totals.errors[stats::ErrorKind::Tls as usize] > 0
        && let Some(last) = shared.last_connect_error.lock().ok().and_then(|last| last.clone())
    {
        eprintln!("sluice bench: {} TLS errors; the last: {last}", totals.errors[stats::ErrorKind::Tls as usize]);
    }
    let start = shared.start_ns.load(Ordering::Relaxed);
    let warmup_end = start + engine.warmup_ns;
    let stopped = shared.stopped_at_ns.load(Ordering::Relaxed).min(warmup_end + engine.duration_ns);
    let measured_secs = stopped.saturating_sub(warmup_end) as f64 / 1e9;
    let mut report = Report::new(run_info(options), &plan, &totals, measured_secs, fsync);
    report.interrupted = shared.interrupted.load(Ordering::Relaxed);
    if let (Some(spec), Some(probe)) = (&options.probe, &probe) {
        report.probe = Some(ProbeReport::of(&spec.target.url, spec.every.as_millis() as u64, probe));
    }
    Ok(Measurement { report, latency: totals.measured.latency })
}

fn load_signer(source: &KeySource) -> Result<Signer, BenchError> {
    match source {
        KeySource::Secret { secret, kid } => {
            let bytes = crate::perimeter::keyring::decode_secret(secret)?;
            Ok(Signer { kid: kid.clone(), key: hmac::Key::new(hmac::HMAC_SHA256, &bytes) })
        }
        KeySource::Ring { path, kid } => {
            let ring = KeyRing::load(path)?;
            let now_ms = crate::platform::time::now_unix_ms();
            let key = match kid {
                Some(kid) => {
                    ring.get(kid.as_bytes()).ok_or_else(|| BenchError::Usage(format!("key ring {} has no key {kid:?}", path.display())))?
                }
                None => ring
                    .keys()
                    .iter()
                    .find(|key| key.accepts_at(now_ms))
                    .ok_or_else(|| BenchError::Usage(format!("key ring {} has no key accepted now", path.display())))?,
            };
            if !key.accepts_at(now_ms) {
                eprintln!("sluice bench: warning: key {} is {} now; the server will answer 401", key.kid, key.status_at(now_ms));
            }
            Ok(Signer { kid: key.kid.clone(), key: key.hmac_key().clone() })
        }
    }
}

fn plan_spec(options: &Options) -> PlanSpec {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let run_id = (nanos ^ (nanos >> 32) ^ u64::from(std::process::id()).rotate_left(40)) as u32;
    PlanSpec {
        requests: options.requests,
        batch: options.batch,
        event_bytes: options.event_bytes,
        users: options.users,
        duplicate_ratio: options.duplicate_ratio,
        bad_signature_ratio: options.bad_signature_ratio,
        optional_ratio: options.optional_ratio,
        optional_event_type: options.optional_event_type.clone(),
        request_ids: options.request_ids,
        seed: options.seed,
        host: options.target.host.clone(),
        path: options.target.path.clone(),
        rate: options.rate,
        run_id,
    }
}

fn engine_options(options: &Options) -> EngineOptions {
    EngineOptions {
        addr: options.target.addr,
        host: options.target.host.clone(),
        pipeline: options.pipeline,
        rate: options.rate,
        warmup_ns: options.warmup.as_nanos() as u64,
        duration_ns: options.duration.as_nanos() as u64,
        timeout_ns: options.timeout.as_nanos() as u64,
        idle_ping_ns: options.idle_ping.as_nanos() as u64,
        tls: options.tls.clone(),
    }
}

fn run_info(options: &Options) -> RunInfo {
    RunInfo {
        url: options.target.url.clone(),
        mode: if options.rate.is_some() { "open" } else { "closed" },
        threads: options.threads,
        connections: options.connections,
        pipeline: options.rate.is_none().then_some(options.pipeline),
        rate: options.rate,
        duration_secs: options.duration.as_secs_f64(),
        warmup_secs: options.warmup.as_secs_f64(),
        batch: options.batch,
        event_bytes: options.event_bytes,
        users: options.users,
        duplicate_ratio: options.duplicate_ratio,
        bad_signature_ratio: options.bad_signature_ratio,
        optional_ratio: options.optional_ratio,
        optional_event_type: options.optional_event_type.clone(),
        idle_connections: options.idle_connections,
        request_templates: match &options.requests_from {
            RequestSource::Signed(_) => None,
            RequestSource::Templates(file) => {
                let (events_min, events_max) = file.events_range();
                let (file, templates) = (file.path.display().to_string(), file.templates.len());
                Some(TemplatesInfo { file, templates, events_min, events_max })
            }
        },
    }
}

/// `count` split over `threads`: thread `t` gets the `t`-th share.
fn share(count: usize, threads: usize, thread: usize) -> usize {
    count / threads + usize::from(thread < count % threads)
}

/// Starts the client threads, starts the clock once all have connected (and the probe
/// with it), shows progress, and merges their counts.
fn run_threads(
    options: &Options,
    engine: &EngineOptions,
    plan: &Plan,
    shared: &Shared,
) -> Result<(ThreadTotals, Option<ProbeTotals>), BenchError> {
    std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(options.threads);
        for thread in 0..options.threads {
            let setup = ThreadSetup {
                thread,
                threads: options.threads,
                load_connections: share(options.connections, options.threads, thread),
                idle_connections: share(options.idle_connections, options.threads, thread),
                options: engine,
                plan,
                shared,
            };
            let handle = std::thread::Builder::new()
                .name(format!("sluice-bench-{thread}"))
                .spawn_scoped(scope, move || engine::run_thread(setup))
                .map_err(BenchError::Thread);
            match handle {
                Ok(handle) => handles.push(handle),
                Err(error) => {
                    // The started threads wait at the gate; let them go, straight to the end.
                    shared.abort.store(true, Ordering::Relaxed);
                    shared.gate.open();
                    return Err(error);
                }
            }
        }
        shared.gate.wait_arrivals(options.threads);
        let ready: u64 = shared.progress.iter().map(|p| p.ready_connections.load(Ordering::Relaxed)).sum();
        if ready == 0 {
            shared.abort.store(true, Ordering::Relaxed);
        } else {
            eprintln!("sluice bench: {ready} of {} load connections open; running", options.connections);
        }
        let start = shared.now_ns();
        shared.start_ns.store(start, Ordering::Relaxed);
        shared.gate.open();
        let probe = match &options.probe {
            Some(probe) if ready > 0 => Some(start_probe(scope, probe, engine, shared, start)?),
            _ => None,
        };
        if ready > 0 {
            show_progress(shared, &handles);
        }
        let mut totals = ThreadTotals::default();
        for handle in handles {
            let failure = match handle.join() {
                Ok(Ok(thread_totals)) => {
                    totals.merge(&thread_totals);
                    continue;
                }
                Ok(Err(error)) => BenchError::Engine(error),
                Err(_) => BenchError::Engine(io::Error::other("a client thread panicked")),
            };
            // The other threads and the probe stop too; the scope waits for them.
            shared.abort.store(true, Ordering::Relaxed);
            shared.stop.store(true, Ordering::Relaxed);
            return Err(failure);
        }
        let probe = match probe.map(|handle| handle.join()) {
            None => None,
            Some(Ok(probe)) => Some(probe),
            Some(Err(_)) => return Err(BenchError::Engine(io::Error::other("the probe thread panicked"))),
        };
        Ok((totals, probe))
    })
}

/// Starts the `--probe` thread: from the end of the warm-up to the end of the run.
fn start_probe<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    probe: &'scope args::Probe,
    engine: &'scope EngineOptions,
    shared: &'scope Shared,
    start_ns: u64,
) -> Result<std::thread::ScopedJoinHandle<'scope, ProbeTotals>, BenchError> {
    let from = start_ns + engine.warmup_ns;
    let timeout = Duration::from_nanos(engine.timeout_ns);
    let spawned = std::thread::Builder::new()
        .name("sluice-bench-probe".into())
        .spawn_scoped(scope, move || probe::run(probe, timeout, shared, from, from + engine.duration_ns));
    spawned.map_err(|error| {
        // The client threads are running: stop them, the scope waits for them.
        shared.abort.store(true, Ordering::Relaxed);
        shared.stop.store(true, Ordering::Relaxed);
        BenchError::Thread(error)
    })
}

/// Redraws `elapsed  req/s  p99  errors` on stderr once a second while the threads run,
/// if stderr is a terminal.
fn show_progress<T>(shared: &Shared, handles: &[std::thread::ScopedJoinHandle<'_, T>]) {
    let terminal = io::stderr().is_terminal();
    let start = shared.start_ns.load(Ordering::Relaxed);
    let mut next_ns = start + PROGRESS_EVERY.as_nanos() as u64;
    let mut last_completed = 0u64;
    while !handles.iter().all(|handle| handle.is_finished()) {
        std::thread::sleep(MAIN_POLL);
        let now = shared.now_ns();
        if !terminal || now < next_ns {
            continue;
        }
        next_ns += PROGRESS_EVERY.as_nanos() as u64;
        let completed: u64 = shared.progress.iter().map(|p| p.completed.load(Ordering::Relaxed)).sum();
        let errors: u64 = shared.progress.iter().map(|p| p.errors.load(Ordering::Relaxed)).sum();
        let p99 = shared.progress.iter().map(|p| p.p99_ns.load(Ordering::Relaxed)).max().unwrap_or(0);
        let line = format!(
            "\r{:>7.1} s  {:>10} req/s  p99 {:>10}  errors {}",
            (now - start) as f64 / 1e9,
            report::group(completed - last_completed),
            report::micros(p99 as f64 / 1000.0),
            errors
        );
        last_completed = completed;
        let mut stderr = io::stderr().lock();
        let _ = write!(stderr, "{line:<60}");
        let _ = stderr.flush();
    }
    if terminal {
        eprint!("\r{:60}\r", "");
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    use super::*;
    use crate::tools::bench::args::parse_bench_args;
    use crate::tools::bench::plan::RequestKind;

    fn plan_of(options: &Options) -> Plan {
        PoolSource::load(&options.requests_from).expect("request source").build_plan(options).expect("plan")
    }

    /// Answers every request in turn with: 100 then 202 (Content-Length), 200 chunked,
    /// 204; every tenth answer of a connection says `Connection: close` and closes. Each
    /// answer is written in two pieces, so the client sees heads split across reads.
    fn serve_mixed_answers(listener: TcpListener) {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || answer_connection(stream));
        }
    }

    fn answer_connection(mut stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let mut input = Vec::new();
        let mut answered = 0usize;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut request = httparse::Request::new(&mut headers);
            if let Ok(httparse::Status::Complete(head)) = request.parse(&input) {
                let length = request
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                    .unwrap_or(0);
                if input.len() >= head + length {
                    input.drain(..head + length);
                    answered += 1;
                    let close = answered.is_multiple_of(10);
                    let answer: &[u8] = match (answered % 3, close) {
                        (_, true) => b"HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
                        (0, _) => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}",
                        (1, _) => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n0\r\n\r\n",
                        _ => b"HTTP/1.1 204 No Content\r\n\r\n",
                    };
                    let (first, second) = answer.split_at(answer.len() / 2);
                    if stream.write_all(first).and_then(|()| stream.flush()).and_then(|()| stream.write_all(second)).is_err() || close {
                        return;
                    }
                    continue;
                }
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => input.extend_from_slice(&chunk[..n]),
            }
        }
    }

    #[test]
    fn engine_counts_mixed_answers_over_real_sockets() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        std::thread::spawn(move || serve_mixed_answers(listener));
        let secret = "whsec_c2x1aWNlLWJlbmNoLXBsYW4tdGVzdC1zZWNyZXQtMzI=";
        let probe_url = format!("{url}/healthz");
        let open_loop = ["--rate", "2000", "--duration", "0.3", "--probe", &probe_url, "--probe-every", "20"];
        for extra in [&["--requests", "600", "--duration", "5"][..], &open_loop] {
            let mut argv = vec!["bench", "--url", &url, "--secret", secret, "--kid", "k", "--connections", "3", "--optional-ratio", "0.5"];
            argv.extend_from_slice(extra);
            let options = parse_bench_args(argv).expect("arguments").validate().expect("valid");
            let plan = plan_of(&options);
            let shared = Shared::new(1, Arc::new(AtomicBool::new(false)));
            let (totals, probe) = run_threads(&options, &engine_options(&options), &plan, &shared).expect("run");
            let measured = &totals.measured;
            let completed = measured.completed();
            assert_eq!(totals.errors_total(), 0, "{extra:?}: {:?}", totals.errors);
            // Open loop may pipeline behind a closing answer; those are unanswered, not lost.
            assert_eq!(completed + totals.unanswered, 600, "{extra:?}");
            if options.rate.is_none() {
                assert_eq!(totals.unanswered, 0, "closed loop, pipeline 1: every request answered");
            }
            let codes = measured.codes(|kind, _| kind == RequestKind::Unique);
            assert_eq!(codes[202] + codes[200] + codes[204], completed, "{extra:?}: only the answers sent");
            assert!(codes[200] > 0 && codes[204] > 0 && codes[202] > 0, "{extra:?}");
            assert!(totals.closed_by_server + 3 >= completed / 10, "{extra:?}: {} closes", totals.closed_by_server);
            assert_eq!(totals.reconnects, totals.connections_opened - 3, "{extra:?}");
            assert_classes_add_up(measured, 100, &format!("{extra:?}"));
            match probe {
                Some(probe) => {
                    assert!(probe.sent >= 5, "a probe every 20 ms for 300 ms: {probe:?}");
                    assert_eq!((probe.answered, probe.failed, probe.errors, probe.timeouts), (probe.sent, 0, 0, 0), "{probe:?}");
                }
                None => assert!(options.probe.is_none()),
            }
        }
    }

    /// Per class: every request sent was answered or counted unanswered, and the timeline
    /// holds each of them once.
    fn assert_classes_add_up(measured: &stats::Measured, least: u64, run: &str) {
        use crate::tools::bench::plan::RequestClass;
        for class in RequestClass::ALL {
            let sent = measured.sent_where(|_, of| of == class);
            let answered: u64 = measured.codes(|_, of| of == class).iter().sum();
            assert!(sent > least, "{run}: about half are {}: {sent}", class.name());
            assert_eq!(answered + measured.unanswered[class.index()], sent, "{run}: {}", class.name());
            let seconds = measured.timeline.seconds();
            assert_eq!(seconds.iter().map(|second| second.sent[class.index()]).sum::<u64>(), sent, "{run}");
            let settled: u64 = seconds.iter().map(|second| second.settled[class.index()].iter().sum::<u64>()).sum();
            assert_eq!(settled, sent, "{run}: each request settled once in the timeline");
        }
    }

    /// Answers 202, but closes every connection without answering its fifth request.
    fn serve_dropping_every_fifth(listener: TcpListener) {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut input = Vec::new();
                let mut chunk = [0u8; 16 * 1024];
                let mut requests = 0;
                loop {
                    while let Some(end) = input.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&input[..end]).to_ascii_lowercase();
                        let length: usize =
                            head.split("content-length: ").nth(1).and_then(|rest| rest.lines().next()?.parse().ok()).unwrap_or(0);
                        if input.len() < end + 4 + length {
                            break;
                        }
                        input.drain(..end + 4 + length);
                        requests += 1;
                        if requests == 5 || stream.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}").is_err() {
                            return;
                        }
                    }
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => input.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    }

    #[test]
    fn lost_requests_are_counted_by_class_and_second() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        std::thread::spawn(move || serve_dropping_every_fifth(listener));
        let secret = "whsec_c2x1aWNlLWJlbmNoLXBsYW4tdGVzdC1zZWNyZXQtMzI=";
        let argv = ["bench", "--url", &url, "--secret", secret, "--kid", "k", "--connections", "4", "--optional-ratio", "0.5"];
        let argv = argv.into_iter().chain(["--requests", "200", "--duration", "5"]);
        let options = parse_bench_args(argv).expect("arguments").validate().expect("valid");
        let plan = plan_of(&options);
        let shared = Shared::new(1, Arc::new(AtomicBool::new(false)));
        let (totals, _) = run_threads(&options, &engine_options(&options), &plan, &shared).expect("run");
        let measured = &totals.measured;
        assert!(totals.unanswered >= 8, "every connection loses its fifth request: {}", totals.unanswered);
        assert_eq!(measured.unanswered.iter().sum::<u64>(), totals.unanswered, "no warm-up: every loss is measured");
        assert_eq!(totals.errors[stats::ErrorKind::Eof as usize], totals.unanswered, "one eof per lost request");
        assert_classes_add_up(measured, 40, "dropping");
        let timeline_errors: u64 = measured.timeline.seconds().iter().map(|second| second.errors).sum();
        assert_eq!(timeline_errors, totals.errors_total(), "each error in its second");
    }

    #[test]
    fn template_runs_count_each_requests_own_events() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        std::thread::spawn(move || serve_mixed_answers(listener));
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("mix.jsonl");
        let line = |path: &str, events: u32| {
            format!(r#"{{"method":"POST","path":"{path}","headers":[["Authorization","Bearer t"]],"body":"{{}}","events":{events}}}"#)
        };
        std::fs::write(&file, [line("/one", 1), line("/ten", 10), line("/hundred", 100)].join("\n")).expect("write templates");
        let file = file.to_str().expect("utf-8 path");
        let argv = ["bench", "--url", &url, "--request-templates", file, "--connections", "3", "--requests", "600", "--duration", "5"];
        let options = parse_bench_args(argv).expect("arguments").validate().expect("valid");
        let plan = plan_of(&options);
        let shared = Shared::new(1, Arc::new(AtomicBool::new(false)));
        let (totals, _) = run_threads(&options, &engine_options(&options), &plan, &shared).expect("run");
        let measured = &totals.measured;
        assert_eq!((totals.errors_total(), totals.unanswered, measured.completed()), (0, 0, 600), "{:?}", totals.errors);
        let codes = measured.codes(|_, _| true);
        assert_eq!(codes[202] + codes[200] + codes[204], 600, "every answer is a 2xx");
        assert_eq!(measured.events_ok, 200 * (1 + 10 + 100), "each 2xx counts its own template's events");
        let info = run_info(&options).request_templates.expect("templates in the report");
        assert_eq!((info.templates, info.events_min, info.events_max), (3, 1, 100));
    }

    #[test]
    fn shares_add_up() {
        for (count, threads) in [(64, 1), (64, 3), (5, 2), (10_000, 7)] {
            assert_eq!((0..threads).map(|t| share(count, threads, t)).sum::<usize>(), count);
        }
    }

    #[test]
    fn open_files_limit_is_raised_to_the_hard_limit() {
        let soft = crate::platform::rlimit::raise_open_files_limit().expect("getrlimit works");
        let (rlim_cur, rlim_max) = crate::platform::sys::getrlimit(libc::RLIMIT_NOFILE).expect("getrlimit");
        assert_eq!(soft, rlim_cur);
        assert!(rlim_cur == rlim_max || rlim_max == libc::RLIM_INFINITY);
    }
}
