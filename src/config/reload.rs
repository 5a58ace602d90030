//! Reloading what can change without a restart, on SIGHUP and `POST /admin/reload`:
//! the configuration file is read again, and from it the TLS material (server
//! certificate and key, client CA bundle, CRLs), the key ring (keys, partners, policy)
//! and the JWKS files. Everything new is built first and swapped in only if all of it
//! is valid, so a bad file changes nothing: the old material stays in force and the
//! error names the file. Open connections are never dropped. Other configuration
//! changes (listeners, shards, storage, limits) need a restart; a reload names them.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::Config;
use crate::net::tls::{ServerTls, TlsError};
use crate::perimeter::jwt::{JwtLoadError, JwtVerifier};
use crate::perimeter::keyring::{KeyRing, KeyRingError};
use crate::platform::swap::Swap;
use crate::platform::systemd::Notifier;

/// Handles to everything a reload may replace, shared by the signal loop and the admin
/// listener.
pub struct Reloadables {
    /// The configuration the process started with (what needs a restart is compared
    /// against it).
    started: Arc<Config>,
    /// The file to read again on each reload; `None` for embedded defaults.
    config_file: Option<PathBuf>,
    /// The configuration whose reloadable parts are in force.
    in_force: Mutex<Arc<Config>>,
    tls: Option<Arc<ServerTls>>,
    keyring: Arc<Swap<KeyRing>>,
    jwt: Option<Arc<Swap<JwtVerifier>>>,
    /// One reload at a time (a SIGHUP and an admin call may race).
    serial: Mutex<()>,
    /// Told `RELOADING=1` before and `READY=1` after every reload.
    notifier: Arc<Notifier>,
}

/// What a successful reload put in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Names of the parts reloaded (`"tls"`), in order.
    pub parts: Vec<&'static str>,
    /// Configuration keys (`ingest.listen`) whose new values wait for a restart.
    pub restart_needed: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("config: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    #[error("keys: {0}")]
    KeyRing(#[from] KeyRingError),
    #[error("jwks: {0}")]
    Jwks(#[from] JwtLoadError),
}

impl ReloadError {
    /// Which part failed (`tls`, `keys`, `jwks`), for status lines that must not carry
    /// file contents.
    pub fn part(&self) -> &'static str {
        match self {
            ReloadError::Config(_) => "config",
            ReloadError::Tls(_) => "tls",
            ReloadError::KeyRing(_) => "keys",
            ReloadError::Jwks(_) => "jwks",
        }
    }

    /// The files were read but are not usable (an operator's mistake, HTTP 400), as
    /// opposed to a file that could not be read at all (HTTP 500).
    pub fn is_invalid_content(&self) -> bool {
        match self {
            ReloadError::Config(crate::config::ConfigError::Read { .. }) => false,
            ReloadError::Config(_) => true,
            ReloadError::Tls(error) => error.is_invalid_content(),
            ReloadError::KeyRing(KeyRingError::Read { .. }) | ReloadError::Jwks(JwtLoadError::Read { .. }) => false,
            ReloadError::KeyRing(_) | ReloadError::Jwks(_) => true,
        }
    }
}

impl Reloadables {
    /// The key ring in force (the admin API verifies runbooks against its signers).
    pub fn keyring(&self) -> Arc<KeyRing> {
        self.keyring.current().1
    }

    pub fn new(
        config: Arc<Config>,
        tls: Option<Arc<ServerTls>>,
        keyring: Arc<Swap<KeyRing>>,
        jwt: Option<Arc<Swap<JwtVerifier>>>,
    ) -> Reloadables {
        Reloadables {
            started: Arc::clone(&config),
            config_file: None,
            in_force: Mutex::new(config),
            tls,
            keyring,
            jwt,
            serial: Mutex::new(()),
            notifier: Arc::new(Notifier::inactive()),
        }
    }

    /// Reads `path` again on every reload (the file `serve --config` named).
    pub fn with_config_file(mut self, path: Option<PathBuf>) -> Reloadables {
        self.config_file = path;
        self
    }

    /// Reports reloads to systemd through `notifier`.
    pub fn with_notifier(mut self, notifier: Arc<Notifier>) -> Reloadables {
        self.notifier = notifier;
        self
    }
}

/// Re-reads every reloadable part from the files the configuration names and swaps the
/// new material in only if every part loaded. On error nothing changed. systemd hears
/// `RELOADING=1` before and `READY=1` after, whatever the outcome.
pub fn reload(reloadables: &Reloadables) -> Result<Reloaded, ReloadError> {
    let _serial = reloadables.serial.lock().unwrap_or_else(PoisonError::into_inner);
    reloadables.notifier.reloading();
    let result = load_and_swap(reloadables);
    let status = match &result {
        Ok(reloaded) => format!("reloaded {}", reloaded.parts.join(", ")),
        Err(error) => format!("reload rejected ({}); previous material in force", error.part()),
    };
    reloadables.notifier.ready(&status);
    result
}

fn load_and_swap(reloadables: &Reloadables) -> Result<Reloaded, ReloadError> {
    let config = match &reloadables.config_file {
        Some(path) => Arc::new(Config::load(path)?),
        None => Arc::clone(&reloadables.in_force.lock().unwrap_or_else(PoisonError::into_inner)),
    };
    let mut restart_needed = restart_only_changes(&reloadables.started, &config);
    let tls = match (&reloadables.tls, &config.ingest.tls) {
        (Some(shared), Some(files)) => Some((shared, crate::net::tls::material::server_config(files)?)),
        _ => None,
    };
    let keyring = KeyRing::load(&config.keys_path())?;
    let jwt = match (&reloadables.jwt, &config.auth.jwt) {
        (Some(shared), Some(policy)) if reloadables.config_file.is_some() => Some((shared, JwtVerifier::load(policy.clone())?)),
        (Some(shared), _) => Some((shared, reload_jwks(shared)?)),
        (None, _) => None,
    };
    // A listener or verifier that did not exist at start cannot appear (or go) live.
    if reloadables.tls.is_some() != config.ingest.tls.is_some() {
        restart_needed.push("ingest.tls".to_owned());
    }
    if reloadables.jwt.is_some() != config.auth.jwt.is_some() {
        restart_needed.push("auth.jwt".to_owned());
    }
    let mut parts = Vec::new();
    if reloadables.config_file.is_some() {
        parts.push("config");
    }
    if let Some((shared, config)) = tls {
        shared.replace(config);
        parts.push("tls");
    }
    reloadables.keyring.replace(Arc::new(keyring));
    parts.push("keys");
    if let Some((shared, verifier)) = jwt {
        shared.replace(Arc::new(verifier));
        parts.push("jwks");
    }
    *reloadables.in_force.lock().unwrap_or_else(PoisonError::into_inner) = config;
    Ok(Reloaded { parts, restart_needed })
}

/// Tables whose keys a reload applies: the TLS files, the key ring path, the JWT
/// issuers. Anything else that differs from the started configuration waits for a
/// restart.
const RELOADABLE_KEYS: &[&str] = &[
    "ingest.tls.cert_file",
    "ingest.tls.key_file",
    "ingest.tls.client_ca_file",
    "ingest.tls.client_auth",
    "ingest.tls.crl_files",
    "auth.keys_file",
    "auth.jwt",
];

/// The `table.key` names whose effective values differ between `started` and `candidate`
/// and that a reload cannot apply. Compares the effective configurations as
/// `check-config` prints them, so a new key is covered without a list to maintain.
fn restart_only_changes(started: &Config, candidate: &Config) -> Vec<String> {
    fn effective(config: &Config) -> Vec<(String, String)> {
        let mut table = String::new();
        let mut values = Vec::new();
        for line in config.to_toml().lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')) {
            if line.starts_with('[') {
                table = line.trim_matches(['[', ']']).to_owned();
            } else if let Some((key, value)) = line.split_once('=') {
                values.push((format!("{table}.{}", key.trim()), value.trim().to_owned()));
            }
        }
        values
    }
    let (before, after) = (effective(started), effective(candidate));
    let mut changed: Vec<String> = after.iter().filter(|entry| !before.contains(entry)).map(|(key, _)| key.clone()).collect();
    changed.extend(before.iter().filter(|(key, _)| !after.iter().any(|(other, _)| other == key)).map(|(key, _)| key.clone()));
    changed.retain(|key| !RELOADABLE_KEYS.iter().any(|reloadable| key == reloadable || key.starts_with(&format!("{reloadable}."))));
    changed.sort();
    changed.dedup();
    changed
}

/// Every JWKS file read afresh; the first file that fails fails the whole reload.
fn reload_jwks(shared: &Swap<JwtVerifier>) -> Result<JwtVerifier, JwtLoadError> {
    let reloaded = shared.current().1.reload();
    match reloaded.errors.into_iter().next() {
        Some(error) => Err(error),
        None => Ok(reloaded.verifier),
    }
}

/// Re-reads the JWKS files if one changed on disk (polled by the serve loop). A file that
/// fails keeps its issuer's previous keys, and the failure is reported.
pub fn refresh_changed_jwks(reloadables: &Reloadables) {
    let Some(shared) = &reloadables.jwt else { return };
    let _serial = reloadables.serial.lock().unwrap_or_else(PoisonError::into_inner);
    let (_, current) = shared.current();
    if !current.jwks_changed() {
        return;
    }
    let reloaded = current.reload();
    for error in &reloaded.errors {
        tracing::warn!(%error, "JWKS reload failed; the previous keys stay in force");
    }
    shared.replace(Arc::new(reloaded.verifier));
}

/// Runs [`reload`] and logs what happened, for the operator who sent SIGHUP.
pub fn reload_and_report(reloadables: &Reloadables, cause: &str) -> Result<Reloaded, ReloadError> {
    let result = reload(reloadables);
    match &result {
        Ok(reloaded) if reloaded.parts.is_empty() => tracing::info!(cause, "reload: nothing reloadable is configured"),
        Ok(reloaded) => {
            tracing::info!(cause, parts = %reloaded.parts.join(","), "reloaded");
            if !reloaded.restart_needed.is_empty() {
                tracing::warn!(cause, keys = %reloaded.restart_needed.join(","), "configuration changes that take effect only after a restart");
            }
        }
        Err(error) => tracing::error!(cause, %error, "reload rejected; the previous material stays in force"),
    }
    result
}
