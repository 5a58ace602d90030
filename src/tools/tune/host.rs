//! What the checks read: files under a root (`/` on a live box, a temp dir in tests) and
//! the few facts only a system call gives ([`Live`]), gathered once before any check runs.

use std::path::{Path, PathBuf};

use crate::platform::rlimit::Limit;

/// Entries of one directory a check lists at most (`/proc` has one per process; pid_max
/// is at most 4M on 64-bit kernels).
const DIR_ENTRIES_MAX: usize = 1 << 22;
/// Bytes of one `/proc` or `/sys` file a check reads at most; the largest it reads,
/// `/proc/swaps`, has one short line per swap area.
const FILE_BYTES_MAX: u64 = 1 << 20;

/// What an `io_uring_setup` with a tiny ring found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UringProbe {
    /// A ring was set up; `defer_taskrun` says whether with SINGLE_ISSUER|DEFER_TASKRUN
    /// (6.1+), `buffer_ring` whether a provided buffer ring registered and the ring was locked to the shard policy and enabled (`Err(errno)`).
    Works { defer_taskrun: bool, buffer_ring: Result<(), i32> },
    /// `io_uring_setup` failed with this errno.
    SetupFailed { errno: i32 },
}

/// Facts about this process that are not files: its limits and whether it may use io_uring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    pub uring: UringProbe,
    pub open_files: Option<Limit>,
    pub locked_memory_bytes: Option<Limit>,
}

/// Buffers in the probe's provided buffer ring, and their size.
const PROBE_BUFFERS: u16 = 8;
const PROBE_BUFFER_BYTES: u32 = 4096;

impl Live {
    /// Sets up (and drops) a tiny ring the way a shard does, and reads the limits.
    pub fn gather() -> Live {
        Live {
            uring: probe_uring(),
            open_files: crate::platform::rlimit::get(crate::platform::rlimit::Resource::OpenFiles),
            locked_memory_bytes: crate::platform::rlimit::get(crate::platform::rlimit::Resource::LockedMemoryBytes),
        }
    }
}

fn probe_uring() -> UringProbe {
    let errno = |error: std::io::Error| error.raw_os_error().unwrap_or(libc::EIO);
    // Exactly as a shard does it: a disabled ring with the best flags the kernel has, the
    // buffer ring registered, the shard's restrictions installed, then enabled.
    let (ring, features) = match crate::reactor::setup(&crate::reactor::restrictions::SHARD) {
        Ok(made) => made,
        Err(error) => return UringProbe::SetupFailed { errno: errno(error) },
    };
    let buffers = crate::reactor::bufring::BufRing::register(&ring, 0, PROBE_BUFFERS, PROBE_BUFFER_BYTES);
    let buffer_ring = match &buffers {
        // The enabled ring is dropped here, before the buffer ring's memory below.
        Ok(_) => ring.enable().map(drop).map_err(errno),
        Err(error) => Err(error.raw_os_error().unwrap_or(libc::EIO)),
    };
    drop(buffers);
    UringProbe::Works { defer_taskrun: features.defer_taskrun, buffer_ring }
}

/// The box under inspection.
#[derive(Debug, Clone)]
pub struct Host {
    root: PathBuf,
    pub live: Live,
}

impl Host {
    /// The running box: files under `/` and this process's own facts.
    pub fn live() -> Host {
        Host { root: PathBuf::from("/"), live: Live::gather() }
    }

    /// Files under `root` (a fake `/proc` and `/sys` tree) and the given facts.
    pub fn at(root: &Path, live: Live) -> Host {
        Host { root: root.to_owned(), live }
    }

    fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// The file's text with surrounding whitespace trimmed; `None` if it cannot be read.
    pub fn read(&self, path: &str) -> Option<String> {
        use std::io::Read;
        let mut text = String::new();
        std::fs::File::open(self.path(path)).ok()?.take(FILE_BYTES_MAX).read_to_string(&mut text).ok()?;
        Some(text.trim().to_owned())
    }

    /// A sysctl by its dotted name (`net.core.somaxconn`), read from `/proc/sys`.
    pub fn sysctl(&self, name: &str) -> Option<String> {
        self.read(&format!("/proc/sys/{}", name.replace('.', "/")))
    }

    /// A sysctl that holds one unsigned number.
    pub fn sysctl_u64(&self, name: &str) -> Option<u64> {
        self.sysctl(name)?.parse().ok()
    }

    /// Names in a directory, sorted; empty if it cannot be read.
    pub fn list(&self, path: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.path(path)) else { return Vec::new() };
        let mut names: Vec<String> = entries.take(DIR_ENTRIES_MAX).filter_map(|entry| entry.ok()?.file_name().into_string().ok()).collect();
        names.sort();
        names
    }

    /// The online CPUs (`/sys/devices/system/cpu/online`); `None` if not exposed.
    pub fn online_cpus(&self) -> Option<Vec<u32>> {
        parse_cpu_list(&self.read("/sys/devices/system/cpu/online")?)
    }
}

/// CPUs a `/sys` CPU list can name at most (the kernel's NR_CPUS ceiling).
const CPUS_MAX: u32 = 8192;

/// Parses a kernel CPU list (`0-3,8,10-11`); `None` if malformed or past [`CPUS_MAX`].
pub fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|part| !part.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((first, last)) => (first.parse::<u32>().ok()?, last.parse::<u32>().ok()?),
            None => {
                let cpu = part.parse::<u32>().ok()?;
                (cpu, cpu)
            }
        };
        if first > last || last >= CPUS_MAX {
            return None;
        }
        cpus.extend(first..=last);
    }
    Some(cpus)
}

/// Writes CPUs as a kernel CPU list (`0-3,8`), the inverse of [`parse_cpu_list`] for a
/// sorted list.
pub fn format_cpu_list(cpus: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut index = 0;
    while index < cpus.len() {
        let first = cpus[index];
        let mut last = first;
        while index + 1 < cpus.len() && cpus[index + 1] == last + 1 {
            index += 1;
            last = cpus[index];
        }
        parts.push(if first == last { first.to_string() } else { format!("{first}-{last}") });
        index += 1;
    }
    parts.join(",")
}

/// A fake `/proc` and `/sys` tree in a temp dir, for the checks' unit tests.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;

    pub struct FakeBox {
        pub dir: tempfile::TempDir,
        pub live: Live,
    }

    impl FakeBox {
        /// An empty tree; io_uring works and the limits are generous.
        pub fn new() -> FakeBox {
            let limit = Limit { soft: 1 << 20, hard: 1 << 20 };
            FakeBox {
                dir: tempfile::tempdir().expect("temp dir"),
                live: Live {
                    uring: UringProbe::Works { defer_taskrun: true, buffer_ring: Ok(()) },
                    open_files: Some(limit),
                    locked_memory_bytes: Some(Limit { soft: 8 << 20, hard: 8 << 20 }),
                },
            }
        }

        /// Writes `text` to `path` (absolute, as on the live box), creating directories.
        pub fn file(&self, path: &str, text: &str) -> &Self {
            let full = self.dir.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(full.parent().expect("a parent")).expect("mkdir");
            std::fs::write(full, text).expect("write");
            self
        }

        /// Writes a sysctl by its dotted name.
        pub fn sysctl(&self, name: &str, value: &str) -> &Self {
            self.file(&format!("/proc/sys/{}", name.replace('.', "/")), &format!("{value}\n"))
        }

        pub fn host(&self) -> Host {
            Host::at(self.dir.path(), self.live)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeBox;
    use super::*;

    #[test]
    fn cpu_lists_parse_and_format() {
        assert_eq!(parse_cpu_list("0-3,8,10-11\n"), Some(vec![0, 1, 2, 3, 8, 10, 11]));
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list(""), Some(vec![]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(parse_cpu_list("0-9000"), None);
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(format_cpu_list(&[5]), "5");
        assert_eq!(format_cpu_list(&[]), "");
    }

    #[test]
    fn reads_go_under_the_root() {
        let fake = FakeBox::new();
        fake.sysctl("net.core.somaxconn", "512").file("/proc/1/comm", "init\n").file("/proc/22/comm", "x\n");
        let host = fake.host();
        assert_eq!(host.sysctl_u64("net.core.somaxconn"), Some(512));
        assert_eq!(host.sysctl("vm.swappiness"), None);
        assert_eq!(host.list("/proc"), vec!["1", "22", "sys"]);
        assert_eq!(host.list("/nowhere"), Vec::<String>::new());
    }

    #[test]
    fn the_live_probe_sets_up_a_ring_on_this_kernel() {
        let live = Live::gather();
        assert!(matches!(live.uring, UringProbe::Works { buffer_ring: Ok(()), .. }), "{live:?}");
        assert!(live.open_files.is_some() && live.locked_memory_bytes.is_some());
    }
}
