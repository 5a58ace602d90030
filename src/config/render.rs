//! The effective configuration as TOML, as `sluice check-config` prints it; parsing the
//! output gives the same configuration back.

use std::path::Path;

use super::{Config, ProxyConfig, TlsConfig};
use crate::net::proxy::Versions;

impl ProxyConfig {
    /// The two keys as `sluice check-config` prints them.
    pub(super) fn to_toml(&self) -> String {
        let versions = self.versions.map_or("off", Versions::as_str);
        let cidrs: Vec<String> = self.trusted_cidrs.iter().map(|cidr| format!("\"{cidr}\"")).collect();
        format!("proxy_protocol = \"{versions}\"\nproxy_trusted_cidrs = [{}]\n", cidrs.join(", "))
    }
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

impl Config {
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
            + &format!("\n[consume]\nread_log_bytes_max = {}\n", self.consume.read_log_bytes_max)
            + &self.topics_toml()
            + &self.limits_toml()
            + &self.governance_toml()
            + &self.bridge_kafka.as_ref().map(super::KafkaBridgeConfig::to_toml).unwrap_or_default()
    }

    /// `[[topics]]` as in force (a node without any shows its one topic `events`).
    fn topics_toml(&self) -> String {
        let mut out = String::new();
        let topology = &self.topics;
        for (index, topic) in topology.topics().iter().enumerate() {
            // A stream version made by `versions = N` routes nothing: it is printed as the
            // `versions` of its base.
            if topic.event_types.is_empty() && !topic.wildcard {
                continue;
            }
            let mut types: Vec<String> = topic.event_types.iter().map(|t| format!("{t:?}")).collect();
            if topic.wildcard {
                types.push("\"*\"".to_owned());
            }
            let index = index as u16;
            let versions = (2..=crate::constants::STREAM_VERSIONS_MAX)
                .take_while(|version| topology.stream(index, *version).is_some())
                .last()
                .unwrap_or(1);
            let versions = if versions > 1 { format!("versions = {versions}\n") } else { String::new() };
            let optional = if topic.optional { "optional = true\n" } else { "" };
            out += &format!(
                "\n[[topics]]\nname = \"{}\"\nevent_types = [{}]\npartitions = {}\nretention_hours = {}\nretention_bytes = {}\n{versions}{optional}",
                topic.name,
                types.join(", "),
                topic.partitions,
                topic.retention_ms / 3_600_000,
                topic.retention_bytes
            );
        }
        out
    }

    /// `[limits]` as in force: the budget (with what 0 resolved to) and every rate rule.
    fn limits_toml(&self) -> String {
        use crate::perimeter::rate::Match;
        let limits = &self.limits;
        let budget = if limits.memory_bytes_max_configured == 0 {
            format!("memory_bytes_max = 0  # a quarter of RAM: {} bytes", limits.memory_bytes_max)
        } else {
            format!("memory_bytes_max = {}", limits.memory_bytes_max)
        };
        let mut out = format!("\n[limits]\n{budget}\n");
        for rule in &limits.rate {
            let matches = match &rule.matches {
                Match::Any => "*".to_owned(),
                Match::Name(name) => name.to_string(),
                Match::Block(cidr) => cidr.to_string(),
            };
            out += &format!(
                "\n[[limits.rate]]\nper = \"{}\"\nmatch = {matches:?}\nrate_per_sec = {}\nburst = {}\n",
                rule.per.name(),
                rule.rate_per_sec,
                rule.burst
            );
        }
        out
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

    /// `[dlq]`, `[[policies]]` and `[gates]` as in force.
    fn governance_toml(&self) -> String {
        let quoted = |items: &[Box<str>]| items.iter().map(|item| format!("{item:?}")).collect::<Vec<_>>().join(", ");
        let paths =
            |items: &[crate::policy::FieldPath]| items.iter().map(|item| format!("{:?}", item.as_str())).collect::<Vec<_>>().join(", ");
        let mut out = format!("\n[dlq]\nbytes_max = {}\nretention_hours = {}\n", self.dlq.bytes_max, self.dlq.retention_ms / 3_600_000);
        for policy in &self.policies {
            out += &format!(
                "\n[[policies]]\nname = {:?}\nevent_types = [{}]\ntopics = [{}]\npartners = [{}]\nenforce = {}\nblocked_fields = [{}]\nrequired_fields = [{}]\ngeo_allow = [{}]\ngeo_deny = [{}]\n",
                &*policy.name,
                quoted(&policy.event_types),
                quoted(&policy.topics),
                quoted(&policy.partners),
                policy.enforce,
                paths(&policy.blocked_fields),
                paths(&policy.required_fields),
                quoted(&policy.geo_allow),
                quoted(&policy.geo_deny),
            );
            if let Some(mode) = policy.mode {
                out += &format!("mode = \"{}\"\n", mode.as_str());
            }
        }
        let Some(gates) = &self.gates else { return out };
        let values: Vec<String> = gates.rg_ok_values.iter().map(|value| value.to_string()).collect();
        out += &format!(
            "\n[gates]\nkyc_event_types = [{}]\nkyc_level_field = {:?}\nrg_event_types = [{}]\nrg_field = {:?}\nrg_ok_values = [{}]\nrg_unknown_ok = {}\n",
            quoted(&gates.kyc_event_types),
            gates.kyc_level_field.as_str(),
            quoted(&gates.rg_event_types),
            gates.rg_field.as_str(),
            values.join(", "),
            gates.rg_unknown_ok,
        );
        for reward in &gates.rewards {
            out += &format!(
                "\n[[gates.rewards]]\nevent_types = [{}]\nrg_ok_required = {}\n",
                quoted(&reward.event_types),
                reward.rg_ok_required
            );
            if let Some(min) = reward.kyc_level_min {
                out += &format!("kyc_level_min = {min}\n");
            }
        }
        out
    }
}
