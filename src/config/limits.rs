//! `[limits]` (SPEC §7): the memory budget and the rate limits.
//!
//! ```toml
//! [limits]
//! memory_bytes_max = 0          # 0 = a quarter of RAM (or of the cgroup's memory.max)
//! [[limits.rate]]
//! per = "ip"                    # "ip" | "partner" | "kid"
//! match = "*"                   # "*", a CIDR block (per = "ip"), or a partner name / kid
//! rate_per_sec = 300            # nginx: limit_req_zone … rate=300r/s
//! burst = 600                   # nginx: limit_req … burst=600 nodelay
//! ```

use serde::Deserialize;

use super::{ConfigError, invalid};
use crate::perimeter::rate::{Match, Per, RULES_MAX, RateRule};

/// The smallest budget accepted: one largest body twice over, and room for the rest.
pub const MEMORY_BYTES_MIN: u64 = 16 << 20;
/// The highest rate a rule may name (one request per nanosecond is beyond any box).
pub const RATE_PER_SEC_MAX: f64 = 100_000_000.0;
/// The lowest: one request a day.
pub const RATE_PER_SEC_MIN: f64 = 1.0 / 86_400.0;
/// The largest burst (a bucket that takes a day to fill is the most a rule may describe).
pub const BURST_MAX: u32 = 10_000_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    memory_bytes_max: Option<u64>,
    #[serde(default)]
    rate: Vec<RawRate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    per: Option<String>,
    #[serde(rename = "match")]
    matches: Option<String>,
    rate_per_sec: Option<f64>,
    burst: Option<u32>,
}

/// `[limits]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    /// As written: 0 asks for a quarter of the memory the process may use.
    pub memory_bytes_max_configured: u64,
    /// The budget in force.
    pub memory_bytes_max: u64,
    pub rate: Vec<RateRule>,
}

pub(super) fn limits_config(raw: RawLimits, body_bytes_max: usize) -> Result<LimitsConfig, ConfigError> {
    let configured = raw.memory_bytes_max.unwrap_or(0);
    let memory_bytes_max = if configured == 0 { default_memory_budget() } else { configured };
    let floor = MEMORY_BYTES_MIN.max(4 * body_bytes_max as u64);
    if configured != 0 && configured < floor {
        return Err(invalid("limits.memory_bytes_max", format!("must be 0 (a quarter of RAM) or at least {floor} (16 MiB, and 4 bodies)")));
    }
    if raw.rate.len() > RULES_MAX {
        return Err(invalid("limits.rate", format!("holds at most {RULES_MAX} rules")));
    }
    let rate = raw.rate.into_iter().enumerate().map(|(index, raw)| rate_rule(index, raw)).collect::<Result<Vec<_>, _>>()?;
    Ok(LimitsConfig { memory_bytes_max_configured: configured, memory_bytes_max: memory_bytes_max.max(floor), rate })
}

fn rate_rule(index: usize, raw: RawRate) -> Result<RateRule, ConfigError> {
    let key = |field: &str| format!("limits.rate[{index}].{field}");
    let per = match raw.per.as_deref() {
        Some("ip") => Per::Ip,
        Some("partner") => Per::Partner,
        Some("kid") => Per::Kid,
        Some(other) => return Err(invalid(key("per"), format!("{other:?} is not \"ip\", \"partner\" or \"kid\""))),
        None => return Err(invalid(key("per"), "is required: \"ip\", \"partner\" or \"kid\"")),
    };
    let matches = match raw.matches.as_deref().unwrap_or("*") {
        "*" => Match::Any,
        text if per == Per::Ip => Match::Block(text.parse().map_err(|reason: String| invalid(key("match"), reason))?),
        "" => return Err(invalid(key("match"), "is empty: \"*\" or a name")),
        text => Match::Name(text.into()),
    };
    let rate_per_sec = raw.rate_per_sec.ok_or_else(|| invalid(key("rate_per_sec"), "is required"))?;
    if !(rate_per_sec.is_finite() && (RATE_PER_SEC_MIN..=RATE_PER_SEC_MAX).contains(&rate_per_sec)) {
        return Err(invalid(
            key("rate_per_sec"),
            format!("must be at least one a day ({RATE_PER_SEC_MIN:.8}) and at most {RATE_PER_SEC_MAX}"),
        ));
    }
    let burst = raw.burst.unwrap_or(0);
    if burst > BURST_MAX || f64::from(burst) / rate_per_sec > 86_400.0 {
        return Err(invalid(key("burst"), format!("must be at most {BURST_MAX} and refill within a day (burst / rate_per_sec <= 86400)")));
    }
    if let Match::Block(cidr) = &matches {
        use crate::perimeter::partners::Family;
        match cidr.family() {
            Family::V6 if cidr.prefix_bits() > 64 => {
                return Err(invalid(key("match"), "an IPv6 client is counted per /64: use a prefix of at most 64 bits"));
            }
            Family::V4Mapped => {
                return Err(invalid(key("match"), "write an IPv4-mapped block as IPv4 (a.b.c.d/n): clients are matched unmapped"));
            }
            _ => {}
        }
    }
    Ok(RateRule { per, matches, rate_per_sec, burst })
}

/// A quarter of what the process may use: RAM, or its cgroup's `memory.max` when lower
/// (a systemd `MemoryMax=` or a container limit; cgroup v2, read from the process's own
/// cgroup as `/proc/self/cgroup` names it).
pub fn default_memory_budget() -> u64 {
    let ram = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| mem_total(&text)).unwrap_or(4 << 30);
    let own = std::fs::read_to_string("/proc/self/cgroup").ok().and_then(|text| cgroup_v2_path(&text));
    let file = format!("/sys/fs/cgroup{}/memory.max", own.as_deref().unwrap_or(""));
    let cgroup = std::fs::read_to_string(file).ok().and_then(|text| text.trim().parse::<u64>().ok());
    cgroup.map_or(ram, |limit| limit.min(ram)) / 4
}

/// The cgroup v2 path in `/proc/self/cgroup` (the `0::<path>` line), `/` stripped.
fn cgroup_v2_path(text: &str) -> Option<String> {
    let path = text.lines().find_map(|line| line.strip_prefix("0::"))?.trim();
    (!path.contains("..")).then(|| path.trim_end_matches('/').to_owned())
}

fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LimitsConfig, ConfigError> {
        let raw: RawLimits = toml::from_str(text).expect("toml");
        limits_config(raw, 512 * 1024)
    }

    #[test]
    fn rules_read_as_written_and_the_budget_defaults_to_a_quarter_of_ram() {
        let config = parse(
            "memory_bytes_max = 0\n[[rate]]\nper = \"ip\"\nmatch = \"10.0.0.0/8\"\nrate_per_sec = 300\nburst = 600\n\
             [[rate]]\nper = \"partner\"\nrate_per_sec = 50.5\n[[rate]]\nper = \"kid\"\nmatch = \"k1\"\nrate_per_sec = 1\nburst = 2\n",
        )
        .expect("valid");
        assert_eq!(config.rate.len(), 3);
        assert_eq!(config.rate[0].matches, Match::Block("10.0.0.0/8".parse().expect("cidr")));
        assert_eq!((config.rate[1].matches.clone(), config.rate[1].burst), (Match::Any, 0));
        assert_eq!(config.rate[2].matches, Match::Name("k1".into()));
        assert_eq!(config.memory_bytes_max_configured, 0);
        assert_eq!(config.memory_bytes_max, default_memory_budget().max(MEMORY_BYTES_MIN));
        assert!(config.memory_bytes_max > MEMORY_BYTES_MIN);
    }

    #[test]
    fn mistakes_name_their_key() {
        let cases = [
            ("[[rate]]\nrate_per_sec = 1\n", "limits.rate[0].per"),
            ("[[rate]]\nper = \"user\"\nrate_per_sec = 1\n", "limits.rate[0].per"),
            ("[[rate]]\nper = \"ip\"\nmatch = \"acme\"\nrate_per_sec = 1\n", "limits.rate[0].match"),
            ("[[rate]]\nper = \"ip\"\n", "limits.rate[0].rate_per_sec"),
            ("[[rate]]\nper = \"kid\"\nrate_per_sec = 0\n", "limits.rate[0].rate_per_sec"),
            ("[[rate]]\nper = \"kid\"\nrate_per_sec = -3\n", "limits.rate[0].rate_per_sec"),
            ("[[rate]]\nper = \"kid\"\nrate_per_sec = 1e-12\n", "limits.rate[0].rate_per_sec"),
            ("[[rate]]\nper = \"kid\"\nrate_per_sec = 0.001\nburst = 1000\n", "limits.rate[0].burst"),
            ("[[rate]]\nper = \"ip\"\nmatch = \"2001:db8::1/128\"\nrate_per_sec = 1\n", "limits.rate[0].match"),
            ("[[rate]]\nper = \"ip\"\nmatch = \"::ffff:10.0.0.0/104\"\nrate_per_sec = 1\n", "limits.rate[0].match"),
            ("memory_bytes_max = 1000\n", "limits.memory_bytes_max"),
        ];
        for (text, key) in cases {
            let error = parse(text).expect_err(text).to_string();
            assert!(error.contains(key), "{text:?}: {error}");
        }
    }

    #[test]
    fn the_process_cgroup_is_read_from_its_v2_line() {
        assert_eq!(cgroup_v2_path("0::/system.slice/sluice.service\n").as_deref(), Some("/system.slice/sluice.service"));
        assert_eq!(cgroup_v2_path("0::/\n").as_deref(), Some(""));
        assert_eq!(cgroup_v2_path("1:memory:/x\n"), None, "cgroup v1 only: RAM decides");
    }

    #[test]
    fn mem_total_is_read_in_kib() {
        assert_eq!(mem_total("MemTotal:       24576000 kB\nMemFree: 1 kB\n"), Some(24_576_000 * 1024));
        assert_eq!(mem_total("nothing"), None);
    }
}
