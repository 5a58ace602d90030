//! The `sluice` command line. Exit status (SPEC §3): 0 success, 2 bad usage or
//! configuration, 1 any other failure.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use sluice::config::Config;
use sluice::log::{DataDir, StartAt};
use sluice::perimeter::keyring;
use sluice::platform::logging::LogFormat;
use sluice::tools::tail::{self, TailOptions};

#[derive(Parser)]
#[command(name = "sluice", version, about = "High-throughput, security-first ingest appliance for signed event feeds")]
struct Cli {
    /// Log level (error, warn, info, debug, trace) or a filter such as
    /// "info,sluice::shard=debug".
    #[arg(long, global = true, value_name = "LEVEL", env = "SLUICE_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Log line format; auto is JSON when stderr is not a terminal (the journal, a pipe).
    #[arg(long, global = true, value_name = "FORMAT", env = "SLUICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the appliance (embedded defaults without --config).
    Serve {
        /// Configuration file (TOML); without it, embedded defaults.
        #[arg(long, value_name = "FILE", env = "SLUICE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate a configuration and print the effective values.
    CheckConfig {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print stored events, one JSON object per line.
    Tail {
        /// Configuration file whose [storage] data_dir to read.
        #[arg(long, value_name = "FILE", conflicts_with = "data_dir")]
        config: Option<PathBuf>,
        /// Data directory to read (default: ./sluice-data).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Only this partition (default: all).
        #[arg(long, value_name = "N")]
        partition: Option<u32>,
        /// earliest, latest, or an offset.
        #[arg(long, value_name = "WHERE", default_value = "earliest")]
        from: String,
        /// Keep printing new events as they are stored.
        #[arg(long)]
        follow: bool,
    },
    /// Manage the key ring file.
    Keys {
        /// Key ring file (default: the one the configuration names, else the development ring).
        #[arg(long, value_name = "FILE", global = true)]
        keys_file: Option<PathBuf>,
        /// Configuration file whose [auth] keys_file to use.
        #[arg(long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Inspect and replay requests kept in the clock-skew quarantine.
    Quarantine {
        /// Configuration file (its data dir, key ring and ingest listener).
        #[arg(long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: QuarantineAction,
    },
    /// The included load harness: signed requests, closed or open loop, HdrHistogram latency.
    Bench(Box<sluice::tools::bench::BenchArgs>),
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
    Tune(sluice::tools::tune::TuneArgs),
}

#[derive(Subcommand)]
enum KeysAction {
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
}

#[derive(Subcommand)]
enum QuarantineAction {
    /// One JSON line per quarantined request (partner, kid, skew, replayed; no body).
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
    },
}

/// A failure with its exit status.
struct Failure {
    status: u8,
    error: anyhow::Error,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure { status: 1, error }
    }
}

fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure { status: 2, error: error.into() }
}

fn load_config(path: Option<&PathBuf>) -> Result<Config, Failure> {
    match path {
        Some(path) => Config::load(path).map_err(usage),
        None => Ok(Config::defaults()),
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Serve { config } => {
            let loaded = load_config(config.as_ref())?;
            sluice::shard::serve(loaded, config, |_| {}).map_err(|error| match error {
                sluice::shard::ServeError::Storage(sluice::log::StorageError::PartitionCountMismatch { .. }) => usage(error),
                sluice::shard::ServeError::KeyRing(_) | sluice::shard::ServeError::Jwks(_) => usage(error),
                sluice::shard::ServeError::Tls(_) => usage(error),
                other => Failure::from(anyhow::Error::from(other)),
            })
        }
        Command::CheckConfig { config } => {
            let config = Config::load(&config).map_err(usage)?;
            if let Some(tls) = &config.ingest.tls {
                // The files are read and checked as `serve` would, so a bad one fails here.
                sluice::net::tls::material::server_config(tls).map_err(|error| usage(anyhow::anyhow!("[ingest.tls]: {error}")))?;
            }
            // So are the key ring (keys, partners, policy) and the JWKS files. The
            // development ring is only checked if it exists: `serve` creates it.
            if config.auth.keys_file.is_some() || config.keys_path().exists() {
                keyring::KeyRing::load(&config.keys_path()).map_err(usage)?;
            }
            if let Some(policy) = config.auth.jwt.clone() {
                sluice::perimeter::jwt::JwtVerifier::load(policy).map_err(|error| usage(anyhow::anyhow!("[auth.jwt]: {error}")))?;
            }
            print!("{}", config.to_toml());
            Ok(())
        }
        Command::Tail { config, data_dir, partition, from, follow } => {
            let data_dir = match (config, data_dir) {
                (Some(path), _) => Config::load(&path).map_err(usage)?.storage.data_dir,
                (None, Some(dir)) => dir,
                (None, None) => Config::defaults().storage.data_dir,
            };
            let start = match from.as_str() {
                "earliest" => StartAt::Earliest,
                "latest" => StartAt::Latest,
                offset => StartAt::Offset(
                    offset.parse().map_err(|_| usage(anyhow::anyhow!("--from takes earliest, latest or an offset, not {offset:?}")))?,
                ),
            };
            let dir = DataDir::open_existing(&data_dir).map_err(usage)?;
            let options = TailOptions { partition, start, follow };
            tail::run(&dir, &options, &mut io::stdout().lock()).map_err(|error| match error {
                tail::TailError::NoSuchPartition { .. } => usage(error),
                other => Failure::from(anyhow::Error::from(other)),
            })
        }
        Command::Keys { keys_file, config, action } => {
            let path = match keys_file {
                Some(path) => path,
                None => load_config(config.as_ref())?.keys_path(),
            };
            let now_ms = sluice::platform::time::now_unix_ms();
            match action {
                KeysAction::Gen { partner, valid_days } => {
                    let key = keyring::gen_key(&path, &partner, valid_days, now_ms).map_err(usage)?;
                    println!("created kid {} for partner {} in {}", key.kid, key.partner, key.path.display());
                }
                KeysAction::List => {
                    for info in keyring::list_keys(&path, now_ms).map_err(usage)? {
                        println!("{info}");
                    }
                }
                KeysAction::Rotate { partner, grace_days } => {
                    let key = keyring::rotate_key(&path, &partner, grace_days, now_ms).map_err(usage)?;
                    println!(
                        "created kid {} for partner {} in {}; the previous keys stay valid for {} days",
                        key.kid,
                        key.partner,
                        key.path.display(),
                        key.grace_days
                    );
                }
            }
            Ok(())
        }
        Command::Quarantine { config, action } => {
            let config = load_config(config.as_ref())?;
            let dir = config.storage.data_dir.join(sluice::shard::serve::QUARANTINE_DIR);
            match action {
                QuarantineAction::List { partner } => {
                    let mut out = io::stdout().lock();
                    sluice::tools::quarantine::for_each(&dir, |file, offset, replayed, record| {
                        if partner.as_deref().is_none_or(|wanted| wanted == record.partner) {
                            let _ = writeln!(out, "{}", sluice::tools::quarantine::list_line(file, offset, replayed, record));
                        }
                    })
                    .map_err(|error| Failure::from(anyhow::Error::from(error)))
                }
                QuarantineAction::Replay { partner, to } => {
                    let addr = to.unwrap_or(config.ingest.listen);
                    if addr.port() == 0 {
                        return Err(usage(anyhow::anyhow!("the configuration listens on port 0; say where to send with --to")));
                    }
                    let ring = keyring::KeyRing::load(&config.keys_path()).map_err(usage)?;
                    let now_ms = sluice::platform::time::now_unix_ms();
                    let summary = sluice::tools::quarantine::replay(&dir, &ring, addr, partner.as_deref(), now_ms)
                        .map_err(|error| Failure::from(anyhow::Error::from(error)))?;
                    for blocked in &summary.blocked {
                        eprintln!("sluice: {blocked}");
                    }
                    println!("{summary}");
                    if !summary.blocked.is_empty() {
                        let error = anyhow::anyhow!("{} partners blocked; their requests stay in the quarantine", summary.blocked.len());
                        return Err(Failure::from(error));
                    }
                    Ok(())
                }
            }
        }
        Command::Man { out_dir } => write_man_pages(out_dir.as_deref()).map_err(|error| Failure::from(anyhow::Error::from(error))),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "sluice", &mut script);
            print_generated(&script).map_err(|error| Failure::from(anyhow::Error::from(error)))
        }
        Command::Bench(args) => {
            let options = args.validate().map_err(|message| usage(anyhow::anyhow!(message)))?;
            sluice::tools::bench::run(&options, &mut io::stdout().lock())
                .map(|_| ())
                .map_err(|error| if error.is_usage() { usage(error) } else { Failure::from(anyhow::Error::from(error)) })
        }
        Command::Tune(args) => {
            let config = load_config(args.config.as_ref())?;
            let findings = sluice::tools::tune::check(&config, &sluice::tools::tune::Host::live());
            sluice::tools::tune::write(&findings, args.json, &mut io::stdout().lock()).map_err(anyhow::Error::from)?;
            let summary = sluice::tools::tune::summary(&findings);
            if findings.iter().any(|finding| finding.status == sluice::tools::tune::Status::Fail) {
                return Err(Failure::from(anyhow::anyhow!("tune --check: {summary}")));
            }
            eprintln!("sluice: tune --check: {summary}");
            Ok(())
        }
    }
}

/// The error and its causes, each cause once: most typed errors already put their
/// source's text in their own message, and `{:#}` would repeat it.
fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// Writes generated text to stdout; a reader that went away (`| head`) is not an error.
fn print_generated(text: &[u8]) -> io::Result<()> {
    match io::stdout().lock().write_all(text) {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// The man pages come from the same definition as `--help`, so they cannot drift.
fn write_man_pages(out_dir: Option<&std::path::Path>) -> io::Result<()> {
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
    for sub in command.get_subcommands() {
        let name = format!("sluice-{}", sub.get_name());
        page.clear();
        clap_mangen::Man::new(sub.clone().name(name.clone())).render(&mut page)?;
        std::fs::write(dir.join(format!("{name}.1")), &page)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { 2 } else { 0 });
        }
    };
    if let Err(error) = sluice::platform::logging::init(&cli.log_level, cli.log_format) {
        eprintln!("sluice: {error}");
        return ExitCode::from(2);
    }
    let serving = matches!(cli.command, Command::Serve { .. });
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { status, error }) => {
            // `serve` runs under a service manager: its last words go through the log
            // (JSON in the journal); the other commands talk to a person.
            if serving {
                tracing::error!(error = describe(&error), status, "serve failed");
            } else {
                eprintln!("sluice: {}", describe(&error));
            }
            ExitCode::from(status)
        }
    }
}
