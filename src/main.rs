//! The `sluice` binary: parses the command line (`tools/cli.rs`), installs the logger and
//! runs the command from the library. Exit status (SPEC §3): 0 success, 2 bad usage or
//! configuration, 1 any other failure; this file is where typed errors become one.

#![warn(clippy::unwrap_used)]

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use sluice::config::{self, Config};
use sluice::log::{DataDir, StorageError};
use sluice::shard::ServeError;
use sluice::tools::cli::{BridgeTarget, Cli, Command, LogsArgs, QuarantineAction};
use sluice::tools::{check_config, cli, keys, quarantine, tail, tune};
use sluice::topics::Topology;

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

fn failure(error: impl Into<anyhow::Error>) -> Failure {
    Failure { status: 1, error: error.into() }
}

/// The configuration of a command: from `--config`/`SLUICE_CONFIG`, else the system
/// file, else the embedded defaults.
fn load_config(given: Option<PathBuf>) -> Result<(Config, Option<PathBuf>), Failure> {
    let file = config::config_file(given);
    let loaded = Config::load_or_defaults(file.as_deref()).map_err(usage)?;
    Ok((loaded, file))
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Serve { config } => serve(config),
        Command::CheckConfig { config } => check(config),
        Command::Tail { logs, from, follow } => tail(logs, &from, follow),
        Command::CheckLog { logs } => check_log(logs),
        Command::ReadLog { config, data_dir, partner } => read_log(config, data_dir, partner),
        Command::Consume { url, token, subscription, topics, read_from, batch_limit, topic, partition, from, follow, max_events } => {
            use sluice::tools::consume::{self, ConsumeError, ConsumeOptions, Target};
            let target = match (subscription, topic, partition) {
                (Some(name), None, None) => Target::Subscription { name, create_topics: topics, read_from, batch_limit },
                (None, Some(topic), Some(partition)) => Target::Partition { topic, partition, from, follow },
                _ => return Err(usage(anyhow::anyhow!("say --subscription S, or --topic T --partition P"))),
            };
            let address = consume::address_of(&url).map_err(usage)?;
            let options = ConsumeOptions { address, token, target, max_events };
            consume::run(&options, &mut io::stdout().lock()).map_err(|error| match error {
                ConsumeError::Usage(_) => usage(error),
                other => failure(other),
            })
        }
        Command::Keys { keys_file, config, action } => {
            let path = match keys_file {
                Some(path) => path,
                None => load_config(config)?.0.keys_path(),
            };
            let now_ms = sluice::platform::time::now_unix_ms();
            keys::run(&path, &action, now_ms, &mut io::stdout().lock()).map_err(|error| match error {
                keys::KeysError::KeyRing(_) => usage(error),
                keys::KeysError::Output(_) => failure(error),
            })
        }
        Command::Quarantine { config, action } => quarantine_command(config, action),
        Command::Replay { config, action } => replay_command(config, action),
        Command::Dlq { config, data_dir, action } => dlq_command(config, data_dir, action),
        Command::Schema { config, admin, action } => schema_command(config, admin, &action),
        Command::Bridge { target: BridgeTarget::Kafka { config, once, skip_lost } } => bridge_kafka(config, once, skip_lost),
        Command::Man { out_dir } => cli::write_man_pages(out_dir.as_deref()).map_err(failure),
        Command::Completions { shell } => cli::print_generated(&cli::completions(shell)).map_err(failure),
        Command::Bench(args) => {
            let options = args.validate().map_err(|message| usage(anyhow::anyhow!(message)))?;
            sluice::tools::bench::run(&options, &mut io::stdout().lock())
                .map_err(|error| if error.is_usage() { usage(error) } else { failure(error) })
        }
        Command::Tune(args) => {
            let (config, _) = load_config(args.config.clone())?;
            let findings = tune::check(&config, &tune::Host::live());
            tune::write(&findings, args.json, &mut io::stdout().lock()).map_err(failure)?;
            let summary = tune::summary(&findings);
            if findings.iter().any(|finding| finding.status == tune::Status::Fail) {
                return Err(failure(anyhow::anyhow!("tune --check: {summary}")));
            }
            eprintln!("sluice: tune --check: {summary}");
            Ok(())
        }
    }
}

fn serve(given: Option<PathBuf>) -> Result<(), Failure> {
    let (loaded, file) = load_config(given)?;
    match &file {
        Some(path) => tracing::info!(config = %path.display(), "configuration read"),
        None => tracing::info!("no configuration file: embedded defaults"),
    }
    sluice::shard::serve(loaded, file, |_| {}).map_err(|error| match error {
        ServeError::Storage(
            StorageError::PartitionCountMismatch { .. } | StorageError::NotADirectory { .. } | StorageError::NotWritable { .. },
        ) => usage(error),
        ServeError::KeyRing(_) | ServeError::Jwks(_) | ServeError::Tls(_) => usage(error),
        other => failure(other),
    })
}

#[cfg(not(feature = "kafka"))]
fn bridge_kafka(_: Option<PathBuf>, _: bool, _: bool) -> Result<(), Failure> {
    Err(usage(anyhow::anyhow!("this sluice was built without the kafka feature")))
}

#[cfg(feature = "kafka")]
fn bridge_kafka(given: Option<PathBuf>, once: bool, skip_lost: bool) -> Result<(), Failure> {
    let (loaded, _) = load_config(given)?;
    let notifier = sluice::platform::systemd::Notifier::from_env();
    let options = sluice::bridge::BridgeOptions { once, skip_lost };
    match sluice::bridge::run(&loaded, &options, &notifier) {
        Ok(_) => Ok(()),
        Err(error) => Err(Failure { status: error.status(), error: error.into() }),
    }
}

fn check(given: Option<PathBuf>) -> Result<(), Failure> {
    let Some(file) = config::config_file(given) else {
        let message = format!("no configuration to check: pass --config FILE, set SLUICE_CONFIG, or create {}", config::SYSTEM_CONFIG_FILE);
        return Err(usage(anyhow::anyhow!(message)));
    };
    let loaded = Config::load(&file).map_err(usage)?;
    for warning in check_config::check(&loaded).map_err(usage)? {
        eprintln!("sluice: warning: {warning}");
    }
    print!("{}", loaded.to_toml());
    Ok(())
}

/// The topics a reading command reads, each with its data dir: those of `--data-dir`
/// (found on disk), else the configuration's that exist; only `--topic` when given.
fn logs_dirs(logs: &LogsArgs) -> Result<Vec<(String, DataDir)>, Failure> {
    let (data_dir, names) = match &logs.data_dir {
        Some(dir) => (dir.clone(), Topology::names_on_disk(dir)),
        None => {
            let config = load_config(logs.config.clone())?.0;
            let names = config.topics.topics().iter().map(|topic| topic.name.to_string()).collect();
            (config.storage.data_dir, names)
        }
    };
    let names: Vec<String> = match &logs.topic {
        Some(topic) if names.contains(topic) => vec![topic.clone()],
        Some(topic) => {
            return Err(usage(anyhow::anyhow!("topic {topic:?} is not in {} (topics: {})", data_dir.display(), names.join(", "))));
        }
        None => names,
    };
    let mut dirs = Vec::with_capacity(names.len());
    for name in names {
        let root = Topology::topic_root(&data_dir, &name);
        match DataDir::open_existing(&root) {
            Ok(dir) => dirs.push((name, dir)),
            // A configured topic that never took an event has no data yet.
            Err(_) if logs.data_dir.is_none() && logs.topic.is_none() => {}
            Err(error) => return Err(usage(error)),
        }
    }
    if dirs.is_empty() {
        return Err(usage(anyhow::anyhow!(
            "{} holds no sluice data (no sluice.meta): not a data dir, or never started",
            data_dir.display()
        )));
    }
    Ok(dirs)
}

fn tail(logs: LogsArgs, from: &str, follow: bool) -> Result<(), Failure> {
    let start = tail::parse_start(from).map_err(|message| usage(anyhow::anyhow!(message)))?;
    let partition = logs.partition;
    let dirs = logs_dirs(&logs)?;
    let options = tail::TailOptions { partition, start, follow };
    tail::run(&dirs, &options, &mut io::stdout().lock(), &mut io::stderr()).map_err(|error| match error {
        tail::TailError::NoSuchPartition { .. } => usage(error),
        other => failure(other),
    })
}

fn check_log(logs: LogsArgs) -> Result<(), Failure> {
    let partition = logs.partition;
    let dirs = logs_dirs(&logs)?;
    sluice::tools::check_log::run(&dirs, partition, &mut io::stdout().lock()).map_err(|error| match error {
        sluice::tools::check_log::CheckLogError::Storage(StorageError::NoSuchPartition { .. }) => usage(error),
        other => failure(other),
    })
}

fn quarantine_command(given: Option<PathBuf>, action: QuarantineAction) -> Result<(), Failure> {
    let (config, _) = load_config(given)?;
    let dir = config.storage.data_dir.join(sluice::shard::serve::QUARANTINE_DIR);
    match action {
        QuarantineAction::List { partner } => {
            let mut out = io::stdout().lock();
            quarantine::for_each(&dir, |file, offset, replayed, record| {
                if partner.as_deref().is_none_or(|wanted| wanted == record.partner) {
                    let _ = writeln!(out, "{}", quarantine::list_line(file, offset, replayed, record));
                }
            })
            .map_err(failure)
        }
        QuarantineAction::Replay { .. } => Err(usage(anyhow::anyhow!(
            "replay runs only from a signed runbook (SPEC §9): skewed requests are dead letters with reason timestamp_out_of_window; \
             `sluice replay plan --dlq-reason timestamp_out_of_window --partner P --target <topic>.v2 ...`, then `sluice replay approve` \
             by a second person, then `sluice replay run` (docs/SECURITY.md § Clock-skew quarantine)"
        ))),
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
    let serving = matches!(cli.command, Command::Serve { .. } | Command::Bridge { .. });
    let command = if matches!(cli.command, Command::Bridge { .. }) { "bridge" } else { "serve" };
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { status, error }) => {
            // `serve` runs under a service manager: its last words go through the log
            // (JSON in the journal); the other commands talk to a person.
            if serving {
                tracing::error!(error = describe(&error), status, "{command} failed");
            } else {
                eprintln!("sluice: {}", describe(&error));
            }
            ExitCode::from(status)
        }
    }
}

fn replay_command(config: Option<PathBuf>, action: sluice::tools::cli::ReplayAction) -> Result<(), Failure> {
    use sluice::tools::cli::ReplayAction;
    use sluice::tools::replay::{self, ReplayCommandError, RunTarget, Selection};
    let exit = |error: ReplayCommandError| match error {
        ReplayCommandError::Usage(_) | ReplayCommandError::Refused { .. } => usage(error),
        other => failure(other),
    };
    match action {
        ReplayAction::Keygen { name, role, out } => replay::keygen(&name, &role, &out, &mut io::stdout().lock()).map_err(exit),
        ReplayAction::Approve { runbook, key } => {
            let (config, _) = load_config(config)?;
            replay::approve(&config, &runbook, &key, &mut io::stdout().lock()).map_err(exit)
        }
        ReplayAction::Plan {
            key,
            reason,
            target,
            dlq_id,
            dlq_reason,
            partner,
            event_type,
            topic,
            from_ms,
            to_ms,
            event_id,
            valid_hours,
            out,
        } => {
            let (config, _) = load_config(config)?;
            let dlq_filter = sluice::sidelog::dlq::Filter { reason: dlq_reason, partner, event_type, from_ms, to_ms, id: None };
            let selection = Selection { dlq_ids: dlq_id, dlq_filter: Some(dlq_filter), topic, from_ms, to_ms, event_ids: event_id };
            let items = replay::plan(&config, &selection, &key, &reason, &target, valid_hours, &out).map_err(exit)?;
            eprintln!("sluice: replay plan: {items} events in {}; have an approver run `sluice replay approve`", out.display());
            Ok(())
        }
        ReplayAction::Run { runbook, to, admin, kid } => {
            let (config, _) = load_config(config)?;
            let target = RunTarget { ingest: to.unwrap_or(config.ingest.listen), admin: admin.unwrap_or(config.admin.listen), kid };
            let summary = replay::run(&config, &runbook, &target).map_err(exit)?;
            println!(
                "{{\"sent\":{},\"stored\":{},\"duplicates\":{},\"refused\":{},\"already_done\":{}}}",
                summary.sent, summary.stored, summary.duplicates, summary.refused, summary.skipped_done
            );
            Ok(())
        }
    }
}

fn dlq_command(config: Option<PathBuf>, data_dir: Option<PathBuf>, action: sluice::tools::cli::DlqAction) -> Result<(), Failure> {
    use sluice::tools::cli::{DlqAction, DlqFilterArgs};
    let data_dir = match data_dir {
        Some(dir) => dir,
        None => load_config(config)?.0.storage.data_dir,
    };
    let filter = |args: DlqFilterArgs, id: Option<u64>| sluice::sidelog::dlq::Filter {
        reason: args.reason,
        partner: args.partner,
        event_type: args.event_type,
        from_ms: args.from_ms,
        to_ms: args.to_ms,
        id,
    };
    let mut out = io::stdout().lock();
    match action {
        DlqAction::List { filter: args, limit } => {
            sluice::tools::dlq::print(&data_dir, &filter(args, None), limit, false, &mut out).map(|_| ()).map_err(failure)
        }
        DlqAction::Show { id, filter: args, limit } => {
            let id = match id {
                Some(text) => Some(
                    sluice::sidelog::dlq::parse_id(&text)
                        .ok_or_else(|| usage(anyhow::anyhow!("{text:?} is not a dead-letter id (d_<16 hex>)")))?,
                ),
                None => None,
            };
            let printed = sluice::tools::dlq::print(&data_dir, &filter(args, id), limit, true, &mut out).map_err(failure)?;
            if printed == 0 && id.is_some() {
                return Err(failure(anyhow::anyhow!("no such dead letter")));
            }
            Ok(())
        }
        DlqAction::Stats { filter: args } => {
            let stats = sluice::tools::dlq::stats(&data_dir, &filter(args, None)).map_err(failure)?;
            writeln!(out, "{}", serde_json::to_string_pretty(&stats).unwrap_or_default()).map_err(failure)
        }
    }
}

fn schema_command(
    config: Option<PathBuf>,
    admin: Option<std::net::SocketAddr>,
    action: &sluice::tools::cli::SchemaAction,
) -> Result<(), Failure> {
    let admin = match admin {
        Some(admin) => admin,
        None => load_config(config)?.0.admin.listen,
    };
    sluice::tools::schema::run(admin, action, &mut io::stdout().lock()).map_err(|error| match error {
        sluice::tools::schema::SchemaCommandError::Usage(_) => usage(error),
        other => failure(other),
    })
}

fn read_log(config: Option<PathBuf>, data_dir: Option<PathBuf>, partner: Option<String>) -> Result<(), Failure> {
    let data_dir = match data_dir {
        Some(dir) => dir,
        None => load_config(config)?.0.storage.data_dir,
    };
    let mut out = io::stdout().lock();
    let mut failed = None;
    sluice::consume::readlog::for_each(&data_dir, |record| {
        if failed.is_none() && partner.as_deref().is_none_or(|wanted| wanted == record.partner) {
            failed = writeln!(out, "{}", sluice::consume::readlog::json_line(record)).err();
        }
    })
    .map_err(failure)?;
    match failed {
        Some(error) if error.kind() != io::ErrorKind::BrokenPipe => Err(failure(error)),
        _ => Ok(()),
    }
}
