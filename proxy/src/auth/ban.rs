//! Brute-force protection: failed attempts per source IP and per username in
//! a sliding window; past a threshold the key is banned for a while.
//! Memory is bounded: each table holds at most a configured number of keys.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Thresholds and bounds for [`BanList`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BanPolicy {
    /// Failures from one IP within `window` that trigger a ban (0 = never).
    pub ip_max_failures: u32,
    /// Failures for one username within `window` that trigger a ban on that
    /// username (0 = never). Higher than the IP threshold: a username ban
    /// locks the real user out too.
    pub user_max_failures: u32,
    /// The counting window.
    pub window: Duration,
    /// How long a ban lasts.
    pub ban_for: Duration,
    /// Most keys tracked per table (failures and bans, for IPs and users).
    pub max_tracked: usize,
}

impl Default for BanPolicy {
    fn default() -> Self {
        Self {
            ip_max_failures: 5,
            user_max_failures: 20,
            window: Duration::from_secs(60),
            ban_for: Duration::from_secs(600),
            max_tracked: 65_536,
        }
    }
}

/// Why a source is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Banned {
    /// The source IP is banned.
    Ip,
    /// The username is banned.
    User,
}

#[derive(Debug)]
struct Table<K> {
    failures: HashMap<K, (u64, u32)>,
    bans: HashMap<K, u64>,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new() -> Self {
        Self {
            failures: HashMap::new(),
            bans: HashMap::new(),
        }
    }

    fn banned(&mut self, k: &K, now: u64) -> bool {
        match self.bans.get(k) {
            Some(until) if *until > now => true,
            Some(_) => {
                self.bans.remove(k);
                false
            }
            None => false,
        }
    }

    /// Counts a failure; true when this failure starts a ban.
    fn fail(&mut self, k: &K, max: u32, p: &BanPolicy, now: u64) -> bool {
        if max == 0 {
            return false;
        }
        let window = p.window.as_millis() as u64;
        if !self.failures.contains_key(k) && self.failures.len() >= p.max_tracked {
            self.failures
                .retain(|_, (start, _)| now < start.saturating_add(window));
            if self.failures.len() >= p.max_tracked {
                // Still full of live counters: forget an arbitrary one.
                if let Some(victim) = self.failures.keys().next().cloned() {
                    self.failures.remove(&victim);
                }
            }
        }
        let e = self.failures.entry(k.clone()).or_insert((now, 0));
        if now >= e.0.saturating_add(window) {
            *e = (now, 0);
        }
        e.1 += 1;
        if e.1 < max {
            return false;
        }
        self.failures.remove(k);
        if self.bans.len() >= p.max_tracked {
            self.bans.retain(|_, until| *until > now);
            if self.bans.len() >= p.max_tracked {
                return false;
            }
        }
        self.bans
            .insert(k.clone(), now.saturating_add(p.ban_for.as_millis() as u64));
        true
    }
}

#[derive(Debug)]
struct Inner {
    ips: Table<IpAddr>,
    users: Table<String>,
}

/// Failure counters and bans, shared by all requests.
#[derive(Debug)]
pub struct BanList {
    policy: BanPolicy,
    inner: Mutex<Inner>,
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl BanList {
    /// An empty list with `policy`.
    pub fn new(policy: BanPolicy) -> Self {
        Self {
            policy,
            inner: Mutex::new(Inner {
                ips: Table::new(),
                users: Table::new(),
            }),
        }
    }

    /// Whether the IP (or, when given, the username) is banned now.
    pub fn check(&self, ip: IpAddr, user: Option<&str>, now: SystemTime) -> Option<Banned> {
        let now = ms(now);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.ips.banned(&ip, now) {
            return Some(Banned::Ip);
        }
        match user {
            Some(u) if g.users.banned(&u.to_string(), now) => Some(Banned::User),
            _ => None,
        }
    }

    /// Counts a failed attempt. Returns the ban it started, if any.
    pub fn record_failure(
        &self,
        ip: IpAddr,
        user: Option<&str>,
        now: SystemTime,
    ) -> Option<Banned> {
        let now = ms(now);
        let p = self.policy;
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let ip_ban = g.ips.fail(&ip, p.ip_max_failures, &p, now);
        let user_ban = match user {
            Some(u) => g.users.fail(&u.to_string(), p.user_max_failures, &p, now),
            None => false,
        };
        if ip_ban {
            metrics::counter!("sipedge_auth_bans_total", "kind" => "ip").increment(1);
        }
        if user_ban {
            metrics::counter!("sipedge_auth_bans_total", "kind" => "user").increment(1);
        }
        match (ip_ban, user_ban) {
            (true, _) => Some(Banned::Ip),
            (false, true) => Some(Banned::User),
            _ => None,
        }
    }

    /// Forgets the username's failures after it authenticated. The IP's
    /// count stays: an attacker holding one valid account must not reset it.
    pub fn record_success(&self, user: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.users.failures.remove(user);
    }

    /// Keys tracked (failure counters plus bans), for tests and gauges.
    pub fn tracked(&self) -> usize {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.ips.failures.len() + g.ips.bans.len() + g.users.failures.len() + g.users.bans.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms)
    }

    fn policy() -> BanPolicy {
        BanPolicy {
            ip_max_failures: 3,
            user_max_failures: 5,
            window: Duration::from_secs(10),
            ban_for: Duration::from_secs(60),
            max_tracked: 100,
        }
    }

    #[test]
    fn ban_after_n_and_expiry() {
        let b = BanList::new(policy());
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        let other: IpAddr = "192.0.2.8".parse().expect("ip");
        assert_eq!(b.record_failure(ip, Some("alice"), at(0)), None);
        assert_eq!(b.record_failure(ip, Some("alice"), at(1000)), None);
        assert_eq!(b.check(ip, None, at(1000)), None);
        assert_eq!(
            b.record_failure(ip, Some("alice"), at(2000)),
            Some(Banned::Ip)
        );
        let table = [
            (ip, 2_000, Some(Banned::Ip)),
            (ip, 61_999, Some(Banned::Ip)),
            (ip, 62_000, None),
            (other, 3_000, None),
        ];
        for (addr, t, want) in table {
            assert_eq!(b.check(addr, None, at(t)), want, "{addr} at {t}");
        }
    }

    #[test]
    fn window_resets_count() {
        let b = BanList::new(policy());
        let ip: IpAddr = "2001:db8::1".parse().expect("ip");
        for t in [0, 5_000, 10_000, 15_000, 20_000, 25_000] {
            // Never 3 within 10 s.
            assert_eq!(b.record_failure(ip, None, at(t)), None, "{t}");
        }
    }

    #[test]
    fn user_ban_from_many_ips() {
        let b = BanList::new(policy());
        let mut last = None;
        for i in 0..5u8 {
            let ip = IpAddr::from([198, 51, 100, i]);
            last = b.record_failure(ip, Some("bob"), at(u64::from(i)));
        }
        assert_eq!(last, Some(Banned::User));
        let fresh: IpAddr = "203.0.113.9".parse().expect("ip");
        assert_eq!(b.check(fresh, Some("bob"), at(10)), Some(Banned::User));
        assert_eq!(b.check(fresh, Some("carol"), at(10)), None);
    }

    #[test]
    fn success_resets_user_count() {
        let b = BanList::new(policy());
        for i in 0..4u8 {
            b.record_failure(IpAddr::from([10, 0, 0, i]), Some("dave"), at(0));
        }
        b.record_success("dave");
        assert_eq!(
            b.record_failure(IpAddr::from([10, 0, 1, 1]), Some("dave"), at(1)),
            None
        );
    }

    #[test]
    fn memory_bounded() {
        let b = BanList::new(policy());
        for i in 0..1000u32 {
            b.record_failure(IpAddr::from(i.to_be_bytes()), Some(&format!("u{i}")), at(0));
        }
        assert!(b.tracked() <= 4 * 100, "{}", b.tracked());
    }
}
