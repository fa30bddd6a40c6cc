//! REGISTER overload guard: a sans-IO token bucket (refilled from the `now`
//! the caller passes) and a randomised Retry-After for the 503.
//!
//! ```text
//! RFC 3261 §21.5.4 503 Service Unavailable: The server is temporarily
//! unable to process the request due to a temporary overloading or
//! maintenance of the server. The server MAY indicate when the client
//! should retry the request in a Retry-After header field.
//! ```
//!
//! Randomising Retry-After keeps the refused clients from coming back in
//! one wave.

use std::sync::Mutex;
use std::time::Instant;

use rand::Rng;

/// A token bucket: `rate` tokens per second, at most `burst` stored.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_sec: f64, burst: u32) -> Self {
        TokenBucket {
            rate: rate_per_sec.max(0.0),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: None,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        }
        // `now` may go backwards between callers; never move `last` back.
        match self.last {
            Some(l) if now <= l => {}
            _ => self.last = Some(now),
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The guard the registrar consults per REGISTER (shared, sync lock held
/// for a few arithmetic operations).
#[derive(Debug)]
pub struct RegisterGuard {
    bucket: Mutex<TokenBucket>,
    retry_after: (u32, u32),
}

impl RegisterGuard {
    /// `rate` REGISTERs per second with `burst`; refused ones get a
    /// Retry-After drawn uniformly from `retry_after` (seconds, inclusive).
    pub fn new(rate_per_sec: f64, burst: u32, retry_after: (u32, u32)) -> Self {
        let (lo, hi) = retry_after;
        RegisterGuard {
            bucket: Mutex::new(TokenBucket::new(rate_per_sec, burst)),
            retry_after: (lo.min(hi), lo.max(hi)),
        }
    }

    /// `Ok` to serve, or `Err(retry_after_secs)` for a 503.
    pub fn check<R: Rng + ?Sized>(&self, now: Instant, rng: &mut R) -> Result<(), u32> {
        let ok = self
            .bucket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_take(now);
        if ok {
            Ok(())
        } else {
            let (lo, hi) = self.retry_after;
            Err(rng.gen_range(lo..=hi))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::time::Duration;

    #[test]
    fn bucket_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5);
        // (offset ms, want)
        let table = [
            (0, true),
            (0, true),
            (0, true),
            (0, true),
            (0, true),
            (0, false),
            (50, false), // 0.5 token
            (100, true), // 1 token after 100 ms
            (100, false),
            (10_000, true), // refilled, but capped at burst
            (10_000, true),
            (10_000, true),
            (10_000, true),
            (10_000, true),
            (10_000, false),
            (9_000, false), // clock going backwards refills nothing
        ];
        for (i, (ms, want)) in table.into_iter().enumerate() {
            assert_eq!(
                b.try_take(t0 + Duration::from_millis(ms)),
                want,
                "step {i} at {ms} ms"
            );
        }
    }

    #[test]
    fn guard_answers_randomised_retry_after() {
        let t0 = Instant::now();
        let g = RegisterGuard::new(1.0, 2, (10, 300));
        let mut rng = StdRng::seed_from_u64(7);
        assert!(g.check(t0, &mut rng).is_ok());
        assert!(g.check(t0, &mut rng).is_ok());
        let retry: Vec<u32> = (0..200)
            .filter_map(|_| g.check(t0, &mut rng).err())
            .collect();
        assert_eq!(retry.len(), 200);
        assert!(retry.iter().all(|r| (10..=300).contains(r)));
        let distinct: std::collections::BTreeSet<_> = retry.iter().collect();
        assert!(distinct.len() > 50, "Retry-After is spread out");
        assert!(g.check(t0 + Duration::from_secs(1), &mut rng).is_ok());
    }
}
