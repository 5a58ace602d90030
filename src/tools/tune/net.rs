//! Network sysctls: the accept and SYN queues against the listen backlog, and the
//! ephemeral port range against the ports sluice listens on.

use super::{Finding, Host, Status, sysctl_at_least};
use crate::config::Config;
use crate::constants::LISTEN_BACKLOG;

/// What the kit sets `tcp_max_syn_backlog` to: with syncookies off the kernel drops
/// unproven peers once the SYN queue is three quarters full, so twice the listen backlog
/// keeps the whole backlog usable.
const SYN_BACKLOG_SET_TO: u64 = 2 * LISTEN_BACKLOG as u64;

/// `net.core.somaxconn` silently caps every listen backlog, ours is 4096 per shard socket.
pub fn somaxconn(host: &Host) -> Finding {
    let backlog = LISTEN_BACKLOG as u64;
    sysctl_at_least(host, "net.core.somaxconn", backlog, backlog, Status::Warn)
        .note("caps each shard socket's listen backlog (4096): a burst of connects past it is dropped")
}

/// `net.ipv4.tcp_max_syn_backlog`: half-open connections per listener.
pub fn syn_backlog(host: &Host) -> Finding {
    sysctl_at_least(host, "net.ipv4.tcp_max_syn_backlog", LISTEN_BACKLOG as u64, SYN_BACKLOG_SET_TO, Status::Warn)
        .note("half-open connections per socket; below the listen backlog a SYN burst is dropped or answered with cookies")
}

/// Parses `ip_local_reserved_ports` (`8080,9000-9010`).
fn parse_ports(text: &str) -> Option<Vec<(u16, u16)>> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once('-') {
            Some((first, last)) => Some((first.parse().ok()?, last.parse().ok()?)),
            None => part.parse().ok().map(|port| (port, port)),
        })
        .collect()
}

/// `net.ipv4.ip_local_port_range`: an outgoing connection that takes a listener's port
/// makes `serve` fail to bind at its next start (EADDRINUSE), so no listener port may be
/// inside the range unless it is reserved.
pub fn local_port_range(config: &Config, host: &Host) -> Finding {
    let check = "net.ipv4.ip_local_port_range";
    let recommended = "no listener port inside unless reserved (60-sluice.conf: 10240 65535)";
    let Some(text) = host.sysctl(check) else {
        return Finding::new(Status::Info, check, "not exposed", recommended);
    };
    let mut bounds = text.split_whitespace().map(str::parse::<u16>);
    let (Some(Ok(low)), Some(Ok(high))) = (bounds.next(), bounds.next()) else {
        return Finding::new(Status::Info, check, text, recommended).note("cannot read two ports from it");
    };
    let reserved_text = host.sysctl("net.ipv4.ip_local_reserved_ports").unwrap_or_default();
    let reserved = parse_ports(&reserved_text).unwrap_or_default();
    let mut ports: Vec<u16> = [Some(config.ingest.listen), config.ingest.tls.as_ref().map(|tls| tls.listen), Some(config.admin.listen)]
        .into_iter()
        .flatten()
        .map(|addr| addr.port())
        .filter(|&port| port != 0)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    let clashing: Vec<u16> = ports
        .into_iter()
        .filter(|port| (low..=high).contains(port) && !reserved.iter().any(|(first, last)| (first..=last).contains(&port)))
        .collect();
    let observed = format!("{low} {high}");
    if clashing.is_empty() {
        return Finding::new(Status::Ok, check, observed, recommended);
    }
    let mut reserve: Vec<String> = reserved_text.split(',').map(str::trim).filter(|part| !part.is_empty()).map(str::to_owned).collect();
    reserve.extend(clashing.iter().map(u16::to_string));
    let clashing: Vec<String> = clashing.iter().map(u16::to_string).collect();
    Finding::new(Status::Warn, check, format!("{observed} (holds listener ports {})", clashing.join(",")), recommended)
        .fix(format!("sysctl -w net.ipv4.ip_local_reserved_ports={}", reserve.join(",")))
        .note("an outgoing connection may take a listener's port and make the next start fail to bind")
}

#[cfg(test)]
mod tests {
    use super::super::host::fake::FakeBox;
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text, std::path::Path::new("x.toml")).unwrap()
    }

    #[test]
    fn somaxconn_against_the_listen_backlog() {
        let fake = FakeBox::new();
        fake.sysctl("net.core.somaxconn", "128");
        let finding = somaxconn(&fake.host());
        assert_eq!((finding.status, finding.fix.as_deref()), (Status::Warn, Some("sysctl -w net.core.somaxconn=4096")));
        fake.sysctl("net.core.somaxconn", "4096");
        assert_eq!(somaxconn(&fake.host()).status, Status::Ok);
    }

    #[test]
    fn syn_backlog_against_the_listen_backlog() {
        let fake = FakeBox::new();
        fake.sysctl("net.ipv4.tcp_max_syn_backlog", "2048");
        let finding = syn_backlog(&fake.host());
        assert_eq!((finding.status, finding.fix.as_deref()), (Status::Warn, Some("sysctl -w net.ipv4.tcp_max_syn_backlog=8192")));
        fake.sysctl("net.ipv4.tcp_max_syn_backlog", "8192");
        assert_eq!(syn_backlog(&fake.host()).status, Status::Ok);
    }

    #[test]
    fn port_range_must_not_hold_a_listener_port_unless_reserved() {
        let fake = FakeBox::new();
        let ours = config("[ingest]\nlisten = \"0.0.0.0:40000\"\n[admin]\nlisten = \"127.0.0.1:9090\"\n");
        fake.sysctl("net.ipv4.ip_local_port_range", "32768\t60999").sysctl("net.ipv4.ip_local_reserved_ports", "");
        let finding = local_port_range(&ours, &fake.host());
        assert_eq!(finding.status, Status::Warn, "{finding:?}");
        assert_eq!(finding.fix.as_deref(), Some("sysctl -w net.ipv4.ip_local_reserved_ports=40000"));
        fake.sysctl("net.ipv4.ip_local_reserved_ports", "39000-40010");
        assert_eq!(local_port_range(&ours, &fake.host()).status, Status::Ok);
        fake.sysctl("net.ipv4.ip_local_reserved_ports", "7000").sysctl("net.ipv4.ip_local_port_range", "1024 65535");
        let finding = local_port_range(&ours, &fake.host());
        assert_eq!(finding.fix.as_deref(), Some("sysctl -w net.ipv4.ip_local_reserved_ports=7000,9090,40000"));
        fake.sysctl("net.ipv4.ip_local_port_range", "10240 65535");
        assert_eq!(local_port_range(&config(""), &fake.host()).status, Status::Ok);
        fake.sysctl("net.ipv4.ip_local_port_range", "garbage");
        assert_eq!(local_port_range(&config(""), &fake.host()).status, Status::Info);
    }
}
