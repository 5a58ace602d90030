//! CPUs: shards against cores, the frequency governor, NUMA nodes, and irqbalance (which
//! would move NIC interrupts back onto shard cores).

use std::collections::BTreeMap;

use super::{Finding, Host, Status, format_cpu_list};
use crate::config::Config;

/// Shards against online cores: two shards on one core preempt each other, and each
/// holds requests while the other runs.
pub fn shards(config: &Config, host: &Host) -> Finding {
    let check = "cpu.shards";
    let shards = config.ingest.shards;
    let Some(cpus) = host.online_cpus() else {
        return Finding::new(Status::Info, check, format!("{shards} shards, online cores not exposed"), "<= online cores");
    };
    let observed = format!("{shards} shards on {} online cores ({})", cpus.len(), format_cpu_list(&cpus));
    if shards > cpus.len() {
        Finding::new(Status::Warn, check, observed, format!("<= {}", cpus.len()))
            .fix("set shards = 0 under [ingest] in the configuration (one shard per core)")
            .note("shards sharing a core preempt each other and add their time slices to latency")
    } else {
        Finding::new(Status::Ok, check, observed, format!("<= {}", cpus.len()))
            .note("with NIC interrupts on cores of their own (tuning/irq-affinity.sh), keep shards off them: CPUAffinity= and shards = 0")
    }
}

/// The kernel's writeback workers (the `writeback` workqueue) against the shard cores.
/// With the dedup index and the segments in shared mappings, the flusher writes their
/// dirty pages back every few seconds; on a shard's core it preempts the shard (measured:
/// p99 3.9–10.5 ms against 3.2–4.3 ms at 50k events/s with it moved, docs/PERFORMANCE.md).
pub fn writeback_workers(config: &Config, host: &Host) -> Finding {
    let check = "kernel.writeback_cpumask";
    let path = "/sys/devices/virtual/workqueue/writeback/cpumask";
    let (Some(cpus), Some(mask)) = (host.online_cpus(), host.read(path).and_then(|text| parse_hex_mask(&text))) else {
        return Finding::new(Status::Info, check, "not exposed", "cores without shards");
    };
    // Shards take the first cores the process may run on (`serve.rs`); here, the first
    // online ones.
    let shard_cores: Vec<u32> = cpus.iter().copied().take(config.ingest.shards).collect();
    let free: Vec<u32> = cpus.iter().copied().filter(|cpu| !shard_cores.contains(cpu)).collect();
    let observed = format!("writeback on {}", format_cpu_list(&mask));
    if free.is_empty() {
        return Finding::new(Status::Info, check, observed, "cores without shards")
            .note("every core runs a shard, so writeback shares them; with more cores than shards, keep it off the shard cores");
    }
    let recommended = format_cpu_list(&free);
    if mask.iter().any(|cpu| shard_cores.contains(cpu)) {
        Finding::new(Status::Warn, check, observed, recommended)
            .fix(format!(
                "echo {} > {path}   (not kept across reboots: add it to the unit that runs tuning/irq-affinity.sh)",
                hex_mask(&free)
            ))
            .note("the flusher writing back mapped segments and dedup tables preempts the shard on its core")
    } else {
        Finding::new(Status::Ok, check, observed, recommended)
    }
}

/// A sysfs CPU mask (`3`, `ff,ffffffff`) as CPU numbers.
fn parse_hex_mask(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    let groups: Vec<&str> = text.trim().split(',').collect();
    for (index, group) in groups.iter().rev().enumerate() {
        let bits = u32::from_str_radix(group, 16).ok()?;
        cpus.extend((0..32).filter(|bit| bits & (1 << bit) != 0).map(|bit| index as u32 * 32 + bit));
    }
    cpus.sort_unstable();
    Some(cpus)
}

/// CPU numbers as a sysfs CPU mask.
fn hex_mask(cpus: &[u32]) -> String {
    let groups = cpus.iter().map(|cpu| cpu / 32 + 1).max().unwrap_or(1) as usize;
    let mut words = vec![0u32; groups];
    for cpu in cpus {
        words[(cpu / 32) as usize] |= 1 << (cpu % 32);
    }
    words.iter().rev().map(|word| format!("{word:x}")).collect::<Vec<_>>().join(",")
}

/// The cpufreq governor of every online core.
pub fn governor(host: &Host) -> Finding {
    let check = "cpu.governor";
    let recommended = "performance on every core";
    let mut by_governor: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for cpu in host.online_cpus().unwrap_or_default() {
        if let Some(governor) = host.read(&format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor")) {
            by_governor.entry(governor).or_default().push(cpu);
        }
    }
    if by_governor.is_empty() {
        return Finding::new(Status::Info, check, "not exposed", recommended)
            .note("no cpufreq here (a VM, or frequency left to firmware): nothing to set from this box");
    }
    let observed: Vec<String> = by_governor.iter().map(|(governor, cpus)| format!("{governor} on {}", format_cpu_list(cpus))).collect();
    if by_governor.keys().all(|governor| governor == "performance") {
        Finding::new(Status::Ok, check, observed.join(", "), recommended)
    } else {
        Finding::new(Status::Warn, check, observed.join(", "), recommended)
            .fix("cpupower frequency-set -g performance")
            .note("a core clocking up from idle adds tens of microseconds to the first requests of a burst")
    }
}

/// NUMA nodes: with more than one, shards and the NIC belong on the same node.
pub fn numa(host: &Host) -> Finding {
    let check = "numa.nodes";
    let nodes: Vec<String> = host
        .list("/sys/devices/system/node")
        .into_iter()
        .filter(|name| name.strip_prefix("node").is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())))
        .collect();
    match nodes.len() {
        0 => Finding::new(Status::Info, check, "not exposed", "1, or shards on the NIC's node"),
        1 => Finding::new(Status::Ok, check, "1 node", "1, or shards on the NIC's node"),
        count => {
            let node = nic_node(host).map_or_else(|| "N".to_owned(), |node| node.to_string());
            Finding::new(Status::Warn, check, format!("{count} nodes"), "shards and memory on the NIC's node")
                .fix(format!("numactl --cpunodebind={node} --membind={node} sluice serve ...  # the NIC's node: cat /sys/class/net/IFACE/device/numa_node"))
                .note("a shard on the far node pays a cross-node hop for every packet and every buffer")
        }
    }
}

/// The NUMA node of the box's network devices, if they all sit on one.
fn nic_node(host: &Host) -> Option<u32> {
    let mut nodes: Vec<u32> = host
        .list("/sys/class/net")
        .iter()
        .filter_map(|iface| host.read(&format!("/sys/class/net/{iface}/device/numa_node"))?.parse::<i64>().ok())
        .filter_map(|node| u32::try_from(node).ok())
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    if nodes.len() == 1 { nodes.first().copied() } else { None }
}

/// Processes scanned for irqbalance at most (pid_max is at most 4M).
const PROCESSES_SCANNED_MAX: usize = 1 << 22;

/// irqbalance rewrites IRQ affinity every few seconds, undoing tuning/irq-affinity.sh.
pub fn irqbalance(host: &Host) -> Finding {
    let check = "irqbalance";
    let pids: Vec<String> = host
        .list("/proc")
        .into_iter()
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .take(PROCESSES_SCANNED_MAX)
        .filter(|pid| host.read(&format!("/proc/{pid}/comm")).as_deref() == Some("irqbalance"))
        .collect();
    if pids.is_empty() {
        return Finding::new(Status::Ok, check, "not running", "not running");
    }
    Finding::new(Status::Warn, check, format!("running (pid {})", pids.join(",")), "not running")
        .fix("systemctl disable --now irqbalance")
        .note("it moves NIC interrupts back onto shard cores; or ban them: IRQBALANCE_BANNED_CPULIST=<shard cores> in /etc/default/irqbalance")
}

#[cfg(test)]
mod tests {
    use super::super::host::fake::FakeBox;
    use super::*;

    fn config(shards: usize) -> Config {
        Config::parse(&format!("[ingest]\nshards = {shards}\n"), std::path::Path::new("x.toml")).unwrap()
    }

    #[test]
    fn more_shards_than_cores_is_a_warning() {
        let fake = FakeBox::new();
        assert_eq!(shards(&config(4), &fake.host()).status, Status::Info);
        fake.file("/sys/devices/system/cpu/online", "0-3\n");
        let finding = shards(&config(4), &fake.host());
        assert_eq!(finding.status, Status::Ok);
        assert_eq!(finding.observed, "4 shards on 4 online cores (0-3)");
        let finding = shards(&config(6), &fake.host());
        assert_eq!(finding.status, Status::Warn);
        assert!(finding.fix.unwrap().contains("shards = 0"));
    }

    #[test]
    fn writeback_workers_belong_off_the_shard_cores() {
        let fake = FakeBox::new();
        assert_eq!(writeback_workers(&config(2), &fake.host()).status, Status::Info);
        fake.file("/sys/devices/system/cpu/online", "0-3\n");
        fake.file("/sys/devices/virtual/workqueue/writeback/cpumask", "f\n");
        let finding = writeback_workers(&config(2), &fake.host());
        assert_eq!(finding.status, Status::Warn);
        assert!(finding.to_text().contains("echo c > /sys/devices/virtual/workqueue/writeback/cpumask"), "{}", finding.to_text());
        fake.file("/sys/devices/virtual/workqueue/writeback/cpumask", "c\n");
        assert_eq!(writeback_workers(&config(2), &fake.host()).status, Status::Ok);
        assert_eq!(writeback_workers(&config(4), &fake.host()).status, Status::Info, "no core without a shard");
        assert_eq!(parse_hex_mask("1,00000001"), Some(vec![0, 32]));
        assert_eq!(hex_mask(&[0, 32]), "1,1");
    }

    #[test]
    fn governor_must_be_performance_everywhere_and_absent_is_info() {
        let fake = FakeBox::new();
        fake.file("/sys/devices/system/cpu/online", "0-3\n");
        assert_eq!(governor(&fake.host()).status, Status::Info);
        for cpu in 0..4 {
            fake.file(&format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"), "performance\n");
        }
        assert_eq!(governor(&fake.host()).status, Status::Ok);
        fake.file("/sys/devices/system/cpu/cpu2/cpufreq/scaling_governor", "powersave\n");
        fake.file("/sys/devices/system/cpu/cpu3/cpufreq/scaling_governor", "powersave\n");
        let finding = governor(&fake.host());
        assert_eq!(finding.status, Status::Warn);
        assert_eq!(finding.observed, "performance on 0-1, powersave on 2-3");
        assert_eq!(finding.fix.as_deref(), Some("cpupower frequency-set -g performance"));
    }

    #[test]
    fn numa_nodes_are_counted() {
        let fake = FakeBox::new();
        assert_eq!(numa(&fake.host()).status, Status::Info);
        fake.file("/sys/devices/system/node/node0/cpulist", "0-7").file("/sys/devices/system/node/online", "0");
        assert_eq!(numa(&fake.host()).status, Status::Ok);
        fake.file("/sys/devices/system/node/node1/cpulist", "8-15");
        let finding = numa(&fake.host());
        assert_eq!((finding.status, finding.observed.as_str()), (Status::Warn, "2 nodes"));
        assert!(finding.fix.unwrap().starts_with("numactl --cpunodebind=N --membind=N "));
        fake.file("/sys/class/net/lo/mtu", "65536").file("/sys/class/net/eth0/device/numa_node", "1");
        assert!(numa(&fake.host()).fix.unwrap().starts_with("numactl --cpunodebind=1 --membind=1 "));
    }

    #[test]
    fn irqbalance_is_found_by_its_comm() {
        let fake = FakeBox::new();
        fake.file("/proc/1/comm", "systemd\n").file("/proc/self/comm", "irqbalance\n");
        assert_eq!(irqbalance(&fake.host()).status, Status::Ok);
        fake.file("/proc/731/comm", "irqbalance\n");
        let finding = irqbalance(&fake.host());
        assert_eq!((finding.status, finding.observed.as_str()), (Status::Warn, "running (pid 731)"));
        assert_eq!(finding.fix.as_deref(), Some("systemctl disable --now irqbalance"));
    }
}
