//! Open connections per client address, over all shards. Touched only at accept and at
//! close, never per request: a striped table of `Mutex<HashMap>`, so two shards
//! accepting from different addresses rarely meet on a lock (docs/DECISIONS.md).
//!
//! Bounded: an address has an entry only while it holds a connection, so the table
//! never has more entries than open connections (`shards x connections_max`).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Lock stripes; a power of two well above the shard count of one host.
const STRIPES: usize = 64;

/// One client: an IPv4 address, or the /64 an IPv6 host is given (a host can pick any
/// address inside it, so counting whole addresses would not limit anybody).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ClientKey {
    V4([u8; 4]),
    V6Prefix([u8; 8]),
}

impl ClientKey {
    fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(v4.octets()),
                None => {
                    let octets = v6.octets();
                    ClientKey::V6Prefix(octets[..8].try_into().expect("16 octets"))
                }
            },
        }
    }
}

pub struct ConnectionsPerIp {
    /// 0: no limit, and the table is never touched.
    limit: usize,
    /// Keyed SipHash (random per process), so clients cannot aim at one stripe.
    hasher: RandomState,
    stripes: Box<[Mutex<HashMap<ClientKey, u32>>]>,
}

impl ConnectionsPerIp {
    pub fn new(limit: usize) -> ConnectionsPerIp {
        ConnectionsPerIp { limit, hasher: RandomState::new(), stripes: (0..STRIPES).map(|_| Mutex::default()).collect() }
    }

    fn stripe(&self, key: &ClientKey) -> std::sync::MutexGuard<'_, HashMap<ClientKey, u32>> {
        let index = self.hasher.hash_one(key) as usize % STRIPES;
        self.stripes[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a new connection from `ip`; false (and nothing counted) if `ip` already
    /// holds the limit.
    pub fn try_acquire(&self, ip: IpAddr) -> bool {
        if self.limit == 0 {
            return true;
        }
        let key = ClientKey::of(ip);
        let mut stripe = self.stripe(&key);
        let count = stripe.entry(key).or_insert(0);
        if *count as usize >= self.limit {
            if *count == 0 {
                stripe.remove(&key);
            }
            return false;
        }
        *count += 1;
        true
    }

    /// A connection counted by [`ConnectionsPerIp::try_acquire`] has closed.
    pub fn release(&self, ip: IpAddr) {
        if self.limit == 0 {
            return;
        }
        let key = ClientKey::of(ip);
        let mut stripe = self.stripe(&key);
        if let Some(count) = stripe.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                stripe.remove(&key);
            }
        }
    }

    /// Counts a new connection from `ip` and returns the place it holds, given back when
    /// the guard is dropped; `None` (nothing counted) if `ip` already holds the limit.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<PerIpGuard> {
        self.try_acquire(ip).then(|| PerIpGuard { table: Arc::clone(self), ip })
    }

    /// Addresses holding at least one connection (for tests).
    pub fn clients(&self) -> usize {
        self.stripes.iter().map(|stripe| stripe.lock().unwrap_or_else(PoisonError::into_inner).len()).sum()
    }
}

/// One connection's place in the per-IP table; dropping it gives the place back, so a
/// slot releases its count exactly once, whichever way the connection ends.
#[derive(Debug)]
pub struct PerIpGuard {
    table: Arc<ConnectionsPerIp>,
    ip: IpAddr,
}

impl Drop for PerIpGuard {
    fn drop(&mut self) {
        self.table.release(self.ip);
    }
}

impl std::fmt::Debug for ConnectionsPerIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionsPerIp").field("limit", &self.limit).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_holds_per_address_and_a_close_frees_a_place() {
        let table = ConnectionsPerIp::new(2);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        assert!(table.try_acquire(a) && table.try_acquire(a));
        assert!(!table.try_acquire(a), "third from the same address");
        assert!(table.try_acquire(b), "another address has its own count");
        table.release(a);
        assert!(table.try_acquire(a), "a close frees a place");
        for _ in 0..2 {
            table.release(a);
        }
        table.release(b);
        assert_eq!(table.clients(), 0, "entries go away at zero, so the table stays bounded");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_counts_as_v4() {
        let table = ConnectionsPerIp::new(1);
        assert!(table.try_acquire("2001:db8::1".parse().expect("ip")));
        assert!(!table.try_acquire("2001:db8::2".parse().expect("ip")), "same /64");
        assert!(table.try_acquire("2001:db8:0:1::1".parse().expect("ip")), "another /64");
        assert!(table.try_acquire("192.0.2.7".parse().expect("ip")));
        assert!(!table.try_acquire("::ffff:192.0.2.7".parse().expect("ip")), "mapped is the same client");
    }

    #[test]
    fn a_guard_gives_its_place_back_when_dropped() {
        let table = Arc::new(ConnectionsPerIp::new(1));
        let ip: IpAddr = "10.0.0.9".parse().expect("ip");
        let guard = table.admit(ip).expect("first connection");
        assert!(table.admit(ip).is_none(), "over the limit");
        drop(guard);
        assert_eq!(table.clients(), 0);
        assert!(table.admit(ip).is_some(), "the place is free again");
    }

    #[test]
    fn zero_means_no_limit() {
        let table = ConnectionsPerIp::new(0);
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        assert!((0..10_000).all(|_| table.try_acquire(ip)));
        assert_eq!(table.clients(), 0);
    }
}
