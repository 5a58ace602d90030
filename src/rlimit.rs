//! Process resource limits sluice raises for itself at start.

/// Raises the soft open-files limit to the hard limit: a server with 10,000 connections,
/// or a harness opening them, needs more than the usual 1024. Returns the soft limit now in force.
pub fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into memory we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    // An unlimited hard limit still cannot exceed the kernel's fs.nr_open.
    let ceiling = if limit.rlim_max == libc::RLIM_INFINITY {
        std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|text| text.trim().parse().ok()).unwrap_or(1 << 20)
    } else {
        limit.rlim_max
    };
    if limit.rlim_cur < ceiling {
        let raised = libc::rlimit { rlim_cur: ceiling, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit reads one rlimit from memory we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Some(raised.rlim_cur);
        }
    }
    Some(limit.rlim_cur)
}
