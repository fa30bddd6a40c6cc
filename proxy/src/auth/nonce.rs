//! Stateless nonces (an HMAC over a timestamp, a random salt, the realm and
//! optionally the client IP) and the nc replay window.
//!
//! ```text
//! RFC 7616 §3.3: nonce ... uniquely generated each time a 401 response is made.
//!   [A possible construction is] time-stamp H(time-stamp ":" ETag ":" secret-data)
//! RFC 7616 §3.4: the server ... SHOULD check that the nc-value is greater than
//!   any it has seen for the nonce (to detect replays).
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Bytes of timestamp, salt and MAC in a nonce.
const TS_LEN: usize = 8;
const SALT_LEN: usize = 8;
const MAC_LEN: usize = 16;
const RAW_LEN: usize = TS_LEN + SALT_LEN + MAC_LEN;
/// A nonce from a clock this far ahead of ours is still accepted (proxies' clocks drift).
const FUTURE_SKEW_SECS: u64 = 30;

/// What [`NonceKey::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceStatus {
    /// Ours and within its lifetime.
    Fresh,
    /// Ours but expired: challenge again with `stale=true`.
    Stale,
    /// Not ours (forged, other secret, other realm or IP, garbled).
    Invalid,
}

/// Issues and checks nonces with one server secret. Share the secret between
/// proxies if a nonce from one must be accepted by another.
pub struct NonceKey {
    secret: Vec<u8>,
    lifetime: Duration,
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceKey")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    // A clock before 1970 is treated as 1970: nonces then look stale, never fresh forever.
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl NonceKey {
    /// A key with `secret` (any length; 32 random bytes recommended) and nonce lifetime.
    pub fn new(secret: &[u8], lifetime: Duration) -> Self {
        Self {
            secret: secret.to_vec(),
            lifetime,
        }
    }

    /// A key with a random secret (nonces die with the process).
    pub fn random(lifetime: Duration) -> Self {
        let mut s = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut s);
        Self::new(&s, lifetime)
    }

    /// The configured lifetime.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    fn mac(&self, ts_salt: &[u8], realm: &str, ip: Option<IpAddr>) -> [u8; MAC_LEN] {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .expect("HMAC accepts keys of any length");
        m.update(ts_salt);
        m.update(realm.as_bytes());
        m.update(&[0]);
        if let Some(ip) = ip {
            m.update(ip.to_string().as_bytes());
        }
        let full = m.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// A new nonce for `realm` (and `ip` when nonces are bound to the client address).
    pub fn issue(&self, realm: &str, ip: Option<IpAddr>, now: SystemTime) -> String {
        let mut raw = [0u8; RAW_LEN];
        raw[..TS_LEN].copy_from_slice(&unix_secs(now).to_be_bytes());
        rand::thread_rng().fill_bytes(&mut raw[TS_LEN..TS_LEN + SALT_LEN]);
        let mac = self.mac(&raw[..TS_LEN + SALT_LEN], realm, ip);
        raw[TS_LEN + SALT_LEN..].copy_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Checks a nonce returned by a client.
    pub fn check(
        &self,
        nonce: &str,
        realm: &str,
        ip: Option<IpAddr>,
        now: SystemTime,
    ) -> NonceStatus {
        match self.expiry(nonce, realm, ip) {
            None => NonceStatus::Invalid,
            Some((issued, expires)) => {
                let now = unix_secs(now);
                if issued > now + FUTURE_SKEW_SECS {
                    NonceStatus::Invalid
                } else if now >= expires {
                    NonceStatus::Stale
                } else {
                    NonceStatus::Fresh
                }
            }
        }
    }

    /// (issued, expires) in unix seconds if the nonce carries our MAC.
    fn expiry(&self, nonce: &str, realm: &str, ip: Option<IpAddr>) -> Option<(u64, u64)> {
        if nonce.len() > 64 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(nonce).ok()?;
        if raw.len() != RAW_LEN {
            return None;
        }
        let want = self.mac(&raw[..TS_LEN + SALT_LEN], realm, ip);
        if !bool::from(want.ct_eq(&raw[TS_LEN + SALT_LEN..])) {
            return None;
        }
        let mut ts = [0u8; TS_LEN];
        ts.copy_from_slice(&raw[..TS_LEN]);
        let issued = u64::from_be_bytes(ts);
        Some((issued, issued.saturating_add(self.lifetime.as_secs())))
    }
}

/// Remembers the highest nc seen per nonce, for nonces still alive, in bounded memory.
///
/// When the table is full the oldest nonce is forgotten; a replay of that
/// nonce would then pass until the nonce expires (a bounded, logged risk).
#[derive(Debug)]
pub struct ReplayGuard {
    inner: Mutex<ReplayInner>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct ReplayInner {
    max_nc: HashMap<String, u32>,
    /// Insertion order with expiry (unix secs), for eviction.
    order: VecDeque<(u64, String)>,
}

/// Outcome of [`ReplayGuard::accept`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NcCheck {
    /// nc is higher than any seen for this nonce; recorded.
    Accepted,
    /// nc was seen before for this nonce (or a higher one was).
    Replay,
}

impl ReplayGuard {
    /// A guard remembering at most `capacity` nonces.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(ReplayInner::default()),
            capacity: capacity.max(1),
        }
    }

    /// Records `nc` for `nonce` (alive until `expires`) unless it is a replay.
    pub fn accept(&self, nonce: &str, nc: u32, expires: SystemTime, now: SystemTime) -> NcCheck {
        let now = unix_secs(now);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let ReplayInner { max_nc, order } = &mut *g;
        while let Some((exp, _)) = order.front() {
            if *exp > now && max_nc.len() < self.capacity {
                break;
            }
            if let Some((_, n)) = order.pop_front() {
                max_nc.remove(&n);
            }
        }
        match max_nc.get_mut(nonce) {
            Some(seen) if nc <= *seen => NcCheck::Replay,
            Some(seen) => {
                *seen = nc;
                NcCheck::Accepted
            }
            None => {
                max_nc.insert(nonce.to_string(), nc);
                order.push_back((unix_secs(expires), nonce.to_string()));
                NcCheck::Accepted
            }
        }
    }

    /// How many nonces are remembered.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .max_nc
            .len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl NonceKey {
    /// When a valid nonce expires (for the replay table); `None` if not ours.
    pub fn expires_at(&self, nonce: &str, realm: &str, ip: Option<IpAddr>) -> Option<SystemTime> {
        self.expiry(nonce, realm, ip)
            .map(|(_, e)| UNIX_EPOCH + Duration::from_secs(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn fresh_stale_invalid() {
        let k = NonceKey::new(b"secret", Duration::from_secs(300));
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let n = k.issue("r", None, at(0));
        let nip = k.issue("r", Some(ip), at(0));
        let other = NonceKey::new(b"other", Duration::from_secs(300)).issue("r", None, at(0));
        let table: &[(&str, &str, Option<IpAddr>, u64, NonceStatus)] = &[
            (&n, "r", None, 0, NonceStatus::Fresh),
            (&n, "r", None, 299, NonceStatus::Fresh),
            (&n, "r", None, 300, NonceStatus::Stale),
            (&n, "r", None, 10_000, NonceStatus::Stale),
            (&n, "other-realm", None, 0, NonceStatus::Invalid),
            (&nip, "r", Some(ip), 1, NonceStatus::Fresh),
            (&nip, "r", None, 1, NonceStatus::Invalid),
            (
                &nip,
                "r",
                Some("192.0.2.2".parse().expect("ip")),
                1,
                NonceStatus::Invalid,
            ),
            (&other, "r", None, 0, NonceStatus::Invalid),
            ("", "r", None, 0, NonceStatus::Invalid),
            ("!!!!", "r", None, 0, NonceStatus::Invalid),
            (
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                "r",
                None,
                0,
                NonceStatus::Invalid,
            ),
        ];
        for (i, (nonce, realm, ip, t, want)) in table.iter().enumerate() {
            assert_eq!(k.check(nonce, realm, *ip, at(*t)), *want, "row {i}");
        }
        // Issued in the future (beyond skew): refused.
        let future = k.issue("r", None, at(1000));
        assert_eq!(k.check(&future, "r", None, at(0)), NonceStatus::Invalid);
        // Two nonces in the same second differ (salt), so nc windows do not collide.
        assert_ne!(k.issue("r", None, at(0)), k.issue("r", None, at(0)));
    }

    #[test]
    fn nc_replay() {
        let g = ReplayGuard::new(100);
        let exp = at(300);
        let steps = [
            ("a", 1, NcCheck::Accepted),
            ("a", 1, NcCheck::Replay),
            ("a", 2, NcCheck::Accepted),
            ("a", 1, NcCheck::Replay),
            ("b", 1, NcCheck::Accepted),
            ("a", 5, NcCheck::Accepted),
            ("a", 5, NcCheck::Replay),
        ];
        for (nonce, nc, want) in steps {
            assert_eq!(g.accept(nonce, nc, exp, at(0)), want, "{nonce} {nc}");
        }
        // After expiry the entry is purged.
        g.accept("c", 1, at(400), at(350));
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn replay_table_is_bounded() {
        let g = ReplayGuard::new(3);
        for i in 0..10 {
            g.accept(&format!("n{i}"), 1, at(300), at(0));
            assert!(g.len() <= 3);
        }
    }
}
