//! Reloading what can change without a restart, on SIGHUP and `POST /admin/reload`:
//! the TLS material (server certificate and key, client CA bundle, CRLs), the key ring
//! (keys, partners, policy) and the JWKS files. Everything new is built first and swapped
//! in only if all of it is valid, so a bad file changes nothing: the old material stays
//! in force and the error names the file. Open connections are never dropped.

use std::sync::{Arc, Mutex, PoisonError};

use crate::config::Config;
use crate::jwt::{JwtLoadError, JwtVerifier};
use crate::keyring::{KeyRing, KeyRingError};
use crate::swap::Swap;
use crate::systemd::Notifier;
use crate::tls::{ServerTls, TlsError};

/// Handles to everything a reload may replace, shared by the signal loop and the admin
/// listener.
pub struct Reloadables {
    config: Arc<Config>,
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
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
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
            ReloadError::Tls(_) => "tls",
            ReloadError::KeyRing(_) => "keys",
            ReloadError::Jwks(_) => "jwks",
        }
    }

    /// The files were read but are not usable (an operator's mistake, HTTP 400), as
    /// opposed to a file that could not be read at all (HTTP 500).
    pub fn is_invalid_content(&self) -> bool {
        match self {
            ReloadError::Tls(error) => error.is_invalid_content(),
            ReloadError::KeyRing(KeyRingError::Read { .. }) | ReloadError::Jwks(JwtLoadError::Read { .. }) => false,
            ReloadError::KeyRing(_) | ReloadError::Jwks(_) => true,
        }
    }
}

impl Reloadables {
    pub fn new(
        config: Arc<Config>,
        tls: Option<Arc<ServerTls>>,
        keyring: Arc<Swap<KeyRing>>,
        jwt: Option<Arc<Swap<JwtVerifier>>>,
    ) -> Reloadables {
        Reloadables { config, tls, keyring, jwt, serial: Mutex::new(()), notifier: Arc::new(Notifier::inactive()) }
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
    let tls = match (&reloadables.tls, &reloadables.config.ingest.tls) {
        (Some(shared), Some(files)) => Some((shared, crate::tls::material::server_config(files)?)),
        _ => None,
    };
    let keyring = KeyRing::load(&reloadables.config.keys_path())?;
    let jwt = match &reloadables.jwt {
        Some(shared) => Some((shared, reload_jwks(shared)?)),
        None => None,
    };
    let mut parts = Vec::new();
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
    Ok(Reloaded { parts })
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
        Ok(reloaded) => tracing::info!(cause, parts = %reloaded.parts.join(","), "reloaded"),
        Err(error) => tracing::error!(cause, %error, "reload rejected; the previous material stays in force"),
    }
    result
}
