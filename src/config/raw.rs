//! The configuration file as written: every key optional, unknown keys are errors.
//! `validate.rs` turns it into the effective [`super::Config`].

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) ingest: RawIngest,
    #[serde(default)]
    pub(super) storage: RawStorage,
    #[serde(default)]
    pub(super) dedup: RawDedup,
    #[serde(default)]
    pub(super) auth: RawAuth,
    #[serde(default)]
    pub(super) admin: RawAdmin,
    // --- topics and consumers (issue 13) ---
    #[serde(default)]
    pub(super) topics: Vec<RawTopic>,
    #[serde(default)]
    pub(super) consume: RawConsume,
    // --- the Kafka bridge (issue 14) ---
    #[serde(default)]
    pub(super) bridge: super::bridge::RawBridge,
    // --- schemas, policies, dead letters (issue 15) ---
    #[serde(default)]
    pub(super) policies: Vec<super::policy::RawPolicy>,
    pub(super) gates: Option<super::policy::RawGates>,
    #[serde(default)]
    pub(super) dlq: super::policy::RawDlq,
    // --- rate limits, the memory budget (issue 16) ---
    #[serde(default)]
    pub(super) limits: super::limits::RawLimits,
}

/// `[consume]` (SPEC §6).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsume {
    pub(super) read_log_bytes_max: Option<u64>,
}

/// One `[[topics]]` table (SPEC §5).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTopic {
    pub(super) name: Option<String>,
    pub(super) event_types: Option<Vec<String>>,
    pub(super) partitions: Option<u32>,
    pub(super) retention_hours: Option<u64>,
    pub(super) retention_bytes: Option<u64>,
    /// Stream versions: `versions = 3` adds `<name>.v2` and `<name>.v3` (issue 15).
    pub(super) versions: Option<u32>,
    /// Its events are refused first under overload (issue 16).
    pub(super) optional: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIngest {
    pub(super) listen: Option<String>,
    pub(super) shards: Option<usize>,
    pub(super) body_bytes_max: Option<usize>,
    pub(super) header_bytes_max: Option<usize>,
    pub(super) headers_count_max: Option<usize>,
    pub(super) header_timeout_ms: Option<u64>,
    pub(super) body_timeout_ms: Option<u64>,
    pub(super) idle_timeout_ms: Option<u64>,
    pub(super) connections_max: Option<usize>,
    pub(super) drain_timeout_ms: Option<u64>,
    // --- TLS and per-IP limit (issue 4) ---
    pub(super) connections_per_ip_max: Option<usize>,
    pub(super) tls: Option<RawTls>,
    // --- PROXY protocol (issue 5) ---
    pub(super) proxy_protocol: Option<String>,
    pub(super) proxy_trusted_cidrs: Option<Vec<String>>,
    pub(super) io_uring_lockdown: Option<bool>,
}

/// `[ingest.tls]`: a second listener per shard that speaks TLS (docs/ARCHITECTURE.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) listen: Option<String>,
    pub(super) cert_file: Option<PathBuf>,
    pub(super) key_file: Option<PathBuf>,
    pub(super) client_ca_file: Option<PathBuf>,
    pub(super) client_auth: Option<String>,
    pub(super) crl_files: Option<Vec<PathBuf>>,
    pub(super) proxy_protocol: Option<String>,
    pub(super) proxy_trusted_cidrs: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    pub(super) data_dir: Option<PathBuf>,
    pub(super) partitions: Option<u32>,
    pub(super) durability: Option<String>,
    pub(super) segment_bytes: Option<u64>,
    pub(super) retention_hours: Option<u64>,
    pub(super) retention_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDedup {
    pub(super) window_hours: Option<u64>,
    pub(super) ids_per_partition_max: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    pub(super) keys_file: Option<PathBuf>,
    pub(super) timestamp_tolerance_secs: Option<u64>,
    pub(super) request_ids_max: Option<usize>,
    pub(super) request_id_memory_bytes_max: Option<usize>,
    pub(super) quarantine_bytes_max: Option<u64>,
    pub(super) jwt: Option<RawJwt>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwt {
    pub(super) leeway_secs: Option<u64>,
    #[serde(default)]
    pub(super) issuers: Vec<RawIssuer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIssuer {
    pub(super) issuer: String,
    pub(super) audience: String,
    pub(super) algorithms: Vec<String>,
    pub(super) jwks_file: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) listen: Option<String>,
}
