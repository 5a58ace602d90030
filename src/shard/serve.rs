//! `sluice serve`: opens the data dir and key ring, starts one pinned shard per core,
//! reports readiness, and drains on SIGTERM.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use crate::config::Config;
use crate::config::reload::{self, Reloadables};
use crate::ingest::envelope::Validator;
use crate::ingest::handle::Core;
use crate::log::DataDir;
use crate::metrics::Control;
use crate::net::listener::{ListenError, shard_listeners};
use crate::net::tls::{ServerTls, TlsError};
use crate::perimeter::keyring::{self, KeyRing};
use crate::perimeter::limits::ConnectionsPerIp;
use crate::perimeter::request_ids::RequestIds;
use crate::platform::swap::{Local, Swap};
use crate::platform::sys::EventFd;
use crate::shard::handoff::StoreBatch;
use crate::shard::partitions::Partitions;
use crate::shard::{Shard, ShardSetup};
use crate::sidelog::journal::Journal;
use crate::sidelog::quarantine::QuarantineWriter;

/// Where the request-id journal and the quarantine live in the data dir.
pub const REQUEST_IDS_DIR: &str = "request-ids";
pub const QUARANTINE_DIR: &str = "quarantine";

/// How often the JWKS files are checked for changes (one `stat` per issuer).
pub const JWKS_POLL_MS: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Storage(#[from] crate::log::StorageError),
    #[error("{0}")]
    KeyRing(#[from] crate::perimeter::keyring::KeyRingError),
    #[error("{0}")]
    Jwks(#[from] crate::perimeter::jwt::JwtLoadError),
    #[error("[ingest.tls]: {0}")]
    Tls(#[from] TlsError),
    #[error("{0}")]
    Listen(#[from] ListenError),
    #[error("shard {shard}: {message}")]
    Shard { shard: usize, message: String },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Where a running server listens.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub ingest: SocketAddr,
    /// The TLS listener, when `[ingest.tls]` is configured.
    pub ingest_tls: Option<SocketAddr>,
    pub admin: SocketAddr,
}

/// Loads the key ring in force, creating the development ring when none is configured.
pub fn load_keyring(config: &Config) -> Result<KeyRing, ServeError> {
    let path = config.keys_path();
    if config.auth.keys_file.is_none()
        && let Some(new) = keyring::ensure_dev_keyring(&path, crate::platform::time::now_unix_ms())?
    {
        tracing::warn!(kid = %new.kid, partner = %new.partner, secret_file = %new.path.display(), "created a development key ring");
    }
    let ring = KeyRing::load(&path)?;
    if config.auth.keys_file.is_none()
        && let Some(key) = ring.keys().first()
    {
        tracing::warn!(file = %path.display(), kid = %key.kid, "development key ring in use; set [auth] keys_file for production");
    }
    Ok(ring)
}

/// What every shard shares, opened before any shard starts.
struct Shared {
    /// Every topic's data dir, in the topology's order.
    topic_dirs: Arc<Vec<DataDir>>,
    keyring: Arc<Swap<KeyRing>>,
    jwt: Option<Arc<Swap<crate::perimeter::jwt::JwtVerifier>>>,
    control: Arc<Control>,
    server_tls: Option<Arc<ServerTls>>,
    per_ip: Arc<ConnectionsPerIp>,
}

/// The shards' sockets: listeners (plaintext and TLS) and wake-up eventfds.
struct Sockets {
    listeners: Vec<OwnedFd>,
    tls_listeners: Vec<Option<OwnedFd>>,
    ingest_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    wakers: Arc<Vec<EventFd>>,
}

/// Runs the appliance until SIGTERM/SIGINT has drained it. `on_ready` is called once
/// every shard accepts traffic.
pub fn serve(config: Config, config_file: Option<std::path::PathBuf>, on_ready: impl FnOnce(Bound)) -> Result<(), ServeError> {
    let config = Arc::new(config);
    let notifier = Arc::new(crate::platform::systemd::Notifier::from_env());
    notifier.status("starting: opening the data dir");
    warn_if_open_files_short(&config);
    if !crate::platform::sys::fix_mmap_threshold() {
        tracing::warn!("could not fix the allocator's mmap threshold: freed body buffers may stay in the heap");
    }
    let shared = open_shared(&config)?;
    let terminate = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&terminate))?;
    }
    let hangup = Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hangup))?;
    let reloadables = Arc::new(
        Reloadables::new(Arc::clone(&config), shared.server_tls.clone(), Arc::clone(&shared.keyring), shared.jwt.clone())
            .with_notifier(Arc::clone(&notifier))
            .with_config_file(config_file),
    );
    let sockets = bind_sockets(&config)?;
    let (ingest_addr, tls_addr, wakers) = (sockets.ingest_addr, sockets.tls_addr, Arc::clone(&sockets.wakers));
    let (threads, ready) = spawn_shards(&config, &shared, sockets)?;
    let control = &shared.control;
    wait_for_shards(&ready, config.ingest.shards, control, &notifier)?;
    if let Some(subscriptions) = control.subscriptions.get() {
        subscriptions.clamp_to_log(control);
    }
    // Every shard ring is now set up, registered, restricted and enabled, and nothing
    // after this point (admin, reloads, JWKS polling, journal, quarantine) makes a ring.
    lock_down_io_uring(&config, control);
    let admin_addr = crate::admin::spawn(config.admin.listen, Arc::clone(control), Arc::clone(&reloadables))?;
    control.ready.store(true, Ordering::Release);
    let tls_word = tls_addr.map(|addr| format!(" ingest_tls={addr}")).unwrap_or_default();
    let listening = format!("ingest={ingest_addr}{tls_word} admin={admin_addr}");
    tracing::info!(
        ingest = %ingest_addr,
        ingest_tls = tls_addr.map(tracing::field::display),
        admin = %admin_addr,
        shards = config.ingest.shards,
        partitions = config.storage.partitions,
        durability = %config.storage.durability,
        data_dir = %config.storage.data_dir.display(),
        "listening"
    );
    notifier.ready(&status_line(&listening, &config, 0));
    on_ready(Bound { ingest: ingest_addr, ingest_tls: tls_addr, admin: admin_addr });
    supervise(control, &config, &reloadables, &notifier, &listening, (&terminate, &hangup));
    tracing::info!(drain_timeout_ms = config.ingest.drain_timeout_ms, "draining");
    notifier.stopping(std::time::Duration::from_millis(config.ingest.drain_timeout_ms));
    control.draining.store(true, Ordering::Release);
    for waker in wakers.iter() {
        waker.notify();
    }
    for thread in threads {
        let _ = thread.join();
    }
    tracing::info!("drained, exiting");
    Ok(())
}

/// Raises the open-files limit; every connection is a descriptor, and so are segments,
/// listeners and rings.
fn warn_if_open_files_short(config: &Config) {
    let shards = config.ingest.shards;
    let wanted = crate::platform::rlimit::open_files_wanted(config);
    let besides = wanted - (shards * config.ingest.connections_max) as u64;
    match crate::platform::rlimit::raise_open_files_limit() {
        Some(limit) if limit < wanted => tracing::warn!(
            limit,
            wanted,
            shards,
            connections_max = config.ingest.connections_max,
            "open-files limit is below shards x connections_max + {besides}; connections past it are refused: raise LimitNOFILE / ulimit -n"
        ),
        _ => {}
    }
}

/// Opens the data dir, the key ring, the JWKS files, the request-id journal and the TLS
/// material: everything the shards share.
fn open_shared(config: &Config) -> Result<Shared, ServeError> {
    let topic_dirs = Arc::new(crate::log::open_topics(&config.storage.data_dir, &config.topics)?);
    let root = config.storage.data_dir.clone();
    let keyring = Arc::new(Swap::new(Arc::new(load_keyring(config)?)));
    let jwt = match config.auth.jwt.clone() {
        Some(policy) => Some(Arc::new(Swap::new(Arc::new(crate::perimeter::jwt::JwtVerifier::load(policy)?)))),
        None => None,
    };
    let window_ms = 2 * config.auth.timestamp_tolerance_secs as i64 * 1000;
    let request_ids = RequestIds::new(window_ms, config.auth.request_ids_max, config.auth.request_id_memory_bytes_max);
    let now_ms = crate::platform::time::now_unix_ms();
    let loaded = crate::sidelog::journal::load(&root.join(REQUEST_IDS_DIR), &request_ids, now_ms)
        .map_err(|error| ServeError::Shard { shard: 0, message: format!("cannot read the request-id journal: {error}") })?;
    if loaded.restored > 0 || loaded.damaged > 0 {
        tracing::info!(
            restored = loaded.restored,
            records = loaded.records,
            files = loaded.files,
            damaged_tails_cut = loaded.damaged,
            "request-id memory restored from the journal"
        );
    }
    let control =
        Arc::new(Control::new(config.ingest.shards, Arc::clone(&config.topics)).with_request_ids(request_ids).with_limits(&config.limits));
    let subscriptions = crate::consume::subscriptions::Subscriptions::open(&root, &config.topics).map_err(|error| ServeError::Shard {
        shard: 0,
        message: format!("cannot open the subscriptions in {}: {error}", root.display()),
    })?;
    let _ = control.subscriptions.set(Arc::new(subscriptions));
    let _ = control.topic_dirs.set(Arc::clone(&topic_dirs));
    let mut governance = crate::policy::Governance::open(&root, config.policies.clone(), config.gates.clone())
        .map_err(|message| ServeError::Shard { shard: 0, message: format!("schemas: {message}") })?;
    governance.tolerance_secs = config.auth.timestamp_tolerance_secs;
    if let Some(gates) = governance.gates() {
        let rebuilt = crate::policy::rebuild::rebuild(gates, &governance.gate_state, &config.topics, &topic_dirs)?;
        tracing::info!(
            records = rebuilt.records,
            applied = rebuilt.applied,
            users = governance.gate_state.users(),
            "KYC/RG state read back from the stream"
        );
    }
    let _ = control.governance.set(Arc::new(governance));
    control.read_log.bytes.store(crate::consume::readlog::directory_bytes(&root), Ordering::Relaxed);
    control.dlq.bytes.store(crate::sidelog::dlq::directory_bytes(&root.join(crate::sidelog::dlq::DLQ_DIR)), Ordering::Relaxed);
    control.quarantine.bytes.store(crate::sidelog::quarantine::directory_bytes(&root.join(QUARANTINE_DIR)), Ordering::Relaxed);
    let server_tls = match &config.ingest.tls {
        Some(tls) => Some(Arc::new(ServerTls::new(crate::net::tls::material::server_config(tls)?))),
        None => None,
    };
    let per_ip = Arc::new(ConnectionsPerIp::new(config.ingest.connections_per_ip_max));
    Ok(Shared { topic_dirs, keyring, jwt, control, server_tls, per_ip })
}

fn bind_sockets(config: &Config) -> Result<Sockets, ServeError> {
    let shards = config.ingest.shards;
    let (listeners, ingest_addr) = shard_listeners(config.ingest.listen, shards)?;
    let (tls_listeners, tls_addr) = match &config.ingest.tls {
        Some(tls) => {
            let (fds, addr) = shard_listeners(tls.listen, shards)?;
            (fds.into_iter().map(Some).collect(), Some(addr))
        }
        None => ((0..shards).map(|_| None).collect::<Vec<_>>(), None),
    };
    let wakers: Arc<Vec<EventFd>> = Arc::new((0..shards).map(|_| EventFd::new()).collect::<io::Result<_>>()?);
    Ok(Sockets { listeners, tls_listeners, ingest_addr, tls_addr, wakers })
}

type ShardThreads = (Vec<std::thread::JoinHandle<()>>, mpsc::Receiver<Result<usize, ServeError>>);

/// Starts one pinned thread per shard; each reports on the returned channel once it
/// accepts traffic (or why it could not start).
fn spawn_shards(config: &Arc<Config>, shared: &Shared, sockets: Sockets) -> Result<ShardThreads, ServeError> {
    let shards = config.ingest.shards;
    let channels: Vec<_> = (0..shards).map(|_| crossbeam_channel::bounded(crate::constants::HANDOFF_QUEUE_BATCHES_MAX)).collect();
    let senders: Vec<_> = channels.iter().map(|(sender, _)| sender.clone()).collect();
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<usize, ServeError>>();
    let mut threads = Vec::new();
    let shard_sockets = sockets.listeners.into_iter().zip(sockets.tls_listeners);
    for (index, ((_, inbox), (listener, tls_listener))) in channels.into_iter().zip(shard_sockets).enumerate() {
        let setup = ShardSetup {
            index,
            config: Arc::clone(config),
            listener,
            wakers: Arc::clone(&sockets.wakers),
            inbox,
            peers: senders.clone(),
            control: Arc::clone(&shared.control),
            tls: tls_listener.zip(shared.server_tls.clone()),
            per_ip: Arc::clone(&shared.per_ip),
        };
        let (keyring, jwt, data_dir, ready) =
            (Arc::clone(&shared.keyring), shared.jwt.clone(), Arc::clone(&shared.topic_dirs), ready_tx.clone());
        let core_id = if cores.is_empty() { None } else { Some(cores[index % cores.len()]) };
        let thread = std::thread::Builder::new().name(format!("sluice-shard-{index}")).spawn(move || {
            if let Some(core_id) = core_id
                && !core_affinity::set_for_current(core_id)
            {
                tracing::warn!(shard = index, core = core_id.id, "could not pin the shard to its core");
            }
            match start_shard(setup, keyring, jwt, &data_dir) {
                Ok(mut shard) => {
                    let _ = ready.send(Ok(index));
                    if let Err(error) = shard.run() {
                        tracing::error!(shard = index, %error, "shard stopped; exiting");
                        std::process::exit(1);
                    }
                }
                Err(error) => {
                    let _ = ready.send(Err(error));
                }
            }
        })?;
        threads.push(thread);
    }
    Ok((threads, ready_rx))
}

/// Waits until every shard has recovered its partitions and accepts traffic. While
/// recovery makes progress, systemd hears how far it got and is asked to extend the
/// start timeout, so `TimeoutStartSec=` bounds a recovery that stopped moving, not one
/// that is merely long.
fn wait_for_shards(
    ready: &mpsc::Receiver<Result<usize, ServeError>>,
    shards: usize,
    control: &Control,
    notifier: &crate::platform::systemd::Notifier,
) -> Result<(), ServeError> {
    use crate::constants::{STARTUP_EXTEND_MS, STARTUP_PROGRESS_MS};
    let mut ready_count = 0;
    let mut progress_seen = 0;
    while ready_count < shards {
        match ready.recv_timeout(std::time::Duration::from_millis(STARTUP_PROGRESS_MS)) {
            Ok(Ok(_)) => ready_count += 1,
            Ok(Err(error)) => return Err(error),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(ServeError::Shard { shard: 0, message: "a shard exited during start-up".into() });
            }
        }
        let (partitions, records) = control.recovery_progress();
        if partitions + records != progress_seen {
            progress_seen = partitions + records;
            let status = format!(
                "recovering: {partitions} of {} partitions open, {records} records read; {ready_count} of {shards} shards ready",
                control.end_offsets.len()
            );
            notifier.extend_timeout(std::time::Duration::from_millis(STARTUP_EXTEND_MS), &status);
        }
    }
    Ok(())
}

/// Refuses `io_uring_setup` and `io_uring_register` to every thread of the process from
/// now on ([`crate::platform::lockdown`]). A filter that cannot be installed is logged with the
/// reason and the server goes on: the shard rings stay restricted, and
/// `sluice_io_uring_lockdown_active` shows 0 (docs/DECISIONS.md § io_uring restrictions).
fn lock_down_io_uring(config: &Config, control: &Control) {
    if !config.ingest.io_uring_lockdown {
        tracing::info!(io_uring_lockdown = false, "io_uring lockdown off: this process can still create and register rings");
        return;
    }
    match crate::platform::lockdown::install() {
        Ok(()) => {
            control.io_uring_lockdown.store(true, Ordering::Release);
            tracing::info!(shards = config.ingest.shards, "io_uring lockdown: io_uring_setup and io_uring_register refused from now on");
        }
        Err(error) => tracing::warn!(
            %error,
            "io_uring lockdown not installed: the shard rings stay restricted, but this process can still create new rings"
        ),
    }
}

/// `STATUS=` for `systemctl status`: where it listens, its shape, and the request rate.
fn status_line(listening: &str, config: &Config, requests_per_sec: u64) -> String {
    format!("listening {listening}; {} shards, {} partitions; {requests_per_sec} req/s", config.ingest.shards, config.storage.partitions)
}

/// The main thread while serving: turns SIGHUP into reloads, polls the JWKS files,
/// watches every shard's reactor loop (a stalled shard turns `/readyz` 503 and stops the
/// systemd watchdog pings, so systemd restarts the process), refreshes `STATUS=`, and
/// returns when SIGTERM or SIGINT arrives.
fn supervise(
    control: &Control,
    config: &Config,
    reloadables: &Reloadables,
    notifier: &crate::platform::systemd::Notifier,
    listening: &str,
    (terminate, hangup): (&std::sync::atomic::AtomicBool, &std::sync::atomic::AtomicBool),
) {
    use crate::constants::{SHARD_STALL_MS, STATUS_REFRESH_MS, SUPERVISE_POLL_MS};
    let started = std::time::Instant::now();
    let elapsed_ms = || started.elapsed().as_millis() as u64;
    let watchdog_ms = crate::platform::systemd::watchdog_period().map(|period| period.as_millis() as u64);
    let mut watch = crate::platform::systemd::ReactorWatch::new(control.shards.len(), 0, SHARD_STALL_MS);
    let (mut last_ping_ms, mut last_status_ms, mut last_jwks_ms, mut last_storage_ms) = (0, 0, 0, 0);
    let mut answers_then = control.answers_total();
    let mut reported_stall = None;
    while !terminate.load(Ordering::Acquire) {
        let now_ms = elapsed_ms();
        if hangup.swap(false, Ordering::AcqRel) {
            let _ = reload::reload_and_report(reloadables, "SIGHUP");
        }
        if now_ms >= last_jwks_ms + JWKS_POLL_MS {
            last_jwks_ms = now_ms;
            reload::refresh_changed_jwks(reloadables);
        }
        watch.observe(control.shards.iter().map(|shard| shard.heartbeat.load(Ordering::Relaxed)), now_ms);
        let stalled = watch.stalled(now_ms);
        control.stalled.store(stalled.is_some(), Ordering::Release);
        if stalled.map(|(shard, _)| shard) != reported_stall {
            match stalled {
                Some((shard, still_ms)) => {
                    tracing::error!(shard, still_ms, "shard reactor stalled: /readyz is 503 and the watchdog is no longer fed");
                    notifier.status(&format!("shard {shard} stalled for {still_ms} ms"));
                }
                None => tracing::warn!("every shard reactor is turning again"),
            }
            reported_stall = stalled.map(|(shard, _)| shard);
        }
        if now_ms >= last_storage_ms + STORAGE_SETTLE_MS {
            last_storage_ms = now_ms;
            settle_storage(control, config);
            // Rate-limit slots whose bucket has refilled are emptied once a second.
            control.rate.sweep();
        }
        if let Some(period_ms) = watchdog_ms
            && stalled.is_none()
            && now_ms >= last_ping_ms + period_ms
        {
            last_ping_ms = now_ms;
            notifier.watchdog();
        }
        if stalled.is_none() && now_ms >= last_status_ms + STATUS_REFRESH_MS {
            let answers_now = control.answers_total();
            let rate = (answers_now - answers_then) * 1000 / (now_ms - last_status_ms).max(1);
            (answers_then, last_status_ms) = (answers_now, now_ms);
            notifier.status(&status_line(listening, config, rate));
        }
        std::thread::sleep(std::time::Duration::from_millis(SUPERVISE_POLL_MS));
    }
}

/// How often the supervisor checks whether refusing storage has recovered.
const STORAGE_SETTLE_MS: u64 = 1_000;

/// Lets storage that refused writes take them again once the disk has room for two
/// full-size segments (every partition's next roll needs one) and no append has failed
/// for a while (`Control::settle_storage`).
fn settle_storage(control: &Control, config: &Config) {
    if !control.storage_refusing.load(Ordering::Acquire) {
        return;
    }
    let free = crate::platform::sys::available_bytes(&config.storage.data_dir).ok();
    let now_ms = crate::platform::time::now_unix_ms().max(0) as u64;
    control.settle_storage(now_ms, free, 2 * config.storage.segment_bytes);
}

/// A shard's consumer state: the data dirs, the shared subscription registry, its cursor
/// journal and read log writers.
fn consume_core(config: &Config, shard: usize, control: &Control, dirs: &[DataDir]) -> Option<crate::consume::ConsumeCore> {
    let data_dir = &config.storage.data_dir;
    Some(crate::consume::ConsumeCore {
        dirs: Arc::new(dirs.to_vec()),
        subscriptions: control.subscriptions.get().cloned()?,
        journal: crate::consume::subscriptions::CursorJournal::new(data_dir, shard),
        read_log: crate::consume::readlog::ReadLog::new(data_dir, shard, config.consume.read_log_bytes_max, Arc::clone(&control.read_log)),
        scopes: crate::consume::auth::TopicScopes::default(),
        wake: 0,
    })
}

fn start_shard(
    setup: ShardSetup,
    keyring: Arc<Swap<KeyRing>>,
    jwt: Option<Arc<Swap<crate::perimeter::jwt::JwtVerifier>>>,
    data_dir: &[DataDir],
) -> Result<Shard, ServeError> {
    let index = setup.index;
    let shard_error = |message: String| ServeError::Shard { shard: index, message };
    let (ring, features) = crate::reactor::setup(&crate::reactor::restrictions::SHARD).map_err(|error| shard_error(error.to_string()))?;
    if index == 0 && !features.defer_taskrun {
        tracing::warn!("io_uring without SINGLE_ISSUER|DEFER_TASKRUN (kernel < 6.1): running with COOP_TASKRUN");
    }
    let config = &setup.config;
    let consume = consume_core(config, index, &setup.control, data_dir)
        .ok_or_else(|| shard_error("the subscription registry is not open".to_owned()))?;
    let (partitions, reports) =
        Partitions::open(config, data_dir, index, Arc::clone(&setup.control), crate::platform::time::now_unix_ms())?;
    log_recovery(config, &setup.control, reports);
    let shards = config.ingest.shards;
    let governance = setup.control.governance.get().cloned().ok_or_else(|| shard_error("the schema registry is not open".to_owned()))?;
    let core = Core {
        rules: Local::new(Arc::clone(&governance.rules)),
        gate_state: Arc::clone(&governance.gate_state),
        pair: Default::default(),
        replay: None,
        dlq: open_dlq(config, index)?,
        dlq_retention_ms: config.dlq.retention_ms as i64,
        admitted_by_partner: Vec::new(),
        shedding: false,
        governance: Arc::clone(&governance),
        shard: index,
        shards,
        topology: Arc::clone(&config.topics),
        consume,
        keyring: Local::new(keyring),
        tolerance_secs: config.auth.timestamp_tolerance_secs,
        validator: Validator::new(config.ingest.body_bytes_max),
        partitions,
        outgoing: (0..shards).map(|_| StoreBatch::default()).collect(),
        spare_batches: Vec::new(),
        resolved: Vec::new(),
        results_out: (0..shards).map(|_| Vec::new()).collect(),
        results_pool: Vec::new(),
        stamp: crate::ingest::envelope::Stamp::new(0),
        stamp_ms: 0,
        line_spans: Vec::with_capacity(crate::constants::BATCH_EVENTS_MAX),
        resolved_scratch: Vec::new(),
        now_ms: crate::platform::time::now_unix_ms(),
        control: Arc::clone(&setup.control),
        journal: Some(Journal::new(&config.storage.data_dir.join(REQUEST_IDS_DIR), index, setup.control.request_ids.window_ms())),
        jwt: jwt.map(Local::new),
        jwt_scratch: Box::default(),
        token_scopes: Default::default(),
        quarantine: (config.auth.quarantine_bytes_max > 0)
            .then(|| QuarantineWriter::new(&config.storage.data_dir.join(QUARANTINE_DIR), index, config.auth.quarantine_bytes_max)),
    };
    Shard::new(setup, ring, core).map_err(|error| shard_error(error.to_string()))
}

/// This shard's dead-letter queue writer, unless `[dlq] bytes_max = 0`.
fn open_dlq(config: &Config, shard: usize) -> Result<Option<crate::sidelog::dlq::DlqWriter>, ServeError> {
    if config.dlq.bytes_max == 0 {
        return Ok(None);
    }
    let dir = config.storage.data_dir.join(crate::sidelog::dlq::DLQ_DIR);
    crate::sidelog::dlq::DlqWriter::open(&dir, shard, config.dlq.bytes_max)
        .map(Some)
        .map_err(|error| ServeError::Shard { shard, message: format!("cannot open the dead-letter queue in {}: {error}", dir.display()) })
}

/// Logs what recovery found in each partition and records the damage for `/readyz`.
fn log_recovery(config: &Config, control: &Control, reports: Vec<(u32, crate::log::RecoveryReport)>) {
    for (slot, report) in reports {
        let (topic, partition) = config.topics.locate(slot);
        let topic = &*config.topics.topic(topic).name;
        if report.truncated_bytes > 0 {
            tracing::warn!(
                topic,
                partition,
                records = report.records,
                torn_tail_bytes_cut = report.truncated_bytes,
                "partition recovered: torn tail cut"
            );
        }
        for range in &report.damage {
            tracing::error!(
                topic,
                partition,
                from_offset = range.from,
                to_offset = range.to,
                path = %range.path.display(),
                reason = %range.reason,
                "damaged records: these offsets cannot be read back; intact records around them are kept, the file is left \
                 as it is and the offsets are never reused (`sluice check-log` lists every damaged range)"
            );
        }
        control.record_damage(slot, &report.damage);
    }
}
