//! An in-memory TTL cache in front of any subscriber store: check the cache,
//! else ask the store, then cache the answer; "no such user" is cached briefly.
//!
//! Errors are never cached, so a store that comes back is used at once.
//! Time is `tokio::time::Instant`, so tests run in paused time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::users::{normalize_domain, StoreFuture, Subscriber, SubscriberStore};

/// Cache lifetimes and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// How long a found subscriber is served from memory.
    pub ttl: Duration,
    /// How long "no such user" is served from memory.
    pub negative_ttl: Duration,
    /// Most entries kept.
    pub max_entries: usize,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            max_entries: 100_000,
        }
    }
}

type Key = (String, String);

/// A caching wrapper around store `S`.
pub struct CachedStore<S> {
    inner: S,
    policy: CachePolicy,
    map: Mutex<HashMap<Key, (Instant, Option<Subscriber>)>>,
}

impl<S> std::fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedStore")
            .field("policy", &self.policy)
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

impl<S> CachedStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, policy: CachePolicy) -> Self {
        Self {
            inner,
            policy,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S> CachedStore<S> {
    /// Drops one entry (after the CLI changed it, for instance).
    pub fn invalidate(&self, user: &str, domain: &str) {
        self.lock()
            .remove(&(user.to_string(), normalize_domain(domain)));
    }

    /// Drops everything.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, (Instant, Option<Subscriber>)>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Entries held, expired ones included until they are swept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert(&self, k: Key, v: Option<Subscriber>, now: Instant) {
        let ttl = if v.is_some() {
            self.policy.ttl
        } else {
            self.policy.negative_ttl
        };
        if ttl.is_zero() {
            return;
        }
        let mut m = self.lock();
        if m.len() >= self.policy.max_entries && !m.contains_key(&k) {
            m.retain(|_, (exp, _)| *exp > now);
            if m.len() >= self.policy.max_entries {
                // Still full of live entries: drop an arbitrary one.
                if let Some(victim) = m.keys().next().cloned() {
                    m.remove(&victim);
                }
            }
        }
        m.insert(k, (now + ttl, v));
    }
}

impl<S: SubscriberStore> SubscriberStore for CachedStore<S> {
    fn lookup<'a>(&'a self, user: &'a str, domain: &'a str) -> StoreFuture<'a, Option<Subscriber>> {
        Box::pin(async move {
            let k = (user.to_string(), normalize_domain(domain));
            let now = Instant::now();
            if let Some((exp, v)) = self.lock().get(&k) {
                if *exp > now {
                    metrics::counter!("sipedge_subscriber_cache_total", "result" => "hit")
                        .increment(1);
                    return Ok(v.clone());
                }
            }
            metrics::counter!("sipedge_subscriber_cache_total", "result" => "miss").increment(1);
            // No lock across the await; two concurrent misses both ask the store, which is fine.
            let v = self.inner.lookup(user, domain).await?;
            self.insert(k, v.clone(), Instant::now());
            Ok(v)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::StoreError;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// Counts calls; fails when `down`.
    struct Counting {
        calls: AtomicUsize,
        down: AtomicBool,
    }

    impl SubscriberStore for Counting {
        fn lookup<'a>(
            &'a self,
            user: &'a str,
            domain: &'a str,
        ) -> StoreFuture<'a, Option<Subscriber>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let down = self.down.load(Ordering::SeqCst);
            Box::pin(async move {
                if down {
                    return Err(StoreError::Unavailable("down".into()));
                }
                Ok((user == "alice").then(|| Subscriber::from_password(user, domain, "pw")))
            })
        }
    }

    fn cache(max: usize) -> CachedStore<Counting> {
        CachedStore::new(
            Counting {
                calls: AtomicUsize::new(0),
                down: AtomicBool::new(false),
            },
            CachePolicy {
                ttl: Duration::from_secs(60),
                negative_ttl: Duration::from_secs(5),
                max_entries: max,
            },
        )
    }

    #[tokio::test(start_paused = true)]
    async fn ttl_positive_and_negative() {
        let c = cache(100);
        let calls = || c.inner().calls.load(Ordering::SeqCst);
        // (advance before, user, expected found, expected total store calls)
        let steps = [
            (0, "alice", true, 1),
            (30, "alice", true, 1),
            (31, "alice", true, 2),
            (0, "mallory", false, 3),
            (4, "mallory", false, 3),
            (1, "mallory", false, 4),
            (0, "alice", true, 4),
        ];
        for (i, (adv, user, found, n)) in steps.into_iter().enumerate() {
            tokio::time::advance(Duration::from_secs(adv)).await;
            let got = c.lookup(user, "D").await.expect("lookup");
            assert_eq!(got.is_some(), found, "step {i}");
            assert_eq!(calls(), n, "step {i}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn errors_not_cached_and_hits_survive_outage() {
        let c = cache(100);
        c.lookup("alice", "d").await.expect("warm");
        c.inner().down.store(true, Ordering::SeqCst);
        assert!(c.lookup("alice", "d").await.expect("cached").is_some());
        let e = c.lookup("bob", "d").await.expect_err("store down");
        assert!(e.is_unavailable());
        c.inner().down.store(false, Ordering::SeqCst);
        assert!(c.lookup("bob", "d").await.expect("back").is_none());
        c.invalidate("alice", "D");
        let before = c.inner().calls.load(Ordering::SeqCst);
        c.lookup("alice", "d").await.expect("refetch");
        assert_eq!(c.inner().calls.load(Ordering::SeqCst), before + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn bounded() {
        let c = cache(10);
        for i in 0..100 {
            c.lookup(&format!("u{i}"), "d").await.expect("lookup");
            assert!(c.len() <= 10);
        }
    }
}
