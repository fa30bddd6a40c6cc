//! Flood control (step 4 of the request pipeline): per-source-IP token
//! buckets for REGISTER and for all requests, a per-IP cap on concurrent
//! TCP/TLS connections and a per-IP new-connection rate. Over the limit a
//! request gets 503 with a randomised Retry-After (so rejected clients do
//! not all come back at once); a source far over its rate is dropped
//! silently, which costs us nothing per packet.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use rand::Rng;

type Keyed = RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>;

/// Flood-control settings (validated config).
#[derive(Debug, Clone)]
pub struct FloodSettings {
    /// Requests per second per source IP (all methods).
    pub requests_per_sec: NonZeroU32,
    /// Burst of requests per source IP.
    pub requests_burst: NonZeroU32,
    /// REGISTERs per second per source IP.
    pub registers_per_sec: NonZeroU32,
    /// Burst of REGISTERs per source IP.
    pub registers_burst: NonZeroU32,
    /// Concurrent TCP/TLS connections per source IP.
    pub max_conns_per_ip: u32,
    /// New connections per second per source IP.
    pub conns_per_sec: NonZeroU32,
    /// Retry-After range for 503 answers, seconds.
    pub retry_after: (u32, u32),
    /// Over this many rejections in a row a source is dropped silently.
    pub drop_after: u32,
}

impl Default for FloodSettings {
    fn default() -> Self {
        let n = |v: u32| NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN);
        FloodSettings {
            requests_per_sec: n(2000),
            requests_burst: n(4000),
            registers_per_sec: n(200),
            registers_burst: n(400),
            max_conns_per_ip: 1000,
            conns_per_sec: n(200),
            retry_after: (10, 300),
            drop_after: 1000,
        }
    }
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go on.
    Admit,
    /// Answer 503 with this Retry-After (seconds).
    Reject503 {
        /// Seconds.
        retry_after: u32,
    },
    /// Drop silently.
    Drop,
}

/// Per-IP flood state.
pub struct Flood {
    settings: FloodSettings,
    requests: Keyed,
    registers: Keyed,
    new_conns: Keyed,
    conns: Arc<Mutex<HashMap<IpAddr, u32>>>,
    strikes: Mutex<HashMap<IpAddr, u32>>,
}

impl std::fmt::Debug for Flood {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flood")
            .field("settings", &self.settings)
            .finish()
    }
}

impl Flood {
    /// New state.
    pub fn new(settings: FloodSettings) -> Self {
        let q = |rate, burst| Quota::per_second(rate).allow_burst(burst);
        Flood {
            requests: RateLimiter::keyed(q(settings.requests_per_sec, settings.requests_burst)),
            registers: RateLimiter::keyed(q(settings.registers_per_sec, settings.registers_burst)),
            new_conns: RateLimiter::keyed(q(settings.conns_per_sec, settings.conns_per_sec)),
            conns: Arc::new(Mutex::new(HashMap::new())),
            strikes: Mutex::new(HashMap::new()),
            settings,
        }
    }

    /// Checks one request from `ip`.
    pub fn check(&self, ip: IpAddr, is_register: bool, _now: Instant) -> Decision {
        let ok = self.requests.check_key(&ip).is_ok()
            && (!is_register || self.registers.check_key(&ip).is_ok());
        let mut strikes = lock(&self.strikes);
        if ok {
            if !strikes.is_empty() {
                strikes.remove(&ip);
            }
            return Decision::Admit;
        }
        let s = strikes.entry(ip).or_insert(0);
        *s = s.saturating_add(1);
        if *s > self.settings.drop_after {
            return Decision::Drop;
        }
        Decision::Reject503 {
            retry_after: self.retry_after(),
        }
    }

    /// A random Retry-After in the configured range.
    pub fn retry_after(&self) -> u32 {
        let (lo, hi) = self.settings.retry_after;
        rand::thread_rng().gen_range(lo..=hi.max(lo))
    }

    /// Admits a new connection from `ip`, or refuses it (cap or rate).
    /// The permit releases the slot when dropped.
    pub fn admit_connection(&self, ip: IpAddr) -> Option<ConnPermit> {
        if self.new_conns.check_key(&ip).is_err() {
            return None;
        }
        let mut conns = lock(&self.conns);
        let n = conns.entry(ip).or_insert(0);
        if *n >= self.settings.max_conns_per_ip {
            return None;
        }
        *n += 1;
        Some(ConnPermit {
            ip,
            conns: Arc::clone(&self.conns),
        })
    }

    /// Forgets idle keys so memory stays bounded under spoofed floods.
    pub fn cleanup(&self) {
        self.requests.retain_recent();
        self.registers.retain_recent();
        self.new_conns.retain_recent();
        lock(&self.strikes).clear();
    }

    /// How often [`Flood::cleanup`] should run.
    pub const CLEANUP_EVERY: Duration = Duration::from_secs(10);
}

/// One admitted connection.
#[derive(Debug)]
pub struct ConnPermit {
    ip: IpAddr,
    conns: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut conns = lock(&self.conns);
        if let Some(n) = conns.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                conns.remove(&self.ip);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Single-step updates cannot leave the maps inconsistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> FloodSettings {
        let n = |v: u32| NonZeroU32::new(v).expect("non-zero literal");
        FloodSettings {
            requests_per_sec: n(1),
            requests_burst: n(3),
            registers_per_sec: n(1),
            registers_burst: n(1),
            max_conns_per_ip: 2,
            conns_per_sec: n(100),
            retry_after: (10, 300),
            drop_after: 5,
        }
    }

    #[test]
    fn burst_then_503_then_drop() {
        let f = Flood::new(tiny());
        let ip: IpAddr = "192.0.2.1".parse().expect("literal");
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(f.check(ip, false, now), Decision::Admit);
        }
        match f.check(ip, false, now) {
            Decision::Reject503 { retry_after } => assert!((10..=300).contains(&retry_after)),
            other => panic!("expected 503, got {other:?}"),
        }
        for _ in 0..5 {
            f.check(ip, false, now);
        }
        assert_eq!(f.check(ip, false, now), Decision::Drop);
        let other: IpAddr = "192.0.2.2".parse().expect("literal");
        assert_eq!(f.check(other, false, now), Decision::Admit, "per-IP state");
    }

    #[test]
    fn register_has_its_own_bucket() {
        let f = Flood::new(tiny());
        let ip: IpAddr = "2001:db8::1".parse().expect("literal");
        assert_eq!(f.check(ip, true, Instant::now()), Decision::Admit);
        assert!(matches!(
            f.check(ip, true, Instant::now()),
            Decision::Reject503 { .. }
        ));
    }

    #[test]
    fn connection_cap_releases_on_drop() {
        let f = Flood::new(tiny());
        let ip: IpAddr = "192.0.2.9".parse().expect("literal");
        let a = f.admit_connection(ip).expect("first");
        let _b = f.admit_connection(ip).expect("second");
        assert!(f.admit_connection(ip).is_none(), "cap of 2");
        drop(a);
        assert!(f.admit_connection(ip).is_some());
    }
}
