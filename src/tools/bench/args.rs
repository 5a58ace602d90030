//! `sluice bench` arguments as typed on the command line ([`BenchArgs`]), and their
//! validated form ([`Options`]). Every rejection here is a usage error (exit 2).

#![forbid(unsafe_code)]

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::constants::{
    BATCH_EVENTS_MAX, BENCH_CLOSED_LOOP_REQUESTS_PER_SEC_DEFAULT, BENCH_CLOSED_LOOP_SECS_MAX, BENCH_COMPARE_ROUNDS_MAX,
    BENCH_EVENT_BYTES_MAX, BENCH_OPEN_LOOP_OUTSTANDING_PER_CONN_MAX, BENCH_PLAN_REQUESTS_MAX, BENCH_PROBE_EVERY_MS_DEFAULT,
    BENCH_PROBE_EVERY_MS_MAX, EVENT_TYPE_BYTES_MAX,
};
use crate::tools::bench::conn::SLOTS_MAX;
use crate::tools::bench::templates::TemplateFile;

const AFTER_HELP: &str = "\
Latency is measured from each request's intended send time in open loop (--rate), so a
stalled server cannot hide behind a waiting client, and from the moment it is written in
closed loop. Requests are built and signed before the clock starts; a progress line goes
to stderr when it is a terminal. Ctrl-C (SIGINT) or SIGTERM ends the run early and still
prints the report.

Request classes (--optional-ratio F): a fraction F of the requests carry events of
--optional-event-type (default telemetry), which the server routes to an optional topic,
refused first under overload (503 overloaded); the others keep the usual event types.
The report counts, per class: sent, accepted (2xx), refused_429, refused_503,
refused_other, unanswered, the accepted rate and the latency percentiles.

--probe URL GETs URL (plain http) every --probe-every MS on its own connection during
the measured run and reports its latency and how many probes failed or timed out.

--compare-url URL runs the same load against URL (a reference such as nginx `return
204`) and against --url alternately, --rounds times each, every run with its own warm-up,
and prints each round and the ratios sluice / reference of mean throughput, p50 and p99.

--request-templates FILE sends pre-built requests instead of signed sluice events, to
measure another server (Apache Iggy's HTTP produce API, tuning/iggy_bench.sh) with the
same client. FILE is JSON Lines, one request a line:
  {\"method\":\"POST\",\"path\":\"/streams/0/topics/0/messages\",
   \"headers\":[[\"Authorization\",\"Bearer ...\"],[\"Content-Type\",\"application/json\"]],
   \"body\":\"<the exact body>\",\"events\":100}
(other keys are ignored). The requests are cycled in file order; --url gives only
http[s]://HOST[:PORT] and the Host header; Content-Length is the body's. Every 2xx is a
success and counts its template's events. Not with --batch > 1, --event-bytes,
--duplicate-ratio, --bad-signature-ratio, --optional-ratio, --request-ids, --keys-file,
--secret, --kid; with --compare-url both targets get the templates.

--json prints one object with the keys version, url, mode, threads, connections,
pipeline, rate, duration_secs, warmup_secs, measured_secs, batch, event_bytes, users,
duplicate_ratio, bad_signature_ratio, optional_ratio, optional_event_type,
idle_connections, request_templates, pool_exhausted, interrupted, plan, requests,
throughput, latency_us, status, status_by_kind, classes, errors, connection_events,
bytes, schedule, timeline, timeline_dropped, idle, probe, fsync_probe; with
--compare-url: version, the run keys url .. request_templates, reference_url, rounds,
interrupted, reference, sluice, mean, ratio (docs/BENCH.md describes each). --timeline
adds the per-second table to the summary.

Exit status: 0 the run completed, 2 bad usage, 1 other failures (no connection could be
opened, or --max-error-ratio exceeded).

Examples:
  sluice bench --keys-file keys.toml --connections 64 --duration 10
  sluice bench --keys-file keys.toml --rate 50000 --duration 30 --json > run.json
  sluice bench --keys-file keys.toml --url http://127.0.0.1:18080/v1/events   # nginx reference
  sluice bench --keys-file keys.toml --url https://localhost:8443 --ca-file ca.pem --client-cert c.pem --client-key c.key
  sluice bench --keys-file keys.toml --rate 80000 --duration 30 --optional-ratio 0.5 \\
      --probe http://127.0.0.1:9090/healthz --timeline            # overload: who is refused, when
  sluice bench --keys-file keys.toml --compare-url http://127.0.0.1:18080/v1/events --rounds 3 --duration 5
  sluice bench --url http://127.0.0.1:18083 --request-templates requests/batch100.jsonl \\
      --connections 64 --duration 10 --warmup 2 --json     # Apache Iggy, from tuning/iggy_bench.sh";

/// `sluice bench` options, as typed.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct BenchArgs {
    /// Target http://HOST[:PORT][/PATH] or https://... (TLS, as --tls). Without a path: /v1/events, or /v1/events/batch when --batch > 1.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Send the requests of FILE, cycled, instead of signed sluice events (JSON Lines: method, path, headers, body, events; as tuning/iggy_bench.sh writes them). --url then gives only http[s]://HOST[:PORT].
    #[arg(long, value_name = "FILE")]
    pub request_templates: Option<PathBuf>,
    /// Key ring to sign with (default: the development ring ./sluice-data/dev-keys.toml).
    #[arg(long, value_name = "FILE", conflicts_with = "secret")]
    pub keys_file: Option<PathBuf>,
    /// Key id to sign with. With a key ring: default the first key accepted now. Required with --secret.
    #[arg(long, value_name = "KID")]
    pub kid: Option<String>,
    /// Sign with this secret (whsec_<base64>, as in a key ring) instead of a key ring file; needs --kid.
    #[arg(long, value_name = "SECRET", requires = "kid")]
    pub secret: Option<String>,
    /// Keep-alive connections that carry the load.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub connections: usize,
    /// Client threads, one io_uring each; connections are split between them.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,
    /// Measured run length in seconds (fractions allowed).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before the measured run; their answers are not recorded.
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    pub warmup: f64,
    /// Open loop: send this many requests per second in total, on schedule, whatever the answers do. Without it: closed loop.
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Closed loop: requests each connection keeps outstanding (HTTP/1.1 pipelining).
    #[arg(long, value_name = "K", default_value_t = 1, conflicts_with = "rate")]
    pub pipeline: usize,
    /// Closed loop: requests to pre-build; the run stops (and says so) if they run out. Default: 400,000 per thread per second of warm-up + duration.
    #[arg(long, value_name = "N", conflicts_with = "rate")]
    pub requests: Option<usize>,
    /// Events per request: 1 posts single events to /v1/events, more posts NDJSON batches to /v1/events/batch (at most 1000).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub batch: usize,
    /// Pad every event with a "props" field to this many bytes (0: no padding, about 330 bytes).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub event_bytes: usize,
    /// Distinct key.user_id values; each event draws one at random.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub users: u64,
    /// Fraction of requests that re-send the exact bytes of a recent request, as a producer retry does (answered 200 duplicate).
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub duplicate_ratio: f64,
    /// Fraction of requests with a corrupted signature (the server must answer 401).
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub bad_signature_ratio: f64,
    /// Fraction of requests whose events are of the optional class (--optional-event-type); the others are critical (bet, win, deposit). The report counts each class apart.
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub optional_ratio: f64,
    /// The event_type of optional events: route it to a topic with `optional = true` to see overload refuse it first.
    #[arg(long, value_name = "NAME", default_value = "telemetry")]
    pub optional_event_type: String,
    /// Give every request a unique X-Request-Id (the server's request-id memory; a duplicate is then answered from it).
    #[arg(long)]
    pub request_ids: bool,
    /// Extra keep-alive connections that stay idle besides the load (they ping GET /healthz every --idle-ping seconds).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub idle_connections: usize,
    /// Seconds between two pings on one idle connection (keep it under the server's idle timeout, 60 s by default).
    #[arg(long, value_name = "SECS", default_value_t = 20.0)]
    pub idle_ping: f64,
    /// Seconds without an answer (while requests wait) before a connection counts a timeout and is reopened; also the connect timeout and the end-of-run drain limit.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub timeout: f64,
    /// Seed for the user, duplicate and bad-signature draws (event ids are unique per run whatever the seed).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Write a latency-by-percentile plot (SVG) to FILE.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Add the per-second timeline (answers per class and outcome, p99) to the summary; --json always has it.
    #[arg(long)]
    pub timeline: bool,
    /// During the measured run, GET this http:// URL (default path /healthz) every --probe-every ms on a connection of its own, and report its latency and failures.
    #[arg(long, value_name = "URL")]
    pub probe: Option<String>,
    /// Milliseconds between two probes (a probe slower than that delays the next; missed ones are not sent).
    #[arg(long, value_name = "MS", default_value_t = BENCH_PROBE_EVERY_MS_DEFAULT, requires = "probe")]
    pub probe_every: u64,
    /// Also run the same load against this reference URL (e.g. nginx `return 204`), alternately with --url, and report the ratios sluice / reference.
    #[arg(long, value_name = "URL", conflicts_with_all = ["svg", "probe", "fsync_probe", "timeline"])]
    pub compare_url: Option<String>,
    /// With --compare-url: runs of each target, alternating reference, sluice, reference, ...
    #[arg(long, value_name = "N", default_value_t = 2, requires = "compare_url")]
    pub rounds: usize,
    /// Before the load, measure the disk's fdatasync latency in DIR (4 KiB appends, one fdatasync each).
    #[arg(long, value_name = "DIR")]
    pub fsync_probe: Option<PathBuf>,
    /// Seconds the fsync probe runs.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub fsync_probe_secs: f64,
    /// Exit 1 when connection errors plus unanswered requests exceed this fraction of requests sent.
    #[arg(long, value_name = "F")]
    pub max_error_ratio: Option<f64>,
    /// Speak TLS (also implied by an https:// URL); handshakes happen before the clock starts.
    #[arg(long)]
    pub tls: bool,
    /// TLS: the CA bundle (PEM) the server's certificate must chain to.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// TLS: accept any server certificate (handshake signatures are still checked). Loopback benches only.
    #[arg(long, conflicts_with = "ca_file")]
    pub insecure: bool,
    /// TLS: present this client certificate chain (PEM), for mTLS; needs --client-key.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// TLS: the client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// TLS: the name sent as SNI and checked in the server's certificate (default: the URL's host).
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
}

/// Where the signing key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    Ring { path: PathBuf, kid: Option<String> },
    Secret { secret: String, kid: String },
}

/// What the pool's requests are.
#[derive(Debug, Clone)]
pub enum RequestSource {
    /// sluice events, built and signed as the load options say.
    Signed(KeySource),
    /// `--request-templates`: the file's requests, cycled, sent as they are.
    Templates(Arc<TemplateFile>),
}

/// The target, resolved.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `Host` header: the URL's authority as written.
    pub host: String,
    pub path: String,
    /// `http[s]://<authority><path>`, for reports.
    pub url: String,
    /// The URL said https://.
    pub https: bool,
    /// The host part of the authority (no port, no brackets): the default TLS server name.
    pub hostname: String,
}

/// The client's TLS setup, built (files read) during validation.
#[derive(Debug, Clone)]
pub struct TlsClient {
    pub config: std::sync::Arc<rustls::ClientConfig>,
    pub server_name: rustls::pki_types::ServerName<'static>,
}

/// `--probe`: where and how often.
#[derive(Debug, Clone)]
pub struct Probe {
    pub target: Target,
    pub every: Duration,
}

/// `--compare-url`: the reference run's options (the same as the run's but for the
/// target) and the rounds.
#[derive(Debug, Clone)]
pub struct Compare {
    pub reference: Box<Options>,
    pub rounds: usize,
}

/// Validated options.
#[derive(Debug, Clone)]
pub struct Options {
    pub target: Target,
    pub requests_from: RequestSource,
    pub connections: usize,
    pub threads: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub rate: Option<f64>,
    pub pipeline: usize,
    /// Requests to pre-build (open loop: rate × (warm-up + duration)).
    pub requests: usize,
    pub batch: usize,
    pub event_bytes: usize,
    pub users: u64,
    pub duplicate_ratio: f64,
    pub bad_signature_ratio: f64,
    pub optional_ratio: f64,
    pub optional_event_type: String,
    pub request_ids: bool,
    pub idle_connections: usize,
    pub idle_ping: Duration,
    pub timeout: Duration,
    pub seed: u64,
    pub json: bool,
    pub svg: Option<PathBuf>,
    /// Print the per-second timeline in the summary.
    pub timeline: bool,
    pub probe: Option<Probe>,
    pub compare: Option<Compare>,
    pub fsync_probe: Option<(PathBuf, Duration)>,
    pub max_error_ratio: Option<f64>,
    /// `None`: plain HTTP.
    pub tls: Option<TlsClient>,
}

fn seconds(name: &str, value: f64, allow_zero: bool) -> Result<Duration, String> {
    let ok = value.is_finite() && (value > 0.0 || (allow_zero && value == 0.0)) && value <= 366.0 * 86_400.0;
    if !ok {
        let least = if allow_zero { "0 or more" } else { "more than 0" };
        return Err(format!("--{name} takes seconds, {least} and at most a year, not {value}"));
    }
    Ok(Duration::from_secs_f64(value))
}

fn ratio(name: &str, value: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&value) { Ok(value) } else { Err(format!("--{name} takes a fraction from 0 to 1, not {value}")) }
}

fn at_least_one(name: &str, value: usize) -> Result<usize, String> {
    if value >= 1 { Ok(value) } else { Err(format!("--{name} must be at least 1")) }
}

/// An event type the server accepts (SPEC §1.2: `[A-Za-z0-9_.:-]{1,64}`).
fn event_type(name: &str, value: &str) -> Result<String, String> {
    let allowed = |byte: &u8| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b':' | b'-');
    if (1..=EVENT_TYPE_BYTES_MAX).contains(&value.len()) && value.as_bytes().iter().all(allowed) {
        Ok(value.to_owned())
    } else {
        Err(format!("--{name} takes 1 to {EVENT_TYPE_BYTES_MAX} characters of [A-Za-z0-9_.:-], not {value:?}"))
    }
}

impl BenchArgs {
    /// Checks every option; the message names the option and what it takes.
    pub fn validate(&self) -> Result<Options, String> {
        let source = self.request_source()?;
        self.validate_with(source)
    }

    /// The signing key, or the templates (read and checked here).
    fn request_source(&self) -> Result<RequestSource, String> {
        let Some(path) = &self.request_templates else { return self.key_source().map(RequestSource::Signed) };
        let shaping = [
            ("--batch above 1", self.batch > 1),
            ("--event-bytes", self.event_bytes > 0),
            ("--duplicate-ratio", self.duplicate_ratio != 0.0),
            ("--bad-signature-ratio", self.bad_signature_ratio != 0.0),
            ("--optional-ratio", self.optional_ratio != 0.0),
            ("--request-ids", self.request_ids),
            ("--keys-file", self.keys_file.is_some()),
            ("--secret", self.secret.is_some()),
            ("--kid", self.kid.is_some()),
        ];
        let given: Vec<&str> = shaping.iter().filter(|(_, given)| *given).map(|(name, _)| *name).collect();
        if !given.is_empty() {
            return Err(format!(
                "--request-templates sends the file's requests as they are (their own events, headers and signatures); it cannot be used with {}",
                given.join(", ")
            ));
        }
        let file = TemplateFile::load(path).map_err(|error| error.to_string())?;
        Ok(RequestSource::Templates(Arc::new(file)))
    }

    /// Checks the other options, for requests from `source`.
    fn validate_with(&self, source: RequestSource) -> Result<Options, String> {
        let duration = seconds("duration", self.duration, false)?;
        let warmup = seconds("warmup", self.warmup, true)?;
        let duplicate_ratio = ratio("duplicate-ratio", self.duplicate_ratio)?;
        let bad_signature_ratio = ratio("bad-signature-ratio", self.bad_signature_ratio)?;
        if duplicate_ratio + bad_signature_ratio > 1.0 {
            return Err("--duplicate-ratio plus --bad-signature-ratio must be at most 1".into());
        }
        let optional_ratio = ratio("optional-ratio", self.optional_ratio)?;
        let optional_event_type = event_type("optional-event-type", &self.optional_event_type)?;
        let (connections, threads) = self.connections_and_threads()?;
        let pipeline = at_least_one("pipeline", self.pipeline)?;
        if pipeline > BENCH_OPEN_LOOP_OUTSTANDING_PER_CONN_MAX {
            return Err(format!("--pipeline takes at most {BENCH_OPEN_LOOP_OUTSTANDING_PER_CONN_MAX}"));
        }
        let batch = at_least_one("batch", self.batch)?;
        if batch > BATCH_EVENTS_MAX {
            return Err(format!("--batch takes at most {BATCH_EVENTS_MAX} events (the server's batch limit)"));
        }
        if self.event_bytes > BENCH_EVENT_BYTES_MAX {
            return Err(format!("--event-bytes takes at most {BENCH_EVENT_BYTES_MAX}"));
        }
        if self.users == 0 {
            return Err("--users must be at least 1".into());
        }
        let total_secs = (warmup + duration).as_secs_f64();
        let signed = matches!(source, RequestSource::Signed(_));
        let requests = self.pool_size(total_secs, connections * pipeline, threads, signed)?;
        let max_error_ratio = self.max_error_ratio.map(|value| ratio("max-error-ratio", value)).transpose()?;
        let fsync_probe = match &self.fsync_probe {
            Some(dir) => Some((dir.clone(), seconds("fsync-probe-secs", self.fsync_probe_secs, false)?)),
            None => None,
        };
        let (target, tls) = self.target(&source, batch)?;
        Ok(Options {
            target,
            compare: self.compare(&source)?,
            requests_from: source,
            connections,
            threads,
            duration,
            warmup,
            rate: self.rate,
            pipeline,
            requests,
            batch,
            event_bytes: self.event_bytes,
            users: self.users,
            duplicate_ratio,
            bad_signature_ratio,
            optional_ratio,
            optional_event_type,
            request_ids: self.request_ids,
            idle_connections: self.idle_connections,
            idle_ping: seconds("idle-ping", self.idle_ping, false)?,
            timeout: seconds("timeout", self.timeout, false)?,
            seed: self.seed,
            json: self.json,
            svg: self.svg.clone(),
            timeline: self.timeline,
            probe: self.probe()?,
            fsync_probe,
            max_error_ratio,
            tls,
        })
    }

    /// `--url` (only host and port with templates), and the TLS set-up it needs.
    fn target(&self, source: &RequestSource, batch: usize) -> Result<(Target, Option<TlsClient>), String> {
        let mut target = match source {
            RequestSource::Signed(_) => parse_url(&self.url, batch)?,
            RequestSource::Templates(_) => parse_host_url(&self.url)?,
        };
        let tls = self.tls_client(&target)?;
        if tls.is_some() && !target.https {
            // `--tls` with an http:// URL: the reports say what was spoken.
            target.url = target.url.replacen("http://", "https://", 1);
            target.https = true;
        }
        Ok((target, tls))
    }

    fn connections_and_threads(&self) -> Result<(usize, usize), String> {
        let connections = at_least_one("connections", self.connections)?;
        let threads = at_least_one("threads", self.threads)?;
        if threads > connections {
            return Err(format!("--threads {threads} is more than --connections {connections}: every thread needs a connection"));
        }
        if (connections + self.idle_connections).div_ceil(threads) > SLOTS_MAX {
            return Err(format!("at most {SLOTS_MAX} connections per thread"));
        }
        Ok((connections, threads))
    }

    fn probe(&self) -> Result<Option<Probe>, String> {
        let Some(url) = &self.probe else { return Ok(None) };
        if !(1..=BENCH_PROBE_EVERY_MS_MAX).contains(&self.probe_every) {
            return Err(format!("--probe-every takes 1 to {BENCH_PROBE_EVERY_MS_MAX} milliseconds, not {}", self.probe_every));
        }
        let target = parse_target(url, "/healthz").map_err(|error| format!("--probe: {error}"))?;
        if target.https {
            return Err(format!("--probe: {url}: the probe speaks plain http:// only"));
        }
        Ok(Some(Probe { target, every: Duration::from_millis(self.probe_every) }))
    }

    /// The reference run: these very options with `--compare-url` as the target, validated
    /// the same way (its TLS server name, if any, follows its own host), with the same
    /// requests.
    fn compare(&self, source: &RequestSource) -> Result<Option<Compare>, String> {
        let Some(url) = &self.compare_url else { return Ok(None) };
        if !(1..=BENCH_COMPARE_ROUNDS_MAX).contains(&self.rounds) {
            return Err(format!("--rounds takes 1 to {BENCH_COMPARE_ROUNDS_MAX}, not {}", self.rounds));
        }
        let reference = BenchArgs { url: url.clone(), compare_url: None, ..self.clone() };
        let reference = reference.validate_with(source.clone()).map_err(|error| format!("--compare-url: {error}"))?;
        Ok(Some(Compare { reference: Box::new(reference), rounds: self.rounds }))
    }

    /// Reads the TLS files when the run speaks TLS; TLS options without TLS are a mistake.
    fn tls_client(&self, target: &Target) -> Result<Option<TlsClient>, String> {
        let tls_options = self.ca_file.is_some() || self.insecure || self.client_cert.is_some() || self.server_name.is_some();
        if !(self.tls || target.https) {
            return match tls_options {
                true => Err("--ca-file, --insecure, --client-cert and --server-name need --tls or an https:// URL".into()),
                false => Ok(None),
            };
        }
        let setup = crate::net::tls::client::ClientTls {
            ca_file: self.ca_file.clone(),
            insecure: self.insecure,
            client_cert: self.client_cert.clone().zip(self.client_key.clone()),
            server_name: self.server_name.clone().unwrap_or_else(|| target.hostname.clone()),
        };
        let server_name = setup.server_name().map_err(|error| format!("--server-name: {error}"))?;
        let config = setup.config().map_err(|error| error.to_string())?;
        Ok(Some(TlsClient { config, server_name }))
    }

    /// Requests to pre-build. Only `signed` closed-loop runs are bounded in time: templates
    /// carry whatever credentials they carry, and the run does not refresh them.
    fn pool_size(&self, total_secs: f64, outstanding: usize, threads: usize, signed: bool) -> Result<usize, String> {
        let requests = match self.rate {
            Some(rate) if !rate.is_finite() || rate <= 0.0 => return Err(format!("--rate takes requests per second above 0, not {rate}")),
            Some(rate) => (rate * total_secs).ceil(),
            None => {
                if signed && total_secs > BENCH_CLOSED_LOOP_SECS_MAX as f64 {
                    return Err(format!(
                        "closed-loop runs (warm-up + duration) are limited to {BENCH_CLOSED_LOOP_SECS_MAX} s: every request is signed before the run and the server accepts timestamps up to 300 s old; use --rate for longer runs"
                    ));
                }
                match self.requests {
                    Some(requests) => requests as f64,
                    None => {
                        (BENCH_CLOSED_LOOP_REQUESTS_PER_SEC_DEFAULT as f64 * threads as f64 * total_secs.ceil()).max(outstanding as f64)
                    }
                }
            }
        };
        if requests < 1.0 {
            return Err("the run has no request to send: raise --rate, --duration or --requests".into());
        }
        if requests > BENCH_PLAN_REQUESTS_MAX as f64 {
            return Err(format!("{requests} requests to pre-build; at most {BENCH_PLAN_REQUESTS_MAX}: shorten the run or lower --rate"));
        }
        Ok(requests as usize)
    }

    fn key_source(&self) -> Result<KeySource, String> {
        match (&self.secret, &self.keys_file, &self.kid) {
            (Some(secret), _, Some(kid)) => Ok(KeySource::Secret { secret: secret.clone(), kid: kid.clone() }),
            (Some(_), _, None) => Err("--secret needs --kid".into()),
            (None, Some(path), kid) => Ok(KeySource::Ring { path: path.clone(), kid: kid.clone() }),
            (None, None, kid) => {
                let path = crate::config::Config::defaults().keys_path();
                if !path.exists() {
                    return Err(format!(
                        "no signing key: pass --keys-file FILE, or --secret whsec_... with --kid KID (the development ring {} does not exist)",
                        path.display()
                    ));
                }
                Ok(KeySource::Ring { path, kid: kid.clone() })
            }
        }
    }
}

/// Parses `http[s]://HOST[:PORT][/PATH]` and resolves HOST (the first address wins).
/// Without a path (or with `/`), the path follows `batch`.
pub fn parse_url(url: &str, batch: usize) -> Result<Target, String> {
    parse_target(url, if batch > 1 { "/v1/events/batch" } else { "/v1/events" })
}

/// With `--request-templates`: `http[s]://HOST[:PORT]` (a trailing `/` is allowed), as
/// the path comes from each template. The target's path is empty.
fn parse_host_url(url: &str) -> Result<Target, String> {
    let target = parse_target(url, "")?;
    if !target.path.is_empty() {
        return Err(format!("{url}: with --request-templates the URL gives only http[s]://HOST[:PORT]; each template has its path"));
    }
    Ok(target)
}

/// Parses `http[s]://HOST[:PORT][/PATH]` and resolves HOST (the first address wins).
/// Without a path (or with `/`), the path is `default_path`.
fn parse_target(url: &str, default_path: &str) -> Result<Target, String> {
    let lower = url.to_ascii_lowercase();
    let (https, rest) = if lower.starts_with("https://") {
        (true, &url["https://".len()..])
    } else if lower.starts_with("http://") {
        (false, &url["http://".len()..])
    } else {
        return Err(format!("{url}: the URL must start with http:// or https://"));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("{url}: expected http[s]://HOST[:PORT][/PATH]"));
    }
    if path.bytes().any(|b| b.is_ascii_control() || b == b' ' || b == b'#') {
        return Err(format!("{url}: the path must not contain spaces, control characters or a fragment"));
    }
    let default_port = if https { 443 } else { 80 };
    let (host, port) = split_host_port(authority, default_port).ok_or_else(|| format!("{url}: bad host or port in {authority:?}"))?;
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|error| format!("{url}: cannot resolve {host}: {error}"))?
        .next()
        .ok_or_else(|| format!("{url}: {host} has no address"))?;
    let path = match path {
        "" | "/" => default_path.to_owned(),
        given if given.starts_with('?') => format!("/{given}"),
        given => given.to_owned(),
    };
    let scheme = if https { "https" } else { "http" };
    Ok(Target { addr, host: authority.to_owned(), url: format!("{scheme}://{authority}{path}"), path, https, hostname: host.to_owned() })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; the port defaults to `default_port`.
fn split_host_port(authority: &str, default_port: u16) -> Option<(&str, u16)> {
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        let port = match after {
            "" => default_port,
            _ => after.strip_prefix(':')?.parse().ok()?,
        };
        return Some((host, port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.contains(':') => Some((host, port.parse().ok()?)),
        Some(_) => None,
        None => Some((authority, default_port)),
    }
}

/// Parses `sluice bench` arguments outside the real CLI (`argv[0]` is the command name).
#[cfg(test)]
pub(crate) fn parse_bench_args<'a>(argv: impl IntoIterator<Item = &'a str>) -> Result<BenchArgs, clap::Error> {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }
    <Cli as clap::Parser>::try_parse_from(argv).map(|cli| cli.bench)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, String> {
        let mut argv = vec!["bench", "--secret", "whsec_c2x1aWNlLWJlbmNoLXBsYW4tdGVzdC1zZWNyZXQtMzI=", "--kid", "k"];
        argv.extend_from_slice(args);
        parse_bench_args(argv).map_err(|error| error.to_string())?.validate()
    }

    #[test]
    fn urls() {
        let target = parse_url("http://127.0.0.1:18080/v1/events", 1).expect("valid");
        assert_eq!(target.addr, "127.0.0.1:18080".parse().expect("addr"));
        assert_eq!((target.host.as_str(), target.path.as_str()), ("127.0.0.1:18080", "/v1/events"));
        assert_eq!(parse_url("http://127.0.0.1:9", 1).expect("valid").path, "/v1/events");
        assert_eq!(parse_url("HTTP://127.0.0.1:9/", 10).expect("valid").path, "/v1/events/batch");
        assert_eq!(parse_url("http://[::1]:8080/x?y=1", 1).expect("valid").addr, "[::1]:8080".parse().expect("addr"));
        assert_eq!(parse_url("http://127.0.0.1", 1).expect("valid").addr.port(), 80);
        assert_eq!(parse_url("http://localhost:8080", 1).expect("valid").addr.port(), 8080);
        let secure = parse_url("https://localhost/v1/events", 1).expect("valid");
        assert!(secure.https && secure.addr.port() == 443 && secure.hostname == "localhost");
        assert_eq!(secure.url, "https://localhost/v1/events");
        for bad in ["ftp://x", "127.0.0.1:80", "http://", "http://a@b", "http://h:99999", "http://h:x", "http://h/a b"] {
            assert!(parse_url(bad, 1).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn pool_sizes() {
        assert_eq!(parse(&["--rate", "1000", "--duration", "2", "--warmup", "0.5"]).expect("valid").requests, 2500);
        assert_eq!(parse(&["--duration", "1"]).expect("valid").requests, 400_000);
        assert_eq!(parse(&["--duration", "1.5", "--threads", "2"]).expect("valid").requests, 1_600_000);
        assert_eq!(parse(&["--duration", "1", "--requests", "77"]).expect("valid").requests, 77);
        assert!(parse(&["--duration", "300"]).expect_err("too long").contains("--rate"));
        assert!(parse(&["--duration", "300", "--rate", "10"]).is_ok());
    }

    #[test]
    fn classes_probe_and_comparison_are_validated() {
        let plain = parse(&["--duration", "1"]).expect("valid");
        assert_eq!((plain.optional_ratio, plain.optional_event_type.as_str()), (0.0, "telemetry"));
        assert!(plain.probe.is_none() && plain.compare.is_none() && !plain.timeline);
        let long = "a".repeat(EVENT_TYPE_BYTES_MAX);
        let classes = parse(&["--optional-ratio", "0.25", "--optional-event-type", &long]).expect("valid");
        assert_eq!((classes.optional_ratio, classes.optional_event_type.len()), (0.25, EVENT_TYPE_BYTES_MAX));
        let too_long = "a".repeat(EVENT_TYPE_BYTES_MAX + 1);
        assert!(parse(&["--optional-event-type", &too_long]).is_err());
        assert!(parse(&["--optional-event-type", "Tele_metry.v2:x-y"]).is_ok());

        let probe = parse(&["--probe", "http://127.0.0.1:9090", "--timeline"]).expect("valid").probe.expect("probe");
        assert_eq!((probe.target.path.as_str(), probe.every), ("/healthz", Duration::from_millis(100)), "default path and period");
        let probe = parse(&["--probe", "http://127.0.0.1:8080/ready", "--probe-every", "250"]).expect("valid").probe.expect("probe");
        assert_eq!((probe.target.path.as_str(), probe.every), ("/ready", Duration::from_millis(250)));

        let options =
            parse(&["--url", "http://127.0.0.1:8080", "--compare-url", "http://127.0.0.1:18080", "--batch", "10", "--rate", "500"])
                .expect("valid");
        let compare = options.compare.expect("compare");
        assert_eq!(compare.rounds, 2, "two rounds by default");
        let reference = &compare.reference;
        assert_eq!(reference.target.url, "http://127.0.0.1:18080/v1/events/batch", "the reference's own URL, path from --batch");
        assert_eq!((reference.batch, reference.rate, reference.requests), (10, Some(500.0), options.requests), "the same load");
        assert!(reference.compare.is_none());
        assert_eq!(parse(&["--compare-url", "http://127.0.0.1:18080", "--rounds", "5"]).expect("valid").compare.expect("c").rounds, 5);
    }

    #[test]
    fn request_templates_replace_the_signed_events() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("t.jsonl");
        std::fs::write(&file, "{\"method\":\"POST\",\"path\":\"/m\",\"headers\":[],\"body\":\"{}\",\"events\":100}\n").expect("write");
        let file = file.to_str().expect("utf-8 path");
        let templates = |args: &[&str]| -> Result<Options, String> {
            let mut argv = vec!["bench", "--request-templates", file];
            argv.extend_from_slice(args);
            parse_bench_args(argv).map_err(|error| error.to_string())?.validate()
        };
        let options = templates(&["--url", "http://127.0.0.1:18083", "--duration", "1"]).expect("valid");
        assert!(matches!(&options.requests_from, RequestSource::Templates(file) if file.templates[0].events == 100));
        assert_eq!((options.target.url.as_str(), options.target.path.as_str()), ("http://127.0.0.1:18083", ""));
        let defaults = templates(&["--url", "http://127.0.0.1:18083/", "--batch", "1", "--duplicate-ratio", "0"]).expect("defaults");
        assert_eq!(defaults.target.path, "", "options at their defaults are no conflict");
        assert!(templates(&["--duration", "300", "--requests", "10"]).is_ok(), "nothing is signed at build time: no 240 s bound");
        let compare = templates(&["--compare-url", "http://127.0.0.1:18080", "--rate", "100"]).expect("valid").compare.expect("compare");
        assert!(matches!(&compare.reference.requests_from, RequestSource::Templates(_)), "the reference gets the templates too");
        assert_eq!(compare.reference.target.url, "http://127.0.0.1:18080");
        for (args, needle) in [
            (&["--batch", "100"][..], "cannot be used with --batch above 1"),
            (&["--event-bytes", "500"], "--event-bytes"),
            (&["--duplicate-ratio", "0.1", "--bad-signature-ratio", "0.1"], "--duplicate-ratio, --bad-signature-ratio"),
            (&["--optional-ratio", "0.5"], "--optional-ratio"),
            (&["--request-ids"], "--request-ids"),
            (&["--keys-file", "k.toml"], "--keys-file"),
            (&["--secret", "whsec_x", "--kid", "k"], "--secret, --kid"),
            (&["--url", "http://127.0.0.1:18083/v1/events"], "only http[s]://HOST[:PORT]"),
            (&["--compare-url", "http://127.0.0.1:18080/x"], "--compare-url"),
        ] {
            let error = templates(args).expect_err("rejected");
            assert!(error.contains(needle), "{args:?}: {error}");
        }
        let error = parse_bench_args(["bench", "--request-templates", "/nonexistent/t.jsonl"]).expect("arguments").validate();
        assert!(error.expect_err("no such file").contains("cannot read /nonexistent/t.jsonl"));
    }

    #[test]
    fn bad_usage_is_named() {
        for (args, needle) in [
            (&["--duplicate-ratio", "1.5"][..], "--duplicate-ratio"),
            (&["--duplicate-ratio", "0.6", "--bad-signature-ratio", "0.6"], "at most 1"),
            (&["--connections", "0"], "--connections"),
            (&["--threads", "3", "--connections", "2"], "--threads"),
            (&["--batch", "1001"], "--batch"),
            (&["--duration", "0"], "--duration"),
            (&["--rate", "0"], "--rate"),
            (&["--rate", "10", "--pipeline", "2"], "cannot be used with"),
            (&["--users", "0"], "--users"),
            (&["--max-error-ratio", "2"], "--max-error-ratio"),
            (&["--ca-file", "ca.pem"], "--tls"),
            (&["--tls"], "--ca-file"),
            (&["--tls", "--ca-file", "/nonexistent/ca.pem"], "/nonexistent/ca.pem"),
            (&["--tls", "--insecure", "--server-name", "bad name!"], "--server-name"),
            (&["--optional-ratio", "1.5"], "--optional-ratio"),
            (&["--optional-ratio=-0.1"], "--optional-ratio"),
            (&["--optional-event-type", "has space"], "--optional-event-type"),
            (&["--optional-event-type", ""], "--optional-event-type"),
            (&["--optional-event-type", "t/x"], "--optional-event-type"),
            (&["--probe", "https://127.0.0.1:9090/healthz"], "plain http"),
            (&["--probe", "127.0.0.1:9090"], "--probe"),
            (&["--probe", "http://127.0.0.1:9090", "--probe-every", "0"], "--probe-every"),
            (&["--probe", "http://127.0.0.1:9090", "--probe-every", "60001"], "--probe-every"),
            (&["--probe-every", "50"], "--probe"),
            (&["--rounds", "3"], "--compare-url"),
            (&["--compare-url", "http://127.0.0.1:18080", "--rounds", "0"], "--rounds"),
            (&["--compare-url", "http://127.0.0.1:18080", "--rounds", "101"], "--rounds"),
            (&["--compare-url", "ftp://127.0.0.1:18080"], "--compare-url"),
            (&["--compare-url", "http://127.0.0.1:18080", "--svg", "x.svg"], "cannot be used with"),
            (&["--compare-url", "http://127.0.0.1:18080", "--probe", "http://127.0.0.1:9090"], "cannot be used with"),
            (&["--compare-url", "http://127.0.0.1:18080", "--timeline"], "cannot be used with"),
        ] {
            let error = parse(args).expect_err("rejected");
            assert!(error.contains(needle), "{args:?}: {error}");
        }
        let error = parse_bench_args(["bench", "--secret", "whsec_x"]).expect_err("needs --kid").to_string();
        assert!(error.contains("--kid"), "{error}");
    }
}
