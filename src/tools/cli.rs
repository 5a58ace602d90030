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
    /// Inspect and replay requests kept in the clock-skew quarantine.
    #[command(disable_help_subcommand = true)]
    Quarantine {
        #[arg(long, value_name = "FILE", global = true, env = "SLUICE_CONFIG", help = CONFIG_HELP)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: QuarantineAction,
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
pub enum QuarantineAction {
    /// One JSON line per quarantined request (partner, kid, skew, identity, replayed; no body).
    List {
        #[arg(long)]
        partner: Option<String>,
    },
    /// Re-send requests not replayed yet to the ingest listener, signed afresh with a
    /// current key of the same partner. Exits 1 if a partner was blocked (the server
    /// refused how replay sends, or asked to retry): its requests stay for a later run.
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
