//! Memory: transparent hugepages, the mapping count the segment logs need, and swap.

use super::{Finding, Host, Status, sysctl_at_least};
use crate::config::Config;
use crate::platform::rlimit::FILES_PER_PARTITION;

/// Memory mappings a server holds besides its segments: libraries, thread stacks and
/// their guard pages, malloc arenas, buffer rings. A few hundred on a 64-core box.
const MAP_AREAS_BESIDES_SEGMENTS: u64 = 4096;
/// What the kit sets `vm.max_map_count` to (60-sluice.conf): `tail` readers and
/// recovery map sealed segments too, and 262144 is the common choice of log stores.
const MAP_COUNT_SET_TO: u64 = 262_144;
/// `vm.swappiness` at most, when swap is on.
const SWAPPINESS_MAX: u64 = 10;

const THP: &str = "/sys/kernel/mm/transparent_hugepage";

/// The bracketed choice of a `/sys` selector: `always [madvise] never` → `madvise`.
fn selected(text: &str) -> Option<&str> {
    text.split_whitespace().find_map(|word| word.strip_prefix('[')?.strip_suffix(']'))
}

/// THP `enabled`: `always` lets khugepaged collapse the heap's many small allocations
/// into huge pages in the background and stall on compaction; sluice asks for none.
pub fn thp_enabled(host: &Host) -> Finding {
    let check = "mm.thp_enabled";
    let recommended = "madvise (or never)";
    let Some(text) = host.read(&format!("{THP}/enabled")) else {
        return Finding::new(Status::Info, check, "not exposed", recommended);
    };
    match selected(&text) {
        Some(mode @ ("madvise" | "never")) => Finding::new(Status::Ok, check, mode, recommended),
        Some(mode) => Finding::new(Status::Warn, check, mode, recommended)
            .fix(format!("echo madvise > {THP}/enabled"))
            .note("always: page faults and khugepaged compact memory for huge pages, latency spikes on a busy heap"),
        None => Finding::new(Status::Info, check, text, recommended).note("no bracketed choice in it"),
    }
}

/// THP `defrag`: `always` makes a page fault wait for direct compaction.
pub fn thp_defrag(host: &Host) -> Finding {
    let check = "mm.thp_defrag";
    let recommended = "madvise, defer+madvise, defer or never";
    let Some(text) = host.read(&format!("{THP}/defrag")) else {
        return Finding::new(Status::Info, check, "not exposed", recommended);
    };
    match selected(&text) {
        Some("always") => Finding::new(Status::Warn, check, "always", recommended)
            .fix(format!("echo madvise > {THP}/defrag"))
            .note("a page fault stalls in direct compaction until a huge page is free"),
        Some(mode) => Finding::new(Status::Ok, check, mode, recommended),
        None => Finding::new(Status::Info, check, text, recommended).note("no bracketed choice in it"),
    }
}

/// `vm.max_map_count`: every partition (of every topic) maps its active, previous and
/// spare segment; every consumer stream maps a segment per partition it reads.
pub fn max_map_count(config: &Config, host: &Host) -> Finding {
    let partitions = u64::from(config.topics.slots());
    let wanted = FILES_PER_PARTITION * partitions + MAP_AREAS_BESIDES_SEGMENTS;
    sysctl_at_least(host, "vm.max_map_count", wanted, MAP_COUNT_SET_TO, Status::Fail).note(format!(
        "3 mappings per partition ({partitions} partitions, all topics) + {MAP_AREAS_BESIDES_SEGMENTS}, and one per partition each \
         consumer stream reads; past it a segment roll fails"
    ))
}

/// Swap areas and `vm.swappiness`: swapped-out anonymous memory (dedup index, connection
/// slots, buffers) turns a request into a disk read. The logs are file pages and never swap.
pub fn swap(host: &Host) -> Finding {
    let check = "vm.swap";
    let recommended = format!("no swap, or vm.swappiness <= {SWAPPINESS_MAX}");
    let Some(swaps) = host.read("/proc/swaps") else {
        return Finding::new(Status::Info, check, "not exposed", recommended);
    };
    // Lines after the header: `Filename Type Size Used Priority`, Size in KiB.
    let kib: u64 = swaps.lines().skip(1).filter_map(|line| line.split_whitespace().nth(2)?.parse::<u64>().ok()).sum();
    if kib == 0 {
        return Finding::new(Status::Ok, check, "no swap", recommended);
    }
    let swappiness = host.sysctl_u64("vm.swappiness");
    let observed =
        format!("{} swap, vm.swappiness {}", super::kernel::bytes(kib * 1024), swappiness.map_or("?".to_owned(), |v| v.to_string()));
    match swappiness {
        Some(value) if value <= SWAPPINESS_MAX => Finding::new(Status::Ok, check, observed, recommended),
        _ => Finding::new(Status::Warn, check, observed, recommended)
            .fix("sysctl -w vm.swappiness=1")
            .note("swapped-out heap pages (dedup index, connections) turn requests into disk reads"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::host::fake::FakeBox;
    use super::*;

    #[test]
    fn thp_enabled_always_is_a_warning() {
        let fake = FakeBox::new();
        assert_eq!(thp_enabled(&fake.host()).status, Status::Info);
        fake.file(&format!("{THP}/enabled"), "always [madvise] never\n");
        assert_eq!(thp_enabled(&fake.host()).status, Status::Ok);
        fake.file(&format!("{THP}/enabled"), "always madvise [never]\n");
        assert_eq!(thp_enabled(&fake.host()).status, Status::Ok);
        fake.file(&format!("{THP}/enabled"), "[always] madvise never\n");
        let finding = thp_enabled(&fake.host());
        assert_eq!(finding.status, Status::Warn);
        assert_eq!(finding.fix.unwrap(), "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled");
    }

    #[test]
    fn thp_defrag_always_is_a_warning() {
        let fake = FakeBox::new();
        assert_eq!(thp_defrag(&fake.host()).status, Status::Info);
        fake.file(&format!("{THP}/defrag"), "always defer defer+madvise [madvise] never\n");
        assert_eq!(thp_defrag(&fake.host()).status, Status::Ok);
        fake.file(&format!("{THP}/defrag"), "always defer [defer+madvise] madvise never\n");
        assert_eq!(thp_defrag(&fake.host()).status, Status::Ok);
        fake.file(&format!("{THP}/defrag"), "[always] defer defer+madvise madvise never\n");
        assert_eq!(thp_defrag(&fake.host()).status, Status::Warn);
    }

    #[test]
    fn max_map_count_covers_three_mappings_per_partition() {
        let fake = FakeBox::new();
        let config = Config::parse("[storage]\npartitions = 4096\n", std::path::Path::new("x.toml")).unwrap();
        fake.sysctl("vm.max_map_count", "65530");
        assert_eq!(max_map_count(&config, &fake.host()).status, Status::Ok);
        fake.sysctl("vm.max_map_count", "16000");
        let finding = max_map_count(&config, &fake.host());
        assert_eq!(finding.recommended, ">= 16384");
        assert_eq!((finding.status, finding.fix.as_deref()), (Status::Fail, Some("sysctl -w vm.max_map_count=262144")));
    }

    #[test]
    fn swap_with_high_swappiness_is_a_warning() {
        let fake = FakeBox::new();
        assert_eq!(swap(&fake.host()).status, Status::Info);
        fake.file("/proc/swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n");
        assert_eq!(swap(&fake.host()).observed, "no swap");
        fake.file("/proc/swaps", "Filename Type Size Used Priority\n/swapfile file 2097148 0 -2\n/dev/sdb2 partition 4 0 -3\n");
        fake.sysctl("vm.swappiness", "60");
        let finding = swap(&fake.host());
        assert_eq!(finding.status, Status::Warn);
        assert_eq!(finding.observed, "2 GiB swap, vm.swappiness 60");
        assert_eq!(finding.fix.as_deref(), Some("sysctl -w vm.swappiness=1"));
        fake.sysctl("vm.swappiness", "1");
        assert_eq!(swap(&fake.host()).status, Status::Ok);
    }
}
