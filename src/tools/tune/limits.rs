//! Open files: this process's RLIMIT_NOFILE and the kernel ceilings above it, against
//! what the configuration needs (`rlimit::open_files_wanted`, the formula `serve` uses).

use super::{Finding, Host, Status, sysctl_at_least};
use crate::config::Config;
use crate::platform::rlimit::{FILES_BESIDES_CONNECTIONS, FILES_PER_PARTITION, UNLIMITED, open_files_wanted};

/// The kernel's default `fs.nr_open`.
const NR_OPEN_DEFAULT: u64 = 1 << 20;
/// `fs.nr_open` in 60-sluice.conf: 256 shards x 16384 connections.
const NR_OPEN_KIT: u64 = 1 << 22;
/// `fs.file-max` in 60-sluice.conf: LONG_MAX, as systemd sets it at boot (file memory is
/// charged to the memory cgroup, which is the real bound).
const FILE_MAX_KIT: u64 = i64::MAX as u64;

/// What the fix sets `fs.nr_open` to: the kit's value, or room for twice the need.
fn nr_open_for(wanted: u64) -> u64 {
    wanted.saturating_mul(2).next_power_of_two().max(NR_OPEN_KIT)
}

fn explain(config: &Config) -> String {
    format!(
        "{} shards x connections_max {} + {} x {} partitions + {}",
        config.ingest.shards, config.ingest.connections_max, FILES_PER_PARTITION, config.storage.partitions, FILES_BESIDES_CONNECTIONS
    )
}

/// RLIMIT_NOFILE of this process. `serve` raises its soft limit to the hard one, so the
/// hard limit (capped by fs.nr_open when unlimited) is what counts.
pub fn open_files(config: &Config, host: &Host) -> Finding {
    let check = "rlimit.nofile";
    let wanted = open_files_wanted(config);
    let recommended = format!(">= {wanted} ({})", explain(config));
    let Some(limit) = host.live.open_files else {
        return Finding::new(Status::Info, check, "getrlimit failed", recommended);
    };
    let reachable = if limit.hard == UNLIMITED { host.sysctl_u64("fs.nr_open").unwrap_or(NR_OPEN_DEFAULT) } else { limit.hard };
    let show = |value: u64| if value == UNLIMITED { "unlimited".to_owned() } else { value.to_string() };
    let observed = format!("soft {}, hard {}", show(limit.soft), show(limit.hard));
    if reachable >= wanted {
        return Finding::new(Status::Ok, check, observed, recommended).note("serve raises the soft limit to the hard one");
    }
    // The soft limit cannot pass the hard one, and the hard one not fs.nr_open: the fix
    // raises the hard limit (root only), after fs.nr_open when that is the ceiling.
    let nr_open = host.sysctl_u64("fs.nr_open").unwrap_or(NR_OPEN_DEFAULT);
    let raise = format!("ulimit -Hn {wanted} && ulimit -Sn {wanted}");
    let fix = if nr_open < wanted { format!("sysctl -w fs.nr_open={} && {raise}", nr_open_for(wanted)) } else { raise };
    Finding::new(Status::Warn, check, observed, recommended).fix(fix).note(
        "the hard limit is below the need and only root can raise it; connections past it are refused at accept. This is the \
         limit of this shell: the systemd unit sets its own (LimitNOFILE=)",
    )
}

/// `fs.nr_open`: no process, systemd service included, can raise RLIMIT_NOFILE past it.
pub fn nr_open(config: &Config, host: &Host) -> Finding {
    let wanted = open_files_wanted(config);
    sysctl_at_least(host, "fs.nr_open", wanted, nr_open_for(wanted), Status::Fail)
        .note("the ceiling of every open-files limit, LimitNOFILE= included")
}

/// `fs.file-max`: open files over the whole box.
pub fn file_max(config: &Config, host: &Host) -> Finding {
    let wanted = open_files_wanted(config);
    sysctl_at_least(host, "fs.file-max", wanted, FILE_MAX_KIT, Status::Fail).note("open files over all processes of the box")
}

#[cfg(test)]
mod tests {
    use super::super::host::fake::FakeBox;
    use super::*;
    use crate::platform::rlimit::Limit;

    /// Needs 2 x 1000 + 3 x 8 + 64 = 2088 files.
    fn config() -> Config {
        Config::parse("[ingest]\nshards = 2\nconnections_max = 1000\n[storage]\npartitions = 8\n", std::path::Path::new("x.toml")).unwrap()
    }

    #[test]
    fn the_hard_limit_counts_because_serve_raises_the_soft_one() {
        let mut fake = FakeBox::new();
        fake.live.open_files = Some(Limit { soft: 1024, hard: 4096 });
        let finding = open_files(&config(), &fake.host());
        assert_eq!(finding.status, Status::Ok, "{finding:?}");
        assert!(finding.recommended.starts_with(">= 2088 (2 shards x connections_max 1000 + 3 x 8 partitions + 64)"), "{finding:?}");
        fake.live.open_files = Some(Limit { soft: 1024, hard: 2000 });
        let finding = open_files(&config(), &fake.host());
        // `ulimit -n 2088` was suggested, which fails: the soft limit cannot pass the hard one.
        assert_eq!((finding.status, finding.fix.as_deref()), (Status::Warn, Some("ulimit -Hn 2088 && ulimit -Sn 2088")));
        assert_eq!(finding.observed, "soft 1024, hard 2000");
    }

    #[test]
    fn an_unlimited_hard_limit_is_capped_by_nr_open() {
        let mut fake = FakeBox::new();
        fake.live.open_files = Some(Limit { soft: 1024, hard: UNLIMITED });
        fake.sysctl("fs.nr_open", "2000");
        let finding = open_files(&config(), &fake.host());
        assert_eq!(finding.status, Status::Warn);
        assert_eq!(finding.fix.as_deref(), Some("sysctl -w fs.nr_open=4194304 && ulimit -Hn 2088 && ulimit -Sn 2088"), "nr_open first");
        fake.sysctl("fs.nr_open", "1048576");
        assert_eq!(open_files(&config(), &fake.host()).status, Status::Ok);
    }

    #[test]
    fn kernel_ceilings_fail_below_the_need() {
        let fake = FakeBox::new();
        fake.sysctl("fs.nr_open", "1024").sysctl("fs.file-max", "9223372036854775807");
        let finding = nr_open(&config(), &fake.host());
        assert_eq!((finding.status, finding.fix.as_deref()), (Status::Fail, Some("sysctl -w fs.nr_open=4194304")));
        assert_eq!(file_max(&config(), &fake.host()).status, Status::Ok);
        fake.sysctl("fs.nr_open", "1048576").sysctl("fs.file-max", "2000");
        assert_eq!(nr_open(&config(), &fake.host()).status, Status::Ok);
        let finding = file_max(&config(), &fake.host());
        assert_eq!((finding.status, finding.fix.as_deref()), (Status::Fail, Some("sysctl -w fs.file-max=9223372036854775807")));
        assert_eq!(nr_open_for(3_000_000), 8_388_608);
    }
}
