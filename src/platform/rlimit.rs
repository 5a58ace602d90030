//! Process resource limits: the open-files limit sluice raises for itself at start, how many
//! open files a configuration needs, and reading a limit (for `sluice tune --check`).

use crate::platform::sys;

/// Raises the soft open-files limit to the hard limit: a server with 10,000 connections,
/// or a harness opening them, needs more than the usual 1024. Returns the soft limit now in force.
pub fn raise_open_files_limit() -> Option<u64> {
    let (soft, hard) = sys::getrlimit(libc::RLIMIT_NOFILE).ok()?;
    // An unlimited hard limit still cannot exceed the kernel's fs.nr_open.
    let ceiling = if hard == libc::RLIM_INFINITY {
        std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|text| text.trim().parse().ok()).unwrap_or(1 << 20)
    } else {
        hard
    };
    if soft < ceiling && sys::setrlimit(libc::RLIMIT_NOFILE, ceiling, hard).is_ok() {
        return Some(ceiling);
    }
    Some(soft)
}

/// Descriptors a server needs besides its connections and three per partition (active,
/// previous and spare segment): rings, eventfds, listeners, directories, the admin side.
pub const FILES_BESIDES_CONNECTIONS: u64 = 64;

/// Segment descriptors each partition holds open: active, previous and spare.
pub const FILES_PER_PARTITION: u64 = 3;

/// Open files `sluice serve` needs with `config`: one per connection slot of every shard,
/// [`FILES_PER_PARTITION`] per partition, and [`FILES_BESIDES_CONNECTIONS`]. Connections
/// past the open-files limit are refused at accept, so this is what `LimitNOFILE` must
/// reach (`serve` warns, `sluice tune --check` reports it).
pub fn open_files_wanted(config: &crate::config::Config) -> u64 {
    let connections = (config.ingest.shards as u64).saturating_mul(config.ingest.connections_max as u64);
    connections + FILES_PER_PARTITION * u64::from(config.storage.partitions) + FILES_BESIDES_CONNECTIONS
}

/// A resource limit; [`UNLIMITED`] stands for `RLIM_INFINITY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub soft: u64,
    pub hard: u64,
}

/// `RLIM_INFINITY` as [`Limit`] reports it.
pub const UNLIMITED: u64 = u64::MAX;

/// Which limit [`get`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    OpenFiles,
    LockedMemoryBytes,
}

/// This process's soft and hard limit for `resource`; `None` if getrlimit fails.
pub fn get(resource: Resource) -> Option<Limit> {
    let which = match resource {
        Resource::OpenFiles => libc::RLIMIT_NOFILE,
        Resource::LockedMemoryBytes => libc::RLIMIT_MEMLOCK,
    };
    let (soft, hard) = sys::getrlimit(which).ok()?;
    let widen = |value: libc::rlim_t| if value == libc::RLIM_INFINITY { UNLIMITED } else { value };
    Some(Limit { soft: widen(soft), hard: widen(hard) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_files_wanted_counts_connections_segments_and_the_rest() {
        let config = crate::config::Config::parse(
            "[ingest]\nshards = 4\nconnections_max = 1000\n[storage]\npartitions = 10\n",
            std::path::Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(open_files_wanted(&config), 4 * 1000 + 3 * 10 + FILES_BESIDES_CONNECTIONS);
    }

    #[test]
    fn get_reads_both_limits() {
        for resource in [Resource::OpenFiles, Resource::LockedMemoryBytes] {
            let limit = get(resource).expect("getrlimit works");
            assert!(limit.soft <= limit.hard, "{resource:?}: {limit:?}");
        }
    }
}
