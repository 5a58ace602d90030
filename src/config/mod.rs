//! Configuration: the file as written (`raw.rs`, every key optional, unknown keys are
//! errors), validated into the effective configuration ([`Config`], `validate.rs`) the
//! rest of sluice uses, and rendered back as TOML by `check-config` (`render.rs`).
//! `reload.rs` puts a changed file in force while serving.

mod bridge;
pub mod limits;
pub mod policy;
mod raw;
pub mod reload;
mod render;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::net::proxy::Versions;
use crate::perimeter::partners::Cidr;
pub use bridge::{BridgeMode, KafkaBridgeConfig};
use raw::RawConfig;

/// A configuration that cannot be used; `sluice` exits 2 with this text.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key {key}: {message}")]
    Invalid { key: std::borrow::Cow<'static, str>, message: String },
}

fn invalid(key: impl Into<std::borrow::Cow<'static, str>>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), message: message.into() }
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
    /// whole process with a seccomp filter (`src/platform/lockdown.rs`); a failure is logged, not fatal.
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

/// The effective configuration after defaults and validation.
#[derive(Debug, Clone)]
pub struct Config {
    pub ingest: IngestConfig,
    pub storage: StorageConfig,
    pub dedup: DedupConfig,
    pub auth: AuthConfig,
    pub admin: AdminConfig,
    /// The topics and their routing (`[[topics]]`, or the one topic `events`).
    pub topics: std::sync::Arc<crate::topics::Topology>,
    pub consume: ConsumeConfig,
    /// `[bridge.kafka]`: read by `sluice bridge kafka` only.
    pub bridge_kafka: Option<KafkaBridgeConfig>,
    /// `[[policies]]`: field policies and geo lists (SPEC §9).
    pub policies: Vec<crate::policy::Policy>,
    /// `[gates]`: the KYC/RG gates.
    pub gates: Option<crate::policy::gates::GateRules>,
    /// `[dlq]`: the dead-letter queue's bounds.
    pub dlq: policy::DlqConfig,
    /// `[limits]`: the memory budget and the rate limits (SPEC §7).
    pub limits: limits::LimitsConfig,
}

/// `[consume]`: the consumer side.
#[derive(Debug, Clone)]
pub struct ConsumeConfig {
    /// Bytes the read log keeps over every shard before its oldest hour goes.
    pub read_log_bytes_max: u64,
}

/// The configuration file of a node set up by `systemd/install.sh`.
pub const SYSTEM_CONFIG_FILE: &str = "/etc/sluice/sluice.toml";

/// The configuration file a command reads: the one given (`--config`, or
/// `SLUICE_CONFIG`, which clap folds into it), else [`SYSTEM_CONFIG_FILE`] when it
/// exists, else none (the embedded defaults).
pub fn config_file(given: Option<PathBuf>) -> Option<PathBuf> {
    given.or_else(|| Some(PathBuf::from(SYSTEM_CONFIG_FILE)).filter(|path| path.exists()))
}

impl Config {
    /// The configuration in `file`, or the embedded defaults without one.
    pub fn load_or_defaults(file: Option<&Path>) -> Result<Config, ConfigError> {
        match file {
            Some(path) => Config::load(path),
            None => Ok(Config::defaults()),
        }
    }

    /// Embedded defaults: what `sluice serve` runs without `--config`.
    pub fn defaults() -> Config {
        validate::from_raw(RawConfig::default(), None).expect("embedded defaults are valid")
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
        validate::from_raw(raw, path.parent())
    }

    /// The key ring file in force: the configured one, or the development ring.
    pub fn keys_path(&self) -> PathBuf {
        match &self.auth.keys_file {
            Some(path) => path.clone(),
            None => self.storage.data_dir.join("dev-keys.toml"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::*;

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
    fn policies_gates_dlq_and_stream_versions_round_trip_and_are_checked() {
        let text = "[[topics]]\nname = \"wallet\"\nevent_types = [\"deposit\", \"kyc_result\", \"bonus_paid\"]\nversions = 3\n\n\
                    [[topics]]\nname = \"events\"\nevent_types = [\"*\"]\n\n\
                    [[policies]]\nname = \"pii\"\ntopics = [\"wallet\"]\nblocked_fields = [\"payload.ssn\"]\nrequired_fields = [\"payload.amount\"]\ngeo_allow = [\"TR\"]\nmode = \"full\"\n\n\
                    [gates]\nkyc_event_types = [\"kyc_result\"]\nrg_event_types = [\"kyc_result\"]\nrg_ok_values = [\"ok\", 1]\n\n\
                    [[gates.rewards]]\nevent_types = [\"bonus_paid\"]\nkyc_level_min = 2\nrg_ok_required = true\n\n\
                    [dlq]\nbytes_max = 1048576\nretention_hours = 48\n";
        let config = Config::parse(text, Path::new("x.toml")).unwrap();
        let wallet = config.topics.by_name(b"wallet").unwrap();
        assert_eq!(config.topics.topic(config.topics.stream(wallet, 3).unwrap()).name.as_ref(), "wallet.v3");
        assert_eq!(config.dlq.retention_ms, 48 * 3_600_000);
        let again = Config::parse(&config.to_toml(), Path::new("y.toml")).unwrap();
        assert_eq!(again.to_toml(), config.to_toml());
        assert_eq!(again.policies, config.policies);
        assert_eq!(again.gates, config.gates);
        assert_eq!(again.topics.topics().len(), config.topics.topics().len());
        let refused = |extra: &str| Config::parse(&format!("{text}{extra}"), Path::new("x.toml")).unwrap_err().to_string();
        assert!(refused("\n[[policies]]\ntopics = [\"nope\"]\n").contains("policies[1].topics"));
        assert!(refused("\n[[policies]]\nblocked_fields = [\"a..b\"]\n").contains("blocked_fields"));
        assert!(refused("\n[[policies]]\ngeo_allow = [\"TR\"]\ngeo_deny = [\"tr\"]\n").contains("geo_deny"));
        let split = text
            .replace("[\"deposit\", \"kyc_result\", \"bonus_paid\"]", "[\"deposit\", \"bonus_paid\"]")
            .replace("[\"*\"]", "[\"*\"]\n\n[[topics]]\nname = \"kyc\"\nevent_types = [\"kyc_result\", \"rg_x\"]");
        let two =
            Config::parse(&split.replace("rg_event_types = [\"kyc_result\"]", "rg_event_types = [\"rg_x\", \"bet\"]"), Path::new("x.toml"))
                .unwrap_err();
        assert!(two.to_string().contains("one topic"), "{two}");
    }

    #[test]
    fn limits_and_optional_topics_round_trip() {
        let text = "[[topics]]\nname = \"telemetry\"\nevent_types = [\"page_view\"]\noptional = true\n\n\
                    [[topics]]\nname = \"events\"\nevent_types = [\"*\"]\n\n\
                    [limits]\nmemory_bytes_max = 67108864\n\n\
                    [[limits.rate]]\nper = \"ip\"\nmatch = \"10.0.0.0/8\"\nrate_per_sec = 300\nburst = 600\n\n\
                    [[limits.rate]]\nper = \"partner\"\nmatch = \"acme\"\nrate_per_sec = 2.5\n";
        let config = Config::parse(text, Path::new("x.toml")).unwrap();
        assert!(config.topics.topic(config.topics.by_name(b"telemetry").unwrap()).optional);
        assert!(!config.topics.topic(config.topics.by_name(b"events").unwrap()).optional);
        assert_eq!(config.limits.memory_bytes_max, 64 << 20);
        let printed = config.to_toml();
        assert!(printed.contains("optional = true") && printed.contains("match = \"10.0.0.0/8\""), "{printed}");
        let again = Config::parse(&printed, Path::new("y.toml")).unwrap();
        assert_eq!(again.limits, config.limits);
        assert_eq!(again.to_toml(), printed);
        let defaults = Config::defaults();
        assert!(defaults.limits.rate.is_empty(), "no rate limit by default (SPEC §7)");
        assert!(defaults.to_toml().contains("memory_bytes_max = 0  # a quarter of RAM"));
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
