//! Flood control per source address: token buckets for requests and REGISTERs,
//! a per-IP stream connection cap and new-connection rate, randomised Retry-After.
//!
//! Sources are keyed by IPv4 address or IPv6 /64 (one subscriber line owns a
//! whole /64, so per-address keys would be trivially evaded). Sources above
//! `drop_factor` × the request rate, or on the denylist, are dropped silently
//! rather than answered: answering an abuser costs us more than it costs them.
//!
//! ```text
//! RFC 3261 §21.5.4 503 Service Unavailable: ... The server MAY indicate
//!    when the client should retry the request in a Retry-After header field.
//! ```

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;
use rand::Rng;

/// Validated flood limits (rates are per second).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloodLimits {
    /// Requests per second per source, all methods.
    pub request_rate: NonZeroU32,
    /// Burst for `request_rate`.
    pub request_burst: NonZeroU32,
    /// REGISTERs per second per source.
    pub register_rate: NonZeroU32,
    /// Burst for `register_rate`.
    pub register_burst: NonZeroU32,
    /// A source above this multiple of the request rate (and burst) is dropped.
    pub drop_factor: NonZeroU32,
    /// Concurrent TCP/TLS/WS connections per source.
    pub max_conns_per_ip: NonZeroU32,
    /// New connections per second per source.
    pub conn_rate: NonZeroU32,
    /// Burst for `conn_rate`.
    pub conn_burst: NonZeroU32,
    /// Lowest `Retry-After` in a 503, seconds.
    pub retry_after_min: u32,
    /// Highest `Retry-After` in a 503, seconds (≥ min).
    pub retry_after_max: u32,
    /// Sources always dropped.
    pub denylist: Vec<IpNet>,
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

impl Default for FloodLimits {
    fn default() -> Self {
        FloodLimits {
            request_rate: nz(50),
            request_burst: nz(100),
            register_rate: nz(5),
            register_burst: nz(20),
            drop_factor: nz(10),
            max_conns_per_ip: nz(32),
            conn_rate: nz(10),
            conn_burst: nz(20),
            retry_after_min: 10,
            retry_after_max: 300,
            denylist: Vec::new(),
        }
    }
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Process it.
    Admit,
    /// Answer 503 with this `Retry-After` (seconds).
    Reject503 {
        /// Seconds.
        retry_after: u32,
    },
    /// Discard it without an answer.
    Drop,
}

/// Why a new stream connection was refused (close it at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnRefusal {
    /// The source is on the denylist.
    #[error("source is denylisted")]
    Denied,
    /// The source opens connections too fast.
    #[error("new-connection rate exceeded")]
    RateLimited,
    /// The source already holds `max_conns_per_ip` connections.
    #[error("too many connections from this source")]
    TooMany,
}

type Counts = Arc<Mutex<HashMap<IpAddr, u32>>>;

/// Holds one connection slot of a source; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnGuard {
    key: IpAddr,
    counts: Counts,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut m = lock(&self.counts);
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            // Removing zero entries keeps the map as small as the live connections.
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

fn lock(c: &Counts) -> std::sync::MutexGuard<'_, HashMap<IpAddr, u32>> {
    // The map holds plain counters; a poisoned lock still holds valid ones.
    c.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The per-source key: the IPv4 address, or the IPv6 /64.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(a) & (u128::MAX << 64))),
        },
    }
}

fn quota(rate: NonZeroU32, burst: NonZeroU32) -> Quota {
    Quota::per_second(rate).allow_burst(burst)
}

/// Flood control state, shared by every socket task.
pub struct Flood {
    limits: FloodLimits,
    requests: DefaultKeyedRateLimiter<IpAddr>,
    registers: DefaultKeyedRateLimiter<IpAddr>,
    abuse: DefaultKeyedRateLimiter<IpAddr>,
    new_conns: DefaultKeyedRateLimiter<IpAddr>,
    conns: Counts,
}

impl std::fmt::Debug for Flood {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flood")
            .field("limits", &self.limits)
            .field("tracked", &self.tracked_sources())
            .finish()
    }
}

impl Flood {
    /// Flood control with `limits`.
    pub fn new(limits: FloodLimits) -> Self {
        let f = limits.drop_factor;
        let abuse = quota(
            limits.request_rate.saturating_mul(f),
            limits.request_burst.saturating_mul(f),
        );
        Flood {
            requests: RateLimiter::keyed(quota(limits.request_rate, limits.request_burst)),
            registers: RateLimiter::keyed(quota(limits.register_rate, limits.register_burst)),
            abuse: RateLimiter::keyed(abuse),
            new_conns: RateLimiter::keyed(quota(limits.conn_rate, limits.conn_burst)),
            conns: Arc::default(),
            limits,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &FloodLimits {
        &self.limits
    }

    fn denied(&self, ip: IpAddr) -> bool {
        // Denylists are short; a linear scan beats building a trie.
        self.limits.denylist.iter().any(|n| n.contains(&ip))
    }

    /// Decides on one request from `ip`; `rng` draws the Retry-After.
    pub fn check_request<R: Rng + ?Sized>(
        &self,
        ip: IpAddr,
        is_register: bool,
        rng: &mut R,
    ) -> Decision {
        if self.denied(ip) {
            return Decision::Drop;
        }
        let key = source_key(ip);
        // The abuse bucket sees every request, so it measures the total rate.
        if self.abuse.check_key(&key).is_err() {
            return Decision::Drop;
        }
        let over = self.requests.check_key(&key).is_err()
            || (is_register && self.registers.check_key(&key).is_err());
        if over {
            Decision::Reject503 {
                retry_after: self.retry_after(rng),
            }
        } else {
            Decision::Admit
        }
    }

    /// Admits a new TCP/TLS/WS connection from `ip`; keep the guard for the
    /// connection's lifetime.
    pub fn admit_connection(&self, ip: IpAddr) -> Result<ConnGuard, ConnRefusal> {
        if self.denied(ip) {
            return Err(ConnRefusal::Denied);
        }
        let key = source_key(ip);
        if self.new_conns.check_key(&key).is_err() {
            return Err(ConnRefusal::RateLimited);
        }
        let mut m = lock(&self.conns);
        let n = m.entry(key).or_insert(0);
        if *n >= self.limits.max_conns_per_ip.get() {
            return Err(ConnRefusal::TooMany);
        }
        *n += 1;
        drop(m);
        Ok(ConnGuard {
            key,
            counts: self.conns.clone(),
        })
    }

    /// Current connections held by `ip`'s source key.
    pub fn connections(&self, ip: IpAddr) -> u32 {
        lock(&self.conns).get(&source_key(ip)).copied().unwrap_or(0)
    }

    /// A `Retry-After` drawn uniformly from the configured range, so rejected
    /// clients do not all come back in the same second.
    pub fn retry_after<R: Rng + ?Sized>(&self, rng: &mut R) -> u32 {
        let (lo, hi) = (self.limits.retry_after_min, self.limits.retry_after_max);
        if lo >= hi {
            lo
        } else {
            rng.gen_range(lo..=hi)
        }
    }

    /// Forgets sources whose buckets are full again (bounded memory).
    pub fn retain_recent(&self) {
        for l in [
            &self.requests,
            &self.registers,
            &self.abuse,
            &self.new_conns,
        ] {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// Sources currently tracked in the largest bucket table.
    pub fn tracked_sources(&self) -> usize {
        [
            &self.requests,
            &self.registers,
            &self.abuse,
            &self.new_conns,
        ]
        .iter()
        .map(|l| l.len())
        .max()
        .unwrap_or(0)
    }

    /// Calls [`Self::retain_recent`] every `interval` until `shutdown`.
    pub async fn run_cleanup(
        self: Arc<Self>,
        interval: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => self.retain_recent(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn limits() -> FloodLimits {
        FloodLimits {
            request_rate: nz(1),
            request_burst: nz(3),
            register_rate: nz(1),
            register_burst: nz(1),
            drop_factor: nz(2),
            max_conns_per_ip: nz(2),
            conn_rate: nz(1),
            conn_burst: nz(3),
            retry_after_min: 10,
            retry_after_max: 300,
            denylist: vec!["198.51.100.0/24".parse().expect("net")],
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn kind(d: Decision) -> &'static str {
        match d {
            Decision::Admit => "admit",
            Decision::Reject503 { retry_after } => {
                assert!((10..=300).contains(&retry_after), "{retry_after}");
                "503"
            }
            Decision::Drop => "drop",
        }
    }

    #[test]
    fn requests_admit_then_503_then_drop() {
        let f = Flood::new(limits());
        let mut rng = StdRng::seed_from_u64(1);
        let got: Vec<&str> = (0..8)
            .map(|_| kind(f.check_request(ip("192.0.2.1"), false, &mut rng)))
            .collect();
        // burst 3 admitted, up to 2 × burst answered 503, beyond that dropped.
        assert_eq!(
            got,
            ["admit", "admit", "admit", "503", "503", "503", "drop", "drop"]
        );
        // Another source is unaffected.
        assert_eq!(
            kind(f.check_request(ip("192.0.2.2"), false, &mut rng)),
            "admit"
        );
    }

    #[test]
    fn register_has_its_own_bucket() {
        let f = Flood::new(limits());
        let mut rng = StdRng::seed_from_u64(2);
        let a = ip("192.0.2.9");
        let got: Vec<&str> = [true, true, false]
            .iter()
            .map(|&reg| kind(f.check_request(a, reg, &mut rng)))
            .collect();
        assert_eq!(got, ["admit", "503", "admit"]);
    }

    #[test]
    fn denylist_and_ipv6_prefix_keys() {
        let f = Flood::new(limits());
        let mut rng = StdRng::seed_from_u64(3);
        assert_eq!(
            f.check_request(ip("198.51.100.7"), false, &mut rng),
            Decision::Drop
        );
        assert_eq!(
            f.admit_connection(ip("198.51.100.7")).err(),
            Some(ConnRefusal::Denied)
        );
        // Addresses in one /64 share a bucket.
        for host in ["2001:db8::1", "2001:db8::2", "2001:db8::ffff"] {
            assert_eq!(kind(f.check_request(ip(host), false, &mut rng)), "admit");
        }
        assert_eq!(
            kind(f.check_request(ip("2001:db8::3"), false, &mut rng)),
            "503"
        );
        assert_eq!(
            kind(f.check_request(ip("2001:db8:0:1::1"), false, &mut rng)),
            "admit"
        );
        let cases = [
            ("2001:db8::1234:5678", "2001:db8::"),
            ("::ffff:192.0.2.1", "192.0.2.1"),
            ("192.0.2.1", "192.0.2.1"),
        ];
        for (input, want) in cases {
            assert_eq!(source_key(ip(input)), ip(want), "{input}");
        }
    }

    #[test]
    fn connection_cap_and_rate() {
        let f = Flood::new(limits());
        let a = ip("203.0.113.5");
        let g1 = f.admit_connection(a).expect("first");
        let g2 = f.admit_connection(a).expect("second");
        assert_eq!(f.admit_connection(a).err(), Some(ConnRefusal::TooMany));
        assert_eq!(f.connections(a), 2);
        drop(g1);
        // The freed slot is usable, but the burst of 3 new connections is spent.
        assert_eq!(f.admit_connection(a).err(), Some(ConnRefusal::RateLimited));
        drop(g2);
        assert_eq!(f.connections(a), 0);
        assert!(lock(&f.conns).is_empty(), "zero entries are removed");
    }

    #[test]
    fn retry_after_stays_in_range() {
        let f = Flood::new(limits());
        let mut rng = StdRng::seed_from_u64(4);
        let draws: Vec<u32> = (0..2000).map(|_| f.retry_after(&mut rng)).collect();
        assert!(draws.iter().all(|d| (10..=300).contains(d)));
        // Randomised: many distinct values.
        let mut uniq = draws.clone();
        uniq.sort_unstable();
        uniq.dedup();
        assert!(uniq.len() > 200, "{}", uniq.len());
        let fixed = Flood::new(FloodLimits {
            retry_after_min: 30,
            retry_after_max: 30,
            ..limits()
        });
        assert_eq!(fixed.retry_after(&mut rng), 30);
    }

    #[test]
    fn state_is_bounded() {
        let f = Flood::new(FloodLimits {
            request_rate: nz(1_000_000),
            ..limits()
        });
        let mut rng = StdRng::seed_from_u64(5);
        for i in 0..1000u32 {
            f.check_request(
                IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)),
                false,
                &mut rng,
            );
        }
        assert_eq!(f.tracked_sources(), 1000);
        // At a million per second every bucket refills within microseconds.
        std::thread::sleep(Duration::from_millis(20));
        f.retain_recent();
        assert!(f.tracked_sources() < 1000, "{}", f.tracked_sources());
    }
}
