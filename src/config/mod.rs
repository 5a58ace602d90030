//! Configuration: the raw TOML file (`RawConfig`, every key optional, unknown keys are
//! errors) and the validated, effective configuration (`Config`) the rest of sluice uses.

pub mod reload;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::constants::*;
use crate::net::proxy::Versions;
use crate::perimeter::partners::Cidr;

/// A configuration that cannot be used; `sluice` exits 2 with this text.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, message: message.into() }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    ingest: RawIngest,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    dedup: RawDedup,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    admin: RawAdmin,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIngest {
    listen: Option<String>,
    shards: Option<usize>,
    body_bytes_max: Option<usize>,
    header_bytes_max: Option<usize>,
    headers_count_max: Option<usize>,
    header_timeout_ms: Option<u64>,
    body_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    connections_max: Option<usize>,
    drain_timeout_ms: Option<u64>,
    // --- TLS and per-IP limit (issue 4) ---
    connections_per_ip_max: Option<usize>,
    tls: Option<RawTls>,
    // --- PROXY protocol (issue 5) ---
    proxy_protocol: Option<String>,
    proxy_trusted_cidrs: Option<Vec<String>>,
    io_uring_lockdown: Option<bool>,
}

/// `[ingest.tls]`: a second listener per shard that speaks TLS (docs/ARCHITECTURE.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    listen: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
    client_auth: Option<String>,
    crl_files: Option<Vec<PathBuf>>,
    proxy_protocol: Option<String>,
    proxy_trusted_cidrs: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    data_dir: Option<PathBuf>,
    partitions: Option<u32>,
    durability: Option<String>,
    segment_bytes: Option<u64>,
    retention_hours: Option<u64>,
    retention_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDedup {
    window_hours: Option<u64>,
    ids_per_partition_max: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    keys_file: Option<PathBuf>,
    timestamp_tolerance_secs: Option<u64>,
    request_ids_max: Option<usize>,
    request_id_memory_bytes_max: Option<usize>,
    quarantine_bytes_max: Option<u64>,
    jwt: Option<RawJwt>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    leeway_secs: Option<u64>,
    #[serde(default)]
    issuers: Vec<RawIssuer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    issuer: String,
    audience: String,
    algorithms: Vec<String>,
    jwks_file: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
}

/// When an append counts as stored (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledged once the record is in the shared mapping: survives kill -9.
    Os,
    /// Acknowledged after a group fdatasync: survives power loss.
    Fsync,
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Durability::Os => "os",
            Durability::Fsync => "fsync",
        })
    }
}

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub listen: SocketAddr,
    /// Resolved shard count (never 0).
    pub shards: usize,
    pub body_bytes_max: usize,
    pub header_bytes_max: usize,
    pub headers_count_max: usize,
    pub header_timeout_ms: u64,
    pub body_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub connections_max: usize,
    pub drain_timeout_ms: u64,
    // --- TLS and per-IP limit (issue 4) ---
    /// Open connections one client address may hold over all shards (IPv6: per /64);
    /// 0 = no limit.
    pub connections_per_ip_max: usize,
    /// `None`: no TLS listener.
    pub tls: Option<TlsConfig>,
    /// PROXY protocol on the plaintext listener (issue 5).
    pub proxy: ProxyConfig,
    /// Once every shard ring runs, refuse `io_uring_setup` and `io_uring_register` to the
    /// whole process with a seccomp filter (`src/lockdown.rs`); a failure is logged, not fatal.
    pub io_uring_lockdown: bool,
}

/// The PROXY protocol on one listener (docs/SECURITY.md § PROXY protocol): connections
/// from `trusted_cidrs` must begin with a header of `versions`, whose source address
/// replaces theirs; a header from any other address is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    /// `None`: off (`proxy_protocol = "off"`, the default).
    pub versions: Option<Versions>,
    /// The balancers' addresses; never empty when `versions` is set.
    pub trusted_cidrs: Vec<Cidr>,
}

impl ProxyConfig {
    /// The two keys as `sluice check-config` prints them.
    fn to_toml(&self) -> String {
        let versions = self.versions.map_or("off", Versions::as_str);
        let cidrs: Vec<String> = self.trusted_cidrs.iter().map(|cidr| format!("\"{cidr}\"")).collect();
        format!("proxy_protocol = \"{versions}\"\nproxy_trusted_cidrs = [{}]\n", cidrs.join(", "))
    }
}

/// Validates a listener's `proxy_protocol` and `proxy_trusted_cidrs` (`keys` names them).
fn proxy_config(
    protocol: Option<String>,
    cidrs: Option<Vec<String>>,
    keys: (&'static str, &'static str),
) -> Result<ProxyConfig, ConfigError> {
    let versions = match protocol.as_deref().unwrap_or("off") {
        "off" => None,
        "v1" => Some(Versions::V1),
        "v2" => Some(Versions::V2),
        "any" => Some(Versions::Any),
        other => return Err(invalid(keys.0, format!("{other:?} is not one of \"off\", \"v1\", \"v2\", \"any\""))),
    };
    let cidrs = cidrs.unwrap_or_default();
    if cidrs.len() > PROXY_TRUSTED_CIDRS_MAX {
        return Err(invalid(keys.1, format!("at most {PROXY_TRUSTED_CIDRS_MAX} blocks")));
    }
    let trusted_cidrs =
        cidrs.iter().map(|text| text.parse::<Cidr>().map_err(|message| invalid(keys.1, message))).collect::<Result<Vec<_>, _>>()?;
    if let Some(versions) = versions
        && trusted_cidrs.is_empty()
    {
        return Err(invalid(
            keys.1,
            format!("must list the load balancers' addresses when {} = \"{}\" (no source would be trusted)", keys.0, versions.as_str()),
        ));
    }
    Ok(ProxyConfig { versions, trusted_cidrs })
}

/// Whether a TLS client must present a certificate (only with a client CA bundle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client CA bundle: client certificates are not asked for.
    Off,
    /// A certificate is asked for and verified if sent; clients without one are let in.
    Optional,
    /// A handshake without a valid client certificate fails.
    Required,
}

impl fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientAuth::Off => "off",
            ClientAuth::Optional => "optional",
            ClientAuth::Required => "required",
        })
    }
}

/// The TLS listener and the files its material is loaded (and reloaded) from. Paths are
/// resolved against the configuration file's directory.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    /// Certificate chain, PEM, leaf first.
    pub cert_file: PathBuf,
    /// PKCS#8, SEC1 or PKCS#1 private key, PEM.
    pub key_file: PathBuf,
    /// CA bundle (PEM) client certificates are verified against.
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
    /// Certificate revocation lists, PEM or DER.
    pub crl_files: Vec<PathBuf>,
    /// PROXY protocol on the TLS listener: the header comes before the ClientHello.
    pub proxy: ProxyConfig,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    pub partitions: u32,
    pub durability: Durability,
    pub segment_bytes: u64,
    pub retention_ms: u64,
    /// Per partition; 0 = unlimited.
    pub retention_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct DedupConfig {
    pub window_ms: u64,
    pub ids_per_partition_max: usize,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `None`: use (and create if missing) the development key ring in the data dir.
    pub keys_file: Option<PathBuf>,
    pub timestamp_tolerance_secs: u64,
    /// `X-Request-Id` / `webhook-id` values remembered at most (across shards).
    pub request_ids_max: usize,
    /// Bytes of remembered answers and bookkeeping at most.
    pub request_id_memory_bytes_max: usize,
    /// Bytes the quarantine directory may hold; 0 disables the quarantine.
    pub quarantine_bytes_max: u64,
    /// `[auth.jwt]`: bearer tokens are accepted only when issuers are configured.
    pub jwt: Option<crate::perimeter::jwt::JwtPolicy>,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

/// Validates `[ingest.tls]`; the files themselves are read by `tls::material`.
fn tls_config(raw: RawTls, plain: SocketAddr, relative: &dyn Fn(PathBuf) -> PathBuf) -> Result<TlsConfig, ConfigError> {
    let listen = parse_addr("ingest.tls.listen", raw.listen.as_deref().unwrap_or(TLS_LISTEN_DEFAULT))?;
    if listen.port() != 0 && listen == plain {
        return Err(invalid("ingest.tls.listen", format!("{listen} is also ingest.listen; the TLS listener needs its own port")));
    }
    let cert_file = raw.cert_file.ok_or_else(|| invalid("ingest.tls.cert_file", "is required with [ingest.tls]"))?;
    let key_file = raw.key_file.ok_or_else(|| invalid("ingest.tls.key_file", "is required with [ingest.tls]"))?;
    let client_ca_file = raw.client_ca_file.map(relative);
    let client_auth = match (raw.client_auth.as_deref(), &client_ca_file) {
        (None, None) => ClientAuth::Off,
        (None | Some("required"), Some(_)) => ClientAuth::Required,
        (Some("optional"), Some(_)) => ClientAuth::Optional,
        (Some("required" | "optional"), None) => {
            return Err(invalid("ingest.tls.client_auth", "needs ingest.tls.client_ca_file to verify client certificates against"));
        }
        (Some(other), _) => return Err(invalid("ingest.tls.client_auth", format!("{other:?} is neither \"required\" nor \"optional\""))),
    };
    let crl_files: Vec<PathBuf> = raw.crl_files.unwrap_or_default().into_iter().map(relative).collect();
    if !crl_files.is_empty() && client_ca_file.is_none() {
        return Err(invalid("ingest.tls.crl_files", "revocation lists need ingest.tls.client_ca_file"));
    }
    if crl_files.len() > TLS_CRL_FILES_MAX {
        return Err(invalid("ingest.tls.crl_files", format!("at most {TLS_CRL_FILES_MAX} files")));
    }
    let proxy = proxy_config(raw.proxy_protocol, raw.proxy_trusted_cidrs, ("ingest.tls.proxy_protocol", "ingest.tls.proxy_trusted_cidrs"))?;
    Ok(TlsConfig { listen, cert_file: relative(cert_file), key_file: relative(key_file), client_ca_file, client_auth, crl_files, proxy })
}

impl TlsConfig {
    /// The `[ingest.tls]` table as `sluice check-config` prints it.
    pub fn to_toml(&self) -> String {
        let quoted = |path: &Path| format!("{:?}", path.display().to_string());
        let mut out = format!(
            "\n[ingest.tls]\nlisten = \"{}\"\ncert_file = {}\nkey_file = {}\n",
            self.listen,
            quoted(&self.cert_file),
            quoted(&self.key_file)
        );
        if let Some(ca) = &self.client_ca_file {
            out.push_str(&format!("client_ca_file = {}\nclient_auth = \"{}\"\n", quoted(ca), self.client_auth));
        }
        if !self.crl_files.is_empty() {
            let list: Vec<String> = self.crl_files.iter().map(|path| quoted(path)).collect();
            out.push_str(&format!("crl_files = [{}]\n", list.join(", ")));
        }
        out.push_str(&self.proxy.to_toml());
        out
    }
}

/// The effective configuration after defaults and validation.
#[derive(Debug, Clone)]
pub struct Config {
    pub ingest: IngestConfig,
    pub storage: StorageConfig,
    pub dedup: DedupConfig,
    pub auth: AuthConfig,
    pub admin: AdminConfig,
}

fn jwt_policy(raw: RawJwt, relative: &dyn Fn(PathBuf) -> PathBuf) -> Result<crate::perimeter::jwt::JwtPolicy, ConfigError> {
    let mut issuers = Vec::with_capacity(raw.issuers.len());
    for issuer in raw.issuers {
        let mut algorithms = Vec::with_capacity(issuer.algorithms.len());
        for name in &issuer.algorithms {
            let algorithm = crate::perimeter::jwt::Algorithm::from_name(name)
                .ok_or_else(|| invalid("auth.jwt.issuers.algorithms", format!("{name:?} is not one of \"RS256\", \"ES256\", \"EdDSA\"")))?;
            algorithms.push(algorithm);
        }
        let jwks_file = relative(issuer.jwks_file);
        issuers.push(crate::perimeter::jwt::IssuerPolicy { issuer: issuer.issuer, audience: issuer.audience, algorithms, jwks_file });
    }
    let leeway_secs = raw.leeway_secs.unwrap_or(JWT_LEEWAY_SECS_DEFAULT);
    crate::perimeter::jwt::JwtPolicy::new(issuers, leeway_secs).map_err(|error| invalid("auth.jwt", error.to_string()))
}

fn parse_addr(key: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| invalid(key, format!("{text:?} is not an IP:port address")))
}

fn positive<T: PartialOrd + Default + Copy>(key: &'static str, value: T) -> Result<T, ConfigError> {
    if value > T::default() { Ok(value) } else { Err(invalid(key, "must be greater than 0")) }
}

impl Config {
    /// Embedded defaults: what `sluice serve` runs without `--config`.
    pub fn defaults() -> Config {
        Self::from_raw(RawConfig::default(), None).expect("embedded defaults are valid")
    }

    /// Reads and validates a TOML file. Relative paths inside it (data_dir, keys_file)
    /// are taken relative to the file's directory, so a config works from any cwd.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    /// Validates TOML text read from `path` (used only for messages and relative paths).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|error| ConfigError::Parse { path: path.to_owned(), message: error.to_string() })?;
        Self::from_raw(raw, path.parent())
    }

    fn from_raw(raw: RawConfig, base: Option<&Path>) -> Result<Config, ConfigError> {
        let relative = |p: PathBuf| match base {
            Some(base) if p.is_relative() && !base.as_os_str().is_empty() => base.join(p),
            _ => p,
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards = match raw.ingest.shards.unwrap_or(0) {
            0 => cores,
            n => n,
        };
        if shards > 1024 {
            return Err(invalid("ingest.shards", format!("{shards} is more than 1024")));
        }
        let headers_count_max = raw.ingest.headers_count_max.unwrap_or(HEADERS_COUNT_MAX_DEFAULT);
        if !(1..=HEADERS_COUNT_MAX_CEILING).contains(&headers_count_max) {
            return Err(invalid("ingest.headers_count_max", format!("must be 1..={HEADERS_COUNT_MAX_CEILING}")));
        }
        let header_bytes_max = raw.ingest.header_bytes_max.unwrap_or(HEADER_BYTES_MAX_DEFAULT);
        if !(1024..=1024 * 1024).contains(&header_bytes_max) {
            return Err(invalid("ingest.header_bytes_max", "must be 1 KiB..=1 MiB"));
        }
        let body_bytes_max = raw.ingest.body_bytes_max.unwrap_or(BODY_BYTES_MAX_DEFAULT);
        if !(1024..=64 * 1024 * 1024).contains(&body_bytes_max) {
            return Err(invalid("ingest.body_bytes_max", "must be 1 KiB..=64 MiB"));
        }
        let mut ingest = IngestConfig {
            listen: parse_addr("ingest.listen", raw.ingest.listen.as_deref().unwrap_or("127.0.0.1:8080"))?,
            shards,
            body_bytes_max,
            header_bytes_max,
            headers_count_max,
            header_timeout_ms: positive("ingest.header_timeout_ms", raw.ingest.header_timeout_ms.unwrap_or(HEADER_TIMEOUT_MS_DEFAULT))?,
            body_timeout_ms: positive("ingest.body_timeout_ms", raw.ingest.body_timeout_ms.unwrap_or(BODY_TIMEOUT_MS_DEFAULT))?,
            idle_timeout_ms: positive("ingest.idle_timeout_ms", raw.ingest.idle_timeout_ms.unwrap_or(IDLE_TIMEOUT_MS_DEFAULT))?,
            connections_max: positive("ingest.connections_max", raw.ingest.connections_max.unwrap_or(CONNECTIONS_PER_SHARD_MAX_DEFAULT))?,
            drain_timeout_ms: raw.ingest.drain_timeout_ms.unwrap_or(DRAIN_TIMEOUT_MS_DEFAULT),
            connections_per_ip_max: raw.ingest.connections_per_ip_max.unwrap_or(CONNECTIONS_PER_IP_MAX_DEFAULT),
            tls: None,
            proxy: proxy_config(
                raw.ingest.proxy_protocol,
                raw.ingest.proxy_trusted_cidrs,
                ("ingest.proxy_protocol", "ingest.proxy_trusted_cidrs"),
            )?,
            io_uring_lockdown: raw.ingest.io_uring_lockdown.unwrap_or(IO_URING_LOCKDOWN_DEFAULT),
        };
        if let Some(tls) = raw.ingest.tls {
            ingest.tls = Some(tls_config(tls, ingest.listen, &relative)?);
        }
        let partitions = raw.storage.partitions.unwrap_or(PARTITIONS_DEFAULT);
        if !(1..=PARTITIONS_MAX).contains(&partitions) {
            return Err(invalid("storage.partitions", format!("must be 1..={PARTITIONS_MAX}")));
        }
        let durability = match raw.storage.durability.as_deref().unwrap_or("os") {
            "os" => Durability::Os,
            "fsync" => Durability::Fsync,
            other => return Err(invalid("storage.durability", format!("{other:?} is neither \"os\" nor \"fsync\""))),
        };
        let segment_bytes = raw.storage.segment_bytes.unwrap_or(SEGMENT_BYTES_DEFAULT);
        let record_room = 2 * (body_bytes_max as u64) + 4096;
        if segment_bytes < SEGMENT_BYTES_MIN.max(record_room) || segment_bytes > 1 << 32 {
            return Err(invalid(
                "storage.segment_bytes",
                format!("must be at least {} (twice ingest.body_bytes_max) and at most 4 GiB", SEGMENT_BYTES_MIN.max(record_room)),
            ));
        }
        let retention_hours = positive("storage.retention_hours", raw.storage.retention_hours.unwrap_or(RETENTION_HOURS_DEFAULT))?;
        let storage = StorageConfig {
            data_dir: relative(raw.storage.data_dir.unwrap_or_else(|| PathBuf::from("./sluice-data"))),
            partitions,
            durability,
            segment_bytes,
            retention_ms: retention_hours.saturating_mul(3_600_000),
            retention_bytes: raw.storage.retention_bytes.unwrap_or(RETENTION_BYTES_DEFAULT),
        };
        if storage.retention_bytes != 0 && storage.retention_bytes < 2 * segment_bytes {
            return Err(invalid("storage.retention_bytes", "must be 0 (unlimited) or at least two segments"));
        }
        let dedup = DedupConfig {
            window_ms: raw.dedup.window_hours.map_or(storage.retention_ms, |h| h.saturating_mul(3_600_000)),
            ids_per_partition_max: positive(
                "dedup.ids_per_partition_max",
                raw.dedup.ids_per_partition_max.unwrap_or(DEDUP_IDS_PER_PARTITION_MAX_DEFAULT),
            )?,
        };
        if dedup.window_ms > storage.retention_ms {
            return Err(invalid("dedup.window_hours", "cannot exceed storage.retention_hours: ids are rebuilt from the log"));
        }
        let auth = AuthConfig {
            keys_file: raw.auth.keys_file.map(relative),
            timestamp_tolerance_secs: positive(
                "auth.timestamp_tolerance_secs",
                raw.auth.timestamp_tolerance_secs.unwrap_or(TIMESTAMP_TOLERANCE_SECS_DEFAULT),
            )?,
            request_ids_max: positive("auth.request_ids_max", raw.auth.request_ids_max.unwrap_or(REQUEST_IDS_MAX_DEFAULT))?,
            request_id_memory_bytes_max: positive(
                "auth.request_id_memory_bytes_max",
                raw.auth.request_id_memory_bytes_max.unwrap_or(REQUEST_ID_MEMORY_BYTES_MAX_DEFAULT),
            )?,
            quarantine_bytes_max: raw.auth.quarantine_bytes_max.unwrap_or(QUARANTINE_BYTES_MAX_DEFAULT),
            jwt: match raw.auth.jwt {
                None => None,
                Some(jwt) => Some(jwt_policy(jwt, &relative)?),
            },
        };
        let admin = AdminConfig { listen: parse_addr("admin.listen", raw.admin.listen.as_deref().unwrap_or("127.0.0.1:9090"))? };
        Ok(Config { ingest, storage, dedup, auth, admin })
    }

    /// The key ring file in force: the configured one, or the development ring.
    pub fn keys_path(&self) -> PathBuf {
        match &self.auth.keys_file {
            Some(path) => path.clone(),
            None => self.storage.data_dir.join("dev-keys.toml"),
        }
    }

    /// The effective configuration as TOML, as `sluice check-config` prints it.
    pub fn to_toml(&self) -> String {
        let tls = self.ingest.tls.as_ref().map(TlsConfig::to_toml).unwrap_or_default();
        let keys = match &self.auth.keys_file {
            Some(path) => format!("keys_file = {:?}", path.display().to_string()),
            None => format!("# keys_file not set: development key ring {:?}", self.keys_path().display().to_string()),
        };
        format!(
            "[ingest]\nlisten = \"{}\"\nshards = {}\nbody_bytes_max = {}\nheader_bytes_max = {}\nheaders_count_max = {}\n\
             header_timeout_ms = {}\nbody_timeout_ms = {}\nidle_timeout_ms = {}\nconnections_max = {}\ndrain_timeout_ms = {}\n\
             connections_per_ip_max = {}\nio_uring_lockdown = {}\n{}\n\
             [storage]\ndata_dir = {:?}\npartitions = {}\ndurability = \"{}\"\nsegment_bytes = {}\nretention_hours = {}\nretention_bytes = {}\n\n\
             [dedup]\nwindow_hours = {}\nids_per_partition_max = {}\n\n\
             [auth]\n{}\ntimestamp_tolerance_secs = {}\nrequest_ids_max = {}\nrequest_id_memory_bytes_max = {}\nquarantine_bytes_max = {}\n\n[admin]\nlisten = \"{}\"\n",
            self.ingest.listen,
            self.ingest.shards,
            self.ingest.body_bytes_max,
            self.ingest.header_bytes_max,
            self.ingest.headers_count_max,
            self.ingest.header_timeout_ms,
            self.ingest.body_timeout_ms,
            self.ingest.idle_timeout_ms,
            self.ingest.connections_max,
            self.ingest.drain_timeout_ms,
            self.ingest.connections_per_ip_max,
            self.ingest.io_uring_lockdown,
            self.ingest.proxy.to_toml(),
            self.storage.data_dir.display().to_string(),
            self.storage.partitions,
            self.storage.durability,
            self.storage.segment_bytes,
            self.storage.retention_ms / 3_600_000,
            self.storage.retention_bytes,
            self.dedup.window_ms / 3_600_000,
            self.dedup.ids_per_partition_max,
            keys,
            self.auth.timestamp_tolerance_secs,
            self.auth.request_ids_max,
            self.auth.request_id_memory_bytes_max,
            self.auth.quarantine_bytes_max,
            self.admin.listen,
        ) + &tls
            + &self.jwt_toml()
    }

    fn jwt_toml(&self) -> String {
        let Some(jwt) = &self.auth.jwt else { return String::new() };
        let mut out = format!("\n[auth.jwt]\nleeway_secs = {}\n", jwt.leeway_secs());
        for issuer in jwt.issuers() {
            let algorithms: Vec<String> = issuer.algorithms.iter().map(|a| format!("{:?}", a.name())).collect();
            out.push_str(&format!(
                "\n[[auth.jwt.issuers]]\nissuer = {:?}\naudience = {:?}\nalgorithms = [{}]\njwks_file = {:?}\n",
                issuer.issuer,
                issuer.audience,
                algorithms.join(", "),
                issuer.jwks_file.display().to_string()
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_spec() {
        let config = Config::defaults();
        assert_eq!(config.ingest.listen.to_string(), "127.0.0.1:8080");
        assert!(config.ingest.shards >= 1);
        assert_eq!(config.storage.partitions, 64);
        assert_eq!(config.storage.durability, Durability::Os);
        assert_eq!(config.ingest.body_bytes_max, 512 * 1024);
        assert_eq!(config.auth.timestamp_tolerance_secs, 300);
        assert_eq!(config.admin.listen.to_string(), "127.0.0.1:9090");
        assert_eq!(config.dedup.window_ms, config.storage.retention_ms);
    }

    #[test]
    fn round_trips_through_check_config_output() {
        let config = Config::parse("[storage]\ndurability = \"fsync\"\npartitions = 8\n", Path::new("x.toml")).unwrap();
        let again = Config::parse(&config.to_toml(), Path::new("y.toml")).unwrap();
        assert_eq!(again.storage.durability, Durability::Fsync);
        assert_eq!(again.storage.partitions, 8);
        assert_eq!(again.ingest.shards, config.ingest.shards);
    }

    #[test]
    fn io_uring_lockdown_is_on_by_default_and_round_trips() {
        assert!(Config::defaults().ingest.io_uring_lockdown);
        assert!(Config::defaults().to_toml().contains("\nio_uring_lockdown = true\n"));
        let config = Config::parse("[ingest]\nio_uring_lockdown = false\n", Path::new("x.toml")).unwrap();
        assert!(!config.ingest.io_uring_lockdown);
        assert!(config.to_toml().contains("\nio_uring_lockdown = false\n"));
        assert!(!Config::parse(&config.to_toml(), Path::new("y.toml")).unwrap().ingest.io_uring_lockdown);
        let error = Config::parse("[ingest]\nio_uring_lockdown = \"yes\"\n", Path::new("x.toml")).unwrap_err().to_string();
        assert!(error.contains("io_uring_lockdown"), "{error}");
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        for (text, needle) in [
            ("[ingest]\nlisten = \"nowhere\"\n", "ingest.listen"),
            ("[storage]\ndurability = \"disk\"\n", "storage.durability"),
            ("[storage]\npartitions = 0\n", "storage.partitions"),
            ("[ingest]\nlistne = \"127.0.0.1:1\"\n", "unknown field"),
            ("[dedup]\nwindow_hours = 1000\n", "dedup.window_hours"),
        ] {
            let error = Config::parse(text, Path::new("c.toml")).unwrap_err().to_string();
            assert!(error.contains(needle), "{text:?}: {error}");
        }
    }

    #[test]
    fn ingest_tls_is_validated_and_its_paths_follow_the_config_file() {
        let text = "[ingest]\nconnections_per_ip_max = 8\n[ingest.tls]\ncert_file = \"s.pem\"\nkey_file = \"/k/s.key\"\n\
                    client_ca_file = \"ca.pem\"\ncrl_files = [\"a.crl\"]\n";
        let config = Config::parse(text, Path::new("/etc/sluice/s.toml")).unwrap();
        let tls = config.ingest.tls.as_ref().expect("tls");
        assert_eq!(tls.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(tls.cert_file, Path::new("/etc/sluice/s.pem"));
        assert_eq!(tls.key_file, Path::new("/k/s.key"));
        assert_eq!(tls.client_auth, ClientAuth::Required, "a CA bundle means required by default");
        assert_eq!(tls.crl_files, vec![PathBuf::from("/etc/sluice/a.crl")]);
        assert_eq!(config.ingest.connections_per_ip_max, 8);
        let again = Config::parse(&config.to_toml(), Path::new("/other/y.toml")).unwrap();
        assert_eq!(again.ingest.tls.as_ref().expect("tls").crl_files, tls.crl_files, "check-config output round-trips");
        assert_eq!(Config::defaults().ingest.connections_per_ip_max, CONNECTIONS_PER_IP_MAX_DEFAULT);
        assert!(Config::defaults().ingest.tls.is_none());
        for (text, needle) in [
            ("[ingest.tls]\nkey_file = \"k\"\n", "ingest.tls.cert_file"),
            ("[ingest.tls]\ncert_file = \"c\"\n", "ingest.tls.key_file"),
            ("[ingest.tls]\ncert_file = \"c\"\nkey_file = \"k\"\nclient_auth = \"required\"\n", "client_ca_file"),
            (
                "[ingest.tls]\ncert_file = \"c\"\nkey_file = \"k\"\nclient_ca_file = \"a\"\nclient_auth = \"maybe\"\n",
                "ingest.tls.client_auth",
            ),
            ("[ingest.tls]\ncert_file = \"c\"\nkey_file = \"k\"\ncrl_files = [\"x\"]\n", "ingest.tls.crl_files"),
            (
                "[ingest]\nlisten = \"127.0.0.1:9\"\n[ingest.tls]\nlisten = \"127.0.0.1:9\"\ncert_file = \"c\"\nkey_file = \"k\"\n",
                "own port",
            ),
            ("[ingest.tls]\ncert_file = \"c\"\nkey_file = \"k\"\nciphers = \"all\"\n", "unknown field"),
        ] {
            let error = Config::parse(text, Path::new("c.toml")).unwrap_err().to_string();
            assert!(error.contains(needle), "{text:?}: {error}");
        }
    }

    #[test]
    fn proxy_protocol_keys_are_per_listener_validated_and_round_trip() {
        let defaults = Config::defaults();
        assert_eq!(defaults.ingest.proxy, ProxyConfig::default(), "off by default");
        let text = "[ingest]\nproxy_protocol = \"v2\"\nproxy_trusted_cidrs = [\"10.0.0.0/8\", \"2001:db8::/32\", \"192.0.2.1\"]\n\
                    [ingest.tls]\ncert_file = \"c\"\nkey_file = \"k\"\nproxy_protocol = \"any\"\nproxy_trusted_cidrs = [\"172.16.0.0/12\"]\n";
        let config = Config::parse(text, Path::new("c.toml")).unwrap();
        assert_eq!(config.ingest.proxy.versions, Some(Versions::V2));
        assert_eq!(config.ingest.proxy.trusted_cidrs.len(), 3);
        let tls = config.ingest.tls.as_ref().expect("tls");
        assert_eq!(tls.proxy.versions, Some(Versions::Any));
        let again = Config::parse(&config.to_toml(), Path::new("y.toml")).unwrap();
        assert_eq!(again.ingest.proxy, config.ingest.proxy, "check-config output round-trips");
        assert_eq!(again.ingest.tls.as_ref().expect("tls").proxy, tls.proxy);
        assert!(config.to_toml().contains("proxy_trusted_cidrs = [\"10.0.0.0/8\", \"2001:db8::/32\", \"192.0.2.1/32\"]"));
        // The TLS listener is independent: off there while on for plaintext.
        let plain_only = "[ingest]\nproxy_protocol = \"v1\"\nproxy_trusted_cidrs = [\"10.0.0.0/8\"]\n[ingest.tls]\ncert_file = \"c\"\nkey_file = \"k\"\n";
        let config = Config::parse(plain_only, Path::new("c.toml")).unwrap();
        assert_eq!(config.ingest.tls.as_ref().expect("tls").proxy.versions, None);
        let again = Config::parse(&config.to_toml(), Path::new("y.toml")).unwrap();
        assert_eq!(again.ingest.proxy.versions, Some(Versions::V1));
        for (text, needle) in [
            ("[ingest]\nproxy_protocol = \"v3\"\n", "ingest.proxy_protocol"),
            ("[ingest]\nproxy_protocol = \"v1\"\n", "ingest.proxy_trusted_cidrs"),
            ("[ingest]\nproxy_protocol = \"any\"\nproxy_trusted_cidrs = []\n", "ingest.proxy_trusted_cidrs"),
            ("[ingest]\nproxy_protocol = \"v2\"\nproxy_trusted_cidrs = [\"10.0.0.0/33\"]\n", "ingest.proxy_trusted_cidrs"),
            ("[ingest]\nproxy_trusted_cidrs = [\"balancer\"]\n", "ingest.proxy_trusted_cidrs"),
            ("[ingest.tls]\ncert_file = \"c\"\nkey_file = \"k\"\nproxy_protocol = \"v2\"\n", "ingest.tls.proxy_trusted_cidrs"),
            ("[ingest.tls]\ncert_file = \"c\"\nkey_file = \"k\"\nproxy_protocol = \"on\"\n", "ingest.tls.proxy_protocol"),
        ] {
            let error = Config::parse(text, Path::new("c.toml")).unwrap_err().to_string();
            assert!(error.contains(needle), "{text:?}: {error}");
        }
        let many: Vec<String> = (0..=PROXY_TRUSTED_CIDRS_MAX).map(|i| format!("\"10.0.{i}.0/24\"")).collect();
        let text = format!("[ingest]\nproxy_protocol = \"v1\"\nproxy_trusted_cidrs = [{}]\n", many.join(","));
        assert!(Config::parse(&text, Path::new("c.toml")).unwrap_err().to_string().contains("at most"));
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let config =
            Config::parse("[storage]\ndata_dir = \"d\"\n[auth]\nkeys_file = \"k.toml\"\n", Path::new("/etc/sluice/s.toml")).unwrap();
        assert_eq!(config.storage.data_dir, Path::new("/etc/sluice/d"));
        assert_eq!(config.keys_path(), Path::new("/etc/sluice/k.toml"));
    }
}
