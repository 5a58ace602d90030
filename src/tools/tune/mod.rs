//! `sluice tune --check`: inspects the box sluice runs on (kernel, io_uring, limits,
//! sysctls, CPU and memory settings) against what a configuration needs, and prints one
//! finding per check with the command that fixes it. It only reads; changing the box is
//! the job of the scripts in `tuning/` (tuning/README.md).
//!
//! Every read goes through [`Host`]: files under a root directory plus the few facts
//! only a system call gives, so the unit tests run each check against a fake `/proc` and
//! `/sys` tree.

#![forbid(unsafe_code)]

mod cpu;
mod host;
mod kernel;
mod limits;
mod memory;
mod net;

use std::io::{self, Write};
use std::path::PathBuf;

use serde::Serialize;

use crate::config::Config;

pub use host::{Host, Live, UringProbe, format_cpu_list, parse_cpu_list};

const AFTER_HELP: &str = "\
--check is the only mode: sluice never changes the box itself. Apply the fixes with the
commands printed, or with the kit in tuning/ (sysctl.d/60-sluice.conf, irq-affinity.sh),
then run the check again; tuning/README.md gives the order.

Each line: status (ok, info, warn, fail), the check, the observed and the recommended
value, and for warn and fail the command that fixes it. --json prints the same as one
JSON object per line with the keys status, check, observed, recommended, fix, note.

Limits are those of this process: the systemd unit sets its own (LimitNOFILE=,
LimitMEMLOCK=). Without --config the embedded defaults are checked (ingest.shards = 0:
one shard per core this process may run on).

Exit status: 0 nothing failed (warnings do not fail), 1 a check failed, 2 bad usage or
configuration.";

/// `sluice tune` options.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct TuneArgs {
    /// Inspect this box and report (the only mode: changes are left to tuning/).
    #[arg(long, required = true)]
    pub check: bool,
    /// Configuration whose shards, connections and partitions the limits are checked against.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// One JSON object per finding instead of text.
    #[arg(long)]
    pub json: bool,
}

/// How a check came out. Only `Fail` makes `sluice tune --check` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As recommended.
    Ok,
    /// Nothing to judge (not exposed on this box) or nothing to change.
    Info,
    /// Works, but costs latency or throughput, or may break under load.
    Warn,
    /// sluice will not run, or will refuse work, as the box is.
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Info => "info",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One check's outcome. `fix` is set for every `Warn` and `Fail`: one shell command
/// (or the one configuration change) that brings the box to `recommended`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub status: Status,
    /// What was checked: a sysctl name, or a short dotted name (`rlimit.nofile`).
    pub check: &'static str,
    pub observed: String,
    pub recommended: String,
    pub fix: Option<String>,
    /// Why it matters, in a sentence; may be empty.
    pub note: String,
}

impl Finding {
    fn new(status: Status, check: &'static str, observed: impl Into<String>, recommended: impl Into<String>) -> Finding {
        Finding { status, check, observed: observed.into(), recommended: recommended.into(), fix: None, note: String::new() }
    }

    fn fix(mut self, command: impl Into<String>) -> Finding {
        self.fix = Some(command.into());
        self
    }

    fn note(mut self, note: impl Into<String>) -> Finding {
        self.note = note.into();
        self
    }

    /// One line of text: `status check observed ...; recommended ...[; fix: ...][ -- note]`.
    pub fn to_text(&self) -> String {
        let mut line =
            format!("{:<4}  {:<30} observed {}; recommended {}", self.status.as_str(), self.check, self.observed, self.recommended);
        if let Some(fix) = &self.fix {
            line.push_str("; fix: ");
            line.push_str(fix);
        }
        if !self.note.is_empty() {
            line.push_str(" -- ");
            line.push_str(&self.note);
        }
        line
    }

    /// One line of JSON with the keys status, check, observed, recommended, fix, note.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a Finding serializes: strings, an option and a unit enum")
    }
}

/// A sysctl that should be at least `wanted`; `status_if_low` when it is not.
fn sysctl_at_least(host: &Host, name: &'static str, wanted: u64, set_to: u64, status_if_low: Status) -> Finding {
    match host.sysctl_u64(name) {
        None => Finding::new(Status::Info, name, "not exposed", format!(">= {wanted}"))
            .note("no such sysctl here (a container, or a kernel without it): check it on the host"),
        Some(value) if value >= wanted => Finding::new(Status::Ok, name, value.to_string(), format!(">= {wanted}")),
        Some(value) => {
            Finding::new(status_if_low, name, value.to_string(), format!(">= {wanted}")).fix(format!("sysctl -w {name}={set_to}"))
        }
    }
}

/// Runs every check against `host` for `config`, in a fixed order.
pub fn check(config: &Config, host: &Host) -> Vec<Finding> {
    vec![
        kernel::io_uring(host),
        kernel::io_uring_disabled(host),
        kernel::version(host),
        kernel::locked_memory(config, host),
        limits::open_files(config, host),
        limits::nr_open(config, host),
        limits::file_max(config, host),
        net::somaxconn(host),
        net::syn_backlog(host),
        net::local_port_range(config, host),
        cpu::shards(config, host),
        cpu::governor(host),
        cpu::numa(host),
        memory::thp_enabled(host),
        memory::thp_defrag(host),
        memory::max_map_count(config, host),
        memory::swap(host),
        cpu::irqbalance(host),
        cpu::writeback_workers(config, host),
    ]
}

/// Writes the findings as text or JSON lines. A reader that closed the pipe early
/// (`| head`) is not an error.
pub fn write(findings: &[Finding], json: bool, out: &mut impl Write) -> io::Result<()> {
    let mut write_all = || {
        for finding in findings {
            writeln!(out, "{}", if json { finding.to_json() } else { finding.to_text() })?;
        }
        out.flush()
    };
    match write_all() {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}

/// `"18 checks: 12 ok, 2 info, 3 warn, 1 fail"`, for stderr.
pub fn summary(findings: &[Finding]) -> String {
    let count = |status| findings.iter().filter(|finding| finding.status == status).count();
    format!(
        "{} checks: {} ok, {} info, {} warn, {} fail",
        findings.len(),
        count(Status::Ok),
        count(Status::Info),
        count(Status::Warn),
        count(Status::Fail)
    )
}

#[cfg(test)]
mod tests {
    use super::host::fake::FakeBox;
    use super::*;

    #[test]
    fn every_check_runs_on_an_empty_tree_and_every_warning_has_a_fix() {
        let fake = FakeBox::new();
        let findings = check(&Config::defaults(), &fake.host());
        assert_eq!(findings.len(), 19);
        for finding in &findings {
            if finding.status >= Status::Warn {
                assert!(finding.fix.is_some(), "{finding:?}");
            }
        }
    }

    #[test]
    fn text_and_json_lines_carry_every_field() {
        let finding = Finding::new(Status::Warn, "net.core.somaxconn", "128", ">= 4096")
            .fix("sysctl -w net.core.somaxconn=4096")
            .note("the backlog is capped");
        assert_eq!(
            finding.to_text(),
            "warn  net.core.somaxconn             observed 128; recommended >= 4096; fix: sysctl -w net.core.somaxconn=4096 -- the backlog is capped"
        );
        let value: serde_json::Value = serde_json::from_str(&finding.to_json()).unwrap();
        assert_eq!(value["status"], "warn");
        assert_eq!(value["check"], "net.core.somaxconn");
        assert_eq!(value["observed"], "128");
        assert_eq!(value["recommended"], ">= 4096");
        assert_eq!(value["fix"], "sysctl -w net.core.somaxconn=4096");
        assert_eq!(value["note"], "the backlog is capped");
        let ok: serde_json::Value = serde_json::from_str(&Finding::new(Status::Ok, "x", "1", "1").to_json()).unwrap();
        assert!(ok["fix"].is_null());
    }

    #[test]
    fn sysctl_at_least_judges_low_missing_and_enough() {
        let fake = FakeBox::new();
        fake.sysctl("net.core.somaxconn", "128");
        let low = sysctl_at_least(&fake.host(), "net.core.somaxconn", 4096, 8192, Status::Warn);
        assert_eq!((low.status, low.fix.as_deref()), (Status::Warn, Some("sysctl -w net.core.somaxconn=8192")));
        fake.sysctl("net.core.somaxconn", "4096");
        assert_eq!(sysctl_at_least(&fake.host(), "net.core.somaxconn", 4096, 8192, Status::Warn).status, Status::Ok);
        assert_eq!(sysctl_at_least(&fake.host(), "net.core.nothing", 1, 1, Status::Fail).status, Status::Info);
    }

    #[test]
    fn summary_counts_by_status() {
        let findings = [Status::Ok, Status::Ok, Status::Info, Status::Warn, Status::Fail].map(|status| Finding::new(status, "x", "", ""));
        assert_eq!(summary(&findings), "5 checks: 2 ok, 1 info, 1 warn, 1 fail");
    }
}
