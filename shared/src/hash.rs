//! Rendezvous (highest-random-weight) hashing of a key (the address of record)
//! onto the live proxy set, with a fixed hash so every LB, everywhere, on every version agrees.
//!
//! # The algorithm (frozen: changing it remaps users; see the frozen table test)
//!
//! ```text
//! fnv1a64(bytes) = fold over bytes: h = (h XOR byte) * 0x0000_0100_0000_01b3,
//!                  starting at h = 0xcbf2_9ce4_8422_2325          (64-bit FNV-1a)
//! fmix64(x)      = x ^= x >> 33; x *= 0xff51_afd7_ed55_8ccd;
//!                  x ^= x >> 33; x *= 0xc4ce_b9fe_1a85_ec53;
//!                  x ^= x >> 33                                   (MurmurHash3 finaliser)
//! score(key, id) = fmix64( fmix64(fnv1a64(key)) XOR fnv1a64(id) )
//! ranking        = proxies ordered by score descending; ties (never seen in
//!                  practice) by id ascending, then by position in the slice.
//! ```
//!
//! The proxy's identity is its configured `id` string, never its address, so
//! re-addressing a proxy does not move its users. With rendezvous hashing a
//! proxy that leaves takes only its own keys with it (each goes to its
//! next-ranked proxy), and a proxy that joins takes keys only for itself.

/// 64-bit FNV-1a over `bytes` (offset basis and prime from the FNV spec).
#[inline]
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The MurmurHash3 64-bit finaliser: a bijection with full avalanche.
#[inline]
pub fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x
}

#[inline]
fn key_hash(key: &str) -> u64 {
    fmix64(fnv1a64(key.as_bytes()))
}

#[inline]
fn combine(key_hash: u64, proxy_id: &str) -> u64 {
    fmix64(key_hash ^ fnv1a64(proxy_id.as_bytes()))
}

/// The rendezvous score of `proxy_id` for `key`; the highest score wins.
pub fn score(key: &str, proxy_id: &str) -> u64 {
    combine(key_hash(key), proxy_id)
}

/// The index of the best proxy for `key`, or `None` when `proxies` is empty.
/// One pass, no allocation.
pub fn best<T: AsRef<str>>(key: &str, proxies: &[T]) -> Option<usize> {
    let kh = key_hash(key);
    let mut top: Option<(u64, usize)> = None;
    for (i, p) in proxies.iter().enumerate() {
        let s = combine(kh, p.as_ref());
        let better = match top {
            None => true,
            Some((ts, ti)) => before(s, i, ts, ti, proxies),
        };
        if better {
            top = Some((s, i));
        }
    }
    top.map(|(_, i)| i)
}

/// The per-proxy half of the score, `fnv1a64(id)`: a routing snapshot may
/// cache it per proxy and use [`best_by_id_hash`].
pub fn id_hash(proxy_id: &str) -> u64 {
    fnv1a64(proxy_id.as_bytes())
}

/// Like [`best`], over cached [`id_hash`] values. Scores tie only when two ids'
/// FNV hashes collide (the finaliser is a bijection), so config validation
/// that rejects such ids makes this agree with [`best`]; ties go to the lower index.
pub fn best_by_id_hash(key: &str, id_hashes: &[u64]) -> Option<usize> {
    let kh = key_hash(key);
    let mut top: Option<(u64, usize)> = None;
    for (i, &h) in id_hashes.iter().enumerate() {
        let s = fmix64(kh ^ h);
        let better = match top {
            None => true,
            Some((ts, _)) => s > ts,
        };
        if better {
            top = Some((s, i));
        }
    }
    top.map(|(_, i)| i)
}

/// Proxy indices for `key`, best first. See [`Ranking`].
pub fn rank<'a, T: AsRef<str>>(key: &str, proxies: &'a [T]) -> Ranking<'a, T> {
    Ranking::new(key, proxies)
}

/// Scores kept inline up to this many proxies (no heap allocation).
pub const INLINE_PROXIES: usize = 16;

enum Scores {
    Inline([u64; INLINE_PROXIES]),
    Heap(Vec<u64>),
}

impl Scores {
    fn get(&self, i: usize) -> u64 {
        match self {
            Scores::Inline(a) => a[i],
            Scores::Heap(v) => v[i],
        }
    }
}

/// An iterator over proxy indices, best first. Each step is one selection
/// pass over the cached scores: the hot path takes only the first, failover
/// takes the next ones. Scores are stored inline for up to
/// [`INLINE_PROXIES`] proxies, so ranking a typical set never allocates.
pub struct Ranking<'a, T> {
    proxies: &'a [T],
    scores: Scores,
    last: Option<(u64, usize)>,
    left: usize,
}

impl<T> std::fmt::Debug for Ranking<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ranking")
            .field("proxies", &self.proxies.len())
            .field("left", &self.left)
            .finish()
    }
}

impl<'a, T: AsRef<str>> Ranking<'a, T> {
    /// Scores every proxy for `key`.
    pub fn new(key: &str, proxies: &'a [T]) -> Self {
        let kh = key_hash(key);
        let scores = if proxies.len() <= INLINE_PROXIES {
            let mut a = [0u64; INLINE_PROXIES];
            for (slot, p) in a.iter_mut().zip(proxies) {
                *slot = combine(kh, p.as_ref());
            }
            Scores::Inline(a)
        } else {
            Scores::Heap(proxies.iter().map(|p| combine(kh, p.as_ref())).collect())
        };
        Ranking {
            proxies,
            scores,
            last: None,
            left: proxies.len(),
        }
    }
}

/// Whether (score `s`, index `i`) ranks strictly before (`ts`, `ti`).
#[inline]
fn before<T: AsRef<str>>(s: u64, i: usize, ts: u64, ti: usize, proxies: &[T]) -> bool {
    if s != ts {
        return s > ts;
    }
    match proxies[i].as_ref().cmp(proxies[ti].as_ref()) {
        std::cmp::Ordering::Less => true,
        std::cmp::Ordering::Greater => false,
        std::cmp::Ordering::Equal => i < ti,
    }
}

impl<T: AsRef<str>> Iterator for Ranking<'_, T> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        let mut top: Option<(u64, usize)> = None;
        for i in 0..self.proxies.len() {
            let s = self.scores.get(i);
            // Only candidates ranked after the one yielded last.
            if let Some((ls, li)) = self.last {
                if !before(ls, li, s, i, self.proxies) {
                    continue;
                }
            }
            let better = match top {
                None => true,
                Some((ts, ti)) => before(s, i, ts, ti, self.proxies),
            };
            if better {
                top = Some((s, i));
            }
        }
        self.last = top;
        self.left -= 1;
        top.map(|(_, i)| i)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<T: AsRef<str>> ExactSizeIterator for Ranking<'_, T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::fmt::Write as _;

    const P5: [&str; 5] = ["p1", "p2", "p3", "p4", "p5"];

    #[test]
    fn reference_vectors() {
        // FNV-1a 64 test vectors from the FNV reference implementation.
        let cases: [(&[u8], u64); 3] = [
            (b"", 0xcbf2_9ce4_8422_2325),
            (b"a", 0xaf63_dc4c_8601_ec8c),
            (b"foobar", 0x8594_4171_f739_67e8),
        ];
        for (input, want) in cases {
            assert_eq!(fnv1a64(input), want, "{input:?}");
        }
        assert_eq!(fmix64(0), 0);
    }

    /// Frozen: these assignments must never change across versions, or an
    /// upgrade would move users between proxies (and every LB must agree).
    #[test]
    fn frozen_table() {
        const FROZEN: &[(&str, &str)] = &[
            // (key, proxy id among p1..p5)
            ("alice@example.com", "p1"),
            ("bob@example.com", "p2"),
            ("carol@example.net", "p3"),
            ("dave@example.org", "p1"),
            ("eve@example.com", "p3"),
            ("+4921112345@pstn.example.com", "p5"),
            ("+14155550100@carrier.example", "p4"),
            ("sip-user-1@sipgate.de", "p2"),
            ("sip-user-2@sipgate.de", "p2"),
            ("", "p5"),
            ("a", "p1"),
            ("b", "p2"),
            ("c", "p2"),
            ("0", "p3"),
            ("12345", "p4"),
            ("frank@[2001:db8::1]", "p1"),
            ("grace@192.0.2.7", "p5"),
            ("heidi@example.com", "p2"),
            ("ivan@example.com", "p4"),
            ("judy@example.com", "p1"),
            ("mallory@example.com", "p4"),
            ("niaj@example.com", "p3"),
            ("olivia@example.com", "p3"),
            ("peggy@example.com", "p2"),
            ("rupert@example.com", "p1"),
            ("sybil@example.com", "p5"),
            ("trent@example.com", "p4"),
            ("victor@example.com", "p1"),
            ("walter@example.com", "p5"),
            ("user0@example.com", "p2"),
            ("user1@example.com", "p5"),
            ("user999999@example.com", "p5"),
            ("ALICE@EXAMPLE.COM", "p2"),
            ("alice@Example.com", "p4"),
            ("%41lice@example.com", "p4"),
            ("ümlaut@example.de", "p4"),
        ];
        assert!(FROZEN.len() >= 30);
        for (key, want) in FROZEN {
            let got = best(key, &P5).map(|i| P5[i]);
            assert_eq!(got, Some(*want), "key {key}");
        }
    }

    #[test]
    fn empty_and_single() {
        let none: [&str; 0] = [];
        assert_eq!(best("alice@example.com", &none), None);
        assert_eq!(rank("alice@example.com", &none).next(), None);
        assert_eq!(best("alice@example.com", &["only"]), Some(0));
        assert_eq!(rank("x", &["only"]).collect::<Vec<_>>(), vec![0]);
    }

    #[test]
    fn ranking_is_a_permutation_sorted_by_score() {
        for n in [1usize, 2, 5, 16, 17, 40] {
            let ids: Vec<String> = (0..n).map(|i| format!("proxy-{i}")).collect();
            for key in [
                "alice@example.com",
                "bob@example.org",
                "",
                "+4921112345@pstn",
            ] {
                let order: Vec<usize> = rank(key, &ids).collect();
                assert_eq!(order.len(), n);
                let mut sorted = order.clone();
                sorted.sort_unstable();
                assert_eq!(sorted, (0..n).collect::<Vec<_>>());
                assert_eq!(Some(order[0]), best(key, &ids));
                for w in order.windows(2) {
                    assert!(score(key, &ids[w[0]]) >= score(key, &ids[w[1]]));
                }
            }
        }
    }

    #[test]
    fn order_of_the_slice_does_not_matter() {
        let mut ids = P5.to_vec();
        let key = "carol@example.net";
        let want: Vec<&str> = rank(key, &ids).map(|i| ids[i]).collect();
        ids.reverse();
        let got: Vec<&str> = rank(key, &ids).map(|i| ids[i]).collect();
        assert_eq!(want, got);
    }

    #[test]
    fn duplicate_ids_tie_by_index() {
        let ids = ["same", "same", "other"];
        let order: Vec<usize> = rank("k", &ids).collect();
        let a = order.iter().position(|&i| i == 0);
        let b = order.iter().position(|&i| i == 1);
        assert!(a < b, "{order:?}");
    }

    /// Counts assignments of `keys` keys over `n` proxies; every count must
    /// be within ±5 % of the mean.
    fn spread(n: usize, keys: usize) {
        let ids: Vec<String> = (1..=n).map(|i| format!("p{i}")).collect();
        let hashes: Vec<u64> = ids.iter().map(|id| id_hash(id)).collect();
        let mut counts = vec![0usize; n];
        let mut key = String::with_capacity(32);
        for k in 0..keys {
            key.clear();
            let _ = write!(key, "user{k}@example.com");
            // The cached-hash form keeps 1M keys × 100 proxies quick in debug.
            let i = best_by_id_hash(&key, &hashes).expect("non-empty");
            if k % 997 == 0 {
                assert_eq!(Some(i), best(&key, &ids), "{key}");
            }
            counts[i] += 1;
        }
        let mean = keys as f64 / n as f64;
        for (i, &c) in counts.iter().enumerate() {
            let dev = (c as f64 - mean).abs() / mean;
            assert!(dev <= 0.05, "n={n} proxy {i}: {c} vs mean {mean:.0}");
        }
    }

    #[test]
    fn spread_1m_keys_small_sets() {
        for n in [3, 4, 7] {
            spread(n, 1_000_000);
        }
    }

    #[test]
    fn spread_large_sets() {
        spread(10, 1_000_000);
        spread(33, 1_000_000);
        spread(100, 1_000_000);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Removing a proxy moves only the keys it held.
        #[test]
        fn removal_moves_only_own_keys(n in 2usize..40, gone in 0usize..40, seed in any::<u64>()) {
            let gone = gone % n;
            let ids: Vec<String> = (0..n).map(|i| format!("px-{seed}-{i}")).collect();
            let mut fewer = ids.clone();
            let removed = fewer.remove(gone);
            for k in 0..300 {
                let key = format!("k{seed}-{k}");
                let before = &ids[best(&key, &ids).expect("non-empty")];
                let after = &fewer[best(&key, &fewer).expect("non-empty")];
                if *before != removed {
                    prop_assert_eq!(before, after);
                } else {
                    // It goes to its second choice in the full set.
                    let second = rank(&key, &ids).nth(1).map(|i| &ids[i]);
                    prop_assert_eq!(Some(after), second);
                }
            }
        }

        /// Adding a proxy moves keys only onto the new proxy.
        #[test]
        fn addition_moves_only_to_new(n in 1usize..40, seed in any::<u64>()) {
            let ids: Vec<String> = (0..n).map(|i| format!("px-{seed}-{i}")).collect();
            let mut more = ids.clone();
            more.push(format!("new-{seed}"));
            for k in 0..300 {
                let key = format!("k{seed}-{k}");
                let before = &ids[best(&key, &ids).expect("non-empty")];
                let after = &more[best(&key, &more).expect("non-empty")];
                prop_assert!(before == after || *after == more[n]);
            }
        }
    }
}
