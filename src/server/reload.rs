//! Reloading what can change without a restart, on SIGHUP and `POST /admin/reload`:
//! today the TLS material (server certificate and key, client CA bundle, CRLs); the key
//! ring, partners and JWKS join here later. Everything new is built first and swapped
//! in only if all of it is valid, so a bad file changes nothing: the old material stays
//! in force and the error names the file. Open connections are never dropped.

use std::sync::{Arc, Mutex, PoisonError};

use crate::config::Config;
use crate::tls::{ServerTls, TlsError};

/// Handles to everything a reload may replace, shared by the signal loop and the admin
/// listener.
pub struct Reloadables {
    config: Arc<Config>,
    tls: Option<Arc<ServerTls>>,
    /// One reload at a time (a SIGHUP and an admin call may race).
    serial: Mutex<()>,
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
}

impl ReloadError {
    /// The files were read but are not usable (an operator's mistake, HTTP 400), as
    /// opposed to a file that could not be read at all (HTTP 500).
    pub fn is_invalid_content(&self) -> bool {
        match self {
            ReloadError::Tls(error) => error.is_invalid_content(),
        }
    }
}

impl Reloadables {
    pub fn new(config: Arc<Config>, tls: Option<Arc<ServerTls>>) -> Reloadables {
        Reloadables { config, tls, serial: Mutex::new(()) }
    }
}

/// Re-reads every reloadable part from the files the configuration names and swaps the
/// new material in only if every part loaded. On error nothing changed.
pub fn reload(reloadables: &Reloadables) -> Result<Reloaded, ReloadError> {
    let _serial = reloadables.serial.lock().unwrap_or_else(PoisonError::into_inner);
    let tls = match (&reloadables.tls, &reloadables.config.ingest.tls) {
        (Some(shared), Some(files)) => Some((shared, crate::tls::material::server_config(files)?)),
        _ => None,
    };
    let mut parts = Vec::new();
    if let Some((shared, config)) = tls {
        shared.replace(config);
        parts.push("tls");
    }
    Ok(Reloaded { parts })
}

/// Runs [`reload`] and says on stderr what happened, for the operator who sent SIGHUP.
pub fn reload_and_report(reloadables: &Reloadables, cause: &str) -> Result<Reloaded, ReloadError> {
    let result = reload(reloadables);
    match &result {
        Ok(reloaded) if reloaded.parts.is_empty() => eprintln!("sluice: reload ({cause}): nothing reloadable is configured"),
        Ok(reloaded) => eprintln!("sluice: reload ({cause}): reloaded {}", reloaded.parts.join(", ")),
        Err(error) => eprintln!("sluice: reload ({cause}) rejected: {error}; the previous material stays in force"),
    }
    result
}
