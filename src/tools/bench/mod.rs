//! `sluice bench`: the included load harness (docs/BENCH.md).
//!
//! A run: validate the options ([`args`]) → optionally probe the disk's fdatasync
//! latency ([`fsync_probe`]) → build and sign every request ([`plan`]) → start the
//! client threads, each with its own io_uring ([`engine`]), and wait until they have
//! opened their connections ([`shared`]) → start the clock → progress line → merge the threads'
//! counts ([`stats`]) into one [`report::Report`] → summary or JSON, and the SVG plot
//! ([`svg`]).

pub mod args;
pub mod conn;
pub mod engine;
pub mod fsync_probe;
pub mod plan;
pub mod report;
pub mod response;
pub mod shared;
pub mod stats;
pub mod svg;

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_lc_rs::hmac;

pub use args::{BenchArgs, Options};

use crate::perimeter::keyring::{KeyRing, KeyRingError};
use crate::tools::bench::args::KeySource;
use crate::tools::bench::engine::ThreadSetup;
use crate::tools::bench::plan::{Plan, PlanError, PlanSpec, Signer};
use crate::tools::bench::report::{Report, RunInfo};
use crate::tools::bench::shared::{EngineOptions, Shared};
use crate::tools::bench::stats::ThreadTotals;

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

/// Runs the benchmark and prints the report on `out` (JSON with `--json`), notes and
/// progress on stderr. Returns the report; `--max-error-ratio` failures are returned
/// after printing it.
pub fn run(options: &Options, out: &mut dyn Write) -> Result<Report, BenchError> {
    let wanted = options.connections + options.idle_connections + 64;
    let limit = crate::platform::rlimit::raise_open_files_limit();
    if limit.is_some_and(|limit| limit < wanted as u64) {
        eprintln!(
            "sluice bench: warning: the open-files limit is {limit:?}, below the {wanted} descriptors this run needs; raise `ulimit -Hn`"
        );
    }
    let fsync = match &options.fsync_probe {
        Some((dir, secs)) => {
            eprintln!("sluice bench: probing fdatasync latency in {} for {:.1} s", dir.display(), secs.as_secs_f64());
            Some(fsync_probe::run(dir, *secs).map_err(|source| BenchError::FsyncProbe { dir: dir.clone(), source })?)
        }
        None => None,
    };
    let signer = load_signer(&options.key)?;
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let plan = Plan::build(&plan_spec(options), &signer, crate::platform::time::now_unix_ms(), workers)?;
    eprintln!(
        "sluice bench: built {} requests ({} bytes of pool) in {:.2} s",
        report::group(plan.len() as u64),
        report::group(plan.pool_bytes()),
        plan.build_time().as_secs_f64()
    );
    let engine = engine_options(options);
    let shared = Shared::new(options.threads);
    // Ctrl-C ends the run early, with a report of what was measured; a second one exits at once.
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let registered = signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&shared.interrupted))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&shared.interrupted)));
        if let Err(error) = registered {
            eprintln!("sluice bench: warning: cannot catch signal {signal}: {error}");
        }
    }
    let totals = run_threads(options, &engine, &plan, &shared)?;
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
    let mut report = Report::new(run_info(options), &plan, &totals, measured_secs, fsync.as_ref());
    report.interrupted = shared.interrupted.load(Ordering::Relaxed);
    if options.json { report.write_json(out) } else { report.write_human(out) }.map_err(BenchError::Output)?;
    if let Some(path) = &options.svg {
        let title = format!("sluice bench: {} ({})", options.target.url, if options.rate.is_some() { "open loop" } else { "closed loop" });
        let plot = svg::percentile_plot(&totals.measured.latency, &title);
        std::fs::write(path, plot).map_err(|source| BenchError::Write { path: path.clone(), source })?;
    }
    if let Some(max) = options.max_error_ratio {
        let ratio = report.error_ratio();
        if ratio > max {
            return Err(BenchError::ErrorRatio { ratio, max });
        }
    }
    Ok(report)
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
        idle_connections: options.idle_connections,
    }
}

/// `count` split over `threads`: thread `t` gets the `t`-th share.
fn share(count: usize, threads: usize, thread: usize) -> usize {
    count / threads + usize::from(thread < count % threads)
}

/// Starts the client threads, starts the clock once all have connected, shows progress,
/// and merges their counts.
fn run_threads(options: &Options, engine: &EngineOptions, plan: &Plan, shared: &Shared) -> Result<ThreadTotals, BenchError> {
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
        shared.start_ns.store(shared.now_ns(), Ordering::Relaxed);
        shared.gate.open();
        if ready > 0 {
            show_progress(shared, &handles);
        }
        let mut totals = ThreadTotals::default();
        for handle in handles {
            match handle.join() {
                Ok(Ok(thread_totals)) => totals.merge(&thread_totals),
                Ok(Err(error)) => return Err(BenchError::Engine(error)),
                Err(_) => return Err(BenchError::Engine(io::Error::other("a client thread panicked"))),
            }
        }
        Ok(totals)
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
        for extra in [&["--requests", "600", "--duration", "5"][..], &["--rate", "2000", "--duration", "0.3"]] {
            let mut argv = vec!["bench", "--url", &url, "--secret", secret, "--kid", "k", "--connections", "3"];
            argv.extend_from_slice(extra);
            let options = parse_bench_args(argv).expect("arguments").validate().expect("valid");
            let signer = load_signer(&options.key).expect("signer");
            let plan = Plan::build(&plan_spec(&options), &signer, crate::platform::time::now_unix_ms(), 1).expect("plan");
            let shared = Shared::new(1);
            let totals = run_threads(&options, &engine_options(&options), &plan, &shared).expect("run");
            let measured = &totals.measured;
            let completed = measured.completed();
            assert_eq!(totals.errors_total(), 0, "{extra:?}: {:?}", totals.errors);
            // Open loop may pipeline behind a closing answer; those are unanswered, not lost.
            assert_eq!(completed + totals.unanswered, 600, "{extra:?}");
            if options.rate.is_none() {
                assert_eq!(totals.unanswered, 0, "closed loop, pipeline 1: every request answered");
            }
            let codes = &measured.status[RequestKind::Unique.index()];
            assert_eq!(codes[202] + codes[200] + codes[204], completed, "{extra:?}: only the answers sent");
            assert!(codes[200] > 0 && codes[204] > 0 && codes[202] > 0, "{extra:?}");
            assert!(totals.closed_by_server + 3 >= completed / 10, "{extra:?}: {} closes", totals.closed_by_server);
            assert_eq!(totals.reconnects, totals.connections_opened - 3, "{extra:?}");
        }
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
