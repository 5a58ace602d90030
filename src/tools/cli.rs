//! The `sluice` command line as clap sees it: one definition for `--help`, the man
//! pages and the shell completions, so none of them can drift from the others.
//! `main.rs` parses it and runs the command.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::platform::logging::LogFormat;

const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("SLUICE_COMMIT"), ")");

const CONFIG_HELP: &str =
    "Configuration file (TOML). Without it: $SLUICE_CONFIG, else /etc/sluice/sluice.toml when it exists, else the embedded defaults.";

#[derive(Parser)]
#[command(name = "sluice", version = VERSION, about = "High-throughput, security-first ingest appliance for signed event feeds")]
// `--help` everywhere instead of `help` subcommands, which would also need man pages.
#[command(disable_help_subcommand = true)]
pub struct Cli {
    /// Log level: error, warn (or warning), info, debug (or verbose), trace, off; or
    /// directives such as "info,sluice::shard=debug".
    #[arg(long, global = true, value_name = "LEVEL", env = "SLUICE_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log line format; auto is JSON when stderr is not a terminal (the journal, a pipe).
    #[arg(long, global = true, value_name = "FORMAT", env = "SLUICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// Which partition logs a reading command (`tail`, `check-log`) reads.
#[derive(Args, Debug, Clone)]
pub struct LogsArgs {
    /// Configuration whose [storage] data_dir to read (unless --data-dir is given).
    #[arg(long, value_name = "FILE", env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory to read (default: the configuration's, else ./sluice-data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Only this topic (default: all).
    #[arg(long, value_name = "T")]
    pub topic: Option<String>,
    /// Only this partition (default: all).
    #[arg(long, value_name = "N")]
    pub partition: Option<u32>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the appliance (embedded defaults without a configuration file).
    Serve {
        #[arg(long, value_name = "FILE", env = "SLUICE_CONFIG", help = CONFIG_HELP)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration as `serve` would (the files it names, the data dir, the
    /// listen addresses) and print the effective values.
    CheckConfig {
        #[arg(long, value_name = "FILE", env = "SLUICE_CONFIG", help = CONFIG_HELP)]
        config: Option<PathBuf>,
    },
    /// Print stored events, one JSON object per line.
    Tail {
        #[command(flatten)]
        logs: LogsArgs,
        /// earliest, latest, or an offset.
        #[arg(long, value_name = "WHERE", default_value = "earliest")]
        from: String,
        /// Keep printing new events as they are stored.
        #[arg(long)]
        follow: bool,
    },
    /// Verify every stored record's CRC and the offset sequence; list damaged ranges.
    /// Read-only, safe while `serve` runs. Exit 0 when whole, 1 when damage is found.
    CheckLog {
        #[command(flatten)]
        logs: LogsArgs,
    },
    /// Print the read log (every consumer request: time, partner, what, topic,
    /// partition, offsets, events, bytes) as one JSON object per line, oldest first.
    ReadLog {
        #[arg(long, value_name = "FILE", env = "SLUICE_CONFIG", help = CONFIG_HELP)]
        config: Option<PathBuf>,
        /// Data directory to read (default: the configuration's).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Only this partner's requests.
        #[arg(long)]
        partner: Option<String>,
    },
    /// Read events over the network: stream a subscription (printing NDJSON, committing
    /// after printing) or read one partition.
    Consume {
        /// The listener to read from.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Bearer token (`sluice keys token`) or JWT.
        #[arg(long, value_name = "TOKEN", env = "SLUICE_TOKEN", hide_env_values = true)]
        token: String,
        /// Stream this subscription.
        #[arg(long, value_name = "S", conflicts_with_all = ["topic", "partition"])]
        subscription: Option<String>,
        /// With --subscription: create it for these topics first (comma-separated).
        #[arg(long, value_name = "T,...", value_delimiter = ',', requires = "subscription")]
        topics: Option<Vec<String>>,
        /// With --topics: where a new subscription starts: earliest or latest.
        #[arg(long, value_name = "WHERE", default_value = "latest")]
        read_from: String,
        /// With --subscription: events per stream line.
        #[arg(long, value_name = "N", default_value_t = 100)]
        batch_limit: u32,
        /// Read this topic's partition (with --partition).
        #[arg(long, value_name = "T", requires = "partition")]
        topic: Option<String>,
        #[arg(long, value_name = "N", requires = "topic")]
        partition: Option<u32>,
        /// With --topic: earliest, latest or an offset.
        #[arg(long, value_name = "WHERE", default_value = "earliest")]
        from: String,
        /// With --topic: keep reading (long-poll) at the end.
        #[arg(long)]
        follow: bool,
        /// Stop after at least this many events (0: never).
        #[arg(long, value_name = "N", default_value_t = 0)]
        max_events: u64,
    },
    /// Forward stored events to another system (its own process; reads the logs read-only).
    #[command(disable_help_subcommand = true)]
    Bridge {
        #[command(subcommand)]
        target: BridgeTarget,
    },
    /// Manage the key ring file.
    #[command(disable_help_subcommand = true)]
    Keys {
        /// Key ring file (default: the one the configuration names, else the development ring).
        #[arg(long, value_name = "FILE", global = true)]
        keys_file: Option<PathBuf>,
        #[arg(long, value_name = "FILE", global = true, env = "SLUICE_CONFIG", help = CONFIG_HELP)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Inspect requests kept in the clock-skew quarantine (replay them with `sluice replay`).
    #[command(disable_help_subcommand = true)]
    Quarantine {
        #[arg(long, value_name = "FILE", global = true, env = "SLUICE_CONFIG", help = CONFIG_HELP)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: QuarantineAction,
    },
    /// The schema registry of the running server (through its admin API): register,
    /// list, show, check a candidate against the subject's compatibility mode, delete,
    /// and the mode and major-version flags.
    #[command(disable_help_subcommand = true)]
    Schema {
        #[arg(long, value_name = "FILE", global = true, env = "SLUICE_CONFIG", help = CONFIG_HELP)]
        config: Option<PathBuf>,
        /// Admin address (default: [admin] listen of the configuration).
        #[arg(long, value_name = "ADDR", global = true)]
        admin: Option<std::net::SocketAddr>,
        #[command(subcommand)]
        action: SchemaAction,
    },
    /// Replay only from a signed runbook: plan (requester signs), approve (another
    /// approver signs), run (verified, sent through the full ingest path into a new stream
    /// version, resumable). Exit 2 when a runbook is unsigned, altered, expired or
    /// self-approved, naming why; 1 on other failures.
    #[command(disable_help_subcommand = true)]
    Replay {
        #[arg(long, value_name = "FILE", global = true, env = "SLUICE_CONFIG", help = CONFIG_HELP)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: ReplayAction,
    },
    /// The dead-letter queue: every authenticated request refused after authentication,
    /// with its reason (read from the data dir; safe while `serve` runs).
    #[command(disable_help_subcommand = true)]
    Dlq {
        #[arg(long, value_name = "FILE", global = true, env = "SLUICE_CONFIG", help = CONFIG_HELP)]
        config: Option<PathBuf>,
        /// Data directory to read (default: the configuration's).
        #[arg(long, value_name = "DIR", global = true)]
        data_dir: Option<PathBuf>,
        #[command(subcommand)]
        action: DlqAction,
    },
    /// The included load harness: signed requests, closed or open loop, HdrHistogram latency.
    Bench(Box<crate::tools::bench::BenchArgs>),
    /// Print the man page (roff) generated from this command line, or write one page per
    /// subcommand into a directory.
    Man {
        /// Write sluice.1 and sluice-<command>.1 here instead of printing sluice.1.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Print a shell completion script generated from this command line.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Check this box (kernel, io_uring, limits, sysctls, CPU, memory) against what
    /// sluice needs; only --check: the scripts in tuning/ make the changes.
    Tune(crate::tools::tune::TuneArgs),
}

#[derive(Subcommand)]
pub enum BridgeTarget {
    /// Forward topics to a Kafka cluster ([bridge.kafka]): exactly once with a
    /// transactional producer and its progress in Kafka, or at least once. Exit 0 after
    /// SIGTERM or --once, 2 bad configuration, 3 fenced by a newer bridge, 1 otherwise
    /// (offsets lost before they were sent, a rewritten log, storage errors).
    Kafka {
        #[arg(long, value_name = "FILE", env = "SLUICE_CONFIG", help = CONFIG_HELP)]
        config: Option<PathBuf>,
        /// Forward up to the end of every log as found at start, then exit (backfills).
        #[arg(long)]
        once: bool,
        /// Count offsets the log no longer holds (retention overtook the bridge, damage)
        /// and go on, instead of stopping with their range.
        #[arg(long)]
        skip_lost: bool,
    },
}

#[derive(Subcommand)]
pub enum KeysAction {
    /// Create a key (and the file if missing) and print its kid.
    Gen {
        #[arg(long, default_value = "default")]
        partner: String,
        /// Days until the key expires (default: never).
        #[arg(long)]
        valid_days: Option<u32>,
    },
    /// List keys with their validity and status (never the secrets).
    List,
    /// Create a new key for a partner; its current keys enter their grace period.
    Rotate {
        #[arg(long, default_value = "default")]
        partner: String,
        /// Days the current keys stay accepted (default: the ring's [policy]
        /// grace_period_days, else 7).
        #[arg(long)]
        grace_days: Option<u32>,
    },
    /// Create a consumer bearer token for a partner and print it once (the ring keeps
    /// only its SHA-256).
    Token {
        #[arg(long)]
        partner: String,
        /// Name of the token in the ring (default: generated).
        #[arg(long)]
        name: Option<String>,
        /// Days until the token expires (default: never).
        #[arg(long)]
        valid_days: Option<u32>,
    },
}

#[derive(Subcommand)]
pub enum SchemaAction {
    /// Register a version: the file holds the JSON Schema document. Refused (exit 1, with
    /// every reason) when it breaks the subject's compatibility mode.
    Add { event_type: String, version: String, file: PathBuf },
    /// Every event type with schemas: mode, versions, major flags.
    List,
    /// One event type, or with a version its schema document.
    Show { event_type: String, version: Option<String> },
    /// Whether a candidate would be registered, and why not, without registering it.
    Check { event_type: String, version: String, file: PathBuf },
    /// Delete a version (events naming it are refused from then on).
    Delete { event_type: String, version: String },
    /// Set the compatibility mode, major-version flags and dual-write of an event type.
    Flag {
        event_type: String,
        /// backward, forward, full, none, or their _transitive forms.
        #[arg(long)]
        mode: Option<String>,
        /// Accept events of this major (into its stream version).
        #[arg(long, value_name = "MAJOR")]
        enable_major: Vec<u32>,
        /// Refuse events of this major again (422 schema_major_not_enabled).
        #[arg(long, value_name = "MAJOR")]
        disable_major: Vec<u32>,
        /// Refuse events of this major for good (422 schema_major_retired).
        #[arg(long, value_name = "MAJOR")]
        retire_major: Vec<u32>,
        /// on: events of the newest enabled major need their older-major pair right before them.
        #[arg(long, value_name = "on|off", value_parser = ["on", "off"])]
        dual_write: Option<String>,
    },
}

/// Which dead letters a `dlq` command reads.
#[derive(Args, Debug, Clone, Default)]
pub struct DlqFilterArgs {
    /// Only this reason (the error code sent, e.g. schema_violation, timestamp_out_of_window).
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub partner: Option<String>,
    #[arg(long)]
    pub event_type: Option<String>,
    /// Received at or after (Unix ms).
    #[arg(long, value_name = "MS")]
    pub from_ms: Option<i64>,
    /// Received before (Unix ms).
    #[arg(long, value_name = "MS")]
    pub to_ms: Option<i64>,
}

#[derive(Subcommand)]
pub enum DlqAction {
    /// One JSON line per dead letter, oldest first, without body and headers.
    List {
        #[command(flatten)]
        filter: DlqFilterArgs,
        #[arg(long, default_value_t = crate::tools::dlq::LIST_DEFAULT)]
        limit: usize,
    },
    /// Whole dead letters (body and headers, credentials redacted): by id, or by filter.
    Show {
        /// A dead-letter id (d_<16 hex>).
        id: Option<String>,
        #[command(flatten)]
        filter: DlqFilterArgs,
        #[arg(long, default_value_t = crate::tools::dlq::LIST_DEFAULT)]
        limit: usize,
    },
    /// Counts by reason, partner and event type, and the bytes kept.
    Stats {
        #[command(flatten)]
        filter: DlqFilterArgs,
    },
}

#[derive(Subcommand)]
pub enum ReplayAction {
    /// Create a signer key (Ed25519) and print the [[signers]] table for the key ring.
    Keygen {
        #[arg(long)]
        name: String,
        /// requester or approver.
        #[arg(long)]
        role: String,
        /// The private key file to create (mode 0600; never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Resolve a selection to a fixed set of events and write a runbook signed by the requester.
    Plan {
        /// The requester's private key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Why the replay is needed (shown to the approver).
        #[arg(long)]
        reason: String,
        /// The stream version to write into (`<topic>.v<N>`), never the original.
        #[arg(long, value_name = "TOPIC")]
        target: String,
        /// Dead letters by id (repeatable).
        #[arg(long, value_name = "ID")]
        dlq_id: Vec<String>,
        /// Dead letters by reason (e.g. timestamp_out_of_window: the clock-skew quarantine).
        #[arg(long)]
        dlq_reason: Option<String>,
        /// Dead letters of this partner.
        #[arg(long)]
        partner: Option<String>,
        /// Dead letters of this event type.
        #[arg(long)]
        event_type: Option<String>,
        /// Events of this topic instead of dead letters (with --from-ms/--to-ms or --event-id).
        #[arg(long, value_name = "T")]
        topic: Option<String>,
        /// Time range (Unix ms; received time for dead letters, ingest time for topics).
        #[arg(long, value_name = "MS")]
        from_ms: Option<i64>,
        #[arg(long, value_name = "MS")]
        to_ms: Option<i64>,
        /// With --topic: these event ids (repeatable).
        #[arg(long, value_name = "ID")]
        event_id: Vec<String>,
        #[arg(long, value_name = "HOURS", default_value_t = crate::tools::replay::RUNBOOK_VALID_HOURS_DEFAULT)]
        valid_hours: u64,
        /// The runbook file to create.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Add an approver's signature to a runbook.
    Approve {
        runbook: PathBuf,
        /// The approver's private key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
    /// Verify, register with the server and send every item not sent yet; resumable.
    Run {
        runbook: PathBuf,
        /// Ingest address (default: [ingest] listen of the configuration).
        #[arg(long, value_name = "ADDR")]
        to: Option<std::net::SocketAddr>,
        /// Admin address (default: [admin] listen of the configuration).
        #[arg(long, value_name = "ADDR")]
        admin: Option<std::net::SocketAddr>,
        /// Sign with this key (topic items carry no partner).
        #[arg(long)]
        kid: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum QuarantineAction {
    /// One JSON line per quarantined request (partner, kid, skew, identity, replayed; no body).
    List {
        #[arg(long)]
        partner: Option<String>,
    },
    /// Refused (exit 2): replay runs only from a signed runbook (`sluice replay`), where
    /// skewed requests are dead letters with reason timestamp_out_of_window.
    Replay {
        #[arg(long)]
        partner: Option<String>,
        /// Ingest address to send to (default: [ingest] listen of the configuration).
        #[arg(long, value_name = "ADDR")]
        to: Option<std::net::SocketAddr>,
        /// Also send requests that came without a client certificate from partners that
        /// list certificate identities (their plain requests are genuine when the partner
        /// is `client_cert = "optional"`). Without it they stay for a later run.
        #[arg(long)]
        allow_no_certificate: bool,
    },
}

/// Writes generated text to stdout; a reader that went away (`| head`) is not an error.
pub fn print_generated(text: &[u8]) -> io::Result<()> {
    match io::stdout().lock().write_all(text) {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// The completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "sluice", &mut script);
    script
}

/// The man pages come from the same definition as `--help`, so they cannot drift: one
/// page per command at every depth (`sluice-keys-gen.1`), each named for its file and
/// showing its synopsis as it is typed (`sluice keys gen ...`), so every page a page
/// refers to exists.
pub fn write_man_pages(out_dir: Option<&Path>) -> io::Result<()> {
    let command = Cli::command();
    let Some(dir) = out_dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(command).render(&mut page)?;
        return print_generated(&page);
    };
    std::fs::create_dir_all(dir)?;
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut page)?;
    std::fs::write(dir.join("sluice.1"), &page)?;
    write_sub_pages(dir, &command, "sluice", "sluice")
}

/// The pages of `parent`'s subcommands, and of theirs.
fn write_sub_pages(dir: &Path, parent: &clap::Command, file_prefix: &str, typed_prefix: &str) -> io::Result<()> {
    for sub in parent.get_subcommands() {
        let file_name = format!("{file_prefix}-{}", sub.get_name());
        let typed = format!("{typed_prefix} {}", sub.get_name());
        let shown = sub.clone().name(file_name.clone()).bin_name(typed.clone());
        let mut page = Vec::new();
        clap_mangen::Man::new(shown).render(&mut page)?;
        std::fs::write(dir.join(format!("{file_name}.1")), &page)?;
        write_sub_pages(dir, sub, &file_name, &typed)?;
    }
    Ok(())
}
