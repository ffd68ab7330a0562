//! Failed authentications, counted in `/metrics`
//! (`spywatcher_auth_failures_total`) and slowed per client address: past
//! `AUTH_FAILURES_PER_MINUTE` (GCRA, that many as a burst), the address is
//! blocked until its budget has a failure to spare again, and while blocked
//! every request from it that needs a token gets 429 with `Retry-After`,
//! its token not even looked at.
//!
//! A correct token from a blocked address is refused too. Serving it would
//! tell a guesser which guess was right at full speed, so the block would
//! slow nothing. The price is paid by clients sharing an address (a NAT)
//! with one that keeps failing: they wait as long as it keeps failing.
//! Clients with a correct token never fail, so they never block themselves;
//! an operator whose clients sit behind one shared address may raise the
//! threshold, or set 0 to turn the block off (failures are still counted).
//!
//! Only a presented token that is wrong counts toward the block: a request
//! without one guesses nothing, and a client that forgot its header must
//! not block its neighbours. Both are counted in the metric.
//!
//! IPv6 addresses are keyed by their /64: one host holds a whole /64, and
//! would otherwise have 2^64 fresh budgets.
//!
//! The hot path (a request with a good token while no address is blocked)
//! costs one atomic load.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::AuthFailure;
use crate::error::retry_after_secs;

/// The metric counting failed authentications, labelled by `reason`
/// (`missing`, `invalid`, `blocked`).
pub const FAILURES_METRIC: &str = "spywatcher_auth_failures_total";

/// Prune the block list and the per-address budgets every this many
/// failures, so addresses that stopped failing do not pile up.
const PRUNE_EVERY: usize = 1024;

pub struct AuthFailures {
    /// `None`: the block is off (`AUTH_FAILURES_PER_MINUTE=0`).
    budget: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Addresses blocked, and until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    /// `blocked.len()`, read without the lock on every authentication.
    blocked_count: AtomicUsize,
    failures: AtomicUsize,
}

impl AuthFailures {
    pub fn new(per_minute: u32) -> Self {
        AuthFailures {
            budget: NonZeroU32::new(per_minute)
                .map(|n| governor::RateLimiter::keyed(Quota::per_minute(n))),
            blocked: Mutex::new(HashMap::new()),
            blocked_count: AtomicUsize::new(0),
            failures: AtomicUsize::new(0),
        }
    }

    /// `Some(seconds to wait)` when the address is blocked.
    pub fn blocked(&self, ip: Option<IpAddr>) -> Option<u64> {
        if self.blocked_count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let ip = key(ip?);
        let mut blocked = self.lock();
        let until = *blocked.get(&ip)?;
        let now = Instant::now();
        if until <= now {
            blocked.remove(&ip);
            self.blocked_count.store(blocked.len(), Ordering::Release);
            return None;
        }
        metrics::counter!(FAILURES_METRIC, "reason" => "blocked").increment(1);
        Some(retry_after_secs(until - now))
    }

    /// Counts a failure; `Some(seconds to wait)` when it blocked the address.
    pub fn failed(&self, ip: Option<IpAddr>, failure: AuthFailure) -> Option<u64> {
        metrics::counter!(FAILURES_METRIC, "reason" => failure.reason()).increment(1);
        if failure == AuthFailure::Missing {
            return None;
        }
        let (budget, ip) = (self.budget.as_ref()?, key(ip?));
        if self.failures.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.prune();
        }
        let not_until = budget.check_key(&ip).err()?;
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let mut blocked = self.lock();
        blocked.insert(ip, Instant::now() + wait);
        self.blocked_count.store(blocked.len(), Ordering::Release);
        Some(retry_after_secs(wait))
    }

    fn prune(&self) {
        if let Some(budget) = &self.budget {
            budget.retain_recent();
        }
        let now = Instant::now();
        let mut blocked = self.lock();
        blocked.retain(|_, until| *until > now);
        self.blocked_count.store(blocked.len(), Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Instant>> {
        self.blocked.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The address a budget belongs to: IPv4 whole, IPv6 by its /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_past_its_budget_and_others_are_not() {
        let failures = AuthFailures::new(3);
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        for _ in 0..3 {
            assert_eq!(failures.failed(a, AuthFailure::Invalid), None);
        }
        for _ in 0..10 {
            assert_eq!(failures.failed(a, AuthFailure::Missing), None, "no guess");
        }
        assert_eq!(failures.blocked(a), None, "three failures are allowed");
        let wait = failures
            .failed(a, AuthFailure::Invalid)
            .expect("the fourth blocks");
        assert!((1..=20).contains(&wait), "{wait}");
        assert!(failures.blocked(a).is_some());
        assert_eq!(failures.blocked(b), None);
        assert_eq!(failures.blocked(None), None);
    }

    #[test]
    fn ipv6_hosts_share_their_slash_64_and_zero_turns_the_block_off() {
        let one: IpAddr = "2001:db8::1".parse().unwrap();
        let other: IpAddr = "2001:db8::ffff:1".parse().unwrap();
        assert_eq!(key(one), key(other));
        assert_ne!(key(one), key("2001:db8:0:1::1".parse().unwrap()));
        let off = AuthFailures::new(0);
        for _ in 0..100 {
            assert_eq!(off.failed(Some(one), AuthFailure::Invalid), None);
        }
        assert_eq!(off.blocked(Some(one)), None);
    }
}
