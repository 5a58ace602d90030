//! The ingest listeners: one SO_REUSEPORT socket per shard on the same address, so the
//! kernel spreads connections over the shards.
//!
//! SO_REUSEPORT would just as well let a second `sluice serve` (or anything else run by
//! the same user) join the group and silently take a share of the traffic, answering
//! other producers with its own keys. So the address must be free before the shards bind
//! it: a probe without SO_REUSEPORT fails if anything listens there, and after binding,
//! the kernel's socket table must show no listener on the port but ours. Either check
//! failing names the address and, when `/proc` lets us see it, the process holding it.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use socket2::{Domain, Protocol, Socket, Type};

use crate::constants::LISTEN_BACKLOG;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {addr}: {source}")]
    Io { addr: SocketAddr, source: io::Error },
    #[error("cannot listen on {addr}: the address is already in use by {holder}; stop it or choose another address")]
    InUse { addr: SocketAddr, holder: String },
}

/// One SO_REUSEPORT socket per shard on `addr`, refused when anything else listens
/// there; with port 0 the first socket's port is shared by the rest. Returns the
/// sockets and the address they are bound to.
pub fn shard_listeners(addr: SocketAddr, shards: usize) -> Result<(Vec<OwnedFd>, SocketAddr), ListenError> {
    if addr.port() != 0 {
        ensure_free(addr)?;
    }
    let first = reuseport_listener(addr)?;
    let bound = first.local_addr().map_err(|source| ListenError::Io { addr, source })?.as_socket().unwrap_or(addr);
    let mut sockets = vec![OwnedFd::from(first)];
    for _ in 1..shards {
        sockets.push(OwnedFd::from(reuseport_listener(bound)?));
    }
    // Another process binding between the probe and our sockets would share the group.
    let ours: Vec<u64> = sockets.iter().filter_map(socket_inode).collect();
    if let Some(inode) = listening_inodes(bound).into_iter().find(|inode| !ours.contains(inode)) {
        return Err(ListenError::InUse { addr: bound, holder: holder_of(inode) });
    }
    Ok((sockets, bound))
}

fn reuseport_listener(addr: SocketAddr) -> Result<Socket, ListenError> {
    let wrap = |source| ListenError::Io { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), Some(Protocol::TCP)).map_err(wrap)?;
    socket.set_reuse_address(true).map_err(wrap)?;
    socket.set_reuse_port(true).map_err(wrap)?;
    socket.bind(&addr.into()).map_err(wrap)?;
    socket.listen(LISTEN_BACKLOG).map_err(wrap)?;
    Ok(socket)
}

/// Binds `addr` without SO_REUSEPORT and lets it go: that fails while any socket
/// listens there (with or without SO_REUSEPORT), but not for connections of an earlier
/// run lingering in TIME_WAIT (SO_REUSEADDR).
fn ensure_free(addr: SocketAddr) -> Result<(), ListenError> {
    let wrap = |source| ListenError::Io { addr, source };
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), Some(Protocol::TCP)).map_err(wrap)?;
    probe.set_reuse_address(true).map_err(wrap)?;
    match probe.bind(&addr.into()) {
        Ok(()) => Ok(()),
        Err(error) if error.raw_os_error() == Some(libc::EADDRINUSE) => {
            let holder = listening_inodes(addr).first().map_or_else(|| "another socket".to_owned(), |inode| holder_of(*inode));
            Err(ListenError::InUse { addr, holder })
        }
        Err(source) => Err(ListenError::Io { addr, source }),
    }
}

/// The inode of a socket (what `/proc/net/tcp` and `/proc/<pid>/fd` name it by).
fn socket_inode(socket: &OwnedFd) -> Option<u64> {
    fs::metadata(format!("/proc/self/fd/{}", socket.as_raw_fd())).ok().map(|meta| meta.ino())
}

/// Inodes of the TCP sockets listening on `addr`'s port at an address that overlaps it
/// (the same one, or a wildcard on either side), from `/proc/net/tcp` and `tcp6`.
fn listening_inodes(addr: SocketAddr) -> Vec<u64> {
    let mut inodes = Vec::new();
    let mut read = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        // tcp6 is absent where IPv6 is off; both absent means the check saw nothing.
        let Ok(text) = fs::read_to_string(table) else { continue };
        read += 1;
        inodes.extend(text.lines().skip(1).filter_map(|line| listener_line(line, addr)));
    }
    if read == 0 {
        tracing::warn!(%addr, "cannot read /proc/net/tcp: a process sharing this address through SO_REUSEPORT would go unnoticed");
    }
    inodes
}

/// The inode of one `/proc/net/tcp*` line if it is a listener overlapping `addr`.
fn listener_line(line: &str, addr: SocketAddr) -> Option<u64> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    const LISTEN: &str = "0A";
    if fields.len() < 10 || fields[3] != LISTEN {
        return None;
    }
    let (ip_hex, port_hex) = fields[1].split_once(':')?;
    if u16::from_str_radix(port_hex, 16).ok()? != addr.port() {
        return None;
    }
    let ip = parse_proc_ip(ip_hex)?;
    let overlaps = ip == addr.ip() || ip.is_unspecified() || addr.ip().is_unspecified() || ip.to_canonical() == addr.ip().to_canonical();
    overlaps.then(|| fields[9].parse().ok()).flatten()
}

/// An address as `/proc/net/tcp*` prints it: 32-bit words in host (little-endian) order.
fn parse_proc_ip(hex: &str) -> Option<IpAddr> {
    let word = |chunk: &str| u32::from_str_radix(chunk, 16).ok().map(u32::swap_bytes);
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(hex)?))),
        32 => {
            let mut octets = [0u8; 16];
            for (index, chunk) in octets.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(&hex[index * 8..index * 8 + 8])?.to_be_bytes());
            }
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}

/// `pid N (comm)` of the process holding socket `inode`, as far as `/proc` shows it.
fn holder_of(inode: u64) -> String {
    let target = format!("socket:[{inode}]");
    let Ok(processes) = fs::read_dir("/proc") else { return "another process".to_owned() };
    for process in processes.flatten() {
        let Some(pid) = process.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let Ok(fds) = fs::read_dir(process.path().join("fd")) else { continue };
        let holds = fds.flatten().any(|fd| fs::read_link(fd.path()).is_ok_and(|link| link == Path::new(&target)));
        if holds {
            let comm = fs::read_to_string(process.path().join("comm")).unwrap_or_default();
            return format!("pid {pid} ({})", comm.trim());
        }
    }
    "another process (not visible to this user)".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_addresses_parse_in_host_order() {
        assert_eq!(parse_proc_ip("0100007F"), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(parse_proc_ip("00000000000000000000000001000000"), Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        let line = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0";
        assert_eq!(listener_line(line, "127.0.0.1:8080".parse().unwrap()), Some(4242));
        assert_eq!(listener_line(line, "0.0.0.0:8080".parse().unwrap()), Some(4242), "a wildcard overlaps");
        assert_eq!(listener_line(line, "127.0.0.1:8081".parse().unwrap()), None);
        assert_eq!(listener_line(line, "10.0.0.1:8080".parse().unwrap()), None);
    }

    #[test]
    fn an_address_held_by_a_plain_listener_is_refused_and_named() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        match shard_listeners(addr, 2) {
            Err(ListenError::InUse { addr: refused, holder }) => {
                assert_eq!(refused, addr);
                assert!(holder.contains(&std::process::id().to_string()), "{holder}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_address_held_by_another_reuseport_group_is_refused() {
        let (first, addr) = shard_listeners("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        assert_eq!(first.len(), 2);
        assert!(matches!(shard_listeners(addr, 2), Err(ListenError::InUse { .. })));
        drop(first);
        let (again, _) = shard_listeners(addr, 2).expect("free again once the first group is closed");
        assert_eq!(again.len(), 2);
    }
}
