//! `sluice check-config`: validates a configuration the way `serve` would before it binds
//! anything (the file, the TLS material, the key ring and JWKS files it names, the data
//! dir) and prints the effective values. Warnings (`shards` above the core count) go to
//! stderr and do not fail the check.

use crate::config::{Config, ConfigError};
use crate::log::StorageError;
use crate::net::tls::TlsError;
use crate::perimeter::jwt::{JwtLoadError, JwtVerifier};
use crate::perimeter::keyring::{KeyRing, KeyRingError};

/// Why a configuration would not serve; every variant is a configuration error (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("[ingest.tls]: {0}")]
    Tls(#[from] TlsError),
    #[error("{0}")]
    KeyRing(#[from] KeyRingError),
    #[error("[auth.jwt]: {0}")]
    Jwks(#[from] JwtLoadError),
    #[error("[storage] data_dir: {0}")]
    Storage(#[from] StorageError),
}

/// Checks everything `serve` checks before it binds; returns the warnings.
pub fn check(config: &Config) -> Result<Vec<String>, CheckError> {
    if let Some(tls) = &config.ingest.tls {
        crate::net::tls::material::server_config(tls)?;
    }
    // The development ring is only checked if it exists: `serve` creates it.
    if config.auth.keys_file.is_some() || config.keys_path().exists() {
        KeyRing::load(&config.keys_path())?;
    }
    if let Some(policy) = config.auth.jwt.clone() {
        JwtVerifier::load(policy)?;
    }
    crate::log::check_topics(&config.storage.data_dir, &config.topics)?;
    let mut warnings = Vec::new();
    if !config.topics.has_wildcard() {
        warnings
            .push("no [[topics]] table lists \"*\": events of any type not listed are refused with 422 event_type_not_routed".to_owned());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if config.ingest.shards > cores {
        warnings.push(format!(
            "ingest.shards = {} is above the {cores} cores this process may run on: shards would share cores and \
             answer slower; use 0 (one per core) or at most {cores}",
            config.ingest.shards
        ));
    }
    Ok(warnings)
}
