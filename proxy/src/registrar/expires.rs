//! Granting registration lifetimes: clamp the requested expires to
//! [min, max], answer 423 below min, and randomise the grant so that
//! re-registrations spread out instead of arriving in storms.
//!
//! ```text
//! RFC 3261 §10.3 step 7: [...] If the requested expiration interval is
//! shorter than [the minimum], the registrar MAY reject it with 423
//! (Interval Too Brief) [and a Min-Expires header]. [...] The registrar MAY
//! choose an expiration less than the requested expiration interval.
//! RFC 3261 §10.2.1: [a UA without an explicit expiration] the registrar
//! chooses a locally configured default.
//! RFC 5626 §4.2.1 (spirit): a UA that loses its flows re-registers after a
//! randomised back-off, so a mass failure does not become a mass REGISTER.
//! ```

use rand::Rng;

/// Validated lifetime policy, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExpiresPolicy {
    /// Below this (but not 0) the registrar answers 423 with Min-Expires.
    pub min: u32,
    /// Requests above this are cut to it.
    pub max: u32,
    /// Used when the request states no expiry.
    pub default: u32,
    /// The granted value is multiplied by a factor drawn uniformly from
    /// `spread.0..=spread.1` (e.g. 0.7–1.0); `(1.0, 1.0)` disables it.
    pub spread: (f64, f64),
}

impl Default for ExpiresPolicy {
    fn default() -> Self {
        ExpiresPolicy {
            min: 60,
            max: 3600,
            default: 3600,
            spread: (0.7, 1.0),
        }
    }
}

/// The registrar's answer for one contact's requested lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Expires 0: remove the binding.
    Remove,
    /// Keep the binding this many seconds.
    Seconds(u32),
    /// Below the minimum: answer 423 with this Min-Expires.
    TooBrief {
        /// Value for the Min-Expires header.
        min_expires: u32,
    },
}

impl ExpiresPolicy {
    /// Decides the lifetime for a contact that asked for `requested`
    /// seconds (`None`: neither the contact nor the request said).
    pub fn grant<R: Rng + ?Sized>(&self, requested: Option<u32>, rng: &mut R) -> Grant {
        let asked = requested.unwrap_or(self.default);
        if asked == 0 {
            return Grant::Remove;
        }
        if asked < self.min {
            return Grant::TooBrief {
                min_expires: self.min,
            };
        }
        let clamped = asked.min(self.max);
        let (lo, hi) = self.spread;
        let factor = if hi > lo { rng.gen_range(lo..=hi) } else { lo };
        // The spread may shorten a grant, but never below the minimum we
        // ourselves demand of clients.
        let spread = (f64::from(clamped) * factor).round() as u32;
        Grant::Seconds(spread.clamp(self.min.max(1), clamped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn no_spread() -> ExpiresPolicy {
        ExpiresPolicy {
            spread: (1.0, 1.0),
            ..ExpiresPolicy::default()
        }
    }

    #[test]
    fn clamp_and_423_table() {
        let mut rng = StdRng::seed_from_u64(1);
        let table = [
            (None, Grant::Seconds(3600)),
            (Some(0), Grant::Remove),
            (Some(1), Grant::TooBrief { min_expires: 60 }),
            (Some(59), Grant::TooBrief { min_expires: 60 }),
            (Some(60), Grant::Seconds(60)),
            (Some(1800), Grant::Seconds(1800)),
            (Some(3600), Grant::Seconds(3600)),
            (Some(7200), Grant::Seconds(3600)),
            (Some(u32::MAX), Grant::Seconds(3600)),
        ];
        for (asked, want) in table {
            assert_eq!(no_spread().grant(asked, &mut rng), want, "{asked:?}");
        }
    }

    #[test]
    fn spread_stays_within_range_and_actually_spreads() {
        let policy = ExpiresPolicy::default();
        let mut rng = StdRng::seed_from_u64(42);
        let grants: Vec<u32> = (0..1000)
            .map(|_| match policy.grant(Some(3600), &mut rng) {
                Grant::Seconds(s) => s,
                other => panic!("{other:?}"),
            })
            .collect();
        let (lo, hi) = (
            *grants.iter().min().expect("n"),
            *grants.iter().max().expect("n"),
        );
        assert!(lo >= 2520 && hi <= 3600, "{lo}..{hi}");
        // 1000 uniform draws over 0.7–1.0 cover most of the range.
        assert!(lo < 2600 && hi > 3500, "{lo}..{hi}");
        let mean = grants.iter().map(|&g| f64::from(g)).sum::<f64>() / 1000.0;
        assert!((mean - 3060.0).abs() < 40.0, "mean {mean}");
        // Deterministic with a seeded RNG.
        let mut again = StdRng::seed_from_u64(42);
        assert_eq!(
            policy.grant(Some(3600), &mut again),
            Grant::Seconds(grants[0])
        );
    }

    #[test]
    fn spread_never_goes_below_min() {
        let policy = ExpiresPolicy {
            spread: (0.1, 0.1),
            ..ExpiresPolicy::default()
        };
        let mut rng = StdRng::seed_from_u64(3);
        assert_eq!(policy.grant(Some(60), &mut rng), Grant::Seconds(60));
        assert_eq!(policy.grant(Some(3600), &mut rng), Grant::Seconds(360));
    }
}
