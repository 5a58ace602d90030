//! Rate limits (SPEC §7): GCRA per client address, per partner and per key id, shared
//! by every shard with no lock on the request path.
//!
//! GCRA ("generic cell rate algorithm") keeps one number per key, its *theoretical
//! arrival time* (TAT): the instant the key's bucket would be empty again. A request at
//! `now` is let in when `max(TAT, now) - now <= tolerance` and then moves TAT on by one
//! emission interval; that is one compare-and-swap of one `AtomicU64`, the model of the
//! `governor` crate. With `interval = 1 s / rate_per_sec` and `tolerance = burst x
//! interval`, an idle client may send `burst + 1` requests at once and then one per
//! interval: exactly nginx's `limit_req zone=… rate=R r/s; limit_req burst=B nodelay;`,
//! the article's form, so `rate_per_sec = R, burst = B` reads the same (docs/OPERATIONS.md
//! § Rate limits).
//!
//! Keys live in fixed tables of slots (key fingerprint, TAT), looked up in groups of
//! [`GROUP`] slots: a table never grows, whatever addresses a flood brings. A slot whose
//! TAT has passed holds nothing a fresh key would not (its bucket is full again), so it
//! is taken by the next key that needs a place, and [`RateLimits::sweep`] empties such
//! slots once a second. When a whole group is busy the slot closest to refilled is
//! taken (counted as an eviction): under a flood of fresh addresses the ones that sent
//! least lose their place first (they come back with a full bucket, which they nearly
//! had), while an address that has spent its burst, whose TAT is the furthest ahead,
//! keeps its place and stays limited.

use std::hash::{BuildHasher, Hash, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::perimeter::partners::Cidr;

/// Slots looked at for one key (two cache lines of 16-byte slots).
pub const GROUP: usize = 8;
/// Slots of the per-address table (2 MiB): the number of addresses limited at once.
pub const IP_SLOTS: usize = 1 << 17;
/// Slots of the per-partner and per-kid table.
pub const NAME_SLOTS: usize = 1 << 12;
/// Rules a configuration may hold.
pub const RULES_MAX: usize = 1024;

/// What a rule counts requests by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Per {
    Ip,
    Partner,
    Kid,
}

impl Per {
    pub fn name(self) -> &'static str {
        match self {
            Per::Ip => "ip",
            Per::Partner => "partner",
            Per::Kid => "kid",
        }
    }

    pub const ALL: [Per; 3] = [Per::Ip, Per::Partner, Per::Kid];
}

/// Which keys a rule covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `"*"`: every key of its kind (the most general rule).
    Any,
    /// A partner name or a kid.
    Name(Box<str>),
    /// An address block (`per = "ip"` only).
    Block(Cidr),
}

/// One `[[limits.rate]]` table, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RateRule {
    pub per: Per,
    pub matches: Match,
    pub rate_per_sec: f64,
    pub burst: u32,
}

impl RateRule {
    /// How specific the rule is: a name beats `*`; a longer prefix beats a shorter one.
    fn specificity(&self) -> u16 {
        match &self.matches {
            Match::Any => 0,
            Match::Block(cidr) => 1 + u16::from(cidr.prefix_bits()),
            Match::Name(_) => 1000,
        }
    }
}

/// A rule's cell timing, in nanoseconds.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    interval_ns: u64,
    tolerance_ns: u64,
}

impl Gcra {
    fn of(rule: &RateRule) -> Gcra {
        let interval_ns = ((1e9 / rule.rate_per_sec).round() as u64).max(1);
        Gcra { interval_ns, tolerance_ns: interval_ns.saturating_mul(u64::from(rule.burst)) }
    }

    /// Lets a request in at `now_ns` (moving `tat` on) or says how long until one would be.
    fn check(self, tat: &AtomicU64, now_ns: u64) -> Result<(), u64> {
        let mut current = tat.load(Ordering::Relaxed);
        loop {
            let base = current.max(now_ns);
            let ahead = base - now_ns;
            if ahead > self.tolerance_ns {
                return Err(ahead - self.tolerance_ns);
            }
            match tat.compare_exchange_weak(current, base.saturating_add(self.interval_ns), Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }
}

/// One slot: a key's fingerprint (0: empty) and its TAT (ns since the limiter's epoch).
#[derive(Debug, Default)]
struct Slot {
    key: AtomicU64,
    tat: AtomicU64,
}

/// A fixed table of keys and their TATs.
#[derive(Debug)]
struct Table {
    slots: Box<[Slot]>,
    /// Groups in the table (a power of two).
    groups_mask: usize,
}

impl Table {
    fn new(slots: usize) -> Table {
        let slots = slots.next_power_of_two().max(GROUP);
        Table { slots: (0..slots).map(|_| Slot::default()).collect(), groups_mask: slots / GROUP - 1 }
    }

    /// The TAT cell of `key` (a non-zero fingerprint), taking a place for it when it has
    /// none; `evicted` is set when that place was a live key's.
    fn cell(&self, key: u64, now_ns: u64, evicted: &mut bool) -> &AtomicU64 {
        let start = (key as usize & self.groups_mask) * GROUP;
        let group = &self.slots[start..start + GROUP];
        if let Some(slot) = group.iter().find(|slot| slot.key.load(Ordering::Relaxed) == key) {
            return &slot.tat;
        }
        // No place yet: an empty or refilled slot, else the one closest to refilled.
        for _ in 0..GROUP {
            let (victim, live) = match group.iter().find(|slot| {
                let held = slot.key.load(Ordering::Relaxed);
                held == 0 || slot.tat.load(Ordering::Relaxed) <= now_ns
            }) {
                Some(slot) => (slot, false),
                None => (group.iter().min_by_key(|slot| slot.tat.load(Ordering::Relaxed)).expect("a group has slots"), true),
            };
            let held = victim.key.load(Ordering::Relaxed);
            if victim.key.compare_exchange(held, key, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                victim.tat.store(0, Ordering::Relaxed);
                *evicted = live;
                return &victim.tat;
            }
            if let Some(slot) = group.iter().find(|slot| slot.key.load(Ordering::Relaxed) == key) {
                return &slot.tat;
            }
        }
        // Every attempt lost a race to other new keys: share the first slot's cell for
        // this one request (never reached in practice; bounded, and never unlimited).
        &group[0].tat
    }

    /// Empties the slots whose bucket has refilled; returns the live ones.
    fn sweep(&self, now_ns: u64) -> usize {
        let mut live = 0;
        for slot in self.slots.iter() {
            let key = slot.key.load(Ordering::Relaxed);
            if key == 0 {
                continue;
            }
            if slot.tat.load(Ordering::Relaxed) <= now_ns {
                let _ = slot.key.compare_exchange(key, 0, Ordering::AcqRel, Ordering::Relaxed);
            } else {
                live += 1;
            }
        }
        live
    }
}

/// A request over its limit: the rule it hit and how long until it would be let in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limited {
    pub per: Per,
    pub rate_per_sec: f64,
    pub burst: u32,
    pub wait_ns: u64,
}

impl Limited {
    /// `Retry-After`: whole seconds, at least 1 (SPEC §7).
    pub fn retry_after_secs(&self) -> u64 {
        self.wait_ns.div_ceil(1_000_000_000).max(1)
    }

    /// The IETF `RateLimit-Policy` and `RateLimit` header lines (draft-ietf-httpapi-
    /// ratelimit-headers, structured-field form): the quota is `burst + 1` requests and
    /// refills at `rate_per_sec`; `w` is the seconds a full refill takes.
    pub fn write_headers(&self, out: &mut impl std::io::Write) {
        let quota = u64::from(self.burst) + 1;
        let window = ((quota as f64) / self.rate_per_sec).ceil().max(1.0) as u64;
        let retry = self.retry_after_secs();
        let name = self.per.name();
        let _ = write!(
            out,
            "retry-after: {retry}\r\nratelimit-policy: \"{name}\";q={quota};w={window}\r\nratelimit: \"{name}\";r=0;t={retry}\r\n"
        );
    }
}

/// Counts of one kind of limit, for /metrics.
#[derive(Debug, Default)]
pub struct RateCounts {
    pub limited: AtomicU64,
    pub evicted: AtomicU64,
    pub live: AtomicU64,
}

/// Every rate limit of the server.
pub struct RateLimits {
    rules: Vec<RateRule>,
    cells: Vec<Gcra>,
    /// Rule indexes by kind, most specific first.
    by_per: [Vec<usize>; 3],
    ips: Table,
    names: Table,
    /// Keyed hashing (random per process), so clients cannot aim at one group.
    hasher: RandomState,
    epoch: Instant,
    pub counts: [RateCounts; 3],
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").field("rules", &self.rules).finish_non_exhaustive()
    }
}

impl RateLimits {
    pub fn new(rules: Vec<RateRule>) -> RateLimits {
        let cells = rules.iter().map(Gcra::of).collect();
        let by_per = Per::ALL.map(|per| {
            let mut indexes: Vec<usize> = (0..rules.len()).filter(|index| rules[*index].per == per).collect();
            // Stable: among equally specific rules the first written wins.
            indexes.sort_by_key(|index| std::cmp::Reverse(rules[*index].specificity()));
            indexes
        });
        let has_ip = !by_per[0].is_empty();
        let has_names = !by_per[1].is_empty() || !by_per[2].is_empty();
        RateLimits {
            rules,
            cells,
            by_per,
            ips: Table::new(if has_ip { IP_SLOTS } else { GROUP }),
            names: Table::new(if has_names { NAME_SLOTS } else { GROUP }),
            hasher: RandomState::new(),
            epoch: Instant::now(),
            counts: Default::default(),
        }
    }

    pub fn rules(&self) -> &[RateRule] {
        &self.rules
    }

    /// Whether any rule of this kind exists (nothing is looked up otherwise).
    pub fn limits(&self, per: Per) -> bool {
        !self.by_per[per as usize].is_empty()
    }

    /// Nanoseconds since the limiter started (the clock TATs are kept in).
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64 + 1
    }

    /// A request from `ip` (checked before its signature is).
    pub fn check_ip(&self, ip: IpAddr, now_ns: u64) -> Result<(), Limited> {
        let ip = unmapped(ip);
        let rules = &self.by_per[Per::Ip as usize];
        let Some(&index) = rules.iter().find(|index| match &self.rules[**index].matches {
            Match::Any => true,
            Match::Block(cidr) => cidr.contains(ip),
            Match::Name(_) => false,
        }) else {
            return Ok(());
        };
        // An IPv6 host may use any address of its /64: count the /64.
        let key: u128 = match ip {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => (u128::from(v6) >> 64) | (1 << 127),
        };
        self.check(&self.ips, index, &key, now_ns)
    }

    /// A request authenticated as `name` (a partner name, or the kid that signed it).
    pub fn check_name(&self, per: Per, name: &[u8], now_ns: u64) -> Result<(), Limited> {
        let rules = &self.by_per[per as usize];
        let Some(&index) = rules.iter().find(|index| match &self.rules[**index].matches {
            Match::Any => true,
            Match::Name(wanted) => wanted.as_bytes() == name,
            Match::Block(_) => false,
        }) else {
            return Ok(());
        };
        self.check(&self.names, index, &(per as u8, name), now_ns)
    }

    fn check(&self, table: &Table, rule: usize, key: &impl Hash, now_ns: u64) -> Result<(), Limited> {
        let fingerprint = self.hasher.hash_one((rule, key)).max(1);
        let mut evicted = false;
        let cell = table.cell(fingerprint, now_ns, &mut evicted);
        let per = self.rules[rule].per;
        if evicted {
            self.counts[per as usize].evicted.fetch_add(1, Ordering::Relaxed);
        }
        self.cells[rule].check(cell, now_ns).map_err(|wait_ns| {
            self.counts[per as usize].limited.fetch_add(1, Ordering::Relaxed);
            Limited { per, rate_per_sec: self.rules[rule].rate_per_sec, burst: self.rules[rule].burst, wait_ns }
        })
    }

    /// Empties refilled slots (once a second, off the request path) and records how many
    /// keys are being limited.
    pub fn sweep(&self) {
        let now_ns = self.now_ns();
        let ips = if self.limits(Per::Ip) { self.ips.sweep(now_ns) } else { 0 };
        let names = self.names.sweep(now_ns);
        self.counts[Per::Ip as usize].live.store(ips as u64, Ordering::Relaxed);
        self.counts[Per::Partner as usize].live.store(names as u64, Ordering::Relaxed);
    }
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn rule(per: Per, matches: Match, rate_per_sec: f64, burst: u32) -> RateRule {
        RateRule { per, matches, rate_per_sec, burst }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn burst_plus_one_at_once_then_one_per_interval_as_nginx_nodelay() {
        let limits = RateLimits::new(vec![rule(Per::Ip, Match::Any, 10.0, 5)]);
        let client = ip("10.0.0.1");
        let t0 = 100 * SEC;
        let passed = (0..20).filter(|_| limits.check_ip(client, t0).is_ok()).count();
        assert_eq!(passed, 6, "burst 5 lets 6 in at once, as nginx's burst=5 nodelay");
        let limited = limits.check_ip(client, t0).expect_err("over");
        assert_eq!(limited.wait_ns, SEC / 10, "the next one is due one interval later");
        assert_eq!(limited.retry_after_secs(), 1, "Retry-After is whole seconds, at least 1");
        assert!(limits.check_ip(client, t0 + SEC / 10).is_ok(), "one interval later, one more");
        assert!(limits.check_ip(client, t0 + SEC / 10).is_err());
        // A second later the client has earned ten more (and at most burst + 1).
        let later = t0 + SEC / 10 + SEC;
        assert_eq!((0..20).filter(|_| limits.check_ip(client, later).is_ok()).count(), 6);
        assert_eq!(limits.counts[Per::Ip as usize].limited.load(Ordering::Relaxed), 14 + 1 + 1 + 14);
    }

    #[test]
    fn the_sustained_rate_is_the_configured_one() {
        let limits = RateLimits::new(vec![rule(Per::Partner, Match::Any, 300.0, 600)]);
        // A client sending 1000 requests/s for 10 s gets burst + 1 + 10 s x 300.
        let passed =
            (0..10_000u64).filter(|i| limits.check_name(Per::Partner, b"acme", 50 * SEC + i * (SEC / 1000)).is_ok()).count() as u64;
        let expected = 601 + 300 * 10;
        assert!(passed.abs_diff(expected) <= 2, "{passed} let in, about {expected} expected");
    }

    #[test]
    fn the_most_specific_rule_applies_and_keys_are_apart() {
        let limits = RateLimits::new(vec![
            rule(Per::Partner, Match::Any, 1.0, 0),
            rule(Per::Partner, Match::Name("big".into()), 1.0, 9),
            rule(Per::Ip, Match::Any, 1.0, 0),
            rule(Per::Ip, Match::Block("10.1.0.0/16".parse().expect("cidr")), 1.0, 2),
            rule(Per::Ip, Match::Block("10.0.0.0/8".parse().expect("cidr")), 1.0, 1),
        ]);
        let now = 7 * SEC;
        let count = |f: &dyn Fn() -> bool| (0..50).filter(|_| f()).count();
        assert_eq!(count(&|| limits.check_name(Per::Partner, b"small", now).is_ok()), 1);
        assert_eq!(count(&|| limits.check_name(Per::Partner, b"big", now).is_ok()), 10, "the named rule");
        assert_eq!(count(&|| limits.check_name(Per::Partner, b"other", now).is_ok()), 1, "each partner its own bucket");
        assert_eq!(count(&|| limits.check_name(Per::Kid, b"k1", now).is_ok()), 50, "no kid rule: no limit");
        assert_eq!(count(&|| limits.check_ip(ip("10.1.2.3"), now).is_ok()), 3, "the /16 beats the /8");
        assert_eq!(count(&|| limits.check_ip(ip("10.2.2.3"), now).is_ok()), 2, "the /8");
        assert_eq!(count(&|| limits.check_ip(ip("192.0.2.1"), now).is_ok()), 1, "*");
        assert_eq!(count(&|| limits.check_ip(ip("::ffff:192.0.2.1"), now).is_ok()), 0, "a mapped address is the same client");
        assert_eq!(count(&|| limits.check_ip(ip("2001:db8::1"), now).is_ok()), 1);
        assert_eq!(count(&|| limits.check_ip(ip("2001:db8::2"), now).is_ok()), 0, "the same /64");
    }

    #[test]
    fn a_flood_of_addresses_cannot_grow_the_table_and_sweeping_frees_it() {
        let limits = RateLimits::new(vec![rule(Per::Ip, Match::Any, 1.0, 10)]);
        let now = 10 * SEC;
        for n in 0..(IP_SLOTS as u32 * 2) {
            let _ = limits.check_ip(IpAddr::V4(n.into()), now);
        }
        assert_eq!(limits.ips.slots.len(), IP_SLOTS, "fixed size");
        assert!(limits.counts[0].evicted.load(Ordering::Relaxed) > 0, "a full group gives up its oldest place");
        // An address that has used its whole burst keeps its place against the flood of
        // addresses that sent one request each (its bucket is the furthest from refilled).
        let hot = ip("203.0.113.9");
        assert_eq!((0..100).filter(|_| limits.check_ip(hot, now).is_ok()).count(), 11);
        for n in 0..(IP_SLOTS as u32) {
            let _ = limits.check_ip(IpAddr::V4((n + 7_000_000).into()), now);
        }
        assert!(limits.check_ip(hot, now).is_err(), "still limited");
        // Later every bucket has refilled: the sweep empties the table.
        let table = &limits.ips;
        assert_eq!(table.sweep(now + 200 * SEC), 0);
        assert!(table.slots.iter().all(|slot| slot.key.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn shards_share_the_bucket_without_locks() {
        let limits = std::sync::Arc::new(RateLimits::new(vec![rule(Per::Kid, Match::Any, 1.0, 999)]));
        let now = 3 * SEC;
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let limits = std::sync::Arc::clone(&limits);
                std::thread::spawn(move || (0..1000).filter(|_| limits.check_name(Per::Kid, b"k", now).is_ok()).count())
            })
            .collect();
        let passed: usize = threads.into_iter().map(|thread| thread.join().expect("thread")).sum();
        assert_eq!(passed, 1000, "exactly burst + 1 over all threads");
    }

    #[test]
    fn headers_follow_the_ietf_draft() {
        let limited = Limited { per: Per::Partner, rate_per_sec: 300.0, burst: 600, wait_ns: 1_500_000_000 };
        let mut out = Vec::new();
        limited.write_headers(&mut out);
        assert_eq!(
            String::from_utf8(out).expect("ascii"),
            "retry-after: 2\r\nratelimit-policy: \"partner\";q=601;w=3\r\nratelimit: \"partner\";r=0;t=2\r\n"
        );
    }
}
