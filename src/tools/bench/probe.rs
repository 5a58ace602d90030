//! `--probe URL`: a health check during the measured run, apart from the load. One thread
//! and one keep-alive connection of its own (plain HTTP, blocking `std::net`) GET the URL
//! every `--probe-every`, so a run shows whether the server stayed answerable under load,
//! and how slowly. Answers are framed by the load's own [`ResponseParser`].
//!
//! Probe *k* is due `k × every` after the end of the warm-up. A probe slower than the
//! period delays the next one, which starts at once; the probes that would have been due
//! meanwhile are not sent (the slow one's latency shows the stall). A probe's latency runs
//! from the moment it is written (after a reconnect, from the connect) to its answer's
//! last byte; no answer within `--timeout` is a timeout and the connection is reopened.

#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::constants::{BENCH_LATENCY_NS_MIN, BENCH_PROBE_READ_BYTES};
use crate::tools::bench::args::Probe;
use crate::tools::bench::response::{Response, ResponseParser};
use crate::tools::bench::shared::Shared;
use crate::tools::bench::stats::latency_histogram;

/// How long the probe thread sleeps at most before it looks at the stop flags again.
const STOP_POLL: Duration = Duration::from_millis(20);

/// What the probe counted.
#[derive(Debug, Clone)]
pub struct ProbeTotals {
    /// Latency of the answered probes, in nanoseconds.
    pub latency: Histogram<u64>,
    pub sent: u64,
    pub answered: u64,
    /// Answered with a status other than 2xx.
    pub failed: u64,
    /// The connection could not be opened or broke, or the answer was not HTTP/1.1.
    pub errors: u64,
    /// No answer within `--timeout`.
    pub timeouts: u64,
}

impl Default for ProbeTotals {
    fn default() -> Self {
        ProbeTotals { latency: latency_histogram(), sent: 0, answered: 0, failed: 0, errors: 0, timeouts: 0 }
    }
}

/// Why a probe got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Timeout,
    Error,
}

fn failure(error: &io::Error) -> Failure {
    match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::Timeout,
        _ => Failure::Error,
    }
}

/// One probe connection: reopened after any failure or a `Connection: close`.
struct Prober<'a> {
    probe: &'a Probe,
    timeout: Duration,
    request: Vec<u8>,
    stream: Option<TcpStream>,
    parser: ResponseParser,
    buffer: Box<[u8; BENCH_PROBE_READ_BYTES]>,
}

impl<'a> Prober<'a> {
    fn new(probe: &'a Probe, timeout: Duration) -> Prober<'a> {
        let request = format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", probe.target.path, probe.target.host).into_bytes();
        Prober { probe, timeout, request, stream: None, parser: ResponseParser::default(), buffer: Box::new([0; BENCH_PROBE_READ_BYTES]) }
    }

    /// Sends one probe and waits for its answer, at most `timeout`.
    fn once(&mut self) -> Result<Response, Failure> {
        let result = self.exchange(std::time::Instant::now() + self.timeout);
        if result.is_err() || result.is_ok_and(|response| response.close) {
            self.stream = None;
            self.parser.reset();
        }
        result
    }

    fn exchange(&mut self, deadline: std::time::Instant) -> Result<Response, Failure> {
        let left = || deadline.checked_duration_since(std::time::Instant::now()).filter(|left| !left.is_zero()).ok_or(Failure::Timeout);
        if self.stream.is_none() {
            let stream = TcpStream::connect_timeout(&self.probe.target.addr, left()?).map_err(|error| failure(&error))?;
            stream.set_nodelay(true).map_err(|error| failure(&error))?;
            self.stream = Some(stream);
        }
        let Some(stream) = self.stream.as_mut() else { return Err(Failure::Error) };
        stream.set_write_timeout(Some(left()?)).map_err(|error| failure(&error))?;
        stream.write_all(&self.request).map_err(|error| failure(&error))?;
        loop {
            stream.set_read_timeout(Some(left()?)).map_err(|error| failure(&error))?;
            let read = stream.read(&mut self.buffer[..]).map_err(|error| failure(&error))?;
            if read == 0 {
                return self.parser.finish_at_eof().ok_or(Failure::Error);
            }
            let mut answers = 0;
            let mut first = None;
            self.parser
                .feed(&self.buffer[..read], &mut |response| {
                    answers += 1;
                    first.get_or_insert(response);
                })
                .map_err(|_| Failure::Error)?;
            match (answers, first) {
                (0, _) => continue,
                // One request, one answer: more means the stream is out of step.
                (1, Some(response)) => return Ok(response),
                _ => return Err(Failure::Error),
            }
        }
    }
}

/// Probes from `from_ns` until `until_ns` (times of `shared`'s clock) or until the run
/// stops, aborts or is interrupted.
pub fn run(probe: &Probe, timeout: Duration, shared: &Shared, from_ns: u64, until_ns: u64) -> ProbeTotals {
    let mut prober = Prober::new(probe, timeout);
    let mut totals = ProbeTotals::default();
    let every_ns = (probe.every.as_nanos() as u64).max(1);
    let mut due_ns = from_ns;
    loop {
        let stopped =
            shared.stop.load(Ordering::Relaxed) || shared.abort.load(Ordering::Relaxed) || shared.interrupted.load(Ordering::Relaxed);
        let now = shared.now_ns();
        if stopped || now >= until_ns {
            return totals;
        }
        if now < due_ns {
            std::thread::sleep(Duration::from_nanos(due_ns - now).min(STOP_POLL));
            continue;
        }
        due_ns = next_due(due_ns, now, every_ns);
        totals.sent += 1;
        let result = prober.once();
        let latency_ns = shared.now_ns().saturating_sub(now);
        count(&mut totals, result, latency_ns);
    }
}

/// The first time after `now` on the schedule `due_ns + k × every_ns`.
fn next_due(due_ns: u64, now: u64, every_ns: u64) -> u64 {
    due_ns + ((now - due_ns) / every_ns + 1) * every_ns
}

fn count(totals: &mut ProbeTotals, result: Result<Response, Failure>, latency_ns: u64) {
    match result {
        Ok(response) => {
            totals.answered += 1;
            if !(200..300).contains(&response.status) {
                totals.failed += 1;
            }
            totals.latency.saturating_record(latency_ns.max(BENCH_LATENCY_NS_MIN));
        }
        Err(Failure::Timeout) => totals.timeouts += 1,
        Err(Failure::Error) => totals.errors += 1,
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::tools::bench::args::parse_url;

    fn probe_of(listener: &TcpListener, every_ms: u64) -> Probe {
        let url = format!("http://{}/healthz", listener.local_addr().expect("addr"));
        Probe { target: parse_url(&url, 1).expect("url"), every: Duration::from_millis(every_ms) }
    }

    /// Answers `GET /healthz` with `answers` in turn, then stops answering (keeps the
    /// connection open); every answer closes after `close_after` answers on a connection.
    fn serve(listener: TcpListener, answers: Vec<&'static [u8]>, close_after: usize) {
        std::thread::spawn(move || {
            let mut answers = answers.into_iter();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut buffer = [0u8; 1024];
                let mut served = 0;
                while let Ok(read) = stream.read(&mut buffer) {
                    if read == 0 {
                        break;
                    }
                    assert!(buffer[..read].starts_with(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:"));
                    match answers.next() {
                        Some(answer) => {
                            let _ = stream.write_all(answer);
                        }
                        None => std::thread::sleep(Duration::from_secs(5)),
                    }
                    served += 1;
                    if served == close_after {
                        break;
                    }
                }
            }
        });
    }

    #[test]
    fn probes_count_answers_failures_and_timeouts() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let probe = probe_of(&listener, 10);
        let ok: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let bad: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        serve(listener, vec![ok, ok, bad, ok], 3);
        let mut prober = Prober::new(&probe, Duration::from_millis(300));
        let mut totals = ProbeTotals::default();
        for _ in 0..5 {
            let result = prober.once();
            count(&mut totals, result, 1000);
        }
        assert_eq!((totals.answered, totals.failed, totals.timeouts, totals.errors), (4, 1, 1, 0), "{totals:?}");
        assert_eq!(totals.latency.len(), 4);
    }

    #[test]
    fn a_refused_connection_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let probe = probe_of(&listener, 10);
        drop(listener);
        let mut prober = Prober::new(&probe, Duration::from_millis(300));
        assert_eq!(prober.once().map(|r| r.status), Err(Failure::Error));
    }

    #[test]
    fn the_schedule_runs_until_the_end_and_skips_missed_slots() {
        assert_eq!(next_due(0, 0, 100), 100);
        assert_eq!(next_due(0, 99, 100), 100);
        assert_eq!(next_due(0, 350, 100), 400, "a slow probe: the slots it covered are skipped");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let probe = probe_of(&listener, 20);
        serve(listener, vec![&b"HTTP/1.1 204 No Content\r\n\r\n"[..]; 100], usize::MAX);
        let shared = Shared::new(1, Arc::new(AtomicBool::new(false)));
        let start = shared.now_ns();
        let totals = run(&probe, Duration::from_secs(1), &shared, start, start + 200_000_000);
        assert!((5..=11).contains(&totals.sent), "about 200 ms / 20 ms probes: {totals:?}");
        assert_eq!((totals.answered, totals.failed), (totals.sent, 0));
        shared.stop.store(true, Ordering::Relaxed);
        assert_eq!(run(&probe, Duration::from_secs(1), &shared, start, u64::MAX).sent, 0, "a stopped run is not probed");
    }
}
