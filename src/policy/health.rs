//! Partner health (the article §15 incident: a partner's clock drifted −9 minutes and
//! its events were refused for an hour before anyone looked). Per partner: requests
//! admitted, signature failures, clock-skew refusals and the clock skew seen, and dead
//! letters by reason, in one-minute buckets; a state over the last five minutes:
//!
//! - `failing`: at least `FAILING_PERCENT` of its requests refused for signature or
//!   clock, or its clock off by more than the tolerance;
//! - `degraded`: at least `DEGRADED_PERCENT` refused (signature, clock or dead letters),
//!   or its clock off by more than half the tolerance;
//! - `ok` otherwise.
//!
//! Shards count admitted requests in a shard-local vector (one add per request) and
//! merge it here once per housekeeping tick; refusals are counted here directly (rare).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

/// Minutes kept per partner, and the window the state is judged over.
const HEALTH_MINUTES_KEPT: usize = 10;
const HEALTH_WINDOW_MINUTES: i64 = 5;
/// Refused share of requests (percent) at which a partner is degraded / failing.
const DEGRADED_PERCENT: u64 = 1;
const FAILING_PERCENT: u64 = 10;
/// Partners tracked; more share the `other` entry.
const HEALTH_PARTNERS_MAX: usize = 1024;

/// Counts of one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Minute {
    pub minute: i64,
    pub admitted: u64,
    pub signature_failures: u64,
    pub skewed: u64,
    pub dead_letters: u64,
}

/// One partner's counters.
#[derive(Debug, Clone, Default)]
pub struct PartnerCounters {
    pub admitted: u64,
    pub signature_failures: u64,
    pub skewed: u64,
    pub dead_letters: BTreeMap<String, u64>,
    /// The producer clock minus the gateway's, seconds, of its latest skewed request.
    pub skew_secs_last: i64,
    pub skew_at_ms: i64,
    minutes: VecDeque<Minute>,
}

/// The state of a partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    Ok,
    Degraded,
    Failing,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Ok => "ok",
            HealthState::Degraded => "degraded",
            HealthState::Failing => "failing",
        }
    }
}

/// What a refusal was, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Signature,
    Skew { skew_secs: i64 },
}

impl PartnerCounters {
    fn minute(&mut self, now_ms: i64) -> &mut Minute {
        let minute = now_ms.div_euclid(60_000);
        if self.minutes.back().is_none_or(|last| last.minute != minute) {
            if self.minutes.len() == HEALTH_MINUTES_KEPT {
                self.minutes.pop_front();
            }
            self.minutes.push_back(Minute { minute, ..Minute::default() });
        }
        self.minutes.back_mut().expect("a minute was just pushed")
    }

    /// The state over the last `HEALTH_WINDOW_MINUTES` at `now_ms`.
    pub fn state(&self, now_ms: i64, tolerance_secs: u64) -> HealthState {
        let since = now_ms.div_euclid(60_000) - HEALTH_WINDOW_MINUTES;
        let recent = self.minutes.iter().filter(|minute| minute.minute > since);
        let (mut admitted, mut auth, mut dead) = (0u64, 0u64, 0u64);
        for minute in recent {
            admitted += minute.admitted;
            auth += minute.signature_failures + minute.skewed;
            dead += minute.dead_letters;
        }
        let total = admitted + auth;
        let skew_recent = self.skew_at_ms > now_ms - HEALTH_WINDOW_MINUTES * 60_000;
        let skew = if skew_recent { self.skew_secs_last.unsigned_abs() } else { 0 };
        if skew > tolerance_secs || (total > 0 && auth * 100 >= total * FAILING_PERCENT) {
            return HealthState::Failing;
        }
        if skew * 2 > tolerance_secs || (total > 0 && (auth + dead) * 100 >= total * DEGRADED_PERCENT) {
            return HealthState::Degraded;
        }
        HealthState::Ok
    }

    /// The skew seen beyond half the tolerance within the health window, else 0: a fixed
    /// clock stops showing once the window has passed.
    pub fn recent_skew_secs(&self, now_ms: i64) -> i64 {
        if self.skew_at_ms > now_ms - HEALTH_WINDOW_MINUTES * 60_000 { self.skew_secs_last } else { 0 }
    }

    pub fn recent(&self) -> impl Iterator<Item = &Minute> {
        self.minutes.iter()
    }
}

/// Every partner's counters, shared by all shards and read by the admin listener.
#[derive(Default)]
pub struct PartnerHealth {
    partners: Mutex<HashMap<Box<str>, PartnerCounters>>,
}

impl PartnerHealth {
    fn with(&self, partner: &str, update: impl FnOnce(&mut PartnerCounters)) {
        let mut partners = self.partners.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(counters) = partners.get_mut(partner) {
            return update(counters);
        }
        let name = if partners.len() < HEALTH_PARTNERS_MAX { partner } else { "other" };
        update(partners.entry(Box::from(name)).or_default());
    }

    /// Merges a shard's admitted counts (by partner name).
    pub fn admitted(&self, partner: &str, count: u64, now_ms: i64) {
        self.with(partner, |counters| {
            counters.admitted += count;
            counters.minute(now_ms).admitted += count;
        });
    }

    /// A request of `partner` refused for its signature or its clock.
    pub fn failed(&self, partner: &str, failure: Failure, now_ms: i64) {
        self.with(partner, |counters| match failure {
            Failure::Signature => {
                counters.signature_failures += 1;
                counters.minute(now_ms).signature_failures += 1;
            }
            Failure::Skew { skew_secs } => {
                counters.skewed += 1;
                counters.skew_secs_last = skew_secs;
                counters.skew_at_ms = now_ms;
                counters.minute(now_ms).skewed += 1;
            }
        });
    }

    /// An admitted request of `partner` whose clock is off by `skew_secs` (recorded when
    /// more than half the tolerance: a drift shows before it is refused).
    pub fn skew_seen(&self, partner: &str, skew_secs: i64, now_ms: i64) {
        self.with(partner, |counters| {
            counters.skew_secs_last = skew_secs;
            counters.skew_at_ms = now_ms;
        });
    }

    /// A dead letter of `partner` for `reason`.
    pub fn dead_letter(&self, partner: &str, reason: &str, now_ms: i64) {
        self.with(partner, |counters| {
            if counters.dead_letters.len() < 64 || counters.dead_letters.contains_key(reason) {
                *counters.dead_letters.entry(reason.to_owned()).or_default() += 1;
            }
            counters.minute(now_ms).dead_letters += 1;
        });
    }

    /// A copy of every partner's counters, by name.
    pub fn snapshot(&self) -> Vec<(String, PartnerCounters)> {
        let partners = self.partners.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<(String, PartnerCounters)> =
            partners.iter().map(|(name, counters)| (name.to_string(), counters.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn a_drifting_clock_turns_a_partner_failing_within_the_minute() {
        let health = PartnerHealth::default();
        health.admitted("acme", 1000, NOW);
        let state = |health: &PartnerHealth, now| health.snapshot()[0].1.state(now, 300);
        assert_eq!(state(&health, NOW), HealthState::Ok);
        // −9 minutes: every request refused as out of window.
        for _ in 0..5 {
            health.failed("acme", Failure::Skew { skew_secs: -540 }, NOW + 30_000);
        }
        assert_eq!(state(&health, NOW + 30_000), HealthState::Failing);
        // Fixed and quiet for more than the window: ok again.
        assert_eq!(state(&health, NOW + 7 * 60_000), HealthState::Ok);
    }

    #[test]
    fn a_few_refusals_degrade_and_many_fail() {
        let health = PartnerHealth::default();
        health.admitted("acme", 100, NOW);
        health.dead_letter("acme", "schema_violation", NOW);
        health.dead_letter("acme", "schema_violation", NOW);
        assert_eq!(health.snapshot()[0].1.state(NOW, 300), HealthState::Degraded);
        for _ in 0..20 {
            health.failed("acme", Failure::Signature, NOW);
        }
        assert_eq!(health.snapshot()[0].1.state(NOW, 300), HealthState::Failing);
        assert_eq!(health.snapshot()[0].1.dead_letters["schema_violation"], 2);
    }

    #[test]
    fn a_clock_half_the_tolerance_off_is_degraded() {
        let health = PartnerHealth::default();
        health.admitted("acme", 10_000, NOW);
        health.failed("acme", Failure::Skew { skew_secs: 200 }, NOW);
        assert_eq!(health.snapshot()[0].1.state(NOW, 300), HealthState::Degraded);
    }
}
