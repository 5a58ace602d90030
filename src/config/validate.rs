//! From the file as written ([`RawConfig`]) to the effective [`Config`]: defaults, ranges
//! (every limit and ceiling from `constants.rs`, named in the message), and the checks
//! that relate keys to each other.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::raw::{RawAdmin, RawAuth, RawConfig, RawDedup, RawIngest, RawJwt, RawStorage, RawTls, RawTopic};
use super::{
    AdminConfig, AuthConfig, ClientAuth, Config, ConfigError, DedupConfig, Durability, IngestConfig, ProxyConfig, StorageConfig, TlsConfig,
    invalid,
};
use crate::constants::*;
use crate::net::proxy::Versions;
use crate::perimeter::partners::Cidr;

const MS_PER_HOUR: u64 = 3_600_000;

/// `bytes` as an operator writes it: `64 MiB`, `1 KiB`, `4 GiB`, else a plain number.
pub(super) fn size_text(bytes: u64) -> String {
    for (unit, name) in [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{} {name}", bytes / unit);
        }
    }
    bytes.to_string()
}

/// `value` if it lies in `min..=max`; otherwise names the range (sizes in KiB/MiB/GiB).
fn within_bytes<T: Into<u64> + Copy>(key: &'static str, value: T, min: T, max: T) -> Result<T, ConfigError> {
    if (min.into()..=max.into()).contains(&value.into()) {
        return Ok(value);
    }
    Err(invalid(key, format!("must be {}..={}", size_text(min.into()), size_text(max.into()))))
}

pub(super) fn from_raw(raw: RawConfig, base: Option<&Path>) -> Result<Config, ConfigError> {
    let relative = |path: PathBuf| match base {
        Some(base) if path.is_relative() && !base.as_os_str().is_empty() => base.join(path),
        _ => path,
    };
    let ingest = ingest_config(raw.ingest, &relative)?;
    let storage = storage_config(raw.storage, ingest.body_bytes_max, &relative)?;
    let dedup = dedup_config(raw.dedup, &storage)?;
    let auth = auth_config(raw.auth, &relative)?;
    let admin = admin_config(raw.admin, &ingest)?;
    let topics = std::sync::Arc::new(topics_config(raw.topics, &storage)?);
    let read_log_bytes_max = raw.consume.read_log_bytes_max.unwrap_or(READ_LOG_BYTES_MAX_DEFAULT);
    if read_log_bytes_max < 1 << 20 {
        return Err(invalid("consume.read_log_bytes_max", "must be at least 1 MiB"));
    }
    let consume = super::ConsumeConfig { read_log_bytes_max };
    let bridge_kafka = raw.bridge.kafka.map(|raw| super::bridge::kafka_bridge_config(raw, &topics)).transpose()?;
    let policies = super::policy::policies_config(raw.policies, &topics)?;
    let gates = super::policy::gates_config(raw.gates, &topics)?;
    let dlq = super::policy::dlq_config(raw.dlq)?;
    let limits = super::limits::limits_config(raw.limits, ingest.body_bytes_max)?;
    Ok(Config { ingest, storage, dedup, auth, admin, topics, consume, bridge_kafka, policies, gates, dlq, limits })
}

fn ingest_config(raw: RawIngest, relative: &dyn Fn(PathBuf) -> PathBuf) -> Result<IngestConfig, ConfigError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shards = match raw.shards.unwrap_or(0) {
        0 => cores,
        n if n > SHARDS_MAX => return Err(invalid("ingest.shards", format!("{n} is more than {SHARDS_MAX}"))),
        n => n,
    };
    let headers_count_max = raw.headers_count_max.unwrap_or(HEADERS_COUNT_MAX_DEFAULT);
    if !(1..=HEADERS_COUNT_MAX_CEILING).contains(&headers_count_max) {
        return Err(invalid("ingest.headers_count_max", format!("must be 1..={HEADERS_COUNT_MAX_CEILING}")));
    }
    let header_bytes_max = raw.header_bytes_max.unwrap_or(HEADER_BYTES_MAX_DEFAULT);
    within_bytes("ingest.header_bytes_max", header_bytes_max as u64, HEADER_BYTES_MAX_FLOOR as u64, HEADER_BYTES_MAX_CEILING as u64)?;
    let body_bytes_max = raw.body_bytes_max.unwrap_or(BODY_BYTES_MAX_DEFAULT);
    within_bytes("ingest.body_bytes_max", body_bytes_max as u64, BODY_BYTES_MAX_FLOOR as u64, BODY_BYTES_MAX_CEILING as u64)?;
    let listen = parse_addr("ingest.listen", raw.listen.as_deref().unwrap_or(INGEST_LISTEN_DEFAULT))?;
    let tls = match raw.tls {
        Some(tls) => Some(tls_config(tls, listen, relative)?),
        None => None,
    };
    Ok(IngestConfig {
        listen,
        shards,
        body_bytes_max,
        header_bytes_max,
        headers_count_max,
        header_timeout_ms: positive("ingest.header_timeout_ms", raw.header_timeout_ms.unwrap_or(HEADER_TIMEOUT_MS_DEFAULT))?,
        body_timeout_ms: positive("ingest.body_timeout_ms", raw.body_timeout_ms.unwrap_or(BODY_TIMEOUT_MS_DEFAULT))?,
        idle_timeout_ms: positive("ingest.idle_timeout_ms", raw.idle_timeout_ms.unwrap_or(IDLE_TIMEOUT_MS_DEFAULT))?,
        connections_max: positive("ingest.connections_max", raw.connections_max.unwrap_or(CONNECTIONS_PER_SHARD_MAX_DEFAULT))?,
        drain_timeout_ms: raw.drain_timeout_ms.unwrap_or(DRAIN_TIMEOUT_MS_DEFAULT),
        connections_per_ip_max: raw.connections_per_ip_max.unwrap_or(CONNECTIONS_PER_IP_MAX_DEFAULT),
        tls,
        proxy: proxy_config(raw.proxy_protocol, raw.proxy_trusted_cidrs, ("ingest.proxy_protocol", "ingest.proxy_trusted_cidrs"))?,
        io_uring_lockdown: raw.io_uring_lockdown.unwrap_or(IO_URING_LOCKDOWN_DEFAULT),
    })
}

fn storage_config(raw: RawStorage, body_bytes_max: usize, relative: &dyn Fn(PathBuf) -> PathBuf) -> Result<StorageConfig, ConfigError> {
    let partitions = raw.partitions.unwrap_or(PARTITIONS_DEFAULT);
    if !(1..=PARTITIONS_MAX).contains(&partitions) {
        return Err(invalid("storage.partitions", format!("must be 1..={PARTITIONS_MAX}")));
    }
    let durability = match raw.durability.as_deref().unwrap_or("os") {
        "os" => Durability::Os,
        "fsync" => Durability::Fsync,
        other => return Err(invalid("storage.durability", format!("{other:?} is neither \"os\" nor \"fsync\""))),
    };
    let segment_bytes = raw.segment_bytes.unwrap_or(SEGMENT_BYTES_DEFAULT);
    // A segment holds at least two records of the largest body, with their framing.
    let segment_bytes_min = SEGMENT_BYTES_MIN.max(2 * (body_bytes_max as u64) + 4096);
    if !(segment_bytes_min..=SEGMENT_BYTES_MAX).contains(&segment_bytes) {
        let (min, max) = (size_text(segment_bytes_min), size_text(SEGMENT_BYTES_MAX));
        return Err(invalid("storage.segment_bytes", format!("must be at least {min} (twice ingest.body_bytes_max) and at most {max}")));
    }
    let retention_hours = positive("storage.retention_hours", raw.retention_hours.unwrap_or(RETENTION_HOURS_DEFAULT))?;
    let storage = StorageConfig {
        data_dir: relative(raw.data_dir.unwrap_or_else(|| PathBuf::from(DATA_DIR_DEFAULT))),
        partitions,
        durability,
        segment_bytes,
        retention_ms: retention_hours.saturating_mul(MS_PER_HOUR),
        retention_bytes: raw.retention_bytes.unwrap_or(RETENTION_BYTES_DEFAULT),
    };
    if storage.retention_bytes != 0 && storage.retention_bytes < 2 * segment_bytes {
        return Err(invalid("storage.retention_bytes", "must be 0 (unlimited) or at least two segments"));
    }
    Ok(storage)
}

/// `[[topics]]`; none means the one topic `events` with `[storage]`'s partitions and
/// retention. A topic's partitions and retention default to `[storage]`'s.
fn topics_config(raw: Vec<RawTopic>, storage: &StorageConfig) -> Result<crate::topics::Topology, ConfigError> {
    use crate::topics::{Topic, Topology, valid_name};
    if raw.is_empty() {
        return Ok(Topology::single(storage.partitions, storage.retention_ms, storage.retention_bytes));
    }
    let mut topics = Vec::with_capacity(raw.len());
    let mut derived_topics = Vec::new();
    for (index, raw) in raw.into_iter().enumerate() {
        let key = |field: &str| format!("topics[{index}].{field}");
        let name = raw.name.ok_or_else(|| invalid(key("name"), "is required"))?;
        valid_name(&name).map_err(|reason| invalid(key("name"), format!("{name:?} {reason}")))?;
        let listed = raw.event_types.ok_or_else(|| invalid(key("event_types"), "is required: the event types routed here, or [\"*\"]"))?;
        if listed.is_empty() {
            return Err(invalid(key("event_types"), "is empty: list the event types routed here, or \"*\""));
        }
        let mut event_types: Vec<Box<str>> = Vec::new();
        let mut wildcard = false;
        for event_type in listed {
            if event_type == "*" {
                wildcard = true;
            } else if event_type.is_empty() || event_type.len() > EVENT_TYPE_BYTES_MAX {
                return Err(invalid(key("event_types"), format!("{event_type:?} must be 1..={EVENT_TYPE_BYTES_MAX} bytes")));
            } else if event_types.iter().any(|known| **known == *event_type) {
                return Err(invalid(key("event_types"), format!("{event_type:?} is listed twice")));
            } else {
                event_types.push(event_type.into_boxed_str());
            }
        }
        let partitions = raw.partitions.unwrap_or(storage.partitions);
        if !(1..=PARTITIONS_MAX).contains(&partitions) {
            return Err(invalid(key("partitions"), format!("must be 1..={PARTITIONS_MAX}")));
        }
        let retention_ms = match raw.retention_hours {
            Some(0) => return Err(invalid(key("retention_hours"), "must be positive")),
            Some(hours) => hours.saturating_mul(MS_PER_HOUR),
            None => storage.retention_ms,
        };
        let retention_bytes = raw.retention_bytes.unwrap_or(storage.retention_bytes);
        if retention_bytes != 0 && retention_bytes < 2 * storage.segment_bytes {
            return Err(invalid(key("retention_bytes"), "must be 0 (unlimited) or at least two segments"));
        }
        let optional = raw.optional.unwrap_or(false);
        let template = Topic {
            name: name.clone().into_boxed_str(),
            event_types: Vec::new(),
            wildcard: false,
            partitions,
            retention_ms,
            retention_bytes,
            base: 0,
            optional,
        };
        stream_versions(&template, raw.versions, &key("versions"), &mut derived_topics)?;
        topics.push(Topic {
            name: name.into_boxed_str(),
            event_types,
            wildcard,
            partitions,
            retention_ms,
            retention_bytes,
            base: 0,
            optional,
        });
    }
    topics.append(&mut derived_topics);
    Topology::new(topics, PARTITIONS_MAX).map_err(|error| invalid(error.key, error.reason))
}

/// The stream versions `versions = N` adds to a topic: `<name>.v2` … `<name>.vN`, each
/// like `topic` but taking no event type by routing.
fn stream_versions(
    topic: &crate::topics::Topic,
    versions: Option<u32>,
    key: &str,
    into: &mut Vec<crate::topics::Topic>,
) -> Result<(), ConfigError> {
    let versions = versions.unwrap_or(1);
    if !(1..=STREAM_VERSIONS_MAX).contains(&versions) {
        return Err(invalid(key.to_owned(), format!("must be 1..={STREAM_VERSIONS_MAX}")));
    }
    for version in 2..=versions {
        let derived = format!("{}.v{version}", topic.name);
        crate::topics::valid_name(&derived).map_err(|reason| invalid(key.to_owned(), format!("stream version {derived:?} {reason}")))?;
        into.push(crate::topics::Topic { name: derived.into_boxed_str(), ..topic.clone() });
    }
    Ok(())
}

fn dedup_config(raw: RawDedup, storage: &StorageConfig) -> Result<DedupConfig, ConfigError> {
    let dedup = DedupConfig {
        window_ms: raw.window_hours.map_or(storage.retention_ms, |hours| hours.saturating_mul(MS_PER_HOUR)),
        ids_per_partition_max: positive(
            "dedup.ids_per_partition_max",
            raw.ids_per_partition_max.unwrap_or(DEDUP_IDS_PER_PARTITION_MAX_DEFAULT),
        )?,
    };
    if dedup.window_ms > storage.retention_ms {
        return Err(invalid("dedup.window_hours", "cannot exceed storage.retention_hours: ids are rebuilt from the log"));
    }
    Ok(dedup)
}

fn auth_config(raw: RawAuth, relative: &dyn Fn(PathBuf) -> PathBuf) -> Result<AuthConfig, ConfigError> {
    Ok(AuthConfig {
        keys_file: raw.keys_file.map(relative),
        timestamp_tolerance_secs: positive(
            "auth.timestamp_tolerance_secs",
            raw.timestamp_tolerance_secs.unwrap_or(TIMESTAMP_TOLERANCE_SECS_DEFAULT),
        )?,
        request_ids_max: positive("auth.request_ids_max", raw.request_ids_max.unwrap_or(REQUEST_IDS_MAX_DEFAULT))?,
        request_id_memory_bytes_max: positive(
            "auth.request_id_memory_bytes_max",
            raw.request_id_memory_bytes_max.unwrap_or(REQUEST_ID_MEMORY_BYTES_MAX_DEFAULT),
        )?,
        quarantine_bytes_max: raw.quarantine_bytes_max.unwrap_or(QUARANTINE_BYTES_MAX_DEFAULT),
        jwt: match raw.jwt {
            None => None,
            Some(jwt) => Some(jwt_policy(jwt, relative)?),
        },
    })
}

/// `[admin]`: its listener must not be one of the ingest listeners (both would fail to
/// bind, or the admin plane would share a port with producers).
fn admin_config(raw: RawAdmin, ingest: &IngestConfig) -> Result<AdminConfig, ConfigError> {
    let listen = parse_addr("admin.listen", raw.listen.as_deref().unwrap_or(ADMIN_LISTEN_DEFAULT))?;
    let ingest_addresses =
        std::iter::once(("ingest.listen", ingest.listen)).chain(ingest.tls.as_ref().map(|tls| ("ingest.tls.listen", tls.listen)));
    for (key, address) in ingest_addresses {
        if listen.port() != 0 && listen == address {
            return Err(invalid("admin.listen", format!("{listen} is also {key}; the admin plane needs its own port")));
        }
    }
    Ok(AdminConfig { listen })
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
